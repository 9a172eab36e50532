"""What the five MinAtar games share: parameters, sticky actions, random draws, action sets.

Every game file follows the same shape:

* ``_reset_env(i, state, rng, params, obs, tape)`` and
  ``_step_env(i, action, state, rng, params, obs, tape) -> (reward, terminal)`` are the game for
  one env: a deterministic function of the state, the action and the random outcomes it draws.
  Every random outcome comes from :func:`draw_double` or :func:`draw_int`. With ``tape=None``
  (what the batched kernels pass) they draw from env ``i``'s PCG64 stream (``envs_numba.rng``);
  with a float64 ``tape`` they read the next recorded outcome instead, so the tests can feed
  the outcomes the ``minatar`` package drew (its ``RandomState``) and compare step by step.
  Numba compiles the two cases separately (``tape is None`` is decided at compile time).
* ``_step_env`` draws the sticky action (:func:`sticky_action`) and then, unless the episode is
  over, plays the step. Each game keeps ``S_TERMINAL``: stepped again, a finished game does what
  the reference's ``act`` does to one, the draw and nothing else (reward 0, terminal again, state
  and observation left as they are). Only a raw kernel call meets a finished env (the vector env
  resets it first); without this a game went on from its final state, where Breakout's ball is
  already below the screen and its next observation write landed outside the env's bytes.
* ``obs`` in these one-env functions is the whole batch's observation buffer as one flat bool
  array (``obs.reshape(obs.size)``, made once per kernel call: making a view of it per env
  costs more than writing the observation, in atomic reference counting). Env ``i``'s cell
  ``(y, x)``, channel ``c`` is ``obs[i * 100 * C + (y * 10 + x) * C + c]``; ``_write_obs``
  clears env ``i``'s ``100 * C`` bytes (:func:`clear_obs`: wide stores) and sets its cells.
* The game files compile with ``@njit(cache=True, _nrt=False)``: numba's reference counting off.
  They never allocate, and with it on, every call of a game function from the kernel loop
  paid several atomic reference count updates per env (a fifth of Asterix's time).
* ``reset``/``step`` are the batched protocol kernels (``envs_numba/core.py``), which loop over
  the envs in ``mask`` and call the functions above. Both loops draw random numbers (every step
  draws the sticky-action outcome), so they are never vectorised and ``if mask[i]:`` is safe.

Tape layout: ``tape[0]`` is the read position (starts at 1), ``tape[1:]`` the outcomes in the
order the reference drew them: ``rand()`` as the double it returned, ``randint(...)`` as the
integer (arrays flattened in order).

Random outcomes from our own stream: ``rand()`` is ``next_double`` (NumPy's 53-bit double) and
``randint(n)`` is ``floor(next_double * n)``. These are not MT19937 draws, so a seeded run is not
the ``minatar`` package's run under the same seed; given the same outcomes, every step is.
"""

from __future__ import annotations

import math

import numpy as np
from gymnasium import spaces
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from envs_numba import rng as rng_mod
from envs_numba.core import EnvKernel, parse_kwargs

# action numbering of the minatar package (``Environment.num_actions() == 6``)
NOOP, LEFT, UP, RIGHT, DOWN, FIRE = 0, 1, 2, 3, 4, 5
ACTION_NAMES = ("n", "l", "u", "r", "d", "f")
FULL_ACTION_SET = (NOOP, LEFT, UP, RIGHT, DOWN, FIRE)
# each action's column and row step (games clamp the result): a lookup instead of a branch
# on the action, which a random agent's actions make unpredictable
MOVE_X = np.array([0, -1, 0, 1, 0, 0], dtype=np.int64)
MOVE_Y = np.array([0, 0, -1, 0, 1, 0], dtype=np.int64)

# params layout, shared by every game
P_STICKY = 0  # sticky_action_prob
P_RAMPING = 1  # difficulty_ramping (1.0 / 0.0)
P_ACTION_MAP = 2  # 6 slots: agent action index -> minatar action (unused slots -1)
N_PARAMS = P_ACTION_MAP + 6


@njit(cache=True, inline="always")
def draw_double(rng, i, tape):
    """One ``RandomState.rand()`` outcome: a double in [0, 1)."""
    if tape is None:
        return rng_mod.next_double(rng, i)
    k = np.int64(tape[0])
    tape[0] = k + 1
    return tape[k]


@njit(cache=True, inline="always")
def draw_int(rng, i, n, tape):
    """One ``RandomState.randint(n)`` outcome: an integer in [0, n)."""
    if tape is None:
        return np.int64(rng_mod.next_double(rng, i) * n)
    k = np.int64(tape[0])
    tape[0] = k + 1
    return np.int64(tape[k])


@njit(cache=True, inline="always")
def clear_obs(obs, base, size):
    """``obs[base:base + size] = False`` (one env's observation bytes). Unsigned indices: with a
    signed one numba wraps negative values around, and LLVM, unable to rule those out here,
    stores byte by byte instead of with wide stores (20x slower)."""
    start = np.uint64(base)
    for k in range(np.uint64(size)):
        obs[start + k] = False


@intrinsic
def store_8_bytes(typingctx, obs, at, value):
    """``obs[at:at + 8] = value``'s little-endian bytes (each 0 or 1 in a bool array): one
    unaligned 8-byte store (``at`` a uint64 index, ``value`` a uint64), with no array view (a
    ``view`` in numba is a call, made per env it cost more than the stores)."""
    sig = types.void(obs, types.uint64, types.uint64)

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = builder.bitcast(builder.gep(array.data, [args[1]]), ir.IntType(64).as_pointer())
        builder.store(args[2], ptr, align=1)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, inline="always")
def sticky_action(i, action, state, row_last, rng, params, tape):
    """``Environment.act``'s sticky actions: map the agent's action index to a minatar action,
    draw one ``rand()`` (every step, whatever the probability, and on a finished game too), and
    with probability ``sticky_action_prob`` repeat the previous action instead (a select, not a
    branch on the draw, which is random). The previous action lives in ``state[row_last, i]``,
    which resets never touch: as in the reference, it carries over from one episode to the next
    (0, no-op, before the first step)."""
    mapped = np.int64(params[P_ACTION_MAP + action])
    last = np.int64(state[row_last, i])
    a = last if draw_double(rng, i, tape) < params[P_STICKY] else mapped
    state[row_last, i] = a
    return a


def make_params_for(env_id: str, action_set: tuple[int, ...], kwargs: dict) -> np.ndarray:
    """Constructor kwargs (``sticky_action_prob=0.1``, ``difficulty_ramping=True``) -> params."""
    merged = parse_kwargs(env_id, kwargs, {"sticky_action_prob": 0.1, "difficulty_ramping": True})
    p = merged["sticky_action_prob"]
    if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(p)) or not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"{env_id}: sticky_action_prob must be a probability in [0, 1], got {p!r}")
    ramp = merged["difficulty_ramping"]
    if not isinstance(ramp, (bool, np.bool_)):
        raise TypeError(f"{env_id}: difficulty_ramping must be a bool, got {ramp!r}")
    params = np.full(N_PARAMS, -1.0)
    params[P_STICKY] = float(p)
    params[P_RAMPING] = 1.0 if ramp else 0.0
    params[P_ACTION_MAP:P_ACTION_MAP + len(action_set)] = action_set
    return params


def new_tape(outcomes) -> np.ndarray:
    """A tape holding ``outcomes`` (read position 1), followed by NaN sentinels: a step that
    draws more than was recorded reads NaN and its position passes :func:`tape_used`'s count."""
    outcomes = np.asarray(outcomes, dtype=np.float64).ravel()
    tape = np.full(outcomes.shape[0] + 33, np.nan)
    tape[0] = 1.0
    tape[1:1 + outcomes.shape[0]] = outcomes
    return tape


def tape_used(tape: np.ndarray) -> int:
    """How many outcomes were read from ``tape``."""
    return int(tape[0]) - 1


# --- rendering ----------------------------------------------------------------------------

CELL_PX = 16  # a frame is 10x10 cells of 16x16 pixels: (160, 160, 3) uint8


def palette(n_channels: int) -> np.ndarray:
    """``(n_channels + 1, 3)`` uint8 colours: row 0 black (empty cell), row ``c + 1`` channel
    ``c``'s colour. As the ``minatar`` package's renderer, one distinct colour per channel along
    a cubehelix ramp (D. A. Green's formula, default start 0.5, rotations -1.5, hue 1, gamma
    1), sampled from 0.25 to 0.9 of its lightness so that every colour stands out from black."""
    lam = np.linspace(0.25, 0.9, n_channels)
    phi = 2.0 * np.pi * (0.5 / 3.0 - 1.5 * lam)
    amp = lam * (1.0 - lam) / 2.0
    cos, sin = np.cos(phi), np.sin(phi)
    rgb = np.stack([lam + amp * (-0.14861 * cos + 1.78277 * sin),
                    lam + amp * (-0.29227 * cos - 0.90649 * sin),
                    lam + amp * (1.97294 * cos)], axis=1)
    out = np.zeros((n_channels + 1, 3), dtype=np.uint8)
    out[1:] = np.round(np.clip(rgb, 0.0, 1.0) * 255.0)
    return out


@njit(cache=True)
def paint(cells, colours, frame):
    """Fill ``frame`` (``(10 * s, 10 * s, 3)`` uint8) from ``cells`` (``(10, 10, C)`` bool): each
    cell an ``s x s`` block in the colour of the highest channel set in it (as the package's
    renderer picks), black when none is."""
    s = frame.shape[0] // 10
    for y in range(10):
        for x in range(10):
            top = 0
            for c in range(cells.shape[2]):
                if cells[y, x, c]:
                    top = c + 1
            for py in range(y * s, (y + 1) * s):
                for px in range(x * s, (x + 1) * s):
                    for k in range(3):
                        frame[py, px, k] = colours[top, k]


def make_render(write_obs, n_channels: int):
    """The kernel's ``render_rgb(state, params, i)``: env ``i``'s observation, written by the
    game's own ``write_obs`` from a copy of its state column, painted by :func:`paint`."""
    colours = palette(n_channels)

    def render_rgb(state: np.ndarray, params: np.ndarray, i: int) -> np.ndarray:
        column = np.ascontiguousarray(state[:, i:i + 1])  # same array type: no new compilation
        cells = np.zeros((1, 10, 10, n_channels), dtype=np.bool_)
        write_obs(0, column, cells.reshape(cells.size))
        frame = np.empty((10 * CELL_PX, 10 * CELL_PX, 3), dtype=np.uint8)
        paint(cells[0], colours, frame)
        return frame

    return render_rgb


def game_kernels(name: str, game: str, channels: tuple[str, ...], state_dim: int, reset, step, reset_env, step_env,
                 minimal_actions: tuple[int, ...], write_obs, observe):
    """The ``EnvKernel`` pair of one game: ``MinAtar-<name>-v1`` (its minimal action set) and
    ``-v0`` (all six actions). ``reset_env``/``step_env`` (one env, random outcomes given or
    drawn) are kept in ``extra`` for the tests that replay the reference's draws; ``write_obs(i,
    state, obs)`` (env ``i``'s observation from its state) draws ``render_mode="rgb_array"``
    frames.

    ``observe(mask, state, params, obs)`` (the kernel protocol's optional ``observe``) is a
    batched ``@njit`` kernel that rewrites the observation of every env in ``mask`` from its
    state column alone: a MinAtar observation is a function of the state
    (``tests/test_minatar_engine.py`` checks it after every step and reset), so a vector env
    rebuilds the observations of envs it did not step instead of keeping a private copy of the
    latest ones. Each game file defines its own (the same few lines around its ``_write_obs``):
    one made here by a factory would be a closure, which numba's disk cache never reuses, so
    every process would compile it again."""
    def kernel(version: str, action_set: tuple[int, ...]) -> EnvKernel:
        env_id = f"MinAtar-{name}-{version}"
        return EnvKernel(
            id=env_id,
            observation_space=spaces.Box(0, 1, (10, 10, len(channels)), dtype=np.bool_),
            action_space=spaces.Discrete(len(action_set)),
            state_dim=state_dim,
            reset=reset,
            step=step,
            max_episode_steps=None,
            make_params=lambda **kw: make_params_for(env_id, action_set, kw),
            render_rgb=make_render(write_obs, len(channels)),
            render_fps=15,
            observe=observe,
            extra={"game": game, "channels": channels, "action_set": action_set,
                   "reset_env": reset_env, "step_env": step_env},
        )

    return kernel("v1", minimal_actions), kernel("v0", FULL_ACTION_SET)
