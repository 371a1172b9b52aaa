"""How long each stage of a participant will take, and how much memory: a small cost model.

Each stage's time is a measured rate times the size of its work, plus a fixed cost per stage
(starting the node's process, importing torch, loading the model: what dominates a small run).
The rates are measured on the project's benchmark machine (2-core Intel Xeon, 2 threads unless
said; :file:`benchmarks/results/`), the fixed costs on small runs there:

=================  ==========================================================================
stage              rate (source)
=================  ==========================================================================
betas              LSS on 300 volumes × 60 trials × 8000 voxels: 0.107 s OLS, 0.412 s AR(1)
                   (``betas.json``), scaled by volumes × trials × voxels per run
z / c decoder      ridge, 5-fold CV: 3.8e-11 s per cost unit ``n·p·t + max(n,p)·k² + k³``
                   (``k = min(n,p)``; n trials, p voxels, t targets), fitted to the five shapes
                   of ``ridge.json`` and ``nsd_scale.json`` (2.9 s to 478 s, each within 10 %)
reconstruction     per sample and denoising step at batch 8, demo model, 40 × 40 latent:
                   7.3 ms with 1 thread, 5.1 ms with 2 (``reconstruction.json``,
                   ``reconstruction_2threads.json``); scaled by U-Net parameters and latent
                   area (not below 1) for other models; on CUDA 7.7 ms at SD v1 size,
                   64 × 64 latent, float16 (``gpu_reconstruction.json``, H100)
features, evaluation, report   fixed costs and per-image rates of small runs (:data:`DEMO`)
=================  ==========================================================================

An estimate is an order of magnitude for another machine or a hub model run on the CPU; the
stage lines of a run (:mod:`nipype_brainrecon.bids_app.progress`) scale what is left by how the
finished stages compared with their estimates.

>>> round(ridge_seconds(6000, 1500, 6400), 1)  # ridge.json measured 2.9 s
2.8
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DEMO",
    "STAGES",
    "StageEstimate",
    "betas_seconds",
    "diffusion_seconds",
    "estimate_participant",
    "format_seconds",
    "ridge_seconds",
    "unet_parameters",
]

#: The stages of a participant, in the order they start.
STAGES = (
    "betas",
    "features",
    "z decoder",
    "c decoder",
    "reconstruction",
    "evaluation",
    "encoding",
    "report",
)

RIDGE_S_PER_UNIT = 3.8e-11  # ridge.json, nsd_scale.json (2 threads)
BETAS_OLS_S, BETAS_AR1_S, BETAS_UNIT = 0.107, 0.412, 300 * 60 * 8000  # betas.json (1 thread)
DIFFUSION_S_PER_SAMPLE_STEP = {1: 11.698 / 40 / 40, 2: 8.093 / 40 / 40}  # batch 8, demo model
DIFFUSION_REFERENCE_AREA = 40 * 40  # the benchmark's latent (4 × 40 × 40)
CUDA_S_PER_SAMPLE_STEP = 1 / 3.2496 / 40  # H100, SD v1, 64 × 64 latent, batch 8, float16
CUDA_REFERENCE_AREA = 64 * 64
SD_UNET_PARAMETERS = 859_520_964  # gpu_reconstruction.json
DEMO_UNET_PARAMETERS = 3_199_476  # nipype_brainrecon/data/demo_model/unet (12.8 MB float32)

#: Fixed costs per stage (s) and per-image rates, rough values read from the stage lines of
#: the demo and of a one-run participant on the 2-core machine (2026-12-06): the node
#: processes' start, imports and model loading, which dominate a small dataset.
DEMO = {
    "betas_fixed_s": 3.0,
    "features_fixed_s": 6.0,
    "features_per_image_s": 0.02,
    "decoder_fixed_s": 4.0,
    "reconstruction_fixed_s": 8.0,
    "evaluation_fixed_s": 6.0,
    "evaluation_per_image_s": 0.05,
    "encoding_fixed_s": 20.0,
    "report_fixed_s": 4.0,
}


@dataclass(frozen=True)
class StageEstimate:
    """One stage of one participant: seconds, peak memory (bytes) and what sized them."""

    stage: str
    seconds: float
    memory: int
    sizes: str


def format_seconds(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``.

    >>> [format_seconds(s) for s in (4.2, 185, 7620)]
    ['4 s', '3 min 05 s', '2 h 07 min']
    """
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def ridge_seconds(n_trials: int, n_voxels: int, n_targets: int, threads: int = 2) -> float:
    """Seconds of one ridge decoder fit (5-fold CV), from :data:`RIDGE_S_PER_UNIT`."""
    n, p, t = (max(1, int(v)) for v in (n_trials, n_voxels, n_targets))
    k = min(n, p)
    units = n * p * t + max(n, p) * k * k + k**3
    return RIDGE_S_PER_UNIT * units * 2 / max(1, min(int(threads), 2))


def betas_seconds(n_vols: int, n_trials: int, n_voxels: int, noise_model: str = "ols") -> float:
    """Seconds of the LSS betas of one run (without reading the BOLD file)."""
    rate = BETAS_AR1_S if noise_model == "ar1" else BETAS_OLS_S
    return rate * n_vols * n_trials * n_voxels / BETAS_UNIT


def unet_parameters(model: str | os.PathLike) -> int:
    """U-Net parameters of a local diffusers folder (its weights' bytes / bytes per value), or
    SD v1's for a hub id."""
    folder = Path(os.fspath(model)) / "unet"
    if not folder.is_dir():
        return SD_UNET_PARAMETERS
    files = list(folder.glob("*.safetensors")) or list(folder.glob("*.bin"))
    size = sum(f.stat().st_size for f in files)
    per_value = 2 if any("fp16" in f.name for f in files) else 4
    return max(1, size // per_value) if size else SD_UNET_PARAMETERS


def diffusion_seconds(
    n_samples: int,
    denoising_steps: int,
    latent_area: int,
    parameters: int,
    device: str | None = None,
    threads: int = 1,
) -> float:
    """Seconds of ``n_samples`` img2img samples of ``denoising_steps`` steps each.

    The benchmark's rate per sample and step, times the U-Net's parameters against the
    benchmark model's, times the latent area against the benchmark's (not below it on the CPU,
    a quarter of it on CUDA).
    """
    work = max(0, n_samples) * max(0, denoising_steps)
    if str(device or "").startswith("cuda"):
        area = max(0.25, latent_area / CUDA_REFERENCE_AREA)
        return work * CUDA_S_PER_SAMPLE_STEP * parameters / SD_UNET_PARAMETERS * area
    rate = DIFFUSION_S_PER_SAMPLE_STEP[2 if threads >= 2 else 1]
    # a latent smaller than the benchmark's is no faster: the layers' fixed costs dominate
    area = max(1.0, latent_area / DIFFUSION_REFERENCE_AREA)
    return work * rate * parameters / DEMO_UNET_PARAMETERS * area


def _model_bytes(model: str) -> int:
    folder = Path(model)
    if folder.is_dir():
        return sum(f.stat().st_size for f in folder.rglob("*.safetensors")) or 2**30
    return 4 * 2**30  # SD v1 in float32


def estimate_participant(
    sizes: Mapping[str, Any], settings: Mapping[str, Any], *, threads: int = 1
) -> list[StageEstimate]:
    """Time and memory of each stage of one participant.

    Parameters
    ----------
    sizes : mapping
        :func:`nipype_brainrecon.bids_app.preflight.check_participant`'s result (``n_trials``,
        ``n_train``, ``n_test``, ``voxels``, ``targets``, ``decoder_bytes``), with ``runs``: a
        list of ``(n_vols, n_brain_voxels)`` per run (empty for precomputed betas) and
        ``n_stimuli``.
    settings : mapping
        The run's flat settings (``n_samples``, ``num_inference_steps``, ``strength``,
        ``model``, ``device``, ``noise_model``, ``encoding``, ``betas_method``).
    threads : int
        ``--omp-nthreads``.

    Returns
    -------
    list of StageEstimate
        In the order of :data:`STAGES` (``encoding`` only when ``settings["encoding"]``).
    """
    n_trials, n_train, n_test = (int(sizes.get(k, 0)) for k in ("n_trials", "n_train", "n_test"))
    voxels, targets = dict(sizes.get("voxels", {})), dict(sizes.get("targets", {}))
    memory = dict(sizes.get("decoder_bytes", {}))
    runs = list(sizes.get("runs", []))
    n_stimuli = int(sizes.get("n_stimuli", n_trials))
    out = []
    trials_per_run = n_trials / max(1, len(runs))
    betas = sum(
        betas_seconds(v, trials_per_run, b, settings.get("noise_model", "ols")) for v, b in runs
    )
    peak = max((4 * 3 * v * b for v, b in runs), default=0)
    out.append(
        StageEstimate(
            "betas",
            DEMO["betas_fixed_s"] * (1 + len(runs)) + betas,
            peak,
            f"{len(runs)} run(s), {n_trials} trials" if runs else "precomputed",
        )
    )
    model = str(settings.get("model", ""))
    model_bytes = _model_bytes(model)
    scale = unet_parameters(model) / DEMO_UNET_PARAMETERS
    per_image = DEMO["features_per_image_s"] * scale
    out.append(
        StageEstimate(
            "features",
            DEMO["features_fixed_s"] + per_image * n_stimuli,
            model_bytes + 2**28,
            f"{n_stimuli} images and captions",
        )
    )
    for target in ("z", "c"):
        p, t = voxels.get(target, 0), targets.get(target, 0)
        out.append(
            StageEstimate(
                f"{target} decoder",
                DEMO["decoder_fixed_s"] + ridge_seconds(n_train, p, t, threads),
                int(memory.get(target, 0)),
                f"{n_train} trials × {p} voxels → {t} targets",
            )
        )
    samples = int(settings.get("n_samples", 1))
    steps = int(int(settings.get("num_inference_steps", 50)) * float(settings.get("strength", 0.8)))
    area = max(1, targets.get("z", 6400) // 4)
    work = n_test * (samples + 1)  # the samples and the shuffled-latents baseline
    seconds = diffusion_seconds(
        work, steps, area, unet_parameters(model), settings.get("device"), threads
    )
    out.append(
        StageEstimate(
            "reconstruction",
            DEMO["reconstruction_fixed_s"] + seconds,
            2 * model_bytes + 2**29,
            f"{n_test} test images × {samples} samples, {steps} steps",
        )
    )
    size = int(settings.get("eval_size", 425))
    out.append(
        StageEstimate(
            "evaluation",
            DEMO["evaluation_fixed_s"] + DEMO["evaluation_per_image_s"] * work,
            12 * size * size * (work + n_test) + 2**29,
            f"{work + n_test} images",
        )
    )
    if settings.get("encoding"):
        voxels_all = max((b for _, b in runs), default=0)
        out.append(
            StageEstimate(
                "encoding",
                DEMO["encoding_fixed_s"]
                + 3 * ridge_seconds(n_train, targets.get("z", 0), voxels_all, threads),
                int(4 * 3 * n_trials * max(voxels_all, 1)),
                f"{n_trials} trials × {voxels_all} voxels",
            )
        )
    out.append(StageEstimate("report", DEMO["report_fixed_s"], 2**28, f"{work} images"))
    return out


def machine_summary() -> str:
    """``2 CPUs, 23.5 GB memory`` (and the first CUDA device when torch sees one)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    text = f"{cpus} CPUs"
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        text += f", {pages * size / 2**30:.1f} GB memory"
    except (ValueError, OSError, AttributeError):
        pass
    return text


def total_seconds(stages: list[StageEstimate]) -> float:
    """Sum of the stages' seconds."""
    return math.fsum(s.seconds for s in stages)
