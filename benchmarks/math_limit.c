/* How fast can the fast path's element math go on this CPU? Loops over the same float32
 * predictions (or logits) and labels, chunk by chunk as fastbce cuts them, with OpenMP threads:
 *   read only              - sum the inputs: the memory ceiling;
 *   log + lane sum only    - the hard-label loss (one logarithm) and the float64 lane sums, with no
 *                            checks, NaN handling or clipping branches: the arithmetic bound of a
 *                            logarithm per element;
 *   two logs + lane sum    - the same for the soft-label loss (two logarithms per element);
 *   exp + lane sum only    - one exponential exp(-|x|) per element and the lane sums: the
 *                            arithmetic bound of the loss from logits (one exponential per element
 *                            is left after its product path has taken out the logarithm);
 *   exp + lane products    - the loss from logits as its product path computes it, with no checks:
 *                            exp(-|x|) and the rest of the loss in a float32 loop over a block,
 *                            then the factors 1 + e into 64 float64 lane products and the rest
 *                            into 16 float64 lane sums (one loop mixing the float32 and float64
 *                            widths runs at half the speed with gcc 12);
 *   chunk kernel, log      - fastbce's own chunk kernel (kernels/c/chunk.h), with a
 *                            logarithm per element (clip_lo below the product path's 2^-28);
 *   chunk kernel, product  - the same kernel on its product path (clip_lo = 1e-7): -log of a product
 *                            of the probabilities, one logarithm per lane and chunk;
 *   chunk kernel, logits   - the same kernel from logits (product path);
 *   group scatter only     - the product path's scatter by group (fb_scatter_products) alone:
 *                            int32 ids of 1,000 groups streamed, the factors of a block fixed;
 *   chunk kernel, by group - the same kernel by group of 1-D input (1,000 groups, product path,
 *                            chunks of 256,000 elements as fastbce cuts them by group).
 * The variant is the one fastbce picks for this CPU (AVX-512 or AVX2; fb_select).
 * Build and run (N elements, T threads):
 *   gcc -O3 -fopenmp -ffp-contract=off -fno-trapping-math -Ikernels benchmarks/math_limit.c -o /tmp/math_limit -lm
 *   OMP_NUM_THREADS=T /tmp/math_limit N */
#include "c/dispatch.h"
#include <stdio.h>
#include <time.h>
#include <omp.h>
static float *P, *X, *Y;
static int32_t *G;
double now(){struct timespec t; clock_gettime(CLOCK_MONOTONIC,&t); return t.tv_sec+1e-9*t.tv_nsec;}

/* the element math alone, lane sums, no checks: one function per variant V */
#define MATH_ONLY(V, TARGET)                                                                     \
__attribute__((target(TARGET), noinline))                                                        \
static double hard_##V(const float *p, const float *y, int64_t n) {                              \
    double acc[16] __attribute__((aligned(64))) = {0};                                           \
    for (int64_t g = 0; g + 16 <= n; g += 16) {                                                  \
        _Pragma("omp simd")                                                                      \
        for (int k = 0; k < 16; k++)                                                             \
            acc[k] += (double)fb_nll_hard_f32_##V(p[g+k], y[g+k], 1e-7f, 1-1e-7f, 16.1f, 1e-7f, 1e-7f, 16.1f); \
    }                                                                                            \
    return fb_lane_sum_##V(acc);                                                                 \
}                                                                                                \
__attribute__((target(TARGET), noinline))                                                        \
static double soft_##V(const float *p, const float *y, int64_t n) {                              \
    double acc[16] __attribute__((aligned(64))) = {0};                                           \
    for (int64_t g = 0; g + 16 <= n; g += 16) {                                                  \
        _Pragma("omp simd")                                                                      \
        for (int k = 0; k < 16; k++)                                                             \
            acc[k] += (double)fb_nll_soft_f32_##V(p[g+k], y[g+k], 1.0f - y[g+k], 1e-7f, 1-1e-7f, 16.1f, 1e-7f, 1e-7f, 16.1f); \
    }                                                                                            \
    return fb_lane_sum_##V(acc);                                                                 \
}                                                                                                \
__attribute__((target(TARGET), noinline))                                                        \
static double exp_##V(const float *x, const float *y, int64_t n) {                               \
    double acc[16] __attribute__((aligned(64))) = {0};                                           \
    (void)y;                                                                                     \
    for (int64_t g = 0; g + 16 <= n; g += 16) {                                                  \
        _Pragma("omp simd")                                                                      \
        for (int k = 0; k < 16; k++) acc[k] += (double)fb_exp_abs_f32_##V(x[g+k]);               \
    }                                                                                            \
    return fb_lane_sum_##V(acc);                                                                 \
}                                                                                                \
__attribute__((target(TARGET), noinline))                                                        \
static double logit_product_##V(const float *x, const float *y, int64_t n) {                     \
    double acc[16] __attribute__((aligned(64))) = {0}, m[64] __attribute__((aligned(64)));       \
    float eb[512] __attribute__((aligned(64))), lb[512] __attribute__((aligned(64)));            \
    int64_t e[64] = {0};                                                                         \
    for (int k = 0; k < 64; k++) m[k] = 1.0;                                                     \
    for (int64_t b = 0; b + 512 <= n; b += 512) {                                                \
        _Pragma("omp simd")                                                                      \
        for (int k = 0; k < 512; k++) {                                                          \
            float v = x[b+k], t = fb_exp_abs_f32_##V(v), s = y[b+k] != 0.0f ? -v : v;            \
            float lin = s > 0.0f ? s : 0.0f;                                                     \
            eb[k] = t < 0x1p-28f ? 0.0f : t;                                                     \
            lb[k] = t < 0x1p-28f ? lin + t : lin;                                                \
        }                                                                                        \
        for (int g = 0; g < 512; g += 64) {                                                      \
            _Pragma("omp simd")                                                                  \
            for (int k = 0; k < 64; k++) m[k] *= 1.0 + (double)eb[g+k];                          \
        }                                                                                        \
        for (int g = 0; g < 512; g += 16) {                                                      \
            _Pragma("omp simd")                                                                  \
            for (int k = 0; k < 16; k++) acc[k] += (double)lb[g+k];                              \
        }                                                                                        \
        fb_split_##V(m, e, 64);                                                                  \
    }                                                                                            \
    return fb_lane_sum_##V(acc) + fb_lanes_log_product_##V(m, e);                                \
}
MATH_ONLY(v4, "arch=x86-64-v4")
MATH_ONLY(v3, "arch=x86-64-v3")

/* the read alone, in the same lanes (a single float64 sum would be bound by its add latency) */
__attribute__((noinline)) static double read_only(const float *p, const float *y, int64_t n) {
    double acc[16] __attribute__((aligned(64))) = {0};
    for (int64_t g = 0; g + 16 <= n; g += 16) {
#pragma omp simd
        for (int k = 0; k < 16; k++) acc[k] += (double)p[g+k] + (double)y[g+k];
    }
    return fb_lane_sum_base(acc);
}

typedef double (*loop_fn)(const float *, const float *, int64_t);

/* the scatter of the product path by group alone: fixed factors (a block in L1), the ids streamed */
static double scatter_only(const fb_args *g, int v4, int64_t start, int64_t stop) {
    double q[FB_BLOCK];
    float l[FB_BLOCK] = {0};
    double *grp = calloc(3 * (size_t)g->n_slots, sizeof(double));
    int64_t *ge = calloc((size_t)g->n_slots, sizeof(int64_t));
    for (int k = 0; k < FB_BLOCK; k++) q[k] = 0.5 + k / 1024.0;
    for (int64_t j = 0; j < g->n_slots; j++) grp[3 * j] = 1.0;
    for (int64_t b = start; b < stop; b += FB_BLOCK)
        (v4 ? fb_scatter_products_f32_v4 : fb_scatter_products_f32_v3)(g, grp, ge, b, FB_BLOCK, q, l);
    double count = grp[2];
    free(grp);
    free(ge);
    return count;
}

int main(int argc, char **argv){
  int64_t n = atoll(argv[1]); int64_t chunk = 32768, nch = n / chunk;
  const char *variant = fb_select(NULL);
  int v4 = fb_chunk_f32_impl == fb_chunk_f32_v4;
  if (!v4 && fb_chunk_f32_impl != fb_chunk_f32_v3) { fprintf(stderr, "needs AVX2 or AVX-512\n"); return 1; }
  printf("variant: %s, %d threads, %lld elements\n", variant, omp_get_max_threads(), (long long)n);
  P = aligned_alloc(64, n*4); X = aligned_alloc(64, n*4); Y = aligned_alloc(64, n*4); G = aligned_alloc(64, n*4);
  for (int64_t i=0;i<n;i++){
    P[i]=(float)((i*2654435761u)%1000003)/1000004.0f; Y[i]=(i%3)==0;
    X[i]=logf(P[i] + 1e-6f) - log1pf(-P[i] + 1e-6f);
    G[i]=(int32_t)(((uint64_t)i*0x9E3779B97F4A7C15ull >> 40) % 1000); /* 1,000 groups, scattered */
  }
  int64_t gchunk = 256000, nchg = n / gchunk; /* fastbce's chunks by group: 256 elements per group */
  fb_args a = {0};
  a.y=Y; a.y_kind=FB_Y_F32; a.p=P; a.clip_lo=1e-9; a.clip_hi=1-1e-7; a.lo_pos=16.1; a.lo_neg=1e-7; a.hi_pos=1e-7; a.hi_neg=16.1;
  a.keep=1; a.grad_scale=1; a.want_loss=1; a.mode=FB_MODE_ALL; a.ncols=1; a.n_slots=1; a.alpha=-1;
  double *s = calloc(nch*2, 8); a.sums = s;
  fb_args b = a; b.clip_lo = 1e-7; /* a.clip_lo < 2^-28: no product path */
  fb_args c = b; c.p = X; c.logits = 1;
  fb_args d = b; d.mode = FB_MODE_GROUPS; d.groups = G; d.g_kind = FB_G_I32; d.n_slots = 1000;
  double *gs = calloc(nchg * 2 * 1000, 8); d.sums = gs;
  loop_fn math[4] = {v4 ? hard_v4 : hard_v3, v4 ? soft_v4 : soft_v3, v4 ? exp_v4 : exp_v3,
                     v4 ? logit_product_v4 : logit_product_v3};
  const char *names[] = {"read only", "log + lane sum only", "two logs + lane sum", "exp + lane sum only",
                         "exp + lane products", "chunk kernel, log", "chunk kernel, product",
                         "chunk kernel, logits", "group scatter only", "chunk kernel, by group"};
  double read = 0;
  for (int which = 0; which < 10; which++) {
    int64_t m = which >= 8 ? nchg : nch, len = which >= 8 ? gchunk : chunk;
    double best = 1e9, sink = 0;
    for (int r = 0; r < 7; r++) {
      double t = now();
      #pragma omp parallel for schedule(static) reduction(+:sink)
      for (int64_t k = 0; k < m; k++) {
        const float *in = which == 3 || which == 4 ? X : P;
        if (which == 0) sink += read_only(P + k*chunk, Y + k*chunk, chunk);
        else if (which <= 4) sink += math[which - 1](in + k*chunk, Y + k*chunk, chunk);
        else if (which == 8) sink += scatter_only(&d, v4, k*len, (k+1)*len);
        else if (which == 9) {
          memset(gs + k*2000, 0, 2000 * 8);
          fb_chunk_f32(&d, k, k*len, (k+1)*len); sink += gs[2000*k];
        }
        else { fb_chunk_f32(which == 5 ? &a : which == 6 ? &b : &c, k, k*chunk, (k+1)*chunk); sink += s[2*k]; }
      }
      t = now() - t; if (t < best) best = t;
    }
    double rate = m*len/best/1e6;
    if (which == 0) read = rate;
    printf("%-24s %6.0f M elem/s  %3.0f%% of read  (%.10g)\n", names[which], rate, 100 * rate / read, sink);
  }
}
