"""Pendulum-v1: fastsample equals gymnasium's SyncVectorEnv bit for bit, and one step from
injected states agrees with gymnasium's ``PendulumEnv`` to ``rtol=1e-12`` on any platform."""


import gymnasium as gym
import numpy as np

from envs_numba import rng as rng_mod
import pytest
from gymnasium.envs.classic_control.pendulum import PendulumEnv, angle_normalize

import fastsample
from envs_numba.classic_control import pendulum
from tests.support import MODES, assert_same, run_side_by_side

ENV_ID = "Pendulum-v1"
KERNEL = pendulum.KERNEL


def torque_sampler(num_envs: int, seed: int):
    """float32 torques in [-2.5, 2.5] (about a fifth outside the action space, which both
    envs clip), with exact -2, 0 and 2 mixed in."""
    rng = np.random.default_rng(seed)

    def sample():
        u = rng.uniform(-2.5, 2.5, (num_envs, 1))
        special = rng.random(num_envs) < 0.1
        u[special, 0] = rng.choice([-2.0, 0.0, 2.0], int(special.sum()))
        return u.astype(np.float32)

    return sample


@pytest.mark.platform_sensitive
@pytest.mark.parametrize("mode", MODES)
# 33 envs: one past a 32-env vector boundary, so a full vector and a partial tail (as in
# test_acrobot_align; 64 envs cost twice the time in gymnasium's Python env and add no case
# 33 lacks; the codegen matrix runs 64 and 257 under every target)
# 33 envs run 2,500 steps with a 50-step limit on both sides: as many autoresets per env (~50) as
# 10,000 steps at gymnasium's 200, in a quarter of gymnasium's time; 1 and 7 envs keep the 200.
@pytest.mark.parametrize("num_envs, steps, limit", [(1, 10_000, None), (7, 10_000, None), (33, 2_500, 50)],
                         ids=["1", "7", "33"])
def test_pendulum_bit_identical(num_envs, steps, limit, mode):
    kwargs = {} if limit is None else {"max_episode_steps": limit}
    counts = run_side_by_side(
        ENV_ID, num_envs, mode, steps=steps, seed=123, sample_actions=torque_sampler(num_envs, seed=num_envs),
        **kwargs)
    # only the time limit ends an episode; partial resets cut some short
    assert counts["finished"] >= 25 * num_envs


@pytest.mark.platform_sensitive
def test_pendulum_bit_identical_action_space_samples():
    counts = run_side_by_side(ENV_ID, 16, "SameStep", steps=2_000, seed=9)
    assert counts["finished"] >= 16 * 8


@pytest.mark.platform_sensitive
@pytest.mark.filterwarnings("ignore:.*not within the observation space")  # y_init beyond 8
@pytest.mark.parametrize(
    "options, kwargs",
    [
        ({"x_init": np.pi / 2, "y_init": 0.5}, {}),
        ({"x_init": 0.1}, {"g": 9.81}),
        ({"y_init": 8.0}, {"g": 1.62}),
        ({"x_init": 0.0, "y_init": 12.0}, {}),  # theta starts at 0, theta_dot beyond +-8
        ({"x_init": 50.0, "y_init": 3}, {"g": 9.81}),
        (None, {"g": 9.81}),
        (None, {"g": 10}),  # an int
        (None, {"g": np.float32(9.81)}),  # 3 * g / (2 * l) in float32
    ],
)
def test_pendulum_reset_options_and_gravity(options, kwargs):
    counts = run_side_by_side(
        ENV_ID, 5, "NextStep", steps=1_000, seed=7, reset_options=options,
        sample_actions=torque_sampler(5, seed=3), **kwargs,
    )
    assert counts["finished"] >= 5


def test_pendulum_docstring_golden_values():
    """gymnasium's SyncVectorEnv docstring: Pendulum with g=9.81 and g=1.62."""
    env = fastsample.make_vec(ENV_ID, 1, g=9.81)
    obs, _ = env.reset(seed=42)
    np.testing.assert_allclose(obs[0], [-0.14995256, 0.9886932, -0.12224312], rtol=1e-6)
    env = fastsample.make_vec(ENV_ID, 1, g=1.62)
    obs, _ = env.reset(seed=43)
    np.testing.assert_allclose(obs[0], [0.5760367, 0.8174238, -0.91244936], rtol=1e-6)


# -- one step from injected states (platform independent) ----------------------------------


def _one_step_pairs(g, n=4000, seed=2024):
    rng = np.random.default_rng(seed)
    states = np.empty((2, n))
    states[0] = rng.uniform(-30.0, 30.0, n)  # theta is not wrapped in the state
    states[1] = rng.uniform(-10.0, 10.0, n)  # beyond +-8: reachable with y_init; clip()
    states[0, :50] = rng.choice([-np.pi, np.pi, 0.0, 3 * np.pi, -5 * np.pi], 50)  # modulo edges
    u = rng.uniform(-3.0, 3.0, (n, 1)).astype(np.float32)
    u[:100, 0] = rng.choice([-2.0, 2.0, 0.0, -0.0], 100)

    env = PendulumEnv(g=g)
    env.reset(seed=0)
    ref_state = np.empty_like(states)
    ref_obs = np.empty((n, 3), np.float32)
    ref_reward = np.empty(n)
    ref_last_u = np.empty(n, np.float32)
    for i in range(n):
        env.state = states[:, i].copy()
        obs, reward, term, trunc, info = env.step(u[i])
        assert not term and not trunc and info == {}
        ref_state[:, i] = env.state
        ref_obs[i] = obs
        ref_reward[i] = reward
        ref_last_u[i] = env.last_u

    state = np.vstack([states, np.full((1, n), np.nan)])
    obs = np.zeros((n, 3), np.float32)
    reward = np.zeros(n)
    term = np.ones(n, dtype=bool)
    KERNEL.step(np.ones(n, dtype=bool), u, state, rng_mod.new_streams(n), KERNEL.make_params(g=g), obs, reward, term)
    assert not term.any()
    return (ref_state, ref_obs, ref_reward, ref_last_u), (state[:2], obs, reward, state[2].astype(np.float32))


@pytest.fixture(scope="module", params=[10.0, 9.81])
def one_step_pairs(request):
    return _one_step_pairs(request.param)


def test_pendulum_one_step_from_injected_states(one_step_pairs):
    (ref_state, ref_obs, ref_reward, ref_last_u), (state, obs, reward, last_u) = one_step_pairs
    np.testing.assert_allclose(state, ref_state, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(obs, ref_obs, rtol=2.0**-23, atol=1e-12)  # <= 1 float32 ulp
    np.testing.assert_allclose(reward, ref_reward, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(last_u, ref_last_u)  # np.clip of a float32: exact anywhere
    # the sample covers the clipping branches
    assert np.sum(np.abs(ref_state[1]) == 8.0) > 100 and np.sum(np.abs(ref_last_u) == 2.0) > 300


@pytest.mark.platform_sensitive
def test_pendulum_one_step_from_injected_states_bit_identical(one_step_pairs):
    for name, ref, ours in zip(("state", "obs", "reward", "last_u"), *one_step_pairs):
        assert_same(ref, ours, name)


def test_angle_normalize_is_python_modulo():
    x = np.concatenate([
        np.random.default_rng(1).uniform(-1e3, 1e3, 20_000),
        np.arange(-20, 21) * np.pi,  # the remainder's zero and sign edges
        [np.nextafter(-np.pi, 0), np.nextafter(np.pi, 0), -1e-300, 1e-300, 0.0, -0.0],
    ])
    expected = np.array([angle_normalize(v) for v in x])
    got = np.array([pendulum._angle_normalize(v) for v in x])
    assert_same(expected, got, "angle_normalize")


# -- arguments --------------------------------------------------------------------------------


def test_pendulum_arguments_rejected_like_gymnasium():
    with pytest.raises(TypeError):
        fastsample.make_vec(ENV_ID, 2, gravity=9.8)
    with pytest.raises(TypeError):
        gym.make(ENV_ID, gravity=9.8)
    env = fastsample.make_vec(ENV_ID, 2)
    ref = gym.make(ENV_ID)
    for options, exc in [
        ({"x_init": "abc"}, ValueError),
        ({"y_init": None}, ValueError),
        ({"x_init": 1e308 * 10}, OverflowError),
        ({"y_init": float("nan")}, OverflowError),
        ({"x_init": 1e308}, OverflowError),  # high - low = 2e308
        ({"x_init": -1.0}, ValueError),  # high - low < 0
        ({"y_init": -0.0}, ValueError),  # ... as NumPy's signbit sees it
    ]:
        with pytest.raises(exc):
            with np.errstate(over="ignore"):
                ref.reset(options=options)
        with pytest.raises(exc):
            env.reset(options=options)
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(options={"low": 0.1})


def test_pendulum_render_state_includes_last_u():
    pytest.importorskip("pygame")
    ref = gym.make_vec(ENV_ID, 2, vectorization_mode="sync", render_mode="rgb_array")
    env = fastsample.make_vec(ENV_ID, 2, render_mode="rgb_array")
    ref.reset(seed=3)
    env.reset(seed=3)
    for f_ref, f in zip(ref.render(), env.render()):  # right after reset: last_u is None
        np.testing.assert_array_equal(f, f_ref)
    actions = np.array([[1.7], [-3.0]], dtype=np.float32)
    ref.step(actions)
    env.step(actions)
    for f_ref, f in zip(ref.render(), env.render()):  # the torque arrow, scaled by |last_u|
        np.testing.assert_array_equal(f, f_ref)
    ref.close()
    env.close()

