"""MountainCarContinuous-v0, batched: bit-identical to gymnasium's ``Continuous_MountainCarEnv``.

## Description
The continuous-action version of MountainCar (Moore, 1990): a car at the bottom of a
sinusoidal valley must rock back and forth to reach the flag at position 0.45 on the right
hill, spending as little energy as possible.

## Action space
``Box(-1, 1, (1,), float32)``: the force applied to the car. Finite actions outside [-1, 1]
are accepted and clipped by the dynamics, as gymnasium does; the energy penalty uses the
*unclipped* action.

## Observation space
``Box([-1.2, -0.07], [0.6, 0.07], float32)``: car position and velocity.

## Rewards
``-0.1 * action**2`` every step (unclipped action), plus 100 on the step that reaches the goal.

## Starting state
Position uniform in [-0.6, -0.4] (reset options ``low``/``high``), one draw from the env's
own PCG64 stream; velocity 0.

## Episode end
Terminated when position >= 0.45 and velocity >= ``goal_velocity`` (default 0); truncated
after 999 steps (``max_episode_steps``).

## Exactness notes
Gymnasium's step is plain Python on NumPy scalars, and under NumPy 2 (NEP 50) the *types*
of the operands decide the precision of every operation:

* After a reset the state is a float64 array; after the first step it is a float32 array
  (``np.array([position, velocity], dtype=np.float32)``). Once it is float32, ``position``
  and ``velocity`` are ``np.float32`` and every operation with a Python float or int is done
  in float32 (the Python number is first rounded to float32), comparisons included:
  ``np.float32(-1.2) == -1.2`` is True. State row 2 records whether the state is float32 yet.
* ``force = min(max(action[0], -1.0), 1.0)`` is the ``np.float32`` action when
  ``-1 <= action <= 1`` (boundaries included), else the *Python float* +-1.0. So
  ``force * 0.0015`` is float32 (``fl32(a * fl32(0.0015))``) or exactly +-0.0015 in float64,
  and ``force * power - 0.0025 * math.cos(3 * position)`` is float32 (the float64 cosine term
  rounded to float32 first) or float64.
* ``3 * position`` is float32 on a float32 state; ``math.cos`` always works in float64.
* ``velocity += ...``: float64 on the first step (float64 + float32 or float64), float32
  afterwards (a float64 right-hand side is rounded to float32 first).
* Clipping compares in the state's precision (float32 thresholds ``fl32(0.07)``,
  ``fl32(0.6)``, ``fl32(-1.2)``, ``fl32(0.45)`` once float32) and assigns *Python floats*
  (0.07, 0.6, -1.2); ``velocity = 0`` assigns an int. What type a variable has decides how
  the next operation rounds (``position += 0.07`` on a float32 position is
  ``fl32(p + fl32(0.07))``) and how ``velocity >= goal_velocity`` compares: the
  comparison against ``goal_velocity`` uses thresholds that NumPy itself computed at
  construction (``mountain_car.goal_threshold``) for a float32 or float64 velocity, and
  precomputed booleans for the Python values 0.07, -0.07 and 0.
* Reward: ``math.pow(action[0], 2) * 0.1`` on the unclipped float32 action converted to
  float64; the square of a float32 is exact in float64, so libm's ``pow`` (error < 1 ulp)
  returns exactly ``a * a``.
* Box actions reach the kernel as float32, as gymnasium's ``action_space.sample()`` gives
  them. (Gymnasium's vector env hands each sub-env a row of whatever array the user passed;
  a float64 action array makes gymnasium take float64 paths that this kernel, which sees the
  float32 cast, does not reproduce.)

Constructor kwarg: ``goal_velocity``.
"""

from __future__ import annotations

import math

import numpy as np
from gymnasium import spaces
from numba import njit

from envs_numba.classic_control import mountain_car
from envs_numba.classic_control.mountain_car import check_goal_velocity, goal_threshold
from envs_numba.core import EnvKernel, low_high_bounds, parse_kwargs

MIN_ACTION = -1.0
MAX_ACTION = 1.0
MIN_POSITION = -1.2
MAX_POSITION = 0.6
MAX_SPEED = 0.07
GOAL_POSITION = 0.45
POWER = 0.0015
GRAVITY = 0.0025  # the literal 0.0025 of gymnasium's step

# The same constants rounded to float32, as NumPy 2 rounds a Python float that meets an
# np.float32 (kept as float64 values: comparing exact float32 values in float64 is the same
# as comparing them in float32).
MIN_POSITION_32 = float(np.float32(MIN_POSITION))
MAX_POSITION_32 = float(np.float32(MAX_POSITION))
MAX_SPEED_32 = float(np.float32(MAX_SPEED))
GOAL_POSITION_32 = float(np.float32(GOAL_POSITION))

# params array layout (goal_velocity, precompiled into comparisons; see make_params)
P_GOAL_THR32 = 0  # np.float32 velocity v: ``v >= goal_velocity``  <=>  v >= params[0]
P_GOAL_THR64 = 1  # np.float64 velocity v: ``v >= goal_velocity``  <=>  v >= params[1]
P_GE_PLUS = 2  # bool(0.07 >= goal_velocity)   (velocity clipped to the Python float 0.07)
P_GE_MINUS = 3  # bool(-0.07 >= goal_velocity)  (velocity clipped to -0.07)
P_GE_ZERO = 4  # bool(0 >= goal_velocity)      (velocity set to the int 0)

# state rows
S_POSITION = 0
S_VELOCITY = 1
S_IS_F32 = 2  # 0.0: gymnasium's state is still the float64 array of reset; 1.0: float32

# what Python type a variable has inside gymnasium's step
_NUMPY = 0  # np.float32 or np.float64 (the state's precision)
_PYFLOAT = 1  # a Python float assigned by clipping
_PYINT = 2  # the int 0 (velocity at the left wall)


@njit(cache=True)
def reset(mask, state, rng, bounds, params, obs):
    # MountainCar-v0's initial state (one draw, float64 state), and "not float32 yet"
    mountain_car.reset(mask, state, rng, bounds, params, obs)
    for i in range(mask.shape[0]):
        # a select, not an ``if``: stores under a condition become masked stores, which
        # some CPU targets miscompile (see envs_numba/core.py)
        is_f32 = state[S_IS_F32, i]
        state[S_IS_F32, i] = 0.0 if mask[i] else is_f32


@njit(cache=True)
def step(mask, actions, state, rng, params, obs, rewards, terminated):
    thr32 = params[P_GOAL_THR32]
    thr64 = params[P_GOAL_THR64]
    ge_plus = params[P_GE_PLUS] != 0.0
    ge_minus = params[P_GE_MINUS] != 0.0
    ge_zero = params[P_GE_ZERO] != 0.0
    power32 = np.float32(POWER)
    three32 = np.float32(3.0)
    for i in range(mask.shape[0]):
        if not mask[i]:
            continue
        position = state[S_POSITION, i]  # exact float32 values when is_f32
        velocity = state[S_VELOCITY, i]
        is_f32 = state[S_IS_F32, i] != 0.0
        a32 = actions[i, 0]  # np.float32, possibly outside [-1, 1]

        # math.cos(3 * position): 3 * np.float32 is float32, 3 * np.float64 is float64
        if is_f32:
            c = math.cos(np.float64(three32 * np.float32(position)))
        else:
            c = math.cos(3.0 * position)
        g = GRAVITY * c  # Python float * Python float

        # force * power - g, where force = min(max(a, -1.0), 1.0)
        if a32 >= MIN_ACTION and a32 <= MAX_ACTION:  # force is the np.float32 action
            # np.float32 * float -> float32; np.float32 - float -> float32 (g rounded first)
            acc = np.float64((a32 * power32) - np.float32(g))
        elif a32 > MAX_ACTION:  # force is the Python float 1.0
            acc = MAX_ACTION * POWER - g
        else:  # force is the Python float -1.0
            acc = MIN_ACTION * POWER - g

        # velocity += acc
        if is_f32:  # np.float32 + (np.float32 | float) -> float32
            velocity = np.float64(np.float32(velocity) + np.float32(acc))
        else:  # np.float64 + (np.float32 | float) -> float64
            velocity = velocity + acc
        vel_kind = _NUMPY

        # if velocity > max_speed: velocity = max_speed (Python float); then the low side
        speed_cmp = MAX_SPEED_32 if is_f32 else MAX_SPEED
        if velocity > speed_cmp:
            velocity = MAX_SPEED
            vel_kind = _PYFLOAT
        elif velocity < -speed_cmp:
            velocity = -MAX_SPEED
            vel_kind = _PYFLOAT

        # position += velocity: float32 on a float32 state (a Python float is rounded first)
        if is_f32:
            position = np.float64(np.float32(position) + np.float32(velocity))
        else:
            position = position + velocity
        pos_kind = _NUMPY

        # clip the position; the comparisons happen in the position's precision
        if is_f32:
            max_cmp = MAX_POSITION_32
            min_cmp = MIN_POSITION_32
        else:
            max_cmp = MAX_POSITION
            min_cmp = MIN_POSITION
        if position > max_cmp:
            position = MAX_POSITION
            pos_kind = _PYFLOAT
        elif position < min_cmp:
            position = MIN_POSITION
            pos_kind = _PYFLOAT

        # if position == min_position and velocity < 0: velocity = 0
        if pos_kind == _NUMPY:
            at_wall = position == min_cmp
        else:
            at_wall = position == MIN_POSITION
        if at_wall and velocity < 0.0:
            velocity = 0.0
            vel_kind = _PYINT

        # terminated = position >= goal_position and velocity >= goal_velocity
        if pos_kind == _NUMPY:
            reached = position >= (GOAL_POSITION_32 if is_f32 else GOAL_POSITION)
        else:
            reached = position >= GOAL_POSITION
        done = False
        if reached:
            if vel_kind == _NUMPY:
                done = velocity >= (thr32 if is_f32 else thr64)
            elif vel_kind == _PYFLOAT:
                done = ge_plus if velocity > 0.0 else ge_minus
            else:
                done = ge_zero
        terminated[i] = done

        # reward = 0 or 100.0, then reward -= math.pow(action[0], 2) * 0.1 (unclipped action)
        a64 = np.float64(a32)
        penalty = (a64 * a64) * 0.1
        if done:
            rewards[i] = 100.0 - penalty
        else:
            rewards[i] = 0.0 - penalty

        # self.state = np.array([position, velocity], dtype=np.float32)
        p32 = np.float32(position)
        v32 = np.float32(velocity)
        state[S_POSITION, i] = np.float64(p32)
        state[S_VELOCITY, i] = np.float64(v32)
        state[S_IS_F32, i] = 1.0
        obs[i, 0] = p32
        obs[i, 1] = v32


def make_params(**kwargs) -> np.ndarray:
    env_id = "MountainCarContinuous-v0"
    merged = parse_kwargs(env_id, kwargs, {"goal_velocity": 0})
    gv = merged["goal_velocity"]
    check_goal_velocity(env_id, gv)
    return np.array(
        [
            goal_threshold(np.float32, gv),
            goal_threshold(np.float64, gv),
            float(bool(MAX_SPEED >= gv)),
            float(bool(-MAX_SPEED >= gv)),
            float(bool(0 >= gv)),
        ],
        dtype=np.float64,
    )


def _load_render_state(env, state_column, params) -> None:
    dtype = np.float32 if state_column[S_IS_F32] != 0.0 else np.float64
    env.state = np.array(state_column[:2], dtype=dtype)


_low = np.array([MIN_POSITION, -MAX_SPEED], dtype=np.float32)
_high = np.array([MAX_POSITION, MAX_SPEED], dtype=np.float32)

KERNEL = EnvKernel(
    id="MountainCarContinuous-v0",
    observation_space=spaces.Box(_low, _high, dtype=np.float32),
    action_space=spaces.Box(low=MIN_ACTION, high=MAX_ACTION, shape=(1,), dtype=np.float32),
    state_dim=3,
    reset=reset,
    step=step,
    max_episode_steps=999,
    make_params=make_params,
    reset_bounds=lambda options: low_high_bounds(options, -0.6, -0.4),
    reset_option_keys=("low", "high"),
    reward_threshold=90.0,
    gym_entry_point="gymnasium.envs.classic_control.continuous_mountain_car:Continuous_MountainCarEnv",
    render_fps=30,
    load_render_state=_load_render_state,
)
