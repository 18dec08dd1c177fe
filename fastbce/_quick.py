"""The common-case call path: a full reduction of contiguous NumPy arrays without exotic options.

:func:`quick_pass` recognises in a few cheap steps a call that :func:`fastbce._plan.make_plan`
would accept and :mod:`fastbce._fastpath` would send to the fast path unchanged (C-contiguous 1-D
or 2-D float32/float64 predictions, labels of a dtype the fast path reads in place, no weights,
pos_weight, mask, smoothing, focal loss or groups, ``axis=None``, ``reduction`` "mean" or "sum"),
and runs it with the same chunks and the same options record: the same bits as the full path.
Anything else returns None and takes the full path, which also raises every error; the checks of
``eps`` are cached per value and dtype. tests/test_quick.py compares the two paths.
"""

import numpy as np

from . import _engine
from ._backends import resolve_backend
from ._config import fork_safe_threads, launch_guard
from ._engine import FLAG_MESSAGES, chunking
from ._kernels import MODE_ALL, NAN_PROPAGATE, NAN_RAISE, FastOptions
from ._plan import clip_bounds
from ._threads import resolve_num_threads

_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
_BYTES = np.dtype(np.uint8)
# Label dtypes the fast path reads in place, per prediction dtype (bytes are viewed as uint8).
_LABELS = {_F32: {_F32: None, np.dtype(np.bool_): _BYTES, _BYTES: _BYTES, np.dtype(np.int8): _BYTES},
           _F64: {_F32: None, _F64: None, np.dtype(np.bool_): _BYTES, _BYTES: _BYTES,
                  np.dtype(np.int8): _BYTES}}
_NAN_MODES = {"propagate": NAN_PROPAGATE, "raise": NAN_RAISE}
_REDUCTIONS = ("mean", "sum")
# (eps, prediction dtype, from_logits) -> (clip, nll) for values that make_plan and the fast path
# accept (fastbce/_plan.py, fastbce/_fastpath.py); at most _MAX_EPS entries.
_eps_cache = {}
_MAX_EPS = 64
# (dtype, from_logits, eps, nan_mode, ncols, chunk_elems, grad_scale, want_loss) -> FastOptions
_options_cache = {}
_MAX_OPTIONS = 256


def _bounds(eps, dtype, from_logits):
    """(clip, nll) of eps for the fast path, or None when make_plan or the fast path would not take
    it (the full path then raises or runs the general kernel)."""
    key = (eps, dtype, from_logits)
    cached = _eps_cache.get(key)
    if cached is not None or type(eps) is not float:
        return cached
    if not 0.0 < eps < 0.5 or 1.0 - eps == 1.0:
        return None
    clip = clip_bounds(eps, dtype)
    if not 0.0 < clip[0] < clip[1] < 1.0 and not from_logits:
        return None
    if clip[0] < float(np.finfo(dtype).tiny):
        return None  # the fast path's smallest bound (fastbce/_fastpath.py _MIN_CLIP)
    lo, hi = clip
    with np.errstate(divide="ignore"):  # from logits the bounds are unused (hi may be 1)
        nll = tuple(map(float, (-np.log(lo), -np.log1p(-lo), -np.log(hi), -np.log1p(-hi))))
    if len(_eps_cache) < _MAX_EPS:
        _eps_cache[key] = (clip, nll)
    return clip, nll


def quick_pass(y_true, y_pred, from_logits, eps, nan_policy, reduction, n_threads, backend,
               want_value, want_grad, out):
    """(value, gradient or None) of a common-case call of bce / bce_grad / bce_value_and_grad
    (value None when not wanted), or None when the call must take the full path."""
    if type(y_pred) is not np.ndarray or type(y_true) is not np.ndarray:
        return None
    dtype = y_pred.dtype
    labels = _LABELS.get(dtype)
    if labels is None or y_true.dtype not in labels or y_true.shape != y_pred.shape:
        return None
    if not (y_pred.flags.c_contiguous and y_true.flags.c_contiguous) or y_pred.size == 0:
        return None
    if not (from_logits is False or from_logits is True) or type(reduction) is not str \
            or type(nan_policy) is not str or reduction not in _REDUCTIONS:
        return None
    nan_mode = _NAN_MODES.get(nan_policy)
    if nan_mode is None:
        return None
    bounds = _bounds(eps, dtype, from_logits)
    if bounds is None:
        return None
    shape = y_pred.shape
    if len(shape) == 1:
        n_rows, n_cols = shape[0], 1
    elif len(shape) == 2:
        n_rows, n_cols = shape
        y_true, y_pred = y_true.reshape(-1), y_pred.reshape(-1)
    else:
        return None
    grad = None
    if want_grad:
        out_dtype = _F64 if dtype == _F64 else _F32
        if out is None:
            grad = np.empty(shape, out_dtype)
        elif (type(out) is np.ndarray and out.shape == shape and out.dtype == out_dtype
              and out.flags.c_contiguous and out.flags.writeable):
            grad = out
        else:
            return None  # the full path checks out= (and writes into a strided one)
    backend = resolve_backend(backend)
    kernel = _engine.load_backend(backend)  # the engine's: tests count its kernel passes
    if not hasattr(kernel, "fast_pass"):
        return None
    rows_per_chunk, n_chunks = chunking(n_rows, n_cols, MODE_ALL, 1)
    threads = fork_safe_threads(backend, min(resolve_num_threads(n_threads), n_chunks))
    view = labels[y_true.dtype]
    if view is not None:
        y_true = y_true.view(view)  # int8 -1 becomes 255: still outside [0, 1]
    grad_scale = 1.0 / (n_rows * n_cols) if want_grad and reduction == "mean" else 1.0
    chunk_elems = rows_per_chunk * n_cols
    key = (dtype, from_logits, eps, nan_mode, n_cols, chunk_elems, grad_scale, want_value)
    options = _options_cache.get(key)
    if options is None:
        clip, nll = bounds
        options = FastOptions(mode=MODE_ALL, ncols=n_cols, row0=0, chunk_elems=chunk_elems,
                              logits=from_logits, nan_mode=nan_mode, clip=clip, smoothing=0.0,
                              focal=None, nll=nll, grad_scale=grad_scale, want_loss=want_value)
        if len(_options_cache) < _MAX_OPTIONS:
            _options_cache[key] = options
    sums = np.empty((n_chunks, 1, 2))
    sums.fill(0.0)
    flags = np.zeros(n_chunks, np.uint8)
    with launch_guard(backend):
        kernel.fast_pass(y_true, y_pred, None, None, None, None, None, None, sums, flags,
                         None if grad is None else grad.reshape(-1), options, threads)
    bad = int(flags[0]) if n_chunks == 1 else int(np.bitwise_or.reduce(flags))
    if bad:
        raise ValueError("; ".join(message for bit, message in FLAG_MESSAGES if bad & bit))
    if not want_value:
        return None, grad
    if n_chunks == 1:
        loss, weight = sums[0, 0]
    else:  # as run_pass adds the chunks: pairwise over a contiguous axis
        loss, weight = np.ascontiguousarray(np.moveaxis(sums, 0, -1)).sum(axis=-1)[0]
    return float(loss) if reduction == "sum" else float(loss / weight), grad
