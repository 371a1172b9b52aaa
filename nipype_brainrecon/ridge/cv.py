"""Cross-validation set-up and alpha choice: the alpha grids, the folds and himalaya's rule.

The folds are scikit-learn's ``KFold`` without shuffling, or any partition of the samples laid
out as contiguous folds (:func:`partition_folds`); the alpha of each target is the one
with the best fold-averaged score, chosen as himalaya's ``RidgeCV`` does (ties included).
"""

from __future__ import annotations

from collections.abc import Sequence

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


def partition_folds(
    folds: Sequence[tuple[ArrayLike, ArrayLike]], n_samples: int
) -> tuple[np.ndarray | None, list[slice]] | None:
    """Lay out arbitrary folds as contiguous ones, where they partition the samples.

    ``folds`` are ``(train_idx, test_idx)`` pairs (a scikit-learn splitter's ``split``). When
    every sample is in exactly one test fold and every fold trains on all the others
    (``KFold``, ``GroupKFold``, ``LeaveOneGroupOut``, ``StratifiedKFold`` ...), the samples taken
    in the order of the test folds make each fold a contiguous slice.

    Returns
    -------
    tuple or None
        ``(order, slices)``: the row order (``None`` when it is already ``0 .. n - 1``) and the
        test fold of each split in that order; ``None`` when the folds are not a partition
        (``ShuffleSplit``, ``TimeSeriesSplit``, repeated folds).

    Examples
    --------
    >>> order, slices = partition_folds([([2, 3], [0, 1]), ([0, 1], [2, 3])], 4)
    >>> order is None, slices
    (True, [slice(0, 2, None), slice(2, 4, None)])
    >>> partition_folds([([0, 1], [2]), ([0, 2], [1])], 3) is None
    True
    """
    tests, everything = [], np.arange(n_samples)
    for train, test in folds:
        test = _fold_indices(test, n_samples, "test")
        train = _fold_indices(train, n_samples, "training")
        if test.size == 0 or train.size == 0:
            raise DataError(
                f"a fold has {train.size} training and {test.size} test samples: give folds "
                "(groups) that leave samples on both sides"
            )
        if not np.array_equal(np.sort(train), np.setdiff1d(everything, test)):
            return None
        tests.append(test)
    if len(tests) < 2:
        raise UsageError(f"{len(tests)} fold(s): cross-validation needs at least 2 folds")
    order = np.concatenate(tests)
    if not np.array_equal(np.sort(order), everything):
        return None
    stops = np.cumsum([t.size for t in tests])
    slices = [slice(int(stop - t.size), int(stop)) for stop, t in zip(stops, tests, strict=True)]
    return (None if np.array_equal(order, everything) else order), slices


def _fold_indices(idx: ArrayLike, n_samples: int, side: str) -> np.ndarray:
    """A fold's indices as integers in ``0 .. n_samples - 1`` (boolean masks accepted)."""
    idx = np.asarray(idx).reshape(-1)
    if idx.dtype == bool and idx.size == n_samples:
        idx = np.flatnonzero(idx)
    if idx.size and (
        not np.issubdtype(idx.dtype, np.integer) or idx.min() < 0 or idx.max() >= n_samples
    ):
        raise UsageError(
            f"a fold's {side} indices are not integers in 0..{n_samples - 1}: give "
            "(train_idx, test_idx) pairs of sample indices"
        )
    return idx.astype(np.intp)


def select_alphas(
    scores: np.ndarray, grid: np.ndarray, dt: np.dtype
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """himalaya's rule: fold mean (float64, rounded to dtype) + 1e-10 log(alpha), first argmax."""
    mean = scores.mean(0, dtype=np.float64).astype(dt)
    ranked = mean + (np.log(grid.astype(dt)) * dt.type(1e-10))[:, None]
    best = ranked.argmax(0)
    cv = mean[best, np.arange(mean.shape[1])].astype(np.float64)
    return best, cv, mean


def group_folds(groups: ArrayLike, n_folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Folds that hold out whole groups (runs, sessions): no group is in two test folds.

    With at most ``n_folds`` groups, each group is a fold (scikit-learn's ``LeaveOneGroupOut``);
    with more, ``GroupKFold(n_folds)`` without shuffling (groups assigned, largest first, to
    the fold holding the fewest samples). Both are deterministic.

    Parameters
    ----------
    groups : array-like, shape ``(n_samples,)``
        The group label of each sample.
    n_folds : int
        The most folds to make.

    Raises
    ------
    DataError
        Fewer than two groups (nothing to hold out).

    Examples
    --------
    >>> [test.tolist() for _, test in group_folds(["a", "a", "b", "c", "c"], 5)]
    [[0, 1], [2], [3, 4]]
    >>> len(group_folds(list(range(8)), 5))
    5
    """
    from sklearn.model_selection import GroupKFold, LeaveOneGroupOut

    labels = np.asarray(groups).reshape(-1)
    n_groups = np.unique(labels).size
    if n_groups < 2:
        raise DataError(
            f"{n_groups} group(s) of samples: folds that hold out whole groups need at least 2"
        )
    splitter = LeaveOneGroupOut() if n_groups <= n_folds else GroupKFold(int(n_folds))
    dummy = np.zeros((labels.size, 1))
    return [
        (np.asarray(train, dtype=np.intp), np.asarray(test, dtype=np.intp))
        for train, test in splitter.split(dummy, groups=labels)
    ]
