"""The ROI segmentation (``*_dseg.nii.gz``) of a participant and its label table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, MissingInputError
from .layout import NIFTI_EXTENSIONS, entities_from_name
from .tsv import read_tsv


def read_roi_labels(path: str | Path) -> dict[int, str]:
    """Read a dseg label table (columns ``index``, ``name``) into ``{index: name}``.

    Raises
    ------
    MissingInputError
        The table is absent.
    DataError
        Missing columns, a non-integer or repeated index, index 0 (background), or a repeated name.
    """
    path = Path(path)
    table = read_tsv(path, "ROI label table")
    missing = [c for c in ("index", "name") if c not in table.columns]
    if missing:
        raise DataError(f"{path}: label table lacks column(s) {', '.join(missing)}")
    labels: dict[int, str] = {}
    for index, name in zip(table["index"], table["name"], strict=True):
        try:
            value = int(str(index).strip())
        except ValueError as exc:
            raise DataError(f"{path}: index {index!r} is not an integer") from exc
        if value <= 0:
            raise DataError(f"{path}: index {value} is not a positive label (0 is background)")
        if value in labels:
            raise DataError(f"{path}: index {value} appears twice")
        if not isinstance(name, str) or not name.strip():
            raise DataError(f"{path}: index {value} has no name")
        if name.strip() in labels.values():
            raise DataError(f"{path}: ROI name {name.strip()!r} appears twice")
        labels[value] = name.strip()
    if not labels:
        raise DataError(f"{path}: label table has no rows")
    return labels


def find_roi(
    derivatives: Path,
    layout: Any,
    participant: str,
    space: str,
    roi_desc: str,
    roi_dseg: str | Path | None,
    roi_labels: str | Path | None,
    session: str | None = None,
) -> tuple[Path, Path, dict[int, str]]:
    """The ROI segmentation, its label table and labels (given, or looked up), checked together."""
    if roi_dseg is not None:
        dseg = Path(roi_dseg).absolute()
        if not dseg.is_file():
            raise MissingInputError(f"{dseg}: ROI segmentation not found")
    else:
        dseg = _find_dseg(derivatives, layout, participant, space, roi_desc, session)
    if roi_labels is not None:
        labels_file = Path(roi_labels).absolute()
        if not labels_file.is_file():
            raise MissingInputError(f"{labels_file}: ROI label table not found")
    else:
        labels_file = _find_labels_file(dseg, derivatives, space, roi_desc)
    labels = read_roi_labels(labels_file)
    _check_dseg(dseg, labels_file, labels)
    return dseg, labels_file, labels


def _find_dseg(
    derivatives: Path,
    layout: Any,
    participant: str,
    space: str,
    roi_desc: str,
    session: str | None,
) -> Path:
    """The participant's ``*_space-<space>_desc-<roi_desc>_dseg`` image (session's if several)."""
    found = layout.get(
        subject=participant,
        space=space,
        desc=roi_desc,
        suffix="dseg",
        extension=NIFTI_EXTENSIONS,
    )
    expected = (
        derivatives
        / f"sub-{participant}"
        / "anat"
        / f"sub-{participant}_space-{space}_desc-{roi_desc}_dseg.nii.gz"
    )
    if not found:
        raise MissingInputError(f"{expected}: ROI segmentation not found; add it or pass roi_dseg=")
    if len(found) > 1:
        # One segmentation per session: take the one of the session asked for, or none.
        found = [f for f in found if f.entities.get("session") == session] or found
    if len(found) > 1:
        names = ", ".join(sorted(Path(f.path).name for f in found))
        raise DataError(
            f"{expected.parent}: several ROI segmentations match ({names}); pass roi_dseg="
        )
    return Path(found[0].path)


def _find_labels_file(dseg: Path, derivatives: Path, space: str, roi_desc: str) -> Path:
    """The label table beside the segmentation, else at the derivatives root."""
    stem = dseg.name.split(".")[0]
    desc = entities_from_name(dseg).get("desc", roi_desc)
    candidates = [
        dseg.with_name(stem + ".tsv"),
        derivatives / f"space-{space}_desc-{desc}_dseg.tsv",
        derivatives / f"desc-{desc}_dseg.tsv",
    ]
    labels_file = next((c for c in candidates if c.is_file()), candidates[-1])
    if not labels_file.is_file():
        raise MissingInputError(
            f"{candidates[-1]}: ROI label table not found (nor {candidates[0].name}); "
            "add it (columns index, name) or pass roi_labels="
        )
    return labels_file


def _check_dseg(dseg: Path, labels_file: Path, labels: dict[int, str]) -> None:
    """A readable 3-D integer segmentation with labelled voxels, every label named in the table."""
    import nibabel as nib

    try:
        image = nib.load(dseg)
        data = np.asanyarray(image.dataobj)
    except Exception as exc:  # nibabel raises several types for unreadable images
        raise DataError(f"{dseg}: cannot read the ROI segmentation ({exc})") from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataError(f"{dseg}: ROI segmentation is {data.ndim}-D, expected 3-D integer labels")
    if not np.all(np.isfinite(data)) or not np.array_equal(data, np.round(data)):
        raise DataError(f"{dseg}: ROI segmentation holds non-integer values; write integer labels")
    present = {int(v) for v in np.unique(data)} - {0}
    if not present:
        raise DataError(f"{dseg}: ROI segmentation has no labelled voxel")
    unnamed = sorted(present - set(labels))
    if unnamed:
        raise DataError(f"{labels_file}: labels {unnamed} of {dseg.name} have no row; name them")
