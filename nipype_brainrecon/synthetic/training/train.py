"""The whole training run: build the demo model, train both phases, score held-out scenes, save.

:func:`train_demo_model` is what ``tools/train_demo_model.py`` calls; the phases themselves are in
:mod:`.vae` and :mod:`.unet`, the model card in :mod:`.model_card`.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...io import atomic_directory, atomic_write_text
from ..stimuli import Scene
from .config import DemoTrainingConfig
from .data import render_images, scene_caption_table, stable_seed, tokenize, training_scenes
from .model_card import write_model_card
from .optim import Log
from .report import PhaseLog, TrainingReport
from .unet import diffusion_validation_loss, train_unet
from .vae import encode_latent_pool, train_vae, vae_reconstruction_scores

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

__all__ = ["train_demo_model"]


def _count(module: Any) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def _environment(threads: int) -> dict[str, Any]:
    import diffusers
    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "threads": int(threads),
    }


@dataclass
class _Models:
    """The demo model's parts, and the folder they were first saved to (random weights)."""

    initial: Path
    vae: Any
    unet: Any
    text_encoder: Any
    tokenizer: Any


def train_demo_model(
    out_dir: str | os.PathLike,
    config: DemoTrainingConfig | None = None,
    *,
    overwrite: bool = False,
    log: Log | None = None,
) -> TrainingReport:
    """Build, train and save the demo latent diffusion model (a diffusers folder).

    Steps: learn the tokenizer from the training captions and build random weights
    (:func:`nipype_brainrecon.diffusion.models.build_tiny_sd`, ``demo`` profile with ``config.sizes``);
    train the VAE (:func:`train_vae`); set the latent scaling factor so that the pool's scaled
    latents have std ``config.latent_std_target``; train the U-Net with the text encoder (:func:`train_unet`); score held-out scenes;
    save with ``save_pretrained`` (safetensors) plus ``brainrecon_model.json`` (sizes and the
    training report) and a model card ``README.md``. The folder is written whole or not at all.

    Parameters
    ----------
    out_dir : path
        Folder to create.
    config : DemoTrainingConfig, optional
        Default: the settings of the shipped model.
    overwrite : bool
        Replace an existing ``out_dir``.
    log : callable, optional
        Receives progress lines (e.g. ``print``).

    Returns
    -------
    TrainingReport
    """
    import torch

    config = config or DemoTrainingConfig()
    say = log or (lambda _msg: None)
    started, cpu_started = time.time(), time.process_time()
    old_threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(int(config.threads))
    try:
        with tempfile.TemporaryDirectory() as scratch, torch.random.fork_rng(devices=[]):
            torch.manual_seed(stable_seed(config.seed, "torch-global"))
            models, report = _train(Path(scratch), config, started, log, say)
            with atomic_directory(out_dir, overwrite=overwrite) as tmp:
                _save(tmp, models, report, config, started, cpu_started)
    finally:
        torch.set_num_threads(old_threads)
    say(
        f"saved {Path(out_dir)}: {report.seconds / 60:.1f} min wall-clock, "
        f"{report.cpu_seconds / 60:.1f} min CPU"
    )
    return report


def _train(
    scratch: Path, config: DemoTrainingConfig, started: float, log: Log | None, say: Log
) -> tuple[_Models, TrainingReport]:
    """Build the model, train both phases and score them on held-out scenes."""
    import torch

    pool = training_scenes(config.n_scenes, config.seed, "pool")
    captions = scene_caption_table(pool)
    models = _build(scratch, config, captions, say)
    vae = models.vae
    held_out = render_images(training_scenes(64, config.seed, "held-out"), config.resolution)
    vae_before = vae_reconstruction_scores(vae, held_out)["psnr"]
    vae_log = _train_vae_phase(vae, config, started, log, say)
    mean, std, latent_std, scaling = _latent_pool(vae, pool, config, say)

    caption_ids = torch.stack([tokenize(models.tokenizer, caps) for caps in captions])
    empty_ids = tokenize(models.tokenizer, [""])
    held_latents, held_ids = _held_out_conditions(models, held_out, config, scaling)
    val_before = diffusion_validation_loss(
        models.unet, models.text_encoder, held_latents, held_ids, seed=config.seed
    )
    say(
        f"U-Net + text encoder: {config.unet_steps} steps of {config.unet_batch_size}"
        f" latents (held-out loss before: {val_before:.4f})"
    )
    unet_log = train_unet(
        models.unet,
        models.text_encoder,
        mean,
        std,
        caption_ids,
        empty_ids,
        config,
        scaling_factor=scaling,
        deadline=started + 60 * config.max_minutes if config.max_minutes else None,
        log=log,
    )
    val_after = diffusion_validation_loss(
        models.unet, models.text_encoder, held_latents, held_ids, seed=config.seed
    )
    metrics = {f"vae_{k}": v for k, v in vae_reconstruction_scores(vae, held_out).items()}
    metrics.update(
        {
            "vae_psnr_before": vae_before,
            "latent_std": latent_std,
            "diffusion_val_loss_before": val_before,
            "diffusion_val_loss_after": val_after,
        }
    )
    say(
        f"held-out: VAE PSNR {metrics['vae_psnr']:.2f} dB (mean image "
        f"{metrics['vae_baseline_psnr']:.2f} dB), diffusion loss {val_before:.4f} -> "
        f"{val_after:.4f}"
    )
    return models, _report(config, models, vae_log, unet_log, scaling, metrics)


def _build(
    scratch: Path, config: DemoTrainingConfig, captions: list[list[str]], say: Log
) -> _Models:
    """Learn the tokenizer from the captions and build the model with random weights."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from ...diffusion.models import build_tiny_sd

    say(f"building the model (tokenizer from {sum(map(len, captions))} captions)")
    initial = build_tiny_sd(
        scratch / "initial",
        profile="demo",
        seed=config.seed,
        captions=[c for caps in captions for c in caps],
        vocab_size=config.vocab_size,
        **config.model_sizes(),
    )
    return _Models(
        initial=initial,
        vae=AutoencoderKL.from_pretrained(initial, subfolder="vae"),
        unet=UNet2DConditionModel.from_pretrained(initial, subfolder="unet"),
        text_encoder=CLIPTextModel.from_pretrained(initial, subfolder="text_encoder"),
        tokenizer=CLIPTokenizer.from_pretrained(initial, subfolder="tokenizer"),
    )


def _train_vae_phase(
    vae: Any, config: DemoTrainingConfig, started: float, log: Log | None, say: Log
) -> PhaseLog:
    """Train the VAE within its share of the time cap, then freeze it."""
    vae_deadline = None
    if config.max_minutes:
        vae_deadline = started + 60 * config.max_minutes * config.vae_time_share
    say(f"VAE: {config.vae_steps} steps of {config.vae_batch_size} fresh scenes")
    vae_log = train_vae(vae, config, deadline=vae_deadline, log=log)
    vae.requires_grad_(False)
    return vae_log


def _latent_pool(
    vae: Any, pool: list[Scene], config: DemoTrainingConfig, say: Log
) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """Encode the pool; set the VAE's scaling factor from the latents' std.

    Returns the pool's posterior mean and std (unscaled), the std of the means, and the scaling
    factor (rounded to 5 significant digits, as stored in the VAE config).
    """
    say(f"encoding {len(pool)} scenes for the diffusion phase")
    images = render_images(pool, config.resolution)
    mean, std = encode_latent_pool(vae, images)
    del images
    latent_std = float(mean.std())
    scaling = float(f"{config.latent_std_target / latent_std:.5g}")
    vae.register_to_config(scaling_factor=scaling)
    say(f"latent std {latent_std:.4f}: scaling factor {scaling}")
    return mean, std, latent_std, scaling


def _held_out_conditions(
    models: _Models, held_out: np.ndarray, config: DemoTrainingConfig, scaling: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled latents (posterior means) and caption token ids of the held-out scenes."""
    import torch

    held_scenes = training_scenes(64, config.seed, "held-out")
    held_mean, _ = encode_latent_pool(models.vae, held_out)
    held_ids = torch.stack(
        [tokenize(models.tokenizer, caps) for caps in scene_caption_table(held_scenes)]
    )
    return held_mean * scaling, held_ids


def _report(
    config: DemoTrainingConfig,
    models: _Models,
    vae_log: PhaseLog,
    unet_log: PhaseLog,
    scaling: float,
    metrics: dict[str, float],
) -> TrainingReport:
    """The run's report; its times are set when the model is saved."""
    import torch

    return TrainingReport(
        config=config.to_dict(),
        vae=vae_log,
        unet=unet_log,
        seconds=0.0,
        cpu_seconds=0.0,
        scaling_factor=scaling,
        metrics=metrics,
        parameters={
            "vae": _count(models.vae),
            "unet": _count(models.unet),
            "text_encoder": _count(models.text_encoder),
        },
        environment=_environment(torch.get_num_threads()),
    )


def _save(
    tmp: Path,
    models: _Models,
    report: TrainingReport,
    config: DemoTrainingConfig,
    started: float,
    cpu_started: float,
) -> None:
    """Write the trained model into ``tmp`` (the output folder being built)."""
    for item in Path(models.initial).iterdir():
        if item.is_dir():
            shutil.copytree(item, tmp / item.name)
        else:
            shutil.copy2(item, tmp / item.name)
    for name, module in (
        ("vae", models.vae),
        ("unet", models.unet),
        ("text_encoder", models.text_encoder),
    ):
        shutil.rmtree(tmp / name)
        module.save_pretrained(tmp / name, safe_serialization=True)
    report.seconds = time.time() - started
    report.cpu_seconds = time.process_time() - cpu_started
    meta_path = tmp / "brainrecon_model.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    meta.update({"kind": "trained demo model", "resolution": config.resolution})
    meta["training"] = report.to_dict()
    atomic_write_text(meta_path, json.dumps(meta, indent=2) + "\n")
    write_model_card(tmp, report)
    for path in tmp.rglob("*"):  # temporary files are private; a package's are not
        path.chmod(0o755 if path.is_dir() else 0o644)
