"""NumPy reference backend: the same pass as the compiled kernels, in plain vectorised float64.

It is the test oracle and states the math once more in array form; it allocates temporaries the
size of the input and is single-threaded. All partial sums go into chunk 0.
"""

import numpy as np

from . import (
    FLAG_GROUP,
    FLAG_LABEL,
    FLAG_NAN,
    FLAG_POS_WEIGHT,
    FLAG_PRED,
    FLAG_WEIGHT,
    LOSS_OVERLAP,
    LOSS_SQUARED_HINGE,
    MODE_ALL,
    MODE_COLS,
    MODE_GROUPS,
    MODE_ROWS,
    NAN_OMIT,
    NAN_PROPAGATE,
    NAN_RAISE,
)


def _as_float64(array, is_half, shape):
    if is_half:
        array = array.view(np.float16)
    return np.broadcast_to(array.astype(np.float64), shape)


def _not_finite_or_negative(values):
    return ~((values >= 0.0) & (values < np.inf))


def prob_terms(p, lo, hi):
    """-log q, -log(1-q), their derivatives in p (0 where clipped), q, 1-q, dq/dp; q = clip(p, lo, hi)."""
    q = np.clip(p, lo, hi)
    inside = ((p >= lo) & (p <= hi)).astype(np.float64)
    return -np.log(q), -np.log1p(-q), -inside / q, inside / (1.0 - q), q, 1.0 - q, inside


def logit_terms(x):
    """softplus(-x), softplus(x), -σ(-x), σ(x), σ(x), σ(-x), σ(x)σ(-x), computed stably."""
    e = np.exp(-np.abs(x))
    log_term = np.log1p(e)
    sigmoid_x = np.where(x >= 0.0, 1.0, e) / (1.0 + e)
    sigmoid_minus_x = np.where(x >= 0.0, e, 1.0) / (1.0 + e)
    return (np.maximum(-x, 0.0) + log_term, np.maximum(x, 0.0) + log_term, -sigmoid_minus_x,
            sigmoid_x, sigmoid_x, sigmoid_minus_x, sigmoid_x * sigmoid_minus_x)


def element_terms(y, v, pos_weight, from_logits, lo, hi, gamma, alpha):
    """(loss, dloss/dv, q, positive part, negative part) of every element; see the Numba kernel."""
    nll_pos, nll_neg, d_pos, d_neg, q, q_bar, dq = (logit_terms(v) if from_logits
                                                    else prob_terms(v, lo, hi))
    a = pos_weight * y
    b = 1.0 - y
    positive = np.where(a != 0.0, a * nll_pos, 0.0)
    negative = np.where(b != 0.0, b * nll_neg, 0.0)
    loss = positive + negative
    grad = a * d_pos + b * d_neg
    if gamma != 0.0 or alpha >= 0.0:
        one_minus_pt = y * q_bar + b * q
        alpha_t = alpha * y + (1.0 - alpha) * b if alpha >= 0.0 else 1.0
        factor = alpha_t * one_minus_pt ** gamma
        d_factor = np.where((dq != 0.0) & (gamma != 0.0), gamma * factor * (b - y) * dq / one_minus_pt, 0.0)
        grad = np.where(factor == 0.0, 0.0, factor * grad + np.where(d_factor != 0.0, d_factor * loss, 0.0))
        loss = np.where(factor == 0.0, 0.0, factor * loss)
    nan = np.isnan(v)
    return tuple(np.where(nan, v, t) for t in (loss, grad, q, positive, negative))


def bce_pass(y, p, w, pw, mask, groups, row_scale, col_scale, sums, flags, loss_out, grad_out,
             options, n_threads):
    """Same contract as the compiled ``bce_pass``; ``options.rows_per_chunk`` and ``n_threads`` are
    unused (everything is summed into chunk 0)."""
    y_half, p_half, from_logits, lo, hi, smoothing, nan_mode, gamma, alpha, mode, _ = options
    shape = p.shape
    y = _as_float64(y, y_half, shape)
    p = _as_float64(p, p_half, shape)
    w = _as_float64(w, False, shape)
    pw = _as_float64(pw, False, shape)
    counted = np.broadcast_to(mask, shape).copy()
    bad = 0
    with np.errstate(all="ignore"):
        nan = np.isnan(y) | np.isnan(p)
        if nan_mode == NAN_RAISE and (nan & counted).any():
            bad |= FLAG_NAN
        if nan_mode in (NAN_RAISE, NAN_OMIT):
            counted &= ~nan
        if mode == MODE_GROUPS:
            bad_rows = (groups < 0) | (groups >= sums.shape[1])
            if bad_rows.any():
                bad |= FLAG_GROUP
            counted &= ~bad_rows[:, None]
        for bit, is_bad in ((FLAG_LABEL, (y < 0.0) | (y > 1.0)),
                            (FLAG_PRED, ((p < 0.0) | (p > 1.0)) & (not from_logits)),
                            (FLAG_WEIGHT, _not_finite_or_negative(w)),
                            (FLAG_POS_WEIGHT, _not_finite_or_negative(pw))):
            if (is_bad & counted).any():
                bad |= bit
        flags[0] = bad
        if bad:
            return
        y = y * (1.0 - smoothing) + 0.5 * smoothing
        loss, grad, q, positive, negative = element_terms(y, p, pw, from_logits, lo, hi, gamma, alpha)
        weighted = [np.where(counted, w * term, 0.0) for term in (loss, 1.0, y, q, positive, negative)]
        stats = (weighted[:2] + [counted.astype(np.float64)] + weighted[2:])[:sums.shape[2]]
        grad = np.where(counted, w * grad, 0.0) * row_scale[:, None] * col_scale[None, :]

    for index, stat in enumerate(stats):
        if mode == MODE_ALL:
            sums[0, 0, index] = stat.sum()
        elif mode == MODE_ROWS:
            sums[0, :, index] = stat.sum(axis=1)
        elif mode == MODE_COLS:
            sums[0, :, index] = stat.sum(axis=0)
        else:
            sums[0, :, index] = np.bincount(groups.astype(np.intp), weights=stat.sum(axis=1),
                                            minlength=sums.shape[1])
    with np.errstate(over="ignore"):  # beyond float32's range is inf, silently as in the kernels
        if loss_out is not None:
            loss_out[...] = stats[0]
        if grad_out is not None:
            grad_out[...] = grad


def margin_pass(y, p, w, mask, groups, sums, flags, loss_out, grad_out, coef, options, n_threads):
    """Same contract as the compiled ``margin_pass`` (kernels/c/margin.h), in float64 NumPy on
    2-D arrays of any layout; everything into chunk 0 (by rows: each row's slot). Hinge: t = +1
    for y = 1, else -1, l = max(0, 1 - t·x) (squared: l²), dl/dx = -t at the kink; overlap: the
    sums Σw·y·p, Σw·y, Σw·p, Σw."""
    loss, nan_mode, mode, _, _, want_sums = options
    shape = p.shape
    n_slots = sums.shape[1]
    y = y.astype(np.float64)
    p = p.astype(np.float64)
    w = np.ones(shape) if w is None else np.broadcast_to(w.astype(np.float64), shape)
    m = np.ones(shape, bool) if mask is None else np.broadcast_to(mask, shape).astype(bool)
    overlap = loss == LOSS_OVERLAP
    bad = 0
    with np.errstate(all="ignore"):
        nan = np.isnan(y) | np.isnan(p)
        counted = m & ~(nan & (nan_mode != NAN_PROPAGATE))
        if mode == MODE_GROUPS:
            bad_rows = (groups < 0) | (groups >= n_slots)
            if bad_rows.any():
                bad |= FLAG_GROUP
            counted &= ~bad_rows[:, None]
        if nan_mode == NAN_RAISE and (m & nan).any():
            bad |= FLAG_NAN
        if (counted & _not_finite_or_negative(w)).any():
            bad |= FLAG_WEIGHT
        if not overlap and (counted & ~np.isin(y, (-1.0, 0.0, 1.0)) & ~np.isnan(y)).any():
            bad |= FLAG_LABEL
        flags[0] = bad
        if bad:
            return
        v1 = np.where(counted, w, 0.0)
        if overlap:
            v0 = np.where(counted, p, 0.0)
            v2 = np.where(counted, w * y, 0.0)
            stats = (v0 * v2, v2, v0 * v1, v1)
        else:
            t = np.where(y == 1.0, 1.0, -1.0)
            margin = 1.0 - t * p
            h = np.maximum(margin, 0.0)
            squared = loss == LOSS_SQUARED_HINGE
            d = -2.0 * t * h if squared else np.where(margin < 0.0, 0.0, -t)
            l = h * h if squared else h
            v0 = np.where(counted, np.where(nan, y + p, l), 0.0)
            v2 = np.where(counted, np.where(nan, y + p, d), 0.0)
            zero = np.zeros(shape)
            stats = (v0 * v1, v1, zero, zero)
        if grad_out is not None:
            if mode == MODE_ALL:
                k = coef[0][None, None, :]
            elif mode == MODE_COLS:
                k = coef[None, :, :]
            elif mode == MODE_ROWS:
                k = coef[:shape[0], None, :]
            else:
                k = np.where(bad_rows[:, None], 0.0, coef[np.clip(groups, 0, n_slots - 1)])[:, None, :]
            g = v1 * k[..., 0] + v2 * k[..., 1] if overlap else (v1 * v2) * k[..., 0]
            grad_out[...] = np.where(v1 == 0.0, 0.0, g)
        if loss_out is not None:
            loss_out[...] = v0 * v1
    if not want_sums:
        return
    for index, stat in enumerate(stats):
        if mode == MODE_ALL:
            sums[0, 0, index] = stat.sum()
        elif mode == MODE_ROWS:
            sums[0, :, index] = stat.sum(axis=1)
        elif mode == MODE_COLS:
            sums[0, :, index] = stat.sum(axis=0)
        else:
            sums[0, :, index] = np.bincount(np.where(bad_rows, 0, groups).astype(np.intp),
                                            weights=np.where(bad_rows, 0.0, stat.sum(axis=1)),
                                            minlength=n_slots)
