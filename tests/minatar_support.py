"""MinAtar kernels against the ``minatar`` package, step by step, given the same random outcomes.

The reference's ``RandomState`` is replaced by :class:`RecordingRandom`, which draws from a
real ``RandomState`` and records every outcome; after each ``reset()``/``act()`` of the
reference, the outcomes it drew become a tape (``envs_numba.minatar._common.new_tape``) that
our one-env game function (``_reset_env``/``_step_env``) reads instead of its PCG64 stream.
Then observations, rewards and terminations must be equal, and our step must have read
exactly the outcomes the reference drew, in the same order.
"""

from __future__ import annotations

import collections
import copy

import gymnasium as gym
import numpy as np
import pytest

import envs_numba
import fastsample
from envs_numba import rng as rng_mod
from envs_numba.minatar import _common as C
from fastsample.check import MODES, SingleEnvStack, compare_runs

minatar_env = pytest.importorskip("minatar.environment")


class RecordingRandom:
    """A ``RandomState`` that records each outcome: ``rand`` as its doubles, ``randint`` as
    ``value - low`` (our ``draw_int`` returns an index in ``[0, high - low)``)."""

    def __init__(self, seed: int):
        self._rs = np.random.RandomState(seed)
        self.outcomes: list[float] = []
        self.calls: list[str] = []

    def rand(self, *size):
        v = self._rs.rand(*size)
        self.outcomes.extend(np.ravel(v).tolist())
        self.calls.append("rand")
        return v

    def randint(self, low, high=None, size=None, dtype=int):
        v = self._rs.randint(low, high, size, dtype)
        base = 0 if high is None else low
        self.outcomes.extend((np.ravel(v) - base).tolist())
        self.calls.append("randint")
        return v

    def take(self) -> tuple[list[float], tuple[str, ...]]:
        out, calls = self.outcomes, tuple(self.calls)
        self.outcomes, self.calls = [], []
        return out, calls


class Pair:
    """The reference ``minatar.Environment`` and our one-env game functions, side by side."""

    def __init__(self, game: str, env_id: str, seed: int, sticky: float, ramping: bool):
        kernel = envs_numba.KERNELS[env_id]
        self.kernel = kernel
        self.action_set = kernel.extra["action_set"]
        self.ref = minatar_env.Environment(game, sticky_action_prob=sticky, difficulty_ramping=ramping)
        self.rec = RecordingRandom(seed)
        self.ref.random = self.rec
        self.ref.env.random = self.rec
        self.params = kernel.make_params(sticky_action_prob=sticky, difficulty_ramping=ramping)
        self.state = np.zeros((kernel.state_dim, 1))
        self.rng = rng_mod.new_streams(1)
        self.obs = np.zeros((1, *kernel.observation_space.shape), np.bool_)
        self.reset_env = kernel.extra["reset_env"]
        self.step_env = kernel.extra["step_env"]
        self.steps = 0
        self.sticky_repeats = 0
        self.draw_patterns: collections.Counter = collections.Counter()  # the calls of each step

    def _tape(self):
        outcomes, calls = self.rec.take()
        self.draw_patterns[calls] += 1
        return outcomes, C.new_tape(outcomes)

    def inject(self, fields: dict[str, tuple[int, float]]) -> None:
        """Put both games in a state they may not reach soon: ``{attribute of the reference
        game: (our state row, value)}`` (the observation does not depend on these)."""
        for name, (row, value) in fields.items():
            assert hasattr(self.ref.env, name), name
            setattr(self.ref.env, name, value)
            self.state[row, 0] = value

    def reset(self, what: str) -> np.ndarray:
        self.ref.reset()
        outcomes, tape = self._tape()
        self.reset_env(0, self.state, self.rng, self.params, self.obs.reshape(-1), tape)
        assert C.tape_used(tape) == len(outcomes), f"{what}: reset read {C.tape_used(tape)} of {len(outcomes)} outcomes"
        self.check_obs(what)
        return self.obs[0]

    def step(self, action: int, what: str, counted: bool = True):
        """Both sides' step; ``counted=False`` for one after the episode's end (not in the
        totals)."""
        wanted = self.action_set[action]
        r_ref, done_ref = self.ref.act(wanted)
        outcomes, tape = self._tape()
        r, t = self.step_env(0, action, self.state, self.rng, self.params, self.obs.reshape(-1), tape)
        assert C.tape_used(tape) == len(outcomes), (
            f"{what}: step read {C.tape_used(tape)} outcomes, the reference drew {len(outcomes)}")
        assert float(r) == float(r_ref), f"{what}: reward {r} != reference {r_ref}"
        assert bool(t) == bool(done_ref), f"{what}: terminal {t} != reference {done_ref}"
        self.check_obs(what)
        self.steps += counted
        self.sticky_repeats += counted and self.ref.last_action != wanted
        return float(r), bool(t)

    def after_end(self, what: str, check_state=None) -> None:
        """Step the finished game twice more on both sides and compare: the reference's
        ``act`` on a finished game only draws its sticky action (reward 0, terminal again,
        the same observation), and so must ours. Both sides are put back afterwards, so the
        run's random streams go on as if these steps had not been taken."""
        saved = copy.deepcopy((self.ref, self.rec)), self.state.copy(), self.rng.copy(), self.obs.copy()
        for k in range(2):
            step = f"{what}, step {k} after its end"
            r, again = self.step(k % len(self.action_set), step, counted=False)
            assert r == 0.0 and again, step
            if check_state is not None:
                check_state(self.ref.env, self.state, step)
        (self.ref, self.rec), self.state, self.rng, self.obs = saved

    def check_obs(self, what: str) -> None:
        want = self.ref.state()
        got = self.obs[0]
        assert want.dtype == got.dtype and want.shape == got.shape
        if not np.array_equal(want, got):
            bad = np.argwhere(want != got)[:6].tolist()
            raise AssertionError(f"{what}: observation differs at [row, col, channel] {bad}")


def random_policy(seed: int):
    rng = np.random.default_rng(seed)

    def act(obs, n_actions, env):
        return int(rng.integers(n_actions))
    return act


def run_episodes(game: str, env_id: str, policy, *, episodes: int, seed: int, sticky: float = 0.1,
                 ramping: bool = True, max_steps: int = 5000, inject=None, check_state=None) -> dict:
    """``episodes`` full episodes (cut at ``max_steps`` steps) of ``policy(obs, n_actions, ref_env)``
    on both sides; returns totals for the coverage checks. ``inject(rng)``, if given, returns
    the ``Pair.inject`` fields to set after each reset; ``check_state(ref_game, state, what)``,
    if given, compares our state with the reference game's after every reset and step."""
    pair = Pair(game, env_id, seed, sticky, ramping)
    n_actions = len(pair.action_set)
    inject_rng = np.random.default_rng(seed)
    totals = {"episodes": 0, "terminated": 0, "steps": 0, "return": 0.0, "max_return": 0.0,
              "max_ramp": 0, "max_length": 0}
    for ep in range(episodes):
        obs = pair.reset(f"episode {ep} reset")
        if inject is not None:
            pair.inject(inject(inject_rng))
        if check_state is not None:
            check_state(pair.ref.env, pair.state, f"episode {ep} reset")
        ret = 0.0
        for t in range(max_steps):
            a = policy(obs, n_actions, pair.ref.env)
            r, done = pair.step(a, f"episode {ep} step {t}")
            if check_state is not None:
                check_state(pair.ref.env, pair.state, f"episode {ep} step {t}")
            ret += r
            obs = pair.obs[0]
            ramp = pair.ref.env.difficulty_ramp()
            totals["max_ramp"] = max(totals["max_ramp"], ramp or 0)
            if done:
                totals["terminated"] += 1
                pair.after_end(f"episode {ep}", check_state)
                break
        totals["episodes"] += 1
        totals["return"] += ret
        totals["max_return"] = max(totals["max_return"], ret)
        totals["max_length"] = max(totals["max_length"], t + 1)
    totals["steps"] = pair.steps
    totals["sticky_repeats"] = pair.sticky_repeats
    totals["draw_patterns"] = pair.draw_patterns
    return totals


# --- batch = N single envs ------------------------------------------------------------------

SIZES = (1, 33, 64)


def check_batch_equals_singles(env_id: str, num_envs: int, mode: str, steps: int = 150,
                               max_episode_steps: int | None = 40, **env_kwargs) -> dict:
    ref = SingleEnvStack(env_id, num_envs, mode, max_episode_steps, **env_kwargs)
    ours = fastsample.make_vec(env_id, num_envs, autoreset_mode=mode, max_episode_steps=max_episode_steps,
                               **env_kwargs)
    try:
        return compare_runs(ref, ours, mode, steps, seed=7)
    finally:
        ref.close()
        ours.close()


# --- bad input ------------------------------------------------------------------------------


def check_bad_input(env_id: str) -> None:
    n_actions = envs_numba.KERNELS[env_id].action_space.n
    with pytest.raises(TypeError, match="unexpected keyword"):
        fastsample.make_vec(env_id, 2, sticky_prob=0.2)
    for bad in (-0.1, 1.5, float("nan"), float("inf"), "0.1", None, True):
        with pytest.raises(ValueError, match="sticky_action_prob must be a probability"):
            fastsample.make_vec(env_id, 2, sticky_action_prob=bad)
    with pytest.raises(TypeError, match="difficulty_ramping must be a bool"):
        fastsample.make_vec(env_id, 2, difficulty_ramping="yes")
    with pytest.raises(gym.error.UnregisteredEnv):
        fastsample.make_vec("MinAtar-Pong-v1", 2)
    env = fastsample.make_vec(env_id, 3, seed=0)
    obs, _ = env.reset()
    state = env._state.copy()
    rng = env._rng.copy()
    for actions, exc in ((np.array([0, 1, n_actions]), gym.error.InvalidAction),
                         (np.array([0, -1, 0]), gym.error.InvalidAction),
                         (np.array([0, 1]), ValueError),
                         (np.array([0.0, 1.0, 0.0]), TypeError)):
        with pytest.raises(exc):
            env.step(actions)
        assert np.array_equal(env._state, state) and np.array_equal(env._rng, rng)
    # still usable, and the same as an env that never saw the bad actions
    twin = fastsample.make_vec(env_id, 3, seed=0)
    twin.reset()
    a = np.array([0, 1, n_actions - 1])
    assert np.array_equal(env.step(a)[0], twin.step(a)[0])
    env.close()
    twin.close()


def check_registration(env_id: str, channels: int) -> None:
    env = gym.make_vec("fastsample/" + env_id, 4)
    assert env.single_observation_space == gym.spaces.Box(0, 1, (10, 10, channels), np.bool_)
    obs, _ = env.reset(seed=3)
    assert obs.dtype == np.bool_ and obs.shape == (4, 10, 10, channels)
    assert env.observation_space.contains(obs)
    env.close()
    env = fastsample.make_vec(env_id, 2, seed=3)
    assert np.array_equal(env.reset()[0], obs[:2])
    env.close()


__all__ = ["MODES", "SIZES", "Pair", "RecordingRandom", "random_policy", "run_episodes",
           "check_batch_equals_singles", "check_bad_input", "check_registration"]
