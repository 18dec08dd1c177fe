/* The report's histogram pass: the twin of kernels/numba/histogram.py (same functions, same order).
 * Per slot (overall, per label or per group) it adds up, over the rows of one chunk, the sums the
 * report's ranking and calibration fields need beyond the kernel pass of chunk.h:
 *   hist[b] = (Σw·y, Σw·(1-y)) over the elements in bucket b of the prediction (fb_bucket);
 *   extra   = count of NaN elements, Σw·(q-y)², Σw·y and Σw·(1-y) where the prediction is at or
 *             above the cut (threshold), then per equal-width calibration bin Σw, Σw·y, Σw·q.
 * q is the prediction (unclipped) or σ(x) from logits. Inputs are 2-D strided views of any
 * layout. The pass returns the error bits of the elements not masked (fb_hist_bad): fastbce.brier
 * runs it on unchecked input; the report ran the kernel pass's checks first.
 * One column of contiguous predictions and labels, overall or by group (fb_hist_flat), goes by
 * blocks: the element values in a vectorised loop (fb_hist_block), the sums of one for all into
 * float64 lanes and calibration bins in FB_HIST_COPIES interleaved copies (element k into copy
 * k % FB_HIST_COPIES: consecutive elements of one bin do not wait on each other's sum). */

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "codes.h"

/* Bits of 2^-24: below it all predictions share the bucket next to 0 (or to 1). */
#define FB_HIST_LOW 0x33800000
/* fb_hist_block's return bit (beside the error bits) for a block with a label not 0 or 1 */
#define FB_HIST_SOFT 0x100

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
/* AVX-512 / AVX2 clones of the block loop; no contraction (-ffp-contract=off): the same bits */
#define FB_H_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FB_H_CLONES
#endif

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
    const void *groups; /* one slot per row (FB_MODE_GROUPS): int64, or int32 if g_i32 */
    int g_i32;
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
static inline __attribute__((always_inline)) int64_t fb_bucket(double v, int high, int shift, int64_t top)
{
    float f = (float)v;
    int32_t bits;
    memcpy(&bits, &f, 4);
    int64_t k = bits < FB_HIST_LOW ? 0 : (int64_t)((bits - FB_HIST_LOW) >> shift);
    return high ? 2 * top + 1 - k : k;
}

/* C only: one element of an input of kind `kind` (fb_hist_rows). */
static inline double fb_hist_label(const void *y, int kind, int64_t at)
{
    if (kind == FB_Y_U8)
        return (double)((const uint8_t *)y)[at];
    if (kind == FB_Y_F32)
        return (double)((const float *)y)[at];
    return ((const double *)y)[at];
}

/* C only: the group id of row i. */
static inline int64_t fb_hist_group(const fb_hist_args *a, int64_t i)
{
    return a->g_i32 ? (int64_t)((const int32_t *)a->groups)[i] : ((const int64_t *)a->groups)[i];
}

/* The error bits of one element not masked (fb_hist_rows, fb_calib_chunk; fb_hist_values makes
 * the same tests): a label or, from probabilities, a prediction outside [0, 1] (NaN is not), a
 * weight not finite and >= 0. A NaN's partner or an omitted NaN's weight may be flagged: the
 * caller's NumPy path then decides. */
static inline __attribute__((always_inline)) int fb_hist_bad(double x, double y, double w, int on,
                                                             int logits)
{
    const int bad = (((y < 0.0) | (y > 1.0)) ? FB_FLAG_LABEL : 0)
                    | (((!logits) & ((x < 0.0) | (x > 1.0))) ? FB_FLAG_PRED : 0)
                    | (!((w >= 0.0) & (w < INFINITY)) ? FB_FLAG_WEIGHT : 0);
    return on ? bad : 0;
}

/* The probability q of a prediction x (σ(x) from logits), v = min(q, 1 - q) without cancellation
 * (σ(-|x|) from logits) and high = (q >= 1/2). Returned by value: out-parameters keep gcc from
 * if-converting (and so vectorising) the loops that call it. */
typedef struct {
    double q, v;
    int high;
} fb_hist_qv;

static inline __attribute__((always_inline)) fb_hist_qv fb_hist_q(double x, int logits)
{
    fb_hist_qv r;
    if (logits) {
        const double t = exp(-fabs(x));
        r.v = t / (1.0 + t); /* σ(-|x|) */
        r.high = x >= 0.0;
        r.q = r.high ? 1.0 / (1.0 + t) : r.v;
        return r;
    }
    r.high = x >= 0.5;
    r.v = r.high ? 1.0 - x : x;
    r.q = x;
    return r;
}

/* Any layout, element by element: the rows [r0, r1) into hist and extra; returns the error bits. */
static int fb_hist_rows(const fb_hist_args *a, int64_t r0, int64_t r1, double *hist, double *extra)
{
    const int logits = a->logits;
    int bad = 0;
    for (int64_t i = r0; i < r1; i++) {
        for (int64_t j = 0; j < a->ncols; j++) {
            if (!a->mask[i * a->m_rs + j * a->m_cs])
                continue;
            int64_t at = i * a->p_rs + j * a->p_cs;
            double x = a->p_f64 ? ((const double *)a->p)[at] : (double)((const float *)a->p)[at];
            double y = fb_hist_label(a->y, a->y_kind, i * a->y_rs + j * a->y_cs);
            double w = a->w_f64 ? ((const double *)a->w)[i * a->w_rs + j * a->w_cs]
                                : (double)((const float *)a->w)[i * a->w_rs + j * a->w_cs];
            int64_t slot = a->mode == FB_MODE_GROUPS ? fb_hist_group(a, i) : (a->mode == FB_MODE_COLS ? j : 0);
            double *e = extra + slot * a->n_extra;
            bad |= fb_hist_bad(x, y, w, 1, logits);
            if (isnan(x) || isnan(y)) {
                if (!a->omit_nan)
                    e[0] += 1.0;
                continue;
            }
            const fb_hist_qv r = fb_hist_q(x, logits);
            const double q = r.q, v = r.v;
            const int high = r.high;
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
    return bad;
}

/* C only: fb_hist_block's loop, inlined with the prediction's and the label's type and `logits`
 * as constants (C's way to specialise; Numba specialises by type). */
static inline __attribute__((always_inline)) int fb_hist_values(
    const fb_hist_args *a, int64_t b0, int64_t n, const double *wb, const uint8_t *mb,
    double *cwb, double *wyb, double *wqb, double *brb, double *tpb, double *fpb, double *nanb,
    int64_t *binb, int64_t *keyb, double *lanes, const int p_f64, const int y_kind,
    const int logits)
{
    const double cut = a->cut, bins = (double)a->n_bins, omit = a->omit_nan ? 0.0 : 1.0;
    const int64_t last = a->n_bins - 1, top = a->top;
    const int shift = a->shift;
    const double *P64 = (const double *)a->p + b0;
    const float *P32 = (const float *)a->p + b0;
    const uint8_t *Y8 = (const uint8_t *)a->y + b0;
    const float *Y32 = (const float *)a->y + b0;
    const double *Y64 = (const double *)a->y + b0;
#pragma omp simd
    for (int64_t k = 0; k < n; k++) {
        const double x = p_f64 ? P64[k] : (double)P32[k];
        double y = y_kind == FB_Y_U8 ? (double)Y8[k] : y_kind == FB_Y_F32 ? (double)Y32[k] : Y64[k];
        double w = wb[k];
        const int isn = (x != x) | (y != y), on = mb[k] != 0, cnt = on & !isn;
        const fb_hist_qv r = fb_hist_q(x, logits);
        const int high = r.high;
        double q = r.q, v = r.v;
        nanb[k] = on & isn ? omit : 0.0;
        w = cnt ? w : 0.0;
        y = cnt ? y : 0.0;
        q = cnt ? q : 0.0;
        v = cnt ? v : 0.0;
        const double wy = w * y, wn = w - wy, d = q - y;
        const int positive = cnt & (x >= cut);
        cwb[k] = w;
        wyb[k] = wy;
        wqb[k] = w * q;
        brb[k] = w * d * d;
        tpb[k] = positive ? wy : 0.0;
        fpb[k] = positive ? wn : 0.0;
        const int64_t bin = (int64_t)(q * bins);
        binb[k] = bin < last ? bin : last;
        keyb[k] = 2 * fb_bucket(v, high, shift, top) + (y == 0.0);
    }
    /* fb_hist_bad's tests, as 0/1 per test, in a loop of their own: in the loop above they keep
     * gcc from vectorising it. The block is in L1 by now. */
    int bad_y = 0, bad_x = 0, bad_w = 0, soft = 0;
#pragma omp simd reduction(|:bad_y, bad_x, bad_w, soft)
    for (int64_t k = 0; k < n; k++) {
        const double x = p_f64 ? P64[k] : (double)P32[k];
        const double y = y_kind == FB_Y_U8 ? (double)Y8[k] : y_kind == FB_Y_F32 ? (double)Y32[k] : Y64[k];
        const double w = wb[k];
        const int on = mb[k] != 0;
        bad_y |= on & ((y < 0.0) | (y > 1.0));
        bad_x |= on & ((x < 0.0) | (x > 1.0));
        bad_w |= on & !((w >= 0.0) & (w < INFINITY));
        soft |= on & (y != 0.0) & (y != 1.0);
    }
    const int bad = (bad_y ? FB_FLAG_LABEL : 0) | (bad_x && !logits ? FB_FLAG_PRED : 0)
                    | (bad_w ? FB_FLAG_WEIGHT : 0) | (soft ? FB_HIST_SOFT : 0);
    if (lanes == NULL)
        return bad;
    const int64_t full = n - n % FB_LANES;
    for (int64_t g = 0; g < full; g += FB_LANES) {
#pragma omp simd
        for (int k = 0; k < FB_LANES; k++) {
            lanes[k] += nanb[g + k];
            lanes[FB_LANES + k] += brb[g + k];
            lanes[2 * FB_LANES + k] += tpb[g + k];
            lanes[3 * FB_LANES + k] += fpb[g + k];
        }
    }
    for (int k = 0; k < n - full; k++) {
        lanes[k] += nanb[full + k];
        lanes[FB_LANES + k] += brb[full + k];
        lanes[2 * FB_LANES + k] += tpb[full + k];
        lanes[3 * FB_LANES + k] += fpb[full + k];
    }
    return bad;
}

/* The values of the n elements from b0 of fb_hist_flat (wb the weights, mb the mask). An element
 * counts unless masked or NaN; one with a NaN, not masked, gives nanb 1 unless NaNs are omitted.
 * Per element, 0 where not counted: cwb the weight, wyb w·y, wqb w·q, brb w·(q-y)², tpb w·y and
 * fpb w·(1-y) where x >= cut, binb the calibration bin of q and keyb 2·bucket (fb_bucket) + 1
 * where y = 0: a block of hard labels adds w at keyb alone.
 * With `lanes` (one sum for all): nanb, brb, tpb, fpb added into its four sets of FB_LANES lanes
 * (element k of the block into lane k % FB_LANES). Returns the error bits (fb_hist_bad). */
FB_H_CLONES
static int fb_hist_block(const fb_hist_args *a, int64_t b0, int64_t n, const double *wb,
                          const uint8_t *mb, double *cwb, double *wyb, double *wqb, double *brb,
                          double *tpb, double *fpb, double *nanb, int64_t *binb, int64_t *keyb,
                          double *lanes)
{
#define FB_HV(p_f64, y_kind, logits) \
    fb_hist_values(a, b0, n, wb, mb, cwb, wyb, wqb, brb, tpb, fpb, nanb, binb, keyb, lanes, p_f64, y_kind, logits)
#define FB_HV_Y(p_f64, logits) \
    (a->y_kind == FB_Y_U8 ? FB_HV(p_f64, FB_Y_U8, logits) \
     : a->y_kind == FB_Y_F32 ? FB_HV(p_f64, FB_Y_F32, logits) : FB_HV(p_f64, FB_Y_F64, logits))
    if (a->logits)
        return a->p_f64 ? FB_HV_Y(1, 1) : FB_HV_Y(0, 1);
    return a->p_f64 ? FB_HV_Y(1, 0) : FB_HV_Y(0, 0);
#undef FB_HV_Y
#undef FB_HV
}

/* The rows [r0, r1) of one column of contiguous predictions and labels (overall or by group)
 * into hist and extra, by blocks of FB_BLOCK (fb_hist_block); returns the error bits. Overall,
 * the NaN count, Brier and threshold sums go into float64 lanes and the calibration bins into
 * FB_HIST_COPIES copies (one bin, as for fastbce.brier: into lanes too), added into extra at the
 * end in a fixed order; by group, every sum goes to the element's group in element order. */
static int fb_hist_flat(const fb_hist_args *a, int64_t r0, int64_t r1, double *hist, double *extra)
{
    double wb[FB_BLOCK] __attribute__((aligned(64)));
    double cwb[FB_BLOCK] __attribute__((aligned(64)));
    double wyb[FB_BLOCK] __attribute__((aligned(64)));
    double wqb[FB_BLOCK] __attribute__((aligned(64)));
    double brb[FB_BLOCK] __attribute__((aligned(64)));
    double tpb[FB_BLOCK] __attribute__((aligned(64)));
    double fpb[FB_BLOCK] __attribute__((aligned(64)));
    double nanb[FB_BLOCK] __attribute__((aligned(64)));
    int64_t binb[FB_BLOCK] __attribute__((aligned(64)));
    int64_t keyb[FB_BLOCK] __attribute__((aligned(64)));
    uint8_t mb[FB_BLOCK] __attribute__((aligned(64)));
    double lanes[7 * FB_LANES] __attribute__((aligned(64))) = {0}; /* NaN, Brier, tp, fp; one bin */
    const int64_t nb = a->n_bins, n_extra = a->n_extra, n_buckets = a->n_buckets;
    const int grouped = a->mode == FB_MODE_GROUPS, one_bin = nb == 1;
    int bad = 0;
    double *copies = NULL; /* overall: FB_HIST_COPIES copies of the bins' 3 sums */
    if (!grouped) {
        copies = (double *)calloc(FB_HIST_COPIES * 3 * (size_t)nb, sizeof(double));
        if (copies == NULL)
            abort();
    }
    /* a weight or mask broadcast from one value (stride 0) is filled in once */
    const double *W64 = (const double *)a->w;
    const float *W32 = (const float *)a->w;
    for (int64_t k = 0; a->w_rs == 0 && k < FB_BLOCK; k++) wb[k] = a->w_f64 ? W64[0] : (double)W32[0];
    if (a->m_rs == 0)
        memset(mb, a->mask[0], FB_BLOCK);
    for (int64_t b0 = r0; b0 < r1; b0 += FB_BLOCK) {
        const int64_t n = r1 - b0 < FB_BLOCK ? r1 - b0 : FB_BLOCK;
        if (a->w_rs != 0) {
            if (a->w_f64)
                for (int64_t k = 0; k < n; k++) wb[k] = W64[(b0 + k) * a->w_rs];
            else
                for (int64_t k = 0; k < n; k++) wb[k] = (double)W32[(b0 + k) * a->w_rs];
        }
        for (int64_t k = 0; a->m_rs != 0 && k < n; k++) mb[k] = a->mask[(b0 + k) * a->m_rs];
        const int got = fb_hist_block(a, b0, n, wb, mb, cwb, wyb, wqb, brb, tpb, fpb, nanb, binb,
                                      keyb, grouped ? NULL : lanes);
        const int soft = got & FB_HIST_SOFT;
        bad |= got & ~FB_HIST_SOFT;
        if (!grouped) {
            if (one_bin) {
                const int64_t full = n - n % FB_LANES;
                for (int64_t g = 0; g < full; g += FB_LANES) {
#pragma omp simd
                    for (int k = 0; k < FB_LANES; k++) {
                        lanes[4 * FB_LANES + k] += cwb[g + k];
                        lanes[5 * FB_LANES + k] += wyb[g + k];
                        lanes[6 * FB_LANES + k] += wqb[g + k];
                    }
                }
                for (int k = 0; k < n - full; k++) {
                    lanes[4 * FB_LANES + k] += cwb[full + k];
                    lanes[5 * FB_LANES + k] += wyb[full + k];
                    lanes[6 * FB_LANES + k] += wqb[full + k];
                }
            } else {
                for (int64_t k = 0; k < n; k++) {
                    double *c = copies + 3 * (nb * (k % FB_HIST_COPIES) + binb[k]);
                    c[0] += cwb[k];
                    c[1] += wyb[k];
                    c[2] += wqb[k];
                }
            }
            if (n_buckets && !soft) /* hard labels: w·y or w·(1-y) is 0, the other w */
                for (int64_t k = 0; k < n; k++) hist[keyb[k]] += cwb[k];
            for (int64_t k = 0; n_buckets && soft && k < n; k++) {
                double *h = hist + (keyb[k] & ~(int64_t)1);
                h[0] += wyb[k];
                h[1] += cwb[k] - wyb[k];
            }
        } else {
            for (int64_t k = 0; k < n; k++) {
                const int64_t slot = fb_hist_group(a, b0 + k);
                double *e = extra + slot * n_extra, *c = e + FB_HIST_EXTRA + 3 * binb[k];
                e[0] += nanb[k];
                e[1] += brb[k];
                e[2] += tpb[k];
                e[3] += fpb[k];
                c[0] += cwb[k];
                c[1] += wyb[k];
                c[2] += wqb[k];
                if (n_buckets && !soft) {
                    hist[2 * slot * n_buckets + keyb[k]] += cwb[k];
                } else if (n_buckets) {
                    double *h = hist + 2 * slot * n_buckets + (keyb[k] & ~(int64_t)1);
                    h[0] += wyb[k];
                    h[1] += cwb[k] - wyb[k];
                }
            }
        }
    }
    if (!grouped) {
        for (int s = 0; s < (one_bin ? 7 : 4); s++) {
            double total = lanes[s * FB_LANES];
            for (int k = 1; k < FB_LANES; k++) total += lanes[s * FB_LANES + k];
            extra[s] += total;
        }
        for (int64_t j = 0; !one_bin && j < 3 * nb; j++) {
            double total = copies[j];
            for (int c = 1; c < FB_HIST_COPIES; c++) total += copies[3 * nb * c + j];
            extra[FB_HIST_EXTRA + j] += total;
        }
        free(copies);
    }
    return bad;
}

/* The rows [r0, r1) into hist (n_slots, n_buckets, 2) and extra (n_slots, n_extra), both
 * zeroed: one column of contiguous predictions and labels, overall or by group, by fb_hist_flat;
 * the rest by fb_hist_rows. Returns the error bits. */
static inline int fb_hist_chunk(const fb_hist_args *a, int64_t r0, int64_t r1, double *hist,
                                double *extra)
{
    if (a->ncols == 1 && a->p_rs == 1 && a->y_rs == 1
        && (a->mode == FB_MODE_ALL || a->mode == FB_MODE_GROUPS))
        return fb_hist_flat(a, r0, r1, hist, extra);
    return fb_hist_rows(a, r0, r1, hist, extra);
}

/* The calibration bin of q (fastbce.calibration_curve): the number of inner edges below it,
 * scikit-learn's searchsorted(edges[1:-1], q) for non-decreasing edges[0..nb]. Uniform edges:
 * the bin of q·nb, moved while an edge is on the wrong side (linspace's edges are not exactly
 * b/nb); other edges: a binary search. */
static inline __attribute__((always_inline)) int64_t fb_calib_bin(double q, const double *edges,
                                                                  int64_t nb, int uniform)
{
    if (uniform) {
        const double t = q * (double)nb;
        int64_t b = t < 1.0 ? 0 : t >= (double)(nb - 1) ? nb - 1 : (int64_t)t;
        while (b > 0 && !(edges[b] < q))
            b--;
        while (b < nb - 1 && edges[b + 1] < q)
            b++;
        return b;
    }
    int64_t lo = 0, hi = nb - 1; /* the largest b with edges[b] < q (or 0) */
    while (lo < hi) {
        const int64_t mid = (lo + hi + 1) / 2;
        if (edges[mid] < q)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* Calibration sums of the elements [r0, r1) of 1-D contiguous predictions p (q = p, or σ(x) from
 * logits) and labels y of kind y_kind, float64 weights w and mask m (w_step, m_step 0: one value
 * for all): per bin b (fb_calib_bin of q) out[1 + 4b ...] += count, Σw, Σw·q, Σw·y; out[0] +=
 * the NaN elements counted. An element counts unless masked or a NaN left out (omit_nan); a NaN
 * counted lands in the bin of q (of 0 when q is NaN), as NumPy's code puts it. Element i goes
 * into copy i % FB_HIST_COPIES of the sums, the copies added at the end in a fixed order.
 * Returns the error bits (fb_hist_bad). */
static int fb_calib_chunk(const void *p, int p_f64, const void *y, int y_kind, const double *w,
                          int64_t w_step, const uint8_t *m, int64_t m_step, int logits,
                          int omit_nan, const double *edges, int64_t nb, int uniform, int64_t r0,
                          int64_t r1, double *out)
{
    double *copies = (double *)calloc(FB_HIST_COPIES * 4 * (size_t)nb, sizeof(double));
    if (copies == NULL)
        abort();
    int bad = 0;
    double nan = 0.0;
    for (int64_t i = r0; i < r1; i++) {
        if (!m[i * m_step])
            continue;
        const double x = p_f64 ? ((const double *)p)[i] : (double)((const float *)p)[i];
        const double yv = fb_hist_label(y, y_kind, i), wv = w[i * w_step];
        bad |= fb_hist_bad(x, yv, wv, 1, logits);
        if ((x != x) | (yv != yv)) {
            if (omit_nan)
                continue;
            nan += 1.0;
        }
        const double q = fb_hist_q(x, logits).q;
        double *c = copies + 4 * (nb * (i % FB_HIST_COPIES) + fb_calib_bin(q != q ? 0.0 : q, edges, nb, uniform));
        c[0] += 1.0;
        c[1] += wv;
        c[2] += wv * q;
        c[3] += wv * yv;
    }
    out[0] += nan;
    for (int64_t j = 0; j < 4 * nb; j++) {
        double total = copies[j];
        for (int c = 1; c < FB_HIST_COPIES; c++) total += copies[4 * nb * c + j];
        out[1 + j] += total;
    }
    free(copies);
    return bad;
}
