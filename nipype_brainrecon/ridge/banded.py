"""Banded ridge: one penalty per feature space, chosen per target by K-fold CV.

The joint model of several feature spaces (bands, e.g. the image latent ``z`` and the text
embedding ``c``) minimises ``||Y - sum_b X_b W_b||^2 + sum_b alpha_b ||W_b||^2``. Scaling band
``b`` by ``1 / sqrt(alpha_b)`` makes it an ordinary ridge with alpha 1, solved here in kernel form:
for a combination ``(alpha_1, ..., alpha_B)`` the kernel is ``sum_b K_b / alpha_b``. Writing
``1 / alpha_b = gamma_b / s`` with ``sum_b gamma_b = 1``, every combination with the same band
weights ``gamma`` shares one eigendecomposition of ``sum_b gamma_b K_b`` per fold and differs
only by the ridge ``s`` (so a Cartesian grid of per-band alphas costs one eigendecomposition per
alpha *ratio*, not per combination).

This is himalaya's ``BandedRidgeCV`` (``GroupRidgeCV``) with a fixed grid: its log band scalings
are ``deltas_b = -log(alpha_b)`` (features ``Z_b = exp(deltas_b / 2) X_b``, ridge 1), and the
choice rule (the first combination whose fold-mean score beats the best so far by more than the
float64 epsilon, score the negative MSE) is its ``solve_group_ridge_random_search`` rule.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
from numpy.typing import ArrayLike

from ..config import DEFAULTS
from ..errors import DataError, UsageError
from .cv import DEFAULT_ALPHAS, kfold_slices, resolve_alphas


@dataclass
class BandedRidgeFit:
    """A fitted banded ridge model (features standardised with the training statistics).

    Attributes
    ----------
    coef : list of numpy.ndarray
        Per band, ``(n_features_b, n_targets)`` weights on the standardised features.
    intercept : numpy.ndarray
        ``(n_targets,)`` (zeros when ``fit_intercept=False``).
    mean, scale : list of numpy.ndarray
        Per band, the training mean and standard deviation of each feature (constant features
        get scale ``inf``, i.e. weight 0).
    alphas : numpy.ndarray
        ``(n_bands, n_targets)``, the chosen alpha of each band for each target.
    alpha_grid : numpy.ndarray
        ``(n_combinations, n_bands)``, the combinations tried.
    cv_scores : numpy.ndarray
        ``(n_combinations, n_targets)``, negative MSE averaged over folds.
    best : numpy.ndarray
        ``(n_targets,)``, the index in ``alpha_grid`` of each target's choice.
    scores : dict
        Held-out scores when test data were given to :func:`fit_banded_ridge_cv`: ``r2_joint``
        ``(n_targets,)``, ``r2_alone`` and ``unique`` ``(n_bands, n_targets)``, the predictions
        ``predicted_joint`` ``(n_test, n_targets)`` and ``predicted_alone`` ``(n_bands, n_test,
        n_targets)`` (for bootstrap intervals); empty otherwise.
    """

    coef: list[np.ndarray]
    intercept: np.ndarray
    mean: list[np.ndarray]
    scale: list[np.ndarray]
    alphas: np.ndarray
    alpha_grid: np.ndarray
    cv_scores: np.ndarray
    best: np.ndarray
    scores: dict[str, np.ndarray] = field(default_factory=dict)

    def predict(self, X_blocks: Sequence[ArrayLike], *, split: bool = False) -> np.ndarray:
        """Predicted targets ``(n, n_targets)``, or per band ``(n_bands, n, n_targets)``."""
        xs = _check_blocks(X_blocks, len(self.coef))
        parts = np.stack(
            [
                _standardise(x, m, s) @ w
                for x, m, s, w in zip(xs, self.mean, self.scale, self.coef, strict=True)
            ]
        )
        return parts if split else parts.sum(0) + self.intercept


def banded_alpha_grid(alphas_per_band: Sequence[ArrayLike] | ArrayLike, n_bands: int) -> np.ndarray:
    """The Cartesian product of per-band alpha grids, ``(n_combinations, n_bands)``.

    Examples
    --------
    >>> banded_alpha_grid([[1.0, 10.0], [5.0]], 2).tolist()
    [[1.0, 5.0], [10.0, 5.0]]
    >>> banded_alpha_grid([1.0, 10.0], 2).shape
    (4, 2)
    """
    arr = np.asarray(alphas_per_band, dtype=object)
    if arr.ndim == 1 and all(np.ndim(a) == 0 for a in arr):
        grids = [resolve_alphas(np.asarray(alphas_per_band, dtype=float))] * n_bands
    else:
        grids = [resolve_alphas(a) for a in alphas_per_band]
    if len(grids) != n_bands:
        raise UsageError(f"alphas_per_band: {len(grids)} grids for {n_bands} bands; give one each")
    return np.array(list(itertools.product(*grids)), dtype=np.float64)


def fit_banded_ridge_cv(
    X_blocks: Sequence[ArrayLike],
    Y: ArrayLike,
    *,
    alphas_per_band: Sequence[ArrayLike] | ArrayLike = DEFAULT_ALPHAS,
    alpha_grid: ArrayLike | None = None,
    n_folds: int = DEFAULTS.decoding.n_folds,
    fit_intercept: bool = True,
    test_blocks: Sequence[ArrayLike] | None = None,
    Y_test: ArrayLike | None = None,
) -> BandedRidgeFit:
    """Fit a banded ridge regression with one cross-validated alpha per band and target.

    Features are standardised per column with the training mean and standard deviation (ddof
    0); folds are contiguous (``KFold`` without shuffling); each target keeps the combination
    with the best fold-mean negative MSE (himalaya's rule) and is refitted on all samples.

    Parameters
    ----------
    X_blocks : sequence of array-like, each ``(n_samples, n_features_b)``
        The feature spaces (bands).
    Y : array-like, ``(n_samples, n_targets)``
        Targets (e.g. voxel responses).
    alphas_per_band : array-like or sequence of array-like
        One grid for every band, or a grid per band; their Cartesian product is tried.
    alpha_grid : array-like ``(n_combinations, n_bands)``, optional
        The combinations to try instead (e.g. ``[(a, a) for a in grid]`` is one shared alpha).
    n_folds : int
        Number of cross-validation folds.
    fit_intercept : bool
        Centre features and targets with each fit's training means and learn an intercept.
    test_blocks, Y_test : optional
        Held-out data: the joint model and each band alone (its own grid, same rule) are scored
        by R² per target, and (two bands) ``unique[b] = r2_joint - r2_alone[other band]``
        (NaN for more bands).

    Returns
    -------
    BandedRidgeFit
    """
    xs = _check_blocks(X_blocks, None)
    y = np.asarray(Y, dtype=np.float64)
    if y.ndim != 2 or y.shape[0] != xs[0].shape[0]:
        raise DataError(f"Y has shape {y.shape}: give ({xs[0].shape[0]}, n_targets)")
    if not np.all(np.isfinite(y)):
        raise DataError("Y has non-finite values: remove or impute them before fitting")
    combos = (
        banded_alpha_grid(alphas_per_band, len(xs))
        if alpha_grid is None
        else np.asarray(alpha_grid, dtype=np.float64).reshape(-1, len(xs))
    )
    if combos.size == 0 or not np.all(np.isfinite(combos) & (combos > 0)):
        raise UsageError("alpha_grid: give positive, finite alphas, one column per band")
    n = y.shape[0]
    folds = kfold_slices(n, n_folds)
    mean = [x.mean(0) for x in xs]
    scale = [_safe_scale(x.std(0)) for x in xs]
    grams = [_gram(_standardise(x, m, s)) for x, m, s in zip(xs, mean, scale, strict=True)]

    scores = np.zeros((len(combos), y.shape[1]))
    for fold in folds:
        scores += _fold_scores(grams, y, fold, combos, fit_intercept) / len(folds)
    best = _choose(scores)
    coef, intercept = _refit(xs, mean, scale, grams, y, combos, best, fit_intercept)
    fit = BandedRidgeFit(coef, intercept, mean, scale, combos[best].T.copy(), combos, scores, best)
    if test_blocks is not None and Y_test is not None:
        fit.scores = _held_out(fit, xs, y, combos, n_folds, fit_intercept, test_blocks, Y_test)
    return fit


def fit_banded_ridge(
    X_blocks: Sequence[ArrayLike],
    Y: ArrayLike,
    alphas: ArrayLike,
    *,
    fit_intercept: bool = True,
) -> BandedRidgeFit:
    """Fit a banded ridge regression with given alphas (one per band and target), no CV.

    The refit of :func:`fit_banded_ridge_cv` at fixed penalties, e.g. to refit the chosen alphas
    on resampled training sets (:func:`nipype_brainrecon.encoding.partition.
    partition_refit_bootstrap`). Solved in feature space when the bands have fewer columns in all
    than there are samples (equal to the kernel form to rounding), in kernel form otherwise.

    Parameters
    ----------
    X_blocks : sequence of array-like, each ``(n_samples, n_features_b)``
    Y : array-like, ``(n_samples, n_targets)``
    alphas : array-like, ``(n_bands, n_targets)`` or ``(n_bands,)``
        Penalty of each band, per target or for all targets.
    fit_intercept : bool
        As in :func:`fit_banded_ridge_cv`.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.normal(size=(30, 3)), rng.normal(size=(30, 2))
    >>> cv = fit_banded_ridge_cv([x], y, alpha_grid=[[0.1], [10.0]])
    >>> fixed = fit_banded_ridge([x], y, cv.alphas)
    >>> bool(np.allclose(fixed.predict([x]), cv.predict([x]), atol=1e-12))
    True
    """
    xs = _check_blocks(X_blocks, None)
    y = np.asarray(Y, dtype=np.float64)
    if y.ndim != 2 or y.shape[0] != xs[0].shape[0]:
        raise DataError(f"Y has shape {y.shape}: give ({xs[0].shape[0]}, n_targets)")
    a = np.asarray(alphas, dtype=np.float64)
    a = np.repeat(a[:, None], y.shape[1], axis=1) if a.ndim == 1 else a
    if a.shape != (len(xs), y.shape[1]) or not np.all(np.isfinite(a) & (a > 0)):
        raise UsageError(f"alphas: give positive alphas of shape ({len(xs)}, {y.shape[1]})")
    combos, best = np.unique(a.T, axis=0, return_inverse=True)
    best = best.reshape(-1)
    mean = [x.mean(0) for x in xs]
    scale = [_safe_scale(x.std(0)) for x in xs]
    if sum(x.shape[1] for x in xs) < y.shape[0]:
        coef, intercept = _refit_primal(xs, mean, scale, y, combos, best, fit_intercept)
    else:
        grams = [_gram(_standardise(x, m, s)) for x, m, s in zip(xs, mean, scale, strict=True)]
        coef, intercept = _refit(xs, mean, scale, grams, y, combos, best, fit_intercept)
    empty = np.zeros((0, y.shape[1]))
    return BandedRidgeFit(coef, intercept, mean, scale, a.copy(), combos, empty, best)


def _refit_primal(xs, mean, scale, y, combos, best, center: bool):
    """:func:`_refit` in feature space: ``(Z^T Z + diag(alphas)) W = Z^T y`` per combination."""
    zs = [_standardise(x, m, s) for x, m, s in zip(xs, mean, scale, strict=True)]
    if center:
        zs = [z - z.mean(0) for z in zs]
    mu = y.mean(0) if center else np.zeros(y.shape[1])
    z = np.hstack(zs)
    gram, cross = z.T @ z, z.T @ (y - mu)
    sizes = [b.shape[1] for b in zs]
    w = np.zeros((z.shape[1], y.shape[1]))
    for ci in np.unique(best):
        targets = np.flatnonzero(best == ci)
        ridge = np.repeat(combos[ci], sizes)
        w[:, targets] = scipy.linalg.solve(gram + np.diag(ridge), cross[:, targets], assume_a="pos")
    return np.split(w, np.cumsum(sizes)[:-1]), mu


def _check_blocks(blocks: Sequence[ArrayLike], n_bands: int | None) -> list[np.ndarray]:
    xs = [np.asarray(b, dtype=np.float64) for b in blocks]
    if not xs or any(x.ndim != 2 for x in xs) or len({x.shape[0] for x in xs}) > 1:
        raise DataError(
            f"X_blocks: shapes {[x.shape for x in xs]}; give 2-D blocks with the same rows"
        )
    if n_bands is not None and len(xs) != n_bands:
        raise DataError(f"X_blocks: {len(xs)} blocks for a model of {n_bands} bands")
    return xs


def _safe_scale(sd: np.ndarray) -> np.ndarray:
    return np.where(sd > 1e-12, sd, np.inf)


def _standardise(x: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return (np.asarray(x, dtype=np.float64) - mean) / scale


def _gram(x: np.ndarray) -> np.ndarray:
    return x @ x.T


def _centred(g: np.ndarray, train: np.ndarray, center: bool) -> np.ndarray:
    """Gram of features centred with the training rows' mean (all rows x training rows)."""
    sub = g[:, train]
    if not center:
        return sub
    r = sub.mean(1)
    return sub - r[:, None] - r[train][None, :] + r[train].mean()


def _band_weights(combos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique normalised band weights ``gamma``, each combination's group and ridge ``s``."""
    inv = 1.0 / combos
    s = 1.0 / inv.sum(1)
    gammas = inv * s[:, None]
    uniq, group = np.unique(np.round(np.log(gammas), 10), axis=0, return_inverse=True)
    return np.exp(uniq), group.reshape(-1), s


def _fold_scores(grams, y, fold: slice, combos, center: bool) -> np.ndarray:
    n = y.shape[0]
    test = np.arange(fold.start, fold.stop)
    train = np.setdiff1d(np.arange(n), test)
    ks = [_centred(g, train, center) for g in grams]
    ytr, yte = y[train], y[test]
    if center:
        mu = ytr.mean(0)
        ytr, yte = ytr - mu, yte - mu
    gammas, group, s = _band_weights(combos)
    out = np.empty((len(combos), y.shape[1]))
    for gi, gamma in enumerate(gammas):
        k = sum(w * kb for w, kb in zip(gamma, ks, strict=True))
        evals, evecs = np.linalg.eigh(k[train])
        evals = np.clip(evals, 0.0, None)
        left = k[test] @ evecs
        right = evecs.T @ ytr
        for ci in np.flatnonzero(group == gi):
            pred = left @ (right / (evals + s[ci])[:, None])
            out[ci] = -((yte - pred) ** 2).mean(0)
    return out


def _choose(scores: np.ndarray) -> np.ndarray:
    """himalaya's rule: a later combination wins only by more than the float64 epsilon."""
    eps = np.finfo(np.float64).eps
    best = np.zeros(scores.shape[1], dtype=np.intp)
    top = scores[0].copy()
    for i in range(1, scores.shape[0]):
        better = scores[i] > top + eps
        best[better] = i
        top[better] = scores[i][better]
    return best


def _refit(xs, mean, scale, grams, y, combos, best, center: bool):
    rows = np.arange(y.shape[0])
    ks = [_centred(g, rows, center) for g in grams]
    mu = y.mean(0) if center else np.zeros(y.shape[1])
    yc = y - mu
    zs = [_standardise(x, m, s) for x, m, s in zip(xs, mean, scale, strict=True)]
    if center:
        zs = [z - z.mean(0) for z in zs]
    coef = [np.zeros((z.shape[1], y.shape[1])) for z in zs]
    for ci in np.unique(best):
        # K + I >= I is positive definite: a Cholesky solve per chosen combination costs
        # n^3 / 3, less than an eigendecomposition, and is exact to rounding.
        targets = np.flatnonzero(best == ci)
        k = sum(kb / a for kb, a in zip(ks, combos[ci], strict=True))
        k[np.diag_indices_from(k)] += 1.0
        dual = scipy.linalg.solve(k, yc[:, targets], assume_a="pos")
        for b, (z, a) in enumerate(zip(zs, combos[ci], strict=True)):
            coef[b][:, targets] = z.T @ dual / a
    # Centred features have mean zero, so the intercept is the target mean minus the
    # standardised-feature means (zero on the training set) times the weights.
    return coef, mu


def _held_out(fit, xs, y, combos, n_folds, center, test_blocks, Y_test) -> dict[str, np.ndarray]:
    tests = _check_blocks(test_blocks, len(xs))
    yt = np.asarray(Y_test, dtype=np.float64)
    if yt.ndim != 2 or yt.shape != (tests[0].shape[0], y.shape[1]):
        raise DataError(f"Y_test has shape {yt.shape}: give ({tests[0].shape[0]}, {y.shape[1]})")
    pred_joint = fit.predict(tests)
    alone = []
    for b in range(len(xs)):
        grid = np.unique(combos[:, b])[:, None]
        one = fit_banded_ridge_cv(
            [xs[b]], y, alpha_grid=grid, n_folds=n_folds, fit_intercept=center
        )
        alone.append(one.predict([tests[b]]))
    pred_alone = np.stack(alone)
    r2_joint = _r2(yt, pred_joint)
    r2_alone = np.stack([_r2(yt, p) for p in pred_alone])
    if len(xs) == 2:
        unique = np.stack([r2_joint - r2_alone[1], r2_joint - r2_alone[0]])
    else:
        unique = np.full_like(r2_alone, np.nan)
    return {
        "r2_joint": r2_joint,
        "r2_alone": r2_alone,
        "unique": unique,
        "predicted_joint": pred_joint,
        "predicted_alone": pred_alone,
    }


def _r2(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    sst = ((y - y.mean(0)) ** 2).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1.0 - ((y - pred) ** 2).sum(0) / sst
