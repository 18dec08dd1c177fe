"""Numba fast path, entry: the twin of kernels/c/dispatch.h and of ``fast_pass`` in
kernels/cython_kernels.pyx.

``fast_pass`` (the Python entry, fastbce/_fastpath.py calls it) prepares the arrays and the options
record; ``run_chunks`` runs ranges of chunks (``_fast_pass``'s kernel) on threads.
"""

import os
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numba
import numpy as np
from numba import njit, prange

from .chunk import FORM_COEF, FORM_LOGITS, FORM_STRIDED, chunk, score_chunk
from .llvm import JIT, prefer_wide_vectors

F32 = np.float32


class _Options(NamedTuple):
    """The scalars of a fast pass as the Numba kernel takes them: with a flag for each optional
    array, which is passed as a dummy when absent (so that one compilation serves calls with and
    without it), and the clip bounds as values of the prediction dtype."""

    mode: int
    ncols: int
    row0: int
    chunk_elems: int
    logits: bool
    nan_mode: int
    f32: bool  # float32 predictions
    clip_lo: float
    clip_hi: float
    smoothing: float
    lo_pos: float  # the losses at the clip bounds (FastOptions.nll): flat, as a parallel loop
    lo_neg: float  # takes no tuple inside a tuple
    hi_pos: float
    hi_neg: float
    scale: float  # grad_scale
    want_loss: bool
    has_w: bool
    has_pw: bool
    has_mask: bool
    g_i32: bool  # group ids are int32 (g32), else int64 (g64)
    has_grad: bool
    has_col_scale: bool
    has_row_scale: bool
    p_half: bool  # predictions arrive as the uint16 bits of float16 (computed as float32)
    pw_rs: int  # pos_w[i·pw_rs + j·pw_cs] of element (i, j) (loads.load_pos_weights)
    pw_cs: int
    y_stride: int  # y, p, w, mask: flat element k at [k·stride] (loads.gather_block), in the
    # form FORM_STRIDED only
    p_stride: int
    w_stride: int
    m_stride: int


def _fast_pass(form):
    """The chunks [c0, c1) of a pass, one after the other, for one form (chunk.FORM_* bits),
    compiled on the first call of that form: `form` is a constant of the closure, so that chunk is
    compiled for it only (and the form is part of the disk cache's key). Threads run ranges of
    chunks (run_chunks): a parallel loop here would compile the chunk's code twice more (its
    gufunc and the function around it), for no gain over threads that release the GIL."""

    @njit(**JIT)
    def chunks_form(y, p, w, pos_w, mask, g32, g64, grad, col_scale, row_scale, sums, flags,
                    options, gamma_alpha, c0, c1):
        """Chunks c0 to c1 - 1. options: the fields of _Options as a plain tuple (Numba types a
        tuple of scalars in its C dispatcher, a named tuple in Python: about 10 µs per call).
        gamma_alpha (focal loss) is an argument of its own: None without focal loss."""
        prefer_wide_vectors()
        o = _Options(*options)
        n = (p.shape[0] + o.p_stride - 1) // o.p_stride  # p spans its elements (_flat)
        chunk_elems = o.chunk_elems
        for c in range(c0, c1):
            start = c * chunk_elems
            flags[c] = chunk(form, y, p, w, pos_w, mask, g32, g64, grad, col_scale, row_scale,
                             sums, o, gamma_alpha, start, min(n, start + chunk_elems), c)
    return chunks_form


_pool = None  # the threads of run_chunks, started on first use


def _reset_pool():
    global _pool
    _pool = None  # a forked child has none of the parent's threads


os.register_at_fork(after_in_child=_reset_pool)


def run_chunks(kernel, args, n_chunks, n_threads):
    """kernel(*args, c0, c1) over the chunks [0, n_chunks) in n_threads contiguous ranges, the
    first in the calling thread and the others on pool threads (the kernel runs without the GIL):
    the twin of fb_fast_pass's OpenMP loop. Each chunk writes its own slot, so the result does
    not depend on n_threads."""
    global _pool
    threads = min(n_threads, n_chunks)
    if threads <= 1:
        kernel(*args, 0, n_chunks)
        return
    bounds = [n_chunks * t // threads for t in range(threads + 1)]
    if _pool is None:
        _pool = ThreadPoolExecutor(max(8, os.cpu_count() or 1), thread_name_prefix="fastbce")
    others = [_pool.submit(kernel, *args, bounds[t], bounds[t + 1]) for t in range(1, threads)]
    try:
        kernel(*args, bounds[0], bounds[1])
    finally:
        futures.wait(others)  # no thread writes into the outputs after the call returns
    for other in others:
        other.result()


@njit(parallel=True, **JIT)
def _score_pass(y, p, w, mask, g32, g64, sums, flags, options):
    """The chunks of the scoring pass (score_chunk) in parallel; options as for _fast_pass."""
    prefer_wide_vectors()
    o = _Options(*options)
    n = p.shape[0]
    chunk_elems = o.chunk_elems
    for c in prange(flags.shape[0]):
        start = c * chunk_elems
        flags[c] = score_chunk(y, p, w, mask, g32, g64, sums, o, start,
                               min(n, start + chunk_elems), np.int64(c))


def read_only(*arrays):
    """Read-only views: Numba compiles a specialisation per argument type, and a writable and a
    read-only array are two types; inputs passed read-only always need one."""
    views = []
    for a in arrays:
        if a.flags.writeable:
            a = a.view()
            a.setflags(write=False)
        views.append(a)
    return views


# Dummies for absent arrays: the kernel's types stay the same with or without them.
_NO_MASK, _NO_G32, _NO_G64, _NO_SCALE = read_only(
    np.ones(1, np.uint8), np.zeros(1, np.int32), np.zeros(1, np.int64), np.ones(1))
_NO_SCALE_OUT = np.ones(1)  # col_scale and row_scale are passed writable (one type for both)
_NO_GRAD = {np.dtype(np.float32): np.empty(1, np.float32), np.dtype(np.float64): np.empty(1)}
# (FastOptions, prediction type, which arrays are absent) -> (the options tuple, the form)
_options_cache = {}
_kernels = {}  # form -> its _fast_pass


def _flat(a):
    """(a C-contiguous array, the stride) of a 1-D input whose elements lie a constant positive
    number of items apart (fastbce/_fastpath.py sends only such input): the array spans its
    elements, which are read at [k·stride], so that strided input needs no layout of its own (one
    form, FORM_STRIDED, serves any strides)."""
    if a is None or a.flags.c_contiguous:
        return a, 1
    stride = a.strides[0] // a.itemsize
    span = (a.shape[0] - 1) * stride + 1
    return np.lib.stride_tricks.as_strided(a, (span,), (a.itemsize,)), stride


_CONTIGUOUS = (1, 1, 1, 1)  # the strides of y, p, w and mask read in place


def fast_pass(y, p, w, pos_w, mask, groups, row_scale, col_scale, sums, flags, grad, options,
              n_threads):
    """Same contract as the Cython ``fast_pass`` (fastbce/_fastpath.py); options: a
    kernels.FastOptions."""
    half = p.dtype == np.uint16  # float16 predictions (their bits), computed as float32
    t = F32 if half else p.dtype.type
    focal = options.focal
    gamma_alpha = None  # no focal loss: the kernel is compiled without it
    if focal is not None:
        gamma_alpha = (float(focal[0]), float(focal[1]), int(focal[2]))
        # focal loss compiles once per prediction dtype: labels in the prediction dtype, weights
        # in float64 (copies unless they are already)
        y = y.astype(t, copy=False)
        w = None if w is None else w.astype(np.float64, copy=False)
    # int32 or int64 ids, read in place; both arrays are passed so that one compilation serves both
    g_i32 = groups is not None and groups.dtype == np.int32
    g32 = groups if g_i32 else _NO_G32
    g64 = _NO_G64 if groups is None or g_i32 else groups
    strides = _CONTIGUOUS
    if not (y.flags.c_contiguous and p.flags.c_contiguous and (w is None or w.flags.c_contiguous)
            and (mask is None or mask.flags.c_contiguous)):
        (y, y_stride), (p, p_stride), (w, w_stride), (mask, m_stride) = map(_flat, (y, p, w, mask))
        strides = (y_stride, p_stride, w_stride, m_stride)
    y, p = read_only(y, p)
    # without weights, a dummy of p's type (with focal loss, float64 as the weights then)
    no_w = _NO_SCALE if gamma_alpha is not None else p
    w_in = no_w if w is None else read_only(w)[0]  # the dummies are read-only already
    pos_w_in = _NO_SCALE if pos_w is None else read_only(pos_w)[0]
    mask_in = _NO_MASK if mask is None else read_only(mask)[0]
    if groups is not None:
        g32, g64 = read_only(g32, g64)
    key = (options, t, w is None, pos_w is None, mask is None, g_i32, grad is None,
           col_scale is None, row_scale is None, half, strides)
    # a zero grad_scale is not looked up: -0.0 and 0.0 are one key, and the sign is a bit of the result
    cached = _options_cache.get(key) if options.grad_scale != 0.0 else None
    if cached is not None:
        o, form = cached
    else:
        clip, nll = options.clip, options.nll
        o = (int(options.mode), int(options.ncols), int(options.row0), int(options.chunk_elems),
             bool(options.logits), int(options.nan_mode), t is F32, t(clip[0]), t(clip[1]),
             float(options.smoothing), float(nll[0]), float(nll[1]), float(nll[2]),
             float(nll[3]), float(options.grad_scale), bool(options.want_loss), w is not None,
             pos_w is not None, mask is not None, g_i32, grad is not None,
             col_scale is not None, row_scale is not None, half, int(options.pw_strides[0]),
             int(options.pw_strides[1]), *strides)
        # the form: which block loops the chunk can take (chunk.FORM_*), compiled once each
        form = ((FORM_LOGITS if options.logits else 0)
                | (FORM_COEF if pos_w is not None or options.smoothing != 0.0 or focal is not None
                   else 0)
                | (FORM_STRIDED if strides != _CONTIGUOUS else 0))
        if len(_options_cache) >= 256:
            _options_cache.clear()
        _options_cache[key] = o, form
    if sums.shape[2] == 7:  # the scoring statistics
        numba.set_num_threads(min(n_threads, numba.config.NUMBA_NUM_THREADS))  # its prange
        _score_pass(y, p, w_in, mask_in, g32, g64, sums, flags, o)
        return
    kernel = _kernels.get(form)
    if kernel is None:
        kernel = _kernels[form] = _fast_pass(form)
    args = (y, p, w_in, pos_w_in, mask_in, g32, g64,
            _NO_GRAD[np.dtype(t)] if grad is None else grad,
            _NO_SCALE_OUT if col_scale is None else col_scale,
            _NO_SCALE_OUT if row_scale is None else row_scale, sums, flags, o, gamma_alpha)
    run_chunks(kernel, args, flags.shape[0], n_threads)
