"""The fitted decoder (:class:`RidgeDecoder`: weights, standardisation, chosen alphas,
prediction) and the count of targets per alpha (:func:`alpha_histogram`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ..errors import DataError


@dataclass
class RidgeDecoder:
    """A fitted ridge decoder (voxels -> targets).

    Attributes
    ----------
    coef : numpy.ndarray, shape ``(n_voxels_used, n_targets)``
        Weights on standardised voxels.
    intercept : numpy.ndarray, shape ``(n_targets,)``
        Added to the predictions (zeros when fitted without intercept).
    voxel_mask : numpy.ndarray of bool, shape ``(n_voxels,)``
        The voxels used; the others were constant or non-finite in the training data.
    mean, scale : numpy.ndarray, shape ``(n_voxels_used,)``
        Training mean and standard deviation of the used voxels (float64).
    alphas : numpy.ndarray, shape ``(n_targets,)``
        The penalty chosen for each target.
    alpha_grid : numpy.ndarray
        The grid searched.
    cv_scores : numpy.ndarray, shape ``(n_targets,)``
        Cross-validated score at the chosen alpha: negative mean squared error on held-out
        folds, averaged over folds (as himalaya's ``l2_neg_loss``).
    target_shape : tuple of int
        Shape of one sample's targets (``()`` for a single target).
    fit_intercept, n_folds, n_samples
        How the decoder was fitted.
    metadata : dict
        Free-form provenance (ROI, model id, seed ...) saved in the sidecar.
    cv_mean_scores : numpy.ndarray or None, shape ``(n_alphas, n_targets)``
        The fold-averaged score of every alpha (not saved).
    fit_info : dict
        How the fit ran (not saved): ``form`` ("voxel" or "kernel"), ``backend``,
        ``chunk_size``, ``n_chunks``, ``products_per_fold`` (held-out products per fold and
        target chunk: the number of alphas, or fewer with low-rank weights), ``refit``
        ("cholesky": one factorisation per chosen alpha, or "eigh": the full Gram's basis) and,
        in the voxel form, ``held_out_operators`` (per fold: scored through them).
    """

    coef: np.ndarray
    intercept: np.ndarray
    voxel_mask: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    alphas: np.ndarray
    alpha_grid: np.ndarray
    cv_scores: np.ndarray
    target_shape: tuple[int, ...]
    fit_intercept: bool = True
    n_folds: int = 5
    n_samples: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    cv_mean_scores: np.ndarray | None = field(default=None, repr=False)
    fit_info: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def n_voxels(self) -> int:
        """Number of voxels the decoder takes (before dropping)."""
        return int(self.voxel_mask.size)

    @property
    def n_voxels_used(self) -> int:
        """Number of voxels with weights."""
        return int(self.coef.shape[0])

    @property
    def n_voxels_dropped(self) -> int:
        """Number of constant or non-finite training voxels left out."""
        return self.n_voxels - self.n_voxels_used

    @property
    def n_targets(self) -> int:
        """Number of targets (product of ``target_shape``)."""
        return int(self.coef.shape[1])

    def alpha_counts(self) -> dict[float, int]:
        """Targets per alpha of the grid (see :func:`alpha_histogram`)."""
        return alpha_histogram(self)

    def predict(self, X: ArrayLike, *, block_rows: int = 4096) -> np.ndarray:
        """Predict the targets of new samples.

        Parameters
        ----------
        X : array-like, shape ``(n_samples, n_voxels)``
            The full voxel set (the decoder drops its masked voxels itself), in the same units
            as the training data: standardisation uses the training statistics.
        block_rows : int
            Rows standardised at a time (bounds the float64 working copy).

        Returns
        -------
        numpy.ndarray
            Shape ``(n_samples, *target_shape)``, dtype of :attr:`coef`.
        """
        X = np.asarray(X)
        if X.ndim == 1:
            X = X[None, :]
        if X.ndim != 2 or X.shape[1] != self.n_voxels:
            raise DataError(
                f"X has shape {X.shape}: the decoder takes (n_samples, {self.n_voxels}) voxels"
            )
        out = np.empty((X.shape[0], self.n_targets), dtype=self.coef.dtype)
        for start in range(0, X.shape[0], block_rows):
            block = np.asarray(X[start : start + block_rows][:, self.voxel_mask], np.float64)
            if not np.all(np.isfinite(block)):
                raise DataError("X has non-finite values in voxels the decoder uses; fix them")
            block = ((block - self.mean) / self.scale).astype(self.coef.dtype)
            np.matmul(block, self.coef, out=out[start : start + block_rows])
        out += self.intercept.astype(out.dtype)
        return out.reshape((X.shape[0], *self.target_shape))


def alpha_histogram(
    alphas: RidgeDecoder | ArrayLike, alpha_grid: ArrayLike | None = None
) -> dict[float, int]:
    """Count how many targets chose each alpha of the grid.

    Parameters
    ----------
    alphas : RidgeDecoder or array-like
        A fitted decoder, or the chosen alpha of every target.
    alpha_grid : array-like, optional
        The grid (taken from the decoder when one is given; else the distinct chosen values).

    Returns
    -------
    dict
        ``{alpha: count}`` over the whole grid in grid order, zeros included.

    Examples
    --------
    >>> alpha_histogram([1.0, 10.0, 10.0], [0.1, 1.0, 10.0])
    {0.1: 0, 1.0: 1, 10.0: 2}
    """
    if isinstance(alphas, RidgeDecoder):
        grid = alphas.alpha_grid if alpha_grid is None else alpha_grid
        chosen = alphas.alphas
    else:
        chosen = np.asarray(alphas, dtype=np.float64).reshape(-1)
        grid = np.unique(chosen) if alpha_grid is None else alpha_grid
    grid = np.asarray(grid, dtype=np.float64).reshape(-1)
    # Nearest grid value in log space: chosen alphas may have been rounded (float32, JSON).
    idx = np.abs(np.log(chosen)[:, None] - np.log(grid)[None, :]).argmin(1)
    counts = np.bincount(idx, minlength=grid.size)
    return {float(a): int(c) for a, c in zip(grid, counts, strict=True)}
