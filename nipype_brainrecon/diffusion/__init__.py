"""Reconstructing images from decoded latents ``z`` and text embeddings ``c`` (img2img diffusion).

The recipe of Takagi & Nishimoto (2023): the decoded ``z`` is decoded by the VAE, resized to the
model's native size and re-encoded (the init latent), noised to ``strength`` of a DDIM schedule
and denoised conditioned on the decoded ``c`` with classifier-free guidance, several seeded
samples per image (see :mod:`~nipype_brainrecon.diffusion.reconstruct` for the steps, the modes
and the reproducibility guarantees).

Modules:

* :mod:`~nipype_brainrecon.diffusion.reconstruct`: :func:`reconstruct`, the recipe;
* :mod:`~nipype_brainrecon.diffusion.settings`: the paper's settings, modes and batch size;
* :mod:`~nipype_brainrecon.diffusion.sampling`: DDIM schedule, seeded noise, fixed-shape batches,
  one guided denoising step;
* :mod:`~nipype_brainrecon.diffusion.latents`: VAE decoding of ``z`` and the init latent;
* :mod:`~nipype_brainrecon.diffusion.shapes`, :mod:`~nipype_brainrecon.diffusion.checks`: what
  the model expects and the checks of the inputs against it;
* :mod:`~nipype_brainrecon.diffusion.writing`: reconstructions as PNG files;
* :mod:`~nipype_brainrecon.diffusion.models`: the model functions, gathered from
  :mod:`~nipype_brainrecon.diffusion.loading` (offline-safe loading),
  :mod:`~nipype_brainrecon.diffusion.folders` (model folders, the shipped demo model),
  :mod:`~nipype_brainrecon.diffusion.identity` (model identity and shapes),
  :mod:`~nipype_brainrecon.diffusion.tiny` (small Stable-Diffusion-shaped models) and
  :mod:`~nipype_brainrecon.diffusion.tokenizer` (a CLIP tokenizer written without a hub).
"""

from __future__ import annotations

from .latents import decode_latents
from .reconstruct import reconstruct
from .sampling import (
    check_steps,
    denoising_timesteps,
    derive_seed,
    fresh_ddim,
    pad_rows,
    seeded_randn,
)
from .settings import DEFAULT_BATCH_SIZE, MODES, PAPER_SETTINGS
from .shapes import native_size
from .writing import bids_label, save_reconstructions

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "MODES",
    "PAPER_SETTINGS",
    "bids_label",
    "check_steps",
    "decode_latents",
    "denoising_timesteps",
    "derive_seed",
    "fresh_ddim",
    "native_size",
    "pad_rows",
    "reconstruct",
    "save_reconstructions",
    "seeded_randn",
]
