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

# state rows: the chicken's row and timers, then per car its column, timer and signed speed
S_POS, S_MOVE_TIMER, S_TERM_TIMER, S_LAST_ACTION = range(4)
S_CAR_X = 4
S_CAR_TIMER = S_CAR_X + N_CARS
S_CAR_SPEED = S_CAR_TIMER + N_CARS
STATE_DIM = S_CAR_SPEED + N_CARS


@njit(cache=True, _nrt=False, inline="always")
def _write_obs(i, state, obs):
    # unsigned indices into obs: no wrap-around select per store (see asterix)
    base = np.uint64(i * OBS_SIZE)  # obs: the batch's flat observation bytes (see _common)
    C.clear_obs(obs, base, OBS_SIZE)
    obs[base + np.uint64((np.int64(state[S_POS, i]) * 10 + 4) * N_CH)] = True
    for k in range(N_CARS):
        row = base + np.uint64((k + 1) * 10 * N_CH)
        x = np.int64(state[S_CAR_X + k, i])
        speed = np.int64(state[S_CAR_SPEED + k, i])
        obs[row + np.uint64(x * N_CH + 1)] = True
        back = x - 1 if speed > 0 else x + 1
        back = 9 if back < 0 else (0 if back > 9 else back)
        if speed != 0:  # the trail, in its speed's channel (a car of speed 0 has none)
            obs[row + np.uint64(back * N_CH + 1 + abs(speed))] = True
@njit(cache=True, _nrt=False)
def _randomize_cars(i, state, rng, tape):
    """8 speeds ``randint(1, 6)``, then 8 directions ``sign(rand() - 0.5)``."""
    for k in range(N_CARS):
        state[S_CAR_SPEED + k, i] = 1 + C.draw_int(rng, i, 5, tape)
    for k in range(N_CARS):
        u = C.draw_double(rng, i, tape) - 0.5
        sign = 1.0 if u > 0.0 else (-1.0 if u < 0.0 else 0.0)
        speed = state[S_CAR_SPEED + k, i] * sign
        state[S_CAR_SPEED + k, i] = speed
        state[S_CAR_TIMER + k, i] = abs(speed)


@njit(cache=True, _nrt=False)
def _reset_env(i, state, rng, params, obs, tape):
    _randomize_cars(i, state, rng, tape)
    for k in range(N_CARS):
        state[S_CAR_X + k, i] = 0
    state[S_POS, i] = 9
    state[S_MOVE_TIMER, i] = PLAYER_SPEED
    state[S_TERM_TIMER, i] = TIME_LIMIT
    _write_obs(i, state, obs)


@njit(cache=True, _nrt=False, inline="always")
def _step_env(i, action, state, rng, params, obs, tape):
    a = C.sticky_action(i, action, state, S_LAST_ACTION, rng, params, tape)
    pos = np.int64(state[S_POS, i])
    move_timer = np.int64(state[S_MOVE_TIMER, i])
    # selects on a step table, not branches on the (random) action
    dy = C.MOVE_Y[a]
    moves = (move_timer == 0) & (dy != 0)
    pos = min(max(pos + dy, 0), 9) if moves else pos
    move_timer = PLAYER_SPEED if moves else move_timer
    reward = 0.0
    if pos == 0:
        reward = 1.0
        _randomize_cars(i, state, rng, tape)
        pos = 9
    for k in range(N_CARS):  # selects, not branches: which cars move is random per env
        y = k + 1
        x = np.int64(state[S_CAR_X + k, i])
        timer = np.int64(state[S_CAR_TIMER + k, i])
        speed = np.int64(state[S_CAR_SPEED + k, i])
        pos = 9 if (x == 4) & (y == pos) else pos
        move = timer == 0
        moved = x + (1 if speed > 0 else -1)
        moved = 9 if moved < 0 else (0 if moved > 9 else moved)
        x = moved if move else x
        timer = abs(speed) if move else timer - 1
        # after a move (a car that stayed was checked above, and y == 9 is no lane)
        pos = 9 if (x == 4) & (y == pos) else pos
        state[S_CAR_X + k, i] = x
        state[S_CAR_TIMER + k, i] = timer
    state[S_POS, i] = pos
    state[S_MOVE_TIMER, i] = move_timer - 1 if move_timer > 0 else 0
    term_timer = state[S_TERM_TIMER, i] - 1
    state[S_TERM_TIMER, i] = term_timer
    _write_obs(i, state, obs)
    return reward, term_timer < 0


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
