"""fastbce over Dask arrays and Dask DataFrame columns: lazy :func:`bce`, :func:`bce_grad`, :func:`score`.

Every block runs the compiled kernel pass of the in-memory API and returns its exact float64
partial sums per slot (Σw·l, Σw and, for :func:`score`, the other statistics of the
:class:`fastbce.Accumulator`). Dask adds the partial sums in a tree reduction (``Array.sum``, a
``dask.array.reduction``) and a mean is divided once at the end, so the result equals the
in-memory one to rounding for any chunking, equal or not. Gradients and element losses are
computed block by block (``blockwise``, the general form of ``map_blocks``), scaled by the global
1/Σw. Needs ``pip install 'fastbce[dask]'``.
"""

import dask
import dask.array as da
import numpy as np

from . import _api
from ._engine import reciprocal, run_pass
from ._groups import DENSE_IDS
from ._histogram import AUC_BITS, GROUP_AUC_BITS, N_BINS, N_EXTRA, check_bins, check_bits
from ._histogram import check_threshold, histogram_sums, n_buckets
from ._plan import check_axis, make_plan
from ._score import N_STATS, result_of

__all__ = ["bce", "bce_grad", "score"]


def _as_dask(value, name):
    """A Dask array of a Dask array, a Dask DataFrame column or anything NumPy takes."""
    if hasattr(value, "to_dask_array"):  # a Dask Series (a DataFrame column)
        if not isinstance(value.dtype, np.dtype):
            raise TypeError(f"{name} is a Dask column of dtype {value.dtype}, which Dask turns into "
                            f"an object array: convert it first, e.g. with .astype('float32')")
        value = value.to_dask_array()
    return value if isinstance(value, da.Array) else da.asarray(value)


def _operands(y_true, y_pred, sample_weight, pos_weight, mask):
    """(the array arguments as 2-D Dask arrays, each followed by its blockwise index ("ij", or
    None for an absent one), y_pred's own ndim). 1-D input is one column; a 1-D weight or mask is
    per sample for 1-D input and per label for 2-D input, as NumPy broadcasts it."""
    ndim = _as_dask(y_pred, "y_pred").ndim
    if ndim not in (1, 2):
        raise ValueError(f"y_pred must be 1-D (n_samples,) or 2-D (n_samples, n_labels), got {ndim}-D")
    operands = []
    for name, value in (("y_true", y_true), ("y_pred", y_pred), ("sample_weight", sample_weight),
                        ("pos_weight", pos_weight), ("mask", mask)):
        array = None if value is None else _as_dask(value, name)
        if array is not None and array.ndim > ndim:
            raise ValueError(f"{name} has {array.ndim} dimensions, more than y_pred's {ndim}")
        if array is not None and array.ndim < 2:
            array = array.reshape(1, 1) if array.ndim == 0 else array[:, None] if ndim == 1 else array[None, :]
        operands += [array, None if array is None else "ij"]
    return operands, ndim


def _block_sums(y, p, w, pw, mask, groups, *, shape, n_stats, backend, n_threads, labels=None,
                report=None, **options):
    """The float64 partial sums of one block, shaped for its place in the output: the kernel
    pass's, and with ``report`` (threshold, n_bins, bits) the histogram pass's after them.
    ``labels``: the sorted group labels, to which the block's group values are mapped."""
    if y.size == 0:
        n_slots = {0: y.shape[1], 1: y.shape[0]}.get(options["axis"], options["n_groups"] or 1)
        return np.zeros((n_slots, n_stats)).reshape(shape)
    if labels is not None:  # ids of the labels; a null or unknown value is masked
        import pandas as pd
        import pyarrow as pa

        ids = labels.get_indexer(pd.Index(groups))
        groups = pa.array(ids, mask=ids < 0)
    plan = make_plan(y, p, sample_weight=w, pos_weight=pw, mask=mask, groups=groups,
                     reduction="sum", **options)
    sums = run_pass(plan, backend, n_threads, n_stats=N_STATS if report else n_stats)[0]
    if report and options["axis"] != 1:
        hist, extra = histogram_sums(plan, backend, n_threads, threshold=report[0],
                                     n_bins=report[1], bits=report[2])
        sums = np.concatenate([sums, *([] if hist is None else [hist.reshape(len(sums), -1)]), extra], axis=1)
    return sums.reshape(shape)


def _groups(groups, n_groups):
    """(groups as a 1-D Dask array, n_groups, sorted labels as a pandas Index or None): small
    non-negative integer ids are used as they are (fastbce/_groups.py); strings, categoricals and
    other integer ids are labelled by their distinct values, found in a pass over ``groups``."""
    import pandas as pd

    labels = None
    if hasattr(groups, "to_dask_array") and not isinstance(groups.dtype, np.dtype):
        if isinstance(groups.dtype, pd.CategoricalDtype):
            groups = groups.cat.as_known()
            labels = pd.Index(groups.cat.categories)
        groups = groups.astype(object)  # strings and categories as Python objects
    groups = _as_dask(groups, "groups")
    if groups.ndim != 1:
        raise ValueError(f"groups must be 1-D (n_samples,), got shape {groups.shape}")
    if labels is None and groups.dtype.kind in "iu" and n_groups is None:
        low, high = (int(v) for v in dask.compute(groups.min(), groups.max()))
        if low >= 0 and high < max(DENSE_IDS, groups.shape[0]):
            n_groups = high + 1
        else:
            labels = pd.Index(np.unique(da.unique(groups).compute()))
    elif labels is None and groups.dtype.kind in "OUS":
        values = pd.unique(da.unique(groups.astype(object)).compute())
        labels = pd.Index(sorted(v for v in values if v is not None and v == v))
    if labels is not None:
        if n_groups is not None:
            raise ValueError("n_groups applies to integer group ids; labelled groups take their "
                             "number from the labels: leave n_groups out")
        n_groups = max(len(labels), 1)
    return groups, n_groups, labels


def _sums(operands, axis, groups, n_groups, n_stats, options):
    """The per-slot sums, a lazy (n_slots, n_stats) float64 array, and the group labels (or None)."""
    labels = None
    if groups is not None:
        if axis is not None:
            raise ValueError("groups and axis cannot be combined: groups reduce over whole samples")
        # as in memory, n_groups or the labels cost a pass over groups, done here and now
        groups, n_groups, labels = _groups(groups, n_groups)
    # Each block gives one row of partial sums per slot; the axes Dask then sums over.
    out_index, adjust, new_axes, shape, summed = {
        None: ("ijks", {"i": 1, "j": 1}, {"k": n_groups or 1, "s": n_stats}, (1, 1, -1, n_stats), (0, 1)),
        0: ("ijs", {"i": 1}, {"s": n_stats}, (1, -1, n_stats), 0),
        1: ("ijs", {"j": 1}, {"s": n_stats}, (-1, 1, n_stats), 1),
    }[axis]
    blocks = da.blockwise(
        _block_sums, out_index, *operands, groups, None if groups is None else "i",
        adjust_chunks=adjust, new_axes=new_axes, dtype=np.float64, shape=shape, n_stats=n_stats,
        axis=axis, n_groups=n_groups, labels=labels, **options)
    return blocks.sum(axis=summed, dtype=np.float64).reshape(-1, n_stats), labels


def _finish(totals, reduction):
    """What bce returns from (n_slots, 2) sums: the sums of losses, or Σw·l / Σw."""
    if reduction == "sum":
        return totals[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        return totals[:, 0] / totals[:, 1]


def _block_elements(y, p, w, pw, mask, scale, *, grad, backend, n_threads, **options):
    """The element losses, or the gradient of the sum weighted by ``scale`` (1/Σw), of one block."""
    if y.size == 0:
        return np.zeros(y.shape, np.float64 if p.dtype == np.float64 else np.float32)
    if scale is not None:  # w/Σw as the weight: the kernel's float64 arithmetic, one rounding
        w = scale if w is None else w * scale
    arguments = dict(sample_weight=w, pos_weight=pw, mask=mask, backend=backend, n_threads=n_threads,
                     **options)
    if grad:
        return _api.bce_grad(y, p, reduction="sum", **arguments)
    return _api.bce(y, p, reduction="none", **arguments)


def _elements(operands, ndim, scale, grad, options):
    """Element losses or the gradient, a lazy array of y_pred's shape."""
    out_dtype = np.float64 if operands[2].dtype == np.float64 else np.float32
    result = da.blockwise(_block_elements, "ij", *operands, scale, None if scale is None else "ij",
                          dtype=out_dtype, grad=grad, **options)
    return result[:, 0] if ndim == 1 else result


def _check_reduction(reduction, choices=("mean", "sum", "none")):
    if reduction not in choices:
        raise ValueError(f"reduction must be one of {', '.join(map(repr, choices))}; got {reduction!r}")


def bce(y_true, y_pred, *, from_logits=False, eps=1e-7, sample_weight=None, pos_weight=None,
        label_smoothing=0.0, mask=None, nan_policy="propagate", reduction="mean", axis=None,
        groups=None, n_groups=None, n_threads=None, backend=None):
    """Lazy :func:`fastbce.bce` of Dask arrays or Dask DataFrame columns (same arguments).

    Returns a Dask array: 0-d for a full reduction, else one value per group, label or sample,
    or the element losses for ``reduction="none"``. ``n_threads`` applies within each block.
    """
    _check_reduction(reduction)
    operands, ndim = _operands(y_true, y_pred, sample_weight, pos_weight, mask)
    axis = check_axis(axis, ndim)
    options = dict(from_logits=from_logits, eps=eps, label_smoothing=label_smoothing,
                   nan_policy=nan_policy, n_threads=n_threads, backend=backend)
    if reduction == "none":
        if groups is not None or axis is not None:
            raise ValueError("reduction='none' takes neither groups nor axis")
        return _elements(operands, ndim, None, False, options)
    totals, labels = _sums(operands, axis, groups, n_groups, 2, options)
    values = totals.map_blocks(_finish, reduction, drop_axis=1, dtype=np.float64)
    if labels is not None:  # labelled groups: a delayed pandas Series indexed by the labels
        import pandas as pd

        return dask.delayed(pd.Series)(values, index=labels.rename("group"))
    return values[0] if axis is None and groups is None else values


def bce_grad(y_true, y_pred, *, from_logits=False, eps=1e-7, sample_weight=None, pos_weight=None,
             label_smoothing=0.0, mask=None, nan_policy="propagate", reduction="mean", axis=None,
             n_threads=None, backend=None):
    """Lazy :func:`fastbce.bce_grad`: the gradient block by block, a Dask array of y_pred's shape.

    For ``reduction="mean"`` a first pass adds up Σw (exact partial sums); each block then
    computes the gradient of the sum with weights w/Σw, which equals the in-memory gradient to
    float64 rounding.
    """
    _check_reduction(reduction, ("mean", "sum"))
    operands, ndim = _operands(y_true, y_pred, sample_weight, pos_weight, mask)
    axis = check_axis(axis, ndim)
    options = dict(from_logits=from_logits, eps=eps, label_smoothing=label_smoothing,
                   nan_policy=nan_policy, n_threads=n_threads, backend=backend)
    scale = None
    if reduction == "mean":
        weight_sum = _sums(operands, axis, None, None, 2, options)[0][:, 1]
        scale = weight_sum.map_blocks(reciprocal, dtype=np.float64)
        scale = scale[:, None] if axis == 1 else scale[None, :]  # per sample, per label or (1, 1)
    return _elements(operands, ndim, scale, True, options)


def score(y_true, y_pred, *, from_logits=False, eps=1e-7, sample_weight=None, mask=None,
          nan_policy="propagate", groups=None, n_groups=None, axis=None, threshold=0.5,
          n_bins=N_BINS, auc_bits=None, n_threads=None, backend=None):
    """Lazy :func:`fastbce.score`: a ``dask.delayed`` that computes to a :class:`fastbce.ScoreResult`.

    The report of a :class:`fastbce.Accumulator` (its mergeable sums added over the blocks): the
    ROC-AUC from the histogram, with its bounds; ``auc_bits`` as the Accumulator's. Per sample
    (``axis=1``) the kernel-pass fields only.
    """
    threshold, n_bins = check_threshold(threshold), check_bins(n_bins)
    bits = check_bits(auc_bits if auc_bits is not None else GROUP_AUC_BITS if groups is not None
                      else AUC_BITS)
    operands, ndim = _operands(y_true, y_pred, sample_weight, None, mask)
    axis = check_axis(axis, ndim)
    width = N_STATS + (0 if axis == 1 else 2 * n_buckets(bits) + N_EXTRA + 3 * n_bins)
    options = dict(from_logits=from_logits, eps=eps, label_smoothing=0.0, nan_policy=nan_policy,
                   n_threads=n_threads, backend=backend, report=(threshold, n_bins, bits))
    sums, labels = _sums(operands, axis, groups, n_groups, width, options)
    index_name = "group" if groups is not None else {None: None, 0: "label", 1: "sample"}[axis]
    return dask.delayed(_report)(sums, n_bins, n_buckets(bits), index_name,
                                 None if labels is None else list(labels))


def _report(sums, n_bins, buckets, index_name, labels):
    """The ScoreResult of the summed blocks: [totals | histogram | extra] per slot."""
    totals = sums[:, :N_STATS]
    if sums.shape[1] == N_STATS:  # per sample: no histogram pass
        from ._score import ScoreResult

        return ScoreResult(np.ascontiguousarray(totals), index_name, None, labels)
    hist = sums[:, N_STATS:N_STATS + 2 * buckets].reshape(len(sums), buckets, 2) if buckets else None
    return result_of([np.ascontiguousarray(totals), hist, np.ascontiguousarray(sums[:, N_STATS + 2 * buckets:])],
                     n_bins, index_name, labels)
