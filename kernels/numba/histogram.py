"""Numba histogram pass: the twin of kernels/c/histogram.h (same functions, same order).

Per slot, over the rows of one stripe: the histogram (Σw·y, Σw·(1-y)) over buckets of the
prediction, and the extra sums (NaN count, Σw·(q-y)², Σw·y and Σw·(1-y) at or above the cut,
Σw, Σw·y, Σw·q per calibration bin), and the error bits of the elements not masked. One column of
contiguous predictions and labels, overall or by group, goes by blocks (hist_flat);
``hist_pass`` runs the stripes in parallel. ``calib_pass``: the bins of calibration_curve.
"""

import math

import numba
import numpy as np
from numba import literal_unroll, njit, prange

from .. import (BLOCK, FLAG_LABEL, FLAG_PRED, FLAG_WEIGHT, HIST_COPIES, HIST_EXTRA, LANES,
                MODE_ALL, MODE_COLS, MODE_GROUPS)
from .dispatch import read_only
from .llvm import INLINE, JIT, add_lanes, bits_f32, prefer_wide_vectors

HIST_LOW = 0x33800000  # bits of 2^-24 (kernels/c/histogram.h: FB_HIST_LOW)
HIST_SOFT = 0x100  # hist_block's bit for a block with a label not 0 or 1 (FB_HIST_SOFT)


@njit(**INLINE)
def bucket(v, high, shift, top):
    """The bucket of a prediction with v = min(q, 1-q): monotone in the prediction."""
    b = bits_f32(np.float32(v))
    k = np.int64(0) if b < HIST_LOW else np.int64((b - HIST_LOW) >> shift)
    return 2 * top + 1 - k if high else k


@njit(**INLINE)
def hist_bad(x, y, w, on, logits):
    """The error bits of one element not masked (fb_hist_bad): a label or, from probabilities,
    a prediction outside [0, 1] (NaN is not), a weight not finite and >= 0."""
    bad = FLAG_LABEL * ((y < 0.0) | (y > 1.0))
    bad |= FLAG_PRED * ((not logits) & ((x < 0.0) | (x > 1.0)))
    return on * (bad | FLAG_WEIGHT * (not ((w >= 0.0) & (w < math.inf))))


@njit(**INLINE)
def hist_q(x, logits):
    """(q, v, high) of a prediction x (fb_hist_q): q the probability (σ(x) from logits),
    v = min(q, 1 - q) without cancellation, high = (q >= 1/2)."""
    if logits:
        t = math.exp(-abs(x))
        v = t / (1.0 + t)
        high = x >= 0.0
        return (1.0 / (1.0 + t) if high else v), v, high
    high = x >= 0.5
    return x, (1.0 - x if high else x), high


@njit(**JIT)
def hist_rows(p, y, w, mask, groups, mode, logits, omit_nan, cut, shift, top, n_buckets,
              n_bins, r0, r1, hist, extra):
    """Any layout, element by element: the rows [r0, r1) into hist and extra; returns the error
    bits."""
    bad = 0
    for i in range(r0, r1):
        for j in range(p.shape[1]):
            if not mask[i, j]:
                continue
            x = np.float64(p[i, j])
            yv = np.float64(y[i, j])
            wv = np.float64(w[i, j])
            slot = np.int64(groups[i]) if mode == MODE_GROUPS else (j if mode == MODE_COLS else 0)
            bad |= hist_bad(x, yv, wv, True, logits)
            if math.isnan(x) or math.isnan(yv):
                if not omit_nan:
                    extra[slot, 0] += 1.0
                continue
            q, v, high = hist_q(x, logits)
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
    return bad


@njit(**INLINE)
def _hist_values(p, y, b0, k, wb, mb, cwb, wyb, wqb, brb, tpb, fpb, nanb, binb, keyb, logits, cut,
                 bins, last, shift, top, omit):
    """hist_block's loop body for element k (C: fb_hist_values, `logits` a constant); bitwise
    operators, not `and` / `or`, whose branches keep LLVM from vectorising the loop."""
    x = np.float64(p[b0 + k])
    yv = np.float64(y[b0 + k])
    w = wb[k]
    isn = (x != x) | (yv != yv)
    on = mb[k] != 0
    cnt = on & (not isn)
    q, v, high = hist_q(x, logits)
    nanb[k] = omit if (on & isn) else 0.0
    w = w if cnt else 0.0
    yv = yv if cnt else 0.0
    q = q if cnt else 0.0
    v = v if cnt else 0.0
    wy = w * yv
    wn = w - wy
    d = q - yv
    positive = cnt & (x >= cut)
    cwb[k] = w
    wyb[k] = wy
    wqb[k] = w * q
    brb[k] = w * d * d
    tpb[k] = wy if positive else 0.0
    fpb[k] = wn if positive else 0.0
    b = np.int64(q * bins)
    binb[k] = b if b < last else last
    keyb[k] = 2 * bucket(v, high, shift, top) + np.int64(yv == 0.0)


@njit(**JIT)
def hist_block(p, y, b0, n, wb, mb, cwb, wyb, wqb, brb, tpb, fpb, nanb, binb, keyb, l_nan,
               l_brier, l_tp, l_fp, grouped, logits, omit_nan, cut, n_bins, shift, top):
    """The values of the n elements from b0 of hist_flat (see fb_hist_block: 0 where not
    counted; keyb 2·bucket + 1 where y = 0); not grouped, nanb, brb, tpb, fpb added into the
    LANES lanes l_nan, l_brier, l_tp, l_fp (add_lanes: in registers). Returns the error bits,
    and HIST_SOFT for a block with a label not 0 or 1."""
    prefer_wide_vectors()
    bins = np.float64(n_bins)
    last = np.int64(n_bins - 1)
    omit = 0.0 if omit_nan else 1.0
    if logits:
        for k in range(n):
            _hist_values(p, y, b0, k, wb, mb, cwb, wyb, wqb, brb, tpb, fpb, nanb, binb, keyb, True,
                         cut, bins, last, shift, top, omit)
    else:
        for k in range(n):
            _hist_values(p, y, b0, k, wb, mb, cwb, wyb, wqb, brb, tpb, fpb, nanb, binb, keyb,
                         False, cut, bins, last, shift, top, omit)
    # hist_bad's tests, as 0/1 per test, in a loop of their own (as fb_hist_values)
    bad_y = 0
    bad_x = 0
    bad_w = 0
    soft = 0
    for k in range(n):  # products of integers: LLVM vectorises no `&` of booleans here
        x = np.float64(p[b0 + k])
        yv = np.float64(y[b0 + k])
        w = wb[k]
        on = np.int64(mb[k] != 0)
        bad_y |= on * np.int64((yv < 0.0) | (yv > 1.0))
        bad_x |= on * np.int64((x < 0.0) | (x > 1.0))
        bad_w |= on * np.int64(not ((w >= 0.0) & (w < math.inf)))
        soft |= on * np.int64((yv != 0.0) & (yv != 1.0))
    bad = ((FLAG_LABEL if bad_y else 0) | (FLAG_PRED if bad_x and not logits else 0)
           | (FLAG_WEIGHT if bad_w else 0) | (HIST_SOFT if soft else 0))
    if grouped:
        return bad
    add_lanes(l_nan, nanb, None, None, 0, n)
    add_lanes(l_brier, brb, None, None, 0, n)
    add_lanes(l_tp, tpb, None, None, 0, n)
    add_lanes(l_fp, fpb, None, None, 0, n)
    return bad


@njit(**JIT)
def hist_flat(p, y, w, mask, groups, mode, logits, omit_nan, cut, shift, top, n_buckets, n_bins,
              r0, r1, hist, extra):
    """The rows [r0, r1) of one column of contiguous predictions and labels (overall or by
    group) by blocks; overall, the NaN, Brier and threshold sums in float64 lanes and the bins in
    HIST_COPIES copies (one bin: lanes too), added into extra at the end in a fixed order
    (fb_hist_flat). Returns the error bits."""
    wb = np.empty(BLOCK)
    cwb = np.empty(BLOCK)
    wyb = np.empty(BLOCK)
    wqb = np.empty(BLOCK)
    brb = np.empty(BLOCK)
    tpb = np.empty(BLOCK)
    fpb = np.empty(BLOCK)
    nanb = np.empty(BLOCK)
    binb = np.empty(BLOCK, np.int64)
    keyb = np.empty(BLOCK, np.int64)
    mb = np.empty(BLOCK, np.uint8)
    # lanes of the NaN count, Brier, tp, fp; with one bin Σw, Σw·y, Σw·q too
    lanes = (np.zeros(LANES), np.zeros(LANES), np.zeros(LANES), np.zeros(LANES), np.zeros(LANES),
             np.zeros(LANES), np.zeros(LANES))
    grouped = mode == MODE_GROUPS
    one_bin = n_bins == 1
    bad = 0
    copies = np.zeros(HIST_COPIES * 3 * n_bins)
    flat = hist[0].reshape(-1)  # slot 0's buckets, keyb the index
    for b0 in range(r0, r1, BLOCK):
        n = min(r1 - b0, BLOCK)
        for k in range(n):
            wb[k] = np.float64(w[b0 + k, 0])
            mb[k] = mask[b0 + k, 0]
        got = hist_block(p, y, b0, n, wb, mb, cwb, wyb, wqb, brb, tpb, fpb, nanb, binb, keyb,
                         lanes[0], lanes[1], lanes[2], lanes[3], grouped, logits, omit_nan, cut,
                         n_bins, shift, top)
        soft = got & HIST_SOFT
        bad |= got & ~HIST_SOFT
        if not grouped:
            if one_bin:
                add_lanes(lanes[4], cwb, None, None, 0, n)
                add_lanes(lanes[5], wyb, None, None, 0, n)
                add_lanes(lanes[6], wqb, None, None, 0, n)
            else:
                for k in range(n):
                    c = 3 * (n_bins * (k % HIST_COPIES) + binb[k])
                    copies[c] += cwb[k]
                    copies[c + 1] += wyb[k]
                    copies[c + 2] += wqb[k]
            if n_buckets and not soft:  # hard labels: w·y or w·(1-y) is 0, the other w
                for k in range(n):
                    flat[keyb[k]] += cwb[k]
            elif n_buckets:
                for k in range(n):
                    hist[0, keyb[k] >> 1, 0] += wyb[k]
                    hist[0, keyb[k] >> 1, 1] += cwb[k] - wyb[k]
        else:
            for k in range(n):
                slot = np.int64(groups[b0 + k])
                c = HIST_EXTRA + 3 * binb[k]
                extra[slot, 0] += nanb[k]
                extra[slot, 1] += brb[k]
                extra[slot, 2] += tpb[k]
                extra[slot, 3] += fpb[k]
                extra[slot, c] += cwb[k]
                extra[slot, c + 1] += wyb[k]
                extra[slot, c + 2] += wqb[k]
                if n_buckets and not soft:
                    hist[slot, keyb[k] >> 1, keyb[k] & 1] += cwb[k]
                elif n_buckets:
                    hist[slot, keyb[k] >> 1, 0] += wyb[k]
                    hist[slot, keyb[k] >> 1, 1] += cwb[k] - wyb[k]
    if not grouped:
        for s in literal_unroll((0, 1, 2, 3, 4, 5, 6)):
            if s < 4 or one_bin:
                total = lanes[s][0]
                for k in range(1, LANES):
                    total += lanes[s][k]
                extra[0, s] += total
        for j in range(0 if one_bin else 3 * n_bins):
            total = copies[j]
            for c in range(1, HIST_COPIES):
                total += copies[3 * n_bins * c + j]
            extra[0, HIST_EXTRA + j] += total
    return bad


@njit(**JIT)
def hist_chunk(p, y, p1, y1, w, mask, groups, mode, logits, omit_nan, cut, shift, top, n_buckets,
               n_bins, r0, r1, hist, extra):
    """The rows [r0, r1) into hist (n_slots, n_buckets, 2) and extra (n_slots, n_extra), both
    zeroed: one column of contiguous predictions and labels, overall or by group, by hist_flat
    on p1, y1 (the column as 1-D contiguous arrays: LLVM vectorises no loop over p[i, 0]); the
    rest by hist_rows. Returns the error bits."""
    if (p.shape[1] == 1 and p.strides[0] // p.itemsize == 1 and y.strides[0] // y.itemsize == 1
            and (mode == MODE_ALL or mode == MODE_GROUPS)):
        return hist_flat(p1, y1, w, mask, groups, mode, logits, omit_nan, cut, shift, top,
                         n_buckets, n_bins, r0, r1, hist, extra)
    return hist_rows(p, y, w, mask, groups, mode, logits, omit_nan, cut, shift, top, n_buckets,
                     n_bins, r0, r1, hist, extra)


@njit(parallel=True, **JIT)
def _hist_pass(p, y, p1, y1, w, mask, groups, mode, logits, omit_nan, cut, shift, top, n_buckets,
               n_bins, rows, hist, extra, flags):
    n = p.shape[0]
    for c in prange(extra.shape[0]):
        flags[c] = hist_chunk(p, y, p1, y1, w, mask, groups, mode, logits, omit_nan, cut, shift, top,
                              n_buckets, n_bins, c * rows, min(n, (c + 1) * rows), hist[c],
                              extra[c])


def hist_pass(p, y, w, mask, groups, hist, extra, flags, options, n_threads):
    """Same contract as the Cython ``hist_pass`` (fastbce/_histogram.py); options: a
    kernels.HistOptions. hist is (n_stripes, n_slots, n_buckets or 1, 2), extra
    (n_stripes, n_slots, n_extra), both zeroed, flags (n_stripes,) uint8; stripe s is
    rows_per_chunk rows."""
    numba.set_num_threads(min(n_threads, numba.config.NUMBA_NUM_THREADS))
    o = options
    p, y, w, mask, groups = read_only(p, y, w, mask, groups)
    # one contiguous column as 1-D arrays (hist_chunk), else empty ones of the same types
    flat = p.shape[1] == 1 and p.strides[0] == p.itemsize and y.strides[0] == y.itemsize
    p1 = p.reshape(-1) if flat else p[:0, 0].copy()
    y1 = y.reshape(-1) if flat else y[:0, 0].copy()
    p1, y1 = read_only(p1, y1)
    _hist_pass(p, y, p1, y1, w, mask, groups, int(o.mode), bool(o.logits), bool(o.omit_nan),
               float(o.cut), int(o.shift), int(o.top), int(o.n_buckets), int(o.n_bins),
               int(o.rows_per_chunk), hist, extra, flags)


@njit(**INLINE)
def calib_bin(q, edges, nb, uniform):
    """The calibration bin of q: searchsorted(edges[1:-1], q) (fb_calib_bin)."""
    if uniform:
        t = q * np.float64(nb)
        b = np.int64(0) if t < 1.0 else (nb - 1 if t >= np.float64(nb - 1) else np.int64(t))
        while b > 0 and not edges[b] < q:
            b -= 1
        while b < nb - 1 and edges[b + 1] < q:
            b += 1
        return b
    lo = np.int64(0)
    hi = nb - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if edges[mid] < q:
            lo = mid
        else:
            hi = mid - 1
    return lo


@njit(**JIT)
def calib_chunk(p, y, w, m, logits, omit_nan, edges, uniform, r0, r1, out):
    """Calibration sums of the elements [r0, r1) into out (fb_calib_chunk: NaN count, then per
    bin count, Σw, Σw·q, Σw·y, in HIST_COPIES copies added in a fixed order); w and m of one
    element apply to all. Returns the error bits."""
    nb = np.int64(edges.shape[0] - 1)
    copies = np.zeros(HIST_COPIES * 4 * nb)
    w_step = 1 if w.shape[0] > 1 else 0
    m_step = 1 if m.shape[0] > 1 else 0
    bad = 0
    nan = 0.0
    for i in range(r0, r1):
        if not m[i * m_step]:
            continue
        x = np.float64(p[i])
        yv = np.float64(y[i])
        wv = w[i * w_step]
        bad |= hist_bad(x, yv, wv, True, logits)
        if (x != x) or (yv != yv):
            if omit_nan:
                continue
            nan += 1.0
        q = hist_q(x, logits)[0]
        c = 4 * (nb * (i % HIST_COPIES) + calib_bin(0.0 if q != q else q, edges, nb, uniform))
        copies[c] += 1.0
        copies[c + 1] += wv
        copies[c + 2] += wv * q
        copies[c + 3] += wv * yv
    out[0] += nan
    for j in range(4 * nb):
        total = copies[j]
        for c in range(1, HIST_COPIES):
            total += copies[4 * nb * c + j]
        out[1 + j] += total
    return bad


@njit(parallel=True, **JIT)
def _calib_pass(p, y, w, mask, edges, out, flags, logits, omit_nan, uniform, rows):
    n = p.shape[0]
    for c in prange(out.shape[0]):
        flags[c] = calib_chunk(p, y, w, mask, logits, omit_nan, edges, uniform, c * rows,
                               min(n, (c + 1) * rows), out[c])


def calib_pass(p, y, w, mask, edges, out, flags, logits, omit_nan, uniform, rows, n_threads):
    """Same contract as the Cython ``calib_pass`` (fastbce/_metrics.py: calibration_curve)."""
    numba.set_num_threads(min(n_threads, numba.config.NUMBA_NUM_THREADS))
    p, y, w, mask, edges = read_only(p, y, w, mask, edges)
    _calib_pass(p, y, w, mask, edges, out, flags, bool(logits), bool(omit_nan), bool(uniform),
                int(rows))
