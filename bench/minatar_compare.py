"""MinAtar throughput: fastsample's batched kernels against the ``minatar`` package, same run.

    python -m bench.minatar_compare [--num-envs 4096] [--seconds 6] [--rounds 9] [--games breakout,freeway] [--copy]

fastsample: ``make_vec("MinAtar-<Game>-v1", num_envs)`` in this process (NextStep autoreset,
sticky actions 0.1, ``copy=False`` unless ``--copy``), random actions pre-drawn,
env steps per second. minatar: one ``minatar.Environment(game)`` (sticky actions 0.1, the
package's defaults), ``act`` with random minimal-set actions, ``reset`` when an episode ends
and ``state()`` (the observation, which its gymnasium wrapper builds on every step and every
agent needs), steps per second. Both single-threaded on one core (per core: one process each).
Each game is measured in ``rounds`` pairs (fastsample, then the package, back to back, so both
see the same load on a shared machine): the median rates and the median of the pairs' ratios.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

GAMES = {"breakout": "Breakout", "freeway": "Freeway", "space_invaders": "SpaceInvaders",
         "asterix": "Asterix", "seaquest": "Seaquest"}


def _calibrate(run, seconds: float) -> int:
    """How many ``run(k)`` calls' worth last about ``seconds``."""
    k = 1
    while True:
        t = time.perf_counter()
        run(k)
        dt = time.perf_counter() - t
        if dt > 0.02:
            return max(1, int(k * seconds / dt))
        k *= 4


def _rate(run, k: int) -> float:
    t = time.perf_counter()
    n = run(k)
    return n / (time.perf_counter() - t)


def fastsample_runner(game: str, num_envs: int, copy: bool = False):
    """``(run, close)``: ``run(k)`` takes ``k`` steps of ``num_envs`` envs, returns env steps."""
    import fastsample

    env = fastsample.make_vec(f"MinAtar-{GAMES[game]}-v1", num_envs, seed=0, copy=copy)
    env.reset()
    rng = np.random.default_rng(0)
    pool = [rng.integers(0, env.single_action_space.n, num_envs) for _ in range(16)]
    step = env.step

    def run(k: int) -> int:
        for j in range(k):
            step(pool[j % 16])
        return k * num_envs

    run(50)  # compile, and into mid-game states
    return run, env.close


def minatar_runner(game: str):
    """``(run, close)`` for one ``minatar.Environment``: ``act`` + ``state`` per step, reset when done."""
    from minatar import Environment

    env = Environment(game)
    env.seed(0)
    env.reset()
    actions = env.minimal_action_set()
    rng = np.random.default_rng(0)
    pool = [actions[i] for i in rng.integers(0, len(actions), 4096)]
    act, state, reset = env.act, env.state, env.reset

    def run(k: int) -> int:
        for j in range(k):
            _, done = act(pool[j % 4096])
            if done:
                reset()
            state()
        return k

    run(100)
    return run, lambda: None


def compare(game: str, num_envs: int, seconds: float, rounds: int, copy: bool = False) -> dict:
    """Paired measurements: each round times fastsample, then the package, for about
    ``seconds / rounds / 2`` each, so that both see the same machine load; returns the median
    rates and the median (and range) of the per-round ratios."""
    ours, close_ours = fastsample_runner(game, num_envs, copy)
    ref, close_ref = minatar_runner(game)
    try:
        k_ours = _calibrate(ours, seconds / rounds / 2)
        k_ref = _calibrate(ref, seconds / rounds / 2)
        pairs = [(_rate(ours, k_ours), _rate(ref, k_ref)) for _ in range(rounds)]
    finally:
        close_ours()
        close_ref()
    ratios = sorted(a / b for a, b in pairs)
    return {"fastsample": float(np.median([a for a, _ in pairs])), "minatar": float(np.median([b for _, b in pairs])),
            "ratio": float(np.median(ratios)), "ratio_min": ratios[0], "ratio_max": ratios[-1]}


class PackageVector:
    """``num_envs`` of the ``minatar`` package's ``Environment`` stepped one after another in a
    Python loop, with the interface ``bench.envs.vector_rate`` needs: the package beside
    fastsample in the "Every env" table (it has no vector env of its own). Each step costs
    what a user of the package pays per env: ``act()`` with an agent action (minimal action
    set for ``-v1``, all six for ``-v0``), ``reset()`` when the episode ends, and ``state()``,
    the observation. Package defaults: sticky actions 0.1, difficulty ramping. Observations
    are kept as the package returns them (a list of arrays, no batching copy)."""

    def __init__(self, env_id: str, num_envs: int):
        import gymnasium as gym
        from minatar import Environment

        name, version = env_id.removeprefix("MinAtar-").rsplit("-", 1)
        game = {v: k for k, v in GAMES.items()}[name]
        self.envs = [Environment(game) for _ in range(num_envs)]
        self.num_envs = num_envs
        self.actions = list(self.envs[0].minimal_action_set()) if version == "v1" else list(range(6))
        self.action_space = gym.spaces.MultiDiscrete([len(self.actions)] * num_envs, seed=0)
        self.obs: list = [None] * num_envs
        self.rewards = [0.0] * num_envs
        self.terminations = [False] * num_envs

    def reset(self, *, seed: int | None = None):
        for i, env in enumerate(self.envs):
            if seed is not None:
                env.seed(seed + i)
            env.reset()
            self.obs[i] = env.state()
        return self.obs, {}

    def step(self, actions):
        table, obs, rewards, terms = self.actions, self.obs, self.rewards, self.terminations
        for i, env in enumerate(self.envs):
            reward, done = env.act(table[actions[i]])
            if done:
                env.reset()
            obs[i] = env.state()
            rewards[i] = reward
            terms[i] = done
        return obs, rewards, terms, None, {}

    def close(self) -> None:
        self.envs = []


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-envs", type=int, default=4096)
    parser.add_argument("--seconds", type=float, default=6.0, help="time per game, both sides together")
    parser.add_argument("--rounds", type=int, default=9, help="paired measurements per game")
    parser.add_argument("--games", default=",".join(GAMES))
    parser.add_argument("--copy", action="store_true", help="fastsample returns fresh arrays (gymnasium's default)")
    args = parser.parse_args(argv)
    print(f"{'game':15s} {'fastsample N=' + str(args.num_envs):>18s} {'minatar':>10s} {'ratio':>7s}  (range)")
    for game in args.games.split(","):
        r = compare(game, args.num_envs, args.seconds, args.rounds, args.copy)
        print(f"{game:15s} {r['fastsample']:16,.0f}/s {r['minatar']:8,.0f}/s {r['ratio']:6.0f}x  "
              f"({r['ratio_min']:.0f}-{r['ratio_max']:.0f}x)", flush=True)


if __name__ == "__main__":
    main()


def size_point(game_id: str, num_envs: int, *, seconds: float, rounds: int) -> dict:
    """One row of the bench's MinAtar-by-num_envs table, ``MinAtar-<Game>-v1`` at ``num_envs``:
    fastsample with ``copy=True`` (the Every env table's setting), the package as ``num_envs``
    envs in a Python loop (:class:`PackageVector`, like for like) and as one env (its best per
    step: one env's objects stay in the CPU caches), each round timing the three back to back;
    the median rates and the median (and range) of the rounds' ratios."""
    name = game_id.removeprefix("MinAtar-").rsplit("-", 1)[0]
    game = {v: k for k, v in GAMES.items()}[name]
    ours, close_ours = fastsample_runner(game, num_envs, copy=True)
    one, close_one = minatar_runner(game)
    vec = PackageVector(game_id, num_envs)
    vec.reset(seed=0)
    pool = [vec.action_space.sample() for _ in range(8)]

    def many(k: int) -> int:
        for j in range(k):
            vec.step(pool[j % 8])
        return k * num_envs

    many(1)
    try:
        share = seconds / rounds / 3
        ks = [_calibrate(run, share) for run in (ours, many, one)]
        rates = [[_rate(run, k) for run, k in zip((ours, many, one), ks)] for _ in range(rounds)]
    finally:
        close_ours()
        close_one()
        vec.close()
    out = {"env": game_id, "num_envs": num_envs, "fill_ns": fill_ns(game_id, num_envs)}
    for col, label in ((0, "fastsample"), (1, "package_n"), (2, "package_1")):
        out[label] = float(np.median([r[col] for r in rates]))
    for col, label in ((1, "ratio_n"), (2, "ratio_1")):
        ratios = sorted(r[0] / r[col] for r in rates)
        out[label], out[label + "_min"], out[label + "_max"] = float(np.median(ratios)), ratios[0], ratios[-1]
    return out


def fill_ns(game_id: str, num_envs: int) -> float:
    """ns per env to set a batch of ``num_envs`` observations to False with NumPy (``fill``, a
    memset): the cost of writing the observation bytes alone, which every step pays."""
    import envs_numba

    shape = envs_numba.KERNELS[game_id].observation_space.shape
    obs = np.ones((num_envs, *shape), dtype=np.bool_)
    k = max(20, int(2e6 / num_envs))
    times = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(k):
            obs.fill(False)
        times.append((time.perf_counter() - t) / k / num_envs * 1e9)
    return float(np.median(times))
