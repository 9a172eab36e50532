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

# state rows; entity slot k lives in row k + 1
(S_PX, S_PY, S_SPAWN_SPEED, S_SPAWN_TIMER, S_MOVE_SPEED, S_MOVE_TIMER, S_RAMP_TIMER, S_RAMP,
 S_LAST_ACTION) = range(9)
# slot k: one row, 0 when empty, else 1 | right << 1 | gold << 2 | column << 3 (``right``: it
# moves right, having entered on the left; ``gold``: gold, else an enemy). One row per slot
# instead of four: the observation reads 8 state rows per env, not 32.
S_SLOT = 9
STATE_DIM = S_SLOT + N_SLOTS
ALIVE, RIGHT, GOLD, X_SHIFT = 1, 2, 4, 3


def _slot_tables():
    """Per slot code (0..127): the offset in its row of the entity's cell (channel 3 for gold,
    1 for an enemy; cell 0, channel 1 for an empty slot, which stores False there), of its
    trail's cell (clamped to the screen), and whether the trail shows."""
    entity, trail, shown = [], [], []
    for code in range(128):
        x = code >> X_SHIFT
        back = x - 1 if code & RIGHT else x + 1
        entity.append(x * N_CH + (3 if code & GOLD else 1))
        trail.append(min(max(back, 0), 9) * N_CH + 2)
        shown.append(bool(code & ALIVE) and 0 <= back <= 9)
    return (np.array(entity, dtype=np.uint64), np.array(trail, dtype=np.uint64), np.array(shown, dtype=np.bool_))


ENTITY_CELL, TRAIL_CELL, TRAIL_SHOWN = _slot_tables()


@njit(cache=True, _nrt=False, inline="always")
def _write_obs(i, state, obs):
    # Indices into obs are unsigned: numba wraps a negative signed index around, a compare and
    # select per store that LLVM cannot drop for an index computed from the state.
    base = np.uint64(i * OBS_SIZE)  # obs: the batch's flat observation bytes (see _common)
    C.clear_obs(obs, base, OBS_SIZE)
    obs[base + np.uint64((np.int64(state[S_PY, i]) * 10 + np.int64(state[S_PX, i])) * N_CH)] = True
    # Every slot stores its two cells whether it is taken or not (an empty slot stores False
    # into cleared cells): no branch on which slots are taken, which is random. Only slot k
    # writes channels 1 to 3 of its row k + 1, so a False never hides another entity's True.
    for k in range(N_SLOTS):
        code = np.uint64(state[S_SLOT + k, i])
        row = base + np.uint64((k + 1) * 10 * N_CH)
        obs[row + ENTITY_CELL[code]] = (code & np.uint64(ALIVE)) != 0
        obs[row + TRAIL_CELL[code]] = TRAIL_SHOWN[code]


@njit(cache=True, _nrt=False)
def _reset_env(i, state, rng, params, obs, tape):
    state[S_PX, i] = 5
    state[S_PY, i] = 5
    state[S_SPAWN_SPEED, i] = INIT_SPAWN_SPEED
    state[S_SPAWN_TIMER, i] = INIT_SPAWN_SPEED
    state[S_MOVE_SPEED, i] = INIT_MOVE_INTERVAL
    state[S_MOVE_TIMER, i] = INIT_MOVE_INTERVAL
    state[S_RAMP_TIMER, i] = RAMP_INTERVAL
    state[S_RAMP, i] = 0
    for k in range(N_SLOTS):
        state[S_SLOT + k, i] = 0
    _write_obs(i, state, obs)


@njit(cache=True, _nrt=False, inline="always")
def _step_env(i, action, state, rng, params, obs, tape):
    a = C.sticky_action(i, action, state, S_LAST_ACTION, rng, params, tape)
    spawn_timer = np.int64(state[S_SPAWN_TIMER, i])
    spawn_speed = np.int64(state[S_SPAWN_SPEED, i])
    if spawn_timer == 0:
        right = C.draw_double(rng, i, tape) < 0.5
        gold = C.draw_double(rng, i, tape) < 1.0 / 3.0
        free = 0
        for k in range(N_SLOTS):
            free += state[S_SLOT + k, i] == 0.0
        if free > 0:
            pick = C.draw_int(rng, i, free, tape)
            for k in range(N_SLOTS):  # the pick-th free slot
                if state[S_SLOT + k, i] == 0.0:
                    if pick == 0:
                        state[S_SLOT + k, i] = ALIVE | (RIGHT if right else 0) | (GOLD if gold else 0) | (
                            (0 if right else 9) << X_SHIFT)
                        break
                    pick -= 1
        spawn_timer = spawn_speed
    px = np.int64(state[S_PX, i])
    py = np.int64(state[S_PY, i])
    # table lookups and clamps, not a branch on the action (random for random agents)
    px = min(max(px + C.MOVE_X[a], 0), 9)
    py = min(max(py + C.MOVE_Y[a], 1), 8)
    reward = 0.0
    terminal = False
    k = py - 1  # the player's row (1..8) holds slot py - 1 only
    code = np.int64(state[S_SLOT + k, i])
    if (code & ALIVE) and (code >> X_SHIFT) == px:
        if code & GOLD:
            state[S_SLOT + k, i] = 0
            reward += 1.0
        else:
            terminal = True
    move_timer = np.int64(state[S_MOVE_TIMER, i])
    move_speed = np.int64(state[S_MOVE_SPEED, i])
    if move_timer == 0:
        move_timer = move_speed
        for k in range(N_SLOTS):  # selects, not branches: which slots are taken is random
            code = np.int64(state[S_SLOT + k, i])
            alive = (code & ALIVE) != 0
            gold = (code & GOLD) != 0
            x = (code >> X_SHIFT) + (code & RIGHT) - 1  # one cell right or left (-1 when empty)
            stays = alive & (0 <= x) & (x <= 9)  # an entity leaving the screen is gone
            hit = stays & (x == px) & (k + 1 == py)
            keep = stays & (not (hit & gold))
            state[S_SLOT + k, i] = ((code & (ALIVE | RIGHT | GOLD)) | (x << X_SHIFT)) if keep else 0
            reward += 1.0 if hit & gold else 0.0
            terminal |= hit & (not gold)
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
    state[S_SPAWN_TIMER, i] = spawn_timer
    state[S_SPAWN_SPEED, i] = spawn_speed
    state[S_MOVE_TIMER, i] = move_timer
    state[S_MOVE_SPEED, i] = move_speed
    state[S_PX, i] = px
    state[S_PY, i] = py
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
