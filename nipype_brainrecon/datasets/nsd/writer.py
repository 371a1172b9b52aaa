""":func:`nsd_to_bids`: one NSD subject as a derivatives dataset of single-trial betas.

Output (``<sub>`` = ``sub-01`` ..., ``<ses>`` = ``ses-01`` ..., ``<space>`` = ``func1pt8mm``)::

    dataset_description.json  README  .bidsignore
    stimuli/nsd<73k-ID, 5 digits>.png             the images the subject saw (only those)
    stimuli/captions.tsv                          stim_file, caption (several rows per image)
    <sub>/anat/<sub>_space-<space>_desc-<atlas>_dseg.nii.gz (+ .tsv: index, name; + .json)
    <sub>/<ses>/func/<sub>_<ses>_task-nsdcore_space-<space>_desc-<desc>_betas.nii.gz (+ .json)
    <sub>/<ses>/func/<sub>_<ses>_task-nsdcore_desc-<desc>_trials.tsv (+ .json)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from ..._version import __version__
from ...errors import DataError, MissingInputError, UsageError
from ...io import atomic_directory
from ..common import BIDS_VERSION, write_json, write_tsv
from .atlases import atlas_dseg, dseg_desc
from .betas import open_betas, write_session_betas
from .captions import captions_table
from .layout import ATLASES, BETA_SCALE, BETAS_VERSION, NSD_BUCKET, TASK, NsdLayout, require
from .stimuli import export_stimuli, open_stimuli
from .trials import build_trials, read_expdesign, read_responses, read_stim_info, session_trials

logger = logging.getLogger(__name__)

#: ``desc-`` of the converted betas: the release's GLM version in letters and digits.
BETAS_DESC = "fithrfGLMdenoiseRR"

#: Authors of the source data (Allen et al. 2022, Nat Neurosci 25:116-126).
NSD_AUTHORS = (
    "Emily J. Allen",
    "Ghislain St-Yves",
    "Yihan Wu",
    "Jesse L. Breedlove",
    "Jacob S. Prince",
    "Logan T. Dowdle",
    "Matthias Nau",
    "Brad Caron",
    "Franco Pestilli",
    "Ian Charest",
    "J. Benjamin Hutchinson",
    "Thomas Naselaris",
    "Kendrick Kay",
)

_BIDSIGNORE = "*_betas.nii.gz\n*_betas.json\n*_trials.tsv\n*_trials.json\n"

_TRIALS_SIDECAR = {
    "session": {"Description": "NSD scan session (SESSION of responses.tsv)"},
    "run": {"Description": "Run within the session (RUN of responses.tsv), 1-12"},
    "trial": {"Description": "Stimulus trial within the run (TRIAL of responses.tsv), 1-based"},
    "stim_id": {"Description": "73k-ID of the image (1-based, as 73KID in responses.tsv)"},
    "stim_file": {"Description": "The image, relative to stimuli/"},
    "coco_id": {"Description": "COCO image id (cocoId of nsd_stim_info_merged.csv)"},
    "repetition": {"Description": "Earlier showings of this image to this subject (0: first)"},
    "shared1000": {"Description": "Image is one of the 1,000 shown to every subject (sharedix)"},
    "split": {"Levels": {"test": "shared-1000 image", "train": "subject's own image"}},
    "trial_type": {"Levels": {"shared": "shared-1000 image", "unique": "subject's own image"}},
}


def parse_sessions(text: str) -> list[int]:
    """Session numbers from ``"1-37"``, ``"1,3,5-7"``.

    >>> parse_sessions("1-3,7")
    [1, 2, 3, 7]
    """
    out: set[int] = set()
    try:
        for part in str(text).split(","):
            low, _, high = part.strip().partition("-")
            first, last = int(low), int(high or low)
            if first < 1 or last < first:
                raise ValueError(part)
            out.update(range(first, last + 1))
    except ValueError:
        raise UsageError(f"sessions={text!r}: give numbers from 1, as 1-37 or 1,3,5-7") from None
    return sorted(out)


def nsd_to_bids(
    nsd_root: str | os.PathLike,
    out: str | os.PathLike,
    subject: int = 1,
    sessions: Iterable[int] | str | None = None,
    space: str = "func1pt8mm",
    coco_annotations: str | os.PathLike | None = None,
    zscore_sessions: bool = False,
    *,
    overwrite: bool = False,
) -> Path:
    """Convert one NSD subject into a derivatives dataset of precomputed single-trial betas.

    Parameters
    ----------
    nsd_root : path
        Local copy of the release (``nsddata/``, ``nsddata_betas/``, ``nsddata_stimuli/``).
    out : path
        New folder for the dataset, written whole or not at all.
    subject : int
        NSD subject, 1-8.
    sessions : iterable of int, str or None
        Sessions to convert (``"1-37"`` accepted); all sessions with betas and behaviour if None.
    space : str
        ``func1pt8mm`` or ``func1mm``.
    coco_annotations : path or None
        Folder of COCO's ``captions_train2017.json`` / ``captions_val2017.json`` (or of its
        ``annotations/``); default ``nsddata_stimuli/stimuli/nsd/annotations`` under the root.
    zscore_sessions : bool
        Write each voxel z-scored over its session's trials instead of percent signal change.
    overwrite : bool
        Replace an existing ``out``.

    Returns
    -------
    pathlib.Path
        The absolute path of the dataset.

    Raises
    ------
    MissingInputError
        A needed release file is absent, or the subject lacks a requested session (exit 66).
    DataError
        A file is corrupt or disagrees with the others; a caption is missing (exit 65).
    UsageError
        Bad subject, space or sessions (exit 64).
    OutputError
        ``out`` exists or cannot be created (exit 73).
    """
    layout = NsdLayout(Path(nsd_root), int(subject), space)
    if not layout.root.is_dir():
        raise MissingInputError(f"{layout.root}: NSD root folder not found")
    names = {
        "expdesign": require(layout, layout.expdesign, "NSD experimental design"),
        "stim_info": require(layout, layout.stim_info, "NSD stimulus information"),
        "responses": require(layout, layout.responses, f"behaviour of {layout.subj}"),
    }
    require(layout, layout.stimuli, "NSD stimulus images")
    stim_info = read_stim_info(names["stim_info"])
    all_trials = build_trials(
        read_expdesign(names["expdesign"]),
        read_responses(names["responses"]),
        stim_info,
        layout.subject,
        names,
    )
    chosen = _choose_sessions(layout, all_trials, sessions)
    trials = all_trials[all_trials["session"].isin(chosen)].reset_index(drop=True)
    sources = {s: _checked_betas(layout, s, trials) for s in chosen}
    atlas_files = {
        a: (
            require(layout, layout.roi(a), f"{a} atlas"),
            require(layout, layout.ctab(a), f"{a} label table"),
        )
        for a in ATLASES
    }
    captions = captions_table(
        stim_info,
        trials["stim_id"].tolist(),
        lambda split: require(
            layout, layout.coco_captions(split, coco_annotations), f"COCO {split} captions"
        ),
    )
    target = Path(out)
    with atomic_directory(target, overwrite=overwrite) as tmp:
        _write_top_level(tmp, layout, chosen, zscore_sessions)
        _write_stimuli(tmp, layout, trials, captions)
        reference = sources[chosen[0]]
        _write_atlases(tmp, layout, atlas_files, reference)
        for session in chosen:
            logger.info("%s session %d: writing betas", layout.subj, session)
            # Each source is let go once written: one session's file open at a time.
            source = sources.pop(session)
            _write_session(tmp, layout, session, source, trials, zscore_sessions)
            del source
    return target.absolute()


def _choose_sessions(
    layout: NsdLayout, trials: pd.DataFrame, sessions: Iterable[int] | str | None
) -> list[int]:
    """The requested sessions, each with behaviour and a betas file (else exit 66)."""
    with_betas = set(layout.betas_sessions())
    with_behaviour = set(trials["session"].unique().tolist())
    if sessions is None:
        chosen = sorted(with_betas & with_behaviour)
        if not chosen:
            raise MissingInputError(
                f"{layout.betas_dir}: no betas_sessionNN.nii.gz of {layout.subj} with behaviour in "
                f"{layout.responses.name}; it comes from the NSD release, "
                f"{NSD_BUCKET}/{layout.release_path(layout.betas_dir)}/"
            )
        return chosen
    chosen = parse_sessions(sessions) if isinstance(sessions, str) else sorted(set(sessions))
    if not chosen:
        raise UsageError("sessions: the list is empty; give at least one session")
    available = _ranges(sorted(with_betas & with_behaviour))
    for session in chosen:
        betas = layout.betas(session)
        lacks = [] if betas.is_file() else [f"{betas} not found"]
        if session not in with_behaviour:
            lacks.append(f"no rows of SESSION {session} in {layout.responses}")
        if lacks:
            raise MissingInputError(
                f"{layout.subj} session {session}: {'; '.join(lacks)}; sessions with betas and "
                f"behaviour: {available}; betas come from the NSD release, "
                f"{NSD_BUCKET}/{layout.release_path(betas)}"
            )
    return chosen


def _ranges(values: list[int]) -> str:
    """``1-3, 7`` from ``[1, 2, 3, 7]``."""
    parts: list[str] = []
    for v in values:
        if parts and parts[-1].split("-")[-1] == str(v - 1):
            parts[-1] = f"{parts[-1].split('-')[0]}-{v}"
        else:
            parts.append(str(v))
    return ", ".join(parts) or "none"


def _checked_betas(layout: NsdLayout, session: int, trials: pd.DataFrame) -> Any:
    """The session's betas image, with one volume per trial of the session."""
    path = layout.betas(session)
    image = open_betas(path)
    n = int((trials["session"] == session).sum())
    if image.shape[3] != n:
        raise DataError(
            f"{path}: {image.shape[3]} volumes but {layout.responses.name} lists {n} trials in "
            f"session {session}; are they from the same release?"
        )
    return image


def _spatial_reference(layout: NsdLayout) -> str:
    """The release's mean volume of the subject's preparation: the grid of every image."""
    return f"{NSD_BUCKET}/nsddata/ppdata/{layout.subj}/{layout.space}/mean.nii.gz"


def _write_top_level(tmp: Path, layout: NsdLayout, sessions: list[int], zscore: bool) -> None:
    unit = "z-scored within session" if zscore else "percent signal change"
    write_json(
        tmp / "dataset_description.json",
        {
            "Name": f"Natural Scenes Dataset {layout.subj}: single-trial betas ({BETAS_VERSION})",
            "BIDSVersion": BIDS_VERSION,
            "DatasetType": "derivative",
            "License": "NSD Terms and Conditions; COCO annotations CC BY 4.0 (see README)",
            "Authors": list(NSD_AUTHORS),
            "GeneratedBy": [
                {
                    "Name": "nipype-brainrecon",
                    "Version": __version__,
                    "Description": f"nsd_to_bids: {layout.space} {BETAS_VERSION} betas in "
                    f"{unit}, sessions {_ranges(sessions)}",
                }
            ],
            "SourceDatasets": [
                {"URL": f"{NSD_BUCKET}/", "DOI": "doi:10.1038/s41593-021-00962-x"},
                {"URL": "https://cocodataset.org/#download"},
            ],
        },
    )
    (tmp / ".bidsignore").write_text(_BIDSIGNORE, encoding="utf-8")
    (tmp / "README").write_text(
        f"Single-trial betas of NSD {layout.subj} ({layout.space}, {BETAS_VERSION}) in {unit}\n"
        f"(release int16 values / {BETA_SCALE:g}), one 4-D file per session with its trials table;\n"
        "the images seen (from nsd_stimuli.hdf5), their COCO 2017 captions and the streams,\n"
        "nsdgeneral and prf-visualrois atlases. Converted by nipype-brainrecon's nsd_to_bids.\n"
        "Use of NSD is subject to its Terms and Conditions (naturalscenesdataset.org);\n"
        "Allen et al. (2022) Nat Neurosci 25:116-126. COCO: Lin et al. (2014).\n",
        encoding="utf-8",
    )


def _write_stimuli(
    tmp: Path, layout: NsdLayout, trials: pd.DataFrame, captions: pd.DataFrame
) -> None:
    stimuli = tmp / "stimuli"
    dataset = open_stimuli(layout.stimuli)
    try:
        export_stimuli(dataset, trials["stim_id"].tolist(), stimuli)
    finally:
        dataset.file.close()
    write_tsv(stimuli / "captions.tsv", captions)


def _write_atlases(
    tmp: Path, layout: NsdLayout, files: dict[str, tuple[Path, Path]], reference: Any
) -> None:
    import nibabel as nib

    sub = f"sub-{layout.subject:02d}"
    anat = tmp / sub / "anat"
    anat.mkdir(parents=True)
    for atlas, (roi, ctab) in files.items():
        image, table = atlas_dseg(roi, ctab, reference)
        stem = f"{sub}_space-{layout.space}_desc-{dseg_desc(atlas)}_dseg"
        nib.save(image, anat / f"{stem}.nii.gz")
        write_tsv(anat / f"{stem}.tsv", table)
        write_json(
            anat / f"{stem}.json",
            {
                "Description": f"NSD atlas {atlas} on the {layout.space} grid (-1 made 0)",
                "SpatialReference": _spatial_reference(layout),
                "Sources": [f"{NSD_BUCKET}/{layout.release_path(p)}" for p in (roi, ctab)],
            },
        )


def _write_session(
    tmp: Path, layout: NsdLayout, session: int, source: Any, trials: pd.DataFrame, zscore: bool
) -> None:
    sub, ses = f"sub-{layout.subject:02d}", f"ses-{session:02d}"
    func = tmp / sub / ses / "func"
    func.mkdir(parents=True)
    prefix = f"{sub}_{ses}_task-{TASK}"
    betas = func / f"{prefix}_space-{layout.space}_desc-{BETAS_DESC}_betas.nii.gz"
    write_session_betas(source, betas, zscore=zscore)
    unit = "z-score over the session's trials" if zscore else "percent signal change"
    write_json(
        betas.with_name(betas.name.replace(".nii.gz", ".json")),
        {
            "Description": f"NSD single-trial betas ({BETAS_VERSION}), one volume per trial",
            "Units": unit,
            "SpatialReference": _spatial_reference(layout),
            "Sources": [f"{NSD_BUCKET}/{layout.release_path(layout.betas(session))}"],
        },
    )
    table = session_trials(trials, session)
    trials_file = func / f"{prefix}_desc-{BETAS_DESC}_trials.tsv"
    write_tsv(trials_file, table)
    write_json(trials_file.with_suffix(".json"), _TRIALS_SIDECAR)
