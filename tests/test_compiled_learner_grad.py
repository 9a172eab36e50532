"""The compiled learner (fastsample.learning.compiled) against torch.

* Gradients: on random batches, the gradient of every parameter equals torch autograd's for the
  same loss -- the trainer's own ``ppo_update`` (one epoch, one minibatch, an SGD optimiser with
  lr 0 and no effective clipping) on ``ActorCritic``. Tolerance, per parameter tensor ``p``:
  ``max |g_compiled - g_torch| <= 1e-4 * max |g_torch,p| + 1e-6 * ||g_torch||_2`` (all
  parameters), i.e. rtol 1e-4 with an absolute floor of 1e-6 of the whole gradient's norm. Both
  heads, tanh and ReLU, and each loss option on and off (advantage normalisation, value
  clipping, entropy bonus, surrogate clipping active or not).
* Whole steps: clipped gradients, parameters after Adam steps and the update's stats against
  ``ppo_update`` with ``torch.optim.Adam(eps=1e-5)`` and grad-norm clipping.
* Adam alone against ``torch.optim.Adam``; grad-norm clipping against ``clip_grad_norm_``.
* GAE and V-trace against the trainer's ``compute_gae`` / ``vtrace`` (called, not copied).
* No kernel has a masked load, store, gather or scatter in its optimised IR, under every codegen
  target of ``fastsample.check.codegen_targets()`` (a fresh process with an empty numba cache each).
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import subprocess
import sys
import tempfile

import gymnasium as gym
import numpy as np
import pytest
import torch

from fastsample.check import codegen_targets
from fastsample.learning import compiled
from fastsample.learning.compiled import CompiledPPOLearner
from fastsample.learning.ppo import ActorCritic, compute_gae, ppo_update, vtrace
from tests import support

RTOL = 1e-4
ATOL_OF_NORM = 1e-6


def make_pair(discrete: bool, hidden=(64, 64), activation="tanh", obs_dim=4, action_dim=2, seed=0, **opts):
    """A torch model (flat parameters, perturbed so that biases and log-std are not zero) and a
    compiled learner holding the same parameters."""
    torch.manual_seed(seed)
    space = gym.spaces.Discrete(action_dim) if discrete else gym.spaces.Box(-1, 1, (action_dim,), np.float32)
    model = ActorCritic(obs_dim, space, hidden, activation)
    flat = model.flat_parameters()
    with torch.no_grad():
        flat.add_(0.05 * torch.randn(flat.shape))
    learner = CompiledPPOLearner(obs_dim, action_dim, discrete, hidden, activation, max_minibatch=64, **opts)
    learner.load_state_arrays({k: v.detach().numpy() for k, v in model.state_dict().items()})
    return model, flat, learner


def make_batch(model: ActorCritic, n: int, seed: int, *, logp_noise=0.3, value_noise=0.5):
    """Random observations and actions; behaviour log-probs and old values near the model's own,
    so some ratios and value changes fall outside the clip range and some inside."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn((n, model.critic[0].in_features), generator=g) * 1.5
    with torch.no_grad():
        if model.discrete:
            actions = torch.randint(0, model.action_dim, (n,), generator=g)
        else:
            actions = torch.randn((n, model.action_dim), generator=g)
        logp, _, value = model.evaluate(obs, actions)
    return {
        "obs": obs, "actions": actions,
        "logprobs": logp + logp_noise * torch.randn(n, generator=g),
        "advantages": torch.randn(n, generator=g) * 2 + 0.3,
        "returns": value + torch.randn(n, generator=g),
        "values": value + value_noise * torch.randn(n, generator=g),
    }


def np_batch(batch):
    return {k: np.ascontiguousarray(v.numpy()) for k, v in batch.items()}


def torch_grad(model, flat, batch, **loss):
    """The gradient of the trainer's loss: ppo_update on the whole batch as one minibatch, an
    optimiser that does nothing, and clipping that never clips (coefficient exactly 1)."""
    opt = torch.optim.SGD([flat], lr=0.0)
    stats = ppo_update(model, opt, batch, update_epochs=1, num_minibatches=1, max_grad_norm=1e30,
                       generator=torch.Generator().manual_seed(0), **loss)
    return flat.grad.numpy().copy(), stats


def assert_grads_match(learner: CompiledPPOLearner, g_compiled: np.ndarray, g_torch: np.ndarray, what: str):
    floor = ATOL_OF_NORM * float(np.linalg.norm(g_torch))
    assert np.isfinite(g_compiled).all(), what
    for name, shape, off in learner.entries:
        n = int(np.prod(shape))
        a, b = g_compiled[off:off + n], g_torch[off:off + n]
        err = float(np.abs(a - b).max())
        tol = RTOL * float(np.abs(b).max()) + floor
        assert err <= tol, f"{what}: {name} max error {err:.3g} > tolerance {tol:.3g}"


def test_layout_is_the_torch_models():
    for discrete in (True, False):
        model, flat, learner = make_pair(discrete, hidden=(8, 5))
        sd = model.state_dict()
        views = learner.state_arrays()
        assert list(views) == list(sd)
        for k in sd:
            assert views[k].shape == tuple(sd[k].shape)
        np.testing.assert_array_equal(learner.params, flat.detach().numpy())


def test_tanh_coefficients_are_fast_tanhs():
    from fastsample.learning import fast_tanh

    for name in ("_CLIP", "_P0", "_P1", "_P2", "_P3", "_P4", "_P5", "_P6", "_Q0", "_Q1", "_Q2", "_Q3"):
        assert getattr(compiled, name) == getattr(fast_tanh, name), name


def test_module_does_not_import_torch():
    code = "import sys, fastsample.learning.compiled as c; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("discrete", [True, False], ids=["categorical", "gaussian"])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_forward_matches_torch(discrete, activation):
    model, _, learner = make_pair(discrete, hidden=(64, 64), activation=activation)
    obs = torch.randn((37, 4)) * 2
    out, value = learner.forward(obs.numpy())
    with torch.no_grad():
        np.testing.assert_allclose(out, model.actor(obs).numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(value, model.value(obs).numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("discrete", [True, False], ids=["categorical", "gaussian"])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_act_matches_torch(discrete, activation):
    """``act`` given the noise torch draws (same generator state): the same actions (categorical:
    identical; Gaussian: float32 tolerance), log-probs and values; greedy likewise."""
    model, _, learner = make_pair(discrete, activation=activation, action_dim=3)
    n = 300
    obs = torch.randn((n, 4), generator=torch.Generator().manual_seed(1)) * 1.5
    g_torch, g_noise = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    with torch.no_grad():
        a_t, lp_t, v_t = model.act(obs, generator=g_torch)
        ag_t, lpg_t, _ = model.act(obs, greedy=True)
    noise = (torch.rand if discrete else torch.randn)((n, 3), generator=g_noise).numpy()
    a, lp, v = learner.act(obs.numpy(), noise)
    ag, lpg, vg = learner.act(obs.numpy(), greedy=True)
    for ours, theirs in ((a, a_t), (ag, ag_t)):
        if discrete:
            assert ours.dtype == np.int64
            np.testing.assert_array_equal(ours, theirs.numpy())
        else:
            np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(lp, lp_t.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(lpg, lpg_t.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(v, v_t.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(vg, v)
    if discrete:
        assert len(np.unique(a)) == 3 and (a != ag).any()  # it really sampled


@pytest.mark.parametrize("discrete", [True, False], ids=["categorical", "gaussian"])
def test_split_act_is_the_whole(discrete, monkeypatch):
    """``act`` on at least ACT_SPLIT_MIN observations runs as two halves on two threads; sampled and
    greedy actions, log-probs and values are those of one call on the whole batch, bit for bit."""
    _, _, learner = make_pair(discrete, action_dim=3)
    n = 301  # unequal halves
    rng = np.random.default_rng(3)
    obs = rng.normal(size=(n, 4)).astype(np.float32) * 1.5
    noise = (1.0 - rng.random((n, 3), dtype=np.float32)) if discrete else rng.normal(size=(n, 3)).astype(np.float32)
    monkeypatch.setattr(compiled, "ACT_SPLIT_MIN", None)
    whole = [learner.act(obs, noise), learner.act(obs, greedy=True)]
    assert learner._half is None
    monkeypatch.setattr(compiled, "ACT_SPLIT_MIN", 64)
    split = [learner.act(obs, noise), learner.act(obs, greedy=True)]
    assert learner._half is not None  # the split path ran
    for w, s in zip(whole, split):
        for a, b in zip(w, s):
            np.testing.assert_array_equal(a, b)


def test_split_updates_are_reproducible(monkeypatch):
    """Split minibatches (two threads) give the same parameters, bit for bit, on every run from the
    same state: the halves and the order their gradients are combined in are fixed, whichever
    thread finishes first."""
    monkeypatch.setattr(compiled, "SPLIT_MIN", 128)
    model, _, _ = make_pair(True)
    b = np_batch(make_batch(model, 1024, seed=9))
    results = []
    for _ in range(3):
        _, _, learner = make_pair(True, learning_rate=3e-3)
        learner.update(dict(b), update_epochs=2, num_minibatches=4, rng=np.random.default_rng(0))
        assert learner._half is not None
        results.append(learner.params.copy())
    for p in results[1:]:
        np.testing.assert_array_equal(p, results[0])


def test_halves_on_the_calling_thread_are_the_two_threads_results(monkeypatch):
    """With PARALLEL_HALVES off (every core already has a rank of its own) the split halves run one
    after the other on the calling thread, with no helper thread: the same parameters and actions,
    bit for bit, as on two threads."""
    import concurrent.futures

    monkeypatch.setattr(compiled, "SPLIT_MIN", 128)
    monkeypatch.setattr(compiled, "ACT_SPLIT_MIN", 64)
    model, _, _ = make_pair(True)
    b = np_batch(make_batch(model, 1024, seed=9))
    obs = np.random.default_rng(4).normal(size=(301, 4)).astype(np.float32)
    results = []
    for parallel in (True, False):
        monkeypatch.setattr(compiled, "PARALLEL_HALVES", parallel)
        _, _, learner = make_pair(True, learning_rate=3e-3)
        learner.update(dict(b), update_epochs=2, num_minibatches=4, rng=np.random.default_rng(0))
        pool = learner._half["pool"]
        assert isinstance(pool, concurrent.futures.ThreadPoolExecutor) == parallel
        results.append((learner.params.copy(), learner.act(obs, greedy=True)))
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(results[0][0], results[1][0])


@pytest.mark.parametrize("local_ranks,cores,parallel", [(1, 2, True), (2, 2, False), (4, 16, True), (3, 4, False)])
def test_ranks_share_the_cores(monkeypatch, local_ranks, cores, parallel):
    """A node's ranks use the learner's second thread only where each rank has two cores."""
    from fastsample import distributed

    monkeypatch.setattr(compiled, "PARALLEL_HALVES", not parallel)
    monkeypatch.setattr(distributed.os, "sched_getaffinity", lambda pid: set(range(cores)))
    distributed._share_cores(local_ranks)
    assert compiled.PARALLEL_HALVES == parallel


OPTIONS = list(itertools.product([True, False], [True, False], [0.01, 0.0], [0.2, 1e6]))


@pytest.mark.parametrize("norm_adv,clip_vloss,ent_coef,clip_coef", OPTIONS,
                         ids=[f"normadv{int(a)}-vclip{int(b)}-ent{c}-clip{d:g}" for a, b, c, d in OPTIONS])
@pytest.mark.parametrize("discrete", [True, False], ids=["categorical", "gaussian"])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_gradients_match_torch(discrete, activation, norm_adv, clip_vloss, ent_coef, clip_coef):
    loss = dict(clip_coef=clip_coef, vf_coef=0.5, ent_coef=ent_coef, norm_adv=norm_adv, clip_vloss=clip_vloss)
    model, flat, learner = make_pair(discrete, activation=activation, ent_coef=ent_coef, clip_coef=clip_coef,
                                     vf_coef=0.5, norm_adv=norm_adv, clip_vloss=clip_vloss)
    batch = make_batch(model, 64, seed=1)
    g_torch, stats = torch_grad(model, flat, batch, **loss)
    b = np_batch(batch)
    s = learner.minibatch_update(b["obs"], b["actions"], b["logprobs"], b["advantages"], b["returns"], b["values"],
                                 np.arange(64), optimise=False).copy()
    what = f"{'categorical' if discrete else 'gaussian'} {activation} {loss}"
    assert_grads_match(learner, learner.grads, g_torch, what)
    np.testing.assert_allclose(s[:5], [stats.policy_loss, stats.value_loss, stats.entropy, stats.approx_kl,
                                       stats.clipfrac], rtol=1e-4, atol=1e-6, err_msg=what)
    np.testing.assert_allclose(s[5], stats.grad_norm, rtol=1e-4, err_msg=what)
    if clip_coef == 0.2:  # the batch really exercises both sides of the clip
        assert 0.05 < stats.clipfrac < 0.95


@pytest.mark.parametrize("discrete", [True, False], ids=["categorical", "gaussian"])
@pytest.mark.parametrize("hidden,obs_dim,action_dim", [((5, 7), 3, 3), ((16, 9, 6), 11, 1), ((64,), 4, 5), ((4,), 3, 6)])
def test_gradients_match_torch_other_shapes(discrete, hidden, obs_dim, action_dim):
    """Widths that are not multiples of 4 (the kernels' unrolling), depth 1 and 3, more actions than
    hidden units, a minibatch gathered from a larger batch."""
    loss = dict(clip_coef=0.2, vf_coef=0.5, ent_coef=0.01, norm_adv=True, clip_vloss=True)
    model, flat, learner = make_pair(discrete, hidden, "tanh", obs_dim, action_dim, seed=3)
    big = make_batch(model, 100, seed=2)
    idx = np.random.default_rng(0).permutation(100)[:45]
    g_torch, _ = torch_grad(model, flat, {k: v[torch.from_numpy(idx)] for k, v in big.items()}, **loss)
    b = np_batch(big)
    learner.minibatch_update(b["obs"], b["actions"], b["logprobs"], b["advantages"], b["returns"], b["values"],
                             idx, optimise=False)
    assert_grads_match(learner, learner.grads, g_torch, f"{hidden} {obs_dim} {action_dim}")


@pytest.mark.parametrize("discrete", [True, False], ids=["categorical", "gaussian"])
@pytest.mark.parametrize("n", [300, 1024])
def test_gradients_match_torch_large_batches(discrete, n):
    """Several sample chunks with a partial last one (300), a padded row stride (1024)."""
    loss = dict(clip_coef=0.2, vf_coef=0.5, ent_coef=0.01, norm_adv=True, clip_vloss=True)
    model, flat, learner = make_pair(discrete, activation="tanh", **loss)
    batch = make_batch(model, n, seed=4)
    g_torch, _ = torch_grad(model, flat, batch, **loss)
    b = np_batch(batch)
    learner.minibatch_update(b["obs"], b["actions"], b["logprobs"], b["advantages"], b["returns"], b["values"],
                             np.arange(n), optimise=False)
    assert learner.max_minibatch == n  # the buffers grew once
    assert_grads_match(learner, learner.grads, g_torch, f"batch {n}")


@pytest.mark.parametrize("discrete", [True, False], ids=["categorical", "gaussian"])
@pytest.mark.parametrize("norm_adv", [True, False])
def test_split_minibatches_match_torch(discrete, norm_adv, monkeypatch):
    """With compiled.SPLIT_MIN set, a minibatch of that many samples or more runs as two halves on
    two threads: its gradient (advantages normalised over the whole minibatch), clipped step and
    stats are still those of one torch update on the whole minibatch."""
    monkeypatch.setattr(compiled, "SPLIT_MIN", 4096)
    n = compiled.SPLIT_MIN + 301  # unequal halves
    loss = dict(clip_coef=0.2, vf_coef=0.5, ent_coef=0.01, norm_adv=norm_adv, clip_vloss=True)
    model, flat, learner = make_pair(discrete, activation="tanh", **loss)
    batch = make_batch(model, n, seed=6)
    g_torch, _ = torch_grad(model, flat, batch, **loss)
    b = np_batch(batch)
    args = (b["obs"], b["actions"], b["logprobs"], b["advantages"], b["returns"], b["values"])
    s = learner.minibatch_update(*args, np.arange(n), optimise=False).copy()
    assert learner._half is not None  # the split path ran
    assert_grads_match(learner, learner.grads, g_torch, f"split batch {n}")
    np.testing.assert_allclose(s[5], np.linalg.norm(g_torch.astype(np.float64)), rtol=1e-4)
    # one optimising step with clipping, against ppo_update + Adam
    model2, flat2, learner2 = make_pair(discrete, activation="tanh", learning_rate=3e-3, max_grad_norm=0.5, **loss)
    opt = torch.optim.Adam([flat2], lr=3e-3, eps=1e-5)
    stats = ppo_update(model2, opt, batch, update_epochs=1, num_minibatches=1,
                       generator=torch.Generator().manual_seed(0), max_grad_norm=0.5, **loss)
    s2 = learner2.minibatch_update(*args, np.arange(n))
    assert_grads_match(learner2, learner2.grads, flat2.grad.numpy(), "split, clipped gradient")
    np.testing.assert_allclose(learner2.params, flat2.detach().numpy(), rtol=0, atol=3e-3 * 1e-2 + 1e-6)
    np.testing.assert_allclose(s2[:5], [stats.policy_loss, stats.value_loss, stats.entropy, stats.approx_kl,
                                        stats.clipfrac], rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("discrete", [True, False], ids=["categorical", "gaussian"])
@pytest.mark.parametrize("max_grad_norm", [0.1, 1e3], ids=["clipped", "unclipped"])
def test_update_steps_match_torch_adam(discrete, max_grad_norm):
    """Three epochs of one full-batch minibatch each: three Adam steps with clipping, the clipped
    gradient, the parameters after each step and the averaged stats as ppo_update's."""
    loss = dict(clip_coef=0.2, vf_coef=0.5, ent_coef=0.01, norm_adv=True, clip_vloss=True,
                max_grad_norm=max_grad_norm)
    model, flat, learner = make_pair(discrete, learning_rate=3e-3, **loss)
    batch = make_batch(model, 128, seed=5)
    b = np_batch(batch)
    opt = torch.optim.Adam([flat], lr=3e-3, eps=1e-5)
    for step in range(3):
        stats = ppo_update(model, opt, batch, update_epochs=1, num_minibatches=1,
                           generator=torch.Generator().manual_seed(step), **loss)
        s = learner.minibatch_update(b["obs"], b["actions"], b["logprobs"], b["advantages"], b["returns"],
                                     b["values"], np.arange(128))
        assert_grads_match(learner, learner.grads, flat.grad.numpy(), f"clipped gradient, step {step}")
        np.testing.assert_allclose(s[5], stats.grad_norm, rtol=1e-4)
        if max_grad_norm < 1:
            assert stats.grad_norm > 2 * max_grad_norm  # the clipping really happened
        # after an Adam step the parameters agree to ~lr * (relative gradient error); Adam divides
        # by sqrt(v), so compare the step taken, not the raw parameters
        np.testing.assert_allclose(learner.params, flat.detach().numpy(), rtol=0, atol=3e-3 * 1e-2 + 1e-6,
                                   err_msg=f"parameters after step {step}")
    np.testing.assert_allclose(learner.exp_avg, opt.state[flat]["exp_avg"].numpy(), rtol=1e-3, atol=1e-7)
    np.testing.assert_allclose(learner.exp_avg_sq, opt.state[flat]["exp_avg_sq"].numpy(), rtol=1e-3, atol=1e-10)


@pytest.mark.parametrize("discrete", [True, False])
def test_distributed_hooks(discrete):
    """The DD-PPO hook points (fastsample.learning.learner): ``grad_hook`` sees the flat gradient
    between backward and clipping + Adam and may change it in place; ``adv_moments_hook`` sees a
    minibatch's advantage moments [count, sum, sum of squares]. An identity hook changes nothing;
    the same halving hook gives the same step on both backends."""
    loss = dict(clip_coef=0.2, vf_coef=0.5, ent_coef=0.01, norm_adv=True, clip_vloss=True, max_grad_norm=0.5)
    model, flat, learner = make_pair(discrete, learning_rate=3e-3, **loss)
    _, _, plain = make_pair(discrete, learning_rate=3e-3, **loss)
    batch = make_batch(model, 128, seed=7)
    b = np_batch(batch)
    args = (b["obs"], b["actions"], b["logprobs"], b["advantages"], b["returns"], b["values"])
    seen = []
    s_plain = plain.minibatch_update(*args, np.arange(128)).copy()
    s_hook = learner.minibatch_update(*args, np.arange(128), grad_hook=lambda g: seen.append(g.shape),
                                      adv_moments_hook=lambda m: seen.append(m.copy())).copy()
    assert seen[1] == (learner.params.shape[0],)
    np.testing.assert_allclose(seen[0], [128, b["advantages"].astype(np.float64).sum(),
                                         (b["advantages"].astype(np.float64) ** 2).sum()], rtol=1e-12)
    np.testing.assert_allclose(learner.params, plain.params, rtol=0, atol=1e-7)
    np.testing.assert_allclose(s_hook, s_plain, rtol=1e-5, atol=1e-7)
    # a hook that changes the gradient: both backends take the same step with it
    half = lambda g: g.__imul__(0.5)  # noqa: E731
    moments = lambda m: m.__imul__(1.0)  # noqa: E731
    opt = torch.optim.Adam([flat], lr=3e-3, eps=1e-5)
    model2, flat2, learner2 = make_pair(discrete, learning_rate=3e-3, **loss)
    opt2 = torch.optim.Adam([flat2], lr=3e-3, eps=1e-5)
    ppo_update(model2, opt2, batch, update_epochs=1, num_minibatches=1, generator=torch.Generator().manual_seed(0),
               grad_hook=half, adv_moments_hook=moments, **loss)
    learner2.minibatch_update(*args, np.arange(128), grad_hook=half, adv_moments_hook=moments)
    assert_grads_match(learner2, learner2.grads, flat2.grad.numpy(), "halved, clipped gradient")
    np.testing.assert_allclose(learner2.params, flat2.detach().numpy(), rtol=0, atol=3e-3 * 1e-2 + 1e-6)
    del opt


def test_adam_matches_torch():
    rng = np.random.default_rng(0)
    n = 1000
    p0 = rng.normal(size=n).astype(np.float32)
    p = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    opt = torch.optim.Adam([p], lr=2.5e-4, eps=1e-5)
    params, m, v = p0.copy(), np.zeros(n, np.float32), np.zeros(n, np.float32)
    for step in range(1, 6):
        g = (rng.normal(size=n) * 10.0 ** rng.uniform(-4, 1, n)).astype(np.float32)
        p.grad = torch.from_numpy(g.copy())
        opt.step()
        compiled._adam(params, g, m, v, 2.5e-4, 0.9, 0.999, 1e-5, float(step))
        np.testing.assert_allclose(m, opt.state[p]["exp_avg"].numpy(), rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(v, opt.state[p]["exp_avg_sq"].numpy(), rtol=1e-6, atol=1e-20)
        np.testing.assert_allclose(params, p.detach().numpy(), rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(params - p0, p.detach().numpy() - p0, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("scale", [1e-3, 1e2])
def test_clip_grad_norm_matches_torch(scale):
    g = (np.random.default_rng(1).normal(size=777) * scale).astype(np.float32)
    t = torch.from_numpy(g.copy()).requires_grad_()
    t.grad = torch.from_numpy(g.copy())
    norm_t = torch.nn.utils.clip_grad_norm_([t], 0.5)
    norm_c = compiled._clip_grad_norm(g, 0.5)
    assert norm_c == pytest.approx(float(norm_t), rel=1e-6)
    np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-6, atol=0)


def _trajectories(T=33, N=19, seed=0):
    rng = np.random.default_rng(seed)
    f = lambda *s: rng.normal(size=s).astype(np.float32)  # noqa: E731
    dones = (rng.random((T, N)) < 0.1).astype(np.float32)
    return f(T, N), f(T, N), dones, f(N), (0.3 * f(T, N))


@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (0.9, 1.0), (0.97, 0.0)])
def test_gae_matches_trainer(gamma, lam):
    r, v, d, last, _ = _trajectories()
    adv_t, ret_t = compute_gae(*(torch.from_numpy(x) for x in (r, v, d, last)), gamma, lam)
    adv, ret = compiled.compute_gae(r, v, d, last, gamma, lam)
    np.testing.assert_allclose(adv, adv_t.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ret, ret_t.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("lam,rho_bar,c_bar", [(1.0, 1.0, 1.0), (0.95, 0.8, 1.2)])
def test_vtrace_matches_trainer(lam, rho_bar, c_bar):
    r, v, d, last, log_rhos = _trajectories(seed=1)
    adv_t, vs_t = vtrace(*(torch.from_numpy(x) for x in (r, v, d, last, log_rhos)), 0.99, lam, rho_bar, c_bar)
    adv, vs = compiled.vtrace(r, v, d, last, log_rhos, 0.99, lam, rho_bar, c_bar)
    np.testing.assert_allclose(vs, vs_t.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(adv, adv_t.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("discrete", [True, False], ids=["categorical", "gaussian"])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_greedy_is_the_torch_models(discrete, activation):
    """greedy() (the actor's forward alone, for the evaluations) gives ActorCritic.greedy's actions
    and act(greedy=True)'s, at a batch size that spans several chunks and at one sample."""
    model, _, learner = make_pair(discrete, activation=activation)
    for n in (1, 300):
        obs = torch.randn((n, 4), generator=torch.Generator().manual_seed(n)) * 1.5
        with torch.no_grad():
            want = model.greedy(obs).numpy()
        got = learner.greedy(obs.numpy())
        np.testing.assert_array_equal(got, learner.act(obs.numpy(), greedy=True)[0])
        if discrete:
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_update_loop_runs_and_learns_nothing_nan():
    """``update`` (epochs of shuffled minibatches, target_kl early stop) on a trainer-shaped batch."""
    model, _, learner = make_pair(True, learning_rate=1e-3)
    b = np_batch(make_batch(model, 256, seed=7))
    stats = learner.update(b, update_epochs=4, num_minibatches=4, rng=np.random.default_rng(0))
    assert stats.epochs == 4 and learner.step_count == 16
    assert np.isfinite(learner.params).all() and np.isfinite([stats.policy_loss, stats.grad_norm]).all()
    stats = learner.update(b, update_epochs=4, num_minibatches=4, rng=np.random.default_rng(0), target_kl=1e-9)
    assert stats.epochs == 1 and learner.step_count == 17


def test_row_stride_python_twin():
    for m in (1, 15, 16, 17, 255, 256, 1000, 1024, 2048, 4096, 5000, 16384):
        assert compiled.row_stride(m) == compiled._row_stride(m) >= m


def test_wrong_dtypes_are_refused():
    """Arrays of another dtype or layout raise instead of compiling a second specialisation."""
    _, _, learner = make_pair(True, hidden=(8, 8))
    n = 16
    ok = dict(obs=np.zeros((n, 4), np.float32), actions=np.zeros(n, np.int64),
              **{k: np.zeros(n, np.float32) for k in ("logprobs", "advantages", "returns", "values")})
    learner.minibatch_update(*ok.values(), np.arange(n))
    for key, bad in (("obs", np.zeros((n, 4))), ("obs", np.zeros((4, n), np.float32).T),
                     ("actions", np.zeros(n, np.int32)), ("returns", np.zeros(n)),
                     ("values", np.zeros(n + 1, np.float32))):
        with pytest.raises(TypeError):
            learner.minibatch_update(*{**ok, key: bad}.values(), np.arange(n))
    with pytest.raises(TypeError):
        learner.minibatch_update(*ok.values(), np.arange(n, dtype=np.int32))


def test_from_config_and_init():
    """A learner built from a TrainConfig and the env's spaces carries its hyperparameters; the
    initialisation is CleanRL's (orthogonal with gains sqrt(2) / 0.01 / 1, zero biases)."""
    from fastsample.train_config import make_config

    cfg = make_config("Pendulum-v1", hidden_sizes="16,8", activation="relu", num_envs=8, num_steps=16,
                      num_minibatches=2, clip_coef=0.3, ent_coef=0.02, vf_coef=0.7, max_grad_norm=0.9)
    obs_space = gym.spaces.Box(-1, 1, (3,), np.float32)
    learner = CompiledPPOLearner.from_config(cfg, obs_space, gym.spaces.Box(-2, 2, (1,), np.float32))
    assert (learner.obs_dim, learner.action_dim, learner.discrete, learner.hidden) == (3, 1, False, (16, 8))
    assert learner.activation == "relu" and learner.max_minibatch == 64
    hp = learner.hp
    assert (hp[compiled.HP_CLIP], hp[compiled.HP_ENT], hp[compiled.HP_VF], hp[compiled.HP_MAX_NORM]) == \
        (0.3, 0.02, 0.7, 0.9)
    assert hp[compiled.HP_LR] == cfg.learning_rate and hp[compiled.HP_EPS] == 1e-5
    sd = learner.state_arrays()
    np.testing.assert_array_equal(sd["log_std"], np.full(1, cfg.init_log_std, np.float32))
    for name, gain in (("critic.0.weight", 2 ** 0.5), ("actor.2.weight", 2 ** 0.5), ("critic.4.weight", 1.0),
                       ("actor.4.weight", 0.01)):
        w = sd[name].astype(np.float64)
        small = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        np.testing.assert_allclose(small, gain ** 2 * np.eye(small.shape[0]), atol=1e-5, err_msg=name)
    assert not any(sd[k].any() for k in sd if k.endswith("bias"))


_COMPILE_ALL = r"""
import json, numpy as np
from fastsample.check import masked_memory_ops
from fastsample.check import codegen_targets
from fastsample.learning import compiled
from fastsample.learning.compiled import CompiledPPOLearner
rng = np.random.default_rng(0)
n = 96
for discrete in (True, False):
    for activation in ("tanh", "relu"):
        L = CompiledPPOLearner(5, 3, discrete, (13, 8), activation, max_minibatch=n)
        obs = rng.normal(size=(n, 5)).astype(np.float32)
        acts = rng.integers(0, 3, n) if discrete else rng.normal(size=(n, 3)).astype(np.float32)
        vec = lambda: rng.normal(size=n).astype(np.float32)
        batch = dict(obs=obs, actions=acts, logprobs=vec(), advantages=vec(), returns=vec(), values=vec())
        L.update(batch, update_epochs=1, num_minibatches=2, rng=rng)
        L.minibatch_update(obs, acts, vec(), vec(), vec(), vec(), np.arange(n), optimise=False)
        L.minibatch_update(obs, acts, vec(), vec(), vec(), vec(), np.arange(n), grad_hook=lambda g: None,
                           adv_moments_hook=lambda m: None)
        L.forward(obs)
        L.act(obs, rng.random((n, 3), dtype=np.float32))
        L.act(obs, greedy=True)
        L.greedy(obs)
r = rng.normal(size=(9, 7)).astype(np.float32)
compiled.compute_gae(r, r, (r > 1).astype(np.float32), r[0], 0.99, 0.95)
compiled.vtrace(r, r, (r > 1).astype(np.float32), r[0], r, 0.99)
print(json.dumps({"uncompiled": [k for k, d in compiled.KERNELS.items() if not d.signatures],
                  "masked": masked_memory_ops({k: d for k, d in compiled.KERNELS.items()})}))
"""


TARGETS = codegen_targets()


def _compile_under(env_vars: dict[str, str]) -> dict:
    """Compile and run every kernel in a fresh process for one codegen target, with an empty numba
    cache (so the optimised IR is there); its report."""
    with tempfile.TemporaryDirectory(prefix="fastsample-compiled-") as cache:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CPU_")}
        env.update(env_vars)
        env["NUMBA_CACHE_DIR"] = cache
        proc = subprocess.run([sys.executable, "-c", _COMPILE_ALL], env=env, capture_output=True, text=True,
                              timeout=600)
    if proc.returncode:
        return {"error": proc.stderr[-3000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


for _name, _env in TARGETS.items():
    # every target of the project's codegen matrix (which loops LLVM turns into gathers or scatters
    # differs between them: x86-64-v3 tuning with AVX-512 did, host tuning did not), run one per core
    # with the codegen matrix's processes (tests.support.job_results); ~18 s on one core here
    support.register_job(f"compiled-learner-ir:{_name}", functools.partial(_compile_under, _env), 18,
                         __name__, "test_no_masked_memory_ops", target=_name)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_no_masked_memory_ops(request, target):
    key = f"compiled-learner-ir:{target}"
    report = support.job_results(request, [key])[key]
    assert "error" not in report, report.get("error")
    assert report["uncompiled"] == []
    assert report["masked"] == {}, f"{target}: masked memory operations {report['masked']}"
