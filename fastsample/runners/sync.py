"""The synchronous runner: envs and learner in one process, on-policy, bit-reproducible.

One iteration = ``num_steps`` vector steps of all ``num_envs`` envs with the current policy,
then GAE and ``update_epochs`` of PPO on the batch (CleanRL's ``ppo.py`` loop). With a
fastsample kernel and ``num_workers=0`` the envs step in this process on zero-copy buffers, so
an iteration has no inter-process traffic at all; that is the fastest layout on a small CPU.
"""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import numpy as np

from fastsample.learning.learner import make_learner, resolve_backend
from fastsample.learning.normalize import Normalizer
from fastsample.runners.common import env_restore, env_snapshot
from fastsample.sampling.envs import make_train_env
from fastsample.train_config import TrainConfig

__all__ = ["SyncRunner"]


class SyncRunner:
    """Envs, NumPy rollout buffers and normalisation statistics; the policy and the update are
    the learner's (:mod:`fastsample.learning.learner`: ``torch`` or ``compiled``, as
    ``--backend`` resolves), reached through its interface only."""

    def __init__(self, cfg: TrainConfig, device: str = "cpu"):
        self.cfg = cfg
        self.device = str(device)
        self.env = make_train_env(cfg.env, cfg.num_envs, cfg.seed, cfg.num_workers,
                                  batch_size=cfg.num_envs // 2 if cfg.double_buffer else None)
        env = self.env
        self.obs_space, self.act_space = env.single_observation_space, env.single_action_space
        self.box = isinstance(self.act_space, gym.spaces.Box)
        self.backend = resolve_backend(cfg, self.device, self.obs_space)
        # action streams: the rollout's, and with --double-buffer one per half
        self.learner = make_learner(cfg, self.obs_space, self.act_space, self.device,
                                    num_streams=3 if cfg.double_buffer else 1, backend=self.backend)
        self.held_obs: list[np.ndarray | None] = [None, None]
        self.normalizer = Normalizer(self.obs_space.shape, cfg.num_envs, cfg)
        T, N = cfg.num_steps, cfg.num_envs
        self.obs_dim = int(np.prod(self.obs_space.shape))
        act_shape = (self.learner.action_dim,) if self.box else ()
        self.buf = {
            "obs": np.zeros((T, N, self.obs_dim), np.float32),
            "actions": np.zeros((T, N, *act_shape), np.float32 if self.box else np.int64),
            "logprobs": np.zeros((T, N), np.float32),
            "values": np.zeros((T, N), np.float32),
        }
        self.rewards_np = np.zeros((T, N), np.float32)
        self.dones_np = np.zeros((T, N), np.float32)
        if cfg.double_buffer:  # raw data for _update_stats_in_order
            self.raw_obs = np.zeros((T, N, self.obs_dim), np.float64) if cfg.norm_obs else None
            self.raw_rewards = np.zeros((T, N), np.float64)
            self.boot = np.zeros((T, N), np.float64)
        self.ep_return = np.zeros(N, np.float64)
        self.ep_length = np.zeros(N, np.int64)
        self.global_step = 0  # env steps of every rank together (fastsample.distributed)
        self.iteration = 0
        self.world_size = 1  # ranks stepping alike (DD-PPO: set by fastsample.distributed.attach)
        self.next_obs: np.ndarray | None = None

    def greedy(self, obs: np.ndarray) -> np.ndarray:
        """Greedy actions for normalised observations (what the evaluations act with)."""
        return self.learner.greedy(obs)

    # -- start-up --------------------------------------------------------------------------

    def start(self, should_stop=None) -> None:
        """Reset the envs and warm up the learner (torch: one forward/backward on dummy data;
        compiled: one gradient, loading its kernels); no RNG draws. (``should_stop`` is for the
        async runner's long start-up; this one is short.)"""
        if self.cfg.double_buffer:
            if self.held_obs[0] is None:
                self._start_double_buffered(self.cfg.seed)
        elif self.next_obs is None:
            self.next_obs, _ = self.env.reset(seed=self.cfg.seed)
        self.learner.warmup()

    # -- one iteration ---------------------------------------------------------------------

    def iteration_step(self) -> dict[str, Any]:
        cfg, buf, learner = self.cfg, self.buf, self.learner
        T, N = cfg.num_steps, cfg.num_envs
        if cfg.anneal_lr:
            learner.learning_rate = max(0.0, 1.0 - self.global_step / cfg.total_steps) * cfg.learning_rate
        finished_returns: list[np.ndarray] = []
        finished_lengths: list[np.ndarray] = []
        t0 = time.perf_counter()
        norm_before = self.normalizer.state_dict()
        try:
            if cfg.double_buffer:
                last_value = self._rollout_double_buffered(finished_returns, finished_lengths)
            else:
                last_value = self._rollout(finished_returns, finished_lengths)
        except BaseException:
            # a rollout cut short (a worker died, a stop signal): the model and the counters
            # are those of the last completed update; so must the normalisation statistics be
            self.normalizer.load_state_dict(norm_before)
            raise
        advantages, returns = learner.gae(self.rewards_np, buf["values"], self.dones_np, last_value)
        t1 = time.perf_counter()
        batch = {k: v.reshape(T * N, *v.shape[2:]) for k, v in buf.items()}
        batch["advantages"] = advantages.reshape(-1)
        batch["returns"] = returns.reshape(-1)
        stats = learner.update(batch)
        t2 = time.perf_counter()
        self.global_step += T * N * self.world_size
        self.iteration += 1
        rets = np.concatenate(finished_returns) if finished_returns else np.zeros(0)
        lens = np.concatenate(finished_lengths) if finished_lengths else np.zeros(0, np.int64)
        return {"steps": T * N * self.world_size, "episode_returns": rets, "episode_lengths": lens, "policy_lag": 0.0,
                "sample_s": t1 - t0, "learn_s": t2 - t1, "lr": learner.learning_rate, **vars(stats)}

    # -- rollouts ----------------------------------------------------------------------------

    def _act(self, t: int, obs_np: np.ndarray, envs: slice, stream: int, update_stats: bool = True) -> np.ndarray:
        """Policy step for ``envs`` at time ``t`` with the learner's action stream ``stream``:
        fill the rollout buffer, return env actions. ``update_stats=False``: normalise with the
        statistics as they are, and keep the raw observations for :meth:`_update_stats_in_order`."""
        buf, n = self.buf, obs_np.shape[0]
        if update_stats:
            x = self.normalizer.obs(obs_np.reshape(n, -1))
        else:
            if self.normalizer.norm_obs:
                self.raw_obs[t, envs] = obs_np.reshape(n, -1)
            x = self.normalizer.apply_obs(obs_np.reshape(n, -1))
        obs = buf["obs"][t, envs]
        obs[...] = x
        a = buf["actions"][t, envs]
        self.learner.act(obs, stream, (a, buf["logprobs"][t, envs], buf["values"][t, envs]))
        if self.box:
            a = np.clip(a.reshape((n, *self.act_space.shape)), self.act_space.low, self.act_space.high)
        return a

    def _record(self, t: int, envs: slice, rew, term, trunc, info, finished_returns, finished_lengths,
                defer: bool = False) -> None:
        """Book the results of the actions taken at time ``t`` for ``envs``: episode stats,
        normalised rewards, and gamma * V(final obs) added to truncated episodes' rewards.
        ``defer``: keep the raw rewards and the bootstrap terms; :meth:`_update_stats_in_order`
        normalises them later."""
        done = term | trunc
        self.ep_return[envs] += rew
        self.ep_length[envs] += 1
        if defer:
            self.raw_rewards[t, envs] = rew
            self.boot[t, envs] = 0.0
            r = self.boot[t, envs]  # a view: the bootstrap terms are added into it below
        else:
            r = self.normalizer.reward(rew, done, envs)
        if done.any():
            ep_return, ep_length = self.ep_return[envs], self.ep_length[envs]
            finished_returns.append(ep_return[done].copy())
            finished_lengths.append(ep_length[done].copy())
            ep_return[done] = 0.0
            ep_length[done] = 0
            cut = np.flatnonzero(trunc & ~term)
            if cut.size:  # bootstrap truncated episodes with V(final observation)
                if not defer:
                    r = np.array(r, dtype=np.float64)
                final = np.stack([np.asarray(o) for o in info["final_obs"][cut]]).reshape(cut.size, -1)
                v_final = self.learner.value(self.normalizer.apply_obs(final))
                r[cut] += self.cfg.gamma * v_final.astype(np.float64)
        if not defer:
            self.rewards_np[t, envs] = r
        self.dones_np[t, envs] = done

    def _update_stats_in_order(self, halves: list[slice]) -> None:
        """--double-buffer: the running normalisation statistics, updated once the rollout is
        complete, in a fixed order (step by step, half 0 then half 1), from the raw observations
        and rewards kept by :meth:`_act` and :meth:`_record`; the normalised rewards then follow.
        So the statistics never depend on which half the workers returned first."""
        norm = self.normalizer
        for t in range(self.cfg.num_steps):
            for envs in halves:
                if norm.norm_obs:
                    norm.obs_rms.update(self.raw_obs[t, envs])
                r = norm.reward(self.raw_rewards[t, envs], self.dones_np[t, envs] > 0, envs)
                self.rewards_np[t, envs] = r + self.boot[t, envs]

    def _rollout(self, finished_returns, finished_lengths) -> np.ndarray:
        """``num_steps`` steps of every env with the current policy; returns V(next obs)."""
        everything = slice(None)
        obs_np = self.next_obs
        for t in range(self.cfg.num_steps):
            a = self._act(t, obs_np, everything, 0)
            obs_np, rew, term, trunc, info = self.env.step(a)
            self._record(t, everything, rew, term, trunc, info, finished_returns, finished_lengths)
        self.next_obs = obs_np
        last_x = self.normalizer.obs(obs_np.reshape(self.cfg.num_envs, -1), update=False)
        return self.learner.value(last_x)

    def _start_double_buffered(self, seed: int) -> None:
        self.env.async_reset(seed=seed)
        self.held_obs = [None, None]
        for _ in range(2):
            obs, *_, info = self.env.recv()
            self.held_obs[int(info["env_id"][0]) // (self.cfg.num_envs // 2)] = obs

    def _rollout_double_buffered(self, finished_returns, finished_lengths) -> np.ndarray:
        """The same rollout with the envs in two halves on worker processes (the engine's
        send/recv): while the policy acts on one half, the workers step the other. Each half
        draws its actions from its own generator and books its episodes apart, and the
        normalisation statistics are frozen during the rollout and updated at its end in a
        fixed order (:meth:`_update_stats_in_order`), so the order in which halves come back
        changes nothing: training is bit-reproducible."""
        T, half = self.cfg.num_steps, self.cfg.num_envs // 2
        halves = [slice(0, half), slice(half, 2 * half)]
        ids = [np.arange(0, half), np.arange(half, 2 * half)]
        recorded = [0, 0]
        # finished episodes per half, joined in half order at the end: the running statistics
        # must not depend on which half came back first
        returns_of: list[list[np.ndarray]] = [[], []]
        lengths_of: list[list[np.ndarray]] = [[], []]
        for h in (0, 1):  # the first actions go out on the observations held since last time
            self.env.send(self._act(0, self.held_obs[h], halves[h], 1 + h, False), ids[h])
        while recorded[0] < T or recorded[1] < T:
            obs, rew, term, trunc, info = self.env.recv()
            h = int(info["env_id"][0]) // half
            t = recorded[h]
            self._record(t, halves[h], rew, term, trunc, info, returns_of[h], lengths_of[h], defer=True)
            recorded[h] += 1
            self.held_obs[h] = obs
            if recorded[h] < T:
                self.env.send(self._act(t + 1, obs, halves[h], 1 + h, False), ids[h])
        self._update_stats_in_order(halves)
        for h in (0, 1):
            finished_returns.extend(returns_of[h])
            finished_lengths.extend(lengths_of[h])
        last_x = np.concatenate([self.normalizer.obs(o.reshape(half, -1), update=False) for o in self.held_obs])
        return self.learner.value(last_x)

    # -- checkpoints -----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The learner's part (``model``, ``adam``: backend-neutral; its random streams) and the
        runner's (normalisation, episode counters, the env's state where it is in-process)."""
        return {
            "backend": self.backend,
            **self.learner.state_dict(),
            "numpy_rng": np.random.get_state(),
            "normalizer": self.normalizer.state_dict(),
            "ep_return": self.ep_return.copy(),
            "ep_length": self.ep_length.copy(),
            "global_step": self.global_step,
            "iteration": self.iteration,
            "env": env_snapshot(self.env),
            "next_obs": None if self.next_obs is None else np.array(self.next_obs),
        }

    def load_state_dict(self, d: dict[str, Any]) -> bool:
        """Restore (either backend's checkpoint); returns whether the env state was restored
        exactly (in-process kernels) or the envs restarted from fresh episodes (worker
        processes, gymnasium envs)."""
        self.learner.load_state_dict(d, int(d["iteration"]))
        np.random.set_state(d["numpy_rng"])
        self.normalizer.load_state_dict(d["normalizer"])
        self.global_step, self.iteration = int(d["global_step"]), int(d["iteration"])
        exact = env_restore(self.env, d.get("env"))
        if exact:
            self.next_obs = self.env._obs
            self.ep_return[:] = d["ep_return"]
            self.ep_length[:] = d["ep_length"]
        else:
            seed = self.cfg.seed + 1_000_003 * self.iteration
            if self.cfg.double_buffer:
                self._start_double_buffered(seed)
            else:
                self.next_obs, _ = self.env.reset(seed=seed)
            self.ep_return[:] = 0.0
            self.ep_length[:] = 0
        return exact

    def close(self) -> None:
        self.env.close()
