"""Evaluation metrics: exact ROC-AUC and average precision (one sort), group AUC, the ROC and
precision-recall curves, the calibration curve and the Brier score.

The ranking metrics sort each slice once (kernels/c/rank.h, kernels/numba/rank.py: a parallel
radix sort of the predictions' order-preserving integer keys with the label in the low bit) and
walk the distinct predictions from the top, summing in float64. They follow scikit-learn's
conventions: tied predictions form one threshold (a tied positive-negative pair counts half in
the AUC), weights multiply each sample, a slice with one class has no AUC (NaN here, where
scikit-learn raises).
"""

import importlib
from typing import NamedTuple

import numpy as np

from ._backends import load_backend, resolve_backend
from ._config import fork_safe_threads, launch_guard
from ._histogram import chunking, extra_fields, histogram_sums
from ._kernels import MODE_GROUPS, MODE_ROWS, NAN_RAISE, RANK_NAN, RANK_SOFT, RANK_WEIGHT
from ._plan import make_plan
from ._threads import resolve_num_threads

_RANK_MODULES = {"numba": "fastbce._kernels.numba.rank", "cython": "fastbce._kernels.cython_kernels",
                 "numpy": "fastbce._kernels.reference"}


def _check_option(value, name, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def _checked(y_true, y_pred, sample_weight, mask, nan_policy, from_logits, axis, groups,
             n_groups):
    """(y, p, w or None, mask or None, axis, groups or None, n_groups, group labels or None)
    checked as for :func:`fastbce.bce` (its Plan), as views of y_pred's shape; float16 as float16."""
    plan = make_plan(y_true, y_pred, from_logits=from_logits, eps=1e-7,
                     sample_weight=sample_weight, pos_weight=None, label_smoothing=0.0,
                     mask=mask, nan_policy=nan_policy, reduction="mean", axis=axis,
                     groups=groups, n_groups=n_groups)
    y = plan.y.view(np.float16) if plan.y_half else plan.y
    p = plan.p.view(np.float16) if plan.p_half else plan.p
    as_shape = (lambda a: a.reshape(plan.shape))  # noqa: E731  (a view: (n, 1) -> (n,))
    axis = None if axis is None or len(plan.shape) == 1 else int(axis) % 2
    g = None if groups is None else plan.groups
    if g is not None and g.size and (g.min() < 0 or g.max() >= plan.n_slots):
        raise ValueError(f"groups must hold ids in [0, n_groups) = [0, {plan.n_slots})")
    return (as_shape(y), as_shape(p), None if sample_weight is None else as_shape(plan.w),
            None if mask is None else as_shape(plan.mask), axis, g, plan.n_slots, plan.group_labels)


def _rank_function(backend):
    return importlib.import_module(_RANK_MODULES[resolve_backend(backend)]).rank


class _Slices(NamedTuple):
    """The 1-D slices of a call, each (y, p, w, mask, groups, n_slots) ready for a kernel (groups
    None: one slot); shape: of the result (None for a scalar)."""

    slices: list
    shape: tuple
    omit: bool
    raise_nan: bool
    labels: list = None  # labelled groups (fastbce/_groups.py): the label of each slot


def _labels(y):
    """Labels as a kernel reads them: uint8 (bool, uint8, int8 as its bits: -1 reads 255, not a
    0/1 label either), float32 or float64; other dtypes converted."""
    if y.dtype == np.bool_ or y.dtype == np.int8:
        return y.view(np.uint8)
    if y.dtype in (np.uint8, np.float32, np.float64):
        return y
    return y.astype(np.float32 if y.dtype == np.float16 else np.float64)


def _prepare(y_true, y_pred, sample_weight, mask, nan_policy, from_logits, axis, groups, n_groups):
    """Check the arguments of a ranking metric and cut the data into 1-D slices."""
    y_true, y_pred, w, m, axis, groups, n_slots, labels = _checked(
        y_true, y_pred, sample_weight, mask, nan_policy, from_logits, axis, groups, n_groups)
    shape = y_pred.shape
    if axis == 1:
        raise ValueError("axis must be None or 0 (one value per label) for a ranking metric")
    p = y_pred.astype(np.float32) if y_pred.dtype == np.float16 else y_pred
    y = _labels(y_true)
    if p.size >= 2**32 - 1:
        raise ValueError(f"y_pred has {p.size} elements; a ranking metric takes fewer than 2**32")

    def prepared(yv, pv, wv, mv, g=None, n=1):
        return (yv, pv, None if wv is None else np.ascontiguousarray(wv, np.float64),
                None if mv is None else np.ascontiguousarray(mv).view(np.uint8), g, n)

    omit, raise_nan = nan_policy == "omit", nan_policy == "raise"
    if axis == 0:
        slices = [prepared(y[:, j], p[:, j], None if w is None else w[:, j],
                           None if m is None else m[:, j]) for j in range(shape[1])]
        return _Slices(slices, (shape[1],), omit, raise_nan)
    order = "C" if groups is not None or not p.flags.f_contiguous or p.flags.c_contiguous else "F"
    flat = [None if a is None else np.ravel(a, order=order) for a in (y, p, w, m)]
    if groups is not None:  # a row's group holds all its columns
        g = np.ascontiguousarray(groups, np.int64)
        g = g if p.ndim == 1 else np.repeat(g, p.size // max(shape[0], 1))
        return _Slices([prepared(*flat, g, n_slots)], (n_slots,), omit, raise_nan, labels)
    return _Slices([prepared(*flat)], None, omit, raise_nan)


def _reference_rank(y, p, w, m, groups, n_slots, omit, want_curve, n_threads):
    """The NumPy oracle's rank (kernels/reference.py: one slot) with the compiled kernels'
    contract: per slot (sums, nan), flags, curve."""
    from ._kernels import reference

    if groups is None:
        order, bounds = slice(None), [0, p.size]
    else:
        order = np.argsort(groups, kind="stable")
        bounds = np.concatenate(([0], np.cumsum(np.bincount(groups, minlength=n_slots))))
    sums, nan, flags, curve = np.zeros((n_slots, 4)), np.zeros(n_slots, bool), 0, None
    for k in range(n_slots):
        part = [None if a is None else a[order][bounds[k]:bounds[k + 1]] for a in (y, p, w, m)]
        if part[1].size == 0:
            continue
        *sums[k], f, curve = reference.rank(*part, omit, want_curve, n_threads)
        nan[k] = bool(f & RANK_NAN)
        flags |= f
        if f & (RANK_SOFT | RANK_WEIGHT):
            return None, None, flags, None
    return sums, nan, flags, curve


def _rank_function(backend):
    backend = resolve_backend(backend)
    if backend == "numpy":
        return _reference_rank
    return importlib.import_module(_RANK_MODULES[backend]).rank


def _rank_sums(s, backend, n_threads, want_curve=False):
    """(sums, curve): sums (n_slots, 4) of every slice's slots, (P, N, 2·U, A) each (NaN rows
    where a NaN propagates), and the last slice's curve; raises on soft labels, bad weights and
    (under nan_policy="raise") NaN."""
    rank = _rank_function(backend)
    n_threads = resolve_num_threads(n_threads)
    out, curve = [], None
    for y, p, w, m, g, n_slots in s.slices:
        if p.size == 0:
            out.append(np.zeros((n_slots, 4)))
            continue
        sums, nan, flags, curve = rank(y, p, w, m, g, n_slots, s.omit, want_curve, n_threads)
        if flags & RANK_SOFT:
            raise ValueError("y_true must hold hard labels 0 or 1 for a ranking metric (found a "
                             "value that is neither)")
        if flags & RANK_WEIGHT:
            raise ValueError("sample_weight must hold finite weights >= 0")
        if flags & RANK_NAN and s.raise_nan:
            raise ValueError("y_true or y_pred contains NaN (nan_policy='raise')")
        sums[nan] = np.nan
        out.append(sums)
    return np.concatenate(out), curve


def _result(values, s):
    values = np.array(values, np.float64)
    if s.labels is not None:  # labelled groups: a pandas Series indexed by the labels
        import pandas as pd

        return pd.Series(values, index=pd.Index(s.labels, name="group"))
    return float(values[0]) if s.shape is None else values


def _auc_ap(sums):
    """(ROC-AUC, AP) per row of sums (P, N, 2·U, A): NaN with one class (P = 0 or N = 0)."""
    big_p, big_n, u2, a = sums.T
    ok = (big_p > 0) & (big_n > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, u2 / (2.0 * big_p * big_n), np.nan), np.where(ok, a / big_p, np.nan)


def ranking(y_true, y_pred, *, sample_weight=None, mask=None, nan_policy="propagate",
            from_logits=False, axis=None, groups=None, n_groups=None, n_threads=None, backend=None):
    """``(roc_auc(...), average_precision(...))`` from one sort (same arguments)."""
    s = _prepare(y_true, y_pred, sample_weight, mask, nan_policy, from_logits, axis, groups,
                 n_groups)
    auc, ap = _auc_ap(_rank_sums(s, backend, n_threads)[0])
    return _result(auc, s), _result(ap, s)


_RANK_DOC = """
    Parameters
    ----------
    y_true : array (n_samples,) or (n_samples, n_labels)
        Hard labels 0 or 1 (float, bool or integer); any other value raises ValueError.
    y_pred : array of the same shape, float16/32/64
        Scores: probabilities, or logits with ``from_logits=True`` (ranked in the logits' own
        order, so ties are the logits' ties; the value is the same as from their probabilities
        unless two logits round to one probability).
    sample_weight : array broadcastable to y_pred, optional
        Finite weights >= 0 (float64 accumulation); weight 0 takes a sample out.
    mask : bool array broadcastable to y_pred, optional
        True = counted.
    nan_policy : "propagate", "raise" or "omit"
        NaN in y_true or y_pred gives NaN for its slice, raises ValueError, or leaves it out.
    axis : None or 0
        None: one value over all elements; 0: one per label (column) of 2-D input.
    groups, n_groups :
        Integer group ids of the samples (rows) and their count: one value per group.
    n_threads, backend :
        As for :func:`fastbce.bce`; the result does not depend on the thread count.

    Returns
    -------
    float, or a float64 array per label or group. A slice with only one class (or all weight on
    one class) gives NaN. Memory: 4 extra bytes per element for float32 predictions, 8 for
    float64, plus 4 with sample_weight, and as much again for the sorts' scratch: the biggest
    bucket of predictions that share their top bits (or a group) and, on several threads, up to
    a quarter of the items more; copies of float16 predictions (as
    float32), of weights that are not contiguous float64, and with groups of the data gathered
    by group.
"""


def roc_auc(y_true, y_pred, *, sample_weight=None, mask=None, nan_policy="propagate",
            from_logits=False, axis=None, groups=None, n_groups=None, n_threads=None, backend=None):
    """Exact area under the ROC curve, scikit-learn's ``roc_auc_score``: Σ_v fp_v·(TP_>v +
    tp_v/2) / (P·N) over the distinct predictions v (ties count half), with tp_v, fp_v the
    positive and negative weights at v and P, N the totals.
    """
    s = _prepare(y_true, y_pred, sample_weight, mask, nan_policy, from_logits, axis, groups,
                 n_groups)
    return _result(_auc_ap(_rank_sums(s, backend, n_threads)[0])[0], s)


def average_precision(y_true, y_pred, *, sample_weight=None, mask=None, nan_policy="propagate",
                      from_logits=False, axis=None, groups=None, n_groups=None, n_threads=None,
                      backend=None):
    """Average precision, scikit-learn's ``average_precision_score``: Σ_v (tp_v/P)·TP_v/(TP_v +
    FP_v) over the distinct predictions v, TP_v and FP_v the weights at or above v (a step
    function, no interpolation).
    """
    s = _prepare(y_true, y_pred, sample_weight, mask, nan_policy, from_logits, axis, groups,
                 n_groups)
    return _result(_auc_ap(_rank_sums(s, backend, n_threads)[0])[1], s)


roc_auc.__doc__ += _RANK_DOC
average_precision.__doc__ += _RANK_DOC


class GroupAUC(NamedTuple):
    """Result of :func:`group_auc`: the weighted mean ``value``; ``n_used`` groups with both
    classes, ``n_skipped`` groups with samples of one class only; per group id the ``auc`` (NaN
    where skipped or empty) and the weight ``c`` it had in the mean."""

    value: float
    n_used: int
    n_skipped: int
    auc: np.ndarray
    c: np.ndarray


def group_auc(y_true, y_pred, groups, *, sample_weight=None, weighting="weight", mask=None,
              nan_policy="propagate", from_logits=False, n_groups=None, n_threads=None,
              backend=None):
    """Group AUC (GAUC): Σ_g c_g·AUC_g / Σ_g c_g over the groups with both classes.

    ``weighting="weight"``: c_g is the group's total sample weight (its number of samples, i.e.
    impressions, without sample_weight); ``"uniform"``: c_g = 1. Groups whose samples are all of
    one class are skipped and counted; ids without samples are neither. Other arguments as
    :func:`roc_auc`. Returns a :class:`GroupAUC` (value NaN when no group has both classes, or
    when a used group is NaN under ``nan_policy="propagate"``).
    """
    _check_option(weighting, "weighting", ("weight", "uniform"))
    if groups is None:
        raise ValueError("groups must be given: the group id of each sample")
    s = _prepare(y_true, y_pred, sample_weight, mask, nan_policy, from_logits, None, groups,
                 n_groups)
    sums = _rank_sums(s, backend, n_threads)[0]
    auc = _auc_ap(sums)[0]
    total = sums[:, 0] + sums[:, 1]
    nan = np.isnan(sums[:, 0])
    present = np.bincount(s.slices[0][4], minlength=sums.shape[0]) > 0
    used = ~np.isnan(auc) | nan
    c = np.where(used, total if weighting == "weight" else 1.0, 0.0)
    n_used = int(used.sum())
    value = float(np.sum(c[used] * auc[used]) / np.sum(c[used])) if n_used else float("nan")
    return GroupAUC(value, n_used, int((present & ~used).sum()), auc, c)


def _curve_points(y_true, y_pred, sample_weight, mask, nan_policy, from_logits, n_threads,
                  backend):
    """(TP, FP, thresholds) of scikit-learn's confusion_matrix_at_thresholds: one point per
    distinct prediction with non-zero weight, from the top."""
    if nan_policy not in ("raise", "omit"):
        raise ValueError(f"nan_policy must be 'raise' or 'omit' for a curve; got {nan_policy!r}")
    s = _prepare(y_true, y_pred, sample_weight, mask, nan_policy, from_logits, None, None, None)
    if len(s.slices) and s.slices[0][1].size == 0:
        raise ValueError("y_pred is empty")
    curve = _rank_sums(s, backend, n_threads, want_curve=True)[1]
    values, tps, fps = curve
    if sample_weight is not None and tps.size:
        keep = np.diff(tps, prepend=0.0) + np.diff(fps, prepend=0.0) > 0
        values, tps, fps = values[keep], tps[keep], fps[keep]
    dtype = np.asarray(y_pred).dtype if hasattr(y_pred, "dtype") else values.dtype
    return tps, fps, values.astype(dtype if dtype.kind == "f" else values.dtype)


def roc_curve(y_true, y_pred, *, sample_weight=None, drop_intermediate=True, mask=None,
              nan_policy="raise", from_logits=False, n_threads=None, backend=None):
    """The exact ROC curve, scikit-learn's ``roc_curve`` points: (fpr, tpr, thresholds), one
    point per distinct prediction (samples of weight 0 left out) after a first point (0, 0) at
    threshold inf; ``drop_intermediate`` drops the points on a straight segment as scikit-learn
    does. fpr (tpr) is NaN when there is no negative (positive) weight. 1-D input; nan_policy
    "raise" or "omit"; thresholds in float64.
    """
    tps, fps, thresholds = _curve_points(y_true, y_pred, sample_weight, mask, nan_policy,
                                         from_logits, n_threads, backend)
    if drop_intermediate and fps.size > 2:
        keep = np.concatenate(([True], np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), [True]))
        tps, fps, thresholds = tps[keep], fps[keep], thresholds[keep]
    tps, fps = np.concatenate(([0.0], tps)), np.concatenate(([0.0], fps))
    thresholds = np.concatenate(([np.inf], thresholds.astype(np.float64)))
    fpr = fps / fps[-1] if fps[-1] > 0 else np.full(fps.shape, np.nan)
    tpr = tps / tps[-1] if tps[-1] > 0 else np.full(tps.shape, np.nan)
    return fpr, tpr, thresholds


def precision_recall_curve(y_true, y_pred, *, sample_weight=None, drop_intermediate=False,
                           mask=None, nan_policy="raise", from_logits=False, n_threads=None,
                           backend=None):
    """The exact precision-recall curve, scikit-learn's ``precision_recall_curve`` points:
    (precision, recall, thresholds) by increasing threshold, ending at (1, 0); precision = TP/(TP
    + FP) (0 where TP + FP = 0), recall = TP/P (1 everywhere without positives); one point per
    distinct prediction, ``drop_intermediate`` as scikit-learn's. 1-D input, thresholds in
    y_pred's dtype.
    """
    tps, fps, thresholds = _curve_points(y_true, y_pred, sample_weight, mask, nan_policy,
                                         from_logits, n_threads, backend)
    if drop_intermediate and fps.size > 2:
        keep = np.concatenate(([True], np.logical_or(np.diff(tps[:-1]), np.diff(tps[1:])),
                               [True]))
        tps, fps, thresholds = tps[keep], fps[keep], thresholds[keep]
    ps = tps + fps
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(ps != 0, tps / ps, 0.0)
    recall = tps / tps[-1] if tps[-1] != 0 else np.ones(tps.shape)
    return (np.concatenate((precision[::-1], [1.0])), np.concatenate((recall[::-1], [0.0])),
            thresholds[::-1])


def _probabilities(y_true, y_pred, sample_weight, mask, nan_policy, from_logits, axis=None):
    """Checked (y, q, w, mask, axis) for the calibration metrics: float64 probabilities q
    (σ(x) from logits), labels in [0, 1], w float64 (ones without weights) zeroed where masked
    or NaN is omitted; kept is the count mask."""
    y_true, y_pred, w, m, axis, _, _, _ = _checked(y_true, y_pred, sample_weight, mask,
                                                   nan_policy, from_logits, axis, None, None)
    shape = y_pred.shape
    q = y_pred.astype(np.float64)
    if from_logits:
        q = np.exp(-np.logaddexp(0.0, -q))
    y = y_true.astype(np.float64)
    w = np.ones(shape) if w is None else np.array(w, np.float64)
    keep = np.ones(shape, bool) if m is None else np.array(m, bool)
    nan = np.isnan(q) | np.isnan(y)
    if nan.any():
        if nan_policy == "raise":
            raise ValueError("y_true or y_pred contains NaN (nan_policy='raise')")
        if nan_policy == "omit":
            keep &= ~nan
    live = keep & ~nan
    if np.any(live & ((y < 0) | (y > 1))):
        raise ValueError("y_true must hold labels in [0, 1]")
    if np.any(live & ((q < 0) | (q > 1))):
        raise ValueError("y_pred must hold probabilities in [0, 1] (or logits with "
                         "from_logits=True)")
    if np.any(keep & ~((w >= 0) & (w < np.inf))):
        raise ValueError("sample_weight must hold finite weights >= 0")
    return y, q, np.where(keep, w, 0.0), keep, axis


def _fast_brier(y_true, y_pred, sample_weight, mask, nan_policy, from_logits, axis, groups,
                n_groups, n_threads, backend):
    """Brier per slot from the report's compiled one-pass sums (fastbce/_histogram.py), whose
    error bits check the labels, probabilities and weights of the elements not masked; None (the
    NumPy path, which names the problem or accepts a NaN's partner) when a check fails or a NaN
    meets nan_policy="raise", on the NumPy backend, per sample, and for integer labels wider
    than a byte."""
    if resolve_backend(backend) == "numpy" or axis not in (None, 0) or (
            groups is not None and axis is not None):
        return None
    plan = make_plan(y_true, y_pred, from_logits=from_logits, eps=1e-7,
                     sample_weight=sample_weight, pos_weight=None, label_smoothing=0.0, mask=mask,
                     nan_policy=nan_policy, reduction="mean", axis=axis, groups=groups,
                     n_groups=n_groups)
    if plan.mode == MODE_ROWS or (plan.y.dtype.kind in "iu" and plan.y.dtype.itemsize > 1):
        return None
    g = plan.groups
    if plan.mode == MODE_GROUPS and g.size and (g.min() < 0 or g.max() >= plan.n_slots):
        raise ValueError(f"groups must hold ids in [0, n_groups) = [0, {plan.n_slots})")
    _, extra, flags = histogram_sums(plan, backend, n_threads, threshold=0.5, bits=0, n_bins=1,
                                     want_flags=True)
    if flags or (plan.nan_mode == NAN_RAISE and extra[:, 0].any()):
        return None
    return extra_fields(extra, 1)["brier"]


def brier(y_true, y_pred, *, sample_weight=None, mask=None, nan_policy="propagate",
          from_logits=False, axis=None, groups=None, n_groups=None, n_threads=None,
          backend=None):
    """Brier score Σ w·(q - y)² / Σ w, scikit-learn's ``brier_score_loss``: q the probability (σ(x)
    from logits), y the label in [0, 1]; float64. Per label (axis=0) or group (groups) as
    :func:`roc_auc`; NaN where Σ w = 0. In one compiled pass (the report's sums, as
    :func:`fastbce.score`, which also checks the inputs' ranges); an input out of range is
    named by NumPy in float64 (temporaries of the input's size).
    """
    fast = _fast_brier(y_true, y_pred, sample_weight, mask, nan_policy, from_logits, axis, groups,
                       n_groups, n_threads, backend)
    if fast is not None:
        return float(fast[0]) if axis is None and groups is None else fast
    y, q, w, keep, axis = _probabilities(y_true, y_pred, sample_weight, mask, nan_policy,
                                         from_logits, axis)
    loss = np.where(keep, w * (q - y) ** 2, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        if groups is not None:
            if axis is not None:
                raise ValueError("groups and axis cannot be combined: groups reduce over whole "
                                 "samples")
            _, _, _, _, _, groups, n_slots, _ = _checked(y_true, y_pred, None, None, nan_policy,
                                                         from_logits, None, groups, n_groups)
            row = lambda a: a.reshape(y.shape[0], -1).sum(axis=1)  # noqa: E731
            return (np.bincount(groups, row(loss), n_slots)
                    / np.bincount(groups, row(w), n_slots))
        if n_groups is not None:
            raise ValueError("n_groups was given without groups")
        if axis is None:
            return float(loss.sum() / w.sum())
        return loss.sum(axis=0) / w.sum(axis=0)


class CalibrationCurve(NamedTuple):
    """Result of :func:`calibration_curve`, per bin b (n_bins of them): ``edges`` (n_bins + 1),
    ``count`` (samples), ``weight`` (their weight sum W_b), ``mean_pred`` Σw·q/W_b and
    ``pos_rate`` Σw·y/W_b (NaN in empty bins)."""

    edges: np.ndarray
    count: np.ndarray
    weight: np.ndarray
    mean_pred: np.ndarray
    pos_rate: np.ndarray


def _fast_calibration(y_true, y_pred, n_bins, strategy, sample_weight, mask, nan_policy,
                      from_logits, n_threads, backend):
    """The CalibrationCurve from one compiled pass (calib_pass, kernels/c/histogram.h: stripes of
    a size fixed by the shape, added in order), or None (the NumPy path, which names the problem)
    when its error bits flag an input or a NaN meets nan_policy="raise". Quantile edges come from
    NumPy's percentile, as there; from logits, the kernel's σ(x) (uniform edges) is within a few
    ulp of NumPy's."""
    y, p, w, m, _, _, _, _ = _checked(y_true, y_pred, sample_weight, mask, nan_policy, from_logits,
                                      None, None, None)
    p = np.ravel(p.astype(np.float32) if p.dtype == np.float16 else p)
    y = np.ravel(_labels(y))
    w = np.ones(1) if w is None else np.ascontiguousarray(np.ravel(w), np.float64)
    m = np.ones(1, np.uint8) if m is None else np.ascontiguousarray(np.ravel(m)).view(np.uint8)
    omit = nan_policy == "omit"
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    else:
        q = p.astype(np.float64)
        if from_logits:  # binned as probabilities: an edge is one of these q, bit for bit
            p = q = np.exp(-np.logaddexp(0.0, -q))
            from_logits = False
        kept = ~np.isnan(q)
        if m.size > 1:
            kept &= m.view(bool)
        if omit:
            kept &= ~np.isnan(y)
        finite = q[kept]
        edges = (np.percentile(finite, np.linspace(0, 1, n_bins + 1) * 100) if finite.size
                 else np.full(n_bins + 1, np.nan))
    rows, n_stripes = chunking(p.size, 1, 1, 0, 1 + 4 * n_bins)
    out = np.zeros((n_stripes, 1 + 4 * n_bins))
    flags = np.zeros(n_stripes, np.uint8)
    backend = resolve_backend(backend)
    threads = fork_safe_threads(backend, min(resolve_num_threads(n_threads), n_stripes))
    with launch_guard(backend):
        load_backend(backend).calib_pass(p, y, w, m, edges, out, flags, from_logits, omit,
                                         strategy == "uniform", rows, threads)
    if np.bitwise_or.reduce(flags) or (nan_policy == "raise" and out[:, 0].any()):
        return None
    for s in range(1, n_stripes):  # in stripe order
        out[0] += out[s]
    count, weight, weighted_q, weighted_y = (out[0, 1 + k::4] for k in range(4))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_pred, pos_rate = weighted_q / weight, weighted_y / weight
    if out[0, 0]:
        mean_pred[:] = pos_rate[:] = np.nan
    return CalibrationCurve(edges, count.astype(np.int64), weight.copy(), mean_pred, pos_rate)


def calibration_curve(y_true, y_pred, *, n_bins=10, strategy="uniform", sample_weight=None,
                      mask=None, nan_policy="propagate", from_logits=False, n_threads=None,
                      backend=None):
    """Reliability table: the probabilities binned by ``n_bins`` edges (``"uniform"``:
    linspace(0, 1); ``"quantile"``: the unweighted percentiles of the predictions), bin b holding
    (e_b, e_b+1] and the first bin [e_0, e_1], so p = 0 lands in the first bin and p = 1 in the
    last (scikit-learn's ``searchsorted(edges[1:-1], p)``). On its non-empty bins pos_rate and
    mean_pred are scikit-learn's ``calibration_curve`` prob_true and prob_pred (with weights:
    weighted means). NaN under "propagate" makes every bin's means NaN. One compiled pass with
    float64 sums (the same for any thread count; from logits σ(x) in float64); the NumPy backend
    and an input out of range (named then) take NumPy in float64.
    """
    _check_option(strategy, "strategy", ("uniform", "quantile"))
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    n_bins = int(n_bins)
    if resolve_backend(backend) != "numpy":
        fast = _fast_calibration(y_true, y_pred, n_bins, strategy, sample_weight, mask,
                                 nan_policy, from_logits, n_threads, backend)
        if fast is not None:
            return fast
    y, q, w, keep, _ = _probabilities(y_true, y_pred, sample_weight, mask, nan_policy,
                                      from_logits)
    y, q, w, keep = y.ravel(), q.ravel(), w.ravel(), keep.ravel()
    nan = np.isnan(q[keep]).any() or np.isnan(y[keep]).any()
    y, q, w = y[keep], q[keep], w[keep]
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    else:
        finite = q[~np.isnan(q)]
        edges = (np.percentile(finite, np.linspace(0, 1, n_bins + 1) * 100) if finite.size
                 else np.full(n_bins + 1, np.nan))
    bins = np.minimum(np.searchsorted(edges[1:-1], np.where(np.isnan(q), 0.0, q)), n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    weight = np.bincount(bins, w, n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_pred = np.bincount(bins, w * q, n_bins) / weight
        pos_rate = np.bincount(bins, w * y, n_bins) / weight
    if nan:
        mean_pred[:] = pos_rate[:] = np.nan
    return CalibrationCurve(edges, count, weight, mean_pred, pos_rate)
