"""The scoring report (:func:`score`) and its mergeable streaming form (:class:`Accumulator`).

Both rest on the same kernel pass as :func:`fastbce.bce`, which sums per slot (overall, per group
or per label) seven float64 statistics: Σw·l, Σw, count, Σw·y, Σw·q, Σw·y·(-log q) and
Σw·(1-y)·(-log(1-q)), where q is the clipped probability (or σ(x) from logits). Every reported
figure is a ratio of these sums, so partial results merge exactly by addition.
"""

import math

import numpy as np

from ._engine import run_pass
from ._kernels import MODE_ALL, MODE_COLS, MODE_GROUPS, MODE_ROWS
from ._plan import make_plan

N_STATS = 7
LOSS, WEIGHT, COUNT, WEIGHTED_Y, WEIGHTED_Q, POSITIVE, NEGATIVE = range(N_STATS)
FIELDS = ("count", "weight_sum", "positive_rate", "mean_prediction", "log_loss",
          "normalized_entropy", "calibration", "log_loss_positives", "log_loss_negatives")


def _ratio(numerator, denominator):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), np.nan)


def _entropy(rate):
    """Entropy of a Bernoulli(rate) label, -(r·log r + (1-r)·log(1-r)), in nats."""
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = np.where(rate > 0, rate * np.log(rate), 0.0) + np.where(rate < 1, (1 - rate) * np.log1p(-rate), 0.0)
    return -terms


class ScoreResult:
    """Scoring statistics: floats for an overall report, arrays with one entry per group or label.

    - ``count``: counted elements (not masked or omitted); ``weight_sum``: Σw
    - ``positive_rate``: Σw·y / Σw; ``mean_prediction``: Σw·q / Σw
    - ``log_loss``: Σw·l / Σw; ``normalized_entropy``: log_loss / entropy(positive_rate)
    - ``calibration``: mean_prediction / positive_rate
    - ``log_loss_positives``: Σw·y·(-log q) / Σw·y; ``log_loss_negatives``: Σw·(1-y)·(-log(1-q)) / Σw·(1-y)

    A ratio whose denominator is 0 (no weight, no positives, a constant label) is NaN.
    """

    def __init__(self, totals, index_name=None):
        self.totals = totals  # (n_slots, 7) float64 sums
        self.index_name = index_name  # None (overall), "group" or "label"
        if index_name is None:  # one slot: in Python floats, the same values at a tenth of the cost
            self._set_overall(*totals[0].tolist())
            return
        weight = totals[:, WEIGHT]
        positive_rate = _ratio(totals[:, WEIGHTED_Y], weight)
        log_loss = _ratio(totals[:, LOSS], weight)
        mean_prediction = _ratio(totals[:, WEIGHTED_Q], weight)
        values = {
            "count": totals[:, COUNT].astype(np.int64),
            "weight_sum": weight.copy(),
            "positive_rate": positive_rate,
            "mean_prediction": mean_prediction,
            "log_loss": log_loss,
            "normalized_entropy": _ratio(log_loss, _entropy(positive_rate)),
            "calibration": _ratio(mean_prediction, positive_rate),
            "log_loss_positives": _ratio(totals[:, POSITIVE], totals[:, WEIGHTED_Y]),
            "log_loss_negatives": _ratio(totals[:, NEGATIVE], weight - totals[:, WEIGHTED_Y]),
        }
        for name, value in values.items():
            setattr(self, name, value.item() if index_name is None else value)

    def _set_overall(self, loss, weight, count, weighted_y, weighted_q, positive, negative):
        """The fields of one slot from its seven sums, as the array formulas above give them."""
        def ratio(numerator, denominator):
            return numerator / denominator if denominator > 0 else math.nan

        positive_rate = ratio(weighted_y, weight)
        log_loss = ratio(loss, weight)
        self.mean_prediction = ratio(weighted_q, weight)
        # -(r·log r + (1-r)·log(1-r)) with NumPy's log and log1p, as _entropy
        entropy = -((float(positive_rate * np.log(positive_rate)) if positive_rate > 0 else 0.0)
                    + (float((1 - positive_rate) * np.log1p(-positive_rate))
                       if positive_rate < 1 else 0.0))
        self.count = int(count)
        self.weight_sum = weight
        self.positive_rate = positive_rate
        self.log_loss = log_loss
        self.normalized_entropy = ratio(log_loss, entropy)
        self.calibration = ratio(self.mean_prediction, positive_rate)
        self.log_loss_positives = ratio(positive, weighted_y)
        self.log_loss_negatives = ratio(negative, weight - weighted_y)

    def to_dict(self):
        """{field: float (overall) or array (per group / label)} with the keys of ``FIELDS``."""
        return {name: getattr(self, name) for name in FIELDS}

    def to_pandas(self):
        """A pandas Series (overall) or DataFrame with one row per group / label."""
        import pandas as pd

        if self.index_name is None:
            return pd.Series(self.to_dict())
        return pd.DataFrame(self.to_dict()).rename_axis(self.index_name)

    def __repr__(self):
        if self.index_name is None:
            lines = [f"  {name:<20} {getattr(self, name):.6g}" for name in FIELDS]
            return "ScoreResult(\n" + "\n".join(lines) + "\n)"
        header = f"  {self.index_name:>6} " + " ".join(f"{name[:18]:>18}" for name in FIELDS)
        rows = [f"  {i:>6} " + " ".join(f"{getattr(self, name)[i]:>18.6g}" for name in FIELDS)
                for i in range(min(len(self.totals), 20))]
        more = [f"  ... {len(self.totals) - 20} more"] if len(self.totals) > 20 else []
        return "ScoreResult(\n" + "\n".join([header] + rows + more) + "\n)"


_INDEX_NAMES = {MODE_ALL: None, MODE_GROUPS: "group", MODE_COLS: "label", MODE_ROWS: "sample"}


def _score_totals(y_true, y_pred, *, from_logits, eps, sample_weight, mask, nan_policy, groups,
                  n_groups, axis, n_threads, backend):
    """(the seven sums per slot, name of the slots) of one pass."""
    plan = make_plan(y_true, y_pred, from_logits=from_logits, eps=eps, sample_weight=sample_weight,
                     pos_weight=None, label_smoothing=0.0, mask=mask, nan_policy=nan_policy,
                     reduction="sum", axis=axis, groups=groups, n_groups=n_groups)
    return run_pass(plan, backend, n_threads, n_stats=N_STATS)[0], _INDEX_NAMES[plan.mode]


def score(y_true, y_pred, *, from_logits=False, eps=1e-7, sample_weight=None, mask=None,
          nan_policy="propagate", groups=None, n_groups=None, axis=None, n_threads=None,
          backend=None):
    """Scoring report in one pass: overall, per group (``groups``) or per label (``axis=0``).

    Arguments mean what they mean for :func:`fastbce.bce` (``axis=1`` gives one entry per sample).
    Returns a :class:`ScoreResult`.
    """
    return ScoreResult(*_score_totals(
        y_true, y_pred, from_logits=from_logits, eps=eps, sample_weight=sample_weight, mask=mask,
        nan_policy=nan_policy, groups=groups, n_groups=n_groups, axis=axis, n_threads=n_threads,
        backend=backend))


class Accumulator:
    """The streaming, mergeable form of :func:`score`.

    ``update`` adds a chunk of data, ``merge`` adds another accumulator's sums, ``result`` gives
    the :class:`ScoreResult`. Sums are float64 and only ever added, so any chunking and any merge
    order give the one-call result to about 1e-15 relative, and the same chunks merged in the same
    order give bit-identical results. Accumulators pickle.

    With ``n_groups`` every update takes ``groups`` (ids in [0, n_groups)); with ``axis=0`` the
    report is per label (2-D input, the number of labels is fixed by the first update).
    """

    def __init__(self, *, from_logits=False, eps=1e-7, n_groups=None, axis=None,
                 nan_policy="propagate", n_threads=None, backend=None):
        if n_groups is not None and (isinstance(n_groups, bool) or not isinstance(n_groups, (int, np.integer))
                                     or n_groups < 1):
            raise ValueError(f"n_groups must be None or a positive integer, got {n_groups!r}")
        if axis not in (None, 0):
            raise ValueError(f"axis must be None or 0 for an Accumulator, got {axis!r}")
        if n_groups is not None and axis is not None:
            raise ValueError("n_groups and axis cannot be combined")
        # The options are checked the way every call checks them, on one element.
        make_plan(np.zeros(1), np.full(1, 0.5), from_logits=from_logits, eps=eps, sample_weight=None,
                  pos_weight=None, label_smoothing=0.0, mask=None, nan_policy=nan_policy,
                  reduction="sum", axis=None)
        self.settings = {"from_logits": bool(from_logits), "eps": float(eps),
                         "n_groups": None if n_groups is None else int(n_groups), "axis": axis,
                         "nan_policy": nan_policy}
        self.n_threads = n_threads
        self.backend = backend
        self.totals = None if axis == 0 else np.zeros((n_groups or 1, N_STATS))

    def update(self, y_true, y_pred, sample_weight=None, groups=None, mask=None):
        """Add a chunk of data; returns self."""
        n_groups = self.settings["n_groups"]
        if (groups is None) != (n_groups is None):
            raise ValueError("groups must be given exactly when the Accumulator has n_groups "
                             f"(n_groups={n_groups}, groups {'missing' if groups is None else 'given'})")
        totals, _ = _score_totals(
            y_true, y_pred, from_logits=self.settings["from_logits"], eps=self.settings["eps"],
            sample_weight=sample_weight, mask=mask, nan_policy=self.settings["nan_policy"],
            groups=groups, n_groups=n_groups, axis=self.settings["axis"], n_threads=self.n_threads,
            backend=self.backend)
        self._add(totals)
        return self

    def merge(self, other):
        """Add ``other``'s sums into this accumulator (in place); returns self."""
        if not isinstance(other, Accumulator):
            raise TypeError(f"can only merge an Accumulator, got {type(other).__name__}")
        for name, value in self.settings.items():
            if other.settings[name] != value:
                raise ValueError(f"cannot merge accumulators with different {name}: {value!r} and {other.settings[name]!r}")
        if other.totals is not None:
            self._add(other.totals)
        return self

    def _add(self, totals):
        if self.totals is None:
            self.totals = totals.copy()
        elif self.totals.shape != totals.shape:
            raise ValueError(f"the data has {totals.shape[0]} labels but the accumulator has {self.totals.shape[0]}")
        else:
            self.totals += totals

    def result(self):
        """The :class:`ScoreResult` of everything added so far."""
        if self.totals is None:
            raise ValueError("the accumulator has no data yet: call update() first")
        index_name = "group" if self.settings["n_groups"] else ("label" if self.settings["axis"] == 0 else None)
        return ScoreResult(self.totals.copy(), index_name)
