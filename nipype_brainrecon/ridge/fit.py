"""Fitting a ridge decoder (:func:`fit_ridge_cv`): voxels -> features, with the penalty chosen
per target by K-fold CV.

The method (Takagi & Nishimoto 2023) standardises each voxel with the training trials' mean and
standard deviation, then fits a multi-output ridge regression whose penalty ``alpha`` is chosen
for each target (each element of ``z`` or ``c``) by 5-fold cross-validation over a grid. The
authors used himalaya's ``RidgeCV`` (numpy backend, defaults: ``KFold(5)`` without shuffling,
score = negative mean squared error averaged over folds, no intercept). :func:`fit_ridge_cv`
reproduces that selection rule exactly and is several times faster:

* one eigendecomposition of each fold's training Gram matrix (``p x p``, or the ``n x n`` kernel
  when a fold has fewer trials than voxels), accumulated and decomposed in float64, shared by all
  alphas and all targets;
* the training cross-products of a fold are the full ones minus the held-out fold's, so the
  Gram costs two passes over the data whatever the number of folds, and ``X^T Y`` (kept in the
  output array until the refit overwrites it) one pass plus the held-out rows of each fold;
* the held-out predictions of every alpha come from the eigen-basis with one matrix product per
  alpha (no per-target loop), and only their squared errors are kept;
* in the voxel form the folds run one at a time (decompose, stream every target chunk through
  the basis, free it) and the voxels are standardised block by block as they are read, never
  copied whole: the working memory is the float64 Gram, one basis and one chunk, whatever the
  number of targets, on top of the output coefficients;
* the refit on all trials scales each target's eigen-coefficients by its own alpha, one product
  for all targets whatever their alphas.

Backends: ``"numpy"`` (CPU) and ``"torch"`` (CUDA when available, else CPU; the CPU run tests the
CUDA code path); ``"auto"`` picks torch on CUDA when a GPU is present, numpy otherwise.

The voxel form is in :mod:`.primal` and the kernel form in :mod:`.kernel`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from ..config import DEFAULTS
from ..errors import DataError, UsageError
from .backends import Backend, make_ops
from .cv import kfold_slices, partition_folds, resolve_alphas, select_alphas
from .decoder import RidgeDecoder
from .kernel import fit_kernel
from .options import DEFAULT_BUDGET, DEFAULT_GPU_BUDGET, DEFAULT_OPTIONS, SolverOptions
from .primal import fit_primal
from .source import Source
from .stats import voxel_statistics

LOGGER = logging.getLogger(__name__)


def fit_ridge_cv(
    X: ArrayLike,
    Y: ArrayLike,
    *,
    alphas: str | ArrayLike = DEFAULTS.decoding.alphas,
    n_folds: int = DEFAULTS.decoding.n_folds,
    fit_intercept: bool = True,
    backend: Backend = DEFAULTS.decoding.backend,  # type: ignore[assignment]
    device: str | None = None,
    dtype: DTypeLike = np.float32,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    metadata: Mapping[str, Any] | None = None,
    solver_options: SolverOptions | None = None,
    folds: Sequence[tuple[ArrayLike, ArrayLike]] | None = None,
) -> RidgeDecoder:
    """Fit a ridge decoder with one cross-validated penalty per target.

    Voxels are standardised with the training mean and standard deviation (ddof 0, as
    scikit-learn's ``StandardScaler``); constant or non-finite voxels are dropped with a warning.
    For each target the alpha of ``alphas`` with the best mean score over ``n_folds`` contiguous
    folds (``KFold`` without shuffling) is kept, the score being the negative mean squared error
    of the held-out fold; the model is then refitted on all samples with that alpha. The choice
    rule is himalaya's ``RidgeCV`` one, ties included (the fold mean is rounded to the compute
    dtype, a ``1e-10 log(alpha)`` slope favours larger alphas and the first best is kept).
    The chosen alphas are logged (targets per alpha) and kept in the decoder.

    Parameters
    ----------
    X : array-like, shape ``(n_samples, n_voxels)``
        Training voxels (e.g. single-trial betas of an ROI).
    Y : array-like, shape ``(n_samples, ...)``
        Training targets; trailing dimensions are flattened (``target_shape`` keeps them).
    alphas : {"default", "paper"} or array-like
        Penalty grid (:func:`resolve_alphas`).
    n_folds : int
        Number of cross-validation folds.
    fit_intercept : bool
        Centre voxels and targets in every fit (training fold means) and learn an intercept.
        ``False`` reproduces the paper's setting (himalaya's default): the standardised voxels are
        taken as centred and the predictions have no offset.
    backend : {"auto", "numpy", "torch"}
        Array library; ``"auto"`` is torch on CUDA when available, numpy otherwise.
    device : str, optional
        Torch device (default ``"cuda"`` when available, else ``"cpu"``).
    dtype : numpy dtype
        Compute and coefficient dtype (float32 or float64). Gram matrices and their
        eigendecompositions are always float64.
    chunk_size : int, optional
        Targets per chunk; default from ``memory_budget``.
    memory_budget : int, optional
        Bytes of working memory for a chunk of targets; default
        :data:`~.options.DEFAULT_BUDGET` (64 MiB, or a quarter of the inputs if less; on a GPU
        2 GiB or an eighth of its free memory).
    metadata : mapping, optional
        Provenance stored in the decoder (and its sidecar when saved).
    solver_options : SolverOptions, optional
        How the solver chooses its code paths (default ``SolverOptions()``, which picks each
        by its cost); every path gives the same result to the compute dtype's rounding.
        ``SolverOptions(progress=True)`` shows a tqdm bar over each loop of the targets (the
        result is bit-identical without).
    folds : sequence of (train_idx, test_idx), optional
        Folds to use instead of ``n_folds`` contiguous ones (e.g. ``list(GroupKFold(5).split(X,
        Y, runs))``); they must partition the samples (each sample in one test fold, each fold
        training on all the others; :func:`~.cv.partition_folds`). The rows are then taken in
        the order of the test folds; the refit uses all samples as before.

    Returns
    -------
    RidgeDecoder
        The refitted decoder with the chosen alpha and CV score of every target.

    Raises
    ------
    DataError
        Bad shapes, fewer samples than folds, no usable voxel, non-finite targets.
    UsageError
        Bad option values.
    """
    grid = resolve_alphas(alphas)
    dt = _check_settings(dtype, n_folds, chunk_size, memory_budget, solver_options)
    X = np.asarray(X)
    Y = np.asarray(Y)
    _check_shapes(X, Y)
    n = X.shape[0]
    X, Y, folds = _fold_layout(X, Y, n_folds, folds)
    target_shape = tuple(int(s) for s in Y.shape[1:])
    Y2 = Y.reshape(n, -1)
    t = Y2.shape[1]
    if t == 0:
        raise DataError(f"Y has shape {Y.shape}: there are no targets")

    # float64 row blocks of ~16 MiB: transient copies stay small next to the inputs.
    rows = max(1, 2**21 // max(1, X.shape[1]))
    mask, mean, scale, n_dropped = _usable_voxels(X, rows)
    ops = make_ops(backend, device, dt)
    p = int(mask.sum())
    n_test_max = max(f.stop - f.start for f in folds)
    primal = p <= n - n_test_max
    LOGGER.info(
        "ridge CV: n=%d samples, p=%d voxels (%d dropped), t=%d targets, %d alphas, %d folds, "
        "%s form, backend %s",
        n, p, n_dropped, t, grid.size, len(folds), "voxel" if primal else "kernel", ops.name,
    )  # fmt: skip
    if memory_budget is None:
        memory_budget = _default_budget(ops, X, Y2)
    src = Source(ops, X, Y2, mask, mean, scale, rows)
    options = DEFAULT_OPTIONS if solver_options is None else solver_options
    fit = fit_primal if primal else fit_kernel
    coef, intercept, scores, chunk, products, how = fit(
        src, folds, grid, fit_intercept, memory_budget, chunk_size, options
    )
    best, cv_scores, mean_scores = select_alphas(scores, grid, dt)

    decoder = RidgeDecoder(
        coef=coef,
        intercept=intercept.astype(dt),
        voxel_mask=mask,
        mean=mean,
        scale=scale,
        alphas=grid[best],
        alpha_grid=grid,
        cv_scores=cv_scores,
        target_shape=target_shape,
        fit_intercept=bool(fit_intercept),
        n_folds=len(folds),
        n_samples=n,
        metadata=dict(metadata or {}),
        cv_mean_scores=mean_scores,
        fit_info=_fit_info(primal, ops, chunk, t, products, how),
    )
    _report_alphas(decoder)
    return decoder


def _fit_info(
    primal: bool, ops: Any, chunk: int, t: int, products: list[int], how: dict[str, Any]
) -> dict[str, Any]:
    """How the fit ran (:attr:`RidgeDecoder.fit_info`)."""
    return {
        "form": "voxel" if primal else "kernel",
        "backend": ops.name if ops.name == "numpy" else f"torch:{ops.device}",
        "chunk_size": chunk,
        "n_chunks": -(-t // chunk),
        "products_per_fold": products,
        **how,
    }


def _check_settings(
    dtype: DTypeLike,
    n_folds: int,
    chunk_size: int | None,
    memory_budget: int | None,
    solver_options: SolverOptions | None,
) -> np.dtype:
    """The compute dtype, once the options are checked."""
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise UsageError(f"dtype={dtype!r}: use float32 or float64")
    if not isinstance(n_folds, (int, np.integer)) or isinstance(n_folds, bool):
        raise UsageError(f"n_folds={n_folds!r}: give an integer >= 2")
    if chunk_size is not None and (not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1):
        raise UsageError(f"chunk_size={chunk_size!r}: give a positive integer or None")
    if memory_budget is not None and memory_budget <= 0:
        raise UsageError(f"memory_budget={memory_budget!r}: give a positive number of bytes")
    if solver_options is not None and not isinstance(solver_options, SolverOptions):
        raise UsageError(f"solver_options={solver_options!r}: give a SolverOptions or None")
    return dt


def _fold_layout(
    X: np.ndarray, Y: np.ndarray, n_folds: int, folds: Sequence[Any] | None
) -> tuple[np.ndarray, np.ndarray, list[slice]]:
    """The test folds as contiguous slices, with the rows reordered for given folds."""
    n = X.shape[0]
    if folds is None:
        return X, Y, kfold_slices(n, int(n_folds))
    layout = partition_folds(list(folds), n)
    if layout is None:
        raise UsageError(
            "folds: the test folds must partition the samples (each sample in exactly one test "
            "fold, each fold training on all the others); use KFold, GroupKFold, "
            "LeaveOneGroupOut or StratifiedKFold folds, or RidgeDecoderCV for other splitters"
        )
    order, slices = layout
    if order is not None:
        X, Y = X[order], Y[order]
    return X, Y, slices


def _check_shapes(X: np.ndarray, Y: np.ndarray) -> None:
    if X.ndim != 2 or not np.issubdtype(X.dtype, np.number) or X.shape[1] == 0:
        raise DataError(f"X has shape {X.shape}: give a numeric (n_samples, n_voxels) array")
    if Y.ndim == 0 or not np.issubdtype(Y.dtype, np.number):
        raise DataError(f"Y has shape {Y.shape}: give a numeric (n_samples, ...) array")
    if Y.shape[0] != X.shape[0]:
        raise DataError(
            f"X has {X.shape[0]} samples but Y has {Y.shape[0]}: give one target row per sample"
        )


def _usable_voxels(X: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The mask of usable voxels (finite, not constant), their training mean and standard
    deviation, and the number dropped (with a warning)."""
    mean, scale = voxel_statistics(X, rows)
    mask = np.isfinite(mean) & np.isfinite(scale) & (scale > 1e-7 * np.abs(mean)) & (scale > 0)
    n_dropped = int(mask.size - mask.sum())
    if n_dropped == mask.size:
        raise DataError("every voxel of X is constant or non-finite over the training samples")
    if n_dropped:
        warnings.warn(
            f"{n_dropped} of {mask.size} voxels are constant or non-finite over the training "
            "samples and were dropped",
            RuntimeWarning,
            stacklevel=3,  # the caller of fit_ridge_cv
        )
    return mask, mean[mask], scale[mask], n_dropped


def _default_budget(ops: Any, X: np.ndarray, Y2: np.ndarray) -> int:
    """Working memory of a chunk of targets when none is given."""
    if ops.name == "torch" and ops.device.type == "cuda":
        import torch

        free = torch.cuda.mem_get_info(ops.device)[0]
        return max(2**26, min(DEFAULT_GPU_BUDGET, free // 8))
    # At most a quarter of the inputs, so that small problems stay small.
    return min(DEFAULT_BUDGET, max(2**20, (X.nbytes + Y2.nbytes) // 4))


def _report_alphas(decoder: RidgeDecoder) -> None:
    counts = decoder.alpha_counts()
    text = ", ".join(f"{alpha:g}: {count}" for alpha, count in counts.items())
    LOGGER.info("chosen alphas (targets per alpha): %s", text)
    t = decoder.n_targets
    grid = decoder.alpha_grid
    for edge, side in ((grid.min(), "smallest"), (grid.max(), "largest")):
        share = counts[float(edge)] / t
        if grid.size > 1 and share > 0.5:
            LOGGER.warning(
                "%.0f%% of targets chose the %s alpha (%g): the grid may be too narrow",
                100 * share, side, edge,
            )  # fmt: skip
