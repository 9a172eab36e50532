"""Shared-memory batch buffers (observations, rewards, flags, actions) for all workers.

Memory comes from ``multiprocessing`` ``RawArray``s: on Linux their backing file in /dev/shm
is unlinked the moment it is created, so nothing can be left behind in /dev/shm by any exit
path (crash, SIGKILL, Ctrl-C), and the memory is freed when the last process unmaps it. They
reach workers by fork inheritance or, with spawn/forkserver, as passed file descriptors. (No
locks: gymnasium's ``create_shared_memory`` adds a named semaphore per buffer, which under
spawn lives in /dev/shm until collected.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np


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


def create_buffers(ctx, space: gym.Space, n: int) -> Any:
    """Raw shared memory for ``n`` observations of ``space`` (nested like the space)."""
    if isinstance(space, gym.spaces.Dict):
        return {k: create_buffers(ctx, s, n) for k, s in space.spaces.items()}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(create_buffers(ctx, s, n) for s in space.spaces)
    shape, dtype = _leaf_layout(space)
    return ctx.RawArray("b", max(1, n * int(np.prod(shape, dtype=np.int64)) * dtype.itemsize))


def view_buffers(space: gym.Space, mem: Any, n: int) -> Any:
    """NumPy views of :func:`create_buffers` memory, shaped ``(n, *space.shape)``."""
    if isinstance(space, gym.spaces.Dict):
        return {k: view_buffers(s, mem[k], n) for k, s in space.spaces.items()}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(view_buffers(s, m, n) for s, m in zip(space.spaces, mem))
    shape, dtype = _leaf_layout(space)
    # built straight on the buffer, so views of it name it as their base (see OutputSlots)
    return np.ndarray((n, *shape), dtype=dtype, buffer=mem)


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
        self._obs_mem = [create_buffers(ctx, observation_space, num_envs) if obs_in_shared_memory else None
                         for _ in range(num_slots)]
        self._rewards = [ctx.RawArray("d", num_envs) for _ in range(num_slots)]
        self._flags = [ctx.RawArray("b", 2 * num_envs) for _ in range(num_slots)]
        dtype = array_action_dtype(action_space)
        self._action_dtype = dtype
        self._action_shape = () if isinstance(action_space, gym.spaces.Discrete) else tuple(action_space.shape or ())
        if dtype is not None:
            nbytes = int(np.prod((num_envs, *self._action_shape))) * dtype.itemsize
            self._actions = ctx.RawArray("b", max(nbytes, 1))
        else:
            self._actions = None
        self._views: list[SharedViews] | None = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_views"] = None
        return state

    def slot(self, k: int) -> SharedViews:
        """Views of all envs' results in slot ``k`` (and of the actions)."""
        if self._views is None:
            n = self.num_envs
            actions = None
            if self._actions is not None:
                actions = np.ndarray((n, *self._action_shape), dtype=self._action_dtype, buffer=self._actions)
            self._views = []
            for j in range(self.num_slots):
                obs = (view_buffers(self.observation_space, self._obs_mem[j], n)
                       if self._obs_mem[j] is not None else None)
                flags = self._flags[j]
                self._views.append(SharedViews(
                    obs, np.ndarray((n,), dtype=np.float64, buffer=self._rewards[j]),
                    np.ndarray((n,), dtype=np.bool_, buffer=flags),
                    np.ndarray((n,), dtype=np.bool_, buffer=flags, offset=n), actions))
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
