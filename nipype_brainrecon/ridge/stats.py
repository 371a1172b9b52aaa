"""Column statistics over samples: the voxels' mean and standard deviation (to standardise
them) and the Pearson correlation of each target between true and predicted values."""

from __future__ import annotations

import numpy as np


def voxel_statistics(X: np.ndarray, block_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (ddof 0) of each column, float64, in one pass of row blocks.

    Sums are taken about the first row, which keeps the float64 moments free of cancellation
    when voxels have a large mean.
    """
    n = X.shape[0]
    shift = X[0].astype(np.float64)
    s1 = np.zeros(X.shape[1])
    s2 = np.zeros(X.shape[1])
    buffer = np.empty((min(n, block_rows), X.shape[1]))  # one buffer: fresh pages cost time
    with np.errstate(invalid="ignore", over="ignore"):
        for start in range(0, n, block_rows):
            block = X[start : start + block_rows]
            d = np.subtract(block, shift, out=buffer[: block.shape[0]], dtype=np.float64)
            s1 += d.sum(0)
            s2 += np.einsum("ij,ij->j", d, d)
        mean = s1 / n
        var = np.maximum(s2 / n - mean * mean, 0.0)
    return shift + mean, np.sqrt(var)
