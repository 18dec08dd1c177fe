"""Command line: ``fastbce demo`` and ``fastbce bench`` (later issues add more commands)."""

import argparse
import statistics
import sys
import time

import numpy as np

from . import _backends, _threads
from ._api import bce


def make_default_data(n, seed=0):
    """A default data set: ``n`` float32 predictions of a noisy but informative model, uint8 labels.

    True logits z ~ N(0, 2²); labels y ~ Bernoulli(σ(z)); predictions σ(z + N(0, 1)).
    """
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, n).astype(np.float32)
    y_true = (rng.random(n, dtype=np.float32) < 1.0 / (1.0 + np.exp(-z))).astype(np.uint8)
    z += rng.normal(0.0, 1.0, n).astype(np.float32)
    y_pred = 1.0 / (1.0 + np.exp(-z))
    return y_true, y_pred


def _timed(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return result, times


def demo(args):
    backend = _backends.resolve_backend(args.backend)
    threads = _threads.resolve_num_threads(args.threads)
    print(f"Generating the default data set: {args.size:,} float32 predictions, uint8 labels (seed {args.seed})")
    y_true, y_pred = make_default_data(args.size, args.seed)

    def run():
        return bce(y_true, y_pred, backend=backend, n_threads=threads)

    loss, first = _timed(run, 1)
    loss, times = _timed(run, args.repeats)
    median = statistics.median(times)
    print(f"backend          {backend}, {threads} thread(s)")
    print(f"mean BCE         {loss:.10f}")
    print(f"first call       {first[0]:.3f} s (includes loading or compiling the kernel)")
    print(f"median of {args.repeats}      {median:.4f} s = {args.size / median / 1e6:,.0f} M predictions/s")
    return 0


def _add_bench_arguments(parser):
    from .bench import add_arguments  # light: the heavy imports of fastbce.bench happen on use

    add_arguments(parser)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastbce", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help="score a generated default data set and report speed")
    demo_parser.add_argument("--size", type=int, default=20_000_000, help="number of predictions")
    demo_parser.add_argument("--seed", type=int, default=0)
    demo_parser.add_argument("--repeats", type=int, default=5, help="timed runs after the first")
    demo_parser.add_argument("--backend", default="auto", choices=_backends.BACKENDS)
    demo_parser.add_argument("--threads", type=int, default=None, help="default: all cores")
    bench_parser = commands.add_parser(
        "bench", help="compare fastbce with NumPy and the frameworks on this machine; "
                      "writes BENCHMARKS.md, BENCHMARKS.png and BENCHMARKS.json")
    _add_bench_arguments(bench_parser)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    try:
        if args.command == "bench":
            from .bench import bench_command

            return bench_command(args, argv)
        return demo(args)
    except (ValueError, TypeError, ImportError) as error:
        print(f"fastbce: error: {error}", file=sys.stderr)
        return 2
