"""Shared memory between sampler processes and the learner.

* :class:`TrajectorySlots` — ``num_slots`` fixed-size trajectory slots (``T`` steps of ``n``
  envs each): observations, actions, behaviour log-probs, rewards, done flags, the value of the
  final observation of truncated episodes, finished-episode returns, the last observation and
  the policy version that acted. Samplers fill a slot and pass its index to the learner through
  a faster-fifo queue; the learner hands it back on another queue when it is done with it.
* :class:`SharedWeights` — the policy's flat parameter vector and the observation-normaliser
  statistics, with a version counter (a seqlock: odd while the learner writes).
* :class:`Control` — the learner's stop flag and each sampler's "ready" flag.

The trajectory slots, by far the largest buffers, live in one ``SharedBlock`` (the engine's
anonymous shared memory, reserved up front: a small /dev/shm does not limit it, and memory that
cannot be had is a clear ``SharedMemoryError`` at start-up, never a bus error mid-run). The small
weights and control arrays are ``multiprocessing.RawArray`` memory, which is unlinked from
``/dev/shm`` as soon as it is created. No named semaphore is used (``multiprocessing`` Queues, Events and
Semaphores of the spawn context create ``/dev/shm/sem.mp-*`` files that only the resource
tracker removes, once every process holding its pipe is gone): nothing is left behind however
the processes end.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import time

import numpy as np

from fastsample.engine.shared import SharedBlock, _Planner

__all__ = ["TrajectorySlots", "SharedWeights", "Control"]


class TrajectorySlots:
    FIELDS = {
        # name: (numpy dtype, per-slot shape builder)
        "obs": (np.float32, lambda T, n, o, a: (T, n, o)),
        "actions": (np.float32, lambda T, n, o, a: (T, n, a)),
        "logprobs": (np.float32, lambda T, n, o, a: (T, n)),
        "rewards": (np.float64, lambda T, n, o, a: (T, n)),
        "dones": (np.float32, lambda T, n, o, a: (T, n)),
        "truncated": (np.float32, lambda T, n, o, a: (T, n)),
        "trunc_values": (np.float32, lambda T, n, o, a: (T, n)),
        "ep_returns": (np.float64, lambda T, n, o, a: (T, n)),
        # --norm-reward: each env's running discounted return after step t (reset after a done),
        # kept by the sampler that owns the env, so slots chain in the order they were filled
        "disc_returns": (np.float64, lambda T, n, o, a: (T, n)),
        "last_obs": (np.float32, lambda T, n, o, a: (n, o)),
        "meta": (np.int64, lambda T, n, o, a: (2,)),  # policy version, sampler id
    }

    def __init__(self, num_slots: int, T: int, n: int, obs_dim: int, act_dim: int):
        self.shape_args = (num_slots, T, n, obs_dim, act_dim)
        planner = _Planner()
        self.offsets = {name: planner.take(np.dtype(dt).itemsize * int(np.prod(self._shape(shp))))
                        for name, (dt, shp) in self.FIELDS.items()}
        self.block = SharedBlock(planner.size, f"the trainer's {num_slots} trajectory slots")
        self._views()

    def _shape(self, shp) -> tuple[int, ...]:
        S, T, n, o, a = self.shape_args
        return (S, *shp(T, n, o, a))

    def _views(self) -> None:
        self.views = {}
        for name, (dt, shp) in self.FIELDS.items():
            shape = self._shape(shp)
            self.views[name] = np.frombuffer(self.block.buf, dtype=dt, count=int(np.prod(shape)),
                                             offset=self.offsets[name]).reshape(shape)

    def __getstate__(self):
        return {"shape_args": self.shape_args, "offsets": self.offsets, "block": self.block}

    def __setstate__(self, state):
        self.shape_args, self.offsets, self.block = state["shape_args"], state["offsets"], state["block"]
        self._views()


class SharedWeights:
    """A flat float32 vector published by the learner with a version counter."""

    def __init__(self, size: int):
        self.size = size
        self.raw = mp.RawArray(ctypes.c_float, size)
        self.seq = mp.RawValue(ctypes.c_longlong, 0)  # 2 * version (+1 while writing)
        self._view()

    def _view(self) -> None:
        self.array = np.frombuffer(self.raw, dtype=np.float32)

    def __getstate__(self):
        return {"size": self.size, "raw": self.raw, "seq": self.seq}

    def __setstate__(self, state):
        self.size, self.raw, self.seq = state["size"], state["raw"], state["seq"]
        self._view()

    @property
    def version(self) -> int:
        return self.seq.value // 2

    def publish(self, flat: np.ndarray) -> int:
        self.seq.value += 1  # odd: writing
        self.array[:] = flat
        self.seq.value += 1
        return self.seq.value // 2

    def read_into(self, out: np.ndarray) -> int:
        """Copy a consistent snapshot into ``out``; returns its version."""
        while True:
            before = self.seq.value
            if before % 2:
                time.sleep(0)
                continue
            out[:] = self.array
            if self.seq.value == before:
                return before // 2


class Control:
    """Flags between the learner and ``K`` samplers, in shared memory: ``stop`` (set by the
    learner) and ``ready[k]`` (set by sampler ``k`` once its envs and policy are built). Each
    flag has one writer, so no lock is needed."""

    def __init__(self, num_samplers: int):
        self.raw = mp.RawArray(ctypes.c_int, 1 + num_samplers)
        self._view()

    def _view(self) -> None:
        self.array = np.frombuffer(self.raw, dtype=np.intc)

    def __getstate__(self):
        return {"raw": self.raw}

    def __setstate__(self, state):
        self.raw = state["raw"]
        self._view()

    def stop(self) -> None:
        self.array[0] = 1

    @property
    def stopped(self) -> bool:
        return bool(self.array[0])

    def set_ready(self, k: int) -> None:
        self.array[1 + k] = 1

    def is_ready(self, k: int) -> bool:
        return bool(self.array[1 + k])

    def ready_count(self) -> int:
        return int(self.array[1:].sum())
