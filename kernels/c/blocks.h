/* C fast path, block loops: the twin of kernels/numba/blocks.py (same functions, same order).
 * A block is FB_BLOCK elements of a chunk: its labels and weights are loaded into buffers and
 * checked, its losses and gradient computed by form, focal loss in one pass, the factors of the
 * product path formed, and 1-D input by group scattered into the group slots. A template, as
 * forms.h; the part before it is shared by all variants and types. */

#ifndef FB_BLOCKS_SHARED
#define FB_BLOCKS_SHARED
/* For the scalar loops by group: gcc's SLP vectoriser packs a group's running sums into one
 * register and unpacks them on every element, which lengthens the dependency chain of a sorted
 * run of ids. */
#if defined(__GNUC__) && !defined(__clang__)
#define FB_NO_SLP __attribute__((optimize("no-tree-slp-vectorize")))
#else
#define FB_NO_SLP
#endif

/* the forms of fb_loss_block (C only: Numba passes `logits` and `soft`) */
#define FB_FORM_HARD 0
#define FB_FORM_SOFT 1
#define FB_FORM_LOGIT 2

/* The group id of a row. */
static inline int64_t fb_group(const fb_args *a, int64_t row)
{
    return a->g_kind == FB_G_I32 ? (int64_t)((const int32_t *)a->groups)[row]
                                 : ((const int64_t *)a->groups)[row];
}

/* buf[k] = v[column of element k] for the n elements of a block whose first element is in
 * column j (of ncols): the per-column values (pos_weight, gradient scale) of a block. */
static inline void fb_by_column(double *buf, const double *v, int64_t j, int64_t ncols, int64_t n)
{
    for (int64_t k = 0; k < n; j = 0) {
        int64_t run = n - k < ncols - j ? n - k : ncols - j;
        memcpy(buf + k, v + j, (size_t)run * sizeof(double));
        k += run;
    }
}

/* Prefetch the cache lines of `bytes` bytes from `base`, for reading (rw 0) or writing (rw 1; a
 * macro: __builtin_prefetch takes rw as a constant). */
#define FB_PREFETCH_LINES(base, bytes, rw) do {                                             \
    const char *base_ = (const char *)(base);                                               \
    for (size_t off_ = 0; off_ < (size_t)(bytes); off_ += 64)                               \
        __builtin_prefetch(base_ + off_, rw);                                               \
} while (0)
#endif

/* Labels of a block into ybuf as FB_T; returns 1 when some label is outside [0, 1], and sets
 * *soft to 1 unless every label is 0 or 1. */
FB_INLINE int FB_NAME(fb_load_labels)(const fb_args *a, int64_t start, int64_t n, FB_T *ybuf,
                                      int *soft)
{
    int lbad_ = 0, lsoft_ = 0;
    if (a->y_kind == FB_Y_U8) {
        /* the OR of the labels is > 1 iff some label is: a byte-wide reduction */
        const uint8_t *ys_ = (const uint8_t *)a->y + start;
        uint8_t any_ = 0;
#pragma omp simd reduction(|:any_)
        for (int64_t k_ = 0; k_ < n; k_++) { any_ |= ys_[k_]; ybuf[k_] = (FB_T)ys_[k_]; }
        lbad_ = any_ > 1;
    } else if (a->y_kind == FB_Y_F32) {
        const float *ys_ = (const float *)a->y + start;
#pragma omp simd reduction(|:lbad_, lsoft_)
        for (int64_t k_ = 0; k_ < n; k_++) {
            float v_ = ys_[k_];
            lbad_ |= (v_ < 0.0f) | (v_ > 1.0f);
            lsoft_ |= v_ * (1.0f - v_) != 0.0f;
            ybuf[k_] = (FB_T)v_;
        }
    } else {
        const double *ys_ = (const double *)a->y + start;
#pragma omp simd reduction(|:lbad_, lsoft_)
        for (int64_t k_ = 0; k_ < n; k_++) {
            double v_ = ys_[k_];
            lbad_ |= (v_ < 0.0) | (v_ > 1.0);
            lsoft_ |= v_ * (1.0 - v_) != 0.0;
            ybuf[k_] = (FB_T)v_;
        }
    }
    *soft = lsoft_;
    return lbad_;
}

/* Per-element weights of a block into wbuf as float64; returns 1 when some weight is negative or
 * not finite. */
FB_INLINE int FB_NAME(fb_load_weights)(const fb_args *a, int64_t start, int64_t n, double *wbuf)
{
    int wbad = 0;
    if (a->w_kind == FB_W_F32) {
        const float *ws = (const float *)a->w + start;
#pragma omp simd reduction(|:wbad)
        for (int64_t k = 0; k < n; k++) { double v = ws[k]; wbad |= !((v >= 0.0) & (v < INFINITY)); wbuf[k] = v; }
    } else {
        const double *ws = (const double *)a->w + start;
#pragma omp simd reduction(|:wbad)
        for (int64_t k = 0; k < n; k++) { double v = ws[k]; wbad |= !((v >= 0.0) & (v < INFINITY)); wbuf[k] = v; }
    }
    return wbad;
}

/* The exact label and weight error bits of a block that has a bad one: out-of-range labels and
 * bad weights count unless their element is masked or a NaN that nan_policy "omit" or "raise"
 * takes out (as in the general kernel). Rare, scalar. */
FB_INLINE int FB_NAME(fb_recheck)(const fb_args *a, const FB_T *P, int64_t b0, int64_t n,
                                  const FB_T *ybuf, const uint8_t *mbuf, const double *wbuf,
                                  int use_w)
{
    int bad = 0;
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
    return bad;
}

/* Product path, one block: the probability of the observed class q = p (y = 1) or 1 - p (y = 0),
 * p clamped to [clip_lo, clip_hi] (1 - p is exact there for float32 p when clip_lo >= 2^-28),
 * into qbuf; for float64 p, q = qbuf + qlo exactly (qlo: the rounding of 1 - p); returns 0 when
 * some p is outside [0, 1] or NaN (q is then NaN or meaningless). */
FB_INLINE int FB_NAME(fb_q_block)(const fb_args *a, const FB_T *P, const FB_T *ybuf, double *qbuf,
                                  double *qlo, int64_t n)
{
    const double q_lo = a->clip_lo, q_hi = a->clip_hi;
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
 * then 1); the factor 1 + e (exact in float64) into qbuf. Two loops, as in Numba: gcc's
 * code for one loop mixing the float32 and float64 widths is much slower. Returns 0 when some x
 * is NaN. */
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

/* One block: losses into lbuf (want_loss), counted weights into wbuf (use_w: 0 where the mask
 * is 0 or a NaN is omitted), error bits of predictions and NaN. `form`, `want_loss`, `use_w`,
 * `has_coef`, `want_e` and `clean` are constants at each call site (the function is inlined and
 * specialised). Without use_w there are no weights, no mask, no omitted NaN, no pos_weight and
 * no label smoothing; has_coef: a pos_weight (pbuf: each element's) or label smoothing. With
 * `clean` the loop takes the block to hold no NaN and, from probabilities, no p outside [0, 1]
 * (no error bit, no NaN to propagate) and returns 1 when that is not so: the caller then runs
 * the block again without `clean` (FB_LOSS_BLOCK). gcc's loops are much faster without the
 * checks. */
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
 * float64 path's one, on top of the exponential's), at the float32 vector width (the float64
 * division was most of the gradient loop). For float64 predictions the same operations as
 * fb_grad_block, the same bits. */
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
 * masked elements and omitted NaNs. The vector factor is the float64 one (FB_F64_LANES): with
 * float32 predictions the float32 factor doubles every float64 register and spills. The flags
 * are constants at each call site (fb_focal_block). */
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

/* Whether the n ids of a block (int32 ids: i32, g32; else g64) all lie in [0, n_slots) and change
 * between neighbours at more than one element in 16. The scatter loops then update each
 * element's group in memory (`direct`); else they keep the current group in registers while the
 * id repeats, which suits long runs of one id (sorted ids) but mispredicts the change of id in
 * short runs (and `direct` is a chain of store-to-load forwarding per run of one id). */
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
            if (logits ? m > FB_GROUP_PRODUCT_MAX : m < FB_GROUP_PRODUCT_MIN)
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
        if (logits ? m > FB_GROUP_PRODUCT_MAX : m < FB_GROUP_PRODUCT_MIN) {
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
 * scales m, not rnd, so it comes after a fold), rnd reset. One division per lane here: a division
 * per product would bound the float64 mean by the divider. */
FB_INLINE void FB_NAME(fb_fold_rounding)(const double *prod_m, double *rnd, double *comp)
{
#pragma omp simd
    for (int k = 0; k < FB_PROD_LANES; k++) {
        comp[k] += rnd[k] / prod_m[k];
        rnd[k] = 0.0;
    }
}

/* Prefetch n elements from b of the next block's inputs (predictions, labels, weights, mask,
 * group ids of 1-D input) and of its gradient output (for writing). A block reads its labels and
 * its predictions in separate loops, each too short (2 KB) for the hardware prefetcher to ramp up
 * on its stream. */
FB_INLINE void FB_NAME(fb_prefetch_block)(const fb_args *a, int64_t b, int64_t n)
{
    const size_t y_size = a->y_kind == FB_Y_U8 ? 1 : a->y_kind == FB_Y_F32 ? 4 : 8;
    const size_t p_size = a->p_half ? 2 : sizeof(FB_T);
    FB_PREFETCH_LINES((const char *)a->p + b * p_size, n * p_size, 0);
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

/* Scoring statistics of one block (fb_score_chunk), by `form` (a constant at each call site):
 * the positive and negative parts of the loss, y·(-log q) and (1-y)·(-log(1-q)), into lbuf and
 * ebuf (fb_nll_*: a part with a zero coefficient is 0), q (p clipped, or σ(x) in FB_T) into qbuf
 * and 1 into cbuf for each counted element. A masked element or an omitted NaN counts nothing:
 * its weight, label, q, parts and cbuf become 0. Another NaN gives NaN parts (and q when p is
 * NaN), as in the general kernel. Returns the error bits of predictions and NaN (fb_loss_block). */
FB_INLINE int FB_NAME(fb_score_block)(const fb_args *a, const FB_T *P, FB_T *ybuf,
                                      const uint8_t *mbuf, double *wbuf, FB_T *lbuf, FB_T *ebuf,
                                      double *qbuf, double *cbuf, int64_t n, int form)
{
    const FB_T clip_lo = (FB_T)a->clip_lo, clip_hi = (FB_T)a->clip_hi;
    const FB_T lo_pos = (FB_T)a->lo_pos, lo_neg = (FB_T)a->lo_neg;
    const FB_T hi_pos = (FB_T)a->hi_pos, hi_neg = (FB_T)a->hi_neg;
    const double q_lo = a->clip_lo, q_hi = a->clip_hi;
    const int omit = a->nan_mode == FB_NAN_OMIT, raise = a->nan_mode == FB_NAN_RAISE;
    int bad = 0;
#pragma omp simd reduction(|:bad)
    for (int64_t k = 0; k < n; k++) {
        FB_T p = P[k], y = ybuf[k], lp, ln;
        int on = mbuf[k] != 0;
        int isn = (p != p) | (y != y);
        int skip = (!on) | (isn & (omit | raise));
        bad |= (form != FB_FORM_LOGIT && ((p < FB_ZERO) | (p > FB_ONE)) && !skip) ? FB_FLAG_PRED : 0;
        bad |= (isn & raise & on) ? FB_FLAG_NAN : 0;
        double q;
        if (form == FB_FORM_LOGIT) {
            FB_T e = FB_NAME(fb_exp_abs)(p);
            lp = FB_NAME(fb_nll_logit)(p, y, FB_ZERO, e, 1);
            ln = FB_NAME(fb_nll_logit)(p, FB_ZERO, FB_ONE - y, e, 1);
            FB_T s = (p >= FB_ZERO ? FB_ONE : e) / (FB_ONE + e);
            q = (double)(p != p ? p : s);
        } else {
            if (form == FB_FORM_HARD) {
                FB_T l = FB_NAME(fb_nll_hard)(p, y, clip_lo, clip_hi, lo_pos, lo_neg, hi_pos, hi_neg);
                lp = y != FB_ZERO ? l : FB_ZERO;
                ln = y != FB_ZERO ? FB_ZERO : l;
            } else {
                lp = FB_NAME(fb_nll_soft)(p, y, FB_ZERO, clip_lo, clip_hi, lo_pos, lo_neg, hi_pos, hi_neg);
                ln = FB_NAME(fb_nll_soft)(p, FB_ZERO, FB_ONE - y, clip_lo, clip_hi, lo_pos, lo_neg,
                                          hi_pos, hi_neg);
            }
            double pd = (double)p;
            pd = pd < q_lo ? q_lo : pd;
            q = pd > q_hi ? q_hi : pd;
        }
        lp = isn ? p + y : lp;
        ln = isn ? p + y : ln;
        int counted = on & !(isn & omit);
        lbuf[k] = counted ? lp : FB_ZERO;
        ebuf[k] = counted ? ln : FB_ZERO;
        qbuf[k] = counted ? q : 0.0;
        ybuf[k] = counted ? y : FB_ZERO;
        wbuf[k] = counted ? wbuf[k] : 0.0;
        cbuf[k] = counted ? 1.0 : 0.0;
    }
    return bad;
}

/* Scoring statistics of a block of the product path (fb_score_chunk; after fb_q_block* or
 * fb_q_block_logit: q of the observed class in qbuf, from logits the rest of the loss in lbuf and
 * exp(-|x|) in ebuf): the factors of the positives' and the negatives' products into fpos and
 * fneg (1 for the other class), from logits the rest of the loss into lbuf (positives) and ebuf
 * (negatives), and p clipped (exact: 1 - q of a negative is) or σ(x) into qbuf, as
 * fb_score_block. */
FB_INLINE void FB_NAME(fb_score_factors)(const FB_T *X, const FB_T *ybuf, double *qbuf, FB_T *lbuf,
                                         FB_T *ebuf, double *fpos, double *fneg, int64_t n,
                                         int logits)
{
#pragma omp simd
    for (int64_t k = 0; k < n; k++) {
        const int pos = ybuf[k] != FB_ZERO;
        const double q = qbuf[k];
        fpos[k] = pos ? q : 1.0;
        fneg[k] = pos ? 1.0 : q;
        if (logits) {
            const FB_T x = X[k], e = ebuf[k], lin = lbuf[k];
            lbuf[k] = pos ? lin : FB_ZERO;
            ebuf[k] = pos ? FB_ZERO : lin;
            qbuf[k] = (double)((x >= FB_ZERO ? FB_ONE : e) / (FB_ONE + e));
        } else {
            qbuf[k] = pos ? q : 1.0 - q;
        }
    }
}

/* Scoring statistics of the n elements of a block from element b0 (in rows of ncols) into the
 * slot of their row (FB_MODE_ROWS) or of its group, in element order: sums[7·slot + s] += Σw, the
 * count, Σw·y, Σw·q and the weighted parts (stat 0 is formed at the chunk end); a row with a
 * group id out of range is skipped and gives FB_FLAG_GROUP. */
FB_TARGET FB_NO_SLP __attribute__((noinline))
static int FB_NAME(fb_score_scatter)(const fb_args *a, double *sums, int64_t b0, int64_t n,
                                     const FB_T *ybuf, const double *wbuf, const FB_T *lbuf,
                                     const FB_T *ebuf, const double *qbuf, const double *cbuf)
{
    int bad = 0;
    const int64_t ncols = a->ncols;
    int64_t row = b0 / ncols, j = b0 % ncols;
    for (int64_t k = 0; k < n; k++) {
        const int64_t slot = a->mode == FB_MODE_ROWS ? a->row0 + row : fb_group(a, row);
        if ((uint64_t)slot >= (uint64_t)a->n_slots) {
            bad = FB_FLAG_GROUP;
        } else {
            double *s = sums + 7 * slot, w = wbuf[k];
            s[1] += w;
            s[2] += cbuf[k];
            s[3] += (double)ybuf[k] * w;
            s[4] += qbuf[k] * w;
            s[5] += (double)lbuf[k] * w;
            s[6] += (double)ebuf[k] * w;
        }
        if (++j == ncols) {
            j = 0;
            row++;
        }
    }
    return bad;
}
