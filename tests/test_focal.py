"""Focal loss (``focal_bce``, ``focal_bce_grad``, ``focal_bce_value_and_grad``) on every backend.

Checked against an independent float64 NumPy formula written here (in log space, so that it stays
accurate at extreme logits), against PyTorch autograd of the same formula and of torchvision's
``sigmoid_focal_loss``, and by central finite differences of the library's own value.

FL = α_t·(1-p_t)^γ·CE with CE the bce element loss (pos_weight, label smoothing applied),
q = clip(p, eps, 1-eps) or σ(x), p_t = q·y + (1-q)(1-y), α_t = α·y + (1-α)(1-y) (α=None: 1).
"""

import sys

import numpy as np
import pytest

import fastbce
from conftest import BACKENDS, COMPILED_BACKENDS
from oracle import clip_bounds

SHAPE = (6, 4)
# (reduction, axis) combinations every value/gradient check runs through
CASES = [("mean", None), ("sum", None), ("none", None), ("mean", 0), ("sum", 0), ("mean", 1),
         ("sum", 1)]
GAMMA_ALPHA = [(2.0, 0.25), (0.5, None), (1.0, 0.75), (5.0, None)]
VALUE_RTOL = 1e-12
GRAD_RTOL, GRAD_ATOL = 1e-11, 1e-14


# ------------------------------------------------------------------------------------------------
# The float64 reference, written independently of kernels/reference.py
# ------------------------------------------------------------------------------------------------

def _log(a):
    with np.errstate(divide="ignore"):
        return np.log(a)


def focal_elements(y, v, *, gamma, alpha, from_logits=False, eps=1e-7, pos_weight=None,
                   label_smoothing=0.0):
    """(loss, dloss/dv) per element in float64. 1-p_t, (1-p_t)^γ and the derivative of the
    modulation are evaluated through logarithms: finite wherever the limit is, even when 1-p_t
    underflows. At v = ±inf the derivative of the modulation times CE is its limit, 0."""
    lo, hi = clip_bounds(eps, np.asarray(v).dtype)
    v = np.asarray(v, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64) * (1.0 - label_smoothing) + 0.5 * label_smoothing
    pw = np.broadcast_to(np.asarray(1.0 if pos_weight is None else pos_weight, np.float64), v.shape)
    a, b = pw * y, 1.0 - y
    with np.errstate(all="ignore"):
        if from_logits:
            log_q, log_q_bar = -np.logaddexp(0.0, -v), -np.logaddexp(0.0, v)  # log σ(x), log σ(-x)
            d_nll_pos, d_nll_neg = -np.exp(log_q_bar), np.exp(log_q)  # d/dx -log σ(x), -log σ(-x)
            log_dq = log_q + log_q_bar  # log σ'(x)
        else:
            q = np.clip(v, lo, hi)
            inside = (v >= lo) & (v <= hi)
            log_q, log_q_bar = np.log(q), np.log1p(-q)
            d_nll_pos, d_nll_neg = np.where(inside, -1.0 / q, 0.0), np.where(inside, 1.0 / (1.0 - q), 0.0)
            log_dq = np.where(inside, 0.0, -np.inf)
        ce = np.where(a == 0, 0.0, -a * log_q) + np.where(b == 0, 0.0, -b * log_q_bar)
        d_ce = a * d_nll_pos + b * d_nll_neg
        # log(1 - p_t) = log(y·σ(-x) + (1-y)·σ(x)), zero coefficients dropped
        log_omp = np.logaddexp(np.where(y > 0, _log(y) + log_q_bar, -np.inf),
                               np.where(b > 0, _log(b) + log_q, -np.inf))
        modulation = np.ones_like(v) if gamma == 0 else np.exp(gamma * log_omp)
        if gamma == 0:
            d_mod_ce = np.zeros_like(v)
        else:
            d_mod_ce = gamma * (b - y) * np.exp((gamma - 1.0) * log_omp + log_dq) * ce
            d_mod_ce = np.where(np.isinf(v) | (ce == 0), 0.0, d_mod_ce)
        alpha_t = 1.0 if alpha is None else alpha * y + (1.0 - alpha) * b
        loss = alpha_t * modulation * ce
        grad = alpha_t * (modulation * d_ce + d_mod_ce)
        nan = np.isnan(y) | np.isnan(v)
    return np.where(nan, np.nan, loss), np.where(nan, np.nan, grad)


def expected(y, v, *, reduction="mean", axis=None, sample_weight=None, mask=None,
             nan_policy="propagate", groups=None, n_groups=None, gamma=2.0, alpha=None, **options):
    """(value, gradient) that focal_bce / focal_bce_grad must return (gradient None with groups)."""
    loss, grad = focal_elements(y, v, gamma=gamma, alpha=alpha, **options)
    shape = loss.shape
    w = np.broadcast_to(np.asarray(1.0 if sample_weight is None else sample_weight, np.float64), shape)
    counted = np.ones(shape, bool) if mask is None else np.broadcast_to(mask, shape).copy()
    if nan_policy == "omit":
        counted &= ~(np.isnan(np.asarray(y, np.float64)) | np.isnan(np.asarray(v, np.float64)))
    with np.errstate(all="ignore"):
        wl = np.where(counted, w * loss, 0.0)
        wg = np.where(counted, w * grad, 0.0)
        weight = np.where(counted, w, 0.0)
        if reduction == "none":
            return wl, wg
        if groups is not None:
            rows_l = wl.sum(axis=1) if wl.ndim == 2 else wl
            rows_w = weight.sum(axis=1) if wl.ndim == 2 else weight
            size = int(np.max(groups)) + 1 if n_groups is None else n_groups
            total_l, total_w = np.zeros(size), np.zeros(size)
            np.add.at(total_l, groups, rows_l)
            np.add.at(total_w, groups, rows_w)
            return (total_l if reduction == "sum" else total_l / total_w), None
        if wl.ndim == 1:
            axis = None
        total = wl.sum(axis=axis)
        if reduction == "sum":
            return (float(total) if axis is None else total), wg
        total_w = weight.sum(axis=axis)
        scale = np.where(total_w > 0, 1.0 / total_w, 0.0)
        if axis is not None:
            scale = np.expand_dims(scale, axis)
        return (float(total / total_w) if axis is None else total / total_w), wg * scale


def assert_value(actual, wanted, reduction, rtol=VALUE_RTOL, atol=0.0, msg=""):
    if reduction != "none" and np.ndim(wanted) == 0:
        assert type(actual) is float, f"{msg}: a full reduction returns a Python float, got {type(actual)}"
    else:
        assert isinstance(actual, np.ndarray) and actual.dtype == np.float64, msg
    np.testing.assert_allclose(actual, wanted, rtol=rtol, atol=atol, err_msg=msg)


def kw_no_backend(kw):
    return {k: val for k, val in kw.items() if k != "backend"}


def _same(a, b):
    if isinstance(a, float) or isinstance(b, float):
        return type(a) is type(b) and (a == b or (np.isnan(a) and np.isnan(b)))
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


# ------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------

@pytest.fixture
def rng():
    return np.random.default_rng(4004)


def _labels(rng, shape):
    """Soft labels with exact 0s and 1s mixed in."""
    y = rng.random(shape)
    y[rng.random(shape) < 0.3] = 0.0
    y[rng.random(shape) < 0.3] = 1.0
    return y


def _interior(rng, shape, from_logits):
    """Points away from the clip bounds and from the kinks: finite differences are accurate there."""
    return rng.uniform(-4.0, 4.0, shape) if from_logits else rng.uniform(0.05, 0.95, shape)


def _weighted_options(rng, shape=SHAPE):
    mask = rng.random(shape) < 0.8
    mask[0, 0] = False
    return {"sample_weight": rng.uniform(0.1, 2.0, shape), "mask": mask,
            "pos_weight": rng.uniform(0.5, 3.0, shape[1]), "label_smoothing": 0.1}


# ------------------------------------------------------------------------------------------------
# γ = 0, α = None is bce; the α factor alone scales it
# ------------------------------------------------------------------------------------------------

def _option_sets(rng, shape):
    y_nan = _labels(rng, shape)
    y_nan[1, 2] = np.nan
    weighted = _weighted_options(rng, shape)
    return [
        ({}, None),
        ({"from_logits": True}, None),
        (weighted, None),
        ({**weighted, "from_logits": True}, None),
        ({"sample_weight": rng.uniform(0.5, 2.0, (shape[0], 1)), "eps": 1e-3}, None),
        ({"nan_policy": "omit", "from_logits": True}, y_nan),
        ({"nan_policy": "propagate"}, y_nan),
    ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_gamma0_alpha_none_is_bce(backend, rng):
    shape = (40, 3)
    y = _labels(rng, shape)
    for options, y_override in _option_sets(rng, shape):
        yy = y if y_override is None else y_override
        v = rng.normal(0, 3, shape) if options.get("from_logits") else rng.random(shape)
        v[0, :2] = (-np.inf, np.inf) if options.get("from_logits") else (0.0, 1.0)
        for reduction, axis in CASES:
            kw = dict(options, reduction=reduction, axis=axis, backend=backend)
            msg = f"{options.keys()} {reduction} axis={axis}"
            focal = fastbce.focal_bce(yy, v, gamma=0.0, alpha=None, **kw)
            plain = fastbce.bce(yy, v, **kw)
            np.testing.assert_array_equal(focal, plain, err_msg=msg)
            assert type(focal) is type(plain), msg
            np.testing.assert_array_equal(fastbce.focal_bce_grad(yy, v, gamma=0, **kw),
                                          fastbce.bce_grad(yy, v, **kw), err_msg=msg)
        groups = rng.integers(0, 5, shape[0])
        np.testing.assert_array_equal(
            fastbce.focal_bce(yy, v, gamma=0.0, groups=groups, n_groups=6, backend=backend, **options),
            fastbce.bce(yy, v, groups=groups, n_groups=6, backend=backend, **options))


@pytest.mark.parametrize("backend", BACKENDS)
def test_alpha_half_with_gamma0_is_half_bce(backend, rng):
    """α = 0.5 gives α_t = 0.5 for every label: half of bce (finite data), to a few ulp: bce
    takes the fast path (its own vectorised exp and log), focal_bce the general kernel (libm)."""
    y = _labels(rng, SHAPE)
    for from_logits in (False, True):
        v = _interior(rng, SHAPE, from_logits)
        for reduction, axis in CASES:
            kw = dict(from_logits=from_logits, reduction=reduction, axis=axis, backend=backend)
            np.testing.assert_allclose(fastbce.focal_bce(y, v, gamma=0.0, alpha=0.5, **kw),
                                       0.5 * np.asarray(fastbce.bce(y, v, **kw)), rtol=1e-14)
            np.testing.assert_allclose(fastbce.focal_bce_grad(y, v, gamma=0.0, alpha=0.5, **kw),
                                       0.5 * fastbce.bce_grad(y, v, **kw), rtol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
def test_alpha_bounds_select_a_class(backend, rng):
    """α = 1 keeps only the positives' loss, α = 0 only the negatives' (hard labels)."""
    y = (rng.random(50) < 0.4).astype(np.float64)
    p = rng.uniform(0.05, 0.95, 50)
    ones = fastbce.focal_bce(y, p, gamma=2.0, alpha=1.0, reduction="none", backend=backend)
    zeros = fastbce.focal_bce(y, p, gamma=2.0, alpha=0.0, reduction="none", backend=backend)
    no_alpha = fastbce.focal_bce(y, p, gamma=2.0, reduction="none", backend=backend)
    assert (ones[y == 0] == 0).all() and (zeros[y == 1] == 0).all()
    np.testing.assert_allclose(ones[y == 1], no_alpha[y == 1], rtol=1e-15)
    np.testing.assert_allclose(zeros[y == 0], no_alpha[y == 0], rtol=1e-15)
    np.testing.assert_allclose(ones[y == 1], (1 - p[y == 1]) ** 2 * -np.log(p[y == 1]), rtol=1e-13)
    np.testing.assert_allclose(zeros[y == 0], p[y == 0] ** 2 * -np.log1p(-p[y == 0]), rtol=1e-13)


# ------------------------------------------------------------------------------------------------
# Values and gradients against the float64 formula; the fused call; groups
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("gamma, alpha", GAMMA_ALPHA)
@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weighted"])
@pytest.mark.parametrize("from_logits", [False, True], ids=["prob", "logits"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_against_float64_formula(backend, rng, from_logits, weighted, gamma, alpha):
    y = _labels(rng, (30, 4))
    v = rng.normal(0, 4, (30, 4)) if from_logits else rng.random((30, 4))
    if not from_logits:  # on and beyond the clip bounds
        v[0] = (0.0, 1e-9, 1.0, 1 - 1e-9)
        v[1] = (1e-7, 1 - 1e-7, 0.5, 1e-3)
    options = {"from_logits": from_logits, "gamma": gamma, "alpha": alpha}
    if weighted:
        options.update(_weighted_options(rng, (30, 4)))
    for reduction, axis in CASES:
        msg = f"{reduction} axis={axis}"
        value, grad = expected(y, v, reduction=reduction, axis=axis, **options)
        kw = dict(options, reduction=reduction, axis=axis, backend=backend)
        actual = fastbce.focal_bce(y, v, **kw)
        assert_value(actual, value, reduction, msg=msg)
        actual_grad = fastbce.focal_bce_grad(y, v, **kw)
        assert actual_grad.dtype == np.float64 and actual_grad.shape == v.shape
        np.testing.assert_allclose(actual_grad, grad, rtol=GRAD_RTOL, atol=GRAD_ATOL, err_msg=msg)
        both = fastbce.focal_bce_value_and_grad(y, v, **kw)
        assert _same(both[0], actual), f"{msg}: value_and_grad's value differs from focal_bce"
        assert _same(both[1], actual_grad), f"{msg}: value_and_grad's gradient differs"
        if weighted:
            assert actual_grad[0, 0] == 0.0  # masked
    assert np.abs(grad).max() > 1e-3  # not trivially zero
    # per group (value only)
    groups = rng.integers(0, 4, 30)
    groups[groups == 2] = 1  # group 2 is empty: NaN mean, 0 sum
    for reduction in ("mean", "sum"):
        value, _ = expected(y, v, reduction=reduction, groups=groups, n_groups=5, **options)
        actual = fastbce.focal_bce(y, v, reduction=reduction, groups=groups, n_groups=5,
                                   backend=backend, **options)
        np.testing.assert_allclose(actual, value, rtol=VALUE_RTOL, err_msg=reduction)
        assert (np.isnan(actual[[2, 4]]).all() if reduction == "mean" else (actual[[2, 4]] == 0).all())


@pytest.mark.parametrize("backend", BACKENDS)
def test_hand_computed_values(backend):
    """A few elements by hand: no shared code with the library at all."""
    p = np.array([0.9, 0.9, 0.2])
    y = np.array([1.0, 0.0, 0.25])
    losses = fastbce.focal_bce(y, p, gamma=2.0, alpha=0.25, reduction="none", backend=backend)
    one_minus_pt_3 = 0.25 * 0.8 + 0.75 * 0.2
    np.testing.assert_allclose(losses, [
        0.25 * 0.1 ** 2 * -np.log(0.9),
        0.75 * 0.9 ** 2 * -np.log(0.1),
        (0.25 * 0.25 + 0.75 * 0.75) * one_minus_pt_3 ** 2 * -(0.25 * np.log(0.2) + 0.75 * np.log(0.8)),
    ], rtol=1e-14)
    # d/dp of (1-p)^2·(-log p) at y = 1: 2(1-p)·log p - (1-p)^2/p
    grad = fastbce.focal_bce_grad(y[:1], p[:1], gamma=2.0, reduction="sum", backend=backend)
    np.testing.assert_allclose(grad, [2 * 0.1 * np.log(0.9) - 0.1 ** 2 / 0.9], rtol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_policies(backend, rng):
    y = _labels(rng, SHAPE)
    v = _interior(rng, SHAPE, True)
    y[1, 1] = np.nan
    v[3, 2] = np.nan
    nan = np.isnan(y) | np.isnan(v)
    kw = dict(gamma=1.5, alpha=0.3, from_logits=True, backend=backend)
    for reduction, axis in CASES:
        omitted = fastbce.focal_bce(y, v, nan_policy="omit", reduction=reduction, axis=axis, **kw)
        masked = fastbce.focal_bce(y, v, mask=~nan, reduction=reduction, axis=axis, **kw)
        np.testing.assert_array_equal(omitted, masked)
        value, grad = expected(y, v, nan_policy="omit", reduction=reduction, axis=axis, **kw_no_backend(kw))
        assert_value(omitted, value, reduction)
        g = fastbce.focal_bce_grad(y, v, nan_policy="omit", reduction=reduction, axis=axis, **kw)
        np.testing.assert_allclose(g, grad, rtol=GRAD_RTOL, atol=GRAD_ATOL)
        assert (g[nan] == 0).all()
    losses = fastbce.focal_bce(y, v, reduction="none", **kw)
    assert np.array_equal(np.isnan(losses), nan)
    assert np.array_equal(np.isnan(fastbce.focal_bce_grad(y, v, reduction="none", **kw)), nan)
    assert np.isnan(fastbce.focal_bce(y, v, **kw))
    with pytest.raises(ValueError, match="NaN"):
        fastbce.focal_bce(y, v, nan_policy="raise", **kw)


# ------------------------------------------------------------------------------------------------
# Gradients: central finite differences of the library's own value
# ------------------------------------------------------------------------------------------------

H = 1e-6


def _numerical_gradient(y, v, options, backend):
    grad = np.zeros_like(v)
    for index in np.ndindex(v.shape):
        plus, minus = v.copy(), v.copy()
        plus[index] += H
        minus[index] -= H
        f_plus = np.sum(fastbce.focal_bce(y, plus, backend=backend, **options))
        f_minus = np.sum(fastbce.focal_bce(y, minus, backend=backend, **options))
        grad[index] = (f_plus - f_minus) / (plus[index] - minus[index])
    return grad


@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weighted"])
@pytest.mark.parametrize("from_logits", [False, True], ids=["prob", "logits"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_finite_differences(backend, rng, from_logits, weighted):
    y = _labels(rng, SHAPE)
    v = _interior(rng, SHAPE, from_logits)
    for gamma, alpha in ((2.0, 0.25), (0.5, None)):
        for reduction, axis in CASES:
            options = {"from_logits": from_logits, "reduction": reduction, "axis": axis,
                       "gamma": gamma, "alpha": alpha}
            if weighted:
                options.update(_weighted_options(np.random.default_rng(7)))
            analytic = fastbce.focal_bce_grad(y, v, backend=backend, **options)
            numeric = _numerical_gradient(y, v, options, backend)
            np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8,
                                       err_msg=f"gamma={gamma} alpha={alpha} {reduction} axis={axis}")
            assert np.abs(analytic).max() > 1e-3
            if weighted:
                assert analytic[0, 0] == 0.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_outside_the_clip_range_is_zero(backend, rng):
    y = _labels(rng, (8,))
    p = np.array([0.0, 1e-9, 1.0, 1 - 1e-9, 0.5, 0.2, 1e-3, 0.999])
    grad = fastbce.focal_bce_grad(y, p, gamma=2.0, alpha=0.25, reduction="sum", backend=backend)
    assert (grad[:4] == 0).all() and (grad[4:] != 0).all()
    losses = fastbce.focal_bce(np.ones(3), np.array([0.0, 1e-9, 1e-7]), gamma=2.0,
                               reduction="none", backend=backend)
    assert losses[0] == losses[1] == losses[2] == pytest.approx((1 - 1e-7) ** 2 * -np.log(1e-7), rel=1e-14)


# ------------------------------------------------------------------------------------------------
# PyTorch autograd: the same formula, and torchvision's sigmoid_focal_loss
# ------------------------------------------------------------------------------------------------

def torch_focal(y, v, *, gamma, alpha, from_logits, eps=1e-7, sample_weight=None, pos_weight=None,
                label_smoothing=0.0, mask=None, reduction="mean", axis=None):
    """(value, d sum(value) / d v) of the focal loss written in torch, by autograd (float64)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    shape = np.shape(v)
    x = torch.tensor(v, dtype=torch.float64, requires_grad=True)
    t = torch.tensor(y, dtype=torch.float64) * (1 - label_smoothing) + 0.5 * label_smoothing
    pw = torch.tensor(np.broadcast_to(1.0 if pos_weight is None else pos_weight, shape).copy())
    w = torch.tensor(np.broadcast_to(1.0 if sample_weight is None else sample_weight, shape).copy())
    m = torch.tensor(np.broadcast_to(True if mask is None else mask, shape).astype(np.float64))
    if from_logits:
        q, q_bar, log_q, log_q_bar = torch.sigmoid(x), torch.sigmoid(-x), F.logsigmoid(x), F.logsigmoid(-x)
    else:
        q = torch.clamp(x, eps, 1 - eps)
        q_bar, log_q, log_q_bar = 1 - q, torch.log(q), torch.log1p(-q)
    ce = -(pw * t * log_q + (1 - t) * log_q_bar)
    loss = (t * q_bar + (1 - t) * q) ** gamma * ce
    if alpha is not None:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    wl, weight = w * m * loss, w * m
    dims = {} if axis is None else {"dim": axis}
    if reduction == "none":
        out = wl
    elif reduction == "sum":
        out = wl.sum(**dims)
    else:
        out = wl.sum(**dims) / weight.sum(**dims)
    out.sum().backward()
    value = out.detach().numpy()
    return (float(value) if value.ndim == 0 else value), x.grad.numpy()


@pytest.mark.parametrize("gamma, alpha", GAMMA_ALPHA)
@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weighted"])
@pytest.mark.parametrize("from_logits", [False, True], ids=["prob", "logits"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_against_torch_autograd(backend, rng, from_logits, weighted, gamma, alpha):
    y = _labels(rng, SHAPE)
    v = _interior(rng, SHAPE, from_logits)
    options = {"from_logits": from_logits, "gamma": gamma, "alpha": alpha}
    if weighted:
        options.update(_weighted_options(rng))
    for reduction, axis in CASES:
        msg = f"{reduction} axis={axis}"
        value, grad = torch_focal(y, v, reduction=reduction, axis=axis, **options)
        actual, actual_grad = fastbce.focal_bce_value_and_grad(
            y, v, reduction=reduction, axis=axis, backend=backend, **options)
        assert_value(actual, value, reduction, msg=msg)
        np.testing.assert_allclose(actual_grad, grad, rtol=1e-10, atol=1e-14, err_msg=msg)


def torchvision_sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2.0, reduction="none"):
    """torchvision.ops.sigmoid_focal_loss, as torchvision writes it."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    p = torch.sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    if reduction == "mean":
        loss = loss.mean()
    elif reduction == "sum":
        loss = loss.sum()
    return loss


@pytest.mark.parametrize("shape", [(200,), (25, 8)])
@pytest.mark.parametrize("backend", BACKENDS)
def test_against_torchvision_sigmoid_focal_loss(backend, rng, shape):
    torch = pytest.importorskip("torch")
    x = rng.uniform(-6.0, 6.0, shape)
    for y in ((rng.random(shape) < 0.3).astype(np.float64), _labels(rng, shape)):
        for reduction in ("none", "mean", "sum"):
            inputs = torch.tensor(x, requires_grad=True)
            out = torchvision_sigmoid_focal_loss(inputs, torch.tensor(y), 0.25, 2, reduction)
            out.sum().backward()
            value, grad = fastbce.focal_bce_value_and_grad(
                y, x, gamma=2, alpha=0.25, from_logits=True, reduction=reduction, backend=backend)
            np.testing.assert_allclose(value, out.detach().numpy(), rtol=1e-12, err_msg=reduction)
            np.testing.assert_allclose(grad, inputs.grad.numpy(), rtol=1e-10, atol=1e-15, err_msg=reduction)


# ------------------------------------------------------------------------------------------------
# Stability from logits
# ------------------------------------------------------------------------------------------------

GAMMAS = [0.0, 0.5, 1.0, 2.0, 5.0]
ALPHAS = [None, 0.25]


@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_huge_logits(backend, gamma, alpha):
    """|x| = 1e4: the limits by hand. x → +∞: loss → α_t(1-y)^(γ+1)·x, grad → α_t(1-y)^(γ+1);
    x → -∞: loss → α_t·pw·y^(γ+1)·|x|, grad → -α_t·pw·y^(γ+1)."""
    x = np.array([1e4, -1e4] * 3)
    y = np.repeat([0.0, 1.0, 0.3], 2)
    pw = 2.0
    alpha_t = 1.0 if alpha is None else alpha * y + (1 - alpha) * (1 - y)
    kw = dict(gamma=gamma, alpha=alpha, from_logits=True, pos_weight=pw, reduction="none", backend=backend)
    losses = fastbce.focal_bce(y, x, **kw)
    grad = fastbce.focal_bce_grad(y, x, **kw)
    up = x > 0
    want_loss = np.where(up, (1 - y) ** (gamma + 1) * 1e4, pw * y ** (gamma + 1) * 1e4) * alpha_t
    want_grad = np.where(up, (1 - y) ** (gamma + 1), -pw * y ** (gamma + 1)) * alpha_t
    np.testing.assert_allclose(losses, want_loss, rtol=1e-12, atol=0)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-12, atol=0)
    # the float64 formula agrees, and so do the reductions
    value, g = expected(y, x, reduction="mean", gamma=gamma, alpha=alpha, from_logits=True, pos_weight=pw)
    kw.pop("reduction")
    assert fastbce.focal_bce(y, x, **kw) == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(fastbce.focal_bce_grad(y, x, **kw), g, rtol=1e-12)


@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_infinite_logits_values(backend, gamma, alpha):
    """x = ±inf: 0 on the right side, inf on the wrong side (never NaN)."""
    x = np.array([np.inf, -np.inf] * 3)
    y = np.repeat([0.0, 1.0, 0.3], 2)
    losses = fastbce.focal_bce(y, x, gamma=gamma, alpha=alpha, from_logits=True, reduction="none",
                               backend=backend)
    np.testing.assert_array_equal(losses, [np.inf, 0.0, 0.0, np.inf, np.inf, np.inf])
    assert fastbce.focal_bce(y[[1, 2]], x[[1, 2]], gamma=gamma, alpha=alpha, from_logits=True,
                             backend=backend) == 0.0
    assert fastbce.focal_bce(y, x, gamma=gamma, alpha=alpha, from_logits=True, backend=backend) == np.inf


@pytest.mark.parametrize("backend", BACKENDS)
def test_infinite_logits_gradient_is_the_limit(backend):
    """At x = ±inf the gradient is its limit (as bce_grad's is, and as focal's is at |x| = 1e4):
    α_t(1-y)^(γ+1) at +inf, -α_t·y^(γ+1) at -inf; never NaN. Every γ and α, failures collected."""
    x = np.array([np.inf, -np.inf] * 3)
    y = np.repeat([0.0, 1.0, 0.3], 2)
    failures = []
    for gamma in GAMMAS:
        for alpha in ALPHAS:
            alpha_t = 1.0 if alpha is None else alpha * y + (1 - alpha) * (1 - y)
            grad = fastbce.focal_bce_grad(y, x, gamma=gamma, alpha=alpha, from_logits=True,
                                          reduction="none", backend=backend)
            want = np.where(x > 0, (1 - y) ** (gamma + 1), -(y ** (gamma + 1))) * alpha_t
            if not np.allclose(grad, want, rtol=1e-12, atol=0):
                failures.append(f"gamma={gamma} alpha={alpha}: got {grad}, want {want}")
    assert not failures, f"x={x}, y={y}:\n" + "\n".join(failures)


EXTREME_X = np.array([40.0, 100.0, 700.0, 710.0, 730.0, 740.0, 745.0, 1e4])


@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("gamma", [0.5, 0.25, 0.01])
@pytest.mark.parametrize("backend", BACKENDS)
def test_fractional_gamma_at_extreme_logits(backend, gamma, alpha, monkeypatch):
    """γ < 1: (1-p_t)^(γ-1) is huge where 1-p_t → 0, but times dq/dx the derivative is tiny and
    finite: the gradient is finite everywhere (and matches the log-space formula)."""
    ignored = []  # exceptions a compiled kernel raised and could not propagate
    monkeypatch.setattr(sys, "unraisablehook", ignored.append)
    x = np.concatenate([EXTREME_X, -EXTREME_X])
    for label in (0.0, 1.0, 0.3):
        y = np.full(x.shape, label)
        kw = dict(gamma=gamma, alpha=alpha, from_logits=True, reduction="none")
        losses = fastbce.focal_bce(y, x, backend=backend, **kw)
        grad = fastbce.focal_bce_grad(y, x, backend=backend, **kw)
        if ignored:
            pytest.fail(f"y={label}: the kernel hit {len(ignored)} ignored exceptions, the first: "
                        f"{ignored[0].exc_type.__name__}: {ignored[0].exc_value}; losses {losses}")
        want_loss, want_grad = expected(y, x, **kw)
        msg = f"y={label}"
        for name, values in (("loss", losses), ("gradient", grad)):
            bad = ~np.isfinite(values)
            if bad.any():
                pytest.fail(f"{msg}: non-finite {name} at x = {x[bad]}: {values[bad]}")
        np.testing.assert_allclose(losses, want_loss, rtol=1e-9, atol=1e-280, err_msg=msg)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-9, atol=1e-280, err_msg=msg)


@pytest.mark.parametrize("backend", BACKENDS)
def test_small_gamma_confident_correct_predictions_lose_nothing(backend, monkeypatch):
    """γ = 0.01, y = 1, x ≥ 700 (and mirrored): the loss is below 1e-300 (CE ≤ e^-700), the value
    alone (no gradient asked for) included."""
    ignored = []
    monkeypatch.setattr(sys, "unraisablehook", ignored.append)
    x = np.array([700.0, 730.0, 740.0, 745.0])
    for y, v in ((np.ones(4), x), (np.zeros(4), -x)):
        losses = fastbce.focal_bce(y, v, gamma=0.01, from_logits=True, reduction="none", backend=backend)
        mean = fastbce.focal_bce(y, v, gamma=0.01, from_logits=True, backend=backend)
        assert (0 <= losses).all() and (losses < 1e-300).all(), f"y={y[0]}: losses {losses}"
        assert 0 <= mean < 1e-300, f"y={y[0]}: mean {mean}"
    assert not ignored, f"{len(ignored)} ignored exceptions in the kernel: {ignored[0].exc_value}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_moderate_logits_against_formula(backend, rng):
    """|x| up to 50 on a grid, every γ: value and gradient match the log-space formula."""
    x = np.concatenate([np.linspace(-50, 50, 101), [-1e-300, 0.0, 1e-300]])
    for label in (0.0, 1.0, 0.3):
        y = np.full(x.shape, label)
        for gamma in GAMMAS + [0.3]:
            kw = dict(gamma=gamma, alpha=0.25, from_logits=True, reduction="none", pos_weight=1.5,
                      label_smoothing=0.05 if label == 1.0 else 0.0)
            want_loss, want_grad = expected(y, x, **kw)
            np.testing.assert_allclose(fastbce.focal_bce(y, x, backend=backend, **kw), want_loss,
                                       rtol=1e-11, atol=1e-300, err_msg=f"y={label} gamma={gamma}")
            np.testing.assert_allclose(fastbce.focal_bce_grad(y, x, backend=backend, **kw), want_grad,
                                       rtol=1e-11, atol=1e-300, err_msg=f"y={label} gamma={gamma}")


# ------------------------------------------------------------------------------------------------
# Bad arguments
# ------------------------------------------------------------------------------------------------

FUNCTIONS = [fastbce.focal_bce, fastbce.focal_bce_grad, fastbce.focal_bce_value_and_grad]


@pytest.mark.parametrize("gamma", [-1.0, -1e-12, np.nan, np.inf, -np.inf, "2", None, [2.0], 1 + 0j])
@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_gamma(backend, gamma):
    y, p = np.array([0.0, 1.0]), np.array([0.3, 0.6])
    for function in FUNCTIONS:
        with pytest.raises(ValueError, match="gamma"):
            function(y, p, gamma=gamma, backend=backend)


@pytest.mark.parametrize("alpha", [-0.1, 1.0000001, 2.0, np.nan, np.inf, "0.25", [0.25], 0.5j])
@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_alpha(backend, alpha):
    y, p = np.array([0.0, 1.0]), np.array([0.3, 0.6])
    for function in FUNCTIONS:
        with pytest.raises(ValueError, match="alpha"):
            function(y, p, alpha=alpha, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_good_gamma_alpha_edges(backend):
    y, p = np.array([0.0, 1.0]), np.array([0.3, 0.6])
    for gamma, alpha in ((0, 0), (0.0, 1.0), (np.float32(2.0), np.float64(0.25)), (3, 1), (1e-300, 0.5)):
        assert np.isfinite(fastbce.focal_bce(y, p, gamma=gamma, alpha=alpha, backend=backend))


# ------------------------------------------------------------------------------------------------
# Thread count: bit-identical results on many chunks
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", COMPILED_BACKENDS)
def test_threads_bit_identical(backend):
    from fastbce import _threads

    if _threads.available_cores() < 2:
        pytest.skip("needs 2 cores")
    rng = np.random.default_rng(11)
    n_rows, n_cols = 80_000, 4  # 320k elements: 10 chunks of 2**15
    y = _labels(rng, (n_rows, n_cols))
    x = rng.normal(0, 3, (n_rows, n_cols))
    p = rng.random((n_rows, n_cols))
    weights = rng.uniform(0.1, 2.0, (n_rows, n_cols))
    mask = rng.random((n_rows, n_cols)) < 0.9
    groups = rng.integers(0, 50, n_rows)
    for v, from_logits in ((x, True), (p, False)):
        base = dict(gamma=0.5, alpha=0.25, from_logits=from_logits, sample_weight=weights, mask=mask,
                    pos_weight=np.array([1.0, 2.0, 0.5, 1.5]), label_smoothing=0.05, backend=backend)
        for reduction, axis in (("sum", 1), ("none", None), ("mean", 0), ("mean", None)):
            kw = dict(base, reduction=reduction, axis=axis)
            one = fastbce.focal_bce_value_and_grad(y, v, n_threads=1, **kw)
            two = fastbce.focal_bce_value_and_grad(y, v, n_threads=2, **kw)
            assert _same(one[0], two[0]) and _same(one[1], two[1]), (from_logits, reduction, axis)
        # and the values are right (the float64 reference backend; the formula is checked above)
        reference = dict(base, backend="numpy")
        value, grad = fastbce.focal_bce_value_and_grad(y, v, **reference)
        assert two[0] == pytest.approx(value, rel=1e-12) and np.isfinite(two[0])
        np.testing.assert_allclose(two[1], grad, rtol=GRAD_RTOL, atol=1e-18)
        one = fastbce.focal_bce(y, v, groups=groups, n_threads=1, **base)
        two = fastbce.focal_bce(y, v, groups=groups, n_threads=2, **base)
        assert _same(one, two)
        np.testing.assert_allclose(two, fastbce.focal_bce(y, v, groups=groups, **reference), rtol=1e-12)
        assert np.isfinite(two).all() and len(two) == 50
