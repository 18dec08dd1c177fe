"""Data files in record batches for ``fastbce score``: Parquet, CSV, Arrow IPC, ``.npy``, ``.npz``.

Parquet is streamed with ``ParquetFile.iter_batches`` and CSV / Arrow IPC with pyarrow's dataset
scanner, so memory stays bounded by the batch size whatever the file size. ``.npy`` files are
memory-mapped (a structured array: one column per field); ``.npz`` members are read into memory
whole, since NumPy cannot memory-map inside a zip archive. Batches hold pyarrow Arrays or NumPy
views, which the fastbce API reads without copies.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".arrow": "ipc",
            ".feather": "ipc", ".ipc": "ipc", ".npy": "npy", ".npz": "npz"}


@dataclass
class DataFile:
    """An opened data file: its column names, its row count (None if unknown without reading it
    all, as for CSV) and ``batches(columns, batch_rows)``, an iterator of {column: array}."""

    columns: list
    num_rows: Optional[int]
    batches: Callable


def _pyarrow():
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ImportError("reading Parquet, CSV and Arrow files needs pyarrow: "
                          "pip install 'fastbce[io]'") from None


def _parquet(path):
    _pyarrow()
    import pyarrow.parquet as pq

    file = pq.ParquetFile(path)

    def batches(columns, batch_rows):
        for batch in file.iter_batches(batch_size=batch_rows, columns=columns):
            yield {name: batch.column(name) for name in columns}

    return DataFile(file.schema_arrow.names, file.metadata.num_rows, batches)


def _dataset(path, file_format):
    _pyarrow()
    import pyarrow.dataset as ds

    dataset = ds.dataset(path, format=file_format)

    def batches(columns, batch_rows):
        for batch in dataset.to_batches(columns=columns, batch_size=batch_rows):
            yield {name: batch.column(name) for name in columns}

    # an IPC file knows its row count from its footer; a CSV file would have to be read
    return DataFile(dataset.schema.names, dataset.count_rows() if file_format == "ipc" else None, batches)


def _numpy(arrays):
    """A DataFile over named NumPy arrays (or memory-mapped fields) of equal length."""
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"the arrays have different lengths: {lengths}")
    num_rows = next(iter(lengths.values()), 0)

    def batches(columns, batch_rows):
        for start in range(0, num_rows, batch_rows):
            yield {name: arrays[name][start:start + batch_rows] for name in columns}

    return DataFile(list(arrays), num_rows, batches)


def _npy(path):
    array = np.load(path, mmap_mode="r")
    if array.dtype.names is None:
        raise ValueError(f"{path} holds a plain {array.dtype} array of shape {array.shape}; fastbce "
                         "score reads a structured .npy array (one field per column) or a .npz "
                         "archive (one array per column)")
    return _numpy({name: array[name] for name in array.dtype.names})


def _npz(path):
    with np.load(path) as archive:
        return _numpy({name: archive[name] for name in archive.files})


def open_data(path):
    """Open a data file by its suffix; ValueError for a missing file or an unknown suffix."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"cannot tell the format of {path}: expected one of the suffixes "
                         f"{', '.join(SUFFIXES)}")
    if kind in ("csv", "ipc"):
        return _dataset(str(path), kind)
    return {"parquet": _parquet, "npy": _npy, "npz": _npz}[kind](str(path))
