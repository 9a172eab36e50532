"""``ProcessVectorEnv``: envs spread over worker processes, results in shared memory.

The same engine runs two kinds of envs (``slices.py``):

* any Python gymnasium env (``ProcessVectorEnv(env_fns, ...)``, a drop-in for
  ``gymnasium.vector.AsyncVectorEnv``): each worker runs a ``PythonEnvSlice`` (a leaner
  ``SyncVectorEnv``) over its slice; actions reach the envs as AsyncVectorEnv hands them over
  (``python_actions.py``);
* fastsample's Numba kernels (``fastsample.make_vec(..., num_workers=K)``): each worker runs a
  ``NumbaVectorEnv`` over its slice, writing straight into shared memory (zero copies); actions
  are checked once per batch (``fastsample.actions``).

Either way worker ``w`` owns envs ``lo_w..hi_w-1``, results are bit-identical to running all
envs in one process with the same seeds and actions, and a step is handed over through counters
in shared memory (an eventfd rings only for a side asleep in the kernel; see ``exchange.py``). This module holds the gymnasium API and its call state (``reset``/``step``/
``call`` and their ``*_async``/``*_wait`` halves, result slots, close); the rest lives in:

* ``exchange.py``: the worker processes (start, signal, wait, record replies, deaths, end);
* ``send_recv.py``: EnvPool-style ``async_reset``/``send``/``recv``;
* ``batches.py``: spaces in shared memory or pickled, joining observations, merging infos;
* ``errors.py``: workers' exceptions as gymnasium's classes, logged as AsyncVectorEnv logs them;
* ``worker.py`` (a worker's loop), ``shared.py`` (shared buffers), ``interrupts.py`` (Ctrl-C).
"""

from __future__ import annotations

import multiprocessing as mp
import sys
from multiprocessing.reduction import ForkingPickler
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.error import AlreadyPendingCallError, ClosedEnvironmentError, NoAsyncCallError
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from fastsample.actions import ActionBuffer
from fastsample.engine import worker as W
from fastsample.engine.batches import array_layout, check_shared_memory, join_obs, place_info
from fastsample.engine.errors import WorkerDiedError, WorkerError
from fastsample.engine.exchange import WorkerExchange, _State, _usable_cpus
from fastsample.engine.interrupts import CallInterrupted, hold_interrupts
from fastsample.engine.python_actions import PythonActions, slice_rows
from fastsample.engine.send_recv import SendRecv
from fastsample.engine.shared import SharedBatch, array_action_dtype, copy_batch
from fastsample.engine.slices import kernel_slices, python_slices, split
from fastsample.output_slots import OutputSlots

_CMD_STEP = W.CMD_STEP
_REPLY_OK = W.REPLY_OK

__all__ = ["CallInterrupted", "ProcessVectorEnv", "WorkerError", "WorkerDiedError"]

_CUSTOM_WORKER = (
    "ProcessVectorEnv cannot use AsyncVectorEnv's custom `worker`: its workers each step a slice of "
    "several envs over a shared-memory protocol of their own, while a `worker` function serves one env "
    "over AsyncVectorEnv's pipe protocol (its commands and shared-memory layout), which no ProcessVectorEnv "
    "worker speaks. To change how an env is stepped or reset, wrap the env in a gymnasium.Wrapper inside "
    "env_fns (autoreset rules: autoreset_mode); to run a custom worker function, use "
    "gymnasium.vector.AsyncVectorEnv."
)


def _check_max_concurrency(max_concurrency: Any) -> None:
    if max_concurrency is not None:
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, (int, np.integer)):
            raise ValueError(f"`max_concurrency` must be an integer or None, got {type(max_concurrency)}.")
        if max_concurrency < 1:
            raise ValueError(f"`max_concurrency` must be a positive or None, got {max_concurrency}.")


def _num_workers(num_workers: Any, max_concurrency: int | None, num_envs: int) -> int:
    """``num_workers`` checked, or its default: ``min(num_envs, usable CPUs, max_concurrency)``."""
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
    return num_workers


def _batch_size(batch_size: Any, num_envs: int, num_workers: int) -> int:
    if batch_size is None:
        return num_envs
    per_worker = num_envs // num_workers
    if not isinstance(batch_size, int) or not 1 <= batch_size <= num_envs:
        raise ValueError(f"batch_size must be an int in 1..num_envs={num_envs}, got {batch_size!r}")
    if batch_size < num_envs and (num_envs % num_workers or batch_size % per_worker):
        raise ValueError(
            f"batch_size={batch_size} < num_envs needs whole workers per batch: num_envs={num_envs} "
            f"must divide evenly over num_workers={num_workers} and batch_size must be a multiple of "
            f"{per_worker} (envs per worker)"
        )
    return batch_size


class ProcessVectorEnv(SendRecv, WorkerExchange, VectorEnv):
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
            waiting caller. ``None`` (default): on for Python envs when ``num_workers >= 2``,
            ``batch_size == num_envs`` and ``num_workers`` >= the CPUs this process may use (so
            with the default ``num_workers`` whenever there are at least as many envs as CPUs),
            where a waiting caller would be one busy process more than there are cores and
            every step would pay for waking and preempting processes; off otherwise.
            ``make_vec(num_workers >= 2)`` turns it on for kernels. The price: an env that
            crashes the interpreter (a segfault in a C extension, ``os._exit``) in that slice
            takes this process down with it, where a worker's crash is a
            :class:`WorkerDiedError`; an env that hangs there cannot be timed out (``*_wait(timeout)``
            counts the time this process spends on its slice, but cannot stop it); and
            ``*_async`` returns at once but the slice is stepped by the ``*_wait`` that follows,
            so only the workers' slices overlap work done in between. Exceptions are reported
            as from a worker. Pass ``inline=False`` to keep every env in a worker process.
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
            raise ValueError(_CUSTOM_WORKER)
        _check_max_concurrency(max_concurrency)
        self.context = context
        self.daemon = daemon
        self.worker = worker
        self.max_concurrency = max_concurrency
        self.observation_mode = observation_mode
        slices = (python_slices(env_fns, observation_mode, self.autoreset_mode) if _sub_factory is None
                  else kernel_slices(_sub_factory, _dummy, observation_mode))
        self._python_envs = slices.python_envs
        num_envs = slices.num_envs
        self.single_observation_space = slices.single_observation_space
        self.single_action_space = slices.single_action_space
        self.metadata = slices.metadata
        self.render_mode = slices.render_mode
        if self._python_envs:
            self.spec = None
        self.metadata["autoreset_mode"] = self.autoreset_mode
        self.num_envs = num_envs
        self.observation_space = (slices.batched_obs[0] if slices.batched_obs is not None
                                  else batch_space(self.single_observation_space, num_envs))
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.copy = bool(copy)
        self.shared_memory = bool(shared_memory)
        # whether observations travel in shared memory (Text and OneOf, which gymnasium keeps in
        # shared memory, travel pickled, per worker batch); raises gymnasium's errors for spaces
        # shared memory cannot hold
        self._obs_shared = self.shared_memory and check_shared_memory(self.single_observation_space)
        self._array_obs = array_layout(self.single_observation_space)
        self._array_actions = array_layout(self.single_action_space)
        num_workers = _num_workers(num_workers, max_concurrency, num_envs)
        self.num_workers = num_workers
        self._bounds = split(num_envs, num_workers)
        self.batch_size = batch_size = _batch_size(batch_size, num_envs, num_workers)
        if inline is None:
            # Python envs: the caller steps slice 0 itself when a waiting caller would be one
            # busy process more than there are cores (see the docstring for the trade-off)
            inline = (self._python_envs and num_workers >= 2 and batch_size == num_envs
                      and num_workers >= _usable_cpus())
        self.inline = inline = bool(inline)

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
        self._scratch_views = self._slot_views[-1]  # (the scratch slot when there are output slots)
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
        self._state = _State.IDLE
        self._broken: str | None = None
        self._reset_done = False
        self._pending_obs: dict[int, Any] = {}
        self._init_exchange(num_workers, inline, spin_us)
        self._closed_workers = False
        try:
            self._start_workers(slices.factory, ctx, inline, pin_workers, daemon)
            if num_slots > 1:
                self._out_slots = OutputSlots([(v.obs, v.rewards, v.terminated, v.truncated) for v in self._slot_views])
                self._out_slots.seal()  # after every view of ours exists
                self._select_slot(self._out_slots.scratch)
        except BaseException:
            self.close(terminate=True)
            raise

    # -- call state and result slots -------------------------------------------------------

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

    def _check_usable(self) -> None:
        if self.closed:
            raise ClosedEnvironmentError(f"{type(self).__name__} is closed")
        if self._broken is not None:
            raise WorkerError(f"{self._broken}; close() this env")

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
        return join_obs(self.single_observation_space, parts, self._array_obs)

    def _infos(self, results: dict[int, tuple[int, Any]]) -> dict[str, Any]:
        infos: dict[str, Any] = {}
        for w in sorted(results):
            code, payload = results[w]
            if code == W.REPLY_MESSAGE and payload is not None and payload[1]:
                lo, hi = self._bounds[w]
                place_info(infos, payload[1], lo, hi, self.num_envs)
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
        else:  # kernels with (checked) Dict/Tuple actions: each worker its rows, pickled
            self._state = _State.WAITING_STEP
            for w in self._order:
                lo, hi = self._bounds[w]
                self._send(w, W.CMD_MESSAGE, ("step", slice_rows(self.single_action_space, actions, lo, hi)))

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
        if slots is not None and len(ready) == self.num_workers:
            for code, _ in ready.values():
                if code != _REPLY_OK:
                    break
            else:  # the common step: every slice answered with its results in shared memory, no info
                ready.clear()
                self._state = _State.IDLE
                if v is not self._scratch_views:  # a slot the caller may keep
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
                slots = self._out_slots
                if slots is not None:
                    slot = slots.free()
                    if self._views is not self._slot_views[slot]:
                        self._select_slot(slot)
                v = self._views
                if loaded is not v.actions:
                    np.copyto(v.actions, loaded, casting="unsafe")
                self._state = _State.WAITING_STEP
                in_flight = self._in_flight
                for w in remote:
                    self._signal(w, _CMD_STEP)
                    in_flight[w] = "step"
                out = None
                local = self._local
                if local is not None:
                    ready = self._ready
                    ready[0] = self._run_local(local.step)
                    # the workers stepped alongside: where every reply is in already, take them
                    # now, in this held section (one section per step instead of two)
                    ctrl, k, seen = self._ctrl_mv, self.num_workers, self._done_seen
                    for w in remote:
                        if ctrl[k + w] <= seen[w]:
                            break
                    else:
                        for w in remote:
                            self._read_signalled(w)
                        if len(ready) == k:
                            out = self._finish_step(range(k))
            except KeyboardInterrupt:
                self._mark_forced("step")
                raise
        if out is not None:
            if held.interrupted:
                held.deliver("step() was interrupted as it finished; it took effect", completed=True, result=out)
            return out
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

    def __del__(self):
        if getattr(self, "_finalizer", None) is not None and not self.closed:
            self.close(terminate=True)

    def __repr__(self) -> str:
        return f"ProcessVectorEnv(num_envs={self.num_envs}, num_workers={self.num_workers})"
