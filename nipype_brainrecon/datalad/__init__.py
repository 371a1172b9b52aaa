"""DataLad datasets as inputs and outputs: fetch only what a participant needs, record runs.

Inputs (a raw BIDS dataset and fMRIPrep derivatives) may be DataLad datasets whose annexed
content is absent (a fresh ``datalad clone``): the files are then symbolic links into
``.git/annex`` that cannot be read. :func:`prepare_inputs` installs what is missing, works out
from file names alone which files the selected participants, tasks and runs need
(:func:`files_needed`), gets those in parallel (:func:`get_files`) and leaves every other file
absent. Only then can :func:`nipype_brainrecon.bids.collect_participant` read headers and tables.

Outputs: :func:`ensure_output_dataset` makes the derivatives folder a DataLad dataset and
:func:`record_run` runs one participant's command under ``datalad run`` (or records one that
already ran), so that the commit carries a machine-readable run record that ``datalad rerun``
replays; :func:`run_record` reads it back. See ``docs/datalad.md`` for the YODA layout.

Everything here uses the DataLad Python API and the real git-annex. The PyPI wheel
``git-annex`` installs the program beside the Python interpreter, which this module puts on
``PATH`` when it is not already there.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import shlex
import shutil
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import (
    BrainreconError,
    DataError,
    MissingInputError,
    OutputError,
    UsageError,
)

__all__ = [
    "PreparedInputs",
    "RECORDING_ENV",
    "RunRecord",
    "brainrecon_command",
    "ensure_dataset",
    "ensure_git_annex",
    "ensure_output_dataset",
    "files_needed",
    "format_summary",
    "get_files",
    "is_dataset",
    "participant_outputs",
    "prepare_inputs",
    "record_run",
    "replay_argv",
    "run_recorded",
    "run_record",
    "save_outputs",
    "should_record",
    "uses_datalad",
]

LOGGER = logging.getLogger("brainrecon.datalad")

#: Set while :func:`record_run` executes a command, so that a CLI started by it never wraps
#: itself in a second ``datalad run``.
RECORDING_ENV = "BRAINRECON_DATALAD_RECORDING"
#: The namespace of brainrecon's fields in a DataLad run record.
RECORD_KEY = "brainrecon"
#: Files the BIDS App writes at the root of the derivatives for every participant.
SHARED_OUTPUTS = ("dataset_description.json", "README.md", ".bidsignore", "logs/CITATION.md")
#: Run entities (as written in file names): a derivative must agree with its raw run on each.
_RUN_ENTITIES = ("ses", "task", "acq", "ce", "rec", "dir", "run", "echo", "part")
_NIFTI = (".nii.gz", ".nii")
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://|///|[\w.-]+@[\w.-]+:|ria\+|osf://)")
_KEY_SIZE = re.compile(r"-s(\d+)(?:-|--)")
_MB = 1024 * 1024


# ----------------------------------------------------------------------------- environment


def ensure_git_annex() -> str:
    """Return the git-annex program, putting the interpreter's ``bin/`` on ``PATH`` if needed.

    The ``git-annex`` wheel installs the program beside the Python interpreter of its
    environment, which is not on ``PATH`` when that environment is not activated.

    Raises
    ------
    UsageError
        No git-annex anywhere.
    """
    found = shutil.which("git-annex")
    if found:
        return found
    beside = Path(sys.executable).parent / "git-annex"
    if beside.is_file() and os.access(beside, os.X_OK):
        os.environ["PATH"] = os.pathsep.join([str(beside.parent), os.environ.get("PATH", "")])
        return str(beside)
    raise UsageError(
        "git-annex: not found on PATH; install it (pip install git-annex, or apt-get install "
        "git-annex) to read or write DataLad datasets"
    )


def _api() -> Any:
    """``datalad.api``, with git-annex on PATH; a usage error when DataLad is not installed."""
    ensure_git_annex()
    try:
        import datalad.api as dl
    except ImportError as exc:
        raise UsageError(
            "datalad: the Python package is not installed; pip install "
            "'nipype-brainrecon[datalad]' to use DataLad datasets"
        ) from exc
    return dl


@contextmanager
def _quiet() -> Any:
    """DataLad logs every annexed file it moves at INFO; keep that for ``-vv`` (DEBUG) only."""
    logger = logging.getLogger("datalad")
    previous = logger.level
    if not LOGGER.isEnabledFor(logging.DEBUG):
        logger.setLevel(max(previous, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(previous)


def _message(result: Mapping[str, Any]) -> str:
    """A DataLad result's message as one line (it may be a format tuple)."""
    msg = result.get("message", "")
    if isinstance(msg, (tuple, list)) and msg:
        try:
            msg = msg[0] % tuple(msg[1:])
        except (TypeError, ValueError):
            msg = " ".join(str(m) for m in msg)
    text = " ".join(str(msg).split())
    return text or str(result.get("status", "failed"))


def is_dataset(path: str | os.PathLike) -> bool:
    """Whether ``path`` is the root of an installed DataLad dataset (or a git-annex repository).

    Checked from the file system only (no DataLad import), so plain folders cost nothing.
    """
    root = Path(path)
    return (root / ".git").exists() and (
        (root / ".datalad").is_dir() or (root / ".git" / "annex").exists()
    )


def _dataset_root(path: Path) -> Path | None:
    """The closest folder at or above ``path`` holding a ``.git``; None if there is none."""
    for candidate in [path, *path.parents]:
        if (candidate / ".git").exists():
            return candidate
    return None


def _is_url(source: str) -> bool:
    return bool(_URL.match(source))


def uses_datalad(*sources: str | os.PathLike | None) -> bool:
    """Whether any source is a clone URL or lies in a DataLad dataset / git-annex repository
    (including a subdataset not installed yet): then :func:`prepare_inputs` has work to do."""
    for source in sources:
        if source is None:
            continue
        text = os.fspath(source)
        if _is_url(text):
            return True
        local = Path(text).absolute()
        existing = next((p for p in [local, *local.parents] if p.exists()), None)
        root = _dataset_root(existing) if existing is not None else None
        if root is not None and is_dataset(root):
            return True
    return False


# ----------------------------------------------------------------------------- installing


@_quiet()
def ensure_dataset(
    source: str | os.PathLike,
    path: str | os.PathLike | None = None,
    *,
    superdataset: str | os.PathLike | None = None,
) -> Path:
    """Make a dataset available locally and return its local path; content is not fetched.

    Parameters
    ----------
    source : str or path
        A local folder (a dataset, a plain folder, or a subdataset that is not installed yet),
        or anything ``datalad clone`` accepts (URL, ``///`` shortcut, ``ria+`` URL).
    path : path, optional
        Where to clone a source that is not a local folder. Required in that case.
    superdataset : path, optional
        Register the clone as a subdataset of this dataset (YODA: inputs are subdatasets);
        made a dataset first (:func:`ensure_output_dataset`) if it is not one yet.

    Returns
    -------
    pathlib.Path
        The absolute local path. A plain (non-DataLad) folder is returned as it is.

    Raises
    ------
    MissingInputError
        A local folder that does not exist and is no subdataset; a clone that failed.
    UsageError
        A remote source without ``path``.
    """
    text = os.fspath(source)
    local = Path(text).absolute()
    if not _is_url(text):
        if local.is_dir() and (is_dataset(local) or any(local.iterdir())):
            return local
        return _install_subdataset(local)
    if path is None:
        raise UsageError(f"{text}: a remote dataset needs a local path to clone into")
    target = Path(path).absolute()
    if is_dataset(target):
        return target  # cloned by an earlier run
    dl = _api()
    kwargs: dict[str, Any] = {}
    if superdataset is not None:
        # Created only now that a clone needs it, so failures before leave nothing behind.
        kwargs["dataset"] = str(ensure_output_dataset(superdataset))
    try:
        results = dl.clone(
            source=text,
            path=str(target),
            result_renderer="disabled",
            result_xfm=None,
            on_failure="ignore",
            return_type="list",
            **kwargs,
        )
    except Exception as exc:  # DataLad raises several types for failed clones
        raise MissingInputError(f"{text}: cannot clone this dataset ({_short(exc)})") from exc
    failed = [r for r in results if r.get("status") in ("error", "impossible")]
    if failed or not is_dataset(target):
        reason = _message(failed[0]) if failed else "no dataset was installed"
        raise MissingInputError(f"{text}: cannot clone this dataset into {target} ({reason})")
    LOGGER.info("cloned %s into %s", text, target)
    return target


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


@_quiet()
def _install_subdataset(local: Path) -> Path:
    """Install a registered but absent subdataset at ``local`` (an empty or missing folder)."""
    existing = next((p for p in [local, *local.parents] if p.exists()), None)
    root = _dataset_root(existing) if existing is not None else None
    if root is None or root == local and not is_dataset(local):
        if local.is_dir():
            return local  # an empty plain folder: let the caller report what is missing
        raise MissingInputError(f"{local}: dataset folder not found")
    dl = _api()
    try:
        results = dl.get(
            path=str(local),
            dataset=str(root),
            get_data=False,
            result_renderer="disabled",
            on_failure="ignore",
            return_type="list",
        )
    except Exception as exc:  # DataLad raises several types here
        raise MissingInputError(f"{local}: cannot install this subdataset ({_short(exc)})") from exc
    if not is_dataset(local):
        failed = [r for r in results if r.get("status") in ("error", "impossible")]
        if local.is_dir():
            return local  # not a subdataset, just an empty folder
        reason = _message(failed[0]) if failed else f"not a subdataset of {root}"
        raise MissingInputError(f"{local}: dataset folder not found ({reason})")
    LOGGER.info("installed subdataset %s", local)
    return local


def _dataset_info(path: Path) -> dict[str, Any]:
    """Identity of a local dataset for provenance: path, DataLad id, commit."""
    info: dict[str, Any] = {"path": str(path)}
    if not is_dataset(path):
        return info
    dl = _api()
    ds = dl.Dataset(str(path))
    info["id"] = ds.id
    try:
        info["commit"] = ds.repo.get_hexsha()
    except Exception:  # an empty repository has no commit
        info["commit"] = None
    return info


# ----------------------------------------------------------------------------- what is needed


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
    stimuli_dir = raw_root / "stimuli"
    captions = Path(captions_file) if captions_file else stimuli_dir / "captions.tsv"
    if os.path.lexists(captions):
        needed.add(captions.absolute())

    deriv_files = [_parse(p) for p in _listing(deriv_root, participant)]
    for bold in bolds:
        run = bold.entities
        for ev in events:
            if _same_run(ev, run):
                needed.add(ev.path)
                needed.update(_stimuli_of(ev.path, stimuli_dir))
        needed.update(
            s.path for s in raw_files if s.extension == ".json" and _inherits(s, bold, raw_root)
        )
        for item in deriv_files:
            if item.path.parent == deriv_root or not _same_run(item, run):
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
    needed.update(d for d in dsegs if os.path.lexists(d))
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
    return sorted(needed)


# ----------------------------------------------------------------------------- getting


def _key_size(path: Path) -> int | None:
    """Size in bytes written in the annex key a locked file links to (None if unknown)."""
    try:
        target = os.readlink(path)
    except OSError:
        return None
    match = _KEY_SIZE.search(Path(target).name + "-")
    return int(match.group(1)) if match else None


@_quiet()
def get_files(
    dataset: str | os.PathLike, paths: Iterable[str | os.PathLike], *, jobs: int = 4
) -> dict[str, Any]:
    """Get the annexed content of ``paths`` in ``dataset`` (in parallel) and say what moved.

    Parameters
    ----------
    dataset : path
        An installed DataLad dataset (or git-annex repository).
    paths : iterable of path
        Files in it, absolute or relative to ``dataset``; files already present cost nothing.
    jobs : int
        Parallel transfers.

    Returns
    -------
    dict
        ``n_files`` made available and ``bytes`` fetched (content shared by several files
        counted once), ``n_present`` (already there), ``n_requested``,
        ``seconds``, and ``files`` (absolute local paths, in the order given).

    Raises
    ------
    MissingInputError
        A path that does not exist, or whose content no remote can provide (the message names
        the first such file and how many more there are).
    """
    root = Path(dataset).absolute()
    files = [p if Path(p).is_absolute() else root / p for p in map(Path, paths)]
    files = [Path(os.path.abspath(p)) for p in files]
    summary: dict[str, Any] = {
        "n_files": 0,
        "bytes": 0,
        "n_present": 0,
        "n_requested": len(files),
        "seconds": 0.0,
        "files": [str(p) for p in files],
    }
    missing = [p for p in files if not os.path.lexists(p)]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise MissingInputError(f"{missing[0]}: file not found in dataset {root}{more}")
    absent = [p for p in files if not p.is_file()]
    summary["n_present"] = len(files) - len(absent)
    if not absent:
        return summary
    dl = _api()
    expected = sum(_key_size(p) or 0 for p in absent)
    LOGGER.info(
        "getting %d file(s) (%.1f MB) from %s with %d job(s)",
        len(absent),
        expected / _MB,
        root,
        jobs,
    )
    started = time.monotonic()
    try:
        results = dl.Dataset(str(root)).get(
            path=[str(p) for p in absent],
            jobs=max(int(jobs), 1),
            on_failure="ignore",
            result_renderer="disabled",
            return_type="list",
        )
    except Exception as exc:  # DataLad raises several types for failed transfers
        raise MissingInputError(f"{absent[0]}: cannot get its content ({_short(exc)})") from exc
    summary["seconds"] = round(time.monotonic() - started, 3)
    failures = {
        Path(r["path"]): _message(r)
        for r in results
        if r.get("action") == "get" and r.get("status") in ("error", "impossible")
    }
    still = [p for p in absent if not p.is_file()]
    if failures or still:
        bad = [p for p in absent if p in failures or p in still]
        first = bad[0]
        reason = failures.get(first, "content still absent after get")
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise MissingInputError(
            f"{first}: annexed content cannot be fetched ({reason}){more}; make a remote that "
            "has it available (git annex whereis) or use a complete copy of the dataset"
        )
    # Files with identical content share one annex key: count its bytes once.
    contents: dict[str, Path] = {}
    for p in absent:
        try:
            key = Path(os.readlink(p)).name
        except OSError:  # an unlocked file: its own content
            key = str(p)
        contents.setdefault(key, p)
    summary["n_files"] = len(absent)
    summary["bytes"] = int(sum(p.stat().st_size for p in contents.values()))
    LOGGER.info(
        "got %d file(s) (%.1f MB) in %.1f s",
        summary["n_files"],
        summary["bytes"] / _MB,
        summary["seconds"],
    )
    return summary


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


def _absent_count(path: Path) -> int:
    if not is_dataset(path):
        return 0
    dl = _api()
    try:
        out = dl.Dataset(str(path)).repo.call_annex(["find", "--not", "--in=here"])
    except Exception:  # a plain git repository has no annex
        return 0
    return len([line for line in out.splitlines() if line.strip()])


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
    if derivatives is None:
        named: dict[str, str | os.PathLike] = {"fmriprep": raw / "derivatives" / "fmriprep"}
    elif isinstance(derivatives, Mapping):
        named = dict(derivatives)
    else:
        named = {"fmriprep": derivatives}
    if not named:
        named = {"fmriprep": raw / "derivatives" / "fmriprep"}
    local = {
        name: ensure_dataset(src, target(name), superdataset=superdataset)
        for name, src in named.items()
    }
    fmriprep = local.get("fmriprep") or next(iter(local.values()))
    labels = [normalize_participant_label(x) for x in participant_labels or []]
    if not labels:
        labels = list_participants(raw)

    totals = {"n_files": 0, "bytes": 0, "n_present": 0, "seconds": 0.0}
    needed_by: dict[str, list[Path]] = {}
    # Content is got through the repository holding each file (the derivatives may be a plain
    # folder of the raw dataset or a subdataset of it).
    places = [raw, fmriprep] + [Path(f).absolute().parent for f in (roi_dseg, roi_labels) if f]
    repos = [r for r in {_dataset_root(p) for p in places} if r and is_dataset(r)]
    seen: set[Path] = set()
    # Events tables name the stimuli: get what the names tell, read the tables, get the rest.
    for _ in range(3):
        wanted: set[Path] = set()
        for label in labels:
            files = files_needed(
                raw,
                label,
                derivatives=fmriprep,
                task=task,
                session=session,
                space=space,
                roi_desc=roi_desc,
                roi_dseg=roi_dseg,
                roi_labels=roi_labels,
            )
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
    datasets = {"raw": {**_dataset_info(raw), "absent": _absent_count(raw)}}
    for name, path in local.items():
        datasets[name] = {**_dataset_info(path), "absent": _absent_count(path)}
    summary = {
        **totals,
        "seconds": round(time.monotonic() - started, 3),
        "n_needed": len(seen),
        "participants": labels,
        "datasets": datasets,
    }
    LOGGER.info(format_summary(summary))
    return PreparedInputs(raw, local, summary, needed_by)


def format_summary(summary: Mapping[str, Any]) -> str:
    """One line for people: files and bytes fetched, files already present, time."""
    return (
        f"datalad: fetched {summary.get('n_files', 0)} file(s), "
        f"{summary.get('bytes', 0) / _MB:.1f} MB in {summary.get('seconds', 0):.1f} s; "
        f"{summary.get('n_present', 0)} already present"
        + (f"; {summary['n_needed']} needed in all" if "n_needed" in summary else "")
    )


# ----------------------------------------------------------------------------- outputs


@_quiet()
def ensure_output_dataset(output_dir: str | os.PathLike) -> Path:
    """Make ``output_dir`` a DataLad dataset (text in git, binary files annexed).

    An existing dataset is used as it is. A new one is registered as a subdataset when
    ``output_dir`` lies inside another dataset (YODA). Files already in the folder are saved
    in a first commit, so that each participant's run record holds only its own outputs.

    Raises
    ------
    OutputError
        The dataset cannot be created or saved.
    """
    out = Path(output_dir).absolute()
    if is_dataset(out):
        return out
    dl = _api()
    parent = _dataset_root(out.parent)
    kwargs: dict[str, Any] = {"dataset": str(parent)} if parent is not None else {}
    try:
        ds = dl.create(
            path=str(out),
            force=True,
            cfg_proc="text2git",
            result_renderer="disabled",
            **kwargs,
        )
        if ds.repo.dirty:
            ds.save(
                message="brainrecon: outputs present before DataLad tracking",
                result_renderer="disabled",
            )
    except Exception as exc:  # DataLad raises several types for failed creation
        raise OutputError(f"{out}: cannot make it a DataLad dataset ({_short(exc)})") from exc
    return out


@_quiet()
def save_outputs(
    dataset: str | os.PathLike,
    paths: Iterable[str | os.PathLike] | None,
    message: str,
) -> str:
    """Save ``paths`` (default: every change) in ``dataset`` with ``message``; return the commit.

    Raises
    ------
    OutputError
        A path outside the dataset, or the save failed.
    """
    root = Path(dataset).absolute()
    if not is_dataset(root):
        raise OutputError(f"{root}: not a DataLad dataset; create it first (datalad create)")
    items = None
    if paths is not None:
        items = []
        for p in paths:
            full = Path(os.path.abspath(p if Path(p).is_absolute() else root / p))
            if full != root and root not in full.parents:
                raise OutputError(f"{full}: outside the dataset {root}; save files inside it")
            items.append(str(full))
    dl = _api()
    ds = dl.Dataset(str(root))
    try:
        results = ds.save(
            path=items,
            message=message,
            result_renderer="disabled",
            on_failure="ignore",
            return_type="list",
        )
    except Exception as exc:  # DataLad raises several types for failed saves
        raise OutputError(f"{root}: cannot save ({_short(exc)})") from exc
    failed = [r for r in results if r.get("status") in ("error", "impossible")]
    if failed:
        raise OutputError(f"{failed[0].get('path', root)}: cannot save ({_message(failed[0])})")
    return ds.repo.get_hexsha()


def participant_outputs(label: str) -> list[str]:
    """What the BIDS App writes for one participant, relative to the derivatives root."""
    from ..bids import normalize_participant_label

    label = normalize_participant_label(label)
    return [f"sub-{label}", f"sub-{label}.html", f"logs/sub-{label}_summary.json", *SHARED_OUTPUTS]


@dataclass(frozen=True)
class RunRecord:
    """A DataLad run record: the commit and its parsed JSON.

    Attributes
    ----------
    commit : str or None
        The commit that holds it (None when the command changed nothing).
    message : str
        The commit subject line.
    record : dict
        ``cmd``, ``inputs``, ``outputs``, ``exit``, ``dsid``, ``pwd``, ``chain`` and
        ``brainrecon`` (version, seed, participant, sources, ...).
    """

    commit: str | None
    message: str
    record: dict[str, Any]

    @property
    def exit_code(self) -> int:
        return int(self.record.get("exit", 0) or 0)


@contextmanager
def _recording() -> Any:
    previous = os.environ.get(RECORDING_ENV)
    os.environ[RECORDING_ENV] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(RECORDING_ENV, None)
        else:
            os.environ[RECORDING_ENV] = previous


@_quiet()
def record_run(
    dataset: str | os.PathLike,
    command: str | Sequence[str],
    *,
    inputs: Iterable[str | os.PathLike] = (),
    outputs: Iterable[str | os.PathLike] = (),
    message: str | None = None,
    info: Mapping[str, Any] | None = None,
    execute: bool = True,
) -> RunRecord:
    """Run ``command`` with ``datalad run`` in ``dataset`` (or record one that already ran).

    The command runs at the dataset root. Inputs inside the dataset (e.g. input subdatasets
    under ``sourcedata/``) are got first and listed in the record, so ``datalad rerun`` on a
    fresh clone gets exactly them; inputs outside are listed under ``brainrecon.external_inputs``.
    Declared outputs are unlocked first and saved after.

    Parameters
    ----------
    dataset : path
        An installed dataset (see :func:`ensure_output_dataset`).
    command : str or sequence of str
        The command (a sequence is quoted with :func:`shlex.join`).
    inputs, outputs : iterable of path
        Absolute, or relative to the dataset root.
    message : str, optional
        Commit subject (default: the command, shortened).
    info : mapping, optional
        Extra provenance stored under the record's ``brainrecon`` key (e.g. seed, settings);
        the package version is always added.
    execute : bool
        False records a command that already produced the outputs (``datalad run --inject``
        semantics): nothing runs, the outputs are saved with the record.

    Returns
    -------
    RunRecord

    Raises
    ------
    OutputError
        The dataset is not installed or the record cannot be saved.
    BrainreconError
        The command failed; its exit code is kept (``exit_code``) and nothing is saved.
    """
    root = Path(dataset).absolute()
    if not is_dataset(root):
        raise OutputError(f"{root}: not a DataLad dataset; create it first (datalad create)")
    dl = _api()
    from datalad.core.local.run import run_command

    def split(items: Iterable[str | os.PathLike]) -> tuple[list[str], list[str]]:
        inside, outside = [], []
        for item in items:
            full = Path(os.path.abspath(item if Path(item).is_absolute() else root / item))
            if full == root or root in full.parents:
                inside.append(full.relative_to(root).as_posix())
            else:
                outside.append(str(full))
        return inside, outside

    ins, external_ins = split(inputs)
    outs, external_outs = split(outputs)
    if external_outs:
        raise OutputError(f"{external_outs[0]}: output outside the dataset {root}")
    cmd = command if isinstance(command, str) else shlex.join(list(command))
    extra = {
        RECORD_KEY: {
            "version": __version__,
            **dict(info or {}),
            "external_inputs": external_ins,
        }
    }
    ds = dl.Dataset(str(root))
    before = ds.repo.get_hexsha()
    with _recording():
        results = list(
            run_command(
                cmd,
                dataset=ds,
                inputs=ins,
                outputs=outs,
                message=message,
                extra_info=extra,
                explicit=True,
                inject=not execute,
            )
        )
    failed = [r for r in results if r.get("status") in ("error", "impossible")]
    if failed:
        run_failure = next((r for r in failed if r.get("action") == "run"), failed[0])
        code = run_failure.get("exit_code")
        if code:
            error = BrainreconError(
                f"{root}: the recorded command failed with exit code {code} "
                f"({_message(run_failure)}); nothing was saved"
            )
            error.exit_code = int(code)
            raise error
        raise OutputError(f"{root}: cannot record the run ({_message(run_failure)})")
    after = ds.repo.get_hexsha()
    if after == before:
        return RunRecord(None, message or cmd, {"cmd": cmd, "inputs": ins, "outputs": outs})
    return run_record(root, after)


def run_record(dataset: str | os.PathLike, commit: str = "HEAD") -> RunRecord:
    """Read the DataLad run record of ``commit`` in ``dataset``.

    Raises
    ------
    DataError
        The commit carries no run record (or an unreadable one).
    """
    root = Path(dataset).absolute()
    dl = _api()
    from datalad.local.rerun import get_run_info

    ds = dl.Dataset(str(root))
    try:
        sha = ds.repo.get_hexsha(commit)
        text = ds.repo.format_commit("%B", sha)
        subject, record = get_run_info(ds, text)
    except ValueError as exc:
        raise DataError(f"{root}: commit {commit} has an unreadable run record ({exc})") from exc
    if record is None:
        raise DataError(f"{root}: commit {commit} has no DataLad run record")
    return RunRecord(sha, subject, record)


# ----------------------------------------------------------------------------- the BIDS App


def should_record(flag: bool | None, output_dir: str | os.PathLike) -> bool:
    """Whether the BIDS App should record its runs with DataLad.

    ``flag`` is ``--datalad`` (True), ``--no-datalad`` (False) or neither (None: record when
    ``output_dir`` already is a dataset). Never inside a command that :func:`record_run` runs.
    """
    if os.environ.get(RECORDING_ENV):
        return False
    if flag is not None:
        return bool(flag)
    return is_dataset(output_dir)


def brainrecon_command() -> list[str]:
    """How to call the ``brainrecon`` program in a record: its name when ``PATH`` finds this
    installation's, else its absolute path, else ``python -m``."""
    beside = Path(sys.executable).parent / "brainrecon"
    on_path = shutil.which("brainrecon")
    if on_path and beside.exists() and Path(on_path).resolve() == beside.resolve():
        return ["brainrecon"]
    if beside.exists():
        return [str(beside)]
    if on_path:
        return ["brainrecon"]
    return [sys.executable, "-m", "nipype_brainrecon.bids_app.cli"]


_PATH_DESTS = {
    "bids_dir",
    "output_dir",
    "betas",
    "roi_dseg",
    "roi_labels",
    "use_plugin",
    "feature_cache",
    "work_dir",
}


def replay_argv(
    parser: Any,
    args: Any,
    *,
    root: str | os.PathLike,
    participant: str,
    cwd: str | os.PathLike | None = None,
) -> list[str]:
    """The command-line arguments that redo ``args`` for one participant, from ``root``.

    ``datalad run`` executes at the dataset root, so path arguments are rewritten: relative to
    ``root`` when inside it (the output dataset becomes ``.``; input subdatasets become
    ``sourcedata/...``), absolute otherwise. ``--participant-label`` becomes ``participant``;
    ``--datalad`` is dropped and ``--no-datalad`` added when the parser knows it, so that a
    ``datalad rerun`` does not wrap itself again.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The BIDS App's parser.
    args : argparse.Namespace
        What it parsed.
    root : path
        The output dataset.
    participant : str
        The one participant of the record.
    cwd : path, optional
        The folder relative paths in ``args`` are relative to (default: the current one).
    """
    import argparse

    from ..bids import normalize_participant_label

    base = Path(cwd).absolute() if cwd is not None else Path.cwd()
    root = Path(root).absolute()

    def where(value: Any) -> str:
        if _is_url(os.fspath(value)):
            return os.fspath(value)
        full = Path(os.path.abspath(base / Path(value)))
        if full == root:
            return "."
        if root in full.parents:
            return full.relative_to(root).as_posix()
        return str(full)

    positional: list[str] = []
    options: list[str] = []
    known = {s for a in parser._actions for s in a.option_strings}
    for action in parser._actions:
        dest = action.dest
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            continue
        if dest == "datalad":
            continue
        value = getattr(args, dest, None)
        if not action.option_strings:
            if dest == "analysis_level":
                positional.append("participant")
            elif value is not None:
                positional.append(where(value) if dest in _PATH_DESTS else str(value))
            continue
        flag = next((s for s in action.option_strings if s.startswith("--")), None)
        flag = flag or action.option_strings[0]
        if dest == "participant_label":
            options += [flag, normalize_participant_label(participant)]
            continue
        if value is None or value == action.default:
            continue
        if isinstance(action, argparse._CountAction):
            options += [action.option_strings[0]] * int(value)
        elif isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            options.append(flag)
        elif isinstance(action, argparse.BooleanOptionalAction):
            options.append(flag if value else "--no-" + flag[2:])
        else:
            values = value if isinstance(value, (list, tuple)) and action.nargs else [value]
            rendered = []
            for item in values:
                if dest == "derivatives" and isinstance(item, tuple):
                    rendered.append(f"{item[0]}={where(item[1])}")
                elif dest in _PATH_DESTS:
                    rendered.append(where(item))
                elif dest == "model" and os.path.exists(base / str(item)):
                    rendered.append(where(item))
                else:
                    rendered.append(str(item))
            options += [flag, *rendered]
    if "--no-datalad" in known:
        options.append("--no-datalad")
    return positional + options


def run_recorded(
    parser: Any,
    args: Any,
    *,
    inputs: PreparedInputs | None = None,
    settings: Mapping[str, Any] | None = None,
) -> int:
    """Run the participant level once per participant under ``datalad run``; return the exit.

    The output folder becomes a dataset (:func:`ensure_output_dataset`); each participant's
    command (:func:`replay_argv`, with ``--no-datalad``) runs with its input files and outputs
    declared, and its commit carries the run record with the package version, the seed and the
    input datasets' ids and commits.

    Parameters
    ----------
    parser, args
        The BIDS App's parser and parsed arguments (``args.output_dir``,
        ``args.participant_label``, ``args.random_seed`` are read).
    inputs : PreparedInputs, optional
        From :func:`prepare_inputs` (default: prepared here from ``args``).
    settings : mapping, optional
        Run settings stored in the record.
    """
    if inputs is None:
        inputs = prepare_inputs(
            args.bids_dir,
            dict(args.derivatives) if getattr(args, "derivatives", None) else None,
            args.participant_label,
            getattr(args, "task", None),
            space=getattr(args, "space", "T1w"),
            roi_dseg=getattr(args, "roi_dseg", None),
            roi_labels=getattr(args, "roi_labels", None),
        )
    out = ensure_output_dataset(args.output_dir)
    sources = {}
    for name, meta in inputs.summary["datasets"].items():
        entry = {k: v for k, v in meta.items() if k != "absent"}
        path = Path(entry["path"])
        if out in path.parents:  # a subdataset: where it is in the output, not on this machine
            entry["path"] = path.relative_to(out).as_posix()
        sources[name] = entry
    for label in inputs.summary["participants"]:
        command = [*brainrecon_command(), *replay_argv(parser, args, root=out, participant=label)]
        info = {
            "participant": label,
            "seed": getattr(args, "random_seed", None),
            "settings": dict(settings or {}),
            "sources": sources,
        }
        try:
            record = record_run(
                out,
                command,
                inputs=inputs.needed.get(label, []),
                outputs=participant_outputs(label),
                message=f"brainrecon {__version__}: participant sub-{label}",
                info=json.loads(json.dumps(info, default=str)),
            )
        except BrainreconError as exc:
            print(f"brainrecon: error: sub-{label}: {exc}", file=sys.stderr)
            return exc.exit_code
        state = f"saved in {record.commit[:10]}" if record.commit else "no change"
        print(f"sub-{label}: {state} (datalad run record in {out})")
    return 0
