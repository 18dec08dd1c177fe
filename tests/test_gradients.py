"""Gradients: central finite differences of ``bce`` itself, the fused call, and ``out=``."""

import numpy as np
import pytest

import fastbce
from helpers import make_labels, same

SHAPE = (6, 4)
H = 1e-6  # central differences: truncation ~H², rounding ~1e-16/H


def _numerical_gradient(y, v, options, backend):
    """d sum(bce(...)) / d y_pred by central differences, one element at a time (float64)."""
    grad = np.zeros_like(v)
    for index in np.ndindex(v.shape):
        plus, minus = v.copy(), v.copy()
        plus[index] += H
        minus[index] -= H
        f_plus = np.sum(fastbce.bce(y, plus, backend=backend, **options))
        f_minus = np.sum(fastbce.bce(y, minus, backend=backend, **options))
        grad[index] = (f_plus - f_minus) / (plus[index] - minus[index])
    return grad


def _data(rng, from_logits):
    y = make_labels(rng, SHAPE, np.float64)
    # interior points, away from the clip bounds (and from 0 for logits with soft labels)
    v = rng.uniform(-4.0, 4.0, SHAPE) if from_logits else rng.uniform(0.05, 0.95, SHAPE)
    return y, v


def _weighted_options(rng):
    mask = rng.random(SHAPE) < 0.8
    mask[0, 0] = False
    return {"sample_weight": rng.uniform(0.1, 2.0, SHAPE), "mask": mask,
            "pos_weight": rng.uniform(0.5, 3.0, SHAPE[1]), "label_smoothing": 0.1}


CASES = [("mean", None), ("sum", None), ("none", None), ("mean", 0), ("sum", 0), ("mean", 1),
         ("sum", 1)]


@pytest.mark.parametrize("reduction, axis", CASES, ids=[f"{r}-axis{a}" for r, a in CASES])
@pytest.mark.parametrize("from_logits", [False, True], ids=["prob", "logits"])
@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weighted"])
def test_finite_differences(backend, rng, reduction, axis, from_logits, weighted):
    y, v = _data(rng, from_logits)
    options = {"from_logits": from_logits, "reduction": reduction, "axis": axis}
    if weighted:
        options.update(_weighted_options(rng))
    analytic = fastbce.bce_grad(y, v, backend=backend, **options)
    numeric = _numerical_gradient(y, v, options, backend)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)
    if weighted:
        assert analytic[0, 0] == 0.0  # masked
    assert np.abs(analytic).max() > 1e-3  # not trivially zero


@pytest.mark.parametrize("axis", [None, 0, 1])
def test_finite_differences_nan_omit(backend, rng, axis):
    """With nan_policy='omit' the mean's denominator excludes the NaN elements."""
    y, v = _data(rng, False)
    y[2, 1] = np.nan
    v[4, 3] = np.nan
    options = {"nan_policy": "omit", "axis": axis, "sample_weight": rng.uniform(0.5, 1.5, (6, 1))}
    analytic = fastbce.bce_grad(y, v, backend=backend, **options)
    numeric = np.nan_to_num(_numerical_gradient(y, v, options, backend))
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)
    assert analytic[2, 1] == 0.0 and analytic[4, 3] == 0.0


def test_gradient_outside_the_clip_range_is_zero(backend, rng):
    """The derivative of the clipped loss: 0 where p is clipped, whatever the weights."""
    y = make_labels(rng, (10,), np.float64)
    p = np.array([0.0, 1e-9, 1e-8, 1.0, 1 - 1e-9, 0.5, 0.2, 1e-3, 0.999, 0.7])
    grad = fastbce.bce_grad(y, p, eps=1e-7, backend=backend, sample_weight=np.arange(1.0, 11.0),
                            reduction="sum")
    assert (grad[:5] == 0).all() and (grad[5:] != 0).all()
    # the clipped loss is flat there: the same loss for every clipped p
    losses = fastbce.bce(np.ones(4), np.array([0.0, 1e-9, 1e-8, 1e-7]), backend=backend, reduction="none")
    assert (losses == losses[3]).all()


@pytest.mark.parametrize("reduction, axis", CASES, ids=[f"{r}-axis{a}" for r, a in CASES])
def test_value_and_grad_equals_separate_calls(backend, rng, reduction, axis):
    y = make_labels(rng, (300, 7), np.uint8)
    v = rng.standard_normal((300, 7)).astype(np.float32)
    v[::11, 2] = np.nan
    for options in ({"from_logits": True},
                    {"from_logits": True, "pos_weight": np.linspace(0.5, 2, 7), "nan_policy": "omit",
                     "mask": rng.random((300, 7)) < 0.9, "sample_weight": rng.random((300, 1))}):
        value, grad = fastbce.bce_value_and_grad(y, v, backend=backend, reduction=reduction,
                                                 axis=axis, **options)
        assert same(value, fastbce.bce(y, v, backend=backend, reduction=reduction, axis=axis, **options))
        assert same(grad, fastbce.bce_grad(y, v, backend=backend, reduction=reduction, axis=axis,
                                           **options))


@pytest.mark.parametrize("p_dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("ndim", [1, 2])
def test_out(backend, rng, p_dtype, ndim):
    shape = (50,) if ndim == 1 else (25, 4)
    y = make_labels(rng, shape, p_dtype)
    p = rng.uniform(0.01, 0.99, shape).astype(p_dtype)
    out_dtype = np.float64 if p_dtype == np.float64 else np.float32
    expected = fastbce.bce_grad(y, p, backend=backend, reduction="sum")
    out = np.full(shape, np.nan, out_dtype)
    result = fastbce.bce_grad(y, p, backend=backend, reduction="sum", out=out)
    assert result is out
    np.testing.assert_array_equal(out, expected)
    out2 = np.full(shape, np.nan, out_dtype)
    value, result = fastbce.bce_value_and_grad(y, p, backend=backend, out=out2)
    assert result is out2 and value == fastbce.bce(y, p, backend=backend)
    np.testing.assert_array_equal(out2, fastbce.bce_grad(y, p, backend=backend))


def test_out_strided(backend, rng):
    """A non-contiguous out (a column slice of a bigger array) is written in place, nothing else."""
    y = make_labels(rng, (40, 5), np.float64)
    p = rng.uniform(0.01, 0.99, (40, 5))
    big = np.full((40, 10), -7.0)
    out = big[:, ::2]
    fastbce.bce_grad(y, p, backend=backend, out=out, axis=0, nan_policy="omit")
    np.testing.assert_array_equal(out, fastbce.bce_grad(y, p, backend=backend, axis=0, nan_policy="omit"))
    assert (big[:, 1::2] == -7.0).all()


def test_bad_out(backend, rng):
    y = make_labels(rng, (10, 3), np.float32)
    p = rng.uniform(0.01, 0.99, (10, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="out must have shape"):
        fastbce.bce_grad(y, p, backend=backend, out=np.empty((10, 4), np.float32))
    with pytest.raises(ValueError, match="out must have shape .* and dtype float32"):
        fastbce.bce_grad(y, p, backend=backend, out=np.empty((10, 3), np.float64))
    with pytest.raises(ValueError, match="out must have shape"):
        fastbce.bce_grad(y, p, backend=backend, out=np.empty(30, np.float32))
    with pytest.raises(ValueError, match="out must have shape .* and dtype float32"):
        fastbce.bce_grad(y, p.astype(np.float16), backend=backend, out=np.empty((10, 3), np.float16))
    readonly = np.empty((10, 3), np.float32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        fastbce.bce_grad(y, p, backend=backend, out=readonly)
    with pytest.raises(TypeError, match="out must be a NumPy array"):
        fastbce.bce_grad(y, p, backend=backend, out=[[0.0] * 3] * 10)
    with pytest.raises(ValueError, match="out must have shape"):
        fastbce.bce_value_and_grad(y, p, backend=backend, out=np.empty((3, 10), np.float32))
