"""MountainCar-v0: fastsample equals gymnasium's SyncVectorEnv bit for bit."""

import numpy as np

from envs_numba import rng as rng_mod
import pytest
from gymnasium.envs.classic_control.mountain_car import MountainCarEnv

import fastsample
from envs_numba.classic_control import mountain_car
from tests import support
from tests.support import MODES, run_side_by_side

ENV_ID = "MountainCar-v0"


class ClosedLoop:
    """A closed-loop action sampler for ``run_side_by_side``.

    ``run_side_by_side`` builds its envs itself and calls ``sample_actions()`` without
    arguments, so we wrap ``fastsample.make_vec`` (as ``tests/support.py`` calls it) to watch
    what our env returns: the latest observation (asserted equal to gymnasium's every step,
    so acting on it keeps both sides on the same actions) and the number of terminations.
    """

    def __init__(self, monkeypatch, policy):
        self.obs = None
        self.terminations = 0
        self.policy = policy
        real_make_vec = fastsample.make_vec

        def make_vec(*args, **kwargs):
            env = real_make_vec(*args, **kwargs)
            real_step, real_reset = env.step, env.reset

            def step(actions):
                out = real_step(actions)
                self.obs = out[0].copy()
                self.terminations += int(out[2].sum())
                return out

            def reset(**kw):
                out = real_reset(**kw)
                self.obs = out[0].copy()
                return out

            env.step, env.reset = step, reset
            return env

        monkeypatch.setattr(support.fastsample, "make_vec", make_vec)

    def __call__(self):
        return self.policy(self.obs)


def pump_policy(seed: int, eps: float = 0.2):
    """Accelerate in the direction of motion (reaches the flag), random with prob. ``eps``."""
    rng = np.random.default_rng(seed)

    def policy(obs):
        n = obs.shape[0]
        actions = np.where(obs[:, 1] >= 0, 2, 0).astype(np.int64)
        explore = rng.random(n) < eps
        actions[explore] = rng.integers(0, 3, int(explore.sum()))
        return actions

    return policy


@pytest.mark.platform_sensitive
@pytest.mark.parametrize("mode", MODES)
# 33 envs: one past a 32-env vector boundary, so a full vector and a partial tail (as in
# test_acrobot_align; 64 envs cost twice the time in gymnasium's Python env and add no case
# 33 lacks; the codegen matrix runs 64 and 257 under every target)
# 33 envs run 2,500 steps with a 50-step limit on both sides: as many autoresets per env (~50) as
# 10,000 steps at gymnasium's 200, in a quarter of gymnasium's time; 1 and 7 envs keep the 200.
@pytest.mark.parametrize("num_envs, steps, limit", [(1, 10_000, None), (7, 10_000, None), (33, 2_500, 50)],
                         ids=["1", "7", "33"])
def test_mountain_car_bit_identical(num_envs, steps, limit, mode):
    # random actions: every episode is truncated at the limit (or reset part-way)
    kwargs = {} if limit is None else {"max_episode_steps": limit}
    counts = run_side_by_side(ENV_ID, num_envs, mode, steps=steps, seed=123, **kwargs)
    assert counts["finished"] >= 20 * num_envs


@pytest.mark.platform_sensitive
@pytest.mark.parametrize("mode", MODES)
# 33 envs: one past a 32-env vector boundary, so a full vector and a partial tail (as in
# test_acrobot_align; 64 envs cost twice the time in gymnasium's Python env and add no case
# 33 lacks; the codegen matrix runs 64 and 257 under every target)
@pytest.mark.parametrize("num_envs", [1, 7, 33])
def test_mountain_car_bit_identical_terminating(num_envs, mode, monkeypatch):
    # a closed-loop policy reaches the goal in ~100 steps, and the left wall on the way
    sampler = ClosedLoop(monkeypatch, pump_policy(seed=num_envs))
    counts = run_side_by_side(ENV_ID, num_envs, mode, steps=5_000, seed=5, sample_actions=sampler)
    assert sampler.terminations >= 20 * num_envs
    assert counts["finished"] >= sampler.terminations


@pytest.mark.platform_sensitive
@pytest.mark.parametrize("goal_velocity", [0.01, -0.02, np.float32(0.005), np.float64(0.003), 1])
def test_mountain_car_goal_velocity(goal_velocity, monkeypatch):
    sampler = ClosedLoop(monkeypatch, pump_policy(seed=3, eps=0.1))
    counts = run_side_by_side(
        ENV_ID, 8, "NextStep", steps=2_000, seed=11, sample_actions=sampler, goal_velocity=goal_velocity
    )
    assert counts["finished"] > 0
    if goal_velocity != 1:  # 1 is faster than the maximum speed: never terminates
        assert sampler.terminations >= 20
    else:
        assert sampler.terminations == 0


def test_mountain_car_reset_bounds_near_goal(monkeypatch):
    sampler = ClosedLoop(monkeypatch, pump_policy(seed=4))
    counts = run_side_by_side(
        ENV_ID, 5, "SameStep", steps=300, seed=7, reset_options={"low": 0.3, "high": 0.55},
        sample_actions=sampler,
    )
    assert sampler.terminations >= 5 and counts["finished"] >= 5


def test_mountain_car_kwargs_and_options_rejected():
    with pytest.raises(TypeError):
        fastsample.make_vec(ENV_ID, 2, gravity=0.1)
    with pytest.raises(TypeError):
        fastsample.make_vec(ENV_ID, 2, goal_velocity="fast")
    env = fastsample.make_vec(ENV_ID, 2)
    with pytest.raises(ValueError):
        env.reset(options={"low": 0.1, "high": -0.1})
    with pytest.raises(ValueError):
        env.reset(options={"x_init": 0.1})


def _targeted_states(rng, n_per_target):
    """States whose next position or velocity lands within a few ulps of a boundary."""
    states = []
    for target_pos, v_sign in ((-1.2, -1.0), (0.5, 1.0), (0.6, 1.0)):
        for _ in range(n_per_target):
            v = v_sign * rng.uniform(0.0, 0.075)
            a = int(rng.integers(0, 3))
            p = target_pos - v
            for _ in range(12):  # fixed point of p + v_new(p) = target (contraction ~0.0075)
                v_new = np.clip(v + (a - 1) * 0.001 + np.cos(3 * p) * -0.0025, -0.07, 0.07)
                p = target_pos - v_new
            for k in range(-3, 4):
                states.append((p + k * np.spacing(p), v, a))
    return states


@pytest.mark.parametrize("goal_velocity", [0, 0.01, np.float32(-0.004)])
def test_mountain_car_state_injection(goal_velocity):
    """One step from identical injected states equals gymnasium's single env (not platform
    sensitive: both sides call libm's cos on the same float64 argument)."""
    rng = np.random.default_rng(2024)
    rows = [
        (rng.uniform(-1.3, 0.7), rng.uniform(-0.08, 0.08), int(rng.integers(0, 3)))
        for _ in range(3000)
    ]
    rows += _targeted_states(rng, 60)
    # velocity landing next to goal_velocity while past the flag
    gv = float(goal_velocity)
    for _ in range(100):
        p = rng.uniform(0.52, 0.58)
        a = int(rng.integers(0, 3))
        v = gv - ((a - 1) * 0.001 + np.cos(3 * p) * -0.0025)
        for k in range(-3, 4):
            rows.append((p, v + k * np.spacing(v), a))
    n = len(rows)
    pos = np.array([r[0] for r in rows])
    vel = np.array([r[1] for r in rows])
    act = np.array([r[2] for r in rows], dtype=np.int64)

    ref = MountainCarEnv(goal_velocity=goal_velocity)
    ref.reset(seed=0)
    ref_state = np.zeros((n, 2))
    ref_obs = np.zeros((n, 2), dtype=np.float32)
    ref_rew = np.zeros(n)
    ref_term = np.zeros(n, dtype=bool)
    for j in range(n):
        ref.state = np.array([pos[j], vel[j]])
        o, r, term, trunc, _ = ref.step(np.int64(act[j]))
        ref_state[j] = np.array(ref.state, dtype=np.float64)
        ref_obs[j], ref_rew[j], ref_term[j] = o, r, term

    kernel = mountain_car.KERNEL
    state = np.ascontiguousarray(np.stack([pos, vel]))
    obs = np.zeros((n, 2), dtype=np.float32)
    rewards = np.zeros(n)
    terminated = np.zeros(n, dtype=np.bool_)
    params = kernel.make_params(goal_velocity=goal_velocity)
    kernel.step(np.ones(n, dtype=np.bool_), act, state, rng_mod.new_streams(n), params, obs, rewards, terminated)

    np.testing.assert_allclose(state.T, ref_state, rtol=1e-12, atol=0)
    np.testing.assert_allclose(obs.astype(np.float64), ref_obs.astype(np.float64), rtol=1e-12, atol=0)
    np.testing.assert_allclose(rewards, ref_rew, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(terminated, ref_term)
    # the boundaries were really exercised
    on_left_edge = ref_state[:, 0] == -1.2
    assert on_left_edge.sum() >= 50 and (on_left_edge & (ref_state[:, 1] == 0)).sum() >= 50
    assert (ref_state[:, 0] == 0.5).sum() >= 20
    assert (ref_state[:, 1] == gv).sum() >= 20
    assert ref_term.sum() >= 100 and (~ref_term).sum() >= 100
