"""envs_numba.libm gives NumPy's scalar results, bit for bit, and stays cacheable."""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from numba import njit

import envs_numba

from envs_numba.libm import pow, powf, sincos
from tests import support


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


# Every kernel in one pair of processes sharing a fresh NUMBA_CACHE_DIR (one pair per kernel took
# ~110 s, most of it starting processes and compiling the shared helpers again): the first
# compiles each kernel's reset and step, the second, in the reverse order, must load every one
# of them from the cache the first wrote. A dispatcher's counters are per signature and shared
# by the ids that share it (MinAtar v0 and v1), so each run reports the totals after all ids.
_CACHE_RUN = """
import json, sys, fastsample, envs_numba
ids = sys.argv[1:]
for env_id in ids:
    e = fastsample.make_vec(env_id, 2); e.reset(seed=0); e.step(e.action_space.sample()); e.close()
stats = {}
for env_id in ids:
    k = envs_numba.KERNELS[env_id]
    stats[env_id] = {part: [sum(d.stats.cache_hits.values()), sum(d.stats.cache_misses.values())]
                     for part, d in (("reset", k.reset), ("step", k.step))}
print(json.dumps(stats))
"""
ENV_IDS = sorted(envs_numba.KERNELS)


def _cache_runs() -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="fastsample-cache-") as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        runs = []
        for ids in (ENV_IDS, ENV_IDS[::-1]):
            proc = subprocess.run([sys.executable, "-c", _CACHE_RUN, *ids], env=env, capture_output=True,
                                  text=True, timeout=600)
            assert proc.returncode == 0, proc.stderr[-3000:]
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return runs


# compiles every kernel (~30 s on one core here): with the codegen matrix's processes, one per core
support.register_job("libm-cache-runs", _cache_runs, 30, __name__, "test_kernels_are_cached_across_processes")


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_kernels_are_cached_across_processes(env_id, request):
    """cache=True works for every kernel, libm intrinsics included: a second process loads
    the reset and step kernels from the cache the first one wrote."""
    first, second = support.job_results(request, ["libm-cache-runs"])["libm-cache-runs"]
    for part in ("reset", "step"):
        (hits1, misses1), (hits2, misses2) = first[env_id][part], second[env_id][part]
        # the first process compiled each signature (nothing there to load), the second loaded
        # every one of them and compiled nothing
        assert hits1 == 0 and misses1 >= 1, f"{env_id} {part}: first process {first[env_id][part]}"
        assert hits2 == misses1 and misses2 == 0, f"{env_id} {part}: second process {second[env_id][part]}"
