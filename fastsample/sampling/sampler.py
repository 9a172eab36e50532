"""The sampler process: steps its envs with a copy of the latest policy and fills trajectory slots.

Loop: take a free slot index from ``free_q``; refresh the policy if the learner published a
newer version; run ``T`` steps of its ``n`` envs, writing observations, actions, behaviour
log-probs, rewards and flags into the slot; put ``slot`` on ``full_q``. Errors are reported on
``error_q`` with the traceback, then the process exits with code 1.
"""

from __future__ import annotations

import os
import queue
import traceback

import numpy as np

__all__ = ["sampler_main"]


def sampler_main(sampler_id: int, cfg_dict: dict, n: int, slots, weights, free_q, full_q, error_q, stop_event,
                 seed: int, ready=None) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the learner decides when to stop
    try:
        _run(sampler_id, cfg_dict, n, slots, weights, free_q, full_q, stop_event, seed, ready)
    except BaseException as err:  # noqa: BLE001  (reported to the learner)
        try:
            error_q.put((sampler_id, f"{type(err).__name__}: {err}", traceback.format_exc()))
            error_q.close()
            error_q.join_thread()  # flush the message before exiting
        finally:
            os._exit(1)


def _run(sampler_id, cfg_dict, n, slots, weights, free_q, full_q, stop_event, seed, ready) -> None:
    import gymnasium as gym
    import torch

    from fastsample.runners.common import make_model, make_train_env
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
    with torch.no_grad():
        model.act(torch.from_numpy(_apply(obs.reshape(n, -1), mean, std, cfg)), generator=torch.Generator())
    if ready is not None:
        ready.release()
    while not stop_event.is_set():
        try:
            slot = free_q.get(timeout=0.1)
        except queue.Empty:
            continue
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
