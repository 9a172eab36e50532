"""Interrupt soak: random Ctrl-Cs (SIGINT) across step/reset/send/recv, and the env must survive.

``python -m bench.interrupt_soak [--interrupts 1000] [--seed 0] [--kinds ...]`` (local, not CI:
it takes a few minutes). Each kind of env gets its share of the interrupts:

* ``in-process``: ``make_vec("CartPole-v1", 8)`` (``NumbaVectorEnv``);
* ``kernel-workers``: ``make_vec(..., num_workers=2)`` (this process steps slice 0 inline);
* ``kernel-worker``: ``make_vec(..., num_workers=1)`` (one worker process);
* ``python-workers``: ``ProcessVectorEnv`` of 8 gymnasium CartPoles on 2 workers;
* ``python-inline``: the same with ``inline=True``;
* ``kernel-send-recv`` / ``python-send-recv``: the EnvPool-style ``send``/``recv`` API with two
  halves in flight.

Every call runs under a 5 s watchdog (a hang ends the run with a traceback of every thread), and
gets a SIGINT sent to the main thread at a random time within about 1.5x its usual duration,
so interrupts land before, inside and just after calls (a POSIX timer sends it, precise to
microseconds). After each one the env is recovered as
a user would: a ``CallInterrupted`` that completed carries the result; a call still in flight
(``pending_call``) is finished with ``step_wait()``/``reset_wait()``; ``send``/``recv`` go on
with the envs each half is known to hold. Results are compared bit for bit with a reference
env (``NumbaVectorEnv`` or ``SyncVectorEnv``) that performs exactly the calls that took effect.
When an interrupt leaves it unknown whether a call took effect (a plain ``KeyboardInterrupt``
after the call returned, before its result was stored, or before it began), one uninterrupted
probe step tells: it must match the reference with the call applied or without it.

Reported: interrupts, how each was recovered, hangs (calls over 5 s), lost envs (an env that
raised anything but the interrupt afterwards), wrong results, and /dev/shm entries left. Exit
status 1 unless all are zero.
"""

from __future__ import annotations

import argparse
import ctypes
import faulthandler
import functools
import os
import random
import signal
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable

import gymnasium as gym
import numpy as np

import fastsample
from fastsample import CallInterrupted

N = 8
WATCHDOG_S = 5.0


class SoakFailure(AssertionError):
    pass


@dataclass
class Stats:
    interrupts: int = 0
    outcomes: Counter = field(default_factory=Counter)
    hangs: int = 0
    lost: int = 0
    wrong: int = 0
    calls: int = 0
    slowest_s: float = 0.0
    notes: list = field(default_factory=list)

    def merge(self, other: "Stats") -> None:
        self.interrupts += other.interrupts
        self.outcomes.update(other.outcomes)
        self.hangs += other.hangs
        self.lost += other.lost
        self.wrong += other.wrong
        self.calls += other.calls
        self.slowest_s = max(self.slowest_s, other.slowest_s)
        self.notes += other.notes


def _noop() -> None:
    pass


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class _Sigevent(ctypes.Structure):  # Linux layout: sigval, signo, notify, then padding to 64 bytes
    _fields_ = [("sigev_value", ctypes.c_void_p), ("sigev_signo", ctypes.c_int), ("sigev_notify", ctypes.c_int),
                ("_pad", ctypes.c_int * 12)]


class SigintTimer:
    """A POSIX timer (``timer_create``) that sends this process SIGINT after a delay, with
    microsecond precision: interrupts land inside calls of a few microseconds, not only after
    them (a Python timer thread takes longer than that to wake up)."""

    CLOCK_MONOTONIC = 1
    SIGEV_SIGNAL = 0

    def __init__(self):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(29, 1, 0, 0, 0)  # PR_SET_TIMERSLACK: 1 ns instead of 50 us, so the timer fires on time
        self._create, self._settime, self._gettime = libc.timer_create, libc.timer_settime, libc.timer_gettime
        self._id = ctypes.c_void_p()
        ev = _Sigevent(sigev_signo=signal.SIGINT, sigev_notify=self.SIGEV_SIGNAL)
        if self._create(self.CLOCK_MONOTONIC, ctypes.byref(ev), ctypes.byref(self._id)) != 0:
            raise OSError(ctypes.get_errno(), "timer_create failed")

    def arm(self, delay: float) -> None:
        ns = max(1, int(delay * 1e9))  # 0 would disarm
        spec = _Itimerspec(it_value=_Timespec(ns // 1_000_000_000, ns % 1_000_000_000))
        self._settime(self._id, 0, ctypes.byref(spec), None)

    def disarm(self) -> bool:
        """Stop the timer; True if it had already fired."""
        left = _Itimerspec()
        self._gettime(self._id, ctypes.byref(left))
        self._settime(self._id, 0, ctypes.byref(_Itimerspec()), None)
        return left.it_value.tv_sec == 0 and left.it_value.tv_nsec == 0


_TIMER: SigintTimer | None = None


def interrupted_call(fn: Callable[[], Any], delay: float | None, stats: Stats):
    """Run ``fn`` with a SIGINT sent to this process after ``delay`` seconds (None: none),
    under the watchdog. Returns ``(result or None, KeyboardInterrupt or None, fired)``; a
    SIGINT that fires as ``fn`` returns is caught here too, never in the caller's code."""
    global _TIMER
    if _TIMER is None:
        _TIMER = SigintTimer()
    timer = _TIMER
    result = exc = None
    fired = False
    faulthandler.dump_traceback_later(WATCHDOG_S, exit=True)  # a hang ends the run, loudly
    t0 = time.perf_counter()
    try:
        try:
            if delay is not None:
                timer.arm(delay)
            result = fn()
        finally:
            if delay is not None:
                fired = timer.disarm()
            for _ in range(3):  # a SIGINT that has fired is raised by now, inside this try
                _noop()
    except KeyboardInterrupt as e:
        exc = e
    finally:
        faulthandler.cancel_dump_traceback_later()
    elapsed = time.perf_counter() - t0
    stats.calls += 1
    stats.slowest_s = max(stats.slowest_s, elapsed)
    if elapsed > WATCHDOG_S:
        stats.hangs += 1
    return result, exc, fired or exc is not None, elapsed


def timed_call(fn: Callable[[], Any], stats: Stats) -> tuple[Any, float]:
    """``fn()`` through :func:`interrupted_call` with a timer armed far away: how long a call
    takes from arming to the end, the range the interrupts are drawn from."""
    result, exc, _, elapsed = interrupted_call(fn, 60.0, stats)
    if exc is not None:
        raise exc
    return result, elapsed


class Durations:
    """How long each kind of call takes lately (median of the last 50 uninterrupted ones): the
    interrupts are drawn from 0..1.5x that, so they land inside calls however the load on the
    machine changes."""

    def __init__(self):
        self.samples: dict[str, deque] = {}

    def add(self, kind: str, seconds: float) -> None:
        self.samples.setdefault(kind, deque(maxlen=50)).append(seconds)

    def __getitem__(self, kind: str) -> float:
        return float(np.median(self.samples[kind]))


def _snap(result) -> tuple:
    if isinstance(result, tuple) and len(result) == 2:  # reset: (obs, info)
        return (np.array(result[0], copy=True),)
    return tuple(np.array(x, copy=True) for x in result[:4])


def _same(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y)
                                    for x, y in zip(a, b))


# -- synchronous calls: step and reset ------------------------------------------------------------


class SyncSoak:
    """One env and its reference, driven through step() and reset() with interrupts."""

    def __init__(self, make_env, make_ref, stats: Stats, rng: random.Random, name: str):
        self.env = make_env()
        self.make_ref = make_ref
        self.ref = make_ref()
        self.log: list[tuple] = []  # every call that took effect, to rebuild the reference
        self.stats, self.rng, self.name = stats, rng, name
        self.np_rng = np.random.default_rng(rng.randrange(2**32))
        self.durations = Durations()

    def close(self):
        self.env.close()
        self.ref.close()

    # the calls, on the env under test or on a reference
    @staticmethod
    def apply(env, op):
        kind, arg = op
        if kind == "step":
            return env.step(arg)
        if kind == "reset_seed":
            return env.reset(seed=arg)
        return env.reset(options={"reset_mask": arg.copy()})

    def random_op(self):
        r = self.rng.random()
        if r < 0.75:
            return ("step", self.np_rng.integers(0, 2, N))
        if r < 0.95:
            mask = self.np_rng.random(N) < 0.4
            mask[self.rng.randrange(N)] = True
            return ("reset_mask", mask)
        return ("reset_seed", self.rng.randrange(1000))

    def measure(self):
        self.expect(self.apply(self.env, ("reset_seed", 0)), ("reset_seed", 0))
        for kind in ("step", "reset_mask"):
            for _ in range(30):
                op = ("step", self.np_rng.integers(0, 2, N)) if kind == "step" else self.random_op_of("reset_mask")
                res, elapsed = timed_call(lambda: self.apply(self.env, op), self.stats)
                self.durations.add(kind, elapsed)
                self.expect(res, op)
        for _ in range(5):
            op = self.random_op_of("reset_seed")
            res, elapsed = timed_call(lambda: self.apply(self.env, op), self.stats)
            self.durations.add("reset_seed", elapsed)
            self.expect(res, op)

    def random_op_of(self, kind):
        while True:
            op = self.random_op()
            if op[0] == kind:
                return op

    def expect(self, result, op) -> None:
        """``op`` took effect with ``result``: the reference must agree."""
        want = _snap(self.apply(self.ref, op))
        self.log.append(op)
        if not _same(want, _snap(result)):
            self.stats.wrong += 1
            self.stats.notes.append(f"{self.name}: wrong result for {op[0]} (call {len(self.log)})")
            raise SoakFailure(f"{self.name}: wrong result for {op[0]}")

    def rebuilt(self, extra=()):
        ref = self.make_ref()
        for op in [*self.log, *extra]:
            self.apply(ref, op)
        return ref

    def one(self):
        op = self.random_op()
        delay = self.rng.uniform(0, 1.5 * self.durations[op[0]])
        if self.rng.random() < 0.1:
            delay = 0.0
        res, exc, fired, elapsed = interrupted_call(lambda: self.apply(self.env, op), delay, self.stats)
        if not fired:
            self.durations.add(op[0], elapsed)
            self.expect(res, op)
            return
        self.stats.interrupts += 1
        if res is not None:  # the call returned; the interrupt came after
            self.stats.outcomes["after the call"] += 1
            self.expect(res, op)
            return
        if exc is None:
            self.stats.outcomes["handled, no KeyboardInterrupt"] += 1  # not expected with the default handler
            raise SoakFailure(f"{self.name}: a SIGINT fired but nothing was raised or returned")
        if isinstance(exc, CallInterrupted) and exc.completed:
            self.stats.outcomes["CallInterrupted, completed (result attached)"] += 1
            self.expect(exc.result, op)
            return
        pending = getattr(self.env, "pending_call", None)
        if pending is not None:
            self.stats.outcomes[f"in flight, finished with {pending}_wait()"] += 1
            wait = self.env.step_wait if pending == "step" else self.env.reset_wait
            res, exc2, _, _ = interrupted_call(wait, None, self.stats)
            self.expect(res, op)
            return
        # did it take effect? one uninterrupted probe step tells
        resolved = "plain KeyboardInterrupt, resolved by a probe step: "
        probe = ("step", self.np_rng.integers(0, 2, N))
        got, exc2, _, _ = interrupted_call(lambda: self.apply(self.env, probe), None, self.stats)
        got = _snap(got)
        without = _snap(self.apply(self.ref, probe))
        applied_ref = self.rebuilt([op])
        with_op = _snap(self.apply(applied_ref, probe))
        if _same(got, with_op):
            self.stats.outcomes[resolved + "it took effect"] += 1
            self.ref.close()
            self.ref = applied_ref
            self.log += [op, probe]
        elif _same(got, without):
            self.stats.outcomes[resolved + "it did nothing"] += 1
            applied_ref.close()
            self.log.append(probe)
        else:
            applied_ref.close()
            self.stats.wrong += 1
            raise SoakFailure(f"{self.name}: after an interrupted {op[0]} the env matches neither outcome")


# -- send / recv ------------------------------------------------------------------------------------


class SendRecvSoak:
    """``send``/``recv`` with two halves of envs, each compared with its own reference."""

    def __init__(self, make_env, make_half_ref, stats: Stats, rng: random.Random, name: str):
        self.env = make_env()
        half = N // 2
        self.halves = [np.arange(h * half, (h + 1) * half) for h in range(2)]
        self.refs = [make_half_ref(h) for h in range(2)]
        self.stats, self.rng, self.name = stats, rng, name
        self.np_rng = np.random.default_rng(rng.randrange(2**32))
        self.expected: dict[int, tuple | None] = {}
        self.held: set[int] = set()
        self.durations = Durations()

    def close(self):
        self.env.close()
        for r in self.refs:
            r.close()

    def worker_busy(self, h) -> bool:
        return h in self.env._in_flight or h in self.env._ready  # bench-only look inside

    def start(self):
        self.env.async_reset(seed=0)
        for h in range(2):
            self.expected[h] = _snap(self.refs[h].reset(seed=h * (N // 2)))
        for _ in range(30):
            res, elapsed = timed_call(self.env.recv, self.stats)
            self.recv_checked(res)
            self.durations.add("recv", elapsed)
            h = next(iter(self.held))
            actions = self.actions()
            _, elapsed = timed_call(lambda: self.env.send(actions, self.halves[h]), self.stats)
            self.durations.add("send", elapsed)
            self.send_effect(h, actions)

    def actions(self):
        return self.np_rng.integers(0, 2, N // 2)

    def recv_checked(self, result) -> None:
        ids = result[4]["env_id"]
        h = int(ids[0]) // (N // 2)
        if not np.array_equal(ids, self.halves[h]):
            raise SoakFailure(f"{self.name}: recv returned env_ids {ids}")
        want = self.expected.pop(h)
        got = _snap(result)
        got = got[:1] if len(want) == 1 else got  # after a reset only observations are compared
        if not _same(want, got):
            self.stats.wrong += 1
            raise SoakFailure(f"{self.name}: wrong recv result for half {h}")
        self.held.add(h)

    def send_effect(self, h, actions):
        self.held.discard(h)
        self.expected[h] = _snap(self.refs[h].step(actions))

    def one(self):
        can_recv = len(self.held) < 2
        if self.held and (not can_recv or self.rng.random() < 0.5):
            h = self.rng.choice(sorted(self.held))
            actions = self.actions()
            delay = self.rng.uniform(0, 1.5 * self.durations["send"])
            _, exc, fired, elapsed = interrupted_call(lambda: self.env.send(actions, self.halves[h]), delay,
                                                      self.stats)
            if fired:
                self.stats.interrupts += 1
            else:
                self.durations.add("send", elapsed)
            if exc is None or self.worker_busy(h):
                if fired:
                    self.stats.outcomes["send: took effect"] += 1
                self.held.discard(h)
                self.expected[h] = _snap(self.refs[h].step(actions))
            else:
                self.stats.outcomes["send: did nothing"] += 1
            return
        before = {h for h in range(2) if self.worker_busy(h)}
        delay = self.rng.uniform(0, 1.5 * self.durations["recv"])
        res, exc, fired, elapsed = interrupted_call(self.env.recv, delay, self.stats)
        if fired:
            self.stats.interrupts += 1
        else:
            self.durations.add("recv", elapsed)
        if res is None and isinstance(exc, CallInterrupted) and exc.completed:
            res = exc.result
        if res is not None:
            if fired:
                self.stats.outcomes["recv: completed"] += 1
            self.recv_checked(res)
            return
        gone = [h for h in before if not self.worker_busy(h)]
        if gone:  # taken, and the interrupt came before the caller stored them: results lost
            self.stats.outcomes["recv: completed, result lost to a plain KeyboardInterrupt"] += 1
            for h in gone:
                self.expected.pop(h)
                self.held.add(h)
        else:
            self.stats.outcomes["recv: nothing taken (recv again)"] += 1


# -- the env kinds ------------------------------------------------------------------------------------


def _kernel(**kw):
    env = fastsample.make_vec("CartPole-v1", N, seed=0, **kw)
    return env


def _kernel_ref():
    return fastsample.make_vec("CartPole-v1", N, seed=0, copy=False)


def _py_fns(n):
    return [functools.partial(gym.make, "CartPole-v1") for _ in range(n)]


def _python(**kw):
    return fastsample.ProcessVectorEnv(_py_fns(N), num_workers=2, **kw)


def _python_ref():
    return gym.vector.SyncVectorEnv(_py_fns(N))


def _kernel_half_ref(h):
    return fastsample.make_vec("CartPole-v1", N // 2, seed=h * (N // 2), copy=False)


def _python_half_ref(h):
    return gym.vector.SyncVectorEnv(_py_fns(N // 2))


KINDS: dict[str, tuple[str, Callable, Callable]] = {
    "in-process": ("sync", _kernel, _kernel_ref),
    "kernel-workers": ("sync", functools.partial(_kernel, num_workers=2), _kernel_ref),
    "kernel-worker": ("sync", functools.partial(_kernel, num_workers=1), _kernel_ref),
    "python-workers": ("sync", functools.partial(_python, inline=False), _python_ref),
    "python-inline": ("sync", functools.partial(_python, inline=True), _python_ref),
    "kernel-send-recv": ("async", functools.partial(_kernel, num_workers=2, batch_size=N // 2), _kernel_half_ref),
    "python-send-recv": ("async", functools.partial(_python, batch_size=N // 2), _python_half_ref),
}


def soak(kind: str, interrupts: int, seed: int = 0) -> Stats:
    """Run ``kind`` until ``interrupts`` SIGINTs have landed; raises ``SoakFailure`` on a
    wrong result, and counts lost envs (any other exception) in the stats."""
    style, make_env, make_ref = KINDS[kind]
    stats = Stats()
    rng = random.Random(f"{kind}-{seed}")
    runner = (SyncSoak if style == "sync" else SendRecvSoak)(make_env, make_ref, stats, rng, kind)
    try:
        if style == "sync":
            runner.measure()
        else:
            runner.start()
        guard = 0
        while stats.interrupts < interrupts:
            guard += 1
            if guard > 50 * interrupts + 100:
                raise SoakFailure(f"{kind}: interrupts do not land")
            try:
                runner.one()
            except SoakFailure:
                raise
            except Exception as exc:  # the env is lost: anything but the interrupt itself
                stats.lost += 1
                stats.notes.append(f"{kind}: env lost: {type(exc).__name__}: {exc}")
                raise SoakFailure(stats.notes[-1]) from exc
    finally:
        runner.close()
    return stats


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interrupts", type=int, default=1000, help="SIGINTs in all, shared over the kinds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kinds", nargs="*", default=list(KINDS), choices=list(KINDS))
    args = parser.parse_args(argv)
    total = Stats()
    shm_before = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    share = -(-args.interrupts // len(args.kinds))
    t0 = time.monotonic()
    failed = False
    for kind in args.kinds:
        try:
            stats = soak(kind, share, args.seed)
        except SoakFailure as exc:
            print(f"{kind}: FAILED: {exc}", flush=True)
            failed = True
            continue
        total.merge(stats)
        print(f"{kind:18s} interrupts {stats.interrupts:5d}  calls {stats.calls:6d}  slowest call "
              f"{stats.slowest_s * 1e3:7.1f} ms  hangs {stats.hangs}  lost {stats.lost}  wrong {stats.wrong}",
              flush=True)
        for outcome, count in sorted(stats.outcomes.items()):
            print(f"    {count:5d}  {outcome}")
    print(f"total: {total.interrupts} interrupts, {total.calls} calls in {time.monotonic() - t0:.0f} s; "
          f"hangs {total.hangs}, envs lost {total.lost}, wrong results {total.wrong}; slowest call "
          f"{total.slowest_s * 1e3:.1f} ms (watchdog {WATCHDOG_S:.0f} s)")
    shm_left = (set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()) - shm_before
    shm_left = {name for name in shm_left if name.startswith(f"pym-{os.getpid()}-")}  # ours only
    print(f"/dev/shm entries left by this run: {len(shm_left)}")
    ok = not failed and total.hangs == 0 and total.lost == 0 and total.wrong == 0 and not shm_left
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
