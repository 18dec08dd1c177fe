/* Ranking kernels: the twin of kernels/numba/rank.py (same functions, same order); the parallel
 * loops that call them are ``rank`` and its helpers in kernels/cython_kernels.pyx.
 *
 * Exact ROC-AUC and average precision of one slice by sorting. Each kept prediction becomes an
 * order-preserving unsigned key (uint32 for float32, uint64 for float64) whose sign bit is dropped
 * and replaced by the label in the low bit: item = (key without sign) << 1 | y. Negative
 * predictions go to the front, the others to the back (fb_sign_count, fb_split_block), so sorting
 * each part sorts the whole; an LSD radix sort of 8-bit digits (fb_histogram, fb_scatter) does it,
 * stable. A walk from the top over the distinct predictions (fb_walk) sums the Mann-Whitney pairs
 * and the precision at each recall step in float64, in fixed ranges (fb_range_totals gives each
 * range the weights above it), so the result does not depend on the thread count. */
#ifndef FB_RANK_H
#define FB_RANK_H

#include <stdint.h>
#include <math.h>
#include <string.h>

#include "codes.h"


/* One slice: labels (FB_Y_U8/F32/F64) and predictions (float or double) with element strides,
 * contiguous weights and mask (NULL: none), and whether NaN elements are left out. */
typedef struct {
    const void *y; int y_kind; int64_t y_stride;
    const void *p; int p_f64; int64_t p_stride;
    const double *w;
    const uint8_t *mask;
    int omit;
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

static inline int fb_rank_kept(const fb_rank_args *a, int64_t i, int isnan_)
{
    return !(a->omit && isnan_) && (a->mask == NULL || a->mask[i] != 0);
}

/* Negative predictions and kept elements of [lo, hi) into *n_neg, *n_kept; returns the flags.
 * Kept = in the mask and, under nan_policy "omit", with no NaN label or prediction. */
static inline int fb_sign_count(const fb_rank_args *a, int64_t lo, int64_t hi, int64_t *n_neg,
                                int64_t *n_kept)
{
    int64_t neg = 0, kept = 0;
    int soft = 0, nan = 0, bad_w = 0;
    for (int64_t i = lo; i < hi; i++) {
        double y = fb_rank_label(a, i), p = fb_rank_pred(a, i);
        int isnan_ = (y != y) | (p != p);
        int keep = fb_rank_kept(a, i, isnan_);
        kept += keep;
        neg += keep & (p < 0.0);
        nan |= keep & isnan_;
        soft |= keep & (y != 0.0) & (y != 1.0) & (y == y);
        if (a->w != NULL)
            bad_w |= keep & !(a->w[i] >= 0.0 && a->w[i] < INFINITY);
    }
    *n_neg = neg;
    *n_kept = kept;
    return soft * FB_RANK_SOFT | nan * FB_RANK_NAN | bad_w * FB_RANK_WEIGHT;
}

/* The items of the kept elements of [lo, hi): negative predictions from items[at_neg], the others
 * from items[at_pos], with their index in idx (unless NULL). Labels are 0 or 1 here (a NaN label
 * counts as 0: its slice is NaN). A dropped element goes to the spare last slot, items[spare].
 * dense: every element is kept and none is negative (a plain map, which vectorises). */
static inline void fb_split_block(const fb_rank_args *a, int64_t lo, int64_t hi, void *items,
                                  uint32_t *idx, int64_t at_neg, int64_t at_pos, int64_t spare,
                                  int dense)
{
    if (dense) {
        for (int64_t i = lo; i < hi; i++) {
            double y = fb_rank_label(a, i), p = fb_rank_pred(a, i);
            int neg;
            uint64_t k = a->p_f64 ? fb_key_f64(p, &neg) : fb_key_f32((float)p, &neg);
            uint64_t item = (k << 1) | (uint64_t)(y == 1.0);
            if (a->p_f64)
                ((uint64_t *)items)[at_pos + i - lo] = item;
            else
                ((uint32_t *)items)[at_pos + i - lo] = (uint32_t)item;
            if (idx != NULL)
                idx[at_pos + i - lo] = (uint32_t)i;
        }
        return;
    }
    for (int64_t i = lo; i < hi; i++) {
        double y = fb_rank_label(a, i), p = fb_rank_pred(a, i);
        int neg;
        uint64_t k = a->p_f64 ? fb_key_f64(p, &neg) : fb_key_f32((float)p, &neg);
        int keep = fb_rank_kept(a, i, (y != y) | (p != p));
        int64_t j = keep ? (neg ? at_neg : at_pos) : spare;
        uint64_t item = (k << 1) | (uint64_t)(y == 1.0);
        if (a->p_f64)
            ((uint64_t *)items)[j] = item;
        else
            ((uint32_t *)items)[j] = (uint32_t)item;
        if (idx != NULL)
            idx[j] = (uint32_t)i;
        at_neg += keep & neg;
        at_pos += keep & !neg;
    }
}

/* counts[d] += the items of [lo, hi) whose 8-bit digit at shift is d (wide: uint64 items). */
static inline void fb_histogram(const void *items, int wide, int64_t lo, int64_t hi, int shift,
                                int64_t *counts)
{
    if (wide) {
        const uint64_t *it = (const uint64_t *)items;
        for (int64_t i = lo; i < hi; i++)
            counts[(it[i] >> shift) & 255]++;
    } else {
        const uint32_t *it = (const uint32_t *)items;
        for (int64_t i = lo; i < hi; i++)
            counts[(it[i] >> shift) & 255]++;
    }
}

/* Items of [lo, hi) (and their idx unless NULL) to out at at[digit], which advances: one stable
 * pass of the LSD radix sort. */
static inline void fb_scatter(const void *items, const uint32_t *idx, int wide, int64_t lo,
                              int64_t hi, int shift, int64_t *at, void *out, uint32_t *out_idx)
{
#define FB_SCATTER_LOOP(T)                                                                    \
    do {                                                                                      \
        const T *it = (const T *)items;                                                       \
        T *o = (T *)out;                                                                      \
        if (idx != NULL) {                                                                    \
            for (int64_t i = lo; i < hi; i++) {                                               \
                int64_t j = at[(it[i] >> shift) & 255]++;                                     \
                o[j] = it[i];                                                                 \
                out_idx[j] = idx[i];                                                          \
            }                                                                                 \
        } else {                                                                              \
            for (int64_t i = lo; i < hi; i++)                                                 \
                o[at[(it[i] >> shift) & 255]++] = it[i];                                      \
        }                                                                                     \
    } while (0)
    if (wide)
        FB_SCATTER_LOOP(uint64_t);
    else
        FB_SCATTER_LOOP(uint32_t);
#undef FB_SCATTER_LOOP
}

static inline uint64_t fb_rank_item(const void *items, int wide, int64_t i)
{
    return wide ? ((const uint64_t *)items)[i] : ((const uint32_t *)items)[i];
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
 * range): *u2 = Σ fp·(2·TP - tp) (ties count half), *ap = Σ tp·TP/(TP + FP) (precision at each
 * recall step); AUC = U/(P·N), AP = A/P. Without weights the counts are integers (short
 * dependency chains). With curve (3 rows of curve_len), each distinct v's TP, FP and the position
 * of its first item are written from column m; returns the advanced m. */
static inline int64_t fb_walk(const void *items, const uint32_t *idx, int wide, const double *w,
                              int64_t lo, int64_t hi, double big_tp, double big_fp, double *curve,
                              int64_t curve_len, int64_t m, double *u2_out, double *ap_out)
{
    double u2 = 0.0, ap = 0.0;
    if (w == NULL) {
        int64_t n_tp = (int64_t)big_tp, n_fp = (int64_t)big_fp, run_tp = 0, run_fp = 0;
        for (int64_t i = hi - 1; i >= lo; i--) {
            uint64_t item = fb_rank_item(items, wide, i);
            int64_t pos = (int64_t)(item & 1);
            run_tp += pos;
            run_fp += 1 - pos;
            if (i == lo || (fb_rank_item(items, wide, i - 1) >> 1) != (item >> 1)) {
                n_tp += run_tp;
                n_fp += run_fp;
                u2 += (double)run_fp * (double)(2 * n_tp - run_tp);
                if (run_tp > 0)
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
    return m;
}

#endif
