"""The hand-off between the caller and its workers: counters in shared memory carry commands
and replies, the eventfds are doorbells rung only for a side that sleeps (see
``fastsample/engine/exchange.py``). Every way a hand-off can go (both sides spinning, a
worker that sleeps after each step, a worker woken after a long idle, stale doorbells left by
replies taken off the counter, the protocol used where loads may be reordered) must give
SyncVectorEnv's results."""

from __future__ import annotations

import functools
import time

import gymnasium as gym
import numpy as np
import pytest

import fastsample
from fastsample.engine import exchange as X
from fastsample.engine import worker as W

N = 6


def _fns():
    return [functools.partial(gym.make, "CartPole-v1") for _ in range(N)]


def _actions(steps: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.integers(0, 2, N).astype(np.int64) for _ in range(steps)]


def _check_against_sync(env, steps: int = 120, pause_every: int = 0, pause_s: float = 0.0) -> None:
    sync = gym.vector.SyncVectorEnv(_fns())
    try:
        o1, _ = env.reset(seed=3)
        o2, _ = sync.reset(seed=3)
        np.testing.assert_array_equal(o1, o2)
        for j, a in enumerate(_actions(steps)):
            if pause_every and j % pause_every == 0:
                time.sleep(pause_s)  # the worker's spin runs out: it sleeps and must be rung
            r1 = env.step(a)
            r2 = sync.step(a)
            for x, y in zip(r1[:4], r2[:4]):
                np.testing.assert_array_equal(x, y)
        # a reset and a call after many steps whose doorbells were never read
        o1, _ = env.reset(seed=5)
        o2, _ = sync.reset(seed=5)
        np.testing.assert_array_equal(o1, o2)
        assert env.get_attr("spec") == sync.get_attr("spec")
        r1 = env.step(_actions(1)[0])
        r2 = sync.step(_actions(1)[0])
        np.testing.assert_array_equal(r1[0], r2[0])
    finally:
        sync.close()
        env.close()


@pytest.mark.parametrize("inline", [False, True])
@pytest.mark.parametrize("spin_us", [0.0, 200.0, 20000.0])
def test_handoff_gives_sync_results(inline, spin_us):
    env = fastsample.ProcessVectorEnv(_fns(), num_workers=2, inline=inline, spin_us=spin_us)
    _check_against_sync(env)


@pytest.mark.parametrize("inline", [False, True])
def test_worker_woken_after_idle(inline):
    """Pauses longer than the spin and than the worker's first short sleep: it sleeps in the
    kernel and each step rings it."""
    env = fastsample.ProcessVectorEnv(_fns(), num_workers=2, inline=inline, spin_us=50.0)
    _check_against_sync(env, steps=40, pause_every=4, pause_s=0.01)


@pytest.mark.parametrize("inline", [False, True])
def test_unordered_loads_protocol(monkeypatch, inline):
    """Where loads may be reordered (not x86) every command and reply goes through its
    eventfd: the same results."""
    monkeypatch.setattr(W, "ORDERED_LOADS", False)
    monkeypatch.setattr(X, "_ORDERED_LOADS", False)
    env = fastsample.ProcessVectorEnv(_fns(), num_workers=2, inline=inline)
    _check_against_sync(env, steps=60, pause_every=20, pause_s=0.01)


def test_async_step_and_timeout_with_sleeping_worker():
    """step_async/step_wait(timeout) with workers that sleep between commands."""
    env = fastsample.ProcessVectorEnv(_fns(), num_workers=3, inline=False, spin_us=0.0)
    try:
        env.reset(seed=0)
        for a in _actions(20):
            env.step_async(a)
            obs, *_ = env.step_wait(timeout=10.0)
            assert obs.shape == (N, 4)
    finally:
        env.close()
