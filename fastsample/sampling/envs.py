"""Building the training envs, below the runners and the sampler processes: env ids (fastsample
kernels or any gymnasium id), their spaces, the vector env a runner or sampler steps, and the
target return. Imports no torch."""

from __future__ import annotations

import math

import gymnasium as gym

import envs_numba
from fastsample.train_config import ConfigError, TrainConfig

__all__ = ["resolve_env", "spaces_of", "check_spaces", "make_train_env", "target_return_for"]


def _kernel_name(env_id: str) -> str | None:
    name = env_id[len("fastsample/"):] if env_id.startswith("fastsample/") else env_id
    return name if name in envs_numba.KERNELS else None


def resolve_env(env_id: str) -> tuple[str, str | None]:
    """``(env_id, kernel name or None)``; raise :class:`ConfigError` listing the available ids
    when ``env_id`` is neither a fastsample kernel nor a registered gymnasium env."""
    import fastsample  # noqa: F401  (registers fastsample/<Id>)

    kernel = _kernel_name(env_id)
    if kernel is not None:
        return env_id, kernel
    if env_id in gym.registry and not env_id.startswith("fastsample/"):
        return env_id, None
    fast = sorted(envs_numba.KERNELS)
    others = sorted(k for k in gym.registry if not k.startswith("fastsample/"))
    raise ConfigError(
        f"--env: unknown env id {env_id!r}. fastsample kernels (fastest): {', '.join(fast)}; "
        f"other registered gymnasium ids (run through ProcessVectorEnv): {', '.join(others)}")


def spaces_of(env_id: str) -> tuple[gym.Space, gym.Space]:
    _, kernel = resolve_env(env_id)
    if kernel is not None:
        k = envs_numba.KERNELS[kernel]
        return k.observation_space, k.action_space
    env = gym.make(env_id)
    spaces = env.observation_space, env.action_space
    env.close()
    return spaces


def check_spaces(cfg: TrainConfig) -> None:
    obs_space, act_space = spaces_of(cfg.env)
    if not isinstance(obs_space, gym.spaces.Box):
        raise ConfigError(f"--env {cfg.env}: the MLP policy needs a Box observation space, not {obs_space}")
    if not isinstance(act_space, (gym.spaces.Discrete, gym.spaces.Box)):
        raise ConfigError(f"--env {cfg.env}: PPO here supports Discrete and Box actions, not {act_space}")


def make_train_env(env_id: str, num_envs: int, seed: int, num_workers: int = 0, autoreset_mode: str = "SameStep",
                   batch_size: int | None = None):
    """A vector env in SAME_STEP autoreset mode (``final_obs`` in ``info`` for bootstrapping).
    fastsample kernels step in this process (``num_workers=0``) or in worker processes (with
    ``batch_size`` < ``num_envs``: the engine's asynchronous send/recv); other gymnasium ids
    always run through :class:`ProcessVectorEnv`."""
    import fastsample

    _, kernel = resolve_env(env_id)
    if kernel is not None:
        return fastsample.make_vec(kernel, num_envs, seed=seed, autoreset_mode=autoreset_mode, copy=False,
                                   num_workers=num_workers, batch_size=batch_size)
    from fastsample.engine.process_vector_env import ProcessVectorEnv

    if batch_size not in (None, num_envs):
        raise ConfigError(f"--double-buffer needs a fastsample kernel env, not {env_id}")
    fns = [(lambda: gym.make(env_id)) for _ in range(num_envs)]
    env = ProcessVectorEnv(fns, num_workers=max(1, min(num_workers or 1, num_envs)),
                           autoreset_mode=autoreset_mode, copy=False)
    env.reset(seed=seed)
    return env


def target_return_for(cfg: TrainConfig) -> float:
    if not math.isnan(cfg.target_return):
        return float(cfg.target_return)
    _, kernel = resolve_env(cfg.env)
    if kernel is not None:
        thr = envs_numba.KERNELS[kernel].reward_threshold
    else:
        thr = gym.spec(cfg.env).reward_threshold
    return float(thr) if thr is not None else math.inf
