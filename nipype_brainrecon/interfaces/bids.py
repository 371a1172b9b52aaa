"""Interfaces writing a subject's results into the BIDS derivatives dataset, and its report."""

from __future__ import annotations

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    Directory,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)


class _WriteDerivativesInputSpec(BaseInterfaceInputSpec):
    output_dir = Directory(mandatory=True, desc="root of the derivatives dataset")
    subject = traits.Str(mandatory=True, desc="participant label without sub-")
    space = traits.Str("T1w", usedefault=True, desc="space label of the BOLD and masks")
    bids_dir = Directory(exists=True, mandatory=True, desc="raw BIDS dataset (for Sources)")
    run_entities = traits.List(traits.Dict, mandatory=True, desc="entities of each run")
    bold_files = InputMultiObject(File(exists=True), mandatory=True, desc="preproc BOLD per run")
    betas_files = InputMultiObject(File(exists=True), mandatory=True, desc="betas per run")
    trials_files = InputMultiObject(File(exists=True), mandatory=True, desc="trials per run")
    z_roi_file = File(exists=True, mandatory=True, desc="ROI mask decoding z")
    c_roi_file = File(exists=True, mandatory=True, desc="ROI mask decoding c")
    z_decoder_file = File(exists=True, mandatory=True, desc="z decoder weights")
    z_decoder_sidecar = File(exists=True, mandatory=True, desc="z decoder sidecar")
    c_decoder_file = File(exists=True, mandatory=True, desc="c decoder weights")
    c_decoder_sidecar = File(exists=True, mandatory=True, desc="c decoder sidecar")
    z_predicted_file = File(exists=True, mandatory=True, desc="decoded z of the test stimuli")
    c_predicted_file = File(exists=True, mandatory=True, desc="decoded c of the test stimuli")
    z_scores = traits.Dict(mandatory=True, desc="decoding scores of z")
    c_scores = traits.Dict(mandatory=True, desc="decoding scores of c")
    z_alpha_counts = traits.Dict(desc="alphas chosen by the z decoder")
    c_alpha_counts = traits.Dict(desc="alphas chosen by the c decoder")
    split_info = traits.Dict(mandatory=True, desc="how the test set was chosen")
    test_stimuli_file = File(exists=True, mandatory=True, desc="test stimuli (TSV)")
    images_file = File(exists=True, mandatory=True, desc="reconstructions (n, S, H, W, 3) .npy")
    images_stimuli_file = File(exists=True, mandatory=True, desc="stim_id of each image row")
    metrics_file = File(exists=True, mandatory=True, desc="metrics table (TSV)")
    stim_files = traits.Dict(mandatory=True, desc="stim_id → path of the seen image")
    settings = traits.Dict(mandatory=True, desc="every setting of the run, for provenance")
    command = traits.Str("", usedefault=True, desc="the command line that started the run")


class _WriteDerivativesOutputSpec(TraitedSpec):
    subject_dir = Directory(exists=True, desc="sub-<label>/ in the derivatives dataset")
    summary = traits.Dict(desc="what the report needs: scores, paths, settings")


class WriteDerivatives(SimpleInterface):
    """Copy a subject's results into the derivatives dataset with BIDS names and sidecars.

    The subject folder is written under a temporary name and moved into place at the end, so
    an interrupted run never leaves a half-written ``sub-<label>/``.
    """

    input_spec = _WriteDerivativesInputSpec
    output_spec = _WriteDerivativesOutputSpec

    def _run_interface(self, runtime):
        from ..derivatives import write_subject_derivatives

        inputs = self.inputs
        fields = {
            name: getattr(inputs, name)
            for name in inputs.copyable_trait_names()
            if isdefined(getattr(inputs, name))
        }
        subject_dir, summary = write_subject_derivatives(**fields)
        self._results.update(subject_dir=str(subject_dir), summary=summary)
        return runtime


class _ParticipantReportInputSpec(BaseInterfaceInputSpec):
    output_dir = Directory(exists=True, mandatory=True, desc="root of the derivatives dataset")
    summary = traits.Dict(mandatory=True, desc="summary from WriteDerivatives")


class _ParticipantReportOutputSpec(TraitedSpec):
    out_report = File(exists=True, desc="sub-<label>.html")


class ParticipantReport(SimpleInterface):
    """Write the subject's HTML report (fMRIPrep style) at the derivatives root."""

    input_spec = _ParticipantReportInputSpec
    output_spec = _ParticipantReportOutputSpec

    def _run_interface(self, runtime):
        from pathlib import Path

        from ..reports import write_participant_report

        summary = dict(self.inputs.summary)
        out = Path(self.inputs.output_dir)
        subject = summary["subject"]
        report = write_participant_report(
            summary, out / f"sub-{subject}.html", figures_dir=out / f"sub-{subject}" / "figures"
        )
        self._results["out_report"] = str(report)
        return runtime
