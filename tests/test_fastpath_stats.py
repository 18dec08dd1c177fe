"""The scoring pass on the fast path (fb_score_chunk / score_chunk: the seven statistics of
fastbce.score and Accumulator): against the general float64 pass with the fast path's bounds
(1e-6 relative for float32 predictions, 1e-12 for float64), both backends bit for bit, any thread
count the same bits, NaN policies, errors and extremes as the general pass."""

import numpy as np
import pytest

import fastbce
from conftest import COMPILED_BACKENDS
from fastbce import _backends
from fastbce._engine import run_pass
from fastbce._score import N_STATS, _plan_of

BOUND = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-12}
# around a block (512), a lane group (16), a chunk (32,768) and several chunks
SIZES = [1, 15, 17, 511, 513, 1_537, 32_767, 32_769, 100_003]


@pytest.fixture
def fast_calls(monkeypatch, compiled_backend):
    """Counts the calls of the backend's fast pass with seven statistics."""
    kernel = _backends.load_backend(compiled_backend)
    calls = []
    original = kernel.fast_pass

    def counted(*args, **kwargs):
        calls.append(args[8].shape[2] == 7)
        return original(*args, **kwargs)

    monkeypatch.setattr(kernel, "fast_pass", counted)
    return calls


def totals(y, p, backend, n_threads=2, **options):
    settings = dict(from_logits=False, eps=1e-7, sample_weight=None, mask=None,
                    nan_policy="propagate", groups=None, n_groups=None, axis=None)
    settings.update(options)
    return run_pass(_plan_of(y, p, **settings), backend, n_threads, n_stats=N_STATS)[0]


def _data(rng, n, dtype, form, layout):
    """(y, p, options) of one case."""
    options = {"from_logits": form == "logits"}
    y = (rng.random(n) < 0.3).astype(dtype)
    if form == "logits":
        p = (rng.normal(size=n) * 4).astype(dtype)
    else:
        p = rng.random(n).astype(dtype)
    if form == "soft":
        y = rng.random(n).astype(dtype)
        y[::7] = 1.0  # mixed blocks
    if layout == "weights":
        options["sample_weight"] = rng.random(n).astype(dtype)
    elif layout == "mask":
        options["mask"] = rng.random(n) < 0.8
    elif layout == "groups":
        options.update(groups=rng.integers(0, 13, n), n_groups=13)
    elif layout == "labels":
        m = max(5, n - n % 5)
        y, p = np.resize(y, m).reshape(-1, 5), np.resize(p, m).reshape(-1, 5)
        options["axis"] = 0
    elif layout == "uint8":
        y = y.astype(np.uint8) if form != "soft" else y
    return y, p, options


def _check_close(got, want, dtype):
    assert got.shape == want.shape
    np.testing.assert_array_equal(got[:, 2], want[:, 2])  # counts exact
    scale = np.maximum(np.abs(want), 1e-300)
    rel = np.abs(got - want) / scale
    assert np.nanmax(rel, initial=0.0) <= BOUND[np.dtype(dtype)], (got, want)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("form", ["hard", "soft", "logits"])
@pytest.mark.parametrize("layout", ["all", "weights", "mask", "groups", "labels", "uint8"])
def test_statistics_against_the_general_pass(fast_calls, compiled_backend, dtype, form, layout,
                                             rng):
    for n in SIZES:
        y, p, options = _data(rng, n, dtype, form, layout)
        got = totals(y, p, compiled_backend, **options)
        _check_close(got, totals(y, p, "numpy", **options), dtype)
        assert got.shape[1] == 7
    assert fast_calls and all(fast_calls)


@pytest.mark.skipif("cython" not in COMPILED_BACKENDS, reason="the Cython backend is not built")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("form", ["hard", "soft", "logits"])
@pytest.mark.parametrize("layout", ["all", "weights", "mask", "groups", "labels", "uint8"])
def test_both_backends_and_any_thread_count_give_the_same_bits(dtype, form, layout, rng):
    for n in (1_537, 100_003):
        y, p, options = _data(rng, n, dtype, form, layout)
        ref = totals(y, p, "cython", **options)
        np.testing.assert_array_equal(totals(y, p, "numba", **options), ref)
        np.testing.assert_array_equal(totals(y, p, "cython", n_threads=1, **options), ref)
        np.testing.assert_array_equal(totals(y, p, "numba", n_threads=1, **options), ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("policy", ["propagate", "omit"])
def test_nan_policies(fast_calls, compiled_backend, dtype, from_logits, policy, rng):
    n = 3_000
    y = (rng.random(n) < 0.5).astype(dtype)
    p = (rng.normal(size=n) if from_logits else rng.random(n)).astype(dtype)
    p[[5, 700]] = np.nan
    y[[9, 2_000]] = np.nan
    for groups in (None, rng.integers(0, 4, n)):
        options = dict(from_logits=from_logits, nan_policy=policy, groups=groups,
                       n_groups=None if groups is None else 4)
        got = totals(y, p, compiled_backend, **options)
        _check_close(got, totals(y, p, "numpy", **options), dtype)
        with pytest.raises(ValueError, match="NaN"):
            totals(y, p, compiled_backend, **dict(options, nan_policy="raise"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extremes(fast_calls, compiled_backend, dtype):
    y = np.array([1, 0, 1, 0, 1, 0, 1, 0, 0.5, 0.5] * 60, dtype)
    p = np.array([0, 0, 1, 1, 1e-30, 1e-30, 0.5, 0.5, 0, 1] * 60, dtype)
    for eps in (1e-7, 1e-3, 0.2):
        _check_close(totals(y, p, compiled_backend, eps=eps), totals(y, p, "numpy", eps=eps), dtype)
    x = np.array([1e4, -1e4, 1e4, -1e4, np.inf, -np.inf, np.inf, -np.inf, 0, 30] * 60, dtype)
    _check_close(totals(y, x, compiled_backend, from_logits=True),
                 totals(y, x, "numpy", from_logits=True), dtype)
    w = np.r_[np.zeros(300), np.ones(300)].astype(dtype)
    _check_close(totals(y, x, compiled_backend, from_logits=True, sample_weight=w),
                 totals(y, x, "numpy", from_logits=True, sample_weight=w), dtype)
    assert all(fast_calls)


def test_errors_as_in_the_general_pass(compiled_backend, rng):
    y = (rng.random(2_000) < 0.5).astype(np.float32)
    p = rng.random(2_000).astype(np.float32)
    bad_y, bad_p, bad_w = y.copy(), p.copy(), np.ones(2_000)
    bad_y[1_500] = 2.0
    bad_p[3] = 1.5
    bad_w[700] = -1.0
    with pytest.raises(ValueError, match="y_true"):
        totals(bad_y, p, compiled_backend)
    with pytest.raises(ValueError, match="y_pred"):
        totals(y, bad_p, compiled_backend)
    with pytest.raises(ValueError, match="sample_weight"):
        totals(y, p, compiled_backend, sample_weight=bad_w)
    with pytest.raises(ValueError, match="groups"):
        totals(y, p, compiled_backend, groups=np.full(2_000, 5), n_groups=5)
    mask = np.ones(2_000, bool)
    mask[[3, 1_500]] = False  # masked bad values are not errors
    _check_close(totals(bad_y, bad_p, compiled_backend, mask=mask),
                 totals(bad_y, bad_p, "numpy", mask=mask), np.float32)


def test_scalar_weight_scales_all_but_the_count(compiled_backend, rng):
    y = (rng.random(5_000) < 0.5).astype(np.float32)
    p = rng.random(5_000).astype(np.float32)
    got = totals(y, p, compiled_backend, sample_weight=np.float32(2.5))
    _check_close(got, totals(y, p, "numpy", sample_weight=np.float32(2.5)), np.float32)


def test_score_and_accumulator_on_the_fast_path(fast_calls, compiled_backend, rng):
    n = 70_000
    y = (rng.random(n) < 0.2).astype(np.float32)
    p = rng.random(n).astype(np.float32)
    g = rng.integers(0, 50, n)
    whole = fastbce.score(y, p, groups=g, n_groups=50, backend=compiled_backend)
    acc = fastbce.Accumulator(n_groups=50, backend=compiled_backend)
    for k in range(0, n, 10_000):
        acc.update(y[k:k + 10_000], p[k:k + 10_000], groups=g[k:k + 10_000])
    reference = fastbce.score(y, p, groups=g, n_groups=50, backend="numpy")
    for name in ("log_loss", "count", "log_loss_positives", "log_loss_negatives", "calibration"):
        np.testing.assert_allclose(getattr(whole, name), getattr(reference, name), rtol=1e-6)
        np.testing.assert_allclose(getattr(acc.result(), name), getattr(reference, name),
                                   rtol=1e-6)
    assert fast_calls and all(fast_calls)
