"""Failures as the caller sees them: an env's exception in a worker (or in the slice this process
steps itself) comes back as its own class (builtin, gymnasium and fastsample errors) that is also
a :class:`WorkerError` naming the worker and its envs; every error of a call is logged as
``AsyncVectorEnv`` logs it; a dead worker is a :class:`WorkerDiedError` naming its signal."""

from __future__ import annotations

import importlib
import signal
from typing import Any

import gymnasium as gym

from fastsample.engine import worker as W

__all__ = ["WorkerError", "WorkerDiedError"]


class WorkerError(RuntimeError):
    """An env raised inside a worker (the message names the worker, its envs and the error)."""


class WorkerDiedError(WorkerError):
    """A worker process exited or was killed."""


def signal_name(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


_WORKER_ERROR_CLASSES: dict[type, type] = {}


def rebuild_exception(w: int, lo: int, hi: int, payload) -> BaseException:
    """The worker's exception as one that is both its original class (for builtin,
    gymnasium and fastsample errors) and a :class:`WorkerError`, naming worker and envs."""
    module, qualname, message, tb = payload[:4]
    text = f"worker {w} (envs {lo}..{hi - 1}) raised {qualname}: {message}\n--- worker traceback ---\n{tb}"
    try:
        cls = getattr(importlib.import_module(module), qualname)
        if isinstance(cls, type) and issubclass(cls, Exception) and (
            module in ("builtins", "gymnasium.error") or module.startswith("fastsample")
        ):
            if cls not in _WORKER_ERROR_CLASSES:
                _WORKER_ERROR_CLASSES[cls] = type(cls.__name__, (cls, WorkerError), {"__module__": __name__})
            return _WORKER_ERROR_CLASSES[cls](text)
    except (ImportError, AttributeError, TypeError):
        pass
    return WorkerError(text)


def log_and_raise_last(results: dict[int, tuple[int, Any]], bounds: list[tuple[int, int]]) -> None:
    """Raise the error of the last env (in env order) that raised among ``results`` (``{worker:
    (reply code, payload)}``), after logging every error as ``AsyncVectorEnv`` does
    (``gymnasium.logger.error``: for each, "Received the following error from Worker-<env index>
    - Shutting it down" and the worker's traceback, then "Raising the last exception back to the
    main process."). No error: nothing happens."""
    errors = sorted((w, p) for w, (c, p) in results.items() if c == W.REPLY_ERROR)
    if not errors:
        return
    for w, payload in errors:
        env = bounds[w][0] + (payload[4] if len(payload) > 4 and payload[4] is not None else 0)
        gym.logger.error(f"Received the following error from Worker-{env} - Shutting it down")
        gym.logger.error(f"{payload[3]}")
    gym.logger.error("Raising the last exception back to the main process.")
    w, payload = errors[-1]
    lo, hi = bounds[w]
    raise rebuild_exception(w, lo, hi, payload)
