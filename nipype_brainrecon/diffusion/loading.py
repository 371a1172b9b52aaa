"""Loading Stable Diffusion parts offline-safely: the img2img pipeline, the VAE, the text encoder.

A local folder never reaches the hub; a hub id reaches it only when ``HF_HUB_OFFLINE`` (or
``offline=True``) does not forbid it, and a hub id missing from the cache while offline is a
:class:`~nipype_brainrecon.errors.MissingInputError` naming the fix. Every loaded part carries
its :func:`~nipype_brainrecon.diffusion.identity.model_identity` as ``brainrecon_model_id``.
:func:`resolve_model` turns a model argument (``ID@REVISION``) into the folder a run loads,
before the run; :func:`device_record` says what ran a model, for its outputs' sidecars.
Heavy libraries (torch, diffusers, transformers) are imported inside the functions.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import MissingInputError, UsageError
from .folders import DEFAULT_MODEL, PIPELINE_COMPONENTS, check_model_folder, local_folder
from .identity import hub_cache_dir, model_identity, snapshot_folder, split_revision

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from diffusers import AutoencoderKL, StableDiffusionImg2ImgPipeline
    from transformers import CLIPTextModel, CLIPTokenizer

_TORCHVISION_FALLBACK = "requires torchvision (not installed); falling back to"


class _TorchvisionFallbackFilter(logging.Filter):
    """Drops transformers' note that an image processor falls back to its PIL class.

    diffusers' Stable Diffusion pipelines import ``CLIPImageProcessor`` (and siblings) for the
    safety checker's feature extractor, which this package never loads (``feature_extractor=None``);
    without torchvision transformers 5 then logs one warning per class, which users read as an
    install problem. Only that message of that logger is dropped.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return _TORCHVISION_FALLBACK not in record.getMessage()


def quiet_torchvision_fallback() -> None:
    """Install :class:`_TorchvisionFallbackFilter` on transformers' import logger (once).

    Examples
    --------
    >>> quiet_torchvision_fallback(); quiet_torchvision_fallback()
    >>> log = logging.getLogger("transformers.utils.import_utils")
    >>> sum(isinstance(f, _TorchvisionFallbackFilter) for f in log.filters)
    1
    """
    log = logging.getLogger("transformers.utils.import_utils")
    if not any(isinstance(f, _TorchvisionFallbackFilter) for f in log.filters):
        log.addFilter(_TorchvisionFallbackFilter())


quiet_torchvision_fallback()  # before any diffusers pipeline module is imported


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
    """What ``from_pretrained`` loads: a local folder, a cached snapshot of ``ID@REVISION``, or
    a hub id (with its revision) that the hub may serve unless offline."""
    repo, revision = split_revision(model)
    folder = local_folder(model if revision is None else repo)
    if folder is not None:
        return str(folder), {"local_files_only": True}
    if revision is None:
        return os.fspath(model), {"local_files_only": _is_offline(offline)}
    snapshot = snapshot_folder(repo, revision)
    if snapshot is not None:
        return str(snapshot), {"local_files_only": True}
    if _is_offline(offline):
        raise not_cached_error(repo, revision)
    return repo, {"local_files_only": False, "revision": revision}


def not_cached_error(repo: str, revision: str | None) -> MissingInputError:
    """The one-line error of a hub model (at a revision) missing from the offline cache."""
    rev = revision or "main"
    given = repo if revision is None else f"{repo}@{rev}"
    return MissingInputError(
        f"--model {given}: revision {rev!r} of {repo} is not in the local Hugging Face "
        f"cache ({hub_cache_dir()}) and the hub is offline (HF_HUB_OFFLINE); fetch it with "
        f"`huggingface-cli download {repo} --revision {rev}` where the network is reachable, "
        "or pass a local diffusers folder"
    )


def _not_cached(model: str, exc: Exception) -> MissingInputError:
    return MissingInputError(
        f"{model}: not in the local Hugging Face cache and the hub is offline ({type(exc).__name__});"
        " download it first (with network access, HF_HUB_OFFLINE unset) or pass a local diffusers"
        " folder"
    )


def resolve_model(model: str | os.PathLike, *, offline: bool | None = None) -> str:
    """The folder a run loads ``model`` from, resolved before the run starts.

    A local folder is returned as an absolute path. A hub id, ``ID`` or ``ID@REVISION`` (a
    branch, tag or commit; default ``main``), becomes its snapshot folder in the Hugging Face
    cache (``.../models--org--name/snapshots/<commit>``), whose
    :func:`~nipype_brainrecon.diffusion.identity.model_identity` is ``ID@<commit>``: offline, as
    the cache's ``refs/`` resolve it; online, as ``from_pretrained`` would fetch it (only the
    files a reconstruction loads; nothing when the cache is up to date).

    Raises
    ------
    MissingInputError
        (exit 66) A folder that does not exist; a hub id (pinned or not) that is not in the
        cache while offline, or any revision the hub does not have; the message says how to
        fetch it.
    """
    repo, revision = split_revision(model)
    folder = local_folder(model if revision is None else repo)
    if folder is not None:
        return str(folder)
    cached = snapshot_folder(repo, revision)
    if _is_offline(offline):
        if cached is not None:
            return str(cached)
        raise not_cached_error(repo, revision)
    from diffusers import StableDiffusionImg2ImgPipeline

    try:
        path = StableDiffusionImg2ImgPipeline.download(
            repo,
            revision=revision,
            safety_checker=None,
            feature_extractor=None,
            use_safetensors=True,
            trust_remote_code=False,
        )
    except Exception as exc:  # hub errors are many classes (HTTP, revision, repository)
        if cached is not None:
            return str(cached)  # the network failed: the cached snapshot is the revision asked
        rev = revision or "main"
        raise MissingInputError(
            f"--model {repo}@{rev}: cannot fetch revision {rev!r} of {repo} from the hub "
            f"({type(exc).__name__}: {' '.join(str(exc).split())[:160]}); check the id and the "
            f"revision, or fetch it with `huggingface-cli download {repo} --revision {rev}`"
        ) from exc
    return str(Path(path).absolute())


def device_record(device: str | torch.device | None = None) -> dict[str, str | None]:
    """What ran a model, for the sidecars of its outputs: the device (``cpu``,
    ``cuda:0 NVIDIA H100 80GB HBM3``), the torch version and the CUDA version torch was built
    with (``None`` without CUDA). The same values on every run of one machine.
    """
    import torch

    dev = torch.device(device if device is not None else default_device())
    name = str(dev)
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        name = f"cuda:{index} {torch.cuda.get_device_name(index)}"
    return {
        "Device": name,
        "TorchVersion": str(torch.__version__),
        "CUDAVersion": torch.version.cuda,
    }


def _identity_source(model: str | os.PathLike, source: str) -> str | os.PathLike:
    """What names the loaded weights: the folder loaded (a cached snapshot: ``ID@<commit>``),
    else the model as given (a hub id, with its revision)."""
    return source if Path(source).is_dir() else model


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
        A local diffusers folder or a hub id (default ``CompVis/stable-diffusion-v1-4``),
        optionally at a revision, ``ID@REVISION`` (a branch, tag or commit): loaded from its
        cached snapshot, or fetched at that revision unless offline.
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
    named = _identity_source(model, source)
    pipe.brainrecon_model_id = model_identity(named, PIPELINE_COMPONENTS)
    # The same identities as the light loaders give, so features share one cache either way.
    pipe.vae.brainrecon_model_id = model_identity(named, ("vae",))
    pipe.text_encoder.brainrecon_model_id = model_identity(named, ("text_encoder", "tokenizer"))
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
    vae.brainrecon_model_id = model_identity(_identity_source(model, source), ("vae",))
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
    text_encoder.brainrecon_model_id = model_identity(
        _identity_source(model, source), ("text_encoder", "tokenizer")
    )
    return tokenizer, text_encoder
