/* The report's histogram pass: the twin of kernels/numba/histogram.py (same functions, same order).
 * Per slot (overall, per label or per group) it adds up, over the rows of one chunk, the sums the
 * report's ranking and calibration fields need beyond the kernel pass of chunk.h:
 *   hist[b] = (Σw·y, Σw·(1-y)) over the elements in bucket b of the prediction (fb_bucket);
 *   extra   = count of NaN elements, Σw·(q-y)², Σw·y and Σw·(1-y) where the prediction is at or
 *             above the cut (threshold), then per equal-width calibration bin Σw, Σw·y, Σw·q.
 * q is the prediction (unclipped) or σ(x) from logits. Inputs are 2-D strided views of any
 * layout; the label, weight and mask checks were made by the kernel pass, so values are valid. */

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "codes.h"

/* Bits of 2^-24: below it all predictions share the bucket next to 0 (or to 1). */
#define FB_HIST_LOW 0x33800000

typedef struct {
    const void *p;
    int64_t p_rs, p_cs; /* row and column strides, in elements */
    int p_f64;
    const void *y;
    int64_t y_rs, y_cs;
    int y_kind; /* FB_Y_U8, FB_Y_F32, FB_Y_F64 */
    const void *w;
    int64_t w_rs, w_cs;
    int w_f64;
    const uint8_t *mask;
    int64_t m_rs, m_cs;
    const int64_t *groups; /* one slot per row (FB_MODE_GROUPS) */
    int mode;
    int64_t nrows, ncols;
    int logits, omit_nan;
    double cut;      /* predicted positive: prediction >= cut (a probability, or its logit) */
    int shift;       /* 23 - mantissa bits kept in the bucket key */
    int64_t top;     /* the key of 1/2: buckets run 0 .. 2·top + 1 */
    int64_t n_buckets, n_bins, n_extra; /* n_buckets 0: no histogram */
} fb_hist_args;

/* The bucket of a prediction, monotone in it: v = min(q, 1-q) rounded to float32, its bits above
 * 2^-24 shifted right by `shift` give k in [0, top]; q < 1/2 takes bucket k, q >= 1/2 bucket
 * 2·top + 1 - k. Buckets are a fixed fraction of the distance to 0 or 1 wide (2^-m relative). */
static inline int64_t fb_bucket(double v, int high, int shift, int64_t top)
{
    float f = (float)v;
    int32_t bits;
    memcpy(&bits, &f, 4);
    int64_t k = bits < FB_HIST_LOW ? 0 : (int64_t)((bits - FB_HIST_LOW) >> shift);
    return high ? 2 * top + 1 - k : k;
}

/* C only: one element of an input of kind `kind`. */
static inline double fb_hist_label(const void *y, int kind, int64_t at)
{
    if (kind == FB_Y_U8)
        return (double)((const uint8_t *)y)[at];
    if (kind == FB_Y_F32)
        return (double)((const float *)y)[at];
    return ((const double *)y)[at];
}

/* C only: fb_hist_chunk's loop, inlined with some arguments as constants (C's way to specialise;
 * Numba specialises by type): `flat` is 1-D contiguous p and labels, one column. */
static inline __attribute__((always_inline)) void fb_hist_rows(
    const fb_hist_args *a, int64_t r0, int64_t r1, double *hist, double *extra, const int flat,
    const int p_f64, const int y_kind, const int w_f64, const int mode, const int logits)
{
    for (int64_t i = r0; i < r1; i++) {
        for (int64_t j = 0; j < (flat ? 1 : a->ncols); j++) {
            if (!a->mask[i * a->m_rs + j * a->m_cs])
                continue;
            int64_t at = flat ? i : i * a->p_rs + j * a->p_cs;
            double x = p_f64 ? ((const double *)a->p)[at] : (double)((const float *)a->p)[at];
            double y = fb_hist_label(a->y, y_kind, flat ? i : i * a->y_rs + j * a->y_cs);
            double w = w_f64 ? ((const double *)a->w)[i * a->w_rs + j * a->w_cs]
                             : (double)((const float *)a->w)[i * a->w_rs + j * a->w_cs];
            int64_t slot = mode == FB_MODE_GROUPS ? a->groups[i] : (mode == FB_MODE_COLS ? j : 0);
            double *e = extra + slot * a->n_extra;
            if (isnan(x) || isnan(y)) {
                if (!a->omit_nan)
                    e[0] += 1.0;
                continue;
            }
            double q, v;
            int high;
            if (logits) {
                double t = exp(-fabs(x));
                v = t / (1.0 + t); /* σ(-|x|) */
                high = x >= 0.0;
                q = high ? 1.0 / (1.0 + t) : v;
            } else {
                q = x;
                high = q >= 0.5;
                v = high ? 1.0 - q : q;
            }
            double wy = w * y, wn = w - wy;
            if (a->n_buckets) {
                double *h = hist + 2 * (slot * a->n_buckets + fb_bucket(v, high, a->shift, a->top));
                h[0] += wy;
                h[1] += wn;
            }
            double d = q - y;
            e[1] += w * d * d;
            if (x >= a->cut) {
                e[2] += wy;
                e[3] += wn;
            }
            int64_t bin = (int64_t)(q * (double)a->n_bins);
            bin = bin < a->n_bins ? bin : a->n_bins - 1;
            double *c = e + FB_HIST_EXTRA + 3 * bin;
            c[0] += w;
            c[1] += wy;
            c[2] += w * q;
        }
    }
}

/* The rows [r0, r1) into this chunk's hist (n_slots, n_buckets, 2) and extra (n_slots, n_extra):
 * the commonest layouts (1-D contiguous float32 or float64 predictions, byte labels, overall or
 * by group) by a loop specialised for them, the rest by the general one. */
static inline void fb_hist_chunk(const fb_hist_args *a, int64_t r0, int64_t r1, double *hist,
                                 double *extra)
{
    int flat = a->ncols == 1 && a->p_rs == 1 && a->y_rs == 1 && a->y_kind == FB_Y_U8
               && (a->mode == FB_MODE_ALL || a->mode == FB_MODE_GROUPS) && !a->logits;
    if (flat && !a->p_f64 && a->mode == FB_MODE_ALL && a->w_f64)
        fb_hist_rows(a, r0, r1, hist, extra, 1, 0, FB_Y_U8, 1, FB_MODE_ALL, 0);
    else if (flat && a->p_f64 && a->mode == FB_MODE_ALL && a->w_f64)
        fb_hist_rows(a, r0, r1, hist, extra, 1, 1, FB_Y_U8, 1, FB_MODE_ALL, 0);
    else if (flat && !a->p_f64 && a->mode == FB_MODE_GROUPS && a->w_f64)
        fb_hist_rows(a, r0, r1, hist, extra, 1, 0, FB_Y_U8, 1, FB_MODE_GROUPS, 0);
    else
        fb_hist_rows(a, r0, r1, hist, extra, 0, a->p_f64, a->y_kind, a->w_f64, a->mode, a->logits);
}
