"""Fitting and scoring voxel-wise encoding models, and variance partitioning.

Ridge regressions predicting each voxel's single-trial response from a feature space of the seen
stimulus (:func:`fit_encoding_model`, the decoders' solver with the roles swapped), scored on the
held-out test stimuli by the Pearson r and R² per voxel (:func:`prediction_scores`) against a
permutation chance level (:func:`chance_correlation`). :func:`run_encoding` does it for every
feature space and every joint pair (:func:`joint_features`, :func:`variance_partitioning`;
with ``banded=True`` one penalty per space, and ``n_bootstrap`` intervals: :mod:`.partition`).
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from ..config import DEFAULTS
from ..errors import DataError, UsageError
from .partition import (
    FixedPenaltyModel,
    fit_joint_banded,
    partition_bootstrap,
    partition_refit_bootstrap,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..ridge import RidgeDecoder

LOGGER = logging.getLogger(__name__)

#: The reconstruction defaults (the paper's values).
R = DEFAULTS.reconstruction


def _joint_name(spaces: Sequence[str]) -> str:
    return "+".join(spaces)


def _as_matrix(features: ArrayLike, what: str) -> np.ndarray:
    x = np.asarray(features, dtype=np.float32)
    if x.ndim < 2 or x.shape[0] == 0:
        raise DataError(f"{what}: shape {x.shape}; give (n_stimuli, ...) features")
    return x.reshape(x.shape[0], -1)


def joint_features(blocks: Sequence[ArrayLike], *, balance: bool = True) -> np.ndarray:
    """Concatenate feature spaces column-wise for a joint model.

    Parameters
    ----------
    blocks : sequence of array-like, each ``(n_samples, ...)``
        The feature spaces, same rows.
    balance : bool
        Repeat each block's columns ``round(p_max / p_block)`` times so every block weighs
        about the same after per-column standardisation (see the module docstring).

    Returns
    -------
    numpy.ndarray
        float32, ``(n_samples, total_columns)``.

    Examples
    --------
    >>> joint_features([np.ones((2, 1)), np.zeros((2, 3))]).shape
    (2, 6)
    >>> joint_features([np.ones((2, 1)), np.zeros((2, 3))], balance=False).shape
    (2, 4)
    """
    mats = [_as_matrix(b, f"block {i}") for i, b in enumerate(blocks)]
    if not mats:
        raise UsageError("blocks: give at least one feature space")
    if len({m.shape[0] for m in mats}) > 1:
        raise DataError(f"blocks: row counts differ ({[m.shape[0] for m in mats]})")
    p_max = max(m.shape[1] for m in mats)
    parts = []
    for m in mats:
        repeat = max(1, round(p_max / m.shape[1])) if balance else 1
        parts.append(np.tile(m, (1, repeat)) if repeat > 1 else m)
    return np.ascontiguousarray(np.concatenate(parts, axis=1))


def fit_encoding_model(
    train_features: ArrayLike,
    train_voxels: ArrayLike,
    *,
    alphas: str | ArrayLike = DEFAULTS.decoding.alphas,
    n_folds: int = DEFAULTS.decoding.n_folds,
    backend: str = DEFAULTS.decoding.backend,
    metadata: Mapping[str, Any] | None = None,
) -> RidgeDecoder:
    """Fit a voxel-wise encoding model: features -> voxels, penalty chosen per voxel by CV.

    Parameters
    ----------
    train_features : array-like, ``(n_trials, ...)``
        Features of the stimulus of each training trial (flattened per row).
    train_voxels : array-like, ``(n_trials, n_voxels)``
        Single-trial responses.
    alphas, n_folds, backend
        As in :func:`nipype_brainrecon.ridge.fit_ridge_cv`.
    metadata : mapping, optional
        Provenance kept in the model.

    Returns
    -------
    nipype_brainrecon.ridge.RidgeDecoder
        The fitted model; ``predict(features)`` gives voxel responses.
    """
    from ..ridge import fit_ridge_cv

    x = _as_matrix(train_features, "train_features")
    y = np.asarray(train_voxels, dtype=np.float32)
    if y.ndim != 2 or y.shape[0] != x.shape[0]:
        raise DataError(
            f"train_voxels has shape {y.shape}: give ({x.shape[0]}, n_voxels), one row per trial"
        )
    with warnings.catch_warnings():
        # Constant feature columns (e.g. padding tokens) are expected and dropped by the solver.
        warnings.filterwarnings("ignore", message=".*constant or non-finite.*")
        return fit_ridge_cv(
            x, y, alphas=alphas, n_folds=n_folds, backend=backend, metadata=dict(metadata or {})
        )


def prediction_scores(measured: ArrayLike, predicted: ArrayLike) -> dict[str, np.ndarray]:
    """Per-voxel Pearson r and coefficient of determination of predicted responses.

    Parameters
    ----------
    measured, predicted : array-like, ``(n_stimuli, n_voxels)``

    Returns
    -------
    dict
        ``r`` (NaN for constant voxels) and ``r2`` (``1 - SSE / SST`` around the measured mean;
        negative when worse than the mean), float64 ``(n_voxels,)``.

    Examples
    --------
    >>> s = prediction_scores([[0.0], [1.0], [2.0]], [[0.0], [1.0], [2.0]])
    >>> float(s["r"][0]), float(s["r2"][0])
    (1.0, 1.0)
    """
    from ..evaluation.metrics import per_target_correlation

    y = np.asarray(measured, dtype=np.float64)
    p = np.asarray(predicted, dtype=np.float64)
    if y.shape != p.shape or y.ndim != 2:
        raise DataError(f"measured {y.shape} and predicted {p.shape}: give equal 2-D shapes")
    sst = ((y - y.mean(0)) ** 2).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = 1.0 - ((y - p) ** 2).sum(0) / sst
    r2[sst == 0] = np.nan
    return {"r": per_target_correlation(y, p), "r2": r2}


def variance_partitioning(
    r2_a: ArrayLike, r2_b: ArrayLike, r2_joint: ArrayLike
) -> dict[str, np.ndarray]:
    """Unique and shared variance of two feature spaces from test-set R².

    Examples
    --------
    >>> v = variance_partitioning([0.5], [0.2], [0.6])
    >>> [round(float(v[k][0]), 2) for k in ("unique_a", "unique_b", "shared")]
    [0.4, 0.1, 0.1]
    """
    a, b, j = (np.asarray(x, dtype=np.float64) for x in (r2_a, r2_b, r2_joint))
    return {"unique_a": j - b, "unique_b": j - a, "shared": a + b - j}


def chance_correlation(
    measured: ArrayLike,
    predicted: ArrayLike,
    *,
    n_permutations: int = 200,
    quantile: float = 0.95,
    seed: int = 0,
) -> np.ndarray:
    """Per-voxel chance level of the test r: a quantile of r over shuffled test stimuli.

    The predictions are paired with the responses to other test stimuli (random permutations of
    the test rows, the same for every voxel, seeded) and the ``quantile`` of the resulting r is
    taken per voxel: a voxel whose r exceeds it beats chance at that level.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = rng.normal(size=(30, 4))
    >>> bool(np.all(chance_correlation(y, y) < 1.0))
    True
    """
    y = np.asarray(measured, dtype=np.float64)
    p = np.asarray(predicted, dtype=np.float64)
    if y.shape != p.shape or y.ndim != 2:
        raise DataError(f"measured {y.shape} and predicted {p.shape}: give equal 2-D shapes")
    n = y.shape[0]

    def standardise(a: np.ndarray) -> np.ndarray:
        a = a - a.mean(0)
        norm = np.sqrt((a**2).sum(0))
        norm[norm == 0] = np.inf
        return a / norm

    ys, ps = standardise(y), standardise(p)
    rng = np.random.default_rng(seed)
    null = np.empty((int(n_permutations), y.shape[1]))
    for k in range(int(n_permutations)):
        null[k] = np.einsum("ij,ij->j", ys, ps[rng.permutation(n)])
    return np.quantile(null, quantile, axis=0)


@dataclass
class EncodingResults:
    """Per-voxel maps of an encoding analysis.

    Attributes
    ----------
    maps : dict
        ``{name: (n_voxels,) float64}``. For each feature space ``F``: ``F:r`` (test r),
        ``F:r2`` (test R²), ``F:chance_r`` (95th percentile of r over shuffled test stimuli:
        the empirical chance level, :func:`chance_correlation`), ``F:alpha``. For each joint pair ``A+B``: the same plus ``A:unique_r2``,
        ``B:unique_r2`` and ``A+B:shared_r2``; with ``banded=True`` ``A+B:alpha_A`` and
        ``A+B:alpha_B`` instead of ``A+B:alpha``; with ``n_bootstrap`` the 95 % interval of each
        unique / shared map as ``<map>_ci_low`` and ``<map>_ci_high``.
    spaces : dict
        ``{feature space: {"n_features", "fit_seconds", "alpha_counts"}}``.
    n_train, n_test : int
        Training trials and test stimuli.
    info : dict
        The settings (``joint``, ``balance``, ``seed``, ``banded``, ``n_bootstrap``).
    predictions : dict
        ``{model: (n_test, n_voxels) float64}``: each model's predicted test responses (for
        intervals over other groupings, e.g. :func:`.partition.partition_bootstrap` by ROI).
    """

    maps: dict[str, np.ndarray]
    spaces: dict[str, dict[str, Any]]
    n_train: int
    n_test: int
    info: dict[str, Any] = field(default_factory=dict)
    predictions: dict[str, np.ndarray] = field(default_factory=dict)

    def names(self) -> list[str]:
        """The map names, in insertion order."""
        return list(self.maps)


def _rows(features: np.ndarray, index: Mapping[str, int], ids: Sequence[str], what: str):
    missing = [s for s in ids if s not in index]
    if missing:
        raise DataError(f"{what}: no features for stimulus/stimuli {sorted(set(missing))[:5]}")
    return features[[index[s] for s in ids]]


def run_encoding(
    features: Mapping[str, ArrayLike],
    feature_ids: Sequence[str],
    train_voxels: ArrayLike,
    train_stimuli: Sequence[str],
    test_voxels: ArrayLike,
    test_stimuli: Sequence[str],
    *,
    joint: Sequence[Sequence[str]] = (("z", "c"),),
    balance: bool = True,
    alphas: str | ArrayLike = DEFAULTS.decoding.alphas,
    n_folds: int = DEFAULTS.decoding.n_folds,
    backend: str = DEFAULTS.decoding.backend,
    seed: int = 0,
    banded: bool = False,
    n_bootstrap: int = 0,
    bootstrap: str = "test",
) -> EncodingResults:
    """Fit and score an encoding model per feature space (and per joint pair).

    Parameters
    ----------
    features : mapping
        ``{feature space: (n_stimuli, ...) array}``, rows in ``feature_ids`` order.
    feature_ids : sequence of str
        Stimulus id of each feature row.
    train_voxels : array-like, ``(n_trials, n_voxels)``
        Single training trials.
    train_stimuli : sequence of str
        Stimulus id of each training trial.
    test_voxels : array-like, ``(n_test, n_voxels)``
        Test responses (mean over repeats).
    test_stimuli : sequence of str
        Stimulus id of each test row.
    joint : sequence of pairs
        Feature spaces fitted together for variance partitioning (pairs of keys of
        ``features``; pairs with a missing space are an error).
    balance : bool
        Balance the blocks of joint models (:func:`joint_features`).
    alphas, n_folds, backend
        Ridge settings (:func:`nipype_brainrecon.ridge.fit_ridge_cv`).
    seed : int
        Seeds the permutations of the chance level (and the bootstrap resamples).
    banded : bool
        Fit each joint pair with one penalty per feature space (banded ridge,
        :func:`.partition.fit_joint_banded`, the ``alphas`` grid per space; ``balance`` is then
        not used) instead of one penalty for the concatenated (balanced) blocks.
    n_bootstrap : int
        With > 0, 95 % intervals of the unique and shared variance over that many resamples of
        the test stimuli (:func:`.partition.partition_bootstrap`): maps ``<stat>_ci_low`` and
        ``<stat>_ci_high`` beside ``A:unique_r2``, ``B:unique_r2`` and ``A+B:shared_r2``.
    bootstrap : {"test", "refit"}
        ``"test"`` resamples the test stimuli with the fitted models fixed (fast; the interval
        leaves out the fit's own variability and the downward bias of a finite training set);
        ``"refit"`` also resamples the training stimuli and refits the three models at their
        chosen penalties (:func:`.partition.partition_refit_bootstrap`, basic interval, which
        covers planted fractions: docs/encoding.md). Each resample then costs three fits.

    Returns
    -------
    EncodingResults
    """
    ids, y_train, y_test, mats, pairs = _checked_inputs(
        features, feature_ids, (train_voxels, train_stimuli), (test_voxels, test_stimuli), joint
    )
    index = {s: i for i, s in enumerate(ids)}
    if bootstrap not in ("test", "refit"):
        raise UsageError(f"bootstrap={bootstrap!r}: give 'test' or 'refit'")

    maps: dict[str, np.ndarray] = {}
    spaces: dict[str, dict[str, Any]] = {}
    r2_of: dict[str, np.ndarray] = {}
    pred_of: dict[str, np.ndarray] = {}
    refit_of: dict[str, FixedPenaltyModel] = {}
    keep_models = n_bootstrap > 0 and bootstrap == "refit"
    rows_of = {
        "train": [str(s) for s in train_stimuli],
        "test": [str(s) for s in test_stimuli],
    }

    def score(name: str, predicted: np.ndarray) -> None:
        scores = prediction_scores(y_test, predicted)
        maps[f"{name}:r"] = scores["r"]
        maps[f"{name}:r2"] = scores["r2"]
        maps[f"{name}:chance_r"] = chance_correlation(y_test, predicted, seed=seed)
        r2_of[name] = scores["r2"]
        pred_of[name] = np.asarray(predicted, dtype=np.float64)

    def fit_one(name: str, x_all: np.ndarray) -> None:
        x_train = _rows(x_all, index, [str(s) for s in train_stimuli], name)
        x_test = _rows(x_all, index, [str(s) for s in test_stimuli], name)
        start = time.perf_counter()
        model = fit_encoding_model(
            x_train, y_train, alphas=alphas, n_folds=n_folds, backend=backend,
            metadata={"feature_space": name},
        )  # fmt: skip
        seconds = time.perf_counter() - start
        score(name, model.predict(x_test))
        maps[f"{name}:alpha"] = np.asarray(model.alphas, dtype=np.float64)
        if keep_models:
            refit_of[name] = FixedPenaltyModel([x_train], [x_test], maps[f"{name}:alpha"][None])
        spaces[name] = {
            "n_features": int(x_all.shape[1]),
            "fit_seconds": round(seconds, 3),
            "alpha_counts": {f"{a:g}": int(c) for a, c in model.alpha_counts().items()},
        }
        LOGGER.info("encoding %s: %d features, fitted in %.2f s", name, x_all.shape[1], seconds)

    for name, m in mats.items():
        fit_one(name, m)
    for a, b in pairs:
        name = _joint_name((a, b))
        if banded:
            fitted = _fit_banded_pair(maps, (a, b), mats, index, rows_of, y_train, alphas, n_folds)
            score(name, fitted[0])
            spaces[name] = fitted[1]
            if keep_models:
                refit_of[name] = FixedPenaltyModel(*fitted[2], fitted[3].alphas)
        else:
            fit_one(name, joint_features([mats[a], mats[b]], balance=balance))
        boot = _pair_bootstrap(
            (a, b), pred_of, refit_of, (y_train, y_test), rows_of, n_bootstrap, bootstrap, seed
        )
        _partition_maps(maps, (a, b), r2_of, boot)
    return EncodingResults(
        maps=maps,
        spaces=spaces,
        n_train=len(y_train),
        n_test=len(y_test),
        info={
            "joint": ["+".join(p) for p in pairs],
            "balance": bool(balance),
            "seed": int(seed),
            "banded": bool(banded),
            "n_bootstrap": int(n_bootstrap),
            "bootstrap": bootstrap,
        },
        predictions=pred_of,
    )


def _checked_inputs(features, feature_ids, train, test, joint):
    """The inputs of :func:`run_encoding` checked: ids, float32 responses, feature matrices and
    joint pairs."""
    (train_voxels, train_stimuli), (test_voxels, test_stimuli) = train, test
    ids = [str(s) for s in feature_ids]
    index = {s: i for i, s in enumerate(ids)}
    if len(index) != len(ids):
        raise DataError("feature_ids: a stimulus id occurs twice")
    y_train = np.asarray(train_voxels, dtype=np.float32)
    y_test = np.asarray(test_voxels, dtype=np.float32)
    if y_train.ndim != 2 or y_test.ndim != 2 or y_train.shape[1] != y_test.shape[1]:
        raise DataError(
            f"train_voxels {y_train.shape} and test_voxels {y_test.shape}: give (rows, voxels) "
            "arrays over the same voxels"
        )
    if len(train_stimuli) != len(y_train) or len(test_stimuli) != len(y_test):
        raise DataError("train_stimuli/test_stimuli: give one stimulus id per row of voxels")
    if len(y_test) < 3:
        raise DataError(f"{len(y_test)} test stimuli: need at least 3 to correlate")
    mats = {name: _as_matrix(f, name) for name, f in features.items()}
    for name, m in mats.items():
        if len(m) != len(ids):
            raise DataError(f"{name}: {len(m)} rows for {len(ids)} feature ids")
    pairs = [tuple(p) for p in joint]
    for pair in pairs:
        absent = [s for s in pair if s not in mats]
        if absent or len(pair) != 2:
            raise UsageError(f"joint={pair}: give two of the feature spaces {sorted(mats)}")
    return ids, y_train, y_test, mats, pairs


def _pair_bootstrap(pair, pred_of, refit_of, ys, rows_of, n_bootstrap, bootstrap, seed):
    """The bootstrap of a joint pair's partition (None without resamples): over the test
    stimuli (:func:`.partition.partition_bootstrap`) or refitting the models on resampled
    training stimuli too (:func:`.partition.partition_refit_bootstrap`)."""
    if n_bootstrap <= 0:
        return None
    a, b = pair
    name = _joint_name(pair)
    if bootstrap == "refit":
        return partition_refit_bootstrap(
            *ys, refit_of[a], refit_of[b], refit_of[name], n_boot=n_bootstrap, seed=seed,
            train_units=rows_of["train"],
        )  # fmt: skip
    return partition_bootstrap(
        ys[1], pred_of[a], pred_of[b], pred_of[name], n_boot=n_bootstrap, seed=seed
    )


def _partition_maps(maps, pair, r2_of, boot: dict | None) -> None:
    """Unique and shared variance maps of a joint pair, and the intervals of ``boot``."""
    a, b = pair
    name = _joint_name(pair)
    parts = variance_partitioning(r2_of[a], r2_of[b], r2_of[name])
    keys = {
        "unique_a": f"{a}:unique_r2",
        "unique_b": f"{b}:unique_r2",
        "shared": f"{name}:shared_r2",
    }
    for key, map_name in keys.items():
        maps[map_name] = parts[key]
    if boot is not None:
        for key, map_name in keys.items():
            maps[f"{map_name}_ci_low"] = boot[key]["low"]
            maps[f"{map_name}_ci_high"] = boot[key]["high"]


def _fit_banded_pair(maps, pair, mats, index, rows_of, y_train, alphas, n_folds):
    """Fit the banded joint model of ``pair``: its test predictions, its summary, its
    ``(training, test)`` blocks and the fit."""
    blocks = {k: [_rows(mats[s], index, rows_of[k], s) for s in pair] for k in rows_of}
    start = time.perf_counter()
    predicted, fit = fit_joint_banded(
        *blocks["train"], y_train, *blocks["test"], alphas=alphas, n_folds=n_folds
    )
    info = _banded_space_info(maps, _joint_name(pair), pair, fit, start)
    return predicted, info, (blocks["train"], blocks["test"]), fit


def _banded_space_info(maps, name: str, spaces: Sequence[str], fit, start: float) -> dict:
    """Per-space alpha maps (``A+B:alpha_A``) and the fit's summary of a banded joint model."""
    seconds = time.perf_counter() - start
    for band, space in enumerate(spaces):
        maps[f"{name}:alpha_{space}"] = np.asarray(fit.alphas[band], dtype=np.float64)
    chosen, counts = np.unique(fit.alphas.T, axis=0, return_counts=True)
    LOGGER.info("encoding %s (banded): fitted in %.2f s", name, seconds)
    return {
        "n_features": int(sum(c.shape[0] for c in fit.coef)),
        "fit_seconds": round(seconds, 3),
        "alpha_counts": {
            ",".join(f"{a:g}" for a in pair): int(c) for pair, c in zip(chosen, counts, strict=True)
        },
        "banded": True,
    }
