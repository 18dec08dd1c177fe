"""The main job: ``python -m fastbce demo`` in a subprocess."""

import os
import re
import subprocess
import sys

import pytest

import fastbce
from fastbce._synthetic import make_default_data
from oracle import oracle


def _demo(*args, env_threads=None):
    env = {k: v for k, v in os.environ.items() if k != "FASTBCE_NUM_THREADS"}
    if env_threads is not None:
        env["FASTBCE_NUM_THREADS"] = str(env_threads)
    return subprocess.run([sys.executable, "-m", "fastbce", "demo", *args], capture_output=True,
                          text=True, env=env, timeout=300)


def _printed_loss(stdout):
    match = re.search(r"mean BCE\s+([0-9.]+)", stdout)
    assert match, stdout
    return float(match.group(1))


def test_demo_prints_loss_backend_and_threads():
    result = _demo("--size", "100000", "--repeats", "1")
    assert result.returncode == 0, result.stderr
    y, p = make_default_data(100_000, seed=0)
    expected = oracle(y, p)[0]
    assert _printed_loss(result.stdout) == pytest.approx(expected, abs=2e-10)
    backend = re.search(r"backend\s+(\w+), (\d+) thread\(s\)", result.stdout)
    assert backend, result.stdout
    assert backend.group(1) in ("cython", "numba")
    assert int(backend.group(2)) == fastbce.get_num_threads()
    assert "M predictions/s" in result.stdout


def test_demo_numba_one_thread_from_the_environment():
    result = _demo("--size", "100000", "--repeats", "1", "--backend", "numba", env_threads=1)
    assert result.returncode == 0, result.stderr
    assert re.search(r"backend\s+numba, 1 thread\(s\)", result.stdout), result.stdout
    y, p = make_default_data(100_000, seed=0)
    assert _printed_loss(result.stdout) == pytest.approx(oracle(y, p)[0], abs=2e-10)


def test_demo_bad_size_is_a_clean_error():
    result = _demo("--size", "0", "--repeats", "1", "--backend", "numpy")
    assert result.returncode == 2
    assert "fastbce: error:" in result.stderr and "empty" in result.stderr
    assert "Traceback" not in result.stderr
