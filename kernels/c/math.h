/* C fast path, math: the twin of kernels/numba/math.py (same functions, same order, same
 * operations). Logarithm and exponential as arithmetic on the float's bits (exponent extraction,
 * polynomial on the mantissa) so that gcc vectorises the loops that call them; z^γ of focal loss;
 * the lane products of the product path (split, log-product) and the fixed-order lane sum.
 * Included by variant.h once per instruction-set variant (FB_V names the functions, FB_FMAF and
 * FB_FMA are its multiply-adds); the bit casts and fb_i64_to_f64 are shared by all variants.
 *
 * Accuracy: the losses and gradients built from these functions are within 2 ulp of the correctly
 * rounded value of their formula (float32 and float64; tests/test_fastpath.py measures it on 10^5
 * to 10^6 arguments per form, including the extremes); the mean gradient from float32 logits
 * within 3 (fb_grad_logit_hard: the scale 1/n rounded to float32). */

#ifndef FB_MATH_SHARED
#define FB_MATH_SHARED
/* Bit casts (C only: Numba's are the intrinsics of kernels/numba/llvm.py). */
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
#endif

/* float32 log(hi + lo), hi a positive normal float32 and |lo| <= ulp(hi) (lo = 0 for log(hi)).
 * hi = 2^k·m with m in [sqrt(1/2), sqrt(2)); f = (m - 1) + lo·2^-k (m - 1 is exact); log1p(f)
 * by the Cephes logf polynomial, k·ln2 added in two parts. Garbage (no trap) for hi <= 0,
 * subnormal, inf or NaN: callers replace those lanes. */
FB_INLINE float FB_V(fb_log_f32)(float hi, float lo)
{
    int32_t ix = (int32_t)((uint32_t)fb_bits_f32(hi) - 0x3f3504f3u);
    int32_t k = ix >> 23; /* arithmetic shift */
    float m = fb_from_bits_f32((int32_t)((uint32_t)(ix & 0x007fffff) + 0x3f3504f3u));
    float scale = fb_from_bits_f32((int32_t)((uint32_t)(127 - k) << 23));
    float f = FB_FMAF(lo, scale, m - 1.0f);
    float e = (float)k;
    float z = f * f;
    float y = 7.0376836292e-2f;
    y = FB_FMAF(y, f, -1.1514610310e-1f);
    y = FB_FMAF(y, f, 1.1676998740e-1f);
    y = FB_FMAF(y, f, -1.2420140846e-1f);
    y = FB_FMAF(y, f, 1.4249322787e-1f);
    y = FB_FMAF(y, f, -1.6668057665e-1f);
    y = FB_FMAF(y, f, 2.0000714765e-1f);
    y = FB_FMAF(y, f, -2.4999993993e-1f);
    y = FB_FMAF(y, f, 3.3333331174e-1f);
    y = (y * f) * z;
    y = FB_FMAF(e, -2.12194440e-4f, y);
    y = FB_FMAF(-0.5f, z, y);
    return FB_FMAF(e, 0.693359375f, f + y);
}

/* The Cephes expf polynomial P(r), exp(r) = 1 + r + r²·P(r) on the reduced argument. */
FB_INLINE float FB_V(fb_exp_poly_f32)(float r)
{
    float y = 1.9875691500e-4f;
    y = FB_FMAF(y, r, 1.3981999507e-3f);
    y = FB_FMAF(y, r, 8.3334519073e-3f);
    y = FB_FMAF(y, r, 4.1665795894e-2f);
    y = FB_FMAF(y, r, 1.6666665459e-1f);
    return FB_FMAF(y, r, 5.0000001201e-1f);
}

/* float32 exp(t) for t <= 0 (NaN in, garbage out); t < -105 gives 0 and subnormal results are
 * rounded once. Cephes expf polynomial. */
FB_INLINE float FB_V(fb_exp_neg_f32)(float t)
{
    t = t < -105.0f ? -105.0f : t;
    float v = FB_FMAF(t, 1.44269504088896341f, 12582912.0f); /* 1.5·2^23: rounds to an integer n */
    int32_t n = (int32_t)((uint32_t)fb_bits_f32(v) - 0x4b400000u);
    float nf = v - 12582912.0f;
    float r = FB_FMAF(nf, -0.693359375f, t);
    r = FB_FMAF(nf, 2.12194440e-4f, r);
    float z = r * r;
    float y = FB_V(fb_exp_poly_f32)(r);
    y = FB_FMAF(y, z, r);
    y = y + 1.0f;
    /* y·2^n as y·2^h·2^(n-h), h = n/2: both factors normal (n >= -152), the first product exact,
     * so that a subnormal result is rounded once */
    int32_t h = n >> 1;
    y = y * fb_from_bits_f32((int32_t)((uint32_t)(h + 127) << 23));
    return y * fb_from_bits_f32((int32_t)((uint32_t)(n - h + 127) << 23));
}

/* Float-float product: (ah + al)·(bh + bl) as *h + *l, the rounding of ah·bh exact (FMA). */
FB_INLINE void FB_V(fb_mul_ff)(float ah, float al, float bh, float bl, float *h, float *l)
{
    float p = ah * bh;
    *l = FB_FMAF(ah, bh, -p) + (ah * bl + al * bh);
    *h = p;
}

/* exp(t)·2^32 for t <= 0 as *hi + *lo, relative error ~2^-27 (FB_EXACT_FMA variants): fb_exp_neg_f32
 * with the reduced argument r kept as r + r_lo (TwoSum) and 1 + r + r²·P(r) summed in float-float.
 * Scaled by 2^32 so that p_t = e/(1 + e) keeps its digits where e is subnormal; t < -130 gives 0. */
FB_INLINE void FB_V(fb_exp_neg_ff_f32)(float t, float *hi, float *lo)
{
    t = t < -130.0f ? -130.0f : t;
    float v = FB_FMAF(t, 1.44269504088896341f, 12582912.0f);
    int32_t n = (int32_t)((uint32_t)fb_bits_f32(v) - 0x4b400000u);
    float nf = v - 12582912.0f;
    float r1 = FB_FMAF(nf, -0.693359375f, t); /* exact */
    float p = nf * 2.12194440e-4f;
    float p_lo = FB_FMAF(nf, 2.12194440e-4f, -p);
    float r = r1 + p;
    float rb = r - r1;
    float r_lo = ((r1 - (r - rb)) + (p - rb)) + p_lo;
    float z = r * r;
    float y = FB_V(fb_exp_poly_f32)(r);
    y = y * z;
    float s_hi = 1.0f + r;
    float s_lo = ((1.0f - s_hi) + r) + (FB_FMAF(r_lo, r, r_lo) + y);
    float e_hi = s_hi + s_lo;
    float e_lo = s_lo - (e_hi - s_hi);
    int32_t h = n >> 1; /* 2^(n+32) as 2^h·2^(n-h+32), both normal for n >= -188 */
    float f1 = fb_from_bits_f32((int32_t)((uint32_t)(h + 127) << 23));
    float f2 = fb_from_bits_f32((int32_t)((uint32_t)(n - h + 159) << 23));
    *hi = (e_hi * f1) * f2;
    *lo = (e_lo * f1) * f2;
}

/* float64 log(hi + lo), same contract as fb_log_f32: fdlibm's log kernel. k = floor((bits -
 * OFF) / 2^52) with logical shifts only (AVX2 has no 64-bit arithmetic shift), k as a double by
 * fb_i64_to_f64. */
FB_INLINE double FB_V(fb_log_f64)(double hi, double lo)
{
    uint64_t ix = (uint64_t)fb_bits_f64(hi) - 0x3fe6a09e667f3bcdULL + (1024ULL << 52);
    int64_t k = (int64_t)(ix >> 52) - 1024;
    double m = fb_from_bits_f64((int64_t)((ix & 0x000fffffffffffffULL) + 0x3fe6a09e667f3bcdULL));
    double scale = fb_from_bits_f64((int64_t)((uint64_t)(1023 - k) << 52));
    double f = FB_FMA(lo, scale, m - 1.0);
    double dk = fb_i64_to_f64(k);
    double s = f / (2.0 + f);
    double z = s * s;
    double w = z * z;
    double t1 = w * FB_FMA(w, FB_FMA(w, 1.531383769920937332e-01, 2.222219843214978396e-01), 3.999999999940941908e-01);
    double t2 = z * FB_FMA(w, FB_FMA(w, FB_FMA(w, 1.479819860511658591e-01, 1.818357216161805012e-01),
                                     2.857142874366239149e-01), 6.666666666666735130e-01);
    double R = t2 + t1;
    double hfsq = 0.5 * f * f;
    return dk * 6.93147180369123816490e-01 - ((hfsq - FB_FMA(s, hfsq + R, dk * 1.90821492927058770002e-10)) - f);
}

/* float64 exp(t) for t <= 0, same contract as fb_exp_neg_f32: Taylor polynomial of degree 13 on
 * |r| <= ln2/2 (truncation error 4e-18). */
FB_INLINE double FB_V(fb_exp_neg_f64)(double t)
{
    t = t < -746.0 ? -746.0 : t;
    double v = FB_FMA(t, 1.44269504088896338700e+00, 6755399441055744.0);
    int64_t n = (int64_t)((uint64_t)fb_bits_f64(v) - 0x4338000000000000ULL);
    double nf = v - 6755399441055744.0;
    double r = FB_FMA(nf, -6.93147180369123816490e-01, t);
    r = FB_FMA(nf, -1.90821492927058770002e-10, r);
    double y = 1.6059043836821613e-10; /* 1/13! */
    y = FB_FMA(y, r, 2.08767569878681e-09);
    y = FB_FMA(y, r, 2.505210838544172e-08);
    y = FB_FMA(y, r, 2.755731922398589e-07);
    y = FB_FMA(y, r, 2.7557319223985893e-06);
    y = FB_FMA(y, r, 2.48015873015873e-05);
    y = FB_FMA(y, r, 0.0001984126984126984);
    y = FB_FMA(y, r, 0.001388888888888889);
    y = FB_FMA(y, r, 0.008333333333333333);
    y = FB_FMA(y, r, 0.041666666666666664);
    y = FB_FMA(y, r, 0.16666666666666666);
    y = FB_FMA(y, r, 0.5);
    y = FB_FMA(y, r, 1.0);
    y = FB_FMA(y, r, 1.0);
    int64_t bias = n < -1021 ? 512 : 0;
    y = y * fb_from_bits_f64((int64_t)((uint64_t)(n + bias + 1023) << 52));
    return y * (bias ? 7.458340731200207e-155 /* 2^-512 */ : 1.0);
}

/* z^γ for z in [0, 1] and γ >= 0 (the modulation of focal loss), in float64. by_squaring
 * (a constant at each call site): γ is the integer n <= 7, z^n by squaring (z^2 rounded once, z^7
 * within 2 ulp); else exp(γ·log z), relative error <= ~γ·|log z|·2^-53 (<= 745·2^-53 when the
 * result is not 0: far below a float32 ulp), a subnormal z scaled by 2^54 before its logarithm,
 * 0^γ = 0 (γ > 0). */
FB_INLINE double FB_V(fb_pow_unit)(double z, double gamma, int n, int by_squaring)
{
    if (by_squaring) {
        double z2 = z * z, r = n & 1 ? z : 1.0;
        r = n & 2 ? r * z2 : r;
        return n & 4 ? r * (z2 * z2) : r;
    }
    int sub = z < 0x1p-1022;
    double lz = FB_V(fb_log_f64)(sub ? z * 0x1p54 : z, 0.0) - (sub ? 54 * 6.93147180559945286e-01 : 0.0);
    double r = FB_V(fb_exp_neg_f64)(gamma * lz);
    return z == 0.0 ? 0.0 : r;
}

/* log of a product kept as m·2^e (fb_split; m > 0 or NaN): e·ln2 + log m, ln2 in two parts; NaN
 * for m NaN. */
FB_INLINE double FB_V(fb_log_product)(double m, int64_t e)
{
    double de = fb_i64_to_f64(e);
    double v = de * 6.93147180369123816490e-01 + (de * 1.90821492927058770002e-10
                                                  + FB_V(fb_log_f64)(m, 0.0));
    return m != m ? m : v;
}

/* Pairwise sum of 16 lanes, in a fixed order. fb_lane_sum and fb_split are compiled per variant:
 * as plain static functions they would be SSE code called from AVX code, and each call would pay
 * an AVX-SSE transition. */
FB_INLINE double FB_V(fb_lane_sum)(const double *a)
{
    const double s0 = (a[0] + a[1]) + (a[2] + a[3]), s1 = (a[4] + a[5]) + (a[6] + a[7]);
    const double s2 = (a[8] + a[9]) + (a[10] + a[11]), s3 = (a[12] + a[13]) + (a[14] + a[15]);
    return (s0 + s1) + (s2 + s3);
}

/* Product path: lane products of probabilities, each kept as m·2^e with m in [sqrt(1/2),
 * sqrt(2)) (so that e·ln2 + log m does not cancel) and the exponent e counted apart. fb_split moves
 * the exponent of each m > 0 into e (NaN stays NaN); logical shifts only, as in fb_log_f64. */
FB_INLINE void FB_V(fb_split)(double *m, int64_t *e, int64_t n)
{
#pragma omp simd
    for (int64_t k = 0; k < n; k++) {
        uint64_t bits = (uint64_t)fb_bits_f64(m[k]);
        int64_t x = (int64_t)((bits - 0x3fe6a09e667f3bcdULL + (1024ULL << 52)) >> 52) - 1024;
        int nan = m[k] != m[k];
        e[k] += nan ? 0 : x;
        m[k] = nan ? m[k] : fb_from_bits_f64((int64_t)(bits - ((uint64_t)x << 52)));
    }
}

/* The same for the FB_PROD_LANES lane products, summed: each 16 in fb_lane_sum's order, then the
 * four partial sums pairwise. The logarithms are vectorised: a row of the product path (per row
 * or group of rows) takes them all at its end. */
FB_INLINE double FB_V(fb_lanes_log_product)(const double *m, const int64_t *e)
{
    double v[FB_PROD_LANES], s[FB_PROD_LANES / 16];
#pragma omp simd
    for (int k = 0; k < FB_PROD_LANES; k++) v[k] = FB_V(fb_log_product)(m[k], e[k]);
    for (int i = 0; i < FB_PROD_LANES / 16; i++) s[i] = FB_V(fb_lane_sum)(v + 16 * i);
    return (s[0] + s[1]) + (s[2] + s[3]);
}
