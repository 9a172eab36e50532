"""GridWorld-v0, the example kernel: dynamics, the vector-env contract, and Q-learning on it."""

import gymnasium as gym
import numpy as np
import pytest

import fastsample
from envs_numba.toy_text import grid_world

ENV_ID = "GridWorld-v0"
LEFT, DOWN, RIGHT, UP = 0, 1, 2, 3
# S F F F / F H F H / F F F H / H F F G: the shortest safe path takes 6 moves
OPTIMAL = [DOWN, DOWN, RIGHT, DOWN, RIGHT, RIGHT]
OPTIMAL_CELLS = [4, 8, 9, 13, 14, 15]


def test_registered_and_spaces():
    env = fastsample.make_vec(ENV_ID, 3, seed=0)
    assert env.single_action_space == gym.spaces.Discrete(4)
    assert env.single_observation_space == gym.spaces.Box(0, 15, (1,), np.int64)
    obs, info = env.reset()
    assert info == {}
    assert obs.dtype == np.int64 and obs.shape == (3, 1)
    assert (obs == 0).all() and env.observation_space.contains(obs)
    # also reachable through gymnasium's registry
    ref = gym.make_vec("fastsample/" + ENV_ID, 2)
    assert ref.reset(seed=1)[0].tolist() == [[0], [0]]


def test_optimal_path_reaches_goal():
    env = fastsample.make_vec(ENV_ID, 4, seed=0)
    env.reset()
    for t, (action, cell) in enumerate(zip(OPTIMAL, OPTIMAL_CELLS)):
        obs, rew, term, trunc, _ = env.step(np.full(4, action))
        assert (obs[:, 0] == cell).all()
        last = t == len(OPTIMAL) - 1
        assert (rew == (1.0 if last else 0.0)).all()
        assert (term == last).all() and not trunc.any()
    # NextStep autoreset: the next step only resets
    obs, rew, term, trunc, _ = env.step(np.full(4, RIGHT))
    assert (obs == 0).all() and (rew == 0).all() and not (term | trunc).any()


def test_hole_and_border_and_time_limit():
    env = fastsample.make_vec(ENV_ID, 2, autoreset_mode="SameStep")
    env.reset(seed=3)
    obs, rew, term, _, _ = env.step(np.array([UP, DOWN]))  # UP bumps into the border
    assert obs[:, 0].tolist() == [0, 4] and not term.any()
    obs, rew, term, _, infos = env.step(np.array([LEFT, RIGHT]))  # cell 5 is a hole
    assert term.tolist() == [False, True] and rew.tolist() == [0.0, 0.0]
    assert infos["final_obs"][1].tolist() == [5] and obs[1, 0] == 0  # SameStep: already reset
    env = fastsample.make_vec(ENV_ID, 2, seed=0)
    env.reset()
    for t in range(100):  # walking into the wall never ends the episode: truncated at 100
        obs, rew, term, trunc, _ = env.step(np.array([LEFT, UP]))
        assert not term.any() and trunc.all() == (t == 99)


def test_kwargs_and_no_renderer():
    with pytest.raises(TypeError):
        fastsample.make_vec(ENV_ID, 2, is_slippery=True)
    with pytest.raises(ValueError):
        fastsample.make_vec(ENV_ID, 2, slip=1.5)
    with pytest.raises(ValueError):
        fastsample.make_vec(ENV_ID, 2).reset(options={"low": 0.0})
    env = fastsample.make_vec(ENV_ID, 2, render_mode="rgb_array")
    env.reset(seed=0)
    with pytest.raises(NotImplementedError):
        env.render()


def test_slip_is_seeded_and_has_the_right_rate():
    def first_moves(seed):
        env = fastsample.make_vec(ENV_ID, 4000, seed=seed, slip=0.3)
        env.reset()
        return env.step(np.full(4000, DOWN))[0][:, 0]

    cells = first_moves(5)
    np.testing.assert_array_equal(cells, first_moves(5))  # reproducible from the seed
    assert not np.array_equal(cells, first_moves(6))
    # DOWN from the start: cell 4, or a slip to the side (LEFT: bump, stays 0; RIGHT: cell 1)
    assert set(np.unique(cells)) == {0, 1, 4}
    assert 0.26 < np.mean(cells != 4) < 0.34
    assert 0.4 < np.mean(cells[cells != 4] == 1) < 0.6


def test_q_learning_learns_the_optimal_return():
    """Tabular Q-learning over a batch of envs finds the 6-step path (return 1)."""
    n, gamma, alpha, eps = 16, 0.9, 0.5, 0.3
    env = fastsample.make_vec(ENV_ID, n, seed=0)
    rng = np.random.default_rng(0)
    q = np.zeros((grid_world.N_CELLS, 4))
    obs, _ = env.reset()
    state = obs[:, 0]
    resetting = np.zeros(n, dtype=bool)  # NextStep: the step after an episode end only resets
    for _ in range(1500):
        noise = rng.random((n, 4)) * 1e-6  # break ties between equal Q-values at random
        greedy = np.argmax(q[state] + noise, axis=1)
        actions = np.where(rng.random(n) < eps, rng.integers(0, 4, n), greedy)
        obs, rew, term, trunc, _ = env.step(actions)
        nxt = obs[:, 0]
        target = rew + gamma * q[nxt].max(axis=1) * ~term  # no bootstrap past a terminal
        for i in np.flatnonzero(~resetting):
            q[state[i], actions[i]] += alpha * (target[i] - q[state[i], actions[i]])
        resetting = term | trunc
        state = nxt

    # the greedy policy, run in a fresh env
    env = fastsample.make_vec(ENV_ID, 1, seed=1)
    obs, _ = env.reset()
    ret, steps, done = 0.0, 0, False
    while not done:
        obs, rew, term, trunc, _ = env.step(np.argmax(q[obs[:, 0]], axis=1))
        ret += rew[0]
        steps += 1
        done = bool(term[0] or trunc[0])
    assert ret == 1.0 and steps == len(OPTIMAL)
    assert q[0].max() == pytest.approx(gamma ** (len(OPTIMAL) - 1), rel=1e-3)
