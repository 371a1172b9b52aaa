"""Scoring reconstructions against the seen images, always beside chance and trivial baselines.

The suite is the one later papers use to compare with Takagi & Nishimoto (2023) (MindEye,
MindEye2, Brain-Diffuser), plus Takagi's own identification rule:

* **PixCorr**: Pearson r between the flattened RGB pixels of an original and a reconstruction,
  both resized to ``size`` (425) px.
* **SSIM**: mean structural similarity of the grayscale images at ``size`` px, Gaussian
  weights (sigma 1.5, truncated at 3.5 sigma: an 11-tap window), population covariances,
  ``K1 = 0.01``, ``K2 = 0.03``, data range 1, and a 5 px border left out: the settings of
  scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1.0)`` on ``rgb2gray`` images, written here with
  :func:`scipy.ndimage.gaussian_filter` on whole batches.
* **Two-way identification** on features from pluggable extractors, with both published rules
  of :func:`nipype_brainrecon.evaluation.metrics.two_way_identification` (chance 0.5).
* **Distances** (1 - Pearson r between the features of an original and its reconstruction;
  lower is better) for EfficientNet-B1 and SwAV, as MindEye reports them.

Resizing. All resizing here is bilinear with antialiasing (``torch.nn.functional.interpolate(
mode="bilinear", antialias=True)``), the behaviour of torchvision's ``Resize(size,
InterpolationMode.BILINEAR)`` on tensors since torchvision 0.17 and of PIL's bilinear filter;
images are resized to ``size`` x ``size``. MindEye's scripts call that ``Resize``; which
antialiasing their torchvision applied depends on its version.

Feature extractors live in a small registry (:func:`register_extractor`,
:func:`get_extractor`). Built in and free of weights: ``"pixels"``, ``"lowlevel"`` and, for the
package's synthetic stimuli only, ``"scene"`` (the object colours and background their captions
name: the semantic metric of the simulation).
Built in and needing weights that are never downloaded here: ``"alexnet"`` (layers 2 and 5),
``"inception"`` (pool), ``"efficientnet"`` (B1, pool), ``"swav"`` (ResNet-50, pool) as plain
torch re-implementations whose parameter names follow torchvision's, so a torchvision
``state_dict`` file (safetensors, or ``.pth`` read with ``torch.load(weights_only=True)``)
loads into them; and ``"clip"`` (ViT-L/14 image embedding through transformers'
``CLIPVisionModelWithProjection``, read with ``local_files_only=True``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from ..errors import DataError, MissingInputError, UsageError
from ..synthetic.stimuli import BACKGROUNDS, COLOURS
from .metrics import CHANCE_TWO_WAY, two_way_identification

#: Environment variable naming a folder of local network weights (torchvision files, CLIP).
WEIGHTS_ENV = "BRAINRECON_WEIGHTS_DIR"
#: Luma weights of scikit-image's ``rgb2gray`` (ITU-R BT.709).
GRAY_WEIGHTS = (0.2125, 0.7154, 0.0721)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: Default CLIP model: the ViT-L/14 of the paper and of MindEye.
CLIP_MODEL = "openai/clip-vit-large-patch14"

SSIMVariant = Literal["2d", "columns"]
Kind = Literal["identification", "distance"]
IDENTIFICATION_RULES = ("takagi", "mindeye")

# --------------------------------------------------------------------------------------------
# Images: checks and resizing
# --------------------------------------------------------------------------------------------


def check_images(images: Any, what: str, *, ndims: Sequence[int]) -> np.ndarray:
    """Return ``images`` as an array after checking dtype, range and shape (…, H, W, 3)."""
    arr = np.asarray(images)
    if arr.dtype != np.uint8 and not np.issubdtype(arr.dtype, np.floating):
        raise DataError(
            f"{what}: dtype {arr.dtype} is not supported; give uint8 (0-255) or floats in [0, 1]"
        )
    if arr.ndim not in ndims or arr.shape[-1] != 3:
        shapes = " or ".join(
            {3: "(H, W, 3)", 4: "(n, H, W, 3)", 5: "(n, n_samples, H, W, 3)"}[d] for d in ndims
        )
        raise DataError(f"{what}: shape {arr.shape} is not {shapes} RGB")
    if arr.size == 0:
        raise DataError(f"{what}: no images (shape {arr.shape})")
    if np.issubdtype(arr.dtype, np.floating):
        lo, hi = float(np.min(arr)), float(np.max(arr))
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise DataError(f"{what}: contains NaN or infinite values")
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise DataError(
                f"{what}: float values span [{lo:.3g}, {hi:.3g}], outside [0, 1]; "
                "rescale (e.g. (x + 1) / 2 for [-1, 1] images) or give uint8"
            )
    return arr


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    """(n, H, W, 3) uint8 or float → float32 tensor (n, 3, H, W) in [0, 1]."""
    arr = np.ascontiguousarray(images)
    t = torch.from_numpy(arr).permute(0, 3, 1, 2)
    if arr.dtype == np.uint8:
        return t.to(torch.float32) / 255.0
    return t.to(torch.float32)


def _resize_tensor(t: torch.Tensor, size: int, *, antialias: bool = True) -> torch.Tensor:
    if tuple(t.shape[-2:]) == (size, size):
        return t
    return F.interpolate(
        t, size=(size, size), mode="bilinear", align_corners=False, antialias=antialias
    )


def resize_images(images: Any, size: int, *, antialias: bool = True) -> np.ndarray:
    """Resize RGB images to ``size`` x ``size`` px, bilinear with antialiasing.

    Parameters
    ----------
    images : ndarray (..., H, W, 3)
        uint8 (0-255) or floats in [0, 1].
    size : int
        Output side in pixels. Images already at that size are returned unchanged (as float).
    antialias : bool
        Low-pass before downsampling (torchvision >= 0.17 and PIL do); no effect when upsampling.

    Returns
    -------
    ndarray (..., size, size, 3), float32 in [0, 1]
    """
    arr = check_images(images, "images", ndims=(3, 4, 5))
    if int(size) < 1:
        raise UsageError(f"size={size}: give a positive number of pixels")
    lead = arr.shape[:-3]
    flat = arr.reshape(-1, *arr.shape[-3:])
    out = _resize_tensor(_to_tensor(flat), int(size), antialias=antialias)
    return out.permute(0, 2, 3, 1).numpy().reshape(*lead, int(size), int(size), 3)


def to_grayscale(images: np.ndarray) -> np.ndarray:
    """RGB (..., 3) in [0, 1] → luma (...), with scikit-image's ``rgb2gray`` weights."""
    return np.asarray(images, dtype=np.float64) @ np.asarray(GRAY_WEIGHTS)


def _pairs(
    originals: Any, reconstructions: Any, *, what: str = "reconstructions"
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Check a set of originals (n, H, W, 3) against reconstructions (n[, S], H', W', 3).

    Returns the originals, the reconstructions as (n, S, H', W', 3) and whether the input had a
    samples axis. A single image (H, W, 3) as reconstructions is broadcast to every original.
    """
    orig = check_images(originals, "originals", ndims=(4,))
    rec = check_images(reconstructions, what, ndims=(3, 4, 5))
    n = len(orig)
    had_samples = rec.ndim == 5
    if rec.ndim == 3:
        rec = np.broadcast_to(rec, (n, 1, *rec.shape))
    elif rec.ndim == 4:
        rec = rec[:, None]
    if len(rec) != n:
        raise DataError(f"{what}: {len(rec)} image sets for {n} originals; give one per original")
    (h0, w0), (h1, w1) = orig.shape[1:3], rec.shape[2:4]
    if abs(h0 / w0 - h1 / w1) > 0.01 * (h0 / w0):
        raise DataError(
            f"{what}: aspect ratio {h1}x{w1} differs from the originals' {h0}x{w0}; "
            "crop or pad them to the same shape"
        )
    return orig, rec, had_samples


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, max(1, size)):
        yield slice(start, min(n, start + max(1, size)))


def _squeeze_samples(values: np.ndarray, had_samples: bool) -> np.ndarray:
    return values if had_samples else values[:, 0]


# --------------------------------------------------------------------------------------------
# PixCorr and SSIM
# --------------------------------------------------------------------------------------------


def _row_standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre rows and divide by their norm; also return which rows were constant."""
    x = x - x.mean(axis=-1, keepdims=True)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    constant = norm[..., 0] == 0
    return x / np.where(norm == 0, 1.0, norm), constant


def pixcorr(
    originals: Any,
    reconstructions: Any,
    *,
    size: int = 425,
    batch_size: int = 4,
) -> np.ndarray:
    """Pearson r between the flattened RGB pixels of each original and its reconstruction(s).

    Both sets are resized to ``size`` x ``size`` px (bilinear, antialiased; see the module
    docstring) before flattening, as MindEye scores PixCorr at 425 px. There is no chance level;
    compare with mismatched pairs or a trivial baseline (:func:`evaluate` reports both).

    Parameters
    ----------
    originals : ndarray (n, H, W, 3)
        The seen images, uint8 or floats in [0, 1].
    reconstructions : ndarray (n, H', W', 3) or (n, n_samples, H', W', 3) or (H', W', 3)
        Reconstructions in the same order (any resolution of the same aspect ratio); a single
        image is compared with every original.
    size : int
        Side in pixels at which the pixels are compared.
    batch_size : int
        Originals processed at once (bounds memory: each takes ``(1 + n_samples) * size**2 * 3``
        float64 values).

    Returns
    -------
    ndarray (n,) or (n, n_samples)
        r per reconstruction (the shape follows ``reconstructions``); the reported score is the
        mean. A constant image has no pattern to correlate, so its r is taken as 0.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> img = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    >>> pixcorr(img, img, size=32).round(6).tolist()
    [1.0, 1.0]
    """
    orig, rec, had_samples = _pairs(originals, reconstructions)
    return _squeeze_samples(_pixcorr_scores(orig, rec, size, batch_size), had_samples)


def _pixcorr_scores(
    orig: np.ndarray,
    rec: np.ndarray,
    size: int,
    batch_size: int,
    order: np.ndarray | None = None,
) -> np.ndarray:
    """PixCorr of checked arrays (n, H, W, 3) vs (n, S, H', W', 3) → (n, S); reconstruction i
    is compared with original ``order[i]`` (default: i)."""
    n, s = rec.shape[:2]
    idx = np.arange(n) if order is None else order
    out = np.zeros((n, s))
    for sl in _chunks(n, batch_size):
        o = resize_images(orig[idx[sl]], size).reshape(sl.stop - sl.start, -1)
        r = resize_images(rec[sl], size).reshape(sl.stop - sl.start, s, -1)
        o_std, o_const = _row_standardise(o.astype(np.float64))
        r_std, r_const = _row_standardise(r.astype(np.float64))
        corr = np.einsum("id,isd->is", o_std, r_std)
        corr[o_const[:, None] | r_const] = 0.0
        out[sl] = corr
    return np.clip(out, -1.0, 1.0)


def _ssim_batch(
    a: np.ndarray,
    b: np.ndarray,
    *,
    variant: SSIMVariant,
    sigma: float,
    truncate: float,
    data_range: float,
    k1: float,
    k2: float,
) -> np.ndarray:
    """Mean SSIM of each pair of grayscale images a[i], b[i] (float64, (m, H, W))."""
    if variant == "2d":
        sig: tuple[float, ...] = (0.0, sigma, sigma)
    else:  # "columns": each column is its own 1-D signal along the image's height
        sig = (0.0, sigma, 0.0)

    def filt(x: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(x, sig, mode="reflect", truncate=truncate)

    ux, uy = filt(a), filt(b)
    vx = filt(a * a) - ux * ux
    vy = filt(b * b) - uy * uy
    vxy = filt(a * b) - ux * uy
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    # Leave out the border where the window reaches past the image (as scikit-image does).
    pad = int(truncate * sigma + 0.5)
    h, w = s.shape[1:]
    inner = s[:, pad : h - pad, pad : w - pad] if variant == "2d" else s[:, pad : h - pad, :]
    return inner.mean(axis=(1, 2))


def ssim(
    originals: Any,
    reconstructions: Any,
    *,
    size: int = 425,
    variant: SSIMVariant = "2d",
    sigma: float = 1.5,
    batch_size: int = 4,
) -> np.ndarray:
    """Structural similarity of each grayscale original and its reconstruction(s).

    Both sets are resized to ``size`` px (bilinear, antialiased), converted to gray with
    ``rgb2gray``'s weights, and compared with Gaussian-weighted local statistics (``sigma``
    1.5, truncated at 3.5 sigma), population covariances, ``K1 = 0.01``, ``K2 = 0.03``, data
    range 1; the mean is taken away from a border of ``int(3.5 * sigma + 0.5)`` px.

    Parameters
    ----------
    originals : ndarray (n, H, W, 3)
        The seen images, uint8 or floats in [0, 1].
    reconstructions : ndarray (n, H', W', 3) or (n, n_samples, H', W', 3) or (H', W', 3)
        Reconstructions in the same order; a single image is compared with every original.
    size : int
        Side in pixels at which the images are compared (at least the window, 11 px).
    variant : {"2d", "columns"}
        ``"2d"``: the standard 2-D SSIM (scikit-image's ``structural_similarity`` with the
        settings above on 2-D gray images). ``"columns"``: what the same call computes when
        ``multichannel=True`` is passed for a 2-D gray image, as MindEye's and Brain-Diffuser's
        evaluation scripts do: scikit-image versions that honour that flag take the last axis
        as channels, so each column is scored as a 1-D signal along the height and the result
        averaged over columns. Newer scikit-image ignores the flag, giving ``"2d"``. Report
        which one a number uses.
    sigma : float
        Standard deviation of the Gaussian window in pixels.
    batch_size : int
        Originals processed at once.

    Returns
    -------
    ndarray (n,) or (n, n_samples)
        SSIM per reconstruction (1 for identical images); the reported score is the mean.
    """
    _check_ssim_options(size, variant, sigma)
    orig, rec, had_samples = _pairs(originals, reconstructions)
    return _squeeze_samples(_ssim_scores(orig, rec, size, variant, sigma, batch_size), had_samples)


def _check_ssim_options(size: int, variant: str, sigma: float) -> None:
    if variant not in ("2d", "columns"):
        raise UsageError(f"variant={variant!r}: use '2d' or 'columns'")
    if not sigma > 0:
        raise UsageError(f"sigma={sigma}: the SSIM window needs a positive width")
    win = 2 * int(3.5 * sigma + 0.5) + 1
    if int(size) < win:
        raise UsageError(f"size={size}: SSIM needs images of at least {win} px (its window)")


def _ssim_scores(
    orig: np.ndarray,
    rec: np.ndarray,
    size: int,
    variant: SSIMVariant,
    sigma: float,
    batch_size: int,
    order: np.ndarray | None = None,
) -> np.ndarray:
    """SSIM of checked arrays → (n, S); reconstruction i against original ``order[i]``."""
    truncate = 3.5
    n, s = rec.shape[:2]
    idx = np.arange(n) if order is None else order
    out = np.zeros((n, s))
    for sl in _chunks(n, batch_size):
        m = sl.stop - sl.start
        go = to_grayscale(resize_images(orig[idx[sl]], size))
        gr = to_grayscale(resize_images(rec[sl], size))
        a = np.repeat(go, s, axis=0)
        b = gr.reshape(m * s, *gr.shape[2:])
        out[sl] = _ssim_batch(
            a, b, variant=variant, sigma=sigma, truncate=truncate, data_range=1.0, k1=0.01, k2=0.03
        ).reshape(m, s)
    return out


def correlation_distance(originals: np.ndarray, reconstructions: np.ndarray) -> np.ndarray:
    """1 - Pearson r between each original's features and those of its reconstruction(s).

    The distance MindEye reports for EfficientNet-B1 and SwAV features
    (``scipy.spatial.distance.correlation`` per pair); lower is better, 1 for unrelated vectors.

    Parameters
    ----------
    originals : ndarray (n, d)
    reconstructions : ndarray (n, d) or (n, n_samples, d)

    Returns
    -------
    ndarray (n,) or (n, n_samples)
    """
    o = np.asarray(originals, dtype=np.float64)
    o = o.reshape(len(o), -1)
    r = np.asarray(reconstructions, dtype=np.float64)
    had_samples = r.ndim == 3
    r3 = r if had_samples else r.reshape(len(r), 1, -1)
    if len(r3) != len(o) or r3.shape[-1] != o.shape[1]:
        raise DataError(f"feature shapes differ: originals {o.shape}, reconstructions {r.shape}")
    o_std, o_const = _row_standardise(o)
    r_std, r_const = _row_standardise(r3)
    if o_const.any() or r_const.any():
        raise DataError("a feature vector is constant, so its correlation distance is undefined")
    d = 1.0 - np.einsum("id,isd->is", o_std, r_std)
    return d if had_samples else d[:, 0]


# --------------------------------------------------------------------------------------------
# Feature extractors and their registry
# --------------------------------------------------------------------------------------------


class FeatureExtractor:
    """Turns images into one or more named feature sets.

    Parameters
    ----------
    name : str
        Registry name (e.g. ``"alexnet"``).
    outputs : mapping of str to {"identification", "distance"}
        Label of each feature set (e.g. ``"AlexNet(2)"``) and how :func:`evaluate` scores it.
    fn : callable
        ``fn(images)`` with images an array (n, H, W, 3) (uint8 or floats in [0, 1]) returning
        a dict label → array (n, d).
    source : str
        Where the weights came from (a file, a model id, or "none"), for provenance.
    batch_size : int
        Images passed to ``fn`` at once.
    """

    def __init__(
        self,
        name: str,
        outputs: Mapping[str, Kind],
        fn: Callable[[np.ndarray], Mapping[str, np.ndarray]],
        *,
        source: str = "none",
        batch_size: int = 64,
    ) -> None:
        for label, kind in outputs.items():
            if kind not in ("identification", "distance"):
                raise UsageError(f"extractor {name!r}: output {label!r} has unknown kind {kind!r}")
        self.name = name
        self.outputs: dict[str, Kind] = dict(outputs)
        self.source = source
        self.batch_size = int(batch_size)
        self._fn = fn

    def __repr__(self) -> str:
        return (
            f"FeatureExtractor({self.name!r}, outputs={list(self.outputs)}, source={self.source!r})"
        )

    def __call__(self, images: Any) -> dict[str, np.ndarray]:
        """Features of ``images`` (n, H, W, 3): a dict label → float array (n, d)."""
        arr = check_images(images, f"images for the {self.name!r} extractor", ndims=(4,))
        parts: dict[str, list[np.ndarray]] = {label: [] for label in self.outputs}
        for sl in _chunks(len(arr), self.batch_size):
            got = self._fn(arr[sl])
            for label in self.outputs:
                if label not in got:
                    raise DataError(f"extractor {self.name!r} returned no {label!r} features")
                parts[label].append(np.asarray(got[label]).reshape(sl.stop - sl.start, -1))
        return {label: np.concatenate(chunks, axis=0) for label, chunks in parts.items()}


_REGISTRY: dict[str, Callable[..., FeatureExtractor]] = {}


def register_extractor(
    name: str, factory: Callable[..., FeatureExtractor], *, overwrite: bool = False
) -> None:
    """Make ``get_extractor(name, **kwargs)`` call ``factory(**kwargs)``.

    Parameters
    ----------
    name : str
        Case-insensitive name.
    factory : callable
        Returns a :class:`FeatureExtractor`; it should fail early (e.g. with
        :class:`~nipype_brainrecon.errors.MissingInputError`) when what it needs is absent.
    overwrite : bool
        Replace an existing registration; otherwise re-registering a name is an error.
    """
    key = str(name).strip().lower()
    if not key:
        raise UsageError("register_extractor: give a non-empty name")
    if not callable(factory):
        raise UsageError(f"register_extractor({name!r}): factory must be callable")
    if key in _REGISTRY and not overwrite:
        raise UsageError(
            f"extractor {key!r} is already registered; pass overwrite=True to replace it"
        )
    _REGISTRY[key] = factory


def available_extractors() -> list[str]:
    """Names that :func:`get_extractor` knows (whether or not their weights are present)."""
    return sorted(_REGISTRY)


def get_extractor(name: str, **kwargs: Any) -> FeatureExtractor:
    """Build the extractor registered as ``name`` with ``kwargs``.

    Raises
    ------
    UsageError
        Unknown name.
    MissingInputError
        The extractor needs weights that are not present locally (the message says where it
        looked and how to provide them).
    """
    key = str(name).strip().lower()
    if key not in _REGISTRY:
        raise UsageError(
            f"unknown feature extractor {name!r}; choose from {', '.join(available_extractors())}"
        )
    extractor = _REGISTRY[key](**kwargs)
    if not isinstance(extractor, FeatureExtractor):
        raise UsageError(f"extractor factory {key!r} returned {type(extractor).__name__}")
    return extractor


# -- weight-free extractors ------------------------------------------------------------------


def _pixels_factory(*, size: int = 64, batch_size: int = 64) -> FeatureExtractor:
    """Downsampled RGB pixels (``size`` x ``size`` x 3 values), bilinear with antialiasing."""
    if int(size) < 1:
        raise UsageError(f"pixels extractor: size={size} must be positive")

    def fn(images: np.ndarray) -> dict[str, np.ndarray]:
        return {"Pixels": resize_images(images, size).reshape(len(images), -1)}

    return FeatureExtractor("pixels", {"Pixels": "identification"}, fn, batch_size=batch_size)


def lowlevel_features(
    images: Any,
    *,
    size: int = 128,
    sigmas: Sequence[float] = (1.0, 2.0, 4.0),
    n_orientations: int = 4,
    grid: int = 8,
    bins: int = 16,
) -> dict[str, np.ndarray]:
    """Low-level image features that need no learned weights.

    ``"LowLevel(energy)"``: oriented edge energy, a Gabor-like description of local structure:
    the grayscale image at ``size`` px is differentiated with Gaussian derivative filters at
    each scale ``sigmas`` (px), steered to ``n_orientations`` orientations, squared, averaged in
    a ``grid`` x ``grid`` layout of cells and square-rooted (amplitude), giving
    ``len(sigmas) * n_orientations * grid**2`` values. ``"LowLevel(colour)"``: the histogram
    of each RGB channel over ``bins`` equal bins of [0, 1], as fractions (``3 * bins`` values).

    Parameters
    ----------
    images : ndarray (n, H, W, 3)
        uint8 or floats in [0, 1].

    Returns
    -------
    dict of str to ndarray (n, d)
    """
    arr = check_images(images, "images", ndims=(4,))
    if int(size) % int(grid):
        raise UsageError(f"lowlevel features: size={size} must be a multiple of grid={grid}")
    n, cell = len(arr), int(size) // int(grid)
    rgb = resize_images(arr, size).astype(np.float64)
    gray = to_grayscale(rgb)
    energy = []
    for s in sigmas:
        gy = ndimage.gaussian_filter(gray, (0, s, s), order=(0, 1, 0), mode="reflect")
        gx = ndimage.gaussian_filter(gray, (0, s, s), order=(0, 0, 1), mode="reflect")
        for k in range(int(n_orientations)):
            theta = math.pi * k / n_orientations
            # Scale-normalised (sigma * gradient) so every scale has a comparable magnitude.
            e = (s * (math.cos(theta) * gx + math.sin(theta) * gy)) ** 2
            pooled = e.reshape(n, grid, cell, grid, cell).mean(axis=(2, 4))
            energy.append(np.sqrt(pooled).reshape(n, -1))
    idx = np.clip((rgb * bins).astype(np.int64), 0, bins - 1)  # (n, size, size, 3)
    # One bincount over (image, channel, bin) codes gives every histogram at once.
    codes = (np.arange(n)[:, None, None, None] * 3 + np.arange(3)) * bins + idx
    counts = np.bincount(codes.ravel(), minlength=n * 3 * bins).reshape(n, 3 * bins)
    return {
        "LowLevel(energy)": np.concatenate(energy, axis=1),
        "LowLevel(colour)": counts / float(size * size),
    }


def _lowlevel_factory(*, batch_size: int = 64, **kwargs: Any) -> FeatureExtractor:
    """Oriented edge energy and colour histograms (see :func:`lowlevel_features`)."""
    lowlevel_features(np.zeros((1, 16, 16, 3), np.uint8), **kwargs)  # check kwargs early

    def fn(images: np.ndarray) -> dict[str, np.ndarray]:
        return lowlevel_features(images, **kwargs)

    outputs: dict[str, Kind] = {
        "LowLevel(energy)": "identification",
        "LowLevel(colour)": "identification",
    }
    return FeatureExtractor("lowlevel", outputs, fn, batch_size=batch_size)


def scene_colour_features(
    images: Any,
    *,
    size: int = 64,
    object_colours: Mapping[str, Sequence[int]] = COLOURS,
    backgrounds: Mapping[str, Sequence[int]] = BACKGROUNDS,
) -> dict[str, np.ndarray]:
    """What the captions of the package's synthetic stimuli name: object colours, background.

    A weights-free stand-in for a semantic (CLIP-like) feature, meaningful only for stimuli drawn
    from a known palette (the simulator's :data:`~nipype_brainrecon.synthetic.stimuli.COLOURS` objects on
    :data:`~nipype_brainrecon.synthetic.stimuli.BACKGROUNDS`); not for natural images. The background is
    the palette background nearest to the image's median colour; a pixel belongs to an object
    when a palette object colour is at most half as far from it as that background (so that the
    blends at anti-aliased or blurred edges do not count). ``"Scene(colours)"`` is
    each object colour's share of the object pixels (all zero when there are none) followed by
    the one-hot background: ``len(object_colours) + len(backgrounds)`` values. Shares, not pixel
    counts, so that *which* colours appear matters rather than how large the objects are.

    Parameters
    ----------
    images : ndarray (n, H, W, 3)
        uint8 or floats in [0, 1].
    size : int
        Side the images are resized to first (px).
    object_colours, backgrounds : mapping of name to RGB (0-255)
        The palette.

    Returns
    -------
    dict of str to ndarray (n, d)
    """
    arr = check_images(images, "images", ndims=(4,))
    if not object_colours or not backgrounds:
        raise UsageError(
            "scene colour features: give at least one object and one background colour"
        )
    rgb = resize_images(arr, int(size)).astype(np.float64).reshape(len(arr), -1, 3) * 255.0
    objects = np.asarray(list(object_colours.values()), np.float64)
    grounds = np.asarray(list(backgrounds.values()), np.float64)
    median = np.median(rgb, axis=1)
    ground = ((median[:, None, :] - grounds[None]) ** 2).sum(-1).argmin(1)
    to_objects = ((rgb[:, :, None, :] - objects[None, None]) ** 2).sum(-1)
    to_ground = ((rgb - grounds[ground][:, None, :]) ** 2).sum(-1)
    nearest = to_objects.argmin(-1)
    is_object = to_objects.min(-1) < 0.25 * to_ground  # at most half as far: not edge blends
    counts = np.stack(
        [(is_object & (nearest == k)).sum(1) for k in range(len(objects))], axis=1
    ).astype(np.float64)
    shares = counts / np.maximum(counts.sum(1, keepdims=True), 1.0)
    return {"Scene(colours)": np.concatenate([shares, np.eye(len(grounds))[ground]], axis=1)}


def _scene_factory(*, batch_size: int = 64, **kwargs: Any) -> FeatureExtractor:
    """Object colours and background of synthetic stimuli (see :func:`scene_colour_features`)."""
    scene_colour_features(np.zeros((1, 16, 16, 3), np.uint8), **kwargs)  # check kwargs early

    def fn(images: np.ndarray) -> dict[str, np.ndarray]:
        return scene_colour_features(images, **kwargs)

    return FeatureExtractor(
        "scene", {"Scene(colours)": "identification"}, fn, batch_size=batch_size
    )


# -- torchvision-compatible networks (plain torch, parameter names as torchvision's) ----------


class AlexNetFeatures(nn.Module):
    """AlexNet with torchvision's layout (``features``, ``avgpool``, ``classifier``).

    ``forward`` returns the outputs of ``features.4`` (ReLU after the 2nd convolution: "layer 2")
    and ``features.11`` (ReLU after the 5th: "layer 5"), the nodes MindEye reads.
    """

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(0.5),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for i, layer in enumerate(self.features[:12]):
            x = layer(x)
            if i in (4, 11):
                out[f"features.{i}"] = x
        return out


class _ConvBNReLU(nn.Module):
    """Inception's basic unit: convolution without bias, batch norm (eps 1e-3), ReLU."""

    def __init__(self, cin: int, cout: int, **conv: Any) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **conv)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg3(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)


class _MixedA(nn.Module):
    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = _ConvBNReLU(cin, 64, kernel_size=1)
        self.branch5x5_1 = _ConvBNReLU(cin, 48, kernel_size=1)
        self.branch5x5_2 = _ConvBNReLU(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = _ConvBNReLU(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = _ConvBNReLU(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = _ConvBNReLU(96, 96, kernel_size=3, padding=1)
        self.branch_pool = _ConvBNReLU(cin, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_avg3(x))], 1)


class _MixedB(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = _ConvBNReLU(cin, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = _ConvBNReLU(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = _ConvBNReLU(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = _ConvBNReLU(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class _MixedC(nn.Module):
    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        row, col = (
            {"kernel_size": (1, 7), "padding": (0, 3)},
            {"kernel_size": (7, 1), "padding": (3, 0)},
        )
        self.branch1x1 = _ConvBNReLU(cin, 192, kernel_size=1)
        self.branch7x7_1 = _ConvBNReLU(cin, c7, kernel_size=1)
        self.branch7x7_2 = _ConvBNReLU(c7, c7, **row)
        self.branch7x7_3 = _ConvBNReLU(c7, 192, **col)
        self.branch7x7dbl_1 = _ConvBNReLU(cin, c7, kernel_size=1)
        self.branch7x7dbl_2 = _ConvBNReLU(c7, c7, **col)
        self.branch7x7dbl_3 = _ConvBNReLU(c7, c7, **row)
        self.branch7x7dbl_4 = _ConvBNReLU(c7, c7, **col)
        self.branch7x7dbl_5 = _ConvBNReLU(c7, 192, **row)
        self.branch_pool = _ConvBNReLU(cin, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for k in range(1, 6):
            d = getattr(self, f"branch7x7dbl_{k}")(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg3(x))], 1)


class _MixedD(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = _ConvBNReLU(cin, 192, kernel_size=1)
        self.branch3x3_2 = _ConvBNReLU(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = _ConvBNReLU(cin, 192, kernel_size=1)
        self.branch7x7x3_2 = _ConvBNReLU(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _ConvBNReLU(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _ConvBNReLU(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = x
        for k in range(1, 5):
            b7 = getattr(self, f"branch7x7x3_{k}")(b7)
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class _MixedE(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        row, col = (
            {"kernel_size": (1, 3), "padding": (0, 1)},
            {"kernel_size": (3, 1), "padding": (1, 0)},
        )
        self.branch1x1 = _ConvBNReLU(cin, 320, kernel_size=1)
        self.branch3x3_1 = _ConvBNReLU(cin, 384, kernel_size=1)
        self.branch3x3_2a = _ConvBNReLU(384, 384, **row)
        self.branch3x3_2b = _ConvBNReLU(384, 384, **col)
        self.branch3x3dbl_1 = _ConvBNReLU(cin, 448, kernel_size=1)
        self.branch3x3dbl_2 = _ConvBNReLU(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = _ConvBNReLU(384, 384, **row)
        self.branch3x3dbl_3b = _ConvBNReLU(384, 384, **col)
        self.branch_pool = _ConvBNReLU(cin, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        return torch.cat([self.branch1x1(x), b3, d, self.branch_pool(_avg3(x))], 1)


class _InceptionAux(nn.Module):
    """The auxiliary classifier: present in the weights, unused for features."""

    def __init__(self, cin: int, num_classes: int) -> None:
        super().__init__()
        self.conv0 = _ConvBNReLU(cin, 128, kernel_size=1)
        self.conv1 = _ConvBNReLU(128, 768, kernel_size=5)
        self.fc = nn.Linear(768, num_classes)


class InceptionV3Features(nn.Module):
    """Inception v3 with torchvision's layout; ``forward`` returns the 2,048-d ``avgpool``.

    ``transform_input=True`` maps ImageNet-normalised input to the [-1, 1] scaling the ported
    Google weights expect, as torchvision does whenever it loads those weights.
    """

    def __init__(self, num_classes: int = 1000, transform_input: bool = True) -> None:
        super().__init__()
        self.transform_input = transform_input
        self.Conv2d_1a_3x3 = _ConvBNReLU(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = _ConvBNReLU(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = _ConvBNReLU(32, 64, kernel_size=3, padding=1)
        self.maxpool1 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Conv2d_3b_1x1 = _ConvBNReLU(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = _ConvBNReLU(80, 192, kernel_size=3)
        self.maxpool2 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Mixed_5b = _MixedA(192, 32)
        self.Mixed_5c = _MixedA(256, 64)
        self.Mixed_5d = _MixedA(288, 64)
        self.Mixed_6a = _MixedB(288)
        self.Mixed_6b = _MixedC(768, 128)
        self.Mixed_6c = _MixedC(768, 160)
        self.Mixed_6d = _MixedC(768, 160)
        self.Mixed_6e = _MixedC(768, 192)
        self.AuxLogits = _InceptionAux(768, num_classes)
        self.Mixed_7a = _MixedD(768)
        self.Mixed_7b = _MixedE(1280)
        self.Mixed_7c = _MixedE(2048)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(2048, num_classes)
        self._trunk = [
            "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
            "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a",
            "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c",
        ]  # fmt: skip

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.transform_input:
            mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
            std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
            x = (x * std + mean - 0.5) / 0.5
        for name in self._trunk:
            x = getattr(self, name)(x)
        return {"avgpool": self.avgpool(x)}


def _make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor`` without losing more than 10 %."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


class _ConvBNAct(nn.Sequential):
    """Convolution (same padding, no bias), batch norm, optional SiLU: keys ``0``, ``1``."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if act:
            layers.append(nn.SiLU())
        super().__init__(*layers)


class _SqueezeExcite(nn.Module):
    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.fc2(F.silu(self.fc1(F.adaptive_avg_pool2d(x, 1))))
        return x * torch.sigmoid(scale)


class _MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        hidden = _make_divisible(cin * expand)
        layers: list[nn.Module] = []
        if hidden != cin:
            layers.append(_ConvBNAct(cin, hidden, 1))
        layers += [
            _ConvBNAct(hidden, hidden, kernel, stride, groups=hidden),
            _SqueezeExcite(hidden, max(1, cin // 4)),
            _ConvBNAct(hidden, cout, 1, act=False),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Stochastic depth is the identity at inference.
        return self.block(x) + x if self.residual else self.block(x)


#: EfficientNet-B1 stages: (expand ratio, kernel, stride, in, out, blocks); B0's block counts
#: times the depth multiplier 1.1, rounded up.
_EFFNET_B1_STAGES = (
    (1, 3, 1, 32, 16, 2),
    (6, 3, 2, 16, 24, 3),
    (6, 5, 2, 24, 40, 3),
    (6, 3, 2, 40, 80, 4),
    (6, 5, 1, 80, 112, 4),
    (6, 5, 2, 112, 192, 5),
    (6, 3, 1, 192, 320, 2),
)


class EfficientNetB1Features(nn.Module):
    """EfficientNet-B1 with torchvision's layout; ``forward`` returns the 1,280-d ``avgpool``."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [_ConvBNAct(3, 32, 3, stride=2)]
        for expand, kernel, stride, cin, cout, blocks in _EFFNET_B1_STAGES:
            stage = [
                _MBConv(cin if b == 0 else cout, cout, expand, kernel, stride if b == 0 else 1)
                for b in range(blocks)
            ]
            layers.append(nn.Sequential(*stage))
        layers.append(_ConvBNAct(320, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"avgpool": self.avgpool(self.features(x))}


class _Bottleneck(nn.Module):
    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * 4)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != width * 4:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, width * 4, 1, stride, bias=False), nn.BatchNorm2d(width * 4)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class ResNet50Features(nn.Module):
    """ResNet-50 (v1.5, stride in the 3x3 convolution) with torchvision's layout.

    The architecture SwAV's released checkpoint fits; ``forward`` returns the 2,048-d
    ``avgpool``.
    """

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, (width, blocks, stride) in enumerate(
            [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)], start=1
        ):
            layer = []
            for b in range(blocks):
                layer.append(_Bottleneck(cin, width, stride if b == 0 else 1))
                cin = width * 4
            setattr(self, f"layer{i}", nn.Sequential(*layer))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return {"avgpool": self.avgpool(x)}


def _weights_dirs() -> list[Path]:
    """Where network weights are looked for: $BRAINRECON_WEIGHTS_DIR, then torch's cache."""
    dirs = []
    env = os.environ.get(WEIGHTS_ENV, "").strip()
    if env:
        dirs.append(Path(env).expanduser())
    dirs.append(Path(torch.hub.get_dir()) / "checkpoints")
    return dirs


def find_weights(
    what: str, patterns: Sequence[str], weights: str | os.PathLike | None = None
) -> Path:
    """Locate a local weights file: ``weights`` if given, else the first file matching
    ``patterns`` in ``$BRAINRECON_WEIGHTS_DIR`` and then in torch's hub cache
    (``$TORCH_HOME/hub/checkpoints``, where torchvision keeps what it downloads).

    Raises
    ------
    MissingInputError
        Nothing found; the message names every place looked and the fix.
    """
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise MissingInputError(f"{path}: {what} weights file not found; check weights=")
        return path
    looked = []
    for folder in _weights_dirs():
        looked.append(str(folder))
        if folder.is_dir():
            for pattern in patterns:
                hits = sorted(p for p in folder.glob(pattern) if p.is_file())
                if hits:
                    return hits[0]
    raise MissingInputError(
        f"{what}: no weights file matching {' or '.join(patterns)} in {', '.join(looked)}; "
        f"copy the file there, set {WEIGHTS_ENV}=FOLDER, or pass weights=PATH (never downloaded)"
    )


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from safetensors, or from a torch file without unpickling code.

    ``.pth``/``.pt``/``.tar`` files are read with ``torch.load(weights_only=True)``; a dict
    nested under ``"state_dict"`` or ``"model"`` is unwrapped and a ``"module."`` prefix
    (from ``DataParallel`` training, e.g. SwAV's checkpoint) removed.
    """
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unreadable, truncated or carrying pickled code
        raise DataError(f"{path}: cannot read weights ({type(exc).__name__}: {exc})") from exc
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping):
        raise DataError(f"{path}: holds a {type(state).__name__}, not a state dict of tensors")
    out = {}
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            out[key[len("module.") :] if key.startswith("module.") else key] = value
    return out


def load_network_weights(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    source: str,
    optional: Sequence[str] = (),
) -> nn.Module:
    """Copy ``state`` into ``module``, checking names and shapes.

    Every parameter and buffer of ``module`` must be in ``state`` except those under the
    ``optional`` prefixes (classification heads, unused for features) and BatchNorm's
    ``num_batches_tracked``; extra entries (other heads) are ignored.
    """
    own = module.state_dict()
    missing = [
        k
        for k in own
        if k not in state
        and not k.endswith("num_batches_tracked")
        and not any(k.startswith(p) for p in optional)
    ]
    if missing:
        raise DataError(
            f"{source}: not weights for this network ({len(missing)} entries missing, e.g. "
            f"{', '.join(missing[:3])}); give the torchvision-format file"
        )
    for key, value in state.items():
        if key in own and tuple(own[key].shape) != tuple(value.shape):
            raise DataError(
                f"{source}: {key} has shape {tuple(value.shape)}, the network expects "
                f"{tuple(own[key].shape)}; give the torchvision-format file"
            )
    module.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return module.eval()


def _torch_extractor(
    name: str,
    module: nn.Module,
    nodes: Mapping[str, str],
    kinds: Mapping[str, Kind],
    *,
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    source: str,
    device: str | torch.device,
    batch_size: int,
) -> FeatureExtractor:
    """Wrap a network whose ``forward`` returns a dict of node outputs."""
    dev = torch.device(device)
    module = module.to(dev).eval()
    m = torch.tensor(mean, dtype=torch.float32, device=dev).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=dev).view(1, 3, 1, 1)

    def fn(images: np.ndarray) -> dict[str, np.ndarray]:
        x = _resize_tensor(_to_tensor(images).to(dev), input_size)
        with torch.inference_mode():
            out = module((x - m) / s)
        return {label: out[node].flatten(1).float().cpu().numpy() for label, node in nodes.items()}

    return FeatureExtractor(name, kinds, fn, source=source, batch_size=batch_size)


def _alexnet_factory(
    *,
    weights: str | os.PathLike | None = None,
    device: str = "cpu",
    batch_size: int = 32,
    input_size: int = 256,
) -> FeatureExtractor:
    """AlexNet layers 2 and 5 (torchvision's ``features.4`` / ``features.11``) at 256 px."""
    path = find_weights("alexnet", ["alexnet*.safetensors", "alexnet*.pth"], weights)
    net = load_network_weights(
        AlexNetFeatures(), load_state_dict_file(path), source=str(path), optional=["classifier."]
    )
    return _torch_extractor(
        "alexnet",
        net,
        {"AlexNet(2)": "features.4", "AlexNet(5)": "features.11"},
        {"AlexNet(2)": "identification", "AlexNet(5)": "identification"},
        input_size=input_size,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        source=str(path),
        device=device,
        batch_size=batch_size,
    )


def _inception_factory(
    *,
    weights: str | os.PathLike | None = None,
    device: str = "cpu",
    batch_size: int = 16,
    input_size: int = 342,
) -> FeatureExtractor:
    """InceptionV3 pool features (2,048-d) at 342 px, torchvision's ``transform_input`` on."""
    path = find_weights("inception", ["inception_v3*.safetensors", "inception_v3*.pth"], weights)
    net = load_network_weights(
        InceptionV3Features(),
        load_state_dict_file(path),
        source=str(path),
        optional=["AuxLogits.", "fc."],
    )
    return _torch_extractor(
        "inception",
        net,
        {"InceptionV3": "avgpool"},
        {"InceptionV3": "identification"},
        input_size=input_size,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        source=str(path),
        device=device,
        batch_size=batch_size,
    )


def _efficientnet_factory(
    *,
    weights: str | os.PathLike | None = None,
    device: str = "cpu",
    batch_size: int = 16,
    input_size: int = 255,
) -> FeatureExtractor:
    """EfficientNet-B1 pool features (1,280-d) at 255 px, scored as a distance."""
    path = find_weights(
        "efficientnet", ["efficientnet_b1*.safetensors", "efficientnet_b1*.pth"], weights
    )
    net = load_network_weights(
        EfficientNetB1Features(),
        load_state_dict_file(path),
        source=str(path),
        optional=["classifier."],
    )
    return _torch_extractor(
        "efficientnet",
        net,
        {"EffNet-B1": "avgpool"},
        {"EffNet-B1": "distance"},
        input_size=input_size,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        source=str(path),
        device=device,
        batch_size=batch_size,
    )


def _swav_factory(
    *,
    weights: str | os.PathLike | None = None,
    device: str = "cpu",
    batch_size: int = 16,
    input_size: int = 255,
) -> FeatureExtractor:
    """SwAV ResNet-50 pool features (2,048-d) at 255 px (MindEye's preprocessing), a distance."""
    path = find_weights(
        "swav", ["swav*.safetensors", "swav*.pth", "swav*.pth.tar", "resnet50_swav*"], weights
    )
    net = load_network_weights(
        ResNet50Features(), load_state_dict_file(path), source=str(path), optional=["fc."]
    )
    return _torch_extractor(
        "swav",
        net,
        {"SwAV": "avgpool"},
        {"SwAV": "distance"},
        input_size=input_size,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        source=str(path),
        device=device,
        batch_size=batch_size,
    )


class _ClipImageEmbeds(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"image_embeds": self.model(pixel_values=x).image_embeds}


def _load_clip_vision(model: str | os.PathLike) -> tuple[nn.Module, str]:
    from transformers import CLIPVisionModelWithProjection

    text = os.fspath(model)
    candidates = [Path(text).expanduser()]
    env = os.environ.get(WEIGHTS_ENV, "").strip()
    if env:
        candidates.append(Path(env).expanduser() / text.rstrip("/").split("/")[-1])
    for folder in candidates:
        if folder.is_dir():
            try:
                net = CLIPVisionModelWithProjection.from_pretrained(
                    folder, local_files_only=True, use_safetensors=True
                )
            except (OSError, ValueError) as exc:
                raise MissingInputError(
                    f"{folder}: no CLIP vision model in safetensors format here ({exc}); "
                    "give a transformers model folder"
                ) from exc
            return net, str(folder)
    looks_like_path = text.startswith((".", "/", "~")) or os.sep in text.replace("/", "", 1)
    if looks_like_path:
        raise MissingInputError(f"{text}: CLIP model folder not found; check model=")
    try:
        net = CLIPVisionModelWithProjection.from_pretrained(
            text, local_files_only=True, use_safetensors=True
        )
    except (OSError, ValueError) as exc:
        from huggingface_hub import constants

        where = [constants.HF_HUB_CACHE] + [str(c) for c in candidates[1:]]
        raise MissingInputError(
            f"{text}: CLIP vision model not found locally (looked in {', '.join(where)}); "
            f"download it once where a network is available (huggingface-cli download {text}) "
            "or pass model=FOLDER; it is never downloaded here"
        ) from exc
    return net, text


def _clip_factory(
    *,
    model: str | os.PathLike | nn.Module = CLIP_MODEL,
    device: str = "cpu",
    batch_size: int = 16,
    input_size: int | None = None,
) -> FeatureExtractor:
    """CLIP image embedding (``image_embeds``: 768-d for ViT-L/14), MindEye's preprocessing:
    bilinear resize to the model's input size (224 px) and CLIP's normalisation.

    ``model`` is a hub id read from the local Hugging Face cache only, a local folder, or an
    already built ``CLIPVisionModelWithProjection``.
    """
    if isinstance(model, nn.Module):
        net, source = model, f"in-memory {type(model).__name__}"
    else:
        net, source = _load_clip_vision(model)
    size = int(input_size or net.config.image_size)
    return _torch_extractor(
        "clip",
        _ClipImageEmbeds(net),
        {"CLIP": "image_embeds"},
        {"CLIP": "identification"},
        input_size=size,
        mean=CLIP_MEAN,
        std=CLIP_STD,
        source=source,
        device=device,
        batch_size=batch_size,
    )


for _name, _factory in {
    "pixels": _pixels_factory,
    "lowlevel": _lowlevel_factory,
    "scene": _scene_factory,
    "alexnet": _alexnet_factory,
    "inception": _inception_factory,
    "clip": _clip_factory,
    "efficientnet": _efficientnet_factory,
    "swav": _swav_factory,
}.items():
    register_extractor(_name, _factory)

#: The full suite of the later papers (needs local weights for all but the first two).
PAPER_EXTRACTORS = ("pixels", "lowlevel", "alexnet", "inception", "clip", "efficientnet", "swav")

# --------------------------------------------------------------------------------------------
# The metrics table
# --------------------------------------------------------------------------------------------


def derangement(n: int, seed: int = 0) -> np.ndarray:
    """A seeded pairing of every image with a different one (a single cycle)."""
    order = np.random.default_rng(seed).permutation(n)
    out = np.empty(n, dtype=np.int64)
    out[order] = np.roll(order, -1)
    return out


def load_images(paths: Sequence[str | os.PathLike], *, size: tuple[int, int]) -> np.ndarray:
    """Read images as uint8 RGB arrays (n, H, W, 3), resized (Lanczos) to ``size`` = (H, W).

    Raises
    ------
    MissingInputError, DataError
        A file is absent or cannot be read as an image.
    """
    from PIL import Image, UnidentifiedImageError

    height, width = int(size[0]), int(size[1])
    out = np.empty((len(paths), height, width, 3), dtype=np.uint8)
    for i, path in enumerate(paths):
        if not Path(path).is_file():
            raise MissingInputError(f"{path}: seen image not found")
        try:
            with Image.open(path) as img:
                rgb = img.convert("RGB")
                if rgb.size != (width, height):
                    rgb = rgb.resize((width, height), Image.Resampling.LANCZOS)
                out[i] = np.asarray(rgb)
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"{path}: cannot be read as an image ({exc})") from exc
    return out


def _check_baselines(
    baselines: Mapping[str, Any] | None, n: int, aspect: float
) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, images in (baselines or {}).items():
        if not isinstance(name, str) or not name.strip():
            raise UsageError("baselines: give each baseline a non-empty name")
        arr = check_images(images, f"baseline {name!r}", ndims=(3, 4, 5))
        if arr.ndim > 3 and len(arr) != n:
            raise DataError(
                f"baseline {name!r}: {len(arr)} image sets for {n} originals; give one per "
                "original or a single image"
            )
        h, w = arr.shape[-3:-1]
        if abs(h / w - aspect) > 0.01 * aspect:
            raise DataError(f"baseline {name!r}: aspect ratio {h}x{w} differs from the originals'")
        out[name.strip()] = arr
    return out


def _features(extractor: FeatureExtractor, images: np.ndarray) -> dict[str, np.ndarray]:
    """Features of (H, W, 3), (n, H, W, 3) or (n, S, H, W, 3) images, keeping the lead axes."""
    if images.ndim == 3:
        return extractor(images[None])  # one image: features once, (1, d)
    lead = images.shape[:-3]
    feats = extractor(images.reshape(-1, *images.shape[-3:]))
    return {k: v.reshape(*lead, -1) for k, v in feats.items()}


def _broadcast_rows(feat: np.ndarray, n: int) -> np.ndarray:
    return np.broadcast_to(feat, (n, *feat.shape[1:])) if len(feat) == 1 and n > 1 else feat


def _identify_baseline(
    orig_feats: np.ndarray, base_feats: np.ndarray, images: np.ndarray, rule: str
) -> np.ndarray:
    """Two-way identification of a baseline; a single image stands for every original.

    Under Takagi's rule a single image's features tie in every comparison (the same
    reconstruction for every original), which the strict rule would count as failures and
    float rounding in the matrix product would break at random; they are counted half, so the
    score is the chance level it truly is. MindEye's rule compares different originals with
    one reconstruction, so it needs no special case (the mean rank is exactly 0.5).
    """
    if images.ndim == 3 and rule == "takagi":
        return np.full(len(orig_feats), CHANCE_TWO_WAY)
    return two_way_identification(orig_feats, base_feats, rule=rule)


def evaluate(
    originals: Any,
    reconstructions: Any,
    *,
    extractors: Sequence[str | FeatureExtractor] = ("pixels", "lowlevel"),
    size: int = 425,
    baselines: Mapping[str, Any] | None = None,
    ssim_variant: SSIMVariant = "2d",
    seed: int = 0,
    batch_size: int = 4,
    per_image: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Score reconstructions with the whole suite, each metric beside chance and baselines.

    Parameters
    ----------
    originals : ndarray (n, H, W, 3)
        The seen (test) images, uint8 or floats in [0, 1].
    reconstructions : ndarray (n, H', W', 3) or (n, n_samples, H', W', 3)
        Reconstructions in the same order; any resolution of the same aspect ratio.
    extractors : sequence of str or FeatureExtractor
        Registry names (built with default arguments) or built extractors. Each output gives
        two-way identification with Takagi's and MindEye's rules, or, for EfficientNet-B1 and
        SwAV, a correlation distance.
    size : int
        Side in pixels for PixCorr and SSIM (425 as MindEye).
    baselines : mapping of str to ndarray, optional
        Trivial reconstructions scored the same way, one column each, e.g.
        ``{"mean training image": img (H, W, 3) or (n, H, W, 3), "shuffled latents": recons
        (n, S, H, W, 3) made from shuffled decoded latents}``. A single image stands for every
        original (its features are computed once).
    ssim_variant : {"2d", "columns"}
        See :func:`ssim`.
    seed : int
        Seeds the mismatched pairing.
    batch_size : int
        Originals processed at once for PixCorr and SSIM.
    per_image : bool
        Also return a per-image table (rows: originals; columns: metrics, mean over samples).

    Returns
    -------
    pandas.DataFrame
        One row per metric (index: its label, e.g. ``"PixCorr"``, ``"SSIM"``,
        ``"AlexNet(2) 2-way (mindeye)"``, ``"SwAV distance"``) with columns ``features``,
        ``score`` (``pixcorr``, ``ssim``, ``two-way``, ``distance``), ``rule``, ``better``
        (``higher``/``lower``), ``value`` (the reconstructions' mean), ``chance`` (0.5 for
        two-way identification; NaN where no analytic chance level exists), ``mismatched``
        (the reconstructions scored against the wrong originals, a seeded derangement: the
        empirical chance level of every metric) and ``baseline: NAME`` per baseline.
        ``DataFrame.attrs`` records the settings and each extractor's weights source.
        With ``per_image=True``, ``(table, per_image_table)``.
    """
    _check_ssim_options(size, ssim_variant, 1.5)
    orig, rec, _ = _pairs(originals, reconstructions)
    n, n_samples = rec.shape[:2]
    if n < 2:
        raise DataError(f"originals: {n} image; scoring needs at least 2")
    base = _check_baselines(baselines, n, orig.shape[1] / orig.shape[2])
    built: list[FeatureExtractor] = []
    for item in extractors:
        built.append(item if isinstance(item, FeatureExtractor) else get_extractor(item))
    wrong = derangement(n, seed)

    rows: list[dict[str, Any]] = []
    per: dict[str, np.ndarray] = {}

    def add(label, features, score, rule, better, value, chance, mismatched, base_values):
        row = {
            "metric": label,
            "features": features,
            "score": score,
            "rule": rule,
            "better": better,
            "value": float(np.mean(value)),
            "chance": chance,
            "mismatched": float(np.mean(mismatched)),
        }
        for name, v in base_values.items():
            row[f"baseline: {name}"] = float(np.mean(v))
        rows.append(row)
        per[label] = np.asarray(value).reshape(n, -1).mean(axis=1)

    base_sets = {
        name: _pairs(orig, imgs, what=f"baseline {name!r}")[1] for name, imgs in base.items()
    }
    scorers = {
        "PixCorr": lambda r, order=None: _pixcorr_scores(orig, r, size, batch_size, order),
        "SSIM": lambda r, order=None: _ssim_scores(
            orig, r, size, ssim_variant, 1.5, batch_size, order
        ),
    }
    for label, score in scorers.items():
        add(
            label,
            "pixels",
            label.lower(),
            None,
            "higher",
            score(rec),
            float("nan"),
            score(rec, wrong),
            {name: score(imgs) for name, imgs in base_sets.items()},
        )

    sources = {}
    for extractor in built:
        sources[extractor.name] = extractor.source
        f_orig = extractor(orig)
        f_rec = _features(extractor, rec)
        f_base = {name: _features(extractor, imgs) for name, imgs in base.items()}
        for out, kind in extractor.outputs.items():
            fb = {name: _broadcast_rows(f[out], n) for name, f in f_base.items()}
            if kind == "distance":
                add(
                    f"{out} distance",
                    out,
                    "distance",
                    None,
                    "lower",
                    correlation_distance(f_orig[out], f_rec[out]),
                    float("nan"),
                    correlation_distance(f_orig[out][wrong], f_rec[out]),
                    {name: correlation_distance(f_orig[out], f) for name, f in fb.items()},
                )
                continue
            for rule in IDENTIFICATION_RULES:
                add(
                    f"{out} 2-way ({rule})",
                    out,
                    "two-way",
                    rule,
                    "higher",
                    two_way_identification(f_orig[out], f_rec[out], rule=rule),
                    CHANCE_TWO_WAY,
                    two_way_identification(f_orig[out][wrong], f_rec[out], rule=rule),
                    {
                        name: _identify_baseline(f_orig[out], f, base[name], rule)
                        for name, f in fb.items()
                    },
                )

    table = pd.DataFrame(rows).set_index("metric")
    table.attrs = {
        "n_images": int(n),
        "n_samples": int(n_samples),
        "size": int(size),
        "resize": "bilinear, antialiased (torch interpolate)",
        "ssim_variant": ssim_variant,
        "ssim_settings": "gray (rgb2gray weights), gaussian sigma 1.5 truncate 3.5, "
        "population covariance, K1 0.01, K2 0.03, data range 1",
        "mismatched_seed": int(seed),
        "extractor_sources": sources,
        "baselines": list(base),
        "chance_note": "two-way identification: 0.5; PixCorr, SSIM and distances have no "
        "analytic chance level: see 'mismatched' and the baselines",
    }
    if not per_image:
        return table
    per_table = pd.DataFrame(per, index=pd.RangeIndex(n, name="image"))
    return table, per_table
