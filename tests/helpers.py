"""Test data, layouts and the one check every backend-vs-oracle test goes through."""

import numpy as np

import fastbce
from oracle import ELEMENT_TOL, REDUCTION_RTOL, assert_close, oracle, out_dtype

ARRAY_OPTIONS = ("sample_weight", "pos_weight", "mask", "groups")


def make_labels(rng, shape, dtype, soft=True):
    """Labels of ``dtype``: 0/1 for bool and integers; for floats soft labels with exact 0 and 1 mixed in."""
    dtype = np.dtype(dtype)
    hard = rng.random(shape) < 0.4
    if dtype.kind in "biu" or not soft:
        return hard.astype(dtype)
    y = rng.random(shape)
    y[rng.random(shape) < 0.5] = 0.0
    y[hard & (rng.random(shape) < 0.6)] = 1.0
    return y.astype(dtype)


def make_preds(rng, shape, dtype, logits=False):
    """Probabilities in (0, 1), a few of them outside the default clip range, or logits."""
    if logits:
        return (rng.standard_normal(shape) * 4.0).astype(dtype)
    p = rng.random(shape)
    p[rng.random(shape) < 0.01] = 1e-9
    p[rng.random(shape) < 0.01] = 1.0 - 1e-9
    return p.astype(dtype)


def make_data(rng, shape, p_dtype=np.float64, y_dtype=np.float64, logits=False, soft=True):
    return make_labels(rng, shape, y_dtype, soft), make_preds(rng, shape, p_dtype, logits)


def with_layout(a, layout, tmp_path=None):
    """The same values as ``a`` in another memory layout (the array returned is what the test passes)."""
    if layout == "C":
        return np.ascontiguousarray(a)
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "strided":  # a[::2] for 1-D, a[:, ::3] for 2-D, of a bigger array
        if a.ndim == 1:
            big = np.empty(2 * a.shape[0], a.dtype)
            big[::2] = a
            big[1::2] = a[::-1]
            return big[::2]
        big = np.empty((a.shape[0], 3 * a.shape[1]), a.dtype)
        big[:, ::3] = a
        big[:, 1::3] = 0
        big[:, 2::3] = 1
        return big[:, ::3]
    if layout == "readonly":
        b = a.copy()
        b.flags.writeable = False
        return b
    if layout == "memmap":  # a read-only file mapping, as for data sets larger than memory
        path = tmp_path / f"data-{a.dtype}-{a.size}-{id(a)}.bin"
        np.ascontiguousarray(a).tofile(path)
        return np.memmap(path, dtype=a.dtype, mode="r", shape=a.shape)
    raise ValueError(layout)


def _root(a):
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def snapshot(*arrays):
    """Bytes of every array argument (of its whole base buffer), to check that nothing was modified."""
    return [(a, bytes(np.ascontiguousarray(_root(a)).tobytes()))
            for a in arrays if isinstance(a, np.ndarray)]


def assert_unchanged(snap):
    for array, before in snap:
        assert np.ascontiguousarray(_root(array)).tobytes() == before, "an input array was modified"


def same(a, b):
    """Bit-for-bit equality of two results (floats or arrays, NaN included)."""
    if isinstance(a, float) or isinstance(b, float):
        return type(a) is type(b) and (a == b or (np.isnan(a) and np.isnan(b)))
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


def check(backend, y_true, y_pred, *, grad=True, **options):
    """``bce``, ``bce_grad`` and ``bce_value_and_grad`` against the oracle; inputs stay untouched.

    Returns the value of ``bce``.
    """
    snap = snapshot(y_true, y_pred, *(options.get(k) for k in ARRAY_OPTIONS))
    expected, expected_grad, grad_mag = oracle(y_true, y_pred, **options)
    element_dtype = out_dtype(y_pred)
    with np.errstate(over="ignore"):  # an element output beyond float32's range is inf in float32
        expected_grad = None if expected_grad is None else expected_grad.astype(element_dtype)
        if isinstance(expected, np.ndarray) and options.get("reduction") == "none":
            expected = expected.astype(element_dtype)
    reduction = options.get("reduction", "mean")
    p_dtype = np.asarray(y_pred).dtype
    rtol, atol = ELEMENT_TOL[element_dtype]

    value = fastbce.bce(y_true, y_pred, backend=backend, **options)
    if reduction == "none":
        assert isinstance(value, np.ndarray) and value.dtype == element_dtype
        assert value.shape == np.shape(y_pred)
        assert_close(value, expected, rtol, atol, what="element losses")
    elif np.ndim(expected) == 0:
        assert type(value) is float, f"a full reduction returns a Python float, got {type(value)}"
        assert_close(value, expected, REDUCTION_RTOL[p_dtype], what="reduction")
    else:
        assert isinstance(value, np.ndarray) and value.dtype == np.float64
        assert_close(value, expected, REDUCTION_RTOL[p_dtype], what="per-axis/group reduction")
    assert_unchanged(snap)

    if grad and options.get("groups") is None:
        options = {k: v for k, v in options.items() if k not in ("groups", "n_groups")}
        gradient = fastbce.bce_grad(y_true, y_pred, backend=backend, **options)
        assert gradient.dtype == element_dtype and gradient.shape == np.shape(y_pred)
        assert_close(gradient, expected_grad, rtol, atol, mag=grad_mag, what="gradient")
        both = fastbce.bce_value_and_grad(y_true, y_pred, backend=backend, **options)
        assert same(both[0], value), "bce_value_and_grad's value differs from bce"
        assert same(both[1], gradient), "bce_value_and_grad's gradient differs from bce_grad"
        assert_unchanged(snap)
    return value
