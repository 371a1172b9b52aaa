"""The voxel form (every training fold has at least as many samples as voxels): the first pass
(:mod:`.primal_pass`), the folds one at a time (:mod:`.primal_folds`), then the refit on all
samples (:mod:`.primal_refit`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .cv import select_alphas
from .options import SolverOptions
from .primal_folds import score_folds
from .primal_pass import first_pass
from .primal_refit import refit_primal
from .source import Source


def fit_primal(
    src: Source,
    folds: Sequence[slice],
    grid: np.ndarray,
    fit_intercept: bool,
    budget: int,
    chunk_size: int | None,
    options: SolverOptions,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, list[int], dict[str, Any]]:
    """Voxel form (every training fold has at least as many samples as voxels).

    One pass over the data forms the float64 Gram ``Xs^T Xs`` and ``Xs^T Y``; the latter is
    kept in the output array, which the refit overwrites chunk by chunk. Then the folds run one
    at a time: the fold's training Gram (full minus held-out) is decomposed, every chunk of
    targets is scored through that basis, and the basis is freed. Only one ``p x p`` basis, the
    full Gram and the held-out voxels of one fold are alive at once, whatever ``t``.
    """
    ops = src.ops
    n = src.Y.shape[0]
    dt = np.dtype(ops.host_dtype)
    grid_dev = ops.asarray(grid, ops.f64)
    xp = first_pass(src, folds, fit_intercept, budget, options)
    report = score_folds(src, folds, grid, grid_dev, fit_intercept, budget, chunk_size, xp, options)
    # Refit on all samples, each target with its own alpha.
    best = select_alphas(report.scores, grid, dt)[0]
    intercept, refit, by_inverse = refit_primal(
        ops, xp, n, grid, grid_dev, best, report.fold_floor, fit_intercept, budget, chunk_size,
        options,
    )  # fmt: skip
    return (
        xp.coef,
        intercept,
        report.scores,
        int(report.chunk),
        report.products,
        {
            "refit": refit,
            "inverse_refit_targets": by_inverse,
            "held_out_operators": report.held_out_operators,
            "series_folds": report.series_folds,
        },
    )
