"""MinAtar Asterix (``MinAtar-Asterix-v1``, minimal actions; ``-v0``, all six), after the
``minatar`` package 1.0.15 (``minatar/environments/asterix.py``), as a batched kernel.

## Description
The agent moves freely in rows 1 to 8. Enemies and gold enter from the left or right edge of
those rows, at most one per row, and cross the screen. Touching gold scores; touching an
enemy ends the episode. Entities appear every ``spawn_speed`` steps and move every
``move_speed`` steps, both shrinking as the difficulty ramps.

## Action space
``-v1``: ``Discrete(5)``: 0 no-op, 1 left, 2 up, 3 right, 4 down (the package's minimal action
set ``n, l, u, r, d``). ``-v0``: ``Discrete(6)``, the package's numbering ``n, l, u, r, d, f``.

## Observation space
``Box(0, 1, (10, 10, 4), bool)``, indexed ``[row, column, channel]``: 0 player, 1 enemy,
2 trail (the cell behind each enemy or gold, when on the screen), 3 gold.

## Rewards
+1 per gold collected.

## Starting state
Always the same (no draws): player at row 5, column 5, no entities, an entity due in 10
steps, entities moving every 5 steps.

## Episode end
Terminated when the player and an enemy share a cell. No time limit
(``max_episode_steps=None``).

## Difficulty ramping
With ``difficulty_ramping=True`` (default): on step 102 and then every 102 steps, the spawn
interval drops by one (down to 1) and, every other time, the move interval too (down to 1);
the ramp stops once both are 1.

## Random draws
A spawn draws ``rand() < 1/2`` (enters from the left, moving right), ``rand() < 1/3`` (gold),
then ``randint(free rows)`` (which free row), in that order; when every row is taken the first
two are drawn anyway and nothing spawns.

## Constructor kwargs
``sticky_action_prob`` (0.1), ``difficulty_ramping`` (True).

## Quirks of the reference, reproduced
* The player is checked against every entity after its own move and again after the
  entities' move; a step that hits an enemy still collects gold later in the same step, and
  its reward counts.
* A new entity spawns before the player moves and does not move on the step it appears
  unless the entities' move falls on that step.
* Entities leave when they move off the screen; they are never checked against the player
  there.
* The ramp timer counts from 100 down to -1 and ramps on the step after (102 steps per
  level, not 100).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from envs_numba.minatar import _common as C

CHANNELS = ("player", "enemy", "trail", "gold")
N_CH = len(CHANNELS)
OBS_SIZE = 100 * N_CH
MINIMAL_ACTIONS = (C.NOOP, C.LEFT, C.UP, C.RIGHT, C.DOWN)
RAMP_INTERVAL = 100
INIT_SPAWN_SPEED = 10
INIT_MOVE_INTERVAL = 5
N_SLOTS = 8  # one entity per row 1..8

# state rows
(S_POS, S_SPAWN_SPEED, S_SPAWN_TIMER, S_MOVE_SPEED, S_MOVE_TIMER, S_RAMP_TIMER, S_RAMP,
 S_LAST_ACTION, S_SLOTS, S_TERMINAL) = range(10)
STATE_DIM = 10
# S_POS: the player's cell, row * 10 + column
# S_SLOTS: the 8 entity slots packed in one integer (< 2**48, exact in a float64), slot k in
# bits 6k..6k+5: bits 0-3 the column plus one (0: the slot is empty, and then so is the whole
# lane), bit 4 set when it moves right (it entered on the left), bit 5 when it is gold.
LANE = 6
X_BITS, RIGHT, GOLD = 15, 16, 32
L1 = np.uint64(sum(1 << (LANE * k) for k in range(N_SLOTS)))  # bit 0 of every lane
LX = np.uint64(int(L1) * X_BITS)  # the column field of every lane
L11 = np.uint64(int(L1) * 11)
# uint64 constants: numba turns an operation of a uint64 and an int64 into float64
U4, U0, U_LANE_MASK, U_X_BITS, U_GOLD = np.uint64(4), np.uint64(0), np.uint64(63), np.uint64(X_BITS), np.uint64(GOLD)
U_TOP = np.uint64(LANE * (N_SLOTS - 1))  # the last lane's offset
ROW_BYTES = 10 * N_CH


@njit(cache=True, _nrt=False, inline="always")
def _nonzero_x(v):
    """Bit 0 of each lane set where the lane's column field is not 0 (the field is 4 bits:
    adding 15 carries into bit 4 when it is not 0, and never out of the lane)."""
    return (((v & LX) + LX) >> U4) & L1


def _move_tables():
    """Per (minatar action, cell): the player's next cell, clamped to rows 1..8 and columns
    0..9; per cell: the column plus one, and the bit offset of its row's slot lane."""
    nxt = np.zeros(6 * 100, dtype=np.int64)
    for a in range(6):
        for pos in range(100):
            y, x = divmod(pos, 10)
            nxt[a * 100 + pos] = min(max(y + C.MOVE_Y[a], 1), 8) * 10 + min(max(x + C.MOVE_X[a], 0), 9)
    pos = np.arange(100)
    return nxt, (pos % 10 + 1).astype(np.uint64), (LANE * np.maximum(pos // 10 - 1, 0)).astype(np.uint64)


NEXT_POS, TARGET_X, LANE_SHIFT = _move_tables()


def _mark_tables():
    """Per lane value: the 8 bytes holding its entity's cell (channel 3 for gold, 1 for an enemy)
    and its trail's cell (channel 2: the cell it came from, when on the screen), as a
    little-endian uint64 of 0/1 bytes (0 for an empty slot), and per slot k and lane value
    (index ``64 * k + value``), where those 8 bytes start in an env's observation: inside row
    k + 1 (the two cells are at most 6 bytes apart)."""
    pattern = np.zeros(64, dtype=np.uint64)
    start = np.zeros(N_SLOTS * 64, dtype=np.uint16)
    for code in range(64):
        f = code & X_BITS
        marks = []
        if 1 <= f <= 10:  # a taken slot (f > 10 never occurs)
            x = f - 1
            marks.append(x * N_CH + (3 if code & GOLD else 1))
            back = x - 1 if code & RIGHT else x + 1
            if 0 <= back <= 9:
                marks.append(back * N_CH + 2)
        first = min(min(marks) if marks else 0, ROW_BYTES - 8)
        assert all(first <= m < first + 8 for m in marks)
        pattern[code] = sum(1 << (8 * (m - first)) for m in marks)
        for k in range(N_SLOTS):
            start[64 * k + code] = (k + 1) * ROW_BYTES + first
    return pattern, start


MARKS, MARKS_AT = _mark_tables()


@njit(cache=True, _nrt=False, inline="always")
def _write_obs(i, state, obs):
    # Indices into obs are unsigned: numba wraps a negative signed index around, a compare and
    # select per store that LLVM cannot drop for an index computed from the state.
    base = np.uint64(i * OBS_SIZE)  # obs: the batch's flat observation bytes (see _common)
    C.clear_obs(obs, base, OBS_SIZE)
    # Every slot stores the 8 bytes around its two cells whether it is taken or not (an empty
    # slot stores zeros into its cleared row): no branch on which slots are taken, which is
    # random. Only slot k writes row k + 1.
    v = np.uint64(np.int64(state[S_SLOTS, i]))
    for k in range(N_SLOTS):
        code = (v >> np.uint64(LANE * k)) & U_LANE_MASK
        C.store_8_bytes(obs, base + np.uint64(MARKS_AT[code + np.uint64(64 * k)]), MARKS[code])
    obs[base + np.uint64(np.int64(state[S_POS, i]) * N_CH)] = True


@njit(cache=True, _nrt=False)
def _reset_env(i, state, rng, params, obs, tape):
    state[S_POS, i] = 55
    state[S_SPAWN_SPEED, i] = INIT_SPAWN_SPEED
    state[S_SPAWN_TIMER, i] = INIT_SPAWN_SPEED
    state[S_MOVE_SPEED, i] = INIT_MOVE_INTERVAL
    state[S_MOVE_TIMER, i] = INIT_MOVE_INTERVAL
    state[S_RAMP_TIMER, i] = RAMP_INTERVAL
    state[S_RAMP, i] = 0
    state[S_SLOTS, i] = 0
    state[S_TERMINAL, i] = 0
    _write_obs(i, state, obs)


@njit(cache=True, _nrt=False, inline="always")
def _step_env(i, action, state, rng, params, obs, tape):
    a = C.sticky_action(i, action, state, S_LAST_ACTION, rng, params, tape)
    if state[S_TERMINAL, i] != 0.0:  # a finished game: the draw is all (see _common)
        return 0.0, True
    v = np.uint64(np.int64(state[S_SLOTS, i]))
    spawn_timer = np.int64(state[S_SPAWN_TIMER, i])
    spawn_speed = np.int64(state[S_SPAWN_SPEED, i])
    if spawn_timer == 0:
        right = C.draw_double(rng, i, tape) < 0.5
        gold = C.draw_double(rng, i, tape) < 1.0 / 3.0
        free_bits = L1 & ~_nonzero_x(v)
        free = np.int64(((free_bits * L1) >> U_TOP) & U_LANE_MASK)
        if free > 0:
            pick = C.draw_int(rng, i, free, tape)
            # the pick-th free slot: the free lane whose count of free lanes up to it is pick + 1
            prefix = (free_bits * L1) ^ (np.uint64(pick + 1) * L1)
            chosen = free_bits & ~_nonzero_x(prefix)
            lane = (RIGHT | 1 if right else 10) | (GOLD if gold else 0)
            v |= chosen * np.uint64(lane)
        spawn_timer = spawn_speed
    # a table lookup, not a branch on the action (random for random agents)
    pos = NEXT_POS[a * 100 + np.int64(state[S_POS, i])]
    shift = LANE_SHIFT[pos]  # the player's row (1..8) holds slot row - 1 only
    target = TARGET_X[pos]
    lane_bits = U_LANE_MASK << shift
    # selects, not branches: the lane is random
    lane = (v >> shift) & U_LANE_MASK
    hit = (lane & U_X_BITS) == target
    take = hit & ((lane & U_GOLD) != U0)
    v &= ~(lane_bits * np.uint64(take))  # arithmetic, not a select (LLVM makes it a branch)
    reward = 1.0 if take else 0.0
    terminal = hit & (not take)
    move_timer = np.int64(state[S_MOVE_TIMER, i])
    move_speed = np.int64(state[S_MOVE_SPEED, i])
    if move_timer == 0:
        move_timer = move_speed
        # every lane at once: one column right or left, and gone off the screen
        alive = _nonzero_x(v)
        right_bits = (v >> U4) & L1
        v = v + right_bits - (alive ^ right_bits)
        keep = _nonzero_x(v) & _nonzero_x((v & LX) ^ L11)
        v &= keep * U_LANE_MASK
        lane = (v >> shift) & U_LANE_MASK
        hit = (lane & U_X_BITS) == target
        take = hit & ((lane & U_GOLD) != U0)
        v &= ~(lane_bits * np.uint64(take))
        reward += 1.0 if take else 0.0
        terminal |= hit & (not take)
    state[S_SLOTS, i] = np.int64(v)
    spawn_timer -= 1
    move_timer -= 1
    if params[C.P_RAMPING] != 0.0 and (spawn_speed > 1 or move_speed > 1):
        ramp_timer = np.int64(state[S_RAMP_TIMER, i])
        if ramp_timer >= 0:
            state[S_RAMP_TIMER, i] = ramp_timer - 1
        else:
            ramp = np.int64(state[S_RAMP, i])
            if move_speed > 1 and ramp % 2:
                move_speed -= 1
            if spawn_speed > 1:
                spawn_speed -= 1
            state[S_RAMP, i] = ramp + 1
            state[S_RAMP_TIMER, i] = RAMP_INTERVAL
            state[S_SPAWN_SPEED, i] = spawn_speed
            state[S_MOVE_SPEED, i] = move_speed
    state[S_SPAWN_TIMER, i] = spawn_timer
    state[S_MOVE_TIMER, i] = move_timer
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
        if mask[i]:  # draws random numbers (sticky actions, spawns): never vectorised
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

KERNEL_V1, KERNEL_V0 = C.game_kernels("Asterix", "asterix", CHANNELS, STATE_DIM, reset, step, _reset_env, _step_env,
                                      MINIMAL_ACTIONS, _write_obs, observe)
KERNELS = (KERNEL_V1, KERNEL_V0)
