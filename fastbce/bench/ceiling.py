"""The ceiling: one streaming pass over an operation's inputs (read + write for gradients).

A Numba ``prange`` loop that only reads the arrays an operation reads is the memory-bandwidth
limit that no BCE kernel can beat; the report gives every contender's speed as a fraction of it.
"""

import functools

import numpy as np

from .._backends import load_backend
from .files import read_table
from .operations import OPERATIONS


@functools.cache
def _ceiling_kernels():
    load_backend("numba")  # same Numba threading layer as fastbce's kernels
    from numba import njit, prange

    @njit(parallel=True, fastmath=True, nogil=True)
    def read2(a, b):
        total = 0.0
        for i in prange(a.shape[0]):
            total += np.float64(a[i]) + np.float64(b[i])
        return total

    @njit(parallel=True, fastmath=True, nogil=True)
    def read3(a, b, c):
        total = 0.0
        for i in prange(a.shape[0]):
            total += np.float64(a[i]) + np.float64(b[i]) + np.float64(c[i])
        return total

    @njit(parallel=True, fastmath=True, nogil=True)
    def read2_write(a, b, out):
        for i in prange(a.shape[0]):
            out[i] = a[i] + b[i]

    @njit(parallel=True, fastmath=True, nogil=True)
    def read2_write2(a, b, out1, out2):
        for i in prange(a.shape[0]):
            out1[i] = a[i] + b[i]
            out2[i] = a[i] - b[i]

    return read2, read3, read2_write, read2_write2


def make_ceiling(op, data, threads):
    """The ceiling of an operation: one parallel pass reading its inputs (and writing one float
    per element for gradients: into a preallocated array, or into a new one per call where the
    operation returns a new array, whose fresh pages the OS zeroes on first touch)."""
    import numba

    if op == "file":
        return read_table(data["parquet"])
    operation = OPERATIONS[op]
    read2, read3, read2_write, read2_write2 = _ceiling_kernels()
    arrays = [data[key].ravel(order="K") for key in operation.inputs]  # views, also of Fortran order
    # Numba reads no float16: the same bytes as uint16
    arrays = [a.view(np.uint16) if a.dtype == np.float16 else a for a in arrays]
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    if operation.new_output and operation.outputs == 2:
        return lambda: read2_write2(arrays[0], arrays[1], np.empty_like(arrays[1]),
                                    np.empty_like(arrays[1]))
    if operation.new_output:
        return lambda: read2_write(arrays[0], arrays[1], np.empty_like(arrays[1]))
    if operation.writes:
        out = np.empty_like(arrays[1])
        return lambda: read2_write(arrays[0], arrays[1], out)
    if len(arrays) == 2:
        return lambda: read2(*arrays)
    return lambda: read3(*arrays)


def ceiling_label(op):
    """What the ceiling of an operation does, for the report."""
    if op == "file":
        return "pyarrow read_table of the 2 columns"
    operation = OPERATIONS[op]
    names = ", ".join(key.rstrip("2") for key in operation.inputs)
    if operation.writes:
        return (f"read {names}, write {operation.outputs} "
                f"{'new array' if operation.new_output else 'preallocated'}{'s' * (operation.outputs > 1)}")
    return f"read {names}"
