"""Eigen-bases of Gram matrices and their ridge weights ``1 / (eigenvalue + alpha)``, exact or
through low-rank factors (:func:`compress_weights`), shared by all targets of a fold."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from .options import DEFAULT_OPTIONS, SolverOptions

LOGGER = logging.getLogger(__name__)


@dataclass
class Basis:
    """An eigen-basis of a (training) Gram matrix and its ridge weights for every alpha."""

    basis: Any  # (m, m) eigenvectors; m = voxels (primal) or training samples (kernel form)
    weights: Any  # (m, n_alphas) 1 / (eigenvalue + alpha), 0 on the numerical null space
    shift: Any  # primal: training voxel mean (centred fits); kernel: basis^T 1


@dataclass
class Fold(Basis):
    """A training fold's eigen-basis, with what scores its held-out samples."""

    test: slice  # held-out samples
    n_train: int
    test_op: Any  # (n_test, m): held-out samples in the eigen-basis
    factors: Any = None  # (m, r): low-rank factors of ``weights`` (None: use every alpha)
    mix: Any = None  # (n_alphas, r + 1): alpha k = factors @ mix[k, :r]; mix[:, r] = -1


@dataclass
class Refit(Basis):
    """The eigen-basis of all samples' Gram (kernel form), with the map back to voxels."""

    to_voxels: Any  # (p, m): maps eigen-coefficients to voxel weights
    voxel_mean: Any  # (p,) float64: mean of the standardised voxels (centred fits)


def ridge_weights(ops: Any, eigvals: Any, grid: Any) -> Any:
    """``1 / (lambda + alpha)`` per eigenvalue and alpha, zero on the numerical null space.

    On the null space of the Gram matrix both the held-out operator and the training
    cross-products vanish in exact arithmetic; zeroing keeps rounding noise from being
    amplified by ``1 / alpha`` when alpha is tiny.
    """
    m = eigvals.shape[0]
    top = float(eigvals.max()) if m else 0.0
    tol = max(top, 0.0) * m * np.finfo(np.float64).eps
    lam = eigvals.clip(min=0.0)
    w = 1.0 / (lam[:, None] + grid[None, :])
    w[eigvals <= tol] = 0.0
    return w


def compress_weights(
    ops: Any, weights: Any, options: SolverOptions = DEFAULT_OPTIONS
) -> tuple[Any, Any] | tuple[None, None]:
    """Low-rank factors of a fold's ridge weights ``1/(lambda_i + alpha_k)``, if any are exact.

    When the alphas are small or close relative to the eigenvalues (the paper's grid on
    standardised voxels: alpha <= 1 against eigenvalues in the hundreds), the ``m x n_alphas``
    weight matrix has a low numerical rank ``r``: ``weights ~= factors @ mix^T``. The held-out
    predictions of every alpha are then combinations of ``r`` products instead of one product
    per alpha. The rank is the smallest whose reconstruction matches every weight to the compute
    dtype's unit roundoff (the accuracy of the weights themselves), so the scores are unchanged
    up to rounding; otherwise (None, None). ``options.low_rank_alphas`` decides whether a
    factorisation that is exact is used.
    """
    w = np.asarray(ops.to_numpy(ops.cast(weights, ops.f64)), dtype=np.float64)
    m, n_alphas = w.shape
    if n_alphas < 3 or options.low_rank_alphas is False:
        return None, None
    tol = np.finfo(ops.host_dtype).eps / 2
    u, sv, vt = np.linalg.svd(w, full_matrices=False)
    nonzero = w > 0
    for rank in range(1, n_alphas - 1):
        factors = u[:, :rank] * sv[:rank]
        approx = factors @ vt[:rank]
        if np.all(np.abs(approx - w)[nonzero] <= tol * w[nonzero]):
            # Each saved product costs ~2m flops per prediction; each alpha's combination reads
            # rank + 2 arrays (measured: ~10 flops of GEMM time per element read).
            if options.low_rank_alphas is None and m * (n_alphas - rank) <= 10 * n_alphas * (
                rank + 2
            ):
                return None, None
            factors[~nonzero.any(1)] = 0.0  # null-space rows stay exactly zero
            mix = np.concatenate([vt[:rank].T, -np.ones((n_alphas, 1))], axis=1)
            LOGGER.debug("fold weights have rank %d for %d alphas", rank, n_alphas)
            return ops.asarray(factors), ops.asarray(mix)
    return None, None
