"""One PPO minibatch update: the compiled learner (fastsample.learning.compiled) against the torch
learner (fastsample.learning.ppo.ppo_update), in the same process, same machine, same run.

CleanRL's CartPole network (actor and critic 4 -> 64 -> 64 -> {2, 1}, tanh), the trainer's loss
options (clip 0.2, value clipping, entropy 0.01, advantage normalisation, grad-norm clipping
0.5, Adam eps 1e-5), torch on one intra-op thread (the trainer's --torch-threads default) with
the trainer's malloc settings. Each timed call is ``update_epochs`` full-batch minibatch updates
(shuffle, gather, forward, loss, backward, clipping, Adam, stats) through each backend's own
update loop; the figure is the median over repeats of (call time / updates), the backends
timed in turn within each repeat.

Also one policy ``act()`` call (rollout inference) for 64 and 4096 envs.

Steps to solve (``--solve-seeds``): ``fastsample train --env CartPole-v1 --seed S --backend B`` for
both backends and every seed, each a fresh process started as the console script starts it (its
whole wall time is measured too), and whether the two distributions of env steps to solve differ:
the exact two-sided Mann-Whitney U (Wilcoxon rank-sum) test, its null distribution enumerated over
every split of the pooled runs (no normal approximation; ties get average ranks), and as a second
opinion an exact permutation test on the difference of the mean log steps. An unsolved run counts
as more steps than any solved one.

    python -m bench.learner_compare [--batches 256,4096] [--act-envs 64,4096] [--seconds 20]
    python -m bench.learner_compare --solve-seeds 0-9 [--batches "" --act-envs ""]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _batch(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    f = lambda *s: rng.normal(size=s).astype(np.float32)  # noqa: E731
    return {"obs": f(n, 4), "actions": rng.integers(0, 2, n),
            "logprobs": np.log(np.full(n, 0.5, np.float32)) + 0.1 * f(n),
            "advantages": f(n), "returns": f(n), "values": f(n)}


def _interleaved_medians(calls: dict, updates: int, budget_s: float, min_repeats: int = 5) -> dict:
    """Median seconds per update of each call, the calls timed in turn, in a shuffled order,
    within every repeat (so that load from other processes falls on all of them alike)."""
    for call in calls.values():
        call()  # warm-up (JIT, allocator)
    times: dict = {name: [] for name in calls}
    t_end = time.perf_counter() + budget_s
    repeats = 0
    order = list(calls)
    rng = random.Random(0)
    while repeats < min_repeats or (time.perf_counter() < t_end and repeats < 200):
        rng.shuffle(order)  # no call always follows the same one (torch's leaves the caches cold)
        for name in order:
            call = calls[name]
            t0 = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - t0) / updates)
        repeats += 1
    return ({name: statistics.median(ts) for name, ts in times.items()}
            | {f"{name}_min": min(ts) for name, ts in times.items()} | {"repeats": repeats})


def compare(batch_size: int, budget_s: float, updates: int = 8) -> dict:
    import gymnasium as gym
    import torch

    from fastsample.learning.compiled import CompiledPPOLearner
    from fastsample.learning.ppo import ActorCritic, ppo_update

    loss = dict(clip_coef=0.2, vf_coef=0.5, ent_coef=0.01, max_grad_norm=0.5, norm_adv=True, clip_vloss=True)
    b = _batch(batch_size)
    torch.manual_seed(0)
    model = ActorCritic(4, gym.spaces.Discrete(2), (64, 64), "tanh")
    flat = model.flat_parameters()
    opt = torch.optim.Adam([flat], lr=2.5e-4, eps=1e-5)
    tb = {k: torch.from_numpy(v) for k, v in b.items()}
    gen = torch.Generator().manual_seed(0)
    learner = CompiledPPOLearner(4, 2, True, (64, 64), "tanh", learning_rate=2.5e-4, max_minibatch=batch_size, **loss)
    learner.load_state_arrays({k: v.detach().numpy() for k, v in model.state_dict().items()})
    rng = np.random.default_rng(0)

    def run_torch():
        ppo_update(model, opt, tb, update_epochs=updates, num_minibatches=1, generator=gen, **loss)

    def run_compiled():
        learner.update(b, update_epochs=updates, num_minibatches=1, rng=rng)

    idx = np.arange(batch_size)

    def run_compiled_call():  # the kernel call alone: no shuffle, no Python loop
        for _ in range(updates):
            learner.minibatch_update(b["obs"], b["actions"], b["logprobs"], b["advantages"], b["returns"],
                                     b["values"], idx)

    m = _interleaved_medians({"torch": run_torch, "compiled": run_compiled, "kernel": run_compiled_call},
                             updates, budget_s)
    return {"batch": batch_size, "torch_ms": round(m["torch"] * 1e3, 4), "compiled_ms": round(m["compiled"] * 1e3, 4),
            "compiled_kernel_ms": round(m["kernel"] * 1e3, 4), "speedup": round(m["torch"] / m["compiled"], 2),
            "torch_min_ms": round(m["torch_min"] * 1e3, 4), "compiled_min_ms": round(m["compiled_min"] * 1e3, 4),
            "repeats": m["repeats"]}


def compare_act(num_envs: int, budget_s: float, calls: int = 20) -> dict:
    """One rollout step's policy call (sample an action, its log-prob and the value) for
    ``num_envs`` observations: ``ActorCritic.act`` under ``torch.no_grad`` (with a torch generator)
    against ``CompiledPPOLearner.act`` (uniforms drawn by numpy into a preallocated buffer)."""
    import gymnasium as gym
    import torch

    from fastsample.learning.compiled import CompiledPPOLearner
    from fastsample.learning.ppo import ActorCritic

    torch.manual_seed(0)
    model = ActorCritic(4, gym.spaces.Discrete(2), (64, 64), "tanh")
    learner = CompiledPPOLearner(4, 2, True, (64, 64), "tanh", max_minibatch=num_envs)
    learner.load_state_arrays({k: v.detach().numpy() for k, v in model.state_dict().items()})
    obs = np.random.default_rng(0).normal(size=(num_envs, 4)).astype(np.float32)
    gen = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    noise = np.empty((num_envs, 2), np.float32)
    out = (np.empty(num_envs, np.int64), np.empty(num_envs, np.float32), np.empty(num_envs, np.float32))

    def run_torch():
        with torch.no_grad():
            for _ in range(calls):
                model.act(torch.from_numpy(obs), generator=gen)

    def run_compiled():
        for _ in range(calls):
            rng.random(dtype=np.float32, out=noise)
            learner.act(obs, noise, out=out)

    m = _interleaved_medians({"torch": run_torch, "compiled": run_compiled}, calls, budget_s)
    return {"num_envs": num_envs, "torch_us": round(m["torch"] * 1e6, 1), "compiled_us": round(m["compiled"] * 1e6, 1),
            "torch_min_us": round(m["torch_min"] * 1e6, 1), "compiled_min_us": round(m["compiled_min"] * 1e6, 1),
            "speedup": round(m["torch"] / m["compiled"], 2), "repeats": m["repeats"]}


# -- steps to solve: torch against compiled -----------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
SOLVE_SEEDS = tuple(range(10))  # the seeds of the steps-to-solve comparison (python -m bench --only learners)
ENTRY = "import sys; from fastsample.cli import main; sys.exit(main())"  # what the console script runs


def train_command(seed: int, backend: str, env_id: str = "CartPole-v1", extra: tuple[str, ...] = ()) -> dict:
    """``fastsample train --env ENV --seed SEED --backend BACKEND`` in a fresh process (started as
    the ``fastsample`` console script starts it, in a temporary run directory); its summary plus
    ``command_s``, the whole process's wall time from launch to exit (Numba's cache and Python's
    bytecode cache warm, as after ``pip install``)."""
    from bench.common import warm_bytecode

    warm_bytecode()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    with tempfile.TemporaryDirectory(prefix="fastsample-solve-") as tmp:
        run_dir = Path(tmp) / "run"
        cmd = [sys.executable, "-c", ENTRY, "train", "--env", env_id, "--seed", str(seed), "--backend", backend,
               "--run-dir", str(run_dir), "--no-progress", *extra]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise RuntimeError(f"fastsample train --seed {seed} --backend {backend} failed ({proc.returncode}): {tail}")
        summary = json.loads((run_dir / "summary.json").read_text())
    keys = ("backend", "solved", "solved_at_s", "solved_at_steps", "steps", "wall_s", "startup_s", "sps")
    return {**{k: summary.get(k) for k in keys}, "seed": seed, "command_s": round(wall, 3)}


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``x``, ties sharing their average rank."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), np.float64)
    xs = x[order]
    i = 0
    while i < len(xs):
        j = i
        while j + 1 < len(xs) and xs[j + 1] == xs[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _splits(n_total: int, n_a: int, max_exact: int = 2_000_000, samples: int = 200_000, seed: int = 0):
    """Index arrays (splits, n_a) of the first group over every split of ``n_total`` pooled values
    (exact), or ``samples`` random ones (Monte Carlo) when there are more than ``max_exact``;
    ``(array, exact)``."""
    if math.comb(n_total, n_a) <= max_exact:
        return np.array(list(itertools.combinations(range(n_total), n_a)), np.int64), True
    rng = np.random.default_rng(seed)
    return np.argsort(rng.random((samples, n_total)), axis=1)[:, :n_a], False


def two_sample_tests(a: list[float], b: list[float]) -> dict:
    """The exact two-sided Mann-Whitney U test and an exact permutation test on the difference of
    the means of log(values), both by enumerating every split of the pooled sample (Monte Carlo
    beyond 2e6 splits). Infinite values (unsolved runs) rank above every finite one; for the
    means they are replaced by twice the largest finite value."""
    x = np.array(list(a) + list(b), np.float64)
    n_a = len(a)
    if n_a == 0 or len(b) == 0:
        return {}
    finite = x[np.isfinite(x)]
    cap = 2 * finite.max() if finite.size else 1.0
    ranks = _average_ranks(np.where(np.isfinite(x), x, np.inf))
    logs = np.log(np.where(np.isfinite(x), x, cap))
    idx, exact = _splits(len(x), n_a)
    # U of the first group for every split; two-sided: as far from its mean n_a n_b / 2 as observed
    u_all = ranks[idx].sum(1) - n_a * (n_a + 1) / 2
    u_obs = ranks[:n_a].sum() - n_a * (n_a + 1) / 2
    centre = n_a * len(b) / 2
    eps = 1e-9
    p_u = float(np.mean(np.abs(u_all - centre) >= abs(u_obs - centre) - eps))
    total = logs.sum()
    d_all = logs[idx].sum(1) / n_a - (total - logs[idx].sum(1)) / len(b)
    d_obs = logs[:n_a].mean() - logs[n_a:].mean()
    p_perm = float(np.mean(np.abs(d_all) >= abs(d_obs) - eps))
    return {"test": "two-sided exact Mann-Whitney U (Wilcoxon rank-sum)", "U": float(u_obs), "p_value": p_u,
            "perm_test": "two-sided exact permutation test, difference of mean log steps",
            "mean_log_diff": float(d_obs), "perm_p_value": p_perm, "exact": exact, "splits": int(len(idx)),
            "n": [n_a, len(b)]}


def solve_comparison(seeds: list[int], backends: tuple[str, ...] = ("torch", "compiled")) -> dict:
    """Every backend on every seed (interleaved, so that load falls on both alike), then the
    tests on env steps to solve: ``{"runs": {backend: [train_command results]}, "tests": ...}``."""
    runs: dict[str, list[dict]] = {b: [] for b in backends}
    for seed in seeds:
        for b in backends:
            runs[b].append(train_command(seed, b))
    return {"runs": runs, "tests": steps_tests(runs)}


def steps_tests(runs: dict[str, list[dict]]) -> dict:
    def steps(rs):
        return [r["solved_at_steps"] if r["solved"] else math.inf for r in rs]

    return two_sample_tests(steps(runs.get("torch", [])), steps(runs.get("compiled", [])))


def _parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            lo, hi = part.split("-")
            seeds += list(range(int(lo), int(hi) + 1))
        elif part:
            seeds.append(int(part))
    return seeds


def print_solve(result: dict) -> None:
    runs = result["runs"]
    print("fastsample train --env CartPole-v1, each a fresh process: env steps to solve (trainer's time to "
          "solve, whole command's wall time)")
    print(f"{'seed':>4}  " + "  ".join(f"{b:>34}" for b in runs))
    for i, seed in enumerate(r["seed"] for r in next(iter(runs.values()))):
        cells = []
        for b in runs:
            r = runs[b][i]
            steps = f"{r['solved_at_steps']:,}" if r["solved"] else "unsolved"
            cells.append(f"{steps:>9} ({r['solved_at_s'] or r['wall_s']:5.2f} s, command {r['command_s']:5.2f} s)")
        print(f"{seed:>4}  " + "  ".join(f"{c:>34}" for c in cells))
    for b, rs in runs.items():
        print(f"{b}: median steps {statistics.median(r['solved_at_steps'] or math.inf for r in rs):,.0f}, "
              f"median command {statistics.median(r['command_s'] for r in rs):.2f} s, "
              f"max command {max(r['command_s'] for r in rs):.2f} s")
    t = result["tests"]
    if t:
        print(f"{t['test']}: U = {t['U']:g}, p = {t['p_value']:.3f}; {t['perm_test']}: "
              f"diff = {t['mean_log_diff']:+.3f}, p = {t['perm_p_value']:.3f} "
              f"({'exact, ' if t['exact'] else 'Monte Carlo, '}{t['splits']:,} splits)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", default="256,4096", help="minibatch sizes, comma separated")
    parser.add_argument("--seconds", type=float, default=20.0, help="total time budget")
    parser.add_argument("--act-envs", default="64,4096", help="policy act() batch sizes (empty: skip)")
    parser.add_argument("--solve-seeds", default="", help="seeds of the steps-to-solve comparison, e.g. 0-9 "
                                                               "(empty: skip)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    solve = solve_comparison(_parse_seeds(args.solve_seeds)) if args.solve_seeds else None
    if solve is not None and not args.json:
        print_solve(solve)
    if not args.batches and not args.act_envs:
        if args.json:
            print(json.dumps({"solve": solve}))
        return 0

    import torch

    from fastsample.runners.common import tune_malloc

    torch.set_num_threads(1)
    tune_malloc()
    sizes = [int(s) for s in args.batches.split(",") if s]
    act_sizes = [int(s) for s in args.act_envs.split(",") if s]
    share = args.seconds / (len(sizes) + 0.5 * len(act_sizes))
    rows = [compare(n, share) for n in sizes]
    act_rows = [compare_act(n, share / 2) for n in act_sizes]
    if args.json:
        print(json.dumps({"update": rows, "act": act_rows, "solve": solve}))
    else:
        print("median (min) ms per minibatch update, the backends timed in turn")
        print(f"{'minibatch':>9}  {'torch':>16}  {'compiled':>16}  {'kernel call':>11}  {'speedup':>7}  repeats")
        for r in rows:
            print(f"{r['batch']:>9}  {r['torch_ms']:>7.3f} ({r['torch_min_ms']:>6.3f})  "
                  f"{r['compiled_ms']:>7.3f} ({r['compiled_min_ms']:>6.3f})  {r['compiled_kernel_ms']:>11.3f}  "
                  f"{r['speedup']:>6.2f}x  {r['repeats']}")
        if act_rows:
            print("median (min) us per policy act() call (sample, log-prob, value)")
            print(f"{'envs':>9}  {'torch':>16}  {'compiled':>16}  {'speedup':>7}  repeats")
            for r in act_rows:
                print(f"{r['num_envs']:>9}  {r['torch_us']:>7.1f} ({r['torch_min_us']:>6.1f})  "
                      f"{r['compiled_us']:>7.1f} ({r['compiled_min_us']:>6.1f})  {r['speedup']:>6.2f}x  {r['repeats']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
