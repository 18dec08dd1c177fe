/* C margin and overlap losses: the twin of kernels/numba/margin.py (same functions, same order,
 * same operations). Hinge and squared hinge on raw scores, and the soft counts of Dice and
 * Tversky (Σw·y·p, Σw·y, Σw·p, Σw), one chunk at a time. Each block of FB_BLOCK elements is
 * read into float64 buffers, its element values computed in one vectorised loop, and summed in
 * float64: element k of a chunk into lane k % FB_LANES in element order, the lanes added in a
 * fixed tree (per column: in row order; per row: lanes by column), so the sums do not depend on
 * the thread count. Only float64 additions, multiplications and comparisons, no fused
 * multiply-add: every instruction-set clone below gives the same bits, and so does Numba. */
#ifndef FB_MARGIN_H
#define FB_MARGIN_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codes.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
/* AVX-512 and AVX2 clones of the chunk kernel, picked by the loader (no FMA: the same bits) */
#define FB_M_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FB_M_CLONES
#endif
#define FB_M_ALWAYS __attribute__((always_inline))

/* Arguments of one margin pass. Arrays are flat, in C order of (rows, ncols). */
typedef struct {
    const void *y; int y_kind;      /* labels: FB_Y_U8, FB_Y_I8, FB_Y_F32, FB_Y_F64 */
    const void *p; int p_f64;       /* scores (hinge) or probabilities: float, or double if p_f64 */
    const void *w; int w_kind;      /* per-element weights: FB_W_* */
    const uint8_t *mask;            /* 1 = counted; NULL: every element */
    const void *groups; int g_kind; /* group id of each row (FB_MODE_GROUPS): FB_G_* */
    int loss;                       /* FB_LOSS_HINGE, FB_LOSS_SQUARED_HINGE, FB_LOSS_OVERLAP */
    int nan_mode;
    int mode;                       /* FB_MODE_* */
    int want_sums;
    int64_t ncols, row0, n_slots;
    double *sums;                   /* (chunks, n_slots, FB_MARGIN_STATS); (1, ...) by rows */
    void *loss_out, *grad_out;      /* element outputs in p's type, or NULL */
    const double *coef;             /* gradient coefficients (c0, c1) of each slot */
} fb_margin_args;

/* Hinge loss of label y (checked: -1, 0 or 1) and score x: l = max(0, m), m = 1 - t·x with
 * t = +1 for y = 1, else -1 (squared: l²). NaN in: NaN out (y - y is 0 or NaN). */
static inline FB_M_ALWAYS double fb_hinge_loss(double y, double x, int squared)
{
    const double t = y == 1.0 ? 1.0 : -1.0;
    const double m = 1.0 - t * x;
    const double h = m < 0.0 ? 0.0 : m;
    return (squared ? h * h : h) + (y - y);
}

/* dl/dx of fb_hinge_loss: -t where m >= 0 (at the kink m = 0 too: TensorFlow's gradient of
 * maximum(m, 0) goes to m on ties), else 0; squared 2·max(0, m)·(-t). NaN in: NaN out. */
static inline FB_M_ALWAYS double fb_hinge_slope(double y, double x, int squared)
{
    const double t = y == 1.0 ? 1.0 : -1.0;
    const double m = 1.0 - t * x;
    const double h = m < 0.0 ? 0.0 : m;
    return (squared ? (-2.0 * t) * h : (m < 0.0 ? 0.0 : m == m ? -t : m)) + (y - y);
}

/* The error bits of an element: NaN under "raise", and where counted (m = 1) a bad weight and,
 * for hinge, a label other than -1, 0, 1 (a NaN label is nan_policy's); masked: none. */
static inline FB_M_ALWAYS int fb_margin_bits(double y, double x, double w, double m, int nan_mode,
                                             int hinge)
{
    const int nan = (y != y) | (x != x), counted = m != 0.0;
    const int bad_label = hinge & !((y == 0.0) | (y == 1.0) | (y == -1.0)) & (y == y);
    const int bad_weight = !((w >= 0.0) & (w < __builtin_inf()));
    return (counted & nan & (nan_mode == FB_NAN_RAISE) ? FB_FLAG_NAN : 0)
           | (counted & bad_label ? FB_FLAG_LABEL : 0) | (counted & bad_weight ? FB_FLAG_WEIGHT : 0);
}

/* 0 for an element fb_margin_bits finds clean, else (mostly) a positive number or NaN: |w| - w,
 * |y·(y² - 1)| (hinge), x - x + y - y (nan_policy="raise"). The block loop sums it in float64
 * (arithmetic of one width vectorises) and looks for the bits only in a block where it is not 0;
 * infinite scores and NaN labels make a block suspect without an error. */
static inline FB_M_ALWAYS double fb_margin_suspect(double y, double x, double w, int hinge,
                                                   int raise)
{
    const double label = hinge ? __builtin_fabs(y * (y * y - 1.0)) : 0.0;
    return (__builtin_fabs(w) - w) + label + (raise ? (x - x) + (y - y) : 0.0);
}

/* Labels and predictions of elements [b0, b0 + n) as float64 into yb and xb. */
static inline FB_M_ALWAYS void fb_margin_load(const fb_margin_args *a, int64_t b0, int64_t n,
                                              double *yb, double *xb)
{
    if (a->y_kind == FB_Y_U8) {
        const uint8_t *y = (const uint8_t *)a->y + b0;
        for (int64_t k = 0; k < n; k++) yb[k] = (double)y[k];
    } else if (a->y_kind == FB_Y_I8) {
        const int8_t *y = (const int8_t *)a->y + b0;
        for (int64_t k = 0; k < n; k++) yb[k] = (double)y[k];
    } else if (a->y_kind == FB_Y_F32) {
        const float *y = (const float *)a->y + b0;
        for (int64_t k = 0; k < n; k++) yb[k] = (double)y[k];
    } else {
        memcpy(yb, (const double *)a->y + b0, (size_t)n * sizeof(double));
    }
    if (a->p_f64) {
        memcpy(xb, (const double *)a->p + b0, (size_t)n * sizeof(double));
    } else {
        const float *p = (const float *)a->p + b0;
        for (int64_t k = 0; k < n; k++) xb[k] = (double)p[k];
    }
}

/* Weights (1 without) into wb and the mask as 1.0 / 0.0 (1.0 without) into mb. */
static inline FB_M_ALWAYS void fb_margin_weights(const fb_margin_args *a, int64_t b0, int64_t n,
                                                 double *wb, double *mb)
{
    if (a->w_kind == FB_W_F32) {
        const float *w = (const float *)a->w + b0;
        for (int64_t k = 0; k < n; k++) wb[k] = (double)w[k];
    } else if (a->w_kind == FB_W_F64) {
        memcpy(wb, (const double *)a->w + b0, (size_t)n * sizeof(double));
    } else {
        for (int64_t k = 0; k < n; k++) wb[k] = 1.0;
    }
    if (a->mask != NULL) {
        const uint8_t *m = a->mask + b0;
        for (int64_t k = 0; k < n; k++) mb[k] = m[k] ? 1.0 : 0.0;
    } else {
        for (int64_t k = 0; k < n; k++) mb[k] = 1.0;
    }
}

/* nan_policy="omit": elements with a NaN label or prediction are masked (mb = 0). */
static inline FB_M_ALWAYS void fb_margin_omit(int64_t n, const double *yb, const double *xb,
                                              double *mb)
{
#pragma omp simd
    for (int64_t k = 0; k < n; k++) mb[k] = yb[k] == yb[k] ? (xb[k] == xb[k] ? mb[k] : 0.0) : 0.0;
}

/* The gradient coefficients (c0, c1) of each element's slot into kb0, kb1; a group id out of
 * range gives 0 and the error bit. */
static inline FB_M_ALWAYS int fb_margin_coefs(const fb_margin_args *a, int64_t b0, int64_t n,
                                              double *kb0, double *kb1)
{
    const int64_t ncols = a->ncols;
    int bad = 0;
    for (int64_t k = 0; k < n; k++) {
        const int64_t i = b0 + k, row = i / ncols;
        int64_t slot = 0;
        if (a->mode == FB_MODE_COLS)
            slot = i % ncols;
        else if (a->mode == FB_MODE_ROWS)
            slot = a->row0 + row;
        else if (a->mode == FB_MODE_GROUPS)
            slot = a->g_kind == FB_G_I32 ? ((const int32_t *)a->groups)[row]
                                         : ((const int64_t *)a->groups)[row];
        const int ok = slot >= 0 && slot < a->n_slots;
        bad |= ok ? 0 : FB_FLAG_GROUP;
        kb0[k] = ok ? a->coef[2 * slot] : 0.0;
        kb1[k] = ok ? a->coef[2 * slot + 1] : 0.0;
    }
    return bad;
}

/* Pairwise sum of FB_LANES lanes in a fixed order. */
static inline FB_M_ALWAYS double fb_margin_lane_sum(const double *s)
{
    const double s0 = (s[0] + s[1]) + (s[2] + s[3]), s1 = (s[4] + s[5]) + (s[6] + s[7]);
    const double s2 = (s[8] + s[9]) + (s[10] + s[11]), s3 = (s[12] + s[13]) + (s[14] + s[15]);
    return (s0 + s1) + (s2 + s3);
}

/* acc[k] += v[g + k] for the groups of FB_LANES elements, the last one from lane 0 on (as
 * add_lanes of kernels/numba/llvm.py without weights). */
static inline FB_M_ALWAYS void fb_margin_lanes(double *acc, const double *v, int64_t n)
{
    const int64_t full = n - n % FB_LANES;
    for (int64_t g = 0; g < full; g += FB_LANES) {
#pragma omp simd
        for (int q = 0; q < FB_LANES; q++) acc[q] += v[g + q];
    }
    for (int64_t q = 0; q < n - full; q++) acc[q] += v[full + q];
}

/* Σ of a block's suspect values (fb_margin_suspect) in lanes: not 0 when one is not 0. */
static inline FB_M_ALWAYS double fb_margin_suspect_sum(const double *sb, int64_t n)
{
    double acc[FB_LANES] __attribute__((aligned(64))) = {0};
    fb_margin_lanes(acc, sb, n);
    return fb_margin_lane_sum(acc);
}

/* The element values of a block: v1 = counted weight (0 where mb = 0); hinge: v0 = the loss l,
 * v2 = dl/dx (both 0 where not counted); overlap: v0 = p, v2 = w·y (0 where not counted).
 * Returns the error bits. */
static inline FB_M_ALWAYS int fb_margin_elements(const fb_margin_args *a, int64_t n,
                                                 const double *yb, const double *xb,
                                                 const double *wb, const double *mb, double *v0,
                                                 double *v1, double *v2, double *sb, int loss)
{
    const int hinge = loss != FB_LOSS_OVERLAP, squared = loss == FB_LOSS_SQUARED_HINGE;
    const int raise = a->nan_mode == FB_NAN_RAISE;
    if (!hinge) {
#pragma omp simd
        for (int64_t k = 0; k < n; k++) {
            const double x = xb[k], y = yb[k], w = wb[k], counted = mb[k] != 0.0;
            sb[k] = counted ? fb_margin_suspect(y, x, w, 0, raise) : 0.0;
            v0[k] = counted ? x : 0.0;
            v1[k] = counted ? w : 0.0;
            v2[k] = counted ? w * y : 0.0;
        }
    } else {
#pragma omp simd
        for (int64_t k = 0; k < n; k++) {
            const double x = xb[k], y = yb[k], w = wb[k], counted = mb[k] != 0.0;
            sb[k] = counted ? fb_margin_suspect(y, x, w, 1, raise) : 0.0;
            v0[k] = counted ? fb_hinge_loss(y, x, squared) : 0.0;
            v1[k] = counted ? w : 0.0;
            v2[k] = counted ? fb_hinge_slope(y, x, squared) : 0.0;
        }
    }
    const double suspect = fb_margin_suspect_sum(sb, n);
    int bad = 0;
    for (int64_t k = 0; suspect != 0.0 && k < n; k++)
        bad |= fb_margin_bits(yb[k], xb[k], wb[k], mb[k], a->nan_mode, hinge);
    return bad;
}

/* The plain block: one sum for all, no weights, mask, omitted NaNs or element outputs, labels
 * and predictions read in place (y_kind FB_Y_U8, FB_Y_F32 or FB_Y_F64). Hinge: v0 = l; overlap:
 * v0 = y·p, yb = y, xb = p (the terms of the general block with w = 1, hence the same sums).
 * Returns the error bits. */
static inline FB_M_ALWAYS int fb_margin_plain(const fb_margin_args *a, int64_t b0, int64_t n,
                                              double *v0, double *yb, double *xb, double *sb,
                                              int y_kind, int p_f64, int loss)
{
    const int hinge = loss != FB_LOSS_OVERLAP, squared = loss == FB_LOSS_SQUARED_HINGE;
    const int raise = a->nan_mode == FB_NAN_RAISE;
    const uint8_t *yu = (const uint8_t *)a->y + b0;
    const float *yf = (const float *)a->y + b0, *pf = (const float *)a->p + b0;
    const double *yd = (const double *)a->y + b0, *pd = (const double *)a->p + b0;
    /* one loop per pair of types, each with its own pointers (a selected load is not vectorised) */
#define FB_M_PLAIN_LOOP(Y, P) \
    if (hinge) { \
        _Pragma("omp simd") \
        for (int64_t k = 0; k < n; k++) { \
            const double y = (double)Y[k], x = (double)P[k]; \
            sb[k] = fb_margin_suspect(y, x, 1.0, 1, raise); \
            v0[k] = fb_hinge_loss(y, x, squared); \
        } \
    } else { \
        _Pragma("omp simd") \
        for (int64_t k = 0; k < n; k++) { \
            const double y = (double)Y[k], x = (double)P[k]; \
            sb[k] = fb_margin_suspect(y, x, 1.0, 0, raise); \
            v0[k] = x * y; \
            yb[k] = y; \
            xb[k] = x; \
        } \
    }
    if (y_kind == FB_Y_U8 && p_f64) { FB_M_PLAIN_LOOP(yu, pd) }
    else if (y_kind == FB_Y_U8) { FB_M_PLAIN_LOOP(yu, pf) }
    else if (y_kind == FB_Y_F32 && p_f64) { FB_M_PLAIN_LOOP(yf, pd) }
    else if (y_kind == FB_Y_F32) { FB_M_PLAIN_LOOP(yf, pf) }
    else if (p_f64) { FB_M_PLAIN_LOOP(yd, pd) }
    else { FB_M_PLAIN_LOOP(yd, pf) }
#undef FB_M_PLAIN_LOOP
    const double suspect = fb_margin_suspect_sum(sb, n);
    int bad = 0;
    for (int64_t k = 0; suspect != 0.0 && k < n; k++) {
        const double y = y_kind == FB_Y_U8 ? (double)yu[k] : y_kind == FB_Y_F32 ? (double)yf[k] : yd[k];
        bad |= fb_margin_bits(y, p_f64 ? pd[k] : (double)pf[k], 1.0, 1.0, a->nan_mode, hinge);
    }
    return bad;
}

/* Element outputs of a block, in p's type: the weighted losses w·l (hinge) and the gradient,
 * 0 where the counted weight is 0; hinge (w·dl/dx)·c0, overlap w·c0 + (w·y)·c1. */
static inline FB_M_ALWAYS void fb_margin_outputs(const fb_margin_args *a, int64_t b0, int64_t n,
                                                 const double *v0, const double *v1,
                                                 const double *v2, const double *kb0,
                                                 const double *kb1, int p_f64)
{
    const int overlap = a->loss == FB_LOSS_OVERLAP;
    if (a->loss_out != NULL) {
        if (p_f64) {
            double *out = (double *)a->loss_out + b0;
            for (int64_t k = 0; k < n; k++) out[k] = v0[k] * v1[k];
        } else {
            float *out = (float *)a->loss_out + b0;
            for (int64_t k = 0; k < n; k++) out[k] = (float)(v0[k] * v1[k]);
        }
    }
    if (a->grad_out != NULL) {
        if (p_f64) {
            double *out = (double *)a->grad_out + b0;
#pragma omp simd
            for (int64_t k = 0; k < n; k++) {
                const double g = overlap ? v1[k] * kb0[k] + v2[k] * kb1[k] : (v1[k] * v2[k]) * kb0[k];
                out[k] = v1[k] == 0.0 ? 0.0 : g;
            }
        } else {
            float *out = (float *)a->grad_out + b0;
#pragma omp simd
            for (int64_t k = 0; k < n; k++) {
                const double g = overlap ? v1[k] * kb0[k] + v2[k] * kb1[k] : (v1[k] * v2[k]) * kb0[k];
                out[k] = (float)(v1[k] == 0.0 ? 0.0 : g);
            }
        }
    }
}

/* Elements [k, k + run) of a row from column j on, into lanes by column: acc_a += a·b, acc_b
 * += b. Column j + t goes to lane (j + t) % FB_LANES until a lane boundary, then the rest from
 * lane 0 on in groups of FB_LANES (as add_lanes of kernels/numba/llvm.py). */
static inline FB_M_ALWAYS void fb_margin_row_lanes(double *acc_a, const double *a, double *acc_b,
                                                   const double *b, int64_t k, int64_t run,
                                                   int64_t j)
{
    int64_t t = 0;
    for (; t < run && (j + t) % FB_LANES; t++) {
        acc_a[(j + t) % FB_LANES] += a[k + t] * b[k + t];
        acc_b[(j + t) % FB_LANES] += b[k + t];
    }
    for (; t + FB_LANES <= run; t += FB_LANES) {
#pragma omp simd
        for (int q = 0; q < FB_LANES; q++) {
            acc_a[q] += a[k + t + q] * b[k + t + q];
            acc_b[q] += b[k + t + q];
        }
    }
    for (int64_t q = 0; q < run - t; q++) {
        acc_a[q] += a[k + t + q] * b[k + t + q];
        acc_b[q] += b[k + t + q];
    }
}

/* Elements [k, k + run) of a row from column j on, into per-column sums: col_a[j + t] +=
 * a·b, col_b[j + t] += b. */
static inline FB_M_ALWAYS void fb_margin_col_add(double *col_a, const double *a, double *col_b,
                                                 const double *b, int64_t k, int64_t run,
                                                 int64_t j)
{
#pragma omp simd
    for (int64_t t = 0; t < run; t++) {
        col_a[j + t] += a[k + t] * b[k + t];
        col_b[j + t] += b[k + t];
    }
}

/* Chunk `chunk` = elements [start, stop) (whole rows unless a->mode is FB_MODE_ALL): its sums
 * (hinge: Σw·l, Σw, 0, 0; overlap: Σw·y·p, Σw·y, Σw·p, Σw) into a->sums[chunk, slot] (by rows:
 * a->sums[0, row0 + row]), its element outputs; returns the error bits. */
FB_M_CLONES __attribute__((noinline))
static int fb_margin_chunk(const fb_margin_args *a, int64_t chunk, int64_t start, int64_t stop)
{
    double yb[FB_BLOCK] __attribute__((aligned(64)));
    double xb[FB_BLOCK] __attribute__((aligned(64)));
    double wb[FB_BLOCK] __attribute__((aligned(64)));
    double mb[FB_BLOCK] __attribute__((aligned(64)));
    double v0[FB_BLOCK] __attribute__((aligned(64)));
    double v1[FB_BLOCK] __attribute__((aligned(64)));
    double v2[FB_BLOCK] __attribute__((aligned(64)));
    double kb0[FB_BLOCK] __attribute__((aligned(64)));
    double sb[FB_BLOCK] __attribute__((aligned(64)));
    double kb1[FB_BLOCK] __attribute__((aligned(64)));
    double acc[4][FB_LANES] __attribute__((aligned(64)));
    const int64_t ncols = a->ncols, S = FB_MARGIN_STATS;
    const int overlap = a->loss == FB_LOSS_OVERLAP;
    const int want_grad = a->grad_out != NULL;
    double *sums = a->sums + (a->mode == FB_MODE_ROWS ? 0 : chunk * a->n_slots * S);
    double *col = NULL;
    int bad = 0;
    memset(acc, 0, sizeof(acc));
    if (a->mode == FB_MODE_COLS && a->want_sums) {
        col = (double *)calloc(4 * (size_t)ncols, sizeof(double));
        if (col == NULL)
            abort();
    }
    for (int64_t k = 0; k < FB_BLOCK; k++) { /* refilled per block with weights or a mask */
        wb[k] = 1.0;
        mb[k] = 1.0;
    }
    if (want_grad && a->mode == FB_MODE_ALL)
        bad |= fb_margin_coefs(a, 0, FB_BLOCK, kb0, kb1);
    /* the plain route (fb_margin_plain); the counts Σw are then the number of elements */
    const int plain = a->mode == FB_MODE_ALL && a->w_kind == FB_W_NONE && a->mask == NULL
                      && a->nan_mode != FB_NAN_OMIT && a->loss_out == NULL && !want_grad
                      && a->want_sums && a->y_kind != FB_Y_I8;
    for (int64_t b0 = start; plain && b0 < stop; b0 += FB_BLOCK) {
        const int64_t n = stop - b0 < FB_BLOCK ? stop - b0 : FB_BLOCK;
#define FB_M_PLAIN(y_kind, p_f64) \
        (overlap ? fb_margin_plain(a, b0, n, v0, yb, xb, sb, y_kind, p_f64, FB_LOSS_OVERLAP) \
         : a->loss == FB_LOSS_HINGE ? fb_margin_plain(a, b0, n, v0, yb, xb, sb, y_kind, p_f64, FB_LOSS_HINGE) \
         : fb_margin_plain(a, b0, n, v0, yb, xb, sb, y_kind, p_f64, FB_LOSS_SQUARED_HINGE))
        if (a->p_f64)
            bad |= a->y_kind == FB_Y_U8 ? FB_M_PLAIN(FB_Y_U8, 1) : a->y_kind == FB_Y_F32
                   ? FB_M_PLAIN(FB_Y_F32, 1) : FB_M_PLAIN(FB_Y_F64, 1);
        else
            bad |= a->y_kind == FB_Y_U8 ? FB_M_PLAIN(FB_Y_U8, 0) : a->y_kind == FB_Y_F32
                   ? FB_M_PLAIN(FB_Y_F32, 0) : FB_M_PLAIN(FB_Y_F64, 0);
#undef FB_M_PLAIN
        fb_margin_lanes(acc[0], v0, n);
        if (overlap) {
            fb_margin_lanes(acc[1], yb, n);
            fb_margin_lanes(acc[2], xb, n);
        }
    }
    if (plain) {
        const double count = (double)(stop - start);
        sums[0] = fb_margin_lane_sum(acc[0]);
        sums[1] = overlap ? fb_margin_lane_sum(acc[1]) : count;
        sums[2] = overlap ? fb_margin_lane_sum(acc[2]) : 0.0;
        sums[3] = overlap ? count : 0.0;
        return bad;
    }
    for (int64_t b0 = start; b0 < stop; b0 += FB_BLOCK) {
        const int64_t n = stop - b0 < FB_BLOCK ? stop - b0 : FB_BLOCK;
        fb_margin_load(a, b0, n, yb, xb);
        if (a->w_kind != FB_W_NONE || a->mask != NULL || a->nan_mode == FB_NAN_OMIT)
            fb_margin_weights(a, b0, n, wb, mb);
        if (a->nan_mode == FB_NAN_OMIT)
            fb_margin_omit(n, yb, xb, mb);
        if (want_grad && a->mode != FB_MODE_ALL)
            bad |= fb_margin_coefs(a, b0, n, kb0, kb1);
        bad |= overlap ? fb_margin_elements(a, n, yb, xb, wb, mb, v0, v1, v2, sb, FB_LOSS_OVERLAP)
             : a->loss == FB_LOSS_HINGE ? fb_margin_elements(a, n, yb, xb, wb, mb, v0, v1, v2, sb, FB_LOSS_HINGE)
             : fb_margin_elements(a, n, yb, xb, wb, mb, v0, v1, v2, sb, FB_LOSS_SQUARED_HINGE);
        fb_margin_outputs(a, b0, n, v0, v1, v2, kb0, kb1, a->p_f64);
        if (!a->want_sums)
            continue;
        /* hinge: (Σ v0·v1, Σ v1); overlap: (Σ v0·v2, Σ v2, Σ v0·v1, Σ v1) */
        const double *b_first = overlap ? v2 : v1;
        if (a->mode == FB_MODE_ALL) {
            fb_margin_row_lanes(acc[0], v0, acc[1], b_first, 0, n, 0);
            if (overlap)
                fb_margin_row_lanes(acc[2], v0, acc[3], v1, 0, n, 0);
        } else if (a->mode == FB_MODE_COLS) {
            for (int64_t k = 0, j = (b0 - start) % ncols; k < n; j = 0) {
                const int64_t run = n - k < ncols - j ? n - k : ncols - j;
                fb_margin_col_add(col, v0, col + ncols, b_first, k, run, j);
                if (overlap)
                    fb_margin_col_add(col + 2 * ncols, v0, col + 3 * ncols, v1, k, run, j);
                k += run;
            }
        } else {
            /* by row (its own slot, or its group's): rows shorter than FB_LANES element by
             * element into the slot, longer ones in lanes by column, added at the row's end */
            for (int64_t k = 0, row = b0 / ncols, j = b0 % ncols; k < n;) {
                const int64_t run = n - k < ncols - j ? n - k : ncols - j;
                int64_t slot = a->row0 + row;
                if (a->mode == FB_MODE_GROUPS)
                    slot = a->g_kind == FB_G_I32 ? ((const int32_t *)a->groups)[row]
                                                 : ((const int64_t *)a->groups)[row];
                const int ok = slot >= 0 && slot < a->n_slots;
                bad |= ok ? 0 : FB_FLAG_GROUP;
                if (ok && ncols < FB_LANES) {
                    double *s = sums + slot * S;
                    for (int64_t t = k; t < k + run; t++) {
                        s[0] += v0[t] * b_first[t];
                        s[1] += b_first[t];
                        if (overlap) {
                            s[2] += v0[t] * v1[t];
                            s[3] += v1[t];
                        }
                    }
                } else if (ok) {
                    fb_margin_row_lanes(acc[0], v0, acc[1], b_first, k, run, j);
                    if (overlap)
                        fb_margin_row_lanes(acc[2], v0, acc[3], v1, k, run, j);
                }
                k += run;
                j += run;
                if (j == ncols) {
                    if (ok && ncols >= FB_LANES) {
                        for (int s = 0; s < 4; s++) {
                            const double total = fb_margin_lane_sum(acc[s]);
                            sums[slot * S + s] = a->mode == FB_MODE_ROWS ? total : sums[slot * S + s] + total;
                        }
                    }
                    memset(acc, 0, sizeof(acc));
                    j = 0;
                    row++;
                }
            }
        }
    }
    if (a->want_sums && a->mode == FB_MODE_ALL) {
        for (int s = 0; s < 4; s++) sums[s] = fb_margin_lane_sum(acc[s]);
    } else if (col != NULL) {
        for (int64_t j = 0; j < ncols; j++)
            for (int s = 0; s < 4; s++) sums[j * S + s] = col[s * ncols + j];
        free(col);
    }
    return bad;
}

#endif
