"""The task's design: which stimuli are shown in which run, when, and the HRF that turns trials
into BOLD regressors.

Rapid event-related runs: after a lead-in, one trial every ``trial_interval`` seconds, then a tail
of rest so that the last response is sampled. Test images are shown ``n_repeats`` times, each
repeat in a different run; training images once; runs are balanced.
"""

from __future__ import annotations

import math

import numpy as np

from ...errors import UsageError
from .config import SimulationConfig

__all__ = [
    "HIGH_PASS_S",
    "HRF_MODEL",
    "LEAD_IN_S",
    "TAIL_S",
    "TASK",
    "cosine_basis",
    "run_timing",
    "schedule",
    "split_stimuli",
    "trial_regressors",
]

TASK = "vision"
#: The HRF used to make the BOLD (nilearn's name), so a GLM can use the same one.
HRF_MODEL = "glover"
#: High-pass cut-off (s) of the cosine drift basis, as fMRIPrep's confounds use.
HIGH_PASS_S = 128.0
LEAD_IN_S = 8.0  # rest before the first trial
TAIL_S = 16.0  # rest after the last trial, so the last response is sampled


def split_stimuli(
    cfg: SimulationConfig, n_files: int, n_train: int
) -> tuple[list[int], list[int], np.ndarray]:
    """Draw the test and training stimuli.

    Returns
    -------
    train_ids, test_ids : list of int
        Sorted stimulus indices.
    split : numpy.ndarray
        ``"train"``, ``"test"`` or ``"unused"`` per stimulus.

    Raises
    ------
    UsageError
        Fewer trials in all than runs.
    """
    n_trials = n_train + cfg.n_test * cfg.n_repeats
    if n_trials < cfg.n_runs:
        raise UsageError(
            f"--runs {cfg.n_runs}: only {n_trials} trials in all; use fewer runs or more images"
        )
    rng_split = np.random.default_rng([cfg.seed, 2])
    order = rng_split.permutation(n_files)
    test_ids = sorted(int(i) for i in order[: cfg.n_test])
    train_ids = sorted(int(i) for i in order[cfg.n_test : cfg.n_test + n_train])
    split = np.full(n_files, "unused", dtype="<U6")
    split[train_ids] = "train"
    split[test_ids] = "test"
    return train_ids, test_ids, split


def schedule(
    test_ids: list[int], train_ids: list[int], cfg: SimulationConfig, rng: np.random.Generator
) -> list[np.ndarray]:
    """Stimulus index per trial for each run: test repeats in different runs, runs balanced."""
    runs: list[list[int]] = [[] for _ in range(cfg.n_runs)]
    for j, s in enumerate(test_ids):
        for r in range(cfg.n_repeats):
            runs[(j + r) % cfg.n_runs].append(s)
    for s in rng.permutation(train_ids):
        runs[int(np.argmin([len(r) for r in runs]))].append(int(s))
    out = []
    for trials in runs:
        order = np.array(trials)
        for _ in range(50):  # avoid showing the same image twice in a row
            order = rng.permutation(trials)
            if len(order) < 2 or not np.any(order[1:] == order[:-1]):
                break
        out.append(order)
    return out


def run_timing(n_trials: int, cfg: SimulationConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Onsets and durations of a run's trials and the acquisition times of its volumes (s)."""
    onsets = LEAD_IN_S + cfg.trial_interval * np.arange(n_trials)
    durations = np.full(n_trials, cfg.trial_duration)
    n_vols = int(math.ceil((onsets[-1] + cfg.trial_interval + TAIL_S) / cfg.tr))
    frame_times = np.arange(n_vols) * cfg.tr
    return onsets, durations, frame_times


def trial_regressors(
    onsets: np.ndarray, durations: np.ndarray, frame_times: np.ndarray
) -> np.ndarray:
    """One Glover-HRF regressor per trial (a least-squares-all design), as nilearn builds it.

    Parameters
    ----------
    onsets, durations : numpy.ndarray
        Seconds, one entry per trial.
    frame_times : numpy.ndarray
        Acquisition time of each volume (s), e.g. ``np.arange(n) * tr``.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_volumes, n_trials)``: the response to a unit-amplitude boxcar of each trial.
    """
    from nilearn.glm.first_level import compute_regressor

    out = np.empty((len(frame_times), len(onsets)))
    for t, (onset, duration) in enumerate(zip(onsets, durations, strict=True)):
        cond = np.array([[onset], [duration], [1.0]])
        out[:, t] = compute_regressor(cond, HRF_MODEL, frame_times, oversampling=50)[0][:, 0]
    return out


def cosine_basis(frame_times: np.ndarray) -> np.ndarray:
    """DCT drift basis with a 128 s cut-off (nilearn's, as fMRIPrep's cosine columns)."""
    from nilearn.glm.first_level import make_first_level_design_matrix

    dm = make_first_level_design_matrix(
        frame_times, None, drift_model="cosine", high_pass=1.0 / HIGH_PASS_S
    )
    cols = [c for c in dm.columns if c.startswith("drift_")]
    return dm[cols].to_numpy()
