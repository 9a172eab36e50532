"""What the slices run: each worker (or this process, for an inline slice) steps envs ``lo..hi-1``
with a sub vector env built by ``Slices.factory(lo, hi)()``.

* Python gymnasium envs (``env_fns``): a :class:`PythonEnvSlice` (a leaner ``SyncVectorEnv``)
  over its envs, checked against env 0's spaces as ``AsyncVectorEnv`` checks them
  (``observation_mode``);
* fastsample's Numba kernels (``make_vec(..., num_workers=K)``): a ``NumbaVectorEnv`` of its
  envs, built by the factory ``make_vec`` passes in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import gymnasium as gym
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_differing_spaces

from fastsample.engine.python_slice import PythonEnvSlice


@dataclass
class Slices:
    """The envs the engine runs, and how to build a slice of them."""

    num_envs: int
    single_observation_space: gym.Space
    single_action_space: gym.Space
    metadata: dict
    render_mode: Any
    factory: Callable[[int, int], Callable[[], VectorEnv]]  # (lo, hi) -> picklable builder
    python_envs: bool
    # (observation_space, single_observation_space) where observation_mode sets them, else None
    batched_obs: tuple[gym.Space, gym.Space] | None = None


def split(num_envs: int, num_workers: int) -> list[tuple[int, int]]:
    """``(lo, hi)`` of each of ``num_workers`` slices: contiguous, sizes differing by one at most."""
    base, extra = divmod(num_envs, num_workers)
    bounds, lo = [], 0
    for w in range(num_workers):
        hi = lo + base + (1 if w < extra else 0)
        bounds.append((lo, hi))
        lo = hi
    return bounds


def python_slices(env_fns: Sequence[Callable[[], gym.Env]], observation_mode: Any,
                  autoreset_mode: AutoresetMode) -> Slices:
    """Slices of Python envs: env 0 is built here (and closed) to read the spaces, as
    ``AsyncVectorEnv`` does."""
    env_fns = list(env_fns)
    if not env_fns:
        raise ValueError("env_fns must contain at least one env constructor")
    if not all(callable(f) for f in env_fns):
        raise TypeError("env_fns must be callables that create envs")
    dummy = env_fns[0]()
    single_act = dummy.action_space
    metadata, render_mode = dict(dummy.metadata), dummy.render_mode
    obs_mode, batched_obs = _observation_mode(observation_mode, dummy, env_fns)
    single_obs = dummy.observation_space if obs_mode != "custom" else batched_obs[1]
    dummy.close()

    def factory(lo: int, hi: int):
        fns = env_fns[lo:hi]
        return lambda: PythonEnvSlice(fns, autoreset_mode=autoreset_mode, single_observation_space=single_obs,
                                      single_action_space=single_act, observation_mode=obs_mode)

    return Slices(len(env_fns), single_obs, single_act, metadata, render_mode, factory, True, batched_obs)


def kernel_slices(factory: Callable[[int, int], Callable[[], VectorEnv]], dummy: VectorEnv,
                  observation_mode: Any) -> Slices:
    """Slices of a Numba kernel env (``dummy``: the whole env, for its spaces)."""
    if observation_mode != "same":
        raise ValueError("observation_mode applies to Python envs (env_fns); kernels have one observation space")
    return Slices(dummy.num_envs, dummy.single_observation_space, dummy.single_action_space, dict(dummy.metadata),
                  dummy.render_mode, factory, False)


def _observation_mode(mode: Any, dummy: gym.Env, env_fns: list) -> tuple[str, tuple[gym.Space, gym.Space] | None]:
    """AsyncVectorEnv's ``observation_mode``: ``"same"``, ``"different"`` or a ``(batch space,
    single space)`` tuple. Returns the mode the slices check (``"same"``/``"different"``/
    ``"custom"``) and the ``(observation_space, single_observation_space)`` pair where it is
    not ``batch_space``'s."""
    if isinstance(mode, tuple) and len(mode) == 2:
        if not isinstance(mode[0], gym.Space) or not isinstance(mode[1], gym.Space):
            raise TypeError(
                f"Expected both elements of observation_mode to be Spaces, got {type(mode[0])} and {type(mode[1])}")
        return "custom", (mode[0], mode[1])
    if isinstance(mode, str) and mode == "same":
        return "same", None
    if isinstance(mode, str) and mode == "different":
        # as AsyncVectorEnv: every env is created once here to read its space
        spaces = [dummy.observation_space]
        for fn in env_fns[1:]:
            env = fn()
            spaces.append(env.observation_space)
            env.close()
        return "different", (batch_differing_spaces(spaces), spaces[0])
    raise ValueError(
        f"Invalid `observation_mode`, expected: 'same' or 'different' or tuple of single and batch observation "
        f"space, actual got {mode}")
