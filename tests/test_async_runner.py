"""The async runner's learner: reward normalisation chains each sampler's returns, and the
policy-lag cap drops stale slots and reports the lag distribution."""

import time

import numpy as np
import torch

from fastsample.runners.async_runner import AsyncRunner
from fastsample.train_config import make_config


def _runner(**over):
    values = dict(mode="async", num_envs=8, num_steps=8, num_minibatches=1, update_epochs=1, progress=False)
    values.update(over)
    return make_config("CartPole-v1", **values)


def test_async_reward_normalisation_chains_each_samplers_returns(monkeypatch):
    """Two slots of one update from the same sampler (sampler 1 is slowed down, so sampler 0
    fills both) must chain: the second slot's discounted returns continue from the first's.
    The running return variance must be that of the true per-env discounted returns."""
    monkeypatch.setenv("FASTSAMPLE_TEST_SAMPLER_DELAY", "1:0.3")
    cfg = _runner(num_workers=2, async_slots=4, norm_reward=True, gamma=0.9)
    cfg.max_policy_lag = 10**9  # keep every slot: the reference below chains all of them
    runner = AsyncRunner(cfg, torch.device("cpu"))
    taken = []  # (sampler id, rewards, dones) of each slot the learner used, in order
    updates_with_duplicates = 0
    orig = runner._take_slots

    def recording_take():
        nonlocal updates_with_duplicates
        res = orig()
        ids = res[0] if isinstance(res, tuple) else res
        v = runner.slots.views
        sids = [int(v["meta"][s][1]) for s in ids]
        updates_with_duplicates += len(set(sids)) < len(sids)
        taken.extend((sid, v["rewards"][s].copy(), v["dones"][s].copy()) for sid, s in zip(sids, ids))
        return res

    runner._take_slots = recording_take
    try:
        runner.start()
        for _ in range(12):
            runner.iteration_step()
    finally:
        runner.close()
    assert updates_with_duplicates > 0, "the test needs updates with two slots from one sampler"
    running = {0: np.zeros(4), 1: np.zeros(4)}
    seen = []
    for sid, rewards, dones in taken:
        ret = running[sid]
        for t in range(rewards.shape[0]):
            ret = ret * cfg.gamma + rewards[t]
            seen.append(ret.copy())
            ret = np.where(dones[t] > 0, 0.0, ret)
        running[sid] = ret
    seen = np.concatenate(seen)
    rms = runner.normalizer.ret_rms
    assert rms.count == len(seen) + 1e-4
    np.testing.assert_allclose(rms.mean, seen.mean(), rtol=1e-5)
    np.testing.assert_allclose(rms.var, seen.var(), rtol=1e-5)


def test_max_policy_lag_drops_stale_slots_and_reports_lags():
    """One sampler, 4 slots: once the sampler has filled every slot (with the weights of now
    or before), slots are taken in the order they were filled, so the third update after that
    meets one at least 2 versions behind: with --max-policy-lag 1 it is dropped (handed back
    and refilled), never used."""
    cfg = _runner(num_workers=1, async_slots=4, max_policy_lag=1)
    runner = AsyncRunner(cfg, torch.device("cpu"))
    outs = []
    try:
        runner.start()
        outs.append(runner.iteration_step())
        t0 = time.monotonic()  # let the sampler fill every slot (versions <= the current one)
        while runner.full_q.qsize() < runner.num_slots:
            assert time.monotonic() - t0 < 60, "the sampler never filled its slots"
            time.sleep(0.01)
        for _ in range(4):  # the 3rd of these finds a slot >= 2 versions old at the head of the queue
            outs.append(runner.iteration_step())
    finally:
        runner.close()
    assert all(o["policy_lag_max"] <= 1 and o["policy_lag_min"] <= o["policy_lag"] <= o["policy_lag_max"]
               for o in outs)
    assert sum(o["slots_dropped"] for o in outs) >= 1
    assert runner.slots_dropped == sum(o["slots_dropped"] for o in outs)
    assert max(runner.lag_hist) <= 1 and sum(runner.lag_hist.values()) == len(outs)


def test_max_policy_lag_is_validated():
    import pytest

    from fastsample.train_config import ConfigError, validate

    with pytest.raises(ConfigError, match="--max-policy-lag"):
        validate(_runner(max_policy_lag=-1))


def test_a_dead_sampler_fails_the_next_update_while_others_keep_the_queue_full():
    import os
    import signal

    import pytest

    from fastsample.runners.async_runner import SamplerError

    runner = AsyncRunner(_runner(num_workers=2, async_slots=6), torch.device("cpu"))
    try:
        runner.start()
        runner.iteration_step()
        os.kill(runner.procs[1].pid, signal.SIGKILL)
        runner.procs[1].join(10)
        with pytest.raises(SamplerError, match="sampler 1 .*died"):
            runner.iteration_step()  # sampler 0 alone could fill every slot: no update may use it
    finally:
        runner.close()
    assert not any(p.is_alive() for p in runner.procs)
