"""PPO: the actor-critic model, GAE / V-trace targets, and the clipped-surrogate update.

Read top to bottom, this is CleanRL's ``ppo.py`` minus the env loop:

* :class:`ActorCritic` — separate actor and critic MLPs, orthogonal init (gain sqrt(2) for hidden
  layers, 0.01 for the policy head, 1 for the value head); a categorical policy for ``Discrete``
  actions, a diagonal Gaussian with a state-independent log-std for ``Box`` actions.
* :func:`compute_gae` — generalised advantage estimation. ``dones[t]`` means the episode ended
  with transition ``t``; truncated episodes are bootstrapped by the caller, who adds
  ``gamma * V(final_obs)`` to the reward of the truncating transition (CleanRL instead treats a
  truncation as a termination).
* :func:`vtrace` — V-trace targets for off-policy (lagged) batches.
* :func:`ppo_update` — epochs of shuffled minibatches: clipped surrogate, optionally clipped
  value loss, entropy bonus, per-minibatch advantage normalisation, global grad-norm clipping.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from fastsample.learning.fast_tanh import FastTanh
from fastsample.learning.learner import PPOStats
from fastsample.learning.normalize import RunningMeanStd

__all__ = ["ActorCritic", "RunningMeanStd", "compute_gae", "vtrace", "ppo_update", "PPOStats", "make_model"]


def _layer(n_in: int, n_out: int, gain: float) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.constant_(layer.bias, 0.0)
    return layer


def _mlp(n_in: int, hidden: tuple[int, ...], n_out: int, out_gain: float, activation: str) -> nn.Sequential:
    act = FastTanh if activation == "tanh" else nn.ReLU
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [_layer(n_in, h, math.sqrt(2)), act()]
        n_in = h
    layers.append(_layer(n_in, n_out, out_gain))
    return nn.Sequential(*layers)


class PolicyModel(nn.Module):
    """What every torch policy model shares (the MLP :class:`ActorCritic`, the CNN of
    :mod:`fastsample.learning.cnn`): the flat parameter vector, sampling, log-probs and entropy.
    A model sets ``discrete``, ``action_dim`` (and ``log_std`` for a Gaussian policy) and
    implements ``_outputs(obs) -> (policy logits or mean, value)``, ``_policy_out(obs)`` (the
    actor alone) and ``value(obs)``."""

    def flat_parameters(self) -> nn.Parameter:
        """Make every parameter (and its gradient) a view of one flat tensor and return it.

        The optimiser and grad-norm clipping then work on one tensor instead of a dozen small
        ones, which matters on a CPU where each op costs microseconds: Adam and clipping drop
        from ~20 ops per parameter to ~10 ops in all."""
        params = list(self.parameters())
        flat = nn.Parameter(torch.cat([p.detach().reshape(-1) for p in params]))
        flat.grad = torch.zeros_like(flat)
        offset = 0
        for p in params:
            n = p.numel()
            p.data = flat.data[offset:offset + n].view_as(p)
            p.grad = flat.grad[offset:offset + n].view_as(p)
            offset += n
        self._flat = [flat]  # a list keeps it out of self.parameters()
        return flat

    def zero_grad_flat(self) -> None:
        self._flat[0].grad.zero_()

    def greedy(self, obs: torch.Tensor) -> torch.Tensor:
        """The greedy action (argmax or Gaussian mean), actor only."""
        out = self._policy_out(obs)
        return out.argmax(-1) if self.discrete else out

    def act(self, obs: torch.Tensor, *, greedy: bool = False, generator: torch.Generator | None = None):
        out, value = self._outputs(obs)
        if self.discrete:
            logp_all = torch.log_softmax(out, dim=-1)
            if greedy:
                action = out.argmax(-1)
            else:  # Gumbel-max: one uniform draw per logit, no multinomial round trip
                u = torch.rand(out.shape, generator=generator, device=out.device)
                action = (logp_all - torch.log(-torch.log(u.clamp_(1e-20, 1.0)))).argmax(-1)
            logp = logp_all.gather(-1, action.unsqueeze(-1)).squeeze(-1)
        else:
            std = self.log_std.exp()
            if greedy:
                action = out
            else:
                action = out + std * torch.randn(out.shape, generator=generator, device=out.device)
            logp = _normal_logp(action, out, self.log_std)
        return action, logp, value

    def evaluate(self, obs: torch.Tensor, action: torch.Tensor):
        out, value = self._outputs(obs)
        if self.discrete:
            logp_all = torch.log_softmax(out, dim=-1)
            logp = logp_all.gather(-1, action.long().unsqueeze(-1)).squeeze(-1)
            entropy = -(logp_all.exp() * logp_all).sum(-1)
        else:
            logp = _normal_logp(action, out, self.log_std)
            entropy = (0.5 + 0.5 * math.log(2 * math.pi) + self.log_std).sum().expand(out.shape[0])
        return logp, entropy, value


class ActorCritic(PolicyModel):
    """Separate actor and critic MLPs for a flat observation vector.

    ``act(obs)`` samples (or, greedy, takes the mode of) the policy and returns
    ``(action, log_prob, value)``; ``evaluate(obs, action)`` returns
    ``(log_prob, entropy, value)`` for the update.
    """

    def __init__(self, obs_dim: int, action_space, hidden: tuple[int, ...] = (64, 64),
                 activation: str = "tanh", init_log_std: float = 0.0):
        super().__init__()
        import gymnasium as gym

        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        if self.discrete:
            n_out = int(action_space.n)
        elif isinstance(action_space, gym.spaces.Box):
            n_out = int(np.prod(action_space.shape))
        else:
            raise TypeError(f"PPO supports Discrete and Box action spaces, not {action_space}")
        self.action_dim = n_out
        self.critic = _mlp(obs_dim, hidden, 1, 1.0, activation)
        self.actor = _mlp(obs_dim, hidden, n_out, 0.01, activation)
        if not self.discrete:
            self.log_std = nn.Parameter(torch.full((n_out,), float(init_log_std)))

    def _outputs(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.actor(obs), self.value(obs)

    def _policy_out(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(obs)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)


def _normal_logp(action: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    z = (action - mean) * torch.exp(-log_std)
    return (-0.5 * z * z - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


def compute_gae(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor, last_value: torch.Tensor,
                gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and returns, shapes ``(T, N)``.

    ``values[t] = V(s_t)``; ``dones[t] = 1`` when transition ``t`` ended its episode (then
    ``s_{t+1}`` is the next episode's first observation and is not bootstrapped);
    ``last_value = V(s_T)``. Truncations must already carry ``gamma * V(final_obs)`` in their
    reward.
    """
    T = rewards.shape[0]
    advantages = torch.empty_like(rewards)
    not_done = 1.0 - dones
    next_adv = torch.zeros_like(last_value)
    next_value = last_value
    for t in range(T - 1, -1, -1):
        delta = rewards[t] + gamma * next_value * not_done[t] - values[t]
        next_adv = delta + gamma * lam * not_done[t] * next_adv
        advantages[t] = next_adv
        next_value = values[t]
    return advantages, advantages + values


def vtrace(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor, last_value: torch.Tensor,
           log_rhos: torch.Tensor, gamma: float, lam: float = 1.0, rho_bar: float = 1.0, c_bar: float = 1.0
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """V-trace (Espeholt et al. 2018): value targets ``vs`` and policy-gradient advantages
    ``rho_t (r_t + gamma v_{t+1} - V(s_t))``, for a batch acted by an older policy.
    ``log_rhos = log pi(a|s) - log mu(a|s)``. Same conventions as :func:`compute_gae`."""
    T = rewards.shape[0]
    rhos = torch.exp(log_rhos)
    clipped_rhos = rhos.clamp(max=rho_bar)
    cs = lam * rhos.clamp(max=c_bar)
    not_done = 1.0 - dones
    next_values = torch.cat([values[1:], last_value.unsqueeze(0)], 0)
    deltas = clipped_rhos * (rewards + gamma * not_done * next_values - values)
    vs_minus_v = torch.empty_like(rewards)
    acc = torch.zeros_like(last_value)
    for t in range(T - 1, -1, -1):
        acc = deltas[t] + gamma * not_done[t] * cs[t] * acc
        vs_minus_v[t] = acc
    vs = vs_minus_v + values
    next_vs = torch.cat([vs[1:], last_value.unsqueeze(0)], 0)
    advantages = clipped_rhos * (rewards + gamma * not_done * next_vs - values)
    return advantages, vs


def ppo_update(model: ActorCritic, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor], *,
               update_epochs: int, num_minibatches: int, clip_coef: float, vf_coef: float, ent_coef: float,
               max_grad_norm: float, norm_adv: bool = True, clip_vloss: bool = True, target_kl: float = 0.0,
               generator: torch.Generator | None = None, grad_hook=None, adv_moments_hook=None) -> PPOStats:
    """Epochs of minibatch PPO-clip on a flat batch with keys ``obs, actions, logprobs,
    advantages, returns, values`` (``logprobs``: the behaviour policy's, so for a lagged batch
    the ratio corrects for the lag before clipping).

    Distributed hooks (:mod:`fastsample.learning.learner`; a model with ``flat_parameters()``):
    ``grad_hook(g)`` changes the flat gradient ``g`` (a float32 NumPy array, staged through the
    CPU for another device) in place after ``backward`` and before clipping and Adam;
    ``adv_moments_hook(m)`` reduces a minibatch's advantage moments ``m = [count, sum, sum of
    squares]`` (float64) in place, and the advantages are normalised with the mean and unbiased
    std of the reduced moments."""
    obs, actions, old_logp = batch["obs"], batch["actions"], batch["logprobs"]
    advantages, returns, old_values = batch["advantages"], batch["returns"], batch["values"]
    n = obs.shape[0]
    mb = n // num_minibatches
    flat = getattr(model, "_flat", None)
    params = flat if flat is not None else list(model.parameters())
    stats = PPOStats()
    sums: list[torch.Tensor] = []  # one row per minibatch, read back once at the end (no per-step sync)
    for epoch in range(update_epochs):
        perm = torch.randperm(n, generator=generator, device=obs.device)
        stop = False
        for start in range(0, n, mb):
            idx = perm[start:start + mb]
            new_logp, entropy, new_value = model.evaluate(obs[idx], actions[idx])
            log_ratio = new_logp - old_logp[idx]
            ratio = log_ratio.exp()
            adv = advantages[idx]
            if norm_adv and adv_moments_hook is not None:
                a64 = adv.detach().double()
                m = np.array([a64.shape[0], float(a64.sum()), float((a64 * a64).sum())], np.float64)
                adv_moments_hook(m)
                mean = m[1] / m[0]
                std = math.sqrt(max(m[2] - m[0] * mean * mean, 0.0) / (m[0] - 1)) if m[0] > 1 else math.nan
                adv = (adv - mean) / (std + 1e-8)
            elif norm_adv:
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            # clipped surrogate (maximise -> minimise its negative)
            pg_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - clip_coef, 1 + clip_coef)).mean()
            if clip_vloss:
                v_clipped = old_values[idx] + (new_value - old_values[idx]).clamp(-clip_coef, clip_coef)
                v_loss = 0.5 * torch.max((new_value - returns[idx]) ** 2, (v_clipped - returns[idx]) ** 2).mean()
            else:
                v_loss = 0.5 * ((new_value - returns[idx]) ** 2).mean()
            ent = entropy.mean()
            loss = pg_loss - ent_coef * ent + vf_coef * v_loss
            if flat is not None:
                flat[0].grad.zero_()
            else:
                optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_hook is not None:
                g = flat[0].grad
                if g.device.type == "cpu":
                    grad_hook(g.numpy())  # a view: changed in place
                else:
                    host = g.cpu().numpy()
                    grad_hook(host)
                    g.copy_(torch.from_numpy(host))
            grad_norm = nn.utils.clip_grad_norm_(params, max_grad_norm)
            optimizer.step()
            with torch.no_grad():
                approx_kl = ((ratio - 1) - log_ratio).mean()
                clipfrac = ((ratio - 1.0).abs() > clip_coef).float().mean()
                sums.append(torch.stack([pg_loss.detach(), v_loss.detach(), ent.detach(), approx_kl,
                                         clipfrac, grad_norm.detach()]))
            if target_kl and float(approx_kl) > target_kl:
                stop = True
                break
        stats.epochs = epoch + 1
        if stop:
            break
    if sums:
        m = torch.stack(sums).mean(0).tolist()
        stats.policy_loss, stats.value_loss, stats.entropy, stats.approx_kl, stats.clipfrac, stats.grad_norm = m
    return stats


def make_model(cfg, obs_space, act_space) -> nn.Module:
    """The torch actor-critic of a ``TrainConfig`` for gymnasium spaces: the CNN of
    :mod:`fastsample.learning.cnn` for image observations (a rank-3 observation space, e.g.
    MinAtar's 10x10xC), the MLP :class:`ActorCritic` otherwise. Both take flat float32
    observations."""
    from fastsample.learning.learner import needs_torch_model
    from fastsample.train_config import parse_hidden

    if needs_torch_model(cfg, obs_space):
        from fastsample.learning.cnn import CNNActorCritic  # the CNN policy (image observations)

        return CNNActorCritic(obs_space.shape, act_space, cfg)

    return ActorCritic(int(np.prod(obs_space.shape)), act_space, parse_hidden(cfg.hidden_sizes), cfg.activation,
                       cfg.init_log_std)
