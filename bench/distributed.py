"""Data-parallel PPO throughput (``--distributed``, DD-PPO) on this machine: the large-batch
configuration (4096 envs x 16 steps in all, 64x64 tanh, 4 epochs x 4 minibatches) on 1 rank and
on 2 ranks (torchrun, gloo), the scaling efficiency, and what the all-reduce costs: bytes per
update, measured time per all-reduce, and where communication would dominate on N nodes.

Each rank runs the sync runner exactly as ``fastsample train --distributed`` builds it
(``rank_config`` + ``attach``); the timing excludes start-up. Run by ``python -m bench`` (section
``distributed``), or alone: ``python -m bench.distributed``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LARGE_BATCH = dict(num_envs=4096, num_steps=16, update_epochs=4, num_minibatches=4, hidden_sizes="64,64",
                   activation="tanh", learning_rate=2.5e-4, ent_coef=0.01, clip_vloss=True, norm_obs=False,
                   norm_reward=False, num_workers=0, progress=False, eval_every=0)


def _rank_main(out: str, iterations: int, warmup: int, device: str = "cpu") -> None:
    """One rank's side (under torchrun): time ``iterations`` updates after ``warmup``, learning on
    ``device`` (cpu: gloo and the compiled learner; cuda: NCCL and torch, one GPU per rank)."""
    sys.path.insert(0, str(ROOT))
    from fastsample.distributed import attach, from_environment, rank_config
    from fastsample.runners.sync import SyncRunner
    from fastsample.train_config import make_config

    ranks = from_environment(device)
    cfg = make_config("CartPole-v1", distributed=True, total_steps=10**12, device=device, **LARGE_BATCH)
    runner = SyncRunner(rank_config(cfg, ranks), f"cuda:{ranks.local_rank}" if device == "cuda" else device)
    reduce_s = [0.0]
    reduce_n = [0]
    plain = ranks.all_reduce_mean_

    def timed(g: np.ndarray) -> np.ndarray:
        t = time.perf_counter()
        plain(g)
        reduce_s[0] += time.perf_counter() - t
        reduce_n[0] += 1
        return g

    try:
        attach(runner, ranks)
        runner.learner.grad_hook = timed
        runner.start()
        for _ in range(warmup):
            runner.iteration_step()
        ranks.barrier()
        reduce_s[0], reduce_n[0] = 0.0, 0
        steps = 0
        sample_s = learn_s = 0.0
        t0 = time.perf_counter()
        for _ in range(iterations):
            o = runner.iteration_step()
            steps += o["steps"]
            sample_s += o["sample_s"]
            learn_s += o["learn_s"]
        wall = time.perf_counter() - t0
        grad = runner.learner.flat_params()
        # the all-reduce alone, on a quiet process group (no rollout beside it): a payload of the
        # gradient's size, repeated
        ranks.barrier()
        probe = np.zeros(grad.size, np.float32)
        n_probe = 200
        t = time.perf_counter()
        for _ in range(n_probe):
            ranks.all_reduce_sum_(probe)
        probe_s = (time.perf_counter() - t) / n_probe
        result = {"world_size": ranks.world_size, "sps": steps / wall, "seconds": wall, "iterations": iterations,
                  "sample_share": sample_s / wall, "learn_share": learn_s / wall,
                  "allreduce_per_update": reduce_n[0] / iterations, "allreduce_s_in_training": reduce_s[0] / wall,
                  "allreduce_ms": 1e3 * reduce_s[0] / max(reduce_n[0], 1), "allreduce_quiet_ms": 1e3 * probe_s,
                  "grad_bytes": int(grad.size * 4), "backend": runner.backend}
        if ranks.is_main:
            Path(out).write_text(json.dumps(result))
    finally:
        runner.close()
        ranks.close()


def run_ranks(world_size: int, iterations: int = 6, warmup: int = 1, timeout: float = 600,
              device: str = "cpu") -> dict[str, Any]:
    """The large-batch configuration on ``world_size`` ranks of this machine (torchrun)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(world_size),
               "--master-port", str(_free_port()), str(Path(__file__).resolve()), "--rank-main", str(out),
               str(iterations), str(warmup), device]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=tmp)
        if proc.returncode != 0 or not out.exists():
            text = proc.stdout + proc.stderr
            errors = list(dict.fromkeys(ln.strip() for ln in text.splitlines() if "Error:" in ln))  # the ranks' own
            return {"status": f"torchrun --nproc-per-node {world_size} failed (exit {proc.returncode}): "
                              f"{' / '.join(errors[:4]) or text[-1500:]}"}
        return json.loads(out.read_text())


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(repeats: int = 3, iterations: int = 6) -> dict[str, Any]:
    """``{"by_ranks": {1: [...], 2: [...]}, "summary": {...}}``: medians over ``repeats``, the ranks
    counts run alternately so that drifts of the machine hit both alike."""
    try:
        import torch.distributed  # noqa: F401
    except ImportError as err:
        return {"status": f"torch.distributed not available: {err}"}
    runs: dict[int, list[dict]] = {1: [], 2: []}
    for _ in range(repeats):
        for w in (1, 2):
            r = run_ranks(w, iterations=iterations)
            if "status" in r:
                return r
            runs[w].append(r)
    med = {w: float(np.median([r["sps"] for r in rs])) for w, rs in runs.items()}
    two = runs[2]
    grad_bytes = two[0]["grad_bytes"]
    per_update = float(np.median([r["allreduce_per_update"] for r in two]))
    quiet_ms = float(np.median([r["allreduce_quiet_ms"] for r in two]))
    summary = {"sps_1": med[1], "sps_2": med[2], "speedup": med[2] / med[1], "efficiency": med[2] / (2 * med[1]),
               "grad_bytes": grad_bytes, "allreduce_per_update": per_update,
               "bytes_per_update": grad_bytes * per_update,
               "allreduce_ms_in_training": float(np.median([r["allreduce_ms"] for r in two])),
               "allreduce_quiet_ms": quiet_ms,
               "allreduce_share": float(np.median([r["allreduce_s_in_training"] for r in two])),
               "update_s_2": float(np.median([r["seconds"] / r["iterations"] for r in two])),
               "cores": os.cpu_count()}
    return {"by_ranks": runs, "summary": summary}


def projection(summary: dict[str, Any], link_gbit: float = 10.0) -> list[str]:
    """A projection to N nodes from what was measured here. A ring all-reduce over N ranks takes
    2 (N-1) steps, each sending 1/N of the payload; a step's fixed cost is taken from the quiet
    2-rank all-reduce measured here (2 steps: gloo's and Python's overhead per message), its
    transfer from a ``link_gbit`` link. Compute per update is this machine's per-rank rollout +
    learning at 2048 envs per rank: constant when every node adds envs (weak scaling), divided by
    N/2 when a fixed global batch is split further (strong scaling)."""
    nbytes, per_update = summary["grad_bytes"], summary["allreduce_per_update"]
    step_s = summary["allreduce_quiet_ms"] * 1e-3 / 2
    compute_s = summary["update_s_2"] * (1 - summary["allreduce_share"])
    lines = []
    for n in (2, 8, 32, 128, 512):
        one = 2 * (n - 1) * (step_s + nbytes / n * 8 / (link_gbit * 1e9))
        comm = one * per_update
        strong = compute_s * 2 / n
        lines.append(f"N={n}: {1e3 * comm:.1f} ms of all-reduce per update; {100 * comm / (comm + compute_s):.0f}% "
                     f"of an update with 2048 envs per rank, {100 * comm / (comm + strong):.0f}% with the "
                     f"4096 envs split over N ranks")
    return lines


def markdown(result: dict[str, Any]) -> str:
    if "status" in result:
        return f"Not measured: {result['status']}\n"
    s = result["summary"]
    out = [
        "| ranks | env steps/s (all ranks) | speedup | scaling efficiency |",
        "|---:|---:|---:|---:|",
        f"| 1 | {s['sps_1'] / 1e3:,.1f} k | 1.00x | 100% |",
        f"| 2 | {s['sps_2'] / 1e3:,.1f} k | {s['speedup']:.2f}x | {100 * s['efficiency']:.0f}% |",
        "",
        f"All-reduce: {s['allreduce_per_update']:.0f} per update (one per minibatch) of the flat gradient, "
        f"{s['grad_bytes']:,} bytes each ({s['bytes_per_update'] / 1024:.0f} KiB per update); "
        f"{s['allreduce_ms_in_training']:.2f} ms each inside training, {s['allreduce_quiet_ms']:.3f} ms on a quiet "
        f"process group; {100 * s['allreduce_share']:.1f}% of the 2-rank wall time.",
        "",
        f"Projection to N nodes (ring all-reduce; per step {s['allreduce_quiet_ms'] / 2:.3f} ms of fixed cost as "
        "measured here plus 10 Gbit/s transfer; compute per update as measured here; see "
        "`bench/distributed.py:projection`):",
        "",
        *[f"- {line}" for line in projection(s)],
    ]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--rank-main":
        _rank_main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), *sys.argv[5:6])
    else:
        res = measure(repeats=int(os.environ.get("REPEATS", "3")))
        print(json.dumps(res.get("summary", res), indent=2))
        print(markdown(res))
