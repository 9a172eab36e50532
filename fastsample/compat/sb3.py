"""Stable-Baselines3 adapters: :func:`wrap` and :class:`ProcessVecEnv`.

SB3's ``VecEnv`` contract (``stable_baselines3/common/vec_env/base_vec_env.py``, with
``DummyVecEnv`` as the reference) differs from gymnasium's ``VectorEnv``; the adapter bridges:

* **Same-step autoreset.** A finished env is reset within the step that finished it: the step
  returns the reset observation, ``infos[i]["terminal_observation"]`` holds the last one and
  ``infos[i]["TimeLimit.truncated"] = truncated and not terminated``. Both keys are set on
  finished envs only (SB3 reads the second with ``info.get(..., False)``); the reset infos go to
  ``reset_infos[i]``, the final step's infos to ``infos[i]``.
* ``reset()`` returns observations only, fills ``reset_infos`` and uses the seeds and options
  stored by ``seed()`` / ``set_options()`` once (per-env options that differ are applied with
  one masked reset per distinct options dict).
* ``step_wait()`` returns ``(obs, rewards float32, dones bool, infos)`` with ``infos`` a list of
  ``num_envs`` dicts, built without per-env Python work beyond making the (empty) dicts unless
  the env reported something.
* ``get_attr`` / ``set_attr`` / ``env_method`` / ``env_is_wrapped`` / ``has_attr`` with
  ``indices`` reach the real per-env objects where there are some: gymnasium envs given as
  ``env_fns`` (in a :class:`~fastsample.ProcessVectorEnv`'s workers, or a ``SyncVectorEnv``).
  Numba kernels (:class:`~fastsample.NumbaVectorEnv`, ``make_vec(..., num_workers=K)``) have no
  per-env Python objects: there ``get_attr``/``has_attr`` read the vector env's attribute
  (the same value for every index), ``set_attr`` sets it (for all envs at once), ``env_method``
  calls the vector env's method once and repeats its result per index, and ``env_is_wrapped``
  is ``[False] * n``: wrap the result in SB3's ``VecMonitor`` for episode statistics
  (``evaluate_policy`` then finds the episode counts it needs).

Autoreset modes. An env made with ``autoreset_mode="SameStep"`` already has SB3's semantics and
is used as it is (the fast path: its ``info["final_obs"]`` becomes ``terminal_observation``).
An env in ``"NextStep"`` (``make_vec``'s default) or ``"Disabled"`` mode is left in its mode
(nothing about the caller's env is changed): after a step in which some envs finished, the
adapter resets exactly those with ``reset(options={"reset_mask": done})``. That costs one extra
call on such steps, and draws the same as the env's own autoreset, so the results are
identical in all three modes (``tests/test_sb3_adapters.py`` checks them against SB3's
``DummyVecEnv`` over gymnasium's envs).
"""

from __future__ import annotations

import functools
import warnings
from itertools import repeat, starmap
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, SyncVectorEnv, VectorEnv
from gymnasium.vector.utils import concatenate, create_empty_array

try:
    from stable_baselines3.common.env_util import is_wrapped as _sb3_is_wrapped
    from stable_baselines3.common.vec_env import VecEnv
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "fastsample.compat.sb3 needs stable-baselines3: pip install 'fastsample[sb3]'"
    ) from exc

from fastsample.engine.process_vector_env import ProcessVectorEnv

__all__ = ["ProcessVecEnv", "SB3VecEnv", "wrap"]

_SAME_STEP_KEYS = frozenset(("final_obs", "_final_obs", "final_info", "_final_info"))


# -- per-env operations (module level: they travel pickled to worker processes) ---------------


def _get_attr(name: str, env: gym.Env) -> Any:
    return env.get_wrapper_attr(name)


def _has_attr(name: str, env: gym.Env) -> bool:
    try:
        env.get_wrapper_attr(name)
    except AttributeError:
        return False
    return True


def _set_attr(name: str, value: Any, env: gym.Env) -> None:
    setattr(env, name, value)  # on the outermost wrapper, as SB3's vec envs do


def _env_method(name: str, args: tuple, kwargs: dict, env: gym.Env) -> Any:
    return env.get_wrapper_attr(name)(*args, **kwargs)


def _is_wrapped(wrapper_class: type[gym.Wrapper], env: gym.Env) -> bool:
    return _sb3_is_wrapped(env, wrapper_class)


def _per_env_caller(vector_env: VectorEnv) -> Callable[[Callable, list[int]], tuple] | None:
    """``call(fn, indices)`` running ``fn(env)`` on the env objects, or None without any."""
    base = vector_env.unwrapped
    if isinstance(base, SyncVectorEnv):
        envs = base.envs
        return lambda fn, indices: tuple(fn(envs[i]) for i in indices)
    if isinstance(base, ProcessVectorEnv) and getattr(base, "kernel", None) is None:
        return base.call_envs  # env_fns: SyncVectorEnvs in the workers
    return None


# -- batches and infos ----------------------------------------------------------------------------


def _empty_dicts(n: int) -> list[dict]:
    """``n`` distinct empty dicts (callers and SB3's wrappers write into them), made in C."""
    return list(starmap(dict, repeat((), n)))


def _sparse_infos(infos: dict, n: int) -> dict[int, dict]:
    """gymnasium's dict of arrays (with ``_key`` masks, nested dicts recursing) as
    ``{env index: info dict}`` for the envs that have entries."""
    out: dict[int, dict] = {}
    for key, value in infos.items():
        if isinstance(key, str) and key.startswith("_") and key[1:] in infos:
            continue  # a mask
        mask = infos.get("_" + key) if isinstance(key, str) else None
        rows = np.flatnonzero(mask).tolist() if isinstance(mask, np.ndarray) and mask.shape == (n,) else None
        if isinstance(value, dict):
            sub = _sparse_infos(value, n)
            for i in sub if rows is None else rows:
                out.setdefault(i, {})[key] = sub.get(i, {})
        elif isinstance(value, np.ndarray) and value.shape[:1] == (n,):
            for i in range(n) if rows is None else rows:
                out.setdefault(i, {})[key] = value[i]
        else:  # not per env: every env (or every masked env) sees it
            for i in range(n) if rows is None else rows:
                out.setdefault(i, {})[key] = value
    return out


def _per_env_infos(infos: dict, n: int) -> list[dict]:
    out = _empty_dicts(n)
    if infos:
        for i, info in _sparse_infos(infos, n).items():
            out[i] = info
    return out


def _copy_obs(obs: Any) -> Any:
    if isinstance(obs, dict):
        return {k: _copy_obs(v) for k, v in obs.items()}
    if isinstance(obs, tuple):
        return tuple(_copy_obs(v) for v in obs)
    return np.array(obs, copy=True)


def _take(obs: Any, i: int) -> Any:
    """A copy of env ``i``'s observation out of a batch."""
    if isinstance(obs, dict):
        return {k: _take(v, i) for k, v in obs.items()}
    if isinstance(obs, tuple):
        return tuple(_take(v, i) for v in obs)
    return obs[i].copy()


def _batch_actions(space: gym.Space, actions: Any, n: int) -> Any:
    """SB3 hands actions over per env (``actions[i]``); gymnasium wants one batch. Only
    ``Dict``/``Tuple`` spaces differ (array actions are both at once). A dict, or a tuple of
    arrays for a ``Tuple`` space, is taken as a batch already."""
    if isinstance(actions, np.ndarray) and actions.dtype == object:
        actions = list(actions)
    per_env = isinstance(actions, list) or (
        isinstance(actions, tuple)
        and (isinstance(space, spaces.Dict) or all(isinstance(a, tuple) for a in actions))
    )
    if per_env and len(actions) == n:
        return concatenate(space, actions, create_empty_array(space, n))
    return actions


def _same_options(a: dict, b: dict) -> bool:
    try:
        return a is b or bool(a == b)
    except (ValueError, TypeError):  # e.g. array values
        return False


class SB3VecEnv(VecEnv):
    """A gymnasium ``VectorEnv`` (fastsample's, in any autoreset mode) as an SB3 ``VecEnv``.

    Make one with :func:`wrap`. The adapter owns the vector env: ``close()`` closes it. It is
    ``vector_env``; its spaces' single-env versions are SB3's ``observation_space`` and
    ``action_space``. See the module docstring for how the two contracts are bridged.
    """

    def __init__(self, vector_env: VectorEnv):
        if not isinstance(vector_env, VectorEnv):
            raise TypeError(f"expected a gymnasium.vector.VectorEnv, got {type(vector_env).__name__}")
        self.vector_env = vector_env
        mode = vector_env.metadata.get("autoreset_mode", getattr(vector_env, "autoreset_mode", None))
        self.autoreset_mode = AutoresetMode(mode) if mode is not None else AutoresetMode.NEXT_STEP
        self._same_step = self.autoreset_mode is AutoresetMode.SAME_STEP
        base = vector_env.unwrapped
        self._fresh_obs = getattr(base, "copy", False) is True  # else step/reset return views
        self._async = isinstance(vector_env, (ProcessVectorEnv, gym.vector.AsyncVectorEnv))
        self._call_envs = _per_env_caller(vector_env)
        self._structured_actions = isinstance(vector_env.single_action_space, (spaces.Dict, spaces.Tuple))
        self._actions: Any = None
        super().__init__(vector_env.num_envs, vector_env.single_observation_space, vector_env.single_action_space)

    # -- reset / step ----------------------------------------------------------------------------

    def reset(self):
        n = self.num_envs
        venv = self.vector_env
        seeds = None if all(s is None for s in self._seeds) else list(self._seeds)
        options = self._options
        if all(_same_options(o, options[0]) for o in options[1:]):
            obs, info = venv.reset(seed=seeds, options=dict(options[0]) if options[0] else None)
            self.reset_infos = _per_env_infos(info, n)
        else:  # gymnasium resets take one options dict: one masked reset per distinct dict
            groups: list[tuple[dict, np.ndarray]] = []
            for i, opts in enumerate(options):
                for seen, mask in groups:
                    if _same_options(seen, opts):
                        mask[i] = True
                        break
                else:
                    mask = np.zeros(n, dtype=np.bool_)
                    mask[i] = True
                    groups.append((opts, mask))
            reset_infos = _empty_dicts(n)
            for opts, mask in groups:
                obs, info = venv.reset(seed=seeds, options={**opts, "reset_mask": mask})
                for i, env_info in _sparse_infos(info, n).items():
                    reset_infos[i] = env_info
            self.reset_infos = reset_infos
        self._reset_seeds()
        self._reset_options()
        return obs if self._fresh_obs else _copy_obs(obs)

    def step_async(self, actions) -> None:
        if self._structured_actions:
            actions = _batch_actions(self.vector_env.single_action_space, actions, self.num_envs)
        elif not isinstance(actions, np.ndarray):
            actions = np.asarray(actions)  # a list of per-env actions (SB3 allows it)
        if self._async:
            self.vector_env.step_async(actions)
        else:
            self._actions = actions

    def step_wait(self):
        venv = self.vector_env
        n = self.num_envs
        if self._async:
            obs, rewards, terminated, truncated, infos = venv.step_wait()
        else:
            actions, self._actions = self._actions, None
            obs, rewards, terminated, truncated, infos = venv.step(actions)
        rewards = np.array(rewards, dtype=np.float32)  # DummyVecEnv's dtype
        dones = np.logical_or(terminated, truncated)
        if not dones.any():
            return (obs if self._fresh_obs else _copy_obs(obs)), rewards, dones, _per_env_infos(infos, n)

        done = np.flatnonzero(dones).tolist()
        time_limit = np.logical_and(truncated, np.logical_not(terminated))  # before a reset reuses buffers
        if self._same_step:
            final_obs = infos.get("final_obs")
            if final_obs is None:
                raise RuntimeError("a SameStep vector env finished envs without info['final_obs']")
            out = _per_env_infos({k: v for k, v in infos.items() if k not in _SAME_STEP_KEYS}, n)
            final_infos = _sparse_infos(infos["final_info"], n) if infos.get("final_info") else {}
            for i in done:
                self.reset_infos[i] = out[i]  # what the env reported for its reset
                info = final_infos.get(i, {})  # what it reported for its last step
                info["TimeLimit.truncated"] = bool(time_limit[i])
                info["terminal_observation"] = final_obs[i]
                out[i] = info
            return (obs if self._fresh_obs else _copy_obs(obs)), rewards, dones, out

        # NextStep / Disabled: reset the finished envs now, as SB3 expects
        out = _per_env_infos(infos, n)
        last = [_take(obs, i) for i in done]
        obs, reset_info = venv.reset(options={"reset_mask": dones})
        reset_infos = _sparse_infos(reset_info, n) if reset_info else {}
        for j, i in enumerate(done):
            info = out[i]
            info["TimeLimit.truncated"] = bool(time_limit[i])
            info["terminal_observation"] = last[j]
            self.reset_infos[i] = reset_infos.get(i, {})
        return (obs if self._fresh_obs else _copy_obs(obs)), rewards, dones, out

    # -- per-env access --------------------------------------------------------------------------

    def _indices(self, indices) -> list[int]:
        n = self.num_envs
        if indices is None:
            return list(range(n))
        if isinstance(indices, (int, np.integer)):
            indices = [indices]
        out = []
        for i in indices:
            i = int(i)
            if not -n <= i < n:
                raise IndexError(f"env index {i} out of range for num_envs={n}")
            out.append(i % n)
        return out

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        idx = self._indices(indices)
        if self._call_envs is not None:
            return list(self._call_envs(functools.partial(_get_attr, attr_name), idx))
        return [getattr(self.vector_env.unwrapped, attr_name)] * len(idx)

    def has_attr(self, attr_name: str) -> bool:
        if self._call_envs is not None:
            return all(self._call_envs(functools.partial(_has_attr, attr_name), self._indices(None)))
        return hasattr(self.vector_env.unwrapped, attr_name)

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        idx = self._indices(indices)
        if self._call_envs is not None:
            self._call_envs(functools.partial(_set_attr, attr_name, value), idx)
            return
        if sorted(set(idx)) != list(range(self.num_envs)):
            raise ValueError(
                f"{type(self.vector_env.unwrapped).__name__} has no per-env objects: set_attr sets the "
                f"vector env's attribute, for all envs at once (indices=None)"
            )
        setattr(self.vector_env.unwrapped, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        idx = self._indices(indices)
        if self._call_envs is not None:
            return list(self._call_envs(functools.partial(_env_method, method_name, method_args, method_kwargs), idx))
        result = getattr(self.vector_env.unwrapped, method_name)(*method_args, **method_kwargs)
        return [result] * len(idx)

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices=None) -> list[bool]:
        idx = self._indices(indices)
        if self._call_envs is not None:
            return list(self._call_envs(functools.partial(_is_wrapped, wrapper_class), idx))
        return [False] * len(idx)  # kernels are not gymnasium envs: use VecMonitor

    # -- render / close --------------------------------------------------------------------------

    def get_images(self) -> Sequence[np.ndarray | None]:
        if self.render_mode != "rgb_array":
            warnings.warn(
                f"The render mode is {self.render_mode}, but this method assumes it is `rgb_array` to obtain images."
            )
            return [None] * self.num_envs
        frames = self.vector_env.render()
        return [None] * self.num_envs if frames is None else list(frames)

    def close(self) -> None:
        self.vector_env.close()

    @property
    def closed(self) -> bool:
        return self.vector_env.closed

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.vector_env!r})"


def wrap(vector_env: VectorEnv) -> SB3VecEnv:
    """Turn a gymnasium ``VectorEnv`` made by fastsample (``make_vec``, ``NumbaVectorEnv``,
    ``ProcessVectorEnv``; any autoreset mode) into an SB3 ``VecEnv``::

        from stable_baselines3 import PPO
        from fastsample.compat.sb3 import wrap
        venv = wrap(fastsample.make_vec("CartPole-v1", 8, autoreset_mode="SameStep"))
        PPO("MlpPolicy", venv).learn(100_000)

    ``SameStep`` is the fastest mode here; the others cost one masked ``reset`` per step in
    which an env finished. Other gymnasium ``VectorEnv``s work if they accept
    ``reset(options={"reset_mask": mask})`` (gymnasium's own do) or are in ``SameStep`` mode.
    """
    return SB3VecEnv(vector_env)


class ProcessVecEnv(SB3VecEnv):
    """A drop-in for SB3's ``SubprocVecEnv`` on fastsample's worker engine.

    ``env_fns`` are spread over ``num_workers`` processes (default ``min(len(env_fns), CPUs
    this process may use)``), several envs per worker, with observations, rewards, flags and actions
    in shared memory (:class:`~fastsample.ProcessVectorEnv` in ``SameStep`` mode).
    ``start_method`` is the multiprocessing start method; ``None`` takes
    ``ProcessVectorEnv``'s default (``"fork"`` on Linux, where ``SubprocVecEnv`` defaults to
    ``"forkserver"``). ``get_attr``/``set_attr``/``env_method``/``env_is_wrapped`` act on the real
    env objects in the workers, asking only the workers that own the requested ``indices``.
    Works with ``make_vec_env(..., vec_env_cls=ProcessVecEnv)``.
    """

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env]], num_workers: int | None = None,
                 start_method: str | None = None):
        vector_env = ProcessVectorEnv(env_fns, num_workers=num_workers, autoreset_mode=AutoresetMode.SAME_STEP,
                                      context=start_method)
        try:
            super().__init__(vector_env)
        except BaseException:
            vector_env.close(terminate=True)
            raise

    def __repr__(self) -> str:
        return f"ProcessVecEnv(num_envs={self.num_envs}, num_workers={self.vector_env.num_workers})"
