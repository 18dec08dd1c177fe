"""The output corpus: a fixed list of calls of the public API whose exact outputs are recorded.

``tests/data/corpus.json`` holds, for every call of :data:`CALLS`, the SHA-256 of the bytes of
each of its outputs (a float, an array, a field of a ScoreResult, a gradient) and a readable
summary of it; ``tests/test_corpus.py`` runs the calls again and asserts the hashes. It guards
refactors that must not change a single output bit.

Regenerate the record (only when an output change is intended) with::

    .venv/bin/python tests/corpus.py --write

Only the public API is called (``fastbce.*``, ``fastbce.dask.*``): module paths of private code
may change. Inputs come from ``numpy.random.default_rng`` with fixed seeds. The calls cover every
public function on the three backends, with arguments chosen to take both the fast path of the
compiled backends and their general kernel (see the comments of each family below).

How outputs are hashed (:func:`digest`): arrays are made C-contiguous, Python and NumPy floats
are hashed as float64 bytes, integers as int64 bytes. NaNs are hashed as the one canonical NaN
(their sign and payload bits are not specified by IEEE 754 and are no output a caller can rely
on): where a NaN appears is still checked, not which NaN it is. The type, dtype and shape of each
output are recorded and checked too.
"""

import functools
import hashlib
import inspect
import json
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

import fastbce

DATA_PATH = Path(__file__).with_name("data") / "corpus.json"
BACKENDS = ("cython", "numba", "numpy")
COMPILED = ("cython", "numba")

# Sizes: N1 and (R2, C2) cross the 32768-element chunk boundary (several chunks, a partial last
# one); (RW, CW) has rows of >= 160 columns (the product path per row of the fast path).
N1 = 70_001
R2, C2 = 1_500, 37
RW, CW = 600, 200
NS = 37  # a small 1-D input (one chunk)
N_GROUPS = 11


# ------------------------------------------------------------------------------------------------
# Inputs
# ------------------------------------------------------------------------------------------------

def _seed(name):
    """A fixed seed per input name (not Python's salted hash)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")


@functools.lru_cache(maxsize=None)
def _base(shape):
    """Shared draws of one shape: probabilities, logits, soft and hard labels, weights, mask."""
    rng = np.random.default_rng(_seed(f"base{shape}"))
    p = rng.random(shape)
    p[rng.random(shape) < 0.01] = 1e-9
    p[rng.random(shape) < 0.01] = 1.0 - 1e-9
    hard = rng.random(shape) < 0.4
    soft = rng.random(shape)
    soft[rng.random(shape) < 0.3] = 0.0
    soft[hard & (rng.random(shape) < 0.5)] = 1.0
    return {
        "p": p,
        "x": rng.standard_normal(shape) * 4.0,
        "hard": hard,
        "soft": soft,
        "w": rng.random(shape) * 3.0,
        "mask": rng.random(shape) < 0.85,
        "groups": rng.integers(0, N_GROUPS, shape[0]),
    }


def _extremes(a, kind, shape, logits):
    """A copy of ``a`` with extreme values at fixed pseudo-random places."""
    a = a.copy()
    rng = np.random.default_rng(_seed(f"extremes{shape}{kind}"))
    flat = a.reshape(-1)
    idx = rng.permutation(flat.size)
    k = max(2, flat.size // 200)
    if logits:
        values = (1e4, -1e4, 50.0, -50.0, 0.0)
    else:
        values = (0.0, 1.0, 1e-30, 1.0 - 1e-12, 0.5)
    for i, v in enumerate(values):
        flat[idx[i * k:(i + 1) * k]] = v
    return a


def _with_nans(a, which, shape):
    a = a.copy()
    rng = np.random.default_rng(_seed(f"nan{shape}{which}"))
    a.reshape(-1)[rng.random(a.size) < 0.002] = np.nan
    return a


@functools.lru_cache(maxsize=None)
def arr(shape, name, dtype):
    """An input array (C-contiguous). ``name`` is one of:

    p, x (logits), p_ext / x_ext (with extremes: p exactly 0 and 1, 1e-30; logits ±1e4),
    p_nan / x_nan (with NaNs), hard, soft, soft_nan, w, mask, groups.
    """
    base = _base(shape)
    if name in ("p", "x", "hard", "soft", "w", "mask", "groups"):
        a = base[name]
    elif name == "p_ext":
        a = _extremes(base["p"], name, shape, False)
    elif name == "x_ext":
        a = _extremes(base["x"], name, shape, True)
    elif name == "p_nan":
        a = _with_nans(base["p"], name, shape)
    elif name == "x_nan":
        a = _with_nans(base["x"], name, shape)
    elif name == "soft_nan":
        a = _with_nans(base["soft"], name, shape)
    else:
        raise KeyError(name)
    out = np.ascontiguousarray(a.astype(dtype))
    out.flags.writeable = False
    return out


def layout(a, kind):
    """``a`` in a memory layout: "C", "F" (Fortran order, 2-D) or "strided" (rows a[::2] of a
    bigger array)."""
    if kind == "C":
        return a
    if kind == "F":
        return np.asfortranarray(a)
    if kind == "strided":
        big = np.zeros((2 * a.shape[0],) + a.shape[1:], a.dtype)
        big[::2] = a
        return big[::2]
    raise ValueError(kind)


# ------------------------------------------------------------------------------------------------
# Calls
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Call:
    id: str
    backend: str
    run: Callable[[], dict]  # {output name: value}


CALLS = []


def _shape_str(shape):
    return "x".join(map(str, shape))


def _fmt(value):
    if isinstance(value, tuple):
        return _shape_str(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _call_id(function, backend, inputs, options):
    parts = [function, backend] + [f"{k}={_fmt(v)}" for k, v in inputs.items()]
    parts += [f"{k}={_fmt(v)}" for k, v in options.items()]
    return "|".join(parts)


def _resolve(shape, spec, lay):
    """An input from a spec: None, a scalar, ("name", dtype) of the element shape, or
    ("name", dtype, shape) of its own shape (then never re-laid out)."""
    if spec is None or isinstance(spec, (int, float)):
        return spec
    if len(spec) == 3:
        name, dtype, own_shape = spec
        if name == "groups":  # one id per sample of `shape`
            return arr(shape, "groups", dtype)
        return arr(own_shape, name, dtype)
    name, dtype = spec
    return layout(arr(shape, name, dtype), lay)


def _spec_str(spec):
    if spec is None or isinstance(spec, (int, float)):
        return repr(spec)
    name, dtype = spec[0], np.dtype(spec[1]).name
    return f"{name}:{dtype}" + (f"({_shape_str(spec[2])})" if len(spec) == 3 and name != "groups" else "")


def _outputs(function, result):
    """{output name: value} of a public function's result."""
    if function.endswith("value_and_grad"):
        value, grad = result
        return {"value": value, "grad": grad}
    if function.endswith("_grad"):
        return {"grad": result}
    if function.endswith("grad_hess"):
        return {"grad": result[0], "hess": result[1]}
    if isinstance(result, tuple):  # the curves; GroupAUC, CalibrationCurve (named tuples)
        return dict(zip(getattr(result, "_fields", None) or [f"out{k}" for k in range(len(result))],
                        result))
    if isinstance(result, fastbce.ScoreResult):
        return result.to_dict()
    return {"value": result}


def add(function, backend, shape, y, p, lay="C", **options):
    """Record a call of ``fastbce.<function>`` (or of ``fastbce.dask.<function>`` for "dask.*").

    ``y``, ``p`` and the array options sample_weight, pos_weight, mask, groups are specs of
    :func:`_resolve`: element-shaped ones get the layout ``lay``. ``out_order`` ("C" or "F") passes a
    preallocated ``out``. Dask calls take ``chunks``.
    """
    array_options = {k: options.pop(k) for k in ("sample_weight", "pos_weight", "mask", "groups")
                     if k in options}
    out_order = options.pop("out_order", None)
    chunks = options.pop("chunks", None)
    inputs = {"shape": shape, "y": _spec_str(y), "p": _spec_str(p), "layout": lay}
    inputs.update({k: _spec_str(v) for k, v in array_options.items()})
    if out_order:
        inputs["out"] = out_order
    if chunks:
        inputs["chunks"] = chunks
    call_id = _call_id(function, backend, inputs, options)

    def run():
        yt, yp = _resolve(shape, y, lay), _resolve(shape, p, lay)
        kwargs = {k: _resolve(shape, v, lay) for k, v in array_options.items()}
        kwargs.update(options)
        if function.startswith("dask.") or "backend" in inspect.signature(getattr(fastbce, function)).parameters:
            kwargs["backend"] = backend  # every public function that has a backend argument
        if function.startswith("dask."):
            return _run_dask(function[5:], yt, yp, chunks, kwargs)
        if out_order:
            out_dtype = np.float64 if yp.dtype == np.float64 else np.float32
            kwargs["out"] = np.full(yp.shape, np.nan, out_dtype, order=out_order)
        result = getattr(fastbce, function)(yt, yp, **kwargs)
        if out_order:
            grad = result[1] if isinstance(result, tuple) else result
            assert grad is kwargs["out"], "the gradient is not written into out"
        return _outputs(function, result)

    CALLS.append(Call(call_id, backend, run))


def _run_dask(function, yt, yp, chunks, kwargs):
    import dask
    import dask.array as da

    import fastbce.dask

    def lazy(a):
        if not isinstance(a, np.ndarray) or a.ndim == 0:
            return a
        return da.from_array(a, chunks=chunks if a.ndim == len(chunks) else chunks[:a.ndim])

    kwargs = {k: lazy(v) if k in ("sample_weight", "mask", "groups") else v for k, v in kwargs.items()}
    result = getattr(fastbce.dask, function)(lazy(yt), lazy(yp), **kwargs)
    with dask.config.set(scheduler="synchronous"):
        result = dask.compute(result)[0]
    return _outputs(function, result)


def add_accumulator(backend, shape, y, p, n_chunks, settings, update_options=(), lay="C"):
    """Accumulator(**settings): ``n_chunks`` updates over row slices of the data, split between two
    accumulators (the second merged into the first), then result()."""
    options = dict(update_options)
    inputs = {"shape": shape, "y": _spec_str(y), "p": _spec_str(p), "layout": lay,
              "chunks": n_chunks}
    inputs.update({k: _spec_str(v) for k, v in options.items()})
    call_id = _call_id("Accumulator", backend, inputs, settings)

    def run():
        yt, yp = _resolve(shape, y, lay), _resolve(shape, p, lay)
        extra = {k: _resolve(shape, v, lay) for k, v in options.items()}
        bounds = np.linspace(0, shape[0], n_chunks + 1).astype(int)
        first = fastbce.Accumulator(backend=backend, **settings)
        second = fastbce.Accumulator(backend=backend, **settings)
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            target = first if i < (n_chunks + 1) // 2 else second
            target.update(yt[a:b], yp[a:b], **{k: v[a:b] for k, v in extra.items()})
        return first.merge(second).result().to_dict()

    CALLS.append(Call(call_id, backend, run))


F32, F64, F16 = np.float32, np.float64, np.float16
S1, S2, SW, SS = (N1,), (R2, C2), (RW, CW), (NS,)


def _build():
    for b in BACKENDS:
        # ---- bce, 1-D, fast path (float32/float64 predictions, reductions "mean"/"sum") ----
        for dt in (F32, F64):
            f32 = dt is F32
            add("bce", b, S1, ("hard", dt), ("p", dt))  # product path (whole-array sum)
            add("bce", b, S1, ("hard", dt), ("p", dt), reduction="sum", n_threads=1)
            add("bce", b, S1, ("soft", dt), ("p", dt))
            add("bce", b, S1, ("hard", np.uint8), ("p_ext", dt), reduction="sum")
            add("bce", b, S1, ("hard", dt), ("x_ext", dt), from_logits=True)
            add("bce", b, S1, ("soft", dt), ("p", dt), sample_weight=("w", dt), reduction="sum")
            add("bce", b, S1, ("hard", dt), ("p", dt), label_smoothing=0.1, pos_weight=3.0)
            add("bce", b, S1, ("hard", dt), ("p_nan", dt))  # propagate: NaN
            add("bce", b, S1, ("hard", dt), ("p_nan", dt), nan_policy="omit")
            add("bce", b, S1, ("soft_nan", dt), ("x_nan", dt), from_logits=True, nan_policy="omit",
                reduction="sum", sample_weight=("w", dt))
            if f32:
                add("bce", b, S1, ("hard", dt), ("p_ext", dt), sample_weight=2.5)
                add("bce", b, S1, ("soft", dt), ("p", dt), mask=("mask", np.bool_))
                add("bce", b, S1, ("hard", dt), ("p", dt), lay="strided")
                add("bce", b, S1, ("hard", np.bool_), ("p", dt), n_threads=2)
                add("bce", b, S1, ("hard", dt), ("p", dt), sample_weight=("w", F64))
                add("bce", b, S1, ("hard", dt), ("p", dt), eps=1e-3,
                    groups=("groups", np.int32, S1), n_groups=N_GROUPS)
            else:
                add("bce", b, S1, ("soft", dt), ("x", dt), from_logits=True, reduction="sum")
                add("bce", b, S1, ("soft", dt), ("p", dt), groups=("groups", np.int64, S1),
                    reduction="sum", sample_weight=("w", dt))
        add("bce", b, SS, ("hard", F32), ("p_ext", F32))
        add("bce", b, SS, ("soft", F64), ("x", F64), from_logits=True, reduction="none")
        add("bce", b, S1, ("hard", np.int64), ("p", F32))  # integer labels: converted
        add("bce", b, S1, ("soft", F64), ("p", F32))  # float64 labels, float32 p: general kernel
        add("bce", b, S1, ("hard", np.uint8), ("p", F32), groups=("groups", np.uint16, S1))
        # ---- bce, general kernel: float16, reduction="none" ----
        add("bce", b, S1, ("soft", F16), ("p_ext", F16))
        add("bce", b, S1, ("hard", np.bool_), ("x", F16), from_logits=True, reduction="sum")
        add("bce", b, S1, ("soft", F32), ("p_ext", F32), reduction="none")
        add("bce", b, S1, ("hard", F64), ("x_nan", F64), from_logits=True, reduction="none",
            sample_weight=("w", F64))
        add("bce", b, S2, ("soft", F16), ("p", F16), reduction="none", lay="F")
        add("bce", b, S2, ("hard", F32), ("p", F32), reduction="none", mask=("mask", np.bool_),
            sample_weight=("w", F32, (R2, 1)), lay="strided")
        # ---- bce, 2-D: axis None/0/1, layouts C/F/strided, per-label and per-sample pos_weight ----
        for dt in (F32, F64):
            f32 = dt is F32
            for ax in (None, 0, 1):
                add("bce", b, S2, ("hard", dt), ("p", dt), axis=ax)
                if f32 or ax is not None:
                    add("bce", b, S2, ("soft", dt), ("p", dt), axis=ax, reduction="sum",
                        sample_weight=("w", dt), lay="F")
            add("bce", b, S2, ("hard", dt), ("p_ext", dt), axis=0, lay="strided")
            add("bce", b, S2, ("hard", dt), ("x_ext", dt), from_logits=True, axis=None,
                pos_weight=("w", F64, (C2,)), lay="F")
            # rows of 200 columns: the product path per row
            add("bce", b, SW, ("hard", dt), ("p_ext", dt), axis=1)
            if f32:
                add("bce", b, S2, ("soft_nan", dt), ("p_nan", dt), axis=0, nan_policy="omit",
                    mask=("mask", np.bool_))
                add("bce", b, SW, ("hard", dt), ("p", dt), axis=1, mask=("mask", np.bool_))
                add("bce", b, S2, ("hard", np.uint8), ("p", dt), axis=0, pos_weight=("w", F64, (C2,)))
                add("bce", b, S2, ("soft", dt), ("p", dt), axis=1, pos_weight=("w", dt, (R2, 1)))
                add("bce", b, S2, ("hard", dt), ("p", dt), groups=("groups", np.int64, S2),
                    n_groups=N_GROUPS, lay="F")
                add("bce", b, SW, ("hard", dt), ("p_ext", dt), axis=None)
                add("bce", b, SW, ("hard", dt), ("p_ext", dt), axis=0)
                add("bce", b, SW, ("hard", np.bool_), ("p", dt), axis=1, reduction="sum", lay="F")
            else:
                add("bce", b, S2, ("hard", dt), ("p", dt), sample_weight=("w", F64, (R2, 1)), axis=0)
                add("bce", b, S2, ("soft", dt), ("p", dt), pos_weight=("w", dt, (R2, 1)))
        add("bce", b, S2, ("hard", F32), ("p", F32), axis=0, label_smoothing=0.2,
            pos_weight=("w", F64, (C2,)), reduction="sum")

        # ---- bce_grad / bce_value_and_grad ----
        for dt in (F32, F64):
            f32 = dt is F32
            for fn in ("bce_grad", "bce_value_and_grad"):
                add(fn, b, S1, ("hard", dt), ("p_ext", dt))
                add(fn, b, S1, ("hard", dt), ("p_nan", dt), nan_policy="omit", sample_weight=1.5)
                add(fn, b, S2, ("soft", dt), ("p", dt), axis=0, lay="F")  # transposed, in place
                add(fn, b, SW, ("hard", dt), ("p", dt), axis=1, out_order="C")
            add("bce_grad", b, S1, ("soft", dt), ("x_ext", dt), from_logits=True, reduction="sum")
            add("bce_grad", b, S1, ("hard", np.uint8), ("p", dt), sample_weight=("w", dt),
                mask=("mask", np.bool_), n_threads=1)
            add("bce_grad", b, S2, ("hard", dt), ("p", dt), axis=0, pos_weight=("w", F64, (C2,)),
                label_smoothing=0.05)
            add("bce_grad", b, S2, ("hard", dt), ("x", dt), from_logits=True, axis=1, lay="strided")
            add("bce_value_and_grad", b, S2, ("soft", dt), ("p", dt), axis=1,
                pos_weight=("w", dt, (R2, 1)))
        add("bce_grad", b, S1, ("soft", F16), ("p_ext", F16))
        add("bce_value_and_grad", b, S2, ("soft_nan", F16), ("p_nan", F16), axis=0,
            nan_policy="omit", mask=("mask", np.bool_))  # general kernel, Σw known after the pass
        for fn in ("bce_grad", "bce_value_and_grad"):
            add(fn, b, S2, ("hard", F32), ("p_nan", F32), axis=0, nan_policy="propagate",
                out_order="F", lay="F")
        add("bce_value_and_grad", b, SS, ("hard", F64), ("p_ext", F64), reduction="sum")
        add("bce_grad", b, SS, ("soft", F32), ("x", F32), from_logits=True)

        # ---- focal_bce and its gradients ----
        for dt in (F32, F64):
            f32 = dt is F32
            add("focal_bce", b, S1, ("hard", dt), ("p_ext", dt), gamma=2.0, alpha=0.25)
            add("focal_bce", b, S1, ("soft", dt), ("p", dt), gamma=1.5)  # float64: general kernel
            add("focal_bce", b, S1, ("hard", dt), ("x_ext", dt), from_logits=True, gamma=3,
                alpha=0.75, reduction="sum")
            add("focal_bce", b, S1, ("hard", dt), ("p", dt), gamma=8.0, alpha=0.5)
            add("focal_bce", b, S2, ("hard", dt), ("p", dt), gamma=2.0, alpha=0.25, axis=0,
                pos_weight=("w", F64, (C2,)), label_smoothing=0.1)
            add("focal_bce", b, S2, ("hard", dt), ("p", dt), gamma=2.0,
                groups=("groups", np.int32, S2), n_groups=N_GROUPS, mask=("mask", np.bool_))
            add("focal_bce_grad", b, S1, ("hard", dt), ("p_ext", dt), gamma=2.0, alpha=0.25)
            add("focal_bce_grad", b, S2, ("hard", np.uint8), ("p", dt), gamma=3.0, alpha=0.6,
                axis=0, sample_weight=("w", dt), lay="strided")
            add("focal_bce_value_and_grad", b, S1, ("soft", dt), ("x_ext", dt), from_logits=True,
                gamma=1.5, reduction="sum")
            add("focal_bce_value_and_grad", b, S2, ("soft_nan", dt), ("p_nan", dt), gamma=2.0,
                axis=1, nan_policy="omit")
            if f32:
                add("focal_bce", b, S1, ("hard", dt), ("p", dt), gamma=7.0, sample_weight=("w", dt))
                add("focal_bce", b, S1, ("hard", dt), ("p", dt), gamma=0.0, alpha=None)
                add("focal_bce", b, S1, ("soft_nan", dt), ("p_nan", dt), gamma=2.0,
                    nan_policy="omit")
                add("focal_bce", b, S2, ("soft", dt), ("x", dt), from_logits=True, gamma=2.5,
                    axis=1, lay="F")
        add("focal_bce", b, S1, ("soft", F16), ("p", F16), gamma=2.0, alpha=0.25)
        add("focal_bce", b, S2, ("hard", F32), ("p_ext", F32), gamma=2.0, reduction="none")
        add("focal_bce_grad", b, S2, ("hard", F64), ("p", F64), gamma=2.0,
            pos_weight=("w", F64, (R2, 1)))
        add("focal_bce_value_and_grad", b, SS, ("soft", F32), ("x", F32), from_logits=True,
            gamma=2.0, alpha=0.25)
        add("focal_bce_value_and_grad", b, S2, ("hard", F32), ("p", F32), gamma=4.0, axis=0,
            lay="F")

        # ---- score (the general kernel's statistics) ----
        add("score", b, S1, ("hard", F32), ("p_ext", F32))
        add("score", b, S1, ("soft", F64), ("x_ext", F64), from_logits=True, sample_weight=("w", F64))
        add("score", b, S1, ("hard", np.bool_), ("p", F32), groups=("groups", np.int32, S1),
            n_groups=N_GROUPS + 2)  # two empty groups: NaN ratios
        add("score", b, S1, ("hard", F64), ("p_nan", F64), nan_policy="omit", mask=("mask", np.bool_))
        add("score", b, S1, ("hard", F64), ("p_nan", F64))
        add("score", b, S1, ("soft", F16), ("p", F16), lay="strided")
        add("score", b, S2, ("hard", F32), ("p", F32), axis=0, lay="F", n_threads=1)
        add("score", b, S2, ("soft", F64), ("p", F64), axis=1)
        add("score", b, S2, ("hard", np.uint8), ("p", F64), groups=("groups", np.int64, S2))
        add("score", b, SS, ("hard", F32), ("p", F32))

        # ---- Accumulator: updates over row slices, a merge, the result ----
        add_accumulator(b, S1, ("hard", F32), ("p_ext", F32), 3, {})
        add_accumulator(b, S1, ("soft", F64), ("x", F64), 4, {"from_logits": True},
                        {"sample_weight": ("w", F64)})
        add_accumulator(b, S1, ("hard", np.uint8), ("p", F32), 3, {"n_groups": N_GROUPS},
                        {"groups": ("groups", np.int64, S1)})
        add_accumulator(b, S2, ("hard", F64), ("p_nan", F64), 3, {"axis": 0, "nan_policy": "omit"},
                        {"mask": ("mask", np.bool_)})

        # ---- hinge, squared hinge, Dice, Tversky (fastbce/_margin.py): plain and general routes ----
        add("hinge", b, S1, ("hard", F32), ("x", F32))
        add("hinge", b, S2, ("hard", F64), ("x", F64), axis=0, sample_weight=("w", F64))
        add("hinge_grad", b, S2, ("hard", F32), ("x", F32), axis=1, mask=("mask", np.bool_))
        add("hinge_value_and_grad", b, S1, ("hard", F32), ("x", F32), groups=("groups", np.int64, S1))
        add("squared_hinge", b, S2, ("hard", F32), ("x", F32), reduction="none")
        add("squared_hinge_grad", b, S1, ("hard", F64), ("x", F64), reduction="sum")
        add("squared_hinge_value_and_grad", b, S2, ("hard", F32), ("x", F32), sample_weight=("w", F32))
        add("dice", b, S1, ("soft", F32), ("p", F32))
        add("dice_grad", b, S2, ("soft", F64), ("p", F64), axis=1, smooth=1.0)
        add("dice_value_and_grad", b, S2, ("hard", F32), ("p", F32), axis=0, mask=("mask", np.bool_))
        add("tversky", b, S1, ("soft", F64), ("p", F64), alpha=0.3, beta=0.7,
            groups=("groups", np.int32, S1), n_groups=N_GROUPS)
        add("tversky_grad", b, S2, ("hard", F32), ("p", F32), eps=1e-7)
        add("tversky_value_and_grad", b, S1, ("soft", F32), ("p", F32), sample_weight=("w", F32))

        # ---- gradient and Hessian for boosting; ranking and calibration metrics ----
        add("bce_grad_hess", b, S1, ("hard", F32), ("x", F32))
        add("bce_grad_hess", b, S2, ("soft", F64), ("x", F64), sample_weight=("w", F64),
            pos_weight=("w", F64, (C2,)))
        add("focal_bce_grad_hess", b, S1, ("hard", F32), ("x", F32), gamma=2.0, alpha=0.25)
        add("roc_auc", b, S1, ("hard", F32), ("p", F32))
        add("roc_auc", b, S2, ("hard", F64), ("p", F64), axis=0, sample_weight=("w", F64))
        add("average_precision", b, S1, ("hard", F32), ("p", F32), groups=("groups", np.int64, S1),
            n_groups=N_GROUPS)
        add("group_auc", b, S1, ("hard", F32), ("p", F32), groups=("groups", np.int64, S1))
        add("roc_curve", b, S1, ("hard", F32), ("p", F32))
        add("precision_recall_curve", b, S1, ("hard", F64), ("p", F64), sample_weight=("w", F64))
        add("calibration_curve", b, S1, ("hard", F32), ("p", F32))
        add("brier", b, S1, ("hard", F32), ("p", F32))

        # ---- fastbce.dask on small Dask arrays (synchronous scheduler) ----
        add("dask.bce", b, S1, ("hard", F32), ("p", F32), chunks=(20_000,))
        add("dask.bce", b, S1, ("soft", F64), ("x", F64), from_logits=True, reduction="sum",
            sample_weight=("w", F64), chunks=(30_000,))
        add("dask.bce", b, S2, ("hard", F32), ("p", F32), axis=0, chunks=(400, 20))
        add("dask.bce", b, S2, ("hard", F64), ("p", F64), axis=1, chunks=(700, 37),
            pos_weight=("w", F64, (C2,)))
        add("dask.bce", b, S1, ("hard", F32), ("p", F32), groups=("groups", np.int64, S1),
            chunks=(25_000,))
        add("dask.bce", b, S2, ("soft", F32), ("p_ext", F32), reduction="none", chunks=(600, 37))
        add("dask.bce_grad", b, S1, ("hard", F32), ("p_ext", F32), chunks=(20_000,))
        add("dask.bce_grad", b, S2, ("hard", F64), ("p", F64), axis=0, reduction="sum",
            mask=("mask", np.bool_), chunks=(500, 20))
        add("dask.score", b, S1, ("hard", F64), ("p", F64), chunks=(30_000,))
        add("dask.score", b, S2, ("hard", F32), ("p", F32), groups=("groups", np.int32, S2),
            n_groups=N_GROUPS, chunks=(500, 37))


_build()
_ids = [c.id for c in CALLS]
assert len(set(_ids)) == len(_ids), "duplicate call ids: " + repr(
    sorted({i for i in _ids if _ids.count(i) > 1}))


# ------------------------------------------------------------------------------------------------
# Hashes
# ------------------------------------------------------------------------------------------------

def _canonical_nans(a):
    if a.dtype.kind == "f" and np.isnan(a).any():
        a = a.copy()
        a[np.isnan(a)] = np.nan
    return a


def digest(value):
    """{type, dtype, shape, sha256, summary} of one output."""
    kind = type(value).__name__
    if isinstance(value, np.ndarray):
        a = np.ascontiguousarray(value)
    elif isinstance(value, (bool, np.bool_)):
        a = np.asarray(value, np.bool_)
    elif isinstance(value, (int, np.integer)):
        a = np.asarray(value, np.int64)
    elif isinstance(value, (float, np.floating)):
        a = np.asarray(value, np.float64)
    else:
        raise TypeError(f"unexpected output type {kind}")
    a = _canonical_nans(a)
    record = {"type": kind, "dtype": a.dtype.str, "shape": list(a.shape),
              "sha256": hashlib.sha256(a.tobytes()).hexdigest()}
    if a.ndim == 0:
        record["summary"] = repr(a.item())
    else:
        with np.errstate(all="ignore"):
            f = a.astype(np.float64)
            finite = f[np.isfinite(f)]
            record["summary"] = (f"sum={float(np.sum(finite))!r} n_nan={int(np.isnan(f).sum())} "
                                 f"n_inf={int(np.isinf(f).sum())} "
                                 f"first={float(f.reshape(-1)[0])!r} last={float(f.reshape(-1)[-1])!r}")
    return record


def run_call(call):
    """{output name: digest} of one call."""
    return {name: digest(value) for name, value in call.run().items()}


# ------------------------------------------------------------------------------------------------
# Environment
# ------------------------------------------------------------------------------------------------

def cpu_has_fma():
    """Whether the compiled fast path runs with fused multiply-adds here: an x86-64 CPU with the
    x86-64-v3 features (AVX2, FMA, ...; the Cython SIMD variants "v3"/"v4"), or an aarch64 CPU
    (FMA is part of ARMv8: the "aarch64" variant), and no ``FASTBCE_SIMD=base``. Read from the CPU
    flags, not from fastbce's private modules."""
    if os.environ.get("FASTBCE_SIMD", "") == "base":
        return False
    if platform.machine().lower() in ("aarch64", "arm64"):
        return True
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return {"avx", "avx2", "fma", "bmi1", "bmi2", "f16c", "movbe"} <= flags
    return False


def simd_variant():
    """The Cython fast path's instruction-set variant, for the record (a private module: None when
    it cannot be found)."""
    try:
        from fastbce._kernels import cython_kernels
        return cython_kernels.SIMD_VARIANT
    except Exception:  # noqa: BLE001 (diagnostic only)
        return None


def environment():
    import numba
    try:
        import dask
        dask_version = dask.__version__
    except ImportError:
        dask_version = None
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as features
        except ImportError:
            features = {}
    return {
        "simd_variant": simd_variant(),
        "cpu_has_fma": cpu_has_fma(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numpy_cpu_features": sorted(k for k, v in features.items() if v),
        "numba": numba.__version__,
        "dask": dask_version,
        "machine": platform.machine(),
    }


def load_record():
    with open(DATA_PATH) as f:
        return json.load(f)


def write_record():
    import time

    start = time.perf_counter()
    calls = {}
    for call in CALLS:
        calls[call.id] = {"backend": call.backend, "outputs": run_call(call)}
    record = {"comment": "Written by `python tests/corpus.py --write`; checked by tests/test_corpus.py.",
              "environment": environment(), "n_calls": len(CALLS), "calls": calls}
    DATA_PATH.parent.mkdir(exist_ok=True)
    with open(DATA_PATH, "w") as f:
        json.dump(record, f, indent=1, sort_keys=False)
        f.write("\n")
    print(f"{len(CALLS)} calls written to {DATA_PATH} in {time.perf_counter() - start:.1f} s "
          f"({DATA_PATH.stat().st_size / 1024:.0f} KiB); SIMD variant: {record['environment']['simd_variant']}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        if not cpu_has_fma():
            sys.exit("refusing to write the corpus on a CPU without FMA (or with FASTBCE_SIMD=base): "
                     "the compiled backends' bits would be those of the baseline")
        write_record()
    elif sys.argv[1:] == ["--list"]:
        for call in CALLS:
            print(call.id)
        print(len(CALLS), "calls", file=sys.stderr)
    else:
        sys.exit("usage: python tests/corpus.py --write | --list")
