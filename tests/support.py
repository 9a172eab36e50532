"""Side-by-side runner: fastsample against gymnasium's SyncVectorEnv, compared bit for bit."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

import fastsample

MODES = ("NextStep", "SameStep", "Disabled")


def assert_same(a, b, what: str) -> None:
    a = np.asarray(a)
    b = np.asarray(b)
    assert a.dtype == b.dtype, f"{what}: dtype {a.dtype} (gymnasium) != {b.dtype} (fastsample)"
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    if not np.array_equal(a, b):
        bad = np.argwhere(a != b)[:5]
        raise AssertionError(f"{what}: differ at {bad.tolist()}: gymnasium {a[tuple(bad[0])]!r} fastsample {b[tuple(bad[0])]!r}")


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


def compare_runs(ref, ours, mode: str, steps: int, seed: int = 0, *, action_seed: int = 1,
                 reset_options: dict | None = None, sample_actions=None) -> dict:
    """The loop of :func:`run_side_by_side` for any two vector envs (``ref`` is the truth)."""
    num_envs = ref.num_envs
    space = ref.action_space
    space.seed(action_seed)
    mask_rng = np.random.default_rng(seed + 99)
    sample = sample_actions or (lambda: space.sample())

    o_ref, i_ref = ref.reset(seed=seed, options=reset_options)
    o_fs, i_fs = ours.reset(seed=seed, options=reset_options)
    assert_same(o_ref, o_fs, "reset obs")
    assert i_ref == i_fs
    finished = 0
    partial = 0
    for t in range(steps):
        if t == steps // 3:
            o_ref, _ = ref.reset()
            o_fs, _ = ours.reset()
            assert_same(o_ref, o_fs, f"step {t}: reset(seed=None) obs")
        elif t == 2 * steps // 3:
            seeds = [int(s) for s in mask_rng.integers(0, 2**31, num_envs)]
            o_ref, _ = ref.reset(seed=seeds)
            o_fs, _ = ours.reset(seed=seeds)
            assert_same(o_ref, o_fs, f"step {t}: reset(seed=list) obs")
        elif mode != "SameStep" and t % 97 == 50:
            mask = mask_rng.random(num_envs) < 0.3
            if mask.any():
                partial += 1
                o_ref, _ = ref.reset(options={"reset_mask": mask.copy()})
                o_fs, _ = ours.reset(options={"reset_mask": mask.copy()})
                assert_same(o_ref, o_fs, f"step {t}: reset_mask obs")
        actions = sample()
        r_ref = ref.step(actions)
        r_fs = ours.step(actions)
        for name, a, b in zip(("obs", "rewards", "terminations", "truncations"), r_ref[:4], r_fs[:4]):
            assert_same(a, b, f"step {t}: {name}")
        info_ref, info_fs = r_ref[4], r_fs[4]
        assert info_ref.keys() == info_fs.keys(), f"step {t}: info keys {info_ref.keys()} != {info_fs.keys()}"
        if "final_obs" in info_ref:
            assert_same(info_ref["_final_obs"], info_fs["_final_obs"], f"step {t}: _final_obs")
            assert_same(info_ref["_final_info"], info_fs["_final_info"], f"step {t}: _final_info")
            assert info_ref["final_info"] == info_fs["final_info"]
            for i in np.flatnonzero(info_ref["_final_obs"]):
                assert_same(info_ref["final_obs"][i], info_fs["final_obs"][i], f"step {t}: final_obs[{i}]")
            assert all(info_fs["final_obs"][i] is None for i in np.flatnonzero(~info_fs["_final_obs"]))
        done = r_ref[2] | r_ref[3]
        finished += int(done.sum())
        if mode == "Disabled" and done.any():
            o_ref, _ = ref.reset(options={"reset_mask": done.copy()})
            o_fs, _ = ours.reset(options={"reset_mask": done.copy()})
            assert_same(o_ref, o_fs, f"step {t}: reset of finished envs")
    return {"finished": finished, "partial_resets": partial}


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
