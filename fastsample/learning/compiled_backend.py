"""The compiled learner behind the :mod:`fastsample.learning.learner` interface: the Numba PPO
kernels of :mod:`fastsample.learning.compiled` plus the random streams of a run (NumPy
generators). Imports no torch: a CPU run of an MLP policy trains, evaluates and checkpoints
without it.

Random streams: the parameters are initialised from ``default_rng(seed)`` (CleanRL's orthogonal
scheme, :meth:`CompiledPPOLearner.init_params`), the minibatch shuffles come from
``default_rng(seed)`` too (a fresh ``permutation`` per epoch), the rollout's actions from
``default_rng([seed, 1])`` and the ``--double-buffer`` halves' from ``default_rng([seed, 2, h])``:
uniforms in (0, 1] for the categorical head's Gumbel-max draw, standard normals for a Gaussian
head. All of them are in the checkpoint."""

from __future__ import annotations

from typing import Any

import numpy as np

from fastsample.learning import compiled
from fastsample.learning.compiled import CompiledPPOLearner
from fastsample.learning.learner import PPOStats

__all__ = ["CompiledLearner"]


class CompiledLearner:
    """:class:`fastsample.learning.learner.Learner` on the compiled kernels (CPU, MLP policies)."""

    backend = "compiled"
    device = "cpu"

    def __init__(self, cfg, obs_space, act_space, *, num_streams: int = 1):
        self.cfg = cfg
        self.core = CompiledPPOLearner.from_config(cfg, obs_space, act_space)
        self.obs_dim, self.action_dim, self.discrete = self.core.obs_dim, self.core.action_dim, self.core.discrete
        self.num_params = self.core.params.shape[0]
        self.num_streams = num_streams
        self.grad_hook = None
        self.adv_moments_hook = None
        self._seed_streams(None)

    def _seed_streams(self, iteration: int | None) -> None:
        """The shuffle and action streams from the start of a run (``iteration`` None), or fresh
        ones for a point of a run whose checkpoint holds no streams of this backend."""
        seed = self.cfg.seed
        it = () if iteration is None else (int(iteration),)
        self.shuffle_rng = np.random.default_rng(seed if iteration is None else [seed, iteration])
        self.action_rngs = [np.random.default_rng([seed, 1, *it])]
        self.action_rngs += [np.random.default_rng([seed, 2, h, *it]) for h in range(self.num_streams - 1)]

    @property
    def learning_rate(self) -> float:
        return self.core.learning_rate

    @learning_rate.setter
    def learning_rate(self, lr: float) -> None:
        self.core.learning_rate = lr

    # -- rollout and evaluation -------------------------------------------------------------------

    def warmup(self) -> None:
        """Load every kernel a run calls from numba's cache (one gradient: no Adam step)."""
        x = np.zeros((8, self.obs_dim), np.float32)
        a = np.zeros(8, np.int64) if self.discrete else np.zeros((8, self.action_dim), np.float32)
        z = np.zeros(8, np.float32)
        self.core.minibatch_update(x, a, z, z, z, z, np.arange(8, dtype=np.int64), optimise=False)
        compiled.compute_gae(z[None], z[None], z[None], z, self.cfg.gamma, self.cfg.gae_lambda)
        self.core.act(x, greedy=True)
        self.core.greedy(x)

    def act(self, obs: np.ndarray, stream: int, out: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        rng = self.action_rngs[stream]
        n = obs.shape[0]
        if self.discrete:  # uniforms in (0, 1] for the Gumbel-max draw
            noise = 1.0 - rng.random((n, self.action_dim), dtype=np.float32)
        else:
            noise = rng.standard_normal((n, self.action_dim), dtype=np.float32)
        self.core.act(np.ascontiguousarray(obs, np.float32), noise, out=out)

    def value(self, obs: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(obs, np.float32)
        _, _, v = self.core.act(x, greedy=True)
        return v

    def greedy(self, obs: np.ndarray) -> np.ndarray:
        """Greedy actions (the actor's forward alone: the evaluations' cost per step)."""
        x = obs if obs.dtype == np.float32 and obs.flags.c_contiguous else np.ascontiguousarray(obs, np.float32)
        return self.core.greedy(x)

    # -- learning ---------------------------------------------------------------------------------

    def gae(self, rewards, values, dones, last_value):
        f = np.float32
        return compiled.compute_gae(np.ascontiguousarray(rewards, f), np.ascontiguousarray(values, f),
                                    np.ascontiguousarray(dones, f), np.ascontiguousarray(last_value, f),
                                    self.cfg.gamma, self.cfg.gae_lambda)

    def update(self, batch: dict[str, np.ndarray]) -> PPOStats:
        """``update_epochs`` epochs of shuffled minibatches (as ``ppo_update``); each epoch's
        order is a fresh ``permutation`` of ``shuffle_rng``."""
        cfg, core = self.cfg, self.core
        obs, actions, logp = batch["obs"], batch["actions"], batch["logprobs"]
        adv, ret, values = batch["advantages"], batch["returns"], batch["values"]
        n = obs.shape[0]
        mb = n // cfg.num_minibatches
        sums = np.zeros(compiled.ST_SIZE, np.float64)
        count = 0
        stats = PPOStats()
        for epoch in range(cfg.update_epochs):
            perm = self.shuffle_rng.permutation(n).astype(np.int64, copy=False)
            stop = False
            for start in range(0, n, mb):
                s = core.minibatch_update(obs, actions, logp, adv, ret, values, perm[start:start + mb],
                                          grad_hook=self.grad_hook, adv_moments_hook=self.adv_moments_hook)
                sums += s
                count += 1
                if cfg.target_kl and s[compiled.ST_KL] > cfg.target_kl:
                    stop = True
                    break
            stats.epochs = epoch + 1
            if stop:
                break
        if count:
            (stats.policy_loss, stats.value_loss, stats.entropy, stats.approx_kl, stats.clipfrac,
             stats.grad_norm) = (float(v) for v in sums / count)
        return stats

    # -- state ------------------------------------------------------------------------------------

    def flat_params(self) -> np.ndarray:
        return self.core.params.copy()

    def set_flat_params(self, flat: np.ndarray) -> None:
        self.core.params[:] = flat

    def load_weights(self, arrays: dict[str, np.ndarray]) -> None:
        self.core.load_state_arrays(arrays)

    def state_dict(self) -> dict[str, Any]:
        c = self.core
        return {"model": {k: v.copy() for k, v in c.state_arrays().items()},
                "adam": {"step": int(c.step_count), "lr": c.learning_rate, "exp_avg": c.exp_avg.copy(),
                         "exp_avg_sq": c.exp_avg_sq.copy()},
                "np_generator": self.shuffle_rng.bit_generator.state,
                "np_action_generators": [g.bit_generator.state for g in self.action_rngs]}

    def load_state_dict(self, d: dict[str, Any], iteration: int) -> None:
        """Either backend's checkpoint: the same weights and Adam state; this backend's streams
        when it wrote the checkpoint, fresh ones for ``iteration`` otherwise."""
        c = self.core
        self.load_weights(d["model"])
        adam = d["adam"]
        exp_avg, exp_avg_sq = np.asarray(adam["exp_avg"], np.float32), np.asarray(adam["exp_avg_sq"], np.float32)
        if exp_avg.shape != c.exp_avg.shape or exp_avg_sq.shape != c.exp_avg_sq.shape:
            from fastsample.train_config import ConfigError

            raise ConfigError(f"checkpoint: Adam state of {exp_avg.shape} values, the model has "
                              f"{c.exp_avg.shape[0]} parameters")
        c.exp_avg[:], c.exp_avg_sq[:] = exp_avg, exp_avg_sq
        c.step_count = int(adam["step"])
        c.learning_rate = float(adam["lr"])
        states = d.get("np_action_generators")
        if d.get("np_generator") is not None and states is not None and len(states) == len(self.action_rngs):
            self.shuffle_rng.bit_generator.state = d["np_generator"]
            for g, state in zip(self.action_rngs, states):
                g.bit_generator.state = state
        else:  # another backend's checkpoint
            self._seed_streams(iteration)
