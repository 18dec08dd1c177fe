"""The evaluation metrics (fastbce/_metrics.py) against scikit-learn: ROC-AUC, average precision,
group AUC, the curves, the calibration curve and the Brier score, on random and hostile data, in
every backend (the ranking kernels: kernels/c/rank.h and kernels/numba/rank.py)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve as sk_calibration_curve

import fastbce
from fastbce._backends import cython_available

BACKENDS = ["numpy", "numba"] + (["cython"] if cython_available() else [])
RTOL = 1e-12


def data(n, seed=0, levels=None, dtype=np.float32, weights=False):
    rng = np.random.default_rng(seed)
    p = rng.random(n)
    if levels:
        p = np.round(p * levels) / levels
    y = (rng.random(n) < p).astype(np.float32)
    w = rng.random(n) if weights else None
    if weights:
        w[::5] = 0.0
    return y, p.astype(dtype), w


def both(y, p, w=None):
    return (skm.roc_auc_score(y, p, sample_weight=w),
            skm.average_precision_score(y, p, sample_weight=w))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n, levels, dtype", [
    (n, levels, dtype) for n, levels in ((7, None), (1000, None), (1000, 100), (3000, 3))
    for dtype in (np.float16, np.float32, np.float64)] + [
    (140_000, levels, dtype) for levels in (None, 100) for dtype in (np.float32, np.float64)])
@pytest.mark.parametrize("weights", [False, True])
def test_auc_and_ap_equal_scikit_learn(backend, n, levels, dtype, weights):
    y, p, w = data(n, n + (levels or 0), levels, dtype, weights)
    y[:2] = [0, 1]
    auc, ap = fastbce._metrics.ranking(y, p, sample_weight=w, backend=backend)
    ref_auc, ref_ap = both(y, p, w)
    np.testing.assert_allclose([auc, ap], [ref_auc, ref_ap], rtol=RTOL)
    assert fastbce.roc_auc(y, p, sample_weight=w, backend=backend) == auc
    assert fastbce.average_precision(y, p, sample_weight=w, backend=backend) == ap


@pytest.mark.parametrize("backend", BACKENDS)
def test_logits_of_both_signs_and_their_probabilities(backend):
    rng = np.random.default_rng(3)
    x = rng.normal(0, 3, 5000)
    x[:100] = np.round(x[:100])  # ties
    x[100] = -0.0
    x[101] = 0.0
    y = (rng.random(5000) < 1 / (1 + np.exp(-x))).astype(np.int64)
    q = 1 / (1 + np.exp(-x))
    for dtype in (np.float32, np.float64):
        auc, ap = fastbce._metrics.ranking(y, x.astype(dtype), from_logits=True, backend=backend)
        np.testing.assert_allclose([auc, ap], both(y, x.astype(dtype)), rtol=RTOL)
    assert fastbce.roc_auc(y, x, from_logits=True, backend=backend) == pytest.approx(
        fastbce.roc_auc(y, q, backend=backend), rel=RTOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ties_one_class_and_equal_predictions(backend):
    y = np.array([0, 1, 1, 0, 1], np.uint8)
    p = np.full(5, 0.3, np.float32)
    assert fastbce.roc_auc(y, p, backend=backend) == 0.5
    assert fastbce.average_precision(y, p, backend=backend) == pytest.approx(0.6, rel=RTOL)
    assert np.isnan(fastbce.roc_auc(np.ones(5), p, backend=backend))
    assert np.isnan(fastbce.average_precision(np.zeros(5), p, backend=backend))
    # all weight on one class
    w = np.array([0, 1, 1, 0, 1.0])
    assert np.isnan(fastbce.roc_auc(y, np.arange(5.0), sample_weight=w, backend=backend))
    # p = 0 and p = 1 exactly, and -0.0 tied with 0.0
    p2 = np.array([0.0, 1.0, -0.0, 1.0, 0.5])
    np.testing.assert_allclose(fastbce._metrics.ranking(y, p2, backend=backend), both(y, p2),
                               rtol=RTOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bool_int_and_float16_labels(backend):
    y, p, _ = data(500, 4)
    ref = skm.roc_auc_score(y, p)
    for labels in (y.astype(bool), y.astype(np.int8), y.astype(np.int64), y.astype(np.float16),
                   y.astype(np.uint8), y.astype(np.float64)):
        assert fastbce.roc_auc(labels, p, backend=backend) == pytest.approx(ref, rel=RTOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mask_and_nan_policies(backend):
    y, p, w = data(2000, 5, weights=True)
    rng = np.random.default_rng(6)
    mask = rng.random(2000) < 0.7
    np.testing.assert_allclose(
        fastbce._metrics.ranking(y, p, sample_weight=w, mask=mask, backend=backend),
        both(y[mask], p[mask], w[mask]), rtol=RTOL)
    p_nan, y_nan = p.copy(), y.copy()
    p_nan[10] = np.nan
    y_nan[20] = np.nan
    keep = ~(np.isnan(p_nan) | np.isnan(y_nan))
    for yy, pp in ((y, p_nan), (y_nan, p)):
        assert np.isnan(fastbce.roc_auc(yy, pp, backend=backend))
        with pytest.raises(ValueError, match="NaN"):
            fastbce.average_precision(yy, pp, nan_policy="raise", backend=backend)
    both_nan = fastbce._metrics.ranking(y_nan, p_nan, nan_policy="omit", backend=backend)
    np.testing.assert_allclose(both_nan, both(y[keep], p[keep]), rtol=RTOL)
    # a masked NaN is not counted, under any policy
    nan_mask = np.ones(2000, bool)
    nan_mask[10] = False
    assert fastbce.roc_auc(y, p_nan, mask=nan_mask, nan_policy="raise", backend=backend) == \
        pytest.approx(skm.roc_auc_score(y[nan_mask], p[nan_mask]), rel=RTOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_per_label_strided_and_fortran(backend):
    rng = np.random.default_rng(7)
    p = np.round(rng.random((3000, 4)), 2).astype(np.float32)
    y = (rng.random((3000, 4)) < p).astype(np.float64)
    w = rng.random(3000)
    expected = [both(y[:, j], p[:, j], w) for j in range(4)]
    for pp, yy in ((p, y), (np.asfortranarray(p), np.asfortranarray(y)), (p[::2], y[::2])):
        ww = w[:pp.shape[0]] if pp.shape[0] == 3000 else w[::2]
        got = fastbce._metrics.ranking(yy, pp, sample_weight=ww[:, None], axis=0,
                                       backend=backend)
        ref = expected if pp.shape[0] == 3000 else [both(yy[:, j], pp[:, j], ww) for j in range(4)]
        np.testing.assert_allclose(np.array(got).T, ref, rtol=RTOL)
    np.testing.assert_allclose(fastbce.roc_auc(np.asfortranarray(y), np.asfortranarray(p),
                                               backend=backend),
                               skm.roc_auc_score(y.ravel(), p.ravel()), rtol=RTOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_per_group_against_a_loop(backend):
    y, p, w = data(5000, 8, 50, weights=True)
    groups = np.random.default_rng(9).integers(0, 12, 5000)
    groups[groups == 11] = 10  # id 11 empty
    y[groups == 3] = 1  # one class
    auc, ap = fastbce._metrics.ranking(y, p, sample_weight=w, groups=groups, n_groups=12,
                                       backend=backend)
    for g in range(12):
        s = groups == g
        if g in (3, 11):
            assert np.isnan(auc[g]) and np.isnan(ap[g])  # one class; no sample
            continue
        np.testing.assert_allclose([auc[g], ap[g]], both(y[s], p[s], w[s]), rtol=RTOL)


def test_backends_and_thread_counts_give_the_same_bits():
    y, p, w = data(300_000, 10, 1000, weights=True)
    for weights in (None, w):
        results = {(b, t): fastbce._metrics.ranking(y, p, sample_weight=weights, backend=b,
                                                    n_threads=t)
                   for b in BACKENDS if b != "numpy" for t in (1, 2)}
        assert len(set(results.values())) == 1, results


@pytest.mark.parametrize("backend", BACKENDS)
def test_inputs_are_not_modified(backend):
    y, p, w = data(1000, 11, weights=True)
    copies = y.copy(), p.copy(), w.copy()
    fastbce.roc_auc(y, p, sample_weight=w, backend=backend)
    fastbce.roc_curve(y, p, sample_weight=w, backend=backend)
    for a, b in zip((y, p, w), copies):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_input_is_named(backend):
    y, p, _ = data(100, 12)
    soft = y.copy()
    soft[3] = 0.5
    with pytest.raises(ValueError, match="y_true"):
        fastbce.roc_auc(soft, p, backend=backend)
    with pytest.raises(ValueError, match="sample_weight"):
        fastbce.average_precision(y, p, sample_weight=-np.ones(100), backend=backend)
    with pytest.raises(ValueError, match="y_true and y_pred"):
        fastbce.roc_auc(y[:50], p, backend=backend)
    with pytest.raises(ValueError, match="nan_policy"):
        fastbce.roc_auc(y, p, nan_policy="skip", backend=backend)
    with pytest.raises(ValueError, match="axis"):
        fastbce.roc_auc(y.reshape(10, 10), p.reshape(10, 10), axis=1, backend=backend)
    with pytest.raises(TypeError, match="from_logits"):
        fastbce.roc_auc(y, p, from_logits="yes", backend=backend)
    with pytest.raises(ValueError, match="groups"):
        fastbce.roc_auc(y, p, groups=np.full(100, 5), n_groups=3, backend=backend)
    with pytest.raises(TypeError, match="y_pred"):
        fastbce.roc_auc(y, p.astype(np.int64), backend=backend)
    with pytest.raises(ValueError, match="weighting"):
        fastbce.group_auc(y, p, np.zeros(100, int), weighting="impressions", backend=backend)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 6), st.sampled_from([0.0, 0.5, 1.0, 3.0])),
                min_size=2, max_size=40),
       st.sampled_from(BACKENDS))
def test_property_scikit_learn_and_symmetry(rows, backend):
    y = np.array([r[0] for r in rows], np.float64)
    p = np.array([r[1] for r in rows], np.float64) / 6
    w = np.array([r[2] for r in rows])
    auc, ap = fastbce._metrics.ranking(y, p, sample_weight=w, backend=backend)
    pos, neg = w[y == 1].sum(), w[y == 0].sum()
    if pos == 0 or neg == 0:
        assert np.isnan(auc)
        return
    keep = w > 0  # scikit-learn drops weight-0 samples (it raises on one class left)
    if len(np.unique(y[keep])) == 2:
        np.testing.assert_allclose([auc, ap], both(y[keep], p[keep], w[keep]), rtol=RTOL)
    assert 0.0 <= auc <= 1.0 and 0.0 < ap <= 1.0 + 1e-15
    flipped = fastbce.roc_auc(y, -p, sample_weight=w, backend=backend)
    assert flipped == pytest.approx(1.0 - auc, rel=1e-12, abs=1e-15)


def test_group_auc_weightings():
    y, p, w = data(3000, 13, 20, weights=True)
    groups = np.random.default_rng(14).integers(0, 8, 3000)
    y[groups == 2] = 0  # skipped
    for weights in (None, w):
        for weighting in ("weight", "uniform"):
            r = fastbce.group_auc(y, p, groups, sample_weight=weights, weighting=weighting)
            aucs, cs = [], []
            for g in range(8):
                s = groups == g
                if g == 2:
                    continue
                ws = None if weights is None else weights[s]
                aucs.append(skm.roc_auc_score(y[s], p[s], sample_weight=ws))
                cs.append(1.0 if weighting == "uniform" else (s.sum() if ws is None else ws.sum()))
            assert (r.n_used, r.n_skipped) == (7, 1)
            assert np.isnan(r.auc[2]) and r.c[2] == 0
            assert r.value == pytest.approx(np.dot(cs, aucs) / np.sum(cs), rel=RTOL)
    assert np.isnan(fastbce.group_auc(np.ones(4), np.arange(4.0), np.arange(4)).value)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("drop", [False, True])
@pytest.mark.parametrize("weights", [False, True])
def test_curves_equal_scikit_learn(backend, drop, weights):
    y, p, w = data(3000, 15, 40, np.float32, weights)
    for ours, theirs in (
            (fastbce.roc_curve(y, p, sample_weight=w, drop_intermediate=drop, backend=backend),
             skm.roc_curve(y, p, sample_weight=w, drop_intermediate=drop)),
            (fastbce.precision_recall_curve(y, p, sample_weight=w, drop_intermediate=drop,
                                            backend=backend),
             skm.precision_recall_curve(y, p, sample_weight=w, drop_intermediate=drop))):
        for a, b in zip(ours, theirs):
            assert a.shape == b.shape and a.dtype == b.dtype
            np.testing.assert_allclose(a, b, rtol=RTOL)


def test_curves_options():
    y, p, _ = data(500, 16)
    p[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fastbce.roc_curve(y, p)
    keep = ~np.isnan(p)
    for a, b in zip(fastbce.roc_curve(y, p, nan_policy="omit"), skm.roc_curve(y[keep], p[keep])):
        np.testing.assert_allclose(a, b, rtol=RTOL)
    with pytest.raises(ValueError, match="nan_policy"):
        fastbce.precision_recall_curve(y, p, nan_policy="propagate")
    fpr, tpr, _ = fastbce.roc_curve(np.ones(3), np.arange(3.0))
    assert np.isnan(fpr).all() and tpr[-1] == 1


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_calibration_curve_equals_scikit_learn_on_non_empty_bins(strategy):
    y, p, _ = data(2000, 17, 100, np.float64)
    p[:3] = [0.0, 1.0, 0.5]
    c = fastbce.calibration_curve(y, p, n_bins=7, strategy=strategy)
    prob_true, prob_pred = sk_calibration_curve(y, p, n_bins=7, strategy=strategy)
    filled = c.count > 0
    np.testing.assert_allclose(c.pos_rate[filled], prob_true, rtol=RTOL)
    np.testing.assert_allclose(c.mean_pred[filled], prob_pred, rtol=RTOL)
    assert c.count.sum() == 2000 and c.edges.shape == (8,)
    np.testing.assert_array_equal(c.weight, c.count)


def test_calibration_curve_edges_weights_and_options():
    y = np.array([0, 1, 1, 0, 1, 0])
    p = np.array([0.0, 1.0, 0.5, 0.2, 0.875, 0.1], np.float32)
    w = np.array([1, 2, 3, 4, 5, 0.0])
    c = fastbce.calibration_curve(y, p, n_bins=4, sample_weight=w)
    assert c.count[0] == 3 and c.count[-1] == 2  # p = 0 in the first bin, p = 1 in the last
    assert c.weight[0] == 5 and c.pos_rate[-1] == 1.0
    assert c.mean_pred[-1] == pytest.approx((2 * 1.0 + 5 * 0.875) / 7, rel=RTOL)
    assert c.count[1] == 1 and c.mean_pred[1] == 0.5  # an inner edge closes its lower bin
    assert np.isnan(c.mean_pred[2]) and c.count[2] == 0
    x = np.log(p.astype(np.float64) + 1e-3) - np.log1p(-p.astype(np.float64) + 1e-3)
    logits = fastbce.calibration_curve(y, x, n_bins=4, from_logits=True)
    assert logits.count.sum() == 6
    with pytest.raises(ValueError, match="y_pred"):
        fastbce.calibration_curve(y, p + 1)
    with pytest.raises(ValueError, match="strategy"):
        fastbce.calibration_curve(y, p, strategy="equal")
    with pytest.raises(ValueError, match="n_bins"):
        fastbce.calibration_curve(y, p, n_bins=0)


def test_brier_equals_scikit_learn():
    y, p, w = data(3000, 18, None, np.float64, True)
    assert fastbce.brier(y, p) == pytest.approx(skm.brier_score_loss(y, p), rel=RTOL)
    assert fastbce.brier(y, p, sample_weight=w) == pytest.approx(
        skm.brier_score_loss(y, p, sample_weight=w), rel=RTOL)
    x = np.log(p) - np.log1p(-p)
    assert fastbce.brier(y, x, from_logits=True) == pytest.approx(fastbce.brier(y, p), rel=1e-9)
    groups = np.arange(3000) % 4
    per_group = fastbce.brier(y, p, groups=groups)
    for g in range(4):
        s = groups == g
        assert per_group[g] == pytest.approx(skm.brier_score_loss(y[s], p[s]), rel=RTOL)
    per_label = fastbce.brier(y.reshape(-1, 3), p.reshape(-1, 3), axis=0)
    for j in range(3):
        assert per_label[j] == pytest.approx(
            skm.brier_score_loss(y.reshape(-1, 3)[:, j], p.reshape(-1, 3)[:, j]), rel=RTOL)
    p_nan = p.copy()
    p_nan[0] = np.nan
    assert np.isnan(fastbce.brier(y, p_nan))
    assert fastbce.brier(y, p_nan, nan_policy="omit") == pytest.approx(
        skm.brier_score_loss(y[1:], p[1:]), rel=RTOL)
    mask = np.arange(3000) % 3 > 0
    assert fastbce.brier(y, p, mask=mask) == pytest.approx(
        skm.brier_score_loss(y[mask], p[mask]), rel=RTOL)
    with pytest.raises(ValueError, match="y_pred"):
        fastbce.brier(y, p * 2)
    with pytest.raises(ValueError, match="sample_weight"):
        fastbce.brier(y, p, sample_weight=-w)


def _group_loop(y, p, w, groups, n_groups, mask=None):
    """(AUC, AP) per group by a loop over scikit-learn (NaN with one class or no sample)."""
    out = np.full((2, n_groups), np.nan)
    for g in range(n_groups):
        s = (groups == g) if mask is None else (groups == g) & mask
        ws = None if w is None else w[s]
        if len(set(y[s])) == 2 and (ws is None or (ws[y[s] == 1].sum() > 0
                                                   and ws[y[s] == 0].sum() > 0)):
            out[:, g] = both(y[s], p[s], ws)
    return out


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "numpy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weights", [False, True])
def test_per_group_big_and_small_groups_logits_and_masks(backend, dtype, weights):
    """Groups of at least 2**16 samples are sorted and walked by all threads, smaller ones each
    by one thread (kernels/c/rank.h); logits put samples on both signs; masked samples out."""
    rng = np.random.default_rng(21)
    n = 160_000
    groups = np.where(rng.random(n) < 0.85, 0, rng.integers(1, 300, n))  # one big, many small
    x = np.round(rng.normal(0, 2, n), 3)
    y = (rng.random(n) < 1 / (1 + np.exp(-x))).astype(np.float32)
    w = rng.random(n) if weights else None
    mask = rng.random(n) < 0.9
    auc, ap = fastbce._metrics.ranking(y, x.astype(dtype), sample_weight=w, mask=mask,
                                       groups=groups, n_groups=300, from_logits=True,
                                       backend=backend)
    np.testing.assert_allclose([auc, ap], _group_loop(y, x.astype(dtype), w, groups, 300, mask),
                               rtol=RTOL)
    for t in (1, 3):
        again = fastbce._metrics.ranking(y, x.astype(dtype), sample_weight=w, mask=mask,
                                         groups=groups, n_groups=300, from_logits=True,
                                         backend=backend, n_threads=t)
        np.testing.assert_array_equal(np.array(again), np.array([auc, ap]))


def test_per_group_backends_give_the_same_bits_and_nan_stays_in_its_group():
    y, p, w = data(200_000, 22, 1000, weights=True)
    groups = np.random.default_rng(23).integers(0, 50, 200_000)
    groups[:100_000] = 7  # a big group
    p[5] = np.nan  # group of element 5
    results = [np.array(fastbce._metrics.ranking(y, p, sample_weight=weights, groups=groups,
                                                 n_groups=50, backend=b, n_threads=t))
               for b in BACKENDS if b != "numpy" for t in (1, 2) for weights in (None, w)]
    by_weights = [results[i::2] for i in range(2)]
    for same in by_weights:
        for r in same[1:]:
            np.testing.assert_array_equal(r, same[0])
    auc = by_weights[0][0][0]
    assert np.isnan(auc[groups[5]]) and np.isfinite(np.delete(auc, groups[5])).all()
    keep = ~np.isnan(p)
    ref = _group_loop(y[keep], p[keep], None, groups[keep], 50)
    ref[:, groups[5]] = np.nan
    np.testing.assert_allclose(by_weights[0][0], ref, rtol=RTOL)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "numpy"])
def test_big_slices_every_path(backend):
    """Above 2**16 samples: all kept and non-negative, negatives, NaN omitted, a constant digit
    (skipped passes), uint8 labels, all equal (one big bucket)."""
    rng = np.random.default_rng(24)
    n = 150_000
    p = rng.random(n)
    y = (rng.random(n) < p).astype(np.uint8)
    cases = [p, p - 0.5, 0.5 + p / 4, np.full(n, 0.25), np.round(p, 2)]
    for pp in cases:
        for dtype in (np.float32, np.float64):
            got = fastbce._metrics.ranking(y, pp.astype(dtype), backend=backend)
            if np.ptp(pp) == 0:
                assert got == (0.5, pytest.approx(y.mean(), rel=RTOL))
                continue
            np.testing.assert_allclose(got, both(y, pp.astype(dtype)), rtol=RTOL)
    p_nan = p.copy()
    p_nan[::1000] = np.nan
    keep = ~np.isnan(p_nan)
    np.testing.assert_allclose(
        fastbce._metrics.ranking(y, p_nan, nan_policy="omit", backend=backend),
        both(y[keep], p[keep]), rtol=RTOL)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_brier_compiled_pass_equals_scikit_learn_and_the_numpy_path(backend, dtype):
    y, p, w = data(20_000, 25, 100, dtype, True)
    p64 = p.astype(np.float64)  # scikit-learn sums float32 in float32; the reference in float64
    soft = (0.8 * y + 0.1).astype(dtype)  # soft labels are fine for the Brier score
    groups = np.arange(20_000) % 7
    everything = np.ones(20_000, bool)  # a mask: the NumPy path

    def reference(yy, pp, ww):  # scikit-learn's, which rejects soft labels
        if set(np.unique(yy)) <= {0, 1}:
            return skm.brier_score_loss(yy, pp, sample_weight=ww)
        return np.average((pp - yy.astype(np.float64)) ** 2, weights=ww)
    for yy in (y, soft, y.astype(np.uint8)):
        for ww in (None, w):
            got = fastbce.brier(yy, p, sample_weight=ww, backend=backend)
            assert got == pytest.approx(reference(yy, p64, ww), rel=RTOL)
            assert got == pytest.approx(fastbce.brier(yy, p, sample_weight=ww, mask=everything),
                                        rel=RTOL)
            per_group = fastbce.brier(yy, p, sample_weight=ww, groups=groups, backend=backend)
            for g in range(7):
                s = groups == g
                assert per_group[g] == pytest.approx(
                    reference(yy[s], p64[s], None if ww is None else ww[s]), rel=RTOL)
    assert fastbce.brier(y, p, n_threads=1, backend=backend) == fastbce.brier(
        y, p, n_threads=3, backend=backend)


def _calibration_data(n, seed, dtype):
    """Predictions with the uniform edges of 10 and 7 bins, 0 and 1 among them (edge cases of the
    bin rule), heavy ties, labels and weights (some 0)."""
    rng = np.random.default_rng(seed)
    p = rng.random(n)
    p[: n // 4] = np.round(p[: n // 4] * 70) / 70
    p[n // 4: n // 4 + 24] = np.concatenate((np.linspace(0, 1, 11), np.linspace(0, 1, 8), [0, 1] * 2,
                                             [1e-30]))
    y = (rng.random(n) < p).astype(np.float32)
    w = rng.random(n)
    w[::7] = 0.0
    return y, p.astype(dtype), w


def _same_curve(got, want, rtol=RTOL):
    np.testing.assert_array_equal(got.edges, want.edges)
    np.testing.assert_array_equal(got.count, want.count)
    assert got.count.dtype == want.count.dtype
    for name in ("weight", "mean_pred", "pos_rate"):
        np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=rtol,
                                   equal_nan=True, err_msg=name)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "numpy"])
@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_calibration_curve_compiled_equals_the_numpy_code(backend, strategy):
    """Bins by scikit-learn's searchsorted rule (values on an edge, 0, 1, ties), weights, masks,
    labels of every kind, float32 and float64, logits, NaN under each policy: the compiled pass
    gives the NumPy code's bins and float64 sums."""
    for n, dtype in ((1000, np.float64), (70_000, np.float32)):
        y, p, w = _calibration_data(n, 31, dtype)
        mask = np.arange(n) % 5 > 0
        for n_bins in (1, 7, 10):
            for kwargs in ({}, {"sample_weight": w}, {"mask": mask, "sample_weight": w}):
                got = fastbce.calibration_curve(y, p, n_bins=n_bins, strategy=strategy,
                                                backend=backend, **kwargs)
                _same_curve(got, fastbce.calibration_curve(y, p, n_bins=n_bins, strategy=strategy,
                                                           backend="numpy", **kwargs))
        sk_true, sk_pred = sk_calibration_curve(y, p, n_bins=10, strategy=strategy)
        got = fastbce.calibration_curve(y, p, strategy=strategy, backend=backend)
        np.testing.assert_allclose(got.pos_rate[got.count > 0], sk_true, rtol=1e-6)
        np.testing.assert_allclose(got.mean_pred[got.count > 0], sk_pred, rtol=1e-6)
        for labels in (y.astype(bool), y.astype(np.uint8), y.astype(np.int64), y.astype(np.float16)):
            _same_curve(fastbce.calibration_curve(labels, p, strategy=strategy, backend=backend),
                        fastbce.calibration_curve(labels, p, strategy=strategy, backend="numpy"))
        x = np.log(p.astype(np.float64) + 1e-3) - np.log1p(-p.astype(np.float64) + 1e-3)
        _same_curve(fastbce.calibration_curve(y, x, strategy=strategy, from_logits=True,
                                              backend=backend),
                    fastbce.calibration_curve(y, x, strategy=strategy, from_logits=True,
                                              backend="numpy"), rtol=1e-9)
        p_nan, y_nan = p.copy(), y.copy()
        p_nan[3], y_nan[10] = np.nan, np.nan
        for policy in ("propagate", "omit"):
            _same_curve(fastbce.calibration_curve(y_nan, p_nan, strategy=strategy,
                                                  nan_policy=policy, backend=backend),
                        fastbce.calibration_curve(y_nan, p_nan, strategy=strategy,
                                                  nan_policy=policy, backend="numpy"))
        with pytest.raises(ValueError, match="NaN"):
            fastbce.calibration_curve(y_nan, p_nan, nan_policy="raise", backend=backend)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "numpy"])
def test_calibration_curve_bad_input_is_named_and_inputs_stay(backend):
    y, p, w = _calibration_data(3000, 32, np.float32)
    copies = y.copy(), p.copy(), w.copy()
    fastbce.calibration_curve(y, p, sample_weight=w, strategy="quantile", backend=backend)
    for a, b in zip((y, p, w), copies):
        np.testing.assert_array_equal(a, b)
    bad_p, bad_y, bad_w = p.copy(), y.copy(), w.copy()
    bad_p[100], bad_y[200], bad_w[300] = 1.5, 2.0, -1.0
    with pytest.raises(ValueError, match="y_pred"):
        fastbce.calibration_curve(y, bad_p, backend=backend)
    with pytest.raises(ValueError, match="y_true"):
        fastbce.calibration_curve(bad_y, p, backend=backend)
    with pytest.raises(ValueError, match="y_true"):
        fastbce.calibration_curve(np.where(y > 0, 256, 0), p, backend=backend)
    with pytest.raises(ValueError, match="sample_weight"):
        fastbce.calibration_curve(y, p, sample_weight=bad_w, backend=backend)
    masked = np.ones(3000, bool)
    masked[[100, 200, 300]] = False  # masked elements are not checked
    fastbce.calibration_curve(bad_y, bad_p, sample_weight=bad_w, mask=masked, backend=backend)


def test_calibration_curve_backends_and_thread_counts_give_the_same_bits():
    y, p, w = _calibration_data(700_000, 33, np.float32)  # three stripes
    for strategy in ("uniform", "quantile"):
        results = [fastbce.calibration_curve(y, p, sample_weight=w, strategy=strategy, backend=b,
                                             n_threads=t)
                   for b in BACKENDS if b != "numpy" for t in (1, 2, 3)]
        for got in results[1:]:
            for name in fastbce._metrics.CalibrationCurve._fields:
                np.testing.assert_array_equal(getattr(got, name), getattr(results[0], name))


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "numpy"])
def test_brier_checks_in_its_one_pass(backend):
    """The compiled Brier checks labels, probabilities and weights of the counted elements in
    its pass: out of range is named (by the NumPy path), masked or omitted elements are not
    checked; masks are compiled too; group ids out of range are named."""
    y, p, w = data(5000, 34, None, np.float32, True)
    bad_p, bad_y, bad_w = p.copy(), y.copy(), w.copy()
    bad_p[10], bad_y[20], bad_w[30] = -0.5, 1.5, np.inf
    for args, name in (((y, bad_p, w), "y_pred"), ((bad_y, p, w), "y_true"),
                       ((y, p, bad_w), "sample_weight")):
        with pytest.raises(ValueError, match=name):
            fastbce.brier(*args[:2], sample_weight=args[2], backend=backend)
        with pytest.raises(ValueError, match=name):
            fastbce.brier(*args[:2], sample_weight=args[2], groups=np.arange(5000) % 3,
                          backend=backend)
    with pytest.raises(ValueError, match="y_true"):
        fastbce.brier(np.where(y > 0, 256, 0), p, backend=backend)
    mask = np.ones(5000, bool)
    mask[[10, 20, 30]] = False
    got = fastbce.brier(bad_y, bad_p, sample_weight=bad_w, mask=mask, backend=backend)
    assert got == pytest.approx(skm.brier_score_loss(y[mask], p[mask].astype(np.float64),
                                                     sample_weight=w[mask]), rel=RTOL)
    assert got == pytest.approx(fastbce.brier(bad_y, bad_p, sample_weight=bad_w, mask=mask,
                                              backend="numpy"), rel=RTOL)
    nan_p = bad_p.copy()
    nan_p[10] = np.nan  # an omitted NaN is not checked, its weight is
    assert fastbce.brier(y, nan_p, nan_policy="omit", backend=backend) == pytest.approx(
        fastbce.brier(y, nan_p, nan_policy="omit", backend="numpy"), rel=RTOL)
    with pytest.raises(ValueError, match="NaN"):
        fastbce.brier(y, nan_p, nan_policy="raise", backend=backend)
    with pytest.raises(ValueError, match="groups"):
        fastbce.brier(y, p, groups=np.full(5000, 5), n_groups=3, backend=backend)


@pytest.mark.parametrize("n", [50, 5_000, 200_000])
def test_buckets_backends_and_thread_counts_give_the_same_bits(n):
    """The split by the predictions' top bits: both signs, heavy ties, a narrow range and all equal
    (buckets of 2**16 items and more, sorted and walked by all threads), one class; unweighted
    (each bucket walked right after its sort) and weighted; 1 to 3 threads and both compiled
    backends give the same bits, and scikit-learn's values."""
    rng = np.random.default_rng(n)
    x = rng.normal(0.0, 2.0, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-x))).astype(np.float32)
    y[:2] = [0, 1]
    w = rng.random(n)
    cases = {"logits": x, "ties": np.round(x, 1), "narrow": 0.999 + 1e-4 * rng.random(n),
             "equal": np.full(n, 0.3)}
    compiled = [b for b in BACKENDS if b != "numpy"]
    for name, values in cases.items():
        for dtype in (np.float32, np.float64):
            p = values.astype(dtype)
            for weights in (None, w):
                results = {(b, t): fastbce._metrics.ranking(y, p, sample_weight=weights,
                                                            backend=b, n_threads=t)
                           for b in compiled for t in (1, 2, 3)}
                assert len(set(results.values())) == 1, (name, dtype, results)
                got = results[compiled[0], 1]
                np.testing.assert_allclose(got, both(y, p, weights), rtol=RTOL)
    for b in compiled:
        assert np.isnan(fastbce.roc_auc(np.ones(n), x, backend=b, n_threads=2))
        assert np.isnan(fastbce.average_precision(np.zeros(n), x, backend=b))
