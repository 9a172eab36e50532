"""Environment throughput: fastsample's kernels against gymnasium, measured in one run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import gymnasium as gym
import numpy as np

import fastsample
from bench.common import Measurement, measure_rate

CLASSIC = ("CartPole-v1", "Acrobot-v1", "MountainCar-v0", "MountainCarContinuous-v0", "Pendulum-v1")


def action_pool(space: gym.Space, size: int = 64, seed: int = 0) -> list:
    """Pre-drawn batched actions, so drawing actions is not part of what is timed."""
    space.seed(seed)
    return [space.sample() for _ in range(size)]


def vector_rate(name: str, env, num_envs: int, *, repeats: int, min_time: float, note: str = "") -> Measurement:
    env.reset(seed=0)
    pool = action_pool(env.action_space)
    step = env.step

    def run(k: int) -> None:
        for j in range(k):
            step(pool[j & 63])

    return measure_rate(name, run, num_envs, repeats=repeats, min_time=min_time, note=note)


def single_env_rate(env_id: str, *, repeats: int, min_time: float) -> Measurement:
    """Plain gymnasium env, Python loop, reset when done (the pure-Python baseline)."""
    env = gym.make(env_id)
    env.reset(seed=0)
    env.action_space.seed(0)
    pool = [env.action_space.sample() for _ in range(64)]

    def run(k: int) -> None:
        for j in range(k):
            _, _, term, trunc, _ = env.step(pool[j & 63])
            if term or trunc:
                env.reset()

    return measure_rate(f"gymnasium {env_id} single env", run, 1, repeats=repeats, min_time=min_time)


def cartpole_large_batch(num_envs: int, *, repeats: int, min_time: float) -> list[Measurement]:
    from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv

    return [
        vector_rate("fastsample CartPole-v1", fastsample.make_vec("CartPole-v1", num_envs), num_envs,
                    repeats=repeats, min_time=min_time, note="fresh arrays returned (copy=True, default)"),
        vector_rate("fastsample CartPole-v1 (copy=False)", fastsample.make_vec("CartPole-v1", num_envs, copy=False),
                    num_envs, repeats=repeats, min_time=min_time, note="zero-copy views"),
        vector_rate("gymnasium CartPoleVectorEnv (numpy)", CartPoleVectorEnv(num_envs), num_envs,
                    repeats=repeats, min_time=min_time, note="gymnasium's own vectorised CartPole"),
    ]


def step_overhead(*, repeats: int, min_time: float) -> list[Measurement]:
    return [
        vector_rate("fastsample CartPole-v1, num_envs=1", fastsample.make_vec("CartPole-v1", 1), 1,
                    repeats=repeats, min_time=min_time),
        single_env_rate("CartPole-v1", repeats=repeats, min_time=min_time),
        vector_rate("gymnasium SyncVectorEnv, num_envs=1", gym.make_vec("CartPole-v1", 1, vectorization_mode="sync"), 1,
                    repeats=repeats, min_time=min_time),
    ]


def all_envs(num_envs: int, sync_envs: int, *, repeats: int, min_time: float, env_ids=CLASSIC) -> list[tuple[str, Measurement, Measurement]]:
    rows = []
    for env_id in env_ids:
        ours = vector_rate(f"fastsample {env_id}", fastsample.make_vec(env_id, num_envs), num_envs,
                           repeats=repeats, min_time=min_time)
        ref = vector_rate(f"gymnasium SyncVectorEnv {env_id}",
                          gym.make_vec(env_id, sync_envs, vectorization_mode="sync"), sync_envs,
                          repeats=repeats, min_time=min_time)
        rows.append((env_id, ours, ref))
    return rows


_COMPILE_PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
import fastsample
t_import = time.perf_counter() - t0
out = {"import_s": t_import}
for env_id in sys.argv[1:]:
    t0 = time.perf_counter()
    env = fastsample.make_vec(env_id, 4, autoreset_mode="NextStep")
    env.reset(seed=0)
    env.step(env.action_space.sample())
    out[env_id] = time.perf_counter() - t0
print(json.dumps(out))
"""


def compile_times(env_ids=CLASSIC) -> dict[str, dict[str, float]]:
    """First use in a fresh process with an empty Numba cache, then again with the cache
    that run left behind (``cache=True`` reuses compiled kernels across processes)."""
    results = {}
    with tempfile.TemporaryDirectory() as cache_dir:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
        for label in ("cold (empty cache)", "cached"):
            proc = subprocess.run([sys.executable, "-c", _COMPILE_PROBE, *env_ids], env=env,
                                  capture_output=True, text=True, check=True)
            results[label] = json.loads(proc.stdout)
    return results
