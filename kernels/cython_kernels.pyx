# cython: language_level=3, cpow=True, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Cython/OpenMP backend: the general pass (the twin of kernels/numba/general.py, compiled ahead of
time) and the entry of the C fast path (kernels/c/, the twin of kernels/numba/).

Rows are cut into fixed chunks (independent of the thread count); each chunk is summed serially in
float64 into its own slot of ``sums`` and the caller adds the chunks in order, so reductions are
bit-identical for any number of threads. The loop runs without the GIL.
"""

import os

import numpy as np

from libc.math cimport NAN, INFINITY, exp, fabs, isnan, ldexp, log, log1p, pow
from libc.stdint cimport int8_t, uint8_t, uint16_t
from cython.parallel cimport prange

# The codes of kernels/__init__.py, from kernels/c/codes.h (tests/test_codes.py checks them).
cdef extern from "c/codes.h":
    enum:
        FB_MODE_ALL
        FB_MODE_ROWS
        FB_MODE_COLS
        FB_MODE_GROUPS
        FB_NAN_PROPAGATE
        FB_NAN_RAISE
        FB_NAN_OMIT
        FB_FLAG_LABEL
        FB_FLAG_PRED
        FB_FLAG_NAN
        FB_FLAG_WEIGHT
        FB_FLAG_POS_WEIGHT
        FB_FLAG_GROUP
        FB_Y_U8
        FB_Y_F32
        FB_Y_F64
        FB_W_NONE
        FB_W_F32
        FB_W_F64
        FB_G_I64
        FB_G_I32

CODES = dict(MODE_ALL=FB_MODE_ALL, MODE_ROWS=FB_MODE_ROWS, MODE_COLS=FB_MODE_COLS,
             MODE_GROUPS=FB_MODE_GROUPS, NAN_PROPAGATE=FB_NAN_PROPAGATE, NAN_RAISE=FB_NAN_RAISE,
             NAN_OMIT=FB_NAN_OMIT, FLAG_LABEL=FB_FLAG_LABEL, FLAG_PRED=FB_FLAG_PRED,
             FLAG_NAN=FB_FLAG_NAN, FLAG_WEIGHT=FB_FLAG_WEIGHT, FLAG_POS_WEIGHT=FB_FLAG_POS_WEIGHT,
             FLAG_GROUP=FB_FLAG_GROUP, Y_U8=FB_Y_U8, Y_F32=FB_Y_F32, Y_F64=FB_Y_F64,
             W_NONE=FB_W_NONE, W_F32=FB_W_F32, W_F64=FB_W_F64, G_I64=FB_G_I64, G_I32=FB_G_I32)

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


ctypedef (double, double, double, double, double, double, double) terms_t
ctypedef (int, double, double, double, double, double, double, double, double) element_t


cdef inline terms_t prob_terms(double p, double lo, double hi) noexcept nogil:
    """-log q, -log(1-q), their derivatives in p (0 where clipped), q, 1-q, dq/dp; q = clip(p, lo, hi)."""
    cdef double q = min(max(p, lo), hi)
    cdef double inside = 1.0 if lo <= p <= hi else 0.0
    return -log(q), -log1p(-q), -inside / q, inside / (1.0 - q), q, 1.0 - q, inside


cdef inline terms_t logit_terms(double x) noexcept nogil:
    """softplus(-x), softplus(x), -σ(-x), σ(x), σ(x), σ(-x), σ(x)σ(-x), computed stably."""
    cdef double e = exp(-fabs(x))
    cdef double log_term = log1p(e)
    cdef double inv = 1.0 / (1.0 + e)
    cdef double sigmoid_x = inv if x >= 0.0 else e * inv
    cdef double sigmoid_minus_x = e * inv if x >= 0.0 else inv
    return (max(-x, 0.0) + log_term, max(x, 0.0) + log_term, -sigmoid_minus_x, sigmoid_x,
            sigmoid_x, sigmoid_minus_x, sigmoid_x * sigmoid_minus_x)


cdef inline element_t weighted_element(
        double y, double v, double w, double pos_weight, bint from_logits, double lo, double hi,
        double keep, double shift, int nan_mode, double gamma, double alpha) noexcept nogil:
    """One unmasked element: (error bits, counted, w, w·loss, w·dloss/dv, w·y, w·q, w·positive
    part, w·negative part); the formulas of weighted_element in kernels/numba/general.py."""
    cdef int bad = 0
    cdef double nll_pos, nll_neg, d_pos, d_neg, q, q_bar, dq, a, b, positive, negative, loss, grad
    cdef double one_minus_pt, alpha_t, factor, d_factor
    if isnan(y) or isnan(v):
        if nan_mode == FB_NAN_RAISE:
            return FB_FLAG_NAN, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
        if nan_mode == FB_NAN_OMIT:
            return 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    if y < 0.0 or y > 1.0:
        bad = bad | FB_FLAG_LABEL
    if not from_logits and (v < 0.0 or v > 1.0):
        bad = bad | FB_FLAG_PRED
    if not (0.0 <= w < INFINITY):
        bad = bad | FB_FLAG_WEIGHT
    if not (0.0 <= pos_weight < INFINITY):
        bad = bad | FB_FLAG_POS_WEIGHT
    if bad:
        return bad, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    if isnan(v):
        return 0, 1.0, w, v, v, w * y, v, v, v
    y = y * keep + shift
    if from_logits:
        nll_pos, nll_neg, d_pos, d_neg, q, q_bar, dq = logit_terms(v)
    else:
        nll_pos, nll_neg, d_pos, d_neg, q, q_bar, dq = prob_terms(v, lo, hi)
    a = pos_weight * y
    b = 1.0 - y
    positive = a * nll_pos if a != 0.0 else 0.0
    negative = b * nll_neg if b != 0.0 else 0.0
    loss = positive + negative
    grad = a * d_pos + b * d_neg
    if gamma != 0.0 or alpha >= 0.0:
        one_minus_pt = y * q_bar + b * q
        alpha_t = alpha * y + (1.0 - alpha) * b if alpha >= 0.0 else 1.0
        factor = alpha_t * pow(one_minus_pt, gamma)
        if factor == 0.0:  # a fully right prediction, or α_t = 0: no loss, no gradient
            loss = 0.0
            grad = 0.0
        else:
            # d(1-p_t)^γ/dv = γ·(1-p_t)^γ·(1-2y)·(dq/dv)/(1-p_t); it is 0 where dq/dv is (clipped p,
            # or x = ±inf), and then the loss term is left out so that an infinite loss gives no 0·inf.
            d_factor = 0.0
            if gamma != 0.0 and dq != 0.0:
                d_factor = gamma * factor * (b - y) * (dq / one_minus_pt)
            grad = factor * grad + (d_factor * loss if d_factor != 0.0 else 0.0)
            loss = factor * loss
    return 0, 1.0, w, w * loss, w * grad, w * y, w * q, w * positive, w * negative


# The scalars of a general pass: kernels.PassOptions, and which element outputs are written.
cdef struct pass_options:
    bint y_half
    bint p_half
    bint from_logits
    double clip_lo
    double clip_hi
    double smoothing
    int nan_mode
    double gamma
    double alpha
    int mode
    Py_ssize_t rows_per_chunk
    bint write_loss
    bint write_grad


cdef int run_chunk(
        const label_t[:, :] y, const pred_t[:, :] p, const weight_t[:, :] w,
        const weight_t[:, :] pw, const uint8_t[:, :] mask, const Py_ssize_t[:] groups,
        const double[:] row_scale, const double[:] col_scale, double[:, :, :] sums,
        out_t[:, :] loss_out, out_t[:, :] grad_out, const pass_options *o, Py_ssize_t k,
        Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    """Rows [start, stop) into ``sums[k]``; returns the error bits."""
    cdef Py_ssize_t n_cols = p.shape[1], n_slots = sums.shape[1], i, j, slot, row_slot
    cdef bint score_stats = sums.shape[2] > 2
    cdef double keep = 1.0 - o.smoothing, shift = 0.5 * o.smoothing
    cdef double counted, weight, loss, grad, wy, wq, positive, negative, r_scale, c_scale
    cdef bint per_row_scale = row_scale.shape[0] > 1, per_col_scale = col_scale.shape[0] > 1
    cdef int bad = 0, bits
    # the options as locals: a store into sums could alias them, and they would be read again
    cdef bint y_half = o.y_half, p_half = o.p_half, from_logits = o.from_logits
    cdef bint write_loss = o.write_loss, write_grad = o.write_grad
    cdef double clip_lo = o.clip_lo, clip_hi = o.clip_hi, gamma = o.gamma, alpha = o.alpha
    cdef int nan_mode = o.nan_mode, mode = o.mode
    for i in range(start, stop):
        row_slot = 0
        if mode == FB_MODE_ROWS:
            row_slot = i
        elif mode == FB_MODE_GROUPS:
            row_slot = groups[i]
            if row_slot < 0 or row_slot >= n_slots:
                bad = bad | FB_FLAG_GROUP
                continue
        r_scale = row_scale[i] if per_row_scale else row_scale[0]
        for j in range(n_cols):
            if not mask[i, j]:
                if write_loss:
                    loss_out[i, j] = 0.0
                if write_grad:
                    grad_out[i, j] = 0.0
                continue
            bits, counted, weight, loss, grad, wy, wq, positive, negative = weighted_element(
                as_double(y[i, j], y_half), as_double(p[i, j], p_half), w[i, j], pw[i, j],
                from_logits, clip_lo, clip_hi, keep, shift, nan_mode, gamma, alpha)
            bad = bad | bits
            slot = j if mode == FB_MODE_COLS else row_slot
            sums[k, slot, 0] += loss
            sums[k, slot, 1] += weight
            if score_stats:
                sums[k, slot, 2] += counted
                sums[k, slot, 3] += wy
                sums[k, slot, 4] += wq
                sums[k, slot, 5] += positive
                sums[k, slot, 6] += negative
            if write_loss:
                loss_out[i, j] = <out_t>loss
            if write_grad:
                c_scale = col_scale[j] if per_col_scale else col_scale[0]
                grad_out[i, j] = <out_t>(grad * r_scale * c_scale)
    return bad


def _bce_pass(const label_t[:, :] y, const pred_t[:, :] p, const weight_t[:, :] w,
              const weight_t[:, :] pw, const uint8_t[:, :] mask, const Py_ssize_t[:] groups,
              const double[:] row_scale, const double[:] col_scale, double[:, :, :] sums,
              uint8_t[:] flags, out_t[:, :] loss_out, out_t[:, :] grad_out, options,
              bint write_loss, bint write_grad, int n_threads):
    cdef Py_ssize_t chunk, n_chunks = flags.shape[0], n_rows = p.shape[0]
    cdef pass_options o
    if out_t is double:
        if pred_t is not double:
            raise TypeError("element outputs are float64 only for float64 predictions")
    elif pred_t is double:
        raise TypeError("element outputs are float64 for float64 predictions")
    (o.y_half, o.p_half, o.from_logits, o.clip_lo, o.clip_hi, o.smoothing, o.nan_mode, o.gamma,
     o.alpha, o.mode, o.rows_per_chunk) = options
    o.write_loss, o.write_grad = write_loss, write_grad
    for chunk in prange(n_chunks, nogil=True, schedule="static", num_threads=n_threads):
        flags[chunk] = run_chunk(
            y, p, w, pw, mask, groups, row_scale, col_scale, sums, loss_out, grad_out, &o,
            0 if o.mode == FB_MODE_ROWS else chunk, chunk * o.rows_per_chunk,
            min(n_rows, (chunk + 1) * o.rows_per_chunk))


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


# GNU OpenMP cannot start a parallel region in a child forked after the parent used one (the
# child waits forever for threads that were not copied), so such a child runs on one thread.
_openmp_started = False
_single_threaded = False


def _after_fork_in_child():
    global _single_threaded
    _single_threaded = _single_threaded or _openmp_started


os.register_at_fork(after_in_child=_after_fork_in_child)


def bce_pass(y, p, w, pw, mask, groups, row_scale, col_scale, sums, flags, loss_out, grad_out,
             options, n_threads):
    """Same contract as kernels/numba/general.py's bce_pass; runs with the GIL released."""
    global _openmp_started
    if _single_threaded:
        n_threads = 1
    elif n_threads > 1:
        _openmp_started = True
    out_dtype = np.float64 if p.dtype == np.float64 else np.float32
    placeholder = np.empty((1, 1), out_dtype)
    w, pw = _same_weight_dtype(w, pw)
    _bce_pass(_label_operand(y, options.y_half), p, w, pw, mask.view(np.uint8),
              groups.astype(np.intp, copy=False), row_scale, col_scale, sums, flags,
              placeholder if loss_out is None else loss_out,
              placeholder if grad_out is None else grad_out, options,
              loss_out is not None, grad_out is not None, n_threads)


# ---------------------------------------------------------------------------------------------
# Fast path (kernels/c/, entered by kernels/c/dispatch.h): flat contiguous data, the commonest
# options. fastbce/_fastpath.py decides when it applies and prepares the arguments.
# ---------------------------------------------------------------------------------------------

from libc.stdint cimport int64_t

cdef extern from "c/dispatch.h" nogil:
    ctypedef struct fb_args:
        const void *y
        int y_kind
        double keep, shift
        int focal
        double gamma, alpha
        int gamma_n
        const void *p
        const void *w
        int w_kind
        const double *pos_w
        const uint8_t *mask
        int logits
        int nan_mode
        double clip_lo, clip_hi, lo_pos, lo_neg, hi_pos, hi_neg
        void *grad
        double grad_scale
        const double *col_scale
        const double *row_scale
        int want_loss
        int mode
        int64_t ncols
        int64_t row0
        const void *groups
        int g_kind
        int64_t n_slots
        double *sums
    int fb_chunk_f32(const fb_args *a, int64_t chunk, int64_t start, int64_t stop)
    int fb_chunk_f64(const fb_args *a, int64_t chunk, int64_t start, int64_t stop)
    int fb_score_f32(const fb_args *a, int64_t chunk, int64_t start, int64_t stop)
    int fb_score_f64(const fb_args *a, int64_t chunk, int64_t start, int64_t stop)
    const char *fb_select(const char *forced)

# The instruction-set variant of the fast path for this CPU (FASTBCE_SIMD=v4/v3/base forces a
# lower one, for tests and measurements).
SIMD_VARIANT = fb_select(os.environ.get("FASTBCE_SIMD", "").encode()).decode()

_Y_KINDS = {np.dtype(np.uint8): FB_Y_U8, np.dtype(np.float32): FB_Y_F32,
            np.dtype(np.float64): FB_Y_F64}
_W_KINDS = {np.dtype(np.float32): FB_W_F32, np.dtype(np.float64): FB_W_F64}
_G_KINDS = {np.dtype(np.int64): FB_G_I64, np.dtype(np.int32): FB_G_I32}


cdef size_t _address(array):
    return <size_t>array.__array_interface__["data"][0]


def fast_pass(y, p, w, pos_w, mask, groups, row_scale, col_scale, double[:, :, ::1] sums,
              uint8_t[::1] flags, grad, options, int n_threads):
    """The fast pass over flat C-ordered arrays (see fastbce/_fastpath.py for the contract);
    options: a kernels.FastOptions. The twin of kernels/numba/dispatch.py's fast_pass."""
    global _openmp_started
    if _single_threaded:
        n_threads = 1
    elif n_threads > 1:
        _openmp_started = True
    cdef fb_args a
    cdef bint f64 = p.dtype == np.float64
    cdef bint score = sums.shape[2] == 7  # the scoring statistics (fb_score_chunk)
    cdef Py_ssize_t n = p.shape[0], n_chunks = flags.shape[0], chunk, start
    cdef Py_ssize_t chunk_elems = options.chunk_elems
    focal = options.focal
    a.y = <const void *>_address(y)
    a.y_kind = _Y_KINDS[y.dtype]
    a.p = <const void *>_address(p)
    a.w = NULL if w is None else <const void *>_address(w)
    a.w_kind = FB_W_NONE if w is None else _W_KINDS[w.dtype]
    a.pos_w = NULL if pos_w is None else <const double *>_address(pos_w)
    a.mask = NULL if mask is None else <const uint8_t *>_address(mask)
    a.logits = options.logits
    a.nan_mode = options.nan_mode
    a.clip_lo, a.clip_hi = options.clip
    a.keep, a.shift = 1.0 - options.smoothing, 0.5 * options.smoothing
    a.focal = focal is not None
    a.gamma, a.alpha, a.gamma_n = (0.0, -1.0, -1) if focal is None else focal
    a.lo_pos, a.lo_neg, a.hi_pos, a.hi_neg = options.nll
    a.grad = NULL if grad is None else <void *>_address(grad)
    a.grad_scale = options.grad_scale
    a.col_scale = NULL if col_scale is None else <const double *>_address(col_scale)
    a.row_scale = NULL if row_scale is None else <const double *>_address(row_scale)
    a.row0 = options.row0
    a.want_loss = options.want_loss
    a.mode = options.mode
    a.ncols = options.ncols
    a.groups = NULL
    a.g_kind = FB_G_I64
    if groups is not None:
        if not groups.flags.c_contiguous:
            raise ValueError("fast_pass reads group ids in place: they must be contiguous")
        a.groups = <const void *>_address(groups)
        a.g_kind = _G_KINDS[groups.dtype]
    a.n_slots = sums.shape[1]
    a.sums = &sums[0, 0, 0]
    for chunk in prange(n_chunks, nogil=True, schedule="static", num_threads=n_threads):
        start = chunk * chunk_elems
        if score and f64:
            flags[chunk] = fb_score_f64(&a, chunk, start, min(n, start + chunk_elems))
        elif score:
            flags[chunk] = fb_score_f32(&a, chunk, start, min(n, start + chunk_elems))
        elif f64:
            flags[chunk] = fb_chunk_f64(&a, chunk, start, min(n, start + chunk_elems))
        else:
            flags[chunk] = fb_chunk_f32(&a, chunk, start, min(n, start + chunk_elems))
