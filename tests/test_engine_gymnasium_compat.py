"""ProcessVectorEnv as a drop-in for gymnasium's AsyncVectorEnv (issue 10): the failure classes
found by running Gymnasium's own ``tests/vector`` against it (see
``tests/test_gymnasium_vector_suite.py``, which needs a Gymnasium source tree), each covered
here without one. Every env here runs 3 or 4 copies over 2 workers, so every check also crosses
a worker boundary."""

from __future__ import annotations

import functools
import re
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.spaces import Box, Dict, Discrete, Graph, MultiBinary, OneOf, Sequence, Text, Tuple
from gymnasium.utils.env_checker import data_equivalence
from gymnasium.vector.utils import batch_differing_spaces

from fastsample import ProcessVectorEnv


class SpaceEnv(gym.Env):
    """Observations sampled from ``obs_space``; records the actions it gets."""

    def __init__(self, obs_space, act_space=None, fail_reset_seed=None, fail_step_from=None):
        self.observation_space = obs_space
        self.action_space = act_space if act_space is not None else Discrete(2)
        self.fail_reset_seed = fail_reset_seed
        self.fail_step_from = fail_step_from
        self.actions = []

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None and seed == self.fail_reset_seed:
            raise ValueError("Error in reset")
        self.observation_space.seed(seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        if self.fail_step_from is not None and action >= self.fail_step_from:
            raise ValueError(f"Error in step with {action}")
        self.actions.append(action)
        return self.observation_space.sample(), 0.0, False, False, {}


def last_action(env):
    return env.actions[-1]


def vec(spaces, act_space=None, **kwargs):
    fns = [functools.partial(SpaceEnv, s, act_space) for s in spaces]
    kwargs.setdefault("num_workers", 2)
    return ProcessVectorEnv(fns, **kwargs)


# -- observation_mode -------------------------------------------------------------------------

def test_invalid_observation_mode():
    with pytest.raises(ValueError, match=re.escape("Invalid `observation_mode`, expected: 'same' or 'different' or "
                                                   "tuple of single and batch observation space, actual got invalid")):
        vec([Box(0, 1, (5,))] * 3, observation_mode="invalid")


@pytest.mark.parametrize("shared_memory", [True, False])
def test_observation_mode_same_rejects_different_spaces_in_any_worker(shared_memory):
    # env 2 differs and lives in the second worker: the check is against env 0's space
    spaces = [Box(0, 1, (2,)), Box(0, 1, (2,)), Box(0, 2, (2,))]
    with pytest.raises(RuntimeError, match="the sub-environments observation spaces are not equivalent. .*If this "
                                           "is intentional, use `observation_mode='different'` instead."):
        vec(spaces, shared_memory=shared_memory)
    with pytest.raises(RuntimeError, match="action space different from"):
        ProcessVectorEnv([functools.partial(SpaceEnv, Box(0, 1, (2,)), Discrete(2 + i // 2)) for i in range(4)],
                         num_workers=2)


@pytest.mark.parametrize("shared_memory", [True, False])
def test_observation_mode_different_and_custom(shared_memory):
    spaces = [Box(0, i, (5,)) for i in range(1, 4)]
    env = vec(spaces, observation_mode="different", shared_memory=shared_memory)
    try:
        assert env.observation_space == batch_differing_spaces(spaces)
        assert env.single_observation_space == spaces[0]
        obs, _ = env.reset(seed=0)
        assert obs.shape == (3, 5) and obs in env.observation_space
        obs, *_ = env.step(env.action_space.sample())
        assert obs in env.observation_space
    finally:
        env.close()
    custom = (Box(0, 4, (3, 5)), Box(0, 4, (5,)))
    env = vec(spaces, observation_mode=custom, shared_memory=shared_memory)
    try:
        assert env.observation_space == custom[0] and env.single_observation_space == custom[1]
        env.reset(seed=0)
        env.step(env.action_space.sample())
    finally:
        env.close()
    with pytest.raises((RuntimeError, ValueError)):  # shapes differ: nothing can batch them
        vec([Box(0, 1, (i + 1,)) for i in range(3)], observation_mode="different", shared_memory=shared_memory)
    with pytest.raises(RuntimeError, match="do not share a common shape and dtype"):
        vec([Box(0, 1, (i + 1,)) for i in range(3)], observation_mode=custom, shared_memory=shared_memory)
    with pytest.raises(TypeError, match="Expected both elements of observation_mode to be Spaces"):
        vec(spaces, observation_mode=(1, 2))


# -- constructor arguments ----------------------------------------------------------------------

def test_custom_worker_is_refused_with_the_reason_and_what_to_use():
    with pytest.raises(ValueError, match=r"cannot use AsyncVectorEnv's custom `worker`.*gymnasium\.Wrapper.*"
                                         r"gymnasium\.vector\.AsyncVectorEnv"):
        vec([Box(0, 1, (2,))] * 2, worker=lambda *args: None)


def test_async_vector_env_constructor_arguments():
    fns = [functools.partial(SpaceEnv, Box(0, 1, (2,)))] * 4
    # AsyncVectorEnv's keywords, each with its meaning
    env = ProcessVectorEnv(fns, shared_memory=False, copy=False, context="fork", daemon=False,
                           observation_mode="same", autoreset_mode="SameStep", max_concurrency=1)
    try:
        assert (env.shared_memory, env.copy, env.context, env.daemon, env.observation_mode) == (
            False, False, "fork", False, "same")
        assert env.autoreset_mode == gym.vector.AutoresetMode.SAME_STEP
        assert env.num_workers == 1  # one env at a time: max_concurrency=1
        assert all(not p.daemon for p in env._processes)
        env.reset(seed=0)
        env.step(np.zeros(4, dtype=np.int64))
    finally:
        env.close()
    with pytest.raises(ValueError, match="max_concurrency"):
        ProcessVectorEnv(fns, num_workers=2, max_concurrency=1)
    # ... and AsyncVectorEnv's positional order: AsyncVectorEnv(fns, False, False, "fork", False, None, "same",
    # "SameStep", 1) means the same here (num_workers and the other extras are keyword-only)
    env = ProcessVectorEnv(fns, False, False, "fork", False, None, "same", "SameStep", 1)
    try:
        assert (env.shared_memory, env.copy, env.context, env.daemon, env.observation_mode, env.max_concurrency) == (
            False, False, "fork", False, "same", 1)
        assert env.autoreset_mode == gym.vector.AutoresetMode.SAME_STEP and env.num_workers == 1
        env.reset(seed=0)
        env.step(np.zeros(4, dtype=np.int64))
    finally:
        env.close()
    env = ProcessVectorEnv(fns, True)  # AsyncVectorEnv(fns, True): shared memory, 2 workers here by keyword only
    try:
        assert env.shared_memory and env.copy and env._obs_shared
    finally:
        env.close()
    with pytest.raises(TypeError):
        ProcessVectorEnv(fns, True, True, None, True, None, "same", "NextStep", None, 2)  # num_workers: keyword only
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match="`max_concurrency` must be"):
            ProcessVectorEnv(fns, max_concurrency=bad)


# -- spaces shared memory cannot hold -----------------------------------------------------------

class CustomSpace(gym.Space):
    """A space gymnasium does not know (strings)."""

    def sample(self, mask=None, probability=None):
        return "sample"

    def contains(self, x):
        return isinstance(x, str)

    def __eq__(self, other):
        return isinstance(other, CustomSpace)


class CustomEnv(gym.Env):
    def __init__(self):
        self.observation_space = CustomSpace()
        self.action_space = CustomSpace()

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return "reset", {}

    def step(self, action):
        return f"step({action})", 0.0, False, False, {}


DYNAMIC = [
    Text(6),
    Sequence(Box(0, 1, (2,)), stack=True),
    Sequence(Discrete(4)),
    Graph(Box(-1, 1, (2,)), Discrete(3)),
    OneOf((Discrete(3), Box(0, 1, (1,)))),
    Dict(a=Graph(Box(-1, 1, (2, 2)), None), b=Box(0, 1, (2,))),
    Tuple((Text(3), MultiBinary(2))),
]


@pytest.mark.parametrize("space", DYNAMIC, ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("shared_memory", [False, True])
def test_spaces_shared_memory_cannot_hold(space, shared_memory):
    dynamic = "Graph" in str(space) or "Sequence" in str(space)
    if shared_memory and dynamic:  # gymnasium's class and text
        with pytest.raises(TypeError, match="has a dynamic shape so its not possible to make a static shared memory."):
            vec([space] * 3, act_space=space, shared_memory=True)
        return
    env = vec([space] * 3, act_space=space, shared_memory=shared_memory)
    try:
        assert env.observation_space == env.action_space
        obs, _ = env.reset(seed=0)
        assert obs in env.observation_space
        ref = gym.vector.SyncVectorEnv([functools.partial(SpaceEnv, space, space)] * 3)
        ref_obs, _ = ref.reset(seed=0)
        assert data_equivalence(obs, ref_obs)
        env.action_space.seed(1)
        actions = env.action_space.sample()
        obs, *_ = env.step(actions)
        assert obs in env.observation_space
        got = env.call_envs(last_action)
        expected = tuple(gym.vector.utils.iterate(env.action_space, actions))
        assert data_equivalence(got, expected)
        ref.close()
    finally:
        env.close()


def test_custom_space():
    with pytest.raises(ValueError, match=r"shared_memory=True.*shared_memory=False"):
        ProcessVectorEnv([CustomEnv] * 4, num_workers=2)
    env = ProcessVectorEnv([CustomEnv] * 4, num_workers=2, shared_memory=False)
    try:
        assert isinstance(env.single_action_space, CustomSpace) and isinstance(env.action_space, Tuple)
        assert env.reset()[0] == ("reset",) * 4
        obs, *_ = env.step(("a2", "a3", "a5", "a7"))
        assert obs == ("step(a2)", "step(a3)", "step(a5)", "step(a7)")
    finally:
        env.close()


# -- errors, warnings and their order -----------------------------------------------------------

def test_sub_env_errors_are_logged_as_async_vector_env_and_the_last_is_raised():
    fns = [functools.partial(SpaceEnv, Box(0, 1, (2,)), Discrete(3), fail_reset_seed=1, fail_step_from=1)] * 3
    env = ProcessVectorEnv(fns, num_workers=2)  # envs 0, 1 in worker 0; env 2 in worker 1
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            env.reset(seed=[0, 0, 0])
        assert not caught
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(ValueError, match="Error in reset"):
                env.reset(seed=[0, 1, 0])
        texts = [str(w.message) for w in caught]
        assert len(texts) == 3, texts
        assert "Received the following error from Worker-1 - Shutting it down" in texts[0]
        assert 'raise ValueError("Error in reset")\nValueError: Error in reset' in texts[1]
        assert texts[2] == "\x1b[31mERROR: Raising the last exception back to the main process.\x1b[0m"

        env.reset(seed=[0, 0, 0])  # still usable
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(ValueError, match="Error in step with 2"):  # the last failing env's error
                env.step(np.array([0, 1, 2]))
        texts = [str(w.message) for w in caught]
        assert len(texts) == 5, texts
        assert re.match(r"\x1b\[31mERROR: Received the following error from Worker-1 - Shutting it down", texts[0])
        assert re.match(r"\x1b\[31mERROR: Traceback \(most recent call last\):(?s:.)*ValueError: Error in step "
                        r"with 1\n\x1b\[0m", texts[1])
        assert re.match(r"\x1b\[31mERROR: Received the following error from Worker-2 - Shutting it down", texts[2])
        assert "ValueError: Error in step with 2" in texts[3]
        assert "Raising the last exception" in texts[4]
        env.reset(seed=[0, 0, 0])
        env.step(np.array([0, 0, 0]))
    finally:
        env.close()


@pytest.mark.parametrize("pending", ["reset", "step"])
def test_close_while_a_call_is_pending_warns(pending):
    env = vec([Box(0, 1, (2,))] * 4)
    env.reset(seed=0)
    with pytest.raises(gym.error.AlreadyPendingCallError,
                       match=f"Calling `reset_async` while waiting for a pending call to `{pending}` to complete"):
        if pending == "reset":
            env.reset_async()
        else:
            env.step_async(np.zeros(4, dtype=np.int64))
        env.reset_async()
    with pytest.warns(UserWarning, match=re.escape(f"Calling `close` while waiting for a pending call to "
                                                   f"`{pending}` to complete.")):
        env.close(terminate=True)


def test_python_envs_may_be_stepped_before_reset_as_with_async_vector_env():
    env = vec([Box(0, 1, (2,))] * 4)
    try:
        obs, *_ = env.step(np.zeros(4, dtype=np.int64))  # the envs decide (these allow it)
        assert obs.shape == (4, 2)
    finally:
        env.close()
