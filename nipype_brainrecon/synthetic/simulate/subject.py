"""One simulated subject: its voxel tuning, its runs, and their raw, fMRIPrep-like and
ground-truth files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .bold import SimulatedRun, simulate_run
from .config import SimulationConfig
from .confounds import confounds_sidecar, confounds_table
from .design import TASK, schedule
from .features import StimulusFeatures
from .realism import (
    apply_mixed_tuning,
    apply_to_model,
    draw_subject_realism,
    physio_rng,
    realism_active,
)
from .truth import write_subject_truth
from .voxels import GRID_SHAPE, voxel_baselines, voxel_model
from .writer import write_json, write_nifti, write_tsv

__all__ = ["simulate_subject"]


def simulate_subject(
    root: Path,
    label: str,
    s_index: int,
    cfg: SimulationConfig,
    anat: dict[str, np.ndarray],
    stimuli: StimulusFeatures,
    train_ids: list[int],
    test_ids: list[int],
) -> None:
    """Simulate subject ``label`` (the ``s_index``-th) and write all of its files under ``root``.

    Everything random is drawn, in a fixed order, from a generator seeded by
    ``(cfg.seed, 3, s_index)``: the voxel tuning, the baselines, the trial order, then each run.
    The options of :mod:`.realism` draw from their own generators, only when on.
    """
    rng = np.random.default_rng([cfg.seed, 3, s_index])
    used = np.array(sorted(train_ids + test_ids))
    model = voxel_model(rng, anat["dseg"], stimuli.low, stimuli.semantic, used)
    baseline = voxel_baselines(rng, anat)
    run_stimuli = schedule(test_ids, train_ids, cfg, rng)
    real = mixed = None
    if cfg.unique_fractions:  # own generator, before the options that silence or permute
        model, mixed = apply_mixed_tuning(
            cfg, s_index, model, stimuli.low, stimuli.semantic, used
        )  # fmt: skip
    if realism_active(cfg):  # own generators: the draws above and below are unchanged
        real = draw_subject_realism(cfg, s_index, model, stimuli.low.shape[0], used)
        model = apply_to_model(model, real)
    # The simulated "T1w" space is the BOLD grid itself, which every run shares.
    reference = f"bids:raw:sub-{label}/func/sub-{label}_task-{TASK}_run-01_bold.nii.gz"
    trials: list[pd.DataFrame] = []
    runs: list[SimulatedRun] = []
    for r, stim_ids in enumerate(run_stimuli, start=1):
        physio = physio_rng(cfg, s_index, r) if cfg.physio_fraction > 0 else None
        run = simulate_run(rng, cfg, stim_ids, model, baseline, anat["mask"], real, physio)
        events = _write_run(root, label, r, run, stim_ids, stimuli.files, anat, cfg, reference)
        trials.append(events.assign(run=r, stim_index=stim_ids))
        runs.append(run)
    _write_dseg(root, label, anat, reference)
    table = pd.concat(trials, ignore_index=True)
    truth_dir = root / "derivatives" / "simulation" / f"sub-{label}"
    write_subject_truth(
        truth_dir, label, cfg, model, baseline[model.vox], table, runs, real, mixed
    )  # fmt: skip


def _write_run(
    root: Path,
    label: str,
    r: int,
    run: SimulatedRun,
    stim_ids: np.ndarray,
    files: list[str],
    anat: dict[str, np.ndarray],
    cfg: SimulationConfig,
    reference: str,
) -> pd.DataFrame:
    """Write run ``r``'s raw BOLD and events, and its fMRIPrep-like outputs; return its events."""
    func = root / f"sub-{label}" / "func"
    prep = root / "derivatives" / "fmriprep" / f"sub-{label}" / "func"
    bold = run.data.reshape(*GRID_SHAPE, run.data.shape[1]).astype(np.float32)
    stem = f"sub-{label}_task-{TASK}_run-{r:02d}"
    write_nifti(func / f"{stem}_bold.nii.gz", bold, anat["affine"], cfg.tr)
    write_json(
        func / f"{stem}_bold.json",
        {
            "TaskName": TASK,
            "RepetitionTime": cfg.tr,
            "SliceEncodingDirection": "k",
            "PhaseEncodingDirection": "j-",
            "TaskDescription": "Rapid event-related viewing of images",
        },
    )
    events = pd.DataFrame(
        {
            "onset": run.onsets,
            "duration": run.durations,
            "trial_type": "stimulus",
            "stim_file": [files[i] for i in stim_ids],
        }
    )
    write_tsv(func / f"{stem}_events.tsv", events)
    _write_preproc(prep, stem, label, bold, run, anat, cfg, reference)
    return events


def _write_preproc(
    prep: Path,
    stem: str,
    label: str,
    bold: np.ndarray,
    run: SimulatedRun,
    anat: dict[str, np.ndarray],
    cfg: SimulationConfig,
    reference: str,
) -> None:
    """A run's fMRIPrep-like outputs: preprocessed BOLD (= raw), brain mask, confounds."""
    write_nifti(prep / f"{stem}_space-T1w_desc-preproc_bold.nii.gz", bold, anat["affine"], cfg.tr)
    write_json(
        prep / f"{stem}_space-T1w_desc-preproc_bold.json",
        {
            "TaskName": TASK,
            "RepetitionTime": cfg.tr,
            "SkullStripped": False,
            "SpatialReference": reference,
            "Sources": [f"bids:raw:sub-{label}/func/{stem}_bold.nii.gz"],
            "Description": "Identical to the raw BOLD: the simulation has no spatial head "
            "motion to correct; motion-related signal remains, as after fMRIPrep",
        },
    )
    write_nifti(
        prep / f"{stem}_space-T1w_desc-brain_mask.nii.gz",
        anat["mask"].astype(np.uint8),
        anat["affine"],
    )
    write_json(
        prep / f"{stem}_space-T1w_desc-brain_mask.json",
        {"Type": "Brain", "SpatialReference": reference},
    )
    conf = confounds_table(run.data, anat, run.motion, run.cosines)
    write_tsv(prep / f"{stem}_desc-confounds_timeseries.tsv", conf)
    write_json(prep / f"{stem}_desc-confounds_timeseries.json", confounds_sidecar(conf))


def _write_dseg(root: Path, label: str, anat: dict[str, np.ndarray], reference: str) -> None:
    """The subject's visual-ROI segmentation (on the BOLD grid) with its sidecar."""
    anat_dir = root / "derivatives" / "fmriprep" / f"sub-{label}" / "anat"
    dseg_name = f"sub-{label}_space-T1w_desc-visual_dseg"
    write_nifti(anat_dir / f"{dseg_name}.nii.gz", anat["dseg"], anat["affine"])
    write_json(
        anat_dir / f"{dseg_name}.json",
        {
            "SpatialReference": reference,
            "Description": "Simulated visual regions on the BOLD grid (desc-visual_dseg.tsv)",
        },
    )
