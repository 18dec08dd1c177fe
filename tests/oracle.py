"""An independent float64 oracle for the tests, in a few lines of plain NumPy per formula.

It deliberately does not import ``kernels/reference.py`` (that module is a backend under test)
and writes the formulas differently where that is as accurate: softplus as ``logaddexp(0, t)``, the
sigmoid as ``exp(-softplus(-x))``, reductions with NumPy's sums and ``np.add.at``.

``oracle(...)`` takes the arguments of ``fastbce.bce`` and returns ``(value, grad, grad_mag)``:
the value ``bce`` must return, the gradient ``bce_grad`` must return (None with groups) and the
size of the terms the gradient is a difference of (for tolerances where those terms cancel).
"""

import numpy as np

# Relative tolerances, keyed by y_pred's dtype. Reductions accumulate in float64 whatever the input;
# float32/float16 inputs leave room for a kernel that evaluates the element formula in float32.
REDUCTION_RTOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-6, np.dtype(np.float16): 1e-6}
# Element outputs (losses with reduction="none", gradients): (rtol, atol) by the output dtype.
ELEMENT_TOL = {np.dtype(np.float64): (1e-12, 1e-300), np.dtype(np.float32): (1e-6, 1e-12)}


def out_dtype(y_pred):
    return np.dtype(np.float64) if np.asarray(y_pred).dtype == np.float64 else np.dtype(np.float32)


def clip_bounds(eps, dtype):
    """The clip bounds of probabilities of ``dtype``: eps and 1 - eps (formed in float64) rounded
    to the prediction's dtype, as Keras and scikit-learn clip in it; float16 predictions take the
    float32 bounds. Returned as float64 values."""
    wide = np.float64 if np.dtype(dtype) == np.float64 else np.float32
    return float(wide(float(eps))), float(wide(1.0 - float(eps)))


def _f64(a):
    return np.asarray(a).astype(np.float64)  # exact for float16/32, bool and 0/1 integers


def _softplus(t):
    return np.logaddexp(0.0, t)


def elements(y_true, y_pred, *, from_logits=False, eps=1e-7, sample_weight=None, pos_weight=None,
             label_smoothing=0.0, mask=None, nan_policy="propagate"):
    """Per element, in float64: (counted weight w, w·loss, w·dloss/dy_pred, w·|size of grad terms|)."""
    lo, hi = clip_bounds(eps, np.asarray(y_pred).dtype)
    x = _f64(y_pred)
    shape = x.shape
    y = _f64(y_true)
    w = np.broadcast_to(_f64(1.0 if sample_weight is None else sample_weight), shape)
    pw = np.broadcast_to(_f64(1.0 if pos_weight is None else pos_weight), shape)
    counted = np.ones(shape, bool) if mask is None else np.broadcast_to(np.asarray(mask), shape).copy()
    nan = np.isnan(y) | np.isnan(x)
    if nan_policy == "omit":
        counted &= ~nan
    s = label_smoothing
    y = y * (1.0 - s) + 0.5 * s
    with np.errstate(all="ignore"):
        pos = pw * y  # coefficient of -log p (of softplus(-x))
        neg = 1.0 - y  # coefficient of -log(1-p) (of softplus(x))
        if from_logits:
            # Terms with a zero coefficient are exactly 0 (x = ±inf gives the limit, not 0·inf).
            loss = (np.where(pos == 0, 0.0, pos * _softplus(-x))
                    + np.where(neg == 0, 0.0, neg * _softplus(x)))
            neg_term = neg * np.exp(-_softplus(-x))  # (1-y)·σ(x)
            pos_term = pos * np.exp(-_softplus(x))  # pw·y·σ(-x)
            grad = neg_term - pos_term
        else:
            q = np.clip(x, lo, hi)
            loss = -(pos * np.log(q) + neg * np.log1p(-q))
            inside = (x >= lo) & (x <= hi)  # inclusive, like torch.clamp's gradient
            neg_term = np.where(inside, neg / (1.0 - q), 0.0)
            pos_term = np.where(inside, pos / q, 0.0)
            grad = neg_term - pos_term
        loss = np.where(nan, np.nan, loss)
        grad = np.where(nan, np.nan, grad)
        weight = np.where(counted, w, 0.0)
        # A weight of 0 does not hide a NaN (0·NaN = NaN); masked elements are not used at all.
        wloss = np.where(counted, w * loss, 0.0)
        wgrad = np.where(counted, w * grad, 0.0)
        wmag = np.where(counted, w * (neg_term + pos_term), 0.0)
    return weight, wloss, wgrad, wmag


def oracle(y_true, y_pred, *, reduction="mean", axis=None, groups=None, n_groups=None, **options):
    weight, loss, grad, mag = elements(y_true, y_pred, **options)
    if reduction == "none":
        return loss, grad, mag
    ndim = loss.ndim
    if axis is not None:
        axis = axis % ndim
        if ndim == 1:
            axis = None
    if groups is not None:
        row_loss = loss.sum(axis=1) if ndim == 2 else loss
        row_weight = weight.sum(axis=1) if ndim == 2 else weight
        size = int(np.max(groups)) + 1 if n_groups is None else n_groups
        total_loss, total_weight = np.zeros(size), np.zeros(size)
        np.add.at(total_loss, np.asarray(groups), row_loss)
        np.add.at(total_weight, np.asarray(groups), row_weight)
        if reduction == "sum":
            return total_loss, None, None
        with np.errstate(all="ignore"):
            return total_loss / total_weight, None, None
    total_loss = loss.sum(axis=axis)
    if reduction == "sum":
        value = float(total_loss) if axis is None else total_loss
        return value, grad, mag
    total_weight = weight.sum(axis=axis)
    with np.errstate(all="ignore"):
        value = total_loss / total_weight
        scale = np.where(total_weight > 0, 1.0 / total_weight, 0.0)  # the gradient of a NaN mean is 0
    if axis is not None:
        scale = np.expand_dims(scale, axis)
    return (float(value) if axis is None else value), grad * scale, mag * scale


def assert_close(actual, expected, rtol, atol=0.0, mag=None, what=""):
    """|actual - expected| <= rtol·(|expected| + mag) + atol elementwise; NaN and ±inf must match."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    nan = np.isnan(expected)
    assert np.array_equal(np.isnan(actual), nan), (
        f"{what}: NaN at {np.flatnonzero(np.isnan(actual) != nan)[:10]} differs")
    inf = np.isinf(expected)
    assert np.array_equal(actual[inf], expected[inf]), f"{what}: infinities differ"
    finite = ~nan & ~inf
    scale = np.abs(expected) if mag is None else np.abs(expected) + np.broadcast_to(mag, expected.shape)
    with np.errstate(invalid="ignore"):
        error = np.abs(actual - expected)
    bad = finite & ~(error <= rtol * scale + atol)
    if bad.any():
        index = np.flatnonzero(bad.ravel())[:5]
        raise AssertionError(
            f"{what}: {bad.sum()} of {bad.size} differ beyond rtol={rtol} atol={atol}; first at flat "
            f"index {index}: actual {actual.ravel()[index]}, expected {expected.ravel()[index]}")
