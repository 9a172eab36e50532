"""ProcessVectorEnv's default for Python envs: this process steps the first slice itself
(``inline``) when a caller waiting for its workers would be one busy process more than there
are cores; otherwise every env runs in a worker process. Either way ``*_async`` returns at once
(the caller's slice is stepped by the ``*_wait`` that collects it) and ``*_wait(timeout)``
covers that slice too."""

from __future__ import annotations

import functools
import multiprocessing as mp
import time

import gymnasium as gym
import numpy as np
import pytest

import fastsample
from fastsample import ProcessVectorEnv
from fastsample.engine import process_vector_env as pve


class SlowEnv(gym.Env):
    observation_space = gym.spaces.Box(-1, 1, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, reset_s=0.0, step_s=0.0):
        self.reset_s, self.step_s = reset_s, step_s

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        time.sleep(self.reset_s)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        time.sleep(self.step_s)
        return np.zeros(1, np.float32), 1.0, False, False, {}


def cpus(monkeypatch, n):
    monkeypatch.setattr(pve, "_usable_cpus", lambda: n)


@pytest.mark.parametrize("cores, workers, inline", [(2, 2, True), (2, 4, True), (4, 2, False), (8, 1, False),
                                                    (1, 1, False)])
def test_default_inline_when_workers_fill_the_cores(monkeypatch, cores, workers, inline):
    cpus(monkeypatch, cores)
    env = ProcessVectorEnv([functools.partial(gym.make, "CartPole-v1")] * 4, num_workers=workers)
    try:
        assert env.inline is inline
        assert len(env.worker_pids) == workers - (1 if inline else 0)
        env.reset(seed=0)
        env.step(np.zeros(4, dtype=np.int64))
    finally:
        env.close()


def test_default_num_workers_is_the_core_count_and_steps_inline(monkeypatch):
    cpus(monkeypatch, 2)
    env = ProcessVectorEnv([functools.partial(gym.make, "CartPole-v1")] * 4)
    try:
        assert (env.num_workers, env.inline, len(env.worker_pids)) == (2, True, 1)
    finally:
        env.close()


def test_explicit_inline_and_send_recv_batches_keep_their_meaning(monkeypatch):
    cpus(monkeypatch, 2)
    fns = [functools.partial(gym.make, "CartPole-v1")] * 4
    for kwargs, inline in (({"inline": False}, False), ({"batch_size": 2}, False), ({"inline": True}, True)):
        env = ProcessVectorEnv(fns, num_workers=2, **kwargs)
        try:
            assert env.inline is inline
        finally:
            env.close()
    env = fastsample.make_vec("CartPole-v1", 4, num_workers=2, batch_size=2)  # kernels: as before
    try:
        assert not env.inline
    finally:
        env.close()


def test_async_calls_return_at_once_and_the_wait_steps_the_callers_slice():
    env = ProcessVectorEnv([functools.partial(SlowEnv, 0.0, 0.3)] * 4, num_workers=2, inline=True)
    try:
        env.reset(seed=0)
        t0 = time.monotonic()
        env.step_async(np.zeros(4, dtype=np.int64))
        assert time.monotonic() - t0 < 0.25  # the caller's 2 envs take 0.6 s: not stepped here
        assert env.pending_call == "step"
        _, rewards, *_ = env.step_wait()
        assert rewards.tolist() == [1.0] * 4
        env.call_async("step", 0)
        assert len(env.call_wait()) == 4
    finally:
        env.close()


@pytest.mark.parametrize("shared_memory", [True, False])
def test_wait_timeout_covers_the_callers_slice(shared_memory):
    """Gymnasium's reset-timeout test: 4 envs whose reset sleeps 0.3 s, reset_wait(timeout=0.1)
    raises multiprocessing's TimeoutError; the call stays pending and a later wait returns it."""
    env = ProcessVectorEnv([functools.partial(SlowEnv, 0.3)] * 4, num_workers=2, inline=True,
                           shared_memory=shared_memory)
    try:
        env.reset_async(seed=0)
        with pytest.raises(mp.TimeoutError):
            env.reset_wait(timeout=0.1)
        assert env.pending_call == "reset"
        obs, _ = env.reset_wait()
        assert obs.shape == (4, 1)
    finally:
        env.close(terminate=True)


def test_a_failure_building_the_callers_slice_is_reported_as_a_workers():
    def broken():
        raise RuntimeError("cannot build env")

    with pytest.raises(fastsample.WorkerError, match=r"worker 0 \(envs 0\.\.1\) raised RuntimeError: cannot build"):
        # env 0 builds (the constructor reads the spaces from it), env 1 of the caller's slice fails
        ProcessVectorEnv([functools.partial(gym.make, "CartPole-v1"), broken] + [functools.partial(gym.make, "CartPole-v1")] * 2,
                         num_workers=2, inline=True)
