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
    from fastsample.runners.sync import SyncRunner

    cfg = _short(tmp_path, "run", backend=second)
    runner = SyncRunner(cfg, "cpu")
    try:
        runner.load_state_dict(load_checkpoint(a["run_dir"])["runner"])
        back = runner.state_dict()
        for k, v in ckpt["model"].items():
            assert np.array_equal(back["model"][k], v), k
        for k in ("exp_avg", "exp_avg_sq"):
            assert np.array_equal(back["adam"][k], ckpt["adam"][k]), k
        assert back["adam"]["step"] == ckpt["adam"]["step"]
        assert back["backend"] == runner.learner.backend == second
    finally:
        runner.close()
    b = train(cfg, resume=a["run_dir"], quiet=True)
    assert b["backend"] == second and b["resumed"] and b["steps"] == 512 * 8
    assert load_checkpoint(b["run_dir"])["runner"]["adam"]["step"] == 8 * 2
    assert json.loads((tmp_path / "run" / "config.json").read_text())["backend"] == second


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_compiled_policy_matches_the_torch_model(env_id):
    """After a few compiled updates, a torch learner loaded with the compiled weights acts alike:
    the same greedy actions and values (within float32 tolerance for a Box mean)."""
    from fastsample.learning.torch_backend import TorchLearner
    from fastsample.runners.sync import SyncRunner

    cfg = make_config(env_id, num_envs=8, num_steps=16, num_minibatches=2, update_epochs=2, progress=False,
                      backend="compiled")
    runner = SyncRunner(cfg, "cpu")
    try:
        runner.start()
        for _ in range(3):
            runner.iteration_step()
        torch_learner = TorchLearner(cfg, runner.obs_space, runner.act_space)
        torch_learner.load_weights(runner.learner.state_dict()["model"])
        assert np.array_equal(torch_learner.flat_params(), runner.learner.flat_params())
        x = np.random.default_rng(0).standard_normal((64, runner.obs_dim)).astype(np.float32)
        want, want_v = torch_learner.greedy(x), torch_learner.value(x)
        got, got_v = runner.greedy(x), runner.learner.value(x)
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


def test_the_compiled_path_never_imports_torch(tmp_path):
    """`fastsample train --env CartPole-v1` (--backend auto: the compiled learner on the CPU) and
    `fastsample eval` of its run directory, each a process started as the console script starts
    it, never import torch (nor scipy.linalg, which numba would import to probe for BLAS), print
    their result before the fast exit, and exit 0."""
    import subprocess
    import sys

    run_dir = tmp_path / "run"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    entry = "import sys; from fastsample.cli import main; sys.exit(main())"
    outs = []
    for args in (["train", "--env", "CartPole-v1", "--total-steps", "8192", "--no-progress", "--run-dir", str(run_dir)],
                 ["eval", str(run_dir), "--episodes", "2"]):
        r = subprocess.run([sys.executable, "-X", "importtime", "-c", entry, *args], cwd=root, capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        imported = {line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
        assert "numpy" in imported and "torch" not in imported and "scipy.linalg" not in imported, args[0]
        outs.append(r.stdout)
    assert "CartPole-v1 seed 1: 8,192 steps" in outs[0]
    assert "greedy return" in outs[1]
    assert json.loads((run_dir / "summary.json").read_text())["backend"] == "compiled"


def test_auto_picks_torch_for_image_observations_and_gpus():
    import gymnasium as gym

    from fastsample.learning.learner import resolve_backend

    cfg = make_config("CartPole-v1")
    image = gym.spaces.Box(0, 1, (10, 10, 4), np.bool_)
    flat = gym.spaces.Box(-1, 1, (4,), np.float32)
    assert resolve_backend(cfg, "cpu", flat) == "compiled"
    assert resolve_backend(cfg, "cpu", image) == "torch"
    assert resolve_backend(cfg, "cuda", flat) == "torch"
    assert resolve_backend(make_config("CartPole-v1", mode="async", num_workers=1), "cpu", flat) == "torch"
    with pytest.raises(ConfigError, match="image observations need --backend torch"):
        resolve_backend(make_config("CartPole-v1", backend="compiled"), "cpu", image)


def test_auto_device_is_the_cpu_where_the_compiled_learner_serves_even_with_a_gpu(monkeypatch):
    """--device auto on a GPU machine: MLP policies in --mode sync stay on the CPU (compiled
    learner); CNN policies, --mode async and --backend torch get the GPU. A GPU is faked: the
    machine's own answer for "auto" is replaced by cuda."""
    import gymnasium as gym

    from fastsample.learning import learner

    monkeypatch.setattr(learner, "resolve_device", lambda name: "cuda" if name == "auto" else name)
    image = gym.spaces.Box(0, 1, (10, 10, 4), np.bool_)
    flat = gym.spaces.Box(-1, 1, (4,), np.float32)
    assert learner.resolve_train_device(make_config("CartPole-v1"), flat) == "cpu"
    assert learner.resolve_train_device(make_config("CartPole-v1", backend="compiled"), flat) == "cpu"
    assert learner.resolve_train_device(make_config("CartPole-v1"), image) == "cuda"
    assert learner.resolve_train_device(make_config("CartPole-v1", backend="torch"), flat) == "cuda"
    assert learner.resolve_train_device(make_config("CartPole-v1", mode="async", num_workers=1), flat) == "cuda"
    assert learner.resolve_train_device(make_config("CartPole-v1", device="cuda"), flat) == "cuda"
    assert learner.resolve_train_device(make_config("CartPole-v1", device="cpu"), image) == "cpu"


@pytest.mark.parametrize("backend", ["torch", "compiled"])
def test_learners_share_one_interface(backend):
    """Both learners behind fastsample.learning.learner: the same calls, NumPy in and out, and
    the same backend-neutral checkpoint part (flat parameters in the torch model's layout)."""
    import gymnasium as gym

    from fastsample.learning.learner import make_learner

    cfg = make_config("CartPole-v1", num_envs=4, num_steps=8, num_minibatches=2, update_epochs=1, backend=backend)
    obs_space, act_space = gym.spaces.Box(-1, 1, (4,), np.float32), gym.spaces.Discrete(2)
    learner = make_learner(cfg, obs_space, act_space, "cpu")
    assert learner.backend == backend
    learner.warmup()
    T, N = 8, 4
    x = np.random.default_rng(0).standard_normal((T, N, 4)).astype(np.float32)
    actions, logp, values = np.zeros((T, N), np.int64), np.zeros((T, N), np.float32), np.zeros((T, N), np.float32)
    for t in range(T):
        learner.act(x[t], 0, (actions[t], logp[t], values[t]))
    assert set(np.unique(actions)) <= {0, 1} and (logp < 0).all()
    np.testing.assert_allclose(learner.value(x[0]), values[0], rtol=1e-5, atol=1e-6)
    assert learner.greedy(x[0]).shape == (N,)
    rewards, dones = np.ones((T, N), np.float32), np.zeros((T, N), np.float32)
    adv, ret = learner.gae(rewards, values, dones, learner.value(x[0]))
    assert adv.shape == ret.shape == (T, N) and adv.dtype == np.float32
    before = learner.flat_params()
    calls = []
    learner.grad_hook = lambda g: calls.append(g.shape)
    stats = learner.update({"obs": x.reshape(T * N, 4), "actions": actions.reshape(-1), "logprobs": logp.reshape(-1),
                            "values": values.reshape(-1), "advantages": adv.reshape(-1), "returns": ret.reshape(-1)})
    assert stats.epochs == 1 and calls == [before.shape] * 2
    assert not np.array_equal(learner.flat_params(), before)
    state = learner.state_dict()
    assert state["adam"]["step"] == 2 and state["adam"]["exp_avg"].shape == before.shape
    other = make_learner(cfg, obs_space, act_space, "cpu", backend="compiled" if backend == "torch" else "torch")
    other.load_state_dict(state, iteration=1)
    assert np.array_equal(other.flat_params(), learner.flat_params())
    np.testing.assert_array_equal(other.greedy(x[1]), learner.greedy(x[1]))
