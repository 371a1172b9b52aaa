"""Writing the dataset's files: JSON, TSV and NIfTI writers, and the dataset-level files of the raw
dataset and of its two derivatives (``fmriprep``, ``simulation``).
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from ..._version import __version__
from .design import TASK
from .voxels import ROI_LABELS, VOXEL_SIZE

__all__ = [
    "generated_by",
    "write_fmriprep_files",
    "write_json",
    "write_nifti",
    "write_raw_files",
    "write_truth_files",
    "write_tsv",
]

_DESCRIPTION_NAME = "nipype-brainrecon simulated vision dataset"


def write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def write_tsv(path: Path, df: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, sep="\t", index=False, na_rep="n/a", float_format="%.6g", lineterminator="\n")


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray, tr: float | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    if tr is not None:
        img.header.set_zooms((VOXEL_SIZE,) * 3 + (tr,))
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.to_filename(str(path))


def generated_by() -> list[dict]:
    return [
        {
            "Name": "nipype-brainrecon",
            "Version": __version__,
            "Description": "brainrecon-simulate: simulated data with known ground truth",
            "CodeURL": "https://github.com/nipype-brainrecon/nipype-brainrecon",
        }
    ]


def write_raw_files(root: Path, labels: list[str]) -> None:
    """The raw dataset's description, README, participants and events sidecar."""
    write_json(
        root / "dataset_description.json",
        {
            "Name": _DESCRIPTION_NAME,
            "BIDSVersion": "1.10.0",
            "DatasetType": "raw",
            "License": "CC0",
            "Authors": ["nipype-brainrecon simulator"],
            "GeneratedBy": generated_by(),
        },
    )
    (root / "README").write_text(
        "Simulated fMRI dataset written by brainrecon-simulate (nipype-brainrecon "
        f"{__version__}).\n\nA rapid event-related '{TASK}' task: each trial shows one image "
        "from stimuli/. Ground truth is in derivatives/simulation; fMRIPrep-like derivatives in "
        "derivatives/fmriprep. See docs/simulation.md of nipype-brainrecon.\n",
        encoding="utf-8",
    )
    write_tsv(
        root / "participants.tsv", pd.DataFrame({"participant_id": [f"sub-{s}" for s in labels]})
    )
    write_json(
        root / "participants.json",
        {"participant_id": {"Description": "Simulated participant label"}},
    )
    write_json(
        root / f"task-{TASK}_events.json",
        {
            "trial_type": {"Description": "Kind of trial", "Levels": {"stimulus": "An image"}},
            "stim_file": {"Description": "Image shown, relative to the stimuli/ folder"},
        },
    )


def write_fmriprep_files(fmriprep: Path) -> None:
    """The dataset-level files of the fMRIPrep-like derivatives."""
    write_json(
        fmriprep / "dataset_description.json",
        {
            "Name": "fMRIPrep-like derivatives of the simulated dataset",
            "BIDSVersion": "1.10.0",
            "DatasetType": "derivative",
            "GeneratedBy": generated_by(),
            "SourceDatasets": [{"URL": "bids:raw:"}],
            "DatasetLinks": {"raw": "../../"},
        },
    )
    (fmriprep / "README").write_text(
        "fMRIPrep-like derivatives of the simulated dataset: the preprocessed BOLD equals the raw "
        "BOLD (no spatial motion was simulated), brain masks, confounds computed from the data, "
        "and a visual-ROI segmentation (desc-visual_dseg.tsv).\n",
        encoding="utf-8",
    )
    # fMRIPrep's confounds tables are not (yet) named by the BIDS specification.
    (fmriprep / ".bidsignore").write_text("*_desc-confounds_timeseries.*\n", encoding="utf-8")
    write_tsv(
        fmriprep / "desc-visual_dseg.tsv",
        pd.DataFrame({"index": list(ROI_LABELS), "name": list(ROI_LABELS.values())}),
    )


def write_truth_files(truth: Path) -> None:
    """The dataset-level description, README and ``.bidsignore`` of the ground truth."""
    write_json(
        truth / "dataset_description.json",
        {
            "Name": "Ground truth of the simulated dataset",
            "BIDSVersion": "1.10.0",
            "DatasetType": "derivative",
            "GeneratedBy": generated_by(),
        },
    )
    (truth / "README").write_text(
        "Ground truth of the simulation: per-trial amplitudes, voxel weights, receptive fields and "
        "stimulus features (NumPy .npz, no pickle) with JSON descriptions. Read it with "
        "nipype_brainrecon.synthetic.simulate.load_ground_truth.\n",
        encoding="utf-8",
    )
    (truth / ".bidsignore").write_text(
        "*.npz\n*.npy\nsimulation.json\nscenes.json\nsub-*/\n", encoding="utf-8"
    )
