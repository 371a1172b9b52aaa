"""Stimulus features: image latents ``z`` (VAE) and caption embeddings ``c`` (text encoder).

Following Takagi & Nishimoto (2023):

* ``z``: the image resized to ``resolution`` x ``resolution`` (Lanczos), mapped to [-1, 1],
  encoded by the VAE and multiplied by its scaling factor (0.18215 for SD v1); 4 x 40 x 40 at
  320 px.
* ``c``: each caption's text-encoder last hidden state (padded to 77 tokens), averaged over the
  image's captions; 77 x 768 for SD v1.

The VAE returns a diagonal Gaussian over latents. The authors' code takes a random *sample* of
it (CompVis ``get_first_stage_encoding``); we take its *mean* by default, so features are
deterministic, identical across batch sizes and devices, and safely cacheable. For SD v1's VAE
the posterior standard deviation is small next to the spread of the means, so the difference
is minor; ``posterior="sample"`` reproduces the authors' choice with noise seeded per image.

Features are cached on disk, one ``.npy`` file per image (never pickled, written atomically),
under a key made of the image's content hash (or the captions' text), the model identity and the
settings. Renamed or copied images hit the cache; changed pixels, another model or another
resolution miss it. When every requested image is cached the model is not loaded at all: the
model arguments accept a loader (a model folder, hub id or zero-argument callable) that is
called only on a cache miss.

Modules:

* :mod:`~nipype_brainrecon.features.latents`: ``z`` (:func:`encode_images_z`);
* :mod:`~nipype_brainrecon.features.captions`: ``c`` (:func:`encode_captions_c`,
  :func:`empty_prompt_embedding`);
* :mod:`~nipype_brainrecon.features.images`: reading and checking the stimulus images;
* :mod:`~nipype_brainrecon.features.cache`: hashes, keys and files of the feature cache;
* :mod:`~nipype_brainrecon.features.loaders`: models given as modules, folders or loaders.
"""

from __future__ import annotations

from .cache import CACHE_FORMAT, cache_key, cache_path, cache_read, cache_write, file_sha256
from .captions import empty_prompt_embedding, encode_captions_c
from .images import check_images, load_image_array
from .latents import encode_images_z
from .loaders import resolve_model_id

__all__ = [
    "CACHE_FORMAT",
    "cache_key",
    "cache_path",
    "cache_read",
    "cache_write",
    "check_images",
    "empty_prompt_embedding",
    "encode_captions_c",
    "encode_images_z",
    "file_sha256",
    "load_image_array",
    "resolve_model_id",
]
