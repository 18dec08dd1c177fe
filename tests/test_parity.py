"""Parity with PyTorch, Keras and scikit-learn where their conventions coincide with fastbce's.

Where they differ (so the tests below stay inside the common ground):
- PyTorch ``binary_cross_entropy`` does not clip p; it clamps each log term at -100 instead, so for
  p = 0 or 1 it gives 100 where fastbce gives the loss at the clip bound. The tests keep p in [0.01, 0.99], where
  neither the clamp nor our clipping (eps = 1e-7) acts.
- PyTorch's ``reduction="mean"`` divides the weighted sum by the number of elements; fastbce's
  weighted mean divides by the sum of the weights. They agree without weights; with weights we
  compare sums, and the weighted mean as sum / Σw.
- PyTorch's gradient on probabilities is ``(p - y) / max(p(1-p), 1e-12)``; ours is the derivative
  of the clipped loss (0 where p is clipped). They agree inside the clip bounds.
- PyTorch has no label smoothing or mask: smoothing is applied to the targets by hand, a mask is a
  weight of 0 (which in PyTorch still counts in the mean's denominator, hence sums again).
- Keras and scikit-learn clip in y_pred's dtype, as fastbce: Keras' own test values at the clip
  bounds are reproduced at the end of this file.
- scikit-learn ``log_loss`` clips to the machine epsilon of y_pred's dtype (we pass that as eps),
  accepts only hard labels and one output, and its weighted mean is Σ w·l / Σ w like ours.
"""

import numpy as np
import pytest

import fastbce

torch = pytest.importorskip("torch")
F = torch.nn.functional

SHAPE = (503, 7)


def _t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def _torch_loss_and_grad(function, target, value, reduction, **kwargs):
    v = _t(value).clone().requires_grad_(True)
    loss = function(v, _t(target), reduction=reduction, **{k: _t(a) for k, a in kwargs.items()})
    loss.sum().backward()
    return loss.detach().numpy(), v.grad.numpy()


def _data(rng, dtype, logits=False, soft=False):
    y = rng.random(SHAPE) if soft else (rng.random(SHAPE) < 0.4).astype(np.float64)
    v = rng.normal(0, 5, SHAPE) if logits else rng.uniform(0.01, 0.99, SHAPE)
    return y.astype(dtype), v.astype(dtype)


def _f64(a):
    """Weights passed to fastbce as float64 (the same values as PyTorch's float32 ones): float64
    weights with float32 data are one Numba signature that the other tests compile anyway."""
    return a.astype(np.float64)


TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=2e-5, atol=1e-6)}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
def test_torch_binary_cross_entropy(backend, rng, dtype, soft):
    y, p = _data(rng, dtype, soft=soft)
    w = rng.uniform(0.0, 2.0, SHAPE).astype(dtype)
    tol = TOL[dtype]
    # unweighted: every reduction, values and autograd gradients
    for reduction in ("mean", "sum", "none"):
        expected, expected_grad = _torch_loss_and_grad(F.binary_cross_entropy, y, p, reduction)
        value, grad = fastbce.bce_value_and_grad(y, p, reduction=reduction, backend=backend)
        np.testing.assert_allclose(value, expected, **tol)
        np.testing.assert_allclose(grad, expected_grad, rtol=tol["rtol"], atol=tol["atol"] * 1e3)
    # weighted: element losses and sums agree; our mean is the sum over Σw
    for reduction in ("sum", "none"):
        expected, expected_grad = _torch_loss_and_grad(F.binary_cross_entropy, y, p, reduction, weight=w)
        value, grad = fastbce.bce_value_and_grad(y, p, sample_weight=_f64(w), reduction=reduction,
                                                 backend=backend)
        np.testing.assert_allclose(value, expected, **tol)
        np.testing.assert_allclose(grad, expected_grad, rtol=tol["rtol"], atol=tol["atol"] * 1e3)
    torch_sum = float(F.binary_cross_entropy(_t(p), _t(y), weight=_t(w), reduction="sum"))
    assert fastbce.bce(y, p, sample_weight=_f64(w), backend=backend) == pytest.approx(
        torch_sum / w.astype(np.float64).sum(), rel=tol["rtol"])
    # a per-label weight broadcasts the same way in both
    w_label = rng.uniform(0.5, 2.0, SHAPE[1]).astype(dtype)
    expected, _ = _torch_loss_and_grad(F.binary_cross_entropy, y, p, "none", weight=w_label)
    np.testing.assert_allclose(fastbce.bce(y, p, sample_weight=_f64(w_label), reduction="none",
                                           backend=backend), expected, **tol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
def test_torch_binary_cross_entropy_with_logits(backend, rng, dtype, soft):
    y, x = _data(rng, dtype, logits=True, soft=soft)
    x.flat[:4] = [1e4, -1e4, 40.0, -40.0]
    w = rng.uniform(0.0, 2.0, SHAPE).astype(dtype)
    pw = rng.uniform(0.2, 4.0, SHAPE[1]).astype(dtype)
    tol = TOL[dtype]
    for reduction in ("mean", "sum", "none"):
        for kwargs in ({}, {"pos_weight": pw}):
            expected, expected_grad = _torch_loss_and_grad(F.binary_cross_entropy_with_logits, y, x,
                                                           reduction, **kwargs)
            value, grad = fastbce.bce_value_and_grad(y, x, from_logits=True, reduction=reduction,
                                                     backend=backend,
                                                     **{k: _f64(a) for k, a in kwargs.items()})
            np.testing.assert_allclose(value, expected, **tol)
            np.testing.assert_allclose(grad, expected_grad, **tol)
    for reduction in ("sum", "none"):
        expected, expected_grad = _torch_loss_and_grad(F.binary_cross_entropy_with_logits, y, x,
                                                       reduction, weight=w, pos_weight=pw)
        value, grad = fastbce.bce_value_and_grad(y, x, from_logits=True, sample_weight=_f64(w),
                                                 pos_weight=_f64(pw), reduction=reduction,
                                                 backend=backend)
        np.testing.assert_allclose(value, expected, **tol)
        np.testing.assert_allclose(grad, expected_grad, **tol)


def test_torch_label_smoothing_and_mask(backend, rng):
    """Keras-style smoothing equals PyTorch on smoothed targets; a mask equals a weight of 0 (sums)."""
    y, x = _data(rng, np.float64, logits=True)
    s = 0.2
    mask = rng.random(SHAPE) < 0.7
    pw = rng.uniform(0.2, 4.0, SHAPE[1])
    expected, expected_grad = _torch_loss_and_grad(
        F.binary_cross_entropy_with_logits, y * (1 - s) + s / 2, x, "sum", weight=mask.astype(np.float64),
        pos_weight=pw)
    value, grad = fastbce.bce_value_and_grad(y, x, from_logits=True, label_smoothing=s, mask=mask,
                                             pos_weight=pw, reduction="sum", backend=backend)
    np.testing.assert_allclose(value, expected, rtol=1e-10)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-10, atol=1e-12)
    # torch's mean divides by all elements, ours by the unmasked ones
    torch_mean = float(F.binary_cross_entropy_with_logits(
        _t(x), _t(y * (1 - s) + s / 2), weight=_t(mask.astype(np.float64)), pos_weight=_t(pw)))
    ours = fastbce.bce(y, x, from_logits=True, label_smoothing=s, mask=mask, pos_weight=pw,
                       backend=backend)
    assert ours == pytest.approx(torch_mean * mask.size / mask.sum(), rel=1e-10)


def test_torch_per_axis_means(backend, rng):
    """axis=0 / axis=1 means equal PyTorch's element losses averaged along that axis."""
    y, p = _data(rng, np.float64, soft=True)
    losses = F.binary_cross_entropy(_t(p), _t(y), reduction="none").numpy()
    np.testing.assert_allclose(fastbce.bce(y, p, axis=0, backend=backend), losses.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(fastbce.bce(y, p, axis=1, backend=backend), losses.mean(axis=1), rtol=1e-10)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sklearn_log_loss(backend, rng, dtype):
    metrics = pytest.importorskip("sklearn.metrics")
    n = 10_001
    y = (rng.random(n) < 0.3).astype(np.int64)
    p = rng.random(n).astype(dtype)
    p[:4] = [0.0, 1.0, 1e-30, 1.0 - 1e-16]  # clipped identically by both (eps = machine epsilon)
    w = rng.uniform(0.0, 3.0, n)
    eps = float(np.finfo(dtype).eps)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    y8 = y.astype(np.uint8 if dtype == np.float32 else np.float64)  # the dtype pairs compiled anyway
    assert fastbce.bce(y8, p, eps=eps, backend=backend) == pytest.approx(
        metrics.log_loss(y, p), rel=rtol)
    assert fastbce.bce(y8, p, eps=eps, sample_weight=w, backend=backend) == pytest.approx(
        metrics.log_loss(y, p, sample_weight=w), rel=rtol)
    assert fastbce.bce(y8, p, eps=eps, sample_weight=w, reduction="sum", backend=backend) == pytest.approx(
        metrics.log_loss(y, p, sample_weight=w, normalize=False), rel=rtol)


def test_sklearn_log_loss_per_label(backend, rng):
    """axis=0 on (n_samples, n_labels) is log_loss per label column, with per-sample weights."""
    metrics = pytest.importorskip("sklearn.metrics")
    y = (rng.random(SHAPE) < 0.5).astype(np.float64)
    p = rng.random(SHAPE)
    w = rng.uniform(0.1, 2.0, SHAPE[0])
    eps = float(np.finfo(np.float64).eps)
    ours = fastbce.bce(y, p, eps=eps, sample_weight=w[:, None], axis=0, backend=backend)
    theirs = [metrics.log_loss(y[:, j], p[:, j], sample_weight=w, labels=[0, 1]) for j in range(SHAPE[1])]
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)


# ---- Keras and scikit-learn at the clip bounds: both clip in the prediction's dtype ---------------
# Keras' own test cases, from keras-team/keras keras/src/losses/losses_test.py
# (BinaryCrossentropyTest.test_all_correct_unweighted / test_unweighted / test_scalar_weighted /
# test_sample_weighted, BinaryFocalCrossentropyTest.test_all_correct_unweighted / test_unweighted /
# test_scalar_weighted / test_sample_weighted / test_no_reduction): their inputs and expected values,
# Keras' default epsilon 1e-7. Keras' reduction "sum_over_batch_size" divides the weighted sum by the
# number of elements (a scalar weight scales the mean), its per-sample values are means over the last
# axis. The cross-entropy values are checked to one unit of their last quoted digit (tighter than
# Keras' own assertAlmostEqual), the focal ones to Keras' own tolerance.
_KERAS_SATURATED_TRUE = np.array([1, 0, 1, 0]).reshape([2, 2])
_KERAS_SATURATED_PRED = np.array([1, 1, 1, 0], dtype=np.float32).reshape([2, 2])
_KERAS_FOCAL_PRED = np.asarray([0.9, 0.8, 0.7, 0.2], dtype=np.float32).reshape([2, 2])
_KERAS_IDENTITY = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype="float32")


def _keras_sum_over_batch_size(function, y, p, sample_weight, **options):
    return function(y, p, sample_weight=sample_weight, reduction="sum", **options) / p.size


def test_keras_binary_crossentropy_cases(backend):
    """Predictions of exactly 0 and 1 against the opposite label cost -log(2^-23) = 15.94 in
    float32 (Keras clips to [float32(1e-7), float32(1 - 1e-7)] = [1e-7, 1 - 2^-23]): the values
    Keras' tests expect, which bounds formed in float64 miss by 1%."""
    y, p = _KERAS_SATURATED_TRUE, _KERAS_SATURATED_PRED
    assert fastbce.bce(y, p, backend=backend) == pytest.approx(3.98559, abs=1e-5)
    assert _keras_sum_over_batch_size(fastbce.bce, y, p, 2.3, backend=backend) == pytest.approx(
        9.1668, abs=1e-4)
    sample_weight = np.array([1.2, 3.4]).reshape((2, 1))
    assert _keras_sum_over_batch_size(fastbce.bce, y, p, sample_weight,
                                      backend=backend) == pytest.approx(4.7827, abs=1e-4)
    # BinaryCrossentropyTest.test_unweighted, its first case, and test_all_correct_unweighted
    y_pred = np.array([[0.9, 0.1, 0.2], [0.3, 0.8, 0.1], [0.1, 0.2, 0.7]], dtype="float32")
    assert fastbce.bce(_KERAS_IDENTITY, y_pred, backend=backend) == pytest.approx(0.20046903, rel=1e-6)
    assert fastbce.bce(_KERAS_IDENTITY, _KERAS_IDENTITY, backend=backend) == pytest.approx(0.0, abs=1e-3)


def test_keras_binary_focal_crossentropy_cases(backend):
    """BinaryFocalCrossentropy(gamma=...) without class balancing: fastbce's focal_bce with
    alpha=None. All correct (saturated), unweighted, scalar and per-sample weights, per sample.
    Keras checks these to 3 decimals (0.34415 is 0.344201 to 6), the per-sample values to 1e-6."""
    assert fastbce.focal_bce(_KERAS_IDENTITY, _KERAS_IDENTITY, gamma=1.5,
                             backend=backend) == pytest.approx(0.0, abs=1e-3)
    y, p = _KERAS_SATURATED_TRUE, _KERAS_FOCAL_PRED
    assert fastbce.focal_bce(y, p, gamma=2.0, backend=backend) == pytest.approx(0.268, abs=1e-3)
    assert _keras_sum_over_batch_size(fastbce.focal_bce, y, p, 1.23, gamma=2.0,
                                      backend=backend) == pytest.approx(0.3296, abs=1e-3)
    sample_weight = np.array([1.2, 3.4]).reshape((2, 1))
    assert _keras_sum_over_batch_size(fastbce.focal_bce, y, p, sample_weight, gamma=2.0,
                                      backend=backend) == pytest.approx(0.34415, abs=1e-3)
    np.testing.assert_allclose(fastbce.focal_bce(y, p, gamma=2.0, axis=1, backend=backend),
                               (0.515547, 0.020513), atol=1e-6)


@pytest.mark.parametrize("case", ["keras-saturated", "random-with-extremes"])
def test_sklearn_log_loss_float32_at_the_bounds(backend, rng, case):
    """scikit-learn's log_loss clips float32 predictions with np.clip in float32 to the float32
    machine epsilon: with eps=np.finfo(np.float32).eps fastbce clips to the same bounds, whole
    arrays, weighted, summed and per label."""
    metrics = pytest.importorskip("sklearn.metrics")
    eps = np.finfo(np.float32).eps
    if case == "keras-saturated":
        y, p = _KERAS_SATURATED_TRUE, _KERAS_SATURATED_PRED
    else:
        y = (rng.random((2_001, 3)) < 0.4).astype(np.int64)
        p = rng.random(y.shape).astype(np.float32)
        p.flat[:8] = [0.0, 1.0, 1e-30, 1 - 1e-12, 2.0 ** -24, 1 - 2.0 ** -24, eps, 1 - eps]
    w = rng.uniform(0.5, 2.0, y.shape[0])
    y8 = y.astype(np.uint8)
    assert fastbce.bce(y8.ravel(), p.ravel(), eps=eps, backend=backend) == pytest.approx(
        metrics.log_loss(y.ravel(), p.ravel(), labels=[0, 1]), rel=1e-6)
    ours = fastbce.bce(y8, p, eps=eps, sample_weight=w[:, None], axis=0, backend=backend)
    theirs = [metrics.log_loss(y[:, j], p[:, j], sample_weight=w, labels=[0, 1]) for j in range(y.shape[1])]
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    ours = fastbce.bce(y8, p, eps=eps, sample_weight=w[:, None], axis=0, reduction="sum",
                       backend=backend)
    theirs = [metrics.log_loss(y[:, j], p[:, j], sample_weight=w, normalize=False,
                                 labels=[0, 1])
              for j in range(y.shape[1])]
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
