"""Which network code the extractors run: torchvision's where it imports, else the rewrite.

The test that torchvision is chosen runs only where torchvision imports; the project's CPU torch
build cannot load torchvision's wheel, so there it skips. Run it for real in an environment with
a matching torch/torchvision pair (see docs/evaluation.md, "Extractors against torchvision").
"""

from __future__ import annotations

import importlib.abc
import logging
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from nipype_brainrecon import evaluation as ev
from nipype_brainrecon.errors import MissingInputError, UsageError
from nipype_brainrecon.evaluation import networks

TV_NAMES = ("torchvision", "torchvision.models", "torchvision.models.feature_extraction")


def _randomise_norms(net, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
    return net.eval()


def _normalised(x, size):
    """The reference preprocessing written out: bilinear antialiased resize, ImageNet norm."""
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(ev.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(ev.IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def _as_tensor(imgs):
    return torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255


class _BrokenTorchvision(importlib.abc.MetaPathFinder):
    """Importing torchvision fails as a wheel built for another torch does."""

    def find_spec(self, name, path=None, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            raise RuntimeError("operator torchvision::nms does not exist")
        return None


@pytest.fixture()
def broken_torchvision(monkeypatch):
    for name in TV_NAMES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setattr(sys, "meta_path", [_BrokenTorchvision(), *sys.meta_path])
    networks.torchvision_models.cache_clear()
    yield
    networks.torchvision_models.cache_clear()


@pytest.fixture()
def fresh_choice():
    networks.torchvision_models.cache_clear()
    yield
    networks.torchvision_models.cache_clear()


def test_broken_torchvision_falls_back_quietly_to_the_rewrite(tmp_path, broken_torchvision, caplog):
    torch.manual_seed(0)
    alex = ev.AlexNetFeatures().eval()
    torch.save(alex.state_dict(), tmp_path / "alexnet.pth")
    imgs = np.random.default_rng(1).integers(0, 256, (2, 80, 60, 3), dtype=np.uint8)
    with caplog.at_level(logging.DEBUG, logger=networks.__name__):
        ext = ev.get_extractor("alexnet", weights=tmp_path / "alexnet.pth")
        feats = ext(imgs)
    assert ext.implementation == "rewrite"
    assert "implementation='rewrite'" in repr(ext)
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("RuntimeError: operator torchvision::nms" in r.getMessage() for r in debug)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    # Shorter side to 256 as torchvision's Resize(256): 60 x 80 -> 256 x int(256 * 80 / 60).
    with torch.no_grad():
        ref = alex(_normalised(_as_tensor(imgs), (341, 256)))
    np.testing.assert_array_equal(feats["AlexNet(5)"], ref["features.11"].flatten(1).numpy())
    np.testing.assert_array_equal(feats["AlexNet(2)"], ref["features.4"].flatten(1).numpy())
    # Asking for torchvision where it cannot import is a missing input, not a fallback.
    with pytest.raises(MissingInputError, match="torchvision cannot be imported here"):
        ev.get_extractor("alexnet", weights=tmp_path / "alexnet.pth", implementation="torchvision")
    with pytest.raises(UsageError, match="implementation='tf': choose from auto"):
        ev.get_extractor("alexnet", weights=tmp_path / "alexnet.pth", implementation="tf")


def test_swav_default_is_mindeyes_224_px(tmp_path, broken_torchvision):
    torch.manual_seed(3)
    res = _randomise_norms(ev.ResNet50Features(), 3)
    torch.save(res.state_dict(), tmp_path / "swav.pth")
    imgs = np.random.default_rng(4).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    ext = ev.get_extractor("swav", weights=tmp_path / "swav.pth")
    with torch.no_grad():
        ref = res(_normalised(_as_tensor(imgs), (224, 224)))["avgpool"].flatten(1).numpy()
    np.testing.assert_allclose(ext(imgs)["SwAV"], ref, rtol=1e-5, atol=1e-6)


def test_resize_short_side_is_torchvisions_resize_int():
    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, (1, 30, 47, 3), dtype=np.uint8)
    out = networks.resize_short_side(_as_tensor(img), 17)
    assert tuple(out.shape[-2:]) == (17, int(17 * 47 / 30))  # torchvision's rounding (down)
    tall = networks.resize_short_side(_as_tensor(img.transpose(0, 2, 1, 3).copy()), 17)
    assert tuple(tall.shape[-2:]) == (26, 17)
    for c in range(3):  # PIL's bilinear filter is antialiased as torch's is
        pil = Image.fromarray(img[0, ..., c].astype(np.float32) / 255.0, mode="F")
        ref = np.asarray(pil.resize((26, 17), Image.Resampling.BILINEAR))
        np.testing.assert_allclose(out[0, c].numpy(), ref, atol=2e-5)
    same = _as_tensor(img[:, :30, :30])
    assert networks.resize_short_side(same, 30) is same


@pytest.mark.parametrize("name", ["alexnet", "swav"])
def test_torchvision_network_is_chosen_where_it_imports(tmp_path, fresh_choice, name):
    if networks.torchvision_models() is None:
        pytest.skip(
            "torchvision is not installed or does not import here (e.g. beside the CPU torch "
            "build); "
            "run in an environment where it does, see docs/evaluation.md"
        )
    import torchvision
    from torchvision import transforms
    from torchvision.models.feature_extraction import create_feature_extractor

    torch.manual_seed(6)
    if name == "alexnet":
        theirs, size = torchvision.models.alexnet(), 256
        return_nodes = {"AlexNet(2)": "features.4", "AlexNet(5)": "features.11"}
    else:
        theirs, size = torchvision.models.resnet50(), 224
        return_nodes = {"SwAV": "avgpool"}
    theirs = _randomise_norms(theirs, 8)
    torch.save(theirs.state_dict(), tmp_path / f"{name}.pth")
    ext = ev.get_extractor(name, weights=tmp_path / f"{name}.pth")
    assert ext.implementation == f"torchvision {torchvision.__version__}"
    imgs = np.random.default_rng(7).integers(0, 256, (2, 72, 96, 3), dtype=np.uint8)
    feats = ext(imgs)
    # MindEye's code path: transforms on float tensors, create_feature_extractor.
    pre = transforms.Compose(
        [
            transforms.Resize(size, interpolation=transforms.InterpolationMode.BILINEAR),
            transforms.Normalize(mean=list(ev.IMAGENET_MEAN), std=list(ev.IMAGENET_STD)),
        ]
    )
    model = create_feature_extractor(theirs, return_nodes=list(return_nodes.values()))
    rewrite = ev.get_extractor(name, weights=tmp_path / f"{name}.pth", implementation="rewrite")
    assert rewrite.implementation == "rewrite"
    got_rewrite = rewrite(imgs)
    with torch.no_grad():
        ref = model(pre(_as_tensor(imgs)))
    for label, node in return_nodes.items():
        expected = ref[node].flatten(1).numpy()
        np.testing.assert_array_equal(feats[label], expected)
        np.testing.assert_allclose(got_rewrite[label], expected, rtol=1e-5, atol=1e-6)
