/* Template of the fast-path chunk kernel, included by fastbce_variant.h once for float (FB_T float,
 * functions *_f32_<variant>) and once for double (*_f64_<variant>). Not a header of its own. */

#define FB_ONE ((FB_T)1)
#define FB_ZERO ((FB_T)0)

/* -log of the probability of the observed class, hard label y in {0, 1}, p clipped to
 * [eps, 1-eps]: -log q (y = 1) or -log(1 - q) (y = 0). 1 - p is hi + lo exactly. */
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
 * fb_coefficients), a term with a zero coefficient left out; equal to fb_nll_hard bit for bit
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

/* Logit x, coefficients a, b of the two terms (a = y, b = 1-y, or fb_coefficients),
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

/* dl/dp in float64 (before weights): (p - y) / (p(1 - p)) inside [eps, 1-eps], else 0; with
 * coefficients a, b (has_coef, fb_coefficients): -a/p + b/(1-p) = (b·p - a·(1-p)) / (p(1 - p)). */
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
 * fb_coefficients): b·σ(x) - a·σ(-x), with σ(|x|) = 1/(1+e) and σ(-|x|) = e/(1+e), is
 * (u + v·e) / (1 + e), u = b and v = -a for x >= 0, u = -a and v = b for x < 0: the numerator
 * rounded once (FMA), then one division. */
FB_INLINE double FB_NAME(fb_grad_logit)(FB_T x, double a, double b, FB_T e)
{
    double ed = (double)e;
    int right = x >= FB_ZERO;
    return FB_FMA(right ? -a : b, ed, right ? b : -a) / (1.0 + ed);
}

/* Product path, one block: the probability of the observed class q = p (y = 1) or 1 - p (y = 0),
 * p clamped to [eps, 1 - eps] in float64 (1 - p is exact there for float32 p when eps >= 2^-28),
 * into qbuf; for float64 p, q = qbuf + qlo exactly (qlo: the rounding of 1 - p); returns 0 when
 * some p is outside [0, 1] or NaN (q is then NaN or meaningless). */
FB_INLINE int FB_NAME(fb_q_block)(const fb_args *a, const FB_T *P, const FB_T *ybuf, double *qbuf,
                                  double *qlo, int64_t n)
{
    const double q_lo = a->eps, q_hi = a->q_hi;
    int ok = 1;
#pragma omp simd reduction(&:ok)
    for (int64_t k = 0; k < n; k++) {
        FB_T p = P[k];
        ok &= (p >= FB_ZERO) & (p <= FB_ONE);
        double pd = (double)p;
        pd = pd < q_lo ? q_lo : pd;
        pd = pd > q_hi ? q_hi : pd;
        double hi = ybuf[k] != FB_ZERO ? pd : 1.0 - pd;
        qbuf[k] = hi;
        if (sizeof(FB_T) == 8)
            qlo[k] = ybuf[k] != FB_ZERO ? 0.0 : (1.0 - hi) - pd;
    }
    return ok;
}

/* fb_q_block for a float32 block whose p all lie inside the clip bounds (the common case): no
 * clamp, q = s + c with s = p (y = 1) or -p (y = 0) and c = 1 - y, each exact in float64, so q
 * is p or 1 - p exactly, as fb_q_block forms it; returns 0 when some p is outside (or NaN), and
 * the caller then runs fb_q_block. */
FB_INLINE int FB_NAME(fb_q_block_inside)(const fb_args *a, const FB_T *P, const FB_T *ybuf,
                                         double *qbuf, int64_t n)
{
    const FB_T lo = (FB_T)a->clip_lo, hi = (FB_T)a->clip_hi;
    int inside = 1;
#pragma omp simd reduction(&:inside)
    for (int64_t k = 0; k < n; k++) {
        FB_T p = P[k], y = ybuf[k];
        inside &= (p >= lo) & (p <= hi);
        qbuf[k] = (double)(y != FB_ZERO ? p : -p) + (double)(FB_ONE - y);
    }
    return inside;
}

/* Product path from logits, hard labels: loss = lin + log1p(e), e = exp(-|x|), lin = |x| when x
 * is on the wrong side (x >= 0 with y = 0, x < 0 with y = 1), else 0. e into ebuf (also for the
 * gradient); lin into lbuf, plus e itself when e < 2^-28 (log1p(e) = e to 2^-29; the factor is
 * then 1); the factor 1 + e (exact in float64) into qbuf. Two loops, as in Numba's
 * _q_block_logit: gcc's code for one loop mixing the float32 and float64 widths is much slower
 * (mean of 2e7 float32 logits in-process, 1 thread, AVX2: 570 -> 717 M/s with the lin below). Returns 0 when some x is NaN. */
FB_INLINE int FB_NAME(fb_q_block_logit)(const FB_T *X, const FB_T *ybuf, double *qbuf, FB_T *lbuf,
                                        FB_T *ebuf, int64_t n)
{
    int ok = 1;
#pragma omp simd reduction(&:ok)
    for (int64_t k = 0; k < n; k++) {
        FB_T x = X[k];
        ok &= x == x;
        FB_T e = FB_NAME(fb_exp_abs)(x);
        ebuf[k] = e;
        FB_T s = ybuf[k] != FB_ZERO ? -x : x; /* |x| on the wrong side, else -|x| */
        FB_T lin = s > FB_ZERO ? s : FB_ZERO;
        lbuf[k] = e < (FB_T)0x1p-28 ? lin + e : lin;
    }
#pragma omp simd
    for (int64_t k = 0; k < n; k++) {
        double e = (double)ebuf[k];
        qbuf[k] = e < 0x1p-28 ? 1.0 : 1.0 + e;
    }
    return ok;
}

#define FB_FORM_HARD 0
#define FB_FORM_SOFT 1
#define FB_FORM_LOGIT 2

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
 * (kernels/numba_kernels.py, weighted_element) in the same order; logits, by_squaring (γ an
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
        const double q_lo = a->eps, q_hi = a->q_hi; /* read unconditionally: no masked load */
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

/* One block: losses into lbuf (want_loss), counted weights into wbuf (use_w: 0 where the mask
 * is 0 or a NaN is omitted), error bits of predictions and NaN. `form`, `want_loss`, `use_w`,
 * `has_coef`, `want_e` and `clean` are constants at each call site (the function is inlined and
 * specialised). Without use_w there are no weights, no mask, no omitted NaN, no pos_weight and
 * no label smoothing; has_coef: a pos_weight (pbuf: each element's) or label smoothing. With
 * `clean` the loop takes the block to hold no NaN and, from probabilities, no p outside [0, 1]
 * (no error bit, no NaN to propagate) and returns 1 when that is not so: the caller then runs
 * the block again without `clean` (FB_LOSS_BLOCK). gcc's loops are much faster without the
 * checks (soft labels, 2e7 elements streamed, 1 thread, AVX2: 425 -> 500 M/s; 1.97 -> 1.51 ns
 * per element in cache). */
FB_INLINE int FB_NAME(fb_loss_block)(
    const fb_args *a, const FB_T *P, const FB_T *ybuf, const uint8_t *mbuf, double *wbuf,
    const double *pbuf, FB_T *lbuf, FB_T *ebuf, int64_t n, int form, int want_loss, int use_w,
    int has_coef, int want_e, int clean)
{
    const FB_T clip_lo = (FB_T)a->clip_lo, clip_hi = (FB_T)a->clip_hi;
    const FB_T lo_pos = (FB_T)a->lo_pos, lo_neg = (FB_T)a->lo_neg;
    const FB_T hi_pos = (FB_T)a->hi_pos, hi_neg = (FB_T)a->hi_neg;
    const int omit = a->nan_mode == FB_NAN_OMIT, raise = a->nan_mode == FB_NAN_RAISE;
    const int check_p = !a->logits;
    int bad = 0;
#pragma omp simd reduction(|:bad)
    for (int64_t k = 0; k < n; k++) {
        FB_T p = P[k], y = ybuf[k];
        int on = use_w ? mbuf[k] != 0 : 1;
        int isn = clean ? 0 : (p != p) | (y != y);
        if (clean) { /* labels of a hard block are 0 or 1 */
            bad |= form == FB_FORM_LOGIT ? p != p : !((p >= FB_ZERO) & (p <= FB_ONE));
            bad |= (form != FB_FORM_HARD) & (y != y);
        } else {
            int skip = (!on) | (isn & (omit | raise));
            bad |= (check_p & ((p < FB_ZERO) | (p > FB_ONE)) & !skip) ? FB_FLAG_PRED : 0;
            bad |= (isn & raise & on) ? FB_FLAG_NAN : 0;
        }
        if (want_loss) {
            /* coefficients of the positive and negative terms */
            FB_T pos = has_coef ? (FB_T)FB_NAME(fb_coef_pos)(a, pbuf[k], y) : y;
            FB_T neg = has_coef ? (FB_T)FB_NAME(fb_coef_neg)(a, y) : FB_ONE - y;
            FB_T l;
            if (form == FB_FORM_HARD) { /* 0/1 labels, no smoothing */
                l = FB_NAME(fb_nll_hard)(p, y, clip_lo, clip_hi, lo_pos, lo_neg, hi_pos, hi_neg);
                l = has_coef && y != FB_ZERO ? pos * l : l;
            } else if (form == FB_FORM_SOFT)
                l = FB_NAME(fb_nll_soft)(p, pos, neg, clip_lo, clip_hi, lo_pos, lo_neg, hi_pos, hi_neg);
            else {
                FB_T e = FB_NAME(fb_exp_abs)(p);
                l = FB_NAME(fb_nll_logit)(p, pos, neg, e, has_coef);
                if (want_e)
                    ebuf[k] = e;
            }
            l = isn ? (omit ? FB_ZERO : p + y) : l;
            lbuf[k] = on ? l : FB_ZERO;
        }
        if (use_w)
            wbuf[k] = ((!on) | (isn & omit)) ? 0.0 : wbuf[k];
    }
    return bad;
}

/* The gradient of one block into G: w·dl/dv times sbuf (the scale of each element); the flags
 * as in fb_loss_block; from logits, ebuf holds exp(-|x|). */
FB_INLINE void FB_NAME(fb_grad_block)(
    const fb_args *a, const FB_T *P, const FB_T *ybuf, const uint8_t *mbuf, const double *wbuf,
    const double *pbuf, const double *sbuf, const FB_T *ebuf, FB_T *G, int64_t n, int logits,
    int use_w, int has_coef)
{
    const FB_T clip_lo = (FB_T)a->clip_lo, clip_hi = (FB_T)a->clip_hi;
    const int omit = a->nan_mode == FB_NAN_OMIT;
#pragma omp simd
    for (int64_t k = 0; k < n; k++) {
        FB_T p = P[k], y = ybuf[k];
        int isn = (p != p) | (y != y);
        double pos = has_coef ? FB_NAME(fb_coef_pos)(a, pbuf[k], y) : (double)y;
        double neg = has_coef ? FB_NAME(fb_coef_neg)(a, y) : 1.0 - (double)y, g;
        if (logits)
            g = FB_NAME(fb_grad_logit)(p, pos, neg, ebuf[k]);
        else
            g = FB_NAME(fb_grad_prob)(p, y, pos, neg, clip_lo, clip_hi, has_coef);
        g = (use_w ? g * wbuf[k] : g) * sbuf[k]; /* read unconditionally: no masked loads */
        g = isn ? (omit ? 0.0 : (double)(p + y)) : g;
        G[k] = (FB_T)(use_w && !mbuf[k] ? 0.0 : g);
    }
}

/* The gradient from logits of a block of 0/1 labels without weights, coefficients or per-row or
 * per-column scales, in FB_T: fb_grad_logit's numerator is then exact (e, 1, -e or -1), and the
 * quotient and the scale in float32 stay within the ulp bound (three roundings instead of the
 * float64 path's one, on top of the exponential's), at the float32 vector width: 0.85 -> 0.16-0.23
 * ns per element in cache (AVX2; the float64 division was most of the gradient loop). For float64
 * predictions the same operations as fb_grad_block, the same bits. As _grad_logit_hard. */
FB_INLINE void FB_NAME(fb_grad_logit_hard)(const FB_T *X, const FB_T *ybuf, const FB_T *ebuf,
                                           FB_T *G, int64_t n, FB_T scale)
{
#pragma omp simd
    for (int64_t k = 0; k < n; k++) {
        FB_T x = X[k], e = ebuf[k];
        int pos = ybuf[k] != FB_ZERO;
        FB_T num = x >= FB_ZERO ? (pos ? -e : (FB_T)1) : (pos ? (FB_T)-1 : e);
        FB_T g = num / ((FB_T)1 + e) * scale;
        G[k] = x != x ? x + ybuf[k] : g;
    }
}

/* Focal loss of one block in one pass: losses into lbuf (0 unless want_loss), w·dl/dv times
 * sbuf into G (want_grad), after fb_loss_block has made the checks and zeroed the weights of
 * masked elements and omitted NaNs; as kernels/numba_fast.py's _focal_loop. The vector factor is
 * the float64 one (FB_F64_LANES): with float32 predictions the float32 factor doubles every
 * float64 register and spills (measured 71-113 -> 117-122 M/s, AVX2, 1 thread). The flags are
 * constants at each call site (fb_focal_block). */
FB_INLINE void FB_NAME(fb_focal_loop)(
    const fb_args *a, const FB_T *P, const FB_T *ybuf, const uint8_t *mbuf, const double *wbuf,
    const double *pbuf, const double *sbuf, FB_T *lbuf, FB_T *G, int64_t n, int logits,
    int by_squaring, int want_loss, int want_grad)
{
    const int omit = a->nan_mode == FB_NAN_OMIT;
#pragma omp simd simdlen(FB_F64_LANES)
    for (int64_t k = 0; k < n; k++) {
        FB_T p = P[k], y = ybuf[k];
        int on = mbuf[k] != 0;
        int isn = (p != p) | (y != y);
        FB_T l = (FB_T)FB_NAME(fb_focal)(a, p, y, pbuf[k], logits, by_squaring, 0);
        double g = FB_NAME(fb_focal)(a, p, y, pbuf[k], logits, by_squaring, 1);
        l = isn ? (omit ? FB_ZERO : p + y) : l;
        lbuf[k] = want_loss & on ? l : FB_ZERO;
        g = isn ? (omit ? 0.0 : (double)(p + y)) : g * wbuf[k] * sbuf[k];
        if (want_grad)
            G[k] = (FB_T)(on ? g : 0.0);
    }
}

/* fb_focal_loop for the form of the call (G NULL: no gradient); not inlined into fb_chunk,
 * where gcc does not if-convert (vectorise) the float64 loop. */
FB_TARGET __attribute__((noinline))
static void FB_NAME(fb_focal_block)(const fb_args *a, const FB_T *P, const FB_T *ybuf,
                                    const uint8_t *mbuf, const double *wbuf, const double *pbuf,
                                    const double *sbuf, FB_T *lbuf, FB_T *G, int64_t n)
{
    const int sq = a->gamma_n >= 0, wl = a->want_loss;
#define FB_FOCAL(logits, by_squaring, want_grad) \
    FB_NAME(fb_focal_loop)(a, P, ybuf, mbuf, wbuf, pbuf, sbuf, lbuf, G, n, logits, by_squaring, wl, want_grad)
    if (G == NULL && a->logits)
        sq ? FB_FOCAL(1, 1, 0) : FB_FOCAL(1, 0, 0);
    else if (G == NULL)
        sq ? FB_FOCAL(0, 1, 0) : FB_FOCAL(0, 0, 0);
    else if (a->logits)
        sq ? FB_FOCAL(1, 1, 1) : FB_FOCAL(1, 0, 1);
    else
        sq ? FB_FOCAL(0, 1, 1) : FB_FOCAL(0, 0, 1);
#undef FB_FOCAL
}

/* The loss carried by a product of the product path, from its logarithm: Σ -log q = -log Π q
 * for probabilities; from logits the factors are 1 + exp(-|x|), whose log is added. */
FB_INLINE double FB_NAME(fb_product_loss)(const fb_args *a, double log_product)
{
    return a->logits ? log_product : -log_product;
}

/* Whether the n ids of a block (int32 ids: i32, g32; else g64) all lie in [0, n_slots) and change
 * between neighbours at more than one element in 16. The scatter loops then update each
 * element's group in memory (`direct`); else they keep the current group in registers while the
 * id repeats, which suits long runs of one id (sorted ids) but mispredicts the change of id in
 * short runs. Measured (C harness, 512-element blocks, 1,000 groups, products and counts, one
 * thread), ns per element, registers vs direct: random ids 1.03 vs 0.76; an id changing at a
 * fraction f of the elements: f = 0.5 3.94 vs 0.88, 0.1 1.59 vs 1.19, 0.05 1.10 vs 1.39, 0.01
 * 0.87 vs 1.73 (a chain of store-to-load forwarding per run). */
FB_INLINE int FB_NAME(fb_ids_scattered)(const int32_t *g32, const int64_t *g64, int i32, int64_t n,
                                        int64_t n_slots)
{
    int64_t changes = 0;
    int inside = 1;
#pragma omp simd reduction(+:changes) reduction(&:inside)
    for (int64_t k = 1; k < n; k++) {
        int64_t id = i32 ? g32[k] : g64[k], before = i32 ? g32[k - 1] : g64[k - 1];
        changes += id != before;
        inside &= (uint64_t)id < (uint64_t)n_slots;
    }
    const int64_t first = i32 ? g32[0] : g64[0];
    return inside && (uint64_t)first < (uint64_t)n_slots && changes * 16 > n;
}

/* fb_scatter_groups' loop (ids as in fb_ids_scattered, read in place): `direct` (a constant at
 * each call site; every id in range) adds each element into its group's slot in memory; else
 * the sums of the current group stay in registers until the id changes (the same additions in
 * the same order either way), and an id is checked when it changes (the current one is in
 * range): one outside [0, n_slots) (compared as unsigned, so that a negative id is out too)
 * skips its element and makes the function return FB_FLAG_GROUP. */
FB_INLINE int FB_NAME(fb_scatter_sums)(double *sums, int64_t n_slots, const int32_t *g32,
                                       const int64_t *g64, int i32, int64_t n, const FB_T *lbuf,
                                       const double *wbuf, int direct)
{
    if (direct) {
        for (int64_t k = 0; k < n; k++) {
            const int64_t id = i32 ? g32[k] : g64[k];
            sums[2 * id] += (double)lbuf[k] * wbuf[k];
            sums[2 * id + 1] += wbuf[k];
        }
        return 0;
    }
    int out = 0;
    int64_t cur = 0; /* slot 0 exists: its sums are loaded and, unchanged, stored back */
    double sl = sums[0], sw = sums[1];
    for (int64_t k = 0; k < n; k++) {
        int64_t id = i32 ? g32[k] : g64[k];
        if (id != cur) {
            if ((uint64_t)id >= (uint64_t)n_slots) {
                out = FB_FLAG_GROUP;
                continue;
            }
            sums[2 * cur] = sl;
            sums[2 * cur + 1] = sw;
            cur = id;
            sl = sums[2 * cur];
            sw = sums[2 * cur + 1];
        }
        sl += (double)lbuf[k] * wbuf[k];
        sw += wbuf[k];
    }
    sums[2 * cur] = sl;
    sums[2 * cur + 1] = sw;
    return out;
}

/* 1-D input by group (one element per row, rows row..row+n-1): the weighted loss and the weight
 * of each element into its group's slot, in element order (fb_scatter_sums); an id out of range
 * sets FB_FLAG_GROUP and its element is skipped. */
FB_TARGET FB_NO_SLP __attribute__((noinline))
static int FB_NAME(fb_scatter_groups)(const fb_args *a, double *sums, int64_t row, int64_t n,
                                      const FB_T *lbuf, const double *wbuf)
{
    const int64_t slots = a->n_slots;
    const int i32 = a->g_kind == FB_G_I32;
    const int32_t *g32 = i32 ? (const int32_t *)a->groups + row : NULL;
    const int64_t *g64 = i32 ? NULL : (const int64_t *)a->groups + row;
    const int direct = FB_NAME(fb_ids_scattered)(g32, g64, i32, n, slots);
#define FB_SCATTER(i32_) (direct \
    ? FB_NAME(fb_scatter_sums)(sums, slots, g32, g64, i32_, n, lbuf, wbuf, 1) \
    : FB_NAME(fb_scatter_sums)(sums, slots, g32, g64, i32_, n, lbuf, wbuf, 0))
    return i32 ? FB_SCATTER(1) : FB_SCATTER(0);
#undef FB_SCATTER
}

/* fb_scatter_products' loop (ids read, checked and `direct` as in fb_scatter_sums): each group's
 * state is three doubles at grp + 3·id, its product m (times 2^ge[id]), from logits the sum of
 * the rest of its losses, its count; the factor qbuf[k] of element k multiplied into its group's
 * product, which is split (fb_split) when it leaves [2^-900, 2^900] (factors of probabilities
 * are <= 1, from logits >= 1). */
FB_INLINE int FB_NAME(fb_scatter_factors)(double *grp, int64_t *ge, int64_t n_slots,
                                          const int32_t *g32, const int64_t *g64, int i32,
                                          int64_t n, const double *qbuf, const FB_T *lbuf,
                                          int logits, int direct)
{
    if (direct) {
        for (int64_t k = 0; k < n; k++) {
            const int64_t id = i32 ? g32[k] : g64[k];
            const double m = grp[3 * id] * qbuf[k];
            grp[3 * id] = m;
            if (logits)
                grp[3 * id + 1] += (double)lbuf[k];
            grp[3 * id + 2] += 1.0;
            if (logits ? m > 0x1p900 : m < 0x1p-900)
                FB_V(fb_split)(grp + 3 * id, ge + id, 1);
        }
        return 0;
    }
    int out = 0;
    int64_t cur = 0; /* as in fb_scatter_sums */
    double m = grp[0], sl = grp[1], c = grp[2];
    for (int64_t k = 0; k < n; k++) {
        int64_t id = i32 ? g32[k] : g64[k];
        if (id != cur) {
            if ((uint64_t)id >= (uint64_t)n_slots) {
                out = FB_FLAG_GROUP;
                continue;
            }
            grp[3 * cur] = m;
            grp[3 * cur + 1] = sl;
            grp[3 * cur + 2] = c;
            cur = id;
            m = grp[3 * cur];
            sl = grp[3 * cur + 1];
            c = grp[3 * cur + 2];
        }
        m *= qbuf[k];
        if (logits)
            sl += (double)lbuf[k];
        c += 1.0;
        if (logits ? m > 0x1p900 : m < 0x1p-900) {
            grp[3 * cur] = m;
            FB_V(fb_split)(grp + 3 * cur, ge + cur, 1);
            m = grp[3 * cur];
        }
    }
    grp[3 * cur] = m;
    grp[3 * cur + 1] = sl;
    grp[3 * cur + 2] = c;
    return out;
}

/* fb_scatter_groups on the product path (no weights): qbuf[k] (and from logits lbuf[k]) of each
 * element into its group's state (fb_scatter_factors); their losses and counts go into the slots
 * at the chunk end. */
FB_TARGET FB_NO_SLP __attribute__((noinline))
static int FB_NAME(fb_scatter_products)(const fb_args *a, double *grp, int64_t *ge, int64_t row,
                                        int64_t n, const double *qbuf, const FB_T *lbuf)
{
    const int64_t slots = a->n_slots;
    const int i32 = a->g_kind == FB_G_I32;
    const int32_t *g32 = i32 ? (const int32_t *)a->groups + row : NULL;
    const int64_t *g64 = i32 ? NULL : (const int64_t *)a->groups + row;
    const int direct = FB_NAME(fb_ids_scattered)(g32, g64, i32, n, slots);
#define FB_SCATTER(i32_, logits_) (direct \
    ? FB_NAME(fb_scatter_factors)(grp, ge, slots, g32, g64, i32_, n, qbuf, lbuf, logits_, 1) \
    : FB_NAME(fb_scatter_factors)(grp, ge, slots, g32, g64, i32_, n, qbuf, lbuf, logits_, 0))
    if (i32)
        return a->logits ? FB_SCATTER(1, 1) : FB_SCATTER(1, 0);
    return a->logits ? FB_SCATTER(0, 1) : FB_SCATTER(0, 0);
#undef FB_SCATTER
}

/* End of row `row` of a chunk in lanes by column: its loss (lane sums and lane products) and
 * its Σw (the count without weights) into its slot, the lanes back to zero and one. */
FB_INLINE void FB_NAME(fb_row_done)(const fb_args *a, double *sums, int64_t row, int *bad,
                                    double *acc_l, double *acc_w, double *prod_m, int64_t *prod_e,
                                    int by_product, int use_w)
{
    int64_t slot = a->mode == FB_MODE_ROWS ? a->row0 + row : fb_group(a, row);
    if (slot < 0 || slot >= a->n_slots) {
        *bad |= FB_FLAG_GROUP;
    } else {
        double loss = FB_V(fb_lane_sum)(acc_l);
        if (by_product) { /* else every lane product is 1 */
            FB_V(fb_split)(prod_m, prod_e, FB_PROD_LANES);
            loss += FB_NAME(fb_product_loss)(a, FB_V(fb_lanes_log_product)(prod_m, prod_e));
        }
        sums[2 * slot] += loss;
        sums[2 * slot + 1] += use_w ? FB_V(fb_lane_sum)(acc_w) : (double)a->ncols;
    }
    for (int k = 0; k < FB_LANES; k++) acc_l[k] = acc_w[k] = 0.0;
    for (int k = 0; by_product && k < FB_PROD_LANES; k++) {
        prod_m[k] = 1.0;
        prod_e[k] = 0;
    }
}

/* float64 product path: the roundings carried beside each lane's product m since the last fold,
 * rnd, made relative and added to comp (the product is then m·(1 + comp), to 2^-106; a split
 * scales m, not rnd, so it comes after a fold), rnd reset. One division per lane here, where a
 * division per product (δ = (fma(m, hi, -r) + m·lo) / r summed per lane) bound the float64 mean
 * by the divider: mean of 5e7 float64, in-process, alternated medians, 1 thread 724-737 -> 840-842
 * M/s, 2 threads 1,428-1,431 -> 1,623-1,642. */
FB_INLINE void FB_NAME(fb_fold_rounding)(const double *prod_m, double *rnd, double *comp)
{
#pragma omp simd
    for (int k = 0; k < FB_PROD_LANES; k++) {
        comp[k] += rnd[k] / prod_m[k];
        rnd[k] = 0.0;
    }
}

/* Prefetch the cache lines of `bytes` bytes from `base`, for reading (rw 0) or writing (rw 1; a
 * macro: __builtin_prefetch takes rw as a constant). */
#define FB_PREFETCH_LINES(base, bytes, rw) do {                                             \
    const char *base_ = (const char *)(base);                                               \
    for (size_t off_ = 0; off_ < (size_t)(bytes); off_ += 64)                               \
        __builtin_prefetch(base_ + off_, rw);                                               \
} while (0)

/* Prefetch n elements from b of the next block's inputs (predictions, labels, weights, mask,
 * group ids of 1-D input) and of its gradient output (for writing). A block reads its labels and
 * its predictions in separate loops, each too short (2 KB) for the hardware prefetcher to ramp up
 * on its stream. */
FB_INLINE void FB_NAME(fb_prefetch_block)(const fb_args *a, int64_t b, int64_t n)
{
    const size_t y_size = a->y_kind == FB_Y_U8 ? 1 : a->y_kind == FB_Y_F32 ? 4 : 8;
    FB_PREFETCH_LINES((const FB_T *)a->p + b, n * sizeof(FB_T), 0);
    FB_PREFETCH_LINES((const char *)a->y + b * y_size, n * y_size, 0);
    if (a->w_kind != FB_W_NONE) {
        const size_t w_size = a->w_kind == FB_W_F32 ? 4 : 8;
        FB_PREFETCH_LINES((const char *)a->w + b * w_size, n * w_size, 0);
    }
    if (a->mask != NULL)
        FB_PREFETCH_LINES(a->mask + b, n, 0);
    if (a->grad != NULL)
        FB_PREFETCH_LINES((FB_T *)a->grad + b, n * sizeof(FB_T), 1);
    if (a->mode == FB_MODE_GROUPS && a->ncols == 1) { /* one id per element */
        const size_t g_size = a->g_kind == FB_G_I32 ? 4 : 8;
        FB_PREFETCH_LINES((const char *)a->groups + b * g_size, n * g_size, 0);
    }
}

/* Chunk `chunk` = elements [start, stop) of the flat arrays (whole rows unless a->mode is
 * FB_MODE_ALL): Σ w·loss and Σ w into a->sums[chunk, slot, 0..1]; returns the error bits. */
FB_TARGET __attribute__((noinline))
static int FB_NAME(fb_chunk)(const fb_args *a, int64_t chunk, int64_t start, int64_t stop)
{
    FB_T ybuf[FB_BLOCK] __attribute__((aligned(64)));
    FB_T lbuf[FB_BLOCK] __attribute__((aligned(64)));
    FB_T ebuf[FB_BLOCK] __attribute__((aligned(64)));
    double wbuf[FB_BLOCK] __attribute__((aligned(64)));
    uint8_t mbuf[FB_BLOCK] __attribute__((aligned(64)));
    double sbuf[FB_BLOCK] __attribute__((aligned(64)));
    double pbuf[FB_BLOCK] __attribute__((aligned(64)));
    double qbuf[FB_BLOCK] __attribute__((aligned(64)));
    double qlo[sizeof(FB_T) == 8 ? FB_BLOCK : 1] __attribute__((aligned(64)));
    double comp[FB_PROD_LANES] __attribute__((aligned(64))) = {0};
    double rnd[FB_PROD_LANES] __attribute__((aligned(64))) = {0};
    double acc_l[FB_LANES] __attribute__((aligned(64))) = {0};
    double acc_w[FB_LANES] __attribute__((aligned(64))) = {0};
    double prod_m[FB_PROD_LANES] __attribute__((aligned(64)));
    int64_t prod_e[FB_PROD_LANES] __attribute__((aligned(64))) = {0};
    const FB_T *P = (const FB_T *)a->p;
    FB_T *G = (FB_T *)a->grad;
    const int64_t ncols = a->ncols;
    double *sums = a->sums + (a->mode == FB_MODE_ROWS ? 0 : chunk * a->n_slots * 2);
    int bad = 0;
    /* per-element coefficients of the two terms: a pos_weight (pbuf: each element's, 1 without),
     * label smoothing or focal loss (always computed with coefficients); wbuf holds the counted
     * weights when there are weights, a mask, NaNs to omit or coefficients */
    const int has_coef = a->pos_w != NULL || a->shift != 0.0 || a->focal;
    const int use_w = a->w_kind != FB_W_NONE || a->mask != NULL || a->nan_mode == FB_NAN_OMIT
                      || has_coef;
    /* Product path: float32 predictions, no weights or mask, eps >= 2^-28 (probabilities), one sum
     * for all, per column, or per row or group of rows of >= FB_ROW_PRODUCT_COLS columns (with or
     * without the gradient, which is computed as elsewhere). In a block whose labels are all 0 or
     * 1, the logarithms are not computed: the q of each element (from logits: 1 + exp(-|x|), whose
     * log is added, the rest of the loss summed as usual) are multiplied into float64 lane (or
     * column) products (FB_PROD_LANES lanes, element or column k into lane k % FB_PROD_LANES),
     * Σ loss = -log Π q (fb_product_loss), one logarithm per lane at the end of the chunk or row
     * instead of one per element. Each
     * lane takes at most 9 factors per block, and the lanes are split (fb_split) every
     * FB_SPLIT_BLOCKS blocks of the product path and before their logarithms: at most 27
     * factors >= 2^-28 (from logits <= 2) between two splits, so a product stays a normal number.
     * A split only moves a power of two from m into e, and a normal product rounds the same at
     * any scale. Relative error of Σ loss <= 2^-53 · (factors) / Σ loss ~ 1e-16 / (mean loss
     * >= eps): below 1e-7 for eps >= 2^-28. float64 predictions take it for one sum
     * of all (probabilities), compensated: q = hi + lo exactly (fb_q_block), and the roundings of
     * a lane's products are carried beside it (fb_fold_rounding): the sum is then within a few
     * ulp of each lane's loss, as a logarithm per element. That needs an exact FMA (not the
     * baseline variant). Measured, 2e7 float64, 1 thread, AVX2: 258 -> 582 M/s. */
    /* 1-D input by group: one product per group (fb_scatter_products), when the groups are few
     * beside the chunk's elements (their logarithms are taken at the chunk end) */
    const int group_products = a->mode == FB_MODE_GROUPS && ncols == 1
                               && a->n_slots * 8 <= stop - start;
    const int by_product = (sizeof(FB_T) == 4 || (FB_EXACT_FMA && a->mode == FB_MODE_ALL && !a->logits))
                           && !use_w && a->want_loss
                           && (a->logits || a->eps >= 0x1p-28)
                           && (a->mode == FB_MODE_ALL || a->mode == FB_MODE_COLS
                               || ncols >= FB_ROW_PRODUCT_COLS || group_products);
    /* the product path in prod_m lanes (not by column, not one product per group) */
    const int lane_products = by_product && a->mode != FB_MODE_COLS && !group_products;
    int64_t rows_since_split = 0, blocks_since_split = 0;
    for (int k = 0; k < FB_PROD_LANES; k++) prod_m[k] = 1.0;
    /* per-column sums: one pair of accumulators per column, each summed in row order, and the
     * column products of the product path */
    double *col_l = NULL, *col_w = NULL, *col_m = NULL;
    int64_t *col_e = NULL;
    double *grp = NULL; /* product path by group: fb_scatter_products */
    int64_t *grp_e = NULL;
    if (by_product && group_products) {
        grp = (double *)calloc(3 * (size_t)a->n_slots, sizeof(double));
        grp_e = (int64_t *)calloc((size_t)a->n_slots, sizeof(int64_t));
        if (grp == NULL || grp_e == NULL)
            abort();
        for (int64_t j = 0; j < a->n_slots; j++) grp[3 * j] = 1.0;
    }
    if (a->mode == FB_MODE_COLS) {
        col_l = (double *)calloc(3 * (size_t)ncols, sizeof(double));
        col_e = (int64_t *)calloc((size_t)ncols, sizeof(int64_t));
        if (col_l == NULL || col_e == NULL)
            abort();
        col_w = col_l + ncols;
        col_m = col_w + ncols;
        for (int64_t j = 0; j < ncols; j++) col_m[j] = 1.0;
    }
    if (!use_w)
        for (int64_t k = 0; k < FB_BLOCK; k++) wbuf[k] = 1.0;
    if (has_coef && a->pos_w == NULL)
        for (int64_t k = 0; k < FB_BLOCK; k++) pbuf[k] = 1.0;
    if (G != NULL && a->row_scale == NULL && a->col_scale == NULL)
        for (int64_t k = 0; k < FB_BLOCK; k++) sbuf[k] = a->grad_scale;
    for (int64_t b0 = start; b0 < stop; b0 += FB_BLOCK) {
        int64_t n = stop - b0 < FB_BLOCK ? stop - b0 : FB_BLOCK;
        int lbad, soft, wbad = 0;
        /* the next block's inputs are prefetched, half after this block's labels are loaded and
         * half before the gradient: one burst of prefetches fills the line fill buffers and
         * stalls the loop behind it, and the first half issued before the labels waits for the
         * second half of the block before (2e7 float32, 2 threads, alternated: mean 3,424-3,467
         * -> 3,648-3,751 M/s, logits 2,429-2,517 -> 2,564-2,596) */
        const int64_t after = stop - b0 - FB_BLOCK; /* elements after this block */
        const int64_t next_n = after <= 0 ? 0 : after < FB_BLOCK ? after : FB_BLOCK;
        FB_LOAD_LABELS(FB_T, a, b0, n, ybuf, lbad, soft);
        if (next_n > 0)
            FB_NAME(fb_prefetch_block)(a, b0 + FB_BLOCK, next_n / 2);
        soft |= a->shift != 0.0; /* smoothed labels are never 0 or 1 */
        if (a->w_kind == FB_W_F32) {
            const float *ws = (const float *)a->w + b0;
#pragma omp simd reduction(|:wbad)
            for (int64_t k = 0; k < n; k++) { double v = ws[k]; wbad |= !((v >= 0.0) & (v < INFINITY)); wbuf[k] = v; }
        } else if (a->w_kind == FB_W_F64) {
            const double *ws = (const double *)a->w + b0;
#pragma omp simd reduction(|:wbad)
            for (int64_t k = 0; k < n; k++) { double v = ws[k]; wbad |= !((v >= 0.0) & (v < INFINITY)); wbuf[k] = v; }
        } else if (use_w) {
            for (int64_t k = 0; k < n; k++) wbuf[k] = 1.0;
        }
        if (a->pos_w != NULL)
            fb_by_column(pbuf, a->pos_w, b0 % ncols, ncols, n);
        if (use_w) {
            if (a->mask != NULL)
                memcpy(mbuf, a->mask + b0, (size_t)n);
            else
                memset(mbuf, 1, (size_t)n);
        }
        if (lbad | wbad) {
            /* out-of-range labels and bad weights count unless their element is masked or a NaN
             * that nan_policy "omit" or "raise" takes out (as in the general kernel): rare, scalar */
            for (int64_t k = 0; k < n; k++) {
                FB_T p = P[b0 + k], y = ybuf[k];
                int skip = (((p != p) | (y != y)) & (a->nan_mode != FB_NAN_PROPAGATE))
                           | (use_w && !mbuf[k]);
                double yv = a->y_kind == FB_Y_U8 ? (double)((const uint8_t *)a->y)[b0 + k]
                          : a->y_kind == FB_Y_F32 ? (double)((const float *)a->y)[b0 + k]
                          : ((const double *)a->y)[b0 + k];
                if (!skip && (yv < 0.0 || yv > 1.0)) bad |= FB_FLAG_LABEL;
                if (!skip && a->w_kind != FB_W_NONE && !(wbuf[k] >= 0.0 && wbuf[k] < INFINITY))
                    bad |= FB_FLAG_WEIGHT;
            }
        }
        const FB_T *Pb = P + b0;
        /* fused loss + gradient from logits: the loss loop keeps exp(-|x|) for the gradient */
        const int keep_e = a->logits && a->want_loss && G != NULL;
#define FB_LOSS(form, want_loss, use_w_, coef_, clean_) \
        FB_NAME(fb_loss_block)(a, Pb, ybuf, mbuf, wbuf, pbuf, lbuf, ebuf, n, form, want_loss, use_w_, coef_, keep_e, clean_)
#define FB_LOSS_FORMS(use_w_, coef_, clean_) \
        (a->logits ? FB_LOSS(FB_FORM_LOGIT, 1, use_w_, coef_, clean_) \
         : soft ? FB_LOSS(FB_FORM_SOFT, 1, use_w_, coef_, clean_) : FB_LOSS(FB_FORM_HARD, 1, use_w_, coef_, clean_))
        /* the losses of the block unchecked, and checked when it is not clean (fb_loss_block) */
#define FB_LOSS_BLOCK(use_w_, coef_) \
        (FB_LOSS_FORMS(use_w_, coef_, 1) ? FB_LOSS_FORMS(use_w_, coef_, 0) : 0)
        const int product = by_product && !(lbad | soft);
        /* lbuf holds losses to sum: all but in a product block from probabilities, and none for
         * the gradient alone by one sum for all (only Σw is summed then) */
        const int sum_lbuf = (!product || a->logits) && (a->want_loss || a->mode != FB_MODE_ALL);
        if (product) {
            int ok = a->logits ? FB_NAME(fb_q_block_logit)(Pb, ybuf, qbuf, lbuf, ebuf, n)
                   : sizeof(FB_T) == 4 && FB_NAME(fb_q_block_inside)(a, Pb, ybuf, qbuf, n)
                   ? 1 : FB_NAME(fb_q_block)(a, Pb, ybuf, qbuf, qlo, n);
            if (!ok)
                bad |= FB_LOSS(FB_FORM_HARD, 0, 0, 0, 0); /* the error bits of the bad predictions */
        } else if (!a->want_loss || a->focal) { /* focal loss: fb_focal_block below */
            if (use_w)
                bad |= FB_LOSS(FB_FORM_HARD, 0, 1, 0, 0);
            else if (!a->logits || a->nan_mode == FB_NAN_RAISE) /* else nothing to check */
                bad |= FB_LOSS(FB_FORM_HARD, 0, 0, 0, 0);
        } else if (has_coef) {
            bad |= FB_LOSS_BLOCK(1, 1);
        } else if (use_w) {
            bad |= FB_LOSS_BLOCK(1, 0);
        } else {
            bad |= FB_LOSS_BLOCK(0, 0);
        }
#undef FB_LOSS_BLOCK
#undef FB_LOSS_FORMS
#undef FB_LOSS
        if (next_n > 0)
            FB_NAME(fb_prefetch_block)(a, b0 + FB_BLOCK + next_n / 2, next_n - next_n / 2);
        if (G != NULL) {
            /* the factor of each gradient element: one per row, one per column, or one for all */
            if (a->row_scale != NULL) {
                for (int64_t k = 0, row = a->row0 + b0 / ncols, j = b0 % ncols; k < n; k++) {
                    sbuf[k] = a->row_scale[row] * a->grad_scale;
                    if (++j == ncols) {
                        j = 0;
                        row++;
                    }
                }
            } else if (a->col_scale != NULL) {
                fb_by_column(sbuf, a->col_scale, b0 % ncols, ncols, n);
            } /* else one factor for all, set before the loop */
            if (a->logits && !keep_e && !a->focal) {
                /* exp(-|x|) of the gradient, in a loop of its own: with float32 logits it is then
                 * vectorised at the float32 width, apart from the float64 gradient loop */
#pragma omp simd
                for (int64_t k = 0; k < n; k++) ebuf[k] = FB_NAME(fb_exp_abs)(Pb[k]);
            }
#define FB_GRAD(logits, use_w_, coef_) \
            FB_NAME(fb_grad_block)(a, Pb, ybuf, mbuf, wbuf, pbuf, sbuf, ebuf, G + b0, n, logits, use_w_, coef_)
#define FB_GRAD_FORMS(use_w_, coef_) \
            (a->logits ? FB_GRAD(1, use_w_, coef_) : FB_GRAD(0, use_w_, coef_))
            if (a->focal) { /* fb_focal_block below */
            } else if (has_coef)
                FB_GRAD_FORMS(1, 1);
            else if (use_w)
                FB_GRAD_FORMS(1, 0);
            else if (a->logits && !soft && a->row_scale == NULL && a->col_scale == NULL)
                FB_NAME(fb_grad_logit_hard)(Pb, ybuf, ebuf, G + b0, n, (FB_T)a->grad_scale);
            else
                FB_GRAD_FORMS(0, 0);
#undef FB_GRAD_FORMS
#undef FB_GRAD
        }
        if (a->focal) /* the losses and the gradient in one pass */
            FB_NAME(fb_focal_block)(a, Pb, ybuf, mbuf, wbuf, pbuf, sbuf, lbuf, G != NULL ? G + b0 : NULL, n);
        if (!a->want_loss && sum_lbuf)
            for (int64_t k = 0; k < n; k++) lbuf[k] = FB_ZERO;
        if (a->mode == FB_MODE_ALL) {
            /* element k of the chunk goes to lane k % FB_LANES, summed in element order; without
             * weights, mask or omitted NaNs, Σw is the count */
            int64_t full = n - n % FB_LANES;
            if (product && sizeof(FB_T) == 8) {
                /* float64: the product m·(hi + lo) = r + (fma(m, hi, -r) + m·lo), its rounding
                 * carried in rnd: (m + rnd)·(hi + lo) = r + (rnd·hi + fma(m, hi, -r) + m·lo),
                 * to 2^-106 of the product (rnd·lo dropped) */
                for (int64_t g = 0; g < n; g += FB_PROD_LANES) {
                    const int lanes = n - g < FB_PROD_LANES ? (int)(n - g) : FB_PROD_LANES;
#pragma omp simd
                    for (int k = 0; k < lanes; k++) {
                        double m = prod_m[k], q = qbuf[g + k], r = m * q;
                        rnd[k] = FB_FMA(rnd[k], q, FB_FMA(m, q, -r) + m * qlo[g + k]);
                        prod_m[k] = r;
                    }
                }
            } else if (product) {
                int64_t pfull = n - n % FB_PROD_LANES;
                for (int64_t g = 0; g < pfull; g += FB_PROD_LANES) {
#pragma omp simd
                    for (int k = 0; k < FB_PROD_LANES; k++) prod_m[k] *= qbuf[g + k];
                }
                for (int k = 0; k < n - pfull; k++) prod_m[k] *= qbuf[pfull + k];
            }
            if (sum_lbuf && use_w) {
                for (int64_t g = 0; g < full; g += FB_LANES) {
#pragma omp simd
                    for (int k = 0; k < FB_LANES; k++) {
                        acc_l[k] += (double)lbuf[g + k] * wbuf[g + k];
                        acc_w[k] += wbuf[g + k];
                    }
                }
                for (int k = 0; k < n - full; k++) {
                    acc_l[k] += (double)lbuf[full + k] * wbuf[full + k];
                    acc_w[k] += wbuf[full + k];
                }
            } else if (sum_lbuf) {
                for (int64_t g = 0; g < full; g += FB_LANES) {
#pragma omp simd
                    for (int k = 0; k < FB_LANES; k++) acc_l[k] += (double)lbuf[g + k];
                }
                for (int k = 0; k < n - full; k++) acc_l[k] += (double)lbuf[full + k];
            } else if (use_w) {
                for (int64_t g = 0; g < full; g += FB_LANES) {
#pragma omp simd
                    for (int k = 0; k < FB_LANES; k++) acc_w[k] += wbuf[g + k];
                }
                for (int k = 0; k < n - full; k++) acc_w[k] += wbuf[full + k];
            }
        } else if (a->mode == FB_MODE_COLS) {
            /* column j of every row, in row order */
            int64_t k = 0, j = (b0 - start) % ncols;
            while (k < n) {
                int64_t run = n - k < ncols - j ? n - k : ncols - j;
                if (product) {
#pragma omp simd
                    for (int64_t t = 0; t < run; t++) col_m[j + t] *= qbuf[k + t];
                }
                if (sum_lbuf) {
#pragma omp simd
                    for (int64_t t = 0; t < run; t++) {
                        col_l[j + t] += (double)lbuf[k + t] * wbuf[k + t];
                        col_w[j + t] += wbuf[k + t];
                    }
                }
                k += run;
                if (j + run == ncols && by_product && ++rows_since_split == 32) {
                    FB_V(fb_split)(col_m, col_e, ncols);
                    rows_since_split = 0;
                }
                j = 0;
            }
        } else {
            /* each row is summed in lanes by column (column j into lane j % FB_LANES, in row
             * order), then its total is added to the row's own slot or its group's; rows with a
             * group id out of range are skipped. A row may span blocks, never chunks. Rows
             * shorter than FB_LANES go straight into the slot (1-D input by group: the whole
             * block in fb_scatter_groups). */
            int64_t k = 0, row = b0 / ncols, j = b0 % ncols;
            if (a->mode == FB_MODE_GROUPS && ncols == 1) {
                bad |= product ? FB_NAME(fb_scatter_products)(a, grp, grp_e, row, n, qbuf, lbuf)
                               : FB_NAME(fb_scatter_groups)(a, sums, row, n, lbuf, wbuf);
                k = n;
            }
            for (; ncols < FB_LANES && k < n; k++) {
                int64_t slot = a->mode == FB_MODE_ROWS ? a->row0 + row : fb_group(a, row);
                if (slot < 0 || slot >= a->n_slots) {
                    bad |= FB_FLAG_GROUP;
                } else {
                    sums[2 * slot] += (double)lbuf[k] * wbuf[k];
                    sums[2 * slot + 1] += wbuf[k];
                }
                if (++j == ncols) {
                    j = 0;
                    row++;
                }
            }
            while (k < n) {
                int64_t run = n - k < ncols - j ? n - k : ncols - j, t = 0;
                if (product) {
                    /* the products, and from logits the other part of the losses in their lanes */
                    for (; t < run && (j + t) % FB_PROD_LANES; t++) {
                        prod_m[(j + t) % FB_PROD_LANES] *= qbuf[k + t];
                        if (a->logits)
                            acc_l[(j + t) % FB_LANES] += (double)lbuf[k + t];
                    }
                    for (; t + FB_PROD_LANES <= run; t += FB_PROD_LANES) {
#pragma omp simd
                        for (int q = 0; q < FB_PROD_LANES; q++) prod_m[q] *= qbuf[k + t + q];
                        for (int h = 0; a->logits && h < FB_PROD_LANES; h += FB_LANES) {
#pragma omp simd
                            for (int q = 0; q < FB_LANES; q++) acc_l[q] += (double)lbuf[k + t + h + q];
                        }
                    }
                    /* the rest of the row (or block) from lane 0 on: lane q is element t + q */
                    const int64_t rest = run - t;
#pragma omp simd
                    for (int64_t q = 0; q < rest; q++) prod_m[q] *= qbuf[k + t + q];
                    for (int64_t h = 0; a->logits && h < rest; h += FB_LANES) {
                        const int64_t lanes = rest - h < FB_LANES ? rest - h : FB_LANES;
#pragma omp simd
                        for (int64_t q = 0; q < lanes; q++) acc_l[q] += (double)lbuf[k + t + h + q];
                    }
                } else {
                    for (; t < run && (j + t) % FB_LANES; t++) {
                        acc_l[(j + t) % FB_LANES] += (double)lbuf[k + t] * wbuf[k + t];
                        acc_w[(j + t) % FB_LANES] += wbuf[k + t];
                    }
                    for (; t + FB_LANES <= run; t += FB_LANES) {
#pragma omp simd
                        for (int q = 0; q < FB_LANES; q++) {
                            acc_l[q] += (double)lbuf[k + t + q] * wbuf[k + t + q];
                            acc_w[q] += wbuf[k + t + q];
                        }
                    }
                    /* the rest from lane 0 on */
#pragma omp simd
                    for (int64_t q = 0; q < run - t; q++) {
                        acc_l[q] += (double)lbuf[k + t + q] * wbuf[k + t + q];
                        acc_w[q] += wbuf[k + t + q];
                    }
                }
                k += run;
                j += run;
                if (j == ncols) {
                    FB_NAME(fb_row_done)(a, sums, row, &bad, acc_l, acc_w, prod_m, prod_e, by_product, use_w);
                    j = 0;
                    row++;
                }
            }
        }
        if (product && lane_products && ++blocks_since_split == FB_SPLIT_BLOCKS) {
            if (sizeof(FB_T) == 8)
                FB_NAME(fb_fold_rounding)(prod_m, rnd, comp);
            FB_V(fb_split)(prod_m, prod_e, FB_PROD_LANES); /* the lanes: see by_product */
            blocks_since_split = 0;
        }
    }
    if (a->mode == FB_MODE_ALL) {
        if (sizeof(FB_T) == 8)
            FB_NAME(fb_fold_rounding)(prod_m, rnd, comp);
        FB_V(fb_split)(prod_m, prod_e, FB_PROD_LANES);
        double log_product = FB_V(fb_lanes_log_product)(prod_m, prod_e);
        if (sizeof(FB_T) == 8) /* float64: log Π q = log Π m + log1p(comp), = comp to 2^-106 */
            log_product += (FB_V(fb_lane_sum)(comp) + FB_V(fb_lane_sum)(comp + 16))
                           + (FB_V(fb_lane_sum)(comp + 32) + FB_V(fb_lane_sum)(comp + 48));
        sums[0] = FB_V(fb_lane_sum)(acc_l) + FB_NAME(fb_product_loss)(a, log_product);
        sums[1] = use_w ? FB_V(fb_lane_sum)(acc_w) : (double)(stop - start);
    } else if (a->mode == FB_MODE_COLS) {
        for (int64_t j = 0; j < ncols; j++) {
            sums[2 * j] = col_l[j] + FB_NAME(fb_product_loss)(a, FB_V(fb_log_product)(col_m[j], col_e[j]));
            sums[2 * j + 1] = use_w ? col_w[j] : (double)((stop - start) / ncols);
        }
        free(col_l);
        free(col_e);
    } else if (grp != NULL) {
        for (int64_t j = 0; j < a->n_slots; j++) {
            double loss = FB_NAME(fb_product_loss)(a, FB_V(fb_log_product)(grp[3 * j], grp_e[j]));
            sums[2 * j] += grp[3 * j + 1] + loss;
            sums[2 * j + 1] += grp[3 * j + 2];
        }
        free(grp);
        free(grp_e);
    }
    return bad;
}

#undef FB_ONE
#undef FB_ZERO
#undef FB_FORM_HARD
#undef FB_FORM_SOFT
#undef FB_FORM_LOGIT
