"""BCE and focal-loss objectives and metrics for LightGBM and XGBoost custom training.

:func:`lightgbm_objective` and :func:`xgboost_objective` return callables that give the boosting
library the per-sample gradient and Hessian of the loss with respect to the raw score (the logit
x), from :func:`fastbce.bce_grad_hess` / :func:`fastbce.focal_bce_grad_hess` (exact, times the
sample weight), with the Hessian raised to ``hess_floor`` because both libraries need it positive
(the focal Hessian is negative where p_t is small). :func:`lightgbm_metric` and
:func:`xgboost_metric` report the same loss, the weighted mean of :func:`fastbce.bce` /
:func:`fastbce.focal_bce`. Binary targets, and in XGBoost also multi-label targets (one output per
label); multiclass training (``num_class``) raises ``ValueError``.

A custom objective gets no automatic initial score: LightGBM's ``boost_from_average`` serves its
built-in objectives only (a custom one starts at 0), and XGBoost starts it at ``base_score`` taken
as a raw score (0.5 unless set). ``objective.init_score(y, sample_weight)`` gives the best constant
logit b for the loss; pass it as ``lightgbm.Dataset(..., init_score=np.full(n, b))`` (and add b to
``predict(..., raw_score=True)``), ``params["base_score"] = b`` in ``xgboost.train``, or
``base_score=1 / (1 + exp(-b))`` in ``XGBClassifier``, which keeps the ``binary:logistic`` link.

LightGBM and XGBoost are imported on use (``pip install 'fastbce[boosting]'``).
"""

import importlib
import math
import numbers
import re

import numpy as np

import fastbce

from ._backends import resolve_backend
from ._threads import resolve_num_threads

__all__ = ["lightgbm_objective", "xgboost_objective", "lightgbm_metric", "xgboost_metric"]

_LOGIT_BOUND = math.log((1 - 1e-15) / 1e-15)  # LightGBM clips its average label to [1e-15, 1-1e-15]


# The first versions that pass the sample weights to a scikit-learn-API custom objective (before,
# LightGBM applied them itself and XGBoost dropped them).
_MINIMUM = {"lightgbm": (4, 0), "xgboost": (2, 1)}


def _library(module, caller):
    """The imported boosting library, or an ImportError that names the extra."""
    package = {"lightgbm": "lightgbm", "xgboost": "xgboost-cpu"}[module]
    minimum = ".".join(map(str, _MINIMUM[module]))
    try:
        library = importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"fastbce.boosting.{caller} needs {package} >= {minimum}: "
                          f"pip install 'fastbce[boosting]'") from error
    version = tuple(int(part) for part in re.findall(r"\d+", library.__version__)[:2])
    if version < _MINIMUM[module]:
        raise ImportError(f"fastbce.boosting.{caller} needs {package} >= {minimum}, found "
                          f"{library.__version__}: pip install 'fastbce[boosting]'")
    return library


def _number(value, name, low, high=math.inf):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or not low <= value <= high:
        bounds = f">= {low}" if high == math.inf else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be a finite number {bounds}, got {value!r}")
    return float(value)


class _Loss:
    """The loss options shared by the objectives and metrics, checked once."""

    def __init__(self, library, loss, gamma, alpha, pos_weight, label_smoothing, n_threads, backend):
        if loss not in ("bce", "focal"):
            raise ValueError(f"loss must be 'bce' or 'focal', got {loss!r}")
        self.gamma = _number(gamma, "gamma", 0.0)
        self.alpha = None if alpha is None else _number(alpha, "alpha", 0.0, 1.0)
        if loss == "bce" and (self.gamma != 2.0 or alpha is not None):
            raise ValueError("gamma and alpha are options of loss='focal' "
                             "(alpha-balanced BCE is loss='focal' with gamma=0)")
        if pos_weight is not None:
            pos_weight = np.array(pos_weight, dtype=np.float64)
            if pos_weight.ndim > 1 or not np.all(np.isfinite(pos_weight)) or np.any(pos_weight < 0):
                raise ValueError("pos_weight must be a finite number >= 0 or a 1-D array of them "
                                 "(one per label)")
            pos_weight = float(pos_weight) if pos_weight.ndim == 0 else pos_weight
        self.pos_weight = pos_weight
        self.label_smoothing = _number(label_smoothing, "label_smoothing", 0.0, 1.0)
        resolve_num_threads(n_threads)
        if backend is not None:
            resolve_backend(backend)
        self.library, self.loss, self.n_threads, self.backend = library, loss, n_threads, backend
        self._options = {"pos_weight": self.pos_weight, "label_smoothing": self.label_smoothing,
                         "n_threads": n_threads, "backend": backend}
        if loss == "focal":
            self._options.update(gamma=self.gamma, alpha=self.alpha)

    def _shaped(self, y_true, raw_score, sample_weight):
        """(labels, raw scores, weights or None) as fastbce takes them; multiclass raises."""
        raw_score = np.asarray(raw_score)
        y_true = np.asarray(y_true)
        weight = None if sample_weight is None or np.size(sample_weight) == 0 else np.asarray(sample_weight)
        if raw_score.ndim == 2:
            if self.library == "lightgbm" or y_true.size != raw_score.size:
                raise ValueError(
                    f"{self.library}: multiclass training (num_class > 1) is not supported by the "
                    "fastbce binary losses; XGBoost multi-label targets (one 0/1 label per output) are")
            y_true = y_true.reshape(raw_score.shape)
            weight = None if weight is None else weight.reshape(-1, 1)
        return y_true, raw_score, weight

    def _value(self, y_true, y_pred, sample_weight, from_logits):
        """The weighted mean loss, a Python float."""
        y_true, y_pred, weight = self._shaped(y_true, y_pred, sample_weight)
        function = fastbce.focal_bce if self.loss == "focal" else fastbce.bce
        return function(y_true, y_pred, from_logits=from_logits, sample_weight=weight, **self._options)

    def __repr__(self):
        shown = {"gamma": self.gamma, "alpha": self.alpha} if self.loss == "focal" else {}
        for name, default in (("pos_weight", None), ("label_smoothing", 0.0), ("hess_floor", 1e-16),
                              ("from_logits", True)):
            value = getattr(self, name, default)
            if value is not default and not np.array_equal(value, default):
                shown[name] = value
        options = "".join(f", {name}={value!r}" for name, value in shown.items())
        return f"{type(self).__name__}(loss={self.loss!r}{options})"


class _Objective(_Loss):
    def __init__(self, library, loss, gamma, alpha, pos_weight, label_smoothing, hess_floor,
                 n_threads, backend):
        super().__init__(library, loss, gamma, alpha, pos_weight, label_smoothing, n_threads, backend)
        self.hess_floor = _number(hess_floor, "hess_floor", 0.0)

    def grad_hess(self, y_true, raw_score, sample_weight=None):
        """``(w·dl/dx, max(w·d²l/dx², hess_floor))`` per element, in raw_score's dtype."""
        y_true, raw_score, weight = self._shaped(y_true, raw_score, sample_weight)
        function = fastbce.focal_bce_grad_hess if self.loss == "focal" else fastbce.bce_grad_hess
        grad, hess = function(y_true, raw_score, sample_weight=weight, **self._options)
        np.maximum(hess, self.hess_floor, out=hess)
        return grad, hess

    def init_score(self, y_true, sample_weight=None):
        """The constant logit b that minimizes the weighted loss Σw·l(y, b): for BCE
        ``log(A/B)`` with ``A = Σw·pw·ỹ``, ``B = Σw·(1-ỹ)`` (ỹ the smoothed label), for focal loss
        the root of the summed gradient (bisection); within ±34.5 (LightGBM's bound,
        logit(1e-15)). A float, or one per column for 2-D labels."""
        y_true = np.asarray(y_true, dtype=np.float64)
        weight = np.ones(len(y_true)) if sample_weight is None else np.asarray(sample_weight, np.float64)
        if weight.ndim != 1:
            raise ValueError(f"sample_weight must be 1-D (one weight per sample), got {weight.ndim}-D")
        # labels in [0, 1], weights finite, >= 0 and one per sample: checked (and named) by fastbce
        fastbce.bce(y_true, np.zeros(y_true.shape), from_logits=True, reduction="sum",
                    sample_weight=weight[:, None] if y_true.ndim == 2 else weight)
        weight = np.broadcast_to(weight, y_true.shape[:1])
        if y_true.ndim == 2:
            return np.array([self._init_score(y_true[:, k], weight, k) for k in range(y_true.shape[1])])
        return self._init_score(y_true, weight, None)

    def _init_score(self, y, weight, column):
        pw = self.pos_weight
        if isinstance(pw, np.ndarray):
            pw = float(pw[column if column is not None else 0])
        s = self.label_smoothing
        if self.loss == "bce":
            smoothed = y * (1 - s) + s / 2
            a = np.dot(weight, smoothed) * (1.0 if pw is None else pw)
            b = np.dot(weight, 1 - smoothed)
            ratio = a / b if b > 0 else math.inf
            return min(max(math.log(ratio) if ratio > 0 else -math.inf, -_LOGIT_BOUND), _LOGIT_BOUND)
        # Every sample with the same label has the same gradient at a constant score: sum the
        # weights per distinct label, then bisect the summed gradient on [-bound, bound].
        labels, inverse = np.unique(y, return_inverse=True)
        totals = np.bincount(inverse.ravel(), weights=weight)
        options = dict(self._options, pos_weight=pw)

        def summed_gradient(b):
            grad = fastbce.focal_bce_grad(labels, np.full(labels.shape, b), from_logits=True,
                                          sample_weight=totals, reduction="sum", **options)
            return float(grad.sum())

        low, high = -_LOGIT_BOUND, _LOGIT_BOUND
        if summed_gradient(low) >= 0:
            return low
        if summed_gradient(high) <= 0:
            return high
        while True:
            middle = 0.5 * (low + high)
            if middle in (low, high):
                return middle
            if summed_gradient(middle) < 0:
                low = middle
            else:
                high = middle


class LightGBMObjective(_Objective):
    """A LightGBM custom objective: ``params["objective"]`` of ``lightgbm.train`` (called as
    ``(preds, train_data)``, weights from the Dataset) or ``LGBMClassifier(objective=...)``
    (called as ``(y_true, y_pred, weight)``). Returns ``(grad, hess)``."""

    def __call__(self, preds_or_y_true, train_data_or_y_pred, weight=None):
        lightgbm = _library("lightgbm", "lightgbm_objective")
        if isinstance(train_data_or_y_pred, lightgbm.Dataset):
            data = train_data_or_y_pred
            return self.grad_hess(data.get_label(), preds_or_y_true, data.get_weight())
        return self.grad_hess(preds_or_y_true, train_data_or_y_pred, weight)


class XGBoostObjective(_Objective):
    """An XGBoost custom objective: ``obj=`` of ``xgboost.train`` (called as ``(predt, dtrain)``,
    weights from the DMatrix) or ``XGBClassifier(objective=...)`` (called as
    ``(y_true, y_pred, sample_weight=...)``). Returns ``(grad, hess)``."""

    def __call__(self, predt_or_y_true, dtrain_or_y_pred, sample_weight=None):
        xgboost = _library("xgboost", "xgboost_objective")
        if isinstance(dtrain_or_y_pred, xgboost.DMatrix):
            data = dtrain_or_y_pred
            return self.grad_hess(data.get_label(), predt_or_y_true, data.get_weight())
        return self.grad_hess(predt_or_y_true, dtrain_or_y_pred, sample_weight)


class _Metric(_Loss):
    def __init__(self, library, loss, gamma, alpha, pos_weight, label_smoothing, from_logits,
                 n_threads, backend):
        super().__init__(library, loss, gamma, alpha, pos_weight, label_smoothing, n_threads, backend)
        if not isinstance(from_logits, (bool, np.bool_)):
            raise TypeError(f"from_logits must be True or False, got {from_logits!r}")
        self.from_logits = bool(from_logits)
        self.__name__ = "focal_bce" if loss == "focal" else "bce"  # the name the libraries report


class LightGBMMetric(_Metric):
    """A LightGBM evaluation function: ``feval=`` of ``lightgbm.train`` (``(preds, eval_data)``) or
    ``LGBMClassifier.fit(eval_metric=...)`` (``(y_true, y_pred, weight)``). Returns
    ``(name, weighted mean loss, False)``."""

    def __call__(self, preds_or_y_true, eval_data_or_y_pred, weight=None):
        lightgbm = _library("lightgbm", "lightgbm_metric")
        if isinstance(eval_data_or_y_pred, lightgbm.Dataset):
            data = eval_data_or_y_pred
            value = self._value(data.get_label(), preds_or_y_true, data.get_weight(), self.from_logits)
        else:
            value = self._value(preds_or_y_true, eval_data_or_y_pred, weight, self.from_logits)
        return self.__name__, value, False


class XGBoostMetric(_Metric):
    """An XGBoost metric: ``custom_metric=`` of ``xgboost.train`` (``(predt, dmatrix)``, returns
    ``(name, value)``) or ``XGBClassifier(eval_metric=...)`` (``(y_true, y_pred,
    sample_weight=...)``, returns the value; XGBoost names it ``__name__``)."""

    def __call__(self, predt_or_y_true, dmatrix_or_y_pred, sample_weight=None):
        xgboost = _library("xgboost", "xgboost_metric")
        if isinstance(dmatrix_or_y_pred, xgboost.DMatrix):
            data = dmatrix_or_y_pred
            return self.__name__, self._value(data.get_label(), predt_or_y_true, data.get_weight(),
                                              self.from_logits)
        return self._value(predt_or_y_true, dmatrix_or_y_pred, sample_weight, self.from_logits)


_OPTIONS_DOC = """Parameters
    ----------
    loss: ``"bce"`` or ``"focal"`` (``α_t·(1-p_t)^γ·CE``, see :func:`fastbce.focal_bce`).
    gamma, alpha: focal loss only: γ ≥ 0; α in [0, 1] or None (no α factor).
    pos_weight: factor on the positive term, a number or one per label (XGBoost multi-label).
    label_smoothing: labels become ``y·(1-s) + s/2``.
    n_threads, backend: as in :func:`fastbce.bce`.
"""


def _with_options(function):
    """Put the shared option descriptions in place of ``{options}`` in the docstring."""
    function.__doc__ = function.__doc__.replace("{options}", _OPTIONS_DOC.rstrip())
    return function


@_with_options
def lightgbm_objective(loss="bce", *, gamma=2.0, alpha=None, pos_weight=None, label_smoothing=0.0,
                       hess_floor=1e-16, n_threads=None, backend=None):
    """A LightGBM custom objective (``params["objective"]`` or ``LGBMClassifier(objective=...)``)
    returning ``g = w·dl/dx`` and ``h = max(w·d²l/dx², hess_floor)`` per sample, x the raw score.
    Weights are read from the Dataset (or the ``sample_weight`` of ``fit``). Binary only.
    ``.init_score(y, sample_weight)`` gives the initial score to pass (see the module doc).

    {options}
    hess_floor: lower bound of the Hessian (≥ 0); the focal Hessian is negative where p_t is small."""
    _library("lightgbm", "lightgbm_objective")
    return LightGBMObjective("lightgbm", loss, gamma, alpha, pos_weight, label_smoothing, hess_floor,
                             n_threads, backend)


@_with_options
def xgboost_objective(loss="bce", *, gamma=2.0, alpha=None, pos_weight=None, label_smoothing=0.0,
                      hess_floor=1e-16, n_threads=None, backend=None):
    """An XGBoost custom objective (``xgboost.train(obj=...)`` or ``XGBClassifier(objective=...)``)
    returning ``g = w·dl/dx`` and ``h = max(w·d²l/dx², hess_floor)`` per element, x the raw score.
    Weights are read from the DMatrix (or the ``sample_weight`` of ``fit``). Binary or multi-label
    (2-D 0/1 labels, one output each). ``.init_score(y, sample_weight)`` gives the initial score.

    {options}
    hess_floor: lower bound of the Hessian (≥ 0); the focal Hessian is negative where p_t is small."""
    _library("xgboost", "xgboost_objective")
    return XGBoostObjective("xgboost", loss, gamma, alpha, pos_weight, label_smoothing, hess_floor,
                            n_threads, backend)


@_with_options
def lightgbm_metric(loss="bce", *, gamma=2.0, alpha=None, pos_weight=None, label_smoothing=0.0,
                    from_logits=True, n_threads=None, backend=None):
    """A LightGBM evaluation function (``feval=`` or ``LGBMClassifier.fit(eval_metric=...)``)
    reporting the weighted mean loss (lower is better), named ``"bce"`` or ``"focal_bce"``.

    {options}
    from_logits: True for raw scores (a custom objective's), False for probabilities (LightGBM's
        built-in binary objective gives those)."""
    _library("lightgbm", "lightgbm_metric")
    return LightGBMMetric("lightgbm", loss, gamma, alpha, pos_weight, label_smoothing, from_logits,
                          n_threads, backend)


@_with_options
def xgboost_metric(loss="bce", *, gamma=2.0, alpha=None, pos_weight=None, label_smoothing=0.0,
                   from_logits=True, n_threads=None, backend=None):
    """An XGBoost metric (``xgboost.train(custom_metric=...)`` or ``XGBClassifier(eval_metric=...)``)
    reporting the weighted mean loss (lower is better), named ``"bce"`` or ``"focal_bce"``.

    {options}
    from_logits: True for raw scores (XGBoost passes them with a custom objective), False for
        probabilities (with ``binary:logistic``)."""
    _library("xgboost", "xgboost_metric")
    return XGBoostMetric("xgboost", loss, gamma, alpha, pos_weight, label_smoothing, from_logits,
                         n_threads, backend)
