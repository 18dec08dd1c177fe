"""The common-case call path (fastbce/_quick.py) against the full path (make_plan, run_pass).

Every call gives the same result, to the bit, or the same exception with the same message, with
the common-case path on as with it off; the common case takes it, and a few cases that look
common but are not (non-native byte order, a strided out=, float16) do not.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastbce
from fastbce import _api, _plan, _quick

FUNCTIONS = (fastbce.bce, fastbce.bce_grad, fastbce.bce_value_and_grad)
VALUES = [0.0, 1.0, 0.5, 0.25, 1e-30, 1 - 1e-7, -0.5, 1.5, np.nan, np.inf, 1e4, -3.0]


def _outcome(function, args, kwargs):
    """(kind, value): the result as bits, or the exception's type and message."""
    try:
        result = function(*args, **kwargs)
    except (ValueError, TypeError) as error:
        return "error", (type(error), str(error))
    if isinstance(result, fastbce.ScoreResult):
        return "value", (result.totals.tobytes(), repr(result.to_dict()))
    parts = result if isinstance(result, tuple) else (result,)
    return "value", [(type(part), np.asarray(part).dtype, np.asarray(part).shape,
                      np.asarray(part).tobytes()) for part in parts]


def _both_paths(monkeypatch, function, args, kwargs):
    """(outcome with the common-case path, outcome without it, whether it ran the call)."""
    taken = []

    def recording(*a):
        done = _quick.quick_pass(*a)
        taken.append(done is not None)
        return done
    with monkeypatch.context() as patch:
        patch.setattr(_api, "quick_pass", recording)
        quick = _outcome(function, args, kwargs)
    with monkeypatch.context() as patch:
        patch.setattr(_api, "quick_pass", lambda *a: None)
        patch.setattr(_plan, "_common_plan", lambda *a: None)
        full = _outcome(function, args, kwargs)
    return quick, full, any(taken)


@st.composite
def calls(draw):
    common = draw(st.booleans())  # half the calls of the kinds the common-case path may take
    p_dtype = draw(st.sampled_from(["f4", "f8"] if common else ["f4", "f8", "f2", ">f4"]))
    y_dtype = draw(st.sampled_from(["f4", "f8", "b1", "u1", "i1"] + ([] if common else ["i8", "f2"])))
    shape = draw(st.sampled_from([(1,), (7,), (600,), (5, 3), (40, 17), (1, 9)]))
    layout = draw(st.sampled_from(["C"] if common else ["C", "F", "strided"]))
    values = draw(st.lists(st.sampled_from(VALUES[:4]), min_size=1, max_size=5))
    if draw(st.booleans()):
        values += draw(st.lists(st.sampled_from(VALUES), min_size=1, max_size=2))
    size = int(np.prod(shape))
    flat = np.resize(np.array(values), 2 * size)
    with np.errstate(invalid="ignore", over="ignore"):
        y = (np.resize(np.array([0.0, 1.0, 1.0]), 2 * size) if draw(st.booleans())
             else flat[::-1]).astype(y_dtype)
        p = flat.astype(p_dtype)
    if layout == "strided":
        y, p = y[::2].reshape(shape), p[::2].reshape(shape)
    else:
        y, p = (np.array(a[:size].reshape(shape), order=layout) for a in (y, p))
    kwargs = {}
    for name, options in (("from_logits", [False, True, np.True_]),
                          ("eps", [1e-7, 1e-3, 1e-30, 0.2, np.float32(1e-7), 0.6, 0]),
                          ("reduction", ["mean", "sum", "none"]),
                          ("nan_policy", ["propagate", "raise", "omit"]),
                          ("n_threads", [None, 1, 2, 0]),
                          ("backend", [None, "cython", "numpy", "cython", "bad"]),
                          ("axis", [None, 0]),
                          ("label_smoothing", [0.0, 0, 0.1])):
        if draw(st.booleans()) and not (common and name in ("axis", "label_smoothing")):
            kwargs[name] = draw(st.sampled_from(options))
    return y, p, kwargs


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(call=calls(), which=st.sampled_from(range(3)), out=st.sampled_from([None, "C", "strided", "bad"]))
def test_same_outcome_as_full_path(monkeypatch, call, which, out):
    y, p, kwargs = call
    function = FUNCTIONS[which]
    if which and out is not None:
        dtype = np.float64 if p.dtype == np.float64 else np.float32
        kwargs["out"] = {"C": np.full(p.shape, 7.0, dtype), "bad": np.zeros(p.shape, np.float16),
                         "strided": np.full(p.shape + (2,), 7.0, dtype)[..., 0]}[out]
    y0, p0 = y.copy(), p.copy()
    quick, full, _ = _both_paths(monkeypatch, function, (y, p), kwargs)
    assert quick == full
    assert np.array_equal(y, y0, equal_nan=True) and np.array_equal(p, p0, equal_nan=True)


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(call=calls())
def test_score_same_outcome_as_full_path(monkeypatch, call):
    """score, through the common-case plan (fastbce/_plan.py) and the one-slot report."""
    y, p, kwargs = call
    kwargs = {k: v for k, v in kwargs.items() if k not in ("reduction", "label_smoothing")}
    quick, full, _ = _both_paths(monkeypatch, fastbce.score, (y, p), kwargs)
    assert quick == full


@pytest.mark.parametrize("backend", ["cython", "numba"])
@pytest.mark.parametrize("function", FUNCTIONS)
@pytest.mark.parametrize("n", [1000, 3 * 32768 + 5])
def test_common_case_is_taken(monkeypatch, backend, function, n):
    rng = np.random.default_rng(n)
    y = (rng.random(n) < 0.4).astype(np.float32)
    p = rng.random(n).astype(np.float32)
    for kwargs in ({}, {"reduction": "sum", "n_threads": 2}, {"from_logits": True}):
        quick, full, taken = _both_paths(monkeypatch, function, (y, p),
                                         dict(kwargs, backend=backend))
        assert taken and quick == full


def test_uncommon_cases_take_full_path(monkeypatch):
    y = np.array([0.0, 1.0, 1.0], np.float32)
    p = np.array([0.2, 0.7, 0.9], np.float32)
    for args, kwargs in (((y, p.astype(np.float16)), {}), ((y, p.astype(">f4")), {}),
                         ((y, p), {"sample_weight": np.ones(3)}), ((y[::-1], p), {}),
                         ((y.tolist(), p), {}), ((y, p), {"eps": np.float32(1e-7)}),
                         ((y, p), {"nan_policy": "omit"})):
        quick, full, taken = _both_paths(monkeypatch, fastbce.bce, args, kwargs)
        assert not taken and quick == full


SUMS = [0.0, 1.0, 3.0, 0.5, 1e-300, 2.5e-320, 1e300, np.inf, np.nan, 7.25, 1 / 3]


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.lists(st.sampled_from(SUMS), min_size=7, max_size=7), st.sampled_from([0, 1, 5, 10**9]))
def test_overall_score_fields_as_per_label(sums, count):
    """ScoreResult of one slot (Python floats) gives the values, types and bits of the same slot
    computed by the array formulas of per-label results."""
    from fastbce._score import COUNT, FIELDS, ScoreResult
    sums[COUNT] = float(count)
    totals = np.array([sums])
    with np.errstate(all="ignore"):  # sums beyond what data gives: overflow in the array formulas
        overall, per_label = ScoreResult(totals), ScoreResult(totals.copy(), "label")
    for name in FIELDS:
        a, b = getattr(overall, name), getattr(per_label, name)[0].item()
        assert type(a) is type(b) and (a == b or (a != a and b != b)), name
        assert np.signbit(a) == np.signbit(b), name
