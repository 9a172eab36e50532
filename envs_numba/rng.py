"""Per-env PCG64 random streams that draw exactly what NumPy's ``PCG64`` draws.

Gymnasium seeds sub-env ``i`` of a vector env with ``seed + i`` and gives it its own
``np.random.Generator(PCG64(SeedSequence(seed + i)))``. To reproduce that bit for bit
inside a batched kernel we keep each env's 128-bit PCG64 state and increment in a
``uint64`` array of shape ``(num_envs, 4)`` (``state_hi, state_lo, inc_hi, inc_lo``)
and step it in Numba. Seeding (rare) is done by NumPy itself, then copied in.

``uniform(rng, i, low, high)`` is ``low + (high - low) * next_double``, the formula of
NumPy's ``Generator.uniform``; ``next_double`` is ``(next_uint64 >> 11) * 2**-53``.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

# 128-bit LCG multiplier of NumPy's PCG64 (PCG_DEFAULT_MULTIPLIER_128), as two halves.
_MULT_HI = np.uint64(2549297995355413924)
_MULT_LO = np.uint64(4865540595714422341)
_U58 = np.uint64(58)
_U63 = np.uint64(63)
_U11 = np.uint64(11)
_ONE = np.uint64(1)
_ZERO = np.uint64(0)
_INV_2_53 = 1.0 / 9007199254740992.0
_MASK64 = (1 << 64) - 1


@intrinsic
def _mulhi64(typingctx, a, b):
    """High 64 bits of the 128-bit product of two uint64: LLVM's i128 multiply, one ``mul`` on
    x86-64 (Numba has no uint128; built from four 32-bit products it cost a few percent of a
    MinAtar step, which draws every step)."""
    sig = types.uint64(types.uint64, types.uint64)

    def codegen(context, builder, signature, args):
        wide = ir.IntType(128)
        product = builder.mul(builder.zext(args[0], wide), builder.zext(args[1], wide))
        return builder.trunc(builder.lshr(product, ir.Constant(wide, 64)), ir.IntType(64))

    return sig, codegen


@njit(cache=True)
def next_uint64(rng, i):
    """Advance env ``i``'s stream one step and return its 64-bit output (XSL-RR)."""
    sh = rng[i, 0]
    sl = rng[i, 1]
    lo = sl * _MULT_LO
    hi = _mulhi64(sl, _MULT_LO) + sh * _MULT_LO + sl * _MULT_HI
    new_lo = lo + rng[i, 3]
    carry = _ONE if new_lo < lo else _ZERO
    new_hi = hi + rng[i, 2] + carry
    rng[i, 0] = new_hi
    rng[i, 1] = new_lo
    x = new_hi ^ new_lo
    rot = new_hi >> _U58
    return (x >> rot) | (x << ((_ZERO - rot) & _U63))


@njit(cache=True)
def next_double(rng, i):
    return np.float64(next_uint64(rng, i) >> _U11) * _INV_2_53


@njit(cache=True)
def uniform(rng, i, low, high):
    """One draw of ``Generator.uniform(low, high)`` from env ``i``'s stream."""
    return low + (high - low) * next_double(rng, i)


def new_streams(num_envs: int) -> np.ndarray:
    """An unseeded stream array; every row must be seeded before use."""
    return np.zeros((num_envs, 4), dtype=np.uint64)


def seed_stream(rng: np.ndarray, i: int, seed: int | None) -> int:
    """Seed row ``i`` as ``gymnasium.utils.seeding.np_random(seed)`` would.

    Returns the entropy that was used (``np_random_seed`` of a gymnasium env).
    ``seed`` must already be validated (a non-negative int or None).
    """
    seed_seq = np.random.SeedSequence(seed)
    state = np.random.PCG64(seed_seq).state["state"]
    s, inc = state["state"], state["inc"]
    rng[i, 0] = (s >> 64) & _MASK64
    rng[i, 1] = s & _MASK64
    rng[i, 2] = (inc >> 64) & _MASK64
    rng[i, 3] = inc & _MASK64
    return seed_seq.entropy


def stream_as_generator(rng: np.ndarray, i: int) -> np.random.Generator:
    """A NumPy Generator positioned exactly where env ``i``'s stream is (for inspection)."""
    bit_gen = np.random.PCG64()
    bit_gen.state = {
        "bit_generator": "PCG64",
        "state": {
            "state": (int(rng[i, 0]) << 64) | int(rng[i, 1]),
            "inc": (int(rng[i, 2]) << 64) | int(rng[i, 3]),
        },
        "has_uint32": 0,
        "uinteger": 0,
    }
    return np.random.Generator(bit_gen)
