"""TorchRL's ``GymWrapper`` takes fastsample envs as they are (no adapter): made with
``autoreset_mode="SameStep"`` or ``"Disabled"``, in- or out-of-process, they pass TorchRL's
``check_env_specs`` and autoreset inside rollouts. TorchRL is optional (``fastsample[torchrl]``):
without it these tests skip."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torchrl", reason="torchrl is not installed (optional: pip install 'fastsample[torchrl]')")

from torchrl.envs import GymWrapper  # noqa: E402
from torchrl.envs.utils import check_env_specs  # noqa: E402

import fastsample  # noqa: E402

CASES = {
    "SameStep": dict(autoreset_mode="SameStep"),
    "Disabled": dict(autoreset_mode="Disabled"),
    "SameStep-workers": dict(autoreset_mode="SameStep", num_workers=2),
}


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_gym_wrapper_passes_check_env_specs(env_id, case):
    env = GymWrapper(fastsample.make_vec(env_id, 4, seed=0, **CASES[case]))
    try:
        assert tuple(env.batch_size) == (4,)
        check_env_specs(env, seed=0)
    finally:
        env.close()


@pytest.mark.parametrize("case", sorted(CASES))
def test_rollouts_autoreset_after_time_limit(case):
    """A time limit of 8: every env finishes at steps 8, 16, 24 (CartPole never falls that fast
    from its start states with these actions), and the step after starts from a fresh state."""
    env = GymWrapper(fastsample.make_vec("CartPole-v1", 3, seed=1, max_episode_steps=8, **CASES[case]))
    try:
        td = env.rollout(24, break_when_any_done=False, auto_reset=True,
                         policy=_alternate_policy(env))
        done = td["next", "done"].squeeze(-1).numpy()
        truncated = td["next", "truncated"].squeeze(-1).numpy()
        expected = np.zeros((3, 24), dtype=bool)
        expected[:, 7::8] = True
        np.testing.assert_array_equal(done, expected)
        np.testing.assert_array_equal(truncated, expected)
        obs = td["observation"].numpy()
        assert np.abs(obs[:, 8::8]).max() <= 0.05  # reset states (gymnasium's +-0.05 range)
        assert np.abs(obs[:, 7::8]).max() > 0.05  # the states before were not
    finally:
        env.close()


def _alternate_policy(env):
    """Push left, right, left, ...: keeps the pole up for the 8 steps of an episode."""
    counter = {"t": 0}

    def policy(td):
        action = env.action_spec.zero()
        action[..., counter["t"] % 2] = 1  # one-hot
        counter["t"] += 1
        td["action"] = action
        return td

    return policy
