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
