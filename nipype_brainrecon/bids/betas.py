"""A participant from a derivatives dataset of precomputed single-trial betas (``--betas``).

The layout read (the one our own betas outputs use; see docs/betas.md)::

    BETAS_DIR/sub-<label>/[ses-<s>/]func/<prefix>[_space-<space>]_desc-<d>_betas.nii.gz
    BETAS_DIR/sub-<label>/[ses-<s>/]func/<prefix>[_space-<space>]_desc-<d>_trials.tsv
    BETAS_DIR/sub-<label>/[ses-<s>/]anat/*[_space-<space>]_desc-<roi_desc>_dseg.nii.gz  (optional)
    BETAS_DIR/desc-<roi_desc>_dseg.tsv                            (or beside the dseg)

One 4D betas image per run (or session), one volume per trial; its trials table has one row per
volume, in volume order, with a ``stim_file`` column naming each trial's image relative to
``BIDS_DIR/stimuli`` (``stim_id`` is derived from it when absent). The trials table may also
leave out the ``space-`` entity (``<prefix>_desc-<d>_trials.tsv``), as our outputs do.

:func:`collect_precomputed_betas` returns a :class:`~.inputs.ParticipantInputs` whose runs are
:class:`BetasRun`: no BOLD, events, confounds or masks are read or needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError, MissingInputError
from .dseg import find_roi
from .inputs import ParticipantInputs
from .layout import check_dataset, entities_from_name, normalize_participant_label
from .stimuli import resolve_stim_file
from .tables import read_captions

__all__ = ["BetasRun", "collect_precomputed_betas", "find_betas", "list_betas_participants"]

_SUFFIXES = ("_betas.nii.gz", "_betas.nii")


@dataclass(frozen=True, eq=False)
class BetasRun:
    """One run (or session) of precomputed betas.

    Attributes
    ----------
    entities : dict
        The entities of the betas file's name but ``space`` and ``desc`` (``{"sub": "01",
        "task": "vision", "run": "1"}``), for naming outputs.
    betas_file, trials_file : Path
        The 4D betas and their trials table.
    trials : pandas.DataFrame
        The trials table, ``stim_id`` added where absent; ``stim_file`` holds absolute paths
        inside ``BIDS_DIR/stimuli``.
    n_volumes : int
        Number of trials (volumes).

    The aliases ``bold`` (the betas: the image whose grid the ROIs are put on and that the
    outputs name as their source), ``events_file`` / ``events`` (the trials table) and ``mask``
    (``None``) let the participant's checks and writers read it as they read a BOLD run.
    """

    entities: dict[str, str]
    betas_file: Path
    trials_file: Path
    trials: Any = field(repr=False)
    n_volumes: int
    mask: None = None

    @property
    def bold(self) -> Path:
        return self.betas_file

    @property
    def events_file(self) -> Path:
        return self.trials_file

    @property
    def events(self) -> Any:
        return self.trials

    @property
    def task(self) -> str | None:
        return self.entities.get("task")

    @property
    def session(self) -> str | None:
        return self.entities.get("ses")

    @property
    def run(self) -> str | None:
        return self.entities.get("run")

    @property
    def name(self) -> str:
        return "_".join(f"{key}-{value}" for key, value in self.entities.items())


def list_betas_participants(betas_dir: str | Path) -> list[str]:
    """Labels (without ``sub-``) of the participants with a folder in ``betas_dir``."""
    root = Path(betas_dir)
    return sorted(p.name[4:] for p in root.glob("sub-*") if p.is_dir())


def find_betas(
    betas_dir: str | Path,
    participant: str,
    *,
    task: str | None = None,
    session: str | None = None,
    space: str | None = None,
) -> list[tuple[Path, Path]]:
    """``(betas, trials table)`` of each run of ``participant`` in ``betas_dir``, sorted.

    ``space``: the files of this ``space-`` when there are any (else those without one must
    agree on one space). Several ``desc-`` (or spaces) for one run are refused.

    Raises
    ------
    MissingInputError
        ``betas_dir`` or the participant's folder absent, no betas, a betas file without its
        trials table.
    DataError
        Two betas files for one run (several ``desc-`` or ``space-`` labels).
    """
    root = Path(betas_dir).absolute()
    if not root.is_dir():
        raise MissingInputError(f"{root}: --betas folder not found")
    subject_dir = root / f"sub-{participant}"
    if not subject_dir.is_dir():
        raise MissingInputError(
            f"{subject_dir}: no betas of sub-{participant} in {root} "
            f"(participants: {', '.join(list_betas_participants(root)) or 'none'})"
        )
    found = [
        p
        for p in sorted(subject_dir.rglob("*_betas.nii*"))
        if p.name.endswith(_SUFFIXES) and p.parent.name == "func"
    ]
    found = [p for p in found if _matches(p, task=task, session=session)]
    spaces = {entities_from_name(p).get("space") for p in found}
    if space in spaces:
        found = [p for p in found if entities_from_name(p).get("space") == space]
    if not found:
        wanted = " ".join(f"{k}-{v}" for k, v in (("task", task), ("ses", session)) if v)
        raise MissingInputError(
            f"{subject_dir}: no single-trial betas{' of ' + wanted if wanted else ''} "
            "(expected func/*_desc-<label>_betas.nii.gz with *_trials.tsv beside; see "
            "docs/betas.md)"
        )
    by_run: dict[str, list[Path]] = {}
    for path in found:
        by_run.setdefault(_run_key(path), []).append(path)
    pairs = []
    for key, paths in sorted(by_run.items()):
        if len(paths) > 1:
            names = ", ".join(p.name for p in paths)
            raise DataError(
                f"{paths[0].parent}: several betas for run {key} ({names}); keep one, or pick "
                "one space with --space"
            )
        pairs.append((paths[0], _trials_of(paths[0])))
    return pairs


def _matches(path: Path, *, task: str | None, session: str | None) -> bool:
    entities = entities_from_name(path)
    return (task is None or entities.get("task") == task) and (
        session is None or entities.get("ses") == session
    )


def _run_key(path: Path) -> str:
    """The betas file's entities without ``space`` and ``desc``: one run (or session)."""
    entities = entities_from_name(path)
    return "_".join(f"{k}-{v}" for k, v in entities.items() if k not in ("space", "desc"))


def _trials_of(betas: Path) -> Path:
    """The trials table of a betas file: same name (``_trials.tsv``), or without ``space-``."""
    stem = betas.name[: -len(next(s for s in _SUFFIXES if betas.name.endswith(s)))]
    candidates = [betas.with_name(f"{stem}_trials.tsv")]
    no_space = "_".join(p for p in stem.split("_") if not p.startswith("space-"))
    candidates.append(betas.with_name(f"{no_space}_trials.tsv"))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise MissingInputError(
        f"{candidates[0]}: trials table of {betas.name} not found; give one row per volume "
        "with a stim_file column"
    )


def _load_run(betas: Path, trials_file: Path, stimuli_dir: Path, bids_dir: Path) -> BetasRun:
    """One run's betas and trials table, checked together; stimuli resolved in ``stimuli/``."""
    import pandas as pd

    from ..glm.betas_io import load_precomputed_betas
    from ..glm.inputs import read_table

    raw, _ = read_table(trials_file, "trials table")
    if "stim_file" not in raw.columns:
        raise DataError(
            f"{trials_file}: no stim_file column; name each trial's image relative to {stimuli_dir}"
        )
    empty = (raw["stim_file"].isna() | (raw["stim_file"].astype(str).str.strip() == "")).to_numpy()
    if empty.any():
        rows = (empty.nonzero()[0] + 1).tolist()[:5]
        raise DataError(
            f"{trials_file}: stim_file missing in row(s) {rows}; every volume needs one"
        )
    img, table = load_precomputed_betas(betas, trials_file)
    table["stim_file"] = [
        resolve_stim_file(str(s), stimuli_dir, dataset_dir=bids_dir, source=trials_file)
        for s in table["stim_file"]
    ]
    entities = {k: v for k, v in entities_from_name(betas).items() if k not in ("space", "desc")}
    return BetasRun(
        entities=entities,
        betas_file=betas,
        trials_file=trials_file,
        trials=pd.DataFrame(table),
        n_volumes=int(img.shape[3]),
    )


def _check_grids(runs: list[BetasRun]) -> None:
    """Every run's betas on the first run's grid."""
    import nibabel as nib
    import numpy as np

    ref = nib.load(runs[0].betas_file)
    for run in runs[1:]:
        img = nib.load(run.betas_file)
        if img.shape[:3] != ref.shape[:3] or not np.allclose(img.affine, ref.affine, atol=1e-4):
            raise DataError(
                f"{run.betas_file}: betas grid differs from {runs[0].betas_file.name}'s; "
                "give every run in one space"
            )


def _captions(
    runs: list[BetasRun], stimuli_dir: Path, bids_dir: Path, captions_file: str | Path | None
) -> tuple[dict[Path, list[str]], Path]:
    """Captions of every image the runs show, from the raw dataset's captions table."""
    path = stimuli_dir / "captions.tsv" if captions_file is None else Path(captions_file).absolute()
    if not path.is_file():
        raise MissingInputError(
            f"{path}: captions table not found; add it (columns stim_file, caption)"
        )
    table = read_captions(path, stimuli_dir, dataset_dir=bids_dir)
    shown = sorted({p for run in runs for p in run.trials["stim_file"]})
    without = [p for p in shown if p not in table]
    if without:
        examples = ", ".join(p.name for p in without[:3])
        raise DataError(
            f"{path}: {len(without)} image(s) of the betas' trials have no caption "
            f"(e.g. {examples}); add rows for them"
        )
    return {p: table[p] for p in shown}, path


def _find_dseg(root: Path, participant: str, space: str, roi_desc: str) -> Path:
    """The participant's ``anat/*_desc-<roi_desc>_dseg`` in the betas dataset."""
    found = sorted(
        p
        for p in (root / f"sub-{participant}").rglob(f"*_desc-{roi_desc}_dseg.nii*")
        if p.parent.name == "anat"
    )
    of_space = [p for p in found if entities_from_name(p).get("space") == space]
    found = of_space or found
    if not found:
        raise MissingInputError(
            f"{root / f'sub-{participant}' / 'anat'}: no ROI segmentation "
            f"(*_desc-{roi_desc}_dseg.nii.gz); add it or pass --roi-dseg and --roi-labels"
        )
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise DataError(f"{found[0].parent}: several ROI segmentations ({names}); pass --roi-dseg")
    return found[0]


def collect_precomputed_betas(
    betas_dir: str | Path,
    participant_label: str,
    *,
    bids_dir: str | Path,
    task: str | None = None,
    session: str | None = None,
    space: str | None = None,
    roi_dseg: str | Path | None = None,
    roi_labels: str | Path | None = None,
    roi_desc: str = "visual",
    captions_file: str | Path | None = None,
) -> ParticipantInputs:
    """Everything the analysis of one participant needs, from precomputed betas.

    Parameters
    ----------
    betas_dir : path
        The betas derivatives dataset (layout in the module docstring).
    participant_label : str
        With or without ``sub-``.
    bids_dir : path
        The raw dataset holding ``stimuli/`` (images and ``captions.tsv``); nothing else of it
        is read.
    task, session : str, optional
        Only the betas of this task / session.
    space : str, optional
        Prefer the betas (and segmentation) of this ``space-`` when several spaces exist.
    roi_dseg, roi_labels : path, optional
        The ROI segmentation (on the betas' grid) and its label table; by default
        ``sub-<label>/anat/*_desc-<roi_desc>_dseg.nii.gz`` of ``betas_dir`` and its table.
    roi_desc : str
        ``desc-`` of the segmentation to look up.
    captions_file : path, optional
        Default ``bids_dir/stimuli/captions.tsv``.

    Returns
    -------
    ParticipantInputs
        With ``derivatives`` = ``betas_dir`` and :class:`BetasRun` runs.

    Raises
    ------
    MissingInputError
        ``betas_dir``, the participant, its betas, a trials table, a stimulus, the captions
        table or the ROI segmentation absent (exit 66).
    DataError
        A trials table whose rows differ from its volumes, without ``stim_file``, a stimulus
        without caption, runs on different grids, labels of the segmentation (exit 65).
    InvalidDatasetError
        ``bids_dir`` has no ``dataset_description.json``.
    """
    participant = normalize_participant_label(participant_label)
    root = Path(betas_dir).absolute()
    bids_dir = Path(bids_dir).absolute()
    check_dataset(bids_dir, "BIDS dataset")
    stimuli_dir = bids_dir / "stimuli"
    if not stimuli_dir.is_dir():
        raise MissingInputError(f"{stimuli_dir}: stimuli folder not found (the betas' images)")
    pairs = find_betas(root, participant, task=task, session=session, space=space)
    runs = [_load_run(b, t, stimuli_dir, bids_dir) for b, t in pairs]
    _check_grids(runs)
    captions, used_captions = _captions(runs, stimuli_dir, bids_dir, captions_file)
    found_space = entities_from_name(pairs[0][0]).get("space") or space or "T1w"
    if roi_dseg is None:
        roi_dseg = _find_dseg(root, participant, found_space, roi_desc)
    dseg, labels_file, labels = find_roi(
        root, None, participant, found_space, roi_desc, roi_dseg, roi_labels, session
    )
    return ParticipantInputs(
        participant=participant,
        bids_dir=bids_dir,
        derivatives=root,
        stimuli_dir=stimuli_dir,
        space=found_space,
        runs=tuple(runs),
        captions=captions,
        captions_file=used_captions,
        roi_dseg=dseg,
        roi_labels=labels,
        roi_labels_file=labels_file,
    )
