"""GPU benchmark: our img2img reconstruction vs diffusers' own pipeline, SD v1 shapes, fp16.

A Stable-Diffusion-v1-shaped model is built from its configuration with random weights (no
download): the SD v1 U-Net (block channels 320/640/1280/1280, 2 layers per block, 8 heads,
cross-attention on 77 x 768 text states, 64 x 64 latents = 512 px) and the SD v1 VAE (128/256/
512/512, scaling 0.18215), with SD v1's DDIM scheduler. Random weights cost the same time as
trained ones. At each batch size (default 1, 4, 8, 16, 32), in one process:

* **ours**: :func:`nipype_brainrecon.diffusion.reconstruct` with the paper's recipe (z+c, 50
  DDIM steps x strength 0.8 = 40 U-Net steps, guidance 5 = two branches, z at 320 px:
  4 x 40 x 40) on random z and c;
* **diffusers**: ``StableDiffusionImg2ImgPipeline`` built from the *same* U-Net, VAE and DDIM
  scheduler config, fed the same init images (our step 1, z decoded by the VAE and resized to
  512 px, as pixels: diffusers then runs its own preprocessing and VAE encode), ``prompt_embeds``
  = c, ``negative_prompt_embeds`` = the unconditional embedding, the same strength, steps,
  guidance, eta 0, dtype, and one CPU generator per image (its time includes our step 1, which
  it has no equivalent of, as ours does);

each timed after a warm-up, with peak GPU memory (CUDA: ``torch.cuda.max_memory_allocated``)
or peak RSS (CPU: ``VmHWM``, reset before each run through ``/proc/self/clear_refs``). On CUDA
both run in float16 with SDPA attention (``AttnProcessor2_0``) and channels-last U-Net and VAE
weights: diffusers' best documented settings, applied to the shared modules.

**Output difference.** diffusers draws the VAE posterior sample and the img2img noise from the
same generator, one after the other, while we draw them from two seeds; so with pixels as input
the noise cannot match. The difference is therefore measured on a second diffusers call given
exactly our inputs: our init latents as ``image`` (diffusers documents that 4-channel latents
are used as they are, not encoded again) and generators seeded with our noise seeds, so both
sides add identical noise to identical latents. The maximum absolute difference of the uint8
pixels is reported per batch size (0 on CPU in float32: same operations in the same order). On
CUDA in float16 the noise values still match (diffusers draws them on the CPU in float16, the
same numbers as our float32 draw rounded), but diffusers adds the noise to the init latents and
denormalises the decoded image in float16 on the GPU where we do both in float32, so pixels
may differ by a level or more; that difference is reported, not enforced.

**Batch sizes.** Each image is also compared between batch sizes (same seeds): every network
call of ours is padded to ``batch_size`` rows, so a given image is bit-identical whatever
batch it shares at one batch size (checked by regenerating one image alone); between batch
sizes the kernels block the batch differently and float32 results can differ in their last
bits, which may move a pixel by one level (reported: maximum difference and how many values).

    python -m benchmarks.gpu_reconstruction [--batch-sizes 1,4,8,16,32] [--out FILE]
    python -m benchmarks.gpu_reconstruction --dry-run           # plan + parameter counts only
    python -m benchmarks.gpu_reconstruction --device cpu --tiny  # a small model on CPU
    python -m benchmarks.gpu_reconstruction --no-diffusers      # ours only (the old benchmark)

Needs a CUDA GPU (exits with one line otherwise, unless ``--device cpu``). With diffusers
beside ours it takes about three minutes on an H100. Writes FILE (default
``benchmarks/results/gpu_reconstruction.json``; ``..._tiny.json`` with ``--tiny``) and a Markdown
table next to it. ``--check`` exits 3 when a check fails (on CPU in float32: ours vs diffusers
within ``--tolerance`` levels, one image regenerated alone bit-identical, images between batch
sizes within one level).
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


def use_gpu_settings(pipe: Any, channels_last: bool = True) -> None:
    """SDPA attention and channels-last weights on the shared U-Net and VAE (diffusers' advice)."""
    import torch
    from diffusers.models.attention_processor import AttnProcessor2_0

    for module in (pipe.unet, pipe.vae):
        module.set_attn_processor(AttnProcessor2_0())
        if channels_last:
            module.to(memory_format=torch.channels_last)


def diffusers_pipe(pipe: Any) -> Any:
    """diffusers' ``StableDiffusionImg2ImgPipeline`` on the same U-Net, VAE and scheduler config."""
    from diffusers import DDIMScheduler, StableDiffusionImg2ImgPipeline

    img2img = StableDiffusionImg2ImgPipeline(
        vae=pipe.vae,
        text_encoder=None,  # the embeddings are given (prompt_embeds / negative_prompt_embeds)
        tokenizer=None,
        unet=pipe.unet,
        scheduler=DDIMScheduler.from_config(pipe.scheduler.config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    img2img.set_progress_bar_config(disable=True)
    return img2img


class PeakMemory:
    """Peak memory of one run: torch's allocator on CUDA, the process's ``VmHWM`` on CPU."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        self.key = "peak_gpu_gib" if self.cuda else "peak_rss_gib"

    def reset(self) -> None:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return
        try:  # "5" resets the peak RSS (VmHWM) to the current RSS (Linux >= 4.0)
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
        except OSError:
            pass

    def gib(self) -> float:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            return round(torch.cuda.max_memory_allocated() / 2**30, 3)
        return round(proc_status_kib("VmHWM") / 2**20, 3)


def proc_status_kib(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (0 where there is none)."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def to_uint8_np(images: Any) -> Any:
    """diffusers' ``output_type="np"`` images in [0, 1] -> uint8, rounded as diffusers' PIL path."""
    import numpy as np

    return (np.clip(images, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def pixel_diff(a: Any, b: Any) -> tuple[int, int]:
    """Maximum absolute difference of two uint8 arrays and how many values differ."""
    import numpy as np

    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return int(d.max()) if d.size else 0, int(np.count_nonzero(d))


def generators(ids: list[str], seed: int) -> list[Any]:
    """One CPU generator per image, seeded with our img2img noise seed of its sample 0."""
    import torch

    from nipype_brainrecon.diffusion.sampling import derive_seed

    return [torch.Generator("cpu").manual_seed(derive_seed(seed, i, "noise", 0)) for i in ids]


def run_diffusers(
    img2img: Any, pipe: Any, z: Any, c: Any, ids: list[str], batch: int, ctx: dict[str, Any]
) -> Any:
    """diffusers from the init images: our step 1 (z -> VAE -> native size), then its pipeline."""
    import numpy as np
    import torch

    from nipype_brainrecon.diffusion import decode_latents, native_size

    side = native_size(pipe)[0]
    out = []
    for start in range(0, len(ids), batch):
        rows = slice(start, start + batch)
        pixels = decode_latents(pipe, z[rows], batch_size=batch, output_size=side)
        image = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255.0
        n = len(pixels)
        result = img2img(
            image=image,
            prompt_embeds=torch.from_numpy(c[rows]).to(ctx["device"]),
            negative_prompt_embeds=ctx["uncond_t"].expand(n, *ctx["uncond_t"].shape),
            generator=generators(ids[rows], ctx["seed"]),
            output_type="np",
            **ctx["call"],
        )
        out.append(to_uint8_np(result.images))
    return np.concatenate(out)


def diffusers_same_inputs(
    img2img: Any, pipe: Any, z: Any, c: Any, ids: list[str], ctx: dict[str, Any]
) -> Any:
    """diffusers given exactly our init latents (as ``image``) and our noise (generators)."""
    import torch

    from nipype_brainrecon.diffusion.latents import init_latents
    from nipype_brainrecon.diffusion.shapes import PipelineShapes

    # Our reconstruct encodes with max(1, batch_size // n_samples) = len(ids) images per call.
    init = init_latents(pipe, z, ids, PipelineShapes(pipe), seed=ctx["seed"], batch_size=len(ids))
    result = img2img(
        image=init,
        prompt_embeds=torch.from_numpy(c).to(ctx["device"]),
        negative_prompt_embeds=ctx["uncond_t"].expand(len(ids), *ctx["uncond_t"].shape),
        generator=generators(ids, ctx["seed"]),
        output_type="np",
        **ctx["call"],
    )
    return to_uint8_np(result.images)


def timed(
    sync: Any, peak: PeakMemory, fn: Any, *args: Any, **kwargs: Any
) -> tuple[Any, float, float]:
    """``fn(*args, **kwargs)``'s result, seconds and peak memory (GiB)."""
    sync()
    peak.reset()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # random fp16 weights may overflow
        value = fn(*args, **kwargs)
    sync()
    return value, time.perf_counter() - start, peak.gib()


def run(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import torch

    from nipype_brainrecon.diffusion import reconstruct

    dtype = getattr(torch, args.dtype)
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    pipe = build_pipe(args.tiny, args.device, dtype)
    if cuda:
        use_gpu_settings(pipe, channels_last=args.channels_last)
    img2img = diffusers_pipe(pipe) if args.diffusers else None
    rng = np.random.default_rng(0)
    uncond = rng.standard_normal(TEXT_SHAPE).astype(np.float32)
    settings = {
        "mode": "z+c",
        "num_inference_steps": args.steps,
        "strength": args.strength,
        "guidance_scale": 5.0,
        "n_samples": 1,
        "seed": 42,
        "progress": False,
        "uncond_embedding": uncond,
    }
    ctx = {
        "device": args.device,
        "seed": 42,
        "uncond_t": torch.from_numpy(uncond).to(args.device),
        "call": {
            "strength": args.strength,
            "num_inference_steps": args.steps,
            "guidance_scale": 5.0,
            "eta": 0.0,
        },
    }

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    peak = PeakMemory(args.device)
    counts = {b: max(args.min_images, args.batches * b) for b in args.batch_sizes}
    # One pool of images: every batch size reconstructs a prefix of it (same ids, same seeds).
    pool = max(counts.values())
    z_all = rng.standard_normal((pool, *Z_SHAPE)).astype(np.float32)
    c_all = rng.standard_normal((pool, *TEXT_SHAPE)).astype(np.float32)
    ids_all = [f"img{i:04d}" for i in range(pool)]
    common = min(counts.values())
    rows, firsts = [], {}
    for batch in args.batch_sizes:
        n_images = counts[batch]
        z, c, ids = z_all[:n_images], c_all[:n_images], ids_all[:n_images]
        # Warm-up: one full batch (kernel selection, allocator) at a few steps.
        warm = {**settings, "num_inference_steps": min(args.steps, 5), "strength": 1.0}
        reconstruct(pipe, z[:batch], c[:batch], stim_ids=ids[:batch], batch_size=batch, **warm)
        images, seconds, mem = timed(
            sync, peak, reconstruct, pipe, z, c, stim_ids=ids, batch_size=batch, **settings
        )
        firsts[batch] = images[:common, 0]
        row = {
            "batch_size": batch,
            "images": n_images,
            "seconds": round(seconds, 3),
            "images_per_s": round(n_images / seconds, 4),
            "output_shape": list(images.shape[2:]),
            peak.key: mem,
        }
        if img2img is not None:
            row.update(compare_row(img2img, pipe, images, (z, c, ids), batch, ctx, sync, peak))
            row["speedup_vs_diffusers"] = round(
                seconds and row["diffusers"]["seconds"] / seconds, 3
            )
        rows.append(row)
        print(summary_line(row), flush=True)
    base = rows[0]["images_per_s"]
    for row in rows:
        row["speedup_vs_batch_1"] = round(row["images_per_s"] / base, 3)
    checks = batch_checks(pipe, firsts, (z_all, c_all, ids_all), args.batch_sizes, settings)
    checks.update(diffusers_checks(rows, args))
    best = max(rows, key=lambda r: r["images_per_s"])
    return describe(args, pipe, settings, rows, checks) | {
        "best_batch_size": best["batch_size"],
        "ratio_best_vs_batch_1": best["speedup_vs_batch_1"],
    }


def compare_row(
    img2img: Any,
    pipe: Any,
    ours: Any,
    data: tuple[Any, Any, list[str]],
    batch: int,
    ctx: dict[str, Any],
    sync: Any,
    peak: PeakMemory,
) -> dict[str, Any]:
    """diffusers' time and memory from the init images, and its difference on our inputs."""
    z, c, ids = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        steps = min(ctx["call"]["num_inference_steps"], 5)
        warm = {**ctx, "call": {**ctx["call"], "num_inference_steps": steps, "strength": 1.0}}
        run_diffusers(img2img, pipe, z[:batch], c[:batch], ids[:batch], batch, warm)
    images, seconds, mem = timed(sync, peak, run_diffusers, img2img, pipe, z, c, ids, batch, ctx)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        same = diffusers_same_inputs(img2img, pipe, z[:batch], c[:batch], ids[:batch], ctx)
    max_diff, n_diff = pixel_diff(same, ours[:batch, 0])
    return {
        "diffusers": {
            "seconds": round(seconds, 3),
            "images_per_s": round(len(ids) / seconds, 4),
            peak.key: mem,
            "output_shape": list(images.shape[1:]),
        },
        "diff_vs_diffusers": {
            "images": batch,
            "max_abs_pixel_diff": max_diff,
            "values_differing": n_diff,
            "values": int(same.size),
            # The images are not flat (a flat image would make any comparison pass).
            "ours_pixel_std": round(float(ours[:batch, 0].std()), 3),
        },
    }


def batch_checks(
    pipe: Any,
    firsts: dict[int, Any],
    data: tuple[Any, Any, list[str]],
    batch_sizes: list[int],
    settings: dict[str, Any],
) -> dict[str, Any]:
    """Each image between batch sizes, and one image regenerated alone at one batch size."""
    from nipype_brainrecon.diffusion import reconstruct

    z, c, ids = data
    ref = firsts[batch_sizes[0]]
    diffs = [pixel_diff(firsts[b], ref) for b in batch_sizes[1:]]
    max_diff = max((d for d, _ in diffs), default=0)
    n_diff = sum(n for _, n in diffs)
    # The documented guarantee: at one batch size an image does not depend on its batch-mates.
    batch = batch_sizes[1] if len(batch_sizes) > 1 else batch_sizes[0]
    j = len(ref) - 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        alone = reconstruct(
            pipe, z[j : j + 1], c[j : j + 1], stim_ids=[ids[j]], batch_size=batch, **settings
        )
    regen_diff, _ = pixel_diff(alone[0, 0], firsts[batch][j])
    return {
        "images_compared_between_batch_sizes": len(ref),
        "batch_sizes_bit_identical": max_diff == 0,
        "batch_sizes_max_abs_pixel_diff": max_diff,
        "batch_sizes_values_differing": n_diff,
        "batch_sizes_values_compared": int(ref.size) * (len(batch_sizes) - 1),
        "batch_sizes_within_one_level": max_diff <= 1,
        "regenerated_alone": {"batch_size": batch, "image": ids[j]},
        "regenerated_alone_bit_identical": regen_diff == 0,
    }


def diffusers_checks(rows: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """Ours vs diffusers on the same inputs: the largest pixel difference over batch sizes."""
    if not args.diffusers:
        return {}
    worst = max(r["diff_vs_diffusers"]["max_abs_pixel_diff"] for r in rows)
    return {
        "diffusers_max_abs_pixel_diff": worst,
        "diffusers_tolerance": args.tolerance,
        # Enforced in float32 only: in float16 diffusers adds the noise in float16 (module doc).
        "diffusers_within_tolerance": worst <= args.tolerance if args.dtype == "float32" else None,
    }


def failed_checks(checks: dict[str, Any]) -> list[str]:
    """Names of the checks that failed (``--check``)."""
    keys = (
        "diffusers_within_tolerance",
        "regenerated_alone_bit_identical",
        "batch_sizes_within_one_level",
    )
    return [k for k in keys if checks.get(k) is False]


def describe(
    args: argparse.Namespace,
    pipe: Any,
    settings: dict[str, Any],
    rows: list[dict[str, Any]],
    checks: dict[str, Any],
) -> dict[str, Any]:
    """The result record: machine, versions, model, recipe, rows and checks."""
    import diffusers
    import torch

    from nipype_brainrecon.diffusion import native_size

    cuda = args.device.startswith("cuda")
    return {
        "benchmark": "reconstruction on GPU, batch 1 vs batched"
        + (", ours vs diffusers' StableDiffusionImg2ImgPipeline" if args.diffusers else ""),
        "device": torch.cuda.get_device_name(0)
        if cuda
        else f"cpu ({platform.processor() or platform.machine()})",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
        "dtype": args.dtype,
        "attention": "SDPA (AttnProcessor2_0)" if cuda else "diffusers default",
        "channels_last": bool(cuda and args.channels_last),
        "model": "tiny random-weight (64 px, 77x768 text)"
        if args.tiny
        else "SD v1 configuration, random weights (U-Net 320/640/1280/1280, 77x768, 512 px)",
        "unet_parameters": n_params(pipe.unet),
        "vae_parameters": n_params(pipe.vae),
        "native_size": list(native_size(pipe)),
        "recipe": {
            k: v for k, v in settings.items() if k not in ("progress", "uncond_embedding", "seed")
        }
        | {"denoising_steps": int(args.steps * args.strength + 1e-6), "z_shape": list(Z_SHAPE)},
        "diffusers_compared": bool(args.diffusers),
        "results": rows,
        "checks": checks,
    }


def summary_line(row: dict[str, Any]) -> str:
    n, s = row["images"], row["seconds"]
    text = f"batch {row['batch_size']:3d}: {n} images in {s:.2f} s = {n / s:.3f}/s"
    if "diffusers" in row:
        d = row["diffusers"]
        text += (
            f"; diffusers {d['images_per_s']:.3f}/s; max |ours - diffusers| on the same inputs "
            f"{row['diff_vs_diffusers']['max_abs_pixel_diff']} levels"
        )
    return text


def _gib(row: dict[str, Any]) -> str:
    value = row.get("peak_gpu_gib", row.get("peak_rss_gib"))
    return "–" if value is None else f"{value:.2f}"


def markdown(result: dict[str, Any]) -> str:
    rows = result["results"]
    memory = "peak GPU GiB" if any("peak_gpu_gib" in r for r in rows) else "peak RSS GiB"
    lines = [
        f"# {result['benchmark']}",
        "",
        f"Device: {result['device']}; torch {result['torch']} (CUDA {result['cuda']}), diffusers "
        f"{result['diffusers']}, {result['dtype']}, attention {result.get('attention', '?')}, "
        f"channels-last {result.get('channels_last', False)}.",
        f"Model: {result['model']}; U-Net {result['unet_parameters'] / 1e6:.0f} M parameters, "
        f"native {result['native_size'][0]} px.",
        f"Recipe: {result['recipe']}.",
        "",
    ]
    compared = result.get("diffusers_compared")
    if compared:
        lines += [
            f"| batch size | images | ours images/s | diffusers images/s | ours vs diffusers | "
            f"ours {memory} | diffusers {memory} | max abs pixel diff (same inputs) | ours vs batch 1 |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in result["results"]:
            d, x = row["diffusers"], row["diff_vs_diffusers"]
            lines.append(
                f"| {row['batch_size']} | {row['images']} | {row['images_per_s']:.3f} | "
                f"{d['images_per_s']:.3f} | {row['speedup_vs_diffusers']:.2f}x | {_gib(row)} | "
                f"{_gib(d)} | {x['max_abs_pixel_diff']} ({x['values_differing']} of "
                f"{x['values']} values) | {row['speedup_vs_batch_1']:.2f}x |"
            )
    else:
        lines += [
            f"| batch size | images | seconds | images/s | {memory} | vs batch 1 |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for row in result["results"]:
            lines.append(
                f"| {row['batch_size']} | {row['images']} | {row['seconds']:.2f} | "
                f"{row['images_per_s']:.3f} | {_gib(row)} | {row['speedup_vs_batch_1']:.2f}x |"
            )
    lines += [
        "",
        f"Best: batch {result['best_batch_size']}, {result['ratio_best_vs_batch_1']:.2f}x batch 1.",
    ]
    checks = result.get("checks") or {}
    if checks:
        lines += ["", "Checks:", ""]
        lines += [f"- {k}: {v}" for k, v in checks.items()]
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
    parser.add_argument(
        "--batch-sizes", default=None, help="comma-separated, from 1 (default 1,4,8,16,32)"
    )
    parser.add_argument("--batches", type=int, default=2, help="batches timed per batch size")
    parser.add_argument("--min-images", type=int, default=4, help="images timed at least")
    parser.add_argument("--steps", type=int, default=50, help="DDIM schedule length (50)")
    parser.add_argument("--strength", type=float, default=0.8, help="img2img strength (0.8)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch default)")
    parser.add_argument(
        "--no-diffusers",
        dest="diffusers",
        action="store_false",
        help="time ours only (no StableDiffusionImg2ImgPipeline beside it)",
    )
    parser.add_argument(
        "--no-channels-last",
        dest="channels_last",
        action="store_false",
        help="keep the default memory format on CUDA",
    )
    parser.add_argument(
        "--tolerance",
        type=int,
        default=1,
        help="largest pixel difference (uint8 levels) ours vs diffusers allowed in float32 (1)",
    )
    parser.add_argument("--check", action="store_true", help="exit 3 when a check fails")
    parser.add_argument("--out", type=Path, default=None, help="JSON result file")
    args = parser.parse_args(argv)
    if args.dtype is None:
        args.dtype = "float16" if args.device.startswith("cuda") else "float32"
    if args.batch_sizes is None:
        args.batch_sizes = "1,2" if args.tiny else "1,4,8,16,32"
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


def write_results(out: Path, result: dict, markdown_text: str) -> None:
    """The result as JSON at ``out`` and its Markdown beside it (``.md``); both printed."""
    from nipype_brainrecon.io import atomic_write_text

    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    atomic_write_text(out.with_suffix(".md"), markdown_text)
    print(markdown_text)
    print(f"wrote {out} and {out.with_suffix('.md')}")


def no_cuda_message(name: str, torch_version: str) -> str:
    """The one line printed when ``--device cuda`` finds no GPU."""
    return (
        f"{name}: no CUDA GPU found (torch.cuda.is_available() is False, torch {torch_version}); "
        "run on a machine with an NVIDIA GPU and a CUDA build of torch, or check the script "
        "with --device cpu --tiny"
    )


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
        print(f"diffusers' StableDiffusionImg2ImgPipeline beside ours: {args.diffusers}")
        print(f"would write {args.out} and {args.out.with_suffix('.md')}")
        return 0
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(no_cuda_message("gpu_reconstruction", torch.__version__), file=sys.stderr)
        return 1
    result = run(args)
    write_results(args.out, result, markdown(result))
    failed = failed_checks(result["checks"])
    if args.check and failed:
        print(f"gpu_reconstruction: checks failed: {', '.join(failed)}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
