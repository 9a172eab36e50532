"""Trainer kill/resume soak (issue 14): ``fastsample train`` is killed at random points and
resumed, again and again; run locally, not in CI::

    python -m bench.train_kill_soak [--cycles 20] [--checkpoint-interval 1.0] [--seed 0] [--out soak.json]

Each cycle starts ``fastsample train`` in its own process group (a fresh run, or ``--resume``
once the run has a checkpoint) and picks a random point: with probability ``--early`` a time
in the first ``--early-s`` seconds (imports, JIT, sampler start-up: wherever start-up is on
this machine), otherwise a time up to three checkpoint intervals after the process wrote its
first checkpoint (mid-training, mid-checkpoint). It then sends either

* SIGKILL to the trainer alone (its workers, samplers and multiprocessing's resource tracker
  must go by themselves), or
* SIGTERM to the whole process group (what ``timeout``, Slurm, systemd and Kubernetes send).

The cycles rotate over three runs, one per layout: sync in-process, sync with 2 env worker
processes, async with 2 sampler processes. Checked after every cycle, and the soak exits 1 if
any check fails:

* nothing of the cycle survives: 5 s after the kill (after the trainer's exit for SIGTERM) no
  process is left in its process group,
  and no new /dev/shm entry created by it remains (``pym-<pid>-*`` of its processes, or any
  other new name such as ``sem.mp-*``; another program creating /dev/shm entries at the same
  time would be counted too);
* SIGTERM: exit code 143 with no traceback, ``summary.json`` says interrupted, and the final
  checkpoint holds every update the summary counts (nothing lost); exit -15 is accepted when
  the signal came before the trainer installed its handler (Python start-up: nothing to save);
* SIGKILL: at most one checkpoint interval of training lost: the time from the last
  checkpoint this process wrote to the kill is at most ``--checkpoint-interval`` plus
  ``--slack`` (an update and an evaluation);
* the resume works: metrics.jsonl has one line per update, iterations 1..N without a gap or a
  duplicate (a torn line is allowed only last, right after a SIGKILL), and after the final
  resume no checkpoint temp file is left (a SIGKILL while saving leaves one; the next resume
  removes it).

At the end each run is resumed once more to completion (a few more updates) and its model is
evaluated with ``fastsample eval``: finite parameters, a finite mean return.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent

LAYOUTS = {
    "sync": [],
    "sync-workers": ["--num-workers", "2"],
    "async": ["--mode", "async", "--num-workers", "2", "--num-envs", "64"],
}


def _shm() -> set[str]:
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


def _group(pgid: int) -> list[psutil.Process]:
    """Live (non-zombie) processes of process group ``pgid``."""
    out = []
    for p in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(p.pid) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                out.append(p)
        except (ProcessLookupError, psutil.Error, OSError):
            pass
    return out


def _leaked(before: set[str], pids: set[int]) -> list[str]:
    leaked = []
    for name in sorted(_shm() - before):
        m = re.match(r"pym-(\d+)-", name)
        if m is None or int(m.group(1)) in pids:
            leaked.append(name)
    return leaked


def _metrics_rows(run: Path) -> list[dict]:
    rows = []
    path = run / "metrics.jsonl"
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                rows.append({"torn": line})
    return rows


def _ckpt_info(run: Path) -> tuple[int, int, float] | None:
    """(iteration, global_step, mtime) of the run's checkpoint, or None."""
    from fastsample.train import load_checkpoint

    path = run / "checkpoints" / "latest.npz"
    if not path.exists():
        return None
    mtime = path.stat().st_mtime
    d = load_checkpoint(run)
    return int(d["runner"]["iteration"]), int(d["runner"]["global_step"]), mtime


def _train_cmd(run: Path, layout: str, interval: float) -> list[str]:
    base = [sys.executable, "-m", "fastsample.cli", "train"]
    if (run / "checkpoints" / "latest.npz").exists():
        return base + ["--resume", str(run)]
    return base + ["--env", "CartPole-v1", "--total-steps", "1000000000", "--no-stop-when-solved", "--no-progress",
                   "--checkpoint-interval", str(interval), "--run-dir", str(run), "--overwrite", *LAYOUTS[layout]]


def run_cycle(i: int, run: Path, layout: str, rng: random.Random, args) -> dict:
    sig = rng.choice([signal.SIGKILL, signal.SIGTERM])
    early = rng.random() < args.early
    delay = rng.uniform(0.2, args.early_s) if early else rng.uniform(0.0, 3 * args.checkpoint_interval)
    before_shm = _shm()
    ckpt_before = _ckpt_info(run)
    ckpt_path = run / "checkpoints" / "latest.npz"
    t_start = time.time()
    proc = subprocess.Popen(_train_cmd(run, layout, args.checkpoint_interval), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    pgid = proc.pid
    pids = {proc.pid}
    deadline = time.monotonic() + (delay if early else 120.0)
    while time.monotonic() < deadline and proc.poll() is None:  # collect the cycle's pids as they appear
        pids.update(p.pid for p in _group(pgid))
        if not early and ckpt_path.exists() and (ckpt_before is None or ckpt_path.stat().st_mtime != ckpt_before[2]):
            deadline = time.monotonic() + delay  # training: the first checkpoint of this process is written
            early = True
        time.sleep(0.02)
    pids.update(p.pid for p in _group(pgid))
    t_kill = time.time()
    exited_early = proc.poll() is not None
    if not exited_early:
        if sig == signal.SIGKILL:
            os.kill(proc.pid, signal.SIGKILL)
        else:
            os.killpg(pgid, signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(pgid, signal.SIGKILL)
        _, err = proc.communicate()
        err = "TRAINER DID NOT EXIT WITHIN 60 s\n" + err
    t_exit = time.time()
    # nothing of the cycle may remain 5 s after the kill (SIGTERM: after the trainer's exit, since
    # it first saves a checkpoint and stops its samplers, which may take seconds on a loaded machine)
    survivors = _group(pgid)
    settle = (t_kill if sig == signal.SIGKILL else max(t_kill, t_exit)) + 5.0
    while survivors and time.time() < settle:
        time.sleep(0.05)
        survivors = _group(pgid)
    survivors_desc = [f"{p.pid}:{p.name()}" for p in survivors]
    for p in survivors:  # clean up what this soak started, then report it
        try:
            p.kill()
        except psutil.Error:
            pass
    leaked = _leaked(before_shm, pids)
    ckpt_after = _ckpt_info(run)
    wrote_ckpt = ckpt_after is not None and (ckpt_before is None or ckpt_after[2] != ckpt_before[2])
    problems = []
    if survivors_desc:
        problems.append(f"processes left after 5 s: {survivors_desc}")
    if leaked:
        problems.append(f"/dev/shm entries left: {leaked}")
    if "TRAINER DID NOT EXIT" in err:
        problems.append("the trainer hung after the signal")
    lost_s = None
    if exited_early:
        problems.append(f"the trainer exited by itself before the signal (rc {proc.returncode}): {err[-500:]}")
    elif sig == signal.SIGTERM:
        if proc.returncode == 128 + signal.SIGTERM:
            if "Traceback" in err:
                problems.append(f"traceback on SIGTERM: {err[-800:]}")
            summary = json.loads((run / "summary.json").read_text())
            if not summary.get("interrupted") or summary.get("signal") != "SIGTERM":
                problems.append(f"summary.json does not record the SIGTERM: {summary}")
            if ckpt_after is None or ckpt_after[1] != summary["steps"]:
                problems.append(f"final checkpoint at {ckpt_after and ckpt_after[1]} steps, summary says "
                                f"{summary['steps']}")
            lost_s = 0.0
        elif proc.returncode == -signal.SIGTERM and not wrote_ckpt and "fastsample train" not in err:
            lost_s = 0.0  # before the handler was installed: Python start-up, nothing trained yet
        else:
            problems.append(f"SIGTERM: exit code {proc.returncode}: {err[-800:]}")
    else:  # SIGKILL: at most one checkpoint interval lost
        if wrote_ckpt:
            lost_s = t_kill - ckpt_after[2]
            if lost_s > args.checkpoint_interval + args.slack:
                problems.append(f"{lost_s:.2f} s of training since the last checkpoint (interval "
                                f"{args.checkpoint_interval} s + slack {args.slack} s)")
        else:
            lost_s = None  # it never reached its first checkpoint: less than one interval trained
    return {"cycle": i, "layout": layout, "signal": signal.Signals(sig).name, "delay_s": round(t_kill - t_start, 2),
            "rc": proc.returncode, "exit_s": round(t_exit - t_kill, 2), "wrote_checkpoint": wrote_ckpt,
            "checkpoint_step": None if ckpt_after is None else ckpt_after[1],
            "lost_s": None if lost_s is None else round(lost_s, 3), "processes": len(pids),
            "problems": problems}


def check_run(run: Path, final: bool = False) -> list[str]:
    """Metrics continuity; with ``final`` (after a completed resume) also no checkpoint temp
    file (a SIGKILL while saving leaves one; the next resume removes it)."""
    problems = []
    rows = _metrics_rows(run)
    torn = [r for r in rows if "torn" in r]  # after a SIGKILL the last line may be torn until the next resume
    if torn and (final or "torn" not in rows[-1] or len(torn) > 1):
        problems.append(f"{len(torn)} torn metrics lines")
    its = [r["iteration"] for r in rows if "iteration" in r]
    if its != list(range(1, len(its) + 1)):
        problems.append(f"metrics iterations not 1..N: first gap/duplicate near "
                        f"{next((a for a, b in zip(its, range(1, len(its) + 1)) if a != b), None)}")
    tmp = list((run / "checkpoints").glob("*.tmp*")) if final and (run / "checkpoints").exists() else []
    if tmp:
        problems.append(f"checkpoint temp files left: {[p.name for p in tmp]}")
    return problems


def finish_run(run: Path) -> dict:
    """Resume to completion (4 more updates), then evaluate the final model."""
    import numpy as np

    from fastsample.train import load_checkpoint

    info = _ckpt_info(run)
    if info is None:
        return {"run": run.name, "problems": ["no checkpoint at the end of the soak"]}
    cfg = json.loads((run / "config.json").read_text())
    more = 4 * cfg["num_envs"] * cfg["num_steps"]
    problems = []
    r = subprocess.run([sys.executable, "-m", "fastsample.cli", "train", "--resume", str(run), "--total-steps",
                        str(info[1] + more)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        problems.append(f"final resume failed (rc {r.returncode}): {r.stderr[-800:]}")
    problems += check_run(run, final=True)
    d = load_checkpoint(run)
    if not all(np.isfinite(v).all() for v in d["runner"]["model"].values() if v.dtype.kind == "f"):
        problems.append("non-finite model parameters")
    ev = subprocess.run([sys.executable, "-m", "fastsample.cli", "eval", str(run), "--episodes", "10"], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)
    m = re.search(r"greedy return (-?[\d.]+)", ev.stdout)
    ret = float(m.group(1)) if m else math.nan
    if ev.returncode != 0 or not math.isfinite(ret):
        problems.append(f"eval failed (rc {ev.returncode}): {ev.stdout[-300:]} {ev.stderr[-500:]}")
    return {"run": run.name, "final_steps": int(d["runner"]["global_step"]),
            "final_iterations": int(d["runner"]["iteration"]), "eval_return": ret, "problems": problems}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.train_kill_soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cycles", type=int, default=20)
    p.add_argument("--checkpoint-interval", type=float, default=1.0, help="the trainer's, in seconds")
    p.add_argument("--early", type=float, default=0.3, help="share of kills during start-up")
    p.add_argument("--early-s", type=float, default=5.0, help="start-up kills land uniformly in [0.2, this] s")
    p.add_argument("--slack", type=float, default=1.0, help="seconds allowed past the checkpoint interval "
                                                              "(one update and one evaluation)")
    p.add_argument("--layouts", default=",".join(LAYOUTS), help="comma-separated: " + ", ".join(LAYOUTS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--root", default=None, help="where the run directories go (default: a new temp dir)")
    p.add_argument("--out", default=None, help="also write the results as JSON here")
    args = p.parse_args(argv)
    import tempfile

    layouts = args.layouts.split(",")
    unknown = [x for x in layouts if x not in LAYOUTS]
    if unknown:
        p.error(f"unknown layouts {unknown}; choose from {list(LAYOUTS)}")
    root = Path(args.root or tempfile.mkdtemp(prefix="fastsample-kill-soak-"))
    rng = random.Random(args.seed)
    t0 = time.time()
    cycles = []
    for i in range(args.cycles):
        layout = layouts[i % len(layouts)]
        run = root / layout
        c = run_cycle(i, run, layout, rng, args)
        c["problems"] += check_run(run) if (run / "metrics.jsonl").exists() else []
        cycles.append(c)
        lost = "-" if c["lost_s"] is None else f"{c['lost_s']:.2f}s"
        print(f"cycle {i:2d} {layout:12s} {c['signal']:7s} after {c['delay_s']:4.1f}s: rc {c['rc']}, "
              f"exit {c['exit_s']:.2f}s, ckpt step {c['checkpoint_step']}, lost {lost}, "
              f"{c['processes']} processes" + ("" if not c["problems"] else f"  PROBLEMS: {c['problems']}"),
              flush=True)
    finals = [finish_run(root / layout) for layout in layouts if (root / layout).exists()]
    for f in finals:
        print(f"final {f['run']:12s}: {f.get('final_steps')} steps, {f.get('final_iterations')} updates, "
              f"greedy eval return {f.get('eval_return')}" + ("" if not f["problems"] else f"  PROBLEMS: {f['problems']}"))
    lost = [c["lost_s"] for c in cycles if c["lost_s"] is not None and c["signal"] == "SIGKILL"]
    result = {
        "cycles": len(cycles), "seconds": round(time.time() - t0, 1),
        "sigkill": sum(c["signal"] == "SIGKILL" for c in cycles),
        "sigterm": sum(c["signal"] == "SIGTERM" for c in cycles),
        "sigterm_clean_143": sum(c["signal"] == "SIGTERM" and c["rc"] == 143 for c in cycles),
        "killed_before_first_checkpoint": sum(not c["wrote_checkpoint"] for c in cycles),
        "max_lost_s_sigkill": max(lost) if lost else None,
        "max_exit_s": max(c["exit_s"] for c in cycles) if cycles else None,
        "checkpoint_interval_s": args.checkpoint_interval,
        "problems": sum(len(c["problems"]) for c in cycles) + sum(len(f["problems"]) for f in finals),
        "cycle_results": cycles, "final": finals, "root": str(root),
    }
    print(json.dumps({k: v for k, v in result.items() if k not in ("cycle_results", "final")}, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
