"""The ``fastsample`` command line."""

from __future__ import annotations

import argparse
import sys
import time


def _demo(args: argparse.Namespace) -> int:
    """Step every classic-control env in batches and print its throughput."""
    import numpy as np

    import fastsample
    from envs_numba.classic_control import KERNELS

    print(f"fastsample {fastsample.__version__}: stepping {args.num_envs} envs of each classic-control task")
    for kernel in KERNELS:
        t0 = time.perf_counter()
        env = fastsample.make_vec(kernel.id, args.num_envs, seed=0, copy=False)
        env.reset()
        env.action_space.seed(0)
        actions = [env.action_space.sample() for _ in range(16)]
        env.step(actions[0])
        startup = time.perf_counter() - t0
        steps = 0
        episodes = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            for a in actions:
                _, _, term, trunc, _ = env.step(a)
                episodes += int(np.count_nonzero(term | trunc))
            steps += len(actions) * args.num_envs
        rate = steps / (time.perf_counter() - t0)
        print(f"  {kernel.id:26s} {rate / 1e6:8.2f} M steps/s  ({episodes} episodes; start-up incl. JIT {startup:.2f} s)")
        env.close()
    return 0


def _bench(args: argparse.Namespace) -> int:
    try:
        from bench.__main__ import main as bench_main
    except ImportError:
        print("fastsample bench runs from a checkout of the repository (it needs the bench/ folder): "
              "cd into it and run `python -m bench`", file=sys.stderr)
        return 2
    return bench_main(args.bench_args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fastsample", description="Fast batched RL environments and training.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="step every classic-control env and print steps/s")
    demo.add_argument("--num-envs", type=int, default=4096, help="envs per task (default 4096)")
    demo.add_argument("--seconds", type=float, default=1.0, help="how long to step each task (default 1)")
    demo.set_defaults(func=_demo)
    bench = sub.add_parser("bench", help="run the benchmark suite and rewrite RESULTS.md (python -m bench)")
    bench.add_argument("bench_args", nargs=argparse.REMAINDER, help="arguments for python -m bench")
    bench.set_defaults(func=_bench)
    args = parser.parse_args(argv)
    if getattr(args, "num_envs", 1) < 1:
        parser.error("--num-envs must be >= 1")
    if getattr(args, "seconds", 1.0) <= 0:
        parser.error("--seconds must be > 0")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
