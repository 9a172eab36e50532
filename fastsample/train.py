"""``train(cfg)``: run directory, metrics, evaluation, checkpoints, resume and Ctrl-C around a runner.

A run directory holds ``config.json``, ``metrics.jsonl`` (one line per update), TensorBoard events
(when ``tensorboard`` is installed), ``checkpoints/latest.npz`` (arrays + JSON metadata, no
pickle: :mod:`fastsample.checkpoint`; written to a temp file, fsync-ed and ``os.replace``-d,
every ``--checkpoint-interval`` seconds and at the end) and ``summary.json``. Reading a run
directory (``--resume``, ``fastsample eval``) unpickles nothing.

Timing: ``startup_s`` is everything before the first env step (imports, Numba kernels from the
cache, env and learner construction, the learner's warm-up); ``wall_s`` and ``solved_at_s``
count from the first env step, evaluations included.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from fastsample.checkpoint import CheckpointError
from fastsample.train_config import TrainConfig, config_from_dict, validate

__all__ = ["train", "evaluate_run", "load_checkpoint", "read_run_config", "Interrupted", "CheckpointError"]

CHECKPOINT = "checkpoints/latest.npz"
LEGACY_CHECKPOINT = "checkpoints/latest.pt"  # torch.save (pickle) checkpoints: refused, never unpickled


class Interrupted(Exception):
    """Training stopped by SIGINT/SIGTERM (after writing the final checkpoint and the summary);
    ``signum`` is the signal (the CLI exits with ``128 + signum``)."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum


# what a run directory holds (and what --overwrite removes)
_RUN_FILES = ("config.json", "metrics.jsonl", "summary.json", "checkpoints")


def _new_run_dir(cfg: TrainConfig, root: str | Path = "runs") -> Path:
    """A fresh directory ``root/<env>__<seed>__<time>`` (``-2``, ``-3``... appended when a run
    started in the same second already took the name), created here, atomically: two runs
    never share one."""
    base = Path(root) / f"{cfg.env.replace('/', '_')}__{cfg.seed}__{time.strftime('%Y%m%d-%H%M%S')}"
    base.parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1_000_000):
        path = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a fresh run directory next to {base}")


def _holds_run(run_dir: Path) -> list[str]:
    """The names in ``run_dir`` that belong to a run (empty when there is none)."""
    if not run_dir.is_dir():
        return []
    return sorted(p.name for p in run_dir.iterdir()
                  if p.name in _RUN_FILES or p.name.startswith("events.out.tfevents."))


def _prepare_run_dir(cfg: TrainConfig, resume: str | Path | None, overwrite: bool) -> Path:
    """The run directory, checked before anything is written: ``--resume`` needs a checkpoint,
    an existing ``--run-dir`` that holds a run needs ``--overwrite`` (its files are then
    removed), and the default is a new unique directory."""
    import shutil

    from fastsample.train_config import ConfigError

    if resume:
        run_dir = Path(resume)
        if not (run_dir / CHECKPOINT).exists() and (run_dir / LEGACY_CHECKPOINT).exists():
            raise ConfigError(_legacy_message(run_dir))
        if not (run_dir / CHECKPOINT).exists():
            raise ConfigError(f"--resume {run_dir}: no checkpoint at {run_dir / CHECKPOINT} (the run stopped "
                              f"before its first checkpoint); start it again with --run-dir {run_dir} --overwrite")
    elif cfg.run_dir:
        run_dir = Path(cfg.run_dir)
        found = _holds_run(run_dir)
        if found and not overwrite:
            raise ConfigError(f"--run-dir {run_dir} already holds a run ({', '.join(found)}): pass --resume {run_dir} "
                              f"to continue it, --overwrite to replace it, or another --run-dir")
        for name in found:
            target = run_dir / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        run_dir.mkdir(parents=True, exist_ok=True)
    else:
        return _new_run_dir(cfg)
    for stale in (run_dir / CHECKPOINT).parent.glob("*.tmp*"):  # left by a process killed while saving
        stale.unlink(missing_ok=True)
    return run_dir


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _legacy_message(run_dir: Path) -> str:
    return (f"{run_dir / LEGACY_CHECKPOINT} is a checkpoint in the old torch.save (pickle) format, which is no "
            f"longer read: loading a pickle can run arbitrary code. Checkpoints are now {CHECKPOINT} (arrays + "
            f"JSON metadata); this run cannot be resumed or evaluated by this version (start it again)")


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``run_dir/checkpoints/latest.npz`` atomically (:mod:`fastsample.checkpoint`)."""
    from fastsample import checkpoint

    return checkpoint.save(Path(run_dir) / CHECKPOINT, state)


def load_checkpoint(run_dir: str | Path) -> dict[str, Any]:
    """A run's latest checkpoint as plain data and numpy arrays (no torch needed, nothing
    unpickled; :func:`fastsample.checkpoint.to_torch` converts the torch parts). An old ``.pt``
    checkpoint or any file not in the format raises :class:`CheckpointError`."""
    from fastsample import checkpoint

    run_dir = Path(run_dir)
    path = run_dir / CHECKPOINT
    if not path.exists():
        if (run_dir / LEGACY_CHECKPOINT).exists():
            raise CheckpointError(_legacy_message(run_dir))
        raise FileNotFoundError(f"no checkpoint at {path}")
    return checkpoint.load(path)


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """A run directory's ``config.json`` as a dict (JSON only: anything else is refused with
    :class:`CheckpointError`); :class:`FileNotFoundError` when there is none."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.json)")
    try:
        values = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise CheckpointError(f"{path} is not a JSON config ({type(err).__name__}); refused") from None
    if not isinstance(values, dict):
        raise CheckpointError(f"{path} is not a JSON object; refused")
    return values


class _TensorBoard:
    """Scalars as TensorBoard events, written with the ``tensorboard`` package's own event-file
    writer (what ``torch.utils.tensorboard.SummaryWriter`` uses underneath; no torch)."""

    def __init__(self, run_dir: Path):
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self._event, self._summary = Event, Summary
        self._writer = EventFileWriter(str(run_dir))

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        summary = self._summary(value=[self._summary.Value(tag=tag, simple_value=float(value))])
        self._writer.add_event(self._event(summary=summary, step=int(step), wall_time=time.time()))

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def _tensorboard_writer(run_dir: Path) -> _TensorBoard | None:
    """A TensorBoard writer where ``tensorboard`` is installed, else None."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        return None
    try:
        return _TensorBoard(run_dir)
    except Exception:  # an incomplete installation: metrics.jsonl only
        return None


class _Metrics:
    """metrics.jsonl (+ TensorBoard when installed)."""

    def __init__(self, run_dir: Path, keep_up_to_iteration: int | None):
        path = run_dir / "metrics.jsonl"
        if keep_up_to_iteration is not None and path.exists():  # resume: drop lines past the checkpoint
            kept = []
            for line in path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except ValueError:  # the torn last line of a killed process
                    continue
                if row.get("iteration", 0) <= keep_up_to_iteration:
                    kept.append(line)
            _atomic_write_text(path, "".join(line + "\n" for line in kept))
        self.file = open(path, "a", buffering=1 << 16)
        self.tb = _tensorboard_writer(run_dir)

    def write(self, row: dict[str, Any]) -> None:
        self.file.write(json.dumps(row) + "\n")
        if self.tb is not None:
            step = row["step"]
            for k, v in row.items():
                if k not in ("step", "iteration") and isinstance(v, (int, float)) and v is not None \
                        and not (isinstance(v, float) and math.isnan(v)):
                    self.tb.add_scalar(k, v, step)

    def flush(self) -> None:
        """Everything written so far on disk (called before each checkpoint, so that a resume
        after SIGKILL finds every line up to the checkpoint's update)."""
        self.file.flush()
        os.fsync(self.file.fileno())
        if self.tb is not None:
            self.tb.flush()

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()


class _StopFlag:
    """SIGINT/SIGTERM set a flag the loop checks between updates; a second Ctrl-C raises."""

    def __init__(self):
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


def _caused_by_stop(stop: _StopFlag, err: Exception, grace_s: float = 1.0) -> bool:
    """Whether ``err`` is the trace of a stop signal: a worker or sampler that died, or a pipe
    that broke, when SIGINT/SIGTERM reached this process too. A signal sent to the process
    group kills the workers at the same instant; their death may be seen before this process's
    handler has run, so wait up to ``grace_s`` for the signal before calling it a failure."""
    from fastsample.engine.process_vector_env import WorkerError
    from fastsample.runners.async_runner import SamplerError

    if not isinstance(err, (WorkerError, SamplerError, OSError, EOFError)):
        return False
    deadline = time.monotonic() + grace_s
    while stop.signum is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return stop.signum is not None


def _join_ranks(cfg: TrainConfig, device: str):
    """``--distributed``: join torchrun's process group and check that every rank runs the same
    config (a hash of it, without the run directory that rank 0 alone uses)."""
    from fastsample.distributed import config_digest, from_environment

    ranks = from_environment(device)
    try:
        same = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("run_dir", "progress")}
        ranks.check_same("configs", config_digest(same))
    except BaseException:
        ranks.close()
        raise
    return ranks


def _agree(ranks, signum: int | None, done: bool) -> tuple[int, bool]:
    """One collective per update: the largest signal number any rank received (0: none) and
    rank 0's decision to finish (solved, time limit)."""
    flags = np.array([float(signum or 0), float(done) if ranks.is_main else 0.0])
    ranks.all_reduce_(flags, "max")
    return int(flags[0]), bool(flags[1])


def _nanmean(values: list[float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def train(cfg: TrainConfig, *, resume: str | Path | None = None, quiet: bool = False,
          overwrite: bool = False) -> dict[str, Any]:
    """Train PPO as configured; returns (and writes) the summary.

    ``resume``: a run directory; its config (with ``cfg``'s explicitly different values for
    ``total_steps``/``time_limit``/``progress``) and latest checkpoint are loaded and training
    continues from the checkpoint's update.

    ``cfg.run_dir``: an existing directory that already holds a run is refused
    (:class:`~fastsample.train_config.ConfigError`) unless ``overwrite``, which deletes that
    run's files first. Without ``cfg.run_dir`` a new directory ``runs/<env>__<seed>__<time>``
    is created (with a ``-N`` suffix when another run took the name in the same second).
    """
    t_launch = time.perf_counter()
    validate(cfg)
    if cfg.distributed:  # torchrun's environment and the batch's split, before anything starts
        from fastsample.distributed import check_launch

        check_launch(cfg)
    from fastsample.learning.learner import resolve_train_device
    from fastsample.runners.common import tune_malloc
    from fastsample.sampling.envs import check_spaces, resolve_env, spaces_of, target_return_for

    resolve_env(cfg.env)  # unknown ids fail here, before any process starts
    check_spaces(cfg)
    device = resolve_train_device(cfg, spaces_of(cfg.env)[0] if cfg.device == "auto" else None)
    tune_malloc()
    ranks = _join_ranks(cfg, device) if cfg.distributed else None
    main = ranks is None or ranks.is_main  # the process that writes the run directory
    try:
        run_dir = _prepare_run_dir(cfg, resume, overwrite) if main else (Path(resume) if resume else None)
    except BaseException:
        if ranks is not None:
            ranks.decide(0.0)  # the other ranks raise too, instead of waiting for this one
            ranks.close()
        raise
    if ranks is not None and not ranks.decide(1.0):
        ranks.close()
        from fastsample.distributed import DistributedError

        raise DistributedError("rank 0 could not prepare the run directory (its error says why)")
    ckpt = load_checkpoint(run_dir) if resume else None
    if main:
        _atomic_write_text(run_dir / "config.json", json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
    target = target_return_for(cfg)
    prog = {"evals": [], "solved_at_s": None, "solved_at_steps": None, "elapsed_s": 0.0, "startup_s": 0.0,
            "train_returns": []}
    runner = evaluator = metrics = bar = None
    interrupted = None
    stop_error = None
    exact_resume = None
    recent_returns: list[float] = []
    wall_s = sample_s = learn_s = 0.0
    n_evals = 0
    final = None
    stack = contextlib.ExitStack()
    try:
        run_cfg = cfg
        if ranks is not None:
            from fastsample.distributed import rank_config

            run_cfg = rank_config(cfg, ranks)
        if cfg.mode == "sync":
            from fastsample.runners.sync import SyncRunner

            runner = SyncRunner(run_cfg, device)
        else:
            from fastsample.runners.async_runner import AsyncRunner

            runner = AsyncRunner(run_cfg, device)
        if ranks is not None:
            from fastsample.distributed import attach

            attach(runner, ranks)
        from fastsample.runners.common import Evaluator

        if main:
            evaluator = Evaluator(cfg.env, cfg.eval_episodes, seed=cfg.seed * 1_000_003 + 500_000_000 % (2**31))
        if ckpt is not None:
            state = ckpt["runner"]
            if ranks is not None:
                from fastsample.distributed import rank_state

                saved = int(ckpt["progress"].get("world_size", 1))
                state = rank_state(state, ranks, saved)
                if saved != ranks.world_size and main and not quiet:
                    print(f"fastsample train: resuming a run of {saved} rank(s) on {ranks.world_size}: the weights, "
                          f"Adam and the normalisation statistics go on, the global batch (--num-envs "
                          f"{cfg.num_envs} x --num-steps {cfg.num_steps}) stays the same, and every rank's envs "
                          "start fresh episodes", file=sys.stderr)
            exact_resume = runner.load_state_dict(state)
            prog.update(ckpt["progress"])
            if main:
                evaluator.count = ckpt.get("eval_count", 0)
        if ranks is not None:
            prog["world_size"] = ranks.world_size
        if main:
            metrics = _Metrics(run_dir, keep_up_to_iteration=runner.iteration if ckpt is not None else None)
        recent_returns = list(prog["train_returns"])[-100:]
        base_elapsed = prog["elapsed_s"]
        t_first = None

        def elapsed() -> float:
            return base_elapsed + (0.0 if t_first is None else time.perf_counter() - t_first)

        def checkpoint() -> None:
            if not main:
                return
            metrics.flush()  # every metrics line up to this update is on disk before the checkpoint is
            state = {"runner": runner.state_dict(), "progress": dict(prog, elapsed_s=elapsed()),
                     "eval_count": evaluator.count, "config": dataclasses.asdict(cfg)}
            save_checkpoint(run_dir, state)

        if cfg.progress and not quiet and main:
            from tqdm import tqdm

            bar = tqdm(total=cfg.total_steps, initial=runner.global_step, unit="step", unit_scale=True,
                       dynamic_ncols=True, desc=cfg.env)
        # SIGINT/SIGTERM from here on stop the run cleanly (until the processes are closed).
        # Installed only now: worker processes forked while the runner was built must not
        # inherit this handler
        stop = stack.enter_context(_StopFlag())
        try:
            runner.start(should_stop=lambda: stop.signum is not None)
        except Exception as err:
            if not _caused_by_stop(stop, err):
                raise
            stop_error = err
        startup_s = time.perf_counter() - t_launch
        if ckpt is None:
            prog["startup_s"] = startup_s
        t_first = time.perf_counter()
        last_ckpt = last_bar = time.perf_counter()
        steps_at_bar, time_at_bar = runner.global_step, elapsed()
        agreed_stop = False  # distributed: the ranks stop together, on any rank's signal or rank 0's decision
        while runner.global_step < cfg.total_steps and not agreed_stop and (ranks is not None or stop.signum is None):
            try:
                out = runner.iteration_step()
            except Exception as err:
                # a SIGTERM/SIGINT to the whole process group stops the workers or samplers
                # too: the update in flight is lost, the run stops as if interrupted
                if not _caused_by_stop(stop, err):
                    raise
                stop_error = err
                break
            sample_s += out["sample_s"]
            learn_s += out["learn_s"]
            episode_returns = out["episode_returns"]
            if ranks is not None:  # the mean over every rank's episodes
                episode_returns = ranks.gather_values(episode_returns)
            recent_returns.extend(episode_returns.tolist())
            recent_returns = recent_returns[-100:]
            mean_ret = _nanmean(recent_returns)
            row = {"step": runner.global_step, "iteration": runner.iteration, "time_s": round(elapsed(), 4),
                   "episode_return": mean_ret, "episodes": int(len(episode_returns)),
                   "policy_lag": out["policy_lag"]}
            row.update({k: out[k] for k in ("policy_lag_min", "policy_lag_max", "slots_dropped") if k in out})
            row.update({k: out[k] for k in ("lr", "policy_loss", "value_loss", "entropy", "approx_kl",
                                            "clipfrac", "grad_norm")})
            gate = cfg.eval_min_train_return
            if main and cfg.eval_every and runner.iteration % cfg.eval_every == 0 and (
                    math.isnan(gate) or (not math.isnan(mean_ret) and mean_ret >= gate)):
                rets = evaluator.run(runner.greedy, runner.normalizer, target=target,
                                     max_step_reward=cfg.max_step_reward, should_stop=lambda: stop.signum is not None)
                if stop.signum is None:  # an evaluation cut short by a stop signal is not a result
                    n_evals += 1
                    row["eval_return"] = float(rets.mean())
                    prog["evals"].append([runner.global_step, round(elapsed(), 4), float(rets.mean())])
                    if prog["solved_at_s"] is None and rets.mean() >= target:
                        prog["solved_at_s"] = elapsed()
                        prog["solved_at_steps"] = runner.global_step
            if main:
                metrics.write(row)
            now = time.perf_counter()
            if bar is not None and now - last_bar >= cfg.log_interval:
                el = elapsed()
                sps = (runner.global_step - steps_at_bar) / max(el - time_at_bar, 1e-9)
                bar.update(runner.global_step - bar.n)
                bar.set_postfix_str(f"SPS {sps:,.0f} | return {mean_ret:.1f} | lag {out['policy_lag']:.2f}"
                                    + (f" | eval {prog['evals'][-1][2]:.1f}" if prog["evals"] else ""))
                last_bar, steps_at_bar, time_at_bar = now, runner.global_step, el
            done = bool((cfg.stop_when_solved and prog["solved_at_s"] is not None)
                        or (cfg.time_limit and elapsed() >= cfg.time_limit))
            if ranks is not None:  # any rank's signal, rank 0's decision to finish
                signum, done = _agree(ranks, stop.signum, done)
                if signum and stop.signum is None:
                    stop.signum = signum
                agreed_stop = done or signum != 0
            if stop.signum is not None or done:
                break
            if main and now - last_ckpt >= cfg.checkpoint_interval:
                prog["train_returns"] = recent_returns
                checkpoint()
                last_ckpt = time.perf_counter()
        interrupted = stop.signum
        wall_s = elapsed()
        prog["train_returns"] = recent_returns
        checkpoint()  # the state after the last completed update
        if bar is not None:
            bar.update(runner.global_step - bar.n)
            bar.close()
            bar = None
        if interrupted is None and main:
            final = evaluator.run(runner.greedy, runner.normalizer)
    finally:
        if bar is not None:
            bar.close()
        try:
            with contextlib.ExitStack() as closing:  # each one closed even if another's close raises
                for part in (evaluator, runner, metrics):
                    if part is not None:
                        closing.callback(part.close)
        finally:
            stack.close()  # the default SIGINT/SIGTERM handlers again, once the processes are closed
            if ranks is not None:
                ranks.close()

    steps_run = runner.global_step
    summary = {
        "env": cfg.env, "seed": cfg.seed, "mode": cfg.mode, "device": str(device),
        "backend": getattr(runner, "backend", "torch"),
        "steps": steps_run, "iterations": runner.iteration,
        "wall_s": round(wall_s, 4), "startup_s": round(prog["startup_s"], 4),
        "sps": round(steps_run / wall_s, 1) if wall_s > 0 else None,
        "sample_s": round(sample_s, 4), "learn_s": round(learn_s, 4), "evaluations": n_evals,
        "target_return": target if math.isfinite(target) else None,
        "solved": prog["solved_at_s"] is not None,
        "solved_at_s": None if prog["solved_at_s"] is None else round(prog["solved_at_s"], 4),
        "solved_at_steps": prog["solved_at_steps"],
        "eval_return": None if final is None else float(final.mean()),
        "eval_return_std": None if final is None else float(final.std()),
        "eval_episodes": cfg.eval_episodes,
        "train_return": _nanmean(recent_returns) if recent_returns else None,
        "policy_lag_mean": getattr(runner, "lag_mean", 0.0),
        "policy_lag_max": getattr(runner, "lag_max", 0),
        "policy_lag_hist": {str(k): v for k, v in sorted(getattr(runner, "lag_hist", {}).items())},
        "slots_dropped": getattr(runner, "slots_dropped", 0),
        "resumed": ckpt is not None, "exact_env_resume": exact_resume,
        "interrupted": interrupted is not None,
        "signal": None if interrupted is None else signal.Signals(interrupted).name,
        "stop_error": None if stop_error is None else f"{type(stop_error).__name__}: {stop_error}".splitlines()[0],
        "run_dir": str(run_dir),
        "world_size": 1 if ranks is None else ranks.world_size,
        "rank": 0 if ranks is None else ranks.rank,
    }
    if main:
        _atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    if interrupted is not None:
        where = f"checkpoint saved in {run_dir / CHECKPOINT}" if main else "rank 0 saved the checkpoint"
        raise Interrupted(interrupted, f"stopped by {signal.Signals(interrupted).name}; {where}")
    return summary


def evaluate_run(run_dir: str | Path, episodes: int = 20, render: str | None = None, seed: int = 12345,
                 device: str = "cpu") -> dict[str, Any]:
    """Greedy evaluation of a run's latest checkpoint with the learner ``--backend`` resolves to
    (the compiled one for an MLP on the CPU: no torch); ``render``: write env 0's first episode
    to this .gif file."""
    from fastsample.learning.learner import make_learner, resolve_device
    from fastsample.learning.normalize import Normalizer
    from fastsample.runners.common import Evaluator

    run_dir = Path(run_dir)
    cfg = config_from_dict(read_run_config(run_dir))
    ckpt = load_checkpoint(run_dir)
    dev = resolve_device(device)
    evaluator = Evaluator(cfg.env, episodes, seed=seed, render=bool(render))
    learner = make_learner(cfg, evaluator.env.single_observation_space, evaluator.action_space, dev)
    learner.load_weights(ckpt["runner"]["model"])
    norm = Normalizer(evaluator.env.single_observation_space.shape, 1, cfg)
    norm.load_state_dict(ckpt["runner"]["normalizer"])
    frames: list | None = [] if render else None
    returns = evaluator.run(learner.greedy, norm, frames=frames)
    evaluator.close()
    if render:
        _write_gif(render, frames, fps=30)
    return {"env": cfg.env, "episodes": episodes, "mean_return": float(returns.mean()),
            "std_return": float(returns.std()), "min_return": float(returns.min()),
            "max_return": float(returns.max()), "steps": int(ckpt["runner"]["global_step"]),
            "render": render}


def _write_gif(path: str, frames: list, fps: int) -> None:
    try:
        from PIL import Image
    except ImportError:
        raise RuntimeError("--render needs Pillow (pip install pillow)") from None
    images = [Image.fromarray(np.asarray(f)) for f in frames]
    if not images:
        raise RuntimeError("no frames were rendered")
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)


_ = config_from_dict
