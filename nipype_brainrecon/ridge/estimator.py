"""A scikit-learn regressor over the ridge solver (:class:`RidgeDecoderCV`), for pipelines,
``cross_val_score``, ``GridSearchCV`` and any cross-validation splitter.

``cv`` is a number of contiguous folds (``KFold`` without shuffling, the paper's setting) or any
scikit-learn splitter or iterable of ``(train, test)`` pairs; ``fit(X, y, groups=runs)`` passes
the groups to the splitter (``GroupKFold``, ``LeaveOneGroupOut``). Splits that partition the
samples (each sample in one test fold, each fold training on all the others) run through
:func:`~.fit.fit_ridge_cv` in one pass (its ``folds`` argument); other splits (``ShuffleSplit``,
``TimeSeriesSplit``, repeated folds) are scored here, split by split, with the same rule
(negative held-out MSE of the voxels standardised on all training samples, averaged over
splits, himalaya's choice), then each target is refitted by the solver with its chosen alpha.
"""

from __future__ import annotations

import dataclasses
import numbers
import warnings
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.model_selection import check_cv
from sklearn.utils.validation import check_is_fitted

try:
    from sklearn.utils.validation import validate_data
except ImportError:  # scikit-learn < 1.6

    def validate_data(estimator: Any, *args: Any, **kwargs: Any) -> Any:
        return estimator._validate_data(*args, **kwargs)


from ..config import DEFAULTS
from .cv import partition_folds, resolve_alphas, select_alphas
from .decoder import RidgeDecoder
from .fit import fit_ridge_cv
from .options import SolverOptions


class RidgeDecoderCV(RegressorMixin, BaseEstimator):
    """Ridge regression with one cross-validated alpha per target, as a scikit-learn regressor.

    The model of :func:`~.fit.fit_ridge_cv`: voxels standardised with the training statistics,
    one alpha per target chosen from ``alphas`` by cross-validation (himalaya's ``RidgeCV``
    rule), refit on all samples.

    Parameters
    ----------
    alphas : {"default", "paper"} or array-like
        Penalty grid (:func:`~.cv.resolve_alphas`).
    cv : int, splitter or iterable of (train, test)
        An integer is that many contiguous folds (``KFold`` without shuffling); otherwise any
        scikit-learn splitter (``GroupKFold``, ``LeaveOneGroupOut`` ... take ``groups`` from
        :meth:`fit`) or a list of index pairs.
    fit_intercept : bool
        Centre voxels and targets in every fit and learn an intercept.
    backend : {"auto", "numpy", "torch"}
        Array library of the solver.
    solver_options : SolverOptions, optional
        The solver's code paths (:class:`~.options.SolverOptions`).

    Attributes
    ----------
    decoder_ : RidgeDecoder
        The fitted decoder (standardisation, weights on standardised voxels, CV record).
    alphas_ : numpy.ndarray, shape ``(n_targets,)``
        Chosen alpha per target.
    cv_scores_ : numpy.ndarray, shape ``(n_targets,)``
        Negative held-out MSE at the chosen alpha, averaged over folds.
    coef_ : numpy.ndarray, shape ``(n_features,)`` or ``(n_targets, n_features)``
        Weights on the raw features (``predict(X) == X @ coef_.T + intercept_``; zero for
        features dropped as constant or non-finite).
    intercept_ : float or numpy.ndarray, shape ``(n_targets,)``
    n_features_in_ : int

    Notes
    -----
    The compute dtype follows ``X``: float32 stays float32, anything else is float64.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((60, 8))
    >>> y = X @ rng.standard_normal(8) + 0.1 * rng.standard_normal(60)
    >>> model = RidgeDecoderCV(alphas=[0.1, 1.0, 10.0]).fit(X, y)
    >>> model.predict(X[:3]).shape, model.score(X, y) > 0.99
    ((3,), True)
    """

    def __init__(
        self,
        alphas: str | ArrayLike = DEFAULTS.decoding.alphas,
        cv: Any = DEFAULTS.decoding.n_folds,
        fit_intercept: bool = True,
        backend: str = DEFAULTS.decoding.backend,
        solver_options: SolverOptions | None = None,
    ) -> None:
        self.alphas = alphas
        self.cv = cv
        self.fit_intercept = fit_intercept
        self.backend = backend
        self.solver_options = solver_options

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _more_tags(self) -> dict[str, Any]:  # scikit-learn < 1.6
        return {"multioutput": True}

    def fit(self, X: ArrayLike, y: ArrayLike, groups: ArrayLike | None = None) -> RidgeDecoderCV:
        """Fit on ``X`` (n_samples, n_features) and ``y`` (n_samples,) or (n_samples, n_targets);
        ``groups`` (e.g. the run of each trial) go to the splitter."""
        X, y = validate_data(
            self,
            X,
            y,
            multi_output=True,
            y_numeric=True,
            dtype=[np.float64, np.float32],
            ensure_min_samples=2,
        )
        dt = np.dtype(np.float32 if X.dtype == np.float32 else np.float64)
        if not np.issubdtype(y.dtype, np.floating):
            y = y.astype(dt)  # float targets go to the solver as given
        grid = resolve_alphas(self.alphas)
        settings = {
            "fit_intercept": bool(self.fit_intercept),
            "backend": self.backend,
            "dtype": dt,
            "solver_options": self.solver_options,
        }
        if isinstance(self.cv, numbers.Integral) and not isinstance(self.cv, bool):
            decoder = fit_ridge_cv(X, y, alphas=grid, n_folds=int(self.cv), **settings)
        else:
            splits = list(check_cv(self.cv, y, classifier=False).split(X, y, groups))
            if partition_folds(splits, X.shape[0]) is not None:
                decoder = fit_ridge_cv(X, y, alphas=grid, folds=splits, **settings)
            else:
                decoder = _fit_any_splits(X, y, splits, grid, settings)
        self._set_fitted(decoder)
        return self

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predictions, shape ``(n_samples,)`` or ``(n_samples, n_targets)`` as ``y`` was."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return self.decoder_.predict(X)

    def _set_fitted(self, decoder: RidgeDecoder) -> None:
        self.decoder_ = decoder
        self.alphas_ = np.asarray(decoder.alphas, np.float64)
        self.cv_scores_ = np.asarray(decoder.cv_scores, np.float64)
        # Weights on the raw features: standardisation folded in, dropped features at zero.
        raw = decoder.coef / decoder.scale[:, None].astype(decoder.coef.dtype)
        coef = np.zeros((decoder.n_voxels, decoder.n_targets), decoder.coef.dtype)
        coef[decoder.voxel_mask] = raw
        shift = (decoder.mean / decoder.scale) @ np.asarray(decoder.coef, np.float64)
        intercept = (decoder.intercept - shift).astype(decoder.coef.dtype)
        if decoder.target_shape == ():
            self.coef_, self.intercept_ = coef[:, 0], float(intercept[0])
        else:
            self.coef_, self.intercept_ = coef.T, intercept


def _fit_any_splits(
    X: np.ndarray,
    y: np.ndarray,
    splits: list[tuple[np.ndarray, np.ndarray]],
    grid: np.ndarray,
    settings: dict[str, Any],
) -> RidgeDecoder:
    """Splits that do not partition the samples: scored split by split here (float64, voxels
    standardised on all samples as the solver does), alphas chosen by himalaya's rule, then
    each group of targets sharing an alpha refitted by the solver with that alpha alone."""
    Y2 = y.reshape(y.shape[0], -1)
    # The solver's standardisation statistics and voxel mask (one target, one alpha: cheap).
    first = fit_ridge_cv(X, Y2[:, :1], alphas=grid[:1], n_folds=2, **settings)
    Xs = (X[:, first.voxel_mask] - first.mean) / first.scale
    scores = np.stack([_split_scores(Xs, Y2, tr, te, grid, settings) for tr, te in splits])
    dt = settings["dtype"]
    best, cv_scores, mean_scores = select_alphas(scores.astype(dt), grid, dt)
    coef = np.empty((first.n_voxels_used, Y2.shape[1]), dt)
    intercept = np.empty(Y2.shape[1], dt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # dropped voxels: warned once above
        for k in np.unique(best):
            cols = np.flatnonzero(best == k)
            part = fit_ridge_cv(X, Y2[:, cols], alphas=grid[k : k + 1], n_folds=2, **settings)
            coef[:, cols], intercept[cols] = part.coef, part.intercept
    return dataclasses.replace(
        first,
        coef=coef,
        intercept=intercept,
        alphas=grid[best],
        alpha_grid=grid,
        cv_scores=cv_scores,
        target_shape=tuple(y.shape[1:]),
        n_folds=len(splits),
        cv_mean_scores=mean_scores,
        fit_info={**first.fit_info, "splits": "scored one by one (not a partition)"},
    )


def _split_scores(
    Xs: np.ndarray,
    Y: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    grid: np.ndarray,
    settings: dict[str, Any],
) -> np.ndarray:
    """Negative held-out MSE of every alpha and target for one split, shape ``(a, t)``."""
    Xtr, Ytr, Xte = Xs[train], np.asarray(Y[train], np.float64), Xs[test]
    offset = np.zeros(Y.shape[1])
    if settings["fit_intercept"]:
        x_mean, offset = Xtr.mean(0), Ytr.mean(0)
        Xtr, Ytr, Xte = Xtr - x_mean, Ytr - offset, Xte - x_mean
    U, s, Vt = np.linalg.svd(Xtr, full_matrices=False)
    uty = U.T @ Ytr
    proj = Xte @ Vt.T
    err = np.empty((grid.size, Y.shape[1]))
    for i, alpha in enumerate(grid):
        pred = proj @ ((s / (s * s + alpha))[:, None] * uty) + offset
        err[i] = -np.mean((Y[test] - pred) ** 2, axis=0)
    return err
