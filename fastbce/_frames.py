"""NumPy views of pyarrow, pandas and polars columns, with their nulls turned into the mask.

A column without nulls becomes a NumPy view of its buffer (no copy). A null marks the element as
masked: the values under nulls are viewed as they are and never read, except for ``groups``,
whose null slots are filled with group 0 (a copy of ``groups`` alone) because group ids are checked
under the mask too. The copies that remain: a ChunkedArray of several chunks is combined, a bool
column (bit-packed in Arrow) becomes one byte per element, and columns with nulls add a bool mask.
Only libraries that are already imported are looked at: nothing is imported here.
"""

import sys
from functools import reduce

import numpy as np


def _arrow_of(value):
    """The pyarrow Array behind a pyarrow Array/ChunkedArray or a pandas/polars Series, else None."""
    pd, pl = sys.modules.get("pandas"), sys.modules.get("polars")
    if pl is not None and isinstance(value, pl.Series):
        value = value.to_arrow()  # zero-copy for a single chunk
    elif pd is not None and isinstance(value, pd.Series):
        import pyarrow

        value = pyarrow.array(value)  # nullable and Arrow-backed dtypes: values are not copied
    pa = sys.modules.get("pyarrow")
    if pa is None:
        return None
    if isinstance(value, pa.ChunkedArray):
        return value.chunk(0) if value.num_chunks == 1 else value.combine_chunks()
    return value if isinstance(value, pa.Array) else None


def _to_numpy(value, name):
    """(NumPy array, validity or None) of one argument; NumPy arrays and other values pass through."""
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(value, pd.Series) and isinstance(value.dtype, np.dtype):
        return value.to_numpy(), None  # a view: pandas' NumPy-backed columns have no nulls
    array = _arrow_of(value)
    if array is None:
        return value, None
    import pyarrow as pa

    kind = array.type
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)):
        raise TypeError(f"{name} must hold real numbers, got a column of Arrow type {kind}")
    valid = array.is_valid().to_numpy(zero_copy_only=False) if array.null_count else None
    if pa.types.is_boolean(kind):
        return array.fill_null(False).to_numpy(zero_copy_only=False), valid
    if valid is not None:
        if name == "groups":
            return array.fill_null(0).to_numpy(), valid
        # the same values without the validity bitmap: a zero-copy view
        array = pa.Array.from_buffers(kind, len(array), [None, array.buffers()[1]], offset=array.offset)
    return array.to_numpy(), valid


def from_frames(y_true, y_pred, sample_weight, pos_weight, mask, groups):
    """The arguments as NumPy arrays; nulls of y_true, y_pred, sample_weight and groups are masked.

    Returns ``(y_true, y_pred, sample_weight, pos_weight, mask, groups)``. A null in ``mask``
    counts as False; ``pos_weight`` must have no nulls.
    """
    y_true, y_true_valid = _to_numpy(y_true, "y_true")
    y_pred, y_pred_valid = _to_numpy(y_pred, "y_pred")
    sample_weight, weight_valid = _to_numpy(sample_weight, "sample_weight")
    pos_weight, pos_weight_valid = _to_numpy(pos_weight, "pos_weight")
    mask, _ = _to_numpy(mask, "mask")
    groups, groups_valid = _to_numpy(groups, "groups")
    if pos_weight_valid is not None:
        raise ValueError("pos_weight has nulls; it must have a value for every label")
    if groups_valid is not None and np.ndim(y_pred) == 2:
        groups_valid = groups_valid[:, None]  # one id per sample (row)
    valid = {name: v for name, v in (("y_true", y_true_valid), ("y_pred", y_pred_valid),
                                     ("sample_weight", weight_valid), ("groups", groups_valid))
             if v is not None}
    if valid and (mask is None or np.asarray(mask).dtype == bool):  # else make_plan rejects mask
        try:
            counted = reduce(np.logical_and, valid.values())
            mask = counted if mask is None else np.logical_and(mask, counted)
        except ValueError:
            shapes = ", ".join(f"{name} {np.shape(v)}" for name, v in valid.items())
            raise ValueError(f"the nulls of {', '.join(valid)} do not broadcast to y_pred's shape "
                             f"{np.shape(y_pred)} (shapes: {shapes})") from None
    return y_true, y_pred, sample_weight, pos_weight, mask, groups
