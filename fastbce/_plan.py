"""Argument checking: turn the public arguments into a :class:`Plan` that any backend can run.

Everything about shapes, dtypes and options is checked here, before a kernel runs. Values (labels
out of range, NaN under ``nan_policy="raise"``, bad weights or group ids) are checked by the
kernels in the same pass that computes, and reported through flags.
"""

from dataclasses import dataclass

import numpy as np

from ._frames import from_frames
from ._groups import factorize
from ._kernels import (
    MODE_ALL,
    MODE_COLS,
    MODE_GROUPS,
    MODE_ROWS,
    NAN_OMIT,
    NAN_PROPAGATE,
    NAN_RAISE,
)

REDUCTIONS = ("mean", "sum", "none")
_FLOATS = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
NAN_POLICIES = {"propagate": NAN_PROPAGATE, "raise": NAN_RAISE, "omit": NAN_OMIT}
# Where 1 - eps rounds to 1 in the dtype the bounds are rounded to (round to nearest, ties to even)
_MIN_EPS_NOTE = {"float32": "2**-25 (3.0e-8)", "float64": "2**-54 (5.6e-17)"}


@dataclass(slots=True)
class Plan:
    """Inputs as 2-D (rows, columns) views without copies, plus the options the kernels need.

    A 1-D input of length n is seen as n rows of one column. Weights, pos_weight and mask are
    broadcast views (stride 0 where they repeat); float16 arrays are viewed as uint16 bits. Not
    frozen: a frozen dataclass sets each field through object.__setattr__ (µs per call).
    """

    y: np.ndarray
    p: np.ndarray
    w: np.ndarray
    pw: np.ndarray
    mask: np.ndarray
    groups: np.ndarray
    y_half: bool
    p_half: bool
    from_logits: bool
    eps: float
    clip: tuple  # (lo, hi): probabilities are clipped to [lo, hi] (clip_bounds of eps and y_pred's dtype)
    smoothing: float
    nan_mode: int
    reduction: str
    mode: int
    n_slots: int
    shape: tuple  # y_pred's shape
    out_dtype: np.dtype  # dtype of element outputs (losses, gradients)
    has_weights: bool  # sample_weight or mask given
    gamma: float = 0.0  # focal exponent (0: no focal modulation)
    alpha: float = -1.0  # focal class balance α in [0, 1]; negative: no α factor
    group_labels: list = None  # the label of each group id (fastbce/_groups.py), or None

    def as_2d(self, array):
        """A (rows, columns) view of an array of y_pred's shape."""
        return array[:, None] if array.ndim == 1 else array


def _as_array(value, name):
    array = value if isinstance(value, np.ndarray) else np.asarray(value)
    if array.dtype.kind in "OUSVMmc" or array.dtype.names is not None:
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    if not array.dtype.isnative:
        raise TypeError(f"{name} has non-native byte order ({array.dtype.str}); "
                        f"convert it with {name}.astype({name}.dtype.newbyteorder('='))")
    return array


def _check_data(y_true, y_pred):
    y_pred = _as_array(y_pred, "y_pred")
    y_true = _as_array(y_true, "y_true")
    # kind "f" alone would let longdouble through, which no compiled kernel takes
    if y_pred.dtype not in _FLOATS:
        raise TypeError(f"y_pred must be float16, float32 or float64, got {y_pred.dtype}")
    if y_true.dtype.kind not in "biu" and y_true.dtype not in _FLOATS:
        raise TypeError(f"y_true must be a float16/32/64, bool or integer array, got {y_true.dtype}")
    if y_pred.ndim not in (1, 2):
        raise ValueError(f"y_pred must be 1-D (n_samples,) or 2-D (n_samples, n_labels), "
                         f"got {y_pred.ndim}-D with shape {y_pred.shape}")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred must have the same shape, got {y_true.shape} and {y_pred.shape}")
    if y_pred.size == 0:
        raise ValueError(f"y_pred is empty (shape {y_pred.shape}); a loss needs at least one element")
    return y_true, y_pred


def _broadcast(value, name, shape, kinds, hint=""):
    array = _as_array(value, name)
    if array.dtype.kind not in kinds:
        raise TypeError(f"{name} has dtype {array.dtype}, expected one of kinds {kinds!r}")
    try:
        return np.broadcast_to(array, shape)
    except ValueError:
        raise ValueError(f"{name} with shape {array.shape} does not broadcast to y_pred's shape {shape}{hint}") from None


def _weight_operand(value, name, shape, hint=""):
    """A float32/float64 broadcast view of a weight argument (other real dtypes are converted)."""
    if value is None:
        return np.broadcast_to(np.float64(1.0), shape)
    array = _broadcast(value, name, shape, "fiub", hint)
    if array.dtype not in (np.float32, np.float64):
        array = np.broadcast_to(np.asarray(value, dtype=np.float32 if array.dtype == np.float16 else np.float64), shape)
    return array


def clip_bounds(eps, dtype):
    """(lo, hi) = eps and 1 - eps rounded to the prediction's dtype, as float64 values: probabilities
    are clipped to [lo, hi]. float16 predictions take the float32 bounds (they are computed in
    float32 by the frameworks); float64 ones eps and 1 - eps as float64 gives them."""
    t = np.float64 if np.dtype(dtype) == np.float64 else np.float32
    eps = float(eps)  # 1 - eps in float64, also for an eps given as a NumPy float32
    return float(t(eps)), float(t(1.0 - eps))


def _check_option(value, name, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def check_axis(axis, ndim):
    if axis is None:
        return None
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be None or an integer, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of range for {ndim}-D input")
    axis = int(axis) % ndim
    return None if ndim == 1 else axis


def _check_groups(groups, n_groups, n_rows, axis, reduction):
    if axis is not None:
        raise ValueError("groups and axis cannot be combined: groups reduce over whole samples")
    if reduction == "none":
        raise ValueError("groups needs reduction='mean' or 'sum', not 'none'")
    groups = _as_array(groups, "groups")
    if groups.dtype.kind not in "iu":
        raise TypeError(f"groups must be an integer array, got dtype {groups.dtype}")
    if groups.shape != (n_rows,):
        raise ValueError(f"groups must have shape (n_samples,) = ({n_rows},), got {groups.shape}")
    if n_groups is None:
        n_groups = int(groups.max()) + 1
        if n_groups < 1:
            raise ValueError("groups has no id >= 0; group ids must lie in [0, n_groups)")
    elif isinstance(n_groups, bool) or not isinstance(n_groups, (int, np.integer)) or n_groups < 1:
        raise ValueError(f"n_groups must be a positive integer, got {n_groups!r}")
    return groups, int(n_groups)


# Native dtypes of the common-case plan (every other dtype takes the full checks).
_COMMON_PREDS = {np.dtype(t) for t in (np.float16, np.float32, np.float64)}
_COMMON_LABELS = _COMMON_PREDS | {np.dtype(t) for t in (np.bool_, np.int8, np.uint8, np.int16,
                                                        np.uint16, np.int32, np.uint32, np.int64,
                                                        np.uint64)}
# (eps, prediction dtype, from_logits) -> clip bounds of the values make_plan accepts
_common_clips = {}
# 2-D shape -> (weights, pos_weight, mask) as the broadcast views make_plan gives (read-only)
_common_views = {}
_NO_GROUPS = np.zeros(1, np.intp)
_NO_GROUPS.flags.writeable = False
_MAX_CACHED = 64


def _common_plan(y_true, y_pred, from_logits, eps, sample_weight, pos_weight, label_smoothing,
                 mask, nan_policy, reduction, axis, groups, n_groups, gamma, alpha):
    """The Plan of a common call (NumPy arrays of native dtypes, no weights, pos_weight, mask,
    groups, smoothing or focal loss, axis None), as the full checks below would give it, in a few
    cheap steps; None for any other call (tests/test_quick.py compares the two)."""
    if (type(y_pred) is not np.ndarray or type(y_true) is not np.ndarray or sample_weight is not None
            or pos_weight is not None or mask is not None or groups is not None
            or n_groups is not None or axis is not None or alpha is not None
            or not (from_logits is False or from_logits is True) or type(gamma) is not float
            or gamma != 0.0 or type(label_smoothing) is not float or label_smoothing != 0.0
            or type(nan_policy) is not str or type(reduction) is not str
            or nan_policy not in NAN_POLICIES or reduction not in REDUCTIONS):
        return None
    dtype, shape = y_pred.dtype, y_pred.shape
    if (dtype not in _COMMON_PREDS or y_true.dtype not in _COMMON_LABELS
            or y_true.shape != shape or not 0 < len(shape) < 3 or y_pred.size == 0):
        return None
    key = (eps, dtype, from_logits)
    clip = _common_clips.get(key)
    if clip is None:
        if type(eps) is not float or not 0.0 < eps < 0.5 or 1.0 - eps == 1.0:
            return None
        clip = clip_bounds(eps, dtype)
        if not from_logits and not 0.0 < clip[0] < clip[1] < 1.0:
            return None
        if len(_common_clips) < _MAX_CACHED:
            _common_clips[key] = clip
    shape_2d = shape if len(shape) == 2 else (shape[0], 1)
    views = _common_views.get(shape_2d)
    if views is None:
        views = (np.broadcast_to(np.float64(1.0), shape_2d), np.broadcast_to(np.float64(1.0), shape_2d),
                 np.broadcast_to(np.True_, shape_2d))
        if len(_common_views) >= _MAX_CACHED:
            _common_views.clear()
        _common_views[shape_2d] = views
    y_half = y_true.dtype == np.float16
    p_half = dtype == np.float16
    if y_half:
        y_true = y_true.view(np.uint16)
    if p_half:
        y_pred = y_pred.view(np.uint16)
    if len(shape) == 1:
        y_true, y_pred = y_true[:, None], y_pred[:, None]
    return Plan(y=y_true, p=y_pred, w=views[0], pw=views[1], mask=views[2], groups=_NO_GROUPS,
                y_half=y_half, p_half=p_half, from_logits=from_logits, eps=eps, clip=clip,
                smoothing=0.0, nan_mode=NAN_POLICIES[nan_policy], reduction=reduction,
                mode=MODE_ALL, n_slots=1, shape=shape,
                out_dtype=np.dtype(np.float64 if dtype == np.float64 else np.float32),
                has_weights=False)


def make_plan(y_true, y_pred, *, from_logits, eps, sample_weight, pos_weight, label_smoothing,
              mask, nan_policy, reduction, axis, groups=None, n_groups=None, gamma=0.0, alpha=None):
    """Check every argument and return the :class:`Plan`, or raise ValueError/TypeError."""
    plan = _common_plan(y_true, y_pred, from_logits, eps, sample_weight, pos_weight,
                        label_smoothing, mask, nan_policy, reduction, axis, groups, n_groups, gamma,
                        alpha)
    if plan is not None:
        return plan
    if not isinstance(gamma, (float, int, np.floating, np.integer)) or not 0.0 <= gamma < np.inf:
        raise ValueError(f"gamma must be a finite number >= 0, got {gamma!r}")
    if alpha is not None and (not isinstance(alpha, (float, int, np.floating, np.integer))
                              or not 0.0 <= alpha <= 1.0):
        raise ValueError(f"alpha must be None or a number in [0, 1], got {alpha!r}")
    if not isinstance(from_logits, (bool, np.bool_)):
        raise TypeError(f"from_logits must be True or False, got {from_logits!r}")
    _check_option(reduction, "reduction", REDUCTIONS)
    _check_option(nan_policy, "nan_policy", tuple(NAN_POLICIES))
    if not isinstance(eps, (float, int, np.floating)) or not 0.0 < eps < 0.5:
        raise ValueError(f"eps must be a number in (0, 0.5), got {eps!r}")
    if 1.0 - float(eps) == 1.0:  # the clip bound 1 - eps would be 1: -log(1 - q) infinite
        raise ValueError(f"eps must be a number in (0, 0.5), got {eps!r}, below 2**-54 "
                         "(5.6e-17), where 1 - eps rounds to 1 in float64")
    if not isinstance(label_smoothing, (float, int, np.floating)) or not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be a number in [0, 1], got {label_smoothing!r}")

    group_labels = None
    if groups is not None:  # strings, categoricals, ids of any range: dense ids and their labels
        groups, n_groups, group_labels = factorize(groups, n_groups, y_pred)
    y_true, y_pred, sample_weight, pos_weight, mask, groups = from_frames(
        y_true, y_pred, sample_weight, pos_weight, mask, groups)
    y_true, y_pred = _check_data(y_true, y_pred)
    shape = y_pred.shape
    axis = check_axis(axis, y_pred.ndim)
    if reduction == "none" and axis is not None:
        raise ValueError("axis applies to reduction='mean' or 'sum', not 'none'")

    hint = ("; for one weight per sample of 2-D input pass sample_weight[:, None]"
            if y_pred.ndim == 2 else "")
    w = _weight_operand(sample_weight, "sample_weight", shape, hint)
    pw = _weight_operand(pos_weight, "pos_weight", shape)
    if mask is None:
        mask_view = np.broadcast_to(np.True_, shape)
    else:
        mask_view = _broadcast(mask, "mask", shape, "b")

    n_rows = shape[0]
    if groups is not None:
        groups, n_slots = _check_groups(groups, n_groups, n_rows, axis, reduction)
        mode = MODE_GROUPS
    else:
        if n_groups is not None:
            raise ValueError("n_groups was given without groups; pass groups (the id of each sample)")
        groups = np.zeros(1, np.intp)
        mode, n_slots = {None: (MODE_ALL, 1), 0: (MODE_COLS, shape[-1]), 1: (MODE_ROWS, n_rows)}[axis]

    clip = clip_bounds(eps, y_pred.dtype)
    if not from_logits and not 0.0 < clip[0] < clip[1] < 1.0:
        t = "float64" if y_pred.dtype == np.float64 else "float32"
        raise ValueError(f"eps={eps!r} does not fit y_pred's dtype {y_pred.dtype}: probabilities are "
                         f"clipped to [eps, 1 - eps] rounded to {t}, which gives [{clip[0]!r}, "
                         f"{clip[1]!r}]; both bounds must lie strictly between 0 and 1 "
                         f"(for {t}, eps > {_MIN_EPS_NOTE[t]})")

    y_half = y_true.dtype == np.float16
    p_half = y_pred.dtype == np.float16
    as_2d = (lambda a: a[:, None]) if y_pred.ndim == 1 else (lambda a: a)
    return Plan(
        y=as_2d(y_true.view(np.uint16) if y_half else y_true),
        p=as_2d(y_pred.view(np.uint16) if p_half else y_pred),
        w=as_2d(w), pw=as_2d(pw), mask=as_2d(mask_view), groups=groups,
        y_half=bool(y_half), p_half=bool(p_half), from_logits=bool(from_logits), eps=float(eps),
        clip=clip,
        smoothing=float(label_smoothing), nan_mode=NAN_POLICIES[nan_policy], reduction=reduction,
        mode=mode, n_slots=n_slots, shape=shape,
        out_dtype=np.dtype(np.float64 if y_pred.dtype == np.float64 else np.float32),
        has_weights=sample_weight is not None or mask is not None,
        gamma=float(gamma), alpha=-1.0 if alpha is None else float(alpha), group_labels=group_labels,
    )
