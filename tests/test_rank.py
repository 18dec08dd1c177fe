"""The ranking kernels' schedule (kernels/c/rank.h, kernels/numba/rank.py): a bucket of 2**16
items or more is sorted by one thread among the others, or by all threads when it also holds a
quarter of a thread's share; either way it is walked in ranges, so every thread count and both
compiled backends give the same bits, and scikit-learn's values."""

import numpy as np
import pytest
from sklearn import metrics as skm

import fastbce
from fastbce._backends import cython_available

COMPILED = ["numba"] + (["cython"] if cython_available() else [])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_big_buckets_sorted_alone_or_by_all_threads(dtype):
    rng = np.random.default_rng(31)
    n = 1_000_000
    p = rng.random(n)
    p[:100_000] = 0.7 + 1e-3 * rng.random(100_000)  # one bucket: alone on 2 threads, shared on 4
    p[100_000:400_000] = 0.3 + 1e-4 * rng.random(300_000)  # shared on 2 and 4 threads
    p[400_000:410_000] = 0.9  # a run of ties inside a bucket
    y = (rng.random(n) < p).astype(np.uint8)
    w = rng.random(n)
    p = p.astype(dtype)
    for weights in (None, w):
        results = {(b, t): fastbce._metrics.ranking(y, p, sample_weight=weights, backend=b,
                                                    n_threads=t)
                   for b in COMPILED for t in (1, 2, 4)}
        assert len(set(results.values())) == 1, results
        np.testing.assert_allclose(
            results[COMPILED[0], 1],
            (skm.roc_auc_score(y, p, sample_weight=weights),
             skm.average_precision_score(y, p, sample_weight=weights)), rtol=1e-12)
