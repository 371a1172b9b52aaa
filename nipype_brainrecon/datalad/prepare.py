"""Prepare a run's inputs: install the datasets, get the files the participants need.

:func:`prepare_inputs` ties :mod:`.install`, :mod:`.needed` and :mod:`.get` together for the
BIDS App; :func:`format_summary` makes its one-line report.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .get import MB, get_files
from .install import ensure_dataset
from .needed import files_needed
from .repo import absent_count, dataset_info, dataset_root, is_dataset

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedInputs:
    """What :func:`prepare_inputs` made ready.

    Attributes
    ----------
    bids_dir : Path
        The local raw dataset.
    derivatives : dict
        Name -> local derivatives dataset (same names as given; ``fmriprep`` when none given).
    summary : dict
        ``n_files`` and ``bytes`` fetched, ``n_present``, ``n_needed``, ``seconds``,
        ``datasets`` (name -> ``path``, ``id``, ``commit``, ``absent``: annexed files still
        without content) and ``participants``.
    needed : dict
        Participant label -> absolute paths of the files it reads.
    """

    bids_dir: Path
    derivatives: dict[str, Path]
    summary: dict[str, Any]
    needed: dict[str, list[Path]] = field(default_factory=dict)

    @property
    def fmriprep(self) -> Path:
        """The derivatives dataset read for preprocessed data (``fmriprep`` or the first)."""
        return self.derivatives.get("fmriprep") or next(iter(self.derivatives.values()))

    @property
    def complete(self) -> bool:
        """Whether every annexed file of the raw dataset has its content (e.g. for validation)."""
        return not self.summary["datasets"].get("raw", {}).get("absent")


def _by_dataset(paths: Iterable[Path], roots: Iterable[Path]) -> dict[Path, list[Path]]:
    """Group paths by the innermost of ``roots`` holding them (derivatives may be nested)."""
    ordered = sorted(set(roots), key=lambda r: len(r.parts), reverse=True)
    groups: dict[Path, list[Path]] = {}
    for path in paths:
        root = next((r for r in ordered if r in path.parents), None)
        if root is not None:
            groups.setdefault(root, []).append(path)
    return groups


def _named_derivatives(
    derivatives: Mapping[str, str | os.PathLike] | str | os.PathLike | None, raw: Path
) -> dict[str, str | os.PathLike]:
    """Name -> source of each derivatives dataset; ``fmriprep`` when one or none is given."""
    if derivatives is None:
        named: dict[str, str | os.PathLike] = {"fmriprep": raw / "derivatives" / "fmriprep"}
    elif isinstance(derivatives, Mapping):
        named = dict(derivatives)
    else:
        named = {"fmriprep": derivatives}
    if not named:
        named = {"fmriprep": raw / "derivatives" / "fmriprep"}
    return named


def _get_needed(
    raw: Path,
    labels: list[str],
    options: Mapping[str, Any],
    repos: list[Path],
    jobs: int,
) -> tuple[dict[str, Any], dict[str, list[Path]], int]:
    """Get the files each participant needs (:func:`files_needed` with ``options``).

    Returns the transfer totals, participant -> needed files, and how many files are needed.
    """
    totals = {"n_files": 0, "bytes": 0, "n_present": 0, "seconds": 0.0}
    needed_by: dict[str, list[Path]] = {}
    seen: set[Path] = set()
    # Events tables name the stimuli: get what the names tell, read the tables, get the rest.
    for _ in range(3):
        wanted: set[Path] = set()
        for label in labels:
            files = files_needed(raw, label, **options)
            needed_by[label] = files
            wanted.update(files)
        new = sorted(wanted - seen)
        if not new:
            break
        seen.update(new)
        groups = _by_dataset(new, repos)
        grouped = {p for members in groups.values() for p in members}
        outside = [p for p in new if p not in grouped]
        totals["n_present"] += sum(p.is_file() for p in outside)
        for root, inside in groups.items():
            result = get_files(root, inside, jobs=jobs)
            for key in ("n_files", "bytes", "n_present", "seconds"):
                totals[key] += result[key]
    return totals, needed_by, len(seen)


def prepare_inputs(
    bids_dir: str | os.PathLike,
    derivatives: Mapping[str, str | os.PathLike] | str | os.PathLike | None = None,
    participant_labels: Sequence[str] | None = None,
    task: str | None = None,
    *,
    session: str | None = None,
    space: str = "T1w",
    roi_desc: str = "visual",
    roi_dseg: str | os.PathLike | None = None,
    roi_labels: str | os.PathLike | None = None,
    clone_dir: str | os.PathLike | None = None,
    superdataset: str | os.PathLike | None = None,
    jobs: int = 4,
) -> PreparedInputs:
    """Install the input datasets and get the files the selected participants need.

    Call it before anything reads the inputs (the BIDS App: before checking paths, validating
    and collecting). Plain folders pass through untouched. Derivatives other than the
    fMRIPrep-like one are installed but none of their content is fetched.

    Parameters
    ----------
    bids_dir : str or path
        Raw dataset: a local folder or a clone source.
    derivatives : mapping, str or path, optional
        ``{name: folder or clone source}``, or one folder taken as ``fmriprep``; default
        ``bids_dir/derivatives/fmriprep`` (installed when it is a subdataset).
    participant_labels : sequence of str, optional
        Default: every ``sub-*`` folder of the raw dataset.
    task, session, space, roi_desc, roi_dseg, roi_labels
        As in :func:`files_needed`.
    clone_dir : path, optional
        Where clone sources that are not local folders go (``<clone_dir>/raw``,
        ``<clone_dir>/<name>``), e.g. ``OUTPUT_DIR/sourcedata``.
    superdataset : path, optional
        Register clones as subdatasets of this dataset (YODA).
    jobs : int
        Parallel transfers.

    Returns
    -------
    PreparedInputs

    Raises
    ------
    MissingInputError
        A dataset cannot be installed, or a needed file cannot be fetched (exit code 66).
    """
    from ..bids import list_participants, normalize_participant_label

    started = time.monotonic()

    def target(name: str) -> Path | None:
        return Path(clone_dir).absolute() / name if clone_dir is not None else None

    raw = ensure_dataset(bids_dir, target("raw"), superdataset=superdataset)
    local = {
        name: ensure_dataset(src, target(name), superdataset=superdataset)
        for name, src in _named_derivatives(derivatives, raw).items()
    }
    fmriprep = local.get("fmriprep") or next(iter(local.values()))
    labels = [normalize_participant_label(x) for x in participant_labels or []]
    if not labels:
        labels = list_participants(raw)

    # Content is got through the repository holding each file (the derivatives may be a plain
    # folder of the raw dataset or a subdataset of it).
    places = [raw, fmriprep] + [Path(f).absolute().parent for f in (roi_dseg, roi_labels) if f]
    repos = [r for r in {dataset_root(p) for p in places} if r and is_dataset(r)]
    options = {
        "derivatives": fmriprep,
        "task": task,
        "session": session,
        "space": space,
        "roi_desc": roi_desc,
        "roi_dseg": roi_dseg,
        "roi_labels": roi_labels,
    }
    totals, needed_by, n_needed = _get_needed(raw, labels, options, repos, jobs)
    datasets = {"raw": {**dataset_info(raw), "absent": absent_count(raw)}}
    for name, path in local.items():
        datasets[name] = {**dataset_info(path), "absent": absent_count(path)}
    summary = {
        **totals,
        "seconds": round(time.monotonic() - started, 3),
        "n_needed": n_needed,
        "participants": labels,
        "datasets": datasets,
    }
    LOGGER.info(format_summary(summary))
    return PreparedInputs(raw, local, summary, needed_by)


def format_summary(summary: Mapping[str, Any]) -> str:
    """One line for people: files and bytes fetched, files already present, time."""
    return (
        f"datalad: fetched {summary.get('n_files', 0)} file(s), "
        f"{summary.get('bytes', 0) / MB:.1f} MB in {summary.get('seconds', 0):.1f} s; "
        f"{summary.get('n_present', 0)} already present"
        + (f"; {summary['n_needed']} needed in all" if "n_needed" in summary else "")
    )
