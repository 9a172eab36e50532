"""MinAtar Space Invaders (``MinAtar-SpaceInvaders-v1``, minimal actions; ``-v0``, all six),
after the ``minatar`` package 1.0.15 (``minatar/environments/space_invaders.py``), as a batched
kernel.

## Description
The agent moves a cannon along the bottom row and shoots at a block of aliens (rows 0 to 3,
columns 2 to 7 at the start) that moves sideways, one step down and back each time it
reaches a side, faster as fewer aliens are left. The alien nearest to the cannon shoots every
10 steps. A cleared wave is followed by a new one, faster when difficulty ramps.

## Action space
``-v1``: ``Discrete(4)``: 0 no-op, 1 left, 2 right, 3 fire (the package's minimal action set
``n, l, r, f``). ``-v0``: ``Discrete(6)``, the package's numbering ``n, l, u, r, d, f``.

## Observation space
``Box(0, 1, (10, 10, 6), bool)``, indexed ``[row, column, channel]``: 0 cannon, 1 alien,
2 alien while the block moves left, 3 alien while it moves right, 4 the agent's bullet,
5 an alien bullet.

## Rewards
+1 per alien shot (a step's reward is the number of aliens hit on that step).

## Starting state
Always the same: cannon in column 5, a full block moving left, alien moves every 12 steps,
alien shots every 10 steps. No random draws (the only draws are the sticky actions').

## Episode end
Terminated when an alien bullet or an alien reaches the cannon, or the block would move down
while aliens are in the bottom row. No time limit (``max_episode_steps=None``).

## Difficulty ramping
With ``difficulty_ramping=True`` (default) each new wave moves one step more often (the move
interval drops from 12 by one per wave, down to 6).

## Constructor kwargs
``sticky_action_prob`` (0.1), ``difficulty_ramping`` (True).

## Quirks of the reference, reproduced
* The block moves every ``min(aliens left, move interval)`` steps, timed from its last move:
  the interval is re-read only when it moves.
* The block moving down is a roll of the map: on the step that ends the episode because
  aliens were in the bottom row, those aliens appear in the top row of the last observation.
* The shooting alien is the lowest one in the nearest column to the cannon that has aliens,
  ties between columns going to the left one; its bullet starts in the alien's own cell.
* A bullet and an alien only hit when they share a cell after both moved: they can pass
  through each other.
* Firing while the gun cools down (5 steps) does nothing.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from envs_numba.minatar import _common as C

CHANNELS = ("cannon", "alien", "alien_left", "alien_right", "friendly_bullet", "enemy_bullet")
N_CH = len(CHANNELS)
OBS_SIZE = 100 * N_CH
MINIMAL_ACTIONS = (C.NOOP, C.LEFT, C.RIGHT, C.FIRE)
SHOT_COOL_DOWN = 5
ENEMY_MOVE_INTERVAL = 12
ENEMY_SHOT_INTERVAL = 10
WAVE_ROW = 0b0011111100  # columns 2..7

# state rows. The three 10x10 maps are stored as one 10-bit mask per row (bit x = column x).
S_POS, S_DIR, S_MOVE_INTERVAL, S_MOVE_TIMER, S_SHOT_TIMER_ALIEN, S_RAMP, S_SHOT_TIMER, S_LAST_ACTION, S_TERMINAL = range(9)
S_ALIEN = 9
S_FB = S_ALIEN + 10  # friendly bullets
S_EB = S_FB + 10  # enemy bullets
STATE_DIM = S_EB + 10

POPCOUNT = np.array([bin(m).count("1") for m in range(1024)], dtype=np.int64)
LOWEST_BIT = np.array([(m & -m).bit_length() - 1 for m in range(1024)], dtype=np.int64)  # -1 for 0
# the row offset of the lowest set bit's cell (unsigned: an index into obs), 0 for no bit
CELL_OFFSET = np.array([max(b, 0) * N_CH for b in LOWEST_BIT], dtype=np.uint64)
# columns in the order the reference searches them for the nearest alien (stable sort by
# distance to the cannon: ties go to the lower column), one row per cannon column
SEARCH = np.array([sorted(range(10), key=lambda c: abs(c - p)) for p in range(10)], dtype=np.int64)


@njit(cache=True, _nrt=False, inline="always")
def _write_obs(i, state, obs):
    # cleared, then only the cells that hold something: each row's set bits, lowest first
    # unsigned indices into obs: no wrap-around select per store (see asterix)
    base = np.uint64(i * OBS_SIZE)  # obs: the batch's flat observation bytes (see _common)
    C.clear_obs(obs, base, OBS_SIZE)
    obs[base + np.uint64((90 + np.int64(state[S_POS, i])) * N_CH)] = True
    moving = np.uint64(2 if state[S_DIR, i] < 0 else 3)  # alien_left or alien_right
    for y in range(10):
        row = base + np.uint64(y * 10 * N_CH)
        m = np.int64(state[S_ALIEN + y, i])
        while m:
            cell = row + CELL_OFFSET[m]
            obs[cell + np.uint64(1)] = True
            obs[cell + moving] = True
            m &= m - 1
        m = np.int64(state[S_FB + y, i])
        while m:
            obs[row + CELL_OFFSET[m] + np.uint64(4)] = True
            m &= m - 1
        m = np.int64(state[S_EB + y, i])
        while m:
            obs[row + CELL_OFFSET[m] + np.uint64(5)] = True
            m &= m - 1


@njit(cache=True, _nrt=False)
def _reset_env(i, state, rng, params, obs, tape):
    state[S_POS, i] = 5
    state[S_DIR, i] = -1
    state[S_MOVE_INTERVAL, i] = ENEMY_MOVE_INTERVAL
    state[S_MOVE_TIMER, i] = ENEMY_MOVE_INTERVAL
    state[S_SHOT_TIMER_ALIEN, i] = ENEMY_SHOT_INTERVAL
    state[S_RAMP, i] = 0
    state[S_SHOT_TIMER, i] = 0
    for y in range(10):
        state[S_ALIEN + y, i] = WAVE_ROW if y < 4 else 0
        state[S_FB + y, i] = 0
        state[S_EB + y, i] = 0
    state[S_TERMINAL, i] = 0
    _write_obs(i, state, obs)


@njit(cache=True, _nrt=False, inline="always")
def _step_env(i, action, state, rng, params, obs, tape):
    a = C.sticky_action(i, action, state, S_LAST_ACTION, rng, params, tape)
    if state[S_TERMINAL, i] != 0.0:  # a finished game: the draw is all (see _common)
        return 0.0, True
    pos = np.int64(state[S_POS, i])
    shot_timer = np.int64(state[S_SHOT_TIMER, i])
    terminal = False
    if a == C.FIRE and shot_timer == 0:
        state[S_FB + 9, i] = np.int64(state[S_FB + 9, i]) | (1 << pos)
        shot_timer = SHOT_COOL_DOWN
    pos = min(max(pos + C.MOVE_X[a], 0), 9)  # a step table, not a branch on the action
    # friendly bullets up one row, enemy bullets down one row (rolls, the wrapped row cleared)
    for y in range(9):
        state[S_FB + y, i] = state[S_FB + y + 1, i]
    state[S_FB + 9, i] = 0
    for y in range(9, 0, -1):
        state[S_EB + y, i] = state[S_EB + y - 1, i]
    state[S_EB, i] = 0
    if (np.int64(state[S_EB + 9, i]) >> pos) & 1:
        terminal = True
    # aliens
    if (np.int64(state[S_ALIEN + 9, i]) >> pos) & 1:
        terminal = True
    move_timer = np.int64(state[S_MOVE_TIMER, i])
    interval = np.int64(state[S_MOVE_INTERVAL, i])
    d = np.int64(state[S_DIR, i])
    if move_timer == 0:
        count = 0
        cols = 0
        for y in range(10):
            m = np.int64(state[S_ALIEN + y, i])
            count += POPCOUNT[m]
            cols |= m
        move_timer = min(count, interval)
        if (cols & 1 and d < 0) or ((cols >> 9) & 1 and d > 0):
            d = -d
            if state[S_ALIEN + 9, i] != 0:
                terminal = True
            last = state[S_ALIEN + 9, i]
            for y in range(9, 0, -1):
                state[S_ALIEN + y, i] = state[S_ALIEN + y - 1, i]
            state[S_ALIEN, i] = last
        else:
            for y in range(10):
                m = np.int64(state[S_ALIEN + y, i])
                if d > 0:
                    m = ((m << 1) | (m >> 9)) & 1023
                else:
                    m = ((m >> 1) | ((m & 1) << 9)) & 1023
                state[S_ALIEN + y, i] = m
        if (np.int64(state[S_ALIEN + 9, i]) >> pos) & 1:
            terminal = True
    alien_shot_timer = np.int64(state[S_SHOT_TIMER_ALIEN, i])
    if alien_shot_timer == 0:
        alien_shot_timer = ENEMY_SHOT_INTERVAL
        for k in range(10):
            col = SEARCH[pos, k]
            row = -1
            for y in range(10):
                if (np.int64(state[S_ALIEN + y, i]) >> col) & 1:
                    row = y
            if row >= 0:
                state[S_EB + row, i] = np.int64(state[S_EB + row, i]) | (1 << col)
                break
    # bullets and aliens in the same cell
    reward = 0.0
    left = 0
    for y in range(10):
        m = np.int64(state[S_ALIEN + y, i])
        fb = np.int64(state[S_FB + y, i])
        kill = m & fb
        reward += POPCOUNT[kill]
        state[S_ALIEN + y, i] = m & ~kill
        state[S_FB + y, i] = fb & ~kill
        left += POPCOUNT[m & ~kill]
    state[S_SHOT_TIMER, i] = shot_timer - 1 if shot_timer > 0 else 0
    state[S_MOVE_TIMER, i] = move_timer - 1
    state[S_SHOT_TIMER_ALIEN, i] = alien_shot_timer - 1
    if left == 0:
        if interval > 6 and params[C.P_RAMPING] != 0.0:
            interval -= 1
            state[S_RAMP, i] += 1
        for y in range(4):
            state[S_ALIEN + y, i] = WAVE_ROW
    state[S_MOVE_INTERVAL, i] = interval
    state[S_DIR, i] = d
    state[S_POS, i] = pos
    state[S_TERMINAL, i] = terminal
    _write_obs(i, state, obs)
    return reward, terminal


@njit(cache=True, _nrt=False)
def reset(mask, state, rng, bounds, params, obs):
    flat = obs.reshape(obs.size)
    for i in range(mask.shape[0]):
        # no random draws here, but the body holds loops (the observation), so this loop is
        # never the innermost one and is not vectorised (fastsample.check verifies it)
        if mask[i]:
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

KERNEL_V1, KERNEL_V0 = C.game_kernels("SpaceInvaders", "space_invaders", CHANNELS, STATE_DIM, reset, step, _reset_env, _step_env,
                                      MINIMAL_ACTIONS, _write_obs, observe)
KERNELS = (KERNEL_V1, KERNEL_V0)
