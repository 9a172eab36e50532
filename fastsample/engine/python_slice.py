"""``PythonEnvSlice``: the Python envs of one worker slice, stepped with little Python overhead.

A ``SyncVectorEnv`` (same reset, call, attributes and autoreset rules, so results equal
``SyncVectorEnv``'s) whose ``step`` does less per env: no per-env enum comparisons, no
``_add_info`` call for an empty info, and its results written once per step into buffers the
engine binds (shared memory in a worker), so the engine copies nothing afterwards. On 8
``gym.make("CartPole-v1")`` envs this step costs about 84 µs against ``SyncVectorEnv``'s 98.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.vector.utils import batch_differing_spaces, concatenate, iterate
from gymnasium.spaces.utils import is_space_dtype_shape_equiv

from fastsample.engine.python_actions import ActionItems


class PythonEnvSlice(SyncVectorEnv):
    """``SyncVectorEnv(env_fns, copy=False, autoreset_mode=...)`` with a leaner step that can
    write into bound output buffers (see :meth:`bind_output_buffers`)."""

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env]], autoreset_mode: AutoresetMode,
                 single_observation_space: gym.Space | None = None, single_action_space: gym.Space | None = None,
                 observation_mode: str = "same"):
        """``single_observation_space``/``single_action_space``: the whole vector env's (its
        first env's), which every env of this slice must match as ``AsyncVectorEnv`` checks it:
        equal spaces for ``observation_mode="same"``, the same shape and dtype otherwise
        (``"different"``, or a custom ``(batch, single)`` pair)."""
        super().__init__(env_fns, copy=False, autoreset_mode=autoreset_mode,
                         observation_mode="same" if observation_mode == "same" else "different")
        if single_observation_space is not None:
            self._check_against(single_observation_space, single_action_space, observation_mode)
        self._bound_actions: np.ndarray | None = None
        self._bound_results: tuple[np.ndarray, ...] | None = None
        self._finished = [False] * self.num_envs  # envs whose last step ended an episode
        self.failed_env: int | None = None  # the env (of this slice) whose step or reset raised
        self._box_obs = isinstance(self.single_observation_space, gym.spaces.Box)

    def _check_against(self, single_obs: gym.Space, single_act: gym.Space | None, mode: str) -> None:
        for i, env in enumerate(self.envs):
            if mode == "same":
                if env.observation_space != single_obs:
                    raise RuntimeError(
                        f"ProcessVectorEnv(..., observation_mode='same') however the sub-environments observation "
                        f"spaces are not equivalent. single_observation_space={single_obs}, sub-environment "
                        f"observation_space={env.observation_space} (env {i} of this slice). If this is "
                        f"intentional, use `observation_mode='different'` instead.")
            elif not is_space_dtype_shape_equiv(env.observation_space, single_obs):
                raise RuntimeError(
                    f"ProcessVectorEnv(..., observation_mode='different' or custom space) however the "
                    f"sub-environment's observation spaces do not share a common shape and dtype, "
                    f"single_observation_space={single_obs}, sub-environment observation space="
                    f"{env.observation_space} (env {i} of this slice)")
            if single_act is not None and env.action_space != single_act:
                raise RuntimeError(
                    f"Some environments have an action space different from `{single_act}` ({env.action_space}, "
                    f"env {i} of this slice). In order to batch actions, the action spaces from all environments "
                    f"must be equal.")
        if mode != "same":
            self.single_observation_space = single_obs
            self.observation_space = batch_differing_spaces([env.observation_space for env in self.envs])

    def bind_output_buffers(self, obs: Any, rewards: np.ndarray, terminated: np.ndarray,
                            truncated: np.ndarray, actions: np.ndarray | None = None) -> None:
        """Write observations into ``obs`` (an array, or nested dict/tuple of arrays as the
        space's batch) and each step's rewards and flags into the other arrays; read
        :meth:`step_bound`'s actions from ``actions``."""
        self._observations = obs
        self._bound_results = (rewards, terminated, truncated)
        self._bound_actions = actions

    def rebind_outputs(self, obs: Any, rewards: np.ndarray, terminated: np.ndarray, truncated: np.ndarray) -> None:
        """Write the next results into other buffers like the bound ones."""
        self._observations = obs
        self._bound_results = (rewards, terminated, truncated)

    def write_true_observations(self, out: Any) -> bool:
        """Write each env's latest observation (what its last step or reset returned, as
        ``SyncVectorEnv`` keeps it) into ``out``; False, writing nothing, while some env has
        none yet."""
        env_obs = self._env_obs
        if any(o is None for o in env_obs):
            return False
        concatenate(self.single_observation_space, env_obs, out)
        return True

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        self.failed_env = None
        try:
            obs, infos = super().reset(seed=seed, options=options)
        except Exception as exc:  # which env raised: the loop index of SyncVectorEnv.reset's frame
            tb = exc.__traceback__
            while tb is not None:
                if tb.tb_frame.f_code is SyncVectorEnv.reset.__code__:
                    i = tb.tb_frame.f_locals.get("i")
                    self.failed_env = i if isinstance(i, int) else None
                tb = tb.tb_next
            raise
        self._finished = self._autoreset_envs.tolist()
        return obs, infos

    def step_bound(self):
        """Step with the actions in the bound action buffer (each env gets its own copy of its
        row, as from ``AsyncVectorEnv``: the buffer is rewritten by the next step)."""
        actions = self._bound_actions
        return self.step(actions.copy() if actions.ndim > 1 else actions)

    def step(self, actions: Any):
        envs = self.envs
        env_obs = self._env_obs
        finished = self._finished
        rewards, terminated, truncated = self._rewards, self._terminations, self._truncations
        mode = self.autoreset_mode
        next_step = mode is AutoresetMode.NEXT_STEP
        same_step = mode is AutoresetMode.SAME_STEP
        if mode is AutoresetMode.DISABLED and any(finished):
            done = [i for i, f in enumerate(finished) if f]
            raise gym.error.ResetNeeded(
                f"envs {done} of this slice finished and autoreset is disabled: reset them with "
                f"reset(options={{'reset_mask': mask}}) before stepping"
            )
        infos: dict[str, Any] = {}
        # a batch (rows of an array, or nested dicts/tuples of them), or one element per env
        for i, action in enumerate(actions if type(actions) is ActionItems else iterate(self.action_space, actions)):
            env = envs[i]
            self.failed_env = i  # which env raised, if one does
            if finished[i] and next_step:
                env_obs[i], info = env.reset()
                rewards[i] = 0.0
                terminated[i] = False
                truncated[i] = False
            else:
                env_obs[i], rewards[i], terminated[i], truncated[i], info = env.step(action)
                if same_step and (terminated[i] or truncated[i]):
                    infos = self._add_info(infos, {"final_obs": env_obs[i], "final_info": info}, i)
                    env_obs[i], info = env.reset()
            if info:
                infos = self._add_info(infos, info, i)
        self.failed_env = None
        self._write_observations()
        self._autoreset_envs = np.logical_or(terminated, truncated)
        self._finished = self._autoreset_envs.tolist()
        if self._bound_results is not None:
            # per-env writes went to private arrays: written element by element, shared memory
            # next to another worker's slice would bounce cache lines between cores on each one
            for out, result in zip(self._bound_results, (rewards, terminated, truncated)):
                np.copyto(out, result)
            return self._observations, *self._bound_results, infos
        return self._observations, rewards, terminated, truncated, infos

    def _write_observations(self) -> None:
        out = self._observations
        if self._box_obs and isinstance(out, np.ndarray):
            # np.stack (what concatenate does for Box) costs 5.6 µs for 8 CartPole obs, this 2.4
            try:
                stacked = np.array(self._env_obs)
            except ValueError:  # ragged observations
                stacked = None
            if stacked is not None and stacked.shape == out.shape:
                np.copyto(out, stacked, casting="same_kind")  # np.stack's casting rule
                return
        # other spaces, and wrong shapes (concatenate raises the error SyncVectorEnv raises)
        self._observations = concatenate(self.single_observation_space, self._env_obs, out)
