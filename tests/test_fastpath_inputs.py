"""Inputs the fast path reads through its load helpers (kernels/c/loads.h, kernels/numba/loads.py)
instead of in place: float16 predictions (decoded per block to float32).

Each is checked against the general kernel's NumPy reference to the fast path's bounds (1e-6
relative for float32 math), for the same bits on both compiled backends and any thread count,
and against the fast path on the equivalent plain input (float32 predictions): the same math on
the same values, hence the same bits.
"""

import numpy as np
import pytest

import fastbce
from conftest import COMPILED_BACKENDS
from kernels.numba.loads import load_halves


def _same_bits(a, b):
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a.reshape(-1).view(np.uint8), b.reshape(-1).view(np.uint8))


# ---- float16 predictions -------------------------------------------------------------------------

def test_every_float16_decodes_exactly():
    """load_halves (the Numba twin of fb_load_halves) gives NumPy's float32 of every float16 bit
    pattern, NaN payloads and signed zeros included."""
    bits = np.arange(1 << 16, dtype=np.uint16)
    got = np.empty(bits.size, np.float32)
    load_halves(bits, bits.size, got)
    _same_bits(got, bits.view(np.float16).astype(np.float32))


def _half_probabilities(rng, shape):
    """float16 probabilities: every non-negative float16 <= 1 (subnormals, 0, 1 and the neighbours
    of the clip bounds included), then random ones, a few out of range."""
    every = np.arange(0x3c01, dtype=np.uint16).view(np.float16)  # 0 .. 1
    n = int(np.prod(shape))
    p = rng.random(n).astype(np.float16)
    p[:every.size] = rng.permutation(every)
    return p.reshape(shape)


def _half_logits(rng, shape):
    """float16 logits: every finite float16 (and ±inf), then random normal ones."""
    every = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    every = every[~np.isnan(every)]
    n = int(np.prod(shape))
    x = (rng.standard_normal(n) * 6).astype(np.float16)
    x[:every.size] = rng.permutation(every)
    return x.reshape(shape)


def _check_half(fast_calls, backend, y, p16, function=fastbce.bce, **kw):
    """The float16 call takes the fast path, gives the bits of the float32 call on the same values,
    the general kernel's value to 1e-6, and the same bits on the other backend and one thread."""
    fast_calls.clear()
    got = function(y, p16, backend=backend, **kw)
    assert fast_calls
    _same_bits(got, function(y, p16.astype(np.float32), backend=backend, **kw))
    want = function(y, p16, backend="numpy", **kw)
    if function is fastbce.bce:
        np.testing.assert_allclose(got, want, rtol=1e-6)
    else:  # a gradient: float32 elements
        np.testing.assert_allclose(got, want, rtol=4e-7, atol=1e-6 * np.nanmax(np.abs(want)))
    for other in COMPILED_BACKENDS:
        _same_bits(function(y, p16, backend=other, **kw), got)
    _same_bits(function(y, p16, backend=backend, n_threads=1, **kw), got)
    return got


def test_float16_probabilities(fast_calls, compiled_backend, rng):
    """Hard, byte and soft labels; every reduction; weights, mask, pos_weight, smoothing, omitted
    NaN; the gradient; focal loss. Input of several chunks."""
    shape = (2_000, 37)
    p16 = _half_probabilities(rng, shape)
    y = (rng.random(shape) < 0.3).astype(np.float32)
    ys = rng.random(shape).astype(np.float32)
    w = rng.random(shape).astype(np.float32)
    cases = [dict(), dict(reduction="sum"), dict(axis=0), dict(axis=1),
             dict(sample_weight=w, mask=ys > 0.1), dict(pos_weight=rng.uniform(0, 3, shape[1])),
             dict(label_smoothing=0.1, axis=1), dict(eps=1e-3)]
    for kw in cases:
        _check_half(fast_calls, compiled_backend, y, p16, **kw)
        _check_half(fast_calls, compiled_backend, ys, p16, **kw)
    _check_half(fast_calls, compiled_backend, y.astype(np.uint8), p16)
    groups = rng.integers(0, 5, shape[0])
    _check_half(fast_calls, compiled_backend, y, p16, groups=groups, n_groups=5)
    flat = p16.reshape(-1)
    _check_half(fast_calls, compiled_backend, y.reshape(-1), flat,
                groups=rng.integers(0, 9, flat.size), n_groups=9)
    for kw in (dict(), dict(axis=0, sample_weight=w)):
        _check_half(fast_calls, compiled_backend, y, p16, function=fastbce.bce_grad, **kw)
    _check_half(fast_calls, compiled_backend, y, p16, function=fastbce.focal_bce)


def test_float16_logits(fast_calls, compiled_backend, rng):
    """Every float16 logit (±inf too) with hard and soft labels, weights and the gradient."""
    shape = (70_001,)
    x16 = _half_logits(rng, shape)
    y = (rng.random(shape) < 0.5).astype(np.float32)
    ys = rng.random(shape).astype(np.float32)
    w = rng.random(shape).astype(np.float32)
    for labels in (y, ys):
        for kw in (dict(), dict(sample_weight=w, pos_weight=2.0)):
            _check_half(fast_calls, compiled_backend, labels, x16, from_logits=True, **kw)
    _check_half(fast_calls, compiled_backend, y, x16, function=fastbce.bce_grad, from_logits=True)


def test_float16_extremes_nan_and_errors(fast_calls, compiled_backend):
    """p = 0 and 1 (clipped to the float32 bounds), 1e-30 (0 in float16), the smallest subnormal,
    NaN (propagated, omitted, raised), inf and p > 1 (ValueError naming y_pred)."""
    y = np.array([1, 0, 1, 0, 1, 0], np.float32)
    p16 = np.array([0.0, 1.0, 1e-30, 2.0 ** -24, 6e-5, 0.5], np.float16)
    _check_half(fast_calls, compiled_backend, y, p16)
    _check_half(fast_calls, compiled_backend, y, p16, reduction="sum", axis=0)
    nan = p16.copy()
    nan[2] = np.nan
    assert np.isnan(fastbce.bce(y, nan, backend=compiled_backend))
    _check_half(fast_calls, compiled_backend, y, nan, nan_policy="omit")
    with pytest.raises(ValueError, match="NaN"):
        fastbce.bce(y, nan, nan_policy="raise", backend=compiled_backend)
    for bad in (np.inf, 1.5, -0.25):
        out = p16.copy()
        out[3] = bad
        with pytest.raises(ValueError, match="y_pred"):
            fastbce.bce(y, out, backend=compiled_backend)


# ---- pos_weight of any broadcast shape: per label, per sample, per element -----------------------

def _check_reference(fast_calls, backend, y, v, loss=fastbce.bce, **kw):
    """The fast path's value against the general kernel's NumPy reference (1e-6 relative for
    float32 math, 1e-12 for float64), the same bits on the other backend and on one thread."""
    fast_calls.clear()
    got = loss(y, v, backend=backend, **kw)
    assert fast_calls
    want = loss(y, v, backend="numpy", **kw)
    if loss in (fastbce.bce, fastbce.focal_bce):
        np.testing.assert_allclose(got, want, rtol=1e-6 if v.dtype == np.float32 else 1e-12)
    else:  # a gradient
        np.testing.assert_allclose(got, want, rtol=4e-7 if v.dtype == np.float32 else 1e-14,
                                   atol=1e-6 * np.nanmax(np.abs(want)))
    for other in COMPILED_BACKENDS:
        _same_bits(loss(y, v, backend=other, **kw), got)
    _same_bits(loss(y, v, backend=backend, n_threads=1, **kw), got)
    return got


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pos_weight_of_every_shape(fast_calls, compiled_backend, dtype, rng):
    """pos_weight per sample (n, 1), per element (n, m) and per label (m,), with 0 among them:
    hard and soft labels, probabilities and logits, weights, mask, omitted NaN, every reduction,
    the gradient, smoothing and focal loss."""
    dtype = np.dtype(dtype)
    shape = (2_000, 37)
    y = (rng.random(shape) < 0.3).astype(np.uint8)
    ys = rng.random(shape).astype(dtype)
    p = rng.random(shape).astype(dtype)
    p[0, :5] = [0.0, 1.0, 1e-30, 1.0, 0.0]
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    x[5, 3] = np.nan
    w = rng.random(shape).astype(dtype)
    pws = [rng.uniform(0, 3, (shape[0], 1)), rng.uniform(0, 3, shape).astype(np.float32)]
    pws[0][::7] = 0.0
    pws[1][:, 4] = 0.0
    groups = rng.integers(0, 7, shape[0])
    for pw in pws:
        cases = [dict(), dict(sample_weight=w, mask=p > 0.1, axis=0), dict(nan_policy="omit", axis=1),
                 dict(groups=groups, n_groups=7, reduction="sum"), dict(label_smoothing=0.1)]
        for labels in (y, ys):
            for v, logits in ((p, False), (x, True)):
                for kw in cases:
                    _check_reference(fast_calls, compiled_backend, labels, v, pos_weight=pw,
                                     from_logits=logits, **kw)
                _check_reference(fast_calls, compiled_backend, labels, v, loss=fastbce.bce_grad,
                                 pos_weight=pw, from_logits=logits, sample_weight=w)
        _check_reference(fast_calls, compiled_backend, y, p, loss=fastbce.focal_bce, pos_weight=pw)
    flat = rng.uniform(0, 3, shape[0])  # 1-D input, one pos_weight per element
    _check_reference(fast_calls, compiled_backend, y[:, 0], p[:, 0], pos_weight=flat)
    _check_reference(fast_calls, compiled_backend, y[:, 0], p[:, 0], pos_weight=flat,
                     groups=groups, n_groups=7)


@pytest.mark.parametrize("layout", ["F", "strided"])
def test_per_sample_pos_weight_in_slabs(fast_calls, compiled_backend, layout, rng):
    """Input copied in slabs (more than one): each slab's rows take their own pos_weight (the same
    bits as C order); the per-sample pos_weight itself strided or of another dtype."""
    shape = (30_000, 100)
    y = (rng.random(shape) < 0.3).astype(np.uint8)
    p = rng.random(shape).astype(np.float32)
    pw = rng.uniform(0, 3, (shape[0], 2))[:, :1]  # strided
    relayout = np.asfortranarray if layout == "F" else (lambda a: np.repeat(a, 2, axis=1)[:, ::2])
    for kw in (dict(), dict(axis=1), dict(axis=0)):
        want = _check_reference(fast_calls, compiled_backend, y, p, pos_weight=pw, **kw)
        fast_calls.clear()
        got = fastbce.bce(relayout(y), relayout(p), pos_weight=pw.astype(np.float32).astype(np.float64),
                          backend=compiled_backend, **kw)
        assert fast_calls
        _same_bits(got, want)


def test_bad_per_sample_pos_weight(compiled_backend, rng):
    """A negative, NaN or infinite pos_weight per sample is reported by the general kernel, naming
    pos_weight; one that only masked elements would use is not."""
    y = np.ones((50, 4), np.float32)
    p = np.full((50, 4), 0.5, np.float32)
    for bad in (-1.0, np.nan, np.inf):
        pw = np.ones((50, 1))
        pw[17] = bad
        with pytest.raises(ValueError, match="pos_weight"):
            fastbce.bce(y, p, pos_weight=pw, backend=compiled_backend)
    pw = np.ones((50, 1))
    pw[17] = -1.0
    mask = np.ones((50, 4), bool)
    mask[17] = False
    want = fastbce.bce(y, p, mask=mask, backend="numpy")
    np.testing.assert_allclose(fastbce.bce(y, p, pos_weight=pw, mask=mask, backend=compiled_backend),
                               want, rtol=1e-6)


# ---- strided input: read in place, gathered per block ---------------------------------------------

def test_strided_input_read_in_place(fast_calls, compiled_backend, monkeypatch, rng):
    """Inputs whose elements lie a constant stride apart (y[::2], p[::3], a column slice of rows
    that are whole) are read in place, not copied in slabs, and give the bits of C-ordered input:
    labels of each kind, float16/32/64 predictions, weights, mask, pos_weight, every reduction,
    the gradient into a new array; NaN and errors as for contiguous input."""
    from fastbce import _fastpath
    monkeypatch.setattr(_fastpath, "SLAB_ELEMENTS", 1)  # slabs of one chunk: a call per chunk
    n = 70_001
    y = (rng.random(n) < 0.3).astype(np.float32)
    ys = rng.random(n)
    p = rng.random(n)
    p[:4] = [0.0, 1.0, 1e-30, np.nan]
    w = rng.random(n).astype(np.float32)
    mask = rng.random(n) < 0.9
    groups = rng.integers(0, 9, n)

    def strided(a, step):
        big = np.zeros(a.size * step, a.dtype)
        big[::step] = a
        return big[::step]

    cases = [(y, p.astype(np.float32), dict(nan_policy="omit")),
             (y.astype(np.uint8), p.astype(np.float16), dict(nan_policy="omit", sample_weight=w)),
             (ys, p, dict(mask=mask, reduction="sum")),
             (y, p.astype(np.float32), dict(pos_weight=2.0, mask=mask, sample_weight=w,
                                            groups=groups, n_groups=9))]
    for labels, v, kw in cases:
        want = fastbce.bce(labels, v, backend=compiled_backend, **kw)
        for step in (2, 3):
            args = {k: strided(a, step) if isinstance(a, np.ndarray) and a.size == n and k != "groups"
                    else a for k, a in kw.items()}
            fast_calls.clear()
            got = fastbce.bce(strided(labels, step), strided(v, step), backend=compiled_backend, **args)
            assert len(fast_calls) == 1
            _same_bits(got, want)
            for other in COMPILED_BACKENDS:
                _same_bits(fastbce.bce(strided(labels, step), strided(v, step), backend=other,
                                       n_threads=1, **args), want)
    assert np.isnan(fastbce.bce(strided(y, 2), strided(p.astype(np.float32), 2), backend=compiled_backend))
    with pytest.raises(ValueError, match="y_true"):
        fastbce.bce(strided(ys * 2, 2), strided(p, 2), backend=compiled_backend, nan_policy="omit")
    x = (rng.standard_normal(n) * 4).astype(np.float32)
    want = fastbce.bce_value_and_grad(y, x, from_logits=True, sample_weight=w, backend=compiled_backend)
    got = fastbce.bce_value_and_grad(strided(y, 2), strided(x, 2), from_logits=True,
                                     sample_weight=strided(w, 2), backend=compiled_backend)
    _same_bits(got[0], want[0])
    _same_bits(got[1], want[1])
    shape = (700, 100)  # whole rows of every second column of a wider matrix: one stride
    y2, p2 = y[:70_000].reshape(shape), p[:70_000].astype(np.float32).reshape(shape)
    for kw in (dict(axis=0), dict(axis=1), dict(pos_weight=rng.uniform(0, 2, (700, 1)))):
        want = fastbce.bce(y2, p2, backend=compiled_backend, **kw)
        wide_y, wide_p = np.zeros((700, 200), np.float32), np.zeros((700, 200), np.float32)
        wide_y[:, ::2], wide_p[:, ::2] = y2, p2
        fast_calls.clear()
        _same_bits(fastbce.bce(wide_y.reshape(-1)[::2].reshape(shape), wide_p.reshape(-1)[::2].reshape(shape),
                               backend=compiled_backend, **kw), want)
        assert len(fast_calls) == 1


def test_strided_scoring_statistics(compiled_backend, rng):
    """The scoring pass copies strided input in slabs (its kernel reads in place only): the
    report of y[::2], p[::2] is that of their contiguous copies (the histogram pass sums strided
    input element by element, contiguous input in lanes: the same values to rounding)."""
    n = 70_001
    y = (rng.random(2 * n) < 0.3).astype(np.float32)
    p = rng.random(2 * n).astype(np.float32)
    want = fastbce.score(y[::2].copy(), p[::2].copy(), backend=compiled_backend).to_dict()
    got = fastbce.score(y[::2], p[::2], backend=compiled_backend).to_dict()
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-12, atol=0, err_msg=key)
