"""The report's second pass: per slot, the AUC histogram and the sums of Brier, threshold and
calibration-bin fields (kernels/c/histogram.h states them), and what the report computes from them.

Buckets: the float32 bits of v = min(q, 1-q) above 2^-24 keep ``bits`` mantissa bits, mirrored
for q >= 1/2, so a bucket is 2^-bits of the distance to 0 (or to 1) wide: fine where
click-through predictions crowd near 0. ``n_buckets = 2·(23·2^bits + 1)``; a slot holds
``16·n_buckets`` bytes (1.5 MB at the default 11 bits).

The pass runs in stripes of contiguous rows (``chunking``, a function of the shape only), each
with its own sums, added in stripe order: any thread count gives the same bits.
"""

import math

import numpy as np

from ._backends import load_backend, resolve_backend
from ._config import fork_safe_threads, launch_guard
from ._kernels import MODE_ALL, MODE_COLS, MODE_GROUPS, NAN_OMIT, HistOptions
from ._threads import resolve_num_threads

AUC_BITS = 11  # default mantissa bits of a bucket key (without groups): bounds ~5e-5 apart
GROUP_AUC_BITS = 7  # default with groups: 94 KB per group
N_BINS = 15  # default calibration bins of the ECE
N_EXTRA = 4  # NaN count, Σw·(q-y)², Σw·y and Σw·(1-y) at or above the cut; then 3 sums per bin
_LOW, _HALF = 0x33800000, 0x3F000000  # float32 bits of 2^-24 and 1/2
# Stripes (contiguous rows, one pass each, with their own sums, added in stripe order) hold at
# least STRIPE_ELEMENTS elements and are at most MAX_STRIPES; their histograms and extra sums
# take at most BUDGET bytes and, beyond one stripe, at most SCRATCH bytes per element.
STRIPE_ELEMENTS = 1 << 18
MAX_STRIPES = 16
BUDGET = 1 << 26
SCRATCH = 4


def n_buckets(bits):
    """Buckets of a histogram with ``bits`` mantissa bits (0: no histogram)."""
    return 0 if bits == 0 else 2 * ((_HALF - _LOW) >> (23 - bits)) + 2


def check_bits(bits):
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 0 <= bits <= 16:
        raise ValueError(f"auc_bits must be an integer in [0, 16], got {bits!r}")
    return int(bits)


def check_threshold(threshold):
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating, np.integer)) \
            or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a probability in [0, 1], got {threshold!r}")
    return float(threshold)


def check_bins(n_bins):
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    return int(n_bins)


def _cut(threshold, from_logits):
    """The threshold in the prediction's space: the probability, or its logit."""
    if not from_logits:
        return threshold
    with np.errstate(divide="ignore"):
        return float(np.log(threshold) - np.log1p(-threshold))


def _labels(y, is_half):
    """Labels as uint8, float32 or float64 (the kernel's kinds); 0/1 integers fit in a byte."""
    if is_half:
        return y.view(np.float16).astype(np.float32)
    if y.dtype in (np.uint8, np.float32, np.float64):
        return y
    return y.view(np.uint8) if y.dtype in (np.bool_, np.int8) else y.astype(np.uint8)


def _strided(array):
    """The array, copied when a stride is not a multiple of its item size (a field of a
    structured array): the kernels step through inputs in whole elements."""
    return np.ascontiguousarray(array) if any(s % array.itemsize for s in array.strides) else array


def chunking(n_rows, n_cols, n_slots, buckets, n_extra):
    """(rows per stripe, number of stripes): a function of the shape only, never of the threads."""
    per_stripe = n_slots * (2 * max(buckets, 1) + n_extra) * 8
    elements = n_rows * n_cols
    stripes = min(MAX_STRIPES, -(-elements // STRIPE_ELEMENTS), BUDGET // per_stripe,
                  SCRATCH * elements // per_stripe)
    rows = -(-n_rows // max(1, stripes))
    return rows, -(-n_rows // rows)


def _stripes(plan, bits, n_bins):
    """(rows per stripe, number of stripes, buckets, extra sums per slot) of a plan."""
    buckets = n_buckets(bits)
    n_extra = N_EXTRA + 3 * n_bins
    n_rows, n_cols = plan.p.shape
    return chunking(n_rows, n_cols, plan.n_slots, buckets, n_extra) + (buckets, n_extra)


def _run(plan, backend, n_threads, threshold, bits, n_bins, rows, n_stripes, hist, extra):
    """The kernel pass: stripe s of the plan's rows added into hist[s], extra[s]; returns the
    error bits of the counted elements."""
    backend = resolve_backend(backend)
    kernel = load_backend(backend)
    threads = fork_safe_threads(backend, min(resolve_num_threads(n_threads), n_stripes))
    flags = np.zeros(n_stripes, np.uint8)
    p = plan.p.view(np.float16).astype(np.float32) if plan.p_half else plan.p
    groups = plan.groups  # read in place when int32 or int64 and contiguous
    if groups.dtype not in (np.int32, np.int64) or not groups.flags.c_contiguous:
        groups = np.ascontiguousarray(groups, np.int64)
    buckets = n_buckets(bits)
    options = HistOptions(plan.mode, plan.from_logits, plan.nan_mode == NAN_OMIT,
                          _cut(threshold, plan.from_logits), 23 - bits if bits else 0,
                          (_HALF - _LOW) >> (23 - bits) if bits else 0, buckets, n_bins, rows)
    with launch_guard(backend):
        kernel.hist_pass(_strided(p), _strided(_labels(plan.y, plan.y_half)), _strided(plan.w),
                         _strided(plan.mask).view(np.uint8), groups, hist[:n_stripes],
                         extra[:n_stripes], flags, options, threads)
    return int(np.bitwise_or.reduce(flags))


def histogram_sums(plan, backend, n_threads, *, threshold, bits, n_bins, want_flags=False):
    """(hist (n_slots, n_buckets, 2) or None, extra (n_slots, N_EXTRA + 3·n_bins)) of a plan in
    mode MODE_ALL, MODE_COLS or MODE_GROUPS, and with ``want_flags`` the error bits (FLAG_LABEL,
    FLAG_PRED, FLAG_WEIGHT) of its counted elements: the pass checks no input, its caller does
    (the kernel pass) or reads these. Stripes are added in a fixed order: the sums are
    bit-identical for any thread count."""
    assert plan.mode in (MODE_ALL, MODE_COLS, MODE_GROUPS)
    rows, n_stripes, buckets, n_extra = _stripes(plan, bits, n_bins)
    if plan.p.shape[0] == 0:
        empty = (np.zeros((plan.n_slots, buckets, 2)) if buckets else None), np.zeros((plan.n_slots, n_extra))
        return empty + (0,) if want_flags else empty
    hist = np.zeros((n_stripes, plan.n_slots, max(buckets, 1), 2))
    extra = np.zeros((n_stripes, plan.n_slots, n_extra))
    flags = _run(plan, backend, n_threads, threshold, bits, n_bins, rows, n_stripes, hist, extra)
    for s in range(1, n_stripes):  # in stripe order
        extra[0] += extra[s]
        if buckets:
            hist[0] += hist[s]
    sums = (hist[0] if buckets else None), extra[0]
    return sums + (flags,) if want_flags else sums


def add_histogram(plan, backend, n_threads, *, threshold, bits, n_bins, hist, extra):
    """Add the pass's stripes into running per-stripe sums (an Accumulator's): stripe s into
    hist[s] (n_stripes, n_slots, n_buckets or 1, 2) and extra[s] (n_stripes, n_slots, n_extra),
    both grown with zero stripes to the stripes of this plan; returns (hist, extra). No zeroed
    scratch, no sum over stripes per call: sum_stripes adds them once, for the report. The
    stripes are a function of each call's shape: any thread count gives the same bits."""
    assert plan.mode in (MODE_ALL, MODE_COLS, MODE_GROUPS)
    rows, n_stripes, _, _ = _stripes(plan, bits, n_bins)
    if plan.p.shape[0] == 0:
        return hist, extra
    if n_stripes > len(extra):
        grow = n_stripes - len(extra)
        hist = np.concatenate([hist, np.zeros((grow,) + hist.shape[1:])])
        extra = np.concatenate([extra, np.zeros((grow,) + extra.shape[1:])])
    _run(plan, backend, n_threads, threshold, bits, n_bins, rows, n_stripes, hist, extra)
    return hist, extra


def sum_stripes(stripes):
    """The sum over axis 0 of per-stripe sums, in stripe order (a copy)."""
    total = stripes[0].copy()
    for s in range(1, len(stripes)):
        total += stripes[s]
    return total


def auc_from_histogram(hist):
    """(AUC, lower bound, upper bound, average precision) per slot of hist (n_slots, n_buckets, 2).

    With P_b, N_b the positive and negative weight of bucket b (ascending prediction) and N_<b the
    negative weight below it: AUC = Σ_b P_b·(N_<b + N_b/2) / (P·N), ties within a bucket counted
    half; the bounds count them 0 and 1, so they hold the exact AUC whatever the order inside a
    bucket. Average precision treats each bucket as one threshold (as scikit-learn treats ties).
    """
    pos, neg = hist[..., 0], hist[..., 1]
    total_pos, total_neg = pos.sum(axis=1), neg.sum(axis=1)
    below = np.cumsum(neg, axis=1) - neg
    low = (pos * below).sum(axis=1)
    ties = (pos * neg).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where((total_pos > 0) & (total_neg > 0), 1.0 / (total_pos * total_neg), np.nan)
        tp = np.cumsum(pos[:, ::-1], axis=1)  # descending prediction: weight at or above
        fp = np.cumsum(neg[:, ::-1], axis=1)
        precision = np.where(tp + fp > 0, tp / np.where(tp + fp > 0, tp + fp, 1.0), 0.0)
        ap = (pos[:, ::-1] * precision).sum(axis=1) / np.where(total_pos > 0, total_pos, np.nan)
    return (low + 0.5 * ties) * scale, low * scale, (low + ties) * scale, ap


def one_slot_fields(extra, n_bins):
    """extra_fields of a single slot in Python floats: the same values at a fraction of the cost
    (the sums over bins by NumPy, as there; the rest scalar IEEE operations)."""
    row = extra[0]
    bins = row[N_EXTRA:]
    weight, weighted_y = float(bins[0::3].sum()), float(bins[1::3].sum())
    nan, tp, fp = row[0] > 0, float(row[2]), float(row[3])
    fn, tn = weighted_y - tp, (weight - weighted_y) - fp
    valid = weight > 0 and not nan

    def ratio(numerator, denominator, empty=0.0):
        if not valid:
            return math.nan
        return numerator / denominator if denominator > 0 else empty

    fields = {
        "brier": ratio(float(row[1]), weight, math.nan),
        "ece": ratio(float(np.abs(bins[1::3] - bins[2::3]).sum()), weight, math.nan),
        "precision": ratio(tp, tp + fp), "recall": ratio(tp, tp + fn),
        "f1": ratio(2 * tp, 2 * tp + fp + fn), "accuracy": ratio(tp + tn, weight, math.nan),
    }
    for name, value in (("tp", tp), ("fp", fp), ("tn", tn), ("fn", fn)):
        fields[name] = math.nan if nan else value
    return fields


def extra_fields(extra, n_bins):
    """The Brier, ECE and threshold fields per slot from the extra sums (see N_EXTRA)."""
    nan = extra[:, 0] > 0
    bins = extra[:, N_EXTRA:].reshape(len(extra), n_bins, 3)
    weight, weighted_y, weighted_q = bins[..., 0].sum(axis=1), bins[..., 1].sum(axis=1), bins[..., 2].sum(axis=1)
    tp, fp = extra[:, 2], extra[:, 3]
    fn, tn = weighted_y - tp, (weight - weighted_y) - fp

    def ratio(numerator, denominator, empty=0.0):
        """numerator / denominator, ``empty`` (scikit-learn's zero_division=0) where it is 0;
        NaN for a slot without weight or with NaN elements."""
        with np.errstate(invalid="ignore", divide="ignore"):
            value = np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), empty)
        return np.where((weight > 0) & ~nan, value, np.nan)

    fields = {
        "brier": ratio(extra[:, 1], weight, np.nan),
        "ece": ratio(np.abs(bins[..., 1] - bins[..., 2]).sum(axis=1), weight, np.nan),
        "tp": tp, "fp": fp, "tn": tn, "fn": fn,
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "accuracy": ratio(tp + tn, weight, np.nan),
    }
    for name in ("tp", "fp", "tn", "fn"):
        fields[name] = np.where(nan, np.nan, fields[name])
    return fields
