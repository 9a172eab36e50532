"""The ladder: CartPole-v1 from a pure-Python loop to asynchronous PPO, one optimisation per rung.

Each rung is a small function registered by name with :func:`rung`; it returns a
:class:`~bench.common.Measurement` (steps/s over the run's repeats, and for R6-R8 where the
time goes). ``vs`` names the rung it is compared with: the one it differs from by exactly one
change. Every rung with ``num_envs`` in its title runs ``settings.num_envs`` envs, returns fresh
observation arrays every step (gymnasium's default ``copy=True``) and counts env transitions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from bench.common import Measurement, measure_rate, missing, new_timers
from bench.envs import POOL, sync_vector_env, vector_rate

ENV_ID = "CartPole-v1"


@dataclass
class Rung:
    name: str
    title: str
    adds: str
    vs: str | None
    fn: Callable
    needs_workers: bool = False
    short: str = ""  # label in the plot


RUNGS: dict[str, Rung] = {}


def rung(name: str, title: str, adds: str, vs: str | None = None, needs_workers: bool = False, short: str = ""):
    def register(fn: Callable) -> Callable:
        RUNGS[name] = Rung(name, title, adds, vs, fn, needs_workers, short or title)
        return fn

    return register


def run(ctx, name: str) -> Measurement:
    """Measure rung ``name`` (a row saying why, when the settings make it impossible)."""
    r = RUNGS[name]
    s = ctx.settings
    if r.needs_workers and s.workers > s.num_envs:
        return missing(name, f"skipped: {s.workers} workers > num_envs={s.num_envs} (each worker needs an env)")
    return r.fn(ctx)


def resolve(names: list[str]) -> tuple[list[str], list[str]]:
    """``(known, unknown)`` rung names, case-insensitive, in ladder order."""
    by_lower = {k.lower(): k for k in RUNGS}
    known, unknown = [], []
    for n in names:
        key = by_lower.get(n.strip().lower())
        (known if key else unknown).append(key or n)
    return [k for k in RUNGS if k in known], unknown


def _rand_actions(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 2, n) for _ in range(POOL)]


# -- environments only --------------------------------------------------------------------------

@rung("R0", "gymnasium CartPoleEnv, one env, Python loop", "baseline: gym.make, one step() call per transition",
      short="gymnasium env, Python loop")
def r0(ctx) -> Measurement:
    from bench.basics import single_env

    return single_env(ctx, "R0")


@rung("R1", "gymnasium SyncVectorEnv",
      "vector API: num_envs envs per step() call (still a Python loop over envs)", "R0",
      short="SyncVectorEnv")
def r1(ctx) -> Measurement:
    s = ctx.settings
    return vector_rate("R1", sync_vector_env(ENV_ID, s.num_envs), s.num_envs, repeats=s.repeats,
                       min_time=s.min_time, pool=_rand_actions(s.num_envs), note="copy=True, NEXT_STEP autoreset")


@rung("R2", "gymnasium CartPoleVectorEnv (NumPy)",
      "NumPy vectorisation: whole-array math, no Python loop over envs", "R1",
      short="gymnasium CartPoleVectorEnv (NumPy)")
def r2(ctx) -> Measurement:
    from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv

    s = ctx.settings
    return vector_rate("R2", CartPoleVectorEnv(num_envs=s.num_envs), s.num_envs, repeats=s.repeats,
                       min_time=s.min_time, pool=_rand_actions(s.num_envs), note="gymnasium's own vectorised CartPole")


@rung("R2b", "our kernel in plain NumPy (bench/numpy_cartpole.py)",
      "NumPy vectorisation of fastsample's algorithm (validation, NEXT_STEP, time limit, fresh arrays)", "R1",
      short="our kernel in NumPy")
def r2b(ctx) -> Measurement:
    from bench.numpy_cartpole import NumpyCartPole

    s = ctx.settings
    return vector_rate("R2b", NumpyCartPole(s.num_envs), s.num_envs, repeats=s.repeats, min_time=s.min_time,
                       pool=_rand_actions(s.num_envs), note="same float64 dynamics and autoreset work as R3")


@rung("R3", "fastsample Numba kernel, in-process (exact float64)",
      "compiled: the same algorithm as one Numba loop (bit-identical to gymnasium)", "R2b",
      short="Numba kernel, exact float64")
def r3(ctx) -> Measurement:
    s = ctx.settings
    return ctx.fastsample_rate("R3", s.num_envs, 0)


@rung("R3b", "relaxed precision: float32 + fastmath kernel (bench prototype, opt-in only)",
      "float32 arithmetic with fastmath; checked for an equal episode-length distribution", "R3",
      short="Numba float32 + fastmath (prototype)")
def r3b(ctx) -> Measurement:
    from bench import relaxed

    s = ctx.settings
    m = vector_rate("R3b", relaxed.make_vec(s.num_envs), s.num_envs, repeats=s.repeats, min_time=s.min_time,
                    pool=_rand_actions(s.num_envs),
                    note="bench/relaxed.py: not a library mode (fastsample's kernels are exact only)")
    check = relaxed.check(episodes=5000 if s.quick else 20000)
    m.extra["check"] = check
    parts = [f"{p}: KS D={r['D']:.4f}, p={r['p']:.2f}, mean length {r['exact_mean']:.1f} exact vs "
             f"{r['relaxed_mean']:.1f} relaxed" for p, r in check["policies"].items()]
    verdict = ("statistically equal episode lengths" if check["passed"]
               else "NOT statistically equal episode lengths (p < %.2f): do not use" % check["alpha"])
    m.note += f"; {verdict} ({'; '.join(parts)}; {next(iter(check['policies'].values()))['episodes']} episodes each)"
    return m


@rung("R4", "+ shared-memory worker processes (ProcessVectorEnv)",
      "parallelism: envs split over num_workers slices (the caller steps one, worker processes the others), "
      "results in shared memory", "R3", True,
      short="+ worker processes")
def r4(ctx) -> Measurement:
    s = ctx.settings
    return ctx.fastsample_rate("R4", s.num_envs, s.workers)


def _busy(ctx) -> str:
    s = ctx.settings
    if s.workers + 1 > s.cores:
        return (f"; the parent and {s.workers} workers are {s.workers + 1} busy processes on {s.cores} cores, so "
                "waking a worker can preempt the parent")
    return ""


def _no_half(ctx) -> str:
    s = ctx.settings
    return f"skipped: needs >= 2 workers dividing num_envs (workers={s.workers}, num_envs={s.num_envs})"


def _half(ctx) -> int | None:
    s = ctx.settings
    if s.workers < 2 or s.num_envs % s.workers:
        return None
    return s.num_envs // s.workers * (s.workers // 2)


@rung("R5", "+ async send/recv (batch_size = num_envs/2)",
      "asynchrony: recv() returns the first half to finish while the other half steps", "R4", True,
      short="+ async send/recv")
def r5(ctx) -> Measurement:
    import fastsample

    s = ctx.settings
    batch = _half(ctx)
    if batch is None:
        return missing("R5", _no_half(ctx))
    env = fastsample.make_vec(ENV_ID, s.num_envs, seed=0, num_workers=s.workers, batch_size=batch)
    try:
        pool = _rand_actions(batch)
        env.async_reset()

        def run(k: int) -> None:
            for j in range(k):
                _, _, _, _, info = env.recv()
                env.send(pool[j % POOL], info["env_id"])

        return measure_rate("R5", run, batch, repeats=s.repeats, min_time=s.min_time,
                            note=f"{s.workers} workers, batch_size {batch}; copies out of shared memory as R4"
                            + _busy(ctx))
    finally:
        env.close()


# -- environment + policy -----------------------------------------------------------------------

def _policy(ctx):
    from bench.policy import Policy, set_torch_threads

    set_torch_threads(ctx.settings.torch_threads)
    return Policy()


@rung("R6", "+ torch policy inference every step, synchronous",
      "adds work: a 64x64 tanh MLP actor picks every action (R4's env)", "R4", True,
      short="+ policy inference, sync")
def r6(ctx) -> Measurement:
    import fastsample

    s = ctx.settings
    policy = _policy(ctx)
    env = fastsample.make_vec(ENV_ID, s.num_envs, seed=0, num_workers=s.workers)
    timers = new_timers()
    try:
        state = {"obs": env.reset()[0]}

        def run(k: int) -> None:
            obs = state["obs"]
            for _ in range(k):
                t0 = time.perf_counter()
                actions = policy(obs)
                t1 = time.perf_counter()
                obs = env.step(actions)[0]
                t2 = time.perf_counter()
                timers["inference"] += t1 - t0
                timers["env"] += t2 - t1
            state["obs"] = obs

        return measure_rate("R6", run, s.num_envs, repeats=s.repeats, min_time=s.min_time, timers=timers,
                            note=f"{s.workers} workers; torch {s.torch_threads} thread(s), inference_mode, "
                                 "sampled actions")
    finally:
        env.close()


@rung("R7", "+ double-buffered sampling (inference overlaps simulation)",
      "overlap: the policy acts on one half while the workers step the other (async send/recv)", "R6", True,
      short="+ double-buffered sampling")
def r7(ctx) -> Measurement:
    import fastsample

    s = ctx.settings
    batch = _half(ctx)
    if batch is None:
        return missing("R7", _no_half(ctx))
    policy = _policy(ctx)
    env = fastsample.make_vec(ENV_ID, s.num_envs, seed=0, num_workers=s.workers, batch_size=batch)
    timers = new_timers()
    try:
        env.async_reset()

        def run(k: int) -> None:
            for _ in range(k):
                t0 = time.perf_counter()
                obs, _, _, _, info = env.recv()
                t1 = time.perf_counter()
                actions = policy(obs)
                t2 = time.perf_counter()
                env.send(actions, info["env_id"])
                t3 = time.perf_counter()
                timers["waiting"] += t1 - t0
                timers["inference"] += t2 - t1
                timers["env"] += t3 - t2  # send: actions into shared memory, wake the worker

        return measure_rate("R7", run, batch, repeats=s.repeats, min_time=s.min_time, timers=timers,
                            note=f"{s.workers} workers, batch_size {batch}; same policy and threads as R6" + _busy(ctx))
    finally:
        env.close()


# -- training -----------------------------------------------------------------------------------

@rung("R8", "full PPO training, synchronous (trainer's SyncRunner)",
      "adds work: PPO updates between rollouts (R6's env and policy size)", "R6", True,
      short="PPO training, sync")
def r8_sync(ctx) -> Measurement:
    from bench.training import r8

    return r8(ctx, "sync")


@rung("R8b", "full PPO training, asynchronous (Sample-Factory style AsyncRunner)",
      "overlap: sampler processes keep acting while the learner updates", "R8", True,
      short="PPO training, async")
def r8_async(ctx) -> Measurement:
    from bench.training import r8

    return r8(ctx, "async")
