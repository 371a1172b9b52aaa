"""Models given lazily: a module, a model folder / hub id, or a zero-argument loader.

Feature functions accept any of the three and load a model only on a cache miss
(:func:`get_vae`, :func:`get_text_model`); :func:`resolve_model_id` gives the identity that keys
the cache without loading anything.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    import torch


def _is_source(obj: Any) -> bool:
    return isinstance(obj, str | os.PathLike)


def _is_module(obj: Any) -> bool:
    return hasattr(obj, "parameters") and hasattr(obj, "config")


def _module_id(module: Any) -> str | None:
    ident = getattr(module, "brainrecon_model_id", None)
    if ident:
        return str(ident)
    name = getattr(getattr(module, "config", None), "_name_or_path", "")
    return str(name) if name else None


def module_device(module: Any, device: str | torch.device | None) -> torch.device:
    """The device to compute on: ``device`` (the module is moved there) or the module's own."""
    import torch

    current = next(module.parameters()).device
    if device is None:
        return current
    target = torch.device(device)
    if target != current:
        module.to(target)
    return target


def _is_loader(obj: Any) -> bool:
    """A zero-argument loader: a callable that is not itself a tokenizer or a module."""
    return (
        obj is not None
        and callable(obj)
        and not hasattr(obj, "model_max_length")
        and not _is_module(obj)
    )


def resolve_model_id(
    model: Any, model_id: str | None, components: tuple[str, ...], what: str
) -> str:
    """The model identity that keys the cache: ``model_id``, a folder's or hub id's identity, or
    the module's; errors for a loader without ``model_id`` (``what`` names the argument)."""
    if model_id:
        return str(model_id)
    if _is_source(model):
        from ..diffusion.identity import model_identity

        return model_identity(model, components)
    if _is_module(model):
        ident = _module_id(model)
        if ident:
            return ident
    raise UsageError(
        f"model_id: needed to key the feature cache when {what} is given as "
        f"{type(model).__name__}; pass model_id= (e.g. the hub id or model folder)"
    )


def get_vae(vae: Any, device: str | torch.device | None) -> Any:
    """The VAE module: ``vae`` itself, loaded from a folder / hub id, or returned by a loader."""
    if _is_module(vae):
        return vae
    if _is_source(vae):
        from ..diffusion.loading import load_vae

        return load_vae(vae, device=device)
    if callable(vae):
        module = vae()
        if not _is_module(module):
            raise UsageError(f"vae loader returned {type(module).__name__}, not a VAE module")
        return module
    raise UsageError(f"vae={vae!r}: give an AutoencoderKL, a model folder/hub id or a loader")


def get_text_model(
    tokenizer: Any, text_encoder: Any, device: str | torch.device | None
) -> tuple[Any, Any]:
    """``(tokenizer, text encoder module)`` from modules, a folder / hub id or loaders."""
    if _is_source(text_encoder):
        from ..diffusion.loading import load_text_encoder

        loaded_tok, module = load_text_encoder(text_encoder, device=device)
        if tokenizer is None or _is_loader(tokenizer):
            tokenizer = loaded_tok
        return tokenizer, module
    if not _is_module(text_encoder):
        if not callable(text_encoder):
            raise UsageError(
                f"text_encoder={text_encoder!r}: give a CLIPTextModel, a model folder/hub id "
                "or a loader"
            )
        loaded = text_encoder()
        if isinstance(loaded, tuple):
            loaded_tok, text_encoder = loaded
            tokenizer = loaded_tok if tokenizer is None else tokenizer
        else:
            text_encoder = loaded
        if not _is_module(text_encoder):
            raise UsageError("text_encoder loader did not return a text encoder module")
    if _is_loader(tokenizer):
        tokenizer = tokenizer()
    if tokenizer is None:
        raise UsageError("tokenizer: missing; give the tokenizer that goes with the text encoder")
    return tokenizer, text_encoder
