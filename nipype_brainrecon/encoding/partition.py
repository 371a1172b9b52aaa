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
the variability of the fit itself.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike

from ..errors import DataError, UsageError

__all__ = ["bootstrap_counts", "fit_joint_banded", "partition_bootstrap"]


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
    if not 0 < level < 1:
        raise UsageError(f"level={level}: give a number in (0, 1)")
    ones = np.ones((1, y.shape[0]))
    counts = bootstrap_counts(y.shape[0], n_boot, seed)
    tails = 100 * np.array([(1 - level) / 2, (1 + level) / 2])

    def parts(c: np.ndarray) -> dict[str, np.ndarray]:
        a, b, j = (_boot_r2(c, y, p) for p in (pa, pb, pj))
        return {"unique_a": j - b, "unique_b": j - a, "shared": a + b - j}

    point, boot = parts(ones), parts(counts)
    out: dict = {}
    for key in point:
        low, high = np.nanpercentile(boot[key], tails, axis=0)
        out[key] = {"estimate": point[key][0], "low": low, "high": high}
    if groups:
        out["groups"] = {}
        for name, sel in groups.items():
            out["groups"][name] = {
                key: (
                    float(np.nanmean(point[key][0, sel])),
                    *np.nanpercentile(np.nanmean(boot[key][:, sel], axis=1), tails),
                )
                for key in point
            }
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
