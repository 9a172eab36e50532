"""envs_numba.libm gives NumPy's scalar results, bit for bit, and stays cacheable."""

import os
import subprocess
import sys

import numpy as np
from numba import njit

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


def test_kernels_are_cached_across_processes(tmp_path):
    code = (
        "import fastsample, numpy as np\n"
        "from envs_numba.classic_control import cartpole\n"
        "e = fastsample.make_vec('CartPole-v1', 2); e.reset(seed=0); e.step(np.zeros(2, dtype=np.int64))\n"
        "print(sum(cartpole.step.stats.cache_hits.values()), sum(cartpole.step.stats.cache_misses.values()))\n"
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    second = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert first.stdout.split() == ["0", "1"], first.stdout + first.stderr
    assert second.stdout.split() == ["1", "0"], second.stdout + second.stderr
