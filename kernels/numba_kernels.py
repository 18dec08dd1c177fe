"""Numba backend: one parallel pass computes weighted losses, gradients and partial sums.

Rows are cut into fixed chunks (their size does not depend on the thread count); each chunk is
summed serially in float64 into its own slot of ``sums``, and the caller adds the chunks up in
order, so reductions are bit-identical for any number of threads.
"""

import math

import numba
import numpy as np
from numba import njit, prange

from . import (
    FLAG_GROUP,
    FLAG_LABEL,
    FLAG_NAN,
    FLAG_POS_WEIGHT,
    FLAG_PRED,
    FLAG_WEIGHT,
    MODE_ALL,
    MODE_COLS,
    MODE_GROUPS,
    MODE_ROWS,
    NAN_OMIT,
    NAN_RAISE,
)


@njit(cache=True)
def half_to_double(bits):
    """The value of an IEEE binary16 number given as its 16 bits (Numba has no float16 arithmetic)."""
    h = np.int64(bits)
    exponent = (h >> 10) & 0x1F
    mantissa = h & 0x3FF
    if exponent == 0:
        value = mantissa * 5.960464477539063e-08  # subnormal: mantissa * 2**-24
    elif exponent == 31:
        value = math.inf if mantissa == 0 else math.nan
    else:
        value = math.ldexp(1024.0 + mantissa, exponent - 25)
    return -value if h & 0x8000 else value


@njit(cache=True)
def load(array, i, j, is_half):
    """Element (i, j) as float64; float16 arrays arrive viewed as uint16."""
    if is_half:
        return half_to_double(array[i, j])
    return np.float64(array[i, j])


@njit(cache=True)
def prob_loss_grad(y, p, pos_weight, eps):
    """Loss -(pw·y·log q + (1-y)·log(1-q)) with q = clip(p, eps, 1-eps), and its derivative in p
    (zero where p is clipped)."""
    if math.isnan(p):
        return p, p
    q = min(max(p, eps), 1.0 - eps)
    loss = -(pos_weight * y * math.log(q) + (1.0 - y) * math.log1p(-q))
    grad = (1.0 - y) / (1.0 - q) - pos_weight * y / q if eps <= p <= 1.0 - eps else 0.0
    return loss, grad


@njit(cache=True)
def logit_loss_grad(y, x, pos_weight):
    """Loss pw·y·softplus(-x) + (1-y)·softplus(x), softplus(t) = max(t,0) + log1p(exp(-|t|)), and its
    derivative (1-y)·σ(x) - pw·y·σ(-x). Terms with a zero coefficient are left out, so x = ±inf gives
    the limit instead of 0·inf."""
    if math.isnan(x):
        return x, x
    e = math.exp(-abs(x))
    log_term = math.log1p(e)
    a = pos_weight * y
    b = 1.0 - y
    loss = 0.0
    if a != 0.0:
        loss += a * (max(-x, 0.0) + log_term)
    if b != 0.0:
        loss += b * (max(x, 0.0) + log_term)
    inv = 1.0 / (1.0 + e)
    sigmoid_x = inv if x >= 0.0 else e * inv
    sigmoid_minus_x = e * inv if x >= 0.0 else inv
    return loss, b * sigmoid_x - a * sigmoid_minus_x


@njit(cache=True)
def weighted_element(y, p, w, pos_weight, from_logits, eps, keep, shift, nan_mode):
    """(error bits, weight, weighted loss, weighted gradient) of one unmasked element.
    An element that is not counted (bad or omitted) has weight 0."""
    if math.isnan(y) or math.isnan(p):
        if nan_mode == NAN_RAISE:
            return FLAG_NAN, 0.0, 0.0, 0.0
        if nan_mode == NAN_OMIT:
            return 0, 0.0, 0.0, 0.0
    bad = 0
    if y < 0.0 or y > 1.0:
        bad |= FLAG_LABEL
    if not from_logits and (p < 0.0 or p > 1.0):
        bad |= FLAG_PRED
    if not (0.0 <= w < math.inf):
        bad |= FLAG_WEIGHT
    if not (0.0 <= pos_weight < math.inf):
        bad |= FLAG_POS_WEIGHT
    if bad:
        return bad, 0.0, 0.0, 0.0
    smoothed = y * keep + shift
    if from_logits:
        loss, grad = logit_loss_grad(smoothed, p, pos_weight)
    else:
        loss, grad = prob_loss_grad(smoothed, p, pos_weight, eps)
    return 0, w, w * loss, w * grad


@njit(parallel=True, cache=True, nogil=True)
def _bce_pass(y, p, w, pw, mask, groups, y_half, p_half, from_logits, eps, smoothing, nan_mode,
              mode, rows_per_chunk, sums, loss_out, grad_out, write_loss, write_grad,
              row_scale, col_scale, flags):
    n_rows, n_cols = p.shape
    n_slots = sums.shape[1]
    keep = 1.0 - smoothing
    shift = 0.5 * smoothing
    per_row_scale = row_scale.shape[0] > 1
    per_col_scale = col_scale.shape[0] > 1
    for chunk in prange(flags.shape[0]):
        start = chunk * rows_per_chunk
        stop = min(n_rows, start + rows_per_chunk)
        bad = 0
        chunk_loss = 0.0
        chunk_weight = 0.0
        for i in range(start, stop):
            slot = 0
            if mode == MODE_GROUPS:
                slot = groups[i]
                if slot < 0 or slot >= n_slots:
                    bad |= FLAG_GROUP
                    continue
            r_scale = row_scale[i] if per_row_scale else row_scale[0]
            row_loss = 0.0
            row_weight = 0.0
            for j in range(n_cols):
                weight = 0.0
                loss = 0.0
                grad = 0.0
                if mask[i, j]:
                    bits, weight, loss, grad = weighted_element(
                        load(y, i, j, y_half), load(p, i, j, p_half), np.float64(w[i, j]),
                        np.float64(pw[i, j]), from_logits, eps, keep, shift, nan_mode)
                    bad |= bits
                row_loss += loss
                row_weight += weight
                if mode == MODE_COLS:
                    sums[chunk, j, 0] += loss
                    sums[chunk, j, 1] += weight
                if write_loss:
                    loss_out[i, j] = loss
                if write_grad:
                    c_scale = col_scale[j] if per_col_scale else col_scale[0]
                    grad_out[i, j] = grad * r_scale * c_scale
            if mode == MODE_ROWS:
                sums[0, i, 0] = row_loss
                sums[0, i, 1] = row_weight
            elif mode == MODE_GROUPS:
                sums[chunk, slot, 0] += row_loss
                sums[chunk, slot, 1] += row_weight
            elif mode == MODE_ALL:
                chunk_loss += row_loss
                chunk_weight += row_weight
        if mode == MODE_ALL:
            sums[chunk, 0, 0] = chunk_loss
            sums[chunk, 0, 1] = chunk_weight
        flags[chunk] = bad


def bce_pass(y, p, w, pw, mask, groups, y_half, p_half, from_logits, eps, smoothing, nan_mode,
             mode, rows_per_chunk, sums, loss_out, grad_out, row_scale, col_scale, flags, n_threads):
    """Run the pass on ``n_threads`` threads; ``loss_out``/``grad_out`` may be None (not wanted)."""
    out_dtype = np.float64 if p.dtype == np.float64 else np.float32
    placeholder = np.empty((1, 1), out_dtype)  # same type as a real output: no extra compilation
    numba.set_num_threads(n_threads)  # thread-local in Numba: concurrent callers do not interfere
    _bce_pass(y, p, w, pw, mask, groups, y_half, p_half, from_logits, eps, smoothing, nan_mode,
              mode, rows_per_chunk, sums,
              placeholder if loss_out is None else loss_out,
              placeholder if grad_out is None else grad_out,
              loss_out is not None, grad_out is not None, row_scale, col_scale, flags)
