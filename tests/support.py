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

_JOBS: dict[str, tuple] = {}  # key -> (function, estimated seconds, (module, test function, params), needs)
_RESULTS: dict[str, object] = {}
_TIMES: dict[str, tuple[float, float]] = {}  # key -> (start, end), time.monotonic(): for profiling the pool


def register_job(key: str, fn, seconds: float, module: str, test: str, needs: tuple[str, ...] = (),
                 **params) -> None:
    """``fn()`` is the job ``key``, needed by ``module``'s ``test`` (for the items whose parameters
    include ``params``); ``seconds`` (a rough estimate) orders the jobs, longest first. With
    ``needs`` (keys of other jobs), the job starts once those have finished and is called with
    their results, ``fn(*results)``; one of them having raised is this job's error too."""
    _JOBS[key] = (fn, seconds, (module, test, params), tuple(needs))


def _wanted(item, used_by) -> bool:
    module, test, params = used_by
    if getattr(item, "module", None) is None or item.module.__name__ != module:
        return False
    if getattr(item, "originalname", item.name) != test:
        return False
    callspec = getattr(item, "callspec", None)
    return all(callspec is not None and callspec.params.get(k) == v for k, v in params.items())


def _critical_path(key: str, dependents: dict[str, list[str]]) -> float:
    """``key``'s estimated seconds plus the longest chain of jobs that wait for it."""
    return _JOBS[key][1] + max((_critical_path(d, dependents) for d in dependents.get(key, ())), default=0.0)


def job_results(request, keys) -> dict[str, object]:
    """``{key: fn()}`` for ``keys``; on the first call that finds work to do, every registered job
    some selected test of the session uses runs too (with the jobs they need), one per core
    (``os.sched_getaffinity``): a free core takes the job with the longest estimated chain of work
    ahead of it (its own seconds plus those of the jobs waiting for it) among those whose needs
    are done. A job that raised re-raises here for each test that uses it."""
    import os
    import threading
    import time

    keys = list(keys)
    todo = set(k for k in keys if k not in _RESULTS)
    if todo:
        items = request.session.items
        todo |= {k for k, (_, _, used_by, _) in _JOBS.items()
                 if k not in _RESULTS and any(_wanted(item, used_by) for item in items)}
        stack = list(todo)
        while stack:  # and what they need
            for need in _JOBS[stack.pop()][3]:
                if need not in _RESULTS and need not in todo:
                    todo.add(need)
                    stack.append(need)
        dependents: dict[str, list[str]] = {}
        for k in todo:
            for need in _JOBS[k][3]:
                dependents.setdefault(need, []).append(k)
        pending = sorted(todo, key=lambda k: -_critical_path(k, dependents))
        cond = threading.Condition()

        def run(key):
            t0 = time.monotonic()
            try:
                return _run(key)
            finally:
                _TIMES[key] = (t0, time.monotonic())

        def _run(key):
            fn, _, _, needs = _JOBS[key]
            failed = [n for n in needs if isinstance(_RESULTS[n], BaseException)]
            if failed:
                return RuntimeError(f"job {key} needs job {failed[0]}, which failed: {_RESULTS[failed[0]]!r}")
            try:
                return fn(*(_RESULTS[n] for n in needs))
            except Exception as e:  # kept, re-raised to the tests that use it
                return e

        def worker():
            while True:
                with cond:
                    while True:
                        if not pending:
                            return
                        ready = [k for k in pending if all(n in _RESULTS for n in _JOBS[k][3])]
                        if ready:
                            key = ready[0]
                            pending.remove(key)
                            break
                        cond.wait()
                result = run(key)
                with cond:
                    _RESULTS[key] = result
                    cond.notify_all()

        threads = [threading.Thread(target=worker, daemon=True)
                   for _ in range(max(1, len(os.sched_getaffinity(0))))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    out = {}
    for k in keys:
        if isinstance(_RESULTS[k], BaseException):
            raise _RESULTS[k]
        out[k] = _RESULTS[k]
    return out
