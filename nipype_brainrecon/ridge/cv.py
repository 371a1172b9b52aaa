"""Cross-validation set-up and alpha choice: the alpha grids, the folds and himalaya's rule.

The folds are scikit-learn's ``KFold`` without shuffling; the alpha of each target is the one
with the best fold-averaged score, chosen as himalaya's ``RidgeCV`` does (ties included).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ..config import DEFAULTS
from ..errors import DataError, UsageError

#: The published grid (Takagi & Nishimoto 2023, ``z`` and ``c`` decoders).
PAPER_ALPHAS = np.array([1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0])

#: A wider grid, one value per decade. On standardised voxels the eigenvalues of ``X^T X`` are in
#: the hundreds or more, so the paper's grid is close to unregularised least squares.
DEFAULT_ALPHAS = 10.0 ** np.arange(-2, 8)


def resolve_alphas(alphas: str | ArrayLike = DEFAULTS.decoding.alphas) -> np.ndarray:
    """Turn an alpha grid specification into a 1-D float64 array.

    Parameters
    ----------
    alphas : {"default", "paper"} or array-like
        ``"paper"`` is :data:`PAPER_ALPHAS`, ``"default"`` is :data:`DEFAULT_ALPHAS`; otherwise
        the positive, finite, distinct values to try (their order breaks exact ties: the first
        best is kept, as in himalaya).

    Returns
    -------
    numpy.ndarray
        The grid, float64, shape ``(n_alphas,)``.

    Examples
    --------
    >>> resolve_alphas("paper")[[0, -1]]
    array([1.e-06, 1.e+00])
    """
    if isinstance(alphas, str):
        presets = {"paper": PAPER_ALPHAS, "default": DEFAULT_ALPHAS}
        if alphas not in presets:
            raise UsageError(f"alphas={alphas!r}: use 'default', 'paper' or a list of numbers")
        return presets[alphas].astype(np.float64)
    try:
        grid = np.asarray(alphas, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"alphas={alphas!r}: not a list of numbers") from exc
    if grid.size == 0 or not np.all(np.isfinite(grid)) or np.any(grid <= 0):
        raise UsageError(f"alphas={alphas!r}: give at least one positive, finite alpha")
    if np.unique(grid).size != grid.size:
        raise UsageError(f"alphas={alphas!r}: alphas must be distinct")
    return grid


def kfold_slices(n_samples: int, n_folds: int) -> list[slice]:
    """Contiguous test folds, laid out as scikit-learn's ``KFold(n_folds)`` without shuffling.

    The first ``n_samples % n_folds`` folds hold one sample more than the others.

    Examples
    --------
    >>> kfold_slices(7, 3)
    [slice(0, 3, None), slice(3, 5, None), slice(5, 7, None)]
    """
    if n_folds < 2:
        raise UsageError(f"n_folds={n_folds}: cross-validation needs at least 2 folds")
    if n_samples < n_folds:
        raise DataError(
            f"{n_samples} training samples for {n_folds} folds: give at least as many samples "
            "as folds (or lower n_folds)"
        )
    sizes = np.full(n_folds, n_samples // n_folds)
    sizes[: n_samples % n_folds] += 1
    stops = np.cumsum(sizes)
    return [slice(int(stop - size), int(stop)) for stop, size in zip(stops, sizes, strict=True)]


def select_alphas(
    scores: np.ndarray, grid: np.ndarray, dt: np.dtype
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """himalaya's rule: fold mean (float64, rounded to dtype) + 1e-10 log(alpha), first argmax."""
    mean = scores.mean(0, dtype=np.float64).astype(dt)
    ranked = mean + (np.log(grid.astype(dt)) * dt.type(1e-10))[:, None]
    best = ranked.argmax(0)
    cv = mean[best, np.arange(mean.shape[1])].astype(np.float64)
    return best, cv, mean
