"""Names and layout of the derivatives dataset: entities, labels, URIs, the .bidsignore."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

PIPELINE_NAME = "nipype-brainrecon"
BIDS_VERSION = "1.10.0"

BIDSIGNORE = """\
# What BIDS cannot express yet; each pattern is justified in docs/outputs.md
*.html
logs/
sub-*/figures
sub-*/decoding
sub-*/recon
*_betas.nii.gz
*_betas.json
*_trials.tsv
*_desc-reconstruction_metrics.tsv
*_desc-reconstruction_metrics.json
group_metrics.tsv
group_metrics.json
*_statmap.nii.gz
*_statmap.json
*_desc-encoding_rois.tsv
*_desc-encoding_rois.json
"""


def run_prefix(subject: str, entities: Mapping[str, str]) -> str:
    """``sub-X[_ses-Y]_task-Z[_run-N]`` from a run's entities.

    >>> run_prefix("01", {"task": "view", "run": "2"})
    'sub-01_task-view_run-2'
    """
    parts = [f"sub-{subject}"]
    for key in ("ses", "task", "acq", "run", "echo"):
        if entities.get(key):
            parts.append(f"{key}-{entities[key]}")
    return "_".join(parts)


def task_label(tasks: Sequence[str]) -> str:
    """The ``task`` entity of a file made from runs of ``tasks`` (e.g. an ROI mask in ``func/``):
    the one task, or the distinct labels joined in order of first appearance.

    >>> task_label(["vision", "vision"]), task_label(["vision", "localizer"]), task_label([])
    ('vision', 'visionlocalizer', '')
    """
    return "".join(label(t) for t in dict.fromkeys(t for t in tasks if t))


def label(value: str) -> str:
    """A BIDS label from any text: letters and digits only.

    >>> label("stim_0017.png"), label("--")
    ('stim0017png', 'x')
    """
    text = "".join(ch for ch in str(value) if ch.isalnum())
    return text or "x"


def bids_uri(path: str | os.PathLike, root: str | os.PathLike, dataset: str = "raw") -> str:
    """``bids:<dataset>:<relative path>`` URI of a file inside a dataset root."""
    rel = Path(os.path.relpath(Path(path).absolute(), Path(root).absolute())).as_posix()
    return f"bids:{dataset}:{rel}"


def subject_metrics_name(subject: str) -> str:
    """File name of a subject's reconstruction metrics table."""
    return f"sub-{subject}_desc-reconstruction_metrics.tsv"


def subject_per_image_name(subject: str) -> str:
    """File name (under ``sub-<label>/``) of each test image's scores, beside the PNGs."""
    return f"recon/sub-{subject}_desc-perimage_metrics.tsv"


def collect_subject_metrics(output_dir: str | os.PathLike, subjects: Sequence[str]) -> list[Path]:
    """The per-subject metrics tables found in a derivatives dataset."""
    out = Path(output_dir)
    return [p for s in subjects for p in [out / f"sub-{s}" / subject_metrics_name(s)] if p.exists()]
