"""The benchmark machinery (fastbce.bench, `fastbce bench`): it runs, it writes a table and a
plot with the expected columns, and every contender computes the same quantity as fastbce.
Timings are never asserted."""

import json
import os
import struct
import subprocess
import sys
import tomllib

import numpy as np
import pytest

import fastbce
from fastbce import bench

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _values(result):
    if isinstance(result, tuple):
        return [_values(item) for item in result]
    if hasattr(result, "detach"):  # torch
        result = result.detach().numpy()
    return np.asarray(result, dtype=np.float64)


@pytest.fixture(scope="module")
def small_data():
    return bench.make_data(20_000)  # every one of the 1,000 groups has members


def test_make_data_shapes_and_dtypes(small_data):
    d = small_data
    assert d["y"].dtype == d["p"].dtype == d["x"].dtype == d["ys"].dtype == np.float32
    assert set(np.unique(d["y"])) <= {0.0, 1.0}
    assert 0 < d["p"].min() and d["p"].max() < 1
    assert d["y2"].shape == (20_000 // bench.N_LABELS, bench.N_LABELS)
    assert np.shares_memory(d["y2"], d["y"])  # 2-D views, no copies
    assert d["g"].dtype == np.int32 and d["g"].max() < bench.N_GROUPS
    with pytest.raises(ValueError, match="multiples"):
        bench.make_data(150)


@pytest.mark.parametrize("name", [n for n in bench.CONTENDERS if n != "fastbce[numpy]"])
def test_contenders_compute_the_same_quantity(name, small_data):
    """Every installed contender agrees with fastbce's float64 reference on every operation it
    supports (float32 arithmetic: relative error well under 1e-5; empty groups are NaN in all)."""
    contender = bench.CONTENDERS[name]
    if contender.missing():
        pytest.skip(contender.missing())
    reference = bench.CONTENDERS["fastbce[numpy]"]
    supported = 0
    for op in bench.MEASURED_OPS:
        try:
            function = contender.make(op, small_data, 1)
        except bench.Unsupported as reason:
            assert str(reason)
            continue
        supported += 1
        got, want = _values(function()), _values(reference.make(op, small_data, 1)())
        for g, w in zip(got, want) if isinstance(want, list) else [(got, want)]:
            assert g.shape == w.shape, op
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6 * np.nanmax(np.abs(w)), err_msg=op)
    assert supported >= 1


def test_ceiling_kernels_compute_sums(small_data):
    d = small_data
    total = bench.make_ceiling("mean", d, 1)()
    assert total == pytest.approx(float(d["y"].sum(dtype=np.float64) + d["p"].sum(dtype=np.float64)))
    total = bench.make_ceiling("per_group", d, 2)()
    assert total == pytest.approx(float(d["y"].sum(dtype=np.float64) + d["p"].sum(dtype=np.float64)
                                        + d["g"].sum(dtype=np.float64)))
    assert bench.ceiling_label("grad") == "read y, x, write 1 new array"
    assert bench.ceiling_label("value_and_grad_out") == "read y, x, write 1 preallocated"


def test_time_call_reports_a_median():
    calls = []
    seconds, repeats, inner = bench.time_call(lambda: calls.append(1), budget=0.001, min_repeats=3)
    assert seconds > 0 and repeats >= 3 and inner >= 1
    assert len(calls) == 2 + repeats * inner


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
def test_peak_extra_memory_sees_native_allocations():
    peak = bench.peak_extra_memory(lambda: np.ones(50 * 2**20 // 8))  # 50 MiB, outside tracemalloc's view
    assert peak is not None and peak >= 40 * 2**20


def test_thread_environment_sets_every_library():
    env = bench.thread_environment(1)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
                 "FASTBCE_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
        assert env[name] == "1"
    assert "intra_op_parallelism_threads=1" in env["XLA_FLAGS"]


def test_benchmarks_are_not_in_the_default_test_run():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as file:
        options = tomllib.load(file)["tool"]["pytest"]["ini_options"]
    assert options["testpaths"] == ["tests"]


def _synthetic_results():
    """A results dictionary as `fastbce bench` writes it, with made-up timings."""
    timings = []
    for threads in (1, 2):
        for size in (1000, 100_000):
            for name, seconds_per_element in (("ceiling", 1e-9), ("fastbce[numba]", 4e-9),
                                              ("numpy", 8e-9)):
                if name == "numpy" and threads == 2:
                    continue  # no threads: measured once
                timings.append({"contender": name, "op": "mean", "size": size, "threads": threads,
                                "seconds": size * seconds_per_element / threads ** (name != "numpy"),
                                "repeats": 5, "inner": 1})
    contenders = {name: {"skipped": None, "threaded": name != "numpy", "calls": {"mean": "f(y, p)"},
                         "unsupported": {}} for name in ("fastbce[numba]", "numpy")}
    contenders["jax"] = {"skipped": "jax is not installed", "threaded": True, "calls": {}, "unsupported": {}}
    return {"meta": {"command": "fastbce bench --quick", "mode": "quick", "date": "2026-01-01 00:00 UTC",
                     "machine": {"cpu": "Test CPU", "cores": 2, "machine": "x86_64", "python": "3.11",
                                 "memory_bytes": 2**34},
                     "versions": {"numpy": np.__version__}, "load_before": [0.1, 0.1, 0.1],
                     "load_after": [0.2, 0.1, 0.1], "sizes": [1000, 100_000], "ops": ["mean"],
                     "threads": [1, 2], "budget_s": 0.01, "min_repeats": 3, "memory_size": 1000,
                     "seed": 0, "reference": "fastbce[numba]", "contenders": contenders},
            "timings": timings, "skips": [], "errors": [], "info": [],
            "startup": [{"contender": "numpy", "numpy_import_s": 0.1, "import_s": 0.0, "first_call_s": 0.001,
                         "first_op": "mean", "cold_cache": False}],
            "memory": [{"contender": "numpy", "op": "mean", "size": 1000, "peak_extra_bytes": 3 * 2**20,
                        "input_bytes": 2**20}]}


def test_report_names_the_thread_waiting_variables_that_were_set():
    results = _synthetic_results()
    assert "Set in the environment" not in bench.markdown_report(results)
    results["meta"]["thread_waiting"] = {"NUMBA_THREADING_LAYER": "omp", "OMP_WAIT_POLICY": "passive"}
    assert ("Set in the environment of every contender: `NUMBA_THREADING_LAYER=omp`, "
            "`OMP_WAIT_POLICY=passive`.") in bench.markdown_report(results)


def test_markdown_report_table():
    text = bench.markdown_report(_synthetic_results())
    assert "| operation | contender | 1 thread: M elem/s | of ceiling | fastbce × | " \
           "2 threads: M elem/s | of ceiling | fastbce × |" in text
    lines = {line.split("|")[2].strip(): line for line in text.splitlines() if line.startswith("| mean |")}
    # 100,000 elements: ceiling 1000 M/s (1 thread), 2000 M/s (2); fastbce 250 / 500; numpy 125.
    assert lines["ceiling (read y, p)"].split("|")[3].strip() == "1,000"
    fastbce_cells = [c.strip() for c in lines["**fastbce[numba]**"].split("|")]
    assert fastbce_cells[3:6] == ["250", "25%", "1.0×"]
    numpy_cells = [c.strip() for c in lines["numpy"].split("|")]
    assert numpy_cells[3:6] == ["125", "12%", "2.0×"]
    assert numpy_cells[6:9] == ["125†", "6%", "4.0×"]  # fastbce on 2 threads vs numpy's 1 thread
    assert "jax**: skipped, jax is not installed" in text
    assert "fastbce bench --quick" in text and "Test CPU" in text
    assert "3 MiB (3.0×)" in text


def test_bench_command_writes_table_plot_and_json(tmp_path):
    """`fastbce bench` end to end on tiny sizes: worker processes, progress, outputs."""
    command = [sys.executable, "-m", "fastbce", "bench", "--sizes", "1000", "2000", "--ops", "mean", "grad",
               "--contenders", "fastbce[numba]", "numpy", "--budget", "0.001", "--memory-size", "10000",
               "--no-cold-cache", "--output-dir", str(tmp_path)]
    env = {**os.environ, "OMP_WAIT_POLICY": "passive"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    for name in ("BENCHMARKS.md", "BENCHMARKS.png", "BENCHMARKS.json"):
        assert str(tmp_path / name) in done.stdout  # says where the files went
    assert "meas" in done.stderr  # the progress bar

    results = json.loads((tmp_path / "BENCHMARKS.json").read_text())
    assert not results["errors"]
    assert results["meta"]["thread_waiting"].get("OMP_WAIT_POLICY") == "passive"
    measured = {(r["contender"], r["op"], r["size"], r["threads"]) for r in results["timings"]}
    threads = results["meta"]["threads"]
    for op in ("mean", "grad"):
        for size in (1000, 2000):
            for t in threads:
                assert ("ceiling", op, size, t) in measured
                assert ("fastbce[numba]", op, size, t) in measured
            assert ("numpy", op, size, 1) in measured
    assert {s["contender"] for s in results["startup"]} == {"fastbce[numba]", "numpy"}
    assert {(m["contender"], m["op"]) for m in results["memory"]} >= {("numpy", "mean"), ("numpy", "grad")}

    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert "| operation | contender | 1 thread: M elem/s | of ceiling | fastbce × |" in text
    assert "| mean | **fastbce[numba]** |" in text and "| grad | numpy |" in text
    assert "## Start-up time and peak extra memory" in text
    assert "fastbce bench --sizes 1000 2000" in text
    small = {(s["contender"], s["call"]) for s in results["small"]}  # call time, 1,000 elements
    assert small == {("fastbce[numba]", "bce"), ("fastbce[numba]", "bce_grad"),
                     ("fastbce[numba]", "score"), ("numpy", "bce"), ("numpy", "bce_grad")}
    assert all(s["seconds"] > 0 for s in results["small"])
    assert "| contender | bce | bce_grad | score |" in text and "| numpy | " in text
    config = results["meta"]["fastbce_config"]  # fastbce.show_config() of the run
    assert config == fastbce.show_config(mode="dicts")
    assert (f"Numba threading layer {config['numba threading layer']}, concurrent Numba calls "
            f"{'serialised' if config['numba calls serialised'] else 'not serialised'}.") in text

    png = (tmp_path / "BENCHMARKS.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert width >= 600 and height >= 400


def test_report_small_calls_and_cold_starts():
    """The call-time table (bce, bce_grad, score at 1,000 elements against NumPy's formula) and
    the Numba first call per operation with an empty cache."""
    results = _synthetic_results()
    results["small"] = [{"contender": "fastbce[numba]", "call": call, "size": 1000, "seconds": s}
                        for call, s in (("bce", 6e-6), ("bce_grad", 8e-6), ("score", 2.4e-5))]
    results["small"].append({"contender": "numpy", "call": "bce", "size": 1000, "seconds": 1.2e-5})
    results["startup"] += [{"contender": "fastbce[numba]", "numpy_import_s": 0.1, "import_s": 0.5,
                            "first_call_s": s, "first_op": op, "cold_cache": True}
                           for op, s in (("mean", 38.04), ("grad", 39.0))]
    text = bench.markdown_report(results)
    assert "| fastbce[numba] | 6.0 (0.50×) | 8.0 (0.67×) | 24.0 (2.00×) |" in text
    assert "| numpy | 12.0 (1.00×) | — | — |" in text
    assert "| mean | 38.0 |" in text and "| grad | 39.0 |" in text
    assert "(38.04 cold cache)" not in bench.markdown_report(_synthetic_results())
    assert "(38.04 cold cache)" in text
