"""Numba ranking kernels: the twin of kernels/c/rank.h (same functions, same order).

Exact ROC-AUC and average precision of each slot (the whole slice, or each group) by sorting.
Each kept prediction becomes an order-preserving unsigned integer key (uint32 for float32, uint64
for float64) whose sign bit is dropped and replaced by the label in the low bit: item = (key
without sign) << 1 | y. One counting pass (count) and one stable scatter (split) put the items in
buckets: by group, then negative predictions, the others, NaN (propagated: counted, not sorted);
without groups the buckets are the sign and the first 11-bit radix digit, so the split is also
the first pass of the sort. Each bucket is then sorted by an LSD radix sort, stable: one of at
least BIG items by all threads (11-bit digits, per-block histograms), smaller ones each by one
thread in cache (sort_small). A walk from the top over the distinct predictions sums the
Mann-Whitney pairs and the precision at each recall step in float64; a slot of at least BIG items
in WALK_RANGES fixed ranges cut at distinct values (range_totals gives each range the weights
above it). Every choice depends on the sizes only, so the result does not depend on the thread
count. ``rank`` is the Python entry; its twin is ``rank`` in kernels/cython_kernels.pyx.
"""

import numba
import numpy as np
from numba import njit, prange

from .. import INSERTION, RADIX_BITS, RANK_NAN, RANK_SOFT, RANK_WEIGHT, WALK_RANGES
from .llvm import JIT, bits_f32, bits_f64, prefer_wide_vectors

RADIX = 1 << RADIX_BITS
BIG = 1 << 16  # buckets and slots of at least BIG items: sorted and walked by all threads
_LOW63 = np.uint64(0x7FFFFFFFFFFFFFFF)
_U1 = np.uint64(1)


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
def rank_bucket(item, neg, isnan, g, grouped):
    """The split bucket of an item: with groups 3·g + (0 negative, 1 not, 2 NaN); without,
    (0 negative, 1 not)·RADIX + the item's first digit, or 2·RADIX for NaN."""
    if grouped:
        return 3 * g + (2 if isnan else (0 if neg else 1))
    if isnan:
        return 2 * RADIX
    return (0 if neg else RADIX) + np.int64(item & np.uint64(RADIX - 1))


@njit(**JIT)
def count(y, p, f32, w, has_w, mask, has_mask, omit, groups, grouped, lo, hi, counts, out,
          write):
    """counts[bucket] += the kept elements of [lo, hi); returns the flags. Kept = in the mask
    and, under nan_policy "omit", with no NaN label or prediction. write (no groups): every
    element's item to out[i] too, and the histograms of its digits after the first to
    counts[2·RADIX + 1 + (d - 1)·RADIX + value] (when all are kept and none negative, the sort
    starts from there); the top digit's in four interleaved copies (its values repeat: one table
    would chain each count on the last)."""
    soft = False
    nan = False
    bad_w = False
    nd = (out.itemsize * 8 - 1) // RADIX_BITS
    top = np.zeros((4, RADIX), np.int64)
    base = np.uint64(2 * RADIX + 1 - RADIX)
    for i in range(lo, hi):
        yv = y[i]
        pv = p[i]
        isnan = (yv != yv) | (pv != pv)
        keep = ~(omit & isnan)
        if has_mask:
            keep &= mask[i] != 0
        nan |= keep & isnan
        soft |= keep & (yv != 0) & (yv != 1) & (yv == yv)
        if has_w:
            bad_w |= keep & ~((w[i] >= 0.0) & (w[i] < np.inf))
        if f32:
            k, neg = key_f32(np.float32(pv))
        else:
            k, neg = key_f64(np.float64(pv))
        item = (k << _U1) | np.uint64(yv == 1)
        b = rank_bucket(item, neg, isnan, groups[i] if grouped else 0, grouped)
        counts[np.uint64(b)] += np.int64(keep)
        if write:
            out[i] = item
            for d in range(1, nd):
                counts[base + np.uint64(d * RADIX)
                       + ((item >> np.uint64(d * RADIX_BITS)) & np.uint64(RADIX - 1))] += 1
            top[i & 3, (item >> np.uint64(nd * RADIX_BITS)) & np.uint64(RADIX - 1)] += 1
    if write:
        at = 2 * RADIX + 1 + (nd - 1) * RADIX
        for v in range(RADIX):
            counts[at + v] += top[0, v] + top[1, v] + top[2, v] + top[3, v]
    return np.int64(soft) * RANK_SOFT | np.int64(nan) * RANK_NAN | np.int64(bad_w) * RANK_WEIGHT


@njit(**JIT)
def split(y, p, f32, mask, has_mask, omit, groups, grouped, lo, hi, at, out, out_idx, has_idx):
    """The items of the kept elements of [lo, hi) to out at at[bucket], which advances (with
    their index in out_idx when has_idx): a stable scatter. Labels are 0 or 1 here (a NaN label
    reads 0: its slot is NaN). A dropped element goes to the spare last slot."""
    spare = np.uint64(out.shape[0] - 1)
    for i in range(lo, hi):
        yv = y[i]
        pv = p[i]
        isnan = (yv != yv) | (pv != pv)
        keep = not (omit and isnan)
        if has_mask:
            keep = keep and mask[i] != 0
        if f32:
            k, neg = key_f32(np.float32(pv))
        else:
            k, neg = key_f64(np.float64(pv))
        item = (k << _U1) | np.uint64(yv == 1)
        b = np.uint64(rank_bucket(item, neg, isnan, groups[i] if grouped else 0, grouped))
        j = np.uint64(at[b]) if keep else spare
        at[b] += np.int64(keep)
        out[j] = item
        if has_idx:
            out_idx[j] = i


@njit(**JIT)
def histogram(items, lo, hi, shift, bits, counts):
    """counts[d] += the items of [lo, hi) whose digit of `bits` bits at shift is d."""
    s = np.uint64(shift)
    m = np.uint64((1 << bits) - 1)
    for i in range(lo, hi):
        counts[(np.uint64(items[i]) >> s) & m] += 1


@njit(**JIT)
def scatter(items, idx, has_idx, lo, hi, shift, bits, at, out, out_idx):
    """Items of [lo, hi) (and their idx) to out at at[digit], which advances: one stable pass of
    the LSD radix sort."""
    s = np.uint64(shift)
    m = np.uint64((1 << bits) - 1)
    if has_idx:
        for i in range(lo, hi):
            d = (np.uint64(items[i]) >> s) & m
            j = np.uint64(at[d])
            out[j] = items[i]
            out_idx[j] = idx[i]
            at[d] += 1
    else:
        for i in range(lo, hi):
            d = (np.uint64(items[i]) >> s) & m
            j = np.uint64(at[d])
            out[j] = items[i]
            at[d] += 1


@njit(**JIT)
def scatter_back(items, idx, has_idx, lo, hi, shift, bits, at, out, out_idx):
    """scatter from the back: items of [lo, hi) to out before at[digit], which moves down (the
    second half of a pass whose first half scatter fills from the bucket starts)."""
    s = np.uint64(shift)
    m = np.uint64((1 << bits) - 1)
    i = hi - 1
    while i >= lo:
        v = items[np.uint64(i)]
        d = (np.uint64(v) >> s) & m
        j = np.uint64(at[d] - 1)
        at[d] -= 1
        out[j] = v
        if has_idx:
            out_idx[j] = idx[np.uint64(i)]
        i -= 1


@njit(**JIT)
def sort_small(a, b, ia, ib, has_idx, lo, hi, in_b, counts, at):
    """Sorts the items [lo, hi) of a (of b when in_b) ascending into a, with ia (ib) along, in
    one thread: insertion sort up to INSERTION items, else an LSD radix sort of 8-bit digits (11
    from 8192 items) whose histograms come from one pass, skipping constant digits. counts and
    at: scratch of 6·2048 and 2048 counters."""
    n = hi - lo
    if n <= INSERTION:
        if in_b:
            a[lo:hi] = b[lo:hi]
            if has_idx:
                ia[lo:hi] = ib[lo:hi]
        for i in range(lo + 1, hi):
            v = a[i]
            iv = ia[i] if has_idx else 0
            j = i - 1
            while j >= lo and a[j] > v:
                a[j + 1] = a[j]
                if has_idx:
                    ia[j + 1] = ia[j]
                j -= 1
            a[j + 1] = v
            if has_idx:
                ia[j + 1] = iv
        return
    bits = 11 if n >= 8192 else 8
    radix = 1 << bits
    mask = np.uint64(radix - 1)
    n_digits = (a.itemsize * 8 + bits - 1) // bits
    src, dst, isrc, idst = (b, a, ib, ia) if in_b else (a, b, ia, ib)
    counts[:n_digits * radix] = 0
    for i in range(lo, hi):
        v = np.uint64(src[i])
        for d in range(n_digits):
            counts[np.uint64(d * radix) + ((v >> np.uint64(d * bits)) & mask)] += 1
    for d in range(n_digits):
        s = np.uint64(d * bits)
        c = counts[d * radix:(d + 1) * radix]
        if c[(np.uint64(src[lo]) >> s) & mask] == n:
            continue
        start = lo
        for k in range(radix):
            at[k] = start
            start += c[k]
        scatter(src, isrc, has_idx, lo, hi, d * bits, bits, at, dst, idst)
        src, dst, isrc, idst = dst, src, idst, isrc
        in_b = not in_b
    if in_b:
        a[lo:hi] = b[lo:hi]
        if has_idx:
            ia[lo:hi] = ib[lo:hi]


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
    """(2·U, A, TP, FP, m) of the sorted items [lo, hi) walked down by distinct prediction v,
    with tp, fp the positive and negative weights at v and TP, FP the weights at or above v
    (big_tp, big_fp: those above the range; returned: at the range's bottom): 2·U = Σ fp·(2·TP -
    tp) (ties count half), A = Σ tp·TP/(TP + FP) (precision at each recall step); AUC = U/(P·N),
    AP = A/P. Without weights the counts are integers (short dependency chains). With curve (3
    rows), each distinct v's TP, FP and the position of its first item are written from column
    m, which advances."""
    u2 = 0.0
    a = 0.0
    want_curve = curve.shape[1] > 0
    if not has_w:
        n_tp = np.int64(big_tp)
        n_fp = np.int64(big_fp)
        if not want_curve and items.itemsize == 4:
            # branch-free: a distinct value ends at about every other item in real data, a
            # branch on it mispredicts; a non-end adds 0·x = +0.0, so the sums are the same
            c_tp = n_tp
            c_fp = n_fp
            i = hi - 1
            while i >= lo:
                item = items[np.uint64(i)]
                pos = np.int64(item & 1)
                c_tp += pos
                c_fp += 1 - pos
                end = i == lo or (items[np.uint64(i - 1)] >> 1) != (item >> 1)
                r_tp = c_tp - n_tp
                r_fp = c_fp - n_fp
                e = np.float64(end)
                u2 += e * (np.float64(r_fp) * np.float64(2 * c_tp - r_tp))
                a += e * (np.float64(r_tp) * (np.float64(c_tp) / np.float64(c_tp + c_fp)))
                n_tp = c_tp if end else n_tp
                n_fp = c_fp if end else n_fp
                i -= 1
            return u2, a, np.float64(n_tp), np.float64(n_fp), m
        run_tp = 0
        run_fp = 0
        i = hi - 1
        while i >= lo:
            item = items[np.uint64(i)]
            pos = np.int64(item & 1)
            run_tp += pos
            run_fp += 1 - pos
            if i == lo or (items[np.uint64(i - 1)] >> 1) != (item >> 1):
                n_tp += run_tp
                n_fp += run_fp
                u2 += np.float64(run_fp) * np.float64(2 * n_tp - run_tp)
                a += np.float64(run_tp) * (np.float64(n_tp) / np.float64(n_tp + n_fp))
                if want_curve:
                    curve[0, m] = n_tp
                    curve[1, m] = n_fp
                    curve[2, m] = i
                m += 1
                run_tp = 0
                run_fp = 0
            i -= 1
        return u2, a, np.float64(n_tp), np.float64(n_fp), m
    tp = 0.0
    fp = 0.0
    i = hi - 1
    while i >= lo:
        item = items[np.uint64(i)]
        wi = w[idx[np.uint64(i)]]
        pos = np.float64(item & 1)
        tp += wi * pos
        fp += wi - wi * pos
        if i == lo or (items[np.uint64(i - 1)] >> 1) != (item >> 1):
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
    return u2, a, big_tp, big_fp, m


@njit(**JIT)
def cuts(items, lo, hi, out):
    """WALK_RANGES + 1 cut positions of the sorted items [lo, hi) into out, each moved down to
    the first item of its distinct value (a binary search)."""
    n = hi - lo
    for r in range(WALK_RANGES + 1):
        out[r] = lo + n * r // WALK_RANGES
    for r in range(1, WALK_RANGES):
        v = items[out[r]] >> 1
        a = out[r - 1]
        b = out[r]
        while a < b:
            mid = (a + b) // 2
            if (items[mid] >> 1) < v:
                a = mid + 1
            else:
                b = mid
        out[r] = a


@njit(parallel=True, **JIT)
def _count(y, p, f32, w, has_w, mask, has_mask, omit, groups, grouped, n_buckets, out, write,
           bounds):
    """count over the blocks of bounds in parallel: (per-block counts, flags, with write the
    histograms (nd, RADIX) of the items' digits, the first one's of the non-negative)."""
    nb = bounds.shape[0] - 1
    nd = (out.itemsize * 8 + RADIX_BITS - 1) // RADIX_BITS
    counts = np.zeros((nb, n_buckets + ((nd - 1) * RADIX if write else 0)), np.int64)
    flags = np.zeros(nb, np.int64)
    for b in prange(nb):
        flags[b] = count(y, p, f32, w, has_w, mask, has_mask, omit, groups, grouped, bounds[b],
                         bounds[b + 1], counts[b], out, write)
    flag = 0
    for b in range(nb):
        flag |= flags[b]
    total = counts.sum(axis=0)
    hist = np.zeros((nd if write else 0, RADIX), np.int64)
    if write:
        hist[0] = total[RADIX:2 * RADIX]
        hist[1:] = total[n_buckets:].reshape(nd - 1, RADIX)
    return counts[:, :n_buckets].copy(), flag, hist


@njit(parallel=True, **JIT)
def _split(y, p, f32, mask, has_mask, omit, groups, grouped, counts, out, out_idx, has_idx,
           bounds):
    """The kept elements' items into their buckets (per-block counts from _count), over the
    blocks of bounds in parallel; the bucket starts (n_buckets + 1)."""
    nb, n_buckets = counts.shape
    starts = np.zeros(n_buckets + 1, np.int64)
    start = 0
    for k in range(n_buckets):
        starts[k] = start
        for b in range(nb):
            c = counts[b, k]
            counts[b, k] = start
            start += c
    starts[n_buckets] = start
    for b in prange(nb):
        split(y, p, f32, mask, has_mask, omit, groups, grouped, bounds[b], bounds[b + 1],
              counts[b], out, out_idx, has_idx)
    return starts


@njit(parallel=True, **JIT)
def _digit_histograms(items, lo, hi, shift, nd, nb):
    """The histograms (nd, RADIX) of the 11-bit digits from shift of the items [lo, hi), one
    pass over nb blocks in parallel."""
    n = hi - lo
    counts = np.zeros((nb, nd, RADIX), np.int64)
    for k in prange(nb):
        for d in range(nd):
            histogram(items, lo + n * k // nb, lo + n * (k + 1) // nb, shift + d * RADIX_BITS,
                      RADIX_BITS, counts[k, d])
    return counts.sum(axis=0)


@njit(parallel=True, **JIT)
def _sort_big(a, b, ia, ib, has_idx, lo, hi, shift, in_b, nb, hist):
    """Sorts the items [lo, hi) of a (of b when in_b) ascending into a by an LSD radix sort of
    11-bit digits from shift (the digits below are sorted), hist: their histograms (nd, RADIX);
    a pass whose digit is the same for every item is skipped. With one or two blocks, the first
    scatters from the bucket starts and the second from the bucket ends (no per-block
    histograms); with more, each pass counts per block first."""
    n = hi - lo
    bounds = np.empty(nb + 1, np.int64)
    for k in range(nb + 1):
        bounds[k] = lo + n * k // nb
    src, dst, isrc, idst = (b, a, ib, ia) if in_b else (a, b, ia, ib)
    at = np.zeros((nb, RADIX), np.int64)
    for d in range(hist.shape[0]):
        s = shift + d * RADIX_BITS
        c = hist[d]
        if c[(np.uint64(src[lo]) >> np.uint64(s)) & np.uint64(RADIX - 1)] == n:
            continue
        if nb <= 2:
            start = lo
            for k in range(RADIX):
                at[0, k] = start
                start += c[k]
                at[nb - 1, k] = start if nb == 2 else at[0, k]
        else:
            for k in prange(nb):
                at[k, :] = 0
                histogram(src, bounds[k], bounds[k + 1], s, RADIX_BITS, at[k])
            start = lo
            for v in range(RADIX):
                for k in range(nb):
                    count_kv = at[k, v]
                    at[k, v] = start
                    start += count_kv
        for k in prange(nb):
            if nb == 2 and k == 1:
                scatter_back(src, isrc, has_idx, bounds[k], bounds[k + 1], s, RADIX_BITS, at[k],
                             dst, idst)
            else:
                scatter(src, isrc, has_idx, bounds[k], bounds[k + 1], s, RADIX_BITS, at[k], dst,
                        idst)
        src, dst, isrc, idst = dst, src, idst, isrc
        in_b = not in_b
    if in_b:
        for k in prange(nb):
            a[bounds[k]:bounds[k + 1]] = b[bounds[k]:bounds[k + 1]]
            if has_idx:
                ia[bounds[k]:bounds[k + 1]] = ib[bounds[k]:bounds[k + 1]]


@njit(parallel=True, **JIT)
def _sort_small_all(a, b, ia, ib, has_idx, seg, in_b, n_chunks):
    """sort_small of each bucket [seg[k, 0], seg[k, 1]), the buckets in n_chunks parallel
    chunks."""
    ns = seg.shape[0]
    for c in prange(n_chunks):
        counts = np.empty(6 * 2048, np.uint32)
        at = np.empty(2048, np.int64)
        for k in range(ns * c // n_chunks, ns * (c + 1) // n_chunks):
            sort_small(a, b, ia, ib, has_idx, seg[k, 0], seg[k, 1], in_b, counts, at)


@njit(**JIT)
def _sort_all(a, b, ia, ib, has_idx, seg, shift, in_b, hist, n_threads):
    """Sorts each bucket [seg[k, 0], seg[k, 1]) of a (of b when in_b) into a: the big ones one
    after the other by all threads (hist: the histograms of the one bucket's digits, or empty),
    the others each by one thread."""
    small = np.empty(seg.shape, np.int64)
    ns = 0
    nd = (a.itemsize * 8 - shift + RADIX_BITS - 1) // RADIX_BITS
    for k in range(seg.shape[0]):
        lo, hi = seg[k, 0], seg[k, 1]
        if hi - lo >= BIG:
            nb = max(1, min(n_threads, (hi - lo) >> 16))
            h = hist if hist.shape[0] else _digit_histograms(b if in_b else a, lo, hi, shift,
                                                             nd, nb)
            _sort_big(a, b, ia, ib, has_idx, lo, hi, shift, in_b, nb, h)
        elif hi - lo > 0:
            small[ns, 0] = lo
            small[ns, 1] = hi
            ns += 1
    if ns:
        _sort_small_all(a, b, ia, ib, has_idx, small[:ns], in_b, min(n_threads, ns))


@njit(parallel=True, **JIT)
def _walk_big(items, idx, has_idx, w, has_w, lo, hi):
    """(P, N, 2·U, A) of the sorted items [lo, hi): WALK_RANGES ranges between cuts at distinct
    values, their totals, then their walks in parallel, summed in range order."""
    cut = np.empty(WALK_RANGES + 1, np.int64)
    cuts(items, lo, hi, cut)
    nr = WALK_RANGES
    totals = np.zeros((nr, 2))
    for r in prange(nr):
        totals[r, 0], totals[r, 1] = range_totals(items, idx, has_idx, w, has_w, cut[r],
                                                  cut[r + 1])
    above = np.zeros((nr, 2))
    for r in range(nr - 2, -1, -1):
        above[r, 0] = above[r + 1, 0] + totals[r + 1, 0]
        above[r, 1] = above[r + 1, 1] + totals[r + 1, 1]
    sums = np.zeros((nr, 2))
    no_curve = np.zeros((3, 0))
    for r in prange(nr):
        u2, a, _, _, _ = walk(items, idx, has_idx, w, has_w, cut[r], cut[r + 1], above[r, 0],
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


@njit(parallel=True, **JIT)
def _walk_small_all(items, idx, has_idx, w, has_w, slots, out, n_chunks):
    """out[k] = (P, N, 2·U, A) of each slot [slots[k, 0], slots[k, 1]) of fewer than BIG items,
    each walked by one thread, the slots in n_chunks parallel chunks."""
    ns = slots.shape[0]
    no_curve = np.zeros((3, 0))
    for c in prange(n_chunks):
        for k in range(ns * c // n_chunks, ns * (c + 1) // n_chunks):
            lo, hi = slots[k, 0], slots[k, 1]
            if hi - lo >= BIG:
                continue
            u2, a, tp, fp, _ = walk(items, idx, has_idx, w, has_w, lo, hi, 0.0, 0.0, no_curve, 0)
            out[k, 0] = tp
            out[k, 1] = fp
            out[k, 2] = u2
            out[k, 3] = a


@njit(**JIT)
def _walk_all(items, idx, has_idx, w, has_w, slots, n_threads):
    """(P, N, 2·U, A) of each slot [slots[k, 0], slots[k, 1]) of the sorted items."""
    out = np.zeros((slots.shape[0], 4))
    for k in range(slots.shape[0]):
        lo, hi = slots[k, 0], slots[k, 1]
        if hi - lo >= BIG:
            out[k, 0], out[k, 1], out[k, 2], out[k, 3] = _walk_big(items, idx, has_idx, w,
                                                                   has_w, lo, hi)
    _walk_small_all(items, idx, has_idx, w, has_w, slots, out,
                    max(1, min(n_threads, slots.shape[0])))
    return out


_NONE_F64 = np.zeros(1)
_NONE_U8 = np.ones(1, np.uint8)
_NONE_G = np.zeros(1, np.int64)


def rank(y, p, w, mask, groups, n_slots, omit, want_curve, n_threads):
    """(sums, nan, flags, curve) of a 1-D slice, per slot: sums[k] = (P, N, 2·U, A) (see walk),
    nan[k] whether slot k holds a propagated NaN. y labels (uint8, float32 or float64), p float32
    or float64 predictions, w float64 weights or None, mask uint8 or None, groups int64 ids in
    [0, n_slots) or None (one slot), omit: leave NaN out. curve (without groups): None, or
    (prediction values, TP, FP) per distinct prediction from the top. Memory: the items and
    their sort buffer (2·4 bytes per element for float32 p, 2·8 for float64), with weights the
    element indices (2·4 bytes)."""
    numba.set_num_threads(min(n_threads, numba.config.NUMBA_NUM_THREADS))
    n = p.shape[0]
    nb = max(1, min(n_threads, n >> 16))
    bounds = np.array([n * b // nb for b in range(nb + 1)], np.int64)
    f32 = p.dtype == np.float32
    grouped = groups is not None
    items = np.empty(n + 1, np.uint32 if f32 else np.uint64)
    tmp = np.empty(n + 1, items.dtype)
    has_idx = w is not None
    idx = np.empty(n + 1 if has_idx else 1, np.uint32)
    idx_tmp = np.empty(idx.shape[0], np.uint32)
    wv = _NONE_F64 if w is None else w
    n_buckets = 3 * n_slots if grouped else 2 * RADIX + 1
    counts, flags, hist = _count(y, p, f32, wv, has_idx, _NONE_U8 if mask is None else mask,
                                 mask is not None, omit, _NONE_G if groups is None else groups,
                                 grouped, n_buckets, tmp, not grouped, bounds)
    if flags & (RANK_SOFT | RANK_WEIGHT):
        return None, None, flags, None
    totals = counts.sum(axis=0)
    if not grouped and totals[RADIX:2 * RADIX].sum() == n:
        # all kept, none negative or NaN: the items are in tmp in input order, sorted from there
        if has_idx:
            idx_tmp[:n] = np.arange(n, dtype=np.uint32)
        _sort_all(items, tmp, idx, idx_tmp, has_idx, np.array([[0, n]], np.int64), 0, True,
                  hist, n_threads)
        starts = np.zeros(n_buckets + 1, np.int64)
        starts[RADIX + 1:] = n
        seg = None
    else:
        # with groups the split goes to tmp and each bucket is sorted from there; without, the
        # split is the first pass, into the buffer from which the passes left end in items
        into_tmp = grouped or (items.itemsize * 8 - 1) // RADIX_BITS % 2 == 1
        starts = _split(y, p, f32, _NONE_U8 if mask is None else mask, mask is not None, omit,
                        _NONE_G if groups is None else groups, grouped, counts,
                        tmp if into_tmp else items, idx_tmp if into_tmp else idx, has_idx, bounds)
        if grouped:
            seg = np.stack((starts[:-1], starts[1:]), 1).reshape(n_slots, 3, 2)[:, :2]
        else:
            seg = np.array([[0, starts[RADIX]], [starts[RADIX], starts[2 * RADIX]]], np.int64)
        _sort_all(items, tmp, idx, idx_tmp, has_idx, seg.reshape(-1, 2),
                  0 if grouped else RADIX_BITS, into_tmp, hist[:0], n_threads)
    if grouped:
        slots = np.stack((starts[0:-1:3], starts[2::3]), 1)
        nan = starts[3::3] > starts[2::3]
    else:
        slots = np.array([[0, starts[2 * RADIX]]], np.int64)
        nan = np.array([starts[2 * RADIX + 1] > starts[2 * RADIX]])
    del tmp, idx_tmp
    if not want_curve:
        return _walk_all(items, idx, has_idx, wv, has_idx, slots, n_threads), nan, flags, None
    m = int(slots[0, 1])
    curve = np.empty((3, m))
    u2, a, tp, fp, k = walk(items, idx, has_idx, wv, has_idx, 0, m, 0.0, 0.0, curve, 0)
    at = curve[2, :k].astype(np.int64)
    sums = np.array([[tp, fp, u2, a]])
    return sums, nan, flags, (_values(items[at], at < starts[RADIX], f32), curve[0, :k],
                              curve[1, :k])


def _values(items, negative, f32):
    """The predictions of items (from their key and sign)."""
    key = items >> 1
    if f32:
        bits = np.where(negative, ~key.astype(np.uint32), key.astype(np.uint32))
        return bits.view(np.float32)
    bits = np.where(negative, ~key, key)
    return bits.view(np.float64)
