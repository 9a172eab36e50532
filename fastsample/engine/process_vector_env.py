"""``ProcessVectorEnv``: envs spread over worker processes, results in shared memory.

The same engine runs two kinds of envs:

* any Python gymnasium env (``ProcessVectorEnv(env_fns, ...)``, a drop-in for
  ``gymnasium.vector.AsyncVectorEnv``): each worker runs a ``PythonEnvSlice`` (a leaner ``SyncVectorEnv``) over its slice;
* fastsample's Numba kernels (``fastsample.make_vec(..., num_workers=K)``): each worker runs a
  ``NumbaVectorEnv`` over its slice, writing straight into shared memory (zero copies).

Either way worker ``w`` owns envs ``lo_w..hi_w-1``, results are bit-identical to running all
envs in one process with the same seeds and actions, and a step costs one eventfd signal each
way per worker (see ``worker.py``).

EnvPool-style asynchronous stepping (``batch_size < num_envs``): ``async_reset()``, then loop
``obs, rew, term, trunc, info = env.recv()`` and ``env.send(actions, info["env_id"])``.
``recv`` returns the first ``batch_size`` envs whose workers are done, so the policy works on
one batch while the workers step the others (double buffering with two batches).
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import select
import signal
import sys
import threading
import time
import weakref
from enum import Enum
from multiprocessing.reduction import ForkingPickler
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.error import AlreadyPendingCallError, ClosedEnvironmentError, NoAsyncCallError
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.error import CustomSpaceError
from gymnasium.vector.utils import CloudpickleWrapper, batch_differing_spaces, batch_space, concatenate, \
    create_empty_array, iterate

from fastsample.actions import ActionBuffer
from fastsample.engine import worker as W
from fastsample.engine.interrupts import CallInterrupted, hold_interrupts
from fastsample.engine.python_actions import ActionItems, PythonActions
from fastsample.engine.python_slice import PythonEnvSlice
from fastsample.output_slots import OutputSlots
from fastsample.engine.shared import SharedBatch, SharedBlock, array_action_dtype, concat_batches, copy_batch

__all__ = ["CallInterrupted", "ProcessVectorEnv", "WorkerError", "WorkerDiedError"]


class WorkerError(RuntimeError):
    """An env raised inside a worker (the message names the worker, its envs and the error)."""


class WorkerDiedError(WorkerError):
    """A worker process exited or was killed."""


class _State(Enum):
    IDLE = "idle"
    WAITING_RESET = "reset"
    WAITING_STEP = "step"
    WAITING_CALL = "call"


class _Fd:
    """An fd that travels to a spawned/forkserver worker as a duplicated descriptor."""

    def __init__(self, fd: int):
        self.fd = fd

    def __reduce__(self):
        from multiprocessing import reduction

        return (_rebuild_fd, (reduction.DupFd(self.fd),))

    def __int__(self) -> int:
        return self.fd


def _rebuild_fd(dup) -> int:
    return dup.detach()


def _signal_name(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _allowed_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity mask, as ``taskset``, cgroups cpusets
    and Slurm restrict it), in order; all of ``os.cpu_count()`` where that is unknown."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def _usable_cpus() -> int:
    return len(_allowed_cpus())


def _split(num_envs: int, num_workers: int) -> list[tuple[int, int]]:
    base, extra = divmod(num_envs, num_workers)
    bounds, lo = [], 0
    for w in range(num_workers):
        hi = lo + base + (1 if w < extra else 0)
        bounds.append((lo, hi))
        lo = hi
    return bounds


def _place_info(dst: dict, src: dict, lo: int, hi: int, n: int) -> None:
    """Merge a worker's slice infos (arrays of length hi-lo) into full-size arrays."""
    for key, value in src.items():
        if isinstance(value, dict):
            _place_info(dst.setdefault(key, {}), value, lo, hi, n)
        elif isinstance(value, np.ndarray) and value.shape[:1] == (hi - lo,):
            if key not in dst:
                if value.dtype == object:
                    dst[key] = np.full(n, None, dtype=object)
                else:
                    dst[key] = np.zeros((n, *value.shape[1:]), dtype=value.dtype)
            dst[key][lo:hi] = value
        else:
            dst[key] = value


_LEAVES = (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)


def _array_layout(space: gym.Space) -> bool:
    """Whether batches of ``space`` are arrays (or dicts/tuples of them) of a fixed shape."""
    if isinstance(space, gym.spaces.Dict):
        return all(_array_layout(s) for s in space.spaces.values())
    if isinstance(space, gym.spaces.Tuple):
        return all(_array_layout(s) for s in space.spaces)
    return type(space) in _LEAVES or isinstance(space, _LEAVES)


def _check_shared_memory(space: gym.Space) -> bool:
    """``shared_memory=True`` for observations of ``space``: True if they live in shared memory,
    False if they travel pickled (``Text``, ``OneOf``: gymnasium keeps them in shared memory,
    the results are the same); gymnasium's errors for the spaces it cannot keep there."""
    if _array_layout(space):
        return True
    _check_shareable(space)
    return False


def _check_shareable(space: gym.Space) -> None:
    if isinstance(space, gym.spaces.Dict):
        for s in space.spaces.values():
            _check_shareable(s)
    elif isinstance(space, (gym.spaces.Tuple, gym.spaces.OneOf)):
        for s in space.spaces:
            _check_shareable(s)
    elif isinstance(space, (gym.spaces.Graph, gym.spaces.Sequence)):
        raise TypeError(
            f"As {space} has a dynamic shape so its not possible to make a static shared memory. For "
            f"`ProcessVectorEnv` (as for `AsyncVectorEnv`), disable `shared_memory`.")
    elif not isinstance(space, (*_LEAVES, gym.spaces.Text)):
        try:
            raise CustomSpaceError(f"Space of type `{type(space)}` cannot live in shared memory.")
        except CustomSpaceError as exc:
            raise ValueError(
                "Using `ProcessVectorEnv(..., shared_memory=True)` caused an error, you can disable this feature "
                "with `shared_memory=False` however this is slower.") from exc


def _batch_len(single: gym.Space, batch: Any) -> int:
    """How many envs a batch of ``single`` holds (gymnasium's batch structures)."""
    if isinstance(single, gym.spaces.Dict):
        return _batch_len(next(iter(single.spaces.values())), batch[next(iter(single.spaces))])
    if isinstance(single, gym.spaces.Tuple):
        return _batch_len(single.spaces[0], batch[0])
    return len(batch)


def _observation_mode(mode: Any, dummy: gym.Env, env_fns: list) -> tuple[str, tuple[gym.Space, gym.Space] | None]:
    """AsyncVectorEnv's ``observation_mode``: ``"same"``, ``"different"`` or a ``(batch space,
    single space)`` tuple. Returns the mode the slices check (``"same"``/``"different"``/
    ``"custom"``) and the ``(observation_space, single_observation_space)`` pair where it is
    not ``batch_space``'s."""
    if isinstance(mode, tuple) and len(mode) == 2:
        if not isinstance(mode[0], gym.Space) or not isinstance(mode[1], gym.Space):
            raise TypeError(
                f"Expected both elements of observation_mode to be Spaces, got {type(mode[0])} and {type(mode[1])}")
        return "custom", (mode[0], mode[1])
    if isinstance(mode, str) and mode == "same":
        return "same", None
    if isinstance(mode, str) and mode == "different":
        # as AsyncVectorEnv: every env is created once here to read its space
        spaces = [dummy.observation_space]
        for fn in env_fns[1:]:
            env = fn()
            spaces.append(env.observation_space)
            env.close()
        return "different", (batch_differing_spaces(spaces), spaces[0])
    raise ValueError(
        f"Invalid `observation_mode`, expected: 'same' or 'different' or tuple of single and batch observation "
        f"space, actual got {mode}")


_WORKER_ERROR_CLASSES: dict[type, type] = {}


def _rebuild_exception(w: int, lo: int, hi: int, payload) -> BaseException:
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


class ProcessVectorEnv(VectorEnv):
    """Gymnasium envs run in ``num_workers`` processes over shared memory.

    A drop-in for ``gymnasium.vector.AsyncVectorEnv`` (same constructor shape, async
    methods, ``call``/``get_attr``/``set_attr`` and error classes), several envs per worker.

    The positional arguments are AsyncVectorEnv's, in its order (``ProcessVectorEnv(fns, True)``
    means ``shared_memory=True`` there as here); ``num_workers`` and the other extras are
    keyword-only.

    Python envs get their actions as AsyncVectorEnv hands them over: env ``i`` the ``i``-th
    element of ``gymnasium.vector.utils.iterate(action_space, actions)``, unchecked and uncast
    (the env decides). A batch in the action space's dtype and shape (``action_space.sample()``)
    goes through shared memory; any other travels pickled, one message per worker batch (see
    ``python_actions.py``). Numba kernels check each batch of actions once, in this process.

    Args:
        env_fns: functions that create the envs.
        shared_memory: observations through shared memory (default); ``False`` pickles them,
            per worker batch. ``Text`` and ``OneOf`` always travel pickled; ``Graph`` and
            ``Sequence`` need ``False`` (gymnasium's ``TypeError`` otherwise), custom spaces too
            (its ``ValueError``).
        copy: return fresh arrays (default) or views of the shared buffers.
        context: multiprocessing start method (default ``"fork"`` on Linux, else the platform's).
        daemon: worker processes are daemonic (they die with the parent).
        worker: AsyncVectorEnv's custom worker function; it cannot apply here (a ``ValueError``
            says why and what to use instead).
        observation_mode: as AsyncVectorEnv's: ``"same"`` (every env's observation space equals
            env 0's), ``"different"`` (same shape and dtype, ``batch_differing_spaces``; every env
            is created once to read its space) or an ``(observation_space,
            single_observation_space)`` pair.
        autoreset_mode: ``AutoresetMode`` or its string value.
        max_concurrency: as AsyncVectorEnv's, at most this many envs step at once: it caps the
            default ``num_workers`` (each worker steps its envs one after another).
        num_workers: worker processes (default: ``min(len(env_fns), CPUs this process may use)``).
        batch_size: envs per ``recv()`` for the asynchronous ``send``/``recv`` API; a multiple
            of the envs per worker. Default ``num_envs``.
        pin_workers: pin worker ``w`` to the ``w``-th CPU this process may run on (its affinity
            set, cycling when there are more workers than CPUs) with psutil.
        inline: this process steps the first slice of envs itself (no worker process for it)
            while the workers step the others: K slices on K cores instead of K workers plus a
            waiting parent. Faster on small machines; an env that crashes the interpreter in
            that slice takes this process down with it. ``make_vec(num_workers >= 2)`` uses it.
        spin_us: how long a waiting side (the parent for replies, an idle worker for its next
            command) busy-polls shared memory before it blocks in the kernel. Waking a sleeping
            process costs tens of microseconds (more in a VM), a step of a few thousand envs
            about a hundred, so a short spin keeps back-to-back steps from paying it. Spinning
            is off when there are more busy processes than CPUs; 0 never spins.
    """

    def __init__(
        self,
        env_fns: Sequence[Callable[[], gym.Env]],
        shared_memory: bool = True,
        copy: bool = True,
        context: str | None = None,
        daemon: bool = True,
        worker: Callable[..., None] | None = None,
        observation_mode: str | tuple[gym.Space, gym.Space] = "same",
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        max_concurrency: int | None = None,
        *,
        num_workers: int | None = None,
        batch_size: int | None = None,
        pin_workers: bool = False,
        spin_us: float = 200.0,
        inline: bool | None = None,
        _sub_factory: Callable[[int, int], Callable[[], VectorEnv]] | None = None,
        _dummy: VectorEnv | None = None,
    ):
        from fastsample.vector_env import parse_autoreset_mode

        self._closed_workers = True  # until workers exist, close() has nothing to do
        self.autoreset_mode = parse_autoreset_mode(autoreset_mode)
        if worker is not None:
            raise ValueError(
                "ProcessVectorEnv cannot use AsyncVectorEnv's custom `worker`: its workers each step a slice of "
                "several envs over a shared-memory protocol of their own, while a `worker` function serves one env "
                "over AsyncVectorEnv's pipe protocol (its commands and shared-memory layout), which no ProcessVectorEnv "
                "worker speaks. To change how an env is stepped or reset, wrap the env in a gymnasium.Wrapper inside "
                "env_fns (autoreset rules: autoreset_mode); to run a custom worker function, use "
                "gymnasium.vector.AsyncVectorEnv."
            )
        if max_concurrency is not None:
            if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, (int, np.integer)):
                raise ValueError(f"`max_concurrency` must be an integer or None, got {type(max_concurrency)}.")
            if max_concurrency < 1:
                raise ValueError(f"`max_concurrency` must be a positive or None, got {max_concurrency}.")
        self.context = context
        self.daemon = daemon
        self.worker = worker
        self.max_concurrency = max_concurrency
        self.observation_mode = observation_mode
        self._python_envs = _sub_factory is None
        if _sub_factory is None:
            env_fns = list(env_fns)
            if not env_fns:
                raise ValueError("env_fns must contain at least one env constructor")
            if not all(callable(f) for f in env_fns):
                raise TypeError("env_fns must be callables that create envs")
            num_envs = len(env_fns)
            dummy = env_fns[0]()
            self.single_action_space = dummy.action_space
            self.metadata = dict(dummy.metadata)
            self.render_mode = dummy.render_mode
            self.spec = None
            obs_mode, batched_obs = _observation_mode(observation_mode, dummy, env_fns)
            self.single_observation_space = dummy.observation_space if obs_mode != "custom" else batched_obs[1]
            dummy.close()
            mode = self.autoreset_mode
            single_obs, single_act = self.single_observation_space, self.single_action_space

            def sub_factory(lo: int, hi: int):
                fns = env_fns[lo:hi]
                return lambda: PythonEnvSlice(fns, autoreset_mode=mode, single_observation_space=single_obs,
                                              single_action_space=single_act, observation_mode=obs_mode)
        else:
            if observation_mode != "same":
                raise ValueError("observation_mode applies to Python envs (env_fns); kernels have one observation space")
            batched_obs = None
            num_envs = _dummy.num_envs
            self.single_observation_space = _dummy.single_observation_space
            self.single_action_space = _dummy.single_action_space
            self.metadata = dict(_dummy.metadata)
            self.render_mode = _dummy.render_mode
            sub_factory = _sub_factory
        self.metadata["autoreset_mode"] = self.autoreset_mode
        self.num_envs = num_envs
        self.observation_space = (batched_obs[0] if batched_obs is not None
                                  else batch_space(self.single_observation_space, num_envs))
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.copy = bool(copy)
        self.shared_memory = bool(shared_memory)
        # whether observations travel in shared memory (Text and OneOf, which gymnasium keeps in
        # shared memory, travel pickled, per worker batch); raises gymnasium's errors for spaces
        # shared memory cannot hold
        self._obs_shared = self.shared_memory and _check_shared_memory(self.single_observation_space)
        self._array_obs = _array_layout(self.single_observation_space)
        self._array_actions = _array_layout(self.single_action_space)
        if max_concurrency is not None and num_workers is None:
            num_workers = min(num_envs, _usable_cpus(), int(max_concurrency))
        if max_concurrency is not None and isinstance(num_workers, int) and num_workers > max_concurrency:
            raise ValueError(f"num_workers={num_workers} runs up to {num_workers} envs at once, more than "
                             f"max_concurrency={max_concurrency}: pass num_workers <= max_concurrency")

        if num_workers is None:
            num_workers = min(num_envs, _usable_cpus())
        if isinstance(num_workers, bool):
            raise TypeError(f"num_workers={num_workers!r} must be an int, not a bool")
        if not isinstance(num_workers, int) or num_workers < 1:
            raise ValueError(f"num_workers must be a positive int, got {num_workers!r}")
        if num_workers > num_envs:
            raise ValueError(f"num_workers={num_workers} is more than num_envs={num_envs}")
        self.num_workers = num_workers
        self._bounds = _split(num_envs, num_workers)
        if batch_size is None:
            batch_size = num_envs
        per_worker = num_envs // num_workers
        if not isinstance(batch_size, int) or not 1 <= batch_size <= num_envs:
            raise ValueError(f"batch_size must be an int in 1..num_envs={num_envs}, got {batch_size!r}")
        if batch_size < num_envs and (num_envs % num_workers or batch_size % per_worker):
            raise ValueError(
                f"batch_size={batch_size} < num_envs needs whole workers per batch: num_envs={num_envs} "
                f"must divide evenly over num_workers={num_workers} and batch_size must be a multiple of "
                f"{per_worker} (envs per worker)"
            )
        self.batch_size = batch_size
        if inline is None:
            # Python envs: the caller steps slice 0 itself when a waiting caller would be one
            # busy process more than there are cores (see the docstring for the trade-off)
            inline = (self._python_envs and num_workers >= 2 and batch_size == num_envs
                      and num_workers >= _usable_cpus())
        self.inline = bool(inline)

        if context is None:
            context = "fork" if sys.platform.startswith("linux") else None
        ctx = mp.get_context(context)
        self._ctx = ctx
        # copy=True: step results go to shared OutputSlots, handed out without a copy and reused
        # once the caller holds none of them (see fastsample.output_slots); the last slot is
        # the scratch slot, whose results are always copied (also every path but the fast step)
        leaf_obs = not isinstance(self.single_observation_space, (gym.spaces.Dict, gym.spaces.Tuple))
        num_slots = 3 if (self.copy and self._obs_shared and leaf_obs) else 1
        self._shared = SharedBatch(ctx, self.single_observation_space, self.single_action_space, num_envs,
                                   obs_in_shared_memory=self._obs_shared, num_slots=num_slots)
        self._slot_views = [self._shared.slot(k) for k in range(num_slots)]
        self._views = self._slot_views[0]
        self._out_slots: OutputSlots | None = None
        self._arrays_for_actions = array_action_dtype(self.single_action_space) is not None
        if self._python_envs:
            # each env gets the element of the caller's batch AsyncVectorEnv would give it, unchecked
            self._checker = None
            self._py_actions = PythonActions(self.single_action_space, num_envs, self._views.actions)
        else:  # kernels read actions from shared memory: checked and cast here, once per batch
            self._py_actions = None
            self._checker = ActionBuffer(
                self.single_action_space, num_envs,
                self._views.actions if isinstance(self.single_action_space, (gym.spaces.Discrete, gym.spaces.Box)) else None)
        # Slice 0 may be served by this process itself (``inline``, fastsample kernels with
        # synchronous steps): it steps while the workers step theirs, so K slices use K cores
        # with K-1 worker processes and no core is spent waiting. Remote slices come first in
        # ``_order`` so they are signalled before the inline slice runs.
        self._local: W.SliceServer | None = None
        self._order = list(range(1, num_workers)) + [0] if inline else list(range(num_workers))
        self._remote = [w for w in self._order if not (inline and w == 0)]  # slices in worker processes
        if not (isinstance(spin_us, (int, float)) and 0 <= spin_us < 1e7):
            raise ValueError(f"spin_us must be a number of microseconds >= 0, got {spin_us!r}")
        # Spinning only pays while every busy process has a core of its own; with more
        # processes than cores a spinning waiter steals the core a worker needs.
        processes = num_workers - (1 if inline else 0) + 1
        self._spin_s = float(spin_us) * 1e-6 if processes <= _usable_cpus() else 0.0
        # sequence numbers: ctrl[w] counts commands sent to worker w, ctrl[K + w] its replies.
        # Only hints for the spinning side; the eventfds remain the synchronisation.
        # ... and ctrl[2K] the result slot the next command writes into
        self._ctrl_mem = SharedBlock(8 * (2 * num_workers + 1), "the workers' counters")
        self._ctrl = np.frombuffer(self._ctrl_mem.buf, dtype=np.int64, count=2 * num_workers + 1)
        self._done_seen = np.zeros(num_workers, dtype=np.int64)
        self._processes: list[Any] = []
        self._proc_of: dict[int, Any] = {}
        self._cmd_fds: list[int] = []
        self._done_fds: list[int] = []
        self._conns: dict[int, Any] = {}
        self._cmd_fd_of: dict[int, int] = {}
        self._done_fd_of: dict[int, int] = {}
        self._poll = select.poll()
        self._fd_owner: dict[int, tuple[str, int]] = {}
        self._in_flight: dict[int, str] = {}  # worker -> what it is doing
        self._ready: dict[int, tuple[int, Any]] = {}  # async: finished, not yet returned
        self._state = _State.IDLE
        self._broken: str | None = None
        self._reset_done = False
        self._pending_obs: dict[int, Any] = {}
        self._orphans: set[int] = set()  # workers whose reply to an interrupted call is to be dropped
        self._local_pending: Callable[[], tuple[int, Any]] | None = None  # sent to the inline slice, not run yet
        cpus = _allowed_cpus()  # pin within the allowed set, never to a CPU we may not use
        # PR_SET_PDEATHSIG fires when the forking *thread* ends: only from the main thread does
        # that mean the parent's end (workers also watch the parent process itself)
        pdeathsig = threading.current_thread() is threading.main_thread()
        self._finalizer = weakref.finalize(self, ProcessVectorEnv._finalize, self._processes, self._cmd_fds,
                                           self._done_fds, self._conns)
        self._closed_workers = False
        try:
            for w, (lo, hi) in enumerate(self._bounds):
                if w == 0 and inline:
                    continue
                cmd_fd = os.eventfd(0, os.EFD_CLOEXEC)
                # non-blocking: the fast step path reads a reply it saw arrive without blocking
                done_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
                parent_conn, child_conn = ctx.Pipe()
                self._cmd_fds.append(cmd_fd)
                self._done_fds.append(done_fd)
                self._cmd_fd_of[w] = cmd_fd
                self._done_fd_of[w] = done_fd
                self._conns[w] = parent_conn
                proc = ctx.Process(
                    target=W.worker_main,
                    name=f"fastsample-worker-{w}",
                    args=(w, CloudpickleWrapper(sub_factory(lo, hi)), self._shared, lo, hi, _Fd(cmd_fd),
                          _Fd(done_fd), child_conn, cpus[w % len(cpus)] if pin_workers else None, self._obs_shared,
                          self._ctrl_mem, num_workers, self._spin_s, os.getpid(), pdeathsig),
                    daemon=daemon,
                )
                proc.start()
                child_conn.close()
                self._processes.append(proc)
                self._proc_of[w] = proc
                self._poll.register(done_fd, select.POLLIN)
                self._poll.register(proc.sentinel, select.POLLIN)
                self._fd_owner[done_fd] = ("done", w)
                self._fd_owner[proc.sentinel] = ("died", w)
                self._in_flight[w] = "start"
            if inline:
                lo, hi = self._bounds[0]
                try:
                    sub = sub_factory(lo, hi)()
                except Exception as exc:  # reported with the workers' start-up failures, as theirs are
                    self._ready[0] = (W.REPLY_ERROR, W.describe_error(exc))
                else:
                    self._local = W.SliceServer(sub, [self._shared.views(lo, hi, k) for k in range(num_slots)],
                                                self._obs_shared,
                                                self._ctrl[2 * num_workers:] if num_slots > 1 else None)
            starting = [w for w in range(num_workers) if w in self._in_flight]
            self._collect(starting, timeout=120.0)
            self._take(sorted(set(starting) | set(self._ready)))
            if num_slots > 1:
                self._out_slots = OutputSlots([(v.obs, v.rewards, v.terminated, v.truncated) for v in self._slot_views])
                self._out_slots.seal()  # after every view of ours exists
                self._select_slot(self._out_slots.scratch)
        except BaseException:
            self.close(terminate=True)
            raise

    # -- worker exchanges ----------------------------------------------------------------
    #
    # Interrupt safety. Ctrl-C (KeyboardInterrupt) may arrive at any bytecode. Every change to
    # the exchange state (signalling workers, reading a reply from its eventfd and recording
    # it, handing results out) happens inside ``hold_interrupts()``, which holds SIGINT back;
    # waiting (spinning, poll) happens outside, so Ctrl-C always ends a wait at once. Replies
    # are recorded in ``_ready`` the moment they are read, and taken from it only together with
    # the state change that ends the call: after an interrupt at any point the env is either as
    # before the call, or the call took effect (``CallInterrupted.completed``), or it is still
    # in flight (``pending_call``), and the matching ``*_wait()`` finishes it.

    def _send(self, w: int, code: int, message: Any = None, what: str = "step") -> None:
        """Start a command on worker ``w`` (in a held section: the caller holds interrupts)."""
        if w == 0 and self._local is not None:
            # the inline slice: run by the wait that collects it (_collect), so *_async returns
            # at once and *_wait(timeout) covers it
            local = self._local
            self._local_pending = local.step if code == W.CMD_STEP else (lambda: local.message(*message))
            self._in_flight[0] = what
            return
        if message is None:
            self._signal(w, code)
        else:
            data = ForkingPickler.dumps(message)  # an unpicklable message raises before signalling
            # wake the worker first: it reads the pipe while we fill it, so a message larger
            # than the pipe buffer cannot deadlock
            self._signal(w, code)
            self._in_flight[w] = what
            self._conns[w].send_bytes(data)
        self._in_flight[w] = what

    def _signal(self, w: int, code: int) -> None:
        # the eventfd before the counter, so a worker spinning on the counter finds its eventfd
        # already signalled and never blocks in the kernel (waking it would cost µs)
        os.eventfd_write(self._cmd_fd_of[w], code)
        self._ctrl[w] += 1

    def _run_local(self, command: Callable[[], tuple[int, Any]]) -> tuple[int, Any]:
        """Run a command on the inline slice; its reply as a worker would send it. Callers
        hold interrupts (``forceable``): a Ctrl-C waits for the slice to finish; a second one
        stops it half done, and the env is marked unusable."""
        try:
            return command()
        except Exception as exc:
            return W.REPLY_ERROR, W.describe_error(exc, self._local.sub if self._local is not None else None)
        except BaseException:  # a second Ctrl-C mid-slice: this slice may be half done
            self._broken = "a call was interrupted twice (a second Ctrl-C) while this process stepped envs"
            raise

    def _held_send(self, start: Callable[[], None], what: str) -> None:
        """Run ``start`` (which signals workers and sets the state) with interrupts held; a
        Ctrl-C during it is reported afterwards as the call pending (or, if ``start`` raised
        after a second Ctrl-C, the env is marked unusable)."""
        # (a KeyboardInterrupt out of this block is one raised before the section began, when
        # nothing has happened, or a second Ctrl-C, which marks the env)
        with hold_interrupts(forceable=True) as held:
            try:
                start()
            except KeyboardInterrupt:
                self._mark_forced(what)
                raise
        if held.interrupted:
            pending = self.pending_call
            if pending is not None:
                held.deliver(f"{what}() was interrupted after it was sent: {pending}_wait() returns its results",
                             pending=pending)
            held.deliver(f"{what}() was interrupted after it was sent; it took effect", completed=True)

    def _mark_forced(self, what: str) -> None:
        if self._broken is None:
            self._broken = f"{what}() was interrupted twice (a second Ctrl-C) while it signalled workers"

    def _select_slot(self, k: int) -> None:
        """Commands from now on write their results into slot ``k`` (workers read it when a
        command arrives)."""
        self._ctrl[2 * self.num_workers] = k
        self._views = self._slot_views[k]

    def _scratch_slot(self) -> None:
        """Every path but the fast step writes into the scratch slot, never handed out: the
        caller may hold the other slots. The current results are carried over (envs a step of
        some workers leaves alone keep them; a reset of some envs takes the others' true
        observations from the workers); workers are idle whenever the slot is not already
        scratch."""
        slots = self._out_slots
        if slots is not None and self._views is not self._slot_views[slots.scratch]:
            current, scratch = self._views, self._slot_views[slots.scratch]
            for dst, src in ((scratch.obs, current.obs), (scratch.rewards, current.rewards),
                             (scratch.terminated, current.terminated), (scratch.truncated, current.truncated)):
                np.copyto(dst, src)
            self._select_slot(slots.scratch)

    def _poll_once(self, timeout_s: float | None) -> None:
        """Wait for replies (interruptible), then record those that came in ``_ready`` (held).
        A worker that died while working raises here; one that died idle makes the env
        unusable."""
        ms = None if timeout_s is None else max(0, int(timeout_s * 1000))
        events = self._poll.poll(ms)
        if not events:
            return
        with hold_interrupts():
            got = set()
            dead = []
            for fd, _ in events:
                kind, w = self._fd_owner[fd]
                if kind == "died":
                    dead.append((fd, w))
                    continue
                try:
                    code = os.eventfd_read(fd)
                except BlockingIOError:  # already read by a fast-path check
                    continue
                self._take_reply(w, code)
                got.add(w)
            for fd, w in dead:
                if w in self._in_flight and w not in got:
                    self._raise_died(w)
                self._poll.unregister(fd)
                if self._broken is None and not self._closed_workers:
                    lo, hi = self._bounds[w]
                    self._broken = f"worker {w} (envs {lo}..{hi - 1}) died ({_signal_name(self._proc_of[w].exitcode)})"

    def _raise_died(self, w: int) -> None:
        proc = self._proc_of[w]
        proc.join(timeout=1.0)
        lo, hi = self._bounds[w]
        self._broken = f"worker {w} (envs {lo}..{hi - 1}) died ({_signal_name(proc.exitcode)})"
        self._state = _State.IDLE
        raise WorkerDiedError(self._broken + "; close() this env")

    def _collect(self, workers: list[int], timeout: float | None, *, stop_after: int | None = None) -> None:
        """Wait until the replies of ``workers`` (or the first ``stop_after`` envs' worth of
        them) are in ``_ready``. Raises on deaths and timeouts; a Ctrl-C ends the wait with
        every reply read so far kept in ``_ready``. The caller takes them (:meth:`_take`)."""
        waiting = {w for w in workers if w not in self._ready}
        deadline = None if timeout is None else time.monotonic() + timeout
        if 0 in waiting and self._local_pending is not None:
            self._run_pending_local()
            waiting.discard(0)
        envs_done = sum(self._bounds[w][1] - self._bounds[w][0] for w in workers if w in self._ready)
        while waiting and (stop_after is None or envs_done < stop_after):
            if not any(w in self._in_flight for w in waiting):  # nothing can arrive: never hang
                raise WorkerError(f"no reply can come from workers {sorted(waiting)}: nothing was sent to them")
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise mp.TimeoutError(
                    f"workers {sorted(waiting)} did not answer within {timeout} s; call the wait "
                    f"method again to keep waiting, or close() the env"
                )
            if self._spin_s:
                self._spin_for_replies(waiting, remaining)
            self._poll_once(remaining)
            for w in [w for w in waiting if w in self._ready]:
                waiting.discard(w)
                envs_done += self._bounds[w][1] - self._bounds[w][0]

    def _run_pending_local(self) -> None:
        """Run the command sent to the inline slice (held, forceable: a Ctrl-C waits for it,
        then ends the wait with its reply recorded; a second one stops it, see _run_local)."""
        command = self._local_pending
        with hold_interrupts(forceable=True) as held:
            self._local_pending = None
            reply = self._run_local(command)
            self._in_flight.pop(0, None)
            self._ready[0] = reply
        if held.interrupted:
            held.deliver("interrupted while this process stepped its envs")

    def _take(self, workers) -> dict[int, tuple[int, Any]]:
        """Take the recorded replies of ``workers`` out of ``_ready`` (call it held, together
        with the state change that ends the call). Raises the first error among them."""
        results = {w: self._ready.pop(w) for w in workers}
        self._raise_first_error(results)
        return results

    def _take_reply(self, w: int, code: int) -> None:
        """Record worker ``w``'s reply, whose ``code`` was just read from its done fd (held)."""
        self._done_seen[w] += 1
        try:
            payload = self._conns[w].recv() if code != W.REPLY_OK else None
        except (EOFError, OSError):  # died while sending its reply
            self._raise_died(w)
        self._in_flight.pop(w, None)
        self._ready[w] = (code, payload)

    def _raise_first_error(self, results: dict[int, tuple[int, Any]]) -> None:
        """Raise the error of the last env (in env order) that raised, after logging every
        error as ``AsyncVectorEnv`` does (``gymnasium.logger.error``: for each, "Received the
        following error from Worker-<env index> - Shutting it down" and the worker's traceback,
        then "Raising the last exception back to the main process."). Unlike AsyncVectorEnv's,
        the workers stay up: the env remains usable."""
        errors = sorted((w, p) for w, (c, p) in results.items() if c == W.REPLY_ERROR)
        if errors:
            self._state = _State.IDLE
            for w, payload in errors:
                env = self._bounds[w][0] + (payload[4] if len(payload) > 4 and payload[4] is not None else 0)
                gym.logger.error(f"Received the following error from Worker-{env} - Shutting it down")
                gym.logger.error(f"{payload[3]}")
            gym.logger.error("Raising the last exception back to the main process.")
            w, payload = errors[-1]
            lo, hi = self._bounds[w]
            raise _rebuild_exception(w, lo, hi, payload)

    def _reply_signalled(self, w: int) -> bool:
        """Whether worker ``w``'s step reply is signalled, spinning up to the spin time for it
        (interruptible: nothing changes here). The worker writes its eventfd before it bumps
        the counter, so a bumped counter means a read of the eventfd will not block."""
        # The counter may lag the eventfd: a worker preempted between the two (often by this
        # process, woken by its eventfd on the same core). A counter below what we have read is
        # not a new reply, and spinning then would only keep that worker off the core: stop.
        ctrl, slot, seen = self._ctrl, self.num_workers + w, self._done_seen[w]
        if self._spin_s:
            clock = time.perf_counter
            deadline = clock() + self._spin_s
            while ctrl[slot] == seen:
                if clock() > deadline:
                    return False
        return ctrl[slot] > seen

    def _read_signalled(self, w: int) -> None:
        """Record the reply :meth:`_reply_signalled` saw (held)."""
        try:
            code = os.eventfd_read(self._done_fd_of[w])
        except BlockingIOError:  # not expected (the counter moved after the eventfd was written)
            return  # the caller waits for it with _collect
        self._take_reply(w, code)

    def _spin_for_replies(self, waiting: set[int], remaining: float | None) -> None:
        """Busy-poll the reply counters briefly, so a reply that comes soon is read without
        the parent having gone to sleep."""
        k = self.num_workers
        ctrl, seen = self._ctrl, self._done_seen
        spin = self._spin_s if remaining is None else min(self._spin_s, remaining)
        deadline = time.perf_counter() + spin
        remote = [w for w in waiting if w in self._in_flight]
        while time.perf_counter() < deadline:
            for w in remote:
                if ctrl[k + w] != seen[w]:  # a reply, or a lagging counter (see _reply_signalled)
                    return

    def _check_usable(self) -> None:
        if self.closed:
            raise ClosedEnvironmentError(f"{type(self).__name__} is closed")
        if self._broken is not None:
            raise WorkerError(f"{self._broken}; close() this env")

    def _drain_orphans(self) -> None:
        """Wait for the replies of a synchronous call (``get_attr``, ``call_envs``, ...) that
        Ctrl-C interrupted, and drop them, so the workers are idle again."""
        if self._orphans:
            workers = sorted(self._orphans)
            self._collect(workers, None)
            with hold_interrupts():
                for w in workers:
                    self._ready.pop(w, None)
                self._orphans.clear()

    def _assert_idle(self, what: str) -> None:
        self._check_usable()
        self._drain_orphans()
        if self._state is not _State.IDLE:
            raise AlreadyPendingCallError(
                f"Calling `{what}` while waiting for a pending call to `{self._state.value}` to complete"
                f" (call {self._state.value}_wait() to finish it)",
                str(self._state.value),
            )
        if self._in_flight or self._ready:
            busy = sorted(set(self._in_flight) | set(self._ready))
            raise AlreadyPendingCallError(
                f"Calling `{what}` while workers {busy} hold asynchronous results (send/async_reset); recv() them first",
                "send",
            )

    @property
    def pending_call(self) -> str | None:
        """``"step"``, ``"reset"`` or ``"call"`` while a call was sent and its ``*_wait()`` has
        not returned (after ``step_async``, or a ``step()`` that Ctrl-C interrupted); None when
        idle."""
        return None if self._state is _State.IDLE else self._state.value

    def _interrupted_wait(self, what: str) -> CallInterrupted:
        pending = self.pending_call
        if pending is not None and self._broken is None:
            return CallInterrupted(f"{what}() was interrupted while waiting for the workers; the call is in flight: "
                                   f"{pending}_wait() returns its results", pending=pending)
        return CallInterrupted(f"{what}() was interrupted while waiting; nothing was taken")

    # -- results -------------------------------------------------------------------------

    def _obs_out(self, results: dict[int, tuple[int, Any]]) -> Any:
        if self._obs_shared:
            return copy_batch(self._views.obs) if self.copy else self._views.obs
        for w, (_, payload) in results.items():
            if payload is not None and payload[0] is not None:
                self._pending_obs[w] = payload[0]
        return self._join_obs([self._pending_obs[w] for w in range(self.num_workers)])

    def _join_obs(self, parts: list[Any]) -> Any:
        """One batch from the workers' pickled batches (in env order)."""
        if self._array_obs:
            return concat_batches(parts)
        # Text, Graph, Sequence, OneOf, custom spaces (and nestings): gymnasium's own batching
        single = self.single_observation_space
        items = [x for part in parts for x in iterate(batch_space(single, _batch_len(single, part)), part)]
        return concatenate(single, items, create_empty_array(single, len(items), fn=np.zeros))

    def _infos(self, results: dict[int, tuple[int, Any]]) -> dict[str, Any]:
        infos: dict[str, Any] = {}
        for w in sorted(results):
            code, payload = results[w]
            if code == W.REPLY_MESSAGE and payload is not None and payload[1]:
                lo, hi = self._bounds[w]
                _place_info(infos, payload[1], lo, hi, self.num_envs)
        return infos

    # -- gymnasium API ---------------------------------------------------------------------

    def _seed_slices(self, seed) -> list[list[int | None]]:
        from fastsample.vector_env import check_seed_list

        seeds = check_seed_list(seed, self.num_envs)
        return [seeds[lo:hi] for lo, hi in self._bounds]

    def _reset_targets_for(self, seed, options) -> list[tuple[int, Any, Any]]:
        """Validate reset arguments; the ``(worker, seeds, options)`` to send, in send order."""
        seed_slices = self._seed_slices(seed)
        options = dict(options) if options else {}
        mask = options.pop("reset_mask", None)
        if mask is not None:
            from fastsample.vector_env import check_reset_mask

            check_reset_mask(mask, self.num_envs)
        targets = []
        for w, (lo, hi) in enumerate(self._bounds):
            sub_options = dict(options)
            if mask is not None:
                if not mask[lo:hi].any() and self._out_slots is None:
                    continue
                # with result slots, a worker none of whose envs reset still answers: it puts
                # its envs' true observations into the new slot (the caller may have changed
                # the arrays it was given)
                sub_options["reset_mask"] = mask[lo:hi].copy()
            targets.append((w, seed_slices[w], sub_options or None))
        targets.sort(key=lambda t: self._order.index(t[0]))
        return targets

    def _start_reset(self, targets) -> None:
        self._scratch_slot()
        self._state = _State.WAITING_RESET
        self._reset_targets = [w for w, _, _ in targets]
        for w, seeds, sub_options in targets:
            self._send(w, W.CMD_MESSAGE, ("reset", (seeds, sub_options)), what="reset")

    def reset_async(self, seed: int | list[int | None] | None = None, options: dict | None = None) -> None:
        self._assert_idle("reset_async")
        targets = self._reset_targets_for(seed, options)
        self._held_send(lambda: self._start_reset(targets), "reset_async")

    def reset_wait(self, timeout: float | None = None) -> tuple[Any, dict[str, Any]]:
        self._check_usable()
        if self._state is not _State.WAITING_RESET:
            raise NoAsyncCallError("Calling `reset_wait` without any prior call to `reset_async`.", _State.WAITING_RESET.value)
        try:
            self._collect(self._reset_targets, timeout)
        except KeyboardInterrupt:
            raise self._interrupted_wait("reset_wait") from None
        with hold_interrupts() as held:
            results = self._take(self._reset_targets)
            self._state = _State.IDLE
            self._reset_done = True
            out = self._obs_out(results), self._infos(results)
        if held.interrupted:
            held.deliver("reset() was interrupted as it finished; it took effect", completed=True, result=out)
        return out

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict | None = None):
        self.reset_async(seed=seed, options=options)
        return self.reset_wait()

    def _load_actions(self, actions: Any) -> Any:
        """Kernels: the checked batch (in the shared buffer or as given). Python envs: the
        route :meth:`PythonActions.split` chose. Raises before anything is sent."""
        if self._py_actions is not None:
            return self._py_actions.split(actions, self.action_space)
        return self._checker.load(actions)

    def _start_step(self, actions: Any) -> None:
        if self._py_actions is not None:
            route, value = actions
            self._state = _State.WAITING_STEP
            if route == "shared":
                np.copyto(self._views.actions, value)
                for w in self._order:
                    self._send(w, W.CMD_STEP)
            else:
                for w in self._order:
                    self._send(w, W.CMD_MESSAGE, ("step", value(*self._bounds[w])))
            return
        if self._arrays_for_actions:
            if actions is not self._views.actions:
                np.copyto(self._views.actions, actions, casting="unsafe")
            self._state = _State.WAITING_STEP
            for w in self._order:
                self._send(w, W.CMD_STEP)
        else:
            self._state = _State.WAITING_STEP
            items = None if self._array_actions else list(iterate(self.action_space, actions))
            single = self.single_action_space
            for w in self._order:
                lo, hi = self._bounds[w]
                if items is None:
                    part = _slice_actions(self.action_space, actions, lo, hi)
                else:  # Text, Graph, Sequence, OneOf, custom spaces: rebatch this worker's actions
                    part = concatenate(single, items[lo:hi], create_empty_array(single, hi - lo, fn=np.zeros))
                self._send(w, W.CMD_MESSAGE, ("step", part))

    def step_async(self, actions: Any) -> None:
        self._assert_idle("step_async")
        if not self._reset_done and not self._python_envs:  # Python envs decide themselves, as in AsyncVectorEnv
            raise gym.error.ResetNeeded("Cannot call step() before calling reset()")
        loaded = self._load_actions(actions)

        def start():
            self._scratch_slot()
            self._start_step(loaded)

        self._held_send(start, "step_async")

    def _finish_step(self, workers) -> tuple:
        """Take the step's replies and hand its results out (call it held)."""
        v = self._views
        slots = self._out_slots
        ready = self._ready
        if (slots is not None and len(ready) == self.num_workers
                and all(code == W.REPLY_OK for code, _ in ready.values())):
            # the common step: every slice answered with its results in shared memory, no info
            ready.clear()
            self._state = _State.IDLE
            if v is not self._slot_views[slots.scratch]:  # a slot the caller may keep
                return v.obs, v.rewards, v.terminated, v.truncated, {}
            return copy_batch(v.obs), v.rewards.copy(), v.terminated.copy(), v.truncated.copy(), {}
        results = self._take(workers)
        self._state = _State.IDLE
        infos = self._infos(results) if any(c == W.REPLY_MESSAGE for c, _ in results.values()) else {}
        if slots is not None and v is not self._slot_views[slots.scratch]:  # a slot the caller may keep
            return v.obs, v.rewards, v.terminated, v.truncated, infos
        if self.copy:
            obs = self._obs_out(results)
            return obs, v.rewards.copy(), v.terminated.copy(), v.truncated.copy(), infos
        return self._obs_out(results), v.rewards, v.terminated, v.truncated, infos

    def step_wait(self, timeout: float | None = None):
        self._check_usable()
        if self._state is not _State.WAITING_STEP:
            raise NoAsyncCallError("Calling `step_wait` without any prior call to `step_async`.", _State.WAITING_STEP.value)
        workers = list(range(self.num_workers))
        try:
            self._collect(workers, timeout)
        except KeyboardInterrupt:
            raise self._interrupted_wait("step_wait") from None
        with hold_interrupts() as held:
            out = self._finish_step(workers)
        if held.interrupted:
            held.deliver("step() was interrupted as it finished; it took effect", completed=True, result=out)
        return out

    def step(self, actions):
        if (self._state is _State.IDLE and (self._reset_done or self._python_envs) and self._obs_shared
                and not self._in_flight and not self._ready and not self._orphans and self._broken is None
                and not self.closed):
            py = self._py_actions
            if py is None:
                if self._arrays_for_actions:
                    return self._step_fast(self._checker.load(actions))
            elif (py.buffer is not None and type(actions) is np.ndarray and actions.dtype == py.dtype
                  and actions.shape == py.buffer.shape):  # Python envs: the batch as the envs get it
                return self._step_fast(actions)
        self.step_async(actions)
        return self.step_wait()

    def _step_fast(self, loaded):
        """``step_async`` + ``step_wait`` for the common case (array actions, shared memory,
        nothing else pending) with less Python in between; same results and errors.
        ``loaded``: the checked batch (kernels), or the caller's (Python envs, in the shared
        buffer's dtype and shape)."""
        remote = self._remote
        with hold_interrupts(forceable=True) as held:  # (see _held_send)
            try:
                if self._out_slots is not None:
                    slot = self._out_slots.free()
                    if self._views is not self._slot_views[slot]:
                        self._select_slot(slot)
                v = self._views
                if loaded is not v.actions:
                    np.copyto(v.actions, loaded, casting="unsafe")
                self._state = _State.WAITING_STEP
                for w in remote:
                    self._signal(w, W.CMD_STEP)
                    self._in_flight[w] = "step"
                if self._local is not None:
                    self._ready[0] = self._run_local(self._local.step)
            except KeyboardInterrupt:
                self._mark_forced("step")
                raise
        if held.interrupted:
            held.deliver("step() was interrupted after its actions were sent: step_wait() returns its results",
                         pending="step")
        try:
            signalled = []
            for i, w in enumerate(remote):
                if self._reply_signalled(w):
                    signalled.append(w)
                else:  # not there within the spin: wait in the kernel, watching for deaths
                    self._collect(remote[i:], None)
                    break
        except KeyboardInterrupt:
            raise self._interrupted_wait("step") from None
        finished = False
        with hold_interrupts() as held:
            for w in signalled:
                if w not in self._ready:
                    self._read_signalled(w)
            if len(self._ready) == self.num_workers:
                out = self._finish_step(range(self.num_workers))
                finished = True
        if not finished:  # (not expected) a signalled reply could not be read yet: wait for it
            if held.interrupted:
                held.deliver("step() was interrupted after its actions were sent: step_wait() returns its results",
                             pending="step")
            return self.step_wait()
        if held.interrupted:
            held.deliver("step() was interrupted as it finished; it took effect", completed=True, result=out)
        return out

    # -- EnvPool-style asynchronous API ------------------------------------------------------

    def async_reset(self, seed: int | list[int | None] | None = None) -> None:
        """Reset every env; the reset observations come back through ``recv()``."""
        self._assert_idle("async_reset")
        targets = self._reset_targets_for(seed, None)

        def start():
            self._start_reset(targets)
            self._state = _State.IDLE  # the resets are now ordinary in-flight work for recv()
            self._reset_done = True

        self._held_send(start, "async_reset")

    def send(self, actions: Any, env_ids: Any) -> None:
        """Step the envs ``env_ids`` (whole workers, as returned in ``info["env_id"]``)."""
        self._check_usable()
        self._drain_orphans()
        if self._state is not _State.IDLE:
            raise AlreadyPendingCallError(f"Calling `send` while waiting for `{self._state.value}`", self._state.value)
        ids = np.asarray(env_ids)
        workers = self._workers_for(ids)
        busy = [w for w in workers if w in self._in_flight or w in self._ready]
        if busy:
            raise AlreadyPendingCallError(f"workers {busy} still hold results: recv() them before send()", "send")
        order = np.argsort(ids, kind="stable")
        messages = None
        if self._py_actions is not None:  # Python envs: each gets its element of the batch, unchecked
            route, loaded = self._py_actions.split(actions, batch_space(self.single_action_space, len(ids)), len(ids))
            if route == "parts":
                items = self._py_actions.items(actions, batch_space(self.single_action_space, len(ids)), len(ids))
                by_env = {int(ids[p]): items[p] for p in order}
                messages = {w: ("step", ActionItems([by_env[i] for i in range(*self._bounds[w])])) for w in workers}
        else:
            if not self._arrays_for_actions:
                raise TypeError(f"send() needs array actions; {self.single_action_space} actions are not supported")
            loaded = ActionBuffer(self.single_action_space, len(ids)).load(actions)

        def start():
            self._scratch_slot()
            if messages is None:
                self._views.actions[ids[order]] = loaded[order]
            for w in sorted(workers, key=self._order.index):
                if messages is None:
                    self._send(w, W.CMD_STEP)
                else:
                    self._send(w, W.CMD_MESSAGE, messages[w])

        self._held_send(start, "send")

    def recv(self, timeout: float | None = None):
        """The next ``batch_size`` envs to finish: ``(obs, rewards, terminated, truncated, info)``
        with ``info["env_id"]`` naming them."""
        self._check_usable()
        self._drain_orphans()
        pending = sorted(set(self._in_flight) | set(self._ready))
        if not pending:
            raise NoAsyncCallError("Calling `recv` with no envs in flight: async_reset() or send() first", "recv")
        try:
            self._collect(pending, timeout, stop_after=self.batch_size)
        except KeyboardInterrupt:
            raise self._interrupted_wait("recv") from None
        with hold_interrupts() as held:
            taken, count = [], 0
            for w in sorted(w for w in pending if w in self._ready):  # exactly batch_size envs
                if count >= self.batch_size:
                    break
                taken.append(w)
                count += self._bounds[w][1] - self._bounds[w][0]
            results = self._take(taken)
            out = self._recv_batch(taken, results)
        if held.interrupted:
            held.deliver("recv() was interrupted as it finished; it took effect", completed=True, result=out)
        return out

    def _recv_batch(self, taken: list[int], results: dict[int, tuple[int, Any]]):
        v = self._views
        ids = np.concatenate([np.arange(*self._bounds[w]) for w in taken])
        lo_hi = [self._bounds[w] for w in taken]
        if self._obs_shared:
            from fastsample.engine.shared import slice_batch

            obs = concat_batches([slice_batch(v.obs, lo, hi) for lo, hi in lo_hi])
        else:
            obs = self._join_obs([results[w][1][0] for w in taken])
        rewards = np.concatenate([v.rewards[lo:hi] for lo, hi in lo_hi])
        terminated = np.concatenate([v.terminated[lo:hi] for lo, hi in lo_hi])
        truncated = np.concatenate([v.truncated[lo:hi] for lo, hi in lo_hi])
        infos: dict[str, Any] = {}
        offset = 0
        for w in taken:
            lo, hi = self._bounds[w]
            code, payload = results[w]
            if code == W.REPLY_MESSAGE and payload is not None and payload[1]:
                _place_info(infos, payload[1], offset, offset + hi - lo, len(ids))
            offset += hi - lo
        infos["env_id"] = ids
        return obs, rewards, terminated, truncated, infos

    def _workers_for(self, ids: np.ndarray) -> list[int]:
        if ids.ndim != 1 or ids.dtype.kind not in "iu":
            raise TypeError(f"env_ids must be a 1-D integer array, got {ids!r}")
        chosen = []
        covered = np.zeros(self.num_envs, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_envs):
            raise ValueError(f"env_ids must be in 0..{self.num_envs - 1}, got {ids}")
        np.add.at(covered, ids, 1)
        for w, (lo, hi) in enumerate(self._bounds):
            part = covered[lo:hi]
            if part.any():
                if not (part == 1).all():
                    raise ValueError(
                        f"env_ids must name whole workers, each env once: worker {w} owns envs {lo}..{hi - 1}"
                    )
                chosen.append(w)
        if not chosen:
            raise ValueError("env_ids is empty")
        return chosen

    # -- call / attributes / render ---------------------------------------------------------

    def call_async(self, name: str, *args: Any, **kwargs: Any) -> None:
        self._assert_idle("call_async")

        def start():
            self._state = _State.WAITING_CALL
            for w in self._order:
                self._send(w, W.CMD_MESSAGE, ("call", (name, args, kwargs)), what="call")

        self._held_send(start, "call_async")

    def call_wait(self, timeout: float | None = None) -> tuple[Any, ...]:
        self._check_usable()
        if self._state is not _State.WAITING_CALL:
            raise NoAsyncCallError("Calling `call_wait` without any prior call to `call_async`.", _State.WAITING_CALL.value)
        workers = list(range(self.num_workers))
        try:
            self._collect(workers, timeout)
        except KeyboardInterrupt:
            raise self._interrupted_wait("call_wait") from None
        with hold_interrupts() as held:
            results = self._take(workers)
            self._state = _State.IDLE
            out = tuple(x for w in range(self.num_workers) for x in results[w][1])
        if held.interrupted:
            held.deliver("call() was interrupted as it finished; it took effect", completed=True, result=out)
        return out

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        self.call_async(name, *args, **kwargs)
        return self.call_wait()

    def get_attr(self, name: str) -> tuple[Any, ...]:
        return self._roundtrip("get_attr", lambda w: name)

    def set_attr(self, name: str, values: Any) -> None:
        if not isinstance(values, (list, tuple)):
            values = [values] * self.num_envs
        if len(values) != self.num_envs:
            raise ValueError(f"values must be a list of length num_envs={self.num_envs}, got length {len(values)}")
        self._roundtrip("set_attr", lambda w: (name, list(values[self._bounds[w][0]:self._bounds[w][1]])))

    def call_envs(self, fn: Callable[[gym.Env], Any], indices: Sequence[int] | None = None) -> tuple[Any, ...]:
        """``fn(env)`` for each env object in ``indices`` (default: all; negative indices count
        from the end), run inside the worker that owns it; the results in the order of
        ``indices``. Only the workers owning those envs are asked. ``fn`` travels pickled: a
        module-level function or a ``functools.partial`` of one. Needs Python envs
        (``env_fns``): workers of Numba kernels hold no per-env objects and raise ``TypeError``."""
        self._assert_idle("call_envs")
        ForkingPickler.dumps(fn)  # an unpicklable fn raises here, before any worker is asked
        targets = []
        for i in range(self.num_envs) if indices is None else indices:
            i = int(i)
            if not -self.num_envs <= i < self.num_envs:
                raise IndexError(f"env index {i} out of range for num_envs={self.num_envs}")
            i %= self.num_envs
            w = next(w for w, (lo, hi) in enumerate(self._bounds) if lo <= i < hi)
            targets.append((w, i - self._bounds[w][0]))
        local: dict[int, list[int]] = {}
        for w, j in targets:
            local.setdefault(w, []).append(j)
        results = self._sync_exchange("call_envs", {w: ("call_envs", (fn, js)) for w, js in local.items()})
        answers = {w: iter(results[w][1]) for w in local}
        return tuple(next(answers[w]) for w, _ in targets)

    def render(self) -> tuple[Any, ...] | None:
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode")
            return None
        return self._roundtrip("render", lambda w: None)

    def _roundtrip(self, name: str, payload: Callable[[int], Any]) -> Any:
        self._assert_idle(name)
        results = self._sync_exchange(name, {w: (name, payload(w)) for w in range(self.num_workers)})
        if name == "set_attr":
            return None
        return tuple(x for w in range(self.num_workers) for x in results[w][1])

    def _sync_exchange(self, name: str, messages: dict[int, Any]) -> dict[int, tuple[int, Any]]:
        """Send ``messages`` (``{worker: message}``) and wait for every reply. Ctrl-C while
        waiting leaves the replies to be dropped by the next call (it waits for them)."""
        workers = sorted(messages, key=self._order.index)

        def start():
            for w in workers:
                self._send(w, W.CMD_MESSAGE, messages[w], what=name)

        with hold_interrupts(forceable=True) as held:  # (see _held_send)
            try:
                start()
            except KeyboardInterrupt:
                self._mark_forced(name)
                raise
        try:
            if held.interrupted:
                raise KeyboardInterrupt
            self._collect(workers, None)
        except KeyboardInterrupt:
            with hold_interrupts():
                self._orphans.update(workers)
            raise CallInterrupted(f"{name}() was interrupted; its result is dropped (the next call waits for the "
                                  f"workers to finish it)") from None
        with hold_interrupts() as held:
            results = self._take(workers)
        if held.interrupted:
            held.deliver(f"{name}() was interrupted as it finished; it took effect", completed=True, result=None)
        return results

    @property
    def worker_pids(self) -> dict[int, int]:
        """``{slice index: pid}`` of the worker processes (an inline slice has none)."""
        return {w: proc.pid for w, proc in self._proc_of.items()}

    @property
    def np_random_seed(self) -> tuple[Any, ...]:
        return self.get_attr("np_random_seed")

    # -- shutdown ------------------------------------------------------------------------------

    def close_extras(self, timeout: float | None = None, terminate: bool = False, **kwargs: Any) -> None:
        if self._closed_workers:
            return
        if self._state is not _State.IDLE:
            gym.logger.warn(f"Calling `close` while waiting for a pending call to `{self._state.value}` to complete.")
        self._closed_workers = True
        terminate = terminate or self._broken is not None
        interrupted = None
        if not terminate:
            try:
                if self._in_flight or self._ready or self._state is not _State.IDLE:
                    # let in-flight work finish so the protocol is in step, then close
                    self._collect(sorted(set(self._in_flight) | set(self._ready)), timeout=timeout or 5.0)
                    self._ready.clear()
                    self._state = _State.IDLE
                with hold_interrupts(forceable=True):
                    for w in self._order:
                        self._send(w, W.CMD_MESSAGE, ("close", None), what="close")
                self._collect(list(range(self.num_workers)), timeout=timeout or 5.0)
                self._take(range(self.num_workers))
            except Exception:
                terminate = True
            except KeyboardInterrupt as exc:  # Ctrl-C while closing: end the workers now, then stop
                terminate, interrupted = True, exc
        if terminate and self._local is not None:
            try:
                self._local.sub.close()
            except Exception:  # closing after a failure: the env may be in any state
                pass
        self._finalizer.detach()
        self._finalize(self._processes, self._cmd_fds, self._done_fds, self._conns, terminate=terminate)
        if interrupted is not None:
            raise interrupted

    @staticmethod
    def _finalize(processes, cmd_fds, done_fds, conns, terminate: bool = True) -> None:
        for proc in processes:
            if terminate and proc.is_alive():
                proc.kill()
        for proc in processes:
            proc.join(timeout=5.0)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for conn in conns.values():
            conn.close()
        for fd in (*cmd_fds, *done_fds):
            try:
                os.close(fd)
            except OSError:
                pass
        processes.clear()
        cmd_fds.clear()
        done_fds.clear()
        conns.clear()

    def __del__(self):
        if getattr(self, "_finalizer", None) is not None and not self.closed:
            self.close(terminate=True)

    def __repr__(self) -> str:
        return f"ProcessVectorEnv(num_envs={self.num_envs}, num_workers={self.num_workers})"


def _slice_actions(space: gym.Space, actions: Any, lo: int, hi: int) -> Any:
    if isinstance(space, gym.spaces.Dict):
        return {k: _slice_actions(space[k], actions[k], lo, hi) for k in space.keys()}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(_slice_actions(s, a, lo, hi) for s, a in zip(space, actions))
    return actions[lo:hi]
