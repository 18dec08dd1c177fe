"""Extreme inputs: probabilities on and beyond the clip bounds, huge and infinite logits, NaN under
every nan_policy. Values are checked by hand, not just 'no crash'."""

import numpy as np
import pytest

import fastbce
from helpers import check

LOG_EPS = -np.log(1e-7)  # the loss of a fully wrong prediction, clipped at eps = 1e-7


@pytest.mark.parametrize("p_dtype", [np.float64, np.float32])
def test_probabilities_at_and_beyond_the_bounds(backend, p_dtype):
    p = np.array([0.0, 1.0, 1e-30, 1 - 1e-16, 1e-7, 1 - 1e-7, 0.5], dtype=p_dtype)
    for label in (0.0, 1.0, 0.5):
        y = np.full(p.shape, label, p_dtype)  # same dtype: no extra Numba signature
        check(backend, y, p, reduction="none")
        check(backend, y, p, reduction="mean")
    if p_dtype != np.float64:
        return
    y = np.ones(7)
    losses = fastbce.bce(y, p, backend=backend, reduction="none")
    # p = 0 and 1e-30 clip to eps; p = 1 and 1 - 1e-16 clip to 1 - eps
    np.testing.assert_allclose(losses[[0, 2]], LOG_EPS, rtol=1e-14)
    np.testing.assert_allclose(losses[[1, 3]], -np.log(1.0 - 1e-7), rtol=1e-12)  # q = 1 - eps rounded
    assert np.isfinite(fastbce.bce(np.zeros(7), p, backend=backend, reduction="none")).all()
    grad = fastbce.bce_grad(y, p, backend=backend, reduction="none")
    # zero outside [eps, 1-eps]; inclusive bounds: exactly eps and 1-eps still have a gradient
    assert (grad[:4] == 0.0).all()
    assert grad[4] == pytest.approx(-1e7, rel=1e-12)
    assert grad[5] == pytest.approx(-1.0 / (1.0 - 1e-7), rel=1e-12)
    assert grad[6] == pytest.approx(-2.0, rel=1e-14)


# The clip bounds of eps = 1e-7 and 0.1, rounded to float32 (float32 and float16 predictions) and
# to float64: [float32(eps), float32(1 - eps)] and [eps, 1 - eps]
ROUNDED_BOUNDS = {
    (1e-7, np.float32): (1.0000000116860974e-07, 1.0 - 2.0 ** -23),
    (0.1, np.float32): (0.10000000149011612, 0.8999999761581421),
    (1e-7, np.float64): (1e-7, 0.9999999),
    (0.1, np.float64): (0.1, 0.9),
}


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("eps", [1e-7, 0.1])
def test_clip_bounds_are_rounded_to_the_prediction_dtype(backend, dtype, eps):
    """p is clipped to [lo, hi] = [eps, 1 - eps] rounded to y_pred's dtype (float16: the float32
    bounds): the loss beyond a bound is the loss at the rounded bound, the gradient is 0 beyond it
    and the derivative at and inside it. p = 0 and 1 are clipped, and so are the neighbours of the
    bounds outside them; element losses, gradients and sums (the fast path for float32/float64)."""
    lo, hi = ROUNDED_BOUNDS[eps, np.float64 if dtype == np.float64 else np.float32]
    t = np.dtype(dtype).type
    near_lo, near_hi = t(lo), t(hi)  # the neighbours of the bounds among p's dtype's values
    below_lo = near_lo if float(near_lo) < lo else np.nextafter(near_lo, t(0))
    at_lo = near_lo if float(near_lo) >= lo else np.nextafter(near_lo, t(1))
    at_hi = near_hi if float(near_hi) <= hi else np.nextafter(near_hi, t(0))
    above_hi = near_hi if float(near_hi) > hi else np.nextafter(near_hi, t(1))
    p = np.array([0.0, below_lo, at_lo, 0.5, at_hi, above_hi, 1.0], dtype)
    assert float(p[1]) < lo <= float(p[2]) and float(p[4]) <= hi < float(p[5])
    p64 = p.astype(np.float64)
    q = np.clip(p64, lo, hi)
    inside = (p64 >= lo) & (p64 <= hi)
    assert list(inside) == [False, False, True, True, True, False, False]
    rtol = 1e-12 if dtype == np.float64 else 1e-6
    for label, want_loss, want_grad in ((1, -np.log(q), np.where(inside, -1.0 / q, 0.0)),
                                        (0, -np.log1p(-q), np.where(inside, 1.0 / (1.0 - q), 0.0))):
        y = np.full(p.shape, label, dtype)
        np.testing.assert_allclose(fastbce.bce(y, p, eps=eps, reduction="none", backend=backend),
                                   want_loss, rtol=rtol)
        np.testing.assert_allclose(fastbce.bce_grad(y, p, eps=eps, reduction="none", backend=backend),
                                   want_grad, rtol=rtol)
        y8 = np.full(p.shape, label, np.uint8)  # the fast path's labels
        assert fastbce.bce(y8, p, eps=eps, reduction="sum", backend=backend) == pytest.approx(
            want_loss.sum(), rel=rtol)
    if eps == 1e-7 and dtype != np.float64:
        # a confident wrong prediction costs -log(2^-23) = 15.94 (not -log(1e-7) = 16.12)
        loss = fastbce.bce(np.zeros(1, np.uint8), np.ones(1, dtype), reduction="sum", backend=backend)
        assert loss == pytest.approx(23 * np.log(2.0), rel=1e-6)


def test_eps_rule_follows_the_prediction_dtype(backend):
    """The rounded bounds must satisfy 0 < lo < hi < 1: eps = 1e-8 is valid for float64 predictions
    only (1 - 1e-8 rounds to 1 in float32); from logits eps is not used."""
    y = np.array([0, 1], np.uint8)
    assert fastbce.bce(y, np.array([1.0, 0.0]), eps=1e-8, backend=backend) == pytest.approx(
        -np.log(1e-8), rel=1e-7)  # q = 1 - eps rounded: 1 - q is 1e-8 to 1e-8
    for dtype in (np.float16, np.float32):
        with pytest.raises(ValueError, match=r"eps=1e-08 does not fit y_pred's dtype"):
            fastbce.bce(y, np.array([1.0, 0.0], dtype), eps=1e-8, backend=backend)
        assert fastbce.bce(y, np.array([-3.0, 3.0], dtype), eps=1e-8, from_logits=True,
                           backend=backend) == pytest.approx(np.log1p(np.exp(-3.0)), rel=1e-6)


def test_exactly_eps_in_every_float_dtype(backend):
    """eps = 2**-10 is exact in float16/32/64: p = eps and p = 1 - eps lie inside the clip range."""
    eps = 2.0 ** -10
    for dtype in (np.float16, np.float32, np.float64):
        p = np.array([eps, 1 - eps, eps / 2, 1 - eps / 4], dtype=dtype)
        y = np.array([1.0, 0.0, 1.0, 0.0], dtype=dtype)
        grad = fastbce.bce_grad(y, p, eps=eps, backend=backend, reduction="none")
        np.testing.assert_allclose(grad, [-1 / eps, 1 / eps, 0.0, 0.0], rtol=1e-6)
        losses = fastbce.bce(y, p, eps=eps, backend=backend, reduction="none")
        np.testing.assert_allclose(losses, -np.log(eps), rtol=1e-6)


@pytest.mark.parametrize("p_dtype", [np.float64, np.float32])
def test_extreme_logits(backend, p_dtype):
    big = np.finfo(p_dtype).max
    x = np.array([1e4, -1e4, np.inf, -np.inf, big, -big, 0.0], dtype=p_dtype)
    for label in (0.0, 1.0, 0.5):
        y = np.full(x.shape, label, p_dtype)
        check(backend, y, x, from_logits=True, reduction="none")
        check(backend, y, x, from_logits=True, reduction="none", pos_weight=2.0)
    # by hand: y = 0 -> softplus(x); y = 1 -> softplus(-x); the limit at ±inf, never NaN
    loss0 = fastbce.bce(np.zeros(7, p_dtype), x, from_logits=True, backend=backend, reduction="none")
    np.testing.assert_array_equal(loss0[[0, 1, 2, 3, 5]], [1e4, 0.0, np.inf, 0.0, 0.0])
    assert loss0[4] == np.float64(big).astype(loss0.dtype) and loss0[6] == pytest.approx(np.log(2))
    loss1 = fastbce.bce(np.ones(7, p_dtype), x, from_logits=True, backend=backend, reduction="none")
    np.testing.assert_array_equal(loss1[[0, 1, 2, 3, 4]], [0.0, 1e4, 0.0, np.inf, 0.0])
    half = fastbce.bce(np.full(7, 0.5, p_dtype), x, from_logits=True, backend=backend, reduction="none")
    np.testing.assert_allclose(half[[0, 1, 4, 5]], [5e3, 5e3, big / 2, big / 2], rtol=1e-6)
    assert (half[[2, 3]] == np.inf).all()
    grad1 = fastbce.bce_grad(np.ones(7, p_dtype), x, from_logits=True, pos_weight=3.0, backend=backend,
                             reduction="none")
    np.testing.assert_array_equal(grad1[:6], [0.0, -3.0, 0.0, -3.0, 0.0, -3.0])
    assert grad1[6] == pytest.approx(-1.5)
    # reductions over infinite losses are infinite, not NaN
    assert fastbce.bce(np.zeros(7, p_dtype), x, from_logits=True, backend=backend) == np.inf
    assert fastbce.bce(np.ones(3, p_dtype), x[[0, 2, 4]], from_logits=True, backend=backend) == 0.0


def test_huge_logits_are_finite(backend):
    """|x| up to float max: finite losses and gradients wherever the limit is finite."""
    x = np.array([-1e308, -1e4, -745.2, -40.0, 40.0, 745.2, 1e4, 1e308])
    for label in (0.0, 0.25, 1.0):
        y = np.full(x.shape, label)
        assert np.isfinite(fastbce.bce(y, x, from_logits=True, backend=backend, reduction="none")).all()
        grad = fastbce.bce_grad(y, x, from_logits=True, backend=backend, reduction="none")
        assert np.isfinite(grad).all() and (np.abs(grad) <= 1.0).all()
        check(backend, y, x, from_logits=True, reduction="sum")


NAN_Y = (3, 1)  # positions of a NaN label and a NaN prediction in a (6, 4) array
NAN_P = (4, 2)


def _nan_data(rng, p_dtype=np.float64):
    y = (rng.random((6, 4)) < 0.5).astype(p_dtype)
    p = rng.uniform(0.05, 0.95, (6, 4)).astype(p_dtype)
    y[NAN_Y] = np.nan
    p[NAN_P] = np.nan
    return y, p


@pytest.mark.parametrize("p_dtype", [np.float64, np.float32, np.float16])
def test_nan_propagate(backend, rng, p_dtype):
    y, p = _nan_data(rng, p_dtype)
    nan = np.zeros((6, 4), bool)
    nan[NAN_Y] = nan[NAN_P] = True
    assert np.isnan(fastbce.bce(y, p, backend=backend))
    assert np.isnan(fastbce.bce(y, p, backend=backend, reduction="sum"))
    losses = fastbce.bce(y, p, backend=backend, reduction="none")
    assert np.array_equal(np.isnan(losses), nan)
    per_label = fastbce.bce(y, p, backend=backend, axis=0)
    assert np.array_equal(np.isnan(per_label), [False, True, True, False])
    per_sample = fastbce.bce(y, p, backend=backend, axis=1)
    assert np.array_equal(np.isnan(per_sample), [False, False, False, True, True, False])
    groups = np.array([0, 1, 0, 1, 2, 0])
    assert np.array_equal(np.isnan(fastbce.bce(y, p, backend=backend, groups=groups)), [False, True, True])
    for reduction, axis in (("none", None), ("mean", None), ("mean", 0), ("sum", 1)):
        grad = fastbce.bce_grad(y, p, backend=backend, reduction=reduction, axis=axis)
        assert np.array_equal(np.isnan(grad), nan), (reduction, axis)
        check(backend, y, p, reduction=reduction, axis=axis)
    if p_dtype != np.float64:  # (other dtypes: one Numba signature fewer each)
        return
    # a weight of 0 does not hide a NaN; a mask does
    w = np.ones((6, 4))
    w[NAN_Y] = w[NAN_P] = 0.0
    assert np.isnan(fastbce.bce(y, p, sample_weight=w, backend=backend))
    assert np.isfinite(fastbce.bce(y, p, mask=~nan, backend=backend))
    assert not np.isnan(fastbce.bce_grad(y, p, mask=~nan, backend=backend)).any()


def test_nan_label_with_clipped_prediction(backend):
    """A NaN label gives a NaN gradient even where p is clipped (the gradient of a NaN loss)."""
    y = np.array([np.nan, np.nan, 1.0])
    p = np.array([0.0, 0.5, 1.0])
    assert np.isnan(fastbce.bce(y, p, backend=backend, reduction="none")[:2]).all()
    grad = fastbce.bce_grad(y, p, backend=backend, reduction="none")
    assert np.isnan(grad[:2]).all() and grad[2] == 0.0
    grad = fastbce.bce_grad(y, p[[1, 1, 2]] * 0 + 5.0, from_logits=True, backend=backend, reduction="none")
    assert np.isnan(grad[:2]).all()


@pytest.mark.parametrize("p_dtype", [np.float64, np.float32])
def test_nan_raise(backend, rng, p_dtype):
    y, p = _nan_data(rng, p_dtype)
    for function in (fastbce.bce, fastbce.bce_grad, fastbce.bce_value_and_grad):
        with pytest.raises(ValueError, match="NaN"):
            function(y, p, nan_policy="raise", backend=backend)
    only_label = np.nan_to_num(p, nan=0.5)
    with pytest.raises(ValueError, match="y_true or y_pred contains NaN"):
        fastbce.bce(y, only_label, nan_policy="raise", backend=backend, axis=0)
    with pytest.raises(ValueError, match="NaN"):
        fastbce.bce(np.nan_to_num(y), p, nan_policy="raise", backend=backend, groups=np.arange(6))
    if p_dtype != np.float64:
        return
    # masked NaNs are not used, so they do not raise, and the result is the masked one
    mask = ~(np.isnan(y) | np.isnan(p))
    value = fastbce.bce(y, p, nan_policy="raise", mask=mask, backend=backend)
    assert value == fastbce.bce(y, p, mask=mask, backend=backend)
    check(backend, y, p, nan_policy="raise", mask=mask, reduction="mean", axis=0)


@pytest.mark.parametrize("p_dtype", [np.float64, np.float32])
def test_nan_omit(backend, rng, p_dtype):
    """omit treats NaN elements as masked: the same values as with an explicit mask."""
    y, p = _nan_data(rng, p_dtype)
    mask = ~(np.isnan(y) | np.isnan(p))
    w = rng.random((6, 1)) + 0.5
    if p_dtype != np.float64:  # float32: against the oracle only (no full-mask Numba signature)
        for reduction, axis in (("mean", None), ("none", None), ("mean", 0), ("sum", 1)):
            check(backend, y, p, nan_policy="omit", sample_weight=w, reduction=reduction, axis=axis)
        return
    for reduction, axis in (("mean", None), ("sum", None), ("none", None), ("mean", 0), ("mean", 1),
                            ("sum", 0)):
        omitted = fastbce.bce(y, p, nan_policy="omit", sample_weight=w, backend=backend,
                              reduction=reduction, axis=axis)
        masked = fastbce.bce(y, p, mask=mask, sample_weight=w, backend=backend, reduction=reduction,
                             axis=axis)
        np.testing.assert_array_equal(omitted, masked)
        g_omit = fastbce.bce_grad(y, p, nan_policy="omit", sample_weight=w, backend=backend,
                                  reduction=reduction, axis=axis)
        g_mask = fastbce.bce_grad(y, p, mask=mask, sample_weight=w, backend=backend,
                                  reduction=reduction, axis=axis)
        np.testing.assert_allclose(g_omit, g_mask, rtol=1e-6 if p_dtype == np.float32 else 1e-14)
        assert (g_omit[~mask] == 0).all()
        check(backend, y, p, nan_policy="omit", sample_weight=w, reduction=reduction, axis=axis)
    groups = np.array([0, 1, 0, 1, 2, 0])
    np.testing.assert_array_equal(fastbce.bce(y, p, nan_policy="omit", groups=groups, backend=backend),
                                  fastbce.bce(y, p, mask=mask, groups=groups, backend=backend))


def test_nan_omit_everything(backend):
    """All elements NaN and omitted: the mean is NaN (zero total weight), the sum 0, the gradient 0."""
    y = np.full((3, 2), np.nan)
    p = np.full((3, 2), 0.5)
    assert np.isnan(fastbce.bce(y, p, nan_policy="omit", backend=backend))
    assert fastbce.bce(y, p, nan_policy="omit", reduction="sum", backend=backend) == 0.0
    assert (fastbce.bce_grad(y, p, nan_policy="omit", backend=backend) == 0).all()
    assert (fastbce.bce(y, p, nan_policy="omit", reduction="none", backend=backend) == 0).all()


def test_zero_total_weight(backend):
    """A mean over zero total weight is NaN (not an error) and its gradient is 0."""
    y, p = np.ones((4, 3)), np.full((4, 3), 0.3)
    w = np.zeros((4, 3))
    assert np.isnan(fastbce.bce(y, p, sample_weight=w, backend=backend))
    assert fastbce.bce(y, p, sample_weight=w, reduction="sum", backend=backend) == 0.0
    assert (fastbce.bce_grad(y, p, sample_weight=w, backend=backend) == 0).all()
    assert np.isnan(fastbce.bce(y, p, mask=np.zeros((4, 3), bool), axis=1, backend=backend)).all()
    value, grad = fastbce.bce_value_and_grad(y, p, mask=np.zeros(3, bool), axis=0, backend=backend)
    assert np.isnan(value).all() and (grad == 0).all()


def test_every_float16_value(backend):
    """All 65536 float16 bit patterns as logits, and every float16 label in [0, 1]: the kernels'
    float16 decoding (subnormals, ±0, ±inf, NaN) against NumPy's."""
    x = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    y = np.zeros(x.shape, np.float16)
    y[1::2] = 1.0
    check(backend, y, x, from_logits=True, reduction="none")
    check(backend, y, x, from_logits=True, reduction="sum", nan_policy="omit")
    with pytest.raises(ValueError, match="NaN"):
        fastbce.bce(y, x, from_logits=True, nan_policy="raise", backend=backend)
    labels = np.arange(0x3C01, dtype=np.uint16).view(np.float16)  # +0 up to 1.0, subnormals included
    labels = np.concatenate([labels, -labels[:1]])  # and -0
    p = np.full(labels.shape, 0.25, np.float16)
    check(backend, labels, p, reduction="none")
    check(backend, labels, p, reduction="mean")
    with pytest.raises(ValueError, match="y_true has values outside"):
        fastbce.bce(np.array([0.0, -2.0 ** -24], np.float16), np.array([0.5, 0.5], np.float16),
                    backend=backend)


@pytest.mark.parametrize("weight", [1e-300, 1e-40, 1e36])
def test_nan_omit_mean_gradient_with_extreme_weights(backend, weight):
    """omit + mean on float32 data: the gradient w·g/Σw is of order 1/n whatever the scale of w, so
    it must not underflow or overflow float32 on the way (the omit path learns Σw after the pass)."""
    rng = np.random.default_rng(3)
    y = (rng.random((300, 4)) < 0.5).astype(np.uint8)
    p = rng.uniform(1e-7, 1.0 - 1e-7, (300, 4)).astype(np.float32)
    p[::7, 1] = np.nan
    w = np.full((300, 4), weight)
    mask = ~np.isnan(p)
    for axis in (None, 0, 1):
        omitted = fastbce.bce_grad(y, p, sample_weight=w, nan_policy="omit", axis=axis, backend=backend)
        masked = fastbce.bce_grad(y, p, sample_weight=w, mask=mask, axis=axis, backend=backend)
        assert np.isfinite(masked).all() and np.abs(masked).max() > 0
        np.testing.assert_allclose(omitted, masked, rtol=1e-5, atol=0)
