"""Torchvision-compatible networks in plain torch, parameter names as torchvision's.

AlexNet, Inception v3, EfficientNet-B1 and ResNet-50 (SwAV's architecture), built so that a
torchvision ``state_dict`` loads into them; each ``forward`` returns a dict of the node
outputs the feature extractors read.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class AlexNetFeatures(nn.Module):
    """AlexNet with torchvision's layout (``features``, ``avgpool``, ``classifier``).

    ``forward`` returns the outputs of ``features.4`` (ReLU after the 2nd convolution: "layer 2")
    and ``features.11`` (ReLU after the 5th: "layer 5"), the nodes MindEye reads.
    """

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(0.5),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for i, layer in enumerate(self.features[:12]):
            x = layer(x)
            if i in (4, 11):
                out[f"features.{i}"] = x
        return out


class _ConvBNReLU(nn.Module):
    """Inception's basic unit: convolution without bias, batch norm (eps 1e-3), ReLU."""

    def __init__(self, cin: int, cout: int, **conv: Any) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **conv)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg3(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)


class _MixedA(nn.Module):
    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = _ConvBNReLU(cin, 64, kernel_size=1)
        self.branch5x5_1 = _ConvBNReLU(cin, 48, kernel_size=1)
        self.branch5x5_2 = _ConvBNReLU(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = _ConvBNReLU(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = _ConvBNReLU(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = _ConvBNReLU(96, 96, kernel_size=3, padding=1)
        self.branch_pool = _ConvBNReLU(cin, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_avg3(x))], 1)


class _MixedB(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = _ConvBNReLU(cin, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = _ConvBNReLU(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = _ConvBNReLU(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = _ConvBNReLU(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class _MixedC(nn.Module):
    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        row, col = (
            {"kernel_size": (1, 7), "padding": (0, 3)},
            {"kernel_size": (7, 1), "padding": (3, 0)},
        )
        self.branch1x1 = _ConvBNReLU(cin, 192, kernel_size=1)
        self.branch7x7_1 = _ConvBNReLU(cin, c7, kernel_size=1)
        self.branch7x7_2 = _ConvBNReLU(c7, c7, **row)
        self.branch7x7_3 = _ConvBNReLU(c7, 192, **col)
        self.branch7x7dbl_1 = _ConvBNReLU(cin, c7, kernel_size=1)
        self.branch7x7dbl_2 = _ConvBNReLU(c7, c7, **col)
        self.branch7x7dbl_3 = _ConvBNReLU(c7, c7, **row)
        self.branch7x7dbl_4 = _ConvBNReLU(c7, c7, **col)
        self.branch7x7dbl_5 = _ConvBNReLU(c7, 192, **row)
        self.branch_pool = _ConvBNReLU(cin, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for k in range(1, 6):
            d = getattr(self, f"branch7x7dbl_{k}")(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg3(x))], 1)


class _MixedD(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = _ConvBNReLU(cin, 192, kernel_size=1)
        self.branch3x3_2 = _ConvBNReLU(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = _ConvBNReLU(cin, 192, kernel_size=1)
        self.branch7x7x3_2 = _ConvBNReLU(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _ConvBNReLU(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _ConvBNReLU(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = x
        for k in range(1, 5):
            b7 = getattr(self, f"branch7x7x3_{k}")(b7)
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class _MixedE(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        row, col = (
            {"kernel_size": (1, 3), "padding": (0, 1)},
            {"kernel_size": (3, 1), "padding": (1, 0)},
        )
        self.branch1x1 = _ConvBNReLU(cin, 320, kernel_size=1)
        self.branch3x3_1 = _ConvBNReLU(cin, 384, kernel_size=1)
        self.branch3x3_2a = _ConvBNReLU(384, 384, **row)
        self.branch3x3_2b = _ConvBNReLU(384, 384, **col)
        self.branch3x3dbl_1 = _ConvBNReLU(cin, 448, kernel_size=1)
        self.branch3x3dbl_2 = _ConvBNReLU(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = _ConvBNReLU(384, 384, **row)
        self.branch3x3dbl_3b = _ConvBNReLU(384, 384, **col)
        self.branch_pool = _ConvBNReLU(cin, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        return torch.cat([self.branch1x1(x), b3, d, self.branch_pool(_avg3(x))], 1)


class _InceptionAux(nn.Module):
    """The auxiliary classifier: present in the weights, unused for features."""

    def __init__(self, cin: int, num_classes: int) -> None:
        super().__init__()
        self.conv0 = _ConvBNReLU(cin, 128, kernel_size=1)
        self.conv1 = _ConvBNReLU(128, 768, kernel_size=5)
        self.fc = nn.Linear(768, num_classes)


class InceptionV3Features(nn.Module):
    """Inception v3 with torchvision's layout; ``forward`` returns the 2,048-d ``avgpool``.

    ``transform_input=True`` maps ImageNet-normalised input to the [-1, 1] scaling the ported
    Google weights expect, as torchvision does whenever it loads those weights.
    """

    def __init__(self, num_classes: int = 1000, transform_input: bool = True) -> None:
        super().__init__()
        self.transform_input = transform_input
        self.Conv2d_1a_3x3 = _ConvBNReLU(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = _ConvBNReLU(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = _ConvBNReLU(32, 64, kernel_size=3, padding=1)
        self.maxpool1 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Conv2d_3b_1x1 = _ConvBNReLU(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = _ConvBNReLU(80, 192, kernel_size=3)
        self.maxpool2 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Mixed_5b = _MixedA(192, 32)
        self.Mixed_5c = _MixedA(256, 64)
        self.Mixed_5d = _MixedA(288, 64)
        self.Mixed_6a = _MixedB(288)
        self.Mixed_6b = _MixedC(768, 128)
        self.Mixed_6c = _MixedC(768, 160)
        self.Mixed_6d = _MixedC(768, 160)
        self.Mixed_6e = _MixedC(768, 192)
        self.AuxLogits = _InceptionAux(768, num_classes)
        self.Mixed_7a = _MixedD(768)
        self.Mixed_7b = _MixedE(1280)
        self.Mixed_7c = _MixedE(2048)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(2048, num_classes)
        self._trunk = [
            "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
            "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a",
            "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c",
        ]  # fmt: skip

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.transform_input:
            mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
            std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
            x = (x * std + mean - 0.5) / 0.5
        for name in self._trunk:
            x = getattr(self, name)(x)
        return {"avgpool": self.avgpool(x)}


def _make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor`` without losing more than 10 %."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


class _ConvBNAct(nn.Sequential):
    """Convolution (same padding, no bias), batch norm, optional SiLU: keys ``0``, ``1``."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if act:
            layers.append(nn.SiLU())
        super().__init__(*layers)


class _SqueezeExcite(nn.Module):
    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.fc2(F.silu(self.fc1(F.adaptive_avg_pool2d(x, 1))))
        return x * torch.sigmoid(scale)


class _MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        hidden = _make_divisible(cin * expand)
        layers: list[nn.Module] = []
        if hidden != cin:
            layers.append(_ConvBNAct(cin, hidden, 1))
        layers += [
            _ConvBNAct(hidden, hidden, kernel, stride, groups=hidden),
            _SqueezeExcite(hidden, max(1, cin // 4)),
            _ConvBNAct(hidden, cout, 1, act=False),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Stochastic depth is the identity at inference.
        return self.block(x) + x if self.residual else self.block(x)


#: EfficientNet-B1 stages: (expand ratio, kernel, stride, in, out, blocks); B0's block counts
#: times the depth multiplier 1.1, rounded up.
_EFFNET_B1_STAGES = (
    (1, 3, 1, 32, 16, 2),
    (6, 3, 2, 16, 24, 3),
    (6, 5, 2, 24, 40, 3),
    (6, 3, 2, 40, 80, 4),
    (6, 5, 1, 80, 112, 4),
    (6, 5, 2, 112, 192, 5),
    (6, 3, 1, 192, 320, 2),
)


class EfficientNetB1Features(nn.Module):
    """EfficientNet-B1 with torchvision's layout; ``forward`` returns the 1,280-d ``avgpool``."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [_ConvBNAct(3, 32, 3, stride=2)]
        for expand, kernel, stride, cin, cout, blocks in _EFFNET_B1_STAGES:
            stage = [
                _MBConv(cin if b == 0 else cout, cout, expand, kernel, stride if b == 0 else 1)
                for b in range(blocks)
            ]
            layers.append(nn.Sequential(*stage))
        layers.append(_ConvBNAct(320, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"avgpool": self.avgpool(self.features(x))}


class _Bottleneck(nn.Module):
    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * 4)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != width * 4:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, width * 4, 1, stride, bias=False), nn.BatchNorm2d(width * 4)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class ResNet50Features(nn.Module):
    """ResNet-50 (v1.5, stride in the 3x3 convolution) with torchvision's layout.

    The architecture SwAV's released checkpoint fits; ``forward`` returns the 2,048-d
    ``avgpool``.
    """

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, (width, blocks, stride) in enumerate(
            [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)], start=1
        ):
            layer = []
            for b in range(blocks):
                layer.append(_Bottleneck(cin, width, stride if b == 0 else 1))
                cin = width * 4
            setattr(self, f"layer{i}", nn.Sequential(*layer))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return {"avgpool": self.avgpool(x)}
