"""One run's BOLD: stimulus-driven signal, slow drift, head motion and noise at a set SNR.

BOLD = baseline · (1 + amplitudes convolved with nilearn's Glover HRF / 100) + slow drift (in the
span of the confounds' cosine columns) + noise (AR(1) Gaussian + a motion-correlated part driven by
the simulated motion written in the confounds), the noise scaled per voxel and run so that
std(stimulus-driven signal) / std(noise) over time equals ``snr`` exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .config import SimulationConfig
from .design import cosine_basis, run_timing, trial_regressors
from .realism import SubjectRealism, physio_noise, physio_span, smooth_noise, stimulus_signal
from .realism import noise_sd as realism_noise_sd
from .voxels import GRID_SHAPE, VoxelModel

__all__ = ["SNR_DEFINITION", "SimulatedRun", "simulate_run"]

SNR_DEFINITION = (
    "per voxel and run: std over time of the stimulus-driven signal (trial amplitudes convolved "
    "with the HRF, in BOLD units) divided by std over time of the noise (AR(1) Gaussian plus "
    "motion-correlated part); baseline and slow drift are not noise; the noise of each responsive "
    "(early, ventral) voxel is scaled to give exactly this ratio, other brain voxels get the median "
    "noise level relative to baseline"
)


@dataclass(frozen=True)
class SimulatedRun:
    """One simulated run.

    Attributes
    ----------
    onsets, durations : numpy.ndarray
        Of its trials (s).
    data : numpy.ndarray
        Voxels of the grid (C order) × volumes, float64.
    motion : numpy.ndarray
        Volumes × 6: translations (mm) and rotations (rad).
    cosines : numpy.ndarray
        Volumes × the cosine drift basis.
    amplitudes : numpy.ndarray
        Trials × responsive voxels: each trial's amplitude (% signal change).
    signal_std, noise_std : numpy.ndarray
        Per responsive voxel, BOLD units (the noise is 0 when noiseless).
    """

    onsets: np.ndarray
    durations: np.ndarray
    data: np.ndarray
    motion: np.ndarray
    cosines: np.ndarray
    amplitudes: np.ndarray
    signal_std: np.ndarray
    noise_std: np.ndarray


def simulate_run(
    rng: np.random.Generator,
    cfg: SimulationConfig,
    stim_ids: np.ndarray,
    model: VoxelModel,
    baseline: np.ndarray,
    mask: np.ndarray,
    real: SubjectRealism | None = None,
    physio_gen: np.random.Generator | None = None,
) -> SimulatedRun:
    """Simulate one run showing ``stim_ids`` in order.

    Parameters
    ----------
    rng : numpy.random.Generator
        The subject's generator (drawn from in a fixed order).
    cfg : SimulationConfig
    stim_ids : numpy.ndarray
        Stimulus index of each trial.
    model : VoxelModel
        The subject's voxel tuning.
    baseline : numpy.ndarray
        Baseline of every voxel of the grid (C order).
    mask : numpy.ndarray
        The brain mask of the grid.
    real : SubjectRealism, optional
        The subject's draws for the options of :mod:`.realism` (``None``: all off, and then
        nothing here differs from the simulation before those options existed).
    physio_gen : numpy.random.Generator, optional
        The run's generator of physiological noise (needed when ``cfg.physio_fraction > 0``).
    """
    onsets, durations, frame_times = run_timing(len(stim_ids), cfg)
    n_vols = len(frame_times)
    vox = model.vox
    vox_baseline = baseline[vox]
    design = trial_regressors(onsets, durations, frame_times)  # time × trials
    amp = model.stim_amp[stim_ids].copy()
    if cfg.trial_variability > 0:
        amp += rng.normal(0, 1, amp.shape) * (cfg.trial_variability * model.specific_sd)
    if real is None or real.hrf_delay.size == 0:
        signal = design @ amp * (vox_baseline / 100.0)  # time × responsive voxels, BOLD units
    else:
        timing = (onsets, durations, frame_times)
        signal = stimulus_signal(design, amp, vox_baseline / 100.0, real, timing)
    sig_sd = signal.std(axis=0)

    cosines = cosine_basis(frame_times)
    motion = _motion(rng, n_vols)
    flat_mask = mask.ravel()
    data = np.repeat(baseline[:, None], n_vols, axis=1)  # voxels × time
    brain_idx = np.flatnonzero(flat_mask)
    data[brain_idx] += _drift(rng, cosines, baseline[brain_idx], cfg.drift_percent, n_vols)
    if cfg.null == "snr0":  # noise as at cfg.snr, no stimulus signal
        amp, shown_sd = np.zeros_like(amp), np.zeros_like(sig_sd)
    else:
        data[vox] += signal.T
        shown_sd = sig_sd

    if math.isfinite(cfg.snr):
        extra = None if real is None else (real, physio_gen, cosines)
        run_noise = _add_noise(rng, data, motion, flat_mask, vox, baseline, sig_sd, cfg, extra)
    else:
        run_noise = np.zeros(len(vox))
    return SimulatedRun(onsets, durations, data, motion, cosines, amp, shown_sd, run_noise)


def _drift(
    rng: np.random.Generator,
    cosines: np.ndarray,
    brain_baseline: np.ndarray,
    drift_percent: float,
    n_vols: int,
) -> np.ndarray:
    """Slow drift within the cosine basis, larger at low frequencies: brain voxels × time."""
    k = np.arange(1, cosines.shape[1] + 1)
    drift_coef = (
        rng.normal(0, 1, (len(brain_baseline), cosines.shape[1])) / k * math.sqrt(n_vols / 2)
    )
    return (drift_coef @ cosines.T) * (brain_baseline[:, None] * drift_percent / 100)


def _add_noise(
    rng: np.random.Generator,
    data: np.ndarray,
    motion: np.ndarray,
    flat_mask: np.ndarray,
    vox: np.ndarray,
    baseline: np.ndarray,
    sig_sd: np.ndarray,
    cfg: SimulationConfig,
    extra: tuple | None = None,
) -> np.ndarray:
    """Add the noise to ``data`` in place; return its std per responsive voxel.

    ``extra`` is ``(SubjectRealism, physio generator, cosines)`` when an option of
    :mod:`.realism` is on; ``None`` keeps today's noise bit for bit.
    """
    n_vols = data.shape[1]
    brain_idx = np.flatnonzero(flat_mask)
    n_brain = brain_idx.size
    # motion regressors: the six traces and their derivatives, standardised
    mot_reg = np.column_stack([motion, np.vstack([np.zeros(6), np.diff(motion, axis=0)])])
    mot_reg = (mot_reg - mot_reg.mean(0)) / mot_reg.std(0)
    ar = _ar1(rng, n_vols, n_brain, cfg.ar_coef)
    ar = (ar - ar.mean(0)) / ar.std(0)
    if extra is not None and cfg.noise_fwhm > 0:
        ar = smooth_noise(ar, flat_mask, cfg.noise_fwhm, GRID_SHAPE)
    mot = mot_reg @ rng.normal(0, 1, (mot_reg.shape[1], n_brain))
    mot = (mot - mot.mean(0)) / mot.std(0)
    noise = math.sqrt(1 - cfg.motion_fraction) * ar + math.sqrt(cfg.motion_fraction) * mot
    noise /= noise.std(0)
    # responsive voxels: exact SNR; the rest: median noise relative to baseline
    if extra is None:
        rel = np.median(sig_sd / cfg.snr / baseline[vox])
        vox_sd = sig_sd / cfg.snr
    else:
        noise = _with_physio(noise, motion, cfg, extra)
        vox_sd, rel = realism_noise_sd(sig_sd, cfg.snr, baseline[vox], extra[0])
    sd = rel * baseline[brain_idx]
    pos = np.searchsorted(brain_idx, vox)
    sd[pos] = vox_sd
    data[brain_idx] += (noise * sd).T
    outside = np.flatnonzero(~flat_mask)
    # outside the head: magnitude of thermal noise (half the brain's noise level)
    thermal = 0.5 * rel * 1000.0
    data[outside] += np.abs(rng.normal(0, thermal, (outside.size, n_vols)))
    return sd[pos]


def _with_physio(noise: np.ndarray, motion: np.ndarray, cfg: SimulationConfig, extra: tuple):
    """Mix physiological-like noise into unit-SD ``noise`` (time × brain voxels)."""
    if cfg.physio_fraction <= 0:
        return noise
    _, gen, cosines = extra
    frame_times = np.arange(noise.shape[0]) * cfg.tr
    physio = physio_noise(gen, frame_times, physio_span(motion, cosines), noise.shape[1])
    p = cfg.physio_fraction
    mixed = math.sqrt(1 - p) * noise + math.sqrt(p) * physio
    return mixed / mixed.std(0)


def _ar1(rng: np.random.Generator, n_time: int, n_series: int, coef: float) -> np.ndarray:
    from scipy.signal import lfilter

    white = rng.standard_normal((n_time + 50, n_series))
    return lfilter([1.0], [1.0, -coef], white, axis=0)[50:]


def _motion(rng: np.random.Generator, n_time: int) -> np.ndarray:
    """Head motion (trans mm, rot rad): slow wander + jitter + an occasional small jerk."""
    wander = _ar1(rng, n_time, 6, 0.9) * np.array([0.04, 0.06, 0.05, 0.0008, 0.0006, 0.0007])
    jerks = np.zeros((n_time, 6))
    for t in rng.choice(n_time, size=max(1, n_time // 80), replace=False):
        jerks[t:] += rng.normal(0, 1, 6) * np.array([0.15, 0.2, 0.25, 0.002, 0.002, 0.002])
    return wander + jerks
