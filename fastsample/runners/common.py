"""Pieces both runners share: observation/reward normalisation, greedy evaluation on a separate
batched env, snapshots of an in-process env's state, device and backend choice, Adam state in
the checkpoint's form. Env construction lives in :mod:`fastsample.sampling.envs` and the model's in
:mod:`fastsample.learning.ppo` (re-exported here)."""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from fastsample.learning.ppo import ActorCritic, RunningMeanStd, make_model
from fastsample.sampling.envs import (check_spaces, make_train_env, resolve_env, spaces_of,
                                      target_return_for)
from fastsample.train_config import ConfigError, TrainConfig

__all__ = ["resolve_env", "spaces_of", "check_spaces", "make_train_env", "make_model", "Normalizer", "Evaluator", "resolve_device",
           "resolve_backend", "env_snapshot", "env_restore", "target_return_for", "adam_state", "load_adam_state"]


def tune_malloc() -> bool:
    """Keep freed memory in the process heap instead of returning it to the OS (glibc only).

    The update allocates many 1-4 MB tensors per minibatch; by default glibc serves and frees
    them with mmap/munmap or trims the heap, so every one page-faults again on first touch.
    Measured on the large-batch CartPole config (2 cores): learner 206k -> 231k transitions/s.
    Returns whether the settings were applied."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    ok = mallopt(m_mmap_threshold, 32 << 20)  # the largest glibc accepts
    ok &= mallopt(m_trim_threshold, 1 << 30)
    ok &= mallopt(m_top_pad, 64 << 20)
    return bool(ok)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda: CUDA is not available (use --device cpu or auto)")
    return torch.device(name)


def resolve_backend(cfg: TrainConfig, device: torch.device) -> str:
    """The learner backend that runs: ``torch`` or ``compiled``. ``auto`` is compiled where it
    runs (the MLP policy on the CPU with ``--mode sync``; tests/test_train_backends.py checks that
    it solves CartPole) and torch elsewhere (GPU, ``--mode async``)."""
    if cfg.backend == "compiled":
        if device.type != "cpu":
            raise ConfigError(f"--backend compiled runs on the CPU, not on {device} (pass --device cpu)")
        if cfg.mode != "sync":
            raise ConfigError("--backend compiled runs with --mode sync")
        return "compiled"
    if cfg.backend == "auto" and device.type == "cpu" and cfg.mode == "sync":
        return "compiled"
    return "torch"


def adam_state(optimizer: torch.optim.Optimizer, flat: torch.Tensor) -> dict[str, Any]:
    """A torch Adam's state over the one flat parameter, in the checkpoint's backend-neutral
    form: ``{"step": int, "lr": float, "exp_avg": float32 array, "exp_avg_sq": float32 array}``
    (the compiled learner writes the same)."""
    st = optimizer.state.get(flat, {})
    n = flat.numel()
    if "exp_avg" in st:
        exp_avg, exp_avg_sq = st["exp_avg"].detach().cpu().numpy().copy(), st["exp_avg_sq"].detach().cpu().numpy().copy()
        step = int(float(st["step"]))
    else:
        exp_avg, exp_avg_sq, step = np.zeros(n, np.float32), np.zeros(n, np.float32), 0
    return {"step": step, "lr": float(optimizer.param_groups[0]["lr"]), "exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}


def load_adam_state(optimizer: torch.optim.Optimizer, flat: torch.Tensor, d: dict[str, Any]) -> None:
    """Restore :func:`adam_state` (through ``optimizer.load_state_dict``, as torch would)."""
    sd = optimizer.state_dict()
    n = flat.numel()
    exp_avg, exp_avg_sq = np.asarray(d["exp_avg"], np.float32), np.asarray(d["exp_avg_sq"], np.float32)
    if exp_avg.shape != (n,) or exp_avg_sq.shape != (n,):
        raise ConfigError(f"checkpoint: Adam state of {exp_avg.shape} values, the model has {n} parameters")
    step = int(d["step"])
    sd["state"] = {} if step == 0 else {sd["param_groups"][0]["params"][0]: {
        "step": torch.tensor(float(step), dtype=torch.float32), "exp_avg": torch.from_numpy(exp_avg.copy()),
        "exp_avg_sq": torch.from_numpy(exp_avg_sq.copy())}}
    sd["param_groups"][0]["lr"] = float(d["lr"])
    optimizer.load_state_dict(sd)


class Normalizer:
    """Observation and reward normalisation (running statistics, updated by the runner).

    Observations: ``clip((obs - mean) / sqrt(var + 1e-8), -clip, clip)``; rewards are divided by
    the running std of the discounted return (as gymnasium's ``NormalizeReward``)."""

    def __init__(self, obs_shape: tuple[int, ...], num_envs: int, cfg: TrainConfig):
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


class Evaluator:
    """Greedy evaluation: ``episodes`` episodes in parallel on one batched env (a fastsample
    kernel when there is one), each evaluation on fresh seeds derived from ``seed``."""

    def __init__(self, env_id: str, episodes: int, seed: int, render: bool = False):
        import fastsample

        _, kernel = resolve_env(env_id)
        self.episodes = episodes
        self.seed = seed
        self.count = 0
        mode = "rgb_array" if render else None
        if kernel is not None:
            self.env = fastsample.make_vec(kernel, episodes, autoreset_mode="NextStep", copy=False, render_mode=mode)
        else:
            self.env = gym.make_vec(env_id, episodes, vectorization_mode="sync", render_mode=mode)
        self.action_space = self.env.single_action_space

    def run(self, model: ActorCritic, normalizer: Normalizer, device: torch.device,
            frames: list | None = None, target: float = math.inf, max_step_reward: float = math.nan
            ) -> np.ndarray:
        """Returns of ``episodes`` greedy episodes (``frames`` collects env 0's rendered frames).

        With a finite ``target`` and ``max_step_reward`` (an upper bound on one step's reward)
        the evaluation stops as soon as the mean return can no longer reach ``target``; the
        unfinished episodes then report their return so far (the result is below ``target``)."""
        env = self.env
        obs, _ = env.reset(seed=self.seed + self.count * self.episodes)
        self.count += 1
        n = self.episodes
        returns = np.zeros(n, np.float64)
        done = np.zeros(n, bool)
        box = isinstance(self.action_space, gym.spaces.Box)
        limit = getattr(env, "max_episode_steps", None) or getattr(getattr(env, "spec", None), "max_episode_steps", None)
        can_stop = math.isfinite(target) and math.isfinite(max_step_reward) and limit
        t = 0
        while not done.all():
            if frames is not None and not done[0]:
                frames.append(env.render()[0])
            with torch.no_grad():
                x = torch.from_numpy(normalizer.apply_obs(obs).reshape(n, -1)).to(device)
                action = model.greedy(x)
            a = action.cpu().numpy()
            if box:
                a = np.clip(a.reshape((n, *self.action_space.shape)), self.action_space.low, self.action_space.high)
            obs, rew, term, trunc, _ = env.step(a)
            returns += np.where(done, 0.0, rew)
            done |= term | trunc
            t += 1
            if can_stop and t % 8 == 0:
                best = returns.sum() + (~done).sum() * max(limit - t, 0) * max_step_reward
                if best < target * n:
                    break
        return returns

    def close(self) -> None:
        self.env.close()


_SNAPSHOT_FIELDS = ("_state", "_rng", "_seeded", "_obs", "_rewards", "_terminated", "_truncated", "_elapsed",
                    "_pending")


def env_snapshot(env: Any) -> dict | None:
    """The complete state of an in-process fastsample env (None for other envs)."""
    from fastsample.vector_env import NumbaVectorEnv

    if not isinstance(env, NumbaVectorEnv):
        return None
    snap = {name: getattr(env, name).copy() for name in _SNAPSHOT_FIELDS}
    snap["_has_reset"] = env._has_reset
    return snap


def env_restore(env: Any, snap: dict | None) -> bool:
    """Restore :func:`env_snapshot` into ``env`` in place (the runner keeps views of its buffers)."""
    from fastsample.vector_env import NumbaVectorEnv

    if snap is None or not isinstance(env, NumbaVectorEnv):
        return False
    for name in _SNAPSHOT_FIELDS:
        dst = getattr(env, name)
        if dst.shape != snap[name].shape:
            return False
    for name in _SNAPSHOT_FIELDS:
        getattr(env, name)[...] = snap[name]
    env._has_reset = snap["_has_reset"]
    return True
