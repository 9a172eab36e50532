"""Bad input raises a clear error naming the problem and leaves the env untouched."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs_numba
import fastsample


def snapshot(env):
    return [a.copy() for a in (env._state, env._rng, env._obs, env._rewards, env._terminated,
                               env._truncated, env._elapsed, env._pending)]


def assert_untouched(env, before):
    for a, b in zip(before, snapshot(env)):
        np.testing.assert_array_equal(a, b)


def fresh(env_id="CartPole-v1", n=3, **kw):
    env = fastsample.make_vec(env_id, n, **kw)
    env.reset(seed=0)
    env.step(env.action_space.sample())
    return env


DISCRETE_BAD = [
    (np.zeros(2, dtype=np.int64), ValueError, "expected 3 actions"),
    (np.zeros(4, dtype=np.int64), ValueError, "expected 3 actions"),
    (np.zeros((3, 1), dtype=np.int64), ValueError, "shape"),
    (1, TypeError, "scalar"),
    (np.array([0.0, 1.0, 0.0]), TypeError, "integers"),
    (np.array([0, 2, 1]), gym.error.InvalidAction, "action 2 of env 1"),
    (np.array([0, -1, 1]), ValueError, "action -1 of env 1"),
    (["a", "b", "c"], TypeError, "integers"),
]


@pytest.mark.parametrize("actions, exc, match", DISCRETE_BAD)
def test_bad_discrete_actions(actions, exc, match):
    env = fresh()
    before = snapshot(env)
    with pytest.raises(exc, match=match):
        env.step(actions)
    assert_untouched(env, before)
    env.step([0, 1, 0])  # still usable; lists are fine


BOX_IDS = [e for e in ("Pendulum-v1", "MountainCarContinuous-v0") if e in envs_numba.KERNELS]


@pytest.mark.parametrize("env_id", BOX_IDS)
@pytest.mark.parametrize(
    "actions, exc, match",
    [
        (np.array([[0.0], [np.nan], [0.0]], dtype=np.float32), ValueError, "env 1 is not finite"),
        (np.array([[0.0], [0.0], [np.inf]]), ValueError, "env 2 is not finite"),
        (np.array([[0.0], [0.0], [1e300]]), ValueError, "env 2 is not finite"),
        (np.zeros(3, dtype=np.float32), ValueError, "shape"),
        (np.zeros((2, 1), dtype=np.float32), ValueError, "expected 3 actions"),
        (0.5, TypeError, "scalar"),
        (np.array([["a"], ["b"], ["c"]]), TypeError, "numbers"),
    ],
)
def test_bad_box_actions(env_id, actions, exc, match):
    env = fresh(env_id)
    before = snapshot(env)
    with pytest.raises(exc, match=match):
        env.step(actions)
    assert_untouched(env, before)


@pytest.mark.parametrize(
    "seed, exc, match",
    [
        (-1, ValueError, "non-negative"),
        (1.5, TypeError, "non-negative int"),
        (True, TypeError, "non-negative int"),
        ("7", TypeError, "non-negative int"),
        ([0, 1], ValueError, "length must match num_envs=3"),
        ([0, 1, -2], ValueError, "non-negative"),
        ([0, 1, "x"], TypeError, "non-negative int"),
    ],
)
def test_bad_seeds(seed, exc, match):
    env = fresh()
    before = snapshot(env)
    with pytest.raises((exc, gym.error.Error), match=match):
        env.reset(seed=seed)
    assert_untouched(env, before)


@pytest.mark.parametrize(
    "mask, exc, match",
    [
        ([True, False, True], TypeError, "numpy array"),
        (np.array([True, False]), ValueError, r"shape `\(3,\)`"),
        (np.array([1, 0, 1]), TypeError, "dtype=np.bool_"),
        (np.zeros(3, dtype=bool), ValueError, "at least one True"),
    ],
)
def test_bad_reset_mask(mask, exc, match):
    env = fresh()
    before = snapshot(env)
    with pytest.raises(exc, match=match):
        env.reset(options={"reset_mask": mask})
    assert_untouched(env, before)


LOW_HIGH_IDS = ["CartPole-v1", "Acrobot-v1", "MountainCar-v0", "MountainCarContinuous-v0"]


@pytest.mark.parametrize("env_id", LOW_HIGH_IDS)
@pytest.mark.parametrize(
    "options, exc, match",
    [
        ({"low": 0.1, "high": -0.1}, ValueError, "Lower bound"),
        ({"low": "abc"}, ValueError, "could not be converted"),
        ({"lo": 0.1}, ValueError, "unknown reset options"),
        ({"low": -1e308, "high": 1e308}, OverflowError, "range exceeds"),
        ({"low": 0.0, "high": -0.0}, ValueError, "high - low < 0"),
    ],
)
def test_bad_reset_options(env_id, options, exc, match):
    """Same error class as gymnasium's env raises for the same options, state untouched."""
    env = fresh(env_id)
    before = snapshot(env)
    with pytest.raises(exc, match=match):
        env.reset(options=options)
    assert_untouched(env, before)
    if "lo" not in options:  # gymnasium ignores unknown keys; we reject them
        with pytest.raises(exc):
            gym.make(env_id).reset(options=options)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="num_envs"):
        fastsample.make_vec("CartPole-v1", 0)
    with pytest.raises(TypeError, match="num_envs"):
        fastsample.make_vec("CartPole-v1", 2.5)
    with pytest.raises(TypeError, match="unexpected keyword"):
        fastsample.make_vec("CartPole-v1", 2, gravity=3.0)
    with pytest.raises(ValueError, match="max_episode_steps"):
        fastsample.make_vec("CartPole-v1", 2, max_episode_steps=0)
    with pytest.raises(ValueError, match="render_mode"):
        fastsample.make_vec("CartPole-v1", 2, render_mode="human")
    with pytest.raises(TypeError, match="env_id"):
        fastsample.make_vec(3, 2)


# Action dtypes (issue 14 item 8). Numba kernels read actions from shared memory, so
# fastsample.actions.ActionBuffer checks and casts each batch by gymnasium's rules first (below).
# Python envs (ProcessVectorEnv over env_fns) get each action as AsyncVectorEnv hands it over,
# unchecked and uncast, and the env decides: tests/test_process_vector_env_actions.py (issue 10).

def test_box_float16_actions_are_cast_and_non_finite_ones_rejected():
    from fastsample.actions import ActionBuffer

    buf = ActionBuffer(gym.spaces.Box(-1, 1, (2,), np.float16), 4)
    actions = np.linspace(-1.5, 1.5, 8).reshape(4, 2)  # float64, some outside the bounds
    loaded = buf.load(actions)
    assert loaded.dtype == np.float16
    np.testing.assert_array_equal(loaded, actions.astype(np.float16))
    with pytest.raises(gym.error.InvalidAction, match=r"env 2 is not finite as float16"):
        buf.load(np.array([[0, 0], [0, 0], [70000.0, 0], [0, 0]]))  # inf in float16
    np.testing.assert_array_equal(buf.array, actions.astype(np.float16))  # untouched


def test_integer_box_rejects_floats_and_values_its_dtype_cannot_hold():
    from fastsample.actions import ActionBuffer

    buf = ActionBuffer(gym.spaces.Box(0, 10, (2,), np.int64), 4)
    assert buf.load(np.full((4, 2), 3, dtype=np.int32)).dtype == np.int64
    for bad in (np.full((4, 2), 3.9), np.full((4, 2), 1e30), np.full((4, 2), 3.0, dtype=np.float32)):
        with pytest.raises(TypeError, match=r"must be integers, got dtype float.*truncate"):
            buf.load(bad)
    assert buf.array.tolist() == [[3, 3]] * 4  # untouched
    buf = ActionBuffer(gym.spaces.Box(-5, 5, (1,), np.int8), 4)
    with pytest.raises(gym.error.InvalidAction, match=r"action \[300\] of env 1 does not fit .* int8"):
        buf.load(np.array([[0], [300], [0], [0]]))
    # out of the bounds but an int8: the env decides
    assert buf.load(np.array([[0], [-128], [127], [0]])).tolist() == [[0], [-128], [127], [0]]


def test_discrete_int32_actions_are_cast_to_int32_and_checked():
    from fastsample.actions import ActionBuffer

    buf = ActionBuffer(gym.spaces.Discrete(3, dtype=np.int32), 4)
    loaded = buf.load(np.array([0, 1, 2, 1]))
    assert loaded.dtype == np.int32 and loaded.tolist() == [0, 1, 2, 1]
    with pytest.raises(gym.error.InvalidAction, match="action 3 of env 0"):
        buf.load(np.array([3, 0, 0, 0]))
