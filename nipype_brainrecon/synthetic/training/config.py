"""Settings of the demo model's training, and the sizes of the shipped model."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...errors import UsageError

__all__ = ["DEMO_MODEL_DIR", "DEMO_SIZES", "DemoTrainingConfig"]

#: Model sizes of the shipped demo model (fields of ``models.TinySDConfig`` over the ``demo``
#: profile); ``sample_size`` is set from the resolution.
DEMO_SIZES: dict[str, Any] = {
    "text_hidden_size": 128,
    "text_layers": 2,
    "text_heads": 4,
    "text_intermediate_size": 256,
    "unet_block_channels": (64, 128),
    "unet_layers_per_block": 1,
    "unet_attention_head_dim": 8,
    "unet_norm_groups": 32,
    "vae_block_channels": (16, 32, 64, 64),
    "vae_norm_groups": 16,
}

#: The shipped demo model (a diffusers folder inside the package).
DEMO_MODEL_DIR = Path(__file__).resolve().parents[2] / "data" / "demo_model"


@dataclasses.dataclass(frozen=True)
class DemoTrainingConfig:
    """Settings of :func:`train_demo_model` (the defaults made the shipped model).

    Attributes
    ----------
    seed : int
        Seeds the initial weights, the training scenes, the noise and every random choice.
    resolution : int
        Image side in pixels (a multiple of 8); the latents are ``resolution / 8`` on a side.
    sizes : mapping
        ``TinySDConfig`` fields over the ``demo`` profile (see :data:`DEMO_SIZES`).
    vae_steps, vae_batch_size, vae_lr, kl_weight
        VAE training: steps, images per step (fresh scenes each step), peak learning rate,
        weight of the KL term (per latent element, against mean L1 + L2 per pixel).
    foreground_weight : float
        Loss weight of object pixels relative to background pixels in the VAE phase.
    latent_std_target : float
        Std of the scaled latents: ``scaling_factor = latent_std_target / std(latents)``. SD v1
        scales its 64 x 64 latents to about unit std; at the demo's 8 x 8 latents the same noise
        level hides the layout, because each object covers 64 times fewer latent values. Measured
        on held-out stimuli, a likelihood oracle tells a stimulus's 0.8-noised latent (DDIM step
        781) from another stimulus's in 95.5 % of pairs at std 1, 99.4 % at std 2 (the figure
        16 x 16 latents give at std 1), so img2img at the paper's strength keeps the layout as
        SD's does. Scaling the signal up is the resolution-dependent SNR shift of "simple
        diffusion" (Hoogeboom et al. 2023); the noise schedule itself stays SD v1's.
    n_scenes : int
        Size of the fixed pool of scenes the U-Net learns from.
    unet_steps, unet_batch_size, unet_lr, text_lr
        Diffusion training: steps, latents per step, peak learning rates of the U-Net and of
        the text encoder.
    caption_dropout : float
        Probability of the empty prompt instead of a caption (classifier-free guidance).
    caption_mean_prob : float
        Probability of conditioning on the mean hidden states of 2 to 6 captions of the scene.
    min_snr_gamma : float or None
        Min-SNR loss weighting (``min(SNR, gamma) / SNR``); ``None`` for the plain loss.
    ema_decay : float
        Decay of the moving average of the U-Net and text-encoder weights that is saved.
    warmup_steps : int
        Linear learning-rate warm-up of each phase; then a cosine decay to 10 %.
    vocab_size : int or None
        Tokenizer vocabulary size (``None``: as many merges as occur at least twice).
    threads : int or None
        torch CPU threads during training (``None``: leave torch's setting). Results are
        bit-reproducible for a fixed thread count; the default, 1, is also the fastest on a
        machine shared with other work (threads that wait on each other stall).
    max_minutes : float or None
        Wall-clock cap: each phase stops early when its share is spent (recorded in the report;
        the step count, and so the weights, then depend on the machine's speed).
    vae_time_share : float
        Share of ``max_minutes`` given to the VAE phase.
    log_every : int
        Steps between loss records (and log lines).
    """

    seed: int = 0
    resolution: int = 64
    sizes: Mapping[str, Any] = dataclasses.field(default_factory=lambda: dict(DEMO_SIZES))
    vae_steps: int = 2500
    vae_batch_size: int = 8
    vae_lr: float = 1e-3
    kl_weight: float = 1e-6
    foreground_weight: float = 5.0
    latent_std_target: float = 2.0
    n_scenes: int = 6000
    unet_steps: int = 2500
    unet_batch_size: int = 32
    unet_lr: float = 2e-3
    text_lr: float = 3e-4
    caption_dropout: float = 0.1
    caption_mean_prob: float = 0.3
    min_snr_gamma: float | None = 5.0
    ema_decay: float = 0.999
    warmup_steps: int = 100
    vocab_size: int | None = None
    threads: int | None = 1
    max_minutes: float | None = None
    vae_time_share: float = 0.4
    log_every: int = 100

    def __post_init__(self) -> None:
        if self.resolution < 16 or self.resolution % 8:
            raise UsageError(f"resolution={self.resolution}: use a multiple of 8, at least 16")
        for name in ("vae_steps", "unet_steps"):
            if int(getattr(self, name)) < 0:
                raise UsageError(f"{name}={getattr(self, name)}: must be 0 or more")
        for name in ("vae_batch_size", "unet_batch_size", "n_scenes", "log_every"):
            if int(getattr(self, name)) < 1:
                raise UsageError(f"{name}={getattr(self, name)}: must be at least 1")
        for name in ("caption_dropout", "caption_mean_prob", "vae_time_share"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise UsageError(f"{name}={getattr(self, name)}: must lie in [0, 1]")
        if self.caption_dropout + self.caption_mean_prob > 1.0:
            raise UsageError("caption_dropout + caption_mean_prob: must not exceed 1")
        if not 0.0 <= self.ema_decay < 1.0:
            raise UsageError(f"ema_decay={self.ema_decay}: must lie in [0, 1)")
        if not self.latent_std_target > 0:
            raise UsageError(f"latent_std_target={self.latent_std_target}: must be positive")
        if self.foreground_weight < 1.0:
            raise UsageError(f"foreground_weight={self.foreground_weight}: must be at least 1")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise UsageError(f"max_minutes={self.max_minutes}: must be positive")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"threads={self.threads}: must be at least 1")

    def model_sizes(self) -> dict[str, Any]:
        """``TinySDConfig`` overrides for ``build_tiny_sd``, with the U-Net sample size."""
        sizes = {k: (tuple(v) if isinstance(v, list) else v) for k, v in self.sizes.items()}
        sizes["sample_size"] = self.resolution // 8
        return sizes

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        out = dataclasses.asdict(self)
        out["sizes"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.sizes.items()}
        return out
