"""Element losses (reduction="none") on the element passes (kernels/c/elements.h,
kernels/numba/elements.py): against the float64 reference and PyTorch, every option, dtype,
layout and broadcast; both compiled backends bit for bit; any thread count the same bits."""

import numpy as np
import pytest

import fastbce
from conftest import COMPILED_BACKENDS

# The option matrix runs on one compiled backend (the Cython one when built): each form and dtype
# costs Numba a compilation, and test_backends_agree_bit_for_bit_for_any_thread_count checks
# that Numba gives the same bits.
ONE_BACKEND = "cython" if "cython" in COMPILED_BACKENDS else "numba"
EPS32, EPS64 = np.finfo(np.float32).eps, np.finfo(np.float64).eps


def _data(rng, n, dtype, logits, soft=False):
    y = (rng.random(n) < 0.4).astype(np.float32)
    if soft:
        y = np.where(rng.random(n) < 0.5, y, rng.random(n)).astype(np.float32)
    v = (rng.standard_normal(n) * 4).astype(dtype) if logits else rng.random(n).astype(dtype)
    if not logits:
        v[:4] = [0.0, 1.0, 1e-30, 1e-9]
    return y, v


def _assert_near(got, want, out_dtype, ulps):
    """|got - want| <= ulps · eps(out dtype) · |want| (NaN where NaN, equal infinities)."""
    eps = EPS32 if out_dtype == np.float32 else EPS64
    got = got.astype(np.float64)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    ok = np.isnan(want) | (got == want) | (np.abs(got - want) <= ulps * eps * np.abs(want) + 1e-300)
    assert ok.all(), (got[~ok][:5], want[~ok][:5])


OPTIONS = [
    {},
    {"pos_weight": 2.5},
    {"sample_weight": "rows"},
    {"label_smoothing": 0.1},
    {"mask": True, "nan_policy": "omit"},
    {"gamma": 2.0, "alpha": 0.25},
    {"gamma": 0.5},
    {"gamma": 5.0, "pos_weight": 3.0, "label_smoothing": 0.05},
]


def _call(y, v, backend, logits, options, rng, n_threads=None):
    kw = dict(options)
    if kw.get("sample_weight") == "rows":
        kw["sample_weight"] = np.random.default_rng(1).random(y.shape[0]).astype(np.float32) * 2
    if kw.get("mask") is True:
        kw["mask"] = np.random.default_rng(2).random(y.shape) < 0.8
    focal = "gamma" in kw
    function = fastbce.focal_bce if focal else fastbce.bce
    return function(y, v, from_logits=logits, reduction="none", backend=backend,
                    n_threads=n_threads, **kw)


@pytest.mark.parametrize("options", OPTIONS, ids=[",".join(o) or "plain" for o in OPTIONS])
@pytest.mark.parametrize("logits", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_element_losses_match_the_reference(options, logits, dtype, rng):
    y, v = _data(rng, 3001, dtype, logits, soft="label_smoothing" not in options)
    if options.get("nan_policy") == "omit":
        v[7] = np.nan
    want = _call(y, v, "numpy", logits, options, rng)
    out_dtype = np.float64 if dtype == np.float64 else np.float32
    got = _call(y, v, ONE_BACKEND, logits, options, rng)
    assert got.dtype == out_dtype and got.shape == v.shape
    _assert_near(got, want.astype(np.float64), out_dtype, 4 if out_dtype == np.float32 else 32)


@pytest.mark.parametrize("options, logits", [({}, False), ({}, True), (OPTIONS[5], True)],
                         ids=["probabilities", "logits", "focal"])
def test_backends_agree_bit_for_bit_for_any_thread_count(options, logits, rng):
    if len(COMPILED_BACKENDS) < 2:
        pytest.skip("needs both compiled backends")
    y, v = _data(rng, 150_001, np.float32, logits, soft=True)
    results = [_call(y, v, backend, logits, options, rng, n_threads=threads)
               for backend in COMPILED_BACKENDS for threads in (1, 2)]
    for other in results[1:]:
        assert np.array_equal(results[0], other, equal_nan=True)


@pytest.mark.parametrize("layout", ["fortran", "strided", "reversed", "per_column_weights"])
def test_layouts_and_broadcasts(layout, rng):
    backend = ONE_BACKEND
    y = (rng.random((300, 7)) < 0.4).astype(np.float64)
    p = rng.random((300, 7))
    kw = {}
    if layout == "fortran":
        y, p = np.asfortranarray(y), np.asfortranarray(p)
    elif layout == "strided":
        y, p = np.repeat(y, 2, axis=1)[:, ::2], np.repeat(p, 2, axis=0)[::2]
    elif layout == "reversed":
        y, p = y[::-1, ::-1], p[::-1]
    else:
        kw = dict(pos_weight=np.linspace(0.5, 3, 7).astype(np.float32),
                  sample_weight=rng.random((300, 1)), mask=rng.random(7) < 0.7)
    want = fastbce.bce(y, p, reduction="none", backend="numpy", **kw)
    got = fastbce.bce(y, p, reduction="none", backend=backend, **kw)
    assert got.flags.f_contiguous == (layout == "fortran")
    _assert_near(got, want, np.float64, 8)
    contiguous = fastbce.bce(np.ascontiguousarray(y), np.ascontiguousarray(p), reduction="none",
                             backend=backend, **kw)
    assert np.array_equal(got, contiguous)


@pytest.mark.parametrize("y_dtype", [np.bool_, np.uint8, np.int8, np.int64, np.float16, np.float64])
def test_label_dtypes(y_dtype, rng):
    backend = ONE_BACKEND
    y = rng.random(1000) < 0.3
    p = rng.random(1000).astype(np.float32)
    want = fastbce.bce(y.astype(np.float32), p, reduction="none", backend=backend)
    assert np.array_equal(fastbce.bce(y.astype(y_dtype), p, reduction="none",
                                      backend=backend), want)


def test_nan_policies(rng):
    backend = ONE_BACKEND
    y, p = _data(rng, 100, np.float32, False)
    p[[3, 50]] = np.nan
    y[60] = np.nan
    got = fastbce.bce(y, p, reduction="none", backend=backend)
    assert np.isnan(got[[3, 50, 60]]).all() and not np.isnan(np.delete(got, [3, 50, 60])).any()
    omitted = fastbce.bce(y, p, reduction="none", nan_policy="omit", backend=backend)
    assert (omitted[[3, 50, 60]] == 0).all()
    assert np.array_equal(np.delete(omitted, [3, 50, 60]), np.delete(got, [3, 50, 60]))
    with pytest.raises(ValueError, match="NaN"):
        fastbce.bce(y, p, reduction="none", nan_policy="raise", backend=backend)


@pytest.mark.parametrize("bad, match", [
    ({"y": 2.0}, "y_true"), ({"p": 1.5}, "y_pred"), ({"w": -1.0}, "sample_weight"),
    ({"pw": np.inf}, "pos_weight")])
def test_bad_values_raise_naming_the_argument(bad, match, rng):
    backend = ONE_BACKEND
    y, p = _data(rng, 100, np.float32, False)
    w, pw = np.ones(100, np.float32), np.ones(100)
    arrays = {"y": y, "p": p, "w": w, "pw": pw}
    key, value = next(iter(bad.items()))
    arrays[key][10] = value
    before = {k: a.copy() for k, a in arrays.items()}
    with pytest.raises(ValueError, match=match):
        fastbce.bce(y, p, sample_weight=w, pos_weight=pw, reduction="none", backend=backend)
    assert all(np.array_equal(before[k], arrays[k]) for k in arrays)


def test_masked_bad_values_are_not_checked(rng):
    backend = ONE_BACKEND
    y, p = _data(rng, 100, np.float32, False)
    y[5] = 3.0
    mask = np.ones(100, bool)
    mask[5] = False
    got = fastbce.bce(y, p, mask=mask, reduction="none", backend=backend)
    assert got[5] == 0


def test_torch_parity(rng):
    backend = ONE_BACKEND
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    y = (rng.random((2000, 5)) < 0.3).astype(np.float32)
    x = (rng.standard_normal((2000, 5)) * 3).astype(np.float32)
    pw = np.linspace(0.5, 4, 5).astype(np.float32)
    want = F.binary_cross_entropy_with_logits(torch.from_numpy(x), torch.from_numpy(y),
                                              pos_weight=torch.from_numpy(pw), reduction="none")
    got = fastbce.bce(y, x, from_logits=True, pos_weight=pw, reduction="none", backend=backend)
    np.testing.assert_allclose(got, want.numpy(), rtol=2e-6, atol=1e-6)
    p = rng.uniform(1e-3, 1 - 1e-3, (2000, 5)).astype(np.float32)
    want = F.binary_cross_entropy(torch.from_numpy(p), torch.from_numpy(y), reduction="none")
    got = fastbce.bce(y, p, reduction="none", backend=backend)
    np.testing.assert_allclose(got, want.numpy(), rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("backend", COMPILED_BACKENDS)
def test_coefficients_below_the_prediction_range_keep_their_term(backend):
    """A positive coefficient that is 0 in float32 (a float64 pos_weight of 2.2e-309, found by
    tests/test_properties.py; a tiny float64 label) times an infinite softplus (x = -inf) is
    inf, and times a large finite one a float32 number, not 0: the coefficients stay float64."""
    x = np.array([-np.inf, -np.inf, -3e38, np.inf, 2.0], np.float32)
    y = np.array([0.9851533, 1.0, 1.0, 0.0, 1.0], np.float32)
    pos_weight = np.array(2.2250738585072014e-309)
    got = fastbce.bce(y, x, from_logits=True, pos_weight=pos_weight, reduction="none",
                      backend=backend)
    want = fastbce.bce(y, x, from_logits=True, pos_weight=pos_weight, reduction="none",
                       backend="numpy")
    assert got[0] == got[1] == np.inf and want[0] == np.inf
    _assert_near(got, want.astype(np.float64), np.float32, 4)
    y64 = np.array([1e-300, 1e-300, 1e-45, 0.0], np.float64)  # 0 as float32 labels
    x = np.array([-np.inf, -1e38, -1e38, 1.0], np.float32)
    got = fastbce.bce(y64, x, from_logits=True, reduction="none", backend=backend)
    want = fastbce.bce(y64, x, from_logits=True, reduction="none", backend="numpy")
    assert got[0] == np.inf and got[2] > 0
    _assert_near(got, want.astype(np.float64), np.float32, 4)
