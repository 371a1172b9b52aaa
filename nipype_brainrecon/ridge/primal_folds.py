"""The voxel form's cross-validation, one fold at a time: the fold's training Gram (full minus
held-out), then a Neumann series (:mod:`.series`) or an eigen-basis with optional held-out
operators, through which every chunk of targets is scored; the fold's arrays are freed before
the next fold starts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..batching import batches
from .basis import Fold, compress_weights, ridge_weights
from .chunking import Scratch, chunk_of
from .gram import GramAccumulator, sub_outer
from .options import BIG_BLOCK_FACTOR, DEFAULT_OPTIONS, SolverOptions, target_bar
from .primal_pass import CrossProducts
from .scoring import fold_scores
from .series import GRAM_CONSUMED, series_inverse
from .source import Source


@dataclass
class FoldReport:
    """The folds' scores, and how they ran (for the refit and ``fit_info``)."""

    scores: np.ndarray  # (n_folds, n_alphas, t): negative held-out MSE
    chunk: int | None = None  # the narrowest target chunk of any fold
    fold_floor: float = -np.inf  # largest smallest eigenvalue of a training Gram
    products: list[int] = field(default_factory=list)  # held-out products per fold and chunk
    held_out_operators: list[bool] = field(default_factory=list)
    series_folds: list[bool] = field(default_factory=list)


@dataclass
class PreparedFold:
    """What a fold's target chunks are scored through."""

    fold: Fold
    held: Any  # (n_products, n_test, p) held-out operators, or None: the fold's eigen-basis
    voxels: Any  # (n_test, p) centred held-out voxels, kept for the operators (else None)
    offset: Any  # training voxel mean, in the basis or (with operators) in voxel space
    n_products: int
    rank: int  # products plus the arrays of a low-rank combination (1: one product per alpha)


def use_held_out_operators(
    n_products: int, n_test: int, p: int, t: int, options: SolverOptions = DEFAULT_OPTIONS
) -> bool:
    """Whether a fold scores through held-out operators (see ``options.held_out_operators``):
    building them costs ``n_products * 2 n_test p^2`` and saves ``2 p^2 t``; they take at most
    two ``p x p`` bases' memory."""
    if options.held_out_operators is False or n_products * n_test * p > 2 * p * p:
        return False
    return bool(options.held_out_operators or n_products * n_test < t)


def score_folds(
    src: Source,
    folds: Sequence[slice],
    grid: np.ndarray,
    grid_dev: Any,
    fit_intercept: bool,
    budget: int,
    chunk_size: int | None,
    xp: CrossProducts,
    options: SolverOptions,
) -> FoldReport:
    """Negative held-out MSE of every alpha, fold and target, the folds one at a time (one
    bar over every fold's targets when ``options.progress``)."""
    dt = np.dtype(src.ops.host_dtype)
    t = src.Y.shape[1]
    report = FoldReport(np.empty((len(folds), grid.size, t), dtype=dt))
    what = f"CV target chunks ({len(folds)} folds)"
    with target_bar(options, len(folds) * t, what) as bar:
        for k, f in enumerate(folds):
            prepared = _prepare_fold(src, f, grid, grid_dev, fit_intercept, xp, report, options)
            _stream_fold(src, k, f, prepared, xp, fit_intercept, budget, chunk_size, report, bar)
            del prepared  # freed before the next fold's peak
    return report


def training_gram(
    src: Source, xp: CrossProducts, held_out_voxels: Any, n_train: int, fit_intercept: bool
) -> tuple[Any, Any]:
    """The fold's training Gram (full minus held-out, centred) and training mean."""
    ops = src.ops
    # The held-out rows' Gram subtracted from a copy of the full one, by syrk.
    held_out = GramAccumulator(ops, fit_intercept, start=ops.copy(xp.gram), sign=-1.0)
    held_out.add_rows(held_out_voxels, src.rows * BIG_BLOCK_FACTOR)
    g, colsum_test = held_out.gram, held_out.colsum
    shift = None
    if fit_intercept:
        shift = (xp.colsum - colsum_test) / n_train
        sub_outer(g, shift, shift, float(n_train))
    return g, shift


def _prepare_fold(
    src: Source,
    f: slice,
    grid: np.ndarray,
    grid_dev: Any,
    fit_intercept: bool,
    xp: CrossProducts,
    report: FoldReport,
    options: SolverOptions,
) -> PreparedFold:
    """A fold's Neumann series or eigen-basis, and its held-out operators.

    Each large array is released as soon as it is done with (the training Gram before the
    inverse is rounded or once decomposed, the float64 basis before the operators are built,
    the held-out voxels once in the basis unless the operators need them).
    """
    ops = src.ops
    n, t = src.Y.shape
    p = int(src.mean.size)
    n_test = f.stop - f.start
    n_train = n - n_test
    # The held-out voxels, standardised once: for the fold's Gram and its predictions.
    fold_voxels = src.span_voxels(f, transposed=ops.name == "numpy")
    g, shift = training_gram(src, xp, fold_voxels, n_train, fit_intercept)
    series = series_inverse(ops, g, grid, n_test, t, options)
    if series is GRAM_CONSUMED:  # no series after all: rebuild the Gram for the eigen-basis
        g, shift = training_gram(src, xp, fold_voxels, n_train, fit_intercept)
        series = None
    if series is not None:
        # Neumann series, no eigendecomposition: held-out operators X_f (mu G^-1)^k,
        # k = 1..K, by chained GEMMs; alpha j mixes them with (-alpha_j / mu)^(k-1) / mu.
        inverse64, mu, n_products = series
        del g, series  # the proof's factor goes before the inverse is rounded (peak memory)
        inv = ops.cast(inverse64, ops.dt)
        del inverse64
        report.fold_floor = max(report.fold_floor, mu)
        report.products.append(n_products)
        report.held_out_operators.append(True)
        report.series_folds.append(True)
        shift_dt = _centre(ops, fold_voxels, shift) if fit_intercept else None
        held = _series_operators(ops, fold_voxels, inv, n_products)
        del inv
        fold = Fold(
            None, None, None, f, n_train, None, None, _series_mix(ops, grid, mu, n_products)
        )
        return PreparedFold(fold, held, fold_voxels, shift_dt, n_products, n_products + 2)
    report.series_folds.append(False)
    eigvals, basis64 = ops.eigh(g)
    del g
    report.fold_floor = max(report.fold_floor, float(eigvals.min()))
    basis = ops.cast(basis64, ops.dt)
    weights = ridge_weights(ops, eigvals, grid_dev)
    factors, mix = compress_weights(ops, weights, options)
    n_products = grid.size if factors is None else int(factors.shape[1])
    report.products.append(n_products)
    report.held_out_operators.append(use_held_out_operators(n_products, n_test, p, t, options))
    test_op = ops.matmul(fold_voxels, basis)
    voxels_f = fold_voxels if report.held_out_operators[-1] else None  # kept for the operators
    fold_voxels = None  # otherwise the held-out rows are done with
    shift_b = None
    if fit_intercept:
        shift_b = ops.cast(ops.matmul(shift[None, :], basis64)[0], ops.dt)
        test_op -= shift_b[None, :]
    del basis64
    fold = Fold(basis, ops.cast(weights, ops.dt), shift_b, f, n_train, test_op, factors, mix)
    del weights
    rank = 1 if factors is None else factors.shape[1] + 2
    if voxels_f is None:
        return PreparedFold(fold, None, None, shift_b, n_products, rank)
    held = _eigen_operators(ops, fold, test_op, basis, n_products)
    shift_dt = _centre(ops, voxels_f, shift) if fit_intercept else None
    fold.basis = fold.test_op = None
    del basis, test_op
    return PreparedFold(fold, held, voxels_f, shift_dt, n_products, rank)


def _centre(ops: Any, voxels: Any, shift: Any) -> Any:
    """Centre the held-out voxels on the training mean in place; that mean in the compute
    dtype."""
    shift_dt = ops.cast(ops.asarray(shift, ops.f64), ops.dt)
    voxels -= shift_dt[None, :]
    return shift_dt


def _series_operators(ops: Any, voxels: Any, inv: Any, n_products: int) -> Any:
    """Held-out operators ``X_f (mu G^-1)^k``, ``k = 1..K``, by chained GEMMs."""
    n_test, p = voxels.shape
    held = ops.empty((n_products, n_test, p))
    ops.matmul(voxels, inv, out=held[0])
    for j in range(1, n_products):
        ops.matmul(held[j - 1], inv, out=held[j])
    return held


def _series_mix(ops: Any, grid: np.ndarray, mu: float, n_products: int) -> Any:
    """Alpha ``j`` weighs the series terms by ``(-alpha_j / mu)^(k-1) / mu``, the target by -1."""
    powers = (-grid[:, None] / mu) ** np.arange(n_products)[None, :] / mu
    return ops.asarray(np.concatenate([powers, -np.ones((grid.size, 1))], axis=1))


def _eigen_operators(ops: Any, fold: Fold, test_op: Any, basis: Any, n_products: int) -> Any:
    """Held-out operators ``H_j = A_f diag(w_j) B^T`` (``n_test x p``, one per factor or alpha),
    all from one GEMM: the predictions are ``H_j R`` with ``R`` the training cross-products in
    voxel space, so no target chunk needs the ``p x p`` product ``B^T R``."""
    n_test, p = test_op.shape
    columns = fold.factors if fold.factors is not None else fold.weights
    scaled = ops.empty((n_products, n_test, p))
    for j in range(n_products):
        ops.copyto(scaled[j], test_op)
        scaled[j] *= columns[:, j][None, :]
    held = ops.empty((n_products, n_test, p))
    ops.matmul(scaled.reshape(n_products * n_test, p), basis.T,
               out=held.reshape(n_products * n_test, p))  # fmt: skip
    del scaled
    return held


def _stream_fold(
    src: Source,
    k: int,
    f: slice,
    prepared: PreparedFold,
    xp: CrossProducts,
    fit_intercept: bool,
    budget: int,
    chunk_size: int | None,
    report: FoldReport,
    bar: Any = None,
) -> None:
    """Score every chunk of targets through the prepared fold, into ``report.scores[k]``
    (``bar``, a progress bar, advances by each chunk's targets)."""
    ops = src.ops
    n, t = src.Y.shape
    p = int(src.mean.size)
    isz = np.dtype(ops.host_dtype).itemsize
    device_y = ops.name != "numpy"
    n_test = f.stop - f.start
    n_train = n - n_test
    held = prepared.held
    if held is not None:
        # Per target: the training cross-products, the products of the operators and the
        # held-out targets (a copy, and a centred one) (+ a device Xs^T Y).
        per_target = isz * ((1 + device_y) * p + (prepared.n_products + 2) * n_test)
    else:
        # Per target: eigen-coefficients, the held-out correction, a scaled copy, the
        # held-out targets (raw and centred), the predictions or low-rank parts (+ a device
        # Xs^T Y).
        per_target = isz * (3 * p + (prepared.rank + 3) * n_test + p * device_y)
    fold_chunk = chunk_of(budget, per_target, t, chunk_size)
    report.chunk = fold_chunk if report.chunk is None else min(report.chunk, fold_chunk)
    y_total_dev = ops.asarray(xp.y_total, ops.f64)
    # The chunks' large arrays are reused (held-out operators, numpy): fresh ones are
    # page-faulted in at every chunk. Freed with the fold, as before the next fold's peak.
    scratch = Scratch() if held is not None and ops.name == "numpy" else None
    for cols in batches(t, fold_chunk):
        y = src.targets(f, cols)
        coefs = _training_cross_products(ops, xp.coef, cols, y, prepared, scratch)
        target = y
        if fit_intercept:
            y_train = y_total_dev[cols] - ops.asarray(xp.y_sums[k, cols], ops.f64)
            coefs -= prepared.offset[:, None] * ops.cast(y_total_dev[cols], ops.dt)[None, :]
            target = y - ops.cast(y_train / n_train, ops.dt)[None, :]
        fold_scores(ops, prepared.fold, coefs, target, report.scores[k][:, cols], held, scratch)
        del coefs, target, y
        if bar is not None:
            bar.update(cols.stop - cols.start)


def _training_cross_products(
    ops: Any, coef: np.ndarray, cols: slice, y: Any, prepared: PreparedFold, scratch: Any
) -> Any:
    """The fold's training cross-products ``Xs^T Y - Xs_f^T Y_f`` of a chunk of targets (not yet
    centred), in the fold's eigen-basis, or in voxel space when scored through operators."""
    fold = prepared.fold
    if prepared.held is None:
        # In the fold's basis: B^T (Xs^T Y - Xs_f^T Y_f), with Xs_f B = test_op (+ 1 shift_b^T
        # when centred).
        coefs = ops.matmul(fold.basis.T, ops.asarray(coef[:, cols]))
        ops.gemm(fold.test_op.T, y, coefs, alpha=-1.0, beta=1.0)
        return coefs
    # The same in voxel space, with the centred held-out voxels.
    if scratch is not None:
        coefs = scratch.take("coefs", (cols.stop - cols.start, coef.shape[0]), coef.dtype).T
        np.copyto(coefs, coef[:, cols])
    else:
        coefs = ops.fresh(coef[:, cols])
    ops.gemm(prepared.voxels.T, y, coefs, alpha=-1.0, beta=1.0)
    return coefs
