"""The evaluation suite against reference formulas, scikit-image, scipy, PIL and torchvision."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy.spatial.distance import correlation as scipy_correlation

from nipype_brainrecon import evaluation as ev
from nipype_brainrecon.errors import DataError, MissingInputError, UsageError
from nipype_brainrecon.evaluation import extractors as ev_extractors
from nipype_brainrecon.synthetic.stimuli import generate_scenes, render_scene

# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _images(rng, shape):
    return rng.integers(0, 256, shape, dtype=np.uint8)


def _scenes(n, size, seed=3):
    return np.stack([np.asarray(render_scene(s, size)) for s in generate_scenes(n, seed=seed)])


@pytest.fixture()
def no_weights(tmp_path, monkeypatch):
    """Point every weights location at empty folders so no real file is ever found."""
    env_dir = tmp_path / "weights"
    env_dir.mkdir()
    monkeypatch.setenv(ev.WEIGHTS_ENV, str(env_dir))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    return env_dir


def _ssim_reference(a, b, sigma=1.5, columns=False):
    """SSIM by explicit windows: weighted sums over each interior pixel's neighbourhood."""
    radius = int(3.5 * sigma + 0.5)
    x = np.arange(-radius, radius + 1)
    g = np.exp(-0.5 * x**2 / sigma**2)
    g /= g.sum()
    w = g[:, None] if columns else np.outer(g, g)
    c1, c2 = 0.01**2, 0.03**2
    h, wd = a.shape
    vals = []
    cols = range(wd) if columns else range(radius, wd - radius)
    for i in range(radius, h - radius):
        for j in cols:
            if columns:
                pa, pb = (
                    a[i - radius : i + radius + 1, j : j + 1],
                    b[i - radius : i + radius + 1, j : j + 1],
                )
            else:
                pa = a[i - radius : i + radius + 1, j - radius : j + radius + 1]
                pb = b[i - radius : i + radius + 1, j - radius : j + radius + 1]
            mx, my = (w * pa).sum(), (w * pb).sum()
            vx = (w * (pa - mx) ** 2).sum()
            vy = (w * (pb - my) ** 2).sum()
            cxy = (w * (pa - mx) * (pb - my)).sum()
            vals.append(
                (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
            )
    return float(np.mean(vals))


# --------------------------------------------------------------------------------------------
# resizing, PixCorr, SSIM
# --------------------------------------------------------------------------------------------


def test_resize_is_antialiased_bilinear_like_pil():
    rng = np.random.default_rng(0)
    img = _images(rng, (40, 40, 3))
    ours = ev.resize_images(img, 17)
    for c in range(3):
        pil = Image.fromarray(img[..., c].astype(np.float32) / 255.0, mode="F")
        ref = np.asarray(pil.resize((17, 17), Image.Resampling.BILINEAR))
        np.testing.assert_allclose(ours[..., c], ref, atol=2e-5)
    # Same size: unchanged values, as float in [0, 1].
    np.testing.assert_allclose(ev.resize_images(img, 40), img / 255.0, atol=1e-7)


@pytest.mark.parametrize("size", [24, 16])
def test_pixcorr_equals_corrcoef_loop(size):
    rng = np.random.default_rng(1)
    orig = _images(rng, (5, 24, 24, 3))
    rec = np.clip(orig[:, None] / 255.0 + 0.3 * rng.standard_normal((5, 3, 24, 24, 3)), 0, 1)
    got = ev.pixcorr(orig, rec, size=size, batch_size=2)
    ro, rr = ev.resize_images(orig, size), ev.resize_images(rec, size)
    ref = np.array(
        [[np.corrcoef(ro[i].ravel(), rr[i, s].ravel())[0, 1] for s in range(3)] for i in range(5)]
    )
    assert got.shape == (5, 3)
    np.testing.assert_allclose(got, ref, atol=1e-6)
    assert 0.3 < ref.mean() < 0.95  # a real, non-trivial correlation was checked
    # One reconstruction per image: shape (n,)
    np.testing.assert_allclose(ev.pixcorr(orig, rec[:, 0], size=size), ref[:, 0], atol=1e-6)


@pytest.mark.parametrize("columns", [False, True])
def test_ssim_equals_explicit_window_reference(columns):
    rng = np.random.default_rng(2)
    orig = rng.random((3, 20, 20, 3))
    rec = np.clip(orig + 0.15 * rng.standard_normal(orig.shape), 0, 1)
    got = ev.ssim(orig, rec, size=20, variant="columns" if columns else "2d", batch_size=2)
    # The suite works on float32 images; give the reference the same values.
    go = ev.to_grayscale(orig.astype(np.float32))
    gr = ev.to_grayscale(rec.astype(np.float32))
    ref = [_ssim_reference(go[i], gr[i], columns=columns) for i in range(3)]
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)
    assert 0.3 < np.mean(ref) < 0.95


@pytest.mark.parametrize("variant", ["2d", "columns"])
def test_ssim_equals_scikit_image(variant):
    metrics = pytest.importorskip("skimage.metrics")
    color = pytest.importorskip("skimage.color")
    rng = np.random.default_rng(3)
    orig = _images(rng, (3, 50, 50, 3))
    rec = _images(rng, (3, 2, 64, 64, 3)) // 2 + orig[:, None, :1, :1] // 2
    got = ev.ssim(orig, rec, size=40, variant=variant)
    go = color.rgb2gray(ev.resize_images(orig, 40).astype(np.float64))
    gr = color.rgb2gray(ev.resize_images(rec, 40).astype(np.float64))
    extra = {"channel_axis": -1} if variant == "columns" else {}
    ref = [
        [
            metrics.structural_similarity(
                gr[i, s],
                go[i],
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                data_range=1.0,
                **extra,
            )
            for s in range(2)
        ]
        for i in range(3)
    ]
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)


def test_identical_images_score_one_and_noise_near_zero():
    rng = np.random.default_rng(4)
    orig = _images(rng, (6, 64, 64, 3))
    np.testing.assert_allclose(ev.pixcorr(orig, orig, size=64), 1.0, atol=1e-9)
    np.testing.assert_allclose(ev.ssim(orig, orig, size=64), 1.0, atol=1e-9)
    noise = _images(rng, (6, 64, 64, 3))
    assert abs(ev.pixcorr(orig, noise, size=64).mean()) < 0.02
    assert abs(ev.ssim(orig, noise, size=64).mean()) < 0.05
    assert ev.ssim(orig, noise, size=64, variant="columns").mean() < 0.05


def test_constant_reconstruction_has_zero_pixcorr():
    rng = np.random.default_rng(5)
    orig = _images(rng, (3, 16, 16, 3))
    blank = np.zeros((16, 16, 3), np.uint8)  # one image compared with every original
    np.testing.assert_array_equal(ev.pixcorr(orig, blank, size=16), np.zeros(3))


def test_correlation_distance_equals_scipy():
    rng = np.random.default_rng(6)
    o = rng.standard_normal((4, 30))
    r = o[:, None] + rng.standard_normal((4, 3, 30))
    got = ev.correlation_distance(o, r)
    ref = [[scipy_correlation(o[i], r[i, s]) for s in range(3)] for i in range(4)]
    np.testing.assert_allclose(got, ref, atol=1e-12)
    np.testing.assert_allclose(ev.correlation_distance(o, r[:, 0]), np.array(ref)[:, 0])


@pytest.mark.parametrize(
    ("orig", "rec", "match"),
    [
        (np.zeros((3, 16, 16, 3), np.uint8), np.zeros((2, 16, 16, 3), np.uint8), "2 image sets"),
        (np.zeros((3, 16, 16, 3), np.uint8), np.zeros((3, 16, 32, 3), np.uint8), "aspect ratio"),
        (np.zeros((3, 16, 16, 3), np.int64), np.zeros((3, 16, 16, 3), np.uint8), "dtype int64"),
        (np.zeros((3, 16, 16, 3), np.uint8), np.zeros((3, 16, 16, 3), bool), "dtype bool"),
        (np.zeros((3, 16, 16, 3), np.uint8), np.full((3, 16, 16, 3), 2.0), r"outside \[0, 1\]"),
        (np.zeros((3, 16, 16, 3), np.uint8), np.full((3, 16, 16, 3), np.nan), "NaN"),
        (np.zeros((3, 16, 16, 4), np.uint8), np.zeros((3, 16, 16, 3), np.uint8), "RGB"),
        (np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16, 3), np.uint8), "originals"),
    ],
)
def test_bad_inputs_raise_data_error(orig, rec, match):
    for fn in (ev.pixcorr, ev.ssim):
        with pytest.raises(DataError, match=match):
            fn(orig, rec, size=16)


def test_bad_options_raise_usage_error():
    img = np.zeros((2, 16, 16, 3), np.uint8)
    with pytest.raises(UsageError, match="at least 11 px"):
        ev.ssim(img, img, size=8)
    with pytest.raises(UsageError, match="variant"):
        ev.ssim(img, img, size=16, variant="3d")


# --------------------------------------------------------------------------------------------
# extractor registry and weight-free extractors
# --------------------------------------------------------------------------------------------


def test_registry_lists_builtins_and_rejects_unknown_names():
    assert set(ev.PAPER_EXTRACTORS) <= set(ev.available_extractors())
    with pytest.raises(UsageError, match="unknown feature extractor 'vgg'.*pixels"):
        ev.get_extractor("vgg")


def test_register_custom_extractor(monkeypatch):
    monkeypatch.setattr(ev_extractors, "_REGISTRY", dict(ev_extractors._REGISTRY))

    def factory(scale=1.0):
        def fn(images):
            return {"Mean": images.reshape(len(images), -1, 3).mean(axis=1) * scale}

        return ev.FeatureExtractor("mean", {"Mean": "distance"}, fn, batch_size=2)

    ev.register_extractor("Mean", factory)
    ext = ev.get_extractor("MEAN", scale=2.0)
    imgs = np.random.default_rng(7).random((5, 8, 8, 3))
    np.testing.assert_allclose(ext(imgs)["Mean"], imgs.mean(axis=(1, 2)) * 2.0)
    with pytest.raises(UsageError, match="already registered"):
        ev.register_extractor("mean", factory)
    ev.register_extractor("mean", lambda: "not an extractor", overwrite=True)
    with pytest.raises(UsageError, match="returned str"):
        ev.get_extractor("mean")


def test_pixels_extractor_is_the_downsampled_image():
    imgs = _images(np.random.default_rng(8), (3, 40, 40, 3))
    ext = ev.get_extractor("pixels", size=10)
    assert ext.outputs == {"Pixels": "identification"}
    np.testing.assert_allclose(
        ext(imgs)["Pixels"], ev.resize_images(imgs, 10).reshape(3, -1), atol=1e-7
    )


def test_lowlevel_energy_follows_orientation_and_colour_histograms_sum_to_one():
    size = 64
    x = np.arange(size)
    vertical = np.tile(((x // 4) % 2 == 0)[None, :], (size, 1))  # varies along x
    imgs = np.zeros((2, size, size, 3), np.uint8)
    imgs[0] = vertical[..., None] * 255
    imgs[1] = vertical.T[..., None] * 255  # horizontal stripes
    feats = ev.get_extractor("lowlevel", size=size, grid=4, bins=8)(imgs)
    energy = feats["LowLevel(energy)"].reshape(2, 3, 4, 16)  # image, scale, orientation, cell
    # Orientation 0 is the x derivative, 2 (90 degrees) the y derivative.
    assert energy[0, :, 0].mean() > 10 * energy[0, :, 2].mean()
    assert energy[1, :, 2].mean() > 10 * energy[1, :, 0].mean()
    colour = feats["LowLevel(colour)"].reshape(2, 3, 8)
    np.testing.assert_allclose(colour.sum(axis=2), 1.0)
    # Half the pixels are white (last bin), half black (first bin).
    np.testing.assert_allclose(colour[0, :, 0], 0.5)
    np.testing.assert_allclose(colour[0, :, -1], 0.5)
    with pytest.raises(UsageError, match="multiple of grid"):
        ev.get_extractor("lowlevel", size=30, grid=8)


# --------------------------------------------------------------------------------------------
# networks that need weights
# --------------------------------------------------------------------------------------------


def test_scene_colour_features_name_the_objects_colours_and_background():
    """On rendered scenes the object-colour shares and the background match the scene."""
    from nipype_brainrecon.synthetic.stimuli import BACKGROUNDS, COLOURS

    scenes = generate_scenes(40, seed=5)
    images = np.stack([np.asarray(render_scene(s, 64)) for s in scenes])
    feats = ev.scene_colour_features(images)["Scene(colours)"]
    assert feats.shape == (40, len(COLOURS) + len(BACKGROUNDS))
    names = list(COLOURS)
    right = []
    for scene, row in zip(scenes, feats, strict=True):
        shares, ground = row[: len(COLOURS)], row[len(COLOURS) :]
        assert list(BACKGROUNDS)[int(ground.argmax())] == scene.background
        assert ground.sum() == 1 and shares.sum() == pytest.approx(1.0)
        present = {o.colour for o in scene.objects}
        # Anti-aliased edges aside, the object pixels are the scene's colours.
        right.append(sum(shares[names.index(c)] for c in present))
    assert min(right) > 0.75 and np.mean(right) > 0.95
    # A uniform image has no object pixels (zero shares) and still a background.
    assert ev.get_extractor("scene").outputs == {"Scene(colours)": "identification"}
    grey = np.full((1, 32, 32, 3), 128, np.uint8)
    row = ev.scene_colour_features(grey)["Scene(colours)"][0]
    assert (
        row[: len(COLOURS)].sum() == 0
        and list(BACKGROUNDS)[int(row[len(COLOURS) :].argmax())] == "grey"
    )
    with pytest.raises(UsageError, match="at least one"):
        ev.scene_colour_features(grey, backgrounds={})


def test_scene_palette_is_the_simulators():
    """Evaluation keeps its own copy of the palette (scoring never imports the simulator)."""
    from nipype_brainrecon.synthetic.stimuli import BACKGROUNDS, COLOURS

    assert list(ev.OBJECT_COLOURS.items()) == list(COLOURS.items())
    assert list(ev.BACKGROUND_COLOURS.items()) == list(BACKGROUNDS.items())


@pytest.mark.parametrize("name", ["alexnet", "inception", "efficientnet", "swav"])
def test_weight_needing_extractor_without_weights_names_where_it_looked(name, no_weights):
    with pytest.raises(MissingInputError) as info:
        ev.get_extractor(name)
    msg = str(info.value)
    assert str(no_weights) in msg
    assert str(torch.hub.get_dir()) in msg
    assert ev.WEIGHTS_ENV in msg and "weights=PATH" in msg
    assert "\n" not in msg
    with pytest.raises(MissingInputError, match="not-here.pth: .* weights file not found"):
        ev.get_extractor(name, weights=no_weights / "not-here.pth")


def test_clip_without_local_model_is_a_missing_input(no_weights):
    with pytest.raises(MissingInputError, match="not found locally.*never downloaded"):
        ev.get_extractor("clip", model="brainrecon-tests/no-such-clip")
    with pytest.raises(MissingInputError, match="CLIP model folder not found"):
        ev.get_extractor("clip", model=str(no_weights / "missing-folder"))


@pytest.mark.parametrize(
    ("cls", "n_params", "keys"),
    [
        (ev.AlexNetFeatures, 61_100_840, {"features.10.weight": (256, 256, 3, 3)}),
        (
            ev.InceptionV3Features,
            27_161_264,
            {
                "Mixed_7c.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1),
                "AuxLogits.conv1.conv.weight": (768, 128, 5, 5),
                "Mixed_6e.branch7x7dbl_5.bn.running_var": (192,),
            },
        ),
        (
            ev.EfficientNetB1Features,
            7_794_184,
            {
                "features.1.0.block.1.fc1.weight": (8, 32, 1, 1),
                "features.2.0.block.0.0.weight": (96, 16, 1, 1),
                "features.6.4.block.1.0.weight": (1152, 1, 5, 5),
                "features.8.1.running_mean": (1280,),
            },
        ),
        (
            ev.ResNet50Features,
            25_557_032,
            {"layer1.0.downsample.0.weight": (256, 64, 1, 1), "layer4.2.bn3.weight": (2048,)},
        ),
    ],
)
def test_networks_have_torchvisions_parameters(cls, n_params, keys):
    """Parameter totals are torchvision's documented ``num_params`` for these weights."""
    net = cls()
    assert sum(p.numel() for p in net.parameters()) == n_params
    state = net.state_dict()
    for key, shape in keys.items():
        assert tuple(state[key].shape) == shape


def _randomise_norms(net, seed):
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
    return net.eval()


def test_alexnet_loads_a_state_dict_file_and_extracts_layers_2_and_5(no_weights):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    source = ev.AlexNetFeatures()
    # Only the convolutional trunk is needed; the classifier is optional.
    save_file(
        {k: v for k, v in source.state_dict().items() if k.startswith("features.")},
        str(no_weights / "alexnet-test.safetensors"),
    )
    ext = ev.get_extractor("alexnet")
    assert ext.source.endswith("alexnet-test.safetensors")
    imgs = _images(np.random.default_rng(9), (3, 64, 64, 3))
    feats = ext(imgs)
    assert feats["AlexNet(2)"].shape == (3, 192 * 31 * 31)
    assert feats["AlexNet(5)"].shape == (3, 256 * 15 * 15)
    x = torch.nn.functional.interpolate(
        torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255,
        size=(256, 256),
        mode="bilinear",
        antialias=True,
    )
    mean = torch.tensor(ev.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(ev.IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = source.eval()((x - mean) / std)
    np.testing.assert_allclose(feats["AlexNet(5)"], ref["features.11"].flatten(1), rtol=1e-5)


def test_efficientnet_and_swav_load_torch_files(tmp_path, no_weights):
    torch.manual_seed(1)
    eff = _randomise_norms(ev.EfficientNetB1Features(), 1)
    torch.save(eff.state_dict(), tmp_path / "effnet.pth")
    ext = ev.get_extractor("efficientnet", weights=tmp_path / "effnet.pth", input_size=96)
    assert ext.outputs == {"EffNet-B1": "distance"}
    imgs = _images(np.random.default_rng(10), (2, 48, 48, 3))
    got = ext(imgs)["EffNet-B1"]
    assert got.shape == (2, 1280)
    x = torch.from_numpy(ev.resize_images(imgs, 96)).permute(0, 3, 1, 2)
    x = (x - torch.tensor(ev.IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(ev.IMAGENET_STD).view(
        1, 3, 1, 1
    )
    with torch.no_grad():
        np.testing.assert_allclose(got, eff(x)["avgpool"].flatten(1), rtol=1e-4, atol=1e-6)

    # SwAV's released checkpoint: DataParallel "module." names, projection head, no fc.
    res = ev.ResNet50Features()
    state = {f"module.{k}": v for k, v in res.state_dict().items() if not k.startswith("fc.")}
    state["module.projection_head.0.weight"] = torch.zeros(2048, 2048)
    torch.save(state, no_weights / "swav_800ep_pretrain.pth.tar")
    assert ev.get_extractor("swav", input_size=64)(imgs)["SwAV"].shape == (2, 2048)

    # The wrong network's weights, wrong shapes, or an unreadable file are data errors.
    with pytest.raises(DataError, match="not weights for this network"):
        ev.get_extractor("alexnet", weights=tmp_path / "effnet.pth")
    bad = dict(eff.state_dict())
    bad["features.8.0.weight"] = torch.zeros(10, 320, 1, 1)
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(DataError, match=r"features.8.0.weight has shape \(10, 320, 1, 1\)"):
        ev.get_extractor("efficientnet", weights=tmp_path / "bad.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="junk.pth: cannot read weights"):
        ev.get_extractor("efficientnet", weights=tmp_path / "junk.pth")


def test_networks_equal_torchvision_when_it_is_importable():
    models = pytest.importorskip("torchvision.models")
    from torchvision import transforms
    from torchvision.models.feature_extraction import create_feature_extractor

    # Resizing: torchvision's bilinear Resize on float tensors (antialiased since 0.17).
    imgs = _images(np.random.default_rng(13), (2, 50, 50, 3))
    resize = transforms.Resize(21, interpolation=transforms.InterpolationMode.BILINEAR)
    ref = resize(torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255).permute(0, 2, 3, 1)
    np.testing.assert_allclose(ev.resize_images(imgs, 21), ref.numpy(), atol=1e-6)

    cases = [
        (models.alexnet(), ev.AlexNetFeatures(), ["features.4", "features.11"], 256),
        (
            models.inception_v3(
                weights=None, aux_logits=True, init_weights=False, transform_input=True
            ),
            ev.InceptionV3Features(),
            ["avgpool"],
            342,
        ),
        (models.efficientnet_b1(), ev.EfficientNetB1Features(), ["avgpool"], 255),
        (models.resnet50(), ev.ResNet50Features(), ["avgpool"], 255),
    ]
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for k, (theirs, ours, nodes, size) in enumerate(cases):
        theirs = _randomise_norms(theirs, k)
        ev.load_network_weights(ours, theirs.state_dict(), source="torchvision")
        xs = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
        with torch.no_grad():
            ref = create_feature_extractor(theirs, return_nodes=nodes)(xs)
            got = ours(xs)
        for node in nodes:
            torch.testing.assert_close(got[node], ref[node], rtol=1e-4, atol=1e-5)


def test_clip_extractor_with_a_random_weight_model(tmp_path, no_weights):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
        projection_dim=16,
    )
    torch.manual_seed(2)
    model = CLIPVisionModelWithProjection(config).eval()
    model.save_pretrained(tmp_path / "tiny-clip")
    imgs = _images(np.random.default_rng(11), (3, 48, 48, 3))
    x = torch.from_numpy(ev.resize_images(imgs, 32)).permute(0, 3, 1, 2)
    x = (x - torch.tensor(ev.CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(ev.CLIP_STD).view(
        1, 3, 1, 1
    )
    with torch.no_grad():
        ref = model(pixel_values=x).image_embeds.numpy()
    from_folder = ev.get_extractor("clip", model=str(tmp_path / "tiny-clip"), batch_size=2)
    assert from_folder.source == str(tmp_path / "tiny-clip")
    np.testing.assert_allclose(from_folder(imgs)["CLIP"], ref, rtol=1e-4, atol=1e-6)
    in_memory = ev.get_extractor("clip", model=model)
    np.testing.assert_allclose(in_memory(imgs)["CLIP"], ref, rtol=1e-4, atol=1e-6)
    # A folder named like the hub id's last part inside $BRAINRECON_WEIGHTS_DIR is found too.
    model.save_pretrained(no_weights / "tiny-clip")
    assert ev.get_extractor("clip", model="someone/tiny-clip").source == str(
        no_weights / "tiny-clip"
    )


# --------------------------------------------------------------------------------------------
# the metrics table
# --------------------------------------------------------------------------------------------


def _distance_extractor():
    def fn(images):
        return {"Mean colour": ev.resize_images(images, 8).reshape(len(images), -1)}

    return ev.FeatureExtractor("meancolour", {"Mean colour": "distance"}, fn)


def test_evaluate_table_has_chance_mismatched_and_baselines_for_every_metric():
    n = 10
    orig = _scenes(n, 48)
    # Good reconstructions: the scene at another resolution, blurred and noisy, 2 samples each.
    rng = np.random.default_rng(12)
    big = _scenes(n, 64).astype(np.float64) / 255
    rec = np.clip(big[:, None] + 0.1 * rng.standard_normal((n, 2, 64, 64, 3)), 0, 1)
    mean_image = orig.mean(axis=0) / 255  # a constant "mean training image"
    shuffled = rec[np.roll(np.arange(n), 3)]
    table, per = ev.evaluate(
        orig,
        rec,
        extractors=(ev.get_extractor("pixels", size=16), "lowlevel", _distance_extractor()),
        size=32,
        baselines={"mean training image": mean_image, "shuffled latents": shuffled},
        per_image=True,
    )
    expected_rows = ["PixCorr", "SSIM"] + [
        f"{f} 2-way ({r})"
        for f in ("Pixels", "LowLevel(energy)", "LowLevel(colour)")
        for r in ("takagi", "mindeye")
    ]
    assert list(table.index) == expected_rows + ["Mean colour distance"]
    base_cols = ["baseline: mean training image", "baseline: shuffled latents"]
    assert list(table.columns) == [
        "features",
        "score",
        "rule",
        "better",
        "value",
        "chance",
        "mismatched",
        *base_cols,
        "null_p95",
        "p_value",
        "ci_low",
        "ci_high",
    ]
    assert table[["value", "mismatched", *base_cols]].notna().all().all()
    two_way = table["score"] == "two-way"
    assert (table.loc[two_way, "chance"] == 0.5).all()
    assert table.loc[~two_way, "chance"].isna().all()
    assert table.loc["Mean colour distance", "better"] == "lower"
    assert (table.loc[table.index != "Mean colour distance", "better"] == "higher").all()

    # Numbers against the functions and against what the baselines must give.
    np.testing.assert_allclose(table.loc["PixCorr", "value"], ev.pixcorr(orig, rec, size=32).mean())
    np.testing.assert_allclose(
        table.loc["SSIM", "baseline: shuffled latents"], ev.ssim(orig, shuffled, size=32).mean()
    )
    assert table.loc["Pixels 2-way (mindeye)", "value"] > 0.95
    assert table.loc["PixCorr", "value"] > table.loc["PixCorr", "mismatched"] + 0.2
    # A constant image identifies nothing: under Takagi's rule all its comparisons tie (counted
    # half), under MindEye's the ranks of its correlations average exactly to chance.
    assert table.loc["Pixels 2-way (takagi)", "baseline: mean training image"] == 0.5
    np.testing.assert_allclose(
        table.loc["Pixels 2-way (mindeye)", "baseline: mean training image"], 0.5, atol=1e-12
    )
    assert (
        table.loc["Mean colour distance", "value"] < table.loc["Mean colour distance", "mismatched"]
    )
    assert table.attrs["n_images"] == n and table.attrs["n_samples"] == 2
    assert table.attrs["extractor_sources"]["pixels"] == "none"
    assert table.attrs["extractor_implementations"]["pixels"] == "package"

    assert per.shape == (n, len(table))
    np.testing.assert_allclose(per["SSIM"], ev.ssim(orig, rec, size=32).mean(axis=1))


def test_evaluate_identical_reconstructions_score_perfectly():
    orig = _scenes(6, 32, seed=5)
    table = ev.evaluate(orig, orig, extractors=("pixels",), size=32)
    assert isinstance(table, pd.DataFrame)
    np.testing.assert_allclose(table.loc[["PixCorr", "SSIM"], "value"], 1.0, atol=1e-9)
    assert table.loc["Pixels 2-way (takagi)", "value"] == 1.0
    assert math.isclose(table.loc["Pixels 2-way (mindeye)", "value"], 1.0)


def test_evaluate_rejects_bad_inputs():
    orig = np.zeros((4, 16, 16, 3), np.uint8)
    orig[:, :8] = np.arange(4)[:, None, None, None] * 50 + 10
    with pytest.raises(DataError, match="at least 2"):
        ev.evaluate(orig[:1], orig[:1], extractors=(), size=16)
    with pytest.raises(DataError, match="baseline 'b': 3 image sets for 4 originals"):
        ev.evaluate(orig, orig, extractors=(), size=16, baselines={"b": orig[:3]})
    with pytest.raises(UsageError, match="non-empty name"):
        ev.evaluate(orig, orig, extractors=(), size=16, baselines={"": orig})
    with pytest.raises(UsageError, match="unknown feature extractor"):
        ev.evaluate(orig, orig, extractors=("nope",), size=16)


def test_pixcorr_null_is_the_permuted_labels_pixcorr():
    """PixCorr's null: permuting which reconstruction belongs to which original. Each draw of
    the matrix-based null equals PixCorr computed directly on the permuted reconstructions; the
    diagonal is the reported value; related images sit far above the null, unrelated ones not."""
    from nipype_brainrecon.evaluation.nulls import assignment_scorer, permutations
    from nipype_brainrecon.evaluation.pixelwise import pixcorr_matrix

    rng = np.random.default_rng(4)
    n = 12
    orig = _scenes(n, 32, seed=9)
    rec = np.clip(orig[:, None] / 255 + 0.3 * rng.standard_normal((n, 3, 32, 32, 3)), 0, 1)
    rec[2, 1] = 0.5  # a constant sample scores 0, in the matrix as in PixCorr
    matrix = pixcorr_matrix(orig, rec, 24, batch_size=5)
    np.testing.assert_allclose(np.diag(matrix), ev.pixcorr(orig, rec, size=24).mean(axis=1))
    perms = permutations(n, 5, seed=1)
    for perm, draw in zip(perms, assignment_scorer(matrix)(perms), strict=True):
        # original i gets reconstruction perm[i]
        np.testing.assert_allclose(draw, ev.pixcorr(orig, rec[perm], size=24).mean(), rtol=1e-9)

    table = ev.evaluate(orig, rec, extractors=(), size=24)
    row = table.loc["PixCorr"]
    np.testing.assert_allclose(row["value"], np.diag(matrix).mean())
    assert row["p_value"] == 1 / 1001 and row["value"] > row["null_p95"]
    assert row["ci_low"] < row["value"] < row["ci_high"]
    assert table.loc["SSIM", ["null_p95", "p_value", "ci_low", "ci_high"]].isna().all()

    unrelated = np.clip(0.5 + 0.3 * rng.standard_normal((n, 3, 32, 32, 3)), 0, 1)
    row = ev.evaluate(orig, unrelated, extractors=(), size=24).loc["PixCorr"]
    assert row["p_value"] > 0.05 and row["value"] < row["null_p95"]
