"""The encoding workflow: voxel-wise models predicting brain responses from z, c, z_c and U-Net
features, with unique variance of z vs c, as NIfTI maps and ROI summaries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from nipype_brainrecon.config import DEFAULTS
from nipype_brainrecon.interfaces.decoding import SplitTrials
from nipype_brainrecon.interfaces.encoding import (
    EncodingFeatures,
    EncodingMaps,
    FitEncodingModels,
)
from nipype_brainrecon.interfaces.rois import ExtractRoiData, RoiMask
from nipype_brainrecon.workflows.connections import pop_file

INPUT_FIELDS = [
    "betas_files",
    "trials_files",
    "mask_file",
    "dseg_file",
    "labels_file",
    "z_file",
    "c_file",
    "stimuli_file",
    "model",
]
OUTPUT_FIELDS = [
    "mask_file",
    "feature_names",
    "unet_info",
    "maps_file",
    "map_files",
    "map_names",
    "roi_summary_file",
    "spaces",
    "n_train",
    "n_test",
]


def init_encoding_wf(
    *,
    blocks: Sequence[str] = DEFAULTS.encoding.blocks,
    steps: Sequence[str] = DEFAULTS.encoding.steps,
    conditions: Sequence[str] = ("c", "none"),
    strength: float = DEFAULTS.reconstruction.strength,
    num_inference_steps: int = DEFAULTS.reconstruction.num_inference_steps,
    guidance_scale: float = DEFAULTS.reconstruction.guidance_scale,
    seed: int = DEFAULTS.seed,
    pool: int = DEFAULTS.encoding.pool,
    batch_size: int = DEFAULTS.reconstruction.batch_size,
    joint: Sequence[str] = ("z+c",),
    balance: bool = True,
    banded: bool = False,
    test_set: str = DEFAULTS.decoding.test_set,
    alphas: str | Sequence[float] = DEFAULTS.decoding.alphas,
    n_folds: int = DEFAULTS.decoding.n_folds,
    backend: str = DEFAULTS.decoding.backend,
    feature_cache: str | None = None,
    device: str | None = None,
    omp_nthreads: int = 1,
    name: str = "encoding_wf",
) -> pe.Workflow:
    """Build the encoding analysis of one participant.

    Brain-mask voxels of the single-trial betas → train/test split (as decoding) → feature
    spaces z, c, z_c and U-Net activations (``blocks`` × ``steps`` × ``conditions``) →
    one ridge encoding model per feature space (penalty per voxel by CV) and a joint model per
    pair in ``joint`` → test r, R², chance level and unique variance per voxel → NIfTI maps and
    a table of ROI means.

    Parameters
    ----------
    blocks, steps, conditions
        U-Net blocks to hook (``down<i>``, ``mid``, ``up<i>``; empty for none), denoising steps
        (``early``, ``middle``, ``late``) and conditionings (``c``, ``none``).
    strength, num_inference_steps, guidance_scale, seed
        Denoising settings (as reconstruction; paper: 0.8, 50, 5.0).
    pool, batch_size
        Largest side of pooled activations; stimuli per U-Net call.
    joint : sequence of str
        Pairs ``"a+b"`` fitted jointly for variance partitioning.
    balance : bool
        Give each block of a joint model the same weight.
    banded : bool
        Fit joint models with one penalty per feature space (banded ridge; ``balance`` unused).
    test_set, alphas, n_folds, backend
        As in :func:`nipype_brainrecon.workflows.decoding.init_decoding_wf`.
    feature_cache : str, optional
        Folder caching U-Net features across subjects and reruns.
    device : str, optional
        Torch device of the U-Net and the torch ridge backend.
    omp_nthreads : int
        Threads of the numerical nodes (their ``n_procs`` and ``num_threads``).
    name : str
        Workflow name.

    Inputs
    ------
    betas_files, trials_files
        Single-trial betas per run and their trials tables.
    mask_file
        Brain mask: the voxels modelled.
    dseg_file, labels_file
        Segmentation and label table for the ROI summary.
    z_file, c_file, stimuli_file
        Stimulus features (decoding's ``features`` node) and their row ids.
    model
        diffusers model folder or hub id (its U-Net and text encoder are used).

    Outputs
    -------
    See ``OUTPUT_FIELDS``: the voxel mask, feature names, U-Net settings, maps (array and
    NIfTI files with names), ROI summary table, per-space fit information and sample counts.

    Examples
    --------
    >>> wf = init_encoding_wf(blocks=["mid"], steps=["late"])
    >>> sorted(n for n in wf.list_node_names() if n in ("features", "fit", "maps"))
    ['features', 'fit', 'maps']
    """
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=INPUT_FIELDS), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=OUTPUT_FIELDS), name="outputnode")
    use_gpu = backend == "torch" or (device or "").startswith("cuda")

    voxels = pe.Node(RoiMask(roi_label="brain"), name="voxel_mask")
    extract = pe.Node(ExtractRoiData(), name="extract", mem_gb=2.0)
    split = pe.Node(SplitTrials(test_set=test_set), name="split", mem_gb=2.0)
    features = pe.Node(
        EncodingFeatures(
            blocks=list(blocks),
            steps=list(steps),
            conditions=list(conditions),
            strength=strength,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            seed=seed,
            pool=pool,
            batch_size=batch_size,
            use_gpu=(device or "").startswith("cuda"),
            num_threads=omp_nthreads,
        ),
        name="features",
        mem_gb=4.0,
        n_procs=omp_nthreads,
    )
    if feature_cache:
        features.inputs.cache_dir = feature_cache
    if device:
        features.inputs.device = device
    fit = pe.Node(
        FitEncodingModels(
            joint=list(joint),
            balance=balance,
            banded=banded,
            alphas=alphas,
            n_folds=n_folds,
            backend=backend,
            seed=seed,
            use_gpu=use_gpu,
            num_threads=omp_nthreads,
        ),
        name="fit",
        mem_gb=8.0,
        n_procs=omp_nthreads,
    )
    maps = pe.Node(EncodingMaps(), name="maps", mem_gb=1.0)
    workflow.connect([
        (inputnode, voxels, [(("mask_file", pop_file), "mask_files"),
                             (("betas_files", pop_file), "reference_file")]),
        (inputnode, extract, [("betas_files", "betas_files"),
                              ("trials_files", "trials_files")]),
        (voxels, extract, [("roi_file", "roi_file")]),
        (extract, split, [("data_file", "data_file"), ("trials_file", "trials_file")]),
        (inputnode, features, [("z_file", "z_file"),
                               ("c_file", "c_file"),
                               ("stimuli_file", "stimuli_file"),
                               ("model", "model")]),
        (split, fit, [("train_data_file", "train_data_file"),
                      ("train_stimuli_file", "train_stimuli_file"),
                      ("test_data_file", "test_data_file"),
                      ("test_stimuli_file", "test_stimuli_file")]),
        (features, fit, [("features_files", "features_files"),
                         ("feature_names", "feature_names")]),
        (inputnode, fit, [("stimuli_file", "features_stimuli_file")]),
        (fit, maps, [("maps_file", "maps_file"), ("map_names", "map_names")]),
        (voxels, maps, [("roi_file", "mask_file")]),
        (inputnode, maps, [("dseg_file", "dseg_file"), ("labels_file", "labels_file")]),
        (voxels, outputnode, [("roi_file", "mask_file")]),
        (features, outputnode, [("feature_names", "feature_names"),
                                ("unet_info", "unet_info")]),
        (fit, outputnode, [("maps_file", "maps_file"),
                           ("spaces", "spaces"),
                           ("n_train", "n_train"),
                           ("n_test", "n_test")]),
        (maps, outputnode, [("map_files", "map_files"),
                            ("map_names", "map_names"),
                            ("roi_summary_file", "roi_summary_file")]),
    ])  # fmt: skip
    return workflow


def connect_participant_encoding(
    workflow: pe.Workflow,
    participant: Any,
    *,
    decoding: pe.Workflow,
    write: pe.Node,
    report: pe.Node,
    output_dir: str | Path,
    settings: Mapping[str, Any],
    omp_nthreads: int = 1,
    datasets: Mapping[str, str | Path] | None = None,
) -> pe.Workflow:
    """Add the encoding analysis to a participant workflow (``--encoding``).

    The encoding workflow takes the decoding workflow's betas and stimulus features; its maps
    are written into the subject folder after ``write`` (which replaces the folder whole) and
    the report is drawn from the extended summary. The maps' ``Sources`` are the BOLD files as
    ``bids:<name>:<path>`` URIs of ``datasets`` (default ``{"raw": bids_dir, "fmriprep":
    derivatives}``).

    Returns
    -------
    nipype.pipeline.engine.Workflow
        The encoding sub-workflow added.
    """
    from nipype_brainrecon.derivatives.portable import source_uri
    from nipype_brainrecon.interfaces.encoding import WriteEncodingDerivatives
    from nipype_brainrecon.workflows.outputs import input_datasets

    cfg = {**DEFAULTS.flat(), **settings}
    encoding = init_encoding_wf(
        blocks=cfg["encoding_blocks"],
        steps=cfg["encoding_steps"],
        banded=cfg["encoding_banded"],
        strength=cfg["strength"],
        num_inference_steps=cfg["num_inference_steps"],
        guidance_scale=cfg["guidance_scale"],
        seed=cfg["seed"],
        batch_size=cfg["batch_size"],
        test_set=cfg["test_set"],
        alphas=cfg["alphas"],
        n_folds=cfg["n_folds"],
        backend=cfg["backend"],
        feature_cache=cfg["feature_cache"],
        device=cfg["device"],
        omp_nthreads=omp_nthreads,
    )
    runs = participant.runs
    roots = datasets or input_datasets(participant)
    inputs = encoding.inputs.inputnode
    inputs.mask_file = str(runs[0].mask)
    inputs.dseg_file = str(participant.roi_dseg)
    inputs.labels_file = str(participant.roi_labels_file)
    inputs.model = str(cfg["model"])
    task = next((r.entities.get("task") for r in runs if r.entities.get("task")), None)
    write_encoding = pe.Node(
        WriteEncodingDerivatives(
            output_dir=str(output_dir),
            subject=participant.participant,
            space=participant.space,
            sources=[source_uri(r.bold, roots, output_dir) for r in runs],
            settings=cfg,
        ),
        name="write_encoding",
        mem_gb=1.0,
        run_without_submitting=True,
    )
    if task:
        write_encoding.inputs.task = str(task)
    workflow.connect([
        (decoding, encoding, [("outputnode.betas_files", "inputnode.betas_files"),
                              ("outputnode.trials_files", "inputnode.trials_files"),
                              ("outputnode.z_file", "inputnode.z_file"),
                              ("outputnode.c_file", "inputnode.c_file"),
                              ("outputnode.stimuli_file", "inputnode.stimuli_file")]),
        (encoding, write_encoding, [("outputnode.map_files", "map_files"),
                                    ("outputnode.map_names", "map_names"),
                                    ("outputnode.roi_summary_file", "roi_summary_file"),
                                    ("outputnode.spaces", "spaces"),
                                    ("outputnode.unet_info", "unet_info"),
                                    ("outputnode.n_train", "n_train"),
                                    ("outputnode.n_test", "n_test")]),
        (write, write_encoding, [("summary", "summary")]),
        (write_encoding, report, [("summary", "summary")]),
    ])  # fmt: skip
    return encoding
