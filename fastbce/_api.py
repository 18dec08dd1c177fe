"""The public functions: check arguments, run one kernel pass, finish the results."""

import numpy as np

from ._elements import check_out
from ._engine import run_elements, run_pass, value_of
from ._kernels import ELEMENT_GRAD_HESS
from ._plan import make_plan
from ._quick import quick_pass


def _run(plan, backend, n_threads, *, want_grad, out=None, want_value=True):
    """(value, gradient or None) of one pass (value None when not wanted)."""
    totals, loss_out, grad = run_pass(plan, backend, n_threads, want_grad=want_grad, out=out,
                                      want_value=want_value)
    value = value_of(plan, totals, loss_out) if want_value else None
    if value is not None and plan.group_labels is not None:  # labelled groups: a Series by label
        import pandas as pd

        value = pd.Series(value, index=pd.Index(plan.group_labels, name="group"))
    return value, grad


_COMMON_DOC = """
    y_true : array (n_samples,) or (n_samples, n_labels)
        Labels in [0, 1]: float16/32/64 (soft labels allowed), bool, or integers that are 0 or 1.
    y_pred : array of the same shape, float16/32/64
        Probabilities (clipped to [eps, 1-eps] rounded to y_pred's dtype) or, with
        ``from_logits=True``, logits (any value, ±inf included).
    from_logits : bool
        Treat ``y_pred`` as logits: loss = pw·y·softplus(-x) + (1-y)·softplus(x), computed stably.
    eps : float in (0, 0.5)
        Clipping of probabilities to [eps, 1 - eps], both bounds rounded to y_pred's dtype as Keras
        and scikit-learn clip (float16 predictions: the float32 bounds); the rounded bounds must
        satisfy 0 < lo < hi < 1. Keras uses 1e-7; scikit-learn the dtype's machine epsilon.
    sample_weight : array broadcastable to y_pred, optional
        Non-negative finite weights w; loss element = w·l.
    pos_weight : array broadcastable to y_pred, optional
        Non-negative finite factor on the positive term (PyTorch), usually shape (n_labels,).
    label_smoothing : float in [0, 1]
        Labels become y·(1-s) + s/2 (Keras).
    mask : bool array broadcastable to y_pred, optional
        True = counted. Masked elements add nothing to loss, weight or gradient and are not checked.
    nan_policy : "propagate", "raise" or "omit"
        NaN in y_true or y_pred gives NaN, raises ValueError, or masks the element.
    reduction : "mean", "sum" or "none"
        "mean" is Σ w·l / Σ w (the plain mean without weights or mask); NaN where Σ w = 0.
    axis : None, 0 or 1
        None reduces everything; for 2-D input 0 gives one value per label, 1 one per sample.
    n_threads : int, optional
        Threads for this call (default: see ``fastbce.get_num_threads``). Results do not depend on it.
    backend : "auto", "cython", "numba" or "numpy"
        "auto" takes the fastest available compiled backend; "numpy" is the float64 reference.
"""


def _plain(sample_weight, pos_weight, label_smoothing, mask, axis):
    """Whether a call has none of the options the common-case path leaves to the full path."""
    return (sample_weight is None and pos_weight is None and mask is None and axis is None
            and type(label_smoothing) is float and label_smoothing == 0.0)


def _plan(arguments):
    """The Plan of a public function's arguments (its ``locals()``)."""
    return make_plan(**{name: value for name, value in arguments.items()
                        if name not in ("n_threads", "backend", "out", "done")})


_RETURNS_VALUE = """
    Returns
    -------
    float for a full reduction; float64 array per label, sample or group; for ``reduction="none"``
    the weighted element losses as an array of y_pred's dtype (float32 for float16 input).
"""
_GROUPS_DOC = """    groups : array (n_samples,), optional
        Reduce per group: one value per group id in [0, n_groups) for small non-negative integer
        ids (int32 and int64 read in place); for strings, categoricals (pandas, Arrow, polars)
        and integer ids of any other range a pandas Series indexed by the labels (sorted;
        a Categorical's categories in their order). See fastbce/_groups.py.
    n_groups : int, optional
        Number of groups (default: ``groups.max() + 1``, which costs a pass over ``groups``).
"""
_OUT_DOC = """    out : array of y_pred's shape and output dtype, optional
        Where to write the gradient.
"""
_FOCAL_DOC = """    gamma : float >= 0
        Focusing exponent γ (0 gives the plain BCE).
    alpha : float in [0, 1] or None
        Class balance: α_t = α·y + (1-α)·(1-y); None means no α factor.
"""


def _doc(*parts):
    def decorate(function):
        function.__doc__ = function.__doc__.replace("{parameters}", _COMMON_DOC + "".join(parts))
        return function
    return decorate


@_doc(_GROUPS_DOC, _RETURNS_VALUE)
def bce(y_true, y_pred, *, from_logits=False, eps=1e-7, sample_weight=None, pos_weight=None,
        label_smoothing=0.0, mask=None, nan_policy="propagate", reduction="mean", axis=None,
        groups=None, n_groups=None, n_threads=None, backend=None):
    """Binary cross entropy ``l = -[pw·y·log(p) + (1-y)·log(1-p)]``, reduced in one pass.

    Parameters
    ----------{parameters}"""
    if groups is None and n_groups is None and _plain(sample_weight, pos_weight, label_smoothing,
                                                      mask, axis):
        done = quick_pass(y_true, y_pred, from_logits, eps, nan_policy, reduction, n_threads,
                          backend, True, False, None)
        if done is not None:
            return done[0]
    return _run(_plan(locals()), backend, n_threads, want_grad=False)[0]


@_doc(_OUT_DOC)
def bce_grad(y_true, y_pred, *, from_logits=False, eps=1e-7, sample_weight=None, pos_weight=None,
             label_smoothing=0.0, mask=None, nan_policy="propagate", reduction="mean", axis=None,
             n_threads=None, backend=None, out=None):
    """Gradient of :func:`bce` with respect to ``y_pred`` (same arguments, no groups).

    It is the exact derivative of the value ``bce`` returns: ``w·dl/dp`` scaled by ``1/Σw`` of the
    reduced axis for ``reduction="mean"``; with probabilities, the derivative of the clipped loss
    (0 where p is outside the rounded bounds [eps, 1-eps]). Returns an array of y_pred's shape and output dtype.

    Parameters
    ----------{parameters}"""
    if _plain(sample_weight, pos_weight, label_smoothing, mask, axis):
        done = quick_pass(y_true, y_pred, from_logits, eps, nan_policy, reduction, n_threads,
                          backend, False, True, out)
        if done is not None:
            return done[1]
    return _run(_plan(locals()), backend, n_threads, want_grad=True, out=out, want_value=False)[1]


@_doc(_OUT_DOC)
def bce_value_and_grad(y_true, y_pred, *, from_logits=False, eps=1e-7, sample_weight=None,
                       pos_weight=None, label_smoothing=0.0, mask=None, nan_policy="propagate",
                       reduction="mean", axis=None, n_threads=None, backend=None, out=None):
    """``(bce(...), bce_grad(...))`` computed in one fused pass over the data.

    Parameters
    ----------{parameters}"""
    if _plain(sample_weight, pos_weight, label_smoothing, mask, axis):
        done = quick_pass(y_true, y_pred, from_logits, eps, nan_policy, reduction, n_threads,
                          backend, True, True, out)
        if done is not None:
            return done
    return _run(_plan(locals()), backend, n_threads, want_grad=True, out=out)


@_doc(_FOCAL_DOC, _GROUPS_DOC, _RETURNS_VALUE)
def focal_bce(y_true, y_pred, *, gamma=2.0, alpha=None, from_logits=False, eps=1e-7,
              sample_weight=None, pos_weight=None, label_smoothing=0.0, mask=None,
              nan_policy="propagate", reduction="mean", axis=None, groups=None, n_groups=None,
              n_threads=None, backend=None):
    """Focal loss ``FL = α_t·(1-p_t)^γ·CE`` with ``p_t = p·y + (1-p)·(1-y)``, reduced in one pass.

    CE is the element loss of :func:`bce` (with pos_weight and label smoothing); p is the clipped
    probability, or σ(x) from logits (computed stably). γ=0, α=None gives :func:`bce`.

    Parameters
    ----------{parameters}"""
    return _run(_plan(locals()), backend, n_threads, want_grad=False)[0]


@_doc(_FOCAL_DOC, _OUT_DOC)
def focal_bce_grad(y_true, y_pred, *, gamma=2.0, alpha=None, from_logits=False, eps=1e-7,
                   sample_weight=None, pos_weight=None, label_smoothing=0.0, mask=None,
                   nan_policy="propagate", reduction="mean", axis=None, n_threads=None,
                   backend=None, out=None):
    """Gradient of :func:`focal_bce` with respect to ``y_pred`` (exact, as for :func:`bce_grad`).

    Parameters
    ----------{parameters}"""
    return _run(_plan(locals()), backend, n_threads, want_grad=True, out=out)[1]


@_doc(_FOCAL_DOC, _OUT_DOC)
def focal_bce_value_and_grad(y_true, y_pred, *, gamma=2.0, alpha=None, from_logits=False,
                             eps=1e-7, sample_weight=None, pos_weight=None, label_smoothing=0.0,
                             mask=None, nan_policy="propagate", reduction="mean", axis=None,
                             n_threads=None, backend=None, out=None):
    """``(focal_bce(...), focal_bce_grad(...))`` computed in one fused pass over the data.

    Parameters
    ----------{parameters}"""
    return _run(_plan(locals()), backend, n_threads, want_grad=True, out=out)


_GRAD_HESS_DOC = """
    y_true : array (n_samples,) or (n_samples, n_labels)
        Labels in [0, 1]: float16/32/64 (soft labels allowed), bool, or integers that are 0 or 1.
    raw_score : array of the same shape, float16/32/64
        Logits x (the boosting libraries' raw scores); any value, ±inf included.
    sample_weight, pos_weight, label_smoothing, mask, nan_policy, n_threads, backend
        As for :func:`bce` (masked and omitted elements get 0 in both outputs).
    out : pair of arrays (grad, hess) of raw_score's shape and output dtype, optional
        Where to write the two outputs.

    Returns
    -------
    (grad, hess): arrays of raw_score's shape in its dtype (float32 for float16).
"""


def _grad_hess(arguments, gamma, alpha):
    """(grad, hess) of grad_hess's arguments (its ``locals()``)."""
    try:
        plan = make_plan(arguments["y_true"], arguments["raw_score"], from_logits=True, eps=1e-7,
                         sample_weight=arguments["sample_weight"], pos_weight=arguments["pos_weight"],
                         label_smoothing=arguments["label_smoothing"], mask=arguments["mask"],
                         nan_policy=arguments["nan_policy"], reduction="none", axis=None,
                         gamma=gamma, alpha=alpha)
    except (TypeError, ValueError) as error:  # the argument is named raw_score here
        raise type(error)(str(error).replace("y_pred", "raw_score")) from None
    out = arguments["out"]
    if out is None:
        out = (None, None)
    elif not isinstance(out, (tuple, list)) or len(out) != 2:
        raise TypeError(f"out must be a pair of arrays (grad, hess), got {type(out).__name__}")
    grad, hess = check_out(out[0], plan, "out[0]"), check_out(out[1], plan, "out[1]")
    if out[0] is not None and np.shares_memory(grad, hess):
        raise ValueError("out[0] and out[1] overlap; pass two separate arrays")
    return tuple(run_elements(plan, arguments["backend"], arguments["n_threads"], ELEMENT_GRAD_HESS,
                              [grad, hess]))


def _grad_hess_doc(function):
    function.__doc__ = function.__doc__.replace("{parameters}", _GRAD_HESS_DOC)
    return function


@_grad_hess_doc
def bce_grad_hess(y_true, raw_score, *, sample_weight=None, pos_weight=None, label_smoothing=0.0,
                  mask=None, nan_policy="propagate", out=None, n_threads=None, backend=None):
    """Per-element gradient and Hessian of the BCE with respect to the logit x, for boosting.

    With a = pw·y, b = 1-y (y smoothed) and σ = sigmoid: ``grad = w·(b·σ(x) - a·σ(-x))``,
    ``hess = w·(a + b)·σ(x)·σ(-x)`` (>= 0), computed stably for any x in one pass.

    Parameters
    ----------{parameters}"""
    return _grad_hess(locals(), 0.0, None)


@_grad_hess_doc
def focal_bce_grad_hess(y_true, raw_score, *, gamma=2.0, alpha=None, sample_weight=None,
                        pos_weight=None, label_smoothing=0.0, mask=None, nan_policy="propagate",
                        out=None, n_threads=None, backend=None):
    """Per-element gradient and exact Hessian of :func:`focal_bce` with respect to the logit x.

    FL = f·CE with f = α_t·z^γ, z = 1-p_t = y·σ(-x) + b·σ(x), s = σ(x)σ(-x), c = b - y,
    r = s/z: ``grad = w·(f·g + f'·CE)``, ``hess = w·(f''·CE + 2·f'·g + f·h)`` with g, h the BCE
    gradient and Hessian, ``f' = γ·f·c·r`` and ``f'' = γ·f·c·((γ-1)·c·r² + r·(σ(-x) - σ(x)))``.
    For γ > 0 the Hessian is negative where the prediction is confidently wrong: with a hard
    label, where (2y-1)·x < -4.0, -3.1, -2.8, -2.9 for γ = 0.5, 1, 2, 5 (p_t below 2-6%);
    boosting needs a positive floor there.
    γ = 0 and α = None give :func:`bce_grad_hess`.

    Parameters
    ----------{parameters}"""
    return _grad_hess(locals(), gamma, alpha)
