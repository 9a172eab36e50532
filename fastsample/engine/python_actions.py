"""How a batch of actions reaches Python envs: as ``AsyncVectorEnv`` hands it to them.

``AsyncVectorEnv`` sends env ``i`` the ``i``-th element of ``iterate(action_space, actions)``,
unchecked and uncast: the env itself decides what it accepts (and raises). ProcessVectorEnv
does the same for Python envs, by one of three routes, each giving every env that element:

1. an ``np.ndarray`` of the batch's exact shape and the single action space's dtype (what
   ``action_space.sample()`` and most policies give) is copied into shared memory, and each
   worker iterates its rows there (no pickling);
2. other arrays with one row per env (another dtype, another shape), and dicts/tuples of
   them for ``Dict``/``Tuple`` spaces, travel pickled, each worker its rows (one message per
   worker batch): iterating a worker's rows gives the same elements as iterating the batch;
3. anything else (lists, ``Text``/``Graph``/``Sequence``/``OneOf``/custom spaces, ...) is
   iterated here with gymnasium's ``iterate`` and each worker gets its elements as a list.

Numba kernels keep validating their actions (``fastsample.actions.ActionBuffer``): they read
them from shared memory, with no env code in between to reject a bad one.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector.utils import iterate


class ActionItems(list):
    """One worker's actions, one element per env (route 3), as ``iterate`` gave them."""


def shared_action_layout(space: gym.Space, num_envs: int) -> tuple[tuple[int, ...], np.dtype] | None:
    """``(batch shape, dtype)`` of the shared action buffer (route 1), None without one."""
    if isinstance(space, gym.spaces.Discrete):
        return (num_envs,), np.dtype(space.dtype)
    if isinstance(space, (gym.spaces.Box, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)):
        return (num_envs, *space.shape), np.dtype(space.dtype)
    return None


def _rows(space: gym.Space, actions: Any, n: int) -> bool:
    """Whether ``actions`` is arrays with ``n`` rows, nested like ``space`` (route 2)."""
    if isinstance(space, gym.spaces.Dict):
        return isinstance(actions, dict) and set(actions) == set(space.spaces) and all(
            _rows(s, actions[k], n) for k, s in space.spaces.items())
    if isinstance(space, gym.spaces.Tuple):
        return isinstance(actions, tuple) and len(actions) == len(space.spaces) and all(
            _rows(s, a, n) for s, a in zip(space.spaces, actions))
    return (isinstance(space, (gym.spaces.Discrete, gym.spaces.Box, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary))
            and isinstance(actions, np.ndarray) and actions.ndim >= 1 and actions.shape[0] == n)


def slice_rows(space: gym.Space, actions: Any, lo: int, hi: int) -> Any:
    """Rows ``lo..hi-1`` of a route-2 batch."""
    if isinstance(space, gym.spaces.Dict):
        return {k: slice_rows(s, actions[k], lo, hi) for k, s in space.spaces.items()}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(slice_rows(s, a, lo, hi) for s, a in zip(space.spaces, actions))
    return actions[lo:hi]


class PythonActions:
    """The parent's side of handing actions to Python envs (see the module docstring)."""

    def __init__(self, single_space: gym.Space, num_envs: int, buffer: np.ndarray | None):
        self.single_space = single_space
        self.num_envs = num_envs
        self.buffer = buffer  # shared, (num_envs, *shape) of the space's dtype, or None
        self.dtype = buffer.dtype if buffer is not None else None
        self.row_shape = buffer.shape[1:] if buffer is not None else None

    def split(self, actions: Any, batch_space: gym.Space, n: int | None = None):
        """How a batch of ``n`` envs' actions (default all) goes to the workers:
        ``("shared", actions)`` for route 1 (the caller copies them into :attr:`buffer`), or
        ``("parts", part)`` with ``part(lo, hi)`` what to send for positions ``lo..hi-1`` of
        the batch. Raises what ``iterate`` raises for a batch it cannot iterate, and
        ``ValueError`` for a batch of another length, before any env sees it."""
        n = self.num_envs if n is None else n
        if self.fits(actions, n):
            return "shared", actions
        if _rows(self.single_space, actions, n):
            return "parts", lambda lo, hi: slice_rows(self.single_space, actions, lo, hi)
        items = self.items(actions, batch_space, n)
        return "parts", lambda lo, hi: ActionItems(items[lo:hi])

    def fits(self, actions: Any, n: int) -> bool:
        """Whether ``actions`` is route 1's: an array of ``n`` rows in the buffer's dtype and shape."""
        return (self.buffer is not None and type(actions) is np.ndarray and actions.dtype == self.dtype
                and actions.shape[:1] == (n,) and actions.shape[1:] == self.row_shape)

    @staticmethod
    def items(actions: Any, batch_space: gym.Space, n: int) -> list:
        """``list(iterate(batch_space, actions))``, which must hold ``n`` elements."""
        items = list(iterate(batch_space, actions))
        if len(items) != n:
            raise ValueError(f"expected a batch of {n} actions (one per env), got {len(items)}: {actions!r}")
        return items
