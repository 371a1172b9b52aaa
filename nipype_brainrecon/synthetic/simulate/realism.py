"""Realism the analysis does not assume: options of the simulation (defaults:
:data:`.config.DEFAULT_REALISM`; ``--preset oracle`` turns them all off).

* ``hrf_mismatch`` (s): the BOLD is made with double-gamma HRFs that differ from the GLM's Glover
  HRF. Each ROI gets a mean delay and undershoot drawn around Glover's (SD ``hrf_mismatch``), and
  :data:`HRF_VARIANTS_PER_ROI` variants drawn around the ROI's means (same SD); each voxel takes
  one variant, so a run's design is computed a few times, not once per voxel.
* ``physio_fraction``: that share of the noise variance is physiological-like: respiration
  (~0.3 Hz) and cardiac (~1.1 Hz) oscillations sampled (so aliased) at the TR, plus 1/f noise,
  made orthogonal to the confounds' span (intercept, cosine columns, the six motion traces and
  their derivatives) so that no confound regression removes it.
* ``noise_fwhm`` (voxels): the independent (AR(1)) part of the noise is smoothed on the grid with
  a Gaussian of that FWHM and rescaled to its former SD per voxel.
* ``nonresponsive_fraction``: that share of each ROI's voxels has no stimulus response (only
  noise, at the responsive voxels' median level relative to baseline).
* ``snr_spread``: per-voxel SNR multipliers ``exp(z - mean(z))``, ``z ~ N(0, snr_spread)``
  (geometric mean exactly 1 per subject).
* ``null``: ``"snr0"`` keeps the noise as at ``snr`` but adds no stimulus signal;
  ``"permuted"`` gives each shown stimulus the response of another shown stimulus (a random
  permutation per subject), so the images' labels carry no information about the responses.
* ``unique_fractions`` (mixed tuning): ``((roi, uz, uc), ...)``; every voxel of a listed ROI
  responds to both feature spaces of :func:`.voxels.planting_spaces` (``z``: 10 principal
  components of the low-level maps, ``c``: 10 of the semantic vectors, over the shown stimuli),
  with unique fractions ``uz`` (``R2(z+c) - R2(c)``) and ``uc`` and shared ``1 - uz - uc`` of its
  stimulus-driven variance, exactly, over the shown stimuli (:func:`.voxels.mixed_tuning`); its
  mean and spread of amplitudes stay those of its own tuning, so its SNR is unchanged.

Every option draws from its own generator, seeded by ``(seed, 4 + k, subject[, run])``, and only
when it is on, so with all of them off (:data:`.config.ORACLE_REALISM`) the dataset is the same,
bit for bit, as before these options existed (the default until issue 22 made them default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from .config import NULL_MODES, SimulationConfig
from .voxels import MIXED_SPACE_DIMS, ROI_LABELS, VoxelModel, mixed_tuning, planting_spaces

__all__ = [
    "GLM_HRF_DELAY",
    "GLM_HRF_UNDERSHOOT",
    "HRF_VARIANTS_PER_ROI",
    "NULL_MODES",
    "PHYSIO_CARDIAC_HZ",
    "PHYSIO_RESPIRATION_HZ",
    "SubjectRealism",
    "MixedTuning",
    "apply_mixed_tuning",
    "apply_to_model",
    "double_gamma_hrf",
    "draw_subject_realism",
    "hrf_regressors",
    "noise_sd",
    "physio_noise",
    "physio_rng",
    "physio_span",
    "realism_active",
    "realism_params",
    "smooth_noise",
    "stimulus_signal",
]

#: Delay and undershoot parameters (s) of nilearn's Glover HRF, which the GLM uses.
GLM_HRF_DELAY = 6.0
GLM_HRF_UNDERSHOOT = 12.0
_DISPERSION = 0.9
_RATIO = 0.48
#: nilearn's ``compute_regressor`` defaults, as :func:`.design.trial_regressors` uses them.
_OVERSAMPLING = 50
_MIN_ONSET = -24.0
HRF_VARIANTS_PER_ROI = 4
PHYSIO_RESPIRATION_HZ = 0.3
PHYSIO_CARDIAC_HZ = 1.1
_STREAM_SUBJECT, _STREAM_PHYSIO, _STREAM_MIXED = 4, 5, 6


def realism_active(cfg: SimulationConfig) -> bool:
    """Whether any of the options is on (then :func:`draw_subject_realism` returns one)."""
    return bool(
        cfg.hrf_mismatch > 0
        or cfg.physio_fraction > 0
        or cfg.noise_fwhm > 0
        or cfg.nonresponsive_fraction > 0
        or cfg.snr_spread > 0
        or cfg.null != "none"
        or bool(cfg.unique_fractions)
    )


# ----------------------------------------------------------------------------- HRF


def double_gamma_hrf(
    t_r: float, oversampling: int, delay: float, undershoot: float, time_length: float = 32.0
) -> np.ndarray:
    """A double-gamma HRF sampled as nilearn samples its Glover HRF (sums to 1).

    ``delay`` and ``undershoot`` are nilearn's parameters (s): the positive lobe peaks at
    ``delay - 0.9`` s; ``delay=6, undershoot=12`` is nilearn's Glover HRF exactly.
    """
    from scipy.stats import gamma

    dt = t_r / oversampling
    t = np.linspace(0, time_length, int(np.rint(time_length / dt)))
    peak = gamma.pdf(t, delay / _DISPERSION, loc=dt, scale=_DISPERSION)
    under = gamma.pdf(t, undershoot / _DISPERSION, loc=dt, scale=_DISPERSION)
    hrf = peak - _RATIO * under
    return hrf / hrf.sum()


def _oversampled_grid(frame_times: np.ndarray) -> np.ndarray:
    """nilearn's high-resolution time grid of ``compute_regressor`` (``oversampling=50``,
    ``min_onset=-24``), so that :func:`hrf_regressors` samples as it does."""
    n = frame_times.size
    lo, hi = float(frame_times.min()), float(frame_times.max())
    end = hi * (1 + 1.0 / (n - 1))
    n_high = (n - 1) / (hi - lo) * (end - lo - _MIN_ONSET) * _OVERSAMPLING + 1
    return np.linspace(lo + _MIN_ONSET, end, int(np.rint(n_high)))


def hrf_regressors(
    onsets: np.ndarray,
    durations: np.ndarray,
    frame_times: np.ndarray,
    delay: float,
    undershoot: float,
) -> np.ndarray:
    """As :func:`.design.trial_regressors`, with :func:`double_gamma_hrf` (volumes × trials).

    nilearn's ``compute_regressor`` per trial (boxcar on its oversampled grid, convolved with
    the HRF, linearly interpolated at ``frame_times``), computed for all trials at once: a
    boxcar convolved with the HRF is the difference of the HRF's cumulative sum at the onset
    and offset samples, needed only at the grid points either side of each frame. Equal to
    ``compute_regressor`` to rounding (tests), about 100 times faster.
    """
    onsets, durations = np.asarray(onsets, dtype=float), np.asarray(durations, dtype=float)
    grid = _oversampled_grid(frame_times)
    last = grid.size - 1
    t_on = np.minimum(np.searchsorted(grid, onsets), last)
    t_off = np.minimum(np.searchsorted(grid, onsets + durations), last)
    t_off = np.where((t_off < last) & (t_off == t_on), t_off + 1, t_off)  # as nilearn's
    t_r = float(np.min(np.diff(frame_times)))
    step = np.cumsum(double_gamma_hrf(t_r, _OVERSAMPLING, delay, undershoot))

    def boxcar_response(i: np.ndarray) -> np.ndarray:  # grid samples i (frames) × trials
        def cumulative(j: np.ndarray) -> np.ndarray:
            return np.where(j < 0, 0.0, step[np.clip(j, 0, step.size - 1)])

        return cumulative(i[:, None] - t_on) - cumulative(i[:, None] - t_off)

    idx = np.clip(np.searchsorted(grid, frame_times, side="right") - 1, 0, last - 1)
    below, above = boxcar_response(idx), boxcar_response(idx + 1)
    slope = (above - below) / (grid[idx + 1] - grid[idx])[:, None]
    return slope * (frame_times - grid[idx])[:, None] + below


# ----------------------------------------------------------------------------- per subject


@dataclass(frozen=True)
class SubjectRealism:
    """One subject's draws for the options (arrays over the responsive voxels of the model).

    Attributes
    ----------
    responsive : numpy.ndarray
        Bool: the voxel responds to the stimuli (``nonresponsive_fraction``).
    snr_multiplier : numpy.ndarray
        The voxel's SNR is ``snr * snr_multiplier`` (``snr_spread``).
    hrf_variant : numpy.ndarray
        Index into ``hrf_delay`` / ``hrf_undershoot`` of the voxel's HRF (-1: Glover).
    hrf_delay, hrf_undershoot : numpy.ndarray
        Parameters (s) of each HRF variant (:func:`double_gamma_hrf`).
    permutation : numpy.ndarray
        Stimulus whose response each stimulus evokes (identity unless ``null="permuted"``).
    """

    responsive: np.ndarray
    snr_multiplier: np.ndarray
    hrf_variant: np.ndarray
    hrf_delay: np.ndarray
    hrf_undershoot: np.ndarray
    permutation: np.ndarray


def draw_subject_realism(
    cfg: SimulationConfig, s_index: int, model: VoxelModel, n_stimuli: int, used: np.ndarray
) -> SubjectRealism:
    """Draw a subject's responsive voxels, SNR multipliers, HRFs and null permutation."""
    n_vox = len(model.vox)

    def gen(k: int) -> np.random.Generator:
        return np.random.default_rng([cfg.seed, _STREAM_SUBJECT, s_index, k])

    responsive = np.ones(n_vox, dtype=bool)
    if cfg.nonresponsive_fraction > 0:
        rng = gen(0)
        for label in np.unique(model.label):
            idx = np.flatnonzero(model.label == label)
            n_off = int(round(cfg.nonresponsive_fraction * idx.size))
            responsive[rng.choice(idx, size=n_off, replace=False)] = False
    mult = np.ones(n_vox)
    if cfg.snr_spread > 0:
        z = gen(1).normal(0, cfg.snr_spread, n_vox)
        mult = np.exp(z - z.mean())
    variant, delay, under = _draw_hrfs(gen(2), cfg.hrf_mismatch, model.label)
    permutation = np.arange(n_stimuli)
    if cfg.null == "permuted":
        permutation[used] = gen(3).permutation(used)
    return SubjectRealism(responsive, mult, variant, delay, under, permutation)


def _draw_hrfs(
    rng: np.random.Generator, spread: float, label: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HRF variants per ROI around ROI means drawn around Glover's; each voxel's variant."""
    variant = np.full(label.size, -1)
    if spread <= 0:
        return variant, np.empty(0), np.empty(0)
    delays, unders = [], []
    for r, roi in enumerate(np.unique(label)):
        mean_d = GLM_HRF_DELAY + rng.normal(0, spread)
        mean_u = GLM_HRF_UNDERSHOOT + rng.normal(0, spread)
        d = mean_d + rng.normal(0, spread, HRF_VARIANTS_PER_ROI)
        u = mean_u + rng.normal(0, spread, HRF_VARIANTS_PER_ROI)
        d = np.clip(d, 3.0, 10.0)
        delays.append(d)
        unders.append(np.maximum(u, d + 3.0))
        idx = np.flatnonzero(label == roi)
        variant[idx] = r * HRF_VARIANTS_PER_ROI + rng.integers(0, HRF_VARIANTS_PER_ROI, idx.size)
    return variant, np.concatenate(delays), np.concatenate(unders)


def apply_to_model(model: VoxelModel, real: SubjectRealism) -> VoxelModel:
    """The model with non-responsive voxels silenced and the null permutation applied."""
    stim_amp = model.stim_amp[real.permutation]
    stim_amp[:, ~real.responsive] = 0.0
    specific_sd = np.where(real.responsive, model.specific_sd, 0.0)
    return replace(model, stim_amp=stim_amp, specific_sd=specific_sd)


@dataclass(frozen=True)
class MixedTuning:
    """One subject's mixed tuning (``unique_fractions``).

    Attributes
    ----------
    planted : numpy.ndarray
        ``(n_voxels, 3)``: unique z, unique c and shared fractions of each responsive voxel's
        stimulus-driven variance over the shown stimuli (NaN for voxels of unlisted ROIs).
    z_space, c_space : numpy.ndarray
        Stimuli × :data:`.voxels.MIXED_SPACE_DIMS`: the feature spaces they refer to.
    """

    planted: np.ndarray
    z_space: np.ndarray
    c_space: np.ndarray


def apply_mixed_tuning(
    cfg: SimulationConfig,
    s_index: int,
    model: VoxelModel,
    low: np.ndarray,
    semantic: np.ndarray,
    used: np.ndarray,
) -> tuple[VoxelModel, MixedTuning]:
    """The model with the voxels of the listed ROIs mixed-tuned, and what was planted."""
    rng = np.random.default_rng([cfg.seed, _STREAM_MIXED, s_index])
    z_space, c_space = planting_spaces(low, semantic, used, MIXED_SPACE_DIMS)
    planted = np.full((len(model.vox), 3), np.nan)
    stim_amp = model.stim_amp.copy()
    names = {name: label for label, name in ROI_LABELS.items()}
    for roi, uz, uc in cfg.unique_fractions:
        cols = np.flatnonzero(model.label == names[roi])
        target = np.tile([uz, uc], (cols.size, 1))
        signal, planted[cols] = mixed_tuning(rng, z_space, c_space, used, target)
        mean = model.stim_amp[used][:, cols].mean(0)
        stim_amp[:, cols] = mean + signal * model.specific_sd[cols]
    model = replace(model, stim_amp=stim_amp, specific_sd=stim_amp[used].std(axis=0))
    return model, MixedTuning(planted, z_space, c_space)


def stimulus_signal(
    design: np.ndarray,
    amp: np.ndarray,
    scale: np.ndarray,
    real: SubjectRealism,
    timing: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> np.ndarray:
    """Time × voxels stimulus-driven BOLD, each voxel through its HRF variant."""
    signal = design @ amp * scale
    for g in range(real.hrf_delay.size):
        cols = np.flatnonzero(real.hrf_variant == g)
        if cols.size:
            reg = hrf_regressors(*timing, real.hrf_delay[g], real.hrf_undershoot[g])
            signal[:, cols] = reg @ amp[:, cols] * scale[cols]
    return signal


def noise_sd(
    sig_sd: np.ndarray, snr: float, vox_baseline: np.ndarray, real: SubjectRealism
) -> tuple[np.ndarray, float]:
    """Noise SD of each responsive voxel and the median noise level relative to baseline."""
    sd = sig_sd / (snr * real.snr_multiplier)
    resp = real.responsive
    rel = float(np.median(sd[resp] / vox_baseline[resp])) if resp.any() else 0.01
    return np.where(resp, sd, rel * vox_baseline), rel


# ----------------------------------------------------------------------------- noise


def physio_noise(
    rng: np.random.Generator, frame_times: np.ndarray, span: np.ndarray, n_voxels: int
) -> np.ndarray:
    """Physiological-like noise, time × voxels, unit SD, orthogonal to the columns of ``span``.

    Per voxel: respiration and cardiac oscillations (the run's frequencies drawn around
    :data:`PHYSIO_RESPIRATION_HZ` and :data:`PHYSIO_CARDIAC_HZ`, with slow frequency wander and
    a phase per voxel) sampled at ``frame_times``, and 1/f noise, in equal shares of variance.
    """
    n_t = frame_times.size
    dt = np.diff(frame_times, prepend=frame_times[0] - (frame_times[1] - frame_times[0]))
    parts = []
    for base_hz in (PHYSIO_RESPIRATION_HZ, PHYSIO_CARDIAC_HZ):
        hz = base_hz * rng.uniform(0.95, 1.05) * (1 + 0.02 * np.cumsum(rng.normal(0, 0.2, n_t)))
        phase = 2 * np.pi * np.cumsum(hz * dt)
        offsets = rng.uniform(0, 2 * np.pi, n_voxels)
        amp = np.abs(rng.normal(1, 0.3, n_voxels))
        parts.append(np.sin(phase[:, None] + offsets[None, :]) * amp)
    freqs = np.fft.rfftfreq(n_t, d=float(np.median(dt)))
    shape = np.zeros_like(freqs)
    shape[1:] = 1 / np.sqrt(freqs[1:])  # amplitude ∝ f^-1/2: power ∝ 1/f
    spec = rng.normal(0, 1, (freqs.size, n_voxels)) + 1j * rng.normal(0, 1, (freqs.size, n_voxels))
    parts.append(np.fft.irfft(spec * shape[:, None], n=n_t, axis=0))
    out = sum(_standardise(p) for p in parts) / math.sqrt(len(parts))
    out -= span @ np.linalg.lstsq(span, out, rcond=None)[0]
    return _standardise(out)


def _standardise(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(0)
    sd = x.std(0)
    return x / np.where(sd > 0, sd, 1.0)


def physio_span(motion: np.ndarray, cosines: np.ndarray) -> np.ndarray:
    """Intercept, cosine columns, motion traces and their derivatives (time × columns)."""
    deriv = np.vstack([np.zeros(6), np.diff(motion, axis=0)])
    return np.column_stack([np.ones(len(motion)), cosines, motion, deriv])


def physio_rng(cfg: SimulationConfig, s_index: int, run: int) -> np.random.Generator:
    """The generator of a run's physiological noise."""
    return np.random.default_rng([cfg.seed, _STREAM_PHYSIO, s_index, run])


def smooth_noise(noise: np.ndarray, flat_mask: np.ndarray, fwhm: float, shape) -> np.ndarray:
    """Smooth time × brain-voxel noise on the grid (Gaussian, FWHM in voxels); keep SD per voxel."""
    from scipy.ndimage import gaussian_filter

    sigma = fwhm / math.sqrt(8 * math.log(2))
    vols = np.zeros((noise.shape[0], flat_mask.size))
    vols[:, flat_mask] = noise
    vols = gaussian_filter(vols.reshape(-1, *shape), sigma=(0, sigma, sigma, sigma))
    out = vols.reshape(noise.shape[0], -1)[:, flat_mask]
    return _standardise(out) * noise.std(0)


def realism_params(cfg: SimulationConfig) -> dict:
    """The options' settings and their model, for ``simulation.json``."""
    params = {
        "hrf_mismatch_s": cfg.hrf_mismatch,
        "hrf_model_of_data": "glover (as the GLM)"
        if cfg.hrf_mismatch <= 0
        else "double gamma (nilearn's form, dispersion 0.9, ratio 0.48); delay and undershoot "
        f"per ROI ~ N(glover's {GLM_HRF_DELAY:g} / {GLM_HRF_UNDERSHOOT:g} s, hrf_mismatch), "
        f"{HRF_VARIANTS_PER_ROI} variants per ROI ~ N(ROI mean, hrf_mismatch); per voxel in the "
        "truth (hrf_delay, hrf_undershoot)",
        "physio_fraction_of_noise_variance": cfg.physio_fraction,
        "physio_model": f"respiration ~{PHYSIO_RESPIRATION_HZ:g} Hz + cardiac "
        f"~{PHYSIO_CARDIAC_HZ:g} Hz sampled at the TR (aliased) + 1/f noise, orthogonal to the "
        "intercept, cosine columns, motion traces and their derivatives",
        "noise_fwhm_voxels": cfg.noise_fwhm,
        "noise_smoothing": "Gaussian smoothing of the AR(1) noise volumes, SD per voxel kept",
        "nonresponsive_fraction": cfg.nonresponsive_fraction,
        "snr_spread_sd_log": cfg.snr_spread,
        "null": cfg.null,
    }
    if cfg.unique_fractions:  # only when on: the default simulation.json is as before
        params["unique_fractions"] = {
            roi: {"unique_z": uz, "unique_c": uc, "shared": 1 - uz - uc}
            for roi, uz, uc in cfg.unique_fractions
        }
        params["unique_fractions_model"] = (
            "mixed tuning of the listed ROIs: fractions of each voxel's stimulus-driven variance "
            "over the shown stimuli, exact for least-squares fits on the planting spaces (z: "
            f"{MIXED_SPACE_DIMS} principal components of the low-level maps, c: "
            f"{MIXED_SPACE_DIMS} of the semantic vectors); per voxel in the truth (planted_*)"
        )
    return params
