"""Numba histogram pass: the twin of kernels/c/histogram.h (same functions, same order).

Per slot, over the rows of one chunk: the histogram (Σw·y, Σw·(1-y)) over buckets of the
prediction, and the extra sums (NaN count, Σw·(q-y)², Σw·y and Σw·(1-y) at or above the cut,
Σw, Σw·y, Σw·q per calibration bin). ``hist_pass`` runs the chunks in parallel.
"""

import math

import numba
import numpy as np
from numba import njit, prange

from .. import HIST_EXTRA, MODE_COLS, MODE_GROUPS
from .dispatch import read_only
from .llvm import INLINE, JIT, bits_f32

HIST_LOW = 0x33800000  # bits of 2^-24 (kernels/c/histogram.h: FB_HIST_LOW)


@njit(**INLINE)
def bucket(v, high, shift, top):
    """The bucket of a prediction with v = min(q, 1-q): monotone in the prediction."""
    b = bits_f32(np.float32(v))
    k = np.int64(0) if b < HIST_LOW else np.int64((b - HIST_LOW) >> shift)
    return 2 * top + 1 - k if high else k


@njit(**JIT)
def hist_chunk(p, y, w, mask, groups, mode, logits, omit_nan, cut, shift, top, n_buckets,
               n_bins, r0, r1, hist, extra):
    """The rows [r0, r1) into this chunk's hist (n_slots, n_buckets, 2) and extra (n_slots, n_extra)."""
    for i in range(r0, r1):
        for j in range(p.shape[1]):
            if not mask[i, j]:
                continue
            x = np.float64(p[i, j])
            yv = np.float64(y[i, j])
            wv = np.float64(w[i, j])
            slot = groups[i] if mode == MODE_GROUPS else (j if mode == MODE_COLS else 0)
            if math.isnan(x) or math.isnan(yv):
                if not omit_nan:
                    extra[slot, 0] += 1.0
                continue
            if logits:
                t = math.exp(-abs(x))
                v = t / (1.0 + t)
                high = x >= 0.0
                q = 1.0 / (1.0 + t) if high else v
            else:
                q = x
                high = q >= 0.5
                v = 1.0 - q if high else q
            wy = wv * yv
            wn = wv - wy
            if n_buckets:
                b = bucket(v, high, shift, top)
                hist[slot, b, 0] += wy
                hist[slot, b, 1] += wn
            d = q - yv
            extra[slot, 1] += wv * d * d
            if x >= cut:
                extra[slot, 2] += wy
                extra[slot, 3] += wn
            k = np.int64(q * np.float64(n_bins))
            k = k if k < n_bins else n_bins - 1
            extra[slot, HIST_EXTRA + 3 * k] += wv
            extra[slot, HIST_EXTRA + 3 * k + 1] += wy
            extra[slot, HIST_EXTRA + 3 * k + 2] += wv * q


@njit(parallel=True, **JIT)
def _hist_pass(p, y, w, mask, groups, mode, logits, omit_nan, cut, shift, top, n_buckets, n_bins,
               rows, hist, extra):
    n = p.shape[0]
    for c in prange(extra.shape[0]):
        hist_chunk(p, y, w, mask, groups, mode, logits, omit_nan, cut, shift, top, n_buckets,
                   n_bins, c * rows, min(n, (c + 1) * rows), hist[c], extra[c])


def hist_pass(p, y, w, mask, groups, hist, extra, options, n_threads):
    """Same contract as the Cython ``hist_pass`` (fastbce/_histogram.py); options: a
    kernels.HistOptions. hist is (n_chunks, n_slots, n_buckets or 1, 2), extra
    (n_chunks, n_slots, n_extra), both zeroed."""
    numba.set_num_threads(min(n_threads, numba.config.NUMBA_NUM_THREADS))
    o = options
    p, y, w, mask, groups = read_only(p, y, w, mask, groups)
    _hist_pass(p, y, w, mask, groups, int(o.mode), bool(o.logits), bool(o.omit_nan),
               float(o.cut), int(o.shift), int(o.top), int(o.n_buckets), int(o.n_bins),
               int(o.rows_per_chunk), hist, extra)
