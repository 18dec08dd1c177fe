"""``fastbce score`` without the command line: stream a data file into a report, format it.

:func:`score_file` reads the file in batches into :class:`fastbce.Accumulator` objects (one per
label with ``--label-cols``), for the overall report and one per group or label;
:func:`format_report` turns the :class:`Report` into a text table, JSON or CSV.
"""

import csv
import io
import json
import math
import re
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ._backends import resolve_backend
from ._files import open_data
from ._histogram import N_BINS
from ._score import FIELDS, Accumulator, ScoreResult, result_of
from ._threads import resolve_num_threads

# The columns looked for, in this order, when --y-true or --y-pred is not given.
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
               from_logits=False, threshold=0.5, n_bins=N_BINS, auc_bits=None, threads=None,
               backend=None, batch_rows=1_000_000, quiet=False):
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
    # Each batch is scored on one thread, up to `workers` batches side by side, while this thread
    # reads the next ones (pyarrow decodes on its own threads): reading and scoring overlap, and no
    # kernel waits at a barrier for a thread the reader holds. The batches' sums are added in file
    # order, the additions of a single Accumulator fed batch by batch. A file of one batch gets the
    # kernel's threads instead.
    workers = resolve_num_threads(threads)
    kernel_threads = threads if data.num_rows is not None and data.num_rows <= batch_rows else 1
    accumulators, rows = None, 0

    def score_batch(batch):
        """(one accumulator per label, rows) of a batch; (None, 0) for an empty batch."""
        first_y = batch[columns[0]]
        if len(first_y) == 0:
            return None, 0
        per_label = getattr(first_y, "ndim", 1) == 2 and group_by is None  # 2-D columns (.npz)
        scored = [Accumulator(from_logits=from_logits, axis=0 if per_label else None,
                              n_groups=None if group_by is None else len(group_values),
                              threshold=threshold, n_bins=n_bins, auc_bits=auc_bits,
                              n_threads=kernel_threads, backend=backend) for _ in labels]
        groups = None
        if group_by is not None:
            import pyarrow.compute as pc

            groups = pc.index_in(_arrow(batch[group_by]), value_set=group_values)  # null → masked
        for accumulator, (true_column, pred_column) in zip(scored, labels.values()):
            accumulator.update(batch[true_column], batch[pred_column],
                               sample_weight=None if weight is None else batch[weight], groups=groups)
        return scored, len(first_y)

    def batches():
        """The file's batches, then the reading error if there is one: it is raised in file order,
        after the errors of the batches read before it."""
        try:
            yield from data.batches(columns, batch_rows)
        except Exception as error:
            yield error

    def add(item):
        nonlocal accumulators, rows
        if isinstance(item, Exception):
            raise item
        scored, n = item.result()
        if scored is None:
            return
        if accumulators is None:
            accumulators = scored
        else:
            for accumulator, batch_accumulator in zip(accumulators, scored):
                accumulator.merge(batch_accumulator)
        rows += n
        bar.update(n)

    pool, pending = ThreadPoolExecutor(workers, thread_name_prefix="fastbce-score"), deque()
    try:
        with tqdm(total=data.num_rows, unit=" rows", unit_scale=True, file=sys.stderr,
                  disable=quiet or not sys.stderr.isatty()) as bar:
            for batch in batches():
                pending.append(batch if isinstance(batch, Exception) else pool.submit(score_batch, batch))
                if len(pending) > workers:
                    add(pending.popleft())
            while pending:
                add(pending.popleft())
    finally:  # on an error: the batches not started are dropped, those started finish
        pool.shutdown(cancel_futures=True)
    if accumulators is None:
        raise ValueError(f"{path} has no rows")
    # the slots of every accumulator side by side; their sums are the overall report's
    results = [accumulator.result() for accumulator in accumulators]
    state = [None if results[0].hist is None else np.concatenate([r.hist for r in results])]
    state = [np.concatenate([r.totals for r in results]), *state, np.concatenate([r.extra for r in results])]
    per, keys = None, None
    if group_by is not None:
        per, keys = result_of(state, n_bins, "group"), group_values.to_pylist()
    elif label_cols is not None:
        per, keys = result_of(state, n_bins, "label"), list(labels)
    elif accumulators[0].settings["axis"] == 0:
        per, keys = result_of(state, n_bins, "label"), list(range(len(state[0])))
    overall = result_of([None if a is None else a.sum(axis=0, keepdims=True) for a in state], n_bins)
    return Report(str(path), rows, time.perf_counter() - start, resolve_backend(backend),
                  resolve_num_threads(threads), overall, per, keys)


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


# Per group or label, the plot draws the slices of largest weight, at most this many.
PLOT_LINES = 8


def _curves(hist, extra, n_bins):
    """(ROC (fpr, tpr), PR (recall, precision), reliability (mean prediction, positive rate)) of
    one slot: the curves through the histogram's buckets, from the top."""
    pos, neg = hist[::-1, 0], hist[::-1, 1]
    kept = (pos + neg) > 0
    tp, fp = np.cumsum(pos[kept]), np.cumsum(neg[kept])
    with np.errstate(invalid="ignore", divide="ignore"):
        roc = (np.concatenate(([0.0], fp / fp[-1])), np.concatenate(([0.0], tp / tp[-1])))
        pr = (tp / tp[-1], tp / (tp + fp))
        bins = extra[4:].reshape(n_bins, 3)
        filled = bins[:, 0] > 0
        reliability = (bins[filled, 2] / bins[filled, 0], bins[filled, 1] / bins[filled, 0])
    return roc, pr, reliability


def plot_report(report, path):
    """Reliability diagram, ROC and precision-recall curves of a report (from its histograms),
    overall and per group or label (the PLOT_LINES slices of largest weight), saved to ``path``."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("--plot needs matplotlib: pip install 'fastbce[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if report.overall.hist is None:
        raise ValueError("--plot needs the AUC histogram: leave --auc-bits above 0")
    n_bins = (report.overall.extra.shape[1] - 4) // 3
    slices = [("all", report.overall.hist[0], report.overall.extra[0])]
    if report.per is not None:
        order = np.argsort(-report.per.totals[:, 1], kind="stable")[:PLOT_LINES]
        slices += [(str(report.keys[i]), report.per.hist[i], report.per.extra[i]) for i in order
                   if report.per.totals[i, 1] > 0]
    figure, (reliability, roc, pr) = plt.subplots(1, 3, figsize=(15, 4.8))
    for k, (name, hist, extra) in enumerate(slices):
        style = dict(color="black", linewidth=2) if k == 0 else dict(linewidth=1)
        (fpr, tpr), (recall, precision), (mean_pred, pos_rate) = _curves(hist, extra, n_bins)
        reliability.plot(mean_pred, pos_rate, marker="o", markersize=3, label=name, **style)
        roc.plot(fpr, tpr, label=name, **style)
        pr.plot(recall, precision, label=name, **style)
    reliability.plot([0, 1], [0, 1], color="grey", linestyle=":")
    roc.plot([0, 1], [0, 1], color="grey", linestyle=":")
    overall = report.overall
    reliability.set(title=f"Reliability ({n_bins} bins, ECE {overall.ece:.4g})",
                    xlabel="mean prediction", ylabel="positive rate")
    roc.set(title=f"ROC (AUC {overall.roc_auc:.4f})", xlabel="false positive rate",
            ylabel="true positive rate")
    pr.set(title=f"Precision-recall (AP {overall.average_precision:.4f})", xlabel="recall",
           ylabel="precision")
    for axes in (reliability, roc, pr):
        axes.grid(alpha=0.3)
    pr.legend(fontsize="small", title=None if report.per is None else report.per.index_name)
    figure.suptitle(report.path)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
