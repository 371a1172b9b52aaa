"""What reconstruction needs to know about a pipeline's parts: latent, image and text shapes."""

from __future__ import annotations

from typing import Any

from ..errors import UsageError


class PipelineShapes:
    """What :func:`reconstruct` needs to know about a pipeline's parts."""

    def __init__(self, pipe: Any) -> None:
        for part in ("unet", "vae", "scheduler"):
            if getattr(pipe, part, None) is None:
                raise UsageError(
                    f"pipe: has no '{part}'; give a Stable Diffusion pipeline "
                    "(nipype_brainrecon.diffusion.models.load_pipeline)"
                )
        unet, vae = pipe.unet, pipe.vae
        self.latent_channels = int(vae.config.latent_channels)
        self.vae_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.scaling = float(vae.config.scaling_factor)
        size = unet.config.sample_size
        side_h, side_w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        self.latent_hw = (side_h, side_w)
        self.native_hw = (side_h * self.vae_factor, side_w * self.vae_factor)
        self.hidden = int(unet.config.cross_attention_dim)
        tokenizer = getattr(pipe, "tokenizer", None)
        encoder = getattr(pipe, "text_encoder", None)
        if tokenizer is not None:
            self.tokens: int | None = int(tokenizer.model_max_length)
        elif encoder is not None:
            self.tokens = int(encoder.config.max_position_embeddings)
        else:
            self.tokens = None  # taken from uncond_embedding
        param = next(unet.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.vae_dtype = next(vae.parameters()).dtype


def native_size(pipe: Any) -> tuple[int, int]:
    """The image size (height, width) the model generates: U-Net sample size x VAE factor.

    512 x 512 for Stable Diffusion v1.
    """
    return PipelineShapes(pipe).native_hw
