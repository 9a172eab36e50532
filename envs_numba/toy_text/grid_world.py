"""GridWorld-v0: the 4x4 grid world of tabular Q-learning, written as a batched kernel.

This module is the tutorial example of the kernel protocol (``envs_numba/core.py``). It has
no gymnasium counterpart; read it top to bottom to write your own environment:

1. constants and the layout of the ``state`` and ``params`` arrays,
2. the ``reset`` and ``step`` kernels (``@njit(cache=True)``, batched, no allocation),
3. ``make_params`` (constructor kwargs -> float64 array),
4. ``KERNEL = EnvKernel(...)``, registered in ``envs_numba/toy_text/__init__.py``.

Then ``fastsample.make_vec("GridWorld-v0", num_envs=16)`` is a ``gymnasium.vector.VectorEnv``.

## Description
The agent walks on a frozen lake from the start (top left) to the goal (bottom right)
without falling into a hole::

    S F F F        S: start (cell 0)   F: frozen, safe
    F H F H        H: hole             G: goal (cell 15)
    F F F H
    H F F G

Cells are numbered row by row, ``cell = 4 * row + col``.

## Action space
``Discrete(4)``: 0 left, 1 down, 2 right, 3 up (FrozenLake's numbering). A move into the
border leaves the agent where it is.

## Observation space
``Box(0, 15, (1,), int64)``: the agent's cell. Conceptually this is ``Discrete(16)``; the
vector env stores every observation in a preallocated array of shape
``(num_envs, *observation_space.shape)`` and ``EnvKernel.observation_space`` is a ``Box``,
so the cell index is a one-element int64 Box. ``obs[:, 0]`` indexes a Q-table directly.

## Rewards
1 on the step that reaches the goal, 0 otherwise.

## Starting state
Always the start cell.

## Episode end
Terminated on reaching the goal or falling into a hole; truncated after 100 steps
(``max_episode_steps``).

## Constructor kwargs
``slip`` (default 0.0): probability that a move goes to one side of the intended direction
instead (either side with equal chance), like FrozenLake's slippery ice. 0 is deterministic.

## Exactness notes
No gymnasium reference. Slips draw from the env's own PCG64 stream (``rng`` row ``i``, the
stream its resets draw from too), so seeded runs are reproducible.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces
from numba import njit

from envs_numba import rng as rng_mod
from envs_numba.core import EnvKernel, parse_kwargs

# --- 1. constants and array layouts -------------------------------------------------------

SIZE = 4  # the grid is SIZE x SIZE
N_CELLS = SIZE * SIZE
START = 0
GOAL = N_CELLS - 1

# One character per cell, row by row. Module-level NumPy arrays are frozen into the
# compiled kernels as constants (so changing this after the first compile does nothing).
MAP = ("SFFF", "FHFH", "FFFH", "HFFG")
IS_HOLE = np.array([c == "H" for row in MAP for c in row], dtype=np.bool_)

LEFT, DOWN, RIGHT, UP = 0, 1, 2, 3
# (row, col) change of each action, indexed by the action
D_ROW = np.array([0, 1, 0, -1], dtype=np.int64)
D_COL = np.array([-1, 0, 1, 0], dtype=np.int64)

# ``state`` is float64 of shape (state_dim, num_envs): one ROW per state variable, one
# COLUMN per env. Every variable is stored as a float64, even the integer ones (exact for
# integers below 2**53).
S_CELL = 0  # the agent's cell, 0..15
STATE_DIM = 1

# ``params`` is the float64 array that ``make_params`` builds from the constructor kwargs;
# it is the same for every env of a vector env.
P_SLIP = 0

# --- 2. the kernels -------------------------------------------------------------------------
#
# Both kernels handle the whole batch in one call and only change envs whose ``mask[i]`` is
# True (the vector env resets some envs while it steps the others). They write their results
# into arrays the caller preallocated and must not allocate (no np.array/np.zeros inside).
# ``cache=True`` keeps the compiled code on disk; never use ``fastmath=True`` in an env
# that must match a reference bit for bit.


@njit(cache=True)
def reset(mask, state, rng, bounds, params, obs):
    """Put every env in ``mask`` back on the start cell.

    ``rng`` holds one PCG64 stream per env (row ``i``); draw from it with
    ``envs_numba.rng`` (``uniform``, ``next_double``, ``next_uint64``; unused here: the
    start cell is fixed). ``bounds`` is what ``reset_bounds(options)`` returned (unused
    here: this env takes no reset options).
    """
    for i in range(mask.shape[0]):
        # Envs outside ``mask`` keep their values. Write that as a select over every env,
        # not as ``if mask[i]:`` around the stores: the loop vectoriser turns stores under a
        # condition into masked stores, and some CPU targets miscompile those (see the
        # comment above ``split_pending`` in envs_numba/core.py). Loops that draw random
        # numbers or call libm are not vectorised, so ``if mask[i]:`` is fine there.
        cell = state[S_CELL, i]
        seen = obs[i, 0]
        state[S_CELL, i] = START if mask[i] else cell
        obs[i, 0] = START if mask[i] else seen


@njit(cache=True)
def step(mask, actions, state, rng, params, obs, rewards, terminated):
    """Move every env in ``mask`` by ``actions[i]`` (int64, already checked to be 0..3),
    slipping sideways with probability ``slip`` (drawn from env ``i``'s stream ``rng[i]``).

    Write the new observation, the reward and whether the episode terminated. Time limits
    (truncation) and autoreset are done by the vector env, not here.
    """
    slip = params[P_SLIP]
    for i in range(mask.shape[0]):
        if not mask[i]:
            continue
        cell = np.int64(state[S_CELL, i])
        action = actions[i]
        if slip > 0.0 and rng_mod.next_double(rng, i) < slip:
            # slip to one side of the intended direction: action +1 or -1 (mod 4)
            if rng_mod.next_double(rng, i) < 0.5:
                action = (action + 1) % 4
            else:
                action = (action + 3) % 4
        row = cell // SIZE + D_ROW[action]
        col = cell % SIZE + D_COL[action]
        if 0 <= row < SIZE and 0 <= col < SIZE:  # otherwise bump into the border: stay
            cell = row * SIZE + col
        state[S_CELL, i] = cell
        obs[i, 0] = cell
        at_goal = cell == GOAL
        rewards[i] = 1.0 if at_goal else 0.0
        terminated[i] = at_goal or IS_HOLE[cell]


# --- 3. constructor kwargs ------------------------------------------------------------------


def make_params(**kwargs) -> np.ndarray:
    """``make_vec("GridWorld-v0", n, slip=0.2)`` -> ``make_params(slip=0.2)``.

    ``parse_kwargs`` fills in defaults and raises ``TypeError`` on unknown names, as a
    constructor would.
    """
    merged = parse_kwargs("GridWorld-v0", kwargs, {"slip": 0.0})
    slip = float(merged["slip"])
    if not 0.0 <= slip <= 1.0:
        raise ValueError(f"GridWorld-v0: slip must be a probability in [0, 1], got {merged['slip']!r}")
    return np.array([slip], dtype=np.float64)


# --- 4. the kernel description --------------------------------------------------------------

KERNEL = EnvKernel(
    id="GridWorld-v0",
    observation_space=spaces.Box(0, N_CELLS - 1, shape=(1,), dtype=np.int64),
    action_space=spaces.Discrete(4),
    state_dim=STATE_DIM,
    reset=reset,
    step=step,
    max_episode_steps=100,
    make_params=make_params,
    # no reset options: the defaults of EnvKernel (an empty bounds array, no option keys)
    reward_threshold=1.0,
    gym_entry_point=None,  # no gymnasium single-env counterpart (so no renderer either)
    load_render_state=None,
    extra={"map": MAP},
)
