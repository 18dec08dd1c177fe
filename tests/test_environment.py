"""Unusual environments: fork after a parallel call, arrays beyond 2**31 elements, memory use."""

import multiprocessing
import tracemalloc

import numpy as np
import pytest

import fastbce
from fastbce import _config


def _loss_in_child(backend, y, p, queue):
    try:
        queue.put(fastbce.bce(y, p, backend=backend, n_threads=2))
    except RuntimeError as error:
        queue.put(error)


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
    result = queue.get(timeout=5)
    if backend == "numba" and _config.numba_threading_layer() == "omp":
        # GNU OpenMP cannot run in this child: fastbce says so (tests/test_platforms.py)
        assert isinstance(result, RuntimeError) and "forked after its parent ran GNU OpenMP" in str(result)
        return
    assert result == in_parent


_POSITIVES = (slice(2**31 - 10, 2**31 - 3), slice(-4097, None))  # where _labels_past_2_31 has 1s


def _labels_past_2_31():
    """2**31 + 4097 uint8 labels, 0 except 7 ones just before 2**31 and 4097 ones at the end: a
    32-bit offset anywhere would read or weigh the wrong elements. np.zeros maps its pages
    without writing them, so only the pages of the ones take memory."""
    y = np.zeros(2**31 + 4097, np.uint8)
    for ones in _POSITIVES:
        y[ones] = 1
    return y, 4097 + 7


@pytest.mark.slow
def test_more_than_2_31_elements_reduce_correctly_on_the_fast_path():
    """float32 predictions (10 GiB of address space with the labels, shared by both backends, only
    the pages of the ones written): p = 0 (clipped to eps) except 0.25 where the label is 1. A
    misread label gives -log(0.75) instead of -log(0.25), a misread p -log(eps)."""
    y, n_ones = _labels_past_2_31()
    p = np.zeros(y.size, np.float32)
    for ones in _POSITIVES:
        p[ones] = 0.25
    per_label = [fastbce.bce(np.array([label], np.uint8), np.array([q], np.float32), backend="numpy")
                 for label, q in ((1, 0.25), (0, 0.0))]
    expected_sum = n_ones * per_label[0] + (y.size - n_ones) * per_label[1]
    for backend in ("cython", "numba"):
        total = fastbce.bce(y, p, reduction="sum", backend=backend)
        # the 2**31 factors 1 - eps of the lane products round: 1.7e-12 measured
        assert total == pytest.approx(expected_sum, rel=1e-10)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["cython", "numba"])
def test_more_than_2_31_elements_reduce_correctly_in_the_general_kernel(backend):
    """float64 focal loss with a γ that is not an integer takes the general kernel; predictions
    broadcast from one value (no memory), γ = 1/2 and pos_weight 2: loss 2·√(3/4)·log 4 where the
    label is 1, √(1/4)·log(4/3) where it is 0. A mask counts every
    2**24-th element, those around 2**31 and the last 5000: masked elements skip the math (the
    general kernel computes ~50 M elements/s), so this checks the offsets of labels, mask and
    predictions past 2**31 in seconds (the untouched pages of the mask take no memory)."""
    y, _ = _labels_past_2_31()
    mask = np.zeros(y.size, bool)
    mask[::2**24] = True
    mask[2**31 - 20:2**31 + 20] = True
    mask[-5000:] = True
    ones = int(np.count_nonzero(y[mask]))
    zeros = int(np.count_nonzero(mask)) - ones
    assert ones == 4097 + 7  # every 1 label is counted
    p = np.broadcast_to(np.float64(0.25), y.shape)
    expected_sum = ones * 2 * np.sqrt(0.75) * np.log(4.0) + zeros * 0.5 * np.log(4.0 / 3.0)
    total = fastbce.focal_bce(y, p, gamma=0.5, reduction="sum", pos_weight=2.0, mask=mask,
                              backend=backend)
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
