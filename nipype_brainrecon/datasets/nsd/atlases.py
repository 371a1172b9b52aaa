"""NSD's volume atlases (``roi/<atlas>.nii.gz``) as BIDS ``dseg`` images and label tables.

In the release's volumes, positive values are regions, 0 is "not in a region" and -1 is outside
the cortical mask; the names of the positive values are in FreeSurfer's ``<atlas>.mgz.ctab``
(lines ``<value> <name>``, 0 being ``Unknown``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...errors import DataError


def dseg_desc(atlas: str) -> str:
    """The ``desc-`` label of an atlas: its release name, letters and digits only.

    >>> dseg_desc("prf-visualrois"), dseg_desc("streams")
    ('prfvisualrois', 'streams')
    """
    return "".join(ch for ch in atlas if ch.isalnum())


def read_ctab(path: Path) -> dict[int, str]:
    """``{value: name}`` of a ``.mgz.ctab`` label table, values above 0 only."""
    labels: dict[int, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the label table ({exc})") from exc
    for number, line in enumerate(lines, start=1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        try:
            value = int(parts[0])
        except ValueError:
            raise DataError(f"{path}: line {number} does not start with an integer value") from None
        if len(parts) < 2:
            raise DataError(f"{path}: line {number} has a value but no region name")
        if value > 0:
            labels[value] = parts[1]
    if not labels:
        raise DataError(f"{path}: no region (value above 0) in the label table")
    return labels


def atlas_dseg(roi_path: Path, ctab_path: Path, reference: Any) -> tuple[Any, pd.DataFrame]:
    """The atlas on ``reference``'s grid as an int16 dseg image (-1 made 0) and its table.

    Raises :class:`DataError` when the grid differs from the betas', the values are not whole
    numbers or a value has no name in the table.
    """
    import nibabel as nib

    try:
        image = nib.load(roi_path)
        data = np.asarray(image.dataobj, dtype=np.float64)
    except Exception as exc:
        raise DataError(f"{roi_path}: cannot be read as NIfTI ({exc})") from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    same = data.shape == tuple(reference.shape[:3]) and np.allclose(
        image.affine, reference.affine, atol=1e-3
    )
    if not same:
        raise DataError(
            f"{roi_path}: grid {data.shape} differs from the betas' {tuple(reference.shape[:3])}; "
            "take the atlas of the same subject and preparation (func1pt8mm / func1mm)"
        )
    if not np.all(np.isfinite(data)) or np.any(data != np.round(data)):
        raise DataError(f"{roi_path}: atlas values must be whole numbers")
    labels = read_ctab(ctab_path)
    values = np.unique(data[data > 0]).astype(int)
    unnamed = [v for v in values if v not in labels]
    if unnamed:
        raise DataError(f"{ctab_path}: no name for value(s) {unnamed} of {roi_path.name}")
    dseg = np.where(data > 0, data, 0).astype(np.int16)
    out = nib.Nifti1Image(dseg, reference.affine)
    header = reference.header
    out.set_qform(reference.affine, code=int(header["qform_code"]) or 1)
    out.set_sform(reference.affine, code=int(header["sform_code"]) or 1)
    out.header.set_xyzt_units(xyz="mm")
    table = pd.DataFrame({"index": list(labels), "name": list(labels.values())}).sort_values(
        "index", ignore_index=True
    )
    return out, table
