"""Platforms: Numba's threading layers (concurrent callers, fork, same results), the launch lock,
show_config, and the declared dependencies on platforms without a tbb wheel."""

import json
import os
import shutil
import subprocess
import sys
import threading
import tomllib
from contextlib import nullcontext
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

import fastbce
from fastbce import _config

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("tbb", "omp", "workqueue")


# ---- every threading layer, each in its own process ------------------------------------------

@pytest.fixture(scope="module")
def layer_runs(tmp_path_factory):
    """{layer: what tests/layer_check.py reports under NUMBA_THREADING_LAYER=layer}, or the reason
    the layer cannot load here. One Numba cache for the three: the first run compiles the kernels
    (about a minute on 2 cores), the others load them."""
    cache = tmp_path_factory.mktemp("numba-cache")
    reports = tmp_path_factory.mktemp("layer-reports")
    runs = {}
    for layer in LAYERS:
        env = {k: v for k, v in os.environ.items() if k != "FASTBCE_NUM_THREADS"}
        env.update(NUMBA_THREADING_LAYER=layer, NUMBA_CACHE_DIR=str(cache))
        report = reports / f"{layer}.json"
        result = subprocess.run([sys.executable, str(ROOT / "tests" / "layer_check.py"), str(report)],
                                env=env, capture_output=True, text=True, timeout=600)
        if result.returncode != 0 and "No threading layer could be loaded" in result.stderr:
            runs[layer] = f"the {layer} threading layer does not load here"
            continue
        assert result.returncode == 0, f"{layer}: exit code {result.returncode}\n{result.stderr[-3000:]}"
        runs[layer] = json.loads(report.read_text())
    return runs


def _run(layer_runs, layer):
    run = layer_runs[layer]
    if isinstance(run, str):
        pytest.skip(run)
    return run


@pytest.mark.parametrize("layer", LAYERS)
def test_concurrent_callers_on_every_layer(layer_runs, layer):
    """8 Python threads calling at once get the serial results, and the process survives (on
    workqueue it is terminated without the lock)."""
    run = _run(layer_runs, layer)
    assert run["layer"] == layer == run["forced"]
    assert run["serialised"] is (layer != "tbb")
    assert run["errors"] == [] and run["mismatches"] == []
    assert run["calls"] == 72


@pytest.mark.parametrize("layer", LAYERS)
def test_fork_after_a_parallel_call_on_every_layer(layer_runs, layer):
    """A forked child either computes the parent's bits or, on omp (where Numba would terminate
    it), gets a RuntimeError that says what to do."""
    run = _run(layer_runs, layer)
    status, value = run["fork"]
    if layer == "omp":
        assert status == "RuntimeError", run["fork"]
        assert "forked after its parent ran GNU OpenMP" in value and "spawn" in value
    else:
        assert status == "ok", run["fork"]
        assert value == run["serial"]["fast-mean"]
    if "cython" in run["fork_cython"]:  # Cython in the child: on one thread after omp, never hung
        status, value = run["fork_cython"]["cython"]
        assert status == "ok", run["fork_cython"]
        assert float.fromhex(value) == pytest.approx(float.fromhex(run["serial"]["fast-mean"]), rel=1e-6)


def test_same_results_on_every_layer_and_thread_count(layer_runs):
    runs = {layer: run for layer, run in layer_runs.items() if not isinstance(run, str)}
    assert "workqueue" in runs  # Numba's built-in layer always loads
    reference = next(iter(runs.values()))["serial"]
    for layer, run in runs.items():
        assert run["serial"] == reference, layer
        assert run["one_thread"] == reference, layer
    # and they are the right values: the NumPy reference on the same inputs
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from layer_check import inputs
    finally:
        sys.path.pop(0)
    y, p32, _ = inputs()
    expected = fastbce.bce(y, p32, backend="numpy")
    assert float.fromhex(reference["fast-mean"]) == pytest.approx(expected, rel=1e-6)


# ---- the lock, in this process -----------------------------------------------------------------

@pytest.fixture
def layer(monkeypatch):
    """Pretend Numba runs on a given layer (no kernel is launched by these tests)."""
    def set_layer(name, forked_after_openmp=False, forked_after_numba_omp=False):
        monkeypatch.setattr(_config, "_layer", name)
        monkeypatch.setattr(_config, "_forked_after_openmp", forked_after_openmp)
        monkeypatch.setattr(_config, "_forked_after_numba_omp", forked_after_numba_omp)
    return set_layer


def test_launch_guard_follows_the_layer_rule(layer):
    for name, locked in (("tbb", False), ("omp", True), ("workqueue", True), ("some-new-layer", True)):
        layer(name)
        guard = _config.launch_guard("numba")
        assert (guard is _config._launch_lock) is locked, name
        assert _config.calls_serialised(name) is locked
    for backend in ("cython", "numpy"):
        layer("workqueue")
        assert isinstance(_config.launch_guard(backend), nullcontext)


def test_a_child_forked_after_openmp_gets_a_clear_error(layer):
    layer("omp", forked_after_openmp=True)
    with pytest.raises(RuntimeError, match="forked after its parent ran GNU OpenMP.*spawn"):
        _config.launch_guard("numba")
    layer("workqueue", forked_after_openmp=True)  # workqueue and tbb run in a forked child
    assert _config.launch_guard("numba") is _config._launch_lock
    layer("omp")
    assert _config.launch_guard("numba") is _config._launch_lock


def test_cython_runs_on_one_thread_in_a_child_forked_after_numba_omp(layer):
    layer("omp", forked_after_openmp=True, forked_after_numba_omp=True)
    assert _config.fork_safe_threads("cython", 2) == 1
    assert _config.fork_safe_threads("numpy", 2) == 2
    layer("omp", forked_after_openmp=True)  # after Cython's own regions: its own flag handles it
    assert _config.fork_safe_threads("cython", 2) == 2


def test_the_lock_serialises_launches(monkeypatch, layer):
    """While one call holds the lock, another Numba launch waits; a Cython one does not."""
    layer("workqueue")
    order = []
    lock = _config.launch_guard("numba")
    with lock:
        waiter = threading.Thread(target=lambda: (_config.launch_guard("numba").acquire(), order.append("numba"),
                                                  _config._launch_lock.release()))
        waiter.start()
        waiter.join(timeout=0.5)
        assert waiter.is_alive() and order == []  # queued behind the holder
        with _config.launch_guard("cython"):
            order.append("cython")
        order.append("released")
    waiter.join(timeout=10)
    assert order == ["cython", "released", "numba"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_gets_a_free_lock(layer):
    """A lock held by another thread at the fork is not held in the child, which knows it was forked
    after the (pretended) omp layer started."""
    layer("omp")
    with _config._launch_lock:
        pid = os.fork()
        if pid == 0:  # the child: exit code 0 only if the lock is free and the fork is known
            known = _config._forked_after_openmp and _config._forked_after_numba_omp
            os._exit(0 if known and _config._launch_lock.acquire(timeout=5) else 1)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_engine_enters_the_guard_of_its_backend(monkeypatch, layer):
    """run_pass enters the guard of the backend it runs on, around the kernel call."""
    entered = []

    class Spy:
        def __init__(self, backend):
            self.backend = backend

        def __enter__(self):
            entered.append(self.backend)

        def __exit__(self, *exc):
            return False

    from fastbce import _engine
    monkeypatch.setattr(_engine, "launch_guard", Spy)
    fastbce.bce([0.0, 1.0], [0.3, 0.6], backend="numpy")
    assert entered == ["numpy"]


# ---- show_config --------------------------------------------------------------------------------

def test_show_config_names_backend_variant_layer_and_lock(capsys):
    info = fastbce.show_config(mode="dicts")
    layer = info["numba threading layer"]
    assert layer in LAYERS
    assert info["numba calls serialised"] is (layer != "tbb")
    assert info["default backend"] in ("cython", "numba")
    if info["cython extension"] == "built":
        assert info["cython simd variant"] == fastbce._backends.load_backend("cython").SIMD_VARIANT
    assert fastbce.show_config() is None
    printed = capsys.readouterr().out
    assert f"numba threading layer   {layer}" in printed
    assert "numba calls serialised" in printed and "default backend" in printed
    with pytest.raises(ValueError, match="mode must be"):
        fastbce.show_config(mode="json")


# ---- dependencies per platform ------------------------------------------------------------------

# Platforms whose wheels the package registry lacks, per required package (checked with
# `pip download PACKAGE --platform TAG --only-binary=:all:`): tbb has none for Linux aarch64 nor
# for macOS arm64.
NO_WHEEL = {"tbb": {"linux-aarch64", "macos-arm64"}}
PLATFORMS = {
    "linux-aarch64": dict(sys_platform="linux", platform_system="Linux", platform_machine="aarch64",
                          os_name="posix"),
    "macos-arm64": dict(sys_platform="darwin", platform_system="Darwin", platform_machine="arm64",
                        os_name="posix"),
    "linux-x86_64": dict(sys_platform="linux", platform_system="Linux", platform_machine="x86_64",
                         os_name="posix"),
    "windows-amd64": dict(sys_platform="win32", platform_system="Windows", platform_machine="AMD64",
                          os_name="nt"),
}


def required_on(platform, requirements):
    """The names of the requirements that pip installs on ``platform`` (no extras)."""
    environment = {**default_environment(), **PLATFORMS[platform], "extra": ""}
    return {r.name for r in map(Requirement, requirements) if r.marker is None or r.marker.evaluate(environment)}


def declared_dependencies():
    with open(ROOT / "pyproject.toml", "rb") as file:
        return tomllib.load(file)["project"]["dependencies"]


@pytest.mark.parametrize("platform", ["linux-aarch64", "macos-arm64"])
def test_every_dependency_has_a_wheel_on_arm(platform):
    required = required_on(platform, declared_dependencies())
    assert {"numpy", "numba"} <= required
    lacking = {name for name in required if platform in NO_WHEEL.get(name, ())}
    assert lacking == set(), f"{platform}: no wheel for {sorted(lacking)}"


@pytest.mark.parametrize("platform", ["linux-x86_64", "windows-amd64"])
def test_tbb_is_still_required_where_it_has_wheels(platform):
    assert "tbb" in required_on(platform, declared_dependencies())


def test_the_installed_metadata_declares_the_same():
    """What pip sees (the installed metadata) is pyproject's list, markers included."""
    from importlib.metadata import requires

    installed = [r for r in requires("fastbce") if "extra ==" not in r]
    for platform in PLATFORMS:
        assert required_on(platform, installed) == required_on(platform, declared_dependencies()), platform


def test_no_wheel_table_fails_a_bad_declaration():
    """The check can fail: an unconditional tbb is caught."""
    bad = [d.split(";")[0] if d.startswith("tbb") else d for d in declared_dependencies()]
    assert "tbb" in required_on("linux-aarch64", bad)
    assert {n for n in required_on("macos-arm64", bad) if "macos-arm64" in NO_WHEEL.get(n, ())} == {"tbb"}


# ---- the extension build on a compiler without OpenMP ------------------------------------------

@pytest.fixture(scope="module")
def setup_script():
    """setup.py's globals, without running setup(). Cython, a build requirement, may be absent:
    its cythonize is replaced by one that, as Cython's, returns new Extensions that keep the
    compile arguments but not ``optional``."""
    import runpy
    import types
    from unittest import mock

    from setuptools import Extension

    def cythonize(extensions, **options):
        return [Extension(e.name, [s.replace(".pyx", ".c") for s in e.sources], include_dirs=e.include_dirs,
                          extra_compile_args=e.extra_compile_args, extra_link_args=e.extra_link_args)
                for e in extensions]

    build = types.ModuleType("Cython.Build")
    build.cythonize = cythonize
    with mock.patch.dict(sys.modules, {"Cython": types.ModuleType("Cython"), "Cython.Build": build}):
        return runpy.run_path(str(ROOT / "setup.py"), run_name="setup_probe")


def _compiler(executable):
    import setuptools  # noqa: F401 (its distutils)
    from distutils.ccompiler import new_compiler
    from distutils.sysconfig import customize_compiler

    compiler = new_compiler()
    customize_compiler(compiler)
    if executable is not None:
        compiler.set_executables(compiler=executable, compiler_so=executable, linker_exe=executable)
    return compiler


@pytest.fixture
def clang_without_openmp(tmp_path):
    """A C compiler that rejects -fopenmp as Apple clang does (gcc otherwise)."""
    script = tmp_path / "cc-without-openmp"
    script.write_text('#!/bin/sh\nfor a in "$@"; do [ "$a" = -fopenmp ] && '
                      '{ echo "clang: error: unsupported option \'-fopenmp\'" >&2; exit 1; }; done\n'
                      'exec cc "$@"\n')
    script.chmod(0o755)
    return str(script)


@pytest.mark.skipif(sys.platform != "linux", reason="the probe is exercised with this machine's cc")
def test_openmp_probe(setup_script, clang_without_openmp):
    assert setup_script["has_openmp"](_compiler(None)) is True  # gcc here
    assert setup_script["has_openmp"](_compiler(clang_without_openmp)) is False


@pytest.mark.skipif(sys.platform != "linux", reason="the probe is exercised with this machine's cc")
def test_no_openmp_skips_the_optional_extension(setup_script, clang_without_openmp):
    from setuptools import Distribution
    from setuptools.errors import CompileError

    command = setup_script["BuildExtension"](Distribution())
    command.compiler = _compiler(clang_without_openmp)
    [extension] = setup_script["ext_modules"]  # what setup() builds
    with pytest.raises(CompileError, match="does not build OpenMP programs"):
        command.build_extension(extension)
    # a build error of an optional extension is a warning: the install goes on without it
    assert extension.optional is (os.environ.get("FASTBCE_REQUIRE_EXTENSION") != "1")
    warnings = []
    command.warn = warnings.append
    command.extensions = [extension]
    if extension.optional:
        command.build_extensions()  # the build step setuptools runs: a warning, no error
        assert len(warnings) == 1 and "does not build OpenMP programs" in warnings[0]


# ---- the C kernels on aarch64 (cross-compiled, under qemu) -------------------------------------

_CROSS_TOOLS = ("aarch64-linux-gnu-gcc", "qemu-aarch64", "make")


@pytest.mark.skipif(os.environ.get("FASTBCE_CHECK_AARCH64") != "1",
                    reason="set FASTBCE_CHECK_AARCH64=1 to run `make check-aarch64` (its two -O3 "
                           "builds take 1-2 minutes on 2 cores)")
@pytest.mark.skipif(not all(map(shutil.which, _CROSS_TOOLS)),
                    reason="needs Debian's gcc-aarch64-linux-gnu and qemu-user (apt-get install "
                           "gcc-aarch64-linux-gnu qemu-user), and make")
def test_aarch64_kernels_give_the_bits_of_the_x86_fma_variants():
    """`make check-aarch64`: the C fast path's aarch64 variant, run under qemu, gives the same bits
    as x86-64-v4 and v3 on fixed inputs (and the no-FMA baseline does not)."""
    result = subprocess.run(["nice", "-n", "15", "make", "-j2", "check-aarch64"], cwd=ROOT,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert "of 'aarch64 (NEON, FMA)' under qemu equal those of 'x86-64-v" in summary, summary
