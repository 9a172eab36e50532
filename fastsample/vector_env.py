"""``NumbaVectorEnv``: a real ``gymnasium.vector.VectorEnv`` over a batched Numba kernel.

One Python call steps every env: the kernel writes into preallocated arrays, and the only
per-step Python work is validating the actions and copying the results out (skip the copy
with ``copy=False``). Autoreset, time limits and seeding follow ``SyncVectorEnv`` exactly.
"""

from __future__ import annotations

import numbers
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.error import ClosedEnvironmentError, ResetNeeded
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs_numba import core, rng as rng_mod
from envs_numba.core import EnvKernel
from fastsample.actions import ActionBuffer
from fastsample.engine.interrupts import hold_interrupts
from fastsample.output_slots import OutputSlots

__all__ = ["NumbaVectorEnv", "parse_autoreset_mode"]


class InvalidSeed(gym.error.Error, ValueError):
    """A seed that is not a non-negative integer (gymnasium raises ``gym.error.Error``)."""


def parse_autoreset_mode(mode: AutoresetMode | str) -> AutoresetMode:
    """Accept the enum or its string value (``"NextStep"``, ``"SameStep"``, ``"Disabled"``)."""
    if isinstance(mode, AutoresetMode):
        return mode
    try:
        return AutoresetMode(mode)
    except ValueError:
        valid = [m.value for m in AutoresetMode]
        raise ValueError(f"autoreset_mode must be an AutoresetMode or one of {valid}, got {mode!r}") from None


def _check_seed_value(seed: Any) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be a non-negative int or None, got {seed!r} ({type(seed).__name__})")
    if seed < 0:
        raise InvalidSeed(f"seed must be a non-negative int, got {seed}")
    return int(seed)


def check_seed_list(seed: Any, num_envs: int) -> list[int | None]:
    """``SyncVectorEnv``'s seed rules: None -> all None, int -> seed + i, list -> as is."""
    if seed is None:
        return [None] * num_envs
    if isinstance(seed, numbers.Integral) and not isinstance(seed, (bool, np.bool_)):
        base = _check_seed_value(seed)
        return [base + i for i in range(num_envs)]
    if isinstance(seed, (list, tuple, np.ndarray)):
        seeds = [_check_seed_value(s) for s in seed]
        if len(seeds) != num_envs:
            raise ValueError(
                f"If seeds are passed as a list the length must match num_envs={num_envs} "
                f"but got length={len(seeds)}."
            )
        return seeds
    raise TypeError(f"seed must be a non-negative int, None, or a list of num_envs={num_envs} such, got {seed!r}")


def check_reset_mask(mask: Any, num_envs: int) -> None:
    """``SyncVectorEnv``'s ``reset_mask`` checks, with its messages."""
    if not isinstance(mask, np.ndarray):
        raise TypeError(f"`options['reset_mask']` must be a numpy array, got {type(mask)}")
    if mask.shape != (num_envs,):
        raise ValueError(f"`options['reset_mask']` must have shape `({num_envs},)`, got {mask.shape}")
    if mask.dtype != np.bool_:
        raise TypeError(f"`options['reset_mask']` must have `dtype=np.bool_`, got {mask.dtype}")
    if not mask.any():
        raise ValueError(
            f"`options['reset_mask']` must contain a boolean array with at least one True value, got reset_mask={mask}"
        )


class NumbaVectorEnv(VectorEnv):
    """``num_envs`` copies of one :class:`~envs_numba.core.EnvKernel` environment, stepped together.

    Args:
        kernel: the environment family (``envs_numba.KERNELS[id]``).
        num_envs: number of sub-environments.
        seed: seeds the envs' random streams now (env ``i`` gets ``seed + i``, or ``seed[i]``
            for a list), so a first ``reset()`` equals gymnasium's ``reset(seed=seed)``.
            ``None``: fresh entropy at the first reset.
        autoreset_mode: ``AutoresetMode`` or its string value.
        max_episode_steps: time limit; ``None`` takes the registered default.
        render_mode: ``None`` or ``"rgb_array"`` (``render()`` returns one frame per env).
        copy: return fresh arrays (default, like ``SyncVectorEnv``); ``False`` returns views
            of the internal buffers, overwritten by the next ``step``/``reset``.
        **env_kwargs: the single env's constructor kwargs (e.g. ``g`` for Pendulum).
    """

    def __init__(
        self,
        kernel: EnvKernel,
        num_envs: int,
        *,
        seed: int | list[int | None] | None = None,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
        copy: bool = True,
        **env_kwargs: Any,
    ):
        if isinstance(num_envs, bool) or not isinstance(num_envs, numbers.Integral):
            raise TypeError(f"num_envs must be an int, got {num_envs!r}")
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if max_episode_steps is None:
            max_episode_steps = kernel.max_episode_steps
        if max_episode_steps is not None and (
            isinstance(max_episode_steps, bool)
            or not isinstance(max_episode_steps, numbers.Integral)
            or max_episode_steps < 1
        ):
            raise ValueError(f"max_episode_steps must be a positive int or None, got {max_episode_steps!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")

        core.ensure_self_checked()  # never hand out flags from miscompiled bookkeeping
        n = int(num_envs)
        self.kernel = kernel
        self.num_envs = n
        self.autoreset_mode = parse_autoreset_mode(autoreset_mode)
        self.max_episode_steps = max_episode_steps
        self.render_mode = render_mode
        self.copy = bool(copy)
        self.env_kwargs = dict(env_kwargs)
        self._params = np.ascontiguousarray(kernel.make_params(**env_kwargs), dtype=np.float64)
        self._default_bounds = np.ascontiguousarray(kernel.reset_bounds(None), dtype=np.float64)
        self.metadata = {
            "render_modes": ["rgb_array"],
            "render_fps": kernel.render_fps,
            "autoreset_mode": self.autoreset_mode,
        }

        self.single_observation_space = kernel.observation_space
        self.single_action_space = kernel.action_space
        self.observation_space = batch_space(self.single_observation_space, n)
        self.action_space = batch_space(self.single_action_space, n)

        obs_space = self.single_observation_space
        # env i is column i; the rows are padded (see core.state_columns) against cache conflicts
        self._state = np.zeros((kernel.state_dim, core.state_columns(n)), dtype=np.float64)
        self._rng = rng_mod.new_streams(n)
        self._seeded = np.zeros(n, dtype=np.bool_)
        self._entropy: list[Any] = [None] * n
        # with copy=True, step results go to OutputSlots: handed out as they are, reused only
        # once the caller holds none of them (no copy per step; see fastsample.output_slots)
        slot_count = 3 if self.copy else 1
        slots = [(np.zeros((n, *obs_space.shape), dtype=obs_space.dtype), np.zeros(n, dtype=np.float64),
                  np.zeros(n, dtype=np.bool_), np.zeros(n, dtype=np.bool_)) for _ in range(slot_count)]
        self._out_slots = OutputSlots(slots) if self.copy else None
        if self._out_slots is not None:
            self._out_slots.seal()
        self._obs, self._rewards, self._terminated, self._truncated = slots[0]
        # copy=True hands the result arrays themselves to the caller, who may change them (in
        # place normalisation): a reset of some envs takes the others' observations from this
        # private copy of the latest ones, which nobody outside ever holds, or rebuilds them
        # from the state where the kernel can (kernel.observe: no copy per step)
        self._observe = kernel.observe
        self._true_obs = np.zeros_like(self._obs) if self.copy and self._observe is None else None
        # for the engine's slice server: the latest observations on demand (see below)
        self.write_true_observations = self._write_true_observations if self._observe is not None else None
        self._elapsed = np.zeros(n, dtype=np.int64)
        self._pending = np.zeros(n, dtype=np.bool_)  # finished, reset at the next step (NEXT_STEP)
        self._step_mask = np.zeros(n, dtype=np.bool_)
        self._all = np.ones(n, dtype=np.bool_)
        if not isinstance(self.single_action_space, (gym.spaces.Discrete, gym.spaces.Box)):
            raise TypeError(f"kernels take Discrete or Box actions, not {self.single_action_space}")
        self._action_buffer = ActionBuffer(self.single_action_space, n)
        self._actions = self._action_buffer.array
        self._max_steps = int(max_episode_steps or 0)
        self._has_reset = False
        self._render_env = None
        if seed is not None:
            self._seed_streams(self._seed_list(seed), self._all)

    # -- seeding -----------------------------------------------------------------------

    def _seed_list(self, seed) -> list[int | None]:
        return check_seed_list(seed, self.num_envs)

    def _seed_streams(self, seeds: list[int | None], mask: np.ndarray) -> None:
        """Seed explicitly seeded envs; give never-seeded ones fresh entropy (as gymnasium)."""
        for i in np.flatnonzero(mask):
            s = seeds[i]
            if s is not None or not self._seeded[i]:
                self._entropy[i] = rng_mod.seed_stream(self._rng, i, s)
                self._seeded[i] = True

    @property
    def np_random_seed(self) -> tuple[Any, ...]:
        """Per-env seeds (entropy) like ``SyncVectorEnv.np_random_seed``."""
        return tuple(self._entropy)

    # -- gymnasium API -----------------------------------------------------------------

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        self._check_open()
        seeds = self._seed_list(seed)
        options = dict(options) if options else {}
        mask = options.pop("reset_mask", None)
        if mask is None:
            mask = self._all
        else:
            check_reset_mask(mask, self.num_envs)
        unknown = sorted(set(options) - set(self.kernel.reset_option_keys))
        if unknown:
            raise ValueError(
                f"unknown reset options {unknown} for {self.kernel.id}; accepted: "
                f"{['reset_mask', *self.kernel.reset_option_keys]}"
            )
        bounds = np.ascontiguousarray(self.kernel.reset_bounds(options), dtype=np.float64)
        # everything validated: from here on state changes, all of it or (Ctrl-C held until the
        # end) none of it
        with hold_interrupts() as held:
            out = self._reset_masked(seeds, mask, bounds)
        if held.interrupted:
            held.deliver("reset() was interrupted; it took effect", completed=True, result=out)
        return out

    def _reset_masked(self, seeds, mask, bounds):
        if self._out_slots is not None:
            # the caller may hold the current results, and may have changed them: reset in a
            # free slot, where envs outside reset_mask keep their true last observations
            current = (self._rewards, self._terminated, self._truncated)
            self._take_free_slot()
            if self._true_obs is not None:
                np.copyto(self._obs, self._true_obs)
            elif self._has_reset:
                self._observe(self._all, self._state, self._params, self._obs)
            for dst, src in zip((self._rewards, self._terminated, self._truncated), current):
                np.copyto(dst, src)
            del current
        self._seed_streams(seeds, mask)
        self._reset_envs(mask, bounds)
        self._terminated[mask] = False
        self._truncated[mask] = False
        if self._true_obs is not None:
            np.copyto(self._true_obs, self._obs)
        self._has_reset = True
        return (self._obs.copy() if self.copy else self._obs), {}

    def step(self, actions):
        self._check_open()
        if not self._has_reset:
            raise ResetNeeded("Cannot call step() before calling reset()")
        self._load_actions(actions)
        with hold_interrupts() as held:  # a Ctrl-C waits for the (short) kernels: never half a step
            out = self._advance()
        if held.interrupted:
            held.deliver("step() was interrupted; it took effect", completed=True, result=out)
        return out

    def step_bound(self):
        """Step with the actions already in the bound action buffer (see
        :meth:`bind_output_buffers`), which the caller has validated: the engine's parent
        checks a whole batch once, so its slices skip a second check."""
        self._check_open()
        if not self._has_reset:
            raise ResetNeeded("Cannot call step() before calling reset()")
        self._check_disabled_resets()
        return self._advance()

    def _take_free_slot(self) -> int:
        """Write the next results into an output slot the caller does not hold."""
        slots = self._out_slots
        # let go of our own references first, so the counts compare like with like
        self._obs = self._rewards = self._terminated = self._truncated = None
        slot = slots.free()
        self._obs, self._rewards, self._terminated, self._truncated = slots.slots[slot]
        return slot

    def _advance(self):
        slots = self._out_slots
        if slots is not None:  # a step rewrites every result: no need to carry the old ones over
            slot = self._take_free_slot()
        k = self.kernel
        infos: dict[str, Any] = {}
        mode = self.autoreset_mode
        if mode is AutoresetMode.NEXT_STEP:
            pending = self._pending
            if core.split_pending(pending, self._step_mask):
                k.reset(pending, self._state, self._rng, self._default_bounds, self._params, self._obs)
                if k.fix_reset_obs is not None:
                    k.fix_reset_obs(self._state, self._obs, pending)
            k.step(self._step_mask, self._actions, self._state, self._rng, self._params, self._obs,
                   self._rewards, self._terminated)
            core.finish_step(
                self._step_mask, self._elapsed, self._max_steps, self._rewards,
                self._terminated, self._truncated, pending,
            )
        elif mode is AutoresetMode.SAME_STEP:
            k.step(self._all, self._actions, self._state, self._rng, self._params, self._obs,
                   self._rewards, self._terminated)
            done = core.finish_step(
                self._all, self._elapsed, self._max_steps, self._rewards,
                self._terminated, self._truncated, self._pending,
            )
            if done:
                infos = self._final_infos(self._pending)
                self._reset_envs(self._pending, self._default_bounds)
        else:  # DISABLED: the user resets finished envs with reset(options={"reset_mask": ...})
            k.step(self._all, self._actions, self._state, self._rng, self._params, self._obs,
                   self._rewards, self._terminated)
            core.finish_step(
                self._all, self._elapsed, self._max_steps, self._rewards,
                self._terminated, self._truncated, self._pending,
            )
        if self._true_obs is not None:
            np.copyto(self._true_obs, self._obs)
        if slots is not None and slot == slots.scratch:  # the caller holds every slot: copies
            return self._obs.copy(), self._rewards.copy(), self._terminated.copy(), self._truncated.copy(), infos
        return self._obs, self._rewards, self._terminated, self._truncated, infos

    def render(self) -> tuple[np.ndarray, ...] | None:
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='rgb_array'")
            return None
        if self.kernel.render_rgb is not None:  # the kernel draws its own frames
            draw = self.kernel.render_rgb
            return tuple(draw(self._state, self._params, i) for i in range(self.num_envs))
        if self.kernel.load_render_state is None:
            raise NotImplementedError(f"{self.kernel.id} has no renderer")
        if self._render_env is None:
            creator = gym.envs.registration.load_env_creator(self.kernel.gym_entry_point)
            env = creator(render_mode="rgb_array", **self.env_kwargs)
            env.reset(seed=0)
            self._render_env = env
        env = self._render_env.unwrapped
        frames = []
        for i in range(self.num_envs):
            self.kernel.load_render_state(env, self._state[:, i].copy(), self._params)
            frames.append(env.render())
        return tuple(frames)

    def close_extras(self, **kwargs: Any) -> None:
        if self._render_env is not None:
            self._render_env.close()
            self._render_env = None

    def _write_true_observations(self, out: np.ndarray) -> bool:
        """Write every env's latest observation (what its last step or reset returned) into
        ``out``, rebuilt from the state by ``kernel.observe``; False, writing nothing, before the
        first reset. The engine's slice server calls it for a reset of some envs instead of
        copying the observations after every step."""
        if not self._has_reset:
            return False
        self._observe(self._all, self._state, self._params, out)
        return True

    def bind_output_buffers(self, obs: np.ndarray, rewards: np.ndarray, terminated: np.ndarray,
                            truncated: np.ndarray, actions: np.ndarray | None = None) -> None:
        """Write results straight into the given arrays (shared memory in a worker) instead
        of private buffers, and read actions from ``actions`` in :meth:`step_bound`. They must
        match the private buffers' shapes and dtypes."""
        pairs = [("_obs", obs), ("_rewards", rewards), ("_terminated", terminated), ("_truncated", truncated)]
        if actions is not None:
            pairs.append(("_actions", actions))
        for name, new in pairs:
            old = getattr(self, name)
            if new.shape != old.shape or new.dtype != old.dtype or not new.flags.c_contiguous:
                raise ValueError(f"{name[1:]} buffer must be C-contiguous {old.dtype}{old.shape}, got {new.dtype}{new.shape}")
            if name != "_actions":
                new[...] = old
            setattr(self, name, new)
        self._out_slots = None  # results now live in the caller's buffers
        self._true_obs = None  # and keeping their true values is the caller's job (SliceServer)
        if actions is not None:
            self._action_buffer = ActionBuffer(self.single_action_space, self.num_envs, actions)

    def rebind_outputs(self, obs: np.ndarray, rewards: np.ndarray, terminated: np.ndarray,
                       truncated: np.ndarray) -> None:
        """Write the next results into other arrays like those given to
        :meth:`bind_output_buffers` (same shapes and dtypes: not checked again). The engine
        switches between shared result slots with it; every step rewrites all results."""
        self._obs, self._rewards, self._terminated, self._truncated = obs, rewards, terminated, truncated

    # -- internals ---------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.closed:
            raise ClosedEnvironmentError(f"{type(self).__name__}({self.kernel.id}) is closed")

    def _reset_envs(self, mask: np.ndarray, bounds: np.ndarray) -> None:
        k = self.kernel
        k.reset(mask, self._state, self._rng, bounds, self._params, self._obs)
        if k.fix_reset_obs is not None:
            k.fix_reset_obs(self._state, self._obs, mask)
        core.start_episodes(mask, self._elapsed, self._pending)

    def _final_infos(self, done: np.ndarray) -> dict[str, Any]:
        final_obs = np.full(self.num_envs, None, dtype=object)
        for i in np.flatnonzero(done):
            final_obs[i] = self._obs[i].copy()
        return {"final_obs": final_obs, "_final_obs": done.copy(), "final_info": {}, "_final_info": done.copy()}

    def _load_actions(self, actions: Any) -> None:
        """Validate ``actions`` into the kernel's action buffer, or raise leaving all as is."""
        self._action_buffer.load(actions)
        self._check_disabled_resets()

    def _check_disabled_resets(self) -> None:
        if self.autoreset_mode is AutoresetMode.DISABLED and self._pending.any():
            done = np.flatnonzero(self._pending)
            raise ResetNeeded(
                f"envs {done[:10].tolist()} finished and autoreset is disabled: reset them with "
                f"reset(options={{'reset_mask': mask}}) before stepping"
            )

    def __repr__(self) -> str:
        return f"NumbaVectorEnv({self.kernel.id}, num_envs={self.num_envs})"
