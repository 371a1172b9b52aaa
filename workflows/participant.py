"""The participant-level workflow of the BIDS App: decoding → reconstruction → evaluation."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from nipype_brainrecon.config import DEFAULTS
from nipype_brainrecon.derivatives.portable import model_name
from nipype_brainrecon.interfaces.reports import ParticipantReport
from nipype_brainrecon.workflows.decoding import init_decoding_wf, set_participant_inputs
from nipype_brainrecon.workflows.outputs import connect_participant_derivatives
from nipype_brainrecon.workflows.reconstruction import (
    init_evaluation_wf,
    init_reconstruction_wf,
)


def _train_ids(train_stimuli_file):
    import pandas as pd

    ids = pd.read_csv(train_stimuli_file, sep="\t", dtype={"stim_id": str})["stim_id"]
    return sorted(set(ids))


def init_participant_wf(
    participant: Any,
    *,
    output_dir: str | Path,
    settings: Mapping[str, Any] | None = None,
    precomputed_betas: Mapping[str, Any] | None = None,
    command: str = "",
    omp_nthreads: int = 1,
    name: str | None = None,
    datasets: Mapping[str, str | Path] | None = None,
    progress: bool = False,
) -> pe.Workflow:
    """Build the whole analysis of one participant, writing its derivatives and report.

    Parameters
    ----------
    participant : nipype_brainrecon.bids.ParticipantInputs
        The participant's inputs (from :func:`nipype_brainrecon.bids.collect_participant`).
    output_dir : path
        Root of the derivatives dataset.
    settings : dict, optional
        Overrides of the defaults, as flat keys of
        :meth:`nipype_brainrecon.config.Settings.flat` (``strength``, ``n_samples``, ...).
    precomputed_betas : dict, optional
        ``betas_files`` and ``trials_files`` of precomputed single-trial betas (no GLM). With
        a ``participant`` from :func:`nipype_brainrecon.bids.betas.collect_precomputed_betas`
        (its runs' files, no BOLD or masks) the betas stage writes copies of these files.
    command : str
        The command line, recorded in the report.
    omp_nthreads : int
        Threads per numerical node.
    progress : bool
        Progress bars of the single-trial GLM, the feature extraction, the ridge solver and
        the reconstruction (the CLI sets it when stderr is a terminal; no result depends on it).
    name : str, optional
        Workflow name (default ``sub_<label>_wf``).
    datasets : dict, optional
        ``{name: root}`` of the input datasets, the names of the ``bids:<name>:<path>`` URIs
        that the outputs record their inputs by (as ``DatasetLinks`` in
        ``dataset_description.json``); default ``{"raw": bids_dir, "fmriprep": derivatives}``.

    Returns
    -------
    nipype.pipeline.engine.Workflow
        A workflow with no inputs to set: everything comes from ``participant``.
    """
    cfg = {**DEFAULTS.flat(), **(settings or {})}
    subject = participant.participant
    workflow = pe.Workflow(name=name or f"sub_{subject}_wf")
    precomputed = precomputed_betas

    decoding = init_decoding_wf(
        precomputed_betas=bool(precomputed),
        z_roi=cfg["z_roi"],
        c_roi=cfg["c_roi"],
        betas_method=cfg["betas_method"],
        noise_model=cfg["noise_model"],
        confounds=cfg["confounds"],
        resolution=cfg["resolution"],
        test_set=cfg["test_set"],
        alphas=cfg["alphas"],
        n_folds=cfg["n_folds"],
        cv_groups=cfg["cv_groups"],
        fit_intercept=cfg["fit_intercept"],
        backend=cfg["backend"],
        feature_cache=cfg["feature_cache"],
        device=cfg["device"],
        metadata={"subject": subject, "model": model_name(cfg["model"]), "seed": cfg["seed"]},
        events_spec=(
            participant.events_spec.inputs() if hasattr(participant, "events_spec") else None
        ),
        omp_nthreads=omp_nthreads,
        progress=progress,
    )
    set_participant_inputs(decoding, participant, cfg["model"], precomputed)

    use_gpu = str(cfg["device"] or "").startswith("cuda")
    reconstruction = init_reconstruction_wf(
        mode=cfg["mode"],
        n_samples=cfg["n_samples"],
        strength=cfg["strength"],
        num_inference_steps=cfg["num_inference_steps"],
        guidance_scale=cfg["guidance_scale"],
        seed=cfg["seed"],
        batch_size=cfg["batch_size"],
        n_chunks=cfg["n_chunks"],
        device=cfg["device"],
        use_gpu=use_gpu,
        omp_nthreads=omp_nthreads,
        progress=progress,
    )
    reconstruction.inputs.inputnode.model = str(cfg["model"])
    evaluation = init_evaluation_wf(extractors=cfg["extractors"], size=cfg["eval_size"])
    stim_files = {sid: str(p) for sid, p in participant.stimuli_by_id.items()}
    evaluation.inputs.inputnode.stim_files = stim_files
    train_ids = pe.Node(
        niu.Function(function=_train_ids, input_names=["train_stimuli_file"]),
        name="train_ids",
        mem_gb=0.5,
        run_without_submitting=True,
    )

    report = pe.Node(
        ParticipantReport(output_dir=str(output_dir)),
        name="report",
        mem_gb=1.0,
        run_without_submitting=True,
    )
    workflow.connect([
        (decoding, reconstruction, [("outputnode.z_predicted_file", "inputnode.z_file"),
                                    ("outputnode.c_predicted_file", "inputnode.c_file"),
                                    ("outputnode.test_stimuli_file", "inputnode.stimuli_file")]),
        (decoding, train_ids, [("outputnode.train_stimuli_file", "train_stimuli_file")]),
        (train_ids, evaluation, [("out", "inputnode.mean_image_ids")]),
        (reconstruction, evaluation, [
            ("outputnode.images_file", "inputnode.images_file"),
            ("outputnode.stimuli_file", "inputnode.stimuli_file"),
            ("outputnode.baseline_images_file", "inputnode.baseline_images_file")]),
    ])  # fmt: skip
    write = connect_participant_derivatives(
        workflow,
        participant,
        decoding=decoding,
        reconstruction=reconstruction,
        evaluation=evaluation,
        output_dir=output_dir,
        stim_files=stim_files,
        settings=cfg,
        command=command,
        datasets=datasets,
    )
    if cfg["encoding"]:
        from nipype_brainrecon.workflows.encoding import connect_participant_encoding

        connect_participant_encoding(
            workflow,
            participant,
            decoding=decoding,
            write=write,
            report=report,
            output_dir=output_dir,
            settings=cfg,
            omp_nthreads=omp_nthreads,
            datasets=datasets,
        )
    else:
        workflow.connect(write, "summary", report, "summary")
    return workflow
