"""Command line: ``fastbce demo``, ``fastbce score`` and ``fastbce bench``."""

import argparse
import csv
import io
import json
import math
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import _backends, _threads
from ._api import bce
from ._files import open_data
from ._score import FIELDS, Accumulator, ScoreResult


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


Y_TRUE_DEFAULTS = ("y_true", "label", "target", "y")
Y_PRED_DEFAULTS = ("y_pred", "prediction", "pred", "probability", "score", "logit")


def _column(columns, name, option, defaults=()):
    """The column given with ``option``, else the first of ``defaults`` present; ValueError listing
    the available columns when there is none."""
    if name is not None and name in columns:
        return name
    if name is None:
        found = [default for default in defaults if default in columns]
        if found:
            return found[0]
        problem = f"no column for {option} (looked for {', '.join(defaults)}): pass {option} COL"
    else:
        problem = f"no column {name!r} ({option})"
    raise ValueError(f"{problem}; available columns: {', '.join(map(str, columns))}")


def _label_columns(columns, true_pattern, pred_pattern):
    """{label: (y_true column, y_pred column)} for the columns matching ``true_pattern`` (one ``*``,
    the label's name) and their predictions ``pred_pattern`` (default: true → pred in the pattern)."""
    if true_pattern.count("*") != 1:
        raise ValueError(f"--label-cols must be a pattern with one * standing for the label's name, "
                         f"e.g. 'y_true_*'; got {true_pattern!r}")
    pred_pattern = pred_pattern or true_pattern.replace("true", "pred")
    if pred_pattern.count("*") != 1 or pred_pattern == true_pattern:
        raise ValueError(f"with --label-cols, --y-pred must be a pattern with one * standing for the "
                         f"label's name, e.g. 'y_pred_*'; got {pred_pattern!r}")
    regex = re.escape(true_pattern).replace(r"\*", "(.+)")
    labels = {match[1]: (name, pred_pattern.replace("*", match[1]))
              for name in columns if (match := re.fullmatch(regex, name))}
    if not labels:
        raise ValueError(f"no column matches --label-cols {true_pattern!r}; available columns: "
                         f"{', '.join(columns)}")
    for _, pred in labels.values():
        _column(columns, pred, "--y-pred")
    return labels


def _arrow(column):
    """A group column as a pyarrow Array (NumPy columns are converted), dictionaries decoded."""
    import pyarrow as pa

    column = column if isinstance(column, pa.Array) else pa.array(column)
    return column.dictionary_decode() if pa.types.is_dictionary(column.type) else column


def _group_values(data, column, batch_rows):
    """The distinct values of the group column, sorted: one pass over that column alone."""
    import pyarrow as pa
    import pyarrow.compute as pc

    distinct = [pc.unique(_arrow(batch[column])) for batch in data.batches([column], batch_rows)]
    values = pc.unique(pa.concat_arrays(distinct)).drop_null() if distinct else pa.array([])
    if len(values) == 0:
        raise ValueError(f"the --group-by column {column!r} has no values")
    return values.take(pc.sort_indices(values))


@dataclass
class Report:
    """What ``fastbce score`` found: the overall report and, per group or label, a report with one
    entry per ``keys`` item (``per`` is None for an overall report alone)."""

    path: str
    rows: int
    seconds: float
    backend: str
    threads: int
    overall: ScoreResult
    per: ScoreResult = None
    keys: list = None


def score_file(path, *, y_true=None, y_pred=None, weight=None, group_by=None, label_cols=None,
               from_logits=False, threads=None, backend=None, batch_rows=1_000_000, quiet=False):
    """Stream a data file through :class:`fastbce.Accumulator` in batches; returns a :class:`Report`."""
    from tqdm import tqdm

    start = time.perf_counter()
    data = open_data(path)
    if label_cols is not None:
        if group_by is not None or y_true is not None:
            raise ValueError("--label-cols cannot be combined with --group-by or --y-true")
        labels = _label_columns(data.columns, label_cols, y_pred)
    else:
        labels = {None: (_column(data.columns, y_true, "--y-true", Y_TRUE_DEFAULTS),
                         _column(data.columns, y_pred, "--y-pred", Y_PRED_DEFAULTS))}
    weight = weight and _column(data.columns, weight, "--weight")
    group_by = group_by and _column(data.columns, group_by, "--group-by")
    group_values = None if group_by is None else _group_values(data, group_by, batch_rows)
    columns = list(dict.fromkeys([c for pair in labels.values() for c in pair]
                                 + [c for c in (weight, group_by) if c]))
    accumulators, rows = None, 0
    with tqdm(total=data.num_rows, unit=" rows", unit_scale=True, file=sys.stderr,
              disable=quiet or not sys.stderr.isatty()) as bar:
        for batch in data.batches(columns, batch_rows):
            first_y = batch[columns[0]]
            if len(first_y) == 0:
                continue
            if accumulators is None:  # 2-D columns (.npz) are reported per label
                per_label = getattr(first_y, "ndim", 1) == 2 and group_by is None
                accumulators = [Accumulator(from_logits=from_logits, axis=0 if per_label else None,
                                            n_groups=None if group_by is None else len(group_values),
                                            n_threads=threads, backend=backend) for _ in labels]
            groups = None
            if group_by is not None:
                import pyarrow.compute as pc

                groups = pc.index_in(_arrow(batch[group_by]), value_set=group_values)  # null → masked
            for accumulator, (true_column, pred_column) in zip(accumulators, labels.values()):
                accumulator.update(batch[true_column], batch[pred_column],
                                   sample_weight=None if weight is None else batch[weight], groups=groups)
            rows += len(first_y)
            bar.update(len(first_y))
    if accumulators is None:
        raise ValueError(f"{path} has no rows")
    totals = np.concatenate([accumulator.result().totals for accumulator in accumulators])
    per, keys = None, None
    if group_by is not None:
        per, keys = ScoreResult(totals, "group"), group_values.to_pylist()
    elif label_cols is not None:
        per, keys = ScoreResult(totals, "label"), list(labels)
    elif accumulators[0].settings["axis"] == 0:
        per, keys = ScoreResult(totals, "label"), list(range(len(totals)))
    return Report(str(path), rows, time.perf_counter() - start, _backends.resolve_backend(backend),
                  _threads.resolve_num_threads(threads), ScoreResult(totals.sum(axis=0, keepdims=True)),
                  per, keys)


def _records(report):
    """(index name, [(key, {field: value})]): the overall row "(all)" first, then one per slot."""
    def value(number):
        return None if isinstance(number, float) and math.isnan(number) else number

    rows = [("(all)", {name: value(getattr(report.overall, name)) for name in FIELDS})]
    if report.per is not None:
        rows += [(key, {name: value(getattr(report.per, name)[i].item()) for name in FIELDS})
                 for i, key in enumerate(report.keys)]
    return (report.per.index_name if report.per is not None else "slice"), rows


def format_report(report, output_format):
    """The report as a text table, JSON or CSV."""
    index_name, rows = _records(report)
    if output_format == "json":
        document = {"path": report.path, "rows": report.rows, "seconds": round(report.seconds, 6),
                    "backend": report.backend, "threads": report.threads, "overall": rows[0][1]}
        if report.per is not None:
            document[f"per_{index_name}"] = [{index_name: key, **values} for key, values in rows[1:]]
        return json.dumps(document, indent=2)
    if output_format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([index_name, *FIELDS])
        writer.writerows([key, *("nan" if v is None else v for v in values.values())] for key, values in rows)
        return buffer.getvalue().rstrip("\n")
    table = [[index_name, *FIELDS]] + [
        [str(key), *("nan" if v is None else str(v) if isinstance(v, int) else f"{v:.6g}"
                     for v in values.values())] for key, values in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    header = (f"{report.path}: {report.rows:,} rows in {report.seconds:.3f} s "
              f"({report.rows / report.seconds / 1e6:,.1f} M rows/s), "
              f"backend {report.backend}, {report.threads} thread(s)")
    return "\n".join([header] + ["  ".join(cell.rjust(width) if i else cell.ljust(width)
                                           for i, (cell, width) in enumerate(zip(row, widths)))
                                 for row in table])


def score(args):
    try:
        report = score_file(args.path, y_true=args.y_true, y_pred=args.y_pred, weight=args.weight,
                            group_by=args.group_by, label_cols=args.label_cols,
                            from_logits=args.from_logits, threads=args.threads, backend=args.backend,
                            batch_rows=args.batch_rows, quiet=args.quiet)
    except (OSError, NotImplementedError) as error:  # unreadable files: bad input, not a crash
        raise ValueError(f"cannot read {args.path}: {error}") from None
    print(format_report(report, args.format))
    return 0


def _demo_file(y_true, y_pred, size, seed):
    """The default data set as a Parquet file, written once into a cache folder of the temp dir."""
    path = Path(tempfile.gettempdir()) / "fastbce-demo" / f"default-{size}-{seed}.parquet"
    if not path.exists():
        import pyarrow as pa
        import pyarrow.parquet as pq

        path.parent.mkdir(exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        pq.write_table(pa.table({"y_true": y_true, "y_pred": y_pred}), partial)
        os.replace(partial, path)  # atomic: concurrent demos never read a half-written file
    return path


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
    path = _demo_file(y_true, y_pred, args.size, args.seed)
    print(f"\nThe same data as a Parquet file, through `fastbce score {path}`:")
    print(format_report(score_file(path, threads=threads, backend=backend), "table"))
    return 0


def _positive(text):
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


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
    score_parser.add_argument("--format", choices=("table", "json", "csv"), default="table")
    score_parser.add_argument("--threads", type=_positive, default=None, help="default: all cores")
    score_parser.add_argument("--backend", default="auto", choices=_backends.BACKENDS)
    score_parser.add_argument("--batch-rows", type=_positive, default=1_000_000, help="rows per batch read")
    score_parser.add_argument("--quiet", action="store_true", help="no progress bar (there is none unless stderr is a terminal)")
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
        return score(args) if args.command == "score" else demo(args)
    except (ValueError, TypeError, ImportError) as error:
        print(f"fastbce: error: {error}", file=sys.stderr)
        return 2
