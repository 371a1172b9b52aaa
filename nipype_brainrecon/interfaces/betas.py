"""The interface of the betas stage: single-trial response amplitudes of one BOLD run."""

from __future__ import annotations

import os

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from ..config import DEFAULTS as D
from ._specs import default_first
from .threads import (
    limit_threads,
    num_threads_trait,
    threads_file_trait,
    write_threads_file,
)


class _SingleTrialBetasInputSpec(BaseInterfaceInputSpec):
    bold_file = File(exists=True, mandatory=True, desc="preprocessed 4D BOLD run (fMRIPrep)")
    events_file = File(exists=True, mandatory=True, desc="BIDS events.tsv with a stim_file column")
    confounds_file = File(exists=True, desc="fMRIPrep desc-confounds_timeseries.tsv")
    mask_file = File(exists=True, mandatory=True, desc="brain mask of the run")
    method = traits.Enum(
        *default_first(D.glm.betas_method, "lss", "lsa"),
        usedefault=True,
        desc="least-squares separate or all",
    )
    hrf_model = traits.Str(D.glm.hrf_model, usedefault=True, desc="nilearn HRF model name")
    drift_model = traits.Enum(
        *default_first(D.glm.drift_model, "cosine", "polynomial", None),
        usedefault=True,
        desc="drift model",
    )
    high_pass = traits.Float(D.glm.high_pass, usedefault=True, desc="cosine drift cut-off (Hz)")
    confounds = traits.Either(
        traits.Str,
        traits.List(traits.Str),
        default=D.glm.confounds,
        usedefault=True,
        desc="confound preset or list of confound columns",
    )
    noise_model = traits.Enum(
        *default_first(D.glm.noise_model, "ols", "ar1"), usedefault=True, desc="GLM noise model"
    )
    repetition_time = traits.Float(desc="TR in seconds (default: from the BOLD header)")
    run_label = traits.Str(desc="run label written into the trials table")
    stim_column = traits.Str(desc="events column naming each stimulus (default stim_file)")
    stim_map = File(exists=True, desc="TSV (value, stim_file) mapping stim_column to images")
    stim_template = traits.Str(desc="format string naming each value's image, e.g. img_{value}.png")
    trial_filter = traits.Str(desc="pandas query choosing the trial rows (others are nuisance)")
    num_threads = num_threads_trait()
    progress = traits.Bool(
        False, usedefault=True, nohash=True, desc="show a progress bar (not part of the hash)"
    )


class _SingleTrialBetasOutputSpec(TraitedSpec):
    betas_file = File(exists=True, desc="4D NIfTI, one volume per trial")
    trials_file = File(exists=True, desc="trials table (run, onset, stim_file, stim_id, ...)")
    threads_file = threads_file_trait()


class SingleTrialBetas(SimpleInterface):
    """Estimate one beta per trial for a run (all trials solved together).

    See :func:`nipype_brainrecon.glm.estimate_single_trial_betas`.
    """

    input_spec = _SingleTrialBetasInputSpec
    output_spec = _SingleTrialBetasOutputSpec

    def _run_interface(self, runtime):
        from ..bids.events import EventsSpec
        from ..glm import estimate_single_trial_betas, load_events, save_betas

        inputs = self.inputs
        spec = EventsSpec(
            **{
                name: getattr(inputs, name)
                for name in ("stim_column", "stim_map", "stim_template", "trial_filter")
                if isdefined(getattr(inputs, name))
            }
        )
        events = inputs.events_file if spec.is_default else load_events(inputs.events_file, spec)
        with limit_threads(inputs.num_threads) as threads:
            betas, trials = estimate_single_trial_betas(
                inputs.bold_file,
                events,
                inputs.confounds_file if isdefined(inputs.confounds_file) else None,
                inputs.mask_file,
                method=inputs.method,
                hrf_model=inputs.hrf_model,
                drift_model=inputs.drift_model,
                high_pass=inputs.high_pass,
                confounds=inputs.confounds,
                noise_model=inputs.noise_model,
                t_r=inputs.repetition_time if isdefined(inputs.repetition_time) else None,
                run=inputs.run_label if isdefined(inputs.run_label) else None,
                progress=inputs.progress,
            )
        betas_file, trials_file = save_betas(
            betas,
            trials,
            os.path.join(runtime.cwd, "betas.nii.gz"),
            os.path.join(runtime.cwd, "trials.tsv"),
        )
        self._results.update(
            betas_file=str(betas_file),
            trials_file=str(trials_file),
            threads_file=write_threads_file(threads, runtime.cwd),
        )
        return runtime
