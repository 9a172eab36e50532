"""The MinAtar kernels over K worker processes (bool observations in shared memory) return
exactly what the in-process env returns, in every autoreset mode; and every observation is a
function of the env's state (``kernel.observe`` rebuilds it)."""

import numpy as np
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


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("env_id", IDS)
def test_observation_is_a_function_of_the_state(env_id, mode):
    """``kernel.observe`` rebuilds, from the state alone, exactly the observations that
    every reset and step returned (autoresets and time limits included), into a buffer of
    garbage: what a vector env needs to rebuild observations instead of copying them."""
    env = fastsample.make_vec(env_id, 9, autoreset_mode=mode, max_episode_steps=25, copy=False)
    observe = env.kernel.observe
    rng = np.random.default_rng(3)
    everyone = np.ones(9, dtype=np.bool_)
    try:
        obs, _ = env.reset(seed=4)
        for t in range(150):
            rebuilt = rng.random(obs.shape) < 0.5
            observe(everyone, env._state, env._params, rebuilt)
            np.testing.assert_array_equal(rebuilt, obs)
            garbage = rng.random(obs.shape) < 0.5
            some = rng.random(9) < 0.5
            rebuilt = garbage.copy()
            observe(some, env._state, env._params, rebuilt)
            np.testing.assert_array_equal(rebuilt[some], obs[some])
            np.testing.assert_array_equal(rebuilt[~some], garbage[~some])  # the others left alone
            if mode == "Disabled" and env._pending.any():
                obs, _ = env.reset(options={"reset_mask": env._pending.copy()})
                continue
            obs, *_ = env.step(rng.integers(0, env.single_action_space.n, 9))
    finally:
        env.close()
