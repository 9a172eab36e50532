"""Pendulum-v1, batched: bit-identical to ``gymnasium.envs.classic_control.PendulumEnv``.

## Description
The inverted pendulum swing-up: a pendulum hangs from a fixed pivot and starts at a random
angle; apply torque to swing it up and keep it upright (angle 0, measured from the top).

## Action space
``Box(-2, 2, (1,), float32)``: the torque. Finite actions outside [-2, 2] are accepted and
clipped by the dynamics (``np.clip``), as gymnasium does.

## Observation space
``Box([-1, -1, -8], [1, 1, 8], float32)``: ``cos(theta)``, ``sin(theta)`` and the angular
velocity. The internal state ``[theta, theta_dot]`` is float64 (as gymnasium's); ``theta``
is *not* wrapped, it grows as the pendulum spins.

## Rewards
``-(angle_normalize(theta)**2 + 0.1 * theta_dot**2 + 0.001 * u**2)`` with the pre-step
state and the clipped torque ``u``; between -16.27 and 0.

## Starting state
``theta`` uniform in [-pi, pi], then ``theta_dot`` uniform in [-1, 1] (2 draws from the
env's own PCG64 stream). Reset options ``x_init``/``y_init`` replace pi and 1 (the bounds
stay symmetric: ``low = -high``, so both must be >= 0).

## Episode end
Never terminates; truncated after 200 steps (``max_episode_steps``).

## Exactness notes
Gymnasium's step is Python on NumPy scalars; with NumPy 2 (NEP 50) the clipped action ``u``
is an ``np.float32`` scalar when the action array is float32 (what
``action_space.sample()`` gives and what this kernel always receives):

* ``angle_normalize(th)**2`` and ``thdot**2`` are NumPy float64 *scalar* powers: libm's
  ``pow(x, 2.0)``, which differs from ``x*x`` in the last bit for about 1 in 1000
  arguments. ``u**2`` is a float32 scalar power: libm's ``powf(u, 2.0f)``, which differs
  from the float32 ``u*u`` as well. Numba/LLVM would rewrite both into a multiplication;
  we call libm's functions through ``envs_numba.libm.pow``/``powf``, which LLVM may not
  rewrite.
* ``0.001 * (u**2)`` and ``3.0 / (m * l**2) * u`` are float32 operations (the Python float
  is rounded to float32 first); the float32 results are promoted to float64 when they meet
  the float64 terms. ``3 * g / (2 * l)`` is computed once in Python from the ``g`` the
  user passed (so an ``np.float32`` ``g`` keeps its float32 rounding).
* ``angle_normalize(x) = ((x + pi) % (2*pi)) - pi`` uses the Python/NumPy float modulo:
  ``fmod``, then ``+ 2*pi`` when the remainder is negative, ``+0.0`` when it is zero.
* ``np.clip`` is ``min(max(x, lo), hi)``; ``sin``/``cos`` are libm's float64 functions
  (NumPy's too on CPUs where it does not dispatch float64 trigonometry to SVML), computed
  in float64 and then cast to float32 for the observation.
* Gymnasium's vector env hands each sub-env a row of whatever array the user passed; a
  float64 action array makes gymnasium compute the torque terms in float64, which this
  kernel (it sees the float32 cast) does not reproduce.
* State row 2 holds the last clipped torque for the renderer (``last_u``; NaN = None,
  right after a reset).
* Reset bounds are checked as NumPy's ``Generator.uniform`` checks them in gymnasium's
  reset (but here before anything changes): a range ``high - low`` that is not finite
  raises ``OverflowError``, a negative one (a negative ``x_init`` or ``y_init``, ``-0.0``
  included) ``ValueError("high - low < 0")``.

Constructor kwarg: ``g`` (gravity, default 10.0).
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces
from gymnasium.envs.classic_control import utils
from numba import njit

from envs_numba import rng as rng_mod
from envs_numba.core import EnvKernel, check_uniform_range, parse_kwargs
from envs_numba.libm import pow as libm_pow
from envs_numba.libm import powf as libm_powf
from envs_numba.libm import sincos

MAX_SPEED = 8
MAX_SPEED_F = float(MAX_SPEED)  # np.clip(newthdot, -8, 8) returns a float64
MAX_TORQUE = 2.0
DT = 0.05
DEFAULT_G = 10.0
M = 1.0
L = 1.0
DEFAULT_X = float(np.pi)
DEFAULT_Y = 1.0

PI = float(np.pi)
TWO_PI = 2 * PI  # angle_normalize's 2 * np.pi

# float32 constants as NumPy 2 rounds a Python float that meets an np.float32
MAX_TORQUE_32 = np.float32(MAX_TORQUE)
U_COST_32 = np.float32(0.001)  # 0.001 * (u**2)
U_GAIN_32 = np.float32(3.0 / (M * L**2))  # 3.0 / (m * l**2) * u
TWO_32 = np.float32(2.0)  # u**2 -> powf(u, 2.0f)

# params array layout
P_SIN_GAIN = 0  # 3 * g / (2 * l), evaluated in Python with the user's g

# state rows
S_THETA = 0
S_THETA_DOT = 1
S_LAST_U = 2  # clipped torque of the last step (float32 value), NaN after a reset

# bounds array layout: high = [x_init, y_init], low = -high
B_X = 0
B_Y = 1


@njit(cache=True)
def reset(mask, state, rng, bounds, params, obs):
    x = bounds[B_X]
    y = bounds[B_Y]
    for i in range(mask.shape[0]):
        if mask[i]:
            # np_random.uniform(low=-high, high=high), high = [x, y]: theta, then theta_dot
            th = rng_mod.uniform(rng, i, -x, x)
            thdot = rng_mod.uniform(rng, i, -y, y)
            state[S_THETA, i] = th
            state[S_THETA_DOT, i] = thdot
            state[S_LAST_U, i] = np.nan
            s, c = sincos(th)
            obs[i, 0] = np.float32(c)
            obs[i, 1] = np.float32(s)
            obs[i, 2] = np.float32(thdot)


@njit(cache=True)
def _angle_normalize(x):
    """``((x + np.pi) % (2 * np.pi)) - np.pi`` with the Python/NumPy float modulo."""
    mod = np.fmod(x + PI, TWO_PI)
    if mod != 0.0:
        if mod < 0.0:  # the divisor 2*pi is positive: the result takes its sign
            mod += TWO_PI
    else:
        mod = 0.0  # copysign(0.0, 2*pi)
    return mod - PI


@njit(cache=True)
def step(mask, actions, state, rng, params, obs, rewards, terminated):
    sin_gain = params[P_SIN_GAIN]
    for i in range(mask.shape[0]):
        if not mask[i]:
            continue
        th = state[S_THETA, i]
        thdot = state[S_THETA_DOT, i]
        # u = np.clip(u, -2.0, 2.0)[0]: np.float32
        u = actions[i, 0]
        if u < -MAX_TORQUE_32:
            u = -MAX_TORQUE_32
        if u > MAX_TORQUE_32:
            u = MAX_TORQUE_32
        # costs = angle_normalize(th)**2 + 0.1 * thdot**2 + 0.001 * (u**2)
        u_cost = U_COST_32 * libm_powf(u, TWO_32)  # float32 * float32
        costs = (libm_pow(_angle_normalize(th), 2.0) + 0.1 * libm_pow(thdot, 2.0)) + np.float64(u_cost)
        # newthdot = thdot + (3 * g / (2 * l) * np.sin(th) + 3.0 / (m * l**2) * u) * dt
        torque_term = U_GAIN_32 * u  # float32 * float32
        newthdot = thdot + (sin_gain * np.sin(th) + np.float64(torque_term)) * DT
        # np.clip(newthdot, -max_speed, max_speed)
        if newthdot < -MAX_SPEED:
            newthdot = -MAX_SPEED_F
        if newthdot > MAX_SPEED:
            newthdot = MAX_SPEED_F
        newth = th + newthdot * DT
        state[S_THETA, i] = newth
        state[S_THETA_DOT, i] = newthdot
        state[S_LAST_U, i] = np.float64(u)
        s, c = sincos(newth)
        obs[i, 0] = np.float32(c)
        obs[i, 1] = np.float32(s)
        obs[i, 2] = np.float32(newthdot)
        rewards[i] = -costs
        terminated[i] = False


def make_params(**kwargs) -> np.ndarray:
    merged = parse_kwargs("Pendulum-v1", kwargs, {"g": DEFAULT_G})
    g = merged["g"]
    try:
        sin_gain = float(3 * g / (2 * L))  # evaluated as gymnasium's step does, with g's type
    except (TypeError, ValueError) as e:
        raise TypeError(f"Pendulum-v1: g must be a real number, got {g!r}") from e
    return np.array([sin_gain], dtype=np.float64)


def reset_bounds(options: dict | None) -> np.ndarray:
    """``x_init``/``y_init`` parsed like ``PendulumEnv.reset`` (same errors): ``[x, y]``."""
    if options is None:
        high = np.array([DEFAULT_X, DEFAULT_Y])
    else:
        x = options.get("x_init") if "x_init" in options else DEFAULT_X
        y = options.get("y_init") if "y_init" in options else DEFAULT_Y
        x = utils.verify_number_and_cast(x)
        y = utils.verify_number_and_cast(y)
        high = np.array([x, y])
    check_uniform_range(-high, high)  # a negative x_init or y_init, -0.0 included, fails
    return np.ascontiguousarray(high, dtype=np.float64)


def _load_render_state(env, state_column, params) -> None:
    env.state = np.array(state_column[:2], dtype=np.float64)
    last_u = state_column[S_LAST_U]
    env.last_u = None if np.isnan(last_u) else np.float32(last_u)


_high = np.array([1.0, 1.0, MAX_SPEED], dtype=np.float32)

KERNEL = EnvKernel(
    id="Pendulum-v1",
    observation_space=spaces.Box(low=-_high, high=_high, dtype=np.float32),
    action_space=spaces.Box(low=-MAX_TORQUE, high=MAX_TORQUE, shape=(1,), dtype=np.float32),
    state_dim=3,
    reset=reset,
    step=step,
    max_episode_steps=200,
    make_params=make_params,
    reset_bounds=reset_bounds,
    reset_option_keys=("x_init", "y_init"),
    reward_threshold=None,
    gym_entry_point="gymnasium.envs.classic_control.pendulum:PendulumEnv",
    render_fps=30,
    load_render_state=_load_render_state,
)
