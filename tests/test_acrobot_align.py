"""Acrobot-v1: fastsample equals gymnasium's SyncVectorEnv bit for bit, and one step from
injected states agrees with gymnasium's ``AcrobotEnv`` to ``rtol=1e-12`` on any platform."""


import gymnasium as gym
import numpy as np

from envs_numba import rng as rng_mod
import pytest
from gymnasium.envs.classic_control.acrobot import AcrobotEnv

import fastsample
from envs_numba.classic_control import acrobot
from tests import support
from tests.support import MODES, assert_same, run_side_by_side

ENV_ID = "Acrobot-v1"
KERNEL = acrobot.KERNEL


def held_actions(num_envs: int, seed: int, hold: int = 4):
    """Open-loop sampler: mostly full torque (-1 or +1), each choice held for ``hold`` steps.

    Uniformly random actions almost never swing the acrobot up (about 1 termination in
    30,000 steps); held bang-bang torque terminates an episode every ~500 steps, so the
    terminal test and its reward take both branches often. Torque 0 is kept in the mix.
    """
    rng = np.random.default_rng(seed)
    state = {"t": 0, "a": np.zeros(num_envs, dtype=np.int64)}

    def sample():
        if state["t"] % hold == 0:
            state["a"] = rng.choice(3, size=num_envs, p=[0.45, 0.1, 0.45]).astype(np.int64)
        state["t"] += 1
        return state["a"].copy()

    return sample


class Terminations:
    """Counts the terminations our env reports inside ``run_side_by_side`` (which asserts
    them equal to gymnasium's every step) by wrapping ``fastsample.make_vec``; ``obs`` is the
    last observation our env returned (equal to gymnasium's, asserted at every call)."""

    def __init__(self, monkeypatch):
        self.count = 0
        self.obs = None
        real_make_vec = fastsample.make_vec

        def make_vec(*args, **kwargs):
            env = real_make_vec(*args, **kwargs)
            real_step, real_reset = env.step, env.reset

            def step(actions):
                out = real_step(actions)
                self.count += int(out[2].sum())
                self.obs = out[0].copy()
                return out

            def reset(*a, **k):
                out = real_reset(*a, **k)
                self.obs = out[0].copy()
                return out

            env.step, env.reset = step, reset
            return env

        monkeypatch.setattr(support.fastsample, "make_vec", make_vec)


def pumping_actions(terms: Terminations, num_envs: int, seed: int):
    """Closed loop on the last observation: full torque along the second joint's velocity pumps
    energy in and swings the tip up within ~100 steps; each env takes a random action with
    probability 0.2 (torque 0 among them)."""
    rng = np.random.default_rng(seed)

    def sample():
        actions = np.where(terms.obs[:, 5] > 0, 2, 0).astype(np.int64)
        rand = rng.random(num_envs) < 0.2
        actions[rand] = rng.integers(0, 3, int(rand.sum()))
        return actions

    return sample


@pytest.mark.platform_sensitive
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("num_envs", [1, 7])
def test_acrobot_bit_identical(num_envs, mode, monkeypatch):
    """Long runs at gymnasium's own 500-step limit."""
    terms = Terminations(monkeypatch)
    counts = run_side_by_side(
        ENV_ID, num_envs, mode, steps=10_000, seed=123, sample_actions=held_actions(num_envs, seed=num_envs)
    )
    assert counts["finished"] >= 10 * num_envs  # many autoresets happened (partial resets cut some)
    assert terms.count >= 5 * num_envs  # ... many of them after reaching the goal
    assert counts["finished"] > terms.count  # ... and many after the 500-step limit


@pytest.mark.platform_sensitive
@pytest.mark.parametrize("mode", MODES)
def test_acrobot_bit_identical_33_envs(mode, monkeypatch):
    """33 envs: one past a 32-env vector boundary (a full vector and a partial tail). Episodes
    end often -- a 100-step limit on both sides and energy-pumping actions -- so 1,500 steps give
    as many autoresets (each with its float32 reset observation) as 10,000 steps at 500 would,
    at a fraction of gymnasium's Python RK4 time (the codegen matrix runs 64 and 257)."""
    terms = Terminations(monkeypatch)
    counts = run_side_by_side(ENV_ID, 33, mode, steps=1_500, seed=123, max_episode_steps=100,
                              sample_actions=pumping_actions(terms, 33, seed=33))
    assert counts["finished"] >= 10 * 33  # many autoresets happened (partial resets cut some)
    assert terms.count >= 5 * 33  # ... many of them after reaching the goal
    assert counts["finished"] - terms.count >= 5 * 33  # ... and many after the 100-step limit


@pytest.mark.platform_sensitive
def test_acrobot_bit_identical_random_actions():
    counts = run_side_by_side(ENV_ID, 16, "NextStep", steps=2_000, seed=9)
    assert counts["finished"] >= 16


@pytest.mark.platform_sensitive
@pytest.mark.parametrize(
    "options", [{"low": -0.5, "high": 0.5}, {"low": 0.05}, {"high": -0.05}, {"low": -3.0, "high": 3.0}]
)
def test_acrobot_reset_bounds(options, monkeypatch):
    # options apply to the first reset only (autoresets use the defaults, as in gymnasium)
    terms = Terminations(monkeypatch)
    counts = run_side_by_side(
        ENV_ID, 6, "SameStep", steps=1_500, seed=7, reset_options=options, sample_actions=held_actions(6, seed=1)
    )
    assert counts["finished"] >= 6 and terms.count > 0


@pytest.mark.platform_sensitive
@pytest.mark.filterwarnings("ignore:.*not within the observation space")
@pytest.mark.parametrize("low, high", [(-0.1, 0.1), (-4.0, 4.0), (-100.0, 100.0)])
def test_acrobot_reset_observations(low, high):
    """The reset observation is NumPy's float32 cos/sin of the float32 state: many resets."""
    ref = gym.make_vec(ENV_ID, 37, vectorization_mode="sync")
    ours = fastsample.make_vec(ENV_ID, 37)
    for k in range(150):
        options = {"low": low, "high": high}
        seed = k if k % 2 == 0 else None  # seeded, then continuing streams
        assert_same(ref.reset(seed=seed, options=options)[0], ours.reset(seed=seed, options=options)[0], f"reset {k}")
        mask = np.arange(37) % 3 == k % 3
        options["reset_mask"] = mask
        assert_same(ref.reset(options=dict(options))[0], ours.reset(options=dict(options))[0], f"masked reset {k}")


@pytest.mark.platform_sensitive
def test_numpy_float32_trig_array_path_equals_scalar_path():
    """``fix_reset_obs`` relies on it: gymnasium takes cos/sin of ``np.float32`` scalars."""
    rng = np.random.default_rng(0)
    for scale in (0.1, 4.0, 1e3, 1e6):
        x = (rng.uniform(-scale, scale, 20_000)).astype(np.float32)
        state = np.zeros((4, x.size // 2))
        state[:2] = x.reshape(2, -1)
        obs = np.zeros((x.size // 2, 6), np.float32)
        acrobot.fix_reset_obs(state, obs, np.ones(x.size // 2, dtype=bool))
        np.testing.assert_array_equal(obs[:, 0], [np.cos(v) for v in x[: x.size // 2]])
        np.testing.assert_array_equal(obs[:, 1], [np.sin(v) for v in x[: x.size // 2]])
        np.testing.assert_array_equal(obs[:, 2], [np.cos(v) for v in x[x.size // 2 :]])
        np.testing.assert_array_equal(obs[:, 3], [np.sin(v) for v in x[x.size // 2 :]])


# -- one step from injected states (platform independent) ----------------------------------


def _one_step_pairs(n=5000, seed=2024):
    """Random states (a quarter float32 arrays, as right after a reset) stepped once by
    gymnasium's ``AcrobotEnv`` and by the kernel."""
    rng = np.random.default_rng(seed)
    states = np.empty((4, n))
    states[0] = rng.uniform(-1.2 * np.pi, 1.2 * np.pi, n)  # a few outside [-pi, pi]
    states[1] = rng.uniform(-1.2 * np.pi, 1.2 * np.pi, n)
    states[2] = rng.uniform(-1.3 * acrobot.MAX_VEL_1, 1.3 * acrobot.MAX_VEL_1, n)  # bound() clips
    states[3] = rng.uniform(-1.3 * acrobot.MAX_VEL_2, 1.3 * acrobot.MAX_VEL_2, n)
    n32 = n // 4
    states[:, :n32] = states[:, :n32].astype(np.float32)
    actions = rng.integers(0, 3, n)

    env = AcrobotEnv()
    env.reset(seed=0)
    ref_state = np.empty_like(states)
    ref_obs = np.empty((n, 6), np.float32)
    ref_reward = np.empty(n)
    ref_term = np.empty(n, dtype=bool)
    for i in range(n):
        env.state = states[:, i].astype(np.float32 if i < n32 else np.float64)
        obs, reward, term, trunc, info = env.step(int(actions[i]))
        assert env.state.dtype == np.float64 and not trunc and info == {}
        ref_state[:, i] = env.state
        ref_obs[i] = obs
        ref_reward[i] = reward
        ref_term[i] = term

    state = states.copy()
    obs = np.zeros((n, 6), np.float32)
    reward = np.zeros(n)
    term = np.zeros(n, dtype=bool)
    KERNEL.step(np.ones(n, dtype=bool), actions, state, rng_mod.new_streams(n), KERNEL.make_params(), obs, reward, term)
    return (ref_state, ref_obs, ref_reward, ref_term), (state, obs, reward, term)


@pytest.fixture(scope="module")
def one_step_pairs():
    return _one_step_pairs()


def test_acrobot_one_step_from_injected_states(one_step_pairs):
    (ref_state, ref_obs, ref_reward, ref_term), (state, obs, reward, term) = one_step_pairs
    # angles: compare modulo 2 pi (a value next to +-pi may wrap to the other side)
    dtheta = np.abs((state[:2] - ref_state[:2] + np.pi) % (2 * np.pi) - np.pi)
    assert np.all(dtheta <= 1e-12 * (1.0 + np.abs(ref_state[:2]))), dtheta.max()
    assert np.all(np.abs(state[:2]) <= np.pi)
    np.testing.assert_allclose(state[2:], ref_state[2:], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(obs, ref_obs, rtol=2.0**-23, atol=1e-12)  # <= 1 float32 ulp
    # termination: equal wherever the state is not within rounding of the target line
    height = -np.cos(ref_state[0]) - np.cos(ref_state[1] + ref_state[0])
    clear = np.abs(height - 1.0) > 1e-9
    np.testing.assert_array_equal(term[clear], ref_term[clear])
    np.testing.assert_array_equal(reward, np.where(term, 0.0, -1.0))
    np.testing.assert_array_equal(reward[clear], ref_reward[clear])
    # the sample covers every branch
    assert ref_term.sum() > 100 and (~ref_term).sum() > 100
    for k, limit in ((2, acrobot.MAX_VEL_1), (3, acrobot.MAX_VEL_2)):
        assert np.sum(ref_state[k] == limit) > 10 and np.sum(ref_state[k] == -limit) > 10


@pytest.mark.platform_sensitive
def test_acrobot_one_step_from_injected_states_bit_identical(one_step_pairs):
    for name, ref, ours in zip(("state", "obs", "reward", "terminated"), *one_step_pairs):
        assert_same(ref, ours, name)


@pytest.mark.platform_sensitive
def test_acrobot_rates_follow_libm_pow():
    """``dtheta**2`` and ``d2**2`` are libm's pow(x, 2.0), which is not always x*x: on
    velocities where the two differ, the rates equal gymnasium's ``_dsdt`` exactly."""
    rng = np.random.default_rng(5)
    x = rng.uniform(-4 * np.pi, 4 * np.pi, 20_000)
    differ = x[np.array([np.float64(v) ** 2 != v * v for v in x])]
    assert differ.size > 0  # (a libm whose pow(x, 2) is always x*x would make this moot)
    env = AcrobotEnv()
    for k, v in enumerate(differ):
        th1, th2, a = (0.3, -0.7, 1.0) if k % 2 else (-2.0, 2.5, -1.0)
        for dth1, dth2 in ((v, -v / 3), (v / 3, v)):
            expected = np.asarray(env._dsdt(np.array([th1, th2, dth1, dth2, a])))[:4]
            got = np.array(acrobot._dsdt(a, th1, th2, dth1, dth2))
            assert_same(expected, got, f"_dsdt at dtheta=({dth1!r}, {dth2!r})")


# -- arguments --------------------------------------------------------------------------------


def test_acrobot_arguments_rejected_like_gymnasium():
    with pytest.raises(TypeError):
        fastsample.make_vec(ENV_ID, 2, g=9.8)
    with pytest.raises(TypeError):
        gym.make(ENV_ID, g=9.8)
    env = fastsample.make_vec(ENV_ID, 2)
    ref = gym.make(ENV_ID)
    for options, exc in [
        ({"low": 0.1, "high": -0.1}, ValueError),
        ({"low": "abc"}, ValueError),
        ({"low": -1e308, "high": 1e308}, OverflowError),
        ({"high": float("inf")}, OverflowError),
        ({"low": float("nan")}, OverflowError),
        ({"low": 0.0, "high": -0.0}, ValueError),  # NumPy: high - low < 0
    ]:
        with pytest.raises(exc):
            ref.reset(options=options)
        with pytest.raises(exc):
            env.reset(options=options)
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(options={"x_init": 0.1})


def test_acrobot_wrap_does_not_hang_where_gymnasium_would():
    # |theta| so large that theta - 2 pi == theta: gymnasium's wrap() would loop forever
    state = np.array([[1e300, 1e17], [-1e20, 0.5], [0.0, 0.0], [0.0, 0.0]])
    obs = np.zeros((2, 6), np.float32)
    params = KERNEL.make_params()
    KERNEL.step(np.ones(2, bool), np.ones(2, np.int64), state, rng_mod.new_streams(2), params, obs, np.zeros(2), np.zeros(2, bool))
    assert np.all(np.isfinite(state)) and state[0, 0] > np.pi and state[1, 0] < -np.pi

