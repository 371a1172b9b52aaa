"""What one participant's analysis reads, worked out from BIDS file names alone.

With annexed content absent, no sidecar or table can be opened, so :func:`files_needed` lists
the files by name (entities, inheritance principle), reading only the events tables that are
already present (they name the stimuli).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

#: Run entities (as written in file names): a derivative must agree with its raw run on each.
_RUN_ENTITIES = ("ses", "task", "acq", "ce", "rec", "dir", "run", "echo", "part")
_NIFTI = (".nii.gz", ".nii")


@dataclass(frozen=True)
class _Name:
    path: Path
    entities: dict[str, str]
    suffix: str
    extension: str


def _parse(path: Path) -> _Name:
    """Entities, suffix and extension of a BIDS file name (``sub-01_task-x_bold.nii.gz``)."""
    stem, _, rest = path.name.partition(".")
    parts = stem.split("_")
    suffix = "" if "-" in parts[-1] else parts[-1]
    keyvals = parts if not suffix else parts[:-1]
    entities = dict(p.split("-", 1) for p in keyvals if "-" in p)
    return _Name(path, entities, suffix, "." + rest if rest else "")


def _same(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a is b
    if a.isdigit() and b.isdigit():
        return int(a) == int(b)  # pybids compares run-1 and run-01 as equal
    return a == b


def _same_run(name: _Name, run: Mapping[str, str]) -> bool:
    return all(_same(name.entities.get(k), run.get(k)) for k in _RUN_ENTITIES) and _same(
        name.entities.get("sub"), run.get("sub")
    )


def _inherits(sidecar: _Name, data: _Name, root: Path) -> bool:
    """Whether ``sidecar`` applies to ``data`` by the BIDS inheritance principle."""
    folder = sidecar.path.parent
    if folder != data.path.parent and folder not in data.path.parents:
        return False
    if not folder == root and root not in folder.parents:
        return False
    return sidecar.suffix == data.suffix and all(
        _same(value, data.entities.get(key)) for key, value in sidecar.entities.items()
    )


def _listing(root: Path, participant: str) -> list[Path]:
    """Files at the top of ``root`` and under ``root/sub-<participant>`` (absent content too)."""
    files: list[Path] = []
    if root.is_dir():
        files += [p for p in root.iterdir() if not p.is_dir() and not p.name.startswith(".")]
    top = root / f"sub-{participant}"
    for folder, dirs, names in os.walk(top):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files += [Path(folder) / n for n in names if not n.startswith(".")]
    return sorted(files)


def _stimuli_of(events: Path, stimuli_dir: Path) -> list[Path]:
    """Images named by a readable events table (absent tables give none yet)."""
    if not events.is_file():
        return []
    try:
        with open(events, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle, delimiter="\t")
            values = [row.get("stim_file") for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []  # collect_participant reports unreadable tables with its own message
    base = Path(os.path.abspath(stimuli_dir))
    found = []
    for value in values:
        text = (value or "").strip()
        if not text or text == "n/a" or Path(text).is_absolute():
            continue
        candidate = Path(os.path.normpath(base / text))
        if base in candidate.parents and os.path.lexists(candidate):
            found.append(candidate)
    return found


def _selected_runs(
    raw_files: list[_Name], raw_root: Path, task: str | None, session: str | None
) -> tuple[list[_Name], list[_Name]]:
    """The events tables of the participant and its raw BOLD series of the selected runs."""
    in_tree = [n for n in raw_files if n.path.parent != raw_root]
    events = [n for n in in_tree if n.suffix == "events" and n.extension == ".tsv"]
    tasks = {task} if task is not None else {e.entities.get("task") for e in events}
    bolds = [
        n
        for n in in_tree
        if n.suffix == "bold"
        and n.extension in _NIFTI
        and n.path.parent.name == "func"
        and n.entities.get("task") in tasks
        and (session is None or _same(n.entities.get("ses"), session))
    ]
    return events, bolds


def _raw_run_files(
    bold: _Name, events: list[_Name], raw_files: list[_Name], raw_root: Path, stimuli_dir: Path
) -> set[Path]:
    """Of one raw run: its events table, the stimuli it names, the sidecars that apply."""
    needed: set[Path] = set()
    for ev in events:
        if _same_run(ev, bold.entities):
            needed.add(ev.path)
            needed.update(_stimuli_of(ev.path, stimuli_dir))
    needed.update(
        s.path for s in raw_files if s.extension == ".json" and _inherits(s, bold, raw_root)
    )
    return needed


def _derivative_run_files(
    bold: _Name, deriv_files: list[_Name], deriv_root: Path, space: str
) -> set[Path]:
    """Of one run's derivatives: preprocessed BOLD (and its sidecars), brain mask, confounds."""
    needed: set[Path] = set()
    for item in deriv_files:
        if item.path.parent == deriv_root or not _same_run(item, bold.entities):
            continue
        ents = item.entities
        wanted = (
            (
                (item.suffix == "bold" and ents.get("desc") == "preproc")
                or (item.suffix == "mask" and ents.get("desc") == "brain")
            )
            and ents.get("space") == space
            and item.extension in _NIFTI
        )
        confounds = (
            item.suffix in ("timeseries", "regressors")
            and ents.get("desc") == "confounds"
            and item.extension == ".tsv"
        )
        if wanted or confounds:
            needed.add(item.path)
        if wanted and item.suffix == "bold":
            needed.update(
                s.path
                for s in deriv_files
                if s.extension == ".json" and _inherits(s, item, deriv_root)
            )
    return needed


def _roi_files(
    deriv_files: list[_Name],
    deriv_root: Path,
    *,
    session: str | None,
    space: str,
    roi_desc: str,
    roi_dseg: str | os.PathLike | None,
    roi_labels: str | os.PathLike | None,
) -> set[Path]:
    """The ROI segmentation and its label table (given, or looked up in the derivatives)."""
    if roi_dseg is not None:
        dsegs = [Path(roi_dseg).absolute()]
    else:
        matches = [
            n
            for n in deriv_files
            if n.suffix == "dseg"
            and n.extension in _NIFTI
            and n.path.parent != deriv_root
            and n.entities.get("space") == space
            and n.entities.get("desc") == roi_desc
        ]
        if session is not None:
            matches = [n for n in matches if _same(n.entities.get("ses"), session)] or matches
        dsegs = [n.path for n in matches]
    needed = {d for d in dsegs if os.path.lexists(d)}
    if roi_labels is not None:
        label_files = [Path(roi_labels).absolute()]
    else:
        label_files = [d.with_name(d.name.split(".")[0] + ".tsv") for d in dsegs]
        descs = {_parse(d).entities.get("desc", roi_desc) for d in dsegs} or {roi_desc}
        for desc in sorted(descs):
            label_files += [
                deriv_root / f"space-{space}_desc-{desc}_dseg.tsv",
                deriv_root / f"desc-{desc}_dseg.tsv",
            ]
    needed.update(f for f in label_files if os.path.lexists(f))
    return needed


def files_needed(
    bids_dir: str | os.PathLike,
    participant_label: str,
    *,
    derivatives: str | os.PathLike | None = None,
    task: str | None = None,
    session: str | None = None,
    space: str = "T1w",
    roi_desc: str = "visual",
    roi_dseg: str | os.PathLike | None = None,
    roi_labels: str | os.PathLike | None = None,
    captions_file: str | os.PathLike | None = None,
) -> list[Path]:
    """List the files one participant's analysis reads, from file names alone.

    Mirrors :func:`nipype_brainrecon.bids.collect_participant` without opening any file whose
    content may be absent, except the events tables: the stimuli a run shows are listed only
    once its events table is readable (call again after getting the tables).

    Raw dataset: ``dataset_description.json``; per selected run its events table and the BOLD
    JSON sidecars that apply to it (inheritance principle); the captions table; the stimuli the
    events name. The raw BOLD series itself is not read. Derivatives: ``dataset_description.json``;
    per run the preprocessed BOLD (and its sidecars), brain mask and confounds in ``space``;
    the ROI segmentation and its label table.

    Parameters
    ----------
    bids_dir : path
        The raw dataset.
    participant_label : str
        With or without ``sub-``.
    derivatives : path, optional
        fMRIPrep-like derivatives; default ``bids_dir/derivatives/fmriprep``.
    task, session : str, optional
        Only runs of this task / session (default: every task with events, every session).
    space, roi_desc : str
        As in :func:`~nipype_brainrecon.bids.collect_participant`.
    roi_dseg, roi_labels, captions_file : path, optional
        Files given explicitly instead of looked up.

    Returns
    -------
    list of pathlib.Path
        Absolute paths, sorted, that exist as names (their content may be absent). Files the
        analysis needs that do not exist at all are left for ``collect_participant`` to report.
    """
    from ..bids import normalize_participant_label

    participant = normalize_participant_label(participant_label)
    if session is not None:
        session = str(session).removeprefix("ses-")
    raw_root = Path(bids_dir).absolute()
    deriv_root = (
        raw_root / "derivatives" / "fmriprep" if derivatives is None else Path(derivatives)
    ).absolute()
    needed: set[Path] = set()

    raw_files = [_parse(p) for p in _listing(raw_root, participant)]
    for name in (raw_root / "dataset_description.json", deriv_root / "dataset_description.json"):
        if os.path.lexists(name):
            needed.add(name)
    events, bolds = _selected_runs(raw_files, raw_root, task, session)
    stimuli_dir = raw_root / "stimuli"
    captions = Path(captions_file) if captions_file else stimuli_dir / "captions.tsv"
    if os.path.lexists(captions):
        needed.add(captions.absolute())

    deriv_files = [_parse(p) for p in _listing(deriv_root, participant)]
    for bold in bolds:
        needed.update(_raw_run_files(bold, events, raw_files, raw_root, stimuli_dir))
        needed.update(_derivative_run_files(bold, deriv_files, deriv_root, space))
    needed.update(
        _roi_files(
            deriv_files,
            deriv_root,
            session=session,
            space=space,
            roi_desc=roi_desc,
            roi_dseg=roi_dseg,
            roi_labels=roi_labels,
        )
    )
    return sorted(needed)
