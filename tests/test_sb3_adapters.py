"""fastsample's Stable-Baselines3 adapters against SB3's own vec envs and PPO.

* ``wrap()`` over fastsample envs, in every autoreset mode and in- or out-of-process, steps like
  SB3's ``DummyVecEnv`` over gymnasium's envs with the same seeds and actions: observations,
  float32 rewards, dones, ``terminal_observation``, ``TimeLimit.truncated``, reset infos;
* ``ProcessVecEnv`` gives what ``SubprocVecEnv`` gives for the same ``env_fns`` (infos from
  ``Monitor`` included) and reaches the same env objects (get/set_attr, env_method,
  env_is_wrapped);
* SB3's PPO learns CartPole on ``wrap(fastsample.make_vec("CartPole-v1", 8))``.
"""

from __future__ import annotations

import functools

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("stable_baselines3", reason="stable-baselines3 is not installed (pip install 'fastsample[sb3]')")

from stable_baselines3.common.monitor import Monitor  # noqa: E402
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecMonitor  # noqa: E402

import fastsample  # noqa: E402
from fastsample.compat.sb3 import ProcessVecEnv, SB3VecEnv, wrap  # noqa: E402

N = 4
TIME_LIMIT = {"CartPole-v1": 16, "Pendulum-v1": 9}  # short: many truncations next to terminations


def _gym_env(env_id: str) -> gym.Env:
    return gym.make(env_id, max_episode_steps=TIME_LIMIT[env_id])


def _actions(space: gym.Space, rng: np.random.Generator) -> np.ndarray:
    if isinstance(space, gym.spaces.Discrete):
        return rng.integers(0, space.n, size=N)
    return rng.uniform(-2.0, 2.0, size=(N, *space.shape)).astype(np.float32)


def _assert_obs_close(a, b, what: str) -> None:
    # CartPole/Pendulum are bit-identical on x86 without SVML; a tolerance keeps this test about
    # the adapter, not the last bit (tests/test_*_align.py check bits)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7, err_msg=what)


def _assert_infos_match(ours: list[dict], ref: list[dict], dones: np.ndarray, t: int) -> None:
    assert isinstance(ours, list) and len(ours) == N
    assert len({id(d) for d in ours}) == N, "infos must be distinct dicts"
    for i in range(N):
        assert ours[i].get("TimeLimit.truncated", False) == ref[i]["TimeLimit.truncated"], (t, i)
        assert ("terminal_observation" in ours[i]) == bool(dones[i]) == ("terminal_observation" in ref[i]), (t, i)
        if dones[i]:
            assert isinstance(ours[i]["TimeLimit.truncated"], bool)
            _assert_obs_close(ours[i]["terminal_observation"], ref[i]["terminal_observation"], f"step {t} env {i}")
        else:
            assert set(ours[i]) <= {"TimeLimit.truncated"}, ours[i]


TARGETS = {
    "numba-SameStep": dict(autoreset_mode="SameStep"),
    "numba-NextStep": dict(autoreset_mode="NextStep"),
    "numba-Disabled": dict(autoreset_mode="Disabled"),
    "numba-NextStep-views": dict(autoreset_mode="NextStep", copy=False),
    "workers-SameStep": dict(autoreset_mode="SameStep", num_workers=2),
    "workers-NextStep": dict(autoreset_mode="NextStep", num_workers=2, copy=False),
}


@pytest.mark.parametrize("env_id", sorted(TIME_LIMIT))
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_wrap_steps_like_dummy_vec_env(env_id, target):
    ours = wrap(fastsample.make_vec(env_id, N, max_episode_steps=TIME_LIMIT[env_id], **TARGETS[target]))
    ref = DummyVecEnv([functools.partial(_gym_env, env_id) for _ in range(N)])
    try:
        assert isinstance(ours, VecEnv)
        assert ours.observation_space == ref.observation_space and ours.action_space == ref.action_space
        assert ours.seed(7) == ref.seed(7)
        obs, ref_obs = ours.reset(), ref.reset()
        _assert_obs_close(obs, ref_obs, "reset")
        assert ours.reset_infos == ref.reset_infos
        rng = np.random.default_rng(0)
        finished = 0
        for t in range(120):
            actions = _actions(ref.action_space, rng)
            obs, rewards, dones, infos = ours.step(actions)
            ref_obs, ref_rewards, ref_dones, ref_infos = ref.step(actions)
            _assert_obs_close(obs, ref_obs, f"step {t}")
            assert rewards.dtype == ref_rewards.dtype == np.float32
            np.testing.assert_allclose(rewards, ref_rewards, rtol=1e-6, atol=1e-6)
            assert dones.dtype == np.bool_ and np.array_equal(dones, ref_dones), t
            _assert_infos_match(infos, ref_infos, dones, t)
            assert ours.reset_infos == ref.reset_infos
            obs[:] = -9.0  # the caller owns what it got: writing must not reach the env
            finished += int(dones.sum())
        assert finished >= 20
    finally:
        ours.close()
        ref.close()


def test_wrap_reports_truncation_and_termination_separately():
    """CartPole with a time limit of 16: some episodes fall (terminated), some time out."""
    ours = wrap(fastsample.make_vec("CartPole-v1", 8, seed=3, max_episode_steps=16, autoreset_mode="SameStep"))
    ours.reset()
    seen = {True: 0, False: 0}
    rng = np.random.default_rng(1)
    for _ in range(200):
        _, _, dones, infos = ours.step(rng.integers(0, 2, 8))
        for i in np.flatnonzero(dones):
            seen[infos[i]["TimeLimit.truncated"]] += 1
    ours.close()
    assert seen[True] > 5 and seen[False] > 5, seen


def test_empty_infos_are_distinct_dicts_and_options_per_env():
    venv = wrap(fastsample.make_vec("CartPole-v1", N, seed=0))
    venv.reset()
    _, _, dones, infos = venv.step(np.zeros(N, dtype=np.int64))
    assert not dones.any() and infos == [{}] * N and len({id(i) for i in infos}) == N
    # per-env reset options: env 0 starts within +-0.001, the others in gymnasium's default range
    venv.set_options([{"low": -0.001, "high": 0.001}] + [{}] * (N - 1))
    obs = venv.reset()
    assert np.abs(obs[0]).max() <= 0.001 and np.abs(obs[1:]).max() > 0.001
    venv.set_options({"low": -0.002, "high": 0.002})
    assert np.abs(venv.reset()).max() <= 0.002
    assert np.abs(venv.reset()).max() > 0.002  # options are used once
    venv.close()


def test_kernels_have_vector_level_attributes():
    """Numba kernels have no per-env objects: attributes are the vector env's."""
    for kwargs in ({}, {"num_workers": 2}):
        venv = wrap(fastsample.make_vec("CartPole-v1", N, render_mode="rgb_array", **kwargs))
        assert venv.render_mode == "rgb_array"
        assert venv.get_attr("max_episode_steps") == [500] * N
        assert venv.get_attr("num_envs", indices=[0, -1]) == [N, N]
        assert venv.has_attr("kernel") and not venv.has_attr("no_such_attribute")
        with pytest.raises(AttributeError):
            venv.get_attr("no_such_attribute")
        assert venv.env_is_wrapped(Monitor) == [False] * N
        venv.set_attr("user_note", 5)
        assert venv.get_attr("user_note", indices=2) == [5]
        with pytest.raises(ValueError, match="all envs at once"):
            venv.set_attr("user_note", 6, indices=[0])
        venv.reset()
        images = venv.get_images()
        assert len(images) == N and images[0].ndim == 3
        assert venv.render().ndim == 3  # SB3 tiles the frames
        venv.close()
        assert venv.closed


def _monitored_cartpole(i: int) -> gym.Env:
    env = gym.make("CartPole-v1", max_episode_steps=12 + i)
    return Monitor(env) if i % 2 == 0 else env


@pytest.mark.parametrize("num_workers", [1, 2])
def test_process_vec_env_matches_subproc_vec_env(num_workers):
    n = 5
    env_fns = [functools.partial(_monitored_cartpole, i) for i in range(n)]
    ours = ProcessVecEnv(env_fns, num_workers=num_workers)
    ref = SubprocVecEnv(env_fns, start_method="fork")
    try:
        assert isinstance(ours, VecEnv) and ours.vector_env.num_workers == num_workers
        assert ours.env_is_wrapped(Monitor) == ref.env_is_wrapped(Monitor) == [True, False, True, False, True]
        assert ours.env_is_wrapped(Monitor, indices=[-1, 1]) == [True, False]
        assert ours.get_attr("spec") == ref.get_attr("spec")
        assert ours.get_attr("_max_episode_steps", indices=[4, 0]) == ref.get_attr("_max_episode_steps", indices=[4, 0])
        ours.set_attr("tag", "x", indices=[1, 3])
        ref.set_attr("tag", "x", indices=[1, 3])
        assert ours.has_attr("tag") is ref.has_attr("tag") is False  # not on every env
        assert ours.get_attr("tag", indices=[3, 1]) == ref.get_attr("tag", indices=[3, 1]) == ["x", "x"]
        assert ours.env_method("get_wrapper_attr", "tag", indices=[1]) == ["x"]
        ours.seed(11)
        ref.seed(11)
        np.testing.assert_array_equal(ours.reset(), ref.reset())
        seeds = ours.env_method("get_wrapper_attr", "np_random_seed")
        assert seeds == ref.env_method("get_wrapper_attr", "np_random_seed") == [11 + i for i in range(n)]
        rng = np.random.default_rng(2)
        episodes = 0
        for t in range(60):
            actions = rng.integers(0, 2, n)
            obs, rewards, dones, infos = ours.step(actions)
            ref_obs, ref_rewards, ref_dones, ref_infos = ref.step(actions)
            np.testing.assert_array_equal(obs, ref_obs)
            np.testing.assert_array_equal(rewards, ref_rewards.astype(np.float32))
            np.testing.assert_array_equal(dones, ref_dones)
            for i in range(n):
                assert infos[i].get("TimeLimit.truncated", False) == ref_infos[i]["TimeLimit.truncated"]
                if dones[i]:
                    last, ref_last = infos[i]["terminal_observation"], ref_infos[i]["terminal_observation"]
                    np.testing.assert_array_equal(last, ref_last)
                assert ("episode" in infos[i]) == ("episode" in ref_infos[i]), (t, i)  # Monitor's final-step info
                if "episode" in infos[i]:
                    episodes += 1
                    assert infos[i]["episode"]["r"] == ref_infos[i]["episode"]["r"]
                    assert infos[i]["episode"]["l"] == ref_infos[i]["episode"]["l"]
        assert episodes >= 5
    finally:
        ours.close()
        ref.close()


def _max_steps(env: gym.Env) -> int:
    return env.spec.max_episode_steps


def _missing_attribute(env: gym.Env):
    return env.get_wrapper_attr("no_such_attribute")


def test_process_vector_env_call_envs():
    """The engine method behind ProcessVecEnv's per-env access: order, duplicates, negative
    indices, only the owning workers, clear errors."""
    venv = fastsample.ProcessVectorEnv([functools.partial(_monitored_cartpole, i) for i in range(5)], num_workers=2)
    try:
        assert venv.call_envs(_max_steps) == (12, 13, 14, 15, 16)
        assert venv.call_envs(_max_steps, indices=[4, 0, -1, 2, 2]) == (16, 12, 16, 14, 14)
        assert venv.call_envs(_max_steps, indices=[]) == ()
        with pytest.raises(IndexError):
            venv.call_envs(_max_steps, indices=[5])
        with pytest.raises(AttributeError):  # raised in the worker, re-raised here as its class
            venv.call_envs(_missing_attribute, indices=[0, 4])
        assert venv.call_envs(_max_steps, indices=[1]) == (13,)  # still usable
    finally:
        venv.close()
    kernels = fastsample.make_vec("CartPole-v1", 4, num_workers=2)
    try:
        with pytest.raises(TypeError, match="per-env objects"):
            kernels.call_envs(_max_steps)
    finally:
        kernels.close()


def _rendering_cartpole() -> gym.Env:
    return gym.make("CartPole-v1", render_mode="rgb_array")


def test_process_vec_env_renders_full_size_frames():
    """Frames (400x600x3, far over a pipe's buffer) come back from the workers."""
    venv = ProcessVecEnv([_rendering_cartpole] * 3, num_workers=2)
    try:
        assert venv.render_mode == "rgb_array"
        venv.reset()
        images = venv.get_images()
        assert [img.shape for img in images] == [(400, 600, 3)] * 3
        assert venv.render(mode="rgb_array").shape == (800, 1200, 3)  # SB3 tiles them 2x2
    finally:
        venv.close()


def test_vec_monitor_and_evaluate_policy_on_kernels():
    from stable_baselines3 import PPO
    from stable_baselines3.common.evaluation import evaluate_policy

    venv = VecMonitor(wrap(fastsample.make_vec("CartPole-v1", N, seed=0)))
    venv.reset()
    lengths = np.zeros(N, dtype=int)
    rng = np.random.default_rng(3)
    seen = 0
    for _ in range(200):
        _, _, dones, infos = venv.step(rng.integers(0, 2, N))
        lengths += 1
        for i in np.flatnonzero(dones):
            assert infos[i]["episode"]["l"] == lengths[i]
            lengths[i] = 0
            seen += 1
    assert seen > 10
    model = PPO("MlpPolicy", venv, n_steps=16, seed=0, device="cpu")
    mean, _ = evaluate_policy(model, venv, n_eval_episodes=4, warn=False)
    assert mean > 0
    venv.close()


def test_ppo_learns_cartpole():
    """SB3's PPO on ``wrap(make_vec("CartPole-v1", 8))``: ~32k steps (10-20 s on 2 busy cores)
    take training episodes from ~22 steps (random play) to ~200 (> 100 asserted) and the
    deterministic policy to the 500-step cap (>= 150 asserted)."""
    torch = pytest.importorskip("torch")
    from stable_baselines3 import PPO
    from stable_baselines3.common.evaluation import evaluate_policy

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        venv = VecMonitor(wrap(fastsample.make_vec("CartPole-v1", 8, seed=0)))
        model = PPO("MlpPolicy", venv, n_steps=128, batch_size=256, n_epochs=10, gamma=0.98, gae_lambda=0.8,
                    learning_rate=1e-3, seed=0, device="cpu")
        eval_env = wrap(fastsample.make_vec("CartPole-v1", 4, seed=1000))
        model.learn(total_timesteps=32_768)
        after, _ = evaluate_policy(model, eval_env, n_eval_episodes=8, deterministic=True, warn=False)
        train_lengths = [ep["l"] for ep in model.ep_info_buffer]
        venv.close()
        eval_env.close()
    finally:
        torch.set_num_threads(threads)
    print(f"PPO CartPole: mean training episode length {np.mean(train_lengths):.0f}, evaluation return {after:.0f}")
    assert np.mean(train_lengths) > 100, np.mean(train_lengths)  # random play: ~22
    assert after >= 150, after


def test_wrap_rejects_non_vector_envs():
    with pytest.raises(TypeError, match="VectorEnv"):
        wrap(gym.make("CartPole-v1"))
    assert issubclass(ProcessVecEnv, SB3VecEnv)


def test_core_does_not_import_integrations():
    import subprocess
    import sys

    code = ("import sys, fastsample, fastsample.compat; "
            "bad = [m for m in ('stable_baselines3', 'torchrl') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
