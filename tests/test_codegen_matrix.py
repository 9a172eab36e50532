"""The kernels give gymnasium's bits under every codegen target this CPU can run.

Numba compiles for the CPU it runs on; the same source was right on one CPU and wrong on
another (issue 9: wrong episode flags on Zen 4). Each target of
``fastsample.check.codegen_targets()`` runs ``fastsample.check`` in a fresh process with its
own ``NUMBA_CACHE_DIR``: every kernel in every autoreset mode at num_envs 1, 31, 32, 33, 64
and 257 side by side with gymnasium, the bookkeeping self-check, and no masked load or store
in any kernel's optimised IR.

The target processes run one per core, together with the other modules' fresh-cache
processes (``tests.support.job_results``): compiling from scratch is most of the time.
"""

import functools
import platform

import pytest

from fastsample import check
from tests import support

TARGETS = check.codegen_targets()

for _name, _env in TARGETS.items():
    # a target's check compiles every kernel (~40 s on one core here)
    support.register_job(f"codegen-matrix:{_name}", functools.partial(check.run_target, _name, _env), 40,
                         __name__, "test_kernels_match_gymnasium_under_target", target=_name)


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
def test_kernels_match_gymnasium_under_target(request, target):
    key = f"codegen-matrix:{target}"
    report = support.job_results(request, [key])[key]
    assert report["name"] == target and report["env"] == TARGETS[target]
    failures = "\n".join(report["failures"][:20])
    assert not report["failures"], f"{target} ({report.get('target')}):\n{failures}"
    assert report["cases"] == sum(len(check.MODES) * len(c.sizes or check.SIZES) for c in check.CASES)
    ends = report["episode_ends"]
    for case in check.CASES:  # the runs really ended episodes both ways
        assert ends[case.env_id]["truncated"] > 0, case.env_id
        if case.env_id not in ("Pendulum-v1", "MinAtar-Freeway-v1"):  # they never terminate early
            assert ends[case.env_id]["terminated"] > 0, case.env_id
