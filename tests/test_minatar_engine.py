"""The MinAtar kernels over K worker processes (bool observations in shared memory) return
exactly what the in-process env returns, in every autoreset mode; and every observation is a
function of the env's state (``kernel.observe`` rebuilds it)."""

import importlib

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


@pytest.mark.parametrize("env_id", IDS)
def test_raw_kernel_leaves_finished_envs_as_they_were(env_id):
    """The batched kernels stepping envs whose episodes are over (a raw kernel call; the vector
    env resets them first) do what the reference's ``act`` does to a finished game: one
    sticky-action draw, reward 0, terminal again, observation and game state unchanged; and
    no write lands outside the env's own observation bytes (the guard envs around the batch
    stay False)."""
    from envs_numba import core

    n = 16
    env = fastsample.make_vec(env_id, n, seed=0, copy=False)
    kernel, params, rng = env.kernel, env._params.copy(), env._rng.copy()
    env.close()  # only its kernel, parameters and seeded streams are used
    state = np.zeros((kernel.state_dim, core.state_columns(n)))
    guarded = np.zeros((n + 2, *kernel.observation_space.shape), dtype=np.bool_)
    obs = guarded[1:n + 1]
    everyone = np.ones(n, dtype=np.bool_)
    rewards, terminated = np.zeros(n), np.zeros(n, dtype=np.bool_)
    kernel.reset(everyone, state, rng, None, params, obs)
    actions = np.random.default_rng(1)
    ended = np.zeros(n, dtype=np.bool_)
    last_action = importlib.import_module(f"envs_numba.minatar.{kernel.extra['game']}").S_LAST_ACTION
    for t in range(3000):  # Freeway's episodes end after 2500 steps
        if ended.all() and t % 50 == 0:
            break
        before_state, before_obs, before_rng = state.copy(), obs.copy(), rng.copy()
        kernel.step(everyone, actions.integers(0, kernel.action_space.n, n), state, rng, params, obs, rewards,
                    terminated)
        assert not guarded[0].any() and not guarded[-1].any(), f"step {t}: a write outside the batch"
        assert np.all(terminated[ended]) and np.all(rewards[ended] == 0.0)
        np.testing.assert_array_equal(obs[ended], before_obs[ended])
        # the game state stays; only the sticky draw moves: the stream and the remembered action
        kept = np.ones(state.shape[0], dtype=bool)
        kept[last_action] = False
        np.testing.assert_array_equal(state[kept][:, :n][:, ended], before_state[kept][:, :n][:, ended])
        assert np.all(np.any(rng[ended] != before_rng[ended], axis=1)), "a finished env drew no sticky action"
        ended |= terminated
    assert ended.all(), "some episodes did not end: nothing tested for them"
