"""Variance partitioning with banded ridge and bootstrap intervals over the test stimuli.

The unique variance of feature space ``a`` is ``R2(a+b) - R2(b)`` on the held-out test stimuli
(and ``shared = R2(a) + R2(b) - R2(a+b)``). With one penalty for the joint model, the space that
needs the larger penalty (more, noisier columns) shrinks the other one too and biases both
unique variances; :func:`fit_joint_banded` gives each space its own penalty
(:func:`nipype_brainrecon.ridge.banded.fit_banded_ridge_cv`, himalaya's ``BandedRidgeCV``).

:func:`partition_bootstrap` gives 95 % intervals by resampling the test stimuli with
replacement (the fitted models fixed) and recomputing every R² and their differences: each
resample is a row of multinomial counts, so the sums of squares of all resamples are one matrix
product (no copy of the data per resample). The interval covers the test-set sampling error, not
the variability of the fit itself, and is centred on the estimate, which a finite training set
biases (every test R² falls short of the population's, the joint model's most).
:func:`partition_refit_bootstrap` also resamples the training stimuli, refits the models at their
penalties and gives the basic bootstrap interval, which covers both and corrects that bias to
first order (docs/encoding.md: coverage of planted fractions).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from ..errors import DataError, UsageError

__all__ = [
    "FixedPenaltyModel",
    "bootstrap_counts",
    "fit_joint_banded",
    "partition_bootstrap",
    "partition_refit_bootstrap",
]

LOGGER = logging.getLogger(__name__)


def bootstrap_counts(n: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """How often each of ``n`` items is drawn in each of ``n_boot`` resamples, ``(n_boot, n)``.

    Examples
    --------
    >>> c = bootstrap_counts(5, 3)
    >>> c.shape, c.sum(1).tolist()
    ((3, 5), [5.0, 5.0, 5.0])
    """
    if n < 2 or n_boot < 1:
        raise UsageError(f"bootstrap: n={n}, n_boot={n_boot}; need n >= 2 and n_boot >= 1")
    idx = np.random.default_rng(seed).integers(0, n, (int(n_boot), int(n)))
    counts = np.zeros((int(n_boot), int(n)))
    np.add.at(counts, (np.arange(int(n_boot))[:, None], idx), 1.0)
    return counts


def _boot_r2(counts: np.ndarray, y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """R² of ``pred`` in every resample, ``(n_boot, n_targets)`` (NaN where SST is 0)."""
    n = y.shape[0]
    sse = counts @ (y - pred) ** 2
    sst = counts @ y**2 - (counts @ y) ** 2 / n
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sst > 0, 1.0 - sse / np.where(sst > 0, sst, 1.0), np.nan)


def partition_bootstrap(
    measured: ArrayLike,
    pred_a: ArrayLike,
    pred_b: ArrayLike,
    pred_joint: ArrayLike,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    groups: Mapping[str, ArrayLike] | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Bootstrap intervals of unique and shared variance over the test stimuli.

    Parameters
    ----------
    measured : array-like, ``(n_test, n_targets)``
        Test responses.
    pred_a, pred_b, pred_joint : array-like, same shape
        Predictions of the model of space ``a``, of ``b`` and of the joint model.
    n_boot, level, seed
        Resamples, interval level (percentile interval) and the seed of the resampling.
    groups : mapping, optional
        ``{name: boolean or index array over the targets}``: also the interval of the mean over
        each group's targets (each resample's mean, so the targets' dependence is kept).

    Returns
    -------
    dict
        ``{"unique_a" | "unique_b" | "shared": {"estimate", "low", "high"}}`` per target
        ``(n_targets,)``; with ``groups`` also ``"groups": {name: {"unique_a": (estimate, low,
        high), ...}}``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = rng.normal(size=(50, 2))
    >>> out = partition_bootstrap(y, y * 0.5, 0 * y, y * 0.9, n_boot=200)
    >>> bool(np.all(out["unique_a"]["low"] <= out["unique_a"]["estimate"]))
    True
    """
    y, pa, pb, pj = (
        np.asarray(x, dtype=np.float64) for x in (measured, pred_a, pred_b, pred_joint)
    )
    if y.ndim != 2 or any(p.shape != y.shape for p in (pa, pb, pj)):
        raise DataError(
            f"measured {y.shape}, predictions {pa.shape} {pb.shape} {pj.shape}: give equal "
            "(n_test, n_targets) shapes"
        )
    _check_level(level)
    counts = bootstrap_counts(y.shape[0], n_boot, seed)
    point = _parts(np.ones((1, y.shape[0])), y, pa, pb, pj)
    return _intervals(point, _parts(counts, y, pa, pb, pj), level, groups, basic=False)


@dataclass(frozen=True)
class FixedPenaltyModel:
    """A fitted ridge model to refit at its penalties (:func:`partition_refit_bootstrap`).

    Attributes
    ----------
    train_blocks, test_blocks : sequence of numpy.ndarray
        Its feature spaces (bands), training rows ``(n_train, p_b)`` and test rows.
    alphas : numpy.ndarray
        ``(n_bands, n_targets)``: the penalty each target chose (e.g. by cross-validation).
    """

    train_blocks: Sequence[np.ndarray]
    test_blocks: Sequence[np.ndarray]
    alphas: np.ndarray


def partition_refit_bootstrap(
    y_train: ArrayLike,
    y_test: ArrayLike,
    model_a: FixedPenaltyModel,
    model_b: FixedPenaltyModel,
    model_joint: FixedPenaltyModel,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    groups: Mapping[str, ArrayLike] | None = None,
    train_units: Sequence[str] | None = None,
) -> dict:
    """Bootstrap intervals of unique and shared variance over training *and* test stimuli.

    Each resample draws the training stimuli with replacement (all rows of a drawn
    ``train_units`` id together), refits the three models at their penalties
    (:func:`nipype_brainrecon.ridge.banded.fit_banded_ridge`) and scores them on a resample of
    the test stimuli (the counts of :func:`partition_bootstrap` with the same ``seed``). The
    interval is the basic (reverse-percentile) one, ``2 * estimate - quantiles``: a finite
    training set lowers every test R² (more for more columns), so unique and shared variance
    are biased, and the resamples' shortfall estimates that bias and moves the interval back.
    The point estimate is the three models fitted on all training rows at these penalties.
    The penalties stay fixed: the variability of their choice is not in the interval.

    Parameters
    ----------
    y_train, y_test : array-like, ``(n_train, n_targets)`` and ``(n_test, n_targets)``
    model_a, model_b, model_joint : FixedPenaltyModel
        The model of space ``a``, of ``b`` and the joint one (one band of both spaces' columns,
        or two bands).
    n_boot, level, seed, groups
        As in :func:`partition_bootstrap`.
    train_units : sequence of str, optional
        The stimulus of each training row (repeats are resampled together); default every row
        its own.

    Returns
    -------
    dict
        As :func:`partition_bootstrap`.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> xa, xb = rng.normal(size=(90, 2)), rng.normal(size=(90, 3))
    >>> y = xa @ [[1.0], [0.5]] + xb @ [[0.4], [0.0], [0.2]] + rng.normal(size=(90, 1))
    >>> tr, te = slice(0, 60), slice(60, None)
    >>> a = FixedPenaltyModel([xa[tr]], [xa[te]], np.ones((1, 1)))
    >>> b = FixedPenaltyModel([xb[tr]], [xb[te]], np.ones((1, 1)))
    >>> ab = FixedPenaltyModel([xa[tr], xb[tr]], [xa[te], xb[te]], np.ones((2, 1)))
    >>> out = partition_refit_bootstrap(y[tr], y[te], a, b, ab, n_boot=200)
    >>> bool(out["unique_a"]["low"][0] < out["unique_a"]["high"][0])
    True
    """
    from ..ridge.banded import fit_banded_ridge

    yt, ye = (np.asarray(v, dtype=np.float64) for v in (y_train, y_test))
    models = (model_a, model_b, model_joint)
    _check_refit_inputs(yt, ye, models, train_units)
    _check_level(level)

    def predictions(rows: np.ndarray) -> list[np.ndarray]:
        out = []
        for m in models:
            blocks = [np.asarray(b)[rows] for b in m.train_blocks]
            out.append(fit_banded_ridge(blocks, yt[rows], m.alphas).predict(m.test_blocks))
        return out

    point = _parts(np.ones((1, ye.shape[0])), ye, *predictions(np.arange(yt.shape[0])))
    counts = bootstrap_counts(ye.shape[0], n_boot, seed)
    units = _unit_rows(train_units)
    n_units = yt.shape[0] if units is None else len(units)
    rng = np.random.default_rng([seed, 1])
    boot = {key: np.empty((int(n_boot), ye.shape[1])) for key in point}
    for b in range(int(n_boot)):
        drawn = rng.integers(0, n_units, n_units)
        rows = drawn if units is None else np.concatenate([units[d] for d in drawn])
        for key, value in _parts(counts[b : b + 1], ye, *predictions(rows)).items():
            boot[key][b] = value[0]
        if n_boot >= 100 and (b + 1) % (int(n_boot) // 10) == 0:
            LOGGER.info("refit bootstrap: %d of %d resamples", b + 1, n_boot)
    return _intervals(point, boot, level, groups, basic=True)


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise UsageError(f"level={level}: give a number in (0, 1)")


def _check_refit_inputs(yt, ye, models, train_units) -> None:
    if yt.ndim != 2 or ye.ndim != 2 or yt.shape[1] != ye.shape[1]:
        raise DataError(f"y_train {yt.shape}, y_test {ye.shape}: give (rows, targets) arrays")
    for m in models:
        if any(np.shape(b)[0] != yt.shape[0] for b in m.train_blocks) or any(
            np.shape(b)[0] != ye.shape[0] for b in m.test_blocks
        ):
            raise DataError("a model's blocks do not have the rows of y_train / y_test")
    if train_units is not None and len(train_units) != yt.shape[0]:
        raise DataError(f"train_units: {len(train_units)} ids for {yt.shape[0]} training rows")


def _unit_rows(train_units: Sequence[str] | None) -> list[np.ndarray] | None:
    """Row indices of each resampled unit (``None``: each row alone)."""
    if train_units is None:
        return None
    ids = np.asarray(train_units, dtype=str)
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    # units in order of first appearance: one row per unit draws as the default does
    return [np.flatnonzero(inverse.reshape(-1) == u) for u in np.argsort(first)]


def _parts(counts: np.ndarray, y: np.ndarray, pa, pb, pj) -> dict[str, np.ndarray]:
    """Unique and shared variance in every resample of the test rows, ``(n_boot, n_targets)``."""
    a, b, j = (_boot_r2(counts, y, p) for p in (pa, pb, pj))
    return {"unique_a": j - b, "unique_b": j - a, "shared": a + b - j}


def _intervals(point, boot, level: float, groups, *, basic: bool) -> dict:
    """Percentile (or basic, ``2 * estimate - quantiles``) intervals per target and group."""
    tails = 100 * np.array([(1 - level) / 2, (1 + level) / 2])

    def bounds(estimate, draws):
        low, high = np.nanpercentile(draws, tails, axis=0)
        return (2 * estimate - high, 2 * estimate - low) if basic else (low, high)

    out: dict = {}
    for key in point:
        low, high = bounds(point[key][0], boot[key])
        out[key] = {"estimate": point[key][0], "low": low, "high": high}
    if groups:
        out["groups"] = {}
        for name, sel in groups.items():
            out["groups"][name] = {}
            for key in point:
                estimate = float(np.nanmean(point[key][0, sel]))
                low, high = bounds(estimate, np.nanmean(boot[key][:, sel], axis=1))
                out["groups"][name][key] = (estimate, float(low), float(high))
    return out


def fit_joint_banded(
    train_a: ArrayLike,
    train_b: ArrayLike,
    y_train: ArrayLike,
    test_a: ArrayLike,
    test_b: ArrayLike,
    *,
    alphas: str | ArrayLike,
    n_folds: int,
):
    """The joint model of two spaces with one cross-validated alpha per space.

    The alpha grid of the single-space models is tried for each space (Cartesian product,
    per target). Returns ``(predicted test responses (n_test, n_targets) float64,
    the fit: nipype_brainrecon.ridge.banded.BandedRidgeFit)``.
    """
    from ..ridge.banded import banded_alpha_grid, fit_banded_ridge_cv
    from ..ridge.cv import resolve_alphas

    grid = banded_alpha_grid(resolve_alphas(alphas), 2)
    fit = fit_banded_ridge_cv([train_a, train_b], y_train, alpha_grid=grid, n_folds=n_folds)
    return fit.predict([test_a, test_b]), fit
