"""Reference points beside every score: the mismatched pairing and trivial baselines."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import DataError, UsageError
from .images import check_images
from .metrics import CHANCE_TWO_WAY, two_way_identification


def derangement(n: int, seed: int = 0) -> np.ndarray:
    """A seeded pairing of every image with a different one (a single cycle)."""
    order = np.random.default_rng(seed).permutation(n)
    out = np.empty(n, dtype=np.int64)
    out[order] = np.roll(order, -1)
    return out


def check_baselines(
    baselines: Mapping[str, Any] | None, n: int, aspect: float
) -> dict[str, np.ndarray]:
    """Check each named baseline (one image or one set per original, the originals' aspect)."""
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


def broadcast_rows(feat: np.ndarray, n: int) -> np.ndarray:
    """Repeat a single row of features (a single baseline image) for ``n`` originals."""
    return np.broadcast_to(feat, (n, *feat.shape[1:])) if len(feat) == 1 and n > 1 else feat


def identify_baseline(
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
