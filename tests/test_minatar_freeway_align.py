"""MinAtar-Freeway against the ``minatar`` package, step by step given the same random
outcomes (tests/minatar_support.py), plus batch = single envs in every autoreset mode and bad
input."""

import numpy as np
import pytest

from tests.minatar_support import (MODES, SIZES, check_bad_input, check_batch_equals_singles,
                                   check_registration, random_policy, run_episodes)

GAME = "freeway"
EPISODE = 2501  # the reference's timer starts at 2500 and ends the episode below 0


def up_policy(seed: int, eps: float):
    """Mostly up (minimal actions: 0 no-op, 1 up, 2 down): crossings, so the cars are
    re-randomised often, and collisions."""
    rng = np.random.default_rng(seed)

    def act(obs, n_actions, env):
        return int(rng.integers(n_actions)) if rng.random() < eps else 1
    return act


@pytest.mark.parametrize("sticky", [0.0, 0.1, 0.5])
def test_random_policy_episodes(sticky):
    totals = run_episodes(GAME, "MinAtar-Freeway-v1", random_policy(1), episodes=3, seed=21, sticky=sticky)
    assert totals["terminated"] == 3 and totals["steps"] == 3 * EPISODE


def test_random_policy_full_action_set():
    totals = run_episodes(GAME, "MinAtar-Freeway-v0", random_policy(2), episodes=2, seed=22)
    assert totals["terminated"] == 2 and totals["steps"] == 2 * EPISODE and totals["sticky_repeats"] > 0


@pytest.mark.parametrize("eps,sticky", [(0.0, 0.1), (0.2, 0.0), (0.1, 0.3)])
def test_up_policy_episodes(eps, sticky):
    totals = run_episodes(GAME, "MinAtar-Freeway-v1", up_policy(3, eps), episodes=3, seed=23, sticky=sticky)
    assert totals["terminated"] == 3 and totals["steps"] == 3 * EPISODE
    assert totals["max_return"] >= 10  # many crossings, each re-randomising the cars


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("num_envs", SIZES)
def test_batch_equals_single_envs(num_envs, mode):
    # no early termination: truncations only (and one termination run below)
    counts = check_batch_equals_singles("MinAtar-Freeway-v1", num_envs, mode, max_episode_steps=40)
    assert counts["truncated"] > 0


def test_episodes_terminate_after_2501_steps():
    import fastsample

    env = fastsample.make_vec("MinAtar-Freeway-v1", 5, seed=0, autoreset_mode="SameStep")
    env.reset()
    for t in range(2 * EPISODE):
        _, _, term, trunc, _ = env.step(np.ones(5, np.int64))
        assert not trunc.any()
        assert term.all() if t % EPISODE == EPISODE - 1 else not term.any()
    env.close()


def test_bad_input():
    check_bad_input("MinAtar-Freeway-v1")


def test_registration():
    check_registration("MinAtar-Freeway-v1", 7)
    check_registration("MinAtar-Freeway-v0", 7)
