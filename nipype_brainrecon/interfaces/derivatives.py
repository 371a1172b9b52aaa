"""Interfaces writing a subject's derivatives: one writer per stage, then the assembly.

Each stage writer stages what it generates in its own working folder and outputs the files to
place (``files``) and its part of the report's summary (``section``); ``AssembleDerivatives``
puts them all into ``sub-<label>/`` at once (whole or not at all).
"""

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


class _StageInputSpec(BaseInterfaceInputSpec):
    output_dir = Directory(mandatory=True, desc="root of the derivatives dataset")
    subject = traits.Str(mandatory=True, desc="participant label without sub-")
    settings = traits.Dict(mandatory=True, desc="every setting of the run, for provenance")
    datasets = traits.Dict(
        traits.Str,
        traits.Str,
        desc="name -> root of each input dataset ('raw', 'fmriprep'): inputs are recorded as "
        "bids:<name>:<path> URIs",
    )


class _StageOutputSpec(TraitedSpec):
    files = traits.Dict(desc="path inside sub-<label>/ -> file to copy there")
    section = traits.Dict(desc="this stage's part of the report's summary")


class _StageWriter(SimpleInterface):
    """Calls ``stage`` with the node's folder as staging area and every defined input."""

    output_spec = _StageOutputSpec
    stage = None

    def _run_interface(self, runtime):
        fields = {
            name: getattr(self.inputs, name)
            for name in self.inputs.copyable_trait_names()
            if isdefined(getattr(self.inputs, name))
        }
        files, section = type(self).stage(runtime.cwd, **fields)
        self._results.update(files=files, section=section)
        return runtime


class _BetasDerivativesInputSpec(_StageInputSpec):
    space = traits.Str("T1w", usedefault=True, desc="space label of the BOLD")
    run_entities = traits.List(traits.Dict, mandatory=True, desc="entities of each run")
    bold_files = InputMultiObject(File(exists=True), mandatory=True, desc="preproc BOLD per run")
    betas_files = InputMultiObject(File(exists=True), mandatory=True, desc="betas per run")
    trials_files = InputMultiObject(File(exists=True), mandatory=True, desc="trials per run")


class BetasDerivatives(_StageWriter):
    """The betas stage's derivatives: betas (+ sidecars) and trials tables in ``func/``."""

    input_spec = _BetasDerivativesInputSpec

    @staticmethod
    def stage(staging, **inputs):
        from ..derivatives import stage_betas

        return stage_betas(staging, **inputs)


class _DecoderDerivativesInputSpec(_StageInputSpec):
    space = traits.Str("T1w", usedefault=True, desc="space label of the masks")
    target = traits.Enum("z", "c", mandatory=True, desc="what the decoder decodes")
    bold_files = InputMultiObject(File(exists=True), desc="preproc BOLD (the mask's sources)")
    roi_file = File(exists=True, mandatory=True, desc="ROI mask of the decoder's voxels")
    decoder_file = File(exists=True, mandatory=True, desc="decoder weights (safetensors)")
    decoder_sidecar = File(exists=True, mandatory=True, desc="decoder sidecar (JSON)")
    predicted_file = File(exists=True, mandatory=True, desc="decoded features of the test set")
    scores = traits.Dict(mandatory=True, desc="decoding scores")
    alpha_counts = traits.Dict(desc="alphas chosen by the decoder")
    task = traits.Str(
        "", usedefault=True, desc="task entity of the mask (default: from the BOLD files' names)"
    )


class DecoderDerivatives(_StageWriter):
    """One decoder's derivatives: its ROI mask, weights, predictions and scores."""

    input_spec = _DecoderDerivativesInputSpec

    @staticmethod
    def stage(staging, **inputs):
        from ..derivatives import stage_decoder

        return stage_decoder(staging, **inputs)


class _ReconstructionDerivativesInputSpec(_StageInputSpec):
    images_file = File(exists=True, mandatory=True, desc="reconstructions (n, S, H, W, 3) .npy")
    images_stimuli_file = File(exists=True, mandatory=True, desc="stim_id of each image row")
    stim_files = traits.Dict(mandatory=True, desc="stim_id → path of the seen image")
    metrics_file = File(exists=True, mandatory=True, desc="metrics table (TSV)")
    per_image_file = File(exists=True, desc="each test image's scores (TSV: stim_id, metrics)")
    test_stimuli_file = File(exists=True, mandatory=True, desc="test stimuli (TSV)")
    split_info = traits.Dict(mandatory=True, desc="how the test set was chosen")


class ReconstructionDerivatives(_StageWriter):
    """The reconstruction stage's derivatives: PNGs, the test stimuli and the metrics."""

    input_spec = _ReconstructionDerivativesInputSpec

    @staticmethod
    def stage(staging, **inputs):
        from ..derivatives import stage_reconstructions

        return stage_reconstructions(staging, **inputs)


class _AssembleDerivativesInputSpec(_StageInputSpec):
    bids_dir = Directory(exists=True, mandatory=True, desc="raw BIDS dataset (for the summary)")
    files = traits.List(traits.Dict, mandatory=True, desc="each stage's files to place")
    sections = traits.List(traits.Dict, mandatory=True, desc="each stage's summary section")
    command = traits.Str("", usedefault=True, desc="the command line that started the run")


class _AssembleDerivativesOutputSpec(TraitedSpec):
    subject_dir = Directory(exists=True, desc="sub-<label>/ in the derivatives dataset")
    summary = traits.Dict(desc="what the report needs: scores, paths, settings")


class AssembleDerivatives(SimpleInterface):
    """Put every stage's files into ``sub-<label>/`` at once and write the run's summary.

    The subject folder is written under a temporary name and moved into place at the end, so
    an interrupted run never leaves a half-written ``sub-<label>/``.
    """

    input_spec = _AssembleDerivativesInputSpec
    output_spec = _AssembleDerivativesOutputSpec

    def _run_interface(self, runtime):
        from ..derivatives import assemble_subject

        inputs = self.inputs
        subject_dir, summary = assemble_subject(
            output_dir=inputs.output_dir,
            subject=inputs.subject,
            files=inputs.files,
            sections=inputs.sections,
            settings=inputs.settings,
            bids_dir=inputs.bids_dir,
            command=inputs.command,
            datasets=inputs.datasets if isdefined(inputs.datasets) else None,
        )
        self._results.update(subject_dir=str(subject_dir), summary=summary)
        return runtime
