"""Holding Ctrl-C back across the few instructions that must not be cut in two.

Python raises ``KeyboardInterrupt`` in the main thread at whatever bytecode it is running when
SIGINT arrives. Between taking a worker's reply off its counter and recording it, or between
signalling two workers, that leaves an env that has lost a reply (and waits forever) or that
thinks a worker is idle while it steps. Inside :class:`hold_interrupts` a SIGINT is recorded
instead of raised, and the caller decides afterwards, with its state consistent, how to report
it: usually as :class:`CallInterrupted`, which says whether the call took effect.

How: the SIGINT handler is Python's ``default_int_handler`` in almost every program; the first
time a held section runs in the main thread it is replaced by :data:`HANDLER`, which behaves
exactly like it (raises ``KeyboardInterrupt``) outside held sections. A handler the program set
itself is swapped out for the length of each held section and called afterwards with the held
signal. ``SIG_IGN``/``SIG_DFL`` and other threads (which never see ``KeyboardInterrupt``) need
nothing. A second Ctrl-C inside a section marked ``forceable`` (one that runs env code, which
may take long or hang) is not held: it raises at once, and the engine marks the env unusable.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

try:  # the C functions: signal.signal/getsignal add about 1.5 us of enum conversion per call
    import _signal as _sig
except ImportError:  # pragma: no cover - other interpreters
    _sig = signal

_getsignal = _sig.getsignal
_setsignal = _sig.signal
_SIGINT = signal.SIGINT
_default = signal.default_int_handler
_main_ident = threading.main_thread().ident
_get_ident = threading.get_ident


class CallInterrupted(KeyboardInterrupt):
    """Ctrl-C arrived during a fastsample call, and was held until the env was consistent.

    It is a ``KeyboardInterrupt``: code that stops on Ctrl-C still stops. Attributes:

    * ``completed``: the call took effect; ``result`` is what it would have returned.
    * ``pending``: ``"step"``, ``"reset"`` or ``"call"`` when the call was sent to the workers
      and has not finished: ``step_wait()``/``reset_wait()``/``call_wait()`` returns its result
      (the env's ``pending_call`` says the same). Neither: the call did nothing.
    """

    def __init__(self, message: str, *, completed: bool = False, result: Any = None, pending: str | None = None):
        super().__init__(f"KeyboardInterrupt: {message}")
        self.completed = completed
        self.result = result
        self.pending = pending


class _Handler:
    """The SIGINT handler while held sections may run (see the module docstring)."""

    def __init__(self):
        self.depth = 0  # nesting of held sections
        self.forceable = 0  # nesting of forceable ones
        self.pending: tuple[int, Any] | None = None  # (signum, frame) of a held SIGINT
        self.previous: Any = _default  # what to call for a SIGINT outside held sections

    def __call__(self, signum, frame):
        if self.depth == 0:
            return self.previous(signum, frame)
        if self.pending is not None and self.forceable:
            self.pending = None  # a second Ctrl-C while env code runs: do not wait for it
            return self.previous(signum, frame)
        self.pending = (signum, frame)
        return None


HANDLER = _Handler()


class hold_interrupts:
    """``with hold_interrupts() as held: ...``; afterwards ``held.interrupted`` says whether a
    SIGINT arrived inside (the outermost section takes it; nested ones see nothing), and
    :meth:`deliver` runs the program's handler for it. If the block raised, a held SIGINT turns
    the exception into a ``KeyboardInterrupt`` raised from it."""

    __slots__ = ("forceable", "active", "swapped", "saved", "interrupted", "signal", "target")

    def __init__(self, forceable: bool = False):
        self.forceable = forceable
        self.interrupted = False

    def __enter__(self) -> "hold_interrupts":
        self.active = self.swapped = False
        self.interrupted = False
        if _get_ident() != _main_ident:
            return self  # KeyboardInterrupt is only ever raised in the main thread
        h = HANDLER
        current = _getsignal(_SIGINT)
        if current is not h:
            if current is _default:
                h.previous = _default
                _setsignal(_SIGINT, h)  # stays: it behaves as the default handler outside sections
            elif callable(current) and h.depth == 0:
                # the program's own handler: ours only for this section
                self.saved, h.previous = h.previous, current
                _setsignal(_SIGINT, h)
                self.swapped = True
            else:
                return self  # SIG_IGN, SIG_DFL, or a handler we cannot hold back
        h.depth += 1
        if self.forceable:
            h.forceable += 1
        self.active = True
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if not self.active:
            return False
        h = HANDLER
        h.depth -= 1
        if self.forceable:
            h.forceable -= 1
        if h.depth == 0:
            self.signal, h.pending = h.pending, None
            self.interrupted = self.signal is not None
            self.target = h.previous  # the handler the held SIGINT is for
            if self.swapped:
                _setsignal(_SIGINT, h.previous)
                h.previous = self.saved
        if self.interrupted and exc_type is not None and not issubclass(exc_type, KeyboardInterrupt):
            raise KeyboardInterrupt(f"interrupted while raising {exc_type.__name__}: {exc}") from exc
        return False

    def deliver(self, message: str, **kwargs: Any) -> None:
        """Run the program's SIGINT handler for the held signal; a ``KeyboardInterrupt`` it
        raises comes out as :class:`CallInterrupted` (``message``, ``kwargs``)."""
        if not self.interrupted:
            return
        self.interrupted = False
        signum, frame = self.signal
        try:
            self.target(signum, frame)
        except KeyboardInterrupt:
            raise CallInterrupted(message, **kwargs) from None
