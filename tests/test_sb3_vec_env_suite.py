"""Stable-Baselines3's own VecEnv test suite, re-pointed at fastsample's SB3 adapters.

SB3's tests ship in its source distribution, not in the wheel. This test fetches the sdist of
the *installed* SB3 version once (``pip download --no-binary :all:``, cached under
``$FASTSAMPLE_CACHE_DIR`` or ``~/.cache/fastsample``), takes ``tests/test_vec_envs.py`` out of
it and writes a copy to a temporary folder with two names re-pointed before import:

* ``VEC_ENV_CLASSES`` (parametrizes most tests) becomes :data:`SUITE_TARGETS`: fastsample's
  ``ProcessVecEnv`` and ``wrap()`` over a ``ProcessVectorEnv`` in ``NextStep`` mode (so both the
  native same-step path and the masked-reset conversion run SB3's checks);
* ``SubprocVecEnv`` (used directly by the start-method, seeding and ``env_is_wrapped`` tests)
  becomes ``fastsample.compat.sb3.ProcessVecEnv``.

Then pytest runs that module in a subprocess; the tests of SB3-only classes
(:data:`DESELECTED`) and one exact duplicate (:data:`DUPLICATES`) are deselected. Nothing of
SB3's test code is stored in this repository. Without network access (no sdist, nothing
cached) the test skips and says why.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

sb3 = pytest.importorskip(
    "stable_baselines3", reason="stable-baselines3 is not installed (pip install 'fastsample[sb3]')"
)

from fastsample.compat.sb3 import ProcessVecEnv, wrap  # noqa: E402
from fastsample.engine import ProcessVectorEnv  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
SUITE_FILE = "tests/test_vec_envs.py"
ORIGINAL_LINE = "VEC_ENV_CLASSES = [DummyVecEnv, SubprocVecEnv]"
REPOINTED_LINES = (
    "from tests.test_sb3_vec_env_suite import SUITE_TARGETS as VEC_ENV_CLASSES  # re-pointed by fastsample\n"
    "from fastsample.compat.sb3 import ProcessVecEnv as SubprocVecEnv  # re-pointed by fastsample"
)
# tests that use only SB3's own classes (DummyVecEnv, its wrappers, PPO + video recording)
DESELECTED = (
    "test_vecenv_func_checker", "test_vecenv_wrapper_getattr", "test_framestack_vecenv", "test_video_recorder"
)
# test_vec_seeding swaps any class but DummyVecEnv for SubprocVecEnv (= ProcessVecEnv here) under
# each start method, so its second parametrization repeats the first (~20 s of spawned workers)
DUPLICATES = ("test_vec_seeding[wrap_ProcessVectorEnv_NextStep]",)


def wrap_ProcessVectorEnv_NextStep(env_fns):  # noqa: N802 - the name is the pytest id
    """``wrap()`` over gymnasium-env workers in NextStep mode, all envs in one worker."""
    return wrap(ProcessVectorEnv(env_fns, num_workers=1, autoreset_mode="NextStep"))


SUITE_TARGETS = [ProcessVecEnv, wrap_ProcessVectorEnv_NextStep]


def _cache_dir() -> Path:
    root = os.environ.get("FASTSAMPLE_CACHE_DIR") or Path.home() / ".cache" / "fastsample"
    return Path(root) / "sb3-tests" / sb3.__version__


def _download_sdist(dest: str) -> Path:
    spec = f"stable-baselines3=={sb3.__version__}"
    base = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q", "-d", dest, spec]
    errors = []
    # --no-build-isolation reuses the installed setuptools (seconds instead of a fresh build env)
    for extra in (["--no-build-isolation"], []):
        try:
            proc = subprocess.run(base + extra, capture_output=True, text=True, timeout=240)
        except subprocess.TimeoutExpired:
            errors.append("pip download timed out")
            continue
        found = sorted(Path(dest).glob("stable_baselines3-*.tar.gz"))
        if proc.returncode == 0 and found:
            return found[0]
        errors.append((proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit {proc.returncode}"])
    pytest.skip(f"cannot download the {spec} sdist to get SB3's tests (no network or no index?): {errors}")


def sb3_suite_source() -> str:
    """The installed SB3 version's ``tests/test_vec_envs.py`` (downloaded once, then cached)."""
    cached = _cache_dir() / Path(SUITE_FILE).name
    if cached.is_file():
        return cached.read_text()
    cached.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cached.parent) as tmp:
        sdist = _download_sdist(tmp)
        with tarfile.open(sdist) as tar:
            member = next((m for m in tar.getmembers() if m.isfile() and m.name.endswith("/" + SUITE_FILE)), None)
            if member is None:
                pytest.fail(f"{sdist.name} has no {SUITE_FILE}")
            text = tar.extractfile(member).read().decode()
        partial = Path(tmp) / "part.py"
        partial.write_text(text)
        os.replace(partial, cached)  # atomic: concurrent runs never read half a file
    return text


def repoint(source: str) -> str:
    if source.count(ORIGINAL_LINE) != 1:
        pytest.fail(f"SB3's {SUITE_FILE} no longer has the line {ORIGINAL_LINE!r}: update the re-pointing")
    return source.replace(ORIGINAL_LINE, REPOINTED_LINES)


def _junit_results(path: Path) -> dict[str, tuple[str, str]]:
    results = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, detail = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
                detail = (child.get("message") or "")[:300]
                break
        results[case.get("name")] = (outcome, detail)
    return results


def test_sb3_vec_env_suite_on_fastsample_adapters(tmp_path):
    source = repoint(sb3_suite_source())
    (tmp_path / "test_vec_envs.py").write_text(source)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # isolate from this repository's config
    junit = tmp_path / "junit.xml"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    deselect = " or ".join(DESELECTED)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
           "--junitxml", str(junit), "-k", f"not ({deselect})", "test_vec_envs.py"]
    for name in DUPLICATES:
        cmd += ["--deselect", f"test_vec_envs.py::{name}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=420)
    assert junit.is_file(), f"SB3's suite did not run:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    results = _junit_results(junit)
    counts: dict[str, int] = {}
    for outcome, _ in results.values():
        counts[outcome] = counts.get(outcome, 0) + 1
    print(f"SB3 {sb3.__version__} {SUITE_FILE} on fastsample's adapters: {counts}")
    for name, (outcome, detail) in sorted(results.items()):
        print(f"  {outcome:7s} {name} {detail}")
    bad = {name: detail for name, (outcome, detail) in results.items() if outcome in ("failed", "error")}
    assert not bad, f"SB3 suite failures: {bad}\n{proc.stdout[-6000:]}"
    assert proc.returncode == 0, proc.stdout[-6000:]
    # every re-pointed test ran: each parametrized one once per target, plus the ones that use
    # SubprocVecEnv by name
    ours = [n for n in results if any(getattr(t, "__name__", "") in n for t in SUITE_TARGETS)]
    assert len(ours) >= 10 * len(SUITE_TARGETS), sorted(results)
    for name in ("test_subproc_start_method", "test_vec_env_is_wrapped"):
        assert results.get(name, ("missing",))[0] == "passed", name
