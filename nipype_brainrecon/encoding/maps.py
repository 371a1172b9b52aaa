"""Encoding maps as images and tables: NIfTI maps, ROI summaries, BIDS-style names.

Per-voxel values go back on the mask's grid (:func:`maps_to_nifti`), are summarised per region of
a segmentation (:func:`voxel_labels`, :func:`roi_summary`) and named ``desc-<feature><Stat>``
(:func:`bids_desc`, :func:`map_filename`, :data:`MAP_STATISTICS`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from ..errors import DataError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    import nibabel as nib
    import pandas as pd


def bids_desc(name: str) -> str:
    """A ``desc-`` label (letters and digits) for a feature space or map name.

    Examples
    --------
    >>> bids_desc("z_c"), bids_desc("z+c"), bids_desc("unet_mid_early_c")
    ('zC', 'zPlusC', 'unetMidEarlyWithC')
    """
    parts = [p for p in str(name).replace("+", "_plus_").split("_") if p]
    if len(parts) > 1 and parts[0] == "unet":
        parts[-1] = {"c": "withC", "none": "noC"}.get(parts[-1], parts[-1])
    text = parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:]) if parts else ""
    text = "".join(ch for ch in text if ch.isalnum())
    if not text:
        raise UsageError(f"feature name {name!r}: has no letters or digits")
    return text


def maps_to_nifti(values: ArrayLike, mask: str | os.PathLike | nib.Nifti1Image) -> nib.Nifti1Image:
    """Put per-voxel values back on the mask's grid (NaN outside the mask and for NaN values).

    Parameters
    ----------
    values : array-like, ``(n_voxels,)``
        In the C order of the mask's non-zero voxels (as :func:`nipype_brainrecon.rois.
        extract_roi_data` reads them).
    mask : path or nibabel image
        The 3D mask the voxels came from.

    Returns
    -------
    nibabel.Nifti1Image
        float32 3D image.
    """
    import nibabel as nib

    img = nib.load(mask) if isinstance(mask, (str, os.PathLike)) else mask
    inside = np.asanyarray(img.dataobj).reshape(img.shape[:3]) > 0
    v = np.asarray(values, dtype=np.float32).reshape(-1)
    if v.size != int(inside.sum()):
        raise DataError(f"values: {v.size} for a mask of {int(inside.sum())} voxels")
    out = np.full(inside.shape, np.nan, dtype=np.float32)
    out[inside] = v
    image = nib.Nifti1Image(out, img.affine)
    image.header.set_xyzt_units("mm")
    return image


def roi_summary(
    maps: Mapping[str, ArrayLike],
    voxel_labels: ArrayLike,
    label_names: Mapping[int, str],
) -> pd.DataFrame:
    """Mean and median of every map within each labelled region (and over all voxels).

    Parameters
    ----------
    maps : mapping
        ``{"<space>:<stat>": (n_voxels,) values}`` (as :attr:`EncodingResults.maps`).
    voxel_labels : array-like, ``(n_voxels,)``
        Region index of each voxel (0 = none).
    label_names : mapping
        ``{index: name}``.

    Returns
    -------
    pandas.DataFrame
        Columns ``roi``, ``feature``, ``statistic``, ``n_voxels``, ``mean``, ``median``;
        one row per region (``all`` = every voxel) and map.
    """
    import pandas as pd

    labels = np.asarray(voxel_labels).reshape(-1)
    regions = [("all", np.ones(labels.size, bool))]
    regions += [(str(name), labels == int(idx)) for idx, name in sorted(label_names.items())]
    rows = []
    for name, values in maps.items():
        feature, _, stat = name.rpartition(":")
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        if v.size != labels.size:
            raise DataError(f"{name}: {v.size} values for {labels.size} voxel labels")
        for roi, sel in regions:
            vals = v[sel & np.isfinite(v)]
            if stat == "alpha":
                vals = np.log10(vals)  # penalties span decades: summarise their logarithm
            rows.append(
                {
                    "roi": roi,
                    "feature": feature,
                    "statistic": "log10_alpha" if stat == "alpha" else stat,
                    "n_voxels": int(sel.sum()),
                    "mean": float(vals.mean()) if vals.size else float("nan"),
                    "median": float(np.median(vals)) if vals.size else float("nan"),
                }
            )
    return pd.DataFrame(rows)


def voxel_labels(
    mask: str | os.PathLike | nib.Nifti1Image, dseg: str | os.PathLike | nib.Nifti1Image
) -> np.ndarray:
    """Segmentation label of each voxel of ``mask`` (C order), the dseg put on its grid.

    Returns
    -------
    numpy.ndarray
        int64, ``(n_mask_voxels,)``; 0 where the segmentation has no region.
    """
    import nibabel as nib

    from ..rois import to_reference_grid

    mask_img = nib.load(mask) if isinstance(mask, (str, os.PathLike)) else mask
    seg = to_reference_grid(dseg, mask_img, interpolation="nearest", what="segmentation")
    inside = np.asanyarray(mask_img.dataobj).reshape(mask_img.shape[:3]) > 0
    return np.rint(np.asanyarray(seg.dataobj)[inside]).astype(np.int64)


#: ``desc-`` suffix and description of each statistic written as a map.
MAP_STATISTICS: dict[str, tuple[str, str]] = {
    "r": ("R", "Pearson r between predicted and measured responses to the test stimuli"),
    "r2": ("Rsq", "coefficient of determination (1 - SSE/SST) on the test stimuli"),
    "chance_r": (
        "ChanceR",
        "95th percentile of r over 200 shuffles of the test stimuli (per-voxel chance level)",
    ),
    "unique_r2": (
        "UniqueRsq",
        "unique variance: R2 of the joint model minus R2 of the other space",
    ),
    "shared_r2": ("SharedRsq", "shared variance: R2(a) + R2(b) - R2(joint)"),
}


def map_filename(subject: str, task: str | None, space: str, name: str) -> str:
    """BIDS-style file name of a map ``"<feature space>:<statistic>"``.

    Examples
    --------
    >>> map_filename("01", "vision", "T1w", "z:unique_r2")
    'sub-01_task-vision_space-T1w_desc-zUniqueRsq_statmap.nii.gz'
    """
    feature, _, stat = name.rpartition(":")
    if stat not in MAP_STATISTICS:
        raise UsageError(f"{name}: statistic {stat!r} is not written as a map")
    task_part = f"_task-{task}" if task else ""
    desc = bids_desc(feature) + MAP_STATISTICS[stat][0]
    return f"sub-{subject}{task_part}_space-{space}_desc-{desc}_statmap.nii.gz"
