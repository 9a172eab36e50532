"""Envs are created in one thread and used in another (a ThreadPoolExecutor, a web server's
worker thread, a notebook's background thread): the workers must live as long as the env,
not as long as the thread that created it."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import gymnasium as gym
import numpy as np
import pytest

import fastsample
from tests.support import leaked_shm, shm_entries


def _numba():
    env = fastsample.make_vec("CartPole-v1", 4, num_workers=2, seed=0)
    env.reset(seed=0)
    return env


def _python():
    env = fastsample.ProcessVectorEnv([lambda: gym.make("CartPole-v1")] * 4, num_workers=2)
    env.reset(seed=0)
    return env


@pytest.mark.parametrize("make", [_numba, _python], ids=["numba", "python"])
@pytest.mark.parametrize("how", ["thread", "executor"])
def test_env_created_in_a_thread_that_ends_keeps_its_workers(make, how):
    shm_before = shm_entries()
    if how == "thread":
        box = []
        t = threading.Thread(target=lambda: box.append(make()))
        t.start()
        t.join()
        env = box[0]
    else:
        with ThreadPoolExecutor(1) as pool:  # the pool's thread ends when the block does
            env = pool.submit(make).result()
    try:
        pids = env.worker_pids
        time.sleep(0.5)  # time for a death signal to land
        ref = fastsample.make_vec("CartPole-v1", 4, seed=0)
        ref.reset(seed=0)
        for t in range(50):
            a = np.array([t % 2, 1, 0, t % 3 == 0], dtype=np.int64)
            got = env.step(a)
            want = ref.step(a)
            if make is _numba:
                np.testing.assert_array_equal(got[0], want[0])
        assert env.worker_pids == pids
        # and used from yet another thread
        with ThreadPoolExecutor(1) as pool:
            pool.submit(env.step, np.zeros(4, dtype=np.int64)).result()
        ref.close()
    finally:
        env.close()
    assert not leaked_shm(shm_before, [os.getpid()])
