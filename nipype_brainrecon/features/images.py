"""Reading stimulus images: checks before a model is loaded, and the VAE's input array."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import DataError, MissingInputError
from .cache import PathLike


def load_image_array(path: PathLike, resolution: int) -> np.ndarray:
    """Read an image as RGB, resize to ``resolution`` x ``resolution`` (Lanczos), map to [-1, 1].

    Non-square images are resized without cropping, as the reference code does.

    Returns
    -------
    numpy.ndarray
        float32, shape ``(3, resolution, resolution)``.

    Raises
    ------
    MissingInputError
        The file does not exist.
    DataError
        The file is not a readable image.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            rgb = img.convert("RGB").resize((resolution, resolution), Image.Resampling.LANCZOS)
    except FileNotFoundError as exc:
        raise MissingInputError(f"{path}: image not found; check the stimulus path") from exc
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(
            f"{path}: not a readable image ({exc.__class__.__name__}); replace or re-export it"
        ) from exc
    array = np.asarray(rgb, dtype=np.float32) / 255.0
    return np.ascontiguousarray((2.0 * array - 1.0).transpose(2, 0, 1))


def check_images(paths: Sequence[Path]) -> None:
    """Fail early, before loading a model, on images PIL cannot identify."""
    from PIL import Image, UnidentifiedImageError

    for path in paths:
        try:
            with Image.open(path) as img:
                img.verify()
        except FileNotFoundError as exc:
            raise MissingInputError(f"{path}: image not found; check the stimulus path") from exc
        except Image.DecompressionBombError as exc:  # a few KB that decode to GBs
            raise DataError(
                f"{path}: image too large to decode ({exc}); resize it below "
                f"{Image.MAX_IMAGE_PIXELS:,} pixels"
            ) from exc
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise DataError(
                f"{path}: not a readable image ({exc.__class__.__name__}); replace or re-export it"
            ) from exc
