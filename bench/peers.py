"""Peers, measured side by side in the same run: envpool, gymnasium's AsyncVectorEnv, SB3's
DummyVecEnv/SubprocVecEnv, and fastsample's ProcessVectorEnv on the same pure-Python envs.

Peers that are not installed come back as a row whose status says "not installed" (with the
pip command), never silently dropped.
"""

from __future__ import annotations

import functools

import gymnasium as gym
import numpy as np

from bench.common import Measurement, measure_rate, missing
from bench.envs import POOL, quiet_gym_warnings, sync_vector_env, vector_rate

ENV_ID = "CartPole-v1"
ENVPOOL_MISSING = "not installed (pip install envpool; part of the [bench] extra, Linux only)"
SB3_MISSING = "not installed (pip install stable-baselines3; part of the [bench] extra)"


def _actions(n: int, dtype=np.int64, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 2, n).astype(dtype) for _ in range(POOL)]


def _envpool():
    try:
        quiet_gym_warnings()
        import envpool
    except ImportError:
        return None
    return envpool


# -- batched peers at the ladder's num_envs ----------------------------------------------------

def envpool_sync(ctx) -> Measurement:
    s = ctx.settings
    name = f"envpool sync ({s.cores} threads)"
    envpool = _envpool()
    if envpool is None:
        return missing(name, ENVPOOL_MISSING)
    return envpool_rate(ctx, name, s.num_envs, s.cores)


def envpool_rate(ctx, name: str, num_envs: int, threads: int, env_id: str = ENV_ID) -> Measurement:
    s = ctx.settings
    envpool = _envpool()
    if envpool is None:
        return missing(name, ENVPOOL_MISSING)

    def make() -> Measurement:
        env = envpool.make(env_id, env_type="gymnasium", num_envs=num_envs, batch_size=num_envs,
                           num_threads=min(threads, num_envs), seed=0)
        try:
            env.reset()
            space = gym.vector.utils.batch_space(env.action_space, num_envs)
            space.seed(0)
            if isinstance(env.action_space, gym.spaces.Discrete):
                pool = [a.astype(np.int32) for a in (space.sample() for _ in range(POOL))]
            else:
                pool = [space.sample() for _ in range(POOL)]
            step = env.step

            def run(k: int) -> None:
                for j in range(k):
                    step(pool[j % POOL])

            return measure_rate(name, run, num_envs, repeats=s.repeats, min_time=s.min_time,
                                note=f"C++ thread pool, {min(threads, num_envs)} threads, batch_size = num_envs")
        finally:
            env.close()

    return ctx.cached(("envpool", env_id, num_envs, threads), name, make)


def envpool_async(ctx) -> Measurement:
    s = ctx.settings
    name = f"envpool async ({s.cores} threads, batch_size num_envs/2)"
    envpool = _envpool()
    if envpool is None:
        return missing(name, ENVPOOL_MISSING)
    batch = s.num_envs // 2
    env = envpool.make(ENV_ID, env_type="gymnasium", num_envs=s.num_envs, batch_size=batch,
                       num_threads=s.cores, seed=0)
    try:
        pool = _actions(batch, np.int32)
        env.async_reset()

        def run(k: int) -> None:
            for j in range(k):
                info = env.recv()[4]
                env.send(pool[j % POOL], info["env_id"])

        return measure_rate(name, run, batch, repeats=s.repeats, min_time=s.min_time,
                            note="send/recv as R5")
    finally:
        env.close()


# -- pure-Python envs: one process per env (AsyncVectorEnv, SubprocVecEnv) vs ProcessVectorEnv ---

def _python_fns(n: int) -> list:
    return [functools.partial(gym.make, ENV_ID) for _ in range(n)]


def python_sync(ctx) -> Measurement:
    s = ctx.settings
    name = f"gymnasium SyncVectorEnv ({s.small_n} Python envs)"

    def make() -> Measurement:
        return vector_rate(name, sync_vector_env(ENV_ID, s.small_n), s.small_n, repeats=s.repeats,
                           min_time=s.min_time, pool=_actions(s.small_n), note="one process")

    return ctx.cached(("py-sync", s.small_n), name, make)


def python_async(ctx) -> Measurement:
    s = ctx.settings
    name = f"gymnasium AsyncVectorEnv ({s.small_n} Python envs)"

    def make() -> Measurement:
        env = gym.vector.AsyncVectorEnv(_python_fns(s.small_n))
        return vector_rate(name, env, s.small_n, repeats=s.repeats, min_time=s.min_time, pool=_actions(s.small_n),
                           note=f"{s.small_n} processes (one per env), shared memory, pipes")

    return ctx.cached(("py-async", s.small_n), name, make)


def python_process(ctx) -> Measurement:
    s = ctx.settings
    name = f"fastsample ProcessVectorEnv ({s.small_n} Python envs, {s.workers} workers)"

    def make() -> Measurement:
        from fastsample import ProcessVectorEnv

        env = ProcessVectorEnv(_python_fns(s.small_n), num_workers=min(s.workers, s.small_n))
        return vector_rate(name, env, s.small_n, repeats=s.repeats, min_time=s.min_time, pool=_actions(s.small_n),
                           note=f"{min(s.workers, s.small_n)} processes, shared memory, eventfd")

    return ctx.cached(("py-process", s.small_n, s.workers), name, make)


def python_process_inline(ctx) -> Measurement:
    s = ctx.settings
    k = min(s.workers, s.small_n)
    name = f"fastsample ProcessVectorEnv inline=True ({s.small_n} Python envs, {k} slices)"

    def make() -> Measurement:
        from fastsample import ProcessVectorEnv

        env = ProcessVectorEnv(_python_fns(s.small_n), num_workers=k, inline=True)
        return vector_rate(name, env, s.small_n, repeats=s.repeats, min_time=s.min_time, pool=_actions(s.small_n),
                           note=f"the caller steps one slice, {k - 1} worker process(es) the others")

    return ctx.cached(("py-process-inline", s.small_n, s.workers), name, make)


def _sb3_rate(ctx, name: str, env, n: int, note: str) -> Measurement:
    s = ctx.settings
    try:
        env.seed(0)
        env.reset()
        pool = _actions(n)
        step = env.step

        def run(k: int) -> None:
            for j in range(k):
                step(pool[j % POOL])

        return measure_rate(name, run, n, repeats=s.repeats, min_time=s.min_time, note=note)
    finally:
        env.close()


def sb3_dummy(ctx) -> Measurement:
    s = ctx.settings
    name = f"SB3 DummyVecEnv ({s.small_n} Python envs)"
    try:
        from stable_baselines3.common.vec_env import DummyVecEnv
    except ImportError:
        return missing(name, SB3_MISSING)
    return _sb3_rate(ctx, name, DummyVecEnv(_python_fns(s.small_n)), s.small_n, "one process")


def sb3_subproc(ctx) -> Measurement:
    s = ctx.settings
    name = f"SB3 SubprocVecEnv ({s.small_n} Python envs)"
    try:
        from stable_baselines3.common.vec_env import SubprocVecEnv
    except ImportError:
        return missing(name, SB3_MISSING)
    import sys

    method = "fork" if sys.platform.startswith("linux") else None  # as AsyncVectorEnv and ProcessVectorEnv here
    return _sb3_rate(ctx, name, SubprocVecEnv(_python_fns(s.small_n), start_method=method), s.small_n,
                     f"{s.small_n} processes (one per env), pipes, start method {method or 'default'}")
