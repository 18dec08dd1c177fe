# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Cython/OpenMP backend: the same pass as kernels/numba_kernels.py, compiled ahead of time.

Rows are cut into fixed chunks (independent of the thread count); each chunk is summed serially in
float64 into its own slot of ``sums`` and the caller adds the chunks in order, so reductions are
bit-identical for any number of threads. The loop runs without the GIL.
"""

import numpy as np

from libc.math cimport NAN, INFINITY, exp, fabs, isnan, ldexp, log, log1p
from libc.stdint cimport int8_t, uint8_t, uint16_t
from cython.parallel cimport prange

# The codes of kernels/__init__.py (tests/test_backends.py checks that they agree).
cdef enum:
    MODE_ALL = 0
    MODE_ROWS = 1
    MODE_COLS = 2
    MODE_GROUPS = 3
    NAN_RAISE = 1
    NAN_OMIT = 2
    FLAG_LABEL = 1
    FLAG_PRED = 2
    FLAG_NAN = 4
    FLAG_WEIGHT = 8
    FLAG_POS_WEIGHT = 16
    FLAG_GROUP = 32

CODES = dict(MODE_ALL=MODE_ALL, MODE_ROWS=MODE_ROWS, MODE_COLS=MODE_COLS, MODE_GROUPS=MODE_GROUPS,
             NAN_RAISE=NAN_RAISE, NAN_OMIT=NAN_OMIT, FLAG_LABEL=FLAG_LABEL, FLAG_PRED=FLAG_PRED,
             FLAG_NAN=FLAG_NAN, FLAG_WEIGHT=FLAG_WEIGHT, FLAG_POS_WEIGHT=FLAG_POS_WEIGHT,
             FLAG_GROUP=FLAG_GROUP)

# Labels: bool arrives as uint8, float16 as uint16 (its bits, decoded when is_half).
ctypedef fused label_t:
    uint8_t
    int8_t
    uint16_t
    float
    double

# Predictions: float16 (as uint16 bits), float32, float64.
ctypedef fused pred_t:
    uint16_t
    float
    double

ctypedef fused weight_t:
    float
    double

# Element outputs: float32, or float64 for float64 predictions.
ctypedef fused out_t:
    float
    double


cdef inline double half_to_double(uint16_t bits) noexcept nogil:
    """The value of an IEEE binary16 number given as its 16 bits."""
    cdef int exponent = (bits >> 10) & 0x1F
    cdef int mantissa = bits & 0x3FF
    cdef double value
    if exponent == 0:
        value = mantissa * 5.960464477539063e-08  # subnormal: mantissa * 2**-24
    elif exponent == 31:
        value = INFINITY if mantissa == 0 else NAN
    else:
        value = ldexp(1024.0 + mantissa, exponent - 25)
    return -value if bits & 0x8000 else value


cdef inline double as_double(label_t value, bint is_half) noexcept nogil:
    if label_t is uint16_t:
        if is_half:
            return half_to_double(value)
    return <double>value


cdef inline (double, double) prob_loss_grad(double y, double p, double pos_weight, double eps) noexcept nogil:
    """Loss -(pw·y·log q + (1-y)·log(1-q)), q = clip(p, eps, 1-eps), and d/dp (0 where clipped)."""
    if isnan(p):
        return p, p
    cdef double q = min(max(p, eps), 1.0 - eps)
    cdef double loss = -(pos_weight * y * log(q) + (1.0 - y) * log1p(-q))
    cdef double grad = 0.0
    if eps <= p <= 1.0 - eps:
        grad = (1.0 - y) / (1.0 - q) - pos_weight * y / q
    return loss, grad


cdef inline (double, double) logit_loss_grad(double y, double x, double pos_weight) noexcept nogil:
    """Loss pw·y·softplus(-x) + (1-y)·softplus(x) and d/dx = (1-y)·σ(x) - pw·y·σ(-x); terms with
    a zero coefficient are left out so that x = ±inf gives the limit."""
    if isnan(x):
        return x, x
    cdef double e = exp(-fabs(x))
    cdef double log_term = log1p(e)
    cdef double a = pos_weight * y
    cdef double b = 1.0 - y
    cdef double loss = 0.0
    if a != 0.0:
        loss = loss + a * (max(-x, 0.0) + log_term)
    if b != 0.0:
        loss = loss + b * (max(x, 0.0) + log_term)
    cdef double inv = 1.0 / (1.0 + e)
    cdef double sigmoid_x = inv if x >= 0.0 else e * inv
    cdef double sigmoid_minus_x = e * inv if x >= 0.0 else inv
    return loss, b * sigmoid_x - a * sigmoid_minus_x


cdef inline (int, double, double, double) weighted_element(
        double y, double p, double w, double pos_weight, bint from_logits, double eps,
        double keep, double shift, int nan_mode) noexcept nogil:
    """(error bits, weight, weighted loss, weighted gradient) of one unmasked element."""
    cdef int bad = 0
    cdef double loss, grad
    if isnan(y) or isnan(p):
        if nan_mode == NAN_RAISE:
            return FLAG_NAN, 0.0, 0.0, 0.0
        if nan_mode == NAN_OMIT:
            return 0, 0.0, 0.0, 0.0
    if y < 0.0 or y > 1.0:
        bad = bad | FLAG_LABEL
    if not from_logits and (p < 0.0 or p > 1.0):
        bad = bad | FLAG_PRED
    if not (0.0 <= w < INFINITY):
        bad = bad | FLAG_WEIGHT
    if not (0.0 <= pos_weight < INFINITY):
        bad = bad | FLAG_POS_WEIGHT
    if bad:
        return bad, 0.0, 0.0, 0.0
    y = y * keep + shift
    if from_logits:
        loss, grad = logit_loss_grad(y, p, pos_weight)
    else:
        loss, grad = prob_loss_grad(y, p, pos_weight, eps)
    return 0, w, w * loss, w * grad


cdef int run_chunk(
        const label_t[:, :] y, const pred_t[:, :] p, const weight_t[:, :] w,
        const weight_t[:, :] pw, const uint8_t[:, :] mask, const Py_ssize_t[:] groups,
        bint y_half, bint p_half, bint from_logits, double eps, double smoothing, int nan_mode,
        int mode, Py_ssize_t start, Py_ssize_t stop, double[:, :, :] sums, Py_ssize_t k,
        out_t[:, :] loss_out, out_t[:, :] grad_out, bint write_loss, bint write_grad,
        const double[:] row_scale, const double[:] col_scale) noexcept nogil:
    """Rows [start, stop) into ``sums[k]``; returns the error bits."""
    cdef Py_ssize_t n_cols = p.shape[1], n_slots = sums.shape[1], i, j, slot
    cdef double keep = 1.0 - smoothing, shift = 0.5 * smoothing
    cdef double row_loss, row_weight, chunk_loss = 0.0, chunk_weight = 0.0
    cdef double weight, loss, grad, r_scale, c_scale
    cdef bint per_row_scale = row_scale.shape[0] > 1, per_col_scale = col_scale.shape[0] > 1
    cdef int bad = 0, bits
    for i in range(start, stop):
        slot = 0
        if mode == MODE_GROUPS:
            slot = groups[i]
            if slot < 0 or slot >= n_slots:
                bad = bad | FLAG_GROUP
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
                    as_double(y[i, j], y_half), as_double(p[i, j], p_half), w[i, j], pw[i, j],
                    from_logits, eps, keep, shift, nan_mode)
                bad = bad | bits
            row_loss = row_loss + loss
            row_weight = row_weight + weight
            if mode == MODE_COLS:
                sums[k, j, 0] += loss
                sums[k, j, 1] += weight
            if write_loss:
                loss_out[i, j] = <out_t>loss
            if write_grad:
                c_scale = col_scale[j] if per_col_scale else col_scale[0]
                grad_out[i, j] = <out_t>(grad * r_scale * c_scale)
        if mode == MODE_ROWS:
            sums[k, i, 0] = row_loss
            sums[k, i, 1] = row_weight
        elif mode == MODE_GROUPS:
            sums[k, slot, 0] += row_loss
            sums[k, slot, 1] += row_weight
        elif mode == MODE_ALL:
            chunk_loss = chunk_loss + row_loss
            chunk_weight = chunk_weight + row_weight
    if mode == MODE_ALL:
        sums[k, 0, 0] = chunk_loss
        sums[k, 0, 1] = chunk_weight
    return bad


def _bce_pass(const label_t[:, :] y, const pred_t[:, :] p, const weight_t[:, :] w,
              const weight_t[:, :] pw, const uint8_t[:, :] mask, const Py_ssize_t[:] groups,
              bint y_half, bint p_half, bint from_logits, double eps, double smoothing,
              int nan_mode, int mode, Py_ssize_t rows_per_chunk, double[:, :, :] sums,
              out_t[:, :] loss_out, out_t[:, :] grad_out, bint write_loss, bint write_grad,
              const double[:] row_scale, const double[:] col_scale, uint8_t[:] flags,
              int n_threads):
    cdef Py_ssize_t chunk, n_chunks = flags.shape[0], n_rows = p.shape[0]
    if out_t is double:
        if pred_t is not double:
            raise TypeError("element outputs are float64 only for float64 predictions")
    elif pred_t is double:
        raise TypeError("element outputs are float64 for float64 predictions")
    for chunk in prange(n_chunks, nogil=True, schedule="static", num_threads=n_threads):
        flags[chunk] = run_chunk(
            y, p, w, pw, mask, groups, y_half, p_half, from_logits, eps, smoothing, nan_mode, mode,
            chunk * rows_per_chunk, min(n_rows, (chunk + 1) * rows_per_chunk),
            sums, 0 if mode == MODE_ROWS else chunk,
            loss_out, grad_out, write_loss, write_grad, row_scale, col_scale)


def _label_operand(y, y_half):
    """Labels in a dtype the kernel takes without a copy; other integer dtypes become float64."""
    if y.dtype == np.bool_:
        return y.view(np.uint8)
    if y_half or y.dtype in (np.uint8, np.int8, np.float32, np.float64):
        return y
    return y.astype(np.float64)


def _same_weight_dtype(w, pw):
    """Both weights as float32 only if both are; a float32 one converts (its distinct values only)."""
    if w.dtype == pw.dtype:
        return w, pw
    def widen(view):
        compact = view[tuple(slice(0, 1) if stride == 0 else slice(None) for stride in view.strides)]
        return np.broadcast_to(compact.astype(np.float64), view.shape)
    return (widen(w) if w.dtype == np.float32 else w), (widen(pw) if pw.dtype == np.float32 else pw)


def bce_pass(y, p, w, pw, mask, groups, y_half, p_half, from_logits, eps, smoothing, nan_mode,
             mode, rows_per_chunk, sums, loss_out, grad_out, row_scale, col_scale, flags, n_threads):
    """Same contract as kernels/numba_kernels.bce_pass; runs with the GIL released."""
    out_dtype = np.float64 if p.dtype == np.float64 else np.float32
    placeholder = np.empty((1, 1), out_dtype)
    w, pw = _same_weight_dtype(w, pw)
    _bce_pass(_label_operand(y, y_half), p, w, pw, mask.view(np.uint8),
              groups.astype(np.intp, copy=False), y_half, p_half, from_logits, eps, smoothing,
              nan_mode, mode, rows_per_chunk, sums,
              placeholder if loss_out is None else loss_out,
              placeholder if grad_out is None else grad_out,
              loss_out is not None, grad_out is not None, row_scale, col_scale, flags, n_threads)
