"""Numba fast path, block loops: the twin of kernels/c/blocks.h (same functions, same order).

A block is BLOCK elements of a chunk: its labels and weights are loaded into buffers and checked,
its losses and gradient computed by form, focal loss in one pass, the factors of the product path
formed, and 1-D input by group scattered into the group slots. The block functions take views of
the block (index k >= 0: no wraparound code, so that LLVM vectorises the loops).
"""

import numpy as np
from numba import njit

from .. import (
    FLAG_GROUP,
    FLAG_LABEL,
    FLAG_NAN,
    FLAG_PRED,
    FLAG_WEIGHT,
    GROUP_PRODUCT_MAX,
    GROUP_PRODUCT_MIN,
    MODE_ROWS,
    NAN_OMIT,
    NAN_PROPAGATE,
    NAN_RAISE,
    PROD_LANES,
)
from .forms import (
    coefficients,
    coefficients_f64,
    exp_abs,
    focal,
    grad_logit,
    grad_prob,
    nll_as_type_of,
    nll_hard,
    nll_logit,
    nll_soft,
)
from .llvm import INLINE, JIT, fma, prefer_wide_vectors
from .math import F32, as_type_of, one_like, split_one


@njit(**INLINE)
def group(g32, g64, g_i32, row):
    """The group id of a row, from int32 or int64 ids."""
    return np.int64(g32[row]) if g_i32 else np.int64(g64[row])


@njit(**JIT)
def by_column(buf, v, j, ncols, n):
    """buf[k] = v[column of element k] for the n elements of a block whose first element is in
    column j: the per-column values (pos_weight, gradient scale) of a block."""
    prefer_wide_vectors()
    k = 0
    while k < n:
        run = min(n - k, ncols - j)
        for t in range(run):  # not a slice assignment: it compiles a shape error's message
            buf[k + t] = v[j + t]
        k += run
        j = 0


@njit(**INLINE)
def _label_flags(v):
    """(label v out of [0, 1], v not 0 or 1), compared in the label's own type: as boolean
    accumulators, twice as fast as integer ones."""
    return (v < 0) | (v > 1), (v != 0) & (v != 1)


@njit(**JIT)
def load_labels(y, n, ybuf):
    """Labels of a block into ybuf; (any out of [0, 1], any not 0 or 1)."""
    prefer_wide_vectors()
    bad = False
    soft = False
    for k in range(n):
        v = y[k]
        out, not01 = _label_flags(v)
        bad |= out
        soft |= not01
        ybuf[k] = v
    return bad, soft


@njit(**JIT)
def load_weights(w, n, wbuf):
    prefer_wide_vectors()
    bad = 0
    for k in range(n):
        v = np.float64(w[k])
        bad |= not ((v >= 0.0) & (v < np.inf))
        wbuf[k] = v
    return bad


@njit(**JIT)
def recheck(y, p, has_w, nan_mode, n, mbuf, wbuf):
    """Exact label/weight error bits: masked elements and NaNs that nan_policy takes out are not
    checked (rare: only for a block with a bad value)."""
    prefer_wide_vectors()
    bad = 0
    for k in range(n):
        pv = p[k]
        yv = np.float64(y[k])
        skip = (((pv != pv) | (yv != yv)) & (nan_mode != NAN_PROPAGATE)) | (mbuf[k] == 0)
        if not skip and (yv < 0.0 or yv > 1.0):
            bad |= FLAG_LABEL
        if not skip and has_w and not (wbuf[k] >= 0.0 and wbuf[k] < np.inf):
            bad |= FLAG_WEIGHT
    return bad


@njit(**INLINE)
def _clamped_q(pv, yv, q_lo, q_hi):
    """(p clamped to [q_lo, q_hi] in float64, q = that p (y = 1) or 1 - it (y = 0))."""
    pd = np.float64(pv)
    pd = q_lo if pd < q_lo else pd
    pd = q_hi if pd > q_hi else pd
    return pd, (pd if yv != 0 else 1.0 - pd)


@njit(**JIT)
def q_block(p, n, ybuf, q_lo, q_hi, qbuf):
    """Product path: q = p (y = 1) or 1 - p (y = 0), p clamped to [q_lo, q_hi] in float64, into
    qbuf; False when some p is outside [0, 1] or NaN."""
    prefer_wide_vectors()
    ok = True
    for k in range(n):
        pv = p[k]
        ok &= (pv >= 0) & (pv <= 1)
        qbuf[k] = _clamped_q(pv, ybuf[k], q_lo, q_hi)[1]
    return ok


@njit(**JIT)
def q_block_compensated(p, n, ybuf, q_lo, q_hi, qbuf, qlo):
    """q_block for float64 p, and the rounding of 1 - p into qlo, so that q = qbuf + qlo exactly.
    One loop, as C's (two were slower)."""
    prefer_wide_vectors()
    ok = True
    for k in range(n):
        pv = p[k]
        ok &= (pv >= 0) & (pv <= 1)
        pd, q = _clamped_q(pv, ybuf[k], q_lo, q_hi)
        qbuf[k] = q
        qlo[k] = 0.0 if ybuf[k] != 0 else (1.0 - q) - pd
    return ok


@njit(**JIT)
def q_block_logit(x, y, n, ybuf, qbuf, lbuf, ebuf):
    """Product path from logits: factors 1 + exp(-|x|) into qbuf, the rest of the loss into lbuf,
    e = exp(-|x|) into ebuf, and the labels into ybuf as load_labels; returns (no x is NaN, any
    label out of [0, 1], any label not 0 or 1): the values are those of a hard block, for the
    caller to use only if it is one. The labels are loaded here, not in a loop of their own, which
    is faster in Numba (in C and in q_block it is slower). Two loops: the float32 one vectorises
    at the float32 width only without float64 arithmetic in it."""
    prefer_wide_vectors()
    ok = True
    bad = False
    soft = False
    tiny_e = F32(2.0 ** -28)
    for k in range(n):
        v = y[k]
        out, not01 = _label_flags(v)
        bad |= out
        soft |= not01
        ybuf[k] = v
        xv = x[k]
        ok &= xv == xv
        e = exp_abs(xv)
        ebuf[k] = e
        zero = one_like(xv) - one_like(xv)
        s = -xv if v != 0 else xv  # |x| on the wrong side, else -|x|
        lin = s if s > zero else zero
        lbuf[k] = lin + e if e < tiny_e else lin
    for k in range(n):
        e = ebuf[k]
        qbuf[k] = 1.0 if e < tiny_e else 1.0 + np.float64(e)
    return ok, bad, soft


@njit(**INLINE)
def _clean_element(pv, yv, logits, soft):
    """Whether an element needs no check and no NaN handling: no NaN and, from probabilities, p in
    [0, 1] (the labels of a hard block are 0 or 1)."""
    ok = (pv == pv) if logits else (pv >= 0) & (pv <= 1)
    return ok & (yv == yv) if soft else ok


@njit(**JIT)
def _clean_block(p, y, n, logits, soft):
    """Whether every element of a block is clean (_clean_element), in a loop of its own: a
    running flag in a loss loop keeps LLVM from vectorising it well."""
    prefer_wide_vectors()
    clean = True
    for k in range(n):
        clean &= _clean_element(p[k], y[k], logits, soft)
    return clean


@njit(**JIT)
def check_block(p, n, ybuf, mbuf, check_p, nan_mode):
    """Error bits of predictions out of [0, 1] and of NaN under nan_policy="raise"."""
    prefer_wide_vectors()
    bad = 0
    skip_nan = nan_mode != NAN_PROPAGATE
    raise_nan = nan_mode == NAN_RAISE
    for k in range(n):
        pv = p[k]
        yv = ybuf[k]
        on = mbuf[k] != 0
        isn = (pv != pv) | (yv != yv)
        skip = (not on) | (isn & skip_nan)
        bad |= FLAG_PRED if check_p & ((pv < 0) | (pv > 1)) & (not skip) else 0
        bad |= FLAG_NAN if isn & raise_nan & on else 0
    return bad


@njit(**INLINE)
def _element_value(l, pv, yv, on, omit):
    """The loss of an element: 0 when masked or an omitted NaN, NaN for another NaN."""
    zero = one_like(l) - one_like(l)
    isn = (pv != pv) | (yv != yv)
    l = (zero if omit else pv + yv) if isn else l
    return l if on else zero


@njit(**INLINE)
def _store_loss(lbuf, k, l, pv, yv, mbuf, omit):
    """lbuf[k] = the loss l of element k, as it is in a block taken to be clean (mbuf None: the
    caller checks that with _clean_block), else by _element_value."""
    if mbuf is None:
        lbuf[k] = l
    else:
        lbuf[k] = _element_value(l, pv, yv, mbuf[k] != 0, omit)


@njit(**JIT)
def _loss_hard(p, n, ybuf, mbuf, pbuf, coef, lbuf, clip_lo, clip_hi, nll, omit):
    prefer_wide_vectors()
    lo_pos, lo_neg, hi_pos, hi_neg = nll_as_type_of(clip_lo, nll)
    clean = True
    if mbuf is None:
        clean = _clean_block(p, ybuf, n, False, False)
    for k in range(n):
        pv = p[k]
        yv = ybuf[k]
        l = nll_hard(pv, yv, clip_lo, clip_hi, lo_pos, lo_neg, hi_pos, hi_neg)
        a = coefficients(coef, pbuf[k], yv)[0]
        l = a * l if coef is not None and yv != 0 else l
        _store_loss(lbuf, k, l, pv, yv, mbuf, omit)
    return clean


@njit(**JIT)
def loss_soft(p, y, n, ybuf, mbuf, pbuf, coef, lbuf, clip_lo, clip_hi, nll, omit):
    """Soft-label losses; y None: the labels in ybuf, else loaded from y into ybuf here, in the
    loss loop (faster than a loop of their own, as in q_block_logit). Returns (clean
    (_store_loss), any label out of [0, 1], any not 0 or 1)."""
    prefer_wide_vectors()
    lo_pos, lo_neg, hi_pos, hi_neg = nll_as_type_of(clip_lo, nll)
    clean = True
    if mbuf is None:
        if y is None:
            clean = _clean_block(p, ybuf, n, False, True)
        else:
            clean = _clean_block(p, y, n, False, True)
    bad = False
    soft = False
    for k in range(n):
        pv = p[k]
        if y is None:
            yv = ybuf[k]
        else:
            v = y[k]
            out, not01 = _label_flags(v)
            bad |= out
            soft |= not01
            yv = as_type_of(pv, v)
            ybuf[k] = yv
        a, b = coefficients(coef, pbuf[k], yv)
        l = nll_soft(pv, a, b, clip_lo, clip_hi, lo_pos, lo_neg, hi_pos, hi_neg)
        _store_loss(lbuf, k, l, pv, yv, mbuf, omit)
    return clean, bad, soft


@njit(**JIT)
def _loss_logit(p, n, ybuf, mbuf, pbuf, coef, lbuf, ebuf, soft, omit):
    prefer_wide_vectors()
    clean = True
    if mbuf is None:
        clean = _clean_block(p, ybuf, n, True, soft)
    for k in range(n):
        pv = p[k]
        yv = ybuf[k]
        e = exp_abs(pv)
        ebuf[k] = e
        a, b = coefficients(coef, pbuf[k], yv)
        l = nll_logit(pv, a, b, e, coef is not None)
        _store_loss(lbuf, k, l, pv, yv, mbuf, omit)
    return clean


@njit(**INLINE)
def loss_block(p, n, ybuf, mbuf, pbuf, coef, lbuf, ebuf, clip_lo, clip_hi, nll, omit, logits,
                soft):
    """The losses of a block into lbuf, by form. mbuf None: the losses of the block taken to be
    clean (_clean_element), without checks or NaN handling; returns whether it is (when it is not,
    the caller computes them again with mbuf), as fb_loss_block's `clean` loops: LLVM's loops
    are much faster without the checks."""
    if logits:
        return _loss_logit(p, n, ybuf, mbuf, pbuf, coef, lbuf, ebuf, soft, omit)
    if soft:
        return loss_soft(p, None, n, ybuf, mbuf, pbuf, coef, lbuf, clip_lo, clip_hi, nll, omit)[0]
    return _loss_hard(p, n, ybuf, mbuf, pbuf, coef, lbuf, clip_lo, clip_hi, nll, omit)


@njit(**JIT)
def count_weights(p, n, ybuf, mbuf, wbuf, omit):
    """Counted weights: 0 where masked or an omitted NaN."""
    prefer_wide_vectors()
    for k in range(n):
        pv = p[k]
        yv = ybuf[k]
        isn = (pv != pv) | (yv != yv)
        wbuf[k] = 0.0 if (mbuf[k] == 0) | (isn & omit) else wbuf[k]


@njit(**INLINE)
def _grad_value(g, pv, yv, on, w, scale, omit):
    isn = (pv != pv) | (yv != yv)
    g = g * w * scale
    g = (0.0 if omit else np.float64(pv + yv)) if isn else g
    return g if on else 0.0


@njit(**JIT)
def _grad_prob_block(p, n, ybuf, mbuf, wbuf, pbuf, coef, sbuf, grad, clip_lo, clip_hi, omit):
    prefer_wide_vectors()
    for k in range(n):
        pv = p[k]
        yv = ybuf[k]
        a, b = coefficients_f64(coef, pbuf[k], yv)
        g = grad_prob(pv, yv, a, b, clip_lo, clip_hi, coef is not None)
        grad[k] = _grad_value(g, pv, yv, mbuf[k] != 0, wbuf[k], sbuf[k], omit)


@njit(**JIT)
def exp_abs_block(p, n, ebuf):
    """exp(-|x|) of a block into ebuf, in a loop of its own (float32 arithmetic only: vectorised
    at the float32 width)."""
    prefer_wide_vectors()
    for k in range(n):
        ebuf[k] = exp_abs(p[k])


@njit(**JIT)
def _grad_logit_block(p, n, ybuf, mbuf, wbuf, pbuf, coef, sbuf, ebuf, have_e, grad, omit):
    """have_e: ebuf holds exp(-|x|) from the loss loop; else it is computed first
    (exp_abs_block)."""
    prefer_wide_vectors()
    if not have_e:
        exp_abs_block(p, n, ebuf)
    for k in range(n):
        pv = p[k]
        yv = ybuf[k]
        e = ebuf[k]
        a, b = coefficients_f64(coef, pbuf[k], yv)
        g = grad_logit(pv, a, b, e)
        grad[k] = _grad_value(g, pv, yv, mbuf[k] != 0, wbuf[k], sbuf[k], omit)


@njit(**INLINE)
def grad_block(p, n, ybuf, mbuf, wbuf, pbuf, coef, sbuf, ebuf, have_e, grad, clip_lo, clip_hi,
                omit, logits):
    """The gradient of a block into grad, by form."""
    if logits:
        _grad_logit_block(p, n, ybuf, mbuf, wbuf, pbuf, coef, sbuf, ebuf, have_e, grad, omit)
    else:
        _grad_prob_block(p, n, ybuf, mbuf, wbuf, pbuf, coef, sbuf, grad, clip_lo, clip_hi, omit)


@njit(**JIT)
def grad_logit_hard(p, n, ybuf, ebuf, grad, scale):
    """The gradient from logits of a block of 0/1 labels without weights, coefficients or row or
    column scales, in the dtype of p: the numerator is exact (e, 1, -e or -1), so the quotient
    and the scale in float32 stay within the ulp bound, at the float32 vector width."""
    prefer_wide_vectors()
    one = one_like(scale)
    for k in range(n):
        x = p[k]
        e = ebuf[k]
        pos = ybuf[k] != one - one
        num = (-e if pos else one) if x >= one - one else (-one if pos else e)
        g = num / (one + e) * scale
        grad[k] = x + ybuf[k] if x != x else g


@njit(**INLINE)
def focal_loop(p, n, ybuf, mbuf, wbuf, pbuf, sbuf, coef, lbuf, gout, clip_lo, clip_hi, nll,
                gamma_alpha, omit, logits, by_squaring, want_loss):
    """Focal losses (0 unless want_loss) into lbuf and gradients into gout, in one pass; logits and
    by_squaring are constants at each call site (one loop per form)."""
    for k in range(n):
        pv = p[k]
        yv = ybuf[k]
        on = mbuf[k] != 0
        l, g = focal(pv, yv, pbuf[k], coef, clip_lo, clip_hi, nll, gamma_alpha, logits,
                     by_squaring)
        l = _element_value(as_type_of(pv, l), pv, yv, on, omit)
        lbuf[k] = l if want_loss else as_type_of(pv, 0.0)
        gout[k] = _grad_value(g, pv, yv, on, wbuf[k], sbuf[k], omit)


@njit(**JIT)
def focal_block(p, n, ybuf, mbuf, wbuf, pbuf, sbuf, coef, lbuf, gout, clip_lo, clip_hi, nll,
                 gamma_alpha, omit, logits, want_loss, p64, y64):
    """Focal losses and gradients of a block; the arguments are runtime values (no literal), so
    that it is compiled once per prediction dtype. The loop reads the predictions and labels from
    float64 copies (p64, y64), so that LLVM vectorises it at the float64 width, as the C loop
    (with float32 vectors every float64 register is doubled and spills)."""
    prefer_wide_vectors()
    for k in range(n):
        p64[k] = p[k]
        y64[k] = ybuf[k]
    if logits and gamma_alpha[2] >= 0:
        focal_loop(p64, n, y64, mbuf, wbuf, pbuf, sbuf, coef, lbuf, gout, clip_lo, clip_hi,
                    nll, gamma_alpha, omit, True, True, want_loss)
    elif logits:
        focal_loop(p64, n, y64, mbuf, wbuf, pbuf, sbuf, coef, lbuf, gout, clip_lo, clip_hi,
                    nll, gamma_alpha, omit, True, False, want_loss)
    elif gamma_alpha[2] >= 0:
        focal_loop(p64, n, y64, mbuf, wbuf, pbuf, sbuf, coef, lbuf, gout, clip_lo, clip_hi,
                    nll, gamma_alpha, omit, False, True, want_loss)
    else:
        focal_loop(p64, n, y64, mbuf, wbuf, pbuf, sbuf, coef, lbuf, gout, clip_lo, clip_hi,
                    nll, gamma_alpha, omit, False, False, want_loss)


@njit(**INLINE)
def ids_scattered(g, n, n_slots):
    """Whether the n ids of a block all lie in [0, n_slots) and change between neighbours at more
    than one element in 16: the scatter loops then update each element's group in memory, else
    they keep the current group's state while the id repeats, which suits long runs of one id
    (sorted ids) but mispredicts the change of id in short runs."""
    changes = 0
    inside = np.uint64(np.int64(g[0])) < n_slots
    for k in range(1, n):
        changes += np.int64(g[k] != g[k - 1])
        inside &= np.uint64(np.int64(g[k])) < n_slots
    return inside and changes * 16 > n


@njit(**JIT)
def scatter_groups(g, n, lbuf, wbuf, s):
    """1-D input by group: the weighted loss and weight of each element into its group's slot
    (the rows of s), in element order, the ids (g, int32 or int64) read in place: straight into
    the slots when ids_scattered, else the current group's sums kept while the id repeats. There
    an id is checked when it changes (compared as unsigned, so that a negative id is out too):
    one outside [0, n_slots) skips its element and makes the function return FLAG_GROUP."""
    prefer_wide_vectors()
    n_slots = np.uint64(s.shape[0])
    if ids_scattered(g, n, n_slots):
        sums = s.reshape(-1)  # 2 per group: a constant stride
        for k in range(n):
            j = np.uint64(2) * np.uint64(g[k])  # in range: unsigned, no wrap-around
            sums[j] += np.float64(lbuf[k]) * wbuf[k]
            sums[j + np.uint64(1)] += wbuf[k]
        return 0
    out = 0
    cur = 0  # slot 0 exists: its sums are loaded and, unchanged, stored back
    sl = s[0, 0]
    sw = s[0, 1]
    for k in range(n):
        i = np.int64(g[k])
        if i != cur:
            if np.uint64(i) >= n_slots:
                out = FLAG_GROUP
                continue
            s[cur, 0] = sl
            s[cur, 1] = sw
            cur = i
            sl = s[cur, 0]
            sw = s[cur, 1]
        sl += np.float64(lbuf[k]) * wbuf[k]
        sw += wbuf[k]
    s[cur, 0] = sl
    s[cur, 1] = sw
    return out


@njit(**JIT)
def scatter_products(g, n, qbuf, lbuf, grp, ge, logits):
    """scatter_groups on the product path (no weights; ids read and checked as there): each
    element's factor (and from logits the rest of its loss) into its group's state, a row of grp
    (product, loss sum, count; the product times 2^ge), in place when ids_scattered, else the
    current group's kept while the id repeats; a product is split (its exponent into ge) when it
    leaves [2^-900, 2^900]; returns FLAG_GROUP for an id out of range."""
    prefer_wide_vectors()
    n_slots = np.uint64(grp.shape[0])
    if ids_scattered(g, n, n_slots):
        state = grp.reshape(-1)  # 3 per group: a constant stride
        for k in range(n):
            i = np.uint64(g[k])  # in range: unsigned, no wrap-around of negative indices
            j = np.uint64(3) * i
            m = state[j] * qbuf[k]
            state[j] = m
            if logits:
                state[j + np.uint64(1)] += np.float64(lbuf[k])
            state[j + np.uint64(2)] += 1.0
            if (m > GROUP_PRODUCT_MAX) if logits else (m < GROUP_PRODUCT_MIN):
                state[j], ge[i] = split_one(m, ge[i])
        return 0
    out = 0
    cur = 0  # as in scatter_groups
    m = grp[0, 0]
    sl = grp[0, 1]
    c = grp[0, 2]
    for k in range(n):
        i = np.int64(g[k])
        if i != cur:
            if np.uint64(i) >= n_slots:
                out = FLAG_GROUP
                continue
            grp[cur, 0] = m
            grp[cur, 1] = sl
            grp[cur, 2] = c
            cur = i
            m = grp[cur, 0]
            sl = grp[cur, 1]
            c = grp[cur, 2]
        m *= qbuf[k]
        if logits:
            sl += np.float64(lbuf[k])
        c += 1.0
        if (m > GROUP_PRODUCT_MAX) if logits else (m < GROUP_PRODUCT_MIN):
            m, ge[cur] = split_one(m, ge[cur])
    grp[cur, 0] = m
    grp[cur, 1] = sl
    grp[cur, 2] = c
    return out


@njit(**JIT)
def multiply_compensated(m, rnd, q, lo, n):
    """float64 product path: element k of q + lo (n of them) into lane k % PROD_LANES, m *= q + lo,
    the rounding carried in rnd: (m + rnd)·(q + lo) = r + (rnd·q + fma(m, q, -r) + m·lo), to
    2^-106 of the product. No division (one per lane in fold_rounding), one call per block (not
    per 64 products), and unsigned indices (a signed index made LLVM gather)."""
    prefer_wide_vectors()
    for g in range(0, n, PROD_LANES):
        for k in range(min(PROD_LANES, n - g)):
            i = np.uint64(g + k)  # unsigned: no wraparound select, which made LLVM gather
            mk = m[k]
            qk = q[i]
            r = mk * qk
            rnd[k] = fma(rnd[k], qk, fma(mk, qk, -r) + mk * lo[i])
            m[k] = r


@njit(**JIT)
def fold_rounding(m, rnd, comp):
    """float64 product path: the roundings rnd carried since the last fold, relative to the
    products m, added to comp (the product is then m·(1 + comp), to 2^-106); rnd reset. One
    division per lane here, not one per product: a division per product bounds the loop by the
    divider."""
    prefer_wide_vectors()
    for k in range(PROD_LANES):
        comp[k] += rnd[k] / m[k]
        rnd[k] = 0.0


@njit(**JIT)
def multiply_into(m, q):
    """m *= q elementwise (views: indices from 0, so no wraparound code and the loop vectorises)."""
    prefer_wide_vectors()
    for t in range(m.shape[0]):
        m[t] *= q[t]


@njit(**JIT)
def add_weighted_into(acc_l, acc_w, l, w):
    """acc_l += l·w and acc_w += w elementwise, in float64 (views, as multiply_into)."""
    prefer_wide_vectors()
    for t in range(acc_l.shape[0]):
        acc_l[t] += np.float64(l[t]) * w[t]
        acc_w[t] += w[t]


@njit(**INLINE)
def _score_values(pv, yv, on, lp, ln, omit, raise_nan, check_p):
    """Part of score_block: (error bits, counted, positive part, negative part) of an element
    whose parts are lp, ln: NaN parts for a NaN, counted unless masked or an omitted NaN."""
    isn = (pv != pv) | (yv != yv)
    skip = (not on) | (isn & (omit | raise_nan))
    bad = FLAG_PRED if check_p & ((pv < 0) | (pv > 1)) & (not skip) else 0
    bad |= FLAG_NAN if isn & raise_nan & on else 0
    lp = pv + yv if isn else lp
    ln = pv + yv if isn else ln
    return bad, on & (not (isn & omit)), lp, ln


@njit(**INLINE)
def _score_loop(p, n, ybuf, mbuf, wbuf, lbuf, ebuf, qbuf, cbuf, clip_lo, clip_hi, nll, nan_mode,
                logits, soft):
    """score_block's loop for one form (logits and soft are constants at each call)."""
    lo_pos, lo_neg, hi_pos, hi_neg = nll_as_type_of(clip_lo, nll)
    q_lo = np.float64(clip_lo)
    q_hi = np.float64(clip_hi)
    omit = nan_mode == NAN_OMIT
    raise_nan = nan_mode == NAN_RAISE
    bad = 0
    for k in range(n):
        pv = p[k]
        yv = ybuf[k]
        one = one_like(pv)
        zero = one - one
        if logits:
            e = exp_abs(pv)
            lp = nll_logit(pv, yv, zero, e, True)
            ln = nll_logit(pv, zero, one - yv, e, True)
            s = (one if pv >= zero else e) / (one + e)
            q = np.float64(pv if pv != pv else s)
        else:
            if soft:
                lp = nll_soft(pv, yv, zero, clip_lo, clip_hi, lo_pos, lo_neg, hi_pos, hi_neg)
                ln = nll_soft(pv, zero, one - yv, clip_lo, clip_hi, lo_pos, lo_neg, hi_pos, hi_neg)
            else:
                l = nll_hard(pv, yv, clip_lo, clip_hi, lo_pos, lo_neg, hi_pos, hi_neg)
                lp = l if yv != zero else zero
                ln = zero if yv != zero else l
            pd = np.float64(pv)
            pd = q_lo if pd < q_lo else pd
            q = q_hi if pd > q_hi else pd
        b, counted, lp, ln = _score_values(pv, yv, mbuf[k] != 0, lp, ln, omit, raise_nan,
                                           not logits)
        bad |= b
        lbuf[k] = lp if counted else zero
        ebuf[k] = ln if counted else zero
        qbuf[k] = q if counted else 0.0
        ybuf[k] = yv if counted else zero
        wbuf[k] = wbuf[k] if counted else 0.0
        cbuf[k] = 1.0 if counted else 0.0
    return bad


@njit(**JIT)
def score_block(p, n, ybuf, mbuf, wbuf, lbuf, ebuf, qbuf, cbuf, clip_lo, clip_hi, nll, nan_mode,
                logits, soft):
    """Scoring statistics of one block (score_chunk): the positive and negative parts of the
    loss, y·(-log q) and (1-y)·(-log(1-q)), into lbuf and ebuf, q (p clipped, or σ(x) in p's
    dtype) into qbuf, 1 into cbuf for each counted element; a masked element or an omitted NaN
    counts nothing (its weight, label, q, parts and cbuf set to 0), another NaN gives NaN parts
    (and q when p is NaN). Returns the error bits of predictions and NaN."""
    prefer_wide_vectors()
    if logits:
        return _score_loop(p, n, ybuf, mbuf, wbuf, lbuf, ebuf, qbuf, cbuf, clip_lo, clip_hi, nll,
                           nan_mode, True, False)
    if soft:
        return _score_loop(p, n, ybuf, mbuf, wbuf, lbuf, ebuf, qbuf, cbuf, clip_lo, clip_hi, nll,
                           nan_mode, False, True)
    return _score_loop(p, n, ybuf, mbuf, wbuf, lbuf, ebuf, qbuf, cbuf, clip_lo, clip_hi, nll,
                       nan_mode, False, False)


@njit(**JIT)
def score_factors(x, ybuf, qbuf, lbuf, ebuf, fpos, fneg, n, logits):
    """Scoring statistics of a block of the product path (after q_block or q_block_logit): the
    factors of the positives' and negatives' products into fpos and fneg (1 for the other
    class), from logits the rest of the loss into lbuf (positives) and ebuf (negatives), p
    clipped or σ(x) into qbuf, as score_block."""
    prefer_wide_vectors()
    one = one_like(x[0])
    zero = one - one
    for k in range(n):
        pos = ybuf[k] != zero
        q = qbuf[k]
        fpos[k] = q if pos else 1.0
        fneg[k] = 1.0 if pos else q
        if logits:
            xv = x[k]
            e = ebuf[k]
            lin = lbuf[k]
            lbuf[k] = lin if pos else zero
            ebuf[k] = zero if pos else lin
            qbuf[k] = np.float64((one if xv >= zero else e) / (one + e))
        else:
            qbuf[k] = q if pos else 1.0 - q


@njit(**JIT)
def score_scatter(g32, g64, g_i32, mode, row0, ncols, b0, n, ybuf, wbuf, lbuf, ebuf, qbuf, cbuf,
                  s):
    """Scoring statistics of the n elements of a block from element b0 into the slot (row of s)
    of their row (MODE_ROWS) or its group, in element order: Σw, the count, Σw·y, Σw·q and the
    weighted parts (stat 0 at the chunk end); a row with a group id out of range is skipped and
    gives FLAG_GROUP."""
    bad = 0
    n_slots = s.shape[0]
    row = b0 // ncols
    j = b0 % ncols
    for k in range(n):
        slot = row0 + row if mode == MODE_ROWS else group(g32, g64, g_i32, row)
        if np.uint64(slot) >= np.uint64(n_slots):
            bad = FLAG_GROUP
        else:
            w = wbuf[k]
            s[slot, 1] += w
            s[slot, 2] += cbuf[k]
            s[slot, 3] += np.float64(ybuf[k]) * w
            s[slot, 4] += qbuf[k] * w
            s[slot, 5] += np.float64(lbuf[k]) * w
            s[slot, 6] += np.float64(ebuf[k]) * w
        j += 1
        if j == ncols:
            j = 0
            row += 1
    return bad
