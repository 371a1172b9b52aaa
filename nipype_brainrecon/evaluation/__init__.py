"""Scoring reconstructions against the seen images, always beside chance and trivial baselines.

The suite is the one later papers use to compare with Takagi & Nishimoto (2023) (MindEye,
MindEye2, Brain-Diffuser), plus Takagi's own identification rule:

* **PixCorr**: Pearson r between the flattened RGB pixels of an original and a reconstruction,
  both resized to ``size`` (425) px.
* **SSIM**: mean structural similarity of the grayscale images at ``size`` px, with
  scikit-image's ``structural_similarity`` settings (see :mod:`.pixelwise`).
* **Two-way identification** on features from pluggable extractors, with both published rules
  of :func:`nipype_brainrecon.evaluation.metrics.two_way_identification` (chance 0.5).
* **Distances** (1 - Pearson r between the features of an original and its reconstruction;
  lower is better) for EfficientNet-B1 and SwAV, as MindEye reports them.

All resizing is bilinear with antialiasing (see :mod:`.images`).

Feature extractors live in a small registry (:func:`register_extractor`,
:func:`get_extractor`). Built in and free of weights: ``"pixels"``, ``"lowlevel"`` and, for the
package's synthetic stimuli only, ``"scene"`` (the object colours and background their captions
name: the semantic metric of the simulation).
Built in and needing weights that are never downloaded here: ``"alexnet"`` (layers 2 and 5),
``"inception"`` (pool), ``"efficientnet"`` (B1, pool), ``"swav"`` (ResNet-50, pool) as plain
torch re-implementations whose parameter names follow torchvision's, so a torchvision
``state_dict`` file (safetensors, or ``.pth`` read with ``torch.load(weights_only=True)``)
loads into them; and ``"clip"`` (ViT-L/14 image embedding through transformers'
``CLIPVisionModelWithProjection``, read with ``local_files_only=True``).

Modules
-------
``suite``
    :func:`evaluate`: the whole suite on one set of reconstructions, as a table.
``metrics``
    Two-way identification (both rules), correlations, correlation distance, decoding scores.
``pixelwise``
    PixCorr and SSIM.
``images``
    Image checks, resizing, grayscale, pairing originals with reconstructions, reading files.
``nulls``
    Permutation nulls (test-set labels permuted) and bootstrap confidence intervals.
``baselines``
    The mismatched pairing (empirical chance) and trivial baselines.
``extractors``
    :class:`FeatureExtractor` and the registry.
``builtin_extractors``
    Registers the built-in extractors; :data:`PAPER_EXTRACTORS`.
``lowlevel``
    The weight-free ``"pixels"`` and ``"lowlevel"`` extractors.
``scene``
    The ``"scene"`` extractor and its copy of the simulator's palette.
``networks``
    The network extractors (AlexNet, Inception v3, EfficientNet-B1, SwAV, CLIP).
``architectures``
    The torchvision-compatible networks in plain torch.
``weights``
    Finding and loading local network weights.
"""

from __future__ import annotations

from .architectures import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AlexNetFeatures,
    EfficientNetB1Features,
    InceptionV3Features,
    ResNet50Features,
)
from .baselines import derangement
from .builtin_extractors import PAPER_EXTRACTORS
from .extractors import (
    FeatureExtractor,
    Kind,
    available_extractors,
    get_extractor,
    register_extractor,
)
from .images import GRAY_WEIGHTS, check_images, load_images, resize_images, to_grayscale
from .lowlevel import lowlevel_features
from .metrics import CHANCE_TWO_WAY, correlation_distance, two_way_identification
from .networks import CLIP_MEAN, CLIP_MODEL, CLIP_STD
from .nulls import bootstrap_ci, permutation_null
from .pixelwise import SSIMVariant, pixcorr, ssim
from .scene import BACKGROUND_COLOURS, OBJECT_COLOURS, scene_colour_features
from .suite import IDENTIFICATION_RULES, evaluate
from .weights import WEIGHTS_ENV, find_weights, load_network_weights, load_state_dict_file

__all__ = [
    "bootstrap_ci",
    "permutation_null",
    "BACKGROUND_COLOURS",
    "CHANCE_TWO_WAY",
    "CLIP_MEAN",
    "CLIP_MODEL",
    "CLIP_STD",
    "GRAY_WEIGHTS",
    "IDENTIFICATION_RULES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "OBJECT_COLOURS",
    "PAPER_EXTRACTORS",
    "WEIGHTS_ENV",
    "AlexNetFeatures",
    "EfficientNetB1Features",
    "FeatureExtractor",
    "InceptionV3Features",
    "Kind",
    "ResNet50Features",
    "SSIMVariant",
    "available_extractors",
    "check_images",
    "correlation_distance",
    "derangement",
    "evaluate",
    "find_weights",
    "get_extractor",
    "load_images",
    "load_network_weights",
    "load_state_dict_file",
    "lowlevel_features",
    "pixcorr",
    "register_extractor",
    "resize_images",
    "scene_colour_features",
    "ssim",
    "to_grayscale",
    "two_way_identification",
]
