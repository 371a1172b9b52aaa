"""Regions of interest: masks from segmentations, atlases or binary images, on the BOLD grid.

All functions return boolean 3D images on the grid of a reference image (the BOLD or betas),
intersected with the brain mask when one is given.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from .errors import DataError, MissingInputError, UsageError

PathOrImage = str | os.PathLike | nib.spatialimages.SpatialImage


def _load(img: PathOrImage, what: str) -> nib.spatialimages.SpatialImage:
    if isinstance(img, nib.spatialimages.SpatialImage):
        return img
    path = Path(img)
    if not path.exists():
        raise MissingInputError(f"{path}: {what} not found")
    try:
        loaded = nib.load(path)
        loaded.get_fdata(dtype=np.float32)  # read now so corruption surfaces here, named
    except Exception as exc:  # nibabel raises many types for a broken file
        raise DataError(f"{path}: cannot read {what} as NIfTI ({exc})") from exc
    return loaded


def _name(img: PathOrImage) -> str:
    if isinstance(img, nib.spatialimages.SpatialImage):
        return getattr(img, "get_filename", lambda: None)() or "<in-memory image>"
    return str(img)


def same_grid(a: nib.spatialimages.SpatialImage, b: nib.spatialimages.SpatialImage) -> bool:
    """True when two images share their 3D shape and affine (to 1e-4 mm)."""
    return a.shape[:3] == b.shape[:3] and np.allclose(a.affine, b.affine, atol=1e-4)


def to_reference_grid(
    img: PathOrImage, reference: PathOrImage, *, interpolation: str = "nearest", what: str = "image"
) -> nib.Nifti1Image:
    """Resample ``img`` onto the 3D grid of ``reference`` (nearest neighbour by default).

    Raises
    ------
    DataError
        If the two images do not overlap in world space at all.
    """
    from nilearn.image import resample_to_img
    from nilearn.image.resampling import BoundingBoxError

    src = _load(img, what)
    ref = _load(reference, "reference image")
    ref3d = nib.Nifti1Image(np.zeros(ref.shape[:3], dtype=np.uint8), ref.affine)
    if same_grid(src, ref3d):
        return nib.Nifti1Image(np.asanyarray(src.dataobj), src.affine, src.header)
    try:
        out = resample_to_img(
            src, ref3d, interpolation=interpolation, force_resample=True, copy_header=True
        )
    except BoundingBoxError:
        out = nib.Nifti1Image(np.zeros(ref.shape[:3], np.uint8), ref.affine)
    if not np.any(np.asanyarray(out.dataobj)) and np.any(np.asanyarray(src.dataobj)):
        raise DataError(
            f"{_name(img)}: {what} does not overlap the grid of {_name(reference)}; "
            "give images in the same space (e.g. space-T1w)"
        )
    return out


def read_label_table(path: str | os.PathLike) -> dict[str, int]:
    """Read a BIDS ``dseg.tsv`` look-up table (columns ``index`` and ``name``) as name → index."""
    path = Path(path)
    if not path.exists():
        raise MissingInputError(f"{path}: label table not found")
    table = pd.read_csv(path, sep="\t")
    missing = {"index", "name"} - set(table.columns)
    if missing:
        raise DataError(
            f"{path}: label table lacks column(s) {sorted(missing)}; need 'index' and 'name'"
        )
    return {
        str(name): int(index) for index, name in zip(table["index"], table["name"], strict=True)
    }


def roi_from_dseg(
    dseg: PathOrImage,
    labels: dict[str, int] | str | os.PathLike,
    names: str | Sequence[str],
    *,
    reference: PathOrImage | None = None,
    brain_mask: PathOrImage | None = None,
) -> nib.Nifti1Image:
    """Boolean ROI mask of the voxels whose label is one of ``names``.

    Parameters
    ----------
    dseg : path or image
        Integer segmentation (0 = background).
    labels : dict or path
        Name → index mapping, or the path of a ``dseg.tsv`` table.
    names : str or sequence of str
        Region name(s) to merge, e.g. ``"early"`` or ``["V1", "V2", "V3"]``.
    reference : path or image, optional
        Image whose grid the mask is put on (nearest-neighbour resampling when needed).
    brain_mask : path or image, optional
        Brain mask on the reference grid; the ROI is intersected with it.

    Examples
    --------
    >>> import nibabel as nib, numpy as np
    >>> seg = nib.Nifti1Image(np.array([[[0, 1], [2, 1]]], dtype=np.int16), np.eye(4))
    >>> int(np.asanyarray(roi_from_dseg(seg, {"early": 1, "ventral": 2}, "early").dataobj).sum())
    2
    """
    table = labels if isinstance(labels, dict) else read_label_table(labels)
    wanted = [names] if isinstance(names, str) else list(names)
    unknown = [n for n in wanted if n not in table]
    if unknown:
        raise UsageError(
            f"{_name(dseg)}: no region named {unknown} in the label table; known: {sorted(table)}"
        )
    seg = _load(dseg, "segmentation")
    if reference is not None:
        seg = to_reference_grid(seg, reference, interpolation="nearest", what="segmentation")
    data = np.asanyarray(seg.dataobj)
    mask = np.isin(np.rint(data).astype(np.int64), [table[n] for n in wanted])
    return _finish(mask, seg.affine, brain_mask, f"{_name(dseg)} region(s) {wanted}")


def roi_from_atlas(
    atlas: PathOrImage,
    *,
    index: int | None = None,
    threshold: float = 0.5,
    reference: PathOrImage | None = None,
    brain_mask: PathOrImage | None = None,
) -> nib.Nifti1Image:
    """ROI from a probabilistic (4D, ``index`` picks the map) or deterministic 3D atlas map.

    Voxels with probability ≥ ``threshold`` are kept (for a 3D map with ``index``, voxels equal to
    ``index``).
    """
    img = _load(atlas, "atlas")
    data = np.asanyarray(img.dataobj)
    if data.ndim == 4:
        if index is None or not 0 <= index < data.shape[3]:
            raise UsageError(
                f"{_name(atlas)}: give the map index (0..{data.shape[3] - 1}) of the region"
            )
        img = nib.Nifti1Image(data[..., index].astype(np.float32), img.affine)
        interpolation = "linear"
    elif index is not None:
        img = nib.Nifti1Image((np.rint(data) == index).astype(np.float32), img.affine)
        interpolation = "linear"
    else:
        img = nib.Nifti1Image(data.astype(np.float32), img.affine)
        interpolation = "linear"
    if reference is not None:
        img = to_reference_grid(img, reference, interpolation=interpolation, what="atlas")
    mask = np.asanyarray(img.dataobj) >= threshold
    return _finish(mask, img.affine, brain_mask, f"{_name(atlas)} (index {index})")


def roi_from_masks(
    masks: Sequence[PathOrImage],
    *,
    reference: PathOrImage | None = None,
    brain_mask: PathOrImage | None = None,
) -> nib.Nifti1Image:
    """Union of binary mask images (e.g. V1, V2 and V3 masks) on the reference grid."""
    if not masks:
        raise UsageError("no ROI mask given")
    union = None
    affine = None
    for item in masks:
        img = _load(item, "ROI mask")
        if reference is not None:
            img = to_reference_grid(img, reference, interpolation="nearest", what="ROI mask")
        data = np.asanyarray(img.dataobj) > 0
        if union is None:
            union, affine = data, img.affine
        elif data.shape != union.shape:
            raise DataError(
                f"{_name(item)}: mask grid differs from the first mask; give a reference"
            )
        else:
            union = union | data
    return _finish(union, affine, brain_mask, ", ".join(_name(m) for m in masks))


def _finish(
    mask: np.ndarray, affine: np.ndarray, brain_mask: PathOrImage | None, what: str
) -> nib.Nifti1Image:
    if not mask.any():
        raise DataError(f"{what}: the ROI is empty; check the label names and the space")
    if brain_mask is not None:
        brain = _load(brain_mask, "brain mask")
        brain_data = np.asanyarray(brain.dataobj) > 0
        if brain_data.shape[:3] != mask.shape[:3]:
            raise DataError(
                f"{_name(brain_mask)}: brain mask grid {brain_data.shape[:3]} differs from the ROI "
                f"grid {mask.shape[:3]}; pass the BOLD as reference"
            )
        inside = mask & brain_data
        if not inside.any():
            raise DataError(f"{what}: no ROI voxel lies inside the brain mask {_name(brain_mask)}")
        lost = int(mask.sum() - inside.sum())
        if lost:
            warnings.warn(
                f"{what}: {lost} ROI voxel(s) outside the brain mask dropped", stacklevel=3
            )
        mask = inside
    out = nib.Nifti1Image(mask.astype(np.uint8), affine)
    out.header.set_data_dtype(np.uint8)
    return out


def roi_voxel_count(mask: PathOrImage) -> int:
    """Number of voxels in a boolean ROI mask."""
    return int((np.asanyarray(_load(mask, "ROI mask").dataobj) > 0).sum())


def extract_roi_data(betas: PathOrImage, mask: PathOrImage) -> np.ndarray:
    """Trials × voxels matrix of a 4D betas image inside a ROI mask (float32).

    Raises
    ------
    DataError
        When the betas are not 4D or the grids differ.
    """
    img = _load(betas, "betas")
    roi = _load(mask, "ROI mask")
    if img.ndim != 4:
        raise DataError(
            f"{_name(betas)}: expected a 4D image (one volume per trial), got {img.ndim}D"
        )
    if not same_grid(img, roi):
        raise DataError(
            f"{_name(mask)}: ROI grid differs from the betas {_name(betas)}; resample it first"
        )
    sel = np.asanyarray(roi.dataobj) > 0
    data = np.asanyarray(img.dataobj)
    return np.ascontiguousarray(data[sel].T, dtype=np.float32)
