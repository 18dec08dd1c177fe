"""Every backend against the float64 oracle of ``oracle.py``: sizes, dtypes, layouts and every option.

Each distinct combination of dtypes and memory layouts (C, F, strided, read-only) of the arguments
costs a compilation of the Numba kernel on a cold cache (several seconds), so the combinations are
chosen deliberately: sizes, shapes and options vary freely on two dtype pairs, the dtype and layout
matrices use the default options, and on Numba they are cut to a covering subset (every dtype of each
argument and every layout at least once; see ``conftest.backend_cases``).
"""

import numpy as np
import pytest

import fastbce
from fastbce._engine import CHUNK_ELEMENTS
from conftest import backend_cases
from helpers import check, make_data, make_labels, make_preds, with_layout
from oracle import REDUCTION_RTOL, oracle

# Two dtype pairs (y_pred, y_true) that every option runs on: the float64 reference case and the
# common large-data case of float32 predictions with uint8 labels.
BASE_PAIRS = [(np.float64, np.float64), (np.float32, np.uint8)]
PAIR_IDS = ["f64-f64", "f32-u8"]

REDUCTIONS = [("mean", None), ("sum", None), ("none", None), ("mean", 0), ("sum", 0),
              ("mean", 1), ("sum", -1)]
REDUCTION_IDS = [f"{r}-axis{a}" for r, a in REDUCTIONS]

C = CHUNK_ELEMENTS
SIZES_1D = [1, 2, 7, 999, C - 1, C, C + 1, 2 * C + 5]
# 2-D shapes: rows that are whole chunks, rows longer than a chunk, many short rows over several
# chunks, one column, one row.
SHAPES_2D = [(2, C + 1), (3, 40000), (1201, 29), (C + 3, 1), (1, 9), (5, 3)]


def _reductions_for(ndim):
    return [(r, a) for r, a in REDUCTIONS if ndim == 2 or a in (None, 0, -1)]


# size 1 makes every broadcast argument contiguous: another Numba signature per pair, so one pair
SIZE_CASES = [(size, pair) for pair in BASE_PAIRS for size in SIZES_1D]
NUMBA_SIZE_CASES = [(size, pair) for size, pair in SIZE_CASES if size > 1 or pair == BASE_PAIRS[0]]


@pytest.mark.parametrize("backend, size, pair", backend_cases(SIZE_CASES, NUMBA_SIZE_CASES),
                         ids=lambda v: PAIR_IDS[BASE_PAIRS.index(v)] if v in BASE_PAIRS else str(v))
def test_sizes_1d(rng, backend, size, pair):
    y, p = make_data(rng, (size,), *pair)
    for reduction, axis in _reductions_for(1):
        check(backend, y, p, reduction=reduction, axis=axis)
    x = make_preds(rng, (size,), pair[0], logits=True)
    check(backend, y, x, from_logits=True, reduction="mean")


@pytest.mark.parametrize("shape", SHAPES_2D, ids=str)
@pytest.mark.parametrize("pair", BASE_PAIRS, ids=PAIR_IDS)
def test_shapes_2d(backend, rng, shape, pair):
    y, p = make_data(rng, shape, *pair)
    for reduction, axis in REDUCTIONS:
        check(backend, y, p, reduction=reduction, axis=axis)


def test_size_one_values(backend):
    """A single element: the loss by hand, and its gradient."""
    y, p = np.array([1.0]), np.array([0.25])
    assert fastbce.bce(y, p, backend=backend) == pytest.approx(np.log(4.0), rel=1e-15)
    assert fastbce.bce_grad(y, p, backend=backend)[0] == pytest.approx(-4.0, rel=1e-15)
    assert fastbce.bce(y, p, backend=backend, axis=0) == pytest.approx(np.log(4.0), rel=1e-15)


def test_hand_computed_values(backend):
    """A few values worked out by hand, independent of the oracle's code."""
    y = np.array([[1.0, 0.0], [0.5, 1.0]])
    p = np.array([[0.8, 0.2], [0.5, 0.1]])
    losses = np.array([[-np.log(0.8), -np.log(0.8)], [np.log(2.0), -np.log(0.1)]])
    got = fastbce.bce(y, p, backend=backend, reduction="none")
    np.testing.assert_allclose(got, losses, rtol=1e-14)
    np.testing.assert_allclose(fastbce.bce(y, p, backend=backend, axis=0), losses.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(fastbce.bce(y, p, backend=backend, axis=1), losses.mean(axis=1), rtol=1e-14)
    assert fastbce.bce(y, p, backend=backend, reduction="sum") == pytest.approx(losses.sum(), rel=1e-14)
    grads = np.array([[-1 / 0.8, 1 / 0.8], [0.0, -1 / 0.1]])
    np.testing.assert_allclose(fastbce.bce_grad(y, p, backend=backend, reduction="none"), grads,
                               rtol=1e-14, atol=1e-15)
    w = np.array([[1.0, 3.0]])
    weighted = fastbce.bce(y, p, backend=backend, sample_weight=w)
    assert weighted == pytest.approx((losses * w).sum() / 8.0, rel=1e-14)
    # logits: softplus(0) = log 2 for any label; x = 2, y = 1: log(1 + e^-2)
    assert fastbce.bce(np.array([1.0, 0.3]), np.array([2.0, 0.0]), from_logits=True, backend=backend,
                       reduction="sum") == pytest.approx(np.log1p(np.exp(-2.0)) + np.log(2.0), rel=1e-14)


DTYPE_PAIRS = [
    (np.float64, np.float64), (np.float64, np.float32), (np.float64, np.bool_), (np.float64, np.uint8),
    (np.float32, np.float32), (np.float32, np.float64), (np.float32, np.uint8), (np.float32, np.bool_),
    (np.float32, np.int8), (np.float32, np.int64), (np.float32, np.float16),
    (np.float16, np.float16), (np.float16, np.uint8), (np.float16, np.float32),
]


# Numba: every y_pred dtype and every y_true dtype at least once.
NUMBA_DTYPE_PAIRS = [(np.float64, np.float64), (np.float64, np.bool_), (np.float32, np.int64),
                     (np.float32, np.uint8), (np.float32, np.float32), (np.float32, np.int8),
                     (np.float32, np.float16), (np.float16, np.float16)]


@pytest.mark.parametrize("backend, p_dtype, y_dtype", backend_cases(DTYPE_PAIRS, NUMBA_DTYPE_PAIRS),
                         ids=lambda v: v if isinstance(v, str) else np.dtype(v).name)
def test_dtypes(rng, backend, p_dtype, y_dtype):
    shape = (1201, 29)  # three chunks
    y, p = make_data(rng, shape, p_dtype, y_dtype)
    for reduction, axis in [("mean", None), ("sum", None), ("none", None), ("mean", 0), ("sum", 1)]:
        check(backend, y, p, reduction=reduction, axis=axis)
    x = make_preds(rng, shape, p_dtype, logits=True)
    check(backend, y, x, from_logits=True, pos_weight=np.linspace(0.5, 2.0, 29), label_smoothing=0.1)
    # 1-D input of the same dtypes (seen as one column)
    check(backend, y[:, 0].copy(), p[:, 0].copy(), reduction="sum")


def test_float16_outputs_are_float32(backend, rng):
    y, p = make_data(rng, (50,), np.float16, np.float16)
    assert fastbce.bce(y, p, backend=backend, reduction="none").dtype == np.float32
    assert fastbce.bce_grad(y, p, backend=backend).dtype == np.float32
    assert fastbce.bce(y.astype(np.float32), p.astype(np.float32), backend=backend,
                       reduction="none").dtype == np.float32


LAYOUTS = ["F", "strided", "readonly", "memmap"]
LAYOUT_CASES = [(layout, pair, ndim) for layout in LAYOUTS for pair in PAIR_IDS for ndim in (1, 2)
                if not (layout == "F" and ndim == 1)]  # a 1-D array is C and F at once
# Numba: every layout on the float64 pair; the strided one on float32/uint8 too
NUMBA_LAYOUT_CASES = [c for c in LAYOUT_CASES if c[1] == "f64-f64" or c[0] == "strided"]


@pytest.mark.parametrize("backend, layout, pair, ndim", backend_cases(LAYOUT_CASES, NUMBA_LAYOUT_CASES))
def test_layouts(rng, tmp_path, backend, layout, pair, ndim):
    pair = BASE_PAIRS[PAIR_IDS.index(pair)]
    shape = (2 * C + 5,) if ndim == 1 else (1201, 29)
    y0, p0 = make_data(rng, shape, *pair)
    y, p = with_layout(y0, layout, tmp_path), with_layout(p0, layout, tmp_path)
    assert np.array_equal(y, y0) and np.array_equal(p, p0)
    for reduction, axis in _reductions_for(ndim):
        value = check(backend, y, p, reduction=reduction, axis=axis)
        # the layout must not change the result beyond summation order (identical data)
        contiguous = fastbce.bce(y0, p0, backend=backend, reduction=reduction, axis=axis)
        np.testing.assert_allclose(value, contiguous, rtol=1e-12)


def test_mixed_layouts(backend, rng):
    """Labels and predictions in different layouts at once, with Fortran-ordered weights."""
    y0, p0 = make_data(rng, (1201, 29), np.float32, np.uint8)
    y = np.ascontiguousarray(y0)
    p = with_layout(p0, "F")
    w = np.asfortranarray(rng.random((1201, 29)))
    for reduction, axis in [("mean", None), ("none", None), ("mean", 0), ("sum", 1)]:
        check(backend, y, p, sample_weight=w, reduction=reduction, axis=axis)


def _options(rng, shape, case):
    """Keyword arguments of one option case for data of ``shape`` (2-D)."""
    n_rows, n_cols = shape
    if case == "plain":
        return {}
    if case == "logits":
        return {"from_logits": True}
    if case == "eps":
        return {"eps": 1e-3}
    if case == "sw-full-f64":
        return {"sample_weight": rng.random(shape) * 3.0}
    if case == "sw-per-label":
        return {"sample_weight": rng.random(n_cols) + 0.5}
    if case == "sw-per-sample":
        return {"sample_weight": rng.random((n_rows, 1)) + 0.5}
    if case == "sw-full-f32":
        return {"sample_weight": (rng.random(shape) * 2.0).astype(np.float32)}
    if case == "sw-int":
        return {"sample_weight": rng.integers(0, 4, (n_rows, 1))}
    if case == "sw-zero-rows-cols":
        w = rng.random(n_cols) + 0.1
        w[3] = 0.0  # a label with total weight 0: its mean is NaN, its gradient 0
        return {"sample_weight": w}
    if case == "pos-weight":
        return {"pos_weight": np.linspace(0.0, 3.0, n_cols)}
    if case == "pos-weight-logits":
        return {"pos_weight": 2.5, "from_logits": True}
    if case == "smoothing":
        return {"label_smoothing": 0.1}
    if case == "smoothing-logits":
        return {"label_smoothing": 0.3, "from_logits": True}
    if case == "mask-full":
        return {"mask": rng.random(shape) < 0.7}
    if case == "mask-rows":
        m = rng.random((n_rows, 1)) < 0.8
        m[1] = False  # a fully masked sample: NaN for axis=1
        return {"mask": m}
    if case == "mask-cols":
        m = np.ones(n_cols, bool)
        m[2] = False  # a fully masked label: NaN for axis=0
        return {"mask": m}
    if case == "everything":
        return {"sample_weight": rng.random(shape), "pos_weight": rng.random(n_cols) * 2,
                "label_smoothing": 0.05, "mask": rng.random(shape) < 0.9, "eps": 1e-4}
    if case == "everything-logits":
        return {"sample_weight": rng.random(shape), "pos_weight": rng.random(n_cols) * 2,
                "label_smoothing": 0.05, "mask": rng.random(shape) < 0.9, "from_logits": True}
    raise ValueError(case)


OPTION_CASES = ["plain", "logits", "eps", "sw-full-f64", "sw-per-label", "sw-per-sample",
                "sw-full-f32", "sw-int", "sw-zero-rows-cols", "pos-weight", "pos-weight-logits",
                "smoothing", "smoothing-logits", "mask-full", "mask-rows", "mask-cols",
                "everything", "everything-logits"]


OPTION_PAIR_CASES = [(case, pair) for pair in PAIR_IDS for case in OPTION_CASES]
# Numba: float32 weights with float32 predictions only
NUMBA_OPTION_CASES = [c for c in OPTION_PAIR_CASES if c != ("sw-full-f32", "f64-f64")]


@pytest.mark.parametrize("backend, case, pair", backend_cases(OPTION_PAIR_CASES, NUMBA_OPTION_CASES))
def test_options(rng, backend, case, pair):
    pair = BASE_PAIRS[PAIR_IDS.index(pair)]
    shape = (1201, 29)
    options = _options(rng, shape, case)
    y, p = make_data(rng, shape, *pair, logits=options.get("from_logits", False))
    if case == "eps":  # values on, inside and outside the clip bounds
        p.flat[:6] = np.array([1e-3, 1 - 1e-3, 5e-4, 1 - 5e-4, 2e-3, 0.0], dtype=p.dtype)
    for reduction, axis in REDUCTIONS:
        value = check(backend, y, p, reduction=reduction, axis=axis, **options)
        if case == "sw-zero-rows-cols" and reduction == "mean" and axis == 0:
            assert np.isnan(value[3]) and np.isfinite(np.delete(value, 3)).all()
        if case == "mask-rows" and reduction == "mean" and axis in (1, -1):
            assert np.isnan(value[1])
        if case == "mask-cols" and axis == 0:
            assert np.isnan(value[2]) if reduction == "mean" else value[2] == 0.0


def test_options_1d(backend, rng):
    """1-D input: per-element weights, pos_weight and mask; axis=0 and -1 behave like axis=None."""
    n = 2 * C + 5
    y, p = make_data(rng, (n,))
    options = {"sample_weight": rng.random(n), "pos_weight": 1.5, "mask": rng.random(n) < 0.9,
               "label_smoothing": 0.2}
    for reduction in ("mean", "sum", "none"):
        check(backend, y, p, reduction=reduction, **options)
    whole = fastbce.bce(y, p, backend=backend, **options)
    assert fastbce.bce(y, p, backend=backend, axis=0, **options) == whole
    assert fastbce.bce(y, p, backend=backend, axis=-1, **options) == whole
    assert np.array_equal(fastbce.bce_grad(y, p, backend=backend, axis=0, **options),
                          fastbce.bce_grad(y, p, backend=backend, **options))


def test_weighted_mean_definition(backend, rng):
    """mean = Σ w·l / Σ w, with the mask folded into w; the plain mean without weights."""
    y, p = make_data(rng, (40, 5))
    w = rng.random((40, 5))
    m = rng.random((40, 5)) < 0.6
    losses = fastbce.bce(y, p, backend=backend, reduction="none")
    assert fastbce.bce(y, p, backend=backend) == pytest.approx(losses.mean(), rel=1e-13)
    assert fastbce.bce(y, p, backend=backend, sample_weight=w, mask=m) == pytest.approx(
        (losses * w * m).sum() / (w * m).sum(), rel=1e-13)
    np.testing.assert_allclose(fastbce.bce(y, p, backend=backend, sample_weight=w, reduction="none"),
                               losses * w, rtol=1e-14)
    # masked elements give 0 loss and 0 gradient
    masked = fastbce.bce(y, p, backend=backend, mask=m, reduction="none")
    assert (masked[~m] == 0).all()
    assert (fastbce.bce_grad(y, p, backend=backend, mask=m)[~m] == 0).all()


GROUP_CASES = ["plain", "n_groups", "weights-mask", "int32", "uint64", "1d", "one-group-masked"]


GROUP_PAIR_CASES = [(case, pair) for pair in PAIR_IDS for case in GROUP_CASES]
# other id dtypes once each on Numba
NUMBA_GROUP_CASES = [c for c in GROUP_PAIR_CASES if c not in (("int32", "f32-u8"), ("uint64", "f32-u8"))]


@pytest.mark.parametrize("backend, case, pair", backend_cases(GROUP_PAIR_CASES, NUMBA_GROUP_CASES))
def test_groups(rng, backend, case, pair):
    pair = BASE_PAIRS[PAIR_IDS.index(pair)]
    shape = (2 * C + 5,) if case == "1d" else (1201, 29)
    y, p = make_data(rng, shape, *pair)
    groups = rng.integers(0, 6, shape[0])
    options = {}
    if case == "n_groups":
        options["n_groups"] = 9  # groups 6, 7, 8 are empty: NaN for mean, 0 for sum
    if case == "weights-mask":
        options = {"sample_weight": rng.random((shape[0], 1)), "mask": rng.random(shape) < 0.8,
                   "pos_weight": rng.random(shape[1]) + 0.5}
    if case in ("int32", "uint64"):
        groups = groups.astype(case)
    if case == "one-group-masked":
        options["mask"] = (groups != 4)[:, None]
    for reduction in ("mean", "sum"):
        value = check(backend, y, p, groups=groups, reduction=reduction, **options)
        assert value.shape == (options.get("n_groups", 6),)
        if case == "n_groups":
            if reduction == "mean":
                assert np.isnan(value[6:]).all() and np.isfinite(value[:6]).all()
            else:
                assert (value[6:] == 0.0).all()
        if case == "one-group-masked":
            assert np.isnan(value[4]) if reduction == "mean" else value[4] == 0.0
    # the per-group sums add up to the total: to rounding for float64 predictions; for float32
    # ones within the fast path's accuracy (the total may take the product path and 1-D groups a
    # logarithm per element)
    sums = fastbce.bce(y, p, backend=backend, groups=groups, reduction="sum", **options)
    total = fastbce.bce(y, p, backend=backend, reduction="sum",
                        **{k: v for k, v in options.items() if k != "n_groups"})
    assert sums.sum() == pytest.approx(total, rel=REDUCTION_RTOL[p.dtype])


def test_groups_logits_smoothing(backend, rng):
    y, p = make_data(rng, (1201, 29), logits=True)
    groups = rng.integers(0, 40, 1201)
    check(backend, y, p, groups=groups, from_logits=True, label_smoothing=0.2, nan_policy="omit")


def test_oracle_self_check():
    """The oracle itself on values worked out by hand (so that a wrong oracle cannot hide a bug)."""
    value, grad, _ = oracle(np.array([1.0, 0.0]), np.array([0.25, 0.25]), reduction="none")
    np.testing.assert_allclose(value, [np.log(4.0), np.log(4.0 / 3.0)], rtol=1e-15)
    np.testing.assert_allclose(grad, [-4.0, 4.0 / 3.0], rtol=1e-15)
    value, grad, _ = oracle(np.array([1.0, 0.0]), np.array([0.0, 0.0]), from_logits=True,
                            pos_weight=3.0, reduction="sum")
    assert value == pytest.approx(4 * np.log(2.0), rel=1e-15)
    np.testing.assert_allclose(grad, [-1.5, 0.5], rtol=1e-15)
    value, grad, _ = oracle(np.ones((2, 2)), np.full((2, 2), 0.5), sample_weight=np.array([1.0, 0.0]),
                            axis=0)
    assert value[0] == pytest.approx(np.log(2.0)) and np.isnan(value[1])
    assert (grad[:, 1] == 0).all() and grad[0, 0] == pytest.approx(-1.0)
