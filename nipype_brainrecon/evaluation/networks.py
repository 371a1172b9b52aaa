"""Network feature extractors: AlexNet, Inception v3, EfficientNet-B1, SwAV and CLIP.

The torchvision-format networks (:mod:`nipype_brainrecon.evaluation.architectures`) load local
weights found by :func:`~nipype_brainrecon.evaluation.weights.find_weights`; CLIP (ViT-L/14
image embedding through transformers' ``CLIPVisionModelWithProjection``) is read with
``local_files_only=True``. Nothing is ever downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import MissingInputError
from .architectures import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AlexNetFeatures,
    EfficientNetB1Features,
    InceptionV3Features,
    ResNet50Features,
)
from .extractors import FeatureExtractor, Kind
from .images import resize_tensor, to_tensor
from .weights import WEIGHTS_ENV, find_weights, load_network_weights, load_state_dict_file

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: Default CLIP model: the ViT-L/14 of the paper and of MindEye.
CLIP_MODEL = "openai/clip-vit-large-patch14"


def _torch_extractor(
    name: str,
    module: nn.Module,
    nodes: Mapping[str, str],
    kinds: Mapping[str, Kind],
    *,
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    source: str,
    device: str | torch.device,
    batch_size: int,
) -> FeatureExtractor:
    """Wrap a network whose ``forward`` returns a dict of node outputs."""
    dev = torch.device(device)
    module = module.to(dev).eval()
    m = torch.tensor(mean, dtype=torch.float32, device=dev).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=dev).view(1, 3, 1, 1)

    def fn(images: np.ndarray) -> dict[str, np.ndarray]:
        x = resize_tensor(to_tensor(images).to(dev), input_size)
        with torch.inference_mode():
            out = module((x - m) / s)
        return {label: out[node].flatten(1).float().cpu().numpy() for label, node in nodes.items()}

    return FeatureExtractor(name, kinds, fn, source=source, batch_size=batch_size)


def alexnet_factory(
    *,
    weights: str | os.PathLike | None = None,
    device: str = "cpu",
    batch_size: int = 32,
    input_size: int = 256,
) -> FeatureExtractor:
    """AlexNet layers 2 and 5 (torchvision's ``features.4`` / ``features.11``) at 256 px."""
    path = find_weights("alexnet", ["alexnet*.safetensors", "alexnet*.pth"], weights)
    net = load_network_weights(
        AlexNetFeatures(), load_state_dict_file(path), source=str(path), optional=["classifier."]
    )
    return _torch_extractor(
        "alexnet",
        net,
        {"AlexNet(2)": "features.4", "AlexNet(5)": "features.11"},
        {"AlexNet(2)": "identification", "AlexNet(5)": "identification"},
        input_size=input_size,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        source=str(path),
        device=device,
        batch_size=batch_size,
    )


def inception_factory(
    *,
    weights: str | os.PathLike | None = None,
    device: str = "cpu",
    batch_size: int = 16,
    input_size: int = 342,
) -> FeatureExtractor:
    """InceptionV3 pool features (2,048-d) at 342 px, torchvision's ``transform_input`` on."""
    path = find_weights("inception", ["inception_v3*.safetensors", "inception_v3*.pth"], weights)
    net = load_network_weights(
        InceptionV3Features(),
        load_state_dict_file(path),
        source=str(path),
        optional=["AuxLogits.", "fc."],
    )
    return _torch_extractor(
        "inception",
        net,
        {"InceptionV3": "avgpool"},
        {"InceptionV3": "identification"},
        input_size=input_size,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        source=str(path),
        device=device,
        batch_size=batch_size,
    )


def efficientnet_factory(
    *,
    weights: str | os.PathLike | None = None,
    device: str = "cpu",
    batch_size: int = 16,
    input_size: int = 255,
) -> FeatureExtractor:
    """EfficientNet-B1 pool features (1,280-d) at 255 px, scored as a distance."""
    path = find_weights(
        "efficientnet", ["efficientnet_b1*.safetensors", "efficientnet_b1*.pth"], weights
    )
    net = load_network_weights(
        EfficientNetB1Features(),
        load_state_dict_file(path),
        source=str(path),
        optional=["classifier."],
    )
    return _torch_extractor(
        "efficientnet",
        net,
        {"EffNet-B1": "avgpool"},
        {"EffNet-B1": "distance"},
        input_size=input_size,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        source=str(path),
        device=device,
        batch_size=batch_size,
    )


def swav_factory(
    *,
    weights: str | os.PathLike | None = None,
    device: str = "cpu",
    batch_size: int = 16,
    input_size: int = 255,
) -> FeatureExtractor:
    """SwAV ResNet-50 pool features (2,048-d) at 255 px (MindEye's preprocessing), a distance."""
    path = find_weights(
        "swav", ["swav*.safetensors", "swav*.pth", "swav*.pth.tar", "resnet50_swav*"], weights
    )
    net = load_network_weights(
        ResNet50Features(), load_state_dict_file(path), source=str(path), optional=["fc."]
    )
    return _torch_extractor(
        "swav",
        net,
        {"SwAV": "avgpool"},
        {"SwAV": "distance"},
        input_size=input_size,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        source=str(path),
        device=device,
        batch_size=batch_size,
    )


class _ClipImageEmbeds(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"image_embeds": self.model(pixel_values=x).image_embeds}


def _load_clip_vision(model: str | os.PathLike) -> tuple[nn.Module, str]:
    from transformers import CLIPVisionModelWithProjection

    text = os.fspath(model)
    candidates = [Path(text).expanduser()]
    env = os.environ.get(WEIGHTS_ENV, "").strip()
    if env:
        candidates.append(Path(env).expanduser() / text.rstrip("/").split("/")[-1])
    for folder in candidates:
        if folder.is_dir():
            try:
                net = CLIPVisionModelWithProjection.from_pretrained(
                    folder, local_files_only=True, use_safetensors=True
                )
            except (OSError, ValueError) as exc:
                raise MissingInputError(
                    f"{folder}: no CLIP vision model in safetensors format here ({exc}); "
                    "give a transformers model folder"
                ) from exc
            return net, str(folder)
    looks_like_path = text.startswith((".", "/", "~")) or os.sep in text.replace("/", "", 1)
    if looks_like_path:
        raise MissingInputError(f"{text}: CLIP model folder not found; check model=")
    try:
        net = CLIPVisionModelWithProjection.from_pretrained(
            text, local_files_only=True, use_safetensors=True
        )
    except (OSError, ValueError) as exc:
        from huggingface_hub import constants

        where = [constants.HF_HUB_CACHE] + [str(c) for c in candidates[1:]]
        raise MissingInputError(
            f"{text}: CLIP vision model not found locally (looked in {', '.join(where)}); "
            f"download it once where a network is available (huggingface-cli download {text}) "
            "or pass model=FOLDER; it is never downloaded here"
        ) from exc
    return net, text


def clip_factory(
    *,
    model: str | os.PathLike | nn.Module = CLIP_MODEL,
    device: str = "cpu",
    batch_size: int = 16,
    input_size: int | None = None,
) -> FeatureExtractor:
    """CLIP image embedding (``image_embeds``: 768-d for ViT-L/14), MindEye's preprocessing:
    bilinear resize to the model's input size (224 px) and CLIP's normalisation.

    ``model`` is a hub id read from the local Hugging Face cache only, a local folder, or an
    already built ``CLIPVisionModelWithProjection``.
    """
    if isinstance(model, nn.Module):
        net, source = model, f"in-memory {type(model).__name__}"
    else:
        net, source = _load_clip_vision(model)
    size = int(input_size or net.config.image_size)
    return _torch_extractor(
        "clip",
        _ClipImageEmbeds(net),
        {"CLIP": "image_embeds"},
        {"CLIP": "identification"},
        input_size=size,
        mean=CLIP_MEAN,
        std=CLIP_STD,
        source=source,
        device=device,
        batch_size=batch_size,
    )
