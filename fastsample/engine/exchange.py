"""The exchange with the worker processes: starting them, signalling commands, waiting for and
recording their replies, noticing deaths, and ending them.

Protocol (see ``worker.py``): a command is its code in ``ctrl[3K + 1 + w]`` (``CMD_STEP``:
actions are in shared memory; ``CMD_MESSAGE``: a pickled message follows on the pipe), then a
bump of the command counter ``ctrl[w]``, then, only if the worker's flag ``ctrl[4K + 1 + w]``
says it sleeps (or is going to sleep), a write to its command eventfd. A reply is its code in
``ctrl[2K + 1 + w]``, then a bump of the reply counter ``ctrl[K + w]``, then a write to the
worker's done eventfd, a doorbell that wakes this process when it sleeps in ``poll``
(``REPLY_MESSAGE``/``REPLY_ERROR``: a pickled payload follows on the pipe). ``ctrl`` (shared
int64s) also names the result slot the next command writes (``ctrl[2K]``). The counters are
the truth (one reply per command, so a code slot is never overwritten before it is read); the
doorbells' counts mean nothing and are drained by whoever polls them. So a reply seen
on the counter by a spinning parent is taken with no system call (x86: stores become visible
in order, so results and code are in place once the counter moved; elsewhere the parent
reads the doorbell first, a system call that orders memory). The slice this process steps itself (``inline``) answers through the same
bookkeeping: its command runs when a wait collects it (:meth:`WorkerExchange._collect`), or at
once in the fast step.

Interrupt safety. Ctrl-C (KeyboardInterrupt) may arrive at any bytecode. Every change to
the exchange state (signalling workers, reading a reply from its eventfd and recording
it, handing results out) happens inside ``hold_interrupts()``, which holds SIGINT back;
waiting (spinning, poll) happens outside, so Ctrl-C always ends a wait at once. Replies
are recorded in ``_ready`` the moment they are read, and taken from it only together with
the state change that ends the call: after an interrupt at any point the env is either as
before the call, or the call took effect (``CallInterrupted.completed``), or it is still
in flight (``pending_call``), and the matching ``*_wait()`` finishes it.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import select
import threading
import time
import weakref
from enum import Enum
from multiprocessing.reduction import ForkingPickler
from typing import Any, Callable

import numpy as np
from gymnasium.vector.utils import CloudpickleWrapper

from fastsample.engine import worker as W
from fastsample.engine.errors import WorkerDiedError, WorkerError, log_and_raise_last, signal_name
from fastsample.engine.interrupts import CallInterrupted, hold_interrupts
from fastsample.engine.shared import SharedBlock


_ORDERED_LOADS = W.ORDERED_LOADS  # (see worker.py)
ctrl_size = W.ctrl_size


class _State(Enum):
    """The call in progress (``AsyncVectorEnv``'s async state)."""

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


def _allowed_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity mask, as ``taskset``, cgroups cpusets
    and Slurm restrict it), in order; all of ``os.cpu_count()`` where that is unknown."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def _usable_cpus() -> int:
    return len(_allowed_cpus())


class WorkerExchange:
    """The exchange half of ``ProcessVectorEnv`` (a mixin; the env sets ``_bounds``,
    ``_shared``, ``_obs_shared``, ``_state``, ``_broken`` and calls :meth:`_init_exchange`, then
    :meth:`_start_workers`)."""

    def _init_exchange(self, num_workers: int, inline: bool, spin_us: float) -> None:
        # Slice 0 may be served by this process itself (``inline``): it steps while the workers
        # step theirs, so K slices use K cores with K-1 worker processes and no core is spent
        # waiting. Remote slices come first in ``_order`` so they are signalled before the
        # inline slice runs.
        self._local: W.SliceServer | None = None
        self._order = list(range(1, num_workers)) + [0] if inline else list(range(num_workers))
        self._remote = [w for w in self._order if not (inline and w == 0)]  # slices in worker processes
        if not (isinstance(spin_us, (int, float)) and 0 <= spin_us < 1e7):
            raise ValueError(f"spin_us must be a number of microseconds >= 0, got {spin_us!r}")
        # Spinning only pays while every busy process has a core of its own; with more
        # processes than cores a spinning waiter steals the core a worker needs.
        processes = num_workers - (1 if inline else 0) + 1
        self._spin_s = float(spin_us) * 1e-6 if processes <= _usable_cpus() else 0.0
        # ctrl[w] counts commands sent to worker w (a hint for the spinning worker: the command
        # eventfd remains the synchronisation), ctrl[K + w] its replies (the truth, see the
        # module docstring), ctrl[2K] the result slot the next command writes into,
        # ctrl[2K + 1 + w] the code of worker w's last reply
        self._ctrl_mem = SharedBlock(8 * ctrl_size(num_workers), "the workers' counters")
        self._ctrl = np.frombuffer(self._ctrl_mem.buf, dtype=np.int64, count=ctrl_size(num_workers))
        # the same counters as a memoryview: its items are Python ints, read and written in
        # a third of the time of NumPy scalars (the step path reads and bumps them every step)
        self._ctrl_mv = memoryview(self._ctrl)
        self._done_seen = [0] * num_workers  # replies read from each worker's done fd
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
        self._orphans: set[int] = set()  # workers whose reply to an interrupted call is to be dropped
        self._local_pending: Callable[[], tuple[int, Any]] | None = None  # sent to the inline slice, not run yet
        self._finalizer = weakref.finalize(self, WorkerExchange._finalize, self._processes, self._cmd_fds,
                                           self._done_fds, self._conns)

    def _start_workers(self, factory: Callable[[int, int], Callable[[], Any]], ctx, inline: bool,
                       pin_workers: bool, daemon: bool) -> None:
        """Start a worker process per remote slice (and build the inline slice here); wait until
        every one is up, raising the start-up failures as the workers' errors."""
        num_workers = len(self._bounds)
        num_slots = self._shared.num_slots
        cpus = _allowed_cpus()  # pin within the allowed set, never to a CPU we may not use
        # PR_SET_PDEATHSIG fires when the forking *thread* ends: only from the main thread does
        # that mean the parent's end (workers also watch the parent process itself)
        pdeathsig = threading.current_thread() is threading.main_thread()
        for w, (lo, hi) in enumerate(self._bounds):
            if w == 0 and inline:
                continue
            cmd_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)  # the worker drains it
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
                args=(w, CloudpickleWrapper(factory(lo, hi)), self._shared, lo, hi, _Fd(cmd_fd),
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
                sub = factory(lo, hi)()
            except Exception as exc:  # reported with the workers' start-up failures, as theirs are
                self._ready[0] = (W.REPLY_ERROR, W.describe_error(exc))
            else:
                self._local = W.SliceServer(sub, [self._shared.views(lo, hi, k) for k in range(num_slots)],
                                            self._obs_shared,
                                            self._ctrl[2 * num_workers:2 * num_workers + 1] if num_slots > 1 else None)
        starting = [w for w in range(num_workers) if w in self._in_flight]
        self._collect(starting, timeout=120.0)
        self._take(sorted(set(starting) | set(self._ready)))

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
        # the code, the counter (a spinning worker takes the command from there), then the
        # doorbell if the worker sleeps or is going to (see worker.FIRST_SLEEP_MS for the race)
        ctrl, k = self._ctrl_mv, self.num_workers
        ctrl[3 * k + 1 + w] = code
        ctrl[w] += 1
        if ctrl[4 * k + 1 + w] or not _ORDERED_LOADS:
            os.eventfd_write(self._cmd_fd_of[w], 1)

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
                    os.eventfd_read(fd)  # drain the doorbell; the counter says whether a reply is in
                except BlockingIOError:  # drained by another read
                    pass
                if self._ctrl_mv[self.num_workers + w] > self._done_seen[w]:
                    self._take_reply(w)
                    got.add(w)
            for fd, w in dead:
                if w not in got and self._ctrl_mv[self.num_workers + w] > self._done_seen[w]:
                    self._take_reply(w)  # it replied, then died before it rang the doorbell
                    got.add(w)
                if w in self._in_flight and w not in got:
                    self._raise_died(w)
                self._poll.unregister(fd)
                if self._broken is None and not self._closed_workers:
                    lo, hi = self._bounds[w]
                    self._broken = f"worker {w} (envs {lo}..{hi - 1}) died ({signal_name(self._proc_of[w].exitcode)})"

    def _raise_died(self, w: int) -> None:
        proc = self._proc_of[w]
        proc.join(timeout=1.0)
        lo, hi = self._bounds[w]
        self._broken = f"worker {w} (envs {lo}..{hi - 1}) died ({signal_name(proc.exitcode)})"
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

    def _take_reply(self, w: int) -> None:
        """Record worker ``w``'s reply, whose counter has moved (held)."""
        self._done_seen[w] += 1
        code = self._ctrl_mv[2 * self.num_workers + 1 + w]
        payload = None
        if code != W.REPLY_OK:
            try:
                payload = self._conns[w].recv()
            except (EOFError, OSError):  # died while sending its reply
                self._raise_died(w)
        self._in_flight.pop(w, None)
        self._ready[w] = (code, payload)

    def _raise_first_error(self, results: dict[int, tuple[int, Any]]) -> None:
        """Raise the error of the last env (in env order) that raised, after logging every
        error as ``AsyncVectorEnv`` does (see ``errors.log_and_raise_last``). Unlike
        AsyncVectorEnv's, the workers stay up: the env remains usable."""
        if any(code == W.REPLY_ERROR for code, _ in results.values()):
            self._state = _State.IDLE
            log_and_raise_last(results, self._bounds)

    def _reply_signalled(self, w: int) -> bool:
        """Whether worker ``w``'s step reply is in (its counter moved), spinning up to the spin
        time for it (interruptible: nothing changes here)."""
        ctrl, slot, seen = self._ctrl_mv, self.num_workers + w, self._done_seen[w]
        if self._spin_s:
            clock = time.perf_counter
            deadline = clock() + self._spin_s
            while ctrl[slot] == seen:
                if clock() > deadline:
                    return False
        return ctrl[slot] > seen

    def _read_signalled(self, w: int) -> None:
        """Record the reply :meth:`_reply_signalled` saw (held). On x86 straight off the
        counter (the doorbell is left to the next poll, which drains it); elsewhere after the
        doorbell's read, which orders memory (a doorbell not rung yet: the caller waits for
        it with _collect)."""
        if not _ORDERED_LOADS:
            try:
                os.eventfd_read(self._done_fd_of[w])
            except BlockingIOError:
                return
        self._take_reply(w)

    def _spin_for_replies(self, waiting: set[int], remaining: float | None) -> None:
        """Busy-poll the reply counters briefly, so a reply that comes soon is read without
        the parent having gone to sleep."""
        k = self.num_workers
        ctrl, seen = self._ctrl_mv, self._done_seen
        spin = self._spin_s if remaining is None else min(self._spin_s, remaining)
        deadline = time.perf_counter() + spin
        remote = [w for w in waiting if w in self._in_flight]
        while time.perf_counter() < deadline:
            for w in remote:
                if ctrl[k + w] != seen[w]:  # a reply
                    return

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
