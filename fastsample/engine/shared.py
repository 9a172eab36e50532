"""Shared-memory batch buffers (observations, rewards, flags, actions) for all workers.

All of an env's buffers live in one :class:`SharedBlock`: a ``memfd`` (anonymous shared
memory) whose pages are reserved with ``posix_fallocate`` when it is created. So:

* nothing is ever named in /dev/shm, and nothing can be left there by any exit path (crash,
  SIGKILL, Ctrl-C); the memory is freed when the last process unmaps it;
* a small /dev/shm (Docker's default is 64 MB) does not limit it, and it never silently moves
  to a file on disk (``multiprocessing``'s ``RawArray`` falls back to a file under /tmp when
  /dev/shm is short of space);
* memory that cannot be had is a :class:`SharedMemoryError` at creation, naming the size, never
  a bus error (SIGBUS) at the first write to a page that no longer fits.

Where ``memfd_create`` does not exist, the block is a file created and unlinked at once in
/dev/shm (or the temp dir), with its free space checked first and its pages reserved the same
way. Blocks reach workers by fork inheritance or, with spawn/forkserver, as passed file
descriptors. (No locks: gymnasium's ``create_shared_memory`` adds a named semaphore per
buffer, which under spawn lives in /dev/shm until collected.)
"""

from __future__ import annotations

import errno
import mmap
import os
import sys
import tempfile
import weakref
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np


class SharedMemoryError(MemoryError):
    """Shared memory for an env's buffers could not be reserved (the message says how much,
    where from, and what to change)."""


def _size(nbytes: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} bytes"


def _shm_advice(where: str) -> str:
    return (f"the limit is {where}'s size: enlarge it (Docker: `docker run --shm-size=2g`; Kubernetes: an "
            f"emptyDir with medium: Memory mounted at /dev/shm; elsewhere `mount -o remount,size=2G /dev/shm`), "
            f"or use fewer envs")


def _reserve(fd: int, nbytes: int, what: str, where: str) -> None:
    """Give the file ``nbytes`` of real pages now, or raise; never leave it sparse (a write
    to a page the filesystem cannot back would be a SIGBUS)."""
    try:
        if hasattr(os, "posix_fallocate"):
            os.posix_fallocate(fd, 0, nbytes)
        else:  # pragma: no cover - no posix_fallocate (macOS): at least size it
            os.ftruncate(fd, nbytes)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.ENOMEM, errno.EFBIG, errno.EDQUOT):
            advice = (_shm_advice(where) if where.startswith("/dev/shm")
                      else "the limit is the memory this process may use (a container's or cgroup's memory "
                           "limit, e.g. `docker run --memory`): raise it, or use fewer envs")
            raise SharedMemoryError(
                f"cannot reserve {_size(nbytes)} of shared memory ({where}) for {what}: {exc.strerror}; "
                f"{advice}") from None
        raise


class SharedBlock:
    """``nbytes`` of shared memory, reserved now (see the module docstring); ``buf`` is its
    mapping. Picklable to spawned/forkserver workers (as a passed file descriptor)."""

    def __init__(self, nbytes: int, what: str = "the env's buffers", *, _fd: int | None = None):
        self.nbytes = max(int(nbytes), 1)
        if _fd is None:
            _fd = _new_shared_fd(self.nbytes, what)
        self.fd = _fd
        self._closer = weakref.finalize(self, os.close, _fd)
        self.buf = mmap.mmap(_fd, self.nbytes)

    def __reduce__(self):
        from multiprocessing import reduction

        return (_rebuild_block, (reduction.DupFd(self.fd), self.nbytes))


def _rebuild_block(dup, nbytes: int) -> SharedBlock:
    return SharedBlock(nbytes, _fd=dup.detach())


def _new_shared_fd(nbytes: int, what: str) -> int:
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("fastsample-shared", os.MFD_CLOEXEC)
        try:
            _reserve(fd, nbytes, what, "anonymous shared memory")
        except BaseException:
            os.close(fd)
            raise
        return fd
    where = "/dev/shm" if sys.platform.startswith("linux") and os.path.isdir("/dev/shm") else tempfile.gettempdir()
    st = os.statvfs(where)
    free = st.f_bavail * st.f_frsize
    if free < nbytes:
        advice = _shm_advice(where) if where == "/dev/shm" else "free some space there, or use fewer envs"
        raise SharedMemoryError(f"{what} need {_size(nbytes)} of shared memory but {where} has {_size(free)} free; "
                                f"{advice}")
    fd, name = tempfile.mkstemp(prefix=f"fastsample-{os.getpid()}-", dir=where)
    os.unlink(name)  # nothing named is left behind, whatever happens next
    try:
        _reserve(fd, nbytes, what, where)
    except BaseException:
        os.close(fd)
        raise
    return fd


class _Planner:
    """Byte offsets of the buffers in one block, each aligned to a cache line."""

    def __init__(self):
        self.size = 0

    def take(self, nbytes: int) -> int:
        offset = -(-self.size // 64) * 64
        self.size = offset + int(nbytes)
        return offset


def slice_batch(batch: Any, lo: int, hi: int) -> Any:
    """Views of envs ``lo..hi-1`` of a (possibly nested dict/tuple) batch."""
    if isinstance(batch, dict):
        return {k: slice_batch(v, lo, hi) for k, v in batch.items()}
    if isinstance(batch, tuple):
        return tuple(slice_batch(v, lo, hi) for v in batch)
    return batch[lo:hi]


def copy_batch(batch: Any) -> Any:
    if isinstance(batch, dict):
        return {k: copy_batch(v) for k, v in batch.items()}
    if isinstance(batch, tuple):
        return tuple(copy_batch(v) for v in batch)
    return batch.copy()


def concat_batches(parts: list[Any]) -> Any:
    first = parts[0]
    if isinstance(first, dict):
        return {k: concat_batches([p[k] for p in parts]) for k in first}
    if isinstance(first, tuple):
        return tuple(concat_batches([p[i] for p in parts]) for i in range(len(first)))
    return np.concatenate(parts) if len(parts) > 1 else first.copy()


def _leaf_layout(space: gym.Space) -> tuple[tuple[int, ...], np.dtype]:
    if isinstance(space, gym.spaces.Discrete):
        return (), np.dtype(space.dtype)
    if isinstance(space, (gym.spaces.Box, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)):
        return tuple(space.shape), np.dtype(space.dtype)
    raise TypeError(
        f"{type(space).__name__} observations cannot live in shared memory; use shared_memory=False"
    )


def plan_buffers(planner: _Planner, space: gym.Space, n: int) -> Any:
    """Offsets for ``n`` observations of ``space`` (nested like the space)."""
    if isinstance(space, gym.spaces.Dict):
        return {k: plan_buffers(planner, s, n) for k, s in space.spaces.items()}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(plan_buffers(planner, s, n) for s in space.spaces)
    shape, dtype = _leaf_layout(space)
    return planner.take(n * int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)


def view_buffers(space: gym.Space, buf: Any, plan: Any, n: int) -> Any:
    """NumPy views of :func:`plan_buffers` memory in ``buf``, shaped ``(n, *space.shape)``."""
    if isinstance(space, gym.spaces.Dict):
        return {k: view_buffers(s, buf, plan[k], n) for k, s in space.spaces.items()}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(view_buffers(s, buf, p, n) for s, p in zip(space.spaces, plan))
    shape, dtype = _leaf_layout(space)
    # built straight on the buffer, so views of it name it as their base (see OutputSlots)
    return np.ndarray((n, *shape), dtype=dtype, buffer=buf, offset=plan)


def array_action_dtype(space: gym.Space) -> np.dtype | None:
    """dtype of the shared action buffer for ``space``; None if actions travel pickled."""
    if isinstance(space, (gym.spaces.Discrete, gym.spaces.Box)):
        return np.dtype(space.dtype)  # what AsyncVectorEnv's envs receive (np.int32 for Discrete(dtype=int32))
    if isinstance(space, (gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)):
        return space.dtype
    return None


@dataclass
class SharedViews:
    obs: Any
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    actions: np.ndarray | None


class SharedBatch:
    """The shared arrays for ``num_envs`` envs. Picklable to worker processes at start-up.

    Results (observations, rewards, flags) come in ``num_slots`` sets, which the engine hands
    out in turn (see ``fastsample.output_slots``); actions have one buffer.
    """

    def __init__(self, ctx, observation_space: gym.Space, action_space: gym.Space, num_envs: int,
                 obs_in_shared_memory: bool = True, num_slots: int = 1):
        self.observation_space = observation_space
        self.action_space = action_space
        self.num_envs = num_envs
        self.num_slots = num_slots
        planner = _Planner()
        self._obs_plan = [plan_buffers(planner, observation_space, num_envs) if obs_in_shared_memory else None
                          for _ in range(num_slots)]
        self._rewards = [planner.take(8 * num_envs) for _ in range(num_slots)]
        self._flags = [planner.take(2 * num_envs) for _ in range(num_slots)]
        dtype = array_action_dtype(action_space)
        self._action_dtype = dtype
        self._action_shape = () if isinstance(action_space, gym.spaces.Discrete) else tuple(action_space.shape or ())
        if dtype is not None:
            self._actions = planner.take(int(np.prod((num_envs, *self._action_shape))) * dtype.itemsize)
        else:
            self._actions = None
        self.nbytes = planner.size
        self.block = SharedBlock(planner.size, f"{num_envs} envs' observations, rewards, flags and actions "
                                               f"({num_slots} result slots)")
        self._views: list[SharedViews] | None = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_views"] = None
        return state

    def slot(self, k: int) -> SharedViews:
        """Views of all envs' results in slot ``k`` (and of the actions)."""
        if self._views is None:
            n = self.num_envs
            buf = self.block.buf
            actions = None
            if self._actions is not None:
                actions = np.ndarray((n, *self._action_shape), dtype=self._action_dtype, buffer=buf,
                                     offset=self._actions)
            self._views = []
            for j in range(self.num_slots):
                obs = (view_buffers(self.observation_space, buf, self._obs_plan[j], n)
                       if self._obs_plan[j] is not None else None)
                self._views.append(SharedViews(
                    obs, np.ndarray((n,), dtype=np.float64, buffer=buf, offset=self._rewards[j]),
                    np.ndarray((n,), dtype=np.bool_, buffer=buf, offset=self._flags[j]),
                    np.ndarray((n,), dtype=np.bool_, buffer=buf, offset=self._flags[j] + n), actions))
        return self._views[k]

    @property
    def full(self) -> SharedViews:
        return self.slot(0)

    def views(self, lo: int, hi: int, slot: int = 0) -> SharedViews:
        full = self.slot(slot)
        return SharedViews(
            slice_batch(full.obs, lo, hi) if full.obs is not None else None,
            full.rewards[lo:hi],
            full.terminated[lo:hi],
            full.truncated[lo:hi],
            full.actions[lo:hi] if full.actions is not None else None,
        )
