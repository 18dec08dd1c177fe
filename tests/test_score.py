"""The scoring report (``fastbce.score``, ``ScoreResult``) and the streaming ``Accumulator``.

Every field is checked against a float64 NumPy computation written here, ``log_loss`` also against
scikit-learn; the accumulator against one ``score`` call over any chunking and merge order.
"""

import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastbce
from conftest import BACKENDS, COMPILED_BACKENDS
from oracle import clip_bounds

FIELDS = ["count", "weight_sum", "positive_rate", "mean_prediction", "log_loss",
          "normalized_entropy", "calibration", "log_loss_positives", "log_loss_negatives"]
RTOL = 1e-12


# ------------------------------------------------------------------------------------------------
# The float64 reference
# ------------------------------------------------------------------------------------------------

def _divide(numerator, denominator):
    """numerator / denominator, NaN where the denominator is 0 (elementwise)."""
    numerator, denominator = np.broadcast_arrays(np.asarray(numerator, float), np.asarray(denominator, float))
    out = np.full(numerator.shape, np.nan)
    with np.errstate(all="ignore"):
        np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def expected_score(y, v, *, from_logits=False, eps=1e-7, sample_weight=None, mask=None,
                   nan_policy="propagate", groups=None, n_groups=None, axis=None):
    """{field: float or array} of the report, from per-element float64 terms and plain sums."""
    lo, hi = clip_bounds(eps, np.asarray(v).dtype)
    y = np.asarray(y, np.float64)
    v = np.asarray(v, np.float64)
    shape = v.shape
    w = np.broadcast_to(np.asarray(1.0 if sample_weight is None else sample_weight, np.float64), shape)
    counted = np.ones(shape, bool) if mask is None else np.broadcast_to(mask, shape).copy()
    if nan_policy == "omit":
        counted &= ~(np.isnan(y) | np.isnan(v))
    with np.errstate(all="ignore"):
        if from_logits:
            q = 1.0 / (1.0 + np.exp(-v))
            nll_pos, nll_neg = np.logaddexp(0.0, -v), np.logaddexp(0.0, v)
        else:
            q = np.clip(v, lo, hi)
            nll_pos, nll_neg = -np.log(q), -np.log1p(-q)
        # y·(-log q) and (1-y)·(-log(1-q)); a zero coefficient drops the term (logits ±inf), but
        # NaN propagates into both parts (0·NaN = NaN, as a weight of 0 does not hide a NaN)
        nan = np.isnan(y) | np.isnan(v)
        positive = np.where(nan, np.nan, np.where(y == 0, 0.0, y * nll_pos))
        negative = np.where(nan, np.nan, np.where(y == 1, 0.0, (1.0 - y) * nll_neg))
        terms = {"count": np.ones(shape), "weight": w, "wy": w * y, "wq": w * q,
                 "w1my": w * (1.0 - y), "loss": w * (positive + negative), "pos": w * positive,
                 "neg": w * negative}
        terms = {k: np.where(counted, t, 0.0) for k, t in terms.items()}

    def total(t):
        if groups is not None:
            rows = t.sum(axis=1) if t.ndim == 2 else t
            out = np.zeros(int(np.max(groups)) + 1 if n_groups is None else n_groups)
            np.add.at(out, groups, rows)
            return out
        if t.ndim == 2 and axis is not None:
            return t.sum(axis=axis)
        return np.array([t.sum()])

    s = {k: total(t) for k, t in terms.items()}
    rate = _divide(s["wy"], s["weight"])
    log_loss = _divide(s["loss"], s["weight"])
    mean_prediction = _divide(s["wq"], s["weight"])
    with np.errstate(all="ignore"):
        entropy = -(np.where(rate > 0, rate * np.log(rate), 0.0)
                    + np.where(rate < 1, (1 - rate) * np.log(1 - rate), 0.0))
    result = {
        "count": s["count"].astype(np.int64),
        "weight_sum": s["weight"],
        "positive_rate": rate,
        "mean_prediction": mean_prediction,
        "log_loss": log_loss,
        "normalized_entropy": _divide(log_loss, entropy),
        "calibration": _divide(mean_prediction, rate),
        "log_loss_positives": _divide(s["pos"], s["wy"]),
        "log_loss_negatives": _divide(s["neg"], s["w1my"]),
    }
    overall = groups is None and (axis is None or v.ndim == 1)
    return {k: (val[0].item() if overall else val) for k, val in result.items()}


def assert_report(result, wanted, rtol=RTOL, msg=""):
    """A ScoreResult (or its to_dict) equals the reference: count exactly, the rest within rtol."""
    got = result if isinstance(result, dict) else result.to_dict()
    assert list(got)[:len(FIELDS)] == FIELDS, f"{msg}: keys {list(got)}"
    overall = np.ndim(wanted["count"]) == 0
    for name in FIELDS:
        value = got[name]
        if overall:
            assert type(value) is (int if name == "count" else float), f"{msg}: {name} is {type(value)}"
        else:
            assert isinstance(value, np.ndarray) and value.shape == np.shape(wanted[name]), f"{msg}: {name}"
            assert value.dtype == (np.int64 if name == "count" else np.float64), f"{msg}: {name} {value.dtype}"
        if name == "count":
            np.testing.assert_array_equal(value, wanted[name], err_msg=f"{msg}: count")
        else:
            np.testing.assert_allclose(value, wanted[name], rtol=rtol, atol=0, err_msg=f"{msg}: {name}")


def same_report(a, b):
    """Bit-identical reports (NaN equal to NaN)."""
    a, b = a.to_dict(), b.to_dict()
    return all(np.array_equal(a[k], b[k], equal_nan=True) and type(a[k]) is type(b[k]) for k in FIELDS)


# ------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------

def make_data(seed, shape=(400, 3), soft=True, from_logits=False):
    rng = np.random.default_rng(seed)
    if soft:
        y = rng.random(shape)
        y[rng.random(shape) < 0.3] = 0.0
        y[rng.random(shape) < 0.3] = 1.0
    else:
        y = (rng.random(shape) < 0.3).astype(np.float64)
    if from_logits:
        v = rng.normal(0.0, 3.0, shape)
    else:
        v = rng.random(shape)
        v[rng.random(shape) < 0.02] = 0.0  # clipped to eps
        v[rng.random(shape) < 0.02] = 1.0
    w = rng.uniform(0.1, 3.0, shape)
    mask = rng.random(shape) < 0.85
    return y, v, w, mask


# ------------------------------------------------------------------------------------------------
# score
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("from_logits", [False, True], ids=["prob", "logits"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_overall(backend, from_logits):
    y, v, w, mask = make_data(1, from_logits=from_logits)
    for options in ({}, {"sample_weight": w}, {"mask": mask}, {"sample_weight": w, "mask": mask},
                    {"sample_weight": w[:, :1]}, {"eps": 1e-3}):
        result = fastbce.score(y, v, from_logits=from_logits, backend=backend, **options)
        assert isinstance(result, fastbce.ScoreResult)
        assert_report(result, expected_score(y, v, from_logits=from_logits, **options), msg=str(list(options)))
    # 1-D input too, and the report's log_loss is bce's mean
    result = fastbce.score(y[:, 0], v[:, 0], sample_weight=w[:, 0], from_logits=from_logits, backend=backend)
    assert_report(result, expected_score(y[:, 0], v[:, 0], sample_weight=w[:, 0], from_logits=from_logits))
    assert result.log_loss == pytest.approx(
        fastbce.bce(y[:, 0], v[:, 0], sample_weight=w[:, 0], from_logits=from_logits, backend=backend), rel=1e-14)
    assert result.count == 400 and result.weight_sum == pytest.approx(w[:, 0].sum(), rel=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
def test_hand_computed(backend):
    y = np.array([1.0, 0.0, 1.0, 0.0])
    p = np.array([0.8, 0.4, 0.6, 0.1])
    w = np.array([1.0, 2.0, 1.0, 4.0])
    r = fastbce.score(y, p, sample_weight=w, backend=backend)
    assert r.count == 4 and r.weight_sum == 8.0
    assert r.positive_rate == 0.25 and r.mean_prediction == pytest.approx(2.6 / 8, rel=1e-15)
    loss = -(np.log(0.8) + 2 * np.log(0.6) + np.log(0.6) + 4 * np.log(0.9))
    assert r.log_loss == pytest.approx(loss / 8, rel=1e-14)
    entropy = -(0.25 * np.log(0.25) + 0.75 * np.log(0.75))
    assert r.normalized_entropy == pytest.approx(loss / 8 / entropy, rel=1e-14)
    assert r.calibration == pytest.approx(2.6 / 8 / 0.25, rel=1e-14)
    assert r.log_loss_positives == pytest.approx(-(np.log(0.8) + np.log(0.6)) / 2, rel=1e-14)
    assert r.log_loss_negatives == pytest.approx(-(2 * np.log(0.6) + 4 * np.log(0.9)) / 6, rel=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
def test_extreme_logits_and_zero_weights(backend):
    x = np.array([np.inf, -np.inf, 1e4, -1e4, 0.0])
    right = np.array([1.0, 0.0, 1.0, 0.0, 1.0])
    r = fastbce.score(right, x, from_logits=True, backend=backend)
    assert r.count == 5 and r.mean_prediction == 0.5 and r.positive_rate == 0.6
    assert r.log_loss == pytest.approx(np.log(2) / 5, rel=1e-15)
    assert r.log_loss_positives == pytest.approx(np.log(2) / 3, rel=1e-15) and r.log_loss_negatives == 0.0
    assert_report(r, expected_score(right, x, from_logits=True))
    wrong = fastbce.score(1.0 - right, x, from_logits=True, backend=backend)
    assert wrong.log_loss == np.inf and wrong.log_loss_positives == np.inf
    assert wrong.log_loss_negatives == np.inf and wrong.normalized_entropy == np.inf
    # rows of weight 0 are counted but weigh nothing: their group's ratios are NaN
    groups = np.array([0, 0, 1, 1, 1])
    z = fastbce.score(right, x, from_logits=True, groups=groups, sample_weight=[0, 0, 1, 1, 1],
                      backend=backend)
    np.testing.assert_array_equal(z.count, [2, 3])
    np.testing.assert_array_equal(z.weight_sum, [0.0, 3.0])
    assert np.isnan([getattr(z, name)[0] for name in FIELDS[2:]]).all()
    assert_report(z, expected_score(right, x, from_logits=True, groups=groups, sample_weight=[0, 0, 1, 1, 1]))


@pytest.mark.parametrize("from_logits", [False, True], ids=["prob", "logits"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_per_group(backend, from_logits):
    y, v, w, mask = make_data(2, from_logits=from_logits)
    rng = np.random.default_rng(3)
    groups = rng.integers(0, 6, 400)
    groups[groups == 3] = 0  # group 3 is empty
    groups[:5] = 7  # group 7: a handful of rows ...
    mask[:5] = False  # ... all masked: count 0 as well
    groups[5:9] = 5
    y[groups == 5] = 0.0  # group 5: no positives
    y[groups == 4] = 1.0  # group 4: no negatives
    for options in ({}, {"sample_weight": w, "mask": mask}, {"sample_weight": w[:, :1], "n_groups": 10}):
        result = fastbce.score(y, v, groups=groups, from_logits=from_logits, backend=backend, **options)
        wanted = expected_score(y, v, groups=groups, from_logits=from_logits, **options)
        assert_report(result, wanted, msg=str(list(options)))
        assert len(result.count) == options.get("n_groups", 8)
    # the degenerate groups, by hand: 3 and 6, 8, 9 have no rows, 7 only masked ones
    result = fastbce.score(y, v, groups=groups, n_groups=10, sample_weight=w, mask=mask,
                           from_logits=from_logits, backend=backend)
    for empty in (3, 6, 7, 8, 9):
        assert result.count[empty] == 0 and result.weight_sum[empty] == 0.0
        for name in FIELDS[2:]:
            assert np.isnan(result.to_dict()[name][empty]), (empty, name)
    assert result.positive_rate[5] == 0.0 and np.isnan(result.calibration[5])
    assert np.isnan(result.log_loss_positives[5]) and np.isnan(result.normalized_entropy[5])
    assert np.isfinite(result.log_loss_negatives[5]) and np.isfinite(result.log_loss[5])
    assert result.positive_rate[4] == 1.0 and np.isnan(result.log_loss_negatives[4])
    assert np.isnan(result.normalized_entropy[4]) and np.isfinite(result.calibration[4])
    assert np.isfinite(result.log_loss_positives[4])
    assert np.isfinite(result.normalized_entropy[[0, 1, 2]]).all()


@pytest.mark.parametrize("from_logits", [False, True], ids=["prob", "logits"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_per_label_and_per_sample(backend, from_logits):
    y, v, w, mask = make_data(4, shape=(300, 5), from_logits=from_logits)
    mask[:, 3] = False  # a label with nothing counted
    y[:, 1] = 0.0  # a label with no positives
    for options in ({}, {"sample_weight": w, "mask": mask}, {"sample_weight": w[:, :1]}):
        for axis in (0, 1, -2):
            result = fastbce.score(y, v, axis=axis, from_logits=from_logits, backend=backend, **options)
            wanted = expected_score(y, v, axis=axis % 2, from_logits=from_logits, **options)
            assert_report(result, wanted, msg=f"{list(options)} axis={axis}")
    result = fastbce.score(y, v, axis=0, mask=mask, backend=backend, from_logits=from_logits)
    assert result.count[3] == 0 and np.isnan(result.log_loss[3]) and len(result.count) == 5
    assert np.isnan(result.calibration[1]) and np.isnan(result.normalized_entropy[1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_policies(backend):
    y, v, w, mask = make_data(5)
    y[3, 1] = np.nan
    v[7, 2] = np.nan
    v[9, 0] = np.nan
    groups = np.arange(400) % 4
    for kw in ({}, {"axis": 0}, {"groups": groups}):
        omitted = fastbce.score(y, v, sample_weight=w, mask=mask, nan_policy="omit", backend=backend, **kw)
        assert_report(omitted, expected_score(y, v, sample_weight=w, mask=mask, nan_policy="omit", **kw))
        nan = np.isnan(y) | np.isnan(v)
        assert same_report(omitted, fastbce.score(y, v, sample_weight=w, mask=mask & ~nan, backend=backend, **kw))
        propagated = fastbce.score(y, v, sample_weight=w, mask=mask, backend=backend, **kw)
        assert_report(propagated, expected_score(y, v, sample_weight=w, mask=mask, **kw), msg=str(kw))
    propagated = fastbce.score(y, v, backend=backend)
    assert np.isnan(propagated.log_loss) and np.isnan(propagated.mean_prediction)
    assert propagated.count == 1200
    with pytest.raises(ValueError, match="NaN"):
        fastbce.score(y, v, nan_policy="raise", backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_log_loss_matches_sklearn(backend):
    metrics = pytest.importorskip("sklearn.metrics")
    eps = np.finfo(np.float64).eps  # scikit-learn clips to the dtype's machine epsilon
    y, p, w, _ = make_data(6, shape=(500, 3), soft=False)
    p[:4, 0] = [0.0, 1.0, 1e-20, 1 - 1e-17]  # clipped by both
    y[:4, 0] = [1.0, 0.0, 1.0, 0.0]
    groups = np.random.default_rng(6).integers(0, 4, 500)

    def sk(yy, pp, ww=None):
        return metrics.log_loss(yy, pp, sample_weight=ww, labels=[0, 1])

    overall = fastbce.score(y[:, 0], p[:, 0], eps=eps, backend=backend)
    assert overall.log_loss == pytest.approx(sk(y[:, 0], p[:, 0]), rel=1e-10)
    weighted = fastbce.score(y[:, 0], p[:, 0], sample_weight=w[:, 0], eps=eps, backend=backend)
    assert weighted.log_loss == pytest.approx(sk(y[:, 0], p[:, 0], w[:, 0]), rel=1e-10)
    assert weighted.log_loss != pytest.approx(overall.log_loss, rel=1e-3)  # the weights matter
    per_label = fastbce.score(y, p, sample_weight=w, axis=0, eps=eps, backend=backend)
    np.testing.assert_allclose(per_label.log_loss, [sk(y[:, j], p[:, j], w[:, j]) for j in range(3)], rtol=1e-10)
    per_group = fastbce.score(y[:, 0], p[:, 0], sample_weight=w[:, 0], groups=groups, eps=eps, backend=backend)
    np.testing.assert_allclose(
        per_group.log_loss,
        [sk(y[groups == g, 0], p[groups == g, 0], w[groups == g, 0]) for g in range(4)], rtol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_to_dict_to_pandas_repr(backend):
    pd = pytest.importorskip("pandas")
    y, v, w, mask = make_data(7)
    overall = fastbce.score(y, v, sample_weight=w, backend=backend)
    d = overall.to_dict()
    assert list(d)[:len(FIELDS)] == FIELDS
    series = overall.to_pandas()
    assert isinstance(series, pd.Series) and list(series.index) == list(d)
    for name in FIELDS:
        assert series[name] == d[name] == getattr(overall, name)
    text = repr(overall)
    for name in FIELDS:
        assert name in text and f"{d[name]:.6g}" in text, name

    groups = np.arange(400) % 3
    groups[groups == 1] = 0  # group 1 is empty: NaN shows as nan
    per_group = fastbce.score(y, v, groups=groups, mask=mask, backend=backend)
    d = per_group.to_dict()
    frame = per_group.to_pandas()
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == list(d)
    assert frame.index.name == "group" and len(frame) == 3
    for name in FIELDS:
        np.testing.assert_array_equal(frame[name].to_numpy(), d[name])
    assert frame["count"].dtype == np.int64
    text = repr(per_group)
    for name in FIELDS:
        assert name[:18] in text
        for value in d[name]:
            assert f"{value:.6g}" in text, (name, value)
    assert "nan" in text
    per_label = fastbce.score(y, v, axis=0, backend=backend).to_pandas()
    assert per_label.index.name == "label" and len(per_label) == 3
    # many groups: the repr is cut, and says so
    many = fastbce.score(y[:, 0], v[:, 0], groups=np.arange(400) % 25, backend=backend)
    assert "... 5 more" in repr(many) and len(repr(many).splitlines()) < 30


@pytest.mark.parametrize("backend", COMPILED_BACKENDS)
def test_threads_bit_identical(backend):
    from fastbce import _threads

    if _threads.available_cores() < 2:
        pytest.skip("needs 2 cores")
    y, v, w, mask = make_data(8, shape=(80_000, 4))  # 320k elements: 10 chunks
    groups = np.random.default_rng(8).integers(0, 30, 80_000)
    for kw in ({}, {"axis": 0}, {"groups": groups}):
        one = fastbce.score(y, v, sample_weight=w, mask=mask, n_threads=1, backend=backend, **kw)
        two = fastbce.score(y, v, sample_weight=w, mask=mask, n_threads=2, backend=backend, **kw)
        assert same_report(one, two), kw
        reference = fastbce.score(y, v, sample_weight=w, mask=mask, backend="numpy", **kw)
        assert_report(two, reference.to_dict(), msg=str(kw))


# ------------------------------------------------------------------------------------------------
# Accumulator
# ------------------------------------------------------------------------------------------------

N_ROWS = 120
MODES = ["overall", "groups", "labels"]


def _dataset(mode, from_logits=False):
    """2-D data with weights, a mask and a few NaNs (nan_policy='omit'), and the mode's settings."""
    y, v, w, mask = make_data(9, shape=(N_ROWS, 3), from_logits=from_logits)
    y[5, 1] = np.nan
    v[17, 0] = np.nan
    groups = np.random.default_rng(9).integers(0, 5, N_ROWS)
    groups[groups == 2] = 3  # an empty group
    settings = {"from_logits": from_logits, "nan_policy": "omit"}
    call = {"sample_weight": w, "mask": mask}
    if mode == "groups":
        settings["n_groups"] = 6
        call["groups"] = groups
    elif mode == "labels":
        settings["axis"] = 0
    return y, v, call, settings


def _one_call(y, v, call, settings, backend):
    kw = dict(settings, **call)
    kw.pop("n_groups", None)
    if "groups" in call:
        kw["n_groups"] = settings["n_groups"]
    return fastbce.score(y, v, backend=backend, **kw)


def _chunk_accumulators(y, v, call, settings, bounds, backend):
    accumulators = []
    for start, stop in bounds:
        acc = fastbce.Accumulator(backend=backend, **settings)
        part = {k: a[start:stop] for k, a in call.items()}
        assert acc.update(y[start:stop], v[start:stop], **part) is acc
        accumulators.append(acc)
    return accumulators


def _merge_plan(draw, n):
    """A random merge tree over n accumulators: pairs (into, from) of current pool positions."""
    plan = []
    for size in range(n, 1, -1):
        i = draw(st.integers(0, size - 1))
        j = draw(st.integers(0, size - 2))
        plan.append((i, j if j < i else j + 1))
    return plan


@st.composite
def chunkings(draw):
    cuts = sorted(draw(st.sets(st.integers(1, N_ROWS - 1), max_size=9)))
    bounds = list(zip([0, *cuts], [*cuts, N_ROWS]))
    return bounds, _merge_plan(draw, len(bounds))


def _run_plan(pool, plan):
    pool = list(pool)
    for into, source in plan:
        assert pool[into].merge(pool[source]) is pool[into]
        del pool[source]
    return pool[0]


@pytest.mark.parametrize("from_logits", [False, True], ids=["prob", "logits"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(chunking=chunkings())
def test_any_chunking_any_merge_order(backend, mode, from_logits, chunking):
    bounds, plan = chunking
    y, v, call, settings_ = _dataset(mode, from_logits)
    whole = _one_call(y, v, call, settings_, backend)
    merged = _run_plan(_chunk_accumulators(y, v, call, settings_, bounds, backend), plan).result()
    assert_report(merged, whole.to_dict(), rtol=1e-12, msg=f"{bounds} {plan}")
    # the same chunks merged the same way: bit-identical
    again = _run_plan(_chunk_accumulators(y, v, call, settings_, bounds, backend), plan).result()
    assert same_report(merged, again)
    # one accumulator fed the chunks in order
    acc = fastbce.Accumulator(backend=backend, **settings_)
    for start, stop in bounds:
        acc.update(y[start:stop], v[start:stop], **{k: a[start:stop] for k, a in call.items()})
    assert_report(acc.result(), whole.to_dict(), rtol=1e-12)
    # and the one call is right
    if len(bounds) == 1:
        assert_report(whole, expected_score(y, v, **dict(settings_, **call)))


@pytest.mark.parametrize("mode", MODES)
def test_accumulator_against_reference_and_across_backends(mode):
    """Each backend's accumulator gives the float64 reference; accumulators of different backends merge."""
    y, v, call, settings_ = _dataset(mode)
    wanted = expected_score(y, v, **dict(settings_, **call))
    halves = [(0, 50), (50, N_ROWS)]
    for backend in BACKENDS:
        first, second = _chunk_accumulators(y, v, call, settings_, halves, backend)
        assert_report(first.merge(second).result(), wanted, msg=backend)
    mixed = _chunk_accumulators(y, v, call, settings_, halves[:1], BACKENDS[-1])[0]
    mixed.merge(_chunk_accumulators(y, v, call, settings_, halves[1:], BACKENDS[0])[0])
    assert_report(mixed.result(), wanted)
    if mode == "groups":
        result = mixed.result()
        assert len(result.count) == 6 and result.count[2] == 0 and np.isnan(result.log_loss[2])
        assert result.to_pandas().index.name == "group"
    if mode == "labels":
        assert mixed.result().to_pandas().index.name == "label"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_pickle(backend, mode):
    y, v, call, settings_ = _dataset(mode)
    bounds = [(0, 40), (40, 90), (90, N_ROWS)]
    a, b, c = _chunk_accumulators(y, v, call, settings_, bounds, backend)
    direct = _chunk_accumulators(y, v, call, settings_, bounds, backend)
    direct = direct[0].merge(direct[1]).merge(direct[2]).result()
    b_copy = pickle.loads(pickle.dumps(b))
    assert b_copy is not b and b_copy.settings == b.settings
    assert same_report(b_copy.result(), b.result())
    # merge a pickled accumulator, merge into one, and keep updating an unpickled one
    via_pickle = pickle.loads(pickle.dumps(a)).merge(b_copy).merge(pickle.loads(pickle.dumps(c))).result()
    assert same_report(via_pickle, direct)
    restored = pickle.loads(pickle.dumps(fastbce.Accumulator(backend=backend, **settings_)))
    for start, stop in bounds:
        restored.update(y[start:stop], v[start:stop], **{k: arr[start:stop] for k, arr in call.items()})
    assert same_report(restored.result(), direct)


def test_merge_does_not_change_the_other_and_results_are_snapshots():
    y, v, call, settings_ = _dataset("groups")
    a, b = _chunk_accumulators(y, v, call, settings_, [(0, 60), (60, N_ROWS)], "numba")
    before_b = b.result()
    snapshot = a.result()
    a.merge(b)
    assert same_report(b.result(), before_b)
    assert not same_report(a.result(), snapshot)
    assert same_report(snapshot, _chunk_accumulators(y, v, call, settings_, [(0, 60)], "numba")[0].result())


@pytest.mark.parametrize("backend", BACKENDS)
def test_merge_with_different_settings_raises(backend):
    base = {"from_logits": False, "eps": 1e-7, "n_groups": None, "axis": None}
    y, p = np.array([[0.0, 1.0], [1.0, 1.0]]), np.array([[0.2, 0.7], [0.6, 0.9]])
    for name, other in (("from_logits", True), ("eps", 1e-5), ("n_groups", 3), ("axis", 0),
                        ("nan_policy", "omit")):
        this = fastbce.Accumulator(backend=backend, **{k: val for k, val in base.items()})
        that_settings = dict(base, **{name: other})
        that = fastbce.Accumulator(backend=backend, **that_settings)
        this.update(y, p)
        before = this.totals.copy()
        with pytest.raises(ValueError, match=name):
            this.merge(that)
        with pytest.raises(ValueError, match=name):
            that.merge(this)
        np.testing.assert_array_equal(this.totals, before)  # a failed merge adds nothing
    # n_groups differing in value, too
    with pytest.raises(ValueError, match="n_groups"):
        fastbce.Accumulator(n_groups=3, backend=backend).merge(fastbce.Accumulator(n_groups=4, backend=backend))
    with pytest.raises(TypeError):
        fastbce.Accumulator(backend=backend).merge(fastbce.score(y, p, backend=backend))


@pytest.mark.parametrize("backend", BACKENDS)
def test_update_errors(backend):
    y, p = np.array([[0.0, 1.0], [1.0, 1.0]]), np.array([[0.2, 0.7], [0.6, 0.9]])
    groups = np.array([0, 1])
    with pytest.raises(ValueError, match="groups"):  # an overall accumulator has no groups
        fastbce.Accumulator(backend=backend).update(y[:, 0], p[:, 0]).update(y, p, groups=groups)
    with pytest.raises(ValueError, match="groups"):
        fastbce.Accumulator(n_groups=2, backend=backend).update(y, p)
    with pytest.raises(ValueError, match="groups"):  # ids beyond n_groups
        fastbce.Accumulator(n_groups=1, backend=backend).update(y, p, groups=groups)
    per_label = fastbce.Accumulator(axis=0, backend=backend)
    with pytest.raises(ValueError, match="no data"):
        per_label.result()
    per_label.update(y, p)
    with pytest.raises(ValueError, match="labels"):
        per_label.update(np.zeros((2, 3)), np.full((2, 3), 0.5))
    other = fastbce.Accumulator(axis=0, backend=backend).update(np.zeros((2, 3)), np.full((2, 3), 0.5))
    with pytest.raises(ValueError, match="labels"):
        per_label.merge(other)
    assert len(per_label.result().count) == 2
    assert_report(per_label.result(), expected_score(y, p, axis=0))
    # an empty per-label accumulator merges as nothing, either way round
    empty = fastbce.Accumulator(axis=0, backend=backend)
    assert same_report(per_label.merge(empty).result(), fastbce.score(y, p, axis=0, backend=backend))
    assert same_report(empty.merge(per_label).result(), per_label.result())
    # the checks of score's arguments apply to update
    with pytest.raises(ValueError, match="y_pred"):
        fastbce.Accumulator(backend=backend).update(y, p + 1.0)
    for bad in ({"n_groups": 0}, {"axis": 1}, {"eps": 0.0}, {"n_groups": 2, "axis": 0}):
        with pytest.raises(ValueError):
            fastbce.Accumulator(backend=backend, **bad)


def test_empty_overall_and_group_accumulators_give_nan():
    """Without any update, an overall or per-group accumulator reports count 0 and NaN ratios."""
    overall = fastbce.Accumulator().result()
    assert overall.count == 0 and overall.weight_sum == 0.0
    assert all(np.isnan(getattr(overall, name)) for name in FIELDS[2:])
    per_group = fastbce.Accumulator(n_groups=3).result()
    assert (per_group.count == 0).all() and np.isnan(per_group.log_loss).all()


def _metric_dict(result):
    return {name: getattr(result, name) for name in ("brier", "ece", "tp", "fp", "tn", "fn",
                                                      "roc_auc", "roc_auc_lower", "average_precision")}


@pytest.mark.parametrize("case", ["hard", "weighted", "groups"])
@pytest.mark.parametrize("backend", COMPILED_BACKENDS)
def test_accumulator_stripes(backend, case):
    """Updates of 1, 3 and 2 histogram stripes (auc_bits=4: one stripe per 2^18 elements) are
    kept per stripe: the sums of one call to 1e-12 (the histogram of hard labels exactly), the
    same bits for 1, 2 and 3 threads, merges of accumulators with different stripe counts."""
    from fastbce._histogram import histogram_sums
    from fastbce._score import _plan_of

    n = 1_000_000
    rng = np.random.default_rng(26)
    p = rng.random(n).astype(np.float32)
    y = (rng.random(n) < p).astype(np.float32)
    call, settings_ = {}, {"auc_bits": 4, "nan_policy": "omit"}
    if case == "weighted":
        p[rng.random(n) < 1e-4] = np.nan
        call = {"sample_weight": rng.random(n), "mask": rng.random(n) < 0.9}
    if case == "groups":
        groups = rng.integers(0, 7, n)
        groups[groups == 3] = 4  # an empty group
        call, settings_["n_groups"] = {"groups": groups}, 7
    bounds = [(0, 100_000), (100_000, 700_000), (700_000, n)]

    def fed(threads, parts=bounds):
        acc = fastbce.Accumulator(backend=backend, n_threads=threads, **settings_)
        for start, stop in parts:
            acc.update(y[start:stop], p[start:stop], **{k: a[start:stop] for k, a in call.items()})
        return acc

    one = fed(1)
    assert one.state[2].shape[0] == 3  # the stripes of the largest update
    for threads in (2, 3):
        assert same_report(fed(threads).result(), one.result())
        assert all(np.array_equal(a, b, equal_nan=True) for a, b in
                   zip(_metric_dict(fed(threads).result()).values(), _metric_dict(one.result()).values()))
    plan = _plan_of(y, p, from_logits=False, eps=1e-7, nan_policy="omit", groups=call.get("groups"),
                    n_groups=settings_.get("n_groups"), axis=None,
                    sample_weight=call.get("sample_weight"), mask=call.get("mask"))
    hist, extra = histogram_sums(plan, "numpy", 1, threshold=0.5, bits=4, n_bins=15)
    result = one.result()
    if case == "weighted":
        np.testing.assert_allclose(result.hist, hist, rtol=1e-12)
    else:
        np.testing.assert_array_equal(result.hist, hist)
    np.testing.assert_allclose(result.extra, extra, rtol=1e-12)
    whole = fastbce.score(y, p, backend=backend, nan_policy="omit", n_groups=settings_.get("n_groups"),
                          **call)
    assert_report(result, whole.to_dict(), rtol=1e-12)
    for name in ("brier", "ece", "tp", "fp"):
        np.testing.assert_allclose(getattr(result, name), getattr(whole, name), rtol=1e-12, err_msg=name)
    # an accumulator of one stripe merged with one of three, either way round
    small, large = fed(2, bounds[:1]), fed(2, bounds[1:])
    assert small.state[2].shape[0] == 1 and large.state[2].shape[0] == 3
    for merged in (fed(2, bounds[:1]).merge(large), fed(2, bounds[1:]).merge(small)):
        assert merged.state[2].shape[0] == 3
        assert_report(merged.result(), whole.to_dict(), rtol=1e-12)
        np.testing.assert_allclose(merged.result().extra, extra, rtol=1e-12)
    again = pickle.loads(pickle.dumps(fed(2, bounds[:1]).merge(large)))
    assert same_report(again.result(), fed(2, bounds[:1]).merge(large).result())
