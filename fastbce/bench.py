"""Benchmarks: fastbce against NumPy and the ML frameworks, measured side by side on this machine.

This module holds everything the two benchmark front ends share, defined once:

- the **operations** (:data:`OPERATIONS`) and their input data (:func:`make_data`);
- the **contenders** (:data:`CONTENDERS`): each library's way of computing the same thing;
- the **ceiling**: a streaming read of the same inputs (read + write for gradients) with a Numba
  ``prange`` loop, the memory-bandwidth limit that no BCE kernel can beat (:func:`make_ceiling`);
- how a **thread count** is set, the same way for everyone (:func:`thread_environment`,
  :func:`apply_threads`).

``fastbce bench`` (:func:`run`, :func:`main`) measures each contender in fresh worker processes,
one per contender and thread count, and writes ``BENCHMARKS.md``, a PNG plot and the raw results
as JSON. The pytest-benchmark suite in ``benchmarks/`` times the same callables in-process.

Nothing here asserts a speed: it measures and reports.
"""

import argparse
import ctypes
import datetime
import functools
import gc
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from . import _threads

EPS = 1e-7  # probability clipping of the NumPy/JAX formulas (fastbce's default, Keras' epsilon)
N_LABELS = 100  # columns of the 2-D operations
N_GROUPS = 1000  # groups of the per-group operation
FIRST_CALL_SIZE = 1000
FOCAL_GAMMA, FOCAL_ALPHA = 2.0, 0.25  # the defaults of Keras, torchvision and optax

# ---------------------------------------------------------------------------------------------
# Operations and data
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    name: str
    title: str
    inputs: tuple  # keys of make_data() the operation reads: the ceiling reads the same arrays
    writes: bool = False  # writes one float per element (a gradient): the ceiling reads and writes
    new_output: bool = False  # returns a new array per call: the ceiling allocates its output too
    unavailable: str = ""  # why the operation cannot be measured yet


OPERATIONS = {op.name: op for op in (
    Operation("mean", "mean BCE, probabilities, 0/1 labels", ("y", "p")),
    Operation("mean_u8", "mean, uint8 labels", ("yu8", "p")),
    Operation("mean_bool", "mean, bool labels", ("yb", "p")),
    Operation("mean_f64", "mean, float64 probabilities and labels", ("y64", "p64")),
    Operation("mean_soft", "mean BCE, probabilities, soft labels", ("ys", "p")),
    Operation("mean_logits", "mean BCE, logits", ("y", "x")),
    Operation("weighted", f"logits, sample_weight + pos_weight, {N_LABELS} labels", ("y2", "x2", "w2")),
    Operation("per_label", f"per-label mean, (n/{N_LABELS} × {N_LABELS}) matrix", ("y2", "p2")),
    Operation("per_label_f", "per_label, Fortran-ordered matrix", ("y2f", "p2f")),
    Operation("per_sample", "per-sample mean (axis=1) of the same matrix", ("y2", "p2")),
    Operation("per_group", f"per-group mean, {N_GROUPS:,} groups", ("y", "p", "g")),
    Operation("grad", "gradient of mean BCE w.r.t. logits, into a new array", ("y", "x"), writes=True,
              new_output=True),
    Operation("grad_out", "grad into a preallocated array (out=)", ("y", "x"), writes=True),
    Operation("value_and_grad", "fused loss + gradient, logits, into a new array", ("y", "x"),
              writes=True, new_output=True),
    Operation("value_and_grad_out", "value_and_grad into a preallocated array (out=)", ("y", "x"),
              writes=True),
    Operation("focal", f"mean focal loss, logits, γ={FOCAL_GAMMA:g}, α={FOCAL_ALPHA:g}", ("y", "x")),
)}
MEASURED_OPS = tuple(name for name, op in OPERATIONS.items() if not op.unavailable)


def make_data(n, seed=0):
    """Inputs of every operation for ``n`` predictions (n a multiple of N_LABELS), all float32
    except the int32 group ids, so that every contender reads the same 8 bytes per element.

    Labels and probabilities follow ``fastbce.cli.make_default_data`` (a noisy but informative
    model); logits are the same predictions as log-odds; soft labels mix the 0/1 label with noise.
    """
    from .cli import make_default_data

    if n % N_LABELS:
        raise ValueError(f"sizes must be multiples of {N_LABELS}, got {n}")
    labels, p = make_default_data(n, seed)
    rng = np.random.default_rng(seed + 1)
    y = labels.astype(np.float32)
    del labels
    x = (np.log(p, dtype=np.float64) - np.log1p(-p, dtype=np.float64)).astype(np.float32)
    ys = y * np.float32(0.9) + np.float32(0.1) * rng.random(n, dtype=np.float32)
    w = np.float32(0.5) + rng.random(n, dtype=np.float32)
    g = rng.integers(0, N_GROUPS, n, dtype=np.int32)
    shape2 = (n // N_LABELS, N_LABELS)
    return BenchData({"y": y, "ys": ys, "p": p, "x": x, "w": w, "g": g,
                      "y2": y.reshape(shape2), "p2": p.reshape(shape2), "x2": x.reshape(shape2),
                      "w2": w.reshape(shape2), "pw": np.linspace(0.5, 4.0, N_LABELS, dtype=np.float32)})


class BenchData(dict):
    """The inputs of :func:`make_data`; the other dtypes and layouts of the same values (uint8 and
    bool labels, float64, Fortran order) are made on first use, so that a run pays memory only
    for the operations it measures."""

    DERIVED = {
        "yu8": lambda d: d["y"].astype(np.uint8),
        "yb": lambda d: d["y"].astype(np.bool_),
        "y64": lambda d: d["y"].astype(np.float64),
        "p64": lambda d: d["p"].astype(np.float64),
        "y2f": lambda d: np.asfortranarray(d["y2"]),
        "p2f": lambda d: np.asfortranarray(d["p2"]),
    }

    def __missing__(self, key):
        if key not in self.DERIVED:
            raise KeyError(key)
        value = self[key] = self.DERIVED[key](self)
        return value


def input_bytes(op, data):
    return sum(data[key].nbytes for key in OPERATIONS[op].inputs)


class Unsupported(Exception):
    """A contender has no way to compute an operation (the message says why)."""


# ---------------------------------------------------------------------------------------------
# Threads: set the same way for everyone
# ---------------------------------------------------------------------------------------------

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                     "NUMBA_NUM_THREADS", "FASTBCE_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
                     "TF_NUM_INTEROP_THREADS")
_threadpool_limiter = None
# how Numba picks its threading layer and how OpenMP threads wait between parallel regions: both
# move two-thread figures (README, "The speed targets"), so a report names the ones that were set
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
    import fastbce

    fastbce.set_num_threads(threads)
    if "numba" in sys.modules:
        from ._backends import load_backend

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
# The ceiling: a streaming read (and read + write) of the same inputs
# ---------------------------------------------------------------------------------------------


@functools.cache
def _ceiling_kernels():
    from . import _backends

    _backends.load_backend("numba")  # same Numba threading layer as fastbce's kernels
    from numba import njit, prange

    @njit(parallel=True, fastmath=True, nogil=True)
    def read2(a, b):
        total = 0.0
        for i in prange(a.shape[0]):
            total += np.float64(a[i]) + np.float64(b[i])
        return total

    @njit(parallel=True, fastmath=True, nogil=True)
    def read3(a, b, c):
        total = 0.0
        for i in prange(a.shape[0]):
            total += np.float64(a[i]) + np.float64(b[i]) + np.float64(c[i])
        return total

    @njit(parallel=True, fastmath=True, nogil=True)
    def read2_write(a, b, out):
        for i in prange(a.shape[0]):
            out[i] = a[i] + b[i]

    return read2, read3, read2_write


def make_ceiling(op, data, threads):
    """The ceiling of an operation: one parallel pass reading its inputs (and writing one float
    per element for gradients: into a preallocated array, or into a new one per call where the
    operation returns a new array, whose fresh pages the OS zeroes on first touch)."""
    import numba

    operation = OPERATIONS[op]
    read2, read3, read2_write = _ceiling_kernels()
    arrays = [data[key].ravel(order="K") for key in operation.inputs]  # views, also of Fortran order
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    if operation.new_output:
        return lambda: read2_write(arrays[0], arrays[1], np.empty_like(arrays[1]))
    if operation.writes:
        out = np.empty_like(arrays[1])
        return lambda: read2_write(arrays[0], arrays[1], out)
    if len(arrays) == 2:
        return lambda: read2(*arrays)
    return lambda: read3(*arrays)


def ceiling_label(op):
    operation = OPERATIONS[op]
    names = ", ".join(key.rstrip("2") for key in operation.inputs)
    if operation.writes:
        return f"read {names}, write 1 {'new array' if operation.new_output else 'preallocated'}"
    return f"read {names}"


# ---------------------------------------------------------------------------------------------
# Contenders
# ---------------------------------------------------------------------------------------------


class Contender:
    """One library's way of computing the operations. ``make(op, data, threads)`` returns a
    callable that computes the result and returns when it is ready; conversions of the inputs to
    the library's own arrays happen in ``make``, outside the timed call."""

    name = ""
    threaded = True  # has its own threads (else measured with 1 thread only)
    modules = ()  # imported, and timed, at the start of a fresh process
    distributions = ()  # whose versions the report lists
    calls = {}  # op -> what is called (for the report)
    unsupported = {}  # op -> why the library cannot compute it

    def missing(self):
        """Why this contender cannot run here (None when it can)."""
        for module in self.modules:
            if importlib.util.find_spec(module.split(".")[0]) is None:
                return f"{module} is not installed"
        return None

    def make(self, op, data, threads):
        operation = OPERATIONS[op]
        if operation.unavailable:
            raise Unsupported(operation.unavailable)
        build = getattr(self, "op_" + op, None)
        if build is None:
            raise Unsupported(self.unsupported.get(op, f"{self.name} has no {op}"))
        return build(data, threads)


class Fastbce(Contender):
    modules = ("fastbce",)
    distributions = ("fastbce",)

    def __init__(self, backend):
        self.backend = backend
        self.name = f"fastbce[{backend}]"
        self.threaded = backend != "numpy"
        self.calls = {
            "mean": "bce(y, p)", "mean_u8": "bce(y_uint8, p)", "mean_bool": "bce(y_bool, p)",
            "mean_f64": "bce(y_float64, p_float64)", "mean_soft": "bce(y_soft, p)",
            "mean_logits": "bce(y, x, from_logits=True)",
            "weighted": "bce(y, x, from_logits=True, sample_weight=w, pos_weight=pw)",
            "per_label": "bce(y, p, axis=0)", "per_label_f": "bce(y_fortran, p_fortran, axis=0)",
            "per_sample": "bce(y, p, axis=1)", "per_group": "bce(y, p, groups=g, n_groups=G)",
            "grad": "bce_grad(y, x, from_logits=True)",
            "grad_out": "bce_grad(y, x, from_logits=True, out=g)",
            "value_and_grad": "bce_value_and_grad(y, x, from_logits=True)",
            "value_and_grad_out": "bce_value_and_grad(y, x, from_logits=True, out=g)",
            "focal": f"focal_bce(y, x, gamma={FOCAL_GAMMA:g}, alpha={FOCAL_ALPHA:g}, from_logits=True)",
        }
        self.calls = {op: f"fastbce.{call[:-1]}, backend={backend!r})" for op, call in self.calls.items()}

    def missing(self):
        if self.backend == "cython":
            from ._backends import cython_available

            return None if cython_available() else "the Cython backend is not built in this install"
        if self.backend == "numba" and importlib.util.find_spec("numba") is None:
            return "numba is not installed"
        return None

    def make(self, op, data, threads):
        import fastbce

        if OPERATIONS[op].unavailable:
            raise Unsupported(OPERATIONS[op].unavailable)
        d, kw = data, {"backend": self.backend, "n_threads": threads}
        calls = {
            "mean": lambda: fastbce.bce(d["y"], d["p"], **kw),
            "mean_u8": lambda: fastbce.bce(d["yu8"], d["p"], **kw),
            "mean_bool": lambda: fastbce.bce(d["yb"], d["p"], **kw),
            "mean_f64": lambda: fastbce.bce(d["y64"], d["p64"], **kw),
            "mean_soft": lambda: fastbce.bce(d["ys"], d["p"], **kw),
            "mean_logits": lambda: fastbce.bce(d["y"], d["x"], from_logits=True, **kw),
            "weighted": lambda: fastbce.bce(d["y2"], d["x2"], from_logits=True, sample_weight=d["w2"],
                                            pos_weight=d["pw"], **kw),
            "per_label": lambda: fastbce.bce(d["y2"], d["p2"], axis=0, **kw),
            "per_label_f": lambda: fastbce.bce(d["y2f"], d["p2f"], axis=0, **kw),
            "per_sample": lambda: fastbce.bce(d["y2"], d["p2"], axis=1, **kw),
            "per_group": lambda: fastbce.bce(d["y"], d["p"], groups=d["g"], n_groups=N_GROUPS, **kw),
            "grad": lambda: fastbce.bce_grad(d["y"], d["x"], from_logits=True, **kw),
            "value_and_grad": lambda: fastbce.bce_value_and_grad(d["y"], d["x"], from_logits=True, **kw),
        }
        if op in ("grad_out", "value_and_grad_out"):  # the output allocated here, outside the timed call
            out = np.empty_like(d["x"])
            function = fastbce.bce_grad if op == "grad_out" else fastbce.bce_value_and_grad
            return lambda: function(d["y"], d["x"], from_logits=True, out=out, **kw)
        if op == "focal":
            if not hasattr(fastbce, "focal_bce"):
                raise Unsupported("this fastbce has no focal_bce")
            return lambda: fastbce.focal_bce(d["y"], d["x"], gamma=FOCAL_GAMMA, alpha=FOCAL_ALPHA,
                                             from_logits=True, **kw)
        return calls[op]


def _np_prob_losses(y, p):
    q = np.clip(p, EPS, 1 - EPS)
    return -(y * np.log(q) + (1 - y) * np.log1p(-q))


def _np_logit_losses(y, x):
    return np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))


class NumPy(Contender):
    name = "numpy"
    threaded = False
    distributions = ("numpy",)
    calls = {
        "mean": "q = clip(p, 1e-7, 1-1e-7); -(y·log q + (1-y)·log1p(-q)).mean()",
        "mean_soft": "same as mean",
        "mean_logits": "(maximum(x, 0) - x·y + log1p(exp(-|x|))).mean()",
        "weighted": "Σ w·(pw·y·softplus(-x) + (1-y)·softplus(x)) / Σ w",
        "per_label": "clipped formula, .mean(axis=0)",
        "per_sample": "clipped formula, .mean(axis=1)",
        "per_group": "bincount(g, weights=losses) / bincount(g)",
        "grad": "(1/(1+exp(-x)) - y) / n",
        "value_and_grad": "e = exp(-|x|): loss from log1p(e), gradient from σ(x) via e",
        "focal": "α_t·(1-p_t)^γ·CE with σ(x) and the stable logits CE, .mean()",
    }

    def op_mean(self, d, threads):
        return lambda: float(_np_prob_losses(d["y"], d["p"]).mean())

    def op_mean_soft(self, d, threads):
        return lambda: float(_np_prob_losses(d["ys"], d["p"]).mean())

    def op_mean_logits(self, d, threads):
        return lambda: float(_np_logit_losses(d["y"], d["x"]).mean())

    def op_weighted(self, d, threads):
        y, x, w, pw = d["y2"], d["x2"], d["w2"], d["pw"]

        def run():
            log_term = np.log1p(np.exp(-np.abs(x)))
            loss = pw * y * (np.maximum(-x, 0) + log_term) + (1 - y) * (np.maximum(x, 0) + log_term)
            return float(np.sum(w * loss) / np.sum(w))
        return run

    def op_per_label(self, d, threads):
        return lambda: _np_prob_losses(d["y2"], d["p2"]).mean(axis=0)

    def op_per_sample(self, d, threads):
        return lambda: _np_prob_losses(d["y2"], d["p2"]).mean(axis=1)

    def op_per_group(self, d, threads):
        y, p, g = d["y"], d["p"], d["g"]

        def run():
            sums = np.bincount(g, weights=_np_prob_losses(y, p), minlength=N_GROUPS)
            with np.errstate(invalid="ignore"):  # empty groups: NaN, as in fastbce
                return sums / np.bincount(g, minlength=N_GROUPS)
        return run

    def op_grad(self, d, threads):
        y, x = d["y"], d["x"]
        return lambda: (1 / (1 + np.exp(-x)) - y) / np.float32(x.size)

    def op_value_and_grad(self, d, threads):
        y, x = d["y"], d["x"]

        def run():
            e = np.exp(-np.abs(x))
            loss = float((np.maximum(x, 0) - x * y + np.log1p(e)).mean())
            inv = 1 / (1 + e)
            sigmoid = np.where(x >= 0, inv, e * inv)
            return loss, (sigmoid - y) / np.float32(x.size)
        return run

    def op_focal(self, d, threads):
        y, x = d["y"], d["x"]

        def run():
            e = np.exp(-np.abs(x))
            ce = np.maximum(x, 0) - x * y + np.log1p(e)
            inv = 1 / (1 + e)
            p = np.where(x >= 0, inv, e * inv)
            p_t = p * y + (1 - p) * (1 - y)
            alpha_t = FOCAL_ALPHA * y + (1 - FOCAL_ALPHA) * (1 - y)
            return float((alpha_t * (1 - p_t) ** FOCAL_GAMMA * ce).mean())
        return run


class Torch(Contender):
    name = "torch"
    modules = ("torch",)
    distributions = ("torch",)
    calls = {
        "mean": "F.binary_cross_entropy(p, y)", "mean_soft": "F.binary_cross_entropy(p, y_soft)",
        "mean_logits": "F.binary_cross_entropy_with_logits(x, y)",
        "weighted": "F.binary_cross_entropy_with_logits(x, y, weight=w, pos_weight=pw, "
                    "reduction='sum') / w.sum()",
        "per_label": "F.binary_cross_entropy(p, y, reduction='none').mean(0)",
        "per_sample": "F.binary_cross_entropy(p, y, reduction='none').mean(1)",
        "per_group": "losses (reduction='none'), index_add_ by group / bincount(g)",
        "grad": "autograd.grad(F.binary_cross_entropy_with_logits(x, y), x)",
        "value_and_grad": "the same, keeping the loss",
        "focal": "torchvision.ops.sigmoid_focal_loss's formula written out (torchvision does not "
                 "import beside this torch), .mean()",
    }

    def _tensors(self, d, *keys):
        import torch

        return [torch.from_numpy(d[key]) for key in keys]  # no copies

    def op_mean(self, d, threads):
        import torch.nn.functional as F

        y, p = self._tensors(d, "y", "p")
        return lambda: F.binary_cross_entropy(p, y)

    def op_mean_soft(self, d, threads):
        import torch.nn.functional as F

        y, p = self._tensors(d, "ys", "p")
        return lambda: F.binary_cross_entropy(p, y)

    def op_mean_logits(self, d, threads):
        import torch.nn.functional as F

        y, x = self._tensors(d, "y", "x")
        return lambda: F.binary_cross_entropy_with_logits(x, y)

    def op_weighted(self, d, threads):
        import torch.nn.functional as F

        y, x, w, pw = self._tensors(d, "y2", "x2", "w2", "pw")
        return lambda: F.binary_cross_entropy_with_logits(x, y, weight=w, pos_weight=pw,
                                                          reduction="sum") / w.sum()

    def op_per_label(self, d, threads):
        import torch.nn.functional as F

        y, p = self._tensors(d, "y2", "p2")
        return lambda: F.binary_cross_entropy(p, y, reduction="none").mean(0)

    def op_per_sample(self, d, threads):
        import torch.nn.functional as F

        y, p = self._tensors(d, "y2", "p2")
        return lambda: F.binary_cross_entropy(p, y, reduction="none").mean(1)

    def op_per_group(self, d, threads):
        import torch
        import torch.nn.functional as F

        y, p, g = self._tensors(d, "y", "p", "g")

        def run():
            losses = F.binary_cross_entropy(p, y, reduction="none")
            sums = torch.zeros(N_GROUPS, dtype=losses.dtype).index_add_(0, g, losses)
            return sums / torch.bincount(g, minlength=N_GROUPS)
        return run

    def op_grad(self, d, threads):
        import torch
        import torch.nn.functional as F

        y, x = self._tensors(d, "y", "x")
        x = x.requires_grad_()

        def run():
            loss = F.binary_cross_entropy_with_logits(x, y)
            return torch.autograd.grad(loss, x)[0]
        return run

    def op_value_and_grad(self, d, threads):
        import torch
        import torch.nn.functional as F

        y, x = self._tensors(d, "y", "x")
        x = x.requires_grad_()

        def run():
            loss = F.binary_cross_entropy_with_logits(x, y)
            return loss.detach(), torch.autograd.grad(loss, x)[0]
        return run

    def op_focal(self, d, threads):
        import torch
        import torch.nn.functional as F

        y, x = self._tensors(d, "y", "x")

        def run():  # torchvision.ops.sigmoid_focal_loss(x, y, alpha, gamma, reduction="mean")
            p = torch.sigmoid(x)
            ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
            p_t = p * y + (1 - p) * (1 - y)
            loss = ce * ((1 - p_t) ** FOCAL_GAMMA)
            alpha_t = FOCAL_ALPHA * y + (1 - FOCAL_ALPHA) * (1 - y)
            return (alpha_t * loss).mean()
        return run


class Sklearn(Contender):
    name = "sklearn"
    threaded = False
    modules = ("sklearn.metrics",)
    distributions = ("scikit-learn",)
    calls = {"mean": "sklearn.metrics.log_loss(y, p)"}
    unsupported = {
        "mean_soft": "log_loss rejects soft labels",
        "mean_logits": "log_loss takes probabilities only",
        "weighted": "log_loss has no pos_weight",
        "per_label": "log_loss has no per-column reduction",
        "per_sample": "log_loss has no per-row reduction",
        "per_group": "log_loss has no groups",
        "grad": "scikit-learn has no BCE gradient in its public API",
        "value_and_grad": "scikit-learn has no BCE gradient in its public API",
        "focal": "scikit-learn has no focal loss",
    }

    def op_mean(self, d, threads):
        from sklearn.metrics import log_loss

        return lambda: log_loss(d["y"], d["p"])


class Jax(Contender):
    name = "jax"
    modules = ("jax", "optax")
    distributions = ("jax", "jaxlib", "optax")
    calls = {
        "mean": "jit: clipped formula, jnp.mean", "mean_soft": "same as mean",
        "mean_logits": "jit: optax.losses.sigmoid_binary_cross_entropy(x, y).mean()",
        "weighted": "jit: Σ w·(pw·y·softplus(-x) + (1-y)·softplus(x)) / Σ w (optax has no pos_weight)",
        "per_label": "jit: clipped formula, mean(axis=0)",
        "per_sample": "jit: clipped formula, mean(axis=1)",
        "per_group": "jit: segment_sum(losses, g) / segment_sum(1, g)",
        "grad": "jit(grad(mean of optax sigmoid_binary_cross_entropy))",
        "value_and_grad": "jit(value_and_grad(...))",
        "focal": f"jit: optax.losses.sigmoid_focal_loss(x, y, alpha={FOCAL_ALPHA:g}, gamma={FOCAL_GAMMA:g}).mean()",
    }

    @staticmethod
    def _prob_losses(y, p):
        import jax.numpy as jnp

        q = jnp.clip(p, EPS, 1 - EPS)
        return -(y * jnp.log(q) + (1 - y) * jnp.log1p(-q))

    @staticmethod
    def _logit_mean(x, y):
        import optax

        return optax.losses.sigmoid_binary_cross_entropy(x, y).mean()

    def _compile(self, function, d, *keys):
        import jax

        args = [jax.device_put(d[key]) for key in keys]  # copies into JAX's own buffers
        jitted = jax.jit(function)
        return lambda: jax.block_until_ready(jitted(*args))

    def op_mean(self, d, threads):
        return self._compile(lambda y, p: self._prob_losses(y, p).mean(), d, "y", "p")

    def op_mean_soft(self, d, threads):
        return self._compile(lambda y, p: self._prob_losses(y, p).mean(), d, "ys", "p")

    def op_mean_logits(self, d, threads):
        return self._compile(lambda y, x: self._logit_mean(x, y), d, "y", "x")

    def op_weighted(self, d, threads):
        import jax

        def weighted(y, x, w, pw):
            loss = pw * y * jax.nn.softplus(-x) + (1 - y) * jax.nn.softplus(x)
            return (w * loss).sum() / w.sum()
        return self._compile(weighted, d, "y2", "x2", "w2", "pw")

    def op_per_label(self, d, threads):
        return self._compile(lambda y, p: self._prob_losses(y, p).mean(axis=0), d, "y2", "p2")

    def op_per_sample(self, d, threads):
        return self._compile(lambda y, p: self._prob_losses(y, p).mean(axis=1), d, "y2", "p2")

    def op_per_group(self, d, threads):
        import jax
        import jax.numpy as jnp

        def per_group(y, p, g):
            sums = jax.ops.segment_sum(self._prob_losses(y, p), g, num_segments=N_GROUPS)
            counts = jax.ops.segment_sum(jnp.ones_like(p), g, num_segments=N_GROUPS)
            return sums / counts
        return self._compile(per_group, d, "y", "p", "g")

    def op_grad(self, d, threads):
        import jax

        return self._compile(jax.grad(self._logit_mean), d, "x", "y")

    def op_value_and_grad(self, d, threads):
        import jax

        return self._compile(jax.value_and_grad(self._logit_mean), d, "x", "y")

    def op_focal(self, d, threads):
        import optax

        return self._compile(lambda y, x: optax.losses.sigmoid_focal_loss(
            x, y, alpha=FOCAL_ALPHA, gamma=FOCAL_GAMMA).mean(), d, "y", "x")


class TensorFlow(Contender):
    name = "tensorflow"
    modules = ("tensorflow", "keras")
    distributions = ("tensorflow-cpu", "tensorflow", "keras")
    calls = {
        "mean": "tf.function: keras.losses.BinaryCrossentropy()(y, p)", "mean_soft": "same as mean",
        "mean_logits": "tf.function: BinaryCrossentropy(from_logits=True)(y, x)",
        "weighted": "tf.function: Σ w·tf.nn.weighted_cross_entropy_with_logits(y, x, pw) / Σ w "
                    "(Keras has no pos_weight)",
        "per_label": "tf.function: keras.losses.binary_crossentropy(y, p, axis=0)",
        "per_sample": "tf.function: keras.losses.binary_crossentropy(y, p)",
        "per_group": "tf.function: unsorted_segment_mean(binary_crossentropy(y[:, None], p[:, None]), g) "
                     "(0, not NaN, for an empty group)",
        "grad": "tf.function: GradientTape over BinaryCrossentropy(from_logits=True)",
        "value_and_grad": "the same, keeping the loss",
        "focal": f"tf.function: keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True, "
                 f"alpha={FOCAL_ALPHA:g}, gamma={FOCAL_GAMMA:g}, from_logits=True)(y, x)",
    }

    def _compile(self, function, d, *keys):
        import tensorflow as tf

        args = [tf.constant(d[key]) for key in keys]  # copies into TensorFlow's own buffers
        traced = tf.function(function)
        return lambda: traced(*args)  # eager CPU execution: the result is ready on return

    def op_mean(self, d, threads):
        import keras

        loss = keras.losses.BinaryCrossentropy()
        return self._compile(lambda y, p: loss(y, p), d, "y", "p")

    def op_mean_soft(self, d, threads):
        import keras

        loss = keras.losses.BinaryCrossentropy()
        return self._compile(lambda y, p: loss(y, p), d, "ys", "p")

    def op_mean_logits(self, d, threads):
        import keras

        loss = keras.losses.BinaryCrossentropy(from_logits=True)
        return self._compile(lambda y, x: loss(y, x), d, "y", "x")

    def op_weighted(self, d, threads):
        import tensorflow as tf

        def weighted(y, x, w, pw):
            loss = tf.nn.weighted_cross_entropy_with_logits(labels=y, logits=x, pos_weight=pw)
            return tf.reduce_sum(w * loss) / tf.reduce_sum(w)
        return self._compile(weighted, d, "y2", "x2", "w2", "pw")

    def op_per_label(self, d, threads):
        import keras

        return self._compile(lambda y, p: keras.losses.binary_crossentropy(y, p, axis=0), d, "y2", "p2")

    def op_per_sample(self, d, threads):
        import keras

        return self._compile(lambda y, p: keras.losses.binary_crossentropy(y, p), d, "y2", "p2")

    def op_per_group(self, d, threads):
        import keras
        import tensorflow as tf

        def per_group(y, p, g):
            losses = keras.losses.binary_crossentropy(y[:, None], p[:, None])
            return tf.math.unsorted_segment_mean(losses, g, N_GROUPS)
        return self._compile(per_group, d, "y", "p", "g")

    def _grad(self, d, keep_loss):
        import keras
        import tensorflow as tf

        bce = keras.losses.BinaryCrossentropy(from_logits=True)

        def grad(y, x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = bce(y, x)
            gradient = tape.gradient(loss, x)
            return (loss, gradient) if keep_loss else gradient
        return self._compile(grad, d, "y", "x")

    def op_grad(self, d, threads):
        return self._grad(d, False)

    def op_value_and_grad(self, d, threads):
        return self._grad(d, True)

    def op_focal(self, d, threads):
        import keras

        loss = keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=FOCAL_ALPHA,
                                                    gamma=FOCAL_GAMMA, from_logits=True)
        return self._compile(lambda y, x: loss(y, x), d, "y", "x")


CONTENDERS = {c.name: c for c in (
    Fastbce("numba"), Fastbce("cython"), Fastbce("numpy"), NumPy(), Torch(), Sklearn(), Jax(),
    TensorFlow(),
)}


def reference_name():
    """The fastbce row other contenders are compared with: the backend ``"auto"`` picks."""
    from ._backends import resolve_backend

    return f"fastbce[{resolve_backend('auto')}]"


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


def _first_call(contender, ops, data, threads):
    """Prepare and run the contender's first supported operation; returns its name."""
    for op in dict.fromkeys(("mean", "mean_logits", *ops)):
        try:
            function = contender.make(op, data, threads)
        except Unsupported:
            continue
        function()
        return op
    return None


def _worker(config, numpy_import_s, import_s):
    """Body of a worker process: one contender (or the ceiling) at one thread count."""
    threads = config["threads"]
    name = config["contender"]
    apply_threads(threads)
    contender = None if name == "ceiling" else CONTENDERS[name]
    if contender is not None and config.get("startup"):
        data = make_data(FIRST_CALL_SIZE, config["seed"])
        start = time.perf_counter()
        op = _first_call(contender, config["ops"], data, threads)
        _emit({"kind": "startup", "contender": name, "numpy_import_s": numpy_import_s,
               "import_s": import_s, "first_call_s": time.perf_counter() - start, "first_op": op,
               "cold_cache": bool(config.get("cold_cache"))})
        if config.get("startup_only"):
            return
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
    "import json, fastbce.bench as b\n"
    "b._worker(json.load(open(sys.argv[1])), t1 - t0, t2 - t1)\n"
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
# The run: plan, workers, report
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
             "optax", "tensorflow-cpu", "tensorflow", "keras", "threadpoolctl"]
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
    return {"cpu": model, "cores": _threads.available_cores(), "logical_cpus": os.cpu_count(),
            "memory_bytes": memory, "machine": platform.machine(), "system": platform.system(),
            "python": platform.python_version()}


def _load():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def run(*, sizes, ops, contenders, threads, budget, min_repeats, memory_size, output_dir, command,
        seed=0, cold_cache=True, mode="custom"):
    """Measure, then write BENCHMARKS.md, BENCHMARKS.png and BENCHMARKS.json into output_dir.
    Returns the results dictionary."""
    from tqdm import tqdm

    reference = reference_name()
    results = {"meta": {
        "command": command, "mode": mode,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(), "versions": _versions(), "load_before": _load(),
        "sizes": list(sizes), "ops": list(ops), "threads": list(threads), "budget_s": budget,
        "min_repeats": min_repeats, "memory_size": memory_size, "seed": seed, "reference": reference,
        "thread_waiting": {name: os.environ[name] for name in _WAIT_VARIABLES if name in os.environ},
        "contenders": {}},
        "timings": [], "skips": [], "errors": [], "startup": [], "memory": [], "info": [], "workers": []}
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
    if cold_cache and "fastbce[numba]" in runnable:
        jobs.append(("fastbce[numba]", max(threads), {"cold_cache": True}))
    expected = {(name, t, bool(job.get("cold_cache"))): 1 if job.get("cold_cache") else len(sizes) * len(ops)
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
            env = {}
            if job.get("cold_cache"):
                config.update(cold_cache=True, startup_only=True)
                env["NUMBA_CACHE_DIR"] = os.path.join(tmpdir, "cold-numba-cache")
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
                       "startup": "startup", "memory": "memory", "info": "info"}[kind]
                results[key].append(record)
            results["workers"].append({"contender": name, "threads": t, "cold_cache": bool(job.get("cold_cache")),
                                       "seconds": round(time.perf_counter() - started, 2)})
            done += expected[(name, t, bool(job.get("cold_cache")))]
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


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


class Results:
    """Look-ups into a results dictionary."""

    def __init__(self, results):
        self.raw = results
        self.meta = results["meta"]
        self.seconds = {(r["contender"], r["op"], r["size"], r["threads"]): r["seconds"]
                        for r in results["timings"]}
        self.threaded = {name: info["threaded"] for name, info in self.meta["contenders"].items()}
        self.threaded["ceiling"] = True
        names = self.contenders_with_results()
        self.reference = self.meta["reference"]
        if self.reference not in names:  # the auto backend was not measured: the first fastbce row
            self.reference = next((n for n in names if n.startswith("fastbce")), self.reference)

    def rate(self, contender, op, size, threads):
        """(elements per second, measured with 1 thread instead because it has none) or (None, _)."""
        seconds = self.seconds.get((contender, op, size, threads))
        if seconds is None and not self.threaded.get(contender, True):
            seconds = self.seconds.get((contender, op, size, 1))
            if seconds is not None:
                return size / seconds, threads != 1
        return (None, False) if seconds is None else (size / seconds, False)

    def contenders_with_results(self):
        names = {r["contender"] for r in self.raw["timings"]} - {"ceiling"}
        return [name for name in self.meta["contenders"] if name in names]

    def skip_reason(self, contender, op):
        for skip in self.raw["skips"]:
            if skip["contender"] == contender and skip["op"] == op:
                return skip["reason"]
        return None


def _fmt_rate(rate):
    if rate is None:
        return "—"
    m = rate / 1e6
    return f"{m:,.0f}" if m >= 100 else f"{m:,.1f}" if m >= 1 else f"{m:.3f}"


def _fmt_ratio(ratio):
    if ratio is None:
        return "—"
    return f"{ratio:,.0f}×" if ratio >= 100 else f"{ratio:.1f}×" if ratio >= 1 else f"{ratio:.2f}×"


def _fmt_size(size):
    exponent = int(round(np.log10(size)))
    return f"1e{exponent}" if 10**exponent == size else f"{size:,}"


def _fmt_bytes(n):
    if n is None:
        return "—"
    return f"{n / 2**20:,.0f} MiB" if n >= 2**20 else f"{n / 2**10:,.0f} KiB"


def markdown_report(results):
    r = Results(results)
    meta = r.meta
    sizes, ops, threads = meta["sizes"], meta["ops"], meta["threads"]
    size = max(sizes)
    small = min(sizes)
    reference = r.reference
    contenders = r.contenders_with_results()
    machine = meta["machine"]
    lines = ["# fastbce benchmarks", ""]
    lines += [f"Command: `{meta['command']}` ({meta['mode']} run), {meta['date']}.", ""]
    memory = f", {machine['memory_bytes'] / 2**30:.0f} GiB" if machine.get("memory_bytes") else ""
    lines += [f"Machine: {machine['cores']} cores ({machine['cpu']}, {machine['machine']}){memory}, "
              f"Python {machine['python']}; load average (1, 5, 15 min) before the run "
              f"{meta.get('load_before')}, after {meta.get('load_after')}.", ""]
    lines += ["Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".", ""]
    layers = sorted({i["numba_threading_layer"] for i in results["info"] if i.get("numba_threading_layer")})
    if layers:
        lines += [f"Numba threading layer (fastbce[numba] and the ceiling): {', '.join(layers)}.", ""]
    waiting = meta.get("thread_waiting")
    if waiting:
        lines += ["Set in the environment of every contender: "
                  + ", ".join(f"`{name}={value}`" for name, value in waiting.items()) + ".", ""]
    lines += [
        f"Inputs: float32 predictions (probabilities, or logits) and float32 labels, 8 bytes per "
        f"element, the same arrays for every contender (int32 group ids for per-group). Elements/s = "
        f"predictions per second, median of at least {meta['min_repeats']} timed calls after a warm-up; "
        f"conversions into a library's own arrays (JAX, TensorFlow copy) are not timed. "
        f"**Ceiling** = a Numba `prange` pass that only reads the same inputs (reads them and writes "
        f"one float32 per element for gradients: into a preallocated array, or, where the operation "
        f"returns a new array, into a new array per call, whose fresh pages the OS zeroes on first "
        f"touch), measured in the same run: no BCE can be faster. **fastbce ×** = {reference} "
        f"elements/s ÷ the contender's, same operation, size and thread count (above 1: fastbce is faster). Each contender runs in its "
        f"own fresh process per thread count, pinned to that many cores, with every thread setting "
        f"(fastbce `n_threads`, `numba.set_num_threads`, `torch.set_num_threads`, threadpoolctl, "
        f"OMP/MKL/OpenBLAS variables, XLA_FLAGS, TF intra/inter-op threads) at that count. † = "
        f"a contender without threads: its 1-thread figure, compared with fastbce on all threads.", ""]

    lines += ["Operations: " + "; ".join(f"`{op}` = {OPERATIONS[op].title}" for op in ops) + ".", ""]

    def block(size_, title):
        out = [f"## {title}", ""]
        head = "| operation | contender |"
        rule = "| --- | --- |"
        for t in threads:
            label = "1 thread" if t == 1 else f"{t} threads"
            head += f" {label}: M elem/s | of ceiling | fastbce × |"
            rule += " ---: | ---: | ---: |"
        out += [head, rule]
        for op in ops:
            row = f"| {op} | ceiling ({ceiling_label(op)}) |"
            for t in threads:
                rate, _ = r.rate("ceiling", op, size_, t)
                row += f" {_fmt_rate(rate)} | 100% | |"
            out.append(row)
            for name in contenders:
                rates = [r.rate(name, op, size_, t) for t in threads]
                if all(rate is None for rate, _ in rates):
                    continue
                label = f"**{name}**" if name == reference else name
                row = f"| {op} | {label} |"
                for t, (rate, borrowed) in zip(threads, rates):
                    ceiling, _ = r.rate("ceiling", op, size_, t)
                    ref, _ = r.rate(reference, op, size_, t)
                    fraction = f"{rate / ceiling:.0%}" if rate and ceiling else "—"
                    ratio = _fmt_ratio(ref / rate) if rate and ref else "—"
                    row += f" {_fmt_rate(rate)}{'†' if borrowed else ''} | {fraction} | {ratio} |"
                out.append(row)
        return out + [""]

    lines += block(size, f"Throughput at {size:,} elements")
    # Call overhead: microseconds per call at the smallest size, 1 thread.
    if small != size:
        lines += [f"## Time per call at {small:,} elements (µs, 1 thread): call overhead", ""]
        lines += ["| contender | " + " | ".join(ops) + " |", "| --- |" + " ---: |" * len(ops)]
        for name in ["ceiling", *contenders]:
            cells = []
            for op in ops:
                seconds = r.seconds.get((name, op, small, 1))
                cells.append("—" if seconds is None else f"{seconds * 1e6:,.0f}" if seconds >= 1e-4
                             else f"{seconds * 1e6:,.1f}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    # Startup and memory.
    startup = {(s["contender"], s["cold_cache"]): s for s in results["startup"]}
    memory = {(m["contender"], m["op"]): m for m in results["memory"]}
    if startup or memory:
        msize = meta.get("memory_size")
        lines += ["## Start-up time and peak extra memory", ""]
        lines += [
            f"Import = importing the contender's modules in a fresh process after `import numpy` "
            f"(numpy itself took {_median_numpy_import(results)}). First call = preparing and running "
            f"its first operation on {FIRST_CALL_SIZE:,} elements right after (Numba loads or compiles "
            f"kernels, JAX/TensorFlow trace and compile). Peak extra memory = RSS high-water mark "
            f"(Linux VmHWM, reset through /proc/self/clear_refs just before the call) minus RSS before "
            f"the call, at {f'{msize:,}' if msize else '(not measured in this run)'} elements, in the contender's worker process; it includes the returned result (the gradient array) and every native "
            f"allocation. In brackets: multiple of the operation's input bytes. This is the steady "
            f"state (second call at that shape); where the first call at that shape (compilation, "
            f"tracing, filling a library's buffer pool, which it then keeps) peaked much higher, the "
            f"cell says so.", ""]
        head = "| contender | import (s) | first call (s) |" + "".join(f" {op} |" for op in ops)
        lines += [head, "| --- | ---: | ---: |" + " ---: |" * len(ops)]
        for name in contenders:
            s = startup.get((name, False))
            cells = [f"{s['import_s']:.2f}", f"{s['first_call_s']:.2f}"] if s else ["—", "—"]
            cold = startup.get((name, True))
            if cold:
                cells[1] += f" ({cold['first_call_s']:.2f} cold cache)"
            for op in ops:
                m = memory.get((name, op))
                if m is None or m["peak_extra_bytes"] is None:
                    cells.append("—")
                    continue
                cell = f"{_fmt_bytes(m['peak_extra_bytes'])} ({m['peak_extra_bytes'] / m['input_bytes']:.1f}×)"
                first = m.get("first_call_peak_extra_bytes")
                if first is not None and first > max(2 * m["peak_extra_bytes"], 8 * 2**20):
                    cell += f"; first call {_fmt_bytes(first)}"
                cells.append(cell)
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    # What each contender calls, and what was skipped.
    lines += ["## Contenders", ""]
    for name, info in meta["contenders"].items():
        if info["skipped"]:
            lines.append(f"- **{name}**: skipped, {info['skipped']}.")
            continue
        lines.append(f"- **{name}**{'' if info['threaded'] else ' (no threads)'}:")
        for op in ops:
            if op in info["calls"]:
                lines.append(f"  - {op}: `{info['calls'][op]}`")
            else:
                reason = r.skip_reason(name, op) or info["unsupported"].get(op, "not measured")
                lines.append(f"  - {op}: not measured ({reason})")
    unavailable = [op for op in OPERATIONS.values() if op.unavailable]
    for op in unavailable:
        lines.append(f"- Operation **{op.name}** ({op.title}): not measured, {op.unavailable}.")
    if results["errors"]:
        lines += ["", "## Errors", ""]
        for error in results["errors"]:
            lines.append(f"- {error.get('contender')} {error.get('op', '')} {error.get('size', '')} "
                         f"{error.get('threads', '')} threads: {error.get('error')}")
    lines += ["", f"Plot: `BENCHMARKS.png` (throughput against size, log-log, ceiling dashed). Raw "
              f"results: `BENCHMARKS.json`. Reproduce with `{meta['command']}`.", ""]
    return "\n".join(lines)


def _median_numpy_import(results):
    values = [s["numpy_import_s"] for s in results["startup"]]
    return f"{statistics.median(values):.2f} s" if values else "—"


_COLORS = {"fastbce[numba]": "tab:red", "fastbce[cython]": "tab:purple", "fastbce[numpy]": "tab:pink",
           "numpy": "tab:blue", "torch": "tab:orange", "sklearn": "tab:olive", "jax": "tab:green",
           "tensorflow": "tab:brown"}


def plot(results, path):
    """Throughput against size, log-log: one panel per operation, a row of panels per thread count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = Results(results)
    meta = r.meta
    ops, threads, sizes = meta["ops"], meta["threads"], sorted(meta["sizes"])
    contenders = r.contenders_with_results()
    columns = min(3, len(ops))
    rows_per = -(-len(ops) // columns)
    figure = plt.figure(figsize=(5.0 * columns, 3.3 * rows_per * len(threads) + 1.3), layout="constrained")
    subfigures = np.atleast_1d(figure.subfigures(len(threads), 1))
    for subfigure, t in zip(subfigures, threads):
        subfigure.suptitle(f"{t} thread{'s' if t > 1 else ''}", fontsize=14, fontweight="bold")
        axes = np.atleast_1d(subfigure.subplots(rows_per, columns, sharex=True)).reshape(-1)
        for axis, op in zip(axes, ops):
            xs = [s for s in sizes if r.rate("ceiling", op, s, t)[0]]
            axis.plot(xs, [r.rate("ceiling", op, s, t)[0] / 1e6 for s in xs], "k--", lw=2,
                      label="ceiling (stream read; read+write for gradients)")
            for name in contenders:
                points = [(s, r.rate(name, op, s, t)[0]) for s in sizes]
                points = [(s, v / 1e6) for s, v in points if v]
                if points:
                    style = "-" if r.threaded.get(name, True) else ":"
                    axis.plot(*zip(*points), style, marker="o", ms=3.5, lw=2.2 if name.startswith("fastbce[n")
                              else 1.5, color=_COLORS.get(name), label=name + ("" if r.threaded.get(name, True)
                                                                               else " (no threads)"))
            axis.set_xscale("log")
            axis.set_yscale("log")
            axis.set_title(f"{op}: {OPERATIONS[op].title}", fontsize=9)
            axis.grid(True, which="major", alpha=0.4)
            axis.grid(True, which="minor", alpha=0.12)
            axis.tick_params(labelsize=8)
            axis.set_xlabel("elements", fontsize=8)
            axis.set_ylabel("M elements/s", fontsize=8)
        for axis in axes[len(ops):]:
            axis.set_visible(False)
    handles, labels = {}, []
    for axis in figure.axes:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    figure.legend(list(handles.values()), list(handles), loc="outside lower center",
                  ncol=min(5, len(handles)), fontsize=10, frameon=False)
    figure.suptitle(f"fastbce benchmarks: throughput vs size ({meta['machine']['cores']} cores, "
                    f"{meta['machine']['cpu']}, {meta['date']})", fontsize=12)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def write_outputs(results, output_dir):
    md = os.path.join(output_dir, "BENCHMARKS.md")
    png = os.path.join(output_dir, "BENCHMARKS.png")
    raw = os.path.join(output_dir, "BENCHMARKS.json")
    with open(raw, "w") as file:
        json.dump(results, file, indent=1)
    with open(md, "w") as file:
        file.write(markdown_report(results))
    plot(results, png)
    return md, png, raw


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def add_arguments(parser):
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="about a minute: sizes up to 1e6")
    size.add_argument("--full", action="store_true", help="sizes up to 1e8 (long; needs ~10 GB of memory)")
    parser.add_argument("--output-dir", default=".", help="where BENCHMARKS.md/.png/.json go (default: .)")
    parser.add_argument("--sizes", type=int, nargs="+", help="override the sizes (multiples of 100)")
    parser.add_argument("--ops", nargs="+", choices=MEASURED_OPS, help="operations (default: all)")
    parser.add_argument("--contenders", nargs="+", choices=tuple(CONTENDERS), help="default: all installed")
    parser.add_argument("--threads", type=int, nargs="+", help="thread counts (default: 1 and all cores)")
    parser.add_argument("--budget", type=float, help="seconds of timing per measurement")
    parser.add_argument("--memory-size", type=int, help="elements for the memory measurement (0: skip)")
    parser.add_argument("--no-cold-cache", action="store_true",
                        help="skip the fastbce first call with an empty Numba cache")


def bench_command(args, argv):
    mode = "quick" if args.quick else "full" if args.full else "default"
    settings = dict(MODES[mode])
    cores = _threads.available_cores()
    threads = sorted(set(args.threads or (1, cores)))
    if any(t < 1 or t > cores for t in threads):
        raise ValueError(f"thread counts must lie in [1, {cores}], got {threads}")
    sizes = sorted(set(args.sizes or settings["sizes"]))
    if args.budget is not None:
        settings["budget"] = args.budget
    memory_size = settings["memory_size"] if args.memory_size is None else args.memory_size
    run(sizes=sizes, ops=list(args.ops or MEASURED_OPS),
        contenders=list(args.contenders or CONTENDERS), threads=threads,
        budget=settings["budget"], min_repeats=settings["min_repeats"],
        memory_size=memory_size or None, output_dir=args.output_dir,
        command=shlex.join(["fastbce", *argv]), cold_cache=not args.no_cold_cache, mode=mode)
    return 0


def main(argv=None):
    """``python -m fastbce.bench [options]``: the same as ``fastbce bench``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="fastbce bench", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return bench_command(parser.parse_args(argv), ["bench", *argv])


if __name__ == "__main__":
    raise SystemExit(main())
