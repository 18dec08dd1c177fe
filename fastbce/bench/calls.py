"""Call time of small calls: fastbce's ``bce``, ``bce_grad`` and ``score`` on float32 probabilities
and 0/1 labels, against the nearest call of NumPy (the clipped formula and its gradient) and
PyTorch, on the same arrays (FIRST_CALL_SIZE elements): what a call costs beside its arithmetic."""

import numpy as np

from .contenders import EPS, Fastbce, NumPy, Torch

SMALL_CALLS = ("bce", "bce_grad", "score")


def _np_value(y, p):
    """The clipped mean BCE, as NumPy's contender computes its mean."""
    q = np.clip(p, EPS, 1 - EPS)
    return float((-(y * np.log(q) + (1 - y) * np.log1p(-q))).mean())


def _np_grad(y, p):
    """Gradient of the clipped mean BCE in p: (q - y) / (q(1 - q)) / n inside the clip bounds, else 0."""
    lo, hi = np.float32(EPS), np.float32(1 - EPS)
    q = np.clip(p, lo, hi)
    return np.where((p >= lo) & (p <= hi), (q - y) / (q * (1 - q)), 0) / p.size


def small_calls(contender, data, threads):
    """{call: callable} of the SMALL_CALLS the contender has (none for the others)."""
    y, p = data["y"], data["p"]
    if isinstance(contender, Fastbce):
        import fastbce

        kw = {"backend": contender.backend, "n_threads": threads}
        return {"bce": lambda: fastbce.bce(y, p, **kw), "bce_grad": lambda: fastbce.bce_grad(y, p, **kw),
                "score": lambda: fastbce.score(y, p, **kw)}
    if isinstance(contender, NumPy):
        return {"bce": lambda: _np_value(y, p), "bce_grad": lambda: _np_grad(y, p)}
    if isinstance(contender, Torch):
        import torch
        import torch.nn.functional as F

        yt, pt = torch.from_numpy(y), torch.from_numpy(p)

        def grad():
            leaf = pt.detach().requires_grad_()
            return torch.autograd.grad(F.binary_cross_entropy(leaf, yt), leaf)[0]
        return {"bce": lambda: F.binary_cross_entropy(pt, yt), "bce_grad": grad}
    return {}
