"""Writing a participant's derivatives: one writer node per stage, then the assembly.

The writers are connected beside the analysis in the participant workflow (not as a
sub-workflow) so that a cluster plugin sees them as the light, local nodes they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from nipype_brainrecon.derivatives import task_label
from nipype_brainrecon.interfaces.derivatives import (
    AssembleDerivatives,
    BetasDerivatives,
    DecoderDerivatives,
    ReconstructionDerivatives,
)


def _local(interface, name: str) -> pe.Node:
    return pe.Node(interface, name=name, mem_gb=1.0, run_without_submitting=True)


def input_datasets(participant: Any) -> dict[str, str]:
    """``{"raw": bids_dir, "fmriprep": derivatives}`` of a participant's inputs: the dataset
    names of the ``bids:`` URIs (as ``init_output_dataset`` links them)."""
    return {"raw": str(participant.bids_dir), "fmriprep": str(participant.derivatives)}


def connect_participant_derivatives(
    workflow: pe.Workflow,
    participant: Any,
    *,
    decoding: pe.Workflow,
    reconstruction: pe.Workflow,
    evaluation: pe.Workflow,
    output_dir: str | Path,
    stim_files: Mapping[str, str],
    settings: Mapping[str, Any],
    command: str = "",
    datasets: Mapping[str, str | Path] | None = None,
) -> pe.Node:
    """Add the derivatives writers of one participant to ``workflow``.

    Stages: ``ds_betas`` (betas, trials), ``ds_decoder_z`` / ``ds_decoder_c`` (ROI mask,
    decoder, predictions, scores), ``ds_reconstruction`` (PNGs, test stimuli, metrics); then
    ``write_derivatives`` puts their files into ``sub-<label>/`` whole or not at all.

    ``datasets`` (``{name: root}``, default :func:`input_datasets`) names the input files in the
    sidecars and the summary by ``bids:<name>:<path>`` URIs; the names must be those of
    ``DatasetLinks`` in ``dataset_description.json``.

    Returns
    -------
    nipype.pipeline.engine.Node
        ``write_derivatives``, whose ``summary`` output feeds the report.
    """
    runs = participant.runs
    common = {
        "output_dir": str(output_dir),
        "subject": participant.participant,
        "settings": dict(settings),
        "datasets": {k: str(v) for k, v in (datasets or input_datasets(participant)).items()},
    }
    bold_files = [str(r.bold) for r in runs]
    ds_betas = _local(
        BetasDerivatives(
            **common,
            space=participant.space,
            run_entities=[dict(r.entities) for r in runs],
            bold_files=bold_files,
        ),
        "ds_betas",
    )
    decoders = {
        target: _local(
            DecoderDerivatives(
                **common,
                space=participant.space,
                target=target,
                bold_files=bold_files,
                task=task_label([r.entities.get("task", "") for r in runs]),
            ),
            f"ds_decoder_{target}",
        )
        for target in ("z", "c")
    }
    ds_recon = _local(
        ReconstructionDerivatives(**common, stim_files=dict(stim_files)), "ds_reconstruction"
    )
    stages = [ds_betas, decoders["z"], decoders["c"], ds_recon]
    files = _local(niu.Merge(len(stages)), "ds_files")
    sections = _local(niu.Merge(len(stages)), "ds_sections")
    write = _local(
        AssembleDerivatives(**common, bids_dir=str(participant.bids_dir), command=command),
        "write_derivatives",
    )
    workflow.connect([
        (decoding, ds_betas, [("outputnode.betas_files", "betas_files"),
                              ("outputnode.trials_files", "trials_files")]),
        (decoding, ds_recon, [("outputnode.split_info", "split_info"),
                              ("outputnode.test_stimuli_file", "test_stimuli_file")]),
        (reconstruction, ds_recon, [("outputnode.images_file", "images_file"),
                                    ("outputnode.stimuli_file", "images_stimuli_file")]),
        (evaluation, ds_recon, [("outputnode.metrics_file", "metrics_file"),
                                ("outputnode.per_image_file", "per_image_file")]),
        (files, write, [("out", "files")]),
        (sections, write, [("out", "sections")]),
    ])  # fmt: skip
    for target, node in decoders.items():
        workflow.connect([
            (decoding, node, [(f"outputnode.{target}_roi_file", "roi_file"),
                              (f"outputnode.{target}_decoder_file", "decoder_file"),
                              (f"outputnode.{target}_decoder_sidecar", "decoder_sidecar"),
                              (f"outputnode.{target}_predicted_file", "predicted_file"),
                              (f"outputnode.{target}_scores", "scores"),
                              (f"outputnode.{target}_alpha_counts", "alpha_counts")]),
        ])  # fmt: skip
    for i, stage in enumerate(stages, start=1):
        workflow.connect([(stage, files, [("files", f"in{i}")]),
                          (stage, sections, [("section", f"in{i}")])])  # fmt: skip
    return write
