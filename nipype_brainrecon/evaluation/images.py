"""Images for scoring: checks, resizing, grayscale, pairing originals with reconstructions.

All resizing here is bilinear with antialiasing (``torch.nn.functional.interpolate(
mode="bilinear", antialias=True)``), the behaviour of torchvision's ``Resize(size,
InterpolationMode.BILINEAR)`` on tensors since torchvision 0.17 and of PIL's bilinear filter;
:func:`resize_images` gives ``size`` x ``size`` (PixCorr, SSIM, CLIP); the networks resize the
shorter side to ``size``, as torchvision's ``Resize(int)`` (``networks.resize_short_side``). MindEye's scripts call that ``Resize``; which
antialiasing their torchvision applied depends on its version. Seen images read from files
(:func:`load_images`) are resized with Lanczos to the size asked for.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError, MissingInputError, UsageError

#: Luma weights of scikit-image's ``rgb2gray`` (ITU-R BT.709).
GRAY_WEIGHTS = (0.2125, 0.7154, 0.0721)


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


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(n, H, W, 3) uint8 or float → float32 tensor (n, 3, H, W) in [0, 1]."""
    arr = np.ascontiguousarray(images)
    t = torch.from_numpy(arr).permute(0, 3, 1, 2)
    if arr.dtype == np.uint8:
        return t.to(torch.float32) / 255.0
    return t.to(torch.float32)


def resize_tensor(t: torch.Tensor, size: int, *, antialias: bool = True) -> torch.Tensor:
    """Resize a batch (n, 3, H, W) to ``size`` x ``size`` (bilinear); unchanged at that size."""
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
    out = resize_tensor(to_tensor(flat), int(size), antialias=antialias)
    return out.permute(0, 2, 3, 1).numpy().reshape(*lead, int(size), int(size), 3)


def to_grayscale(images: np.ndarray) -> np.ndarray:
    """RGB (..., 3) in [0, 1] → luma (...), with scikit-image's ``rgb2gray`` weights."""
    return np.asarray(images, dtype=np.float64) @ np.asarray(GRAY_WEIGHTS)


def check_pairs(
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


def squeeze_samples(values: np.ndarray, had_samples: bool) -> np.ndarray:
    """Drop the samples axis of (n, 1) scores when the input had none."""
    return values if had_samples else values[:, 0]


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
