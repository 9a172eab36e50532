"""`--backend torch|compiled|auto`: the compiled learner (fastsample.learning.compiled) trains
CartPole, resumes exactly, and either backend loads the other's checkpoints."""

import json
import os

import numpy as np
import pytest

from fastsample.cli import main
from fastsample.train import load_checkpoint, train
from fastsample.train_config import ConfigError, make_config


def _metrics(run_dir):
    rows = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    for r in rows:
        r.pop("time_s")
    return rows


def _short(tmp_path, name, **over):
    values = dict(total_steps=512 * 8, stop_when_solved=False, eval_every=0, progress=False, eval_episodes=4,
                  run_dir=str(tmp_path / name))
    values.update(over)
    return make_config("CartPole-v1", **values)


def test_compiled_backend_solves_cartpole(tmp_path):
    """The CartPole preset with the compiled backend reaches the target return (500-step
    episodes, mean greedy return >= 475) within 150k steps; seed 1 solves in about 42k here."""
    s = train(make_config("CartPole-v1", seed=1, backend="compiled", total_steps=150_000, progress=False,
                          run_dir=str(tmp_path / "run")), quiet=True)
    assert s["backend"] == "compiled"
    assert s["solved"], s
    assert s["eval_return"] >= 400


def test_compiled_backend_resumes_exactly(tmp_path):
    full = train(_short(tmp_path, "full", backend="compiled"), quiet=True)
    half = train(_short(tmp_path, "half", backend="compiled", total_steps=512 * 4), quiet=True)
    resumed = train(_short(tmp_path, "half", backend="compiled"), resume=half["run_dir"], quiet=True)
    assert resumed["resumed"] and resumed["exact_env_resume"] and resumed["backend"] == "compiled"
    assert _metrics(resumed["run_dir"]) == _metrics(full["run_dir"])
    assert resumed["eval_return"] == full["eval_return"]
    a, b = load_checkpoint(full["run_dir"])["runner"], load_checkpoint(resumed["run_dir"])["runner"]
    for k in a["model"]:
        assert np.array_equal(a["model"][k], b["model"][k]), k
    assert a["adam"]["step"] == b["adam"]["step"] == 8 * 2  # 8 updates x 2 epochs x 1 minibatch
    assert np.array_equal(a["adam"]["exp_avg_sq"], b["adam"]["exp_avg_sq"])


@pytest.mark.parametrize("first,second", [("compiled", "torch"), ("torch", "compiled")])
def test_checkpoints_load_in_the_other_backend(tmp_path, first, second, capsys):
    a = train(_short(tmp_path, "run", backend=first, total_steps=512 * 4), quiet=True)
    ckpt = load_checkpoint(a["run_dir"])["runner"]
    assert ckpt["backend"] == first and ckpt["adam"]["step"] == 4 * 2
    # eval works whichever backend wrote the run
    assert main(["eval", a["run_dir"], "--episodes", "2"]) == 0
    assert "greedy return" in capsys.readouterr().out
    # and the other backend resumes it: same weights and Adam moments at the start, then trains on
    from fastsample.runners.common import resolve_device
    from fastsample.runners.sync import SyncRunner

    cfg = _short(tmp_path, "run", backend=second)
    runner = SyncRunner(cfg, resolve_device("cpu"))
    try:
        runner.load_state_dict(load_checkpoint(a["run_dir"])["runner"])
        back = runner.state_dict()
        for k, v in ckpt["model"].items():
            assert np.array_equal(back["model"][k].numpy(), v), k
        for k in ("exp_avg", "exp_avg_sq"):
            assert np.array_equal(back["adam"][k], ckpt["adam"][k]), k
        assert back["adam"]["step"] == ckpt["adam"]["step"]
        if runner.learner is not None:
            assert np.array_equal(runner.learner.params, runner.flat.detach().numpy())
    finally:
        runner.close()
    b = train(cfg, resume=a["run_dir"], quiet=True)
    assert b["backend"] == second and b["resumed"] and b["steps"] == 512 * 8
    assert load_checkpoint(b["run_dir"])["runner"]["adam"]["step"] == 8 * 2
    assert json.loads((tmp_path / "run" / "config.json").read_text())["backend"] == second


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_compiled_policy_matches_the_torch_model(env_id):
    """After a few compiled updates the torch model holds the compiled weights: its greedy
    actions and values equal the compiled policy's (within float32 tolerance for a Box mean)."""
    import torch

    from fastsample.runners.common import resolve_device
    from fastsample.runners.sync import SyncRunner

    cfg = make_config(env_id, num_envs=8, num_steps=16, num_minibatches=2, update_epochs=2, progress=False,
                      backend="compiled")
    runner = SyncRunner(cfg, resolve_device("cpu"))
    try:
        runner.start()
        for _ in range(3):
            runner.iteration_step()
        assert np.array_equal(runner.learner.params, runner.flat.detach().numpy())
        x = np.random.default_rng(0).standard_normal((64, runner.obs_dim)).astype(np.float32)
        with torch.no_grad():
            want = runner.model.greedy(torch.from_numpy(x)).numpy()
            want_v = runner.model.value(torch.from_numpy(x)).numpy()
        got = runner.policy.greedy(torch.from_numpy(x)).numpy()
        _, got_v = runner.learner.forward(x)
        if runner.box:
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        else:
            assert np.array_equal(got, want)
        np.testing.assert_allclose(got_v, want_v, rtol=1e-4, atol=1e-5)
    finally:
        runner.close()


def test_compiled_backend_is_refused_where_it_does_not_run(tmp_path):
    with pytest.raises(ConfigError, match="--backend compiled runs with --mode sync"):
        train(_short(tmp_path, "a", backend="compiled", mode="async"), quiet=True)
    with pytest.raises(ConfigError, match="--backend must be auto, torch or compiled"):
        train(_short(tmp_path, "b", backend="jax"), quiet=True)
