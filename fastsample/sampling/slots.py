"""Shared memory between sampler processes and the learner.

* :class:`TrajectorySlots` — ``num_slots`` fixed-size trajectory slots (``T`` steps of ``n``
  envs each): observations, actions, behaviour log-probs, rewards, done flags, the value of the
  final observation of truncated episodes, finished-episode returns, the last observation and
  the policy version that acted. Samplers fill a slot and pass its index to the learner through
  a faster-fifo queue; the learner hands it back on another queue when it is done with it.
* :class:`SharedWeights` — the policy's flat parameter vector and the observation-normaliser
  statistics, with a version counter (a seqlock: odd while the learner writes).
* :class:`Control` — the learner's stop flag and each sampler's "ready" flag.

Everything lives in ``multiprocessing.RawArray`` memory, which is unlinked from ``/dev/shm`` as
soon as it is created, and no named semaphore is used (``multiprocessing`` Queues, Events and
Semaphores of the spawn context create ``/dev/shm/sem.mp-*`` files that only the resource
tracker removes, once every process holding its pipe is gone): nothing is left behind however
the processes end.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import time

import numpy as np

__all__ = ["TrajectorySlots", "SharedWeights", "Control"]


def _raw(ctype, shape: tuple[int, ...]):
    return mp.RawArray(ctype, int(np.prod(shape)))


class TrajectorySlots:
    FIELDS = {
        # name: (ctype, numpy dtype, per-slot shape builder)
        "obs": (ctypes.c_float, np.float32, lambda T, n, o, a: (T, n, o)),
        "actions": (ctypes.c_float, np.float32, lambda T, n, o, a: (T, n, a)),
        "logprobs": (ctypes.c_float, np.float32, lambda T, n, o, a: (T, n)),
        "rewards": (ctypes.c_double, np.float64, lambda T, n, o, a: (T, n)),
        "dones": (ctypes.c_float, np.float32, lambda T, n, o, a: (T, n)),
        "truncated": (ctypes.c_float, np.float32, lambda T, n, o, a: (T, n)),
        "trunc_values": (ctypes.c_float, np.float32, lambda T, n, o, a: (T, n)),
        "ep_returns": (ctypes.c_double, np.float64, lambda T, n, o, a: (T, n)),
        # --norm-reward: each env's running discounted return after step t (reset after a done),
        # kept by the sampler that owns the env, so slots chain in the order they were filled
        "disc_returns": (ctypes.c_double, np.float64, lambda T, n, o, a: (T, n)),
        "last_obs": (ctypes.c_float, np.float32, lambda T, n, o, a: (n, o)),
        "meta": (ctypes.c_longlong, np.int64, lambda T, n, o, a: (2,)),  # policy version, sampler id
    }

    def __init__(self, num_slots: int, T: int, n: int, obs_dim: int, act_dim: int):
        self.shape_args = (num_slots, T, n, obs_dim, act_dim)
        self.raw = {name: _raw(ct, (num_slots, *shp(T, n, obs_dim, act_dim)))
                    for name, (ct, _, shp) in self.FIELDS.items()}
        self._views()

    def _views(self) -> None:
        S, T, n, o, a = self.shape_args
        self.views = {name: np.frombuffer(self.raw[name], dtype=dt).reshape(S, *shp(T, n, o, a))
                      for name, (_, dt, shp) in self.FIELDS.items()}

    def __getstate__(self):
        return {"shape_args": self.shape_args, "raw": self.raw}

    def __setstate__(self, state):
        self.shape_args, self.raw = state["shape_args"], state["raw"]
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
