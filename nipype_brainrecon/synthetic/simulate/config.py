"""Settings of a simulation: their defaults and their checks."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from ...errors import UsageError

__all__ = [
    "DEFAULT_N_TEST",
    "DEFAULT_N_TRAIN",
    "DEFAULT_REALISM",
    "ORACLE_REALISM",
    "NULL_MODES",
    "SimulationConfig",
    "check_config",
]

#: Accepted values of ``null``: off, no stimulus signal, stimulus labels permuted.
NULL_MODES = ("none", "snr0", "permuted")

#: Defaults used when the stimuli are generated (with user stimuli, n_train defaults to the rest).
DEFAULT_N_TRAIN = 180
DEFAULT_N_TEST = 20

#: Default realism the analysis does not assume (:mod:`.realism`; issue 22): HRF delay/undershoot
#: SD 1 s around the GLM's Glover HRF, 30 % of the noise variance physiological-like (outside the
#: confounds' span), independent noise smoothed to FWHM 2 voxels, 30 % of each ROI's voxels
#: non-responsive, SD 0.5 of the log per-voxel SNR. Scores on it over seeds: docs/evaluation.md.
DEFAULT_REALISM = MappingProxyType(
    {
        "hrf_mismatch": 1.0,
        "physio_fraction": 0.3,
        "noise_fwhm": 2.0,
        "nonresponsive_fraction": 0.3,
        "snr_spread": 0.5,
    }
)
#: Every realism option off: data made under the analysis' own assumptions (the GLM's HRF,
#: nuisance inside the confounds' span, independent noise, every ROI voxel responding at one
#: SNR): the simulator's default before issue 22 (``--preset oracle``).
ORACLE_REALISM = MappingProxyType(dict.fromkeys(DEFAULT_REALISM, 0.0))


@dataclass(frozen=True)
class SimulationConfig:
    """A simulation's settings: the arguments of ``simulate_dataset`` (see there), as numbers."""

    n_subjects: int
    n_runs: int
    seed: int
    snr: float
    n_train: int | None
    n_test: int
    n_repeats: int
    tr: float
    trial_interval: float
    trial_duration: float
    image_size: int
    n_captions: int
    trial_variability: float
    motion_fraction: float
    ar_coef: float
    drift_percent: float
    hrf_mismatch: float = DEFAULT_REALISM["hrf_mismatch"]
    physio_fraction: float = DEFAULT_REALISM["physio_fraction"]
    noise_fwhm: float = DEFAULT_REALISM["noise_fwhm"]
    nonresponsive_fraction: float = DEFAULT_REALISM["nonresponsive_fraction"]
    snr_spread: float = DEFAULT_REALISM["snr_spread"]
    null: str = "none"
    #: Mixed tuning: ``((roi, unique z, unique c), ...)`` (see ``realism.apply_mixed_tuning``).
    unique_fractions: tuple[tuple[str, float, float], ...] = ()


def check_config(cfg: SimulationConfig, stimuli_dir: Path | None) -> None:
    """Raise a :class:`UsageError` naming the first setting out of range."""

    def bad(option: str, value: object, need: str) -> UsageError:
        return UsageError(f"{option} {value}: {need}")

    if not 1 <= cfg.n_subjects <= 99:
        raise bad("--subjects", cfg.n_subjects, "use 1 to 99 subjects")
    if not 1 <= cfg.n_runs <= 99:
        raise bad("--runs", cfg.n_runs, "use 1 to 99 runs")
    if cfg.seed < 0:
        raise bad("--seed", cfg.seed, "use a non-negative integer")
    if math.isnan(cfg.snr) or cfg.snr <= 0:
        raise bad("--snr", cfg.snr, "use a positive number (inf for no noise)")
    if cfg.n_train is not None and cfg.n_train < 1:
        raise bad("--train", cfg.n_train, "use at least 1 training image")
    if cfg.n_test < 1:
        raise bad("--test", cfg.n_test, "use at least 1 test image")
    if cfg.n_repeats < 1:
        raise bad("--repeats", cfg.n_repeats, "use at least 1 repeat per test image")
    if not (math.isfinite(cfg.tr) and 0.2 <= cfg.tr <= 10):
        raise bad("--tr", cfg.tr, "use a repetition time between 0.2 and 10 s")
    if not (cfg.trial_duration > 0 and cfg.trial_interval >= cfg.trial_duration):
        raise bad("trial_interval", cfg.trial_interval, "must be at least trial_duration (> 0)")
    if not 8 <= cfg.image_size <= 1024:
        raise bad("--image-size", cfg.image_size, "use 8 to 1024 pixels")
    if not 1 <= cfg.n_captions <= 6:
        raise bad("--captions", cfg.n_captions, "use 1 to 6 captions per image")
    if not (math.isfinite(cfg.trial_variability) and cfg.trial_variability >= 0):
        raise bad("--trial-variability", cfg.trial_variability, "use a number >= 0")
    if not 0 <= cfg.motion_fraction <= 1:
        raise UsageError(f"motion_fraction {cfg.motion_fraction}: use a number in [0, 1]")
    if not 0 <= cfg.ar_coef < 1:
        raise UsageError(f"ar_coef {cfg.ar_coef}: use a number in [0, 1)")
    if not (math.isfinite(cfg.drift_percent) and cfg.drift_percent >= 0):
        raise UsageError(f"drift_percent {cfg.drift_percent}: use a number >= 0")
    _check_realism(cfg)
    if stimuli_dir is None:
        n_train = DEFAULT_N_TRAIN if cfg.n_train is None else cfg.n_train
        if n_train + cfg.n_test > 10000:
            raise bad("--train", n_train, "use at most 10000 images in all")


def _check_realism(cfg: SimulationConfig) -> None:
    """The options of :mod:`.realism`."""
    for option, value, top in (
        ("--hrf-mismatch", cfg.hrf_mismatch, 3.0),
        ("--noise-fwhm", cfg.noise_fwhm, 6.0),
        ("--snr-spread", cfg.snr_spread, 2.0),
    ):
        if not (math.isfinite(value) and 0 <= value <= top):
            raise UsageError(f"{option} {value}: use a number from 0 to {top:g}")
    if not 0 <= cfg.physio_fraction <= 1:
        raise UsageError(f"--physio-fraction {cfg.physio_fraction}: use a number in [0, 1]")
    if not 0 <= cfg.nonresponsive_fraction < 1:
        raise UsageError(
            f"--nonresponsive-fraction {cfg.nonresponsive_fraction}: use a number in [0, 1)"
        )
    if cfg.null not in NULL_MODES:
        raise UsageError(f"--null {cfg.null!r}: use one of {', '.join(NULL_MODES)}")
    for roi, uz, uc in cfg.unique_fractions:
        if roi not in ("early", "ventral") or not (0 <= uz and 0 <= uc and uz + uc <= 1):
            raise UsageError(
                f"--unique-fractions {roi}:{uz},{uc}: give early or ventral and two fractions "
                ">= 0 with a sum <= 1 (unique z, unique c; the rest is shared)"
            )
