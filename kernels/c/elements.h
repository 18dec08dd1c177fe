/* C element passes: the twin of kernels/numba/elements.py (same functions, same order).
 * Per-element outputs with no reduction: the weighted loss (reduction="none") or the gradient and
 * Hessian with respect to the logit (bce_grad_hess). A chunk of flat elements (C order of the 2-D
 * view) is taken block by block: the block's operands, of any kind, stride or broadcast, are
 * loaded into buffers, one vectorised loop per form computes the outputs with the forms of
 * forms.h (the fast path's formulas and accuracy), and they are stored. A template, as forms.h;
 * the argument record once. */

#ifndef FB_ELEMENTS_SHARED
#define FB_ELEMENTS_SHARED
/* An operand: element (i, j) at base[i·rs + j·cs] (strides in elements, 0 where broadcast), of
 * kind FB_K_*; FB_K_NONE: absent. */
typedef struct {
    const void *base;
    int kind;
    int64_t rs, cs;
} fb_operand;

/* Arguments of one element pass. */
typedef struct {
    fb_operand y, p, w, pw, mask;
    void *out1, *out2;          /* FB_ELEMENT_LOSS: out1 = w·loss; GRAD_HESS: out1, out2 = w·g, w·h */
    int64_t o1_rs, o1_cs, o2_rs, o2_cs;
    int64_t ncols;
    int output;                 /* FB_ELEMENT_* */
    int focal;
    fb_args f;                  /* the options the forms read (clip, smoothing, focal, nan_mode) */
} fb_elements;

/* the forms of fb_loss_elements */
#define FB_EL_HARD 0
#define FB_EL_SOFT 1
#define FB_EL_LOGIT 2
#endif

/* The float32 value of a float16 given as its bits, exactly: the exponent and mantissa shifted
 * into a float32 and scaled by 2^112 (normal and subnormal halves alike); inf and NaN kept. */
FB_INLINE float FB_NAME(fb_half)(uint16_t h)
{
    int32_t em = h & 0x7fff;
    float v = fb_from_bits_f32(em << 13) * 0x1p112f;
    int32_t bits = em >= 0x7c00 ? ((em << 13) | 0x7f800000) : fb_bits_f32(v);
    return fb_from_bits_f32(bits | (int32_t)((uint32_t)(h & 0x8000) << 16));
}

/* Offsets of elements [b0, b0 + n) of an operand into idx; returns 1 for a contiguous operand
 * (idx unused: element b0 + k at base[b0 + k]), 2 for a constant one, else 0. */
FB_INLINE int FB_NAME(fb_offsets)(const fb_operand *o, int64_t ncols, int64_t b0, int64_t n,
                                  int64_t *idx)
{
    if (o->rs == ncols * o->cs) {
        if (o->cs == 1)
            return 1;
        if (o->cs == 0)
            return 2;
        for (int64_t k = 0; k < n; k++) idx[k] = (b0 + k) * o->cs;
        return 0;
    }
    int64_t i = b0 / ncols, j = b0 % ncols;
    for (int64_t k = 0; k < n; k++) {
        idx[k] = i * o->rs + j * o->cs;
        if (++j == ncols) {
            j = 0;
            i++;
        }
    }
    return 0;
}

/* Elements [b0, b0 + n) of an operand as double into buf (any kind but FB_K_NONE). */
FB_INLINE void FB_NAME(fb_load)(const fb_operand *o, int64_t ncols, int64_t b0, int64_t n,
                                int64_t *idx, double *buf)
{
    int how = FB_NAME(fb_offsets)(o, ncols, b0, n, idx);
#define FB_LOAD_KIND(TYPE, VALUE) { \
        const TYPE *s = (const TYPE *)o->base; \
        if (how == 1) { for (int64_t k = 0; k < n; k++) buf[k] = VALUE(s[b0 + k]); } \
        else if (how == 2) { double c = VALUE(s[0]); for (int64_t k = 0; k < n; k++) buf[k] = c; } \
        else { for (int64_t k = 0; k < n; k++) buf[k] = VALUE(s[idx[k]]); } }
#define FB_AS_DOUBLE(x) ((double)(x))
#define FB_HALF_DOUBLE(x) ((double)FB_NAME(fb_half)(x))
    if (o->kind == FB_K_U8) FB_LOAD_KIND(uint8_t, FB_AS_DOUBLE)
    else if (o->kind == FB_K_F16) FB_LOAD_KIND(uint16_t, FB_HALF_DOUBLE)
    else if (o->kind == FB_K_F32) FB_LOAD_KIND(float, FB_AS_DOUBLE)
    else FB_LOAD_KIND(double, FB_AS_DOUBLE)
#undef FB_HALF_DOUBLE
#undef FB_AS_DOUBLE
#undef FB_LOAD_KIND
}

/* The predictions (or labels) of a block in FB_T: a pointer into the operand where it is
 * contiguous and of type FB_T, else buf filled (float16 decoded; any kind converted). */
FB_INLINE const FB_T *FB_NAME(fb_load_pred)(const fb_operand *o, int64_t ncols, int64_t b0,
                                            int64_t n, int64_t *idx, FB_T *buf)
{
    int how = FB_NAME(fb_offsets)(o, ncols, b0, n, idx);
    if (o->kind == (sizeof(FB_T) == 4 ? FB_K_F32 : FB_K_F64)) {
        const FB_T *s = (const FB_T *)o->base;
        if (how == 1)
            return s + b0;
        for (int64_t k = 0; k < n; k++) buf[k] = s[how == 2 ? 0 : idx[k]];
        return buf;
    }
    if (o->kind == FB_K_F16) {
        const uint16_t *s = (const uint16_t *)o->base;
        if (how == 1)
            for (int64_t k = 0; k < n; k++) buf[k] = (FB_T)FB_NAME(fb_half)(s[b0 + k]);
        else
            for (int64_t k = 0; k < n; k++) buf[k] = (FB_T)FB_NAME(fb_half)(s[how == 2 ? 0 : idx[k]]);
        return buf;
    }
    if (o->kind == FB_K_U8) {
        const uint8_t *s = (const uint8_t *)o->base;
        for (int64_t k = 0; k < n; k++) buf[k] = (FB_T)s[how == 1 ? b0 + k : how == 2 ? 0 : idx[k]];
        return buf;
    }
    /* float32 labels of float64 predictions (float64 labels of float32 ones take fb_load) */
    const float *s = (const float *)o->base;
    for (int64_t k = 0; k < n; k++) buf[k] = (FB_T)s[how == 1 ? b0 + k : how == 2 ? 0 : idx[k]];
    return buf;
}

/* Store a block's output from buf into out (strides rs, cs) unless it was written in place. */
FB_INLINE void FB_NAME(fb_store)(FB_T *out, int64_t rs, int64_t cs, int64_t ncols, int64_t b0,
                                 int64_t n, int64_t *idx, const FB_T *buf)
{
    fb_operand o = {out, 0, rs, cs};
    if (FB_NAME(fb_offsets)(&o, ncols, b0, n, idx) == 1)
        return;
    for (int64_t k = 0; k < n; k++) out[idx[k]] = buf[k];
}

/* dl/dx and d²l/dx² of the logit form from e = exp(-|x|), coefficients a, b: b·σ(x) - a·σ(-x)
 * (fb_grad_logit's numerator, u + v·e rounded once) and (a + b)·σ(x)σ(-x), with σ(|x|) = 1/(1+e)
 * and σ(-|x|) = e/(1+e): one division for both. Returns the second, the first into *g. */
FB_INLINE double FB_NAME(fb_grad_hess_logit)(double a, double b, FB_T x, FB_T e, double *g)
{
    double ed = (double)e;
    double big = 1.0 / (1.0 + ed);
    int right = x >= FB_ZERO;
    *g = FB_FMA(right ? -a : b, ed, right ? b : -a) * big;
    return (a + b) * ((ed * big) * big);
}

/* Focal loss from a logit x: its first and second derivatives in x, in float64 (into g, h).
 * FL = f·CE, f = α_t·z^γ, z = 1-p_t = y'·σ(-x) + b·σ(x), c = b - y', s = σ(x)σ(-x), r = s/z:
 * f' = γ·f·c·r, f'' = γ·f·c·((γ-1)·c·r² + r·(σ(-x) - σ(x))), FL' = f·g + f'·CE,
 * FL'' = f''·CE + 2·f'·g + f·h with g, h those of CE (fb_grad_logit; (a + b)·s), a term
 * with CE left out where its factor is 0; f = 0 gives 0 for both. Only in float64. */
FB_INLINE void FB_NAME(fb_focal_grad_hess)(const fb_args *a, double x, double y, double pw,
                                           int by_squaring, double *g_out, double *h_out)
{
    double ys = y * a->keep + a->shift;
    double pos = pw * ys, neg = FB_V(fb_coef_neg_f64)(a, y);
    double e = FB_V(fb_exp_abs_f64)(x);
    double big = 1.0 / (1.0 + e), small = e * big;
    double q = x >= 0.0 ? big : small;
    double q_bar = x >= 0.0 ? small : big;
    double s = big * small;
    double ce = FB_V(fb_nll_logit_f64)(x, pos, neg, e, 1);
    double g = FB_V(fb_grad_logit_f64)(x, pos, neg, e);
    double h = (pos + neg) * s;
    double z = ys * q_bar + neg * q;
    double alpha_t = a->alpha >= 0.0 ? a->alpha * ys + (1.0 - a->alpha) * neg : 1.0;
    double f = alpha_t * FB_V(fb_pow_unit)(z, a->gamma, a->gamma_n, by_squaring);
    double c = neg - ys;
    double r = z > 0.0 ? s / z : 0.0;
    double d_f = a->gamma * f * c * r;
    double d2_f = a->gamma * f * c * ((a->gamma - 1.0) * c * r * r + r * (q_bar - q));
    double gr = f * g + (d_f != 0.0 ? d_f * ce : 0.0); /* CE = inf (x = ±inf) where f' = 0 */
    double hr = (d2_f != 0.0 ? d2_f * ce : 0.0) + 2.0 * d_f * g + f * h;
    *g_out = f == 0.0 ? 0.0 : gr;
    *h_out = f == 0.0 ? 0.0 : hr;
}

/* The error bits of one element (counted unless masked or a NaN to omit or raise on). */
FB_INLINE int FB_NAME(fb_element_flags)(const fb_args *a, FB_T p, double y, double w, double pw,
                                        int on, int isn)
{
    const int omit = a->nan_mode == FB_NAN_OMIT, raise = a->nan_mode == FB_NAN_RAISE;
    int skip = (!on) | (isn & (omit | raise));
    int bad = (isn & raise & on) ? FB_FLAG_NAN : 0;
    bad |= (!a->logits & ((p < FB_ZERO) | (p > FB_ONE)) & !skip) ? FB_FLAG_PRED : 0;
    bad |= (((y < 0.0) | (y > 1.0)) & !skip) ? FB_FLAG_LABEL : 0;
    bad |= (!((w >= 0.0) & (w < INFINITY)) & !skip) ? FB_FLAG_WEIGHT : 0;
    bad |= (!((pw >= 0.0) & (pw < INFINITY)) & !skip) ? FB_FLAG_POS_WEIGHT : 0;
    return bad;
}

/* The loss with float64 coefficients a, b (pos_weight, label smoothing, float64 labels of FB_T =
 * float32 predictions): the logarithms in FB_T as fb_nll_soft (logits: fb_nll_logit), the
 * products and their sum in float64, so that a coefficient below FB_T's range keeps its term
 * (an infinite one at x = ±inf) instead of rounding to 0. */
FB_INLINE double FB_NAME(fb_nll_coef)(FB_T p, double a, double b, FB_T clip_lo, FB_T clip_hi,
                                      FB_T lo_pos, FB_T lo_neg, FB_T hi_pos, FB_T hi_neg,
                                      int logits)
{
    if (logits) {
        FB_T e = FB_NAME(fb_exp_abs)(p);
        FB_T hi = FB_ONE + e;
        FB_T lo = e - (hi - FB_ONE);
        double c = p >= FB_ZERO ? b : a;
        double lin = c != 0.0 ? (double)FB_ABS(p) * c : 0.0;
        return lin + (a + b) * (double)FB_LOG(hi, lo);
    }
    FB_T hi0 = FB_ONE - p;
    FB_T lo0 = (FB_ONE - hi0) - p;
    FB_T l1 = -FB_LOG(p, FB_ZERO);
    FB_T l0 = -FB_LOG(hi0, lo0);
    int clo = p < clip_lo, chi = p > clip_hi;
    l1 = clo ? lo_pos : (chi ? hi_pos : l1);
    l0 = clo ? lo_neg : (chi ? hi_neg : l0);
    return (a != 0.0 ? a * (double)l1 : 0.0) + (b != 0.0 ? b * (double)l0 : 0.0);
}

/* The weighted losses of a block into out; returns the error bits. form: FB_EL_HARD (labels
 * 0 or 1, no smoothing), FB_EL_SOFT, FB_EL_LOGIT (the loss in FB_T, as the fast path), or
 * focal (fb_focal in float64); has_coef: float64 coefficients (fb_coef_*, fb_nll_coef). All
 * but the data are constants at each call site. NaN: 0 when omitted, else NaN; masked: 0. */
FB_INLINE int FB_NAME(fb_loss_elements)(const fb_args *a, const FB_T *P, const double *ybuf,
                                        const double *wbuf, const double *pwbuf,
                                        const uint8_t *mbuf, FB_T *out, int64_t n, int form,
                                        int has_coef, int focal, int by_squaring)
{
    const FB_T clip_lo = (FB_T)a->clip_lo, clip_hi = (FB_T)a->clip_hi;
    const FB_T lo_pos = (FB_T)a->lo_pos, lo_neg = (FB_T)a->lo_neg;
    const FB_T hi_pos = (FB_T)a->hi_pos, hi_neg = (FB_T)a->hi_neg;
    const int omit = a->nan_mode == FB_NAN_OMIT;
    int bad = 0;
#pragma omp simd reduction(|:bad)
    for (int64_t k = 0; k < n; k++) {
        FB_T p = P[k];
        double yd = ybuf[k], w = wbuf[k], pw = pwbuf[k];
        FB_T y = (FB_T)yd;
        int on = mbuf[k] != 0, isn = (p != p) | (yd != yd);
        bad |= FB_NAME(fb_element_flags)(a, p, yd, w, pw, on, isn);
        double l;
        if (focal) {
            l = FB_V(fb_focal_f64)(a, (double)p, yd, pw, form == FB_EL_LOGIT, by_squaring, 0);
        } else if (has_coef) {
            double pos = FB_V(fb_coef_pos_f64)(a, pw, yd), neg = FB_V(fb_coef_neg_f64)(a, yd);
            if (form == FB_EL_HARD) {
                l = (double)FB_NAME(fb_nll_hard)(p, y, clip_lo, clip_hi, lo_pos, lo_neg, hi_pos, hi_neg);
                l = yd != 0.0 ? pos * l : l;
            } else
                l = FB_NAME(fb_nll_coef)(p, pos, neg, clip_lo, clip_hi, lo_pos, lo_neg, hi_pos,
                                         hi_neg, form == FB_EL_LOGIT);
        } else {
            FB_T lt;
            if (form == FB_EL_HARD)
                lt = FB_NAME(fb_nll_hard)(p, y, clip_lo, clip_hi, lo_pos, lo_neg, hi_pos, hi_neg);
            else if (form == FB_EL_SOFT)
                lt = FB_NAME(fb_nll_soft)(p, y, FB_ONE - y, clip_lo, clip_hi, lo_pos, lo_neg, hi_pos, hi_neg);
            else
                lt = FB_NAME(fb_nll_logit)(p, y, FB_ONE - y, FB_NAME(fb_exp_abs)(p), 0);
            l = (double)lt;
        }
        double v = isn ? (omit ? 0.0 : (double)p + yd) : w * l;
        out[k] = (FB_T)(on ? v : 0.0);
    }
    return bad;
}

/* The losses of a block with no weight, pos_weight, mask, smoothing or focal factor, in FB_T
 * alone (labels Y in FB_T): the values of fb_loss_elements at w = 1, without its float64
 * operations. form as fb_loss_elements. */
FB_INLINE int FB_NAME(fb_loss_plain)(const fb_args *a, const FB_T *P, const FB_T *Y, FB_T *out,
                                     int64_t n, int form)
{
    const FB_T clip_lo = (FB_T)a->clip_lo, clip_hi = (FB_T)a->clip_hi;
    const FB_T lo_pos = (FB_T)a->lo_pos, lo_neg = (FB_T)a->lo_neg;
    const FB_T hi_pos = (FB_T)a->hi_pos, hi_neg = (FB_T)a->hi_neg;
    const int omit = a->nan_mode == FB_NAN_OMIT, raise = a->nan_mode == FB_NAN_RAISE;
    const int logits = a->logits;
    int bad = 0;
#pragma omp simd reduction(|:bad)
    for (int64_t k = 0; k < n; k++) {
        FB_T p = P[k], y = Y[k];
        int isn = (p != p) | (y != y);
        int skip = isn & (omit | raise);
        bad |= (isn & raise) ? FB_FLAG_NAN : 0;
        bad |= (!logits & ((p < FB_ZERO) | (p > FB_ONE)) & !skip) ? FB_FLAG_PRED : 0;
        bad |= (((y < FB_ZERO) | (y > FB_ONE)) & !skip) ? FB_FLAG_LABEL : 0;
        FB_T l;
        if (form == FB_EL_HARD)
            l = FB_NAME(fb_nll_hard)(p, y, clip_lo, clip_hi, lo_pos, lo_neg, hi_pos, hi_neg);
        else if (form == FB_EL_SOFT)
            l = FB_NAME(fb_nll_soft)(p, y, FB_ONE - y, clip_lo, clip_hi, lo_pos, lo_neg, hi_pos, hi_neg);
        else
            l = FB_NAME(fb_nll_logit)(p, y, FB_ONE - y, FB_NAME(fb_exp_abs)(p), 0);
        out[k] = isn ? (omit ? FB_ZERO : p + y) : l;
    }
    return bad;
}

/* The weighted gradient and Hessian in the logit of a block into g_out, h_out; returns the error
 * bits. BCE: fb_grad_hess_logit from exp(-|x|) in FB_T; focal: fb_focal_grad_hess.
 * Constants and NaN, mask as fb_loss_elements. */
FB_INLINE int FB_NAME(fb_grad_hess_elements)(const fb_args *a, const FB_T *P, const double *ybuf,
                                             const double *wbuf, const double *pwbuf,
                                             const uint8_t *mbuf, FB_T *g_out, FB_T *h_out,
                                             int64_t n, int has_coef, int focal, int by_squaring)
{
    const int omit = a->nan_mode == FB_NAN_OMIT;
    int bad = 0;
#pragma omp simd reduction(|:bad)
    for (int64_t k = 0; k < n; k++) {
        FB_T x = P[k];
        double yd = ybuf[k], w = wbuf[k], pw = pwbuf[k];
        int on = mbuf[k] != 0, isn = (x != x) | (yd != yd);
        bad |= FB_NAME(fb_element_flags)(a, x, yd, w, pw, on, isn);
        double g, h;
        if (focal) {
            FB_V(fb_focal_grad_hess_f64)(a, (double)x, yd, pw, by_squaring, &g, &h);
        } else {
            double pos = has_coef ? FB_V(fb_coef_pos_f64)(a, pw, yd) : yd;
            double neg = has_coef ? FB_V(fb_coef_neg_f64)(a, yd) : 1.0 - yd;
            h = FB_NAME(fb_grad_hess_logit)(pos, neg, x, FB_NAME(fb_exp_abs)(x), &g);
        }
        double nan = omit ? 0.0 : (double)x + yd;
        g = isn ? nan : w * g;
        h = isn ? nan : w * h;
        g_out[k] = (FB_T)(on ? g : 0.0);
        h_out[k] = (FB_T)(on ? h : 0.0);
    }
    return bad;
}

/* The gradient and Hessian of a block with no weight, pos_weight, mask, smoothing or focal
 * factor, in FB_T alone (labels Y in FB_T): a = y, b = 1 - y (a + b = 1), e = exp(-|x|),
 * g = (u + v·e)/(1 + e) as fb_grad_hess_logit and h = e/(1 + e)², the square from 1 + e = hi + lo
 * so that the rounding of 1 + e is not doubled. NaN as fb_loss_elements. */
FB_INLINE int FB_NAME(fb_grad_hess_plain)(const fb_args *a, const FB_T *P, const FB_T *Y,
                                          FB_T *g_out, FB_T *h_out, int64_t n)
{
    const int omit = a->nan_mode == FB_NAN_OMIT, raise = a->nan_mode == FB_NAN_RAISE;
    int bad = 0;
#pragma omp simd reduction(|:bad)
    for (int64_t k = 0; k < n; k++) {
        FB_T x = P[k], y = Y[k];
        int isn = (x != x) | (y != y);
        int skip = isn & (omit | raise);
        bad |= (isn & raise) ? FB_FLAG_NAN : 0;
        bad |= (((y < FB_ZERO) | (y > FB_ONE)) & !skip) ? FB_FLAG_LABEL : 0;
        FB_T e = FB_NAME(fb_exp_abs)(x);
        FB_T hi = FB_ONE + e;
        FB_T lo = e - (hi - FB_ONE);
        FB_T b = FB_ONE - y;
        int right = x >= FB_ZERO;
        FB_T g = FB_FMAT(right ? -y : b, e, right ? b : -y) / hi;
        FB_T h = e / FB_FMAT(hi, hi, (hi + hi) * lo);
        FB_T nan = omit ? FB_ZERO : x + y;
        g_out[k] = isn ? nan : g;
        h_out[k] = isn ? nan : h;
    }
    return bad;
}

/* The focal gradient and Hessian of a block with no weight, pos_weight or mask, labels Y in FB_T
 * (exact): fb_focal_grad_hess in float64 as fb_grad_hess_elements computes it, without the
 * float64 buffers of weights and mask and their checks. NaN as fb_loss_elements. */
FB_INLINE int FB_NAME(fb_focal_grad_hess_plain)(const fb_args *a, const FB_T *P, const FB_T *Y,
                                                FB_T *g_out, FB_T *h_out, int64_t n,
                                                int by_squaring)
{
    const int omit = a->nan_mode == FB_NAN_OMIT, raise = a->nan_mode == FB_NAN_RAISE;
    int bad = 0;
#pragma omp simd reduction(|:bad)
    for (int64_t k = 0; k < n; k++) {
        FB_T x = P[k], y = Y[k];
        int isn = (x != x) | (y != y);
        int skip = isn & (omit | raise);
        bad |= (isn & raise) ? FB_FLAG_NAN : 0;
        bad |= (((y < FB_ZERO) | (y > FB_ONE)) & !skip) ? FB_FLAG_LABEL : 0;
        double g, h;
        FB_V(fb_focal_grad_hess_f64)(a, (double)x, (double)y, 1.0, by_squaring, &g, &h);
        double nan = omit ? 0.0 : (double)x + (double)y;
        g_out[k] = (FB_T)(isn ? nan : g);
        h_out[k] = (FB_T)(isn ? nan : h);
    }
    return bad;
}

/* Focal gradient and Hessian of a hard label y (0 or 1) from a float32 logit x, in float32 (FB_EXACT_FMA
 * variants). t = 2y-1, u = t·x, p_t = σ(u), q = 1-p_t, CE = softplus(-u), f = α_t·q^γ:
 * g = -t·f·(q + γ·p_t·CE) (terms of one sign), h = f·p_t·(q·(1+2γ) + γ·CE·(γ·p_t - q)), the
 * Hessian of fb_focal_grad_hess. e = exp(-|x|) and q in float-float, q^γ = q^n·q^φ: q^n
 * (n = c_n <= 7) by float-float squaring, q^φ = exp(-φ·softplus(u)) with its argument in
 * float-float (general: φ > 0), so that no rounding is raised to the power γ; p_t·h scaled by 2^32
 * (fb_exp_neg_ff_f32) for subnormal p_t. c: γ, 1 + 2γ, φ in two parts, α_t of y = 1 and y = 0. */
FB_INLINE void FB_NAME(fb_focal_hard)(float x, float y, const float *c, int c_n, int general,
                                      float *g_out, float *h_out)
{
    int pos = y != 0.0f;
    float u = pos ? x : -x;
    float es_hi, es_lo; /* e·2^32 */
    FB_V(fb_exp_neg_ff_f32)(-__builtin_fabsf(x), &es_hi, &es_lo);
    float e_hi = es_hi * 0x1p-32f, e_lo = es_lo * 0x1p-32f;
    float d_hi = 1.0f + e_hi;
    float d_lo = ((1.0f - d_hi) + e_hi) + e_lo;
    float b_hi = 1.0f / d_hi; /* σ(|x|) = 1/(1 + e) */
    float b_lo = (FB_FMAF(-b_hi, d_hi, 1.0f) - b_hi * d_lo) * b_hi;
    float s_hi, s_lo; /* σ(-|x|) = e/(1 + e) */
    FB_V(fb_mul_ff)(e_hi, e_lo, b_hi, b_lo, &s_hi, &s_lo);
    int right = u >= 0.0f;
    float q_hi = right ? s_hi : b_hi, q_lo = right ? s_lo : b_lo;
    float q = q_hi + q_lo;
    float pt_hi = right ? b_hi : s_hi, pt_lo = right ? b_lo : s_lo;
    float pt = pt_hi + pt_lo;
    float ps_hi, ps_lo; /* p_t·2^32 */
    FB_V(fb_mul_ff)(es_hi, es_lo, b_hi, b_lo, &ps_hi, &ps_lo);
    ps_hi = right ? b_hi * 0x1p32f : ps_hi;
    ps_lo = right ? b_lo * 0x1p32f : ps_lo;
    float l1 = FB_V(fb_log_f32)(d_hi, d_lo); /* log1p(e) */
    float ce = (right ? 0.0f : -u) + l1;
    float q2_hi, q2_lo, q4_hi, q4_lo, r_hi, r_lo, t_hi, t_lo;
    FB_V(fb_mul_ff)(q_hi, q_lo, q_hi, q_lo, &q2_hi, &q2_lo);
    FB_V(fb_mul_ff)(q2_hi, q2_lo, q2_hi, q2_lo, &q4_hi, &q4_lo);
    r_hi = c_n & 1 ? q_hi : 1.0f;
    r_lo = c_n & 1 ? q_lo : 0.0f;
    FB_V(fb_mul_ff)(r_hi, r_lo, q2_hi, q2_lo, &t_hi, &t_lo);
    r_hi = c_n & 2 ? t_hi : r_hi;
    r_lo = c_n & 2 ? t_lo : r_lo;
    FB_V(fb_mul_ff)(r_hi, r_lo, q4_hi, q4_lo, &t_hi, &t_lo);
    r_hi = c_n & 4 ? t_hi : r_hi;
    r_lo = c_n & 4 ? t_lo : r_lo;
    float qg = r_hi + r_lo;
    if (general) {
        float m = right ? u : 0.0f; /* softplus(u) = m + l1 in float-float (TwoSum) */
        float sp = m + l1, sb = sp - m;
        float sp_lo = (m - (sp - sb)) + (l1 - sb);
        float a_hi = c[2] * sp;
        float a_lo = FB_FMAF(c[2], sp, -a_hi) + (c[2] * sp_lo + c[3] * sp);
        float ex = FB_V(fb_exp_neg_f32)(-a_hi);
        float qf = qg * FB_FMAF(-ex, a_lo, ex);
        qg = a_hi < 104.0f ? qf : 0.0f; /* exp(-a) rounds to 0 beyond (a_lo NaN at u = inf) */
    }
    float f_hi, f_lo;
    FB_V(fb_mul_ff)(pos ? c[4] : c[5], 0.0f, qg, 0.0f, &f_hi, &f_lo);
    /* g/f = q + γ·p_t·CE as b_1 + b_2, p_t·CE in float-float (0 at u = -inf, CE = inf) */
    float pce_hi, pce_lo;
    FB_V(fb_mul_ff)(pt_hi, pt_lo, pt_hi == 0.0f ? 0.0f : ce, 0.0f, &pce_hi, &pce_lo);
    float b_1 = FB_FMAF(c[0], pce_hi, q_hi);
    float b_2 = FB_FMAF(c[0], pce_lo, q_lo);
    float g = FB_FMAF(f_hi, b_1, f_hi * b_2 + f_lo * b_1);
    float br = FB_FMAF(c[0] * ce, FB_FMAF(c[0], pt, -q), q * c[1]);
    float hs = ps_hi == 0.0f ? 0.0f : FB_FMAF(ps_hi, br, ps_lo * br);
    *g_out = pos ? -g : g;
    *h_out = FB_FMAF(f_hi, hs, f_lo * hs) * 0x1p-32f;
}

/* The focal gradient and Hessian of a block of hard labels (plain pass, no smoothing, float32):
 * fb_focal_hard; NaN as fb_loss_elements. general: φ > 0 (γ not an integer <= 7). */
FB_INLINE int FB_NAME(fb_focal_grad_hess_hard)(const fb_args *a, const FB_T *P, const FB_T *Y,
                                               FB_T *g_out, FB_T *h_out, int64_t n,
                                               const float *c, int c_n, int general)
{
    const int omit = a->nan_mode == FB_NAN_OMIT, raise = a->nan_mode == FB_NAN_RAISE;
    int bad = 0;
#pragma omp simd reduction(|:bad)
    for (int64_t k = 0; k < n; k++) {
        float x = (float)P[k], y = (float)Y[k];
        int isn = x != x;
        bad |= (isn & raise) ? FB_FLAG_NAN : 0;
        float g, h;
        FB_NAME(fb_focal_hard)(x, y, c, c_n, general, &g, &h);
        float nan = omit ? 0.0f : x + y;
        g_out[k] = (FB_T)(isn ? nan : g);
        h_out[k] = (FB_T)(isn ? nan : h);
    }
    return bad;
}

/* Elements [start, stop) of an element pass; returns the error bits. */
FB_TARGET __attribute__((noinline))
static int FB_NAME(fb_element_chunk)(const fb_elements *e, int64_t start, int64_t stop)
{
    FB_T pbuf[FB_BLOCK] __attribute__((aligned(64)));
    FB_T o1buf[FB_BLOCK] __attribute__((aligned(64)));
    FB_T o2buf[FB_BLOCK] __attribute__((aligned(64)));
    FB_T ytbuf[FB_BLOCK] __attribute__((aligned(64)));
    double ybuf[FB_BLOCK] __attribute__((aligned(64)));
    double wbuf[FB_BLOCK] __attribute__((aligned(64)));
    double pwbuf[FB_BLOCK] __attribute__((aligned(64)));
    uint8_t mbuf[FB_BLOCK] __attribute__((aligned(64)));
    int64_t idx[FB_BLOCK] __attribute__((aligned(64)));
    const fb_args *a = &e->f;
    const int64_t ncols = e->ncols;
    const int grad_hess = e->output == FB_ELEMENT_GRAD_HESS;
    /* float64 coefficients: pos_weight, smoothing, or float64 labels with float32 predictions */
    const int has_coef = e->pw.kind != FB_K_NONE || a->shift != 0.0
                         || (e->y.kind == FB_K_F64 && sizeof(FB_T) == 4);
    const int squaring = a->gamma_n >= 0;
    /* no weight, pos_weight or mask and labels exact in FB_T: the plain forms, in FB_T alone
     * (no smoothing or focal factor) or the focal gradient and Hessian */
    const int bare = e->w.kind == FB_K_NONE && e->mask.kind == FB_K_NONE && e->pw.kind == FB_K_NONE
                     && !(e->y.kind == FB_K_F64 && sizeof(FB_T) == 4);
    const int plain = bare && (e->focal ? grad_hess : a->shift == 0.0);
    /* focal, float32, no smoothing: blocks of 0/1 labels take fb_focal_grad_hess_hard, with
     * γ = c_n + φ (c_n = min(⌊γ⌋, 7)) and the constants fc of fb_focal_hard */
    const int focal32 = FB_EXACT_FMA && sizeof(FB_T) == 4 && e->focal && a->shift == 0.0;
    const int c_n = a->gamma >= 7.0 ? 7 : (int)a->gamma;
    const double phi = a->gamma - c_n;
    const float fc[6] = {(float)a->gamma, (float)(1.0 + 2.0 * a->gamma), (float)phi,
                         (float)(phi - (float)phi), a->alpha >= 0.0 ? (float)a->alpha : 1.0f,
                         a->alpha >= 0.0 ? (float)(1.0 - a->alpha) : 1.0f};
    FB_T *out1 = (FB_T *)e->out1, *out2 = (FB_T *)e->out2;
    const fb_operand o1 = {out1, 0, e->o1_rs, e->o1_cs}, o2 = {out2, 0, e->o2_rs, e->o2_cs};
    int bad = 0;
    if (e->w.kind == FB_K_NONE)
        for (int64_t k = 0; k < FB_BLOCK; k++) wbuf[k] = 1.0;
    if (e->pw.kind == FB_K_NONE)
        for (int64_t k = 0; k < FB_BLOCK; k++) pwbuf[k] = 1.0;
    if (e->mask.kind == FB_K_NONE)
        memset(mbuf, 1, FB_BLOCK);
    for (int64_t b0 = start; b0 < stop; b0 += FB_BLOCK) {
        int64_t n = stop - b0 < FB_BLOCK ? stop - b0 : FB_BLOCK;
        const FB_T *P = FB_NAME(fb_load_pred)(&e->p, ncols, b0, n, idx, pbuf);
        if (!plain)
            FB_NAME(fb_load)(&e->y, ncols, b0, n, idx, ybuf);
        if (e->w.kind != FB_K_NONE)
            FB_NAME(fb_load)(&e->w, ncols, b0, n, idx, wbuf);
        if (e->pw.kind != FB_K_NONE)
            FB_NAME(fb_load)(&e->pw, ncols, b0, n, idx, pwbuf);
        if (e->mask.kind != FB_K_NONE) {
            int how = FB_NAME(fb_offsets)(&e->mask, ncols, b0, n, idx);
            const uint8_t *m = (const uint8_t *)e->mask.base;
            for (int64_t k = 0; k < n; k++) mbuf[k] = m[how == 1 ? b0 + k : how == 2 ? 0 : idx[k]];
        }
        /* outputs in place where contiguous, else through the buffers */
        FB_T *w1 = o1.rs == ncols * o1.cs && o1.cs == 1 ? out1 + b0 : o1buf;
        FB_T *w2 = grad_hess && o2.rs == ncols * o2.cs && o2.cs == 1 ? out2 + b0 : o2buf;
        if (grad_hess && plain) {
            const FB_T *Y = FB_NAME(fb_load_pred)(&e->y, ncols, b0, n, idx, ytbuf);
            int hard = focal32;
            if (focal32)
                for (int64_t k = 0; k < n; k++) hard &= (Y[k] == FB_ZERO) | (Y[k] == FB_ONE);
            if (!e->focal)
                bad |= FB_NAME(fb_grad_hess_plain)(a, P, Y, w1, w2, n);
            else if (hard)
                bad |= squaring ? FB_NAME(fb_focal_grad_hess_hard)(a, P, Y, w1, w2, n, fc, c_n, 0)
                     : FB_NAME(fb_focal_grad_hess_hard)(a, P, Y, w1, w2, n, fc, c_n, 1);
            else if (squaring)
                bad |= FB_NAME(fb_focal_grad_hess_plain)(a, P, Y, w1, w2, n, 1);
            else
                bad |= FB_NAME(fb_focal_grad_hess_plain)(a, P, Y, w1, w2, n, 0);
        } else if (grad_hess) {
#define FB_GH(coef_, focal_, sq_) \
            FB_NAME(fb_grad_hess_elements)(a, P, ybuf, wbuf, pwbuf, mbuf, w1, w2, n, coef_, focal_, sq_)
            if (e->focal)
                bad |= squaring ? FB_GH(1, 1, 1) : FB_GH(1, 1, 0);
            else
                bad |= has_coef ? FB_GH(1, 0, 0) : FB_GH(0, 0, 0);
#undef FB_GH
        } else if (plain) {
            const FB_T *Y = FB_NAME(fb_load_pred)(&e->y, ncols, b0, n, idx, ytbuf);
            int soft = 0;
            if (!a->logits)
                for (int64_t k = 0; k < n; k++) soft |= (Y[k] != FB_ZERO) & (Y[k] != FB_ONE);
            int form = a->logits ? FB_EL_LOGIT : soft ? FB_EL_SOFT : FB_EL_HARD;
            bad |= form == FB_EL_LOGIT ? FB_NAME(fb_loss_plain)(a, P, Y, w1, n, FB_EL_LOGIT)
                 : form == FB_EL_SOFT ? FB_NAME(fb_loss_plain)(a, P, Y, w1, n, FB_EL_SOFT)
                 : FB_NAME(fb_loss_plain)(a, P, Y, w1, n, FB_EL_HARD);
        } else {
            int soft = a->shift != 0.0;
            if (!a->logits && !soft && !e->focal)
                for (int64_t k = 0; k < n; k++) soft |= (ybuf[k] != 0.0) & (ybuf[k] != 1.0);
#define FB_LE(form, coef_, focal_, sq_) \
            FB_NAME(fb_loss_elements)(a, P, ybuf, wbuf, pwbuf, mbuf, w1, n, form, coef_, focal_, sq_)
            if (e->focal) {
                if (a->logits)
                    bad |= squaring ? FB_LE(FB_EL_LOGIT, 1, 1, 1) : FB_LE(FB_EL_LOGIT, 1, 1, 0);
                else
                    bad |= squaring ? FB_LE(FB_EL_SOFT, 1, 1, 1) : FB_LE(FB_EL_SOFT, 1, 1, 0);
            } else if (a->logits)
                bad |= has_coef ? FB_LE(FB_EL_LOGIT, 1, 0, 0) : FB_LE(FB_EL_LOGIT, 0, 0, 0);
            else if (soft)
                bad |= has_coef ? FB_LE(FB_EL_SOFT, 1, 0, 0) : FB_LE(FB_EL_SOFT, 0, 0, 0);
            else
                bad |= has_coef ? FB_LE(FB_EL_HARD, 1, 0, 0) : FB_LE(FB_EL_HARD, 0, 0, 0);
#undef FB_LE
        }
        if (w1 == o1buf)
            FB_NAME(fb_store)(out1, o1.rs, o1.cs, ncols, b0, n, idx, o1buf);
        if (grad_hess && w2 == o2buf)
            FB_NAME(fb_store)(out2, o2.rs, o2.cs, ncols, b0, n, idx, o2buf);
    }
    return bad;
}
