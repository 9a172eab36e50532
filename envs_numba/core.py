"""The kernel protocol every batched environment follows.

An environment is an :class:`EnvKernel`: a description (spaces, limits, how to parse
constructor kwargs and reset options) plus two ``@njit(cache=True)`` kernels that work on
a whole batch at once and write into arrays the caller preallocated:

``reset(mask, state, rng, bounds, params, obs)``
    For every ``i`` with ``mask[i]``: draw env ``i``'s initial state from its own random
    stream (``envs_numba.rng``, row ``i`` of ``rng``), write it into ``state[:, i]`` and
    its observation into ``obs[i]``.

``step(mask, actions, state, rng, params, obs, rewards, terminated)``
    For every ``i`` with ``mask[i]``: advance env ``i`` with ``actions[i]``, write
    ``obs[i]``, ``rewards[i]`` and ``terminated[i]`` (always all three: they are outputs only,
    and the buffers change between calls, see ``fastsample.output_slots``). A stochastic env
    draws from row ``i`` of ``rng`` (the same stream its resets draw from).

``state`` is structure-of-arrays: a float64 array of shape ``(state_dim, num_envs)``, one row
per state variable, so the physics of consecutive envs reads consecutive memory.
``bounds`` is the float64 array returned by ``reset_bounds(options)`` (the reset
distribution, e.g. gymnasium's ``low``/``high`` options) and ``params`` the float64 array
returned by ``make_params(**env_kwargs)``. Kernels never allocate and never touch envs
outside ``mask``. Time limits, autoreset and episode bookkeeping are not the kernel's job:
the vector env does them once for every env family with the helpers below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import gymnasium as gym
import numpy as np
from numba import njit


@dataclass(frozen=True)
class EnvKernel:
    """Everything the vector env needs to run one batched environment family."""

    id: str
    """Gymnasium id of the environment this kernel reproduces, e.g. ``"CartPole-v1"``."""
    observation_space: gym.spaces.Box
    """Single-env observation space."""
    action_space: gym.spaces.Space
    """Single-env action space (``Discrete`` or ``Box``)."""
    state_dim: int
    """Number of float64 state rows."""
    reset: Callable
    """``@njit`` batched reset kernel (see module docstring)."""
    step: Callable
    """``@njit`` batched step kernel (see module docstring)."""
    max_episode_steps: int | None
    """Default time limit (truncation), as registered in gymnasium."""
    make_params: Callable[..., np.ndarray] = lambda **kw: _no_kwargs(kw)
    """Constructor kwargs -> float64 params array; raises ``TypeError`` on unknown kwargs."""
    reset_bounds: Callable[[dict | None], np.ndarray] = lambda options: np.zeros(0)
    """Reset options (or None) -> float64 bounds array; raises ``ValueError`` on bad values."""
    reset_option_keys: tuple[str, ...] = ()
    """Reset option keys understood by ``reset_bounds`` (others are rejected)."""
    reward_threshold: float | None = None
    """Return at which the task counts as solved, as registered in gymnasium."""
    gym_entry_point: str | None = None
    """Entry point of the reference single env (used for rendering and registration)."""
    render_fps: int = 30
    """Frames per second for renderers and video recorders."""
    load_render_state: Callable[[Any, np.ndarray, np.ndarray], None] | None = None
    """``(unwrapped_gym_env, state_column, params)``: make a gymnasium env show our state."""
    fix_reset_obs: Callable[[np.ndarray, np.ndarray, np.ndarray], None] | None = None
    """Optional Python hook ``(state, obs, mask)`` run after every reset kernel call, for
    the rare observation that only NumPy itself computes bit-exactly (Acrobot)."""
    extra: dict = field(default_factory=dict)
    """Anything family-specific (documentation, constants)."""


def _no_kwargs(kwargs: dict) -> np.ndarray:
    if kwargs:
        raise TypeError(f"unexpected environment keyword arguments: {sorted(kwargs)}")
    return np.zeros(0)


def parse_kwargs(env_id: str, kwargs: dict, defaults: dict[str, float]) -> dict[str, float]:
    """Merge ``kwargs`` into ``defaults``; unknown names raise ``TypeError`` like a constructor."""
    unknown = sorted(set(kwargs) - set(defaults))
    if unknown:
        raise TypeError(
            f"{env_id} got unexpected keyword arguments {unknown}; accepted: {sorted(defaults)}"
        )
    merged = dict(defaults)
    merged.update(kwargs)
    return merged


def check_uniform_range(low, high) -> None:
    """The checks ``Generator.uniform(low, high)`` makes (gymnasium hits them inside reset),
    made here before any state changes: a non-finite ``high - low`` raises ``OverflowError``,
    a negative one ``ValueError`` (``low=0.0, high=-0.0`` included)."""
    with np.errstate(over="ignore", invalid="ignore"):
        span = np.subtract(high, low, dtype=np.float64)
    if not np.all(np.isfinite(span)):
        raise OverflowError("high - low range exceeds valid bounds")
    if np.any(np.signbit(span)):
        raise ValueError("high - low < 0")


def low_high_bounds(options: dict | None, default_low: float, default_high: float) -> np.ndarray:
    """Gymnasium's ``maybe_parse_reset_bounds`` (same errors) as a ``[low, high]`` array."""
    from gymnasium.envs.classic_control import utils

    low, high = utils.maybe_parse_reset_bounds(options, default_low, default_high)
    check_uniform_range(low, high)
    return np.array([low, high], dtype=np.float64)


# --- bookkeeping shared by every env family (time limits and autoreset) -------------------


@njit(cache=True)
def split_pending(pending, step_mask):
    """NEXT_STEP: envs pending a reset are reset this call, the others stepped.

    Writes ``step_mask = ~pending`` and returns how many envs are pending.
    """
    count = 0
    for i in range(pending.shape[0]):
        step_mask[i] = not pending[i]
        if pending[i]:
            count += 1
    return count


@njit(cache=True)
def finish_step(step_mask, elapsed, max_steps, rewards, terminated, truncated, pending):
    """After the step kernel: apply the time limit and mark finished envs.

    Stepped envs (``step_mask``) count the step, truncate at ``max_steps`` (independently
    of termination, as gymnasium's ``TimeLimit``) and become ``pending`` when done. Envs
    that were not stepped were reset in this call: zero reward, no flags, fresh episode.
    Returns the number of envs that finished in this call.
    """
    done = 0
    for i in range(step_mask.shape[0]):
        if step_mask[i]:
            elapsed[i] += 1
            truncated[i] = max_steps > 0 and elapsed[i] >= max_steps
            pending[i] = terminated[i] or truncated[i]
            if pending[i]:
                done += 1
        else:
            rewards[i] = 0.0
            terminated[i] = False
            truncated[i] = False
            elapsed[i] = 0
            pending[i] = False
    return done


@njit(cache=True)
def start_episodes(mask, elapsed, pending):
    """After a reset of the envs in ``mask``: their episodes start afresh."""
    for i in range(mask.shape[0]):
        if mask[i]:
            elapsed[i] = 0
            pending[i] = False


@njit(cache=True)
def check_discrete_actions(actions, low, high, out):
    """Copy integer actions in ``[low, high)`` into ``out`` (int64); return the first bad
    index or -1 (then nothing is copied)."""
    n = actions.shape[0]
    bad = False
    for i in range(n):  # no early exit: this loop vectorises (2.4x faster at 8192 envs)
        a = actions[i]
        bad |= (a < low) | (a >= high)
    if bad:
        for i in range(n):
            if actions[i] < low or actions[i] >= high:
                return i
    for i in range(n):
        out[i] = actions[i]
    return -1


@njit(cache=True)
def check_box_actions(actions, out, to_f32):
    """Copy float actions into ``out`` (same shape, ``out``'s dtype); return the first env
    whose action is NaN or infinite in that dtype (float32 when ``to_f32``), or -1 (then
    nothing is copied). ``actions`` must be C-contiguous."""
    n = actions.shape[0]
    flat = actions.reshape(-1)
    out_flat = out.reshape(-1)
    per_env = flat.shape[0] // n if n else 1
    finite = True
    for k in range(flat.shape[0]):  # one flat loop without early exit: it vectorises
        v = np.float64(np.float32(flat[k])) if to_f32 else np.float64(flat[k])
        finite &= np.isfinite(v)
    if not finite:
        for k in range(flat.shape[0]):
            v = np.float64(np.float32(flat[k])) if to_f32 else np.float64(flat[k])
            if not np.isfinite(v):
                return k // per_env
    for k in range(flat.shape[0]):
        out_flat[k] = flat[k]
    return -1
