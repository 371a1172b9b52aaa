"""Helpers for writing a fixture as a BIDS dataset: JSON and TSV files, placeholder stimuli,
images on a reference grid."""

from __future__ import annotations

import colorsys
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

#: BIDS version the converted datasets follow.
BIDS_VERSION = "1.10.0"
#: A BIDS label: letters and digits.
BIDS_LABEL = re.compile(r"^[A-Za-z0-9]+$")


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON (the folder made if needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def write_tsv(path: Path, table: Any) -> None:
    """Write a pandas DataFrame as a BIDS TSV (tab separated, ``n/a`` for missing values)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, sep="\t", index=False, na_rep="n/a", lineterminator="\n")


def placeholder_png(text: str, index: int, count: int, size: int = 96) -> bytes:
    """A small image standing in for a stimulus that is not shipped: a flat colour and its name."""
    from PIL import Image, ImageDraw

    rgb = colorsys.hsv_to_rgb(index / max(count, 1), 0.45, 0.95)
    image = Image.new("RGB", (size, size), tuple(int(round(255 * c)) for c in rgb))
    draw = ImageDraw.Draw(image)
    # A stripe per category index keeps the images distinct in pixels, not only in colour.
    stripe = (size * 2 // 3) // max(count, 1)
    draw.rectangle([0, index * stripe, size - 1, index * stripe + stripe // 2], fill=(40, 40, 40))
    draw.text((4, size - 16), text, fill=(0, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def same_grid(a: Any, b: Any) -> bool:
    """Whether two images share shape (3-D part) and affine."""
    return tuple(a.shape[:3]) == tuple(b.shape[:3]) and np.allclose(a.affine, b.affine, atol=1e-3)


def volume_image(data: np.ndarray, reference: Any, dtype: Any) -> Any:
    """A 3-D image on ``reference``'s grid, with its qform/sform codes and spatial units."""
    import nibabel as nib

    image = nib.Nifti1Image(np.asarray(data, dtype=dtype), reference.affine)
    header = reference.header
    image.set_qform(reference.affine, code=int(header["qform_code"]) or 1)
    image.set_sform(reference.affine, code=int(header["sform_code"]) or 1)
    image.header.set_xyzt_units(xyz="mm")
    return image
