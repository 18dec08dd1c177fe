"""Numba fast path, loads of the inputs that are not read in place: the twin of
kernels/c/loads.h (same functions, same order). float16 predictions are decoded into a float32
buffer per block and then computed as float32 ones; pos_weight of any broadcast shape is
loaded per block.
"""

import numpy as np
from numba import njit, types
from numba.extending import overload

from .llvm import INLINE, JIT, bits_f32, from_bits_f32, prefer_wide_vectors
from .blocks import by_column
from .math import F32


@njit(**JIT)
def load_halves(s, n, buf):
    """n float16 values given as their bits (s, uint16) into buf as float32, exactly: a normal
    half's exponent rebiased (+112) in place, a subnormal one's integer mantissa times 2^-24, inf
    and NaN kept (fb_load_halves)."""
    prefer_wide_vectors()
    for k in range(n):
        h = np.int32(s[k])
        em = h & np.int32(0x7fff)
        sub = bits_f32(F32(em) * F32(2.0 ** -24))
        if em >= 0x7c00:
            bits = (em << np.int32(13)) | np.int32(0x7f800000)
        elif em >= 0x400:
            bits = (em << np.int32(13)) + np.int32(112 << 23)
        else:
            bits = sub
        buf[k] = from_bits_f32(bits | ((h & np.int32(0x8000)) << np.int32(16)))


def value_dtype(p):
    raise NotImplementedError


@overload(value_dtype, inline="always")
def _value_dtype_overload(p):
    """The dtype predictions are computed in: float32 for float16 bits (uint16), else p's."""
    if p.dtype == types.uint16:
        return lambda p: np.float32
    return lambda p: p.dtype


def predictions(pr, n, hbuf):
    raise NotImplementedError


@overload(predictions, inline="always")
def _predictions_overload(pr, n, hbuf):
    """The predictions of a block from its elements pr (a view of p, or gathered:
    gather_block): float16 bits decoded into hbuf (C: a pointer into p or hbuf in fb_chunk)."""
    if pr.dtype == types.uint16:
        def decoded(pr, n, hbuf):
            load_halves(pr, n, hbuf)
            return hbuf[:n]
        return decoded
    return lambda pr, n, hbuf: pr


@njit(**JIT)
def load_pos_weights(pos_w, pw_rs, pw_cs, row0, ncols, b0, n, pbuf):
    """The pos_weight of each element of the block [b0, b0 + n) into pbuf: element (i, j) (i from
    row0) has pos_w[i·pw_rs + j·pw_cs], pw_cs 0 or 1: per label (pw_rs 0), per sample (pw_rs 1,
    pw_cs 0) or per element (pw_rs = ncols) (fb_load_pos_weights)."""
    j = b0 % ncols
    if pw_rs == 0:
        by_column(pbuf, pos_w, j, ncols, n)
        return
    k = 0
    row = row0 + b0 // ncols
    while k < n:
        run = min(n - k, ncols - j)
        at = row * pw_rs + j * pw_cs
        if pw_cs == 0:
            c = pos_w[at]
            for t in range(run):
                pbuf[k + t] = c
        else:
            for t in range(run):  # not a slice assignment: it compiles a shape error's message
                pbuf[k + t] = pos_w[at + t]
        k += run
        row += 1
        j = 0


@njit(**JIT)
def gather(a, stride, b0, n, buf):
    """Elements [b0, b0 + n) of a strided input, a[k·stride] for element k, into buf (fb_gather)."""
    prefer_wide_vectors()
    for k in range(n):
        buf[k] = a[(b0 + k) * stride]


@njit(**INLINE)
def gather_block(a, stride, b0, n, buf):
    """Elements [b0, b0 + n) of an input: a view of a contiguous one (stride 1), or a strided
    one's gathered into buf (fb_gather_block: the same for all the inputs of a block). Strides are
    values, not types: one compilation serves any strides (chunk's FORM_STRIDED)."""
    if stride == 1:
        return a[b0:b0 + n]
    gather(a, stride, b0, n, buf)
    return buf[:n]
