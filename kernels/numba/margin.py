"""Numba margin and overlap losses: the twin of kernels/c/margin.h (same functions, same order,
same operations).

Hinge and squared hinge on raw scores, and the soft counts of Dice and Tversky (Σw·y·p, Σw·y,
Σw·p, Σw), one chunk at a time: each block is read into float64 buffers, its element values
computed in one loop and summed in float64 lanes in a fixed order (add_lanes), so the sums do not
depend on the thread count. Only float64 additions, multiplications and comparisons, no fused
multiply-add, as in C: the same bits.
"""

from typing import NamedTuple

import numba
import numpy as np
from numba import njit, prange

from .. import (
    BLOCK,
    FLAG_GROUP,
    FLAG_LABEL,
    FLAG_NAN,
    FLAG_WEIGHT,
    LANES,
    LOSS_OVERLAP,
    LOSS_SQUARED_HINGE,
    MARGIN_STATS,
    MODE_ALL,
    MODE_COLS,
    MODE_GROUPS,
    MODE_ROWS,
    NAN_OMIT,
    NAN_RAISE,
)
from .llvm import INLINE, JIT, add_lanes, prefer_wide_vectors


class _Options(NamedTuple):
    """The scalars of a margin pass as the kernel takes them: MarginOptions with a flag for each
    optional array, passed as a dummy when absent (one compilation serves calls with and without)."""

    loss: int
    nan_mode: int
    mode: int
    ncols: int
    row0: int
    chunk_elems: int
    want_sums: bool
    has_w: bool
    has_mask: bool
    g_i32: bool  # group ids are int32 (g32), else int64 (g64)
    has_loss_out: bool
    has_grad_out: bool
    y_kind_plain: bool  # labels the plain route reads in place: not int8 (fb_margin_chunk)


@njit(**INLINE)
def hinge_loss(y, x, squared):
    """Hinge loss l = max(0, m), m = 1 - t·x, t = +1 for y = 1 else -1 (squared: l²); NaN in:
    NaN out (y - y is 0 or NaN)."""
    t = 1.0 if y == 1.0 else -1.0
    m = 1.0 - t * x
    h = 0.0 if m < 0.0 else m
    return (h * h if squared else h) + (y - y)


@njit(**INLINE)
def hinge_slope(y, x, squared):
    """dl/dx of hinge_loss: -t where m >= 0 (the kink too, as TensorFlow), else 0; squared
    2·max(0, m)·(-t). NaN in: NaN out."""
    t = 1.0 if y == 1.0 else -1.0
    m = 1.0 - t * x
    h = 0.0 if m < 0.0 else m
    if squared:
        return (-2.0 * t) * h + (y - y)
    return (0.0 if m < 0.0 else (-t if m == m else m)) + (y - y)


@njit(**INLINE)
def margin_bits(y, x, w, m, nan_mode, hinge):
    """The error bits of an element (see fb_margin_bits)."""
    nan = (y != y) or (x != x)
    counted = m != 0.0
    bad_label = hinge and not (y == 0.0 or y == 1.0 or y == -1.0) and y == y
    bad_weight = not (w >= 0.0 and w < np.inf)
    return ((FLAG_NAN if counted and nan and nan_mode == NAN_RAISE else 0)
            | (FLAG_LABEL if counted and bad_label else 0)
            | (FLAG_WEIGHT if counted and bad_weight else 0))


@njit(**INLINE)
def margin_suspect(y, x, w, hinge, raise_):
    """0 for a clean element, else (mostly) positive or NaN (see fb_margin_suspect)."""
    label = abs(y * (y * y - 1.0)) if hinge else 0.0
    return (abs(w) - w) + label + ((x - x) + (y - y) if raise_ else 0.0)


@njit(**INLINE)
def margin_load(y, p, n, yb, xb):
    """Labels and predictions of a block (views: index k >= 0, no wraparound code, so that LLVM
    vectorises the loops) as float64 into yb and xb."""
    for k in range(n):
        yb[k] = np.float64(y[k])
    for k in range(n):
        xb[k] = np.float64(p[k])


@njit(**INLINE)
def margin_weights(w, mask, has_w, has_mask, n, wb, mb):
    """Weights (1 without) into wb and the mask as 1.0 / 0.0 (1.0 without) into mb (views of the
    block)."""
    if has_w:
        for k in range(n):
            wb[k] = np.float64(w[k])
    else:
        wb[:n] = 1.0
    if has_mask:
        for k in range(n):
            mb[k] = 1.0 if mask[k] else 0.0
    else:
        mb[:n] = 1.0


@njit(**INLINE)
def margin_omit(n, yb, xb, mb):
    """nan_policy="omit": elements with a NaN label or prediction are masked (mb = 0)."""
    for k in range(n):
        mb[k] = (mb[k] if xb[k] == xb[k] else 0.0) if yb[k] == yb[k] else 0.0


@njit(**INLINE)
def margin_coefs(mode, ncols, row0, g32, g64, g_i32, coef, b0, n, kb0, kb1):
    """The gradient coefficients of each element's slot into kb0, kb1; error bits."""
    n_slots = coef.shape[0]
    bad = 0
    for k in range(n):
        i = b0 + k
        row = i // ncols
        slot = 0
        if mode == MODE_COLS:
            slot = i % ncols
        elif mode == MODE_ROWS:
            slot = row0 + row
        elif mode == MODE_GROUPS:
            slot = np.int64(g32[row]) if g_i32 else np.int64(g64[row])
        ok = slot >= 0 and slot < n_slots
        bad |= 0 if ok else FLAG_GROUP
        kb0[k] = coef[slot, 0] if ok else 0.0
        kb1[k] = coef[slot, 1] if ok else 0.0
    return bad


@njit(**INLINE)
def margin_lane_sum(s):
    """Pairwise sum of LANES lanes in a fixed order."""
    s0 = (s[0] + s[1]) + (s[2] + s[3])
    s1 = (s[4] + s[5]) + (s[6] + s[7])
    s2 = (s[8] + s[9]) + (s[10] + s[11])
    s3 = (s[12] + s[13]) + (s[14] + s[15])
    return (s0 + s1) + (s2 + s3)


@njit(**INLINE)
def margin_lanes(acc, v, n):
    """acc[k] += v[g + k] over the groups of LANES elements, the last from lane 0 on."""
    add_lanes(acc, v, None, None, 0, n)


@njit(**INLINE)
def margin_suspect_sum(sb, n, acc):
    """Σ of a block's suspect values in lanes: not 0 when one is not 0 (acc: LANES scratch lanes,
    passed in: an array made per block costs an allocation)."""
    acc[:] = 0.0
    margin_lanes(acc, sb, n)
    return margin_lane_sum(acc)


@njit(**INLINE)
def margin_elements(n, yb, xb, wb, mb, v0, v1, v2, sb, acc, loss, nan_mode):
    """The element values of a block (see fb_margin_elements); error bits."""
    hinge = loss != LOSS_OVERLAP
    squared = loss == LOSS_SQUARED_HINGE
    raise_ = nan_mode == NAN_RAISE
    if not hinge:
        for k in range(n):
            x = xb[k]
            y = yb[k]
            w = wb[k]
            counted = mb[k] != 0.0
            sb[k] = margin_suspect(y, x, w, False, raise_) if counted else 0.0
            v0[k] = x if counted else 0.0
            v1[k] = w if counted else 0.0
            v2[k] = w * y if counted else 0.0
    else:
        for k in range(n):
            x = xb[k]
            y = yb[k]
            w = wb[k]
            counted = mb[k] != 0.0
            sb[k] = margin_suspect(y, x, w, True, raise_) if counted else 0.0
            v0[k] = hinge_loss(y, x, squared) if counted else 0.0
            v1[k] = w if counted else 0.0
            v2[k] = hinge_slope(y, x, squared) if counted else 0.0
    bad = 0
    if margin_suspect_sum(sb, n, acc) != 0.0:
        for k in range(n):
            bad |= margin_bits(yb[k], xb[k], wb[k], mb[k], nan_mode, hinge)
    return bad


@njit(**INLINE)
def margin_plain(y, p, n, v0, yb, xb, sb, acc, loss, nan_mode):
    """The plain block (see fb_margin_plain): labels and predictions read in place (views)."""
    hinge = loss != LOSS_OVERLAP
    squared = loss == LOSS_SQUARED_HINGE
    raise_ = nan_mode == NAN_RAISE
    if hinge:
        for k in range(n):
            yk = np.float64(y[k])
            xk = np.float64(p[k])
            sb[k] = margin_suspect(yk, xk, 1.0, True, raise_)
            v0[k] = hinge_loss(yk, xk, squared)
    else:
        for k in range(n):
            yk = np.float64(y[k])
            xk = np.float64(p[k])
            sb[k] = margin_suspect(yk, xk, 1.0, False, raise_)
            v0[k] = xk * yk
            yb[k] = yk
            xb[k] = xk
    bad = 0
    if margin_suspect_sum(sb, n, acc) != 0.0:
        for k in range(n):
            bad |= margin_bits(np.float64(y[k]), np.float64(p[k]), 1.0, 1.0, nan_mode, hinge)
    return bad


@njit(**INLINE)
def margin_outputs(loss_out, grad_out, has_loss_out, has_grad_out, overlap, b0, n, v0, v1, v2,
                   kb0, kb1):
    """Element outputs of a block in the output dtype (see fb_margin_outputs)."""
    if has_loss_out:
        for k in range(n):
            loss_out[b0 + k] = v0[k] * v1[k]
    if has_grad_out:
        for k in range(n):
            g = v1[k] * kb0[k] + v2[k] * kb1[k] if overlap else (v1[k] * v2[k]) * kb0[k]
            grad_out[b0 + k] = 0.0 if v1[k] == 0.0 else g


@njit(**INLINE)
def margin_row_lanes(acc_a, a, acc_b, b, k, run, j):
    """Elements [k, k + run) of a row from column j on into lanes by column (fb_margin_row_lanes):
    scalar up to a lane boundary, then add_lanes from lane 0 on."""
    t = 0
    while t < run and (j + t) % LANES:
        acc_a[(j + t) % LANES] += a[k + t] * b[k + t]
        acc_b[(j + t) % LANES] += b[k + t]
        t += 1
    add_lanes(acc_a, a, acc_b, b, k + t, run - t)


@njit(**INLINE)
def margin_col_add(col_a, a, col_b, b, k, run, j):
    """Elements [k, k + run) of a row from column j on into per-column sums."""
    for t in range(run):
        col_a[j + t] += a[k + t] * b[k + t]
        col_b[j + t] += b[k + t]


@njit(**JIT)
def margin_chunk(y, p, w, mask, g32, g64, sums, loss_out, grad_out, coef, o, start, stop, c):
    """Chunk c = elements [start, stop) (whole rows unless mode is MODE_ALL): its sums into
    sums[c, slot] (by rows: sums[0, row0 + row]) and its element outputs; returns the error bits.
    o: the options (_Options)."""
    prefer_wide_vectors()
    mode, ncols, row0, loss, nan_mode = o.mode, o.ncols, o.row0, o.loss, o.nan_mode
    overlap = loss == LOSS_OVERLAP
    want_grad = o.has_grad_out
    yb = np.empty(BLOCK)
    xb = np.empty(BLOCK)
    wb = np.ones(BLOCK)  # refilled per block with weights or a mask
    mb = np.ones(BLOCK)
    v0 = np.empty(BLOCK)
    v1 = np.empty(BLOCK)
    v2 = np.empty(BLOCK)
    kb0 = np.zeros(BLOCK)
    sb = np.empty(BLOCK)
    kb1 = np.zeros(BLOCK)
    acc0 = np.zeros(LANES)
    acc1 = np.zeros(LANES)
    acc2 = np.zeros(LANES)
    acc3 = np.zeros(LANES)
    acc_s = np.zeros(LANES)  # the suspect sums of a block
    n_slots = sums.shape[1]
    slab = 0 if mode == MODE_ROWS else c
    col = np.zeros((4, ncols if mode == MODE_COLS and o.want_sums else 0))
    bad = 0
    if want_grad and mode == MODE_ALL:
        bad |= margin_coefs(mode, ncols, row0, g32, g64, o.g_i32, coef, 0, BLOCK, kb0, kb1)
    # the plain route (fb_margin_plain); the counts Σw are then the number of elements
    plain = (mode == MODE_ALL and not o.has_w and not o.has_mask and nan_mode != NAN_OMIT
             and not o.has_loss_out and not want_grad and o.want_sums and o.y_kind_plain)
    if plain:
        for b0 in range(start, stop, BLOCK):
            n = min(stop - b0, BLOCK)
            bad |= margin_plain(y[b0:b0 + n], p[b0:b0 + n], n, v0, yb, xb, sb, acc_s, loss,
                                nan_mode)
            margin_lanes(acc0, v0, n)
            if overlap:
                margin_lanes(acc1, yb, n)
                margin_lanes(acc2, xb, n)
        count = np.float64(stop - start)
        sums[c, 0, 0] = margin_lane_sum(acc0)
        sums[c, 0, 1] = margin_lane_sum(acc1) if overlap else count
        sums[c, 0, 2] = margin_lane_sum(acc2) if overlap else 0.0
        sums[c, 0, 3] = count if overlap else 0.0
        return bad
    for b0 in range(start, stop, BLOCK):
        n = min(stop - b0, BLOCK)
        margin_load(y[b0:b0 + n], p[b0:b0 + n], n, yb, xb)
        if o.has_w or o.has_mask or nan_mode == NAN_OMIT:
            margin_weights(w[b0:b0 + n] if o.has_w else w, mask[b0:b0 + n] if o.has_mask else mask,
                           o.has_w, o.has_mask, n, wb, mb)
        if nan_mode == NAN_OMIT:
            margin_omit(n, yb, xb, mb)
        if want_grad and mode != MODE_ALL:
            bad |= margin_coefs(mode, ncols, row0, g32, g64, o.g_i32, coef, b0, n, kb0, kb1)
        bad |= margin_elements(n, yb, xb, wb, mb, v0, v1, v2, sb, acc_s, loss, nan_mode)
        margin_outputs(loss_out, grad_out, o.has_loss_out, want_grad, overlap, b0, n, v0, v1, v2,
                       kb0, kb1)
        if not o.want_sums:
            continue
        b_first = v2 if overlap else v1
        if mode == MODE_ALL:
            add_lanes(acc0, v0, acc1, b_first, 0, n)
            if overlap:
                add_lanes(acc2, v0, acc3, v1, 0, n)
        elif mode == MODE_COLS:
            k = 0
            j = (b0 - start) % ncols
            while k < n:
                run = min(n - k, ncols - j)
                margin_col_add(col[0], v0, col[1], b_first, k, run, j)
                if overlap:
                    margin_col_add(col[2], v0, col[3], v1, k, run, j)
                k += run
                j = 0
        else:
            # by row (fb_margin_chunk): short rows element by element into the slot, longer ones
            # in lanes by column, added at the row's end
            k = 0
            row = b0 // ncols
            j = b0 % ncols
            while k < n:
                run = min(n - k, ncols - j)
                slot = row0 + row
                if mode == MODE_GROUPS:
                    slot = np.int64(g32[row]) if o.g_i32 else np.int64(g64[row])
                ok = slot >= 0 and slot < n_slots
                bad |= 0 if ok else FLAG_GROUP
                if ok and ncols < LANES:
                    for t in range(k, k + run):
                        sums[slab, slot, 0] += v0[t] * b_first[t]
                        sums[slab, slot, 1] += b_first[t]
                        if overlap:
                            sums[slab, slot, 2] += v0[t] * v1[t]
                            sums[slab, slot, 3] += v1[t]
                elif ok:
                    margin_row_lanes(acc0, v0, acc1, b_first, k, run, j)
                    if overlap:
                        margin_row_lanes(acc2, v0, acc3, v1, k, run, j)
                k += run
                j += run
                if j == ncols:
                    if ok and ncols >= LANES:
                        totals = (margin_lane_sum(acc0), margin_lane_sum(acc1),
                                  margin_lane_sum(acc2), margin_lane_sum(acc3))
                        for s in range(MARGIN_STATS):
                            if mode == MODE_ROWS:
                                sums[slab, slot, s] = totals[s]
                            else:
                                sums[slab, slot, s] += totals[s]
                    acc0[:] = 0.0
                    acc1[:] = 0.0
                    acc2[:] = 0.0
                    acc3[:] = 0.0
                    j = 0
                    row += 1
    if o.want_sums and mode == MODE_ALL:
        sums[c, 0, 0] = margin_lane_sum(acc0)
        sums[c, 0, 1] = margin_lane_sum(acc1)
        sums[c, 0, 2] = margin_lane_sum(acc2)
        sums[c, 0, 3] = margin_lane_sum(acc3)
    elif mode == MODE_COLS and o.want_sums:
        for jj in range(ncols):
            for s in range(MARGIN_STATS):
                sums[c, jj, s] = col[s, jj]
    return bad


@njit(parallel=True, **JIT)
def _margin_pass(y, p, w, mask, g32, g64, sums, flags, loss_out, grad_out, coef, o):
    """The chunks in parallel (C: the prange loop of margin_pass in kernels/cython_kernels.pyx)."""
    n = p.shape[0]
    chunk_elems = o.chunk_elems
    for c in prange(flags.shape[0]):
        start = c * chunk_elems
        flags[c] = margin_chunk(y, p, w, mask, g32, g64, sums, loss_out, grad_out, coef, o, start,
                                min(n, start + chunk_elems), np.int64(c))


def _read_only(*arrays):
    """Read-only views: a writable and a read-only array are two Numba types (two compilations)."""
    views = [a.view() for a in arrays]
    for view in views:
        view.flags.writeable = False
    return views


def margin_pass(y, p, w, mask, groups, sums, flags, loss_out, grad_out, coef, options, n_threads):
    """Same contract as the Cython ``margin_pass`` (fastbce/_margin.py); options: a
    kernels.MarginOptions."""
    g_i32 = groups is not None and groups.dtype == np.int32
    out = np.empty(1, p.dtype)  # dummy element output (the output dtype is p's)
    numba.set_num_threads(min(n_threads, numba.config.NUMBA_NUM_THREADS))
    y1, p1, w1, m1, g32, g64, coef1 = _read_only(
        y.reshape(-1), p.reshape(-1), np.ones(1) if w is None else w.reshape(-1),
        np.ones(1, np.uint8) if mask is None else mask.reshape(-1).view(np.uint8),
        groups if g_i32 else np.zeros(1, np.int32),
        groups if groups is not None and not g_i32 else np.zeros(1, np.int64),
        np.zeros((1, 2)) if coef is None else coef)
    o = _Options(int(options.loss), int(options.nan_mode), int(options.mode), int(p.shape[1]),
                 int(options.row0), int(options.chunk_elems), bool(options.want_sums),
                 w is not None, mask is not None, g_i32, loss_out is not None, grad_out is not None,
                 y.dtype != np.int8)
    _margin_pass(y1, p1, w1, m1, g32, g64, sums, flags,
                 out if loss_out is None else loss_out.reshape(-1),
                 out if grad_out is None else grad_out.reshape(-1), coef1, o)
