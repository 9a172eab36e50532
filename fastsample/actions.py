"""Validating a batch of actions once, before any environment sees it."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from envs_numba import core


class InvalidAction(gym.error.InvalidAction, ValueError):
    """An action outside the action space (gymnasium's class, also a ``ValueError``)."""


def _first_bad_env(bad: np.ndarray, n: int) -> int:
    return int(np.flatnonzero(bad.reshape(n, -1).any(axis=1))[0])


class ActionBuffer:
    """Checks batched actions for ``num_envs`` copies of ``space`` and copies them into
    ``self.array`` (the space's dtype: what ``space.sample()`` gives and what an env stepped by
    ``AsyncVectorEnv`` receives), or raises without copying.

    ``Discrete`` and float32/float64 ``Box`` are checked by Numba loops (no per-env Python);
    other ``Box`` dtypes (float16, integers) with NumPy; gymnasium's other spaces with
    ``batch_space(space, n).contains``, and passed through unchanged; custom spaces (not in
    ``gymnasium.spaces``) not at all, as ``AsyncVectorEnv`` does. The rules:

    * ``Discrete``: integer dtypes only (``TypeError`` otherwise, as ``Discrete.contains``
      rejects them), values in ``start..start+n-1`` (``InvalidAction``).
    * float ``Box``: float or integer input, cast to the space's dtype; a value that is NaN or
      infinite in that dtype (``1e39`` for float32, ``70000`` for float16) is rejected, finite
      values outside the bounds pass (the env clips them, as gymnasium's envs do).
    * integer ``Box``: integer (or bool) input only: ``Box.contains`` rejects floats and a cast
      would truncate ``3.9`` to ``3`` silently (``TypeError``); a value the dtype cannot hold
      is rejected (``InvalidAction``), never wrapped around.
    """

    def __init__(self, space: gym.Space, num_envs: int, array: np.ndarray | None = None):
        self.space = space
        self.num_envs = num_envs
        if isinstance(space, gym.spaces.Discrete):
            shape, dtype = (num_envs,), np.dtype(space.dtype)
            self._kind = "discrete"
            self._n = int(space.n)
            self._start = int(space.start)
        elif isinstance(space, gym.spaces.Box):
            shape, dtype = (num_envs, *space.shape), np.dtype(space.dtype)
            if dtype in (np.float32, np.float64):
                self._kind = "box"  # the Numba check
            elif dtype.kind == "f":
                self._kind = "box_float"  # float16 and others Numba has no type for
            elif dtype.kind in "iub":
                self._kind = "box_int"
            else:
                raise TypeError(f"Box actions of dtype {dtype} are not supported")
        else:
            shape, dtype = None, None
            self._kind = "other"
            self._batched = gym.vector.utils.batch_space(space, num_envs)
        if shape is not None:
            if array is None:
                array = np.zeros(shape, dtype=dtype)
            elif array.shape != shape or array.dtype != dtype:
                raise ValueError(f"action buffer must be {dtype}{shape}, got {array.dtype}{array.shape}")
        self.array = array

    def load(self, actions: Any) -> Any:
        """Validate ``actions``; return the buffer holding them (or the actions themselves
        for spaces without a buffer)."""
        if self._kind == "other":
            if not type(self.space).__module__.startswith("gymnasium.spaces"):
                return actions  # a custom space: its env decides, as with AsyncVectorEnv
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
        elif self._kind == "box_int":
            self._load_int_box(a)
        elif self._kind == "box_float":
            self._load_float_box(a)
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

    def _load_int_box(self, a: np.ndarray) -> None:
        target = self.array.dtype
        if target.kind == "b":
            if a.dtype.kind != "b":
                raise TypeError(f"actions for {self.space} must be bool, got dtype {a.dtype}")
            np.copyto(self.array, a)
            return
        if a.dtype.kind not in "iub":
            raise TypeError(
                f"actions for {self.space} must be integers, got dtype {a.dtype}: gymnasium's Box.contains "
                f"rejects them, and casting would truncate silently (3.9 -> 3). Convert them yourself, e.g. "
                f"np.rint(actions).astype(np.{target})"
            )
        info = np.iinfo(target)
        if a.size and a.dtype.kind != "b" and (int(a.min()) < info.min or int(a.max()) > info.max):
            wide = a.astype(object)  # exact comparisons whatever the two integer dtypes
            bad = _first_bad_env((wide < info.min) | (wide > info.max), self.num_envs)
            raise InvalidAction(
                f"action {a[bad].tolist()!r} of env {bad} does not fit {self.space}'s dtype {target} "
                f"({info.min}..{info.max}); it would wrap around"
            )
        np.copyto(self.array, a, casting="unsafe")

    def _load_float_box(self, a: np.ndarray) -> None:
        target = self.array.dtype
        if a.dtype.kind not in "fiub":
            raise TypeError(f"actions for {self.space} must be numbers, got dtype {a.dtype}")
        with np.errstate(over="ignore", invalid="ignore"):
            cast = a.astype(target)
        finite = np.isfinite(cast)
        if not finite.all():
            bad = _first_bad_env(~finite, self.num_envs)
            raise InvalidAction(
                f"action {a[bad].tolist()!r} of env {bad} is not finite as {target} (NaN, inf or beyond "
                f"{target}'s range are rejected; finite values outside {self.space} are clipped by the env, "
                f"as in gymnasium)"
            )
        np.copyto(self.array, cast)
