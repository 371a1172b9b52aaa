"""Design columns in nilearn's conventions: HRF kernels, the per-trial regressors (all trials at
once) and the nuisance design (confounds, nuisance events, drifts, constant)."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pandas as pd

#: HRF models accepted (nilearn's names).
HRF_MODELS = (
    "glover",
    "glover + derivative",
    "glover + derivative + dispersion",
    "spm",
    "spm + derivative",
    "spm + derivative + dispersion",
)

# nilearn's sampling of event regressors (make_first_level_design_matrix defaults).
_OVERSAMPLING = 50
_MIN_ONSET = -24.0


def _hrf_kernels(hrf_model: str, t_r: float) -> list[np.ndarray]:
    from nilearn.glm.first_level import hemodynamic_models as hm

    base = "glover" if hrf_model.startswith("glover") else "spm"
    kernels = [getattr(hm, f"{base}_hrf")(t_r, _OVERSAMPLING)]
    if "derivative" in hrf_model:
        kernels.append(getattr(hm, f"{base}_time_derivative")(t_r, _OVERSAMPLING))
    if "dispersion" in hrf_model:
        kernels.append(getattr(hm, f"{base}_dispersion_derivative")(t_r, _OVERSAMPLING))
    return kernels


def _raw_regressors_fast(
    onsets: np.ndarray, durations: np.ndarray, frame_times: np.ndarray, kernels: list[np.ndarray]
) -> np.ndarray:
    """Unorthogonalised regressors (trials × scans × kernels) on nilearn's high-resolution grid.

    A boxcar convolved with a kernel is a difference of the kernel's cumulative sums, so no
    convolution is needed; the result is then linearly interpolated at the frame times.
    """
    n = frame_times.size
    lo_t, hi_t = float(frame_times.min()), float(frame_times.max())
    n_hr = (n - 1) / (hi_t - lo_t) * (hi_t * (1 + 1 / (n - 1)) - lo_t - _MIN_ONSET) * _OVERSAMPLING
    grid = np.linspace(lo_t + _MIN_ONSET, hi_t * (1 + 1 / (n - 1)), int(np.rint(n_hr + 1)))
    size = grid.size
    t_on = np.minimum(np.searchsorted(grid, onsets), size - 1)
    t_off = np.minimum(np.searchsorted(grid, onsets + durations), size - 1)
    t_off = np.where((t_off < size - 1) & (t_off == t_on), t_off + 1, t_off)
    # Linear interpolation at frame times (as scipy's interp1d does).
    hi_idx = np.clip(np.searchsorted(grid, frame_times), 1, size - 1)
    lo_idx = hi_idx - 1
    frac = (frame_times - grid[lo_idx]) / (grid[hi_idx] - grid[lo_idx])
    out = np.empty((onsets.size, n, len(kernels)))
    for k, kernel in enumerate(kernels):
        csum = np.concatenate([[0.0], np.cumsum(kernel)])  # csum[i + 1] = sum(kernel[:i + 1])

        def conv(idx: np.ndarray, csum: np.ndarray = csum) -> np.ndarray:
            lag_on = idx[None, :] - t_on[:, None]
            lag_off = idx[None, :] - t_off[:, None]
            return (
                csum[np.clip(lag_on, -1, csum.size - 2) + 1]
                - csum[np.clip(lag_off, -1, csum.size - 2) + 1]
            )

        y_lo, y_hi = conv(lo_idx), conv(hi_idx)
        out[:, :, k] = (y_hi - y_lo) * frac[None, :] + y_lo
    return out


def _orthogonalize(raw: np.ndarray) -> np.ndarray:
    """Each column minus its projection on the preceding ones, per trial (nilearn's rule)."""
    own = raw.copy()
    for k in range(1, raw.shape[2]):
        prev = own[:, :, :k]
        coef = np.linalg.pinv(prev) @ raw[:, :, k, None]
        own[:, :, k] = raw[:, :, k] - (prev @ coef)[:, :, 0]
    return own


@functools.lru_cache(maxsize=64)
def _fast_path_matches(hrf_model: str, n: int, start: float, t_r: float) -> bool:
    """Whether our sampling equals nilearn's compute_regressor on probe events (per grid)."""
    from nilearn.glm.first_level import compute_regressor

    frame_times = np.linspace(start, start + (n - 1) * t_r, n)
    onsets = np.array([0.0, frame_times[n // 3] + 0.37 * t_r, frame_times[-1] - 0.6 * t_r])
    durations = np.array([0.0, 1.3 * t_r, 0.5 * t_r])
    raw = _raw_regressors_fast(onsets, durations, frame_times, _hrf_kernels(hrf_model, t_r))
    own = _orthogonalize(raw)
    for j in range(onsets.size):
        ref, _ = compute_regressor(
            np.array([[onsets[j]], [durations[j]], [1.0]]), hrf_model, frame_times
        )
        if np.abs(ref - own[j]).max() > 1e-8 * max(np.abs(ref).max(), 1e-12):
            return False
    return True


def trial_regressors(
    onsets: np.ndarray, durations: np.ndarray, frame_times: np.ndarray, hrf_model: str
) -> tuple[np.ndarray, np.ndarray]:
    """Per-trial regressors: (own, raw), each trials × scans × basis functions.

    ``own`` are the columns nilearn puts in a design for the trial (derivatives orthogonalised on
    the main regressor); ``raw`` are the unorthogonalised ones, whose sums span the "other trials"
    columns of LSS.
    """
    from nilearn.glm.first_level import compute_regressor

    t_r = float(np.min(np.diff(frame_times)))
    kernels = _hrf_kernels(hrf_model, t_r)
    raw = _raw_regressors_fast(onsets, durations, frame_times, kernels)
    own = _orthogonalize(raw)
    if _fast_path_matches(hrf_model, frame_times.size, float(frame_times[0]), t_r):
        return own, raw
    raw = np.empty_like(raw)
    for k, kernel in enumerate(kernels):

        def hrf(t_r: float, oversampling: int = _OVERSAMPLING, kernel: np.ndarray = kernel):
            return kernel

        for j in range(onsets.size):
            cond = np.array([[onsets[j]], [durations[j]], [1.0]])
            raw[j, :, k] = compute_regressor(cond, hrf, frame_times)[0][:, 0]
    return _orthogonalize(raw), raw


def nuisance_design(
    frame_times: np.ndarray,
    confounds: pd.DataFrame,
    other_events: pd.DataFrame | None,
    hrf_model: str,
    drift_model: str | None,
    high_pass: float,
    drift_order: int,
) -> np.ndarray:
    """Nuisance columns (scans × regressors): nuisance events, drifts, confounds, constant."""
    from nilearn.glm.first_level import make_first_level_design_matrix

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        design = make_first_level_design_matrix(
            frame_times,
            other_events,
            hrf_model=hrf_model,
            drift_model=drift_model,
            high_pass=high_pass,
            drift_order=drift_order,
            add_regs=confounds.to_numpy(float) if confounds.shape[1] else None,
            add_reg_names=[f"confound_{c}" for c in confounds.columns]
            if confounds.shape[1]
            else None,
        )
    return design.to_numpy(float)
