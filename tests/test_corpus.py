"""Bit-exact regression corpus: every call of ``tests/corpus.py`` gives the outputs recorded in
``tests/data/corpus.json`` (SHA-256 of each output's bytes, plus its type, dtype and shape).

A refactor that must not change any output runs this test unchanged; a change of outputs that is
intended is recorded again with ``.venv/bin/python tests/corpus.py --write`` (and reviewed: the
JSON diff shows which calls changed, with a readable summary of the old and new values).

Only the public API is called (``fastbce.*`` and ``fastbce.dask.*``), never private modules.

Skips: the bits of the compiled fast path (Cython and Numba backends) depend on fused
multiply-adds, so the compiled-backend cases (and the Dask cases that run them) are skipped, and
only then, when the running CPU lacks FMA (no x86-64-v3 features: AVX2, FMA, ...; the Cython
SIMD variant would be the baseline one) or ``FASTBCE_SIMD=base`` is set. The NumPy-backend cases
always run. The ``fastbce.dask`` cases need the ``[dask]`` extra (``make install`` installs it).

Runtime: about 10 s with a warm Numba cache. A cold one (a fresh worktree, changed kernel
sources) first compiles the 7 fast-path and 17 general-kernel Numba signatures the corpus uses:
about 5 minutes on 2 shared cores.

The record was made on one machine: NumPy's own vectorised ``log``/``exp`` (which the NumPy
backend and a few finishing steps use) may round differently on another NumPy version or CPU
family. A failure message says when the environment differs from the recorded one.
"""

import importlib.util

import pytest

import corpus

_RECORD = corpus.load_record() if corpus.DATA_PATH.exists() else None
_HAS_FMA = corpus.cpu_has_fma()
_HAS_DASK = importlib.util.find_spec("dask") is not None


def _environment_note():
    """What differs between the recorded environment and this one (for a failure message)."""
    recorded = _RECORD["environment"]
    current = corpus.environment()
    keys = ("simd_variant", "numpy", "numba", "dask", "python", "machine", "numpy_cpu_features")
    diffs = [f"{key}: recorded {recorded.get(key)!r}, now {current.get(key)!r}"
             for key in keys if recorded.get(key) != current.get(key)]
    if not diffs:
        return "environment as recorded (same SIMD variant and NumPy/Numba/Dask versions)"
    return "environment differs from the recorded one:\n    " + "\n    ".join(diffs)


def _compare(expected, got):
    """Lines describing each output that differs (empty when all are identical)."""
    problems = []
    for name in list(expected) + [n for n in got if n not in expected]:
        if name not in got:
            problems.append(f"output {name!r} is missing (recorded: {expected[name]['summary']})")
            continue
        if name not in expected:
            problems.append(f"output {name!r} is new (not recorded): {got[name]['summary']}")
            continue
        want, have = expected[name], got[name]
        fields = [f for f in ("type", "dtype", "shape", "sha256") if want[f] != have[f]]
        if fields:
            detail = ", ".join(f"{f} {want[f]!r} -> {have[f]!r}" for f in fields if f != "sha256")
            same = ("\n      (the summaries agree: the difference is in bits or elements they do "
                    "not show)" if want["summary"] == have["summary"] else "")
            problems.append(
                f"output {name!r} differs ({', '.join(fields)}){': ' + detail if detail else ''}\n"
                f"      recorded: {want['summary']}  [sha256 {want['sha256'][:12]}]\n"
                f"      now:      {have['summary']}  [sha256 {have['sha256'][:12]}]{same}")
    return problems


@pytest.mark.parametrize("call", corpus.CALLS, ids=[c.id for c in corpus.CALLS])
def test_outputs_are_bit_identical(call):
    assert _RECORD is not None, f"{corpus.DATA_PATH} is missing: run `python tests/corpus.py --write`"
    if call.backend in corpus.COMPILED and not _HAS_FMA:
        pytest.skip("the compiled fast path's bits depend on FMA, which this CPU lacks "
                    "(or FASTBCE_SIMD=base is set)")
    if call.id.startswith("dask.") and not _HAS_DASK:
        pytest.skip("fastbce.dask needs the [dask] extra")
    expected = _RECORD["calls"].get(call.id)
    assert expected is not None, (f"call {call.id} is not in {corpus.DATA_PATH.name}: record it with "
                                  "`python tests/corpus.py --write` (only if its outputs are meant to be new)")
    problems = _compare(expected["outputs"], corpus.run_call(call))
    if problems:
        pytest.fail(f"call {call.id}:\n  " + "\n  ".join(problems) + "\n  " + _environment_note(),
                    pytrace=False)


def test_record_and_corpus_list_the_same_calls():
    """No recorded call has been dropped from (or renamed in) the corpus, and the corpus is fully
    recorded."""
    assert _RECORD is not None, f"{corpus.DATA_PATH} is missing: run `python tests/corpus.py --write`"
    ids = [c.id for c in corpus.CALLS]
    recorded = list(_RECORD["calls"])
    missing = sorted(set(ids) - set(recorded))
    stale = sorted(set(recorded) - set(ids))
    assert not missing and not stale, (f"not recorded: {missing[:5]} ({len(missing)}); "
                                       f"recorded but not in the corpus: {stale[:5]} ({len(stale)})")
    assert _RECORD["n_calls"] == len(ids)


def test_corpus_covers_the_public_api():
    """Every public function (of fastbce and fastbce.dask) is called on every backend."""
    import fastbce

    public = [name for name in fastbce.__all__
              if name not in ("ScoreResult", "get_num_threads", "set_num_threads")]
    if _HAS_DASK:
        import fastbce.dask

        public += [f"dask.{name}" for name in fastbce.dask.__all__]
    covered = {(c.id.split("|")[0], c.backend) for c in corpus.CALLS}
    absent = [(name, backend) for name in public for backend in corpus.BACKENDS
              if (name, backend) not in covered]
    assert not absent, f"public functions without a corpus call: {absent}"


def test_digest_tells_outputs_apart():
    """The hash sees one ulp, a sign of zero, a dtype and a shape; NaN payloads are canonical."""
    import numpy as np

    a = np.linspace(0.0, 1.0, 7)
    b = a.copy()
    b[3] = np.nextafter(b[3], 2.0)
    assert corpus.digest(a)["sha256"] != corpus.digest(b)["sha256"]
    assert corpus.digest(0.0)["sha256"] != corpus.digest(-0.0)["sha256"]
    assert corpus.digest(a)["dtype"] != corpus.digest(a.astype(np.float32))["dtype"]
    assert corpus.digest(a[:6])["shape"] != corpus.digest(a[:6].reshape(2, 3))["shape"]
    assert corpus.digest(np.asfortranarray(a[:6].reshape(2, 3))) == corpus.digest(a[:6].reshape(2, 3))
    nan_bits = np.array([np.nan, -np.nan])
    assert corpus.digest(nan_bits[:1]) == corpus.digest(nan_bits[1:])
    assert corpus.digest(float("nan"))["sha256"] != corpus.digest(float("inf"))["sha256"]
