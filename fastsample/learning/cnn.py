"""The CNN actor-critic for image observations (a rank-3 ``Box``, ``(H, W, C)``, e.g. MinAtar's
10x10xC grids), with the interface of :class:`fastsample.learning.ppo.ActorCritic`.

Architecture (Young & Tian 2019, the MinAtar paper's network, as a PPO actor-critic):

* the observation arrives **flattened** (``(N, H*W*C)`` float32, as the runners store every
  observation) in the env's ``(H, W, C)`` order and is viewed as ``(N, H, W, C)``, then permuted
  to torch's ``(N, C, H, W)`` (no copy: the convolution reads the strided view);
* a 3x3 convolution with ``conv_channels`` output channels (16), stride 1, no padding, ReLU;
  10x10 becomes 8x8, so 16 * 8 * 8 = 1024 features;
* dense layers of ``hidden_sizes`` (128) with ``activation`` (relu for the MinAtar presets);
* a policy head (categorical logits, or a Gaussian mean with a state-independent log-std for
  ``Box`` actions) and a value head.

**Shared torso.** The convolution and the dense layers are one torso shared by both heads, as in
the MinAtar paper's actor-critic and in CleanRL's Atari PPO: every forward (acting, the update,
the truncation bootstraps) runs the torso once instead of twice, which halves the dominant cost
on a small CPU (measured, one torch thread on this 2-core machine: a PPO update of the Breakout
preset's batch, 8192 transitions x 4 epochs of 8 minibatches, 0.55 s shared vs 1.04 s with two
separate torsos; acting for 64 envs 0.65 ms vs 1.15 ms). The price is that the value loss
shapes the policy's features. Measured on Breakout with its preset (seed 1, training return over
the last 100 episodes): separate torsos learn a little faster per step at first (12.2 vs 10.7 at
0.49 M steps, 16.2 vs 14.0 at 0.98 M) and are level by 1.5 M (16.0 vs 17.6), while each step
costs 1.6x the wall time (beside a shared-torso run of seed 2 on the shared 2-core machine,
which was level or ahead at equal wall time: 18.2 vs 16.2 after about 670 s).
``shared=False`` builds the two separate torsos.

Initialisation as the MLP's (CleanRL): orthogonal, gain sqrt(2) for the convolution and the
hidden layers, 0.01 for the policy head, 1 for the value head, zero biases.

The parameters are ordered ``log_std`` (Box actions only), torso, policy head, value head; like
the MLP, :meth:`flat_parameters` turns them into views of one flat tensor (the optimiser state and
the checkpoints' ``runner.model`` are over that layout, under these ``state_dict`` names).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from fastsample.learning.ppo import PolicyModel

__all__ = ["CNNActorCritic", "is_image_space", "parse_channels"]


def is_image_space(space) -> bool:
    """Whether ``space`` is an image observation space this model takes: a rank-3 ``Box``
    ``(H, W, C)``."""
    shape = getattr(space, "shape", None)
    return shape is not None and len(shape) == 3


def parse_channels(text) -> tuple[int, ...]:
    """``"16"`` or ``"16,32"`` -> output channels of the 3x3 stride-1 conv layers."""
    try:
        sizes = tuple(int(s) for s in str(text).split(",") if s.strip())
    except ValueError:
        sizes = ()
    if not sizes or any(s < 1 for s in sizes):
        raise ValueError(f"conv channels must be comma-separated positive ints, got {text!r}")
    return sizes


def _init(layer: nn.Module, gain: float) -> nn.Module:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.constant_(layer.bias, 0.0)
    return layer


def _torso(shape: tuple[int, int, int], channels: tuple[int, ...], hidden: tuple[int, ...],
           activation: str) -> tuple[nn.Sequential, int]:
    """Conv layers (3x3, stride 1, no padding, ReLU), flatten, dense layers; and its output width."""
    H, W, C = shape
    act = nn.Tanh if activation == "tanh" else nn.ReLU
    layers: list[nn.Module] = []
    c_in = C
    for c_out in channels:
        if H < 3 or W < 3:
            raise ValueError(f"observation {shape}: too small for {len(channels)} 3x3 conv layers")
        layers += [_init(nn.Conv2d(c_in, c_out, 3, stride=1), math.sqrt(2)), nn.ReLU()]
        c_in, H, W = c_out, H - 2, W - 2
    layers.append(nn.Flatten())
    n = c_in * H * W
    for h in hidden:
        layers += [_init(nn.Linear(n, h), math.sqrt(2)), act()]
        n = h
    return nn.Sequential(*layers), n


class CNNActorCritic(PolicyModel):
    """Conv torso + policy and value heads for ``(H, W, C)`` observations given flattened.

    ``CNNActorCritic(obs_shape, act_space, cfg)``: ``cfg`` is a
    :class:`~fastsample.train_config.TrainConfig` (its ``conv_channels``, ``hidden_sizes``,
    ``activation`` and ``init_log_std`` are read; ``None``: the MinAtar network, 16 channels and
    128 ReLU units). Same calls as :class:`~fastsample.learning.ppo.ActorCritic`: ``act``,
    ``evaluate``, ``greedy``, ``value``, ``flat_parameters``, ``zero_grad_flat``,
    ``action_dim``, ``discrete``.
    """

    def __init__(self, obs_shape, act_space, cfg=None, *, shared: bool = True):
        super().__init__()
        import gymnasium as gym

        from fastsample.train_config import parse_hidden

        shape = tuple(int(s) for s in obs_shape)
        if len(shape) != 3:
            raise ValueError(f"CNNActorCritic takes (H, W, C) observations, not shape {shape}")
        self.obs_shape = shape
        self.obs_dim = int(np.prod(shape))
        channels = parse_channels(getattr(cfg, "conv_channels", "16"))
        hidden = parse_hidden(cfg.hidden_sizes) if cfg is not None else (128,)
        activation = cfg.activation if cfg is not None else "relu"
        init_log_std = float(cfg.init_log_std) if cfg is not None else 0.0

        self.discrete = isinstance(act_space, gym.spaces.Discrete)
        if self.discrete:
            n_out = int(act_space.n)
        elif isinstance(act_space, gym.spaces.Box):
            n_out = int(np.prod(act_space.shape))
        else:
            raise TypeError(f"PPO supports Discrete and Box action spaces, not {act_space}")
        self.action_dim = n_out
        if not self.discrete:  # first, as in ActorCritic
            self.log_std = nn.Parameter(torch.full((n_out,), init_log_std))
        self.shared = bool(shared)
        self.torso, width = _torso(shape, channels, hidden, activation)
        if not self.shared:
            self.critic_torso, _ = _torso(shape, channels, hidden, activation)
        self.policy_head = _init(nn.Linear(width, n_out), 0.01)
        self.value_head = _init(nn.Linear(width, 1), 1.0)

    # -- the layout ---------------------------------------------------------------------------

    def _images(self, obs: torch.Tensor) -> torch.Tensor:
        """``(N, H*W*C)`` (or ``(N, H, W, C)``) -> ``(N, C, H, W)``, a view."""
        H, W, C = self.obs_shape
        return obs.reshape(-1, H, W, C).permute(0, 3, 1, 2)

    def _features(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self._images(obs)
        f = self.torso(x)
        return f, (f if self.shared else self.critic_torso(x))

    # -- the ActorCritic interface -------------------------------------------------------------

    def _outputs(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f, fv = self._features(obs)
        return self.policy_head(f), self.value_head(fv).squeeze(-1)

    def _policy_out(self, obs: torch.Tensor) -> torch.Tensor:
        return self.policy_head(self.torso(self._images(obs)))  # the value head is not run

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        x = self._images(obs)
        return self.value_head((self.torso if self.shared else self.critic_torso)(x)).squeeze(-1)
