"""The kernels give gymnasium's bits under every codegen target this CPU can run.

Numba compiles for the CPU it runs on; the same source was right on one CPU and wrong on
another (issue 9: wrong episode flags on Zen 4). Each target of
``fastsample.check.codegen_targets()`` runs ``fastsample.check`` in a fresh process with its
own ``NUMBA_CACHE_DIR``: every kernel in every autoreset mode at num_envs 1, 31, 32, 33, 64
and 257 side by side with gymnasium, the bookkeeping self-check, and no masked load or store
in any kernel's optimised IR.

gymnasium's side of those runs does not depend on the target: one process records it live, in
this session, before the targets start (``check.run_record``), and each target's process plays it
back against its kernels (``check.Replay``: the same seeds, options and actions, call by call),
instead of stepping gymnasium seven times over (~12 s of CPU each). The MinAtar cases' reference
is fastsample's own one-env runs, recorded the same way in the session's own target (where
tests/test_minatar_*_align.py check the games against the ``minatar`` package): every target's
batches must equal them, so a miscompile that changed a game alike at every batch size fails too.

The target processes run one per core, together with the other modules' fresh-cache
processes (``tests.support.job_results``): compiling from scratch is most of the time.
"""

import atexit
import functools
import os
import platform
import shutil
import tempfile

import numpy as np
import pytest

from fastsample import check
from tests import support

TARGETS = check.codegen_targets()

REFERENCE = "codegen-matrix:gymnasium-reference"


def _record_reference() -> dict:
    """The reference side of every case (gymnasium's; the MinAtar games' one-env runs), recorded
    by a fresh process into a file that lives until the session ends; ``{"path", "runs",
    "seconds"}``."""
    tmp = tempfile.mkdtemp(prefix="fastsample-reference-")
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    path = os.path.join(tmp, "reference.pickle")
    summary = check.run_record(path)
    if "error" in summary:
        raise RuntimeError(f"recording gymnasium's side failed: {summary['error']}")
    return {"path": path, **summary}


def _run_target(name: str, env: dict, reference: dict) -> dict:
    return check.run_target(name, env, ["--in-process", "--reference", reference["path"]])


# ~15 s on one core here (~45 s when it compiles the MinAtar games into an empty numba cache);
# every target waits for it
support.register_job(REFERENCE, _record_reference, 30, __name__, "test_kernels_match_gymnasium_under_target")
for _name, _env in TARGETS.items():
    # a target's check compiles every kernel and runs the MinAtar references (~24 s on one core here)
    support.register_job(f"codegen-matrix:{_name}", functools.partial(_run_target, _name, _env), 24,
                         __name__, "test_kernels_match_gymnasium_under_target", needs=(REFERENCE,), target=_name)


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
    # the reference side of every case came from this session's recording (gymnasium's, and the
    # MinAtar games' one-env runs in the session's own target)
    recorded = sum(len(check.MODES) * len(c.sizes or check.SIZES) for c in check.CASES)
    assert recorded > 0 and report["replayed"] == recorded
    assert support.job_results(request, [REFERENCE])[REFERENCE]["runs"] == recorded
    ends = report["episode_ends"]
    for case in check.CASES:  # the runs really ended episodes both ways
        assert ends[case.env_id]["truncated"] > 0, case.env_id
        if case.env_id not in ("Pendulum-v1", "MinAtar-Freeway-v1"):  # they never terminate early
            assert ends[case.env_id]["terminated"] > 0, case.env_id


def test_replay_is_the_recorded_gymnasium_run_and_refuses_any_other(tmp_path):
    """What a target's process compares against: a recording of gymnasium's run played back gives
    the same comparison as gymnasium live, and a call that is not the recorded one (another seed,
    other actions, a call too many or too few) or an env that differs fails."""
    import gymnasium as gym
    import fastsample

    case = check.Case("CartPole-v1", max_episode_steps=25, steps=90)
    path = str(tmp_path / "reference.pickle")
    assert check.record_reference(path, sizes=(3,), cases=(case,))["runs"] == len(check.MODES)
    import pickle

    with open(path, "rb") as f:
        recordings = pickle.load(f)
    for mode in check.MODES:
        live = check.run_case(case, 3, mode)
        assert check.run_case(case, 3, mode, reference=recordings) == live
        assert live["terminated"] > 0 and live["truncated"] > 0

    def replay(mode="NextStep"):
        return check.Replay(recordings[("CartPole-v1", 3, mode)], "CartPole-v1")

    def ours(mode="NextStep"):
        return fastsample.make_vec("CartPole-v1", 3, autoreset_mode=mode, max_episode_steps=25)

    with pytest.raises(AssertionError, match="the recording's is reset"):
        check.compare_runs(replay(), ours(), "NextStep", 90, seed=1)
    with pytest.raises(AssertionError, match="the recording's is step"):
        check.compare_runs(replay(), ours(), "NextStep", 90, action_seed=2)
    full = replay()
    check.compare_runs(full, ours(), "NextStep", 90)
    full.assert_finished()
    with pytest.raises(AssertionError, match="past the end of the recording"):
        full.step(np.zeros(3, np.int64))
    short = replay()
    short.reset(seed=0)
    with pytest.raises(AssertionError, match="recorded calls never made"):
        short.assert_finished()
    # an env whose bits differ from the recording's (another time limit)
    other = fastsample.make_vec("CartPole-v1", 3, autoreset_mode="NextStep", max_episode_steps=24)
    with pytest.raises(AssertionError, match=r"step \d+: truncations"):
        check.compare_runs(replay(), other, "NextStep", 90)
    # the recording is gymnasium's: the same run against gymnasium live passes
    ref = gym.make_vec("CartPole-v1", 3, vectorization_mode="sync", vector_kwargs={"autoreset_mode": "NextStep"},
                       max_episode_steps=25)
    rep = replay()
    check.compare_runs(rep, ref, "NextStep", 90)
    rep.assert_finished()


@pytest.mark.parametrize("reference", ["live", "recorded"])
def test_a_one_ulp_state_error_fails_at_once(tmp_path, reference):
    """The comparison covers each env's float64 state, not only its observation: CartPole's
    float32 observation hides a 1-ulp error in a float64 velocity (it would show only once the
    dynamics grew it), yet the run fails at the reset that made it, against gymnasium live and
    against a recording of it."""
    import gymnasium as gym
    import fastsample

    def gymnasium():
        return gym.make_vec("CartPole-v1", 3, vectorization_mode="sync",
                            vector_kwargs={"autoreset_mode": "NextStep"}, max_episode_steps=25)

    if reference == "recorded":
        path = str(tmp_path / "reference.pickle")
        check.record_reference(path, sizes=(3,), modes=("NextStep",),
                               cases=(check.Case("CartPole-v1", max_episode_steps=25, steps=90),))
        import pickle

        with open(path, "rb") as f:
            recording = pickle.load(f)[("CartPole-v1", 3, "NextStep")]

    def ref():
        return check.Replay(recording, "CartPole-v1") if reference == "recorded" else gymnasium()

    check.compare_runs(ref(), fastsample.make_vec("CartPole-v1", 3, max_episode_steps=25), "NextStep", 90)
    ours = fastsample.make_vec("CartPole-v1", 3, max_episode_steps=25)
    real_reset = ours.reset

    def nudged_reset(**kwargs):
        out = real_reset(**kwargs)
        ours._state[1, 2] = np.nextafter(ours._state[1, 2], np.inf)  # env 2's x_dot, one ulp up
        return out

    ours.reset = nudged_reset
    with pytest.raises(AssertionError, match=r"^reset state: differ at \[\[2, 1\]\]"):
        check.compare_runs(ref(), ours, "NextStep", 90)
