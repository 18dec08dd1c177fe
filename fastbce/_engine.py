"""The engine under every public function: cut the rows into chunks and run one kernel pass.

:func:`run_pass` runs a checked :class:`~fastbce._plan.Plan` on a backend and returns the float64
sums per slot, the element losses or the gradient; :func:`value_of` turns the sums into what
:func:`fastbce.bce` returns. :mod:`fastbce._score` and :mod:`fastbce.dask` run passes through it too.
"""

import numpy as np

from ._backends import load_backend, resolve_backend
from ._config import fork_safe_threads, launch_guard
from ._elements import check_out, new_output, run_element_pass
from ._fastpath import fast_pass_arguments, run_fast_pass
from ._kernels import (
    FLAG_GROUP,
    FLAG_LABEL,
    FLAG_NAN,
    FLAG_POS_WEIGHT,
    FLAG_PRED,
    FLAG_WEIGHT,
    ELEMENT_LOSS,
    MODE_ALL,
    MODE_COLS,
    MODE_GROUPS,
    MODE_ROWS,
    NAN_OMIT,
    PassOptions,
)
from ._threads import resolve_num_threads

# Rows are cut into chunks of about this many elements, whatever the thread count.
CHUNK_ELEMENTS = 1 << 15
# Upper bound on the per-chunk partial sums of per-column / per-group reductions, in bytes.
PARTIAL_SUMS_BUDGET = 1 << 25
# A chunk by group has at least this many elements per group: its partial sums (16 bytes per
# group) stay below 1/128 of the 8 bytes per element it reads.
GROUP_CHUNK_ELEMENTS_PER_GROUP = 256

FLAG_MESSAGES = (
    (FLAG_LABEL, "y_true has values outside [0, 1] (integer labels must be 0 or 1)"),
    (FLAG_PRED, "y_pred has probabilities outside [0, 1] (pass from_logits=True for logits)"),
    (FLAG_NAN, "y_true or y_pred contains NaN and nan_policy='raise'"),
    (FLAG_WEIGHT, "sample_weight has negative, NaN or infinite values"),
    (FLAG_POS_WEIGHT, "pos_weight has negative, NaN or infinite values"),
    (FLAG_GROUP, "groups has ids outside [0, n_groups)"),
)


def chunking(n_rows, n_cols, mode, n_slots):
    """(rows per chunk, number of chunks): a function of the shape only, never of the threads."""
    rows = max(1, -(-CHUNK_ELEMENTS // n_cols))
    if mode == MODE_GROUPS:
        rows = max(rows, -(-GROUP_CHUNK_ELEMENTS_PER_GROUP * n_slots // n_cols))
    if mode in (MODE_COLS, MODE_GROUPS):
        max_chunks = max(1, PARTIAL_SUMS_BUDGET // (16 * n_slots))
        rows = max(rows, -(-n_rows // max_chunks))
    return rows, -(-n_rows // rows)


def reciprocal(total):
    """1/total, and 0 where the total weight is 0 (those means are NaN; their gradient is 0).
    A subnormal total (its reciprocal overflows) raises: w/Σw would come out inf or NaN."""
    total = np.asarray(total, dtype=np.float64)
    tiny = np.finfo(np.float64).tiny
    if ((total > 0) & (total < tiny)).any():
        raise ValueError(f"sample_weight: a reduced slice has a total weight below {tiny:.3g} (subnormal), "
                         "so the gradient of its mean, w/Σw, cannot be computed in float64; scale the "
                         "weights up (a mean does not change when all its weights are multiplied by "
                         "one factor)")
    with np.errstate(divide="ignore"):
        return np.where(total > 0, 1.0 / total, 0.0)


def _has_nan(array, is_half):
    """Whether an input array (float16 viewed as uint16 when is_half) holds a NaN: one reduction,
    no temporary (min propagates NaN)."""
    if is_half:
        array = array.view(np.float16)
    return array.dtype.kind == "f" and bool(np.isnan(array.min()))


def _grad_scales(plan, totals=None):
    """(row scale, column scale) of the gradient: 1 for sums, 1/Σw over the reduced axis for means.

    Σw comes from the weights and mask alone unless nan_policy="omit" (then NaNs change it), in
    which case the caller passes the kernel's ``totals`` and rescales after the pass.
    """
    ones = np.ones(1)
    if plan.reduction != "mean":
        return ones, ones
    if totals is not None:
        weight_sum = totals[:, 1]
    elif not plan.has_weights:
        n_rows, n_cols = plan.p.shape
        weight_sum = {MODE_ALL: n_rows * n_cols, MODE_COLS: n_rows, MODE_ROWS: n_cols}[plan.mode]
    else:
        reduce_axis = {MODE_ALL: None, MODE_COLS: 0, MODE_ROWS: 1}[plan.mode]
        weight_sum = np.sum(plan.w, axis=reduce_axis, where=plan.mask, dtype=np.float64)
    scale = np.atleast_1d(reciprocal(weight_sum))
    return (scale, ones) if plan.mode == MODE_ROWS else (ones, scale)


def run_pass(plan, backend, n_threads, *, want_grad=False, out=None, n_stats=2, want_value=True):
    """Run one kernel pass. Returns (totals, element losses or None, gradient or None); totals has
    one row per slot: Σw·l, Σw, then (n_stats=7) count, Σw·y, Σw·q, Σw·positive, Σw·negative part.
    With want_value=False the caller needs only the gradient and Σw (the fast path skips the loss)."""
    backend = resolve_backend(backend)
    if plan.reduction == "none" and not want_grad and n_stats == 2:
        loss = new_output(plan)
        return None, run_element_pass(plan, backend, n_threads, ELEMENT_LOSS, [loss], FLAG_MESSAGES)[0], None
    kernel = load_backend(backend)
    threads = resolve_num_threads(n_threads)
    n_rows, n_cols = plan.p.shape
    rows_per_chunk, n_chunks = chunking(n_rows, n_cols, plan.mode, plan.n_slots)
    threads = min(threads, n_chunks)  # a small input runs on one thread: no wake-up cost
    threads = fork_safe_threads(backend, threads)  # GNU OpenMP after a fork (fastbce/_config.py)
    loss_out = new_output(plan) if plan.reduction == "none" else None
    grad = check_out(out, plan) if want_grad else None
    fast = fast_pass_arguments(plan, kernel, n_stats, grad)  # fastbce/_fastpath.py

    def kernel_pass(row_scale, col_scale):
        # written here, not calloc'ed: the kernel's first access to a calloc'ed page is a read (+=),
        # which maps the shared zero page, and its first write then a copy with a TLB shootdown
        # that interrupts every thread
        sums = np.empty((1 if plan.mode == MODE_ROWS else n_chunks, plan.n_slots, n_stats))
        sums.fill(0.0)
        flags = np.zeros(n_chunks, np.uint8)
        # a lock where Numba's threading layer is unsafe for concurrent launches (fastbce/_config.py)
        with launch_guard(backend):
            if fast is not None:
                run_fast_pass(kernel, fast, rows_per_chunk, n_cols, sums, flags,
                              None if grad is None else plan.as_2d(grad), row_scale, col_scale, want_value,
                              threads)
            else:
                kernel.bce_pass(
                    plan.y, plan.p, plan.w, plan.pw, plan.mask, plan.groups, row_scale, col_scale, sums,
                    flags, None if loss_out is None else plan.as_2d(loss_out),
                    None if grad is None else plan.as_2d(grad),
                    PassOptions(plan.y_half, plan.p_half, plan.from_logits, *plan.clip, plan.smoothing,
                                plan.nan_mode, plan.gamma, plan.alpha, plan.mode, rows_per_chunk),
                    threads)
        bad = int(np.bitwise_or.reduce(flags))
        if bad:
            raise ValueError("; ".join(message for bit, message in FLAG_MESSAGES if bad & bit))
        # Pairwise sum over the chunks (a contiguous axis): fixed order, so bit-identical for any
        # thread count, and a rounding error that grows with log(chunks) rather than with their number.
        return np.ascontiguousarray(np.moveaxis(sums, 0, -1)).sum(axis=-1)

    row_scale, col_scale = _grad_scales(plan) if want_grad else (np.ones(1), np.ones(1))
    totals = kernel_pass(row_scale, col_scale)
    if want_grad and plan.reduction == "mean" and plan.nan_mode == NAN_OMIT:
        # Σw of what nan_policy="omit" keeps is known only after the pass: where NaNs were left out,
        # the gradient is computed again with 1/Σw of the kept elements, with one rounding as under
        # the other policies (correcting it by the ratio of the two sums could overflow or lose bits
        # in subnormals)
        kept_rows, kept_cols = _grad_scales(plan, totals)
        changed = (kept_rows != row_scale).any() or (kept_cols != col_scale).any()
        # the kernel sums float64 weights in another order: Σw can differ in its last bits
        # without any NaN, and then the first pass stands
        if changed and (_has_nan(plan.p, plan.p_half) or _has_nan(plan.y, plan.y_half)):
            totals = kernel_pass(kept_rows, kept_cols)
    if loss_out is not None and want_value:
        # the element losses bce(reduction="none") gives, bit for bit (an element pass)
        run_element_pass(plan, backend, n_threads, ELEMENT_LOSS, [loss_out], FLAG_MESSAGES)
    return totals, loss_out, grad


def value_of(plan, totals, loss_out):
    """What bce returns: the element losses, or the sum / weighted mean per slot."""
    if loss_out is not None:
        return loss_out
    if plan.reduction == "sum":
        values = totals[:, 0]
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            values = totals[:, 0] / totals[:, 1]
    return float(values[0]) if plan.mode == MODE_ALL else values


def run_elements(plan, backend, n_threads, output, outs):
    """An element pass (fastbce/_elements.py) reporting this module's error messages."""
    return run_element_pass(plan, backend, n_threads, output, outs, FLAG_MESSAGES)
