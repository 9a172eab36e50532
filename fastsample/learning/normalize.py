"""Observation and reward normalisation on NumPy (no torch): the running statistics a runner
updates from its rollouts and applies before the learner sees a batch.

Distributed training (DD-PPO) needs the statistics reduced across ranks so that every replica
normalises alike: set :attr:`RunningMeanStd.moments_hook` to a function that takes a batch's
``(count, mean, var)`` and returns them reduced over every rank's batch (an all-reduce of
``count``, ``count * mean`` and ``count * (var + mean**2)``); the update then uses the global
moments. ``None`` (the default) is a single process."""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["RunningMeanStd", "Normalizer"]

MomentsHook = Callable[[float, np.ndarray, np.ndarray], "tuple[float, np.ndarray, np.ndarray]"]


class RunningMeanStd:
    """Running mean and variance over batches (parallel Welford), float64, on numpy."""

    def __init__(self, shape: tuple[int, ...] = ()):
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = 1e-4
        self.moments_hook: MomentsHook | None = None  # DD-PPO: reduce a batch's moments across ranks

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        b_mean, b_var, b_count = x.mean(0), x.var(0), x.shape[0]
        if self.moments_hook is not None:
            b_count, b_mean, b_var = self.moments_hook(b_count, b_mean, b_var)
        delta = b_mean - self.mean
        total = self.count + b_count
        self.mean = self.mean + delta * b_count / total
        m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / total
        self.var = m2 / total
        self.count = total

    def state_dict(self) -> dict:
        return {"mean": self.mean.copy(), "var": self.var.copy(), "count": self.count}

    def load_state_dict(self, d: dict) -> None:
        self.mean, self.var, self.count = np.array(d["mean"]), np.array(d["var"]), float(d["count"])


class Normalizer:
    """Observation and reward normalisation (running statistics, updated by the runner).

    Observations: ``clip((obs - mean) / sqrt(var + 1e-8), -clip, clip)``; rewards are divided by
    the running std of the discounted return (as gymnasium's ``NormalizeReward``)."""

    def __init__(self, obs_shape: tuple[int, ...], num_envs: int, cfg):
        self.norm_obs, self.norm_reward = cfg.norm_obs, cfg.norm_reward
        self.clip, self.gamma = cfg.clip_obs, cfg.gamma
        self.obs_rms = RunningMeanStd(obs_shape)
        self.ret_rms = RunningMeanStd(())
        self.returns = np.zeros(num_envs, np.float64)

    def obs(self, obs: np.ndarray, update: bool = True) -> np.ndarray:
        if not self.norm_obs:
            return obs if obs.dtype == np.float32 else obs.astype(np.float32)
        if update:
            self.obs_rms.update(obs)
        return self.apply_obs(obs)

    def apply_obs(self, obs: np.ndarray) -> np.ndarray:
        if not self.norm_obs:
            return obs if obs.dtype == np.float32 else obs.astype(np.float32)
        out = (obs - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + 1e-8)
        return np.clip(out, -self.clip, self.clip).astype(np.float32)

    def reward(self, rewards: np.ndarray, dones: np.ndarray, envs: slice = slice(None)) -> np.ndarray:
        """Normalised ``rewards`` of the envs ``envs`` (all by default)."""
        if not self.norm_reward:
            return rewards
        returns = self.returns[envs] * self.gamma + rewards
        self.ret_rms.update(returns)
        returns[dones] = 0.0
        self.returns[envs] = returns
        return rewards / np.sqrt(self.ret_rms.var + 1e-8)

    def state_dict(self) -> dict:
        return {"obs_rms": self.obs_rms.state_dict(), "ret_rms": self.ret_rms.state_dict(),
                "returns": self.returns.copy()}

    def load_state_dict(self, d: dict) -> None:
        self.obs_rms.load_state_dict(d["obs_rms"])
        self.ret_rms.load_state_dict(d["ret_rms"])
        if len(d["returns"]) == len(self.returns):
            self.returns = np.array(d["returns"])
