"""``TrainConfig``: every hyperparameter of ``fastsample train``, one docstring per field.

The CLI flags are generated from this dataclass (``--num-envs`` from ``num_envs``, the help text
from the field's docstring), and per-env presets (:data:`PRESETS`) override the defaults.
:func:`validate` checks a config before any env, process or tensor is created and names the
offending flag.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TrainConfig", "PRESETS", "ConfigError", "field_docs", "make_config", "validate"]


class ConfigError(ValueError):
    """An inconsistent hyperparameter; the message names the flag."""


@dataclass
class TrainConfig:
    # -- what and where --------------------------------------------------------------------
    env: str = "CartPole-v1"
    """gymnasium env id: a fastsample kernel (CartPole-v1, Acrobot-v1, ...) or any registered gymnasium id"""
    seed: int = 1
    """seed of the envs, the network initialisation and the action sampling"""
    total_steps: int = 500_000
    """env steps to train for (an upper bound when --stop-when-solved)"""
    time_limit: float = 0.0
    """stop training after this many seconds of wall time (0: no limit)"""
    device: str = "auto"
    """device of the learner: auto (the CPU where the compiled learner serves, as for MLP policies with --mode sync, which start and train faster there than on a GPU; otherwise cuda when available), cpu or cuda"""
    mode: str = "sync"
    """sync: on-policy, bit-reproducible on CPU; async: sampler processes overlap with learning"""
    run_dir: str = ""
    """run directory (default runs/<env>__<seed>__<time>)"""
    torch_threads: int = 1
    """torch intra-op threads of the learner (0: torch's default)"""
    backend: str = "auto"
    """learner of the PPO update: torch; compiled (Numba kernels, fastsample.learning.compiled, for the update, the rollout's policy and the evaluations: MLP policies on the CPU, --mode sync); auto: compiled where it runs, torch elsewhere (GPU, --mode async)"""

    distributed: bool = False
    """data-parallel PPO over the ranks torchrun starts (DD-PPO, torch.distributed: gloo on CPU, NCCL on CUDA): --num-envs are all ranks' envs together, each rank steps num-envs / world-size of them and averages its gradient with the others'; rank 0 writes the run directory"""

    # -- sampling --------------------------------------------------------------------------
    num_envs: int = 64
    """parallel envs"""
    num_steps: int = 32
    """steps per env per rollout (batch = num_envs * num_steps)"""
    num_workers: int = 0
    """sync mode: env worker processes (0: step the envs in the learner's process); async mode: sampler processes (0: 1)"""
    double_buffer: bool = False
    """sync mode: step the envs as two halves in worker processes (the engine's send/recv), so the policy acts on one half while the other simulates; needs --num-workers 2"""
    async_slots: int = 0
    """async mode: trajectory slots in shared memory, at least one per sampler (0: 2 per sampler, double buffering)"""
    vtrace: bool = False
    """async mode: V-trace targets (truncated importance weights) instead of GAE"""
    max_policy_lag: int = 16
    """async mode: drop a trajectory slot whose acting policy is more than this many updates older than the learner's (Sample Factory's max_policy_lag); its envs go on in a fresh slot. 0 keeps only slots acted by the current weights"""

    # -- PPO -------------------------------------------------------------------------------
    learning_rate: float = 2.5e-4
    """Adam learning rate"""
    anneal_lr: bool = True
    """anneal the learning rate linearly to 0 over --total-steps"""
    gamma: float = 0.99
    """discount factor"""
    gae_lambda: float = 0.95
    """GAE lambda"""
    num_minibatches: int = 4
    """minibatches per epoch (must divide the batch)"""
    update_epochs: int = 4
    """epochs over each batch"""
    norm_adv: bool = True
    """normalise advantages per minibatch"""
    clip_coef: float = 0.2
    """PPO surrogate clipping coefficient"""
    clip_vloss: bool = True
    """clip the value loss as in PPO2"""
    ent_coef: float = 0.01
    """entropy bonus coefficient"""
    vf_coef: float = 0.5
    """value loss coefficient"""
    max_grad_norm: float = 0.5
    """global gradient-norm clipping"""
    target_kl: float = 0.0
    """stop the epochs early when the approximate KL exceeds this (0: never)"""
    hidden_sizes: str = "64,64"
    """hidden layer widths of the actor and of the critic MLPs, comma separated"""
    activation: str = "tanh"
    """hidden activation: tanh or relu"""
    conv_channels: str = "16"
    """image observations (an (H, W, C) Box, e.g. MinAtar) get a CNN policy (fastsample.learning.cnn): 3x3 stride-1 conv layers with these output channels (comma separated, ReLU), then dense layers of --hidden-sizes, one torso shared by the policy and value heads"""
    init_log_std: float = 0.0
    """Box actions: initial log standard deviation of the Gaussian policy"""
    norm_obs: bool = False
    """normalise observations with running mean/std"""
    norm_reward: bool = False
    """scale rewards by the running std of the discounted return"""
    clip_obs: float = 10.0
    """clip normalised observations to +-this"""

    # -- evaluation, logging, checkpoints --------------------------------------------------
    target_return: float = math.nan
    """mean greedy-evaluation return that counts as solved (default: the env's reward threshold)"""
    stop_when_solved: bool = True
    """stop as soon as an evaluation reaches --target-return"""
    eval_episodes: int = 20
    """greedy evaluation episodes, run in parallel"""
    eval_every: int = 5
    """evaluate every this many updates (0: only at the end)"""
    eval_min_train_return: float = math.nan
    """evaluate during training only once the mean training-episode return reaches this (default: no gate)"""
    max_step_reward: float = math.nan
    """an upper bound on one step's reward: lets a failing evaluation stop as soon as --target-return is out of reach"""
    checkpoint_interval: float = 60.0
    """seconds between checkpoints (a final one is always written)"""
    log_interval: float = 0.5
    """seconds between metrics.jsonl lines and progress-bar updates"""
    progress: bool = True
    """show a progress bar"""


# Presets tuned for a fast solve with the default --num-workers 0 on a small CPU.
PRESETS: dict[str, dict[str, Any]] = {
    "CartPole-v1": dict(
        total_steps=300_000, num_envs=32, num_steps=16, num_minibatches=1, update_epochs=2,
        learning_rate=1e-2, anneal_lr=False, gamma=0.99, gae_lambda=0.95, ent_coef=0.0,
        clip_vloss=False, hidden_sizes="32,32", eval_every=2, eval_min_train_return=150.0, max_step_reward=1.0,
    ),
    "Acrobot-v1": dict(
        total_steps=500_000, num_envs=64, num_steps=32, num_minibatches=4, update_epochs=4,
        learning_rate=1e-3, ent_coef=0.0, norm_obs=True, eval_every=10, eval_min_train_return=-130.0, max_step_reward=0.0,
    ),
    "Pendulum-v1": dict(
        total_steps=1_000_000, num_envs=64, num_steps=64, num_minibatches=8, update_epochs=10,
        learning_rate=1e-3, gamma=0.9, gae_lambda=0.95, ent_coef=0.0, norm_obs=True, norm_reward=True,
        clip_vloss=False, init_log_std=-0.5, eval_every=10, eval_min_train_return=-400.0, target_return=-250.0,
        max_step_reward=0.0,
    ),
    "MountainCar-v0": dict(
        total_steps=1_000_000, num_envs=64, num_steps=64, num_minibatches=4, update_epochs=4,
        learning_rate=1e-3, ent_coef=0.01, norm_obs=True, norm_reward=True, gamma=0.99, eval_every=10,
    ),
    "MountainCarContinuous-v0": dict(
        total_steps=1_000_000, num_envs=64, num_steps=64, num_minibatches=4, update_epochs=4,
        learning_rate=1e-3, ent_coef=0.0, norm_obs=True, norm_reward=True, gamma=0.99, eval_every=10,
        init_log_std=0.0,
    ),
    "GridWorld-v0": dict(
        total_steps=100_000, num_envs=32, num_steps=32, learning_rate=1e-3, norm_obs=True, eval_every=2,
    ),
}

# MinAtar (10x10xC boolean grids): the CNN policy of fastsample.learning.cnn (3x3 conv with 16
# channels, then 128 ReLU units, one torso for both heads: the network of Young & Tian 2019).
# PPO hyperparameters after PureJaxRL's MinAtar config (luchris429/purejaxrl,
# examples/brax_minatar.ipynb: 64 envs x 128 steps, 4 epochs of 8 minibatches, gamma 0.99,
# lambda 0.95, clip 0.2, entropy 0.01, value 0.5, grad norm 0.5, ReLU, lr annealed to 0; its lr
# 5e-3 is for an MLP) and gymnax-blines' (agents/Breakout-MinAtar/ppo.yaml: the same batch and
# epochs, lr 5e-4). The lr is this CNN's, measured on MinAtar Breakout (seed 1, training return
# over the last 100 episodes at 1.97 M steps of 3 M-step runs: 1e-3 17.6, 2.5e-3 18.6; a 1 M-step
# run at 5e-4 was at 6.1 by its end). No observation normalisation (the grids are 0/1). 3 M env steps = 366
# updates of 8192 transitions (plus one that crosses 3 M): evaluating every 6 updates puts the last
# evaluation within the budget at 2,998,272 steps.
_MINATAR = dict(
    total_steps=3_000_000, num_envs=64, num_steps=128, num_minibatches=8, update_epochs=4,
    learning_rate=2.5e-3, anneal_lr=True, gamma=0.99, gae_lambda=0.95, clip_coef=0.2, ent_coef=0.01,
    vf_coef=0.5, max_grad_norm=0.5, hidden_sizes="128", activation="relu", conv_channels="16",
    norm_obs=False, norm_reward=False, eval_every=6, eval_episodes=32,
)
for _game, _extra in {
    # the acceptance bar for Breakout; the other games have no threshold (train the full budget)
    "Breakout": dict(target_return=10.0),
    "Asterix": {},
    "Freeway": {},
    "Seaquest": {},
    "SpaceInvaders": {},
}.items():
    for _version in ("v1", "v0"):  # v1: the minimal action set, v0: all six actions
        PRESETS[f"MinAtar-{_game}-{_version}"] = dict(_MINATAR, **_extra)
del _game, _extra, _version


def field_docs(cls: type = TrainConfig) -> dict[str, str]:
    """Each field's docstring (the string literal that follows it in the class body)."""
    try:
        tree = ast.parse(inspect.getsource(cls))
    except (OSError, TypeError):  # no source (frozen install): no help texts
        return {}
    docs: dict[str, str] = {}
    body = tree.body[0].body
    for node, nxt in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)):
            docs[node.target.id] = nxt.value.value.strip()
    return docs


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def preset_for(env_id: str) -> dict[str, Any]:
    name = env_id.split("/", 1)[1] if env_id.startswith("fastsample/") else env_id
    return dict(PRESETS.get(name, {}))


def make_config(env: str = "CartPole-v1", **overrides: Any) -> TrainConfig:
    """Defaults, then ``env``'s preset, then ``overrides`` (unknown names raise)."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(f"unknown hyperparameters {unknown}")
    values = preset_for(env)
    values.update(overrides)
    values["env"] = env
    return TrainConfig(**values)


def parse_hidden(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in str(text).split(",") if s.strip())
    except ValueError:
        raise ConfigError(f"--hidden-sizes must be comma-separated positive ints, got {text!r}") from None
    if not sizes or any(s < 1 for s in sizes):
        raise ConfigError(f"--hidden-sizes must be comma-separated positive ints, got {text!r}")
    return sizes


def validate(cfg: TrainConfig) -> None:
    """Raise :class:`ConfigError` naming the flag of the first inconsistent value."""

    def need(ok: bool, name: str, message: str) -> None:
        if not ok:
            raise ConfigError(f"{flag(name)} {message}, got {getattr(cfg, name)!r}")

    for name in ("seed", "total_steps", "num_envs", "num_steps", "num_workers", "num_minibatches",
                 "update_epochs", "eval_episodes", "eval_every", "torch_threads", "async_slots", "max_policy_lag"):
        value = getattr(cfg, name)
        need(isinstance(value, int) and not isinstance(value, bool), name, "must be an integer")
    need(cfg.seed >= 0, "seed", "must be >= 0")
    need(cfg.total_steps > 0, "total_steps", "must be > 0")
    need(cfg.num_envs > 0, "num_envs", "must be > 0")
    need(cfg.num_steps > 0, "num_steps", "must be > 0")
    need(cfg.num_workers >= 0, "num_workers", "must be >= 0")
    need(cfg.num_minibatches > 0, "num_minibatches", "must be > 0")
    batch = cfg.num_envs * cfg.num_steps
    if batch % cfg.num_minibatches:
        raise ConfigError(
            f"--num-minibatches {cfg.num_minibatches} must divide the batch --num-envs x --num-steps = "
            f"{cfg.num_envs} x {cfg.num_steps} = {batch}")
    need(cfg.update_epochs > 0, "update_epochs", "must be > 0")
    need(cfg.eval_episodes > 0, "eval_episodes", "must be > 0")
    need(cfg.eval_every >= 0, "eval_every", "must be >= 0")
    need(cfg.torch_threads >= 0, "torch_threads", "must be >= 0")
    need(cfg.async_slots >= 0, "async_slots", "must be >= 0")
    need(cfg.max_policy_lag >= 0, "max_policy_lag", "must be >= 0")
    need(cfg.mode in ("sync", "async"), "mode", "must be sync or async")
    need(cfg.backend in ("auto", "torch", "compiled"), "backend", "must be auto, torch or compiled")
    if cfg.backend == "compiled" and cfg.mode != "sync":
        raise ConfigError("--backend compiled runs with --mode sync (the async learner is torch's); "
                          "use --backend torch or auto with --mode async")
    if cfg.backend == "compiled" and cfg.device.startswith("cuda"):
        raise ConfigError(f"--backend compiled runs on the CPU, not --device {cfg.device}")
    need(cfg.device in ("auto", "cpu", "cuda") or cfg.device.startswith("cuda:"), "device", "must be auto, cpu or cuda")
    need(cfg.activation in ("tanh", "relu"), "activation", "must be tanh or relu")
    need(math.isfinite(cfg.learning_rate) and cfg.learning_rate > 0, "learning_rate", "must be > 0")
    need(0 <= cfg.gamma <= 1, "gamma", "must be in [0, 1]")
    need(0 <= cfg.gae_lambda <= 1, "gae_lambda", "must be in [0, 1]")
    need(cfg.clip_coef > 0, "clip_coef", "must be > 0")
    need(cfg.ent_coef >= 0, "ent_coef", "must be >= 0")
    need(cfg.vf_coef >= 0, "vf_coef", "must be >= 0")
    need(cfg.max_grad_norm > 0, "max_grad_norm", "must be > 0")
    need(cfg.target_kl >= 0, "target_kl", "must be >= 0")
    if cfg.distributed and cfg.target_kl:
        raise ConfigError("--target-kl stops each rank's epochs on its own KL, so the replicas would part; "
                          "it is not available with --distributed")
    need(cfg.time_limit >= 0, "time_limit", "must be >= 0")
    need(cfg.checkpoint_interval > 0, "checkpoint_interval", "must be > 0")
    need(cfg.log_interval > 0, "log_interval", "must be > 0")
    need(cfg.clip_obs > 0, "clip_obs", "must be > 0")
    parse_hidden(cfg.hidden_sizes)
    try:
        channels = tuple(int(c) for c in str(cfg.conv_channels).split(",") if c.strip())
    except ValueError:
        channels = ()
    need(bool(channels) and all(c > 0 for c in channels), "conv_channels", "must be comma-separated positive ints")
    if cfg.double_buffer:
        if cfg.mode != "sync":
            raise ConfigError("--double-buffer is a --mode sync option (--mode async overlaps sampling and learning)")
        if cfg.num_workers != 2 or cfg.num_envs % 2:
            raise ConfigError(f"--double-buffer needs --num-workers 2 and an even --num-envs, got "
                              f"--num-workers {cfg.num_workers} --num-envs {cfg.num_envs}")
    if cfg.mode == "async" and cfg.async_slots and cfg.async_slots < max(1, cfg.num_workers):
        # each update takes one slot per sampler: fewer slots than samplers can never fill a batch
        raise ConfigError(f"--async-slots {cfg.async_slots} must be at least the sampler count --num-workers "
                          f"{max(1, cfg.num_workers)} (each update takes {max(1, cfg.num_workers)} slots; "
                          f"0 means 2 per sampler)")
    if cfg.mode == "async" and cfg.num_envs % max(1, cfg.num_workers):
        raise ConfigError(f"--num-envs {cfg.num_envs} must be a multiple of --num-workers {cfg.num_workers} "
                          f"(the sampler processes of --mode async split the envs evenly)")


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in values.items() if k in names})


def default_field_value(name: str) -> Any:
    f = {f.name: f for f in dataclasses.fields(TrainConfig)}[name]
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]


_ = field  # re-exported for users who subclass TrainConfig
