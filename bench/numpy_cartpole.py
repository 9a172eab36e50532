"""Rung R2b: fastsample's CartPole kernel written in plain NumPy (whole-array operations).

The same float64 dynamics, in the same order, as ``envs_numba/classic_control/cartpole.py``,
and the same work per step as ``NumbaVectorEnv`` in NEXT_STEP autoreset mode: validate the
actions, reset the envs that finished in the previous call (instead of stepping them), step
the others, apply the 500-step time limit, and return fresh arrays (obs float32, rewards
float64, terminated, truncated). The reset draws come from one NumPy ``Generator`` rather than
a PCG64 stream per env, so the numbers are not bit-identical to fastsample's (the cost is the
same kind of work). It exists only so the ladder can show what compiling the kernel with Numba
(R3) buys over vectorising the very same algorithm with NumPy.
"""

from __future__ import annotations

import numpy as np

from envs_numba.classic_control.cartpole import (  # the kernel's own constants
    FORCE_MAG,
    GRAVITY,
    LENGTH,
    MASSPOLE,
    POLEMASS_LENGTH,
    TAU,
    THETA_THRESHOLD,
    TOTAL_MASS,
    X_THRESHOLD,
    KERNEL,
)

MAX_STEPS = KERNEL.max_episode_steps


class NumpyCartPole:
    """``num_envs`` CartPole-v1 envs stepped with NumPy array operations (NEXT_STEP autoreset)."""

    def __init__(self, num_envs: int, seed: int = 0):
        self.num_envs = n = int(num_envs)
        self.rng = np.random.default_rng(seed)
        self.state = np.zeros((4, n), dtype=np.float64)
        self.elapsed = np.zeros(n, dtype=np.int64)
        self.pending = np.zeros(n, dtype=np.bool_)

    def reset(self, seed: int | None = None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.state[:] = self.rng.uniform(-0.05, 0.05, size=self.state.shape)
        self.elapsed[:] = 0
        self.pending[:] = False
        return self.state.T.astype(np.float32), {}

    def step(self, actions):
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,) or actions.dtype.kind not in "iu":
            raise ValueError(f"expected {self.num_envs} integer actions, got {actions.dtype}{actions.shape}")
        if actions.size and (actions.min() < 0 or actions.max() > 1):
            raise ValueError("CartPole actions must be 0 or 1")
        x, x_dot, theta, theta_dot = self.state
        force = np.where(actions == 1, FORCE_MAG, -FORCE_MAG)
        sintheta = np.sin(theta)
        costheta = np.cos(theta)
        temp = (force + POLEMASS_LENGTH * (theta_dot * theta_dot) * sintheta) / TOTAL_MASS
        thetaacc = (GRAVITY * sintheta - costheta * temp) / (
            LENGTH * (4.0 / 3.0 - MASSPOLE * (costheta * costheta) / TOTAL_MASS)
        )
        xacc = temp - POLEMASS_LENGTH * thetaacc * costheta / TOTAL_MASS
        stepped = ~self.pending
        new = np.stack((x + TAU * x_dot, x_dot + TAU * xacc, theta + TAU * theta_dot, theta_dot + TAU * thetaacc))
        state = np.where(stepped, new, self.state)
        k = int(np.count_nonzero(self.pending))
        if k:  # NEXT_STEP: the envs that finished last call start a new episode instead
            state[:, self.pending] = self.rng.uniform(-0.05, 0.05, size=(4, k))
        self.state = state
        x, theta = state[0], state[2]
        terminated = stepped & ((x < -X_THRESHOLD) | (x > X_THRESHOLD)
                                | (theta < -THETA_THRESHOLD) | (theta > THETA_THRESHOLD))
        self.elapsed = np.where(stepped, self.elapsed + 1, 0)
        truncated = stepped & (self.elapsed >= MAX_STEPS)
        rewards = stepped.astype(np.float64)  # 1 per step, 0 for the reset call
        self.pending = terminated | truncated
        return state.T.astype(np.float32), rewards, terminated, truncated, {}

    def close(self) -> None:
        pass
