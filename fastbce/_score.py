"""The scoring report (:func:`score`) and its mergeable streaming form (:class:`Accumulator`).

Both rest on the same kernel pass as :func:`fastbce.bce`, which sums per slot (overall, per group
or per label) seven float64 statistics: Σw·l, Σw, count, Σw·y, Σw·q, Σw·y·(-log q) and
Σw·(1-y)·(-log(1-q)), where q is the clipped probability (or σ(x) from logits). A second pass
(fastbce/_histogram.py) adds the Brier, calibration-bin and threshold sums and, in the
Accumulator, the AUC histogram. Every reported figure comes from sums that merge by addition;
:func:`score` takes the exact ROC-AUC and average precision from one sort (fastbce/_metrics.py).
"""

import math

import numpy as np

from ._engine import run_pass
from ._groups import factorize
from ._histogram import (
    AUC_BITS,
    GROUP_AUC_BITS,
    N_BINS,
    add_histogram,
    auc_from_histogram,
    check_bins,
    check_bits,
    check_threshold,
    extra_fields,
    histogram_sums,
    one_slot_fields,
    sum_stripes,
)
from ._kernels import MODE_ALL, MODE_COLS, MODE_GROUPS, MODE_ROWS
from ._plan import make_plan

N_STATS = 7
LOSS, WEIGHT, COUNT, WEIGHTED_Y, WEIGHTED_Q, POSITIVE, NEGATIVE = range(N_STATS)
SUM_FIELDS = ("count", "weight_sum", "positive_rate", "mean_prediction", "log_loss",
              "normalized_entropy", "calibration", "log_loss_positives", "log_loss_negatives")
METRIC_FIELDS = ("roc_auc", "roc_auc_lower", "roc_auc_upper", "average_precision", "brier", "ece",
                 "tp", "fp", "tn", "fn", "precision", "recall", "f1", "accuracy")
FIELDS = SUM_FIELDS + METRIC_FIELDS


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

    From the kernel pass (``SUM_FIELDS``):

    - ``count``: counted elements (not masked or omitted); ``weight_sum``: Σw
    - ``positive_rate``: Σw·y / Σw; ``mean_prediction``: Σw·q / Σw
    - ``log_loss``: Σw·l / Σw; ``normalized_entropy``: log_loss / entropy(positive_rate)
    - ``calibration``: mean_prediction / positive_rate
    - ``log_loss_positives``: Σw·y·(-log q) / Σw·y; ``log_loss_negatives``: Σw·(1-y)·(-log(1-q)) / Σw·(1-y)

    Ranking, calibration and threshold fields (``METRIC_FIELDS``; q unclipped here):

    - ``roc_auc``, ``average_precision``: scikit-learn's ``roc_auc_score`` and
      ``average_precision_score`` (exact in :func:`score`; from the histogram in an Accumulator,
      where ``roc_auc_lower`` <= exact AUC <= ``roc_auc_upper``; equal to roc_auc when exact)
    - ``brier``: Σw·(q - y)² / Σw; ``ece``: Σ_b |Σw·y - Σw·q|_b / Σw over equal-width bins
      [b/B, (b+1)/B) of q (B = n_bins, 15 by default; q = 1 in the last)
    - ``tp, fp, tn, fn``: weighted confusion counts, predicted positive where q >= threshold
      (from logits: x >= logit(threshold)); ``precision`` tp/(tp+fp), ``recall`` tp/(tp+fn),
      ``f1`` 2tp/(2tp+fp+fn), ``accuracy`` (tp+tn)/Σw, 0 where the denominator is 0
      (scikit-learn's ``zero_division=0``, without its warning)

    A ratio whose denominator is 0 (no weight, no positives, a constant label) is NaN; so are the
    ranking fields of a slot with one class, and every metric field of a slot with NaN under
    nan_policy="propagate" or of a report with ``sums_only=True``. ``labels``: the group labels
    (labelled groups), else None.
    """

    hist = None  # an Accumulator's report: the AUC histogram per slot (n_slots, n_buckets, 2)
    extra = None  # and the extra sums (fastbce/_histogram.py), for plots

    def __init__(self, totals, index_name=None, metrics=None, labels=None):
        self.totals = totals  # (n_slots, 7) float64 sums
        self.index_name = index_name  # None (overall), "group" or "label"
        self.labels = labels
        metrics = metrics or {}
        if index_name is None:  # one slot: in Python floats, the same values at a tenth of the cost
            self._set_overall(*totals[0].tolist())
            for name in METRIC_FIELDS:
                value = metrics.get(name, math.nan)
                setattr(self, name, value if type(value) is float
                        else float(np.asarray(value, np.float64).reshape(-1)[0]))
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
        for name in METRIC_FIELDS:
            values[name] = np.asarray(metrics.get(name, np.full(len(totals), np.nan)), np.float64)
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
        """A pandas Series (overall) or DataFrame with one row per group / label, indexed by the
        group labels when the groups were labelled."""
        import pandas as pd

        if self.index_name is None:
            return pd.Series(self.to_dict())
        index = None if self.labels is None else pd.Index(self.labels, name=self.index_name)
        return pd.DataFrame(self.to_dict(), index=index).rename_axis(self.index_name)

    def __repr__(self):
        if self.index_name is None:
            lines = [f"  {name:<20} {getattr(self, name):.6g}" for name in FIELDS]
            return "ScoreResult(\n" + "\n".join(lines) + "\n)"
        keys = range(len(self.totals)) if self.labels is None else self.labels
        header = f"  {self.index_name:>6} " + " ".join(f"{name[:18]:>18}" for name in FIELDS)
        rows = [f"  {str(key)[:6]:>6} " + " ".join(f"{getattr(self, name)[i]:>18.6g}" for name in FIELDS)
                for i, key in zip(range(min(len(self.totals), 20)), keys)]
        more = [f"  ... {len(self.totals) - 20} more"] if len(self.totals) > 20 else []
        return "ScoreResult(\n" + "\n".join([header] + rows + more) + "\n)"


_INDEX_NAMES = {MODE_ALL: None, MODE_GROUPS: "group", MODE_COLS: "label", MODE_ROWS: "sample"}


def _plan_of(y_true, y_pred, *, from_logits, eps, sample_weight, mask, nan_policy, groups, n_groups,
             axis):
    return make_plan(y_true, y_pred, from_logits=from_logits, eps=eps, sample_weight=sample_weight,
                     pos_weight=None, label_smoothing=0.0, mask=mask, nan_policy=nan_policy,
                     reduction="sum", axis=axis, groups=groups, n_groups=n_groups)


def _constant(view, value):
    """Whether a broadcast view repeats one scalar ``value`` (an argument that was not given)."""
    return all(stride == 0 for stride in view.strides) and bool(view.flat[0] == value)


def _exact_ranking(plan, n_threads, backend):
    """(ROC-AUC, AP) per slot from one sort of each slot (fastbce/_metrics.py). NaN with soft
    labels, for which the ranking metrics are not defined."""
    from ._metrics import ranking

    p = plan.p.view(np.float16) if plan.p_half else plan.p
    y = plan.y.view(np.float16) if plan.y_half else plan.y
    grouped = plan.mode == MODE_GROUPS
    try:
        auc, ap = ranking(
            y, p, sample_weight=None if _constant(plan.w, 1.0) else plan.w,
            mask=None if _constant(plan.mask, True) else plan.mask,
            nan_policy={0: "propagate", 1: "raise", 2: "omit"}[plan.nan_mode],
            from_logits=plan.from_logits, axis=0 if plan.mode == MODE_COLS else None,
            groups=plan.groups if grouped else None, n_groups=plan.n_slots if grouped else None,
            n_threads=n_threads, backend=backend)
    except ValueError as error:
        if "hard labels" not in str(error):
            raise
        auc = ap = np.full(plan.n_slots, np.nan)
    return np.atleast_1d(auc), np.atleast_1d(ap)


def _metrics(hist, extra, n_bins, exact=None, overall=False):
    """The METRIC_FIELDS per slot: the ranking fields from ``exact`` (AUC, AP) or the histogram;
    ``overall``: the extra sums' fields of the one slot in Python floats."""
    fields = one_slot_fields(extra, n_bins) if overall else extra_fields(extra, n_bins)
    if exact is not None:
        auc, ap = exact
        fields.update(roc_auc=auc, roc_auc_lower=auc, roc_auc_upper=auc, average_precision=ap)
    elif hist is not None:
        nan = extra[:, 0] > 0
        for name, value in zip(("roc_auc", "roc_auc_lower", "roc_auc_upper", "average_precision"),
                               auc_from_histogram(hist)):
            fields[name] = np.where(nan, np.nan, value)
    return fields


def score(y_true, y_pred, *, from_logits=False, eps=1e-7, sample_weight=None, mask=None,
          nan_policy="propagate", groups=None, n_groups=None, axis=None, threshold=0.5,
          n_bins=N_BINS, sums_only=False, n_threads=None, backend=None):
    """Scoring report: overall, per group (``groups``) or per label (``axis=0``).

    Arguments mean what they mean for :func:`fastbce.bce` (``axis=1`` gives one entry per sample,
    with the kernel-pass fields only). ``threshold``: the probability at or above which a
    prediction is positive (from logits the same cut, its logit); ``n_bins``: the ECE's bins.
    The ROC-AUC and average precision are exact (one sort per slot, :func:`fastbce.roc_auc`);
    Brier, ECE and the threshold fields take a second pass. ``sums_only=True``: the one kernel
    pass alone, as fast as :func:`fastbce.bce`; the METRIC_FIELDS are then NaN. Returns a
    :class:`ScoreResult`.
    """
    threshold, n_bins = check_threshold(threshold), check_bins(n_bins)
    plan = _plan_of(y_true, y_pred, from_logits=from_logits, eps=eps, sample_weight=sample_weight,
                    mask=mask, nan_policy=nan_policy, groups=groups, n_groups=n_groups, axis=axis)
    totals = run_pass(plan, backend, n_threads, n_stats=N_STATS)[0]
    metrics = None
    if not sums_only and plan.mode != MODE_ROWS:
        _, extra = histogram_sums(plan, backend, n_threads, threshold=threshold, bits=0, n_bins=n_bins)
        metrics = _metrics(None, extra, n_bins, _exact_ranking(plan, n_threads, backend),
                           overall=plan.mode == MODE_ALL)
    return ScoreResult(totals, _INDEX_NAMES[plan.mode], metrics, plan.group_labels)


def _n_samples(y_pred):
    try:
        return len(y_pred)
    except TypeError:  # a scalar: the plan names the problem
        return None


class Accumulator:
    """The streaming, mergeable form of :func:`score`.

    ``update`` adds a chunk of data (an empty one changes nothing), ``merge`` adds another
    accumulator's sums, ``result`` gives the :class:`ScoreResult`. Sums are float64 and only ever
    added, so any chunking and any merge order give the one-call result to about 1e-15 relative,
    and the same chunks merged in the same order give bit-identical results. Accumulators pickle.

    Groups: with ``n_groups`` every update takes ``groups`` (ids in [0, n_groups)); without it,
    groups given to the first update make the accumulator labelled: any ids (strings,
    categoricals, integers of any range) get one slot per label seen, across updates and merges
    (merged by label). With ``axis=0`` the report is per label (2-D input, the number of labels
    is fixed by the first update).

    The ROC-AUC comes from a histogram per slot of Σw·y and Σw·(1-y) over ``2·(23·2^auc_bits + 1)``
    buckets of the prediction (fastbce/_histogram.py: 2^-auc_bits relative to the distance to 0
    or 1), with ``roc_auc_lower`` and ``roc_auc_upper`` its exact bounds. Memory per slot: 16 bytes
    per bucket, 1.5 MB at the default 11 bits (7 bits, 94 KB, with groups), times the stripes of
    the largest update (fastbce/_histogram.py: one per 2^18 elements, at most 16 and 64 MB in
    all); ``auc_bits=0``: no histogram (ranking fields NaN). Fewer bits: a histogram closer to the core (faster updates,
    benchmarks/README.md), wider bounds (each bit less doubles the buckets' width).
    ``threshold`` and ``n_bins`` as :func:`score`.
    """

    def __init__(self, *, from_logits=False, eps=1e-7, n_groups=None, axis=None,
                 nan_policy="propagate", threshold=0.5, n_bins=N_BINS, auc_bits=None,
                 n_threads=None, backend=None):
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
                         "nan_policy": nan_policy, "threshold": check_threshold(threshold),
                         "n_bins": check_bins(n_bins),
                         "auc_bits": None if auc_bits is None else check_bits(auc_bits)}
        self.n_threads = n_threads
        self.backend = backend
        self.labels = None  # labelled groups: the label of each slot, in order of first sight
        # [totals (n_slots, 7), hist (n_stripes, n_slots, n_buckets, 2) or None, extra
        # (n_stripes, n_slots, n_extra)]: the histogram pass adds stripe s of every update into
        # stripe s (fastbce/_histogram.py: add_histogram), result() adds the stripes up
        self.state = None
        if axis is None and n_groups is None:
            pass  # overall or labelled: known at the first update
        elif n_groups is not None:
            self.state = self._empty(n_groups, GROUP_AUC_BITS)

    @property
    def totals(self):
        """The (n_slots, 7) kernel-pass sums, or None before the first update."""
        return None if self.state is None else self.state[0]

    def _bits(self, default):
        bits = self.settings["auc_bits"]
        return default if bits is None else bits

    def _empty(self, n_slots, default_bits, n_stripes=1):
        from ._histogram import N_EXTRA, n_buckets

        buckets = n_buckets(self._bits(default_bits))
        return [np.zeros((n_slots, N_STATS)),
                np.zeros((n_stripes, n_slots, buckets, 2)) if buckets else None,
                np.zeros((n_stripes, n_slots, N_EXTRA + 3 * self.settings["n_bins"]))]

    def _grow_stripes(self, n_stripes):
        """Zero stripes appended to the state's histogram and extra sums, up to n_stripes."""
        grow = n_stripes - len(self.state[2])
        if grow > 0:
            self.state[1:] = [None if a is None else np.concatenate([a, np.zeros((grow,) + a.shape[1:])])
                              for a in self.state[1:]]

    def update(self, y_true, y_pred, sample_weight=None, groups=None, mask=None):
        """Add a chunk of data; returns self. An empty chunk is a no-op."""
        n_groups = self.settings["n_groups"]
        labelled = self.labels is not None or (n_groups is None and groups is not None
                                                and self.state is None and self.settings["axis"] is None)
        if not labelled and (groups is None) != (n_groups is None):
            raise ValueError("groups must be given exactly when the Accumulator has n_groups or "
                             f"labelled groups (n_groups={n_groups}, groups "
                             f"{'missing' if groups is None else 'given'})")
        if labelled and groups is None:
            raise ValueError("this Accumulator has labelled groups: every update takes groups")
        if _n_samples(y_pred) == 0:
            return self
        slots = None
        if labelled:
            ids, n_batch, batch_labels = factorize(groups, None, y_pred, labelled=True)
            if not batch_labels:  # every group id is null: nothing is counted
                return self
            slots = self._slots(batch_labels)
            groups, n_groups = ids, n_batch
        settings = self.settings
        plan = _plan_of(y_true, y_pred, from_logits=settings["from_logits"], eps=settings["eps"],
                        sample_weight=sample_weight, mask=mask, nan_policy=settings["nan_policy"],
                        groups=groups, n_groups=n_groups, axis=settings["axis"])
        if slots is None and self.state is not None and len(self.state[0]) != plan.n_slots:
            raise ValueError(f"the data has {plan.n_slots} labels but the accumulator has {len(self.state[0])}")
        totals = run_pass(plan, self.backend, self.n_threads, n_stats=N_STATS)[0]
        default_bits = AUC_BITS if plan.mode != MODE_GROUPS else GROUP_AUC_BITS
        bits, threshold, n_bins = self._bits(default_bits), settings["threshold"], settings["n_bins"]
        if slots is not None:  # the batch's slots are not the accumulator's: sums, then added
            hist, extra = histogram_sums(plan, self.backend, self.n_threads, threshold=threshold,
                                         bits=bits, n_bins=n_bins)
            self._add([totals, None if hist is None else hist[None], extra[None]], slots, default_bits)
            return self
        if self.state is None:
            self.state = self._empty(plan.n_slots, default_bits)
        hist, extra = self.state[1], self.state[2]
        scratch = hist is None  # no AUC histogram: the kernel still takes one bucket per slot
        if scratch:
            hist = np.zeros(extra.shape[:2] + (1, 2))
        hist, extra = add_histogram(plan, self.backend, self.n_threads, threshold=threshold, bits=bits,
                                    n_bins=n_bins, hist=hist, extra=extra)
        self.state[1:] = [None if scratch else hist, extra]
        self.state[0] += totals
        return self

    def merge(self, other):
        """Add ``other``'s sums into this accumulator (in place, labelled groups by label);
        returns self."""
        if not isinstance(other, Accumulator):
            raise TypeError(f"can only merge an Accumulator, got {type(other).__name__}")
        for name, value in self.settings.items():
            if other.settings[name] != value:
                raise ValueError(f"cannot merge accumulators with different {name}: {value!r} and {other.settings[name]!r}")
        if other.state is None:
            return self
        if (self.labels is None) != (other.labels is None) and self.state is not None:
            raise ValueError("cannot merge an accumulator with labelled groups and one without")
        slots = None
        if other.labels is not None:
            slots = self._slots(other.labels)
        self._add(other.state, slots, GROUP_AUC_BITS if other.labels is not None else AUC_BITS)
        return self

    def _slots(self, labels):
        """The accumulator's slot of each label, new labels appended."""
        if self.labels is None:
            self.labels, self._slot_of = [], {}
        for label in labels:
            if label not in self._slot_of:
                self._slot_of[label] = len(self.labels)
                self.labels.append(label)
        return np.array([self._slot_of[label] for label in labels], np.intp)

    def _add(self, state, slots, default_bits):
        """Add a state's per-slot sums (into the accumulator's ``slots``, when labelled), stripe
        by stripe."""
        totals, hist, extra = state
        n_stripes = len(extra)
        if slots is not None:
            n_slots = len(self.labels)
            if self.state is None:
                self.state = self._empty(n_slots, default_bits, n_stripes)
            grow = n_slots - len(self.state[0])
            if grow:
                more = self._empty(grow, default_bits, len(self.state[2]))
                self.state = [None if a is None else np.concatenate([a, b], axis=min(i, 1))
                              for i, (a, b) in enumerate(zip(self.state, more))]
            self._grow_stripes(n_stripes)
            self.state[0][slots] += totals
            for mine, theirs in zip(self.state[1:], (hist, extra)):
                if mine is not None:
                    mine[:n_stripes, slots] += theirs
            return
        if self.state is None:
            self.state = [None if a is None else a.copy() for a in state]
        elif len(self.state[0]) != len(totals):
            raise ValueError(f"the data has {len(totals)} labels but the accumulator has {len(self.state[0])}")
        else:
            self._grow_stripes(n_stripes)
            self.state[0] += totals
            for mine, theirs in zip(self.state[1:], (hist, extra)):
                if mine is not None:
                    mine[:n_stripes] += theirs

    def result(self):
        """The :class:`ScoreResult` of everything added so far."""
        if self.state is None and (self.settings["axis"] == 0 or self.labels is not None):
            raise ValueError("the accumulator has no data yet: call update() first")
        state = self.state or self._empty(1, AUC_BITS)  # an overall report of nothing: NaN
        totals, hist, extra = state[0].copy(), None if state[1] is None else sum_stripes(state[1]), sum_stripes(state[2])
        labels = None if self.labels is None else list(self.labels)
        if labels is not None:  # sorted labels, as score() gives them (when they sort)
            try:
                order = sorted(range(len(labels)), key=labels.__getitem__)
            except TypeError:
                order = list(range(len(labels)))
            labels = [labels[i] for i in order]
            totals, extra = totals[order], extra[order]
            hist = None if hist is None else hist[order]
        grouped = self.settings["n_groups"] or labels is not None
        index_name = "group" if grouped else ("label" if self.settings["axis"] == 0 else None)
        return result_of([totals, hist, extra], self.settings["n_bins"], index_name, labels)


def result_of(state, n_bins, index_name=None, labels=None):
    """The :class:`ScoreResult` of an Accumulator's state [totals, hist, extra] (per slot sums; the
    sums over slots give the overall report)."""
    totals, hist, extra = state
    result = ScoreResult(totals, index_name, _metrics(hist, extra, n_bins), labels)
    result.hist, result.extra = hist, extra
    return result
