"""What this process runs on: backend, SIMD variant, Numba threading layer; the launch lock.

Numba runs parallel kernels on one of three threading layers, chosen once per process (TBB if
libtbb loads, else OpenMP, else its own ``workqueue``; ``NUMBA_THREADING_LAYER`` forces one).
They differ in what they survive:

============  ==========================================  ===========================================
layer         concurrent launches from Python threads     a child forked after a launch
============  ==========================================  ===========================================
tbb           safe                                        runs, in parallel
omp           safe with GNU OpenMP per Numba's docs,      terminated by Numba ("fork() called from a
              crashes reported with other runtimes        process already using GNU OpenMP")
workqueue     terminates the process                      runs
============  ==========================================  ===========================================

The rule fastbce applies: only ``tbb`` launches concurrently. On every other layer (``omp``,
``workqueue``, and any layer this module does not know) the Numba backend takes a process-wide
lock around each kernel launch, so concurrent callers queue; a call already uses every thread, so
queuing costs little throughput. The lock is renewed in a forked child (a lock held by another
thread at the fork would otherwise never be released there).

``omp`` and the Cython backend share GNU OpenMP, which cannot start a parallel region in a child
forked after its parent ran one. In such a child a Numba call on ``omp`` raises
:class:`RuntimeError` with the ways out (instead of the child being terminated or hanging), and
the Cython backend runs on one thread (as it does after its own parallel regions).
"""

import os
import platform
import sys
import threading
from contextlib import nullcontext

from ._backends import cython_available, load_backend
from ._threads import get_num_threads

# Layers that are safe for concurrent launches from several Python threads.
CONCURRENT_LAYERS = frozenset({"tbb"})
# Layers that cannot launch in a child forked after the parent launched on them.
FORK_UNSAFE_LAYERS = frozenset({"omp"})

_launch_lock = threading.Lock()
_no_lock = nullcontext()
_layer = None  # the Numba threading layer of this process, once known
# this process is a fork of one that had used GNU OpenMP: Numba's omp layer or Cython's regions
_forked_after_openmp = False
_forked_after_numba_omp = False  # ... and of one whose Numba layer was omp


def _started_layer():
    """The Numba threading layer if it has started in this process, else None."""
    if _layer is not None:
        return _layer
    parallel = sys.modules.get("numba.np.ufunc.parallel")
    if parallel is None or not getattr(parallel, "_is_initialized", False):
        return None
    try:
        return sys.modules["numba"].threading_layer()
    except (KeyError, ValueError):
        return None


def _after_fork_in_child():
    global _launch_lock, _forked_after_openmp, _forked_after_numba_omp
    _launch_lock = threading.Lock()
    cython = sys.modules.get("fastbce._kernels.cython_kernels")
    _forked_after_numba_omp = _forked_after_numba_omp or _started_layer() in FORK_UNSAFE_LAYERS
    _forked_after_openmp = (_forked_after_openmp or _forked_after_numba_omp
                            or bool(getattr(cython, "_openmp_started", False)))


os.register_at_fork(after_in_child=_after_fork_in_child)


def numba_threading_layer():
    """The name of Numba's threading layer in this process (``"tbb"``, ``"omp"``, ``"workqueue"``),
    starting it if no parallel call has yet. ImportError if Numba cannot be imported."""
    global _layer
    if _layer is None:
        load_backend("numba")  # makes TBB loadable first (fastbce/_backends.py)
        import numba

        numba.get_num_threads()  # starts the layer
        _layer = numba.threading_layer()
    return _layer


def calls_serialised(layer):
    """Whether fastbce serialises its Numba launches on this layer (see the module docstring)."""
    return layer not in CONCURRENT_LAYERS


def launch_guard(backend):
    """The context a kernel launch of ``backend`` (a resolved name) runs in: the process-wide
    lock for Numba on a layer that is not safe for concurrent launches, else nothing."""
    if backend != "numba":
        return _no_lock
    layer = numba_threading_layer()
    if _forked_after_openmp and layer in FORK_UNSAFE_LAYERS:
        raise RuntimeError(
            f"fastbce: this process was forked after its parent ran GNU OpenMP (Numba's {layer!r} "
            f"threading layer or the Cython backend), and Numba's {layer!r} layer cannot run in such a "
            "child (it would be terminated or hang). Use the 'spawn' or 'forkserver' start method of "
            "multiprocessing, install TBB (`pip install tbb`) or set NUMBA_THREADING_LAYER=tbb or "
            "workqueue, or use backend='cython'")
    return _launch_lock if calls_serialised(layer) else _no_lock


def fork_safe_threads(backend, threads):
    """The thread count for a launch of ``backend``: 1 for Cython in a child forked after Numba's
    omp layer started (GNU OpenMP, which both use, would hang), else ``threads``."""
    return 1 if backend == "cython" and _forked_after_numba_omp else threads


def _simd_variant():
    if not cython_available():
        return None
    return load_backend("cython").SIMD_VARIANT


def config():
    """The configuration as a dict (what :func:`show_config` prints)."""
    info = {
        "fastbce": sys.modules["fastbce"].__version__,
        "platform": f"{platform.system()} {platform.machine()}, Python {platform.python_version()}",
        "default backend": "cython" if cython_available() else "numba",
        "threads": get_num_threads(),
        "cython extension": "built" if cython_available() else "not built",
        "cython simd variant": _simd_variant(),
    }
    try:
        import numba

        layer = numba_threading_layer()
    except ImportError as error:
        info.update({"numba": f"unavailable ({error})", "numba threading layer": None,
                     "numba calls serialised": None})
        return info
    info.update({"numba": numba.__version__, "numba threading layer": layer,
                 "numba calls serialised": calls_serialised(layer)})
    return info


def show_config(mode="stdout"):
    """Print the backend fastbce uses, the SIMD variant of its C kernels, Numba's threading layer
    and whether fastbce serialises concurrent Numba calls; ``mode="dicts"`` returns them instead."""
    if mode not in ("stdout", "dicts"):
        raise ValueError(f"mode must be 'stdout' or 'dicts', got {mode!r}")
    info = config()
    if mode == "dicts":
        return info
    print(format_config(info))
    return None


def format_config(info):
    """The lines :func:`show_config` prints."""
    width = max(map(len, info))

    def text(value):
        if value is None:
            return "-"
        if isinstance(value, bool):
            return "yes (a lock: concurrent callers queue)" if value else "no (concurrent calls run at once)"
        return str(value)

    return "\n".join(f"{key:<{width}}  {text(value)}" for key, value in info.items())
