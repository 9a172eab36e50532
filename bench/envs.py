"""Env-throughput helpers shared by the ladder, the peers and the sweeps, and the Numba
compile-time probe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import gymnasium as gym

from bench.common import Measurement, measure_rate

CLASSIC = ("CartPole-v1", "Acrobot-v1", "MountainCar-v0", "MountainCarContinuous-v0", "Pendulum-v1")
POOL = 64  # pre-drawn action batches, cycled


def action_pool(space: gym.Space, size: int = POOL, seed: int = 0) -> list:
    """Pre-drawn batched actions, so drawing actions is not part of what is timed."""
    space.seed(seed)
    return [space.sample() for _ in range(size)]


def vector_rate(name: str, env, num_envs: int, *, repeats: int, min_time: float, note: str = "",
                close: bool = True, pool: list | None = None) -> Measurement:
    """steps/s of ``env.step`` (a gymnasium-style vector env) with pre-drawn actions."""
    try:
        env.reset(seed=0)
        if pool is None:
            pool = action_pool(env.action_space)
        step = env.step

        def run(k: int) -> None:
            for j in range(k):
                step(pool[j % POOL])

        return measure_rate(name, run, num_envs, repeats=repeats, min_time=min_time, note=note)
    finally:
        if close:
            env.close()


def single_env_rate(env_id: str, *, repeats: int, min_time: float, name: str | None = None,
                    note: str = "") -> Measurement:
    """Plain gymnasium env (``gym.make``), Python loop, reset when done (the pure-Python baseline)."""
    env = gym.make(env_id)
    env.reset(seed=0)
    env.action_space.seed(0)
    pool = [env.action_space.sample() for _ in range(POOL)]

    def run(k: int) -> None:
        for j in range(k):
            _, _, term, trunc, _ = env.step(pool[j % POOL])
            if term or trunc:
                env.reset()

    try:
        return measure_rate(name or f"gymnasium {env_id} single env", run, 1, repeats=repeats,
                            min_time=min_time, note=note)
    finally:
        env.close()


def sync_vector_env(env_id: str, num_envs: int):
    """gymnasium's SyncVectorEnv of ``gym.make(env_id)`` (copy=True, NEXT_STEP autoreset); for
    fastsample's MinAtar ids (``MinAtar-<Game>-v1``) the ``minatar`` package's own envs in a
    Python loop (:class:`bench.minatar_compare.PackageVector`: ``act`` + ``state`` per step)."""
    if env_id.startswith("MinAtar-"):
        from bench.minatar_compare import PackageVector

        return PackageVector(env_id, num_envs)
    return gym.make_vec(env_id, num_envs, vectorization_mode="sync")


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


def kernel_ids() -> list[str]:
    """Every registered kernel except the tutorial example (GridWorld) and MinAtar's -v0 ids
    (the same games as -v1 with all six actions)."""
    import envs_numba

    return [k for k in envs_numba.KERNELS
            if k != "GridWorld-v0" and not (k.startswith("MinAtar-") and k.endswith("-v0"))]


def gym_reference(env_id: str) -> str | None:
    """The gymnasium id of ``env_id``'s reference env, when gymnasium has one registered. For
    fastsample's MinAtar ids (``MinAtar-<Game>-v1``), ``"minatar package"`` when the ``minatar``
    package is installed: :func:`sync_vector_env` then measures the package itself."""
    import fastsample  # noqa: F401  (registers fastsample/<Id>, which we must not pick)

    if env_id.startswith("MinAtar-"):
        try:
            import minatar  # noqa: F401
        except ImportError:
            return None
        return "minatar package"

    if env_id.startswith("MinAtar/") and env_id not in gym.registry:
        try:  # the reference package registers MinAtar/<Game>-v0/-v1 on request
            from minatar.gym import register_envs

            register_envs()
        except Exception:
            pass
    return env_id if env_id in gym.registry else None


def quiet_gym_warnings() -> None:
    """envpool builds float64 Box bounds, which makes gymnasium warn on every make."""
    import warnings

    warnings.filterwarnings("ignore", message=".*precision lowered by casting.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
