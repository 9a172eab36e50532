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

# scalar state rows; S_SUB holds an int64 (read through the int64 view, like the lists): the
# sub's cell and orientation packed as a list element's code (x, y, direction: 1 facing right)
(S_OXYGEN, S_DIVERS, S_SUB, S_E_SPAWN_SPEED, S_E_SPAWN_TIMER, S_D_SPAWN_TIMER, S_MOVE_SPEED,
 S_RAMP, S_SHOT_TIMER, S_SURFACE, S_LAST_ACTION, S_TERMINAL) = range(12)

# Entity lists: a count row, then ``cap`` rows, element k in row base + 1 + k. An element is one
# integer packing the reference's list ``[x, y, direction, move timer, shot timer]``: x in bits
# 0-3, y in bits 4-7, direction in bit 8 (1: right), the move timer in bits 9-12 and an enemy
# sub's shot timer in bits 13-16 (fields a list lacks are 0). So an element is one load,
# ``code & 255`` is its cell (compared with another's in one go), and ``list.remove``'s element
# equality is code equality. These rows (counts included) hold int64 values in the float64
# state's bytes: the kernels read and write them through ``state.view(np.int64)`` (as integers
# in float64 they cost a conversion per access, a quarter of the step). Read as float64 they are
# tiny subnormal numbers, never NaN, and nothing computes with them as floats.
XB, YB, DB, TB, SB = 0, 4, 8, 9, 13
CELL = 255
FB_CAP, EB_CAP, FISH_CAP, SUB_CAP, DIV_CAP = 4, 64, 48, 48, 6
FB = 12
EB = FB + 1 + FB_CAP
FISH = EB + 1 + EB_CAP
SUB = FISH + 1 + FISH_CAP
DIV = SUB + 1 + SUB_CAP
STATE_DIM = DIV + 1 + DIV_CAP
LISTS = {"f_bullets": (FB, ("x", "y", "d")), "e_bullets": (EB, ("x", "y", "d")),
         "e_fish": (FISH, ("x", "y", "d", "t")), "e_subs": (SUB, ("x", "y", "d", "t", "s")),
         "divers": (DIV, ("x", "y", "d", "t"))}


def lists(state: np.ndarray, i: int) -> dict[str, list[list[int]]]:
    """Env ``i``'s entity lists as the reference holds them (``{"e_fish": [[x, y, direction,
    move timer], ...], ...}``, in list order): what the tests compare with the package."""
    ent = state.view(np.int64)
    out = {}
    for name, (base, fields) in LISTS.items():
        codes = [int(ent[base + 1 + k, i]) for k in range(int(ent[base, i]))]
        unpacked = [[c & 15, (c >> YB) & 15, (c >> DB) & 1, (c >> TB) & 15, (c >> SB) & 15] for c in codes]
        out[name] = [e[:len(fields)] for e in unpacked]
    return out


@njit(cache=True, _nrt=False, inline="always")
def _code(x, y, d, t, s):
    return x | (y << YB) | (d << DB) | (t << TB) | (s << SB)


@njit(cache=True, _nrt=False, inline="always")
def _get(ent, i, base, k):
    return ent[base + 1 + k, i]


@njit(cache=True, _nrt=False, inline="always")
def _leaves(c):
    """Whether an element's next move takes it off the screen (column 0 moving left, or 9
    moving right)."""
    return (c & 15) == 9 * ((c >> DB) & 1)


@njit(cache=True, _nrt=False, inline="always")
def _moved(c):
    """The element one column on in its direction (only for one that stays on the screen)."""
    return c + 2 * ((c >> DB) & 1) - 1


# Numba types a module constant passed as an argument as a literal and compiles a helper
# once per literal; wrapped in U (a plain int64) every list shares one compiled helper.
U = np.int64


# --- list operations --------------------------------------------------------------------

@njit(cache=True, _nrt=False)
def _delete(ent, i, base, j):
    """``del list[j]``."""
    n = ent[base, i]
    for k in range(j, n - 1):
        ent[base + 1 + k, i] = ent[base + 2 + k, i]
    ent[base, i] = n - 1


@njit(cache=True, _nrt=False)
def _remove(ent, i, base, pos):
    """``list.remove(list[pos])``: delete the first element equal to element ``pos``; return
    the index deleted (``<= pos``)."""
    v = ent[base + 1 + pos, i]
    for j in range(pos + 1):
        if ent[base + 1 + j, i] == v:
            _delete(ent, i, base, j)
            return j
    return pos  # not reached: element pos equals itself


@njit(cache=True, _nrt=False)
def _append(ent, i, base, cap, code):
    """``list.append(element)``, dropped when the list is full."""
    n = ent[base, i]
    if n < cap:
        ent[base + 1 + n, i] = code
        ent[base, i] = n + 1


@njit(cache=True, _nrt=False)
def _first_at(ent, i, base, cell):
    """Index of the first element in ``cell``, or -1."""
    for k in range(ent[base, i]):
        if (_get(ent, i, base, k) & CELL) == cell:
            return k
    return -1


# The list phases, in the reference's order, each replaying its loop exactly: reverse
# iteration over a list that shrinks, the first-equal removal, the iteration that stops when
# the index falls outside the shrunken list. They take ``ent``, the state's int64 view. Each is
# inlined into the step: as calls, the five of them cost a third of the step. (Tried and
# measured slower: a fixed-slot version of each phase with selects instead of branches, taking
# the loop only when something is removed or added; the lists are short, so the branchy loops
# do less work.)

@njit(cache=True, _nrt=False, inline="always")
def _agent_bullets(ent, i):
    """The agent's bullets; returns the reward."""
    reward = 0.0
    it = ent[FB, i] - 1
    while 0 <= it < ent[FB, i]:
        pos = it
        it -= 1
        c = _get(ent, i, FB, pos)
        if _leaves(c):
            # moved off the screen (x -1 or 10): equal to no other bullet, so the removal by
            # value removes this one
            _delete(ent, i, U(FB), pos)
            continue
        c = _moved(c)
        ent[FB + 1 + pos, i] = c
        k = _first_at(ent, i, U(FISH), c & CELL)
        if k >= 0:
            _delete(ent, i, U(FISH), k)  # the first fish there is the first equal to itself
            _remove(ent, i, U(FB), pos)
            reward += 1.0
        else:
            k = _first_at(ent, i, U(SUB), c & CELL)
            if k >= 0:
                _delete(ent, i, U(SUB), k)
                _remove(ent, i, U(FB), pos)
                reward += 1.0
    return reward


@njit(cache=True, _nrt=False, inline="always")
def _divers(ent, i, cell, divers):
    """The divers; returns the diver count."""
    it = ent[DIV, i] - 1
    while 0 <= it < ent[DIV, i]:
        pos = it
        it -= 1
        c = _get(ent, i, DIV, pos)
        if (c & CELL) == cell and divers < 6:
            _remove(ent, i, U(DIV), pos)
            divers += 1
        elif (c >> TB) & 15 == 0:
            if _leaves(c):
                _delete(ent, i, U(DIV), pos)  # off the screen: equal to no other diver
                continue
            c = _moved(c) + (DIVER_MOVE_INTERVAL << TB)
            ent[DIV + 1 + pos, i] = c
            if (c & CELL) == cell and divers < 6:
                _remove(ent, i, U(DIV), pos)
                divers += 1
        else:
            ent[DIV + 1 + pos, i] = c - (1 << TB)
    return divers


@njit(cache=True, _nrt=False, inline="always")
def _enemy_subs(ent, i, cell, move_speed):
    """The enemy subs; returns (reward, terminal)."""
    reward = 0.0
    terminal = False
    it = ent[SUB, i] - 1
    while 0 <= it < ent[SUB, i]:
        pos = it  # where this sub is in the list, -1 once removed
        it -= 1
        c = _get(ent, i, SUB, pos)
        shot = (c >> SB) & 15
        gone = False  # off the screen: it still fires (below), a bullet dropped the same step
        if (c & CELL) == cell:
            terminal = True
        if (c >> TB) & 15 == 0:
            if _leaves(c):
                _delete(ent, i, U(SUB), pos)  # equal to no other sub
                pos = -1
                gone = True
            else:
                c = _moved(c) + (move_speed << TB)
                ent[SUB + 1 + pos, i] = c
                if (c & CELL) == cell:
                    terminal = True
                else:
                    k = _first_at(ent, i, U(FB), c & CELL)
                    if k >= 0:
                        j = _remove(ent, i, U(SUB), pos)
                        pos = -1 if j == pos else pos - 1
                        _delete(ent, i, U(FB), k)  # the first bullet there is the first equal to itself
                        reward += 1.0
        else:
            c -= 1 << TB
            ent[SUB + 1 + pos, i] = c
        if shot == 0:
            if pos >= 0:
                ent[SUB + 1 + pos, i] = c + (ENEMY_SHOT_INTERVAL << SB)
            if not gone:  # a bullet fired off the screen leaves it at once, unseen
                _append(ent, i, U(EB), U(EB_CAP), c & ((1 << TB) - 1))
        elif pos >= 0:
            ent[SUB + 1 + pos, i] = c - (1 << SB)
    return reward, terminal


@njit(cache=True, _nrt=False, inline="always")
def _enemy_bullets(ent, i, cell):
    """The enemy bullets; returns terminal."""
    terminal = False
    it = ent[EB, i] - 1
    while 0 <= it < ent[EB, i]:
        pos = it
        it -= 1
        c = _get(ent, i, EB, pos)
        if (c & CELL) == cell:
            terminal = True
        if _leaves(c):
            _delete(ent, i, U(EB), pos)  # equal to no other bullet
            continue
        c = _moved(c)
        ent[EB + 1 + pos, i] = c
        if (c & CELL) == cell:
            terminal = True
    return terminal


@njit(cache=True, _nrt=False, inline="always")
def _enemy_fish(ent, i, cell, move_speed):
    """The enemy fish; returns (reward, terminal)."""
    reward = 0.0
    terminal = False
    it = ent[FISH, i] - 1
    while 0 <= it < ent[FISH, i]:
        pos = it
        it -= 1
        c = _get(ent, i, FISH, pos)
        if (c & CELL) == cell:
            terminal = True
        if (c >> TB) & 15 == 0:
            if _leaves(c):
                _delete(ent, i, U(FISH), pos)  # equal to no other fish
                continue
            c = _moved(c) + (move_speed << TB)
            ent[FISH + 1 + pos, i] = c
            if (c & CELL) == cell:
                terminal = True
            else:
                k = _first_at(ent, i, U(FB), c & CELL)
                if k >= 0:
                    _remove(ent, i, U(FISH), pos)
                    _delete(ent, i, U(FB), k)
                    reward += 1.0
        else:
            ent[FISH + 1 + pos, i] = c - (1 << TB)
    return reward, terminal


# The observation's entity marks: every list stores its first few elements unconditionally
# (an element past the list's end stores False into DUMMY_ROW, row 9, where no entity
# channel is ever set: entities and bullets live in rows 0 to 8, and row 9 holds only the
# gauges, channels 7 and 8), then the rest in a loop that random play rarely enters: a branch
# per element on whether it exists, or a loop of random length, mispredicts about every other
# env. Each mark's byte offsets come from tables indexed by the element's cell and direction
# (``code & 511``; 512 for an element past the end): CELL_AT is the cell's first byte, and
# TRAIL_AT[t] the byte its trail marks in channel 3 for the list with trail channel index t, or,
# with the trail off the screen, the element's own byte in its own channel (marked True anyway).
DUMMY_ROW = 9
FB_FIXED, EB_FIXED, FISH_FIXED, SUB_FIXED, DIV_FIXED = 2, 2, 3, 2, 2
NO_ELEMENT = 512
TRAIL_CHANNELS = (5, 6, 9)  # fish, subs, divers


def _mark_tables():
    cell_at = np.full(NO_ELEMENT + 1, DUMMY_ROW * 10 * N_CH, dtype=np.uint16)
    trail_at = np.full((len(TRAIL_CHANNELS), NO_ELEMENT + 1), DUMMY_ROW * 10 * N_CH + 3, dtype=np.uint16)
    for key in range(NO_ELEMENT):
        x, y, d = key & 15, (key >> YB) & 15, (key >> DB) & 1
        if x > 9 or y > 8:
            continue
        cell_at[key] = (y * 10 + x) * N_CH
        back = x - 1 if d else x + 1
        for t, ch in enumerate(TRAIL_CHANNELS):
            trail_at[t, key] = (y * 10 + back) * N_CH + 3 if 0 <= back <= 9 else (y * 10 + x) * N_CH + ch
    return cell_at, trail_at.reshape(-1)


CELL_AT, TRAIL_AT = _mark_tables()


def _sub_tables():
    """SUB_NEXT[a * 512 + code]: the sub's code after action a (moves clamped to the screen,
    left and right turn it); SUB_BACK[code]: its back's byte (column -1 wraps to 9, as a numpy
    index)."""
    nxt = np.zeros(6 * 512, dtype=np.int64)
    back_at = np.zeros(512, dtype=np.uint16)
    for code in range(512):
        x, y, d = code & 15, (code >> YB) & 15, (code >> DB) & 1
        for a in range(6):
            nx = min(max(x + int(C.MOVE_X[a]), 0), 9)
            ny = min(max(y + int(C.MOVE_Y[a]), 0), 8)
            nd = 0 if a == C.LEFT else (1 if a == C.RIGHT else d)
            nxt[a * 512 + code] = _code.py_func(nx, ny, nd, 0, 0) if x <= 9 and y <= 8 else code
        back = x - 1 if d else x + 1
        back_at[code] = min((y * 10 + (back + 10 if back < 0 else back)) * N_CH + 1, OBS_SIZE - 1)
    return nxt, back_at


SUB_NEXT, SUB_BACK = _sub_tables()


@njit(cache=True, _nrt=False, inline="always")
def _mark(obs, base, ent, i, lst, ch, trail, k, n):
    """Element ``k`` of a list of ``n`` (``k >= n``: none) in channel ``ch``, and with
    ``trail`` (the list's index in TRAIL_CHANNELS, else -1) the cell behind it in channel 3."""
    valid = k < n
    key = np.uint64(ent[lst + 1 + k, i] & 511) if valid else np.uint64(NO_ELEMENT)
    obs[base + np.uint64(CELL_AT[key]) + np.uint64(ch)] = valid
    if trail >= 0:  # fish, subs and divers (a compile-time constant at every call)
        obs[base + np.uint64(TRAIL_AT[np.uint64(trail * (NO_ELEMENT + 1)) + key])] = valid


@njit(cache=True, _nrt=False, inline="always")
def _mark_list(obs, base, ent, i, lst, ch, trail, fixed):
    n = ent[lst, i]
    for k in range(fixed):
        _mark(obs, base, ent, i, lst, ch, trail, k, n)
    for k in range(fixed, n):
        _mark(obs, base, ent, i, lst, ch, trail, k, n)


# Row 9, the gauges, written whole (8 bytes a store) from a table: GAUGES[g, k] is the k-th of
# 13 words (bytes 8 k on; the last at byte 92, overlapping the one before it) of row 9 with
# oxygen gauge o (0 to 10 cells) and diver gauge d (0 to 6 divers), g = 7 o + d.
GAUGE_AT = tuple(8 * k for k in range(12)) + (92,)


def _gauge_table():
    words = np.zeros((11 * 7, len(GAUGE_AT)), dtype=np.uint64)
    for o in range(11):
        for d in range(7):
            row = np.zeros(10 * N_CH, dtype=np.uint8)
            for x in range(10):
                row[x * N_CH + 7] = x < o
                row[x * N_CH + 8] = 9 - d <= x < 9
            for k, at in enumerate(GAUGE_AT):
                words[7 * o + d, k] = row[at:at + 8].view(np.uint64)[0]
    return words.reshape(-1)


GAUGES = _gauge_table()


@njit(cache=True, _nrt=False, inline="always")
def _write_obs(i, state, obs):
    # unsigned indices into obs: no wrap-around select per store (see asterix)
    base = np.uint64(i * OBS_SIZE)  # obs: the batch's flat observation bytes (see _common)
    C.clear_obs(obs, base, DUMMY_ROW * 10 * N_CH)  # rows 0 to 8; row 9 is written whole below
    oxygen = max(0, np.int64(state[S_OXYGEN, i])) * 10 // MAX_OXYGEN
    g = np.uint64((7 * oxygen + max(0, np.int64(state[S_DIVERS, i]))) * len(GAUGE_AT))
    row9 = base + np.uint64(DUMMY_ROW * 10 * N_CH)
    for k in range(len(GAUGE_AT)):
        C.store_8_bytes(obs, row9 + np.uint64(min(8 * k, 92)), GAUGES[g + np.uint64(k)])
    ent = state.view(np.int64)
    sub = np.uint64(ent[S_SUB, i] & 511)
    obs[base + np.uint64(CELL_AT[sub])] = True
    obs[base + np.uint64(SUB_BACK[sub])] = True
    _mark_list(obs, base, ent, i, FB, 2, -1, FB_FIXED)
    _mark_list(obs, base, ent, i, EB, 4, -1, EB_FIXED)
    _mark_list(obs, base, ent, i, FISH, 5, 0, FISH_FIXED)
    _mark_list(obs, base, ent, i, SUB, 6, 1, SUB_FIXED)
    _mark_list(obs, base, ent, i, DIV, 9, 2, DIV_FIXED)


@njit(cache=True, _nrt=False)
def _reset_env(i, state, rng, params, obs, tape):
    state[S_OXYGEN, i] = MAX_OXYGEN
    state[S_DIVERS, i] = 0
    state.view(np.int64)[S_SUB, i] = _code(5, 0, 0, 0, 0)  # column 5, the surface, facing left
    state[S_E_SPAWN_SPEED, i] = INIT_SPAWN_SPEED
    state[S_E_SPAWN_TIMER, i] = INIT_SPAWN_SPEED
    state[S_D_SPAWN_TIMER, i] = DIVER_SPAWN_SPEED
    state[S_MOVE_SPEED, i] = INIT_MOVE_INTERVAL
    state[S_RAMP, i] = 0
    state[S_SHOT_TIMER, i] = 0
    state[S_SURFACE, i] = 1
    for base in (FB, EB, FISH, SUB, DIV):
        state[base, i] = 0
    state[S_TERMINAL, i] = 0
    _write_obs(i, state, obs)


@njit(cache=True, _nrt=False)
def _spawn_enemy(i, state, rng, tape):
    right = np.int64(C.draw_double(rng, i, tape) < 0.5)
    is_sub = C.draw_double(rng, i, tape) < 1.0 / 3.0
    y = 1 + C.draw_int(rng, i, 8, tape)
    # dropped when an enemy moving the other way is in that row: bits 4-8 are (y, direction)
    blocked = y | ((1 - right) << (DB - YB))
    ent = state.view(np.int64)
    for base in (SUB, FISH):
        for k in range(ent[base, i]):
            if (_get(ent, i, base, k) >> YB) & 31 == blocked:
                return
    move_speed = np.int64(state[S_MOVE_SPEED, i])
    if is_sub:
        _append(ent, i, U(SUB), U(SUB_CAP), _code(9 - 9 * right, y, right, move_speed, ENEMY_SHOT_INTERVAL))
    else:
        _append(ent, i, U(FISH), U(FISH_CAP), _code(9 - 9 * right, y, right, move_speed, 0))


@njit(cache=True, _nrt=False, inline="always")
def _step_env(i, action, state, rng, params, obs, tape):
    ent = state.view(np.int64)  # the entity lists' rows (see LISTS)
    a = C.sticky_action(i, action, state, S_LAST_ACTION, rng, params, tape)
    if state[S_TERMINAL, i] != 0.0:  # a finished game: the draw is all (see _common)
        return 0.0, True
    reward = 0.0
    terminal = False
    if state[S_E_SPAWN_TIMER, i] == 0:
        _spawn_enemy(i, state, rng, tape)
        state[S_E_SPAWN_TIMER, i] = state[S_E_SPAWN_SPEED, i]
    if state[S_D_SPAWN_TIMER, i] == 0:
        right = np.int64(C.draw_double(rng, i, tape) < 0.5)
        y = 1 + C.draw_int(rng, i, 8, tape)
        _append(ent, i, U(DIV), U(DIV_CAP), _code(9 - 9 * right, y, right, DIVER_MOVE_INTERVAL, 0))
        state[S_D_SPAWN_TIMER, i] = DIVER_SPAWN_SPEED

    sub = ent[S_SUB, i]
    if a == C.FIRE and state[S_SHOT_TIMER, i] == 0:
        _append(ent, i, U(FB), U(FB_CAP), sub)  # a bullet from the sub's cell, facing its way
        state[S_SHOT_TIMER, i] = SHOT_COOL_DOWN
    # the move from a per-(action, code) table, not branches on the (random) action
    sub = SUB_NEXT[a * 512 + (sub & 511)]
    ent[S_SUB, i] = sub
    cell = sub & CELL
    sy = (sub >> YB) & 15
    move_speed = np.int64(state[S_MOVE_SPEED, i])

    reward += _agent_bullets(ent, i)
    divers = _divers(ent, i, cell, np.int64(state[S_DIVERS, i]))
    state[S_DIVERS, i] = divers
    r, t = _enemy_subs(ent, i, cell, move_speed)
    reward += r
    terminal |= t
    terminal |= _enemy_bullets(ent, i, cell)
    r, t = _enemy_fish(ent, i, cell, move_speed)
    reward += r
    terminal |= t

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

KERNEL_V1, KERNEL_V0 = C.game_kernels("Seaquest", "seaquest", CHANNELS, STATE_DIM, reset, step, _reset_env, _step_env,
                                      MINIMAL_ACTIONS, _write_obs, observe)
KERNELS = (KERNEL_V1, KERNEL_V0)
