"""PPO with the CNN policy on MinAtar Breakout through ``fastsample train``: the learning curve,
drawn next to the published MinAtar Breakout curves, to ``bench/minatar_breakout.png``.

    python -m bench.minatar_train                      # train 3 M steps (the preset), then plot
    python -m bench.minatar_train --run-dir runs/X     # plot (and tabulate) an existing run
    python -m bench.minatar_train --run-dir runs/X --train   # train into runs/X, then plot

From Python: ``run(run_dir=None, total_steps=3_000_000, seed=1, torch_threads=1)`` returns
``{"rows", "points", "summary", "plot", "command", "reference"}`` and ``section(result)`` the
markdown lines for RESULTS.md.

The run is the real CLI in a child process: ``fastsample train --env
fastsample/MinAtar-Breakout-v1 --no-stop-when-solved --no-progress --run-dir DIR`` with the
preset (fastsample/train_config.py: 64 envs x 128 steps, 4 epochs of 8 minibatches, lr annealed,
a greedy evaluation of 32 episodes every 6 updates). The curve is read back from the run's
``metrics.jsonl``: per update the mean return of the last 100 finished training episodes (the
statistic of the published curve below) and, every 6 updates, the mean greedy-evaluation return.

References (what the plot draws, and only that):

* Young & Tian (2019), "MinAtar: An Atari-inspired Testbed for More Efficient Reinforcement
  Learning Experiments", arXiv:1903.03176: the learning curves of the paper, as published in the
  MinAtar repository (kenjyoung/MinAtar, ``img/learning_curves.gif``, Breakout panel): moving
  average of the training return over 100 episodes against frames (= env steps; sticky actions
  0.1, as here), mean of 30 runs. The points in :data:`YOUNG_TIAN_2019` were **digitised from
  that figure's pixels** (curve colour, median pixel row within +-4 pixel columns of each x, the
  axis calibrated on its tick marks): read-off values, good to about +-0.3, not published numbers.
* gymnax README (RobertTLange/gymnax), environment table: ``Breakout-MinAtar``, PPO checkpoint
  from gymnax-blines, "R: 28" — a final return only; gymnax-blines' ``agents/Breakout-MinAtar/
  ppo.yaml`` trains it for 10 M steps with an MLP (2 x 256) on the flattened grid. gymnax's
  MinAtar has no sticky actions by default and truncates episodes at 1000 steps, so it is drawn as
  a reference line, not as a curve at a step count.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ENV = "fastsample/MinAtar-Breakout-v1"
PLOT = ROOT / "bench" / "minatar_breakout.png"
TARGET = 10.0  # issue 12's acceptance: mean greedy return >= 10 within 3 M env steps

# (M frames, return) digitised from Young & Tian (2019)'s Breakout learning curves (see above)
YOUNG_TIAN_2019 = {
    "AC(λ=0.8)": [(0.25, 5.6), (0.5, 7.0), (0.75, 8.5), (1.0, 9.9), (1.5, 12.4), (2.0, 14.2), (2.5, 15.6),
                  (3.0, 16.8), (3.5, 16.6), (4.0, 17.5), (4.5, 17.0), (5.0, 17.6)],
    "DQN": [(0.25, 6.8), (0.5, 8.3), (0.75, 8.9), (1.0, 9.2), (1.5, 9.4), (2.0, 9.6), (2.5, 9.8), (3.0, 9.9),
            (3.5, 9.9), (4.0, 9.9), (4.5, 10.0), (5.0, 10.0)],
}
YOUNG_TIAN_CITE = ("Young & Tian 2019 (arXiv:1903.03176), Breakout learning curves, training return "
                   "(100-episode moving average, 30 runs); digitised from kenjyoung/MinAtar img/learning_curves.gif")
GYMNAX_PPO = 28.0
GYMNAX_CITE = ("gymnax README, Breakout-MinAtar PPO checkpoint 'R: 28' (gymnax-blines ppo.yaml: MLP 2x256, "
               "10 M steps; no sticky actions, 1000-step episodes)")


def train_command(run_dir: str | Path, total_steps: int = 3_000_000, seed: int = 1, torch_threads: int = 1,
                  extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The ``fastsample train`` command line of the benchmark run."""
    return [sys.executable, "-m", "fastsample.cli", "train", "--env", ENV, "--total-steps", str(total_steps),
            "--seed", str(seed), "--torch-threads", str(torch_threads), "--no-stop-when-solved", "--no-progress",
            "--run-dir", str(run_dir), *extra]


def train_run(run_dir: str | Path, **kwargs: Any) -> dict[str, Any]:
    """Run :func:`train_command` in a child process (the CLI exactly as a user runs it)."""
    cmd = train_command(run_dir, **kwargs)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr.strip() or "(no output)").splitlines()[-5:])
        raise RuntimeError(f"fastsample train failed (exit code {proc.returncode}):\n{tail}")
    return {"command": " ".join(["fastsample", *cmd[3:]]), "process_wall_s": round(wall, 1),
            "stdout": proc.stdout.strip().splitlines()[-1:] or [""]}


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """The run's curve (one row per update) and its summary."""
    run_dir = Path(run_dir)
    rows = []
    with open(run_dir / "metrics.jsonl") as f:
        for line in f:
            r = json.loads(line)
            rows.append({"step": int(r["step"]), "time_s": float(r["time_s"]),
                         "train_return": r.get("episode_return"), "eval_return": r.get("eval_return")})
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").exists() else {}
    config = json.loads((run_dir / "config.json").read_text()) if (run_dir / "config.json").exists() else {}
    return {"rows": rows, "summary": summary, "config": config}


def curve_points(rows: list[dict[str, Any]], every: int = 500_000) -> list[dict[str, Any]]:
    """The last evaluation at or before each multiple of ``every`` steps (and the last one)."""
    evals = [r for r in rows if r["eval_return"] is not None]
    points = []
    for mark in range(every, (rows[-1]["step"] if rows else 0) + every, every):
        before = [r for r in evals if r["step"] <= mark]
        if before and (not points or before[-1]["step"] != points[-1]["step"]):
            points.append(before[-1])
    return points


def plot(data: dict[str, Any], out: str | Path = PLOT, budget: int = 3_000_000) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = data["rows"]
    fig, ax = plt.subplots(figsize=(8.5, 5.2), dpi=110)
    steps = [r["step"] / 1e6 for r in rows if r["train_return"] is not None]
    train = [r["train_return"] for r in rows if r["train_return"] is not None]
    ev = [(r["step"] / 1e6, r["eval_return"]) for r in rows if r["eval_return"] is not None]
    ax.plot(steps, train, color="tab:blue", lw=1.4, label="fastsample PPO + CNN: training return (last 100 episodes)")
    if ev:
        ax.plot(*zip(*ev), "o-", color="tab:red", ms=3, lw=1.0,
                label=f"fastsample PPO + CNN: greedy evaluation ({(data.get('config') or {}).get('eval_episodes')} episodes)")
    styles = {"AC(λ=0.8)": ("tab:green", "s"), "DQN": ("tab:purple", "^")}
    for name, pts in YOUNG_TIAN_2019.items():
        color, marker = styles[name]
        x, y = zip(*pts)
        ax.plot(x, y, ls="--", marker=marker, ms=4, color=color, lw=1.0,
                label=f"Young & Tian 2019 {name}, training return (digitised)")
    ax.axhline(GYMNAX_PPO, color="tab:gray", ls=":", lw=1.2,
               label="gymnax PPO (MLP, 10 M steps, no sticky actions): R 28")
    ax.axhline(TARGET, color="black", ls="-.", lw=0.8, label="acceptance: greedy return 10")
    ax.axvline(budget / 1e6, color="black", lw=0.6, alpha=0.5)
    summary = data.get("summary") or {}
    title = "MinAtar Breakout-v1 (sticky actions 0.1)"
    if summary.get("wall_s"):
        title += f": {summary.get('steps', 0) / 1e6:.2f} M steps in {summary['wall_s'] / 60:.1f} min on this CPU"
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("env steps (millions; frames for Young & Tian)")
    ax.set_ylabel("episode return")
    ax.set_xlim(0, 5.05)
    top = max([GYMNAX_PPO, *train, *(e[1] for e in ev)])
    ax.set_ylim(0, top * 1.08)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.text(0.01, 0.005, "Young & Tian: " + YOUNG_TIAN_CITE + ". " + GYMNAX_CITE + ".", fontsize=5.2, wrap=True)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def run(run_dir: str | Path | None = None, *, total_steps: int = 3_000_000, seed: int = 1, torch_threads: int = 1,
        out: str | Path = PLOT, train: bool | None = None, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Train (``train=True``, or when ``run_dir`` holds no finished run) and/or read ``run_dir``;
    plot to ``out``. Returns the rows, the curve points, the summary, the plot path and the
    command that trained it."""
    if run_dir is None:
        run_dir = ROOT / "runs" / f"bench_minatar_breakout__{seed}__{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(run_dir)
    trained = None
    if train or (train is None and not (run_dir / "summary.json").exists()):
        trained = train_run(run_dir, total_steps=total_steps, seed=seed, torch_threads=torch_threads, extra=extra)
    data = read_run(run_dir)
    path = plot(data, out, budget=total_steps)
    return {"rows": data["rows"], "points": curve_points(data["rows"]), "summary": data["summary"],
            "config": data["config"], "plot": str(path), "run_dir": str(run_dir),
            "command": trained["command"] if trained else None,
            "reference": {"young_tian_2019": YOUNG_TIAN_2019, "gymnax_ppo": GYMNAX_PPO}}


def section(result: dict[str, Any], budget: int = 3_000_000) -> list[str]:
    """Markdown for RESULTS.md: the plot, the curve points, the verdict and the citations."""
    s, cfg = result["summary"], result.get("config") or {}
    evals = [r for r in result["rows"] if r["eval_return"] is not None and r["step"] <= budget]
    best_in_budget = max(evals, key=lambda r: r["eval_return"]) if evals else None
    last_in_budget = evals[-1] if evals else None
    rel = os.path.relpath(result["plot"], ROOT)
    lines = [f"![MinAtar Breakout learning curve]({rel})", ""]
    if result.get("command"):
        lines += [f"Command: `{result['command']}`", ""]
    lines += [
        f"Preset: {cfg.get('num_envs')} envs x {cfg.get('num_steps')} steps, {cfg.get('update_epochs')} epochs x "
        f"{cfg.get('num_minibatches')} minibatches, lr {cfg.get('learning_rate')} annealed, gamma {cfg.get('gamma')}, "
        f"entropy {cfg.get('ent_coef')}, CNN conv {cfg.get('conv_channels')} ch + {cfg.get('hidden_sizes')} units "
        f"({cfg.get('activation')}), torch threads {cfg.get('torch_threads')}, backend {s.get('backend')}.",
        "",
        f"| env steps | wall time (s) | training return (last 100 episodes) | greedy return ({cfg.get('eval_episodes')} episodes) |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for p in result["points"]:
        tr = "-" if p["train_return"] is None else f"{p['train_return']:.1f}"
        lines.append(f"| {p['step']:,} | {p['time_s']:.0f} | {tr} | {p['eval_return']:.1f} |")
    if s:
        def num(key, spec=".0f"):
            v = s.get(key)
            return "n/a" if v is None else format(v, spec)

        lines += ["", f"Run: {num('steps', ',')} steps in {num('wall_s')} s = {num('sps', ',.0f')} steps/s "
                      f"(sampling {num('sample_s')} s, learning {num('learn_s')} s, start-up {num('startup_s', '.1f')} s); "
                      f"final greedy return {num('eval_return', '.1f')} +- {num('eval_return_std', '.1f')} over "
                      f"{s.get('eval_episodes')} episodes" + (" (interrupted run)." if s.get("interrupted") else ".")]
    if last_in_budget is not None:
        ok = best_in_budget["eval_return"] >= TARGET
        lines += ["", f"Acceptance (greedy return >= {TARGET:g} within {budget / 1e6:g} M steps): "
                      f"{'met' if ok else 'NOT met'} — last evaluation within the budget "
                      f"{last_in_budget['eval_return']:.1f} at {last_in_budget['step']:,} steps; best "
                      f"{best_in_budget['eval_return']:.1f} at {best_in_budget['step']:,}."]
    lines += ["", "References drawn: " + YOUNG_TIAN_CITE + " (read-off values, about +-0.3: "
              + ", ".join(f"{k} {dict(v)[3.0]:.1f} at 3 M frames" for k, v in YOUNG_TIAN_2019.items())
              + "); " + GYMNAX_CITE + "."]
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.minatar_train", description=__doc__.split("\n\n")[0])
    p.add_argument("--run-dir", default=None, help="run directory to read (and to train into with --train)")
    p.add_argument("--train", action="store_true", help="train into --run-dir even if it holds a run")
    p.add_argument("--total-steps", type=int, default=3_000_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--torch-threads", type=int, default=1)
    p.add_argument("--out", default=str(PLOT))
    a = p.parse_args(argv)
    result = run(a.run_dir, total_steps=a.total_steps, seed=a.seed, torch_threads=a.torch_threads, out=a.out,
                 train=True if a.train else None, extra=("--overwrite",) if a.train and a.run_dir else ())
    print("\n".join(section(result, a.total_steps)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
