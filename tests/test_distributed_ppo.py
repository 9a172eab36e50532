"""Data-parallel PPO (``fastsample train --distributed``) on torch.distributed with gloo, on this
machine: the same update as one process on the combined batch, bit-identical replicas, CartPole
solved by 2 ranks, a 2-"node" run over c10d rendezvous on localhost, bad launches refused on
every rank, and a rank's death or Ctrl-C ending every rank without leftovers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]

pytest.importorskip("torch.distributed")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("RANK", None)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(*args: str, nproc: int = 2, extra: tuple[str, ...] = ()) -> list[str]:
    return [*TORCHRUN, "--nproc-per-node", str(nproc), *extra, "-m", "fastsample.cli", "train", "--distributed",
            "--no-progress", *args]


def _shm() -> set[str]:
    return set(os.listdir("/dev/shm"))


@pytest.fixture(scope="module")
def checks(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("dist") / "checks.json"
    proc = subprocess.run([*TORCHRUN, "--nproc-per-node", "2", str(ROOT / "tests" / "distributed_support.py"),
                           str(out)], env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("backend", ["compiled", "torch"])
def test_two_ranks_take_the_update_of_one_process_on_the_combined_batch(checks, backend):
    r = checks[f"check_update[{backend}]"]
    assert r["max_abs_change"] > 1e-2  # the updates moved the weights, so the comparison means something
    # float32: the averaged gradient is summed in another order than the combined batch's
    assert r["max_abs_diff"] <= 1e-5, r


@pytest.mark.parametrize("backend", ["compiled", "torch"])
def test_replicas_stay_bit_identical(checks, backend):
    r = checks[f"check_replicas[{backend}]"]
    assert r["trained"] and r["envs_differ"], r  # each rank stepped its own envs, and learned
    assert r["params_equal"] and r["norm_equal"], r
    assert r["global_step"] == 6 * 16 * 32  # steps of both ranks together


def test_torchrun_two_ranks_solve_cartpole(tmp_path):
    run_dir = tmp_path / "run"
    shm = _shm()
    proc = subprocess.run(_train("--env", "CartPole-v1", "--run-dir", str(run_dir)), cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["solved"] and summary["world_size"] == 2
    assert summary["eval_return"] >= 475
    # rank 0 alone wrote the run directory, and reported once
    assert sorted(p.name for p in run_dir.iterdir() if not p.name.startswith("events.out")) == [
        "checkpoints", "config.json", "metrics.jsonl", "summary.json"]
    assert len(list(run_dir.glob("events.out.tfevents.*"))) <= 1
    assert proc.stdout.count("CartPole-v1 seed 1:") == 1
    assert not (tmp_path / "runs").exists()
    assert _shm() <= shm


def test_torchrun_two_ranks_async_mode(tmp_path):
    """--mode async: each rank's samplers fill its slots; the ranks still average every minibatch's
    gradient and count every rank's steps."""
    run_dir = tmp_path / "run"
    proc = subprocess.run(_train("--env", "CartPole-v1", "--mode", "async", "--num-workers", "1", "--run-dir",
                                 str(run_dir)), cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["mode"] == "async"
    assert summary["solved"], summary


def test_resume_on_another_world_size(two_node_run, tmp_path):
    # the 2-rank run of test_two_nodes_on_localhost_over_c10d_rendezvous (a copy of its run dir)
    assert [code for code, _ in two_node_run["outs"]] == [0, 0], "the 2-rank run to resume failed"
    run_dir = tmp_path / "run"
    shutil.copytree(two_node_run["run_dir"], run_dir)
    other = subprocess.run(_train("--resume", str(run_dir), "--total-steps", "24576", nproc=1), cwd=tmp_path,
                           env=_env(), capture_output=True, text=True, timeout=300)
    assert other.returncode == 0, other.stdout[-3000:] + other.stderr[-3000:]
    assert "resuming a run of 2 rank(s) on 1" in other.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["resumed"] and summary["world_size"] == 1 and summary["steps"] >= 24576


def _two_nodes(tmp_path, per_node_args: list[tuple[str, ...]], timeout: float = 300):
    port = _free_port()
    procs = []
    for node, args in enumerate(per_node_args):
        extra = ("--nnodes", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
                 "--rdzv-id", f"fastsample-test-{port}")
        procs.append(subprocess.Popen(_train(*args, nproc=1, extra=extra), cwd=tmp_path, env=_env(),
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      start_new_session=True))
    outs = []
    for p in procs:
        out, _ = p.communicate(timeout=timeout)
        outs.append((p.returncode, out))
    return outs


@pytest.fixture(scope="module")
def two_node_run(tmp_path_factory) -> dict:
    """Two 1-rank "nodes" over c10d rendezvous on localhost, 8192 steps: its exit codes and outputs,
    the run dir and the summary it wrote (test_resume_on_another_world_size resumes a copy)."""
    tmp_path = tmp_path_factory.mktemp("two-nodes")
    run_dir = tmp_path / "run"
    args = ("--env", "CartPole-v1", "--run-dir", str(run_dir), "--total-steps", "8192", "--no-stop-when-solved")
    outs = _two_nodes(tmp_path, [args, args])
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").exists() else None
    return {"outs": outs, "run_dir": run_dir, "summary": summary}


def test_two_nodes_on_localhost_over_c10d_rendezvous(two_node_run):
    for code, out in two_node_run["outs"]:
        assert code == 0, out[-3000:]
    summary = two_node_run["summary"]
    assert summary["world_size"] == 2 and summary["steps"] >= 8192


def test_mismatched_configs_are_refused_on_every_rank(tmp_path):
    outs = _two_nodes(tmp_path, [("--env", "CartPole-v1", "--run-dir", str(tmp_path / "a")),
                                 ("--env", "CartPole-v1", "--run-dir", str(tmp_path / "a"), "--learning-rate", "1e-3")])
    for code, out in outs:
        assert code != 0
        assert "configs differ" in out, out[-3000:]
    assert not (tmp_path / "a" / "metrics.jsonl").exists()


def test_world_size_must_divide_the_envs(tmp_path):
    # two launchers (one rank each), so that neither rank is killed by the other's launcher before
    # it has printed its error
    args = ("--env", "CartPole-v1", "--num-envs", "3", "--run-dir", str(tmp_path / "r"))
    for code, out in _two_nodes(tmp_path, [args, args]):
        assert code != 0
        assert "must divide evenly over the world size 2" in out, out[-3000:]
    assert not (tmp_path / "r").exists()  # refused before anything was created


def test_distributed_without_torchrun_is_a_clear_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fastsample.cli", "train", "--env", "CartPole-v1", "--distributed"],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "needs the environment torchrun sets" in proc.stderr and "torchrun --nproc-per-node" in proc.stderr
    assert not (tmp_path / "runs").exists()


def _wait_for_training(proc, run_dir: Path, timeout: float) -> None:
    """Until the ranks are in their update loop (metrics.jsonl is opened just before it)."""
    deadline = time.monotonic() + timeout
    while not (run_dir / "metrics.jsonl").exists():
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "training never started"
        time.sleep(0.2)
    time.sleep(2.0)  # a few updates in


def _long_run(tmp_path, *more: str):
    run_dir = tmp_path / "run"
    # 2 env worker processes per rank, so that ending the ranks must also end their workers
    args = ("--env", "CartPole-v1", "--run-dir", str(run_dir), "--total-steps", "100000000", "--num-workers", "2",
            "--eval-every", "0", "--no-stop-when-solved", "--checkpoint-interval", "1000", *more)
    proc = subprocess.Popen(_train(*args), cwd=tmp_path, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    _wait_for_training(proc, run_dir, 120)
    family = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    return proc, run_dir, family


def _all_gone(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return True
        time.sleep(0.1)
    return False


def _end_run(tmp_path, end) -> tuple[int, Path]:
    """Start a long 2-rank run, ``end(torchrun_process)`` it, and check that every process it
    started is gone within seconds and /dev/shm is as before; returns (exit code, run dir)."""
    shm = _shm()
    proc, run_dir, family = _long_run(tmp_path)
    try:
        t0 = time.monotonic()
        end(proc)
        proc.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert took < 20, took  # a few seconds here when the machine is quiet
    assert _all_gone(family, 10)
    assert _shm() <= shm
    return proc.returncode, run_dir


def test_a_rank_dying_ends_every_rank(tmp_path):
    def kill_rank_1(proc):
        ranks = [c for c in psutil.Process(proc.pid).children() if "fastsample.cli" in " ".join(c.cmdline())]
        assert len(ranks) == 2
        ranks[1].kill()

    code, _ = _end_run(tmp_path, kill_rank_1)
    assert code != 0


def test_ctrl_c_ends_every_rank(tmp_path):
    # what a terminal's Ctrl-C does: SIGINT to the whole foreground group (torchrun, ranks, workers)
    code, run_dir = _end_run(tmp_path, lambda proc: os.killpg(proc.pid, signal.SIGINT))
    assert code != 0
    summary = json.loads((run_dir / "summary.json").read_text())  # rank 0 stopped cleanly and saved
    assert summary["interrupted"] and summary["signal"] == "SIGINT" and summary["world_size"] == 2
    assert (run_dir / "checkpoints" / "latest.npz").exists()
