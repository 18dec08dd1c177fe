"""NumPy reference backend: the same pass as the compiled kernels, in plain vectorised float64.

It is the test oracle and states the math once more in array form; it allocates temporaries the
size of the input and is single-threaded. All partial sums go into chunk 0.
"""

import numpy as np

from . import (
    ELEMENT_LOSS,
    K_F16,
    K_NONE,
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


def _checked(y, p, w, pw, mask, y_half, p_half, from_logits, nan_mode, bad_rows=None):
    """(y, p, w, pw as float64, counted, error bits) of a pass's inputs: the checks of every
    counted element; bad_rows (group ids out of range) are flagged and not counted."""
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
        if bad_rows is not None:
            if bad_rows.any():
                bad |= FLAG_GROUP
            counted &= ~bad_rows[:, None]
        for bit, is_bad in ((FLAG_LABEL, (y < 0.0) | (y > 1.0)),
                            (FLAG_PRED, ((p < 0.0) | (p > 1.0)) & (not from_logits)),
                            (FLAG_WEIGHT, _not_finite_or_negative(w)),
                            (FLAG_POS_WEIGHT, _not_finite_or_negative(pw))):
            if (is_bad & counted).any():
                bad |= bit
    return y, p, w, pw, counted, bad


def bce_pass(y, p, w, pw, mask, groups, row_scale, col_scale, sums, flags, loss_out, grad_out,
             options, n_threads):
    """Same contract as the compiled ``bce_pass``; ``options.rows_per_chunk`` and ``n_threads`` are
    unused (everything is summed into chunk 0)."""
    y_half, p_half, from_logits, lo, hi, smoothing, nan_mode, gamma, alpha, mode, _ = options
    bad_rows = None
    if mode == MODE_GROUPS:
        bad_rows = (groups < 0) | (groups >= sums.shape[1])
    y, p, w, pw, counted, flags[0] = _checked(y, p, w, pw, mask, y_half, p_half, from_logits,
                                              nan_mode, bad_rows)
    if flags[0]:
        return
    with np.errstate(all="ignore"):
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


def grad_hess_terms(y, x, pos_weight, gamma, alpha):
    """(dl/dx, d²l/dx²) of every element with respect to the logit x, in float64. BCE (a = pw·y,
    b = 1-y, s = σ(x)σ(-x)): g = b·σ(x) - a·σ(-x), h = (a + b)·s. Focal loss f·CE with
    f = α_t·z^γ, z = 1-p_t = y·σ(-x) + b·σ(x), c = b - y and r = s/z: f' = γ·f·c·r,
    f'' = γ·f·c·((γ-1)·c·r² + r·(σ(-x) - σ(x))), FL' = f·g + f'·CE, FL'' = f''·CE + 2·f'·g + f·h."""
    e = np.exp(-np.abs(x))
    big = 1.0 / (1.0 + e)
    small = e * big
    q = np.where(x >= 0.0, big, small)
    q_bar = np.where(x >= 0.0, small, big)
    s = big * small
    a = pos_weight * y
    b = 1.0 - y
    grad = b * q - a * q_bar
    hess = (a + b) * s
    if gamma != 0.0 or alpha >= 0.0:
        log_term = np.log1p(e)
        ce = (np.where(a != 0.0, a * (np.maximum(-x, 0.0) + log_term), 0.0)
              + np.where(b != 0.0, b * (np.maximum(x, 0.0) + log_term), 0.0))
        z = y * q_bar + b * q
        alpha_t = alpha * y + (1.0 - alpha) * b if alpha >= 0.0 else 1.0
        f = alpha_t * z ** gamma
        c = b - y
        r = np.where(z > 0.0, s / np.where(z > 0.0, z, 1.0), 0.0)
        d_f = gamma * f * c * r
        d2_f = gamma * f * c * ((gamma - 1.0) * c * r * r + r * (q_bar - q))
        focal_grad = f * grad + np.where(d_f != 0.0, d_f * ce, 0.0)  # CE = inf where f' = 0
        focal_hess = np.where(d2_f != 0.0, d2_f * ce, 0.0) + 2.0 * d_f * grad + f * hess
        grad = np.where(f == 0.0, 0.0, focal_grad)
        hess = np.where(f == 0.0, 0.0, focal_hess)
    nan = np.isnan(x)
    return np.where(nan, x, grad), np.where(nan, x, hess)


def _view(operand, shape, fill):
    """The 2-D view of an element pass operand (kernels.ElementOptions), ``fill`` where absent."""
    flat, offset, kind, rs, cs = operand
    if kind == K_NONE:
        return np.broadcast_to(fill, shape)
    view = np.lib.stride_tricks.as_strided(flat[offset:], shape, (rs * flat.itemsize, cs * flat.itemsize),
                                           writeable=flat.flags.writeable)
    return view.view(np.float16) if kind == K_F16 else view.view(np.bool_) if fill is True else view


def element_pass(y, p, w, pw, mask, shape, flags, out1, out2, options, n_threads):
    """Same contract as the compiled ``element_pass`` (kernels.ElementOptions): out1 = w·loss
    (ELEMENT_LOSS), or out1, out2 = w·dl/dx, w·d²l/dx² (ELEMENT_GRAD_HESS); 0 where masked or
    omitted. The error bits go to chunk 0."""
    o = options
    y, p, w, pw, mask = (_view(a, shape, fill) for a, fill in
                         ((y, 0.0), (p, 0.0), (w, 1.0), (pw, 1.0), (mask, True)))
    y, p, w, pw, counted, flags[0] = _checked(y, p, w, pw, mask, False, False, o.from_logits,
                                              o.nan_mode)
    if flags[0]:
        return
    out1 = _view(out1, shape, None)
    with np.errstate(all="ignore"):
        y = y * (1.0 - o.smoothing) + 0.5 * o.smoothing
        if o.output == ELEMENT_LOSS:
            loss = element_terms(y, p, pw, o.from_logits, o.clip_lo, o.clip_hi, o.gamma, o.alpha)[0]
            out1[...] = np.where(counted, w * loss, 0.0)
        else:
            grad, hess = grad_hess_terms(y, p, pw, o.gamma, o.alpha)
            out1[...] = np.where(counted, w * grad, 0.0)
            _view(out2, shape, None)[...] = np.where(counted, w * hess, 0.0)


def hist_pass(p, y, w, mask, groups, hist, extra, flags, options, n_threads):
    """Same contract as the compiled ``hist_pass`` (kernels/c/histogram.h states the sums and
    the error bits), in float64 NumPy; everything goes into chunk 0."""
    shape = p.shape
    x = p.astype(np.float64)
    y = np.broadcast_to(y, shape).astype(np.float64)
    w = np.broadcast_to(w, shape).astype(np.float64)
    slots = {MODE_ALL: np.zeros(shape, np.intp), MODE_COLS: np.broadcast_to(np.arange(shape[1]), shape),
             MODE_GROUPS: np.broadcast_to(groups[:, None], shape)}[options.mode]
    counted = np.broadcast_to(mask, shape).astype(bool)
    nan = counted & (np.isnan(x) | np.isnan(y))
    flags[0] = (FLAG_LABEL * bool(np.any(counted & ((y < 0) | (y > 1))))
                | FLAG_PRED * bool(not options.logits and np.any(counted & ((x < 0) | (x > 1))))
                | FLAG_WEIGHT * bool(np.any(counted & ~((w >= 0) & (w < np.inf)))))
    n_slots, n_extra = extra.shape[1:]
    if not options.omit_nan:
        extra[0, :, 0] += np.bincount(slots[nan], minlength=n_slots)
    keep = counted & ~nan
    x, y, w, slots = x[keep], y[keep], w[keep], slots[keep]
    with np.errstate(over="ignore"):
        t = np.exp(-np.abs(x))
    high = x >= (0.0 if options.logits else 0.5)
    if options.logits:
        v = t / (1.0 + t)
        q = np.where(high, 1.0 / (1.0 + t), v)
    else:
        q, v = x, np.where(high, 1.0 - x, x)

    def add(column, values):
        extra[0, :, column] += np.bincount(slots, values, minlength=n_slots)

    wy = w * y
    wn = w - wy
    if options.n_buckets:
        bits = v.astype(np.float32).view(np.int32).astype(np.int64)
        k = np.where(bits < 0x33800000, 0, (bits - 0x33800000) >> options.shift)
        index = slots * options.n_buckets + np.where(high, 2 * options.top + 1 - k, k)
        size = n_slots * options.n_buckets
        hist[0, ..., 0] += np.bincount(index, wy, minlength=size).reshape(n_slots, -1)
        hist[0, ..., 1] += np.bincount(index, wn, minlength=size).reshape(n_slots, -1)
    add(1, w * (q - y) ** 2)
    above = x >= options.cut
    add(2, np.where(above, wy, 0.0))
    add(3, np.where(above, wn, 0.0))
    bins = np.minimum((q * options.n_bins).astype(np.int64), options.n_bins - 1)
    for offset, values in enumerate((w, wy, w * q)):
        index = slots * options.n_bins + bins
        extra[0, :, 4 + offset::3] += np.bincount(index, values, minlength=n_slots * options.n_bins).reshape(n_slots, -1)


def rank(y, p, w, mask, omit, want_curve, n_threads):
    """Ranking sums of one 1-D slice, the oracle of ``rank`` in kernels/numba/rank.py (same
    arguments and results): (P, N, 2·U, A, flags, curve) with, per distinct prediction v walked
    from the top, tp, fp its positive and negative weights and TP, FP those at or above v:
    2·U = Σ fp·(2·TP - tp), A = Σ tp·TP/(TP + FP); flags 1 soft label, 2 NaN, 4 bad weight."""
    y = np.asarray(y, np.float64)
    p = np.asarray(p)
    w = np.ones(y.shape) if w is None else np.asarray(w, np.float64)
    nan = np.isnan(y) | np.isnan(p)
    keep = np.ones(y.shape, bool) if mask is None else mask.astype(bool)
    if omit:
        keep &= ~nan
    y, p, w, nan = y[keep], p[keep], w[keep], nan[keep]
    flags = (1 * bool(np.any((y != 0) & (y != 1) & ~np.isnan(y))) | 2 * bool(nan.any())
             | 4 * bool(np.any(~((w >= 0) & (w < np.inf)))))
    if flags & 5:
        return 0.0, 0.0, 0.0, 0.0, flags, None
    values, inverse = np.unique(np.where(np.isnan(p), np.inf, p), return_inverse=True)
    tp = np.bincount(inverse, w * (y == 1), minlength=values.size)[::-1]
    fp = np.bincount(inverse, w * (y != 1), minlength=values.size)[::-1]
    big_tp, big_fp = np.cumsum(tp), np.cumsum(fp)
    u2 = float(np.sum(fp * (2.0 * big_tp - tp)))
    with np.errstate(invalid="ignore", divide="ignore"):
        a = float(np.sum(np.where(tp > 0, tp * (big_tp / (big_tp + big_fp)), 0.0)))
    big_p, big_n = (float(big_tp[-1]), float(big_fp[-1])) if values.size else (0.0, 0.0)
    curve = (values[::-1].astype(p.dtype), big_tp, big_fp) if want_curve else None
    return big_p, big_n, u2, a, flags, curve


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
