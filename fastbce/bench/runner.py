"""The measurements: timing, peak memory, thread settings, and the worker processes of a run.

:func:`run` measures each contender (and the ceiling) in a fresh worker process per thread count,
pinned to that many cores, with every library's thread setting at that count; the workers report
their records on stdout, and :func:`fastbce.bench.report.write_outputs` writes the results.
"""

import ctypes
import datetime
import gc
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

from .._backends import load_backend
from .._threads import available_cores, set_num_threads
from .ceiling import make_ceiling
from .calls import small_calls
from .contenders import CONTENDERS, Unsupported, reference_name
from .files import DATA_DIR
from .operations import FIRST_CALL_SIZE, input_bytes, make_data
from .report import write_outputs

# ---------------------------------------------------------------------------------------------
# Threads: set the same way for everyone
# ---------------------------------------------------------------------------------------------

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                     "NUMBA_NUM_THREADS", "FASTBCE_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
                     "TF_NUM_INTEROP_THREADS")
_threadpool_limiter = None
# How Numba picks its threading layer and how OpenMP threads wait between parallel regions: both
# change multi-thread timings, so a report names those that were set.
_WAIT_VARIABLES = ("NUMBA_THREADING_LAYER", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def thread_environment(threads):
    """Environment of a fresh process that runs everything on ``threads`` threads.

    JAX (XLA) and TensorFlow size their thread pools when they start, so this is the only way to
    set their count; the variables cover OpenMP, BLAS, Numba and fastbce too.
    """
    env = {name: str(threads) for name in _THREAD_VARIABLES}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    eigen = "false" if threads == 1 else "true"
    env["XLA_FLAGS"] = f"--xla_cpu_multi_thread_eigen={eigen} intra_op_parallelism_threads={threads}"
    return env


def apply_threads(threads):
    """Set ``threads`` for every library loaded in this process that can change it at run time:
    fastbce's default (contenders also pass ``n_threads``), Numba, PyTorch, BLAS/OpenMP pools
    (threadpoolctl) and TensorFlow (until it has started)."""
    global _threadpool_limiter
    set_num_threads(threads)
    if "numba" in sys.modules:
        load_backend("numba")  # first, so that Numba starts the same threading layer as fastbce
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(threads)
    if "tensorflow" in sys.modules:
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # already started: the environment variables set it
            pass
    try:
        import threadpoolctl
    except ImportError:
        return
    if _threadpool_limiter is not None:
        _threadpool_limiter.restore_original_limits()
    _threadpool_limiter = threadpoolctl.threadpool_limits(limits=threads)


# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------


def time_call(function, budget=0.25, min_repeats=5, max_repeats=1000, sample=2e-3):
    """Median seconds per call after one warm-up call.

    Calls shorter than ``sample`` seconds are timed in loops of ``inner`` calls; the number of
    timed samples fills about ``budget`` seconds, at least ``min_repeats``. The garbage collector
    is off while timing (as in ``timeit``). Returns (seconds, repeats, inner).
    """
    function()
    start = time.perf_counter()
    function()
    once = time.perf_counter() - start
    inner = 1 if once >= sample else max(1, min(10_000, int(sample / max(once, 1e-7))))
    repeats = int(min(max_repeats, max(min_repeats, budget / max(once * inner, 1e-9))))
    enabled = gc.isenabled()
    gc.disable()
    try:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(inner):
                function()
            times.append((time.perf_counter() - start) / inner)
    finally:
        if enabled:
            gc.enable()
    return statistics.median(times), repeats, inner


def _proc_status():
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                values[key] = int(value.split()[0]) * 1024
    return values


def _release_free_memory():
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # give freed heap pages back, so RSS = live data
    except (OSError, AttributeError):
        pass


def peak_extra_memory(function):
    """Peak resident memory above the current level while ``function()`` runs, in bytes.

    Linux RSS high-water mark (VmHWM), reset through /proc/self/clear_refs right before the call,
    so it counts every allocation that touches memory (NumPy, PyTorch, XLA, TensorFlow, Numba),
    which tracemalloc would miss. The returned result is alive at the peak, so outputs count.
    None where /proc is not available.
    """
    _release_free_memory()
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        before = _proc_status()["VmRSS"]
    except (OSError, KeyError):
        return None
    result = function()
    peak = _proc_status()["VmHWM"]
    del result
    return max(0, peak - before)


def _emit(record):
    sys.stdout.write("@@bench " + json.dumps(record) + "\n")
    sys.stdout.flush()


def _first_call(contender, ops, data, threads, first=("mean", "mean_logits")):
    """Prepare and run the contender's first supported operation; returns its name."""
    for op in dict.fromkeys((*first, *ops)):
        try:
            function = contender.make(op, data, threads)
        except Unsupported:
            continue
        function()
        return op
    return None


def worker(config, numpy_import_s, import_s):
    """Body of a worker process: one contender (or the ceiling) at one thread count."""
    threads = config["threads"]
    name = config["contender"]
    apply_threads(threads)
    contender = None if name == "ceiling" else CONTENDERS[name]
    if contender is not None and config.get("startup"):
        data = make_data(FIRST_CALL_SIZE, config["seed"])
        start = time.perf_counter()
        op = (_first_call(contender, [], data, threads, (config["cold_op"],)) if config.get("cold_op")
              else _first_call(contender, config["ops"], data, threads))
        _emit({"kind": "startup", "contender": name, "numpy_import_s": numpy_import_s,
               "import_s": import_s, "first_call_s": time.perf_counter() - start, "first_op": op,
               "cold_cache": bool(config.get("cold_cache"))})
        if config.get("startup_only"):
            return
        # the call time of small calls (fastbce/bench/calls.py), on the same arrays
        for call, function in small_calls(contender, data, threads).items():
            seconds, _, _ = time_call(function, config["budget"], config["min_repeats"])
            _emit({"kind": "small", "contender": name, "call": call, "size": FIRST_CALL_SIZE,
                   "seconds": seconds})
    data = None
    for size in config["sizes"]:
        data = None
        data = make_data(size, config["seed"])
        for op in config["ops"]:
            record = {"contender": name, "op": op, "size": size, "threads": threads}
            try:
                function = (make_ceiling(op, data, threads) if contender is None
                            else contender.make(op, data, threads))
                seconds, repeats, inner = time_call(function, config["budget"], config["min_repeats"])
                _emit({"kind": "time", **record, "seconds": seconds, "repeats": repeats, "inner": inner})
            except Unsupported as reason:
                _emit({"kind": "skip", **record, "reason": str(reason)})
            except Exception as error:  # report and go on with the next operation
                _emit({"kind": "error", **record, "error": f"{type(error).__name__}: {error}"[:300]})
            function = None
    if contender is not None and config.get("memory_size"):
        size = config["memory_size"]
        if data is None or data["y"].size != size:
            data = None
            data = make_data(size, config["seed"])
        for op in config["ops"]:
            try:
                function = contender.make(op, data, threads)
                # The first call at this shape includes compilation or tracing (JAX, TensorFlow)
                # and fills any buffer pool a library keeps; the second is the steady state.
                first = peak_extra_memory(function)
                peak = peak_extra_memory(function)
            except Exception:
                continue
            _emit({"kind": "memory", "contender": name, "op": op, "size": size, "peak_extra_bytes": peak,
                   "first_call_peak_extra_bytes": first, "input_bytes": input_bytes(op, data)})
            function = None
    if "numba" in sys.modules:
        import numba

        _emit({"kind": "info", "contender": name, "threads": threads,
               "numba_threading_layer": _threading_layer(numba)})


def _threading_layer(numba):
    try:
        return numba.threading_layer()
    except ValueError:  # no parallel region has run yet
        return None


# Run as `python -c _BOOTSTRAP config.json modules`: numpy, then the contender's modules are
# imported and timed in a fresh interpreter before anything else (fastbce.bench included).
_BOOTSTRAP = (
    "import sys, time\n"
    "t0 = time.perf_counter()\n"
    "import numpy\n"
    "t1 = time.perf_counter()\n"
    "import importlib\n"
    "for m in filter(None, sys.argv[2].split(',')): importlib.import_module(m)\n"
    "t2 = time.perf_counter()\n"
    "import json, fastbce.bench.runner as r\n"
    "r.worker(json.load(open(sys.argv[1])), t1 - t0, t2 - t1)\n"
)


def _spawn_worker(config, threads, progress, tmpdir, extra_env=None):
    """Run one worker process pinned to ``threads`` cores; yield its records as they arrive."""
    path = os.path.join(tmpdir, f"worker-{config['contender']}-{threads}.json")
    with open(path, "w") as file:
        json.dump(config, file)
    name = config["contender"]
    modules = "numba" if name == "ceiling" else ",".join(CONTENDERS[name].modules)
    env = {**os.environ, **thread_environment(threads), **(extra_env or {})}
    cores = sorted(os.sched_getaffinity(0))
    original = set(cores)
    os.sched_setaffinity(0, cores[:threads])  # the child inherits the pinning at fork
    try:
        process = subprocess.Popen([sys.executable, "-c", _BOOTSTRAP, path, modules], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    finally:
        os.sched_setaffinity(0, original)
    errors = []
    import threading

    reader = threading.Thread(target=lambda: errors.extend(process.stderr), daemon=True)
    reader.start()
    for line in process.stdout:
        if line.startswith("@@bench "):
            yield json.loads(line[len("@@bench "):])
    process.wait()
    reader.join()
    if process.returncode != 0:
        tail = "".join(errors[-5:]).strip()
        progress.write(f"worker {name} ({threads} threads) exited with {process.returncode}: {tail}")
        yield {"kind": "crash", "contender": name, "threads": threads, "returncode": process.returncode,
               "error": tail[-500:]}


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------

MODES = {
    # sizes, seconds of timing per measurement, minimum repeats, size of the memory measurement
    "quick": dict(sizes=(10**3, 10**5, 10**6), budget=0.03, min_repeats=3, memory_size=10**6),
    "default": dict(sizes=(10**3, 10**4, 10**5, 10**6, 10**7), budget=0.2, min_repeats=5,
                    memory_size=10**7),
    "full": dict(sizes=(10**3, 10**4, 10**5, 10**6, 10**7, 10**8), budget=0.5, min_repeats=5,
                 memory_size=10**7),
}


def _versions():
    names = ["fastbce", "numpy", "numba", "llvmlite", "tbb", "torch", "scikit-learn", "jax", "jaxlib",
             "optax", "tensorflow-cpu", "tensorflow", "keras", "threadpoolctl", "pyarrow", "polars"]
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def machine_info():
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = None
    try:
        with open("/proc/meminfo") as meminfo:
            memory = int(meminfo.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return {"cpu": model, "cores": available_cores(), "logical_cpus": os.cpu_count(),
            "memory_bytes": memory, "machine": platform.machine(), "system": platform.system(),
            "python": platform.python_version()}


def _fastbce_config():
    """fastbce.show_config() of this process (its environment is every contender's)."""
    from .._config import config

    return config()


def _load():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def run(*, sizes, ops, contenders, threads, budget, min_repeats, memory_size, output_dir, command,
        seed=0, cold_cache=True, mode="custom", cold_ops=("mean",)):
    """Measure, then write BENCHMARKS.md, BENCHMARKS.png and BENCHMARKS.json into output_dir.
    Returns the results dictionary."""
    from tqdm import tqdm

    reference = reference_name()
    results = {"meta": {
        "command": command, "mode": mode,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(), "versions": _versions(), "load_before": _load(),
        "fastbce_config": _fastbce_config(),
        "sizes": list(sizes), "ops": list(ops), "threads": list(threads), "budget_s": budget,
        "min_repeats": min_repeats, "memory_size": memory_size, "seed": seed, "reference": reference,
        "thread_waiting": {name: os.environ[name] for name in _WAIT_VARIABLES if name in os.environ},
        "contenders": {}},
        "timings": [], "skips": [], "errors": [], "startup": [], "memory": [], "info": [], "workers": [],
        "small": []}
    runnable = []
    for name in contenders:
        contender = CONTENDERS[name]
        reason = contender.missing()
        results["meta"]["contenders"][name] = {"skipped": reason, "threaded": contender.threaded,
                                               "calls": contender.calls, "unsupported": contender.unsupported}
        if reason is None:
            runnable.append(name)
    # One worker per contender and thread count; contenders without threads run at 1 thread.
    # Startup (import + first call) and memory are measured in the worker with the most threads.
    jobs = []
    for t in threads:
        jobs.append(("ceiling", t, {}))
        for name in runnable:
            if CONTENDERS[name].threaded:
                jobs.append((name, t, {}))
            elif t == min(threads):  # once, on one thread, whatever thread counts were asked for
                jobs.append((name, 1, {}))
    last = {name: max(t for n, t, _ in jobs if n == name) for name in runnable}
    if cold_cache and "fastbce[numba]" in runnable:  # a fresh process per operation, empty cache
        for op in cold_ops:
            jobs.append(("fastbce[numba]", max(threads), {"cold_cache": True, "cold_op": op}))
    expected = {(name, t, job.get("cold_op")): 1 if job.get("cold_cache") else len(sizes) * len(ops)
                for name, t, job in jobs}
    total, done = sum(expected.values()), 0
    print(f"fastbce bench: {len(runnable)} contenders + ceiling, {len(ops)} operations, sizes "
          f"{', '.join(f'{s:.0e}' for s in sizes)}, threads {', '.join(map(str, threads))}", flush=True)
    for name, reason in ((n, c["skipped"]) for n, c in results["meta"]["contenders"].items()):
        if reason:
            print(f"  skipped {name}: {reason}", flush=True)
    os.makedirs(output_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmpdir, tqdm(
            total=total, unit="meas", dynamic_ncols=True, file=sys.stderr,
            mininterval=0.2 if sys.stderr.isatty() else 10) as progress:
        for name, t, job in jobs:
            config = {"contender": name, "threads": t, "sizes": list(sizes), "ops": list(ops),
                      "budget": budget, "min_repeats": min_repeats, "seed": seed,
                      "startup": name != "ceiling" and (t == last.get(name) or job.get("cold_cache")),
                      "memory_size": memory_size if name != "ceiling" and t == last.get(name)
                      and not job.get("cold_cache") else None}
            env = {DATA_DIR: tmpdir}  # the data files of the `file` operation, shared by the workers
            if job.get("cold_cache"):
                config.update(cold_cache=True, startup_only=True, cold_op=job["cold_op"])
                env["NUMBA_CACHE_DIR"] = os.path.join(tmpdir, f"cold-numba-cache-{job['cold_op']}")
            progress.set_description(f"{name} ×{t}" + (" cold cache" if job.get("cold_cache") else ""))
            started = time.perf_counter()
            for record in _spawn_worker(config, t, progress, tmpdir, env):
                kind = record.pop("kind")
                if kind in ("time", "skip", "error"):
                    progress.update(1)
                    progress.set_postfix_str(f"{record['op']} {record['size']:.0e}")
                if kind == "startup" and job.get("cold_cache"):
                    progress.update(1)
                key = {"time": "timings", "skip": "skips", "error": "errors", "crash": "errors",
                       "startup": "startup", "memory": "memory", "info": "info", "small": "small"}[kind]
                results[key].append(record)
            results["workers"].append({"contender": name, "threads": t, "cold_cache": bool(job.get("cold_cache")),
                                       "seconds": round(time.perf_counter() - started, 2)})
            done += expected[(name, t, job.get("cold_op"))]
            if progress.n < done:  # a worker that crashed or skipped ahead
                progress.n = done
                progress.refresh()
    results["meta"]["load_after"] = _load()
    paths = write_outputs(results, output_dir)
    for error in results["errors"]:
        print(f"  error: {error.get('contender')} {error.get('op', '')} {error.get('size', '')}: "
              f"{error.get('error')}", flush=True)
    print("Wrote:")
    for path in paths:
        print(f"  {os.path.abspath(path)}")
    return results
