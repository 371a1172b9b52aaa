"""The kernel form, for folds with fewer training samples than voxels: sample-space
eigen-bases of every fold's training kernel ``Xs Xs^T`` and of the full one, all kept, with
the targets streamed in chunks through every fold and refitted chunk by chunk."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..batching import batches
from ..errors import DataError
from .basis import Fold, Refit, compress_weights, ridge_weights
from .chunking import chunk_of
from .cv import select_alphas
from .options import SolverOptions, target_bar
from .scoring import fold_scores
from .source import Source


def fit_kernel(
    src: Source,
    folds: Sequence[slice],
    grid: np.ndarray,
    fit_intercept: bool,
    budget: int,
    chunk_size: int | None,
    options: SolverOptions,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, list[int], dict[str, Any]]:
    """Kernel form (fewer training samples than voxels): ``n x n`` bases, all kept, targets
    streamed in chunks through every fold."""
    ops, Y = src.ops, src.Y
    n, t = Y.shape
    dt = np.dtype(ops.host_dtype)
    host = np.empty((n, int(src.mean.size)), dtype=dt)
    for rows in src.blocks(slice(0, n)):
        host[rows] = ops.to_numpy(src.voxels(rows))
    Xs = ops.asarray(host)
    del host
    fold_bases, refit = _prepare_kernel(
        ops, Xs, folds, ops.asarray(grid, ops.f64), fit_intercept, options
    )
    del Xs
    p = refit.to_voxels.shape[0]
    m = refit.basis.shape[0]
    n_test_max = max(f.stop - f.start for f in folds)
    rank = max(f.factors.shape[1] + 2 if f.factors is not None else 1 for f in fold_bases)
    # Per target: eigen-coefficients (CV and refit), scaled copy, held-out predictions or
    # low-rank parts, refit weights, and a device copy of Y.
    per_target = dt.itemsize * (3 * m + rank * n_test_max + p + (n if ops.name != "numpy" else 0))
    chunk = chunk_of(budget, per_target, t, chunk_size)
    scores = np.empty((len(folds), grid.size, t), dtype=dt)
    coef = np.empty((p, t), dtype=dt)
    intercept = np.zeros(t)
    with target_bar(options, t, "target chunks (CV and refit)") as bar:
        for cols in batches(t, chunk):
            y_folds = [src.targets(f, cols) for f in folds]
            y_sums = [ops.sum64(y, 0) for y in y_folds]
            y_total = ops.copy(y_sums[0])
            for y_sum in y_sums[1:]:
                y_total += y_sum
            if not ops.all_finite(y_total):
                raise DataError(
                    f"Y has non-finite values in targets {cols.start}-{cols.stop - 1}; "
                    "fix or drop them"
                )
            rhs = _cv_chunk_kernel(ops, fold_bases, refit, y_folds, y_sums, y_total, fit_intercept,
                                   scores[:, :, cols])  # fmt: skip
            best = select_alphas(scores[:, :, cols], grid, dt)[0]
            w, b = _refit_chunk(ops, refit, rhs, best, y_total, n, fit_intercept)
            coef[:, cols] = w
            intercept[cols] = b
            del y_folds, rhs
            bar.update(cols.stop - cols.start)
    products = [grid.size if f.factors is None else int(f.factors.shape[1]) for f in fold_bases]
    return coef, intercept, scores, chunk, products, {"refit": "eigh"}


# --- preparing the eigen-bases (once, shared by all targets) ---------------------------------


def _centred_kernel(k_rows: Any, row_means: Any, col_means: Any, grand: float) -> Any:
    return k_rows - row_means[:, None] - col_means[None, :] + grand


def _prepare_kernel(
    ops: Any,
    Xs: Any,
    folds: Sequence[slice],
    grid: Any,
    fit_intercept: bool,
    options: SolverOptions,
) -> tuple[list[Fold], Refit]:
    """Sample-space eigen-bases of each fold's training kernel ``X X^T`` and of the full one,
    for folds with fewer samples than voxels."""
    n, p = Xs.shape
    kernel = None
    step = max(1, 2**24 // n)
    for start in range(0, p, step):
        xb = ops.cast(Xs[:, start : start + step], ops.f64)
        if kernel is None:
            kernel = xb @ xb.T
        else:
            kernel += xb @ xb.T
    all_idx = np.arange(n)
    fold_bases = []
    for f in folds:
        train = ops.index(np.concatenate([all_idx[: f.start], all_idx[f.stop :]]))
        test = ops.index(all_idx[f])
        k_train = ops.take(kernel, train, train)
        k_test = ops.take(kernel, test, train)
        if fit_intercept:
            means = k_train.mean(1)
            grand = float(means.mean())
            k_test = _centred_kernel(k_test, k_test.mean(1), means, grand)
            k_train = _centred_kernel(k_train, means, means, grand)
        eigvals, basis64 = ops.eigh(k_train)
        del k_train
        weights = ridge_weights(ops, eigvals, grid)
        factors, mix = compress_weights(ops, weights, options)
        fold_bases.append(
            Fold(
                ops.cast(basis64, ops.dt),
                ops.cast(weights, ops.dt),
                ops.cast(basis64.sum(0), ops.dt),
                f,
                n - (f.stop - f.start),
                ops.cast(k_test @ basis64, ops.dt),
                factors,
                mix,
            )
        )
        del k_test, basis64
    if fit_intercept:
        means = kernel.mean(1)
        kernel = _centred_kernel(kernel, means, means, float(means.mean()))
    eigvals, basis64 = ops.eigh(kernel)
    del kernel
    voxel_mean = ops.sum64(Xs, 0) / n
    basis = ops.cast(basis64, ops.dt)
    ones = ops.cast(basis64.sum(0), ops.dt)
    to_voxels = ops.matmul(Xs.T, basis)
    if fit_intercept:
        to_voxels -= ops.cast(voxel_mean, ops.dt)[:, None] * ones[None, :]
    weights = ops.cast(ridge_weights(ops, eigvals, grid), ops.dt)
    refit = Refit(basis, weights, ones, to_voxels, voxel_mean)
    return fold_bases, refit


# --- one chunk of targets ---------------------------------------------------------------------


def _cv_chunk_kernel(
    ops: Any,
    folds: Sequence[Fold],
    refit: Refit,
    y_folds: Sequence[Any],
    y_sums: Sequence[Any],
    y_total: Any,
    fit_intercept: bool,
    scores: np.ndarray,
) -> Any:
    """CV scores of a chunk in the kernel form; returns ``basis^T Y`` of the full kernel."""
    for k, fold in enumerate(folds):
        # Basis rows follow the training samples: the folds before this one, then those after.
        coefs = None
        row = 0
        for j, y in enumerate(y_folds):
            if j == k:
                continue
            term = ops.matmul(fold.basis[row : row + y.shape[0]].T, y)
            row += y.shape[0]
            if coefs is None:
                coefs = term
            else:
                coefs += term
        target = y_folds[k]
        if fit_intercept:
            y_mean = ops.cast((y_total - y_sums[k]) / fold.n_train, ops.dt)
            coefs -= fold.shift[:, None] * y_mean[None, :]
            target = target - y_mean[None, :]
        fold_scores(ops, fold, coefs, target, scores[k])
    rhs = None
    for fold, y in zip(folds, y_folds, strict=True):
        term = ops.matmul(refit.basis[fold.test].T, y)
        if rhs is None:
            rhs = term
        else:
            rhs += term
    return rhs


def _refit_chunk(
    ops: Any, refit: Refit, rhs: Any, best: np.ndarray, y_total: Any, n: int, fit_intercept: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Kernel-form weights on all samples, each target with its own alpha (``rhs`` is
    ``basis^T Y``): one scaling, one product."""
    y_mean = y_total / n
    coefs = rhs
    if fit_intercept:
        coefs -= refit.shift[:, None] * ops.cast(y_mean, ops.dt)[None, :]
    coefs *= refit.weights[:, ops.index(best)]
    w = ops.matmul(refit.to_voxels, coefs)
    b = np.zeros(w.shape[1])
    if fit_intercept:
        b = ops.to_numpy(y_mean - ops.cast(ops.cast(refit.voxel_mean, ops.dt) @ w, ops.f64))
    return ops.to_numpy(w), b
