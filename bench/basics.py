"""The measurements RESULTS.md has always had, and the worker engine's.

* CartPole-v1 at num_envs=4096 on one core: fastsample (copy=True / copy=False) against
  gymnasium's NumPy ``CartPoleVectorEnv``;
* ``step()`` overhead at num_envs=1 against a plain gymnasium env and ``SyncVectorEnv``;
* engine: Numba CartPole with worker processes against one in-process core; ProcessVectorEnv
  against AsyncVectorEnv and SyncVectorEnv on the same pure-Python envs; the round-trip
  latency of one synchronous step through the engine.

The ProcessVectorEnv row ``engine.py_process`` measures the constructor's defaults
(``ProcessVectorEnv(env_fns)``: as many slices as usable CPUs, and whether the caller steps one
of them as the default decides), as a drop-in user gets them; ``engine.py_process_workers`` keeps
every env in a worker process (``inline=False``, AsyncVectorEnv's isolation), and
``engine.py_process_inline`` passes ``inline=True`` with ``--workers`` slices.
"""

from __future__ import annotations

import time

import gymnasium as gym

from bench import peers, training
from bench.common import Measurement
from bench.envs import single_env_rate, sync_vector_env, vector_rate

ENV_ID = "CartPole-v1"
HEADLINE_N = 4096
ENGINE_N = 8192


def cartpole_vector(ctx, n: int, name: str) -> Measurement:
    from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv

    s = ctx.settings
    return ctx.cached(("cartpole-vector", n), name, lambda: vector_rate(
        name, CartPoleVectorEnv(num_envs=n), n, repeats=s.repeats, min_time=s.min_time))


def single_env(ctx, name: str) -> Measurement:
    s = ctx.settings
    return ctx.cached(("single", ENV_ID), name, lambda: single_env_rate(
        ENV_ID, repeats=s.repeats, min_time=s.min_time, name=name,
        note="gym.make (TimeLimit, OrderEnforcing, PassiveEnvChecker); reset when done"))


def sync_vector(ctx, n: int, name: str) -> Measurement:
    s = ctx.settings
    return ctx.cached(("sync-vector", ENV_ID, n), name, lambda: vector_rate(
        name, sync_vector_env(ENV_ID, n), n, repeats=s.repeats, min_time=s.min_time))


def async_vector_latency(ctx, name: str) -> Measurement:
    """gymnasium AsyncVectorEnv with one env (one worker process), for the latency table."""
    s = ctx.settings

    def make() -> Measurement:
        env = gym.vector.AsyncVectorEnv([lambda: gym.make(ENV_ID)])
        return vector_rate(name, env, 1, repeats=s.repeats, min_time=s.min_time)

    return ctx.cached(("py-async", 1), name, make)


def python_process_default(ctx, **kwargs) -> Measurement:
    """ProcessVectorEnv over the peers' Python CartPoles with the constructor's defaults (plus
    ``kwargs``); the note says what the defaults resolved to on this machine."""
    s = ctx.settings
    extra = "".join(f", {k}={v!r}" for k, v in kwargs.items())
    name = f"fastsample ProcessVectorEnv, defaults{extra} ({s.small_n} Python envs)"

    def make() -> Measurement:
        from fastsample import ProcessVectorEnv

        env = ProcessVectorEnv(peers._python_fns(s.small_n), **kwargs)
        note = (f"{env.num_workers} slices ({len(env.worker_pids)} worker process(es), "
                f"{'the caller steps one' if env.inline else 'the caller waits'}), shared memory, eventfd")
        return vector_rate(name, env, s.small_n, repeats=s.repeats, min_time=s.min_time,
                           pool=peers._actions(s.small_n), note=note)

    return ctx.cached(("py-process-default", s.small_n, tuple(sorted(kwargs.items()))), name, make)


def python_process_vs_sync_paired(ctx, rounds: int = 15) -> dict:
    """ProcessVectorEnv (its defaults) against SyncVectorEnv over the peers' Python CartPoles,
    paired: both built once, then ``rounds`` rounds that time one and then the other for about
    ``min_time`` each, so both see the same load; the median of the rounds' ratios. Both need
    the same cores (ProcessVectorEnv both, Sync one), so on a shared machine unpaired medians
    taken minutes apart can differ by the load alone. ``{"ratio", "ratios", "process", "sync"}``
    (the last two: the rounds' steps/s)."""
    import statistics

    import gymnasium as gym
    from fastsample import ProcessVectorEnv

    s = ctx.settings
    n = s.small_n
    pool = peers._actions(n)
    envs = {"process": ProcessVectorEnv(peers._python_fns(n)),
            "sync": gym.vector.SyncVectorEnv(peers._python_fns(n))}
    try:
        calls = {}
        for name, env in envs.items():
            env.reset(seed=0)
            step = env.step
            for j in range(50):  # warm-up
                step(pool[j % len(pool)])
            k, dt = 16, 0.0
            while dt < s.min_time / 4:
                t0 = time.perf_counter()
                for j in range(k):
                    step(pool[j % len(pool)])
                dt = time.perf_counter() - t0
                k *= 2
            calls[name] = max(1, int(k / 2 * s.min_time / dt))
        rates: dict[str, list[float]] = {"process": [], "sync": []}
        for _ in range(rounds):
            for name, env in envs.items():
                step, k = env.step, calls[name]
                t0 = time.perf_counter()
                for j in range(k):
                    step(pool[j % len(pool)])
                rates[name].append(k * n / (time.perf_counter() - t0))
        ratios = [p / q for p, q in zip(rates["process"], rates["sync"])]
        return {"ratio": statistics.median(ratios), "ratios": ratios, **rates}
    finally:
        for env in envs.values():
            env.close()


def tasks(ctx) -> list[tuple[str, str, object]]:
    """``(key, label, fn)`` for every measurement of this section, in run order."""
    s = ctx.settings
    w = s.workers
    return [
        ("headline.fs", f"fastsample CartPole N={HEADLINE_N}",
         lambda: ctx.fastsample_rate("fastsample CartPole-v1", HEADLINE_N, 0)),
        ("headline.fs_nocopy", f"fastsample CartPole N={HEADLINE_N} copy=False",
         lambda: ctx.fastsample_rate("fastsample CartPole-v1 (copy=False)", HEADLINE_N, 0, copy=False)),
        ("headline.gym", f"gymnasium CartPoleVectorEnv N={HEADLINE_N}",
         lambda: cartpole_vector(ctx, HEADLINE_N, "gymnasium CartPoleVectorEnv (NumPy)")),
        ("overhead.fs", "step() overhead: fastsample N=1",
         lambda: ctx.fastsample_rate("fastsample CartPole-v1, num_envs=1", 1, 0)),
        ("overhead.single", "step() overhead: gymnasium single env",
         lambda: single_env(ctx, "gymnasium CartPole-v1 single env (gym.make)")),
        ("overhead.sync", "step() overhead: SyncVectorEnv N=1",
         lambda: sync_vector(ctx, 1, "gymnasium SyncVectorEnv, num_envs=1")),
        ("engine.inproc", f"engine: fastsample N={ENGINE_N} in-process",
         lambda: ctx.fastsample_rate(f"fastsample N={ENGINE_N}, in-process (one core)", ENGINE_N, 0)),
        ("engine.workers", f"engine: fastsample N={ENGINE_N} {w} workers",
         lambda: ctx.fastsample_rate(f"fastsample N={ENGINE_N}, {w} workers", ENGINE_N, w)),
        ("engine.latency1", "engine latency: N=1, 1 worker",
         lambda: ctx.fastsample_rate("fastsample num_envs=1, 1 worker", 1, 1)),
        ("engine.latency16", f"engine latency: N=16, {min(w, 16)} workers",
         lambda: ctx.fastsample_rate(f"fastsample num_envs=16, {min(w, 16)} workers", 16, min(w, 16))),
        ("engine.latency_inproc", "engine latency: N=1 in-process",
         lambda: ctx.fastsample_rate("fastsample num_envs=1, in-process", 1, 0)),
        ("engine.latency_async", "engine latency: AsyncVectorEnv N=1",
         lambda: async_vector_latency(ctx, "gymnasium AsyncVectorEnv, num_envs=1")),
        ("engine.py_process", f"engine: ProcessVectorEnv defaults, {s.small_n} Python envs",
         lambda: python_process_default(ctx)),
        ("engine.py_process_workers", f"engine: ProcessVectorEnv inline=False, {s.small_n} Python envs",
         lambda: python_process_default(ctx, inline=False)),
        ("engine.py_process_inline", f"engine: ProcessVectorEnv inline=True, {s.small_n} Python envs",
         lambda: peers.python_process_inline(ctx)),
        ("engine.py_paired", f"engine: ProcessVectorEnv defaults vs SyncVectorEnv, paired rounds, {s.small_n} Python envs",
         lambda: python_process_vs_sync_paired(ctx, rounds=5 if s.quick else 15)),
        ("engine.py_async", f"engine: AsyncVectorEnv, {s.small_n} Python envs", lambda: peers.python_async(ctx)),
        ("engine.py_sync", f"engine: SyncVectorEnv, {s.small_n} Python envs", lambda: peers.python_sync(ctx)),
        ("training.ppo_large", "PPO throughput: CleanRL network, 4096 envs x 16 steps, 4 epochs",
         lambda: training.ppo_large_batch(ctx)),
    ]
