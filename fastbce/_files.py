"""Data files in record batches for ``fastbce score``: Parquet, CSV, Arrow IPC, ``.npy``, ``.npz``.

Parquet is streamed with ``ParquetFile.iter_batches`` (decoding the columns on pyarrow's threads)
and CSV with pyarrow's streaming CSV reader, so memory stays bounded by the batch size whatever
the file size. Arrow IPC files are memory-mapped: their record batches are views of the mapping
(decompressed batch by batch if the file is compressed). ``.npy`` files are memory-mapped too (a
structured array: one column per field); ``.npz`` members are read into memory whole, since NumPy
cannot memory-map inside a zip archive. Batches hold pyarrow Arrays or NumPy views, which the
fastbce API reads without copies.
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

    # pre_buffer (on by default) would read every row group's bytes up front: the whole file
    file = pq.ParquetFile(path, pre_buffer=False)

    def batches(columns, batch_rows):
        for batch in file.iter_batches(batch_size=batch_rows, columns=columns):
            yield {name: batch.column(name) for name in columns}

    return DataFile(file.schema_arrow.names, file.metadata.num_rows, batches)


def _sliced(batches, columns, batch_rows):
    """{column: array} per record batch, cutting batches longer than ``batch_rows`` (zero-copy)."""
    for batch in batches:
        for start in range(0, batch.num_rows, batch_rows):
            part = batch.slice(start, batch_rows)
            yield {name: part.column(name) for name in columns}


def _csv(path):
    _pyarrow()
    from pyarrow import csv

    def batches(columns, batch_rows):
        # a streaming reader: blocks of about 1 MiB are parsed one at a time
        reader = csv.open_csv(path, convert_options=csv.ConvertOptions(include_columns=columns))
        yield from _sliced(reader, columns, batch_rows)

    return DataFile(csv.open_csv(path).schema.names, None, batches)  # the row count needs a full read


def _ipc(path):
    _pyarrow()
    import pyarrow as pa

    # memory-mapped: an uncompressed record batch is a view of the file's pages, read where it lies
    reader = pa.ipc.open_file(pa.memory_map(path))

    def batches(columns, batch_rows):
        record_batches = (reader.get_batch(i).select(columns) for i in range(reader.num_record_batches))
        yield from _sliced(record_batches, columns, batch_rows)

    return DataFile(reader.schema.names, reader.count_rows(), batches)


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
    return {"parquet": _parquet, "csv": _csv, "ipc": _ipc, "npy": _npy, "npz": _npz}[kind](str(path))
