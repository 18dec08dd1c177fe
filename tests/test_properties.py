"""Property tests: random shapes, dtypes, values and options against the oracle.

The dtype pairs and argument layouts drawn here are ones the other tests compile anyway, so that
Hypothesis adds few Numba compilations on a cold cache.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastbce
from conftest import BACKENDS
from helpers import check, same

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

PAIRS = [(np.float64, np.float64), (np.float32, np.uint8), (np.float32, np.float32)]

# Probabilities with the edge values in: 0, 1, tiny, subnormal, 1 - tiny, eps.
PROBS = st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 1.0, 1e-7, 1 - 1e-7, 5e-324, 1e-30,
                                                         1 - 1e-16, 0.5]))
LOGITS = st.one_of(st.floats(-1e6, 1e6), st.sampled_from([np.inf, -np.inf, 0.0, 1e4, -1e4, 40.0]))
LABELS = st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 1.0]))


@st.composite
def problems(draw):
    p_dtype, y_dtype = draw(st.sampled_from(PAIRS))
    ndim = draw(st.sampled_from([1, 2]))
    n_rows = draw(st.integers(1, 40))
    n_cols = draw(st.integers(1, 6)) if ndim == 2 else 1
    shape = (n_rows, n_cols) if ndim == 2 else (n_rows,)
    if n_rows * n_cols < 2:  # a single element gives every broadcast argument another layout
        shape = (2, n_cols) if ndim == 2 else (2,)
    from_logits = draw(st.booleans())
    nan_policy = draw(st.sampled_from(["propagate", "omit"]))
    values = LOGITS if from_logits else PROBS
    if nan_policy == "omit" or draw(st.booleans()):
        values = st.one_of(values, st.just(np.nan))
    p = draw(hnp.arrays(p_dtype, shape, elements=values.map(lambda v: float(np.asarray(v, p_dtype)))))
    labels = LABELS
    if nan_policy == "omit" or draw(st.booleans()):
        labels = st.one_of(labels, st.just(np.nan))
    if np.dtype(y_dtype).kind == "f":
        y = draw(hnp.arrays(y_dtype, shape, elements=labels.map(lambda v: float(np.asarray(v, y_dtype)))))
    else:
        y = draw(hnp.arrays(y_dtype, shape, elements=st.integers(0, 1)))
    options = {"from_logits": from_logits, "nan_policy": nan_policy,
               "eps": draw(st.sampled_from([1e-7, 1e-3, float(np.finfo(np.float32).eps)])),
               "label_smoothing": draw(st.sampled_from([0.0, 0.0, 0.1, 1.0]))}
    weights = draw(st.sampled_from(["none", "full", "per-label", "per-sample"]))
    cols = shape[-1] if ndim == 2 else shape[0]
    weight_shape = {"full": shape, "per-label": (cols,), "per-sample": (shape[0], 1) if ndim == 2 else shape}
    if weights != "none":
        options["sample_weight"] = draw(hnp.arrays(np.float64, weight_shape[weights],
                                                   elements=st.floats(0.0, 10.0)))
    if draw(st.booleans()):
        options["pos_weight"] = draw(hnp.arrays(np.float64, (cols,), elements=st.floats(0.0, 5.0)))
    if draw(st.booleans()):
        options["mask"] = draw(hnp.arrays(np.bool_, shape))
    reduction = draw(st.sampled_from(["mean", "sum", "none"]))
    options["reduction"] = reduction
    if reduction != "none":
        if draw(st.booleans()):
            n_groups = draw(st.integers(1, 5))
            options["groups"] = draw(hnp.arrays(np.intp, (shape[0],), elements=st.integers(0, n_groups - 1)))
            if draw(st.booleans()):
                options["n_groups"] = n_groups + draw(st.integers(0, 2))
        else:
            options["axis"] = draw(st.sampled_from([None, 0, 1, -1] if ndim == 2 else [None, 0, -1]))
    return y, p, options


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(problem=problems())
def test_matches_oracle(backend, problem):
    y, p, options = problem
    check(backend, y, p, **options)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "numpy"])
@SETTINGS
@given(problem=problems())
def test_compiled_backend_equals_reference(backend, problem):
    """The compiled backends and the NumPy reference agree (and raise alike) on the same input."""
    y, p, options = problem
    ours = fastbce.bce(y, p, backend=backend, **options)
    reference = fastbce.bce(y, p, backend="numpy", **options)
    np.testing.assert_allclose(ours, reference, rtol=1e-6 if p.dtype != np.float64 else 1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(problem=problems(), threads=st.sampled_from([1, 2]))
def test_sum_of_groups_and_axes_is_the_total(backend, problem, threads):
    """Per-label, per-sample and per-group sums add up to the total sum; 'none' sums to it too."""
    y, p, options = problem
    options = {k: v for k, v in options.items() if k not in ("reduction", "axis", "groups", "n_groups")}
    total = fastbce.bce(y, p, reduction="sum", backend=backend, n_threads=threads, **options)
    elements = fastbce.bce(y, p, reduction="none", backend=backend, **options).astype(np.float64)
    rtol = 1e-10 if p.dtype == np.float64 else 1e-5
    if not np.isfinite(total):
        assert same(float(np.sum(elements)), total)
        return
    assert np.sum(elements) == pytest.approx(total, rel=rtol, abs=1e-300)
    if p.ndim == 2:
        for axis in (0, 1):
            parts = fastbce.bce(y, p, reduction="sum", axis=axis, backend=backend, **options)
            assert parts.sum() == pytest.approx(total, rel=1e-10, abs=1e-300)
    groups = np.arange(p.shape[0]) % 3
    parts = fastbce.bce(y, p, reduction="sum", groups=groups, backend=backend, **options)
    assert parts.sum() == pytest.approx(total, rel=1e-10, abs=1e-300)
