"""Side-by-side runner: fastsample against gymnasium's SyncVectorEnv, compared bit for bit."""

from __future__ import annotations

import gymnasium as gym

import fastsample
from fastsample.check import MODES, assert_same, compare_runs  # noqa: F401 (the tests import them from here)


def make_pair(env_id: str, num_envs: int, mode: str, **env_kwargs):
    ref = gym.make_vec(
        env_id, num_envs, vectorization_mode="sync", vector_kwargs={"autoreset_mode": mode}, **env_kwargs
    )
    ours = fastsample.make_vec(env_id, num_envs, autoreset_mode=mode, **env_kwargs)
    return ref, ours


def run_side_by_side(
    env_id: str,
    num_envs: int,
    mode: str,
    steps: int,
    seed: int = 0,
    *,
    action_seed: int = 1,
    reset_options: dict | None = None,
    sample_actions=None,
    **env_kwargs,
) -> dict:
    """Step gymnasium and fastsample with the same seeds and actions; assert equal bits.

    Along the way: a ``reset(seed=int)`` at the start, ``reset()`` (seed=None, streams
    continue) at 1/3, ``reset(seed=[list])`` at 2/3, and random ``reset_mask`` partial
    resets (NEXT_STEP and DISABLED; DISABLED also resets every finished env that way).
    Returns counts (episodes finished, partial resets) so callers can check coverage.
    """
    ref, ours = make_pair(env_id, num_envs, mode, **env_kwargs)
    try:
        return compare_runs(ref, ours, mode, steps, seed, action_seed=action_seed,
                            reset_options=reset_options, sample_actions=sample_actions)
    finally:
        ref.close()
        ours.close()


def shm_entries() -> set[str]:
    import os

    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


def leaked_shm(before: set[str], pids) -> set[str]:
    """Entries added to /dev/shm since ``before`` that may belong to ``pids``: multiprocessing
    names its files ``pym-<creator pid>-...``, so other test processes running in parallel
    (whose files carry their own pid) are not blamed; every other new name counts."""
    import re

    pids = {str(p) for p in pids}
    leaked = set()
    for name in shm_entries() - before:
        m = re.match(r"pym-(\d+)-", name)
        if m is None or m.group(1) in pids:
            leaked.add(name)
    return leaked


# --- slow subprocess checks, run concurrently across test modules -----------------------------
#
# Several modules each need a few fresh processes that compile every kernel from an empty numba
# cache (the codegen matrix, the compiled learner's IR under each target, the disk-cache check).
# Each process is single-threaded and does the same work whichever test asks for it; pytest runs
# tests one at a time, so run module by module they leave cores idle (a pool of 7 targets on 2 cores
# ends with one core idle). A module registers its jobs at import (collection); the first fixture
# that asks for any job runs every job that a selected test uses, one per core, longest first,
# and keeps the results for the rest of the session.

_JOBS: dict[str, tuple] = {}  # key -> (function, estimated seconds, (module, test function, params))
_RESULTS: dict[str, object] = {}


def register_job(key: str, fn, seconds: float, module: str, test: str, **params) -> None:
    """``fn()`` is the job ``key``, needed by ``module``'s ``test`` (for the items whose parameters
    include ``params``); ``seconds`` (a rough estimate) orders the jobs, longest first."""
    _JOBS[key] = (fn, seconds, (module, test, params))


def _wanted(item, used_by) -> bool:
    module, test, params = used_by
    if getattr(item, "module", None) is None or item.module.__name__ != module:
        return False
    if getattr(item, "originalname", item.name) != test:
        return False
    callspec = getattr(item, "callspec", None)
    return all(callspec is not None and callspec.params.get(k) == v for k, v in params.items())


def job_results(request, keys) -> dict[str, object]:
    """``{key: fn()}`` for ``keys``; on the first call that finds work to do, every registered job
    some selected test of the session uses runs too, one per core (``os.sched_getaffinity``). A job that
    raised re-raises here for each test that uses it."""
    from concurrent.futures import ThreadPoolExecutor
    import os

    keys = list(keys)
    todo = set(k for k in keys if k not in _RESULTS)
    if todo:
        items = request.session.items
        todo |= {k for k, (_, _, used_by) in _JOBS.items()
                 if k not in _RESULTS and any(_wanted(item, used_by) for item in items)}
        order = sorted(todo, key=lambda k: -_JOBS[k][1])

        def run(key):
            try:
                return _JOBS[key][0]()
            except Exception as e:  # kept, re-raised to the tests that use it
                return e

        with ThreadPoolExecutor(max(1, len(os.sched_getaffinity(0)))) as pool:
            for key, result in zip(order, pool.map(run, order)):
                _RESULTS[key] = result
    out = {}
    for k in keys:
        if isinstance(_RESULTS[k], BaseException):
            raise _RESULTS[k]
        out[k] = _RESULTS[k]
    return out
