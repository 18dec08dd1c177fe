/* Ranking kernels: the twin of kernels/numba/rank.py (same functions, same order); the parallel
 * loops that call them are ``rank`` and its helpers in kernels/cython_kernels.pyx.
 *
 * Exact ROC-AUC and average precision of each slot (the whole slice, or each group) by sorting.
 * Each kept prediction becomes an order-preserving unsigned key (uint32 for float32, uint64 for
 * float64) whose sign bit is dropped and replaced by the label in the low bit: item = (key
 * without sign) << 1 | y. A counting pass (fb_count: each bucket's negatives and positives) and
 * a stable scatter (fb_split) put the items in buckets: by group, then negative predictions, the
 * others, NaN (propagated: counted, not sorted); without groups by sign and the item's top digit
 * (15 bits, fewer for small slices), so the split is the first, most significant pass of the
 * sort and the buckets fit in cache. Each bucket is then sorted in place by an LSD radix sort,
 * stable: one of at least FB_RANK_BIG items by all threads through a scratch of its size (11-bit
 * digits; with two threads one scatters from the bucket starts and the other from the ends,
 * fb_scatter_back, so that no per-block histogram is needed), smaller ones each by one thread in
 * a scratch of its size (fb_sort_small). A walk from the top over the distinct
 * predictions (fb_walk) sums the Mann-Whitney pairs and the precision at each recall step in
 * float64: without groups or weights each bucket right after its sort, below the counts of the
 * buckets after it; else a slot of at least FB_RANK_BIG items in FB_WALK_RANGES fixed ranges cut
 * at distinct values (fb_range_totals gives each range the weights above it). Every choice
 * depends on the sizes only, so the result does not depend on the thread count. */
#ifndef FB_RANK_H
#define FB_RANK_H

#include <stdint.h>
#include <math.h>
#include <string.h>

#include "codes.h"


#define FB_RADIX (1 << FB_RADIX_BITS)
#define FB_RANK_BIG (1 << 16)
#define FB_RANK_BLOCK (1 << 8) /* elements per block of the plain count and split loops */

/* One slice: labels (FB_Y_U8/F32/F64) and predictions (float or double) with element strides,
 * contiguous weights, mask and int64 group ids (NULL: none), whether NaN elements are left
 * out, and without groups the split's top digit: item >> shift, of top values. */
typedef struct {
    const void *y; int y_kind; int64_t y_stride;
    const void *p; int p_f64; int64_t p_stride;
    const double *w;
    const uint8_t *mask;
    const int64_t *groups;
    int omit;
    int shift; int64_t top;
} fb_rank_args;

static inline double fb_rank_label(const fb_rank_args *a, int64_t i)
{
    switch (a->y_kind) {
    case FB_Y_U8: return (double)((const uint8_t *)a->y)[i * a->y_stride];
    case FB_Y_F32: return (double)((const float *)a->y)[i * a->y_stride];
    default: return ((const double *)a->y)[i * a->y_stride];
    }
}

static inline double fb_rank_pred(const fb_rank_args *a, int64_t i)
{
    return a->p_f64 ? ((const double *)a->p)[i * a->p_stride]
                    : (double)((const float *)a->p)[i * a->p_stride];
}

/* The order-preserving key of a float32 without its sign bit (31 bits); *neg: v < 0. -0.0 is
 * first made +0.0. */
static inline uint64_t fb_key_f32(float v, int *neg)
{
    float z = v + 0.0f;
    int32_t b;
    memcpy(&b, &z, 4);
    *neg = b < 0;
    return (uint64_t)(uint32_t)((b < 0 ? ~b : b) & 0x7FFFFFFF);
}

/* The same for a float64 (63 bits). */
static inline uint64_t fb_key_f64(double v, int *neg)
{
    double z = v + 0.0;
    int64_t b;
    memcpy(&b, &z, 8);
    *neg = b < 0;
    return (uint64_t)(b < 0 ? ~b : b) & 0x7FFFFFFFFFFFFFFFULL;
}

/* The split bucket of an item: with groups 3·g + (0 negative, 1 not, 2 NaN); without, (0
 * negative, 1 not)·top + the item's top digit (item >> shift, below top), or 2·top for NaN. */
static inline int64_t fb_rank_bucket(uint64_t item, int neg, int isnan_, int64_t g,
                                     int grouped, int shift, int64_t top)
{
    if (grouped)
        return 3 * g + (isnan_ ? 2 : (neg ? 0 : 1));
    if (isnan_)
        return 2 * top;
    return (neg ? 0 : top) + (int64_t)(item >> shift);
}

static inline int fb_rank_kept(const fb_rank_args *a, int64_t i, int isnan_)
{
    return !(a->omit && isnan_) && (a->mask == NULL || a->mask[i] != 0);
}

/* The item of element i and its bucket (*b), whether it is kept (*keep). */
static inline uint64_t fb_rank_element(const fb_rank_args *a, int64_t i, int64_t *b, int *keep,
                                       int *isnan_out)
{
    double y = fb_rank_label(a, i), p = fb_rank_pred(a, i);
    int isnan_ = (y != y) | (p != p), neg;
    uint64_t k = a->p_f64 ? fb_key_f64(p, &neg) : fb_key_f32((float)p, &neg);
    uint64_t item = (k << 1) | (uint64_t)(y == 1.0);
    *keep = fb_rank_kept(a, i, isnan_);
    *isnan_out = isnan_;
    *b = fb_rank_bucket(item, neg, isnan_, a->groups != NULL ? a->groups[i] : 0,
                        a->groups != NULL, a->shift, a->top);
    return item;
}

/* Whether fb_count and fb_split may take their loops for contiguous float32 predictions and
 * labels (uint8 or float32) with every element kept and no groups (the common case). */
static inline int fb_rank_plain(const fb_rank_args *a)
{
    return !a->p_f64 && a->p_stride == 1 && a->y_stride == 1 && a->y_kind != FB_Y_F64
           && a->mask == NULL && a->groups == NULL && !a->omit;
}

/* The item of a float32 prediction v with label bit y and its split bucket without groups (as
 * fb_key_f32 and fb_rank_bucket, in 32-bit lanes without branches: gcc vectorises the loops of
 * fb_count and fb_split that call it). */
static inline uint32_t fb_rank_item_f32(float v, uint32_t y, int isnan_, int shift, uint32_t top,
                                        uint32_t *bucket)
{
    float z = v + 0.0f;
    int32_t b;
    memcpy(&b, &z, 4);
    uint32_t sign = (uint32_t)(b >> 31); /* all ones for a negative v */
    uint32_t item = ((((uint32_t)b ^ sign) & 0x7FFFFFFFu) << 1) | y;
    *bucket = isnan_ ? 2 * top : (top & ~sign) + (item >> shift);
    return item;
}

/* fb_count's loop for fb_rank_plain slices with labels of type T (C's way to specialise; Numba's
 * count is specialised by type): per block of FB_RANK_BLOCK elements the counter slots first (a
 * loop gcc vectorises), then their increments. */
#define FB_COUNT_PLAIN(T)                                                                     \
    do {                                                                                      \
        const T *yy = (const T *)a->y;                                                        \
        const float *pp = (const float *)a->p;                                                \
        uint32_t slot[FB_RANK_BLOCK], top = (uint32_t)a->top;                                 \
        int shift = a->shift;                                                                 \
        for (int64_t i0 = lo; i0 < hi; i0 += FB_RANK_BLOCK) {                                 \
            int m = (int)(hi - i0 < FB_RANK_BLOCK ? hi - i0 : FB_RANK_BLOCK);                 \
            for (int k = 0; k < m; k++) {                                                     \
                T yv = yy[i0 + k];                                                            \
                float pv = pp[i0 + k];                                                        \
                int isnan_ = (yv != yv) | (pv != pv);                                         \
                uint32_t bucket;                                                              \
                nan |= isnan_;                                                                \
                soft |= (yv != 0) & (yv != 1) & (yv == yv);                                   \
                uint32_t item = fb_rank_item_f32(pv, (uint32_t)(yv == 1), isnan_, shift, top, \
                                                 &bucket);                                    \
                slot[k] = 2 * bucket + (item & 1);                                            \
            }                                                                                 \
            for (int k = 0; k < m; k++)                                                       \
                counts[slot[k]]++;                                                            \
        }                                                                                     \
    } while (0)

/* counts[2·bucket + (label == 1)] += the kept elements of [lo, hi); returns the flags. Kept = in
 * the mask and, under nan_policy "omit", with no NaN label or prediction. */
static inline int fb_count(const fb_rank_args *args, int64_t lo, int64_t hi, int64_t *counts)
{
    const fb_rank_args s = *args, *a = &s; /* a local copy: stores to counts could alias it */
    int soft = 0, nan = 0, bad_w = 0;
    if (fb_rank_plain(a)) {
        if (a->y_kind == FB_Y_U8)
            FB_COUNT_PLAIN(uint8_t);
        else
            FB_COUNT_PLAIN(float);
        if (a->w != NULL)
            for (int64_t i = lo; i < hi; i++)
                bad_w |= !(a->w[i] >= 0.0 && a->w[i] < INFINITY);
    } else {
        for (int64_t i = lo; i < hi; i++) {
            double y = fb_rank_label(a, i);
            int64_t b;
            int keep, isnan_;
            fb_rank_element(a, i, &b, &keep, &isnan_);
            nan |= keep & isnan_;
            soft |= keep & (y != 0.0) & (y != 1.0) & (y == y);
            if (a->w != NULL)
                bad_w |= keep & !(a->w[i] >= 0.0 && a->w[i] < INFINITY);
            counts[2 * b + (int64_t)(y == 1.0)] += keep;
        }
    }
    return soft * FB_RANK_SOFT | nan * FB_RANK_NAN | bad_w * FB_RANK_WEIGHT;
}
#undef FB_COUNT_PLAIN

/* fb_split's loop for fb_rank_plain slices with labels of type T: per block the items and
 * buckets first (vectorised), then the scatter. */
#define FB_SPLIT_PLAIN(T)                                                                     \
    do {                                                                                      \
        const T *yy = (const T *)a->y;                                                        \
        const float *pp = (const float *)a->p;                                                \
        uint32_t *o = (uint32_t *)out;                                                        \
        uint32_t items[FB_RANK_BLOCK], buckets[FB_RANK_BLOCK], top = (uint32_t)a->top;        \
        int shift = a->shift;                                                                 \
        for (int64_t i0 = lo; i0 < hi; i0 += FB_RANK_BLOCK) {                                 \
            int m = (int)(hi - i0 < FB_RANK_BLOCK ? hi - i0 : FB_RANK_BLOCK);                 \
            for (int k = 0; k < m; k++) {                                                     \
                T yv = yy[i0 + k];                                                            \
                float pv = pp[i0 + k];                                                        \
                items[k] = fb_rank_item_f32(pv, (uint32_t)(yv == 1), (yv != yv) | (pv != pv), \
                                            shift, top, &buckets[k]);                         \
            }                                                                                 \
            for (int k = 0; k < m; k++) {                                                     \
                int64_t j = at[buckets[k]]++;                                                 \
                o[j] = items[k];                                                              \
                if (out_idx != NULL)                                                          \
                    out_idx[j] = (uint32_t)(i0 + k);                                          \
            }                                                                                 \
        }                                                                                     \
    } while (0)

/* The items of the kept elements of [lo, hi) to out at at[bucket], which advances (with their
 * index in out_idx unless NULL): a stable scatter. Labels are 0 or 1 here (a NaN label reads 0:
 * its slot is NaN). A dropped element goes to the spare slot out[spare]. */
static inline void fb_split(const fb_rank_args *args, int64_t lo, int64_t hi, int64_t *at,
                            void *out, uint32_t *out_idx, int64_t spare)
{
    const fb_rank_args s = *args, *a = &s;
    if (fb_rank_plain(a) && a->y_kind == FB_Y_U8) {
        FB_SPLIT_PLAIN(uint8_t);
        return;
    }
    if (fb_rank_plain(a)) {
        FB_SPLIT_PLAIN(float);
        return;
    }
    for (int64_t i = lo; i < hi; i++) {
        int64_t b;
        int keep, isnan_;
        uint64_t item = fb_rank_element(a, i, &b, &keep, &isnan_);
        int64_t j = keep ? at[b] : spare;
        at[b] += keep;
        if (a->p_f64)
            ((uint64_t *)out)[j] = item;
        else
            ((uint32_t *)out)[j] = (uint32_t)item;
        if (out_idx != NULL)
            out_idx[j] = (uint32_t)i;
    }
}
#undef FB_SPLIT_PLAIN

/* counts[d] += the items of [lo, hi) whose digit of `bits` bits at shift is d (wide: uint64
 * items). */
static inline void fb_histogram(const void *items, int wide, int64_t lo, int64_t hi, int shift,
                                int bits, int64_t *counts)
{
    uint64_t m = ((uint64_t)1 << bits) - 1;
    if (wide) {
        const uint64_t *it = (const uint64_t *)items;
        for (int64_t i = lo; i < hi; i++)
            counts[(it[i] >> shift) & m]++;
    } else {
        const uint32_t *it = (const uint32_t *)items;
        for (int64_t i = lo; i < hi; i++)
            counts[(it[i] >> shift) & m]++;
    }
}

/* Items of [lo, hi) (and their idx unless NULL) to out at at[digit], which advances: one stable
 * pass of the LSD radix sort. */
static inline void fb_scatter(const void *items, const uint32_t *idx, int wide, int64_t lo,
                              int64_t hi, int shift, int bits, int64_t *at, void *out,
                              uint32_t *out_idx)
{
    uint64_t m = ((uint64_t)1 << bits) - 1;
#define FB_SCATTER_LOOP(T)                                                                    \
    do {                                                                                      \
        const T *it = (const T *)items;                                                       \
        T *o = (T *)out;                                                                      \
        if (idx != NULL) {                                                                    \
            for (int64_t i = lo; i < hi; i++) {                                               \
                int64_t j = at[(it[i] >> shift) & m]++;                                       \
                o[j] = it[i];                                                                 \
                out_idx[j] = idx[i];                                                          \
            }                                                                                 \
        } else {                                                                              \
            for (int64_t i = lo; i < hi; i++)                                                 \
                o[at[(it[i] >> shift) & m]++] = it[i];                                        \
        }                                                                                     \
    } while (0)
    if (wide)
        FB_SCATTER_LOOP(uint64_t);
    else
        FB_SCATTER_LOOP(uint32_t);
#undef FB_SCATTER_LOOP
}

/* fb_scatter from the back: items of [lo, hi) to out before at[digit], which moves down (the
 * second half of a pass whose first half fb_scatter fills from the bucket starts). */
static inline void fb_scatter_back(const void *items, const uint32_t *idx, int wide, int64_t lo,
                                   int64_t hi, int shift, int bits, int64_t *at, void *out,
                                   uint32_t *out_idx)
{
    uint64_t m = ((uint64_t)1 << bits) - 1;
#define FB_SCATTER_BACK_LOOP(T)                                                               \
    do {                                                                                      \
        const T *it = (const T *)items;                                                       \
        T *o = (T *)out;                                                                      \
        for (int64_t i = hi - 1; i >= lo; i--) {                                              \
            int64_t j = --at[(it[i] >> shift) & m];                                           \
            o[j] = it[i];                                                                     \
            if (idx != NULL)                                                                  \
                out_idx[j] = idx[i];                                                          \
        }                                                                                     \
    } while (0)
    if (wide)
        FB_SCATTER_BACK_LOOP(uint64_t);
    else
        FB_SCATTER_BACK_LOOP(uint32_t);
#undef FB_SCATTER_BACK_LOOP
}

static inline uint64_t fb_rank_item(const void *items, int wide, int64_t i)
{
    return wide ? ((const uint64_t *)items)[i] : ((const uint32_t *)items)[i];
}

static inline void fb_rank_copy(void *a, const void *b, uint32_t *ia, const uint32_t *ib,
                                int wide, int64_t lo, int64_t hi)
{
    size_t size = wide ? 8 : 4;
    memcpy((char *)a + lo * size, (const char *)b + lo * size, (size_t)(hi - lo) * size);
    if (ia != NULL)
        memcpy(ia + lo, ib + lo, (size_t)(hi - lo) * 4);
}

/* The bits in which the items [lo, hi) differ from the first, within `keep`. */
static inline uint64_t fb_rank_varying(const void *items, int wide, int64_t lo, int64_t hi,
                                       uint64_t keep)
{
    uint64_t diff = 0;
    if (wide) {
        const uint64_t *it = (const uint64_t *)items;
        uint64_t first = it[lo];
        for (int64_t i = lo; i < hi; i++)
            diff |= it[i] ^ first;
    } else {
        const uint32_t *it = (const uint32_t *)items;
        uint32_t first = it[lo], d = 0;
        for (int64_t i = lo; i < hi; i++)
            d |= it[i] ^ first;
        diff = d;
    }
    return diff & keep;
}

/* Sorts the items [lo, hi) of a (of b when in_b) ascending into a, with ia (ib) along unless
 * NULL, in one thread: insertion sort up to FB_INSERTION items, else an LSD radix sort over the
 * span of bits that vary in the range (without ia, the label bit left out: the unweighted walk
 * only counts a run's labels), in digits of at most 8 bits (11 from 8192 items) of equal width,
 * whose histograms come from one pass, skipping constant digits. counts and at: scratch of
 * 6·2048 and 2048 counters. */
static inline void fb_sort_small(void *a, void *b, uint32_t *ia, uint32_t *ib, int wide,
                                 int64_t lo, int64_t hi, int in_b, uint32_t *counts, int64_t *at)
{
    int64_t n = hi - lo;
    if (n <= FB_INSERTION) {
        if (in_b)
            fb_rank_copy(a, b, ia, ib, wide, lo, hi);
        for (int64_t i = lo + 1; i < hi; i++) {
            uint64_t v = fb_rank_item(a, wide, i);
            uint32_t iv = ia != NULL ? ia[i] : 0;
            int64_t j = i - 1;
            while (j >= lo && fb_rank_item(a, wide, j) > v) {
                if (wide)
                    ((uint64_t *)a)[j + 1] = ((uint64_t *)a)[j];
                else
                    ((uint32_t *)a)[j + 1] = ((uint32_t *)a)[j];
                if (ia != NULL)
                    ia[j + 1] = ia[j];
                j--;
            }
            if (wide)
                ((uint64_t *)a)[j + 1] = v;
            else
                ((uint32_t *)a)[j + 1] = (uint32_t)v;
            if (ia != NULL)
                ia[j + 1] = iv;
        }
        return;
    }
    void *src = in_b ? b : a, *dst = in_b ? a : b, *swap;
    uint32_t *isrc = in_b ? ib : ia, *idst = in_b ? ia : ib, *iswap;
    uint64_t diff = fb_rank_varying(src, wide, lo, hi, ia == NULL ? ~(uint64_t)1 : ~(uint64_t)0);
    int low = 0, high = 0;
    while (low < 63 && !((diff >> low) & 1))
        low++;
    while (high < 64 && (diff >> high) != 0)
        high++;
    int max_bits = n >= 8192 ? 11 : 8;
    int n_digits = diff != 0 ? (high - low + max_bits - 1) / max_bits : 0;
    int bits = n_digits ? (high - low + n_digits - 1) / n_digits : 1;
    int64_t radix = (int64_t)1 << bits;
    uint64_t mask = (uint64_t)radix - 1;
    memset(counts, 0, (size_t)(n_digits * radix) * sizeof(uint32_t));
    for (int64_t i = n_digits ? lo : hi; i < hi; i++) {
        uint64_t v = fb_rank_item(src, wide, i) >> low;
        for (int d = 0; d < n_digits; d++)
            counts[d * radix + ((v >> (d * bits)) & mask)]++;
    }
    for (int d = 0; d < n_digits; d++) {
        int s = low + d * bits;
        const uint32_t *c = counts + d * radix;
        if (c[(fb_rank_item(src, wide, lo) >> s) & mask] == n)
            continue;
        int64_t start = lo;
        for (int64_t k = 0; k < radix; k++) {
            at[k] = start;
            start += c[k];
        }
        fb_scatter(src, isrc, wide, lo, hi, s, bits, at, dst, idst);
        swap = src; src = dst; dst = swap;
        iswap = isrc; isrc = idst; idst = iswap;
        in_b = !in_b;
    }
    if (in_b)
        fb_rank_copy(a, b, ia, ib, wide, lo, hi);
}

/* Positive and negative weight of the sorted items [lo, hi) into *tp, *fp (w NULL: counts). */
static inline void fb_range_totals(const void *items, const uint32_t *idx, int wide,
                                   const double *w, int64_t lo, int64_t hi, double *tp, double *fp)
{
    double pos = 0.0, total = 0.0;
    if (w != NULL) {
        for (int64_t i = lo; i < hi; i++) {
            double wi = w[idx[i]];
            pos += wi * (double)(fb_rank_item(items, wide, i) & 1);
            total += wi;
        }
    } else {
        int64_t ones = 0;
        for (int64_t i = lo; i < hi; i++)
            ones += (int64_t)(fb_rank_item(items, wide, i) & 1);
        pos = (double)ones;
        total = (double)(hi - lo);
    }
    *tp = pos;
    *fp = total - pos;
}

/* The sorted items [lo, hi) walked down by distinct prediction v, with tp, fp the positive and
 * negative weights at v and TP, FP the weights at or above v (big_tp, big_fp: those above the
 * range; *tp_out, *fp_out: at the range's bottom): *u2 = Σ fp·(2·TP - tp) (ties count half),
 * *ap = Σ tp·TP/(TP + FP) (precision at each recall step); AUC = U/(P·N), AP = A/P. Without
 * weights the counts are integers (short dependency chains). With curve (3 rows of curve_len),
 * each distinct v's TP, FP and the position of its first item are written from column m;
 * returns the advanced m. */
static inline int64_t fb_walk(const void *items, const uint32_t *idx, int wide, const double *w,
                              int64_t lo, int64_t hi, double big_tp, double big_fp, double *curve,
                              int64_t curve_len, int64_t m, double *u2_out, double *ap_out,
                              double *tp_out, double *fp_out)
{
    double u2 = 0.0, ap = 0.0;
    if (w == NULL) {
        int64_t n_tp = (int64_t)big_tp, n_fp = (int64_t)big_fp, run_tp = 0, run_fp = 0;
        if (curve == NULL && !wide) {
            /* branch-free: a distinct value ends at about every other item in real data, a
             * branch on it mispredicts; a non-end adds 0·x = +0.0, so the sums are the same */
            const uint32_t *it = (const uint32_t *)items;
            int64_t c_tp = n_tp, c_fp = n_fp;
            for (int64_t i = hi - 1; i >= lo; i--) {
                int64_t pos = (int64_t)(it[i] & 1);
                c_tp += pos;
                c_fp += 1 - pos;
                int64_t end = i == lo || (it[i - 1] >> 1) != (it[i] >> 1);
                int64_t r_tp = c_tp - n_tp, r_fp = c_fp - n_fp;
                double e = (double)end;
                u2 += e * ((double)r_fp * (double)(2 * c_tp - r_tp));
                ap += e * ((double)r_tp * ((double)c_tp / (double)(c_tp + c_fp)));
                n_tp = end ? c_tp : n_tp;
                n_fp = end ? c_fp : n_fp;
            }
            *u2_out = u2;
            *ap_out = ap;
            *tp_out = (double)n_tp;
            *fp_out = (double)n_fp;
            return m;
        }
        for (int64_t i = hi - 1; i >= lo; i--) {
            uint64_t item = fb_rank_item(items, wide, i);
            int64_t pos = (int64_t)(item & 1);
            run_tp += pos;
            run_fp += 1 - pos;
            if (i == lo || (fb_rank_item(items, wide, i - 1) >> 1) != (item >> 1)) {
                n_tp += run_tp;
                n_fp += run_fp;
                u2 += (double)run_fp * (double)(2 * n_tp - run_tp);
                ap += (double)run_tp * ((double)n_tp / (double)(n_tp + n_fp));
                if (curve != NULL) {
                    curve[m] = (double)n_tp;
                    curve[curve_len + m] = (double)n_fp;
                    curve[2 * curve_len + m] = (double)i;
                }
                m++;
                run_tp = 0;
                run_fp = 0;
            }
        }
        *u2_out = u2;
        *ap_out = ap;
        *tp_out = (double)n_tp;
        *fp_out = (double)n_fp;
        return m;
    }
    double tp = 0.0, fp = 0.0;
    for (int64_t i = hi - 1; i >= lo; i--) {
        uint64_t item = fb_rank_item(items, wide, i);
        double wi = w[idx[i]];
        double pos = (double)(item & 1);
        tp += wi * pos;
        fp += wi - wi * pos;
        if (i == lo || (fb_rank_item(items, wide, i - 1) >> 1) != (item >> 1)) {
            big_tp += tp;
            big_fp += fp;
            u2 += fp * (2.0 * big_tp - tp);
            if (tp > 0.0)
                ap += tp * (big_tp / (big_tp + big_fp));
            if (curve != NULL) {
                curve[m] = big_tp;
                curve[curve_len + m] = big_fp;
                curve[2 * curve_len + m] = (double)i;
            }
            m++;
            tp = 0.0;
            fp = 0.0;
        }
    }
    *u2_out = u2;
    *ap_out = ap;
    *tp_out = big_tp;
    *fp_out = big_fp;
    return m;
}

/* FB_WALK_RANGES + 1 cut positions of the sorted items [lo, hi) into out, each moved down to the
 * first item of its distinct value (a binary search). */
static inline void fb_cuts(const void *items, int wide, int64_t lo, int64_t hi, int64_t *out)
{
    int64_t n = hi - lo;
    for (int r = 0; r <= FB_WALK_RANGES; r++)
        out[r] = lo + n * r / FB_WALK_RANGES;
    for (int r = 1; r < FB_WALK_RANGES; r++) {
        uint64_t v = fb_rank_item(items, wide, out[r]) >> 1;
        int64_t a = out[r - 1], b = out[r];
        while (a < b) {
            int64_t mid = (a + b) / 2;
            if ((fb_rank_item(items, wide, mid) >> 1) < v)
                a = mid + 1;
            else
                b = mid;
        }
        out[r] = a;
    }
}

#endif
