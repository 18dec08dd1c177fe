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
