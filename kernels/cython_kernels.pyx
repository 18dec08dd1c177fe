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
        int p_half
        int64_t pw_rs, pw_cs
        int strided
        int64_t y_stride, p_stride, w_stride, m_stride
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


from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer


cdef size_t _address(array) except? 0:
    """The address of a contiguous array's first element, through the buffer protocol (the array
    interface builds a dict: about 1 µs per array on a call of a few µs)."""
    cdef Py_buffer view
    PyObject_GetBuffer(array, &view, PyBUF_SIMPLE)
    cdef size_t address = <size_t>view.buf
    PyBuffer_Release(&view)
    return address


cdef size_t _flat_address(array, int64_t *stride) except? 0:
    """The address of a 1-D array's first element and its stride in elements (> 0; 1 when
    contiguous, read through the buffer protocol as _address)."""
    if array.flags.c_contiguous:
        stride[0] = 1
        return _address(array)
    stride[0] = array.strides[0] // array.itemsize
    return <size_t>array.ctypes.data


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
    a.y = <const void *>_flat_address(y, &a.y_stride)
    a.y_kind = _Y_KINDS[y.dtype]
    a.p = <const void *>_flat_address(p, &a.p_stride)
    a.w_stride = a.m_stride = 1
    a.w = NULL if w is None else <const void *>_flat_address(w, &a.w_stride)
    a.w_kind = FB_W_NONE if w is None else _W_KINDS[w.dtype]
    a.pos_w = NULL if pos_w is None else <const double *>_address(pos_w)
    a.mask = NULL if mask is None else <const uint8_t *>_flat_address(mask, &a.m_stride)
    a.strided = a.y_stride != 1 or a.p_stride != 1 or a.w_stride != 1 or a.m_stride != 1
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
    a.p_half = p.dtype == np.uint16  # float16 bits: decoded per block, computed as float32
    a.pw_rs, a.pw_cs = options.pw_strides
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


# ---- element passes (kernels/c/elements.h) ----------------------------------------------------

cdef extern from "c/dispatch.h" nogil:
    ctypedef struct fb_operand:
        const void *base
        int kind
        int64_t rs, cs
    ctypedef struct fb_elements:
        fb_operand y, p, w, pw, mask
        void *out1
        void *out2
        int64_t o1_rs, o1_cs, o2_rs, o2_cs
        int64_t ncols
        int output
        int focal
        fb_args f
    int fb_element_chunk(const fb_elements *e, int64_t start, int64_t stop, int f64)
    enum:
        FB_ELEMENT_CHUNK


cdef fb_operand _element_operand(operand):
    """The C operand of an element pass operand (flat, offset, kind, rs, cs)."""
    cdef fb_operand o
    flat, offset, kind, rs, cs = operand
    cdef size_t address = 0
    if flat is not None:
        address = _address(flat) + offset * flat.itemsize
    o.base = <const void *>address
    o.kind = kind
    o.rs = rs
    o.cs = cs
    return o


def element_pass(y, p, w, pw, mask, shape, uint8_t[::1] flags, out1, out2, options,
                 int n_threads):
    """Per-element outputs with no reduction (contract: kernels.ElementOptions); the twin of
    kernels/numba/elements.py's element_pass."""
    global _openmp_started
    if _single_threaded:
        n_threads = 1
    elif n_threads > 1:
        _openmp_started = True
    cdef fb_elements e
    cdef Py_ssize_t n = shape[0] * shape[1], n_chunks = flags.shape[0], chunk, start
    cdef int f64 = p[2] == 4  # K_F64
    e.y, e.p, e.w, e.pw, e.mask = (_element_operand(y), _element_operand(p), _element_operand(w),
                                   _element_operand(pw), _element_operand(mask))
    o1 = _element_operand(out1)
    e.out1, e.o1_rs, e.o1_cs = <void *>o1.base, o1.rs, o1.cs
    e.out2, e.o2_rs, e.o2_cs = NULL, 0, 0
    if out2 is not None:
        o2 = _element_operand(out2)
        e.out2, e.o2_rs, e.o2_cs = <void *>o2.base, o2.rs, o2.cs
    e.ncols = shape[1]
    e.output = options.output
    e.focal = options.gamma != 0.0 or options.alpha >= 0.0
    e.f.logits = options.from_logits
    e.f.nan_mode = options.nan_mode
    e.f.clip_lo, e.f.clip_hi = options.clip_lo, options.clip_hi
    e.f.keep, e.f.shift = 1.0 - options.smoothing, 0.5 * options.smoothing
    e.f.focal = e.focal
    e.f.gamma, e.f.alpha, e.f.gamma_n = options.gamma, options.alpha, options.gamma_n
    e.f.lo_pos, e.f.lo_neg, e.f.hi_pos, e.f.hi_neg = options.nll
    for chunk in prange(n_chunks, nogil=True, schedule="static", num_threads=n_threads):
        start = chunk * FB_ELEMENT_CHUNK
        flags[chunk] = fb_element_chunk(&e, start, min(n, start + FB_ELEMENT_CHUNK), f64)


# ---------------------------------------------------------------------------------------------
# Ranking (kernels/c/rank.h, the twin of kernels/numba/rank.py): exact ROC-AUC and average
# precision of one slice; fastbce/_metrics.py calls rank.
# ---------------------------------------------------------------------------------------------

from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport malloc, free
from cython.parallel cimport parallel

cdef extern from "c/rank.h" nogil:
    enum:
        FB_RANK_SOFT
        FB_RANK_WEIGHT
        FB_RADIX_BITS
        FB_RADIX
        FB_RANK_BIG
        FB_WALK_RANGES
    ctypedef struct fb_rank_args:
        const void *y
        int y_kind
        int64_t y_stride
        const void *p
        int p_f64
        int64_t p_stride
        const double *w
        const uint8_t *mask
        const int64_t *groups
        int omit
        int shift
        int64_t top
    int fb_count(const fb_rank_args *a, int64_t lo, int64_t hi, int64_t *counts)
    void fb_split(const fb_rank_args *a, int64_t lo, int64_t hi, int64_t *at, void *out,
                  uint32_t *out_idx, int64_t spare)
    void fb_histogram(const void *items, int wide, int64_t lo, int64_t hi, int shift, int bits,
                      int64_t *counts)
    void fb_scatter(const void *items, const uint32_t *idx, int wide, int64_t lo, int64_t hi,
                    int shift, int bits, int64_t *at, void *out, uint32_t *out_idx)
    void fb_scatter_back(const void *items, const uint32_t *idx, int wide, int64_t lo,
                         int64_t hi, int shift, int bits, int64_t *at, void *out,
                         uint32_t *out_idx)
    uint64_t fb_rank_item(const void *items, int wide, int64_t i)
    void fb_rank_copy(void *a, const void *b, uint32_t *ia, const uint32_t *ib, int wide,
                      int64_t lo, int64_t hi)
    void fb_sort_small(void *a, void *b, uint32_t *ia, uint32_t *ib, int wide, int64_t lo,
                       int64_t hi, int in_b, uint32_t *counts, int64_t *at)
    void fb_range_totals(const void *items, const uint32_t *idx, int wide, const double *w,
                         int64_t lo, int64_t hi, double *tp, double *fp)
    int64_t fb_walk(const void *items, const uint32_t *idx, int wide, const double *w,
                    int64_t lo, int64_t hi, double big_tp, double big_fp, double *curve,
                    int64_t curve_len, int64_t m, double *u2_out, double *ap_out,
                    double *tp_out, double *fp_out)
    void fb_cuts(const void *items, int wide, int64_t lo, int64_t hi, int64_t *out)


cdef void* _ptr(array):
    return <void *><size_t>array.__array_interface__["data"][0] if array is not None else NULL


cdef tuple _count(const fb_rank_args *a, int64_t[::1] bounds, int64_t n_buckets, int n_threads):
    """fb_count over the blocks of bounds in parallel: (per-block counts (nb, 2·n_buckets) of
    each bucket's negatives and positives, flags)."""
    cdef Py_ssize_t nb = bounds.shape[0] - 1, b
    counts_array = np.zeros((nb, 2 * n_buckets), np.int64)
    cdef int64_t[:, ::1] counts = counts_array
    cdef int64_t[::1] flags = np.zeros(nb, np.int64)
    for b in prange(nb, nogil=True, schedule="static", num_threads=n_threads):
        flags[b] = fb_count(a, bounds[b], bounds[b + 1], &counts[b, 0])
    cdef int64_t flag = 0
    for b in range(nb):
        flag |= flags[b]
    return counts_array, flag


cdef object _split(const fb_rank_args *a, int64_t[::1] bounds, int64_t[:, ::1] counts, out,
                   out_idx, int n_threads):
    """The kept elements' items into their buckets (per-block counts from _count), over the
    blocks of bounds in parallel; the bucket starts (n_buckets + 1)."""
    cdef Py_ssize_t nb = counts.shape[0], n_buckets = counts.shape[1] // 2, b, k
    starts_array = np.zeros(n_buckets + 1, np.int64)
    cdef int64_t[::1] starts = starts_array
    cdef int64_t[:, ::1] at = np.empty((nb, n_buckets), np.int64)
    cdef int64_t start = 0
    for k in range(n_buckets):
        starts[k] = start
        for b in range(nb):
            at[b, k] = start
            start += counts[b, 2 * k] + counts[b, 2 * k + 1]
    starts[n_buckets] = start
    cdef void *out_p = _ptr(out)
    cdef uint32_t *idx_p = <uint32_t *>_ptr(out_idx)
    cdef int64_t spare = out.shape[0] - 1
    for b in prange(nb, nogil=True, schedule="static", num_threads=n_threads):
        fb_split(a, bounds[b], bounds[b + 1], &at[b, 0], out_p, idx_p, spare)
    return starts_array


cdef void _sort_big(void *a, void *b, uint32_t *ia, uint32_t *ib, int wide, int64_t n, int nb,
                    int n_threads):
    """Sorts the items [0, n) of a in place (b, ib: scratch of n) by an LSD radix sort of 11-bit
    digits, blocks in parallel: the histograms of every digit from one pass; a pass whose digit
    is the same for every item is skipped. With one or two blocks, the first scatters from the
    bucket starts and the second from the bucket ends (no per-block histograms); with more, each
    pass counts per block first."""
    cdef int nd = ((64 if wide else 32) + FB_RADIX_BITS - 1) // FB_RADIX_BITS
    cdef int64_t[::1] bounds = np.array([n * k // nb for k in range(nb + 1)], np.int64)
    cdef int64_t[:, :, ::1] counts = np.zeros((nb, nd, FB_RADIX), np.int64)
    cdef int64_t[:, ::1] at = np.zeros((nb, FB_RADIX), np.int64)
    cdef Py_ssize_t k, d, v
    cdef int s
    cdef bint in_b = False
    cdef int64_t start, c
    cdef void *src = a
    cdef void *dst = b
    cdef uint32_t *isrc = ia
    cdef uint32_t *idst = ib
    cdef void *swap
    cdef uint32_t *iswap
    for k in prange(nb, nogil=True, schedule="static", num_threads=n_threads):
        for d in range(nd):
            fb_histogram(src, wide, bounds[k], bounds[k + 1], d * FB_RADIX_BITS, FB_RADIX_BITS,
                         &counts[k, d, 0])
    for k in range(1, nb):
        for d in range(nd):
            for v in range(FB_RADIX):
                counts[0, d, v] += counts[k, d, v]
    for d in range(nd):
        s = d * FB_RADIX_BITS
        if counts[0, d, (fb_rank_item(src, wide, 0) >> s) & (FB_RADIX - 1)] == n:
            continue
        if nb <= 2:
            start = 0
            for v in range(FB_RADIX):
                at[0, v] = start
                start += counts[0, d, v]
                at[nb - 1, v] = start if nb == 2 else at[0, v]
        else:
            for k in prange(nb, nogil=True, schedule="static", num_threads=n_threads):
                at[k, :] = 0
                fb_histogram(src, wide, bounds[k], bounds[k + 1], s, FB_RADIX_BITS, &at[k, 0])
            start = 0
            for v in range(FB_RADIX):
                for k in range(nb):
                    c = at[k, v]
                    at[k, v] = start
                    start += c
        for k in prange(nb, nogil=True, schedule="static", num_threads=n_threads):
            if nb == 2 and k == 1:
                fb_scatter_back(src, isrc, wide, bounds[k], bounds[k + 1], s, FB_RADIX_BITS,
                                &at[k, 0], dst, idst)
            else:
                fb_scatter(src, isrc, wide, bounds[k], bounds[k + 1], s, FB_RADIX_BITS,
                           &at[k, 0], dst, idst)
        swap = src; src = dst; dst = swap
        iswap = isrc; isrc = idst; idst = iswap
        in_b = not in_b
    if in_b:
        for k in prange(nb, nogil=True, schedule="static", num_threads=n_threads):
            fb_rank_copy(a, b, ia, ib, wide, bounds[k], bounds[k + 1])


def _schedule(seg, int64_t min_size, int n_threads):
    """(shared, order, small) for sorting the buckets [seg[k, 0], seg[k, 1]): with more than one
    thread, the buckets of at least FB_RANK_BIG items and a quarter of a thread's share are
    shared, each sorted by all threads; the others of at least min_size items are each sorted by
    one thread, handed out in `order` by decreasing bit length of their size (the biggest first,
    so that the threads end together); small: the biggest of those's size (at least 1)."""
    sizes = seg[:, 1] - seg[:, 0]
    limit = (max(FB_RANK_BIG, int(sizes.sum()) // (4 * n_threads)) if n_threads > 1
             else int(sizes.max(initial=0)) + 1)
    solo = np.flatnonzero((sizes >= min_size) & (sizes < limit))
    order = solo[np.argsort(-np.frexp(sizes[solo])[1].astype(np.int8), kind="stable")]
    return (np.flatnonzero(sizes >= limit), np.ascontiguousarray(order, np.int64),
            int(sizes[solo].max(initial=1)))


cdef void _sort_all(void *a, uint32_t *ia, int wide, int64_t[:, ::1] seg, int n_threads):
    """Sorts each bucket [seg[k, 0], seg[k, 1]) of a in place (ia along unless NULL): the
    shared ones (_schedule) one after the other by all threads, the others each by one thread
    in a scratch of the biggest one's size, the biggest first."""
    shared, order_array, small = _schedule(np.asarray(seg), 2, n_threads)
    cdef int64_t[::1] order = order_array
    cdef Py_ssize_t j, k
    cdef int64_t lo, n, size = 8 if wide else 4
    if shared.size:
        biggest = int(np.max(np.asarray(seg)[shared, 1] - np.asarray(seg)[shared, 0]))
        tmp = np.empty(biggest, np.uint64 if wide else np.uint32)
        idx_tmp = None if ia == NULL else np.empty(biggest, np.uint32)
        for k in shared:
            lo, n = seg[k, 0], seg[k, 1] - seg[k, 0]
            _sort_big(<char *>a + lo * size, _ptr(tmp), NULL if ia == NULL else ia + lo,
                      <uint32_t *>_ptr(idx_tmp), wide, n, min(n_threads, n >> 15), n_threads)
    cdef void *scratch
    cdef uint32_t *iscratch
    cdef uint32_t *counts
    cdef int64_t *at
    cdef int64_t n_small = small
    with nogil, parallel(num_threads=n_threads):
        scratch = malloc(n_small * size)
        iscratch = NULL if ia == NULL else <uint32_t *>malloc(n_small * sizeof(uint32_t))
        counts = <uint32_t *>malloc(6 * 2048 * sizeof(uint32_t))
        at = <int64_t *>malloc(2048 * sizeof(int64_t))
        for j in prange(order.shape[0], schedule="dynamic", chunksize=1):
            k = order[j]
            lo = seg[k, 0]
            n = seg[k, 1] - lo
            fb_sort_small(<char *>a + lo * size, scratch, NULL if ia == NULL else ia + lo,
                          iscratch, wide, 0, n, 0, counts, at)
        free(scratch)
        free(iscratch)
        free(counts)
        free(at)


cdef tuple _walk_big(void *items, uint32_t *idx, int wide, const double *w, int64_t lo,
                     int64_t hi, double big_tp, double big_fp, int n_threads):
    """(P, N, 2·U, A) of the sorted items [lo, hi) below weights big_tp, big_fp: FB_WALK_RANGES
    ranges between cuts at distinct values, their totals, then their walks in parallel, summed
    in range order."""
    cdef int64_t[::1] cut = np.empty(FB_WALK_RANGES + 1, np.int64)
    fb_cuts(items, wide, lo, hi, &cut[0])
    cdef Py_ssize_t nr = FB_WALK_RANGES, r
    cdef double[:, ::1] totals = np.zeros((nr, 2))
    cdef double[:, ::1] above = np.zeros((nr, 2))
    cdef double[:, ::1] sums = np.zeros((nr, 4))
    for r in prange(nr, nogil=True, schedule="static", num_threads=n_threads):
        fb_range_totals(items, idx, wide, w, cut[r], cut[r + 1], &totals[r, 0], &totals[r, 1])
    above[nr - 1, 0] = big_tp
    above[nr - 1, 1] = big_fp
    for r in range(nr - 2, -1, -1):
        above[r, 0] = above[r + 1, 0] + totals[r + 1, 0]
        above[r, 1] = above[r + 1, 1] + totals[r + 1, 1]
    for r in prange(nr, nogil=True, schedule="static", num_threads=n_threads):
        fb_walk(items, idx, wide, w, cut[r], cut[r + 1], above[r, 0], above[r, 1], NULL, 0, 0,
                &sums[r, 0], &sums[r, 1], &sums[r, 2], &sums[r, 3])
    cdef double big_p = 0.0, big_n = 0.0, u2 = 0.0, a = 0.0
    for r in range(nr - 1, -1, -1):
        big_p += totals[r, 0]
        big_n += totals[r, 1]
        u2 += sums[r, 0]
        a += sums[r, 1]
    return big_p, big_n, u2, a


cdef object _sort_walk(void *a, int wide, int64_t[:, ::1] seg, double[:, ::1] above,
                       int n_threads):
    """(2·U, A, ...) per bucket [seg[k, 0], seg[k, 1]) of unweighted items, each sorted in place
    and walked below the weights above[k] of the buckets after it: the shared ones (_schedule)
    sorted one after the other by all threads, the others each by one thread, the biggest first,
    and walked right after (in cache); those of FB_RANK_BIG items or more walked last, in ranges
    by all threads."""
    shared, order_array, small = _schedule(np.asarray(seg), 1, n_threads)
    cdef int64_t[::1] order = order_array
    cdef Py_ssize_t j, k, ns = seg.shape[0]
    cdef int64_t lo, n, size = 8 if wide else 4
    out_array = np.zeros((ns, 4))
    cdef double[:, ::1] out = out_array
    if shared.size:
        biggest = int(np.max(np.asarray(seg)[shared, 1] - np.asarray(seg)[shared, 0]))
        tmp = np.empty(biggest, np.uint64 if wide else np.uint32)
        for k in shared:
            lo, n = seg[k, 0], seg[k, 1] - seg[k, 0]
            _sort_big(<char *>a + lo * size, _ptr(tmp), NULL, NULL, wide, n,
                      min(n_threads, n >> 15), n_threads)
    cdef void *scratch
    cdef uint32_t *counts
    cdef int64_t *at
    cdef int64_t n_small = small
    with nogil, parallel(num_threads=n_threads):
        scratch = malloc(n_small * size)
        counts = <uint32_t *>malloc(6 * 2048 * sizeof(uint32_t))
        at = <int64_t *>malloc(2048 * sizeof(int64_t))
        for j in prange(order.shape[0], schedule="dynamic", chunksize=1):
            k = order[j]
            lo = seg[k, 0]
            n = seg[k, 1] - lo
            fb_sort_small(<char *>a + lo * size, scratch, NULL, NULL, wide, 0, n, 0, counts, at)
            if n < FB_RANK_BIG:
                fb_walk(a, NULL, wide, NULL, lo, lo + n, above[k, 0], above[k, 1], NULL, 0, 0,
                        &out[k, 0], &out[k, 1], &out[k, 2], &out[k, 3])
        free(scratch)
        free(counts)
        free(at)
    for k in range(ns):
        if seg[k, 1] - seg[k, 0] >= FB_RANK_BIG:
            out_array[k, :2] = _walk_big(a, NULL, wide, NULL, seg[k, 0], seg[k, 1], above[k, 0],
                                         above[k, 1], n_threads)[2:]
    return out_array


cdef object _walk_all(void *items, uint32_t *idx, int wide, const double *w,
                      int64_t[:, ::1] slots, int n_threads):
    """(P, N, 2·U, A) of each slot [slots[k, 0], slots[k, 1]) of the sorted items: the big
    ones one after the other by all threads, the others each by one thread."""
    cdef Py_ssize_t k, ns = slots.shape[0]
    out_array = np.zeros((ns, 4))
    cdef double[:, ::1] out = out_array
    for k in range(ns):
        if slots[k, 1] - slots[k, 0] >= FB_RANK_BIG:
            out_array[k] = _walk_big(items, idx, wide, w, slots[k, 0], slots[k, 1], 0.0, 0.0,
                                     n_threads)
    for k in prange(ns, nogil=True, schedule="dynamic", chunksize=16, num_threads=n_threads):
        if slots[k, 1] - slots[k, 0] < FB_RANK_BIG:
            fb_walk(items, idx, wide, w, slots[k, 0], slots[k, 1], 0.0, 0.0, NULL, 0, 0,
                    &out[k, 2], &out[k, 3], &out[k, 0], &out[k, 1])
    return out_array


_RANK_Y_KINDS = {np.dtype(np.uint8): FB_Y_U8, np.dtype(np.float32): FB_Y_F32,
                 np.dtype(np.float64): FB_Y_F64}


def rank(y, p, w, mask, groups, int64_t n_slots, bint omit, bint want_curve, int n_threads):
    """The twin of kernels/numba/rank.py's rank (same contract): (sums, nan, flags, curve) of a
    1-D slice, per slot; runs with the GIL released, in one thread below FB_RANK_BIG
    elements."""
    global _openmp_started
    if _single_threaded or p.shape[0] < FB_RANK_BIG:
        n_threads = 1
    elif n_threads > 1:
        _openmp_started = True
    cdef int64_t n = p.shape[0]
    cdef fb_rank_args a
    a.y = _ptr(y)
    a.y_kind = _RANK_Y_KINDS[y.dtype]
    a.y_stride = y.strides[0] // y.itemsize
    a.p = _ptr(p)
    a.p_f64 = p.dtype == np.float64
    a.p_stride = p.strides[0] // p.itemsize
    a.w = <const double *>_ptr(w)
    a.mask = <const uint8_t *>_ptr(mask)
    a.groups = <const int64_t *>_ptr(groups)
    a.omit = omit
    cdef bint grouped = groups is not None
    cdef int wide = a.p_f64
    top_bits = min(15, max(1, int(n).bit_length() - 3))
    a.shift = (64 if wide else 32) - top_bits
    a.top = 1 << top_bits
    nb = max(1, min(n_threads, n >> 16))
    cdef int64_t[::1] bounds = np.array([n * b // nb for b in range(nb + 1)], np.int64)
    cdef int64_t n_buckets = 3 * n_slots if grouped else 2 * a.top + 1
    counts, flags = _count(&a, bounds, n_buckets, n_threads)
    if flags & (FB_RANK_SOFT | FB_RANK_WEIGHT):
        return None, None, flags, None
    items = np.empty(n + 1, np.uint64 if wide else np.uint32)
    idx = None if w is None else np.empty(n + 1, np.uint32)
    cdef void *items_p = _ptr(items)
    cdef uint32_t *idx_p = <uint32_t *>_ptr(idx)
    starts = _split(&a, bounds, counts, items, idx, n_threads)
    if grouped:
        seg = np.stack((starts[:-1], starts[1:]), 1).reshape(n_slots, 3, 2)[:, :2]
        slots = np.ascontiguousarray(np.stack((starts[0:-1:3], starts[2::3]), 1))
        nan = starts[3::3] > starts[2::3]
    else:
        seg = np.stack((starts[:2 * a.top], starts[1:2 * a.top + 1]), 1)
        slots = np.array([[0, starts[2 * a.top]]], np.int64)
        nan = np.array([starts[2 * a.top + 1] > starts[2 * a.top]])
    seg = np.ascontiguousarray(seg.reshape(-1, 2))
    if not grouped and w is None and not want_curve:
        # each bucket walked right after its sort, below the counts of the buckets after it
        c = counts.sum(axis=0)[:4 * a.top].reshape(-1, 2)[:, ::-1].astype(np.float64)
        above = np.ascontiguousarray(np.cumsum(c[::-1], axis=0)[::-1] - c)
        out = _sort_walk(items_p, wide, seg, above, n_threads)
        return np.array([[above[0, 0] + c[0, 0], above[0, 1] + c[0, 1],
                          _sum_down(out[:, 0]), _sum_down(out[:, 1])]]), nan, flags, None
    _sort_all(items_p, idx_p, wide, seg, n_threads)
    if not want_curve:
        return _walk_all(items_p, idx_p, wide, a.w, slots, n_threads), nan, flags, None
    cdef int64_t m = slots[0, 1]
    curve = np.empty((3, max(m, 1)))
    cdef double u2, ap, tp, fp
    cdef double[:, ::1] cv = curve
    k = fb_walk(items_p, idx_p, wide, a.w, 0, m, 0.0, 0.0, &cv[0, 0], curve.shape[1], 0, &u2,
                &ap, &tp, &fp)
    at = curve[2, :k].astype(np.int64)
    return (np.array([[tp, fp, u2, ap]]), nan, flags,
            (_values(items[at], at < starts[a.top], not wide), curve[0, :k], curve[1, :k]))


def _sum_down(double[:] x):
    """x[-1] + ... + x[0], in that order."""
    cdef double total = 0.0
    cdef Py_ssize_t k
    for k in range(x.shape[0] - 1, -1, -1):
        total += x[k]
    return total


def _values(items, negative, f32):
    """The predictions of items (from their key and sign)."""
    key = items >> 1
    if f32:
        bits = np.where(negative, ~key.astype(np.uint32), key.astype(np.uint32))
        return bits.view(np.float32)
    bits = np.where(negative, ~key, key)
    return bits.view(np.float64)


# ---------------------------------------------------------------------------------------------
# Histogram pass of the report (kernels/c/histogram.h, the twin of kernels/numba/histogram.py).
# ---------------------------------------------------------------------------------------------

cdef extern from "c/histogram.h" nogil:
    ctypedef struct fb_hist_args:
        const void *p
        int64_t p_rs, p_cs
        int p_f64
        const void *y
        int64_t y_rs, y_cs
        int y_kind
        const void *w
        int64_t w_rs, w_cs
        int w_f64
        const uint8_t *mask
        int64_t m_rs, m_cs
        const void *groups
        int g_i32
        int mode
        int64_t nrows, ncols
        int logits, omit_nan
        double cut
        int shift
        int64_t top
        int64_t n_buckets, n_bins, n_extra
    int fb_hist_chunk(const fb_hist_args *a, int64_t r0, int64_t r1, double *hist, double *extra)
    int fb_calib_chunk(const void *p, int p_f64, const void *y, int y_kind, const double *w,
                       int64_t w_step, const uint8_t *m, int64_t m_step, int logits, int omit_nan,
                       const double *edges, int64_t nb, int uniform, int64_t r0, int64_t r1,
                       double *out)


def hist_pass(p, y, w, mask, groups, double[:, :, :, ::1] hist, double[:, :, ::1] extra,
              uint8_t[::1] flags, options, int n_threads):
    """The histogram pass over 2-D strided views (see fastbce/_histogram.py for the contract):
    stripe s (rows_per_chunk rows from s·rows_per_chunk) into hist[s], extra[s] and its error bits
    into flags[s]; options: a kernels.HistOptions. The twin of kernels/numba/histogram.py's
    hist_pass."""
    global _openmp_started
    if _single_threaded:
        n_threads = 1
    elif n_threads > 1:
        _openmp_started = True
    cdef fb_hist_args a
    a.p = <const void *>_ptr(p)
    a.p_rs, a.p_cs = p.strides[0] // p.itemsize, p.strides[1] // p.itemsize
    a.p_f64 = p.dtype == np.float64
    a.y = <const void *>_ptr(y)
    a.y_rs, a.y_cs = y.strides[0] // y.itemsize, y.strides[1] // y.itemsize
    a.y_kind = _Y_KINDS[y.dtype]
    a.w = <const void *>_ptr(w)
    a.w_rs, a.w_cs = w.strides[0] // w.itemsize, w.strides[1] // w.itemsize
    a.w_f64 = w.dtype == np.float64
    a.mask = <const uint8_t *>_ptr(mask)
    a.m_rs, a.m_cs = mask.strides[0], mask.strides[1]
    a.groups = <const void *>_ptr(groups)
    a.g_i32 = groups.dtype == np.int32
    a.mode = options.mode
    a.nrows, a.ncols = p.shape[0], p.shape[1]
    a.logits, a.omit_nan, a.cut = options.logits, options.omit_nan, options.cut
    a.shift, a.top = options.shift, options.top
    a.n_buckets, a.n_bins, a.n_extra = options.n_buckets, options.n_bins, extra.shape[2]
    cdef Py_ssize_t rows = options.rows_per_chunk, n = p.shape[0], c, n_chunks = extra.shape[0]
    cdef Py_ssize_t hist_chunk = hist.shape[1] * hist.shape[2] * 2, extra_chunk = extra.shape[1] * extra.shape[2]
    cdef double *h = &hist[0, 0, 0, 0]
    cdef double *e = &extra[0, 0, 0]
    for c in prange(n_chunks, nogil=True, schedule="static", num_threads=n_threads):
        flags[c] = fb_hist_chunk(&a, c * rows, min(n, (c + 1) * rows), h + c * hist_chunk,
                                 e + c * extra_chunk)


def calib_pass(p, y, const double[::1] w, const uint8_t[::1] mask, const double[::1] edges,
               double[:, ::1] out, uint8_t[::1] flags, bint logits, bint omit_nan, bint uniform,
               Py_ssize_t rows, int n_threads):
    """Calibration sums of 1-D contiguous p and y (fastbce/_metrics.py: calibration_curve):
    stripe s (rows elements from s·rows) into out[s] (NaN count, then count, Σw, Σw·q, Σw·y per
    bin) and its error bits into flags[s]; w and mask of one element apply to all. The twin of
    kernels/numba/histogram.py's calib_pass."""
    global _openmp_started
    if _single_threaded:
        n_threads = 1
    elif n_threads > 1:
        _openmp_started = True
    cdef const void *pp = <const void *>_ptr(p)
    cdef const void *yp = <const void *>_ptr(y)
    cdef int p_f64 = p.dtype == np.float64, y_kind = _Y_KINDS[y.dtype]
    cdef int64_t w_step = w.shape[0] > 1, m_step = mask.shape[0] > 1
    cdef Py_ssize_t n = p.shape[0], c, n_chunks = out.shape[0], nb = edges.shape[0] - 1
    for c in prange(n_chunks, nogil=True, schedule="static", num_threads=n_threads):
        flags[c] = fb_calib_chunk(pp, p_f64, yp, y_kind, &w[0], w_step, &mask[0], m_step, logits,
                                  omit_nan, &edges[0], nb, uniform, c * rows,
                                  min(n, (c + 1) * rows), &out[c, 0])


# ---------------------------------------------------------------------------------------------
# Margin and overlap losses (kernels/c/margin.h, the twin of kernels/numba/margin.py): hinge,
# squared hinge, and the soft counts of Dice and Tversky. fastbce/_margin.py prepares the arrays.
# ---------------------------------------------------------------------------------------------

cdef extern from "c/margin.h" nogil:
    ctypedef struct fb_margin_args:
        const void *y
        int y_kind
        const void *p
        int p_f64
        const void *w
        int w_kind
        const uint8_t *mask
        const void *groups
        int g_kind
        int loss
        int nan_mode
        int mode
        int want_sums
        int64_t ncols, row0, n_slots
        double *sums
        void *loss_out
        void *grad_out
        const double *coef
    int fb_margin_chunk(const fb_margin_args *a, int64_t chunk, int64_t start, int64_t stop)
    enum:
        FB_Y_I8

_MARGIN_Y_KINDS = {np.dtype(np.uint8): FB_Y_U8, np.dtype(np.int8): FB_Y_I8,
                   np.dtype(np.float32): FB_Y_F32, np.dtype(np.float64): FB_Y_F64}


def margin_pass(y, p, w, mask, groups, double[:, :, ::1] sums, uint8_t[::1] flags, loss_out,
                grad_out, coef, options, int n_threads):
    """One margin pass over C-contiguous 2-D arrays (fastbce/_margin.py); options: a
    kernels.MarginOptions. The twin of kernels/numba/margin.py's margin_pass."""
    global _openmp_started
    if _single_threaded:
        n_threads = 1
    elif n_threads > 1:
        _openmp_started = True
    cdef fb_margin_args a
    cdef Py_ssize_t n = p.size, n_chunks = flags.shape[0], chunk, start
    cdef Py_ssize_t chunk_elems = options.chunk_elems
    for array in (y, p, w, mask, groups, loss_out, grad_out, coef):
        if array is not None and not array.flags.c_contiguous:
            raise ValueError("margin_pass reads its arrays in place: they must be C-contiguous")
    a.y = <const void *>_address(y)
    a.y_kind = _MARGIN_Y_KINDS[y.dtype]
    a.p = <const void *>_address(p)
    a.p_f64 = p.dtype == np.float64
    a.w = NULL if w is None else <const void *>_address(w)
    a.w_kind = FB_W_NONE if w is None else _W_KINDS[w.dtype]
    a.mask = NULL if mask is None else <const uint8_t *>_address(mask)
    a.groups = NULL if groups is None else <const void *>_address(groups)
    a.g_kind = FB_G_I64 if groups is None else _G_KINDS[groups.dtype]
    a.loss = options.loss
    a.nan_mode = options.nan_mode
    a.mode = options.mode
    a.want_sums = options.want_sums
    a.ncols = p.shape[1]
    a.row0 = options.row0
    a.n_slots = sums.shape[1]
    a.sums = &sums[0, 0, 0]
    a.loss_out = NULL if loss_out is None else <void *>_address(loss_out)
    a.grad_out = NULL if grad_out is None else <void *>_address(grad_out)
    a.coef = NULL if coef is None else <const double *>_address(coef)
    for chunk in prange(n_chunks, nogil=True, schedule="static", num_threads=n_threads):
        start = chunk * chunk_elems
        flags[chunk] = fb_margin_chunk(&a, chunk, start, min(n, start + chunk_elems))
