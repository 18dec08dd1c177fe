"""Numba fast path, math: the twin of kernels/c/math.h (same functions, order and operations).

Logarithm and exponential as arithmetic on the float's bits (exponent extraction, polynomial on
the mantissa), which LLVM vectorises (Numba's np.log is a scalar libm call); z^γ of focal loss;
the lane products of the product path (split, log-product) and the fixed-order lane sum. Fused
multiply-adds are explicit (llvm.fma) where the C code has them, and nowhere else.
"""

import numpy as np
from numba import njit, types
from numba.extending import overload

from .. import PROD_LANES
from .llvm import (
    INLINE,
    JIT,
    bits_f32,
    bits_f64,
    fma,
    from_bits_f32,
    from_bits_f64,
    prefer_wide_vectors,
)

F32 = np.float32


@njit(**INLINE)
def i64_to_f64(k):
    """k as a float64 for |k| < 2^51 by the 1.5·2^52 trick (vectorises without a
    64-bit integer conversion instruction)."""
    return from_bits_f64(np.int64(k + 0x4338000000000000)) - 6755399441055744.0


@njit(**INLINE)
def log_f32(hi, lo):
    """float32 log(hi + lo) for a positive normal hi and |lo| <= ulp(hi) (lo = 0 for log(hi)): the
    Cephes logf polynomial on the mantissa in [sqrt(1/2), sqrt(2)); garbage for other hi."""
    ix = np.int32(bits_f32(hi) - np.int32(0x3f3504f3))
    k = np.int32(ix >> 23)
    m = from_bits_f32(np.int32((ix & 0x007fffff) + 0x3f3504f3))
    scale = from_bits_f32(np.int32((127 - k) << 23))
    f = fma(lo, scale, m - F32(1.0))
    e = F32(k)
    z = f * f
    y = F32(7.0376836292e-2)
    y = fma(y, f, F32(-1.1514610310e-1))
    y = fma(y, f, F32(1.1676998740e-1))
    y = fma(y, f, F32(-1.2420140846e-1))
    y = fma(y, f, F32(1.4249322787e-1))
    y = fma(y, f, F32(-1.6668057665e-1))
    y = fma(y, f, F32(2.0000714765e-1))
    y = fma(y, f, F32(-2.4999993993e-1))
    y = fma(y, f, F32(3.3333331174e-1))
    y = (y * f) * z
    y = fma(e, F32(-2.12194440e-4), y)
    y = fma(F32(-0.5), z, y)
    return fma(e, F32(0.693359375), f + y)


@njit(**INLINE)
def exp_poly_f32(r):
    """The Cephes expf polynomial P(r), exp(r) = 1 + r + r²·P(r) on the reduced argument
    (fb_exp_poly_f32)."""
    y = F32(1.9875691500e-4)
    y = fma(y, r, F32(1.3981999507e-3))
    y = fma(y, r, F32(8.3334519073e-3))
    y = fma(y, r, F32(4.1665795894e-2))
    y = fma(y, r, F32(1.6666665459e-1))
    return fma(y, r, F32(5.0000001201e-1))


@njit(**INLINE)
def exp_neg_f32(t):
    """float32 exp(t) for t <= 0 (NaN in, garbage out): the Cephes expf polynomial; a subnormal
    result is rounded once."""
    t = F32(-105.0) if t < F32(-105.0) else t
    v = fma(t, F32(1.44269504088896341), F32(12582912.0))
    n = np.int32(bits_f32(v) - np.int32(0x4b400000))
    nf = v - F32(12582912.0)
    r = fma(nf, F32(-0.693359375), t)
    r = fma(nf, F32(2.12194440e-4), r)
    z = r * r
    y = exp_poly_f32(r)
    y = fma(y, z, r)
    y = y + F32(1.0)
    h = np.int32(n >> 1)  # y·2^h·2^(n-h): both factors normal, one rounding
    y = y * from_bits_f32(np.int32((h + 127) << 23))
    return y * from_bits_f32(np.int32((n - h + 127) << 23))


@njit(**INLINE)
def mul_ff(ah, al, bh, bl):
    """Float-float product (ah + al)·(bh + bl) as (h, l), the rounding of ah·bh exact (FMA)."""
    p = ah * bh
    return p, fma(ah, bh, -p) + (ah * bl + al * bh)


@njit(**INLINE)
def exp_neg_ff_f32(t):
    """exp(t)·2^32 for t <= 0 as (hi, lo), relative error ~2^-27: exp_neg_f32 with the reduced
    argument in two parts (TwoSum) and 1 + r + r²·P(r) in float-float; t < -130 gives 0."""
    t = F32(-130.0) if t < F32(-130.0) else t
    v = fma(t, F32(1.44269504088896341), F32(12582912.0))
    n = np.int32(bits_f32(v) - np.int32(0x4b400000))
    nf = v - F32(12582912.0)
    r1 = fma(nf, F32(-0.693359375), t)  # exact
    p = nf * F32(2.12194440e-4)
    p_lo = fma(nf, F32(2.12194440e-4), -p)
    r = r1 + p
    rb = r - r1
    r_lo = ((r1 - (r - rb)) + (p - rb)) + p_lo
    z = r * r
    y = exp_poly_f32(r)
    y = y * z
    s_hi = F32(1.0) + r
    s_lo = ((F32(1.0) - s_hi) + r) + (fma(r_lo, r, r_lo) + y)
    e_hi = s_hi + s_lo
    e_lo = s_lo - (e_hi - s_hi)
    h = np.int32(n >> 1)  # 2^(n+32) as 2^h·2^(n-h+32), both normal for n >= -188
    f1 = from_bits_f32(np.int32((h + 127) << 23))
    f2 = from_bits_f32(np.int32((n - h + 159) << 23))
    return (e_hi * f1) * f2, (e_lo * f1) * f2


@njit(**INLINE)
def log_f64(hi, lo):
    """float64 log(hi + lo), as log_f32: fdlibm's log kernel, with logical shifts only (AVX2 has
    no 64-bit arithmetic shift)."""
    ix = np.uint64(bits_f64(hi)) - np.uint64(0x3fe6a09e667f3bcd) + np.uint64(1024 << 52)
    k = np.int64(ix >> np.uint64(52)) - 1024
    m = from_bits_f64(np.int64((ix & np.uint64(0x000fffffffffffff)) + np.uint64(0x3fe6a09e667f3bcd)))
    scale = from_bits_f64(np.int64((1023 - k) << 52))
    f = fma(lo, scale, m - 1.0)
    dk = i64_to_f64(k)
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * fma(w, fma(w, 1.531383769920937332e-01, 2.222219843214978396e-01), 3.999999999940941908e-01)
    t2 = z * fma(w, fma(w, fma(w, 1.479819860511658591e-01, 1.818357216161805012e-01),
                          2.857142874366239149e-01), 6.666666666666735130e-01)
    R = t2 + t1
    hfsq = 0.5 * f * f
    return dk * 6.93147180369123816490e-01 - ((hfsq - fma(s, hfsq + R, dk * 1.90821492927058770002e-10)) - f)


@njit(**INLINE)
def exp_neg_f64(t):
    """float64 exp(t) for t <= 0, as exp_neg_f32: a degree-13 Taylor polynomial on |r| <= ln2/2."""
    t = -746.0 if t < -746.0 else t
    v = fma(t, 1.44269504088896338700e+00, 6755399441055744.0)
    n = bits_f64(v) - 0x4338000000000000
    nf = v - 6755399441055744.0
    r = fma(nf, -6.93147180369123816490e-01, t)
    r = fma(nf, -1.90821492927058770002e-10, r)
    y = 1.6059043836821613e-10
    y = fma(y, r, 2.08767569878681e-09)
    y = fma(y, r, 2.505210838544172e-08)
    y = fma(y, r, 2.755731922398589e-07)
    y = fma(y, r, 2.7557319223985893e-06)
    y = fma(y, r, 2.48015873015873e-05)
    y = fma(y, r, 0.0001984126984126984)
    y = fma(y, r, 0.001388888888888889)
    y = fma(y, r, 0.008333333333333333)
    y = fma(y, r, 0.041666666666666664)
    y = fma(y, r, 0.16666666666666666)
    y = fma(y, r, 0.5)
    y = fma(y, r, 1.0)
    y = fma(y, r, 1.0)
    bias = 512 if n < -1021 else 0
    y = y * from_bits_f64(np.int64((n + bias + 1023) << 52))
    return y * (7.458340731200207e-155 if bias != 0 else 1.0)


@njit(**INLINE)
def pow_unit(z, gamma, n, by_squaring):
    """z^γ for z in [0, 1] in float64: by squaring when γ is the integer n <= 7 (by_squaring),
    else exp(γ·log z), a subnormal z scaled by 2^54, 0^γ = 0."""
    if by_squaring:
        z2 = z * z
        r = z if n & 1 else 1.0
        r = r * z2 if n & 2 else r
        return r * (z2 * z2) if n & 4 else r
    sub = z < 2.0 ** -1022
    lz = log_f64(z * 2.0 ** 54 if sub else z, 0.0) - (54 * 6.93147180559945286e-01 if sub else 0.0)
    r = exp_neg_f64(gamma * lz)
    return 0.0 if z == 0.0 else r


@njit(**INLINE)
def log_product(m, e):
    """log of a product kept as m·2^e: e·ln2 + log m, ln2 in two parts; NaN for m NaN."""
    de = i64_to_f64(e)
    v = de * 6.93147180369123816490e-01 + (de * 1.90821492927058770002e-10 + log_f64(m, 0.0))
    return m if m != m else v


@njit(**JIT)
def lane_sum(a):
    """Pairwise sum of 16 lanes in a fixed order (scalars: no temporary arrays)."""
    prefer_wide_vectors()
    s0 = (a[0] + a[1]) + (a[2] + a[3])
    s1 = (a[4] + a[5]) + (a[6] + a[7])
    s2 = (a[8] + a[9]) + (a[10] + a[11])
    s3 = (a[12] + a[13]) + (a[14] + a[15])
    return (s0 + s1) + (s2 + s3)


@njit(**INLINE)
def split_one(m, e):
    """A product kept as m·2^e with m in [sqrt(1/2), sqrt(2)): the exponent of m moved into e;
    returns (m, e); NaN stays NaN."""
    bits = np.uint64(bits_f64(m))
    x = np.int64((bits - np.uint64(0x3fe6a09e667f3bcd) + np.uint64(1024 << 52)) >> np.uint64(52)) - 1024
    nan = m != m
    return (m if nan else from_bits_f64(np.int64(bits - (np.uint64(x) << np.uint64(52)))),
            e + (0 if nan else x))


@njit(**JIT)
def split(m, e, n):
    """The lane products m[:n] kept as m·2^e (their exponents moved into e), so that the
    logarithm e·ln2 + log m does not cancel and a product stays a normal number."""
    prefer_wide_vectors()
    for k in range(n):
        m[k], e[k] = split_one(m[k], e[k])


@njit(**JIT)
def lanes_log_product(m, e, v):
    """Σ log of the PROD_LANES lane products, each 16 in lane_sum's order, then the four
    partial sums pairwise; v: scratch of PROD_LANES values."""
    prefer_wide_vectors()
    for k in range(PROD_LANES):
        v[k] = log_product(m[k], e[k])
    return (lane_sum(v[:16]) + lane_sum(v[16:32])) + (lane_sum(v[32:48]) + lane_sum(v[48:]))


# ---- Numba only: one source for float32 and float64 (C: the FB_T template of variant.h) ----

def log_typed(hi, lo):
    raise NotImplementedError


def exp_neg_typed(t):
    raise NotImplementedError


def one_like(x):
    raise NotImplementedError


def as_type_of(x, v):
    raise NotImplementedError


@overload(log_typed, inline="always")
def _log_typed_overload(hi, lo):
    if hi == types.float32:
        return lambda hi, lo: log_f32(hi, lo)
    return lambda hi, lo: log_f64(hi, lo)


@overload(exp_neg_typed, inline="always")
def _exp_neg_typed_overload(t):
    if t == types.float32:
        return lambda t: exp_neg_f32(t)
    return lambda t: exp_neg_f64(t)


@overload(one_like)
def _one_like_overload(x):
    if x == types.float32:
        return lambda x: F32(1.0)
    return lambda x: 1.0


@overload(as_type_of)
def _as_type_of_overload(x, v):
    if x == types.float32:
        return lambda x, v: F32(v)
    return lambda x, v: np.float64(v)
