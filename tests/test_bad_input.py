"""Bad input raises ValueError/TypeError naming the argument; inputs are never modified.

Errors about shapes, dtypes and options must be raised before any kernel runs (checked by swapping
the kernel for one that fails the test); errors about values (labels or probabilities out of range,
NaN under nan_policy="raise", bad weights, group ids) are found by the kernel in its one pass.
"""

import numpy as np
import pytest

import fastbce
from fastbce import _engine
from helpers import assert_unchanged, snapshot

R, C = 10, 3


def _base():
    rng = np.random.default_rng(5)
    return (rng.random((R, C)) < 0.5).astype(np.float64), rng.uniform(0.1, 0.9, (R, C))


def _nonnative(a):
    return a.astype(a.dtype.newbyteorder())


# (id, function(y, p) -> (y_true, y_pred, kwargs), exception, message pattern)
CHECKED_BEFORE_KERNEL = [
    ("shape-mismatch", lambda y, p: (y, p[:, :2], {}), ValueError, r"y_true and y_pred must have the same shape"),
    ("shape-transposed", lambda y, p: (y.T, p, {}), ValueError, r"same shape, got \(3, 10\) and \(10, 3\)"),
    ("shape-1d-vs-2d", lambda y, p: (y[:, 0], p, {}), ValueError, r"same shape"),
    ("3d", lambda y, p: (y[None], p[None], {}), ValueError, r"y_pred must be 1-D .* or 2-D"),
    ("0d", lambda y, p: (1.0, 0.5, {}), ValueError, r"y_pred must be 1-D"),
    ("empty-1d", lambda y, p: (y[:0, 0], p[:0, 0], {}), ValueError, r"y_pred is empty"),
    ("empty-rows", lambda y, p: (y[:0], p[:0], {}), ValueError, r"y_pred is empty"),
    ("empty-cols", lambda y, p: (y[:, :0], p[:, :0], {}), ValueError, r"y_pred is empty"),
    ("pred-int", lambda y, p: (y, (p * 10).astype(np.int64), {}), TypeError, r"y_pred must be float16, float32 or float64"),
    ("pred-bool", lambda y, p: (y, p > 0.5, {}), TypeError, r"y_pred must be float"),
    ("pred-complex", lambda y, p: (y, p.astype(np.complex128), {}), TypeError, r"y_pred"),
    ("pred-str", lambda y, p: (y, p.astype(str), {}), TypeError, r"y_pred"),
    ("pred-object", lambda y, p: (y, p.astype(object), {}), TypeError, r"y_pred"),
    ("pred-longdouble", lambda y, p: (y, p.astype(np.longdouble), {}), TypeError, r"y_pred must be float16, float32 or float64"),
    ("pred-nonnative", lambda y, p: (y, _nonnative(p), {}), TypeError, r"y_pred has non-native byte order"),
    ("true-str", lambda y, p: (y.astype(str), p, {}), TypeError, r"y_true"),
    ("true-complex", lambda y, p: (y.astype(np.complex64), p, {}), TypeError, r"y_true"),
    ("true-datetime", lambda y, p: (y.astype("datetime64[s]"), p, {}), TypeError, r"y_true"),
    ("true-longdouble", lambda y, p: (y.astype(np.longdouble), p, {}), TypeError, r"y_true"),
    ("true-nonnative", lambda y, p: (_nonnative(y), p, {}), TypeError, r"y_true has non-native byte order"),
    ("eps-zero", lambda y, p: (y, p, {"eps": 0.0}), ValueError, r"eps must be a number in \(0, 0.5\)"),
    ("eps-half", lambda y, p: (y, p, {"eps": 0.5}), ValueError, r"eps"),
    # 1 - eps rounds to 1: the backends disagreed (inf, a finite mean, and a SystemError from
    # a division by zero in the Numba general kernel)
    ("eps-below-2**-54", lambda y, p: (y, p, {"eps": 1e-17}), ValueError, r"eps .* rounds to 1"),
    # the bounds are rounded to y_pred's dtype: 1 - 1e-8 is 1 in float32 (float16: the float32 bounds)
    ("eps-1e-8-float32", lambda y, p: (y, p.astype(np.float32), {"eps": 1e-8}), ValueError,
     r"eps=1e-08 does not fit y_pred's dtype float32: .* rounded to float32, which gives \[9.99999993922529e-09, 1.0\]"),
    ("eps-1e-8-float16", lambda y, p: (y, p.astype(np.float16), {"eps": 1e-8}), ValueError,
     r"eps=1e-08 does not fit y_pred's dtype float16: .* rounded to float32"),
    ("eps-negative", lambda y, p: (y, p, {"eps": -1e-7}), ValueError, r"eps"),
    ("eps-nan", lambda y, p: (y, p, {"eps": float("nan")}), ValueError, r"eps"),
    ("eps-str", lambda y, p: (y, p, {"eps": "1e-7"}), (ValueError, TypeError), r"eps"),
    ("eps-none", lambda y, p: (y, p, {"eps": None}), (ValueError, TypeError), r"eps"),
    ("smoothing-negative", lambda y, p: (y, p, {"label_smoothing": -0.1}), ValueError, r"label_smoothing"),
    ("smoothing-big", lambda y, p: (y, p, {"label_smoothing": 1.5}), ValueError, r"label_smoothing"),
    ("smoothing-nan", lambda y, p: (y, p, {"label_smoothing": float("nan")}), ValueError, r"label_smoothing"),
    ("reduction", lambda y, p: (y, p, {"reduction": "avg"}), ValueError, r"reduction must be one of .*'avg'"),
    ("reduction-none-object", lambda y, p: (y, p, {"reduction": None}), ValueError, r"reduction"),
    ("nan-policy", lambda y, p: (y, p, {"nan_policy": "ignore"}), ValueError, r"nan_policy must be one of"),
    ("backend", lambda y, p: (y, p, {"backend": "gpu"}), ValueError, r"backend must be one of .*'gpu'"),
    ("axis-2", lambda y, p: (y, p, {"axis": 2}), ValueError, r"axis 2 is out of range for 2-D"),
    ("axis--3", lambda y, p: (y, p, {"axis": -3}), ValueError, r"axis -3 is out of range"),
    ("axis-1-on-1d", lambda y, p: (y[:, 0], p[:, 0], {"axis": 1}), ValueError, r"axis 1 is out of range for 1-D"),
    ("axis-float", lambda y, p: (y, p, {"axis": 1.0}), TypeError, r"axis must be None or an integer"),
    ("axis-tuple", lambda y, p: (y, p, {"axis": (0, 1)}), TypeError, r"axis"),
    ("axis-with-none", lambda y, p: (y, p, {"axis": 0, "reduction": "none"}), ValueError, r"axis .*'none'"),
    ("from-logits-str", lambda y, p: (y, p, {"from_logits": "yes"}), TypeError, r"from_logits"),
    ("weight-shape", lambda y, p: (y, p, {"sample_weight": np.ones(R)}), ValueError,
     r"sample_weight with shape \(10,\) does not broadcast .*sample_weight\[:, None\]"),
    ("weight-too-big", lambda y, p: (y, p, {"sample_weight": np.ones((R, C, 2))}), ValueError, r"sample_weight"),
    ("weight-str", lambda y, p: (y, p, {"sample_weight": np.array(["a"] * C)}), TypeError, r"sample_weight"),
    ("weight-complex", lambda y, p: (y, p, {"sample_weight": np.ones(C, np.complex128)}), TypeError, r"sample_weight"),
    ("pos-weight-shape", lambda y, p: (y, p, {"pos_weight": np.ones(C + 1)}), ValueError, r"pos_weight .*does not broadcast"),
    ("mask-int", lambda y, p: (y, p, {"mask": np.ones((R, C), np.int64)}), TypeError, r"mask"),
    ("mask-float", lambda y, p: (y, p, {"mask": np.ones(C)}), TypeError, r"mask"),
    ("mask-shape", lambda y, p: (y, p, {"mask": np.ones(C + 1, bool)}), ValueError, r"mask .*does not broadcast"),
    ("groups-float", lambda y, p: (y, p, {"groups": np.zeros(R)}), TypeError, r"groups must be an integer array"),
    ("groups-shape", lambda y, p: (y, p, {"groups": np.zeros(R + 1, int)}), ValueError, r"groups must have shape \(n_samples,\)"),
    ("groups-2d", lambda y, p: (y, p, {"groups": np.zeros((R, C), int)}), ValueError, r"groups must have shape"),
    ("groups-with-axis", lambda y, p: (y, p, {"groups": np.zeros(R, int), "axis": 0}), ValueError, r"groups and axis"),
    ("groups-with-none", lambda y, p: (y, p, {"groups": np.zeros(R, int), "reduction": "none"}), ValueError, r"groups .*'none'"),
    ("groups-bool", lambda y, p: (y, p, {"groups": np.zeros(R, bool)}), TypeError, r"groups"),
    ("n-groups-without-groups", lambda y, p: (y, p, {"n_groups": 3}), ValueError, r"n_groups was given without groups"),
    ("n-groups-zero", lambda y, p: (y, p, {"groups": np.zeros(R, int), "n_groups": 0}), ValueError, r"n_groups must be a positive integer"),
    ("n-groups-float", lambda y, p: (y, p, {"groups": np.zeros(R, int), "n_groups": 2.0}), (ValueError, TypeError), r"n_groups"),
    ("n-groups-bool", lambda y, p: (y, p, {"groups": np.zeros(R, int), "n_groups": True}), (ValueError, TypeError), r"n_groups"),
    ("n-threads-zero", lambda y, p: (y, p, {"n_threads": 0}), ValueError, r"n_threads must be a positive integer"),
    ("n-threads-float", lambda y, p: (y, p, {"n_threads": 1.5}), TypeError, r"n_threads"),
    ("n-threads-bool", lambda y, p: (y, p, {"n_threads": True}), TypeError, r"n_threads"),
]

FOUND_BY_KERNEL = [
    ("label-2", lambda y, p: (y + 1.0, p, {}), r"y_true has values outside \[0, 1\]"),
    ("label-negative", lambda y, p: (y - 0.5, p, {}), r"y_true has values outside \[0, 1\]"),
    ("label-inf", lambda y, p: (np.where(y > 0, np.inf, 0.0), p, {}), r"y_true has values outside"),
    ("label-int-2", lambda y, p: (y.astype(np.int64) * 2, p.astype(np.float32), {}), r"y_true .*integer labels must be 0 or 1"),
    ("label-int8-negative", lambda y, p: (-y.astype(np.int8), p.astype(np.float32), {}), r"y_true has values outside"),
    ("label-uint8-255", lambda y, p: (y.astype(np.uint8) * 255, p.astype(np.float32), {}), r"y_true has values outside"),
    ("label-float16", lambda y, p: ((y * 1.5).astype(np.float16), p.astype(np.float32), {}), r"y_true has values outside"),
    ("prob-above-1", lambda y, p: (y, p + 0.5, {}), r"y_pred has probabilities outside \[0, 1\] .*from_logits"),
    ("prob-negative", lambda y, p: (y, p - 0.5, {}), r"y_pred has probabilities outside"),
    ("prob-inf", lambda y, p: (y, np.where(y > 0, np.inf, p), {}), r"y_pred has probabilities outside"),
    ("prob-minus-inf", lambda y, p: (y, np.where(y > 0, -np.inf, p), {}), r"y_pred has probabilities outside"),
    ("prob-float32", lambda y, p: (y.astype(np.float32), (p * 3).astype(np.float32), {}), r"y_pred has probabilities outside"),
    ("nan-raise-label", lambda y, p: (np.where(p > 0.8, np.nan, y), p, {"nan_policy": "raise"}), r"NaN and nan_policy='raise'"),
    ("nan-raise-pred", lambda y, p: (y, np.where(p > 0.8, np.nan, p), {"nan_policy": "raise"}), r"y_true or y_pred contains NaN"),
    ("weight-negative", lambda y, p: (y, p, {"sample_weight": np.array([1.0, -1.0, 1.0])}), r"sample_weight has negative"),
    ("weight-nan", lambda y, p: (y, p, {"sample_weight": np.array([1.0, np.nan, 1.0])}), r"sample_weight has negative, NaN"),
    ("weight-inf", lambda y, p: (y, p, {"sample_weight": np.full((R, 1), np.inf)}), r"sample_weight .*infinite"),
    ("weight-negative-int", lambda y, p: (y, p, {"sample_weight": -np.ones((R, C), np.int64)}), r"sample_weight has negative"),
    ("weight-float32-nan", lambda y, p: (y.astype(np.uint8), p.astype(np.float32), {"sample_weight": np.where(p > 0.8, np.nan, 1).astype(np.float32)}), r"sample_weight"),
    ("pos-weight-negative", lambda y, p: (y, p, {"pos_weight": -2.0}), r"pos_weight has negative"),
    ("pos-weight-nan", lambda y, p: (y, p, {"pos_weight": np.array([np.nan, 1.0, 1.0])}), r"pos_weight"),
    ("pos-weight-inf-logits", lambda y, p: (y, p, {"pos_weight": np.inf, "from_logits": True}), r"pos_weight"),
    ("groups-too-big", lambda y, p: (y, p, {"groups": np.arange(R), "n_groups": 5}), r"groups has ids outside \[0, n_groups\)"),
    ("groups-uint64-huge", lambda y, p: (y, p, {"groups": np.arange(R, dtype=np.uint64) + np.uint64(2**63),
                                                "n_groups": 5}), r"groups has ids outside"),
    ("groups-negative-n", lambda y, p: (y, p, {"groups": np.arange(R) - 1, "n_groups": 20}), r"groups has ids outside"),
]


def _call(function, y, p, kwargs, backend):
    kwargs = dict(kwargs)
    backend = kwargs.pop("backend", backend)
    return function(y, p, backend=backend, **kwargs)


FUNCTIONS = [fastbce.bce, fastbce.bce_grad, fastbce.bce_value_and_grad]


def _with_functions(cases):
    """Each case with each public function (the gradients take no groups)."""
    return [pytest.param(function, *case, id=f"{case[0]}-{function.__name__}")
            for case in cases for function in FUNCTIONS
            if function is fastbce.bce or "groups" not in case[0]]


@pytest.mark.parametrize("function, case, make, error, message", _with_functions(CHECKED_BEFORE_KERNEL))
def test_rejected_before_the_kernel(monkeypatch, backend, function, case, make, error, message):
    y, p, kwargs = make(*_base())

    class NoKernel:
        @staticmethod
        def bce_pass(*args):
            raise AssertionError("a kernel ran although the arguments are invalid")

    monkeypatch.setattr(_engine, "load_backend", lambda name: NoKernel)
    snap = snapshot(y, p, *kwargs.values())
    with pytest.raises(error, match=message):
        _call(function, y, p, kwargs, backend)
    assert_unchanged(snap)


@pytest.mark.parametrize("function, case, make, message", _with_functions(FOUND_BY_KERNEL))
def test_bad_values(monkeypatch, backend, function, case, make, message):
    y, p, kwargs = make(*_base())
    snap = snapshot(y, p, *kwargs.values())
    calls = []
    real = _engine.load_backend

    class Counting:  # the error must come from the kernel's one pass, not from a check before it
        def __init__(self, module):
            self.module = module

        def bce_pass(self, *args):
            calls.append(1)
            return self.module.bce_pass(*args)

    monkeypatch.setattr(_engine, "load_backend", lambda name: Counting(real(name)))
    with pytest.raises(ValueError, match=message):
        _call(function, y, p, kwargs, backend)
    assert len(calls) == 1
    assert_unchanged(snap)


def test_bad_values_in_every_mode(backend):
    """Values are checked whatever the reduction and axis (each a different slot layout)."""
    y, p = _base()
    for reduction, axis in (("mean", None), ("sum", 0), ("mean", 1), ("none", None)):
        with pytest.raises(ValueError, match="y_true has values outside"):
            fastbce.bce(y * 2, p, reduction=reduction, axis=axis, backend=backend)
        with pytest.raises(ValueError, match="y_pred has probabilities outside"):
            fastbce.bce_grad(y, p * 2, reduction=reduction, axis=axis, backend=backend)
    with pytest.raises(ValueError, match="y_true has values outside"):
        fastbce.bce(y * 2, p, groups=np.zeros(R, int), backend=backend)


def test_bad_values_far_into_a_large_input(backend):
    """One bad value in the last chunk of a large input is found (every chunk's flag counts)."""
    n = 5 * 32768 + 17
    y = np.zeros(n, np.uint8)
    p = np.full(n, 0.5, np.float32)
    y[-1] = 2
    with pytest.raises(ValueError, match="y_true"):
        fastbce.bce(y, p, backend=backend)
    y[-1] = 1
    p[-3] = 1.0001
    with pytest.raises(ValueError, match="y_pred"):
        fastbce.bce(y, p, backend=backend)


def test_several_problems_are_all_reported(backend):
    y, p = _base()
    with pytest.raises(ValueError, match="y_true.*; y_pred.*; sample_weight"):
        fastbce.bce(y * 2, p * 2, sample_weight=-np.ones(C), backend=backend)


def test_masked_values_are_not_validated(backend):
    """Masked elements are not used: a bad label, probability or NaN there raises nothing."""
    y, p = _base()
    y[0, 0] = 7.0
    p[1, 1] = -3.0
    y[2, 2] = np.nan
    mask = np.ones((R, C), bool)
    mask[0, 0] = mask[1, 1] = mask[2, 2] = False
    value = fastbce.bce(y, p, mask=mask, nan_policy="raise", backend=backend)
    clean_y, clean_p = _base()
    assert value == fastbce.bce(clean_y, clean_p, mask=mask, backend=backend)
    assert np.isfinite(fastbce.bce_grad(y, p, mask=mask, backend=backend)).all()


def test_inputs_never_modified(backend):
    """Every option at once, on every entry point: inputs keep their bytes (also read-only ones)."""
    rng = np.random.default_rng(9)
    y = (rng.random((200, 5)) < 0.5).astype(np.uint8)
    p = rng.uniform(0, 1, (200, 5)).astype(np.float32)
    p[0, 0] = np.nan
    w, pw, mask = rng.random((200, 1)), rng.random(5) + 0.5, rng.random((200, 5)) < 0.9
    groups = rng.integers(0, 4, 200)
    snap = snapshot(y, p, w, pw, mask, groups)
    for policy in ("propagate", "omit"):
        options = dict(sample_weight=w, pos_weight=pw, mask=mask, nan_policy=policy,
                       label_smoothing=0.1, backend=backend)
        fastbce.bce(y, p, groups=groups, **options)
        for reduction, axis in (("mean", None), ("none", None), ("mean", 0), ("sum", 1)):
            fastbce.bce(y, p, reduction=reduction, axis=axis, **options)
            fastbce.bce_value_and_grad(y, p, reduction=reduction, axis=axis, **options)
            fastbce.bce_grad(y, p, reduction=reduction, axis=axis, **options)
    assert_unchanged(snap)


@pytest.mark.parametrize("nan_policy", ["propagate", "omit"])
def test_gradient_of_a_mean_over_a_subnormal_total_weight_raises(backend, nan_policy):
    """w/Σw with Σw subnormal: 1/Σw overflows, so the gradient would be inf or NaN; it raises
    instead (the mean itself is still computed). With nan_policy="omit" the total is known only
    after the pass (here the NaN takes the normal weight out of the second row)."""
    y = np.array([[1.0, 0.0], [1.0, 0.0]])
    p = np.array([[0.3, 0.6], [np.nan, 0.6]])
    w = np.array([[1.0, 1.0], [1.0, 5e-324]])
    if nan_policy == "propagate":
        p[1, 0], w[1, 0] = 0.3, 0.0
    for function in (fastbce.bce_grad, fastbce.bce_value_and_grad):
        with pytest.raises(ValueError, match="sample_weight: a reduced slice has a total weight below"):
            function(y, p, sample_weight=w, axis=1, nan_policy=nan_policy, backend=backend)
    value = fastbce.bce(y, p, sample_weight=w, axis=1, nan_policy=nan_policy, backend=backend)
    assert np.isfinite(value).all()
    gradient = fastbce.bce_grad(y, p, sample_weight=w * 2.0**1000, axis=1, nan_policy=nan_policy,
                                backend=backend)  # scaled up: fine
    # row 0: (p - y)/(p(1-p)) / 2; row 1: only p = 0.6 (y = 0) counts, 1/(1-p), alone in its mean
    np.testing.assert_allclose(gradient, [[-1 / 0.6, 1.25], [0.0, 2.5]], rtol=1e-14)
