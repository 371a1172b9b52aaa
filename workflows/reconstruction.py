"""Reconstruction and evaluation workflows."""

from __future__ import annotations

from collections.abc import Sequence

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from nipype_brainrecon.config import DEFAULTS
from nipype_brainrecon.interfaces.reconstruction import (
    ConcatenateImages,
    Evaluate,
    Reconstruct,
    ShuffleRows,
)
from nipype_brainrecon.workflows.connections import pop_file, second


def _chunk_ids(stimuli_file, n_chunks):
    import pandas as pd

    ids = pd.read_csv(stimuli_file, sep="\t", dtype={"stim_id": str})["stim_id"].tolist()
    n_chunks = max(1, min(int(n_chunks), len(ids)))
    size = -(-len(ids) // n_chunks)
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def init_reconstruction_wf(
    *,
    mode: str = DEFAULTS.reconstruction.mode,
    n_samples: int = DEFAULTS.reconstruction.n_samples,
    strength: float = DEFAULTS.reconstruction.strength,
    num_inference_steps: int = DEFAULTS.reconstruction.num_inference_steps,
    guidance_scale: float = DEFAULTS.reconstruction.guidance_scale,
    seed: int = DEFAULTS.seed,
    batch_size: int = DEFAULTS.reconstruction.batch_size,
    n_chunks: int = DEFAULTS.reconstruction.n_chunks,
    shuffled_baseline: bool = True,
    baseline_samples: int = 1,
    device: str | None = None,
    use_gpu: bool = False,
    mem_gb: float = 4.0,
    omp_nthreads: int = 1,
    name: str = "reconstruction_wf",
    progress: bool = False,
) -> pe.Workflow:
    """Reconstruct test images from decoded z and c (the paper's recipe by default).

    Parameters
    ----------
    mode, n_samples, strength, num_inference_steps, guidance_scale, seed
        The recipe (paper: ``"z+c"``, 5, 0.8, 50, 5.0, 42); see
        :func:`nipype_brainrecon.diffusion.reconstruct`.
    batch_size : int
        Images × samples per network call.
    n_chunks : int
        Split the test images into this many Reconstruct jobs (a MapNode) that Nipype's
        plugins can run in parallel, e.g. one per GPU node; outputs equal a single job.
    shuffled_baseline : bool
        Also reconstruct from latents shuffled across stimuli (a baseline for the metrics).
    baseline_samples : int
        Samples per image of the shuffled baseline.
    device, use_gpu, mem_gb
        Where the diffusion runs and what the scheduler should reserve.
    omp_nthreads : int
        Threads of each Reconstruct job (its ``n_procs`` and ``num_threads``).
    progress : bool
        A progress bar per Reconstruct job (on a terminal; the CLI sets it).
    name : str
        Workflow name.

    Inputs
    ------
    z_file, c_file, stimuli_file
        Decoded features (.npy) of the test stimuli and the TSV naming their rows.
    model
        diffusers model folder or hub id.

    Outputs
    -------
    images_file, stimuli_file, settings, baseline_images_file

    Examples
    --------
    >>> wf = init_reconstruction_wf(n_chunks=4)
    >>> sorted(wf.list_node_names())
    ['both_features', 'chunks', 'concatenate', 'inputnode', 'outputnode', 'reconstruct', 'reconstruct_shuffled', 'shuffle']
    """
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(
        niu.IdentityInterface(fields=["z_file", "c_file", "stimuli_file", "model"]),
        name="inputnode",
    )
    outputnode = pe.Node(
        niu.IdentityInterface(
            fields=["images_file", "stimuli_file", "settings", "baseline_images_file"]
        ),
        name="outputnode",
    )
    recipe = dict(
        mode=mode,
        strength=strength,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        seed=seed,
        batch_size=batch_size,
        use_gpu=use_gpu,
        num_threads=omp_nthreads,
    )
    if device:
        recipe["device"] = device
    if progress:  # set only when True: the nodes' hash stays that of a run without bars
        recipe["progress"] = True
    chunks = pe.Node(
        niu.Function(function=_chunk_ids, input_names=["stimuli_file", "n_chunks"]),
        name="chunks",
        mem_gb=0.5,
        run_without_submitting=True,
    )
    chunks.inputs.n_chunks = n_chunks
    reconstruct = pe.MapNode(
        Reconstruct(n_samples=n_samples, **recipe),
        iterfield=["stim_ids"],
        name="reconstruct",
        mem_gb=mem_gb,
        n_procs=omp_nthreads,
    )
    concatenate = pe.Node(ConcatenateImages(), name="concatenate", mem_gb=mem_gb)
    workflow.connect([
        (inputnode, chunks, [("stimuli_file", "stimuli_file")]),
        (chunks, reconstruct, [("out", "stim_ids")]),
        (inputnode, reconstruct, [("z_file", "z_file"), ("c_file", "c_file"),
                                  ("stimuli_file", "stimuli_file"), ("model", "model")]),
        (reconstruct, concatenate, [("images_file", "images_files"),
                                    ("stimuli_file", "stimuli_files")]),
        (concatenate, outputnode, [("images_file", "images_file"),
                                   ("stimuli_file", "stimuli_file")]),
        (reconstruct, outputnode, [(("settings", pop_file), "settings")]),
    ])  # fmt: skip
    if shuffled_baseline:
        both = pe.Node(niu.Merge(2), name="both_features", mem_gb=0.5, run_without_submitting=True)
        shuffle = pe.Node(ShuffleRows(seed=seed), name="shuffle", mem_gb=1.0)
        shuffled = pe.Node(
            Reconstruct(n_samples=baseline_samples, **recipe),
            name="reconstruct_shuffled",
            mem_gb=mem_gb,
            n_procs=omp_nthreads,
        )
        workflow.connect([
            (inputnode, both, [("z_file", "in1"), ("c_file", "in2")]),
            (both, shuffle, [("out", "in_files")]),
            (shuffle, shuffled, [(("out_files", pop_file), "z_file"),
                                 (("out_files", second), "c_file")]),
            (inputnode, shuffled, [("stimuli_file", "stimuli_file"), ("model", "model")]),
            (shuffled, outputnode, [("images_file", "baseline_images_file")]),
        ])  # fmt: skip
    return workflow


def init_evaluation_wf(
    *,
    extractors: Sequence[str] = DEFAULTS.evaluation.extractors,
    size: int = DEFAULTS.evaluation.eval_size,
    name: str = "evaluation_wf",
) -> pe.Workflow:
    """Score reconstructions against the seen images, with chance levels and baselines.

    Inputs
    ------
    images_file, stimuli_file
        Reconstructions (n, S, H, W, 3) and the TSV naming their rows.
    stim_files
        Dict stim_id → path of the seen image.
    mean_image_ids
        Training stimuli whose mean image is the trivial baseline.
    baseline_images_file
        Reconstructions from shuffled latents (optional baseline).

    Outputs
    -------
    metrics_file, metrics
        The metrics table (TSV) and its content.
    per_image_file
        Each test image's scores (TSV: ``stim_id``, then one column per metric).

    Examples
    --------
    >>> sorted(init_evaluation_wf().list_node_names())
    ['evaluate', 'inputnode', 'outputnode']
    """
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(
        niu.IdentityInterface(
            fields=[
                "images_file",
                "stimuli_file",
                "stim_files",
                "mean_image_ids",
                "baseline_images_file",
            ]
        ),
        name="inputnode",
    )
    outputnode = pe.Node(
        niu.IdentityInterface(fields=["metrics_file", "per_image_file", "metrics"]),
        name="outputnode",
    )
    evaluate = pe.Node(
        Evaluate(extractors=list(extractors), size=size), name="evaluate", mem_gb=4.0
    )
    workflow.connect([
        (inputnode, evaluate, [("images_file", "images_file"),
                               ("stimuli_file", "stimuli_file"),
                               ("stim_files", "stim_files"),
                               ("mean_image_ids", "mean_image_ids"),
                               (("baseline_images_file", _shuffled_baseline),
                                "baseline_images_files")]),
        (evaluate, outputnode, [("metrics_file", "metrics_file"),
                                ("per_image_file", "per_image_file"),
                                ("metrics", "metrics")]),
    ])  # fmt: skip
    return workflow


def _shuffled_baseline(path):
    return {"shuffled latents": path} if path else {}
