"""MountainCarContinuous-v0: fastsample equals gymnasium's SyncVectorEnv bit for bit.

Gymnasium's step mixes float64 and float32 by NumPy 2's promotion rules (the state is
float64 after a reset, float32 after a step; clipping assigns Python floats; an action
outside [-1, 1] turns the force into a Python float), so the tests drive the env through
every branch: actions outside [-1, 1] and exactly on +-1, the velocity and position clips,
the left wall, and ``goal_velocity`` of several Python and NumPy types.
"""

import numpy as np

from envs_numba import rng as rng_mod
import pytest
from gymnasium.envs.classic_control.continuous_mountain_car import Continuous_MountainCarEnv

import fastsample
from envs_numba.classic_control import continuous_mountain_car as cmc
from tests.support import MODES, run_side_by_side
from tests.test_mountain_car_align import ClosedLoop

ENV_ID = "MountainCarContinuous-v0"
F32 = np.float32


def uniform_actions(num_envs: int, seed: int, scale: float = 3.0):
    """Random float32 actions in [-scale, scale]: two thirds of them outside [-1, 1]."""
    rng = np.random.default_rng(seed)
    return lambda: rng.uniform(-scale, scale, (num_envs, 1)).astype(np.float32)


def pump_policy(seed: int, eps: float = 0.15):
    """Push in the direction of motion with a random strength in [0.3, 3] (mostly beyond the
    clip at 1), the wrong way with probability ``eps``; sometimes exactly +-1 or 0."""
    rng = np.random.default_rng(seed)

    def policy(obs):
        n = obs.shape[0]
        sign = np.where(obs[:, 1] >= 0, 1.0, -1.0)
        sign[rng.random(n) < eps] *= -1
        actions = sign * rng.uniform(0.3, 3.0, n)
        special = rng.random(n) < 0.1
        actions[special] = rng.choice([-1.0, 1.0, 0.0], int(special.sum()))
        return actions.astype(np.float32)[:, None]

    return policy


@pytest.mark.platform_sensitive
@pytest.mark.parametrize("mode", MODES)
# 33 envs: one past a 32-env vector boundary, so a full vector and a partial tail (as in
# test_acrobot_align; 64 envs cost twice the time in gymnasium's Python env and add no case
# 33 lacks; the codegen matrix runs 64 and 257 under every target)
@pytest.mark.parametrize("num_envs", [1, 7, 33])
def test_continuous_mountain_car_bit_identical(num_envs, mode):
    # random actions in [-3, 3] never reach the flag: with the registered limit of 999 steps
    # and the partial resets of run_side_by_side hardly any episode would end, so truncate
    # at 200 (on both sides) to get many autoresets, each followed by a float64 first step
    counts = run_side_by_side(
        ENV_ID, num_envs, mode, steps=10_000, seed=123, sample_actions=uniform_actions(num_envs, 1),
        max_episode_steps=200,
    )
    assert counts["finished"] >= 10 * num_envs


@pytest.mark.platform_sensitive
@pytest.mark.parametrize("mode", MODES)
# 33 envs: one past a 32-env vector boundary, so a full vector and a partial tail (as in
# test_acrobot_align; 64 envs cost twice the time in gymnasium's Python env and add no case
# 33 lacks; the codegen matrix runs 64 and 257 under every target)
@pytest.mark.parametrize("num_envs", [1, 7, 33])
def test_continuous_mountain_car_bit_identical_terminating(num_envs, mode, monkeypatch):
    # a closed-loop policy reaches the goal in ~100 steps, hitting the clips on the way
    sampler = ClosedLoop(monkeypatch, pump_policy(seed=num_envs))
    counts = run_side_by_side(ENV_ID, num_envs, mode, steps=5_000, seed=5, sample_actions=sampler)
    assert sampler.terminations >= 20 * num_envs
    assert counts["finished"] >= sampler.terminations


@pytest.mark.platform_sensitive
@pytest.mark.parametrize(
    "goal_velocity", [0.01, -0.02, F32(0.005), np.float64(0.003), np.float64(0.01), 0.07, 1]
)
def test_continuous_mountain_car_goal_velocity(goal_velocity, monkeypatch):
    sampler = ClosedLoop(monkeypatch, pump_policy(seed=3, eps=0.05))
    counts = run_side_by_side(
        ENV_ID, 8, "NextStep", steps=2_000, seed=11, sample_actions=sampler, goal_velocity=goal_velocity
    )
    assert counts["partial_resets"] > 0
    if goal_velocity < 0.05:
        assert sampler.terminations >= 20
    elif goal_velocity == 1:  # faster than the maximum speed: never terminates
        assert sampler.terminations == 0


@pytest.mark.platform_sensitive
@pytest.mark.filterwarnings("ignore:.*not within the observation space")
def test_continuous_mountain_car_reset_bounds_left_wall():
    # the first episode of every env starts beyond the left wall (reset options apply to the
    # explicit first reset only; autoresets use the default range), pushed left: the wall
    # branches on a float64 first step and on float32 states right after
    rng = np.random.default_rng(9)
    counts = run_side_by_side(
        ENV_ID, 16, "Disabled", steps=3_000, seed=7, max_episode_steps=20,
        reset_options={"low": -1.5, "high": -1.1},
        sample_actions=lambda: rng.uniform(-3.0, 0.5, (16, 1)).astype(np.float32),
    )
    assert counts["finished"] >= 16


def test_continuous_mountain_car_reset_bounds_near_goal(monkeypatch):
    sampler = ClosedLoop(monkeypatch, pump_policy(seed=4))
    run_side_by_side(
        ENV_ID, 5, "SameStep", steps=300, seed=7, reset_options={"low": 0.3, "high": 0.55},
        sample_actions=sampler,
    )
    assert sampler.terminations >= 5


def test_continuous_mountain_car_kwargs_and_options_rejected():
    with pytest.raises(TypeError):
        fastsample.make_vec(ENV_ID, 2, power=0.1)
    with pytest.raises(TypeError):
        fastsample.make_vec(ENV_ID, 2, goal_velocity=None)
    env = fastsample.make_vec(ENV_ID, 2)
    with pytest.raises(ValueError):
        env.reset(options={"low": 0.1, "high": -0.1})


# --- state injection: one step from identical states, always on ---------------------------


def _approx_acc(p, a):
    """Roughly ``force * power - 0.0025 * cos(3 p)`` (only used to aim at boundaries)."""
    return float(np.clip(a, -1, 1)) * 0.0015 - 0.0025 * np.cos(3 * p)


def _step_of(dtype):
    """Next representable value in the state's precision."""
    return lambda x: float(np.spacing(dtype(x)))


def _injection_rows(rng, is_f32):
    """(position, velocity, action) rows: random, plus rows aimed within a few ulps (of the
    state's precision) of every boundary the step compares against."""
    dtype = np.float32 if is_f32 else np.float64
    ulp = _step_of(dtype)
    special_actions = np.array(
        [1.0, -1.0, 0.0, np.nextafter(F32(1), F32(2)), np.nextafter(F32(1), F32(0)),
         np.nextafter(F32(-1), F32(-2)), np.nextafter(F32(-1), F32(0)), 1e30, -7.5],
        dtype=np.float32,
    )

    def action():
        if rng.random() < 0.3:
            return F32(rng.choice(special_actions))
        return F32(rng.uniform(-3.0, 3.0))

    rows = [(rng.uniform(-1.3, 0.7), rng.uniform(-0.08, 0.08), action()) for _ in range(2000)]
    # next position next to the left wall (moving left), the goal and the right wall
    for target, v_lo, v_hi in ((-1.2, -0.075, 0.0), (0.45, 0.0, 0.075), (0.6, 0.0, 0.075)):
        for t in (target, float(F32(target))):
            for _ in range(40):
                v, a = rng.uniform(v_lo, v_hi), action()
                p = t - v
                for _ in range(12):
                    v_new = float(np.clip(v + _approx_acc(p, a), -0.07, 0.07))
                    p = t - v_new
                p = float(dtype(p))
                for k in range(-3, 4):
                    rows.append((p + k * ulp(p), v, a))
    # next velocity next to the speed limits
    for target in (0.07, -0.07, float(F32(0.07)), float(F32(-0.07))):
        for _ in range(40):
            p, a = rng.uniform(-1.0, 0.3), action()
            v = float(dtype(target - _approx_acc(p, a)))
            for k in range(-3, 4):
                rows.append((p, v + k * ulp(v), a))
    return rows


def _goal_rows(rng, is_f32, goal_velocity):
    """Rows past the flag whose next velocity lands next to ``goal_velocity``."""
    dtype = np.float32 if is_f32 else np.float64
    ulp = _step_of(dtype)
    rows = []
    for t in {float(goal_velocity), float(F32(goal_velocity))}:
        for _ in range(40):
            p = rng.uniform(0.46, 0.55)
            a = F32(rng.uniform(-1.0, 1.0)) if rng.random() < 0.7 else F32(2.5)
            v = float(dtype(t - _approx_acc(p, a)))
            for k in range(-3, 4):
                rows.append((p, v + k * ulp(v), a))
    return rows


# 0.07 and a float64 just above it (still below float32(0.07)) tell the clipped Python float
# 0.07 apart from an unclipped np.float32(0.07) in ``velocity >= goal_velocity``
GOALS = [0, 0.01, -0.005, F32(0.004), np.float64(0.003), 0.07, np.float64(0.0700000001), -0.07]


@pytest.mark.parametrize("goal_velocity", GOALS)
@pytest.mark.parametrize("is_f32", [False, True], ids=["float64_state", "float32_state"])
def test_continuous_mountain_car_state_injection(goal_velocity, is_f32):
    """One step from identical injected states equals gymnasium's single env, for a float64
    state (first step after a reset) and a float32 state (every later step)."""
    rng = np.random.default_rng(77 + is_f32)
    dtype = np.float32 if is_f32 else np.float64
    rows = _injection_rows(rng, is_f32) + _goal_rows(rng, is_f32, goal_velocity)
    n = len(rows)
    pos = np.array([float(dtype(r[0])) for r in rows])
    vel = np.array([float(dtype(r[1])) for r in rows])
    act = np.array([[r[2]] for r in rows], dtype=np.float32)

    ref = Continuous_MountainCarEnv(goal_velocity=goal_velocity)
    ref.reset(seed=0)
    ref_state = np.zeros((n, 2))
    ref_rew = np.zeros(n)
    ref_term = np.zeros(n, dtype=bool)
    for j in range(n):
        ref.state = np.array([pos[j], vel[j]], dtype=dtype)
        o, r, term, trunc, _ = ref.step(act[j].copy())
        assert ref.state.dtype == np.float32 and o is ref.state
        ref_state[j] = ref.state.astype(np.float64)
        ref_rew[j], ref_term[j] = r, term

    kernel = cmc.KERNEL
    state = np.ascontiguousarray(np.stack([pos, vel, np.full(n, 1.0 if is_f32 else 0.0)]))
    obs = np.zeros((n, 2), dtype=np.float32)
    rewards = np.zeros(n)
    terminated = np.zeros(n, dtype=np.bool_)
    params = kernel.make_params(goal_velocity=goal_velocity)
    kernel.step(np.ones(n, dtype=np.bool_), act, state, rng_mod.new_streams(n), params, obs, rewards, terminated)

    np.testing.assert_allclose(state[:2].T, ref_state, rtol=1e-12, atol=0)
    np.testing.assert_allclose(obs.astype(np.float64), ref_state, rtol=1e-12, atol=0)
    np.testing.assert_allclose(rewards, ref_rew, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(terminated, ref_term)
    assert (state[2] == 1.0).all()  # the state is float32 after any step

    # the boundaries were really exercised
    wall = F32(-1.2)
    assert ((ref_state[:, 0] == wall) & (ref_state[:, 1] == 0)).sum() >= 50
    assert (ref_state[:, 0] == F32(0.6)).sum() >= 50
    assert (np.abs(ref_state[:, 1]) == F32(0.07)).sum() >= 50
    assert (ref_state[:, 1] == F32(goal_velocity)).sum() >= 20
    assert (~ref_term).sum() >= 100
    if goal_velocity < 0.05:  # else only velocities of exactly 0.07 can terminate
        assert ref_term.sum() >= 100
    assert (np.abs(act[:, 0]) > 1).sum() >= 500
