"""``make_vec`` and the ``fastsample/<Id>`` registrations with gymnasium."""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym
from gymnasium.vector import AutoresetMode

import envs_numba
from fastsample.vector_env import NumbaVectorEnv

NAMESPACE = "fastsample/"


def _kernel_for(env_id: str):
    if not isinstance(env_id, str):
        raise TypeError(f"env_id must be a string, got {env_id!r}")
    name = env_id[len(NAMESPACE):] if env_id.startswith(NAMESPACE) else env_id
    try:
        return envs_numba.KERNELS[name]
    except KeyError:
        available = sorted(envs_numba.KERNELS)
        raise gym.error.UnregisteredEnv(
            f"no fastsample kernel for {env_id!r}; available: {available}"
        ) from None


def make_vec(
    env_id: str,
    num_envs: int = 1,
    *,
    seed: int | None = None,
    autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
    max_episode_steps: int | None = None,
    render_mode: str | None = None,
    copy: bool = True,
    **env_kwargs: Any,
) -> NumbaVectorEnv:
    """Create ``num_envs`` batched copies of ``env_id`` (``"CartPole-v1"`` or
    ``"fastsample/CartPole-v1"``) as a ``gymnasium.vector.VectorEnv``.

    ``seed`` seeds env ``i`` with ``seed + i`` now, so the first ``reset()`` equals
    gymnasium's ``reset(seed=seed)``. ``env_kwargs`` are the single env's constructor kwargs.
    See :class:`~fastsample.vector_env.NumbaVectorEnv` for the other arguments.
    """
    kernel = _kernel_for(env_id)
    return NumbaVectorEnv(
        kernel,
        num_envs,
        seed=seed,
        autoreset_mode=autoreset_mode,
        max_episode_steps=max_episode_steps,
        render_mode=render_mode,
        copy=copy,
        **env_kwargs,
    )


def _vector_entry_point(env_id: str, num_envs: int = 1, **kwargs: Any) -> NumbaVectorEnv:
    return make_vec(env_id, num_envs, **kwargs)


def register_with_gymnasium() -> None:
    """Register every kernel as ``fastsample/<Id>`` (idempotent)."""
    for name, kernel in envs_numba.KERNELS.items():
        env_id = NAMESPACE + name
        if env_id in gym.registry:
            continue
        gym.register(
            id=env_id,
            entry_point=kernel.gym_entry_point,
            vector_entry_point=functools.partial(_vector_entry_point, name),
            max_episode_steps=kernel.max_episode_steps,
            reward_threshold=kernel.reward_threshold,
        )
