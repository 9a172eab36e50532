"""MinAtar throughput: fastsample's batched kernels against the ``minatar`` package, same run.

    python -m bench.minatar_compare [--num-envs 4096] [--seconds 2] [--games breakout,freeway]

fastsample: ``make_vec("MinAtar-<Game>-v1", num_envs)`` in this process (NextStep autoreset,
sticky actions 0.1, ``copy=False`` so nothing is copied per step), random actions pre-drawn,
env steps per second. minatar: one ``minatar.Environment(game)`` (sticky actions 0.1, the
package's defaults), ``act`` with random minimal-set actions, ``reset`` when an episode ends
and ``state()`` (the observation, which its gymnasium wrapper builds on every step and every
agent needs), steps per second. Both single-threaded on one core; each rate is the best of three
timed runs of about ``seconds / 3``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

GAMES = {"breakout": "Breakout", "freeway": "Freeway", "space_invaders": "SpaceInvaders",
         "asterix": "Asterix", "seaquest": "Seaquest"}


def _best_rate(run, seconds: float) -> float:
    """Steps/s: ``run(k)`` returns the env steps it took; best of three ~seconds/3 runs."""
    k = 1
    while True:  # calibrate
        t = time.perf_counter()
        n = run(k)
        dt = time.perf_counter() - t
        if dt > 0.05:
            break
        k *= 4
    per_call = dt / k
    k = max(1, int(seconds / 3 / per_call))
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        n = run(k)
        best = max(best, n / (time.perf_counter() - t))
    return best


def fastsample_rate(game: str, num_envs: int, seconds: float) -> float:
    import fastsample

    env = fastsample.make_vec(f"MinAtar-{GAMES[game]}-v1", num_envs, seed=0, copy=False)
    env.reset()
    rng = np.random.default_rng(0)
    pool = [rng.integers(0, env.single_action_space.n, num_envs) for _ in range(16)]
    step = env.step

    def run(k: int) -> int:
        for j in range(k):
            step(pool[j % 16])
        return k * num_envs

    try:
        return _best_rate(run, seconds)
    finally:
        env.close()


def minatar_rate(game: str, seconds: float) -> float:
    from minatar import Environment

    env = Environment(game)
    env.seed(0)
    env.reset()
    actions = env.minimal_action_set()
    rng = np.random.default_rng(0)
    pool = [actions[i] for i in rng.integers(0, len(actions), 4096)]

    state = env.state

    def run(k: int) -> int:
        for j in range(k):
            _, done = env.act(pool[j % 4096])
            if done:
                env.reset()
            state()
        return k

    return _best_rate(run, seconds)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-envs", type=int, default=4096)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    parser.add_argument("--games", default=",".join(GAMES))
    args = parser.parse_args(argv)
    print(f"{'game':15s} {'fastsample N=' + str(args.num_envs):>18s} {'minatar':>10s} {'ratio':>7s}")
    for game in args.games.split(","):
        ours = fastsample_rate(game, args.num_envs, args.seconds)
        ref = minatar_rate(game, args.seconds)
        print(f"{game:15s} {ours:16,.0f}/s {ref:8,.0f}/s {ours / ref:6.0f}x", flush=True)


if __name__ == "__main__":
    main()
