"""The MinAtar kernels over K worker processes (bool observations in shared memory) return
exactly what the in-process env returns, in every autoreset mode."""

import pytest

import fastsample
from tests.support import MODES, compare_runs

IDS = ["MinAtar-Breakout-v1", "MinAtar-Freeway-v1", "MinAtar-SpaceInvaders-v1", "MinAtar-Asterix-v1",
       "MinAtar-Seaquest-v1"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("env_id", IDS)
def test_workers_equal_in_process(env_id, mode):
    ref = fastsample.make_vec(env_id, 7, autoreset_mode=mode, max_episode_steps=30)
    ours = fastsample.make_vec(env_id, 7, autoreset_mode=mode, max_episode_steps=30, num_workers=2)
    try:
        counts = compare_runs(ref, ours, mode, steps=200, seed=5)
    finally:
        ours.close()
        ref.close()
    assert counts["finished"] > 5
