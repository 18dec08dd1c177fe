"""The backends themselves: the Cython build, shared codes, selection, concurrency from Python threads."""

import importlib
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastbce
from fastbce import _backends
from fastbce import _kernels as codes


def test_cython_extension_is_built():
    """The test command builds the extension; a silent fallback to Numba must not pass for success."""
    module = _backends.load_backend("cython")
    assert module.__name__ == "fastbce._kernels.cython_kernels"
    assert _backends.resolve_backend("auto") == "cython"


def test_cython_codes_match_the_python_codes():
    module = _backends.load_backend("cython")
    for name, value in module.CODES.items():
        assert getattr(codes, name) == value, name


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="backend must be one of"):
        fastbce.bce([0, 1], [0.5, 0.5], backend="torch")


def test_auto_falls_back_to_numba_with_one_warning(monkeypatch):
    """Without the extension, auto runs on Numba and warns once; backend='cython' explains how to build."""
    real_import = importlib.import_module

    def import_without_cython(name, *args):
        if name.endswith("cython_kernels"):
            raise ImportError("simulated missing extension")
        return real_import(name, *args)

    monkeypatch.setattr(_backends.importlib, "import_module", import_without_cython)
    for cached in (_backends.load_backend, _backends.cython_available, _backends._auto_backend):
        cached.cache_clear()
    try:
        with pytest.raises(ImportError, match="Cython backend of fastbce is not built.*pip install"):
            fastbce.bce([0, 1], [0.2, 0.7], backend="cython")
        with pytest.warns(RuntimeWarning, match="using the Numba backend"):
            first = fastbce.bce([0, 1], [0.2, 0.7])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            second = fastbce.bce([0, 1], [0.2, 0.7])
        assert first == second == pytest.approx(-(np.log(0.8) + np.log(0.7)) / 2, rel=1e-12)
    finally:
        monkeypatch.undo()
        for cached in (_backends.load_backend, _backends.cython_available, _backends._auto_backend):
            cached.cache_clear()


def _workload(rng):
    n_rows, n_labels = 40_000, 5
    y = (rng.random((n_rows, n_labels)) < 0.3).astype(np.uint8)
    x = rng.normal(0, 2, (n_rows, n_labels)).astype(np.float32)
    groups = rng.integers(0, 7, n_rows)
    weight = rng.random((n_rows, 1))
    soft = (0.05 + 0.9 * y).astype(np.float32)
    p = 1 / (1 + np.exp(-x))
    p64 = p.astype(np.float64)  # eps = 1e-12 needs float64 predictions (1 - 1e-12 is 1 in float32)
    calls = [
        lambda b: fastbce.bce(y, x, from_logits=True, backend=b),
        lambda b: fastbce.bce(soft, x, from_logits=True, backend=b),
        lambda b: fastbce.bce(soft, p, backend=b),
        lambda b: fastbce.bce(y, p64, eps=1e-12, backend=b),
        lambda b: fastbce.bce(soft, p, sample_weight=weight, backend=b),
        lambda b: fastbce.bce_grad(y, x, from_logits=True, sample_weight=weight, backend=b),
        lambda b: fastbce.bce(y, x, from_logits=True, axis=0, sample_weight=weight, backend=b),
        lambda b: fastbce.bce(y, x, from_logits=True, groups=groups, backend=b),
        lambda b: fastbce.bce_grad(y, x, from_logits=True, axis=1, backend=b),
        lambda b: fastbce.bce_value_and_grad(y, x, from_logits=True, pos_weight=2.0, backend=b)[1],
        lambda b: fastbce.focal_bce(y, x, from_logits=True, reduction="none", backend=b),
        lambda b: fastbce.score(y, x, from_logits=True, groups=groups, backend=b).log_loss,
    ]
    return calls


@pytest.mark.parametrize("backend", ["numba", "cython"])
def test_eight_python_threads_at_once_give_the_serial_results(backend, rng):
    calls = _workload(rng)
    serial = [call(backend) for call in calls]
    jobs = [calls[i % len(calls)] for i in range(8 * len(calls))]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda call: call(backend), jobs))
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result, serial[i % len(calls)])


def test_numba_and_cython_agree_bit_for_bit(rng):
    for call in _workload(rng):
        np.testing.assert_array_equal(call("numba"), call("cython"))
