"""Training runs: reproducibility, a short CartPole solve, resume continuity, async faults."""

import json
import os
import time

import numpy as np
import pytest
import torch

from fastsample.train import load_checkpoint, train
from fastsample.train_config import make_config
from tests.support import leaked_shm, shm_entries


def _metrics(run_dir):
    rows = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    for r in rows:
        r.pop("time_s")
    return rows


def _short(tmp_path, name, **over):
    values = dict(total_steps=512 * 12, stop_when_solved=False, eval_every=0, progress=False,
                  run_dir=str(tmp_path / name))
    values.update(over)
    return make_config("CartPole-v1", **values)


# the sync runner's learner: auto picks compiled on the CPU; torch must keep passing too
BACKENDS = ["torch", "compiled"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_sync_is_reproducible(tmp_path, backend):
    a = train(_short(tmp_path, "a", eval_every=4, eval_min_train_return=0.0, backend=backend), quiet=True)
    b = train(_short(tmp_path, "b", eval_every=4, eval_min_train_return=0.0, backend=backend), quiet=True)
    assert a["backend"] == b["backend"] == backend
    assert _metrics(a["run_dir"]) == _metrics(b["run_dir"])
    assert a["eval_return"] == b["eval_return"]
    wa = load_checkpoint(a["run_dir"])["runner"]["model"]
    wb = load_checkpoint(b["run_dir"])["runner"]["model"]
    for k in wa:
        assert np.array_equal(wa[k], wb[k])


@pytest.mark.parametrize("backend", BACKENDS)
def test_double_buffered_sampling_is_reproducible_and_learns(tmp_path, backend):
    """--double-buffer: two env halves on worker processes, the policy acting on one half
    while the other steps (engine send/recv). Per-half action generators make it
    reproducible whatever order the halves come back in."""
    over = dict(double_buffer=True, num_workers=2, eval_every=0, backend=backend)
    a = train(_short(tmp_path, "a", total_steps=512 * 30, **over), quiet=True)
    b = train(_short(tmp_path, "b", total_steps=512 * 30, **over), quiet=True)
    assert _metrics(a["run_dir"]) == _metrics(b["run_dir"])
    rows = _metrics(a["run_dir"])
    returns = [r["episode_return"] for r in rows if r.get("episode_return") is not None]
    assert returns and max(returns[-5:]) > 2 * returns[0]  # it learns


class _HalvesInOrder:
    """Wraps a double-buffered env so that ``recv()`` returns the pending halves in a fixed
    preference (``first`` whenever it is pending), whatever order the workers finish in."""

    def __init__(self, env, first):
        self.env, self.first, self.pending, self.held = env, first, set(), {}

    def __getattr__(self, name):
        return getattr(self.env, name)

    def _half(self, ids):
        return int(ids[0]) // (self.env.num_envs // 2)

    def async_reset(self, **kwargs):
        self.pending = {0, 1}
        return self.env.async_reset(**kwargs)

    def send(self, actions, ids):
        self.pending.add(self._half(ids))
        return self.env.send(actions, ids)

    def recv(self):
        import copy

        want = self.first if self.first in self.pending else 1 - self.first
        while want not in self.held:
            obs, rew, term, trunc, info = self.env.recv()
            self.held[self._half(info["env_id"])] = (np.array(obs), np.array(rew), np.array(term), np.array(trunc),
                                                      copy.deepcopy(info))
        self.pending.discard(want)
        return self.held.pop(want)


@pytest.mark.parametrize("backend", BACKENDS)
def test_double_buffer_with_normalisation_does_not_depend_on_which_half_returns_first(backend):
    """--double-buffer with --norm-obs/--norm-reward: the running statistics (and so the whole
    run) are the same whichever half of the envs the workers hand back first."""
    from fastsample.runners.sync import SyncRunner

    cfg = make_config("CartPole-v1", num_envs=8, num_steps=16, num_workers=2, double_buffer=True, norm_obs=True,
                      norm_reward=True, num_minibatches=2, update_epochs=2, progress=False, backend=backend)
    results = []
    for first in (0, 1):
        runner = SyncRunner(cfg, torch.device("cpu"))
        runner.env = _HalvesInOrder(runner.env, first)
        try:
            runner.start()
            outs = [runner.iteration_step() for _ in range(3)]
        finally:
            runner.close()
        results.append((runner.learner.state_dict()["model"], runner.normalizer.state_dict(),
                        [(o["policy_loss"], o["value_loss"]) for o in outs]))
    (wa, na, la), (wb, nb, lb) = results
    for key in ("mean", "var"):
        assert np.array_equal(na["obs_rms"][key], nb["obs_rms"][key])
        assert np.array_equal(na["ret_rms"][key], nb["ret_rms"][key])
    assert np.array_equal(na["returns"], nb["returns"])
    assert la == lb
    for k in wa:
        assert np.array_equal(wa[k], wb[k]), k


def test_double_buffer_needs_two_workers(tmp_path):
    from fastsample.train_config import ConfigError, validate

    with pytest.raises(ConfigError, match="--double-buffer needs --num-workers 2"):
        validate(_short(tmp_path, "x", double_buffer=True, num_workers=0))
    with pytest.raises(ConfigError, match="--mode sync option"):
        validate(_short(tmp_path, "y", double_buffer=True, num_workers=2, mode="async"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_resume_continues_exactly(tmp_path, backend):
    full = train(_short(tmp_path, "full", backend=backend), quiet=True)
    half = train(_short(tmp_path, "half", total_steps=512 * 6, backend=backend), quiet=True)
    resumed = train(_short(tmp_path, "half", total_steps=512 * 12, backend=backend), resume=half["run_dir"],
                    quiet=True)
    assert resumed["resumed"] and resumed["exact_env_resume"] and resumed["backend"] == backend
    assert resumed["steps"] == full["steps"]
    assert _metrics(resumed["run_dir"]) == _metrics(full["run_dir"])
    assert resumed["eval_return"] == full["eval_return"]


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_cartpole_preset_solves(tmp_path, backend):
    s = train(make_config("CartPole-v1", seed=1, progress=False, run_dir=str(tmp_path / "solve"), backend=backend),
              quiet=True)
    assert s["solved"], s
    assert s["backend"] == ("compiled" if backend == "auto" else "torch")
    assert s["eval_return"] >= 400
    run = tmp_path / "solve"
    for name in ("config.json", "metrics.jsonl", "summary.json", "checkpoints/latest.npz"):
        assert (run / name).exists(), name
    summary = json.loads((run / "summary.json").read_text())
    for key in ("env", "seed", "steps", "wall_s", "sps", "solved", "solved_at_s", "solved_at_steps", "eval_return"):
        assert key in summary
    from fastsample.train import evaluate_run

    ev = evaluate_run(run, episodes=20)
    assert ev["mean_return"] >= 400


@pytest.mark.parametrize("backend", BACKENDS)
def test_box_actions_train(tmp_path, backend):
    s = train(make_config("Pendulum-v1", total_steps=4096, eval_episodes=3, progress=False, backend=backend,
                          run_dir=str(tmp_path / "pend")), quiet=True)
    assert s["steps"] == 4096 and np.isfinite(s["eval_return"])


@pytest.mark.parametrize("num_envs", [1, 4])
def test_sync_box_actions_with_fewer_than_8_envs_start(tmp_path, num_envs):
    """The sync runner's torch warm-up uses 8 dummy observations: its dummy actions must be 8
    too, whatever num_envs is (it used num_envs actions: a shape error for Box actions)."""
    s = train(make_config("Pendulum-v1", num_envs=num_envs, total_steps=num_envs * 64 * 2, eval_episodes=2,
                          progress=False, run_dir=str(tmp_path / "pend")), quiet=True)
    assert s["steps"] == num_envs * 64 * 2 and np.isfinite(s["eval_return"])




def test_async_trains_and_leaves_nothing(tmp_path):
    before = shm_entries()
    s = train(make_config("CartPole-v1", mode="async", num_workers=2, num_envs=64, total_steps=64 * 16 * 6,
                          stop_when_solved=False, progress=False, eval_episodes=4,
                          run_dir=str(tmp_path / "async")), quiet=True)
    assert s["steps"] == 64 * 16 * 6
    assert s["policy_lag_mean"] >= 0
    # the lag distribution: per update in metrics.jsonl, over the run in the summary
    assert sum(s["policy_lag_hist"].values()) == 6 * 2 and max(map(int, s["policy_lag_hist"])) == s["policy_lag_max"]
    assert s["policy_lag_max"] <= 16 and s["slots_dropped"] >= 0
    rows = [json.loads(line) for line in open(tmp_path / "async" / "metrics.jsonl")]
    assert len(rows) == 6 and all(r["policy_lag_min"] <= r["policy_lag"] <= r["policy_lag_max"] for r in rows)
    assert not leaked_shm(before, [os.getpid()])


def test_async_sampler_crash_is_a_clear_error(tmp_path, monkeypatch):
    from fastsample.runners.async_runner import SamplerError

    monkeypatch.setenv("FASTSAMPLE_TEST_SAMPLER_CRASH", "1")
    t0 = time.monotonic()
    with pytest.raises(SamplerError, match="sampler 0 failed: RuntimeError: injected sampler crash"):
        train(make_config("CartPole-v1", mode="async", num_workers=1, progress=False,
                          run_dir=str(tmp_path / "crash")), quiet=True)
    assert time.monotonic() - t0 < 60


def test_async_sampler_killed_is_a_clear_error():
    import signal

    from fastsample.runners.async_runner import AsyncRunner, SamplerError

    runner = AsyncRunner(make_config("CartPole-v1", mode="async", num_workers=1), torch.device("cpu"))
    try:
        runner.start()
        runner.iteration_step()
        os.kill(runner.procs[0].pid, signal.SIGKILL)
        runner.procs[0].join(10)
        with pytest.raises(SamplerError, match="died"):
            for _ in range(50):
                runner.iteration_step()
    finally:
        runner.close()
    assert not any(p.is_alive() for p in runner.procs)
