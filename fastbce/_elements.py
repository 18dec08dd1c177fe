"""Element passes: per-element outputs with no reduction (losses for ``reduction="none"``, the
gradient and Hessian of :func:`fastbce.bce_grad_hess`), on each backend's ``element_pass``."""

import numpy as np

from ._backends import load_backend, resolve_backend
from ._config import fork_safe_threads, launch_guard
from ._kernels import ELEMENT_CHUNK, ELEMENT_GRAD_HESS, ElementOptions
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


def run_element_pass(plan, backend, n_threads, output, outs, flag_messages):
    """Write the element outputs ``outs`` (arrays of y_pred's shape) of one pass; raise ValueError
    with the messages of the error flags the kernel reports."""
    backend = resolve_backend(backend)
    kernel = load_backend(backend)
    if not hasattr(kernel, "element_pass"):
        kernel = load_backend("numpy")
    arrays = [plan.y, plan.p, plan.w, plan.pw, plan.mask] + [plan.as_2d(o) for o in outs]
    if not arrays[1].flags.c_contiguous and arrays[1].T.flags.c_contiguous:
        # Fortran order: an element pass does not care about the order, so it runs on the
        # transposed (C-ordered) views of every operand
        arrays = [a.T for a in arrays]
    y, p, w, pw, mask, *out_views = arrays
    n_chunks = -(-p.size // ELEMENT_CHUNK)
    threads = min(resolve_num_threads(n_threads), n_chunks)
    threads = fork_safe_threads(backend, threads)
    flags = np.zeros(n_chunks, np.uint8)
    options = ElementOptions(output, plan.y_half, plan.p_half, plan.from_logits or output == ELEMENT_GRAD_HESS,
                             *plan.clip, plan.smoothing, plan.nan_mode, plan.gamma, plan.alpha)
    out1, out2 = (out_views + [None])[:2]
    with launch_guard(backend):
        kernel.element_pass(y, p, w, pw, mask, flags, out1, out2, options, threads)
    bad = int(np.bitwise_or.reduce(flags))
    if bad:
        raise ValueError("; ".join(message for bit, message in flag_messages if bad & bit))
    return outs
