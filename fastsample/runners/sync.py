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

from fastsample.checkpoint import to_torch
from fastsample.learning.ppo import PPOStats, compute_gae, ppo_update
from fastsample.runners.common import (Normalizer, adam_state, env_restore, env_snapshot, load_adam_state,
                                       make_model, make_train_env, resolve_backend)
from fastsample.train_config import TrainConfig

__all__ = ["SyncRunner"]


class _CompiledGreedy:
    """``ActorCritic.greedy`` (argmax or mean) computed by the compiled learner's policy."""

    def __init__(self, learner):
        self.learner = learner

    def greedy(self, obs: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(obs.numpy(), np.float32)
        return torch.from_numpy(self.learner.act(x, greedy=True)[0])


class SyncRunner:
    def __init__(self, cfg: TrainConfig, device: torch.device):
        self.cfg = cfg
        self.device = device
        torch.manual_seed(cfg.seed)
        self.env = make_train_env(cfg.env, cfg.num_envs, cfg.seed, cfg.num_workers,
                                  batch_size=cfg.num_envs // 2 if cfg.double_buffer else None)
        env = self.env
        self.obs_space, self.act_space = env.single_observation_space, env.single_action_space
        self.box = isinstance(self.act_space, gym.spaces.Box)
        self.model = make_model(cfg, self.obs_space, self.act_space).to(device)
        self.flat = self.model.flat_parameters()
        self.optimizer = torch.optim.Adam([self.flat], lr=cfg.learning_rate, eps=1e-5)
        # --backend compiled: the update, the rollout's policy and the evaluations run in
        # fastsample.learning.compiled on its own copy of the weights (the same flat layout),
        # copied back into the torch model (checkpoints, fastsample eval) after each update
        self.backend = resolve_backend(cfg, device)
        self.learner = None
        if self.backend == "compiled":
            from fastsample.learning.compiled import CompiledPPOLearner

            self.learner = CompiledPPOLearner.from_config(cfg, self.obs_space, self.act_space)
            self.learner.params[:] = self.flat.detach().cpu().numpy()  # torch's initialisation
            self.np_rng = np.random.default_rng(cfg.seed)  # the compiled learner's minibatch shuffles
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(cfg.seed)
        self.half_generators = []  # --double-buffer: one action generator per half
        for h in range(2 if cfg.double_buffer else 0):
            g = torch.Generator(device=device)
            g.manual_seed(cfg.seed * 2 + 1 + h)
            self.half_generators.append(g)
        # the streams the actions are drawn from: torch generators (torch backend) or, with the
        # compiled backend, numpy generators feeding the compiled policy's noise
        if self.learner is not None:
            self.action_gen = np.random.default_rng([cfg.seed, 1])
            self.half_action_gens = [np.random.default_rng([cfg.seed, 2, h]) for h in range(len(self.half_generators))]
        else:
            self.action_gen, self.half_action_gens = self.generator, self.half_generators
        self.held_obs: list[np.ndarray | None] = [None, None]
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
        if cfg.double_buffer:  # raw data for _update_stats_in_order
            self.raw_obs = np.zeros((T, N, self.obs_dim), np.float64) if cfg.norm_obs else None
            self.raw_rewards = np.zeros((T, N), np.float64)
            self.boot = np.zeros((T, N), np.float64)
        self.ep_return = np.zeros(N, np.float64)
        self.ep_length = np.zeros(N, np.int64)
        self.global_step = 0
        self.iteration = 0
        self.next_obs: np.ndarray | None = None

    @property
    def policy(self):
        """What the evaluations act with: the torch model, or with the compiled backend the
        compiled policy behind the same ``greedy`` call."""
        return self.model if self.learner is None else _CompiledGreedy(self.learner)

    # -- start-up --------------------------------------------------------------------------

    def start(self, should_stop=None) -> None:
        """Reset the envs and warm up the learner (torch: one forward/backward on dummy data;
        compiled: one gradient, loading its kernels) and torch's inference; no RNG draws.
        (``should_stop`` is for the async runner's long start-up; this one is short.)"""
        if self.cfg.double_buffer:
            if self.held_obs[0] is None:
                self._start_double_buffered(self.cfg.seed)
        elif self.next_obs is None:
            self.next_obs, _ = self.env.reset(seed=self.cfg.seed)
        x = torch.zeros((8, self.obs_dim), device=self.device)
        acts = self.buf["actions"]  # 8 dummy actions of the action shape, whatever num_envs is
        a = torch.zeros((8, *acts.shape[2:]), dtype=acts.dtype, device=self.device)
        if self.learner is None:
            logp, ent, v = self.model.evaluate(x, a)
            (logp.sum() + ent.sum() + v.sum()).backward()
            self.model.zero_grad_flat()
        else:  # load the compiled kernels from numba's cache now (a gradient only: no Adam step)
            from fastsample.learning import compiled

            z = np.zeros(8, np.float32)
            self.learner.minibatch_update(x.numpy(), a.numpy(), z, z, z, z, np.arange(8, dtype=np.int64),
                                          optimise=False)
            compiled.compute_gae(z[None], z[None], z[None], z, self.cfg.gamma, self.cfg.gae_lambda)
            self.learner.act(x.numpy(), greedy=True)
            self.learner.forward(x.numpy())
        with torch.no_grad():
            self.model.act(x, greedy=True)

    # -- one iteration ---------------------------------------------------------------------

    def iteration_step(self) -> dict[str, Any]:
        cfg, buf, model = self.cfg, self.buf, self.model
        T, N = cfg.num_steps, cfg.num_envs
        if cfg.anneal_lr:
            frac = max(0.0, 1.0 - self.global_step / cfg.total_steps)
            self.optimizer.param_groups[0]["lr"] = frac * cfg.learning_rate
            if self.learner is not None:
                self.learner.learning_rate = frac * cfg.learning_rate
        finished_returns: list[np.ndarray] = []
        finished_lengths: list[np.ndarray] = []
        t0 = time.perf_counter()
        norm_before = self.normalizer.state_dict()
        with torch.no_grad():
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
            if self.learner is not None:
                return self._compiled_update(last_value, t0, finished_returns, finished_lengths)
            buf["rewards"].copy_(torch.from_numpy(self.rewards_np))
            buf["dones"].copy_(torch.from_numpy(self.dones_np))
            advantages, returns = compute_gae(buf["rewards"], buf["values"], buf["dones"], last_value,
                                              cfg.gamma, cfg.gae_lambda)
        t1 = time.perf_counter()
        batch = {k: v.reshape(T * N, *v.shape[2:]) for k, v in buf.items() if k not in ("rewards", "dones")}
        batch["advantages"] = advantages.reshape(-1)
        batch["returns"] = returns.reshape(-1)
        stats = ppo_update(model, self.optimizer, batch, update_epochs=cfg.update_epochs,
                           num_minibatches=cfg.num_minibatches, clip_coef=cfg.clip_coef, vf_coef=cfg.vf_coef,
                           ent_coef=cfg.ent_coef, max_grad_norm=cfg.max_grad_norm, norm_adv=cfg.norm_adv,
                           clip_vloss=cfg.clip_vloss, target_kl=cfg.target_kl, generator=self.generator)
        t2 = time.perf_counter()
        return self._finish(stats, t0, t1, t2, finished_returns, finished_lengths)

    def _finish(self, stats, t0, t1, t2, finished_returns, finished_lengths) -> dict[str, Any]:
        T, N = self.cfg.num_steps, self.cfg.num_envs
        self.global_step += T * N
        self.iteration += 1
        rets = np.concatenate(finished_returns) if finished_returns else np.zeros(0)
        lens = np.concatenate(finished_lengths) if finished_lengths else np.zeros(0, np.int64)
        lr = self.learner.learning_rate if self.learner is not None else self.optimizer.param_groups[0]["lr"]
        return {"steps": T * N, "episode_returns": rets, "episode_lengths": lens, "policy_lag": 0.0,
                "sample_s": t1 - t0, "learn_s": t2 - t1, "lr": lr,
                **{k: v for k, v in vars(stats).items()}}

    def _compiled_update(self, last_value, t0, finished_returns, finished_lengths) -> dict[str, Any]:
        """GAE and the PPO epochs in fastsample.learning.compiled on numpy views of the rollout
        buffers (CPU), then the new weights into the torch model."""
        from fastsample.learning import compiled

        cfg, buf = self.cfg, self.buf
        T, N = cfg.num_steps, cfg.num_envs
        values = buf["values"].numpy()
        advantages, returns = compiled.compute_gae(self.rewards_np, values, self.dones_np,
                                                   np.ascontiguousarray(last_value.numpy(), np.float32),
                                                   cfg.gamma, cfg.gae_lambda)
        t1 = time.perf_counter()
        actions = buf["actions"].numpy()
        batch = {"obs": buf["obs"].numpy().reshape(T * N, self.obs_dim),
                 "actions": actions.reshape(T * N, *actions.shape[2:]),
                 "logprobs": buf["logprobs"].numpy().reshape(-1), "values": values.reshape(-1),
                 "advantages": advantages.reshape(-1), "returns": returns.reshape(-1)}
        stats = self._compiled_epochs(batch)
        with torch.no_grad():
            self.flat.copy_(torch.from_numpy(self.learner.params))
        t2 = time.perf_counter()
        return self._finish(stats, t0, t1, t2, finished_returns, finished_lengths)

    def _compiled_epochs(self, batch: dict[str, np.ndarray]) -> PPOStats:
        """``update_epochs`` epochs of shuffled minibatches through the compiled learner (as
        ``ppo_update``); each epoch's order is a fresh ``permutation`` from ``np_rng``, so the
        shuffles depend on that generator's state alone (what a checkpoint holds)."""
        cfg, learner = self.cfg, self.learner
        n = batch["obs"].shape[0]
        mb = n // cfg.num_minibatches
        sums = np.zeros(6, np.float64)
        count = 0
        stats = PPOStats()
        for epoch in range(cfg.update_epochs):
            perm = self.np_rng.permutation(n).astype(np.int64, copy=False)
            stop = False
            for start in range(0, n, mb):
                s = learner.minibatch_update(batch["obs"], batch["actions"], batch["logprobs"], batch["advantages"],
                                             batch["returns"], batch["values"], perm[start:start + mb])
                sums += s
                count += 1
                if cfg.target_kl and s[3] > cfg.target_kl:  # approx_kl
                    stop = True
                    break
            stats.epochs = epoch + 1
            if stop:
                break
        if count:
            (stats.policy_loss, stats.value_loss, stats.entropy, stats.approx_kl, stats.clipfrac,
             stats.grad_norm) = (float(v) for v in sums / count)
        return stats

    # -- rollouts ----------------------------------------------------------------------------

    def _value(self, x: np.ndarray) -> torch.Tensor:
        """V(x) for normalised observations ``x`` (n, obs_dim) float32."""
        if self.learner is not None:
            return torch.from_numpy(self.learner.forward(np.ascontiguousarray(x, np.float32))[1])
        return self.model.value(torch.from_numpy(x).to(self.device))

    def _act(self, t: int, obs_np: np.ndarray, envs: slice, generator,
             update_stats: bool = True) -> np.ndarray:
        """Policy step for ``envs`` at time ``t``: fill the rollout buffer, return env actions.
        ``update_stats=False``: normalise with the statistics as they are, and keep the raw
        observations for :meth:`_update_stats_in_order`."""
        buf, n = self.buf, obs_np.shape[0]
        if update_stats:
            x = self.normalizer.obs(obs_np.reshape(n, -1))
        else:
            if self.normalizer.norm_obs:
                self.raw_obs[t, envs] = obs_np.reshape(n, -1)
            x = self.normalizer.apply_obs(obs_np.reshape(n, -1))
        buf["obs"][t, envs].copy_(torch.from_numpy(x))
        if self.learner is not None:  # the compiled policy (CPU): numpy views of the buffers
            out = (buf["actions"][t, envs].numpy(), buf["logprobs"][t, envs].numpy(), buf["values"][t, envs].numpy())
            if self.box:
                noise = generator.standard_normal((n, self.learner.action_dim), dtype=np.float32)
            else:  # uniforms in (0, 1] for the Gumbel-max draw
                noise = 1.0 - generator.random((n, self.learner.action_dim), dtype=np.float32)
            a = self.learner.act(buf["obs"][t, envs].numpy(), noise, out=out)[0]
        else:
            action, logp, value = self.model.act(buf["obs"][t, envs], generator=generator)
            buf["actions"][t, envs] = action
            buf["logprobs"][t, envs] = logp
            buf["values"][t, envs] = value
            a = action.numpy() if self.device.type == "cpu" else action.cpu().numpy()
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
                v_final = self._value(self.normalizer.apply_obs(final))
                r[cut] += self.cfg.gamma * v_final.double().cpu().numpy()
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

    def _rollout(self, finished_returns, finished_lengths) -> torch.Tensor:
        """``num_steps`` steps of every env with the current policy; returns V(next obs)."""
        everything = slice(None)
        obs_np = self.next_obs
        for t in range(self.cfg.num_steps):
            a = self._act(t, obs_np, everything, self.action_gen)
            obs_np, rew, term, trunc, info = self.env.step(a)
            self._record(t, everything, rew, term, trunc, info, finished_returns, finished_lengths)
        self.next_obs = obs_np
        last_x = self.normalizer.obs(obs_np.reshape(self.cfg.num_envs, -1), update=False)
        return self._value(last_x)

    def _start_double_buffered(self, seed: int) -> None:
        self.env.async_reset(seed=seed)
        self.held_obs = [None, None]
        for _ in range(2):
            obs, *_, info = self.env.recv()
            self.held_obs[int(info["env_id"][0]) // (self.cfg.num_envs // 2)] = obs

    def _rollout_double_buffered(self, finished_returns, finished_lengths) -> torch.Tensor:
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
            self.env.send(self._act(0, self.held_obs[h], halves[h], self.half_action_gens[h], False), ids[h])
        while recorded[0] < T or recorded[1] < T:
            obs, rew, term, trunc, info = self.env.recv()
            h = int(info["env_id"][0]) // half
            t = recorded[h]
            self._record(t, halves[h], rew, term, trunc, info, returns_of[h], lengths_of[h], defer=True)
            recorded[h] += 1
            self.held_obs[h] = obs
            if recorded[h] < T:
                self.env.send(self._act(t + 1, obs, halves[h], self.half_action_gens[h], False), ids[h])
        self._update_stats_in_order(halves)
        for h in (0, 1):
            finished_returns.extend(returns_of[h])
            finished_lengths.extend(lengths_of[h])
        last_x = np.concatenate([self.normalizer.obs(o.reshape(half, -1), update=False) for o in self.held_obs])
        return self._value(last_x)

    # -- checkpoints -----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        if self.learner is not None:
            lr = self.learner
            adam = {"step": int(lr.step_count), "lr": lr.learning_rate, "exp_avg": lr.exp_avg.copy(),
                    "exp_avg_sq": lr.exp_avg_sq.copy()}
        else:
            adam = adam_state(self.optimizer, self.flat)
        return {
            "backend": self.backend,
            "model": self.model.state_dict(),
            "adam": adam,
            "np_generator": self.np_rng.bit_generator.state if self.learner is not None else None,
            "np_action_generators": None if self.learner is None else
            [g.bit_generator.state for g in (self.action_gen, *self.half_action_gens)],
            "generator": self.generator.get_state(),
            "half_generators": [g.get_state() for g in self.half_generators],
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
        d = dict(d)  # a loaded checkpoint holds numpy arrays: torch's parts become tensors
        for key in ("model", "generator", "half_generators", "torch_rng"):
            if key in d:
                d[key] = to_torch(d[key])
        self.model.load_state_dict(d["model"])
        load_adam_state(self.optimizer, self.flat, d["adam"])
        if self.learner is not None:  # either backend's checkpoint: same weights and Adam state
            self.learner.params[:] = self.flat.detach().cpu().numpy()
            self.learner.exp_avg[:] = d["adam"]["exp_avg"]
            self.learner.exp_avg_sq[:] = d["adam"]["exp_avg_sq"]
            self.learner.step_count = int(d["adam"]["step"])
            self.learner.learning_rate = float(d["adam"]["lr"])
            if d.get("np_generator") is not None:
                self.np_rng.bit_generator.state = d["np_generator"]
            else:  # a torch backend's checkpoint: a fresh shuffle stream for this point of the run
                self.np_rng = np.random.default_rng([self.cfg.seed, int(d["iteration"])])
            states = d.get("np_action_generators")
            if states is not None and len(states) == 1 + len(self.half_action_gens):
                for g, state in zip((self.action_gen, *self.half_action_gens), states):
                    g.bit_generator.state = state
            else:  # fresh action streams for this point of the run
                it = int(d["iteration"])
                self.action_gen = np.random.default_rng([self.cfg.seed, 1, it])
                self.half_action_gens = [np.random.default_rng([self.cfg.seed, 2, h, it])
                                         for h in range(len(self.half_action_gens))]
        self.generator.set_state(d["generator"])
        for g, state in zip(self.half_generators, d.get("half_generators", [])):
            g.set_state(state)
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
