"""Haxby et al. (2001), subject 1, from PyMVPA's tutorial data to raw BIDS plus fMRIPrep-like
derivatives: :func:`haxby_to_bids` and the files it writes."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .._version import __version__
from ..errors import MissingInputError, UsageError
from ..io import atomic_directory
from .common import BIDS_LABEL, BIDS_VERSION, placeholder_png, volume_image, write_json, write_tsv
from .haxby_confounds import confounds_sidecar, haxby_confounds
from .haxby_sources import (
    HaxbyRun,
    Roi,
    find_sources,
    haxby_tr,
    masks_and_rois,
    read_runs,
    roi_dseg,
)

#: BIDS task label of the converted Haxby runs (the one OpenNeuro's ds000105 uses too).
HAXBY_TASK = "objectviewing"

# Captions of the placeholder stimuli: the category name, spelled out where PyMVPA abbreviates it.
_HAXBY_CAPTIONS = {"scrambledpix": "scrambled picture"}

_HAXBY_AUTHORS = [
    "James V. Haxby",
    "M. Ida Gobbini",
    "Maura L. Furey",
    "Alumit Ishai",
    "Jennifer L. Schouten",
    "Pietro Pietrini",
]

_HAXBY_REFERENCE = (
    "Haxby JV, Gobbini MI, Furey ML, Ishai A, Schouten JL, Pietrini P (2001). Distributed and "
    "overlapping representations of faces and objects in ventral temporal cortex. Science "
    "293:2425-2430. doi:10.1126/science.1063736"
)


def _haxby_readme(flavor: str, subject: str, space: str, captions: dict[str, str]) -> str:
    caption_lines = "\n".join(f'- `{name}.png`: "{text}"' for name, text in captions.items())
    return f"""# Haxby et al. (2001), subject 1, object viewing: PyMVPA tutorial data as BIDS

Converted by nipype-brainrecon {__version__} (`nipype_brainrecon.datasets.haxby_to_bids`,
flavour `{flavor}`) from the Haxby 2001 example data bundled with PyMVPA. Licence: MIT (see
`LICENSE`, copied unchanged from the source; copyright Michael Hanke, Yaroslav Halchenko,
Nikolaas N. Oosterhof).

Reference: {_HAXBY_REFERENCE}

## Content
- `sub-{subject}`: 12 runs of task `{HAXBY_TASK}` (8 object categories, one 22.5 s block each per
  run), TR 2.5 s. Events (`onset`, `duration`, `trial_type`) are PyMVPA's `bold_events.tsv`
  unchanged, plus a `stim_file` column.
- The BOLD images are PyMVPA's preprocessed images (`bold_{flavor}.nii.gz`): PyMVPA ships no raw
  scans, so `sub-{subject}/func/*_bold.nii.gz` and the derivatives' `desc-preproc_bold` hold the
  same data.
- `derivatives/fmriprep`: an fMRIPrep-like layout (no fMRIPrep was run): preprocessed BOLD, brain
  mask, confounds and an ROI segmentation (`desc-visual_dseg`, labels in `desc-visual_dseg.tsv`),
  all on the BOLD grid. The space is labelled `{space}` because the data stay in the subject's own
  space (no template normalisation; PyMVPA's low-resolution anatomy shares the 25 mm grid); the
  sidecars say `SpatialReference: orig`.
- Confounds: `bold_moest.txt` holds MCFLIRT-ordered motion estimates (rot_x, rot_y, rot_z in
  radians, then trans_x, trans_y, trans_z in mm, as PyMVPA's `McFlirtParams` reads them); they are
  written under fMRIPrep's names with their `_derivative1` columns, `framewise_displacement`
  (Power 2012) and the mean signal in the brain (and, for 25 mm, white-matter) mask.

## Placeholder stimuli
The original pictures are not distributed with this data. `stimuli/` therefore holds one small
generated placeholder PNG per category (a flat colour and the category name), and
`stimuli/captions.tsv` gives each placeholder its category name as caption:
{caption_lines}

They stand in for the category, not for the image that was seen: use them for text (caption)
targets and category identification, never for pixel reconstruction.
"""


def haxby_to_bids(
    source_dir: str | Path,
    out_dir: str | Path,
    *,
    flavor: Literal["25mm", "1slice"] = "25mm",
    subject: str = "1",
    space: str = "T1w",
    overwrite: bool = False,
) -> Path:
    """Convert PyMVPA's Haxby (2001) example data to raw BIDS plus fMRIPrep-like derivatives.

    Parameters
    ----------
    source_dir : path
        The ``haxby2001-pymvpa`` folder (``sub001/BOLD/task001_runNNN/``, ``sub001/masks/``,
        ``LICENSE``, ``scan_key.txt``).
    out_dir : path
        Where to write the raw dataset; the derivatives go to ``out_dir/derivatives/fmriprep``.
        Written whole or not at all.
    flavor : {"25mm", "1slice"}
        Which BOLD images to use: ``"25mm"`` (whole brain resampled to 25 mm voxels, 6x10x10; ROI
        labels ``ventral`` = PyMVPA's ``vt`` mask and ``cortex`` = its Harvard-Oxford cortical
        mask ``hoc``) or ``"1slice"`` (the posterior half of one axial slice, 3.1x3.75 mm, 40x20x1;
        one ROI label ``slice`` = the in-brain voxels of ``mask.nii.gz``).
    subject : str
        BIDS subject label to write (``sub-<subject>``).
    space : str
        The ``space-`` label of the derivatives.
    overwrite : bool
        Replace an existing ``out_dir``.

    Returns
    -------
    pathlib.Path
        The absolute path of the raw dataset.

    Raises
    ------
    UsageError
        Unknown ``flavor`` or an invalid label.
    MissingInputError
        A source file (run folder, BOLD image, events, motion file, mask, licence) is absent.
    DataError
        A source file disagrees with the others (grid, number of volumes, TR).
    OutputError
        ``out_dir`` exists (without ``overwrite``) or cannot be created.
    """
    import nibabel as nib

    if flavor not in ("25mm", "1slice"):
        raise UsageError(f"flavor={flavor!r}: choose '25mm' or '1slice'")
    for name, value in (("subject", subject), ("space", space)):
        if not BIDS_LABEL.match(value):
            raise UsageError(f"{name}={value!r}: a BIDS label may hold only letters and digits")
    source = Path(source_dir)
    sub_src, licence, run_dirs = find_sources(source)
    bold_name = f"bold_{flavor}.nii.gz"
    first_bold = run_dirs[0][1] / bold_name
    if not first_bold.is_file():
        raise MissingInputError(f"{first_bold}: BOLD image not found")
    reference = nib.load(first_bold)
    tr = haxby_tr(source, reference.header)
    brain, rois, tissue = masks_and_rois(flavor, source, sub_src, reference)
    dseg = roi_dseg(rois, reference)
    runs, categories = read_runs(run_dirs, bold_name, reference, first_bold)
    captions = {c: _HAXBY_CAPTIONS.get(c, c) for c in categories}

    out = Path(out_dir)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        licence_text = licence.read_text(encoding="utf-8")
        _write_raw_dataset(tmp, licence_text, flavor, subject, space, tr, captions)
        deriv = tmp / "derivatives" / "fmriprep"
        _write_derivatives_dataset(deriv, licence_text)
        _write_rois(deriv, subject, space, rois, dseg, reference)
        raw_func = tmp / f"sub-{subject}" / "func"
        deriv_func = deriv / f"sub-{subject}" / "func"
        raw_func.mkdir(parents=True)
        deriv_func.mkdir(parents=True)
        for run in runs:
            _write_run(raw_func, deriv_func, run, subject, space, tr, bold_name)
            _write_run_masks_and_confounds(
                deriv_func, run, subject, space, brain, tissue, reference
            )
    return out.absolute()


def _write_raw_dataset(
    tmp: Path,
    licence_text: str,
    flavor: str,
    subject: str,
    space: str,
    tr: float,
    captions: dict[str, str],
) -> None:
    """The raw dataset's top level: description, licence, README, participants, task sidecars,
    placeholder stimuli and their captions."""
    import pandas as pd

    categories = list(captions)
    write_json(
        tmp / "dataset_description.json",
        {
            "Name": "Haxby et al. (2001) object viewing, subject 1 (PyMVPA tutorial data)",
            "BIDSVersion": BIDS_VERSION,
            "DatasetType": "raw",
            "License": "MIT",
            "Authors": _HAXBY_AUTHORS,
            "ReferencesAndLinks": [_HAXBY_REFERENCE],
            "GeneratedBy": [
                {
                    "Name": "nipype-brainrecon",
                    "Version": __version__,
                    "Description": f"haxby_to_bids (flavour {flavor}), PyMVPA example data",
                }
            ],
        },
    )
    (tmp / "LICENSE").write_text(licence_text, encoding="utf-8")
    (tmp / "README").write_text(_haxby_readme(flavor, subject, space, captions), encoding="utf-8")
    write_tsv(tmp / "participants.tsv", pd.DataFrame({"participant_id": [f"sub-{subject}"]}))
    write_json(
        tmp / f"task-{HAXBY_TASK}_bold.json",
        {
            "TaskName": HAXBY_TASK,
            "TaskDescription": "Passive viewing of grey-scale pictures of faces, houses, cats, "
            "shoes, bottles, scissors, chairs and scrambled pictures in 22.5 s blocks",
            "RepetitionTime": tr,
        },
    )
    write_json(
        tmp / f"task-{HAXBY_TASK}_events.json",
        {
            "trial_type": {
                "Description": "Object category of the block",
                "Levels": {c: f"pictures of: {captions[c]}" for c in categories},
            },
            "stim_file": {
                "Description": "Generated placeholder image of the block's category, "
                "relative to stimuli/ (the original pictures are not distributed)"
            },
        },
    )
    _write_stimuli(tmp / "stimuli", captions)


def _write_stimuli(stimuli: Path, captions: dict[str, str]) -> None:
    """One placeholder PNG per category and the captions table."""
    import pandas as pd

    categories = list(captions)
    stimuli.mkdir()
    for index, category in enumerate(categories):
        (stimuli / f"{category}.png").write_bytes(placeholder_png(category, index, len(categories)))
    write_tsv(
        stimuli / "captions.tsv",
        pd.DataFrame(
            {"stim_file": [f"{c}.png" for c in categories], "caption": list(captions.values())}
        ),
    )


def _write_derivatives_dataset(deriv: Path, licence_text: str) -> None:
    """The derivatives dataset's top level: description, licence, README, .bidsignore."""
    write_json(
        deriv / "dataset_description.json",
        {
            "Name": "Haxby et al. (2001) subject 1: fMRIPrep-like derivatives of PyMVPA's "
            "preprocessed runs",
            "BIDSVersion": BIDS_VERSION,
            "DatasetType": "derivative",
            "License": "MIT",
            "Authors": _HAXBY_AUTHORS,
            "GeneratedBy": [
                {
                    "Name": "nipype-brainrecon",
                    "Version": __version__,
                    "Description": "haxby_to_bids: PyMVPA's preprocessed runs, masks and "
                    "motion estimates under fMRIPrep's names (fMRIPrep itself was not run)",
                }
            ],
        },
    )
    (deriv / "LICENSE").write_text(licence_text, encoding="utf-8")
    (deriv / "README").write_text(
        "fMRIPrep-like derivatives of the Haxby (2001) runs; see ../../README.\n",
        encoding="utf-8",
    )
    # BIDS does not define fMRIPrep's confounds files; fMRIPrep lists them the same way.
    (deriv / ".bidsignore").write_text("*_desc-confounds_timeseries.*\n", encoding="utf-8")


def _write_rois(
    deriv: Path, subject: str, space: str, rois: list[Roi], dseg: np.ndarray, reference: Any
) -> None:
    """The ROI segmentation (``desc-visual_dseg``), its sidecar and its label table."""
    import nibabel as nib
    import pandas as pd

    anat = deriv / f"sub-{subject}" / "anat"
    anat.mkdir(parents=True)
    nib.save(
        volume_image(dseg, reference, np.uint8),
        anat / f"sub-{subject}_space-{space}_desc-visual_dseg.nii.gz",
    )
    write_json(
        anat / f"sub-{subject}_space-{space}_desc-visual_dseg.json",
        {"SpatialReference": "orig", "Description": "ROI segmentation on the BOLD grid"},
    )
    write_tsv(
        deriv / "desc-visual_dseg.tsv",
        pd.DataFrame(
            {
                "index": [r[0] for r in rois],
                "name": [r[1] for r in rois],
                "abbreviation": [r[2] for r in rois],
            }
        ),
    )
    write_json(
        deriv / "desc-visual_dseg.json",
        {"Description": "ROI labels: " + "; ".join(f"{r[1]} = {r[3]}" for r in rois)},
    )


def _write_run(
    raw_func: Path,
    deriv_func: Path,
    run: HaxbyRun,
    subject: str,
    space: str,
    tr: float,
    bold_name: str,
) -> None:
    """One run's raw BOLD and events (with ``stim_file``), and its preprocessed BOLD."""
    number, bold_path, _, events, _ = run
    stem = f"sub-{subject}_task-{HAXBY_TASK}_run-{number:02d}"
    shutil.copyfile(bold_path, raw_func / f"{stem}_bold.nii.gz")
    table = events[["onset", "duration", "trial_type"]].copy()
    table["stim_file"] = [f"{c}.png" for c in table["trial_type"].astype(str)]
    write_tsv(raw_func / f"{stem}_events.tsv", table)

    shutil.copyfile(bold_path, deriv_func / f"{stem}_space-{space}_desc-preproc_bold.nii.gz")
    write_json(
        deriv_func / f"{stem}_space-{space}_desc-preproc_bold.json",
        {
            "TaskName": HAXBY_TASK,
            "RepetitionTime": tr,
            "SkullStripped": False,
            "SpatialReference": "orig",
            "Description": f"PyMVPA's preprocessed run ({bold_name})",
        },
    )


def _write_run_masks_and_confounds(
    deriv_func: Path,
    run: HaxbyRun,
    subject: str,
    space: str,
    brain: np.ndarray,
    tissue: dict[str, np.ndarray],
    reference: Any,
) -> None:
    """One run's brain mask and confounds table, with their sidecars."""
    import nibabel as nib

    number, _, bold, _, motion = run
    stem = f"sub-{subject}_task-{HAXBY_TASK}_run-{number:02d}"
    nib.save(
        volume_image(brain, reference, np.uint8),
        deriv_func / f"{stem}_space-{space}_desc-brain_mask.nii.gz",
    )
    write_json(
        deriv_func / f"{stem}_space-{space}_desc-brain_mask.json",
        {"Type": "Brain", "SpatialReference": "orig", "Description": "PyMVPA's brain mask"},
    )
    data = np.asanyarray(bold.dataobj, dtype=np.float64)
    confounds = haxby_confounds(motion, data, tissue)
    write_tsv(deriv_func / f"{stem}_desc-confounds_timeseries.tsv", confounds)
    write_json(
        deriv_func / f"{stem}_desc-confounds_timeseries.json",
        confounds_sidecar(list(confounds.columns)),
    )
