"""PyMVPA's copy of Haxby et al. (2001): finding and checking its runs, masks and repetition time."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, MissingInputError
from .common import same_grid

#: One ROI of the segmentation: index, name, abbreviation, description, source mask.
Roi = tuple[int, str, str, str, Path]
#: One run: number, BOLD path, BOLD image, events table, motion estimates (volumes × 6).
HaxbyRun = tuple[int, Path, Any, Any, np.ndarray]


def find_sources(source: Path) -> tuple[Path, Path, list[tuple[int, Path]]]:
    """The subject folder, the licence and the run folders (number, path) of the source."""
    sub_src = source / "sub001"
    if not sub_src.is_dir():
        raise MissingInputError(f"{sub_src}: not found; give the haxby2001-pymvpa folder")
    licence = source / "LICENSE"
    if not licence.is_file():
        raise MissingInputError(f"{licence}: licence file not found; it must travel with the data")
    run_dirs: list[tuple[int, Path]] = []
    for path in sorted((sub_src / "BOLD").glob("task001_run*")):
        match = re.fullmatch(r"task001_run(\d+)", path.name)
        if match and path.is_dir():
            run_dirs.append((int(match.group(1)), path))
    if not run_dirs:
        raise MissingInputError(f"{sub_src / 'BOLD'}: no task001_runNNN folders found")
    return sub_src, licence, run_dirs


def haxby_tr(source: Path, bold_header: Any) -> float:
    """Repetition time from ``scan_key.txt`` (the openfmri record), checked against the header."""
    zooms = bold_header.get_zooms()
    header_tr = float(zooms[3]) if len(zooms) > 3 else None
    key = source / "scan_key.txt"
    tr = None
    if key.is_file():
        for line in key.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == "TR":
                tr = float(parts[1])
    if tr is None:
        tr = header_tr
    if tr is None or not tr > 0:
        raise DataError(f"{key}: no repetition time found (expected a line 'TR <seconds>')")
    if header_tr is not None and header_tr > 0 and abs(header_tr - tr) > 1e-3:
        raise DataError(
            f"{key}: TR {tr} s disagrees with the BOLD header's {header_tr} s; fix the scan key"
        )
    return tr


def load_grid_image(path: Path, reference: Any, what: str) -> np.ndarray:
    """Voxel data of a 3-D image that must lie on the BOLD grid."""
    import nibabel as nib

    if not path.is_file():
        raise MissingInputError(f"{path}: {what} not found; the Haxby folder is incomplete")
    image = nib.load(path)
    if not same_grid(image, reference):
        raise DataError(
            f"{path}: {what} is not on the BOLD grid of the runs; use the matching mask"
        )
    return np.asanyarray(image.dataobj).reshape(image.shape[:3])


def masks_and_rois(
    flavor: str, source: Path, sub_src: Path, reference: Any
) -> tuple[np.ndarray, list[Roi], dict[str, np.ndarray]]:
    """The brain mask, the ROIs of the flavour and the tissue masks of the confounds."""
    if flavor == "25mm":
        mask_dir = sub_src / "masks" / "25mm"
        brain = load_grid_image(mask_dir / "brain.nii.gz", reference, "brain mask") > 0
        white = load_grid_image(mask_dir / "white.nii.gz", reference, "white-matter mask") > 0
        rois = [
            (
                1,
                "ventral",
                "VT",
                "ventral temporal cortex (PyMVPA mask vt)",
                mask_dir / "vt.nii.gz",
            ),
            (
                2,
                "cortex",
                "HOC",
                "Harvard-Oxford cortical atlas (PyMVPA mask hoc)",
                mask_dir / "hoc.nii.gz",
            ),
        ]
        tissue = {"global_signal": brain, "white_matter": white & brain}
    else:
        brain = load_grid_image(source / "mask.nii.gz", reference, "slice mask") > 0
        rois = [
            (
                1,
                "slice",
                "SLICE",
                "in-brain voxels of the slice (PyMVPA mask.nii.gz)",
                source / "mask.nii.gz",
            )
        ]
        tissue = {"global_signal": brain}
    return brain, rois, tissue


def roi_dseg(rois: list[Roi], reference: Any) -> np.ndarray:
    """The ROI masks as one segmentation (uint8 labels, 0 = background); overlaps raise."""
    dseg = np.zeros(reference.shape[:3], dtype=np.uint8)
    for index, name, _, _, path in rois:
        voxels = load_grid_image(path, reference, f"ROI mask '{name}'") > 0
        if np.any(dseg[voxels]):
            raise DataError(
                f"{path}: ROI '{name}' overlaps another ROI; a dseg needs disjoint labels"
            )
        dseg[voxels] = index
    return dseg


def read_runs(
    run_dirs: list[tuple[int, Path]], bold_name: str, reference: Any, first_bold: Path
) -> tuple[list[HaxbyRun], list[str]]:
    """Every run, checked against the first; and the categories shown, sorted."""
    categories: list[str] = []
    runs = []
    for number, run_dir in run_dirs:
        run = _read_run(number, run_dir, bold_name, reference, first_bold)
        for category in run[3]["trial_type"].astype(str):
            if category not in categories:
                categories.append(category)
        runs.append(run)
    categories.sort()
    return runs, categories


def _read_run(
    number: int, run_dir: Path, bold_name: str, reference: Any, first_bold: Path
) -> HaxbyRun:
    """One run's BOLD image (on the reference grid), events and motion (one row per volume)."""
    import nibabel as nib
    import pandas as pd

    bold_path, events_path = run_dir / bold_name, run_dir / "bold_events.tsv"
    motion_path = run_dir / "bold_moest.txt"
    for path, what in (
        (bold_path, "BOLD image"),
        (events_path, "events"),
        (motion_path, "motion file"),
    ):
        if not path.is_file():
            raise MissingInputError(f"{path}: {what} of run {number} not found")
    bold = nib.load(bold_path)
    if bold.ndim != 4 or not same_grid(bold, reference):
        raise DataError(f"{bold_path}: not a 4-D image on the grid of {first_bold}")
    events = pd.read_csv(events_path, sep="\t")
    missing = {"onset", "duration", "trial_type"} - set(events.columns)
    if missing:
        raise DataError(f"{events_path}: missing column(s) {sorted(missing)}")
    motion = np.loadtxt(motion_path, ndmin=2)
    if motion.shape != (bold.shape[3], 6):
        raise DataError(
            f"{motion_path}: {motion.shape} motion values, expected ({bold.shape[3]}, 6) "
            "(one row of 6 per volume)"
        )
    return number, bold_path, bold, events, motion
