"""Benchmark: reconstruction images/s on CPU, batch 1 vs batched.

Runs :func:`nipype_brainrecon.diffusion.reconstruct` with the paper's recipe (z+c, 5 samples
per image, 50 DDIM steps x strength 0.8 = 40 U-Net steps, guidance 5 = two branches, z at
320 px) on random z and c, at several batch sizes (rows = image x sample pairs per U-Net
call), each after a warm-up, and reports images (samples) per second and the ratio to batch 1.
The model is the package's demo model when ``nipype_brainrecon/data/demo_model`` holds one,
else a random-weight SD-v1-shaped model (77 x 768 text, 4-channel latents, VAE factor 8,
64 px native; weights do not change the cost). Batched outputs are compared with batch-1
outputs of the same images (a different batch size changes float rounding only).

    python -m benchmarks.bench_reconstruction [--quick] [--out FILE] [--threads N] [--model DIR]

Writes FILE (default ``benchmarks/results/reconstruction.json``, ``reconstruction_quick.json``
with ``--quick``) and a Markdown table next to it. One thread by default: the numbers are
then stable on a shared machine, and batching gains are not confounded with threading gains.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEMO_MODEL = REPO / "nipype_brainrecon" / "data" / "demo_model"
RESULTS = Path(__file__).resolve().parent / "results"
N_SAMPLES = 5
Z_RESOLUTION = 320


def get_model(model: Path | None, scratch: Path) -> tuple[Path, str]:
    """The model folder and a description of it."""
    from nipype_brainrecon.diffusion.models import build_tiny_sd

    if model is not None:
        return model, f"given model {model}"
    if (DEMO_MODEL / "model_index.json").is_file():
        return DEMO_MODEL, "demo model (nipype_brainrecon/data/demo_model)"
    folder = build_tiny_sd(scratch / "tiny-sd", profile="sd-v1-shapes", seed=0, sample_size=8)
    return folder, "random-weight sd-v1-shapes model (no demo model found), 64 px native"


def n_images_for(batch: int, quick: bool) -> int:
    """Images so that image x sample rows fill whole batches (no padding in the timing)."""
    rows = math.lcm(batch, N_SAMPLES)
    target = N_SAMPLES if quick and batch == 1 else max(2 * batch, 2 * N_SAMPLES)
    return math.ceil(target / rows) * rows // N_SAMPLES


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from nipype_brainrecon import diffusion
    from nipype_brainrecon.diffusion.models import describe_model, load_pipeline
    from nipype_brainrecon.features import empty_prompt_embedding

    torch.set_num_threads(args.threads)
    batch_sizes = [1, 8] if args.quick else [1, 4, 8, 16]
    repeats = 1 if args.quick else 2
    with tempfile.TemporaryDirectory() as scratch:
        folder, model_desc = get_model(args.model, Path(scratch))
        pipe = load_pipeline(folder, device="cpu", dtype="float32")
        pipe.set_progress_bar_config(disable=True)
        info = describe_model(pipe)
    rng = np.random.default_rng(0)
    n_max = max(n_images_for(b, args.quick) for b in batch_sizes)
    z = rng.standard_normal((n_max, *info.latent_shape(Z_RESOLUTION))).astype(np.float32)
    c = rng.standard_normal((n_max, *info.text_shape)).astype(np.float32)
    ids = [f"img{i:04d}" for i in range(n_max)]
    uncond = empty_prompt_embedding(pipe.tokenizer, pipe.text_encoder)
    recipe = {"mode": "z+c", "n_samples": N_SAMPLES, "num_inference_steps": 50, "strength": 0.8}
    recipe |= {"guidance_scale": 5.0, "seed": 42}

    rows, outputs = [], {}
    for batch in batch_sizes:
        n = n_images_for(batch, args.quick)
        common = {"stim_ids": ids[:n], "batch_size": batch, "uncond_embedding": uncond}
        # Warm-up on one batch at 2 steps (allocations, kernel choice).
        diffusion.reconstruct(
            pipe, z[:n], c[:n], **common, **{**recipe, "num_inference_steps": 2}, progress=False
        )
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            out = diffusion.reconstruct(pipe, z[:n], c[:n], **common, **recipe, progress=False)
            times.append(time.perf_counter() - start)
        outputs[batch] = out
        seconds = statistics.median(times)
        rows.append(
            {
                "batch_size": batch,
                "images": n,
                "samples": n * N_SAMPLES,
                "seconds": round(seconds, 3),
                "seconds_all_repeats": [round(t, 3) for t in times],
                "samples_per_s": round(n * N_SAMPLES / seconds, 3),
            }
        )
        print(f"batch {batch:2d}: {n * N_SAMPLES} samples in {seconds:.2f} s", flush=True)
    base = rows[0]["samples_per_s"]
    ref = outputs[1]
    for row in rows:
        row["speedup_vs_batch_1"] = round(row["samples_per_s"] / base, 2)
        k = min(len(ref), row["images"])
        diff = np.abs(outputs[row["batch_size"]][:k].astype(np.int16) - ref[:k].astype(np.int16))
        row["max_abs_diff_vs_batch_1"] = int(diff.max())
        row["fraction_values_differing_vs_batch_1"] = float(f"{(diff > 0).mean():.3g}")
    best = max(rows, key=lambda r: r["samples_per_s"])
    import diffusers

    return {
        "benchmark": "reconstruction on CPU, batch 1 vs batched",
        "model": model_desc,
        "model_id": info.model_id,
        "native_size": list(diffusion.native_size(pipe)),
        "z_shape": list(info.latent_shape(Z_RESOLUTION)),
        "c_shape": list(info.text_shape),
        "recipe": recipe | {"denoising_steps": 40, "eta": 0.0, "scheduler": "DDIM"},
        "unit": "one sample (image) of n_samples per stimulus",
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
        "quick": bool(args.quick),
        "results": rows,
        "best_batch_size": best["batch_size"],
        "ratio_best_vs_batch_1": best["speedup_vs_batch_1"],
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# {result['benchmark']}",
        "",
        f"Model: {result['model']}; native {result['native_size'][0]} px, z "
        f"{'x'.join(map(str, result['z_shape']))}, c {'x'.join(map(str, result['c_shape']))}.",
        f"Recipe: {result['recipe']}.",
        f"CPU {result['cpu']}, {result['threads']} thread(s); torch {result['torch']}, diffusers "
        f"{result['diffusers']}.",
        "",
        "| batch size | samples | seconds | samples/s | vs batch 1 | max diff vs batch 1 (levels) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["results"]:
        lines.append(
            f"| {row['batch_size']} | {row['samples']} | {row['seconds']:.2f} | "
            f"{row['samples_per_s']:.3f} | {row['speedup_vs_batch_1']:.2f}x | "
            f"{row['max_abs_diff_vs_batch_1']} ({row['fraction_values_differing_vs_batch_1']:.2%} "
            "of values) |"
        )
    lines += [
        "",
        f"Best: batch {result['best_batch_size']}, {result['ratio_best_vs_batch_1']:.2f}x batch 1.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_reconstruction",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="batch 1 and 8 only, one repeat")
    parser.add_argument("--out", type=Path, default=None, help="JSON result file")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1)")
    parser.add_argument("--model", type=Path, default=None, help="a diffusers model folder")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads: at least 1")
    if args.out is None:
        args.out = RESULTS / ("reconstruction_quick.json" if args.quick else "reconstruction.json")
    from nipype_brainrecon.io import atomic_write_text

    result = run(args)
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    atomic_write_text(args.out.with_suffix(".md"), markdown(result))
    print(markdown(result))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
