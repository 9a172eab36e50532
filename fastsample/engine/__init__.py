"""The multi-process engine: worker processes, shared-memory batches, cheap signalling."""

from fastsample.engine.interrupts import CallInterrupted
from fastsample.engine.process_vector_env import ProcessVectorEnv, WorkerDiedError, WorkerError

__all__ = ["CallInterrupted", "ProcessVectorEnv", "WorkerDiedError", "WorkerError"]
