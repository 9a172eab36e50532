"""fastsample: batched Numba environments behind a real ``gymnasium.vector.VectorEnv``.

``import fastsample`` registers every kernel as ``fastsample/<Id>`` with gymnasium, so
``gymnasium.make_vec("fastsample/CartPole-v1", num_envs=8)`` works too.
"""

from __future__ import annotations

from fastsample.engine import CallInterrupted, ProcessVectorEnv, WorkerDiedError, WorkerError
from fastsample.registration import make_vec, register_with_gymnasium
from fastsample.vector_env import NumbaVectorEnv

__version__ = "0.1.0"

register_with_gymnasium()

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
