"""Dispatch to the fast path: which calls it runs, and its arguments.

The fast path (``fast_pass`` of the compiled backends: kernels/c/ for Cython, kernels/numba/ for
Numba, twin files) computes the commonest calls with vectorised float32 math (float64 for float64
predictions; float16 ones are decoded to float32 per block): BCE from probabilities (hard labels:
one logarithm per element, or for float32 predictions without weights none at all, as -log of a
product of probabilities in float64 lanes; soft labels: two) or logits, with optional scalar or
full sample weights, a pos_weight of any broadcast shape (per label, per sample, per element),
label smoothing, focal loss and an optional mask, reduced to a mean or sum overall, per label
(axis=0), per sample (axis=1) or per group; its gradient, or both fused; and the seven statistics
of the scoring report (n_stats=7: fb_score_chunk / score_chunk). It keeps the chunking of the
general kernel (a function of the shape only) and sums each chunk in a fixed order in float64, so
results do not depend on the thread count.

Fortran-ordered input reduced per label (axis=0) is read in place, as a per-row pass over the
C-contiguous transposes (the same values to rounding, summed in another order). Input whose
elements lie a constant positive stride apart in C order (y[::2], whole rows of every second
column) is read in place too, gathered per block (the same values in the same order as C-ordered
input: the same bits). Inputs in any other layout (broadcast, padded rows, Fortran order for the
other reductions or with a pos_weight, non-contiguous input of the scoring statistics or with
a gradient out= that is not C-contiguous) are copied to C order one slab of whole chunks at a
time: the same chunks, hence the same bits, with bounded extra memory (SLAB_ELEMENTS per array).
Everything else (focal loss of float64 predictions with γ not an integer <= 7,
reduction="none", float16 labels, the scoring statistics of float16 predictions, float64 labels
with float32 predictions) runs the general kernel.
"""

from dataclasses import dataclass

import numpy as np

from ._kernels import MODE_COLS, MODE_GROUPS, MODE_ROWS, FastOptions

# Elements per slab copied to C order when an input is not C-contiguous (several chunks).
SLAB_ELEMENTS = 1 << 21

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_BYTE_LABELS = (np.dtype(np.bool_), np.dtype(np.uint8), np.dtype(np.int8))
# Group ids read in place; other integer dtypes are converted to int64 first.
_GROUP_IDS = (np.dtype(np.int32), np.dtype(np.int64))
# Smallest lower clip bound that keeps every logarithm argument a normal number.
_MIN_CLIP = {np.dtype(np.float32): float(np.finfo(np.float32).tiny),
            np.dtype(np.float64): float(np.finfo(np.float64).tiny)}
# pos_weight (besides 0) and label smoothing in this range keep the coefficients of the terms
# (pos_weight·(y(1-s) + s/2) of a 0/1 label) normal numbers of the prediction dtype; others (a
# coefficient that rounds to 0 would drop an infinite term) take the general kernel.
_COEF_RANGE = {np.dtype(np.float32): (2.0 ** -32, 2.0 ** 32),
               np.dtype(np.float64): (2.0 ** -256, 2.0 ** 256)}


@dataclass(frozen=True)
class FastPass:
    """Arguments of ``fast_pass`` that come from the plan: 2-D (rows, columns) views, no copies
    except for integer labels wider than a byte and group ids that are not int32 or int64 (or not
    contiguous)."""

    y: np.ndarray
    p: np.ndarray
    w: np.ndarray  # per-element weights, or None
    weight: float  # a scalar sample_weight (1.0 without one): sums and gradient are scaled by it
    pos_w: np.ndarray  # float64 pos_weight, flat (pw_strides), or None (1 for all)
    pw_strides: tuple  # element (i, j) at pos_w[i·rs + j·cs]: per label, per sample, per element
    mask: np.ndarray  # uint8 (1 = counted), or None
    groups: np.ndarray  # contiguous int32 or int64 group id per row (MODE_GROUPS), or None
    mode: int
    logits: bool
    nan_mode: int
    clip: tuple  # (lo, hi): p is clipped to [lo, hi], eps and 1 - eps rounded to p's dtype
    smoothing: float  # label smoothing: y·(1 - smoothing) + smoothing/2 (after the range check)
    focal: tuple  # focal loss (γ, α, n), n = γ if an integer <= 7 else -1; None: plain BCE
    nll: tuple  # losses at the clip bounds: -log q, -log(1-q) for q = lo, then for q = hi


def _is_scalar(view):
    return all(stride == 0 for stride in view.strides)


def _flat_strided(a):
    """Whether the C-order elements of 2-D `a` lie a constant positive number of items apart
    (a.reshape(-1) is then a view the kernels read in place)."""
    rs, cs = a.strides
    step = rs if a.shape[1] == 1 else cs
    return (step > 0 and step % a.itemsize == 0
            and (a.shape[1] == 1 or a.shape[0] == 1 or rs == a.shape[1] * cs))


def fast_pass_arguments(plan, kernel, n_stats, grad):
    """The :class:`FastPass` of a plan, or None when the general kernel must run it."""
    if not hasattr(kernel, "fast_pass") or n_stats not in (2, 7) or plan.reduction == "none":
        return None
    if n_stats == 7 and (grad is not None or plan.gamma != 0.0 or plan.alpha >= 0.0
                         or plan.smoothing != 0.0 or not _is_scalar(plan.pw)
                         or plan.pw[0, 0] != 1.0):
        return None  # the scoring pass has none of these
    if grad is not None and plan.mode == MODE_GROUPS:
        return None
    if plan.y_half or (plan.p_half and n_stats == 7):
        return None
    p, y = plan.p, plan.y
    # the dtype of the math: float16 predictions (their uint16 bits) are decoded to float32
    dtype = np.dtype(np.float32) if plan.p_half else p.dtype
    if dtype not in _MIN_CLIP or plan.clip[0] < _MIN_CLIP[dtype]:
        return None
    gamma_n = int(plan.gamma) if plan.gamma in range(8) else -1
    if gamma_n < 0 and dtype == np.float64:
        return None  # exp(γ·log(1-p_t)) is not within a few float64 ulp
    pos_w, pw_strides = None, (0, 1)
    if not (_is_scalar(plan.pw) and plan.pw[0, 0] == 1.0):
        pw = plan.pw
        if pw.strides[0] != 0 and pw.shape[0] > 1:  # per sample (n, 1), or per element
            per_element = pw.strides[1] != 0 and pw.shape[1] > 1
            pw_strides = (pw.shape[1], 1) if per_element else (1, 0)
            pw = pw if per_element else pw[:, :1]
        else:  # per label, or one for all
            pw = pw[0]
        pos_w = np.ascontiguousarray(pw, dtype=np.float64).reshape(-1)
        if not ((pos_w >= 0.0) & (pos_w < np.inf)).all():
            return None  # the general kernel reports it (unless nothing is counted)
        lo, hi = _COEF_RANGE[dtype]
        if not ((pos_w == 0.0) | ((pos_w >= lo) & (pos_w <= hi))).all():
            return None
    if plan.smoothing != 0.0 and plan.smoothing < _COEF_RANGE[dtype][0]:
        return None
    mask = None
    if not _is_scalar(plan.mask):
        mask = plan.mask.view(np.uint8)
    elif not plan.mask[0, 0]:
        return None  # everything masked
    if y.dtype in _BYTE_LABELS:
        y = y.view(np.uint8)  # int8 -1 becomes 255: still outside [0, 1]
    elif y.dtype.kind in "iu":
        y = y.astype(np.float32)  # exact for 0 and 1; any other integer stays outside [0, 1]
    elif y.dtype == np.float64 and dtype == np.float32:
        return None  # float32 math would round soft float64 labels
    elif y.dtype not in _FLOATS:
        return None
    w, weight = None, 1.0
    if _is_scalar(plan.w):
        weight = float(plan.w[0, 0])
        if not 0.0 <= weight < np.inf:
            return None  # the general kernel reports it (unless nothing is counted)
    elif plan.w.dtype in _FLOATS:
        w = plan.w
    else:
        return None
    groups = None
    if plan.mode == MODE_GROUPS:
        groups = plan.groups if plan.groups.dtype in _GROUP_IDS else plan.groups.astype(np.int64)
        groups = np.ascontiguousarray(groups)  # read in place by address
    lo, hi = plan.clip  # eps and 1 - eps rounded to p's dtype, as the general kernel clips
    with np.errstate(divide="ignore"):  # from logits the bounds are unused (hi may be 1)
        nll = (-np.log(lo), -np.log1p(-lo), -np.log(hi), -np.log1p(-hi))
    return FastPass(y=y, p=p, w=w, weight=weight, pos_w=pos_w, pw_strides=pw_strides, mask=mask,
                    groups=groups,
                    mode=plan.mode, logits=plan.from_logits, nan_mode=plan.nan_mode,
                    clip=plan.clip, smoothing=plan.smoothing,
                    focal=(plan.gamma, plan.alpha, gamma_n)
                    if plan.gamma != 0.0 or plan.alpha >= 0.0 else None,
                    nll=tuple(map(float, nll)))


def run_fast_pass(kernel, fast, rows_per_chunk, n_cols, sums, flags, grad, row_factor,
                  col_factor, want_value, n_threads):
    """Run the fast pass; partial sums and error flags as the general kernel's. The gradient is
    w·dl/dv times the scalar weight, row_factor (one value per row, or one for all) and col_factor
    (one value per column, or one for all)."""
    arrays = [a for a in (fast.y, fast.p, fast.w, fast.mask) if a is not None]
    row_factor = np.ascontiguousarray(row_factor, dtype=np.float64)
    col_factor = np.ascontiguousarray(col_factor, dtype=np.float64)
    grad_scale = fast.weight * (row_factor[0] if row_factor.size == 1 else 1.0)
    grad_scale *= col_factor[0] if col_factor.size == 1 else 1.0
    row_scale = row_factor if row_factor.size > 1 else None
    col_scale = fast.weight * col_factor if col_factor.size > 1 else None
    chunk_elems = rows_per_chunk * n_cols
    options = FastOptions(
        mode=fast.mode, ncols=n_cols, row0=0, chunk_elems=chunk_elems, logits=fast.logits,
        nan_mode=fast.nan_mode, clip=fast.clip, smoothing=fast.smoothing,
        focal=fast.focal, nll=fast.nll, grad_scale=grad_scale, want_loss=want_value,
        pw_strides=fast.pw_strides)

    def run(parts, rows, grad_part):
        y, p, *rest = [a.reshape(-1) for a in parts]
        w = rest.pop(0) if fast.w is not None else None
        mask = rest.pop(0) if fast.mask is not None else None
        groups = None if fast.groups is None else fast.groups[rows]
        chunks = slice(rows.start // rows_per_chunk, -(-rows.stop // rows_per_chunk))
        kernel.fast_pass(y, p, w, fast.pos_w, mask, groups, row_scale, col_scale,
                         sums if fast.mode == MODE_ROWS else sums[chunks], flags[chunks], grad_part,
                         options._replace(row0=rows.start), n_threads)

    n_rows = fast.p.shape[0]
    if all(a.flags.c_contiguous for a in arrays) and (grad is None or grad.flags.c_contiguous):
        run(arrays, slice(0, n_rows), None if grad is None else grad.reshape(-1))
    elif fast.mode == MODE_COLS and fast.pos_w is None and sums.shape[2] == 2 and all(
            a.flags.f_contiguous for a in arrays) and (grad is None or grad.flags.f_contiguous):
        # Fortran order, one value per label: each label is a contiguous row of the transposes,
        # so this is the per-row pass over them, in place (the same sums to rounding as for C
        # order, added in another order; still a function of the shape only)
        rows_t = max(1, -(-chunk_elems // n_rows))
        flags_t = np.zeros(-(-n_cols // rows_t), np.uint8)
        y, p, *rest = [a.T.reshape(-1) for a in arrays]  # views: a.T is C-contiguous
        w = rest.pop(0) if fast.w is not None else None
        mask = rest.pop(0) if fast.mask is not None else None
        kernel.fast_pass(y, p, w, None, mask, None, col_factor if col_factor.size > 1 else None,
                         None, sums[:1], flags_t, None if grad is None else grad.T.reshape(-1),
                         options._replace(mode=MODE_ROWS, ncols=n_rows, chunk_elems=rows_t * n_rows),
                         n_threads)
        flags[0] |= np.bitwise_or.reduce(flags_t)
    elif sums.shape[2] == 2 and (grad is None or grad.flags.c_contiguous) and all(
            _flat_strided(a) for a in arrays):
        # elements a constant stride apart (y[::2]): read in place, gathered per block
        run(arrays, slice(0, n_rows), None if grad is None else grad.reshape(-1))
    else:
        slab = rows_per_chunk * max(1, SLAB_ELEMENTS // chunk_elems)
        for r0 in range(0, n_rows, slab):
            rows = slice(r0, min(n_rows, r0 + slab))
            part = None if grad is None else np.empty(grad[rows].shape, grad.dtype)
            run([np.ascontiguousarray(a[rows]) for a in arrays], rows,
                None if part is None else part.reshape(-1))
            if grad is not None:
                grad[rows] = part
    if fast.weight != 1.0:
        with np.errstate(invalid="ignore"):  # a weight of 0 times an infinite loss: NaN, as w·l
            sums[..., :2] *= fast.weight
            sums[..., 3:] *= fast.weight  # the scoring statistics: all but the count
