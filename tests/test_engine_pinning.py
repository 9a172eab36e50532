"""``pin_workers=True`` pins workers inside the CPUs the process may use (taskset, cgroup
cpusets, Slurm), never to a CPU outside that set."""

from __future__ import annotations

import os

import numpy as np
import psutil
import pytest

import fastsample
from tests.support import leaked_shm, shm_entries


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs os.sched_setaffinity (Linux)")
@pytest.mark.parametrize("kind", ["numba", "python"])
def test_pinning_stays_inside_a_restricted_affinity(kind):
    before = os.sched_getaffinity(0)
    if len(before) < 2:
        pytest.skip("needs 2 or more usable CPUs to restrict the affinity to a strict subset")
    allowed = {max(before)}  # like `taskset -c <last cpu>`: CPU 0 is not allowed
    shm_before = shm_entries()
    os.sched_setaffinity(0, allowed)
    try:
        if kind == "numba":
            env = fastsample.make_vec("CartPole-v1", 4, num_workers=1, pin_workers=True, seed=0)  # worker 0
        else:
            import gymnasium as gym

            env = fastsample.ProcessVectorEnv([lambda: gym.make("CartPole-v1")] * 4, num_workers=2,
                                              pin_workers=True)
        try:
            env.reset(seed=0)
            env.step(np.zeros(4, dtype=np.int64))
            for w, pid in env.worker_pids.items():
                got = set(psutil.Process(pid).cpu_affinity())
                assert got <= allowed, f"worker {w} pinned to CPUs {sorted(got)}, outside the allowed {sorted(allowed)}"
        finally:
            env.close()
    finally:
        os.sched_setaffinity(0, before)
    assert not leaked_shm(shm_before, [os.getpid()])
