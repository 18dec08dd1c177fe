"""Build script: the package metadata lives in pyproject.toml; this file adds the Cython/OpenMP
extension ``fastbce._kernels.cython_kernels`` built from kernels/cython_kernels.pyx.

The extension is optional: without a working C compiler, or with one that has no OpenMP (Apple
clang), the install still succeeds and fastbce runs on Numba (with a one-time warning). Set
FASTBCE_REQUIRE_EXTENSION=1 to make a failed build an error.
"""

import glob
import os
import tempfile

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

OPENMP_FLAG = "-fopenmp"
_OPENMP_PROBE = """#include <omp.h>
int main(void)
{
    int n = 0;
#pragma omp parallel reduction(+:n)
    n += 1;
    return n > 0 && omp_get_max_threads() > 0 ? 0 : 1;
}
"""


def has_openmp(compiler):
    """Whether ``compiler`` (a distutils compiler) compiles and links an OpenMP program with
    OPENMP_FLAG: gcc does; Apple clang has no -fopenmp."""
    with tempfile.TemporaryDirectory() as folder:
        source = os.path.join(folder, "openmp_probe.c")
        with open(source, "w") as file:
            file.write(_OPENMP_PROBE)
        try:
            objects = compiler.compile([source], output_dir=folder, extra_postargs=[OPENMP_FLAG])
            compiler.link_executable(objects, "openmp_probe", output_dir=folder,
                                     extra_postargs=[OPENMP_FLAG])
        except Exception:  # CompileError, LinkError, a missing compiler
            return False
    return True


class BuildExtension(build_ext):
    """Builds the extension only with a compiler that has OpenMP; otherwise a build error, which
    the optional extension turns into a warning (and FASTBCE_REQUIRE_EXTENSION=1 into a failure)."""

    def build_extension(self, ext):
        if OPENMP_FLAG in ext.extra_compile_args and not has_openmp(self.compiler):
            from setuptools.errors import CompileError

            raise CompileError(f"the C compiler does not build OpenMP programs with {OPENMP_FLAG}: "
                               "the Cython backend is not built, fastbce runs on Numba")
        super().build_extension(ext)

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

ext_modules = cythonize([extension], language_level=3)
for module in ext_modules:  # cythonize returns new Extensions without `optional`
    module.optional = extension.optional

if __name__ == "__main__":  # setuptools runs this file as __main__; tests import its functions
    setup(ext_modules=ext_modules, cmdclass={"build_ext": BuildExtension})
