"""Validating a batch of actions once, before any environment sees it."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from envs_numba import core


class InvalidAction(gym.error.InvalidAction, ValueError):
    """An action outside the action space (gymnasium's class, also a ``ValueError``)."""


class ActionBuffer:
    """Checks batched actions for ``num_envs`` copies of ``space`` and copies them into
    ``self.array`` (int64 for ``Discrete``, float32 for ``Box``), or raises without copying.

    ``Discrete`` and ``Box`` are checked by Numba loops (no per-env Python); other spaces
    are checked with ``batch_space(space, n).contains`` and passed through unchanged.
    """

    def __init__(self, space: gym.Space, num_envs: int, array: np.ndarray | None = None):
        self.space = space
        self.num_envs = num_envs
        if isinstance(space, gym.spaces.Discrete):
            shape, dtype = (num_envs,), np.int64
            self._kind = "discrete"
            self._n = int(space.n)
            self._start = int(space.start)
        elif isinstance(space, gym.spaces.Box):
            shape, dtype = (num_envs, *space.shape), np.float32 if space.dtype == np.float32 else space.dtype
            self._kind = "box"
        else:
            shape, dtype = None, None
            self._kind = "other"
            self._batched = gym.vector.utils.batch_space(space, num_envs)
        if shape is not None:
            if array is None:
                array = np.zeros(shape, dtype=dtype)
            elif array.shape != shape or array.dtype != dtype:
                raise ValueError(f"action buffer must be {dtype.__name__}{shape}, got {array.dtype}{array.shape}")
        self.array = array

    def load(self, actions: Any) -> Any:
        """Validate ``actions``; return the buffer holding them (or the actions themselves
        for spaces without a buffer)."""
        if self._kind == "other":
            if not self._batched.contains(actions):
                raise InvalidAction(f"actions {actions!r} are not in the batched action space {self._batched}")
            return actions
        a = actions if isinstance(actions, np.ndarray) else np.asarray(actions)
        n = self.num_envs
        expected = self.array.shape
        if a.shape != expected:
            if a.ndim == 0:
                raise TypeError(f"actions must be a batch of {n} actions, got a scalar {actions!r}")
            if a.shape[0] != n:
                raise ValueError(f"expected {n} actions (one per env), got {a.shape[0]} (shape {a.shape})")
            raise ValueError(f"actions must have shape {expected}, got {a.shape}")
        if self._kind == "discrete":
            if a.dtype.kind not in "iu":
                raise TypeError(f"actions for {self.space} must be integers, got dtype {a.dtype}")
            bad = core.check_discrete_actions(a, self._start, self._start + self._n, self.array)
            if bad >= 0:
                raise InvalidAction(
                    f"action {a[bad].item()!r} of env {bad} is outside {self.space} "
                    f"(valid: {self._start}..{self._start + self._n - 1})"
                )
        else:
            if a.dtype.kind not in "fiu":
                raise TypeError(f"actions for {self.space} must be numbers, got dtype {a.dtype}")
            bad = core.check_box_actions(np.ascontiguousarray(a), self.array, self.array.dtype == np.float32)
            if bad >= 0:
                raise InvalidAction(
                    f"action {a[bad].tolist()!r} of env {bad} is not finite (NaN or inf are rejected; "
                    f"finite values outside {self.space} are clipped by the env, as in gymnasium)"
                )
        return self.array
