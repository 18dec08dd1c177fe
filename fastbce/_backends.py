"""Backend selection. Each backend is a module with a ``bce_pass`` function (see kernels/__init__.py).

Backends are imported on first use, so ``import fastbce`` stays light.
"""

import ctypes
import functools
import importlib
import os
import sys
import warnings

BACKENDS = ("auto", "cython", "numba", "numpy")
_MODULES = {
    "numba": "fastbce._kernels.numba",
    "cython": "fastbce._kernels.cython_kernels",
    "numpy": "fastbce._kernels.reference",
}


def _prefer_tbb_threading():
    """Make Numba's TBB threading layer loadable when the ``tbb`` wheel is installed.

    TBB is the Numba layer that is safe both for concurrent calls from several Python threads and
    after ``fork``. The wheel puts libtbb in ``<prefix>/lib``, which the dynamic loader does not
    search in a virtual environment, so Numba would fall back to OpenMP; loading it by path first
    fixes that. Without the wheel nothing changes.
    """
    name = "libtbb.12.dylib" if sys.platform == "darwin" else "libtbb.so.12"
    library = os.path.join(sys.prefix, "lib", name)
    if os.path.exists(library):
        try:
            ctypes.CDLL(library, mode=ctypes.RTLD_GLOBAL)
        except OSError:
            pass


@functools.cache
def load_backend(name):
    """The kernel module of a backend name; ImportError with build instructions if it is missing."""
    if name == "numba":
        _prefer_tbb_threading()
    if name == "cython":
        try:
            return importlib.import_module(_MODULES[name])
        except ImportError as error:
            raise ImportError(
                "the Cython backend of fastbce is not built: reinstall from the source tree with a "
                "C compiler available (`pip install -e .` or `make install`), or use backend='numba'"
            ) from error
    return importlib.import_module(_MODULES[name])


@functools.cache
def cython_available():
    try:
        load_backend("cython")
    except ImportError:
        return False
    return True


@functools.cache
def _auto_backend():
    """The Cython backend (no JIT pause, and as fast as Numba), else Numba with a one-time warning."""
    if cython_available():
        return "cython"
    warnings.warn("fastbce: the Cython extension is not built, using the Numba backend "
                  "(first calls pay JIT compilation); reinstall with a C compiler to build it",
                  RuntimeWarning, stacklevel=4)
    return "numba"


def resolve_backend(backend):
    """Name of the backend a call runs on."""
    if backend is None:
        backend = "auto"
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {backend!r}")
    return _auto_backend() if backend == "auto" else backend
