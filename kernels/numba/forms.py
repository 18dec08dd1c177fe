"""Numba fast path, element forms: the twin of kernels/c/forms.h (same functions, same order).

The loss and gradient of one element: hard and soft labels from probabilities, logits, the
coefficients of pos_weight and label smoothing, focal loss, and the loss carried by a product.
"""

import numpy as np
from numba import njit, types
from numba.extending import overload

from .llvm import INLINE, fma
from .math import as_type_of, exp_neg_f64, exp_neg_typed, log_typed, one_like, pow_unit


@njit(**INLINE)
def nll_hard(p, y, clip_lo, clip_hi, lo_pos, lo_neg, hi_pos, hi_neg):
    """-log q (y = 1) or -log(1 - q) (y = 0), q = clip(p, clip_lo, clip_hi); 1 - p as hi + lo."""
    one = one_like(p)
    zero = one - one
    hi0 = one - p
    lo0 = (one - hi0) - p
    pos = y != zero
    lg = log_typed(p if pos else hi0, zero if pos else lo0)
    l = -lg
    l = (lo_pos if pos else lo_neg) if p < clip_lo else l
    return (hi_pos if pos else hi_neg) if p > clip_hi else l


@njit(**INLINE)
def nll_soft(p, a, b, clip_lo, clip_hi, lo_pos, lo_neg, hi_pos, hi_neg):
    """-[a·log q + b·log(1-q)], a = y and b = 1-y (or coef_pos/coef_neg), a term with a zero
    coefficient left out."""
    one = one_like(p)
    zero = one - one
    hi0 = one - p
    lo0 = (one - hi0) - p
    l1 = -log_typed(p, zero)
    l0 = -log_typed(hi0, lo0)
    clo = p < clip_lo
    chi = p > clip_hi
    l1 = lo_pos if clo else (hi_pos if chi else l1)
    l0 = lo_neg if clo else (hi_neg if chi else l0)
    return (a * l1 if a != zero else zero) + (b * l0 if b != zero else zero)


@njit(**INLINE)
def exp_abs(x):
    """exp(-|x|): the one exponential of a logit's loss and gradient."""
    return exp_neg_typed(-abs(x))


@njit(**INLINE)
def nll_logit(x, a, b, e, has_coef):
    """a·softplus(-x) + b·softplus(x) = |x|·(x >= 0 ? b : a) + (a + b)·log1p(e), e = exp(-|x|),
    a = y and b = 1-y (or coef_pos/coef_neg); the factor a + b is 1 unless has_coef."""
    one = one_like(x)
    zero = one - one
    hi = one + e
    lo = e - (hi - one)
    c = b if x >= zero else a
    lin = abs(x) * c if c != zero else zero
    log1p_e = log_typed(hi, lo)
    return lin + ((a + b) * log1p_e if has_coef else log1p_e)


@njit(**INLINE)
def grad_prob(p, y, a, b, clip_lo, clip_hi, has_coef):
    """dl/dp in float64: (p - y) / (p(1 - p)) inside [clip_lo, clip_hi], else 0; with coefficients
    (has_coef) -a/p + b/(1-p) = (b·p - a·(1-p)) / (p(1 - p))."""
    pd = np.float64(p)
    yd = np.float64(y)
    hi0 = 1.0 - pd
    lo0 = (1.0 - hi0) - pd
    num = fma(b, pd, -(a * hi0)) if has_coef else pd - yd
    g = num / fma(pd, hi0, pd * lo0)
    return 0.0 if (p < clip_lo) | (p > clip_hi) else g


@njit(**INLINE)
def grad_logit(x, a, b, e):
    """dl/dx in float64 from e = exp(-|x|), coefficients a, b: b·σ(x) - a·σ(-x) =
    (u + v·e) / (1 + e), u = b and v = -a for x >= 0, u = -a and v = b for x < 0."""
    ed = np.float64(e)
    right = x >= one_like(x) - one_like(x)
    return fma(-a if right else b, ed, b if right else -a) / (1.0 + ed)


@njit(**INLINE)
def coef_pos(coef, pw, yv):
    """Coefficient of the positive term with a pos_weight pw and label smoothing, in float64:
    pw·(y·keep + shift), coef = (keep, shift)."""
    return pw * (np.float64(yv) * coef[0] + coef[1])


@njit(**INLINE)
def coef_neg(coef, yv):
    """Coefficient of the negative term: (1-y)·keep + shift, formed from 1 - y so that it keeps
    its relative precision when the smoothed label is near 1."""
    return (1.0 - np.float64(yv)) * coef[0] + coef[1]


def coefficients(coef, pw, yv):
    raise NotImplementedError


def coefficients_f64(coef, pw, yv):
    raise NotImplementedError


@overload(coefficients, inline="always")
def _coefficients_overload(coef, pw, yv):
    """(a, b) of the positive and negative terms in the label's type: (y, 1-y) for coef None."""
    if isinstance(coef, types.NoneType):
        return lambda coef, pw, yv: (yv, one_like(yv) - yv)
    return lambda coef, pw, yv: (as_type_of(yv, coef_pos(coef, pw, yv)),
                                 as_type_of(yv, coef_neg(coef, yv)))


@overload(coefficients_f64, inline="always")
def _coefficients_f64_overload(coef, pw, yv):
    """(a, b) in float64 (the gradients): (y, 1-y) for coef None."""
    if isinstance(coef, types.NoneType):
        return lambda coef, pw, yv: (np.float64(yv), 1.0 - np.float64(yv))
    return lambda coef, pw, yv: (coef_pos(coef, pw, yv), coef_neg(coef, yv))


@njit(**INLINE)
def nll_as_type_of(x, nll):
    """The losses at the clip bounds (float64) in the type of x."""
    return (as_type_of(x, nll[0]), as_type_of(x, nll[1]), as_type_of(x, nll[2]),
            as_type_of(x, nll[3]))


@njit(**INLINE)
def focal(v, y, pw, coef, clip_lo, clip_hi, nll, gamma_alpha, logits, by_squaring):
    """(focal loss, its derivative) of one element in float64: α_t·(1-p_t)^γ·CE with the
    coefficients a = pw·y', b = 1 - y' of the smoothed label y', the general kernel's formula
    in the same order;
    gamma_alpha = (γ, α, n), nll in float64."""
    vd = np.float64(v)
    ys = np.float64(y) * coef[0] + coef[1]
    pos = pw * ys
    neg = coef_neg(coef, y)
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
        q_lo = np.float64(clip_lo)
        q_hi = np.float64(clip_hi)
        q = q_lo if vd < q_lo else vd
        q = q_hi if q > q_hi else q
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


@njit(**INLINE)
def product_loss(logits, log_product):
    """The loss carried by a product, from its log: -log Π q for probabilities, +log Π (1 + e)
    from logits."""
    return log_product if logits else -log_product
