"""Everything one participant's analysis needs: :func:`collect_participant`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import DataError, MissingInputError, UsageError
from .dseg import find_roi
from .inputs import ParticipantInputs, RunInputs
from .layout import (
    BIDS_LABEL,
    NIFTI_EXTENSIONS,
    check_dataset,
    normalize_participant_label,
    participant_layout,
    subject_labels,
)
from .runs import collect_run
from .tables import read_captions


def collect_participant(
    bids_dir: str | Path,
    participant_label: str,
    *,
    derivatives: str | Path | None = None,
    task: str | None = None,
    session: str | None = None,
    space: str = "T1w",
    roi_dseg: str | Path | None = None,
    roi_labels: str | Path | None = None,
    roi_desc: str = "visual",
    captions_file: str | Path | None = None,
    require_captions: bool = True,
) -> ParticipantInputs:
    """Find every input one participant's analysis needs, and check it is complete.

    Parameters
    ----------
    bids_dir : path
        The raw BIDS dataset (with ``stimuli/``).
    participant_label : str
        With or without ``sub-``.
    derivatives : path, optional
        The fMRIPrep-like derivatives; default ``bids_dir/derivatives/fmriprep``.
    task : str, optional
        Only runs of this task. By default every task with an events file for the participant
        (every run of such a task must then be complete).
    session : str, optional
        Only runs of this session.
    space : str
        ``space-`` label of the preprocessed BOLD, its mask and the ROI segmentation.
    roi_dseg, roi_labels : path, optional
        An ROI segmentation and its label table to use instead of looking them up. By default the
        segmentation is ``DERIVATIVES/sub-<label>/anat/*_space-<space>_desc-<roi_desc>_dseg.nii.gz``
        and the table sits beside it (same name, ``.tsv``) or at the derivatives root
        (``desc-<roi_desc>_dseg.tsv``).
    roi_desc : str
        The ``desc-`` label of the ROI segmentation to look up.
    captions_file : path, optional
        Captions table; default ``bids_dir/stimuli/captions.tsv``.
    require_captions : bool
        When False, a missing captions table (or an image without captions) is accepted and
        ``captions`` holds what there is (for analyses without text targets).

    Returns
    -------
    ParticipantInputs

    Raises
    ------
    InvalidDatasetError
        ``bids_dir`` or ``derivatives`` has no ``dataset_description.json``; a run lacks
        ``RepetitionTime``.
    UsageError
        Bad participant label; participant, task or session not in the raw dataset.
    MissingInputError
        Folder absent; participant absent from the derivatives; no runs; a run's preprocessed BOLD,
        mask, confounds or events absent; a stimulus, the captions table, the ROI segmentation
        or its label table absent.
    DataError
        Files present but wrong: events columns, stimuli outside ``stimuli/``, an image without
        captions, mask/BOLD grids, confounds rows, ROI labels.
    """
    participant, session = _check_labels(participant_label, task, session, space, roi_desc)
    bids_dir, derivatives = _check_datasets(bids_dir, derivatives, participant)
    raw = participant_layout(bids_dir, participant, derivative=False)
    deriv = participant_layout(derivatives, participant, derivative=True)
    bolds = _select_bolds(raw, bids_dir, participant, task, session)
    stimuli_dir = bids_dir / "stimuli"
    runs = [
        collect_run(bold, raw, deriv, derivatives, space, stimuli_dir, bids_dir)
        for bold in sorted(bolds, key=lambda f: f.path)
    ]
    captions, used_captions = _collect_captions(
        runs, stimuli_dir, captions_file, bids_dir, participant, require_captions
    )
    dseg, labels_file, labels = find_roi(
        derivatives, deriv, participant, space, roi_desc, roi_dseg, roi_labels, session
    )
    runs.sort(key=lambda r: (r.session or "", r.task, r.run or "", r.name))
    return ParticipantInputs(
        participant=participant,
        bids_dir=bids_dir,
        derivatives=derivatives,
        stimuli_dir=stimuli_dir,
        space=space,
        runs=tuple(runs),
        captions=captions,
        captions_file=used_captions,
        roi_dseg=dseg,
        roi_labels=labels,
        roi_labels_file=labels_file,
    )


def _check_labels(
    participant_label: str,
    task: str | None,
    session: str | None,
    space: str,
    roi_desc: str,
) -> tuple[str, str | None]:
    """The participant and session labels without prefix; every label letters and digits only."""
    participant = normalize_participant_label(participant_label)
    if session is not None:
        session = str(session).removeprefix("ses-")
    for name, value in (
        ("task", task),
        ("session", session),
        ("space", space),
        ("roi_desc", roi_desc),
    ):
        if value is not None and not BIDS_LABEL.match(str(value)):
            raise UsageError(f"{name}={value!r}: a BIDS label may hold only letters and digits")
    return participant, session


def _check_datasets(
    bids_dir: str | Path, derivatives: str | Path | None, participant: str
) -> tuple[Path, Path]:
    """Absolute raw and derivatives roots: both BIDS datasets, both holding the participant."""
    bids_dir = Path(bids_dir).absolute()
    check_dataset(bids_dir, "BIDS dataset")
    derivatives = (
        bids_dir / "derivatives" / "fmriprep" if derivatives is None else Path(derivatives)
    ).absolute()
    available = subject_labels(bids_dir)
    if participant not in available:
        listed = ", ".join(available) if available else "none"
        raise UsageError(
            f"{bids_dir}: participant '{participant}' not found (participants: {listed})"
        )
    check_dataset(derivatives, "derivatives dataset")
    if not (derivatives / f"sub-{participant}").is_dir():
        raise MissingInputError(
            f"{derivatives / f'sub-{participant}'}: participant absent from the derivatives; "
            "run fMRIPrep for it or pass derivatives="
        )
    return bids_dir, derivatives


def _select_bolds(
    raw: Any, bids_dir: Path, participant: str, task: str | None, session: str | None
) -> list[Any]:
    """The raw BOLD files to analyse: of ``task`` (default: every task with events), ``session``."""
    filters: dict[str, Any] = {
        "subject": participant,
        "suffix": "bold",
        "extension": NIFTI_EXTENSIONS,
    }
    if session is not None:
        sessions = raw.get_sessions(subject=participant)
        if session not in sessions:
            raise UsageError(
                f"{bids_dir / f'sub-{participant}'}: session '{session}' not found "
                f"(sessions: {', '.join(sessions) or 'none'})"
            )
        filters["session"] = session
    bolds = [f for f in raw.get(**filters) if f.entities.get("datatype") == "func"]
    tasks_present = sorted({f.entities["task"] for f in bolds if "task" in f.entities})
    if task is not None:
        if task not in tasks_present:
            raise UsageError(
                f"{bids_dir / f'sub-{participant}'}: task '{task}' not found "
                f"(tasks: {', '.join(tasks_present) or 'none'})"
            )
        tasks = [task]
    else:
        with_events = raw.get(subject=participant, suffix="events", extension=".tsv")
        tasks = sorted({f.entities["task"] for f in with_events if "task" in f.entities})
    bolds = [f for f in bolds if f.entities.get("task") in tasks]
    if not bolds:
        raise MissingInputError(
            f"{bids_dir / f'sub-{participant}'}: no BOLD runs with events "
            f"({'task ' + task if task else 'any task'}); "
            "expected func/*_bold.nii.gz and *_events.tsv"
        )
    return bolds


def _collect_captions(
    runs: list[RunInputs],
    stimuli_dir: Path,
    captions_file: str | Path | None,
    bids_dir: Path,
    participant: str,
    require_captions: bool,
) -> tuple[dict[Path, list[str]], Path | None]:
    """Captions of every image the runs show, and the table read (None when absent and allowed)."""
    shown = sorted({p for run in runs for p in run.events["stim_file"] if p is not None})
    captions_path = (
        stimuli_dir / "captions.tsv" if captions_file is None else Path(captions_file).absolute()
    )
    if captions_path.is_file():
        table = read_captions(captions_path, stimuli_dir, dataset_dir=bids_dir)
        without = [p for p in shown if p not in table]
        if without and require_captions:
            examples = ", ".join(p.name for p in without[:3])
            raise DataError(
                f"{captions_path}: {len(without)} image(s) shown to sub-{participant} have no "
                f"caption (e.g. {examples}); add rows for them"
            )
        captions = {p: table[p] for p in shown if p in table}
        used_captions: Path | None = captions_path
    elif require_captions:
        raise MissingInputError(
            f"{captions_path}: captions table not found; add it (columns stim_file, caption)"
        )
    else:
        captions, used_captions = {}, None
    return captions, used_captions
