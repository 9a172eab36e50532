"""Worker processes are a liability until proven safe: every failure path ends with a clear
error (never a hang), no process left running and nothing left in /dev/shm."""

from __future__ import annotations

import ctypes
import gc
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
import time

import gymnasium as gym
import numpy as np
import psutil
import pytest

import fastsample
from tests.support import leaked_shm, shm_entries


@pytest.fixture
def no_leaks():
    """Check that a test leaves no /dev/shm entry and no child process behind."""
    shm_before = shm_entries()
    children_before = {p.pid for p in psutil.Process().children(recursive=True)}
    yield
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        children = {p.pid for p in psutil.Process().children(recursive=True)} - children_before
        if not children:
            break
        time.sleep(0.05)
    assert not children, f"worker processes left running: {children}"
    leaked = leaked_shm(shm_before, [os.getpid()])
    assert not leaked, f"/dev/shm entries left: {leaked}"


class FaultyEnv(gym.Env):
    """CartPole that misbehaves at step ``at`` of its first episode: raise, segfault or hang."""

    def __init__(self, fault: str = "raise", at: int = 3):
        self.inner = gym.make("CartPole-v1")
        self.observation_space = self.inner.observation_space
        self.action_space = self.inner.action_space
        self.fault, self.at, self.t = fault, at, 0

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return self.inner.reset(seed=seed, options=options)

    def step(self, action):
        self.t += 1
        if self.t == self.at:
            if self.fault == "raise":
                raise ValueError(f"boom at step {self.t}")
            if self.fault == "segfault":
                ctypes.string_at(0)
            if self.fault == "hang":
                time.sleep(3600)
        return self.inner.step(action)


def faulty_fns(fault: str, n: int = 4, bad_env: int = 3, at: int = 3):
    return [(lambda i=i: FaultyEnv(fault if i == bad_env else "none", at)) for i in range(n)]


def step_until_error(env, limit=10):
    t0 = time.monotonic()
    with pytest.raises(fastsample.WorkerError) as err:
        for _ in range(limit):
            env.step(np.zeros(env.num_envs, dtype=np.int64))
    return err.value, time.monotonic() - t0


def test_exception_in_env_names_worker_and_error(no_leaks):
    env = fastsample.ProcessVectorEnv(faulty_fns("raise"), num_workers=2)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"worker 1 \(envs 2\.\.3\) raised ValueError: boom at step 3"):
        for _ in range(5):
            env.step(np.zeros(4, dtype=np.int64))
    env.close()


@pytest.mark.parametrize("how", ["sigkill", "segfault"])
def test_dead_worker_is_reported_within_2s(how, no_leaks):
    if how == "sigkill":
        env = fastsample.make_vec("CartPole-v1", 4, num_workers=2)
        env.reset(seed=0)
        os.kill(env.worker_pids[1], signal.SIGKILL)
    else:
        env = fastsample.ProcessVectorEnv(faulty_fns("segfault"), num_workers=2)
        env.reset(seed=0)
    err, elapsed = step_until_error(env)
    assert isinstance(err, fastsample.WorkerDiedError)
    assert "worker 1 (envs 2..3) died" in str(err)
    assert ("SIGKILL" if how == "sigkill" else "SIGSEGV") in str(err)
    assert elapsed < 2.0
    with pytest.raises(fastsample.WorkerError, match="died"):
        env.step(np.zeros(4, dtype=np.int64))  # stays unusable, says why
    env.close()
    assert env.closed


def test_idle_worker_death_reported_on_next_call(no_leaks):
    env = fastsample.make_vec("CartPole-v1", 4, num_workers=2, batch_size=2)
    env.async_reset()
    _, *_, info = env.recv()
    other = 1 - int(info["env_id"][0] // 2)
    env.recv()  # both halves idle now
    os.kill(env.worker_pids[other], signal.SIGKILL)
    env._proc_of[other].join(2)
    with pytest.raises(fastsample.WorkerDiedError, match=f"worker {other}"):
        env.send(np.zeros(2, dtype=np.int64), np.arange(2 * other, 2 * other + 2))
        env.recv(timeout=2)
    env.close()


def test_step_that_never_returns_times_out(no_leaks):
    env = fastsample.ProcessVectorEnv(faulty_fns("hang", at=2), num_workers=2)
    env.reset(seed=0)
    env.step(np.zeros(4, dtype=np.int64))
    env.step_async(np.zeros(4, dtype=np.int64))
    t0 = time.monotonic()
    with pytest.raises(mp.TimeoutError):
        env.step_wait(timeout=0.5)
    assert time.monotonic() - t0 < 1.5
    with pytest.raises(mp.TimeoutError):  # still pending: waiting again is allowed
        env.step_wait(timeout=0.2)
    t0 = time.monotonic()
    env.close()  # waits a bounded time for the hung worker, then kills it
    assert time.monotonic() - t0 < 10


def test_close_is_idempotent_and_final(no_leaks):
    env = fastsample.make_vec("CartPole-v1", 4, num_workers=2)
    env.reset(seed=0)
    pids = list(env.worker_pids.values())
    env.close()
    env.close()
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)
    with pytest.raises(gym.error.ClosedEnvironmentError):
        env.reset()


def test_close_terminate_while_pending(no_leaks):
    env = fastsample.ProcessVectorEnv(faulty_fns("hang", at=1), num_workers=2)
    env.reset(seed=0)
    env.step_async(np.zeros(4, dtype=np.int64))
    t0 = time.monotonic()
    env.close(terminate=True)
    assert time.monotonic() - t0 < 3


def test_interrupted_inline_step_makes_the_env_unusable_not_hung(no_leaks, monkeypatch):
    """A KeyboardInterrupt raised inside the envs this process steps itself (a second Ctrl-C,
    or the env's own code; a first Ctrl-C waits for the slice, see test_engine_interrupts): a
    clear error afterwards, and close() still ends the workers."""
    env = fastsample.make_vec("CartPole-v1", 4, num_workers=2)
    env.reset(seed=0)

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(env._local, "step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        env.step(np.zeros(4, dtype=np.int64))
    with pytest.raises(fastsample.WorkerError, match="interrupted"):
        env.step(np.zeros(4, dtype=np.int64))
    t0 = time.monotonic()
    env.close()
    assert env.closed and time.monotonic() - t0 < 10


def test_garbage_collection_stops_workers(no_leaks):
    env = fastsample.make_vec("CartPole-v1", 4, num_workers=2)
    env.reset(seed=0)
    del env
    gc.collect()


def test_start_up_failure_is_reported_and_cleaned(no_leaks):
    def broken():
        raise RuntimeError("cannot build env")

    fns = [lambda: gym.make("CartPole-v1"), broken, broken, broken]
    with pytest.raises(fastsample.WorkerError, match="cannot build env"):
        fastsample.ProcessVectorEnv(fns, num_workers=2)


_CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    import numpy as np
    import fastsample
    context = None if sys.argv[2] == "default" else sys.argv[2]
    env = fastsample.make_vec("CartPole-v1", 4, num_workers=2, context=context)
    env.reset(seed=0)
    print(" ".join(str(pid) for pid in env.worker_pids.values()), flush=True)
    if sys.argv[1] == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    a = np.zeros(4, dtype=np.int64)
    while True:
        env.step(a)
    """
)


def _alive(pids):
    out = []
    for p in pids:
        try:
            if psutil.Process(p).status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.mark.parametrize("how, context", [("crash", "default"), ("crash", "forkserver"), ("crash", "spawn"),
                                          ("ctrl-c", "default")])
def test_parent_crash_or_ctrl_c_leaves_nothing(how, context):
    """Every process the parent started (workers, and with forkserver/spawn the forkserver and
    multiprocessing's resource tracker) is gone within 5 s of the parent's end."""
    shm_before = shm_entries()
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, how, context], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        worker_pids = [int(p) for p in proc.stdout.readline().split()]
        assert worker_pids, proc.stderr.read()
        descendants = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    except BaseException:
        proc.kill()
        raise
    if how == "ctrl-c":
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
    proc.wait(timeout=20)
    if how == "ctrl-c":
        assert "KeyboardInterrupt" in proc.stderr.read()
    everything = set(worker_pids) | set(descendants)
    deadline = time.monotonic() + 5
    alive = _alive(everything)
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = _alive(everything)
    left = {p: " ".join(psutil.Process(p).cmdline())[:80] for p in alive}
    for p in alive:  # do not leave them to the next test
        os.kill(p, signal.SIGKILL)
    assert not left, f"processes outlived their parent by 5 s: {left}"
    assert not leaked_shm(shm_before, [proc.pid, *everything])
