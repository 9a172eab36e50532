"""Runners: ``SyncRunner`` (one process, on-policy, reproducible) and ``AsyncRunner`` (sampler
processes + learner, Sample-Factory style), plus benchmark helpers for the ladder."""

from __future__ import annotations

import statistics
import time
from typing import Any

__all__ = ["benchmark_training", "time_to_solve"]


def benchmark_training(env_id: str = "CartPole-v1", *, num_envs: int = 4096, num_steps: int = 16,
                       update_epochs: int = 4, num_minibatches: int = 4, hidden_sizes: str = "64,64",
                       iterations: int = 6, warmup_iterations: int = 1, seed: int = 1, device: str = "cpu",
                       torch_threads: int = 0, **overrides: Any) -> dict[str, float]:
    """End-to-end PPO training throughput of the sync runner, with its two halves.

    Defaults are CleanRL's network (64x64 tanh, separate actor and critic), 4 epochs, 4
    minibatches, at a large batch (``num_envs * num_steps`` transitions per update). Runs
    ``warmup_iterations`` untimed updates, then ``iterations`` timed ones, and returns
    ``{"sps": end-to-end env steps/s, "sampler_sps": steps/s of the rollout phase alone (envs +
    policy inference), "learner_sps": transitions/s of the update phase alone (GAE excluded,
    ``update_epochs`` passes), "batch": transitions per update, "seconds": timed wall time}``.
    ``torch_threads=0`` lets torch use every core: the sync runner alternates sampling and
    learning, so the learner has the machine to itself while it runs.
    """
    from fastsample.runners.common import resolve_device, tune_malloc
    from fastsample.runners.sync import SyncRunner
    from fastsample.train_config import make_config, validate

    cfg = make_config(env_id, num_envs=num_envs, num_steps=num_steps, update_epochs=update_epochs,
                      num_minibatches=num_minibatches, hidden_sizes=hidden_sizes, seed=seed, device=device,
                      torch_threads=torch_threads, total_steps=num_envs * num_steps * (iterations + warmup_iterations),
                      **{"learning_rate": 2.5e-4, "anneal_lr": True, "ent_coef": 0.01, "clip_vloss": True,
                         "norm_obs": False, "norm_reward": False, **overrides})
    validate(cfg)
    if torch_threads:
        import torch

        torch.set_num_threads(torch_threads)
    tune_malloc()
    runner = SyncRunner(cfg, resolve_device(device))
    try:
        runner.start()
        for _ in range(warmup_iterations):
            runner.iteration_step()
        sample_s = learn_s = 0.0
        steps = 0
        t0 = time.perf_counter()
        for _ in range(iterations):
            out = runner.iteration_step()
            sample_s += out["sample_s"]
            learn_s += out["learn_s"]
            steps += out["steps"]
        wall = time.perf_counter() - t0
    finally:
        runner.close()
    return {"sps": steps / wall, "sampler_sps": steps / sample_s, "learner_sps": steps / learn_s,
            "batch": num_envs * num_steps, "seconds": wall}


def time_to_solve(env_id: str = "CartPole-v1", seeds: tuple[int, ...] = (1, 2, 3, 4, 5), run_root: str = "runs/tts",
                  **overrides: Any) -> dict[str, Any]:
    """Train ``env_id`` with its preset (plus ``overrides``) once per seed, stopping when solved.

    Returns ``{"runs": [summary per seed], "solved_at_s": [...], "median_solved_at_s": ...,
    "eval_returns": [...], "solved": count}``; an unsolved run counts as ``inf`` in the median.
    """
    from fastsample.train import train
    from fastsample.train_config import make_config

    runs = []
    for seed in seeds:
        cfg = make_config(env_id, seed=seed, progress=False, run_dir=f"{run_root}/{env_id}__{seed}", **overrides)
        runs.append(train(cfg, quiet=True, overwrite=True))  # a benchmark: reruns replace its runs
    times = [r["solved_at_s"] if r["solved"] else float("inf") for r in runs]
    return {"runs": runs, "solved_at_s": times, "median_solved_at_s": statistics.median(times),
            "eval_returns": [r["eval_return"] for r in runs], "solved": sum(r["solved"] for r in runs)}
