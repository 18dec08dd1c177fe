"""Numba element passes: the twin of kernels/c/elements.h (same functions, same order).

Per-element outputs with no reduction: the weighted loss (reduction="none") or the gradient and
Hessian with respect to the logit (bce_grad_hess), block by block over ranges of chunks on
threads (dispatch.run_chunks), with the forms of forms.py. Operands arrive as flat arrays with an
offset and strides in elements (kernels.ElementOptions); contiguous predictions and outputs are
used in place, others pass through the block buffers. Each form (output, loss form, options) has
its own kernel over a range of chunks (_make_pass) and block function, compiled on its first use:
no form compiles another's code.
"""

from typing import NamedTuple

import numpy as np
from numba import njit, types
from numba.extending import overload

from .. import (
    BLOCK,
    ELEMENT_CHUNK,
    ELEMENT_GRAD_HESS,
    FLAG_LABEL,
    FLAG_NAN,
    FLAG_POS_WEIGHT,
    FLAG_PRED,
    FLAG_WEIGHT,
    K_F64,
    K_NONE,
    NAN_OMIT,
    NAN_RAISE,
)
from .dispatch import run_chunks
from .forms import (
    coef_neg,
    coef_pos,
    exp_abs,
    focal,
    grad_logit,
    nll_hard,
    nll_logit,
    nll_soft,
)
from .llvm import (
    INLINE,
    JIT,
    bits_f32,
    fma,
    from_bits_f32,
    prefer_wide_vectors,
)
from .math import (
    as_type_of,
    exp_neg_f32,
    exp_neg_ff_f32,
    exp_neg_f64,
    log_f32,
    log_typed,
    mul_ff,
    one_like,
    pow_unit,
)

F32 = np.float32


class _Args(NamedTuple):
    """The scalars of an element pass as the kernel takes them (C: fb_elements and its fb_args),
    passed as a plain tuple. The tuples (the losses at the clip bounds, γ and α) and the operands'
    (offset, rs, cs) rows (an array) are arguments of their own, and the form of the pass is
    chosen at compile time (_make_pass)."""

    ncols: int
    logits: bool
    nan_mode: int
    has_w: bool
    has_pw: bool
    has_mask: bool
    clip_lo: float  # float64 (focal loss)
    clip_hi: float
    keep: float  # label smoothing: y·keep + shift
    shift: float


@njit(**INLINE)
def half(h):
    """The float32 value of a float16 given as its bits, exactly (fb_half)."""
    em = np.int32(h) & np.int32(0x7fff)
    v = from_bits_f32(np.int32(em << 13)) * F32(2.0 ** 112)
    bits = np.int32((em << 13) | 0x7f800000) if em >= 0x7c00 else bits_f32(v)
    return from_bits_f32(np.int32(bits | np.int32((np.int64(h) & 0x8000) << 16)))


@njit(**INLINE)
def offsets(off, rs, cs, ncols, b0, n, idx):
    """Offsets of elements [b0, b0 + n) into idx (off added); 1 for a contiguous operand (idx
    unused), 2 for a constant one, else 0."""
    if rs == ncols * cs:
        if cs == 1:
            return 1
        if cs == 0:
            return 2
        for k in range(n):
            idx[k] = off + (b0 + k) * cs
        return 0
    i = b0 // ncols
    j = b0 % ncols
    for k in range(n):
        idx[k] = off + i * rs + j * cs
        j += 1
        if j == ncols:
            j = 0
            i += 1
    return 0


def as_double(x):
    raise NotImplementedError


@overload(as_double, inline="always")
def _as_double_overload(x):
    """A loaded value as float64; uint16 values are float16 bits."""
    if x == types.uint16:
        return lambda x: np.float64(half(x))
    return lambda x: np.float64(x)


@njit(**JIT)
def load(flat, meta, ncols, b0, n, idx, buf):
    """Elements [b0, b0 + n) of an operand as float64 into buf; meta = (offset, rs, cs). Not
    inlined (one call per block; compiled once per operand dtype)."""
    off, rs, cs = meta[0], meta[1], meta[2]
    how = offsets(off, rs, cs, ncols, b0, n, idx)
    if how == 1:  # a slice: flat[off + b0 + k] would be a gather (the index's sign is unknown)
        src = flat[off + b0:off + b0 + n]
        for k in range(n):
            buf[k] = as_double(src[k])
    elif how == 2:
        c = as_double(flat[off])
        for k in range(n):
            buf[k] = c
    else:
        for k in range(n):
            buf[k] = as_double(flat[idx[k]])


@njit(**JIT)
def load_pred(flat, meta, ncols, b0, n, idx, buf):
    """The predictions of a block into buf, in buf's type (float16 decoded); the caller reads
    contiguous predictions of the output's type in place instead."""
    off, rs, cs = meta[0], meta[1], meta[2]
    how = offsets(off, rs, cs, ncols, b0, n, idx)
    t = buf[0]  # buf's type, read once: buf[0] in the loop would be a dependence on its store
    if how == 1:  # one loop per case, as load: a select of the index per element does not vectorise
        src = flat[off + b0:off + b0 + n]
        for k in range(n):
            buf[k] = as_type_of(t, as_double(src[k]))
    elif how == 2:
        c = as_type_of(t, as_double(flat[off]))
        for k in range(n):
            buf[k] = c
    else:
        for k in range(n):
            buf[k] = as_type_of(t, as_double(flat[idx[k]]))


@njit(**JIT)
def store(out, meta, ncols, b0, n, idx, buf):
    """Store a block's output from buf into out unless it was written in place."""
    off, rs, cs = meta[0], meta[1], meta[2]
    if offsets(off, rs, cs, ncols, b0, n, idx) == 1:
        return
    for k in range(n):
        out[idx[k]] = buf[k]


@njit(**INLINE)
def grad_hess_logit(a, b, x, e):
    """(dl/dx, d²l/dx²) from e = exp(-|x|): b·σ(x) - a·σ(-x) = (u + v·e)·σ(|x|) and
    (a + b)·σ(x)σ(-x), one division for both."""
    ed = np.float64(e)
    big = 1.0 / (1.0 + ed)
    right = x >= one_like(x) - one_like(x)
    g = fma(-a if right else b, ed, b if right else -a) * big
    return g, (a + b) * ((ed * big) * big)


@njit(**INLINE)
def focal_grad_hess(x, y, pw, coef, gamma_alpha, by_squaring):
    """(FL', FL'') of the focal loss in the logit x, in float64: f' = γ·f·c·r,
    f'' = γ·f·c·((γ-1)·c·r² + r·(σ(-x) - σ(x))), FL' = f·g + f'·CE, FL'' = f''·CE + 2·f'·g + f·h."""
    gamma, alpha, n = gamma_alpha
    ys = y * coef[0] + coef[1]
    pos = pw * ys
    neg = coef_neg(coef, y)
    e = exp_neg_f64(-(-x if x < 0.0 else x))
    big = 1.0 / (1.0 + e)
    small = e * big
    q = big if x >= 0.0 else small
    q_bar = small if x >= 0.0 else big
    s = big * small
    ce = nll_logit(x, pos, neg, e, True)
    g = grad_logit(x, pos, neg, e)
    h = (pos + neg) * s
    z = ys * q_bar + neg * q
    alpha_t = alpha * ys + (1.0 - alpha) * neg if alpha >= 0.0 else 1.0
    f = alpha_t * pow_unit(z, gamma, n, by_squaring)
    c = neg - ys
    r = s / z if z > 0.0 else 0.0
    d_f = gamma * f * c * r
    d2_f = gamma * f * c * ((gamma - 1.0) * c * r * r + r * (q_bar - q))
    gr = f * g + (d_f * ce if d_f != 0.0 else 0.0)  # CE = inf (x = ±inf) where f' = 0
    hr = (d2_f * ce if d2_f != 0.0 else 0.0) + 2.0 * d_f * g + f * h
    return (0.0 if f == 0.0 else gr), (0.0 if f == 0.0 else hr)


@njit(**INLINE)
def element_flags(logits, nan_mode, p, y, w, pw, on, isn):
    """The error bits of one element."""
    omit = nan_mode == NAN_OMIT
    raise_ = nan_mode == NAN_RAISE
    skip = (not on) | (isn & (omit | raise_))
    bad = FLAG_NAN if isn & raise_ & on else 0
    bad |= FLAG_PRED if (not logits) & ((p < 0) | (p > 1)) & (not skip) else 0
    bad |= FLAG_LABEL if ((y < 0.0) | (y > 1.0)) & (not skip) else 0
    bad |= FLAG_WEIGHT if (not ((w >= 0.0) & (w < np.inf))) & (not skip) else 0
    bad |= FLAG_POS_WEIGHT if (not ((pw >= 0.0) & (pw < np.inf))) & (not skip) else 0
    return bad


@njit(**INLINE)
def nll_coef(p, a, b, clip_lo, clip_hi, lo_pos, lo_neg, hi_pos, hi_neg, logits):
    """The loss with float64 coefficients a, b: the logarithms in p's type as nll_soft
    (nll_logit), the products and their sum in float64 (a coefficient below p's range keeps its
    term)."""
    one = one_like(p)
    zero = one - one
    if logits:
        e = exp_abs(p)
        hi = one + e
        lo = e - (hi - one)
        c = b if p >= zero else a
        lin = np.float64(abs(p)) * c if c != 0.0 else 0.0
        return lin + (a + b) * np.float64(log_typed(hi, lo))
    hi0 = one - p
    lo0 = (one - hi0) - p
    l1 = -log_typed(p, zero)
    l0 = -log_typed(hi0, lo0)
    clo = p < clip_lo
    chi = p > clip_hi
    l1 = lo_pos if clo else (hi_pos if chi else l1)
    l0 = lo_neg if clo else (hi_neg if chi else l0)
    return (a * np.float64(l1) if a != 0.0 else 0.0) + (b * np.float64(l0) if b != 0.0 else 0.0)


@njit(**JIT)
def loss_elements(o, nll, gamma_alpha, P, ybuf, wbuf, pwbuf, mbuf, out, n, lg, soft, cf, fo, sq):
    """The weighted losses of a block into out; returns the error bits (fb_loss_elements). The
    form, by arguments None or not (Numba prunes the others' branches before compiling): lg
    logits, soft soft labels (else 0/1), cf float64 coefficients, fo focal loss, sq γ by
    squaring. Not inlined: each form is compiled once per dtype, on first use."""
    prefer_wide_vectors()
    t = P[0]
    one = one_like(t)
    coef = (o.keep, o.shift)
    clip_lo = as_type_of(t, o.clip_lo)
    clip_hi = as_type_of(t, o.clip_hi)
    lo_pos = as_type_of(t, nll[0])
    lo_neg = as_type_of(t, nll[1])
    hi_pos = as_type_of(t, nll[2])
    hi_neg = as_type_of(t, nll[3])
    logits = o.logits
    nan_mode = o.nan_mode
    omit = nan_mode == NAN_OMIT
    bad = 0
    for k in range(n):
        p = P[k]
        yd = ybuf[k]
        w = wbuf[k]
        pw = pwbuf[k]
        y = as_type_of(t, yd)
        on = mbuf[k] != 0
        isn = (p != p) | (yd != yd)
        bad |= element_flags(logits, nan_mode, p, yd, w, pw, on, isn)
        if fo is not None:
            pd = np.float64(p)
            if lg is not None:
                if sq is not None:
                    l = focal(pd, yd, pw, coef, o.clip_lo, o.clip_hi, nll, gamma_alpha, True, True)[0]
                else:
                    l = focal(pd, yd, pw, coef, o.clip_lo, o.clip_hi, nll, gamma_alpha, True, False)[0]
            elif sq is not None:
                l = focal(pd, yd, pw, coef, o.clip_lo, o.clip_hi, nll, gamma_alpha, False, True)[0]
            else:
                l = focal(pd, yd, pw, coef, o.clip_lo, o.clip_hi, nll, gamma_alpha, False, False)[0]
        elif cf is not None:
            pos = coef_pos(coef, pw, yd)
            neg = coef_neg(coef, yd)
            if lg is not None:
                l = nll_coef(p, pos, neg, clip_lo, clip_hi, lo_pos, lo_neg, hi_pos, hi_neg, True)
            elif soft is not None:
                l = nll_coef(p, pos, neg, clip_lo, clip_hi, lo_pos, lo_neg, hi_pos, hi_neg, False)
            else:
                l = np.float64(nll_hard(p, y, clip_lo, clip_hi, lo_pos, lo_neg, hi_pos, hi_neg))
                l = pos * l if yd != 0.0 else l
        elif lg is not None:
            l = np.float64(nll_logit(p, y, one - y, exp_abs(p), False))
        elif soft is not None:
            l = np.float64(nll_soft(p, y, one - y, clip_lo, clip_hi, lo_pos, lo_neg, hi_pos, hi_neg))
        else:
            l = np.float64(nll_hard(p, y, clip_lo, clip_hi, lo_pos, lo_neg, hi_pos, hi_neg))
        v = (0.0 if omit else np.float64(p) + yd) if isn else w * l
        out[k] = as_type_of(t, v if on else 0.0)
    return bad


@njit(**JIT)
def loss_plain(o, nll, P, Y, out, n, lg, soft):
    """The losses of a block with no weight, pos_weight, mask, smoothing or focal factor, in P's
    type alone (labels Y in it); the form as loss_elements (fb_loss_plain)."""
    prefer_wide_vectors()
    t = P[0]
    one = one_like(t)
    zero = one - one
    clip_lo = as_type_of(t, o.clip_lo)
    clip_hi = as_type_of(t, o.clip_hi)
    lo_pos = as_type_of(t, nll[0])
    lo_neg = as_type_of(t, nll[1])
    hi_pos = as_type_of(t, nll[2])
    hi_neg = as_type_of(t, nll[3])
    omit = o.nan_mode == NAN_OMIT
    raise_ = o.nan_mode == NAN_RAISE
    logits = o.logits
    nan_bad = pred_bad = label_bad = False  # booleans, as in grad_hess_plain
    for k in range(n):
        p = P[k]
        y = Y[k]
        isn = (p != p) | (y != y)
        skip = isn & (omit | raise_)
        nan_bad |= isn & raise_
        pred_bad |= (not logits) & ((p < zero) | (p > one)) & (not skip)
        label_bad |= ((y < zero) | (y > one)) & (not skip)
        if lg is not None:
            l = nll_logit(p, y, one - y, exp_abs(p), False)
        elif soft is not None:
            l = nll_soft(p, y, one - y, clip_lo, clip_hi, lo_pos, lo_neg, hi_pos, hi_neg)
        else:
            l = nll_hard(p, y, clip_lo, clip_hi, lo_pos, lo_neg, hi_pos, hi_neg)
        out[k] = ((zero if omit else p + y) if isn else l)
    return ((FLAG_NAN if nan_bad else 0) | (FLAG_PRED if pred_bad else 0)
            | (FLAG_LABEL if label_bad else 0))


@njit(**JIT)
def grad_hess_elements(o, gamma_alpha, P, ybuf, wbuf, pwbuf, mbuf, g_out, h_out, n, cf, fo, sq):
    """The weighted gradient and Hessian in the logit of a block; returns the error bits. The
    form as loss_elements: cf coefficients, fo focal loss, sq γ by squaring."""
    prefer_wide_vectors()
    t = P[0]
    coef = (o.keep, o.shift)
    nan_mode = o.nan_mode
    omit = nan_mode == NAN_OMIT
    bad = 0
    for k in range(n):
        x = P[k]
        yd = ybuf[k]
        w = wbuf[k]
        pw = pwbuf[k]
        on = mbuf[k] != 0
        isn = (x != x) | (yd != yd)
        bad |= element_flags(True, nan_mode, x, yd, w, pw, on, isn)
        if fo is not None:
            if sq is not None:
                g, h = focal_grad_hess(np.float64(x), yd, pw, coef, gamma_alpha, True)
            else:
                g, h = focal_grad_hess(np.float64(x), yd, pw, coef, gamma_alpha, False)
        else:
            if cf is not None:
                pos = coef_pos(coef, pw, yd)
                neg = coef_neg(coef, yd)
            else:
                pos = yd
                neg = 1.0 - yd
            g, h = grad_hess_logit(pos, neg, x, exp_abs(x))
        nan = 0.0 if omit else np.float64(x) + yd
        g = nan if isn else w * g
        h = nan if isn else w * h
        g_out[k] = as_type_of(t, g if on else 0.0)
        h_out[k] = as_type_of(t, h if on else 0.0)
    return bad


@njit(**JIT)
def grad_hess_plain(o, P, Y, g_out, h_out, n):
    """The gradient and Hessian of a block with no weight, pos_weight, mask, smoothing or focal
    factor, in P's type alone (labels Y in it): a = y, b = 1 - y, g = (u + v·e)/(1 + e) as
    grad_hess_logit, h = e/(1 + e)² with (1 + e)² from 1 + e = hi + lo (fb_grad_hess_plain)."""
    prefer_wide_vectors()
    t = P[0]
    one = one_like(t)
    zero = one - one
    omit = o.nan_mode == NAN_OMIT
    raise_ = o.nan_mode == NAN_RAISE
    nan_bad = label_bad = False  # booleans: an int64 flag word would halve the vector width
    for k in range(n):
        x = P[k]
        y = Y[k]
        isn = (x != x) | (y != y)
        skip = isn & (omit | raise_)
        nan_bad |= isn & raise_
        label_bad |= ((y < zero) | (y > one)) & (not skip)
        e = exp_abs(x)
        hi = one + e
        lo = e - (hi - one)
        b = one - y
        right = x >= zero
        g = fma(-y if right else b, e, b if right else -y) / hi
        h = e / fma(hi, hi, (hi + hi) * lo)
        nan = zero if omit else x + y
        g_out[k] = nan if isn else g
        h_out[k] = nan if isn else h
    return (FLAG_NAN if nan_bad else 0) | (FLAG_LABEL if label_bad else 0)


@njit(**JIT)
def focal_grad_hess_plain(o, gamma_alpha, P, Y, g_out, h_out, n, sq):
    """The focal gradient and Hessian of a block with no weight, pos_weight or mask, labels Y in
    P's type: focal_grad_hess in float64, as grad_hess_elements, without the weight and mask
    buffers (fb_focal_grad_hess_plain). sq: γ by squaring (None or not)."""
    prefer_wide_vectors()
    t = P[0]
    coef = (o.keep, o.shift)
    omit = o.nan_mode == NAN_OMIT
    raise_ = o.nan_mode == NAN_RAISE
    nan_bad = label_bad = False  # booleans, as in grad_hess_plain
    for k in range(n):
        x = P[k]
        y = Y[k]
        isn = (x != x) | (y != y)
        skip = isn & (omit | raise_)
        nan_bad |= isn & raise_
        label_bad |= ((y < 0) | (y > 1)) & (not skip)
        if sq is not None:
            g, h = focal_grad_hess(np.float64(x), np.float64(y), 1.0, coef, gamma_alpha, True)
        else:
            g, h = focal_grad_hess(np.float64(x), np.float64(y), 1.0, coef, gamma_alpha, False)
        nan = 0.0 if omit else np.float64(x) + np.float64(y)
        g_out[k] = as_type_of(t, nan if isn else g)
        h_out[k] = as_type_of(t, nan if isn else h)
    return (FLAG_NAN if nan_bad else 0) | (FLAG_LABEL if label_bad else 0)


@njit(**INLINE)
def focal_hard(x, y, c, c_n, general):
    """(g, h) of the focal loss of a hard label y (0 or 1) from a float32 logit x, in float32
    (fb_focal_hard): u = (2y-1)·x, p_t = σ(u), q = 1-p_t, CE = softplus(-u), f = α_t·q^γ,
    g = -t·f·(q + γ·p_t·CE), h = f·p_t·(q·(1+2γ) + γ·CE·(γ·p_t - q)); e and q in float-float,
    q^γ = q^n·q^φ (n = c_n by float-float squaring, q^φ = exp(-φ·softplus(u)) when general),
    p_t·h scaled by 2^32. c: γ, 1 + 2γ, φ in two parts, α_t of y = 1 and y = 0."""
    zero = F32(0.0)
    one = F32(1.0)
    pos = y != zero
    u = x if pos else -x
    es_hi, es_lo = exp_neg_ff_f32(-abs(x))  # e·2^32
    e_hi = es_hi * F32(2.0 ** -32)
    e_lo = es_lo * F32(2.0 ** -32)
    d_hi = one + e_hi
    d_lo = ((one - d_hi) + e_hi) + e_lo
    b_hi = one / d_hi  # σ(|x|) = 1/(1 + e)
    b_lo = (fma(-b_hi, d_hi, one) - b_hi * d_lo) * b_hi
    s_hi, s_lo = mul_ff(e_hi, e_lo, b_hi, b_lo)  # σ(-|x|) = e/(1 + e)
    right = u >= zero
    q_hi = s_hi if right else b_hi
    q_lo = s_lo if right else b_lo
    q = q_hi + q_lo
    pt_hi = b_hi if right else s_hi
    pt_lo = b_lo if right else s_lo
    pt = pt_hi + pt_lo
    ps_hi, ps_lo = mul_ff(es_hi, es_lo, b_hi, b_lo)  # p_t·2^32
    ps_hi = b_hi * F32(2.0 ** 32) if right else ps_hi
    ps_lo = b_lo * F32(2.0 ** 32) if right else ps_lo
    l1 = log_f32(d_hi, d_lo)  # log1p(e)
    ce = (zero if right else -u) + l1
    q2_hi, q2_lo = mul_ff(q_hi, q_lo, q_hi, q_lo)
    q4_hi, q4_lo = mul_ff(q2_hi, q2_lo, q2_hi, q2_lo)
    r_hi = q_hi if c_n & 1 else one
    r_lo = q_lo if c_n & 1 else zero
    t_hi, t_lo = mul_ff(r_hi, r_lo, q2_hi, q2_lo)
    r_hi = t_hi if c_n & 2 else r_hi
    r_lo = t_lo if c_n & 2 else r_lo
    t_hi, t_lo = mul_ff(r_hi, r_lo, q4_hi, q4_lo)
    r_hi = t_hi if c_n & 4 else r_hi
    r_lo = t_lo if c_n & 4 else r_lo
    qg = r_hi + r_lo
    if general is not None:
        m = u if right else zero  # softplus(u) = m + l1 in float-float (TwoSum)
        sp = m + l1
        sb = sp - m
        sp_lo = (m - (sp - sb)) + (l1 - sb)
        a_hi = c[2] * sp
        a_lo = fma(c[2], sp, -a_hi) + (c[2] * sp_lo + c[3] * sp)
        ex = exp_neg_f32(-a_hi)
        qf = qg * fma(-ex, a_lo, ex)
        qg = qf if a_hi < F32(104.0) else zero  # exp(-a) rounds to 0 beyond (a_lo NaN at u = inf)
    f_hi, f_lo = mul_ff(c[4] if pos else c[5], zero, qg, zero)
    # g/f = q + γ·p_t·CE as b_1 + b_2, p_t·CE in float-float (0 at u = -inf, CE = inf)
    pce_hi, pce_lo = mul_ff(pt_hi, pt_lo, zero if pt_hi == zero else ce, zero)
    b_1 = fma(c[0], pce_hi, q_hi)
    b_2 = fma(c[0], pce_lo, q_lo)
    g = fma(f_hi, b_1, f_hi * b_2 + f_lo * b_1)
    br = fma(c[0] * ce, fma(c[0], pt, -q), q * c[1])
    hs = zero if ps_hi == zero else fma(ps_hi, br, ps_lo * br)
    return (-g if pos else g), fma(f_hi, hs, f_lo * hs) * F32(2.0 ** -32)


@njit(**JIT)
def focal_grad_hess_hard(o, P, Y, g_out, h_out, n, c, c_n, general):
    """The focal gradient and Hessian of a block of hard labels (plain pass, no smoothing,
    float32): focal_hard; NaN as loss_elements. general: φ > 0 (None or not)."""
    prefer_wide_vectors()
    omit = o.nan_mode == NAN_OMIT
    raise_ = o.nan_mode == NAN_RAISE
    c0, c1, c2, c3, c4, c5 = c[0], c[1], c[2], c[3], c[4], c[5]
    cc = (c0, c1, c2, c3, c4, c5)
    nan_bad = False
    for k in range(n):
        x = P[k]
        y = Y[k]
        isn = x != x
        nan_bad |= isn & raise_
        g, h = focal_hard(x, y, cc, c_n, general)
        nan = F32(0.0) if omit else x + y
        g_out[k] = nan if isn else g
        h_out[k] = nan if isn else h
    return FLAG_NAN if nan_bad else 0


def focal_hard_block(o, P, Y, g_out, h_out, n, c, c_n, sq):
    raise NotImplementedError


@overload(focal_hard_block, inline="always")
def _focal_hard_block_overload(o, P, Y, g_out, h_out, n, c, c_n, sq):
    """float32 predictions, no smoothing, labels Y all 0 or 1: focal_grad_hess_hard's error bits,
    else -1 (the caller takes focal_grad_hess_plain); -1 for float64 predictions, whose form
    compiles no float32 code (C: fb_element_chunk's focal32)."""
    if P.dtype != types.float32:
        return lambda o, P, Y, g_out, h_out, n, c, c_n, sq: -1

    def impl(o, P, Y, g_out, h_out, n, c, c_n, sq):
        hard = o.shift == 0.0
        for k in range(n):
            hard &= (Y[k] == 0) | (Y[k] == 1)
        if not hard:
            return -1
        if sq is not None:
            return focal_grad_hess_hard(o, P, Y, g_out, h_out, n, c, c_n, None)
        return focal_grad_hess_hard(o, P, Y, g_out, h_out, n, c, c_n, 1)
    return impl


@njit(**JIT)
def element_chunk(y, p, w, pw, mask, out1, out2, o, meta, nll, gamma_alpha, start, stop, gh, pc,
                  pl, lg, cf, fo, sq):
    """Elements [start, stop) of an element pass; returns the error bits. The form, None or
    not: gh the gradient and Hessian (else the losses), pc contiguous predictions of the output's
    type (read in place), pl the forms in P's type alone (loss_plain, grad_hess_plain), and lg,
    cf, fo, sq as loss_elements; meta[i] = (offset, rs, cs) of operand i."""
    prefer_wide_vectors()
    pbuf = np.empty(BLOCK, out1.dtype)
    o1buf = np.empty(BLOCK, out1.dtype)
    o2buf = np.empty(BLOCK, out1.dtype)
    ytbuf = np.empty(BLOCK, out1.dtype)
    ybuf = np.empty(BLOCK)
    wbuf = np.ones(BLOCK)
    pwbuf = np.ones(BLOCK)
    mbuf = np.ones(BLOCK, np.uint8)
    idx = np.empty(BLOCK, np.int64)
    ncols = o.ncols
    p_off = meta[1, 0]
    o1_off = meta[5, 0]
    o2_off = meta[6, 0]
    # outputs in place where contiguous, else through the buffers
    o1_in_place = meta[5, 1] == ncols * meta[5, 2] and meta[5, 2] == 1
    o2_in_place = meta[6, 1] == ncols * meta[6, 2] and meta[6, 2] == 1
    # focal, float32: blocks of 0/1 labels take focal_grad_hess_hard (focal_hard_block), with
    # γ = c_n + φ (c_n = min(⌊γ⌋, 7)) and the constants fc of focal_hard
    gamma, alpha = gamma_alpha[0], gamma_alpha[1]
    c_n = 7 if gamma >= 7.0 else int(gamma)
    phi = gamma - c_n
    fc = np.empty(6, np.float32)
    fc[0] = gamma
    fc[1] = 1.0 + 2.0 * gamma
    fc[2] = phi
    fc[3] = phi - np.float64(F32(phi))
    fc[4] = alpha if alpha >= 0.0 else 1.0
    fc[5] = 1.0 - alpha if alpha >= 0.0 else 1.0
    bad = 0
    for b0 in range(start, stop, BLOCK):
        n = min(stop - b0, BLOCK)
        if pl is None:
            load(y, meta[0], ncols, b0, n, idx, ybuf)
        if o.has_w:
            load(w, meta[2], ncols, b0, n, idx, wbuf)
        if o.has_pw:
            load(pw, meta[3], ncols, b0, n, idx, pwbuf)
        if o.has_mask:
            off = meta[4, 0]
            how = offsets(off, meta[4, 1], meta[4, 2], ncols, b0, n, idx)
            for k in range(n):
                mbuf[k] = mask[off + b0 + k if how == 1 else off if how == 2 else idx[k]]
        if pc is not None:
            P = p[p_off + b0:p_off + b0 + n]
        else:
            load_pred(p, meta[1], ncols, b0, n, idx, pbuf)
            P = pbuf
        w1 = out1[o1_off + b0:o1_off + b0 + n] if o1_in_place else o1buf
        if gh is not None:
            w2 = out2[o2_off + b0:o2_off + b0 + n] if o2_in_place else o2buf
            if pl is not None:
                load_pred(y, meta[0], ncols, b0, n, idx, ytbuf)
                hard = -1 if fo is None else focal_hard_block(o, P, ytbuf, w1, w2, n, fc, c_n, sq)
                if fo is None:
                    bad |= grad_hess_plain(o, P, ytbuf, w1, w2, n)
                elif hard >= 0:
                    bad |= hard
                else:
                    bad |= focal_grad_hess_plain(o, gamma_alpha, P, ytbuf, w1, w2, n, sq)
            else:
                    bad |= grad_hess_elements(o, gamma_alpha, P, ybuf, wbuf, pwbuf, mbuf, w1, w2, n,
                                          cf, fo, sq)
            store(out2, meta[6], ncols, b0, n, idx, o2buf)
        elif pl is not None:
            load_pred(y, meta[0], ncols, b0, n, idx, ytbuf)
            if lg is not None:
                bad |= loss_plain(o, nll, P, ytbuf, w1, n, lg, None)
            else:
                soft = False
                for k in range(n):
                    soft |= (ytbuf[k] != 0.0) & (ytbuf[k] != 1.0)
                if soft:
                    bad |= loss_plain(o, nll, P, ytbuf, w1, n, None, 1)
                else:
                    bad |= loss_plain(o, nll, P, ytbuf, w1, n, None, None)
        elif fo is not None:
            bad |= loss_elements(o, nll, gamma_alpha, P, ybuf, wbuf, pwbuf, mbuf, w1, n, lg, None,
                                 cf, fo, sq)
        elif lg is not None:
            bad |= loss_elements(o, nll, gamma_alpha, P, ybuf, wbuf, pwbuf, mbuf, w1, n, lg, None,
                                 cf, None, None)
        else:
            soft = o.shift != 0.0
            for k in range(n):
                soft |= (ybuf[k] != 0.0) & (ybuf[k] != 1.0)
            if soft:
                bad |= loss_elements(o, nll, gamma_alpha, P, ybuf, wbuf, pwbuf, mbuf, w1, n, None,
                                     1, cf, None, None)
            else:
                bad |= loss_elements(o, nll, gamma_alpha, P, ybuf, wbuf, pwbuf, mbuf, w1, n, None,
                                     None, cf, None, None)
        store(out1, meta[5], ncols, b0, n, idx, o1buf)
    return bad


def _make_pass(gh, pc, pl, lg, cf, fo, sq):
    """The chunks [c0, c1) of an element pass, one after the other, for one form: its flags (None
    or 1, as element_chunk) are constants of the closure, so that element_chunk and the block
    functions are compiled for that form alone (Numba prunes a branch on an argument only when it
    is None or a constant). Threads run ranges of chunks (dispatch.run_chunks): a parallel loop
    would compile the chunk's code twice more (its gufunc and the function around it)."""
    @njit(**JIT)
    def element_chunks_form(y, p, w, pw, mask, out1, out2, flags, options, meta, nll, gamma_alpha,
                            n, c0, c1):
        """options: the fields of _Args as a plain tuple (a named tuple argument costs ~10 µs a
        call to type in Python)."""
        prefer_wide_vectors()
        o = _Args(*options)
        for c in range(c0, c1):
            start = c * ELEMENT_CHUNK
            flags[c] = element_chunk(y, p, w, pw, mask, out1, out2, o, meta, nll, gamma_alpha,
                                     start, min(n, start + ELEMENT_CHUNK), gh, pc, pl, lg, cf, fo,
                                     sq)
    return element_chunks_form


_PASSES = {}  # form -> its kernel over a range of chunks (_make_pass), made on first use


_NO_F64 = np.ones(1)
_NO_U8 = np.ones(1, np.uint8)


def element_pass(y, p, w, pw, mask, shape, flags, out1, out2, options, n_threads):
    """Same contract as the Cython ``element_pass`` (kernels.ElementOptions)."""
    has_w, has_pw, has_mask = (operand[2] != K_NONE for operand in (w, pw, mask))
    if out2 is None:
        out2 = (np.empty(1, out1[0].dtype), 0, out1[2], 0, 0)
    operands = (y, p, w, pw, mask, out1, out2)
    meta = np.array([(op[1], op[3], op[4]) for op in operands], np.int64)
    # weights in float64 (one compilation for both weight dtypes); inputs read-only (one for both)
    inputs = [y[0], p[0], w[0].astype(np.float64, copy=False) if has_w else _NO_F64,
              pw[0].astype(np.float64, copy=False) if has_pw else _NO_F64,
              mask[0] if has_mask else _NO_U8]
    inputs = [a.view() for a in inputs]
    for a in inputs:
        a.flags.writeable = False
    o = (int(shape[1]), bool(options.from_logits), int(options.nan_mode), bool(has_w),
         bool(has_pw), bool(has_mask), float(options.clip_lo), float(options.clip_hi),
         1.0 - float(options.smoothing), 0.5 * float(options.smoothing))  # the fields of _Args
    is_focal = options.gamma != 0.0 or options.alpha >= 0.0
    # float64 coefficients: pos_weight, smoothing, or float64 labels with float32 predictions
    coef = has_pw or options.smoothing != 0.0 or (y[2] == K_F64 and out1[2] != K_F64)
    contiguous_p = p[2] == out1[2] and p[4] == 1 and p[3] == shape[1]
    on = {True: 1, False: None}  # the form: None or not (element_chunk)
    grad_hess = options.output == ELEMENT_GRAD_HESS
    # no weight, pos_weight or mask and labels exact in the output's type: the plain forms (no
    # smoothing or focal factor), or the focal gradient and Hessian
    bare = not (has_w or has_pw or has_mask or (y[2] == K_F64 and out1[2] != K_F64))
    plain = bare and (grad_hess if is_focal else options.smoothing == 0.0)
    form = (on[grad_hess], on[contiguous_p], on[plain],
            on[bool(options.from_logits)], on[coef], on[is_focal],
            on[is_focal and options.gamma_n >= 0])
    if form not in _PASSES:
        _PASSES[form] = _make_pass(*form)
    args = (*inputs, out1[0], out2[0], flags, o, meta, tuple(float(v) for v in options.nll),
            (float(options.gamma), float(options.alpha), int(options.gamma_n)),
            int(shape[0]) * int(shape[1]))
    run_chunks(_PASSES[form], args, flags.shape[0], n_threads)
