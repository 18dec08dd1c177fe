"""The losses people weigh BCE against: hinge and squared hinge on raw scores, Dice and Tversky on
soft counts, on the same engine (kernels/c/margin.h, kernels/numba/margin.py, the NumPy reference).

Arguments are checked by fastbce/_plan.py's ``make_plan``; rows are cut into the engine's chunks
(a function of the shape only) and each chunk is summed in a fixed order, so results do not
depend on the thread count. Inputs that are not C-contiguous are copied one slab of whole chunks
at a time (the same chunks, hence the same bits).
"""

import importlib
from dataclasses import dataclass

import numpy as np

from ._backends import load_backend, resolve_backend
from ._config import fork_safe_threads, launch_guard
from ._engine import chunking, reciprocal
from ._kernels import (
    FLAG_GROUP,
    FLAG_LABEL,
    FLAG_NAN,
    FLAG_WEIGHT,
    LOSS_HINGE,
    LOSS_OVERLAP,
    LOSS_SQUARED_HINGE,
    MARGIN_STATS,
    MODE_ALL,
    MODE_COLS,
    MODE_GROUPS,
    MODE_ROWS,
    NAN_OMIT,
    MarginOptions,
)
from ._plan import make_plan
from ._threads import resolve_num_threads

# Elements per slab copied to C order when an input is not C-contiguous (several chunks).
SLAB_ELEMENTS = 1 << 21

_FLAG_MESSAGES = (
    (FLAG_LABEL, "y_true has labels other than 0, 1 and -1 (hinge losses take 0/1 or -1/+1 labels)"),
    (FLAG_NAN, "y_true or y_pred contains NaN and nan_policy='raise'"),
    (FLAG_WEIGHT, "sample_weight has negative, NaN or infinite values"),
    (FLAG_GROUP, "groups has ids outside [0, n_groups)"),
)
_KERNEL_MODULES = {"cython": "fastbce._kernels.cython_kernels", "numba": "fastbce._kernels.numba.margin",
                   "numpy": "fastbce._kernels.reference"}
_LABELS_IN_PLACE = (np.dtype(np.uint8), np.dtype(np.int8), np.dtype(np.float32), np.dtype(np.float64))


@dataclass(frozen=True)
class _Operands:
    """2-D views of the checked inputs in the dtypes the kernels read (copies only for float16,
    labels of other integer dtypes and group ids other than int32/int64), and the plan."""

    y: np.ndarray
    p: np.ndarray
    w: np.ndarray  # None: weight 1
    mask: np.ndarray  # uint8 view, None: every element
    groups: np.ndarray  # contiguous int32/int64 ids (MODE_GROUPS), else None
    plan: object


def _operands(y_true, y_pred, sample_weight, mask, nan_policy, reduction, axis, groups, n_groups):
    plan = make_plan(y_true, y_pred, from_logits=True, eps=1e-7, sample_weight=sample_weight,
                     pos_weight=None, label_smoothing=0.0, mask=mask, nan_policy=nan_policy,
                     reduction=reduction, axis=axis, groups=groups, n_groups=n_groups)
    y, p = plan.y, plan.p
    if plan.y_half:
        y = y.view(np.float16).astype(np.float32)
    elif y.dtype == np.bool_:
        y = y.view(np.uint8)
    elif y.dtype not in _LABELS_IN_PLACE:
        y = y.astype(np.float64)
    if plan.p_half:
        p = p.view(np.float16).astype(np.float32)
    scalar = lambda view: all(s == 0 for s in view.strides)  # noqa: E731
    w = None if scalar(plan.w) and plan.w[0, 0] == 1.0 else plan.w
    m = None if scalar(plan.mask) and plan.mask[0, 0] else plan.mask.view(np.uint8)
    g = None
    if plan.mode == MODE_GROUPS:
        g = plan.groups if plan.groups.dtype in (np.int32, np.int64) else plan.groups.astype(np.int64)
        g = np.ascontiguousarray(g)
    return _Operands(y, p, w, m, g, plan)


def _kernel(backend):
    """The margin_pass of a backend name (load_backend first: it sets up Numba's threading layer)."""
    load_backend(backend)
    return importlib.import_module(_KERNEL_MODULES[backend]).margin_pass


def _new_output(op):
    """An element output (losses, gradient) in y_pred's memory order, as np.empty_like gives."""
    p = op.plan.p
    fortran = p.flags.f_contiguous and not p.flags.c_contiguous
    return np.empty(op.plan.shape, op.plan.out_dtype, order="F" if fortran else "C")


def _check_out(out, op):
    if out is None:
        return _new_output(op)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a NumPy array, got {type(out).__name__}")
    if out.shape != op.plan.shape or out.dtype != op.plan.out_dtype:
        raise ValueError(f"out must have shape {op.plan.shape} and dtype {op.plan.out_dtype}, "
                         f"got shape {out.shape} and dtype {out.dtype}")
    if not out.flags.writeable:
        raise ValueError("out is read-only")
    return out


def _run(op, loss, backend, n_threads, *, want_sums=True, loss_out=None, grad_out=None, coef=None):
    """One margin pass: the float64 sums per slot (n_slots, MARGIN_STATS), summed over the chunks
    pairwise in a fixed order; element outputs written into loss_out / grad_out."""
    backend = resolve_backend(backend)
    margin_pass = _kernel(backend)
    plan = op.plan
    n_rows, n_cols = op.p.shape
    rows_per_chunk, n_chunks = chunking(n_rows, n_cols, plan.mode, plan.n_slots)
    threads = fork_safe_threads(backend, min(resolve_num_threads(n_threads), n_chunks))
    sums = np.empty((1 if plan.mode == MODE_ROWS else n_chunks, plan.n_slots, MARGIN_STATS))
    sums.fill(0.0)  # written, not calloc'ed: see fastbce/_engine.py
    flags = np.zeros(n_chunks, np.uint8)
    options = MarginOptions(loss, plan.nan_mode, plan.mode, 0, rows_per_chunk * n_cols, want_sums)
    coef = None if coef is None else np.ascontiguousarray(coef, dtype=np.float64)
    outputs = [None if a is None else plan.as_2d(a) for a in (loss_out, grad_out)]
    inputs = [op.y, op.p, op.w, op.mask]
    with launch_guard(backend):
        if backend == "numpy" or all(a is None or a.flags.c_contiguous for a in inputs + outputs):
            margin_pass(*inputs, op.groups, sums, flags, *outputs, coef, options, threads)
        else:
            slab = rows_per_chunk * max(1, SLAB_ELEMENTS // (rows_per_chunk * n_cols))
            for r0 in range(0, n_rows, slab):
                rows = slice(r0, min(n_rows, r0 + slab))
                parts = [None if a is None else np.ascontiguousarray(a[rows]) for a in inputs]
                outs = [None if a is None else np.empty(a[rows].shape, a.dtype) for a in outputs]
                chunks = slice(r0 // rows_per_chunk, -(-rows.stop // rows_per_chunk))
                margin_pass(*parts, None if op.groups is None else op.groups[rows],
                            sums if plan.mode == MODE_ROWS else sums[chunks], flags[chunks], *outs,
                            coef, options._replace(row0=r0), threads)
                for full, part in zip(outputs, outs):
                    if part is not None:
                        full[rows] = part
    bad = int(np.bitwise_or.reduce(flags))
    if bad:
        raise ValueError("; ".join(message for bit, message in _FLAG_MESSAGES if bad & bit))
    return np.ascontiguousarray(np.moveaxis(sums, 0, -1)).sum(axis=-1)


def _finish(plan, values):
    return float(values[0]) if plan.mode == MODE_ALL else values


# ---- hinge and squared hinge ------------------------------------------------------------------

def _hinge(loss, y_true, y_pred, sample_weight, mask, nan_policy, reduction, axis, groups,
           n_groups, n_threads, backend, *, want_value=True, want_grad=False, out=None):
    """(value or None, gradient or None) of a hinge loss."""
    op = _operands(y_true, y_pred, sample_weight, mask, nan_policy, reduction, axis, groups, n_groups)
    plan = op.plan
    totals = coef = None
    if want_grad:
        scale = np.ones(plan.n_slots)
        if reduction == "mean":
            if op.w is None and op.mask is None and plan.nan_mode != NAN_OMIT and plan.mode != MODE_GROUPS:
                n_rows, n_cols = plan.p.shape
                scale = np.full(plan.n_slots, 1.0 / {MODE_ALL: n_rows * n_cols, MODE_COLS: n_rows,
                                                     MODE_ROWS: n_cols}[plan.mode])
            else:  # Σw of each slot first: a reduction pass (its value is the mean as well)
                totals = _run(op, loss, backend, n_threads)
                scale = np.atleast_1d(reciprocal(totals[:, 1]))
        coef = np.stack([scale, np.zeros(plan.n_slots)], axis=1)
    loss_out = _new_output(op) if want_value and reduction == "none" else None
    grad = _check_out(out, op) if want_grad else None
    want_sums = want_value and reduction != "none" and totals is None
    if want_sums or loss_out is not None or grad is not None:
        sums = _run(op, loss, backend, n_threads, want_sums=want_sums, loss_out=loss_out,
                    grad_out=grad, coef=coef)
        totals = sums if want_sums else totals
    if not want_value:
        return None, grad
    if loss_out is not None:
        return loss_out, grad
    if reduction == "sum":
        return _finish(plan, totals[:, 0]), grad
    with np.errstate(invalid="ignore", divide="ignore"):
        return _finish(plan, totals[:, 0] / totals[:, 1]), grad


_HINGE_DOC = """
    y_true : array (n_samples,) or (n_samples, n_labels)
        Labels 0/1 (t = 2y - 1) or -1/+1 (t = y), as float, bool or integers; others raise.
    y_pred : array of the same shape, float16/32/64
        Raw scores (decision values, logits), any value.
    sample_weight : array broadcastable to y_pred, optional
        Non-negative finite weights w; element loss w·l.
    mask : bool array broadcastable to y_pred, optional
        True = counted; masked elements add nothing and are not checked.
    nan_policy : "propagate", "raise" or "omit"
    reduction : "mean" (Σw·l / Σw), "sum" or "none" (the weighted element losses)
    axis : None, 0 (per label) or 1 (per sample, Keras' reduction before its batch mean)
    groups, n_groups : integer id per sample in [0, n_groups): one value per group
    n_threads, backend : as for :func:`fastbce.bce`
"""
_GRAD_DOC = """
    The gradient is w·dl/dx, scaled by 1/Σw of the reduced slice for a mean. At the kink
    t·x = 1 the hinge gradient is -t (TensorFlow's gradient of maximum(1 - t·x, 0) goes to its
    first argument on ties); the squared hinge's is 0 there. Masked elements get 0. A weighted,
    masked, grouped or NaN-omitting mean takes a reduction pass for Σw first. ``out``: an array
    of y_pred's shape and output dtype to write into.
"""


def _doc(*parts):
    def decorate(function):
        function.__doc__ = function.__doc__.replace("{parameters}", "".join(parts))
        return function
    return decorate


@_doc(_HINGE_DOC)
def hinge(y_true, y_pred, *, sample_weight=None, mask=None, nan_policy="propagate",
          reduction="mean", axis=None, groups=None, n_groups=None, n_threads=None, backend=None):
    """Hinge loss ``l = max(0, 1 - t·x)``, t = 2y - 1 (or y for -1/+1 labels), x the raw score.

    Parameters
    ----------{parameters}"""
    return _hinge(LOSS_HINGE, y_true, y_pred, sample_weight, mask, nan_policy, reduction, axis,
                  groups, n_groups, n_threads, backend)[0]


@_doc(_HINGE_DOC, _GRAD_DOC)
def hinge_grad(y_true, y_pred, *, sample_weight=None, mask=None, nan_policy="propagate",
               reduction="mean", axis=None, groups=None, n_groups=None, n_threads=None,
               backend=None, out=None):
    """Gradient of :func:`hinge` with respect to ``y_pred``: -t·w where 1 - t·x >= 0, else 0.

    Parameters
    ----------{parameters}"""
    return _hinge(LOSS_HINGE, y_true, y_pred, sample_weight, mask, nan_policy, reduction, axis,
                  groups, n_groups, n_threads, backend, want_value=False, want_grad=True, out=out)[1]


@_doc(_HINGE_DOC, _GRAD_DOC)
def hinge_value_and_grad(y_true, y_pred, *, sample_weight=None, mask=None,
                         nan_policy="propagate", reduction="mean", axis=None, groups=None,
                         n_groups=None, n_threads=None, backend=None, out=None):
    """``(hinge(...), hinge_grad(...))`` in one fused pass (two for a weighted mean).

    Parameters
    ----------{parameters}"""
    return _hinge(LOSS_HINGE, y_true, y_pred, sample_weight, mask, nan_policy, reduction, axis,
                  groups, n_groups, n_threads, backend, want_grad=True, out=out)


@_doc(_HINGE_DOC)
def squared_hinge(y_true, y_pred, *, sample_weight=None, mask=None, nan_policy="propagate",
                  reduction="mean", axis=None, groups=None, n_groups=None, n_threads=None,
                  backend=None):
    """Squared hinge loss ``l = max(0, 1 - t·x)²`` (see :func:`hinge`).

    Parameters
    ----------{parameters}"""
    return _hinge(LOSS_SQUARED_HINGE, y_true, y_pred, sample_weight, mask, nan_policy, reduction,
                  axis, groups, n_groups, n_threads, backend)[0]


@_doc(_HINGE_DOC, _GRAD_DOC)
def squared_hinge_grad(y_true, y_pred, *, sample_weight=None, mask=None, nan_policy="propagate",
                       reduction="mean", axis=None, groups=None, n_groups=None, n_threads=None,
                       backend=None, out=None):
    """Gradient of :func:`squared_hinge`: -2·t·w·max(0, 1 - t·x).

    Parameters
    ----------{parameters}"""
    return _hinge(LOSS_SQUARED_HINGE, y_true, y_pred, sample_weight, mask, nan_policy, reduction,
                  axis, groups, n_groups, n_threads, backend, want_value=False, want_grad=True,
                  out=out)[1]


@_doc(_HINGE_DOC, _GRAD_DOC)
def squared_hinge_value_and_grad(y_true, y_pred, *, sample_weight=None, mask=None,
                                 nan_policy="propagate", reduction="mean", axis=None, groups=None,
                                 n_groups=None, n_threads=None, backend=None, out=None):
    """``(squared_hinge(...), squared_hinge_grad(...))`` in one fused pass (two for a weighted mean).

    Parameters
    ----------{parameters}"""
    return _hinge(LOSS_SQUARED_HINGE, y_true, y_pred, sample_weight, mask, nan_policy, reduction,
                  axis, groups, n_groups, n_threads, backend, want_grad=True, out=out)


# ---- Dice and Tversky -------------------------------------------------------------------------

def _check_number(value, name, upper=np.inf):
    if (isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating))
            or not 0.0 <= value < upper):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _overlap(y_true, y_pred, alpha, beta, smooth, eps, sample_weight, mask, nan_policy, axis,
             groups, n_groups, n_threads, backend, *, want_grad=False, out=None):
    """(value per slot, gradient or None) of the Tversky loss of the soft counts (Dice: alpha =
    beta = None). Two passes for the gradient: the sums, then the element gradients."""
    dice = alpha is None
    if not dice:
        alpha, beta = _check_number(alpha, "alpha"), _check_number(beta, "beta")
    smooth, eps = _check_number(smooth, "smooth"), _check_number(eps, "eps")
    op = _operands(y_true, y_pred, sample_weight, mask, nan_policy, "mean", axis, groups, n_groups)
    s_yp, s_y, s_p = _run(op, LOSS_OVERLAP, backend, n_threads)[:, :3].T
    if dice:  # 1 - N/D, N = 2·TP + smooth, D = Σw·y + Σw·p + smooth + eps
        numerator, denominator = 2.0 * s_yp + smooth, s_y + s_p + smooth + eps
    else:  # TP = Σw·y·p, FP = Σw·(1-y)·p, FN = Σw·y·(1-p)
        numerator = s_yp + smooth
        denominator = s_yp + alpha * (s_p - s_yp) + beta * (s_y - s_yp) + smooth + eps
    with np.errstate(invalid="ignore", divide="ignore"):
        value = 1.0 - numerator / denominator
        if not want_grad:
            return _finish(op.plan, value), None
        # d value / d p_i = w_i·(c0 + c1·y_i): Dice c0 = N/D², c1 = -2/D; Tversky c0 = α·N/D²,
        # c1 = (1 - α - β)·N/D² - 1/D
        ratio = numerator / (denominator * denominator)
        coef = (np.stack([ratio, -2.0 / denominator], axis=1) if dice else
                np.stack([alpha * ratio, (1.0 - alpha - beta) * ratio - 1.0 / denominator], axis=1))
    grad = _check_out(out, op)
    _run(op, LOSS_OVERLAP, backend, n_threads, want_sums=False, grad_out=grad, coef=coef)
    return _finish(op.plan, value), grad


_OVERLAP_DOC = """
    y_true : array (n_samples,) or (n_samples, n_labels)
        Labels, soft labels allowed (float, bool or integers); values are not range-checked
        (Keras' own tests use labels 2).
    y_pred : array of the same shape, float16/32/64: probabilities.
    smooth : float >= 0
        Added to numerator and denominator.
    eps : float >= 0
        Added to the denominator only; ``smooth=0, eps=1e-7`` is Keras' formula (its backend
        epsilon).
    sample_weight, mask, nan_policy : as for :func:`fastbce.bce`; the sums are Σw·y·p, Σw·y, Σw·p.
    axis : None (everything), 0 (one value per label) or 1 (per sample, Keras' ``axis`` over
        the non-batch axes)
    groups, n_groups : one value per group
    n_threads, backend : as for :func:`fastbce.bce`

    Returns a float for ``axis=None`` without groups, else a float64 array per label, sample or
    group (their mean is Keras' "sum_over_batch_size"). The gradient gives each element the
    derivative of its own slice's value (the gradient of their sum). ``out``: where to write it.
"""


@_doc(_OVERLAP_DOC)
def dice(y_true, y_pred, *, smooth=0.0, eps=0.0, sample_weight=None, mask=None,
         nan_policy="propagate", axis=None, groups=None, n_groups=None, n_threads=None,
         backend=None):
    """Dice loss ``1 - (2·Σw·y·p + smooth) / (Σw·y + Σw·p + smooth + eps)``, in one pass.

    Parameters
    ----------{parameters}"""
    return _overlap(y_true, y_pred, None, None, smooth, eps, sample_weight, mask, nan_policy, axis,
                    groups, n_groups, n_threads, backend)[0]


@_doc(_OVERLAP_DOC)
def dice_grad(y_true, y_pred, *, smooth=0.0, eps=0.0, sample_weight=None, mask=None,
              nan_policy="propagate", axis=None, groups=None, n_groups=None, n_threads=None,
              backend=None, out=None):
    """Gradient of :func:`dice` with respect to ``y_pred``: w·(N/D² - 2·y/D), N and D the
    numerator and denominator of its slice. Two passes: the sums, then the gradient.

    Parameters
    ----------{parameters}"""
    return _overlap(y_true, y_pred, None, None, smooth, eps, sample_weight, mask, nan_policy, axis,
                    groups, n_groups, n_threads, backend, want_grad=True, out=out)[1]


@_doc(_OVERLAP_DOC)
def dice_value_and_grad(y_true, y_pred, *, smooth=0.0, eps=0.0, sample_weight=None, mask=None,
                        nan_policy="propagate", axis=None, groups=None, n_groups=None,
                        n_threads=None, backend=None, out=None):
    """``(dice(...), dice_grad(...))``, from the same two passes.

    Parameters
    ----------{parameters}"""
    return _overlap(y_true, y_pred, None, None, smooth, eps, sample_weight, mask, nan_policy, axis,
                    groups, n_groups, n_threads, backend, want_grad=True, out=out)


_TVERSKY_DOC = """
    alpha, beta : float >= 0
        Weights of the false positives FP = Σw·(1-y)·p and false negatives FN = Σw·y·(1-p).
        Keras' ``Tversky(alpha=a, beta=b)`` computes ``tversky(alpha=b, beta=a)``: its code
        multiplies its alpha with Σy·(1-p).
"""


@_doc(_TVERSKY_DOC, _OVERLAP_DOC)
def tversky(y_true, y_pred, *, alpha=0.5, beta=0.5, smooth=0.0, eps=0.0, sample_weight=None,
            mask=None, nan_policy="propagate", axis=None, groups=None, n_groups=None,
            n_threads=None, backend=None):
    """Tversky loss ``1 - (TP + smooth) / (TP + α·FP + β·FN + smooth + eps)`` of the soft counts
    TP = Σw·y·p, FP = Σw·(1-y)·p, FN = Σw·y·(1-p), in one pass (α = β = 0.5: Dice).

    Parameters
    ----------{parameters}"""
    return _overlap(y_true, y_pred, alpha, beta, smooth, eps, sample_weight, mask, nan_policy,
                    axis, groups, n_groups, n_threads, backend)[0]


@_doc(_TVERSKY_DOC, _OVERLAP_DOC)
def tversky_grad(y_true, y_pred, *, alpha=0.5, beta=0.5, smooth=0.0, eps=0.0, sample_weight=None,
                 mask=None, nan_policy="propagate", axis=None, groups=None, n_groups=None,
                 n_threads=None, backend=None, out=None):
    """Gradient of :func:`tversky` with respect to ``y_pred``: w·(α·N/D² + y·((1-α-β)·N/D² -
    1/D)). Two passes: the sums, then the gradient.

    Parameters
    ----------{parameters}"""
    return _overlap(y_true, y_pred, alpha, beta, smooth, eps, sample_weight, mask, nan_policy,
                    axis, groups, n_groups, n_threads, backend, want_grad=True, out=out)[1]


@_doc(_TVERSKY_DOC, _OVERLAP_DOC)
def tversky_value_and_grad(y_true, y_pred, *, alpha=0.5, beta=0.5, smooth=0.0, eps=0.0,
                           sample_weight=None, mask=None, nan_policy="propagate", axis=None,
                           groups=None, n_groups=None, n_threads=None, backend=None, out=None):
    """``(tversky(...), tversky_grad(...))``, from the same two passes.

    Parameters
    ----------{parameters}"""
    return _overlap(y_true, y_pred, alpha, beta, smooth, eps, sample_weight, mask, nan_policy,
                    axis, groups, n_groups, n_threads, backend, want_grad=True, out=out)
