"""Reading a run's inputs: images and tables by path or in memory, the repetition time, the brain
mask on the BOLD grid and the masked time series."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from ..errors import DataError, MissingInputError, UsageError

PathOrImage = str | os.PathLike | nib.spatialimages.SpatialImage
PathOrFrame = str | os.PathLike | pd.DataFrame


def source_name(obj: object, default: str) -> str:
    """A name for messages: the path, the image's file name or the table's ``attrs["source"]``."""
    if isinstance(obj, str | os.PathLike):
        return str(obj)
    if isinstance(obj, nib.spatialimages.SpatialImage):
        return obj.get_filename() or default
    if isinstance(obj, pd.DataFrame):
        return str(obj.attrs.get("source", default))
    return default


def load_image(img: PathOrImage, what: str) -> nib.spatialimages.SpatialImage:
    """An image given as a path or in memory; absent and unreadable files raise."""
    if isinstance(img, nib.spatialimages.SpatialImage):
        return img
    path = Path(img)
    if not path.is_file():
        raise MissingInputError(f"{path}: {what} not found; check the path")
    try:
        return nib.load(path)
    except Exception as exc:  # nibabel raises many types for a broken file
        raise DataError(f"{path}: cannot read {what} as NIfTI ({exc}); replace the file") from exc


def read_table(table: PathOrFrame, what: str) -> tuple[pd.DataFrame, str]:
    """A copy of a table given as a TSV path or a DataFrame, and its name for messages."""
    if isinstance(table, pd.DataFrame):
        return table.copy(), source_name(table, f"<{what} DataFrame>")
    path = Path(table)
    if not path.is_file():
        raise MissingInputError(f"{path}: {what} not found; check the path")
    try:
        df = pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=True)
    except Exception as exc:
        raise DataError(
            f"{path}: cannot read {what} as a TSV file ({exc}); fix its format"
        ) from exc
    df.attrs["source"] = str(path)
    return df, str(path)


def repetition_time(img: nib.spatialimages.SpatialImage, t_r: float | None, name: str) -> float:
    """``t_r`` when given (checked), else the header's pixdim[4] in seconds."""
    if t_r is not None:
        if not np.isfinite(t_r) or t_r <= 0:
            raise UsageError(f"t_r={t_r}: the repetition time must be a positive number of seconds")
        return float(t_r)
    zooms = img.header.get_zooms()
    unit = img.header.get_xyzt_units()[1] if hasattr(img.header, "get_xyzt_units") else "unknown"
    scale = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}.get(unit)
    value = float(zooms[3]) if len(zooms) > 3 else 0.0
    if scale is None or value <= 0:
        raise DataError(
            f"{name}: repetition time missing from the header (pixdim[4]={value}, time unit "
            f"{unit!r}); pass t_r (RepetitionTime of the BOLD sidecar)"
        )
    return value * scale


def _affine_known(img: nib.spatialimages.SpatialImage) -> bool:
    header = img.header
    if isinstance(header, nib.Nifti1Header):
        return int(header["sform_code"]) > 0 or int(header["qform_code"]) > 0
    return True


def mask_on_bold_grid(
    mask: nib.spatialimages.SpatialImage,
    bold: nib.spatialimages.SpatialImage,
    mask_name: str,
    bold_name: str,
) -> np.ndarray:
    """Boolean mask on the BOLD grid; nearest-neighbour resampled if it is on another grid."""
    data = np.asanyarray(mask.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataError(f"{mask_name}: brain mask must be 3D, got shape {data.shape}")
    data = np.nan_to_num(np.asarray(data, dtype=float)) > 0
    shape = bold.shape[:3]
    if data.shape == shape and np.allclose(mask.affine, bold.affine, atol=1e-4):
        return data
    if not (_affine_known(mask) and _affine_known(bold)):
        raise DataError(
            f"{mask_name}: brain mask grid differs from {bold_name} and an affine is unset "
            "(sform/qform code 0); give the mask on the BOLD grid"
        )
    # BOLD voxel centres in mask voxel coordinates, nearest neighbour.
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).reshape(-1, 3)
    to_mask = np.linalg.inv(mask.affine) @ bold.affine
    coords = ijk @ to_mask[:3, :3].T + to_mask[:3, 3]
    idx = np.rint(coords).astype(int)
    inside = np.all((idx >= 0) & (idx < np.array(data.shape)), axis=1)
    if not inside.all():
        raise DataError(
            f"{mask_name}: brain mask grid differs from {bold_name} and does not cover its field "
            "of view; give a mask in the same space as the BOLD run"
        )
    warnings.warn(
        f"{mask_name}: brain mask resampled (nearest neighbour) to the grid of {bold_name}",
        UserWarning,
        stacklevel=3,
    )
    return data[idx[:, 0], idx[:, 1], idx[:, 2]].reshape(shape)


def masked_timeseries(bold: nib.spatialimages.SpatialImage, mask: np.ndarray) -> np.ndarray:
    """Voxels × volumes matrix (float32, float64 for float64 input), read in blocks of volumes."""
    dtype = np.float64 if bold.get_data_dtype() == np.float64 else np.float32
    dataobj = bold.dataobj
    if isinstance(dataobj, np.ndarray):
        return np.ascontiguousarray(dataobj[mask], dtype=dtype)
    n_vols = bold.shape[3]
    out = np.empty((int(mask.sum()), n_vols), dtype=dtype)
    block = max(1, int(2e7 // max(1, int(np.prod(bold.shape[:3])))))
    for start in range(0, n_vols, block):
        stop = min(n_vols, start + block)
        out[:, start:stop] = np.asarray(dataobj[..., start:stop], dtype=dtype)[mask]
    return out
