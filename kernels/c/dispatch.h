/* C fast path, entry: the twin of kernels/numba/dispatch.py (whose Python entry is the twin of
 * fast_pass in kernels/cython_kernels.pyx, which includes this header). The arguments of one
 * pass (fb_args: the arrays and the options record), the instruction-set variants of the kernels
 * (variant.h, once per variant) and fb_select, which picks the variant for this CPU at import.
 *
 * Variants: the kernels are compiled for x86-64-v4 (AVX-512), x86-64-v3 (AVX2 + FMA) and the
 * x86-64 baseline (SSE2); no -march=native, so a build runs on any x86-64. v4 and v3 use explicit
 * fused multiply-adds at the same places, so they give the same bits as each other and as the
 * Numba backend (llvm.fma there); the baseline has no FMA instruction and rounds the products
 * separately. On aarch64 one variant is compiled, for NEON with exact FMA (part of every ARMv8
 * CPU): the bits of v4 and v3 (`make check-aarch64` compares them under qemu). The build uses
 * -ffp-contract=off (no fusion of the compiler's own) and no -ffast-math (NaN and inf handling
 * must stay exact). */
#ifndef FB_DISPATCH_H
#define FB_DISPATCH_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include "codes.h"

/* Arguments of one pass (shared by every chunk). Arrays are flat, in C order of (rows, ncols). */
typedef struct {
    const void *y; int y_kind;  /* labels: FB_Y_* */
    double keep, shift;         /* label smoothing: y·keep + shift (keep = 1, shift = 0: none) */
    int focal;                  /* focal loss: α_t·(1-p_t)^γ·CE (fb_focal) */
    double gamma, alpha;        /* γ >= 0; α in [0, 1], or < 0 for no α factor */
    int gamma_n;                /* γ when it is an integer <= 7 (by squaring), else -1 */
    const void *p;              /* predictions: float or double by the function called */
    const void *w; int w_kind;  /* per-element weights: FB_W_* */
    const double *pos_w;        /* pos_weight (pw_rs, pw_cs below), or NULL (1 for all) */
    const uint8_t *mask;        /* 1 = counted; NULL: every element */
    int logits;
    int nan_mode;
    /* p is clipped to [clip_lo, clip_hi]: eps and 1 - eps rounded to p's type (values of it) */
    double clip_lo, clip_hi;
    /* losses of a clipped p: q = clip_lo (lo) or clip_hi (hi), for y = 1 (pos) and y = 0 (neg) */
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
    double *sums;               /* (chunks, n_slots, 2): Σ w·loss, Σ w; (1, n_slots, 2) by rows;
                                 * 7 statistics instead of 2 for fb_score_chunk */
    int p_half;                 /* p holds the bits of float16 (fb_chunk_f32 decodes them) */
    int64_t pw_rs, pw_cs;       /* pos_w[i·pw_rs + j·pw_cs] of element (i, j) (fb_load_pos_weights) */
    int strided;                /* y, p, w, mask: flat element k at [k·stride] (fb_gather_block) */
    int64_t y_stride, p_stride, w_stride, m_stride;
} fb_args;

/* ---- the variants ------------------------------------------------------------------------ */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(FB_SINGLE_VARIANT)
#define FB_MULTI_VARIANT 1

#define FB_V(name) name##_v4
#define FB_TARGET __attribute__((target("arch=x86-64-v4")))
#define FB_F64_LANES 8 /* float64 values per vector register */
#define FB_EXACT_FMA 1 /* FB_FMA rounds once (the float64 product path needs it) */
#define FB_FMAF(a, b, c) __builtin_fmaf(a, b, c)
#define FB_FMA(a, b, c) __builtin_fma(a, b, c)
#include "variant.h"

#define FB_V(name) name##_v3
#define FB_TARGET __attribute__((target("arch=x86-64-v3")))
#define FB_F64_LANES 4
#define FB_EXACT_FMA 1
#define FB_FMAF(a, b, c) __builtin_fmaf(a, b, c)
#define FB_FMA(a, b, c) __builtin_fma(a, b, c)
#include "variant.h"

#elif defined(__aarch64__) && !defined(FB_SINGLE_VARIANT)
/* aarch64: FMA (fmadd, and fmla on NEON vectors) is part of every ARMv8-A CPU, so one variant with
 * exact fused multiply-adds at the same places as v4/v3 gives their bits; the compiler vectorises
 * it for NEON (128-bit: 2 float64 lanes) without a target attribute. */
#define FB_AARCH64_VARIANT 1

#define FB_V(name) name##_a64
#define FB_TARGET
#define FB_F64_LANES 2
#define FB_EXACT_FMA 1
#define FB_FMAF(a, b, c) __builtin_fmaf(a, b, c)
#define FB_FMA(a, b, c) __builtin_fma(a, b, c)
#include "variant.h"
#endif

#define FB_V(name) name##_base
#define FB_TARGET
#define FB_F64_LANES 2
#define FB_EXACT_FMA 0
#define FB_FMAF(a, b, c) ((a) * (b) + (c))
#define FB_FMA(a, b, c) ((a) * (b) + (c))
#include "variant.h"

typedef int (*fb_chunk_fn)(const fb_args *, int64_t, int64_t, int64_t);
static fb_chunk_fn fb_chunk_f32_impl = fb_chunk_f32_base;
static fb_chunk_fn fb_chunk_f64_impl = fb_chunk_f64_base;
static fb_chunk_fn fb_score_f32_impl = fb_score_chunk_f32_base;
static fb_chunk_fn fb_score_f64_impl = fb_score_chunk_f64_base;
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
        fb_score_f32_impl = fb_score_chunk_f32_v4; fb_score_f64_impl = fb_score_chunk_f64_v4;
        fb_variant_name = "x86-64-v4 (AVX-512, FMA)";
        return fb_variant_name;
    }
    if (v3) {
        fb_chunk_f32_impl = fb_chunk_f32_v3; fb_chunk_f64_impl = fb_chunk_f64_v3;
        fb_score_f32_impl = fb_score_chunk_f32_v3; fb_score_f64_impl = fb_score_chunk_f64_v3;
        fb_variant_name = "x86-64-v3 (AVX2, FMA)";
        return fb_variant_name;
    }
#elif defined(FB_AARCH64_VARIANT)
    if (forced == NULL || strcmp(forced, "base") != 0) {
        fb_chunk_f32_impl = fb_chunk_f32_a64; fb_chunk_f64_impl = fb_chunk_f64_a64;
        fb_score_f32_impl = fb_score_chunk_f32_a64; fb_score_f64_impl = fb_score_chunk_f64_a64;
        fb_variant_name = "aarch64 (NEON, FMA)";
        return fb_variant_name;
    }
#else
    (void)forced;
#endif
    fb_chunk_f32_impl = fb_chunk_f32_base; fb_chunk_f64_impl = fb_chunk_f64_base;
        fb_score_f32_impl = fb_score_chunk_f32_base; fb_score_f64_impl = fb_score_chunk_f64_base;
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

/* Elements [start, stop) of an element pass (elements.h) on the variant fb_select picked;
 * returns the error bits. */
static inline int fb_element_chunk(const fb_elements *e, int64_t start, int64_t stop, int f64)
{
#ifdef FB_MULTI_VARIANT
    if (fb_chunk_f32_impl == fb_chunk_f32_v4)
        return f64 ? fb_element_chunk_f64_v4(e, start, stop) : fb_element_chunk_f32_v4(e, start, stop);
    if (fb_chunk_f32_impl == fb_chunk_f32_v3)
        return f64 ? fb_element_chunk_f64_v3(e, start, stop) : fb_element_chunk_f32_v3(e, start, stop);
#elif defined(FB_AARCH64_VARIANT)
    if (fb_chunk_f32_impl == fb_chunk_f32_a64)
        return f64 ? fb_element_chunk_f64_a64(e, start, stop) : fb_element_chunk_f32_a64(e, start, stop);
#endif
    return f64 ? fb_element_chunk_f64_base(e, start, stop) : fb_element_chunk_f32_base(e, start, stop);
}

/* The same for the scoring pass (fb_score_chunk: seven statistics per slot). */
static inline int fb_score_f32(const fb_args *a, int64_t chunk, int64_t start, int64_t stop)
{
    return fb_score_f32_impl(a, chunk, start, stop);
}

static inline int fb_score_f64(const fb_args *a, int64_t chunk, int64_t start, int64_t stop)
{
    return fb_score_f64_impl(a, chunk, start, stop);
}

#endif
