"""The contenders: each library's way of computing the operations of :mod:`.operations`.

A :class:`Contender` turns an operation and its data into a callable that computes the result and
returns when it is ready; conversions into the library's own arrays happen outside that call.
"""

import importlib.util

import numpy as np

from .._backends import cython_available, resolve_backend
from .files import fastbce_score, numpy_formula, polars_query
from .operations import (CALIBRATION_BINS, FOCAL_ALPHA, FOCAL_GAMMA, N_GROUPS, OPERATIONS,
                         TVERSKY_ALPHA, TVERSKY_BETA, UPDATE_SIZE)

EPS = 1e-7  # probability clipping of the NumPy/JAX formulas (fastbce's default, Keras' epsilon)


class Unsupported(Exception):
    """A contender has no way to compute an operation (the message says why)."""


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
            "mean_logits": "bce(y, x, from_logits=True)", "mean_f16": "bce(y, p_float16)",
            "strided": "bce(y[::2], p[::2])", "per_sample_pw": "bce(y, p, pos_weight=pw_rows)",
            "weighted": "bce(y, x, from_logits=True, sample_weight=w, pos_weight=pw)",
            "per_label": "bce(y, p, axis=0)", "per_label_f": "bce(y_fortran, p_fortran, axis=0)",
            "per_sample": "bce(y, p, axis=1)", "per_group": "bce(y, p, groups=g, n_groups=G)",
            "grad": "bce_grad(y, x, from_logits=True)",
            "grad_out": "bce_grad(y, x, from_logits=True, out=g)",
            "value_and_grad": "bce_value_and_grad(y, x, from_logits=True)",
            "value_and_grad_out": "bce_value_and_grad(y, x, from_logits=True, out=g)",
            "focal": f"focal_bce(y, x, gamma={FOCAL_GAMMA:g}, alpha={FOCAL_ALPHA:g}, from_logits=True)",
            "file": "_report.score_file(path, quiet=True)",
            "elements": "bce(y, p, reduction='none')",
            "elements_logits": "bce(y, x, from_logits=True, reduction='none')",
            "grad_hess": "bce_grad_hess(y, x)",
            "focal_grad_hess": f"focal_bce_grad_hess(y, x, gamma={FOCAL_GAMMA:g}, alpha={FOCAL_ALPHA:g})",
            "roc_auc": "roc_auc(y, p)", "average_precision": "average_precision(y, p)",
            "brier": "brier(y, p)", "calibration": f"calibration_curve(y, p, n_bins={CALIBRATION_BINS})",
            "score": "score(y, p)", "score_sums": "score(y, p, sums_only=True)",
            "score_groups": "score(y, p, groups=g, n_groups=G)",
            "score_groups_sums": "score(y, p, groups=g, n_groups=G, sums_only=True)",
            "hinge": "hinge(y, x)", "squared_hinge": "squared_hinge(y, x)", "dice": "dice(y, p)",
            "tversky": f"tversky(y, p, alpha={TVERSKY_ALPHA:g}, beta={TVERSKY_BETA:g})",
        }
        self.calls = {op: f"fastbce.{call[:-1]}, backend={backend!r})" for op, call in self.calls.items()}
        self.calls["accumulate"] = f"fastbce.Accumulator(backend={backend!r}).update(y, p)"
        self.calls["accumulate_nohist"] = f"fastbce.Accumulator(auc_bits=0, backend={backend!r}).update(y, p)"

    def missing(self):
        if self.backend == "cython":
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
            "mean_f16": lambda: fastbce.bce(d["y"], d["p16"], **kw),
            "strided": lambda: fastbce.bce(d["y_every2"], d["p_every2"], **kw),
            "per_sample_pw": lambda: fastbce.bce(d["y2"], d["p2"], pos_weight=d["pw_rows"], **kw),
            "weighted": lambda: fastbce.bce(d["y2"], d["x2"], from_logits=True, sample_weight=d["w2"],
                                            pos_weight=d["pw"], **kw),
            "per_label": lambda: fastbce.bce(d["y2"], d["p2"], axis=0, **kw),
            "per_label_f": lambda: fastbce.bce(d["y2f"], d["p2f"], axis=0, **kw),
            "per_sample": lambda: fastbce.bce(d["y2"], d["p2"], axis=1, **kw),
            "per_group": lambda: fastbce.bce(d["y"], d["p"], groups=d["g"], n_groups=N_GROUPS, **kw),
            "grad": lambda: fastbce.bce_grad(d["y"], d["x"], from_logits=True, **kw),
            "value_and_grad": lambda: fastbce.bce_value_and_grad(d["y"], d["x"], from_logits=True, **kw),
            "roc_auc": lambda: fastbce.roc_auc(d["y"], d["p"], **kw),
            "average_precision": lambda: fastbce.average_precision(d["y"], d["p"], **kw),
            "brier": lambda: fastbce.brier(d["y"], d["p"], **kw),
            "calibration": lambda: _filled_bins(fastbce.calibration_curve(
                d["y"], d["p"], n_bins=CALIBRATION_BINS, **kw)),
            "score": lambda: fastbce.score(d["y"], d["p"], **kw).roc_auc,  # a number to compare
            "score_sums": lambda: _report_values(fastbce.score(d["y"], d["p"], sums_only=True, **kw)),
            "score_groups": lambda: _report_values(fastbce.score(d["y"], d["p"], groups=d["g"],
                                                                 n_groups=N_GROUPS, **kw)),
            "score_groups_sums": lambda: _report_values(fastbce.score(d["y"], d["p"], groups=d["g"],
                                                                      n_groups=N_GROUPS,
                                                                      sums_only=True, **kw)),
        }
        if op == "file":  # the function of `fastbce score`, on a Parquet file of the data
            return fastbce_score(d["parquet"], threads, self.backend)
        if op in ("accumulate", "accumulate_nohist"):
            y, p = d["y"], d["p"]
            settings = {"auc_bits": 0} if op == "accumulate_nohist" else {}

            def accumulate():
                accumulator = fastbce.Accumulator(**settings, **kw)
                for k in range(0, y.size, UPDATE_SIZE):
                    accumulator.update(y[k:k + UPDATE_SIZE], p[k:k + UPDATE_SIZE])
                return accumulator.result().log_loss
            return accumulate
        if op in ("grad_out", "value_and_grad_out"):  # the output allocated here, outside the timed call
            out = np.empty_like(d["x"])
            function = fastbce.bce_grad if op == "grad_out" else fastbce.bce_value_and_grad
            return lambda: function(d["y"], d["x"], from_logits=True, out=out, **kw)
        calls.update({
            "elements": lambda: fastbce.bce(d["y"], d["p"], reduction="none", **kw),
            "elements_logits": lambda: fastbce.bce(d["y"], d["x"], from_logits=True, reduction="none",
                                                   **kw),
            "grad_hess": lambda: fastbce.bce_grad_hess(d["y"], d["x"], **kw),
            "focal_grad_hess": lambda: fastbce.focal_bce_grad_hess(d["y"], d["x"], gamma=FOCAL_GAMMA,
                                                                   alpha=FOCAL_ALPHA, **kw),
        })
        if op == "focal":
            if not hasattr(fastbce, "focal_bce"):
                raise Unsupported("this fastbce has no focal_bce")
            return lambda: fastbce.focal_bce(d["y"], d["x"], gamma=FOCAL_GAMMA, alpha=FOCAL_ALPHA,
                                             from_logits=True, **kw)
        if op in ("hinge", "squared_hinge", "dice", "tversky"):
            if not hasattr(fastbce, "hinge"):
                raise Unsupported("this fastbce has no hinge, Dice or Tversky loss")
            margin = {"hinge": lambda: fastbce.hinge(d["y"], d["x"], **kw),
                      "squared_hinge": lambda: fastbce.squared_hinge(d["y"], d["x"], **kw),
                      "dice": lambda: fastbce.dice(d["y"], d["p"], **kw),
                      "tversky": lambda: fastbce.tversky(d["y"], d["p"], alpha=TVERSKY_ALPHA,
                                                         beta=TVERSKY_BETA, **kw)}
            return margin[op]
        return calls[op]


def _filled_bins(table):
    """(positive rate, mean prediction) of the non-empty bins: scikit-learn's return value."""
    filled = table.count > 0
    return table.pos_rate[filled], table.mean_pred[filled]


def _report_values(result):
    """The fields of a score report the NumPy contender computes too."""
    return [result.log_loss, result.positive_rate, result.mean_prediction, result.log_loss_positives,
            result.log_loss_negatives]


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
        "mean_f16": "same as mean, float16 p", "strided": "same as mean, on the strided views",
        "per_sample_pw": "q = clip(p); -(pw·y·log q + (1-y)·log1p(-q)).mean()",
        "weighted": "Σ w·(pw·y·softplus(-x) + (1-y)·softplus(x)) / Σ w",
        "per_label": "clipped formula, .mean(axis=0)",
        "per_sample": "clipped formula, .mean(axis=1)",
        "per_group": "bincount(g, weights=losses) / bincount(g)",
        "grad": "(1/(1+exp(-x)) - y) / n",
        "value_and_grad": "e = exp(-|x|): loss from log1p(e), gradient from σ(x) via e",
        "focal": "α_t·(1-p_t)^γ·CE with σ(x) and the stable logits CE, .mean()",
        "file": "pyarrow.parquet.read_table, ChunkedArray.to_numpy, the mean's formula, y.mean(), p.mean()",
        "elements": "the clipped formula, no mean",
        "elements_logits": "maximum(x, 0) - x·y + log1p(exp(-|x|))",
        "grad_hess": "s = σ(x) via exp(-|x|); s - y, s·(1-s)",
        "focal_grad_hess": "the focal gradient and Hessian formulas written out (README)",
        "brier": "((p - y)**2).mean() in float64",
        "hinge": "maximum(1 - (2y-1)·x, 0).mean()", "squared_hinge": "the same squared",
        "dice": "1 - 2·Σy·p / (Σy + Σp)", "tversky": "1 - TP / (TP + α·FP + β·FN), soft counts",
        "score_sums": "the seven sums of the report from the clipped formula's two parts",
        "score_groups": "the same sums by bincount(g, weights=...)",
        "score_groups_sums": "the same as score_groups",
    }

    def op_brier(self, d, threads):
        return lambda: float(np.mean((d["p"].astype(np.float64) - d["y"]) ** 2))

    def op_mean(self, d, threads):
        return lambda: float(_np_prob_losses(d["y"], d["p"]).mean())

    def op_hinge(self, d, threads):
        y, x = d["y"], d["x"]
        return lambda: float(np.maximum(1 - (2 * y - 1) * x, 0).mean(dtype=np.float64))

    def op_squared_hinge(self, d, threads):
        y, x = d["y"], d["x"]
        return lambda: float(np.square(np.maximum(1 - (2 * y - 1) * x, 0)).mean(dtype=np.float64))

    def op_dice(self, d, threads):
        y, p = d["y"], d["p"]
        return lambda: 1 - 2 * float(np.dot(y, p)) / (float(y.sum(dtype=np.float64)) + float(p.sum(dtype=np.float64)))

    def op_tversky(self, d, threads):
        y, p = d["y"], d["p"]

        def run():
            tp, sy, sp = float(np.dot(y, p)), float(y.sum(dtype=np.float64)), float(p.sum(dtype=np.float64))
            return 1 - tp / (tp + TVERSKY_ALPHA * (sp - tp) + TVERSKY_BETA * (sy - tp))
        return run

    @staticmethod
    def _score_parts(y, p):
        """(y·(-log q), (1-y)·(-log(1-q)), q) of the clipped formula."""
        q = np.clip(p, EPS, 1 - EPS)
        return -(y * np.log(q)), -((1 - y) * np.log1p(-q)), q

    def op_score_sums(self, d, threads):
        y, p = d["y"], d["p"]

        def run():
            positive, negative = (np.sum(part, dtype=np.float64) for part in self._score_parts(y, p)[:2])
            weight, y_sum = float(y.size), np.sum(y, dtype=np.float64)
            q_sum = np.sum(np.clip(p, EPS, 1 - EPS), dtype=np.float64)
            return [(positive + negative) / weight, y_sum / weight, q_sum / weight,
                    positive / y_sum, negative / (weight - y_sum)]
        return run

    def op_score_groups(self, d, threads):
        y, p, g = d["y"], d["p"], d["g"]

        def run():
            positive, negative, q = self._score_parts(y, p)
            sums = [np.bincount(g, weights=v, minlength=N_GROUPS) for v in (positive, negative, y, q)]
            count = np.bincount(g, minlength=N_GROUPS)
            with np.errstate(invalid="ignore", divide="ignore"):
                return [(sums[0] + sums[1]) / count, sums[2] / count, sums[3] / count,
                        sums[0] / sums[2], sums[1] / (count - sums[2])]
        return run

    def op_score_groups_sums(self, d, threads):
        return self.op_score_groups(d, threads)

    def op_mean_soft(self, d, threads):
        return lambda: float(_np_prob_losses(d["ys"], d["p"]).mean())

    def op_mean_f16(self, d, threads):
        return lambda: float(_np_prob_losses(d["y"], d["p16"]).mean())

    def op_strided(self, d, threads):
        return lambda: float(_np_prob_losses(d["y_every2"], d["p_every2"]).mean())

    def op_per_sample_pw(self, d, threads):
        y, p, pw = d["y2"], d["p2"], d["pw_rows"]

        def run():
            q = np.clip(p, EPS, 1 - EPS)
            return float((-(pw * y * np.log(q) + (1 - y) * np.log1p(-q))).mean())
        return run

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

    def op_file(self, d, threads):
        return numpy_formula(d["parquet"], _np_prob_losses)

    def op_elements(self, d, threads):
        return lambda: _np_prob_losses(d["y"], d["p"])

    def op_elements_logits(self, d, threads):
        return lambda: _np_logit_losses(d["y"], d["x"])

    def op_grad_hess(self, d, threads):
        y, x = d["y"], d["x"]

        def run():
            e = np.exp(-np.abs(x))
            s = np.where(x >= 0, 1, e) / (1 + e)
            return s - y, s * (1 - s)
        return run

    def op_focal_grad_hess(self, d, threads):
        y, x = d["y"], d["x"]

        def run():  # f' = γ·f·c·r, f'' = γ·f·c·((γ-1)·c·r² + r·(1-2σ)), r = σ(1-σ)/z
            e = np.exp(-np.abs(x))
            ce = np.maximum(x, 0) - x * y + np.log1p(e)
            s = np.where(x >= 0, 1, e) / (1 + e)
            g, h = s - y, s * (1 - s)
            z = y * (1 - s) + (1 - y) * s
            c = 1 - 2 * y
            f = (FOCAL_ALPHA * y + (1 - FOCAL_ALPHA) * (1 - y)) * z ** FOCAL_GAMMA
            r = h / z
            d_f = FOCAL_GAMMA * f * c * r
            d2_f = FOCAL_GAMMA * f * c * ((FOCAL_GAMMA - 1) * c * r * r + r * (1 - 2 * s))
            return f * g + d_f * ce, d2_f * ce + 2 * d_f * g + f * h
        return run



class Torch(Contender):
    name = "torch"
    modules = ("torch",)
    distributions = ("torch",)
    calls = {
        "mean": "F.binary_cross_entropy(p, y)", "mean_soft": "F.binary_cross_entropy(p, y_soft)",
        "mean_logits": "F.binary_cross_entropy_with_logits(x, y)",
        "strided": "F.binary_cross_entropy(p, y) on the strided views (torch.from_numpy)",
        "weighted": "F.binary_cross_entropy_with_logits(x, y, weight=w, pos_weight=pw, "
                    "reduction='sum') / w.sum()",
        "per_label": "F.binary_cross_entropy(p, y, reduction='none').mean(0)",
        "per_sample": "F.binary_cross_entropy(p, y, reduction='none').mean(1)",
        "per_group": "losses (reduction='none'), index_add_ by group / bincount(g)",
        "grad": "autograd.grad(F.binary_cross_entropy_with_logits(x, y), x)",
        "value_and_grad": "the same, keeping the loss",
        "focal": "torchvision.ops.sigmoid_focal_loss's formula written out (torchvision does not "
                 "import beside this torch), .mean()",
        "elements": "F.binary_cross_entropy(p, y, reduction='none')",
        "elements_logits": "F.binary_cross_entropy_with_logits(x, y, reduction='none')",
        "hinge": "clamp(1 - (2y-1)·x, min=0).mean() (hinge_embedding_loss is another loss: x for "
                 "y = 1, max(0, margin - x) for y = -1)",
        "squared_hinge": "the same squared",
        "dice": "1 - 2·(y·p).sum() / (y.sum() + p.sum())",
        "tversky": "1 - TP / (TP + α·FP + β·FN), soft counts",
    }
    unsupported = {"grad_hess": "PyTorch has no per-element Hessian function",
                   "focal_grad_hess": "PyTorch has no per-element Hessian function"}

    def op_hinge(self, d, threads):
        import torch

        y, x = self._tensors(d, "y", "x")
        return lambda: torch.clamp(1 - (2 * y - 1) * x, min=0).mean()

    def op_squared_hinge(self, d, threads):
        import torch

        y, x = self._tensors(d, "y", "x")
        return lambda: torch.square(torch.clamp(1 - (2 * y - 1) * x, min=0)).mean()

    def op_dice(self, d, threads):
        import torch

        y, p = self._tensors(d, "y", "p")
        return lambda: 1 - 2 * torch.dot(y, p) / (y.sum() + p.sum())

    def op_tversky(self, d, threads):
        import torch

        y, p = self._tensors(d, "y", "p")

        def run():
            tp, sy, sp = torch.dot(y, p), y.sum(), p.sum()
            return 1 - tp / (tp + TVERSKY_ALPHA * (sp - tp) + TVERSKY_BETA * (sy - tp))
        return run

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

    def op_strided(self, d, threads):
        import torch.nn.functional as F

        y, p = self._tensors(d, "y_every2", "p_every2")
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

    def op_elements(self, d, threads):
        import torch.nn.functional as F

        y, p = self._tensors(d, "y", "p")
        return lambda: F.binary_cross_entropy(p, y, reduction="none")

    def op_elements_logits(self, d, threads):
        import torch.nn.functional as F

        y, x = self._tensors(d, "y", "x")
        return lambda: F.binary_cross_entropy_with_logits(x, y, reduction="none")



class Polars(Contender):
    """polars on the ``file`` operation: a lazy query over the Parquet file."""

    name = "polars"
    modules = ("polars",)
    distributions = ("polars",)
    calls = {"file": "scan_parquet(path).select(log_loss=clipped formula .mean(), y.mean(), p.mean()).collect()"}

    def op_file(self, d, threads):
        return polars_query(d["parquet"], EPS)


# after the names frameworks.py imports from here
from .frameworks import Jax, Sklearn, TensorFlow  # noqa: E402

CONTENDERS = {c.name: c for c in (
    Fastbce("numba"), Fastbce("cython"), Fastbce("numpy"), NumPy(), Torch(), Sklearn(), Jax(),
    TensorFlow(), Polars(),
)}


def reference_name():
    """The fastbce row other contenders are compared with: the backend ``"auto"`` picks."""
    return f"fastbce[{resolve_backend('auto')}]"
