/* C fast path, element forms: the twin of kernels/numba/forms.py (same functions, same order).
 * The loss and gradient of one element: hard and soft labels from probabilities, logits, the
 * coefficients of pos_weight and label smoothing, focal loss, and the loss carried by a product.
 * A template: included by variant.h once per variant for float (FB_T float, functions
 * *_f32_<variant>) and for double (*_f64_<variant>). */

/* -log of the probability of the observed class, hard label y in {0, 1}, p clipped to
 * [clip_lo, clip_hi]: -log q (y = 1) or -log(1 - q) (y = 0). 1 - p is hi + lo exactly. */
FB_INLINE FB_T FB_NAME(fb_nll_hard)(FB_T p, FB_T y, FB_T clip_lo, FB_T clip_hi, FB_T lo_pos,
                                    FB_T lo_neg, FB_T hi_pos, FB_T hi_neg)
{
    FB_T hi0 = FB_ONE - p;
    FB_T lo0 = (FB_ONE - hi0) - p;
    int pos = y != FB_ZERO;
    FB_T l = -FB_LOG(pos ? p : hi0, pos ? FB_ZERO : lo0);
    l = p < clip_lo ? (pos ? lo_pos : lo_neg) : l;
    return p > clip_hi ? (pos ? hi_pos : hi_neg) : l;
}

/* Soft labels: -[a·log q + b·log(1-q)], a = y and b = 1-y (with pos_weight and label smoothing:
 * fb_coef_*), a term with a zero coefficient left out; equal to fb_nll_hard bit for bit
 * when a = y is 0 or 1 and b = 1 - y. */
FB_INLINE FB_T FB_NAME(fb_nll_soft)(FB_T p, FB_T a, FB_T b, FB_T clip_lo, FB_T clip_hi,
                                    FB_T lo_pos, FB_T lo_neg, FB_T hi_pos, FB_T hi_neg)
{
    FB_T hi0 = FB_ONE - p;
    FB_T lo0 = (FB_ONE - hi0) - p;
    FB_T l1 = -FB_LOG(p, FB_ZERO);
    FB_T l0 = -FB_LOG(hi0, lo0);
    int clo = p < clip_lo, chi = p > clip_hi;
    l1 = clo ? lo_pos : (chi ? hi_pos : l1);
    l0 = clo ? lo_neg : (chi ? hi_neg : l0);
    return (a != FB_ZERO ? a * l1 : FB_ZERO) + (b != FB_ZERO ? b * l0 : FB_ZERO);
}

/* exp(-|x|) of a logit x: the one exponential of both the loss and the gradient. */
FB_INLINE FB_T FB_NAME(fb_exp_abs)(FB_T x)
{
    return FB_EXP(-FB_ABS(x));
}

/* Logit x, coefficients a, b of the two terms (a = y, b = 1-y, or fb_coef_*),
 * e = exp(-|x|): a·softplus(-x) + b·softplus(x) = |x|·(x >= 0 ? b : a) + (a + b)·log1p(e), a zero
 * coefficient leaving its term out (x = ±inf); the factor a + b is 1 unless has_coef. */
FB_INLINE FB_T FB_NAME(fb_nll_logit)(FB_T x, FB_T a, FB_T b, FB_T e, int has_coef)
{
    FB_T hi = FB_ONE + e;
    FB_T lo = e - (hi - FB_ONE);
    FB_T c = x >= FB_ZERO ? b : a;
    FB_T lin = c != FB_ZERO ? FB_ABS(x) * c : FB_ZERO;
    FB_T log1p_e = FB_LOG(hi, lo);
    return lin + (has_coef ? (a + b) * log1p_e : log1p_e);
}

/* dl/dp in float64 (before weights): (p - y) / (p(1 - p)) inside [clip_lo, clip_hi], else 0; with
 * coefficients a, b (has_coef, fb_coef_*): -a/p + b/(1-p) = (b·p - a·(1-p)) / (p(1 - p)). */
FB_INLINE double FB_NAME(fb_grad_prob)(FB_T p, FB_T y, double a, double b, FB_T clip_lo,
                                       FB_T clip_hi, int has_coef)
{
    double pd = (double)p, yd = (double)y;
    double hi0 = 1.0 - pd;
    double lo0 = (1.0 - hi0) - pd;
    double num = has_coef ? FB_FMA(b, pd, -(a * hi0)) : pd - yd;
    double g = num / FB_FMA(pd, hi0, pd * lo0);
    return (p < clip_lo) | (p > clip_hi) ? 0.0 : g;
}

/* dl/dx in float64 from e = exp(-|x|) (before weights), coefficients a, b (a = y, b = 1-y, or
 * fb_coef_*): b·σ(x) - a·σ(-x), with σ(|x|) = 1/(1+e) and σ(-|x|) = e/(1+e), is
 * (u + v·e) / (1 + e), u = b and v = -a for x >= 0, u = -a and v = b for x < 0: the numerator
 * rounded once (FMA), then one division. */
FB_INLINE double FB_NAME(fb_grad_logit)(FB_T x, double a, double b, FB_T e)
{
    double ed = (double)e;
    int right = x >= FB_ZERO;
    return FB_FMA(right ? -a : b, ed, right ? b : -a) / (1.0 + ed);
}

/* The coefficients of the positive and negative terms with a pos_weight pw and label smoothing
 * (y -> y·keep + shift), in float64: a = pw·(y·keep + shift) and b = (1-y)·keep + shift, b formed
 * from 1 - y so that it keeps its relative precision when the smoothed label is near 1. */
FB_INLINE double FB_NAME(fb_coef_pos)(const fb_args *a, double pw, FB_T y)
{
    return pw * ((double)y * a->keep + a->shift);
}

FB_INLINE double FB_NAME(fb_coef_neg)(const fb_args *a, FB_T y)
{
    return (1.0 - (double)y) * a->keep + a->shift;
}

/* Focal loss of one element, in float64 for float32 predictions too (a float32 1-p_t would
 * carry its rounding into (1-p_t)^γ γ times): FL = α_t·(1-p_t)^γ·CE, CE = a·(-log q) + b·(-log(1-q))
 * the soft or logit form in float64 with a = pw·y', b = 1 - y' of the smoothed label y',
 * 1-p_t = y'·(1-q) + b·q, α_t = α·y' + (1-α)·b (1 without α); with want_grad its derivative
 * instead: f·dCE/dv + γ·f·(b - y')·(dq/dv)/(1-p_t)·CE with f = α_t·(1-p_t)^γ and dq/dv = 1 inside
 * the clip (probabilities) or σ(x)σ(-x); f = 0 gives 0 for both. The general kernel's formula
 * (weighted_element of kernels/numba/general.py) in the same order; logits, by_squaring (γ an
 * integer <= 7, fb_pow_unit) and want_grad are constants at each call site. */
FB_INLINE double FB_NAME(fb_focal)(const fb_args *a, FB_T v, FB_T y, double pw, int logits,
                                   int by_squaring, int want_grad)
{
    double vd = (double)v, ys = (double)y * a->keep + a->shift;
    double pos = pw * ys, neg = FB_NAME(fb_coef_neg)(a, y);
    double q, q_bar, dq, ce, g;
    if (logits) {
        double e = FB_V(fb_exp_abs_f64)(vd);
        double big = 1.0 / (1.0 + e), small = e * big;
        q = vd >= 0.0 ? big : small;
        q_bar = vd >= 0.0 ? small : big;
        dq = big * small;
        ce = FB_V(fb_nll_logit_f64)(vd, pos, neg, e, 1);
        g = FB_V(fb_grad_logit_f64)(vd, pos, neg, e);
    } else {
        const double q_lo = a->clip_lo, q_hi = a->clip_hi; /* read unconditionally: no masked load */
        q = vd < q_lo ? q_lo : vd;
        q = q > q_hi ? q_hi : q;
        q_bar = 1.0 - q;
        dq = (vd < a->clip_lo) | (vd > a->clip_hi) ? 0.0 : 1.0;
        ce = FB_V(fb_nll_soft_f64)(vd, pos, neg, a->clip_lo, a->clip_hi, a->lo_pos, a->lo_neg,
                                   a->hi_pos, a->hi_neg);
        g = FB_V(fb_grad_prob_f64)(vd, (double)y, pos, neg, a->clip_lo, a->clip_hi, 1);
    }
    double z = ys * q_bar + neg * q;
    double alpha_t = a->alpha >= 0.0 ? a->alpha * ys + (1.0 - a->alpha) * neg : 1.0;
    double f = alpha_t * FB_V(fb_pow_unit)(z, a->gamma, a->gamma_n, by_squaring);
    double d_f = dq != 0.0 ? a->gamma * f * (neg - ys) * (dq / z) : 0.0; /* 0 for γ = 0 */
    double r = want_grad ? f * g + (d_f != 0.0 ? d_f * ce : 0.0) : f * ce;
    return f == 0.0 ? 0.0 : r;
}

/* The loss carried by a product of the product path, from its logarithm: Σ -log q = -log Π q
 * for probabilities; from logits the factors are 1 + exp(-|x|), whose log is added. */
FB_INLINE double FB_NAME(fb_product_loss)(const fb_args *a, double log_product)
{
    return a->logits ? log_product : -log_product;
}
