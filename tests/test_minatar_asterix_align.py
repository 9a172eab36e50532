"""MinAtar-Asterix against the ``minatar`` package, step by step given the same random
outcomes (tests/minatar_support.py), plus batch = single envs in every autoreset mode and bad
input."""

import copy

import numpy as np
import pytest

from tests.minatar_support import (MODES, SIZES, check_bad_input, check_batch_equals_singles,
                                   check_registration, random_policy, run_episodes)

GAME = "asterix"
MINIMAL = (0, 1, 2, 3, 4)  # the package's actions for ours: no-op, left, up, right, down


def _outlook(game, first: int) -> float:
    """Reward minus danger of ``first`` then a no-op, on copies of the reference game (its
    recording RandomState is copied too, so the real game's draws are untouched)."""
    g = copy.deepcopy(game)
    r, done = g.act(first)
    if done:
        return -10.0
    r2, done2 = g.act(0)
    return r + 0.5 * r2 - (5.0 if done2 else 0.0)


def dodger_policy(seed: int, eps: float):
    """One step of look-ahead on copies of the reference game: avoid enemies, take gold.
    Survives for hundreds of steps, so the difficulty ramps."""
    rng = np.random.default_rng(seed)

    def act(obs, n_actions, game):
        if rng.random() < eps:
            return int(rng.integers(n_actions))
        scores = np.array([_outlook(game, MINIMAL[a]) for a in range(5)])
        best = np.flatnonzero(scores == scores.max())
        return int(rng.choice(best))
    return act


@pytest.mark.parametrize("sticky", [0.0, 0.1, 0.5])
def test_random_policy_episodes(sticky):
    totals = run_episodes(GAME, "MinAtar-Asterix-v1", random_policy(1), episodes=100, seed=41, sticky=sticky)
    assert totals["terminated"] == 100 and totals["max_return"] >= 2


def test_random_policy_full_action_set():
    totals = run_episodes(GAME, "MinAtar-Asterix-v0", random_policy(2), episodes=60, seed=42)
    assert totals["terminated"] == 60 and totals["sticky_repeats"] > 0


@pytest.mark.parametrize("eps,sticky,ramping", [(0.0, 0.1, True), (0.05, 0.0, True), (0.05, 0.2, False)])
def test_dodger_policy_episodes(eps, sticky, ramping):
    totals = run_episodes(GAME, "MinAtar-Asterix-v1", dodger_policy(3, eps), episodes=4, seed=43,
                          sticky=sticky, ramping=ramping, max_steps=3000)
    assert totals["max_length"] > 205
    assert (totals["max_ramp"] >= 2) == ramping


def deep_difficulty(rng):
    """A random difficulty level, down to an entity every step moving every step (then every
    row fills up, and spawns draw their two ``rand()`` and find no free row)."""
    from envs_numba.minatar import asterix as A

    spawn = int(rng.integers(1, 11))
    move = int(rng.integers(1, 6))
    return {"spawn_speed": (A.S_SPAWN_SPEED, spawn), "spawn_timer": (A.S_SPAWN_TIMER, int(rng.integers(0, spawn + 1))),
            "move_speed": (A.S_MOVE_SPEED, move), "move_timer": (A.S_MOVE_TIMER, int(rng.integers(0, move + 1))),
            "ramp_index": (A.S_RAMP, int(rng.integers(0, 14))), "ramp_timer": (A.S_RAMP_TIMER, int(rng.integers(-1, 101)))}


@pytest.mark.parametrize("ramping", [True, False])
def test_random_policy_at_every_difficulty(ramping):
    totals = run_episodes(GAME, "MinAtar-Asterix-v1", random_policy(4), episodes=300, seed=44, ramping=ramping,
                          inject=deep_difficulty)
    assert totals["terminated"] == 300
    assert totals["draw_patterns"][("rand", "rand", "rand")] > 0  # a spawn with every row taken
    assert totals["draw_patterns"][("rand", "rand", "rand", "randint")] > 0


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("num_envs", SIZES)
def test_batch_equals_single_envs(num_envs, mode):
    counts = check_batch_equals_singles("MinAtar-Asterix-v1", num_envs, mode, steps=300, max_episode_steps=80)
    assert counts["finished"] > 0
    if num_envs > 1:
        assert counts["terminated"] > 0 and counts["truncated"] > 0


def test_bad_input():
    check_bad_input("MinAtar-Asterix-v1")


def test_registration():
    check_registration("MinAtar-Asterix-v1", 4)
    check_registration("MinAtar-Asterix-v0", 4)
