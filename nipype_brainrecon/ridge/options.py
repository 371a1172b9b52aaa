"""Solver options: the switches and cost-model constants that choose the solver's code paths.

:class:`SolverOptions` is passed down explicitly from :func:`~.fit.fit_ridge_cv` (as himalaya's
``solver_params``); its defaults are the tuned values. Every path gives the same result to the
compute dtype's rounding: the switches exist for tests and benchmarks, which force one path.
The memory sizes below are plain constants. ``progress`` shows tqdm bars over the solver's
target loops (:func:`target_bar`); it changes no number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..batching import progress_bar


@dataclass(frozen=True)
class SolverOptions:
    """How :func:`~.fit.fit_ridge_cv` runs; the defaults choose each path by its cost.

    Attributes
    ----------
    low_rank_alphas : bool or None
        Evaluate the CV predictions through low-rank factors of the ridge weights when they are
        exact to the compute dtype's rounding (see :func:`~.basis.compress_weights`): None when
        it saves time, True whenever exact, False never (one product per alpha).
    held_out_operators : bool or None
        Score a fold through held-out operators ``A_f diag(w_j) B_f^T`` (``n_test x p``, one per
        factor or alpha) instead of taking every target chunk into the fold's eigen-basis: None
        when it saves time (fewer operator rows than targets) and they fit in two bases' memory,
        True whenever they fit, False never.
    series_folds : bool or None
        Score a fold through the Neumann series of ``(G + alpha I)^-1`` in powers of ``G^-1``
        (one Cholesky inverse, no eigendecomposition) when every alpha is small enough next to
        the fold's smallest eigenvalue that a few terms are exact to the compute dtype's rounding
        (the paper's grid on standardised voxels): None when it needs no more products than
        alphas and costs less than the eigen-basis (:func:`~.series.series_saves_time`), True
        whenever the series is exact (up to 64 terms; for tests), False never.
    power_iterations : int
        Inverse iterations estimating a fold Gram's smallest eigenvalue (only the estimate's
        order of magnitude matters: it sets the number of series terms, and is proven before
        use).
    eigh_cost : float
        A float64 eigendecomposition (LAPACK syevd) took this many p^3 of float32 GEMM time
        (measured at p = 1,500 and 3,000 on two threads): the cost model choosing series folds.
    series_floor_factor : float
        The floor tried for the smallest eigenvalue, as a fraction of its estimate (then
        proven).
    series_memory : float
        Series folds' held-out operators may take this many ``p x p`` bases' memory (the
        eigen-basis path keeps a basis and a scaled copy besides its operators while it builds
        them; this one neither).
    cholesky_max_alphas : int
        The refit factorises ``G + alpha I`` once per chosen alpha when at most this many alphas
        were chosen (and the Gram is regular); otherwise it decomposes ``G`` once.
    progress : bool
        Show a tqdm bar over each long loop of the solver (first pass, CV folds, refit, or the
        kernel form's target chunks); the workflows set it on a terminal only. No result
        depends on it.
    progress_desc : str
        What the bars' descriptions start with (e.g. ``"sub-01 ridge z"``).

    Examples
    --------
    >>> SolverOptions(series_folds=False).cholesky_max_alphas
    8
    """

    low_rank_alphas: bool | None = None
    held_out_operators: bool | None = None
    series_folds: bool | None = None
    power_iterations: int = 8
    eigh_cost: float = 30.0
    series_floor_factor: float = 0.5
    series_memory: float = 3.0
    cholesky_max_alphas: int = 8
    progress: bool = False
    progress_desc: str = "ridge"


def target_bar(options: SolverOptions, total: int, what: str, unit: str = "target") -> Any:
    """A tqdm bar (:func:`~nipype_brainrecon.batching.progress_bar`) over ``total`` items
    (``unit``) of one solver loop, described ``"<options.progress_desc>: <what>"``; silent
    unless ``options.progress``.

    >>> with target_bar(SolverOptions(), 10, "refit") as bar:
    ...     bar.update(10)
    >>> bar.disable
    True
    """
    return progress_bar(total, f"{options.progress_desc}: {what}", options.progress, unit)


#: The options used when none are given.
DEFAULT_OPTIONS = SolverOptions()

#: Row blocks of the passes forming Gram matrices and ``Xs^T Y`` (numpy backend) are this many
#: times the others (~64 MiB of float64): fewer passes over the output array, faster syrk.
BIG_BLOCK_FACTOR = 4
#: float32 rows are widened to float64 for the Gram matrices in blocks of about this many bytes.
WIDEN_BYTES = 8 * 2**20

#: Default working memory of a chunk of targets (bytes) on the CPU (capped at a quarter of the
#: inputs) and on a GPU: fixed, so that memory does not grow with the number of targets beyond
#: the output coefficients.
DEFAULT_BUDGET = 64 * 2**20
#: On a GPU, at most this or an eighth of its free memory: larger chunks, fewer transfers.
DEFAULT_GPU_BUDGET = 2 * 2**30
