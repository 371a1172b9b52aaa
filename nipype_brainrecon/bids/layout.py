"""Datasets and their files: labels, dataset checks, the pybids index of one participant, entities
and the expected name of a run's files."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..errors import DataError, InvalidDatasetError, MissingInputError, UsageError

#: A BIDS label: letters and digits.
BIDS_LABEL = re.compile(r"^[A-Za-z0-9]+$")

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
#: Extensions of NIfTI images, as pybids queries take them.
NIFTI_EXTENSIONS = [".nii.gz", ".nii"]


def normalize_participant_label(label: str) -> str:
    """Strip an optional ``sub-`` prefix and check the label is a valid BIDS label.

    >>> normalize_participant_label("sub-01"), normalize_participant_label("01")
    ('01', '01')
    """
    value = str(label).strip()
    value = value.removeprefix("sub-")
    if not BIDS_LABEL.match(value):
        raise UsageError(
            f"participant label {label!r}: use letters and digits only, with or without 'sub-'"
        )
    return value


def list_participants(bids_dir: str | Path) -> list[str]:
    """Participant labels of a raw dataset (from its ``sub-*`` folders), sorted."""
    root = Path(bids_dir)
    labels = sorted(p.name[4:] for p in root.glob("sub-*") if p.is_dir())
    if not labels:
        raise MissingInputError(f"{root}: no sub-* folder; is this a BIDS dataset?")
    return labels


def subject_labels(path: Path) -> list[str]:
    """Labels of the ``sub-*`` folders of a dataset, sorted (empty when none)."""
    return sorted(p.name[4:] for p in path.glob("sub-*") if p.is_dir())


def check_dataset(path: Path, what: str) -> None:
    """A folder with a readable ``dataset_description.json``."""
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


def participant_layout(root: Path, participant: str, *, derivative: bool) -> Any:
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


def entities_from_name(path: Path) -> dict[str, str]:
    """Entities as written in a BIDS file name (order and zero padding kept)."""
    parts = path.name.split(".")[0].split("_")[:-1]
    return dict(part.split("-", 1) for part in parts if "-" in part)


def query_entities(bold: Any) -> dict[str, Any]:
    """pybids query of the files of ``bold``'s run: each run entity equal, or absent when absent."""
    from bids.layout import Query

    entities = bold.get_entities()
    return {
        name: (entities[name] if name in entities else Query.NONE) for name in _RUN_ENTITIES
    } | {"subject": entities["subject"]}


def one_file(files: list[Any], expected: Path, what: str, run_name: str) -> Path:
    """The one file a query found; none or several raise, naming the file expected."""
    if not files:
        raise MissingInputError(f"{expected}: {what} of run {run_name} not found")
    if len(files) > 1:
        names = ", ".join(sorted(Path(f.path).name for f in files))
        raise DataError(f"{expected.parent}: several {what} files match run {run_name}: {names}")
    return Path(files[0].path)


def func_dir(root: Path, entities: dict[str, str]) -> Path:
    """``root/sub-<label>/[ses-<s>/]func`` of a run."""
    folder = root / f"sub-{entities['sub']}"
    if "ses" in entities:
        folder = folder / f"ses-{entities['ses']}"
    return folder / "func"
