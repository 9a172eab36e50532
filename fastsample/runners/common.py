"""Pieces both runners share: greedy evaluation on a separate batched env, snapshots of an
in-process env's state, malloc tuning. Imports no torch.

Env construction lives in :mod:`fastsample.sampling.envs`, normalisation in
:mod:`fastsample.learning.normalize`, the device and backend choice in
:mod:`fastsample.learning.learner` and the models in :mod:`fastsample.learning` (some re-exported
here; ``make_model``, ``adam_state`` and ``load_adam_state`` lazily, since they import torch)."""

from __future__ import annotations

import math
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from fastsample.learning.learner import resolve_backend, resolve_device
from fastsample.learning.normalize import Normalizer
from fastsample.sampling.envs import (check_spaces, make_train_env, resolve_env, spaces_of,
                                      target_return_for)

__all__ = ["resolve_env", "spaces_of", "check_spaces", "make_train_env", "Normalizer", "Evaluator", "resolve_device",
           "resolve_backend", "env_snapshot", "env_restore", "target_return_for", "tune_malloc"]


def __getattr__(name: str):  # the torch-side helpers, imported on first use only
    if name == "make_model":
        from fastsample.learning.ppo import make_model

        return make_model
    if name in ("adam_state", "load_adam_state"):
        from fastsample.learning import torch_backend

        return getattr(torch_backend, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


class Evaluator:
    """Greedy evaluation: ``episodes`` episodes in parallel on one batched env (a fastsample
    kernel when there is one), each evaluation on fresh seeds derived from ``seed``.

    An env without a time limit (MinAtar) is evaluated for at most :attr:`STEP_CAP` steps: a good
    greedy policy can keep such an episode going for ever. Episodes still running then report
    their return so far."""

    STEP_CAP = 27_000  # the usual cap of an Atari evaluation episode (108k frames at frame skip 4)

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

    def run(self, greedy: Callable[[np.ndarray], np.ndarray], normalizer: Normalizer,
            frames: list | None = None, target: float = math.inf, max_step_reward: float = math.nan,
            should_stop: Callable[[], bool] | None = None) -> np.ndarray:
        """Returns of ``episodes`` greedy episodes (``frames`` collects env 0's rendered frames).
        ``greedy`` maps normalised observations (n, obs_dim) float32 to actions (a learner's
        ``greedy``).

        With a finite ``target`` and ``max_step_reward`` (an upper bound on one step's reward)
        the evaluation stops as soon as the mean return can no longer reach ``target``; the
        unfinished episodes then report their return so far (the result is below ``target``).
        ``should_stop()`` (checked every 64 steps) ends the evaluation early the same way: a stop
        signal is not kept waiting by a long episode."""
        env = self.env
        obs, _ = env.reset(seed=self.seed + self.count * self.episodes)
        self.count += 1
        n = self.episodes
        returns = np.zeros(n, np.float64)
        done = np.zeros(n, bool)
        box = isinstance(self.action_space, gym.spaces.Box)
        limit = getattr(env, "max_episode_steps", None) or getattr(getattr(env, "spec", None), "max_episode_steps", None)
        can_stop = math.isfinite(target) and math.isfinite(max_step_reward) and limit
        apply = normalizer.apply_obs if normalizer.norm_obs else None
        running = ~done  # the episodes not finished yet (their rewards count)
        t = 0
        while True:
            if frames is not None and running[0]:
                frames.append(env.render()[0])
            x = (obs if apply is None else apply(obs)).reshape(n, -1)
            if x.dtype != np.float32 or not x.flags.c_contiguous:
                x = np.ascontiguousarray(x, np.float32)
            a = np.asarray(greedy(x))
            if box:
                a = np.clip(a.reshape((n, *self.action_space.shape)), self.action_space.low, self.action_space.high)
            obs, rew, term, trunc, _ = env.step(a)
            np.add(returns, rew, out=returns, where=running)
            running &= ~(term | trunc)
            if not running.any():
                break
            t += 1
            if limit is None and t >= self.STEP_CAP:
                break
            if should_stop is not None and t % 64 == 0 and should_stop():
                break
            if can_stop and t % 8 == 0:
                best = returns.sum() + np.count_nonzero(running) * max(limit - t, 0) * max_step_reward
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
