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
    MODE_ALL,
    MODE_COLS,
    MODE_GROUPS,
    MODE_ROWS,
    NAN_OMIT,
    NAN_RAISE,
)


def _as_float64(array, is_half, shape):
    if is_half:
        array = array.view(np.float16)
    return np.broadcast_to(array.astype(np.float64), shape)


def _not_finite_or_negative(values):
    return ~((values >= 0.0) & (values < np.inf))


def prob_loss_grad(y, p, pos_weight, eps):
    """Loss -(pw·y·log q + (1-y)·log(1-q)), q = clip(p, eps, 1-eps), and d/dp (0 where clipped)."""
    q = np.clip(p, eps, 1.0 - eps)
    loss = -(pos_weight * y * np.log(q) + (1.0 - y) * np.log1p(-q))
    inside = (p >= eps) & (p <= 1.0 - eps)
    grad = np.where(inside, (1.0 - y) / (1.0 - q) - pos_weight * y / q, 0.0)
    return loss, np.where(np.isnan(p), p, grad)


def logit_loss_grad(y, x, pos_weight):
    """Loss pw·y·softplus(-x) + (1-y)·softplus(x) and d/dx = (1-y)·σ(x) - pw·y·σ(-x);
    zero-coefficient terms are left out so that x = ±inf gives the limit."""
    e = np.exp(-np.abs(x))
    log_term = np.log1p(e)
    a = pos_weight * y
    b = 1.0 - y
    loss = (np.where(a != 0.0, a * (np.maximum(-x, 0.0) + log_term), 0.0)
            + np.where(b != 0.0, b * (np.maximum(x, 0.0) + log_term), 0.0))
    sigmoid_x = np.where(x >= 0.0, 1.0, e) / (1.0 + e)
    sigmoid_minus_x = np.where(x >= 0.0, e, 1.0) / (1.0 + e)
    grad = b * sigmoid_x - a * sigmoid_minus_x
    return np.where(np.isnan(x), x, loss), np.where(np.isnan(x), x, grad)


def bce_pass(y, p, w, pw, mask, groups, y_half, p_half, from_logits, eps, smoothing, nan_mode,
             mode, rows_per_chunk, sums, loss_out, grad_out, row_scale, col_scale, flags, n_threads):
    """Same contract as the compiled ``bce_pass``; ``rows_per_chunk`` and ``n_threads`` are unused."""
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
        smoothed = y * (1.0 - smoothing) + 0.5 * smoothing
        if from_logits:
            loss, grad = logit_loss_grad(smoothed, p, pw)
        else:
            loss, grad = prob_loss_grad(smoothed, p, pw, eps)
        weight = np.where(counted, w, 0.0)
        loss = np.where(counted, w * loss, 0.0)
        grad = np.where(counted, w * grad, 0.0) * row_scale[:, None] * col_scale[None, :]

    if mode == MODE_ALL:
        sums[0, 0] = loss.sum(), weight.sum()
    elif mode == MODE_ROWS:
        sums[0, :, 0], sums[0, :, 1] = loss.sum(axis=1), weight.sum(axis=1)
    elif mode == MODE_COLS:
        sums[0, :, 0], sums[0, :, 1] = loss.sum(axis=0), weight.sum(axis=0)
    else:
        n_groups = sums.shape[1]
        groups = groups.astype(np.intp)
        sums[0, :, 0] = np.bincount(groups, weights=loss.sum(axis=1), minlength=n_groups)
        sums[0, :, 1] = np.bincount(groups, weights=weight.sum(axis=1), minlength=n_groups)
    if loss_out is not None:
        loss_out[...] = loss
    if grad_out is not None:
        grad_out[...] = grad
