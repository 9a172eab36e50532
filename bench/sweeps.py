"""Sweeps: steps/s against num_envs and against worker processes, and every kernel against
gymnasium's SyncVectorEnv."""

from __future__ import annotations

from bench.common import Measurement, missing
from bench.envs import gym_reference, sync_vector_env, vector_rate
from bench.peers import envpool_rate

ENV_ID = "CartPole-v1"


def impossible_workers(workers: list[int], num_envs: int) -> list[str]:
    """Messages for sweep points that cannot run (each worker needs at least one env)."""
    return [f"{w} workers > num_envs={num_envs}: each worker needs at least one env" for w in workers if w > num_envs]


def num_envs_series(ctx) -> list[str]:
    s = ctx.settings
    return ["fastsample, in-process", f"fastsample, {s.workers} workers", "gymnasium CartPoleVectorEnv (NumPy)",
            f"envpool sync, {s.cores} threads", "gymnasium SyncVectorEnv"]


def sweep_point(ctx, series: str, n: int) -> Measurement:
    """One point of the num_envs sweep."""
    s = ctx.settings
    names = num_envs_series(ctx)
    label = f"{series} @ {n}"
    if series == names[0]:
        return ctx.fastsample_rate(label, n, 0)
    if series == names[1]:
        if n < s.workers:
            return missing(label, f"skipped: {s.workers} workers > {n} envs")
        return ctx.fastsample_rate(label, n, s.workers)
    if series == names[2]:
        from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv

        return ctx.cached(("cartpole-vector", n), label, lambda: vector_rate(
            label, CartPoleVectorEnv(num_envs=n), n, repeats=s.repeats, min_time=s.min_time))
    if series == names[3]:
        return envpool_rate(ctx, label, n, s.cores)
    if n > s.sync_sweep_max:
        return missing(label, f"skipped above {s.sync_sweep_max} envs (a Python loop over envs: flat in N)")
    return ctx.cached(("sync-vector", ENV_ID, n), label, lambda: vector_rate(
        label, sync_vector_env(ENV_ID, n), n, repeats=s.repeats, min_time=s.min_time))


def workers_point(ctx, series: str, w: int) -> Measurement:
    """One point of the workers sweep (``w`` = 0: in-process, for reference)."""
    s = ctx.settings
    n = s.sweep_workers_n
    label = f"{series} @ {w}"
    if w > n:
        return missing(label, impossible_workers([w], n)[0])
    if series == "fastsample":
        return ctx.fastsample_rate(label, n, w)
    if w == 0:
        return missing(label, "n/a")
    return envpool_rate(ctx, label, n, w)


def env_table_row(ctx, env_id: str) -> dict:
    """fastsample (in-process) vs gymnasium SyncVectorEnv (and envpool when it has the env),
    all at ``settings.table_n`` envs."""
    s = ctx.settings
    n = s.table_n
    row = {"env": env_id, "fastsample": ctx.fastsample_rate(f"fastsample {env_id}", n, 0, env_id=env_id)}
    ref = gym_reference(env_id)
    if ref is None:
        row["sync"] = missing(f"SyncVectorEnv {env_id}", "no gymnasium env registered under this id")
    else:
        row["sync"] = ctx.cached(("sync-vector", env_id, n), f"SyncVectorEnv {env_id}", lambda: vector_rate(
            f"SyncVectorEnv {env_id}", sync_vector_env(env_id, n), n, repeats=s.repeats, min_time=s.min_time))
    from bench.peers import _envpool

    envpool = _envpool()
    if envpool is not None and env_id not in envpool.list_all_envs():
        row["envpool"] = missing(f"envpool {env_id}", "envpool has no such env")
    else:
        row["envpool"] = envpool_rate(ctx, f"envpool {env_id}", n, s.cores, env_id=env_id)
    return row
