"""The fast float32 tanh of the policy network agrees with torch.tanh, forward and backward."""

import torch

from fastsample.learning.fast_tanh import MIN_ELEMENTS, FastTanh, _FastTanhFn, fast_tanh


def test_values_match_torch_within_float32_rounding():
    x = torch.cat([torch.linspace(-20, 20, 400_001), torch.tensor([0.0, -0.0, 1e-30, 7.9, -7.9, 1e30, -1e30])])
    assert x.numel() >= MIN_ELEMENTS
    y = fast_tanh(x)
    ref = torch.tanh(x.double())
    assert (y.double() - ref).abs().max().item() < 5e-7
    assert y.abs().max().item() <= 1.0
    assert torch.equal(fast_tanh(-x), -y)  # odd


def test_gradient_matches_torch():
    x = (torch.randn(257, 33) * 3).requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    g = torch.randn(257, 33)
    (_FastTanhFn.apply(x) * g).sum().backward()
    (torch.tanh(x2) * g).sum().backward()
    assert (x.grad - x2.grad).abs().max().item() < 2e-6


def test_small_or_non_float32_tensors_use_torch_and_inference_mode_works():
    x = torch.randn(10, dtype=torch.float64)
    assert torch.equal(FastTanh()(x), torch.tanh(x))
    small = torch.randn(4, 5)
    assert torch.equal(FastTanh()(small), torch.tanh(small))
    with torch.inference_mode():
        y = FastTanh()(torch.randn(256, 256))
    assert y.shape == (256, 256)
