"""The default data set shared by ``fastbce demo`` and ``fastbce bench``, and its Parquet copy."""

import os
import tempfile
from pathlib import Path

import numpy as np


def make_default_data(n, seed=0):
    """A default data set: ``n`` float32 predictions of a noisy but informative model, uint8 labels.

    True logits z ~ N(0, 2²); labels y ~ Bernoulli(σ(z)); predictions σ(z + N(0, 1)).
    """
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, n).astype(np.float32)
    y_true = (rng.random(n, dtype=np.float32) < 1.0 / (1.0 + np.exp(-z))).astype(np.uint8)
    z += rng.normal(0.0, 1.0, n).astype(np.float32)
    y_pred = 1.0 / (1.0 + np.exp(-z))
    return y_true, y_pred


def default_data_file(y_true, y_pred, size, seed):
    """The default data set as a Parquet file, written once into a cache folder of the temp dir."""
    path = Path(tempfile.gettempdir()) / "fastbce-demo" / f"default-{size}-{seed}.parquet"
    if not path.exists():
        import pyarrow as pa
        import pyarrow.parquet as pq

        path.parent.mkdir(exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        pq.write_table(pa.table({"y_true": y_true, "y_pred": y_pred}), partial)
        os.replace(partial, path)  # atomic: concurrent demos never read a half-written file
    return path
