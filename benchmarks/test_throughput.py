"""Every operation × size × thread count × contender, plus the streaming ceiling, in groups
``op|size|threads``. Cases are generated in conftest.py from fastbce.bench's definitions."""

import pytest

from fastbce import bench
from conftest import FRAMEWORKS


def test_throughput(benchmark, case, data_for, record, pytestconfig):
    op, size, threads, name = case
    if name != "ceiling":
        contender = bench.CONTENDERS[name]
        reason = contender.missing()
        if reason:
            pytest.skip(reason)
        if threads > 1 and not contender.threaded:
            pytest.skip(f"{name} has no threads: see its 1-thread case")
        if name in FRAMEWORKS and threads != pytestconfig.framework_threads:
            pytest.skip(f"{name} fixes its thread pool at start-up; this process runs it with "
                        f"{pytestconfig.framework_threads} (--framework-threads)")
    if bench.OPERATIONS[op].unavailable:
        pytest.skip(bench.OPERATIONS[op].unavailable)
    data = data_for(size)
    bench.apply_threads(threads)
    try:
        function = (bench.make_ceiling(op, data, threads) if name == "ceiling"
                    else contender.make(op, data, threads))
    except bench.Unsupported as reason:
        pytest.skip(str(reason))
    function()  # warm-up: compilation and tracing stay out of the timings
    benchmark.group = f"{op}|{size}|{threads}"
    benchmark.name = name
    benchmark.extra_info.update(elements=size, contender=name, op=op, threads=threads)
    benchmark(function)
    record((op, size, threads, name), benchmark)
