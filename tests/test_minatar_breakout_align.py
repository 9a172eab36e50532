"""MinAtar-Breakout against the ``minatar`` package, step by step given the same random
outcomes (tests/minatar_support.py), plus batch = single envs in every autoreset mode and bad
input."""

import numpy as np
import pytest

from tests.minatar_support import (MODES, SIZES, check_bad_input, check_batch_equals_singles,
                                   check_registration, random_policy, run_episodes)

GAME = "breakout"


def tracking_policy(seed: int, eps: float):
    """Keep the paddle under the ball's next column (minimal actions: 0 no-op, 1 left, 2
    right), with an ``eps`` chance of a random action: long episodes that clear the bricks."""
    rng = np.random.default_rng(seed)

    def act(obs, n_actions, env):
        if rng.random() < eps:
            return int(rng.integers(n_actions))
        ball = np.argwhere(obs[:, :, 1])[0][1]
        trail = np.argwhere(obs[:, :, 2])[0][1]
        target = 2 * ball - trail
        paddle = np.argwhere(obs[9, :, 0])[0][0]
        return 0 if target == paddle else (1 if target < paddle else 2)
    return act


@pytest.mark.parametrize("sticky", [0.0, 0.1, 0.5])
def test_random_policy_episodes(sticky):
    totals = run_episodes(GAME, "MinAtar-Breakout-v1", random_policy(1), episodes=300, seed=11, sticky=sticky)
    assert totals["terminated"] == 300
    assert totals["max_return"] >= 2


def test_random_policy_full_action_set():
    totals = run_episodes(GAME, "MinAtar-Breakout-v0", random_policy(2), episodes=200, seed=12)
    assert totals["terminated"] == 200 and totals["sticky_repeats"] > 0


@pytest.mark.parametrize("eps,sticky,min_best", [(0.0, 0.1, 31), (0.05, 0.0, 20), (0.1, 0.2, 5)])
def test_tracking_policy_episodes(eps, sticky, min_best):
    totals = run_episodes(GAME, "MinAtar-Breakout-v1", tracking_policy(3, eps), episodes=20, seed=13,
                          sticky=sticky, max_steps=3000)
    assert totals["terminated"] == 20
    # the first case clears all 30 bricks and plays on into the refilled wall
    assert totals["max_return"] >= min_best


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("num_envs", SIZES)
def test_batch_equals_single_envs(num_envs, mode):
    counts = check_batch_equals_singles("MinAtar-Breakout-v1", num_envs, mode, max_episode_steps=12)
    assert counts["terminated"] > 0 and counts["truncated"] > 0


def test_bad_input():
    check_bad_input("MinAtar-Breakout-v1")


def test_registration():
    check_registration("MinAtar-Breakout-v1", 4)
    check_registration("MinAtar-Breakout-v0", 4)
