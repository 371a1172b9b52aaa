"""Between scaled VAE latents and 8-bit images: decoding ``z`` and the img2img init latent.

:func:`decode_latents` is step 1 of the recipe (``z / scaling_factor`` through the VAE decoder);
:func:`init_latents` adds step 2 (resize to the model's native size, re-encode, one seeded
posterior sample per image).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..batching import batches
from .checks import check_int, check_latents
from .sampling import derive_seed, pad_rows, seeded_randn
from .settings import DEFAULT_BATCH_SIZE
from .shapes import PipelineShapes

if TYPE_CHECKING:  # pragma: no cover
    import torch


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """VAE output in [-1, 1], (B, 3, H, W) -> uint8 (B, H, W, 3)."""
    array = x.detach().float().cpu().numpy().transpose(0, 2, 3, 1)
    return (np.clip(array / 2.0 + 0.5, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def resize_images(images: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resize uint8 (B, H, W, 3) images with Lanczos (PIL)."""
    from PIL import Image

    if images.shape[1:3] == tuple(size_hw):
        return images
    height, width = size_hw
    return np.stack(
        [
            np.asarray(
                Image.fromarray(img).resize((width, height), Image.Resampling.LANCZOS),
                dtype=np.uint8,
            )
            for img in images
        ]
    )


def decode_latents(
    pipe: Any,
    z: Any,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    output_size: int | None = None,
) -> np.ndarray:
    """Decode scaled VAE latents ``z`` into 8-bit RGB images (step 1 of the recipe).

    Parameters
    ----------
    pipe : StableDiffusionImg2ImgPipeline
        Its ``vae`` is used (on its device and dtype).
    z : array, shape (n_images, C, h, w) or (n_images, C * s * s)
        Scaled latents (as :func:`nipype_brainrecon.features.encode_images_z` gives them).
    batch_size : int
        Images per VAE call (each call is padded to this many rows).
    output_size : int, optional
        Resize (Lanczos) to ``output_size`` x ``output_size``; default the decoded size (8 h).

    Returns
    -------
    numpy.ndarray
        uint8, shape (n_images, H, W, 3).
    """
    import torch

    shapes = PipelineShapes(pipe)
    latents = check_latents(z, shapes)
    batch_size = check_int(batch_size, "batch_size", 1)
    out: list[np.ndarray] = []
    with torch.inference_mode():
        for rows in batches(len(latents), batch_size):
            out.append(decode_batch(pipe.vae, latents[rows], shapes, batch_size))
    images = (
        np.concatenate(out)
        if out
        else np.empty((0, *(8 * s for s in latents.shape[2:]), 3), dtype=np.uint8)
    )
    if output_size is not None:
        side = check_int(output_size, "output_size", 8)
        images = resize_images(images, (side, side)) if len(images) else images
    return images


def decode_batch(vae: Any, latents: np.ndarray, shapes: PipelineShapes, rows: int) -> np.ndarray:
    """Decode one batch of scaled latents to uint8 images, the call padded to ``rows`` rows."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(latents)) / shapes.scaling
    x = pad_rows(x, rows).to(device=vae.device, dtype=shapes.vae_dtype)
    return to_uint8(vae.decode(x).sample[: len(latents)])


def init_latents(
    pipe: Any,
    z: np.ndarray,
    stim_ids: Sequence[str],
    shapes: PipelineShapes,
    *,
    seed: int,
    batch_size: int,
) -> torch.Tensor:
    """Steps 1-2: z -> image -> native size -> VAE posterior sample x scaling (float32, CPU)."""
    import torch

    vae = pipe.vae
    height, width = shapes.native_hw
    out = torch.empty((len(z), shapes.latent_channels, *shapes.latent_hw), dtype=torch.float32)
    for rows in batches(len(z), batch_size):
        chunk = range(len(z))[rows]
        images = decode_batch(vae, z[rows], shapes, batch_size)
        images = resize_images(images, (height, width))
        x = torch.from_numpy(
            np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32) / 127.5 - 1.0
        )
        x = pad_rows(x, batch_size).to(device=vae.device, dtype=shapes.vae_dtype)
        dist = vae.encode(x).latent_dist
        mean = dist.mean[: len(chunk)].float().cpu()
        std = dist.std[: len(chunk)].float().cpu()
        # One posterior sample per image, shared by its samples (as the authors' code does).
        noise = torch.stack(
            [
                seeded_randn(tuple(mean.shape[1:]), derive_seed(seed, stim_ids[i], "posterior"))
                for i in chunk
            ]
        )
        out[rows] = (mean + std * noise) * shapes.scaling
    return out
