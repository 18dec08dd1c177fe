"""bce_grad_hess and focal_bce_grad_hess: against the float64 reference, central differences of
the loss and mpmath on extremes; both compiled backends bit for bit; options, dtypes, bad input."""

import mpmath
import numpy as np
import pytest

import fastbce
from conftest import COMPILED_BACKENDS

# Most checks run on the reference and one compiled backend (each form and dtype costs Numba a
# compilation); test_backends_agree_bit_for_bit checks that Numba gives the same bits.
ONE_BACKEND = "cython" if "cython" in COMPILED_BACKENDS else "numba"

GAMMAS = (0.0, 0.5, 1.0, 2.0, 5.0)


def _grad_hess(y, x, gamma=None, alpha=None, **kw):
    if gamma is None:
        return fastbce.bce_grad_hess(y, x, **kw)
    return fastbce.focal_bce_grad_hess(y, x, gamma=gamma, alpha=alpha, **kw)


def _term_scale(y, x, gamma, alpha, pw=1.0):
    """Σ of the magnitudes of the terms summed in the gradient and Hessian (float64): errors of a
    few ulp of it bound the result where the terms cancel."""
    x = x.astype(np.float64)
    s = 1 / (1 + np.exp(-np.abs(x)))
    q = np.where(x >= 0, s, 1 - s)
    a, b = pw * y, 1.0 - y
    g_scale, h_scale = b * q + a * (1 - q), (a + b) * q * (1 - q)
    if gamma is None:
        return g_scale, h_scale
    ce = np.where(a != 0, a * np.logaddexp(0, -x), 0) + np.where(b != 0, b * np.logaddexp(0, x), 0)
    z = y * (1 - q) + b * q
    f = (1.0 if alpha is None else alpha * y + (1 - alpha) * b) * z ** gamma
    r = np.where(z > 0, q * (1 - q) / np.where(z > 0, z, 1), 0)
    d_f = gamma * f * r
    d2_f = gamma * f * ((gamma + 1) * r * r + r)
    return f * g_scale + d_f * ce, d2_f * ce + 2 * d_f * g_scale + f * h_scale


@pytest.mark.filterwarnings("ignore:invalid value")  # the scale at x = inf (inf·0): exact there
@pytest.mark.parametrize("gamma", (None,) + GAMMAS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_matches_the_float64_reference(gamma, dtype, rng):
    n = 4001
    y = (rng.random(n) < 0.3).astype(np.float64)
    x = (rng.standard_normal(n) * 6).astype(dtype)
    x[:6] = [0, -1e4, 1e4, 40, -40, np.inf] if dtype != np.float16 else [0, -1e4, 1e4, 40, -40, 8]
    alpha = 0.25 if gamma == 2.0 else None
    got = _grad_hess(y, x, gamma, alpha, backend=ONE_BACKEND)
    want = _grad_hess(y, x, gamma, alpha, backend="numpy")
    out = np.float64 if dtype == np.float64 else np.float32
    eps = np.finfo(out).eps
    for g, w, scale in zip(got, want, _term_scale(y, x, gamma, alpha)):
        assert g.dtype == out
        assert ((g == w) | (np.abs(g - w) <= 4 * eps * (np.abs(w) + scale) + 1e-300)).all()


@pytest.mark.parametrize("gamma", (None,) + GAMMAS)
def test_central_differences_of_the_loss(gamma, rng):
    y = np.where(rng.random(500) < 0.5, rng.random(500), (rng.random(500) < 0.5) * 1.0)
    x = rng.uniform(-12, 12, 500)
    kw = dict(pos_weight=1.7, label_smoothing=0.1, sample_weight=rng.random(500) + 0.5, backend="numpy")
    h = 1e-5

    def loss(v):
        if gamma is None:
            return fastbce.bce(y, v, from_logits=True, reduction="none", **kw)
        return fastbce.focal_bce(y, v, gamma=gamma, from_logits=True, reduction="none", **kw)

    g, hess = _grad_hess(y, x, gamma, **kw)
    np.testing.assert_allclose(g, (loss(x + h) - loss(x - h)) / (2 * h), rtol=1e-6, atol=1e-9)
    g_plus, g_minus = _grad_hess(y, x + h, gamma, **kw)[0], _grad_hess(y, x - h, gamma, **kw)[0]
    np.testing.assert_allclose(hess, (g_plus - g_minus) / (2 * h), rtol=1e-6, atol=1e-9)
    compiled = _grad_hess(y, x, gamma, **dict(kw, backend=ONE_BACKEND))
    np.testing.assert_allclose(compiled[0], g, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(compiled[1], hess, rtol=1e-12, atol=1e-14)


# Logits away from the zero of the focal Hessian (where no relative bound can hold)
_EXTREMES = (-1e4, -300.0, -30.0, -8.0, -1.0, -0.1, 0.0, 0.4, 2.0, 10.0, 50.0, 700.0, 1e4)


def _mp_derivatives(y, x, gamma):
    """The gradient and Hessian formulas (README) at 60 digits, σ(±x) and softplus(±x) without
    cancellation for any |x| (central differences of the loss cannot resolve e^-300 beside 300)."""
    mpmath.mp.dps = 60
    y, x = mpmath.mpf(y), mpmath.mpf(x)
    b = 1 - y
    q, q_bar = 1 / (1 + mpmath.exp(-x)), 1 / (1 + mpmath.exp(x))
    s = q * q_bar
    g, h = b * q - y * q_bar, s
    if gamma is None:
        return float(g), float(h)
    ce = y * mpmath.log1p(mpmath.exp(-x)) + b * mpmath.log1p(mpmath.exp(x))
    z = y * q_bar + b * q
    f, c, r = z ** gamma, b - y, s / z
    d_f = gamma * f * c * r
    d2_f = gamma * f * c * ((gamma - 1) * c * r * r + r * (q_bar - q))
    return float(f * g + d_f * ce), float(d2_f * ce + 2 * d_f * g + f * h)


@pytest.mark.parametrize("gamma", (None, 0.5, 1.0, 2.0, 5.0))
def test_extremes_against_mpmath(gamma):
    x = np.array(_EXTREMES * 2)
    y = np.repeat([1.0, 0.0], len(_EXTREMES))
    for backend in ("numpy", ONE_BACKEND):
        got_g, got_h = _grad_hess(y, x, gamma, backend=backend)
        for k in range(x.size):
            want_g, want_h = _mp_derivatives(y[k], x[k], gamma)
            for got, want in ((got_g[k], want_g), (got_h[k], want_h)):
                assert abs(got - want) <= 16 * np.finfo(np.float64).eps * abs(want) + 1e-300, (
                    backend, x[k], y[k], got, want)


@pytest.mark.parametrize("gamma, dtype", [(None, np.float32), (2.0, np.float32), (1.5, np.float64)])
def test_backends_agree_bit_for_bit(gamma, dtype, rng):
    if len(COMPILED_BACKENDS) < 2:
        pytest.skip("needs both compiled backends")
    y = rng.random((30_001, 3)).astype(np.float32)
    x = (rng.standard_normal((30_001, 3)) * 5).astype(dtype)
    kw = dict(sample_weight=rng.random((30_001, 1)), pos_weight=np.array([1.0, 2.0, 0.5]),
              label_smoothing=0.05, mask=rng.random(3) < 0.9)
    results = [_grad_hess(y, x, gamma, backend=b, n_threads=t, **kw)
               for b in COMPILED_BACKENDS for t in (1, 2)]
    for other in results[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(results[0], other))


@pytest.mark.filterwarnings("ignore:invalid value")
@pytest.mark.parametrize("labels", ["hard", "soft"])
def test_float32_pass_within_a_few_ulp(labels, rng):
    """float32 labels and logits, no weight, pos_weight, mask or smoothing: the BCE gradient and
    Hessian in float32 alone, within 3 ulp of the float64 formula (2.4 measured on 4·10^6
    logits); soft labels, where the gradient's terms cancel, within 2 eps of the term scale."""
    n = 20001
    y = ((rng.random(n) < 0.3) if labels == "hard" else rng.random(n)).astype(np.float32)
    x = (rng.standard_normal(n) * 8).astype(np.float32)
    x[:8] = [0, -1e4, 1e4, 40, -40, np.inf, -np.inf, 87.5]
    want = _grad_hess(y.astype(np.float64), x.astype(np.float64), backend="numpy")
    eps = np.finfo(np.float32).eps
    for backend in COMPILED_BACKENDS:
        for got, w, scale in zip(_grad_hess(y, x, backend=backend), want, _term_scale(y, x, None, None)):
            assert got.dtype == np.float32
            ulp = np.spacing(np.abs(w).astype(np.float32)).astype(np.float64)
            err = np.abs(got - w)
            bound = 3 * ulp if labels == "hard" else 3 * ulp + 2 * eps * np.nan_to_num(scale)
            assert ((got == w) | (err <= bound)).all(), (backend, np.max(err / bound))


def _hard_logits(rng, n):
    """float32 logits of both signs up to |x| = 1e4 (log-uniform half) with the extremes: p_t
    subnormal (|x| in 87-104), 0, ±inf; hard labels."""
    x = np.concatenate([rng.standard_normal(n // 2) * 8, np.sign(rng.standard_normal(n - n // 2))
                        * np.exp(rng.uniform(np.log(1e-6), np.log(1e4), n - n // 2))])
    x[:12] = [0, -1e4, 1e4, 40, -40, 88, -88, 95, -95, 103, np.inf, -np.inf]
    return x.astype(np.float32), (rng.random(n) < 0.5).astype(np.float32)


@pytest.mark.filterwarnings("ignore:invalid value")
@pytest.mark.parametrize("gamma, alpha, bound", [(0.0, 0.25, 4), (0.5, None, 4), (1.0, 0.25, 4),
                                                 (2.0, 0.25, 4), (5.0, None, 4), (2.3, 0.25, 5)])
def test_focal_float32_pass_within_a_few_ulp(gamma, alpha, bound, rng):
    """float32 logits, 0/1 labels, no weights or smoothing: the focal gradient and Hessian in
    float32 (float-float where a rounding would be raised to the power γ), within `bound` ulp of
    the float64 formula; the Hessian in ulp of its term scale where its terms cancel (measured
    on 4·10^6 logits, γ = 0 to 5: 3.3 ulp for the gradient, 3.7 for the Hessian; γ = 2.3: 4.5)."""
    x, y = _hard_logits(rng, 100_000)
    want = _grad_hess(y.astype(np.float64), x.astype(np.float64), gamma, alpha, backend="numpy")
    scales = _term_scale(y.astype(np.float64), x, gamma, alpha)
    for backend in COMPILED_BACKENDS:
        for got, w, scale in zip(_grad_hess(y, x, gamma, alpha, backend=backend), want, scales):
            assert got.dtype == np.float32
            ulp = np.spacing(np.abs(w).astype(np.float32)).astype(np.float64)
            ulp = np.maximum(ulp, np.spacing(np.nan_to_num(scale).astype(np.float32)))
            err = np.abs(got - w)
            assert ((got == w) | (err <= bound * ulp)).all(), (backend, np.max(err / ulp))


def test_focal_float32_pass_falls_back_on_soft_blocks(rng):
    """A block (512 elements) with a soft label, or smoothing, takes the float64 form: the value
    rounded once, within 1 ulp of the float64 pass; the hard blocks of the same call are those of
    a call on them alone; strided and Fortran-ordered views give the same bits."""
    x, y = _hard_logits(rng, 100_012)
    x, y = x[12:], y[12:]  # finite
    y_mixed = y.copy()
    y_mixed[-5] = 0.5  # the last block, [99_840, 100_000), is soft
    kw = dict(gamma=2.0, alpha=0.25, backend=ONE_BACKEND)
    g, h = fastbce.focal_bce_grad_hess(y_mixed, x, **kw)
    g_hard, h_hard = fastbce.focal_bce_grad_hess(y, x, **kw)
    assert np.array_equal(g[:99_840], g_hard[:99_840]) and np.array_equal(h[:99_840], h_hard[:99_840])
    want = fastbce.focal_bce_grad_hess(y_mixed.astype(np.float64), x.astype(np.float64), **kw)
    smooth = fastbce.focal_bce_grad_hess(y, x, label_smoothing=0.1, **kw)
    want_smooth = fastbce.focal_bce_grad_hess(y.astype(np.float64), x.astype(np.float64),
                                              label_smoothing=0.1, **kw)
    for got, w in [(g[99_840:], want[0][99_840:]), (h[99_840:], want[1][99_840:]),
                   *zip(smooth, want_smooth)]:
        w32 = w.astype(np.float32)
        assert (np.abs(got - w32) <= np.spacing(np.abs(w32))).all()
    x2, y2 = x[:20_000].reshape(-1, 2), y[:20_000].reshape(-1, 2)
    ref = fastbce.focal_bce_grad_hess(y2, x2, **kw)
    for xv, yv in ((np.asfortranarray(x2), np.asfortranarray(y2)),
                   (np.repeat(x2, 2, axis=0)[::2], np.repeat(y2, 2, axis=0)[::2])):
        got = fastbce.focal_bce_grad_hess(yv, xv, **kw)
        assert all(np.array_equal(a, b) for a, b in zip(got, ref))


@pytest.mark.parametrize("gamma, hard", [(None, False), (2.0, False), (2.0, True), (0.5, True)])
def test_plain_forms_agree_bit_for_bit(gamma, hard, rng):
    """The passes with no weight, pos_weight or mask (float32 alone for BCE, the float64 focal
    form without the weight buffers, the float32 focal form of 0/1 labels): same bits on both
    backends and thread counts."""
    if len(COMPILED_BACKENDS) < 2:
        pytest.skip("needs both compiled backends")
    y = rng.random((20_001, 3)).astype(np.float32)
    y[::2] = np.round(y[::2])
    x = (rng.standard_normal((20_001, 3)) * 5).astype(np.float32)
    if hard:
        x, y = (a.reshape(20_001, 3) for a in _hard_logits(rng, 60_003))
    x[7, 1] = np.nan
    kw = {} if gamma is None else dict(alpha=0.25) if hard else dict(label_smoothing=0.05, alpha=0.25)
    results = [_grad_hess(y, x, gamma, backend=b, n_threads=t, nan_policy=nan, **kw)
               for b in COMPILED_BACKENDS for t in (1, 2) for nan in ("propagate", "omit")]
    for k, other in enumerate(results[2:], 2):
        assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(results[k % 2], other))
    assert np.isnan(results[0][0][7, 1]) and results[1][0][7, 1] == 0


def test_hessian_of_bce_is_non_negative_and_focal_has_negative_regions():
    compiled_backend = ONE_BACKEND
    x = np.linspace(-20, 20, 4001)
    y = np.ones_like(x)
    assert (fastbce.bce_grad_hess(y, x, backend=compiled_backend)[1] >= 0).all()
    hess = fastbce.focal_bce_grad_hess(y, x, gamma=2.0, backend=compiled_backend)[1]
    assert (hess[x < -2.8] < 0).all() and (hess[x > -2.78] >= 0).all()


def test_masks_nan_and_out(rng):
    compiled_backend = ONE_BACKEND
    y = (rng.random(100) < 0.5).astype(np.float32)
    x = rng.standard_normal(100).astype(np.float32)
    x[3] = np.nan
    mask = np.ones(100, bool)
    mask[9] = False
    g, h = fastbce.bce_grad_hess(y, x, mask=mask, backend=compiled_backend)
    assert np.isnan(g[3]) and np.isnan(h[3]) and g[9] == 0 and h[9] == 0
    out = (np.empty(100, np.float32), np.empty(100, np.float32))
    g2, h2 = fastbce.bce_grad_hess(y, x, mask=mask, nan_policy="omit", out=out,
                                   backend=compiled_backend)
    assert g2 is out[0] and h2 is out[1] and g2[3] == 0 and h2[3] == 0
    assert np.array_equal(np.delete(g2, 3), np.delete(g, 3))
    with pytest.raises(ValueError, match="NaN"):
        fastbce.bce_grad_hess(y, x, nan_policy="raise", backend=compiled_backend)


def test_bad_input_names_the_argument(rng):
    y = np.ones(10, np.float32)
    x = np.zeros(10, np.float32)
    with pytest.raises(ValueError, match="raw_score"):
        fastbce.bce_grad_hess(y, x[:5])
    with pytest.raises(TypeError, match="raw_score"):
        fastbce.bce_grad_hess(y, x.astype(np.int32))
    with pytest.raises(ValueError, match="out"):
        fastbce.bce_grad_hess(y, x, out=(np.empty(10), np.empty(10)))
    with pytest.raises(TypeError, match="out"):
        fastbce.bce_grad_hess(y, x, out=np.empty(10, np.float32))
    with pytest.raises(ValueError, match="overlap"):
        buffer = np.empty(10, np.float32)
        fastbce.bce_grad_hess(y, x, out=(buffer, buffer))
    with pytest.raises(ValueError, match="gamma"):
        fastbce.focal_bce_grad_hess(y, x, gamma=-1)
    with pytest.raises(ValueError, match="sample_weight"):
        fastbce.bce_grad_hess(y, x, sample_weight=-np.ones(10))
    with pytest.raises(ValueError, match="y_true"):
        fastbce.bce_grad_hess(y * 2, x)
