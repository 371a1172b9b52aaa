"""Image latents ``z``: images through the VAE encoder, scaled, cached per image.

The image is resized to ``resolution`` x ``resolution`` (Lanczos), mapped to [-1, 1], encoded by
the VAE and multiplied by its scaling factor (0.18215 for SD v1); 4 x 40 x 40 at 320 px. The VAE
returns a diagonal Gaussian over latents: its mean by default (deterministic, cacheable), or a
sample seeded per image (``posterior="sample"``, the authors' choice).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..batching import batches, progress_bar
from ..config import DEFAULTS
from ..errors import UsageError
from .cache import (
    FeatureRows,
    PathLike,
    cache_key,
    cache_path,
    cache_write,
    file_sha256,
)
from .images import check_images, load_image_array
from .loaders import get_vae, module_device, resolve_model_id

if TYPE_CHECKING:  # pragma: no cover
    import torch


def _noise_seed(seed: int, image_hash: str) -> int:
    digest = hashlib.sha256(f"{seed}:{image_hash}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def encode_images_z(
    image_paths: Sequence[PathLike],
    vae: Any,
    *,
    resolution: int = DEFAULTS.decoding.resolution,
    batch_size: int = DEFAULTS.decoding.feature_batch_size,
    device: str | torch.device | None = None,
    cache_dir: PathLike | None = None,
    model_id: str | None = None,
    posterior: Literal["mean", "sample"] = "mean",
    seed: int = 0,
    progress: bool = True,
) -> np.ndarray:
    """VAE latents ``z`` of images, scaled by the VAE's scaling factor.

    Parameters
    ----------
    image_paths : sequence of path
        Image files (any format PIL reads; converted to RGB).
    vae : AutoencoderKL, model folder / hub id, or callable
        The VAE, or where to get it: a diffusers model (loaded with
        :func:`nipype_brainrecon.diffusion.models.load_vae`) or a zero-argument callable returning it.
        Loaded only if some image is not cached.
    resolution : int
        Images are resized to ``resolution`` x ``resolution`` (320 in the paper); a multiple of
        the VAE factor (8).
    batch_size : int
        Images per VAE call.
    device : str or torch.device, optional
        Where to encode (a given module is moved there); default: the VAE's device, or CUDA if
        available when the VAE is loaded here.
    cache_dir : path, optional
        Feature cache folder (shared across subjects and runs); no caching if ``None``.
    model_id : str, optional
        Model identity for the cache key; default: set by the loaders (content hash of a local
        folder, or the hub id). Required with a callable ``vae``.
    posterior : {"mean", "sample"}
        Take the posterior mean (deterministic, default) or a sample (the authors' choice) with
        noise seeded by ``seed`` and the image's content.
    seed : int
        Seed of ``posterior="sample"``; ignored for the mean.
    progress : bool
        Show a progress bar.

    Returns
    -------
    numpy.ndarray
        float32, shape ``(n_images, latent_channels, resolution / 8, resolution / 8)``.

    Raises
    ------
    MissingInputError
        An image (or the model's VAE) is missing.
    DataError
        An image cannot be read.
    UsageError
        Bad ``resolution``, ``batch_size``, ``posterior``, or no ``model_id`` for a callable.
    """
    if int(resolution) <= 0 or int(resolution) % 8:
        raise UsageError(f"resolution={resolution}: must be a positive multiple of 8")
    if int(batch_size) < 1:
        raise UsageError(f"batch_size={batch_size}: must be at least 1")
    if posterior not in ("mean", "sample"):
        raise UsageError(f"posterior={posterior!r}: choose 'mean' or 'sample'")
    resolution = int(resolution)
    paths = [Path(p) for p in image_paths]
    n = len(paths)
    model_id = resolve_model_id(vae, model_id, ("vae",), "vae")

    hashes = [file_sha256(p) for p in paths]
    out = FeatureRows(n)
    cache = Path(cache_dir) if cache_dir is not None else None
    keys: list[Path | None] = [None] * n
    if cache is not None:
        for i, digest in enumerate(hashes):
            fields = {
                "feature": "z",
                "image_sha256": digest,
                "model": model_id,
                "resolution": resolution,
                "posterior": posterior,
            }
            if posterior == "sample":
                fields["seed"] = int(seed)
            keys[i] = cache_path(cache, "z", cache_key(fields))
    missing = out.fill_from_cache(keys)

    if missing:
        check_images([paths[i] for i in missing])
        module = get_vae(vae, device)
        _encode_z_batches(
            module,
            paths,
            hashes,
            missing,
            out,
            keys,
            resolution=resolution,
            batch_size=int(batch_size),
            device=device,
            posterior=posterior,
            seed=int(seed),
            progress=progress,
        )
    if out.array is None:
        return np.empty((0,), dtype=np.float32)
    return out.array


def _encode_z_batches(
    vae: Any,
    paths: Sequence[Path],
    hashes: Sequence[str],
    missing: Sequence[int],
    out: FeatureRows,
    keys: Sequence[Path | None],
    *,
    resolution: int,
    batch_size: int,
    device: str | torch.device | None,
    posterior: str,
    seed: int,
    progress: bool,
) -> None:
    import torch

    dev = module_device(vae, device)
    dtype = next(vae.parameters()).dtype
    scaling = float(vae.config.scaling_factor)
    with progress_bar(len(missing), "VAE latents z", progress) as bar, torch.inference_mode():
        for rows in batches(len(missing), batch_size):
            chunk = missing[rows]
            images = np.stack([load_image_array(paths[i], resolution) for i in chunk])
            x = torch.from_numpy(images).to(device=dev, dtype=dtype)
            dist = vae.encode(x).latent_dist
            latents = dist.mean.float()
            if posterior == "sample":
                std = dist.std.float()
                noise = torch.stack(
                    [
                        torch.randn(
                            latents.shape[1:],
                            generator=torch.Generator().manual_seed(_noise_seed(seed, hashes[i])),
                        )
                        for i in chunk
                    ]
                ).to(latents.device)
                latents = latents + std * noise
            values = (latents * scaling).cpu().numpy().astype(np.float32)
            for j, i in enumerate(chunk):
                out.put(i, values[j])
                if keys[i] is not None:
                    cache_write(keys[i], values[j])
            bar.update(len(chunk))
