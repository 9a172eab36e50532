"""The sampler process: steps its envs with a copy of the latest policy and fills trajectory slots.

Loop: take a free slot index from ``free_q``; refresh the policy if the learner published a
newer version; run ``T`` steps of its ``n`` envs, writing observations, actions, behaviour
log-probs, rewards and flags into the slot; put ``slot`` on ``full_q``. Errors are reported on
``error_q`` with the traceback, then the process exits with code 1.

A sampler never outlives the learner: SIGINT and SIGTERM are ignored (a Ctrl-C or a SIGTERM to
the process group reaches the learner too, and the learner stops the samplers), and a watchdog
thread exits the process within 0.2 s once its parent is gone (it was re-parented), however
the learner ended (SIGKILL included), whichever thread started the sampler.
"""

from __future__ import annotations

import os
import queue
import threading
import time
import traceback

import numpy as np

__all__ = ["sampler_main", "PARENT_POLL_S"]

PARENT_POLL_S = 0.2


def _exit_with_parent(parent_pid: int) -> None:
    """Exit (code 1) as soon as the process that started this one is no longer its parent."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="fastsample-parent-watch", daemon=True).start()


def sampler_main(sampler_id: int, cfg_dict: dict, n: int, slots, weights, free_q, full_q, error_q, control,
                 seed: int, parent_pid: int) -> None:
    import signal

    _exit_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the learner decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        _run(sampler_id, cfg_dict, n, slots, weights, free_q, full_q, control, seed)
    except BaseException as err:  # noqa: BLE001  (reported to the learner)
        try:
            error_q.put((sampler_id, f"{type(err).__name__}: {err}", traceback.format_exc()), timeout=1.0)
        finally:
            os._exit(1)


def _run(sampler_id, cfg_dict, n, slots, weights, free_q, full_q, control, seed) -> None:
    import gymnasium as gym
    import torch

    from fastsample.learning.ppo import make_model
    from fastsample.sampling.envs import make_train_env
    from fastsample.train_config import config_from_dict

    torch.set_num_threads(1)
    cfg = config_from_dict(cfg_dict)
    if os.environ.get("FASTSAMPLE_TEST_SAMPLER_CRASH"):
        raise RuntimeError("injected sampler crash (FASTSAMPLE_TEST_SAMPLER_CRASH)")
    env = make_train_env(cfg.env, n, seed, 0)
    obs_space, act_space = env.single_observation_space, env.single_action_space
    box = isinstance(act_space, gym.spaces.Box)
    model = make_model(cfg, obs_space, act_space)
    flat_param = model.flat_parameters()
    obs_dim = int(np.prod(obs_space.shape))
    n_params = flat_param.numel()
    local = np.zeros(weights.size, np.float32)
    version = weights.read_into(local)
    flat_param.data.copy_(torch.from_numpy(local[:n_params]))
    mean, std = _norm_stats(local, n_params, obs_dim, cfg)
    gen = torch.Generator()
    gen.manual_seed(seed)
    obs, _ = env.reset(seed=seed)
    ep_ret = np.zeros(n, np.float64)
    v = slots.views
    T = v["obs"].shape[1]
    disc_ret = np.zeros(n, np.float64)  # --norm-reward: running discounted return of each env
    delay = _test_delay(sampler_id)
    with torch.no_grad():
        model.act(torch.from_numpy(_apply(obs.reshape(n, -1), mean, std, cfg)), generator=torch.Generator())
    control.set_ready(sampler_id)
    while not control.stopped:
        try:
            slot = free_q.get(timeout=0.1)
        except queue.Empty:
            continue
        if delay:
            time.sleep(delay)
        if weights.version != version:
            version = weights.read_into(local)
            flat_param.data.copy_(torch.from_numpy(local[:n_params]))
            mean, std = _norm_stats(local, n_params, obs_dim, cfg)
        v["meta"][slot] = (version, sampler_id)
        with torch.no_grad():
            for t in range(T):
                raw = obs.reshape(n, -1)
                v["obs"][slot, t] = raw
                x = _apply(raw, mean, std, cfg)
                action, logp, _ = model.act(torch.from_numpy(x), generator=gen)
                a = action.numpy()
                v["actions"][slot, t] = a.reshape(n, -1)
                v["logprobs"][slot, t] = logp.numpy()
                if box:
                    a = np.clip(a.reshape((n, *act_space.shape)), act_space.low, act_space.high)
                obs, rew, term, trunc, info = env.step(a)
                done = term | trunc
                ep_ret += rew
                v["rewards"][slot, t] = rew
                v["dones"][slot, t] = done
                cut = trunc & ~term
                v["truncated"][slot, t] = cut
                v["ep_returns"][slot, t] = np.where(done, ep_ret, np.nan)
                if cfg.norm_reward:
                    disc_ret *= cfg.gamma
                    disc_ret += rew
                    v["disc_returns"][slot, t] = disc_ret
                    disc_ret[done] = 0.0
                tv = v["trunc_values"][slot, t]
                tv[:] = 0.0
                if done.any():
                    ep_ret[done] = 0.0
                    idx = np.flatnonzero(cut)
                    if idx.size:
                        final = np.stack([np.asarray(o) for o in info["final_obs"][idx]]).reshape(idx.size, -1)
                        tv[idx] = model.value(torch.from_numpy(_apply(final, mean, std, cfg))).numpy()
        v["last_obs"][slot] = obs.reshape(n, -1)
        full_q.put(slot)
    env.close()


def _test_delay(sampler_id: int) -> float:
    """Tests: ``FASTSAMPLE_TEST_SAMPLER_DELAY="<sampler id>:<seconds>"`` makes that sampler
    sleep before filling each slot (a slow sampler)."""
    spec = os.environ.get("FASTSAMPLE_TEST_SAMPLER_DELAY", "")
    if ":" in spec:
        sid, seconds = spec.split(":", 1)
        if int(sid) == sampler_id:
            return float(seconds)
    return 0.0


def _norm_stats(local: np.ndarray, n_params: int, obs_dim: int, cfg):
    if not cfg.norm_obs:
        return None, None
    mean = local[n_params:n_params + obs_dim].astype(np.float64)
    var = local[n_params + obs_dim:n_params + 2 * obs_dim].astype(np.float64)
    return mean, np.sqrt(var + 1e-8)


def _apply(raw: np.ndarray, mean, std, cfg) -> np.ndarray:
    if mean is None:
        return raw.astype(np.float32, copy=False)
    return np.clip((raw - mean) / std, -cfg.clip_obs, cfg.clip_obs).astype(np.float32)
