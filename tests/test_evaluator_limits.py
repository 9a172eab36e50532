"""The trainer's greedy evaluation ends even when its episodes would not: envs without a time
limit are capped at ``Evaluator.STEP_CAP`` steps, and a stop signal ends an evaluation early."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from fastsample.learning.normalize import Normalizer
from fastsample.runners.common import Evaluator
from fastsample.train_config import make_config


class _Endless(gym.Env):
    """One reward per step, never terminates, no time limit."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, render_mode=None):
        self.render_mode = render_mode
        self.steps = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.steps += 1
        return np.zeros(2, np.float32), 1.0, False, False, {}


@pytest.fixture
def endless():
    gym.register("fastsample-test/Endless-v0", entry_point=_Endless, max_episode_steps=None)
    yield "fastsample-test/Endless-v0"
    gym.registry.pop("fastsample-test/Endless-v0", None)


def _greedy(x):
    return np.zeros(x.shape[0], np.int64)


def test_episodes_without_a_time_limit_are_capped(endless, monkeypatch):
    monkeypatch.setattr(Evaluator, "STEP_CAP", 300)
    ev = Evaluator(endless, episodes=3, seed=0)
    try:
        norm = Normalizer((2,), 3, make_config("CartPole-v1", norm_obs=False))
        returns = ev.run(_greedy, norm)
    finally:
        ev.close()
    assert returns.tolist() == [300.0, 300.0, 300.0]  # each episode's return so far


def test_a_stop_request_ends_an_evaluation(endless):
    calls = []

    def should_stop():
        calls.append(1)
        return True

    ev = Evaluator(endless, episodes=2, seed=0)
    try:
        norm = Normalizer((2,), 2, make_config("CartPole-v1", norm_obs=False))
        returns = ev.run(_greedy, norm, should_stop=should_stop)
    finally:
        ev.close()
    assert calls and returns.tolist() == [64.0, 64.0]
