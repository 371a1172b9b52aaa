"""Single-trial response amplitudes ("betas") from a preprocessed BOLD run.

Two estimators (Mumford et al. 2012):

* least-squares-separate (LSS, default): one model per trial holding that trial's regressor, the sum of
  all other trials (or one sum per condition), the nuisance regressors (confounds, drifts, constant);
* least-squares-all (LSA): one model holding every trial's regressor and the nuisance regressors.

Regressors come from nilearn's HRF kernels and design-matrix conventions (same high-resolution grid,
orthogonalised derivatives, cosine/polynomial drifts), so the betas equal those of nilearn's
``FirstLevelModel`` fitted once per trial. The fits are vectorised: the nuisance space is projected out
once, then every trial of LSS is a small (2 regressors, or 4/6 with HRF derivatives) problem solved in
closed form for all voxels at once. With ``noise_model="ar1"`` the voxelwise AR(1) coefficient is
estimated from each model's OLS residuals (in closed form for all trials), truncated to 1/``ar_bins``
steps as nilearn does, and the model refitted on prewhitened data once per distinct coefficient.

Precomputed single-trial betas (e.g. NSD's GLMsingle betas) enter through
:func:`load_precomputed_betas`.
"""

from __future__ import annotations

import functools
import io
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import nibabel as nib
import numpy as np
import pandas as pd

from ..errors import DataError, MissingInputError, UsageError
from ..io import atomic_write_text, atomic_write_with, removed_on_failure

__all__ = [
    "CONFOUND_PRESETS",
    "HRF_MODELS",
    "combine_runs",
    "estimate_single_trial_betas",
    "load_events",
    "load_precomputed_betas",
    "save_betas",
    "select_confounds",
]

PathOrImage = str | os.PathLike | nib.spatialimages.SpatialImage
PathOrFrame = str | os.PathLike | pd.DataFrame

_MOTION = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]

#: Named confound selections (fMRIPrep column names).
CONFOUND_PRESETS: dict[str, list[str]] = {
    "none": [],
    "motion": list(_MOTION),
    "motion+derivatives": _MOTION + [f"{c}_derivative1" for c in _MOTION],
    "24p": _MOTION
    + [f"{c}_derivative1" for c in _MOTION]
    + [f"{c}_power2" for c in _MOTION]
    + [f"{c}_derivative1_power2" for c in _MOTION],
}

#: HRF models accepted (nilearn's names).
HRF_MODELS = (
    "glover",
    "glover + derivative",
    "glover + derivative + dispersion",
    "spm",
    "spm + derivative",
    "spm + derivative + dispersion",
)
_DRIFT_MODELS = ("cosine", "polynomial", None)
_METHODS = ("lss", "lsa")
_NOISE_MODELS = ("ols", "ar1")
_LSS_OTHERS = ("all", "trial_type")

# nilearn's sampling of event regressors (make_first_level_design_matrix defaults).
_OVERSAMPLING = 50
_MIN_ONSET = -24.0
# Work arrays per voxel chunk stay near this many float64 values.
_CHUNK_ELEMENTS = 4_000_000


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------
def _name(obj: object, default: str) -> str:
    if isinstance(obj, str | os.PathLike):
        return str(obj)
    if isinstance(obj, nib.spatialimages.SpatialImage):
        return obj.get_filename() or default
    if isinstance(obj, pd.DataFrame):
        return str(obj.attrs.get("source", default))
    return default


def _load_img(img: PathOrImage, what: str) -> nib.spatialimages.SpatialImage:
    if isinstance(img, nib.spatialimages.SpatialImage):
        return img
    path = Path(img)
    if not path.is_file():
        raise MissingInputError(f"{path}: {what} not found; check the path")
    try:
        return nib.load(path)
    except Exception as exc:  # nibabel raises many types for a broken file
        raise DataError(f"{path}: cannot read {what} as NIfTI ({exc}); replace the file") from exc


def _read_table(table: PathOrFrame, what: str) -> tuple[pd.DataFrame, str]:
    if isinstance(table, pd.DataFrame):
        return table.copy(), _name(table, f"<{what} DataFrame>")
    path = Path(table)
    if not path.is_file():
        raise MissingInputError(f"{path}: {what} not found; check the path")
    try:
        df = pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=True)
    except Exception as exc:
        raise DataError(
            f"{path}: cannot read {what} as a TSV file ({exc}); fix its format"
        ) from exc
    df.attrs["source"] = str(path)
    return df, str(path)


def _is_trial(stim_file: pd.Series) -> np.ndarray:
    """Rows naming a stimulus (not empty, not BIDS ``n/a``)."""
    text = stim_file.astype(str).str.strip()
    return (stim_file.notna() & (text != "") & (text != "n/a")).to_numpy()


def load_events(events: PathOrFrame) -> pd.DataFrame:
    """Read and check an events table (BIDS ``*_events.tsv`` or a DataFrame).

    Parameters
    ----------
    events : path or pandas.DataFrame
        Needs ``onset``, ``duration`` (seconds) and ``stim_file`` columns. Rows whose ``stim_file``
        is empty (``n/a``) are not trials; they are modelled as nuisance events grouped by
        ``trial_type``.

    Returns
    -------
    pandas.DataFrame
        The table with numeric ``onset``/``duration`` and ``attrs["source"]`` naming its origin.

    Raises
    ------
    DataError
        Missing columns, non-numeric or missing onsets/durations, negative values, no trial.
    """
    df, name = _read_table(events, "events table")
    missing = [c for c in ("onset", "duration", "stim_file") if c not in df.columns]
    if missing:
        raise DataError(
            f"{name}: events table lacks column(s) {missing}; "
            "it needs onset, duration and stim_file (path of the image shown)"
        )
    for col in ("onset", "duration"):
        values = pd.to_numeric(df[col], errors="coerce")
        bad = np.flatnonzero(values.isna().to_numpy())
        if bad.size:
            raise DataError(
                f"{name}: {col} missing or not a number in row(s) {(bad + 1).tolist()[:5]}; "
                "give every event a numeric onset and duration in seconds"
            )
        df[col] = values.astype(float)
    if (df["onset"] < 0).any():
        rows = (np.flatnonzero(df["onset"].to_numpy() < 0) + 1).tolist()[:5]
        raise DataError(
            f"{name}: negative onset in row(s) {rows}; onsets are seconds from the first volume"
        )
    if (df["duration"] < 0).any():
        rows = (np.flatnonzero(df["duration"].to_numpy() < 0) + 1).tolist()[:5]
        raise DataError(f"{name}: negative duration in row(s) {rows}; fix the events table")
    if not _is_trial(df["stim_file"]).any():
        raise DataError(f"{name}: no event has a stim_file; nothing to estimate betas for")
    df.attrs["source"] = name
    return df.reset_index(drop=True)


def select_confounds(
    confounds_df: PathOrFrame | None,
    confounds: str | Sequence[str] | None = "motion+derivatives",
    *,
    n_volumes: int | None = None,
) -> pd.DataFrame:
    """Pick the confound regressors of a run (fMRIPrep ``*_desc-confounds_timeseries.tsv``).

    Parameters
    ----------
    confounds_df : path, pandas.DataFrame or None
        The confounds table, one row per volume.
    confounds : str, list of str or None
        A preset of :data:`CONFOUND_PRESETS` (``"motion+derivatives"``: the 6 motion parameters and
        their first derivatives; ``"motion"``; ``"24p"``; ``"none"``) or a list of column names.
        ``None`` means no confounds. A ``<name>_derivative1`` column absent from the table is computed
        as the backward difference of ``<name>`` (first row 0), as fMRIPrep does.
    n_volumes : int, optional
        Expected number of rows.

    Returns
    -------
    pandas.DataFrame
        The selected columns, float64, NaNs of the first row (derivatives) set to 0.

    Raises
    ------
    UsageError
        Unknown preset, or a selection given without a table.
    DataError
        Missing columns, wrong row count, NaNs past the first row, non-numeric values.

    Examples
    --------
    >>> import pandas as pd
    >>> tab = pd.DataFrame({"trans_x": [0.0, 0.5, 0.25], "csf": [1.0, 2.0, 3.0]})
    >>> select_confounds(tab, ["trans_x", "trans_x_derivative1"])["trans_x_derivative1"].tolist()
    [0.0, 0.5, -0.25]
    """
    if confounds is None:
        columns: list[str] = []
    elif isinstance(confounds, str):
        if confounds not in CONFOUND_PRESETS:
            raise UsageError(
                f"confounds={confounds!r}: unknown preset; use one of {sorted(CONFOUND_PRESETS)} "
                "or a list of column names"
            )
        columns = list(CONFOUND_PRESETS[confounds])
    else:
        columns = [str(c) for c in confounds]
    if not columns:
        return pd.DataFrame(index=pd.RangeIndex(n_volumes or 0))
    if confounds_df is None:
        raise UsageError(
            f"confounds={confounds!r} asks for {len(columns)} confound column(s) but no confounds "
            "table was given; pass the run's confounds TSV or confounds=None"
        )
    table, name = _read_table(confounds_df, "confounds table")
    out = {}
    for col in columns:
        if col in table.columns:
            coerced = pd.to_numeric(table[col], errors="coerce")
            if (coerced.isna() & table[col].notna()).any():
                raise DataError(f"{name}: column {col} holds non-numeric values; fix the table")
            values = coerced.to_numpy(float)
        elif col.endswith("_derivative1") and col[: -len("_derivative1")] in table.columns:
            base = pd.to_numeric(table[col[: -len("_derivative1")]], errors="coerce").to_numpy(
                float
            )
            values = np.concatenate([[np.nan], np.diff(base)])
        else:
            raise DataError(
                f"{name}: confound column {col!r} not found; "
                "choose columns present in the table (confounds=[...]) or another preset"
            )
        if np.isnan(values[0]):
            values = values.copy()
            values[0] = 0.0  # fMRIPrep leaves derivatives undefined at the first volume
        if np.isnan(values).any():
            rows = (np.flatnonzero(np.isnan(values)) + 1).tolist()[:5]
            raise DataError(
                f"{name}: confound {col} has missing values in row(s) {rows}; "
                "fill them or drop the column from the selection"
            )
        out[col] = values
    selected = pd.DataFrame(out)
    if n_volumes is not None and len(selected) != n_volumes:
        raise DataError(
            f"{name}: {len(selected)} rows but the BOLD run has {n_volumes} volumes; "
            "use the confounds file of the same run"
        )
    return selected


def _repetition_time(img: nib.spatialimages.SpatialImage, t_r: float | None, name: str) -> float:
    if t_r is not None:
        if not np.isfinite(t_r) or t_r <= 0:
            raise UsageError(f"t_r={t_r}: the repetition time must be a positive number of seconds")
        return float(t_r)
    zooms = img.header.get_zooms()
    unit = img.header.get_xyzt_units()[1] if hasattr(img.header, "get_xyzt_units") else "unknown"
    scale = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}.get(unit)
    value = float(zooms[3]) if len(zooms) > 3 else 0.0
    if scale is None or value <= 0:
        raise DataError(
            f"{name}: repetition time missing from the header (pixdim[4]={value}, time unit "
            f"{unit!r}); pass t_r (RepetitionTime of the BOLD sidecar)"
        )
    return value * scale


def _affine_known(img: nib.spatialimages.SpatialImage) -> bool:
    header = img.header
    if isinstance(header, nib.Nifti1Header):
        return int(header["sform_code"]) > 0 or int(header["qform_code"]) > 0
    return True


def _mask_on_bold_grid(
    mask: nib.spatialimages.SpatialImage,
    bold: nib.spatialimages.SpatialImage,
    mask_name: str,
    bold_name: str,
) -> np.ndarray:
    """Boolean mask on the BOLD grid; nearest-neighbour resampled if it is on another grid."""
    data = np.asanyarray(mask.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataError(f"{mask_name}: brain mask must be 3D, got shape {data.shape}")
    data = np.nan_to_num(np.asarray(data, dtype=float)) > 0
    shape = bold.shape[:3]
    if data.shape == shape and np.allclose(mask.affine, bold.affine, atol=1e-4):
        return data
    if not (_affine_known(mask) and _affine_known(bold)):
        raise DataError(
            f"{mask_name}: brain mask grid differs from {bold_name} and an affine is unset "
            "(sform/qform code 0); give the mask on the BOLD grid"
        )
    # BOLD voxel centres in mask voxel coordinates, nearest neighbour.
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).reshape(-1, 3)
    to_mask = np.linalg.inv(mask.affine) @ bold.affine
    coords = ijk @ to_mask[:3, :3].T + to_mask[:3, 3]
    idx = np.rint(coords).astype(int)
    inside = np.all((idx >= 0) & (idx < np.array(data.shape)), axis=1)
    if not inside.all():
        raise DataError(
            f"{mask_name}: brain mask grid differs from {bold_name} and does not cover its field "
            "of view; give a mask in the same space as the BOLD run"
        )
    warnings.warn(
        f"{mask_name}: brain mask resampled (nearest neighbour) to the grid of {bold_name}",
        UserWarning,
        stacklevel=3,
    )
    return data[idx[:, 0], idx[:, 1], idx[:, 2]].reshape(shape)


def _masked_timeseries(bold: nib.spatialimages.SpatialImage, mask: np.ndarray) -> np.ndarray:
    """Voxels × volumes matrix (float32, float64 for float64 input), read in blocks of volumes."""
    dtype = np.float64 if bold.get_data_dtype() == np.float64 else np.float32
    dataobj = bold.dataobj
    if isinstance(dataobj, np.ndarray):
        return np.ascontiguousarray(dataobj[mask], dtype=dtype)
    n_vols = bold.shape[3]
    out = np.empty((int(mask.sum()), n_vols), dtype=dtype)
    block = max(1, int(2e7 // max(1, int(np.prod(bold.shape[:3])))))
    for start in range(0, n_vols, block):
        stop = min(n_vols, start + block)
        out[:, start:stop] = np.asarray(dataobj[..., start:stop], dtype=dtype)[mask]
    return out


def _run_label(run: int | str | None, bold: PathOrImage) -> int | str:
    if run is not None:
        return run
    match = re.search(r"_run-([a-zA-Z0-9]+)", Path(_name(bold, "")).name)
    if match:
        label = match.group(1)
        return int(label) if label.isdigit() else label
    return 1


# --------------------------------------------------------------------------------------------------
# Regressors (nilearn's conventions, computed for all trials at once)
# --------------------------------------------------------------------------------------------------
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


def _trial_regressors(
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


def _nuisance_design(
    frame_times: np.ndarray,
    confounds: pd.DataFrame,
    other_events: pd.DataFrame | None,
    hrf_model: str,
    drift_model: str | None,
    high_pass: float,
    drift_order: int,
) -> np.ndarray:
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


# --------------------------------------------------------------------------------------------------
# Fits
# --------------------------------------------------------------------------------------------------
def _orth_basis(x: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the column space of ``x`` (rank-revealing, like a pseudo-inverse)."""
    if x.shape[1] == 0:
        return x
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    keep = s > s.max() * max(x.shape) * np.finfo(float).eps
    return u[:, keep]


def _project_out(q: np.ndarray, x: np.ndarray) -> np.ndarray:
    return x - q @ (q.T @ x)


def _whiten(x: np.ndarray, rho: float) -> np.ndarray:
    """AR(1) prewhitening as nilearn's ARModel (time on axis 0): x[t] - rho * x[t-1], x[0] kept."""
    out = x.copy()
    out[1:] -= rho * x[:-1]
    return out


def _whiten_rows_transposed(f: np.ndarray, rho: float) -> np.ndarray:
    """Rows of ``f @ W`` for the whitening matrix W (time on axis 1), so that f W y = (f W) y."""
    out = f.copy()
    out[:, :-1] -= rho * f[:, 1:]
    return out


def _lag_sum(x: np.ndarray) -> np.ndarray:
    """x[t] + x[t-1] neighbours along time (axis 0): the operator of sum_t a_t b_{t+1} + a_{t+1} b_t."""
    out = np.zeros_like(x)
    out[:-1] += x[1:]
    out[1:] += x[:-1]
    return out


def _ar1_from_sums(sse: np.ndarray, lag: np.ndarray, n: int) -> np.ndarray:
    """Yule-Walker AR(1) coefficient from residual sums (nilearn's normalisation)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = (lag / (n - 1)) / (sse / n)
    return np.where(sse > 0, rho, 0.0)


class _Model:
    """Voxel-independent part of a single-trial fit: betas = data (voxels × scans) @ filter.T."""

    def filter(self, rho: float) -> np.ndarray:  # trials × scans
        raise NotImplementedError

    def ar1(self, yt: np.ndarray) -> np.ndarray:  # trials × voxels (or 1 × voxels)
        raise NotImplementedError


class _LssModel(_Model):
    """LSS for trials sharing one nuisance space, all trials solved together.

    After the nuisance space is projected out, trial j's model holds 2m columns (its own m basis
    regressors and the sum of the other trials' ones); its main beta is a fixed linear filter of the
    data, so all trials' betas are one matrix product.
    """

    def __init__(self, own: np.ndarray, raw: np.ndarray, nuisance: np.ndarray):
        n_trials, n, m = own.shape
        # Column bank: own columns of every trial, then raw derivative columns (raw main == own).
        bank = [own.transpose(1, 0, 2).reshape(n, n_trials * m)]
        self.own_idx = np.arange(n_trials * m).reshape(n_trials, m)
        self.raw_idx = self.own_idx.copy()
        if m > 1:
            bank.append(raw[:, :, 1:].transpose(1, 0, 2).reshape(n, n_trials * (m - 1)))
            extra = np.arange(n_trials * (m - 1)).reshape(n_trials, m - 1)
            self.raw_idx[:, 1:] = n_trials * m + extra
        self.bank = np.concatenate(bank, axis=1)
        self.nuisance = nuisance
        self._filters: dict[float, np.ndarray] = {}
        self.q, self.proj, self.design, self.gram_inv = self._solve(0.0)
        self._ar = None

    def combine(self, bank_values: np.ndarray) -> np.ndarray:
        """Per-trial rows [own columns, sum of others' raw columns] from rows of bank columns."""
        own = bank_values[self.own_idx]
        raw = bank_values[self.raw_idx]
        return np.concatenate([own, raw.sum(axis=0, keepdims=True) - raw], axis=1)

    def _solve(self, rho: float):
        bank, nuisance = self.bank, self.nuisance
        if rho:
            bank, nuisance = _whiten(bank, rho), _whiten(nuisance, rho)
        q = _orth_basis(nuisance)
        proj = _project_out(q, bank)
        design = self.combine(proj.T)  # trials × 2m × scans
        gram_inv = np.linalg.pinv(design @ design.transpose(0, 2, 1), hermitian=True)
        return q, proj, design, gram_inv

    def filter(self, rho: float) -> np.ndarray:
        if rho not in self._filters:
            _, _, design, gram_inv = (
                self._solve(rho) if rho else (None, None, self.design, self.gram_inv)
            )
            filt = np.einsum("tp,tpn->tn", gram_inv[:, 0, :], design)
            self._filters[rho] = _whiten_rows_transposed(filt, rho) if rho else filt
        return self._filters[rho]

    def ar1(self, yt: np.ndarray) -> np.ndarray:
        """Each trial model's OLS-residual AR(1) coefficient, in closed form from data products."""
        if self._ar is None:
            q = self.q
            bank_sym = _lag_sum(self.proj)
            ops = np.concatenate([self.proj, bank_sym, q, _lag_sum(q)], axis=1)
            cross = self.design[:, :, :-1] @ self.design[:, :, 1:].transpose(0, 2, 1)
            self._ar = (ops, bank_sym.T @ q, q[:-1].T @ q[1:], cross)
        ops, sym_q, q_lag, cross = self._ar
        n = yt.shape[1]
        nb, k = self.proj.shape[1], self.q.shape[1]
        prod = (yt @ ops).T
        c = self.combine(prod[:nb])  # D^T e (the projected design is orthogonal to the nuisance)
        z = prod[2 * nb : 2 * nb + k]  # Q^T y
        gamma = np.einsum("tpq,tqv->tpv", self.gram_inv, c)
        # e = y - Q z: its sum of squares and lag-1 sum.
        ee = np.einsum("vn,vn->v", yt, yt) - (z * z).sum(0)
        lag_y = np.einsum("vn,vn->v", yt[:, :-1], yt[:, 1:])
        lag_e = lag_y - (z * prod[2 * nb + k :]).sum(0) + np.einsum("kv,kl,lv->v", z, q_lag, z)
        # r = e - D gamma.
        sym = self.combine(prod[nb : 2 * nb] - sym_q @ z)  # (D_{t+1} + D_{t-1})^T e
        sse = ee[None, :] - np.einsum("tpv,tpv->tv", gamma, c)
        lag = lag_e[None, :] - np.einsum("tpv,tpv->tv", gamma, sym)
        lag += np.einsum("tpv,tpq,tqv->tv", gamma, cross, gamma)
        return _ar1_from_sums(sse, lag, n)


class _LsaModel(_Model):
    """LSA: every trial's columns in one model with the nuisance regressors."""

    def __init__(self, own: np.ndarray, nuisance: np.ndarray):
        n_trials, n, self.m = own.shape
        self.trials_x = own.transpose(1, 0, 2).reshape(n, n_trials * self.m)
        self.nuisance = nuisance
        self.q = _orth_basis(nuisance)
        self.proj = _project_out(self.q, self.trials_x)
        self.pinv = np.linalg.pinv(self.proj)
        self._filters = {0.0: self.pinv[:: self.m]}

    def filter(self, rho: float) -> np.ndarray:
        if rho not in self._filters:
            q = _orth_basis(_whiten(self.nuisance, rho))
            pinv = np.linalg.pinv(_project_out(q, _whiten(self.trials_x, rho)))
            self._filters[rho] = _whiten_rows_transposed(pinv[:: self.m], rho)
        return self._filters[rho]

    def ar1(self, yt: np.ndarray) -> np.ndarray:
        e = yt - (yt @ self.q) @ self.q.T
        r = e - (e @ self.pinv.T) @ self.proj.T
        sse = np.einsum("vn,vn->v", r, r)
        lag = np.einsum("vn,vn->v", r[:, :-1], r[:, 1:])
        return _ar1_from_sums(sse, lag, yt.shape[1])[None, :]


def _fit(
    model: _Model,
    y: np.ndarray,
    mean: np.ndarray,
    n_trials: int,
    noise_model: str,
    bins: int,
) -> np.ndarray:
    """Betas (trials × voxels) of voxel-major data ``y`` (voxels × scans), in voxel chunks."""
    n_vox, n = y.shape
    chunk = max(256, _CHUNK_ELEMENTS // (n + 8 * n_trials))
    out = np.empty((n_trials, n_vox))
    for start in range(0, n_vox, chunk):
        sl = slice(start, min(n_vox, start + chunk))
        # Centring changes no beta (a constant is in every model) and keeps the sums accurate.
        yt = y[sl].astype(np.float64) - mean[sl, None]
        if noise_model == "ols":
            out[:, sl] = (yt @ model.filter(0.0).T).T
            continue
        # nilearn's binning: truncation towards zero to a multiple of 1 / bins.
        level = np.trunc(model.ar1(yt) * bins).astype(np.int32)
        level = np.broadcast_to(level, (n_trials, yt.shape[0])).ravel()
        order = np.argsort(level, kind="stable")
        sorted_levels = level[order]
        edges = np.flatnonzero(np.diff(sorted_levels)) + 1
        block = np.empty((n_trials, yt.shape[0]))
        for pairs in np.split(order, edges):
            rows, vox = np.divmod(pairs, yt.shape[0])
            cols, local = np.unique(vox, return_inverse=True)
            rho = float(level[pairs[0]]) / bins
            betas = yt[cols] @ model.filter(rho).T  # voxels × trials
            block[rows, vox] = betas[local, rows]
        out[:, sl] = block
    return out


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

    bold_name = _name(bold_img, "<in-memory BOLD image>")
    mask_name = _name(mask_img, "<in-memory mask image>")
    bold = _load_img(bold_img, "BOLD run")
    mask_src = _load_img(mask_img, "brain mask")
    if len(bold.shape) != 4:
        raise DataError(
            f"{bold_name}: BOLD run must be 4D (x, y, z, time), got shape {bold.shape}; "
            "give the preprocessed time series"
        )
    n_vols = bold.shape[3]
    if n_vols < 3:
        raise DataError(f"{bold_name}: only {n_vols} volume(s); a GLM needs the whole run")
    tr = _repetition_time(bold, t_r, bold_name)
    events = load_events(events_df)
    events_name = events.attrs["source"]
    conf = select_confounds(confounds_df, confounds, n_volumes=n_vols)

    is_trial = _is_trial(events["stim_file"])
    trials = events[is_trial].reset_index(drop=True)
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

    start = slice_time_ref * tr
    frame_times = np.linspace(start, (n_vols - 1 + slice_time_ref) * tr, n_vols)
    other_events = None
    if (~is_trial).any():
        other = events[~is_trial]
        kinds = other["trial_type"] if "trial_type" in other.columns else "other_events"
        other_events = pd.DataFrame(
            {
                "onset": other["onset"].to_numpy(float),
                "duration": other["duration"].to_numpy(float),
                "trial_type": pd.Series(kinds, index=other.index).fillna("other").astype(str),
            }
        )
        other_events["trial_type"] = "nuisance_" + other_events["trial_type"]
    nuisance = _nuisance_design(
        frame_times, conf, other_events, hrf_model, drift_model, high_pass, drift_order
    )
    own, raw = _trial_regressors(onsets, durations, frame_times, hrf_model)
    m = own.shape[2]
    n_trials = onsets.size
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

    mask = _mask_on_bold_grid(mask_src, bold, mask_name, bold_name)
    if not mask.any():
        raise DataError(f"{mask_name}: brain mask is empty; give a mask covering the brain")
    y = _masked_timeseries(bold, mask)  # voxels × volumes
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
            stacklevel=2,
        )
        y = y[~bad]
    mean = y.mean(axis=1, dtype=np.float64)

    bins = int(ar_bins)
    if method == "lsa":
        betas = _fit(_LsaModel(own, nuisance), y, mean, n_trials, noise_model, bins)
    elif lss_others == "all":
        betas = _fit(_LssModel(own, raw, nuisance), y, mean, n_trials, noise_model, bins)
    else:
        betas = np.empty((n_trials, y.shape[0]))
        kinds = trials["trial_type"].astype(str).to_numpy()
        sums = {k: raw[kinds == k].sum(axis=0) for k in np.unique(kinds)}
        for kind in sums:
            sel = kinds == kind
            others = [s for k, s in sums.items() if k != kind]
            nuis = np.concatenate([nuisance, *others], axis=1) if others else nuisance
            model = _LssModel(own[sel], raw[sel], nuis)
            betas[sel] = _fit(model, y, mean, int(sel.sum()), noise_model, bins)
    if signal_scaling:
        # Percent of the voxel mean (nilearn's mean_scaling); with a constant in every model this
        # only rescales each voxel's betas.
        if (mean <= 0).any():
            warnings.warn(
                f"{bold_name}: voxel means <= 0 (centred data?); percent scaling uses max(mean, 1)",
                UserWarning,
                stacklevel=2,
            )
        betas *= 100.0 / np.maximum(mean, 1.0)

    data = np.zeros((*bold.shape[:3], n_trials), dtype=np.float32)
    keep = np.flatnonzero(mask.ravel())[~bad]
    flat = data.reshape(-1, n_trials)
    flat[keep] = betas.T.astype(np.float32)
    betas_img = _betas_image(data, bold)

    stim_files = trials["stim_file"].astype(str)
    table = pd.DataFrame(
        {
            "run": _run_label(run, bold_img),
            "trial": np.arange(n_trials),
            "onset": onsets,
            "duration": durations,
            "stim_file": stim_files,
            "stim_id": [_stem(s) for s in stim_files],
        }
    )
    if "trial_type" in trials.columns:
        table["trial_type"] = trials["trial_type"].to_numpy()
    table.attrs.update({"n_voxels": int(mask.sum()), "n_dropped_voxels": n_bad})
    return betas_img, table


def _stem(stim_file: str) -> str:
    return Path(stim_file.replace("\\", "/")).stem


def _betas_image(data: np.ndarray, ref: nib.spatialimages.SpatialImage) -> nib.Nifti1Image:
    img = nib.Nifti1Image(data, ref.affine)
    hdr = ref.header
    if isinstance(hdr, nib.Nifti1Header):
        if int(hdr["qform_code"]):
            img.header.set_qform(*hdr.get_qform(coded=True))
        if int(hdr["sform_code"]):
            img.header.set_sform(*hdr.get_sform(coded=True))
        img.header.set_xyzt_units(xyz=hdr.get_xyzt_units()[0])
    img.header.set_data_dtype(np.float32)
    img.header.set_zooms(tuple(ref.header.get_zooms()[:3]) + (1.0,))
    return img


# --------------------------------------------------------------------------------------------------
# Runs, saving, precomputed betas
# --------------------------------------------------------------------------------------------------
def combine_runs(
    runs: Sequence[tuple[nib.spatialimages.SpatialImage, pd.DataFrame]],
) -> tuple[nib.Nifti1Image, pd.DataFrame]:
    """Concatenate the betas and trials tables of several runs (in the order given).

    Raises
    ------
    UsageError
        No run, or two runs with the same ``run`` label.
    DataError
        Runs on different grids, or a table whose length differs from its image's volumes.
    """
    if not runs:
        raise UsageError("combine_runs: no run given")
    ref = runs[0][0]
    labels: list[object] = []
    for img, table in runs:
        name = _name(img, "<betas image>")
        if img.shape[:3] != ref.shape[:3] or not np.allclose(img.affine, ref.affine, atol=1e-4):
            raise DataError(f"{name}: betas grid differs from the first run's; use one space")
        n = img.shape[3] if len(img.shape) == 4 else 1
        if n != len(table):
            raise DataError(f"{name}: {n} volumes but {len(table)} rows in its trials table")
        labels.extend(pd.unique(table["run"]).tolist())
    if len(labels) != len(set(labels)):
        raise UsageError(
            f"combine_runs: run labels repeat ({labels}); pass run= to estimate_single_trial_betas"
        )
    data = np.concatenate(
        [np.asarray(img.dataobj, dtype=np.float32).reshape(*ref.shape[:3], -1) for img, _ in runs],
        axis=3,
    )
    table = pd.concat([t for _, t in runs], ignore_index=True)
    table.attrs = {}
    return _betas_image(data, ref), table


class _GzipStream(io.RawIOBase):
    """A write-only gzip stream with the bytes of ``gzip.compress(data, 6, mtime=0)`` (zlib's
    gzip wrapper: no name, time 0), so reruns give identical files; seeks only forward (zeros),
    as nibabel asks to reach the data offset."""

    def __init__(self, raw: IO[bytes]) -> None:
        import zlib

        super().__init__()
        self._raw = raw
        self._zip = zlib.compressobj(6, zlib.DEFLATED, 31)
        self._position = 0

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._raw.write(self._zip.compress(view))
        self._position += view.nbytes
        return view.nbytes

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence != 0 or offset < self._position:
            raise OSError("a gzip stream being written cannot seek backwards")
        if offset > self._position:
            self.write(bytes(offset - self._position))
        return self._position

    def finish(self) -> None:
        """Write the end of the compressed stream (the raw file stays open)."""
        self._raw.write(self._zip.flush())


def save_betas(
    betas_img: nib.spatialimages.SpatialImage,
    trials_df: pd.DataFrame,
    betas_path: str | os.PathLike,
    trials_path: str | os.PathLike,
) -> tuple[Path, Path]:
    """Write the betas (NIfTI, ``.nii`` or ``.nii.gz``) and trials table (TSV, ``n/a`` for NaN).

    Both files appear together or not at all.
    """
    betas_path, trials_path = Path(betas_path), Path(trials_path)
    n = betas_img.shape[3] if len(betas_img.shape) == 4 else 1
    if n != len(trials_df):
        raise DataError(f"{betas_path}: {n} volumes but {len(trials_df)} rows in the trials table")

    def write(tmp: Path) -> None:
        # Streamed volume by volume (nibabel writes by slices): no in-memory copy of the file.
        with open(tmp, "wb") as raw:
            if betas_path.name.endswith(".gz"):
                packed = _GzipStream(raw)
                betas_img.to_stream(packed)
                packed.finish()
            else:
                betas_img.to_stream(raw)

    # Each write raises an OutputError naming its file and the fix; a table that cannot be
    # written takes the betas with it.
    atomic_write_with(betas_path, write)
    with removed_on_failure(betas_path):
        atomic_write_text(trials_path, trials_df.to_csv(sep="\t", index=False, na_rep="n/a"))
    return betas_path, trials_path


def load_precomputed_betas(
    betas_img_path: str | os.PathLike, trials_tsv_path: str | os.PathLike
) -> tuple[nib.spatialimages.SpatialImage, pd.DataFrame]:
    """Load single-trial betas computed elsewhere (e.g. NSD's), checking them against their table.

    The image is returned unloaded (data read on access), so large files cost no memory here.

    Parameters
    ----------
    betas_img_path : path
        4D NIfTI, one volume per trial.
    trials_tsv_path : path
        Trials table, one row per volume, with ``stim_id`` or ``stim_file``. Missing ``stim_id`` is
        derived from ``stim_file``; missing ``run`` defaults to 1 and missing ``trial`` to the row
        number within its run.

    Raises
    ------
    MissingInputError
        A file is absent.
    DataError
        Not a 4D image, a row count different from the number of volumes, no stimulus column.
    """
    img = _load_img(betas_img_path, "betas image")
    name = str(betas_img_path)
    if len(img.shape) != 4:
        raise DataError(f"{name}: betas must be a 4D image (one volume per trial), got {img.shape}")
    table, tname = _read_table(trials_tsv_path, "trials table")
    if len(table) != img.shape[3]:
        raise DataError(
            f"{tname}: {len(table)} rows but {name} has {img.shape[3]} volumes; "
            "give one row per volume, in volume order"
        )
    if "stim_id" not in table.columns:
        if "stim_file" not in table.columns:
            raise DataError(
                f"{tname}: needs a stim_id or stim_file column naming each trial's image"
            )
        table["stim_id"] = [_stem(str(s)) for s in table["stim_file"]]
    if table["stim_id"].isna().any():
        rows = (np.flatnonzero(table["stim_id"].isna().to_numpy()) + 1).tolist()[:5]
        raise DataError(f"{tname}: stim_id missing in row(s) {rows}; every volume needs a stimulus")
    table["stim_id"] = table["stim_id"].astype(str)
    if "run" not in table.columns:
        table.insert(0, "run", 1)
    if "trial" not in table.columns:
        table.insert(1, "trial", table.groupby("run").cumcount().to_numpy())
    return img, table
