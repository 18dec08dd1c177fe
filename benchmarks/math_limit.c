/* How fast can the fast path's logarithm go on this CPU? Four loops over the same float32
 * predictions and labels, chunk by chunk as fastbce cuts them, with OpenMP threads:
 *   read only              - sum the inputs: the memory ceiling;
 *   log + lane sum only    - the hard-label loss (one logarithm) and the float64 lane sums, with no
 *                            checks, NaN handling or clipping branches: the arithmetic bound of a
 *                            logarithm per element;
 *   chunk kernel, log      - fastbce's own chunk kernel (kernels/fastbce_chunk.h), AVX-512 variant,
 *                            with a logarithm per element (eps below the product path's 2^-28);
 *   chunk kernel, product  - the same kernel on its product path (eps = 1e-7): -log of a product
 *                            of the probabilities, one logarithm per lane and chunk.
 * Build and run (N elements, T threads):
 *   gcc -O3 -fopenmp -ffp-contract=off -fno-trapping-math -Ikernels benchmarks/math_limit.c -o /tmp/math_limit
 *   OMP_NUM_THREADS=T /tmp/math_limit N
 * Needs a CPU with AVX-512 (x86-64-v4). */
#include "fastbce_simd.h"
#include <stdio.h>
#include <time.h>
#include <omp.h>
static float *P, *Y;
static double sums[2*4096];
double now(){struct timespec t; clock_gettime(CLOCK_MONOTONIC,&t); return t.tv_sec+1e-9*t.tv_nsec;}
/* the loss math alone: -log of the hard-label probability, lane sums, no checks */
__attribute__((target("arch=x86-64-v4"), noinline))
double math_only(const float *p, const float *y, int64_t n) {
    double acc[16] __attribute__((aligned(64))) = {0};
    for (int64_t g = 0; g + 16 <= n; g += 16) {
#pragma omp simd
        for (int k = 0; k < 16; k++) acc[k] += (double)fb_nll_hard_f32_v4(p[g+k], y[g+k], 1e-7f, 1-1e-7f, 16.1f, 1e-7f, 1e-7f, 16.1f);
    }
    return fb_lane_sum(acc);
}
__attribute__((noinline)) double read_only(const float *p, const float *y, int64_t n) {
    double s = 0;
#pragma omp simd reduction(+:s)
    for (int64_t i = 0; i < n; i++) s += (double)p[i] + (double)y[i];
    return s;
}
int main(int argc, char **argv){
  int64_t n = atoll(argv[1]); int64_t chunk = 32768, nch = n / chunk;
  P = aligned_alloc(64, n*4); Y = aligned_alloc(64, n*4);
  for (int64_t i=0;i<n;i++){P[i]=(float)((i*2654435761u)%1000003)/1000004.0f; Y[i]=(i%3)==0;}
  fb_args a = {0};
  a.y=Y; a.y_kind=FB_Y_F32; a.p=P; a.clip_lo=1e-7; a.clip_hi=1-1e-7; a.lo_pos=16.1; a.lo_neg=1e-7; a.hi_pos=1e-7; a.hi_neg=16.1;
  a.grad_scale=1; a.want_loss=1; a.mode=FB_MODE_ALL; a.ncols=1; a.n_slots=1;
  double *s = calloc(nch*2, 8); a.sums = s;
  fb_args b = a; b.eps = 1e-7; b.q_hi = 1 - 1e-7; /* a.eps = 0: no product path */
  const char *names[] = {"read only", "log + lane sum only", "chunk kernel, log", "chunk kernel, product"};
  for (int which = 0; which < 4; which++) {
    double best = 1e9, sink = 0;
    for (int r = 0; r < 7; r++) {
      double t = now();
      #pragma omp parallel for schedule(static) reduction(+:sink)
      for (int64_t c = 0; c < nch; c++) {
        if (which == 0) sink += read_only(P + c*chunk, Y + c*chunk, chunk);
        else if (which == 1) sink += math_only(P + c*chunk, Y + c*chunk, chunk);
        else if (which == 2) { fb_chunk_f32_v4(&a, c, c*chunk, (c+1)*chunk); sink += s[2*c]; }
        else { fb_chunk_f32_v4(&b, c, c*chunk, (c+1)*chunk); sink += s[2*c]; }
      }
      t = now() - t; if (t < best) best = t;
    }
    printf("%-26s %6.0f M elem/s (%.10g)\n", names[which], nch*chunk/best/1e6, sink);
  }
}
