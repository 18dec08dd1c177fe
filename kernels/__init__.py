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
    # pos_weight of element (i, j) (i from row0) at pos_w[i·rs + j·cs], (rs, cs): per label (0, 1),
    # per sample (1, 0), per element (ncols, 1)
    pw_strides: tuple = (0, 1)


# Element passes (``element_pass``): per-element outputs, no reduction.
ELEMENT_LOSS = 0  # one output: the weighted element losses w·l
ELEMENT_GRAD_HESS = 1  # two outputs: w·dl/dx and w·d²l/dx² with respect to the logit x
ELEMENT_CHUNK = 1 << 16  # elements per chunk of an element pass (C order of the 2-D view)
# Element passes: the kind of each operand (labels, predictions, weights, mask)
K_NONE = 0  # absent: weights 1, every element counted
K_U8 = 1  # bool, uint8 or int8 bytes
K_F16 = 2  # the uint16 bits of float16
K_F32 = 3
K_F64 = 4


class ElementOptions(NamedTuple):
    """The scalars of one element pass (``element_pass``): no reduction, only error flags.

    ``element_pass(y, p, w, pw, mask, shape, flags, out1, out2, options, n_threads)`` takes each
    array as an operand ``(flat, offset, kind, rs, cs)``: element (i, j) of the (rows, cols)
    ``shape`` is ``flat[offset + i·rs + j·cs]``, of kind K_* (K_NONE: absent, flat None); out2 is
    None for ELEMENT_LOSS. ``flags`` has one byte per chunk of ELEMENT_CHUNK elements."""

    output: int  # ELEMENT_*
    from_logits: bool  # always True for ELEMENT_GRAD_HESS
    clip_lo: float  # probabilities are clipped to [clip_lo, clip_hi] (as PassOptions)
    clip_hi: float
    smoothing: float  # label smoothing: y·(1 - smoothing) + smoothing/2
    nan_mode: int  # NAN_*
    gamma: float  # focal loss: γ (0 with α < 0: plain BCE)
    alpha: float  # focal loss: α in [0, 1], or < 0 for no α factor
    gamma_n: int  # γ when it is an integer <= 7 (z^γ by squaring), else -1
    nll: tuple  # losses at the clip bounds: -log q, -log(1-q) for q = clip_lo, then q = clip_hi


# Ranking (kernels/c/rank.h): the flags of a rank call
RANK_SOFT = 1  # a kept label that is not 0 or 1 (NaN aside)
RANK_NAN = 2  # a kept NaN label or prediction
RANK_WEIGHT = 4  # a kept weight that is negative, inf or NaN
RADIX_BITS = 11  # bits of a radix-sort digit (rank.h / rank.py)
INSERTION = 32  # buckets of at most INSERTION items: insertion sort
WALK_RANGES = 16  # ranges of a big slot's walk (a constant: the sums do not depend on threads)
HIST_EXTRA = 4  # histogram pass: extra sums of a slot before its calibration bins (NaN count, Σw·(q-y)², tp, fp)
HIST_COPIES = 4  # histogram pass: interleaved copies of the calibration bins (one sum for all)


class HistOptions(NamedTuple):
    """The scalars of one histogram pass (``hist_pass``; fastbce/_histogram.py builds it)."""

    mode: int  # MODE_ALL, MODE_COLS or MODE_GROUPS
    logits: bool
    omit_nan: bool  # NaN elements are left out (else counted, and the slot's ranking is NaN)
    cut: float  # predicted positive: prediction >= cut (the threshold, or its logit)
    shift: int  # bucket key: the float32 bits of min(q, 1-q) above 2^-24 shifted right by this
    top: int  # the key of 1/2; buckets 0 .. 2·top + 1
    n_buckets: int  # 2·top + 2, or 0 for no histogram
    n_bins: int  # equal-width calibration bins
    rows_per_chunk: int  # a function of the shape only


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
