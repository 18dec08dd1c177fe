"""Unusual environments: fork after a parallel call, arrays beyond 2**31 elements, memory use."""

import multiprocessing
import tracemalloc

import numpy as np
import pytest

import fastbce


def _loss_in_child(backend, y, p, queue):
    queue.put(fastbce.bce(y, p, backend=backend, n_threads=2))


@pytest.mark.parametrize("backend", ["cython", "numba"])
def test_fork_after_a_parallel_call_completes_and_is_correct(backend, rng):
    """GNU OpenMP hangs in a child forked after a parallel region unless the child runs serially."""
    y = (rng.random(300_000) < 0.4).astype(np.uint8)
    p = rng.random(300_000).astype(np.float32)
    in_parent = fastbce.bce(y, p, backend=backend, n_threads=2)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_loss_in_child, args=(backend, y, p, queue))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        pytest.fail(f"{backend}: the forked child hung")
    assert child.exitcode == 0
    assert queue.get(timeout=5) == in_parent


def _labels_past_2_31():
    """2**31 + 4097 uint8 labels, 1 except 7 zeros just before 2**31 and 4097 zeros at the end:
    a 32-bit offset anywhere would read or weigh the wrong elements."""
    y = np.ones(2**31 + 4097, np.uint8)
    y[2**31 - 10:2**31 - 3] = 0
    y[-4097:] = 0
    return y, 4097 + 7


@pytest.mark.slow
def test_more_than_2_31_elements_reduce_correctly_on_the_fast_path():
    """float32 predictions (10 GiB with the labels, allocated once for both backends): p = 0.5
    (loss log 2) except 0.25 where the label is 0 (loss log(4/3))."""
    y, n_zero = _labels_past_2_31()
    p = np.full(y.size, 0.5, np.float32)
    p[y == 0] = 0.25
    expected_sum = (y.size - n_zero) * np.log(2.0) + n_zero * np.log(4.0 / 3.0)
    for backend in ("cython", "numba"):
        total = fastbce.bce(y, p, reduction="sum", backend=backend)
        assert total == pytest.approx(expected_sum, rel=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["cython", "numba"])
def test_more_than_2_31_elements_reduce_correctly_in_the_general_kernel(backend):
    """float16 predictions take the general kernel; broadcast from one value (no memory), with
    pos_weight: loss 2·log 4 where the label is 1, log(4/3) where it is 0. A mask counts every
    1000th element, those around 2**31 and the last 5000: masked elements skip the math (the
    general kernel computes ~50 M elements/s), so this checks the offsets of labels, mask and
    predictions past 2**31 in seconds."""
    y, _ = _labels_past_2_31()
    mask = np.zeros(y.size, bool)
    mask[::1000] = True
    mask[2**31 - 20:2**31 + 20] = True
    mask[-5000:] = True
    ones = int(np.count_nonzero(y[mask]))
    zeros = int(np.count_nonzero(mask)) - ones
    assert zeros == 4097 + 7  # every zero label is counted
    p = np.broadcast_to(np.float16(0.25), y.shape)
    expected_sum = ones * 2 * np.log(4.0) + zeros * np.log(4.0 / 3.0)
    total = fastbce.bce(y, p, reduction="sum", pos_weight=2.0, mask=mask, backend=backend)
    assert total == pytest.approx(expected_sum, rel=1e-12)


@pytest.mark.parametrize("backend", ["cython", "numba"])
def test_a_reduction_allocates_only_per_chunk_partial_sums(backend, rng):
    """Peak extra memory of a mean over 40 MB of input stays at the size of the partial sums."""
    n = 5_000_000
    y = (rng.random(n) < 0.4).astype(np.uint8)
    p = rng.random(n).astype(np.float32)
    groups = np.arange(n) % 100

    def reductions():
        fastbce.bce(y, p, sample_weight=np.float32(2.0), backend=backend)
        fastbce.bce(y, p, groups=groups, n_groups=100, backend=backend)

    reductions()  # loads / compiles the kernels outside the measurement
    tracemalloc.start()
    try:
        reductions()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 153 chunks x 100 groups x 2 float64 sums = 245 kB; the input is 25 MB
    assert peak < 1_000_000
