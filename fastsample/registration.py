"""``make_vec`` and the ``fastsample/<Id>`` registrations with gymnasium."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import gymnasium as gym
from gymnasium.vector import AutoresetMode

import envs_numba
from fastsample.vector_env import NumbaVectorEnv, check_seed_list

if TYPE_CHECKING:
    from fastsample.engine.process_vector_env import ProcessVectorEnv

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
    num_workers: int = 0,
    batch_size: int | None = None,
    context: str | None = None,
    pin_workers: bool = False,
    **env_kwargs: Any,
) -> NumbaVectorEnv | ProcessVectorEnv:
    """Create ``num_envs`` batched copies of ``env_id`` (``"CartPole-v1"`` or
    ``"fastsample/CartPole-v1"``) as a ``gymnasium.vector.VectorEnv``.

    ``seed`` seeds env ``i`` with ``seed + i`` now, so the first ``reset()`` equals
    gymnasium's ``reset(seed=seed)``. ``env_kwargs`` are the single env's constructor kwargs.
    ``num_workers=0`` steps every env in this process (:class:`NumbaVectorEnv`);
    ``num_workers=K`` splits them into K slices stepped in parallel over shared memory
    (:class:`ProcessVectorEnv`, bit-identical results): for K >= 2 this process steps slice 0
    itself and K-1 worker processes the others, so K slices keep K cores busy. With K = 1, or
    ``batch_size < num_envs`` (the EnvPool-style ``async_reset``/``send``/``recv`` API), every
    slice is a worker process, so the caller is free while they step. ``context`` is the
    multiprocessing start method and ``pin_workers`` pins worker ``w`` to CPU ``w``.
    See :class:`~fastsample.vector_env.NumbaVectorEnv` for the other arguments.
    """
    kernel = _kernel_for(env_id)
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}")
    if num_workers == 0 and batch_size not in (None, num_envs):
        raise ValueError("batch_size < num_envs needs worker processes (num_workers >= 1)")
    if num_workers > 0:
        return _make_process_vec(kernel, num_envs, seed=seed, autoreset_mode=autoreset_mode,
                                 max_episode_steps=max_episode_steps, render_mode=render_mode, copy=copy,
                                 num_workers=num_workers, batch_size=batch_size, context=context,
                                 pin_workers=pin_workers, env_kwargs=env_kwargs)
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


def _make_process_vec(kernel, num_envs, *, seed, autoreset_mode, max_episode_steps, render_mode, copy,
                      num_workers, batch_size, context, pin_workers, env_kwargs) -> ProcessVectorEnv:
    # validates every argument in this process, before any worker starts
    dummy = NumbaVectorEnv(kernel, num_envs, seed=None, autoreset_mode=autoreset_mode,
                           max_episode_steps=max_episode_steps, render_mode=render_mode, **env_kwargs)
    seeds = check_seed_list(seed, dummy.num_envs)
    max_steps = dummy.max_episode_steps
    mode = dummy.autoreset_mode

    def sub_factory(lo: int, hi: int):
        def make() -> NumbaVectorEnv:
            return NumbaVectorEnv(kernel, hi - lo, seed=None if seed is None else seeds[lo:hi], autoreset_mode=mode,
                                  max_episode_steps=max_steps, render_mode=render_mode, copy=False, **env_kwargs)
        return make

    from fastsample.engine.process_vector_env import ProcessVectorEnv

    # Synchronous stepping with K >= 2: this process steps slice 0 itself while K-1 workers
    # step the rest. K = 1 keeps its one worker process (isolation; nothing to overlap).
    inline = num_workers >= 2 and (batch_size is None or batch_size == dummy.num_envs)
    env = ProcessVectorEnv((), num_workers=num_workers, autoreset_mode=mode, copy=copy, context=context,
                           batch_size=batch_size, pin_workers=pin_workers, inline=inline,
                           _sub_factory=sub_factory, _dummy=dummy)
    env.kernel = kernel
    env.max_episode_steps = max_steps
    dummy.close()
    return env


def _vector_entry_point(env_id: str, num_envs: int = 1, **kwargs: Any) -> NumbaVectorEnv:
    return make_vec(env_id, num_envs, **kwargs)


def register_with_gymnasium() -> None:
    """Register every kernel as ``fastsample/<Id>`` (idempotent). Kernels of a family not imported
    yet (MinAtar) are registered as such a family's kernels are: no single-env entry point, no
    time limit, no reward threshold (tests/test_kernel_registry.py checks that against the
    kernels), so registering does not import them."""
    lazy = set(envs_numba.KERNELS.lazy_ids())
    for name in list(envs_numba.KERNELS):
        env_id = NAMESPACE + name
        if env_id in gym.registry:
            continue
        kernel = None if name in lazy else envs_numba.KERNELS[name]
        gym.register(
            id=env_id,
            entry_point=None if kernel is None else kernel.gym_entry_point,
            vector_entry_point=functools.partial(_vector_entry_point, name),
            max_episode_steps=None if kernel is None else kernel.max_episode_steps,
            reward_threshold=None if kernel is None else kernel.reward_threshold,
        )
