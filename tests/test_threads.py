"""Thread counts: reductions are bit-identical for 1 and 2 threads; the thread-count settings."""

import numpy as np
import pytest

import fastbce
from fastbce import _engine, _threads
from helpers import make_labels, same

N_ROWS, N_COLS = 10_000, 30  # 300k elements: ten chunks


@pytest.fixture(scope="module")
def big():
    rng = np.random.default_rng(77)
    y = make_labels(rng, (N_ROWS, N_COLS), np.float64)
    x = rng.normal(0, 3, (N_ROWS, N_COLS))
    p = 1.0 / (1.0 + np.exp(-x))
    return {
        "y": y, "x": x, "p": p,
        "y8": (y > 0.5).astype(np.uint8), "p32": p.astype(np.float32),
        "w": rng.random((N_ROWS, N_COLS)), "pw": rng.random(N_COLS) + 0.5,
        "mask": rng.random((N_ROWS, N_COLS)) < 0.9,
        "groups": rng.integers(0, 50, N_ROWS),
    }


def _calls(d):
    """(name, function of n_threads) for the reductions and gradients that must not depend on threads."""
    flat_y, flat_p = d["y8"].ravel(), d["p32"].ravel()
    options = dict(sample_weight=d["w"], pos_weight=d["pw"], mask=d["mask"], label_smoothing=0.1)
    nan_p = d["p"].copy()
    nan_p[::97, 3] = np.nan
    return [
        ("1d-f32-u8", lambda t, b: fastbce.bce(flat_y, flat_p, n_threads=t, backend=b)),
        ("1d-sum", lambda t, b: fastbce.bce(flat_y, flat_p, reduction="sum", n_threads=t, backend=b)),
        ("all", lambda t, b: fastbce.bce(d["y"], d["p"], n_threads=t, backend=b, **options)),
        ("logits", lambda t, b: fastbce.bce(d["y"], d["x"], from_logits=True, n_threads=t, backend=b, **options)),
        ("per-label", lambda t, b: fastbce.bce(d["y"], d["p"], axis=0, n_threads=t, backend=b, **options)),
        ("per-label-sum", lambda t, b: fastbce.bce(d["y8"], d["p32"], axis=0, reduction="sum", n_threads=t,
                                                   backend=b)),
        ("per-sample", lambda t, b: fastbce.bce(d["y"], d["p"], axis=1, n_threads=t, backend=b, **options)),
        ("groups", lambda t, b: fastbce.bce(d["y"], d["p"], groups=d["groups"], n_threads=t, backend=b,
                                            **options)),
        ("groups-sum", lambda t, b: fastbce.bce(d["y8"], d["p32"], groups=d["groups"], reduction="sum",
                                                n_threads=t, backend=b)),
        ("omit", lambda t, b: fastbce.bce(d["y"], nan_p, nan_policy="omit", n_threads=t, backend=b)),
        ("value-and-grad", lambda t, b: fastbce.bce_value_and_grad(d["y"], nan_p, nan_policy="omit", axis=0,
                                                                   n_threads=t, backend=b)),
    ]


def test_bit_identical_for_one_and_two_threads(compiled_backend, big):
    for name, call in _calls(big):
        one, two = call(1, compiled_backend), call(2, compiled_backend)
        if isinstance(one, tuple):
            assert same(one[0], two[0]) and same(one[1], two[1]), name
            continue
        assert same(one, two), name  # ==, not approx
        assert same(call(None, compiled_backend), one), name
        assert np.all(np.isfinite(one)), name


def test_threads_really_reach_the_kernel(monkeypatch, big):
    """n_threads, set_num_threads and FASTBCE_NUM_THREADS decide the count the kernel is given."""
    seen = []
    real = _engine.load_backend

    class Spy:
        def __init__(self, module):
            self.module = module

        def bce_pass(self, *args):
            seen.append(args[-1])
            return self.module.bce_pass(*args)

    monkeypatch.setattr(_engine, "load_backend", lambda name: Spy(real(name)))
    monkeypatch.setattr(_threads, "available_cores", lambda: 8)
    y, p = big["y8"], big["p32"]

    def threads_used(**kwargs):
        fastbce.bce(y, p, backend="numpy", **kwargs)
        return seen[-1]

    assert threads_used() == 8
    assert threads_used(n_threads=3) == 3
    assert threads_used(n_threads=100) == 8  # capped at the cores
    monkeypatch.setenv("FASTBCE_NUM_THREADS", "2")
    assert threads_used() == 2
    assert threads_used(n_threads=5) == 5  # the call's argument wins
    fastbce.set_num_threads(4)
    assert threads_used() == 4  # set_num_threads wins over the environment
    fastbce.set_num_threads(None)
    assert threads_used() == 2
    # a small input (one chunk) runs on one thread whatever is asked
    fastbce.bce(y[:10], p[:10], n_threads=8, backend="numpy")
    assert seen[-1] == 1


def test_set_and_get_num_threads(monkeypatch):
    cores = _threads.available_cores()
    assert fastbce.get_num_threads() == cores
    fastbce.set_num_threads(1)
    assert fastbce.get_num_threads() == 1
    fastbce.set_num_threads(10_000)
    assert fastbce.get_num_threads() == cores
    fastbce.set_num_threads(np.int64(1))
    assert fastbce.get_num_threads() == 1
    fastbce.set_num_threads(None)
    assert fastbce.get_num_threads() == cores
    monkeypatch.setenv("FASTBCE_NUM_THREADS", "1")
    assert fastbce.get_num_threads() == 1
    fastbce.set_num_threads(2)
    assert fastbce.get_num_threads() == min(2, cores)


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-1, ValueError), (1.5, TypeError),
                                        (True, TypeError), ("2", TypeError)])
def test_set_num_threads_rejects(bad, error):
    with pytest.raises(error, match="positive integer"):
        fastbce.set_num_threads(bad)
    assert fastbce.get_num_threads() == _threads.available_cores()  # unchanged


@pytest.mark.parametrize("value", ["abc", "0", "-2", "1.5"])
def test_bad_environment_variable(monkeypatch, value):
    monkeypatch.setenv("FASTBCE_NUM_THREADS", value)
    with pytest.raises(ValueError, match="FASTBCE_NUM_THREADS"):
        fastbce.get_num_threads()
    with pytest.raises(ValueError, match="FASTBCE_NUM_THREADS"):
        fastbce.bce([0.0, 1.0], [0.3, 0.6], backend="numpy")
    fastbce.set_num_threads(1)  # an explicit setting does not read the environment
    assert fastbce.get_num_threads() == 1


def test_environment_variable_does_not_change_results(compiled_backend, monkeypatch, big):
    y, p = big["y8"], big["p32"]
    default = fastbce.bce(y, p, axis=0, backend=compiled_backend)
    monkeypatch.setenv("FASTBCE_NUM_THREADS", "1")
    assert same(fastbce.bce(y, p, axis=0, backend=compiled_backend), default)


def test_numba_num_threads_environment_is_respected(big, tmp_path):
    """NUMBA_NUM_THREADS=1 (set by users and schedulers) caps the Numba backend instead of failing."""
    import os
    import subprocess
    import sys

    y, p = big["y8"].ravel(), big["p32"].ravel()
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "p.npy", p)
    expected = fastbce.bce(y, p, backend="numba", n_threads=1)
    code = (f"import numpy as np, fastbce; y = np.load({str(tmp_path / 'y.npy')!r}); "
            f"p = np.load({str(tmp_path / 'p.npy')!r}); "
            "print(repr(fastbce.bce(y, p, backend='numba', n_threads=2)), repr(fastbce.bce(y, p, backend='numba')))")
    env = {k: v for k, v in os.environ.items() if k != "FASTBCE_NUM_THREADS"}
    env["NUMBA_NUM_THREADS"] = "1"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert [float(v) for v in result.stdout.split()] == [expected, expected]
