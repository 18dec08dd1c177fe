"""Property tests: random shapes, dtypes, values and options against the oracle.

On Numba the dtype pairs and argument layouts drawn are ones the other tests compile anyway, so
that Hypothesis adds few compilations on a cold cache: two dtype pairs; weights and mask of full
shape or broadcast; at least two rows for 2-D input and a scalar pos_weight for 1-D input (a single
row or a per-element pos_weight gives the broadcast arguments other layouts).
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

NUMBA_PAIRS = [(np.float64, np.float64), (np.float32, np.uint8)]
OTHER_PAIRS = NUMBA_PAIRS + [(np.float32, np.float32), (np.float16, np.float16), (np.float64, np.int8)]


def _pairs(backend):
    return NUMBA_PAIRS if backend == "numba" else OTHER_PAIRS

# Probabilities with the edge values in: 0, 1, tiny, subnormal, 1 - tiny, eps.
PROBS = st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 1.0, 1e-7, 1 - 1e-7, 5e-324, 1e-30,
                                                         1 - 1e-16, 0.5]))
LOGITS = st.one_of(st.floats(-1e6, 1e6), st.sampled_from([np.inf, -np.inf, 0.0, 1e4, -1e4, 40.0]))
LABELS = st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 1.0]))


def _cast(value, dtype):
    with np.errstate(over="ignore"):  # 1e6 is inf in float16: a legitimate (infinite) logit
        return float(np.asarray(value, dtype))


@st.composite
def problems(draw, pairs):
    p_dtype, y_dtype = draw(st.sampled_from(pairs))
    ndim = draw(st.sampled_from([1, 2]))
    n_rows = draw(st.integers(2, 40))
    n_cols = draw(st.integers(1, 6)) if ndim == 2 else 1
    shape = (n_rows, n_cols) if ndim == 2 else (n_rows,)
    from_logits = draw(st.booleans())
    nan_policy = draw(st.sampled_from(["propagate", "omit"]))
    values = LOGITS if from_logits else PROBS
    if nan_policy == "omit" or draw(st.booleans()):
        values = st.one_of(values, st.just(np.nan))
    p = draw(hnp.arrays(p_dtype, shape, elements=values.map(lambda v: _cast(v, p_dtype))))
    labels = LABELS
    if nan_policy == "omit" or draw(st.booleans()):
        labels = st.one_of(labels, st.just(np.nan))
    if np.dtype(y_dtype).kind == "f":
        y = draw(hnp.arrays(y_dtype, shape, elements=labels.map(lambda v: _cast(v, y_dtype))))
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
                                                   elements=st.floats(0.0, 10.0, allow_subnormal=False)))
    if draw(st.booleans()):
        options["pos_weight"] = draw(hnp.arrays(np.float64, (cols,) if ndim == 2 else (),
                                                elements=st.floats(0.0, 5.0)))
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
@given(data=st.data())
def test_matches_oracle(backend, data):
    y, p, options = data.draw(problems(_pairs(backend)))
    check(backend, y, p, **options)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "numpy"])
@SETTINGS
@given(data=st.data())
def test_compiled_backend_equals_reference(backend, data):
    """The compiled backends and the NumPy reference agree on the same input."""
    y, p, options = data.draw(problems(_pairs(backend)))
    ours = fastbce.bce(y, p, backend=backend, **options)
    reference = fastbce.bce(y, p, backend="numpy", **options)
    np.testing.assert_allclose(ours, reference, rtol=1e-6 if p.dtype != np.float64 else 1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@SETTINGS
@given(data=st.data(), threads=st.sampled_from([1, 2]))
def test_sum_of_groups_and_axes_is_the_total(backend, data, threads):
    """Per-label, per-sample and per-group sums add up to the total sum; 'none' sums to it too."""
    y, p, options = data.draw(problems(_pairs(backend)))
    options = {k: v for k, v in options.items() if k not in ("reduction", "axis", "groups", "n_groups")}
    total = fastbce.bce(y, p, reduction="sum", backend=backend, n_threads=threads, **options)
    elements = fastbce.bce(y, p, reduction="none", backend=backend, **options).astype(np.float64)
    rtol = 1e-10 if p.dtype == np.float64 else 1e-5
    if not np.isfinite(total):
        assert same(float(np.sum(elements)), total)
        return
    # element outputs are float32 for float32 data: tiny weighted losses underflow there
    tiny = float(np.finfo(np.float64 if p.dtype == np.float64 else np.float32).tiny) * p.size
    assert np.sum(elements) == pytest.approx(total, rel=rtol, abs=tiny)
    # float32: the routes differ within the fast path's accuracy (a product of probabilities for
    # the total, a logarithm per element for rows shorter than 16 and 1-D groups)
    rtol = 1e-10 if p.dtype == np.float64 else 1e-6
    if p.ndim == 2:
        for axis in (0, 1):
            parts = fastbce.bce(y, p, reduction="sum", axis=axis, backend=backend, **options)
            assert parts.sum() == pytest.approx(total, rel=rtol, abs=1e-300)
    groups = np.arange(p.shape[0]) % 3
    parts = fastbce.bce(y, p, reduction="sum", groups=groups, backend=backend, **options)
    assert parts.sum() == pytest.approx(total, rel=rtol, abs=1e-300)
