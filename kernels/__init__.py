"""Compiled kernels of fastbce (installed as ``fastbce._kernels``): the one source of their codes.

Every backend (cython_kernels, numba, reference) implements ``bce_pass``, the general pass; the
compiled ones also ``fast_pass`` (fastbce/_fastpath.py decides when it applies). Both take the
input arrays, the output arrays, one options record (:class:`PassOptions`, :class:`FastOptions`)
and the thread count. The C headers (kernels/c/codes.h) and the Cython module restate the codes
below; tests/test_codes.py checks that every value agrees.
"""

from typing import NamedTuple

# Where an element's weighted loss is summed ("slots" of the partial-sum array).
MODE_ALL = 0  # one slot: everything
MODE_ROWS = 1  # one slot per row (axis=1); each row is summed inside one chunk
MODE_COLS = 2  # one slot per column (axis=0)
MODE_GROUPS = 3  # one slot per group id of the row

# nan_policy
NAN_PROPAGATE = 0
NAN_RAISE = 1
NAN_OMIT = 2

# Bits of the per-chunk error flags: bad values are found in the same pass that computes.
FLAG_LABEL = 1  # y_true outside [0, 1]
FLAG_PRED = 2  # probability outside [0, 1]
FLAG_NAN = 4  # NaN in y_true or y_pred with nan_policy="raise"
FLAG_WEIGHT = 8  # sample_weight negative or not finite
FLAG_POS_WEIGHT = 16  # pos_weight negative or not finite
FLAG_GROUP = 32  # group id outside [0, n_groups)

# Fast path: how the C kernel reads labels, weights and group ids (the dtype of each array).
Y_U8 = 0  # labels: bool, uint8 or int8 bytes
Y_F32 = 1
Y_F64 = 2
W_NONE = 0  # weights: none (a scalar weight scales the sums afterwards)
W_F32 = 1
W_F64 = 2
G_I64 = 0  # group ids
G_I32 = 1

# Fast path: sizes that fix the order of every sum (both compiled backends use the same).
LANES = 16  # element k of a chunk is summed into float64 lane k % LANES
BLOCK = 512  # elements per block: a block's buffers stay in L1
PROD_LANES = 64  # lanes of the product path: 4 independent chains per SIMD lane
SPLIT_BLOCKS = 3  # blocks of the product path between two splits of its lane products
ROW_PRODUCT_COLS = 160  # rows (or groups of rows) this long or longer take the product path
# 1-D input by group on the product path: a group's product is split when it leaves this range
GROUP_PRODUCT_MIN = 2.0 ** -900
GROUP_PRODUCT_MAX = 2.0 ** 900


class PassOptions(NamedTuple):
    """The scalars of one general pass (``bce_pass``)."""

    y_half: bool  # labels arrive as the uint16 bits of float16
    p_half: bool  # predictions arrive as the uint16 bits of float16
    from_logits: bool
    clip_lo: float  # probabilities are clipped to [clip_lo, clip_hi]: eps and 1 - eps rounded
    clip_hi: float  # to the prediction's dtype (fastbce/_plan.py clip_bounds)
    smoothing: float  # label smoothing: y·(1 - smoothing) + smoothing/2
    nan_mode: int  # NAN_*
    gamma: float  # focal loss: γ (0 with α < 0: plain BCE)
    alpha: float  # focal loss: α in [0, 1], or < 0 for no α factor
    mode: int  # MODE_*
    rows_per_chunk: int  # rows per chunk: a function of the shape only


class FastOptions(NamedTuple):
    """The scalars of one fast pass (``fast_pass``; fastbce/_fastpath.py builds it)."""

    mode: int  # MODE_*
    ncols: int  # columns of the flat C-ordered arrays
    row0: int  # index of the first row (row slots and row scales of a slab)
    chunk_elems: int  # elements per chunk (whole rows)
    logits: bool
    nan_mode: int  # NAN_*
    clip: tuple  # (lo, hi): p is clipped to [lo, hi], eps and 1 - eps rounded to p's dtype
    smoothing: float  # label smoothing: y·(1 - smoothing) + smoothing/2
    focal: tuple  # focal loss (γ, α, n), n = γ if an integer <= 7 else -1; None: plain BCE
    nll: tuple  # losses at the clip bounds: -log q, -log(1-q) for q = lo, then for q = hi
    grad_scale: float  # factor of every gradient element (with row or column factors: times them)
    want_loss: bool  # False: only the gradient, Σw and the checks


# Margin and overlap losses (kernels/c/margin.h, kernels/numba/margin.py, fastbce/_margin.py).
Y_I8 = 3  # label kind: int8 (hinge labels -1, 0, 1)
LOSS_HINGE = 0
LOSS_SQUARED_HINGE = 1
LOSS_OVERLAP = 2  # the soft counts of Dice and Tversky
MARGIN_STATS = 4  # sums per slot: hinge Σw·l, Σw, 0, 0; overlap Σw·y·p, Σw·y, Σw·p, Σw


class MarginOptions(NamedTuple):
    """The scalars of one margin pass (``margin_pass``)."""

    loss: int  # LOSS_*
    nan_mode: int  # NAN_*
    mode: int  # MODE_*
    row0: int  # index of the first row (row slots of a slab)
    chunk_elems: int  # elements per chunk (whole rows)
    want_sums: bool  # False: only the element outputs and the checks
