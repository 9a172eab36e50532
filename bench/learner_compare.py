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

    python -m bench.learner_compare [--batches 256,4096] [--act-envs 64,4096] [--seconds 20]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", default="256,4096", help="minibatch sizes, comma separated")
    parser.add_argument("--seconds", type=float, default=20.0, help="total time budget")
    parser.add_argument("--act-envs", default="64,4096", help="policy act() batch sizes (empty: skip)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

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
        print(json.dumps({"update": rows, "act": act_rows}))
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
