"""The public estimator: :func:`estimate_single_trial_betas`, one step per helper (checks, events,
design, voxel data, fit, outputs)."""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from ..batching import progress_bar
from ..errors import DataError, UsageError
from .betas_io import betas_image
from .confounds import select_confounds
from .design import HRF_MODELS, nuisance_design, trial_regressors
from .events import is_trial, load_events, stim_id
from .fit import LsaModel, LssModel, fit_betas
from .inputs import (
    PathOrFrame,
    PathOrImage,
    load_image,
    mask_on_bold_grid,
    masked_timeseries,
    repetition_time,
    source_name,
)

_DRIFT_MODELS = ("cosine", "polynomial", None)
_METHODS = ("lss", "lsa")
_NOISE_MODELS = ("ols", "ar1")
_LSS_OTHERS = ("all", "trial_type")


def _run_label(run: int | str | None, bold: PathOrImage) -> int | str:
    if run is not None:
        return run
    match = re.search(r"_run-([a-zA-Z0-9]+)", Path(source_name(bold, "")).name)
    if match:
        label = match.group(1)
        return int(label) if label.isdigit() else label
    return 1


def _bar_desc(run: int | str | None, bold: PathOrImage) -> str:
    """``"sub-01 run-2 betas: voxels"``: the subject (from the BOLD file name, when it names
    one) and the run label."""
    subject = re.search(r"(?:^|_)(sub-[a-zA-Z0-9]+)", Path(source_name(bold, "")).name)
    prefix = f"{subject.group(1)} " if subject else ""
    return f"{prefix}run-{_run_label(run, bold)} betas: voxels"


def _check_choice(value: object, allowed: Sequence[object], option: str) -> None:
    if value not in allowed:
        raise UsageError(f"{option}={value!r}: not supported; use one of {list(allowed)}")


def estimate_single_trial_betas(
    bold_img: PathOrImage,
    events_df: PathOrFrame,
    confounds_df: PathOrFrame | None,
    mask_img: PathOrImage,
    *,
    method: str = "lss",
    hrf_model: str = "glover",
    drift_model: str | None = "cosine",
    high_pass: float = 1 / 128,
    drift_order: int = 1,
    confounds: str | Sequence[str] | None = "motion+derivatives",
    noise_model: str = "ols",
    t_r: float | None = None,
    slice_time_ref: float = 0.0,
    signal_scaling: bool = True,
    lss_others: str = "all",
    ar_bins: int = 100,
    run: int | str | None = None,
    progress: bool = False,
) -> tuple[nib.Nifti1Image, pd.DataFrame]:
    """Estimate one response amplitude per trial and voxel of a BOLD run.

    Parameters
    ----------
    bold_img : path or nibabel image
        Preprocessed 4D BOLD run (e.g. fMRIPrep ``*_desc-preproc_bold.nii.gz``).
    events_df : path or pandas.DataFrame
        Events with ``onset``, ``duration`` and ``stim_file``; each row with a ``stim_file`` is one
        trial. Rows without one are nuisance events (one regressor per ``trial_type``).
    confounds_df : path, pandas.DataFrame or None
        The run's confounds table (fMRIPrep ``*_desc-confounds_timeseries.tsv``).
    mask_img : path or nibabel image
        Brain mask. On another grid it is resampled (nearest neighbour) to the BOLD grid when both
        affines are set and it covers the BOLD field of view.
    method : {"lss", "lsa"}
        Least-squares-separate (one model per trial) or least-squares-all (one model).
    hrf_model : str
        One of :data:`HRF_MODELS` (nilearn's names); betas are those of the main (canonical) regressor.
    drift_model : {"cosine", "polynomial", None}
        Low-frequency drift regressors; a constant is always included.
    high_pass : float
        Cut-off (Hz) of the cosine drift basis.
    drift_order : int
        Order of the polynomial drift.
    confounds : str, list of str or None
        Confound selection, see :func:`select_confounds`.
    noise_model : {"ols", "ar1"}
        Ordinary least squares, or AR(1) prewhitening as nilearn's ``FirstLevelModel``.
    t_r : float, optional
        Repetition time (s); read from the header when not given.
    slice_time_ref : float
        Time of the reference slice as a fraction of the TR (0 = start of the volume).
    signal_scaling : bool
        Express the data in percent of each voxel's mean first (nilearn's default), so betas are in
        percent signal change.
    lss_others : {"all", "trial_type"}
        LSS nuisance of other trials: one sum of all other trials, or one sum per ``trial_type``.
    ar_bins : int
        AR(1) coefficients are truncated to multiples of ``1 / ar_bins`` (nilearn's ``bins``).
    run : int or str, optional
        Run label for the trials table (default: the ``run-`` entity of the BOLD file name, else 1).
    progress : bool
        Show a tqdm bar over the voxel chunks of the fit (``"sub-01 run-1 betas: voxels"``); the
        workflows set it on a terminal only. The betas do not depend on it.

    Returns
    -------
    betas_img : nibabel.Nifti1Image
        4D float32, one volume per trial, on the BOLD grid; zero outside the mask and in dropped
        voxels.
    trials_df : pandas.DataFrame
        One row per volume: ``run``, ``trial`` (0-based, events order), ``onset``, ``duration``,
        ``stim_file``, ``stim_id`` (file name stem) and ``trial_type`` when present.
        ``attrs`` holds ``n_voxels`` and ``n_dropped_voxels``.

    Raises
    ------
    UsageError
        Unknown option values.
    MissingInputError
        An input file is absent.
    DataError
        Bad events (columns, trials outside the run), 3D BOLD, missing TR, mask on an incompatible
        grid, empty mask, fewer volumes than regressors, confound problems.

    Warns
    -----
    UserWarning
        When mask voxels are NaN or constant over time (dropped, betas 0) or the mask is resampled.
    """
    _check_options(
        method, hrf_model, drift_model, noise_model, lss_others, high_pass, slice_time_ref, ar_bins
    )
    bold_name = source_name(bold_img, "<in-memory BOLD image>")
    mask_name = source_name(mask_img, "<in-memory mask image>")
    bold = load_image(bold_img, "BOLD run")
    mask_src = load_image(mask_img, "brain mask")
    n_vols = _n_volumes(bold, bold_name)
    tr = repetition_time(bold, t_r, bold_name)
    events = load_events(events_df)
    conf = select_confounds(confounds_df, confounds, n_volumes=n_vols)

    trial_rows = is_trial(events["stim_file"])
    trials, onsets, durations = _trials(events, trial_rows, n_vols, tr, lss_others)
    start = slice_time_ref * tr
    frame_times = np.linspace(start, (n_vols - 1 + slice_time_ref) * tr, n_vols)
    nuisance = nuisance_design(
        frame_times,
        conf,
        _nuisance_events(events, trial_rows),
        hrf_model,
        drift_model,
        high_pass,
        drift_order,
    )
    own, raw = trial_regressors(onsets, durations, frame_times, hrf_model)
    _check_model_size(method, lss_others, trials, own, nuisance, n_vols, bold_name)

    mask = mask_on_bold_grid(mask_src, bold, mask_name, bold_name)
    if not mask.any():
        raise DataError(f"{mask_name}: brain mask is empty; give a mask covering the brain")
    y, bad = _voxel_timeseries(bold, mask, bold_name)
    mean = y.mean(axis=1, dtype=np.float64)
    n_fits = (
        1 if method == "lsa" or lss_others == "all" else trials["trial_type"].astype(str).nunique()
    )
    with progress_bar(n_fits * y.shape[0], _bar_desc(run, bold_img), progress, "voxel") as bar:
        betas = _fit_trials(
            own, raw, nuisance, trials, y, mean, method, lss_others, noise_model, int(ar_bins), bar
        )
    if signal_scaling:
        betas = _percent_of_mean(betas, mean, bold_name)

    betas_img = _betas_volume(betas, mask, bad, bold)
    table = _trials_table(trials, onsets, durations, _run_label(run, bold_img))
    table.attrs.update({"n_voxels": int(mask.sum()), "n_dropped_voxels": int(bad.sum())})
    return betas_img, table


def _check_options(
    method: str,
    hrf_model: str,
    drift_model: str | None,
    noise_model: str,
    lss_others: str,
    high_pass: float,
    slice_time_ref: float,
    ar_bins: int,
) -> None:
    """Option values, before any file is read."""
    _check_choice(method, _METHODS, "method")
    _check_choice(hrf_model, HRF_MODELS, "hrf_model")
    _check_choice(drift_model, _DRIFT_MODELS, "drift_model")
    _check_choice(noise_model, _NOISE_MODELS, "noise_model")
    _check_choice(lss_others, _LSS_OTHERS, "lss_others")
    if drift_model == "cosine" and not high_pass > 0:
        raise UsageError(f"high_pass={high_pass}: the cosine drift cut-off must be > 0 Hz")
    if not 0 <= slice_time_ref <= 1:
        raise UsageError(f"slice_time_ref={slice_time_ref}: must lie in [0, 1]")
    if int(ar_bins) < 1:
        raise UsageError(f"ar_bins={ar_bins}: must be a positive integer")


def _n_volumes(bold: nib.spatialimages.SpatialImage, bold_name: str) -> int:
    """Volumes of a 4D run (at least 3)."""
    if len(bold.shape) != 4:
        raise DataError(
            f"{bold_name}: BOLD run must be 4D (x, y, z, time), got shape {bold.shape}; "
            "give the preprocessed time series"
        )
    n_vols = bold.shape[3]
    if n_vols < 3:
        raise DataError(f"{bold_name}: only {n_vols} volume(s); a GLM needs the whole run")
    return n_vols


def _trials(
    events: pd.DataFrame, trial_rows: np.ndarray, n_vols: int, tr: float, lss_others: str
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The trial rows of the events with their onsets and durations, checked against the run."""
    events_name = events.attrs["source"]
    trials = events[trial_rows].reset_index(drop=True)
    onsets = trials["onset"].to_numpy(float)
    durations = trials["duration"].to_numpy(float)
    run_end = n_vols * tr
    late = np.flatnonzero(onsets + durations > run_end + 1e-6)
    if late.size:
        raise DataError(
            f"{events_name}: trial(s) {late.tolist()[:5]} end after the last volume "
            f"({run_end:g} s = {n_vols} volumes x TR {tr:g} s); use the events file of this run "
            "or check the TR"
        )
    if lss_others == "trial_type" and "trial_type" not in trials.columns:
        raise DataError(
            f"{events_name}: lss_others='trial_type' needs a trial_type column; add it or use 'all'"
        )
    return trials, onsets, durations


def _nuisance_events(events: pd.DataFrame, trial_rows: np.ndarray) -> pd.DataFrame | None:
    """Events without a stimulus, one ``nuisance_<trial_type>`` condition each (None if none)."""
    other_events = None
    if (~trial_rows).any():
        other = events[~trial_rows]
        kinds = other["trial_type"] if "trial_type" in other.columns else "other_events"
        other_events = pd.DataFrame(
            {
                "onset": other["onset"].to_numpy(float),
                "duration": other["duration"].to_numpy(float),
                "trial_type": pd.Series(kinds, index=other.index).fillna("other").astype(str),
            }
        )
        other_events["trial_type"] = "nuisance_" + other_events["trial_type"]
    return other_events


def _check_model_size(
    method: str,
    lss_others: str,
    trials: pd.DataFrame,
    own: np.ndarray,
    nuisance: np.ndarray,
    n_vols: int,
    bold_name: str,
) -> None:
    """Fewer regressors than volumes in the largest model fitted."""
    m = own.shape[2]
    n_trials = own.shape[0]
    if method == "lss":
        n_extra = 0
        if lss_others == "trial_type":
            n_extra = m * (trials["trial_type"].astype(str).nunique() - 1)
        n_regressors = 2 * m + n_extra + nuisance.shape[1]
    else:
        n_regressors = n_trials * m + nuisance.shape[1]
    if n_vols <= n_regressors:
        raise DataError(
            f"{bold_name}: {n_vols} volumes but the {method.upper()} model has {n_regressors} "
            "regressors; use fewer confounds, a lower high_pass, or LSS"
        )


def _voxel_timeseries(
    bold: nib.spatialimages.SpatialImage, mask: np.ndarray, bold_name: str
) -> tuple[np.ndarray, np.ndarray]:
    """Kept voxels × volumes, and which mask voxels were dropped (NaN or constant over time)."""
    y = masked_timeseries(bold, mask)  # voxels × volumes
    finite = np.isfinite(y).all(axis=1)
    bad = ~finite | (np.ptp(np.where(finite[:, None], y, 0), axis=1) == 0)
    n_bad = int(bad.sum())
    if n_bad == y.shape[0]:
        raise DataError(
            f"{bold_name}: every voxel in the mask is NaN or constant over time; check the run"
        )
    if n_bad:
        warnings.warn(
            f"{bold_name}: {n_bad} of {y.shape[0]} mask voxels are NaN or constant over time; "
            "dropped (their betas are 0)",
            UserWarning,
            stacklevel=3,
        )
        y = y[~bad]
    return y, bad


def _fit_trials(
    own: np.ndarray,
    raw: np.ndarray,
    nuisance: np.ndarray,
    trials: pd.DataFrame,
    y: np.ndarray,
    mean: np.ndarray,
    method: str,
    lss_others: str,
    noise_model: str,
    bins: int,
    bar: Any = None,
) -> np.ndarray:
    """Betas (trials × voxels) of the model chosen: LSA, LSS, or LSS with a sum per trial type
    (``bar``, a progress bar, advances by the voxels of each chunk of each fit)."""
    n_trials = own.shape[0]
    if method == "lsa":
        return fit_betas(LsaModel(own, nuisance), y, mean, n_trials, noise_model, bins, bar)
    if lss_others == "all":
        return fit_betas(LssModel(own, raw, nuisance), y, mean, n_trials, noise_model, bins, bar)
    betas = np.empty((n_trials, y.shape[0]))
    kinds = trials["trial_type"].astype(str).to_numpy()
    sums = {k: raw[kinds == k].sum(axis=0) for k in np.unique(kinds)}
    for kind in sums:
        sel = kinds == kind
        others = [s for k, s in sums.items() if k != kind]
        nuis = np.concatenate([nuisance, *others], axis=1) if others else nuisance
        model = LssModel(own[sel], raw[sel], nuis)
        betas[sel] = fit_betas(model, y, mean, int(sel.sum()), noise_model, bins, bar)
    return betas


def _percent_of_mean(betas: np.ndarray, mean: np.ndarray, bold_name: str) -> np.ndarray:
    """Betas in percent of the voxel mean (nilearn's mean_scaling); with a constant in every model
    this only rescales each voxel's betas."""
    if (mean <= 0).any():
        warnings.warn(
            f"{bold_name}: voxel means <= 0 (centred data?); percent scaling uses max(mean, 1)",
            UserWarning,
            stacklevel=3,
        )
    betas *= 100.0 / np.maximum(mean, 1.0)
    return betas


def _betas_volume(
    betas: np.ndarray, mask: np.ndarray, bad: np.ndarray, bold: nib.spatialimages.SpatialImage
) -> nib.Nifti1Image:
    """The 4D float32 betas image on the BOLD grid, zero outside the mask and in dropped voxels."""
    n_trials = betas.shape[0]
    data = np.zeros((*bold.shape[:3], n_trials), dtype=np.float32)
    keep = np.flatnonzero(mask.ravel())[~bad]
    flat = data.reshape(-1, n_trials)
    flat[keep] = betas.T.astype(np.float32)
    return betas_image(data, bold)


def _trials_table(
    trials: pd.DataFrame, onsets: np.ndarray, durations: np.ndarray, run: int | str
) -> pd.DataFrame:
    """One row per betas volume: run, trial, onset, duration, stim_file, stim_id (, trial_type)."""
    stim_files = trials["stim_file"].astype(str)
    table = pd.DataFrame(
        {
            "run": run,
            "trial": np.arange(onsets.size),
            "onset": onsets,
            "duration": durations,
            "stim_file": stim_files,
            "stim_id": [stim_id(s) for s in stim_files],
        }
    )
    if "trial_type" in trials.columns:
        table["trial_type"] = trials["trial_type"].to_numpy()
    return table
