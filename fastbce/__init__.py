"""fastbce: binary cross entropy, its gradient and grouped reductions over very large arrays.

Compiled, parallel CPU kernels (Numba; Cython/OpenMP where built) behind one API, with a NumPy
reference backend. See README.md for the conventions.
"""

from ._api import (
    bce,
    bce_grad,
    bce_value_and_grad,
    focal_bce,
    focal_bce_grad,
    focal_bce_value_and_grad,
)
from ._api import bce_grad_hess, focal_bce_grad_hess
from ._config import show_config
from ._metrics import (
    average_precision,
    brier,
    calibration_curve,
    group_auc,
    precision_recall_curve,
    roc_auc,
    roc_curve,
)
from ._margin import (
    dice,
    dice_grad,
    dice_value_and_grad,
    hinge,
    hinge_grad,
    hinge_value_and_grad,
    squared_hinge,
    squared_hinge_grad,
    squared_hinge_value_and_grad,
    tversky,
    tversky_grad,
    tversky_value_and_grad,
)
from ._score import Accumulator, ScoreResult, score
from ._threads import get_num_threads, set_num_threads

__version__ = "0.1.0"
__all__ = [
    "bce", "bce_grad", "bce_value_and_grad", "focal_bce", "focal_bce_grad", "focal_bce_value_and_grad",
    "score", "Accumulator", "ScoreResult", "get_num_threads", "set_num_threads", "show_config",
    "bce_grad_hess", "focal_bce_grad_hess",
    "roc_auc", "average_precision", "group_auc", "roc_curve", "precision_recall_curve",
    "calibration_curve", "brier",
    "hinge", "hinge_grad", "hinge_value_and_grad", "squared_hinge", "squared_hinge_grad",
    "squared_hinge_value_and_grad", "dice", "dice_grad", "dice_value_and_grad", "tversky",
    "tversky_grad", "tversky_value_and_grad",
]
