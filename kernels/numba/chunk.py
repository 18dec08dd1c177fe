"""Numba fast path, the chunk kernel: the twin of kernels/c/chunk.h.

One chunk (whole rows, a fixed number of elements) is computed block by block and summed in a
fixed order into its own slot of ``sums``, so the result does not depend on the thread count.
"""

import numpy as np
from numba import njit, types
from numba.extending import overload

from .. import (
    BLOCK,
    FLAG_GROUP,
    LANES,
    MODE_ALL,
    MODE_COLS,
    MODE_GROUPS,
    MODE_ROWS,
    NAN_OMIT,
    NAN_RAISE,
    PROD_LANES,
    ROW_PRODUCT_COLS,
    SPLIT_BLOCKS,
)
from .blocks import (
    add_weighted_into,
    by_column,
    check_block,
    count_weights,
    exp_abs_block,
    focal_block,
    fold_rounding,
    grad_block,
    grad_logit_hard,
    group,
    load_labels,
    load_weights,
    loss_block,
    loss_soft,
    multiply_compensated,
    multiply_into,
    q_block,
    q_block_compensated,
    q_block_logit,
    recheck,
    scatter_groups,
    scatter_products,
    score_block,
    score_factors,
    score_scatter,
)
from .forms import product_loss
from .loads import (
    gather_block,
    load_pos_weights,
    predictions,
    value_dtype,
)
from .llvm import (
    INLINE,
    JIT,
    KERNEL,
    add_lanes,
    multiply_lanes,
    prefer_wide_vectors,
    prefetch_block,
)
from .math import as_type_of, lane_sum, lanes_log_product, log_product, split


# The form of a call (chunk's `form`, a constant of dispatch's parallel loop): the options beside
# the types that decide most of the block loops a chunk can take; chunk is compiled per form (and
# type signature), each without the other forms' loops.
FORM_LOGITS = 1
FORM_COEF = 2  # per-element coefficients: pos_weight, label smoothing or focal loss
FORM_STRIDED = 4  # strided input (gathered per block); without it the blocks are views, so that
# the loops of contiguous input read one known array, not one of two (a view or a buffer)


@njit(**INLINE)
def _buffer(n, dtype, value):
    """n elements set to value, from a 64-byte boundary (the start of a cache line): Numba aligns
    its arrays to 32 bytes, and a 64-byte vector load or store across two cache lines costs two."""
    raw = np.empty(n + 64, dtype)
    skip = ((-raw.ctypes.data) % 64) // raw.itemsize
    buf = raw[skip:skip + n]
    buf[:] = value
    return buf


def chunk(form, y, p, w, pos_w, mask, g32, g64, grad, col_scale, row_scale, sums, o, gamma_alpha,
          start, stop, c):
    """Chunk c = elements [start, stop) (whole rows unless mode is MODE_ALL): Σ w·loss, Σ w into
    sums[c, slot]; returns the error bits. o: the options (dispatch._Options); gamma_alpha apart
    (see dispatch._fast_pass); form: the FORM_* bits of the call, a literal."""
    raise NotImplementedError


@overload(chunk, jit_options=KERNEL)
def _chunk(form, y, p, w, pos_w, mask, g32, g64, grad, col_scale, row_scale, sums, o,
           gamma_alpha, start, stop, c):
    """chunk for one form and type signature, compiled inside its caller: the form's flags and
    what the types fix (float32 math, focal loss) are constants of the closure, tested first by
    each branch that calls a block loop, so that Numba prunes the branches they exclude before
    typing them and compiles only the block loops the chunk can take."""
    if not isinstance(form, types.IntegerLiteral):
        return None
    LOGITS = bool(form.literal_value & FORM_LOGITS)
    COEF = bool(form.literal_value & FORM_COEF)
    STRIDED = bool(form.literal_value & FORM_STRIDED)
    F32 = p.dtype in (types.float32, types.uint16)  # float16 bits are computed as float32
    FOCAL = not isinstance(gamma_alpha, types.NoneType)

    def impl(form, y, p, w, pos_w, mask, g32, g64, grad, col_scale, row_scale, sums, o,
             gamma_alpha, start, stop, c):
        has_w, has_pw, has_mask, g_i32 = o.has_w, o.has_pw, o.has_mask, o.g_i32
        has_grad = o.has_grad
        mode, ncols, row0, nan_mode, want_loss = o.mode, o.ncols, o.row0, o.nan_mode, o.want_loss
        # the constants, one assignment each (Numba prunes a branch on a constant only)
        logits = LOGITS
        has_coef = COEF  # per-element coefficients: pos_weight (pbuf), smoothing or focal loss
        f32 = F32
        focal = FOCAL  # gamma_alpha is not None
        may_product = not COEF  # the product path: losses without coefficients (by_product)
        by_all = mode == MODE_ALL
        by_cols = mode == MODE_COLS
        clip_lo, clip_hi, smoothing = o.clip_lo, o.clip_hi, o.smoothing
        nll = (o.lo_pos, o.lo_neg, o.hi_pos, o.hi_neg)
        scale, has_col_scale, has_row_scale = o.scale, o.has_col_scale, o.has_row_scale
        prefer_wide_vectors()
        ybuf = _buffer(BLOCK, value_dtype(p), 0)
        lbuf = _buffer(BLOCK, value_dtype(p), 0)
        ebuf = _buffer(BLOCK, value_dtype(p), 0)
        wbuf = _buffer(BLOCK, np.float64, 1.0)
        mbuf = _buffer(BLOCK, np.uint8, 1)
        hbuf = _buffer(BLOCK if o.p_half else 0, np.float32, 0)  # float16 predictions, decoded
        # strided inputs (element k at [k·stride]): a block gathered
        y_stride, p_stride, w_stride, m_stride = o.y_stride, o.p_stride, o.w_stride, o.m_stride
        strided = STRIDED
        gy = np.empty(BLOCK if y_stride != 1 else 0, y.dtype)
        gp = np.empty(BLOCK if p_stride != 1 else 0, p.dtype)
        gw = np.empty(BLOCK if w_stride != 1 else 0, w.dtype)
        gm = np.empty(BLOCK if m_stride != 1 else 0, mask.dtype)
        sbuf = _buffer(BLOCK, np.float64, scale)
        pbuf = _buffer(BLOCK, np.float64, 1.0)
        qbuf = _buffer(BLOCK, np.float64, 0.0)
        # float64 product path: the rounding of 1 - p
        qlo = _buffer(0 if f32 else BLOCK, np.float64, 0.0)
        comp = np.zeros(PROD_LANES)  # float64 product path: the products' roundings, relative
        rnd = np.zeros(PROD_LANES)  # float64 product path: the roundings since the last fold
        y64 = np.empty(BLOCK if focal else 0)  # focal loss: labels as float64
        acc_l = np.zeros(LANES)
        acc_w = np.zeros(LANES)
        prod_m = np.ones(PROD_LANES)
        prod_e = np.zeros(PROD_LANES, np.int64)
        lane_logs = np.empty(PROD_LANES)
        n_slots = sums.shape[1]
        col_l = np.zeros(ncols if by_cols else 0)
        col_w = np.zeros(ncols if by_cols else 0)
        col_m = np.ones(ncols if by_cols else 0)
        col_e = np.zeros(ncols if by_cols else 0, np.int64)
        omit = nan_mode == NAN_OMIT
        # the loops are called with coef None without coefficients
        coef = (1.0 - smoothing, 0.5 * smoothing)
        counted = has_mask or omit  # weights zeroed where masked or an omitted NaN (count_weights)
        use_w = has_coef or has_w or counted
        keep_e = logits and want_loss and has_grad
        # the product path (see fb_chunk): Σ -log q = -log Π q (from logits: Σ log(1 + e) = log
        # Π), one logarithm per lane or column
        # 1-D input by group: one product per group (scatter_products), when the groups are few
        # beside the chunk's elements (their logarithms are taken at the chunk end)
        group_products = mode == MODE_GROUPS and ncols == 1 and n_slots * 8 <= stop - start
        by_product = (may_product and (f32 or (by_all and not logits)) and not use_w and want_loss
                      and (logits or clip_lo >= 2.0 ** -28)
                      and (by_all or by_cols or ncols >= ROW_PRODUCT_COLS or group_products))
        # product path by group: each group's product (times 2^grp_e), loss sum (logits), count
        grp = np.zeros((n_slots if by_product and group_products else 0, 3))
        grp[:, 0] = 1.0
        grp_e = np.zeros(grp.shape[0], np.int64)
        q_lo = np.float64(clip_lo)  # the product path clamps p to the clip bounds in float64
        q_hi = np.float64(clip_hi)
        # the product path in prod_m lanes (not by column, not one product per group)
        lane_products = by_product and not by_cols and not group_products
        rows_since_split = 0
        blocks_since_split = 0
        bad = 0
        element_ids = mode == MODE_GROUPS and ncols == 1  # group ids to prefetch: one per element
        # the streams of a block, prefetched for the next block: (array, whether it is one)
        reads = ((p, True), (y, True), (w, has_w), (mask, has_mask),
                 (g32, element_ids and g_i32),
                 (g64, element_ids and not g_i32))
        writes = ((grad, has_grad),)
        # losses first without checks or NaN handling (kept when the block is clean: loss_block)
        unchecked = not counted
        # the labels are loaded in the block's first loop, for a block taken to be of the form of
        # the one before: the product loop from logits (q_block_logit), the soft-label loss loop
        # (loss_soft), else a loop of their own (load_labels)
        q_first = by_product and logits
        soft_first = False
        for b0 in range(start, stop, BLOCK):
            n = min(BLOCK, stop - b0)
            # the next block's inputs are prefetched, half after this block's labels are loaded
            # (before the loop that loads them when it is the long loop of the form: q_first,
            # soft_first) and half before the gradient: one burst of prefetches would stall the
            # loop behind it
            # (none for strided input: the hardware prefetcher follows its constant stride)
            next_n = 0 if strided else max(0, min(BLOCK, stop - b0 - BLOCK))
            if strided:
                pb = predictions(gather_block(p, p_stride, b0, n, gp), n, hbuf)
                yb = gather_block(y, y_stride, b0, n, gy)
            else:
                pb = predictions(p[b0:b0 + n], n, hbuf)
                yb = y[b0:b0 + n]
            ok = False
            clean = False
            if (q_first or soft_first) and next_n > 0:  # the prefetch before the labels' loop
                prefetch_block(b0 + BLOCK, next_n // 2, reads, writes)
            if may_product and logits and q_first:
                ok, lbad, soft = q_block_logit(pb, yb, n, ybuf, qbuf, lbuf, ebuf)
            elif want_loss and not logits and not has_coef and not focal and soft_first:
                clean, lbad, soft = loss_soft(pb, yb, n, ybuf, None, pbuf, None, lbuf, clip_lo,
                                               clip_hi, nll, omit)
            else:
                lbad, soft = load_labels(yb, n, ybuf)
                if next_n > 0:
                    prefetch_block(b0 + BLOCK, next_n // 2, reads, writes)
            soft |= smoothing != 0.0  # smoothed labels are never 0 or 1
            wbad = False
            if has_w:
                if strided:
                    wbad = load_weights(gather_block(w, w_stride, b0, n, gw), n, wbuf)
                else:
                    wbad = load_weights(w[b0:b0 + n], n, wbuf)
            elif use_w:
                wbuf[:] = 1.0
            if has_mask:
                mb = gather_block(mask, m_stride, b0, n, gm) if strided else mask[b0:b0 + n]
                for k in range(n):  # not a slice assignment: it compiles a shape error's message
                    mbuf[k] = mb[k]
            if has_coef and has_pw:
                load_pos_weights(pos_w, o.pw_rs, o.pw_cs, row0, ncols, b0, n, pbuf)
            if lbad or wbad:
                bad |= recheck(yb, pb, has_w, nan_mode, n, mbuf, wbuf)
            product = by_product and not (lbad or soft)
            # lbuf holds losses to sum (none for the gradient alone by one sum for all: Σw only)
            sum_lbuf = (not product or logits) and (want_loss or not by_all)
            if may_product and logits and product and not q_first:  # a hard block after another
                ok = q_block_logit(pb, yb, n, ybuf, qbuf, lbuf, ebuf)[0]
            elif may_product and not logits and f32 and product:
                ok = q_block(pb, n, ybuf, q_lo, q_hi, qbuf)
            elif may_product and not logits and not f32 and product:
                ok = q_block_compensated(pb, n, ybuf, q_lo, q_hi, qbuf, qlo)
            ok &= product  # the elements of a block off the product path are checked below
            if not (soft_first and soft):  # else the soft losses computed above
                clean = False
                if want_loss and not has_coef and not focal and unchecked and not product:
                    clean = loss_block(pb, n, ybuf, None, pbuf, None, lbuf, ebuf, clip_lo,
                                       clip_hi, nll, omit, logits, soft)
            # with coefficients (pos_weight, smoothing)
            if want_loss and has_coef and not focal and unchecked and not product:
                clean = loss_block(pb, n, ybuf, None, pbuf, coef, lbuf, ebuf, clip_lo, clip_hi,
                                   nll, omit, logits, soft)
            q_first = product and logits  # the next block taken to be as this one
            soft_first = (want_loss and not has_coef and not focal and unchecked and soft
                          and not logits)
            if not ok and not clean and (not logits or nan_mode == NAN_RAISE):  # else unchecked
                bad |= check_block(pb, n, ybuf, mbuf, not logits, nan_mode)
            if want_loss and not focal and not product and not clean:  # focal loss: below
                if has_coef:
                    loss_block(pb, n, ybuf, mbuf, pbuf, coef, lbuf, ebuf, clip_lo, clip_hi, nll,
                               omit, logits, soft)
                else:
                    loss_block(pb, n, ybuf, mbuf, pbuf, None, lbuf, ebuf, clip_lo, clip_hi, nll,
                               omit, logits, soft)
            if counted:
                count_weights(pb, n, ybuf, mbuf, wbuf, omit)
            if next_n > 0:
                prefetch_block(b0 + BLOCK + next_n // 2, next_n - next_n // 2, reads, writes)
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
                    by_column(sbuf, col_scale, b0 % ncols, ncols, n)
                gb = grad[b0:b0 + n]
                if focal:  # focal_block below
                    pass
                elif has_coef:
                    grad_block(pb, n, ybuf, mbuf, wbuf, pbuf, coef, sbuf, ebuf, keep_e, gb,
                               clip_lo, clip_hi, omit, logits)
                elif logits and not (use_w or soft or has_row_scale or has_col_scale):
                    if not keep_e:
                        exp_abs_block(pb, n, ebuf)
                    grad_logit_hard(pb, n, ybuf, ebuf, gb, as_type_of(pb[0], scale))
                else:
                    grad_block(pb, n, ybuf, mbuf, wbuf, pbuf, None, sbuf, ebuf, keep_e, gb,
                               clip_lo, clip_hi, omit, logits)
            if focal:
                # focal losses and gradient in one pass (the gradient into ebuf when there is
                # none); no product path here
                focal_block(pb, n, ybuf, mbuf, wbuf, pbuf, sbuf, coef, lbuf,
                            grad[b0:b0 + n] if has_grad else ebuf, clip_lo, clip_hi, nll,
                            gamma_alpha, omit, logits, want_loss, qbuf, y64)
            if by_all:
                if may_product and not f32 and product:
                    multiply_compensated(prod_m, rnd, qbuf, qlo, n)
                elif may_product and product:
                    multiply_lanes(prod_m, qbuf, 0, n)
                if sum_lbuf and use_w:
                    add_lanes(acc_l, lbuf, acc_w, wbuf, 0, n)
                elif sum_lbuf:
                    add_lanes(acc_l, lbuf, None, None, 0, n)
                elif use_w:
                    add_lanes(acc_w, wbuf, None, None, 0, n)
            elif by_cols:
                k = 0
                j = (b0 - start) % ncols
                while k < n:
                    run = min(n - k, ncols - j)
                    if may_product and product:
                        multiply_into(col_m[j:j + run], qbuf[k:k + run])
                    if sum_lbuf:
                        add_weighted_into(col_l[j:j + run], col_w[j:j + run], lbuf[k:k + run],
                                          wbuf[k:k + run])
                    k += run
                    if may_product and j + run == ncols and by_product:
                        rows_since_split += 1
                        if rows_since_split == 32:
                            split(col_m, col_e, ncols)
                            rows_since_split = 0
                    j = 0
            else:
                # each row in lanes by column, then its total into its slot; rows shorter than
                # LANES straight into the slot (1-D input by group: the block in scatter_groups)
                cs = np.int64(0) if mode == MODE_ROWS else np.int64(c)
                k = 0
                row = b0 // ncols
                j = b0 % ncols
                if mode == MODE_GROUPS and ncols == 1:
                    if may_product and product and g_i32:
                        bad |= scatter_products(g32[row:row + n], n, qbuf, lbuf, grp, grp_e,
                                                logits)
                    elif may_product and product:
                        bad |= scatter_products(g64[row:row + n], n, qbuf, lbuf, grp, grp_e,
                                                logits)
                    elif g_i32:
                        bad |= scatter_groups(g32[row:row + n], n, lbuf, wbuf, sums[cs])
                    else:
                        bad |= scatter_groups(g64[row:row + n], n, lbuf, wbuf, sums[cs])
                    k = n
                while ncols < LANES and k < n:
                    slot = row0 + row if mode == MODE_ROWS else group(g32, g64, g_i32, row)
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
                    if may_product and product:
                        # the products, and from logits the other part of the losses in their
                        # lanes
                        while t < run and (j + t) % PROD_LANES != 0:
                            prod_m[(j + t) % PROD_LANES] *= qbuf[k + t]
                            if logits:
                                acc_l[(j + t) % LANES] += np.float64(lbuf[k + t])
                            t += 1
                        # the rest of the row (or block) from lane 0 on: lane q is element t + q
                        multiply_lanes(prod_m, qbuf, k + t, run - t)
                        if logits:
                            add_lanes(acc_l, lbuf, None, None, k + t, run - t)
                    else:
                        while t < run and (j + t) % LANES != 0:
                            acc_l[(j + t) % LANES] += np.float64(lbuf[k + t]) * wbuf[k + t]
                            acc_w[(j + t) % LANES] += wbuf[k + t]
                            t += 1
                        if use_w:  # the rest from lane 0 on
                            add_lanes(acc_l, lbuf, acc_w, wbuf, k + t, run - t)
                        else:
                            add_lanes(acc_l, lbuf, None, None, k + t, run - t)
                    k += run
                    j += run
                    if j == ncols:
                        # the row's loss and Σw into its slot, the lanes reset (C: fb_row_done);
                        # written out here: as a function inlined by Numba its array arguments
                        # take and drop a reference count each, two calls into NRT per array and
                        # row
                        slot = row0 + row if mode == MODE_ROWS else group(g32, g64, g_i32, row)
                        if slot < 0 or slot >= sums.shape[1]:
                            bad |= FLAG_GROUP
                        else:
                            loss = lane_sum(acc_l)
                            if may_product and by_product:  # split before the logarithms, as in C
                                split(prod_m, prod_e, PROD_LANES)
                                loss += product_loss(logits,
                                                     lanes_log_product(prod_m, prod_e, lane_logs))
                            sums[cs, slot, 0] += loss
                            sums[cs, slot, 1] += lane_sum(acc_w) if use_w else np.float64(ncols)
                        acc_l[:] = 0.0
                        acc_w[:] = 0.0
                        if may_product and by_product:
                            prod_m[:] = 1.0
                            prod_e[:] = 0
                        j = 0
                        row += 1
            if may_product and product and lane_products:  # at most 27 factors per lane
                blocks_since_split += 1  # since the last split
                if blocks_since_split == SPLIT_BLOCKS:
                    if not f32:
                        fold_rounding(prod_m, rnd, comp)
                    split(prod_m, prod_e, PROD_LANES)
                    blocks_since_split = 0
        if by_all:
            if not f32:
                fold_rounding(prod_m, rnd, comp)
            split(prod_m, prod_e, PROD_LANES)
            log_prod = lanes_log_product(prod_m, prod_e, lane_logs)
            if not f32:  # log Π q = log Π m + log1p(comp), = comp to 2^-106
                log_prod += ((lane_sum(comp[:16]) + lane_sum(comp[16:32]))
                             + (lane_sum(comp[32:48]) + lane_sum(comp[48:])))
            sums[c, 0, 0] = lane_sum(acc_l) + product_loss(logits, log_prod)
            sums[c, 0, 1] = lane_sum(acc_w) if use_w else np.float64(stop - start)
        elif by_cols:
            for j in range(ncols):
                sums[c, j, 0] = col_l[j] + product_loss(logits, log_product(col_m[j], col_e[j]))
                sums[c, j, 1] = col_w[j] if use_w else np.float64((stop - start) // ncols)
        else:
            for j in range(grp.shape[0]):
                loss = product_loss(logits, log_product(grp[j, 0], grp_e[j]))
                sums[c, j, 0] += grp[j, 1] + loss
                sums[c, j, 1] += grp[j, 2]
        return bad

    return impl


@njit(**JIT)
def score_chunk(y, p, w, mask, g32, g64, sums, o, start, stop, c):
    """The scoring pass (sums with 7 statistics; fastbce/_score.py): chunk c = elements [start,
    stop) as chunk, its seven statistics per slot into sums[c, slot] (by rows: the row's slot):
    Σw·l, Σw, count, Σw·y, Σw·q, Σw·y·(-log q), Σw·(1-y)·(-log(1-q)), with Σw·l formed at the end
    as the sum of the last two. One sum for all with float32 predictions and no weights, mask or
    omitted NaN takes the product path in its hard blocks (a product for the positives and one
    for the negatives); other blocks a logarithm per element (score_block). Returns the error
    bits."""
    has_w, has_mask, g_i32 = o.has_w, o.has_mask, o.g_i32
    mode, ncols, row0, logits, nan_mode, f32 = o.mode, o.ncols, o.row0, o.logits, o.nan_mode, o.f32
    clip_lo, clip_hi = o.clip_lo, o.clip_hi
    nll = (o.lo_pos, o.lo_neg, o.hi_pos, o.hi_neg)
    prefer_wide_vectors()
    ybuf = _buffer(BLOCK, p.dtype, 0)
    lbuf = _buffer(BLOCK, p.dtype, 0)
    ebuf = _buffer(BLOCK, p.dtype, 0)
    wbuf = _buffer(BLOCK, np.float64, 1.0)
    mbuf = _buffer(BLOCK, np.uint8, 1)
    qbuf = _buffer(BLOCK, np.float64, 0.0)
    cbuf = _buffer(BLOCK, np.float64, 1.0)
    fpos = _buffer(BLOCK, np.float64, 1.0)
    fneg = _buffer(BLOCK, np.float64, 1.0)
    acc_w = np.zeros(LANES)
    acc_c = np.zeros(LANES)
    acc_y = np.zeros(LANES)
    acc_q = np.zeros(LANES)
    acc_p = np.zeros(LANES)
    acc_n = np.zeros(LANES)
    acc_x = np.zeros(LANES)  # Σw again, unused: add_lanes adds the weights of every statistic
    pos_m = np.ones(PROD_LANES)
    neg_m = np.ones(PROD_LANES)
    pos_e = np.zeros(PROD_LANES, np.int64)
    neg_e = np.zeros(PROD_LANES, np.int64)
    lane_logs = np.empty(PROD_LANES)
    col = np.zeros((7, ncols if mode == MODE_COLS else 0))
    use_w = has_w or has_mask or nan_mode == NAN_OMIT
    by_product = f32 and mode == MODE_ALL and not use_w and (logits or clip_lo >= 2.0 ** -28)
    q_lo = np.float64(clip_lo)
    q_hi = np.float64(clip_hi)
    blocks_since_split = 0
    n_product = 0  # elements of product blocks: weight 1 each
    bad = 0
    cs = np.int64(0) if mode == MODE_ROWS else np.int64(c)
    element_ids = mode == MODE_GROUPS and ncols == 1
    reads = ((p, True), (y, True), (w, has_w), (mask, has_mask), (g32, element_ids and g_i32),
             (g64, element_ids and not g_i32))
    writes = ((p, False),)
    for b0 in range(start, stop, BLOCK):
        n = min(BLOCK, stop - b0)
        next_n = max(0, min(BLOCK, stop - b0 - BLOCK))
        pb = p[b0:b0 + n]
        yb = y[b0:b0 + n]
        lbad, soft = load_labels(yb, n, ybuf)
        if next_n > 0:  # in two halves, as in chunk
            prefetch_block(b0 + BLOCK, next_n // 2, reads, writes)
        wbad = False
        if has_w:
            wbad = load_weights(w[b0:b0 + n], n, wbuf)
        elif use_w:  # score_block zeroed the masked or omitted ones
            wbuf[:] = 1.0
        if has_mask:
            mbuf[:n] = mask[b0:b0 + n]
        if lbad or wbad:
            bad |= recheck(yb, pb, has_w, nan_mode, n, mbuf, wbuf)
        product = by_product and not (lbad or soft)
        if product and logits:
            product = q_block_logit(pb, yb, n, ybuf, qbuf, lbuf, ebuf)[0]
        elif product:
            product = q_block(pb, n, ybuf, q_lo, q_hi, qbuf)
        if product:
            score_factors(pb, ybuf, qbuf, lbuf, ebuf, fpos, fneg, n, logits)
            multiply_lanes(pos_m, fpos, 0, n)
            multiply_lanes(neg_m, fneg, 0, n)
            blocks_since_split += 1
            if blocks_since_split == SPLIT_BLOCKS:  # as chunk's lane products
                split(pos_m, pos_e, PROD_LANES)
                split(neg_m, neg_e, PROD_LANES)
                blocks_since_split = 0
            # weight and count 1 each (n_product), the labels, q and from logits the rest of the
            # parts in the lanes of their statistics
            n_product += n
            add_lanes(acc_y, ybuf, None, None, 0, n)
            add_lanes(acc_q, qbuf, None, None, 0, n)
            if logits:
                add_lanes(acc_p, lbuf, None, None, 0, n)
                add_lanes(acc_n, ebuf, None, None, 0, n)
        else:
            bad |= score_block(pb, n, ybuf, mbuf, wbuf, lbuf, ebuf, qbuf, cbuf, clip_lo, clip_hi,
                               nll, nan_mode, logits, soft)
        if next_n > 0:
            prefetch_block(b0 + BLOCK + next_n // 2, next_n - next_n // 2, reads, writes)
        if mode == MODE_ALL and not product:  # product blocks: summed above
            # element k of the chunk into lane k % LANES of each statistic, in element order
            add_lanes(acc_p, lbuf, acc_w, wbuf, 0, n)
            add_lanes(acc_n, ebuf, acc_x, wbuf, 0, n)
            add_lanes(acc_y, ybuf, acc_x, wbuf, 0, n)
            add_lanes(acc_q, qbuf, acc_x, wbuf, 0, n)
            add_lanes(acc_c, cbuf, None, None, 0, n)
        elif mode == MODE_COLS:
            # column j of every row, in row order
            k = 0
            j = (b0 - start) % ncols
            while k < n:
                run = min(n - k, ncols - j)
                for t in range(run):
                    wv = wbuf[k + t]
                    col[1, j + t] += wv
                    col[2, j + t] += cbuf[k + t]
                    col[3, j + t] += np.float64(ybuf[k + t]) * wv
                    col[4, j + t] += qbuf[k + t] * wv
                    col[5, j + t] += np.float64(lbuf[k + t]) * wv
                    col[6, j + t] += np.float64(ebuf[k + t]) * wv
                k += run
                j = 0
        elif mode != MODE_ALL:
            bad |= score_scatter(g32, g64, g_i32, mode, row0, ncols, b0, n, ybuf, wbuf, lbuf,
                                 ebuf, qbuf, cbuf, sums[cs])
    if mode == MODE_ALL:
        split(pos_m, pos_e, PROD_LANES)
        split(neg_m, neg_e, PROD_LANES)
        pos = lane_sum(acc_p) + product_loss(logits, lanes_log_product(pos_m, pos_e, lane_logs))
        neg = lane_sum(acc_n) + product_loss(logits, lanes_log_product(neg_m, neg_e, lane_logs))
        sums[c, 0, 1] = lane_sum(acc_w) + np.float64(n_product)
        sums[c, 0, 2] = lane_sum(acc_c) + np.float64(n_product)
        sums[c, 0, 3] = lane_sum(acc_y)
        sums[c, 0, 4] = lane_sum(acc_q)
        sums[c, 0, 5] = pos
        sums[c, 0, 6] = neg
        sums[c, 0, 0] = pos + neg
    elif mode == MODE_COLS:
        for j in range(ncols):
            for s in range(1, 7):
                sums[c, j, s] = col[s, j]
            sums[c, j, 0] = sums[c, j, 5] + sums[c, j, 6]
    else:
        # by group: every slot of the chunk; by row: the chunk's rows
        first = row0 + start // ncols if mode == MODE_ROWS else 0
        last = row0 + stop // ncols if mode == MODE_ROWS else sums.shape[1]
        for s in range(first, last):
            sums[cs, s, 0] = sums[cs, s, 5] + sums[cs, s, 6]
    return bad
