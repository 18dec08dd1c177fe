"""Numba ranking kernels: the twin of kernels/c/rank.h (same functions, same order).

Exact ROC-AUC and average precision of each slot (the whole slice, or each group) by sorting.
Each kept prediction becomes an order-preserving unsigned integer key (uint32 for float32, uint64
for float64) whose sign bit is dropped and replaced by the label in the low bit: item = (key
without sign) << 1 | y. One counting pass (count: each bucket's negatives and positives) and one
stable scatter (split) put the items in buckets: by group, then negative predictions, the others,
NaN (propagated: counted, not sorted); without groups by sign and the item's top digit (15 bits,
fewer for small slices), so the split is the first, most significant pass of the sort and the
buckets fit in cache. Each bucket is then sorted in place by an LSD radix sort, stable: one of at
least BIG items and a quarter of a thread's share by all threads through a scratch of its size
(11-bit digits), the others each by one thread, the biggest first, in a scratch of its size, over
the bits that vary in the bucket (sort_small). A walk from the top over the distinct predictions
sums the Mann-Whitney pairs and the precision at each recall step in float64: without groups or
weights each bucket right after its sort, below the counts of the buckets after it; a bucket or
slot of at least BIG items in WALK_RANGES fixed ranges cut at distinct values (range_totals gives
each range the weights above it). The sums depend on the sizes only, so the result does not depend
on the thread count. ``rank`` is the Python entry; its twin is ``rank`` in
kernels/cython_kernels.pyx.
"""

import numba
import numpy as np
from numba import njit, prange

from .. import INSERTION, RADIX_BITS, RANK_NAN, RANK_SOFT, RANK_WEIGHT, WALK_RANGES
from .llvm import JIT, bits_f32, bits_f64, prefer_wide_vectors

RADIX = 1 << RADIX_BITS
BIG = 1 << 16  # buckets and slots of at least BIG items: walked in ranges by all threads
RANK_BLOCK = 1 << 8  # elements per block of the plain count and split loops
_LOW63 = np.uint64(0x7FFFFFFFFFFFFFFF)
_U1 = np.uint64(1)
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)
_NOT_LABEL = np.uint64(0xFFFFFFFFFFFFFFFE)


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
def rank_bucket(item, neg, isnan, g, grouped, shift, top):
    """The split bucket of an item: with groups 3·g + (0 negative, 1 not, 2 NaN); without,
    (0 negative, 1 not)·top + the item's top digit (item >> shift, below top), or 2·top for
    NaN."""
    if grouped:
        return 3 * g + (2 if isnan else (0 if neg else 1))
    if isnan:
        return 2 * top
    return (0 if neg else top) + np.int64(item >> np.uint64(shift))


@njit(**JIT)
def rank_item_f32(v, y, isnan, shift, top):
    """(item, bucket) of a float32 prediction v with label bit y, without groups: key_f32 and
    rank_bucket without branches, so that the loops of count and split that call it vectorise."""
    b = np.int64(bits_f32(v + np.float32(0.0)))
    item = (((b ^ (b >> 31)) & 0x7FFFFFFF) << 1) | y
    return item, 2 * top if isnan else (top if b >= 0 else 0) + (item >> shift)


@njit(**JIT)
def count(y, p, f32, w, has_w, mask, has_mask, omit, groups, grouped, shift, top, lo, hi,
          counts):
    """counts[2·bucket + (label == 1)] += the kept elements of [lo, hi); returns the flags.
    Kept = in the mask and, under nan_policy "omit", with no NaN label or prediction."""
    soft = False
    nan = False
    bad_w = False
    if f32 and not (has_mask or omit or grouped):
        # every element kept, no groups: per block the counter slots first (a loop LLVM
        # vectorises), then their increments
        slot = np.empty(RANK_BLOCK, np.int64)
        for i0 in range(lo, hi, RANK_BLOCK):
            m = min(RANK_BLOCK, hi - i0)
            for k in range(m):
                yv = y[i0 + k]
                pv = p[i0 + k]
                isnan = (yv != yv) | (pv != pv)
                nan |= isnan
                soft |= (yv != 0) & (yv != 1) & (yv == yv)
                item, b = rank_item_f32(np.float32(pv), np.int64(yv == 1), isnan, shift, top)
                slot[k] = 2 * b + (item & 1)
            for k in range(m):
                counts[slot[k]] += 1
        if has_w:
            for i in range(lo, hi):
                bad_w |= ~((w[i] >= 0.0) & (w[i] < np.inf))
        return (np.int64(soft) * RANK_SOFT | np.int64(nan) * RANK_NAN
                | np.int64(bad_w) * RANK_WEIGHT)
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
        b = rank_bucket(item, neg, isnan, groups[i] if grouped else 0, grouped, shift, top)
        counts[np.uint64(2 * b) + (item & _U1)] += np.int64(keep)
    return np.int64(soft) * RANK_SOFT | np.int64(nan) * RANK_NAN | np.int64(bad_w) * RANK_WEIGHT


@njit(**JIT)
def split(y, p, f32, mask, has_mask, omit, groups, grouped, shift, top, lo, hi, at, out, out_idx,
          has_idx):
    """The items of the kept elements of [lo, hi) to out at at[bucket], which advances (with
    their index in out_idx when has_idx): a stable scatter. Labels are 0 or 1 here (a NaN label
    reads 0: its slot is NaN). A dropped element goes to the spare last slot."""
    if f32 and not (has_mask or omit or grouped):
        # per block the items and buckets first (vectorised), then the scatter
        block_items = np.empty(RANK_BLOCK, np.int64)
        block_buckets = np.empty(RANK_BLOCK, np.int64)
        for i0 in range(lo, hi, RANK_BLOCK):
            m = min(RANK_BLOCK, hi - i0)
            for k in range(m):
                yv = y[i0 + k]
                pv = p[i0 + k]
                block_items[k], block_buckets[k] = rank_item_f32(
                    np.float32(pv), np.int64(yv == 1), (yv != yv) | (pv != pv), shift, top)
            for k in range(m):
                b = block_buckets[k]
                j = at[b]
                at[b] = j + 1
                out[j] = block_items[k]
                if has_idx:
                    out_idx[j] = i0 + k
        return
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
        b = np.uint64(rank_bucket(item, neg, isnan, groups[i] if grouped else 0, grouped, shift,
                                  top))
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
def rank_varying(items, lo, hi, keep):
    """The bits in which the items [lo, hi) differ from the first, within keep."""
    first = items[lo]
    diff = first ^ first
    for i in range(lo, hi):
        diff |= items[i] ^ first
    return np.uint64(diff) & keep


@njit(**JIT)
def sort_small(a, b, ia, ib, has_idx, lo, hi, in_b, counts, at):
    """Sorts the items [lo, hi) of a (of b when in_b) ascending into a, with ia (ib) along, in
    one thread: insertion sort up to INSERTION items, else an LSD radix sort over the span of
    bits that vary in the range (without has_idx, the label bit left out: the unweighted walk
    only counts a run's labels), in digits of at most 8 bits (11 from 8192 items) of equal
    width, whose histograms come from one pass, skipping constant digits. counts and at: scratch
    of 6·2048 and 2048 counters."""
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
    src, dst, isrc, idst = (b, a, ib, ia) if in_b else (a, b, ia, ib)
    diff = rank_varying(src, lo, hi, _ALL if has_idx else _NOT_LABEL)
    low = 0
    while low < 63 and not ((diff >> np.uint64(low)) & _U1):
        low += 1
    high = 0
    while high < 64 and (diff >> np.uint64(high)) != 0:
        high += 1
    max_bits = 11 if n >= 8192 else 8
    n_digits = (high - low + max_bits - 1) // max_bits if diff != 0 else 0
    bits = (high - low + n_digits - 1) // n_digits if n_digits else 1
    radix = 1 << bits
    mask = np.uint64(radix - 1)
    counts[:n_digits * radix] = 0
    for i in range(lo if n_digits else hi, hi):
        v = np.uint64(src[i]) >> np.uint64(low)
        for d in range(n_digits):
            counts[np.uint64(d * radix) + ((v >> np.uint64(d * bits)) & mask)] += 1
    for d in range(n_digits):
        s = low + d * bits
        c = counts[d * radix:(d + 1) * radix]
        if c[(np.uint64(src[lo]) >> np.uint64(s)) & mask] == n:
            continue
        start = lo
        for k in range(radix):
            at[k] = start
            start += c[k]
        scatter(src, isrc, has_idx, lo, hi, s, bits, at, dst, idst)
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
def _count(y, p, f32, w, has_w, mask, has_mask, omit, groups, grouped, shift, top, n_buckets,
           bounds):
    """count over the blocks of bounds in parallel: (per-block counts (nb, 2·n_buckets) of each
    bucket's negatives and positives, flags)."""
    nb = bounds.shape[0] - 1
    counts = np.zeros((nb, 2 * n_buckets), np.int64)
    flags = np.zeros(nb, np.int64)
    for b in prange(nb):
        flags[b] = count(y, p, f32, w, has_w, mask, has_mask, omit, groups, grouped, shift, top,
                         bounds[b], bounds[b + 1], counts[b])
    flag = 0
    for b in range(nb):
        flag |= flags[b]
    return counts, flag


@njit(parallel=True, **JIT)
def _split(y, p, f32, mask, has_mask, omit, groups, grouped, shift, top, counts, out, out_idx,
           has_idx, bounds):
    """The kept elements' items into their buckets (per-block counts from _count), over the
    blocks of bounds in parallel; the bucket starts (n_buckets + 1)."""
    nb = counts.shape[0]
    n_buckets = counts.shape[1] // 2
    starts = np.zeros(n_buckets + 1, np.int64)
    at = np.empty((nb, n_buckets), np.int64)
    start = 0
    for k in range(n_buckets):
        starts[k] = start
        for b in range(nb):
            at[b, k] = start
            start += counts[b, 2 * k] + counts[b, 2 * k + 1]
    starts[n_buckets] = start
    for b in prange(nb):
        split(y, p, f32, mask, has_mask, omit, groups, grouped, shift, top, bounds[b],
              bounds[b + 1], at[b], out, out_idx, has_idx)
    return starts


@njit(parallel=True, **JIT)
def _digit_histograms(items, n, nd, nb):
    """The histograms (nd, RADIX) of the 11-bit digits of the items [0, n), one pass over nb
    blocks in parallel."""
    counts = np.zeros((nb, nd, RADIX), np.int64)
    for k in prange(nb):
        for d in range(nd):
            histogram(items, n * k // nb, n * (k + 1) // nb, d * RADIX_BITS, RADIX_BITS,
                      counts[k, d])
    return counts.sum(axis=0)


@njit(parallel=True, **JIT)
def _sort_big(a, b, ia, ib, has_idx, n, nb, hist):
    """Sorts the items [0, n) of a in place (b, ib: scratch of n) by an LSD radix sort of 11-bit
    digits, hist: their histograms (nd, RADIX); a pass whose digit is the same for every item is
    skipped. With one or two blocks, the first scatters from the bucket starts and the second
    from the bucket ends (no per-block histograms); with more, each pass counts per block
    first."""
    bounds = np.empty(nb + 1, np.int64)
    for k in range(nb + 1):
        bounds[k] = n * k // nb
    src, dst, isrc, idst = a, b, ia, ib
    in_b = False
    at = np.zeros((nb, RADIX), np.int64)
    for d in range(hist.shape[0]):
        s = d * RADIX_BITS
        c = hist[d]
        if c[(np.uint64(src[0]) >> np.uint64(s)) & np.uint64(RADIX - 1)] == n:
            continue
        if nb <= 2:
            start = 0
            for k in range(RADIX):
                at[0, k] = start
                start += c[k]
                at[nb - 1, k] = start if nb == 2 else at[0, k]
        else:
            for k in prange(nb):
                at[k, :] = 0
                histogram(src, bounds[k], bounds[k + 1], s, RADIX_BITS, at[k])
            start = 0
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


@njit(**JIT)
def _sort_one_big(a, ia, has_idx, lo, hi, tmp, idx_tmp, n_threads):
    """Sorts the items [lo, hi) of a in place (ia along when has_idx) by all threads."""
    n = hi - lo
    nb = min(n_threads, max(1, n >> 15))
    nd = (a.itemsize * 8 + RADIX_BITS - 1) // RADIX_BITS
    _sort_big(a[lo:hi], tmp[:n], ia[lo:hi] if has_idx else ia, idx_tmp[:n] if has_idx else ia,
              has_idx, n, nb, _digit_histograms(a[lo:hi], n, nd, nb))


def _schedule(seg, min_size, n_threads):
    """(shared, order, small) for sorting the buckets [seg[k, 0], seg[k, 1]): with more than one
    thread, the buckets of at least BIG items and a quarter of a thread's share are shared, each
    sorted by all threads; the others of at least min_size items are each sorted by one thread,
    dealt out in `order` by decreasing bit length of their size (the biggest first, so that the
    threads end together); small: the biggest of those's size (at least 1)."""
    sizes = seg[:, 1] - seg[:, 0]
    limit = (max(BIG, int(sizes.sum()) // (4 * n_threads)) if n_threads > 1
             else int(sizes.max(initial=0)) + 1)
    solo = np.flatnonzero((sizes >= min_size) & (sizes < limit))
    order = solo[np.argsort(-np.frexp(sizes[solo])[1].astype(np.int8), kind="stable")]
    return (np.flatnonzero(sizes >= limit), np.ascontiguousarray(order, np.int64),
            int(sizes[solo].max(initial=1)))


@njit(parallel=True, **JIT)
def _sort_small_all(a, ia, has_idx, seg, order, n_workers, small):
    """sort_small in place of the buckets [seg[k, 0], seg[k, 1]) for k in order (small: the
    biggest's size), dealt out to n_workers parallel workers in turn."""
    for t in prange(n_workers):
        counts = np.empty(6 * 2048, np.uint32)
        at = np.empty(2048, np.int64)
        scratch = np.empty(small, a.dtype)
        iscratch = np.empty(small if has_idx else 1, np.uint32)
        for j in range(t, order.shape[0], n_workers):
            lo, hi = seg[order[j], 0], seg[order[j], 1]
            sort_small(a[lo:hi], scratch, ia[lo:hi] if has_idx else ia, iscratch, has_idx, 0,
                       hi - lo, False, counts, at)


def _sort_all(a, ia, has_idx, seg, n_threads):
    """Sorts each bucket [seg[k, 0], seg[k, 1]) of a in place (ia along when has_idx): the
    shared ones (_schedule) one after the other by all threads, the others each by one thread
    in a scratch of the biggest one's size, the biggest first."""
    shared, order, small = _schedule(seg, 2, n_threads)
    if shared.size:
        biggest = int(np.max(seg[shared, 1] - seg[shared, 0]))
        tmp = np.empty(biggest, a.dtype)
        idx_tmp = np.empty(biggest if has_idx else 1, np.uint32)
        for k in shared:
            _sort_one_big(a, ia, has_idx, seg[k, 0], seg[k, 1], tmp, idx_tmp, n_threads)
    _sort_small_all(a, ia, has_idx, seg, order, n_threads, small)


@njit(parallel=True, **JIT)
def _walk_big(items, idx, has_idx, w, has_w, lo, hi, big_tp, big_fp):
    """(P, N, 2·U, A) of the sorted items [lo, hi) below weights big_tp, big_fp: WALK_RANGES
    ranges between cuts at distinct values, their totals, then their walks in parallel, summed
    in range order."""
    cut = np.empty(WALK_RANGES + 1, np.int64)
    cuts(items, lo, hi, cut)
    nr = WALK_RANGES
    totals = np.zeros((nr, 2))
    for r in prange(nr):
        totals[r, 0], totals[r, 1] = range_totals(items, idx, has_idx, w, has_w, cut[r],
                                                  cut[r + 1])
    above = np.zeros((nr, 2))
    above[nr - 1, 0] = big_tp
    above[nr - 1, 1] = big_fp
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
def _sort_walk_small(a, seg, above, out, order, n_workers, small):
    """The buckets of _sort_walk sorted by one thread, k in order (small: the biggest's size),
    dealt out to n_workers parallel workers in turn; those of fewer than BIG items walked."""
    no_idx = np.empty(1, np.uint32)
    no_w = np.empty(1)
    no_curve = np.zeros((3, 0))
    for t in prange(n_workers):
        counts = np.empty(6 * 2048, np.uint32)
        at = np.empty(2048, np.int64)
        scratch = np.empty(small, a.dtype)
        for j in range(t, order.shape[0], n_workers):
            k = order[j]
            lo, hi = seg[k, 0], seg[k, 1]
            sort_small(a[lo:hi], scratch, no_idx, no_idx, False, 0, hi - lo, False, counts, at)
            if hi - lo < BIG:
                out[k, 0], out[k, 1], out[k, 2], out[k, 3], _ = walk(
                    a, no_idx, False, no_w, False, lo, hi, above[k, 0], above[k, 1], no_curve, 0)


def _sort_walk(a, seg, above, n_threads):
    """(2·U, A, ...) per bucket [seg[k, 0], seg[k, 1]) of unweighted items, each sorted in place
    and walked below the weights above[k] of the buckets after it: the shared ones (_schedule)
    sorted one after the other by all threads, the others each by one thread, the biggest first,
    and walked right after (in cache); those of BIG items or more walked last, in ranges by all
    threads."""
    out = np.zeros((seg.shape[0], 4))
    shared, order, small = _schedule(seg, 1, n_threads)
    no_idx = np.empty(1, np.uint32)
    if shared.size:
        tmp = np.empty(int(np.max(seg[shared, 1] - seg[shared, 0])), a.dtype)
        for k in shared:
            _sort_one_big(a, no_idx, False, seg[k, 0], seg[k, 1], tmp, no_idx, n_threads)
    _sort_walk_small(a, seg, above, out, order, n_threads, small)
    for k in np.flatnonzero(seg[:, 1] - seg[:, 0] >= BIG):
        _, _, out[k, 0], out[k, 1] = _walk_big(a, no_idx, False, _NONE_F64, False, seg[k, 0],
                                               seg[k, 1], above[k, 0], above[k, 1])
    return out


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
                                                                   has_w, lo, hi, 0.0, 0.0)
    _walk_small_all(items, idx, has_idx, w, has_w, slots, out,
                    max(1, min(n_threads, slots.shape[0])))
    return out


@njit(**JIT)
def _sum_down(x):
    """x[-1] + ... + x[0], in that order."""
    total = 0.0
    for k in range(x.shape[0] - 1, -1, -1):
        total += x[k]
    return total


_NONE_F64 = np.zeros(1)
_NONE_U8 = np.ones(1, np.uint8)
_NONE_G = np.zeros(1, np.int64)


def rank(y, p, w, mask, groups, n_slots, omit, want_curve, n_threads):
    """(sums, nan, flags, curve) of a 1-D slice, per slot: sums[k] = (P, N, 2·U, A) (see walk),
    nan[k] whether slot k holds a propagated NaN. y labels (uint8, float32 or float64), p float32
    or float64 predictions, w float64 weights or None, mask uint8 or None, groups int64 ids in
    [0, n_slots) or None (one slot), omit: leave NaN out. curve (without groups): None, or
    (prediction values, TP, FP) per distinct prediction from the top. Memory: the items (4 bytes
    per element for float32 p, 8 for float64), with weights the element indices (4 bytes), and
    the sorts' scratch (_schedule): the size of the biggest bucket and, on several threads, of up
    to a quarter of the items more. One thread below BIG elements."""
    n = p.shape[0]
    n_threads = 1 if n < BIG else n_threads
    numba.set_num_threads(min(n_threads, numba.config.NUMBA_NUM_THREADS))
    nb = max(1, min(n_threads, n >> 16))
    bounds = np.array([n * b // nb for b in range(nb + 1)], np.int64)
    f32 = p.dtype == np.float32
    grouped = groups is not None
    top_bits = min(15, max(1, int(n).bit_length() - 3))
    shift = (32 if f32 else 64) - top_bits
    top = 1 << top_bits
    has_idx = w is not None
    wv = _NONE_F64 if w is None else w
    mv = _NONE_U8 if mask is None else mask
    gv = _NONE_G if groups is None else groups
    n_buckets = 3 * n_slots if grouped else 2 * top + 1
    counts, flags = _count(y, p, f32, wv, has_idx, mv, mask is not None, omit, gv, grouped, shift,
                           top, n_buckets, bounds)
    if flags & (RANK_SOFT | RANK_WEIGHT):
        return None, None, flags, None
    items = np.empty(n + 1, np.uint32 if f32 else np.uint64)
    idx = np.empty(n + 1 if has_idx else 1, np.uint32)
    starts = _split(y, p, f32, mv, mask is not None, omit, gv, grouped, shift, top, counts, items,
                    idx, has_idx, bounds)
    if grouped:
        seg = np.stack((starts[:-1], starts[1:]), 1).reshape(n_slots, 3, 2)[:, :2]
        slots = np.stack((starts[0:-1:3], starts[2::3]), 1)
        nan = starts[3::3] > starts[2::3]
    else:
        seg = np.stack((starts[:2 * top], starts[1:2 * top + 1]), 1)
        slots = np.array([[0, starts[2 * top]]], np.int64)
        nan = np.array([starts[2 * top + 1] > starts[2 * top]])
    seg = np.ascontiguousarray(seg.reshape(-1, 2))
    if not grouped and not has_idx and not want_curve:
        # each bucket walked right after its sort, below the counts of the buckets after it
        c = counts.sum(axis=0)[:4 * top].reshape(-1, 2)[:, ::-1].astype(np.float64)
        above = np.ascontiguousarray(np.cumsum(c[::-1], axis=0)[::-1] - c)
        out = _sort_walk(items, seg, above, n_threads)
        return np.array([[above[0, 0] + c[0, 0], above[0, 1] + c[0, 1],
                          _sum_down(out[:, 0]), _sum_down(out[:, 1])]]), nan, flags, None
    _sort_all(items, idx, has_idx, seg, n_threads)
    if not want_curve:
        return _walk_all(items, idx, has_idx, wv, has_idx, slots, n_threads), nan, flags, None
    m = int(slots[0, 1])
    curve = np.empty((3, m))
    u2, a, tp, fp, k = walk(items, idx, has_idx, wv, has_idx, 0, m, 0.0, 0.0, curve, 0)
    at = curve[2, :k].astype(np.int64)
    sums = np.array([[tp, fp, u2, a]])
    return sums, nan, flags, (_values(items[at], at < starts[top], f32), curve[0, :k],
                              curve[1, :k])


def _values(items, negative, f32):
    """The predictions of items (from their key and sign)."""
    key = items >> 1
    if f32:
        bits = np.where(negative, ~key.astype(np.uint32), key.astype(np.uint32))
        return bits.view(np.float32)
    bits = np.where(negative, ~key, key)
    return bits.view(np.float64)
