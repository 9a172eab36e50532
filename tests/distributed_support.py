"""Run by ``torchrun`` from tests/test_distributed_ppo.py: one rank's side of a check, with the
result written by rank 0 as JSON to the path given.

    python -m torch.distributed.run --nproc-per-node 2 tests/distributed_support.py OUT

Both checks, for both learner backends. ``check_update``: each rank takes PPO updates on its own random batch with the gradient averaged
over the ranks; rank 0 then takes the same updates in one process on the ranks' batches combined
(each minibatch = the ranks' minibatches side by side, the order fixed), and reports the largest
parameter difference. ``check_replicas``: real training iterations (the runner over
``rank_config`` + ``attach``, as ``fastsample train --distributed`` builds it); rank 0 reports
whether every rank's parameters and normalisation statistics have the same bits.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _InOrder:
    """A stand-in for the learner's shuffle stream: minibatches in batch order."""

    def permutation(self, n):
        return np.arange(n, dtype=np.int64)


def _fixed_order(learner) -> None:
    """Minibatches in batch order (undone by :func:`_shuffled_again`)."""
    if learner.backend == "compiled":
        learner.shuffle_rng = _InOrder()
    else:
        import torch

        torch.randperm = lambda n, generator=None, device=None: torch.arange(n, device=device)


def _shuffled_again() -> None:
    if "torch" in sys.modules:
        import torch

        torch.randperm = _RANDPERM


_RANDPERM = None


def _random_batch(rng, n: int, obs_dim: int, n_actions: int) -> dict[str, np.ndarray]:
    return {"obs": rng.standard_normal((n, obs_dim)).astype(np.float32),
            "actions": rng.integers(0, n_actions, n).astype(np.int64),
            "logprobs": (np.log(0.5) + 0.1 * rng.standard_normal(n)).astype(np.float32),
            "values": rng.standard_normal(n).astype(np.float32),
            "advantages": rng.standard_normal(n).astype(np.float32),
            "returns": rng.standard_normal(n).astype(np.float32)}


def check_update(ranks, backend: str) -> dict:
    try:
        return _check_update(ranks, backend)
    finally:
        _shuffled_again()


def _check_update(ranks, backend: str) -> dict:
    import gymnasium as gym

    from fastsample.learning.learner import make_learner
    from fastsample.train_config import make_config

    cfg = make_config("CartPole-v1", backend=backend, num_envs=8, num_steps=16, num_minibatches=4, update_epochs=2,
                      norm_adv=True, clip_vloss=True, max_grad_norm=0.5, ent_coef=0.01)
    obs_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
    act_space = gym.spaces.Discrete(2)
    n, mb = cfg.num_envs * cfg.num_steps, cfg.num_envs * cfg.num_steps // cfg.num_minibatches
    batches = [_random_batch(np.random.default_rng(100 + r), n, 4, 2) for r in range(ranks.world_size)]

    learner = make_learner(cfg, obs_space, act_space, "cpu", backend=backend)
    start = learner.flat_params().copy()
    learner.grad_hook = ranks.all_reduce_mean_
    learner.adv_moments_hook = ranks.all_reduce_sum_
    _fixed_order(learner)
    for _ in range(2):
        learner.update(batches[ranks.rank])
    distributed = learner.flat_params().copy()
    if not ranks.is_main:
        return {}

    # one process, the combined batch: minibatch m is every rank's minibatch m side by side
    combined = {k: np.concatenate([b[k][m * mb:(m + 1) * mb] for m in range(cfg.num_minibatches) for b in batches])
                for k in batches[0]}
    single_cfg = make_config("CartPole-v1", backend=backend, num_envs=cfg.num_envs * ranks.world_size,
                             num_steps=cfg.num_steps, num_minibatches=4, update_epochs=2, norm_adv=True,
                             clip_vloss=True, max_grad_norm=0.5, ent_coef=0.01)
    single = make_learner(single_cfg, obs_space, act_space, "cpu", backend=backend)
    single.set_flat_params(start)
    single.adv_moments_hook = lambda m: None  # the same normalisation formula, over this batch only
    _fixed_order(single)
    for _ in range(2):
        single.update(combined)
    alone = single.flat_params()
    return {"max_abs_diff": float(np.abs(distributed - alone).max()),
            "max_abs_change": float(np.abs(alone - start).max()), "size": int(alone.size)}


def check_replicas(ranks, backend: str) -> dict:
    from fastsample.distributed import attach, rank_config
    from fastsample.runners.sync import SyncRunner
    from fastsample.train_config import make_config

    cfg = make_config("CartPole-v1", backend=backend, num_envs=16, num_steps=32, norm_obs=True, norm_reward=True,
                      seed=3)
    runner = SyncRunner(rank_config(cfg, ranks), "cpu")
    try:
        attach(runner, ranks)
        runner.start()
        start = runner.learner.flat_params().copy()
        for _ in range(6):
            runner.iteration_step()
        params = ranks.all_gather(np.ascontiguousarray(runner.learner.flat_params(), np.float32))
        obs_mean = ranks.all_gather(np.ascontiguousarray(runner.normalizer.obs_rms.mean))
        ret_var = ranks.all_gather(np.array([runner.normalizer.ret_rms.var], np.float64))
        first_obs = ranks.all_gather(np.ascontiguousarray(runner.buf["obs"][0, :, :], np.float32))
    finally:
        runner.close()
    return {"params_equal": bool(all(np.array_equal(p.view(np.uint32), params[0].view(np.uint32)) for p in params)),
            "norm_equal": bool(all(np.array_equal(m, obs_mean[0]) for m in obs_mean)
                               and all(np.array_equal(v, ret_var[0]) for v in ret_var)),
            "trained": bool(np.abs(params[0] - start).max() > 0),
            "envs_differ": bool(not np.array_equal(first_obs[0], first_obs[1])),
            "global_step": int(runner.global_step)}


def main(argv: list[str]) -> int:
    from fastsample.distributed import from_environment

    global _RANDPERM
    (out,) = argv
    ranks = from_environment("cpu")
    import torch

    _RANDPERM = torch.randperm
    try:
        result = {f"{check.__name__}[{backend}]": check(ranks, backend)
                  for check in (check_update, check_replicas) for backend in ("compiled", "torch")}
        if ranks.is_main:
            result["world_size"] = ranks.world_size
            with open(out, "w") as f:
                json.dump(result, f)
    finally:
        ranks.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
