"""``python -m bench.gpu --out FILE``: fastsample on a machine with a GPU, recorded as JSON.

CI and this project's development machines have no GPU, so this script is run by hand on a machine
that has one, and its JSON is committed as ``bench/gpu_results.json``; ``python -m bench`` renders
it as RESULTS.md's "GPU" section, with the machine and date it was recorded on. Each part runs in
its own process with a time limit, and the file is rewritten after each, so a part that fails or
runs out of time leaves the others' results and its own error:

- ``machine``: GPU, CPU, core count and versions;
- ``cartpole_command``: the whole ``fastsample train --env CartPole-v1`` command, timed from outside,
  with ``--device auto`` (what a user gets by default on this machine) and ``--device cpu``;
- ``large_batch``: the trainer's large batch (4096 envs x 16 steps, 64x64 tanh, 4 epochs x 4
  minibatches) on the compiled learner (CPU), torch on the CPU and torch on the GPU;
- ``minatar``: PPO with the CNN policy on MinAtar Breakout (its preset), torch on the CPU and GPU;
- ``distributed``: DD-PPO with NCCL on the GPU (1 rank), 2 ranks on one GPU (a clear error is
  expected: NCCL runs one rank per GPU), and gloo on 1, 2 and 4 ranks of this machine's cores;
- ``check``: ``python -m fastsample.check`` (the kernels against gymnasium, bit for bit) on this
  machine's CPU, another codegen target than the development machine's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
LARGE_BATCH_RUNS = (("compiled", "cpu"), ("torch", "cpu"), ("torch", "cuda"))


def _python(args: list[str], timeout: float, cwd: str | None = None) -> tuple[int, str, float]:
    """Run ``python args`` from the repository; (exit code, output tail, wall seconds)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t = time.perf_counter()
    try:
        p = subprocess.run([sys.executable, *args], env=env, cwd=cwd or str(ROOT), capture_output=True,
                           text=True, timeout=timeout)
        return p.returncode, (p.stdout + p.stderr)[-2000:], time.perf_counter() - t
    except subprocess.TimeoutExpired as err:
        out = (err.stdout or b"") + (err.stderr or b"")
        out = out.decode(errors="replace") if isinstance(out, bytes) else out
        return 124, f"timed out after {timeout:.0f} s: {out[-1500:]}", time.perf_counter() - t


def machine() -> dict[str, Any]:
    import numba
    import numpy
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "numba": numba.__version__, "numpy": numpy.__version__,
            "numba_cpu": __import__("llvmlite.binding", fromlist=["x"]).get_host_cpu_name()}


def _train(args: list[str], timeout: float) -> dict[str, Any]:
    """``fastsample train`` in a fresh process, timed from outside, with its summary.json."""
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        rc, tail, wall = _python(["-m", "fastsample.cli", "train", "--no-progress", "--run-dir", str(run), *args],
                                 timeout)
        out: dict[str, Any] = {"args": args, "rc": rc, "wall_s": round(wall, 3)}
        summary = run / "summary.json"
        if rc != 0 or not summary.exists():
            out["error"] = tail
            return out
        s = json.loads(summary.read_text())
        out.update({k: s.get(k) for k in ("device", "backend", "steps", "sps", "startup_s", "sample_s", "learn_s",
                                          "solved", "solved_at_steps", "eval_return")})
        return out


def cartpole_command(seeds: int = 3) -> dict[str, Any]:
    runs: dict[str, Any] = {}
    for device in ("auto", "cpu", "cuda"):
        cold = _train(["--env", "CartPole-v1", "--seed", "0", "--device", device], 300)  # fills numba's cache
        timed = [_train(["--env", "CartPole-v1", "--seed", str(s), "--device", device], 120) for s in range(seeds)]
        runs[device] = {"cold_cache": cold, "runs": timed}
    return runs


def _large_batch_child(backend: str, device: str) -> None:
    sys.path.insert(0, str(ROOT))
    from fastsample.runners import benchmark_training

    runs = [benchmark_training("CartPole-v1", iterations=6, backend=backend, device=device) for _ in range(2)]
    print("RESULT " + json.dumps(runs))


def large_batch() -> dict[str, Any]:
    out = {}
    for backend, device in LARGE_BATCH_RUNS:
        rc, tail, wall = _python(["-m", "bench.gpu", "--large-batch-child", backend, device], 300)
        line = next((ln for ln in tail.splitlines() if ln.startswith("RESULT ")), None)
        out[f"{backend}/{device}"] = json.loads(line[7:]) if rc == 0 and line else {"error": tail, "rc": rc}
    return out


def minatar(steps: int = 262144) -> dict[str, Any]:
    return {device: _train(["--env", "fastsample/MinAtar-Breakout-v1", "--device", device, "--total-steps",
                            str(steps), "--no-stop-when-solved", "--eval-every", "0", "--torch-threads", "0"], 300)
            for device in ("cuda", "cpu")}


def distributed() -> dict[str, Any]:
    from bench.distributed import run_ranks

    out: dict[str, Any] = {}
    for name, world, device in (("nccl_1", 1, "cuda"), ("nccl_2_one_gpu", 2, "cuda"), ("gloo_1", 1, "cpu"),
                                ("gloo_2", 2, "cpu"), ("gloo_4", 4, "cpu")):
        t = time.perf_counter()
        try:
            r = run_ranks(world, iterations=6, device=device, timeout=240)
        except subprocess.TimeoutExpired:
            r = {"status": "timed out after 240 s"}
        r["wall_s"] = round(time.perf_counter() - t, 2)
        out[name] = r
    return out


def check() -> dict[str, Any]:
    rc, tail, wall = _python(["-m", "fastsample.check", "--sizes", "1,33,257"], 400)
    return {"rc": rc, "wall_s": round(wall, 1), "passed": rc == 0, "tail": tail[-1200:]}


RECORDED = ROOT / "bench" / "gpu_results.json"


def load_recorded(path: Path = RECORDED) -> dict[str, Any]:
    """The committed recording, or ``{"status": ...}`` when there is none."""
    if not path.exists():
        return {"status": f"no recording ({path.name} absent): run `python -m bench.gpu` on a machine with a GPU"}
    return {"gpu_recorded": json.loads(path.read_text())}


def _median(values: list[float]) -> float:
    values = sorted(values)
    n = len(values)
    return (values[n // 2] + values[(n - 1) // 2]) / 2 if n else float("nan")


def markdown(result: dict[str, Any]) -> str:
    """RESULTS.md's GPU section from a recording (``load_recorded``)."""
    if "status" in result:
        return f"Not recorded: {result['status']}\n"
    r = result["gpu_recorded"]
    m = r.get("machine", {})
    when = r.get("parts_recorded") or {"all parts": f"{r.get('recorded')} at {r.get('commit')}"}
    out = [f"Recorded by `python -m bench.gpu` ({'; '.join(f'{k}: {v}' for k, v in when.items())}) on a lent machine: "
           f"{m.get('gpu')}, {m.get('cores')} CPU cores ({m.get('cpu')}; numba compiles for "
           f"`{m.get('numba_cpu')}`), torch {m.get('torch')} (CUDA {m.get('cuda')}), numba {m.get('numba')}, "
           f"numpy {m.get('numpy')}. Not the machine of the rest of this page: compare within this section only.", ""]
    cp = r.get("cartpole_command", {})
    if cp and "error" not in cp:
        out += ["**`fastsample train --env CartPole-v1` on that machine** (whole command, timed from outside, warm "
                "Numba cache; seeds 0-2):", "",
                "| --device | learned on | backend | whole command (median) | per seed | start-up (median) | "
                "first run, cold Numba cache |", "|---|---|---|---:|---|---:|---:|"]
        for device, v in cp.items():
            runs = [x for x in v["runs"] if x.get("rc") == 0]
            if not runs:
                out.append(f"| {device} | failed: {v['runs'][0].get('error', '')[-200:]} | | | | | |")
                continue
            label = device + (f" ({v['note']})" if v.get("note") else "")
            out.append(f"| {label} | {runs[0]['device']} | {runs[0]['backend']} | "
                       f"{_median([x['wall_s'] for x in runs]):.2f} s | "
                       f"{', '.join('%.2f' % x['wall_s'] for x in runs)} s | "
                       f"{_median([x['startup_s'] for x in runs]):.2f} s | {v['cold_cache'].get('wall_s', 0):.1f} s |")
        auto = next((x for x in cp.get("auto", {}).get("runs", []) if x.get("rc") == 0), {})
        out += ["", "`--device auto` keeps MLP policies in `--mode sync` on the CPU (compiled learner) even where a "
                "GPU is present, because of the CPU-vs-GPU rows here"
                + (": this recording predates that rule, so its `auto` row is the GPU's." if auto.get("device") != "cpu"
                   else "; the `auto` row was recorded with that rule in place."), ""]
    lb = r.get("large_batch", {})
    if lb:
        out += ["**Large-batch PPO** (4096 envs x 16 steps, 64x64 tanh, 4 epochs x 4 minibatches; "
                "`benchmark_training`, median of 2 runs of 6 updates):", "",
                "| learner | env steps/s end to end | learner transitions/s | rollout steps/s |", "|---|---:|---:|---:|"]
        for key, runs in lb.items():
            if isinstance(runs, dict):
                out.append(f"| {key} | failed: {str(runs.get('error'))[-200:]} | | |")
                continue
            out.append(f"| {key} | {_median([x['sps'] for x in runs]) / 1e3:,.0f} k | "
                       f"{_median([x['learner_sps'] for x in runs]) / 1e3:,.0f} k | "
                       f"{_median([x['sampler_sps'] for x in runs]) / 1e6:,.2f} M |")
        out.append("")
    mt = r.get("minatar", {})
    if mt:
        out += ["**MinAtar Breakout, CNN policy** (its preset, 262,144 steps, torch on every core or on the GPU):", "",
                "| device | env steps/s | rollout s | learning s | start-up s |", "|---|---:|---:|---:|---:|"]
        for device, v in mt.items():
            if v.get("rc") != 0:
                out.append(f"| {device} | failed: {str(v.get('error'))[-200:]} | | | |")
                continue
            out.append(f"| {device} | {v['sps'] / 1e3:,.1f} k | {v['sample_s']:.1f} | {v['learn_s']:.1f} | "
                       f"{v['startup_s']:.1f} |")
        out.append("")
    dd = r.get("distributed", {})
    if dd:
        out += ["**Data-parallel PPO** (`bench/distributed.py`'s large batch under torchrun; NCCL on the GPU, gloo "
                "with the compiled learner on the CPU cores):", "",
                "| ranks | env steps/s (all ranks) | all-reduce in training | quiet all-reduce | note |",
                "|---|---:|---:|---:|---|"]
        for name, v in dd.items():
            if "status" in v and v.get("status"):
                out.append(f"| {name} | — | — | — | {v['status'][:300]} |")
                continue
            out.append(f"| {name} | {v['sps'] / 1e3:,.0f} k | {v['allreduce_ms']:.3f} ms | "
                       f"{v['allreduce_quiet_ms']:.3f} ms | {v['backend']} learner |")
        out.append("")
    ck = r.get("check", {})
    if ck:
        out += [f"**`python -m fastsample.check --sizes 1,33,257`** on that CPU: "
                f"{'passed' if ck.get('passed') else 'FAILED'} in {ck.get('wall_s')} s "
                f"(`{ck.get('tail', '').strip().splitlines()[-1] if ck.get('tail') else ''}`).", ""]
    return "\n".join(out) + "\n"


PARTS: dict[str, Callable[[], Any]] = {"machine": machine, "cartpole_command": cartpole_command,
                                       "large_batch": large_batch, "minatar": minatar,
                                       "distributed": distributed, "check": check}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(RECORDED))
    p.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts (default all: {','.join(PARTS)})")
    p.add_argument("--large-batch-child", nargs=2, metavar=("BACKEND", "DEVICE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.large_batch_child:
        _large_batch_child(*args.large_batch_child)
        return
    unknown = set(args.only.split(",")) - set(PARTS)
    if unknown:
        p.error(f"unknown parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    # --only re-records some parts into an existing recording and keeps the others
    old = json.loads(Path(args.out).read_text()) if Path(args.out).exists() and args.only != ",".join(PARTS) else {}
    result: dict[str, Any] = {**old, "recorded": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                              "commit": os.environ.get("FASTSAMPLE_COMMIT") or subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                                       capture_output=True, text=True).stdout.strip() or None}
    for name in args.only.split(","):
        t = time.perf_counter()
        try:
            result[name] = PARTS[name]()
        except Exception as err:  # one part's failure is recorded; the others still run
            result[name] = {"error": f"{type(err).__name__}: {err}"}
        result.setdefault("parts_recorded", {})[name] = f"{result['recorded']} at {result['commit']}"
        print(f"[bench.gpu] {name}: {time.perf_counter() - t:.1f} s", flush=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
