"""MinAtar-SpaceInvaders against the ``minatar`` package, step by step (its only random
draws are the sticky actions', recorded and fed to ours: tests/minatar_support.py), plus
batch = single envs in every autoreset mode and bad input."""

import copy

import numpy as np
import pytest

from tests.minatar_support import (MODES, SIZES, check_bad_input, check_batch_equals_singles,
                                   check_registration, random_policy, run_episodes)

GAME = "space_invaders"


MINIMAL = (0, 1, 3, 5)  # the package's actions for our 0 no-op, 1 left, 2 right, 3 fire


def _first_hit(game, first: int, horizon: int = 10) -> int:
    """Steps until a copy of the reference game scores after ``first`` then no-ops (100 if it
    dies first, 50 if it never scores)."""
    g = copy.deepcopy(game)
    for k in range(horizon):
        r, done = g.act(first if k == 0 else 0)
        if done:
            return 100
        if r:
            return k
    return 50


def hunter_policy(seed: int, eps: float):
    """Go under the column whose lowest alien is lowest and fire (minimal actions: 0 no-op,
    1 left, 2 right, 3 fire), stepping aside from bullets; with few aliens left (they move
    every step) look ahead on a copy of the reference game for the action that hits soonest.
    Clears waves, so the difficulty ramps."""
    rng = np.random.default_rng(seed)

    def act(obs, n_actions, game):
        if rng.random() < eps:
            return int(rng.integers(n_actions))
        if np.count_nonzero(game.alien_map) <= 4:
            scores = [_first_hit(game, MINIMAL[a]) for a in (3, 0, 1, 2)]
            if min(scores) < 50:
                return (3, 0, 1, 2)[int(np.argmin(scores))]
        pos = int(np.argwhere(obs[9, :, 0])[0][0])
        bullets = obs[:, :, 5]

        def danger(c):
            return bullets[5:9, c].any()
        if danger(pos):
            for c in (pos - 1, pos + 1):
                if 0 <= c <= 9 and not danger(c):
                    return 1 if c < pos else 2
            return 1 if pos > 0 else 2
        cols = np.flatnonzero(obs[:, :, 1].any(axis=0))
        if cols.size == 0:
            return 3
        lowest = np.array([np.flatnonzero(obs[:, c, 1]).max() for c in cols])
        target = cols[np.argmin(-20 * lowest + np.abs(cols - pos))]
        if target == pos:
            return 3
        step_to = pos - 1 if target < pos else pos + 1
        return 3 if danger(step_to) else (1 if target < pos else 2)
    return act


@pytest.mark.parametrize("sticky", [0.0, 0.1, 0.5])
def test_random_policy_episodes(sticky):
    totals = run_episodes(GAME, "MinAtar-SpaceInvaders-v1", random_policy(1), episodes=100, seed=31, sticky=sticky)
    assert totals["terminated"] == 100 and totals["max_return"] >= 5


def test_random_policy_full_action_set():
    totals = run_episodes(GAME, "MinAtar-SpaceInvaders-v0", random_policy(2), episodes=60, seed=32)
    assert totals["terminated"] == 60 and totals["sticky_repeats"] > 0


@pytest.mark.parametrize("eps,sticky,ramping", [(0.0, 0.1, True), (0.1, 0.0, True), (0.05, 0.2, False)])
def test_hunter_policy_episodes(eps, sticky, ramping):
    totals = run_episodes(GAME, "MinAtar-SpaceInvaders-v1", hunter_policy(3, eps), episodes=10, seed=33,
                          sticky=sticky, ramping=ramping, max_steps=20000)
    assert totals["terminated"] == 10
    assert totals["max_return"] > 24  # a wave cleared and the next one begun
    assert (totals["max_ramp"] > 0) == ramping


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("num_envs", SIZES)
def test_batch_equals_single_envs(num_envs, mode):
    counts = check_batch_equals_singles("MinAtar-SpaceInvaders-v1", num_envs, mode, steps=300, max_episode_steps=80)
    assert counts["finished"] > 0
    if num_envs > 1:
        assert counts["terminated"] > 0 and counts["truncated"] > 0


def test_bad_input():
    check_bad_input("MinAtar-SpaceInvaders-v1")


def test_registration():
    check_registration("MinAtar-SpaceInvaders-v1", 6)
    check_registration("MinAtar-SpaceInvaders-v0", 6)


def any_wave(rng):
    """A later wave: the move interval anywhere from its start (12) down to its floor (6), so
    the next cleared wave ramps or stays at the floor."""
    from envs_numba.minatar import space_invaders as S

    interval = int(rng.integers(6, 13))
    return {"enemy_move_interval": (S.S_MOVE_INTERVAL, interval),
            "alien_move_timer": (S.S_MOVE_TIMER, int(rng.integers(0, interval + 1))),
            "ramp_index": (S.S_RAMP, 12 - interval)}


@pytest.mark.parametrize("ramping", [True, False])
def test_hunter_policy_at_every_speed(ramping):
    totals = run_episodes(GAME, "MinAtar-SpaceInvaders-v1", hunter_policy(6, 0.05), episodes=12, seed=34,
                          ramping=ramping, inject=any_wave, max_steps=20000)
    assert totals["terminated"] == 12 and totals["max_return"] > 24
