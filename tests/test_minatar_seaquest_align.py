"""MinAtar-Seaquest against the ``minatar`` package, step by step given the same random
outcomes (tests/minatar_support.py), plus batch = single envs in every autoreset mode and bad
input. Seaquest's reference keeps entities in Python lists that it mutates while iterating
and removes from by value; long episodes at high difficulty (many enemies and bullets) are
what exercises that."""

import copy

import numpy as np
import pytest

from envs_numba.minatar import seaquest as S
from tests.minatar_support import (MODES, SIZES, check_bad_input, check_batch_equals_singles,
                                   check_registration, random_policy, run_episodes)

GAME = "seaquest"
UP = 2


def same_lists(game, state, what: str) -> None:
    """Our entity lists (``S.lists``: decoded from the packed state rows) are the reference
    game's, element by element and in list order: the order decides which element the
    reference's removal by value takes, which the observation alone shows only later."""
    ours = S.lists(state, 0)
    for name in S.LISTS:
        want = [[int(v) for v in element] for element in getattr(game, name)]
        assert ours[name] == want, f"{what}: {name} {ours[name]} != reference {want}"


def _outlook(game, first: int) -> float:
    g = copy.deepcopy(game)  # its recording RandomState too: the real game's draws are untouched
    divers = g.diver_count
    r, done = g.act(first)
    if done:
        return -10.0
    return r + 0.5 * (g.diver_count > divers)


def diver_policy(seed: int, eps: float):
    """One step of look-ahead on a copy of the reference game: don't die, shoot, pick up
    divers; head for the surface when oxygen runs low with divers aboard, dive otherwise."""
    rng = np.random.default_rng(seed)

    def act(obs, n_actions, game):
        if rng.random() < eps:
            return int(rng.integers(n_actions))
        scores = np.array([_outlook(game, a) for a in range(6)])
        if game.diver_count != 0 and (game.oxygen < 40 or game.diver_count >= 6):
            scores[UP] += 0.3
        elif game.sub_y < 3:
            scores[4] += 0.1  # down
        best = np.flatnonzero(scores == scores.max())
        return int(rng.choice(best))
    return act


def any_state(rng):
    """A random difficulty, oxygen and diver count (6, so surfacing pays the bonus and leaves
    -1 divers; 0, so it ends the episode; below 0, as the reference's count can be)."""
    spawn = int(rng.integers(1, 21))
    return {"e_spawn_speed": (S.S_E_SPAWN_SPEED, spawn), "e_spawn_timer": (S.S_E_SPAWN_TIMER, int(rng.integers(0, spawn + 1))),
            "move_speed": (S.S_MOVE_SPEED, int(rng.integers(2, 6))), "ramp_index": (S.S_RAMP, int(rng.integers(0, 20))),
            "diver_count": (S.S_DIVERS, int(rng.integers(-3, 7))), "oxygen": (S.S_OXYGEN, int(rng.integers(1, 201)))}


@pytest.mark.parametrize("sticky", [0.0, 0.1, 0.5])
def test_random_policy_episodes(sticky):
    totals = run_episodes(GAME, "MinAtar-Seaquest-v1", random_policy(1), episodes=100, seed=51, sticky=sticky,
                          check_state=same_lists)
    assert totals["terminated"] == 100 and totals["max_return"] >= 1


@pytest.mark.parametrize("eps,sticky,ramping,min_length,min_ramp", [
    (0.0, 0.1, True, 200, 1), (0.1, 0.0, True, 1000, 5), (0.05, 0.2, False, 200, 0)])
def test_diver_policy_episodes(eps, sticky, ramping, min_length, min_ramp):
    totals = run_episodes(GAME, "MinAtar-Seaquest-v0", diver_policy(3, eps), episodes=4, seed=53,
                          sticky=sticky, ramping=ramping, max_steps=3000, check_state=same_lists)
    assert totals["max_length"] > min_length
    assert totals["max_ramp"] >= min_ramp and (totals["max_ramp"] > 0) == ramping


@pytest.mark.parametrize("ramping", [True, False])
def test_policies_from_any_state(ramping):
    changes = set()  # (diver count, diver count on the next step)
    last = [None]
    policy = diver_policy(5, 0.3)

    def watching(obs, n_actions, game):
        if last[0] is not None:
            changes.add((last[0], game.diver_count))
        last[0] = game.diver_count
        return policy(obs, n_actions, game)
    totals = run_episodes(GAME, "MinAtar-Seaquest-v1", watching, episodes=60, seed=54,
                          ramping=ramping, inject=any_state, max_steps=2000, check_state=same_lists)
    assert totals["terminated"] >= 55
    assert (6, -1) in changes  # surfacing with six divers leaves -1
    assert any(before < 0 and after == before - 1 for before, after in changes)  # and surfacing below 0


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("num_envs", SIZES)
def test_batch_equals_single_envs(num_envs, mode):
    counts = check_batch_equals_singles("MinAtar-Seaquest-v1", num_envs, mode, steps=300, max_episode_steps=80)
    assert counts["finished"] > 0
    if num_envs > 1:
        assert counts["terminated"] > 0 and counts["truncated"] > 0


def test_bad_input():
    check_bad_input("MinAtar-Seaquest-v1")


def test_registration():
    check_registration("MinAtar-Seaquest-v1", 10)
    check_registration("MinAtar-Seaquest-v0", 10)
