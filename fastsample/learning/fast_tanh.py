"""A tanh for CPU float32 tensors that is ~10x faster than ``torch.tanh``.

Profiling PPO's update on this CPU build of torch showed ``aten::tanh`` taking ~45% of the
learner's time (about 3 ns per element, a scalar libm-style path) for the CleanRL 64x64 tanh
networks. Here tanh is a rational function ``x * P(x^2) / Q(x^2)`` on ``x`` clamped to
``[-7.9, 7.9]`` (degrees 13/6), whose coefficients we fitted by iteratively reweighted least
squares to a float64 maximum error of 1.4e-9; in float32 the maximum absolute error is 3.4e-7
(a few ulp) and ``|tanh| < 1`` always. It is a loop Numba vectorises (AVX2; ``error_model=
"numpy"`` drops the zero-division check that would stop it), with the backward pass
``g * (1 - y^2)`` fused into one loop. Measured: 0.35 ms vs 3.3 ms for 1M elements. Used for the policy network only; environment
kernels never use fastmath.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit
from torch import nn

_CLIP = np.float32(7.9)
_P0, _P1, _P2, _P3, _P4, _P5, _P6 = (np.float32(c) for c in (
    0.9999999925601866, 0.13124518626749826, 0.003149611810420526, 1.1646997971588131e-05,
    -2.234849687384023e-08, 6.393174357594971e-11, -1.1675864802943308e-13))
_Q0, _Q1, _Q2, _Q3 = (np.float32(c) for c in (1.0, 0.4645784853333658, 0.02467581952829169, 0.0002613442346832809))
_ONE = np.float32(1.0)


@njit(cache=True, fastmath=True, error_model="numpy")
def _forward(x, y):
    for i in range(x.shape[0]):
        v = min(max(x[i], -_CLIP), _CLIP)
        s = v * v
        num = ((((((_P6 * s + _P5) * s + _P4) * s + _P3) * s + _P2) * s + _P1) * s + _P0)
        den = (((_Q3 * s + _Q2) * s + _Q1) * s + _Q0)
        y[i] = v * num / den


@njit(cache=True, fastmath=True, error_model="numpy")
def _backward(y, g, out):
    for i in range(y.shape[0]):
        out[i] = g[i] * (_ONE - y[i] * y[i])


class _FastTanhFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().contiguous()
        y = torch.empty_like(x)
        _forward(x.view(-1).numpy(), y.view(-1).numpy())
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        grad = grad.contiguous()
        out = torch.empty_like(grad)
        _backward(y.view(-1).numpy(), grad.view(-1).numpy(), out.view(-1).numpy())
        return out


# Below this many elements the call overhead (~15 us for autograd + Numba dispatch) eats most
# of the gain (measured crossover of forward+backward at ~32k elements, 1.6x at 64k), so small
# and medium networks keep torch's own numerics, which the env presets were tuned with.
MIN_ELEMENTS = 1 << 17


def fast_tanh(x: torch.Tensor) -> torch.Tensor:
    """tanh of ``x``: the fast kernel for large CPU float32 tensors, ``torch.tanh`` otherwise."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or x.numel() < MIN_ELEMENTS:
        return torch.tanh(x)
    return _FastTanhFn.apply(x)


class FastTanh(nn.Module):
    """``nn.Tanh`` with :func:`fast_tanh`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_tanh(x)
