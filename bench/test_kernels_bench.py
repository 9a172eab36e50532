"""pytest-benchmark micro-benchmarks of the kernels: ``pytest bench --benchmark-only``.

Not part of the test suite (CI runs ``pytest`` with ``testpaths = ["tests"]``) and no speed
assertions anywhere: these only time things.

* ``test_kernel_step``: one call of an env's raw ``@njit`` step kernel over all ``n`` envs,
  from the same valid states every round (restored in the untimed setup);
* ``test_vector_step``: one ``NumbaVectorEnv.step`` (validation, kernel, time limit,
  NEXT_STEP autoreset; ``copy=False``), stepping on from round to round.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

pytest.importorskip("pytest_benchmark")

import envs_numba  # noqa: E402
from fastsample.vector_env import NumbaVectorEnv  # noqa: E402

ENV_IDS = [k for k in envs_numba.KERNELS if k != "GridWorld-v0"]
SIZES = [1, 256, 4096]


def _env(env_id: str, n: int) -> NumbaVectorEnv:
    env = NumbaVectorEnv(envs_numba.KERNELS[env_id], n, seed=0, copy=False)
    env.reset()
    return env


def _kernel_args(env: NumbaVectorEnv, actions: np.ndarray) -> list:
    """The step kernel's arguments, by parameter name (the kernel protocol's names)."""
    by_name = {"mask": np.ones(env.num_envs, dtype=np.bool_), "actions": actions, "state": env._state,
               "rng": env._rng, "params": env._params, "obs": env._obs, "rewards": env._rewards,
               "terminated": env._terminated}
    fn = env.kernel.step
    names = list(inspect.signature(getattr(fn, "py_func", fn)).parameters)
    unknown = [p for p in names if p not in by_name]
    if unknown:
        pytest.skip(f"step kernel takes parameters this benchmark does not know: {unknown}")
    return [by_name[p] for p in names]


def _actions(env: NumbaVectorEnv) -> np.ndarray:
    env._action_buffer.load(env.action_space.sample())
    return env._actions


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_kernel_step(benchmark, env_id: str, n: int) -> None:
    env = _env(env_id, n)
    env.action_space.seed(0)
    args = _kernel_args(env, _actions(env))
    saved = env._state.copy()
    step = env.kernel.step
    step(*args)  # compile / load from cache

    def restore():
        env._state[...] = saved
        return (), {}

    benchmark.extra_info["num_envs"] = n
    benchmark.pedantic(lambda: step(*args), setup=restore, rounds=300, iterations=1, warmup_rounds=5)
    env.close()


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_vector_step(benchmark, env_id: str, n: int) -> None:
    env = _env(env_id, n)
    env.action_space.seed(0)
    actions = env.action_space.sample()
    env.step(actions)
    benchmark.extra_info["num_envs"] = n
    benchmark(env.step, actions)
    env.close()
