"""The voxel form's refit on all samples, each target with its own alpha: one Cholesky
factorisation of ``G + alpha I`` per chosen alpha (solves, or the explicit inverse for many
targets) when the full Gram is regular, else the full Gram's eigen-basis."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..batching import batches
from .basis import ridge_weights
from .chunking import chunk_of, index_chunks
from .gram import sub_outer
from .options import SolverOptions, target_bar
from .primal_pass import CrossProducts


class RefitTargets:
    """The refit's right-hand sides and where its weights go: ``Xs^T Y`` of each chunk of
    targets (in the output array) is read, then overwritten by the chunk's weights."""

    def __init__(
        self,
        ops: Any,
        xp: CrossProducts,
        n: int,
        fit_intercept: bool,
        voxel_mean: Any,
        bar: Any = None,
    ) -> None:
        self.ops = ops
        self.bar = bar  # a progress bar advanced by the targets stored, or None
        self.coef = xp.coef
        self.y_total = xp.y_total
        self.n = n
        self.fit_intercept = fit_intercept
        self.voxel_mean = voxel_mean  # float64 (intercept fits; else None)
        self.vm = None if voxel_mean is None else ops.cast(voxel_mean, ops.dt)
        self.intercept = np.zeros(xp.coef.shape[1])

    def rhs(self, cols: slice | np.ndarray, dtype: Any) -> Any:
        """Xs^T Y of ``cols``, centred for intercept fits: ``Xs^T Y - n mean_x mean_y^T``."""
        ops = self.ops
        rhs = ops.asarray(self.coef[:, cols], dtype)
        if self.fit_intercept:
            centre = self.voxel_mean[:, None] * ops.asarray(self.y_total[cols], ops.f64)[None, :]
            rhs = rhs - ops.cast(centre, dtype)
        return rhs

    def store(self, cols: slice | np.ndarray, w: Any) -> None:
        """The weights ``w`` of ``cols`` into the output, and their intercepts."""
        ops = self.ops
        if self.fit_intercept:
            self.intercept[cols] = self.y_total[cols] / self.n - ops.to_numpy(
                ops.cast(ops.matmul(self.vm[None, :], w)[0], ops.f64)
            )
        self.coef[:, cols] = ops.to_numpy(w)
        if self.bar is not None:
            self.bar.update(w.shape[1])


def full_gram_is_regular(gram: Any, fold_floor: float, p: int) -> bool:
    """Whether the full Gram's eigenvalues all clear the null-space tolerance of
    :func:`~.basis.ridge_weights`, judged without decomposing it: its smallest eigenvalue is at
    least any training Gram's (``fold_floor``) and its largest at most its trace. The factor 4
    covers the decompositions' rounding."""
    trace = float(gram.diagonal().sum())
    return bool(fold_floor > 4.0 * trace * p * np.finfo(np.float64).eps)


def refit_primal(
    ops: Any,
    xp: CrossProducts,
    n: int,
    grid: np.ndarray,
    grid_dev: Any,
    best: np.ndarray,
    fold_floor: float,
    fit_intercept: bool,
    budget: int,
    chunk_size: int | None,
    options: SolverOptions,
) -> tuple[np.ndarray, str, list[int]]:
    """Weights of every target with its alpha (grid index ``best``) over ``xp.coef``.

    Returns the intercepts, how the refit ran (``"cholesky"``, or ``"eigh"`` when any target
    went through the eigen-basis) and the number of targets of each alpha refitted through the
    explicit inverse. The full Gram is centred for intercept fits, and destroyed.
    """
    gram = xp.gram
    t = best.size
    voxel_mean = None  # column sums are only taken for intercept fits
    if fit_intercept:
        voxel_mean = xp.colsum / n
        sub_outer(gram, voxel_mean, voxel_mean, float(n))
    with target_bar(options, t, "refit target chunks") as bar:
        targets = RefitTargets(ops, xp, n, fit_intercept, voxel_mean, bar)
        remaining, by_inverse = _refit(
            ops, gram, grid, grid_dev, best, fold_floor, targets, budget, chunk_size, options
        )
    refit = "cholesky" if remaining.size == 0 else "eigh"
    return targets.intercept, refit, by_inverse


def _refit(
    ops: Any,
    gram: Any,
    grid: np.ndarray,
    grid_dev: Any,
    best: np.ndarray,
    fold_floor: float,
    targets: RefitTargets,
    budget: int,
    chunk_size: int | None,
    options: SolverOptions,
) -> tuple[np.ndarray, list[int]]:
    """:func:`refit_primal` on the centred Gram: Cholesky when it is regular and few alphas were
    chosen, the eigen-basis for the rest; returns the targets left to the eigen-basis and those
    refitted through the explicit inverse."""
    p = gram.shape[0]
    t = best.size
    isz = np.dtype(ops.host_dtype).itemsize
    remaining = np.arange(t)
    chosen = np.unique(best)
    by_inverse: list[int] = []  # targets of each alpha refitted through the explicit inverse
    if chosen.size <= options.cholesky_max_alphas and full_gram_is_regular(gram, fold_floor, p):
        # Every training Gram is dominated by the full one (Loewner order, centred or not), so
        # no eigenvalue of the full Gram reaches the null-space tolerance of ridge_weights and
        # (G + alpha I)^-1 equals the eigen-basis solve: one float64 Cholesky factorisation per
        # chosen alpha (p^3/3 flops) replaces the last eigendecomposition (~4 p^3).
        solve_chunk = chunk_of(budget, 8 * 3 * p + isz * p, t, chunk_size)
        if ops.name != "numpy":
            remaining = refit_by_column_chunks(
                ops, gram, grid, best, budget, solve_chunk, targets.rhs, targets.store
            )
        else:
            remaining, by_inverse = _refit_by_cholesky(
                ops, gram, grid, best, chosen, targets, budget, chunk_size, solve_chunk
            )
    if remaining.size:
        _refit_by_eigen_basis(ops, gram, grid_dev, best, remaining, targets, budget, chunk_size)
    return remaining, by_inverse


def shifted_cholesky(ops: Any, gram: Any, alpha: float) -> Any:
    """Cholesky factor of ``gram + alpha I`` (``gram`` kept); None unless positive definite."""
    factor = ops.copy(gram)
    ops.add_diagonal(factor, alpha)
    return ops.cholesky(factor)


def refit_by_inverse(n_targets: int, p: int, dtype: np.dtype) -> bool:
    """Whether the host refit of ``n_targets`` sharing one alpha multiplies by the explicit
    inverse of ``G + alpha I`` (float32 GEMM) rather than solving with its Cholesky factor
    (float64 triangular solves, ~3x slower per flop on the CPU): the inverse costs ``2/3 p^3``
    more float64 flops, repaid from about ``p / 2`` targets. The inverse is rounded to float32 as
    ``Xs^T Y`` already is, and the solution is as sensitive to either rounding (both scale with
    the condition number of ``G + alpha I``); float64 fits keep the backward-stable solves."""
    return dtype == np.dtype(np.float32) and 2 * n_targets >= p


def _refit_by_cholesky(
    ops: Any,
    gram: Any,
    grid: np.ndarray,
    best: np.ndarray,
    chosen: np.ndarray,
    targets: RefitTargets,
    budget: int,
    chunk_size: int | None,
    solve_chunk: int,
) -> tuple[np.ndarray, list[int]]:
    """Cholesky refit on the host, one chosen alpha at a time; returns the targets left for the
    eigen-basis (those of the alphas after a failed factorisation) and the targets of each alpha
    refitted through the explicit inverse."""
    p = gram.shape[0]
    t = best.size
    dt = np.dtype(ops.host_dtype)
    remaining = np.arange(t)
    by_inverse: list[int] = []
    gemm_chunk = chunk_of(budget, 2 * dt.itemsize * p, t, chunk_size)
    for a in chosen:
        factor = shifted_cholesky(ops, gram, float(grid[a]))
        if factor is None:  # lost to rounding: the eigen-basis takes the rest
            break
        cols_a = np.flatnonzero(best == a)
        if refit_by_inverse(cols_a.size, p, dt):
            by_inverse += [int(cols_a.size)]
            inverse = ops.cast(ops.cho_inverse(factor), ops.dt)
            del factor
            for cols in index_chunks(cols_a, gemm_chunk):
                rhs = targets.rhs(cols, ops.dt)
                # In the output's column order: the copy into it is contiguous.
                w = np.empty((rhs.shape[1], p), dtype=dt).T
                targets.store(cols, ops.matmul(inverse, rhs, out=w))
                del rhs, w
            del inverse
        else:
            for cols in index_chunks(cols_a, solve_chunk):
                targets.store(
                    cols, ops.cast(ops.cho_solve(factor, targets.rhs(cols, ops.f64)), ops.dt)
                )
            del factor
        remaining = remaining[best[remaining] != a]
    return remaining, by_inverse


def refit_by_column_chunks(
    ops: Any,
    gram: Any,
    grid: np.ndarray,
    best: np.ndarray,
    budget: int,
    chunk: int,
    rhs_of: Any,
    store: Any,
) -> np.ndarray:
    """Cholesky refit on a device: contiguous column chunks, each alpha's columns gathered and
    scattered there (host-side fancy indexing of the p x t arrays took 4 s of a 20 s NSD fit).
    Factors are kept while they fit in ``budget`` and recomputed otherwise. Returns the
    targets left for the eigen-basis (from the first chunk where a factorisation failed)."""
    p = gram.shape[0]
    keep = max(1, budget // (8 * p * p))
    factors: dict[int, Any] = {}
    for cols in batches(best.size, chunk):
        rhs = rhs_of(cols, ops.f64)
        w = ops.empty((p, cols.stop - cols.start))
        for a in np.unique(best[cols]):
            factor = factors.get(int(a))
            if factor is None:
                factor = shifted_cholesky(ops, gram, float(grid[a]))
                if factor is None:  # lost to rounding: the eigen-basis takes the rest
                    return np.arange(cols.start, best.size)
                if len(factors) < keep:
                    factors[int(a)] = factor
            idx = ops.index(np.flatnonzero(best[cols] == a))
            w[:, idx] = ops.cast(ops.cho_solve(factor, rhs[:, idx]), ops.dt)
        store(cols, w)
        del rhs, w
    return np.arange(0)


def _refit_by_eigen_basis(
    ops: Any,
    gram: Any,
    grid_dev: Any,
    best: np.ndarray,
    remaining: np.ndarray,
    targets: RefitTargets,
    budget: int,
    chunk_size: int | None,
) -> None:
    """The ``remaining`` targets through the full Gram's eigen-basis: each target's
    eigen-coefficients scaled by its own ``1/(lambda + alpha)``, two GEMMs per chunk."""
    p = gram.shape[0]
    isz = np.dtype(ops.host_dtype).itemsize
    device_y = ops.name != "numpy"
    eigvals, basis64 = ops.eigh(gram)
    basis = ops.cast(basis64, ops.dt)
    del basis64
    weights = ops.cast(ridge_weights(ops, eigvals, grid_dev), ops.dt)
    refit_chunk = chunk_of(budget, isz * (3 * p + p * device_y), best.size, chunk_size)
    for cols in index_chunks(remaining, refit_chunk):
        coefs = ops.matmul(basis.T, targets.rhs(cols, ops.dt))
        coefs *= weights[:, ops.index(best[cols])]
        targets.store(cols, ops.matmul(basis, coefs))
        del coefs
