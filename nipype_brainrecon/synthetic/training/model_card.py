"""The model card (``README.md``) of a trained demo model: what it is, how it was trained, how well
it does, what it is for.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...io import atomic_write_text
from .report import PhaseLog, TrainingReport

__all__ = ["write_model_card"]

#: The card's front matter and introduction.
_FRONT = """---
license: apache-2.0
library_name: diffusers
pipeline_tag: image-to-image
tags:
- latent-diffusion
- stable-diffusion-architecture
- demo
- nipype-brainrecon
---

# nipype-brainrecon demo model

A small latent diffusion model with the architecture classes of Stable Diffusion v1, trained from
scratch on the synthetic default stimuli of `nipype_brainrecon.synthetic.stimuli` (one or two coloured shapes
on a uniform background, with captions). It lets the package's demo and tests run the whole
Takagi & Nishimoto (2023) pipeline offline on a CPU. **For demos and tests only**: it knows nothing
but these synthetic scenes.

"""


def write_model_card(folder: str | os.PathLike, report: TrainingReport) -> Path:
    """Write the model card ``README.md`` of a trained demo model folder.

    Parameters
    ----------
    folder : path
        The model folder (already holding its components).
    report : TrainingReport
        From :func:`~nipype_brainrecon.synthetic.training.train_demo_model`.

    Returns
    -------
    pathlib.Path
        The card's path.
    """
    folder = Path(folder)
    res = int(report.config["resolution"])
    text = (
        _FRONT
        + _architecture(report, folder)
        + _training_data(res)
        + _procedure(report)
        + _evaluation(report.metrics)
        + _limits(res)
    )
    return atomic_write_text(folder / "README.md", text)


def _folder_megabytes(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def _losses(phase: PhaseLog) -> str:
    """Up to six of a phase's recorded losses, evenly spread."""
    if not phase.losses:
        return "(no steps)"
    picks = phase.losses
    if len(picks) > 6:
        idx = np.unique(np.linspace(0, len(picks) - 1, 6).round().astype(int))
        picks = [picks[i] for i in idx]
    return ", ".join(f"{s}: {v:.4f}" for s, v in picks)


def _early_note(report: TrainingReport) -> str:
    """A paragraph naming the phases that the time cap stopped (empty if none)."""
    early = [
        name
        for name, phase in (("VAE", report.vae), ("U-Net", report.unet))
        if phase.stopped_by_time
    ]
    return (
        f"\n**Stopped by the time cap** in the {' and '.join(early)} phase: the step count "
        "depended on the machine's speed, so a rerun gives other weights.\n"
        if early
        else ""
    )


def _architecture(report: TrainingReport, folder: Path) -> str:
    cfg = report.config
    sizes = cfg["sizes"]
    res = int(cfg["resolution"])
    m = report.metrics
    side = res // 8
    return f"""## Architecture

| part | class | size |
|---|---|---|
| VAE | `diffusers.AutoencoderKL`, blocks {tuple(sizes["vae_block_channels"])}, 4 latent channels, factor 8 | {report.parameters["vae"]:,} parameters |
| U-Net | `diffusers.UNet2DConditionModel`, blocks {tuple(sizes["unet_block_channels"])}, cross-attention on the text states | {report.parameters["unet"]:,} parameters |
| text encoder | `transformers.CLIPTextModel`, {sizes["text_layers"]} layers, hidden size {sizes["text_hidden_size"]}, 77 tokens | {report.parameters["text_encoder"]:,} parameters |
| tokenizer | `transformers.CLIPTokenizer`, byte-level BPE learnt from the training captions | |
| scheduler | `diffusers.DDIMScheduler`, SD v1 settings (scaled-linear betas 0.00085-0.012, 1000 steps) | |

Native resolution {res} × {res} px; latents **z** are 4 × {side} × {side}; text states **c** are
77 × {sizes["text_hidden_size"]}. The VAE `scaling_factor` is **{report.scaling_factor}**
(= {cfg["latent_std_target"]} / {m["latent_std"]:.4f}, the std of the unscaled training latents),
so scaled latents have std {cfg["latent_std_target"]}. SD v1 scales to about unit std (its
0.18215), but its latents are 64 × 64: at the demo's {side} × {side} each object covers far fewer
latent values, and at unit std the noise of img2img at strength 0.8 hides the layout (a likelihood
oracle tells two held-out stimuli apart from their 0.8-noised latents in 95.5 % of pairs at std 1,
99.4 % at std 2, the figure of 16 × 16 latents at std 1). Scaling the signal up is the
resolution-dependent SNR shift of "simple diffusion" (Hoogeboom et al. 2023); the noise schedule is
SD v1's. Weights: safetensors, {_folder_megabytes(folder):.1f} MB in all.

"""


def _training_data(res: int) -> str:
    return f"""## Training data

Scenes drawn by `nipype_brainrecon.synthetic.stimuli.generate_scenes` (6 shapes, 8 colours, 3 sizes,
4 backgrounds), rendered at {res} px by `render_scene`, each with its 6 caption templates from
`scene_captions`. Scene seeds come from a stream derived from the training seed, disjoint from the
small seeds the simulator uses, so simulated stimuli are held out. Licence of the data: generated by
the package (Apache-2.0); no external images or text.

"""


def _procedure(report: TrainingReport) -> str:
    cfg = report.config
    env = report.environment
    threads = env.get("threads")
    early_note = _early_note(report)
    return f"""## Training procedure

Reproduce with `python tools/train_demo_model.py OUT_DIR --seed {cfg["seed"]}` (same thread count:
{threads}). Seed **{cfg["seed"]}**; every random draw is seeded from it.

1. Tokenizer: BPE merges learnt from the captions of the {cfg["n_scenes"]} pool scenes.
2. VAE: {report.vae.steps} steps × {cfg["vae_batch_size"]} fresh scenes, AdamW (peak lr
   {cfg["vae_lr"]}), loss L1 + L2 (object pixels weighted {cfg["foreground_weight"]} × the background) +
   {cfg["kl_weight"]} × KL per latent element; then frozen.
   Loss: {_losses(report.vae)}.
3. U-Net and text encoder together: {report.unet.steps} steps × {cfg["unet_batch_size"]} latents of
   a pool of {cfg["n_scenes"]} scenes, epsilon prediction with SD v1's noise schedule, min-SNR
   weights (gamma {cfg["min_snr_gamma"]}), AdamW (peak lr {cfg["unet_lr"]} U-Net,
   {cfg["text_lr"]} text encoder), EMA {cfg["ema_decay"]} (the EMA weights are saved). Condition: one
   random caption, the mean text states of 2-6 captions (probability {cfg["caption_mean_prob"]}), or
   the empty prompt (probability {cfg["caption_dropout"]}, for classifier-free guidance).
   Loss (min-SNR weighted): {_losses(report.unet)}.
{early_note}
Cost: **{report.cpu_seconds / 60:.1f} CPU-minutes** in all (VAE {report.vae.cpu_seconds / 60:.1f},
U-Net {report.unet.cpu_seconds / 60:.1f}) with {threads} torch thread(s) on {env.get("cpu")}
({env.get("cpu_count")} cores); wall-clock {report.seconds / 60:.1f} min on that machine, which
was shared with other work. torch {env.get("torch")}, diffusers {env.get("diffusers")},
transformers {env.get("transformers")}.

"""


def _evaluation(m: dict[str, float]) -> str:
    return f"""## Evaluation (64 held-out generated scenes)

| check | model | trivial baseline (mean image) |
|---|---|---|
| VAE reconstruction PSNR | {m["vae_psnr"]:.2f} dB | {m["vae_baseline_psnr"]:.2f} dB |
| VAE reconstruction pixel correlation | {m["vae_pixcorr"]:.3f} | {m["vae_baseline_pixcorr"]:.3f} |
| VAE mean absolute error (0-255) | {m["vae_mae"]:.2f} | {m["vae_baseline_mae"]:.2f} |

Diffusion validation loss (plain epsilon MSE, fixed noise, timesteps spread over 0-999, first
caption): {m["diffusion_val_loss_before"]:.4f} before training, {m["diffusion_val_loss_after"]:.4f}
after. The package's tests (`tests/synthetic/test_demo_model.py`) check reconstruction, that a caption's
colour shows in generated images, and bit-identical output for a fixed seed.

"""


def _limits(res: int) -> str:
    return f"""## Intended use and limits

- Intended: the package's demo, tests and tutorials; checking that a pipeline built for Stable
  Diffusion runs end to end, offline, on a CPU, with numbers that mean something.
- Not intended: any real image reconstruction, natural images, or comparison with published
  results (use Stable Diffusion v1.4 for those).
- Low resolution ({res} px); shapes are approximate; only the vocabulary of the generated captions
  is known.

## Licence

Apache-2.0, like nipype-brainrecon.
"""
