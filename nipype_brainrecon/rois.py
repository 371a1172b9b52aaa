"""Regions of interest: masks from segmentations, atlases or binary images, on the BOLD grid.

All functions return boolean 3D images on the grid of a reference image (the BOLD or betas),
intersected with the brain mask when one is given.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
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


def atlas_to_dseg(
    atlas: PathOrImage,
    labels: Mapping[str, int | Sequence[int]] | str | os.PathLike,
    reference: PathOrImage,
) -> tuple[nib.Nifti1Image, pd.DataFrame]:
    """An atlas's regions as a segmentation on the grid of ``reference``, with its label table.

    The atlas (a 3D image of integer region indices, e.g. in ``MNI152NLin2009cAsym``) is
    resampled to the reference grid (the BOLD, in the same space) by nearest neighbour, so that
    indices are never blended. Each entry of ``labels`` becomes one region of the output, numbered
    1, 2, ... in the order given (several atlas indices may be merged into one region); every
    other voxel is 0 (background).

    Parameters
    ----------
    atlas : path or image
        Deterministic atlas (integer indices, 0 = background).
    labels : mapping or path
        Output region name → atlas index or indices (``{"early": [1, 2, 3], "ventral": [7]}``),
        or the path of the atlas's ``index``/``name`` table (every region kept, one to one).
    reference : path or image
        Image whose grid the segmentation is put on (3D or 4D; its first three axes are used).

    Returns
    -------
    dseg : Nifti1Image
        int16 segmentation on the reference grid.
    table : DataFrame
        Columns ``index`` and ``name`` (a BIDS ``dseg.tsv``; write it with
        ``table.to_csv(path, sep="\\t", index=False)``).

    Raises
    ------
    DataError
        When the atlas holds non-integer values, an index is absent from the atlas, or a region has
        no voxel on the reference grid.

    Examples
    --------
    >>> import nibabel as nib, numpy as np
    >>> atlas = nib.Nifti1Image(np.array([[[0, 3], [5, 3]]], dtype=np.int16), np.eye(4))
    >>> dseg, table = atlas_to_dseg(atlas, {"early": 3, "ventral": [5]}, atlas)
    >>> np.asanyarray(dseg.dataobj).tolist(), table["name"].tolist()
    ([[[0, 1], [2, 1]]], ['early', 'ventral'])
    """
    if isinstance(labels, Mapping):
        groups = {str(k): [v] if np.isscalar(v) else list(v) for k, v in labels.items()}
    else:
        groups = {name: [index] for name, index in read_label_table(labels).items()}
    if not groups:
        raise UsageError(f"{_name(atlas)}: no region given to take from the atlas")
    img = _load(atlas, "atlas")
    data = np.asanyarray(img.dataobj)
    if data.ndim != 3 or not np.allclose(data, np.rint(data)):
        raise DataError(
            f"{_name(atlas)}: not a 3D atlas of integer indices; for a probabilistic atlas "
            "use roi_from_atlas(atlas, index=..., threshold=...)"
        )
    present = set(np.unique(np.rint(data).astype(np.int64)).tolist())
    for name, indices in groups.items():
        absent = [int(i) for i in indices if int(i) not in present]
        if absent:
            raise DataError(f"{_name(atlas)}: region {name!r}: index {absent} not in the atlas")
    index_img = nib.Nifti1Image(np.rint(data).astype(np.int32), img.affine)
    resampled = to_reference_grid(index_img, reference, interpolation="nearest", what="atlas")
    source = np.rint(np.asanyarray(resampled.dataobj)).astype(np.int64)
    out = np.zeros(source.shape, dtype=np.int16)
    for k, (name, indices) in enumerate(groups.items(), start=1):
        region = np.isin(source, [int(i) for i in indices])
        if not region.any():
            raise DataError(
                f"{_name(atlas)}: region {name!r} has no voxel on the grid of {_name(reference)}; "
                "is the reference in the atlas's space?"
            )
        out[region] = k
    dseg = nib.Nifti1Image(out, resampled.affine)
    dseg.header.set_data_dtype(np.int16)
    table = pd.DataFrame({"index": range(1, len(groups) + 1), "name": list(groups)})
    return dseg, table


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


# -- betas as a plain trials x voxels matrix, ROIs as lists of its columns -----------------------

#: Suffixes of a betas matrix (one row per trial, one column per voxel).
MATRIX_SUFFIXES = (".npy", ".tsv")


def load_betas_matrix(path: str | os.PathLike) -> np.ndarray:
    """A trials × voxels betas matrix from ``.npy`` (2D float) or ``.tsv`` (one row per trial,
    one column per voxel, an optional header row of column names), as float32.

    Raises
    ------
    MissingInputError
        The file is absent.
    DataError
        Another suffix, not 2D, not numeric or not finite.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> path = Path(tempfile.mkdtemp()) / "betas.tsv"
    >>> _ = path.write_text("v0\\tv1\\n1.5\\t2\\n3\\t4\\n")
    >>> load_betas_matrix(path).tolist()
    [[1.5, 2.0], [3.0, 4.0]]
    """
    path = Path(path)
    if not path.exists():
        raise MissingInputError(f"{path}: betas matrix not found")
    if path.suffix not in MATRIX_SUFFIXES:
        raise DataError(
            f"{path}: a betas matrix is .npy or .tsv (trials × voxels), not {path.name}"
        )
    try:
        if path.suffix == ".npy":
            data = np.load(path, allow_pickle=False)
        else:
            data = _read_tsv_matrix(path)
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: cannot read the betas matrix ({exc})") from exc
    if data.ndim != 2 or 0 in data.shape or not np.issubdtype(data.dtype, np.number):
        raise DataError(
            f"{path}: a betas matrix must be numeric and 2D (trials × voxels), got shape "
            f"{data.shape} of {data.dtype}"
        )
    if not np.all(np.isfinite(data)):
        raise DataError(f"{path}: the betas matrix holds non-finite values; give finite betas")
    return np.ascontiguousarray(data, dtype=np.float32)


def _read_tsv_matrix(path: Path) -> np.ndarray:
    """The numbers of a TSV matrix; a first row that is not all numbers is a header."""
    table = pd.read_csv(path, sep="\t", header=None, dtype=str, keep_default_na=False)
    if len(table) and pd.to_numeric(table.iloc[0], errors="coerce").isna().any():
        table = table.iloc[1:]
    return table.to_numpy().astype(np.float64)


def read_voxel_rois(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """ROIs as lists of 0-based columns of a betas matrix: name → sorted unique indices.

    Two formats: JSON ``{"early": [0, 1, 2], "ventral": [3, 4]}``, or TSV with the columns
    ``roi`` and ``column``, one row per (ROI, column) pair.

    Raises
    ------
    MissingInputError
        The file is absent.
    DataError
        Another format, a negative or non-integer index, an empty ROI.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "rois.json"
    >>> _ = path.write_text('{"early": [3, 0, 1], "ventral": [2]}')
    >>> {k: v.tolist() for k, v in read_voxel_rois(path).items()}
    {'early': [0, 1, 3], 'ventral': [2]}
    """
    path = Path(path)
    if not path.exists():
        raise MissingInputError(f"{path}: voxel-index ROI file not found")
    if path.suffix == ".json":
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise DataError(f"{path}: not valid JSON ({exc})") from exc
        if not isinstance(raw, dict):
            raise DataError(f"{path}: give an object mapping each ROI name to a list of columns")
        lists = {str(k): v if isinstance(v, list) else [v] for k, v in raw.items()}
    elif path.suffix == ".tsv":
        table = pd.read_csv(path, sep="\t", dtype={"roi": str})
        if {"roi", "column"} - set(table.columns):
            raise DataError(f"{path}: needs the columns 'roi' and 'column' (0-based voxel index)")
        lists = {k: g["column"].tolist() for k, g in table.groupby("roi", sort=False)}
    else:
        raise DataError(f"{path}: voxel-index ROIs are given as .json or .tsv, not {path.name}")
    return {name: _indices(values, path, name) for name, values in lists.items()}


def _indices(values: list, path: Path, name: str) -> np.ndarray:
    """The sorted unique non-negative integer columns of one ROI."""
    try:
        numbers = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        numbers = np.array([np.nan])
    if numbers.size == 0:
        raise DataError(f"{path}: ROI {name!r} lists no column")
    if not np.all(np.isfinite(numbers)) or np.any(numbers != np.rint(numbers)) or numbers.min() < 0:
        raise DataError(f"{path}: ROI {name!r} has indices that are not 0-based column numbers")
    return np.unique(numbers.astype(np.int64))


def roi_columns(
    rois: dict[str, np.ndarray], names: str | Sequence[str], n_columns: int, source: str
) -> np.ndarray:
    """The sorted columns of the union of ROIs ``names``, checked against ``n_columns``.

    Raises
    ------
    UsageError
        A name not in ``rois``.
    DataError
        An index at or past ``n_columns`` (the betas' voxel count).

    Examples
    --------
    >>> roi_columns({"a": np.array([0, 2]), "b": np.array([1])}, ["b", "a"], 3, "r.json")
    array([0, 1, 2])
    """
    wanted = [names] if isinstance(names, str) else list(names)
    unknown = [n for n in wanted if n not in rois]
    if unknown:
        raise UsageError(f"{source}: no ROI named {unknown}; known: {sorted(rois)}")
    columns = np.unique(np.concatenate([rois[n] for n in wanted]))
    if columns[-1] >= n_columns:
        raise DataError(
            f"{source}: ROI {wanted} lists column {int(columns[-1])} but the betas have "
            f"{n_columns} voxel columns (0..{n_columns - 1}); give 0-based indices of the betas"
        )
    return columns
