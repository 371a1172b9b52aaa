"""Weight-free extractors of low-level image features: ``"pixels"`` and ``"lowlevel"``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from ..errors import UsageError
from .extractors import FeatureExtractor, Kind
from .images import check_images, resize_images, to_grayscale


def pixels_factory(*, size: int = 64, batch_size: int = 64) -> FeatureExtractor:
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


def lowlevel_factory(*, batch_size: int = 64, **kwargs: Any) -> FeatureExtractor:
    """Oriented edge energy and colour histograms (see :func:`lowlevel_features`)."""
    lowlevel_features(np.zeros((1, 16, 16, 3), np.uint8), **kwargs)  # check kwargs early

    def fn(images: np.ndarray) -> dict[str, np.ndarray]:
        return lowlevel_features(images, **kwargs)

    outputs: dict[str, Kind] = {
        "LowLevel(energy)": "identification",
        "LowLevel(colour)": "identification",
    }
    return FeatureExtractor("lowlevel", outputs, fn, batch_size=batch_size)
