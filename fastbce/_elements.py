"""Element passes: per-element outputs with no reduction (losses for ``reduction="none"``, the
gradient and Hessian of :func:`fastbce.bce_grad_hess`), on each backend's ``element_pass``."""

import numpy as np

from ._backends import load_backend, resolve_backend
from ._config import fork_safe_threads, launch_guard
from ._kernels import (
    ELEMENT_CHUNK,
    ELEMENT_GRAD_HESS,
    K_F16,
    K_F32,
    K_F64,
    K_NONE,
    K_U8,
    ElementOptions,
)
from ._threads import resolve_num_threads


def new_output(plan):
    """An element output in y_pred's memory order, as np.empty_like gives."""
    fortran = plan.p.flags.f_contiguous and not plan.p.flags.c_contiguous
    return np.empty(plan.shape, plan.out_dtype, order="F" if fortran else "C")


def check_out(out, plan, name="out"):
    """``out`` if it fits the plan's element output (shape, dtype, writable), else a new array."""
    if out is None:
        return new_output(plan)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(out).__name__}")
    if out.shape != plan.shape or out.dtype != plan.out_dtype:
        raise ValueError(f"{name} must have shape {plan.shape} and dtype {plan.out_dtype}, "
                         f"got shape {out.shape} and dtype {out.dtype}")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    return out


def _operand(view, kind, writeable=False):
    """(flat, offset, kind, rs, cs) of a 2-D view: element (i, j) is flat[offset + i·rs + j·cs]
    (strides in elements, 0 where broadcast; a lone row or column's unused stride made
    consistent), flat a 1-D contiguous view of the memory the view spans."""
    item = view.itemsize
    if any(s % item for s in view.strides):
        view = np.ascontiguousarray(view)
    rows, cols = view.shape
    rs, cs = (s // item for s in view.strides)
    low = min(0, (rows - 1) * rs) + min(0, (cols - 1) * cs)
    span = 1 + (rows - 1) * abs(rs) + (cols - 1) * abs(cs)
    corner = view[rows - 1 if rs < 0 else 0:, cols - 1 if cs < 0 else 0:]
    flat = np.lib.stride_tricks.as_strided(corner, (span,), (item,), writeable=writeable)
    if cols == 1:
        cs = rs
    if rows == 1:
        rs = cs * cols
    return flat, -low, kind, rs, cs


def _is_constant(view, value):
    return not any(view.strides) and view.flat[0] == value


def _label_operand(y, is_half):
    if is_half:
        return _operand(y, K_F16)
    if y.dtype.itemsize == 1 and y.dtype.kind in "biu":
        return _operand(y.view(np.uint8), K_U8)
    if y.dtype in (np.float32, np.float64):
        return _operand(y, K_F32 if y.dtype == np.float32 else K_F64)
    return _operand(y.astype(np.float64), K_F64)  # other integer labels: a float64 copy


def _float_kind(view):
    return K_F32 if view.dtype == np.float32 else K_F64


def run_element_pass(plan, backend, n_threads, output, outs, flag_messages):
    """Write the element outputs ``outs`` (arrays of y_pred's shape) of one pass; raise ValueError
    with the messages of the error flags the kernel reports."""
    backend = resolve_backend(backend)
    kernel = load_backend(backend)
    arrays = [plan.y, plan.p, plan.w, plan.pw, plan.mask] + [plan.as_2d(o) for o in outs]
    if not arrays[1].flags.c_contiguous and arrays[1].T.flags.c_contiguous:
        # Fortran order: an element pass does not care about the order, so it runs on the
        # transposed (C-ordered) views of every operand
        arrays = [a.T for a in arrays]
    y, p, w, pw, mask, *out_views = arrays
    absent = (None, 0, K_NONE, 0, 0)
    operands = (
        _label_operand(y, plan.y_half),
        _operand(p, K_F16 if plan.p_half else _float_kind(p)),
        absent if _is_constant(w, 1.0) else _operand(w, _float_kind(w)),
        absent if _is_constant(pw, 1.0) else _operand(pw, _float_kind(pw)),
        absent if _is_constant(mask, True) else _operand(mask.view(np.uint8), K_U8),
    )
    outputs = [_operand(o, _float_kind(o), writeable=True) for o in out_views] + [None]
    n_chunks = -(-p.size // ELEMENT_CHUNK)
    threads = min(resolve_num_threads(n_threads), n_chunks)
    threads = fork_safe_threads(backend, threads)
    flags = np.zeros(n_chunks, np.uint8)
    lo, hi = plan.clip
    with np.errstate(divide="ignore"):  # from logits the bounds are unused (hi may be 1)
        nll = tuple(float(v) for v in (-np.log(lo), -np.log1p(-lo), -np.log(hi), -np.log1p(-hi)))
    gamma_n = int(plan.gamma) if plan.gamma in range(8) else -1
    options = ElementOptions(output, plan.from_logits or output == ELEMENT_GRAD_HESS, lo, hi,
                             plan.smoothing, plan.nan_mode, plan.gamma, plan.alpha, gamma_n, nll)
    with launch_guard(backend):
        kernel.element_pass(*operands, p.shape, flags, outputs[0], outputs[1], options, threads)
    bad = int(np.bitwise_or.reduce(flags))
    if bad:
        raise ValueError("; ".join(message for bit, message in flag_messages if bad & bit))
    return outs
