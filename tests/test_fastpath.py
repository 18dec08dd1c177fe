"""The fast path of the compiled backends (fastbce/_fastpath.py, kernels/c/*.h,
kernels/numba/*.py): its vectorised logarithm and exponential element by element, which calls
take it, its layouts and its instruction-set variants.

Element losses are read one by one as per-sample sums of an (n, 1) matrix: each row's sum is its
one element's loss (in the prediction dtype) converted to float64, exactly. They are compared in
ulp with the correctly rounded value of the formula evaluated on the same float inputs (float64
arithmetic for float32 inputs, long double for float64 inputs).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastbce
from conftest import COMPILED_BACKENDS
from oracle import clip_bounds
from test_focal import focal_elements
from fastbce import _backends
from fastbce._kernels import ROW_PRODUCT_COLS

EPS = 1e-7
# Bounds reached (and asserted): float32 losses and gradients within 2 ulp of the correctly
# rounded value (the issue allows 4), float64 within 2 ulp.
ULP_BOUND = {np.dtype(np.float32): 2, np.dtype(np.float64): 2}
MEAN_GRAD_ULP_BOUND = 4  # the bound, for the mean gradient from float32 logits


def _ulps(got, want):
    """Distance in units in the last place between arrays of one float dtype (same sign or 0)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype
    int_type = np.int32 if got.dtype == np.float32 else np.int64

    def ordered(a):
        i = a.view(int_type).astype(np.int64)
        return np.where(i < 0, np.iinfo(int_type).min - i, i)

    both_nan = np.isnan(got) & np.isnan(want)
    return np.where(both_nan, 0, np.abs(ordered(got) - ordered(want)))


def _probabilities(dtype, n, rng):
    """Random bit patterns across [tiny, 1] (every binade equally), the clip bounds and their
    neighbours, 0, 1, subnormals and values near 1/2 and 1."""
    tiny = np.finfo(dtype).tiny
    logs = rng.uniform(np.log2(tiny), 0.0, n)
    p = np.exp2(logs).astype(dtype)
    lo, hi = dtype.type(EPS), dtype.type(1 - EPS)
    special = [0.0, 1.0, tiny, tiny / 4, 0.5, 1 - np.finfo(dtype).epsneg, np.finfo(dtype).epsneg,
               lo, hi, np.nextafter(lo, dtype.type(0)), np.nextafter(lo, dtype.type(1)),
               np.nextafter(hi, dtype.type(0)), np.nextafter(hi, dtype.type(1))]
    near_one = 1 - np.exp2(rng.uniform(np.log2(np.finfo(dtype).epsneg), -1, n // 4))
    return np.concatenate([p, np.array(special, dtype), near_one.astype(dtype)])


def _element_losses(y, v, backend, **options):
    """Each element's loss, read from per-sample sums of an (n, 1) matrix (float64 holding the
    prediction dtype's value)."""
    return fastbce.bce(y[:, None], v[:, None], axis=1, reduction="sum", backend=backend, **options)


def _prob_reference(y, p, wide):
    """-[y·log q + (1-y)·log(1-q)], q = p clipped to [eps, 1 - eps] rounded to p's dtype,
    evaluated in `wide`."""
    q = np.clip(p.astype(wide), *map(wide, clip_bounds(EPS, p.dtype)))
    y = y.astype(wide)
    pos = np.where(y != 0, -y * np.log(q), 0)
    neg = np.where(y != 1, -(1 - y) * np.log1p(-q), 0)
    return pos + neg


def _logit_reference(y, x, wide):
    x, y = x.astype(wide), y.astype(wide)
    softplus = np.log1p(np.exp(-np.abs(x)))
    return np.where(x >= 0, np.where(y != 1, (1 - y) * x, 0), np.where(y != 0, -y * x, 0)) + softplus


def _wide(dtype):
    return np.float64 if dtype == np.float32 else np.longdouble


def _check_ulps(got, reference, dtype, bound=None):
    got = np.asarray(got).astype(dtype)
    want = np.asarray(reference).astype(dtype)
    ulps = _ulps(got, want)
    worst = int(ulps.max())
    bound = ULP_BOUND[np.dtype(dtype)] if bound is None else bound
    assert worst <= bound, (worst, got[ulps.argmax()], want[ulps.argmax()])
    return worst


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_hard_label_losses_are_within_the_ulp_bound(fast_calls, compiled_backend, dtype, rng):
    dtype = np.dtype(dtype)
    p = _probabilities(dtype, 200_000, rng)
    for label in (0, 1):
        y = np.full(p.shape, label, np.uint8)
        _check_ulps(_element_losses(y, p, compiled_backend), _prob_reference(y, p, _wide(dtype)), dtype)
    assert fast_calls


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_soft_label_losses_are_within_the_ulp_bound(fast_calls, compiled_backend, dtype, rng):
    dtype = np.dtype(dtype)
    p = _probabilities(dtype, 100_000, rng)
    y = rng.random(p.shape).astype(dtype)
    y[::7] = 0.5
    _check_ulps(_element_losses(y, p, compiled_backend), _prob_reference(y, p, _wide(dtype)), dtype)
    assert fast_calls


def _logits(dtype, n, rng):
    big = np.finfo(dtype).max
    x = np.concatenate([rng.normal(0, 8, n), rng.uniform(-120, 120, n // 2),
                        np.exp2(rng.uniform(-140, np.log2(big), n // 4)) * rng.choice([-1, 1], n // 4)])
    special = [0.0, -0.0, 1e4, -1e4, 16.0, -16.0, 88.0, -88.0, 104.0, -104.0, 745.0, -745.0, big, -big]
    return np.concatenate([x, special]).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logit_losses_are_within_the_ulp_bound(fast_calls, compiled_backend, dtype, rng):
    dtype = np.dtype(dtype)
    with np.errstate(over="ignore"):
        x = _logits(dtype, 100_000, rng)
    for y in (np.zeros(x.shape, dtype), np.ones(x.shape, dtype), rng.random(x.shape).astype(dtype)):
        got = _element_losses(y, x, compiled_backend, from_logits=True)
        _check_ulps(got, _logit_reference(y, x, _wide(dtype)), dtype)
    assert fast_calls


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradients_are_within_the_ulp_bound(fast_calls, compiled_backend, dtype, rng):
    dtype = np.dtype(dtype)
    wide = _wide(dtype)
    y = (rng.random(100_000) < 0.5).astype(dtype)
    p = _probabilities(dtype, y.size, rng)[:y.size]
    q = p.astype(wide)
    inside = (p >= dtype.type(EPS)) & (p <= dtype.type(1 - EPS))
    want = np.where(inside, (q - y.astype(wide)) / (q * (1 - q)), 0)
    got = fastbce.bce_grad(y, p, reduction="sum", backend=compiled_backend)
    assert got.dtype == dtype
    _check_ulps(np.abs(got), np.abs(want), dtype)
    with np.errstate(over="ignore"):
        x = _logits(dtype, y.size, rng)[:y.size]
    xw = x.astype(wide)
    sigma = np.where(xw >= 0, 1 / (1 + np.exp(-np.abs(xw))), np.exp(-np.abs(xw)) / (1 + np.exp(-np.abs(xw))))
    want = np.where(y == 1, -np.where(xw >= 0, np.exp(-np.abs(xw)) / (1 + np.exp(-np.abs(xw))),
                                      1 / (1 + np.exp(-np.abs(xw)))), sigma)
    got = fastbce.bce_grad(y, x, from_logits=True, reduction="sum", backend=compiled_backend)
    _check_ulps(np.abs(got), np.abs(want), dtype)
    # the mean: float32 logits of 0/1 labels take the scale 1/n rounded to float32 (measured: 3)
    got = fastbce.bce_grad(y, x, from_logits=True, backend=compiled_backend)
    _check_ulps(np.abs(got), np.abs(want) / y.size, dtype, MEAN_GRAD_ULP_BOUND)
    assert fast_calls


def test_what_takes_the_fast_path(fast_calls, compiled_backend, rng):
    """The common calls take it; options it does not compute go to the general kernel, with the
    same results as the NumPy reference (checked by the rest of the suite)."""
    y = (rng.random((40, 5)) < 0.5).astype(np.float32)
    p = rng.random((40, 5)).astype(np.float32)
    kw = dict(backend=compiled_backend)
    fast = [lambda: fastbce.score(y, p, **kw), lambda: fastbce.bce(y, p, **kw), lambda: fastbce.bce(y.astype(bool), p, axis=0, **kw),
            lambda: fastbce.bce(y, p, axis=1, sample_weight=p, mask=p > 0.2, **kw),
            lambda: fastbce.bce(y, p, groups=np.arange(40) % 3, **kw),
            lambda: fastbce.bce_grad(y, p, from_logits=True, **kw),
            lambda: fastbce.bce_value_and_grad(y.astype(np.float64), p.astype(np.float64), **kw)]
    fast += [lambda: fastbce.bce(y, p, pos_weight=2.0, label_smoothing=0.1, **kw),
             lambda: fastbce.bce_value_and_grad(y, p, label_smoothing=0.1, from_logits=True, **kw),
             lambda: fastbce.bce_grad(y, p, pos_weight=np.arange(5.0), axis=0, **kw),
             lambda: fastbce.focal_bce(y, p, **kw),
             lambda: fastbce.focal_bce_value_and_grad(y, p, gamma=1.5, alpha=0.25, **kw),
             lambda: fastbce.focal_bce_grad(y, p.astype(np.float64), gamma=7.0, from_logits=True, **kw),
             lambda: fastbce.bce(y, p.astype(np.float16), **kw),
             lambda: fastbce.bce(y, p, pos_weight=np.arange(40.0)[:, None], **kw)]  # per sample
    general = [lambda: fastbce.bce(y, p, reduction="none", **kw),
               # a coefficient of the terms would not be a normal float32
               lambda: fastbce.bce(y, p, pos_weight=1e-300, **kw),
               lambda: fastbce.bce(y, p, label_smoothing=1e-40, **kw),
               lambda: fastbce.bce(y, p, pos_weight=-1.0, **kw),  # reported by the general kernel
               lambda: fastbce.bce(y.astype(np.float64), p, **kw),  # soft float64 labels, float32 math
               # float64 predictions: (1-p_t)^γ by squaring only
               lambda: fastbce.focal_bce(y, p.astype(np.float64), gamma=1.5, **kw),
               lambda: fastbce.focal_bce(y, p.astype(np.float64), gamma=8.0, **kw)]
    for call in fast:
        fast_calls.clear()
        call()
        assert fast_calls, call
    for call in general:
        fast_calls.clear()
        try:
            call()
        except ValueError:
            pass
        assert not fast_calls


@pytest.mark.parametrize("layout", ["F", "strided", "transposed"])
def test_every_layout_gives_the_c_order_result(fast_calls, compiled_backend, layout, rng):
    """Non-contiguous inputs are copied to C order a slab of whole chunks at a time: the same chunks
    and sums, so the same bits as C-ordered input (a matrix bigger than one slab). Per-label
    reductions of Fortran-ordered input are per-row passes over the transposes, in place: the
    same values to rounding."""
    shape = (30_000, 100)
    y = (rng.random(shape) < 0.3).astype(np.uint8)
    p = rng.random(shape).astype(np.float32)
    w = rng.random(shape).astype(np.float32)

    def relayout(a):
        if layout == "F":
            return np.asfortranarray(a)
        if layout == "strided":
            big = np.zeros((shape[0], 2 * shape[1]), a.dtype)
            big[:, ::2] = a
            return big[:, ::2]
        return np.ascontiguousarray(a.T).T

    for kw in (dict(axis=0), dict(axis=1), dict(), dict(sample_weight=w, axis=0)):
        want = fastbce.bce(y, p, backend=compiled_backend, **kw)
        fast_calls.clear()
        got = fastbce.bce(relayout(y), relayout(p), backend=compiled_backend,
                          **{k: relayout(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()})
        assert fast_calls
        if layout != "strided" and kw.get("axis") == 0:
            np.testing.assert_allclose(got, want, rtol=1e-6)
            assert not np.array_equal(got, want)  # really the other summation order
        else:
            np.testing.assert_array_equal(got, want)
    want = fastbce.bce_grad(y, p, axis=0, backend=compiled_backend)
    got = fastbce.bce_grad(relayout(y), relayout(p), axis=0, backend=compiled_backend)
    np.testing.assert_array_equal(got, want)


def test_per_row_and_per_group_sums_match_the_reference(compiled_backend, rng):
    """Rows longer than a block and than a chunk, summed in lanes by column, with the first
    columns of a row in another block than its last, and rows shorter than the lanes, added
    element by element (float64: 1e-12 of the reference)."""
    for shape in ((3, 70_001), (2_000, 37), (40, 1_000), (5_000, 7), (100_000, 1)):
        y = rng.random(shape)
        p = rng.random(shape)
        groups = rng.integers(0, 5, shape[0])
        for kw in (dict(axis=1), dict(groups=groups, n_groups=5), dict(axis=0)):
            want = fastbce.bce(y, p, backend="numpy", **kw)
            got = fastbce.bce(y, p, backend=compiled_backend, **kw)
            np.testing.assert_allclose(got, want, rtol=1e-12)
            got_f = fastbce.bce(np.asfortranarray(y), np.asfortranarray(p), backend=compiled_backend, **kw)
            np.testing.assert_allclose(got_f, want, rtol=1e-12)



_GROUP_ID_DTYPES = (np.int64, np.int32, np.int16, np.uint8)


def _per_group_in_kernel_order(losses, w, g, n_groups):
    """Per-group sums of 1-D input added as the kernel adds them: in each chunk, every group's
    w·loss and w in element order (np.add.at is sequential), then the chunks' sums as
    fastbce._engine adds them."""
    from fastbce._engine import chunking
    from fastbce._kernels import MODE_GROUPS

    rows, n_chunks = chunking(losses.size, 1, MODE_GROUPS, n_groups)
    sums = np.zeros((n_chunks, n_groups, 2))
    for c in range(n_chunks):
        part = slice(c * rows, (c + 1) * rows)
        np.add.at(sums[c, :, 0], g[part], losses[part])
        np.add.at(sums[c, :, 1], g[part], w[part])
    return np.ascontiguousarray(np.moveaxis(sums, 0, -1)).sum(axis=-1)


def _group_ids(rng, n, n_groups, order):
    """Random ids (the kernels update each element's group in memory), sorted ones (long runs of
    one id: the current group kept in registers), or "mixed": random, then runs of 1 to 60, then
    sorted, so that one call takes both loops, block by block."""
    g = rng.integers(0, n_groups, n)
    if order == "sorted":
        g.sort()
    elif order == "mixed":
        runs = np.repeat(g[: n // 3], rng.integers(1, 61, n // 3))[: n // 3]
        g = np.concatenate([g[: n // 3], runs, np.sort(g[2 * (n // 3):])])[:n]
    return g


@pytest.mark.parametrize("order", ["random", "sorted", "mixed"])
def test_per_group_1d_adds_each_element_in_order(fast_calls, compiled_backend, order, rng):
    """1-D input by group, over several chunks and blocks, with weights and a mask (float32), and
    without (float64: float32 without weights takes the product path by group,
    test_per_group_products): the result is, bit for bit, each group's w·loss and w added in
    element order per chunk (the element losses read back from the fast path itself, per sample),
    for int64, int32, int16 and uint8 ids, random, sorted or mixed (_group_ids: the kernels'
    two scatter loops make the same additions)."""
    n, n_groups = 100_003, 37
    y32 = (rng.random(n) < 0.4).astype(np.float32)
    p32 = rng.random(n).astype(np.float32)
    w = rng.random(n).astype(np.float32)
    mask = rng.random(n) < 0.8
    g = _group_ids(rng, n, n_groups, order)
    kw = dict(backend=compiled_backend)
    for weights, dtype in ((dict(), np.float64), (dict(sample_weight=w, mask=mask), np.float32)):
        y, p = y32.astype(dtype), p32.astype(dtype)
        # w·loss of each element (float64, exactly as the kernel forms it), and its counted weight
        wl = fastbce.bce(y[:, None], p[:, None], axis=1, reduction="sum", **kw,
                         **{k: v[:, None] for k, v in weights.items()})
        counted = np.ones(n) if not weights else np.where(mask, w.astype(np.float64), 0.0)
        totals = _per_group_in_kernel_order(wl, counted, g, n_groups)
        want_sum, want_mean = totals[:, 0], totals[:, 0] / totals[:, 1]
        for dtype in _GROUP_ID_DTYPES:
            ids = g.astype(dtype)
            fast_calls.clear()
            got_sum = fastbce.bce(y, p, groups=ids, n_groups=n_groups, reduction="sum", **kw, **weights)
            got_mean = fastbce.bce(y, p, groups=ids, n_groups=n_groups, **kw, **weights)
            assert fast_calls
            np.testing.assert_array_equal(got_sum, want_sum)
            np.testing.assert_array_equal(got_mean, want_mean)
        ref = fastbce.bce(y, p, groups=g, n_groups=n_groups, backend="numpy", **weights)
        np.testing.assert_allclose(want_mean, ref, rtol=1e-6)


def test_group_id_dtypes_give_the_same_bits(fast_calls, compiled_backend, rng):
    """int64, int32, int16 and uint8 ids (read in place or converted), contiguous or strided, give
    the same bits for 1-D and 2-D input (rows shorter than the lanes and rows in lanes), with and
    without weights and a mask, and agree with the NumPy reference."""
    n_groups = 11
    for shape in ((70_001,), (9_000, 3), (2_000, 40)):
        y = (rng.random(shape) < 0.5).astype(np.float32)
        p = rng.random(shape).astype(np.float32)
        w = rng.random(shape).astype(np.float32)
        mask = rng.random(shape) < 0.7
        g = rng.integers(0, n_groups, shape[0])
        for weights in (dict(), dict(sample_weight=w, mask=mask)):
            want = fastbce.bce(y, p, groups=g, n_groups=n_groups, backend=compiled_backend, **weights)
            ref = fastbce.bce(y, p, groups=g, n_groups=n_groups, backend="numpy", **weights)
            np.testing.assert_allclose(want, ref, rtol=1e-6)
            for dtype in _GROUP_ID_DTYPES:
                strided = np.zeros(2 * shape[0], dtype)
                strided[::2] = g
                for ids in (g.astype(dtype), strided[::2]):
                    fast_calls.clear()
                    got = fastbce.bce(y, p, groups=ids, n_groups=n_groups, backend=compiled_backend,
                                      **weights)
                    assert fast_calls
                    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", _GROUP_ID_DTYPES)
def test_group_ids_out_of_range_raise(compiled_backend, dtype, rng):
    """A negative id or one >= n_groups (one id, in a later chunk, the others valid) raises the
    same error for every id dtype, 1-D and 2-D input, with and without weights."""
    n, n_groups = 40_000, 7
    for shape in ((n,), (n, 2), (n // 20, 20)):
        y = (rng.random(shape) < 0.5).astype(np.float32)
        p = rng.random(shape).astype(np.float32)
        bad_ids = [n_groups, 200] + ([-1] if np.dtype(dtype).kind == "i" else [])
        for bad in bad_ids:
            g = (np.arange(shape[0]) % n_groups).astype(dtype)
            g[-3] = bad
            for weights in (dict(), dict(sample_weight=p, mask=p > 0.1)):
                with pytest.raises(ValueError, match=r"groups has ids outside \[0, n_groups\)"):
                    fastbce.bce(y, p, groups=g, n_groups=n_groups, backend=compiled_backend,
                                **weights)


@pytest.mark.parametrize("shape", [(3_000, 100), (40_000, 17), (2_000, 300), (50, 70_001)])
def test_product_path_by_axis_same_bits_on_both_backends(shape, rng):
    """float32 0/1 labels by label, by sample and by group of rows, probabilities (some at the clip
    bounds) and logits: rows shorter and longer than a block, not multiples of the 64 product
    lanes. The two backends split their lane products at different blocks (an exact power-of-two
    move) and normalise them before the logarithms, so they give the same bits; within 1e-6 of
    the NumPy reference."""
    y = (rng.random(shape) < 0.4).astype(np.float32)
    p = rng.random(shape).astype(np.float32)
    p.flat[::97] = np.float32(1 - 1e-9)
    p.flat[::89] = 0.0
    x = (rng.standard_normal(shape) * 8).astype(np.float32)
    groups = rng.integers(0, 7, shape[0])
    for kw in (dict(axis=0), dict(axis=1), dict(groups=groups, n_groups=7)):
        for v, logits in ((p, False), (x, True)):
            got = [fastbce.bce(y, v, from_logits=logits, reduction="sum", backend=b, **kw)
                   for b in COMPILED_BACKENDS]
            np.testing.assert_array_equal(got[0], got[1])
            want = fastbce.bce(y, v, from_logits=logits, reduction="sum", backend="numpy", **kw)
            np.testing.assert_allclose(got[0], want, rtol=1e-6)


@pytest.mark.parametrize("order", ["random", "sorted", "mixed"])
def test_per_group_products(fast_calls, compiled_backend, order, rng):
    """float32 1-D input by group, 0/1 labels, no weights: the probability of each element's
    observed class (from logits, 1 + exp(-|x|)) multiplied into its group's product, one logarithm
    per group and chunk. Per-group sums and means within 1e-6 of the float64 reference for
    probabilities across the binades with 0, 1 and the clip bounds, near-perfect predictions
    (losses ~1e-7; sorted ids give runs of 40,000 factors, whose products are split many times)
    and logits up to ±1e4 and ±inf; the same bits for 1 and 2 threads and both backends. A NaN
    makes its own group NaN and leaves the others' bits; more groups than 1/8 of a chunk's rows
    take a logarithm per element (same result to 1e-6)."""
    n, n_groups = 200_003, 5
    g = _group_ids(rng, n, n_groups, order)
    y = (rng.random(n) < 0.4).astype(np.float32)
    p = rng.permutation(_probabilities(np.dtype(np.float32), n, rng))[:n]
    near = np.where(y > 0, 1 - rng.random(n) * 1e-7, 1e-7 + rng.random(n) * 1e-7).astype(np.float32)
    x = np.concatenate([rng.standard_normal(n // 2) * 4, rng.standard_normal(n // 2) * 40,
                        [0.0, 1e-30, 21.0, 104.0, 1e4, -1e4, np.inf, -np.inf]]).astype(np.float32)
    x = rng.permutation(x)[:n]
    cases = [(p, False), (near, False), (x, True)]
    for v, logits in cases:
        if logits:  # softplus of the wrong side's logit, exact at ±inf
            loss = np.logaddexp(0.0, np.where(y > 0, -1.0, 1.0) * v.astype(np.float64))
        else:
            loss = _prob_reference(y, v, np.float64)
        want = np.bincount(g, weights=loss, minlength=n_groups)
        kw = dict(groups=g, n_groups=n_groups, from_logits=logits)
        fast_calls.clear()
        got = fastbce.bce(y, v, reduction="sum", backend=compiled_backend, **kw)
        assert fast_calls
        np.testing.assert_allclose(got, want, rtol=1e-6)
        mean = fastbce.bce(y, v, backend=compiled_backend, **kw)
        np.testing.assert_allclose(mean, want / np.bincount(g, minlength=n_groups), rtol=1e-6)
        for other in COMPILED_BACKENDS:
            for threads in (1, 2):
                np.testing.assert_array_equal(
                    fastbce.bce(y, v, reduction="sum", backend=other, n_threads=threads, **kw), got)
        bad = v.copy()
        bad[n // 2] = np.nan
        with_nan = fastbce.bce(y, bad, reduction="sum", backend=compiled_backend, **kw)
        others = np.arange(n_groups) != g[n // 2]
        assert np.isnan(with_nan[g[n // 2]])
        np.testing.assert_array_equal(with_nan[others], got[others])
    # 1,000 groups over 3,000 rows (one chunk): a logarithm per element, the same sums to 1e-6
    few, many = slice(0, 3_000), rng.integers(0, 1_000, 3_000)
    got = fastbce.bce(y[few], p[few], groups=many, n_groups=1_000, reduction="sum",
                      backend=compiled_backend)
    want = np.bincount(many, weights=_prob_reference(y[few], p[few], np.float64), minlength=1_000)
    np.testing.assert_allclose(got, want, rtol=1e-6)


_VARIANT_SCRIPT = """
import json, sys
import numpy as np
import fastbce
from fastbce._kernels import cython_kernels
rng = np.random.default_rng(5)
y = (rng.random(300_001) < 0.4).astype(np.float32)
out = {"variant": cython_kernels.SIMD_VARIANT, "values": []}
for dtype in (np.float32, np.float64):
    p = rng.random(y.size).astype(dtype)
    x = (rng.standard_normal(y.size) * 6).astype(dtype)
    ys = rng.random(y.size).astype(dtype)
    for value in (fastbce.bce(y, p, backend="cython"), fastbce.bce(ys, p, backend="cython"),
                  fastbce.bce(y, x, from_logits=True, backend="cython"),
                  fastbce.bce_grad(y, x, from_logits=True, backend="cython")[:1000].astype(float).tolist(),
                  fastbce.bce(y.reshape(-1, 1)[:300_000].reshape(-1, 100), p[:300_000].reshape(-1, 100),
                              axis=0, backend="cython").tolist()):
        out["values"].append(value)
json.dump(out, sys.stdout)
"""


def _variant_values(variant):
    env = dict(os.environ, FASTBCE_SIMD=variant)
    result = subprocess.run([sys.executable, "-c", _VARIANT_SCRIPT], env=env, capture_output=True,
                            text=True, timeout=300, check=True)
    return json.loads(result.stdout)


@pytest.mark.skipif("cython" not in COMPILED_BACKENDS, reason="the Cython backend is not built")
def test_instruction_set_variants_agree():
    """v4 (AVX-512) and v3 (AVX2) use fused multiply-adds at the same places: the same bits (as
    the Numba backend, test_backends.py); the baseline (no FMA) rounds the products separately:
    within the fidelity bounds of the others."""
    import fastbce._kernels.cython_kernels as cython_kernels

    variants = {"v4": "AVX-512", "v3": "AVX2", "base": "baseline"}
    runs = {name: _variant_values(name) for name in variants}
    native = cython_kernels.SIMD_VARIANT
    for name, run in runs.items():
        if variants[name] in native or name == "base":
            assert variants[name] in run["variant"] or "portable" in run["variant"]
    fma_runs = [run for run in runs.values() if "FMA" in run["variant"] and "no FMA" not in run["variant"]]
    for run in fma_runs[1:]:
        assert run["values"] == fma_runs[0]["values"]
    base = runs["base"]["values"]
    for run in fma_runs:
        for got, want in zip(base, run["values"]):
            np.testing.assert_allclose(got, want, rtol=1e-6)


# ---- the product path: Σ loss = -log Π q for float32 probabilities with 0/1 labels -----------------

def _reference_sum(y, p, eps):
    """Σ loss in float64 (clip to the bounds of p's dtype, log / log1p)."""
    q = np.clip(p.astype(np.float64), *clip_bounds(eps, p.dtype))
    return -np.sum(np.where(y.astype(bool), np.log(q), np.log1p(-q)), axis=0)


@pytest.mark.parametrize("p_value, y_value", [(1 - 2.0 ** -24, 1), (2.0 ** -24, 0), (0.3, 1),
                                              (0.999, 0), (0.0, 0), (1.0, 1), (1e-30, 1)])
def test_means_of_equal_elements_are_exact_to_rounding(fast_calls, compiled_backend, p_value, y_value):
    """Equal elements: a logarithm per element would repeat one float32 rounding error (up to
    1e-7 of the value); the product path's mean is within 1e-12 of the float64 value plus its own
    bound (each factor rounded to 2^-53, relative to one element's loss: 1e-9 at the clip bound
    1e-7), for the whole array, per label (C and Fortran order) and per sample of rows long enough
    for the product path."""
    p = np.full((1_000, ROW_PRODUCT_COLS), p_value, np.float32)
    y = np.full(p.shape, y_value, np.uint8)
    want = _reference_sum(y.ravel(), p.ravel(), EPS) / p.size
    rtol = 1e-12 + 2.0 ** -52 / want
    assert fastbce.bce(y, p, backend=compiled_backend) == pytest.approx(want, rel=rtol)
    assert fastbce.bce(y.astype(np.float32), p, backend=compiled_backend) == pytest.approx(want, rel=rtol)
    for order in "CF":
        yo, po = np.asarray(y, order=order), np.asarray(p, order=order)
        for axis in (0, 1):
            np.testing.assert_allclose(fastbce.bce(yo, po, axis=axis, backend=compiled_backend), want,
                                       rtol=rtol)
    assert fast_calls


def test_long_products_do_not_underflow(compiled_backend):
    """q = eps for every element: without the exponent kept apart, 32 factors would underflow."""
    for shape, axis in (((3_000_001,), None), ((70_000, 33), 0), ((3, 200_003), 1)):
        p = np.zeros(shape, np.float32)
        y = np.ones(shape, np.uint8)
        got = fastbce.bce(y, p, axis=axis, backend=compiled_backend, reduction="sum")
        lo = clip_bounds(EPS, p.dtype)[0]
        np.testing.assert_allclose(got, -np.log(lo) * (p.size if axis is None else shape[axis]),
                                   rtol=1e-12)


@pytest.mark.parametrize("eps", [2.0 ** -24, 1e-7, 1e-4, 0.2])
def test_product_path_against_the_reference(compiled_backend, eps, rng):
    """Random probabilities across every binade, the clip bounds, 0 and 1, per-label and
    per-sample sums: within 1e-9 of the float64 value. With soft labels in some blocks (those take
    the logarithm per element): within the documented 1e-6. Cython and Numba: the same bits.
    (float32 predictions need eps > 2^-25, so their lower bound is always >= 2^-28 here.)"""
    n = 600_000
    p = np.concatenate([rng.permutation(_probabilities(np.dtype(np.float32), n, rng))[:n - 6],
                        np.array([0, 1, eps, 1 - eps, eps / 2, 1 - eps / 2], np.float32)])
    rng.shuffle(p)
    y = (rng.random(n) < 0.5).astype(np.float32)
    soft = np.where(np.arange(n) // 700 % 5 == 0, rng.random(n), y).astype(np.float32)
    for labels, rtol in ((y, 1e-9), (soft, 1e-6)):
        q = np.clip(p.astype(np.float64), *clip_bounds(eps, p.dtype))
        want = -(labels * np.log(q) + (1 - labels) * np.log1p(-q))
        got = fastbce.bce(labels, p, eps=eps, backend=compiled_backend, reduction="sum")
        assert got == pytest.approx(want.sum(), rel=rtol)
        shape = (-1, ROW_PRODUCT_COLS)  # rows long enough for the product path
        for axis in (0, 1):
            got = fastbce.bce(labels.reshape(shape), p.reshape(shape), axis=axis, eps=eps,
                              backend=compiled_backend, reduction="sum")
            np.testing.assert_allclose(got, want.reshape(shape).sum(axis=axis), rtol=rtol)
        others = [b for b in COMPILED_BACKENDS if b != compiled_backend]
        for other in others:
            assert fastbce.bce(labels, p, eps=eps, backend=other) == fastbce.bce(
                labels, p, eps=eps, backend=compiled_backend)


def test_product_path_errors_and_nan(compiled_backend):
    """NaN propagates (or raises, or is left out), a prediction outside [0, 1] raises, as on the
    other paths, wherever it is in a chunk."""
    p = np.full(100_000, 0.25, np.float32)
    y = np.zeros(p.size, np.uint8)
    for where in (0, 777, p.size - 1):
        bad = p.copy()
        bad[where] = np.nan
        assert np.isnan(fastbce.bce(y, bad, backend=compiled_backend))
        assert np.isnan(fastbce.bce(y.reshape(-1, 20), bad.reshape(-1, 20), axis=0,
                                    backend=compiled_backend)[where % 20])
        with pytest.raises(ValueError, match="NaN"):
            fastbce.bce(y, bad, nan_policy="raise", backend=compiled_backend)
        assert fastbce.bce(y, bad, nan_policy="omit", backend=compiled_backend) == pytest.approx(
            -np.log(0.75), rel=1e-6)  # a mask: a logarithm per element
        bad[where] = 1.5
        with pytest.raises(ValueError, match="y_pred"):
            fastbce.bce(y, bad, backend=compiled_backend)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("form", ["soft", "hard", "logits"])
def test_unchecked_blocks_errors_and_nan(compiled_backend, dtype, form, rng):
    """The loss loops run a block without checks first and again checked when it holds a NaN or
    a probability outside [0, 1] (fb_loss_block's `clean`, kernels/c/blocks.h): wherever the bad element is, NaN
    propagates there only (every other loss keeps its bits), raises or is left out, and a bad
    prediction raises. Forms off the product path: soft labels, hard labels with eps < 2^-28
    (float64; float32 predictions need eps > 2^-25, and their hard labels take the product path
    for whole sums), soft labels from logits."""
    n = 3000  # several blocks
    logits = form == "logits"
    eps = 1e-10 if form == "hard" and np.dtype(dtype) == np.float64 else 1e-7
    y = (rng.random(n) < 0.5).astype(dtype)
    if form != "hard":
        y = (0.8 * y + 0.1 * rng.random(n)).astype(dtype)
    v = (rng.normal(0, 3, n) if logits else rng.uniform(0.01, 0.99, n)).astype(dtype)
    options = dict(from_logits=logits, eps=eps)
    clean = _element_losses(y, v, compiled_backend, **options)
    for where in (0, 700, n - 1):
        for bad_y in ([False, True] if form != "hard" else [False]):
            yb, vb = y.copy(), v.copy()
            (yb if bad_y else vb)[where] = np.nan
            got = _element_losses(yb, vb, compiled_backend, **options)
            assert np.isnan(got[where])
            others = np.arange(n) != where
            np.testing.assert_array_equal(got[others], clean[others])
            assert np.isnan(fastbce.bce(yb, vb, backend=compiled_backend, **options))
            with pytest.raises(ValueError, match="NaN"):
                fastbce.bce(yb, vb, nan_policy="raise", backend=compiled_backend, **options)
            omitted = fastbce.bce(yb, vb, nan_policy="omit", backend=compiled_backend, **options)
            assert omitted == pytest.approx(clean[others].mean(), rel=1e-6)
        if not logits:
            vb = v.copy()
            vb[where] = 1.5
            with pytest.raises(ValueError, match="y_pred"):
                fastbce.bce(y, vb, backend=compiled_backend, **options)


@pytest.mark.parametrize("eps", [2.0 ** -28, 1e-7, 0.2])
def test_float64_product_path_against_the_reference(fast_calls, compiled_backend, eps, rng):
    """float64 probabilities, 0/1 labels, whole-array sums: the product path with each product's
    rounding kept (compensated). Within 1e-13 of the float64 reference on probabilities across
    every binade with the clip bounds, 0 and 1; on near-perfect predictions (losses ~1e-10, where
    2^-53 per uncompensated factor would be up to ~1e-6 of the sum) and equal elements; soft-label
    blocks (a logarithm per element there). NaN propagates; Cython and Numba the same bits."""
    n = 300_001
    p = rng.permutation(_probabilities(np.dtype(np.float64), n, rng))[:n]
    p[:4] = [0.0, 1.0, eps, 1 - eps]
    y = (rng.random(n) < 0.5).astype(np.float64)
    near = np.where(y > 0, 1 - rng.random(n) * 1e-10, rng.random(n) * 1e-10)
    soft = np.where(np.arange(n) // 700 % 5 == 0, rng.random(n), y)
    for labels, probs in ((y, p), (y, near), (soft, p), (np.ones(n), np.full(n, 1 - 3e-9))):
        q = np.clip(probs, eps, 1 - eps)
        want = -np.sum(labels * np.log(q) + (1 - labels) * np.log1p(-q))
        fast_calls.clear()
        got = fastbce.bce(labels, probs, eps=eps, backend=compiled_backend, reduction="sum")
        assert fast_calls
        assert got == pytest.approx(want, rel=1e-13)
        for other in COMPILED_BACKENDS:
            assert fastbce.bce(labels, probs, eps=eps, backend=other, reduction="sum") == got
    bad = p.copy()
    bad[12_345] = np.nan
    assert np.isnan(fastbce.bce(y, bad, eps=eps, backend=compiled_backend))


def test_product_path_from_logits(compiled_backend, rng):
    """Logits with 0/1 labels: Σ log1p(exp(-|x|)) as the log of a product, the rest summed;
    exp(-|x|) < 2^-28 summed as it is. Whole, per-label and per-sample sums within 1e-6 of the
    float64 value (the float32 exponential's 2 ulp, not the product, bound it), exactly 0 and inf
    where they belong, NaN propagated; the fused loss + gradient gives bce's value; Cython and
    Numba give the same bits."""
    n = 300_000
    x = np.concatenate([rng.standard_normal(n // 2) * 4, rng.standard_normal(n // 2) * 40,
                        [0.0, -0.0, 1e-30, 19.0, 21.0, 88.0, 104.0, 1e4, -1e4, 3e38]]).astype(np.float32)
    x = rng.permutation(x)[:n]
    y = (rng.random(n) < 0.4).astype(np.uint8)
    xd, yd = x.astype(np.float64), y.astype(np.float64)
    want = np.maximum(xd, 0) - xd * yd + np.log1p(np.exp(-np.abs(xd)))
    got = fastbce.bce(y, x, from_logits=True, reduction="sum", backend=compiled_backend)
    assert got == pytest.approx(want.sum(), rel=1e-6)
    for axis in (0, 1):
        got = fastbce.bce(y.reshape(-1, 60), x.reshape(-1, 60), from_logits=True, axis=axis,
                          reduction="sum", backend=compiled_backend)
        np.testing.assert_allclose(got, want.reshape(-1, 60).sum(axis=axis), rtol=1e-6)
    value, _ = fastbce.bce_value_and_grad(y, x, from_logits=True, backend=compiled_backend)
    assert value == fastbce.bce(y, x, from_logits=True, backend=compiled_backend)
    for other in COMPILED_BACKENDS:
        assert fastbce.bce(y, x, from_logits=True, backend=other) == value
    # confident and right everywhere: the loss is exp(-|x|) itself, kept
    far = np.full(100_000, 30.0, np.float32)
    assert fastbce.bce(np.ones(far.size, np.uint8), far, from_logits=True,
                       backend=compiled_backend) == pytest.approx(np.exp(-30.0), rel=1e-6)
    inf = np.array([np.inf] * 40 + [-np.inf] * 40, np.float32)
    labels = np.array([1] * 40 + [0] * 40, np.uint8)
    assert fastbce.bce(labels, inf, from_logits=True, backend=compiled_backend) == 0.0
    assert fastbce.bce(1 - labels, inf, from_logits=True, backend=compiled_backend) == np.inf
    bad = x.copy()
    bad[12_345] = np.nan
    assert np.isnan(fastbce.bce(y, bad, from_logits=True, backend=compiled_backend))
    with pytest.raises(ValueError, match="NaN"):
        fastbce.bce(y, bad, from_logits=True, nan_policy="raise", backend=compiled_backend)


@pytest.mark.parametrize("label_dtype", [np.float32, np.uint8])
@pytest.mark.parametrize("logits", [True, False])
def test_blocks_of_other_forms_between(compiled_backend, label_dtype, logits, rng):
    """Blocks of 512 (both backends) of one form between blocks of another in a chunk: soft
    labels, a label out of range, a NaN between hard blocks and the other way round. Numba
    loads the labels in the loop of the form of the block before (the product loop from logits,
    the soft-label loss loop) and again when the block is not of that form. Sums within 1e-6 of
    the float64 value, both backends the same bits, each element's loss the bits it has in a
    block of its own; a NaN in any block propagates, raises or is left out; a bad label
    raises."""
    n = 20 * 512 + 100
    x = (rng.standard_normal(n) * 4 if logits else rng.uniform(0.01, 0.99, n)).astype(np.float32)
    y = (rng.random(n) < 0.4).astype(label_dtype)
    if label_dtype == np.float32:
        block = np.arange(n) // 512
        y = np.where(np.isin(block, [1, 2, 6, 9, 10, 11]), rng.random(n), y).astype(np.float32)
        y[7 * 512 + 100] = 0.5  # one soft label in a block
    xd, yd = x.astype(np.float64), y.astype(np.float64)
    want = (np.maximum(xd, 0) - xd * yd + np.log1p(np.exp(-np.abs(xd))) if logits
            else _prob_reference(y, x, np.float64))
    options = dict(from_logits=logits)
    got = fastbce.bce(y, x, reduction="sum", backend=compiled_backend, **options)
    assert got == pytest.approx(want.sum(), rel=1e-6)
    for other in COMPILED_BACKENDS:
        assert fastbce.bce(y, x, reduction="sum", backend=other, **options) == got
    alone = np.concatenate([_element_losses(y[b:b + 512], x[b:b + 512], compiled_backend,
                                            **options) for b in range(0, n, 512)])
    np.testing.assert_array_equal(_element_losses(y, x, compiled_backend, **options), alone)
    # a block after a soft one, a soft one after a hard one, the one soft label's block
    for where in (3 * 512 + 7, 1 * 512 + 300, 7 * 512 + 5, n - 1):
        for bad_y in [False, True] if label_dtype == np.float32 else [False]:
            yb, xb = y.copy(), x.copy()
            (yb if bad_y else xb)[where] = np.nan
            assert np.isnan(fastbce.bce(yb, xb, backend=compiled_backend, **options))
            with pytest.raises(ValueError, match="NaN"):
                fastbce.bce(yb, xb, nan_policy="raise", backend=compiled_backend, **options)
            kept = np.arange(n) != where
            assert fastbce.bce(yb, xb, nan_policy="omit", backend=compiled_backend, **options
                               ) == pytest.approx(want[kept].mean(), rel=1e-6)
        wrong = y.copy()
        wrong[where] = 2
        with pytest.raises(ValueError, match="y_true has values outside"):
            fastbce.bce(wrong, x, backend=compiled_backend, **options)
        if not logits:
            xb = x.copy()
            xb[where] = 1.5
            with pytest.raises(ValueError, match="y_pred"):
                fastbce.bce(y, xb, backend=compiled_backend, **options)


# ---- pos_weight: a·softplus(-x) + (1-y)·softplus(x), a = pos_weight·y --------------------------

POS_WEIGHT_ULP_BOUND = 4  # the bound: a·l rounds once more than l (measured: 3)


def _term_losses(v, wide, logits):
    """The losses of the positive and the negative term in `wide`: softplus(-x), softplus(x), or
    -log q, -log(1-q) with q = p clipped to [eps, 1 - eps] rounded to p's dtype."""
    lo, hi = clip_bounds(EPS, v.dtype)
    v = v.astype(wide)
    if logits:
        softplus = np.log1p(np.exp(-np.abs(v)))
        return np.maximum(-v, 0) + softplus, np.maximum(v, 0) + softplus
    q = np.clip(v, wide(lo), wide(hi))
    return -np.log(q), -np.log1p(-q)


def _pos_weight_reference(y, v, pw, wide, logits):
    """a·nll_pos + (1-y)·nll_neg in `wide`, a term with a zero coefficient left out."""
    y = y.astype(wide)
    a = wide(pw) * y
    pos, neg = _term_losses(v, wide, logits)
    return np.where(a != 0, a * pos, 0) + np.where(y != 1, (1 - y) * neg, 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pos_weight_losses_are_within_the_ulp_bound(fast_calls, compiled_backend, dtype, rng):
    """Element losses with a pos_weight, hard and soft labels, probabilities and logits."""
    dtype = np.dtype(dtype)
    p = _probabilities(dtype, 50_000, rng)
    with np.errstate(over="ignore"):
        x = _logits(dtype, 50_000, rng)
    worst = 0
    for pw in (2.5, 0.3, 0.0):
        for v, logits in ((p, False), (x, True)):
            for y in (np.ones(v.shape, dtype), np.zeros(v.shape, dtype), rng.random(v.shape).astype(dtype)):
                got = _element_losses(y, v, compiled_backend, pos_weight=pw, from_logits=logits)
                want = _pos_weight_reference(y, v, pw, _wide(dtype), logits)
                with np.errstate(over="ignore"):  # 2.5·softplus(float max) is inf in both
                    ulps = _ulps(np.asarray(got).astype(dtype), want.astype(dtype))
                assert ulps.max() <= POS_WEIGHT_ULP_BOUND, (pw, logits, ulps.max())
                worst = max(worst, int(ulps.max()))
    assert worst >= 1  # the comparison sees rounding
    assert fast_calls


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pos_weight_gradients_are_within_the_ulp_bound(fast_calls, compiled_backend, dtype, rng):
    """dl/dp = -a/q + (1-y)/(1-q) inside the clip bounds (else 0), dl/dx = (1-y)·σ(x) - a·σ(-x):
    within 4 ulp for 0/1 labels. Soft labels make the two terms cancel (where p ≈ a/(a+1-y), or
    σ(x) ≈ ...): there the error is bounded relative to the terms (float64 arithmetic for float64
    inputs, the exponential in the prediction dtype from logits), not to the difference."""
    dtype = np.dtype(dtype)
    wide = _wide(dtype)
    p = _probabilities(dtype, 50_000, rng)
    with np.errstate(over="ignore"):
        x = _logits(dtype, p.size, rng)[:p.size]

    def check(got, want, terms, hard):
        error = np.abs(got.astype(wide) - want)
        ulp = np.spacing(np.abs(want).astype(dtype)).astype(wide)
        assert (error <= POS_WEIGHT_ULP_BOUND * ulp + 4 * np.finfo(dtype).eps * terms).all()
        if hard:
            assert _ulps(np.abs(got), np.abs(want).astype(dtype)).max() <= POS_WEIGHT_ULP_BOUND

    for y, hard in (((rng.random(p.size) < 0.5).astype(dtype), True), (rng.random(p.size).astype(dtype), False)):
        a, b = wide(2.5) * y.astype(wide), 1 - y.astype(wide)
        q = p.astype(wide)
        inside = (p >= dtype.type(EPS)) & (p <= dtype.type(1 - EPS))
        with np.errstate(divide="ignore", invalid="ignore"):
            pos, neg = np.where(inside, a / q, 0), np.where(inside, b / (1 - q), 0)
        got = fastbce.bce_grad(y, p, pos_weight=2.5, reduction="sum", backend=compiled_backend)
        check(got, neg - pos, pos + neg, hard)
        xw = x.astype(wide)
        e = np.exp(-np.abs(xw))
        sigma, sigma_minus = np.where(xw >= 0, 1, e) / (1 + e), np.where(xw >= 0, e, 1) / (1 + e)
        got = fastbce.bce_grad(y, x, pos_weight=2.5, from_logits=True, reduction="sum",
                               backend=compiled_backend)
        check(got, b * sigma - a * sigma_minus, b * sigma + a * sigma_minus, hard)
    assert fast_calls


def _check_fast_against_reference(fast_calls, backend, y, v, **kw):
    """The fast path's value (and, without groups, gradient) against the general kernel's NumPy
    reference to the fidelity bounds; the other compiled backend gives the same bits. Returns the
    value and the gradient (None with groups). Focal loss when kw has gamma."""
    loss, loss_grad, loss_and_grad = ((fastbce.focal_bce, fastbce.focal_bce_grad,
                                       fastbce.focal_bce_value_and_grad) if "gamma" in kw else
                                      (fastbce.bce, fastbce.bce_grad, fastbce.bce_value_and_grad))
    rtol = 1e-6 if v.dtype == np.float32 else 1e-12
    want = loss(y, v, backend="numpy", **kw)
    fast_calls.clear()
    got = loss(y, v, backend=backend, **kw)
    assert fast_calls
    np.testing.assert_allclose(got, want, rtol=rtol)
    for other in COMPILED_BACKENDS:
        np.testing.assert_array_equal(loss(y, v, backend=other, **kw), got)
    if "groups" in kw:
        return got, None
    value, grad = loss_and_grad(y, v, backend=backend, **kw)
    np.testing.assert_array_equal(value, got)
    want_grad = loss_grad(y, v, backend="numpy", **kw)
    # soft labels: the two terms cancel in places (bounded relative to the terms)
    np.testing.assert_allclose(grad, want_grad, rtol=4e-7 if v.dtype == np.float32 else 1e-14,
                               atol=rtol * np.nanmax(np.abs(want_grad)))
    return got, grad


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pos_weight_sums_match_the_reference(fast_calls, compiled_backend, dtype, rng):
    """Per-label and scalar pos_weight with weights, a mask, NaN left out, every reduction and the
    gradient: the general kernel's (NumPy reference) values to the fidelity bounds; Cython and
    Numba the same bits; Fortran order the C-order bits; pos_weight 0 with x = -inf and y = 1 is
    0, not NaN."""
    dtype = np.dtype(dtype)
    shape = (6_000, 37)
    y = (rng.random(shape) < 0.3).astype(np.uint8)
    ys = rng.random(shape).astype(dtype)
    p = rng.random(shape).astype(dtype)
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    x[5, 3] = np.nan
    w = rng.random(shape).astype(dtype)
    pw = rng.uniform(0, 5, shape[1])
    groups = rng.integers(0, 7, shape[0])
    cases = [dict(pos_weight=pw), dict(pos_weight=3.0, sample_weight=w, mask=p > 0.1),
             dict(pos_weight=pw, axis=0, nan_policy="omit"), dict(pos_weight=pw.astype(np.float32), axis=1),
             dict(pos_weight=pw, groups=groups, n_groups=7, reduction="sum")]
    for labels in (y, ys):
        for v, logits in ((p, False), (x, True)):
            for kw in cases:
                kw = dict(kw, from_logits=logits)
                _, grad = _check_fast_against_reference(fast_calls, compiled_backend, labels, v, **kw)
                if grad is not None:
                    f_grad = fastbce.bce_grad(np.asfortranarray(labels), np.asfortranarray(v),
                                              backend=compiled_backend, **kw)
                    np.testing.assert_array_equal(f_grad, grad)
            got_f = fastbce.bce(np.asfortranarray(labels), np.asfortranarray(v), pos_weight=pw, axis=0,
                                from_logits=logits, backend=compiled_backend)
            np.testing.assert_array_equal(got_f, fastbce.bce(labels, v, pos_weight=pw, axis=0,
                                                             from_logits=logits, backend=compiled_backend))
    inf = np.array([[-np.inf, np.inf]], dtype)
    got = fastbce.bce(np.ones((1, 2), np.uint8), inf, pos_weight=[0.0, 1.0], from_logits=True,
                      reduction="sum", backend=compiled_backend)
    assert got == 0.0



# ---- label smoothing: y·(1 - s) + s/2 (after the labels' range check), in the coefficients -------

def _smoothed(y, s, wide):
    """(y', 1 - y') of smoothed labels, each formed from y as the kernels form them."""
    y = y.astype(wide)
    return y * wide(1 - s) + wide(s / 2), (1 - y) * wide(1 - s) + wide(s / 2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_label_smoothing_is_within_the_ulp_bound(fast_calls, compiled_backend, dtype, rng):
    """Element losses and gradients with label smoothing (and a pos_weight) against the formula
    on the exact smoothed label: 1 - y' is formed from 1 - y, so it keeps its precision where y' is
    near 1 (s = 0.01: y' = 0.995, 1 - y' = 0.005)."""
    dtype = np.dtype(dtype)
    wide = _wide(dtype)
    p = _probabilities(dtype, 40_000, rng)
    with np.errstate(over="ignore"):
        x = _logits(dtype, 40_000, rng)
    for s, pw in ((0.1, 1.0), (0.01, 2.5)):
        for v, logits in ((p, False), (x, True)):
            for y in ((rng.random(v.size) < 0.5).astype(np.uint8), rng.random(v.size).astype(dtype)):
                got = _element_losses(y, v, compiled_backend, label_smoothing=s, pos_weight=pw,
                                      from_logits=logits)
                a, b = _smoothed(y, s, wide)
                pos, neg = _term_losses(v, wide, logits)
                want = wide(pw) * a * pos + b * neg
                with np.errstate(over="ignore"):
                    ulps = _ulps(np.asarray(got).astype(dtype), want.astype(dtype))
                assert ulps.max() <= POS_WEIGHT_ULP_BOUND, (s, pw, logits, ulps.max())
    y = (rng.random(p.size) < 0.5).astype(np.uint8)
    a, b = _smoothed(y, 0.01, wide)
    q = p.astype(wide)
    inside = (p >= dtype.type(EPS)) & (p <= dtype.type(1 - EPS))
    with np.errstate(divide="ignore", invalid="ignore"):
        pos, neg = np.where(inside, a / q, 0), np.where(inside, b / (1 - q), 0)
    got = fastbce.bce_grad(y, p, label_smoothing=0.01, reduction="sum", backend=compiled_backend)
    error = np.abs(got.astype(wide) - (neg - pos))
    ulp = np.spacing(np.abs(neg - pos).astype(dtype)).astype(wide)
    # the two terms cancel where p ≈ y': bounded relative to them there
    assert (error <= POS_WEIGHT_ULP_BOUND * ulp + 4 * np.finfo(dtype).eps * (pos + neg)).all()
    assert fast_calls


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_label_smoothing_matches_the_reference(fast_calls, compiled_backend, dtype, rng):
    """Sums, per-label and per-sample means, with a pos_weight and weights, and gradients: the
    general kernel's values to the fidelity bounds (s = 0.01 too: a systematic error in 1 - y'
    would show at 6e-6); Cython and Numba the same bits; labels outside [0, 1] still raise."""
    dtype = np.dtype(dtype)
    shape = (3_000, 40)
    y = (rng.random(shape) < 0.3).astype(np.float32)
    v = rng.random(shape).astype(dtype)
    w = rng.random(shape).astype(dtype)
    for kw in (dict(), dict(axis=0, pos_weight=np.linspace(0.5, 3, shape[1])),
               dict(axis=1, sample_weight=w, from_logits=True)):
        for s in (0.2, 0.01):
            _check_fast_against_reference(fast_calls, compiled_backend, y, v, label_smoothing=s, **kw)
    bad = y.copy()
    bad[7, 3] = 1.5
    with pytest.raises(ValueError, match="y_true"):
        fastbce.bce(bad, v, label_smoothing=0.2, backend=compiled_backend)
    # found by test_properties: a positive coefficient 9e-305·0.05 that float32 cannot hold would
    # drop the infinite term of x = -inf (such a pos_weight takes the general kernel)
    for pw in (9.4e-305, 1e-20):
        got = fastbce.bce(np.zeros(2, np.uint8), np.array([-np.inf, np.nan], dtype), from_logits=True,
                          nan_policy="omit", label_smoothing=0.1, pos_weight=pw, backend=compiled_backend)
        assert got == np.inf


# ---- focal loss: α_t·(1-p_t)^γ·CE, in float64 per element (fb_focal) ------------------------------

def _focal_reference(y, v, **kw):
    """(loss, gradient) per element in float64 from test_focal's independent formula."""
    return focal_elements(y, v, eps=EPS, **kw)


@pytest.mark.parametrize("gamma", [2.0, 1.5, 0.0, 7.0])
def test_focal_float32_within_the_ulp_bound(fast_calls, compiled_backend, gamma, rng):
    """float32 focal gradients (elementwise) and losses (read from per-sample sums of one column)
    against the float64 formula: within ULP_BOUND of its rounding, over the whole range of
    probabilities and logits, for hard labels with α, pos_weight and label smoothing."""
    dtype = np.dtype(np.float32)
    p = _probabilities(dtype, 40_000, rng)
    with np.errstate(over="ignore"):
        x = _logits(dtype, 40_000, rng)
    for v, logits in ((p, False), (x, True)):
        y = (rng.random(v.size) < 0.5).astype(np.uint8)
        for kw in (dict(alpha=0.25), dict(alpha=0.5, pos_weight=2.5, label_smoothing=0.1)):
            kw = dict(kw, gamma=gamma, from_logits=logits)
            want_loss, want_grad = _focal_reference(y, v, **kw)
            got = fastbce.focal_bce_grad(y, v, reduction="sum", backend=compiled_backend, **kw)
            assert got.dtype == dtype
            with np.errstate(over="ignore"):
                _check_ulps(got, want_grad, dtype)
                got = fastbce.focal_bce(y[:, None], v[:, None], axis=1, reduction="sum",
                                        backend=compiled_backend, **kw)
                _check_ulps(got, want_loss, dtype)
    assert fast_calls


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_focal_matches_the_reference(fast_calls, compiled_backend, dtype, rng):
    """Focal sums, per-label / per-sample / per-group values and gradients with weights, a mask,
    NaN left out, pos_weight and label smoothing, Fortran order: the general kernel's values to the
    fidelity bounds, Cython and Numba the same bits; the extremes (p = 0, 1, 1e-30, the clip
    bounds; logits ±1e4, ±inf, float max) and NaN under each policy."""
    dtype = np.dtype(dtype)
    shape = (2_000, 37)
    y = (rng.random(shape) < 0.3).astype(np.uint8)
    ys = rng.random(shape).astype(dtype)
    p = rng.random(shape).astype(dtype)
    p[1, :6] = [0.0, 1.0, 1e-30, EPS, 1 - EPS, 0.5]
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    x[1, :7] = [1e4, -1e4, np.inf, -np.inf, np.finfo(dtype).max, -np.finfo(dtype).max, 0.0]
    x[5, 3] = np.nan
    w = rng.random(shape).astype(dtype)
    pw = rng.uniform(0, 5, shape[1])
    groups = rng.integers(0, 7, shape[0])
    gammas = [(2.0, 0.25), (0.0, 0.75), (3.0, None)] + ([(1.5, None)] if dtype == np.float32 else [])
    cases = [dict(), dict(pos_weight=pw, sample_weight=w, mask=p > 0.1),
             dict(axis=0, nan_policy="omit", label_smoothing=0.1), dict(axis=1, pos_weight=2.0),
             dict(groups=groups, n_groups=7, reduction="sum")]
    for labels in (y, ys):
        for v, logits in ((p, False), (x, True)):
            for gamma, alpha in gammas:
                for kw in cases:
                    kw = dict(kw, from_logits=logits, gamma=gamma, alpha=alpha)
                    _, grad = _check_fast_against_reference(fast_calls, compiled_backend, labels, v, **kw)
                    if grad is not None:
                        f_grad = fastbce.focal_bce_grad(np.asfortranarray(labels), np.asfortranarray(v),
                                                        backend=compiled_backend, **kw)
                        np.testing.assert_array_equal(f_grad, grad)
    with pytest.raises(ValueError, match="NaN"):
        fastbce.focal_bce(y, x, from_logits=True, nan_policy="raise", backend=compiled_backend)
    assert np.isnan(fastbce.focal_bce(y, x, from_logits=True, backend=compiled_backend))

