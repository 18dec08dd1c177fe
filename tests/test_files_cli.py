"""``fastbce score`` on real Parquet, CSV, Arrow IPC, .npy and .npz files, run as a subprocess:
the report equals the in-memory one, output formats, defaults, progress bar and exit codes."""

import csv
import fcntl
import io
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios

import numpy as np
import pytest

import fastbce

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("tqdm")
from pyarrow import csv as pacsv, feather  # noqa: E402

N = 20_000
SEGMENTS = np.array(["DE", "FR", "US"])


def _run(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "fastbce", *map(str, args)], capture_output=True,
                          text=True, timeout=120, **kwargs)


def _score_json(path, *args):
    result = _run("score", path, "--format", "json", *args)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no progress bar when stderr is not a terminal
    return json.loads(result.stdout)


def _assert_report(got, expected, index=None):
    """The file's report equals the in-memory one, its histogram AUC bounds hold the exact AUC."""
    exact = {"roc_auc", "roc_auc_lower", "roc_auc_upper", "average_precision"}
    for name in fastbce._score.FIELDS:
        value = getattr(expected, name) if index is None else getattr(expected, name)[index]
        if name not in exact:
            assert got[name] == pytest.approx(value, rel=1e-10, nan_ok=True), name
        elif name == "roc_auc":
            assert got["roc_auc_lower"] - 1e-12 <= value <= got["roc_auc_upper"] + 1e-12
            assert got["roc_auc_upper"] - got["roc_auc_lower"] < 5e-3  # 7 bits per group
        elif name == "average_precision":
            assert got[name] == pytest.approx(value, abs=5e-3)


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(7)
    y = (rng.random(N) < 0.3).astype(np.uint8)
    logit = rng.normal(-1.0, 2.0, N)
    p = (1 / (1 + np.exp(-logit))).astype(np.float32)
    w = rng.random(N)
    segment = SEGMENTS[rng.integers(0, 3, N)]
    return {"y_true": y, "y_pred": p, "logit": logit, "weight": w, "segment": segment,
            "y_true_click": y, "y_pred_click": p, "y_true_buy": 1 - y, "y_pred_buy": 1 - p}


@pytest.fixture(scope="module")
def files(frame, tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    table = pa.table(frame)
    paths = {"parquet": folder / "data.parquet", "csv": folder / "data.csv",
             "ipc": folder / "data.arrow", "npz": folder / "data.npz", "npy": folder / "data.npy"}
    pq.write_table(table, paths["parquet"], row_group_size=3_000)  # several row groups
    pacsv.write_csv(table, paths["csv"])
    feather.write_feather(table, paths["ipc"], chunksize=7_000)
    np.savez(paths["npz"], **{k: v for k, v in frame.items() if k != "segment"})
    np.save(paths["npy"], np.rec.fromarrays([frame["y_true"], frame["y_pred"], frame["weight"]],
                                            names="y_true,y_pred,weight"))
    return paths


@pytest.mark.parametrize("kind", ["parquet", "csv", "ipc", "npz", "npy"])
def test_each_format_equals_the_in_memory_report(files, frame, kind):
    got = _score_json(files[kind], "--weight", "weight", "--batch-rows", 4_096)
    assert got["rows"] == N
    # CSV holds the float32 predictions as decimal text, read back as float64
    y_pred = pacsv.read_csv(files["csv"])["y_pred"].to_numpy() if kind == "csv" else frame["y_pred"]
    expected = fastbce.score(frame["y_true"], y_pred, sample_weight=frame["weight"])
    _assert_report(got["overall"], expected)


def test_group_by_a_string_column_with_nulls(files, frame, tmp_path):
    table = pa.table(frame)
    missing = np.arange(N) % 11 == 0
    table = table.set_column(table.schema.get_field_index("segment"), "segment",
                             pa.array(frame["segment"], mask=missing))
    pq.write_table(table, tmp_path / "nulls.parquet")
    got = _score_json(tmp_path / "nulls.parquet", "--group-by", "segment", "--batch-rows", 5_000)
    codes = np.searchsorted(SEGMENTS, frame["segment"])
    expected = fastbce.score(frame["y_true"], frame["y_pred"], groups=codes, mask=~missing)
    assert [row["group"] for row in got["per_group"]] == list(SEGMENTS)  # sorted values
    for i, row in enumerate(got["per_group"]):
        _assert_report(row, expected, i)
    assert got["overall"]["count"] == (~missing).sum()  # rows with a null group are skipped


def test_label_columns_logits_and_csv_output(files, frame):
    result = _run("score", files["parquet"], "--label-cols", "y_true_*", "--format", "csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [row["label"] for row in rows] == ["(all)", "click", "buy"]
    for row, (y, p) in zip(rows[1:], [(frame["y_true"], frame["y_pred"]), (1 - frame["y_true"], 1 - frame["y_pred"])]):
        assert float(row["log_loss"]) == pytest.approx(fastbce.score(y, p).log_loss, rel=1e-12)
    both = fastbce.score(np.stack([frame["y_true"], 1 - frame["y_true"]], 1),
                         np.stack([frame["y_pred"], 1 - frame["y_pred"]], 1))
    assert float(rows[0]["log_loss"]) == pytest.approx(both.log_loss, rel=1e-12)
    logits = _score_json(files["ipc"], "--y-pred", "logit", "--from-logits")
    assert logits["overall"]["log_loss"] == pytest.approx(
        fastbce.bce(frame["y_true"], frame["logit"], from_logits=True), rel=1e-12)


def test_two_dimensional_npz_members_are_reported_per_label(tmp_path, frame):
    Y = np.stack([frame["y_true"], 1 - frame["y_true"]], 1)
    P = np.stack([frame["y_pred"], 1 - frame["y_pred"]], 1)
    np.savez(tmp_path / "labels.npz", y_true=Y, y_pred=P)
    got = _score_json(tmp_path / "labels.npz", "--batch-rows", 999)
    expected = fastbce.score(Y, P, axis=0)
    assert [row["label"] for row in got["per_label"]] == [0, 1]
    for i, row in enumerate(got["per_label"]):
        _assert_report(row, expected, i)


def test_table_output(files):
    result = _run("score", files["csv"], "--group-by", "segment")
    assert result.returncode == 0, result.stderr
    header, columns, *rows = result.stdout.splitlines()
    assert re.match(r".*data\.csv: 20,000 rows in [0-9.]+ s .* backend \w+, \d+ thread\(s\)", header)
    assert columns.split() == ["group", *fastbce._score.FIELDS]
    assert [row.split()[0] for row in rows] == ["(all)", *SEGMENTS]
    assert [int(row.split()[1]) for row in rows[1:]] == [int(c) for c in np.unique(
        pa.csv.read_csv(files["csv"])["segment"].to_numpy(zero_copy_only=False), return_counts=True)[1]]


def test_progress_bar_on_a_terminal_only(files):
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # 24x120 characters
    try:
        result = subprocess.run([sys.executable, "-m", "fastbce", "score", str(files["parquet"]),
                                 "--batch-rows", "2000"], stdout=subprocess.PIPE, stderr=secondary,
                                text=True, timeout=120)
        os.close(secondary)
        terminal = b""
        while chunk := _read(primary):
            terminal += chunk
    finally:
        os.close(primary)
    assert result.returncode == 0
    assert b"20.0k/20.0k" in terminal and b"rows/s" in terminal
    quiet = subprocess.run([sys.executable, "-m", "fastbce", "score", str(files["parquet"]), "--quiet"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    assert quiet.returncode == 0 and quiet.stderr == b""


def _read(fd):
    try:
        return os.read(fd, 65536)
    except OSError:  # the terminal's other end is closed
        return b""


@pytest.mark.parametrize("args, message", [
    (["--y-true", "nope"], r"no column 'nope' \(--y-true\); available columns: y_true, y_pred, logit, weight, segment"),
    (["--weight", "w"], r"no column 'w' \(--weight\); available columns"),
    (["--label-cols", "label_*", "--y-pred", "pred_*"], r"no column matches --label-cols 'label_\*'; available columns"),
    (["--label-cols", "label_*"], r"--y-pred must be a pattern with one \* .* got 'label_\*'"),
    (["--label-cols", "y_true_*", "--y-pred", "p_*"], r"no column 'p_click' \(--y-pred\)"),
    (["--y-pred", "logit"], r"y_pred has probabilities outside \[0, 1\] \(pass from_logits=True"),
    (["--y-true", "segment"], r"y_true must hold real numbers, got a column of Arrow type string"),
    (["--batch-rows", "0"], r"--batch-rows: must be a positive integer"),
    (["--format", "xml"], r"invalid choice: 'xml'"),
])
def test_bad_input_exits_2_with_the_message_on_stderr(files, args, message):
    result = _run("score", files["parquet"], *args)
    assert result.returncode == 2
    assert re.search(message, result.stderr), result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr


def test_default_columns_and_bad_files(tmp_path):
    pq.write_table(pa.table({"label": [1, 0, 1], "prediction": [0.9, 0.2, 0.6]}), tmp_path / "a.parquet")
    assert _score_json(tmp_path / "a.parquet")["overall"]["log_loss"] == pytest.approx(
        fastbce.bce(np.array([1, 0, 1]), np.array([0.9, 0.2, 0.6])), rel=1e-12)
    pq.write_table(pa.table({"a": [1], "b": [0.5]}), tmp_path / "b.parquet")
    (tmp_path / "c.parquet").write_bytes(b"not parquet")
    np.save(tmp_path / "d.npy", np.zeros(3))
    (tmp_path / "e.txt").write_text("x")
    for name, message in [("b.parquet", r"no column for --y-true \(looked for y_true, label, target, y\)"
                                        r": pass --y-true COL; available columns: a, b"),
                          ("c.parquet", r"Parquet"), ("d.npy", r"structured \.npy array"),
                          ("e.txt", r"cannot tell the format"), ("missing.csv", r"no such file")]:
        result = _run("score", tmp_path / name)
        assert result.returncode == 2 and re.search(message, result.stderr), (name, result.stderr)
        assert "Traceback" not in result.stderr


def test_parquet_is_streamed_in_constant_memory(tmp_path):
    """Peak memory does not grow with the file: 16x the rows, about the same peak."""
    # VmHWM: the peak resident memory of this process image (ru_maxrss would carry the parent's
    # peak across fork and exec)
    script = ("import re, sys; from fastbce.cli import main; main(sys.argv[1:]); "
              "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1], file=sys.stderr)")
    peaks = []
    for rows in (250_000, 4_000_000):
        path = tmp_path / f"{rows}.parquet"
        rng = np.random.default_rng(0)
        pq.write_table(pa.table({"y_true": rng.random(rows) < 0.5, "y_pred": rng.random(rows)}),
                       path, row_group_size=100_000)
        result = subprocess.run([sys.executable, "-c", script, "score", str(path), "--batch-rows",
                                 "50000", "--quiet"], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        peaks.append(int(result.stderr.split()[-1]) / 1024)  # MiB
    # the larger file holds 3.75M more rows, 34 MiB more data: read whole, it would show
    assert peaks[1] - peaks[0] < 12, peaks


def test_demo_scores_its_data_through_a_parquet_file():
    result = _run("demo", "--size", "50000", "--repeats", "1")
    assert result.returncode == 0, result.stderr
    loss = float(re.search(r"mean BCE\s+([0-9.]+)", result.stdout)[1])
    assert "fastbce score" in result.stdout and "default-50000-0.parquet: 50,000 rows" in result.stdout
    row = result.stdout.splitlines()[-1].split()
    assert row[0] == "(all)" and int(row[1]) == 50_000
    assert float(row[5]) == pytest.approx(loss, rel=1e-5)  # the table prints 6 digits


# ---------------------------------------------------------------------------------------------
# Scoring in record batches, in process: the same sums as one Accumulator fed batch by batch
# ---------------------------------------------------------------------------------------------

from fastbce._files import open_data  # noqa: E402
from fastbce._report import score_file  # noqa: E402

LABEL_DTYPES = [np.bool_, np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64,
                np.uint64, np.float16, np.float32, np.float64]
PRED_DTYPES = [np.float16, np.float32, np.float64]


def _sequential(path, batch_rows, y_true="y_true", y_pred="y_pred", **options):
    """The totals of one Accumulator fed the file's batches in order, on one thread."""
    accumulator = fastbce.Accumulator(n_threads=1, **options)
    for batch in open_data(path).batches([y_true, y_pred], batch_rows):
        if len(batch[y_true]):
            accumulator.update(batch[y_true], batch[y_pred])
    return accumulator.totals


def _scores_in_memory(rng, n, label_dtype=np.uint8, pred_dtype=np.float32):
    y = (rng.random(n) < 0.4).astype(label_dtype)
    p = rng.random(n).astype(pred_dtype)
    return y, p


@pytest.mark.parametrize("pred_dtype", PRED_DTYPES)
@pytest.mark.parametrize("label_dtype", LABEL_DTYPES)
def test_every_dtype_scored_in_batches_equals_the_sequential_and_in_memory_report(
        tmp_path, label_dtype, pred_dtype):
    rng = np.random.default_rng(1)
    y, p = _scores_in_memory(rng, 5_000, label_dtype, pred_dtype)
    path = tmp_path / "scores.parquet"
    pq.write_table(pa.table({"y_true": y, "y_pred": p}), path, row_group_size=1_700)
    for threads in (1, 2):
        report = score_file(path, batch_rows=600, threads=threads, quiet=True)
        assert report.rows == 5_000
        # bit for bit: batches scored side by side add up in file order
        assert np.array_equal(report.overall.totals, _sequential(path, 600))
    _assert_report({name: getattr(report.overall, name) for name in fastbce._score.FIELDS},
                   fastbce.score(y, p))
    # a file of one batch is one kernel call: the in-memory report, bit for bit
    whole = score_file(path, batch_rows=10_000, quiet=True)
    assert np.array_equal(whole.overall.totals, fastbce.score(y, p).totals)


@pytest.mark.parametrize("row_group_size, batch_rows", [
    (50_000, 1_000_000), (50_000, 7_777), (4_096, 1_000), (1_000, 4_096), (999, 999), (3_000, 1)])
def test_one_row_group_and_many_any_batch_size(tmp_path, row_group_size, batch_rows):
    rng = np.random.default_rng(2)
    y, p = _scores_in_memory(rng, 12_345)
    n = 12_345 if batch_rows > 1 else 40  # batches of one row: a small file
    path = tmp_path / "scores.parquet"
    pq.write_table(pa.table({"y_true": y[:n], "y_pred": p[:n]}), path, row_group_size=row_group_size)
    report = score_file(path, batch_rows=batch_rows, quiet=True)
    assert report.rows == n
    assert np.array_equal(report.overall.totals, _sequential(path, batch_rows))
    _assert_report({name: getattr(report.overall, name) for name in fastbce._score.FIELDS},
                   fastbce.score(y[:n], p[:n]))


def test_nulls_are_skipped_and_nan_propagates(tmp_path):
    rng = np.random.default_rng(3)
    y, p = _scores_in_memory(rng, 9_000)
    null_y, null_p = rng.random(9_000) < 0.05, rng.random(9_000) < 0.05
    path = tmp_path / "nulls.parquet"
    pq.write_table(pa.table({"y_true": pa.array(y, mask=null_y), "y_pred": pa.array(p, mask=null_p)}),
                   path, row_group_size=2_000)
    report = score_file(path, batch_rows=1_500, quiet=True)
    assert report.overall.count == (~null_y & ~null_p).sum()
    assert np.array_equal(report.overall.totals, _sequential(path, 1_500))
    _assert_report({name: getattr(report.overall, name) for name in fastbce._score.FIELDS},
                   fastbce.score(y, p, mask=~null_y & ~null_p))
    # NaN is a value, not a null: the default nan_policy="propagate" of the in-memory report
    p_nan = p.copy()
    p_nan[4_321] = np.nan
    pq.write_table(pa.table({"y_true": y, "y_pred": p_nan}), path, row_group_size=2_000)
    report = score_file(path, batch_rows=1_500, quiet=True)
    assert np.isnan(report.overall.log_loss) and np.isnan(fastbce.score(y, p_nan).log_loss)
    assert np.array_equal(report.overall.totals, _sequential(path, 1_500), equal_nan=True)
    assert report.overall.positive_rate == pytest.approx(fastbce.score(y, p_nan).positive_rate, rel=1e-12)


def test_csv_and_ipc_with_empty_batches(tmp_path, frame):
    y, p, w = frame["y_true"], frame["y_pred"], frame["weight"]
    path = tmp_path / "empties.arrow"
    schema = pa.schema([("y_true", pa.uint8()), ("y_pred", pa.float32())])
    with pa.ipc.new_file(path, schema) as writer:  # uncompressed: batches are views of the mapping
        for start, stop in [(0, 0), (0, 7_000), (7_000, 7_000), (7_000, 7_000), (7_000, N), (N, N)]:
            writer.write_batch(pa.record_batch([y[start:stop], p[start:stop]], schema=schema))
    report = score_file(path, batch_rows=3_000, quiet=True)
    assert report.rows == N
    assert np.array_equal(report.overall.totals, _sequential(path, 3_000))
    _assert_report({name: getattr(report.overall, name) for name in fastbce._score.FIELDS},
                   fastbce.score(y, p))
    path = tmp_path / "weighted.csv"
    pacsv.write_csv(pa.table({"y_true": y, "y_pred": p, "weight": w}), path)
    report = score_file(path, weight="weight", batch_rows=2_500, quiet=True)
    read = pacsv.read_csv(path)
    _assert_report({name: getattr(report.overall, name) for name in fastbce._score.FIELDS},
                   fastbce.score(y, read["y_pred"].to_numpy(), sample_weight=read["weight"].to_numpy()))


def test_groups_and_labels_scored_side_by_side_are_bit_identical(files):
    for options in ({"group_by": "segment"}, {"label_cols": "y_true_*"}, {"weight": "weight"}):
        reports = [score_file(files["parquet"], batch_rows=1_000, threads=t, quiet=True, **options)
                   for t in (1, 2)]
        assert np.array_equal(reports[0].overall.totals, reports[1].overall.totals), options
        if reports[0].per is not None:
            assert np.array_equal(reports[0].per.totals, reports[1].per.totals), options


# ---------------------------------------------------------------------------------------------
# Errors in the reader or a scorer: raised, in file order, with every thread joined
# ---------------------------------------------------------------------------------------------


def _scoring_threads():
    import threading

    return [thread for thread in threading.enumerate() if thread.name.startswith("fastbce-score")]


def _failing_reader(monkeypatch, fail_after):
    """open_data whose batches raise OSError after ``fail_after`` batches."""
    import fastbce._report as report

    def open_failing(path):
        data = open_data(path)
        batches = data.batches

        def failing(columns, batch_rows):
            for i, batch in enumerate(batches(columns, batch_rows)):
                if i == fail_after:
                    raise OSError("disk on fire")
                yield batch
        data.batches = failing
        return data

    monkeypatch.setattr(report, "open_data", open_failing)


@pytest.mark.parametrize("fail_after", [0, 1, 5])
def test_a_reading_error_propagates_and_the_threads_are_joined(files, monkeypatch, fail_after):
    _failing_reader(monkeypatch, fail_after)
    with pytest.raises(OSError, match="disk on fire"):
        score_file(files["parquet"], batch_rows=1_000, threads=2, quiet=True)
    assert _scoring_threads() == []


def test_a_scoring_error_propagates_first_in_file_order(tmp_path, monkeypatch):
    rng = np.random.default_rng(4)
    y, p = _scores_in_memory(rng, 10_000)
    p[6_500] = 1.5  # in the 7th batch of 1,000 rows
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"y_true": y, "y_pred": p}), path)
    for threads in (1, 2):
        with pytest.raises(ValueError, match=r"y_pred has probabilities outside \[0, 1\]"):
            score_file(path, batch_rows=1_000, threads=threads, quiet=True)
        assert _scoring_threads() == []
    # a reading error after the bad batch comes second: the scoring error is raised
    _failing_reader(monkeypatch, fail_after=7)
    with pytest.raises(ValueError, match=r"y_pred has probabilities outside \[0, 1\]"):
        score_file(path, batch_rows=1_000, threads=2, quiet=True)
    assert _scoring_threads() == []


def test_a_corrupt_row_group_exits_2_without_hanging(tmp_path):
    rng = np.random.default_rng(5)
    y, p = _scores_in_memory(rng, 40_000)
    path = tmp_path / "corrupt.parquet"
    pq.write_table(pa.table({"y_true": y, "y_pred": p}), path, row_group_size=10_000,
                   compression="snappy")
    metadata = pq.ParquetFile(path).metadata
    column = metadata.row_group(2).column(1)  # the predictions of the third row group
    data = bytearray(path.read_bytes())
    start = column.data_page_offset + 64
    data[start:start + 2_000] = rng.integers(0, 256, 2_000, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    result = _run("score", path, "--batch-rows", "5000")  # subprocess with a timeout of 120 s
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"fastbce: error: cannot read {path}: ") and "Traceback" not in result.stderr


def test_the_bench_file_row_reads_the_data_it_was_given(monkeypatch, tmp_path):
    from fastbce import bench
    from fastbce.bench import files as bench_files

    data = bench.make_data(20_000)
    table = pq.read_table(data["parquet"])  # a file of its own, outside a run
    assert table.column_names == ["y_true", "y_pred"] and table.num_rows == 20_000
    assert np.array_equal(table["y_true"].to_numpy(), data["yu8"])
    assert np.array_equal(table["y_pred"].to_numpy(), data["p"])
    assert bench.make_ceiling("file", data, 1)().num_rows == 20_000
    assert bench.ceiling_label("file") == "pyarrow read_table of the 2 columns"
    monkeypatch.setenv(bench_files.DATA_DIR, str(tmp_path))  # a run: one file per size, shared
    first, second = bench.make_data(20_000)["parquet"], bench.make_data(20_000)["parquet"]
    assert first == second == tmp_path / "scores-20000.parquet"
    got = bench.CONTENDERS[bench.reference_name()].make("file", data, 2)()  # the auto backend
    expected = fastbce.score(data["yu8"], data["p"])
    assert got == pytest.approx(
        (expected.log_loss, expected.positive_rate, expected.mean_prediction), rel=1e-12)
