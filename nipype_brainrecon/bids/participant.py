"""Everything one participant's analysis needs: :func:`collect_participant`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import DataError, MissingInputError, UsageError
from .dseg import find_roi
from .events import STIM_COLUMN, EventsSpec
from .filters import bold_filters, describe_filters, matches_filters, read_bids_filters
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
    stim_column: str = STIM_COLUMN,
    stim_map: str | Path | None = None,
    stim_template: str | None = None,
    trial_filter: str | None = None,
    bids_filters: str | Path | dict[str, Any] | None = None,
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
    stim_column : str
        The events column naming each event's stimulus (``--stim-column``).
    stim_map : path, optional
        A TSV (columns ``value``, ``stim_file``) mapping the column's values to files under
        ``stimuli/`` (``--stim-map``).
    stim_template : str, optional
        A format string making a file name of each value, e.g. ``"img_{value:04d}.png"``
        (``--stim-template``).
    trial_filter : str, optional
        A pandas ``DataFrame.query`` expression choosing which rows are trials
        (``--trial-filter``); other rows, and rows whose stimulus is ``n/a``, are not trials
        (the GLM models them as nuisance events by ``trial_type``). See
        :class:`~.events.EventsSpec`.
    bids_filters : path or dict, optional
        fMRIPrep's ``--bids-filter-file`` (or its content as a dict): only BOLD runs
        whose entities match are analysed. See :mod:`.filters`.

    Returns
    -------
    ParticipantInputs

    Raises
    ------
    InvalidDatasetError
        ``bids_dir`` or ``derivatives`` has no ``dataset_description.json``; a run lacks
        ``RepetitionTime``.
    UsageError
        Bad participant label; participant or task not in the raw dataset; a malformed trial
        filter, stimulus template or BIDS filter file.
    SessionNotFoundError
        The session is not in the raw dataset (exit code 66; also a ``UsageError``).
    MissingInputError
        Folder absent; participant absent from the derivatives; no runs (or none the filters
        match); the stimulus map or filter file absent; a run's preprocessed BOLD,
        mask, confounds or events absent; a stimulus, the captions table, the ROI segmentation
        or its label table absent.
    DataError
        Files present but wrong: events columns (the stimulus column absent), stimuli outside
        ``stimuli/``, no trial in a run, a value absent from the stimulus map, an image without
        captions, mask/BOLD grids, confounds rows, ROI labels.
    """
    participant, session = _check_labels(participant_label, task, session, space, roi_desc)
    spec = EventsSpec(
        stim_column=stim_column,
        stim_map=Path(stim_map) if stim_map is not None else None,
        stim_template=stim_template,
        trial_filter=trial_filter,
    )
    filters = (
        read_bids_filters(bids_filters)
        if isinstance(bids_filters, str | Path)
        else bold_filters(bids_filters or {})
    )
    bids_dir, derivatives = _check_datasets(bids_dir, derivatives, participant)
    raw = participant_layout(bids_dir, participant, derivative=False)
    deriv = participant_layout(derivatives, participant, derivative=True)
    bolds = _select_bolds(raw, bids_dir, participant, task, session, filters)
    stimuli_dir = bids_dir / "stimuli"
    runs = [
        collect_run(bold, raw, deriv, derivatives, space, stimuli_dir, bids_dir, spec)
        for bold in sorted(bolds, key=lambda f: f.path)
    ]
    captions, used_captions = _collect_captions(
        runs, stimuli_dir, captions_file, bids_dir, participant, require_captions
    )
    dseg, labels_file, labels = find_roi(
        derivatives,
        deriv,
        participant,
        space,
        roi_desc,
        roi_dseg,
        roi_labels,
        session if session is not None else _one_session(filters),
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
        events_spec=spec,
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


def _one_session(filters: dict[str, Any]) -> str | None:
    """The session a BIDS filter names, when it names exactly one."""
    value = filters.get("session")
    return value if isinstance(value, str) and value != "*" else None


class SessionNotFoundError(MissingInputError, UsageError):
    """The session asked for is not in the raw dataset (exit code 66, the missing input)."""


def _check_session(raw: Any, bids_dir: Path, participant: str, session: Any, option: str) -> None:
    sessions = raw.get_sessions(subject=participant)
    if session not in sessions:
        raise SessionNotFoundError(
            f"{bids_dir / f'sub-{participant}'}: session '{session}' not found "
            f"(sessions: {', '.join(sessions) or 'none'}); fix {option}"
        )


def _select_bolds(
    raw: Any,
    bids_dir: Path,
    participant: str,
    task: str | None,
    session: str | None,
    bold_filters: dict[str, Any],
) -> list[Any]:
    """The raw BOLD files to analyse: of ``task`` (default: every task with events), ``session``,
    matching the ``bold`` entities of a BIDS filter file."""
    filters: dict[str, Any] = {
        "subject": participant,
        "suffix": "bold",
        "extension": NIFTI_EXTENSIONS,
    }
    if session is not None:
        _check_session(raw, bids_dir, participant, session, "--session-label")
        filters["session"] = session
    if isinstance(bold_filters.get("session"), str) and bold_filters["session"] != "*":
        _check_session(raw, bids_dir, participant, bold_filters["session"], "--bids-filter-file")
    bolds = [f for f in raw.get(**filters) if f.entities.get("datatype") == "func"]
    if bold_filters:
        matching = [f for f in bolds if matches_filters(f.entities, bold_filters)]
        if not matching:
            names = ", ".join(sorted(Path(f.path).name for f in bolds)) or "none"
            raise MissingInputError(
                f"{bids_dir / f'sub-{participant}'}: no BOLD run matches --bids-filter-file "
                f"{describe_filters(bold_filters)} (runs: {names})"
            )
        bolds = matching
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
