"""``copy=True`` results are handed out without copying (``fastsample.output_slots``): they
must still behave as fresh arrays. Whatever the caller keeps (arrays, views, torch tensors)
is never written again, mutating a result changes nothing, and every path (fast step,
scratch slot, resets of some envs, async send/recv) returns what ``copy=False`` returns."""

from __future__ import annotations

import functools

import gymnasium as gym
import numpy as np
import pytest

import fastsample
from fastsample.output_slots import OutputSlots
from tests.support import assert_same

N = 6


def _numba(num_workers: int, mode: str = "NextStep", copy: bool = True, env_id: str = "CartPole-v1"):
    return fastsample.make_vec(env_id, N, num_workers=num_workers, autoreset_mode=mode, copy=copy)


def _python(num_workers: int, mode: str = "NextStep", copy: bool = True):
    fns = [functools.partial(gym.make, "CartPole-v1") for _ in range(N)]
    return fastsample.ProcessVectorEnv(fns, num_workers=num_workers, autoreset_mode=mode, copy=copy)


MAKERS = {
    "in-process": functools.partial(_numba, 0),
    "numba 2 workers": functools.partial(_numba, 2),
    "python 2 workers": functools.partial(_python, 2),
    # a kernel with ``observe``: no private copy of the latest observations, a reset of some
    # envs rebuilds the others' from the state
    "minatar in-process": functools.partial(_numba, 0, env_id="MinAtar-Breakout-v1"),
    "minatar 2 workers": functools.partial(_numba, 2, env_id="MinAtar-Breakout-v1"),
}


def _snapshot(result):
    return tuple(np.array(x, copy=True) for x in result[:4])


def _assert_results(expected, got, what):
    for name, a, b in zip(("obs", "rewards", "terminated", "truncated"), expected, got):
        assert_same(a, b, f"{what}: {name}")


@pytest.mark.parametrize("maker", MAKERS)
def test_kept_results_never_change_and_match_views(maker):
    """Keep some results whole, some as views or tensors, drop others; mutate the dropped
    ones. The stream equals a copy=False env's, and kept results keep their values."""
    torch = pytest.importorskip("torch")
    ours, ref = MAKERS[maker](), MAKERS[maker](copy=False)
    try:
        rng = np.random.default_rng(0)
        assert_same(np.array(ref.reset(seed=3)[0]), ours.reset(seed=3)[0], "reset obs")
        kept = []  # (what we hold, its values when returned)
        for t in range(300):
            actions = rng.integers(0, 2, N)
            expected = _snapshot(ref.step(actions))
            got = ours.step(actions)
            _assert_results(expected, got, f"step {t}")
            if t % 7 == 0:
                kept.append((got[0], expected[0]))  # the array itself
            elif t % 7 == 1:
                kept.append((got[0][1:, 2], expected[0][1:, 2]))  # a view
            elif t % 7 == 2:
                kept.append((torch.from_numpy(got[1]), expected[1]))  # a tensor on its memory
            else:
                for x in got[:4]:  # dropped: scribbling on it must not leak into later steps
                    x[...] = 1
            del got
        assert len(kept) > 100
        for held, values in kept:
            assert_same(values, np.asarray(held), "a kept result changed after it was returned")
    finally:
        ours.close()
        ref.close()


@pytest.mark.parametrize("maker", MAKERS)
def test_partial_resets_while_results_are_held(maker):
    """DISABLED autoreset: resetting some envs must not write into results the caller holds,
    and envs outside the mask keep their last observation."""
    ours, ref = MAKERS[maker](mode="Disabled"), MAKERS[maker](mode="Disabled", copy=False)
    try:
        ours.reset(seed=1)
        ref.reset(seed=1)
        rng = np.random.default_rng(1)
        held = []
        resets = 0
        for t in range(400):
            actions = rng.integers(0, 2, N)
            expected = _snapshot(ref.step(actions))
            got = ours.step(actions)
            _assert_results(expected, got, f"step {t}")
            held.append((got, expected))
            done = expected[2] | expected[3]
            if done.any():
                resets += 1
                obs_ref = np.array(ref.reset(options={"reset_mask": done.copy()})[0])
                obs = ours.reset(options={"reset_mask": done.copy()})[0]
                assert_same(obs_ref, obs, f"step {t}: reset_mask obs")
            held = held[-3:]
            for g, e in held:
                _assert_results(e, g, f"step {t}: a held result changed")
        assert resets > 10
    finally:
        ours.close()
        ref.close()


@pytest.mark.parametrize("mode", ["NextStep", "Disabled"])
@pytest.mark.parametrize("keep", ["held", "dropped"])
@pytest.mark.parametrize("maker", MAKERS)
def test_mutating_results_then_a_partial_reset_returns_true_observations(maker, keep, mode):
    """Results are the caller's to change (in-place normalisation): a later reset of some envs
    must return the envs' true observations for the others, not what the caller wrote into
    the arrays it was given (whether it still holds them or not), as SyncVectorEnv does."""
    ours, ref = MAKERS[maker](mode=mode), MAKERS[maker](mode=mode, copy=False)
    try:
        ours.reset(seed=2)
        ref.reset(seed=2)
        rng = np.random.default_rng(2)
        for t in range(60):
            actions = rng.integers(0, 2, N)
            expected = _snapshot(ref.step(actions))
            got = ours.step(actions)
            _assert_results(expected, got, f"step {t}")
            for x in got[:4]:
                x[...] = 0  # the caller normalises (or clears) in place
            if keep == "dropped":
                del got
            mask = np.zeros(N, dtype=bool)
            mask[t % N] = True  # one env: the others (all of a second worker's) keep theirs
            if mode == "Disabled":
                mask |= expected[2] | expected[3]
            obs_ref = np.array(ref.reset(options={"reset_mask": mask.copy()})[0])
            obs = ours.reset(options={"reset_mask": mask.copy()})[0]
            assert_same(obs_ref, obs, f"step {t}: reset_mask obs after the caller zeroed its results")
            obs[...] = 0  # reset results are the caller's too
    finally:
        ours.close()
        ref.close()


def test_async_send_recv_after_fast_steps_keeps_held_results():
    ours = _numba(2)
    ref = _numba(2, copy=False)
    try:
        ours.reset(seed=0)
        ref.reset(seed=0)
        held = ours.step(np.zeros(N, dtype=np.int64))
        held_values = _snapshot(held)
        ref.step(np.zeros(N, dtype=np.int64))
        ids = np.arange(N)
        ours.send(np.ones(N, dtype=np.int64), ids)
        ref.send(np.ones(N, dtype=np.int64), ids)
        _assert_results(_snapshot(ref.recv()), _snapshot(ours.recv()), "recv")
        _assert_results(held_values, held, "result held across send/recv")
    finally:
        ours.close()
        ref.close()


def test_output_slots_counts_every_kind_of_reference():
    slots = [(np.zeros(4), np.zeros(2)) for _ in range(3)]
    out = OutputSlots(slots)
    out.seal()
    assert out.free() == 0
    view = slots[0][0][1:]
    assert out.free() == 1
    kept = memoryview(slots[1][1])
    assert out.free() == out.scratch
    del view, kept
    assert out.free() == 0
    with pytest.raises(ValueError, match="own their memory"):
        OutputSlots([(np.zeros(4)[1:],), (np.zeros(3),)])
