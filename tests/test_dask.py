"""fastbce.dask on a real distributed.LocalCluster (2 worker processes): lazy results equal to
the in-memory ones within 1e-12 relative (2e-6 for float32 predictions), for even, uneven and single-chunk layouts."""

import numpy as np
import pytest

import fastbce

da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")
pd = pytest.importorskip("pandas")
fdask = pytest.importorskip("fastbce.dask")

N = 30_011
CHUNKINGS = {"even": 5_000, "uneven": (1, 7, 12_000, 3, 18_000), "one": N}


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            yield client


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    y = (rng.random(N) < 0.3).astype(np.uint8)
    p = rng.random(N).astype(np.float32)
    w = rng.random(N)
    g = rng.integers(0, 5, N)
    Y = rng.random((N, 3)) < 0.4
    P = rng.random((N, 3))
    return y, p, w, g, Y, P


def _close(got, expected, rtol=1e-12):
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=0)


# float32 predictions: in-memory and lazy results agree within the fast path's accuracy (1e-6 of
# the float64 value), not to rounding: a block may take another route than the whole array (a
# one-element block has a scalar weight, so the product path instead of a logarithm per element)
F32_RTOL = 2e-6


@pytest.mark.parametrize("chunks", CHUNKINGS.values(), ids=CHUNKINGS.keys())
def test_bce_and_score_1d(client, data, chunks):
    y, p, w, g, _, _ = data
    dy, dp, dw, dg = (da.from_array(a, chunks=chunks) for a in (y, p, w, g))
    lazy = [fdask.bce(dy, dp), fdask.bce(dy, dp, sample_weight=dw, reduction="sum"),
            fdask.bce(dy, dp, sample_weight=dw, groups=dg, n_groups=5),
            fdask.bce(dy, dp, groups=dg)]  # n_groups from a pass over groups
    got = client.compute(lazy, sync=True)
    _close(got[0], fastbce.bce(y, p), F32_RTOL)
    _close(got[1], fastbce.bce(y, p, sample_weight=w, reduction="sum"), F32_RTOL)
    _close(got[2], fastbce.bce(y, p, sample_weight=w, groups=g, n_groups=5), F32_RTOL)
    _close(got[3], fastbce.bce(y, p, groups=g), F32_RTOL)
    report = client.compute(fdask.score(dy, dp, sample_weight=dw, groups=dg), sync=True)
    expected = fastbce.score(y, p, sample_weight=w, groups=g)
    assert report.index_name == "group"
    _close(report.totals, expected.totals)
    _close(report.log_loss, expected.log_loss)


@pytest.mark.parametrize("chunks", CHUNKINGS.values(), ids=CHUNKINGS.keys())
def test_2d_per_label_per_sample_and_gradients(client, data, chunks):
    y, p, w, _, Y, P = data
    DY = da.from_array(Y, chunks=(chunks, 2))  # labels split across blocks too
    DP = da.from_array(P, chunks=(5_003, 3))   # a different row chunking: Dask aligns them
    pos_weight = np.array([1.0, 2.0, 0.5])
    dw = da.from_array(w[:, None], chunks=(chunks, 1))
    for axis in (None, 0, 1):
        kwargs = dict(axis=axis, pos_weight=pos_weight)
        got = fdask.bce(DY, DP, sample_weight=dw, **kwargs).compute()
        _close(got, fastbce.bce(Y, P, sample_weight=w[:, None], **kwargs))
        grad = fdask.bce_grad(DY, DP, sample_weight=dw, **kwargs)
        assert grad.shape == P.shape and grad.dtype == np.float64
        _close(grad.compute(), fastbce.bce_grad(Y, P, sample_weight=w[:, None], **kwargs))
    report = fdask.score(DY, DP, axis=0).compute()
    assert report.index_name == "label"
    _close(report.totals, fastbce.score(Y, P, axis=0).totals)
    # 1-D float32: the gradient of the mean and the element losses, block by block
    dy, dp = da.from_array(y, chunks=chunks), da.from_array(p, chunks=chunks)
    grad = fdask.bce_grad(dy, dp, nan_policy="omit").compute()
    assert grad.dtype == np.float32
    np.testing.assert_array_equal(grad, fastbce.bce_grad(y, p, nan_policy="omit"))
    np.testing.assert_array_equal(fdask.bce(dy, dp, reduction="none").compute(),
                                  fastbce.bce(y, p, reduction="none"))


def test_dataframe_columns(client, data):
    y, p, w, g, _, _ = data
    frame = dd.from_pandas(pd.DataFrame({"y": y, "p": p, "w": w, "g": g}), npartitions=7)
    frame = frame[frame.w >= 0]  # a filter: partition lengths unknown to Dask
    got = client.compute([fdask.bce(frame.y, frame.p, sample_weight=frame.w),
                          fdask.score(frame.y, frame.p, groups=frame.g, n_groups=5)], sync=True)
    _close(got[0], fastbce.bce(y, p, sample_weight=w))
    _close(got[1].totals, fastbce.score(y, p, groups=g, n_groups=5).totals)


def test_empty_blocks_and_results_stay_lazy(client, data):
    y, p, *_ = data
    dy = da.from_array(y, chunks=10_000)[y > 2]  # no rows at all after the filter in some blocks
    dp = da.from_array(p, chunks=10_000)[y > 2]
    both = da.concatenate([da.from_array(y[:100]), dy]), da.concatenate([da.from_array(p[:100]), dp])
    result = fdask.bce(*both)
    assert isinstance(result, da.Array) and result.shape == ()
    _close(result.compute(), fastbce.bce(y[:100], p[:100]))


def test_bad_input(client, data):
    y, p, *_ = data
    dy, dp = da.from_array(y, chunks=10_000), da.from_array(p, chunks=10_000)
    with pytest.raises(ValueError, match="reduction must be one of 'mean', 'sum'"):
        fdask.bce_grad(dy, dp, reduction="none")
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        fdask.bce(dy, dp, axis=2)
    with pytest.raises(TypeError, match="y_true is a Dask column of dtype Int8"):
        frame = dd.from_pandas(pd.DataFrame({"y": pd.array([1, None], dtype="Int8"), "p": [0.5, 0.5]}),
                               npartitions=1)
        fdask.bce(frame.y, frame.p)
    bad = da.from_array(np.where(np.arange(N) == 20_000, 2, y), chunks=10_000)
    with pytest.raises(ValueError, match="y_true has values outside"):  # found by a worker
        client.compute(fdask.bce(bad, dp), sync=True)


def test_score_metric_fields_and_labelled_groups(client, data):
    """The lazy report is the Accumulator's: the same sums, the AUC bounds around the exact AUC;
    labelled groups (strings, a categorical column) carry their labels."""
    y, p, w, g, _, _ = data
    labels = np.array(["x", "y", "z", "v", "w"])[g]
    dy, dp, dw, dl = (da.from_array(a, chunks=CHUNKINGS["uneven"]) for a in (y, p, w, labels))
    in_memory = fastbce.Accumulator().update(y, p, w).result()
    exact = fastbce.score(y, p, sample_weight=w)
    got = client.compute(fdask.score(dy, dp, sample_weight=dw, threshold=0.3), sync=True)
    for name in ("brier", "ece", "roc_auc", "roc_auc_lower", "roc_auc_upper", "average_precision"):
        _close(getattr(got, name), getattr(in_memory, name), 1e-10)
    assert got.roc_auc_lower <= exact.roc_auc <= got.roc_auc_upper
    assert got.f1 == pytest.approx(fastbce.score(y, p, sample_weight=w, threshold=0.3).f1, rel=1e-12)
    per_group = client.compute(fdask.score(dy, dp, groups=dl), sync=True).to_pandas()
    expected = fastbce.score(y, p, groups=labels).to_pandas()
    assert list(per_group.index) == list(expected.index) == ["v", "w", "x", "y", "z"]
    _close(per_group["brier"].to_numpy(), expected["brier"].to_numpy(), 1e-10)
    frame = dd.from_pandas(pd.DataFrame({"y": y, "p": p, "g": pd.Categorical(labels)}), npartitions=3)
    by_category = client.compute(fdask.score(frame.y, frame.p, groups=frame.g), sync=True).to_pandas()
    _close(by_category.loc[list(expected.index), "log_loss"].to_numpy(), expected["log_loss"].to_numpy(), F32_RTOL)
