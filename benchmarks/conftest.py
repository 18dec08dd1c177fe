"""pytest-benchmark suite: fastbce against NumPy and the frameworks, in one pytest process.

Run it with ``.venv/bin/python -m pytest benchmarks/`` (it is not part of the default test run,
whose testpaths are ``tests``). Operations, contenders, data, the ceiling and the thread setting
all come from :mod:`fastbce.bench`, which ``fastbce bench`` uses too.

Options:
  --bench-full             add 1e8 elements (marked ``large``; about 2.5 GB of inputs)
  --bench-sizes 1000,1e6   sizes instead of the default 1e3, 1e5, 1e7
  --bench-threads 1,2      thread counts (default: 1 and all cores)
  --bench-ops mean,grad    operations (default: all)
  --bench-contenders ...   contenders (default: all; "ceiling" is one too)
  --framework-threads N    threads for JAX and TensorFlow, which fix their pools when they start
                           (default: all cores); their other thread counts are skipped. ``fastbce
                           bench`` runs every thread count in its own process instead.

Benchmark groups are named ``op|size|threads``, so each group's table compares every contender
with the ceiling on the same data; a summary with elements/s, fraction of the ceiling and ratio
to fastbce follows the run.
"""

import os

import pytest

from fastbce import _threads, bench

DEFAULT_SIZES = (10**3, 10**5, 10**7)
FULL_SIZES = (10**3, 10**4, 10**5, 10**6, 10**7, 10**8)
FRAMEWORKS = ("jax", "tensorflow")

_results = {}  # (op, size, threads, contender) -> median seconds


def _int_list(text):
    return [int(float(item)) for item in text.split(",") if item.strip()]


def pytest_addoption(parser):
    group = parser.getgroup("fastbce benchmarks")
    group.addoption("--bench-full", action="store_true", help="include 1e8 elements (marker 'large')")
    group.addoption("--bench-sizes", help="comma-separated sizes, multiples of 100")
    group.addoption("--bench-threads", help="comma-separated thread counts (default: 1 and all cores)")
    group.addoption("--bench-ops", help="comma-separated operations (default: all)")
    group.addoption("--bench-contenders", help="comma-separated contenders (default: all, with the ceiling)")
    group.addoption("--framework-threads", type=int, help="JAX/TensorFlow threads (default: all cores)")


def pytest_configure(config):
    config.addinivalue_line("markers", "large: 1e8 elements, run only with --bench-full")
    threads = config.getoption("--framework-threads") or _threads.available_cores()
    config.framework_threads = threads
    environment = bench.thread_environment(threads)
    # Only the variables that JAX and TensorFlow read when they start; the other libraries are
    # set per test at run time (bench.apply_threads).
    for name in ("XLA_FLAGS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "TF_CPP_MIN_LOG_LEVEL"):
        os.environ.setdefault(name, environment[name])


def _cases(config):
    cores = _threads.available_cores()
    if config.getoption("--bench-sizes"):
        sizes = _int_list(config.getoption("--bench-sizes"))
    else:
        sizes = FULL_SIZES if config.getoption("--bench-full") else DEFAULT_SIZES
    threads = sorted(set(_int_list(config.getoption("--bench-threads") or "") or (1, cores)))
    ops = (config.getoption("--bench-ops") or ",".join(bench.OPERATIONS)).split(",")
    contenders = (config.getoption("--bench-contenders") or ",".join(["ceiling", *bench.CONTENDERS])).split(",")
    for size in sorted(sizes):
        marks = [pytest.mark.large] if size >= 10**8 else []
        for op in ops:
            for t in threads:
                for name in contenders:
                    yield pytest.param((op, size, t, name), id=f"{op}|{size:.0e}|{t}|{name}", marks=marks)


def pytest_generate_tests(metafunc):
    if "case" in metafunc.fixturenames:
        metafunc.parametrize("case", list(_cases(metafunc.config)))


_data = {}


@pytest.fixture
def data_for():
    """Inputs of one size, kept until a test asks for another size (cases are ordered by size)."""
    def get(size):
        if size not in _data:
            _data.clear()
            _data[size] = bench.make_data(size)
        return _data[size]
    return get


@pytest.fixture
def record():
    def store(key, benchmark):
        stats = getattr(benchmark, "stats", None)
        if stats is not None and getattr(stats, "stats", None) is not None:
            _results[key] = stats.stats.median
    return store


def pytest_benchmark_update_json(config, benchmarks, output_json):
    for entry in output_json["benchmarks"]:
        elements = entry.get("extra_info", {}).get("elements")
        if elements and entry["stats"].get("median"):
            entry["extra_info"]["elements_per_second"] = elements / entry["stats"]["median"]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _results:
        return
    reference = bench.reference_name()
    write = terminalreporter.write_line
    terminalreporter.section("fastbce: elements/s, fraction of the ceiling, fastbce ×")
    write(f"fastbce × = {reference} elements/s ÷ the contender's, same group (above 1: fastbce faster)")
    groups = sorted({key[:3] for key in _results}, key=lambda g: (g[1], list(bench.OPERATIONS).index(g[0]), g[2]))
    for op, size, threads in groups:
        ceiling = _results.get((op, size, threads, "ceiling"))
        ref = _results.get((op, size, threads, reference))
        write(f"{op}|{size:.0e}|{threads}")
        for (o, s, t, name), seconds in _results.items():
            if (o, s, t) != (op, size, threads):
                continue
            rate = size / seconds
            fraction = f"{ceiling / seconds:6.1%}" if ceiling else "      "
            ratio = f"{seconds / ref:7.2f}×" if ref else ""
            write(f"  {name:18s} {rate / 1e6:12,.1f} M elem/s  {fraction} of ceiling  {ratio}")
