"""EnvPool-style asynchronous stepping: ``async_reset()``, then loop ``obs, rew, term, trunc,
info = env.recv()`` and ``env.send(actions, info["env_id"])``. ``recv`` returns the first
``batch_size`` envs whose workers are done, so the policy works on one batch while the workers
step the others (double buffering with two batches)."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.error import AlreadyPendingCallError, NoAsyncCallError
from gymnasium.vector.utils import batch_space

from fastsample.actions import ActionBuffer
from fastsample.engine import worker as W
from fastsample.engine.batches import join_obs, place_info
from fastsample.engine.exchange import _State
from fastsample.engine.interrupts import hold_interrupts
from fastsample.engine.python_actions import ActionItems
from fastsample.engine.shared import concat_batches, slice_batch


class SendRecv:
    """The ``send``/``recv`` half of ``ProcessVectorEnv`` (a mixin over its exchange)."""

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
        py = self._py_actions
        if py is not None:  # Python envs: each gets its element of the batch, unchecked
            loaded = actions
            if not py.fits(actions, len(ids)):  # one message per worker, its envs' elements
                items = py.items(actions, batch_space(self.single_action_space, len(ids)), len(ids))
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
            obs = concat_batches([slice_batch(v.obs, lo, hi) for lo, hi in lo_hi])
        else:
            obs = join_obs(self.single_observation_space, [results[w][1][0] for w in taken], self._array_obs)
        rewards = np.concatenate([v.rewards[lo:hi] for lo, hi in lo_hi])
        terminated = np.concatenate([v.terminated[lo:hi] for lo, hi in lo_hi])
        truncated = np.concatenate([v.truncated[lo:hi] for lo, hi in lo_hi])
        infos: dict[str, Any] = {}
        offset = 0
        for w in taken:
            lo, hi = self._bounds[w]
            code, payload = results[w]
            if code == W.REPLY_MESSAGE and payload is not None and payload[1]:
                place_info(infos, payload[1], offset, offset + hi - lo, len(ids))
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
