"""The report's ranking, calibration and threshold fields (``score``, ``Accumulator``), the histogram
pass behind them (kernels/c/histogram.h and its Numba twin), labelled groups and the CLI plot.

scikit-learn is the oracle of every field (roc_auc_score, average_precision_score,
brier_score_loss, confusion_matrix, precision_recall_fscore_support); the ECE is checked against a
NumPy loop over its definition; per group and per label against a loop over the slices.
"""

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastbce
from conftest import BACKENDS, COMPILED_BACKENDS
from fastbce._histogram import histogram_sums
from fastbce._plan import make_plan

metrics = pytest.importorskip("sklearn.metrics")
pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")

RTOL = 1e-10


def make_data(seed, n=3_000, levels=None, ctr=False):
    """Labels, float32 probabilities of an informative model (rounded to ``levels`` values: ties),
    their logits and weights."""
    rng = np.random.default_rng(seed)
    z = rng.normal(-3.0 if ctr else 0.0, 1.5, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(np.uint8)
    p = 1 / (1 + np.exp(-(z + rng.normal(0, 1, n))))
    if levels:
        p = np.round(p * levels) / levels
    p = p.astype(np.float32)
    with np.errstate(divide="ignore"):
        x = (np.log(p.astype(np.float64)) - np.log1p(-p.astype(np.float64))).astype(np.float32)
    return y, p, x, rng.random(n)


def ece(y, q, w, n_bins=15):
    bins = np.minimum((q * n_bins).astype(int), n_bins - 1)
    total = sum(abs(np.sum(w[bins == b] * y[bins == b]) - np.sum(w[bins == b] * q[bins == b]))
                for b in range(n_bins))
    return total / w.sum()


def expected(y, p, w=None, threshold=0.5):
    """The METRIC_FIELDS of one slice from scikit-learn."""
    y = np.asarray(y, np.float64)
    p = np.asarray(p, np.float64)
    w = np.ones(len(y)) if w is None else np.asarray(w, np.float64)
    predicted = p >= threshold
    tn, fp, fn, tp = metrics.confusion_matrix(y, predicted, sample_weight=w, labels=[0, 1]).ravel()
    precision, recall, f1, _ = metrics.precision_recall_fscore_support(
        y, predicted, sample_weight=w, average="binary", zero_division=0)
    two_classes = 0 < y.sum() < len(y)
    return {
        "roc_auc": metrics.roc_auc_score(y, p, sample_weight=w) if two_classes else np.nan,
        "average_precision": metrics.average_precision_score(y, p, sample_weight=w) if two_classes else np.nan,
        "brier": metrics.brier_score_loss(y, p, sample_weight=w),
        "ece": ece(y, p, w),
        "tp": tp, "fp": fp, "tn": tn, "fn": fn, "precision": precision, "recall": recall, "f1": f1,
        "accuracy": metrics.accuracy_score(y, predicted, sample_weight=w),
    }


def assert_fields(result, wanted, index=None, exact_auc=True):
    for name, value in wanted.items():
        got = getattr(result, name) if index is None else getattr(result, name)[index]
        if name in ("roc_auc", "average_precision") and not exact_auc:
            continue
        np.testing.assert_allclose(got, value, rtol=RTOL, atol=1e-12, err_msg=name)
    if exact_auc:
        for bound in ("roc_auc_lower", "roc_auc_upper"):
            got = getattr(result, bound) if index is None else getattr(result, bound)[index]
            np.testing.assert_allclose(got, wanted["roc_auc"], rtol=RTOL)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("levels", [None, 100])
def test_score_overall_per_group_per_label_against_scikit_learn(backend, levels):
    y, p, x, w = make_data(1, levels=levels)
    for weights in (None, w):
        assert_fields(fastbce.score(y, p, sample_weight=weights, backend=backend), expected(y, p, weights))
        # from logits: the same cut (0 on the logit for 0.5), the same order
        logits = fastbce.score(y, x, from_logits=True, sample_weight=weights, threshold=0.3, backend=backend)
        for name in ("roc_auc", "tp", "fp", "tn", "fn", "f1"):
            np.testing.assert_allclose(getattr(logits, name), expected(y, p, weights, 0.3)[name], rtol=1e-9)
    groups = np.random.default_rng(2).integers(0, 4, len(y))
    per_group = fastbce.score(y, p, sample_weight=w, groups=groups, threshold=0.25, backend=backend)
    for g in range(4):
        rows = groups == g
        assert_fields(per_group, expected(y[rows], p[rows], w[rows], 0.25), g)
    Y, P = np.stack([y, 1 - y], 1), np.stack([p, 1 - p], 1)
    per_label = fastbce.score(Y, P, axis=0, backend=backend)
    for j in range(2):
        assert_fields(per_label, expected(Y[:, j], P[:, j]), j)


def test_hostile_slices():
    y, p, _, w = make_data(3, n=400)
    # all-equal predictions: AUC 1/2, every element predicted positive at 0.5
    flat = fastbce.score(y, np.full(len(y), 0.5, np.float32))
    assert flat.roc_auc == 0.5 and flat.recall == 1.0 and flat.fn == 0
    # one class: no AUC (NaN); a threshold nothing reaches: precision 0 (zero_division=0)
    one = fastbce.score(np.zeros(len(y)), p, threshold=1.0)
    assert np.isnan(one.roc_auc) and np.isnan(one.average_precision) and one.precision == 0.0
    assert one.f1 == 0.0 and one.accuracy == pytest.approx(np.mean(p < 1.0))
    # weights of 0 and a mask take elements out, as scikit-learn's weight 0 does
    zeroed = np.where(np.arange(len(y)) % 3 == 0, 0.0, w)
    assert_fields(fastbce.score(y, p, sample_weight=zeroed), expected(y, p, zeroed))
    mask = np.arange(len(y)) % 3 != 0
    assert_fields(fastbce.score(y, p, sample_weight=w, mask=mask), expected(y[mask], p[mask], w[mask]))
    # NaN: propagate makes the metric fields NaN, omit leaves the element out
    p_nan = p.copy()
    p_nan[5] = np.nan
    assert all(np.isnan(getattr(fastbce.score(y, p_nan), name))
               for name in ("roc_auc", "brier", "ece", "tp", "f1"))
    keep = ~np.isnan(p_nan)
    assert_fields(fastbce.score(y, p_nan, nan_policy="omit"), expected(y[keep], p[keep]))
    # p = 0 and p = 1 land in the first and the last calibration bin
    edge = fastbce.score(np.array([0, 1, 1, 0]), np.array([0.0, 1.0, 1.0, 0.0]))
    assert edge.ece == 0.0 and edge.brier == 0.0 and edge.roc_auc == 1.0
    # soft labels: the log loss stands, the ranking fields are NaN
    soft = fastbce.score(np.full(len(y), 0.3), p)
    assert np.isnan(soft.roc_auc) and soft.brier == pytest.approx(np.mean((p - 0.3) ** 2))
    # sums_only: the kernel pass alone
    light = fastbce.score(y, p, sums_only=True)
    assert light.log_loss == fastbce.score(y, p).log_loss and np.isnan(light.roc_auc)


@pytest.mark.parametrize("backend", COMPILED_BACKENDS)
def test_accumulator_chunked_equals_in_memory_and_merges_in_any_order(backend):
    y, p, _, w = make_data(4, n=20_000, ctr=True)
    exact = fastbce.score(y, p, sample_weight=w, backend=backend)
    parts = [fastbce.Accumulator(backend=backend).update(y[i:i + 3_000], p[i:i + 3_000], w[i:i + 3_000])
             for i in range(0, len(y), 3_000)]
    forward, backward = fastbce.Accumulator(backend=backend), fastbce.Accumulator(backend=backend)
    for part in parts:
        forward.merge(part)
    for part in parts[::-1]:
        backward.merge(part)
    a, b = forward.result(), backward.result()
    for name in fastbce._score.FIELDS:
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-13)
        if name not in ("roc_auc", "roc_auc_lower", "roc_auc_upper", "average_precision"):
            np.testing.assert_allclose(getattr(a, name), getattr(exact, name), rtol=1e-12)
    assert a.roc_auc_lower <= exact.roc_auc <= a.roc_auc_upper
    assert a.roc_auc_upper - a.roc_auc_lower < 2e-4
    assert a.average_precision == pytest.approx(exact.average_precision, abs=1e-3)
    # an empty batch is a no-op
    before = a.to_dict()
    forward.update(y[:0], p[:0], sample_weight=w[:0])
    assert all(np.array_equal(before[k], v, equal_nan=True) for k, v in forward.result().to_dict().items())


def test_bounds_on_click_through_data():
    """Predictions concentrated near 0: the default buckets give bounds 1e-4 apart."""
    y, p, _, _ = make_data(5, n=1_000_000, ctr=True)
    result = fastbce.Accumulator().update(y, p).result()
    assert result.roc_auc_lower <= metrics.roc_auc_score(y, p) <= result.roc_auc_upper
    assert result.roc_auc_upper - result.roc_auc_lower < 1e-4


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(2, 300), st.integers(0, 2**32 - 1), st.sampled_from([None, 3, 50, 1000]),
       st.booleans(), st.integers(0, 12))
def test_auc_bounds_hold_the_exact_value(n, seed, levels, weighted, bits):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    p = rng.random(n) ** 3
    if levels:
        p = np.round(p * levels) / levels
    w = rng.random(n) * (rng.random(n) < 0.9) if weighted else None
    if w is not None and not (np.sum(w * y) > 0 and np.sum(w * (1 - y)) > 0):
        return
    result = fastbce.Accumulator(auc_bits=max(bits, 1), backend="cython").update(y, p, w).result()
    exact = metrics.roc_auc_score(y, p, sample_weight=w)
    assert result.roc_auc_lower - 1e-12 <= exact <= result.roc_auc_upper + 1e-12


def _plan(y, p, **kw):
    options = dict(from_logits=False, eps=1e-7, sample_weight=None, pos_weight=None,
                   label_smoothing=0.0, mask=None, nan_policy="propagate", reduction="sum", axis=None)
    options.update(kw)
    return make_plan(y, p, **options)


@pytest.mark.parametrize("case", ["f32", "f64-logits", "f16-weights-mask", "strided-cols", "groups",
                                  "f32-labels-nan-omit", "f64-labels-nan", "groups-i32-weights",
                                  "f32-logits-strided-weights"])
def test_histogram_pass_twins(case):
    """The C and Numba histogram passes give the same bits; the NumPy reference the same sums."""
    rng = np.random.default_rng(6)
    n = 700_000  # three stripes (fewer with more scratch per stripe)
    y = rng.integers(0, 2, n).astype(np.uint8)
    p = rng.random(n).astype(np.float32) ** 4
    kw = {}
    if case == "f64-logits":
        p, kw = rng.normal(0, 5, n), {"from_logits": True}
    elif case == "f16-weights-mask":
        p = p.astype(np.float16)
        kw = {"sample_weight": rng.random(n).astype(np.float32), "mask": rng.random(n) < 0.8}
        y = y.astype(np.float16)
    elif case == "strided-cols":
        y, p = np.stack([y, 1 - y], 1)[::2], np.stack([p, 1 - p], 1)[::2]
        kw = {"axis": 0}
    elif case == "groups":
        kw = {"groups": rng.integers(0, 5, n)}
    elif case in ("f32-labels-nan-omit", "f64-labels-nan"):
        y = y.astype(np.float32 if case.startswith("f32") else np.float64)
        p = p.astype(y.dtype)
        p[rng.random(n) < 0.01] = np.nan
        kw = {"nan_policy": "omit" if case.endswith("omit") else "propagate",
              "mask": rng.random(n) < 0.9}
    elif case == "groups-i32-weights":
        kw = {"groups": rng.integers(0, 50, n).astype(np.int32),
              "sample_weight": rng.random(n)}
    elif case == "f32-logits-strided-weights":
        p, kw = rng.normal(0, 5, n).astype(np.float32), {"from_logits": True}
        kw["sample_weight"] = rng.random(2 * n).astype(np.float32)[::2]
    plan = _plan(y, p, **kw)
    got = {b: histogram_sums(plan, b, 2, threshold=0.3, bits=8, n_bins=7)
           for b in ("numpy", *COMPILED_BACKENDS)}
    for b in COMPILED_BACKENDS:
        for mine, reference in zip(got[b], got["numpy"]):
            np.testing.assert_allclose(mine, reference, rtol=1e-9, atol=1e-9)
    if len(COMPILED_BACKENDS) == 2:
        assert all(np.array_equal(a, b) for a, b in zip(got["numba"], got["cython"]))
    for threads in (1, 3):  # any thread count: the same bits
        again = histogram_sums(plan, COMPILED_BACKENDS[-1], threads, threshold=0.3, bits=8, n_bins=7)
        assert all(np.array_equal(a, b) for a, b in zip(again, got[COMPILED_BACKENDS[-1]]))


def _labelled_forms(values):
    pl = pytest.importorskip("polars")
    return {"numpy": values, "categorical": pd.Categorical(values), "series": pd.Series(values),
            "arrow": pa.array(values), "polars": pl.Series(values)}


@pytest.mark.parametrize("kind", ["strings", "int64-1e12"])
def test_labelled_groups_everywhere(kind):
    y, p, _, w = make_data(7, n=2_000)
    rng = np.random.default_rng(8)
    values = (np.array(["b", "a", "c"]) if kind == "strings"
              else np.array([10**12, -5, 3 * 10**12], np.int64))[rng.integers(0, 3, len(y))]
    labels = sorted(set(values.tolist()))
    for name, groups in _labelled_forms(values).items():
        loss = fastbce.bce(y, p, groups=groups)
        focal = fastbce.focal_bce(y, p, groups=groups)
        report = fastbce.score(y, p, sample_weight=w, groups=groups)
        frame = report.to_pandas()
        assert list(loss.index) == list(focal.index) == list(frame.index) == labels, name
        assert list(fastbce.roc_auc(y, p, groups=groups).index) == labels
        for label in labels:
            rows = values == label
            assert loss[label] == pytest.approx(fastbce.bce(y[rows], p[rows]), rel=1e-12)
            assert frame.loc[label, "roc_auc"] == pytest.approx(metrics.roc_auc_score(y[rows], p[rows], sample_weight=w[rows]), rel=1e-10)
    # an Accumulator keeps one slot per label, across updates and merges (by label)
    first, second = fastbce.Accumulator(), fastbce.Accumulator()
    first.update(y[:700], p[:700], w[:700], groups=values[:700])
    first.update(y[700:700], p[700:700], w[700:700], groups=values[700:700])  # empty: a no-op
    only_two = values[700:] != labels[0]
    second.update(y[700:][only_two], p[700:][only_two], w[700:][only_two], groups=pd.Categorical(values[700:][only_two]))
    second.update(y[700:][~only_two], p[700:][~only_two], w[700:][~only_two], groups=pa.array(values[700:][~only_two]))
    merged = second.merge(first).result().to_pandas()
    assert list(merged.index) == labels
    for label in labels:
        rows = values == label
        assert merged.loc[label, "count"] == rows.sum()
        assert merged.loc[label, "log_loss"] == pytest.approx(frame.loc[label, "log_loss"], rel=1e-12)


def test_categorical_keeps_its_categories_and_nulls_are_masked():
    y, p, _, _ = make_data(9, n=500)
    values = np.array(["x", "y", None], object)[np.arange(500) % 3]
    groups = pd.Categorical(values, categories=["y", "x", "unused"])
    report = fastbce.score(y, p, groups=groups).to_pandas()
    assert list(report.index) == ["y", "x", "unused"] and report.loc["unused", "count"] == 0
    assert report["count"].sum() == np.sum(values != None)  # noqa: E711 (the nulls are left out)


def test_bad_input_is_named():
    y, p, _, _ = make_data(10, n=50)
    for kw, name in (({"threshold": 1.5}, "threshold"), ({"n_bins": 0}, "n_bins"),
                     ({"threshold": "0.5"}, "threshold")):
        with pytest.raises(ValueError, match=name):
            fastbce.score(y, p, **kw)
    with pytest.raises(ValueError, match="auc_bits"):
        fastbce.Accumulator(auc_bits=17)
    with pytest.raises(ValueError, match="n_groups"):
        fastbce.score(y, p, groups=np.array(["a", "b"] * 25), n_groups=2)
    labelled = fastbce.Accumulator().update(y, p, groups=np.array(["a", "b"] * 25))
    with pytest.raises(ValueError, match="groups"):
        labelled.update(y, p)
    with pytest.raises(ValueError, match="labelled"):
        fastbce.Accumulator().update(y, p).merge(labelled)
    with pytest.raises(TypeError, match="groups"):
        fastbce.score(y, p, groups=np.array([1.5] * 50))


def test_cli_threshold_csv_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    import pyarrow.parquet as pq

    y, p, _, _ = make_data(11, n=5_000)
    segment = np.array(["s1", "s2"])[np.arange(len(y)) % 2]
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"y_true": y, "y_pred": p, "segment": segment}), path)
    result = subprocess.run([sys.executable, "-m", "fastbce", "score", str(path), "--group-by", "segment",
                             "--threshold", "0.3", "--format", "csv", "--plot", str(tmp_path / "r.png")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    header, overall, *rows = [line.split(",") for line in result.stdout.splitlines()]
    assert header[:1] + header[10:] == ["group", *fastbce._score.METRIC_FIELDS]
    assert float(overall[header.index("f1")]) == pytest.approx(expected(y, p, threshold=0.3)["f1"], rel=1e-10)
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
