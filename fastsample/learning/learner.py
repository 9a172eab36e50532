"""The learner interface: what a runner needs from a PPO learner, and which backend serves.

A runner (:mod:`fastsample.runners.sync`) owns the envs, NumPy rollout buffers and the
normalisation statistics; it talks to the learner only through the methods below, on NumPy
arrays, so the data path reads top-down -- env -> rollout (numpy) -> learner -> weights -- and
nothing in the runner knows which backend learns. Two backends implement it:

* ``"compiled"`` (:class:`fastsample.learning.compiled_backend.CompiledLearner`): Numba kernels
  (:mod:`fastsample.learning.compiled`) for MLP policies on the CPU. Imports no torch.
* ``"torch"`` (:class:`fastsample.learning.torch_backend.TorchLearner`): the torch model
  (:mod:`fastsample.learning.ppo`; the CNN of :mod:`fastsample.learning.cnn` for image
  observations) and ``torch.optim.Adam``, on any torch device.

The interface (duck-typed; :class:`Learner` documents it):

* ``act(obs, stream, out)``: sample actions for normalised ``obs`` (n, obs_dim) float32 with the
  learner's random stream ``stream`` (0: the rollout; 1, 2: the two halves of ``--double-buffer``),
  writing ``(actions, log_probs, values)`` into the arrays ``out``; ``value(obs)`` -> (n,) float32;
  ``greedy(obs)`` -> the greedy actions (evaluation).
* ``gae(rewards, values, dones, last_value)`` -> ``(advantages, returns)`` float32 (T, N), with the
  config's gamma and lambda.
* ``update(batch)`` -> :class:`PPOStats`: ``update_epochs`` epochs of ``num_minibatches`` shuffled
  minibatches of PPO-clip on a flat batch (NumPy arrays ``obs, actions, logprobs, values,
  advantages, returns``).
* ``learning_rate`` (settable: the runner anneals it).
* ``state_dict()`` / ``load_state_dict(d, iteration)``: the checkpoint's learner part in a
  backend-neutral form -- ``model`` (arrays under the torch ``state_dict`` keys; both backends use
  the torch model's flat parameter layout), ``adam`` (``step``, ``lr``, flat ``exp_avg`` and
  ``exp_avg_sq``) -- plus the backend's own random streams (restored only by the same backend;
  the other derives fresh streams from the seed and ``iteration``). ``load_weights(arrays)`` loads
  ``model`` arrays alone (``fastsample eval``). ``flat_params()`` / ``set_flat_params(a)``: the
  parameters as one float32 vector in that layout.

Distributed data-parallel training (DD-PPO) hooks, both backends:

* ``grad_hook``: ``None`` or a callable taking the flat float32 gradient (a NumPy array, the
  parameter layout above) after each minibatch's backward pass and before grad-norm clipping and
  Adam; it reduces the array in place (an all-reduce average across ranks). Every replica then
  clips and steps alike.
* ``adv_moments_hook``: ``None`` or a callable taking a minibatch's advantage moments as a float64
  array ``[count, sum, sum of squares]`` and reducing it in place across ranks before the
  advantages are normalised (``--norm-adv``), so every rank normalises with the global mean and
  (unbiased) std.
* the observation/reward statistics: :attr:`fastsample.learning.normalize.RunningMeanStd.moments_hook`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

__all__ = ["Learner", "PPOStats", "resolve_device", "resolve_train_device", "resolve_backend", "make_learner", "needs_torch_model",
           "GradHook", "MomentsHook"]

GradHook = Callable[[np.ndarray], None]
MomentsHook = Callable[[np.ndarray], None]


@dataclass
class PPOStats:
    """Means over an update's minibatches (``epochs``: the epochs run; fewer with ``--target-kl``)."""

    policy_loss: float = 0.0
    value_loss: float = 0.0
    entropy: float = 0.0
    approx_kl: float = 0.0
    clipfrac: float = 0.0
    grad_norm: float = 0.0
    epochs: int = 0


class Learner(Protocol):
    """What a runner calls; see the module docstring."""

    backend: str
    device: str
    obs_dim: int
    action_dim: int
    discrete: bool
    grad_hook: GradHook | None
    adv_moments_hook: MomentsHook | None
    learning_rate: float

    def warmup(self) -> None: ...
    def act(self, obs: np.ndarray, stream: int, out: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None: ...
    def value(self, obs: np.ndarray) -> np.ndarray: ...
    def greedy(self, obs: np.ndarray) -> np.ndarray: ...
    def gae(self, rewards: np.ndarray, values: np.ndarray, dones: np.ndarray, last_value: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]: ...
    def update(self, batch: dict[str, np.ndarray]) -> PPOStats: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, d: dict[str, Any], iteration: int) -> None: ...
    def load_weights(self, arrays: dict[str, np.ndarray]) -> None: ...
    def flat_params(self) -> np.ndarray: ...
    def set_flat_params(self, flat: np.ndarray) -> None: ...


def _cuda_driver_present() -> bool:
    """Whether the CUDA driver library loads: without it torch cannot see a GPU, so ``--device
    auto`` is the CPU without importing torch (1-2 s) to ask."""
    import ctypes

    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


def resolve_device(name: str) -> str:
    """The torch device name a run learns on: ``cpu``, ``cuda`` or ``cuda:N``. ``auto`` is cuda
    when torch sees a GPU (torch is imported only where a CUDA driver is installed)."""
    from fastsample.train_config import ConfigError

    if name == "auto":
        if not _cuda_driver_present():
            return "cpu"
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("--device cuda: CUDA is not available (use --device cpu or auto)")
    return name


def resolve_train_device(cfg, obs_space) -> str:
    """The device a training run learns on. ``--device auto`` is the CPU wherever the compiled
    learner serves (an MLP policy, ``--mode sync``, ``--backend`` auto or compiled), even with a
    GPU: on an H200 machine (bench/gpu_results.json, RESULTS.md "GPU") the default CartPole
    command took 1.2-1.7 s on the CPU and 9-11.5 s with torch on the GPU, CUDA's start-up alone
    about 7 s. Elsewhere (CNN policies, --mode async, --backend torch) ``auto`` is cuda when
    available. ``--device cuda`` asks for the GPU explicitly: at a large batch (4096 x 16) torch
    on the H200 trained 2.2x faster than the compiled learner there, once started."""
    if (cfg.device == "auto" and cfg.backend in ("auto", "compiled") and cfg.mode == "sync"
            and not needs_torch_model(cfg, obs_space)):
        return "cpu"
    return resolve_device(cfg.device)


def needs_torch_model(cfg, obs_space) -> bool:
    """Whether the policy is one only torch has: a CNN for image observations (rank-3
    observation spaces: ``(H, W, C)`` grids such as MinAtar's)."""
    shape = getattr(obs_space, "shape", None) or ()
    return len(shape) == 3


def resolve_backend(cfg, device: str, obs_space=None) -> str:
    """The learner backend that runs: ``torch`` or ``compiled``. ``auto`` is compiled where it
    runs (the MLP policy on the CPU with ``--mode sync``; tests/test_train_backends.py checks that
    it solves CartPole) and torch elsewhere (GPU, ``--mode async``, CNN policies)."""
    from fastsample.train_config import ConfigError

    on_cpu = str(device).split(":")[0] == "cpu"
    torch_model = obs_space is not None and needs_torch_model(cfg, obs_space)
    if cfg.backend == "compiled":
        if not on_cpu:
            raise ConfigError(f"--backend compiled runs on the CPU, not on {device} (pass --device cpu)")
        if cfg.mode != "sync":
            raise ConfigError("--backend compiled runs with --mode sync")
        if torch_model:
            raise ConfigError("--backend compiled runs MLP policies; image observations need --backend torch")
        return "compiled"
    if cfg.backend == "auto" and on_cpu and cfg.mode == "sync" and not torch_model:
        return "compiled"
    return "torch"


def make_learner(cfg, obs_space, act_space, device: str = "cpu", *, num_streams: int = 1,
                 backend: str | None = None) -> Learner:
    """The learner of a ``TrainConfig`` for gymnasium spaces (``backend``: as resolved by
    :func:`resolve_backend` unless given). ``num_streams``: random action streams (3 with
    ``--double-buffer``: the rollout's and one per half)."""
    backend = backend or resolve_backend(cfg, device, obs_space)
    if backend == "compiled":
        from fastsample.learning.compiled_backend import CompiledLearner

        return CompiledLearner(cfg, obs_space, act_space, num_streams=num_streams)
    from fastsample.learning.torch_backend import TorchLearner

    return TorchLearner(cfg, obs_space, act_space, device, num_streams=num_streams)
