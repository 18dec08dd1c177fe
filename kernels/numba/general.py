"""Numba backend, general pass: the twin of the general pass of kernels/cython_kernels.pyx (the
same element formula in the same order; kernels/reference.py states it once more in NumPy).

Every call the fast path does not take runs here, in float64 per element. Rows are cut into fixed
chunks (their size does not depend on the thread count); each chunk is summed serially in float64
into its own slot of ``sums``, and the caller adds the chunks up in order, so reductions are
bit-identical for any number of threads.
"""

import math

import numba
import numpy as np
from numba import njit, prange

from .. import (
    FLAG_GROUP,
    FLAG_LABEL,
    FLAG_NAN,
    FLAG_POS_WEIGHT,
    FLAG_PRED,
    FLAG_WEIGHT,
    MODE_COLS,
    MODE_GROUPS,
    MODE_ROWS,
    NAN_OMIT,
    NAN_RAISE,
    PassOptions,
)
from .dispatch import read_only


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
def as_double(array, i, j, is_half):
    """Element (i, j) as float64; float16 arrays arrive viewed as uint16 (their bits)."""
    if is_half:
        return half_to_double(array[i, j])
    return np.float64(array[i, j])


@njit(cache=True)
def prob_terms(p, lo, hi):
    """Per-form math for a probability p, with q = clip(p, lo, hi) (the bounds: eps and 1 - eps
    rounded to the prediction's dtype): the negative log-likelihoods -log q and -log(1-q), their
    derivatives in p (0 where p is clipped; at the bounds, the derivative), q, 1-q and dq/dp."""
    q = min(max(p, lo), hi)
    inside = 1.0 if lo <= p <= hi else 0.0
    return -math.log(q), -math.log1p(-q), -inside / q, inside / (1.0 - q), q, 1.0 - q, inside


@njit(cache=True)
def logit_terms(x):
    """Per-form math for a logit x, with q = σ(x): -log σ(x) = softplus(-x), -log(1-σ(x)) =
    softplus(x), their derivatives -σ(-x) and σ(x), q, 1-q = σ(-x) and dq/dx = σ(x)σ(-x);
    softplus(t) = max(t, 0) + log1p(exp(-|t|)) is finite for every finite x."""
    e = math.exp(-abs(x))
    log_term = math.log1p(e)
    inv = 1.0 / (1.0 + e)
    sigmoid_x = inv if x >= 0.0 else e * inv
    sigmoid_minus_x = e * inv if x >= 0.0 else inv
    return (max(-x, 0.0) + log_term, max(x, 0.0) + log_term, -sigmoid_minus_x, sigmoid_x,
            sigmoid_x, sigmoid_minus_x, sigmoid_x * sigmoid_minus_x)


@njit(cache=True)
def weighted_element(y, v, w, pos_weight, from_logits, lo, hi, keep, shift, nan_mode, gamma,
                     alpha):
    """One unmasked element: (error bits, counted, w, w·loss, w·dloss/dv, w·y, w·q, w·positive part,
    w·negative part). Loss = α_t·(1-p_t)^γ·(pw·y·(-log q) + (1-y)·(-log(1-q))) with y smoothed,
    p_t = q·y + (1-q)·(1-y), α_t = α·y + (1-α)·(1-y) (α < 0: no α factor; γ = 0, α < 0: plain BCE).
    A term with a zero coefficient is left out, so that logits ±inf give the limit, not 0·inf."""
    if math.isnan(y) or math.isnan(v):
        if nan_mode == NAN_RAISE:
            return FLAG_NAN, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
        if nan_mode == NAN_OMIT:
            return 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    bad = 0
    if y < 0.0 or y > 1.0:
        bad |= FLAG_LABEL
    if not from_logits and (v < 0.0 or v > 1.0):
        bad |= FLAG_PRED
    if not (0.0 <= w < math.inf):
        bad |= FLAG_WEIGHT
    if not (0.0 <= pos_weight < math.inf):
        bad |= FLAG_POS_WEIGHT
    if bad:
        return bad, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    if math.isnan(v):
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
        factor = alpha_t * one_minus_pt ** gamma
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


@njit(parallel=True, cache=True, nogil=True)
def _bce_pass(y, p, w, pw, mask, groups, row_scale, col_scale, sums, flags, loss_out, grad_out,
              options, write_loss, write_grad):
    """The chunks in parallel; options: the fields of a kernels.PassOptions as a plain tuple (see
    dispatch._fast_pass), write_loss/write_grad: whether loss_out and grad_out are real outputs
    (else placeholders of the same type: one compilation)."""
    o = PassOptions(*options)
    n_rows, n_cols = p.shape
    n_slots = sums.shape[1]
    score_stats = sums.shape[2] > 2
    keep = 1.0 - o.smoothing
    shift = 0.5 * o.smoothing
    mode = o.mode
    rows_per_chunk = o.rows_per_chunk
    per_row_scale = row_scale.shape[0] > 1
    per_col_scale = col_scale.shape[0] > 1
    for chunk in prange(flags.shape[0]):
        k = np.int64(0) if mode == MODE_ROWS else np.int64(chunk)
        bad = 0
        for i in range(chunk * rows_per_chunk, min(n_rows, (chunk + 1) * rows_per_chunk)):
            row_slot = 0
            if mode == MODE_ROWS:
                row_slot = i
            elif mode == MODE_GROUPS:
                row_slot = np.int64(groups[i])  # uint64 ids would not unify with int64
                if row_slot < 0 or row_slot >= n_slots:
                    bad |= FLAG_GROUP
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
                    as_double(y, i, j, o.y_half), as_double(p, i, j, o.p_half),
                    np.float64(w[i, j]), np.float64(pw[i, j]), o.from_logits, o.clip_lo, o.clip_hi,
                    keep, shift, o.nan_mode, o.gamma, o.alpha)
                bad |= bits
                slot = j if mode == MODE_COLS else row_slot
                sums[k, slot, 0] += loss
                sums[k, slot, 1] += weight
                if score_stats:
                    sums[k, slot, 2] += counted
                    sums[k, slot, 3] += wy
                    sums[k, slot, 4] += wq
                    sums[k, slot, 5] += positive
                    sums[k, slot, 6] += negative
                if write_loss:
                    loss_out[i, j] = loss
                if write_grad:
                    c_scale = col_scale[j] if per_col_scale else col_scale[0]
                    grad_out[i, j] = grad * r_scale * c_scale
        flags[chunk] = bad


def bce_pass(y, p, w, pw, mask, groups, row_scale, col_scale, sums, flags, loss_out, grad_out,
             options, n_threads):
    """Run the pass on ``n_threads`` threads; ``loss_out``/``grad_out`` may be None (not wanted)."""
    out_dtype = np.float64 if p.dtype == np.float64 else np.float32
    placeholder = np.empty((1, 1), out_dtype)  # same type as a real output: no extra compilation
    # thread-local in Numba: concurrent callers do not interfere. Numba refuses more than the
    # NUMBA_NUM_THREADS it launched with (an environment variable users set); results do not
    # depend on the thread count, so cap instead of failing.
    numba.set_num_threads(min(n_threads, numba.config.NUMBA_NUM_THREADS))
    y, p, w, pw, mask, groups = read_only(y, p, w, pw, mask, groups)
    _bce_pass(y, p, w, pw, mask, groups, row_scale, col_scale, sums, flags,
              placeholder if loss_out is None else loss_out,
              placeholder if grad_out is None else grad_out, tuple(options),
              loss_out is not None, grad_out is not None)
