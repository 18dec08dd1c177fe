"""Build script: the package metadata lives in pyproject.toml; this file adds the Cython/OpenMP
extension ``fastbce._kernels.cython_kernels`` built from kernels/cython_kernels.pyx.

The extension is optional: without a working C compiler the install still succeeds and fastbce
runs on Numba (with a warning). Set FASTBCE_REQUIRE_EXTENSION=1 to make a failed build an error.
"""

import os

from Cython.Build import cythonize
from setuptools import Extension, setup

extension = Extension(
    "fastbce._kernels.cython_kernels",
    ["kernels/cython_kernels.pyx"],
    extra_compile_args=["-O3", "-fopenmp"],
    extra_link_args=["-fopenmp"],
    optional=os.environ.get("FASTBCE_REQUIRE_EXTENSION") != "1",
)

setup(ext_modules=cythonize([extension], language_level=3))
