"""Compiled kernels of fastbce (installed as ``fastbce._kernels``).

Every backend implements one function, ``bce_pass``, with the same arguments and the same
meaning; ``fastbce._api`` prepares the arguments and finishes the results. The codes below are
shared by all backends (the Cython module declares the same values; a test checks they agree).
"""

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
