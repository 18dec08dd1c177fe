"""Inputs from pyarrow, pandas and polars columns and from memory-mapped files: zero-copy views,
nulls treated as masked, the same results as NumPy arrays."""

import numpy as np
import pytest

import fastbce
from fastbce._frames import _to_numpy

pa = pytest.importorskip("pyarrow")
pd = pytest.importorskip("pandas")
pl = pytest.importorskip("polars")

N = 5_000


@pytest.fixture
def data(rng):
    y = (rng.random(N) < 0.3).astype(np.uint8)
    p = rng.random(N).astype(np.float32)
    w = rng.random(N)
    g = rng.integers(0, 4, N).astype(np.int32)
    valid = rng.random(N) > 0.1  # where the nullable columns have a value
    return y, p, w, g, valid


def _buffer(array):
    """The values buffer of a pyarrow array as NumPy, to check that a view shares it."""
    return np.frombuffer(array.buffers()[1], dtype=array.type.to_pandas_dtype())


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_arrow_without_nulls_is_a_zero_copy_view(data, dtype):
    y, p, *_ = data
    arrow_p = pa.array(p.astype(dtype))
    view, valid = _to_numpy(arrow_p, "y_pred")
    assert valid is None and view.dtype == dtype and np.shares_memory(view, _buffer(arrow_p))
    expected = fastbce.bce(y, p.astype(dtype))
    assert fastbce.bce(pa.array(y), arrow_p) == expected
    assert fastbce.bce(pa.chunked_array([pa.array(y)]), pa.chunked_array([arrow_p])) == expected
    assert np.shares_memory(_to_numpy(pa.chunked_array([arrow_p]), "y_pred")[0], _buffer(arrow_p))


def test_arrow_bool_labels_and_sliced_arrays(data):
    y, p, *_ = data
    assert fastbce.bce(pa.array(y.astype(bool)), pa.array(p)) == fastbce.bce(y, p)
    # a slice has an offset into the parent's buffer: still a view, still the right values
    parent = pa.array(p)
    sliced = parent.slice(7, 100)
    view, _ = _to_numpy(sliced, "y_pred")
    assert np.array_equal(view, p[7:107]) and np.shares_memory(view, _buffer(parent))
    assert fastbce.bce(pa.array(y).slice(7, 100), sliced) == fastbce.bce(y[7:107], p[7:107])


def test_multi_chunk_arrays_are_combined(data):
    y, p, *_ = data
    chunked_y = pa.chunked_array([y[:1000], y[1000:]])
    chunked_p = pa.chunked_array([p[:3000], p[3000:]])  # chunk boundaries need not agree
    assert fastbce.bce(chunked_y, chunked_p) == fastbce.bce(y, p)


def _masked_expectation(y, p, w, g, valid):
    return (fastbce.bce(y, p, sample_weight=w, mask=valid),
            fastbce.bce(y, p, sample_weight=w, groups=g, n_groups=4, mask=valid),
            fastbce.bce_grad(y, p, sample_weight=w, mask=valid))


@pytest.mark.parametrize("null_in", ["y_true", "y_pred", "sample_weight", "groups"])
def test_arrow_nulls_are_masked(data, null_in):
    y, p, w, g, valid = data
    columns = {"y_true": y, "y_pred": p, "sample_weight": w, "groups": g}
    arrow = {name: pa.array(values, mask=~valid if name == null_in else None)
             for name, values in columns.items()}
    assert arrow[null_in].null_count == (~valid).sum()
    expected = _masked_expectation(y, p, w, g, valid if null_in != "groups" else np.ones(N, bool))
    assert fastbce.bce(arrow["y_true"], arrow["y_pred"], sample_weight=arrow["sample_weight"]) == expected[0]
    got = fastbce.bce_grad(arrow["y_true"], arrow["y_pred"], sample_weight=arrow["sample_weight"])
    assert np.array_equal(got, expected[2])
    per_group = fastbce.bce(arrow["y_true"], arrow["y_pred"], sample_weight=arrow["sample_weight"],
                            groups=arrow["groups"], n_groups=4)
    assert np.array_equal(per_group, _masked_expectation(y, p, w, g, valid)[1])


def test_values_under_nulls_are_never_read(data):
    """Arrow leaves the slots under nulls undefined: out-of-range labels, NaN predictions and
    group ids there change nothing."""
    y, p, w, g, valid = data
    bitmap = pa.array(valid).buffers()[1]
    garbage = lambda values, bad: pa.Array.from_buffers(  # noqa: E731
        pa.from_numpy_dtype(values.dtype), N, [bitmap, pa.py_buffer(np.where(valid, values, bad))])
    args = (garbage(y, 7), garbage(p, np.nan))
    assert fastbce.bce(*args, sample_weight=garbage(w, -1.0), nan_policy="raise") == fastbce.bce(
        y, p, sample_weight=w, mask=valid)
    assert np.array_equal(fastbce.bce(y, p, groups=garbage(g, 99)), fastbce.bce(y, p, groups=g, mask=valid))


def test_nulls_combine_with_a_mask(data):
    y, p, w, g, valid = data
    mask = np.arange(N) % 3 > 0
    got = fastbce.bce(y, pa.array(p, mask=~valid), mask=mask)
    assert got == fastbce.bce(y, p, mask=mask & valid)
    # a null in the mask counts as False
    arrow_mask = pa.array(mask, mask=~valid)
    assert fastbce.bce(y, p, mask=arrow_mask) == fastbce.bce(y, p, mask=mask & valid)


def test_nulls_with_2d_input_mask_whole_rows_of_groups_and_weights(data, rng):
    y, p, w, g, valid = data
    Y = rng.random((N, 3)) < 0.5
    P = rng.random((N, 3))
    got = fastbce.bce(Y, P, groups=pa.array(g, mask=~valid), n_groups=4)
    assert np.array_equal(got, fastbce.bce(Y, P, groups=g, n_groups=4, mask=valid[:, None]))


def test_pandas_series(data):
    y, p, w, g, valid = data
    series_p = pd.Series(p, copy=False)
    view, _ = _to_numpy(series_p, "y_pred")
    assert np.shares_memory(view, p)  # a NumPy-backed Series is read in place
    assert fastbce.bce(pd.Series(y), series_p, sample_weight=pd.Series(w)) == fastbce.bce(y, p, sample_weight=w)
    value, per_group, grad = _masked_expectation(y, p, w, g, valid)
    nullable_y = pd.Series(y).astype("Int8").where(valid, pd.NA)
    nullable_w = pd.Series(w).astype("Float64").where(valid, pd.NA)
    nullable_g = pd.Series(g).astype("Int32").where(valid, pd.NA)
    assert fastbce.bce(nullable_y, p, sample_weight=w) == value
    assert fastbce.bce(y, p, sample_weight=nullable_w) == value
    assert np.array_equal(fastbce.bce(y, p, sample_weight=w, groups=nullable_g, n_groups=4), per_group)
    nullable_p = pd.Series(p).astype("Float32").where(valid, pd.NA)
    assert np.shares_memory(_to_numpy(nullable_p, "y_pred")[0], nullable_p.array._data)
    arrow_backed = pd.Series(p, dtype="float32[pyarrow]").where(valid, None)
    assert fastbce.bce(pd.Series(y.astype(bool)).astype("boolean"), arrow_backed, sample_weight=w) == value
    before = nullable_y.copy()
    fastbce.bce_grad(nullable_y, p)
    assert nullable_y.equals(before)  # inputs are never modified


def test_polars_series(data):
    y, p, w, g, valid = data
    series_p = pl.Series(p)
    view, _ = _to_numpy(series_p, "y_pred")
    assert np.shares_memory(view, series_p.to_numpy())
    assert fastbce.bce(pl.Series(y), series_p) == fastbce.bce(y, p)
    value, per_group, _ = _masked_expectation(y, p, w, g, valid)
    with_nulls = pl.Series(np.where(valid, w, 0.0)).scatter(np.flatnonzero(~valid), None)
    assert with_nulls.null_count() == (~valid).sum()
    assert fastbce.bce(y, p, sample_weight=with_nulls) == value
    groups = pl.Series(g).scatter(np.flatnonzero(~valid), None)
    assert np.array_equal(fastbce.bce(y, p, sample_weight=w, groups=groups, n_groups=4), per_group)


def test_memory_mapped_files(data, tmp_path):
    y, p, w, *_ = data
    np.save(tmp_path / "p.npy", p)
    mapped = np.load(tmp_path / "p.npy", mmap_mode="r")
    raw = np.memmap(tmp_path / "y.bin", dtype=np.uint8, mode="w+", shape=y.shape)
    raw[:] = y
    raw.flush()
    raw = np.memmap(tmp_path / "y.bin", dtype=np.uint8, mode="r", shape=y.shape)
    assert not mapped.flags.writeable and not raw.flags.writeable
    assert fastbce.bce(raw, mapped) == fastbce.bce(y, p)
    assert np.array_equal(fastbce.bce_grad(raw, mapped), fastbce.bce_grad(y, p))
    report = fastbce.score(raw, mapped, sample_weight=w)
    assert report.log_loss == fastbce.score(y, p, sample_weight=w).log_loss


def test_accumulator_fed_by_record_batches(data):
    y, p, w, g, valid = data
    table = pa.table({"y": y, "p": pa.array(p, mask=~valid), "w": w, "g": g})
    accumulator = fastbce.Accumulator(n_groups=4)
    for batch in table.to_batches(max_chunksize=1234):
        accumulator.update(batch["y"], batch["p"], sample_weight=batch["w"], groups=batch["g"])
    expected = fastbce.score(y, p, sample_weight=w, groups=g, n_groups=4, mask=valid)
    np.testing.assert_allclose(accumulator.result().totals, expected.totals, rtol=1e-12)


def test_bad_columns_name_the_argument(data):
    y, p, *_ = data
    with pytest.raises(TypeError, match="y_true must hold real numbers.*string"):
        fastbce.bce(pa.array(["a", "b"]), pa.array([0.5, 0.5]))
    with pytest.raises(TypeError, match="y_pred must hold real numbers.*dictionary"):
        fastbce.bce(y[:2], pa.array([0.5, 0.5]).dictionary_encode())
    with pytest.raises(ValueError, match="pos_weight has nulls"):
        fastbce.bce(y, p, pos_weight=pa.array([1.0, None]))
    with pytest.raises(ValueError, match="y_true and y_pred must have the same shape"):
        fastbce.bce(pa.array(y[:10]), pd.Series(p[:11]))
    with pytest.raises(ValueError, match="nulls of y_true, y_pred do not broadcast"):
        fastbce.bce(pa.array([1, None], pa.uint8()), pa.array([0.5, 0.5, None]))
