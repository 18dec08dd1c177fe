"""Run by tests/test_platforms.py in a subprocess whose NUMBA_THREADING_LAYER is forced: the Numba
backend's results alone, from 8 Python threads at once, and in a child forked after a parallel
call. Writes one JSON object to the file named by its argument (floats as their hex, so the bits
compare exactly)."""

import json
import multiprocessing
import os
import sys
import threading

import numpy as np

import fastbce
from fastbce import _backends, _config

N = 70_000  # three chunks: the kernels launch on two threads
ROUNDS = 3  # calls per Python thread and case


def inputs():
    rng = np.random.default_rng(30)
    y = (rng.random(N) < 0.3).astype(np.uint8)
    p = rng.random(N).astype(np.float32)
    return y, p, p.astype(np.float64)


def cases(y, p32, p64):
    """(name, call) pairs: the fast path (mean, per label of a 2-D view) and the general kernel."""
    return [
        ("fast-mean", lambda t: fastbce.bce(y, p32, backend="numba", n_threads=t)),
        ("fast-per-label", lambda t: fastbce.bce(y.reshape(-1, 7), p32.reshape(-1, 7), axis=0,
                                                 backend="numba", n_threads=t)),
        ("general-none", lambda t: fastbce.bce(y, p64, reduction="none", backend="numba", n_threads=t)),
    ]


def digest(value):
    """Exact bits of a result: the hex of a float, or of the sum and a few elements of an array."""
    if isinstance(value, float):
        return value.hex()
    value = np.asarray(value, np.float64)
    return [float(value.sum(dtype=np.float64)).hex()] + [float(v).hex() for v in value[:: max(1, value.size // 5)]]


def _in_child(queue, backend):
    y, p32, _ = inputs()
    try:
        queue.put(("ok", digest(fastbce.bce(y, p32, backend=backend, n_threads=2))))
    except RuntimeError as error:
        queue.put(("RuntimeError", str(error)))


def forked(backend):
    """(status, value) of the fast-path mean in a child forked now."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_in_child, args=(queue, backend))
    child.start()
    child.join(timeout=120)
    if child.is_alive():
        child.kill()
        return ["hung", None]
    if child.exitcode != 0:
        return ["exit", child.exitcode]
    return list(queue.get(timeout=10))


def main():
    y, p32, p64 = inputs()
    calls = cases(y, p32, p64)
    serial = {name: digest(call(2)) for name, call in calls}
    one_thread = {name: digest(call(1)) for name, call in calls}
    info = _config.config()

    mismatches, errors = [], []

    def hammer():
        try:
            for _ in range(ROUNDS):
                for name, call in calls:
                    if digest(call(2)) != serial[name]:
                        mismatches.append(name)
        except Exception as error:  # reported, so that the test names it
            errors.append(repr(error))

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    fork = forked("numba")
    # the Cython backend (GNU OpenMP, as the omp layer) in a child forked after these Numba calls
    fork_cython = {"cython": forked("cython")} if _backends.cython_available() else {}

    report = {"layer": info["numba threading layer"], "serialised": info["numba calls serialised"],
               "forced": os.environ.get("NUMBA_THREADING_LAYER"), "serial": serial,
               "one_thread": one_thread, "calls": 8 * ROUNDS * len(calls), "mismatches": mismatches,
               "errors": errors, "fork": fork, "fork_cython": fork_cython}
    with open(sys.argv[1], "w") as file:
        json.dump(report, file)


if __name__ == "__main__":
    main()
