"""The ``fastsample`` command line."""

from __future__ import annotations

import argparse
import sys
import time


def _demo(args: argparse.Namespace) -> int:
    """Step every classic-control env in batches and print its throughput."""
    import numpy as np

    import fastsample
    from envs_numba.classic_control import KERNELS

    print(f"fastsample {fastsample.__version__}: stepping {args.num_envs} envs of each classic-control task")
    for kernel in KERNELS:
        t0 = time.perf_counter()
        env = fastsample.make_vec(kernel.id, args.num_envs, seed=0, copy=False)
        env.reset()
        env.action_space.seed(0)
        actions = [env.action_space.sample() for _ in range(16)]
        env.step(actions[0])
        startup = time.perf_counter() - t0
        steps = 0
        episodes = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            for a in actions:
                _, _, term, trunc, _ = env.step(a)
                episodes += int(np.count_nonzero(term | trunc))
            steps += len(actions) * args.num_envs
        rate = steps / (time.perf_counter() - t0)
        print(f"  {kernel.id:26s} {rate / 1e6:8.2f} M steps/s  ({episodes} episodes; start-up incl. JIT {startup:.2f} s)")
        env.close()
    return 0


def _bench(args: argparse.Namespace) -> int:
    """``python -m bench`` with the same arguments. bench/ lives in the repository, not in the
    installed package: look for it in the current directory, then next to this package."""
    from pathlib import Path

    for root in (Path.cwd(), Path(__file__).resolve().parent.parent):
        if (root / "bench" / "__main__.py").is_file():
            if str(root) not in sys.path:
                sys.path.insert(0, str(root))
            break
    else:
        print("fastsample bench runs from a checkout of the repository (it needs the bench/ folder): "
              "cd into it and run `python -m bench`", file=sys.stderr)
        return 2
    from bench.__main__ import main as bench_main

    return bench_main(args.bench_args)


def _add_train_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field; help from the field's docstring. Defaults are left
    unset (SUPPRESS) so that only explicit flags override the env's preset."""
    import dataclasses

    from fastsample.train_config import TrainConfig, field_docs

    docs = field_docs()
    for f in dataclasses.fields(TrainConfig):
        name = "--" + f.name.replace("_", "-")
        default = f.default
        help_text = f"{docs.get(f.name, '')} (default {default!r}; presets may change it)"
        if isinstance(default, bool):
            parser.add_argument(name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                help=help_text)
        else:
            parser.add_argument(name, type=type(default), default=argparse.SUPPRESS, help=help_text,
                                metavar=f.name.upper())
    parser.add_argument("--resume", metavar="RUN_DIR", default=None,
                        help="continue the run in RUN_DIR from its latest checkpoint (its config.json, "
                             "overridden by any flag given)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run already in --run-dir (its metrics, checkpoint and summary are "
                             "deleted); without it an existing run directory is refused")


def _train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fastsample.checkpoint import CheckpointError
    from fastsample.train_config import ConfigError, TrainConfig, config_from_dict, make_config

    given = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__}
    try:
        if args.resume:
            from fastsample.train import read_run_config

            path = Path(args.resume) / "config.json"
            if not path.exists():
                print(f"fastsample train: error: --resume: {args.resume} is not a run directory (no config.json)",
                      file=sys.stderr)
                return 2
            values = read_run_config(args.resume)
            values.update(given)
            cfg = config_from_dict(values)
        else:
            if "env" not in given:
                print("fastsample train: error: --env is required (e.g. --env CartPole-v1)", file=sys.stderr)
                return 2
            cfg = make_config(given.pop("env"), **given)
        from fastsample.train import Interrupted, train

        summary = train(cfg, resume=args.resume, overwrite=args.overwrite)
    except (ConfigError, CheckpointError) as err:
        print(f"fastsample train: error: {err}", file=sys.stderr)
        return 2
    except Interrupted as err:
        print(f"fastsample train: {err}", file=sys.stderr)
        return 128 + err.signum  # 130 for SIGINT, 143 for SIGTERM, as the shell reports them
    except Exception as err:
        from fastsample.distributed import DistributedError

        if not isinstance(err, DistributedError):
            raise
        print(f"fastsample train: error: {err}", file=sys.stderr)
        return 2
    if summary.get("rank", 0) != 0:  # --distributed: rank 0 reports for every rank
        return 0
    solved = (f"solved in {summary['solved_at_s']:.2f} s ({summary['solved_at_steps']:,} steps)"
              if summary["solved"] else "not solved")
    print(f"{summary['env']} seed {summary['seed']}: {summary['steps']:,} steps in {summary['wall_s']:.2f} s "
          f"= {summary['sps']:,.0f} SPS (start-up {summary['startup_s']:.2f} s); {solved}; "
          f"greedy eval return {summary['eval_return']:.1f} over {summary['eval_episodes']} episodes; "
          f"run dir {summary['run_dir']}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from fastsample.checkpoint import CheckpointError
    from fastsample.train import evaluate_run

    if args.episodes < 1:
        print("fastsample eval: error: --episodes must be >= 1", file=sys.stderr)
        return 2
    try:
        result = evaluate_run(args.run_dir, episodes=args.episodes, render=args.render, seed=args.seed,
                              device=args.device)
    except (FileNotFoundError, CheckpointError) as err:
        print(f"fastsample eval: error: {err}", file=sys.stderr)
        return 2
    print(f"{result['env']}: greedy return {result['mean_return']:.1f} +- {result['std_return']:.1f} "
          f"(min {result['min_return']:.1f}, max {result['max_return']:.1f}) over {result['episodes']} episodes, "
          f"checkpoint at {result['steps']:,} steps" + (f"; frames in {result['render']}" if result["render"] else ""))
    return 0


def _defer_numba_blas_probe() -> None:
    """Keep numba from importing ``scipy.linalg`` (0.4-0.9 s on a 2-core machine) when its
    target context first loads, in this process.

    ``numba.np.arraymath`` probes for BLAS at import (``_HAVE_BLAS = _check_blas()``, which
    imports ``scipy.linalg.cython_blas``) and uses the answer only to choose ``np.convolve`` /
    ``np.correlate``'s implementation. Where scipy is installed the probe's answer is yes, so
    arraymath is imported here with the probe answering yes without the import; numba's linear
    algebra still imports scipy itself (``ensure_blas``) when a kernel needs it. Without scipy
    the real probe runs (and fails fast). fastsample's kernels use no BLAS."""
    import importlib.util

    if "numba.np.arraymath" in sys.modules or importlib.util.find_spec("scipy") is None:
        return
    import numba.np.linalg as linalg

    real = linalg.ensure_blas
    linalg.ensure_blas = lambda: None
    try:
        import numba.np.arraymath as arraymath
    finally:
        linalg.ensure_blas = real
    arraymath.ensure_blas = real


def _fast_exit(code: int) -> None:
    """End the process now that the command is done: run the atexit handlers (multiprocessing's
    joins, logging's flush), flush stdout/stderr, then ``os._exit``, skipping the interpreter's
    module teardown, which takes 0.3-0.4 s once numba has loaded compiled code (LLVM objects freed
    one by one) and does nothing a finished command needs."""
    import atexit
    import os

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    """The command line; ``argv`` None: the process's own arguments, and then a finished
    ``train`` or ``eval`` ends the process at once (:func:`_fast_exit`); with a list (tests,
    callers in Python) it returns the exit code."""
    _defer_numba_blas_probe()
    parser = argparse.ArgumentParser(prog="fastsample", description="Fast batched RL environments and training.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="step every classic-control env and print steps/s")
    demo.add_argument("--num-envs", type=int, default=4096, help="envs per task (default 4096)")
    demo.add_argument("--seconds", type=float, default=1.0, help="how long to step each task (default 1)")
    demo.set_defaults(func=_demo)
    # prefix_chars="+": every argument after "bench" (--quick, --rungs, -h...) goes to python -m bench
    bench = sub.add_parser("bench", help="run the benchmark ladder and rewrite RESULTS.md (python -m bench; "
                                         "fastsample bench --help for its options)", prefix_chars="+", add_help=False)
    bench.add_argument("bench_args", nargs=argparse.REMAINDER, help="arguments for python -m bench")
    bench.set_defaults(func=_bench)
    train = sub.add_parser("train", help="train PPO (e.g. fastsample train --env CartPole-v1)",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_train_flags(train)
    train.set_defaults(func=_train)
    ev = sub.add_parser("eval", help="greedy evaluation of a run's latest checkpoint")
    ev.add_argument("run_dir", help="run directory written by fastsample train")
    ev.add_argument("--episodes", type=int, default=20, help="episodes, run in parallel (default 20)")
    ev.add_argument("--render", metavar="OUT.gif", default=None, help="write env 0's first episode as a GIF")
    ev.add_argument("--seed", type=int, default=12345, help="seed of the evaluation episodes")
    ev.add_argument("--device", default="cpu", help="torch device (default cpu)")
    ev.set_defaults(func=_eval)
    args = parser.parse_args(argv)
    if args.command == "demo" and args.num_envs < 1:
        parser.error("--num-envs must be >= 1")
    if getattr(args, "seconds", 1.0) <= 0:
        parser.error("--seconds must be > 0")
    code = args.func(args)
    if argv is None and args.command in ("train", "eval"):
        _fast_exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
