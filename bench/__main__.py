"""``python -m bench``: the benchmark ladder, its peers and sweeps, measured in one run on this
machine; rewrites RESULTS.md and the plots under bench/.

Sections (``--only``): ladder, peers, sweeps, envs, basics, compile, solve. ``--quick`` finishes
in under 2 minutes on a quiet 2-core machine, the default run in under 15. Unknown rung, section
or env names and impossible sweep points are reported and skipped; the rest still runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent

SECTIONS = {
    "ladder": "R0..R8b on CartPole-v1, one optimisation per rung (--rungs picks rungs)",
    "peers": "envpool, gymnasium AsyncVectorEnv, SB3 DummyVecEnv/SubprocVecEnv, ProcessVectorEnv on Python envs, "
             "SB3 PPO SPS",
    "sweeps": "steps/s against num_envs and against worker processes",
    "envs": "every kernel against gymnasium SyncVectorEnv (and envpool)",
    "basics": "CartPole N=4096 vs gymnasium, step() overhead at N=1, engine ratios and latency",
    "compile": "Numba compile time, cold vs cached",
    "solve": "time to solve CartPole-v1: fastsample (both learner backends, whole command timed) vs SB3 "
             "(rl-zoo hyperparameters)",
    "learners": "torch vs compiled learner: minibatch update and act() timings, steps to solve CartPole over "
                "seeds 0-9 with an exact Mann-Whitney U test",
    "minatar": "PPO with the CNN policy on MinAtar Breakout, 3 M steps through fastsample train (8-17 min; "
               "--minatar-run reads a finished run instead), learning curve next to the published curves",
    "gpu": "what `python -m bench.gpu` recorded on a GPU machine (bench/gpu_results.json): the CartPole command "
           "on the CPU vs the GPU, large batch and MinAtar CNN on each, NCCL; read, not measured, here",
    "distributed": "data-parallel PPO (--distributed, torchrun + gloo): large batch on 1 and 2 ranks, scaling "
                   "efficiency, all-reduce cost and a projection to N nodes",
}
DEFAULT_SWEEP_N = "1,4,16,64,256,1024,4096,16384,65536"
QUICK_SWEEP_N = "1,16,256,4096,65536"


def build_parser() -> argparse.ArgumentParser:
    from bench.ladder import RUNGS

    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repeats, shorter timings, smaller sweeps (< 2 min)")
    p.add_argument("--rungs", default=None, help=f"comma-separated rungs to run (default all: {','.join(RUNGS)})")
    p.add_argument("--only", default=None, help=f"comma-separated sections to run (default all: {','.join(SECTIONS)})")
    p.add_argument("--output", default=str(ROOT / "RESULTS.md"), help="where to write the report (default RESULTS.md)")
    p.add_argument("--plots-dir", default=None,
                   help="where to save the PNG plots (default bench/ for the default output, else next to --output)")
    p.add_argument("--num-envs", type=int, default=8192,
                   help="num_envs of the ladder's vectorised rungs (default 8192)")
    p.add_argument("--workers", type=int, default=None, help="worker processes of R4-R8b (default min(2, cores))")
    p.add_argument("--torch-threads", type=int, default=1, help="torch intra-op threads everywhere (default 1)")
    p.add_argument("--sweep-num-envs", default=None,
                   help=f"num_envs points of the num_envs sweep (default {DEFAULT_SWEEP_N}; quick {QUICK_SWEEP_N})")
    p.add_argument("--sweep-workers", default=None, help="worker counts of the workers sweep (default 1..cores)")
    p.add_argument("--sweep-workers-num-envs", type=int, default=None,
                   help="num_envs of the workers sweep (default: --num-envs)")
    p.add_argument("--envs", default=None, help="env ids of the all-envs table (default: every kernel)")
    p.add_argument("--minatar-run", default=None, metavar="RUN_DIR",
                   help="minatar section: read this finished run of `python -m bench.minatar_train --run-dir RUN_DIR "
                        "--train` instead of training (the default trains 3 M steps; --quick skips it)")
    p.add_argument("--list", action="store_true", help="list rungs and sections, then exit")
    p.add_argument("--dry-run", action="store_true", help="check the arguments and print the plan; measure nothing")
    p.add_argument("--no-progress", action="store_true", help="plain log lines instead of a progress bar")
    return p


def _split(text: str | None) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()] if text else []


def make_settings(args: argparse.Namespace) -> tuple[Any, list[str], list[str], list[str], list[str]]:
    """``(settings, sections, rungs, problems, fatal)``: problems are reported and skipped,
    fatal ones stop the run before anything is measured."""
    from bench.common import Settings, parse_int_list
    from bench.envs import kernel_ids
    from bench.ladder import RUNGS, resolve
    from bench.sweeps import impossible_workers

    problems: list[str] = []
    fatal: list[str] = []
    cores = os.cpu_count() or 1
    quick = args.quick
    s = Settings(quick=quick, cores=cores)
    if quick:
        s.repeats, s.min_time = 5, 0.05
        s.table_n, s.sync_sweep_max = 1024, 256
        s.minatar_sizes, s.minatar_seconds = [1024], 1.0
        s.train_iters, s.solve_seeds, s.solve_cap_s, s.sb3_sps_iters = 5, 1, 15.0, 20
    else:
        s.repeats, s.min_time = 7, 0.3
        s.table_n, s.sync_sweep_max = 4096, 1024
        s.train_iters, s.solve_seeds, s.solve_cap_s, s.sb3_sps_iters = 7, 3, None, 28

    if args.num_envs < 1:
        fatal.append(f"--num-envs must be >= 1, got {args.num_envs}")
    s.num_envs = max(1, args.num_envs)
    if args.workers is not None and args.workers < 1:
        fatal.append(f"--workers must be >= 1, got {args.workers}")
    s.minatar_run = args.minatar_run
    if s.minatar_run is not None and not (Path(s.minatar_run) / "summary.json").exists():
        fatal.append(f"--minatar-run {s.minatar_run}: no finished run there (no summary.json)")
    s.workers = args.workers if args.workers and args.workers >= 1 else min(2, cores)
    if args.torch_threads < 1:
        fatal.append(f"--torch-threads must be >= 1, got {args.torch_threads}")
    s.torch_threads = max(1, args.torch_threads)
    if s.workers > s.num_envs:
        problems.append(f"--workers {s.workers} > --num-envs {s.num_envs}: each worker needs at least one env; "
                        "R4-R8b are skipped")

    # sections and rungs
    sections = list(SECTIONS)
    if args.only is not None:
        asked = [x.lower() for x in _split(args.only)]
        unknown = [x for x in asked if x not in SECTIONS]
        if unknown:
            problems.append(f"unknown section(s) {', '.join(repr(x) for x in unknown)}; valid sections: "
                            f"{', '.join(SECTIONS)}")
        sections = [x for x in SECTIONS if x in asked]
    rungs = list(RUNGS)
    if args.rungs is not None:
        rungs, unknown = resolve(_split(args.rungs))
        if unknown:
            problems.append(f"unknown rung(s) {', '.join(repr(x) for x in unknown)}; valid rungs: {', '.join(RUNGS)}")
        if args.only is None and not rungs:
            sections = []
        elif args.only is None:
            sections = ["ladder"]  # --rungs alone: just those rungs
    if "ladder" not in sections:
        rungs = []

    # sweeps
    try:
        s.sweep_num_envs = parse_int_list(args.sweep_num_envs or (QUICK_SWEEP_N if quick else DEFAULT_SWEEP_N),
                                          "--sweep-num-envs")
    except ValueError as err:
        fatal.append(str(err))
    try:
        s.sweep_workers = (parse_int_list(args.sweep_workers, "--sweep-workers") if args.sweep_workers
                           else list(range(1, cores + 1)))
    except ValueError as err:
        fatal.append(str(err))
    s.sweep_workers_n = args.sweep_workers_num_envs if args.sweep_workers_num_envs is not None else s.num_envs
    if s.sweep_workers_n < 1:
        fatal.append(f"--sweep-workers-num-envs must be >= 1, got {s.sweep_workers_n}")
    if "sweeps" in sections:
        for msg in impossible_workers(s.sweep_workers, s.sweep_workers_n):
            problems.append(f"workers sweep: {msg}; that point is skipped")
        over = [w for w in s.sweep_workers if w > cores]
        if over:
            problems.append(f"workers sweep: {over} > {cores} cores: those points oversubscribe the CPU "
                            "(measured anyway)")

    # env table
    valid_envs = kernel_ids()
    if args.envs is not None:
        asked = _split(args.envs)
        unknown = [e for e in asked if e not in valid_envs]
        if unknown:
            problems.append(f"unknown env id(s) {', '.join(repr(e) for e in unknown)}; valid: {', '.join(valid_envs)}")
        s.table_envs = [e for e in asked if e in valid_envs]
        if not s.table_envs and "envs" in sections:
            sections.remove("envs")
    else:
        s.table_envs = valid_envs
    return s, sections, rungs, problems, fatal


Task = tuple[tuple, str, Callable[[], Any]]


def plan(ctx, sections: list[str], rungs: list[str]) -> list[Task]:
    """Every measurement of the run, in order: ``(result key, label, fn)``."""
    from bench import basics, ladder, peers, sweeps, training

    s = ctx.settings
    tasks: list[Task] = []
    if "ladder" in sections:
        for name in rungs:
            tasks.append((("ladder", name), f"{name}: {ladder.RUNGS[name].title}",
                          (lambda n=name: ladder.run(ctx, n))))
        if "R8" in rungs:  # R8 runs backend auto (the compiled learner); the torch learner beside it
            tasks.append((("backends", "R8", "torch"), "R8 with --backend torch",
                          lambda: training.r8(ctx, "sync", backend="torch")))
    if "peers" in sections:
        # the fastsample rows the peers are compared with (free when the ladder measured them)
        for name in ("R2", "R3", "R4", "R5"):
            if name not in rungs:
                tasks.append((("ladder", name), f"{name} (for the peers table): {ladder.RUNGS[name].title}",
                              (lambda n=name: ladder.run(ctx, n))))
        tasks += [
            (("peers", "envpool_sync"), "peer: envpool sync", lambda: peers.envpool_sync(ctx)),
            (("peers", "envpool_async"), "peer: envpool async", lambda: peers.envpool_async(ctx)),
            (("peers", "py_sync"), f"peer: SyncVectorEnv, {s.small_n} Python envs", lambda: peers.python_sync(ctx)),
            (("peers", "py_async"), f"peer: AsyncVectorEnv, {s.small_n} Python envs", lambda: peers.python_async(ctx)),
            (("peers", "py_process"), f"peer: ProcessVectorEnv, {s.small_n} Python envs",
             lambda: peers.python_process(ctx)),
            (("peers", "sb3_dummy"), f"peer: SB3 DummyVecEnv, {s.small_n} envs", lambda: peers.sb3_dummy(ctx)),
            (("peers", "sb3_subproc"), f"peer: SB3 SubprocVecEnv, {s.small_n} envs", lambda: peers.sb3_subproc(ctx)),
            (("peers", "fs_ppo_zoo"), "peer: fastsample PPO SPS (rl-zoo hyperparameters)",
             lambda: training.fastsample_rl_zoo_sps(ctx)),
            (("backends", "zoo", "torch"), "peer: fastsample PPO SPS (rl-zoo hyperparameters), --backend torch",
             lambda: training.fastsample_rl_zoo_sps(ctx, backend="torch")),
            (("peers", "sb3_ppo"), "peer: SB3 PPO SPS (rl-zoo hyperparameters)", lambda: training.sb3_ppo_sps(ctx)),
        ]
    if "basics" in sections:
        tasks += [(tuple(key.split(".")), label, fn) for key, label, fn in basics.tasks(ctx)]
    if "envs" in sections:
        for env_id in s.table_envs:
            tasks.append((("envs", env_id), f"envs: {env_id}", (lambda e=env_id: sweeps.env_table_row(ctx, e))))
        minatar_ids = [e for e in s.table_envs if e.startswith("MinAtar-")]
        if minatar_ids:
            from bench.envs import gym_reference
            from bench.minatar_compare import size_point

            for env_id in minatar_ids:
                for n in s.minatar_sizes:
                    tasks.append((("minatar_sizes", env_id, n), f"envs: {env_id} vs the minatar package, num_envs={n}",
                                  (lambda e=env_id, k=n: {"status": "the minatar package is not installed"}
                                   if gym_reference(e) is None
                                   else size_point(e, k, seconds=s.minatar_seconds, rounds=5 if s.quick else 9))))
    if "sweeps" in sections:
        for series in sweeps.num_envs_series(ctx):
            for n in s.sweep_num_envs:
                tasks.append((("sweep_envs", series, n), f"sweep: {series}, num_envs={n}",
                              (lambda a=series, b=n: sweeps.sweep_point(ctx, a, b))))
        for series in ("fastsample", "envpool"):
            for w in [0, *s.sweep_workers]:
                if series == "envpool" and w == 0:
                    continue
                tasks.append((("sweep_workers", series, w), f"sweep: {series}, {w} workers",
                              (lambda a=series, b=w: sweeps.workers_point(ctx, a, b))))
    if "compile" in sections:
        from bench.envs import compile_times, kernel_ids

        tasks.append((("compile",), "Numba compile time (fresh processes)", lambda: compile_times(kernel_ids())))
    if "solve" in sections:
        missing = training.trainer_missing()
        for seed in range(1, s.solve_seeds + 1):
            for backend in ("compiled", "torch"):  # the whole command in a fresh process, each backend
                key = "fastsample" if backend == "compiled" else "fastsample_torch"
                tasks.append((("solve", key, seed), f"solve: fastsample preset, --backend {backend}, seed {seed}",
                              (lambda sd=seed, b=backend: {"status": missing} if missing
                               else training.fastsample_solve(ctx, sd, backend=b))))
        cap = s.solve_cap_s  # --quick: the rl-zoo runs are capped
        tasks.append((("solve", "fastsample_zoo", 1), "solve: fastsample, rl-zoo hyperparameters"
                      + (f" (capped at {cap:g} s)" if cap else ""),
                      lambda: {"status": missing} if missing else training.fastsample_solve(ctx, 1, preset=False,
                                                                                             max_seconds=cap)))
        sb3_reason = training.sb3_missing()
        tasks.append((("solve", "sb3", 1), "solve: SB3 PPO, rl-zoo hyperparameters (up to 1e5 steps"
                      + (f", capped at {cap:g} s)" if cap else ")"),
                      lambda: {"status": sb3_reason} if sb3_reason else training.sb3_solve(ctx, 1, max_seconds=cap)))
    if "learners" in sections:
        from bench import learner_compare

        missing = training.trainer_missing()
        for n in ((256,) if s.quick else (256, 4096)):
            tasks.append((("learners", "update", n), f"learners: one PPO minibatch update of {n}, torch vs compiled",
                          (lambda b=n: learner_compare.compare(b, 3.0 if s.quick else 10.0))))
        for seed in learner_compare.SOLVE_SEEDS[:4 if s.quick else None]:
            for backend in ("torch", "compiled"):
                tasks.append((("learners", "solve", backend, seed),
                              f"learners: fastsample train --backend {backend} --seed {seed} (steps to solve)",
                              (lambda sd=seed, b=backend: {"status": missing} if missing
                               else learner_compare.train_command(sd, b))))
    if "minatar" in sections:
        from bench import minatar_train

        run_dir = ctx.settings.minatar_run
        if run_dir is None and s.quick:
            tasks.append((("minatar",), "minatar: Breakout PPO learning curve (skipped: --quick)",
                          lambda: {"status": "not run in --quick (3 M steps take 8-17 min here); pass --minatar-run "
                                             "RUN_DIR to read a finished run"}))
        else:
            tasks.append((("minatar",), "minatar: Breakout PPO learning curve"
                          + (f" (reading {run_dir})" if run_dir else ", 3 M steps"),
                          lambda: minatar_train.run(run_dir, train=run_dir is None,
                                                    out=Path(tempfile.mkdtemp()) / "minatar_breakout.png")))
    if "gpu" in sections:
        from bench import gpu

        tasks.append((("gpu",), "gpu: reading bench/gpu_results.json", gpu.load_recorded))
    if "distributed" in sections:
        from bench import distributed

        tasks.append((("distributed",), "distributed: large-batch PPO on 1 and 2 torchrun ranks",
                      lambda: distributed.measure(repeats=1 if s.quick else 3, iterations=3 if s.quick else 6)))
    return tasks


def describe(value: Any) -> str:
    from bench.common import Measurement, fmt_rate

    if isinstance(value, Measurement):
        if not value.ok:
            return value.status
        text = f"{fmt_rate(value.median)} {value.unit} (min {fmt_rate(value.low)}, max {fmt_rate(value.high)})"
        shares = value.shares()
        if shares:
            text += " [" + ", ".join(f"{k} {v:.0%}" for k, v in shares.items()) + "]"
        return text
    if isinstance(value, dict) and "status" in value:
        return value["status"]
    if isinstance(value, dict) and "solved" in value:
        text = (f"solved in {value['solved_at_s']:.2f} s ({value['solved_at_steps']:,} steps)" if value["solved"]
                else f"not solved in {value['steps']:,} steps")
        return text + (f"; whole command {value['command_s']:.2f} s" if value.get("command_s") else "")
    if isinstance(value, dict) and "speedup" in value:
        return f"torch {value['torch_ms']:.3f} ms, compiled {value['compiled_ms']:.3f} ms ({value['speedup']:.1f}x)"
    if isinstance(value, dict) and "ratio_1" in value:  # bench/minatar_compare.py
        return (f"fastsample {fmt_rate(value['fastsample'])}/s; package {fmt_rate(value['package_n'])}/s as "
                f"{value['num_envs']} envs ({value['ratio_n']:.0f}x), {fmt_rate(value['package_1'])}/s as one env "
                f"({value['ratio_1']:.0f}x)")
    if isinstance(value, dict) and "fastsample" in value:
        return ", ".join(f"{k} {describe(v)}" for k, v in value.items() if k != "env")
    if isinstance(value, dict) and "points" in value:  # bench/minatar_train.py
        d = value["summary"]
        return f"{d.get('steps', 0):,} steps, final greedy return {d.get('eval_return') or float('nan'):.1f}"
    if isinstance(value, dict) and "ratios" in value:  # bench/basics.py: paired rounds
        return f"median ratio {value['ratio']:.2f}x over {len(value['ratios'])} rounds"
    if isinstance(value, dict) and "gpu_recorded" in value:  # bench/gpu.py
        return f"recorded {value['gpu_recorded'].get('recorded')} on {value['gpu_recorded'].get('machine', {}).get('gpu')}"
    if isinstance(value, dict) and "by_ranks" in value:  # bench/distributed.py
        d = value["summary"]
        return (f"1 rank {fmt_rate(d['sps_1'])}/s, 2 ranks {fmt_rate(d['sps_2'])}/s "
                f"({d['speedup']:.2f}x, efficiency {d['efficiency']:.0%})")
    if isinstance(value, dict) and "runs" in value:  # benchmark_training results
        import statistics

        return ", ".join(f"{key} {fmt_rate(statistics.median(r[key] for r in value['runs']))}/s"
                         for key in ("sps", "sampler_sps", "learner_sps"))
    if isinstance(value, dict):
        return "; ".join(f"{k}: " + ", ".join(f"{e}={t:.2f}s" for e, t in row.items()) for k, row in value.items())
    return str(value)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    from bench.ladder import RUNGS

    if args.list:
        print("rungs:")
        for r in RUNGS.values():
            print(f"  {r.name:4s} {r.title}" + (f"  (vs {r.vs}: {r.adds})" if r.vs else f"  ({r.adds})"))
        print("sections (--only):")
        for k, v in SECTIONS.items():
            print(f"  {k:8s} {v}")
        return 0
    settings, sections, rungs, problems, fatal = make_settings(args)
    for p in fatal:
        print(f"python -m bench: error: {p}", file=sys.stderr)
    if fatal:
        return 2
    for p in problems:
        print(f"python -m bench: warning: {p}", file=sys.stderr)
    from bench.common import Ctx, Progress

    ctx = Ctx(settings)
    tasks = plan(ctx, sections, rungs)
    if not tasks:
        print("python -m bench: error: nothing to run" + (" (see the messages above)" if problems else ""),
              file=sys.stderr)
        return 2
    if args.dry_run:
        print(f"plan: {len(tasks)} measurements in sections {', '.join(sections)}"
              + (f"; rungs {', '.join(rungs)}" if rungs else ""))
        for _, label, _ in tasks:
            print(f"  {label}")
        return 0

    from bench.common import machine_facts

    output = Path(args.output).resolve()
    plots_dir = Path(args.plots_dir).resolve() if args.plots_dir else (
        ROOT / "bench" if output == (ROOT / "RESULTS.md").resolve() else output.parent)
    facts = machine_facts()
    progress = Progress(len(tasks), enabled=not args.no_progress)
    ctx.progress = progress
    progress.say("machine: " + ", ".join(f"{k}={v}" for k, v in facts.items()))
    progress.say(f"{len(tasks)} measurements, {'quick' if settings.quick else 'full'} run: "
                 f"{settings.repeats} repeats of >= {settings.min_time:g} s; torch threads {settings.torch_threads}")
    from bench.common import missing

    results: dict[tuple, Any] = {}
    t_start = time.perf_counter()
    try:
        for key, label, fn in tasks:
            progress.start(label)
            t0 = time.perf_counter()
            try:
                value = fn()
            except KeyboardInterrupt:
                raise
            except Exception as err:  # one failing row must not stop the others
                value = missing(label, f"failed: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
                progress.say("".join(traceback.format_exception(err)).rstrip())
            results[key] = value
            progress.say(f"{label}: {describe(value)}  ({time.perf_counter() - t0:.1f} s)")
            progress.advance()
    except KeyboardInterrupt:
        progress.close()
        print("interrupted: RESULTS.md not written", file=sys.stderr)
        return 130
    progress.close()
    elapsed = time.perf_counter() - t_start
    from bench.report import Report

    command = "python -m bench" + ("" if not argv else " " + shlex.join(argv))
    report = Report(results, settings, facts, command=command, date=dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
                    elapsed_s=elapsed, output=output, plots_dir=plots_dir, sections=sections,
                    all_sections=list(SECTIONS), problems=problems)
    output.write_text(report.render())
    print(f"wrote {output} ({elapsed / 60:.1f} min)" + (f"; plots in {plots_dir}" if report.plot_notes == [] else ""))
    for p in problems:
        print(f"python -m bench: warning: {p}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
