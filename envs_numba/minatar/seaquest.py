"""MinAtar Seaquest (``MinAtar-Seaquest-v1`` and ``-v0``: both all six actions, the package's
minimal set for Seaquest being all of them), after the ``minatar`` package 1.0.15
(``minatar/environments/seaquest.py``), as a batched kernel.

## Description
The agent steers a submarine under water (rows 1 to 8, row 0 is the surface), shoots enemy
fish and enemy submarines (which shoot back), and rescues divers. Oxygen runs out under
water; surfacing with at least one diver refills it and costs one diver, surfacing with six
pays a bonus, surfacing with none ends the episode.

## Action space
``Discrete(6)``: 0 no-op, 1 left, 2 up, 3 right, 4 down, 5 fire (the package's ``n, l, u, r,
d, f``).

## Observation space
``Box(0, 1, (10, 10, 10), bool)``, indexed ``[row, column, channel]``: 0 sub front, 1 sub
back, 2 the agent's bullet, 3 trail (behind fish, enemy subs and divers), 4 enemy bullet,
5 enemy fish, 6 enemy sub, 7 oxygen gauge (row 9, one cell per 20 oxygen), 8 diver gauge
(row 9, right to left), 9 diver.

## Rewards
+1 per enemy shot; when surfacing with six divers, ``oxygen * 10 // 200`` more.

## Starting state
Always the same (no draws): sub at the surface in column 5 facing left, full oxygen (200),
no divers, an enemy due in 20 steps and a diver in 30.

## Episode end
Terminated on touching an enemy or an enemy bullet, when oxygen is out, or when surfacing
without divers. No time limit (``max_episode_steps=None``).

## Difficulty ramping
With ``difficulty_ramping=True`` (default) each surfacing that refills oxygen makes enemies
appear one step sooner (down to every step) and, every other time, move one step sooner
(down to every 3 steps), until both are at their limit.

## Random draws
An enemy spawn draws ``rand() < 1/2`` (enters on the left, moving right), ``rand() < 1/3``
(a sub, else a fish), ``randint(1, 9)`` (the row); it is dropped when an enemy moving the
other way is in that row. A diver spawn (every 30 steps) draws ``rand() < 1/2`` and
``randint(1, 9)``.

## Constructor kwargs
``sticky_action_prob`` (0.1), ``difficulty_ramping`` (True).

## Quirks of the reference, reproduced
* Surfacing with six divers sets the count to 0 and then takes one diver like any
  surfacing, leaving **-1** divers: the gauge shows none, the next diver brings the count
  to 0, and a later surfacing with "no" divers (count -1 or below) refills oxygen instead of
  ending the episode (each such surfacing lowers the count further).
* The reference keeps entities in Python lists, iterates them in reverse while removing from
  them, and removes by value (``list.remove`` drops the first *equal* element, not
  necessarily the one in hand). We keep each list in order in fixed state rows and replay
  exactly that: the reverse iterator's index, the first-equal removal, and the iteration that
  stops when the index falls outside the shrunken list.
* An enemy sub that leaves the screen or is shot on a step when its gun is ready still fires
  that step (from its last position, off the screen when it just left; such a bullet is
  dropped the same step). The bullet's column is the sub's either way.
* Enemies, divers and bullets move and collide in a fixed order (the agent's bullets, divers,
  subs, enemy bullets, fish), so a fish can move into a bullet that already moved this step.
* The oxygen check comes before this step's oxygen use: the episode ends one step after
  oxygen reaches 0.
* Diver rescue: a diver is picked up only while fewer than six are aboard, before or after
  its own move.

The lists have fixed capacities (agent bullets 4, enemy bullets 64, fish 48, enemy subs 48,
divers 6), above what the game's timers allow: one shot per 5 steps living at most 9 steps
(2 bullets), at most one enemy per step living at most 33 steps once enemies come every step
(34 fish and subs together; 42 measured when tests start at the otherwise unreachable
"every step, slowest moves"), one diver per 30 steps living at most 66 (3), at most one
bullet per sub alive or gone within 10 steps. An entity that would not fit is dropped.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from envs_numba.minatar import _common as C

CHANNELS = ("sub_front", "sub_back", "friendly_bullet", "trail", "enemy_bullet", "enemy_fish", "enemy_sub",
            "oxygen_guage", "diver_guage", "diver")
N_CH = len(CHANNELS)
OBS_SIZE = 100 * N_CH
MINIMAL_ACTIONS = C.FULL_ACTION_SET
MAX_OXYGEN = 200
INIT_SPAWN_SPEED = 20
DIVER_SPAWN_SPEED = 30
INIT_MOVE_INTERVAL = 5
SHOT_COOL_DOWN = 5
ENEMY_SHOT_INTERVAL = 10
DIVER_MOVE_INTERVAL = 5

# scalar state rows
(S_OXYGEN, S_DIVERS, S_SX, S_SY, S_OR, S_E_SPAWN_SPEED, S_E_SPAWN_TIMER, S_D_SPAWN_TIMER, S_MOVE_SPEED,
 S_RAMP, S_SHOT_TIMER, S_SURFACE, S_LAST_ACTION) = range(13)

# entity lists: a count row, then one block of ``cap`` rows per field (element k's field f is
# row base + 1 + f * cap + k). Fields: x, y, direction (1.0 right), then timers.
X, Y, D, T, SHOT = 0, 1, 2, 3, 4
FB_CAP, EB_CAP, FISH_CAP, SUB_CAP, DIV_CAP = 4, 64, 48, 48, 6
FB_NF, EB_NF, FISH_NF, SUB_NF, DIV_NF = 3, 3, 4, 5, 4
FB = 13
EB = FB + 1 + FB_CAP * FB_NF
FISH = EB + 1 + EB_CAP * EB_NF
SUB = FISH + 1 + FISH_CAP * FISH_NF
DIV = SUB + 1 + SUB_CAP * SUB_NF
STATE_DIM = DIV + 1 + DIV_CAP * DIV_NF
# first row of each field of each list
DIV_D = DIV + 1 + D * DIV_CAP
DIV_T = DIV + 1 + T * DIV_CAP
DIV_X = DIV + 1 + X * DIV_CAP
DIV_Y = DIV + 1 + Y * DIV_CAP
EB_D = EB + 1 + D * EB_CAP
EB_X = EB + 1 + X * EB_CAP
EB_Y = EB + 1 + Y * EB_CAP
FB_D = FB + 1 + D * FB_CAP
FB_X = FB + 1 + X * FB_CAP
FB_Y = FB + 1 + Y * FB_CAP
FISH_D = FISH + 1 + D * FISH_CAP
FISH_T = FISH + 1 + T * FISH_CAP
FISH_X = FISH + 1 + X * FISH_CAP
FISH_Y = FISH + 1 + Y * FISH_CAP
SUB_D = SUB + 1 + D * SUB_CAP
SUB_SHOT = SUB + 1 + SHOT * SUB_CAP
SUB_T = SUB + 1 + T * SUB_CAP
SUB_X = SUB + 1 + X * SUB_CAP
SUB_Y = SUB + 1 + Y * SUB_CAP


# Numba types a module constant passed as an argument as a literal and compiles a helper
# once per literal; wrapped in U (a plain int64) every list shares one compiled helper.
U = np.int64


@njit(cache=True, _nrt=False)
def _delete(state, i, base, cap, nf, j):
    """``del list[j]``."""
    n = np.int64(state[base, i])
    for f in range(nf):
        row = base + 1 + f * cap
        for k in range(j, n - 1):
            state[row + k, i] = state[row + k + 1, i]
    state[base, i] = n - 1


@njit(cache=True, _nrt=False)
def _remove(state, i, base, cap, nf, pos):
    """``list.remove(list[pos])``: delete the first element equal to element ``pos``; return
    the index deleted (``<= pos``)."""
    for j in range(pos + 1):
        same = True
        for f in range(nf):
            row = base + 1 + f * cap
            if state[row + j, i] != state[row + pos, i]:
                same = False
                break
        if same:
            _delete(state, i, base, cap, nf, j)
            return j
    return pos  # not reached: element pos equals itself


@njit(cache=True, _nrt=False)
def _append(state, i, base, cap, x, y, d, t, s):
    """``list.append([x, y, d, t, s][:nf])`` (fields beyond the list's are ignored). Every
    value is a float64 at every call site, so this compiles once."""
    n = np.int64(state[base, i])
    if n >= cap:
        return
    state[base + 1 + X * cap + n, i] = x
    state[base + 1 + Y * cap + n, i] = y
    state[base + 1 + D * cap + n, i] = d
    if base == FISH or base == SUB or base == DIV:
        state[base + 1 + T * cap + n, i] = t
    if base == SUB:
        state[base + 1 + SHOT * cap + n, i] = s
    state[base, i] = n + 1


@njit(cache=True, _nrt=False)
def _first_at(state, i, base, cap, x, y):
    """Index of the first element at column ``x``, row ``y``, or -1."""
    n = np.int64(state[base, i])
    for k in range(n):
        if state[base + 1 + X * cap + k, i] == x and state[base + 1 + Y * cap + k, i] == y:
            return k
    return -1


# The observation stores the first few elements of each list unconditionally (an element
# past the list's end stores False into DUMMY_ROW, row 9, where no entity channel is ever set:
# entities and bullets live in rows 0 to 8, and row 9 holds only the gauges, channels 7 and
# 8), then the rest in a loop that random play rarely enters: a branch per element on whether
# it exists, or a loop of random length, mispredicts about every other env.
DUMMY_ROW = 9
FB_FIXED, EB_FIXED, FISH_FIXED, SUB_FIXED, DIV_FIXED = 2, 2, 3, 2, 2


@njit(cache=True, _nrt=False, inline="always")
def _mark(obs, base, state, i, lst, cap, ch, trail, k, n):
    """Element ``k`` of a list of ``n`` (``k >= n``: none) in channel ``ch``, and with
    ``trail`` the cell behind it in channel 3."""
    valid = k < n
    x = np.int64(state[lst + 1 + X * cap + k, i])
    y = np.int64(state[lst + 1 + Y * cap + k, i])
    row = base + np.uint64(y * 10 * N_CH)
    dummy = base + np.uint64(DUMMY_ROW * 10 * N_CH)
    obs[(row + np.uint64(x * N_CH + ch)) if valid else (dummy + np.uint64(ch))] = valid
    if trail:  # fish, subs and divers (a compile-time constant at every call)
        back = x - 1 if state[lst + 1 + D * cap + k, i] != 0.0 else x + 1
        shown = valid & (back >= 0) & (back <= 9)
        obs[(row + np.uint64(back * N_CH + 3)) if shown else (dummy + np.uint64(3))] = shown


@njit(cache=True, _nrt=False, inline="always")
def _mark_list(obs, base, state, i, lst, cap, ch, trail, fixed):
    n = np.int64(state[lst, i])
    for k in range(fixed):
        _mark(obs, base, state, i, lst, cap, ch, trail, k, n)
    for k in range(fixed, n):
        _mark(obs, base, state, i, lst, cap, ch, trail, k, n)


@njit(cache=True, _nrt=False, inline="always")
def _write_obs(i, state, obs):
    # unsigned indices into obs: no wrap-around select per store (see asterix)
    base = np.uint64(i * OBS_SIZE)  # obs: the batch's flat observation bytes (see _common)
    C.clear_obs(obs, base, OBS_SIZE)
    sx = np.int64(state[S_SX, i])
    sy = np.int64(state[S_SY, i])
    row = base + np.uint64(sy * 10 * N_CH)
    obs[row + np.uint64(sx * N_CH)] = True
    back = sx - 1 if state[S_OR, i] != 0.0 else sx + 1
    obs[row + np.uint64((back + 10 if back < 0 else back) * N_CH + 1)] = True  # -1 wraps, as a numpy index
    # the gauges, every cell of row 9 stored (no loop of random length)
    oxygen = max(0, np.int64(state[S_OXYGEN, i])) * 10 // MAX_OXYGEN
    first_diver = 9 - np.int64(state[S_DIVERS, i])
    for x in range(10):
        obs[base + np.uint64((90 + x) * N_CH + 7)] = x < oxygen
        obs[base + np.uint64((90 + x) * N_CH + 8)] = (x >= first_diver) & (x < 9)
    _mark_list(obs, base, state, i, FB, FB_CAP, 2, False, FB_FIXED)
    _mark_list(obs, base, state, i, EB, EB_CAP, 4, False, EB_FIXED)
    _mark_list(obs, base, state, i, FISH, FISH_CAP, 5, True, FISH_FIXED)
    _mark_list(obs, base, state, i, SUB, SUB_CAP, 6, True, SUB_FIXED)
    _mark_list(obs, base, state, i, DIV, DIV_CAP, 9, True, DIV_FIXED)


@njit(cache=True, _nrt=False)
def _reset_env(i, state, rng, params, obs, tape):
    state[S_OXYGEN, i] = MAX_OXYGEN
    state[S_DIVERS, i] = 0
    state[S_SX, i] = 5
    state[S_SY, i] = 0
    state[S_OR, i] = 0
    state[S_E_SPAWN_SPEED, i] = INIT_SPAWN_SPEED
    state[S_E_SPAWN_TIMER, i] = INIT_SPAWN_SPEED
    state[S_D_SPAWN_TIMER, i] = DIVER_SPAWN_SPEED
    state[S_MOVE_SPEED, i] = INIT_MOVE_INTERVAL
    state[S_RAMP, i] = 0
    state[S_SHOT_TIMER, i] = 0
    state[S_SURFACE, i] = 1
    for base in (FB, EB, FISH, SUB, DIV):
        state[base, i] = 0
    _write_obs(i, state, obs)


@njit(cache=True, _nrt=False)
def _spawn_enemy(i, state, rng, tape):
    right = C.draw_double(rng, i, tape) < 0.5
    is_sub = C.draw_double(rng, i, tape) < 1.0 / 3.0
    y = float(1 + C.draw_int(rng, i, 8, tape))
    d = 1.0 if right else 0.0
    for base, cap in ((SUB, SUB_CAP), (FISH, FISH_CAP)):
        for k in range(np.int64(state[base, i])):
            if state[base + 1 + Y * cap + k, i] == y and state[base + 1 + D * cap + k, i] != d:
                return
    x = 0.0 if right else 9.0
    speed = state[S_MOVE_SPEED, i]
    if is_sub:
        _append(state, i, U(SUB), U(SUB_CAP), x, y, d, speed, float(ENEMY_SHOT_INTERVAL))
    else:
        _append(state, i, U(FISH), U(FISH_CAP), x, y, d, speed, 0.0)


@njit(cache=True, _nrt=False, inline="always")
def _step_env(i, action, state, rng, params, obs, tape):
    a = C.sticky_action(i, action, state, S_LAST_ACTION, rng, params, tape)
    reward = 0.0
    terminal = False
    if state[S_E_SPAWN_TIMER, i] == 0:
        _spawn_enemy(i, state, rng, tape)
        state[S_E_SPAWN_TIMER, i] = state[S_E_SPAWN_SPEED, i]
    if state[S_D_SPAWN_TIMER, i] == 0:
        right = C.draw_double(rng, i, tape) < 0.5
        y = 1 + C.draw_int(rng, i, 8, tape)
        _append(state, i, U(DIV), U(DIV_CAP), 0.0 if right else 9.0, float(y), 1.0 if right else 0.0,
                float(DIVER_MOVE_INTERVAL), 0.0)
        state[S_D_SPAWN_TIMER, i] = DIVER_SPAWN_SPEED

    sx = np.int64(state[S_SX, i])
    sy = np.int64(state[S_SY, i])
    if a == C.FIRE and state[S_SHOT_TIMER, i] == 0:
        _append(state, i, U(FB), U(FB_CAP), float(sx), float(sy), state[S_OR, i], 0.0, 0.0)
        state[S_SHOT_TIMER, i] = SHOT_COOL_DOWN
    # moves from a step table and selects, not branches on the (random) action
    orientation = state[S_OR, i]
    state[S_OR, i] = 0.0 if a == C.LEFT else (1.0 if a == C.RIGHT else orientation)
    sx = min(max(sx + C.MOVE_X[a], 0), 9)
    sy = min(max(sy + C.MOVE_Y[a], 0), 8)
    state[S_SX, i] = sx
    state[S_SY, i] = sy

    # the agent's bullets (reverse iteration over a list that shrinks)
    it = np.int64(state[FB, i]) - 1
    while 0 <= it < np.int64(state[FB, i]):
        pos = it
        it -= 1
        x = state[FB_X + pos, i] + (1 if state[FB_D + pos, i] != 0.0 else -1)
        state[FB_X + pos, i] = x
        y = state[FB_Y + pos, i]
        if x < 0 or x > 9:
            _remove(state, i, U(FB), U(FB_CAP), U(FB_NF), pos)
        else:
            k = _first_at(state, i, U(FISH), U(FISH_CAP), x, y)
            if k >= 0:
                _remove(state, i, U(FISH), U(FISH_CAP), U(FISH_NF), k)
                _remove(state, i, U(FB), U(FB_CAP), U(FB_NF), pos)
                reward += 1.0
            else:
                k = _first_at(state, i, U(SUB), U(SUB_CAP), x, y)
                if k >= 0:
                    _remove(state, i, U(SUB), U(SUB_CAP), U(SUB_NF), k)
                    _remove(state, i, U(FB), U(FB_CAP), U(FB_NF), pos)
                    reward += 1.0

    # divers
    divers = np.int64(state[S_DIVERS, i])
    it = np.int64(state[DIV, i]) - 1
    while 0 <= it < np.int64(state[DIV, i]):
        pos = it
        it -= 1
        x = state[DIV_X + pos, i]
        y = state[DIV_Y + pos, i]
        if x == sx and y == sy and divers < 6:
            _remove(state, i, U(DIV), U(DIV_CAP), U(DIV_NF), pos)
            divers += 1
        elif state[DIV_T + pos, i] == 0:
            state[DIV_T + pos, i] = DIVER_MOVE_INTERVAL
            x += 1 if state[DIV_D + pos, i] != 0.0 else -1
            state[DIV_X + pos, i] = x
            if x < 0 or x > 9:
                _remove(state, i, U(DIV), U(DIV_CAP), U(DIV_NF), pos)
            elif x == sx and y == sy and divers < 6:
                _remove(state, i, U(DIV), U(DIV_CAP), U(DIV_NF), pos)
                divers += 1
        else:
            state[DIV_T + pos, i] -= 1
    state[S_DIVERS, i] = divers

    # enemy subs
    move_speed = state[S_MOVE_SPEED, i]
    it = np.int64(state[SUB, i]) - 1
    while 0 <= it < np.int64(state[SUB, i]):
        pos = it  # where this sub is in the list, -1 once removed
        it -= 1
        x = state[SUB_X + pos, i]
        y = state[SUB_Y + pos, i]
        d = state[SUB_D + pos, i]
        shot = state[SUB_SHOT + pos, i]
        if x == sx and y == sy:
            terminal = True
        if state[SUB_T + pos, i] == 0:
            state[SUB_T + pos, i] = move_speed
            x += 1 if d != 0.0 else -1
            state[SUB_X + pos, i] = x
            if x < 0 or x > 9:
                j = _remove(state, i, U(SUB), U(SUB_CAP), U(SUB_NF), pos)
                pos = -1 if j == pos else pos - 1
            elif x == sx and y == sy:
                terminal = True
            else:
                k = _first_at(state, i, U(FB), U(FB_CAP), x, y)
                if k >= 0:
                    j = _remove(state, i, U(SUB), U(SUB_CAP), U(SUB_NF), pos)
                    pos = -1 if j == pos else pos - 1
                    _remove(state, i, U(FB), U(FB_CAP), U(FB_NF), k)
                    reward += 1.0
        else:
            state[SUB_T + pos, i] -= 1
        if shot == 0:
            if pos >= 0:
                state[SUB_SHOT + pos, i] = ENEMY_SHOT_INTERVAL
            _append(state, i, U(EB), U(EB_CAP), x, y, d, 0.0, 0.0)
        elif pos >= 0:
            state[SUB_SHOT + pos, i] = shot - 1

    # enemy bullets
    it = np.int64(state[EB, i]) - 1
    while 0 <= it < np.int64(state[EB, i]):
        pos = it
        it -= 1
        x = state[EB_X + pos, i]
        y = state[EB_Y + pos, i]
        if x == sx and y == sy:
            terminal = True
        x += 1 if state[EB_D + pos, i] != 0.0 else -1
        state[EB_X + pos, i] = x
        if x < 0 or x > 9:
            _remove(state, i, U(EB), U(EB_CAP), U(EB_NF), pos)
        elif x == sx and y == sy:
            terminal = True

    # enemy fish
    it = np.int64(state[FISH, i]) - 1
    while 0 <= it < np.int64(state[FISH, i]):
        pos = it
        it -= 1
        x = state[FISH_X + pos, i]
        y = state[FISH_Y + pos, i]
        if x == sx and y == sy:
            terminal = True
        if state[FISH_T + pos, i] == 0:
            state[FISH_T + pos, i] = move_speed
            x += 1 if state[FISH_D + pos, i] != 0.0 else -1
            state[FISH_X + pos, i] = x
            if x < 0 or x > 9:
                _remove(state, i, U(FISH), U(FISH_CAP), U(FISH_NF), pos)
            elif x == sx and y == sy:
                terminal = True
            else:
                k = _first_at(state, i, U(FB), U(FB_CAP), x, y)
                if k >= 0:
                    _remove(state, i, U(FISH), U(FISH_CAP), U(FISH_NF), pos)
                    _remove(state, i, U(FB), U(FB_CAP), U(FB_NF), k)
                    reward += 1.0
        else:
            state[FISH_T + pos, i] -= 1

    # timers, oxygen, surfacing
    for row in (S_E_SPAWN_TIMER, S_D_SPAWN_TIMER, S_SHOT_TIMER):  # selects: the shot timer's is random
        t = state[row, i]
        state[row, i] = t - 1.0 if t > 0 else t
    oxygen = np.int64(state[S_OXYGEN, i])
    if oxygen <= 0:
        terminal = True
    if sy > 0:
        state[S_OXYGEN, i] = oxygen - 1
        state[S_SURFACE, i] = 0
    elif state[S_SURFACE, i] == 0:
        if divers == 0:
            terminal = True
        else:
            state[S_SURFACE, i] = 1
            if divers == 6:
                divers = 0
                reward += oxygen * 10 // MAX_OXYGEN
            state[S_OXYGEN, i] = MAX_OXYGEN
            state[S_DIVERS, i] = divers - 1
            spawn_speed = state[S_E_SPAWN_SPEED, i]
            if params[C.P_RAMPING] != 0.0 and (spawn_speed > 1 or move_speed > 2):
                ramp = np.int64(state[S_RAMP, i])
                if move_speed > 2 and ramp % 2:
                    state[S_MOVE_SPEED, i] = move_speed - 1
                if spawn_speed > 1:
                    state[S_E_SPAWN_SPEED, i] = spawn_speed - 1
                state[S_RAMP, i] = ramp + 1
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

KERNEL_V1, KERNEL_V0 = C.game_kernels("Seaquest", "seaquest", CHANNELS, STATE_DIM, reset, step, _reset_env, _step_env,
                                      MINIMAL_ACTIONS, _write_obs, observe)
KERNELS = (KERNEL_V1, KERNEL_V0)
