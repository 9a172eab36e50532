"""The torch learner behind the :mod:`fastsample.learning.learner` interface: the torch model
(:func:`fastsample.learning.ppo.make_model`: the MLP actor-critic, or the CNN for image
observations), ``torch.optim.Adam`` over its one flat parameter, :func:`~fastsample.learning.ppo.ppo_update`,
and torch generators for the actions and the shuffles. Any torch device; the runner hands it
NumPy arrays and gets NumPy arrays back.

Random streams: ``torch.manual_seed(seed)`` before the model is built (its initialisation); the
rollout's actions and the minibatch shuffles from one generator seeded ``seed``; the
``--double-buffer`` halves' actions from generators seeded ``2 * seed + 1 + h``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fastsample.learning.learner import PPOStats
from fastsample.learning.ppo import compute_gae, make_model, ppo_update

__all__ = ["TorchLearner", "adam_state", "load_adam_state"]


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
    from fastsample.train_config import ConfigError

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


def _tensor(a: np.ndarray, device: torch.device) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t if device.type == "cpu" else t.to(device)


class TorchLearner:
    """:class:`fastsample.learning.learner.Learner` on torch (any device, any policy model)."""

    backend = "torch"

    def __init__(self, cfg, obs_space, act_space, device: str = "cpu", *, num_streams: int = 1):
        self.cfg = cfg
        self.dev = torch.device(device)
        self.device = str(self.dev)
        if cfg.torch_threads:
            torch.set_num_threads(cfg.torch_threads)
        torch.manual_seed(cfg.seed)
        self.model = make_model(cfg, obs_space, act_space).to(self.dev)
        self.flat = self.model.flat_parameters()
        self.optimizer = torch.optim.Adam([self.flat], lr=cfg.learning_rate, eps=1e-5)
        self.obs_dim = int(np.prod(obs_space.shape))
        self.action_dim = int(self.model.action_dim)
        self.discrete = type(act_space).__name__ == "Discrete"
        self.num_params = int(self.flat.numel())
        self.num_streams = num_streams
        self.grad_hook = None
        self.adv_moments_hook = None
        self.generator = torch.Generator(device=self.dev)
        self.generator.manual_seed(cfg.seed)
        self.half_generators = []  # --double-buffer: one action generator per half
        for h in range(num_streams - 1):
            g = torch.Generator(device=self.dev)
            g.manual_seed(cfg.seed * 2 + 1 + h)
            self.half_generators.append(g)
        self.streams = [self.generator, *self.half_generators]

    @property
    def learning_rate(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    @learning_rate.setter
    def learning_rate(self, lr: float) -> None:
        self.optimizer.param_groups[0]["lr"] = lr

    # -- rollout and evaluation -------------------------------------------------------------------

    def warmup(self) -> None:
        """One forward/backward pass on dummy data and one greedy inference (no RNG draws)."""
        x = torch.zeros((8, self.obs_dim), device=self.dev)
        a = (torch.zeros(8, dtype=torch.int64, device=self.dev) if self.discrete
             else torch.zeros((8, self.action_dim), device=self.dev))
        logp, ent, v = self.model.evaluate(x, a)
        (logp.sum() + ent.sum() + v.sum()).backward()
        self.model.zero_grad_flat()
        with torch.no_grad():
            self.model.act(x, greedy=True)

    @torch.no_grad()
    def act(self, obs: np.ndarray, stream: int, out: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        action, logp, value = self.model.act(_tensor(obs, self.dev), generator=self.streams[stream])
        actions, logps, values = out
        actions[...] = action.cpu().numpy().reshape(actions.shape)
        logps[...] = logp.cpu().numpy()
        values[...] = value.cpu().numpy()

    @torch.no_grad()
    def value(self, obs: np.ndarray) -> np.ndarray:
        return self.model.value(_tensor(np.asarray(obs, np.float32), self.dev)).cpu().numpy()

    @torch.no_grad()
    def greedy(self, obs: np.ndarray) -> np.ndarray:
        return self.model.greedy(_tensor(np.asarray(obs, np.float32), self.dev)).cpu().numpy()

    # -- learning ---------------------------------------------------------------------------------

    @torch.no_grad()
    def gae(self, rewards, values, dones, last_value):
        d = self.dev
        adv, ret = compute_gae(_tensor(np.asarray(rewards, np.float32), d), _tensor(np.asarray(values, np.float32), d),
                               _tensor(np.asarray(dones, np.float32), d), _tensor(np.asarray(last_value, np.float32), d),
                               self.cfg.gamma, self.cfg.gae_lambda)
        return adv.cpu().numpy(), ret.cpu().numpy()

    def update(self, batch: dict[str, np.ndarray]) -> PPOStats:
        cfg = self.cfg
        b = {k: _tensor(v, self.dev) for k, v in batch.items()}
        return ppo_update(self.model, self.optimizer, b, update_epochs=cfg.update_epochs,
                          num_minibatches=cfg.num_minibatches, clip_coef=cfg.clip_coef, vf_coef=cfg.vf_coef,
                          ent_coef=cfg.ent_coef, max_grad_norm=cfg.max_grad_norm, norm_adv=cfg.norm_adv,
                          clip_vloss=cfg.clip_vloss, target_kl=cfg.target_kl, generator=self.generator,
                          grad_hook=self.grad_hook, adv_moments_hook=self.adv_moments_hook)

    # -- state ------------------------------------------------------------------------------------

    def flat_params(self) -> np.ndarray:
        return self.flat.detach().cpu().numpy().copy()

    def set_flat_params(self, flat: np.ndarray) -> None:
        with torch.no_grad():
            self.flat.copy_(torch.from_numpy(np.asarray(flat, np.float32)))

    def load_weights(self, arrays: dict[str, np.ndarray]) -> None:
        from fastsample.checkpoint import to_torch

        self.model.load_state_dict(to_torch(dict(arrays)))

    def state_dict(self) -> dict[str, Any]:
        return {"model": {k: v.detach().cpu().numpy().copy() for k, v in self.model.state_dict().items()},
                "adam": adam_state(self.optimizer, self.flat),
                "generator": self.generator.get_state(),
                "half_generators": [g.get_state() for g in self.half_generators],
                "torch_rng": torch.get_rng_state()}

    def load_state_dict(self, d: dict[str, Any], iteration: int) -> None:
        """Either backend's checkpoint: the same weights and Adam state; this backend's generators
        when it wrote them, fresh ones for ``iteration`` otherwise."""
        from fastsample.checkpoint import to_torch

        self.load_weights(d["model"])
        load_adam_state(self.optimizer, self.flat, d["adam"])
        halves = d.get("half_generators") or []
        if d.get("generator") is not None and len(halves) == len(self.half_generators):
            self.generator.set_state(to_torch(d["generator"]))
            for g, state in zip(self.half_generators, halves):
                g.set_state(to_torch(state))
        else:  # another backend's checkpoint: fresh generators for this point of the run
            for k, g in enumerate(self.streams):
                g.manual_seed((self.cfg.seed * 1_000_003 + int(iteration)) * 4 + k)
        if d.get("torch_rng") is not None:
            torch.set_rng_state(to_torch(d["torch_rng"]))
