"""A compiled PPO learner for MLP policies: Numba kernels over preallocated arrays, no torch.

The torch learner (:mod:`fastsample.learning.ppo`) spends most of a small-MLP update in
per-op dispatch; here the whole minibatch update -- gather, actor and critic forward, the
head's log-prob and entropy, the PPO loss, its backward pass to every parameter, global
grad-norm clipping and Adam -- is one call into compiled code that allocates nothing.

Semantics are those of :class:`~fastsample.learning.ppo.ActorCritic` and
:func:`~fastsample.learning.ppo.ppo_update` (CleanRL's PPO): separate actor and critic MLPs
(tanh or ReLU hidden layers), a categorical head or a diagonal Gaussian with a
state-independent log-std, the clipped surrogate, optional PPO2 value clipping, an entropy
bonus, per-minibatch advantage normalisation (unbiased std, ``+ 1e-8``), global grad-norm
clipping (``max_norm / (norm + 1e-6)`` capped at 1) and ``torch.optim.Adam`` (bias correction,
``eps`` added after dividing ``sqrt(v)`` by ``sqrt(1 - beta2^t)``). Where torch's elementwise
``maximum`` ties, its gradient is split half and half, and a ``clamp`` passes the gradient at
its bounds; both are reproduced. :func:`compute_gae` and :func:`vtrace` are those of the
trainer, in the same float32 operation order. :meth:`CompiledPPOLearner.act` is
``ActorCritic.act`` (sampling given the noise torch would draw, or greedy) for rollouts and
evaluation without torch.

Layout
------
All parameters live in one flat float32 array, in the order and layout of the torch model's
``flat_parameters()`` (``log_std`` for a Gaussian head, ``critic.0.weight``, ``critic.0.bias``, ...,
``actor.0.weight``, ...; weights ``(out, in)`` row-major), so :meth:`CompiledPPOLearner.state_arrays`
gives the torch ``state_dict`` keys and shapes, and Adam and clipping are single loops.
Activations are stored feature-major, ``(features, samples)`` blocks in one float32 workspace
(row stride padded, see :func:`_row_stride`), so every elementwise loop and every
matrix-product inner loop runs over the samples, contiguous; the matrix products take four
output rows and eight terms at a time over 1024-sample chunks, and apply the activation (or, going
back, its derivative) to each four-row chunk while it is in L1. The kernels are compiled without
numba's reference counting (``_nrt=False``): views cost nothing and nothing is allocated.

Threads: a minibatch of :data:`SPLIT_MIN` samples or more is computed as two halves on two
threads, and :meth:`CompiledPPOLearner.act` on :data:`ACT_SPLIT_MIN` observations or more
likewise; where the halves split and the order their gradients are combined in depend on the
sizes alone, so results are bit-reproducible whatever the machine or the thread timing.

Codegen rule
------------
Every store in a loop is unconditional: values are chosen with selects (loaded first), never
stored under an ``if`` inside a vectorisable loop, because LLVM miscompiled such masked stores
on some CPUs (AVX-512). Loops with a strided or indexed side (the minibatch gather, transposes)
carry an empty inline-asm statement so that they are never widened into gathers or scatters.
``tests/test_compiled_learner_grad.py`` checks, under every codegen target of
``fastsample.check.codegen_targets()``, that no kernel here has a masked load, store, gather or
scatter in its optimised IR (``fastsample.check.masked_memory_ops``).

Float arithmetic may be reassociated (``fastmath`` reassoc/contract/nsz only: no NaN or
infinity assumptions), so sums differ from torch's in the last bits; tanh is the rational
approximation of :mod:`fastsample.learning.fast_tanh` (absolute error 3.4e-7 in float32).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core.registry import CPUDispatcher
from numba.extending import intrinsic

__all__ = ["CompiledPPOLearner", "CompiledStats", "param_layout", "compute_gae", "vtrace", "KERNELS"]

_FM = {"reassoc", "contract", "nsz"}
_KW = dict(cache=True, fastmath=_FM, error_model="numpy", nogil=True, _nrt=False)

F32 = np.float32
_ZERO = F32(0.0)
_ONE = F32(1.0)
_HALF = F32(0.5)
_LOG_SQRT_2PI = F32(0.5 * math.log(2 * math.pi))

# tanh(x) = x P(x^2) / Q(x^2) on x clamped to +-7.9: the coefficients of
# fastsample.learning.fast_tanh (copied, since that module imports torch; a test checks they agree)
_CLIP = F32(7.9)
_P0, _P1, _P2, _P3, _P4, _P5, _P6 = (F32(c) for c in (
    0.9999999925601866, 0.13124518626749826, 0.003149611810420526, 1.1646997971588131e-05,
    -2.234849687384023e-08, 6.393174357594971e-11, -1.1675864802943308e-13))
_Q0, _Q1, _Q2, _Q3 = (F32(c) for c in (1.0, 0.4645784853333658, 0.02467581952829169, 0.0002613442346832809))

ACT_NONE, ACT_TANH, ACT_RELU = 0, 1, 2

# hyperparameter vector passed to the update kernel (float64)
# (HP_ADV_GIVEN: normalise the advantages with HP_ADV_MEAN and HP_ADV_STD, moments reduced across
# ranks by the caller, instead of the minibatch's own)
HP_CLIP, HP_VF, HP_ENT, HP_MAX_NORM, HP_NORM_ADV, HP_CLIP_VLOSS, HP_LR, HP_BETA1, HP_BETA2, HP_EPS, HP_STEP, \
    HP_OPTIMISE, HP_ADV_GIVEN, HP_ADV_MEAN, HP_ADV_STD = range(15)
HP_SIZE = 15
# stats vector written by the update kernel (float64)
ST_PG, ST_V, ST_ENT, ST_KL, ST_CLIPFRAC, ST_GRAD_NORM = range(6)
ST_SIZE = 6


# --- dense layers, feature-major --------------------------------------------------------------


@njit(**_KW)
def _activate_row(d, hrow, n, act, deriv):
    """In place on the first ``n`` entries of one row (a chunk just computed, still in L1): tanh
    (rational approximation), ReLU or nothing; with ``deriv``, instead the product with the
    activation's derivative at ``hrow`` = act(pre) (``1 - h^2`` for tanh, ``h > 0`` for ReLU)."""
    if deriv:
        if act == ACT_TANH:
            for j in range(n):
                hv = hrow[j]
                d[j] = d[j] * (_ONE - hv * hv)
        elif act == ACT_RELU:
            for j in range(n):
                v = d[j]
                d[j] = v if hrow[j] > _ZERO else _ZERO
    elif act == ACT_TANH:
        for j in range(n):
            v = min(max(d[j], -_CLIP), _CLIP)
            s = v * v
            num = ((((((_P6 * s + _P5) * s + _P4) * s + _P3) * s + _P2) * s + _P1) * s + _P0)
            den = (((_Q3 * s + _Q2) * s + _Q1) * s + _Q0)
            d[j] = v * num / den
    elif act == ACT_RELU:
        for j in range(n):
            v = d[j]
            d[j] = v if v > _ZERO else _ZERO


# Samples are processed in chunks: the matrix products of _rows_axpy sweep a layer's input block
# (n_in x _CHUNK: 256 KB for 64 features at 1024 samples, in L2) once per four output rows, whose
# four rows of the chunk (16 KB) stay in L1 while they accumulate; _dense_grad_w's running sums
# cover _GCHUNK samples at a time (its eight rows of a chunk, 32 KB, in L1; 64x64 at 16384 samples
# measured 1.9 ms at 1024 samples against 2.3 ms at 256).
_CHUNK = 1024
_GCHUNK = 1024


@njit(**_KW)
def _coef(C, transposed, r, k):
    return C[k, r] if transposed else C[r, k]


@njit(**_KW)
def _rows_axpy(C, transposed, src, dst, c0, c1, n_rows, init, bias, act, h, deriv):
    """For each destination row ``r < n_rows``, over samples ``c0:c1``:
    ``dst[r] = init_r + sum_k C[r, k] src[k]`` where ``C[r, k]`` is ``C[k, r]`` when ``transposed``
    and ``init_r`` is ``bias[r]`` when ``init == 1``, else 0, then ``act`` applied to each row's
    chunk while it is in L1 (ACT_NONE: nothing), or with ``deriv`` the row multiplied by the
    activation's derivative at ``h[r]`` (see :func:`_activate_row`). Four rows and eight terms at a time
    (then four, then one): each loaded sample serves four rows, each stored one takes eight
    products, the 32 coefficients held in registers (measured 64x64 at 16384 samples: 2.0 ms
    against 2.6 ms for four terms at a time over 256-sample chunks)."""
    n = c1 - c0
    n_src = src.shape[0]
    n8 = n_src - n_src % 8
    n4 = n_src - n_src % 4
    r4 = n_rows - n_rows % 4
    for r in range(0, r4, 4):
        d0, d1, d2, d3 = dst[r][c0:c1], dst[r + 1][c0:c1], dst[r + 2][c0:c1], dst[r + 3][c0:c1]
        i0 = bias[r] if init == 1 else _ZERO
        i1 = bias[r + 1] if init == 1 else _ZERO
        i2 = bias[r + 2] if init == 1 else _ZERO
        i3 = bias[r + 3] if init == 1 else _ZERO
        for b in range(n):
            d0[b] = i0
            d1[b] = i1
            d2[b] = i2
            d3[b] = i3
        for k in range(0, n8, 8):
            a0, a1, a2, a3 = (_coef(C, transposed, r, k), _coef(C, transposed, r, k + 1),
                              _coef(C, transposed, r, k + 2), _coef(C, transposed, r, k + 3))
            a4, a5, a6, a7 = (_coef(C, transposed, r, k + 4), _coef(C, transposed, r, k + 5),
                              _coef(C, transposed, r, k + 6), _coef(C, transposed, r, k + 7))
            e0, e1, e2, e3 = (_coef(C, transposed, r + 1, k), _coef(C, transposed, r + 1, k + 1),
                              _coef(C, transposed, r + 1, k + 2), _coef(C, transposed, r + 1, k + 3))
            e4, e5, e6, e7 = (_coef(C, transposed, r + 1, k + 4), _coef(C, transposed, r + 1, k + 5),
                              _coef(C, transposed, r + 1, k + 6), _coef(C, transposed, r + 1, k + 7))
            f0, f1, f2, f3 = (_coef(C, transposed, r + 2, k), _coef(C, transposed, r + 2, k + 1),
                              _coef(C, transposed, r + 2, k + 2), _coef(C, transposed, r + 2, k + 3))
            f4, f5, f6, f7 = (_coef(C, transposed, r + 2, k + 4), _coef(C, transposed, r + 2, k + 5),
                              _coef(C, transposed, r + 2, k + 6), _coef(C, transposed, r + 2, k + 7))
            h0, h1, h2, h3 = (_coef(C, transposed, r + 3, k), _coef(C, transposed, r + 3, k + 1),
                              _coef(C, transposed, r + 3, k + 2), _coef(C, transposed, r + 3, k + 3))
            h4, h5, h6, h7 = (_coef(C, transposed, r + 3, k + 4), _coef(C, transposed, r + 3, k + 5),
                              _coef(C, transposed, r + 3, k + 6), _coef(C, transposed, r + 3, k + 7))
            s0, s1, s2, s3 = src[k][c0:c1], src[k + 1][c0:c1], src[k + 2][c0:c1], src[k + 3][c0:c1]
            s4, s5, s6, s7 = src[k + 4][c0:c1], src[k + 5][c0:c1], src[k + 6][c0:c1], src[k + 7][c0:c1]
            for b in range(n):
                v0 = s0[b]
                v1 = s1[b]
                v2 = s2[b]
                v3 = s3[b]
                v4 = s4[b]
                v5 = s5[b]
                v6 = s6[b]
                v7 = s7[b]
                d0[b] += a0 * v0 + a1 * v1 + a2 * v2 + a3 * v3 + a4 * v4 + a5 * v5 + a6 * v6 + a7 * v7
                d1[b] += e0 * v0 + e1 * v1 + e2 * v2 + e3 * v3 + e4 * v4 + e5 * v5 + e6 * v6 + e7 * v7
                d2[b] += f0 * v0 + f1 * v1 + f2 * v2 + f3 * v3 + f4 * v4 + f5 * v5 + f6 * v6 + f7 * v7
                d3[b] += h0 * v0 + h1 * v1 + h2 * v2 + h3 * v3 + h4 * v4 + h5 * v5 + h6 * v6 + h7 * v7
        for k in range(n8, n4, 4):
            a0, a1, a2, a3 = (_coef(C, transposed, r, k), _coef(C, transposed, r, k + 1),
                              _coef(C, transposed, r, k + 2), _coef(C, transposed, r, k + 3))
            e0, e1, e2, e3 = (_coef(C, transposed, r + 1, k), _coef(C, transposed, r + 1, k + 1),
                              _coef(C, transposed, r + 1, k + 2), _coef(C, transposed, r + 1, k + 3))
            f0, f1, f2, f3 = (_coef(C, transposed, r + 2, k), _coef(C, transposed, r + 2, k + 1),
                              _coef(C, transposed, r + 2, k + 2), _coef(C, transposed, r + 2, k + 3))
            h0, h1, h2, h3 = (_coef(C, transposed, r + 3, k), _coef(C, transposed, r + 3, k + 1),
                              _coef(C, transposed, r + 3, k + 2), _coef(C, transposed, r + 3, k + 3))
            s0, s1, s2, s3 = src[k][c0:c1], src[k + 1][c0:c1], src[k + 2][c0:c1], src[k + 3][c0:c1]
            for b in range(n):
                v0 = s0[b]
                v1 = s1[b]
                v2 = s2[b]
                v3 = s3[b]
                d0[b] += a0 * v0 + a1 * v1 + a2 * v2 + a3 * v3
                d1[b] += e0 * v0 + e1 * v1 + e2 * v2 + e3 * v3
                d2[b] += f0 * v0 + f1 * v1 + f2 * v2 + f3 * v3
                d3[b] += h0 * v0 + h1 * v1 + h2 * v2 + h3 * v3
        for k in range(n4, n_src):
            a0 = _coef(C, transposed, r, k)
            e0 = _coef(C, transposed, r + 1, k)
            f0 = _coef(C, transposed, r + 2, k)
            h0 = _coef(C, transposed, r + 3, k)
            sk = src[k][c0:c1]
            for b in range(n):
                v = sk[b]
                d0[b] += a0 * v
                d1[b] += e0 * v
                d2[b] += f0 * v
                d3[b] += h0 * v
        _activate_row(d0, h[r][c0:c1], n, act, deriv)
        _activate_row(d1, h[r + 1][c0:c1], n, act, deriv)
        _activate_row(d2, h[r + 2][c0:c1], n, act, deriv)
        _activate_row(d3, h[r + 3][c0:c1], n, act, deriv)
    for r in range(r4, n_rows):
        d0 = dst[r][c0:c1]
        i0 = bias[r] if init == 1 else _ZERO
        for b in range(n):
            d0[b] = i0
        for k in range(0, n4, 4):
            a0, a1, a2, a3 = (_coef(C, transposed, r, k), _coef(C, transposed, r, k + 1),
                              _coef(C, transposed, r, k + 2), _coef(C, transposed, r, k + 3))
            s0, s1, s2, s3 = src[k][c0:c1], src[k + 1][c0:c1], src[k + 2][c0:c1], src[k + 3][c0:c1]
            for b in range(n):
                d0[b] += a0 * s0[b] + a1 * s1[b] + a2 * s2[b] + a3 * s3[b]
        for k in range(n4, n_src):
            a0 = _coef(C, transposed, r, k)
            sk = src[k][c0:c1]
            for b in range(n):
                d0[b] += a0 * sk[b]
        _activate_row(d0, h[r][c0:c1], n, act, deriv)


@njit(**_KW)
def _dense_fwd(W, bias, x, y, act, M):
    """``y = act(W x + bias)`` on the first ``M`` columns: W (n_out, n_in), x (n_in, >= M), y (n_out, >= M)."""
    n_out, n_in = W.shape
    if M <= 0 or n_in <= 0 or n_out <= 0:  # LLVM then knows every loop below runs
        return
    for c0 in range(0, M, _CHUNK):
        _rows_axpy(W, False, x, y, c0, min(c0 + _CHUNK, M), n_out, 1, bias, act, y, False)


@njit(**_KW)
def _dense_grad_w(g, x, dW, db, M):
    """``dW = g x^T``, ``db = g 1`` over the first ``M`` columns: g (n_out, >= M), x (n_in, >= M).
    Four output rows and four inputs at a time (sixteen running sums; measured 30% faster than
    two rows with AVX-512's 32 registers, as fast with AVX2's 16)."""
    n_out, n_in = dW.shape
    if M <= 0 or n_in <= 0 or n_out <= 0:
        return
    n4 = n_in - n_in % 4
    o4 = n_out - n_out % 4
    for o in range(n_out):
        db[o] = _ZERO
        dWo = dW[o]
        for i in range(n_in):
            dWo[i] = _ZERO
    for c0 in range(0, M, _GCHUNK):
        c1 = min(c0 + _GCHUNK, M)
        n = c1 - c0
        for o in range(n_out):
            go = g[o][c0:c1]
            s = _ZERO
            for b in range(n):
                s += go[b]
            db[o] += s
        for o in range(0, o4, 4):
            g0, g1, g2, g3 = g[o][c0:c1], g[o + 1][c0:c1], g[o + 2][c0:c1], g[o + 3][c0:c1]
            for i in range(0, n4, 4):
                x0, x1, x2, x3 = x[i][c0:c1], x[i + 1][c0:c1], x[i + 2][c0:c1], x[i + 3][c0:c1]
                a00 = _ZERO
                a01 = _ZERO
                a02 = _ZERO
                a03 = _ZERO
                a10 = _ZERO
                a11 = _ZERO
                a12 = _ZERO
                a13 = _ZERO
                a20 = _ZERO
                a21 = _ZERO
                a22 = _ZERO
                a23 = _ZERO
                a30 = _ZERO
                a31 = _ZERO
                a32 = _ZERO
                a33 = _ZERO
                for b in range(n):
                    v0 = x0[b]
                    v1 = x1[b]
                    v2 = x2[b]
                    v3 = x3[b]
                    u = g0[b]
                    a00 += u * v0
                    a01 += u * v1
                    a02 += u * v2
                    a03 += u * v3
                    u = g1[b]
                    a10 += u * v0
                    a11 += u * v1
                    a12 += u * v2
                    a13 += u * v3
                    u = g2[b]
                    a20 += u * v0
                    a21 += u * v1
                    a22 += u * v2
                    a23 += u * v3
                    u = g3[b]
                    a30 += u * v0
                    a31 += u * v1
                    a32 += u * v2
                    a33 += u * v3
                dW[o, i] += a00
                dW[o, i + 1] += a01
                dW[o, i + 2] += a02
                dW[o, i + 3] += a03
                dW[o + 1, i] += a10
                dW[o + 1, i + 1] += a11
                dW[o + 1, i + 2] += a12
                dW[o + 1, i + 3] += a13
                dW[o + 2, i] += a20
                dW[o + 2, i + 1] += a21
                dW[o + 2, i + 2] += a22
                dW[o + 2, i + 3] += a23
                dW[o + 3, i] += a30
                dW[o + 3, i + 1] += a31
                dW[o + 3, i + 2] += a32
                dW[o + 3, i + 3] += a33
            for i in range(n4, n_in):
                xi = x[i][c0:c1]
                a0 = _ZERO
                a1 = _ZERO
                a2 = _ZERO
                a3 = _ZERO
                for b in range(n):
                    v = xi[b]
                    a0 += g0[b] * v
                    a1 += g1[b] * v
                    a2 += g2[b] * v
                    a3 += g3[b] * v
                dW[o, i] += a0
                dW[o + 1, i] += a1
                dW[o + 2, i] += a2
                dW[o + 3, i] += a3
        for o in range(o4, n_out):
            go = g[o][c0:c1]
            dWo = dW[o]
            for i in range(n_in):
                xi = x[i][c0:c1]
                a = _ZERO
                for b in range(n):
                    a += go[b] * xi[b]
                dWo[i] += a


@njit(**_KW)
def _dense_bwd_x(W, g, h, dx, act, M):
    """``dx = (W^T g) * act'(h)`` on the first ``M`` columns, where ``h = act(pre)`` is the layer
    input: g (n_out, >= M), h and dx (n_in, >= M)."""
    n_out, n_in = W.shape
    if M <= 0 or n_in <= 0 or n_out <= 0:
        return
    for c0 in range(0, M, _CHUNK):
        c1 = min(c0 + _CHUNK, M)
        _rows_axpy(W, True, g, dx, c0, c1, n_in, 0, W[0], act, h, True)


# --- gathers and transposes: strided on one side, so kept scalar ---------------------------------
# A loop with a strided or indexed access vectorises into gathers/scatters (``llvm.masked.*``) on
# AVX-512, and the cost model's choice depends on the CPU tuned for. These loops carry an empty
# inline-asm statement (no operands, no clobbers: it constrains no load or store), which the loop
# vectoriser cannot widen, so they stay scalar on every target.


@intrinsic
def _no_vectorize(typingctx):
    def codegen(context, builder, signature, args):
        builder.asm(ir.FunctionType(ir.VoidType(), []), "", "", [], True)
        return context.get_dummy_value()

    return types.void(), codegen


_KW_SCALAR = dict(cache=True, error_model="numpy", nogil=True)


@njit(**_KW_SCALAR)
def _row_stride(M):
    """The row stride of the ``(features, samples)`` blocks for ``M`` samples: ``M`` rounded up
    to 16 floats (64 bytes), plus 16 when that is a multiple of 1024 floats, so that the rows of a
    block do not all fall in the same cache sets (at M = 4096 they did: a 2x slower update)."""
    S = (M + 15) // 16 * 16
    if S % 1024 == 0:
        S += 16
    return S


@njit(**_KW_SCALAR)
def _gather_minibatch(idx, obs, act_i, act_f, old_logp, adv, ret, oldv, discrete, x, ai, af, vecs):
    """Samples ``idx`` of the flat batch, feature-major: ``x`` (obs_dim, M), ``ai`` (M,) or
    ``af`` (K, M), and rows 0-3 of ``vecs``: old log-probs, advantages, returns, old values."""
    M = idx.shape[0]
    obs_dim = obs.shape[1]
    K = af.shape[0]
    for b in range(M):
        _no_vectorize()
        j = idx[b]
        for i in range(obs_dim):
            _no_vectorize()
            x[i, b] = obs[j, i]
        vecs[0, b] = old_logp[j]
        vecs[1, b] = adv[j]
        vecs[2, b] = ret[j]
        vecs[3, b] = oldv[j]
        if discrete:
            ai[b] = act_i[j]
        else:
            for k in range(K):
                _no_vectorize()
                af[k, b] = act_f[j, k]


@njit(**_KW_SCALAR)
def _transpose(src, dst, rows, cols):
    """``dst[:cols, :rows] = src[:rows, :cols].T``."""
    for r in range(rows):
        for c in range(cols):
            _no_vectorize()
            dst[c, r] = src[r, c]


# --- whole MLPs over a flat parameter vector ------------------------------------------------------


@njit(**_KW)
def _mlp_fwd(params, layers, x, ws, base, M, S, act):
    """Forward of the MLP described by ``layers`` rows ``(w_off, b_off, n_in, n_out, ...)``; layer
    ``l``'s output (post-activation for hidden layers) is stored in ``ws`` from ``base`` on,
    consecutively as ``(n_out, S)`` blocks (row stride ``S >= M``; the output at
    ``base + layers[-1, 4] * S``)."""
    L = layers.shape[0]
    inp = x
    off = base
    for l in range(L):
        w_off, b_off, n_in, n_out = layers[l, 0], layers[l, 1], layers[l, 2], layers[l, 3]
        W = params[w_off:w_off + n_out * n_in].reshape((n_out, n_in))
        out = ws[off:off + n_out * S].reshape((n_out, S))
        _dense_fwd(W, params[b_off:b_off + n_out], inp, out, act if l < L - 1 else ACT_NONE, M)
        inp = out
        off += n_out * S


@njit(**_KW)
def _mlp_bwd(params, grads, layers, x, ws, base, M, S, act, dout, d_a, d_b):
    """Backward of :func:`_mlp_fwd` given ``dout`` (the gradient of its output): writes every
    weight and bias gradient of the MLP into ``grads`` (same offsets as ``params``). ``d_a`` and
    ``d_b`` are the ``ws`` offsets of two scratch blocks of ``max_width * S``."""
    L = layers.shape[0]
    g = dout
    for l in range(L - 1, -1, -1):
        w_off, b_off, n_in, n_out = layers[l, 0], layers[l, 1], layers[l, 2], layers[l, 3]
        if l == 0:
            inp = x
        else:
            off = base + layers[l - 1, 4] * S
            inp = ws[off:off + n_in * S].reshape((n_in, S))
        W = params[w_off:w_off + n_out * n_in].reshape((n_out, n_in))
        dW = grads[w_off:w_off + n_out * n_in].reshape((n_out, n_in))
        _dense_grad_w(g, inp, dW, grads[b_off:b_off + n_out], M)
        if l > 0:
            d_off = d_a if (L - 1 - l) % 2 == 0 else d_b
            dx = ws[d_off:d_off + n_in * S].reshape((n_in, S))
            _dense_bwd_x(W, g, inp, dx, act, M)
            g = dx


# --- heads and the PPO loss ---------------------------------------------------------------------


@njit(**_KW)
def _categorical_head(logits, act_i, probs, logp, ent, lse, inv):
    """In place: ``logits`` (K, M) become log-probabilities; ``probs`` the probabilities; ``logp``
    the taken actions' log-probabilities; ``ent`` the entropies; ``lse`` and ``inv`` (M,) scratch."""
    K = logits.shape[0]
    M = logp.shape[0]
    if M <= 0 or K <= 0:
        return
    row = logits[0]
    for b in range(M):
        lse[b] = row[b]
    for k in range(1, K):
        row = logits[k]
        for b in range(M):
            v = row[b]
            m = lse[b]
            lse[b] = v if v > m else m
    for b in range(M):
        inv[b] = _ZERO
    for k in range(K):
        row = logits[k]
        pk = probs[k]
        for b in range(M):
            e = math.exp(row[b] - lse[b])
            pk[b] = e
            inv[b] += e
    for b in range(M):
        s = inv[b]
        lse[b] = lse[b] + math.log(s)
        inv[b] = _ONE / s
        ent[b] = _ZERO
        logp[b] = _ZERO
    for k in range(K):
        row = logits[k]
        pk = probs[k]
        for b in range(M):
            lk = row[b] - lse[b]
            p = pk[b] * inv[b]
            row[b] = lk
            pk[b] = p
            ent[b] -= p * lk
            # exactly one k matches: adding lk there and exact zeros elsewhere leaves lk (no
            # "store the loaded value back unless" pattern, which LLVM may turn into a masked store)
            logp[b] += lk * (_ONE if act_i[b] == k else _ZERO)


@njit(**_KW)
def _gaussian_head(mean, act_f, log_std, logp, ent):
    """Diagonal Gaussian: ``logp`` of ``act_f`` (K, M) under ``N(mean, exp(log_std))``; ``ent``
    the (state-independent) entropy. Returns the entropy."""
    K = mean.shape[0]
    M = logp.shape[0]
    for b in range(M):
        logp[b] = _ZERO
    for k in range(K):
        ls = log_std[k]
        inv_std = math.exp(-ls)
        c = -ls - _LOG_SQRT_2PI
        mk = mean[k]
        ak = act_f[k]
        for b in range(M):
            z = (ak[b] - mk[b]) * inv_std
            logp[b] += -_HALF * z * z + c
    h = _ZERO
    for k in range(K):
        h += _HALF + _LOG_SQRT_2PI + log_std[k]
    for b in range(M):
        ent[b] = h
    return h


@njit(**_KW)
def _ppo_loss(logp, ent, value, old_logp, adv, ret, oldv, hp, glogp, dvalue, stats):
    """The PPO loss of one minibatch (everything (M,)). Writes ``glogp`` = d loss / d logp and
    ``dvalue`` = d loss / d value, and the minibatch's stats. Advantages are normalised in place
    when ``hp[HP_NORM_ADV]``."""
    M = logp.shape[0]
    clip = F32(hp[HP_CLIP])
    vf_coef = F32(hp[HP_VF])
    ent_coef = hp[HP_ENT]
    inv_m = F32(1.0 / M)
    if hp[HP_NORM_ADV] != 0.0:
        if hp[HP_ADV_GIVEN] != 0.0:
            mean = hp[HP_ADV_MEAN]
            std = hp[HP_ADV_STD]
        else:
            s = 0.0
            for b in range(M):
                s += adv[b]
            mean = s / M
            q = 0.0
            for b in range(M):
                d = adv[b] - mean
                q += d * d
            std = math.sqrt(q / (M - 1)) if M > 1 else math.nan  # torch.std: unbiased
        m32 = F32(mean)
        den = F32(std + 1e-8)
        for b in range(M):
            adv[b] = (adv[b] - m32) / den
    lo = _ONE - clip
    hi = _ONE + clip
    pg = 0.0
    kl = 0.0
    cf = 0.0
    for b in range(M):
        log_ratio = logp[b] - old_logp[b]
        r = math.exp(log_ratio)
        na = -adv[b]
        rc = min(max(r, lo), hi)
        p1 = na * r
        p2 = na * rc
        pg += max(p1, p2)
        # torch.maximum's gradient: all to the larger, half each on a tie; clamp passes it on [lo, hi]
        w1 = _ONE if p1 > p2 else (_HALF if p1 == p2 else _ZERO)
        w2 = _ONE if p2 > p1 else (_HALF if p1 == p2 else _ZERO)
        inb = _ONE if (r >= lo and r <= hi) else _ZERO
        glogp[b] = na * (w1 + w2 * inb) * inv_m * r
        kl += (r - _ONE) - log_ratio
        cf += _ONE if abs(r - _ONE) > clip else _ZERO
    vl = 0.0
    if hp[HP_CLIP_VLOSS] != 0.0:
        for b in range(M):
            v = value[b]
            d1 = v - ret[b]
            dv = v - oldv[b]
            dvc = min(max(dv, -clip), clip)
            d2 = (oldv[b] + dvc) - ret[b]
            s1 = d1 * d1
            s2 = d2 * d2
            vl += max(s1, s2)
            u1 = _ONE if s1 > s2 else (_HALF if s1 == s2 else _ZERO)
            u2 = _ONE if s2 > s1 else (_HALF if s1 == s2 else _ZERO)
            inb = _ONE if (dv >= -clip and dv <= clip) else _ZERO
            dvalue[b] = vf_coef * inv_m * (u1 * d1 + u2 * inb * d2)
    else:
        for b in range(M):
            d1 = value[b] - ret[b]
            vl += d1 * d1
            dvalue[b] = vf_coef * inv_m * d1
    e = 0.0
    for b in range(M):
        e += ent[b]
    stats[ST_PG] = pg / M
    stats[ST_V] = 0.5 * vl / M
    stats[ST_ENT] = e / M
    stats[ST_KL] = kl / M
    stats[ST_CLIPFRAC] = cf / M
    return ent_coef


@njit(**_KW)
def _categorical_grad(logl, probs, ent, act_i, glogp, ent_coef, dlogits):
    """d loss / d logits for the categorical head: ``glogp (onehot - p) + ent_coef/M p (l + H)``
    (``logl`` the log-probabilities, ``probs`` the probabilities)."""
    K = logl.shape[0]
    M = glogp.shape[0]
    c = F32(ent_coef / M)
    for k in range(K):
        lk = logl[k]
        pk = probs[k]
        dk = dlogits[k]
        for b in range(M):
            p = pk[b]
            onehot = _ONE if act_i[b] == k else _ZERO
            dk[b] = glogp[b] * (onehot - p) + c * p * (lk[b] + ent[b])


@njit(**_KW)
def _gaussian_grad(mean, act_f, log_std, glogp, ent_coef, dmean, dlog_std):
    """d loss / d mean (K, M) and d loss / d log_std (K,) for the diagonal Gaussian head."""
    K = mean.shape[0]
    M = glogp.shape[0]
    for k in range(K):
        inv_std = math.exp(-log_std[k])
        mk = mean[k]
        ak = act_f[k]
        dk = dmean[k]
        s = _ZERO
        for b in range(M):
            z = (ak[b] - mk[b]) * inv_std
            gb = glogp[b]
            dk[b] = gb * z * inv_std
            s += gb * (z * z - _ONE)
        dlog_std[k] = s - F32(ent_coef)


# --- clipping, Adam --------------------------------------------------------------------------------


@njit(**_KW)
def _clip_grad_norm(grads, max_norm):
    """torch.nn.utils.clip_grad_norm_ over one flat gradient; returns the norm before clipping."""
    s = 0.0
    for j in range(grads.shape[0]):
        g = grads[j]
        s += g * g
    norm = math.sqrt(s)
    coef = F32(min(max_norm / (F32(norm) + 1e-6), 1.0))
    for j in range(grads.shape[0]):
        grads[j] = grads[j] * coef
    return norm


@njit(**_KW)
def _adam(params, grads, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, step):
    """One torch.optim.Adam step (no weight decay, no amsgrad) at step number ``step`` (>= 1)."""
    bc1 = 1.0 - beta1 ** step
    bc2 = 1.0 - beta2 ** step
    step_size = F32(lr / bc1)
    bc2_sqrt = F32(math.sqrt(bc2))
    w1 = F32(1.0 - beta1)
    b2 = F32(beta2)
    w2 = F32(1.0 - beta2)
    e = F32(eps)
    for j in range(params.shape[0]):
        g = grads[j]
        m = exp_avg[j]
        m = m + w1 * (g - m)
        v = exp_avg_sq[j] * b2 + w2 * g * g
        exp_avg[j] = m
        exp_avg_sq[j] = v
        params[j] = params[j] - step_size * (m / (math.sqrt(v) / bc2_sqrt + e))


# --- one minibatch update ----------------------------------------------------------------------------


@njit(**_KW)
def _ppo_minibatch(params, grads, exp_avg, exp_avg_sq, critic, actor, log_std_off, act, discrete,
                   obs, act_i, act_f, old_logp, adv, ret, oldv, idx, ws, wi, hp, stats):
    """Gather the minibatch ``idx`` of a flat batch, run the loss forward and backward into
    ``grads`` and, when ``hp[HP_OPTIMISE]``, clip the gradient norm and take an Adam step.

    ``ws`` is the float32 workspace and ``wi`` the int64 one (sizes from :func:`workspace_size`)."""
    M = idx.shape[0]
    S = _row_stride(M)
    obs_dim = obs.shape[1]
    K = actor[actor.shape[0] - 1, 3]
    # workspace, (rows, S) blocks: x | critic activations | actor activations | d_a | d_b | probs |
    # dlogits | 10 vectors | act_f
    off = 0
    x = ws[off:off + obs_dim * S].reshape((obs_dim, S))
    off += obs_dim * S
    c_base = off
    off += (critic[critic.shape[0] - 1, 4] + critic[critic.shape[0] - 1, 3]) * S
    a_base = off
    off += (actor[actor.shape[0] - 1, 4] + K) * S
    maxw = max(1, critic[0, 5], actor[0, 5])
    d_a = off
    off += maxw * S
    d_b = off
    off += maxw * S
    probs = ws[off:off + K * S].reshape((K, S))
    off += K * S
    dlog = ws[off:off + K * S].reshape((K, S))
    off += K * S
    v_base = off
    vecs = ws[off:off + 10 * S].reshape((10, S))
    off += 10 * S
    af = ws[off:off + K * S].reshape((K, S))
    g_old, g_adv, g_ret, g_oldv = vecs[0][:M], vecs[1][:M], vecs[2][:M], vecs[3][:M]
    logp, ent, glogp, dvalue = vecs[4][:M], vecs[5][:M], vecs[6][:M], vecs[7][:M]
    ai = wi[:M]
    _gather_minibatch(idx, obs, act_i, act_f, old_logp, adv, ret, oldv, discrete, x, ai, af, vecs)

    _mlp_fwd(params, critic, x, ws, c_base, M, S, act)
    _mlp_fwd(params, actor, x, ws, a_base, M, S, act)
    v_off = c_base + critic[critic.shape[0] - 1, 4] * S
    value = ws[v_off:v_off + M]
    o_off = a_base + actor[actor.shape[0] - 1, 4] * S
    out = ws[o_off:o_off + K * S].reshape((K, S))
    log_std = params[log_std_off:log_std_off + K]
    if discrete:
        _categorical_head(out, ai, probs, logp, ent, vecs[8][:M], vecs[9][:M])
    else:
        _gaussian_head(out, af, log_std, logp, ent)
    ent_coef = _ppo_loss(logp, ent, value, g_old, g_adv, g_ret, g_oldv, hp, glogp, dvalue, stats)
    if discrete:
        _categorical_grad(out, probs, ent, ai, glogp, ent_coef, dlog)
    else:
        _gaussian_grad(out, af, log_std, glogp, ent_coef, dlog, grads[log_std_off:log_std_off + K])
    dv2 = ws[v_base + 7 * S:v_base + 8 * S].reshape((1, S))
    _mlp_bwd(params, grads, critic, x, ws, c_base, M, S, act, dv2, d_a, d_b)
    _mlp_bwd(params, grads, actor, x, ws, a_base, M, S, act, dlog, d_a, d_b)

    if hp[HP_OPTIMISE] != 0.0:
        stats[ST_GRAD_NORM] = _clip_grad_norm(grads, hp[HP_MAX_NORM])
        _adam(params, grads, exp_avg, exp_avg_sq, hp[HP_LR], hp[HP_BETA1], hp[HP_BETA2], hp[HP_EPS], hp[HP_STEP])
    else:
        s = 0.0
        for j in range(grads.shape[0]):
            s += grads[j] * grads[j]
        stats[ST_GRAD_NORM] = math.sqrt(s)


@njit(**_KW)
def _clip_adam(params, grads, exp_avg, exp_avg_sq, hp, stats):
    """The second half of an optimising :func:`_ppo_minibatch` for a gradient computed with
    ``hp[HP_OPTIMISE] = 0`` and then changed by the caller (a distributed all-reduce): clip its
    norm and take the Adam step."""
    stats[ST_GRAD_NORM] = _clip_grad_norm(grads, hp[HP_MAX_NORM])
    _adam(params, grads, exp_avg, exp_avg_sq, hp[HP_LR], hp[HP_BETA1], hp[HP_BETA2], hp[HP_EPS], hp[HP_STEP])


@njit(**_KW)
def _forward_both(params, critic, actor, act, obs, ws, value):
    """Both MLPs on ``obs`` (M, obs_dim): writes the values (M,) and returns the actor output's
    offset in ``ws`` and the row stride (the output is (K, S) there, one row per output)."""
    M, obs_dim = obs.shape
    S = _row_stride(M)
    x = ws[:obs_dim * S].reshape((obs_dim, S))
    _transpose(obs, x, M, obs_dim)
    c_base = obs_dim * S
    _mlp_fwd(params, critic, x, ws, c_base, M, S, act)
    a_base = c_base + (critic[critic.shape[0] - 1, 4] + 1) * S
    _mlp_fwd(params, actor, x, ws, a_base, M, S, act)
    v_off = c_base + critic[critic.shape[0] - 1, 4] * S
    v = ws[v_off:v_off + M]
    for b in range(M):
        value[b] = v[b]
    return a_base + actor[actor.shape[0] - 1, 4] * S, S


@njit(**_KW)
def _forward(params, critic, actor, act, obs, ws, out, value):
    """Actor output (M, K) and values (M,) of ``obs`` (M, obs_dim)."""
    M = obs.shape[0]
    K = out.shape[1]
    o_off, S = _forward_both(params, critic, actor, act, obs, ws, value)
    _transpose(ws[o_off:o_off + K * S].reshape((K, S)), out, K, M)


@njit(**_KW)
def _act(params, critic, actor, act, discrete, log_std_off, obs, noise, greedy, ws, actions_i, actions_f, logp,
         value):
    """``ActorCritic.act`` for ``obs`` (M, obs_dim) given its noise (M, K): uniforms for the
    categorical head's Gumbel-max, standard normals for the Gaussian; ``greedy`` takes the argmax
    (first on ties, as torch) or the mean and ignores ``noise``. Writes ``actions_i`` (M,) or
    ``actions_f`` (M, K), ``logp`` and ``value`` (M,)."""
    M = obs.shape[0]
    K = actor[actor.shape[0] - 1, 3]
    o_off, S = _forward_both(params, critic, actor, act, obs, ws, value)
    out = ws[o_off:o_off + K * S].reshape((K, S))
    # one sample at a time, its K logits in registers: the loops over k read a column (strided)
    # and choose with selects between values held in registers, never stored ones
    if discrete:
        for b in range(M):
            _no_vectorize()
            mx = out[0, b]
            for k in range(1, K):
                _no_vectorize()
                mx = max(mx, out[k, b])
            s = _ZERO
            for k in range(K):
                _no_vectorize()
                s += math.exp(out[k, b] - mx)
            lse = mx + math.log(s)
            best = F32(-np.inf)
            besti = 0
            bestl = _ZERO
            for k in range(K):
                _no_vectorize()
                lk = out[k, b] - lse
                if greedy:  # torch: argmax of the raw logits
                    sc = out[k, b]
                else:  # Gumbel-max: argmax of log p - log(-log u), u clamped to [1e-20, 1]
                    sc = lk - math.log(-math.log(min(max(noise[b, k], F32(1e-20)), _ONE)))
                better = sc > best  # strict: the first index on ties, as torch's argmax
                best = sc if better else best
                besti = k if better else besti
                bestl = lk if better else bestl
            actions_i[b] = besti
            logp[b] = bestl
    else:
        for b in range(M):
            _no_vectorize()
            lp = _ZERO
            for k in range(K):
                _no_vectorize()
                ls = params[log_std_off + k]
                mean = out[k, b]
                a = mean if greedy else mean + math.exp(ls) * noise[b, k]
                actions_f[b, k] = a
                z = (a - mean) * math.exp(-ls)
                lp += -_HALF * z * z - ls - _LOG_SQRT_2PI
            logp[b] = lp


@njit(**_KW)
def _greedy(params, actor, act, discrete, obs, ws, actions_i, actions_f):
    """The greedy actions of ``obs`` (M, obs_dim), actor only (no critic, no log-probs): the
    argmax of the logits (the first on ties, as torch) into ``actions_i`` (M,) or the Gaussian
    mean into ``actions_f`` (M, K). For the evaluations, where the policy's cost per step is the
    actor's forward alone."""
    M, obs_dim = obs.shape
    K = actor[actor.shape[0] - 1, 3]
    S = _row_stride(M)
    x = ws[:obs_dim * S].reshape((obs_dim, S))
    _transpose(obs, x, M, obs_dim)
    a_base = obs_dim * S
    _mlp_fwd(params, actor, x, ws, a_base, M, S, act)
    o_off = a_base + actor[actor.shape[0] - 1, 4] * S
    out = ws[o_off:o_off + K * S].reshape((K, S))
    if discrete:
        for b in range(M):
            _no_vectorize()
            best = out[0, b]
            besti = 0
            for k in range(1, K):
                _no_vectorize()
                sc = out[k, b]
                better = sc > best
                best = sc if better else best
                besti = k if better else besti
            actions_i[b] = besti
    else:
        _transpose(out, actions_f, K, M)


# --- GAE and V-trace ---------------------------------------------------------------------------------


@njit(**_KW)
def _gae(rewards, values, dones, last_value, gamma, lam, advantages, returns):
    """compute_gae's recursion, a row of envs at a time (vectorisable over envs; the last step
    is peeled off so no load or store is conditional)."""
    T, N = rewards.shape
    g = F32(gamma)
    gl = F32(gamma * lam)
    for n in range(N):
        nd = _ONE - dones[T - 1, n]
        advantages[T - 1, n] = rewards[T - 1, n] + g * last_value[n] * nd - values[T - 1, n]
    for t in range(T - 2, -1, -1):
        for n in range(N):
            nd = _ONE - dones[t, n]
            delta = rewards[t, n] + g * values[t + 1, n] * nd - values[t, n]
            advantages[t, n] = delta + gl * nd * advantages[t + 1, n]
    for t in range(T):
        for n in range(N):
            returns[t, n] = advantages[t, n] + values[t, n]


@njit(**_KW)
def _vtrace(rewards, values, dones, last_value, log_rhos, gamma, lam, rho_bar, c_bar, advantages, vs):
    """vtrace's recursion, a row of envs at a time (the last step peeled off, so no load or
    store is conditional); ``advantages`` holds ``vs - V`` until the last pass."""
    T, N = rewards.shape
    g = F32(gamma)
    lm = F32(lam)
    rb = F32(rho_bar)
    cb = F32(c_bar)
    for n in range(N):  # t = T - 1: bootstrap from last_value, nothing accumulated yet
        rho = math.exp(log_rhos[T - 1, n])
        nd = _ONE - dones[T - 1, n]
        advantages[T - 1, n] = min(rho, rb) * (rewards[T - 1, n] + g * nd * last_value[n] - values[T - 1, n])
    for t in range(T - 2, -1, -1):
        for n in range(N):
            rho = math.exp(log_rhos[t, n])
            nd = _ONE - dones[t, n]
            delta = min(rho, rb) * (rewards[t, n] + g * nd * values[t + 1, n] - values[t, n])
            advantages[t, n] = delta + g * nd * (lm * min(rho, cb)) * advantages[t + 1, n]
    for t in range(T):
        for n in range(N):
            vs[t, n] = advantages[t, n] + values[t, n]
    for t in range(T - 1):
        for n in range(N):
            rho = math.exp(log_rhos[t, n])
            nd = _ONE - dones[t, n]
            advantages[t, n] = min(rho, rb) * (rewards[t, n] + g * nd * vs[t + 1, n] - values[t, n])
    for n in range(N):
        rho = math.exp(log_rhos[T - 1, n])
        nd = _ONE - dones[T - 1, n]
        advantages[T - 1, n] = min(rho, rb) * (rewards[T - 1, n] + g * nd * last_value[n] - values[T - 1, n])


def compute_gae(rewards: np.ndarray, values: np.ndarray, dones: np.ndarray, last_value: np.ndarray,
                gamma: float, lam: float, out: tuple[np.ndarray, np.ndarray] | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`fastsample.learning.ppo.compute_gae` on float32 numpy arrays ``(T, N)``;
    ``out``: preallocated ``(advantages, returns)``."""
    adv, ret = out if out is not None else (np.empty_like(rewards), np.empty_like(rewards))
    _gae(rewards, values, dones, last_value, float(gamma), float(lam), adv, ret)
    return adv, ret


def vtrace(rewards: np.ndarray, values: np.ndarray, dones: np.ndarray, last_value: np.ndarray,
           log_rhos: np.ndarray, gamma: float, lam: float = 1.0, rho_bar: float = 1.0, c_bar: float = 1.0,
           out: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`fastsample.learning.ppo.vtrace` on float32 numpy arrays: ``(advantages, vs)``."""
    adv, vs = out if out is not None else (np.empty_like(rewards), np.empty_like(rewards))
    _vtrace(rewards, values, dones, last_value, log_rhos, float(gamma), float(lam), float(rho_bar), float(c_bar),
            adv, vs)
    return adv, vs


KERNELS = {name: obj for name, obj in list(globals().items()) if isinstance(obj, CPUDispatcher)}
"""Every dispatcher of this module, by name (for ``fastsample.check.masked_memory_ops``)."""


# --- the learner ---------------------------------------------------------------------------------------


def param_layout(obs_dim: int, hidden: tuple[int, ...], action_dim: int, discrete: bool
                 ) -> tuple[list[tuple[str, tuple[int, ...], int]], np.ndarray, np.ndarray, int, int]:
    """``(entries, critic_layers, actor_layers, log_std_offset, size)``: ``entries`` are
    ``(torch state_dict key, shape, offset)`` in the torch model's parameter order; the layer
    tables have rows ``(w_off, b_off, n_in, n_out, sum of the earlier layers' n_out, widest
    n_out)``; ``log_std_offset`` is 0 (the log-std comes first, as in torch; a categorical head
    has none)."""
    entries: list[tuple[str, tuple[int, ...], int]] = []
    tables = {}
    off = 0
    log_std_off = 0
    if not discrete:  # a parameter of the module itself: first in torch's parameters() and state_dict
        entries.append(("log_std", (action_dim,), 0))
        off = action_dim
    for net, n_out in (("critic", 1), ("actor", action_dim)):
        dims = [obs_dim, *hidden, n_out]
        rows = []
        for j, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            entries.append((f"{net}.{2 * j}.weight", (b, a), off))
            w_off = off
            off += a * b
            entries.append((f"{net}.{2 * j}.bias", (b,), off))
            rows.append((w_off, off, a, b))
            off += b
        table = np.zeros((len(rows), 6), np.int64)
        table[:, :4] = rows
        table[:, 4] = np.concatenate([[0], np.cumsum(table[:, 3])[:-1]])  # activation offset (in samples)
        table[:, 5] = table[:, 3].max()  # widest layer
        tables[net] = table
    return entries, tables["critic"], tables["actor"], log_std_off, off


SPLIT_MIN: int | None = 4096
"""Minibatches of at least this many samples are computed as two halves on two threads (each a
nogil kernel call into its own gradient and workspace; the gradients are combined weighted by
size, then clipped and stepped once); ``None`` turns the split off. The split depends on the
minibatch size only, not on the machine or on thread timing, so results are the same with one
core (the halves then run one after the other). It costs about 4% more CPU time in all (a second
gather, the numpy advantage moments and the gradient combination), so it only pays where the
second core is free: on the 2-core machine, a large-batch update (65536 transitions, 4 epochs
of 4 minibatches of 16384) took 190 ms split against 339 ms whole with a core to spare, and 6%
longer split with both cores busy with other work (load 5.8). End to end
(``benchmark_training``, 4096 envs x 16 steps, with :data:`ACT_SPLIT_MIN` too), interleaved
runs gave 306-395k env steps/s split in the runs where a core was free (172-225k where other
work held it), against 156-211k unsplit. The presets' minibatches (512-1024 samples) are not
split."""


ACT_SPLIT_MIN: int | None = 4096
""":meth:`CompiledPPOLearner.act` on at least this many observations runs as two halves on two
threads (``None``: never). The results are the same either way. At 4096 observations (CartPole,
64x64) one call is about 1.9 ms of CPU time, half of it on the helper thread; the large-batch
benchmark's sampling phase measured 2.2-2.7M env steps/s split against 1.5-1.8M with a core to
spare (with no core to spare a call took 3.6 ms split against 2.2 ms whole, at load 5)."""


PARALLEL_HALVES: bool = True
"""Whether the two halves of a split update or ``act()`` (:data:`SPLIT_MIN`, :data:`ACT_SPLIT_MIN`)
run on two threads, or one after the other on the calling thread (the same results either way).
:func:`fastsample.distributed.from_environment` turns it off when this node's ranks leave no core
for a second thread each: on the 2-core machine, two ranks with a helper thread each ran the
large batch at 0.66-0.84x of one rank."""


class _Inline:
    """The executor of :data:`PARALLEL_HALVES` off: each call runs at once, on the calling thread."""

    class _Done:
        def __init__(self, value):
            self.value = value

        def result(self):
            return self.value

    def submit(self, fn, *args):
        return self._Done(fn(*args))

    def shutdown(self) -> None:
        pass


def workspace_size(obs_dim: int, hidden: tuple[int, ...], action_dim: int, batch: int) -> int:
    widths = sum(hidden)
    maxw = max(1, action_dim, *hidden)
    per_sample = obs_dim + (widths + 1) + (widths + action_dim) + 2 * maxw + 3 * action_dim + 10
    return per_sample * row_stride(batch)


def row_stride(batch: int) -> int:
    """:func:`_row_stride` in Python (the learner's constructor then touches no compiled code)."""
    s = (batch + 15) // 16 * 16
    return s + 16 if s % 1024 == 0 else s


def _orthogonal(rng: np.random.Generator, rows: int, cols: int, gain: float) -> np.ndarray:
    """torch.nn.init.orthogonal_'s construction (not its random stream)."""
    a = rng.standard_normal((rows, cols))
    if rows < cols:
        a = a.T
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return gain * q


@dataclass
class CompiledStats:
    """Means over the minibatches of an :meth:`CompiledPPOLearner.update` (the fields of
    ``fastsample.learning.ppo.PPOStats``)."""

    policy_loss: float = 0.0
    value_loss: float = 0.0
    entropy: float = 0.0
    approx_kl: float = 0.0
    clipfrac: float = 0.0
    grad_norm: float = 0.0
    epochs: int = 0


class CompiledPPOLearner:
    """The actor-critic MLPs, their Adam state and the buffers of one minibatch update.

    ``params``, ``grads``, ``exp_avg`` and ``exp_avg_sq`` are flat float32 arrays in the torch
    model's ``flat_parameters()`` layout; :meth:`state_arrays` gives views of ``params`` under the
    torch ``state_dict`` keys. Buffers are sized for ``max_minibatch`` samples and grow (once) if
    a larger minibatch arrives.
    """

    def __init__(self, obs_dim: int, action_dim: int, discrete: bool, hidden: tuple[int, ...] = (64, 64),
                 activation: str = "tanh", init_log_std: float = 0.0, *, learning_rate: float = 2.5e-4,
                 clip_coef: float = 0.2, vf_coef: float = 0.5, ent_coef: float = 0.01, max_grad_norm: float = 0.5,
                 norm_adv: bool = True, clip_vloss: bool = True, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-5, max_minibatch: int = 256, seed: int = 0):
        if activation not in ("tanh", "relu"):
            raise ValueError(f"activation must be tanh or relu, got {activation!r}")
        self.obs_dim, self.action_dim, self.discrete = int(obs_dim), int(action_dim), bool(discrete)
        self.hidden = tuple(int(h) for h in hidden)
        self.activation = activation
        self._act = ACT_TANH if activation == "tanh" else ACT_RELU
        self.entries, self.critic_layers, self.actor_layers, self.log_std_off, size = param_layout(
            self.obs_dim, self.hidden, self.action_dim, self.discrete)
        self.params = np.zeros(size, np.float32)
        self.grads = np.zeros(size, np.float32)
        self.exp_avg = np.zeros(size, np.float32)
        self.exp_avg_sq = np.zeros(size, np.float32)
        self.step_count = 0
        self.hp = np.zeros(HP_SIZE, np.float64)
        self.hp[HP_CLIP], self.hp[HP_VF], self.hp[HP_ENT] = clip_coef, vf_coef, ent_coef
        self.hp[HP_MAX_NORM], self.hp[HP_NORM_ADV], self.hp[HP_CLIP_VLOSS] = max_grad_norm, norm_adv, clip_vloss
        self.hp[HP_LR], self.hp[HP_BETA1], self.hp[HP_BETA2], self.hp[HP_EPS] = learning_rate, betas[0], betas[1], eps
        self.stats = np.zeros(ST_SIZE, np.float64)
        self._empty_i = np.zeros(1, np.int64)
        self._empty_f = np.zeros((1, max(1, self.action_dim)), np.float32)
        self._alloc(max_minibatch)
        self._perm = np.zeros(0, np.int64)
        self._half = None  # the second half's buffers and thread (minibatches of SPLIT_MIN or more)
        self.init_params(seed, init_log_std)

    # -- construction ---------------------------------------------------------------------------------

    @classmethod
    def from_config(cls, cfg, obs_space, act_space, max_minibatch: int | None = None) -> "CompiledPPOLearner":
        """A learner for a ``TrainConfig`` and gymnasium spaces (the torch model's ``make_model``)."""
        import gymnasium as gym

        from fastsample.train_config import parse_hidden

        discrete = isinstance(act_space, gym.spaces.Discrete)
        if discrete:
            action_dim = int(act_space.n)
        elif isinstance(act_space, gym.spaces.Box):
            action_dim = int(np.prod(act_space.shape))
        else:
            raise TypeError(f"PPO supports Discrete and Box action spaces, not {act_space}")
        if max_minibatch is None:
            max_minibatch = cfg.num_envs * cfg.num_steps // cfg.num_minibatches
        return cls(int(np.prod(obs_space.shape)), action_dim, discrete, parse_hidden(cfg.hidden_sizes), cfg.activation,
                   cfg.init_log_std, learning_rate=cfg.learning_rate, clip_coef=cfg.clip_coef, vf_coef=cfg.vf_coef,
                   ent_coef=cfg.ent_coef, max_grad_norm=cfg.max_grad_norm, norm_adv=cfg.norm_adv,
                   clip_vloss=cfg.clip_vloss, max_minibatch=max_minibatch, seed=cfg.seed)

    def _alloc(self, batch: int) -> None:
        self.max_minibatch = int(batch)
        self._ws = np.zeros(workspace_size(self.obs_dim, self.hidden, self.action_dim, batch), np.float32)
        self._wi = np.zeros(batch, np.int64)

    def init_params(self, seed: int, init_log_std: float = 0.0) -> None:
        """CleanRL's initialisation (orthogonal: gain sqrt(2) hidden, 0.01 policy head, 1 value head;
        zero biases; log-std ``init_log_std``) from a numpy generator (not torch's random stream)."""
        rng = np.random.default_rng(seed)
        self.params[:] = 0.0
        for net, table in (("critic", self.critic_layers), ("actor", self.actor_layers)):
            for j, (w_off, _, n_in, n_out, _, _) in enumerate(table):
                last = j == len(table) - 1
                gain = (1.0 if net == "critic" else 0.01) if last else math.sqrt(2)
                self.params[w_off:w_off + n_in * n_out] = _orthogonal(rng, int(n_out), int(n_in), gain).reshape(-1)
        if not self.discrete:
            self.params[self.log_std_off:self.log_std_off + self.action_dim] = init_log_std

    # -- state ------------------------------------------------------------------------------------------

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Views of ``params`` under the torch model's ``state_dict`` keys and shapes."""
        return {name: self.params[off:off + int(np.prod(shape))].reshape(shape) for name, shape, off in self.entries}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Load parameters from arrays keyed as the torch ``state_dict`` (torch tensors work too,
        via ``np.asarray``)."""
        views = self.state_arrays()
        missing = sorted(set(views) - set(arrays))
        if missing:
            raise KeyError(f"missing parameters {missing}")
        for name, view in views.items():
            a = np.asarray(arrays[name], dtype=np.float32)
            if a.shape != view.shape:
                raise ValueError(f"{name}: shape {a.shape}, expected {view.shape}")
            view[...] = a

    @property
    def learning_rate(self) -> float:
        return float(self.hp[HP_LR])

    @learning_rate.setter
    def learning_rate(self, lr: float) -> None:
        self.hp[HP_LR] = lr

    # -- compute ----------------------------------------------------------------------------------------

    def _actions(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.discrete:
            return actions, self._empty_f
        return self._empty_i, actions.reshape(actions.shape[0], self.action_dim)

    def check_batch(self, obs: np.ndarray, actions: np.ndarray, *vectors: np.ndarray) -> None:
        """Raise TypeError unless the arrays are what the kernels are compiled for: C-contiguous
        float32 ``obs`` (n, obs_dim) and vectors (n,), int64 actions (n,) for a categorical head
        or float32 (n, action_dim) for a Gaussian one (another dtype would compile a second,
        untested specialisation)."""
        n = obs.shape[0]
        if obs.dtype != np.float32 or obs.ndim != 2 or obs.shape[1] != self.obs_dim or not obs.flags.c_contiguous:
            raise TypeError(f"obs must be C-contiguous float32 (n, {self.obs_dim}), got {obs.dtype} {obs.shape}")
        want = (np.int64, (n,)) if self.discrete else (np.float32, (n, self.action_dim))
        if actions.dtype != want[0] or actions.reshape(n, -1).shape[1] != (1 if self.discrete else self.action_dim) \
                or not actions.flags.c_contiguous:
            raise TypeError(f"actions must be C-contiguous {np.dtype(want[0]).name} {want[1]}, "
                            f"got {actions.dtype} {actions.shape}")
        for v in vectors:
            if v.dtype != np.float32 or v.shape != (n,) or not v.flags.c_contiguous:
                raise TypeError(f"batch vectors must be C-contiguous float32 ({n},), got {v.dtype} {v.shape}")

    def minibatch_update(self, obs: np.ndarray, actions: np.ndarray, logprobs: np.ndarray, advantages: np.ndarray,
                         returns: np.ndarray, values: np.ndarray, idx: np.ndarray, *, optimise: bool = True,
                         grad_hook=None, adv_moments_hook=None) -> np.ndarray:
        """One PPO minibatch update on the samples ``idx`` of a flat batch (``obs`` (n, obs_dim)
        float32, ``actions`` (n,) int64 or (n, action_dim) float32, the rest (n,) float32).

        With ``optimise=False`` only the gradient of the loss is computed (into ``grads``; no
        clipping, no Adam step). Returns the stats vector ``[policy_loss, value_loss, entropy,
        approx_kl, clipfrac, grad_norm]`` (grad_norm before clipping; a view, overwritten next call).

        Distributed hooks (see :mod:`fastsample.learning.learner`): ``grad_hook(grads)`` changes the
        flat gradient in place between the backward pass and clipping + Adam (the update then runs
        as two kernels); ``adv_moments_hook(m)`` reduces the minibatch's advantage moments
        ``m = [count, sum, sum of squares]`` (float64) in place before they normalise the advantages.
        """
        if SPLIT_MIN is not None and idx.shape[0] >= SPLIT_MIN and idx.ndim == 1:
            return self._split_update(obs, actions, logprobs, advantages, returns, values, idx, optimise, grad_hook,
                                      adv_moments_hook)
        if adv_moments_hook is not None and self.hp[HP_NORM_ADV] != 0.0:
            a = advantages[idx].astype(np.float64)
            m = np.array([a.shape[0], a.sum(), (a * a).sum()], np.float64)
            adv_moments_hook(m)
            mean = m[1] / m[0]
            self.hp[HP_ADV_GIVEN], self.hp[HP_ADV_MEAN] = 1.0, mean
            self.hp[HP_ADV_STD] = math.sqrt(max(m[2] - m[0] * mean * mean, 0.0) / (m[0] - 1)) if m[0] > 1 else math.nan
        else:
            self.hp[HP_ADV_GIVEN] = 0.0
        if grad_hook is not None and optimise:
            self._minibatch(obs, actions, logprobs, advantages, returns, values, idx, False)
            grad_hook(self.grads)
            self.step_count += 1
            self.hp[HP_STEP] = self.step_count
            _clip_adam(self.params, self.grads, self.exp_avg, self.exp_avg_sq, self.hp, self.stats)
            return self.stats
        return self._minibatch(obs, actions, logprobs, advantages, returns, values, idx, optimise)

    def _second_half(self, n: int) -> dict:
        """The second half's buffers (for ``n`` samples at least) and its helper thread."""
        if self._half is None or self._half["size"] < n:
            from concurrent.futures import ThreadPoolExecutor

            if self._half is not None:
                self._half["pool"].shutdown()
            n = max(n, self.max_minibatch // 2 + 1)
            self._half = {"size": n, "grads": np.zeros_like(self.grads), "stats": np.zeros(ST_SIZE, np.float64),
                          "ws": np.zeros(workspace_size(self.obs_dim, self.hidden, self.action_dim, n), np.float32),
                          "wi": np.zeros(n, np.int64), "hp": np.zeros(HP_SIZE, np.float64),
                          "pool": ThreadPoolExecutor(1, thread_name_prefix="fastsample-learner")
                          if PARALLEL_HALVES else _Inline()}
        return self._half

    def _split_update(self, obs, actions, logprobs, advantages, returns, values, idx, optimise, grad_hook,
                      adv_moments_hook) -> np.ndarray:
        """:meth:`minibatch_update` of a large minibatch as two halves on two threads: the
        advantages are normalised with the whole minibatch's mean and std (computed here, or
        reduced by ``adv_moments_hook``), each half's gradient of its mean loss is computed by a
        nogil kernel call (the second on a helper thread), and the minibatch's gradient and stats
        are their size-weighted means; then ``grad_hook``, clipping and Adam as usual."""
        self.check_batch(obs, actions, logprobs, advantages, returns, values)
        if idx.dtype != np.int64 or not idx.flags.c_contiguous:
            raise TypeError(f"idx must be a C-contiguous int64 vector, got {idx.dtype} {idx.shape}")
        m = idx.shape[0]
        h = m // 2
        half = self._second_half(m - h)
        if h > self.max_minibatch:
            self._alloc(h)
        hp = self.hp
        if hp[HP_NORM_ADV] != 0.0:
            a = advantages[idx].astype(np.float64)
            if adv_moments_hook is not None:
                mom = np.array([a.shape[0], a.sum(), (a * a).sum()], np.float64)
                adv_moments_hook(mom)
                mean = mom[1] / mom[0]
                var = max(mom[2] - mom[0] * mean * mean, 0.0) / (mom[0] - 1) if mom[0] > 1 else math.nan
            else:
                mean = a.mean()
                var = float(np.square(a - mean).sum()) / (m - 1) if m > 1 else math.nan
            hp[HP_ADV_GIVEN], hp[HP_ADV_MEAN], hp[HP_ADV_STD] = 1.0, mean, math.sqrt(var)
        hp[HP_OPTIMISE] = 0.0
        half["hp"][:] = hp
        act_i, act_f = self._actions(actions)
        common = (self.critic_layers, self.actor_layers, self.log_std_off, self._act, self.discrete, obs, act_i, act_f,
                  logprobs, advantages, returns, values)
        second = half["pool"].submit(_ppo_minibatch, self.params, half["grads"], self.exp_avg, self.exp_avg_sq, *common,
                                     idx[h:], half["ws"], half["wi"], half["hp"], half["stats"])
        _ppo_minibatch(self.params, self.grads, self.exp_avg, self.exp_avg_sq, *common, idx[:h], self._ws, self._wi,
                       hp, self.stats)
        second.result()
        hp[HP_ADV_GIVEN] = 0.0
        w0, w1 = h / m, (m - h) / m
        self.grads *= np.float32(w0)
        self.grads += np.float32(w1) * half["grads"]
        self.stats[:ST_GRAD_NORM] = w0 * self.stats[:ST_GRAD_NORM] + w1 * half["stats"][:ST_GRAD_NORM]
        if not optimise:
            self.stats[ST_GRAD_NORM] = math.sqrt(float(np.dot(self.grads.astype(np.float64), self.grads)))
            return self.stats
        if grad_hook is not None:
            grad_hook(self.grads)
        self.step_count += 1
        hp[HP_STEP] = self.step_count
        _clip_adam(self.params, self.grads, self.exp_avg, self.exp_avg_sq, hp, self.stats)
        return self.stats

    def _minibatch(self, obs, actions, logprobs, advantages, returns, values, idx, optimise):
        self.check_batch(obs, actions, logprobs, advantages, returns, values)
        if idx.dtype != np.int64 or idx.ndim != 1 or not idx.flags.c_contiguous:
            raise TypeError(f"idx must be a C-contiguous int64 vector, got {idx.dtype} {idx.shape}")
        m = idx.shape[0]
        if m > self.max_minibatch:
            self._alloc(m)
        if optimise:
            self.step_count += 1
        self.hp[HP_STEP] = self.step_count
        self.hp[HP_OPTIMISE] = 1.0 if optimise else 0.0
        act_i, act_f = self._actions(actions)
        _ppo_minibatch(self.params, self.grads, self.exp_avg, self.exp_avg_sq, self.critic_layers, self.actor_layers,
                       self.log_std_off, self._act, self.discrete, obs, act_i, act_f, logprobs, advantages, returns,
                       values, idx, self._ws, self._wi, self.hp, self.stats)
        return self.stats

    def update(self, batch: dict[str, np.ndarray], *, update_epochs: int, num_minibatches: int,
               rng: np.random.Generator, target_kl: float = 0.0) -> CompiledStats:
        """Epochs of shuffled minibatches, as :func:`fastsample.learning.ppo.ppo_update` (keys
        ``obs, actions, logprobs, advantages, returns, values``; the shuffle is ``rng``'s)."""
        obs, actions, old_logp = batch["obs"], batch["actions"], batch["logprobs"]
        advantages, returns, values = batch["advantages"], batch["returns"], batch["values"]
        n = obs.shape[0]
        mb = n // num_minibatches
        if self._perm.shape[0] != n:
            self._perm = np.arange(n, dtype=np.int64)
        sums = np.zeros(ST_SIZE, np.float64)
        count = 0
        out = CompiledStats()
        for epoch in range(update_epochs):
            rng.shuffle(self._perm)
            stop = False
            for start in range(0, n, mb):
                s = self.minibatch_update(obs, actions, old_logp, advantages, returns, values,
                                          self._perm[start:start + mb])
                sums += s
                count += 1
                if target_kl and s[ST_KL] > target_kl:
                    stop = True
                    break
            out.epochs = epoch + 1
            if stop:
                break
        if count:
            (out.policy_loss, out.value_loss, out.entropy, out.approx_kl, out.clipfrac,
             out.grad_norm) = (float(v) for v in sums / count)
        return out

    def act(self, obs: np.ndarray, noise: np.ndarray | None = None, *, greedy: bool = False,
            out: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(actions, log_probs, values)`` for ``obs`` (M, obs_dim) float32, as
        ``ActorCritic.act`` given the same noise: ``noise`` (M, action_dim) float32 holds uniforms
        in (0, 1] for a categorical head (Gumbel-max, as torch.rand draws them) or standard
        normals for a Gaussian one (as torch.randn); ``greedy`` takes the argmax or the mean (no
        noise). Actions are int64 (M,) or float32 (M, action_dim) (unclipped). ``out``:
        preallocated arrays of those shapes, filled and returned. ``M >= ACT_SPLIT_MIN`` runs as two
        halves on two threads (the same results: no sample's computation involves another's)."""
        m = obs.shape[0]
        if obs.dtype != np.float32 or obs.ndim != 2 or obs.shape[1] != self.obs_dim or not obs.flags.c_contiguous:
            raise TypeError(f"obs must be C-contiguous float32 (n, {self.obs_dim}), got {obs.dtype} {obs.shape}")
        if greedy:
            noise = self._empty_f
        elif noise is None or noise.dtype != np.float32 or noise.shape != (m, self.action_dim) \
                or not noise.flags.c_contiguous:
            raise TypeError(f"noise must be C-contiguous float32 ({m}, {self.action_dim})")
        if m > self.max_minibatch:
            self._alloc(m)
        if out is None:
            actions = np.empty(m, np.int64) if self.discrete else np.empty((m, self.action_dim), np.float32)
            out = (actions, np.empty(m, np.float32), np.empty(m, np.float32))
        actions, logp, value = out
        act_i, act_f = (actions, self._empty_f) if self.discrete else (self._empty_i, actions)
        nets = (self.params, self.critic_layers, self.actor_layers, self._act, self.discrete, self.log_std_off)
        if ACT_SPLIT_MIN is not None and m >= ACT_SPLIT_MIN:
            # two halves on two threads, as the minibatch update's split: every sample's actions,
            # log-prob and value are computed on their own, so the halves write disjoint rows
            h = m // 2
            half = self._second_half(m - h)
            n1, n2 = (noise, noise) if greedy else (noise[:h], noise[h:])
            i1, i2 = (act_i[:h], act_i[h:]) if self.discrete else (act_i, act_i)
            f1, f2 = (act_f, act_f) if self.discrete else (act_f[:h], act_f[h:])
            second = half["pool"].submit(_act, *nets, obs[h:], n2, greedy, half["ws"], i2, f2, logp[h:], value[h:])
            _act(*nets, obs[:h], n1, greedy, self._ws, i1, f1, logp[:h], value[:h])
            second.result()
            return out
        _act(*nets, obs, noise, greedy, self._ws, act_i, act_f, logp, value)
        return out

    def greedy(self, obs: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The greedy actions of ``obs`` (M, obs_dim) float32 (C-contiguous), the actor's forward
        alone: int64 (M,) argmax or float32 (M, action_dim) mean; ``out``: an array of that shape
        to fill and return. As ``act(obs, greedy=True)[0]``."""
        m = obs.shape[0]
        if obs.dtype != np.float32 or obs.ndim != 2 or obs.shape[1] != self.obs_dim or not obs.flags.c_contiguous:
            raise TypeError(f"obs must be C-contiguous float32 (n, {self.obs_dim}), got {obs.dtype} {obs.shape}")
        if m > self.max_minibatch:
            self._alloc(m)
        if out is None:
            out = np.empty(m, np.int64) if self.discrete else np.empty((m, self.action_dim), np.float32)
        act_i, act_f = (out, self._empty_f) if self.discrete else (self._empty_i, out)
        _greedy(self.params, self.actor_layers, self._act, self.discrete, obs, self._ws, act_i, act_f)
        return out

    def forward(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(actor output (M, action_dim), value (M,))`` for ``obs`` (M, obs_dim) float32."""
        m = obs.shape[0]
        if m > self.max_minibatch:
            self._alloc(m)
        out = np.empty((m, self.action_dim), np.float32)
        value = np.empty(m, np.float32)
        _forward(self.params, self.critic_layers, self.actor_layers, self._act, np.ascontiguousarray(obs, np.float32),
                 self._ws, out, value)
        return out, value
