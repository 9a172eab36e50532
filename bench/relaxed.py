"""Rung R3b: a relaxed-precision CartPole kernel (float32 arithmetic, ``fastmath``), bench-only.

fastsample's kernels are exact (float64, no fastmath, bit-identical to gymnasium) and that is
the only mode the library offers. This module is a *prototype* of what an opt-in relaxed mode
would buy: the same step as ``envs_numba/classic_control/cartpole.py`` computed in float32 with
``fastmath=True`` (LLVM may reassociate, contract to FMA and call ``sinf``/``cosf``), plugged
into the same ``NumbaVectorEnv`` (same validation, autoreset, time limit and copies). It is
never a default: it runs only as this rung of the benchmark.

A relaxed mode is acceptable only if the task is statistically the same task: :func:`check`
compares the episode-length distribution of the relaxed kernel with the exact kernel's (two
independent samples, different seeds) with a two-sample Kolmogorov-Smirnov test, under
uniformly random actions and under a noisy balancing controller (long episodes, where float32
round-off has hundreds of steps to grow).
"""

from __future__ import annotations

import dataclasses
import inspect
import math

import numpy as np
from numba import njit

from envs_numba.classic_control import cartpole as exact

F = np.float32
GRAVITY = F(exact.GRAVITY)
MASSPOLE = F(exact.MASSPOLE)
TOTAL_MASS = F(exact.TOTAL_MASS)
LENGTH = F(exact.LENGTH)
POLEMASS_LENGTH = F(exact.POLEMASS_LENGTH)
FORCE_MAG = F(exact.FORCE_MAG)
TAU = F(exact.TAU)
THETA_THRESHOLD = F(exact.THETA_THRESHOLD)
X_THRESHOLD = F(exact.X_THRESHOLD)
FOUR_THIRDS = F(4.0 / 3.0)


@njit(cache=True, fastmath=True)
def _step_relaxed(mask, actions, state, params, obs, rewards, terminated):
    sutton_barto = params[0] != 0.0
    for i in range(mask.shape[0]):
        if not mask[i]:
            continue
        x = np.float32(state[0, i])
        x_dot = np.float32(state[1, i])
        theta = np.float32(state[2, i])
        theta_dot = np.float32(state[3, i])
        force = FORCE_MAG if actions[i] == 1 else -FORCE_MAG
        sintheta = math.sin(theta)
        costheta = math.cos(theta)
        temp = (force + POLEMASS_LENGTH * (theta_dot * theta_dot) * sintheta) / TOTAL_MASS
        thetaacc = (GRAVITY * sintheta - costheta * temp) / (
            LENGTH * (FOUR_THIRDS - MASSPOLE * (costheta * costheta) / TOTAL_MASS)
        )
        xacc = temp - POLEMASS_LENGTH * thetaacc * costheta / TOTAL_MASS
        x = x + TAU * x_dot
        x_dot = x_dot + TAU * xacc
        theta = theta + TAU * theta_dot
        theta_dot = theta_dot + TAU * thetaacc
        state[0, i] = x
        state[1, i] = x_dot
        state[2, i] = theta
        state[3, i] = theta_dot
        obs[i, 0] = x
        obs[i, 1] = x_dot
        obs[i, 2] = theta
        obs[i, 3] = theta_dot
        done = x < -X_THRESHOLD or x > X_THRESHOLD or theta < -THETA_THRESHOLD or theta > THETA_THRESHOLD
        terminated[i] = done
        if sutton_barto:
            rewards[i] = -1.0 if done else 0.0
        else:
            rewards[i] = 1.0


@njit(cache=True, fastmath=True)
def _step_relaxed_rng(mask, actions, state, rng, params, obs, rewards, terminated):
    _step_relaxed(mask, actions, state, params, obs, rewards, terminated)


def _takes_rng(fn) -> bool:
    return "rng" in inspect.signature(getattr(fn, "py_func", fn)).parameters


# the kernel protocol's step signature (with or without the env's random streams)
step_relaxed = _step_relaxed_rng if _takes_rng(exact.step) else _step_relaxed

KERNEL = dataclasses.replace(exact.KERNEL, step=step_relaxed,
                             extra={"precision": "float32, fastmath (bench prototype)"})


def make_vec(num_envs: int, *, seed: int | None = 0, copy: bool = True, autoreset_mode: str = "NextStep"):
    from fastsample.vector_env import NumbaVectorEnv

    return NumbaVectorEnv(KERNEL, num_envs, seed=seed, copy=copy, autoreset_mode=autoreset_mode)


def episode_lengths(kernel, policy: str, episodes: int, seed: int) -> np.ndarray:
    """Length of the first episode of each of ``episodes`` envs (i.i.d. samples: taking the
    first episodes to finish across envs would favour short ones)."""
    from fastsample.vector_env import NumbaVectorEnv

    env = NumbaVectorEnv(kernel, episodes, seed=seed, copy=False, autoreset_mode="SameStep")
    obs, _ = env.reset()
    rng = np.random.default_rng(seed + 7)
    lengths = np.zeros(episodes, dtype=np.int64)
    running = np.ones(episodes, dtype=np.bool_)
    t = 0
    while running.any():
        if policy == "random":
            actions = rng.integers(0, 2, episodes)
        else:  # noisy balancing controller: push towards the pole's fall, 25% random pushes
            actions = (obs[:, 2] + 0.5 * obs[:, 3] + 0.01 * obs[:, 1] > 0).astype(np.int64)
            flip = rng.random(episodes) < 0.25
            actions[flip] = rng.integers(0, 2, int(flip.sum()))
        obs, _, term, trunc, _ = env.step(actions)
        t += 1
        first = running & (term | trunc)
        lengths[first] = t
        running &= ~first
    env.close()
    return lengths


def ks_2samp(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic D and its asymptotic p-value (conservative for
    integer data with ties)."""
    a = np.sort(np.asarray(a, dtype=np.float64))
    b = np.sort(np.asarray(b, dtype=np.float64))
    values = np.concatenate([a, b])
    d = float(np.max(np.abs(np.searchsorted(a, values, side="right") / a.size
                            - np.searchsorted(b, values, side="right") / b.size)))
    en = math.sqrt(a.size * b.size / (a.size + b.size))
    lam = (en + 0.12 + 0.11 / en) * d
    if lam < 0.2:
        return d, 1.0
    p = 2.0 * sum((-1) ** (j - 1) * math.exp(-2.0 * j * j * lam * lam) for j in range(1, 101))
    return d, min(1.0, max(0.0, p))


def check(episodes: int = 10000, alpha: float = 0.01) -> dict:
    """Episode-length distributions of the exact and relaxed kernels (independent seeds)."""
    rows = {}
    for policy in ("random", "controller"):
        a = episode_lengths(exact.KERNEL, policy, episodes, seed=1)
        b = episode_lengths(KERNEL, policy, episodes, seed=1_000_001)
        d, p = ks_2samp(a, b)
        rows[policy] = {"exact_mean": float(a.mean()), "relaxed_mean": float(b.mean()), "D": d, "p": p,
                        "episodes": int(episodes)}
    passed = all(r["p"] >= alpha for r in rows.values())
    return {"policies": rows, "alpha": alpha, "passed": passed}
