"""Data-parallel training across processes and machines (DD-PPO) on ``torch.distributed``.

Each rank is a whole trainer: its own envs (seeded disjointly from every other rank's), its own
sampler processes and a full learner replica. After each minibatch's backward pass the flat
gradient is averaged over the ranks with one all-reduce, and so are the statistics that decide a
step (observation normalisation, advantage normalisation), so every replica takes the same step
and the parameters stay bit-identical. There is no parameter server.

The ranks are started by ``torchrun``, which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``; :func:`from_environment` reads them, checks them and joins
the process group: gloo for CPU learners, NCCL for CUDA ones. Everything here works on NumPy
arrays (the compiled learner's and the rollout's), viewed as CPU tensors without a copy.

Rank 0 alone writes the run directory; the others compute the same updates and keep quiet.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["DistributedError", "Ranks", "TORCHRUN_VARS", "attach", "check_launch", "config_digest", "from_environment",
           "rank_config", "rank_env_seed", "rank_state"]

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
_GLOO_RELEASE_S = 0.05  # see Ranks.close


class DistributedError(RuntimeError):
    """A distributed run that cannot start or go on; the message says why on every rank."""


def rank_env_seed(seed: int, rank: int, num_envs: int) -> int:
    """The seed of rank ``rank``'s first env. Env ``i`` of a vector env is seeded ``seed + i``
    (gymnasium's convention), so rank r's envs take ``seed + r * num_envs + i``: disjoint from
    every other rank's, and rank 0's are those of a single-process run."""
    return int(seed) + int(rank) * int(num_envs)


def config_digest(config: dict[str, Any]) -> str:
    """A hash of a run's config, the same on every rank only if the configs are the same."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Ranks:
    """This process's place in a distributed run, and the collectives the trainer needs.

    Every collective takes and fills NumPy arrays in place; on a CUDA learner the arrays are
    staged through the device (NCCL reduces device memory only)."""

    rank: int
    world_size: int
    local_rank: int
    backend: str  # "gloo" or "nccl"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- collectives ---------------------------------------------------------------------

    def _tensor(self, arr: np.ndarray):
        import torch

        if not arr.flags.c_contiguous or not arr.flags.writeable:
            raise ValueError("collectives need a contiguous, writeable array")
        t = torch.from_numpy(arr)
        if self.backend == "nccl":
            return t, t.to(f"cuda:{self.local_rank}")
        return t, t

    def _done(self, host, dev) -> None:
        if dev is not host:
            host.copy_(dev.cpu())

    def all_reduce_(self, arr: np.ndarray, op: str = "sum") -> np.ndarray:
        """``arr`` = the ``op`` ("sum", "min" or "max") of every rank's ``arr``, in place."""
        import torch.distributed as dist

        host, dev = self._tensor(arr)
        dist.all_reduce(dev, op={"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}[op])
        self._done(host, dev)
        return arr

    def all_reduce_sum_(self, arr: np.ndarray) -> np.ndarray:
        """``arr`` = the sum of every rank's ``arr``, in place."""
        return self.all_reduce_(arr, "sum")

    def all_reduce_mean_(self, arr: np.ndarray) -> np.ndarray:
        """``arr`` = the mean of every rank's ``arr``, in place (sum, then one division, so the
        result has the same bits on every rank)."""
        self.all_reduce_sum_(arr)
        arr /= arr.dtype.type(self.world_size)
        return arr

    def broadcast_(self, arr: np.ndarray, src: int = 0) -> np.ndarray:
        """``arr`` = rank ``src``'s ``arr``, in place."""
        import torch.distributed as dist

        host, dev = self._tensor(arr)
        dist.broadcast(dev, src=src)
        self._done(host, dev)
        return arr

    def decide(self, value: float) -> float:
        """Rank 0's ``value`` on every rank: the stop and evaluation decisions are rank 0's."""
        buf = np.array([value], np.float64)
        return float(self.broadcast_(buf)[0])

    def check_same(self, what: str, digest: str) -> None:
        """Raise :class:`DistributedError` on every rank if any rank's ``digest`` differs."""
        mine = np.frombuffer(bytes.fromhex(digest)[:16], np.int64).copy()  # 128 bits suffice
        low, high = self.all_reduce_(mine.copy(), "min"), self.all_reduce_(mine.copy(), "max")
        if not (np.array_equal(low, mine) and np.array_equal(high, mine)):
            raise DistributedError(f"the ranks' {what} differ (rank {self.rank} has {digest[:12]}...): every rank "
                                   "must be started with the same command line and fastsample version")

    def all_gather(self, arr: np.ndarray) -> np.ndarray:
        """Every rank's ``arr`` (the same shape on every rank), stacked in rank order."""
        import torch
        import torch.distributed as dist

        host, dev = self._tensor(np.ascontiguousarray(arr).copy())
        parts = [torch.empty_like(dev) for _ in range(self.world_size)]
        dist.all_gather(parts, dev)
        return np.stack([p.cpu().numpy() for p in parts])

    def gather_values(self, values: np.ndarray) -> np.ndarray:
        """Every rank's 1-D float64 ``values`` (any lengths), concatenated in rank order."""
        values = np.asarray(values, np.float64).ravel()
        counts = self.all_gather(np.array([values.size], np.int64))[:, 0]
        padded = np.zeros(int(counts.max()) if counts.size else 0, np.float64)
        if padded.size == 0:
            return padded
        padded[:values.size] = values
        rows = self.all_gather(padded)
        return np.concatenate([row[:c] for row, c in zip(rows, counts)])

    def moments_hook(self, count: float, mean: np.ndarray, var: np.ndarray):
        """A :class:`~fastsample.learning.normalize.RunningMeanStd` ``moments_hook``: one batch's
        ``(count, mean, var)`` -> the same of every rank's batches together."""
        mean = np.asarray(mean, np.float64)
        k = mean.size
        m = np.empty(1 + 2 * k, np.float64)
        m[0] = count
        m[1:1 + k] = count * mean.ravel()
        m[1 + k:] = count * (np.asarray(var, np.float64).ravel() + mean.ravel() ** 2)
        self.all_reduce_sum_(m)
        total = m[0]
        g_mean = m[1:1 + k] / total
        g_var = np.maximum(m[1 + k:] / total - g_mean ** 2, 0.0)
        return total, g_mean.reshape(mean.shape), g_var.reshape(mean.shape)

    def barrier(self) -> None:
        import torch.distributed as dist

        dist.barrier()

    def close(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
            # A gloo worker thread drops its last finished collective just after completing it,
            # and dropping the tensors our NumPy arrays lent it takes the GIL. Were the
            # interpreter already shutting down by then, that thread would be killed inside
            # C++ code and the rank abort (SIGABRT, "terminate called without an active
            # exception", about one exit in 10 to 50 here). Waiting lets it take the GIL first.
            time.sleep(_GLOO_RELEASE_S)


def check_launch(cfg) -> int:
    """The checks a ``--distributed`` run makes before it joins the process group or starts an
    env: torchrun's environment is there, and the world size divides the config's batch.
    Returns the world size. Raises :class:`DistributedError` (the same on every rank)."""
    missing = [v for v in TORCHRUN_VARS if not os.environ.get(v)]
    if missing:
        raise DistributedError(
            f"--distributed needs the environment torchrun sets, but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set. Launch with: torchrun --nproc-per-node K "
            "-m fastsample.cli train --distributed ... (see the README's 'Scaling out')")
    try:
        world = int(os.environ["WORLD_SIZE"])
    except ValueError:
        raise DistributedError(f"WORLD_SIZE must be an integer, got {os.environ['WORLD_SIZE']!r}") from None
    if cfg.num_envs % world:
        raise DistributedError(f"--num-envs {cfg.num_envs} is the envs of all ranks together and must divide "
                               f"evenly over the world size {world} (each rank steps num_envs / world_size)")
    local = cfg.num_envs // world
    if (local * cfg.num_steps) % cfg.num_minibatches:
        raise DistributedError(
            f"each rank's batch ({local} envs x {cfg.num_steps} steps = {local * cfg.num_steps}) must divide into "
            f"--num-minibatches {cfg.num_minibatches}: with world size {world}, pick --num-envs / --num-steps "
            "so that it does")
    samplers = max(1, cfg.num_workers)
    if cfg.mode == "async" and local % samplers:
        raise DistributedError(f"--mode async: each rank's {local} envs must divide over its --num-workers "
                               f"{samplers} samplers; make --num-envs a multiple of {world * samplers}")
    if cfg.double_buffer and local % 2:
        raise DistributedError(f"--double-buffer splits each rank's {local} envs into two halves: make "
                               f"--num-envs a multiple of {2 * world}")
    return world


def rank_config(cfg, ranks: "Ranks"):
    """The config one rank's runner runs: ``num_envs / world_size`` envs, seeded from
    :func:`rank_env_seed` (its random streams follow that seed too, so no two ranks draw the same
    actions); the initial weights are rank 0's, broadcast by :func:`attach`."""
    import dataclasses

    local = cfg.num_envs // ranks.world_size
    return dataclasses.replace(cfg, num_envs=local, seed=rank_env_seed(cfg.seed, ranks.rank, local))


def attach(runner, ranks: "Ranks") -> None:
    """Make ``runner`` (a sync or async runner over :func:`rank_config`) one replica of a
    data-parallel run: the gradient averaged over the ranks before clipping and Adam, the
    advantage moments and the normalisation statistics reduced across ranks, steps counted for
    all ranks, and rank 0's initial weights on every rank."""
    learner = getattr(runner, "learner", None)  # the sync runner's learner; the async runner learns itself
    hooked = learner if learner is not None else runner
    hooked.grad_hook = ranks.all_reduce_mean_
    hooked.adv_moments_hook = ranks.all_reduce_sum_
    runner.normalizer.obs_rms.moments_hook = ranks.moments_hook
    runner.normalizer.ret_rms.moments_hook = ranks.moments_hook
    if learner is not None:
        runner.world_size = ranks.world_size  # equal batches: every rank steps T x N per update
        flat = np.ascontiguousarray(learner.flat_params(), np.float32).copy()
        ranks.broadcast_(flat)
        learner.set_flat_params(flat)
    else:
        import torch

        # an async rank's batch is the slots it took: count them all
        runner.count_steps = lambda n: int(ranks.all_reduce_sum_(np.array([n], np.int64))[0])
        flat = runner.flat.detach().cpu().numpy().copy()
        ranks.broadcast_(flat)
        with torch.no_grad():
            runner.flat.copy_(torch.from_numpy(flat))


_OWN_STREAMS = ("np_generator", "np_action_generators", "generator", "half_generators", "torch_rng")


def rank_state(state: dict[str, Any], ranks: "Ranks", saved_world_size: int) -> dict[str, Any]:
    """The part of rank 0's checkpointed runner state that rank ``ranks.rank`` resumes from.

    Every rank loads the same weights, Adam state and normalisation statistics (so the replicas
    start identical). The envs' states and the random streams were rank 0's own: rank 0 takes
    them back when the world size is unchanged; every other rank (and every rank after a change
    of world size) starts fresh episodes and derives fresh streams from its seed and the update
    count. A different world size keeps the global batch (``--num-envs`` counts all ranks' envs),
    so training goes on with the same update; only the envs' episodes restart."""
    if ranks.is_main and saved_world_size == ranks.world_size:
        return state
    state = {k: v for k, v in state.items() if k not in _OWN_STREAMS}
    state["env"] = None
    norm = dict(state.get("normalizer") or {})
    if norm:
        norm["returns"] = np.zeros(0)  # per-env discounted returns: another rank's envs
        state["normalizer"] = norm
    return state


def from_environment(device: str = "cpu", timeout_s: float = 60.0) -> Ranks:
    """Join the process group that ``torchrun`` set up for this process.

    ``device`` is the learner's device ("cpu", "cuda" or "cuda:N"): gloo for CPU, NCCL for CUDA,
    with ``LOCAL_RANK`` picking the GPU. ``timeout_s`` bounds every collective, so a rank that
    dies or stops answering ends the others with an error instead of a hang."""
    missing = [v for v in TORCHRUN_VARS if not os.environ.get(v)]
    if missing:
        raise DistributedError(f"{', '.join(missing)} not set: start the ranks with torchrun")
    try:
        rank, world, local = (int(os.environ[v]) for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    except ValueError:
        raise DistributedError("RANK, WORLD_SIZE and LOCAL_RANK must be integers, got "
                               f"{[os.environ[v] for v in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK')]}") from None
    if world < 1 or not 0 <= rank < world:
        raise DistributedError(f"RANK {rank} is not in [0, WORLD_SIZE={world})")
    try:
        import torch
        import torch.distributed as dist
    except ImportError as err:
        raise DistributedError(f"--distributed runs on torch.distributed, which cannot be imported: {err}") from None
    if not dist.is_available():
        raise DistributedError("this torch build has no torch.distributed")
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl":
        if not torch.cuda.is_available():
            raise DistributedError(f"--device {device} on rank {rank}, but CUDA is not available")
        gpus = torch.cuda.device_count()
        if local >= gpus:  # NCCL refuses two ranks on one GPU, and a missing GPU fails deep inside
            raise DistributedError(f"--device {device}: LOCAL_RANK {local} needs GPU {local}, but this node has "
                                   f"{gpus}; NCCL runs one rank per GPU, so start at most {gpus} per node "
                                   "(--nproc-per-node), or use --device cpu (gloo)")
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=timeout_s))
    _share_cores(int(os.environ.get("LOCAL_WORLD_SIZE") or 1))
    return Ranks(rank=rank, world_size=world, local_rank=local, backend=backend)


def _share_cores(local_ranks: int) -> None:
    """The compiled learner splits large updates over two threads; with fewer than two cores per
    rank on this node, each rank computes both halves itself (the same results) rather than
    oversubscribe the cores."""
    from fastsample.learning import compiled

    compiled.PARALLEL_HALVES = 2 * local_ranks <= len(os.sched_getaffinity(0))
