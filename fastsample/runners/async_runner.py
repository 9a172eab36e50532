"""The asynchronous runner (Sample-Factory style): sampler processes act while the learner learns.

Topology::

    sampler 0..K-1 (processes)                          learner (this process)
      envs + policy copy (version v)  --slot index-->   full_q  -> batch of K slots -> PPO -> publish v+1
      fill slot in shared memory      <--slot index--   free_q  <- slots handed back after the update

Each update takes ``K`` slots (``num_envs * num_steps`` transitions), recomputes values with the
current critic, and corrects for policy lag with PPO-clip on the *behaviour* log-probs (the
ratio ``pi_current / pi_behaviour`` is clipped) and, with ``--vtrace``, V-trace targets.
A slot's policy lag is the learner's version at the update minus the version that acted; a slot
lagging by more than ``--max-policy-lag`` is handed straight back (dropped, counted in
``slots_dropped``). Each metrics row has the mean, min and max lag of the slots used; the
summary has the distribution over the run (``policy_lag_hist``: lag -> slots).

Reward normalisation (``--norm-reward``): each sampler keeps its envs' running discounted
returns and writes them into the slot, so the returns chain step by step across that sampler's
slots in the order it filled them, whichever slots an update takes (several from one sampler
included) and whichever are dropped; the learner feeds them to the running variance.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from fastsample.checkpoint import to_torch
from fastsample.learning.normalize import Normalizer
from fastsample.learning.ppo import compute_gae, make_model, ppo_update, vtrace
from fastsample.learning.torch_backend import adam_state, load_adam_state
from fastsample.sampling.envs import spaces_of
from fastsample.sampling.sampler import sampler_main
from fastsample.sampling.slots import Control, SharedWeights, TrajectorySlots
from fastsample.train_config import TrainConfig

__all__ = ["AsyncRunner", "SamplerError"]


class SamplerError(RuntimeError):
    """A sampler process raised or died."""


class AsyncRunner:
    backend = "torch"  # the samplers' policy copies and the learner are torch models

    def __init__(self, cfg: TrainConfig, device: str = "cpu"):
        import dataclasses

        from faster_fifo import Queue

        self.cfg = cfg
        self.device = torch.device(device)
        device = self.device
        self.K = max(1, cfg.num_workers)
        if cfg.num_envs % self.K:
            from fastsample.train_config import ConfigError

            raise ConfigError(f"--num-envs {cfg.num_envs} must be a multiple of the sampler count --num-workers {self.K}")
        self.n = cfg.num_envs // self.K
        if cfg.torch_threads:
            torch.set_num_threads(cfg.torch_threads)
        torch.manual_seed(cfg.seed)
        self.obs_space, self.act_space = spaces_of(cfg.env)
        self.box = isinstance(self.act_space, gym.spaces.Box)
        self.model = make_model(cfg, self.obs_space, self.act_space).to(device)
        self.flat = self.model.flat_parameters()
        self.optimizer = torch.optim.Adam([self.flat], lr=cfg.learning_rate, eps=1e-5)
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(cfg.seed)
        self.obs_dim = int(np.prod(self.obs_space.shape))
        self.normalizer = Normalizer(self.obs_space.shape, cfg.num_envs, cfg)
        self.n_params = self.flat.numel()
        self.weights = SharedWeights(self.n_params + 2 * self.obs_dim)
        act_dim = self.model.action_dim if self.box else 1
        self.num_slots = cfg.async_slots or 2 * self.K  # double buffering per sampler
        self.slots = TrajectorySlots(self.num_slots, cfg.num_steps, self.n, self.obs_dim, act_dim)
        # faster-fifo queues and the control flags live in RawArray memory: no named semaphore
        self.free_q, self.full_q, self.error_q = Queue(1 << 16), Queue(1 << 16), Queue(1 << 20)
        self.control = Control(self.K)
        self.ctx = mp.get_context("spawn")
        self.cfg_dict = dataclasses.asdict(cfg)
        self.procs: list[mp.Process] = []
        self.version = 0
        self.global_step = 0
        self.iteration = 0
        # data-parallel training (fastsample.distributed.attach): the learner's hooks (see
        # fastsample.learning.learner) and the count of every rank's steps in an update
        self.grad_hook = self.adv_moments_hook = None
        self.count_steps = None
        self.lag_hist: dict[int, int] = {}  # policy lag -> slots used with it
        self.slots_dropped = 0

    @torch.no_grad()
    def greedy(self, obs: np.ndarray) -> np.ndarray:
        """Greedy actions for normalised observations (what the evaluations act with)."""
        return self.model.greedy(torch.from_numpy(obs).to(self.device)).cpu().numpy()

    @property
    def lag_mean(self) -> float:
        count = sum(self.lag_hist.values())
        return sum(lag * c for lag, c in self.lag_hist.items()) / count if count else 0.0

    @property
    def lag_max(self) -> int:
        return max(self.lag_hist, default=0)

    def _publish(self) -> None:
        buf = np.empty(self.weights.size, np.float32)
        buf[:self.n_params] = self.flat.detach().cpu().numpy()
        buf[self.n_params:self.n_params + self.obs_dim] = self.normalizer.obs_rms.mean.reshape(-1)
        buf[self.n_params + self.obs_dim:] = self.normalizer.obs_rms.var.reshape(-1)
        self.version = self.weights.publish(buf)

    def start(self, should_stop=None) -> None:
        """Start the samplers and wait until every one has built its envs and policy (imports
        and JIT: seconds); returns early, samplers not ready, once ``should_stop()`` is true."""
        self._publish()
        for s in range(self.num_slots):
            self.free_q.put(s)
        base = self.cfg.seed + 1_000_003 * self.iteration
        for k in range(self.K):
            p = self.ctx.Process(target=sampler_main, name=f"fastsample-sampler-{k}", daemon=True,
                                 args=(k, self.cfg_dict, self.n, self.slots, self.weights, self.free_q, self.full_q,
                                       self.error_q, self.control, base + k * self.n, os.getpid()))
            p.start()
            self.procs.append(p)
        last_check = time.monotonic()  # start-up (imports, JIT) ends when every sampler has built its envs
        while self.control.ready_count() < self.K:
            if should_stop is not None and should_stop():
                return
            time.sleep(0.01)
            if time.monotonic() - last_check >= 0.5:
                self._check_samplers()
                last_check = time.monotonic()

    def _check_samplers(self) -> None:
        dead = any(p.exitcode is not None for p in self.procs)
        try:
            sid, message, tb = self.error_q.get(timeout=0.5) if dead else self.error_q.get_nowait()
            raise SamplerError(f"sampler {sid} failed: {message}\n--- sampler traceback ---\n{tb}")
        except queue.Empty:
            pass
        for k, p in enumerate(self.procs):
            if p.exitcode is not None:
                raise SamplerError(f"sampler {k} (pid {p.pid}) died with exit code {p.exitcode}")

    def _take_slots(self) -> tuple[list[int], int]:
        """``K`` full slots (in the order they were filled) whose policy lag is at most
        ``--max-policy-lag``; staler ones go straight back to the samplers. Returns the slots
        and how many were dropped."""
        if any(p.exitcode is not None for p in self.procs):  # a dead sampler fails the run, even while the
            self._check_samplers()  # others keep the queue full
        got: list[int] = []
        dropped = 0
        meta = self.slots.views["meta"]
        while len(got) < self.K:
            try:
                new = self.full_q.get_many(timeout=0.5, max_messages_to_get=self.K - len(got))
            except queue.Empty:
                self._check_samplers()
                continue
            for s in new:
                if self.version - int(meta[s][0]) > self.cfg.max_policy_lag:
                    self.free_q.put(s)
                    dropped += 1
                else:
                    got.append(s)
        return got, dropped

    def iteration_step(self) -> dict[str, Any]:
        cfg, dev = self.cfg, self.device
        t0 = time.perf_counter()
        ids, dropped = self._take_slots()
        t1 = time.perf_counter()
        v = self.slots.views
        T, n = cfg.num_steps, self.n

        def cat(name):  # (T, K*n, ...) from K slots of (T, n, ...)
            return np.concatenate([v[name][s] for s in ids], axis=1)

        raw_obs = cat("obs")
        last_raw = np.concatenate([v["last_obs"][s] for s in ids], axis=0)
        rewards = cat("rewards")
        dones = cat("dones")
        trunc_values = cat("trunc_values")
        ep_rets = cat("ep_returns")
        actions = cat("actions")
        logprobs = cat("logprobs")
        lags = [self.version - int(v["meta"][s][0]) for s in ids]
        for lag_k in lags:
            self.lag_hist[lag_k] = self.lag_hist.get(lag_k, 0) + 1
        self.slots_dropped += dropped
        lag = float(np.mean(lags))
        norm = self.normalizer
        N = T * len(ids) * n
        if norm.norm_obs:
            norm.obs_rms.update(raw_obs.reshape(-1, self.obs_dim))
        obs = norm.apply_obs(raw_obs.reshape(-1, self.obs_dim)).reshape(T, -1, self.obs_dim)
        last_obs = norm.apply_obs(last_raw)
        if norm.norm_reward:  # the samplers' running discounted returns (see the module docstring)
            disc = cat("disc_returns")
            r = np.empty_like(rewards)
            for t in range(T):
                norm.ret_rms.update(disc[t])
                r[t] = rewards[t] / np.sqrt(norm.ret_rms.var + 1e-8)
            rewards = r
        rewards = rewards + cfg.gamma * trunc_values
        with torch.no_grad():
            obs_t = torch.from_numpy(obs).to(dev)
            values = self.model.value(obs_t)
            last_value = self.model.value(torch.from_numpy(last_obs).to(dev))
            rew_t = torch.from_numpy(rewards.astype(np.float32)).to(dev)
            done_t = torch.from_numpy(dones).to(dev)
            act_t = torch.from_numpy(actions).to(dev)
            act_t = act_t if self.box else act_t.squeeze(-1).long()
            logp_t = torch.from_numpy(logprobs).to(dev)
            if cfg.vtrace:
                new_logp, _, _ = self.model.evaluate(obs_t.reshape(-1, self.obs_dim), act_t.reshape(-1, *act_t.shape[2:]))
                log_rhos = new_logp.reshape(T, -1) - logp_t
                advantages, returns = vtrace(rew_t, values, done_t, last_value, log_rhos, cfg.gamma, cfg.gae_lambda)
            else:
                advantages, returns = compute_gae(rew_t, values, done_t, last_value, cfg.gamma, cfg.gae_lambda)
        if cfg.anneal_lr:
            self.optimizer.param_groups[0]["lr"] = max(0.0, 1.0 - self.global_step / cfg.total_steps) * cfg.learning_rate
        batch = {"obs": obs_t.reshape(N, -1), "actions": act_t.reshape(N, *act_t.shape[2:]),
                 "logprobs": logp_t.reshape(N), "values": values.reshape(N),
                 "advantages": advantages.reshape(N), "returns": returns.reshape(N)}
        for s in ids:  # data copied out: the samplers may refill these slots now
            self.free_q.put(s)
        stats = ppo_update(self.model, self.optimizer, batch, update_epochs=cfg.update_epochs,
                           num_minibatches=cfg.num_minibatches, clip_coef=cfg.clip_coef, vf_coef=cfg.vf_coef,
                           ent_coef=cfg.ent_coef, max_grad_norm=cfg.max_grad_norm, norm_adv=cfg.norm_adv,
                           clip_vloss=cfg.clip_vloss, target_kl=cfg.target_kl, generator=self.generator,
                           grad_hook=self.grad_hook, adv_moments_hook=self.adv_moments_hook)
        self._publish()
        t2 = time.perf_counter()
        steps = N if self.count_steps is None else self.count_steps(N)
        self.global_step += steps
        self.iteration += 1
        finished = ep_rets[~np.isnan(ep_rets)]
        return {"steps": steps, "episode_returns": finished, "episode_lengths": np.zeros(0), "policy_lag": lag,
                "policy_lag_min": int(min(lags)), "policy_lag_max": int(max(lags)), "slots_dropped": dropped,
                "sample_s": t1 - t0, "learn_s": t2 - t1, "lr": self.optimizer.param_groups[0]["lr"],
                **vars(stats)}

    def state_dict(self) -> dict[str, Any]:
        return {"backend": "torch", "model": self.model.state_dict(), "adam": adam_state(self.optimizer, self.flat),
                "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state(),
                "numpy_rng": np.random.get_state(), "normalizer": self.normalizer.state_dict(),
                "global_step": self.global_step, "iteration": self.iteration, "env": None,
                "lag_hist": dict(self.lag_hist), "slots_dropped": self.slots_dropped}

    def load_state_dict(self, d: dict[str, Any]) -> bool:
        d = dict(d)  # a loaded checkpoint holds numpy arrays: torch's parts become tensors
        for key in ("model", "generator", "torch_rng"):
            if key in d:
                d[key] = to_torch(d[key])
        self.model.load_state_dict(d["model"])
        load_adam_state(self.optimizer, self.flat, d["adam"])
        if d.get("generator") is not None:  # absent: another rank's streams (fastsample.distributed.rank_state)
            self.generator.set_state(d["generator"])
        if d.get("torch_rng") is not None:
            torch.set_rng_state(d["torch_rng"])
        np.random.set_state(d["numpy_rng"])
        self.normalizer.load_state_dict(d["normalizer"])
        self.global_step, self.iteration = int(d["global_step"]), int(d["iteration"])
        self.lag_hist = {int(k): int(c) for k, c in d.get("lag_hist", {}).items()}
        self.slots_dropped = int(d.get("slots_dropped", 0))
        return False

    def close(self) -> None:
        """Stop the samplers: a sampler still starting up (imports, JIT) is killed at once, the
        others see the stop flag within 0.1 s (or after the slot they are filling); one still
        running after 5 s is killed (samplers ignore SIGTERM)."""
        self.control.stop()
        for k, p in enumerate(self.procs):
            if not self.control.is_ready(k) and p.is_alive():
                p.kill()
        deadline = time.monotonic() + 5.0
        for p in self.procs:
            p.join(timeout=max(0.0, deadline - time.monotonic()))
        for p in self.procs:
            if p.is_alive():
                p.kill()
                p.join()
        self.procs = []
        for q in (self.free_q, self.full_q, self.error_q):
            try:
                q.close()
            except Exception:
                pass
