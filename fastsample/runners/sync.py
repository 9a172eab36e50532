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
import torch

from fastsample.learning.ppo import compute_gae, ppo_update
from fastsample.runners.common import Normalizer, env_restore, env_snapshot, make_model, make_train_env
from fastsample.train_config import TrainConfig

__all__ = ["SyncRunner"]


class SyncRunner:
    def __init__(self, cfg: TrainConfig, device: torch.device):
        self.cfg = cfg
        self.device = device
        torch.manual_seed(cfg.seed)
        self.env = make_train_env(cfg.env, cfg.num_envs, cfg.seed, cfg.num_workers)
        env = self.env
        self.obs_space, self.act_space = env.single_observation_space, env.single_action_space
        self.box = isinstance(self.act_space, gym.spaces.Box)
        self.model = make_model(cfg, self.obs_space, self.act_space).to(device)
        self.optimizer = torch.optim.Adam([self.model.flat_parameters()], lr=cfg.learning_rate, eps=1e-5)
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(cfg.seed)
        self.normalizer = Normalizer(self.obs_space.shape, cfg.num_envs, cfg)
        T, N = cfg.num_steps, cfg.num_envs
        self.obs_dim = int(np.prod(self.obs_space.shape))
        act_shape = (self.model.action_dim,) if self.box else ()
        act_dtype = torch.float32 if self.box else torch.int64
        z = dict(device=device)
        self.buf = {
            "obs": torch.zeros((T, N, self.obs_dim), **z),
            "actions": torch.zeros((T, N, *act_shape), dtype=act_dtype, **z),
            "logprobs": torch.zeros((T, N), **z),
            "values": torch.zeros((T, N), **z),
            "rewards": torch.zeros((T, N), **z),
            "dones": torch.zeros((T, N), **z),
        }
        self.rewards_np = np.zeros((T, N), np.float32)
        self.dones_np = np.zeros((T, N), np.float32)
        self.ep_return = np.zeros(N, np.float64)
        self.ep_length = np.zeros(N, np.int64)
        self.global_step = 0
        self.iteration = 0
        self.next_obs: np.ndarray | None = None

    # -- start-up --------------------------------------------------------------------------

    def start(self) -> None:
        """Reset the envs and warm up torch (one forward/backward on dummy data; no RNG draws)."""
        if self.next_obs is None:
            self.next_obs, _ = self.env.reset(seed=self.cfg.seed)
        x = torch.zeros((8, self.obs_dim), device=self.device)
        a = torch.zeros_like(self.buf["actions"][0, :8])
        logp, ent, v = self.model.evaluate(x, a)
        (logp.sum() + ent.sum() + v.sum()).backward()
        self.model.zero_grad_flat()
        with torch.no_grad():
            self.model.act(x, greedy=True)

    # -- one iteration ---------------------------------------------------------------------

    def iteration_step(self) -> dict[str, Any]:
        cfg, buf, model, env, norm = self.cfg, self.buf, self.model, self.env, self.normalizer
        T, N = cfg.num_steps, cfg.num_envs
        if cfg.anneal_lr:
            frac = max(0.0, 1.0 - self.global_step / cfg.total_steps)
            self.optimizer.param_groups[0]["lr"] = frac * cfg.learning_rate
        finished_returns: list[np.ndarray] = []
        finished_lengths: list[np.ndarray] = []
        t0 = time.perf_counter()
        device_is_cpu = self.device.type == "cpu"
        low = self.act_space.low if self.box else None
        high = self.act_space.high if self.box else None
        obs_np = self.next_obs
        with torch.no_grad():
            for t in range(T):
                x = norm.obs(obs_np.reshape(N, -1))
                buf["obs"][t].copy_(torch.from_numpy(x))
                action, logp, value = model.act(buf["obs"][t], generator=self.generator)
                buf["actions"][t] = action
                buf["logprobs"][t] = logp
                buf["values"][t] = value
                a = action.numpy() if device_is_cpu else action.cpu().numpy()
                if self.box:
                    a = np.clip(a.reshape((N, *self.act_space.shape)), low, high)
                obs_np, rew, term, trunc, info = env.step(a)
                done = term | trunc
                self.ep_return += rew
                self.ep_length += 1
                r = norm.reward(rew, done)
                if done.any():
                    finished_returns.append(self.ep_return[done].copy())
                    finished_lengths.append(self.ep_length[done].copy())
                    self.ep_return[done] = 0.0
                    self.ep_length[done] = 0
                    cut = np.flatnonzero(trunc & ~term)
                    if cut.size:  # bootstrap truncated episodes with V(final observation)
                        r = np.array(r, dtype=np.float64)
                        final = np.stack([np.asarray(o) for o in info["final_obs"][cut]]).reshape(cut.size, -1)
                        v_final = model.value(torch.from_numpy(norm.apply_obs(final)).to(self.device))
                        r[cut] += cfg.gamma * v_final.double().cpu().numpy()
                self.rewards_np[t] = r
                self.dones_np[t] = done
            last_x = norm.obs(obs_np.reshape(N, -1), update=False)
            last_value = model.value(torch.from_numpy(last_x).to(self.device))
            buf["rewards"].copy_(torch.from_numpy(self.rewards_np))
            buf["dones"].copy_(torch.from_numpy(self.dones_np))
            advantages, returns = compute_gae(buf["rewards"], buf["values"], buf["dones"], last_value,
                                              cfg.gamma, cfg.gae_lambda)
        self.next_obs = obs_np
        t1 = time.perf_counter()
        batch = {k: v.reshape(T * N, *v.shape[2:]) for k, v in buf.items() if k not in ("rewards", "dones")}
        batch["advantages"] = advantages.reshape(-1)
        batch["returns"] = returns.reshape(-1)
        stats = ppo_update(model, self.optimizer, batch, update_epochs=cfg.update_epochs,
                           num_minibatches=cfg.num_minibatches, clip_coef=cfg.clip_coef, vf_coef=cfg.vf_coef,
                           ent_coef=cfg.ent_coef, max_grad_norm=cfg.max_grad_norm, norm_adv=cfg.norm_adv,
                           clip_vloss=cfg.clip_vloss, target_kl=cfg.target_kl, generator=self.generator)
        t2 = time.perf_counter()
        self.global_step += T * N
        self.iteration += 1
        rets = np.concatenate(finished_returns) if finished_returns else np.zeros(0)
        lens = np.concatenate(finished_lengths) if finished_lengths else np.zeros(0, np.int64)
        return {"steps": T * N, "episode_returns": rets, "episode_lengths": lens, "policy_lag": 0.0,
                "sample_s": t1 - t0, "learn_s": t2 - t1, "lr": self.optimizer.param_groups[0]["lr"],
                **{k: v for k, v in vars(stats).items()}}

    # -- checkpoints -----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
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
        """Restore; returns whether the env state was restored exactly (in-process kernels) or
        the envs restarted from fresh episodes (worker processes, gymnasium envs)."""
        self.model.load_state_dict(d["model"])
        self.optimizer.load_state_dict(d["optimizer"])
        self.generator.set_state(d["generator"])
        torch.set_rng_state(d["torch_rng"])
        np.random.set_state(d["numpy_rng"])
        self.normalizer.load_state_dict(d["normalizer"])
        self.global_step, self.iteration = int(d["global_step"]), int(d["iteration"])
        exact = env_restore(self.env, d.get("env"))
        if exact:
            self.next_obs = self.env._obs
            self.ep_return[:] = d["ep_return"]
            self.ep_length[:] = d["ep_length"]
        else:
            self.next_obs, _ = self.env.reset(seed=self.cfg.seed + 1_000_003 * self.iteration)
            self.ep_return[:] = 0.0
            self.ep_length[:] = 0
        return exact

    def close(self) -> None:
        self.env.close()
