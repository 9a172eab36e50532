"""Acrobot-v1, batched: bit-identical to ``gymnasium.envs.classic_control.AcrobotEnv``.

## Description
Two links hang in a chain from a fixed pivot (Sutton, 1996; Sutton & Barto's book); only
the joint between the two links is actuated. Swing the free end of the outer link above
the target height, starting from both links hanging down.

## Action space
``Discrete(3)``: torque on the actuated joint, -1 (action 0), 0 (action 1) or +1 (action 2).

## Observation space
``Box(6,) float32``: ``cos(theta1)``, ``sin(theta1)``, ``cos(theta2)``, ``sin(theta2)``
(each in [-1, 1]), angular velocity of ``theta1`` in [-4 pi, 4 pi] and of ``theta2`` in
[-9 pi, 9 pi]. ``theta1`` is the angle of the first link (0 pointing down), ``theta2`` the
angle of the second link relative to the first. The internal state
``[theta1, theta2, dtheta1, dtheta2]`` is float64 (float32-rounded right after a reset,
as gymnasium's).

## Rewards
-1 for every step that does not reach the target, 0 on the terminating step.

## Starting state
All four state variables uniform in [-0.1, 0.1] (reset options ``low``/``high``), drawn
in the order theta1, theta2, dtheta1, dtheta2 from the env's own PCG64 stream, then
rounded to float32 (``uniform(size=(4,)).astype(np.float32)``).

## Episode end
Terminated when ``-cos(theta1) - cos(theta2 + theta1) > 1.0`` (the free end is above the
target line); truncated after 500 steps (``max_episode_steps``).

## Exactness notes
* Step: one classical RK4 step of length ``dt = 0.2`` over the 5-vector
  ``[theta1, theta2, dtheta1, dtheta2, torque]`` exactly as ``acrobot.rk4`` does it
  (``k2 = f(y0 + dt/2*k1)`` ..., ``y0 + dt/6*(k1 + 2*k2 + 2*k3 + k4)``, all NumPy
  element-wise float64 operations, i.e. one rounding each, no FMA). The torque row has a
  zero derivative, so every stage sees the torque itself (``a + 0.1*0.0 == a``). Then the
  angles are wrapped into [-pi, pi] by ``wrap``'s while-loops (subtract / add ``2 pi``
  one at a time) and the velocities clipped by ``bound`` (``min(max(x, m), M)``, Python's
  builtins, NaN passes through). ``book`` dynamics; ``torque_noise_max = 0`` (no random
  draw in step).
* ``_dsdt`` is evaluated in gymnasium's operation order, with its all-constant
  sub-products (``m1*lc1**2``, ``-m2*l1*lc2``, ``(m1*lc1 + m2*l1)*g`` ...) computed once
  in Python exactly as gymnasium's left-to-right evaluation forms them.
* ``dtheta1**2``, ``dtheta2**2`` and ``d2**2`` are NumPy float64 *scalar* powers, which
  call libm's ``pow(x, 2.0)``; that differs from ``x*x`` in the last bit for about 1 in
  1000 arguments, and Numba/LLVM would turn ``x**2`` or ``pow(x, 2.0)`` into ``x*x``. We
  call libm's ``pow`` through ``envs_numba.libm.pow``, which LLVM may not rewrite.
* ``sin``/``cos`` of float64 are libm's (as NumPy's on CPUs where it does not dispatch
  float64 trigonometry to SVML); ``sincos`` returns the same bits as ``sin`` and ``cos``.
* Reset observation: the state is float32 then and gymnasium takes ``cos``/``sin`` of
  ``np.float32`` scalars, which NumPy computes with its own SIMD float32 algorithm (not
  ``cosf``, not ``float32(cos(float64))``). The reset kernel writes ``cosf``/``sinf``
  values; the ``fix_reset_obs`` hook then recomputes those four columns with NumPy's own
  float32 ``cos``/``sin`` (its array path returns the same bits as its scalar path).
* ``wrap`` of a value where subtracting ``2 pi`` no longer changes it (infinite, or
  ``|x| >= ~5.7e16``; reachable only through absurd reset bounds) loops forever in
  gymnasium; the kernel leaves such a value as it is instead of hanging.
* Reset bounds are checked as NumPy's ``Generator.uniform`` checks them in gymnasium's
  reset (but here before anything changes): a range ``high - low`` that is not finite
  raises ``OverflowError``, a negative one (only ``low=0.0, high=-0.0`` gets that far)
  ``ValueError("high - low < 0")``.

No constructor kwargs (``render_mode`` is the vector env's).
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces
from numba import njit

from envs_numba import rng as rng_mod
from envs_numba.core import EnvKernel, low_high_bounds, parse_kwargs
from envs_numba.libm import pow as libm_pow
from envs_numba.libm import sincos

PI = float(np.pi)
DT = 0.2
LINK_LENGTH_1 = 1.0
LINK_LENGTH_2 = 1.0
LINK_MASS_1 = 1.0
LINK_MASS_2 = 1.0
LINK_COM_POS_1 = 0.5
LINK_COM_POS_2 = 0.5
LINK_MOI = 1.0
GRAVITY = 9.8
MAX_VEL_1 = 4 * PI
MAX_VEL_2 = 9 * PI
AVAIL_TORQUE = (-1.0, 0.0, 1.0)  # gymnasium's +1 is an int; np.append makes it 1.0

# rk4(derivs, y0, [0, dt]): dt = t[1] - t[0], dt2 = dt / 2.0, final weight dt / 6.0
_RK_DT = DT - 0
_RK_DT2 = _RK_DT / 2.0
_RK_DT6 = _RK_DT / 6.0

# wrap(x, -pi, pi): diff = M - m
_WRAP_DIFF = PI - (-PI)

# _dsdt's constant sub-expressions, formed as Python evaluates them (left to right)
_m1, _m2 = LINK_MASS_1, LINK_MASS_2
_l1, _lc1, _lc2 = LINK_LENGTH_1, LINK_COM_POS_1, LINK_COM_POS_2
_I1 = _I2 = LINK_MOI
_g = GRAVITY
D1_A = _m1 * _lc1**2  # m1 * lc1**2
D1_B = _l1**2 + _lc2**2  # l1**2 + lc2**2
D1_C = 2 * _l1 * _lc2  # 2 * l1 * lc2   (times cos(theta2))
D2_A = _lc2**2  # lc2**2
D2_B = _l1 * _lc2  # l1 * lc2       (times cos(theta2))
PHI2_K = _m2 * _lc2 * _g  # m2 * lc2 * g   (times cos(theta1 + theta2 - pi/2))
PHI1_A = -_m2 * _l1 * _lc2  # -m2 * l1 * lc2 (times dtheta2**2 * sin(theta2))
PHI1_B = 2 * _m2 * _l1 * _lc2  # 2*m2*l1*lc2 (times dtheta2 * dtheta1 * sin(theta2))
PHI1_C = (_m1 * _lc1 + _m2 * _l1) * _g  # (times cos(theta1 - pi/2))
DD2_A = _m2 * _l1 * _lc2  # m2 * l1 * lc2  (times dtheta1**2 * sin(theta2))
DD2_DEN = _m2 * _lc2**2 + _I2  # m2 * lc2**2 + I2   (minus d2**2 / d1)
HALF_PI = PI / 2.0


@njit(cache=True)
def _dsdt(a, theta1, theta2, dtheta1, dtheta2):
    """Gymnasium's ``AcrobotEnv._dsdt`` ("book" dynamics); returns the 4 nonzero rates
    (the torque's rate is 0). ``x**2`` of a NumPy scalar is libm's ``pow(x, 2.0)``."""
    sin2, cos2 = sincos(theta2)
    d1 = ((D1_A + _m2 * (D1_B + D1_C * cos2)) + _I1) + _I2
    d2 = _m2 * (D2_A + D2_B * cos2) + _I2
    phi2 = PHI2_K * np.cos((theta1 + theta2) - HALF_PI)
    phi1 = (
        ((PHI1_A * libm_pow(dtheta2, 2.0)) * sin2 - ((PHI1_B * dtheta2) * dtheta1) * sin2)
        + PHI1_C * np.cos(theta1 - HALF_PI)
    ) + phi2
    ddtheta2 = (((a + (d2 / d1) * phi1) - (DD2_A * libm_pow(dtheta1, 2.0)) * sin2) - phi2) / (
        DD2_DEN - libm_pow(d2, 2.0) / d1
    )
    ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
    return dtheta1, dtheta2, ddtheta1, ddtheta2


@njit(cache=True)
def _wrap(x):
    """``wrap(x, -pi, pi)``; stops where gymnasium's loop would never end."""
    while x > PI:
        nx = x - _WRAP_DIFF
        if nx == x:
            return x
        x = nx
    while x < -PI:
        nx = x + _WRAP_DIFF
        if nx == x:
            return x
        x = nx
    return x


@njit(cache=True)
def _bound(x, m, big_m):
    """``min(max(x, m), M)`` with Python's builtins (first argument wins ties and NaN)."""
    if m > x:
        x = m
    if big_m < x:
        x = big_m
    return x


@njit(cache=True)
def reset(mask, state, rng, bounds, params, obs):
    low = bounds[0]
    high = bounds[1]
    for i in range(mask.shape[0]):
        if mask[i]:
            for k in range(4):
                state[k, i] = np.float64(np.float32(rng_mod.uniform(rng, i, low, high)))
            # cosf/sinf: within an ulp of NumPy's float32 cos/sin; fix_reset_obs makes them exact
            t1 = np.float32(state[0, i])
            t2 = np.float32(state[1, i])
            obs[i, 0] = np.cos(t1)
            obs[i, 1] = np.sin(t1)
            obs[i, 2] = np.cos(t2)
            obs[i, 3] = np.sin(t2)
            obs[i, 4] = np.float32(state[2, i])
            obs[i, 5] = np.float32(state[3, i])


def fix_reset_obs(state: np.ndarray, obs: np.ndarray, mask: np.ndarray) -> None:
    """Reset observations with NumPy's own float32 ``cos``/``sin`` (see Exactness notes)."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return
    angles = state[:2, idx].astype(np.float32)  # exact: reset states are float32 values
    cos = np.cos(angles)
    sin = np.sin(angles)
    obs[idx, 0] = cos[0]
    obs[idx, 1] = sin[0]
    obs[idx, 2] = cos[1]
    obs[idx, 3] = sin[1]


@njit(cache=True)
def step(mask, actions, state, rng, params, obs, rewards, terminated):
    for i in range(mask.shape[0]):
        if not mask[i]:
            continue
        a = AVAIL_TORQUE[actions[i]]
        y0 = state[0, i]
        y1 = state[1, i]
        y2 = state[2, i]
        y3 = state[3, i]
        # rk4: k1 = f(y0), k2 = f(y0 + dt2*k1), k3 = f(y0 + dt2*k2), k4 = f(y0 + dt*k3)
        k1_0, k1_1, k1_2, k1_3 = _dsdt(a, y0, y1, y2, y3)
        k2_0, k2_1, k2_2, k2_3 = _dsdt(
            a, y0 + _RK_DT2 * k1_0, y1 + _RK_DT2 * k1_1, y2 + _RK_DT2 * k1_2, y3 + _RK_DT2 * k1_3
        )
        k3_0, k3_1, k3_2, k3_3 = _dsdt(
            a, y0 + _RK_DT2 * k2_0, y1 + _RK_DT2 * k2_1, y2 + _RK_DT2 * k2_2, y3 + _RK_DT2 * k2_3
        )
        k4_0, k4_1, k4_2, k4_3 = _dsdt(
            a, y0 + _RK_DT * k3_0, y1 + _RK_DT * k3_1, y2 + _RK_DT * k3_2, y3 + _RK_DT * k3_3
        )
        # yout = y0 + dt/6.0 * (k1 + 2*k2 + 2*k3 + k4)
        th1 = y0 + _RK_DT6 * (((k1_0 + 2.0 * k2_0) + 2.0 * k3_0) + k4_0)
        th2 = y1 + _RK_DT6 * (((k1_1 + 2.0 * k2_1) + 2.0 * k3_1) + k4_1)
        dth1 = y2 + _RK_DT6 * (((k1_2 + 2.0 * k2_2) + 2.0 * k3_2) + k4_2)
        dth2 = y3 + _RK_DT6 * (((k1_3 + 2.0 * k2_3) + 2.0 * k3_3) + k4_3)
        th1 = _wrap(th1)
        th2 = _wrap(th2)
        dth1 = _bound(dth1, -MAX_VEL_1, MAX_VEL_1)
        dth2 = _bound(dth2, -MAX_VEL_2, MAX_VEL_2)
        state[0, i] = th1
        state[1, i] = th2
        state[2, i] = dth1
        state[3, i] = dth2
        s1, c1 = sincos(th1)
        s2, c2 = sincos(th2)
        done = -c1 - np.cos(th2 + th1) > 1.0
        terminated[i] = done
        rewards[i] = 0.0 if done else -1.0
        obs[i, 0] = np.float32(c1)
        obs[i, 1] = np.float32(s1)
        obs[i, 2] = np.float32(c2)
        obs[i, 3] = np.float32(s2)
        obs[i, 4] = np.float32(dth1)
        obs[i, 5] = np.float32(dth2)


def make_params(**kwargs) -> np.ndarray:
    parse_kwargs("Acrobot-v1", kwargs, {})  # AcrobotEnv only takes render_mode
    return np.zeros(0)


def _load_render_state(env, state_column, params) -> None:
    state = np.array(state_column[:4], dtype=np.float64)
    # right after a reset gymnasium's state is a float32 array (its renderer then takes
    # float32 cos/sin); a stepped state is float32-representable only by accident
    as_f32 = state.astype(np.float32)
    env.state = as_f32 if np.array_equal(as_f32, state) else state


_high = np.array([1.0, 1.0, 1.0, 1.0, MAX_VEL_1, MAX_VEL_2], dtype=np.float32)

KERNEL = EnvKernel(
    id="Acrobot-v1",
    observation_space=spaces.Box(low=-_high, high=_high, dtype=np.float32),
    action_space=spaces.Discrete(3),
    state_dim=4,
    reset=reset,
    step=step,
    max_episode_steps=500,
    make_params=make_params,
    reset_bounds=lambda options: low_high_bounds(options, -0.1, 0.1),
    reset_option_keys=("low", "high"),
    reward_threshold=-100.0,
    gym_entry_point="gymnasium.envs.classic_control.acrobot:AcrobotEnv",
    render_fps=15,
    load_render_state=_load_render_state,
    fix_reset_obs=fix_reset_obs,
)
