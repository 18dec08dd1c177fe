"""Numba backend, fast path: BCE over flat contiguous data with vectorisable math.

The twin of the Cython fast path (kernels/fastbce_simd.h, fastbce_math.h, fastbce_chunk.h): the
same operations in the same order, so that both backends give the same bits on a CPU with FMA.
The logarithm and the exponential are written as arithmetic on the float's bits (exponent
extraction, polynomial on the mantissa), which LLVM vectorises (Numba's ``np.log`` is a scalar
libm call: PyPI's llvmlite has no SVML). No fast-math flags: every operation is one IEEE
operation; fused multiply-adds are explicit (``llvm.fma``) where the C code has them.

fastbce/_fastpath.py decides when the fast path applies and prepares the arguments; ``fast_pass``
has the contract of the Cython ``fast_pass``.
"""

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.core.extending import intrinsic, overload

from . import (
    FLAG_GROUP,
    FLAG_LABEL,
    FLAG_NAN,
    FLAG_PRED,
    FLAG_WEIGHT,
    MODE_ALL,
    MODE_COLS,
    MODE_GROUPS,
    MODE_ROWS,
    NAN_OMIT,
    NAN_PROPAGATE,
    NAN_RAISE,
)

LANES = 16  # element k of a chunk is summed into lane k % LANES
BLOCK = 512  # elements per block (buffers stay in L1)
PROD_LANES = 64  # lanes of the product path: element k of a chunk (or column k) into k % PROD_LANES
SPLIT_BLOCKS = 3  # blocks of the product path between two _split of its lanes (fastbce_chunk.h)
ROW_PRODUCT_COLS = 160  # shortest rows of the product path (FB_ROW_PRODUCT_COLS)
GROUP_PRODUCT_RANGE = (2.0 ** -900, 2.0 ** 900)  # a group's product is split when it leaves it
_JIT = dict(cache=True, nogil=True, error_model="numpy")
# The math and the element formulas are inlined in Numba's IR: LLVM's inliner leaves a big
# callee (two logarithms) as a call in the loop, which stops vectorisation.
_INLINE = dict(_JIT, inline="always")

F32, F64 = np.float32, np.float64


# ---- bit casts and fused multiply-add ---------------------------------------------------------

def _bitcast(from_type, to_type, to_ir):
    """An intrinsic that reinterprets the bits of a from_type value as a to_type value."""
    @intrinsic
    def cast(typingctx, value):
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], to_ir)
        return to_type(from_type), codegen
    return cast


_bits_f32 = _bitcast(types.float32, types.int32, ir.IntType(32))
_from_bits_f32 = _bitcast(types.int32, types.float32, ir.FloatType())
_bits_f64 = _bitcast(types.float64, types.int64, ir.IntType(64))
_from_bits_f64 = _bitcast(types.int64, types.float64, ir.DoubleType())


@intrinsic
def _fma(typingctx, a, b, c):
    """a·b + c rounded once (llvm.fma: the FMA instruction on CPUs that have one)."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, signature, args):
        return builder.fma(*args)
    return a(a, a, a), codegen


@njit(**_INLINE)
def _i64_to_f64(k):
    """k as a float64 for |k| < 2^51 by the 1.5·2^52 trick (fastbce_simd.h, fb_i64_to_f64)."""
    return _from_bits_f64(np.int64(k + 0x4338000000000000)) - 6755399441055744.0


# ---- the math (kernels/fastbce_math.h) ----------------------------------------------------------

@njit(**_INLINE)
def log_f32(hi, lo):
    """float32 log(hi + lo) for a positive normal hi and |lo| <= ulp(hi) (see fastbce_math.h)."""
    ix = np.int32(_bits_f32(hi) - np.int32(0x3f3504f3))
    k = np.int32(ix >> 23)
    m = _from_bits_f32(np.int32((ix & 0x007fffff) + 0x3f3504f3))
    scale = _from_bits_f32(np.int32((127 - k) << 23))
    f = _fma(lo, scale, m - F32(1.0))
    e = F32(k)
    z = f * f
    y = F32(7.0376836292e-2)
    y = _fma(y, f, F32(-1.1514610310e-1))
    y = _fma(y, f, F32(1.1676998740e-1))
    y = _fma(y, f, F32(-1.2420140846e-1))
    y = _fma(y, f, F32(1.4249322787e-1))
    y = _fma(y, f, F32(-1.6668057665e-1))
    y = _fma(y, f, F32(2.0000714765e-1))
    y = _fma(y, f, F32(-2.4999993993e-1))
    y = _fma(y, f, F32(3.3333331174e-1))
    y = (y * f) * z
    y = _fma(e, F32(-2.12194440e-4), y)
    y = _fma(F32(-0.5), z, y)
    return _fma(e, F32(0.693359375), f + y)


@njit(**_INLINE)
def exp_neg_f32(t):
    """float32 exp(t) for t <= 0 (see fastbce_math.h)."""
    t = F32(-105.0) if t < F32(-105.0) else t
    v = _fma(t, F32(1.44269504088896341), F32(12582912.0))
    n = np.int32(_bits_f32(v) - np.int32(0x4b400000))
    nf = v - F32(12582912.0)
    r = _fma(nf, F32(-0.693359375), t)
    r = _fma(nf, F32(2.12194440e-4), r)
    z = r * r
    y = F32(1.9875691500e-4)
    y = _fma(y, r, F32(1.3981999507e-3))
    y = _fma(y, r, F32(8.3334519073e-3))
    y = _fma(y, r, F32(4.1665795894e-2))
    y = _fma(y, r, F32(1.6666665459e-1))
    y = _fma(y, r, F32(5.0000001201e-1))
    y = _fma(y, z, r)
    y = y + F32(1.0)
    h = np.int32(n >> 1)  # y·2^h·2^(n-h): both factors normal, one rounding
    y = y * _from_bits_f32(np.int32((h + 127) << 23))
    return y * _from_bits_f32(np.int32((n - h + 127) << 23))


@njit(**_INLINE)
def log_f64(hi, lo):
    """float64 log(hi + lo): fdlibm's kernel (see fastbce_math.h)."""
    ix = np.uint64(_bits_f64(hi)) - np.uint64(0x3fe6a09e667f3bcd) + np.uint64(1024 << 52)
    k = np.int64(ix >> np.uint64(52)) - 1024
    m = _from_bits_f64(np.int64((ix & np.uint64(0x000fffffffffffff)) + np.uint64(0x3fe6a09e667f3bcd)))
    scale = _from_bits_f64(np.int64((1023 - k) << 52))
    f = _fma(lo, scale, m - 1.0)
    dk = _i64_to_f64(k)
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * _fma(w, _fma(w, 1.531383769920937332e-01, 2.222219843214978396e-01), 3.999999999940941908e-01)
    t2 = z * _fma(w, _fma(w, _fma(w, 1.479819860511658591e-01, 1.818357216161805012e-01),
                          2.857142874366239149e-01), 6.666666666666735130e-01)
    R = t2 + t1
    hfsq = 0.5 * f * f
    return dk * 6.93147180369123816490e-01 - ((hfsq - _fma(s, hfsq + R, dk * 1.90821492927058770002e-10)) - f)


@njit(**_INLINE)
def exp_neg_f64(t):
    """float64 exp(t) for t <= 0 (see fastbce_math.h)."""
    t = -746.0 if t < -746.0 else t
    v = _fma(t, 1.44269504088896338700e+00, 6755399441055744.0)
    n = _bits_f64(v) - 0x4338000000000000
    nf = v - 6755399441055744.0
    r = _fma(nf, -6.93147180369123816490e-01, t)
    r = _fma(nf, -1.90821492927058770002e-10, r)
    y = 1.6059043836821613e-10
    y = _fma(y, r, 2.08767569878681e-09)
    y = _fma(y, r, 2.505210838544172e-08)
    y = _fma(y, r, 2.755731922398589e-07)
    y = _fma(y, r, 2.7557319223985893e-06)
    y = _fma(y, r, 2.48015873015873e-05)
    y = _fma(y, r, 0.0001984126984126984)
    y = _fma(y, r, 0.001388888888888889)
    y = _fma(y, r, 0.008333333333333333)
    y = _fma(y, r, 0.041666666666666664)
    y = _fma(y, r, 0.16666666666666666)
    y = _fma(y, r, 0.5)
    y = _fma(y, r, 1.0)
    y = _fma(y, r, 1.0)
    bias = 512 if n < -1021 else 0
    y = y * _from_bits_f64(np.int64((n + bias + 1023) << 52))
    return y * (7.458340731200207e-155 if bias != 0 else 1.0)


@njit(**_INLINE)
def pow_unit(z, gamma, n, by_squaring):
    """z^γ for z in [0, 1] in float64: by squaring when γ is the integer n <= 7 (by_squaring),
    else exp(γ·log z), a subnormal z scaled by 2^54, 0^γ = 0 (see fastbce_math.h)."""
    if by_squaring:
        z2 = z * z
        r = z if n & 1 else 1.0
        r = r * z2 if n & 2 else r
        return r * (z2 * z2) if n & 4 else r
    sub = z < 2.0 ** -1022
    lz = log_f64(z * 2.0 ** 54 if sub else z, 0.0) - (54 * 6.93147180559945286e-01 if sub else 0.0)
    r = exp_neg_f64(gamma * lz)
    return 0.0 if z == 0.0 else r


@njit(**_INLINE)
def _split_one(m, e):
    """A product kept as m·2^e with m in [sqrt(1/2), sqrt(2)): the exponent of m moved into e;
    returns (m, e) (NaN stays NaN; fastbce_simd.h, fb_split)."""
    bits = np.uint64(_bits_f64(m))
    x = np.int64((bits - np.uint64(0x3fe6a09e667f3bcd) + np.uint64(1024 << 52)) >> np.uint64(52)) - 1024
    nan = m != m
    return (m if nan else _from_bits_f64(np.int64(bits - (np.uint64(x) << np.uint64(52)))),
            e + (0 if nan else x))


@njit(**_JIT)
def _split(m, e, n):
    """_split_one for the products m[:n] (fastbce_simd.h, fb_split)."""
    _prefer_wide_vectors()
    for k in range(n):
        m[k], e[k] = _split_one(m[k], e[k])


@njit(**_INLINE)
def log_product(m, e):
    """log of a product kept as m·2^e: e·ln2 + log m, ln2 in two parts; NaN for m NaN."""
    de = _i64_to_f64(e)
    v = de * 6.93147180369123816490e-01 + (de * 1.90821492927058770002e-10 + log_f64(m, 0.0))
    return m if m != m else v


# ---- the same code for float32 and float64 predictions ------------------------------------------

def _log(hi, lo):
    raise NotImplementedError


def _exp_neg(t):
    raise NotImplementedError


def _one(x):
    raise NotImplementedError


def _as_type_of(x, v):
    raise NotImplementedError


@overload(_log, inline="always")
def _log_overload(hi, lo):
    if hi == types.float32:
        return lambda hi, lo: log_f32(hi, lo)
    return lambda hi, lo: log_f64(hi, lo)


@overload(_exp_neg, inline="always")
def _exp_neg_overload(t):
    if t == types.float32:
        return lambda t: exp_neg_f32(t)
    return lambda t: exp_neg_f64(t)


@overload(_one)
def _one_overload(x):
    if x == types.float32:
        return lambda x: F32(1.0)
    return lambda x: 1.0


@overload(_as_type_of)
def _as_type_of_overload(x, v):
    if x == types.float32:
        return lambda x, v: F32(v)
    return lambda x, v: np.float64(v)


# ---- element formulas (kernels/fastbce_chunk.h) --------------------------------------------------

@njit(**_INLINE)
def nll_hard(p, y, clip_lo, clip_hi, lo_pos, lo_neg, hi_pos, hi_neg):
    """-log q (y = 1) or -log(1 - q) (y = 0), q = clip(p, eps, 1-eps); 1 - p as hi + lo."""
    one = _one(p)
    zero = one - one
    hi0 = one - p
    lo0 = (one - hi0) - p
    pos = y != zero
    lg = _log(p if pos else hi0, zero if pos else lo0)
    l = -lg
    l = (lo_pos if pos else lo_neg) if p < clip_lo else l
    return (hi_pos if pos else hi_neg) if p > clip_hi else l


@njit(**_INLINE)
def nll_soft(p, a, b, clip_lo, clip_hi, lo_pos, lo_neg, hi_pos, hi_neg):
    """-[a·log q + b·log(1-q)], a = y and b = 1-y (or _coef_pos/_coef_neg), a term with a zero
    coefficient left out."""
    one = _one(p)
    zero = one - one
    hi0 = one - p
    lo0 = (one - hi0) - p
    l1 = -_log(p, zero)
    l0 = -_log(hi0, lo0)
    clo = p < clip_lo
    chi = p > clip_hi
    l1 = lo_pos if clo else (hi_pos if chi else l1)
    l0 = lo_neg if clo else (hi_neg if chi else l0)
    return (a * l1 if a != zero else zero) + (b * l0 if b != zero else zero)


@njit(**_INLINE)
def exp_abs(x):
    """exp(-|x|): the one exponential of a logit's loss and gradient."""
    return _exp_neg(-abs(x))


@njit(**_INLINE)
def nll_logit(x, a, b, e, has_coef):
    """a·softplus(-x) + b·softplus(x) = |x|·(x >= 0 ? b : a) + (a + b)·log1p(e), e = exp(-|x|),
    a = y and b = 1-y (or _coef_pos/_coef_neg); the factor a + b is 1 unless has_coef."""
    one = _one(x)
    zero = one - one
    hi = one + e
    lo = e - (hi - one)
    c = b if x >= zero else a
    lin = abs(x) * c if c != zero else zero
    log1p_e = _log(hi, lo)
    return lin + ((a + b) * log1p_e if has_coef else log1p_e)


@njit(**_INLINE)
def grad_prob(p, y, a, b, clip_lo, clip_hi, has_coef):
    """dl/dp in float64: (p - y) / (p(1 - p)) inside [eps, 1-eps], else 0; with coefficients
    (has_coef) -a/p + b/(1-p) = (b·p - a·(1-p)) / (p(1 - p))."""
    pd = np.float64(p)
    yd = np.float64(y)
    hi0 = 1.0 - pd
    lo0 = (1.0 - hi0) - pd
    num = _fma(b, pd, -(a * hi0)) if has_coef else pd - yd
    g = num / _fma(pd, hi0, pd * lo0)
    return 0.0 if (p < clip_lo) | (p > clip_hi) else g


@njit(**_INLINE)
def grad_logit(x, a, b, e):
    """dl/dx in float64 from e = exp(-|x|), coefficients a, b: b·σ(x) - a·σ(-x) =
    (u + v·e) / (1 + e), u = b and v = -a for x >= 0, u = -a and v = b for x < 0."""
    ed = np.float64(e)
    right = x >= _one(x) - _one(x)
    return _fma(-a if right else b, ed, b if right else -a) / (1.0 + ed)


@njit(**_INLINE)
def focal(v, y, pw, coef, clip_lo, clip_hi, eps, nll, gamma_alpha, logits, by_squaring):
    """(focal loss, its derivative) of one element in float64: α_t·(1-p_t)^γ·CE with the
    coefficients a = pw·y', b = 1 - y' of the smoothed label y' (fastbce_chunk.h, fb_focal);
    gamma_alpha = (γ, α, n), nll in float64."""
    vd = np.float64(v)
    ys = np.float64(y) * coef[0] + coef[1]
    pos = pw * ys
    neg = _coef_neg(coef, y)
    gamma, alpha, n = gamma_alpha
    if logits:
        e = exp_neg_f64(-(-vd if vd < 0.0 else vd))
        big = 1.0 / (1.0 + e)
        small = e * big
        q = big if vd >= 0.0 else small
        q_bar = small if vd >= 0.0 else big
        dq = big * small
        ce = nll_logit(vd, pos, neg, e, True)
        g = grad_logit(vd, pos, neg, e)
    else:
        q = eps if vd < eps else vd
        q = 1.0 - eps if q > 1.0 - eps else q
        q_bar = 1.0 - q
        dq = 0.0 if (vd < clip_lo) | (vd > clip_hi) else 1.0
        ce = nll_soft(vd, pos, neg, np.float64(clip_lo), np.float64(clip_hi), nll[0], nll[1],
                      nll[2], nll[3])
        g = grad_prob(vd, np.float64(y), pos, neg, clip_lo, clip_hi, True)
    z = ys * q_bar + neg * q
    alpha_t = alpha * ys + (1.0 - alpha) * neg if alpha >= 0.0 else 1.0
    f = alpha_t * pow_unit(z, gamma, n, by_squaring)
    d_f = gamma * f * (neg - ys) * (dq / z) if dq != 0.0 else 0.0  # 0 for γ = 0
    if f == 0.0:
        return 0.0, 0.0
    return f * ce, f * g + (d_f * ce if d_f != 0.0 else 0.0)


# ---- blocks --------------------------------------------------------------------------------------

# The block functions take views of the block (index k >= 0: no wraparound code, so that LLVM
# vectorises the loops).

@njit(**_INLINE)
def _label_flags(v):
    """(label v out of [0, 1], v not 0 or 1), compared in the label's own type: as boolean
    accumulators, twice as fast as integer ones."""
    return (v < 0) | (v > 1), (v != 0) & (v != 1)


@njit(**_JIT)
def _load_labels(y, n, ybuf):
    """Labels of a block into ybuf; (any out of [0, 1], any not 0 or 1)."""
    _prefer_wide_vectors()
    bad = False
    soft = False
    for k in range(n):
        v = y[k]
        out, not01 = _label_flags(v)
        bad |= out
        soft |= not01
        ybuf[k] = v
    return bad, soft


@njit(**_JIT)
def _load_weights(w, n, wbuf):
    _prefer_wide_vectors()
    bad = 0
    for k in range(n):
        v = np.float64(w[k])
        bad |= not ((v >= 0.0) & (v < np.inf))
        wbuf[k] = v
    return bad


@njit(**_JIT)
def _by_column(buf, v, j, ncols, n):
    """buf[k] = v[column of element k] for the n elements of a block whose first element is in
    column j: per-column values of a block (fastbce_simd.h, fb_by_column)."""
    _prefer_wide_vectors()
    k = 0
    while k < n:
        run = min(n - k, ncols - j)
        buf[k:k + run] = v[j:j + run]
        k += run
        j = 0


@njit(**_JIT)
def _recheck(y, p, has_w, nan_mode, n, mbuf, wbuf):
    """Exact label/weight error bits: masked elements and NaNs that nan_policy takes out are not
    checked (rare: only for a block with a bad value)."""
    _prefer_wide_vectors()
    bad = 0
    for k in range(n):
        pv = p[k]
        yv = np.float64(y[k])
        skip = (((pv != pv) | (yv != yv)) & (nan_mode != NAN_PROPAGATE)) | (mbuf[k] == 0)
        if not skip and (yv < 0.0 or yv > 1.0):
            bad |= FLAG_LABEL
        if not skip and has_w and not (wbuf[k] >= 0.0 and wbuf[k] < np.inf):
            bad |= FLAG_WEIGHT
    return bad


@njit(**_INLINE)
def _clean_element(pv, yv, logits, soft):
    """Whether an element needs no check and no NaN handling: no NaN and, from probabilities, p in
    [0, 1] (the labels of a hard block are 0 or 1)."""
    ok = (pv == pv) if logits else (pv >= 0) & (pv <= 1)
    return ok & (yv == yv) if soft else ok


@njit(**_JIT)
def _check_block(p, n, ybuf, mbuf, check_p, nan_mode):
    """Error bits of predictions out of [0, 1] and of NaN under nan_policy="raise"."""
    _prefer_wide_vectors()
    bad = 0
    skip_nan = nan_mode != NAN_PROPAGATE
    raise_nan = nan_mode == NAN_RAISE
    for k in range(n):
        pv = p[k]
        yv = ybuf[k]
        on = mbuf[k] != 0
        isn = (pv != pv) | (yv != yv)
        skip = (not on) | (isn & skip_nan)
        bad |= FLAG_PRED if check_p & ((pv < 0) | (pv > 1)) & (not skip) else 0
        bad |= FLAG_NAN if isn & raise_nan & on else 0
    return bad


@njit(**_INLINE)
def _clamped_q(pv, yv, q_lo, q_hi):
    """(p clamped to [q_lo, q_hi] in float64, q = that p (y = 1) or 1 - it (y = 0))."""
    pd = np.float64(pv)
    pd = q_lo if pd < q_lo else pd
    pd = q_hi if pd > q_hi else pd
    return pd, (pd if yv != 0 else 1.0 - pd)


@njit(**_JIT)
def _q_block(p, n, ybuf, q_lo, q_hi, qbuf):
    """Product path: q = p (y = 1) or 1 - p (y = 0), p clamped to [q_lo, q_hi] in float64, into
    qbuf; False when some p is outside [0, 1] or NaN (fastbce_chunk.h, fb_q_block)."""
    _prefer_wide_vectors()
    ok = True
    for k in range(n):
        pv = p[k]
        ok &= (pv >= 0) & (pv <= 1)
        qbuf[k] = _clamped_q(pv, ybuf[k], q_lo, q_hi)[1]
    return ok


@njit(**_JIT)
def _q_block_compensated(p, n, ybuf, q_lo, q_hi, qbuf, qlo):
    """_q_block for float64 p, and the rounding of 1 - p into qlo, so that q = qbuf + qlo exactly
    (fastbce_chunk.h, fb_q_block). One loop, as C's (it was two: mean of 5·10^7 float64, 2 threads,
    alternated medians 1,036-1,074 -> 1,058-1,114 M/s)."""
    _prefer_wide_vectors()
    ok = True
    for k in range(n):
        pv = p[k]
        ok &= (pv >= 0) & (pv <= 1)
        pd, q = _clamped_q(pv, ybuf[k], q_lo, q_hi)
        qbuf[k] = q
        qlo[k] = 0.0 if ybuf[k] != 0 else (1.0 - q) - pd
    return ok


@njit(**_JIT)
def _multiply_compensated(m, rnd, q, lo, n):
    """float64 product path: element k of q + lo (n of them) into lane k % PROD_LANES, m *= q + lo,
    the rounding carried in rnd: (m + rnd)·(q + lo) = r + (rnd·q + fma(m, q, -r) + m·lo), to
    2^-106 of the product (fastbce_chunk.h). No division (one per lane in _fold_rounding), one call
    per block, and unsigned indices: mean of 5·10^7 float64, in-process, alternated medians, 1
    thread 538-563 -> 704-716 M/s, 2 threads 1,117-1,146 -> 1,400-1,404. This loop alone, called
    per 64 products on slices: 0.53 ns per product, per block: 0.21; a signed index made LLVM
    gather (the mean of 5·10^4 float64 in cache: 1.33 ns per element with it, 0.89 without)."""
    _prefer_wide_vectors()
    for g in range(0, n, PROD_LANES):
        for k in range(min(PROD_LANES, n - g)):
            i = np.uint64(g + k)  # unsigned: no wraparound select, which made LLVM gather
            mk = m[k]
            qk = q[i]
            r = mk * qk
            rnd[k] = _fma(rnd[k], qk, _fma(mk, qk, -r) + mk * lo[i])
            m[k] = r


@njit(**_JIT)
def _fold_rounding(m, rnd, comp):
    """float64 product path: the roundings rnd carried since the last fold, relative to the
    products m, added to comp; rnd reset (fastbce_chunk.h, fb_fold_rounding)."""
    _prefer_wide_vectors()
    for k in range(PROD_LANES):
        comp[k] += rnd[k] / m[k]
        rnd[k] = 0.0


@njit(**_JIT)
def _q_block_logit(x, y, n, ybuf, qbuf, lbuf, ebuf):
    """Product path from logits: factors 1 + exp(-|x|) into qbuf, the rest of the loss into lbuf,
    e = exp(-|x|) into ebuf (fastbce_chunk.h, fb_q_block_logit), and the labels into ybuf as
    _load_labels; returns (no x is NaN, any label out of [0, 1], any label not 0 or 1): the
    values are those of a hard block, for the caller to use only if it is one. The labels loaded
    here, not in a loop of their own: mean of 5·10^7 float32 logits, 2 threads, alternated medians
    2,401-2,476 -> 2,609-2,667 M/s (1 thread 1,242-1,259 -> 1,304-1,365); C keeps its label loop
    (gcc's code of the one loop was slower), and so does _q_block (slower too). Two loops: the
    float32 one vectorises at the float32 width only without float64 arithmetic in it (mean of
    2·10^7 float32 logits, 1 thread, AVX2: 348 -> 482 M/s)."""
    _prefer_wide_vectors()
    ok = True
    bad = False
    soft = False
    tiny_e = F32(2.0 ** -28)
    for k in range(n):
        v = y[k]
        out, not01 = _label_flags(v)
        bad |= out
        soft |= not01
        ybuf[k] = v
        xv = x[k]
        ok &= xv == xv
        e = exp_abs(xv)
        ebuf[k] = e
        zero = _one(xv) - _one(xv)
        s = -xv if v != 0 else xv  # |x| on the wrong side, else -|x|
        lin = s if s > zero else zero
        lbuf[k] = lin + e if e < tiny_e else lin
    for k in range(n):
        e = ebuf[k]
        qbuf[k] = 1.0 if e < tiny_e else 1.0 + np.float64(e)
    return ok, bad, soft


@njit(**_INLINE)
def _element_value(l, pv, yv, on, omit):
    """The loss of an element: 0 when masked or an omitted NaN, NaN for another NaN."""
    zero = _one(l) - _one(l)
    isn = (pv != pv) | (yv != yv)
    l = (zero if omit else pv + yv) if isn else l
    return l if on else zero


@njit(**_INLINE)
def _coef_pos(coef, pw, yv):
    """Coefficient of the positive term with a pos_weight pw and label smoothing, in float64:
    pw·(y·keep + shift), coef = (keep, shift) (fastbce_chunk.h, fb_coef_pos)."""
    return pw * (np.float64(yv) * coef[0] + coef[1])


@njit(**_INLINE)
def _coef_neg(coef, yv):
    """Coefficient of the negative term: (1-y)·keep + shift (fastbce_chunk.h, fb_coef_neg)."""
    return (1.0 - np.float64(yv)) * coef[0] + coef[1]


def _coefficients(coef, pw, yv):
    raise NotImplementedError


def _coefficients_f64(coef, pw, yv):
    raise NotImplementedError


# coef is None without coefficients (no pos_weight, no smoothing): a loop compiled for None has
# no float64 arithmetic, so that LLVM vectorises it at the width of the prediction type (with a
# runtime test, the float64 branch made LLVM take four float32 lanes: half the width on AVX2)
@overload(_coefficients, inline="always")
def _coefficients_overload(coef, pw, yv):
    """(a, b) of the positive and negative terms in the label's type: (y, 1-y) for coef None."""
    if isinstance(coef, types.NoneType):
        return lambda coef, pw, yv: (yv, _one(yv) - yv)
    return lambda coef, pw, yv: (_as_type_of(yv, _coef_pos(coef, pw, yv)),
                                 _as_type_of(yv, _coef_neg(coef, yv)))


@overload(_coefficients_f64, inline="always")
def _coefficients_f64_overload(coef, pw, yv):
    """(a, b) in float64 (the gradients): (y, 1-y) for coef None."""
    if isinstance(coef, types.NoneType):
        return lambda coef, pw, yv: (np.float64(yv), 1.0 - np.float64(yv))
    return lambda coef, pw, yv: (_coef_pos(coef, pw, yv), _coef_neg(coef, yv))


@njit(**_INLINE)
def _nll_as_type_of(x, nll):
    """The losses at the clip bounds (float64) in the type of x."""
    return (_as_type_of(x, nll[0]), _as_type_of(x, nll[1]), _as_type_of(x, nll[2]),
            _as_type_of(x, nll[3]))


@njit(**_INLINE)
def _store_loss(lbuf, k, l, pv, yv, mbuf, omit, clean, logits, soft):
    """lbuf[k] = the loss l of element k, as it is in a block taken to be clean (mbuf None), else
    by _element_value; returns clean, and with mbuf None whether the element is too."""
    if mbuf is None:
        lbuf[k] = l
        return clean & _clean_element(pv, yv, logits, soft)
    lbuf[k] = _element_value(l, pv, yv, mbuf[k] != 0, omit)
    return clean


@njit(**_JIT)
def _loss_hard(p, n, ybuf, mbuf, pbuf, coef, lbuf, clip_lo, clip_hi, nll, omit):
    _prefer_wide_vectors()
    lo_pos, lo_neg, hi_pos, hi_neg = _nll_as_type_of(clip_lo, nll)
    clean = True
    for k in range(n):
        pv = p[k]
        yv = ybuf[k]
        l = nll_hard(pv, yv, clip_lo, clip_hi, lo_pos, lo_neg, hi_pos, hi_neg)
        a = _coefficients(coef, pbuf[k], yv)[0]
        l = a * l if coef is not None and yv != 0 else l
        clean = _store_loss(lbuf, k, l, pv, yv, mbuf, omit, clean, False, False)
    return clean


@njit(**_JIT)
def _loss_soft(p, y, n, ybuf, mbuf, pbuf, coef, lbuf, clip_lo, clip_hi, nll, omit):
    """Soft-label losses; y None: the labels in ybuf, else loaded from y into ybuf here, in the
    loss loop (as _q_block_logit; 5·10^7 float32, 2 threads, alternated medians: 1,644-1,689 ->
    1,830-1,919 M/s). Returns (clean (_store_loss), any label out of [0, 1], any not 0 or 1)."""
    _prefer_wide_vectors()
    lo_pos, lo_neg, hi_pos, hi_neg = _nll_as_type_of(clip_lo, nll)
    clean = True
    bad = False
    soft = False
    for k in range(n):
        pv = p[k]
        if y is None:
            yv = ybuf[k]
        else:
            v = y[k]
            out, not01 = _label_flags(v)
            bad |= out
            soft |= not01
            yv = _as_type_of(pv, v)
            ybuf[k] = yv
        a, b = _coefficients(coef, pbuf[k], yv)
        l = nll_soft(pv, a, b, clip_lo, clip_hi, lo_pos, lo_neg, hi_pos, hi_neg)
        clean = _store_loss(lbuf, k, l, pv, yv, mbuf, omit, clean, False, True)
    return clean, bad, soft


@njit(**_JIT)
def _loss_logit(p, n, ybuf, mbuf, pbuf, coef, lbuf, ebuf, soft, omit):
    _prefer_wide_vectors()
    clean = True
    for k in range(n):
        pv = p[k]
        yv = ybuf[k]
        e = exp_abs(pv)
        ebuf[k] = e
        a, b = _coefficients(coef, pbuf[k], yv)
        l = nll_logit(pv, a, b, e, coef is not None)
        clean = _store_loss(lbuf, k, l, pv, yv, mbuf, omit, clean, True, soft)
    return clean


@njit(**_INLINE)
def _focal_loop(p, n, ybuf, mbuf, wbuf, pbuf, sbuf, coef, lbuf, gout, clip_lo, clip_hi, eps, nll,
                gamma_alpha, omit, logits, by_squaring, want_loss):
    """Focal losses (0 unless want_loss) into lbuf and gradients into gout, in one pass; logits and
    by_squaring are constants at each call site (one loop per form)."""
    for k in range(n):
        pv = p[k]
        yv = ybuf[k]
        on = mbuf[k] != 0
        l, g = focal(pv, yv, pbuf[k], coef, clip_lo, clip_hi, eps, nll, gamma_alpha, logits,
                     by_squaring)
        l = _element_value(_as_type_of(pv, l), pv, yv, on, omit)
        lbuf[k] = l if want_loss else _as_type_of(pv, 0.0)
        gout[k] = _grad_value(g, pv, yv, on, wbuf[k], sbuf[k], omit)


@njit(**_JIT)
def _focal_block(p, n, ybuf, mbuf, wbuf, pbuf, sbuf, coef, lbuf, gout, clip_lo, clip_hi, eps, nll,
                 gamma_alpha, omit, logits, want_loss, p64, y64):
    """Focal losses and gradients of a block (fastbce_chunk.h, fb_focal_block); the arguments are
    runtime values (no literal), so that it is compiled once per prediction dtype. The loop reads
    the predictions and labels from float64 copies (p64, y64), so that LLVM vectorises it at the
    float64 width, as the C loop (10^7 float32 logits, 1 thread: 58 -> 74 M/s)."""
    _prefer_wide_vectors()
    for k in range(n):
        p64[k] = p[k]
        y64[k] = ybuf[k]
    if logits and gamma_alpha[2] >= 0:
        _focal_loop(p64, n, y64, mbuf, wbuf, pbuf, sbuf, coef, lbuf, gout, clip_lo, clip_hi, eps,
                    nll, gamma_alpha, omit, True, True, want_loss)
    elif logits:
        _focal_loop(p64, n, y64, mbuf, wbuf, pbuf, sbuf, coef, lbuf, gout, clip_lo, clip_hi, eps,
                    nll, gamma_alpha, omit, True, False, want_loss)
    elif gamma_alpha[2] >= 0:
        _focal_loop(p64, n, y64, mbuf, wbuf, pbuf, sbuf, coef, lbuf, gout, clip_lo, clip_hi, eps,
                    nll, gamma_alpha, omit, False, True, want_loss)
    else:
        _focal_loop(p64, n, y64, mbuf, wbuf, pbuf, sbuf, coef, lbuf, gout, clip_lo, clip_hi, eps,
                    nll, gamma_alpha, omit, False, False, want_loss)


@njit(**_JIT)
def _count_weights(p, n, ybuf, mbuf, wbuf, omit):
    """Counted weights: 0 where masked or an omitted NaN."""
    _prefer_wide_vectors()
    for k in range(n):
        pv = p[k]
        yv = ybuf[k]
        isn = (pv != pv) | (yv != yv)
        wbuf[k] = 0.0 if (mbuf[k] == 0) | (isn & omit) else wbuf[k]


@njit(**_INLINE)
def _grad_value(g, pv, yv, on, w, scale, omit):
    isn = (pv != pv) | (yv != yv)
    g = g * w * scale
    g = (0.0 if omit else np.float64(pv + yv)) if isn else g
    return g if on else 0.0


@njit(**_JIT)
def _grad_prob_block(p, n, ybuf, mbuf, wbuf, pbuf, coef, sbuf, grad, clip_lo, clip_hi, omit):
    _prefer_wide_vectors()
    for k in range(n):
        pv = p[k]
        yv = ybuf[k]
        a, b = _coefficients_f64(coef, pbuf[k], yv)
        g = grad_prob(pv, yv, a, b, clip_lo, clip_hi, coef is not None)
        grad[k] = _grad_value(g, pv, yv, mbuf[k] != 0, wbuf[k], sbuf[k], omit)


@njit(**_JIT)
def _exp_abs_block(p, n, ebuf):
    """exp(-|x|) of a block into ebuf, in a loop of its own (float32 arithmetic only: vectorised
    at the float32 width)."""
    _prefer_wide_vectors()
    for k in range(n):
        ebuf[k] = exp_abs(p[k])


@njit(**_JIT)
def _grad_logit_block(p, n, ybuf, mbuf, wbuf, pbuf, coef, sbuf, ebuf, have_e, grad, omit):
    """have_e: ebuf holds exp(-|x|) from the loss loop; else it is computed first
    (_exp_abs_block)."""
    _prefer_wide_vectors()
    if not have_e:
        _exp_abs_block(p, n, ebuf)
    for k in range(n):
        pv = p[k]
        yv = ybuf[k]
        e = ebuf[k]
        a, b = _coefficients_f64(coef, pbuf[k], yv)
        g = grad_logit(pv, a, b, e)
        grad[k] = _grad_value(g, pv, yv, mbuf[k] != 0, wbuf[k], sbuf[k], omit)


@njit(**_JIT)
def _grad_logit_hard(p, n, ybuf, ebuf, grad, scale):
    """The gradient from logits of a block of 0/1 labels without weights, coefficients or row or
    column scales, in the dtype of p (fastbce_chunk.h, fb_grad_logit_hard): the numerator is
    exact, the quotient and the scale at the float32 width."""
    _prefer_wide_vectors()
    one = _one(scale)
    for k in range(n):
        x = p[k]
        e = ebuf[k]
        pos = ybuf[k] != one - one
        num = (-e if pos else one) if x >= one - one else (-one if pos else e)
        g = num / (one + e) * scale
        grad[k] = x + ybuf[k] if x != x else g


@njit(**_INLINE)
def _loss_forms(p, n, ybuf, mbuf, pbuf, coef, lbuf, ebuf, clip_lo, clip_hi, nll, omit, logits,
                soft):
    """The losses of a block into lbuf, by form. mbuf None: the losses of the block taken to be
    clean (_clean_element), without checks or NaN handling; returns whether it is (when it is not,
    the caller computes them again with mbuf), as fastbce_chunk.h's `clean` loops."""
    if logits:
        return _loss_logit(p, n, ybuf, mbuf, pbuf, coef, lbuf, ebuf, soft, omit)
    if soft:
        return _loss_soft(p, None, n, ybuf, mbuf, pbuf, coef, lbuf, clip_lo, clip_hi, nll, omit)[0]
    return _loss_hard(p, n, ybuf, mbuf, pbuf, coef, lbuf, clip_lo, clip_hi, nll, omit)


@njit(**_INLINE)
def _grad_forms(p, n, ybuf, mbuf, wbuf, pbuf, coef, sbuf, ebuf, have_e, grad, clip_lo, clip_hi,
                omit, logits):
    """The gradient of a block into grad, by form."""
    if logits:
        _grad_logit_block(p, n, ybuf, mbuf, wbuf, pbuf, coef, sbuf, ebuf, have_e, grad, omit)
    else:
        _grad_prob_block(p, n, ybuf, mbuf, wbuf, pbuf, coef, sbuf, grad, clip_lo, clip_hi, omit)


@njit(**_JIT)
def _multiply_into(m, q):
    """m *= q elementwise (views: indices from 0, so no wraparound code and the loop vectorises)."""
    _prefer_wide_vectors()
    for t in range(m.shape[0]):
        m[t] *= q[t]


@njit(**_JIT)
def _add_weighted_into(acc_l, acc_w, l, w):
    """acc_l += l·w and acc_w += w elementwise, in float64 (views, as _multiply_into)."""
    _prefer_wide_vectors()
    for t in range(acc_l.shape[0]):
        acc_l[t] += np.float64(l[t]) * w[t]
        acc_w[t] += w[t]


def _is_c_array(a, dtype=None):
    return (isinstance(a, types.Array) and a.layout == "C" and isinstance(a.dtype, types.Float)
            and (dtype is None or a.dtype == dtype))


def _is_stream_pairs(t):
    """Whether t is a tuple of (C-contiguous array, boolean) pairs (_prefetch_block)."""
    return isinstance(t, types.BaseTuple) and all(
        isinstance(pair, types.BaseTuple) and len(pair) == 2 and isinstance(pair[0], types.Array)
        and pair[0].layout == "C" and isinstance(pair[1], types.Boolean) for pair in t)


@intrinsic
def _prefetch_block(typingctx, start, n, reads, writes):
    """Prefetch elements [start, start + n) of each array of the (array, on) pairs in `reads` (for
    reading) and `writes` (for writing) whose `on` is true: the next block's inputs and gradient
    output (llvm.prefetch over their cache lines; fb_prefetch_block). An intrinsic: its code is
    in the caller. As a function it cost a call passing seven arrays twice per block (0.63 ->
    0.58 ns per float32 element of the mean in cache; 2·10^7 logits, 2 threads, medians:
    1,965-2,090 -> 2,229-2,319 M/s; inlined at Numba IR level it gained nothing)."""
    if not (isinstance(start, types.Integer) and isinstance(n, types.Integer)
            and _is_stream_pairs(reads) and _is_stream_pairs(writes)):
        return None

    def codegen(context, builder, signature, args):
        byte_ptr = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)  # (address, read or write, keep in all cache levels, data)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_ptr] + [i32] * 3),
            "llvm.prefetch.p0")
        first = context.cast(builder, args[0], signature.args[0], types.intp)
        count = context.cast(builder, args[1], signature.args[1], types.intp)
        for k, for_write in ((2, False), (3, True)):
            for pair_type, pair in zip(signature.args[k], cgutils.unpack_tuple(builder, args[k])):
                array_type = pair_type[0]
                array, on = cgutils.unpack_tuple(builder, pair)
                with builder.if_then(context.cast(builder, on, pair_type[1], types.boolean)):
                    data = context.make_array(array_type)(context, builder, array).data
                    base = builder.bitcast(builder.gep(data, [first]), byte_ptr)
                    size = builder.mul(count, cgutils.intp_t(array_type.dtype.bitwidth // 8))
                    with cgutils.for_range_slice(builder, cgutils.intp_t(0), size,
                                                 cgutils.intp_t(64)) as (off, _):
                        builder.call(fn, [builder.gep(base, [off]), i32(int(for_write)), i32(3),
                                          i32(1)])
        return context.get_dummy_value()
    return types.none(start, n, reads, writes), codegen


@intrinsic
def _prefer_wide_vectors(typingctx):
    """Marks the function that calls it "prefer-vector-width"="512" for LLVM: its loops then
    vectorise at the full AVX-512 width, where LLVM's tuning for many Intel CPUs prefers 256-bit
    vectors (a preference only: on a CPU without AVX-512 the widest legal vectors are used). Per
    function, as gcc's target attribute in fastbce_simd.h: the process's other Numba code keeps
    Numba's settings (NUMBA_CPU_FEATURES would change them all). Every kernel function with a
    loop calls it first."""
    def codegen(context, builder, signature, args):
        # an LLVM string attribute: llvmlite's AttributeSet.add accepts only its known names
        set.add(builder.function.attributes, '"prefer-vector-width"="512"')
        return context.get_dummy_value()
    return types.none(), codegen


def _lane_vectors(context, builder, signature, args, lanes):
    """Codegen helpers of the lane intrinsics: pointer to `lanes` elements of array argument i
    from element g on, and their load as float64; with `count`, only the first `count` lanes are
    read (a masked load), the others set to `fill`."""
    def lanes_at(i, g):
        dtype = signature.args[i].dtype
        data = context.make_array(signature.args[i])(context, builder, args[i]).data
        vector = ir.VectorType(context.get_value_type(dtype), lanes)
        return builder.bitcast(builder.gep(data, [g]), vector.as_pointer())

    def load(i, g, count=None, fill=0.0):
        pointer = lanes_at(i, g)
        vector = pointer.type.pointee
        align = ir.IntType(32)(signature.args[i].dtype.bitwidth // 8)
        if count is None:
            v = builder.load(pointer, align=align.constant)
        else:
            index = ir.VectorType(cgutils.intp_t, lanes)
            splat = builder.shuffle_vector(
                builder.insert_element(ir.Constant(index, ir.Undefined), count, ir.IntType(32)(0)),
                ir.Constant(index, ir.Undefined), ir.Constant(ir.VectorType(ir.IntType(32), lanes),
                                                              [0] * lanes))
            mask = builder.icmp_unsigned("<", ir.Constant(index, list(range(lanes))), splat)
            name = f"llvm.masked.load.v{lanes}f{signature.args[i].dtype.bitwidth}.p0"
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(
                vector, [vector.as_pointer(), align.type, mask.type, vector]), name)
            v = builder.call(fn, [pointer, align, mask, ir.Constant(vector, [fill] * lanes)])
        if signature.args[i].dtype == types.float64:
            return v
        return builder.fpext(v, ir.VectorType(ir.DoubleType(), lanes))
    return lanes_at, load


def _lane_groups(context, builder, signature, args, start, lanes, body):
    """The loop of the lane intrinsics: body(g, count) for the groups of `lanes` elements from
    element args[start] on, args[start + 1] elements, count None for a whole group; the last,
    shorter group (count lanes) masked (_lane_vectors)."""
    first = context.cast(builder, args[start], signature.args[start], types.intp)
    n = context.cast(builder, args[start + 1], signature.args[start + 1], types.intp)
    rest = builder.urem(n, cgutils.intp_t(lanes))
    stop = builder.add(first, builder.sub(n, rest))
    with cgutils.for_range_slice(builder, first, stop, cgutils.intp_t(lanes)) as (g, _):
        body(g, None)
    with builder.if_then(builder.icmp_unsigned("!=", rest, cgutils.intp_t(0))):
        body(stop, rest)


@intrinsic
def _add_lanes(typingctx, acc_l, l, acc_w, w, start, n):
    """acc_l[k] += float64(l[start + g + k]) (times w[start + g + k], and acc_w[k] += w[start + g
    + k], with weights) for g in range(0, n, LANES) and k < min(LANES, n - g); acc_w and w None:
    no weights. An offset, not a view of l: a view taken per row cost a reference count taken and
    dropped (two calls into NRT) per row; the last group masked, as whole vectors: a scalar loop
    over it left the sums to be read back as a vector from narrower stores, which the CPU cannot
    forward (the lanes not read add 0, which leaves any sum as it is: a sum is never -0).
    The loop of fastbce_chunk.h with the sums in LLVM vectors (registers): written in Numba, they
    go through memory at every step (LLVM cannot tell the sums from l): 0.49 ns per float32
    element in cache against 0.08."""
    weighted = w is not types.none
    if not (_is_c_array(acc_l, types.float64) and _is_c_array(l) and isinstance(n, types.Integer)
            and isinstance(start, types.Integer)
            and (not weighted or (_is_c_array(acc_w, types.float64)
                                  and _is_c_array(w, types.float64)))):
        return None

    def codegen(context, builder, signature, args):
        lanes_at, load = _lane_vectors(context, builder, signature, args, LANES)
        zero = cgutils.intp_t(0)
        # (accumulator argument, its running sums: an alloca promoted to registers by LLVM)
        lanes = ir.VectorType(ir.DoubleType(), LANES)
        sums = [(i, cgutils.alloca_once(builder, lanes)) for i in ((0, 2) if weighted else (0,))]
        for i, acc in sums:
            builder.store(load(i, zero), acc)

        def add(g, count):
            v = load(1, g, count)
            if weighted:
                wv = load(3, g, count)
                v = builder.fmul(v, wv)
                builder.store(builder.fadd(builder.load(sums[1][1]), wv), sums[1][1])
            builder.store(builder.fadd(builder.load(sums[0][1]), v), sums[0][1])
        _lane_groups(context, builder, signature, args, 4, LANES, add)
        for i, acc in sums:
            builder.store(builder.load(acc), lanes_at(i, zero), align=8)
        return context.get_dummy_value()
    return types.none(acc_l, l, acc_w, w, start, n), codegen


@intrinsic
def _multiply_lanes(typingctx, m, q, start, n):
    """m[k] *= q[start + g + k] for g in range(0, n, PROD_LANES) and k < min(PROD_LANES, n - g):
    the lane products of the product path kept in registers (as _add_lanes; the lanes not read
    multiply by 1)."""
    if not (_is_c_array(m, types.float64) and _is_c_array(q, types.float64)
            and isinstance(start, types.Integer) and isinstance(n, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        lanes_at, load = _lane_vectors(context, builder, signature, args, PROD_LANES)
        zero = cgutils.intp_t(0)
        prod = cgutils.alloca_once(builder, ir.VectorType(ir.DoubleType(), PROD_LANES))
        builder.store(load(0, zero), prod)

        def multiply(g, count):
            builder.store(builder.fmul(builder.load(prod), load(1, g, count, 1.0)), prod)
        _lane_groups(context, builder, signature, args, 2, PROD_LANES, multiply)
        builder.store(builder.load(prod), lanes_at(0, zero), align=8)
        return context.get_dummy_value()
    return types.none(m, q, start, n), codegen


@njit(**_JIT)
def _lane_sum(a):
    """Pairwise sum of 16 lanes in fb_lane_sum's order (scalars: no temporary arrays)."""
    _prefer_wide_vectors()
    s0 = (a[0] + a[1]) + (a[2] + a[3])
    s1 = (a[4] + a[5]) + (a[6] + a[7])
    s2 = (a[8] + a[9]) + (a[10] + a[11])
    s3 = (a[12] + a[13]) + (a[14] + a[15])
    return (s0 + s1) + (s2 + s3)


@njit(**_JIT)
def _lanes_log_product(m, e, v):
    """Σ log of the PROD_LANES lane products, in the order of fb_lanes_log_product; v: scratch of
    PROD_LANES values."""
    _prefer_wide_vectors()
    for k in range(PROD_LANES):
        v[k] = log_product(m[k], e[k])
    return (_lane_sum(v[:16]) + _lane_sum(v[16:32])) + (_lane_sum(v[32:48]) + _lane_sum(v[48:]))


@njit(**_INLINE)
def _product_loss(logits, log_product):
    """The loss carried by a product, from its log: -log Π q for probabilities, +log Π (1 + e)
    from logits (fastbce_chunk.h, fb_product_loss)."""
    return log_product if logits else -log_product


@njit(**_INLINE)
def _group(g32, g64, g_i32, row):
    """The group id of a row, from int32 or int64 ids (fastbce_simd.h, fb_group)."""
    return np.int64(g32[row]) if g_i32 else np.int64(g64[row])


@njit(**_INLINE)
def _ids_scattered(g, n, n_slots):
    """Whether the n ids of a block all lie in [0, n_slots) and change between neighbours at more
    than one element in 16: the scatter loops then update each element's group in memory, else
    they keep the current group's state while the id repeats (fastbce_chunk.h, fb_ids_scattered,
    with the measurements)."""
    changes = 0
    inside = np.uint64(np.int64(g[0])) < n_slots
    for k in range(1, n):
        changes += np.int64(g[k] != g[k - 1])
        inside &= np.uint64(np.int64(g[k])) < n_slots
    return inside and changes * 16 > n


@njit(**_JIT)
def _scatter_groups(g, n, lbuf, wbuf, s):
    """1-D input by group: the weighted loss and weight of each element into its group's slot
    (the rows of s), in element order, the ids (g, int32 or int64) read in place: straight into
    the slots when _ids_scattered, else the current group's sums kept while the id repeats. There
    an id is checked when it changes (compared as unsigned, so that a negative id is out too):
    one outside [0, n_slots) skips its element and makes the function return FLAG_GROUP
    (fastbce_chunk.h, fb_scatter_groups, fb_scatter_sums)."""
    _prefer_wide_vectors()
    n_slots = np.uint64(s.shape[0])
    if _ids_scattered(g, n, n_slots):
        sums = s.reshape(-1)  # 2 per group: a constant stride
        for k in range(n):
            j = np.uint64(2) * np.uint64(g[k])  # in range: unsigned, no wrap-around
            sums[j] += np.float64(lbuf[k]) * wbuf[k]
            sums[j + np.uint64(1)] += wbuf[k]
        return 0
    out = 0
    cur = 0  # slot 0 exists: its sums are loaded and, unchanged, stored back
    sl = s[0, 0]
    sw = s[0, 1]
    for k in range(n):
        i = np.int64(g[k])
        if i != cur:
            if np.uint64(i) >= n_slots:
                out = FLAG_GROUP
                continue
            s[cur, 0] = sl
            s[cur, 1] = sw
            cur = i
            sl = s[cur, 0]
            sw = s[cur, 1]
        sl += np.float64(lbuf[k]) * wbuf[k]
        sw += wbuf[k]
    s[cur, 0] = sl
    s[cur, 1] = sw
    return out


@njit(**_JIT)
def _scatter_products(g, n, qbuf, lbuf, grp, ge, logits):
    """_scatter_groups on the product path (no weights; ids read and checked as there): each
    element's factor (and from logits the rest of its loss) into its group's state, a row of grp
    (product, loss sum, count; the product times 2^ge), in place when _ids_scattered, else the
    current group's kept while the id repeats; a product is split (its exponent into ge) when it
    leaves [2^-900, 2^900]; returns FLAG_GROUP for an id out of range (fastbce_chunk.h,
    fb_scatter_products, fb_scatter_factors)."""
    _prefer_wide_vectors()
    n_slots = np.uint64(grp.shape[0])
    if _ids_scattered(g, n, n_slots):
        state = grp.reshape(-1)  # 3 per group: a constant stride
        for k in range(n):
            i = np.uint64(g[k])  # in range: unsigned, no wrap-around of negative indices
            j = np.uint64(3) * i
            m = state[j] * qbuf[k]
            state[j] = m
            if logits:
                state[j + np.uint64(1)] += np.float64(lbuf[k])
            state[j + np.uint64(2)] += 1.0
            if (m > GROUP_PRODUCT_RANGE[1]) if logits else (m < GROUP_PRODUCT_RANGE[0]):
                state[j], ge[i] = _split_one(m, ge[i])
        return 0
    out = 0
    cur = 0  # as in _scatter_groups
    m = grp[0, 0]
    sl = grp[0, 1]
    c = grp[0, 2]
    for k in range(n):
        i = np.int64(g[k])
        if i != cur:
            if np.uint64(i) >= n_slots:
                out = FLAG_GROUP
                continue
            grp[cur, 0] = m
            grp[cur, 1] = sl
            grp[cur, 2] = c
            cur = i
            m = grp[cur, 0]
            sl = grp[cur, 1]
            c = grp[cur, 2]
        m *= qbuf[k]
        if logits:
            sl += np.float64(lbuf[k])
        c += 1.0
        if (m > GROUP_PRODUCT_RANGE[1]) if logits else (m < GROUP_PRODUCT_RANGE[0]):
            m, ge[cur] = _split_one(m, ge[cur])
    grp[cur, 0] = m
    grp[cur, 1] = sl
    grp[cur, 2] = c
    return out


@njit(**_INLINE)
def _buffer(n, dtype, value):
    """n elements set to value, from a 64-byte boundary (the start of a cache line): Numba aligns
    its arrays to 32 bytes, and a 64-byte vector load or store across two cache lines costs two."""
    raw = np.empty(n + 64, dtype)
    skip = ((-raw.ctypes.data) % 64) // raw.itemsize
    buf = raw[skip:skip + n]
    buf[:] = value
    return buf


@njit(**_JIT)
def _chunk(y, p, w, has_w, pos_w, has_pw, mask, has_mask, g32, g64, g_i32, mode, ncols, row0,
           logits, nan_mode, clip_lo, clip_hi, f32, eps, smoothing, gamma_alpha, nll, grad, has_grad,
           scale, col_scale, has_col_scale, row_scale, has_row_scale, want_loss, start, stop, sums,
           c):
    """Chunk c = elements [start, stop) (whole rows unless mode is MODE_ALL): Σ w·loss, Σ w into
    sums[c, slot]; returns the error bits (kernels/fastbce_chunk.h, fb_chunk)."""
    _prefer_wide_vectors()
    ybuf = _buffer(BLOCK, p.dtype, 0)
    lbuf = _buffer(BLOCK, p.dtype, 0)
    ebuf = _buffer(BLOCK, p.dtype, 0)
    wbuf = _buffer(BLOCK, np.float64, 1.0)
    mbuf = _buffer(BLOCK, np.uint8, 1)
    sbuf = _buffer(BLOCK, np.float64, scale)
    pbuf = _buffer(BLOCK, np.float64, 1.0)
    qbuf = _buffer(BLOCK, np.float64, 0.0)
    qlo = _buffer(0 if f32 else BLOCK, np.float64, 0.0)  # float64 product path: the rounding of 1 - p
    comp = np.zeros(PROD_LANES)  # float64 product path: the products' roundings, relative
    rnd = np.zeros(PROD_LANES)  # float64 product path: the roundings since the last fold
    y64 = np.empty(BLOCK if gamma_alpha is not None else 0)  # focal loss: labels as float64
    acc_l = np.zeros(LANES)
    acc_w = np.zeros(LANES)
    prod_m = np.ones(PROD_LANES)
    prod_e = np.zeros(PROD_LANES, np.int64)
    lane_logs = np.empty(PROD_LANES)
    n_slots = sums.shape[1]
    col_l = np.zeros(ncols if mode == MODE_COLS else 0)
    col_w = np.zeros(ncols if mode == MODE_COLS else 0)
    col_m = np.ones(ncols if mode == MODE_COLS else 0)
    col_e = np.zeros(ncols if mode == MODE_COLS else 0, np.int64)
    omit = nan_mode == NAN_OMIT
    # per-element coefficients of the two terms: a pos_weight (pbuf, 1 without), label smoothing
    # or focal loss (always computed with coefficients); the loops are called with coef None
    # without them (_coefficients)
    # gamma_alpha is None without focal loss: its branches are pruned at compile time
    has_coef = has_pw or smoothing != 0.0 or gamma_alpha is not None
    coef = (1.0 - smoothing, 0.5 * smoothing)
    counted = has_mask or omit  # weights zeroed where masked or an omitted NaN (_count_weights)
    use_w = has_w or counted or has_coef
    keep_e = logits and want_loss and has_grad
    # the product path of fastbce_chunk.h: Σ -log q = -log Π q (from logits: Σ log(1 + e) = log Π),
    # one logarithm per lane or column
    # 1-D input by group: one product per group (_scatter_products), when the groups are few beside
    # the chunk's elements (their logarithms are taken at the chunk end)
    group_products = mode == MODE_GROUPS and ncols == 1 and n_slots * 8 <= stop - start
    by_product = ((f32 or (mode == MODE_ALL and not logits)) and not use_w and want_loss
                  and (logits or eps >= 2.0 ** -28)
                  and (mode == MODE_ALL or mode == MODE_COLS or ncols >= ROW_PRODUCT_COLS
                      or group_products))
    # product path by group: each group's product (times 2^grp_e), loss sum (logits), count
    grp = np.zeros((n_slots if by_product and group_products else 0, 3))
    grp[:, 0] = 1.0
    grp_e = np.zeros(grp.shape[0], np.int64)
    q_hi = 1.0 - eps
    # the product path in prod_m lanes (not by column, not one product per group)
    lane_products = by_product and mode != MODE_COLS and not group_products
    rows_since_split = 0
    blocks_since_split = 0
    bad = 0
    element_ids = mode == MODE_GROUPS and ncols == 1  # group ids to prefetch: one per element
    # the streams of a block, prefetched for the next block: (array, whether it is one)
    reads = ((p, True), (y, True), (w, has_w), (mask, has_mask), (g32, element_ids and g_i32),
             (g64, element_ids and not g_i32))
    writes = ((grad, has_grad),)
    # losses first without checks or NaN handling (kept when the block is clean: _loss_forms)
    unchecked = want_loss and not (counted or has_coef) and gamma_alpha is None
    # the labels are loaded in the block's first loop, for a block taken to be of the form of the
    # one before: the product loop from logits (_q_block_logit), the soft-label loss loop
    # (_loss_soft), else a loop of their own (_load_labels)
    q_first = by_product and logits
    soft_first = False
    for b0 in range(start, stop, BLOCK):
        n = min(BLOCK, stop - b0)
        # the next block's inputs are prefetched, half after this block's labels are loaded (before
        # the loop that loads them when it is the long loop of the form: q_first, soft_first) and
        # half before the gradient (fastbce_chunk.h; logits, 2 threads: 2,210-2,397 -> 2,444-2,533
        # M/s)
        next_n = max(0, min(BLOCK, stop - b0 - BLOCK))
        pb = p[b0:b0 + n]
        yb = y[b0:b0 + n]
        ok = False
        clean = False
        if (q_first or soft_first) and next_n > 0:  # the prefetch before the labels' loop
            _prefetch_block(b0 + BLOCK, next_n // 2, reads, writes)
        if q_first:
            ok, lbad, soft = _q_block_logit(pb, yb, n, ybuf, qbuf, lbuf, ebuf)
        elif soft_first:
            clean, lbad, soft = _loss_soft(pb, yb, n, ybuf, None, pbuf, None, lbuf, clip_lo,
                                           clip_hi, nll, omit)
        else:
            lbad, soft = _load_labels(yb, n, ybuf)
            if next_n > 0:
                _prefetch_block(b0 + BLOCK, next_n // 2, reads, writes)
        soft |= smoothing != 0.0  # smoothed labels are never 0 or 1
        wbad = False
        if has_w:
            wbad = _load_weights(w[b0:b0 + n], n, wbuf)
        elif use_w:
            wbuf[:] = 1.0
        if has_mask:
            mbuf[:n] = mask[b0:b0 + n]
        if has_pw:
            _by_column(pbuf, pos_w, b0 % ncols, ncols, n)
        if lbad or wbad:
            bad |= _recheck(yb, pb, has_w, nan_mode, n, mbuf, wbuf)
        product = by_product and not (lbad or soft)
        # lbuf holds losses to sum (none for the gradient alone by one sum for all: Σw only)
        sum_lbuf = (not product or logits) and (want_loss or mode != MODE_ALL)
        if product and logits and not q_first:  # a hard block after one that is not
            ok = _q_block_logit(pb, yb, n, ybuf, qbuf, lbuf, ebuf)[0]
        elif product and not logits and f32:
            ok = _q_block(pb, n, ybuf, eps, q_hi, qbuf)
        elif product and not logits:
            ok = _q_block_compensated(pb, n, ybuf, eps, q_hi, qbuf, qlo)
        ok &= product  # the elements of a block off the product path are checked below
        if not (soft_first and soft):  # else the soft losses computed above
            clean = unchecked and not product and _loss_forms(
                pb, n, ybuf, None, pbuf, None, lbuf, ebuf, clip_lo, clip_hi, nll, omit, logits,
                soft)
        q_first = product and logits  # the next block taken to be as this one
        soft_first = unchecked and soft and not logits
        if not ok and not clean and (not logits or nan_mode == NAN_RAISE):  # else nothing to check
            bad |= _check_block(pb, n, ybuf, mbuf, not logits, nan_mode)
        if want_loss and not product and gamma_alpha is None and not clean:  # focal loss: below
            if has_coef:
                _loss_forms(pb, n, ybuf, mbuf, pbuf, coef, lbuf, ebuf, clip_lo, clip_hi, nll, omit,
                            logits, soft)
            else:
                _loss_forms(pb, n, ybuf, mbuf, pbuf, None, lbuf, ebuf, clip_lo, clip_hi, nll, omit,
                            logits, soft)
        if counted:
            _count_weights(pb, n, ybuf, mbuf, wbuf, omit)
        if next_n > 0:
            _prefetch_block(b0 + BLOCK + next_n // 2, next_n - next_n // 2, reads, writes)
        if has_grad:
            if has_row_scale:
                row = row0 + b0 // ncols
                j = b0 % ncols
                for k in range(n):
                    sbuf[k] = row_scale[row] * scale
                    j += 1
                    if j == ncols:
                        j = 0
                        row += 1
            elif has_col_scale:
                _by_column(sbuf, col_scale, b0 % ncols, ncols, n)
            gb = grad[b0:b0 + n]
            if gamma_alpha is not None:  # _focal_block below
                pass
            elif has_coef:
                _grad_forms(pb, n, ybuf, mbuf, wbuf, pbuf, coef, sbuf, ebuf, keep_e, gb, clip_lo,
                            clip_hi, omit, logits)
            elif logits and not (use_w or soft or has_row_scale or has_col_scale):
                if not keep_e:
                    _exp_abs_block(pb, n, ebuf)
                _grad_logit_hard(pb, n, ybuf, ebuf, gb, _as_type_of(pb[0], scale))
            else:
                _grad_forms(pb, n, ybuf, mbuf, wbuf, pbuf, None, sbuf, ebuf, keep_e, gb, clip_lo,
                            clip_hi, omit, logits)
        if gamma_alpha is not None:
            # focal losses and gradient in one pass (the gradient into ebuf when there is none)
            _focal_block(pb, n, ybuf, mbuf, wbuf, pbuf, sbuf, coef, lbuf,
                         grad[b0:b0 + n] if has_grad else ebuf, clip_lo, clip_hi, eps, nll,
                         gamma_alpha, omit, logits, want_loss, qbuf, y64)  # no product path here
        if mode == MODE_ALL:
            if product and not f32:
                _multiply_compensated(prod_m, rnd, qbuf, qlo, n)
            elif product:
                _multiply_lanes(prod_m, qbuf, 0, n)
            if sum_lbuf and use_w:
                _add_lanes(acc_l, lbuf, acc_w, wbuf, 0, n)
            elif sum_lbuf:
                _add_lanes(acc_l, lbuf, None, None, 0, n)
            elif use_w:
                _add_lanes(acc_w, wbuf, None, None, 0, n)
        elif mode == MODE_COLS:
            k = 0
            j = (b0 - start) % ncols
            while k < n:
                run = min(n - k, ncols - j)
                if product:
                    _multiply_into(col_m[j:j + run], qbuf[k:k + run])
                if sum_lbuf:
                    _add_weighted_into(col_l[j:j + run], col_w[j:j + run], lbuf[k:k + run],
                                       wbuf[k:k + run])
                k += run
                if j + run == ncols and by_product:
                    rows_since_split += 1
                    if rows_since_split == 32:
                        _split(col_m, col_e, ncols)
                        rows_since_split = 0
                j = 0
        else:
            # each row in lanes by column, then its total into its slot; rows shorter than
            # LANES straight into the slot (1-D input by group: the block in _scatter_groups)
            # (fastbce_chunk.h)
            cs = np.int64(0) if mode == MODE_ROWS else np.int64(c)
            k = 0
            row = b0 // ncols
            j = b0 % ncols
            if mode == MODE_GROUPS and ncols == 1:
                if product and g_i32:
                    bad |= _scatter_products(g32[row:row + n], n, qbuf, lbuf, grp, grp_e, logits)
                elif product:
                    bad |= _scatter_products(g64[row:row + n], n, qbuf, lbuf, grp, grp_e, logits)
                elif g_i32:
                    bad |= _scatter_groups(g32[row:row + n], n, lbuf, wbuf, sums[cs])
                else:
                    bad |= _scatter_groups(g64[row:row + n], n, lbuf, wbuf, sums[cs])
                k = n
            while ncols < LANES and k < n:
                slot = row0 + row if mode == MODE_ROWS else _group(g32, g64, g_i32, row)
                if slot < 0 or slot >= n_slots:
                    bad |= FLAG_GROUP
                else:
                    sums[cs, slot, 0] += np.float64(lbuf[k]) * wbuf[k]
                    sums[cs, slot, 1] += wbuf[k]
                k += 1
                j += 1
                if j == ncols:
                    j = 0
                    row += 1
            while k < n:
                run = min(n - k, ncols - j)
                t = 0
                if product:
                    # the products, and from logits the other part of the losses in their lanes
                    while t < run and (j + t) % PROD_LANES != 0:
                        prod_m[(j + t) % PROD_LANES] *= qbuf[k + t]
                        if logits:
                            acc_l[(j + t) % LANES] += np.float64(lbuf[k + t])
                        t += 1
                    # the rest of the row (or block) from lane 0 on: lane q is element t + q
                    _multiply_lanes(prod_m, qbuf, k + t, run - t)
                    if logits:
                        _add_lanes(acc_l, lbuf, None, None, k + t, run - t)
                else:
                    while t < run and (j + t) % LANES != 0:
                        acc_l[(j + t) % LANES] += np.float64(lbuf[k + t]) * wbuf[k + t]
                        acc_w[(j + t) % LANES] += wbuf[k + t]
                        t += 1
                    if use_w:  # the rest from lane 0 on
                        _add_lanes(acc_l, lbuf, acc_w, wbuf, k + t, run - t)
                    else:
                        _add_lanes(acc_l, lbuf, None, None, k + t, run - t)
                k += run
                j += run
                if j == ncols:
                    # the row's loss and Σw into its slot, the lanes reset (fastbce_chunk.h,
                    # fb_row_done); written out here: as a function inlined by Numba (inline=
                    # "always") its array arguments took and dropped a reference count each, two
                    # calls into NRT per array and row (rows of 20 columns, eps 1e-10, one thread,
                    # in cache: 84.7 -> 33.4 ns per row)
                    slot = row0 + row if mode == MODE_ROWS else _group(g32, g64, g_i32, row)
                    if slot < 0 or slot >= sums.shape[1]:
                        bad |= FLAG_GROUP
                    else:
                        loss = _lane_sum(acc_l)
                        if by_product:  # split before the logarithms, as fastbce_chunk.h
                            _split(prod_m, prod_e, PROD_LANES)
                            loss += _product_loss(logits,
                                                  _lanes_log_product(prod_m, prod_e, lane_logs))
                        sums[cs, slot, 0] += loss
                        sums[cs, slot, 1] += _lane_sum(acc_w) if use_w else np.float64(ncols)
                    acc_l[:] = 0.0
                    acc_w[:] = 0.0
                    if by_product:
                        prod_m[:] = 1.0
                        prod_e[:] = 0
                    j = 0
                    row += 1
        if product and lane_products:  # at most 27 factors per lane since the last split
            blocks_since_split += 1
            if blocks_since_split == SPLIT_BLOCKS:
                if not f32:
                    _fold_rounding(prod_m, rnd, comp)
                _split(prod_m, prod_e, PROD_LANES)
                blocks_since_split = 0
    if mode == MODE_ALL:
        if not f32:
            _fold_rounding(prod_m, rnd, comp)
        _split(prod_m, prod_e, PROD_LANES)
        log_prod = _lanes_log_product(prod_m, prod_e, lane_logs)
        if not f32:  # log Π q = log Π m + log1p(comp), = comp to 2^-106
            log_prod += ((_lane_sum(comp[:16]) + _lane_sum(comp[16:32]))
                         + (_lane_sum(comp[32:48]) + _lane_sum(comp[48:])))
        sums[c, 0, 0] = _lane_sum(acc_l) + _product_loss(logits, log_prod)
        sums[c, 0, 1] = _lane_sum(acc_w) if use_w else np.float64(stop - start)
    elif mode == MODE_COLS:
        for j in range(ncols):
            sums[c, j, 0] = col_l[j] + _product_loss(logits, log_product(col_m[j], col_e[j]))
            sums[c, j, 1] = col_w[j] if use_w else np.float64((stop - start) // ncols)
    else:
        for j in range(grp.shape[0]):
            loss = _product_loss(logits, log_product(grp[j, 0], grp_e[j]))
            sums[c, j, 0] += grp[j, 1] + loss
            sums[c, j, 1] += grp[j, 2]
    return bad


@njit(parallel=True, **_JIT)
def _fast_pass(y, p, w, has_w, pos_w, has_pw, mask, has_mask, g32, g64, g_i32, mode, ncols, row0,
               logits, nan_mode, clip_lo, clip_hi, f32, eps, smoothing, gamma_alpha, nll, chunk_elems,
               sums, flags, grad, has_grad, scale, col_scale, has_col_scale, row_scale,
               has_row_scale, want_loss):
    _prefer_wide_vectors()
    n = p.shape[0]
    for c in prange(flags.shape[0]):
        start = c * chunk_elems
        flags[c] = _chunk(y, p, w, has_w, pos_w, has_pw, mask, has_mask, g32, g64, g_i32, mode,
                          ncols, row0, logits, nan_mode, clip_lo, clip_hi, f32, eps, smoothing,
                          gamma_alpha, nll, grad, has_grad, scale, col_scale, has_col_scale,
                          row_scale, has_row_scale, want_loss, start, min(n, start + chunk_elems),
                          sums, np.int64(c))  # int64 when typed, uint64 in the gufunc: one compile


_NO_MASK = np.ones(1, np.uint8)
_NO_G32 = np.zeros(1, np.int32)
_NO_G64 = np.zeros(1, np.int64)
_NO_SCALE = np.ones(1)


def read_only(*arrays):
    """Read-only views: Numba compiles a specialisation per argument type, and a writable and a
    read-only array are two types; inputs passed read-only always need one."""
    views = [a.view() for a in arrays]
    for view in views:
        view.flags.writeable = False
    return views


def fast_pass(y, p, w, pos_w, mask, groups, mode, ncols, row0, logits, nan_mode, clip, eps,
              smoothing, focal, nll, chunk_elems, sums, flags, grad, grad_scale, col_scale, row_scale,
              want_loss, n_threads):
    """Same contract as the Cython ``fast_pass`` (fastbce/_fastpath.py)."""
    t = p.dtype.type
    gamma_alpha = None  # no focal loss: the kernel is compiled without it
    if focal is not None:
        gamma_alpha = (float(focal[0]), float(focal[1]), int(focal[2]))
        # focal loss compiles once per prediction dtype (~40-80 s with an empty cache): labels
        # in the prediction dtype, weights in float64 (copies unless they are already)
        y = y.astype(p.dtype, copy=False)
        w = None if w is None else w.astype(np.float64, copy=False)
    # int32 or int64 ids, read in place; both arrays are passed so that one compilation serves both
    g_i32 = groups is not None and groups.dtype == np.int32
    g32 = groups if g_i32 else _NO_G32
    g64 = _NO_G64 if groups is None or g_i32 else groups
    numba.set_num_threads(min(n_threads, numba.config.NUMBA_NUM_THREADS))
    no_w = _NO_SCALE if gamma_alpha is not None else p
    y, p, w_in, pos_w_in, mask_in, g32, g64 = read_only(
        y, p, no_w if w is None else w, _NO_SCALE if pos_w is None else pos_w,
        _NO_MASK if mask is None else mask, g32, g64)
    _fast_pass(y, p, w_in, w is not None, pos_w_in, pos_w is not None, mask_in, mask is not None,
               g32, g64, g_i32, mode, ncols, row0, bool(logits), nan_mode, t(clip[0]), t(clip[1]),
               p.dtype == F32, float(eps), float(smoothing), gamma_alpha,
               tuple(float(v) for v in nll),
               chunk_elems, sums, flags, np.empty(1, p.dtype) if grad is None else grad,
               grad is not None, float(grad_scale), _NO_SCALE if col_scale is None else col_scale,
               col_scale is not None, _NO_SCALE if row_scale is None else row_scale,
               row_scale is not None, bool(want_loss))
