"""Permutation nulls and bootstrap confidence intervals of scores over test items.

:func:`permutation_null` draws the null distribution of a score by permuting which prediction
belongs to which test item (the test-set labels), and gives its 95th percentile and the p-value
``(1 + #{null >= observed}) / (1 + n_permutations)``. For scores that are a mean over items of
``Q[i, c]``, the score item ``i`` gets when assigned candidate ``c`` (two-way identification from
a similarity matrix: permuting the labels permutes the matrix's columns), :func:`assignment_scorer`
turns ``Q`` into a score function that evaluates all permutations at once, without a Python loop
per permutation.

:func:`bootstrap_ci` resamples the test items with replacement and gives the percentile
confidence interval of the mean of per-item scores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..config import DEFAULTS
from ..errors import DataError, UsageError

#: Scores a batch of permutations (P, n) of the item labels: returns (P,) scores.
ScoreFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class PermutationNull:
    """A score beside its permutation null distribution."""

    observed: float
    null: np.ndarray  # (n_permutations,)
    p95: float  # 95th percentile of the null
    p_value: float  # (1 + #{null >= observed}) / (1 + n_permutations)


class ConfidenceInterval(NamedTuple):
    """Percentile bootstrap interval of a mean."""

    low: float
    high: float


def _check_count(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise UsageError(f"{what}: {value!r}; give a positive whole number (e.g. 1000)")
    return int(value)


def permutations(n_items: int, n_permutations: int, seed: int) -> np.ndarray:
    """``n_permutations`` seeded random permutations of ``range(n_items)``, shape (P, n)."""
    rng = np.random.default_rng(seed)
    return rng.permuted(np.tile(np.arange(n_items), (n_permutations, 1)), axis=1)


def permutation_null(
    score_fn: ScoreFn,
    n_items: int,
    *,
    n_permutations: int = DEFAULTS.evaluation.n_permutations,
    seed: int = DEFAULTS.evaluation.resampling_seed,
    batched: bool = True,
) -> PermutationNull:
    """Null distribution of a score under random permutations of the test-set labels.

    Parameters
    ----------
    score_fn : callable
        With ``batched=True``: takes an int array (P, n_items) of permutations (row ``p``
        assigns prediction ``perm[p, i]`` to item ``i``) and returns the P scores. With
        ``batched=False``: takes one permutation (n_items,) and returns one score.
    n_items : int
        Number of test items.
    n_permutations : int
        Null draws (1,000 by default).
    seed : int
        Seeds the permutations.
    batched : bool
        Whether ``score_fn`` scores a batch of permutations at once.

    Returns
    -------
    PermutationNull
        ``observed`` (the identity permutation's score), ``null`` (the draws), ``p95`` (their
        95th percentile) and ``p_value`` ``(1 + #{null >= observed}) / (1 + n_permutations)``.

    Examples
    --------
    >>> import numpy as np
    >>> q = np.eye(10)  # item i scores 1 only with its own prediction
    >>> res = permutation_null(assignment_scorer(q), 10, n_permutations=99)
    >>> res.observed, res.p_value
    (1.0, 0.01)
    """
    n_items = _check_count(n_items, "n_items")
    n_permutations = _check_count(n_permutations, "n_permutations")
    perms = permutations(n_items, n_permutations, seed)
    identity = np.arange(n_items)[None]
    if batched:
        observed = float(np.asarray(score_fn(identity), dtype=np.float64).reshape(-1)[0])
        null = np.asarray(score_fn(perms), dtype=np.float64).reshape(-1)
    else:
        observed = float(score_fn(identity[0]))
        null = np.array([float(score_fn(p)) for p in perms])
    if null.shape != (n_permutations,):
        raise DataError(f"score_fn returned {null.size} scores for {n_permutations} permutations")
    return PermutationNull(
        observed=observed,
        null=null,
        p95=float(np.percentile(null, 95)),
        p_value=float((1 + np.count_nonzero(null >= observed)) / (1 + n_permutations)),
    )


def assignment_scorer(gain: np.ndarray, denominator: float = 1.0) -> ScoreFn:
    """Batched score function: mean over items ``i`` of ``gain[i, perm[i]] / denominator``.

    With integer gains (as :func:`~nipype_brainrecon.evaluation.metrics.identification_gain`
    gives, in half comparisons) the sum is exact, so equal scores compare equal in the p-value.
    """
    g = np.asarray(gain)
    if g.ndim != 2 or g.shape[0] != g.shape[1]:
        raise DataError(f"gain matrix of shape {g.shape}; expected (n, n)")
    rows = np.arange(len(g))

    def score(perms: np.ndarray) -> np.ndarray:
        p = np.asarray(perms).reshape(-1, len(g))
        return g[rows, p].sum(axis=1) / (denominator * len(g))

    return score


def bootstrap_ci(
    per_item_scores: np.ndarray,
    *,
    n_boot: int = DEFAULTS.evaluation.n_boot,
    seed: int = DEFAULTS.evaluation.resampling_seed,
    level: float = 0.95,
) -> ConfidenceInterval:
    """Percentile bootstrap interval of the mean score over test items.

    Parameters
    ----------
    per_item_scores : array-like (n_items,) or (n_items, ...)
        One score per test item (trailing axes, e.g. samples, are averaged first).
    n_boot : int
        Resamples of the items, with replacement (1,000 by default).
    seed : int
        Seeds the resampling.
    level : float
        Coverage (0.95: the 2.5th and 97.5th percentiles of the resampled means).

    Examples
    --------
    >>> low, high = bootstrap_ci(np.linspace(0.0, 1.0, 101))
    >>> bool(low < 0.5 < high)
    True
    """
    x = np.asarray(per_item_scores, dtype=np.float64)
    if x.ndim == 0 or len(x) < 1:
        raise DataError("per_item_scores: no items; give one score per test item")
    x = x.reshape(len(x), -1).mean(axis=1)
    if not np.isfinite(x).all():
        raise DataError("per_item_scores: NaN or infinite scores; a CI needs finite scores")
    if not 0 < level < 1:
        raise UsageError(f"level: {level!r}; give a coverage between 0 and 1 (e.g. 0.95)")
    n_boot = _check_count(n_boot, "n_boot")
    idx = np.random.default_rng(seed).integers(0, len(x), size=(n_boot, len(x)))
    means = x[idx].mean(axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return ConfidenceInterval(float(low), float(high))


def sign_flip_p(
    differences: np.ndarray,
    *,
    n_flips: int = DEFAULTS.evaluation.n_permutations,
    seed: int = DEFAULTS.evaluation.resampling_seed,
) -> float:
    """One-sided sign-flip permutation p-value of ``mean(differences) > 0`` for paired
    per-item differences (e.g. one image's identification from two ROIs).

    Each draw flips the sign of every difference at random (seeded); p = ``(1 + #{mean of
    flipped >= observed mean}) / (1 + n_flips)``. The items are treated as exchangeable under
    the null, which per-image identification scores are only approximately (each compares an
    image with all the others).

    >>> sign_flip_p(np.full(40, 0.5), n_flips=999)
    0.001
    >>> sign_flip_p(np.zeros(20))
    1.0
    """
    d = np.asarray(differences, dtype=np.float64).ravel()
    if d.size == 0:
        raise DataError("differences: none; give one difference per item")
    n_flips = _check_count(n_flips, "n_flips")
    signs = np.random.default_rng(seed).choice((-1.0, 1.0), size=(n_flips, d.size))
    null = (signs * d).mean(axis=1)
    # a flipped mean equal to the observed one counts as >= despite rounding
    return float((1 + np.count_nonzero(null >= d.mean() - 1e-12)) / (1 + n_flips))
