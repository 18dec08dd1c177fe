"""Benchmarks: fastbce against NumPy and the ML frameworks, measured side by side on this machine.

Everything the two benchmark front ends share, defined once:

- :mod:`.operations`: the **operations** (:data:`OPERATIONS`) and their input data (:func:`make_data`);
- :mod:`.contenders`: the **contenders** (:data:`CONTENDERS`), each library's way of computing
  the same thing;
- :mod:`.ceiling`: the **ceiling**, a streaming read of the same inputs (read + write for
  gradients) with a Numba ``prange`` loop, the memory-bandwidth limit that no BCE kernel can beat
  (:func:`make_ceiling`);
- :mod:`.runner`: timing, memory, how a **thread count** is set the same way for everyone
  (:func:`thread_environment`, :func:`apply_threads`), and the worker processes of :func:`run`;
- :mod:`.report`: ``BENCHMARKS.md``, the PNG plot and the raw results as JSON.

``fastbce bench`` (:func:`main`, :func:`bench_command`) measures each contender in fresh worker
processes, one per contender and thread count. The pytest-benchmark suite in ``benchmarks/``
times the same callables in-process.

Nothing here asserts a speed: it measures and reports.
"""

import argparse
import shlex
import sys

from .._threads import available_cores
from .ceiling import ceiling_label, make_ceiling
from .contenders import CONTENDERS, EPS, Contender, Unsupported, reference_name
from .operations import (
    FIRST_CALL_SIZE,
    FOCAL_ALPHA,
    FOCAL_GAMMA,
    MEASURED_OPS,
    N_GROUPS,
    N_LABELS,
    OPERATIONS,
    BenchData,
    Operation,
    input_bytes,
    make_data,
)
from .report import Results, markdown_report, plot, write_outputs
from .runner import (
    MODES,
    apply_threads,
    machine_info,
    peak_extra_memory,
    run,
    thread_environment,
    time_call,
)

__all__ = [
    "OPERATIONS", "MEASURED_OPS", "Operation", "make_data", "BenchData", "input_bytes", "N_LABELS",
    "N_GROUPS", "FIRST_CALL_SIZE", "FOCAL_GAMMA", "FOCAL_ALPHA", "EPS", "Contender", "CONTENDERS",
    "Unsupported", "reference_name", "make_ceiling", "ceiling_label", "MODES", "thread_environment",
    "apply_threads", "time_call", "peak_extra_memory", "machine_info", "run", "Results",
    "markdown_report", "plot", "write_outputs", "add_arguments", "bench_command", "main",
]


def add_arguments(parser):
    """The options of ``fastbce bench`` (and ``python -m fastbce.bench``)."""
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="about a minute: sizes up to 1e6")
    size.add_argument("--full", action="store_true", help="sizes up to 1e8 (long; needs ~10 GB of memory)")
    parser.add_argument("--output-dir", default=".", help="where BENCHMARKS.md/.png/.json go (default: .)")
    parser.add_argument("--sizes", type=int, nargs="+", help="override the sizes (multiples of 100)")
    parser.add_argument("--ops", nargs="+", choices=MEASURED_OPS, help="operations (default: all)")
    parser.add_argument("--contenders", nargs="+", choices=tuple(CONTENDERS), help="default: all installed")
    parser.add_argument("--threads", type=int, nargs="+", help="thread counts (default: 1 and all cores)")
    parser.add_argument("--budget", type=float, help="seconds of timing per measurement")
    parser.add_argument("--memory-size", type=int, help="elements for the memory measurement (0: skip)")
    parser.add_argument("--no-cold-cache", action="store_true",
                        help="skip the fastbce first call with an empty Numba cache")
    parser.add_argument("--cold-ops", nargs="+", choices=MEASURED_OPS,
                        help="operations whose first Numba call is timed with an empty cache, each "
                             "in a fresh process (default: mean, grad, focal; --quick: mean)")


def bench_command(args, argv):
    """Run ``fastbce bench`` with parsed ``args``; ``argv`` is echoed in the report as the command."""
    mode = "quick" if args.quick else "full" if args.full else "default"
    settings = dict(MODES[mode])
    cores = available_cores()
    threads = sorted(set(args.threads or (1, cores)))
    if any(t < 1 or t > cores for t in threads):
        raise ValueError(f"thread counts must lie in [1, {cores}], got {threads}")
    sizes = sorted(set(args.sizes or settings["sizes"]))
    if args.budget is not None:
        settings["budget"] = args.budget
    memory_size = settings["memory_size"] if args.memory_size is None else args.memory_size
    run(sizes=sizes, ops=list(args.ops or MEASURED_OPS),
        contenders=list(args.contenders or CONTENDERS), threads=threads,
        budget=settings["budget"], min_repeats=settings["min_repeats"],
        memory_size=memory_size or None, output_dir=args.output_dir,
        command=shlex.join(["fastbce", *argv]), cold_cache=not args.no_cold_cache, mode=mode,
        cold_ops=tuple(args.cold_ops or (("mean",) if args.quick else ("mean", "grad", "focal"))))
    return 0


def main(argv=None):
    """``python -m fastbce.bench [options]``: the same as ``fastbce bench``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="fastbce bench", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return bench_command(parser.parse_args(argv), ["bench", *argv])
