"""Hostile input: arrays of any dtype, shape, stride and value, and options of any kind.

Every call either gives the reference backend's result or raises the documented ValueError /
TypeError, the same on the compiled backend as on the reference; never a crash, never another
exception, never a modified input. (Cython here: it has no compile cost per dtype; Numba runs the
same kernels, checked bit for bit against Cython in test_backends.py.)
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastbce

# Valid dtypes are listed several times so that most calls get as far as the kernel.
DTYPES = ["f2", "f4", "f8", "i1", "u1", "b1"] * 4 + [">f8", ">f4", "i2", "i8", "u8", "c8", "O",
                                                      "U3", "M8[s]", "m8[s]", "g"]
VALUES = [0.0, 1.0, 0.5, 1e-30, 1 - 1e-16, -0.5, 1.5, 2.0, -1.0, np.nan, np.inf, -np.inf, 1e4, -1e4]
ARGUMENT_NAMES = ("y_true", "y_pred", "sample_weight", "pos_weight", "mask", "groups", "n_groups",
                  "eps", "label_smoothing", "nan_policy", "reduction", "axis", "from_logits",
                  "backend", "n_threads")


@st.composite
def arrays(draw, shape):
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    values = draw(st.lists(st.sampled_from(VALUES), min_size=1, max_size=4))
    size = int(np.prod(shape)) if shape else 1
    flat = np.resize(np.array(values, dtype=np.float64), max(size, 1) * 2)
    with np.errstate(all="ignore"):
        if dtype.kind in "OUSMm":
            base = flat.astype(np.int64).astype(dtype) if dtype.kind in "Mm" else flat.astype(dtype)
        else:
            base = flat.astype(dtype)
    strided = base[::2][:size]  # a non-contiguous view
    return strided.reshape(shape) if shape else strided[:1].reshape(())


@st.composite
def calls(draw):
    shape = draw(st.sampled_from([(1,), (5,), (3, 4), (4, 1)] * 3 + [(), (0,), (2, 2, 2), (0, 3)]))
    other = draw(st.sampled_from([shape] * 6 + [(5,), (4,), (3, 1)]))
    y_true = draw(arrays(shape))
    y_pred = draw(arrays(other))
    options = {}
    if draw(st.booleans()):
        options["sample_weight"] = draw(arrays(draw(st.sampled_from([(), (1,), shape, (4,)]))))
    if draw(st.booleans()):
        options["pos_weight"] = draw(st.sampled_from([2.0, -1.0, np.nan, np.array([1.0, 2.0])]))
    if draw(st.booleans()):
        options["mask"] = draw(arrays(shape))
    if draw(st.booleans()):
        options["groups"] = draw(arrays(shape[:1]))
    for name, valid, invalid in (("from_logits", [True, False], [1, "yes"]),
                                 ("eps", [1e-7, np.float32(1e-3)], [0.0, 0.5, -1.0, "x"]),
                                 ("label_smoothing", [0.0, 0.1], [-0.1, 1.5, np.nan]),
                                 ("nan_policy", ["propagate", "raise", "omit"], ["ignore"]),
                                 ("reduction", ["mean", "sum", "none"], ["max", None]),
                                 ("axis", [None, 0, 1, -1], [2, 1.0, True]),
                                 ("n_threads", [None, 1, 2], [0, -3, 2.5])):
        if draw(st.booleans()):
            options[name] = draw(st.sampled_from(valid * 6 + invalid))
    return y_true, y_pred, options


def _outcome(y_true, y_pred, options, backend):
    try:
        return "value", fastbce.bce(y_true, y_pred, backend=backend, **options)
    except (ValueError, TypeError) as error:
        return type(error).__name__, str(error)


def _snapshot(values):
    return [(a.dtype, a.shape, a.tobytes()) if isinstance(a, np.ndarray) and a.dtype != object
            else repr(a) for a in values]


@settings(max_examples=500, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(call=calls())
def test_hostile_calls_match_the_reference_or_raise_a_named_error(call):
    y_true, y_pred, options = call
    before = _snapshot([y_true, y_pred, *options.values()])
    with np.errstate(all="ignore"):
        reference = _outcome(y_true, y_pred, options, "numpy")
        compiled = _outcome(y_true, y_pred, options, "cython")
    assert _snapshot([y_true, y_pred, *options.values()]) == before, "an input was modified"
    assert compiled[0] == reference[0], (reference, compiled)
    if reference[0] == "value":
        np.testing.assert_allclose(compiled[1], reference[1], rtol=2e-6, atol=1e-30, equal_nan=True)
    else:
        assert compiled[1] == reference[1]
        assert any(name in reference[1] for name in ARGUMENT_NAMES), reference[1]


@pytest.mark.parametrize("value", [[0.0, 1.0], (0.2, 0.7), [[0.1, 0.9]], 0.5])
def test_array_likes_are_accepted_like_numpy_and_scalars_rejected(value):
    """Lists and tuples are converted like np.asarray; 0-d input is rejected (a loss needs samples)."""
    if np.ndim(value) == 0:
        with pytest.raises(ValueError, match="y_pred must be 1-D"):
            fastbce.bce(value, value)
    else:
        labels = (np.asarray(value) > 0.5).astype(float)
        assert fastbce.bce(labels.tolist(), value) == fastbce.bce(labels, np.asarray(value, float))
