"""Signals as schedulers and users send them: SIGTERM to the whole process group stops
training cleanly (final checkpoint, summary, exit code 143, no traceback), and a SIGKILLed
async trainer leaves no sampler, resource tracker or /dev/shm entry behind."""

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from tests.support import leaked_shm, shm_entries

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _spawn(run, *args):
    return subprocess.Popen([sys.executable, "-m", "fastsample.cli", "train", "--env", "CartPole-v1",
                             "--total-steps", "100000000", "--no-stop-when-solved", "--eval-every", "0",
                             "--no-progress", "--checkpoint-interval", "0.3", "--run-dir", str(run), *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group, as under timeout/Slurm/systemd


def _wait_training(run, proc, timeout=60):
    ckpt = run / "checkpoints" / "latest.npz"
    t0 = time.monotonic()
    while not ckpt.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < timeout, "training never checkpointed"
        time.sleep(0.05)
    time.sleep(0.3)


def _alive(procs):
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def _reap(proc, children):
    """Test cleanup (a failing run): whatever this test started and is still running is killed,
    by pid; multiprocessing's resource tracker last, once it had 5 s to notice that everyone
    else is gone and unlink what was registered with it (named semaphores in /dev/shm)."""
    if proc.poll() is None:
        proc.kill()
        proc.communicate(timeout=10)
    alive = _alive(children)
    trackers = [c for c in alive if "resource_tracker" in " ".join(_cmdline(c))]
    for c in alive:
        if c not in trackers:
            c.kill()
    psutil.wait_procs(trackers, timeout=5)
    for c in _alive(trackers):
        c.kill()


def _cmdline(p):
    try:
        return p.cmdline()
    except psutil.Error:
        return []


@pytest.mark.parametrize("mode", [
    ["--num-workers", "2"],  # sync, envs on 2 worker processes
    ["--mode", "async", "--num-workers", "2", "--num-envs", "64"],  # 2 sampler processes
], ids=["sync-workers", "async"])
def test_sigterm_to_process_group_checkpoints_and_exits_cleanly(tmp_path, mode):
    run = tmp_path / "run"
    before = shm_entries()
    proc = _spawn(run, *mode)
    children = []
    try:
        _wait_training(run, proc)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 128 + signal.SIGTERM, err
        assert "Traceback" not in err and "stopped by SIGTERM" in err, err
        summary = json.loads((run / "summary.json").read_text())
        assert summary["interrupted"] and summary["signal"] == "SIGTERM"
        from fastsample.train import load_checkpoint as _load_ckpt

        ckpt = _load_ckpt(run)
        assert ckpt["runner"]["global_step"] == summary["steps"] > 0
        psutil.wait_procs(children, timeout=5)
        assert not _alive(children)
        assert not leaked_shm(before, [proc.pid, *(c.pid for c in children)])
        if "async" not in mode:  # and it resumes (async resumes the same way, at the cost of a slow start)
            from fastsample.cli import main

            assert main(["train", "--resume", str(run), "--total-steps", str(summary["steps"] + 4096),
                         "--no-progress"]) == 0
    finally:
        _reap(proc, children)


def test_sigkilled_async_trainer_leaves_no_process_or_shm(tmp_path):
    run = tmp_path / "run"
    before = shm_entries()
    proc = _spawn(run, "--mode", "async", "--num-workers", "2", "--num-envs", "64")
    children = []
    try:
        _wait_training(run, proc)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 2  # the samplers (and multiprocessing's resource tracker)
        proc.kill()
        proc.communicate(timeout=10)
        _, alive = psutil.wait_procs(children, timeout=5)
        assert not _alive(alive), [(p.pid, p.name()) for p in _alive(alive)]
        assert not leaked_shm(before, [proc.pid, *(c.pid for c in children)])
    finally:
        _reap(proc, children)


def test_sigterm_during_async_start_up_stops_cleanly(tmp_path):
    """SIGTERM while the samplers are still starting (imports, JIT): the learner stops waiting
    for them, saves a checkpoint of the initial state and exits 143; nothing is left."""
    run = tmp_path / "run"
    before = shm_entries()
    proc = _spawn(run, "--mode", "async", "--num-workers", "2", "--num-envs", "64")
    children = []
    try:
        t0 = time.monotonic()
        while len([c for c in psutil.Process(proc.pid).children() if "resource_tracker" not in " ".join(_cmdline(c))]) < 2:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() - t0 < 60, "the samplers never started"
            time.sleep(0.02)
        children = psutil.Process(proc.pid).children(recursive=True)
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 128 + signal.SIGTERM, err
        assert "Traceback" not in err, err
        assert json.loads((run / "summary.json").read_text())["interrupted"]
        assert (run / "checkpoints" / "latest.npz").exists()
        psutil.wait_procs(children, timeout=5)
        assert not _alive(children)
        assert not leaked_shm(before, [proc.pid, *(c.pid for c in children)])
    finally:
        _reap(proc, children)
