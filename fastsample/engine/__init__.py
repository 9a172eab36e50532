"""The multi-process engine: worker processes, shared-memory batches, cheap signalling.

Its names are imported on first use, so a process that steps its envs in-process (``fastsample
train`` with ``--num-workers 0``) never loads the worker machinery."""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {"CallInterrupted": "fastsample.engine.interrupts", "ProcessVectorEnv": "fastsample.engine.process_vector_env",
          "WorkerDiedError": "fastsample.engine.process_vector_env", "WorkerError": "fastsample.engine.process_vector_env"}

__all__ = ["CallInterrupted", "ProcessVectorEnv", "WorkerDiedError", "WorkerError"]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
