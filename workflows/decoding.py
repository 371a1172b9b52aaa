"""The decoding workflow: from fMRIPrep outputs to decoded z (early ROI) and c (ventral ROI)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from nipype_brainrecon.config import DEFAULTS
from nipype_brainrecon.interfaces.betas import SingleTrialBetas
from nipype_brainrecon.interfaces.decoding import FitDecoder, PredictDecoder, SplitTrials
from nipype_brainrecon.interfaces.features import StimulusFeatures
from nipype_brainrecon.interfaces.rois import ExtractRoiColumns, ExtractRoiData, RoiMask
from nipype_brainrecon.workflows.connections import pop_file

INPUT_FIELDS = [
    "bold_files",
    "events_files",
    "confounds_files",
    "mask_files",
    "run_labels",
    "betas_files",
    "trials_files",
    "dseg_file",
    "labels_file",
    "roi_indices_file",
    "stimuli_dir",
    "captions_file",
    "dataset_dir",
    "model",
]
OUTPUT_FIELDS = [
    "betas_files",
    "trials_files",
    "z_roi_file",
    "c_roi_file",
    "z_file",
    "c_file",
    "stimuli_file",
    "model_info",
    "split_info",
    "test_stimuli_file",
    "train_stimuli_file",
    "z_decoder_file",
    "z_decoder_sidecar",
    "c_decoder_file",
    "c_decoder_sidecar",
    "z_alpha_counts",
    "c_alpha_counts",
    "z_predicted_file",
    "c_predicted_file",
    "z_scores",
    "c_scores",
]


def _roi_label(names):
    return "+".join(names) if isinstance(names, list | tuple) else str(names)


def _targets(targets: Sequence[str]) -> list[str]:
    """The decoded targets in the order z, c; a ``UsageError`` for anything else."""
    from nipype_brainrecon.errors import UsageError

    chosen = [targets] if isinstance(targets, str) else list(targets)
    unknown = sorted(set(chosen) - {"z", "c"})
    if unknown or not chosen:
        raise UsageError(f"targets={tuple(chosen)!r}: give 'z', 'c' or both")
    return [t for t in ("z", "c") if t in chosen]


def init_decoding_wf(
    *,
    precomputed_betas: bool = False,
    z_roi: str | Sequence[str] = DEFAULTS.decoding.z_roi,
    c_roi: str | Sequence[str] = DEFAULTS.decoding.c_roi,
    betas_method: str = DEFAULTS.glm.betas_method,
    noise_model: str = DEFAULTS.glm.noise_model,
    confounds: str | Sequence[str] = DEFAULTS.glm.confounds,
    resolution: int | None = DEFAULTS.decoding.resolution,
    test_set: str = DEFAULTS.decoding.test_set,
    alphas: str | Sequence[float] = DEFAULTS.decoding.alphas,
    n_folds: int = DEFAULTS.decoding.n_folds,
    cv_groups: str = DEFAULTS.decoding.cv_groups,
    betas_format: str = "nifti",
    backend: str = DEFAULTS.decoding.backend,
    targets: Sequence[str] = ("z", "c"),
    fit_intercept: bool = DEFAULTS.decoding.fit_intercept,
    feature_cache: str | None = None,
    device: str | None = None,
    metadata: dict | None = None,
    omp_nthreads: int = 1,
    events_spec: Mapping[str, str] | None = None,
    name: str = "decoding_wf",
    progress: bool = False,
) -> pe.Workflow:
    """Build the decoding workflow of one participant.

    Single-trial betas per run (or precomputed ones) → ROI voxel matrices → train/test split →
    stimulus features z and c → ridge decoders (z from ``z_roi``, c from ``c_roi``) → decoded
    features of the test stimuli, scored with chance levels and a baseline.

    Parameters
    ----------
    precomputed_betas : bool
        Take ``inputnode.betas_files``/``trials_files`` instead of estimating betas.
    betas_format : {"nifti", "matrix"}
        With precomputed betas: ``"nifti"`` (4D images, ROIs from the dseg) or ``"matrix"``
        (``.npy``/``.tsv`` trials × voxels matrices, ROIs as lists of their columns in
        ``inputnode.roi_indices_file``; see docs/betas.md).
    z_roi, c_roi : str or list of str
        Region name(s) of the label table decoding z and c (paper: early and ventral).
    betas_method, noise_model, confounds
        Single-trial GLM settings (see :func:`nipype_brainrecon.glm.estimate_single_trial_betas`).
    resolution : int or None
        Image size for z (320 in the paper); ``None``: the model's native size, read from
        the model folder when the features are computed (a hub id: 320).
    test_set : str
        ``"repeats"``, ``"column:<name>"`` or a list file (see :mod:`nipype_brainrecon.split`).
    alphas, n_folds, backend
        Ridge settings (see :func:`nipype_brainrecon.ridge.fit_ridge_cv`).
    cv_groups : {"run", "session", "none"}
        Folds of the alpha choice: hold out whole runs (each betas file and its ``run`` /
        ``session`` columns tell them) or sessions, at most ``n_folds`` folds; ``"none"`` or
        fewer than 2 runs known: ``n_folds`` contiguous folds. The decoder sidecar's
        ``Metadata.CVFolds`` records which.
    targets : sequence of {"z", "c"}
        The decoders to build: ``("z",)`` decodes only the image latent (no captions needed),
        ``("c",)`` only the caption embedding. Outputs of a target left out stay undefined.
    fit_intercept : bool
        Fit the decoders' intercept (:func:`~nipype_brainrecon.ridge.fit_ridge_cv`).
    feature_cache : str, optional
        Folder caching stimulus features across subjects and reruns.
    device : str, optional
        Torch device of feature extraction and the torch ridge backend.
    metadata : dict, optional
        Provenance recorded in each decoder's sidecar (model id, seed, version ...).
    omp_nthreads : int
        Threads of the numerical nodes: their ``n_procs`` (what MultiProc and clusters reserve)
        and their ``num_threads`` (the BLAS, OpenMP and torch threads they may start).
    progress : bool
        Progress bars of the single-trial GLM, the feature extraction and the ridge solver
        (on a terminal; the CLI sets it).
    events_spec : dict, optional
        How the GLM reads the events: ``stim_column``, ``stim_map``, ``stim_template``,
        ``trial_filter`` (``ParticipantInputs.events_spec.inputs()``; see
        :class:`nipype_brainrecon.bids.EventsSpec`). Default: ``stim_file`` as written.
    name : str
        Workflow name.

    Inputs
    ------
    bold_files, events_files, confounds_files, mask_files, run_labels
        One entry per run (fMRIPrep preproc BOLD, BIDS events, confounds, brain mask).
    betas_files, trials_files
        Precomputed single-trial betas and their trials tables (``precomputed_betas=True``).
        Their trials tables need ``stim_file`` (images relative to ``stimuli_dir``); a missing
        ``stim_id`` is derived from it (the file name stem), as for the estimated betas.
    mask_files
        Optional with precomputed betas: when given, the ROIs are cut to the first mask.
    dseg_file, labels_file
        ROI segmentation and its look-up table.
    roi_indices_file
        With ``betas_format="matrix"``: ROIs as 0-based columns of the betas matrices (JSON
        ``{name: [columns]}`` or TSV ``roi``, ``column``), instead of a dseg.
    stimuli_dir, captions_file, dataset_dir
        The stimuli folder, its captions table (needed when c is decoded) and the BIDS root
        (optional).
    model
        diffusers model folder or hub id giving the VAE and text encoder.

    Outputs
    -------
    See ``OUTPUT_FIELDS``: betas, ROI masks, features, decoders, predictions and scores.

    Examples
    --------
    >>> wf = init_decoding_wf()
    >>> [n for n in ("betas", "fit_z", "fit_c", "predict_z") if n in wf.list_node_names()]
    ['betas', 'fit_z', 'fit_c', 'predict_z']
    >>> z_only = init_decoding_wf(precomputed_betas=True, targets=("z",), resolution=None)
    >>> sorted(n for n in z_only.list_node_names() if n.startswith(("fit", "predict")))
    ['fit_z', 'predict_z']
    >>> matrix = init_decoding_wf(precomputed_betas=True, betas_format="matrix", name="m_wf")
    >>> type(matrix.get_node("extract_z").interface).__name__, "roi_z" in matrix.list_node_names()
    ('ExtractRoiColumns', False)
    """
    from nipype_brainrecon.errors import UsageError

    if betas_format not in ("nifti", "matrix"):
        raise UsageError(f"betas_format={betas_format!r}: give 'nifti' or 'matrix'")
    if betas_format == "matrix" and not precomputed_betas:
        raise UsageError("betas_format='matrix' needs precomputed_betas=True")
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=INPUT_FIELDS), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=OUTPUT_FIELDS), name="outputnode")
    z_label, c_label = _roi_label(z_roi), _roi_label(c_roi)
    z_names = [z_roi] if isinstance(z_roi, str) else list(z_roi)
    c_names = [c_roi] if isinstance(c_roi, str) else list(c_roi)
    meta = dict(metadata or {})

    betas_out = pe.Node(
        niu.IdentityInterface(fields=["betas_files", "trials_files"]), name="betas_out"
    )
    if precomputed_betas:
        workflow.connect([
            (inputnode, betas_out, [("betas_files", "betas_files"),
                                    ("trials_files", "trials_files")]),
        ])  # fmt: skip
    else:
        betas = pe.MapNode(
            SingleTrialBetas(
                method=betas_method,
                noise_model=noise_model,
                confounds=confounds,
                num_threads=omp_nthreads,
            ),
            iterfield=["bold_file", "events_file", "confounds_file", "mask_file", "run_label"],
            name="betas",
            mem_gb=2.0,
            n_procs=omp_nthreads,
        )
        for key, value in (events_spec or {}).items():
            setattr(betas.inputs, key, value)
        if progress:  # set only when True: the node's hash stays that of a run without bars
            betas.inputs.progress = True
        workflow.connect([
            (inputnode, betas, [("bold_files", "bold_file"),
                                ("events_files", "events_file"),
                                ("confounds_files", "confounds_file"),
                                ("mask_files", "mask_file"),
                                ("run_labels", "run_label")]),
            (betas, betas_out, [("betas_file", "betas_files"),
                                ("trials_file", "trials_files")]),
        ])  # fmt: skip

    chosen = _targets(targets)
    features = pe.Node(
        StimulusFeatures(num_threads=omp_nthreads),
        name="features",
        mem_gb=4.0,
        n_procs=omp_nthreads,
    )
    if resolution is not None:
        features.inputs.resolution = resolution
    if chosen != ["z", "c"]:
        features.inputs.targets = chosen
    if feature_cache:
        features.inputs.cache_dir = feature_cache
    if progress:  # set only when True: the node's hash stays that of a run without bars
        features.inputs.progress = True
    if device:
        features.inputs.device = device
        features.inputs.use_gpu = device.startswith("cuda")
    workflow.connect([
        (inputnode, features, [("stimuli_dir", "stimuli_dir"),
                               ("captions_file", "captions_file"),
                               ("dataset_dir", "dataset_dir"),
                               ("model", "model")]),
        (betas_out, features, [("trials_files", "trials_files")]),
        (betas_out, outputnode, [("betas_files", "betas_files"),
                                 ("trials_files", "trials_files")]),
        (features, outputnode, [("stimuli_file", "stimuli_file"),
                                ("model_info", "model_info")]),
        (features, outputnode, [(f"{t}_file", f"{t}_file") for t in chosen]),
    ])  # fmt: skip

    use_gpu = backend == "torch" or (device or "").startswith("cuda")
    rois = {"z": (z_names, z_label), "c": (c_names, c_label)}
    for target in chosen:
        names, label = rois[target]
        if betas_format == "matrix":
            extract = pe.Node(
                ExtractRoiColumns(roi_names=names), name=f"extract_{target}", mem_gb=2.0
            )
            workflow.connect([
                (inputnode, extract, [("roi_indices_file", "roi_indices_file")]),
            ])  # fmt: skip
        else:
            roi = pe.Node(
                RoiMask(roi_names=names, roi_label=label), name=f"roi_{target}", mem_gb=1.0
            )
            extract = pe.Node(ExtractRoiData(), name=f"extract_{target}", mem_gb=2.0)
            workflow.connect([
                (inputnode, roi, [("dseg_file", "dseg_file"),
                                  ("labels_file", "labels_file"),
                                  (("mask_files", pop_file), "brain_mask")]),
                (betas_out, roi, [(("betas_files", pop_file), "reference_file")]),
                (roi, extract, [("roi_file", "roi_file")]),
                (roi, outputnode, [("roi_file", f"{target}_roi_file")]),
            ])  # fmt: skip
        split = pe.Node(SplitTrials(test_set=test_set), name=f"split_{target}", mem_gb=2.0)
        fit = pe.Node(
            FitDecoder(
                alphas=alphas,
                n_folds=n_folds,
                cv_groups=cv_groups,
                backend=backend,
                target_label=target,
                roi_label=label,
                metadata=meta,
                use_gpu=use_gpu,
                num_threads=omp_nthreads,
            ),
            name=f"fit_{target}",
            mem_gb=8.0,
            n_procs=omp_nthreads,
        )
        if not fit_intercept:
            fit.inputs.fit_intercept = False
        if progress:  # set only when True: the node's hash stays that of a run without bars
            fit.inputs.progress = True
        predict = pe.Node(PredictDecoder(), name=f"predict_{target}", mem_gb=2.0)
        workflow.connect([
            (betas_out, extract, [("betas_files", "betas_files"),
                                  ("trials_files", "trials_files")]),
            (betas_out, split, [("trials_files", "source_trials_files")]),
            (extract, split, [("data_file", "data_file"), ("trials_file", "trials_file")]),
            (split, fit, [("train_data_file", "train_data_file"),
                          ("train_stimuli_file", "train_stimuli_file"),
                          ("train_groups_file", "train_groups_file")]),
            (features, fit, [(f"{target}_file", "features_file"),
                             ("stimuli_file", "features_stimuli_file")]),
            (fit, predict, [("decoder_file", "decoder_file")]),
            (split, predict, [("test_data_file", "test_data_file"),
                              ("test_stimuli_file", "test_stimuli_file"),
                              ("train_stimuli_file", "train_stimuli_file")]),
            (features, predict, [(f"{target}_file", "features_file"),
                                 ("stimuli_file", "features_stimuli_file")]),
            (fit, outputnode, [("decoder_file", f"{target}_decoder_file"),
                               ("sidecar_file", f"{target}_decoder_sidecar"),
                               ("alpha_counts", f"{target}_alpha_counts")]),
            (predict, outputnode, [("predicted_file", f"{target}_predicted_file"),
                                   ("scores", f"{target}_scores")]),
        ])  # fmt: skip
        if target == chosen[0]:
            workflow.connect([
                (split, outputnode, [("split_info", "split_info"),
                                     ("test_stimuli_file", "test_stimuli_file"),
                                     ("train_stimuli_file", "train_stimuli_file")]),
            ])  # fmt: skip
    return workflow


def set_participant_inputs(
    wf: pe.Workflow,
    participant,
    model: str,
    precomputed: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """Fill the ``inputnode`` of an :func:`init_decoding_wf` workflow from a participant.

    Parameters
    ----------
    wf : nipype.pipeline.engine.Workflow
        A decoding workflow (``precomputed_betas=True`` when ``precomputed`` is given).
    participant : nipype_brainrecon.bids.ParticipantInputs
        The participant's runs, ROI segmentation, stimuli and captions.
    model : str
        Model folder or hub id (z and c features).
    precomputed : mapping, optional
        ``betas_files`` and ``trials_files``: betas made elsewhere (no GLM); the runs' masks are
        passed only where every run has one.
    """
    inputs = wf.inputs.inputnode
    runs = participant.runs
    if precomputed:
        inputs.betas_files = [str(p) for p in precomputed["betas_files"]]
        inputs.trials_files = [str(p) for p in precomputed["trials_files"]]
        if all(getattr(r, "mask", None) for r in runs):
            inputs.mask_files = [str(r.mask) for r in runs]
    else:
        inputs.bold_files = [str(r.bold) for r in runs]
        inputs.events_files = [str(r.events_file) for r in runs]
        inputs.confounds_files = [str(r.confounds) for r in runs]
        inputs.mask_files = [str(r.mask) for r in runs]
        inputs.run_labels = [str(r.run or i + 1) for i, r in enumerate(runs)]
    inputs.dseg_file = str(participant.roi_dseg)
    inputs.labels_file = str(participant.roi_labels_file)
    inputs.stimuli_dir = str(participant.stimuli_dir)
    inputs.captions_file = str(participant.captions_file)
    inputs.dataset_dir = str(participant.bids_dir)
    inputs.model = str(model)
