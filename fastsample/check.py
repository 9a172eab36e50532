"""Check that the Numba kernels give gymnasium's bits on this machine, whatever CPU target
numba compiles them for.

Numba compiles for the CPU it runs on, and the same source can be compiled right for one CPU
and wrong for another (see the comment above ``split_pending`` in ``envs_numba/core.py``).
This module is the check a user runs on their own machine and the one the test suite runs
under several codegen targets:

    python -m fastsample.check                 # this machine, numba's default target
    python -m fastsample.check --all-targets   # every target in codegen_targets(), each in
                                               # a fresh process with its own NUMBA_CACHE_DIR

A check is three parts:

1. ``self_check``: the shared bookkeeping kernels on known inputs (``envs_numba.core``).
2. Side by side with gymnasium: every registered kernel with a gymnasium counterpart, in every
   autoreset mode, at ``num_envs`` in {1, 31, 32, 33, 64, 257} (around the vector widths),
   with terminations, truncations, seeded, unseeded and partial resets, compared bit for bit.
3. No masked memory operation in any compiled kernel's optimised IR: stores under a condition
   are what LLVM miscompiled, so the kernels are written without them and this keeps it so.

gymnasium's side of part 2 is the same whatever numba compiles for, so ``--all-targets`` runs it
once (``record_reference``, in a process of its own) and each target's process plays that
recording back against its kernels (``Replay``: every call's seed, options and actions must be
the recorded ones).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import pickle
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import gymnasium as gym
import numpy as np

SIZES = (1, 31, 32, 33, 64, 257)
MODES = ("NextStep", "SameStep", "Disabled")


# --- side-by-side comparison (the test suite's align tests use the same code) --------------


def assert_same(a, b, what: str) -> None:
    """Equal dtype, shape and bits, or an ``AssertionError`` naming the first differences."""
    a = np.asarray(a)
    b = np.asarray(b)
    assert a.dtype == b.dtype, f"{what}: dtype {a.dtype} (gymnasium) != {b.dtype} (fastsample)"
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    if not np.array_equal(a, b):
        bad = np.argwhere(a != b)[:5]
        raise AssertionError(f"{what}: differ at {bad.tolist()}: gymnasium {a[tuple(bad[0])]!r} fastsample {b[tuple(bad[0])]!r}")


def env_states(env) -> np.ndarray | None:
    """``(num_envs, k)`` float64: each env's physical state, to compare beside the observations
    (an observation cast to float32 hides a 1-ulp error in a float64 state until it grows).
    A gymnasium ``SyncVectorEnv``: each env's ``unwrapped.state``; a fastsample in-process vector
    env: its kernel's state rows, whose first ``k`` are gymnasium's ``state`` in its order for the
    classic-control kernels; a recording (:class:`Replay`): the states recorded after the call
    it last played. ``None`` where there is none (other envs, worker processes)."""
    from fastsample.vector_env import NumbaVectorEnv

    if isinstance(env, (Replay, _Recorder)):
        return env.states
    if isinstance(env, gym.vector.SyncVectorEnv):
        states = [getattr(e.unwrapped, "state", None) for e in env.envs]
        if any(x is None or np.ndim(x) != 1 for x in states):
            return None
        return np.array([np.asarray(x, dtype=np.float64) for x in states])
    if type(env) is NumbaVectorEnv and env.kernel.id in STATE_KERNELS:
        return env._state[:, :env.num_envs].T.copy()
    return None


# kernels whose first state rows are gymnasium's ``state`` (the others hold other things)
STATE_KERNELS = ("CartPole-v1", "Acrobot-v1", "MountainCar-v0", "MountainCarContinuous-v0", "Pendulum-v1")


def assert_same_states(ref, ours, what: str) -> None:
    """Both sides' :func:`env_states` equal bit for bit (gymnasium's ``k`` values against our
    first ``k`` rows), where both have them."""
    want, got = env_states(ref), env_states(ours)
    if want is None or got is None:
        return
    assert_same(want, got[:, :want.shape[1]], f"{what} state")


def compare_runs(ref, ours, mode: str, steps: int, seed: int = 0, *, action_seed: int = 1,
                 reset_options: dict | None = None, sample_actions=None) -> dict:
    """Step ``ref`` (the truth) and ``ours`` with the same seeds and actions; assert equal bits.

    Along the way: a ``reset(seed=int)`` at the start, ``reset()`` (seed=None, streams
    continue) at 1/3, ``reset(seed=[list])`` at 2/3, and random ``reset_mask`` partial
    resets (NEXT_STEP and DISABLED; DISABLED also resets every finished env that way).
    Returns counts (episodes finished, terminated, truncated, partial resets).
    """
    num_envs = ref.num_envs
    space = ref.action_space
    space.seed(action_seed)
    mask_rng = np.random.default_rng(seed + 99)
    sample = sample_actions or (lambda: space.sample())

    o_ref, i_ref = ref.reset(seed=seed, options=reset_options)
    o_fs, i_fs = ours.reset(seed=seed, options=reset_options)
    assert_same(o_ref, o_fs, "reset obs")
    assert_same_states(ref, ours, "reset")
    assert i_ref == i_fs
    finished = terminated = truncated = partial = 0
    for t in range(steps):
        if t == steps // 3:
            o_ref, _ = ref.reset(options=reset_options)
            o_fs, _ = ours.reset(options=reset_options)
            assert_same(o_ref, o_fs, f"step {t}: reset(seed=None) obs")
            assert_same_states(ref, ours, f"step {t}: reset(seed=None)")
        elif t == 2 * steps // 3:
            seeds = [int(s) for s in mask_rng.integers(0, 2**31, num_envs)]
            o_ref, _ = ref.reset(seed=seeds, options=reset_options)
            o_fs, _ = ours.reset(seed=seeds, options=reset_options)
            assert_same(o_ref, o_fs, f"step {t}: reset(seed=list) obs")
            assert_same_states(ref, ours, f"step {t}: reset(seed=list)")
        elif mode != "SameStep" and t % 97 == 50:
            mask = mask_rng.random(num_envs) < 0.3
            if mask.any():
                partial += 1
                o_ref, _ = ref.reset(options={**(reset_options or {}), "reset_mask": mask.copy()})
                o_fs, _ = ours.reset(options={**(reset_options or {}), "reset_mask": mask.copy()})
                assert_same(o_ref, o_fs, f"step {t}: reset_mask obs")
                assert_same_states(ref, ours, f"step {t}: reset_mask")
        actions = sample()
        r_ref = ref.step(actions)
        r_fs = ours.step(actions)
        for name, a, b in zip(("obs", "rewards", "terminations", "truncations"), r_ref[:4], r_fs[:4]):
            assert_same(a, b, f"step {t}: {name}")
        assert_same_states(ref, ours, f"step {t}:")
        info_ref, info_fs = r_ref[4], r_fs[4]
        assert info_ref.keys() == info_fs.keys(), f"step {t}: info keys {info_ref.keys()} != {info_fs.keys()}"
        if "final_obs" in info_ref:
            assert_same(info_ref["_final_obs"], info_fs["_final_obs"], f"step {t}: _final_obs")
            assert_same(info_ref["_final_info"], info_fs["_final_info"], f"step {t}: _final_info")
            assert info_ref["final_info"] == info_fs["final_info"]
            for i in np.flatnonzero(info_ref["_final_obs"]):
                assert_same(info_ref["final_obs"][i], info_fs["final_obs"][i], f"step {t}: final_obs[{i}]")
            assert all(info_fs["final_obs"][i] is None for i in np.flatnonzero(~info_fs["_final_obs"]))
        done = r_ref[2] | r_ref[3]
        finished += int(done.sum())
        terminated += int(r_ref[2].sum())
        truncated += int(r_ref[3].sum())
        if mode == "Disabled" and done.any():
            o_ref, _ = ref.reset(options={**(reset_options or {}), "reset_mask": done.copy()})
            o_fs, _ = ours.reset(options={**(reset_options or {}), "reset_mask": done.copy()})
            assert_same(o_ref, o_fs, f"step {t}: reset of finished envs")
            assert_same_states(ref, ours, f"step {t}: reset of finished envs")
    return {"finished": finished, "terminated": terminated, "truncated": truncated, "partial_resets": partial}


class _CellAsArray(gym.vector.VectorWrapper):
    """FrozenLake's ``Discrete`` cell as GridWorld-v0's one-element int64 observation, and
    without its ``prob`` info (the transition probability, always 1 without slips)."""

    def __init__(self, env):
        super().__init__(env)
        self.single_observation_space = gym.spaces.Box(0, 15, (1,), np.int64)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, env.num_envs)

    @staticmethod
    def _info(info: dict) -> dict:
        info = {k: v for k, v in info.items() if k not in ("prob", "_prob")}
        if "final_obs" in info:
            final_obs = np.empty(len(info["final_obs"]), dtype=object)
            for i, o in enumerate(info["final_obs"]):
                final_obs[i] = None if o is None else np.array([o], dtype=np.int64)
            info["final_obs"] = final_obs
            info["final_info"] = _CellAsArray._info(info["final_info"])
        return info

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return obs.astype(np.int64)[:, None], self._info(info)

    def step(self, actions):
        obs, rewards, terminations, truncations, info = self.env.step(actions)
        return obs.astype(np.int64)[:, None], rewards, terminations, truncations, self._info(info)


class SingleEnvStack(gym.vector.VectorEnv):
    """``num_envs`` separate one-env fastsample vector envs of ``env_id``, env ``i`` seeded
    ``seed + i``, behaving as one vector env: the reference for kernels without a gymnasium
    counterpart (the MinAtar games). The codegen matrix records it in the recording process
    (the session's own CPU target, where ``tests/test_minatar_*_align.py`` check the games
    against the ``minatar`` package) and every target's batch must equal that recording: a
    miscompile that changed a game alike at every batch size would pass a comparison with the
    target's own one-env runs."""

    def __init__(self, env_id: str, num_envs: int, mode: str, max_episode_steps: int | None = None, **env_kwargs):
        import fastsample

        self.envs = [fastsample.make_vec(env_id, 1, autoreset_mode=mode, max_episode_steps=max_episode_steps,
                                         **env_kwargs) for _ in range(num_envs)]
        first = self.envs[0]
        self.num_envs = num_envs
        self.metadata = dict(first.metadata)
        self.single_observation_space = first.single_observation_space
        self.single_action_space = first.single_action_space
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self._obs = np.zeros((num_envs, *self.single_observation_space.shape), self.single_observation_space.dtype)

    def reset(self, *, seed=None, options=None):
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if seed is None or isinstance(seed, (int, np.integer)):
            seeds = [None if seed is None else int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
        for i, env in enumerate(self.envs):
            if mask is None or mask[i]:
                self._obs[i] = env.reset(seed=seeds[i], options=options or None)[0][0]
        return self._obs.copy(), {}

    def step(self, actions):
        n = self.num_envs
        rewards = np.zeros(n)
        terminations = np.zeros(n, np.bool_)
        truncations = np.zeros(n, np.bool_)
        final_obs = np.full(n, None, dtype=object)
        has_final = np.zeros(n, np.bool_)
        any_final = False
        for i, env in enumerate(self.envs):
            obs, r, term, trunc, info = env.step(actions[i:i + 1])
            self._obs[i], rewards[i], terminations[i], truncations[i] = obs[0], r[0], term[0], trunc[0]
            if "final_obs" in info:
                any_final = True
                if info["_final_obs"][0]:
                    has_final[i] = True
                    final_obs[i] = info["final_obs"][0]
        infos = {}
        if any_final:
            infos = {"final_obs": final_obs, "_final_obs": has_final, "final_info": {}, "_final_info": has_final.copy()}
        return self._obs.copy(), rewards, terminations, truncations, infos

    def close_extras(self, **kwargs):
        for env in self.envs:
            env.close()


def _single_env_stack(env_id: str, **env_kwargs):
    def make(num_envs: int, mode: str, max_episode_steps: int):
        return SingleEnvStack(env_id, num_envs, mode, max_episode_steps, **env_kwargs)
    return make


def _minatar_case(env_id: str, **kwargs) -> "Case":
    return Case(env_id, make_ref=_single_env_stack(env_id), **_MINATAR_RUN, **kwargs)


@dataclass(frozen=True)
class Case:
    """One kernel's side-by-side check: which gymnasium env is the truth, and the reset
    options and time limit that make terminations and truncations happen within ``steps``."""

    env_id: str
    reset_options: dict | None = None
    max_episode_steps: int = 20
    steps: int = 120
    make_ref: Callable[[int, str, int], Any] | None = None
    env_kwargs: dict = field(default_factory=dict)
    sizes: tuple[int, ...] | None = None
    """``num_envs`` values to run (default: all of ``check_here``'s sizes)."""


def _frozen_lake(num_envs: int, mode: str, max_episode_steps: int):
    ref = gym.make_vec("FrozenLake-v1", num_envs, vectorization_mode="sync",
                       vector_kwargs={"autoreset_mode": mode}, is_slippery=False,
                       max_episode_steps=max_episode_steps)
    return _CellAsArray(ref)


_MINATAR_RUN = {"steps": 60, "sizes": (1, 33)}

CASES = (
    Case("CartPole-v1"),
    # starting with both links near horizontal, random torques swing the tip above the line
    Case("Acrobot-v1", reset_options={"low": 1.2, "high": 1.6}),
    # starting just left of the flag, random pushes reach it often
    Case("MountainCar-v0", reset_options={"low": 0.47, "high": 0.5}),
    Case("MountainCarContinuous-v0", reset_options={"low": 0.44, "high": 0.5}),
    Case("Pendulum-v1"),  # never terminates: truncations only
    # GridWorld-v0 without slips is FrozenLake-v1's 4x4 map without slips
    Case("GridWorld-v0", make_ref=_frozen_lake),
    # MinAtar: a batch against the same game as one-env envs seeded seed + i (the games
    # themselves are checked against the minatar package by tests/test_minatar_*_align.py).
    # Their loops draw random numbers (sticky actions) and are not vectorised; the IR check
    # covers them at any size, so they run shorter, at 1 and 33 envs (compiling five games is
    # most of what they add to a check).
    _minatar_case("MinAtar-Breakout-v1", max_episode_steps=12),
    # Freeway ends only after 2501 steps: truncations only
    _minatar_case("MinAtar-Freeway-v1"),
    _minatar_case("MinAtar-SpaceInvaders-v1", max_episode_steps=18),
    _minatar_case("MinAtar-Asterix-v1", max_episode_steps=18),
    _minatar_case("MinAtar-Seaquest-v1", max_episode_steps=18),
)


def _make_ref(case: Case, num_envs: int, mode: str):
    if case.make_ref is not None:
        return case.make_ref(num_envs, mode, case.max_episode_steps)
    return gym.make_vec(case.env_id, num_envs, vectorization_mode="sync", vector_kwargs={"autoreset_mode": mode},
                        max_episode_steps=case.max_episode_steps, **case.env_kwargs)


def run_case(case: Case, num_envs: int, mode: str, seed: int = 0, reference: dict | None = None) -> dict:
    """``case`` side by side with its gymnasium env; raises ``AssertionError`` on a difference.

    ``reference``: ``record_reference``'s recordings; a case recorded there plays its gymnasium
    run back (``Replay``) instead of stepping gymnasium again."""
    import fastsample

    key = (case.env_id, num_envs, mode)
    if reference is not None:
        assert key in reference, f"{key}: not in the recorded reference"
        ref = Replay(reference[key], key)
    else:
        ref = _make_ref(case, num_envs, mode)
    ours = fastsample.make_vec(case.env_id, num_envs, autoreset_mode=mode,
                               max_episode_steps=case.max_episode_steps, **case.env_kwargs)
    try:
        counts = compare_runs(ref, ours, mode, case.steps, seed, reset_options=case.reset_options)
        if isinstance(ref, Replay):
            ref.assert_finished()
        return counts
    finally:
        ref.close()
        ours.close()


# --- gymnasium's side, recorded once and played back in each target's process ----------------


class _Recorder:
    """A vector env that passes every call through to ``env`` and logs it with its result."""

    def __init__(self, env):
        self.env = env
        self.num_envs = env.num_envs
        self.action_space = env.action_space
        self.events: list[tuple] = []
        self.states = None  # env_states after the last call

    def reset(self, *, seed=None, options=None):
        out = self.env.reset(seed=seed, options=copy.deepcopy(options))
        self.states = env_states(self.env)
        self.events.append(("reset", copy.deepcopy((seed, options)), copy.deepcopy(out), self.states))
        return out

    def step(self, actions):
        out = self.env.step(actions)
        self.states = env_states(self.env)
        self.events.append(("step", np.array(actions, copy=True), copy.deepcopy(out), self.states))
        return out

    def close(self):
        self.env.close()


class _Echo:
    """The other side while recording: each call returns the result the recorder just logged
    (``compare_runs`` calls the reference first), so the run takes the reference's path."""

    def __init__(self, recorder: _Recorder):
        self.recorder = recorder

    def reset(self, **kwargs):
        return copy.deepcopy(self.recorder.events[-1][2])

    def step(self, actions):
        return copy.deepcopy(self.recorder.events[-1][2])

    def close(self):
        pass


class Replay:
    """A recorded gymnasium run played back: each call must be the recorded one (the same seed and
    options, the same actions) and returns the recorded result."""

    def __init__(self, recording: dict, what=""):
        self.num_envs = recording["num_envs"]
        self.action_space = recording["action_space"]
        self.events = recording["events"]
        self.what = what
        self.at = 0
        self.states = None  # env_states after the call last played

    def _next(self, kind: str, args):
        assert self.at < len(self.events), f"{self.what}: call {self.at} ({kind}) past the end of the recording"
        rec_kind, rec_args, out, self.states = self.events[self.at]
        self.at += 1
        assert rec_kind == kind and _same_args(rec_args, args), (
            f"{self.what}: call {self.at - 1} is {kind}{args!r}, the recording's is {rec_kind}{rec_args!r}")
        return copy.deepcopy(out)

    def reset(self, *, seed=None, options=None):
        return self._next("reset", (seed, options))

    def step(self, actions):
        return self._next("step", np.asarray(actions))

    def assert_finished(self):
        assert self.at == len(self.events), f"{self.what}: {len(self.events) - self.at} recorded calls never made"

    def close(self):
        pass


def _same_args(a, b) -> bool:
    if isinstance(a, dict) or isinstance(b, dict):
        return (isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys()
                and all(_same_args(a[k], b[k]) for k in a))
    if isinstance(a, (tuple, list)) or isinstance(b, (tuple, list)):
        return (isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)) and len(a) == len(b)
                and all(_same_args(x, y) for x, y in zip(a, b)))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    return type(a) is type(b) and a == b


def record_reference(path: str, sizes=SIZES, modes=MODES, cases=CASES, seed: int = 0) -> dict:
    """Run the reference side of every case ``run_case`` would run (gymnasium, or for the
    MinAtar games their one-env runs, :class:`SingleEnvStack`) and pickle the recordings to
    ``path``, for ``check_here(reference=path)`` in other processes. Returns ``{"runs": count,
    "seconds": ...}``."""
    t0 = time.perf_counter()
    runs = {}
    for case in cases:
        for mode in modes:
            for n in sizes if case.sizes is None else [n for n in sizes if n in case.sizes]:
                rec = _Recorder(_make_ref(case, n, mode))
                try:
                    compare_runs(rec, _Echo(rec), mode, case.steps, seed, reset_options=case.reset_options)
                finally:
                    rec.close()
                runs[(case.env_id, n, mode)] = {"num_envs": rec.num_envs, "action_space": rec.action_space,
                                                "events": rec.events}
    with open(path, "wb") as f:
        pickle.dump(runs, f, protocol=pickle.HIGHEST_PROTOCOL)
    return {"runs": len(runs), "seconds": round(time.perf_counter() - t0, 2)}


# --- masked memory operations in the compiled kernels --------------------------------------

_MASKED = re.compile(r"@llvm\.masked\.(?:store|load|scatter|gather|expandload|compressstore)\b")


def compiled_kernels() -> dict[str, Any]:
    """Every numba dispatcher that has compiled code in this process: module-level ones in
    ``envs_numba`` and ``fastsample``, and each registered kernel's ``reset``/``step`` (user
    kernels included)."""
    import envs_numba
    from numba.core.registry import CPUDispatcher

    found: dict[str, Any] = {}
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(("envs_numba", "fastsample")):
            continue
        for attr, obj in list(vars(module).items()):
            if isinstance(obj, CPUDispatcher) and obj.signatures:
                found.setdefault(f"{obj.py_func.__module__}.{obj.py_func.__qualname__}", obj)
    for kernel in envs_numba.KERNELS.values():
        for obj in (kernel.reset, kernel.step):
            if isinstance(obj, CPUDispatcher) and obj.signatures:
                found.setdefault(f"{obj.py_func.__module__}.{obj.py_func.__qualname__}", obj)
    return found


def masked_memory_ops(dispatchers: dict[str, Any] | None = None) -> dict[str, list[str]]:
    """``{kernel: [masked intrinsics]}`` for every compiled kernel whose optimised LLVM IR
    holds a masked load or store (empty: none does)."""
    hits: dict[str, list[str]] = {}
    for name, dispatcher in (dispatchers or compiled_kernels()).items():
        if sum(dispatcher.stats.cache_hits.values()):
            # numba keeps no IR for code loaded from its cache: run with an empty
            # NUMBA_CACHE_DIR (as main() does) to see it
            hits[name] = ["(loaded from the numba cache: IR not available)"]
            continue
        for sig in dispatcher.signatures:
            found = sorted(set(_MASKED.findall(dispatcher.inspect_llvm(sig))))
            if found:
                hits[name] = sorted(set(hits.get(name, [])) | set(found))
    return hits


# --- one check, in this process ------------------------------------------------------------


def _check_fast_tanh(sizes) -> list[str]:
    """The learner's only Numba kernels (``fastsample.learning.fast_tanh``, fastmath, so
    within its documented error of tanh rather than bit-exact)."""
    from fastsample.learning import fast_tanh

    wrong = []
    rng = np.random.default_rng(0)
    for n in sizes:
        x = rng.normal(0.0, 3.0, n).astype(np.float32)
        y = np.empty_like(x)
        fast_tanh._forward(x, y)
        g = rng.normal(size=n).astype(np.float32)
        out = np.empty_like(x)
        fast_tanh._backward(y, g, out)
        if not (np.abs(y - np.tanh(x.astype(np.float64))).max() < 1e-6
                and np.allclose(out, g * (1 - y.astype(np.float64) ** 2), rtol=1e-5, atol=1e-6)):
            wrong.append(f"fast_tanh at {n} elements")
    return wrong


def check_here(sizes=SIZES, modes=MODES, cases=CASES, reference: str | None = None) -> dict:
    """Run the three checks with numba's current target; returns a JSON-able report.

    ``reference``: a file of ``record_reference``'s, made with the same sizes, modes and cases:
    gymnasium's side of each recorded case is played back from it instead of run again."""
    from envs_numba import core

    report: dict[str, Any] = {"target": core.codegen_target(), "failures": [], "cases": 0, "replayed": 0}
    t0 = time.perf_counter()
    recordings = None
    if reference is not None:
        with open(reference, "rb") as f:
            recordings = pickle.load(f)
    try:
        core.self_check()
    except core.CodegenError as e:
        report["failures"].append(f"self_check: {e}")
        cases = ()  # every env would refuse to start with the same error
    for case in cases:
        totals = {"terminated": 0, "truncated": 0}
        for mode in modes:
            for n in sizes if case.sizes is None else [n for n in sizes if n in case.sizes]:
                report["cases"] += 1
                report["replayed"] += recordings is not None
                try:
                    counts = run_case(case, n, mode, reference=recordings)
                except AssertionError as e:
                    report["failures"].append(f"{case.env_id} num_envs={n} {mode}: {e!r}")
                    continue
                except core.CodegenError as e:
                    report["failures"].append(f"{case.env_id}: {e}")
                    break
                totals["terminated"] += counts["terminated"]
                totals["truncated"] += counts["truncated"]
        report.setdefault("episode_ends", {})[case.env_id] = totals
    report["failures"].extend(_check_fast_tanh(sizes))
    for name, ops in masked_memory_ops().items():
        report["failures"].append(f"{name}: masked memory operations in the compiled code {ops}")
    report["seconds"] = round(time.perf_counter() - t0, 2)
    return report


# --- the codegen matrix ----------------------------------------------------------------------

_V3 = ("avx", "avx2", "bmi", "bmi2", "fma", "f16c", "lzcnt", "movbe", "sse4.2", "popcnt")
_V4 = _V3 + ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl")


def host_features() -> set[str]:
    """The CPU features LLVM sees on this machine (the ones it may emit code for)."""
    import llvmlite.binding as llvm

    return {name for name, on in llvm.get_host_cpu_features().items() if on}


def codegen_targets() -> dict[str, dict[str, str]]:
    """Name -> the environment variables that make numba compile for that target.

    ``NUMBA_CPU_NAME`` alone changes the CPU model LLVM tunes for but keeps this CPU's
    features (AVX-512 stays on where the host has it), which is how a different CPU model
    with the same instruction set compiles: the reported miscompile needed exactly that
    (Zen 4's tuning with its AVX-512). The ``-avx2-only`` target also switches AVX-512 off,
    as numba compiles on an AVX2 machine. Targets whose features this CPU lacks are left out.
    """
    import llvmlite.binding as llvm

    have = host_features()
    targets: dict[str, dict[str, str]] = {"host": {}, "generic": {"NUMBA_CPU_NAME": "generic"}}
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return targets
    targets["x86-64-v2"] = {"NUMBA_CPU_NAME": "x86-64-v2"}
    if set(_V3) <= have:
        targets["x86-64-v3"] = {"NUMBA_CPU_NAME": "x86-64-v3"}
    if set(_V4) <= have:
        targets["x86-64-v4"] = {"NUMBA_CPU_NAME": "x86-64-v4"}
        targets["znver4"] = {"NUMBA_CPU_NAME": "znver4"}
        no512 = [f"-{f}" for f in sorted(llvm.get_host_cpu_features()) if f.startswith("avx512")]
        targets["x86-64-v3-avx2-only"] = {
            "NUMBA_CPU_NAME": "x86-64-v3",
            "NUMBA_CPU_FEATURES": ",".join([f"+{f}" for f in _V3 if f in have] + no512),
        }
    return targets


def run_target(name: str, env_vars: dict[str, str] | None, extra_args: list[str] | None = None,
               timeout: float = 600) -> dict:
    """``check_here`` in a fresh process compiling for ``env_vars``' target (``None``: the
    target this process's environment selects), with an empty numba cache of its own (so
    nothing compiled for another target is reused, and the IR of every kernel is there)."""
    with tempfile.TemporaryDirectory(prefix="fastsample-codegen-") as cache:
        env = dict(os.environ)
        if env_vars is not None:
            env = {k: v for k, v in env.items() if not k.startswith("NUMBA_CPU_")}
            env.update(env_vars)
        env["NUMBA_CACHE_DIR"] = cache
        cmd = [sys.executable, "-m", "fastsample.check", *(extra_args or ["--in-process"])]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    lines = proc.stdout.strip().splitlines()
    try:
        report = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        report = {"failures": [f"the check process exited with {proc.returncode}: {proc.stderr[-2000:]}"]}
    report["name"] = name
    report["env"] = env_vars
    return report


def run_record(path: str, sizes=SIZES, timeout: float = 600) -> dict:
    """``record_reference(path, sizes)`` in a fresh process; its summary (``{"runs", "seconds"}``),
    or ``{"error": ...}``."""
    cmd = [sys.executable, "-m", "fastsample.check", "--record", path, "--sizes", ",".join(map(str, sizes))]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"error": f"the recording process exited with {proc.returncode}: {proc.stderr[-2000:]}"}


def run_matrix(targets: dict[str, dict[str, str]] | None = None, extra_args: list[str] | None = None,
               jobs: int | None = None, sizes=SIZES) -> list[dict]:
    """``run_target`` for every target, ``jobs`` at a time (default: one per core), each playing
    back one recording of gymnasium's side (``run_record``, made first)."""
    from concurrent.futures import ThreadPoolExecutor

    targets = targets or codegen_targets()
    jobs = jobs or max(1, len(os.sched_getaffinity(0)))
    with tempfile.TemporaryDirectory(prefix="fastsample-reference-") as tmp:
        path = os.path.join(tmp, "reference.pickle")
        recorded = run_record(path, sizes)
        if "error" in recorded:
            return [{"name": "gymnasium reference", "env": None, "failures": [recorded["error"]]}]
        extra_args = [*(extra_args or ["--in-process"]), "--reference", path]
        with ThreadPoolExecutor(jobs) as pool:
            futures = [pool.submit(run_target, name, env, extra_args) for name, env in targets.items()]
            return [f.result() for f in futures]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastsample.check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--all-targets", action="store_true",
                        help="check every codegen target this CPU can run, each in a fresh process")
    parser.add_argument("--sizes", type=lambda s: tuple(int(x) for x in s.split(",")), default=SIZES,
                        help="comma-separated num_envs values (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the reports as one JSON line")
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--reference", help=argparse.SUPPRESS)  # with --in-process: record_reference's file
    parser.add_argument("--record", help=argparse.SUPPRESS)  # record_reference to this file
    args = parser.parse_args(argv)
    if args.record:  # the child of run_record
        print(json.dumps(record_reference(args.record, args.sizes)))
        return 0
    if args.in_process:  # the child of run_target
        print(json.dumps(check_here(args.sizes, reference=args.reference)))
        return 0
    extra = ["--in-process", "--sizes", ",".join(map(str, args.sizes))]
    if args.all_targets:
        reports = run_matrix(extra_args=extra, sizes=args.sizes)
    else:
        reports = [run_target("this machine", None, extra)]
    if args.json:
        print(json.dumps(reports))
    else:
        for r in reports:
            status = "ok" if not r["failures"] else f"{len(r['failures'])} FAILED"
            label = r.get("name", "this machine")
            print(f"{label:22s} {status:10s} {r.get('cases', 0)} cases in {r.get('seconds', '?')} s  [{r.get('target', r.get('env'))}]")
            for f in r["failures"][:10]:
                print(f"    {f}")
    return 0 if all(not r["failures"] for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
