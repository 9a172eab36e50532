"""Actions reach Python envs as ``AsyncVectorEnv`` hands them over: env ``i`` gets the ``i``-th
element of ``gymnasium.vector.utils.iterate(action_space, actions)``, unchecked and uncast, and
the env itself decides (and raises). Gymnasium's own ``tests/vector`` relies on it (run them with
``tests/test_gymnasium_vector_suite.py``); each failure class it found is covered here without
a Gymnasium tree. Numba kernels keep validating their actions (they have no env code to do it).

Every env here runs as 4 copies over 2 slices, by worker processes and with this process
stepping the first slice (``inline``), so each check crosses a worker boundary."""

from __future__ import annotations

import functools
import multiprocessing as mp
import time

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.spaces import Box, Dict, Discrete, MultiBinary, MultiDiscrete, Text, Tuple
from gymnasium.vector.utils import batch_space, iterate

import fastsample
from fastsample import ProcessVectorEnv

SLICES = pytest.mark.parametrize("inline", [False, True], ids=["workers", "inline"])


class EchoEnv(gym.Env):
    """Keeps every action it received, as it received it; ``check=True`` raises as gymnasium's
    envs do for an action outside the space."""

    def __init__(self, action_space, check=False):
        self.action_space = action_space
        self.observation_space = Box(-np.inf, np.inf, (1,), np.float64)
        self.check = check
        self.actions = []

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1), {}

    def step(self, action):
        if self.check and not self.action_space.contains(action):
            raise ValueError(f"{action!r} ({type(action)}) invalid")
        self.actions.append(action)
        return np.zeros(1), 0.0, False, False, {}


def received(env):
    return env.actions


def echo_vec(space, inline, n=4, **kwargs):
    env = ProcessVectorEnv([functools.partial(EchoEnv, space, **kwargs)] * n, num_workers=2, inline=inline)
    env.reset(seed=0)
    return env


def same_element(got, want) -> bool:
    """Equal value, type and (for arrays and NumPy scalars) dtype, recursively."""
    if type(got) is not type(want):
        return False
    if isinstance(want, dict):
        return got.keys() == want.keys() and all(same_element(got[k], want[k]) for k in want)
    if isinstance(want, (tuple, list)):
        return len(got) == len(want) and all(same_element(g, w) for g, w in zip(got, want))
    if isinstance(want, (np.ndarray, np.generic)):
        return got.dtype == want.dtype and np.shape(got) == np.shape(want) and np.array_equal(got, want)
    return got == want


CASES = [
    # (single action space, a batch of 4 actions): what AsyncVectorEnv gives each env is the reference
    (Discrete(4, start=1, dtype=np.int32), np.array([1, 2, 3, 4], dtype=np.int32)),  # the space's dtype
    (Discrete(4, start=1, dtype=np.int32), np.array([1, 2, 3, 4])),  # int64: np.int64 elements
    (Discrete(4), [0, 1, 2, 3]),  # a list: Python ints
    (Discrete(4), np.array([4, 0, 5, -1])),  # outside the space: passed on, unchecked
    (Box(-1, 1, (2,), np.float32), np.linspace(-2, 2, 8).reshape(4, 2)),  # float64 rows
    (Box(-1, 1, (2,), np.float32), np.linspace(-2, 2, 8, dtype=np.float32).reshape(4, 2)),
    (Box(-1, 1, (), np.float32), np.array([0.1, 0.2, 0.3, 0.4])),  # np.float64 scalars
    (Box(-1, 1, (1,), np.float32), np.arange(4)),  # another shape: rows of what was given
    (Box(0, 1, (2,), np.bool_), np.array([[True, False]] * 4)),
    (Box(0, 10, (2,), np.int8), np.full((4, 2), 3.9)),  # floats for an integer Box: not truncated here
    (Box(-1, 1, (2,), np.float16), [[0.5, 70000.0]] * 4),  # lists of Python floats
    (MultiDiscrete([3, 3]), np.array([[0, 1], [2, 2], [1, 0], [5, 5]], dtype=np.int32)),
    (MultiBinary(3), np.array([[1, 0, 1]] * 4, dtype=np.int8)),
    (Dict({"a": Discrete(3), "b": Box(0, 1, (2,))}), {"a": np.array([0, 1, 2, 0]), "b": np.zeros((4, 2))}),
    (Tuple((Discrete(3), Discrete(2))), (np.array([0, 1, 2, 0], dtype=np.int32), [1, 0, 1, 0])),
    (Text(5), ("a", "bb", "ccc", "")),
]


@SLICES
@pytest.mark.parametrize("case", range(len(CASES)))
def test_each_env_gets_the_element_async_vector_env_gives_it(case, inline):
    space, actions = CASES[case]
    env = echo_vec(space, inline)
    try:
        want = list(iterate(batch_space(space, 4), actions))  # AsyncVectorEnv's step_async
        for _ in range(2):
            env.step(actions)
        got = env.call_envs(received)
        for i in range(4):
            assert len(got[i]) == 2
            for action in got[i]:
                assert same_element(action, want[i]), (i, action, want[i])
    finally:
        env.close()


@SLICES
def test_envs_get_their_own_rows_not_the_shared_buffer(inline):
    space = Box(-1, 1, (2,), np.float32)
    env = echo_vec(space, inline)
    try:
        first = np.full((4, 2), 0.25, np.float32)
        env.step(first)
        env.step(np.full((4, 2), -0.5, np.float32))  # the shared buffer is rewritten
        for kept in env.call_envs(received):
            np.testing.assert_array_equal(kept[0], first[0])
    finally:
        env.close()


# -- the failure classes Gymnasium's tests/vector found ------------------------------------------

class SleepEnv(gym.Env):
    """As Gymnasium's slow test env: ``time.sleep(action)``, which refuses np.float32."""

    observation_space = Box(-1, 1, (1,), np.float32)
    action_space = Box(0, 1, (), np.float32)

    def reset(self, *, seed=None, options=None):
        return np.zeros(1, np.float32), {}

    def step(self, action):
        time.sleep(action)
        return np.zeros(1, np.float32), 0.0, False, False, {}


@SLICES
def test_float64_actions_for_a_float32_box_reach_the_env_as_given(inline):
    """Gymnasium's step-timeout test: float64 actions go to ``time.sleep``."""
    env = ProcessVectorEnv([SleepEnv] * 4, num_workers=2, inline=inline)
    try:
        env.reset()
        env.step(np.array([0.0, 0.001, 0.0, 0.001]))
        env.step_async(np.array([0.0, 0.0, 0.0, 0.5]))
        with pytest.raises(mp.TimeoutError):  # the class AsyncVectorEnv raises
            env.step_wait(timeout=0.1)
    finally:
        env.close(terminate=True)


@SLICES
def test_an_action_outside_the_space_reaches_the_env(inline):
    """Gymnasium's final-obs test steps action 4 in Discrete(4); the env decides."""
    env = echo_vec(Discrete(4), inline)
    try:
        env.step(np.array([4, 4, 4, 4]))
        assert [a[-1] for a in env.call_envs(received)] == [4] * 4
    finally:
        env.close()
    env = echo_vec(Discrete(4), inline, check=True)
    try:
        with pytest.raises(ValueError, match=r"\(<class 'numpy.int64'>\) invalid"):
            env.step(np.array([0, 0, 0, 4]))  # the env's own error, from the worker of env 3
        env.step(np.array([0, 1, 2, 3]))  # still usable
    finally:
        env.close()


@SLICES
def test_a_batch_of_another_shape_is_iterated_and_the_env_raises(inline):
    """Gymnasium's sub-env error test steps Box((1,)) envs with a (3,)-shaped batch, and expects
    the env's own error."""
    env = echo_vec(Box(-1, 1, (1,), np.float32), inline, n=3, check=True)
    try:
        with pytest.raises(ValueError, match="invalid"):
            env.step([0, 1, 2])
        env.step(np.zeros((3, 1), np.float32))
    finally:
        env.close()


@SLICES
def test_a_batch_of_another_length_or_no_batch_raises_before_any_env_steps(inline):
    env = echo_vec(Discrete(4), inline)
    try:
        with pytest.raises(ValueError, match="expected a batch of 4 actions"):
            env.step(np.array([0, 1, 2]))
        with pytest.raises(TypeError):  # iterate's error, as AsyncVectorEnv raises it
            env.step(3)
        assert env.call_envs(received) == ([],) * 4
        env.step(np.array([0, 1, 2, 3]))
    finally:
        env.close()


@SLICES
def test_send_recv_hands_elements_over_as_step_does(inline):
    env = ProcessVectorEnv([functools.partial(EchoEnv, Discrete(4, dtype=np.int32))] * 4, num_workers=2,
                           inline=inline, batch_size=2)
    try:
        env.async_reset()
        halves = sorted(int(env.recv()[4]["env_id"][0]) for _ in range(2))
        assert halves == [0, 2]
        env.send([3, 2], np.array([0, 1]))  # Python ints
        env.send(np.array([1, 5], dtype=np.int32), np.array([2, 3]))  # 5: outside the space, unchecked
        env.recv()
        env.recv()
        got = [a[-1] for a in env.call_envs(received)]
        assert same_element(got, [3, 2, np.int32(1), np.int32(5)])
    finally:
        env.close()


def test_kernels_still_check_actions():
    env = fastsample.make_vec("CartPole-v1", 4, num_workers=2)
    try:
        env.reset(seed=0)
        with pytest.raises(gym.error.InvalidAction, match="outside"):
            env.step(np.array([0, 1, 2, 0]))
        env.step(np.array([0, 1, 1, 0]))
    finally:
        env.close()
