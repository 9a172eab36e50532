"""The kernels give gymnasium's bits under every codegen target this CPU can run.

Numba compiles for the CPU it runs on; the same source was right on one CPU and wrong on
another (issue 9: wrong episode flags on Zen 4). Each target of
``fastsample.check.codegen_targets()`` runs ``fastsample.check`` in a fresh process with its
own ``NUMBA_CACHE_DIR``: every kernel in every autoreset mode at num_envs 1, 31, 32, 33, 64
and 257 side by side with gymnasium, the bookkeeping self-check, and no masked load or store
in any kernel's optimised IR.
"""

import platform

import pytest

from fastsample import check

TARGETS = check.codegen_targets()


@pytest.fixture(scope="module")
def reports():
    # all targets at once, one process per core: compiling from scratch is most of the time
    return {r["name"]: r for r in check.run_matrix(TARGETS)}


def test_matrix_covers_the_required_targets():
    assert {"host", "generic"} <= set(TARGETS)
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert "x86-64-v2" in TARGETS
    have = check.host_features()
    if {"avx2", "fma", "bmi2"} <= have:
        assert "x86-64-v3" in TARGETS
    if {"avx512f", "avx512bw", "avx512vl"} <= have:
        assert "x86-64-v4" in TARGETS


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_kernels_match_gymnasium_under_target(reports, target):
    report = reports[target]
    failures = "\n".join(report["failures"][:20])
    assert not report["failures"], f"{target} ({report.get('target')}):\n{failures}"
    assert report["cases"] == sum(len(check.MODES) * len(c.sizes or check.SIZES) for c in check.CASES)
    ends = report["episode_ends"]
    for case in check.CASES:  # the runs really ended episodes both ways
        assert ends[case.env_id]["truncated"] > 0, case.env_id
        if case.env_id not in ("Pendulum-v1", "MinAtar-Freeway-v1"):  # they never terminate early
            assert ends[case.env_id]["terminated"] > 0, case.env_id
