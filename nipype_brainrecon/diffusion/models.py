"""Latent diffusion models: loading them offline-safely and building small ones.

The method needs three parts of Stable Diffusion v1: the VAE (image <-> latent ``z``), the CLIP
text encoder with its tokenizer (captions -> ``c``) and the U-Net with a DDIM scheduler (img2img
reconstruction). This module gathers the model functions of the modules that hold them:

* :mod:`~nipype_brainrecon.diffusion.loading`: load them from a local diffusers folder or a hub
  id without touching the network when the model is local or ``HF_HUB_OFFLINE=1``
  (:func:`load_pipeline`, :func:`load_vae`, :func:`load_text_encoder`), resolve a model argument
  ``ID@REVISION`` to its cached snapshot before a run (:func:`resolve_model`) and record the
  device that ran it (:func:`device_record`);
* :mod:`~nipype_brainrecon.diffusion.folders`: local folder or hub id, folder checks, the shipped
  demo model (:func:`check_model_folder`, :func:`demo_model_path`, :func:`native_resolution`);
* :mod:`~nipype_brainrecon.diffusion.identity`: the weights' identity for cache keys and the
  model's shapes (:func:`model_identity`, :class:`ModelInfo`, :func:`describe_model`), a hub
  model's revision and its snapshot in the local cache (:func:`split_revision`,
  :func:`snapshot_folder`, :func:`hub_identity`);
* :mod:`~nipype_brainrecon.diffusion.tiny`: small random-weight models with the same
  diffusers/transformers classes and SD v1's interface shapes, so tests and demos run on CPU
  without any download (:func:`build_tiny_sd`);
* :mod:`~nipype_brainrecon.diffusion.tokenizer`: a CLIP-style byte-level BPE tokenizer written
  without a hub, optionally learning merges from captions (:func:`build_clip_tokenizer`).

Heavy libraries (torch, diffusers, transformers) are imported inside the functions so that
importing this module stays cheap.
"""

from __future__ import annotations

from .folders import (
    DEFAULT_MODEL,
    PIPELINE_COMPONENTS,
    check_model_folder,
    demo_model_path,
    local_folder,
    native_resolution,
)
from .identity import (
    ModelInfo,
    describe_model,
    hub_cache_dir,
    hub_identity,
    model_identity,
    snapshot_folder,
    split_revision,
)
from .loading import (
    default_device,
    device_record,
    load_pipeline,
    load_text_encoder,
    load_vae,
    resolve_model,
)
from .tiny import PROFILES, SD_V1_SCHEDULER, TinySDConfig, build_tiny_sd, tiny_sd_config
from .tokenizer import (
    BOS_TOKEN,
    END_OF_WORD,
    EOS_TOKEN,
    build_clip_tokenizer,
    bytes_to_unicode,
    learn_bpe_merges,
)

__all__ = [
    "BOS_TOKEN",
    "DEFAULT_MODEL",
    "END_OF_WORD",
    "EOS_TOKEN",
    "PIPELINE_COMPONENTS",
    "PROFILES",
    "SD_V1_SCHEDULER",
    "ModelInfo",
    "TinySDConfig",
    "build_clip_tokenizer",
    "build_tiny_sd",
    "bytes_to_unicode",
    "check_model_folder",
    "default_device",
    "device_record",
    "demo_model_path",
    "describe_model",
    "hub_cache_dir",
    "hub_identity",
    "learn_bpe_merges",
    "load_pipeline",
    "load_text_encoder",
    "load_vae",
    "local_folder",
    "model_identity",
    "native_resolution",
    "resolve_model",
    "snapshot_folder",
    "split_revision",
    "tiny_sd_config",
]
