/* C fast path, the chunk kernel: the twin of kernels/numba/chunk.py. One chunk (whole rows, a
 * fixed number of elements) is computed block by block and summed in a fixed order into its own
 * slot of a->sums, so the result does not depend on the thread count. A template, as forms.h. */

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
    float hbuf[sizeof(FB_T) == 4 ? FB_BLOCK : 1] __attribute__((aligned(64))); /* float16 p */
    uint64_t gy[FB_BLOCK], gp[FB_BLOCK], gw[FB_BLOCK]; /* strided input: a block gathered */
    uint8_t gm[FB_BLOCK];
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
    /* Product path: float32 predictions, no weights or mask, clip_lo >= 2^-28 (probabilities), one sum
     * for all, per column, or per row or group of rows of >= FB_ROW_PRODUCT_COLS columns (with or
     * without the gradient, which is computed as elsewhere). In a block whose labels are all 0 or
     * 1, the logarithms are not computed: the q of each element (from logits: 1 + exp(-|x|), whose
     * log is added, the rest of the loss summed as usual) are multiplied into float64 lane (or
     * column) products (FB_PROD_LANES lanes, element or column k into lane k % FB_PROD_LANES),
     * Σ loss = -log Π q (fb_product_loss), one logarithm per lane at the end of the chunk or row
     * instead of one per element. Each lane takes at most 9 factors per block, and the lanes are
     * split (fb_split) every FB_SPLIT_BLOCKS blocks of the product path and before their
     * logarithms: at most 27 factors >= 2^-28 (from logits <= 2) between two splits, so a product
     * stays a normal number.
     * A split only moves a power of two from m into e, and a normal product rounds the same at
     * any scale. Relative error of Σ loss <= 2^-53 · (factors) / Σ loss ~ 1e-16 / (mean loss
     * >= clip_lo): below 1e-7 for clip_lo >= 2^-28. float64 predictions take it for one sum
     * of all (probabilities), compensated: q = hi + lo exactly (fb_q_block), and the roundings of
     * a lane's products are carried beside it (fb_fold_rounding): the sum is then within a few
     * ulp of each lane's loss, as a logarithm per element. That needs an exact FMA (not the
     * baseline variant). */
    /* 1-D input by group: one product per group (fb_scatter_products), when the groups are few
     * beside the chunk's elements (their logarithms are taken at the chunk end) */
    const int group_products = a->mode == FB_MODE_GROUPS && ncols == 1
                               && a->n_slots * 8 <= stop - start;
    const int by_product = (sizeof(FB_T) == 4 || (FB_EXACT_FMA && a->mode == FB_MODE_ALL && !a->logits))
                           && !use_w && a->want_loss
                           && (a->logits || a->clip_lo >= 0x1p-28)
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
         * second half of the block before */
        const int64_t after = stop - b0 - FB_BLOCK; /* elements after this block */
        /* (none for strided input: the hardware prefetcher follows its constant stride) */
        const int64_t next_n = after <= 0 || a->strided ? 0 : after < FB_BLOCK ? after : FB_BLOCK;
        fb_args ab; /* the block's arrays: a's, or strided input gathered (fb_gather_block) */
        const fb_args *A = a->strided ? FB_NAME(fb_gather_block)(a, &ab, b0, n, gy, gp, gw, gm) : a;
        lbad = FB_NAME(fb_load_labels)(A, b0, n, ybuf, &soft);
        if (next_n > 0)
            FB_NAME(fb_prefetch_block)(a, b0 + FB_BLOCK, next_n / 2);
        soft |= a->shift != 0.0; /* smoothed labels are never 0 or 1 */
        if (a->w_kind != FB_W_NONE)
            wbad = FB_NAME(fb_load_weights)(A, b0, n, wbuf);
        else if (use_w)
            for (int64_t k = 0; k < n; k++) wbuf[k] = 1.0;
        if (a->pos_w != NULL)
            FB_NAME(fb_load_pos_weights)(a, b0, n, pbuf);
        if (use_w) {
            if (a->mask != NULL)
                memcpy(mbuf, A->mask + b0, (size_t)n);
            else
                memset(mbuf, 1, (size_t)n);
        }
        const FB_T *Pk = (const FB_T *)A->p, *Pb = Pk + b0; /* element b0 + k at Pk[b0 + k] */
        if (sizeof(FB_T) == 4 && a->p_half) { /* float16: the block decoded into hbuf */
            FB_NAME(fb_load_halves)((const uint16_t *)A->p + b0, n, hbuf);
            Pb = (const FB_T *)hbuf;
            Pk = (const FB_T *)((uintptr_t)hbuf - (uintptr_t)b0 * sizeof(FB_T)); /* read at b0 + k */
        }
        if (lbad | wbad)
            bad |= FB_NAME(fb_recheck)(A, Pk, b0, n, ybuf, mbuf, wbuf, use_w);
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

/* The scoring pass (a->n_stats 7; fastbce/_score.py): chunk `chunk` = elements [start, stop) as
 * fb_chunk, its seven statistics per slot into a->sums[chunk, slot, 0..6] (by rows: the row's
 * slot): Σw·l, Σw, count, Σw·y, Σw·q, Σw·y·(-log q), Σw·(1-y)·(-log(1-q)), with Σw·l formed at
 * the end as the sum of the last two. No pos_weight, smoothing, focal loss or gradient. One sum
 * for all with float32 predictions and no weights, mask or omitted NaN takes the product path in
 * its hard blocks, with one product for the positives and one for the negatives (the parts);
 * other blocks take a logarithm per element (fb_score_block). Returns the error bits. */
FB_TARGET __attribute__((noinline))
static int FB_NAME(fb_score_chunk)(const fb_args *a, int64_t chunk, int64_t start, int64_t stop)
{
    FB_T ybuf[FB_BLOCK] __attribute__((aligned(64)));
    FB_T lbuf[FB_BLOCK] __attribute__((aligned(64)));
    FB_T ebuf[FB_BLOCK] __attribute__((aligned(64)));
    double wbuf[FB_BLOCK] __attribute__((aligned(64)));
    uint8_t mbuf[FB_BLOCK] __attribute__((aligned(64)));
    double qbuf[FB_BLOCK] __attribute__((aligned(64)));
    double cbuf[FB_BLOCK] __attribute__((aligned(64)));
    double fpos[FB_BLOCK] __attribute__((aligned(64)));
    double fneg[FB_BLOCK] __attribute__((aligned(64)));
    double acc[7 * FB_LANES] __attribute__((aligned(64))) = {0}; /* lanes of stat s at 16·s */
    double pos_m[FB_PROD_LANES] __attribute__((aligned(64)));
    double neg_m[FB_PROD_LANES] __attribute__((aligned(64)));
    int64_t pos_e[FB_PROD_LANES] __attribute__((aligned(64))) = {0};
    int64_t neg_e[FB_PROD_LANES] __attribute__((aligned(64))) = {0};
    const FB_T *P = (const FB_T *)a->p;
    const int64_t ncols = a->ncols;
    double *sums = a->sums + (a->mode == FB_MODE_ROWS ? 0 : chunk * a->n_slots * 7);
    int bad = 0;
    const int use_w = a->w_kind != FB_W_NONE || a->mask != NULL || a->nan_mode == FB_NAN_OMIT;
    const int by_product = sizeof(FB_T) == 4 && a->mode == FB_MODE_ALL && !use_w
                           && (a->logits || a->clip_lo >= 0x1p-28);
    int64_t blocks_since_split = 0, n_product = 0; /* elements of product blocks: weight 1 each */
    double *col = NULL; /* per column: the lanes of stat s at s·ncols */
    if (a->mode == FB_MODE_COLS) {
        col = (double *)calloc(7 * (size_t)ncols, sizeof(double));
        if (col == NULL)
            abort();
    }
    for (int k = 0; k < FB_PROD_LANES; k++) pos_m[k] = neg_m[k] = 1.0;
    if (a->mask == NULL)
        memset(mbuf, 1, FB_BLOCK);
    for (int64_t k = 0; k < FB_BLOCK; k++) wbuf[k] = 1.0; /* without weights */
    for (int64_t b0 = start; b0 < stop; b0 += FB_BLOCK) {
        int64_t n = stop - b0 < FB_BLOCK ? stop - b0 : FB_BLOCK;
        int lbad, soft, wbad = 0;
        const int64_t after = stop - b0 - FB_BLOCK;
        const int64_t next_n = after <= 0 ? 0 : after < FB_BLOCK ? after : FB_BLOCK;
        lbad = FB_NAME(fb_load_labels)(a, b0, n, ybuf, &soft);
        if (next_n > 0) /* in two halves, as in fb_chunk */
            FB_NAME(fb_prefetch_block)(a, b0 + FB_BLOCK, next_n / 2);
        if (a->w_kind != FB_W_NONE)
            wbad = FB_NAME(fb_load_weights)(a, b0, n, wbuf);
        else if (use_w) /* fb_score_block zeroed the masked or omitted ones */
            for (int64_t k = 0; k < n; k++) wbuf[k] = 1.0;
        if (a->mask != NULL)
            memcpy(mbuf, a->mask + b0, (size_t)n);
        if (lbad | wbad)
            bad |= FB_NAME(fb_recheck)(a, P, b0, n, ybuf, mbuf, wbuf, 1);
        const FB_T *Pb = P + b0;
        int product = by_product && !(lbad | soft);
        if (product) {
            product = a->logits ? FB_NAME(fb_q_block_logit)(Pb, ybuf, qbuf, lbuf, ebuf, n)
                    : FB_NAME(fb_q_block_inside)(a, Pb, ybuf, qbuf, n)
                    || FB_NAME(fb_q_block)(a, Pb, ybuf, qbuf, fneg, n); /* fneg: unused qlo */
        }
        if (product) {
            FB_NAME(fb_score_factors)(Pb, ybuf, qbuf, lbuf, ebuf, fpos, fneg, n, a->logits);
            const int64_t pfull = n - n % FB_PROD_LANES;
            for (int64_t g = 0; g < pfull; g += FB_PROD_LANES) {
#pragma omp simd
                for (int k = 0; k < FB_PROD_LANES; k++) {
                    pos_m[k] *= fpos[g + k];
                    neg_m[k] *= fneg[g + k];
                }
            }
            for (int k = 0; k < n - pfull; k++) {
                pos_m[k] *= fpos[pfull + k];
                neg_m[k] *= fneg[pfull + k];
            }
            if (++blocks_since_split == FB_SPLIT_BLOCKS) { /* as fb_chunk's lane products */
                FB_V(fb_split)(pos_m, pos_e, FB_PROD_LANES);
                FB_V(fb_split)(neg_m, neg_e, FB_PROD_LANES);
                blocks_since_split = 0;
            }
            /* weight and count 1 each (n_product), the labels, q and from logits the rest of
             * the parts in the lanes of their statistics */
            n_product += n;
            const int64_t full = n - n % FB_LANES;
            for (int64_t g = 0; g < full; g += FB_LANES) {
#pragma omp simd
                for (int k = 0; k < FB_LANES; k++) {
                    acc[48 + k] += (double)ybuf[g + k];
                    acc[64 + k] += qbuf[g + k];
                }
            }
            for (int k = 0; k < n - full; k++) {
                acc[48 + k] += (double)ybuf[full + k];
                acc[64 + k] += qbuf[full + k];
            }
            for (int64_t g = 0; a->logits && g < full; g += FB_LANES) {
#pragma omp simd
                for (int k = 0; k < FB_LANES; k++) {
                    acc[80 + k] += (double)lbuf[g + k];
                    acc[96 + k] += (double)ebuf[g + k];
                }
            }
            for (int k = 0; a->logits && k < n - full; k++) {
                acc[80 + k] += (double)lbuf[full + k];
                acc[96 + k] += (double)ebuf[full + k];
            }
        } else if (a->logits) {
            bad |= FB_NAME(fb_score_block)(a, Pb, ybuf, mbuf, wbuf, lbuf, ebuf, qbuf, cbuf, n, FB_FORM_LOGIT);
        } else if (soft) {
            bad |= FB_NAME(fb_score_block)(a, Pb, ybuf, mbuf, wbuf, lbuf, ebuf, qbuf, cbuf, n, FB_FORM_SOFT);
        } else {
            bad |= FB_NAME(fb_score_block)(a, Pb, ybuf, mbuf, wbuf, lbuf, ebuf, qbuf, cbuf, n, FB_FORM_HARD);
        }
        if (next_n > 0)
            FB_NAME(fb_prefetch_block)(a, b0 + FB_BLOCK + next_n / 2, next_n - next_n / 2);
        if (a->mode == FB_MODE_ALL && !product) { /* product blocks: summed above */
            /* element k of the chunk into lane k % FB_LANES of each statistic, in element order */
            const int64_t full = n - n % FB_LANES;
            for (int64_t g = 0; g < full; g += FB_LANES) {
#pragma omp simd
                for (int k = 0; k < FB_LANES; k++) {
                    const double w = wbuf[g + k];
                    acc[16 + k] += w;
                    acc[32 + k] += cbuf[g + k];
                    acc[48 + k] += (double)ybuf[g + k] * w;
                    acc[64 + k] += qbuf[g + k] * w;
                    acc[80 + k] += (double)lbuf[g + k] * w;
                    acc[96 + k] += (double)ebuf[g + k] * w;
                }
            }
            for (int k = 0; k < n - full; k++) {
                const double w = wbuf[full + k];
                acc[16 + k] += w;
                acc[32 + k] += cbuf[full + k];
                acc[48 + k] += (double)ybuf[full + k] * w;
                acc[64 + k] += qbuf[full + k] * w;
                acc[80 + k] += (double)lbuf[full + k] * w;
                acc[96 + k] += (double)ebuf[full + k] * w;
            }
        } else if (a->mode == FB_MODE_COLS) {
            /* column j of every row, in row order */
            int64_t k = 0, j = (b0 - start) % ncols;
            while (k < n) {
                int64_t run = n - k < ncols - j ? n - k : ncols - j;
#pragma omp simd
                for (int64_t t = 0; t < run; t++) {
                    const double w = wbuf[k + t];
                    col[ncols + j + t] += w;
                    col[2 * ncols + j + t] += cbuf[k + t];
                    col[3 * ncols + j + t] += (double)ybuf[k + t] * w;
                    col[4 * ncols + j + t] += qbuf[k + t] * w;
                    col[5 * ncols + j + t] += (double)lbuf[k + t] * w;
                    col[6 * ncols + j + t] += (double)ebuf[k + t] * w;
                }
                k += run;
                j = 0;
            }
        } else if (a->mode != FB_MODE_ALL) {
            bad |= FB_NAME(fb_score_scatter)(a, sums, b0, n, ybuf, wbuf, lbuf, ebuf, qbuf, cbuf);
        }
    }
    if (a->mode == FB_MODE_ALL) {
        FB_V(fb_split)(pos_m, pos_e, FB_PROD_LANES);
        FB_V(fb_split)(neg_m, neg_e, FB_PROD_LANES);
        const double pos = FB_V(fb_lane_sum)(acc + 80)
                           + FB_NAME(fb_product_loss)(a, FB_V(fb_lanes_log_product)(pos_m, pos_e));
        const double neg = FB_V(fb_lane_sum)(acc + 96)
                           + FB_NAME(fb_product_loss)(a, FB_V(fb_lanes_log_product)(neg_m, neg_e));
        sums[1] = FB_V(fb_lane_sum)(acc + 16) + (double)n_product;
        sums[2] = FB_V(fb_lane_sum)(acc + 32) + (double)n_product;
        sums[3] = FB_V(fb_lane_sum)(acc + 48);
        sums[4] = FB_V(fb_lane_sum)(acc + 64);
        sums[5] = pos;
        sums[6] = neg;
        sums[0] = pos + neg;
    } else if (a->mode == FB_MODE_COLS) {
        for (int64_t j = 0; j < ncols; j++) {
            for (int s = 1; s < 7; s++) sums[7 * j + s] = col[s * ncols + j];
            sums[7 * j] = sums[7 * j + 5] + sums[7 * j + 6];
        }
        free(col);
    } else {
        /* by group: every slot of the chunk; by row: the chunk's rows */
        const int64_t first = a->mode == FB_MODE_ROWS ? a->row0 + start / ncols : 0;
        const int64_t last = a->mode == FB_MODE_ROWS ? a->row0 + stop / ncols : a->n_slots;
        for (int64_t s = first; s < last; s++) sums[7 * s] = sums[7 * s + 5] + sums[7 * s + 6];
    }
    return bad;
}
