"""Run directories: an existing run is never overwritten silently, default names never
collide, and metrics up to a checkpoint are on disk when the checkpoint is."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from fastsample.cli import main
from fastsample.train import train
from fastsample.train_config import ConfigError, make_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cfg(run_dir="", **over):
    values = dict(total_steps=512 * 4, stop_when_solved=False, eval_every=0, eval_episodes=2, progress=False,
                  run_dir=str(run_dir))
    values.update(over)
    return make_config("CartPole-v1", **values)


def _files(run):
    return {p: (run / p).read_bytes() for p in ("config.json", "metrics.jsonl", "summary.json",
                                                  "checkpoints/latest.npz")}


def test_existing_run_dir_is_refused_without_overwrite(tmp_path, capsys):
    run = tmp_path / "run"
    train(_cfg(run), quiet=True)
    before = _files(run)
    with pytest.raises(ConfigError, match=r"--run-dir .* already holds a run .*--resume.*--overwrite"):
        train(_cfg(run, seed=2), quiet=True)
    assert _files(run) == before  # nothing touched
    rc = main(["train", "--env", "CartPole-v1", "--total-steps", "1024", "--no-progress", "--run-dir", str(run)])
    assert rc == 2 and "--overwrite" in capsys.readouterr().err
    assert _files(run) == before
    # --overwrite replaces it: the new run's metrics only
    rc = main(["train", "--env", "CartPole-v1", "--total-steps", "1024", "--num-envs", "32", "--num-steps", "16",
               "--eval-episodes", "2", "--no-progress", "--run-dir", str(run), "--overwrite"])
    assert rc == 0
    rows = [json.loads(line) for line in open(run / "metrics.jsonl")]
    assert [r["iteration"] for r in rows] == [1, 2]
    assert json.loads((run / "summary.json").read_text())["steps"] == 1024


def test_empty_existing_run_dir_is_used(tmp_path):
    run = tmp_path / "empty"
    run.mkdir()
    s = train(_cfg(run), quiet=True)
    assert s["steps"] == 512 * 4 and (run / "checkpoints" / "latest.npz").exists()


def test_resume_without_checkpoint_is_a_clear_error(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"env": "CartPole-v1"}))
    rc = main(["train", "--resume", str(run), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "no checkpoint" in err and "--overwrite" in err


def test_default_run_dirs_started_in_the_same_second_differ(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(time, "strftime", lambda *a: "20260101-000000")  # both runs "in the same second"
    a = train(_cfg(), quiet=True)
    b = train(_cfg(), quiet=True)
    assert a["run_dir"] != b["run_dir"]
    for s in (a, b):
        assert json.loads((tmp_path / s["run_dir"] / "summary.json").read_text())["run_dir"] == s["run_dir"]
        assert len(open(tmp_path / s["run_dir"] / "metrics.jsonl").readlines()) == 4


def test_metrics_up_to_the_checkpoint_survive_sigkill(tmp_path):
    """metrics.jsonl is flushed when a checkpoint is written: after SIGKILL every update up to
    the checkpoint has its line, and the resumed run's lines continue without a gap."""
    from fastsample.train import load_checkpoint as _load_ckpt

    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "fastsample.cli", "train", "--env", "CartPole-v1",
                             "--total-steps", "100000000", "--no-stop-when-solved", "--eval-every", "0",
                             "--no-progress", "--checkpoint-interval", "0.5", "--run-dir", str(run)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        ckpt = run / "checkpoints" / "latest.npz"
        t0 = time.monotonic()
        while not ckpt.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() - t0 < 60, "no checkpoint"
            time.sleep(0.05)
        time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
    it = _load_ckpt(run)["runner"]["iteration"]
    assert it > 0
    rows = []
    for line in open(run / "metrics.jsonl"):
        try:
            rows.append(json.loads(line))
        except ValueError:  # a torn last line is allowed
            pass
    done = [r["iteration"] for r in rows if r["iteration"] <= it]
    assert done == list(range(1, it + 1)), f"checkpoint at update {it}, metrics lines for {len(done)} updates"
    step = _load_ckpt(run)["runner"]["global_step"]
    assert main(["train", "--resume", str(run), "--total-steps", str(step + 1024), "--no-progress"]) == 0
    rows = [json.loads(line) for line in open(run / "metrics.jsonl")]
    assert [r["iteration"] for r in rows] == list(range(1, len(rows) + 1))
    assert rows[-1]["step"] == step + 1024


def test_tensorboard_events_where_tensorboard_is_installed(tmp_path):
    """With the tensorboard package installed, a run directory gets TensorBoard scalars written by
    its own event-file writer (no torch); TensorBoard's reader finds every metrics column."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    s = train(make_config("CartPole-v1", total_steps=2048, progress=False, run_dir=str(tmp_path / "run"),
                          eval_every=0), quiet=True)
    events = [p for p in os.listdir(s["run_dir"]) if p.startswith("events.out.tfevents.")]
    assert len(events) == 1
    acc = EventAccumulator(os.path.join(s["run_dir"], events[0]))
    acc.Reload()
    assert {"episode_return", "lr", "policy_loss"} <= set(acc.Tags()["scalars"])
    assert [e.step for e in acc.Scalars("lr")] == [512, 1024, 1536, 2048]
