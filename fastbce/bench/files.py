"""The ``file`` operation: a scoring report of a Parquet file (``fastbce score``), against polars,
pyarrow + NumPy and, as its ceiling, pyarrow's ``read_table`` of the same two columns.

The file holds the inputs of :func:`.operations.make_data` as the demo writes them (uint8 labels,
float32 predictions, pyarrow's default row groups): at the demo's size and seed it is the demo's
file. A run of ``fastbce bench`` writes it once per size into the run's temporary folder (named by
the environment variable :data:`DATA_DIR`), which all its workers share; elsewhere each data set
gets its own file in a temporary folder of the process.
"""

import itertools
import os
import tempfile
from pathlib import Path

COLUMNS = ("y_true", "y_pred")
DATA_DIR = "FASTBCE_BENCH_DATA_DIR"
_process_folder = None
_numbers = itertools.count()


def parquet_file(data):
    """The path of a Parquet file holding ``data``'s uint8 labels and float32 predictions."""
    global _process_folder
    import pyarrow as pa
    import pyarrow.parquet as pq

    y, p = data["yu8"], data["p"]
    if os.environ.get(DATA_DIR):  # a run: one seed, so one file per size
        path = Path(os.environ[DATA_DIR]) / f"scores-{p.size}.parquet"
        if path.exists():
            return path
    else:
        if _process_folder is None:  # removed when the process exits
            _process_folder = tempfile.TemporaryDirectory(prefix="fastbce-bench-")
        path = Path(_process_folder.name) / f"scores-{next(_numbers)}.parquet"
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    pq.write_table(pa.table(dict(zip(COLUMNS, (y, p)))), partial)
    os.replace(partial, path)  # atomic: a worker never reads a half-written file
    return path


def read_table(path):
    """The ceiling: pyarrow reads and decodes the two columns (on its threads), nothing else."""
    import pyarrow.parquet as pq

    return lambda: pq.read_table(path, columns=list(COLUMNS))


def polars_query(path, eps):
    """polars' lazy query of (log loss of the clipped predictions, mean label, mean prediction)."""
    import polars as pl

    y, p = pl.col("y_true"), pl.col("y_pred")
    q = p.clip(eps, 1 - eps)
    query = pl.scan_parquet(path).select(log_loss=-(y * q.log() + (1 - y) * (-q).log1p()).mean(),
                                         positive_rate=y.mean(), mean_prediction=p.mean())
    return lambda: query.collect().row(0)


def numpy_formula(path, losses):
    """pyarrow's ``read_table``, then (mean of ``losses(y, p)``, mean label, mean prediction) in NumPy."""
    import numpy as np
    import pyarrow.parquet as pq

    def run():
        table = pq.read_table(path, columns=list(COLUMNS))
        y, p = (table[name].to_numpy() for name in COLUMNS)
        return float(losses(y, p).mean()), float(y.mean()), float(p.mean(dtype=np.float64))
    return run


def fastbce_score(path, threads, backend):
    """The function behind ``fastbce score``, in process: (log loss, mean label, mean prediction)."""
    from .._report import score_file

    def run():
        overall = score_file(path, threads=threads, backend=backend, quiet=True).overall
        return overall.log_loss, overall.positive_rate, overall.mean_prediction
    return run
