"""Reading a participant's inputs: raw BIDS (events, stimuli, captions) and fMRIPrep derivatives.

The layout read here (see the project docs) is::

    BIDS_DIR/dataset_description.json
    BIDS_DIR/stimuli/<images>, stimuli/captions.tsv     (columns stim_file, caption; long format)
    BIDS_DIR/sub-<label>/[ses-<s>/]func/*_bold.nii.gz, *_events.tsv (onset, duration, stim_file)
    DERIVATIVES/sub-<label>/[ses-<s>/]func/*_space-<space>_desc-preproc_bold.nii.gz
                                          *_space-<space>_desc-brain_mask.nii.gz
                                          *_desc-confounds_timeseries.tsv
    DERIVATIVES/sub-<label>/[ses-<s>/]anat/*_space-<space>_desc-<roi_desc>_dseg.nii.gz
    DERIVATIVES/desc-<roi_desc>_dseg.tsv                  (columns index, name)

Every failure raises one of :mod:`nipype_brainrecon.errors` with a one-line message naming the file
at fault. Nothing is written into the input datasets.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, InvalidDatasetError, MissingInputError, UsageError

__all__ = [
    "ParticipantInputs",
    "RunInputs",
    "collect_participant",
    "normalize_participant_label",
    "read_captions",
    "read_events",
    "read_roi_labels",
    "resolve_stim_file",
]

_LABEL = re.compile(r"^[A-Za-z0-9]+$")
#: Events columns every run must have.
EVENTS_COLUMNS = ("onset", "duration", "stim_file")
#: Entities that tell runs apart; a derivative must agree on each (absent stays absent).
_RUN_ENTITIES = (
    "session",
    "task",
    "acquisition",
    "ceagent",
    "reconstruction",
    "direction",
    "run",
    "echo",
    "part",
)
_NIFTI = [".nii.gz", ".nii"]


@dataclass(frozen=True, eq=False)
class RunInputs:
    """Everything one functional run contributes.

    Attributes
    ----------
    entities : dict
        The raw BOLD file's entities as written in its name (``{"sub": "01", "task": "vision",
        "run": "01"}``), for naming outputs.
    raw_bold : Path
        The raw BOLD series.
    bold : Path
        The preprocessed BOLD series (``desc-preproc``) in the requested space.
    mask : Path
        Its brain mask (``desc-brain_mask``).
    confounds : Path
        The confounds table (``desc-confounds_timeseries.tsv``).
    events_file : Path
        The raw events table.
    events : pandas.DataFrame
        The events table; ``stim_file`` holds absolute :class:`~pathlib.Path` objects inside
        ``BIDS_DIR/stimuli`` (``None`` where the file said ``n/a``).
    repetition_time : float
        Seconds per volume.
    n_volumes : int
        Number of volumes of ``bold``.
    """

    entities: dict[str, str]
    raw_bold: Path
    bold: Path
    mask: Path
    confounds: Path
    events_file: Path
    events: Any = field(repr=False)
    repetition_time: float
    n_volumes: int

    @property
    def task(self) -> str:
        return self.entities["task"]

    @property
    def session(self) -> str | None:
        return self.entities.get("ses")

    @property
    def run(self) -> str | None:
        return self.entities.get("run")

    @property
    def name(self) -> str:
        """The BIDS entity prefix of the run, e.g. ``sub-01_task-vision_run-01``."""
        return "_".join(f"{key}-{value}" for key, value in self.entities.items())


@dataclass(frozen=True, eq=False)
class ParticipantInputs:
    """One participant's inputs, as found by :func:`collect_participant`.

    Attributes
    ----------
    participant : str
        The label without ``sub-``.
    bids_dir, derivatives, stimuli_dir : Path
        Absolute paths of the raw dataset, the fMRIPrep-like derivatives and the stimuli folder.
    space : str
        The ``space-`` label of ``bold``, ``mask`` and ``roi_dseg``.
    runs : tuple of RunInputs
        Sorted by session, task and run.
    captions : dict
        Absolute stimulus path -> its captions, for every stimulus the runs show.
    captions_file : Path or None
        The captions table read (``None`` when captions were not required and absent).
    roi_dseg : Path
        The ROI segmentation (integer labels, 0 = background).
    roi_labels : dict
        Label index -> ROI name, from ``roi_labels_file``.
    roi_labels_file : Path
        The label table (columns ``index``, ``name``).
    """

    participant: str
    bids_dir: Path
    derivatives: Path
    stimuli_dir: Path
    space: str
    runs: tuple[RunInputs, ...]
    captions: dict[Path, list[str]]
    captions_file: Path | None
    roi_dseg: Path
    roi_labels: dict[int, str]
    roi_labels_file: Path

    @property
    def tasks(self) -> list[str]:
        return sorted({run.task for run in self.runs})

    @property
    def stim_files(self) -> list[Path]:
        """Every stimulus shown in the runs, sorted, once each."""
        files = {p for run in self.runs for p in run.events["stim_file"] if p is not None}
        return sorted(files)


def normalize_participant_label(label: str) -> str:
    """Strip an optional ``sub-`` prefix and check the label is a valid BIDS label.

    >>> normalize_participant_label("sub-01"), normalize_participant_label("01")
    ('01', '01')
    """
    value = str(label).strip()
    value = value.removeprefix("sub-")
    if not _LABEL.match(value):
        raise UsageError(
            f"participant label {label!r}: use letters and digits only, with or without 'sub-'"
        )
    return value


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def resolve_stim_file(
    value: str, stimuli_dir: Path, *, dataset_dir: Path, source: Path, must_exist: bool = True
) -> Path:
    """Turn a ``stim_file`` entry (relative to ``stimuli/``) into an absolute path, safely.

    The entry must name a file inside ``stimuli_dir`` once ``..`` is resolved; when it is a symbolic
    link, its target must lie inside ``stimuli_dir`` or ``dataset_dir`` (git-annex keeps file
    content under the dataset's ``.git/annex``). Returns the path inside ``stimuli_dir`` (links not
    followed).

    Raises
    ------
    DataError
        The entry is absolute, leaves ``stimuli/`` or links outside the dataset.
    MissingInputError
        ``must_exist`` and the file is absent.
    """
    text = str(value).strip()
    if not text:
        raise DataError(f"{source}: empty stim_file entry; name a file relative to stimuli/")
    if any(ord(ch) < 32 for ch in text):
        raise DataError(
            f"{source}: stim_file {text!r} holds control characters; name a file relative to "
            "stimuli/"
        )
    if Path(text).is_absolute() or text.startswith(("/", "\\")):
        raise DataError(
            f"{source}: stim_file {text!r} is an absolute path; give it relative to {stimuli_dir}"
        )
    stimuli_dir = Path(os.path.abspath(stimuli_dir))
    candidate = Path(os.path.normpath(stimuli_dir / text))
    if candidate == stimuli_dir or not _is_within(candidate, stimuli_dir):
        raise DataError(
            f"{source}: stim_file {text!r} points outside {stimuli_dir}; "
            "stimuli must live in stimuli/"
        )
    try:
        candidate.lstat()
    except FileNotFoundError:
        pass
    except OSError as exc:  # e.g. a name too long for the file system
        raise DataError(
            f"{source}: stim_file {text[:80]!r} cannot be used as a file name ({exc.strerror})"
        ) from exc
    if must_exist and not candidate.is_file():
        if candidate.is_symlink():
            raise MissingInputError(
                f"{candidate}: stimulus is a broken link (from {source}); get its content "
                "(e.g. datalad get)"
            )
        raise MissingInputError(f"{candidate}: stimulus not found (named in {source})")
    if candidate.exists() or candidate.is_symlink():
        target = candidate.resolve()
        if not (
            _is_within(target, stimuli_dir.resolve()) or _is_within(target, dataset_dir.resolve())
        ):
            raise DataError(
                f"{candidate}: links to {target}, outside the dataset (named in {source}); "
                "copy the image into stimuli/"
            )
    return candidate


def _read_tsv(path: Path, what: str, dtype: Any = str) -> Any:
    import pandas as pd

    try:
        return pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False, dtype=dtype)
    except FileNotFoundError as exc:
        raise MissingInputError(f"{path}: {what} not found") from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        reason = " ".join(str(exc).split())  # one line: pandas' messages end in a newline
        raise DataError(f"{path}: cannot be read as a tab-separated {what} ({reason})") from exc


def read_events(path: str | Path, stimuli_dir: str | Path, *, dataset_dir: str | Path) -> Any:
    """Read an events TSV and resolve its ``stim_file`` column under ``stimuli_dir``.

    Parameters
    ----------
    path : path
        The ``*_events.tsv`` file.
    stimuli_dir : path
        The dataset's ``stimuli/`` folder.
    dataset_dir : path
        The dataset root (links into it are accepted).

    Returns
    -------
    pandas.DataFrame
        ``onset`` and ``duration`` as floats, ``stim_file`` as absolute paths (``None`` for
        ``n/a``); other columns as read.

    Raises
    ------
    DataError
        A required column is missing, empty or non-numeric, or a ``stim_file`` leaves ``stimuli/``.
    MissingInputError
        The table or one of its stimuli is absent.
    """
    import pandas as pd

    path = Path(path)
    table = _read_tsv(path, "events table", dtype={"stim_file": str, "trial_type": str})
    missing = [c for c in EVENTS_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(
            f"{path}: events table lacks column(s) {', '.join(missing)}; "
            f"it needs {', '.join(EVENTS_COLUMNS)}"
        )
    if table.empty:
        raise DataError(f"{path}: events table has no rows")
    for column in ("onset", "duration"):
        values = pd.to_numeric(table[column], errors="coerce")
        if values.isna().any():
            row = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise DataError(f"{path}: row {row + 1} has a non-numeric {column}; write seconds")
        table[column] = values.astype(float)
    if not np.isfinite(table[["onset", "duration"]].to_numpy()).all():
        row = int(np.flatnonzero(~np.isfinite(table[["onset", "duration"]].to_numpy()))[0] // 2)
        raise DataError(f"{path}: row {row + 1} has an infinite onset or duration; write seconds")
    for column in ("onset", "duration"):
        if (table[column] < 0).any():
            row = int(np.flatnonzero(table[column].to_numpy() < 0)[0])
            raise DataError(
                f"{path}: row {row + 1} has a negative {column}; onsets are seconds from the "
                "first volume and durations are >= 0"
            )
    if not table["stim_file"].notna().any():
        raise DataError(f"{path}: every stim_file is n/a; name the image each event shows")
    shown = table[table["stim_file"].notna()].sort_values("onset", kind="stable")
    starts, ends = shown["onset"].to_numpy(), (shown["onset"] + shown["duration"]).to_numpy()
    overlap = np.flatnonzero(starts[1:] < ends[:-1] - 1e-3)
    if overlap.size:
        first, second = shown.index[overlap[0]], shown.index[overlap[0] + 1]
        raise DataError(
            f"{path}: image events in rows {first + 1} and {second + 1} overlap (onset "
            f"{starts[overlap[0] + 1]:g} s before the previous image ends at "
            f"{ends[overlap[0]]:g} s); one image at a time, fix the onsets or durations"
        )
    stimuli_dir = Path(stimuli_dir)
    resolved: dict[str, Path] = {}
    column = []
    for value in table["stim_file"]:
        if pd.isna(value):
            column.append(None)
            continue
        if value not in resolved:
            resolved[value] = resolve_stim_file(
                value, stimuli_dir, dataset_dir=Path(dataset_dir), source=path
            )
        column.append(resolved[value])
    table["stim_file"] = pd.Series(column, index=table.index, dtype=object)
    return table


def read_captions(
    path: str | Path, stimuli_dir: str | Path, *, dataset_dir: str | Path
) -> dict[Path, list[str]]:
    """Read a long-format captions table (``stim_file``, ``caption``; several rows per image).

    Returns
    -------
    dict
        Absolute stimulus path -> its captions in file order. Rows whose caption is ``n/a`` or
        empty are skipped; images need not exist (only those the runs show are checked).
    """
    import pandas as pd

    path = Path(path)
    table = _read_tsv(path, "captions table")
    missing = [c for c in ("stim_file", "caption") if c not in table.columns]
    if missing:
        raise DataError(f"{path}: captions table lacks column(s) {', '.join(missing)}")
    captions: dict[Path, list[str]] = {}
    resolved: dict[str, Path] = {}
    for stim, caption in zip(table["stim_file"], table["caption"], strict=True):
        if pd.isna(stim):
            raise DataError(f"{path}: a row has no stim_file; every caption must name its image")
        if stim not in resolved:
            resolved[stim] = resolve_stim_file(
                stim,
                Path(stimuli_dir),
                dataset_dir=Path(dataset_dir),
                source=path,
                must_exist=False,
            )
        if pd.isna(caption) or not str(caption).strip():
            continue
        captions.setdefault(resolved[stim], []).append(str(caption).strip())
    return captions


def read_roi_labels(path: str | Path) -> dict[int, str]:
    """Read a dseg label table (columns ``index``, ``name``) into ``{index: name}``.

    Raises
    ------
    MissingInputError
        The table is absent.
    DataError
        Missing columns, a non-integer or repeated index, index 0 (background), or a repeated name.
    """
    path = Path(path)
    table = _read_tsv(path, "ROI label table")
    missing = [c for c in ("index", "name") if c not in table.columns]
    if missing:
        raise DataError(f"{path}: label table lacks column(s) {', '.join(missing)}")
    labels: dict[int, str] = {}
    for index, name in zip(table["index"], table["name"], strict=True):
        try:
            value = int(str(index).strip())
        except ValueError as exc:
            raise DataError(f"{path}: index {index!r} is not an integer") from exc
        if value <= 0:
            raise DataError(f"{path}: index {value} is not a positive label (0 is background)")
        if value in labels:
            raise DataError(f"{path}: index {value} appears twice")
        if not isinstance(name, str) or not name.strip():
            raise DataError(f"{path}: index {value} has no name")
        if name.strip() in labels.values():
            raise DataError(f"{path}: ROI name {name.strip()!r} appears twice")
        labels[value] = name.strip()
    if not labels:
        raise DataError(f"{path}: label table has no rows")
    return labels


def _check_dataset(path: Path, what: str) -> None:
    if not path.is_dir():
        raise MissingInputError(f"{path}: {what} folder not found")
    description = path / "dataset_description.json"
    if not description.is_file():
        raise InvalidDatasetError(
            f"{path}: not a BIDS dataset (no dataset_description.json); give the {what} root"
        )
    try:
        json.loads(description.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidDatasetError(f"{description}: not valid JSON ({exc}); fix the file") from exc


def _subjects(path: Path) -> list[str]:
    return sorted(p.name[4:] for p in path.glob("sub-*") if p.is_dir())


def _layout(root: Path, participant: str, *, derivative: bool) -> Any:
    """A pybids layout of one participant only (other subjects and non-BIDS folders not indexed)."""
    from bids import BIDSLayout, BIDSLayoutIndexer

    ignore = [
        re.compile(r"^/(code|models|sourcedata|stimuli|derivatives|logs|figures|work)(/|$)"),
        re.compile(rf"^/sub-(?!{re.escape(participant)}(/|$))"),
    ]
    # Metadata only for BOLD series (RepetitionTime); sidecars of other files are never parsed.
    indexer = BIDSLayoutIndexer(validate=False, ignore=ignore, index_metadata=True, suffix="bold")
    try:
        return BIDSLayout(root, validate=False, is_derivative=derivative, indexer=indexer)
    except (OSError, ValueError) as exc:  # e.g. a sidecar that is not valid JSON
        message = " ".join(str(exc).split())
        raise InvalidDatasetError(f"{root}: cannot be indexed ({message}); fix that file") from exc


def _entities_from_name(path: Path) -> dict[str, str]:
    """Entities as written in a BIDS file name (order and zero padding kept)."""
    parts = path.name.split(".")[0].split("_")[:-1]
    return dict(part.split("-", 1) for part in parts if "-" in part)


def _query_entities(bold: Any) -> dict[str, Any]:
    from bids.layout import Query

    entities = bold.get_entities()
    return {
        name: (entities[name] if name in entities else Query.NONE) for name in _RUN_ENTITIES
    } | {"subject": entities["subject"]}


def _one(files: list[Any], expected: Path, what: str, run_name: str) -> Path:
    if not files:
        raise MissingInputError(f"{expected}: {what} of run {run_name} not found")
    if len(files) > 1:
        names = ", ".join(sorted(Path(f.path).name for f in files))
        raise DataError(f"{expected.parent}: several {what} files match run {run_name}: {names}")
    return Path(files[0].path)


def _func_dir(root: Path, entities: dict[str, str]) -> Path:
    folder = root / f"sub-{entities['sub']}"
    if "ses" in entities:
        folder = folder / f"ses-{entities['ses']}"
    return folder / "func"


def _repetition_time(raw_meta: dict, preproc_meta: dict, raw: Path, preproc: Path) -> float:
    values = {}
    for meta, path in ((preproc_meta, preproc), (raw_meta, raw)):
        if "RepetitionTime" in meta:
            try:
                values[path] = float(meta["RepetitionTime"])
            except (TypeError, ValueError) as exc:
                raise DataError(
                    f"{path}: RepetitionTime {meta['RepetitionTime']!r} in its sidecar is not "
                    "a number"
                ) from exc
    if not values:
        raise InvalidDatasetError(
            f"{raw}: no RepetitionTime in its JSON sidecar (nor in {preproc.name}'s); add it"
        )
    tr_values = list(values.values())
    if max(tr_values) - min(tr_values) > 1e-4:
        raise DataError(
            f"{preproc}: RepetitionTime {tr_values[0]} disagrees with the raw run's {tr_values[-1]}"
        )
    if not tr_values[0] > 0:
        raise DataError(f"{preproc}: RepetitionTime {tr_values[0]} must be positive")
    return tr_values[0]


def check_images(bold: Path, mask: Path, confounds: Path) -> int:
    """Headers only: 4-D BOLD, a 3-D mask on its grid, one confounds row per volume."""
    import nibabel as nib

    try:
        image = nib.load(bold)
        mask_image = nib.load(mask)
    except Exception as exc:  # nibabel raises several types for unreadable images
        raise DataError(f"{bold.parent}: cannot read the BOLD or mask image ({exc})") from exc
    if image.ndim != 4:
        raise DataError(f"{bold}: preprocessed BOLD has {image.ndim} dimensions, expected 4")
    shape = tuple(mask_image.shape)
    if shape[3:] and set(shape[3:]) != {1}:
        raise DataError(f"{mask}: brain mask is not 3-D ({shape})")
    if shape[:3] != tuple(image.shape[:3]) or not np.allclose(
        mask_image.affine, image.affine, atol=1e-3
    ):
        raise DataError(f"{mask}: brain mask is not on the grid of {bold.name}")
    n_volumes = int(image.shape[3])
    with open(confounds, "rb") as handle:
        rows = sum(1 for line in handle if line.strip()) - 1
    if rows != n_volumes:
        raise DataError(
            f"{confounds}: {rows} rows of confounds for {n_volumes} volumes in {bold.name}; "
            "it needs one row per volume"
        )
    return n_volumes


def _find_roi(
    derivatives: Path,
    layout: Any,
    participant: str,
    space: str,
    roi_desc: str,
    roi_dseg: str | Path | None,
    roi_labels: str | Path | None,
    session: str | None = None,
) -> tuple[Path, Path, dict[int, str]]:
    import nibabel as nib

    if roi_dseg is not None:
        dseg = Path(roi_dseg).absolute()
        if not dseg.is_file():
            raise MissingInputError(f"{dseg}: ROI segmentation not found")
    else:
        found = layout.get(
            subject=participant,
            space=space,
            desc=roi_desc,
            suffix="dseg",
            extension=_NIFTI,
        )
        expected = (
            derivatives
            / f"sub-{participant}"
            / "anat"
            / f"sub-{participant}_space-{space}_desc-{roi_desc}_dseg.nii.gz"
        )
        if not found:
            raise MissingInputError(
                f"{expected}: ROI segmentation not found; add it or pass roi_dseg="
            )
        if len(found) > 1:
            # One segmentation per session: take the one of the session asked for, or none.
            found = [f for f in found if f.entities.get("session") == session] or found
        if len(found) > 1:
            names = ", ".join(sorted(Path(f.path).name for f in found))
            raise DataError(
                f"{expected.parent}: several ROI segmentations match ({names}); pass roi_dseg="
            )
        dseg = Path(found[0].path)
    if roi_labels is not None:
        labels_file = Path(roi_labels).absolute()
        if not labels_file.is_file():
            raise MissingInputError(f"{labels_file}: ROI label table not found")
    else:
        stem = dseg.name.split(".")[0]
        desc = _entities_from_name(dseg).get("desc", roi_desc)
        candidates = [
            dseg.with_name(stem + ".tsv"),
            derivatives / f"space-{space}_desc-{desc}_dseg.tsv",
            derivatives / f"desc-{desc}_dseg.tsv",
        ]
        labels_file = next((c for c in candidates if c.is_file()), candidates[-1])
        if not labels_file.is_file():
            raise MissingInputError(
                f"{candidates[-1]}: ROI label table not found (nor {candidates[0].name}); "
                "add it (columns index, name) or pass roi_labels="
            )
    labels = read_roi_labels(labels_file)
    try:
        image = nib.load(dseg)
        data = np.asanyarray(image.dataobj)
    except Exception as exc:  # nibabel raises several types for unreadable images
        raise DataError(f"{dseg}: cannot read the ROI segmentation ({exc})") from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataError(f"{dseg}: ROI segmentation is {data.ndim}-D, expected 3-D integer labels")
    if not np.all(np.isfinite(data)) or not np.array_equal(data, np.round(data)):
        raise DataError(f"{dseg}: ROI segmentation holds non-integer values; write integer labels")
    present = {int(v) for v in np.unique(data)} - {0}
    if not present:
        raise DataError(f"{dseg}: ROI segmentation has no labelled voxel")
    unnamed = sorted(present - set(labels))
    if unnamed:
        raise DataError(f"{labels_file}: labels {unnamed} of {dseg.name} have no row; name them")
    return dseg, labels_file, labels


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
    participant = normalize_participant_label(participant_label)
    if session is not None:
        session = str(session).removeprefix("ses-")
    for name, value in (
        ("task", task),
        ("session", session),
        ("space", space),
        ("roi_desc", roi_desc),
    ):
        if value is not None and not _LABEL.match(str(value)):
            raise UsageError(f"{name}={value!r}: a BIDS label may hold only letters and digits")
    bids_dir = Path(bids_dir).absolute()
    _check_dataset(bids_dir, "BIDS dataset")
    derivatives = (
        bids_dir / "derivatives" / "fmriprep" if derivatives is None else Path(derivatives)
    ).absolute()
    available = _subjects(bids_dir)
    if participant not in available:
        listed = ", ".join(available) if available else "none"
        raise UsageError(
            f"{bids_dir}: participant '{participant}' not found (participants: {listed})"
        )
    _check_dataset(derivatives, "derivatives dataset")
    if not (derivatives / f"sub-{participant}").is_dir():
        raise MissingInputError(
            f"{derivatives / f'sub-{participant}'}: participant absent from the derivatives; "
            "run fMRIPrep for it or pass derivatives="
        )

    raw = _layout(bids_dir, participant, derivative=False)
    deriv = _layout(derivatives, participant, derivative=True)
    filters: dict[str, Any] = {"subject": participant, "suffix": "bold", "extension": _NIFTI}
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

    stimuli_dir = bids_dir / "stimuli"
    runs = []
    for bold in sorted(bolds, key=lambda f: f.path):
        raw_bold = Path(bold.path)
        entities = _entities_from_name(raw_bold)
        prefix = raw_bold.name.split(".")[0].removesuffix("_bold")
        run_name = prefix
        query = _query_entities(bold)
        events_file = _one(
            raw.get(**query, suffix="events", extension=".tsv"),
            raw_bold.with_name(prefix + "_events.tsv"),
            "events",
            run_name,
        )
        out_dir = _func_dir(derivatives, entities)
        preproc = _one(
            deriv.get(**query, space=space, desc="preproc", suffix="bold", extension=_NIFTI),
            out_dir / f"{prefix}_space-{space}_desc-preproc_bold.nii.gz",
            "preprocessed BOLD",
            run_name,
        )
        mask = _one(
            deriv.get(**query, space=space, desc="brain", suffix="mask", extension=_NIFTI),
            out_dir / f"{prefix}_space-{space}_desc-brain_mask.nii.gz",
            "brain mask",
            run_name,
        )
        confounds = _one(
            deriv.get(
                **query, desc="confounds", suffix=["timeseries", "regressors"], extension=".tsv"
            ),
            out_dir / f"{prefix}_desc-confounds_timeseries.tsv",
            "confounds",
            run_name,
        )
        tr = _repetition_time(
            raw.get_metadata(str(raw_bold)), deriv.get_metadata(str(preproc)), raw_bold, preproc
        )
        n_volumes = check_images(preproc, mask, confounds)
        events = read_events(events_file, stimuli_dir, dataset_dir=bids_dir)
        late = events["onset"] >= n_volumes * tr
        if late.any():
            row = int(np.flatnonzero(late.to_numpy())[0])
            raise DataError(
                f"{events_file}: row {row + 1} starts at {events['onset'].iloc[row]:g} s, after "
                f"the end of the run ({n_volumes} volumes x {tr:g} s = {n_volumes * tr:g} s); "
                "is the events file of another run?"
            )
        runs.append(
            RunInputs(
                entities=entities,
                raw_bold=raw_bold,
                bold=preproc,
                mask=mask,
                confounds=confounds,
                events_file=events_file,
                events=events,
                repetition_time=tr,
                n_volumes=n_volumes,
            )
        )

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

    dseg, labels_file, labels = _find_roi(
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


def list_participants(bids_dir: str | Path) -> list[str]:
    """Participant labels of a raw dataset (from its ``sub-*`` folders), sorted."""
    root = Path(bids_dir)
    labels = sorted(p.name[4:] for p in root.glob("sub-*") if p.is_dir())
    if not labels:
        raise MissingInputError(f"{root}: no sub-* folder; is this a BIDS dataset?")
    return labels
