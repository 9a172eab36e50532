"""`fastsample train` / `eval` from the command line: bad input, Ctrl-C, SIGKILL + resume."""

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from fastsample.cli import main
from tests.support import leaked_shm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("args, flag", [
    (["--num-minibatches", "3"], "--num-minibatches"),
    (["--num-envs", "0"], "--num-envs"),
    (["--total-steps", "-5"], "--total-steps"),
    (["--gamma", "1.5"], "--gamma"),
    (["--mode", "fast"], "--mode"),
    (["--hidden-sizes", "64,x"], "--hidden-sizes"),
    # fewer trajectory slots than samplers: an update could never gather its batch (it hung)
    (["--mode", "async", "--num-workers", "2", "--async-slots", "1"], "--async-slots"),
])
def test_bad_hyperparameters_name_the_flag(args, flag, capsys, tmp_path):
    rc = main(["train", "--env", "CartPole-v1", "--run-dir", str(tmp_path / "r"), *args])
    err = capsys.readouterr().err
    assert rc == 2
    assert flag in err
    assert not (tmp_path / "r").exists()  # failed before anything was created


def test_unknown_env_lists_available(capsys):
    rc = main(["train", "--env", "CartPol-v1"])
    err = capsys.readouterr().err
    assert rc == 2 and "CartPol-v1" in err and "CartPole-v1" in err and "Acrobot-v1" in err


def test_train_then_eval_cli(tmp_path, capsys):
    run = tmp_path / "run"
    rc = main(["train", "--env", "CartPole-v1", "--total-steps", "2048", "--no-progress", "--run-dir", str(run),
               "--eval-episodes", "4"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "SPS" in out
    gif = tmp_path / "ep.gif"
    rc = main(["eval", str(run), "--episodes", "2", "--render", str(gif)])
    assert rc == 0 and gif.stat().st_size > 0


def _spawn(args):
    return subprocess.Popen([sys.executable, "-m", "fastsample.cli", "train", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path, proc, timeout=60):
    t0 = time.monotonic()
    while not os.path.exists(path):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < timeout, f"{path} never appeared"
        time.sleep(0.1)


def test_ctrl_c_saves_checkpoint_and_exits(tmp_path):
    run = tmp_path / "run"
    proc = _spawn(["--env", "CartPole-v1", "--mode", "async", "--num-workers", "2", "--num-envs", "64",
                   "--total-steps", "100000000", "--no-stop-when-solved", "--no-progress", "--run-dir", str(run)])
    _wait_for(run / "metrics.jsonl", proc)
    time.sleep(1.0)
    children = psutil.Process(proc.pid).children(recursive=True)
    assert children, "the async runner should have sampler processes"
    before = set(os.listdir("/dev/shm"))
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert (run / "checkpoints" / "latest.npz").exists()
    assert json.loads((run / "summary.json").read_text())["interrupted"]
    psutil.wait_procs(children, timeout=5)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert not leaked_shm(before, [proc.pid, *(c.pid for c in children)])


def test_sigkill_then_resume(tmp_path):
    run = tmp_path / "run"
    proc = _spawn(["--env", "CartPole-v1", "--total-steps", "100000000", "--no-stop-when-solved", "--no-progress",
                   "--checkpoint-interval", "0.3", "--run-dir", str(run)])
    _wait_for(run / "checkpoints" / "latest.npz", proc)
    time.sleep(0.5)
    proc.kill()
    proc.wait(10)
    from fastsample.train import load_checkpoint as _load_ckpt

    step = _load_ckpt(run)["runner"]["global_step"]
    assert step > 0
    rc = main(["train", "--resume", str(run), "--total-steps", str(step + 2048), "--no-progress"])
    assert rc == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["resumed"] and summary["steps"] == step + 2048
    rows = [json.loads(line) for line in open(run / "metrics.jsonl")]
    assert [r["step"] for r in rows] == sorted({r["step"] for r in rows})  # no duplicated updates
