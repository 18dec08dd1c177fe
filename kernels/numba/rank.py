"""Numba ranking kernels: the twin of kernels/c/rank.h (same functions, same order).

Exact ROC-AUC and average precision of one slice by sorting. Each kept prediction becomes an
order-preserving unsigned integer key (uint32 for float32, uint64 for float64) whose sign bit is
dropped and replaced by the label in the low bit: item = (key without sign) << 1 | y. Negative
predictions go to the front, the others to the back (sign_count, split_block), so that sorting
each part sorts the whole by prediction; a parallel LSD radix sort of 8-bit digits (histogram,
scatter) does it, stable, so ties stay together with their negatives first. A walk from the top
over the distinct predictions then sums the Mann-Whitney pairs and the precision at each recall
step in float64, in fixed ranges cut at distinct values (range_totals gives each range the
weights above it), so the result does not depend on the thread count. ``rank`` is the Python
entry; its twin is ``rank`` in kernels/cython_kernels.pyx.
"""

import numpy as np
from numba import njit, prange

from .. import RANK_NAN, RANK_SOFT, RANK_WEIGHT
from .llvm import JIT, bits_f32, bits_f64, prefer_wide_vectors

# The flags of a split (kernels/c/rank.h: FB_RANK_*).
WALK_RANGES = 16  # ranges of the walk (a constant: the sums do not depend on the threads)
_LOW63 = np.uint64(0x7FFFFFFFFFFFFFFF)


@njit(**JIT)
def key_f32(v):
    """The order-preserving key of a float32 without its sign bit (31 bits, as uint64), and
    whether v is negative; -0.0 is first made +0.0."""
    b = np.int64(bits_f32(v + np.float32(0.0)))
    neg = b < 0
    return np.uint64(((~b) if neg else b) & 0x7FFFFFFF), neg


@njit(**JIT)
def key_f64(v):
    """The order-preserving key of a float64 without its sign bit (63 bits), and whether v is
    negative; -0.0 is first made +0.0."""
    b = bits_f64(v + 0.0)
    neg = b < 0
    return np.uint64((~b) if neg else b) & _LOW63, neg


@njit(**JIT)
def sign_count(y, p, w, has_w, mask, has_mask, omit, lo, hi):
    """(negative predictions, kept elements, flags) of [lo, hi): kept = in the mask and, under
    nan_policy "omit", with no NaN label or prediction. Branch-free (bitwise logic), so that the
    loop vectorises."""
    prefer_wide_vectors()
    n_neg = 0
    n_kept = 0
    soft = False
    nan = False
    bad_w = False
    for i in range(lo, hi):
        yv = y[i]
        pv = p[i]
        isnan = (yv != yv) | (pv != pv)
        keep = ~(omit & isnan)
        if has_mask:
            keep &= mask[i] != 0
        n_kept += np.int64(keep)
        n_neg += np.int64(keep & (pv < 0))
        nan |= keep & isnan
        soft |= keep & (yv != 0) & (yv != 1) & (yv == yv)
        if has_w:
            bad_w |= keep & ~((w[i] >= 0.0) & (w[i] < np.inf))
    return (n_neg, n_kept,
            np.int64(soft) * RANK_SOFT | np.int64(nan) * RANK_NAN | np.int64(bad_w) * RANK_WEIGHT)


@njit(**JIT)
def split_block(y, p, f32, mask, has_mask, omit, lo, hi, items, idx, has_idx, at_neg, at_pos,
                dense):
    """The items of the kept elements of [lo, hi): negative predictions from items[at_neg], the
    others from items[at_pos], with their index in idx when has_idx. Labels are 0 or 1 here (a
    NaN label counts as 0: its slice is NaN). A dropped element goes to the spare last slot.
    dense: every element is kept and none is negative (a plain map, which vectorises)."""
    if dense:
        for i in range(lo, hi):
            k = key_f32(np.float32(p[i]))[0] if f32 else key_f64(np.float64(p[i]))[0]
            items[at_pos + i - lo] = (k << np.uint64(1)) | np.uint64(y[i] == 1)
            if has_idx:
                idx[at_pos + i - lo] = i
        return
    spare = items.shape[0] - 1
    for i in range(lo, hi):
        yv = y[i]
        pv = p[i]
        if f32:
            k, neg = key_f32(np.float32(pv))
        else:
            k, neg = key_f64(np.float64(pv))
        keep = not (omit and ((yv != yv) | (pv != pv)))
        if has_mask:
            keep = keep and mask[i] != 0
        j = (at_neg if neg else at_pos) if keep else spare
        items[j] = (k << np.uint64(1)) | np.uint64(yv == 1)
        if has_idx:
            idx[j] = i
        at_neg += keep and neg
        at_pos += keep and not neg


@njit(**JIT)
def histogram(items, lo, hi, shift, counts):
    """counts[d] += the items of [lo, hi) whose 8-bit digit at shift is d."""
    s = np.uint64(shift)
    for i in range(lo, hi):
        counts[np.intp((np.uint64(items[i]) >> s) & np.uint64(255))] += 1


@njit(**JIT)
def scatter(items, idx, has_idx, lo, hi, shift, at, out, out_idx):
    """Items of [lo, hi) (and their idx) to out at at[digit], which advances: one stable pass of
    the LSD radix sort."""
    s = np.uint64(shift)
    if has_idx:
        for i in range(lo, hi):
            d = np.intp((np.uint64(items[i]) >> s) & np.uint64(255))
            out[at[d]] = items[i]
            out_idx[at[d]] = idx[i]
            at[d] += 1
    else:
        for i in range(lo, hi):
            d = np.intp((np.uint64(items[i]) >> s) & np.uint64(255))
            out[at[d]] = items[i]
            at[d] += 1


@njit(**JIT)
def range_totals(items, idx, has_idx, w, has_w, lo, hi):
    """(positive weight, negative weight) of the sorted items [lo, hi)."""
    prefer_wide_vectors()
    tp = 0.0
    total = 0.0
    if has_w:
        for i in range(lo, hi):
            wi = w[idx[i]]
            tp += wi * np.float64(items[i] & 1)
            total += wi
    else:
        ones = 0
        for i in range(lo, hi):
            ones += np.int64(items[i] & 1)
        tp = np.float64(ones)
        total = np.float64(hi - lo)
    return tp, total - tp


@njit(**JIT)
def walk(items, idx, has_idx, w, has_w, lo, hi, big_tp, big_fp, curve, m):
    """(2·U, A, m) of the sorted items [lo, hi) walked down by distinct prediction v, with tp, fp
    the positive and negative weights at v and TP, FP the weights at or above v (big_tp, big_fp:
    those above the range): 2·U = Σ fp·(2·TP - tp) (ties count half), A = Σ tp·TP/(TP + FP)
    (precision at each recall step); AUC = U/(P·N), AP = A/P. Without weights the counts are
    integers (short dependency chains). With curve (3 rows), each distinct v's TP, FP and the
    position of its first item are written from column m, which advances."""
    u2 = 0.0
    a = 0.0
    want_curve = curve.shape[1] > 0
    if not has_w:
        n_tp = np.int64(big_tp)
        n_fp = np.int64(big_fp)
        run_tp = 0
        run_fp = 0
        i = hi - 1
        while i >= lo:
            item = items[i]
            pos = np.int64(item & 1)
            run_tp += pos
            run_fp += 1 - pos
            if i == lo or (items[i - 1] >> 1) != (item >> 1):
                n_tp += run_tp
                n_fp += run_fp
                u2 += np.float64(run_fp) * np.float64(2 * n_tp - run_tp)
                if run_tp > 0:
                    a += np.float64(run_tp) * (np.float64(n_tp) / np.float64(n_tp + n_fp))
                if want_curve:
                    curve[0, m] = n_tp
                    curve[1, m] = n_fp
                    curve[2, m] = i
                m += 1
                run_tp = 0
                run_fp = 0
            i -= 1
        return u2, a, m
    tp = 0.0
    fp = 0.0
    i = hi - 1
    while i >= lo:
        item = items[i]
        wi = w[idx[i]]
        pos = np.float64(item & 1)
        tp += wi * pos
        fp += wi - wi * pos
        if i == lo or (items[i - 1] >> 1) != (item >> 1):
            big_tp += tp
            big_fp += fp
            u2 += fp * (2.0 * big_tp - tp)
            if tp > 0.0:
                a += tp * (big_tp / (big_tp + big_fp))
            if want_curve:
                curve[0, m] = big_tp
                curve[1, m] = big_fp
                curve[2, m] = i
            m += 1
            tp = 0.0
            fp = 0.0
        i -= 1
    return u2, a, m


@njit(parallel=True, **JIT)
def _split(y, p, f32, w, has_w, mask, has_mask, omit, items, idx, has_idx, bounds):
    """The kept elements' items, negative predictions first, split over the blocks of bounds in
    parallel; (negative predictions, kept elements, flags)."""
    nb = bounds.shape[0] - 1
    counts = np.zeros((nb, 3), np.int64)
    for b in prange(nb):
        n_neg, n_kept, flags = sign_count(y, p, w, has_w, mask, has_mask, omit, bounds[b],
                                          bounds[b + 1])
        counts[b, 0] = n_neg
        counts[b, 1] = n_kept
        counts[b, 2] = flags
    total_neg = counts[:, 0].sum()
    flags = 0
    for b in range(nb):
        flags |= counts[b, 2]
    at = np.zeros((nb, 2), np.int64)
    neg = 0
    pos = total_neg
    for b in range(nb):
        at[b, 0] = neg
        at[b, 1] = pos
        neg += counts[b, 0]
        pos += counts[b, 1] - counts[b, 0]
    if flags & (RANK_SOFT | RANK_WEIGHT):
        return total_neg, pos, flags
    for b in prange(nb):
        split_block(y, p, f32, mask, has_mask, omit, bounds[b], bounds[b + 1], items, idx,
                    has_idx, at[b, 0], at[b, 1], total_neg == 0 and pos == bounds[nb])
    return total_neg, pos, flags


@njit(parallel=True, **JIT)
def _sort(items, tmp, idx, idx_tmp, has_idx, lo, hi, nb, nbits):
    """Sorts items[lo:hi] ascending (and idx with them) by an LSD radix sort, 8 bits a pass; a
    pass whose digit is the same for every item is skipped. Blocks of the range in parallel."""
    n = hi - lo
    if n < 2:
        return
    bounds = np.empty(nb + 1, np.int64)
    for b in range(nb + 1):
        bounds[b] = lo + n * b // nb
    src, dst, isrc, idst = items, tmp, idx, idx_tmp
    in_tmp = False
    counts = np.zeros((nb, 256), np.int64)
    at = np.zeros((nb, 256), np.int64)
    for shift in range(0, nbits, 8):
        for b in prange(nb):
            counts[b, :] = 0
            histogram(src, bounds[b], bounds[b + 1], shift, counts[b])
        start = lo
        skip = False
        for d in range(256):
            total = 0
            for b in range(nb):
                at[b, d] = start + total
                total += counts[b, d]
            skip |= total == n
            start += total
        if skip:
            continue
        for b in prange(nb):
            scatter(src, isrc, has_idx, bounds[b], bounds[b + 1], shift, at[b], dst, idst)
        src, dst, isrc, idst = dst, src, idst, isrc
        in_tmp = not in_tmp
    if in_tmp:
        for b in prange(nb):
            items[bounds[b]:bounds[b + 1]] = tmp[bounds[b]:bounds[b + 1]]
            if has_idx:
                idx[bounds[b]:bounds[b + 1]] = idx_tmp[bounds[b]:bounds[b + 1]]


@njit(parallel=True, **JIT)
def _walk(items, idx, has_idx, w, has_w, m, cuts):
    """(P, N, 2·U, A) of the sorted items [0, m): the ranges between cuts (at distinct values),
    their totals, then their walks in parallel, summed in range order."""
    nr = cuts.shape[0] - 1
    totals = np.zeros((nr, 2))
    for r in prange(nr):
        totals[r, 0], totals[r, 1] = range_totals(items, idx, has_idx, w, has_w, cuts[r],
                                                  cuts[r + 1])
    above = np.zeros((nr, 2))
    for r in range(nr - 2, -1, -1):
        above[r, 0] = above[r + 1, 0] + totals[r + 1, 0]
        above[r, 1] = above[r + 1, 1] + totals[r + 1, 1]
    sums = np.zeros((nr, 2))
    no_curve = np.zeros((3, 0))
    for r in prange(nr):
        u2, a, _ = walk(items, idx, has_idx, w, has_w, cuts[r], cuts[r + 1], above[r, 0],
                        above[r, 1], no_curve, 0)
        sums[r, 0] = u2
        sums[r, 1] = a
    big_p = 0.0
    big_n = 0.0
    u2 = 0.0
    a = 0.0
    for r in range(nr - 1, -1, -1):
        big_p += totals[r, 0]
        big_n += totals[r, 1]
        u2 += sums[r, 0]
        a += sums[r, 1]
    return big_p, big_n, u2, a


_NONE_F64 = np.zeros(1)
_NONE_U8 = np.ones(1, np.uint8)


def _cuts(items, m):
    """WALK_RANGES + 1 cut positions of the sorted items [0, m), each moved down to the first item
    of its distinct value (a binary search)."""
    cuts = [m * r // WALK_RANGES for r in range(WALK_RANGES + 1)]
    for r in range(1, WALK_RANGES):
        v = int(items[cuts[r]]) >> 1 if cuts[r] < m else -1
        lo, hi = cuts[r - 1], cuts[r]
        while lo < hi:
            mid = (lo + hi) // 2
            if int(items[mid]) >> 1 < v:
                lo = mid + 1
            else:
                hi = mid
        cuts[r] = lo
    return np.array(cuts, np.int64)


def rank(y, p, w, mask, omit, want_curve, n_threads):
    """(P, N, 2·U, A, flags, curve) of one 1-D slice (see walk): y labels (uint8, int8, float32 or
    float64), p float32 or float64 predictions, w float64 weights or None, mask uint8 or None,
    omit: leave NaN out. curve: None, or (prediction values, TP, FP) per distinct prediction from
    the top. Memory: the items and their sort buffer (2·4 bytes per element for float32 p, 2·8
    for float64), and with weights the element indices (2·4 bytes)."""
    n = p.shape[0]
    nb = max(1, min(n_threads, n >> 16))
    bounds = np.array([n * b // nb for b in range(nb + 1)], np.int64)
    f32 = p.dtype == np.float32
    items = np.empty(n + 1, np.uint32 if f32 else np.uint64)
    has_idx = w is not None
    idx = np.empty(n + 1 if has_idx else 1, np.uint32)
    wv = _NONE_F64 if w is None else w
    n_neg, m, flags = _split(y, p, f32, wv, has_idx, _NONE_U8 if mask is None else mask,
                             mask is not None, omit, items, idx, has_idx, bounds)
    if flags & (RANK_SOFT | RANK_WEIGHT):
        return 0.0, 0.0, 0.0, 0.0, flags, None
    tmp = np.empty(max(n_neg, m - n_neg), items.dtype)
    idx_tmp = np.empty(tmp.shape[0] if has_idx else 1, np.uint32)
    nbits = 32 if f32 else 64
    for lo, hi in ((0, n_neg), (n_neg, m)):
        nbs = max(1, min(n_threads, (hi - lo) >> 16))
        _sort(items[lo:hi], tmp, idx[lo:hi] if has_idx else idx, idx_tmp, has_idx, 0, hi - lo,
              nbs, nbits)
    del tmp, idx_tmp
    if not want_curve:
        return (*_walk(items, idx, has_idx, wv, has_idx, m, _cuts(items, m)), flags, None)
    curve = np.empty((3, m))
    u2, a, k = walk(items, idx, has_idx, wv, has_idx, 0, m, 0.0, 0.0, curve, 0)
    at = curve[2, :k].astype(np.int64)
    return (curve[0, k - 1] if k else 0.0, curve[1, k - 1] if k else 0.0, u2, a, flags,
            (_values(items[at], at < n_neg, f32), curve[0, :k], curve[1, :k]))


def _values(items, negative, f32):
    """The predictions of items (from their key and sign)."""
    key = items >> 1
    if f32:
        bits = np.where(negative, ~key.astype(np.uint32), key.astype(np.uint32))
        return bits.view(np.float32)
    bits = np.where(negative, ~key, key)
    return bits.view(np.float64)
