"""Series folds: a fold scored through the Neumann series of ``(G + alpha I)^-1`` in powers of
``G^-1`` (one Cholesky inverse, no eigendecomposition) when a few terms are exact to the
compute dtype's rounding, with the cost and memory rules that decide when it is used."""

from __future__ import annotations

from typing import Any

import numpy as np

from .options import SolverOptions


def series_terms(ratio: float, tol: float) -> int | None:
    """Terms of the Neumann series of ``1 / (lambda + alpha)`` in powers of ``alpha / lambda``
    whose relative truncation error ``ratio ** terms`` (``ratio`` bounds ``alpha / lambda``) is
    at most ``tol``; None when the series does not converge."""
    if not 0.0 <= ratio < 1.0:
        return None
    if ratio <= tol:
        return 1
    return max(1, int(np.ceil(np.log(tol) / np.log(ratio))))


def series_fits(terms: int, n_test: int, p: int, options: SolverOptions) -> bool:
    """Whether a series fold's ``terms`` held-out operators fit in ``options.series_memory``."""
    return options.held_out_operators is not False and terms * n_test <= options.series_memory * p


def series_saves_time(terms: int, n_test: int, p: int, t: int, options: SolverOptions) -> bool:
    """Whether a series fold (``terms`` operators and products, float64 factorisations ~3 p^3
    of GEMM time) costs less than an eigen-basis fold at its best: the decomposition
    (``options.eigh_cost`` p^3), the held-out voxels in the basis, one product fewer (the low-rank
    weights usually need one term less) and the cheaper of held-out operators or basis products."""
    product = 2.0 * n_test * p * t
    operator = 2.0 * n_test * p * p
    series = terms * (operator + product) + 3.0 * p**3
    fewer = max(terms - 1, 1)
    eigen = (
        options.eigh_cost * p**3
        + operator
        + fewer * product
        + min(fewer * operator, 2.0 * p * p * t)
    )
    return series <= eigen


#: Returned by :func:`series_inverse` when it used up the Gram it was given and found no series.
GRAM_CONSUMED = "consumed"


def series_inverse(
    ops: Any, g: Any, grid: np.ndarray, n_test: int, t: int, options: SolverOptions
) -> tuple[Any, float, int] | str | None:
    """The scaled inverse ``mu G^-1`` (float64: the caller rounds it to the compute dtype once
    ``g`` is freed), ``mu`` and the number of Neumann terms when a fold can be scored without
    an eigendecomposition (see ``options.series_folds``).

    ``(G + alpha I)^-1 = sum_k (-alpha)^k G^-(k+1)``, truncated after ``K`` terms, has a relative
    error of at most ``(alpha / lambda_min)^K`` in every eigen-direction. When ``K`` terms reach
    the compute dtype's unit roundoff for the largest alpha (the accuracy
    :func:`compress_weights` asks of low-rank weights), the fold's held-out operators are
    ``X_f G^-k`` (``X_f``: the centred held-out voxels), ``k = 1..K``, from one Cholesky
    inverse (float64, ~p^3 flops against ~30 p^3 of GEMM time for an eigendecomposition). The
    floor ``mu <= lambda_min`` is half a power-iteration estimate (on the inverse), proven by
    factorising ``G - mu I``; nothing is factorised when even the smallest diagonal entry of
    ``G`` (an upper bound of ``lambda_min``) would need too many terms. ``g`` (float64, lower
    triangle) is left intact when the result is None, and consumed otherwise
    (:data:`GRAM_CONSUMED`: no series after all). None when the series
    needs more terms than allowed, costs more than the eigen-basis
    (:func:`series_saves_time`), its operators do not fit (:func:`series_fits`), or ``G`` is
    not clearly positive definite.
    """
    p = g.shape[0]
    if options.series_folds is False or not series_fits(1, n_test, p, options):
        return None
    tol = float(np.finfo(ops.host_dtype).eps) / 2
    max_terms = 64 if options.series_folds else grid.size
    # No eigenvalue exceeds the smallest diagonal entry: when even that floor would need too
    # many terms (wide grids), nothing is factorised.
    diagonal = ops.to_numpy(ops.copy(g.diagonal()))
    ceiling = options.series_floor_factor * float(diagonal.min())
    best_case = series_terms(float(grid.max()) / ceiling, tol) if ceiling > 0 else None
    if best_case is None or best_case > max_terms or not series_fits(best_case, n_test, p, options):
        return None
    factor = ops.cholesky(ops.copy(g))
    if factor is None:
        return None
    inv = ops.cho_inverse(factor)  # G^-1 (float64), in place of the factor
    del factor
    # Power iteration (Rayleigh quotients) on G^-1: rq <= 1 / lambda_min. One pass over the
    # inverse per iteration (two over the factor for triangular solves).
    v = ops.asarray(np.cos(np.arange(p) * 0.7)[:, None] + 1.5, ops.f64)
    v /= float(np.sqrt(ops.to_numpy(ops.sumsq_cols(v))[0]))
    for _ in range(options.power_iterations):
        w = ops.matmul(inv, v)
        rq = float(ops.to_numpy(ops.sum64(w * v, 0))[0])
        v = w / float(np.sqrt(ops.to_numpy(ops.sumsq_cols(w))[0]))
    margin = float(diagonal.sum()) * p * np.finfo(np.float64).eps  # factorisations' rounding
    guess = options.series_floor_factor / rq  # the estimate was within 11% after 8 iterations
    mu = guess - margin
    terms = series_terms(float(grid.max()) / mu, tol) if mu > 8.0 * margin else None
    if terms is None or terms > max_terms:
        return None
    if not series_fits(terms, n_test, p, options):
        return None
    if not (
        options.series_folds
        or options.held_out_operators
        or series_saves_time(terms, n_test, p, t, options)
    ):
        return None
    # The proof factorises G - guess I in place of G: one p x p float64 array less at the peak.
    # On failure (rare: the estimate was more than twice too large) the caller rebuilds G.
    ops.add_diagonal(g, -guess)
    if ops.cholesky(g) is None:  # G - guess I is not positive definite
        return GRAM_CONSUMED
    inv *= mu
    return inv, mu, terms
