"""Timing helpers, run settings, progress display and machine facts shared by every benchmark."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class Measurement:
    """Rates (items/s) of several repeats of the same measurement.

    ``status`` is empty for a measured row; otherwise it says why there is no number
    ("not installed: ...", "pending (trainer not merged)", "failed: ...", "skipped: ...").
    ``breakdown`` holds seconds spent per activity (env / inference / learning / waiting)
    during the timed repeats, whose total wall time is ``timed_s``.
    """

    name: str
    rates: list[float] = field(default_factory=list)
    unit: str = "steps/s"
    note: str = ""
    status: str = ""
    breakdown: dict[str, float] = field(default_factory=dict)
    timed_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.status and bool(self.rates)

    @property
    def median(self) -> float:
        return statistics.median(self.rates) if self.rates else float("nan")

    @property
    def low(self) -> float:
        return min(self.rates) if self.rates else float("nan")

    @property
    def high(self) -> float:
        return max(self.rates) if self.rates else float("nan")

    def shares(self) -> dict[str, float]:
        """Breakdown as fractions of the timed wall time (``other`` = the rest)."""
        if not self.breakdown or self.timed_s <= 0:
            return {}
        out = {k: v / self.timed_s for k, v in self.breakdown.items()}
        rest = 1.0 - sum(out.values())
        if rest > 0.005:
            out["other"] = rest
        return out


def missing(name: str, status: str, note: str = "") -> Measurement:
    """A row without a number, which the report prints with its reason."""
    return Measurement(name, status=status, note=note)


Timers = defaultdict  # name -> seconds, filled by the measured code


def new_timers() -> defaultdict:
    return defaultdict(float)


def measure_rate(
    name: str,
    run: Callable[[int], None],
    items_per_call: int,
    *,
    repeats: int = 5,
    min_time: float = 0.2,
    warmup_calls: int = 3,
    note: str = "",
    timers: defaultdict | None = None,
) -> Measurement:
    """Call ``run(k)`` (which must do ``k`` calls' worth of work) until each repeat lasts at
    least ``min_time`` seconds; warm-up calls (JIT compile, caches, thread pools) and the
    calibration are excluded. ``timers`` (filled by ``run``) is cleared before the timed
    repeats and becomes the measurement's breakdown."""
    run(warmup_calls)
    k = 1
    while True:  # calibrate the number of calls per repeat
        t0 = time.perf_counter()
        run(k)
        dt = time.perf_counter() - t0
        if dt >= min_time / 4 or k >= 1 << 24:
            break
        k *= 4
    k = max(1, int(k * (min_time / max(dt, 1e-9))))
    m = Measurement(name, note=note)
    if timers is not None:
        timers.clear()
    total = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(k)
        dt = time.perf_counter() - t0
        total += dt
        m.rates.append(k * items_per_call / dt)
    if timers is not None:
        m.breakdown = dict(timers)
        m.timed_s = total
    return m


def fmt_rate(x: float) -> str:
    if x != x:  # nan
        return "n/a"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.2f} {unit}"
    return f"{x:.1f}"


def fmt_ratio(x: float) -> str:
    if x != x:
        return "n/a"
    if x >= 100:
        return f"{x:,.0f}x"
    if x >= 10:
        return f"{x:.1f}x"
    return f"{x:.2f}x"


def parse_int_list(text: str, what: str) -> list[int]:
    """``"1,4,16"`` -> ``[1, 4, 16]``; raise ``ValueError`` naming ``what`` otherwise."""
    try:
        values = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"{what} must be comma-separated positive integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise ValueError(f"{what} must be comma-separated positive integers, got {text!r}")
    return values


@dataclass
class Settings:
    """Everything a benchmark needs to know about this run. Every row of one run uses the
    same settings; the report prints them."""

    quick: bool = False
    repeats: int = 7
    min_time: float = 0.3
    num_envs: int = 8192  # the ladder's N (R1..R8)
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    workers: int = 2  # worker processes of R4..R8 (min(2, cores) by default)
    torch_threads: int = 1
    small_n: int = 16  # Python-env peers that run one process per env
    table_n: int = 4096  # the all-envs table
    minatar_sizes: list[int] = field(default_factory=lambda: [64, 1024, 4096])  # MinAtar vs the package, by num_envs
    minatar_seconds: float = 4.0  # per point of that table, both sides together
    table_envs: list[str] = field(default_factory=list)
    sweep_num_envs: list[int] = field(default_factory=list)
    sweep_workers: list[int] = field(default_factory=list)
    sweep_workers_n: int = 8192
    sync_sweep_max: int = 1024  # SyncVectorEnv in the num_envs sweep only up to this N
    train_iters: int = 6  # R8: PPO iterations timed (after the warm-up ones)
    train_num_steps: int = 16  # R8: rollout length
    solve_seeds: int = 3
    solve_cap_s: float | None = None  # time cap of the rl-zoo time-to-solve runs
    minatar_run: str | None = None  # a finished run of bench.minatar_train to read instead of training
    sb3_sps_iters: int = 24


class Progress:
    """A progress bar over the run's tasks (tqdm), with result lines printed above it."""

    def __init__(self, total: int, enabled: bool = True):
        self._bar = None
        self.done = 0
        self.total = total
        if enabled:
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=total, unit="task", dynamic_ncols=True, leave=True,
                                 bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} tasks [{elapsed}<{remaining}]")
            except ImportError:
                self._bar = None
        self.t0 = time.perf_counter()

    def start(self, label: str) -> None:
        if self._bar is not None:
            self._bar.set_description_str(label[:60])
        else:
            elapsed = time.perf_counter() - self.t0
            print(f"[{self.done + 1}/{self.total} {elapsed:5.0f}s] {label}", flush=True)

    def advance(self) -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.update(1)

    def say(self, msg: str) -> None:
        if self._bar is not None:
            self._bar.write(msg)
        else:
            print(msg, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


_BYTECODE_WARM = False


def warm_bytecode() -> None:
    """Write Python's bytecode cache of fastsample's own packages, as ``pip install`` does: a
    timed fresh process then starts as a user's does even where ``PYTHONDONTWRITEBYTECODE`` is set
    (it is on this project's development machines: without this, every timed command compiled
    fastsample's ~50 modules from source, about 0.1 s). Once per process."""
    global _BYTECODE_WARM
    if not _BYTECODE_WARM:
        import compileall
        from pathlib import Path

        root = Path(__file__).resolve().parents[1]
        for package in ("fastsample", "envs_numba"):
            compileall.compile_dir(str(root / package), quiet=1)
        _BYTECODE_WARM = True


def machine_facts() -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "unknown"
    try:
        import psutil

        mem = f"{psutil.virtual_memory().total / 2**30:.1f} GiB"
    except ImportError:
        pass
    gpu = "none"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    facts = {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": mem,
        "gpu": gpu,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
    for mod, dist in (("numpy", "numpy"), ("numba", "numba"), ("gymnasium", "gymnasium"), ("torch", "torch"),
                      ("envpool", "envpool"), ("stable_baselines3", "stable-baselines3"),
                      ("matplotlib", "matplotlib"), ("fastsample", "fastsample")):
        facts[mod] = _version(dist)
    try:
        facts["commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        ).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))).stdout
        if dirty.strip():
            facts["commit"] += " (with uncommitted changes)"
    except (OSError, subprocess.CalledProcessError):
        facts["commit"] = "unknown"
    return facts


def _version(dist: str) -> str:
    """Installed version without importing the package (envpool and SB3 import slowly)."""
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


class Ctx:
    """What a benchmark function gets: the settings, the progress display, and a cache so a
    measurement needed by two sections (e.g. R3 and the num_envs sweep at the same N) is taken
    once per run."""

    def __init__(self, settings: Settings, progress: Progress | None = None):
        self.settings = settings
        self.progress = progress
        self.cache: dict[Any, Measurement] = {}

    def say(self, msg: str) -> None:
        if self.progress is not None:
            self.progress.say(msg)
        else:
            print(msg, flush=True)

    def cached(self, key: Any, name: str, make: Callable[[], Measurement]) -> Measurement:
        import dataclasses

        if key not in self.cache:
            self.cache[key] = make()
        return dataclasses.replace(self.cache[key], name=name)

    def fastsample_rate(self, name: str, num_envs: int, workers: int, *, env_id: str = "CartPole-v1",
                        copy: bool = True) -> Measurement:
        """steps/s of ``fastsample.make_vec(env_id, num_envs, num_workers=workers, copy=copy)``."""
        s = self.settings

        def make() -> Measurement:
            import fastsample

            from bench.envs import vector_rate

            env = fastsample.make_vec(env_id, num_envs, seed=0, num_workers=workers, copy=copy)
            if workers == 0:
                where = "in-process"
            elif workers == 1:
                where = "1 worker process"
            else:  # make_vec's synchronous engine: the caller steps the first slice itself
                where = f"{workers} slices: the caller steps one, {workers - 1} worker process{'es' if workers > 2 else ''}"
            return vector_rate(name, env, num_envs, repeats=s.repeats, min_time=s.min_time,
                               note=f"{where}, copy={copy}")

        return self.cached(("fastsample", env_id, num_envs, workers, copy), name, make)
