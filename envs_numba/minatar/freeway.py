"""MinAtar Freeway (``MinAtar-Freeway-v1``, minimal actions; ``-v0``, all six), after the
``minatar`` package 1.0.15 (``minatar/environments/freeway.py``), as a batched kernel.

## Description
A chicken crosses a road of eight lanes, from the bottom row to the top, in column 4. Each
lane (rows 1 to 8) has one car moving left or right at one of five speeds (a car of speed
``s`` moves one cell every ``s + 1`` steps) and wrapping around the edges. A car that meets
the chicken sends it back to the bottom row. The chicken can move one row every three steps.

## Action space
``-v1``: ``Discrete(3)``: 0 no-op, 1 up, 2 down (the package's minimal action set ``n, u,
d``). ``-v0``: ``Discrete(6)``, the package's numbering ``n, l, u, r, d, f``.

## Observation space
``Box(0, 1, (10, 10, 7), bool)``, indexed ``[row, column, channel]``: 0 chicken, 1 car,
2..6 the cell behind a car, in the channel of its speed (2 for speed 1 ... 6 for speed 5).

## Rewards
+1 each time the chicken reaches the top row (it then starts again from the bottom row and
every car gets a new speed and direction, keeping its position).

## Starting state
Chicken in row 9; every car in column 0 with a speed ``randint(1, 6)`` and a direction
``sign(rand() - 0.5)`` (8 speed draws, then 8 direction draws); the chicken's move timer at 3.

## Episode end
Terminated after exactly 2501 steps (the reference's timer starts at 2500 and ends the
episode when it goes below 0). There is no other way to end it, so ``max_episode_steps`` is
None. No ramping.

## Constructor kwargs
``sticky_action_prob`` (0.1), ``difficulty_ramping`` (accepted; Freeway has no ramping).

## Quirks of the reference, reproduced
* A car moves only when its timer is 0; the timer is then set to ``|speed|``, so a car of
  speed ``s`` moves every ``s + 1`` steps ("speed 1" is the fastest).
* Each car checks for the chicken before and after its own move, cars in lane order, after
  the chicken's move and the win check of the same step.
* The episode lasts 2501 steps, not 2500.
* ``sign(rand() - 0.5)`` is 0 for a draw of exactly 0.5 (probability 2**-53 per draw): such a
  car has speed 0 and moves left every step. The reference then draws its speed trail in the
  previous car's channel (or fails for the first car); we draw no trail for it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from envs_numba.minatar import _common as C

CHANNELS = ("chicken", "car", "speed1", "speed2", "speed3", "speed4", "speed5")
N_CH = len(CHANNELS)
OBS_SIZE = 100 * N_CH
MINIMAL_ACTIONS = (C.NOOP, C.UP, C.DOWN)
PLAYER_SPEED = 3
TIME_LIMIT = 2500
N_CARS = 8

# state rows: the chicken's row and timers, then the cars, packed: car k in bits 6k..6k+5 of
# each S_CAR_ row (8 lanes of 6 bits, < 2**48: exact in a float64). S_CAR_X: its column;
# S_CAR_TIMER: its move timer; S_CAR_SPEED: |speed| in bits 0-2, bit 3 set when it moves right
# (speed > 0; a car of speed 0 has |speed| 0 and moves left).
S_POS, S_MOVE_TIMER, S_TERM_TIMER, S_LAST_ACTION, S_CAR_X, S_CAR_TIMER, S_CAR_SPEED, S_TERMINAL = range(8)
STATE_DIM = 8
LANE = 6
DIR_BIT = 8
L1 = np.uint64(sum(1 << (LANE * k) for k in range(N_CARS)))  # bit 0 of every lane
# uint64 constants: numba turns an operation of a uint64 and an int64 into float64
L7 = np.uint64(int(L1) * 7)
L22 = np.uint64(int(L1) * 22)
U0, U3, U4, U5, U7, U8, U9, U10, U63 = (np.uint64(v) for v in (0, 3, 4, 5, 7, 8, 9, 10, 63))


def _trail_tables():
    """Per car code ``x | speed lane << 4`` (0..255): the offset in its row of the car's cell
    and of its trail's cell (the one it came from, wrapping around, in its speed's channel; a
    car of speed 0 has none: channel 1 of its own cell, which stores True anyway)."""
    car = np.zeros(256, dtype=np.uint64)
    trail = np.zeros(256, dtype=np.uint64)
    for code in range(256):
        x, s = code & 15, code >> 4
        x = min(x, 9)  # x > 9 never occurs
        speed = s & 7
        car[code] = x * N_CH + 1
        if speed == 0:
            trail[code] = x * N_CH + 1
        else:
            back = (x - 1) % 10 if s & DIR_BIT else (x + 1) % 10
            trail[code] = back * N_CH + 1 + speed
    return car, trail


CAR_CELL, TRAIL_CELL = _trail_tables()
ROW_BYTES = 10 * N_CH
# the chicken's next row per (minatar action, row), clamped to 0..9
NEXT_POS = np.array([min(max(p + C.MOVE_Y[a], 0), 9) for a in range(6) for p in range(10)], dtype=np.int64)
# per chicken row: the bit offset of its lane's car (rows 1..8; 0 for rows 0 and 9)
LANE_SHIFT = np.array([LANE * min(max(p - 1, 0), N_CARS - 1) for p in range(10)], dtype=np.uint64)


@njit(cache=True, _nrt=False, inline="always")
def _write_obs(i, state, obs):
    # unsigned indices into obs: no wrap-around select per store (see asterix)
    base = np.uint64(i * OBS_SIZE)  # obs: the batch's flat observation bytes (see _common)
    xs = np.uint64(np.int64(state[S_CAR_X, i]))
    ss = np.uint64(np.int64(state[S_CAR_SPEED, i]))
    # Row by row, each cleared then marked: LLVM stores the clears inline (one clear of the
    # 700 bytes became a call of memset).
    C.clear_obs(obs, base, ROW_BYTES)
    for k in range(N_CARS):
        sh = np.uint64(LANE * k)
        code = ((xs >> sh) & U63) | (((ss >> sh) & U63) << U4)
        row = base + np.uint64((k + 1) * ROW_BYTES)
        C.clear_obs(obs, row, ROW_BYTES)
        obs[row + CAR_CELL[code]] = True
        obs[row + TRAIL_CELL[code]] = True
    C.clear_obs(obs, base + np.uint64(9 * ROW_BYTES), ROW_BYTES)
    obs[base + np.uint64((np.int64(state[S_POS, i]) * 10 + 4) * N_CH)] = True


@njit(cache=True, _nrt=False)
def _randomize_cars(i, state, rng, tape):
    """8 speeds ``randint(1, 6)``, then 8 directions ``sign(rand() - 0.5)``; every car's timer
    set to its |speed|."""
    sizes = U0  # the speeds' absolute values, one lane each
    for k in range(N_CARS):
        sizes |= np.uint64(1 + C.draw_int(rng, i, 5, tape)) << np.uint64(LANE * k)
    speeds = U0
    for k in range(N_CARS):
        sh = np.uint64(LANE * k)
        u = C.draw_double(rng, i, tape) - 0.5
        s = (sizes >> sh) & U7
        speed = s | U8 if u > 0.0 else (s if u < 0.0 else U0)
        speeds |= speed << sh
    state[S_CAR_SPEED, i] = np.int64(speeds)
    state[S_CAR_TIMER, i] = np.int64(speeds & L7)


@njit(cache=True, _nrt=False)
def _reset_env(i, state, rng, params, obs, tape):
    _randomize_cars(i, state, rng, tape)
    state[S_CAR_X, i] = 0
    state[S_POS, i] = 9
    state[S_MOVE_TIMER, i] = PLAYER_SPEED
    state[S_TERM_TIMER, i] = TIME_LIMIT
    state[S_TERMINAL, i] = 0
    _write_obs(i, state, obs)


@njit(cache=True, _nrt=False, inline="always")
def _step_env(i, action, state, rng, params, obs, tape):
    a = C.sticky_action(i, action, state, S_LAST_ACTION, rng, params, tape)
    if state[S_TERMINAL, i] != 0.0:  # a finished game: the draw is all (see _common)
        return 0.0, True
    pos = np.int64(state[S_POS, i])
    move_timer = np.int64(state[S_MOVE_TIMER, i])
    # selects and a table lookup made every step, not branches on the (random) action or on
    # the chicken's timer (a select between a load and pos was a branch)
    ready = move_timer == 0
    moves = ready & (C.MOVE_Y[a] != 0)
    pos = NEXT_POS[np.uint64((a if ready else C.NOOP) * 10 + pos)]  # a no-op's row is pos
    move_timer = PLAYER_SPEED if moves else move_timer
    reward = 0.0
    if pos == 0:
        reward = 1.0
        _randomize_cars(i, state, rng, tape)
        pos = 9
    # every car at once: a car whose timer is 0 moves one cell (wrapping around) and its timer
    # restarts at |speed|; the others count down
    xs = np.uint64(np.int64(state[S_CAR_X, i]))
    ts = np.uint64(np.int64(state[S_CAR_TIMER, i]))
    ss = np.uint64(np.int64(state[S_CAR_SPEED, i]))
    waiting = (((ts & L7) + L7) >> U3) & L1  # bit 0 of each lane whose timer is not 0
    moving = L1 ^ waiting
    right = (ss >> U3) & L1 & moving
    y = xs + right + (moving ^ right) * U9  # + 1 right, + 9 (= - 1 mod 10) left: at most 18
    wrapped = ((y + L22) >> U5) & L1  # y >= 10
    new_xs = y - wrapped * U10
    state[S_CAR_X, i] = np.int64(new_xs)
    state[S_CAR_TIMER, i] = np.int64((ts - waiting) | (ss & (moving * U7)))
    # the chicken's lane (rows 1..8) holds car pos - 1 only; it is checked before and after
    # its move (the cars of other lanes cannot meet the chicken)
    sh = LANE_SHIFT[pos]
    hit = (((xs >> sh) & U63) == U4) | (((new_xs >> sh) & U63) == U4)
    pos = 9 if hit & (pos <= 8) else pos
    state[S_POS, i] = pos
    state[S_MOVE_TIMER, i] = move_timer - 1 if move_timer > 0 else 0
    term_timer = state[S_TERM_TIMER, i] - 1
    state[S_TERM_TIMER, i] = term_timer
    terminal = term_timer < 0
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

KERNEL_V1, KERNEL_V0 = C.game_kernels("Freeway", "freeway", CHANNELS, STATE_DIM, reset, step, _reset_env, _step_env,
                                      MINIMAL_ACTIONS, _write_obs, observe)
KERNELS = (KERNEL_V1, KERNEL_V0)
