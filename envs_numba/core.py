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

``render_rgb(state, params, i)`` (optional, plain Python calling ``@njit`` code)
    Env ``i``'s frame for ``render_mode="rgb_array"``, drawn from its state column. Families
    that reproduce a gymnasium env instead set ``load_render_state`` and reuse its renderer.

``state`` is structure-of-arrays: a float64 array of shape ``(state_dim, columns)``, one row
per state variable, so the physics of consecutive envs reads consecutive memory. Env ``i`` is
column ``i``; ``columns`` (:func:`state_columns`) may exceed the number of envs, and kernels
never touch the columns past ``mask.shape[0]``.
``bounds`` is the float64 array returned by ``reset_bounds(options)`` (the reset
distribution, e.g. gymnasium's ``low``/``high`` options) and ``params`` the float64 array
returned by ``make_params(**env_kwargs)``. Kernels never allocate and never change envs
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
    render_rgb: Callable[[np.ndarray, np.ndarray, int], np.ndarray] | None = None
    """Optional ``(state, params, i) -> (H, W, 3) uint8``: draw env ``i``'s frame from its
    state column ``state[:, i]`` (read only). For families without a gymnasium renderer
    (MinAtar); when set, ``render()`` uses it instead of ``load_render_state``."""
    fix_reset_obs: Callable[[np.ndarray, np.ndarray, np.ndarray], None] | None = None
    """Optional Python hook ``(state, obs, mask)`` run after every reset kernel call, for
    the rare observation that only NumPy itself computes bit-exactly (Acrobot)."""
    observe: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], None] | None = None
    """Optional ``@njit`` ``observe(mask, state, params, obs)``: write the observations of the
    envs in ``mask`` from their state alone, exactly what their last step or reset wrote. With
    it, ``copy=True`` keeps no private copy of the latest observations (a copy per step, most of
    ``copy=True``'s cost for large observations): a reset of some envs rebuilds the others'.
    Only for families whose observation is a function of the state (not Acrobot's reset)."""
    extra: dict = field(default_factory=dict)
    """Anything family-specific (documentation, constants)."""


def state_columns(num_envs: int) -> int:
    """Columns of the state array of ``num_envs`` envs: at least ``num_envs``, and rows an odd
    number of 64-byte cache lines long. With rows a multiple of 4 KiB apart (``num_envs`` a
    multiple of 512) every state variable of one env falls in the same L1 cache set, so a
    kernel reading a few dozen of them (MinAtar) evicts its own lines: 2 to 6 times slower
    at 4096 envs than with rows of 4104 columns."""
    lines = -(-int(num_envs) // 8)
    return 8 * (lines + 1 - lines % 2)


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
#
# Every loop below stores to every element unconditionally: values are chosen with selects,
# never by skipping a store. A store under an ``if`` is vectorised by LLVM into a *masked*
# store, and LLVM 22's x86 backend (llvmlite 0.50) lowers a masked store of bytes (bool
# arrays) at 8 lanes wrongly when the CPU has AVX-512BW/VL: it widens the 8-lane mask to 16
# lanes with the upper 8 lanes set, so each such store also zeroes the next 8 bytes, which
# are the neighbouring envs' flags or, after the last group, memory past the array's end.
# Whether the vectoriser picks that shape depends on the CPU it tunes for (Zen 4's default,
# x86-64-v2/v3 tuning with AVX-512 present), so the same source was right on one machine and
# wrong on another. ``fastsample.check`` compiles every kernel for several targets and
# rejects any masked store or load in the optimised IR, and ``self_check`` runs these kernels
# on known inputs the first time a process uses them.


@njit(cache=True)
def split_pending(pending, step_mask):
    """NEXT_STEP: envs pending a reset are reset this call, the others stepped.

    Writes ``step_mask = ~pending`` and returns how many envs are pending.
    """
    count = 0
    for i in range(pending.shape[0]):
        p = pending[i]
        step_mask[i] = not p
        count += p
    return count


@njit(cache=True)
def finish_step(step_mask, elapsed, max_steps, rewards, terminated, truncated, pending):
    """After the step kernel: apply the time limit and mark finished envs.

    Stepped envs (``step_mask``) count the step, truncate at ``max_steps`` (independently
    of termination, as gymnasium's ``TimeLimit``) and become ``pending`` when done. Envs
    that were not stepped were reset in this call: zero reward, no flags, fresh episode.
    Returns the number of envs that finished in this call.
    """
    limit = max_steps if max_steps > 0 else np.iinfo(np.int64).max
    done = 0
    for i in range(step_mask.shape[0]):
        stepped = step_mask[i]
        count = elapsed[i] + 1  # every load unconditional too: a conditional one is masked
        reward = rewards[i]
        count = count if stepped else 0
        term = stepped & terminated[i]
        trunc = stepped & (count >= limit)
        finished = term | trunc
        elapsed[i] = count
        terminated[i] = term
        truncated[i] = trunc
        pending[i] = finished
        rewards[i] = reward if stepped else 0.0
        done += finished
    return done


@njit(cache=True)
def start_episodes(mask, elapsed, pending):
    """After a reset of the envs in ``mask``: their episodes start afresh."""
    for i in range(mask.shape[0]):
        m = mask[i]
        count = elapsed[i]
        elapsed[i] = 0 if m else count
        pending[i] = pending[i] & (not m)


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


# --- self-check of the compiled bookkeeping -------------------------------------------------


class CodegenError(RuntimeError):
    """Numba's machine code for a kernel gives wrong results on this CPU target."""


_SELF_CHECK_SIZES = (1, 7, 8, 15, 16, 31, 32, 33, 63, 64, 65, 257)
_GUARD = 64  # bytes past each output array that a kernel must leave alone
_self_checked = False


def _guarded(values: np.ndarray):
    """``values`` copied into a longer buffer: (view of the first len(values), the buffer)."""
    buf = np.empty(values.shape[0] + _GUARD, dtype=values.dtype)
    buf[values.shape[0]:] = np.ones(1, dtype=values.dtype)[0] if values.dtype == np.bool_ else 7
    buf[: values.shape[0]] = values
    return buf[: values.shape[0]], buf


def _check_bookkeeping(split_pending, finish_step, start_episodes, check_discrete_actions) -> list[str]:
    """Run the kernels on random inputs at every size in ``_SELF_CHECK_SIZES``; return what
    differs from a NumPy reference (empty when all is right)."""
    rng = np.random.default_rng(20261125)
    wrong: list[str] = []
    for n in _SELF_CHECK_SIZES:
        pending0 = rng.random(n) < 0.3
        step_mask0 = ~pending0
        elapsed0 = rng.integers(0, 5, n)
        rewards0 = rng.random(n) + 0.5
        terminated0 = rng.random(n) < 0.3
        max_steps = 4

        pending, pending_buf = _guarded(pending0.copy())
        step_mask, step_mask_buf = _guarded(np.zeros(n, np.bool_))
        count = split_pending(pending, step_mask)
        if count != pending0.sum() or not np.array_equal(step_mask, ~pending0):
            wrong.append(f"split_pending at {n} envs")

        elapsed, elapsed_buf = _guarded(elapsed0.copy())
        rewards, rewards_buf = _guarded(rewards0.copy())
        terminated, terminated_buf = _guarded(terminated0.copy())
        truncated, truncated_buf = _guarded(np.zeros(n, np.bool_))
        pending, pending_buf = _guarded(pending0.copy())
        step_mask, step_mask_buf = _guarded(step_mask0.copy())
        done = finish_step(step_mask, elapsed, max_steps, rewards, terminated, truncated, pending)
        want_elapsed = np.where(step_mask0, elapsed0 + 1, 0)
        want_term = step_mask0 & terminated0
        want_trunc = step_mask0 & (want_elapsed >= max_steps)
        want_pending = want_term | want_trunc
        if not (
            done == want_pending.sum()
            and np.array_equal(elapsed, want_elapsed)
            and np.array_equal(terminated, want_term)
            and np.array_equal(truncated, want_trunc)
            and np.array_equal(pending, want_pending)
            and np.array_equal(rewards, np.where(step_mask0, rewards0, 0.0))
        ):
            wrong.append(f"finish_step at {n} envs")

        mask0 = rng.random(n) < 0.5
        mask, mask_buf = _guarded(mask0.copy())
        elapsed, elapsed_buf2 = _guarded(elapsed0.copy())
        pending, pending_buf2 = _guarded(pending0.copy())
        start_episodes(mask, elapsed, pending)
        if not (np.array_equal(elapsed, np.where(mask0, 0, elapsed0))
                and np.array_equal(pending, pending0 & ~mask0)):
            wrong.append(f"start_episodes at {n} envs")

        actions0 = rng.integers(0, 3, n)
        out, out_buf = _guarded(np.zeros(n, np.int64))
        if check_discrete_actions(actions0, 0, 3, out) != -1 or not np.array_equal(out, actions0):
            wrong.append(f"check_discrete_actions at {n} envs")

        for name, buf in (("pending", pending_buf), ("step_mask", step_mask_buf), ("elapsed", elapsed_buf),
                          ("rewards", rewards_buf), ("terminated", terminated_buf),
                          ("truncated", truncated_buf), ("mask", mask_buf), ("elapsed", elapsed_buf2),
                          ("pending", pending_buf2), ("actions", out_buf)):
            guard = buf[n:]
            if not np.all(guard == (True if buf.dtype == np.bool_ else 7)):
                wrong.append(f"a write past the end of {name} at {n} envs")
    return wrong


def codegen_target() -> str:
    """The CPU numba compiles for, as it tells LLVM (name, and how features were chosen)."""
    from numba.core import config

    import llvmlite.binding as llvm

    name = config.CPU_NAME or f"host ({llvm.get_host_cpu_name()})"
    features = "host features" if config.CPU_FEATURES is None else f"features {config.CPU_FEATURES!r}"
    return f"NUMBA_CPU_NAME={name}, {features}"


def self_check(split_pending=None, finish_step=None, start_episodes=None, check_discrete_actions=None) -> None:
    """Run the shared bookkeeping kernels on known inputs at sizes 1..257 (with guard bytes
    after every output) and raise :class:`CodegenError` if any result is wrong.

    Numba compiles for the CPU it runs on, so code that is right on one machine can be
    miscompiled on another; a wrong flag must never reach a user. The arguments replace the
    kernels under test (the test suite passes a broken one to prove the check fires).
    Takes about a millisecond.
    """
    wrong = _check_bookkeeping(
        split_pending or globals()["split_pending"],
        finish_step or globals()["finish_step"],
        start_episodes or globals()["start_episodes"],
        check_discrete_actions or globals()["check_discrete_actions"],
    )
    if wrong:
        raise CodegenError(
            f"numba's machine code for this CPU target ({codegen_target()}) gives wrong results: "
            f"{'; '.join(wrong[:6])}{' ...' if len(wrong) > 6 else ''}. Episode flags computed this "
            "way would be wrong, so fastsample refuses to run. Workaround: set the environment "
            "variable NUMBA_CPU_NAME=generic (portable code, slower) and run again; then please "
            "report the CPU and this message. `python -m fastsample.check` runs the full check."
        )


def ensure_self_checked() -> None:
    """:func:`self_check` once per process (the first env built runs it)."""
    global _self_checked
    if not _self_checked:
        self_check()
        _self_checked = True
