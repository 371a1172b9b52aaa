"""Column statistics over samples: the voxels' mean and standard deviation (to standardise
them) and the Pearson correlation of each target between true and predicted values."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ..errors import DataError


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


def correlation_per_target(Y_true: ArrayLike, Y_pred: ArrayLike) -> np.ndarray:
    """Pearson correlation between true and predicted values of each target, over samples.

    Parameters
    ----------
    Y_true, Y_pred : array-like, shape ``(n_samples, ...)``
        Same shapes; trailing dimensions are flattened into targets.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(n_targets,)``; NaN where either column is constant.

    Examples
    --------
    >>> correlation_per_target([[1.0, 0.0], [2.0, 1.0], [3.0, 0.0]],
    ...                        [[2.0, 1.0], [4.0, 1.0], [6.0, 1.0]])
    array([ 1., nan])
    """
    a = np.asarray(Y_true, dtype=np.float64)
    b = np.asarray(Y_pred, dtype=np.float64)
    if a.shape != b.shape or a.ndim == 0:
        raise DataError(f"Y_true {a.shape} and Y_pred {b.shape}: give arrays of the same shape")
    a = a.reshape(a.shape[0], -1)
    b = b.reshape(b.shape[0], -1)
    a = a - a.mean(0)
    b = b - b.mean(0)
    denom = np.sqrt(np.einsum("ij,ij->j", a, a) * np.einsum("ij,ij->j", b, b))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.einsum("ij,ij->j", a, b) / denom
    r[denom == 0] = np.nan
    return r
