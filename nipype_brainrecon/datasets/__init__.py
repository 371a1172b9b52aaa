"""Real fMRI fixtures turned into the inputs the project reads.

* :func:`haxby_to_bids` lays out PyMVPA's copy of Haxby et al. (2001), subject 1, as a raw BIDS
  dataset plus an fMRIPrep-like derivatives dataset, the layout
  :func:`nipype_brainrecon.bids.collect_participant` reads.
* :func:`load_miyawaki` reads the V1 "figure image" session of Miyawaki et al. (2008).

No Nipype here: plain functions on paths and arrays.
"""

from __future__ import annotations

import colorsys
import io
import json
import re
import shutil
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .._version import __version__
from ..errors import DataError, MissingInputError, UsageError
from ..io import atomic_directory

__all__ = [
    "HAXBY_TASK",
    "HAXBY_MOTION_ORDER",
    "haxby_to_bids",
    "load_miyawaki",
]

#: BIDS task label of the converted Haxby runs (the one OpenNeuro's ds000105 uses too).
HAXBY_TASK = "objectviewing"

#: Column order of ``bold_moest.txt``: MCFLIRT's ``.par`` order, rotations (radians) then
#: translations (mm). PyMVPA read these files with its ``McFlirtParams`` reader (``rot1 rot2 rot3
#: x y z``), and the magnitudes agree: columns 1-3 stay below 0.007 (0.4 degree as radians,
#: implausibly small as mm), columns 4-6 reach 0.16 (mm). fMRIPrep uses the same units.
HAXBY_MOTION_ORDER = ("rot_x", "rot_y", "rot_z", "trans_x", "trans_y", "trans_z")

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
_BIDS_VERSION = "1.10.0"
_LABEL = re.compile(r"^[A-Za-z0-9]+$")


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def _write_tsv(path: Path, table: Any) -> None:
    """Write a pandas DataFrame as a BIDS TSV (tab separated, ``n/a`` for missing values)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, sep="\t", index=False, na_rep="n/a", lineterminator="\n")


def _placeholder_png(text: str, index: int, count: int, size: int = 96) -> bytes:
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


def _haxby_tr(source: Path, bold_header: Any) -> float:
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


def _same_grid(a: Any, b: Any) -> bool:
    return tuple(a.shape[:3]) == tuple(b.shape[:3]) and np.allclose(a.affine, b.affine, atol=1e-3)


def _load_grid_image(path: Path, reference: Any, what: str) -> np.ndarray:
    """Voxel data of a 3-D image that must lie on the BOLD grid."""
    import nibabel as nib

    if not path.is_file():
        raise MissingInputError(f"{path}: {what} not found; the Haxby folder is incomplete")
    image = nib.load(path)
    if not _same_grid(image, reference):
        raise DataError(
            f"{path}: {what} is not on the BOLD grid of the runs; use the matching mask"
        )
    return np.asanyarray(image.dataobj).reshape(image.shape[:3])


def _volume_image(data: np.ndarray, reference: Any, dtype: Any) -> Any:
    """A 3-D image on ``reference``'s grid, with its qform/sform codes and spatial units."""
    import nibabel as nib

    image = nib.Nifti1Image(np.asarray(data, dtype=dtype), reference.affine)
    header = reference.header
    image.set_qform(reference.affine, code=int(header["qform_code"]) or 1)
    image.set_sform(reference.affine, code=int(header["sform_code"]) or 1)
    image.header.set_xyzt_units(xyz="mm")
    return image


def _confounds(motion: np.ndarray, bold: np.ndarray, masks: dict[str, np.ndarray]) -> Any:
    """fMRIPrep-named confounds: tissue signals, motion, their backward differences and FD.

    ``motion`` columns are in :data:`HAXBY_MOTION_ORDER`; ``framewise_displacement`` follows
    Power et al. (2012): summed absolute differences, rotations as arc length on a 50 mm sphere.
    """
    import pandas as pd

    columns: dict[str, np.ndarray] = {}

    def add(name: str, values: np.ndarray) -> None:
        columns[name] = values
        diff = np.empty_like(values)
        diff[0] = np.nan
        diff[1:] = np.diff(values)
        columns[f"{name}_derivative1"] = diff

    for name, mask in masks.items():
        add(name, bold[mask].mean(axis=0))
    by_name = dict(zip(HAXBY_MOTION_ORDER, motion.T, strict=True))
    for name in ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"):
        add(name, by_name[name])
    steps = np.abs(np.diff(motion, axis=0))
    rotation = np.array([c.startswith("rot") for c in HAXBY_MOTION_ORDER])
    fd = np.empty(motion.shape[0])
    fd[0] = np.nan
    fd[1:] = steps[:, ~rotation].sum(axis=1) + 50.0 * steps[:, rotation].sum(axis=1)
    columns["framewise_displacement"] = fd
    return pd.DataFrame(columns)


def _confounds_sidecar(names: list[str]) -> dict[str, Any]:
    units = {"trans": "mm", "rot": "rad", "framewise": "mm"}
    sidecar: dict[str, Any] = {}
    for name in names:
        base = name.removesuffix("_derivative1")
        if base in ("global_signal", "white_matter"):
            what = {"global_signal": "brain mask", "white_matter": "white-matter mask"}[base]
            entry = {"Description": f"Mean BOLD signal in the {what}"}
        elif base == "framewise_displacement":
            entry = {"Description": "Framewise displacement (Power 2012, 50 mm head radius)"}
        else:
            entry = {"Description": f"Head motion estimate {base} (PyMVPA bold_moest.txt)"}
        unit = units.get(base.split("_")[0])
        if unit:
            entry["Units"] = unit
        if name.endswith("_derivative1"):
            entry["Description"] = "Backward difference of: " + entry["Description"]
        sidecar[name] = entry
    return sidecar


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
    import pandas as pd

    if flavor not in ("25mm", "1slice"):
        raise UsageError(f"flavor={flavor!r}: choose '25mm' or '1slice'")
    for name, value in (("subject", subject), ("space", space)):
        if not _LABEL.match(value):
            raise UsageError(f"{name}={value!r}: a BIDS label may hold only letters and digits")
    source = Path(source_dir)
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

    bold_name = f"bold_{flavor}.nii.gz"
    first_bold = run_dirs[0][1] / bold_name
    if not first_bold.is_file():
        raise MissingInputError(f"{first_bold}: BOLD image not found")
    reference = nib.load(first_bold)
    tr = _haxby_tr(source, reference.header)

    if flavor == "25mm":
        mask_dir = sub_src / "masks" / "25mm"
        brain = _load_grid_image(mask_dir / "brain.nii.gz", reference, "brain mask") > 0
        white = _load_grid_image(mask_dir / "white.nii.gz", reference, "white-matter mask") > 0
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
        brain = _load_grid_image(source / "mask.nii.gz", reference, "slice mask") > 0
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
    dseg = np.zeros(reference.shape[:3], dtype=np.uint8)
    for index, name, _, _, path in rois:
        voxels = _load_grid_image(path, reference, f"ROI mask '{name}'") > 0
        if np.any(dseg[voxels]):
            raise DataError(
                f"{path}: ROI '{name}' overlaps another ROI; a dseg needs disjoint labels"
            )
        dseg[voxels] = index

    categories: list[str] = []
    runs = []
    for number, run_dir in run_dirs:
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
        if bold.ndim != 4 or not _same_grid(bold, reference):
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
        for category in events["trial_type"].astype(str):
            if category not in categories:
                categories.append(category)
        runs.append((number, bold_path, bold, events, motion))
    categories.sort()
    captions = {c: _HAXBY_CAPTIONS.get(c, c) for c in categories}

    out = Path(out_dir)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        licence_text = licence.read_text(encoding="utf-8")
        # Raw dataset.
        _write_json(
            tmp / "dataset_description.json",
            {
                "Name": "Haxby et al. (2001) object viewing, subject 1 (PyMVPA tutorial data)",
                "BIDSVersion": _BIDS_VERSION,
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
        (tmp / "README").write_text(
            _haxby_readme(flavor, subject, space, captions), encoding="utf-8"
        )
        _write_tsv(tmp / "participants.tsv", pd.DataFrame({"participant_id": [f"sub-{subject}"]}))
        _write_json(
            tmp / f"task-{HAXBY_TASK}_bold.json",
            {
                "TaskName": HAXBY_TASK,
                "TaskDescription": "Passive viewing of grey-scale pictures of faces, houses, cats, "
                "shoes, bottles, scissors, chairs and scrambled pictures in 22.5 s blocks",
                "RepetitionTime": tr,
            },
        )
        _write_json(
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
        stimuli = tmp / "stimuli"
        stimuli.mkdir()
        for index, category in enumerate(categories):
            (stimuli / f"{category}.png").write_bytes(
                _placeholder_png(category, index, len(categories))
            )
        _write_tsv(
            stimuli / "captions.tsv",
            pd.DataFrame(
                {"stim_file": [f"{c}.png" for c in categories], "caption": list(captions.values())}
            ),
        )

        # Derivatives dataset.
        deriv = tmp / "derivatives" / "fmriprep"
        _write_json(
            deriv / "dataset_description.json",
            {
                "Name": "Haxby et al. (2001) subject 1: fMRIPrep-like derivatives of PyMVPA's "
                "preprocessed runs",
                "BIDSVersion": _BIDS_VERSION,
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
        anat = deriv / f"sub-{subject}" / "anat"
        anat.mkdir(parents=True)
        nib.save(
            _volume_image(dseg, reference, np.uint8),
            anat / f"sub-{subject}_space-{space}_desc-visual_dseg.nii.gz",
        )
        _write_json(
            anat / f"sub-{subject}_space-{space}_desc-visual_dseg.json",
            {"SpatialReference": "orig", "Description": "ROI segmentation on the BOLD grid"},
        )
        _write_tsv(
            deriv / "desc-visual_dseg.tsv",
            pd.DataFrame(
                {
                    "index": [r[0] for r in rois],
                    "name": [r[1] for r in rois],
                    "abbreviation": [r[2] for r in rois],
                }
            ),
        )
        _write_json(
            deriv / "desc-visual_dseg.json",
            {"Description": "ROI labels: " + "; ".join(f"{r[1]} = {r[3]}" for r in rois)},
        )

        raw_func = tmp / f"sub-{subject}" / "func"
        deriv_func = deriv / f"sub-{subject}" / "func"
        raw_func.mkdir(parents=True)
        deriv_func.mkdir(parents=True)
        for number, bold_path, bold, events, motion in runs:
            stem = f"sub-{subject}_task-{HAXBY_TASK}_run-{number:02d}"
            shutil.copyfile(bold_path, raw_func / f"{stem}_bold.nii.gz")
            table = events[["onset", "duration", "trial_type"]].copy()
            table["stim_file"] = [f"{c}.png" for c in table["trial_type"].astype(str)]
            _write_tsv(raw_func / f"{stem}_events.tsv", table)

            shutil.copyfile(
                bold_path, deriv_func / f"{stem}_space-{space}_desc-preproc_bold.nii.gz"
            )
            _write_json(
                deriv_func / f"{stem}_space-{space}_desc-preproc_bold.json",
                {
                    "TaskName": HAXBY_TASK,
                    "RepetitionTime": tr,
                    "SkullStripped": False,
                    "SpatialReference": "orig",
                    "Description": f"PyMVPA's preprocessed run ({bold_name})",
                },
            )
            nib.save(
                _volume_image(brain, reference, np.uint8),
                deriv_func / f"{stem}_space-{space}_desc-brain_mask.nii.gz",
            )
            _write_json(
                deriv_func / f"{stem}_space-{space}_desc-brain_mask.json",
                {"Type": "Brain", "SpatialReference": "orig", "Description": "PyMVPA's brain mask"},
            )
            data = np.asanyarray(bold.dataobj, dtype=np.float64)
            confounds = _confounds(motion, data, tissue)
            _write_tsv(deriv_func / f"{stem}_desc-confounds_timeseries.tsv", confounds)
            _write_json(
                deriv_func / f"{stem}_desc-confounds_timeseries.json",
                _confounds_sidecar(list(confounds.columns)),
            )
    return out.absolute()


def load_miyawaki(path: str | Path) -> dict[str, np.ndarray]:
    """Read the V1 figure-image session of Miyawaki et al. (2008) (``V1_mean_figure.mat``).

    Parameters
    ----------
    path : path
        The ``.mat`` file or the folder holding ``V1_mean_figure.mat``.

    Returns
    -------
    dict
        ``images``: (80, 10, 10) uint8 in {0, 1}, one per presentation (each column of ``I2``
        reshaped column-major); ``responses``: (80, 797) float64 V1 voxel responses;
        ``image_ids``: (80,) int64 in 0..9, presentations of the same image share an id (numbered in
        order of first presentation); ``unique_images``: (10, 10, 10) uint8, ``unique_images[i]`` is
        the image with id ``i``.

    Raises
    ------
    MissingInputError
        The file does not exist.
    DataError
        The file cannot be read as MATLAB data or lacks ``I2``/``R2`` of the expected shapes.
    """
    import scipy.io

    path = Path(path)
    if path.is_dir():
        path = path / "V1_mean_figure.mat"
    if not path.is_file():
        raise MissingInputError(
            f"{path}: Miyawaki file not found; give V1_mean_figure.mat or its folder"
        )
    try:
        contents = scipy.io.loadmat(path)
    except Exception as exc:  # scipy raises several types for damaged files
        raise DataError(
            f"{path}: cannot be read as a MATLAB file ({exc}); fetch a fresh copy"
        ) from exc
    pixels, responses = contents.get("I2"), contents.get("R2")
    if pixels is None or responses is None:
        raise DataError(f"{path}: variables I2 and R2 not found; is this V1_mean_figure.mat?")
    pixels, responses = np.asarray(pixels), np.asarray(responses)
    if pixels.ndim != 2 or pixels.shape[0] != 100 or responses.ndim != 2:
        raise DataError(f"{path}: I2 has shape {pixels.shape}, expected (100, n) of 10x10 images")
    if responses.shape[1] != pixels.shape[1]:
        raise DataError(
            f"{path}: R2 has {responses.shape[1]} presentations but I2 has {pixels.shape[1]}"
        )
    if not np.isin(pixels, (0, 1)).all():
        raise DataError(f"{path}: I2 holds values other than 0 and 1; expected binary images")
    # Each column is one image stored column-major (MATLAB order).
    images = pixels.T.reshape(-1, 10, 10).transpose(0, 2, 1).astype(np.uint8)
    unique, first, ids = np.unique(
        images.reshape(len(images), -1), axis=0, return_index=True, return_inverse=True
    )
    order = np.argsort(first)  # number images by first presentation
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    image_ids = rank[np.asarray(ids).ravel()].astype(np.int64)
    return {
        "images": images,
        "responses": responses.T.astype(np.float64),
        "image_ids": image_ids,
        "unique_images": unique[order].reshape(-1, 10, 10).astype(np.uint8),
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m nipype_brainrecon.datasets haxby SOURCE OUT``: convert a real fixture."""
    import argparse
    import sys

    from ..errors import BrainreconError

    parser = argparse.ArgumentParser(
        prog="python -m nipype_brainrecon.datasets",
        description="Convert a real fixture into BIDS raw + fMRIPrep-like derivatives.",
    )
    parser.add_argument("dataset", choices=["haxby"], help="which fixture")
    parser.add_argument(
        "source", help="folder of the fixture (e.g. ../shared/data/haxby2001-pymvpa)"
    )
    parser.add_argument("out", help="new folder for the BIDS dataset")
    parser.add_argument("--flavor", choices=["25mm", "1slice"], default="25mm", help="which BOLD")
    args = parser.parse_args(argv)
    try:
        out = haxby_to_bids(args.source, args.out, flavor=args.flavor)
    except BrainreconError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
