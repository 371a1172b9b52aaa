"""A simulated BIDS dataset with known ground truth, and the ``brainrecon-simulate`` command.

The simulator writes a raw BIDS dataset (BOLD runs of a rapid event-related ``vision`` task, events,
stimuli and captions), fMRIPrep-like derivatives (preprocessed BOLD, brain mask, confounds, a
visual-ROI segmentation) and the ground truth (per-trial amplitudes, voxel weights, receptive
fields, stimulus features) under ``derivatives/simulation``. See ``docs/simulation.md``.

Model, per subject:

* ``early`` voxels have population receptive fields (2D Gaussians over the image) pooling
  low-level maps of the image (luminance, local contrast, red-green, blue-yellow on a 16 × 16 grid);
* ``ventral`` voxels respond to the scene's semantic vector (which shapes, colours, sizes,
  background), not to where things are;
* per-trial amplitude (% signal change) = intercept + weights · stimulus features
  (+ trial-to-trial variability);
* BOLD = baseline · (1 + amplitudes convolved with an HRF / 100) + slow drift
  (in the span of the confounds' cosine columns) + noise (AR(1) Gaussian + a motion-correlated part
  driven by the simulated motion written in the confounds), the noise scaled per voxel and run so
  that std(stimulus-driven signal) / std(noise) over time equals ``snr`` exactly;
* by default (:mod:`.realism`) the HRF differs from the GLM's Glover HRF by ROI and voxel, part
  of the noise is physiological-like outside the confounds' span, the noise is spatially smooth,
  30 % of voxels do not respond and voxel SNRs spread around ``snr``; ``--preset oracle`` turns
  these off (Glover HRF, white noise, every voxel at ``snr``).

Modules
-------
config
    The settings (:class:`~.config.SimulationConfig`), their defaults and checks.
features
    The stimuli folder of the dataset and the stimuli's low-level and semantic features.
design
    Train/test split, trial order per run, trial timing, HRF regressors, the drift basis.
voxels
    The BOLD grid and its regions; voxel tuning (pRFs, semantic weights) and baselines.
bold
    One run's BOLD: signal, drift, head motion, noise at the set SNR.
realism
    Options the analysis does not assume (on by default): HRF mismatch, physiological-like and
    spatially correlated noise, non-responsive voxels, SNR spread, null modes.
confounds
    fMRIPrep-like confounds computed from a run's data.
writer
    JSON / TSV / NIfTI writers and the dataset-level files.
subject
    One subject: its tuning, runs and files.
truth
    The ground truth: writing it, and :func:`load_ground_truth`.
dataset
    :func:`simulate_dataset`, the main routine.
cli
    The ``brainrecon-simulate`` command (:func:`main`).
"""

from .bold import SNR_DEFINITION
from .cli import main
from .config import DEFAULT_N_TEST, DEFAULT_N_TRAIN
from .dataset import simulate_dataset
from .design import HIGH_PASS_S, HRF_MODEL, TASK, trial_regressors
from .features import LOW_LEVEL_CHANNELS, LOW_LEVEL_GRID, low_level_features
from .truth import load_ground_truth
from .voxels import GRID_SHAPE, ROI_LABELS, VOXEL_SIZE, brain_grid

__all__ = [
    "DEFAULT_N_TEST",
    "DEFAULT_N_TRAIN",
    "GRID_SHAPE",
    "HIGH_PASS_S",
    "HRF_MODEL",
    "LOW_LEVEL_CHANNELS",
    "LOW_LEVEL_GRID",
    "ROI_LABELS",
    "SNR_DEFINITION",
    "TASK",
    "VOXEL_SIZE",
    "brain_grid",
    "load_ground_truth",
    "low_level_features",
    "main",
    "simulate_dataset",
    "trial_regressors",
]
