"""What :func:`~.participant.collect_participant` returns: one run's inputs, one participant's."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .events import EventsSpec


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


def shows_image(stim_file: Any) -> bool:
    """Whether an events/trials ``stim_file`` value names an image (nuisance rows have none)."""
    return isinstance(stim_file, (str, os.PathLike)) and str(stim_file) != ""


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
    events_spec : EventsSpec
        How the events were read: the stimulus column, its mapping to images and the trial
        filter; the GLM must read them the same way (``events_spec.inputs()`` gives the betas
        node's inputs).
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
    events_spec: EventsSpec = field(default_factory=EventsSpec)

    @property
    def tasks(self) -> list[str]:
        return sorted({run.task for run in self.runs})

    @property
    def stim_files(self) -> list[Path]:
        """Every stimulus shown in the runs, sorted, once each."""
        files = {p for run in self.runs for p in run.events["stim_file"] if p is not None}
        return sorted(files)

    @property
    def stimuli_by_id(self) -> dict[str, Path]:
        """``{stim_id: image}`` of every trial, ids as the pipeline reads them.

        The trials tables' own ``stim_id`` (e.g. NSD's 73k ids) where they have one, else the
        image's file name stem (:func:`nipype_brainrecon.glm.betas_io.with_stim_id`).

        Raises
        ------
        DataError
            One id names two images.
        """
        from ..errors import DataError
        from ..glm.betas_io import with_stim_id

        files: dict[str, Path] = {}
        for run in self.runs:
            shown = [shows_image(p) for p in run.events["stim_file"]]
            table = with_stim_id(run.events[shown], run.events_file)
            for sid, path in zip(table["stim_id"].astype(str), table["stim_file"], strict=True):
                if files.setdefault(sid, Path(path)) != Path(path):
                    raise DataError(
                        f"{run.events_file}: stimulus id {sid!r} names two images "
                        f"({files[sid].name}, {Path(path).name}); give each image its own id"
                    )
        return files
