"""A small /dev/shm (Docker's default is 64 MB) and a small /tmp: envs whose buffers do not fit
there still work (their shared memory is a memfd, reserved up front), and where shared memory
cannot be had the error is a Python exception naming the size and what to change, never a bus
error (SIGBUS) at some later write.

Needs a private mount namespace (``unshare --mount``, root or CAP_SYS_ADMIN) to mount 1 MB
tmpfs filesystems on /dev/shm and /tmp for a child process; skipped otherwise."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastsample
from fastsample.engine.shared import SharedMemoryError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny_mounts_available() -> str | None:
    if not sys.platform.startswith("linux") or shutil.which("unshare") is None:
        return "needs Linux and the unshare tool"
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            "mount -t tmpfs -o size=1m tmpfs /dev/shm && mount -t tmpfs -o size=1m tmpfs /tmp"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot mount a small tmpfs in a private mount namespace (needs root/CAP_SYS_ADMIN): {probe.stderr.strip()}"
    return None


def _run_with_tiny_shm_and_tmp(code: str) -> subprocess.CompletedProcess:
    script = ("mount -t tmpfs -o size=1m tmpfs /dev/shm && mount -t tmpfs -o size=1m tmpfs /tmp && "
              f"exec {sys.executable} -c \"$0\"")
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, code],
                          capture_output=True, text=True, timeout=240, cwd=ROOT, env=env)


_BIG_ENV = textwrap.dedent(
    """
    import numpy as np, fastsample
    n = 32768  # about 2.7 MB of shared buffers: more than /dev/shm and /tmp (1 MB each) hold
    for kw in ({"num_workers": 2}, {"num_workers": 2, "context": "spawn"}):
        env = fastsample.make_vec("CartPole-v1", n, seed=0, **kw)
        ref = fastsample.make_vec("CartPole-v1", n, seed=0)
        assert np.array_equal(env.reset()[0], ref.reset()[0])
        rng = np.random.default_rng(0)
        for _ in range(20):
            a = rng.integers(0, 2, n)
            assert np.array_equal(env.step(a)[0], ref.step(a)[0])
        env.close()
    print("OK", flush=True)
    """
)


@pytest.mark.skipif(_tiny_mounts_available() is not None, reason=str(_tiny_mounts_available()))
def test_buffers_larger_than_dev_shm_and_tmp_work():
    proc = _run_with_tiny_shm_and_tmp(_BIG_ENV)
    assert proc.returncode == 0 and "OK" in proc.stdout, (
        f"exit {proc.returncode} (-7 is SIGBUS)\nstdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-3000:]}")


_NO_MEMFD = textwrap.dedent(
    """
    import os
    del os.memfd_create  # the fallback: a file in /dev/shm, checked and reserved up front
    import fastsample
    from fastsample.engine.shared import SharedMemoryError
    try:
        fastsample.make_vec("CartPole-v1", 32768, num_workers=2)
    except SharedMemoryError as exc:
        print("ERROR", exc, flush=True)
    else:
        print("no error", flush=True)
    env = fastsample.make_vec("CartPole-v1", 64, num_workers=2, seed=0)  # small ones still fit
    env.reset()
    env.step(env.action_space.sample())
    env.close()
    print("small OK", flush=True)
    """
)


@pytest.mark.skipif(_tiny_mounts_available() is not None, reason=str(_tiny_mounts_available()))
def test_without_memfd_a_small_dev_shm_is_a_clear_error_naming_size_and_fix():
    proc = _run_with_tiny_shm_and_tmp(_NO_MEMFD)
    assert proc.returncode == 0, f"exit {proc.returncode} (-7 is SIGBUS)\n{proc.stderr[-3000:]}"
    line = next(l for l in proc.stdout.splitlines() if l.startswith(("ERROR", "no error")))
    assert line.startswith("ERROR"), line
    assert "MiB" in line and "/dev/shm" in line and "--shm-size" in line, line
    assert "small OK" in proc.stdout


def test_memory_that_cannot_be_reserved_is_a_clear_error(monkeypatch):
    """posix_fallocate failing (ENOSPC from a full tmpfs, ENOMEM) raises at creation, naming
    the size, before any worker starts."""
    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(SharedMemoryError, match=r"cannot reserve .* of shared memory .* No space left"):
        fastsample.make_vec("CartPole-v1", 4096, num_workers=2)
