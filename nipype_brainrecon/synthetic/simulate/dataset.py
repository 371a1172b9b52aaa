"""The main routine: :func:`simulate_dataset` writes a whole simulated dataset, atomically."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ...errors import OutputError
from ...io import atomic_directory
from .. import stimuli as stim
from .config import DEFAULT_N_TEST, DEFAULT_REALISM, SimulationConfig, check_config
from .design import split_stimuli
from .features import write_stimuli_folder
from .subject import simulate_subject
from .truth import write_simulation_params, write_stimulus_truth
from .voxels import brain_grid
from .writer import write_fmriprep_files, write_raw_files, write_truth_files

__all__ = ["simulate_dataset"]


def simulate_dataset(
    out_dir: str | os.PathLike,
    *,
    n_subjects: int = 2,
    n_runs: int = 3,
    seed: int = 0,
    snr: float = 1.0,
    n_train: int | None = None,
    n_test: int = DEFAULT_N_TEST,
    n_repeats: int = 3,
    tr: float = 2.0,
    stimuli_dir: str | os.PathLike | None = None,
    trial_interval: float = 4.0,
    trial_duration: float = 3.0,
    image_size: int = 128,
    n_captions: int = 5,
    trial_variability: float = 0.1,
    motion_fraction: float = 0.2,
    ar_coef: float = 0.3,
    drift_percent: float = 1.0,
    hrf_mismatch: float = DEFAULT_REALISM["hrf_mismatch"],
    physio_fraction: float = DEFAULT_REALISM["physio_fraction"],
    noise_fwhm: float = DEFAULT_REALISM["noise_fwhm"],
    nonresponsive_fraction: float = DEFAULT_REALISM["nonresponsive_fraction"],
    snr_spread: float = DEFAULT_REALISM["snr_spread"],
    null: str = "none",
    unique_fractions: Mapping[str, tuple[float, float]] | None = None,
) -> Path:
    """Write a simulated BIDS dataset with fMRIPrep-like derivatives and its ground truth.

    The whole dataset is built in a temporary sibling folder and moved to ``out_dir`` at the end;
    if anything fails nothing is left.

    Parameters
    ----------
    out_dir : path
        New folder (absent or empty, not inside another BIDS dataset).
    n_subjects, n_runs : int
        Subjects (labels ``01``, ``02``, ...) and runs per subject.
    seed : int
        Seeds everything: same arguments, same files.
    snr : float
        Per voxel and run, std of the stimulus-driven signal / std of the noise over time
        (see :data:`SNR_DEFINITION`); ``inf`` gives noiseless data.
    n_train, n_test : int
        Images shown once (training) and images shown ``n_repeats`` times (test).
        ``n_train`` defaults to 180 for generated stimuli, to all images left after the test set
        for ``stimuli_dir``.
    n_repeats : int
        Presentations of each test image, spread over runs.
    tr : float
        Repetition time (s).
    stimuli_dir : path, optional
        A folder of images with ``captions.tsv`` to use instead of generated scenes; ventral
        voxels then respond to a bag-of-words vector of the captions.
    trial_interval, trial_duration : float
        Onset-to-onset interval and stimulus duration (s).
    image_size : int
        Side of generated images (px).
    n_captions : int
        Captions per generated image.
    trial_variability : float
        Std of trial-to-trial amplitude variability, relative to each voxel's std of
        stimulus-specific amplitudes.
    motion_fraction : float
        Share of the noise variance that is motion-correlated.
    ar_coef : float
        AR(1) coefficient of the Gaussian noise (per volume).
    drift_percent : float
        Typical amplitude of the slow drift (% of baseline).
    hrf_mismatch : float
        SD (s) of the HRF delay and undershoot around Glover's (the GLM's HRF), by ROI and
        voxel; 0 makes the data with Glover's HRF (see :mod:`.realism` for this and the
        following options; defaults: :data:`.config.DEFAULT_REALISM`; all 0, the analysis' own
        assumptions: :data:`.config.ORACLE_REALISM`).
    physio_fraction : float
        Share of the noise variance that is physiological-like (respiration, cardiac, 1/f),
        outside the span of the confounds.
    noise_fwhm : float
        FWHM (voxels) of the Gaussian smoothing of the independent noise; 0 = none.
    nonresponsive_fraction : float
        Share of each ROI's voxels with no stimulus response.
    snr_spread : float
        SD of log of per-voxel SNR multipliers (geometric mean 1).
    unique_fractions : mapping, optional
        Mixed tuning: ``{roi: (unique z, unique c)}`` fractions of the stimulus-driven variance
        of every voxel of ``early`` / ``ventral`` (:mod:`.realism`; docs/simulation.md).
    null : str
        ``"none"``, ``"snr0"`` (no stimulus signal) or ``"permuted"`` (each stimulus evokes the
        response of another).

    Returns
    -------
    pathlib.Path
        ``out_dir`` (absolute).

    Raises
    ------
    UsageError
        An argument is out of range.
    MissingInputError
        ``stimuli_dir`` does not exist (or lacks its table or an image).
    DataError
        ``stimuli_dir`` has an unusable captions table.
    OutputError
        ``out_dir`` exists and is not empty, or lies inside a BIDS dataset.
    """
    cfg = SimulationConfig(
        n_subjects=int(n_subjects),
        n_runs=int(n_runs),
        seed=int(seed),
        snr=float(snr),
        n_train=None if n_train is None else int(n_train),
        n_test=int(n_test),
        n_repeats=int(n_repeats),
        tr=float(tr),
        trial_interval=float(trial_interval),
        trial_duration=float(trial_duration),
        image_size=int(image_size),
        n_captions=int(n_captions),
        trial_variability=float(trial_variability),
        motion_fraction=float(motion_fraction),
        ar_coef=float(ar_coef),
        drift_percent=float(drift_percent),
        hrf_mismatch=float(hrf_mismatch),
        physio_fraction=float(physio_fraction),
        noise_fwhm=float(noise_fwhm),
        nonresponsive_fraction=float(nonresponsive_fraction),
        snr_spread=float(snr_spread),
        null=str(null),
        unique_fractions=tuple(
            (str(roi), float(uz), float(uc)) for roi, (uz, uc) in (unique_fractions or {}).items()
        ),
    )
    src = Path(stimuli_dir) if stimuli_dir is not None else None
    check_config(cfg, src)
    user_set = stim.read_stimuli(src) if src is not None else None
    out = Path(out_dir).absolute()
    _check_output(out)
    with atomic_directory(out) as tmp:
        _write_dataset(tmp, cfg, user_set)
    return out


def _check_output(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputError(f"{out}: output already exists and is not empty; choose a new folder")
    for parent in [out, *out.parents]:
        if (parent / "dataset_description.json").is_file():
            raise OutputError(
                f"{out}: inside the existing BIDS dataset {parent}; write the simulation elsewhere"
            )


def _write_dataset(root: Path, cfg: SimulationConfig, user_set: stim.StimulusSet | None) -> None:
    """Write the whole dataset into ``root`` (the temporary folder being built)."""
    stimuli = write_stimuli_folder(root, cfg, user_set)
    train_ids, test_ids, split = split_stimuli(cfg, len(stimuli.files), stimuli.n_train)
    anat = brain_grid()
    labels = [f"{s:02d}" for s in range(1, cfg.n_subjects + 1)]

    write_raw_files(root, labels)
    write_fmriprep_files(root / "derivatives" / "fmriprep")
    truth = root / "derivatives" / "simulation"
    write_truth_files(truth)
    write_stimulus_truth(truth, stimuli, split)
    write_simulation_params(truth, cfg, len(train_ids), len(test_ids), stimuli.semantic_source)

    for s_index, label in enumerate(labels, start=1):
        simulate_subject(root, label, s_index, cfg, anat, stimuli, train_ids, test_ids)
