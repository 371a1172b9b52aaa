"""Compare the evaluation's feature extractors with torchvision and the reference preprocessing.

Needs an environment where torchvision imports (the project's CPU torch wheel cannot load
torchvision's), e.g.::

    python3.11 -m venv /work/tvenv
    /work/tvenv/bin/pip install torch==2.13.0 torchvision==0.28.0 transformers safetensors ...
    PYTHONPATH=/work/main /work/tvenv/bin/python tools/compare_extractors.py \\
        --out benchmarks/results/extractor_comparison.json

No pretrained weights are fetched: by default each network gets seeded random weights from
``torchvision.models.<arch>(weights=None)``, with BatchNorm statistics and affine parameters
randomised, saved under torchvision's key names and loaded through the project's public path
(``get_extractor(name, weights=FILE)``). With ``--real-weights`` the files are found in
``$BRAINRECON_WEIGHTS_DIR`` as the evaluation finds them (CLIP stays a small random model).

For each network three implementations see the same images (simulator scenes at NSD's
425 px and natural photos shipped with scikit-image / scikit-learn, square crops and as-is):

* ``rewrite``: the project's plain-torch network (``implementation="rewrite"``);
* ``ours+torchvision``: the project's extractor running torchvision's network;
* ``reference``: MindEye's code path, ``transforms.Resize(size, BILINEAR)`` +
  ``Normalize`` on float tensors, then ``create_feature_extractor(torchvision model)``.

Reported: preprocessing differences, block-by-block activations of the rewrite against
torchvision on the same input, end-to-end feature differences, and two-way identification
(and correlation distance) of degraded copies computed from either feature set. CLIP's
preprocessing is compared with MindEye's transforms and with transformers'
``CLIPImageProcessor``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision import transforms
from torchvision.models.feature_extraction import create_feature_extractor

from nipype_brainrecon import evaluation as ev
from nipype_brainrecon.evaluation import networks
from nipype_brainrecon.evaluation.images import to_tensor
from nipype_brainrecon.evaluation.metrics import correlation_distance, two_way_identification
from nipype_brainrecon.synthetic.stimuli import generate_scenes, render_scene

#: name → (torchvision constructor, rewrite class, preprocessing size, nodes, trunk blocks)
NETWORKS = {
    "alexnet": (
        lambda: torchvision.models.alexnet(weights=None),
        ev.AlexNetFeatures,
        256,
        {"AlexNet(2)": "features.4", "AlexNet(5)": "features.11"},
        [f"features.{i}" for i in range(12)],
    ),
    "inception": (
        lambda: torchvision.models.inception_v3(
            weights=None, aux_logits=True, init_weights=False, transform_input=True
        ),
        ev.InceptionV3Features,
        342,
        {"InceptionV3": "avgpool"},
        ["Conv2d_1a_3x3", "Conv2d_2b_3x3", "Conv2d_4a_3x3", "Mixed_5b", "Mixed_5d"]
        + ["Mixed_6a", "Mixed_6b", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "avgpool"],
    ),
    "efficientnet": (
        lambda: torchvision.models.efficientnet_b1(weights=None),
        ev.EfficientNetB1Features,
        255,
        {"EffNet-B1": "avgpool"},
        [f"features.{i}" for i in range(9)] + ["avgpool"],
    ),
    "swav": (
        lambda: torchvision.models.resnet50(weights=None),
        ev.ResNet50Features,
        224,
        {"SwAV": "avgpool"},
        ["maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool"],
    ),
}
FILE_NAMES = {
    "alexnet": "alexnet-random.pth",
    "inception": "inception_v3-random.pth",
    "efficientnet": "efficientnet_b1-random.pth",
    "swav": "swav_800ep_pretrain.pth.tar",
}
#: What --real-weights looks for in $BRAINRECON_WEIGHTS_DIR (then torch's hub cache).
REAL_PATTERNS = {
    "alexnet": "alexnet*",
    "inception": "inception_v3*",
    "efficientnet": "efficientnet_b1*",
    "swav": "swav*",
}
PHOTOS = [
    ("skimage", "data/astronaut.png"),
    ("skimage", "data/chelsea.png"),
    ("skimage", "data/coffee.png"),
    ("skimage", "data/rocket.jpg"),
    ("skimage", "data/motorcycle_left.png"),
    ("skimage", "data/hubble_deep_field.jpg"),
    ("sklearn", "datasets/images/china.jpg"),
    ("sklearn", "datasets/images/flower.jpg"),
]


def _diff(a, b) -> dict[str, float]:
    """Max abs difference and max abs difference over the reference's largest magnitude."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return {"shape_ours": list(a.shape), "shape_ref": list(b.shape)}
    d = float(np.max(np.abs(a - b)))
    return {"max_abs": d, "max_rel": d / max(float(np.max(np.abs(b))), 1e-30)}


def load_photos() -> list[np.ndarray]:
    """Natural photos shipped inside installed packages (none downloaded), as uint8 RGB."""
    import importlib.util

    out = []
    for package, rel in PHOTOS:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        path = Path(list(spec.submodule_search_locations)[0]) / rel
        if path.is_file():
            with Image.open(path) as img:
                out.append(np.array(img.convert("RGB")))
    return out


def square_crop(photo: np.ndarray, size: int) -> np.ndarray:
    h, w = photo.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    img = Image.fromarray(photo[top : top + s, left : left + s])
    return np.asarray(img.resize((size, size), Image.Resampling.LANCZOS))


def make_images(n_scenes: int, seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    scenes = [np.asarray(render_scene(s, 425)) for s in generate_scenes(n_scenes, seed=seed)]
    photos = load_photos()
    square = np.stack(scenes + [square_crop(p, 425) for p in photos]).astype(np.uint8)
    return square, photos


def degrade(images: np.ndarray, seed: int) -> np.ndarray:
    """'Reconstructions': each image blended with another one and noise (identification < 1)."""
    rng = np.random.default_rng(seed)
    x = images.astype(np.float64) / 255
    other = x[np.roll(np.arange(len(x)), 1)]
    noisy = 0.55 * x + 0.45 * other + 0.15 * rng.standard_normal(x.shape)
    return np.clip(noisy, 0, 1).astype(np.float32)


def randomise(net: torch.nn.Module, seed: int, calibration: torch.Tensor) -> torch.nn.Module:
    """Random BatchNorm affine parameters, then running statistics measured on ``calibration``.

    With the defaults (mean 0, var 1) a random deep network loses its input: the activations
    shrink layer by layer until the BatchNorm biases alone decide the features and every image
    gets the same ones. Statistics measured on real inputs (BatchNorm alone in training mode,
    cumulative average) keep the features image-dependent, as in trained networks.
    """
    g = torch.Generator().manual_seed(seed)
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for m in norms:
            m.weight.copy_(0.75 + 0.5 * torch.rand(m.weight.shape, generator=g))
            m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
            m.reset_running_stats()
            m.momentum = None
        net.eval()
        for m in norms:
            m.train()
        if norms:
            net(calibration)
    for m in norms:
        m.momentum = 0.1
    return net.eval()


def write_weights(name: str, folder: Path, seed: int, calibration: np.ndarray) -> Path:
    torch.manual_seed(seed)
    x = reference_preprocess(calibration, NETWORKS[name][2], ev.IMAGENET_MEAN, ev.IMAGENET_STD)
    state = randomise(NETWORKS[name][0](), seed, x).state_dict()
    if name == "swav":  # as SwAV's release: DataParallel prefix, no fc, a projection head
        state = {f"module.{k}": v for k, v in state.items() if not k.startswith("fc.")}
        state["module.projection_head.0.weight"] = torch.zeros(8, 2048)
    path = folder / FILE_NAMES[name]
    torch.save(state, path)
    return path


def reference_model(name: str, path: Path) -> torch.nn.Module:
    """MindEye's construction: torchvision's model, the state dict, create_feature_extractor."""
    build, _, _, nodes, _ = NETWORKS[name]
    model = build()
    state = ev.load_state_dict_file(path)  # torch.load(weights_only) or safetensors; "module."
    model.load_state_dict(state, strict=name != "swav")  # swav hubconf: strict=False
    return create_feature_extractor(model.eval(), return_nodes=list(nodes.values())).eval()


def reference_preprocess(images: np.ndarray, size: int, mean, std) -> torch.Tensor:
    pre = transforms.Compose(
        [
            transforms.Resize(size, interpolation=transforms.InterpolationMode.BILINEAR),
            transforms.Normalize(mean=list(mean), std=list(std)),
        ]
    )
    return pre(torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255)


def our_preprocess(images: np.ndarray, size: int, mean, std) -> torch.Tensor:
    x = networks.resize_short_side(to_tensor(images), size)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def block_diffs(name: str, rewrite: torch.nn.Module, tv: torch.nn.Module, x: torch.Tensor):
    """Activations of the rewrite and of torchvision's network after each trunk block."""
    got: dict[str, dict[str, torch.Tensor]] = {"ours": {}, "tv": {}}
    hooks = []
    for key, net in (("ours", rewrite), ("tv", tv)):
        mods = dict(net.named_modules())
        for block in NETWORKS[name][4]:
            hooks.append(
                mods[block].register_forward_hook(
                    lambda _m, _i, out, key=key, block=block: got[key].__setitem__(
                        block, out.clone()
                    )
                )
            )
    with torch.inference_mode():
        rewrite(x)
        tv(x)
    for h in hooks:
        h.remove()
    return {b: _diff(got["ours"][b], got["tv"][b]) for b in NETWORKS[name][4]}


def scores(orig: np.ndarray, rec: np.ndarray) -> dict[str, float]:
    return {
        "identification": float(two_way_identification(orig, rec).mean()),
        "distance": float(np.mean(correlation_distance(orig, rec))),
    }


def _ref_features(ref: torch.nn.Module, images: np.ndarray, size: int) -> dict[str, np.ndarray]:
    x = reference_preprocess(images, size, ev.IMAGENET_MEAN, ev.IMAGENET_STD)
    with torch.inference_mode():
        return {k: v.flatten(1).numpy() for k, v in ref(x).items()}


def _worst(diffs) -> dict[str, float]:
    return max(diffs, key=lambda d: d.get("max_rel", np.inf))


def compare_network(name: str, path: Path, square, photos, recon8) -> dict:
    build, rewrite_cls, size, nodes, _ = NETWORKS[name]
    mean, std = ev.IMAGENET_MEAN, ev.IMAGENET_STD
    ours = ev.get_extractor(name, weights=path, implementation="rewrite")
    ours_tv = ev.get_extractor(name, weights=path, implementation="torchvision")
    ref = reference_model(name, path)
    res: dict = {"input_size": size, "nodes": nodes, "weights": str(path)}
    res["implementations"] = [ours.implementation, ours_tv.implementation]

    # (b) preprocessing: square images, and photos at their own aspect ratio
    def pre(images):
        return _diff(
            our_preprocess(images, size, mean, std), reference_preprocess(images, size, mean, std)
        )

    res["preprocessing"] = {
        "square": pre(square),
        "non_square_photos": _worst(pre(p[None]) for p in photos),
    }

    # (a) block by block: the rewrite against torchvision's network on the same input
    state = ev.load_state_dict_file(path)
    rewrite = ev.load_network_weights(
        rewrite_cls(), state, source=str(path), optional=["fc.", "classifier.", "AuxLogits."]
    )
    tv = build()
    tv.load_state_dict(state, strict=name != "swav")
    x = reference_preprocess(square[:8], size, mean, std)
    res["blocks"] = block_diffs(name, rewrite, tv.eval(), x)

    # (c) end to end: our extractor (uint8 in) against MindEye's transforms + torchvision model
    ref_orig, ref_rec = _ref_features(ref, square, size), _ref_features(ref, recon8, size)
    ref_photos = [_ref_features(ref, p[None], size) for p in photos]
    out: dict = {}
    for label, node in nodes.items():
        row: dict = {"reference": scores(ref_orig[node], ref_rec[node])}
        for impl, ext in (("rewrite", ours), ("ours+torchvision", ours_tv)):
            f_orig, f_rec = ext(square)[label], ext(recon8)[label]
            row[impl] = {
                "features": _diff(f_orig, ref_orig[node]),
                "features_reconstructions": _diff(f_rec, ref_rec[node]),
                "non_square_photos": _worst(
                    _diff(ext(p[None])[label], r[node])
                    for p, r in zip(photos, ref_photos, strict=True)
                ),
                **scores(f_orig, f_rec),
            }
        out[label] = row
    res["end_to_end"] = out
    return res


def compare_clip(square: np.ndarray, recon8: np.ndarray, seed: int) -> dict:
    """CLIP: the model is transformers' on both sides; only the preprocessing can differ."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=224,
        patch_size=14,
        projection_dim=32,
    )
    torch.manual_seed(seed)
    model = CLIPVisionModelWithProjection(config).eval()
    ours = ev.get_extractor("clip", model=model)
    # ViT-L/14's preprocessor_config: shortest edge 224 bicubic, centre crop 224, CLIP norm.
    proc = CLIPImageProcessor(
        size={"shortest_edge": 224},
        crop_size={"height": 224, "width": 224},
        resample=Image.Resampling.BICUBIC,
        image_mean=list(ev.CLIP_MEAN),
        image_std=list(ev.CLIP_STD),
    )

    def embed(x: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return model(pixel_values=x).image_embeds.numpy()

    def mindeye(images):
        return reference_preprocess(images, 224, ev.CLIP_MEAN, ev.CLIP_STD)

    def processor(images):
        return proc(images=list(images), return_tensors="pt")["pixel_values"]

    ours_pre = our_preprocess(square, 224, ev.CLIP_MEAN, ev.CLIP_STD)
    f_orig, f_rec = ours(square)["CLIP"], ours(recon8)["CLIP"]
    res: dict = {"config": config.to_dict()["model_type"], "implementation": ours.implementation}
    for ref_name, fn in (("mindeye_transforms", mindeye), ("CLIPImageProcessor", processor)):
        r_orig, r_rec = embed(fn(square)), embed(fn(recon8))
        res[ref_name] = {
            "preprocessing": _diff(ours_pre, fn(square)),
            "features": _diff(f_orig, r_orig),
            "reference": scores(r_orig, r_rec),
        }
    res["ours"] = scores(f_orig, f_rec)
    return res


def environment(args: argparse.Namespace, n_images: int, n_photos: int) -> dict:
    import transformers

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
        "cpu": cpu,
        "torch_threads": torch.get_num_threads(),
        "seed": args.seed,
        "images": f"{args.scenes} simulator scenes (generate_scenes seed {args.seed}, 425 px) "
        f"+ {n_photos} photos from scikit-image/scikit-learn (centre-cropped to 425 px); "
        f"{n_images} in all; non-square photos also as-is",
        "reconstructions": "0.55 image + 0.45 neighbour image + N(0, 0.15) noise, uint8",
        "weights": "real, $BRAINRECON_WEIGHTS_DIR"
        if args.real_weights
        else "seeded random (torchvision weights=None; BatchNorm affine random, running "
        "statistics measured on 16 other scenes), torchvision keys",
    }


def _fmt(x: float) -> str:
    return f"{x:.2e}"


def markdown(result: dict) -> str:
    env = result["environment"]
    lines = [
        "# Feature extractors against torchvision",
        "",
        f"torch {env['torch']}, torchvision {env['torchvision']}, transformers "
        f"{env['transformers']}, Python {env['python']}, {env['cpu']}, {env['torch_threads']} "
        f"threads, seed {env['seed']}. Images: {env['images']}. Weights: {env['weights']}.",
        "",
        "| extractor | layer | max abs diff | max rel diff | identification ours / torchvision "
        "| non-square photos max rel | ours on torchvision's network max rel |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, res in result["networks"].items():
        for label, row in res["end_to_end"].items():
            ours, ref = row["rewrite"], row["reference"]
            lines.append(
                f"| {name} (rewrite) | {label} | {_fmt(ours['features']['max_abs'])} | "
                f"{_fmt(ours['features']['max_rel'])} | {ours['identification']:.4f} / "
                f"{ref['identification']:.4f} | "
                f"{_fmt(ours['non_square_photos'].get('max_rel', float('nan')))} | "
                f"{_fmt(row['ours+torchvision']['features']['max_rel'])} |"
            )
    clip = result["clip"]
    for ref_name in ("mindeye_transforms", "CLIPImageProcessor"):
        r = clip[ref_name]
        lines.append(
            f"| clip vs {ref_name} | CLIP | {_fmt(r['features']['max_abs'])} | "
            f"{_fmt(r['features']['max_rel'])} | {clip['ours']['identification']:.4f} / "
            f"{r['reference']['identification']:.4f} | - | - |"
        )
    lines += ["", "Block by block (rewrite vs torchvision, same input), max rel diff:", ""]
    for name, res in result["networks"].items():
        worst = max(res["blocks"].items(), key=lambda kv: kv[1]["max_rel"])
        lines.append(f"- {name}: worst block {worst[0]} {_fmt(worst[1]['max_rel'])}")
    lines += ["", "Preprocessing (ours vs transforms.Resize+Normalize), max abs diff:", ""]
    for name, res in result["networks"].items():
        p = res["preprocessing"]
        lines.append(
            f"- {name}: square {_fmt(p['square']['max_abs'])}, non-square photos "
            f"{_fmt(p['non_square_photos'].get('max_abs', float('nan')))}"
        )
    for ref_name in ("mindeye_transforms", "CLIPImageProcessor"):
        p = clip[ref_name]["preprocessing"]
        lines.append(f"- clip vs {ref_name}: square {_fmt(p['max_abs'])}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file (a .md goes beside)")
    parser.add_argument("--scenes", type=int, default=32, help="simulator scenes (default 32)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--real-weights",
        action="store_true",
        help="use the files in $BRAINRECON_WEIGHTS_DIR instead of seeded random weights",
    )
    parser.add_argument("--networks", nargs="*", default=list(NETWORKS), choices=list(NETWORKS))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if networks.torchvision_models() is None:
        parser.error("torchvision does not import here; run this in an environment where it does")
    square, photos = make_images(args.scenes, args.seed)
    recon8 = np.round(degrade(square, args.seed + 1) * 255).astype(np.uint8)
    calibration, _ = make_images(16, args.seed + 100)  # 16 other scenes
    calibration = calibration[:16]
    result: dict = {"environment": environment(args, len(square), len(photos)), "networks": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for k, name in enumerate(args.networks):
            t0 = time.perf_counter()
            path = (
                ev.find_weights(name, [REAL_PATTERNS[name]])
                if args.real_weights
                else write_weights(name, Path(tmp), args.seed + 10 * k, calibration)
            )
            result["networks"][name] = compare_network(name, path, square, photos, recon8)
            print(f"{name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    result["clip"] = compare_clip(square, recon8, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    md = markdown(result)
    args.out.with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    raise SystemExit(main())
