"""fastsample: batched Numba environments behind a real ``gymnasium.vector.VectorEnv``.

``import fastsample`` registers every kernel as ``fastsample/<Id>`` with gymnasium, so
``gymnasium.make_vec("fastsample/CartPole-v1", num_envs=8)`` works too.
"""

from __future__ import annotations

import importlib
from typing import Any

from fastsample.registration import make_vec, register_with_gymnasium
from fastsample.vector_env import NumbaVectorEnv

__version__ = "0.1.0"

register_with_gymnasium()

_ENGINE_NAMES = ("CallInterrupted", "ProcessVectorEnv", "WorkerDiedError", "WorkerError")


def __getattr__(name: str) -> Any:
    # the process engine loads on first use: in-process stepping and training never need it
    if name in _ENGINE_NAMES:
        return getattr(importlib.import_module("fastsample.engine"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CallInterrupted",
    "NumbaVectorEnv",
    "ProcessVectorEnv",
    "WorkerDiedError",
    "WorkerError",
    "make_vec",
    "register_with_gymnasium",
    "__version__",
]
