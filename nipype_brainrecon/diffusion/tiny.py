"""Small random-weight Stable-Diffusion-shaped models, so tests and demos run on CPU offline.

:func:`build_tiny_sd` writes a diffusers img2img folder with the classes of Stable Diffusion v1
(``AutoencoderKL``, ``UNet2DConditionModel``, ``CLIPTextModel``, a CLIP tokenizer, DDIM with
SD v1's settings) at the sizes of a :class:`TinySDConfig` (named presets in :data:`PROFILES`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..io import atomic_directory, atomic_write_bytes, atomic_write_text
from .loading import quiet_torchvision_fallback
from .tokenizer import build_clip_tokenizer

#: SD v1's DDIM settings (CompVis DDIM sampler: uniform steps + 1, alpha_prev of step 0 kept).
SD_V1_SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}


@dataclasses.dataclass(frozen=True)
class TinySDConfig:
    """Sizes of a small Stable-Diffusion-shaped model (see :func:`build_tiny_sd`).

    The VAE needs 4 blocks for SD's 8x down-sampling; channel counts must be multiples of the
    group-norm group counts; ``text_hidden_size`` must be a multiple of ``text_heads``.
    """

    text_hidden_size: int = 768
    text_layers: int = 1
    text_heads: int = 12
    text_intermediate_size: int = 512
    max_text_tokens: int = 77
    unet_block_channels: tuple[int, ...] = (32, 64)
    unet_layers_per_block: int = 1
    unet_attention_head_dim: int = 8
    unet_norm_groups: int = 32
    sample_size: int = 64
    vae_block_channels: tuple[int, ...] = (16, 16, 32, 32)
    vae_layers_per_block: int = 1
    vae_norm_groups: int = 8
    latent_channels: int = 4
    scaling_factor: float = 0.18215

    def __post_init__(self) -> None:
        if self.text_hidden_size % self.text_heads:
            raise UsageError(
                f"text_hidden_size={self.text_hidden_size}: must be a multiple of "
                f"text_heads={self.text_heads}"
            )
        for name, channels, groups in (
            ("unet_block_channels", self.unet_block_channels, self.unet_norm_groups),
            ("vae_block_channels", self.vae_block_channels, self.vae_norm_groups),
        ):
            if any(ch % groups for ch in channels):
                raise UsageError(f"{name}={channels}: each must be a multiple of {groups} groups")
        if len(self.unet_block_channels) < 2:
            raise UsageError("unet_block_channels: give at least 2 blocks")
        if len(self.vae_block_channels) < 1:
            raise UsageError("vae_block_channels: give at least 1 block")

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae_block_channels) - 1)


#: Named size presets. ``sd-v1-shapes`` keeps SD v1's interfaces (77x768 text, 4-channel latents,
#: VAE factor 8, scaling 0.18215) with tiny widths, for fast tests; ``demo`` has a narrower
#: two-layer text encoder (128), a wider VAE and a 128 px default: a starting point for the
#: trained demo model (override any field, see :class:`TinySDConfig`).
PROFILES: dict[str, TinySDConfig] = {
    "sd-v1-shapes": TinySDConfig(),
    "demo": TinySDConfig(
        text_hidden_size=128,
        text_layers=2,
        text_heads=4,
        text_intermediate_size=256,
        unet_block_channels=(32, 64),
        sample_size=16,
        vae_block_channels=(32, 32, 64, 64),
        vae_norm_groups=32,
    ),
}


def tiny_sd_config(profile: str = "sd-v1-shapes", **overrides: Any) -> TinySDConfig:
    """The :class:`TinySDConfig` of ``profile`` with ``overrides`` (field names) applied."""
    if profile not in PROFILES:
        raise UsageError(f"profile={profile!r}: unknown; choose one of {sorted(PROFILES)}")
    fields = {f.name for f in dataclasses.fields(TinySDConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise UsageError(f"{', '.join(unknown)}: not a TinySDConfig field; use {sorted(fields)}")
    for key in ("unet_block_channels", "vae_block_channels"):
        if key in overrides:
            overrides[key] = tuple(int(v) for v in overrides[key])
    return dataclasses.replace(PROFILES[profile], **overrides)


def build_tiny_sd(
    out_dir: str | os.PathLike,
    *,
    profile: str = "sd-v1-shapes",
    seed: int = 0,
    captions: Iterable[str] | None = None,
    vocab_size: int | None = None,
    overwrite: bool = False,
    **sizes: Any,
) -> Path:
    """Write a small random-weight Stable-Diffusion-shaped img2img model as a diffusers folder.

    The parts are the classes of Stable Diffusion v1: ``AutoencoderKL`` (4-channel latents,
    8x down-sampling with 4 blocks, scaling factor 0.18215), ``UNet2DConditionModel`` with
    cross-attention on the text states, ``CLIPTextModel``, a CLIP tokenizer
    (:func:`build_clip_tokenizer`) and ``DDIMScheduler`` with SD v1's settings. Saved with
    ``save_pretrained`` (``model_index.json``, safetensors), it loads with :func:`load_pipeline`.

    Parameters
    ----------
    out_dir : path
        Folder to create; written whole or not at all.
    profile : {"sd-v1-shapes", "demo"}
        Size preset (see :data:`PROFILES`).
    seed : int
        Seeds the random weights (each part from its own offset, so resizing one part leaves the
        others' weights unchanged). The global torch RNG state is left as it was.
    captions : iterable of str, optional
        Learn the tokenizer's merges from these (else a byte-only vocabulary of 514 tokens).
    vocab_size : int, optional
        Tokenizer vocabulary size with captions.
    overwrite : bool
        Replace an existing ``out_dir``.
    **sizes
        :class:`TinySDConfig` fields overriding the profile (e.g. ``text_hidden_size=64``).

    Returns
    -------
    pathlib.Path
        The model folder.
    """
    import tempfile

    import torch

    quiet_torchvision_fallback()  # the pipeline's module imports transformers' image processors
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionImg2ImgPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    cfg = tiny_sd_config(profile, **sizes)
    with tempfile.TemporaryDirectory() as scratch:
        tok_dir = build_clip_tokenizer(
            Path(scratch) / "tokenizer",
            captions=captions,
            vocab_size=vocab_size,
            model_max_length=cfg.max_text_tokens,
        )
        tokenizer = CLIPTokenizer.from_pretrained(tok_dir, local_files_only=True)
        # vocab.json + merges.txt beside tokenizer.json keep older (slow) CLIPTokenizers working.
        slow_files = {name: (tok_dir / name).read_bytes() for name in ("vocab.json", "merges.txt")}

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=cfg.text_hidden_size,
                intermediate_size=cfg.text_intermediate_size,
                projection_dim=cfg.text_hidden_size,
                num_hidden_layers=cfg.text_layers,
                num_attention_heads=cfg.text_heads,
                max_position_embeddings=cfg.max_text_tokens,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
        torch.manual_seed(seed + 1)
        n_blocks = len(cfg.unet_block_channels)
        unet = UNet2DConditionModel(
            sample_size=cfg.sample_size,
            in_channels=cfg.latent_channels,
            out_channels=cfg.latent_channels,
            down_block_types=("CrossAttnDownBlock2D",) * (n_blocks - 1) + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n_blocks - 1),
            block_out_channels=cfg.unet_block_channels,
            layers_per_block=cfg.unet_layers_per_block,
            attention_head_dim=cfg.unet_attention_head_dim,
            norm_num_groups=cfg.unet_norm_groups,
            cross_attention_dim=cfg.text_hidden_size,
        )
        torch.manual_seed(seed + 2)
        n_vae = len(cfg.vae_block_channels)
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * n_vae,
            up_block_types=("UpDecoderBlock2D",) * n_vae,
            block_out_channels=cfg.vae_block_channels,
            layers_per_block=cfg.vae_layers_per_block,
            norm_num_groups=cfg.vae_norm_groups,
            latent_channels=cfg.latent_channels,
            sample_size=cfg.sample_size * cfg.vae_scale_factor,
            scaling_factor=cfg.scaling_factor,
        )
    scheduler = DDIMScheduler(**SD_V1_SCHEDULER)
    pipe = StableDiffusionImg2ImgPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    meta = {
        "profile": profile,
        "seed": seed,
        "sizes": dataclasses.asdict(cfg),
        "vocab_size": len(tokenizer),
        "vocab_learnt_from_captions": captions is not None,
    }
    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
        for name, data in slow_files.items():
            atomic_write_bytes(tmp / "tokenizer" / name, data)
        atomic_write_text(tmp / "brainrecon_model.json", json.dumps(meta, indent=2) + "\n")
    return Path(out_dir).absolute()
