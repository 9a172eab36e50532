"""Timing helpers and machine facts shared by every benchmark."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Measurement:
    """Rates (items/s) of several repeats of the same measurement."""

    name: str
    rates: list[float] = field(default_factory=list)
    unit: str = "steps/s"
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.rates) if self.rates else float("nan")

    @property
    def low(self) -> float:
        return min(self.rates) if self.rates else float("nan")

    @property
    def high(self) -> float:
        return max(self.rates) if self.rates else float("nan")


def measure_rate(
    name: str,
    run: Callable[[int], None],
    items_per_call: int,
    *,
    repeats: int = 5,
    min_time: float = 0.2,
    warmup_calls: int = 3,
    note: str = "",
) -> Measurement:
    """Call ``run(k)`` (which must do ``k`` calls' worth of work) until each repeat lasts at
    least ``min_time`` seconds; warm-up calls (JIT compile, caches) are excluded."""
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
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(k)
        dt = time.perf_counter() - t0
        m.rates.append(k * items_per_call / dt)
    return m


def fmt_rate(x: float) -> str:
    if x != x:  # nan
        return "n/a"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.2f} {unit}"
    return f"{x:.1f}"


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
        "python": platform.python_version(),
    }
    for mod in ("numpy", "numba", "gymnasium", "torch"):
        try:
            facts[mod] = __import__(mod).__version__
        except ImportError:
            facts[mod] = "not installed"
    try:
        facts["commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        facts["commit"] = "unknown"
    return facts
