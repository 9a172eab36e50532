"""Training benchmarks: R8 (PPO throughput, sync vs async), SB3 PPO SPS, and time to solve.

Everything here goes through the trainer's public pieces: ``fastsample.train_config.make_config``,
``fastsample.runners.sync.SyncRunner`` / ``fastsample.runners.async_runner.AsyncRunner``
(``start()``, ``iteration_step() -> {"steps", "sample_s", "learn_s", ...}``, ``close()``) and
``fastsample.train.train(cfg) -> summary`` (``solved_at_s``, ``solved_at_steps``, ``sps``...).
When they cannot be imported every row says "pending (trainer not merged)".

Timing: throughput rows time whole PPO iterations (rollout + update) after warm-up iterations
(torch's first backward passes, the async pipeline filling up); each timed window of
iterations is one repeat. Start-up (imports, Numba, spawning processes) is excluded.
Time to solve counts from the first env step, evaluations included (the trainer's
``solved_at_s``; the same clock and the same evaluation for SB3).
"""

from __future__ import annotations

import math
import tempfile
import time
from typing import Any

import numpy as np

from bench.common import Measurement, missing

PENDING = "pending (trainer not merged)"
SB3_MISSING = "not installed (pip install stable-baselines3; part of the [bench] extra)"

# rl-baselines3-zoo's hyperparameters for PPO on CartPole-v1 (hyperparams/ppo.yml)
RL_ZOO = dict(n_envs=8, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0,
              learning_rate=1e-3, clip_range=0.2, n_timesteps=100_000)
RL_ZOO_TEXT = ("rl-zoo hyperparameters: n_envs 8, n_steps 32, batch 256, gae_lambda 0.8, gamma 0.98, "
               "n_epochs 20, ent_coef 0, lr linear 1e-3, clip linear 0.2, 64x64 tanh MLP")
# the solve criterion, as the trainer's CartPole preset evaluates
EVAL = dict(eval_every=2, eval_min_train_return=150.0, eval_episodes=20, target=475.0)


def trainer_missing() -> str | None:
    """None when the trainer can be used, else the reason (shown as the row's status)."""
    try:
        import fastsample.runners.async_runner  # noqa: F401
        import fastsample.runners.sync  # noqa: F401
        import fastsample.train  # noqa: F401
        from fastsample.train_config import make_config  # noqa: F401
    except ImportError as err:
        return f"{PENDING}: {err}"
    return None


def sb3_missing() -> str | None:
    try:
        import stable_baselines3  # noqa: F401
    except ImportError:
        return SB3_MISSING
    return None


# -- process isolation ------------------------------------------------------------------------------

_MARK = "BENCH-RESULT "


def isolated(func: str, ctx, **kwargs: Any) -> Any:
    """``bench.training.<func>(ctx, **kwargs)`` in a fresh Python process.

    fastsample's trainer changes process-wide settings (``train()`` tunes glibc malloc with
    ``tune_malloc()``, and sets torch's thread count); a child process gets them exactly as
    ``fastsample train`` does, without changing the conditions of the rows measured after it in
    this process. Its start-up (imports) is not timed."""
    import dataclasses
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parent.parent)
    payload = json.dumps({"func": func, "settings": dataclasses.asdict(ctx.settings), "kwargs": kwargs})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    code = "import sys; from bench.training import _child; _child(sys.argv[1])"
    proc = subprocess.run([sys.executable, "-c", code, payload], cwd=root, env=env, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(_MARK)]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"{func} failed in its child process (exit code {proc.returncode}): {tail}")
    result = json.loads(lines[-1][len(_MARK):])
    if result["kind"] == "measurement":
        return Measurement(**result["value"])
    return result["value"]


def _child(payload: str) -> None:
    import dataclasses
    import json

    from bench.common import Ctx, Settings

    d = json.loads(payload)
    try:  # as fastsample.train.train() does before it trains
        from fastsample.runners.common import tune_malloc
    except ImportError:
        pass
    else:
        tune_malloc()
    value = globals()[d["func"]](Ctx(Settings(**d["settings"])), **d["kwargs"])
    if isinstance(value, Measurement):
        out = {"kind": "measurement", "value": dataclasses.asdict(value)}
    else:
        out = {"kind": "value", "value": value}
    print(_MARK + json.dumps(out), flush=True)


# -- R8: PPO throughput -------------------------------------------------------------------------

def r8_config(settings, mode: str, backend: str = "auto"):
    from fastsample.train_config import make_config

    return make_config("CartPole-v1", mode=mode, num_envs=settings.num_envs, num_steps=settings.train_num_steps,
                       hidden_sizes="64,64", num_workers=settings.workers, total_steps=10**12, progress=False,
                       eval_every=0, torch_threads=settings.torch_threads, seed=1, backend=backend)


def r8_note(settings, mode: str) -> str:
    cfg = r8_config(settings, mode)
    layout = (f"{cfg.num_workers} env workers, learner in the main process (backend auto: the compiled "
              f"Numba learner and rollout policy; the torch row: --backend torch)" if mode == "sync" else
              f"{cfg.num_workers} sampler processes (envs + policy copy each), learner in the main process "
              f"(backend auto: torch)")
    return (f"trainer's CartPole preset PPO ({cfg.update_epochs} epochs, {cfg.num_minibatches} minibatch, lr "
            f"{cfg.learning_rate:g}) with num_envs {cfg.num_envs} x num_steps {cfg.num_steps} and the 64x64 "
            f"networks of R6/R7; {layout}; run in a fresh process set up as `fastsample train` sets it up "
            f"(torch {cfg.torch_threads} thread(s), the trainer's malloc tuning)")


def runner_throughput(name: str, cfg, *, warmup: int, iterations: int, window: int = 1,
                      instrument_env: bool = False, note: str = "") -> Measurement:
    """steps/s of whole PPO iterations of the trainer's runner (``window`` iterations per repeat)."""
    from fastsample.runners.common import resolve_backend

    device = "cpu"
    if resolve_backend(cfg, device) == "torch":  # the compiled learner imports no torch
        import torch

        torch.set_num_threads(cfg.torch_threads or torch.get_num_threads())
    if cfg.mode == "sync":
        from fastsample.runners.sync import SyncRunner as Runner
    else:
        from fastsample.runners.async_runner import AsyncRunner as Runner
    runner = Runner(cfg, device)
    env_s = [0.0]
    try:
        runner.start()
        if instrument_env:  # time env.step inside the runner's rollout (bench-only wrapper)
            inner = runner.env.step

            def timed_step(actions):
                t0 = time.perf_counter()
                try:
                    return inner(actions)
                finally:
                    env_s[0] += time.perf_counter() - t0

            runner.env.step = timed_step
        m = Measurement(name, note=note)
        sample = learn = timed = 0.0
        for _ in range(warmup):
            runner.iteration_step()
        env_s[0] = 0.0
        for _ in range(iterations):
            steps = 0
            t0 = time.perf_counter()
            for _ in range(window):
                out = runner.iteration_step()
                steps += out["steps"]
                sample += out["sample_s"]
                learn += out["learn_s"]
            dt = time.perf_counter() - t0
            timed += dt
            m.rates.append(steps / dt)
    finally:
        runner.close()
    m.timed_s = timed
    if cfg.mode == "sync":
        if instrument_env:
            m.breakdown = {"env": env_s[0], "inference": max(0.0, sample - env_s[0]), "learning": learn}
        else:
            m.breakdown = {"env+inference": sample, "learning": learn}
    else:  # the learner's view: waiting for sampler slots, then learning
        m.breakdown = {"waiting": sample, "learning": learn}
        lag = getattr(runner, "lag_mean", None)
        if lag is not None:
            m.extra["policy_lag"] = float(lag)
    return m


def _r8_name(mode: str, backend: str) -> str:
    return ("R8 PPO sync" if mode == "sync" else "R8b PPO async") + (", torch learner" if backend == "torch" else "")


def r8(ctx, mode: str, backend: str = "auto") -> Measurement:
    name = _r8_name(mode, backend)
    reason = trainer_missing()
    if reason:
        return missing(name, reason)
    return isolated("_r8", ctx, mode=mode, backend=backend)


def _r8(ctx, mode: str, backend: str = "auto") -> Measurement:
    s = ctx.settings
    name = _r8_name(mode, backend)
    cfg = r8_config(s, mode, backend)
    return runner_throughput(name, cfg, warmup=1 if mode == "sync" else 2, iterations=s.train_iters,
                             instrument_env=(mode == "sync"), note=r8_note(s, mode))


# -- PPO throughput at a large batch (the trainer's acceptance configuration) --------------------

def ppo_large_batch(ctx) -> dict[str, Any]:
    """``fastsample.runners.benchmark_training``: CleanRL's network (64x64 tanh, separate actor
    and critic), 4 epochs, 4 minibatches, 4096 envs x 16 steps, in-process envs, torch on every
    core; each backend in a fresh process, repeated ``settings.repeats`` times (each a few
    iterations). ``{"runs": backend auto's (compiled) runs, "backends": {backend: runs}}``."""
    reason = trainer_missing()
    if reason:
        return {"status": reason}
    backends = {b: isolated("_ppo_large_batch", ctx, backend=b)["runs"] for b in ("compiled", "torch")}
    return {"runs": backends["compiled"], "backends": backends}


def _ppo_large_batch(ctx, backend: str = "auto") -> dict[str, Any]:
    from fastsample.runners import benchmark_training

    if backend == "torch":  # about 10x slower per run
        repeats = 1 if ctx.settings.quick else 3
    else:
        repeats = max(3, ctx.settings.repeats)
    runs = [benchmark_training("CartPole-v1", iterations=3 if ctx.settings.quick else 6, backend=backend)
            for _ in range(repeats)]
    return {"runs": runs}


# -- PPO SPS with rl-zoo hyperparameters: SB3 and fastsample ---------------------------------------

def rl_zoo_config(seed: int = 1, **overrides: Any):
    """fastsample's TrainConfig with rl-zoo's CartPole hyperparameters (SB3 anneals the clip
    range too; the trainer keeps it constant) and the preset's evaluation schedule."""
    from fastsample.train_config import make_config

    z = RL_ZOO
    values = dict(num_envs=z["n_envs"], num_steps=z["n_steps"],
                  num_minibatches=z["n_envs"] * z["n_steps"] // z["batch_size"],
                  update_epochs=z["n_epochs"], gamma=z["gamma"], gae_lambda=z["gae_lambda"], ent_coef=z["ent_coef"],
                  learning_rate=z["learning_rate"], anneal_lr=True, clip_coef=z["clip_range"], clip_vloss=False,
                  vf_coef=0.5, max_grad_norm=0.5, hidden_sizes="64,64", activation="tanh", norm_adv=True,
                  total_steps=z["n_timesteps"], seed=seed, progress=False, num_workers=0, mode="sync",
                  eval_every=EVAL["eval_every"], eval_min_train_return=EVAL["eval_min_train_return"],
                  eval_episodes=EVAL["eval_episodes"], max_step_reward=1.0, torch_threads=1)
    values.update(overrides)
    return make_config("CartPole-v1", **values)


def fastsample_rl_zoo_sps(ctx, backend: str = "auto") -> Measurement:
    reason = trainer_missing()
    if reason:
        return missing("fastsample PPO sync, rl-zoo hyperparameters", reason)
    return isolated("_fastsample_rl_zoo_sps", ctx, backend=backend)


def _fastsample_rl_zoo_sps(ctx, backend: str = "auto") -> Measurement:
    name = "fastsample PPO sync, rl-zoo hyperparameters" + (", torch learner" if backend == "torch" else "")
    s = ctx.settings
    cfg = rl_zoo_config(total_steps=10**12, eval_every=0, torch_threads=s.torch_threads, backend=backend)
    return runner_throughput(name, cfg, warmup=2, iterations=max(5, s.sb3_sps_iters // 4), window=4,
                             note=RL_ZOO_TEXT + "; in-process envs")


def _sb3_ppo(env, seed: int, verbose: int = 0):
    from stable_baselines3 import PPO

    z = RL_ZOO

    def linear(v: float):
        return lambda progress_remaining: progress_remaining * v

    return PPO("MlpPolicy", env, n_steps=z["n_steps"], batch_size=z["batch_size"], gae_lambda=z["gae_lambda"],
               gamma=z["gamma"], n_epochs=z["n_epochs"], ent_coef=z["ent_coef"],
               learning_rate=linear(z["learning_rate"]), clip_range=linear(z["clip_range"]), seed=seed,
               verbose=verbose, device="cpu")


def sb3_ppo_sps(ctx) -> Measurement:
    name = "SB3 PPO, rl-zoo hyperparameters"
    reason = sb3_missing()
    if reason:
        return missing(name, reason)
    import torch
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    s = ctx.settings
    torch.set_num_threads(s.torch_threads)
    window, warmup = 4, 2
    iters = max(5, s.sb3_sps_iters // window)
    marks: list[tuple[str, int, float]] = []

    class Clock(BaseCallback):
        def _on_step(self) -> bool:
            return True

        def _on_rollout_start(self) -> None:
            marks.append(("start", self.num_timesteps, time.perf_counter()))

        def _on_rollout_end(self) -> None:
            marks.append(("end", self.num_timesteps, time.perf_counter()))

    env = make_vec_env("CartPole-v1", n_envs=RL_ZOO["n_envs"], seed=0)
    model = _sb3_ppo(env, seed=0)
    per_iter = RL_ZOO["n_envs"] * RL_ZOO["n_steps"]
    total = per_iter * (warmup + iters * window + 1)
    model.learn(total, callback=Clock())
    env.close()
    starts = [(n, t) for kind, n, t in marks if kind == "start"]
    ends = [(n, t) for kind, n, t in marks if kind == "end"]
    m = Measurement(name, note=RL_ZOO_TEXT + "; DummyVecEnv of gymnasium CartPole-v1 with Monitor (as rl-zoo)")
    collect = learn = timed = 0.0
    # iteration i = rollout i (start_i..end_i) + update i (end_i..start_{i+1})
    for w in range(iters):
        a = warmup + w * window
        b = a + window
        dt = starts[b][1] - starts[a][1]
        m.rates.append((starts[b][0] - starts[a][0]) / dt)
        timed += dt
        for i in range(a, b):
            collect += ends[i][1] - starts[i][1]
            learn += starts[i + 1][1] - ends[i][1]
    m.timed_s = timed
    m.breakdown = {"env+inference": collect, "learning": learn}
    return m


# -- time to solve CartPole-v1 ------------------------------------------------------------------

def fastsample_solve(ctx, seed: int, preset: bool = True, max_seconds: float | None = None,
                     backend: str = "auto") -> dict[str, Any]:
    """One training run until solved (the trainer's clock: from the first env step);
    ``max_seconds`` caps it (the trainer's ``time_limit``). Runs in a fresh process. The preset
    runs are the command itself, ``fastsample train --env CartPole-v1 --seed S --backend B``
    started as the console script starts it, so ``command_s`` is its whole wall time (imports,
    start-up, training, final evaluation, checkpoint, exit)."""
    if preset and not max_seconds:
        from bench.learner_compare import train_command

        extra = ("--eval-episodes", str(EVAL["eval_episodes"]), "--torch-threads", str(ctx.settings.torch_threads))
        return train_command(seed, backend, extra=extra)
    return isolated("_fastsample_solve", ctx, seed=seed, preset=preset, max_seconds=max_seconds, backend=backend)


def _fastsample_solve(ctx, seed: int, preset: bool = True, max_seconds: float | None = None,
                      backend: str = "auto") -> dict[str, Any]:
    from fastsample.train import train
    from fastsample.train_config import make_config

    s = ctx.settings
    with tempfile.TemporaryDirectory() as run_dir:
        if preset:
            cfg = make_config("CartPole-v1", seed=seed, progress=False, run_dir=run_dir, torch_threads=s.torch_threads,
                              eval_episodes=EVAL["eval_episodes"], checkpoint_interval=1e9, backend=backend)
        else:
            cfg = rl_zoo_config(seed=seed, run_dir=run_dir, torch_threads=s.torch_threads, checkpoint_interval=1e9,
                                backend=backend)
        if max_seconds:
            cfg.time_limit = float(max_seconds)
        summary = train(cfg, quiet=True)
    return {"solved": bool(summary["solved"]), "solved_at_s": summary.get("solved_at_s"),
            "solved_at_steps": summary.get("solved_at_steps"), "steps": summary["steps"], "wall_s": summary["wall_s"],
            "startup_s": summary.get("startup_s"), "sps": summary.get("sps"), "backend": summary.get("backend"),
            "timeout": bool(max_seconds) and not summary["solved"] and summary["wall_s"] >= max_seconds}


def sb3_solve(ctx, seed: int, max_seconds: float | None = None) -> dict[str, Any]:
    """SB3 PPO with rl-zoo hyperparameters (1e5 steps at most), evaluated like the trainer:
    every 2nd update once the mean of the last 100 training episodes reaches 150, 20 greedy
    episodes in parallel on a fresh-seeded batched CartPole (fastsample's kernel, bit-identical
    to gymnasium's), solved at a mean return >= 475."""
    import torch
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    import fastsample

    s = ctx.settings
    torch.set_num_threads(s.torch_threads)
    n_eval = EVAL["eval_episodes"]
    eval_env = fastsample.make_vec("CartPole-v1", n_eval, autoreset_mode="NextStep", copy=False)
    eval_seed = seed * 1_000_003 + 500_000_000 % (2**31)
    state = {"t0": None, "iteration": 0, "evals": 0, "solved_at_s": None, "solved_at_steps": None, "timeout": False}

    def evaluate(model) -> float:
        obs, _ = eval_env.reset(seed=eval_seed + state["evals"] * n_eval)
        state["evals"] += 1
        returns = np.zeros(n_eval)
        done = np.zeros(n_eval, bool)
        t = 0
        while not done.all():
            actions, _ = model.predict(obs, deterministic=True)
            obs, rew, term, trunc, _ = eval_env.step(actions)
            returns += np.where(done, 0.0, rew)
            done |= term | trunc
            t += 1
            if t % 8 == 0 and returns.sum() + (~done).sum() * max(500 - t, 0) < EVAL["target"] * n_eval:
                break
        return float(returns.mean())

    class Solve(BaseCallback):
        def _on_training_start(self) -> None:
            state["t0"] = time.perf_counter()

        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            pass

        def _on_rollout_start(self) -> None:
            # called before each rollout after the first: the previous update has finished
            if state["t0"] is None or self.num_timesteps == 0:
                return
            state["iteration"] += 1
            buf = self.model.ep_info_buffer
            mean_ret = np.mean([e["r"] for e in buf]) if buf else -math.inf
            if state["iteration"] % EVAL["eval_every"] == 0 and mean_ret >= EVAL["eval_min_train_return"]:
                if evaluate(self.model) >= EVAL["target"] and state["solved_at_s"] is None:
                    state["solved_at_s"] = time.perf_counter() - state["t0"]
                    state["solved_at_steps"] = self.num_timesteps
            if max_seconds and time.perf_counter() - state["t0"] > max_seconds:
                state["timeout"] = True

    class Stop(BaseCallback):
        def _on_step(self) -> bool:
            return state["solved_at_s"] is None and not state["timeout"]

    from stable_baselines3.common.callbacks import CallbackList

    t_start = time.perf_counter()
    env = make_vec_env("CartPole-v1", n_envs=RL_ZOO["n_envs"], seed=seed)
    model = _sb3_ppo(env, seed=seed)
    startup = time.perf_counter() - t_start
    model.learn(RL_ZOO["n_timesteps"], callback=CallbackList([Solve(), Stop()]))
    wall = time.perf_counter() - state["t0"]
    env.close()
    eval_env.close()
    steps = int(model.num_timesteps)
    return {"solved": state["solved_at_s"] is not None, "solved_at_s": state["solved_at_s"],
            "solved_at_steps": state["solved_at_steps"], "steps": steps, "wall_s": wall, "startup_s": startup,
            "sps": steps / wall if wall > 0 else None, "timeout": state["timeout"]}
