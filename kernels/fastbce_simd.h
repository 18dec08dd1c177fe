/* Fast path of fastbce's Cython backend: vectorisable BCE over flat contiguous data.
 *
 * The logarithm and exponential are written as arithmetic on the float's bits (exponent
 * extraction, polynomial on the mantissa: kernels/fastbce_math.h) so that gcc vectorises the loops
 * (kernels/fastbce_chunk.h) with the SIMD width of the CPU; there is no libm call in a hot loop.
 * kernels/numba_fast.py states the same operations in the same order for the Numba backend.
 *
 * Variants: the kernels are compiled three times, for x86-64-v4 (AVX-512), x86-64-v3 (AVX2 + FMA)
 * and the x86-64 baseline (SSE2), and fb_select() picks one at import from the CPU's features
 * (no -march=native: a build runs on any x86-64). v4 and v3 use explicit fused multiply-adds at
 * the same places, so they give the same bits (and the same bits as the Numba backend, which
 * uses llvm.fma there); the baseline has no FMA instruction and rounds the products separately.
 * The build uses -ffp-contract=off so that the compiler adds no fusion of its own, and no
 * -ffast-math (NaN and inf handling must stay exact).
 *
 * Sums: per chunk, element i goes into lane (i - chunk start) % FB_LANES, each lane is summed in
 * element order in float64, and the lanes are added in a fixed tree: the order does not depend on
 * the vector width nor on the thread count. The product path (float32 predictions, or float64
 * ones for a whole-array sum, 0/1 labels, no weights: fastbce_chunk.h) multiplies the
 * probabilities of the observed classes into FB_PROD_LANES float64 lanes the same way and takes
 * one logarithm per lane.
 */
#ifndef FASTBCE_SIMD_H
#define FASTBCE_SIMD_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#define FB_LANES 16
#define FB_BLOCK 512 /* elements per block: label, weight and loss buffers stay in L1 */
#define FB_PROD_LANES 64 /* lanes of the product path: 4 independent chains per SIMD lane */
#define FB_SPLIT_BLOCKS 3 /* blocks of the product path between two fb_split of its lanes */
/* rows (or groups of rows) of at least this many columns take the product path: its FB_PROD_LANES
 * logarithms per row cost more than a logarithm per element in shorter rows (measured crossover
 * between 128 and 192 columns) */
#define FB_ROW_PRODUCT_COLS 160

/* For the scalar loops by group: gcc's SLP vectoriser packs a group's running sums into one
 * register and unpacks them on every element, which lengthens the dependency chain of a sorted
 * run of ids (measured: 1-D by 1,000 sorted groups 307 -> 440 M/s without it). */
#if defined(__GNUC__) && !defined(__clang__)
#define FB_NO_SLP __attribute__((optimize("no-tree-slp-vectorize")))
#else
#define FB_NO_SLP
#endif

/* error bits and nan_policy codes: the values of kernels/__init__.py */
#define FB_FLAG_LABEL 1
#define FB_FLAG_PRED 2
#define FB_FLAG_NAN 4
#define FB_FLAG_WEIGHT 8
#define FB_NAN_PROPAGATE 0
#define FB_NAN_RAISE 1
#define FB_NAN_OMIT 2

/* label kinds */
#define FB_Y_U8 0
#define FB_Y_F32 1
#define FB_Y_F64 2
/* weight kinds */
#define FB_W_NONE 0
#define FB_W_F32 1
#define FB_W_F64 2
/* group id kinds: ids are read in place as int64 or int32 */
#define FB_G_I64 0
#define FB_G_I32 1

/* reduction modes: the values of kernels/__init__.py */
#define FB_MODE_ALL 0
#define FB_MODE_ROWS 1
#define FB_MODE_COLS 2
#define FB_MODE_GROUPS 3
#define FB_FLAG_GROUP 32

/* Arguments of one pass (shared by every chunk). Arrays are flat, in C order of (rows, ncols). */
typedef struct {
    const void *y; int y_kind;  /* labels: FB_Y_* */
    double keep, shift;         /* label smoothing: y·keep + shift (keep = 1, shift = 0: none) */
    int focal;                  /* focal loss: α_t·(1-p_t)^γ·CE (fb_focal) */
    double gamma, alpha;        /* γ >= 0; α in [0, 1], or < 0 for no α factor */
    int gamma_n;                /* γ when it is an integer <= 7 (by squaring), else -1 */
    const void *p;              /* predictions: float or double by the function called */
    const void *w; int w_kind;  /* per-element weights: FB_W_* */
    const double *pos_w;        /* pos_weight of each column (ncols values), or NULL (1 for all) */
    const uint8_t *mask;        /* 1 = counted; NULL: every element */
    int logits;
    int nan_mode;
    double clip_lo, clip_hi;    /* p < clip_lo is clipped to eps, p > clip_hi to 1 - eps */
    double eps, q_hi;           /* eps and 1 - eps in float64 (the product path clamps p to them) */
    /* losses of a clipped p: q = eps (lo) or q = 1 - eps (hi), for y = 1 (pos) and y = 0 (neg) */
    double lo_pos, lo_neg, hi_pos, hi_neg; /* -log q and -log(1 - q) at each bound */
    void *grad;                 /* NULL: no gradient */
    double grad_scale;          /* factor of every gradient element (1/Σw for a mean) */
    const double *col_scale;    /* per-column factor instead (ncols values), or NULL */
    const double *row_scale;    /* per-row factor (times grad_scale; indexed by row0 + row), or NULL */
    int want_loss;              /* 0: only the gradient, Σw and the checks */
    int mode;                   /* FB_MODE_*: one slot, one per row, per column, per group of the row */
    int64_t ncols;
    int64_t row0;               /* index of the first row (FB_MODE_ROWS slots, row_scale) */
    const void *groups; int g_kind; /* group id of each row (FB_MODE_GROUPS): FB_G_* */
    int64_t n_slots;
    double *sums;               /* (chunks, n_slots, 2): Σ w·loss, Σ w; (1, n_slots, 2) by rows */
} fb_args;

static inline int32_t fb_bits_f32(float x) { int32_t i; memcpy(&i, &x, 4); return i; }
static inline float fb_from_bits_f32(int32_t i) { float x; memcpy(&x, &i, 4); return x; }
static inline int64_t fb_bits_f64(double x) { int64_t i; memcpy(&i, &x, 8); return i; }
static inline double fb_from_bits_f64(int64_t i) { double x; memcpy(&x, &i, 8); return x; }
/* k as a double for |k| < 2^51, by the 1.5·2^52 trick: vectorises also where there is no 64-bit
 * integer conversion instruction (before AVX-512). */
static inline double fb_i64_to_f64(int64_t k)
{
    return fb_from_bits_f64((int64_t)((uint64_t)k + 0x4338000000000000ULL)) - 6755399441055744.0;
}

/* The group id of a row. */
static inline int64_t fb_group(const fb_args *a, int64_t row)
{
    return a->g_kind == FB_G_I32 ? (int64_t)((const int32_t *)a->groups)[row]
                                 : ((const int64_t *)a->groups)[row];
}

/* buf[k] = v[column of element k] for the n elements of a block whose first element is in
 * column j (of ncols): the per-column values (pos_weight, gradient scale) of a block. */
static inline void fb_by_column(double *buf, const double *v, int64_t j, int64_t ncols, int64_t n)
{
    for (int64_t k = 0; k < n; j = 0) {
        int64_t run = n - k < ncols - j ? n - k : ncols - j;
        memcpy(buf + k, v + j, (size_t)run * sizeof(double));
        k += run;
    }
}

/* Labels of a block as T, with their error bits; soft = 1 unless every label is 0 or 1. */
#define FB_LOAD_LABELS(T, a, start, n, ybuf, bad, soft) do {                                    \
    int lbad_ = 0, lsoft_ = 0;                                                                   \
    if ((a)->y_kind == FB_Y_U8) {                                                                \
        /* the OR of the labels is > 1 iff some label is: a byte-wide reduction */              \
        const uint8_t *ys_ = (const uint8_t *)(a)->y + (start);                                 \
        uint8_t any_ = 0;                                                                        \
        _Pragma("omp simd reduction(|:any_)")                                                    \
        for (int64_t k_ = 0; k_ < (n); k_++) { any_ |= ys_[k_]; (ybuf)[k_] = (T)ys_[k_]; }      \
        lbad_ = any_ > 1;                                                                        \
    } else if ((a)->y_kind == FB_Y_F32) {                                                        \
        const float *ys_ = (const float *)(a)->y + (start);                                     \
        _Pragma("omp simd reduction(|:lbad_, lsoft_)")                                           \
        for (int64_t k_ = 0; k_ < (n); k_++) {                                                   \
            float v_ = ys_[k_];                                                                  \
            lbad_ |= (v_ < 0.0f) | (v_ > 1.0f);                                                  \
            lsoft_ |= v_ * (1.0f - v_) != 0.0f;                                                  \
            (ybuf)[k_] = (T)v_;                                                                  \
        }                                                                                        \
    } else {                                                                                     \
        const double *ys_ = (const double *)(a)->y + (start);                                   \
        _Pragma("omp simd reduction(|:lbad_, lsoft_)")                                           \
        for (int64_t k_ = 0; k_ < (n); k_++) {                                                   \
            double v_ = ys_[k_];                                                                 \
            lbad_ |= (v_ < 0.0) | (v_ > 1.0);                                                    \
            lsoft_ |= v_ * (1.0 - v_) != 0.0;                                                    \
            (ybuf)[k_] = (T)v_;                                                                  \
        }                                                                                        \
    }                                                                                            \
    (bad) = lbad_; (soft) = lsoft_;                                                              \
} while (0)

/* ---- the variants ------------------------------------------------------------------------ */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(FB_SINGLE_VARIANT)
#define FB_MULTI_VARIANT 1

#define FB_V(name) name##_v4
#define FB_TARGET __attribute__((target("arch=x86-64-v4")))
#define FB_F64_LANES 8 /* float64 values per vector register */
#define FB_EXACT_FMA 1 /* FB_FMA rounds once (the float64 product path needs it) */
#define FB_FMAF(a, b, c) __builtin_fmaf(a, b, c)
#define FB_FMA(a, b, c) __builtin_fma(a, b, c)
#include "fastbce_variant.h"

#define FB_V(name) name##_v3
#define FB_TARGET __attribute__((target("arch=x86-64-v3")))
#define FB_F64_LANES 4
#define FB_EXACT_FMA 1
#define FB_FMAF(a, b, c) __builtin_fmaf(a, b, c)
#define FB_FMA(a, b, c) __builtin_fma(a, b, c)
#include "fastbce_variant.h"
#endif

#define FB_V(name) name##_base
#define FB_TARGET
#define FB_F64_LANES 2
#define FB_EXACT_FMA 0
#define FB_FMAF(a, b, c) ((a) * (b) + (c))
#define FB_FMA(a, b, c) ((a) * (b) + (c))
#include "fastbce_variant.h"

typedef int (*fb_chunk_fn)(const fb_args *, int64_t, int64_t, int64_t);
static fb_chunk_fn fb_chunk_f32_impl = fb_chunk_f32_base;
static fb_chunk_fn fb_chunk_f64_impl = fb_chunk_f64_base;
static const char *fb_variant_name = "x86-64 baseline (no FMA)";

/* Pick the variant for this CPU, or `forced` ("v4", "v3", "base") when the CPU has it; returns
 * the name of the variant in use. */
static const char *fb_select(const char *forced)
{
#ifdef FB_MULTI_VARIANT
    __builtin_cpu_init();
    int v4 = __builtin_cpu_supports("x86-64-v4"), v3 = __builtin_cpu_supports("x86-64-v3");
    if (forced != NULL && forced[0] != '\0') {
        if (strcmp(forced, "base") == 0) v4 = v3 = 0;
        else if (strcmp(forced, "v3") == 0) v4 = 0;
    }
    if (v4) {
        fb_chunk_f32_impl = fb_chunk_f32_v4; fb_chunk_f64_impl = fb_chunk_f64_v4;
        fb_variant_name = "x86-64-v4 (AVX-512, FMA)";
        return fb_variant_name;
    }
    if (v3) {
        fb_chunk_f32_impl = fb_chunk_f32_v3; fb_chunk_f64_impl = fb_chunk_f64_v3;
        fb_variant_name = "x86-64-v3 (AVX2, FMA)";
        return fb_variant_name;
    }
#else
    (void)forced;
#endif
    fb_chunk_f32_impl = fb_chunk_f32_base; fb_chunk_f64_impl = fb_chunk_f64_base;
#ifdef FB_MULTI_VARIANT
    fb_variant_name = "x86-64 baseline (SSE2, no FMA)";
#else
    fb_variant_name = "portable C (no FMA)";
#endif
    return fb_variant_name;
}

/* Chunk `chunk` = elements [start, stop) (whole rows unless mode is FB_MODE_ALL): its sums into
 * a->sums[chunk]; returns the error bits. */
static inline int fb_chunk_f32(const fb_args *a, int64_t chunk, int64_t start, int64_t stop)
{
    return fb_chunk_f32_impl(a, chunk, start, stop);
}

static inline int fb_chunk_f64(const fb_args *a, int64_t chunk, int64_t start, int64_t stop)
{
    return fb_chunk_f64_impl(a, chunk, start, stop);
}

#endif
