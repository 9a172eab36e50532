"""Ctrl-C (SIGINT) at any point of a call never wedges or costs an env: the call took effect
(``CallInterrupted.completed``, with its result), did nothing, or is in flight and its
``*_wait()`` finishes it; afterwards the env goes on with the results of an uninterrupted run.
Nothing hangs, and nothing is left in /dev/shm."""

from __future__ import annotations

import functools
import os
import signal
import threading
import time

import gymnasium as gym
import numpy as np
import pytest

import fastsample
from fastsample import CallInterrupted
from tests.support import leaked_shm, shm_entries

pytestmark = pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                                reason="KeyboardInterrupt is only raised in the main thread")


@pytest.fixture
def no_shm_leaks():
    before = shm_entries()
    yield
    assert not leaked_shm(before, [os.getpid()])


@pytest.mark.parametrize("kind", ["in-process", "kernel-workers", "kernel-worker", "python-workers", "python-inline",
                                  "kernel-send-recv", "python-send-recv"])
def test_random_interrupts_never_hang_lose_or_corrupt_an_env(kind, no_shm_leaks):
    """A short run of bench/interrupt_soak.py (which runs 1000): SIGINTs at random microseconds
    into step/reset/send/recv; every result checked bit for bit against a reference env that
    performed exactly the calls that took effect; a 5 s watchdog on every call."""
    from bench.interrupt_soak import soak

    stats = soak(kind, interrupts=40, seed=1)
    assert (stats.hangs, stats.lost, stats.wrong) == (0, 0, 0), stats.notes
    assert stats.interrupts >= 40


class SlowEnv(gym.Env):
    """CartPole whose step takes ``delay`` seconds and counts the steps it made."""

    def __init__(self, delay=0.2):
        self.inner = gym.make("CartPole-v1")
        self.observation_space = self.inner.observation_space
        self.action_space = self.inner.action_space
        self.delay = delay
        self.steps = 0

    def reset(self, *, seed=None, options=None):
        return self.inner.reset(seed=seed, options=options)

    def step(self, action):
        time.sleep(self.delay)
        self.steps += 1
        return self.inner.step(action)


def _interrupt_after(seconds: float) -> threading.Timer:
    t = threading.Timer(seconds, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT))
    t.start()
    return t


def _reference(n, steps):
    ref = gym.vector.SyncVectorEnv([functools.partial(SlowEnv, 0.0) for _ in range(n)])
    ref.reset(seed=0)
    return [ref.step(a) for a in steps], ref


@pytest.mark.parametrize("inline", [False, True], ids=["workers", "inline"])
def test_step_interrupted_while_envs_step_is_finished_by_step_wait(inline, no_shm_leaks):
    """Ctrl-C while the workers (or, inline, this process) step: step() raises at once
    (workers) or as soon as its own slice is done (inline), the step is in flight, and
    step_wait() returns exactly the uninterrupted results; the env goes on."""
    env = fastsample.ProcessVectorEnv([functools.partial(SlowEnv, 0.5) for _ in range(4)], num_workers=2,
                                      inline=inline)
    try:
        env.reset(seed=0)
        actions = [np.array([0, 1, 1, 0]), np.array([1, 1, 0, 0]), np.array([0, 0, 1, 1])]
        want, ref = _reference(4, actions)
        ref.close()
        _interrupt_after(0.1)
        t0 = time.monotonic()
        with pytest.raises(CallInterrupted) as err:
            env.step(actions[0])
        assert time.monotonic() - t0 < 3.0  # never waits for more than the slice in progress (1 s)
        if inline and err.value.completed:
            # inline, the workers' slice (as long as the caller's) may be in when the caller's own
            # slice ends: then the step took effect and its results come with the interrupt
            assert env.pending_call is None
            got = err.value.result
        else:
            assert err.value.pending == "step" and env.pending_call == "step"
            assert "step_wait()" in str(err.value)
            with pytest.raises(gym.error.AlreadyPendingCallError, match="step_wait"):
                env.step(actions[1])
            got = env.step_wait()
            assert env.pending_call is None
        for name, a, b in zip(("obs", "rewards", "terminated", "truncated"), want[0][:4], got[:4]):
            np.testing.assert_array_equal(a, b, err_msg=name)
        for t in (1, 2):
            got = env.step(actions[t])
            np.testing.assert_array_equal(want[t][0], got[0])
        assert env.get_attr("steps") == (3, 3, 3, 3)  # every env stepped exactly once per step
    finally:
        env.close()


def test_interrupted_reset_is_finished_by_reset_wait(no_shm_leaks):
    class SlowReset(SlowEnv):
        def reset(self, *, seed=None, options=None):
            time.sleep(0.5)
            return super().reset(seed=seed, options=options)

    env = fastsample.ProcessVectorEnv([functools.partial(SlowReset, 0.0) for _ in range(4)], num_workers=2)
    try:
        _interrupt_after(0.1)
        with pytest.raises(CallInterrupted) as err:
            env.reset(seed=5)
        assert err.value.pending == "reset"
        obs, _ = env.reset_wait()
        ref = gym.vector.SyncVectorEnv([functools.partial(SlowEnv, 0.0) for _ in range(4)])
        np.testing.assert_array_equal(ref.reset(seed=5)[0], obs)
        ref.close()
        env.step(np.zeros(4, dtype=np.int64))
    finally:
        env.close()


def test_a_second_ctrl_c_stops_a_long_inline_slice_and_says_so(no_shm_leaks):
    """The inline slice holds one Ctrl-C until its step is done; a second one stops it at once
    (an env that never returns must not make Ctrl-C useless). The env is then unusable, with
    a message saying why, and close() still ends the workers."""
    env = fastsample.ProcessVectorEnv([functools.partial(SlowEnv, 1.0) for _ in range(4)], num_workers=2,
                                      inline=True)
    try:
        env.reset(seed=0)
        _interrupt_after(0.1)
        _interrupt_after(0.3)
        t0 = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            env.step(np.zeros(4, dtype=np.int64))
        assert time.monotonic() - t0 < 1.5
        with pytest.raises(fastsample.WorkerError, match="interrupted twice"):
            env.step(np.zeros(4, dtype=np.int64))
    finally:
        t0 = time.monotonic()
        env.close()
        assert time.monotonic() - t0 < 10


def test_an_interrupted_synchronous_call_is_drained_by_the_next_call(no_shm_leaks):
    """call_envs/get_attr/set_attr/render have no *_wait(): after Ctrl-C their replies are
    dropped by the next call, which waits for them first."""
    env = fastsample.ProcessVectorEnv([functools.partial(SlowEnv, 0.0) for _ in range(4)], num_workers=2)
    try:
        env.reset(seed=0)
        _interrupt_after(0.1)
        with pytest.raises(CallInterrupted, match="dropped"):
            env.call_envs(_sleep_then_steps, [0, 3])
        assert env.get_attr("steps") == (0, 0, 0, 0)
        env.step(np.zeros(4, dtype=np.int64))
        assert env.get_attr("steps") == (1, 1, 1, 1)
    finally:
        env.close()


def _sleep_then_steps(env):
    time.sleep(0.5)
    return env.steps


def test_ctrl_c_with_a_program_handler_calls_it_after_the_critical_section(no_shm_leaks):
    """A program's own SIGINT handler is kept: it runs once the env is consistent, and if it
    does not raise the call simply returns its results."""
    calls = []
    previous = signal.signal(signal.SIGINT, lambda s, f: calls.append(s))
    try:
        env = fastsample.make_vec("CartPole-v1", 4, num_workers=2, seed=0)
        env.reset(seed=0)
        for _ in range(200):
            env.step(np.zeros(4, dtype=np.int64))
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        env.step(np.zeros(4, dtype=np.int64))
        time.sleep(0.01)
        assert calls == [signal.SIGINT]
        assert signal.getsignal(signal.SIGINT) is not fastsample.engine.interrupts.HANDLER
        env.close()
    finally:
        signal.signal(signal.SIGINT, previous)


def test_held_sections_restore_whatever_sigint_handler_was_there():
    """Installing and removing a program handler around held sections leaves Python's
    behaviour as it was: the default handler raises KeyboardInterrupt again afterwards."""
    from fastsample.engine.interrupts import HANDLER, hold_interrupts

    env = fastsample.make_vec("CartPole-v1", 2, seed=0)
    env.reset(seed=0)
    env.step(np.zeros(2, dtype=np.int64))  # HANDLER now stands in for the default handler
    calls = []
    previous = signal.signal(signal.SIGINT, lambda s, f: calls.append(s))
    try:
        env.step(np.zeros(2, dtype=np.int64))  # swapped for this section only
    finally:
        signal.signal(signal.SIGINT, previous)
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)  # outside sections: as the default handler
    with pytest.raises(CallInterrupted) as err:
        with hold_interrupts() as held:
            signal.raise_signal(signal.SIGINT)  # held
            assert held.active
        held.deliver("test", completed=True, result=1)
    assert err.value.result == 1 and calls == []
    env.close()
