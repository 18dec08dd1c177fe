"""Numba backend (installed as ``fastbce._kernels.numba``): the general pass (general.py, the twin
of the general pass in kernels/cython_kernels.pyx) and the fast path, whose modules mirror the C
headers of kernels/c/ file for file: math, forms, blocks, chunk, dispatch, elements, rank,
histogram (tests/test_twins.py)."""

from .dispatch import fast_pass
from .elements import element_pass
from .general import bce_pass
from .histogram import calib_pass, hist_pass

__all__ = ["bce_pass", "fast_pass", "element_pass", "hist_pass", "calib_pass"]
