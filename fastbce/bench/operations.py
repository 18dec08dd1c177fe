"""What is measured: the operations, and the input data every contender reads."""

from dataclasses import dataclass

import numpy as np

from .._synthetic import make_default_data
from .files import parquet_file

N_LABELS = 100  # columns of the 2-D operations
N_GROUPS = 1000  # groups of the per-group operation
FIRST_CALL_SIZE = 1000  # elements of the first call timed at start-up
FOCAL_GAMMA, FOCAL_ALPHA = 2.0, 0.25  # the defaults of Keras, torchvision and optax
CALIBRATION_BINS = 10
TVERSKY_ALPHA, TVERSKY_BETA = 0.3, 0.7  # weights of false positives and false negatives
UPDATE_SIZE = 1_000_000  # elements per Accumulator.update of the accumulate operation


@dataclass(frozen=True)
class Operation:
    """One computation every contender is timed on, titled for the report."""

    name: str
    title: str
    inputs: tuple  # keys of make_data() the operation reads: the ceiling reads the same arrays
    writes: bool = False  # writes one float per element (a gradient): the ceiling reads and writes
    new_output: bool = False  # returns a new array per call: the ceiling allocates its output too
    unavailable: str = ""  # why the operation cannot be measured yet
    outputs: int = 1  # arrays written per element when writes (grad_hess: gradient and Hessian)


OPERATIONS = {op.name: op for op in (
    Operation("mean", "mean BCE, probabilities, 0/1 labels", ("y", "p")),
    Operation("mean_u8", "mean, uint8 labels", ("yu8", "p")),
    Operation("mean_bool", "mean, bool labels", ("yb", "p")),
    Operation("mean_f64", "mean, float64 probabilities and labels", ("y64", "p64")),
    Operation("mean_soft", "mean BCE, probabilities, soft labels", ("ys", "p")),
    Operation("mean_logits", "mean BCE, logits", ("y", "x")),
    Operation("mean_f16", "mean, float16 probabilities, float32 labels", ("y", "p16")),
    Operation("strided", "mean of every second element, y[::2] and p[::2] of 2n-element arrays "
              "(the ceiling reads n contiguous elements)", ("y", "p")),
    Operation("weighted", f"logits, sample_weight + pos_weight, {N_LABELS} labels", ("y2", "x2", "w2")),
    Operation("per_label", f"per-label mean, (n/{N_LABELS} × {N_LABELS}) matrix", ("y2", "p2")),
    Operation("per_label_f", "per_label, Fortran-ordered matrix", ("y2f", "p2f")),
    Operation("per_sample", "per-sample mean (axis=1) of the same matrix", ("y2", "p2")),
    Operation("per_sample_pw", f"mean with a pos_weight per sample, shape (n/{N_LABELS}, 1), "
              f"{N_LABELS} labels", ("y2", "p2")),
    Operation("per_group", f"per-group mean, {N_GROUPS:,} groups", ("y", "p", "g")),
    Operation("grad", "gradient of mean BCE w.r.t. logits, into a new array", ("y", "x"), writes=True,
              new_output=True),
    Operation("grad_out", "grad into a preallocated array (out=)", ("y", "x"), writes=True),
    Operation("value_and_grad", "fused loss + gradient, logits, into a new array", ("y", "x"),
              writes=True, new_output=True),
    Operation("value_and_grad_out", "value_and_grad into a preallocated array (out=)", ("y", "x"),
              writes=True),
    Operation("focal", f"mean focal loss, logits, γ={FOCAL_GAMMA:g}, α={FOCAL_ALPHA:g}", ("y", "x")),
    Operation("file", "`fastbce score` of a Parquet file of uint8 labels and float32 predictions "
              "(elements = rows)", ("yu8", "p")),
    Operation("elements", "element losses (reduction='none'), probabilities, new array", ("y", "p"),
              writes=True, new_output=True),
    Operation("elements_logits", "element losses, logits, new array", ("y", "x"), writes=True,
              new_output=True),
    Operation("grad_hess", "bce_grad_hess: gradient + Hessian in the logit, two new arrays",
              ("y", "x"), writes=True, new_output=True, outputs=2),
    Operation("focal_grad_hess", f"focal_bce_grad_hess, γ={FOCAL_GAMMA:g}, α={FOCAL_ALPHA:g}, "
              "two new arrays", ("y", "x"), writes=True, new_output=True, outputs=2),
    Operation("roc_auc", "exact ROC-AUC, probabilities, 0/1 labels", ("y", "p")),
    Operation("average_precision", "exact average precision (PR-AUC)", ("y", "p")),
    Operation("brier", "Brier score", ("y", "p")),
    Operation("calibration", f"calibration curve, {CALIBRATION_BINS} uniform bins", ("y", "p")),
    Operation("score", "score report: log loss, exact AUC and AP, Brier, ECE, F1", ("y", "p")),
    Operation("score_sums", "score(sums_only=True): the nine one-pass fields alone", ("y", "p")),
    Operation("score_groups", f"score by {N_GROUPS:,} groups", ("y", "p", "g")),
    Operation("accumulate", f"Accumulator.update in chunks of {UPDATE_SIZE:,.0f} elements, with the "
              "AUC histogram (11 bits)", ("y", "p")),
    Operation("accumulate_nohist", "the same without the histogram (auc_bits=0)", ("y", "p")),
    Operation("hinge", "mean hinge loss, scores (logits), 0/1 labels", ("y", "x")),
    Operation("squared_hinge", "mean squared hinge loss, scores (logits)", ("y", "x")),
    Operation("dice", "Dice loss of all elements, probabilities, 0/1 labels", ("y", "p")),
    Operation("tversky", f"Tversky loss of all elements, α={TVERSKY_ALPHA:g}, β={TVERSKY_BETA:g}",
              ("y", "p")),
    Operation("score_groups_sums", f"score by {N_GROUPS:,} groups, sums_only=True", ("y", "p", "g")),
)}
MEASURED_OPS = tuple(name for name, op in OPERATIONS.items() if not op.unavailable)


def make_data(n, seed=0):
    """Inputs of every operation for ``n`` predictions (n a multiple of N_LABELS), all float32
    except the int32 group ids, so that every contender reads the same 8 bytes per element.

    Labels and probabilities follow :func:`fastbce._synthetic.make_default_data` (a noisy but
    informative model); logits are the same predictions as log-odds; soft labels mix the 0/1 label
    with noise.
    """
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
        "p16": lambda d: d["p"].astype(np.float16),
        "y_every2": lambda d: _every_second(d["y"]),
        "p_every2": lambda d: _every_second(d["p"]),
        "pw_rows": lambda d: np.linspace(0.5, 4.0, d["y2"].shape[0], dtype=np.float32)[:, None],
        "y2f": lambda d: np.asfortranarray(d["y2"]),
        "p2f": lambda d: np.asfortranarray(d["p2"]),
        "parquet": lambda d: parquet_file(d),  # the path of a file of yu8 and p (bench/files.py)
    }

    def __missing__(self, key):
        if key not in self.DERIVED:
            raise KeyError(key)
        value = self[key] = self.DERIVED[key](self)
        return value


def input_bytes(op, data):
    """Bytes of the inputs an operation reads."""
    return sum(data[key].nbytes for key in OPERATIONS[op].inputs)


def _every_second(a):
    """A view of every second element of a 2n-element array holding ``a`` at the even positions."""
    wide = np.empty(2 * a.size, a.dtype)
    wide[::2], wide[1::2] = a, a
    return wide[::2]
