"""MountainCar-v0, batched: bit-identical to ``gymnasium.envs.classic_control.MountainCarEnv``.

## Description
A car is placed at the bottom of a sinusoidal valley (Moore, 1990). Its engine is too weak
to drive straight up the right hill, so it has to rock back and forth to build momentum and
reach the flag at position 0.5.

## Action space
``Discrete(3)``: 0 accelerates to the left, 1 does not accelerate, 2 accelerates to the right.

## Observation space
``Box([-1.2, -0.07], [0.6, 0.07], float32)``: car position along the x axis and its
velocity. The internal state is float64 (as gymnasium's); the observation is its float32 cast.

## Rewards
-1 for every step, including the terminating one.

## Starting state
Position uniform in [-0.6, -0.4] (reset options ``low``/``high``), one draw from the env's
own PCG64 stream; velocity 0.

## Episode end
Terminated when position >= 0.5 and velocity >= ``goal_velocity`` (default 0); truncated
after 200 steps (``max_episode_steps``).

## Exactness notes
Everything is float64: ``velocity += (action - 1) * 0.001 + math.cos(3 * position) * (-0.0025)``
(the right-hand side is summed first, then added), ``np.clip`` of the velocity to +-0.07,
``position += velocity`` with the *clipped* velocity, ``np.clip`` of the position to
[-1.2, 0.6], and ``velocity = 0`` when the car hits the left wall moving left.
``math.cos`` is a libm call in CPython and in Numba, so this env is bit-exact on any
platform. ``np.clip`` of a finite float64 scalar is ``lo if v < lo else hi if v > hi else v``.
Constructor kwarg: ``goal_velocity``; it is compared against a float64 velocity with
NumPy's own rules (see ``goal_thresholds``), so a Python float, a Python int or a NumPy
scalar all give gymnasium's result.
"""

from __future__ import annotations

import math

import numpy as np
from gymnasium import spaces
from numba import njit

from envs_numba import rng as rng_mod
from envs_numba.core import EnvKernel, low_high_bounds, parse_kwargs

MIN_POSITION = -1.2
MAX_POSITION = 0.6
MAX_SPEED = 0.07
GOAL_POSITION = 0.5
FORCE = 0.001
GRAVITY = 0.0025

# params array layout
P_GOAL_THR64 = 0  # smallest float64 v with ``np.float64(v) >= goal_velocity`` (NaN: none)

# state rows
S_POSITION = 0
S_VELOCITY = 1


@njit(cache=True)
def reset(mask, state, rng, bounds, params, obs):
    low = bounds[0]
    high = bounds[1]
    for i in range(mask.shape[0]):
        if mask[i]:
            # np.array([np_random.uniform(low=low, high=high), 0]): one draw, float64
            state[S_POSITION, i] = rng_mod.uniform(rng, i, low, high)
            state[S_VELOCITY, i] = 0.0
            obs[i, 0] = np.float32(state[S_POSITION, i])
            obs[i, 1] = np.float32(0.0)


@njit(cache=True)
def step(mask, actions, state, rng, params, obs, rewards, terminated):
    goal_thr = params[P_GOAL_THR64]
    for i in range(mask.shape[0]):
        if not mask[i]:
            continue
        position = state[S_POSITION, i]
        velocity = state[S_VELOCITY, i]
        # (action - 1) * force: int64 * Python float -> float64; exactly -0.001, 0.0, 0.001
        push = np.float64(actions[i] - 1) * FORCE
        velocity = velocity + (push + math.cos(3.0 * position) * (-GRAVITY))
        # np.clip(velocity, -max_speed, max_speed)
        if velocity < -MAX_SPEED:
            velocity = -MAX_SPEED
        elif velocity > MAX_SPEED:
            velocity = MAX_SPEED
        position = position + velocity
        # np.clip(position, min_position, max_position)
        if position < MIN_POSITION:
            position = MIN_POSITION
        elif position > MAX_POSITION:
            position = MAX_POSITION
        if position == MIN_POSITION and velocity < 0.0:
            velocity = 0.0  # gymnasium assigns the int 0; same value for every later use
        # ``velocity >= goal_velocity`` is ``velocity >= goal_thr`` (NaN threshold: never)
        terminated[i] = position >= GOAL_POSITION and velocity >= goal_thr
        rewards[i] = -1.0
        state[S_POSITION, i] = position
        state[S_VELOCITY, i] = velocity
        obs[i, 0] = np.float32(position)
        obs[i, 1] = np.float32(velocity)


def goal_threshold(dtype, goal_velocity) -> float:
    """Smallest ``dtype`` value ``v`` with ``bool(dtype(v) >= goal_velocity)``, as a float.

    NumPy decides how a ``dtype`` scalar compares with ``goal_velocity`` (NEP 50: a Python
    float is cast to ``dtype``, a NumPy float64 promotes a float32 to float64, ...), so we ask
    NumPy itself: start at the nearest ``dtype`` value and walk to the exact boundary.
    Returns NaN when no finite value compares true (e.g. ``goal_velocity`` is NaN or +inf
    for a float32), ``-inf`` when all do.
    """
    dtype = np.dtype(dtype).type

    def ge(v) -> bool:
        with np.errstate(all="ignore"):
            return bool(dtype(v) >= goal_velocity)

    with np.errstate(all="ignore"):
        inf = dtype(np.inf)
        if not ge(inf):
            return math.nan
        if ge(-inf):
            return -math.inf
        c = dtype(float(goal_velocity))
        if math.isnan(float(c)):
            raise TypeError(f"goal_velocity {goal_velocity!r} cannot be compared with a velocity")
        for _ in range(64):
            if ge(c):
                below = np.nextafter(c, -inf)
                if not ge(below):
                    return float(c)
                c = below
            else:
                c = np.nextafter(c, inf)
    raise TypeError(f"goal_velocity {goal_velocity!r} does not compare monotonically")


def check_goal_velocity(env_id: str, goal_velocity):
    """Reject what gymnasium's env would only fail on at the first termination check."""
    try:
        float(goal_velocity)
        bool(np.float64(0.0) >= goal_velocity)
    except (TypeError, ValueError, OverflowError) as err:
        raise TypeError(f"{env_id}: goal_velocity must be a real number, got {goal_velocity!r}") from err


def make_params(**kwargs) -> np.ndarray:
    merged = parse_kwargs("MountainCar-v0", kwargs, {"goal_velocity": 0})
    gv = merged["goal_velocity"]
    check_goal_velocity("MountainCar-v0", gv)
    return np.array([goal_threshold(np.float64, gv)], dtype=np.float64)


def _load_render_state(env, state_column, params) -> None:
    env.state = np.array(state_column[:2], dtype=np.float64)


_low = np.array([MIN_POSITION, -MAX_SPEED], dtype=np.float32)
_high = np.array([MAX_POSITION, MAX_SPEED], dtype=np.float32)

KERNEL = EnvKernel(
    id="MountainCar-v0",
    observation_space=spaces.Box(_low, _high, dtype=np.float32),
    action_space=spaces.Discrete(3),
    state_dim=2,
    reset=reset,
    step=step,
    max_episode_steps=200,
    make_params=make_params,
    reset_bounds=lambda options: low_high_bounds(options, -0.6, -0.4),
    reset_option_keys=("low", "high"),
    reward_threshold=-110.0,
    gym_entry_point="gymnasium.envs.classic_control.mountain_car:MountainCarEnv",
    render_fps=30,
    load_render_state=_load_render_state,
)
