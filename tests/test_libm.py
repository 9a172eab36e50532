"""envs_numba.libm gives NumPy's scalar results, bit for bit, and stays cacheable."""

import os
import subprocess
import sys

import numpy as np
import pytest
from numba import njit

import envs_numba

from envs_numba.libm import pow, powf, sincos


@njit(cache=True)
def _apply(x, s, c, p, q):
    for i in range(x.shape[0]):
        s[i], c[i] = sincos(x[i])
        p[i] = pow(x[i], 2.0)
        q[i] = powf(np.float32(x[i]), np.float32(2.0))


def test_libm_matches_numpy_scalars():
    x = np.random.default_rng(0).uniform(-20, 20, 50_000)
    s, c, p = (np.empty_like(x) for _ in range(3))
    q = np.empty(x.shape, np.float32)
    _apply(x, s, c, p, q)
    np.testing.assert_array_equal(s, np.array([np.sin(v) for v in x]))
    np.testing.assert_array_equal(c, np.array([np.cos(v) for v in x]))
    np.testing.assert_array_equal(p, np.array([v**2 for v in x]))  # np.float64 ** int -> libm pow
    x32 = x.astype(np.float32)
    np.testing.assert_array_equal(q, np.array([v**2 for v in x32]))  # np.float32 ** int -> powf
    # and the point of it: x*x is not libm's pow(x, 2) for every x
    assert np.count_nonzero(p != x * x) > 0


@pytest.mark.parametrize("env_id", sorted(envs_numba.KERNELS))
def test_kernels_are_cached_across_processes(env_id, tmp_path):
    """cache=True works for every kernel, libm intrinsics included: a second process loads
    the reset and step kernels from the cache the first one wrote."""
    code = (
        "import sys, fastsample, envs_numba\n"
        "k = envs_numba.KERNELS[sys.argv[1]]\n"
        "e = fastsample.make_vec(sys.argv[1], 2); e.reset(seed=0); e.step(e.action_space.sample())\n"
        "f = (k.reset, k.step)\n"
        "print(sum(sum(d.stats.cache_hits.values()) for d in f), sum(sum(d.stats.cache_misses.values()) for d in f))\n"
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    runs = [subprocess.run([sys.executable, "-c", code, env_id], env=env, capture_output=True, text=True, check=True)
            for _ in range(2)]
    assert runs[0].stdout.split() == ["0", "2"], runs[0].stdout + runs[0].stderr
    assert runs[1].stdout.split() == ["2", "0"], runs[1].stdout + runs[1].stderr
