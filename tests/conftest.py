"""Shared test configuration: the backends every backend-parametrised test runs on.

``BACKENDS`` is the one list of backends the suite checks. The Cython backend joins it when it is
built; once the Cython issue lands it becomes mandatory here (a missing build must then fail the
suite instead of silently shrinking it).
"""

import numpy as np
import pytest

from fastbce import _backends

COMPILED_BACKENDS = ["numba"] + (["cython"] if _backends.cython_available() else [])
BACKENDS = ["numpy"] + COMPILED_BACKENDS


def backend_cases(cases, numba_cases=None):
    """``(backend, *case)`` tuples for parametrize: every case on every backend, except that Numba
    runs only ``numba_cases`` (when given). Each new combination of argument dtypes and layouts costs
    a Numba compilation of several seconds on a cold cache, while its code is the same Python source
    for every such combination; the other backends get the whole matrix (cheap for them)."""
    out = []
    for backend in BACKENDS:
        for case in cases:
            if backend == "numba" and numba_cases is not None and case not in numba_cases:
                continue
            out.append((backend, *case) if isinstance(case, tuple) else (backend, case))
    return out


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Every backend, the NumPy reference included."""
    return request.param


@pytest.fixture(params=COMPILED_BACKENDS)
def compiled_backend(request):
    """The compiled (parallel) backends only."""
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(20261123)


@pytest.fixture(autouse=True)
def _default_threads(monkeypatch):
    """Every test starts from the library's automatic thread default and no environment override."""
    import fastbce

    monkeypatch.delenv("FASTBCE_NUM_THREADS", raising=False)
    fastbce.set_num_threads(None)
    yield
    fastbce.set_num_threads(None)


def pytest_report_header(config):
    return f"fastbce backends under test: {', '.join(BACKENDS)}"


_NUMBA_KERNELS = ("_bce_pass", "_fast_pass")


def _numba_signatures():
    """{kernel: signatures compiled in this process} of the Numba kernels this process loaded; the
    fast path's as (form, signature): it is compiled per form (kernels/numba/dispatch.py)."""
    import sys

    found = {}
    general = sys.modules.get("fastbce._kernels.numba.general")
    if general is not None:
        found["_bce_pass"] = [str(s) for s in general._bce_pass.signatures]
    dispatch = sys.modules.get("fastbce._kernels.numba.dispatch")
    if dispatch is not None:
        found["_fast_pass"] = [f"form {form}: {s}" for form, kernel in dispatch._kernels.items()
                               for s in kernel.signatures]
    return found


def pytest_sessionfinish(session):
    """Under pytest-xdist, each worker hands its signatures to the controller."""
    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput["numba_signatures"] = _numba_signatures()


_WORKER_SIGNATURES = {}  # controller: {kernel: signatures} from the pytest-xdist workers


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    for kernel, signatures in getattr(node, "workeroutput", {}).get("numba_signatures", {}).items():
        _WORKER_SIGNATURES.setdefault(kernel, set()).update(signatures)


def pytest_terminal_summary(terminalreporter):
    """How many signatures of the Numba kernels this run used (each costs a compile on a cold
    cache), over all pytest-xdist workers."""
    collected = {kernel: set(signatures) for kernel, signatures in _WORKER_SIGNATURES.items()}
    for kernel, signatures in _numba_signatures().items():
        collected.setdefault(kernel, set()).update(signatures)
    for kernel in _NUMBA_KERNELS:
        if kernel in collected:
            terminalreporter.write_line(
                f"fastbce: {len(collected[kernel])} Numba signatures of {kernel} used in this run")


@pytest.fixture
def fast_calls(monkeypatch, compiled_backend):
    """Counts the calls of the backend's fast pass, so that a test knows it tested it."""
    kernel = _backends.load_backend(compiled_backend)
    calls = []
    original = kernel.fast_pass

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(kernel, "fast_pass", counted)
    return calls
