"""The plan of a participant-level run: participants, stages, the data's sizes, and the time
and memory each stage is estimated to need (``brainrecon ... --dry-run``; the stage lines of a
run use the same estimates)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from nipype_brainrecon.bids_app.estimate import (
    StageEstimate,
    estimate_participant,
    format_seconds,
    machine_summary,
    total_seconds,
)

__all__ = [
    "attach_stage_lines",
    "estimate_run",
    "format_plan",
    "participant_sizes",
    "stage_tracker",
]


def participant_sizes(participant: Any, checked: Mapping[str, Any]) -> dict[str, Any]:
    """``checked`` (``check_participant``'s sizes) with ``runs``, ``(volumes, brain voxels)``
    per BOLD run read from the headers and masks (none for precomputed betas), and
    ``n_stimuli``."""
    import nibabel as nib
    import numpy as np

    runs = []
    for run in participant.runs:
        bold, mask = getattr(run, "bold", None), getattr(run, "mask", None)
        if not bold:
            continue
        shape = nib.load(os.fspath(bold)).shape
        n_vols = int(shape[3]) if len(shape) > 3 else 1
        if mask:
            n_brain = int((np.asanyarray(nib.load(os.fspath(mask)).dataobj) > 0).sum())
        else:
            n_brain = int(np.prod(shape[:3]))
        runs.append((n_vols, n_brain))
    return {**checked, "runs": runs, "n_stimuli": len(set(participant.stim_files))}


def estimate_run(
    sizes: Mapping[str, Mapping[str, Any]], settings: Mapping[str, Any], threads: int = 1
) -> dict[str, list[StageEstimate]]:
    """``{participant: [StageEstimate, ...]}`` for each participant's sizes."""
    return {
        label: estimate_participant(size, settings, threads=threads)
        for label, size in sizes.items()
    }


def _gb(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.2f} GB"


def format_plan(
    estimates: Mapping[str, Sequence[StageEstimate]],
    sizes: Mapping[str, Mapping[str, Any]],
    settings: Mapping[str, Any],
    *,
    parallel: int = 1,
    work_dir: Any = None,
) -> str:
    """The text ``--dry-run`` prints: one block per participant, a stage a line, the total."""
    lines = [
        f"plan ({machine_summary()}; nothing is written):",
        f"  model {settings.get('model')}, device {settings.get('device') or 'auto'}, "
        f"{settings.get('n_samples')} sample(s) per test image",
    ]
    total = 0.0
    for label, stages in estimates.items():
        size = sizes.get(label, {})
        voxels = size.get("voxels", {})
        lines.append(
            f"sub-{label}: {size.get('n_trials', '?')} trials ({size.get('n_train', '?')} train, "
            f"{size.get('n_test', '?')} test images), voxels z {voxels.get('z', '?')} / "
            f"c {voxels.get('c', '?')}, targets z {size.get('targets', {}).get('z', '?')} / "
            f"c {size.get('targets', {}).get('c', '?')}"
        )
        for s in stages:
            lines.append(
                f"  {s.stage:<15} {format_seconds(s.seconds):>12}  {_gb(s.memory):>9}  {s.sizes}"
            )
        seconds = total_seconds(list(stages))
        total += seconds
        peak = max((s.memory for s in stages), default=0)
        lines.append(f"  {'total':<15} {format_seconds(seconds):>12}  {_gb(peak):>9}  (peak)")
    n = max(1, min(int(parallel), len(estimates)))
    lines.append(
        f"participant level: about {format_seconds(total / n)} "
        f"({len(estimates)} participant(s), {n} at a time)"
    )
    if work_dir is not None:
        lines.append(f"work folder: {work_dir}")
    return "\n".join(lines)


def stage_tracker(workflow, estimates: Mapping[str, Sequence[StageEstimate]], parallel: int = 1):
    """A :class:`~nipype_brainrecon.bids_app.progress.StageTracker` for ``workflow``."""
    from nipype_brainrecon.bids_app.progress import StageTracker, stage_nodes

    seconds = {label: {s.stage: s.seconds for s in st} for label, st in estimates.items()}
    return StageTracker(stage_nodes(workflow), seconds, parallel=parallel)


def attach_stage_lines(
    workflow,
    plugin: dict,
    participants: Sequence[Any],
    checked: Mapping[str, Mapping[str, Any]],
    settings: Mapping[str, Any],
    *,
    threads: int = 1,
    parallel: int = 1,
) -> dict[str, list[StageEstimate]]:
    """Estimate each participant's stages and set a stage tracker as the plugin's
    ``status_callback`` (not for the Graph plugins, which submit every job at once and run
    no callback); returns the estimates (empty when they could not be made: the stage lines
    then show the times without an estimate)."""
    import logging

    try:
        sizes = {
            p.participant: participant_sizes(p, checked[p.participant])
            for p in participants
            if p.participant in checked
        }
        estimates = estimate_run(sizes, settings, threads=threads)
    except Exception as exc:  # an estimate must never stop a run
        logging.getLogger(__name__).debug("no time estimates: %s", exc)
        estimates = {}
    if not str(plugin.get("plugin", "")).endswith("Graph"):
        plugin.setdefault("plugin_args", {})
        plugin["plugin_args"]["status_callback"] = stage_tracker(workflow, estimates, parallel)
    return estimates
