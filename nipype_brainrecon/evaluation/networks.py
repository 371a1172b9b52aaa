"""Network feature extractors: AlexNet, Inception v3, EfficientNet-B1, SwAV and CLIP.

AlexNet, Inception v3, EfficientNet-B1 and SwAV (a ResNet-50) load local torchvision-format
weights found by :func:`~nipype_brainrecon.evaluation.weights.find_weights`. Where torchvision
imports, the network is torchvision's own (``torchvision.models.<arch>(weights=None)`` with those
weights, nodes read by ``create_feature_extractor`` as in MindEye's scripts); otherwise the
plain-torch rewrite of :mod:`nipype_brainrecon.evaluation.architectures` runs. Which one ran is
the extractor's ``implementation``. Images are resized as torchvision's ``Resize(size,
BILINEAR)`` on float tensors: shorter side to ``size``, antialiased. CLIP (ViT-L/14 image
embedding through transformers' ``CLIPVisionModelWithProjection``) is read with
``local_files_only=True``. Nothing is ever downloaded.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import nn

from ..errors import MissingInputError, UsageError
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
#: Which network code runs: torchvision's where it imports, else the rewrite ("auto").
IMPLEMENTATIONS = ("auto", "torchvision", "rewrite")

logger = logging.getLogger(__name__)

#: torchvision constructors of the networks, as MindEye's scripts build them (Inception v3 with
#: ``transform_input=True``, which torchvision sets whenever it loads the Google weights).
_TORCHVISION_BUILDERS: dict[str, Callable[[ModuleType], nn.Module]] = {
    "alexnet": lambda m: m.alexnet(weights=None),
    "inception": lambda m: m.inception_v3(
        weights=None, aux_logits=True, init_weights=False, transform_input=True
    ),
    "efficientnet": lambda m: m.efficientnet_b1(weights=None),
    "swav": lambda m: m.resnet50(weights=None),
}


@functools.cache
def torchvision_models() -> ModuleType | None:
    """``torchvision.models`` if torchvision imports and works here, else None.

    A missing or broken torchvision (e.g. a wheel built for another torch) is not an error: the
    plain-torch rewrite is used instead and the reason is logged at debug level.
    """
    try:
        import torchvision.models as models
        from torchvision.models import feature_extraction  # noqa: F401
    except Exception as exc:  # ImportError, or RuntimeError from a mismatched torch build
        logger.debug("torchvision unusable (%s: %s); using the rewrite", type(exc).__name__, exc)
        return None
    return models


def resize_short_side(x: torch.Tensor, size: int) -> torch.Tensor:
    """torchvision's ``Resize(size, BILINEAR)`` on a float batch (n, 3, H, W): the shorter side
    becomes ``size``, the longer ``int(size * long / short)``; antialiased; unchanged at size."""
    h, w = (int(v) for v in x.shape[-2:])
    short, long = min(h, w), max(h, w)
    new_long = int(size * long / short)
    new = (size, new_long) if h <= w else (new_long, size)
    if new == (h, w):
        return x
    return torch.nn.functional.interpolate(
        x, size=new, mode="bilinear", align_corners=False, antialias=True
    )


def _build_network(
    what: str,
    rewrite: Callable[[], nn.Module],
    state: Mapping[str, torch.Tensor],
    nodes: Sequence[str],
    *,
    source: str,
    optional: Sequence[str],
    implementation: str,
) -> tuple[nn.Module, str]:
    """The network returning a dict of ``nodes``, torchvision's or the rewrite, and its label."""
    if implementation not in IMPLEMENTATIONS:
        raise UsageError(
            f"implementation={implementation!r}: choose from {', '.join(IMPLEMENTATIONS)}"
        )
    models = torchvision_models() if implementation != "rewrite" else None
    if implementation == "torchvision" and models is None:
        raise MissingInputError(
            f"{what}: implementation='torchvision' but torchvision cannot be imported here; "
            "install a torchvision matching torch or use implementation='auto'"
        )
    if models is None:
        net = load_network_weights(rewrite(), state, source=source, optional=optional)
        label = "rewrite"
    else:
        import torchvision
        from torchvision.models.feature_extraction import create_feature_extractor

        tv = load_network_weights(
            _TORCHVISION_BUILDERS[what](models), state, source=source, optional=optional
        )
        with warnings.catch_warnings():  # Inception's train/eval graphs differ: expected
            warnings.filterwarnings("ignore", message="NOTE: The nodes obtained by tracing")
            net = create_feature_extractor(tv, return_nodes=list(nodes))
        label = f"torchvision {torchvision.__version__}"
    logger.info("%s extractor: %s network, weights %s", what, label, source)
    return net.eval(), label


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
    implementation: str,
    square: bool = False,
) -> FeatureExtractor:
    """Wrap a network whose ``forward`` returns a dict of node outputs.

    Images are resized shorter side to ``input_size`` (torchvision's ``Resize``), or to
    ``input_size`` x ``input_size`` with ``square`` (CLIP, whose input size is fixed).
    """
    dev = torch.device(device)
    module = module.to(dev).eval()
    m = torch.tensor(mean, dtype=torch.float32, device=dev).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=dev).view(1, 3, 1, 1)
    resize = resize_tensor if square else resize_short_side

    def fn(images: np.ndarray) -> dict[str, np.ndarray]:
        x = resize(to_tensor(images).to(dev), input_size)
        with torch.inference_mode():
            out = module((x - m) / s)
        return {label: out[node].flatten(1).float().cpu().numpy() for label, node in nodes.items()}

    return FeatureExtractor(
        name, kinds, fn, source=source, batch_size=batch_size, implementation=implementation
    )


def _network_extractor(
    what: str,
    rewrite: Callable[[], nn.Module],
    path: Path,
    outputs: Mapping[str, tuple[str, Kind]],
    *,
    optional: Sequence[str],
    input_size: int,
    device: str,
    batch_size: int,
    implementation: str,
) -> FeatureExtractor:
    """Load ``path`` into torchvision's network or the rewrite; ``outputs``: label → (node, kind)."""
    nodes = {label: node for label, (node, _) in outputs.items()}
    net, label = _build_network(
        what,
        rewrite,
        load_state_dict_file(path),
        sorted(set(nodes.values())),
        source=str(path),
        optional=optional,
        implementation=implementation,
    )
    return _torch_extractor(
        what,
        net,
        nodes,
        {label: kind for label, (_, kind) in outputs.items()},
        input_size=input_size,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        source=str(path),
        device=device,
        batch_size=batch_size,
        implementation=label,
    )


def alexnet_factory(
    *,
    weights: str | os.PathLike | None = None,
    device: str = "cpu",
    batch_size: int = 32,
    input_size: int = 256,
    implementation: str = "auto",
) -> FeatureExtractor:
    """AlexNet layers 2 and 5 (torchvision's ``features.4`` / ``features.11``) at 256 px.

    ``implementation``: ``"auto"`` (torchvision's network where it imports, else the rewrite),
    ``"torchvision"`` or ``"rewrite"``; the same for every network extractor.
    """
    path = find_weights("alexnet", ["alexnet*.safetensors", "alexnet*.pth"], weights)
    return _network_extractor(
        "alexnet",
        AlexNetFeatures,
        path,
        {
            "AlexNet(2)": ("features.4", "identification"),
            "AlexNet(5)": ("features.11", "identification"),
        },
        optional=["classifier."],
        input_size=input_size,
        device=device,
        batch_size=batch_size,
        implementation=implementation,
    )


def inception_factory(
    *,
    weights: str | os.PathLike | None = None,
    device: str = "cpu",
    batch_size: int = 16,
    input_size: int = 342,
    implementation: str = "auto",
) -> FeatureExtractor:
    """InceptionV3 pool features (2,048-d) at 342 px, torchvision's ``transform_input`` on."""
    path = find_weights("inception", ["inception_v3*.safetensors", "inception_v3*.pth"], weights)
    return _network_extractor(
        "inception",
        InceptionV3Features,
        path,
        {"InceptionV3": ("avgpool", "identification")},
        optional=["AuxLogits.", "fc."],
        input_size=input_size,
        device=device,
        batch_size=batch_size,
        implementation=implementation,
    )


def efficientnet_factory(
    *,
    weights: str | os.PathLike | None = None,
    device: str = "cpu",
    batch_size: int = 16,
    input_size: int = 255,
    implementation: str = "auto",
) -> FeatureExtractor:
    """EfficientNet-B1 pool features (1,280-d) at 255 px, scored as a distance."""
    path = find_weights(
        "efficientnet", ["efficientnet_b1*.safetensors", "efficientnet_b1*.pth"], weights
    )
    return _network_extractor(
        "efficientnet",
        EfficientNetB1Features,
        path,
        {"EffNet-B1": ("avgpool", "distance")},
        optional=["classifier."],
        input_size=input_size,
        device=device,
        batch_size=batch_size,
        implementation=implementation,
    )


def swav_factory(
    *,
    weights: str | os.PathLike | None = None,
    device: str = "cpu",
    batch_size: int = 16,
    input_size: int = 224,
    implementation: str = "auto",
) -> FeatureExtractor:
    """SwAV ResNet-50 pool features (2,048-d) at 224 px (MindEye's ``Resize(224)``), a distance.

    SwAV's hub entry point is torchvision's ``resnet50`` with the SwAV checkpoint loaded.
    """
    path = find_weights(
        "swav", ["swav*.safetensors", "swav*.pth", "swav*.pth.tar", "resnet50_swav*"], weights
    )
    return _network_extractor(
        "swav",
        ResNet50Features,
        path,
        {"SwAV": ("avgpool", "distance")},
        optional=["fc."],
        input_size=input_size,
        device=device,
        batch_size=batch_size,
        implementation=implementation,
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
    bilinear resize to the model's input size (224 px) and CLIP's normalisation. Non-square
    images are resized to a square (the model's input is fixed; MindEye only fed squares).

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
        implementation=f"transformers {type(net).__name__}",
        square=True,
    )
