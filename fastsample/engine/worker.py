"""The worker process: owns a contiguous slice of envs and steps it on command.

Protocol (one exchange at a time per worker):

* the parent writes a command code into the worker's ``ctrl`` slot and bumps its command
  counter: ``CMD_STEP`` (actions are already in shared memory) or ``CMD_MESSAGE`` (a pickled
  ``(name, payload)`` waits on the pipe: reset, call, render, close, or a step whose actions
  could not live in shared memory); it writes the worker's ``cmd`` eventfd (a doorbell) only
  when the worker's flag says it sleeps, or is going to sleep, in ``poll``;
* the worker answers with a code in its ``ctrl`` slot, a bump of its reply counter and a write
  to its ``done`` eventfd (a doorbell for a parent asleep in ``poll``): ``REPLY_OK`` (results
  are in shared memory, no info), ``REPLY_MESSAGE`` (a pickled result waits on the pipe) or
  ``REPLY_ERROR`` (a pickled description of the exception waits on the pipe).

Steps, the hot path, cost one eventfd write (the reply's doorbell) and no pickling when the envs
report no info, while both sides spin (see ``exchange.py``); a side that sleeps is rung awake.
On other processors than x86 every command and reply also goes through its eventfd, whose
read orders memory (loads may be reordered there).
Everything bulky (observations, rewards, flags, actions) lives in shared memory.
"""

from __future__ import annotations

import ctypes
import os
import platform
import select
import signal
import time
import traceback
from multiprocessing.reduction import ForkingPickler
from typing import Any

import numpy as np

from fastsample.engine.shared import copy_batch

CMD_STEP = 1
CMD_MESSAGE = 2
REPLY_OK = 1
REPLY_MESSAGE = 2
REPLY_ERROR = 3

_PR_SET_PDEATHSIG = 1

# Where loads are not reordered with other loads and stores become visible in program order
# (x86-TSO), a command or reply whose counter moved has its code and data in place: it is
# taken without reading the eventfd. Elsewhere the eventfd's read (a system call through the
# kernel's lock of the eventfd) orders the loads that follow it, so every command rings.
ORDERED_LOADS = platform.machine().lower() in ("x86_64", "amd64", "i386", "i486", "i586", "i686", "x86")
# A worker going to sleep sets its flag, then looks at its command counter once more. A
# store and a later load may pass each other (also on x86), so a parent may bump the counter
# without seeing the flag while the worker sees no command: the worker's first sleep is this
# short, and it looks again (the race costs this much; it never hangs).
FIRST_SLEEP_MS = 1


def ctrl_size(num_workers: int) -> int:
    """int64s in ``ctrl``: for each worker a command and a reply counter (``w``, ``K + w``),
    the result slot (``2K``), then a reply code, a command code and an asleep flag per worker
    (``2K + 1 + w``, ``3K + 1 + w``, ``4K + 1 + w``)."""
    return 5 * num_workers + 1


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when the thread that forked it ends (no-op where prctl
    is unavailable). Only used when that thread is the parent's main thread, whose end is the
    parent's: for a worker created by any other thread this would fire when that thread
    exits, with the parent alive (``ParentWatch`` covers every case, this one also kills a
    worker busy in an env step)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class ParentWatch:
    """Tells an idle worker that the process that created the env is gone.

    A pidfd of that process (``pidfd_open``, Linux 5.3+) becomes readable when it exits, for
    whatever reason (SIGKILL included), whichever thread created the env and whichever start
    method ran the worker (a forkserver's worker is the forkserver's child). The worker waits
    on it together with its command eventfd. Without pidfds it falls back to noticing, once a
    second, that it has been reparented."""

    def __init__(self, parent_pid: int, cmd_fd: int):
        self.parent_pid = parent_pid
        self.ppid = os.getppid()
        self.pidfd = None
        try:
            self.pidfd = os.pidfd_open(parent_pid)
        except (AttributeError, OSError):
            pass
        self.poller = select.poll()
        self.poller.register(cmd_fd, select.POLLIN)
        if self.pidfd is not None:
            self.poller.register(self.pidfd, select.POLLIN)
        if not self._parent_alive():
            self._exit()

    def _parent_alive(self) -> bool:
        if self.pidfd is not None:
            return not select.select([self.pidfd], [], [], 0)[0]
        return os.getppid() == self.ppid

    def wait_for_command(self, timeout_ms: int | None = None) -> None:
        """Block until the command eventfd is readable (or ``timeout_ms`` passed); exit if the
        parent dies first."""
        while True:
            wait = None if self.pidfd is not None else 1000
            if timeout_ms is not None:
                wait = timeout_ms if wait is None else min(wait, timeout_ms)
            try:
                events = self.poller.poll(wait)
            except InterruptedError:
                continue
            if any(fd == self.pidfd for fd, _ in events) or (self.pidfd is None and not self._parent_alive()):
                self._exit()
            if events or timeout_ms is not None:
                return

    @staticmethod
    def _exit() -> None:
        os._exit(0)  # the parent is gone: nobody can use our results; shared memory is unlinked


def copy_into(dst: Any, src: Any) -> None:
    """Copy a (possibly nested dict/tuple) batch of arrays into shared views, in place."""
    if isinstance(dst, dict):
        for key in dst:
            copy_into(dst[key], src[key])
    elif isinstance(dst, tuple):
        for d, s in zip(dst, src):
            copy_into(d, s)
    elif dst is not src:
        np.copyto(dst, src, casting="unsafe")


def describe_error(exc: BaseException, sub: Any = None) -> tuple[str, str, str, str, int | None]:
    """What travels back for an exception: module, class name, message, traceback text, and
    the env of the slice that raised it (``sub.failed_env`` where the slice tracks it)."""
    env = getattr(sub, "failed_env", None)
    return (type(exc).__module__, type(exc).__qualname__, str(exc), traceback.format_exc(),
            env if isinstance(env, int) else None)


class SliceServer:
    """Runs the commands for one slice of envs against its sub vector env and shared views.

    Used by worker processes, and by the parent itself for the slice it steps inline. Each
    method returns ``(reply code, payload)`` exactly as the worker sends it back.
    """

    def __init__(self, sub, slot_views: list, obs_in_shared_memory: bool, slot_index: np.ndarray | None = None):
        self.sub = sub
        self.slot_views = slot_views  # this slice's views of each result slot
        self.views = slot_views[0]
        self.slot = 0
        # one shared int64: the slot the next command writes (a memoryview: a Python int per read)
        self.slot_index = memoryview(slot_index) if slot_index is not None else None
        self.obs_in_shared_memory = obs_in_shared_memory
        views = self.views
        # With several result slots the parent hands slot arrays to the caller, who may change
        # them: this private copy of the slice's latest observations is what a reset of other
        # envs carries over (envs outside reset_mask keep their true observations). A slice of
        # Python envs keeps each env's latest observation itself (``write_true_observations``):
        # then this copy is only refreshed by resets, a fallback for envs never reset.
        self.true_obs = copy_batch(views.obs) if (slot_index is not None and obs_in_shared_memory) else None
        self.write_true_obs = getattr(sub, "write_true_observations", None) if self.true_obs is not None else None
        self.copy_true_obs = self.true_obs is not None and self.write_true_obs is None  # after each step
        bind = getattr(sub, "bind_output_buffers", None)
        self.step_bound = None
        if bind is not None and obs_in_shared_memory and views.actions is not None:
            # a NumbaVectorEnv reads actions from and writes results into shared memory itself
            bind(views.obs, views.rewards, views.terminated, views.truncated, views.actions)
            self.step_bound = sub.step_bound

    def _use_slot(self) -> None:
        """Write results into the slot the parent chose (it has carried the current results
        over where a command does not rewrite them all: a reset of some envs)."""
        k = self.slot_index[0]
        if k == self.slot:
            return
        new = self.slot_views[k]
        self.views, self.slot = new, k
        if self.step_bound is not None:
            self.sub.rebind_outputs(new.obs, new.rewards, new.terminated, new.truncated)

    def _publish(self, obs, rewards=None, terminated=None, truncated=None) -> Any:
        views = self.views
        if self.obs_in_shared_memory:
            copy_into(views.obs, obs)
            obs = None
        if rewards is None:
            views.rewards[:] = 0.0
            views.terminated[:] = False
            views.truncated[:] = False
        else:
            copy_into(views.rewards, rewards)
            copy_into(views.terminated, terminated)
            copy_into(views.truncated, truncated)
        return obs

    def step(self, actions=None) -> tuple[int, Any]:
        """A step with ``actions`` (default: the actions in shared memory: checked by the
        parent for kernels, the caller's batch as given for Python envs)."""
        if self.slot_index is not None:
            self._use_slot()
        if actions is None and self.step_bound is not None:
            info = self.step_bound()[4]
            if self.copy_true_obs:
                copy_into(self.true_obs, self.views.obs)
            return (REPLY_MESSAGE, (None, info)) if info else (REPLY_OK, None)
        obs, rewards, terminated, truncated, info = self.sub.step(self.views.actions if actions is None else actions)
        obs = self._publish(obs, rewards, terminated, truncated)
        if self.copy_true_obs:
            copy_into(self.true_obs, self.views.obs)
        if info or obs is not None or actions is not None:
            return REPLY_MESSAGE, (obs, info)
        return REPLY_OK, None

    def message(self, name: str, payload: Any) -> tuple[int, Any]:
        sub = self.sub
        if name == "step":
            return self.step(payload)
        if name == "reset":
            if self.slot_index is not None:
                self._use_slot()
            seeds, options = payload
            if self.true_obs is not None:  # the envs this reset leaves alone
                if self.write_true_obs is None or not self.write_true_obs(self.views.obs):
                    copy_into(self.views.obs, self.true_obs)
            mask = None if options is None else options.get("reset_mask")
            if mask is not None and not mask.any():
                # none of this slice's envs: only put their observations into the new slot
                return REPLY_MESSAGE, (None, {})
            obs, info = sub.reset(seed=seeds, options=options)
            obs = self._publish(obs)
            if self.true_obs is not None:
                copy_into(self.true_obs, self.views.obs)
            return REPLY_MESSAGE, (obs, info)
        if name == "call":
            method, args, kwargs = payload
            return REPLY_MESSAGE, tuple(sub.call(method, *args, **kwargs))
        if name == "get_attr":
            return REPLY_MESSAGE, tuple(sub.get_attr(payload))
        if name == "set_attr":
            attr, values = payload
            sub.set_attr(attr, values)
            return REPLY_MESSAGE, None
        if name == "call_envs":  # fn(env) on some of this slice's env objects
            fn, local = payload
            envs = getattr(sub, "envs", None)
            if envs is None:
                raise TypeError(f"{type(sub).__name__} holds no per-env objects: call_envs needs Python envs")
            return REPLY_MESSAGE, tuple(fn(envs[j]) for j in local)
        if name == "render":
            return REPLY_MESSAGE, tuple(sub.render() or ())
        if name == "close":
            sub.close()
            return REPLY_MESSAGE, None
        raise ValueError(f"unknown worker command {name!r}")


def worker_main(index: int, make_sub, shared, lo: int, hi: int, cmd_fd, done_fd, conn,
                pin_cpu: int | None, obs_in_shared_memory: bool, ctrl_mem, num_workers: int,
                spin_s: float, parent_pid: int | None = None, pdeathsig: bool = True) -> None:
    """Entry point of worker ``index`` (envs ``lo``..``hi-1``).

    ``ctrl_mem`` holds the command and reply counters (see ``ProcessVectorEnv``): before
    blocking on its command eventfd, the worker watches its command counter for ``spin_s``
    seconds, so a command sent soon after the last reply finds it awake."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    if pdeathsig:
        _die_with_parent()
    cmd_fd = int(cmd_fd)
    done_fd = int(done_fd)
    ctrl_array = np.frombuffer(ctrl_mem.buf, dtype=np.int64, count=ctrl_size(num_workers))
    ctrl = memoryview(ctrl_array)  # items as Python ints: a third of NumPy scalars' cost
    done_slot = num_workers + index
    code_slot = 2 * num_workers + 1 + index
    cmd_code_slot = 3 * num_workers + 1 + index
    asleep_slot = 4 * num_workers + 1 + index
    commands_seen = 0

    def reply(code: int, payload: Any = None) -> None:
        # the code, then the counter (a parent spinning on it takes the reply from there, with
        # the code and the results already in place), then the doorbell for a sleeping parent
        if code == REPLY_OK:
            ctrl[code_slot] = code
            ctrl[done_slot] += 1
            os.eventfd_write(done_fd, 1)
            return
        data = ForkingPickler.dumps(payload)  # an unpicklable result raises here, before signalling
        # signal first, then write: the parent reads the pipe while we fill it, so a reply
        # larger than the pipe buffer (rendered frames) cannot deadlock
        ctrl[code_slot] = code
        ctrl[done_slot] += 1
        os.eventfd_write(done_fd, 1)
        conn.send_bytes(data)

    try:
        if pin_cpu is not None:
            import psutil

            psutil.Process().cpu_affinity([pin_cpu])
        server = SliceServer(make_sub(), [shared.views(lo, hi, k) for k in range(shared.num_slots)],
                             obs_in_shared_memory,
                             ctrl_array[2 * num_workers:2 * num_workers + 1] if shared.num_slots > 1 else None)
        reply(REPLY_OK)
    except BaseException as exc:  # report start-up failures instead of dying silently
        reply(REPLY_ERROR, describe_error(exc))
        return

    watch = ParentWatch(parent_pid if parent_pid is not None else os.getppid(), cmd_fd)
    clock = time.perf_counter
    while True:
        if spin_s:
            deadline = clock() + spin_s
            while ctrl[index] == commands_seen and clock() < deadline:
                pass
        if ctrl[index] == commands_seen:  # going to sleep: wake for a command or the parent's end
            ctrl[asleep_slot] = 1  # the parent rings from now on
            timeout_ms = FIRST_SLEEP_MS  # (see FIRST_SLEEP_MS)
            while ctrl[index] == commands_seen:
                watch.wait_for_command(timeout_ms)
                timeout_ms = None
                if ORDERED_LOADS:
                    try:
                        os.eventfd_read(cmd_fd)  # drain the doorbell; the counter is the truth
                    except BlockingIOError:
                        pass
            ctrl[asleep_slot] = 0
        if not ORDERED_LOADS:  # every command rings: its read orders the loads that follow
            while True:
                try:
                    os.eventfd_read(cmd_fd)
                    break
                except BlockingIOError:
                    watch.wait_for_command()
        code = ctrl[cmd_code_slot]
        commands_seen += 1
        try:
            if code == CMD_STEP:
                reply(*server.step())
                continue
            try:
                name, payload = conn.recv()
            except (EOFError, OSError):  # the parent closed its end: it is gone
                os._exit(0)
            if name == "_test_crash":  # fault injection for the test suite
                if payload == "segfault":
                    ctypes.string_at(0)
                os._exit(3)
            reply(*server.message(name, payload))
            if name == "close":
                return
        except Exception as exc:
            try:
                reply(REPLY_ERROR, describe_error(exc, server.sub))
            except OSError:  # nobody to tell: the parent is gone
                os._exit(0)
