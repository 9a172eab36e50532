"""Our per-env PCG64 streams draw exactly what NumPy's Generator draws."""

import numpy as np
import pytest
from numba import njit

from envs_numba import rng as rng_mod


@njit(cache=True)
def _draw(rng, i, low, high, out):
    for j in range(out.shape[0]):
        out[j] = rng_mod.uniform(rng, i, low, high)


@pytest.mark.parametrize("seed", [0, 1, 42, 2**31 - 1, 2**63 + 12345, 10**30])
def test_uniform_draws_equal_numpy(seed):
    streams = rng_mod.new_streams(2)
    rng_mod.seed_stream(streams, 1, seed)
    ref = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed)))
    out = np.empty(20_000)
    _draw(streams, 1, -0.05, 0.05, out)
    np.testing.assert_array_equal(out, ref.uniform(-0.05, 0.05, size=20_000))
    _draw(streams, 1, -np.pi, np.pi, out)
    np.testing.assert_array_equal(out, ref.uniform(-np.pi, np.pi, size=20_000))
    # the stream stays where NumPy's would be
    assert rng_mod.stream_as_generator(streams, 1).integers(0, 2**62) == ref.integers(0, 2**62)
    assert not streams[0].any()  # other rows untouched


def test_seed_none_uses_fresh_entropy():
    streams = rng_mod.new_streams(2)
    e0 = rng_mod.seed_stream(streams, 0, None)
    e1 = rng_mod.seed_stream(streams, 1, None)
    assert e0 != e1
    assert not np.array_equal(streams[0], streams[1])
    ref = np.random.Generator(np.random.PCG64(np.random.SeedSequence(e0)))
    out = np.empty(10)
    _draw(streams, 0, 0.0, 1.0, out)
    np.testing.assert_array_equal(out, ref.uniform(0.0, 1.0, size=10))
