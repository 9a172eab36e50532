"""Spaces and batches across slices: which observation spaces live in shared memory (and
gymnasium's errors for those that cannot), one batch from the slices' pickled observations, and
the slices' infos merged into full-size arrays."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.error import CustomSpaceError
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array, iterate

from fastsample.engine.shared import concat_batches


def place_info(dst: dict, src: dict, lo: int, hi: int, n: int) -> None:
    """Merge a worker's slice infos (arrays of length hi-lo) into full-size arrays."""
    for key, value in src.items():
        if isinstance(value, dict):
            place_info(dst.setdefault(key, {}), value, lo, hi, n)
        elif isinstance(value, np.ndarray) and value.shape[:1] == (hi - lo,):
            if key not in dst:
                if value.dtype == object:
                    dst[key] = np.full(n, None, dtype=object)
                else:
                    dst[key] = np.zeros((n, *value.shape[1:]), dtype=value.dtype)
            dst[key][lo:hi] = value
        else:
            dst[key] = value


_LEAVES = (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)


def array_layout(space: gym.Space) -> bool:
    """Whether batches of ``space`` are arrays (or dicts/tuples of them) of a fixed shape."""
    if isinstance(space, gym.spaces.Dict):
        return all(array_layout(s) for s in space.spaces.values())
    if isinstance(space, gym.spaces.Tuple):
        return all(array_layout(s) for s in space.spaces)
    return type(space) in _LEAVES or isinstance(space, _LEAVES)


def check_shared_memory(space: gym.Space) -> bool:
    """``shared_memory=True`` for observations of ``space``: True if they live in shared memory,
    False if they travel pickled (``Text``, ``OneOf``: gymnasium keeps them in shared memory,
    the results are the same); gymnasium's errors for the spaces it cannot keep there."""
    if array_layout(space):
        return True
    _check_shareable(space)
    return False


def _check_shareable(space: gym.Space) -> None:
    if isinstance(space, gym.spaces.Dict):
        for s in space.spaces.values():
            _check_shareable(s)
    elif isinstance(space, (gym.spaces.Tuple, gym.spaces.OneOf)):
        for s in space.spaces:
            _check_shareable(s)
    elif isinstance(space, (gym.spaces.Graph, gym.spaces.Sequence)):
        raise TypeError(
            f"As {space} has a dynamic shape so its not possible to make a static shared memory. For "
            f"`ProcessVectorEnv` (as for `AsyncVectorEnv`), disable `shared_memory`.")
    elif not isinstance(space, (*_LEAVES, gym.spaces.Text)):
        try:
            raise CustomSpaceError(f"Space of type `{type(space)}` cannot live in shared memory.")
        except CustomSpaceError as exc:
            raise ValueError(
                "Using `ProcessVectorEnv(..., shared_memory=True)` caused an error, you can disable this feature "
                "with `shared_memory=False` however this is slower.") from exc


def batch_len(single: gym.Space, batch: Any) -> int:
    """How many envs a batch of ``single`` holds (gymnasium's batch structures)."""
    if isinstance(single, gym.spaces.Dict):
        return batch_len(next(iter(single.spaces.values())), batch[next(iter(single.spaces))])
    if isinstance(single, gym.spaces.Tuple):
        return batch_len(single.spaces[0], batch[0])
    return len(batch)


def join_obs(single: gym.Space, parts: list[Any], array_obs: bool) -> Any:
    """One batch of ``single`` observations from the slices' pickled batches (in env order)."""
    if array_obs:
        return concat_batches(parts)
    # Text, Graph, Sequence, OneOf, custom spaces (and nestings): gymnasium's own batching
    items = [x for part in parts for x in iterate(batch_space(single, batch_len(single, part)), part)]
    return concatenate(single, items, create_empty_array(single, len(items), fn=np.zeros))
