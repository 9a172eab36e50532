"""MinAtar Breakout (``MinAtar-Breakout-v1``, minimal actions; ``-v0``, all six), after the
``minatar`` package 1.0.15 (``minatar/environments/breakout.py``), as a batched kernel.

## Description
The agent moves a paddle along the bottom row and bounces a ball, which travels only along
diagonals, into three rows of bricks at the top. A ball that reaches the bottom row next to
or above the paddle bounces back up; otherwise the episode ends. When every brick is gone, a
fresh three rows appear the next time the ball reaches the bottom row.

## Action space
``-v1``: ``Discrete(3)``: 0 no-op, 1 left, 2 right (the package's minimal action set ``n, l,
r``). ``-v0``: ``Discrete(6)``, the package's numbering ``n, l, u, r, d, f`` (u, d, f do
nothing here).

## Observation space
``Box(0, 1, (10, 10, 4), bool)``, indexed ``[row, column, channel]``: 0 paddle, 1 ball, 2 trail
(the ball's previous cell), 3 brick.

## Rewards
+1 per brick broken (at most one per step).

## Starting state
Ball in row 3, either in column 0 moving down-right or in column 9 moving down-left (one
``randint(2)`` draw); paddle in column 4; bricks in rows 1 to 3.

## Episode end
Terminated when the ball reaches the bottom row neither above nor beside the paddle. No time
limit (the reference has none): ``max_episode_steps=None``.

## Constructor kwargs
``sticky_action_prob`` (0.1): probability of repeating the previous action instead (one draw
every step; the previous action carries over across episodes, as in the reference).
``difficulty_ramping`` (True): accepted for every game; Breakout has no ramping.

## Quirks of the reference, reproduced
* After the ball breaks a brick it bounces back, and on the very next step it passes through
  any brick it meets without breaking it (the ``strike`` flag lasts one step).
* The paddle test uses the ball's column *before* this step's move for the straight bounce and
  the column after it for the sideways one.
* New bricks appear only when the ball reaches the bottom row with none left, even if the
  episode ends on that step.
* A ball reflected off a side wall keeps its row move on the same step (it moves up or down
  along the wall).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from envs_numba.minatar import _common as C

CHANNELS = ("paddle", "ball", "trail", "brick")
N_CH = len(CHANNELS)
OBS_SIZE = 100 * N_CH
MINIMAL_ACTIONS = (C.NOOP, C.LEFT, C.RIGHT)

# state rows (integers stored as float64). Bricks only ever exist in rows 1..3: a 30-bit
# mask, bit 10 * (row - 1) + column.
S_BALL_X, S_BALL_Y, S_DIR, S_POS, S_STRIKE, S_LAST_X, S_LAST_Y, S_BRICKS, S_LAST_ACTION, S_TERMINAL = range(10)
STATE_DIM = 10
FULL_BRICKS = (1 << 30) - 1

# ball directions: 0 up-left, 1 up-right, 2 down-right, 3 down-left
DX = np.array([-1, 1, 1, -1], dtype=np.int64)
DY = np.array([-1, -1, 1, 1], dtype=np.int64)
FLIP_X = np.array([1, 0, 3, 2], dtype=np.int64)  # off a side wall
FLIP_Y = np.array([3, 2, 1, 0], dtype=np.int64)  # off the ceiling, a brick, the paddle's middle
FLIP_XY = np.array([2, 3, 0, 1], dtype=np.int64)  # off the paddle's side


# Each cell is 4 bytes (N_CH channels), so a uint64 holds two cells; rows 1..3 (the bricks,
# channel 3 of each cell) are written as 15 words, two mask bits each, before the ball and its
# trail (which may be in those rows).
BRICK_WORDS = np.array([(1 << 24) * (m & 1) + (1 << 56) * (m >> 1) for m in range(4)], dtype=np.uint64)


@njit(cache=True, _nrt=False, inline="always")
def _write_obs(i, state, obs):
    base = i * OBS_SIZE  # obs: the batch's flat observation bytes (see _common)
    C.clear_obs(obs, base, 10 * N_CH)  # row 0
    C.clear_obs(obs, base + 40 * N_CH, 60 * N_CH)  # rows 4..9
    first = np.uint64(base + 10 * N_CH)
    bricks = np.int64(state[S_BRICKS, i])
    for w in range(15):  # rows 1..3
        C.store_8_bytes(obs, first + np.uint64(8 * w), BRICK_WORDS[(bricks >> (2 * w)) & 3])
    ubase = np.uint64(base)  # unsigned indices: no wrap-around select per store (see asterix)
    obs[ubase + np.uint64((90 + np.int64(state[S_POS, i])) * N_CH)] = True
    obs[ubase + np.uint64((np.int64(state[S_BALL_Y, i]) * 10 + np.int64(state[S_BALL_X, i])) * N_CH + 1)] = True
    obs[ubase + np.uint64((np.int64(state[S_LAST_Y, i]) * 10 + np.int64(state[S_LAST_X, i])) * N_CH + 2)] = True


@njit(cache=True, _nrt=False)
def _reset_env(i, state, rng, params, obs, tape):
    start = C.draw_int(rng, i, 2, tape)
    x = 0 if start == 0 else 9
    state[S_BALL_X, i] = x
    state[S_BALL_Y, i] = 3
    state[S_DIR, i] = 2 if start == 0 else 3
    state[S_POS, i] = 4
    state[S_STRIKE, i] = 0
    state[S_LAST_X, i] = x
    state[S_LAST_Y, i] = 3
    state[S_BRICKS, i] = FULL_BRICKS
    state[S_TERMINAL, i] = 0
    _write_obs(i, state, obs)


@njit(cache=True, _nrt=False, inline="always")
def _step_env(i, action, state, rng, params, obs, tape):
    a = C.sticky_action(i, action, state, S_LAST_ACTION, rng, params, tape)
    if state[S_TERMINAL, i] != 0.0:  # a finished game: the draw is all (see _common)
        return 0.0, True
    pos = np.int64(state[S_POS, i])
    pos = min(max(pos + C.MOVE_X[a], 0), 9)  # no branch on the (random) action
    x = np.int64(state[S_BALL_X, i])
    y = np.int64(state[S_BALL_Y, i])
    d = np.int64(state[S_DIR, i])
    bricks = np.int64(state[S_BRICKS, i])
    strike = state[S_STRIKE, i] != 0
    new_x = x + DX[d]
    new_y = y + DY[d]
    reward = 0.0
    terminal = False
    strike_now = False
    if new_x < 0 or new_x > 9:
        new_x = 0 if new_x < 0 else 9
        d = FLIP_X[d]
    if new_y < 0:
        new_y = 0
        d = FLIP_Y[d]
    elif 1 <= new_y <= 3 and (bricks >> (10 * (new_y - 1) + new_x)) & 1:
        strike_now = True
        if not strike:
            reward = 1.0
            strike = True
            bricks &= ~(np.int64(1) << (10 * (new_y - 1) + new_x))
            new_y = y
            d = FLIP_Y[d]
    elif new_y == 9:
        if bricks == 0:
            bricks = FULL_BRICKS
        if x == pos:
            d = FLIP_Y[d]
            new_y = y
        elif new_x == pos:
            d = FLIP_XY[d]
            new_y = y
        else:
            terminal = True
    if not strike_now:
        strike = False
    state[S_POS, i] = pos
    state[S_LAST_X, i] = x
    state[S_LAST_Y, i] = y
    state[S_BALL_X, i] = new_x
    state[S_BALL_Y, i] = new_y
    state[S_DIR, i] = d
    state[S_BRICKS, i] = bricks
    state[S_STRIKE, i] = 1.0 if strike else 0.0
    state[S_TERMINAL, i] = terminal
    _write_obs(i, state, obs)
    return reward, terminal


@njit(cache=True, _nrt=False)
def reset(mask, state, rng, bounds, params, obs):
    flat = obs.reshape(obs.size)
    for i in range(mask.shape[0]):
        if mask[i]:  # draws random numbers: never vectorised
            _reset_env(i, state, rng, params, flat, None)


@njit(cache=True, _nrt=False)
def step(mask, actions, state, rng, params, obs, rewards, terminated):
    flat = obs.reshape(obs.size)
    for i in range(mask.shape[0]):
        if mask[i]:  # draws random numbers (sticky actions): never vectorised
            r, t = _step_env(i, actions[i], state, rng, params, flat, None)
            rewards[i] = r
            terminated[i] = t



@njit(cache=True, _nrt=False)
def observe(mask, state, params, obs):
    """Every env in ``mask`` gets its observation written again from its state alone (see
    ``_common.game_kernels``)."""
    flat = obs.reshape(obs.size)
    for i in range(mask.shape[0]):
        # the body holds a loop (the clear), so this loop is never vectorised
        if mask[i]:
            _write_obs(i, state, flat)

KERNEL_V1, KERNEL_V0 = C.game_kernels("Breakout", "breakout", CHANNELS, STATE_DIM, reset, step, _reset_env, _step_env,
                                      MINIMAL_ACTIONS, _write_obs, observe)
KERNELS = (KERNEL_V1, KERNEL_V0)
