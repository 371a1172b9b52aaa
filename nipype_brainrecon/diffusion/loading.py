"""Loading Stable Diffusion parts offline-safely: the img2img pipeline, the VAE, the text encoder.

A local folder never reaches the hub; a hub id reaches it only when ``HF_HUB_OFFLINE`` (or
``offline=True``) does not forbid it, and a hub id missing from the cache while offline is a
:class:`~nipype_brainrecon.errors.MissingInputError` naming the fix. Every loaded part carries
its :func:`~nipype_brainrecon.diffusion.identity.model_identity` as ``brainrecon_model_id``.
Heavy libraries (torch, diffusers, transformers) are imported inside the functions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import MissingInputError, UsageError
from .folders import DEFAULT_MODEL, PIPELINE_COMPONENTS, check_model_folder, local_folder
from .identity import model_identity

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from diffusers import AutoencoderKL, StableDiffusionImg2ImgPipeline
    from transformers import CLIPTextModel, CLIPTokenizer


def _is_offline(offline: bool | None) -> bool:
    if offline is not None:
        return bool(offline)
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def default_device() -> str:
    """``"cuda"`` when a CUDA GPU is usable, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _resolve_device_dtype(
    device: str | torch.device | None, dtype: torch.dtype | str | None, *, half_on_cuda: bool
) -> tuple[torch.device, torch.dtype]:
    import torch

    dev = torch.device(device if device is not None else default_device())
    if isinstance(dtype, str):
        resolved = getattr(torch, dtype.replace("torch.", ""), None)
        if not isinstance(resolved, torch.dtype):
            raise UsageError(f"dtype={dtype!r}: not a torch dtype (e.g. float32, float16)")
        dtype = resolved
    if dtype is None:
        dtype = torch.float16 if (dev.type == "cuda" and half_on_cuda) else torch.float32
    return dev, dtype


def _source_and_kwargs(model: str | os.PathLike, offline: bool | None) -> tuple[str, dict]:
    folder = local_folder(model)
    if folder is not None:
        return str(folder), {"local_files_only": True}
    return os.fspath(model), {"local_files_only": _is_offline(offline)}


def _not_cached(model: str, exc: Exception) -> MissingInputError:
    return MissingInputError(
        f"{model}: not in the local Hugging Face cache and the hub is offline ({type(exc).__name__});"
        " download it first (with network access, HF_HUB_OFFLINE unset) or pass a local diffusers"
        " folder"
    )


def load_pipeline(
    model: str | os.PathLike = DEFAULT_MODEL,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    offline: bool | None = None,
) -> StableDiffusionImg2ImgPipeline:
    """Load a Stable Diffusion img2img pipeline with a DDIM scheduler, offline-safely.

    Parameters
    ----------
    model : str or path
        A local diffusers folder or a hub id (default ``CompVis/stable-diffusion-v1-4``).
    device : str or torch.device, optional
        Default ``cuda`` when available, else ``cpu``.
    dtype : torch.dtype or str, optional
        Default float16 on CUDA, float32 on CPU.
    offline : bool, optional
        Never reach the hub (only the local cache); default from ``HF_HUB_OFFLINE``. A local
        folder never reaches the hub whatever this says.

    Returns
    -------
    diffusers.StableDiffusionImg2ImgPipeline
        Without safety checker, scheduler replaced by DDIM with SD v1's settings
        (``clip_sample=False``, ``set_alpha_to_one=False``, ``steps_offset=1``). Its
        ``brainrecon_model_id`` attribute holds :func:`model_identity`.

    Raises
    ------
    MissingInputError
        The folder is absent or lacks a component, or a hub id is not cached while offline.
    """
    from diffusers import DDIMScheduler, StableDiffusionImg2ImgPipeline

    source, kwargs = _source_and_kwargs(model, offline)
    if Path(source).is_dir():
        check_model_folder(source)
    dev, dt = _resolve_device_dtype(device, dtype, half_on_cuda=True)
    try:
        pipe = StableDiffusionImg2ImgPipeline.from_pretrained(
            source,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
            use_safetensors=True,
            trust_remote_code=False,
            **kwargs,
        )
    except OSError as exc:
        if kwargs["local_files_only"] and not Path(source).is_dir():
            raise _not_cached(source, exc) from exc
        raise MissingInputError(
            f"{source}: cannot load the model ({' '.join(str(exc).split())}); re-download "
            "or re-save the model (safetensors weights)"
        ) from exc
    pipe.scheduler = DDIMScheduler.from_config(
        pipe.scheduler.config, clip_sample=False, set_alpha_to_one=False, steps_offset=1
    )
    pipe = pipe.to(dev)
    if pipe.unet.dtype != dt:  # cast only when needed: diffusers warns on every dtype cast
        pipe = pipe.to(dtype=dt)
    pipe.brainrecon_model_id = model_identity(model, PIPELINE_COMPONENTS)
    # The same identities as the light loaders give, so features share one cache either way.
    pipe.vae.brainrecon_model_id = model_identity(model, ("vae",))
    pipe.text_encoder.brainrecon_model_id = model_identity(model, ("text_encoder", "tokenizer"))
    return pipe


def load_vae(
    model: str | os.PathLike = DEFAULT_MODEL,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    offline: bool | None = None,
) -> AutoencoderKL:
    """Load only the VAE of a diffusers model (for the image latents ``z``).

    Defaults to float32 on every device so that features do not depend on the GPU; otherwise
    as :func:`load_pipeline`. The module is in eval mode; ``brainrecon_model_id`` is set.
    """
    from diffusers import AutoencoderKL

    source, kwargs = _source_and_kwargs(model, offline)
    if Path(source).is_dir():
        check_model_folder(source, ("vae",))
    dev, dt = _resolve_device_dtype(device, dtype, half_on_cuda=False)
    try:
        vae = AutoencoderKL.from_pretrained(source, subfolder="vae", use_safetensors=True, **kwargs)
    except OSError as exc:
        if kwargs["local_files_only"] and not Path(source).is_dir():
            raise _not_cached(source, exc) from exc
        raise MissingInputError(
            f"{source}: cannot load the VAE ({' '.join(str(exc).split())}); re-download "
            "or re-save the model (safetensors weights)"
        ) from exc
    vae = vae.to(dev).eval()
    if vae.dtype != dt:
        vae = vae.to(dtype=dt)
    vae.brainrecon_model_id = model_identity(model, ("vae",))
    return vae


def load_text_encoder(
    model: str | os.PathLike = DEFAULT_MODEL,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    offline: bool | None = None,
) -> tuple[CLIPTokenizer, CLIPTextModel]:
    """Load only the tokenizer and text encoder of a diffusers model (for captions ``c``).

    Defaults to float32 on every device; otherwise as :func:`load_pipeline`. The text
    encoder's ``brainrecon_model_id`` is set.
    """
    from transformers import CLIPTextModel, CLIPTokenizer

    source, kwargs = _source_and_kwargs(model, offline)
    if Path(source).is_dir():
        check_model_folder(source, ("text_encoder", "tokenizer"))
    dev, dt = _resolve_device_dtype(device, dtype, half_on_cuda=False)
    try:
        tokenizer = CLIPTokenizer.from_pretrained(source, subfolder="tokenizer", **kwargs)
        text_encoder = CLIPTextModel.from_pretrained(
            source, subfolder="text_encoder", use_safetensors=True, **kwargs
        )
    except OSError as exc:
        if kwargs["local_files_only"] and not Path(source).is_dir():
            raise _not_cached(source, exc) from exc
        raise MissingInputError(
            f"{source}: cannot load the text encoder ({' '.join(str(exc).split())}); re-download "
            "or re-save the model (safetensors weights)"
        ) from exc
    text_encoder = text_encoder.to(device=dev, dtype=dt).eval()
    text_encoder.brainrecon_model_id = model_identity(model, ("text_encoder", "tokenizer"))
    return tokenizer, text_encoder
