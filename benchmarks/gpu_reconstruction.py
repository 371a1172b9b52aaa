"""GPU benchmark: reconstruction images/s at batch 1 vs batched, SD v1 shapes, fp16.

A Stable-Diffusion-v1-shaped model is built from its configuration with random weights (no
download): the SD v1 U-Net (block channels 320/640/1280/1280, 2 layers per block, 8 heads,
cross-attention on 77 x 768 text states, 64 x 64 latents = 512 px) and the SD v1 VAE (128/256/
512/512, scaling 0.18215), with SD v1's DDIM scheduler. Random weights cost the same time as
trained ones. Each run is :func:`nipype_brainrecon.diffusion.reconstruct` with the paper's
recipe (z+c, 50 DDIM steps x strength 0.8 = 40 U-Net steps, guidance 5 = two branches, z at
320 px: 4 x 40 x 40) on random z and c, timed after a warm-up at each batch size.

    python -m benchmarks.gpu_reconstruction [--batch-sizes 1,4,8,16] [--out FILE]
    python -m benchmarks.gpu_reconstruction --dry-run          # plan + parameter counts only
    python -m benchmarks.gpu_reconstruction --device cpu --tiny  # a small model, 2 steps

Needs a CUDA GPU (exits with a message otherwise, unless ``--device cpu``). Takes about a
minute on an H100 (model build ~10 s, warm-ups, ~70 images). Writes FILE (default
``benchmarks/results/gpu_reconstruction.json``; ``..._tiny.json`` with ``--tiny``) and a
Markdown table next to it.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import types
import warnings
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"

#: SD v1's U-Net and VAE configurations (diffusers names), for random-weight models.
SD_V1_UNET = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "attention_head_dim": 8,
    "cross_attention_dim": 768,
    "norm_num_groups": 32,
}
SD_V1_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}
#: A small model with the same interfaces (77 x 768, 4 channels, factor 8), 64 px native.
TINY_UNET = {
    **SD_V1_UNET,
    "sample_size": 8,
    "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
    "block_out_channels": (32, 64),
    "layers_per_block": 1,
}
TINY_VAE = {
    **SD_V1_VAE,
    "block_out_channels": (16, 16, 32, 32),
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "sample_size": 64,
}
TEXT_SHAPE = (77, 768)
Z_SHAPE = (4, 40, 40)  # the paper's z: 320 px


def build_pipe(tiny: bool, device: str, dtype: Any, meta: bool = False) -> Any:
    """U-Net, VAE and DDIM scheduler with random weights (on ``meta``: shapes only)."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    from nipype_brainrecon.diffusion.models import SD_V1_SCHEDULER

    torch.manual_seed(0)
    where = torch.device("meta" if meta else device)
    with where:  # allocate the weights where they are used (no CPU copy of 860 M parameters)
        unet = UNet2DConditionModel(**(TINY_UNET if tiny else SD_V1_UNET))
        vae = AutoencoderKL(**(TINY_VAE if tiny else SD_V1_VAE))
    if not meta:
        from diffusers.utils import logging as diffusers_logging

        level = diffusers_logging.get_verbosity()
        diffusers_logging.set_verbosity_error()  # no note on casting freshly built modules
        try:
            unet = unet.to(dtype=dtype).eval()
            vae = vae.to(dtype=dtype).eval()
        finally:
            diffusers_logging.set_verbosity(level)
    return types.SimpleNamespace(unet=unet, vae=vae, scheduler=DDIMScheduler(**SD_V1_SCHEDULER))


def n_params(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


def run(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import torch

    from nipype_brainrecon.diffusion import native_size, reconstruct

    dtype = getattr(torch, args.dtype)
    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = build_pipe(args.tiny, args.device, dtype)
    rng = np.random.default_rng(0)
    uncond = rng.standard_normal(TEXT_SHAPE).astype(np.float32)
    settings = {
        "mode": "z+c",
        "num_inference_steps": args.steps,
        "strength": args.strength,
        "guidance_scale": 5.0,
        "n_samples": 1,
        "progress": False,
        "uncond_embedding": uncond,
    }

    def sync() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    rows = []
    for batch in args.batch_sizes:
        n_images = max(args.min_images, args.batches * batch)
        z = rng.standard_normal((n_images, *Z_SHAPE)).astype(np.float32)
        c = rng.standard_normal((n_images, *TEXT_SHAPE)).astype(np.float32)
        ids = [f"img{i:04d}" for i in range(n_images)]
        # Warm-up: one full batch (kernel selection, allocator) at a few steps.
        warm = {**settings, "num_inference_steps": min(args.steps, 5), "strength": 1.0}
        reconstruct(pipe, z[:batch], c[:batch], stim_ids=ids[:batch], batch_size=batch, **warm)
        sync()
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # random fp16 weights may overflow
            images = reconstruct(pipe, z, c, stim_ids=ids, batch_size=batch, **settings)
        sync()
        seconds = time.perf_counter() - start
        rows.append(
            {
                "batch_size": batch,
                "images": n_images,
                "seconds": round(seconds, 3),
                "images_per_s": round(n_images / seconds, 4),
                "output_shape": list(images.shape[2:]),
            }
        )
        print(
            f"batch {batch:3d}: {n_images} images in {seconds:.2f} s = {n_images / seconds:.3f}/s"
        )
    base = rows[0]["images_per_s"]
    for row in rows:
        row["speedup_vs_batch_1"] = round(row["images_per_s"] / base, 3)
    best = max(rows, key=lambda r: r["images_per_s"])
    import diffusers

    return {
        "benchmark": "reconstruction on GPU, batch 1 vs batched",
        "device": torch.cuda.get_device_name(0)
        if args.device.startswith("cuda")
        else f"cpu ({platform.processor() or platform.machine()})",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
        "dtype": args.dtype,
        "model": "tiny random-weight (64 px, 77x768 text)"
        if args.tiny
        else "SD v1 configuration, random weights (U-Net 320/640/1280/1280, 77x768, 512 px)",
        "unet_parameters": n_params(pipe.unet),
        "vae_parameters": n_params(pipe.vae),
        "native_size": list(native_size(pipe)),
        "recipe": {k: v for k, v in settings.items() if k not in ("progress", "uncond_embedding")}
        | {"denoising_steps": int(args.steps * args.strength + 1e-6), "z_shape": list(Z_SHAPE)},
        "results": rows,
        "best_batch_size": best["batch_size"],
        "ratio_best_vs_batch_1": best["speedup_vs_batch_1"],
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# {result['benchmark']}",
        "",
        f"Device: {result['device']}; torch {result['torch']} (CUDA {result['cuda']}), diffusers "
        f"{result['diffusers']}, {result['dtype']}.",
        f"Model: {result['model']}; U-Net {result['unet_parameters'] / 1e6:.0f} M parameters, "
        f"native {result['native_size'][0]} px.",
        f"Recipe: {result['recipe']}.",
        "",
        "| batch size | images | seconds | images/s | vs batch 1 |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in result["results"]:
        lines.append(
            f"| {row['batch_size']} | {row['images']} | {row['seconds']:.2f} | "
            f"{row['images_per_s']:.3f} | {row['speedup_vs_batch_1']:.2f}x |"
        )
    lines += [
        "",
        f"Best: batch {result['best_batch_size']}, {result['ratio_best_vs_batch_1']:.2f}x batch 1.",
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_reconstruction",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--dtype", default=None, help="float16 on CUDA (default), float32 on CPU")
    parser.add_argument("--tiny", action="store_true", help="a small model (checks the script)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan; run nothing")
    parser.add_argument("--batch-sizes", default=None, help="comma-separated (default 1,4,8,16)")
    parser.add_argument("--batches", type=int, default=2, help="batches timed per batch size")
    parser.add_argument("--min-images", type=int, default=4, help="images timed at least")
    parser.add_argument("--steps", type=int, default=50, help="DDIM schedule length (50)")
    parser.add_argument("--strength", type=float, default=0.8, help="img2img strength (0.8)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch default)")
    parser.add_argument("--out", type=Path, default=None, help="JSON result file")
    args = parser.parse_args(argv)
    if args.dtype is None:
        args.dtype = "float16" if args.device.startswith("cuda") else "float32"
    if args.batch_sizes is None:
        args.batch_sizes = "1,2" if args.tiny else "1,4,8,16"
    try:
        args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    except ValueError:
        parser.error(f"--batch-sizes {args.batch_sizes!r}: give integers, e.g. 1,4,8")
    if not args.batch_sizes or min(args.batch_sizes) < 1 or args.batch_sizes[0] != 1:
        parser.error("--batch-sizes: start with 1 (the reference), all at least 1")
    if args.out is None:
        args.out = RESULTS / (
            "gpu_reconstruction_tiny.json" if args.tiny else "gpu_reconstruction.json"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import torch
    except ImportError:
        print(
            "gpu_reconstruction: torch is not installed; install the package first", file=sys.stderr
        )
        return 1
    if args.dry_run:
        pipe = build_pipe(args.tiny, "cpu", None, meta=True)
        plan = [
            (b, max(args.min_images, args.batches * b)) for b in args.batch_sizes
        ]  # (batch, images)
        print(f"model: {'tiny' if args.tiny else 'SD v1 configuration'}, random weights")
        print(
            f"U-Net parameters: {n_params(pipe.unet) / 1e6:.1f} M, VAE: {n_params(pipe.vae) / 1e6:.1f} M"
        )
        print(f"device {args.device} ({args.dtype}); CUDA available: {torch.cuda.is_available()}")
        print(f"steps {args.steps} x strength {args.strength}; (batch, images): {plan}")
        print(f"would write {args.out} and {args.out.with_suffix('.md')}")
        return 0
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            "gpu_reconstruction: no CUDA GPU found (torch.cuda.is_available() is False, torch "
            f"{torch.__version__}); run on a machine with an NVIDIA GPU and a CUDA build of torch, "
            "or check the script with --device cpu --tiny",
            file=sys.stderr,
        )
        return 1
    result = run(args)
    from nipype_brainrecon.io import atomic_write_text

    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    atomic_write_text(args.out.with_suffix(".md"), markdown(result))
    print(markdown(result))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
