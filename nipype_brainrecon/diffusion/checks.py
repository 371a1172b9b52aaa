"""Checks of the reconstruction inputs: latents, text embeddings, stimulus ids and counts.

Each error names the input, the shape the model expects and how to fix it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import DataError, UsageError
from .shapes import PipelineShapes


def as_float_array(value: Any, name: str) -> np.ndarray:
    """``value`` as a float32 numpy array (a torch tensor is copied off its device)."""
    if hasattr(value, "detach"):  # a torch tensor, possibly on a GPU
        value = value.detach().float().cpu().numpy()
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name}: not a numeric array ({exc})") from exc
    if any(stride < 0 for stride in array.strides):  # e.g. x[::-1]: torch cannot view those
        array = array.copy()
    return array


def check_latents(z: Any, shapes: PipelineShapes) -> np.ndarray:
    """``z`` as (n, C, h, w) float32; a flattened (n, C * s * s) array is unflattened."""
    array = as_float_array(z, "z")
    channels = shapes.latent_channels
    if array.ndim == 2 and array.shape[1] % channels == 0:
        side = math.isqrt(array.shape[1] // channels)
        if side > 0 and side * side * channels == array.shape[1]:
            array = array.reshape(array.shape[0], channels, side, side)
    if array.ndim != 4 or array.shape[1] != channels or min(array.shape[2:], default=0) < 1:
        raise DataError(
            f"z: expected latents of shape (n_images, {channels}, h, w) for this model "
            f"(e.g. (n, {channels}, 40, 40) for 320 px images), got {array.shape}; decode z with "
            "the same model's VAE"
        )
    if not np.isfinite(array).all():
        raise DataError("z: contains NaN or infinite values; check the decoder's predictions")
    return array


def check_embeddings(
    value: Any, name: str, tokens: int, hidden: int, *, single: bool
) -> np.ndarray:
    """Text embeddings as (n, tokens, hidden) float32 (or (tokens, hidden) when ``single``)."""
    array = as_float_array(value, name)
    expected = (tokens, hidden) if single else ("n_images", tokens, hidden)
    if not single and array.ndim == 2 and array.shape[1] == tokens * hidden:
        array = array.reshape(array.shape[0], tokens, hidden)
    ok = (
        array.shape == (tokens, hidden)
        if single
        else (array.ndim == 3 and array.shape[1:] == (tokens, hidden))
    )
    if not ok:
        raise DataError(
            f"{name}: expected text embeddings of shape {tuple(expected)} for this model "
            f"({tokens} tokens x hidden size {hidden}), got {array.shape}; encode the captions "
            "with the same model's text encoder"
        )
    if not np.isfinite(array).all():
        raise DataError(f"{name}: contains NaN or infinite values; check the decoder's predictions")
    return array


def check_stim_ids(stim_ids: Sequence[Any], n: int | None) -> list[str]:
    """The ids as strings: one non-empty, unique id per image (``n`` images, if given)."""
    if isinstance(stim_ids, str | bytes) or not isinstance(stim_ids, Sequence | np.ndarray):
        raise UsageError(f"stim_ids={stim_ids!r}: give one stimulus id per image (a list)")
    ids = [str(s) for s in stim_ids]
    if n is not None and len(ids) != n:
        raise DataError(f"stim_ids: {len(ids)} ids given for {n} images; give one id per image")
    if any(not s for s in ids):
        raise DataError("stim_ids: an id is empty; give each image a non-empty id")
    seen: set[str] = set()
    for s in ids:
        if s in seen:
            raise DataError(
                f"stim_ids: {s!r} occurs twice; ids must be unique (they seed the noise)"
            )
        seen.add(s)
    return ids


def check_int(value: Any, name: str, minimum: int) -> int:
    """``value`` as an int, at least ``minimum``; bools and floats are errors."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise UsageError(f"{name}={value!r}: must be an integer")
    if int(value) < minimum:
        raise UsageError(f"{name}={value}: must be at least {minimum}")
    return int(value)
