"""Build script: the package metadata lives in pyproject.toml; this file adds the Cython/OpenMP
extension ``fastbce._kernels.cython_kernels`` built from kernels/cython_kernels.pyx.

The extension is optional: without a working C compiler the install still succeeds and fastbce
runs on Numba (with a warning). Set FASTBCE_REQUIRE_EXTENSION=1 to make a failed build an error.
"""

import glob
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

extension = Extension(
    "fastbce._kernels.cython_kernels",
    ["kernels/cython_kernels.pyx"],
    include_dirs=["kernels"],
    depends=sorted(glob.glob("kernels/c/*.h")),
    # -ffp-contract=off: no fused multiply-add, so that every operation of the fast path is one IEEE
    # operation with the same result on every CPU and in the Numba backend. No -march=native and no
    # -ffast-math: the vector variants are compiled per instruction set in kernels/c/dispatch.h,
    # and NaN and inf handling must stay exact. -fno-trapping-math lets gcc if-convert (vectorise)
    # loops whose branches hold divisions; it changes no value (floating-point exceptions are not
    # used).
    extra_compile_args=["-O3", "-fopenmp", "-ffp-contract=off", "-fno-trapping-math"],
    extra_link_args=["-fopenmp"],
    optional=os.environ.get("FASTBCE_REQUIRE_EXTENSION") != "1",
)

setup(ext_modules=cythonize([extension], language_level=3))
