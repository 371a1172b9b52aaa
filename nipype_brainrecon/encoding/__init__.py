"""Voxel-wise encoding models: which stimulus features explain which voxels.

The interpretation half of Takagi & Nishimoto (2023, section 4): ridge regressions predicting each
voxel's single-trial response from a feature space of the seen stimulus, trained on the training
stimuli and scored on the held-out test stimuli (mean over repeats) by the Pearson correlation
between predicted and measured responses, voxel by voxel.

Feature spaces:

* ``z``: the VAE latent of the image (:func:`nipype_brainrecon.features.encode_images_z`);
* ``c``: the caption embedding (:func:`nipype_brainrecon.features.encode_captions_c`);
* ``z_c``: the latent after reconstruction, i.e. ``z`` noised to ``strength`` and denoised
  conditioned on ``c`` (:func:`extract_unet_features`);
* ``unet_<block>_<step>_<cond>``: activations of a U-Net block (``down<i>``, ``mid``,
  ``up<i>``) captured by a forward hook while the U-Net denoises the stimulus's noised latent,
  at an early, middle or late denoising step, conditioned on ``c`` (``c``) or on the empty
  prompt (``none``).

The solver is the decoders' one (:func:`nipype_brainrecon.ridge.fit_ridge_cv`) with the roles
swapped: the features (standardised) are the inputs and the voxels the targets, so the ridge
penalty is chosen per voxel by K-fold cross-validation.

Unique variance (variance partitioning): with ``R2`` the coefficient of determination on the test
stimuli, ``unique(z) = R2(z+c) - R2(c)``, ``unique(c) = R2(z+c) - R2(z)`` and
``shared = R2(z) + R2(c) - R2(z+c)``. The joint model concatenates the feature spaces; as the
solver standardises every column, a block's share of the kernel grows with its number of
columns, so by default each block's columns are repeated ``round(p_max / p_block)`` times,
which gives every feature space about the same prior variance (a single-penalty stand-in for
banded ridge).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from ..errors import DataError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    import nibabel as nib
    import pandas as pd

    from ..ridge import RidgeDecoder

__all__ = [
    "DEFAULT_BLOCKS",
    "DEFAULT_STEPS",
    "MAP_STATISTICS",
    "EncodingResults",
    "UnetFeatures",
    "bids_desc",
    "chance_correlation",
    "extract_unet_features",
    "fit_encoding_model",
    "joint_features",
    "map_filename",
    "maps_to_nifti",
    "prediction_scores",
    "roi_summary",
    "run_encoding",
    "unet_block_names",
    "variance_partitioning",
    "voxel_labels",
    "write_encoding_derivatives",
]

LOGGER = logging.getLogger("nipype_brainrecon.encoding")

#: U-Net blocks hooked by default: the last encoder block, the bottleneck, the first decoder one.
DEFAULT_BLOCKS: tuple[str, ...] = ("down1", "mid", "up1")
#: Denoising steps captured by default: first (noisiest), middle, last.
DEFAULT_STEPS: tuple[str, ...] = ("early", "middle", "late")
#: Conditions of the U-Net runs: on the caption embedding ``c`` and on the empty prompt.
CONDITIONS: tuple[str, ...] = ("c", "none")
#: Version of the U-Net feature cache entries.
UNET_CACHE_FORMAT = 1


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------
def bids_desc(name: str) -> str:
    """A ``desc-`` label (letters and digits) for a feature space or map name.

    Examples
    --------
    >>> bids_desc("z_c"), bids_desc("z+c"), bids_desc("unet_mid_early_c")
    ('zC', 'zPlusC', 'unetMidEarlyWithC')
    """
    parts = [p for p in str(name).replace("+", "_plus_").split("_") if p]
    if len(parts) > 1 and parts[0] == "unet":
        parts[-1] = {"c": "withC", "none": "noC"}.get(parts[-1], parts[-1])
    text = parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:]) if parts else ""
    text = "".join(ch for ch in text if ch.isalnum())
    if not text:
        raise UsageError(f"feature name {name!r}: has no letters or digits")
    return text


def _joint_name(spaces: Sequence[str]) -> str:
    return "+".join(spaces)


# --------------------------------------------------------------------------------------------
# Fitting and scoring
# --------------------------------------------------------------------------------------------
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
    alphas: str | ArrayLike = "default",
    n_folds: int = 5,
    backend: str = "auto",
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
    from ..ridge import correlation_per_target

    y = np.asarray(measured, dtype=np.float64)
    p = np.asarray(predicted, dtype=np.float64)
    if y.shape != p.shape or y.ndim != 2:
        raise DataError(f"measured {y.shape} and predicted {p.shape}: give equal 2-D shapes")
    sst = ((y - y.mean(0)) ** 2).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = 1.0 - ((y - p) ** 2).sum(0) / sst
    r2[sst == 0] = np.nan
    return {"r": correlation_per_target(y, p), "r2": r2}


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
        ``B:unique_r2`` and ``A+B:shared_r2``.
    spaces : dict
        ``{feature space: {"n_features", "fit_seconds", "alpha_counts"}}``.
    n_train, n_test : int
        Training trials and test stimuli.
    """

    maps: dict[str, np.ndarray]
    spaces: dict[str, dict[str, Any]]
    n_train: int
    n_test: int
    info: dict[str, Any] = field(default_factory=dict)

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
    alphas: str | ArrayLike = "default",
    n_folds: int = 5,
    backend: str = "auto",
    seed: int = 0,
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
        Seeds the permutations of the chance level.

    Returns
    -------
    EncodingResults
    """
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

    maps: dict[str, np.ndarray] = {}
    spaces: dict[str, dict[str, Any]] = {}
    r2_of: dict[str, np.ndarray] = {}

    def fit_one(name: str, x_all: np.ndarray) -> None:
        x_train = _rows(x_all, index, [str(s) for s in train_stimuli], name)
        x_test = _rows(x_all, index, [str(s) for s in test_stimuli], name)
        start = time.perf_counter()
        model = fit_encoding_model(
            x_train, y_train, alphas=alphas, n_folds=n_folds, backend=backend,
            metadata={"feature_space": name},
        )  # fmt: skip
        seconds = time.perf_counter() - start
        predicted = model.predict(x_test)
        scores = prediction_scores(y_test, predicted)
        maps[f"{name}:r"] = scores["r"]
        maps[f"{name}:r2"] = scores["r2"]
        maps[f"{name}:chance_r"] = chance_correlation(y_test, predicted, seed=seed)
        maps[f"{name}:alpha"] = np.asarray(model.alphas, dtype=np.float64)
        r2_of[name] = scores["r2"]
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
        fit_one(name, joint_features([mats[a], mats[b]], balance=balance))
        parts = variance_partitioning(r2_of[a], r2_of[b], r2_of[name])
        maps[f"{a}:unique_r2"] = parts["unique_a"]
        maps[f"{b}:unique_r2"] = parts["unique_b"]
        maps[f"{name}:shared_r2"] = parts["shared"]
    return EncodingResults(
        maps=maps,
        spaces=spaces,
        n_train=len(y_train),
        n_test=len(y_test),
        info={"joint": ["+".join(p) for p in pairs], "balance": bool(balance), "seed": int(seed)},
    )


# --------------------------------------------------------------------------------------------
# U-Net features
# --------------------------------------------------------------------------------------------
def unet_block_names(unet: Any) -> list[str]:
    """Names of the hookable blocks of a diffusers ``UNet2DConditionModel``.

    ``down0 .. down<n-1>``, ``mid``, ``up0 .. up<n-1>``; for SD v1 the down blocks are three
    ``CrossAttnDownBlock2D`` and a ``DownBlock2D``, the mid block ``UNetMidBlock2DCrossAttn`` and
    the up blocks an ``UpBlock2D`` and three ``CrossAttnUpBlock2D``.
    """
    names = [f"down{i}" for i in range(len(unet.down_blocks))]
    if getattr(unet, "mid_block", None) is not None:
        names.append("mid")
    names += [f"up{i}" for i in range(len(unet.up_blocks))]
    return names


def _block(unet: Any, name: str) -> Any:
    if name == "mid":
        return unet.mid_block
    if name.startswith("down"):
        return unet.down_blocks[int(name[4:])]
    return unet.up_blocks[int(name[2:])]


def _step_positions(steps: Sequence[str | int], n_steps: int) -> dict[str, int]:
    named = {"early": 0, "middle": n_steps // 2, "late": n_steps - 1}
    out: dict[str, int] = {}
    for step in steps:
        if isinstance(step, str) and step in named:
            out[step] = named[step]
        elif isinstance(step, (int, np.integer)) and not isinstance(step, bool):
            if not 0 <= int(step) < n_steps:
                raise UsageError(f"steps: {step} outside the {n_steps} denoising steps")
            out[f"step{int(step)}"] = int(step)
        else:
            raise UsageError(f"steps: {step!r}; use 'early', 'middle', 'late' or a step index")
    return out


@dataclass
class UnetFeatures:
    """Features captured from the U-Net (see :func:`extract_unet_features`).

    Attributes
    ----------
    features : dict
        ``{"unet_<block>_<step>_<cond>": (n_stimuli, n_features) float32}``.
    z_c : numpy.ndarray or None
        The latent after denoising conditioned on ``c``, shape of ``z`` (None without the ``c``
        condition).
    info : dict
        Settings, timesteps of each step label and the shape of each block's activation.
    """

    features: dict[str, np.ndarray]
    z_c: np.ndarray | None
    info: dict[str, Any]


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array, dtype=np.float32).tobytes()).hexdigest()


def extract_unet_features(
    unet: Any,
    scheduler: Any,
    z: ArrayLike,
    c: ArrayLike | None,
    uncond: ArrayLike,
    stim_ids: Sequence[str],
    *,
    blocks: Sequence[str] = DEFAULT_BLOCKS,
    steps: Sequence[str | int] = DEFAULT_STEPS,
    conditions: Sequence[str] = CONDITIONS,
    strength: float = 0.8,
    num_inference_steps: int = 50,
    guidance_scale: float = 5.0,
    seed: int = 42,
    pool: int = 8,
    batch_size: int = 8,
    cache_dir: str | os.PathLike | None = None,
    model_id: str | None = None,
    progress: bool = False,
) -> UnetFeatures:
    """Capture U-Net block activations while denoising each stimulus's noised latent.

    Each stimulus's latent ``z`` is noised to ``strength`` of a DDIM schedule (noise seeded by
    ``seed`` and its stimulus id, the same for every condition) and denoised as in the
    reconstruction (eta 0), conditioned on its ``c`` (classifier-free guidance
    ``guidance_scale`` against ``uncond``; only the conditional branch is recorded) or on
    ``uncond`` alone. Forward hooks on the chosen blocks record their output (a down block's
    hidden states) at the chosen steps, average-pooled to at most ``pool`` x ``pool``.

    Parameters
    ----------
    unet : diffusers.UNet2DConditionModel
        On its device and dtype.
    scheduler : diffusers scheduler
        Its config builds a DDIM scheduler.
    z : array-like, ``(n, C, h, w)``
        Scaled VAE latents of the stimuli (any size the U-Net accepts).
    c : array-like, ``(n, tokens, hidden)`` or None
        Caption embeddings; needed for the ``c`` condition.
    uncond : array-like, ``(tokens, hidden)``
        The empty-prompt embedding.
    stim_ids : sequence of str
        One unique id per stimulus (seeds its noise).
    blocks : sequence of str
        Blocks to hook (:func:`unet_block_names`).
    steps : sequence of str or int
        ``"early"`` (first denoising step), ``"middle"``, ``"late"`` (last), or step indices.
    conditions : sequence of {"c", "none"}
        Conditioning of the runs.
    strength, num_inference_steps, guidance_scale
        As in :func:`nipype_brainrecon.diffusion.reconstruct` (paper: 0.8, 50, 5.0).
    seed : int
        Seeds the noise.
    pool : int
        Largest side of the pooled activation maps.
    batch_size : int
        Stimuli per U-Net call; every call is padded to this many rows, so a stimulus's
        features do not depend on its batch (and can be cached one by one).
    cache_dir : path, optional
        Feature cache (as :mod:`nipype_brainrecon.features`); keyed by the stimulus's ``z`` and
        ``c`` values, its id, the model and every setting.
    model_id : str, optional
        Model identity for the cache key (default: from the module).
    progress : bool
        Show a progress bar.

    Returns
    -------
    UnetFeatures
    """
    import torch

    from ..diffusion import check_steps, derive_seed, fresh_ddim, pad_rows, seeded_randn
    from ..features import cache_key, cache_path, cache_read, cache_write, resolve_model_id

    z_arr = np.asarray(z, dtype=np.float32)
    if z_arr.ndim != 4:
        raise DataError(f"z: shape {z_arr.shape}; give (n_stimuli, channels, h, w) latents")
    n = len(z_arr)
    if n == 0:
        raise DataError("z: no stimulus; give at least one latent")
    ids = [str(s) for s in stim_ids]
    if len(ids) != n or len(set(ids)) != n:
        raise DataError(f"stim_ids: give {n} unique ids, one per latent")
    conds = list(dict.fromkeys(conditions))
    if not conds or any(k not in CONDITIONS for k in conds):
        raise UsageError(f"conditions={list(conditions)}: choose from {CONDITIONS}")
    c_arr = None if c is None else np.asarray(c, dtype=np.float32)
    if "c" in conds and (c_arr is None or len(c_arr) != n):
        raise DataError("c: the 'c' condition needs one caption embedding per latent")
    u_arr = np.asarray(uncond, dtype=np.float32)
    available = unet_block_names(unet)
    block_list = list(dict.fromkeys(blocks))
    unknown = [b for b in block_list if b not in available]
    if unknown:
        raise UsageError(f"blocks: {unknown} not in this U-Net; choose from {available}")
    if int(pool) < 1 or int(batch_size) < 1:
        raise UsageError("pool and batch_size: must be at least 1")
    n_denoise = check_steps(num_inference_steps, strength)
    positions = _step_positions(steps, n_denoise)
    sched = fresh_ddim(scheduler)
    sched.set_timesteps(int(num_inference_steps))
    timesteps = sched.timesteps[int(num_inference_steps) - n_denoise :].clone()
    use_cfg = float(guidance_scale) != 1.0
    names = [f"unet_{b}_{s}_{k}" for k in conds for b in block_list for s in positions]
    outputs = names + (["z_c"] if "c" in conds else [])

    cache = Path(cache_dir) if cache_dir is not None else None
    if cache is not None:
        model_id = resolve_model_id(unet, model_id, ("unet",), "unet")
    settings = {
        "format": UNET_CACHE_FORMAT,
        "model": model_id,
        "strength": float(strength),
        "num_inference_steps": int(num_inference_steps),
        "guidance_scale": float(guidance_scale),
        "seed": int(seed),
        "pool": int(pool),
        "batch_size": int(batch_size),
        "uncond": _digest(u_arr),
        "scheduler": {k: str(v) for k, v in dict(sched.config).items()},
    }
    result: dict[str, list[np.ndarray | None]] = {k: [None] * n for k in outputs}
    keys: list[dict[str, Path]] = [{} for _ in range(n)]
    todo: list[int] = []
    for i in range(n):
        if cache is not None:
            base = {**settings, "stim_id": ids[i], "z": _digest(z_arr[i])}
            if c_arr is not None and "c" in conds:
                base["c"] = _digest(c_arr[i])
            for k in outputs:
                keys[i][k] = cache_path(cache, "unet", cache_key({**base, "output": k}))
            cached = {k: cache_read(p) for k, p in keys[i].items()}
            if all(v is not None for v in cached.values()):
                for k, v in cached.items():
                    result[k][i] = v
                continue
        todo.append(i)

    param = next(unet.parameters())
    dev, dtype = param.device, param.dtype
    shapes: dict[str, list[int]] = {}
    captured: dict[str, torch.Tensor] = {}
    state = {"capture": False, "rows": 0, "cfg": False}

    def hook(name: str):
        def record(_module, _inputs, output):
            if not state["capture"]:
                return
            x = output[0] if isinstance(output, tuple) else output
            if state["cfg"]:
                x = x[x.shape[0] // 2 :]  # conditional half of the guidance batch
            x = x[: state["rows"]].float()
            shapes[name] = list(x.shape[1:])
            side = (min(int(pool), x.shape[-2]), min(int(pool), x.shape[-1]))
            captured[name] = torch.nn.functional.adaptive_avg_pool2d(x, side).flatten(1).cpu()

        return record

    from tqdm.auto import tqdm

    handles = [_block(unet, b).register_forward_hook(hook(b)) for b in block_list]
    try:
        bar = tqdm(total=len(todo) * len(conds), desc="U-Net features", disable=not progress)
        uncond_t = torch.from_numpy(u_arr).to(device=dev, dtype=dtype)
        with torch.inference_mode(), bar:
            for start in range(0, len(todo), int(batch_size)):
                chunk = todo[start : start + int(batch_size)]
                rows = len(chunk)
                init = torch.from_numpy(z_arr[chunk])
                noise = torch.stack(
                    [
                        seeded_randn(tuple(z_arr.shape[1:]), derive_seed(seed, ids[i], "encoding"))
                        for i in chunk
                    ]
                )
                for cond in conds:
                    latents = sched.add_noise(init, noise, timesteps[:1].repeat(rows))
                    latents = pad_rows(latents, int(batch_size)).to(device=dev, dtype=dtype)
                    cfg = cond == "c" and use_cfg
                    if cond == "c":
                        emb = pad_rows(torch.from_numpy(c_arr[chunk]), int(batch_size))
                        emb = emb.to(device=dev, dtype=dtype)
                    else:
                        emb = uncond_t.expand(int(batch_size), *uncond_t.shape).contiguous()
                    if cfg:
                        emb = torch.cat([uncond_t.expand(int(batch_size), *uncond_t.shape), emb])
                    state.update(rows=rows, cfg=cfg)
                    for k, t in enumerate(timesteps):
                        labels = [s for s, pos in positions.items() if pos == k]
                        state["capture"] = bool(labels)
                        captured.clear()
                        model_in = torch.cat([latents, latents]) if cfg else latents
                        model_in = sched.scale_model_input(model_in, t)
                        eps = unet(model_in, t, encoder_hidden_states=emb).sample
                        if cfg:
                            eps_u, eps_c = eps.chunk(2)
                            eps = eps_u + float(guidance_scale) * (eps_c - eps_u)
                        latents = sched.step(eps, t, latents, eta=0.0).prev_sample
                        for label in labels:
                            for b in block_list:
                                values = captured[b].numpy()
                                for j, i in enumerate(chunk):
                                    result[f"unet_{b}_{label}_{cond}"][i] = values[j].copy()
                    state["capture"] = False
                    if cond == "c":
                        final = latents[:rows].float().cpu().numpy()
                        for j, i in enumerate(chunk):
                            result["z_c"][i] = final[j].copy()
                    bar.update(rows)
                for i in chunk:
                    for k, path in keys[i].items():
                        cache_write(path, np.asarray(result[k][i], dtype=np.float32))
    finally:
        for handle in handles:
            handle.remove()

    arrays = {k: np.stack(v).astype(np.float32) for k, v in result.items()}
    info = {
        "blocks": block_list,
        "steps": {label: int(timesteps[pos]) for label, pos in positions.items()},
        "conditions": conds,
        "strength": float(strength),
        "num_inference_steps": int(num_inference_steps),
        "guidance_scale": float(guidance_scale),
        "seed": int(seed),
        "pool": int(pool),
        "activation_shapes": shapes,
        "block_types": {b: type(_block(unet, b)).__name__ for b in block_list},
        "n_computed": len(todo),
    }
    z_c = arrays.pop("z_c", None)
    return UnetFeatures(features={k: arrays[k] for k in names}, z_c=z_c, info=info)


# --------------------------------------------------------------------------------------------
# Maps, ROI summaries and figures
# --------------------------------------------------------------------------------------------
def maps_to_nifti(values: ArrayLike, mask: str | os.PathLike | nib.Nifti1Image) -> nib.Nifti1Image:
    """Put per-voxel values back on the mask's grid (NaN outside the mask and for NaN values).

    Parameters
    ----------
    values : array-like, ``(n_voxels,)``
        In the C order of the mask's non-zero voxels (as :func:`nipype_brainrecon.rois.
        extract_roi_data` reads them).
    mask : path or nibabel image
        The 3D mask the voxels came from.

    Returns
    -------
    nibabel.Nifti1Image
        float32 3D image.
    """
    import nibabel as nib

    img = nib.load(mask) if isinstance(mask, (str, os.PathLike)) else mask
    inside = np.asanyarray(img.dataobj).reshape(img.shape[:3]) > 0
    v = np.asarray(values, dtype=np.float32).reshape(-1)
    if v.size != int(inside.sum()):
        raise DataError(f"values: {v.size} for a mask of {int(inside.sum())} voxels")
    out = np.full(inside.shape, np.nan, dtype=np.float32)
    out[inside] = v
    image = nib.Nifti1Image(out, img.affine)
    image.header.set_xyzt_units("mm")
    return image


def roi_summary(
    maps: Mapping[str, ArrayLike],
    voxel_labels: ArrayLike,
    label_names: Mapping[int, str],
) -> pd.DataFrame:
    """Mean and median of every map within each labelled region (and over all voxels).

    Parameters
    ----------
    maps : mapping
        ``{"<space>:<stat>": (n_voxels,) values}`` (as :attr:`EncodingResults.maps`).
    voxel_labels : array-like, ``(n_voxels,)``
        Region index of each voxel (0 = none).
    label_names : mapping
        ``{index: name}``.

    Returns
    -------
    pandas.DataFrame
        Columns ``roi``, ``feature``, ``statistic``, ``n_voxels``, ``mean``, ``median``;
        one row per region (``all`` = every voxel) and map.
    """
    import pandas as pd

    labels = np.asarray(voxel_labels).reshape(-1)
    regions = [("all", np.ones(labels.size, bool))]
    regions += [(str(name), labels == int(idx)) for idx, name in sorted(label_names.items())]
    rows = []
    for name, values in maps.items():
        feature, _, stat = name.rpartition(":")
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        if v.size != labels.size:
            raise DataError(f"{name}: {v.size} values for {labels.size} voxel labels")
        for roi, sel in regions:
            vals = v[sel & np.isfinite(v)]
            if stat == "alpha":
                vals = np.log10(vals)  # penalties span decades: summarise their logarithm
            rows.append(
                {
                    "roi": roi,
                    "feature": feature,
                    "statistic": "log10_alpha" if stat == "alpha" else stat,
                    "n_voxels": int(sel.sum()),
                    "mean": float(vals.mean()) if vals.size else float("nan"),
                    "median": float(np.median(vals)) if vals.size else float("nan"),
                }
            )
    return pd.DataFrame(rows)


def voxel_labels(
    mask: str | os.PathLike | nib.Nifti1Image, dseg: str | os.PathLike | nib.Nifti1Image
) -> np.ndarray:
    """Segmentation label of each voxel of ``mask`` (C order), the dseg put on its grid.

    Returns
    -------
    numpy.ndarray
        int64, ``(n_mask_voxels,)``; 0 where the segmentation has no region.
    """
    import nibabel as nib

    from ..rois import to_reference_grid

    mask_img = nib.load(mask) if isinstance(mask, (str, os.PathLike)) else mask
    seg = to_reference_grid(dseg, mask_img, interpolation="nearest", what="segmentation")
    inside = np.asanyarray(mask_img.dataobj).reshape(mask_img.shape[:3]) > 0
    return np.rint(np.asanyarray(seg.dataobj)[inside]).astype(np.int64)


#: ``desc-`` suffix and description of each statistic written as a map.
MAP_STATISTICS: dict[str, tuple[str, str]] = {
    "r": ("R", "Pearson r between predicted and measured responses to the test stimuli"),
    "r2": ("Rsq", "coefficient of determination (1 - SSE/SST) on the test stimuli"),
    "chance_r": (
        "ChanceR",
        "95th percentile of r over 200 shuffles of the test stimuli (per-voxel chance level)",
    ),
    "unique_r2": (
        "UniqueRsq",
        "unique variance: R2 of the joint model minus R2 of the other space",
    ),
    "shared_r2": ("SharedRsq", "shared variance: R2(a) + R2(b) - R2(joint)"),
}


def map_filename(subject: str, task: str | None, space: str, name: str) -> str:
    """BIDS-style file name of a map ``"<feature space>:<statistic>"``.

    Examples
    --------
    >>> map_filename("01", "vision", "T1w", "z:unique_r2")
    'sub-01_task-vision_space-T1w_desc-zUniqueRsq_statmap.nii.gz'
    """
    feature, _, stat = name.rpartition(":")
    if stat not in MAP_STATISTICS:
        raise UsageError(f"{name}: statistic {stat!r} is not written as a map")
    task_part = f"_task-{task}" if task else ""
    desc = bids_desc(feature) + MAP_STATISTICS[stat][0]
    return f"sub-{subject}{task_part}_space-{space}_desc-{desc}_statmap.nii.gz"


def write_encoding_derivatives(
    *,
    output_dir: str | os.PathLike,
    subject: str,
    map_files: Sequence[str | os.PathLike],
    map_names: Sequence[str],
    roi_summary_file: str | os.PathLike,
    spaces: Mapping[str, Any],
    space: str = "T1w",
    task: str | None = None,
    sources: Sequence[str] = (),
    settings: Mapping[str, Any] | None = None,
    unet_info: Mapping[str, Any] | None = None,
    n_train: int = 0,
    n_test: int = 0,
    summary: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Copy encoding maps and the ROI table into ``sub-<label>/func`` with BIDS-style names.

    Maps: ``sub-<label>[_task-<task>]_space-<space>_desc-<feature><Stat>_statmap.nii.gz``
    with a JSON sidecar (feature space, statistic, chance level, settings, sources); the
    ROI table: ``sub-<label>[_task-<task>]_desc-encoding_rois.tsv`` (+ JSON describing the
    columns). Both are listed in the dataset's ``.bidsignore``.

    Returns
    -------
    dict
        ``summary`` with an ``"encoding"`` entry (paths and settings) for the report.
    """
    from .._version import __version__
    from ..derivatives import PIPELINE_NAME, copy_file, write_json

    if len(map_files) != len(map_names):
        raise DataError(f"{len(map_files)} map files for {len(map_names)} names")
    func = Path(output_dir) / f"sub-{subject}" / "func"
    provenance = {
        "SoftwareName": PIPELINE_NAME,
        "SoftwareVersion": __version__,
        "Settings": dict(settings or {}),
    }
    written = []
    for path, name in zip(map_files, map_names, strict=True):
        feature, _, stat = name.rpartition(":")
        dst = copy_file(path, func / map_filename(subject, task, space, name))
        sidecar = {
            "Description": f"Encoding model of {feature}: {MAP_STATISTICS[stat][1]}",
            "FeatureSpace": feature,
            "Statistic": stat,
            "ChanceLevel": 0.0,
            "NumberOfTrainingTrials": int(n_train),
            "NumberOfTestStimuli": int(n_test),
            "Sources": list(sources),
            **provenance,
        }
        if feature in spaces:
            sidecar["NumberOfFeatures"] = spaces[feature].get("n_features")
            sidecar["AlphaCounts"] = spaces[feature].get("alpha_counts")
        if feature.startswith("unet_") and unet_info:
            sidecar["UNet"] = dict(unet_info)
        write_json(dst.with_name(dst.name.replace(".nii.gz", ".json")), sidecar)
        written.append({"feature": feature, "statistic": stat, "path": str(dst)})
    task_part = f"_task-{task}" if task else ""
    table = copy_file(roi_summary_file, func / f"sub-{subject}{task_part}_desc-encoding_rois.tsv")
    write_json(
        table.with_suffix(".json"),
        {
            "roi": {"Description": "region of the segmentation ('all': every modelled voxel)"},
            "feature": {"Description": "feature space of the encoding model"},
            "statistic": {
                "Description": "per-voxel statistic summarised",
                "Levels": {k: v[1] for k, v in MAP_STATISTICS.items()}
                | {"log10_alpha": "log10 of the ridge penalty chosen by cross-validation"},
            },
            "n_voxels": {"Description": "voxels in the region"},
            "mean": {"Description": "mean of the statistic over the region's voxels"},
            "median": {"Description": "median over the region's voxels"},
            **provenance,
        },
    )
    out = dict(summary or {})
    out["encoding"] = {
        "maps": written,
        "roi_table": str(table),
        "spaces": {k: dict(v) for k, v in spaces.items()},
        "n_train": int(n_train),
        "n_test": int(n_test),
        "unet": dict(unet_info or {}),
    }
    return out
