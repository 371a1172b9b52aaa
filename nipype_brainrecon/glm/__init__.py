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

Modules: :mod:`.inputs` (images and tables by path or in memory, TR, mask, time series),
:mod:`.events` (the events table, trials), :mod:`.confounds` (confound selection and presets),
:mod:`.design` (HRF kernels, trial regressors, nuisance design), :mod:`.ar1` (prewhitening, AR(1)
coefficient), :mod:`.fit` (LSS/LSA models and the voxel-chunked fit), :mod:`.estimate`
(:func:`estimate_single_trial_betas`), :mod:`.betas_io` (combining runs, saving and loading betas).
"""

from __future__ import annotations

from .betas_io import combine_runs, load_precomputed_betas, save_betas
from .confounds import CONFOUND_PRESETS, select_confounds
from .design import HRF_MODELS
from .estimate import estimate_single_trial_betas
from .events import load_events

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
