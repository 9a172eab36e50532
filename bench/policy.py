"""The policy of rungs R6/R7: CleanRL's PPO actor for CartPole (4 -> 64 -> 64 -> 2, tanh,
orthogonal init), sampled from its categorical distribution under ``torch.inference_mode``."""

from __future__ import annotations

import math

import numpy as np


def set_torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


class Policy:
    """``policy(obs) -> int64 actions`` for a batch of float32 observations."""

    def __init__(self, obs_dim: int = 4, num_actions: int = 2, hidden: int = 64, seed: int = 0):
        import torch
        from torch import nn

        torch.manual_seed(seed)

        def layer(n_in: int, n_out: int, gain: float) -> nn.Linear:
            lin = nn.Linear(n_in, n_out)
            nn.init.orthogonal_(lin.weight, gain)
            nn.init.zeros_(lin.bias)
            return lin

        self.actor = nn.Sequential(
            layer(obs_dim, hidden, math.sqrt(2)), nn.Tanh(),
            layer(hidden, hidden, math.sqrt(2)), nn.Tanh(),
            layer(hidden, num_actions, 0.01),
        )
        self.torch = torch
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            logits = self.actor(torch.from_numpy(obs))
            probs = torch.softmax(logits, dim=-1)
            actions = torch.multinomial(probs, 1, generator=self.generator).squeeze(1)
        return actions.numpy()
