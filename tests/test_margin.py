"""Hinge, squared hinge, Dice and Tversky (fastbce/_margin.py on kernels/c/margin.h and
kernels/numba/margin.py): Keras' own test values, the float64 reference on random data of every
dtype and layout, gradients against central differences, the same bits from both compiled
backends and any thread count, bad input named.

Numba compiles one signature per (label dtype, prediction dtype): it runs float64/float64 and
float32/float32 only; the Cython and NumPy backends take the whole matrix.
"""

import numpy as np
import pytest

import fastbce
from conftest import BACKENDS, COMPILED_BACKENDS

CYTHON = [b for b in COMPILED_BACKENDS if b == "cython"]

# ---- Keras' values (keras/src/losses/losses_test.py) ------------------------------------------

HINGE_Y = np.array([[0.0, 1.0], [0.0, 0.0]])
HINGE_P = np.array([[0.6, 0.4], [0.4, 0.6]])


@pytest.mark.parametrize("backend", BACKENDS)
def test_keras_hinge_and_squared_hinge(backend):
    """Keras reduces over the last axis first (our axis=1), then over the batch: its
    "sum_over_batch_size" is Σw·l / (number of elements), "sum" the sum of the sample means."""
    kw = dict(backend=backend)
    for fn, mean, sums, per_sample, weighted in (
            (fastbce.hinge, 1.3, 2.6, [1.1, 1.5], 0.55),
            (fastbce.squared_hinge, 1.86, 3.72, [1.46, 2.26], 0.73)):
        assert fn(HINGE_Y, HINGE_P, **kw) == pytest.approx(mean, abs=1e-12)
        assert fn(HINGE_Y, HINGE_P, axis=1, **kw).sum() == pytest.approx(sums, abs=1e-12)
        np.testing.assert_allclose(fn(HINGE_Y, HINGE_P, axis=1, **kw), per_sample, atol=1e-12)
        w = np.array([1.0, 0.0])[:, None]
        total = fn(HINGE_Y, HINGE_P, sample_weight=w, reduction="sum", **kw)
        assert total / HINGE_Y.size == pytest.approx(weighted, abs=1e-12)
        np.testing.assert_allclose(fn(HINGE_Y, HINGE_P, axis=1, **kw) * w[:, 0],
                                   [per_sample[0], 0.0], atol=1e-12)
        assert fn(HINGE_Y, HINGE_P, sample_weight=0.0, reduction="sum", **kw) == 0.0
    # -1/+1 labels give the same as 0/1 labels
    assert fastbce.hinge(2 * HINGE_Y - 1, HINGE_P, **kw) == pytest.approx(1.3, abs=1e-12)


DICE_Y = np.array([[1.0, 2.0], [1.0, 2.0]])
DICE_P = np.array([[4.0, 1.0], [6.0, 1.0]])
SEG_Y = np.array([[1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1]], dtype=np.float64)
SEG_P = np.array([[0, 1, 0, 1], [1, 0, 1, 1], [0, 1, 0, 1], [1, 0, 1, 1]], dtype=np.float64)
AXIS_Y = np.array([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]])  # Keras' (2, 2, 2, 1) arrays,
AXIS_P = np.array([[0.0, 1.0, 0.0, 1.0], [0.4, 0.0, 0.0, 0.9]])  # reshaped to (2, 4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_keras_dice_and_tversky(backend):
    """Keras adds its epsilon 1e-7 to the denominator (eps=1e-7); its Tversky(alpha=a, beta=b)
    is tversky(alpha=b, beta=a)."""
    kw = dict(eps=1e-7, backend=backend)
    for fn in (fastbce.dice, fastbce.tversky):
        assert fn(DICE_Y, DICE_P, **kw) == pytest.approx(-0.55555546, abs=1e-7)
        assert fn(SEG_Y, SEG_P, **kw) == pytest.approx(0.77777773, abs=1e-7)
        np.testing.assert_allclose(fn(AXIS_Y, AXIS_P, axis=1, **kw), [0.5, 0.75757575], atol=1e-7)
    swapped = dict(alpha=0.8, beta=0.2, **kw)
    assert fastbce.tversky(DICE_Y, DICE_P, **swapped) == pytest.approx(-0.29629636, abs=1e-7)
    assert fastbce.tversky(SEG_Y, SEG_P, **swapped) == pytest.approx(0.7916667, abs=1e-7)
    np.testing.assert_allclose(fastbce.tversky(AXIS_Y, AXIS_P, axis=1, **swapped), [0.5, 0.7222222],
                               atol=1e-7)
    # the formula: α on FP = Σ(1-y)·p, β on FN = Σy·(1-p)
    tp, fp, fn_ = (SEG_Y * SEG_P).sum(), ((1 - SEG_Y) * SEG_P).sum(), (SEG_Y * (1 - SEG_P)).sum()
    expected = 1 - tp / (tp + 0.8 * fp + 0.2 * fn_)
    assert fastbce.tversky(SEG_Y, SEG_P, alpha=0.8, beta=0.2, backend=backend) == pytest.approx(
        expected, rel=1e-14)


# ---- float64 reference on random data ---------------------------------------------------------

def _np_hinge(y, x, squared):
    y, x = y.astype(np.float64), x.astype(np.float64)
    t = np.where(y == 1, 1.0, -1.0)
    h = np.maximum(1.0 - t * x, 0.0)
    return h * h if squared else h


def _np_counts(y, p, w):
    y, p = y.astype(np.float64), p.astype(np.float64)
    return (w * y * p), (w * y), (w * p)


def _layout(a, layout):
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "strided":
        big = np.zeros((a.shape[0], 2 * a.shape[1]), a.dtype)
        big[:, ::2] = a
        return big[:, ::2]
    return a


Y_DTYPES = ["bool", "uint8", "int8", "int64", "float16", "float32", "float64"]
P_DTYPES = ["float16", "float32", "float64"]


def _data(rng, shape, y_dtype, p_dtype, hinge):
    y = rng.random(shape) < 0.4
    if hinge and y_dtype in ("int8", "int64", "float32", "float64"):
        y = np.where(y, 1, -1)  # -1/+1 labels
    y = y.astype(y_dtype)
    if not hinge and y_dtype in ("float16", "float32", "float64"):
        y = rng.random(shape).astype(y_dtype)  # soft labels
    p = (rng.normal(0, 1.5, shape) if hinge else rng.random(shape)).astype(p_dtype)
    return y, p


@pytest.mark.parametrize("backend", ["numpy"] + CYTHON)
@pytest.mark.parametrize("y_dtype", Y_DTYPES)
@pytest.mark.parametrize("p_dtype", P_DTYPES)
def test_random_data_every_dtype_against_float64(backend, y_dtype, p_dtype, rng):
    shape = (3001, 7)
    for hinge in (True, False):
        y, p = _data(rng, shape, y_dtype, p_dtype, hinge)
        w = rng.random((shape[0], 1)) + 0.5
        tol = dict(rtol=1e-10)
        if hinge:
            for squared, fn in ((False, fastbce.hinge), (True, fastbce.squared_hinge)):
                losses = _np_hinge(y, p, squared)
                np.testing.assert_allclose(fn(y, p, backend=backend), losses.mean(), **tol)
                np.testing.assert_allclose(fn(y, p, axis=0, sample_weight=w, backend=backend),
                                           (w * losses).sum(0) / (w.sum() * np.ones(7)), **tol)
                np.testing.assert_allclose(fn(y, p, axis=1, backend=backend), losses.mean(1), **tol)
                np.testing.assert_allclose(fn(y, p, reduction="none", backend=backend), losses,
                                           rtol=1e-6 if p_dtype != "float64" else 1e-15)
        else:
            tp, sy, sp = _np_counts(y, p, w)
            ref = 1 - (2 * tp.sum() + 1.0) / (sy.sum() + sp.sum() + 1.0)
            np.testing.assert_allclose(fastbce.dice(y, p, smooth=1.0, sample_weight=w, backend=backend),
                                       ref, **tol)
            tp, sy, sp = _np_counts(y, p, 1.0)
            ref = 1 - tp.sum(0) / (tp.sum(0) + 0.3 * (sp - tp).sum(0) + 0.7 * (sy - tp).sum(0))
            np.testing.assert_allclose(fastbce.tversky(y, p, alpha=0.3, beta=0.7, axis=0,
                                                       backend=backend), ref, **tol)


@pytest.mark.parametrize("backend", ["numpy"] + CYTHON)
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_layouts_weights_mask_groups_and_nan(backend, layout, rng):
    shape = (5003, 19)
    y = np.where(rng.random(shape) < 0.3, 1.0, -1.0).astype(np.float32)
    x = rng.normal(0, 2, shape).astype(np.float32)
    x[3, 4] = np.nan
    y[7, 1] = np.nan
    w = rng.random(shape)
    mask = rng.random(shape) < 0.9
    groups = rng.integers(0, 5, shape[0])
    yl, xl, wl, ml = (_layout(a, layout) for a in (y, x, w, mask))
    keep = mask & ~np.isnan(x) & ~np.isnan(y)
    losses = np.where(keep, _np_hinge(np.nan_to_num(y), np.nan_to_num(x), False), 0.0)
    kw = dict(sample_weight=wl, mask=ml, nan_policy="omit", backend=backend)
    ww = np.where(keep, w, 0.0)
    np.testing.assert_allclose(fastbce.hinge(yl, xl, **kw), (ww * losses).sum() / ww.sum(), rtol=1e-10)
    by_group = fastbce.hinge(yl, xl, groups=groups, reduction="sum", **kw)
    np.testing.assert_allclose(by_group, np.bincount(groups, (ww * losses).sum(1), minlength=5),
                               rtol=1e-10)
    assert np.isnan(fastbce.hinge(yl, xl, backend=backend))  # nan_policy="propagate"
    grad = fastbce.hinge_grad(yl, xl, axis=1, **kw)
    t = np.where(y == 1, 1.0, -1.0)
    slope = np.where(1 - t * np.nan_to_num(x) < 0, 0.0, -t)
    expected = np.where(keep, ww * slope, 0.0) / ww.sum(1, keepdims=True)
    np.testing.assert_allclose(grad, expected.astype(np.float32), rtol=1e-6, atol=1e-12)
    assert grad.flags.f_contiguous == (layout == "F")
    # soft counts, per group
    p = rng.random(shape).astype(np.float32)
    ys = rng.random(shape).astype(np.float32)
    yl, pl = _layout(ys, layout), _layout(p, layout)
    value = fastbce.dice(yl, pl, sample_weight=wl, mask=ml, groups=groups, backend=backend)
    tp, sy, sp = (np.bincount(groups, (np.where(mask, t, 0.0)).sum(1), minlength=5)
                  for t in _np_counts(ys, p, w))
    np.testing.assert_allclose(value, 1 - 2 * tp / (sy + sp), rtol=1e-10)


# ---- gradients against central differences ----------------------------------------------------

def _central(f, p, h=1e-6):
    g = np.empty_like(p)
    for i in np.ndindex(p.shape):
        q = p.copy()
        q[i] += h
        up = f(q)
        q[i] -= 2 * h
        g[i] = (up - f(q)) / (2 * h)
    return g


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradients_against_central_differences(backend, rng):
    shape = (9, 4)
    y = (rng.random(shape) < 0.5).astype(np.float64)
    x = rng.normal(0, 1.5, shape)
    x[np.abs(1 - np.abs(x)) < 0.01] += 0.05  # away from the kinks
    w = rng.random(shape) + 0.1
    for fn, grad, both in ((fastbce.hinge, fastbce.hinge_grad, fastbce.hinge_value_and_grad),
                           (fastbce.squared_hinge, fastbce.squared_hinge_grad,
                            fastbce.squared_hinge_value_and_grad)):
        for kw in (dict(), dict(sample_weight=w, axis=0), dict(reduction="sum", axis=1)):
            kw["backend"] = backend
            g = grad(y, x, **kw)
            value = lambda q: np.sum(fn(y, q, **kw))  # noqa: E731 (per slot: gradient of the sum)
            np.testing.assert_allclose(g, _central(value, x), rtol=1e-6, atol=1e-8)
            v, g2 = both(y, x, **kw)
            np.testing.assert_array_equal(g2, g)
            np.testing.assert_array_equal(v, fn(y, x, **kw))
    ys = rng.random(shape)
    p = rng.random(shape)
    for fn, grad, extra in ((fastbce.dice, fastbce.dice_grad, dict(smooth=0.5)),
                            (fastbce.tversky, fastbce.tversky_grad, dict(alpha=0.3, beta=0.9, eps=1e-3))):
        for kw in (dict(), dict(sample_weight=w, axis=0), dict(axis=1, groups=None)):
            kw = dict(kw, backend=backend, **extra)
            value = lambda q: np.sum(fn(ys, q, **kw))  # noqa: E731
            np.testing.assert_allclose(grad(ys, p, **kw), _central(value, p), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_hinge_kink_takes_the_linear_piece(backend):
    """At t·x = 1 the gradient is -t, as TensorFlow's gradient of maximum(1 - t·x, 0) (ties go to
    the first argument); the squared hinge's is 0 there."""
    y, x = np.array([1.0, 0.0, 1.0]), np.array([1.0, -1.0, 2.0])
    np.testing.assert_array_equal(fastbce.hinge_grad(y, x, reduction="sum", backend=backend), [-1, 1, 0])
    np.testing.assert_array_equal(fastbce.squared_hinge_grad(y, x, reduction="sum", backend=backend),
                                  [0, 0, 0])


# ---- bit identity -----------------------------------------------------------------------------

def _calls(y, x, p, ys, w, mask, groups):
    yield "hinge", lambda **k: fastbce.hinge(y, x, **k)
    yield "squared per label", lambda **k: fastbce.squared_hinge(y, x, axis=0, sample_weight=w, **k)
    yield "hinge per sample", lambda **k: fastbce.hinge(y, x, axis=1, mask=mask, **k)
    yield "hinge groups", lambda **k: fastbce.hinge(y, x, groups=groups, nan_policy="omit", **k)
    yield "hinge none", lambda **k: fastbce.hinge(y, x, reduction="none", sample_weight=w, **k)
    yield "hinge grad", lambda **k: fastbce.hinge_value_and_grad(y, x, sample_weight=w, **k)
    yield "squared grad", lambda **k: fastbce.squared_hinge_grad(y, x, axis=1, **k)
    yield "dice", lambda **k: fastbce.dice(ys, p, **k)
    yield "dice weighted", lambda **k: fastbce.dice(ys, p, sample_weight=w, mask=mask, **k)
    yield "dice per label", lambda **k: fastbce.dice(ys, p, axis=0, **k)
    yield "tversky groups", lambda **k: fastbce.tversky(ys, p, groups=groups, alpha=0.3, beta=0.7, **k)
    yield "dice grad", lambda **k: fastbce.dice_grad(ys, p, axis=1, sample_weight=w, **k)
    yield "tversky grad", lambda **k: fastbce.tversky_grad(ys, p, alpha=0.2, beta=0.6, **k)


def _bits(value):
    """The bytes of a result, NaNs made one NaN (their sign and payload are not compared)."""
    if isinstance(value, tuple):
        return tuple(_bits(v) for v in value)
    value = np.asarray(value)
    return np.where(np.isnan(value), np.nan, value).astype(value.dtype).tobytes()


def _inputs(rng, n_rows=20011, n_cols=17):
    shape = (n_rows, n_cols)
    y = (rng.random(shape) < 0.4).astype(np.float32)
    x = rng.normal(0, 1.5, shape).astype(np.float32)
    x[5, -1] = np.nan
    p = rng.random(shape, dtype=np.float32)
    ys = rng.random(shape, dtype=np.float32)
    w = rng.random(shape, dtype=np.float32)
    mask = rng.random(shape) < 0.8
    groups = rng.integers(0, 40, n_rows)
    return y, x, p, ys, w, mask, groups


@pytest.mark.skipif(len(COMPILED_BACKENDS) < 2, reason="needs both compiled backends")
def test_cython_and_numba_give_the_same_bits(rng):
    inputs = _inputs(rng)
    for name, call in _calls(*inputs):
        assert _bits(call(backend="cython")) == _bits(call(backend="numba")), name
    y, x, p, ys = inputs[:4]
    assert _bits(fastbce.hinge(y[:, 0], x[:, 0], backend="cython")) == _bits(
        fastbce.hinge(y[:, 0], x[:, 0], backend="numba"))


@pytest.mark.parametrize("backend", COMPILED_BACKENDS)
def test_any_thread_count_gives_the_same_bits(backend, rng):
    inputs = _inputs(rng)
    for name, call in _calls(*inputs):
        assert _bits(call(backend=backend, n_threads=1)) == _bits(call(backend=backend, n_threads=2)), name


@pytest.mark.parametrize("backend", COMPILED_BACKENDS)
def test_plain_route_gives_the_general_bits(backend, rng):
    """Without weights or mask a full reduction reads the inputs in place (fb_margin_plain); a mask
    of all True takes the general block loop: the same sums."""
    y, x, p, ys = _inputs(rng, 3001, 5)[:4]
    x[5, -1] = 0.0
    everything = np.ones(y.shape, bool)
    for fn, a, b in ((fastbce.hinge, y, x), (fastbce.squared_hinge, y, x), (fastbce.dice, ys, p)):
        assert fn(a, b, backend=backend) == fn(a, b, mask=everything, backend=backend)


def test_inputs_are_not_modified(rng):
    y, x, p, ys, w, mask, groups = _inputs(rng, 300, 3)
    copies = [a.copy() for a in (y, x, p, ys, w, mask, groups)]
    for _, call in _calls(y, x, p, ys, w, mask, groups):
        call(backend="numpy")
        if CYTHON:
            call(backend="cython")
    for a, b in zip((y, x, p, ys, w, mask, groups), copies):
        assert a.tobytes() == b.tobytes()


# ---- bad input --------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["numpy"] + CYTHON)
def test_bad_input_is_named(backend):
    y, x = np.array([0.0, 1.0, 1.0]), np.array([0.5, -1.0, 2.0])
    kw = dict(backend=backend)
    with pytest.raises(ValueError, match="labels other than 0, 1 and -1"):
        fastbce.hinge(np.array([0.0, 0.5, 1.0]), x, **kw)
    with pytest.raises(ValueError, match="labels other than"):
        fastbce.squared_hinge_grad(np.array([2, 1, 0], np.int8), x, **kw)
    with pytest.raises(ValueError, match="nan_policy='raise'"):
        fastbce.hinge(y, np.array([np.nan, 0, 0]), nan_policy="raise", **kw)
    with pytest.raises(ValueError, match="sample_weight"):
        fastbce.dice(y, x, sample_weight=np.array([1.0, -1.0, 1.0]), **kw)
    with pytest.raises(ValueError, match="groups has ids"):
        fastbce.tversky(y, x, groups=np.array([0, 3, 1]), n_groups=2, **kw)
    with pytest.raises(TypeError, match="y_pred"):
        fastbce.hinge(y, np.array([1, 0, 1]), **kw)
    with pytest.raises(ValueError, match="same shape"):
        fastbce.dice(y, x[:2], **kw)
    with pytest.raises(ValueError, match="smooth"):
        fastbce.dice(y, x, smooth=-1.0, **kw)
    with pytest.raises(ValueError, match="alpha"):
        fastbce.tversky(y, x, alpha=np.nan, **kw)
    with pytest.raises(ValueError, match="reduction"):
        fastbce.hinge(y, x, reduction="avg", **kw)
    with pytest.raises(ValueError, match="out must have"):
        fastbce.hinge_grad(y, x, out=np.empty(2), **kw)
    # masked elements are not checked
    assert fastbce.hinge(np.array([0.0, 0.5]), np.array([0.0, 0.0]), mask=np.array([True, False]),
                         **kw) == 1.0
