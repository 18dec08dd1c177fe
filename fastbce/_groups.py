"""Group ids as users hold them: turn ``groups=`` into dense ids in [0, n_groups) and their labels.

- Small non-negative integer ids (the largest below ``max(DENSE_IDS, n_samples)``), or any integer
  ids with ``n_groups``, are slots themselves: no labels, one result per id in [0, n_groups).
- A pandas Categorical (or categorical Series, Arrow dictionary, polars Categorical): its codes,
  labelled by its categories (unused categories included, as pandas does with observed=False).
- Strings, and integer ids of any other range (negative, or as large as 10^12): factorized by
  pyarrow's ``dictionary_encode`` (hashing, no allocation per possible id) and labelled by the
  distinct values, sorted, so any chunking of the data gives the same order.

Nulls (and a Categorical's code -1) become nulls of the ids, which the plan masks.
"""

import sys

import numpy as np

# Integer ids below this (or below the number of samples) are used as slots directly.
DENSE_IDS = 1 << 16


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.compute
    except ImportError:
        raise ImportError("labelled groups (strings, categoricals, ids beyond the dense range) are "
                          "factorized with pyarrow: pip install 'fastbce[io]'") from None
    return pyarrow, pyarrow.compute


def _arrow(groups):
    """groups as a pyarrow Array, or None for a NumPy array or a list (kept as NumPy)."""
    pd, pl, pa = (sys.modules.get(name) for name in ("pandas", "polars", "pyarrow"))
    if pd is not None and isinstance(groups, (pd.Series, pd.Index, pd.Categorical)):
        if isinstance(groups.dtype, np.dtype) and groups.dtype.kind in "iub":
            return None  # a NumPy-backed column: read as NumPy
        pa, _ = _pyarrow()
        return pa.array(groups)  # categoricals become dictionary arrays
    if pl is not None and isinstance(groups, pl.Series):
        groups = groups.to_arrow()
    if pa is not None and isinstance(groups, pa.ChunkedArray):
        groups = groups.combine_chunks()
    if pa is not None and isinstance(groups, pa.Array):
        return groups
    return None


def _indices(indices, pa):
    """Dictionary indices (with their nulls) as int32 ids; nulls are kept for the plan to mask."""
    return indices.cast(pa.int32()) if indices.type != pa.int32() else indices


def _encode(array, pa, pc):
    """(ids, labels sorted) of an Arrow array of strings or integers."""
    if pa.types.is_string_view(array.type):
        array = array.cast(pa.large_string())
    encoded = pc.dictionary_encode(array)
    dictionary = encoded.dictionary
    order = pc.sort_indices(dictionary)
    rank = np.empty(len(order), np.int32)
    rank[order.to_numpy()] = np.arange(len(order), dtype=np.int32)
    ids = pc.take(pa.array(rank), encoded.indices)
    return ids, dictionary.take(order).to_pylist()


def factorize(groups, n_groups, y_pred, labelled=False):
    """(ids, n_groups, labels or None) of a ``groups`` argument (``y_pred`` gives the number of
    samples).

    ``labelled=True`` (an Accumulator without ``n_groups``) factorizes integer ids too, so that
    every update of a stream is labelled the same way.
    """
    try:
        n_samples = len(y_pred)
    except TypeError:  # a scalar: the plan rejects it
        n_samples = 0
    array = _arrow(groups)
    if array is None:
        values = groups if isinstance(groups, np.ndarray) else np.asarray(groups)
        if values.dtype.kind in "iu" and values.ndim == 1 and values.size and not labelled:
            if n_groups is not None:
                return values, n_groups, None
            low, high = int(values.min()), int(values.max())
            if low >= 0 and high < max(DENSE_IDS, n_samples):
                return values, high + 1, None
        if values.dtype.kind not in "iuUSO" or values.ndim != 1:
            return groups, n_groups, None  # the plan names what is wrong
        pa, pc = _pyarrow()
        try:
            array = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
            raise TypeError(f"groups must hold integers or strings: {error}") from None
    pa, pc = _pyarrow()
    if n_groups is not None and (labelled or not pa.types.is_integer(array.type)):
        raise ValueError("n_groups applies to integer group ids; labelled groups (strings, "
                         "categoricals) take their number from the labels: leave n_groups out")
    if pa.types.is_dictionary(array.type):
        labels = array.dictionary.to_pylist()
        return _indices(array.indices, pa), max(len(labels), 1), labels
    if pa.types.is_integer(array.type) and not labelled:
        if n_groups is not None:
            return array, n_groups, None
        bounds = pc.min_max(array)
        low, high = bounds["min"].as_py(), bounds["max"].as_py()
        if low is None:
            raise ValueError("groups has only nulls")
        if low >= 0 and high < max(DENSE_IDS, n_samples):
            return array, high + 1, None
    if not (pa.types.is_integer(array.type) or pa.types.is_string(array.type)
            or pa.types.is_large_string(array.type) or pa.types.is_string_view(array.type)):
        raise TypeError(f"groups must hold integer ids, strings or categories, got {array.type}")
    ids, labels = _encode(array, pa, pc)
    return ids, max(len(labels), 1), labels
