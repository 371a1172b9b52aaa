"""The ground truth under ``derivatives/simulation``: writing it, and reading it back.

Stimulus features (``stimuli_features.npz``), the generated scenes (``scenes.json``), the
simulation's parameters (``simulation.json``) and per subject the trial amplitudes, voxel weights
and receptive fields (``sub-XX_task-vision_groundtruth.npz`` with its JSON description).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..._version import __version__
from ...errors import MissingInputError
from .bold import SNR_DEFINITION, SimulatedRun
from .config import SimulationConfig
from .design import HIGH_PASS_S, HRF_MODEL, TASK
from .features import LOW_LEVEL_CHANNELS, LOW_LEVEL_GRID, StimulusFeatures
from .realism import (
    GLM_HRF_DELAY,
    GLM_HRF_UNDERSHOOT,
    MixedTuning,
    SubjectRealism,
    realism_params,
)
from .voxels import GRID_SHAPE, ROI_LABELS, VoxelModel
from .writer import write_json

__all__ = [
    "load_ground_truth",
    "write_simulation_params",
    "write_stimulus_truth",
    "write_subject_truth",
]


#: Description of the arrays of the realism options (:mod:`.realism`) in the ground truth.
_REALISM_ARRAYS_DOC = {
    "responsive": "voxel responds to the stimuli (else nonresponsive_fraction)",
    "snr_multiplier": "voxel SNR = snr × this (snr_spread; geometric mean 1)",
    "hrf_delay, hrf_undershoot": "per voxel, parameters (s) of the HRF that made "
    f"the data (Glover's: {GLM_HRF_DELAY:g}, {GLM_HRF_UNDERSHOOT:g})",
    "hrf_variant": "index of the voxel's HRF variant (-1: Glover's)",
    "null_permutation": "stimuli: the stimulus whose response each one evokes "
    "(identity unless null = permuted); stimulus_amplitudes are after it",
}


#: Description of the arrays of mixed tuning (``unique_fractions``), written only when on.
_MIXED_ARRAYS_DOC = {
    "planted_unique_z, planted_unique_c, planted_shared": "per voxel, fractions of its "
    "stimulus-driven variance over the shown stimuli: R2(z+c) - R2(c), R2(z+c) - R2(z) and the "
    "rest, for least-squares fits on mixed_z_space / mixed_c_space (NaN: ROI not mixed, or "
    "voxel non-responsive)",
    "mixed_z_space, mixed_c_space": "stimuli × 10: the planting spaces (principal components "
    "of the low-level maps / semantic vectors over the shown stimuli, unit variance)",
}


def write_stimulus_truth(truth: Path, stimuli: StimulusFeatures, split: np.ndarray) -> None:
    """``stimuli_features.npz`` and, for generated stimuli, ``scenes.json``."""
    files = stimuli.files
    np.savez_compressed(
        truth / "stimuli_features.npz",
        stim_file=np.array(files),
        split=split,
        semantic=stimuli.semantic,
        semantic_names=np.array(stimuli.semantic_names),
        low_level=stimuli.low,
        low_level_shape=np.array([len(LOW_LEVEL_CHANNELS), LOW_LEVEL_GRID, LOW_LEVEL_GRID]),
        low_level_channels=np.array(LOW_LEVEL_CHANNELS),
    )
    if stimuli.scenes is not None:
        write_json(
            truth / "scenes.json",
            {f: s.to_dict() for f, s in zip(files, stimuli.scenes, strict=True)},
        )


def write_simulation_params(
    truth: Path, cfg: SimulationConfig, n_train: int, n_test: int, semantic_source: str
) -> None:
    """``simulation.json``: the model and every setting of the simulation."""
    write_json(
        truth / "simulation.json",
        {
            "seed": cfg.seed,
            "snr": cfg.snr if math.isfinite(cfg.snr) else "inf",
            "snr_definition": SNR_DEFINITION,
            "hrf_model": HRF_MODEL,
            "hrf_oversampling": 50,
            "frame_times": "np.arange(n_volumes) * RepetitionTime (slice_time_ref 0)",
            "amplitude_units": "percent signal change of the voxel baseline",
            "bold_model": "baseline * (1 + sum_trials amplitude * glover_regressor / 100) "
            "+ drift + noise",
            "noise": {
                "ar1_coefficient": cfg.ar_coef,
                "motion_fraction_of_variance": cfg.motion_fraction,
                "drift_percent": cfg.drift_percent,
                "drift_basis": f"cosine columns of the confounds ({HIGH_PASS_S:g} s high-pass)",
            },
            "trial_variability": cfg.trial_variability,
            "repetition_time": cfg.tr,
            "trial_interval": cfg.trial_interval,
            "trial_duration": cfg.trial_duration,
            "n_subjects": cfg.n_subjects,
            "n_runs": cfg.n_runs,
            "n_train": n_train,
            "n_test": n_test,
            "n_repeats": cfg.n_repeats,
            "semantic_features": semantic_source,
            "low_level_channels": list(LOW_LEVEL_CHANNELS),
            "low_level_grid": LOW_LEVEL_GRID,
            "roi_labels": {str(k): v for k, v in ROI_LABELS.items()},
            "preproc_equals_raw": True,
            "realism": realism_params(cfg),
            "software": f"nipype-brainrecon {__version__}",
        },
    )


def write_subject_truth(
    truth_dir: Path,
    label: str,
    cfg: SimulationConfig,
    model: VoxelModel,
    baseline: np.ndarray,
    trials: pd.DataFrame,
    runs: list[SimulatedRun],
    real: SubjectRealism | None = None,
    mixed: MixedTuning | None = None,
) -> None:
    """One subject's ground truth: arrays (``.npz``) and their description (``.json``).

    ``baseline`` is that of the responsive voxels; ``trials`` holds every run's events with
    their ``run`` and ``stim_index``; ``real`` the draws of :mod:`.realism` (``None``: all off);
    ``mixed`` the planted unique-variance fractions (``unique_fractions``; arrays ``planted_*``
    and ``mixed_*_space`` only when given).
    """
    extra = {}
    if mixed is not None:
        planted = mixed.planted.copy()
        if real is not None:  # a non-responsive voxel has no stimulus variance to partition
            planted[~real.responsive] = np.nan
        extra = {
            "planted_unique_z": planted[:, 0],
            "planted_unique_c": planted[:, 1],
            "planted_shared": planted[:, 2],
            "mixed_z_space": mixed.z_space,
            "mixed_c_space": mixed.c_space,
        }
    ijk = np.column_stack(np.unravel_index(model.vox, GRID_SHAPE))
    truth_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        truth_dir / f"sub-{label}_task-{TASK}_groundtruth.npz",
        amplitudes=np.vstack([run.amplitudes for run in runs]),
        stimulus_amplitudes=model.stim_amp,
        trial_run=trials["run"].to_numpy(),
        trial_onset=trials["onset"].to_numpy(),
        trial_duration=trials["duration"].to_numpy(),
        trial_stim_file=trials["stim_file"].to_numpy().astype(str),
        trial_stim_index=trials["stim_index"].to_numpy(),
        voxel_ijk=ijk,
        voxel_label=model.label,
        voxel_roi=np.array([ROI_LABELS[int(v)] for v in model.label]),
        baseline=baseline,
        intercept=model.intercept,
        weights_early=model.w_early,
        weights_ventral=model.w_ventral,
        prf_x=model.prf_x,
        prf_y=model.prf_y,
        prf_sigma=model.prf_sigma,
        prf_channel_weights=model.channel_w,
        noise_std=np.vstack([run.noise_std for run in runs]),
        signal_std=np.vstack([run.signal_std for run in runs]),
        **_realism_arrays(model, real),
        **extra,
    )
    write_json(
        truth_dir / f"sub-{label}_task-{TASK}_groundtruth.json",
        {
            "Subject": label,
            "snr": cfg.snr if math.isfinite(cfg.snr) else "inf",
            "arrays": {
                "amplitudes": "trials × responsive voxels, % signal change; trials ordered by "
                "run then onset (trial_* arrays), voxels by voxel_ijk (C order of the grid)",
                "stimulus_amplitudes": "stimuli × voxels, noiseless amplitude of each stimulus",
                "voxel_ijk": "voxel indices on the BOLD grid",
                "voxel_label": "dseg label (1 early, 2 ventral)",
                "baseline": "voxel baseline (BOLD units)",
                "intercept": "% signal change common to every trial",
                "weights_early": "early voxels × low-level features (stimuli_features.npz)",
                "weights_ventral": "ventral voxels × semantic features (stimuli_features.npz)",
                "prf_x, prf_y, prf_sigma": "pRF centre and width of early voxels, fraction of "
                "the image (0, 0 = top left)",
                "prf_channel_weights": f"early voxels × {', '.join(LOW_LEVEL_CHANNELS)}",
                "noise_std, signal_std": "runs × voxels, BOLD units",
            },
            "realism_arrays": _REALISM_ARRAYS_DOC,
            **({"mixed_tuning_arrays": _MIXED_ARRAYS_DOC} if mixed is not None else {}),
        },
    )


def _realism_arrays(model: VoxelModel, real: SubjectRealism | None) -> dict[str, np.ndarray]:
    """Per-voxel draws of :mod:`.realism` (today's model when ``real`` is None)."""
    n_vox, n_stim = len(model.vox), model.stim_amp.shape[0]
    if real is None:
        real = SubjectRealism(
            responsive=np.ones(n_vox, dtype=bool),
            snr_multiplier=np.ones(n_vox),
            hrf_variant=np.full(n_vox, -1),
            hrf_delay=np.empty(0),
            hrf_undershoot=np.empty(0),
            permutation=np.arange(n_stim),
        )
    delay, under = np.full(n_vox, GLM_HRF_DELAY), np.full(n_vox, GLM_HRF_UNDERSHOOT)
    own = real.hrf_variant >= 0
    delay[own] = real.hrf_delay[real.hrf_variant[own]]
    under[own] = real.hrf_undershoot[real.hrf_variant[own]]
    return {
        "responsive": real.responsive,
        "snr_multiplier": real.snr_multiplier,
        "hrf_delay": delay,
        "hrf_undershoot": under,
        "hrf_variant": real.hrf_variant,
        "null_permutation": real.permutation,
    }


def load_ground_truth(dataset_dir: str | os.PathLike, subject: str) -> dict:
    """Read the ground truth of one subject of a simulated dataset.

    Parameters
    ----------
    dataset_dir : path
        The simulated dataset (its root).
    subject : str
        ``01`` or ``sub-01``.

    Returns
    -------
    dict
        The subject's arrays (see ``sub-XX_task-vision_groundtruth.json``), the stimulus features
        under ``stim_file``, ``split``, ``semantic``, ``semantic_names``, ``low_level``,
        ``low_level_channels``, and the simulation parameters under ``params``.

    Raises
    ------
    MissingInputError
        The dataset or subject has no ground truth.
    """
    root = Path(dataset_dir) / "derivatives" / "simulation"
    label = subject.removeprefix("sub-")
    path = root / f"sub-{label}" / f"sub-{label}_task-{TASK}_groundtruth.npz"
    if not path.is_file():
        raise MissingInputError(
            f"{path}: no ground truth; give a dataset written by brainrecon-simulate and a "
            "subject it has"
        )
    out: dict = {}
    with np.load(path, allow_pickle=False) as npz:
        out.update({k: npz[k] for k in npz.files})
    with np.load(root / "stimuli_features.npz", allow_pickle=False) as npz:
        for k in npz.files:
            out[k] = npz[k]
    params = json.loads((root / "simulation.json").read_text(encoding="utf-8"))
    params["snr"] = float(params["snr"])  # "inf" is stored as a string in JSON
    out["params"] = params
    return out
