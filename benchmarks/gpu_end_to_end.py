"""GPU benchmark: one NSD-size synthetic subject end to end, betas -> decoders -> images -> scores.

The shapes of NSD subject 1 in Takagi & Nishimoto (2023): 24,980 training trials; 5,917
early-visual voxels decode z (the 4 x 40 x 40 = 6,400 scaled VAE latent of a 320 px image);
7,604 ventral voxels decode c (the 77 x 768 = 59,136 text embedding); 982 test images (their
betas averaged over the repeats) reconstructed 5 times each. The subject is synthetic: 64
shared factors drive the targets and the voxels (``voxels = factors A + noise``, ``targets =
factors B + noise``; test betas with a third of the noise variance, as a mean of 3 repeats), so
the decoders have something to find. The stages, each timed with its peak memory:

1. ``simulate``: the betas and targets (torch, on the device; then host arrays);
2. ``fit_z_decoder`` / ``fit_c_decoder``: :func:`nipype_brainrecon.ridge.fit_ridge_cv` with the
   package's default alphas (``config.DEFAULTS``; the paper's 7 alphas, all at most 1, are
   almost unregularised on standardised voxels), 5 folds, float32, no intercept as in the paper
   (torch backend on CUDA, numpy on CPU);
3. ``predict``: the test set's z and c (and their per-target correlation with the truth);
4. ``decode_seen_images``: the "seen" test images, the true z decoded by the VAE (512 px);
5. ``reconstruct``: :func:`nipype_brainrecon.diffusion.reconstruct` (z+c, 50 DDIM steps x 0.8,
   guidance 5, 5 samples) with an SD v1-configuration model of random weights (float16, SDPA,
   channels-last on CUDA; as ``benchmarks/gpu_reconstruction.py``) on the first
   ``--recon-images`` test images (default 64: all 982 x 5 take about 25 minutes on an H100; the
   time for all is extrapolated from the measured rate and labelled so; ``--recon-images 982``
   runs them all);
6. ``evaluate``: :func:`nipype_brainrecon.evaluation.evaluate` (PixCorr, SSIM, pixel and
   low-level two-way identification, each beside its mismatched-pairs chance level).

Peak memory per stage: torch's peak GPU allocation (CUDA) and the process's peak RSS
(``VmHWM``, reset before each stage through ``/proc/self/clear_refs``; it includes what earlier
stages left resident).

    python -m benchmarks.gpu_end_to_end [--recon-images 64] [--batch-size 16] [--out FILE]
    python -m benchmarks.gpu_end_to_end --device cpu --tiny   # every size scaled down (seconds)

Needs a CUDA GPU (exits with one line otherwise, unless ``--device cpu``). Writes FILE (default
``benchmarks/results/gpu_end_to_end.json``; ``..._tiny.json`` with ``--tiny``) and a Markdown
table next to it.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
FACTORS = 64


@dataclass(frozen=True)
class Shapes:
    """The subject's sizes."""

    n_train: int = 24_980
    p_early: int = 5_917
    p_ventral: int = 7_604
    z_shape: tuple[int, int, int] = (4, 40, 40)
    c_shape: tuple[int, int] = (77, 768)
    n_test: int = 982
    n_samples: int = 5
    steps: int = 50


#: NSD subject 1 (full size) and a CPU-sized version of every dimension (the U-Net's 768-wide
#: text states stay: the tiny model keeps SD v1's interfaces).
NSD = Shapes()
TINY = Shapes(
    n_train=160,
    p_early=32,
    p_ventral=48,
    z_shape=(4, 5, 5),
    c_shape=(4, 768),
    n_test=6,
    n_samples=2,
    steps=5,
)


class Stages:
    """Times each stage and its peak memory (GPU allocation on CUDA, process RSS always)."""

    def __init__(self, device: str) -> None:
        from benchmarks.gpu_reconstruction import PeakMemory

        self.cuda = device.startswith("cuda")
        self.rss = PeakMemory("cpu")
        self.gpu = PeakMemory(device) if self.cuda else None
        self.rows: list[dict[str, Any]] = []

    @contextlib.contextmanager
    def stage(self, name: str, **info: Any) -> Iterator[dict[str, Any]]:
        row: dict[str, Any] = {"stage": name, **info}
        for peak in (self.rss, self.gpu):
            if peak is not None:
                peak.reset()
        start = time.perf_counter()
        yield row
        if self.gpu is not None:
            row["peak_gpu_gib"] = self.gpu.gib()  # synchronises first
        row["seconds"] = time.perf_counter() - start  # unrounded: a sub-millisecond stage is not 0
        row["peak_rss_gib"] = self.rss.gib()
        self.rows.append(row)
        mem = f", GPU peak {row['peak_gpu_gib']:.2f} GiB" if "peak_gpu_gib" in row else ""
        print(
            f"{name}: {row['seconds']:.2f} s, peak RSS {row['peak_rss_gib']:.2f} GiB{mem}",
            flush=True,
        )


def simulate(shapes: Shapes, device: str, seed: int = 0) -> dict[str, Any]:
    """Training and test betas of both ROIs, true z and c (float32 host arrays)."""
    import numpy as np
    import torch

    gen = torch.Generator(device=device).manual_seed(seed)

    def randn(*size: int) -> torch.Tensor:
        return torch.randn(size, generator=gen, device=device, dtype=torch.float32)

    n_all = shapes.n_train + shapes.n_test
    factors = randn(n_all, FACTORS)
    out: dict[str, Any] = {}
    for name, width in (
        ("z", int(np.prod(shapes.z_shape))),
        ("c", int(np.prod(shapes.c_shape))),
    ):
        target = factors @ randn(FACTORS, width) / FACTORS**0.5 + 0.5 * randn(n_all, width)
        out[name] = target.cpu().numpy()
        del target
    for roi, width in (("early", shapes.p_early), ("ventral", shapes.p_ventral)):
        signal = factors @ randn(FACTORS, width) / FACTORS**0.5
        noise = randn(n_all, width)
        noise[shapes.n_train :] /= 3**0.5  # test betas: the mean of 3 repeats
        # Voxels with their own offsets and scales, as betas have.
        betas = (signal + noise) * (0.5 + 1.5 * torch.rand(width, generator=gen, device=device))
        out[roi] = (betas + torch.rand(width, generator=gen, device=device) - 0.5).cpu().numpy()
        del signal, noise, betas
    return out


def fit_decoder(X: Any, Y: Any, device: str) -> Any:
    """The paper's decoder (5 folds, float32, no intercept), on the package's default alphas."""
    from nipype_brainrecon.ridge import fit_ridge_cv

    cuda = device.startswith("cuda")
    return fit_ridge_cv(
        X,
        Y,
        n_folds=5,
        fit_intercept=False,
        backend="torch" if cuda else "numpy",
        device=device if cuda else None,
    )


def score_images(originals: Any, recons: Any) -> dict[str, Any]:
    """PixCorr, SSIM and weight-free two-way identification, beside their mismatched chance."""
    from nipype_brainrecon.evaluation import evaluate

    side = min(originals.shape[1], 425)
    table = evaluate(
        originals,
        recons,
        extractors=("pixels", "lowlevel"),
        size=side,
        n_permutations=100,
        n_boot=100,
    )
    return {
        str(label): {
            "value": float(row["value"]),
            "mismatched": float(row["mismatched"]),
            "chance": None if row["chance"] != row["chance"] else float(row["chance"]),
        }
        for label, row in table.iterrows()
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import torch

    from benchmarks.gpu_reconstruction import build_pipe, use_gpu_settings
    from nipype_brainrecon.diffusion import decode_latents, native_size, reconstruct
    from nipype_brainrecon.evaluation.metrics import per_target_correlation

    if args.threads:
        torch.set_num_threads(args.threads)
    shapes = TINY if args.tiny else NSD
    cuda = args.device.startswith("cuda")
    stages = Stages(args.device)
    n, n_test = shapes.n_train, shapes.n_test
    n_recon = min(args.recon_images or n_test, n_test)

    with stages.stage("simulate"):
        data = simulate(shapes, args.device)
    with stages.stage("fit_z_decoder", shape=[n, shapes.p_early, data["z"].shape[1]]) as row:
        dec_z = fit_decoder(data["early"][:n], data["z"][:n], args.device)
        row["alphas"] = alpha_counts(dec_z)
    with stages.stage("fit_c_decoder", shape=[n, shapes.p_ventral, data["c"].shape[1]]) as row:
        dec_c = fit_decoder(data["ventral"][:n], data["c"][:n], args.device)
        row["alphas"] = alpha_counts(dec_c)
    with stages.stage("predict", images=n_test):
        z_pred = dec_z.predict(data["early"][n:]).astype(np.float32)
        c_pred = dec_c.predict(data["ventral"][n:]).astype(np.float32)
    decoding = {
        f"{name}_test_r_mean": float(np.nanmean(per_target_correlation(data[name][n:], pred)))
        for name, pred in (("z", z_pred), ("c", c_pred))
    }
    print(f"decoding (test, mean r over targets): {decoding}", flush=True)

    dtype = torch.float16 if cuda else torch.float32
    pipe = build_pipe(args.tiny, args.device, dtype)
    if cuda:
        use_gpu_settings(pipe)
    side = native_size(pipe)[0]
    z_true = data["z"][n : n + n_recon].reshape(n_recon, *shapes.z_shape)
    with stages.stage("decode_seen_images", images=n_recon):
        seen = decode_latents(pipe, z_true, batch_size=args.batch_size, output_size=side)
    uncond = np.random.default_rng(1).standard_normal(shapes.c_shape).astype(np.float32)
    ids = [f"test{i:04d}" for i in range(n_recon)]
    samples = n_recon * shapes.n_samples
    with (
        stages.stage("reconstruct", images=n_recon, samples=samples) as row,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", RuntimeWarning)  # random fp16 weights may overflow
        recons = reconstruct(
            pipe,
            z_pred[:n_recon].reshape(n_recon, *shapes.z_shape),
            c_pred[:n_recon].reshape(n_recon, *shapes.c_shape),
            stim_ids=ids,
            mode="z+c",
            n_samples=shapes.n_samples,
            num_inference_steps=shapes.steps,
            strength=0.8,
            guidance_scale=5.0,
            batch_size=args.batch_size,
            uncond_embedding=uncond,
            progress=False,
        )
        row["batch_size"] = args.batch_size
    with stages.stage("evaluate", images=n_recon):
        metrics = score_images(seen, recons)
    return describe(args, shapes, stages.rows, decoding, metrics, n_recon, pipe)


def alpha_counts(decoder: Any) -> dict[str, int]:
    """Targets per chosen alpha."""
    import numpy as np

    values, counts = np.unique(np.asarray(decoder.alphas), return_counts=True)
    return {f"{v:g}": int(k) for v, k in zip(values, counts, strict=True)}


def describe(
    args: argparse.Namespace,
    shapes: Shapes,
    rows: list[dict[str, Any]],
    decoding: dict[str, float],
    metrics: dict[str, Any],
    n_recon: int,
    pipe: Any,
) -> dict[str, Any]:
    """The result record."""
    import torch

    from benchmarks.gpu_reconstruction import n_params

    cuda = args.device.startswith("cuda")
    recon = next(r for r in rows if r["stage"] == "reconstruct")
    rate = recon["samples"] / recon["seconds"]
    full_samples = shapes.n_test * shapes.n_samples
    total = sum(r["seconds"] for r in rows)
    return {
        "benchmark": "NSD-size subject end to end (betas -> decoders -> reconstructions -> scores)",
        "device": torch.cuda.get_device_name(0)
        if cuda
        else f"cpu ({platform.processor() or platform.machine()})",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
        "dtype": "float16" if cuda else "float32",
        "tiny": bool(args.tiny),
        "shapes": asdict(shapes) | {"factors": FACTORS},
        "model": "tiny random-weight (64 px)"
        if args.tiny
        else "SD v1 configuration, random weights (512 px)",
        "unet_parameters": n_params(pipe.unet),
        "ridge_backend": "torch" if cuda else "numpy",
        "stages": rows,
        "total_seconds": round(total, 3),
        "decoding": decoding,
        "metrics": metrics,
        "reconstruction": {
            "images": n_recon,
            "samples": recon["samples"],
            "samples_per_s": round(rate, 4),
            "batch_size": args.batch_size,
            "full_test_set_samples": full_samples,
            "full_test_set_seconds": round(full_samples / rate, 1),
            "full_test_set_measured": n_recon == shapes.n_test,
        },
        "total_seconds_full_test_set": round(total - recon["seconds"] + full_samples / rate, 1),
    }


def _num(value: Any, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def markdown(result: dict[str, Any]) -> str:
    s, rec = result["shapes"], result["reconstruction"]
    how = "measured" if rec["full_test_set_measured"] else "extrapolated from the measured rate"
    lines = [
        f"# {result['benchmark']}",
        "",
        f"Device: {result['device']}; torch {result['torch']} (CUDA {result['cuda']}), "
        f"{result['dtype']}, ridge backend {result['ridge_backend']}.",
        f"Subject: {s['n_train']:,} training trials, {s['p_early']:,} early / {s['p_ventral']:,} "
        f"ventral voxels, z {s['z_shape']}, c {s['c_shape']}, {s['n_test']} test images x "
        f"{s['n_samples']} samples, {s['steps']} DDIM steps x 0.8. Model: {result['model']}.",
        "",
        "| stage | seconds | peak RSS GiB | peak GPU GiB | details |",
        "|---|---:|---:|---:|---|",
    ]
    for r in result["stages"]:
        extra = {k: v for k, v in r.items() if k not in ("stage", "seconds") and "peak" not in k}
        lines.append(
            f"| {r['stage']} | {r['seconds']:.2f} | {_num(r.get('peak_rss_gib'), '.2f')} | "
            f"{_num(r.get('peak_gpu_gib'), '.2f')} | {extra or ''} |"
        )
    lines += [
        "",
        f"Total: {result['total_seconds']:.1f} s. Reconstruction: {rec['samples_per_s']:.3f} "
        f"samples/s at batch {rec['batch_size']}; the whole test set ({rec['full_test_set_samples']}"
        f" samples): {rec['full_test_set_seconds']:.0f} s ({how}); end to end with it: "
        f"{result['total_seconds_full_test_set']:.0f} s.",
        f"Decoding (test set, mean r over targets): {result['decoding']}.",
        "",
        "| metric | value | mismatched pairs | chance |",
        "|---|---:|---:|---:|",
    ]
    for label, m in result["metrics"].items():
        lines.append(
            f"| {label} | {m['value']:.3f} | {m['mismatched']:.3f} | {_num(m['chance'], '.2f')} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_end_to_end",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--tiny", action="store_true", help="every size scaled down (CPU, seconds)")
    parser.add_argument(
        "--recon-images",
        type=int,
        default=None,
        help="test images reconstructed (default 64; all with --tiny; 982 for the whole set)",
    )
    parser.add_argument("--batch-size", type=int, default=16, help="U-Net batch size (16)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch default)")
    parser.add_argument("--out", type=Path, default=None, help="JSON result file")
    args = parser.parse_args(argv)
    if args.recon_images is None:
        args.recon_images = TINY.n_test if args.tiny else 64
    if args.recon_images < 2:
        parser.error("--recon-images: at least 2 (the scores compare images with each other)")
    if args.batch_size < 1:
        parser.error("--batch-size: at least 1")
    if args.out is None:
        args.out = RESULTS / ("gpu_end_to_end_tiny.json" if args.tiny else "gpu_end_to_end.json")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import torch
    except ImportError:
        print("gpu_end_to_end: torch is not installed; install the package first", file=sys.stderr)
        return 1
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        from benchmarks.gpu_reconstruction import no_cuda_message

        print(no_cuda_message("gpu_end_to_end", torch.__version__), file=sys.stderr)
        return 1
    from benchmarks.gpu_reconstruction import write_results

    result = run(args)
    write_results(args.out, result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
