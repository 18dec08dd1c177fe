"""Command line: ``fastbce demo``, ``fastbce score`` and ``fastbce bench``."""

# Argument parsing and printing only (the docstring above is the --help text): the work is done in
# fastbce._report (score), fastbce._synthetic (the demo's data) and fastbce.bench.

import argparse
import statistics
import sys
import time

from ._api import bce
from ._backends import BACKENDS, resolve_backend
from ._config import config, format_config
from .bench import add_arguments as add_bench_arguments
from .bench import bench_command
from ._report import PLOT_LINES, Y_PRED_DEFAULTS, Y_TRUE_DEFAULTS, format_report, plot_report, score_file
from ._synthetic import default_data_file, make_default_data
from ._threads import resolve_num_threads


def _timed(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return result, times


def score(args):
    try:
        report = score_file(args.path, y_true=args.y_true, y_pred=args.y_pred, weight=args.weight,
                            group_by=args.group_by, label_cols=args.label_cols,
                            from_logits=args.from_logits, threshold=args.threshold, n_bins=args.bins,
                            auc_bits=args.auc_bits, threads=args.threads, backend=args.backend,
                            batch_rows=args.batch_rows, quiet=args.quiet)
    except (OSError, NotImplementedError) as error:  # unreadable files: bad input, not a crash
        raise ValueError(f"cannot read {args.path}: {error}") from None
    print(format_report(report, args.format))
    if args.plot:
        plot_report(report, args.plot)
    return 0


def demo(args):
    backend = resolve_backend(args.backend)
    threads = resolve_num_threads(args.threads)
    print("Configuration (fastbce.show_config()):")
    print(format_config(config()) + "\n")
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
    path = default_data_file(y_true, y_pred, args.size, args.seed)
    print(f"\nThe same data as a Parquet file, through `fastbce score {path}`:")
    print(format_report(score_file(path, threads=threads, backend=backend), "table"))
    return 0


def _positive(text):
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastbce", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help="score a generated default data set and report speed")
    demo_parser.add_argument("--size", type=int, default=20_000_000, help="number of predictions")
    demo_parser.add_argument("--seed", type=int, default=0)
    demo_parser.add_argument("--repeats", type=int, default=5, help="timed runs after the first")
    demo_parser.add_argument("--backend", default="auto", choices=BACKENDS)
    demo_parser.add_argument("--threads", type=int, default=None, help="default: all cores")
    score_parser = commands.add_parser(
        "score", help="scoring report of a Parquet, CSV, Arrow IPC, .npy or .npz file, read in batches")
    score_parser.add_argument("path", help="data file; the format comes from the suffix")
    score_parser.add_argument("--y-true", help=f"label column (default: the first of {', '.join(Y_TRUE_DEFAULTS)})")
    score_parser.add_argument("--y-pred", help=f"prediction column (default: the first of {', '.join(Y_PRED_DEFAULTS)}); "
                                               "with --label-cols a pattern with one * (default: the label pattern with true → pred)")
    score_parser.add_argument("--from-logits", action="store_true", help="predictions are logits")
    score_parser.add_argument("--weight", help="sample weight column")
    score_parser.add_argument("--group-by", help="report per distinct value of this column (nulls are skipped)")
    score_parser.add_argument("--label-cols", metavar="PATTERN",
                              help="report per label: label columns matching PATTERN, one * for the label's name (e.g. 'y_true_*')")
    score_parser.add_argument("--threshold", type=float, default=0.5,
                              help="probability at or above which a prediction counts as positive (tp, fp, ...)")
    score_parser.add_argument("--bins", type=_positive, default=15, help="equal-width bins of the ECE")
    score_parser.add_argument("--auc-bits", type=int, default=None,
                              help="mantissa bits of the AUC histogram's buckets (default 11, 7 with --group-by; 0: none)")
    score_parser.add_argument("--plot", metavar="PNG",
                              help=f"draw the reliability diagram, ROC and precision-recall curves (needs matplotlib; "
                                   f"per group the {PLOT_LINES} largest)")
    score_parser.add_argument("--format", choices=("table", "json", "csv"), default="table")
    score_parser.add_argument("--threads", type=_positive, default=None, help="default: all cores")
    score_parser.add_argument("--backend", default="auto", choices=BACKENDS)
    score_parser.add_argument("--batch-rows", type=_positive, default=1_000_000, help="rows per batch read")
    score_parser.add_argument("--quiet", action="store_true", help="no progress bar (there is none unless stderr is a terminal)")
    bench_parser = commands.add_parser(
        "bench", help="compare fastbce with NumPy and the frameworks on this machine; "
                      "writes BENCHMARKS.md, BENCHMARKS.png and BENCHMARKS.json")
    add_bench_arguments(bench_parser)  # light: fastbce.bench imports its libraries on use
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    try:
        if args.command == "bench":
            return bench_command(args, argv)
        return score(args) if args.command == "score" else demo(args)
    except (ValueError, TypeError, ImportError) as error:
        print(f"fastbce: error: {error}", file=sys.stderr)
        return 2
