"""The GPU benchmark scripts, run small on CPU: ours vs diffusers' img2img, and end to end.

``benchmarks/gpu_reconstruction.py`` compares :func:`nipype_brainrecon.diffusion.reconstruct`
with diffusers' own ``StableDiffusionImg2ImgPipeline`` (the reference implementation) on the
same components; ``benchmarks/gpu_end_to_end.py`` runs a synthetic subject from betas to scores.
Both run here with ``--tiny`` on CPU; their GPU figures need a CUDA machine.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    """The two scripts, imported as the ``benchmarks`` package modules they are."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(ROOT))
        from benchmarks import gpu_end_to_end, gpu_reconstruction

        yield gpu_reconstruction, gpu_end_to_end


def test_reconstruction_vs_diffusers_tiny_cpu(bench, tmp_path):
    rec, _ = bench
    out = tmp_path / "rec.json"
    args = ["--device", "cpu", "--tiny", "--steps", "3", "--batch-sizes", "1,2", "--batches", "1"]
    args += ["--min-images", "2", "--threads", "1", "--check", "--out", str(out)]
    assert rec.main(args) == 0  # --check: exit 3 if a check below failed
    result = json.loads(out.read_text())
    assert result["diffusers_compared"] is True and result["dtype"] == "float32"
    assert [r["batch_size"] for r in result["results"]] == [1, 2]
    for row in result["results"]:
        assert row["images"] == 2 and row["images_per_s"] > 0 and row["peak_rss_gib"] > 0.05
        assert row["diffusers"]["images_per_s"] > 0 and row["diffusers"]["peak_rss_gib"] > 0.05
        assert row["speedup_vs_diffusers"] > 0
        diff = row["diff_vs_diffusers"]
        # Same init latents and noise in float32 on CPU: the same pixels (tolerance: 1 level).
        assert diff["max_abs_pixel_diff"] <= 1
        assert diff["values_differing"] <= 0.001 * diff["values"]
        assert diff["values"] == row["batch_size"] * 64 * 64 * 3
        assert diff["ours_pixel_std"] > 5  # not flat images
    checks = result["checks"]
    assert checks["diffusers_within_tolerance"] is True and checks["diffusers_tolerance"] == 1
    # Between batch sizes: at most one level on a small fraction of the values (kernel
    # blocking); one image regenerated alone at a fixed batch size: bit-identical.
    assert checks["images_compared_between_batch_sizes"] == 2
    assert checks["batch_sizes_within_one_level"] is True
    assert checks["batch_sizes_max_abs_pixel_diff"] <= 1
    assert checks["batch_sizes_values_differing"] <= 0.01 * checks["batch_sizes_values_compared"]
    assert checks["batch_sizes_bit_identical"] == (checks["batch_sizes_max_abs_pixel_diff"] == 0)
    assert checks["regenerated_alone_bit_identical"] is True
    md = out.with_suffix(".md").read_text()
    assert "| batch size |" in md and "diffusers images/s" in md


def test_diffusers_comparison_is_sensitive(bench):
    """The comparison can fail: other noise (another seed) moves the pixels far."""
    rec, _ = bench
    from nipype_brainrecon.diffusion import reconstruct

    torch.set_num_threads(1)
    pipe = rec.build_pipe(True, "cpu", torch.float32)
    img2img = rec.diffusers_pipe(pipe)
    rng = np.random.default_rng(3)
    z = rng.standard_normal((1, *rec.Z_SHAPE)).astype(np.float32)
    c = rng.standard_normal((1, *rec.TEXT_SHAPE)).astype(np.float32)
    uncond = rng.standard_normal(rec.TEXT_SHAPE).astype(np.float32)
    call = {"strength": 0.8, "num_inference_steps": 3, "guidance_scale": 5.0, "eta": 0.0}
    ctx = {"device": "cpu", "seed": 42, "uncond_t": torch.from_numpy(uncond), "call": call}
    ours = reconstruct(
        pipe, z, c, stim_ids=["a"], n_samples=1, num_inference_steps=3, seed=42,
        batch_size=1, uncond_embedding=uncond, progress=False,
    )  # fmt: skip
    same = rec.diffusers_same_inputs(img2img, pipe, z, c, ["a"], ctx)
    other = rec.diffusers_same_inputs(img2img, pipe, z, c, ["a"], {**ctx, "seed": 7})
    assert rec.pixel_diff(same, ours[:, 0]) == (0, 0)
    assert rec.pixel_diff(other, ours[:, 0])[0] > 20


def test_end_to_end_tiny_cpu(bench, tmp_path):
    _, e2e = bench
    out = tmp_path / "e2e.json"
    assert e2e.main(["--device", "cpu", "--tiny", "--threads", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    stages = [r["stage"] for r in result["stages"]]
    assert stages == [
        "simulate",
        "fit_z_decoder",
        "fit_c_decoder",
        "predict",
        "decode_seen_images",
        "reconstruct",
        "evaluate",
    ]
    assert all(r["seconds"] > 0 and r["peak_rss_gib"] > 0.05 for r in result["stages"])
    assert "peak_gpu_gib" not in result["stages"][0]
    tiny = asdict(e2e.TINY)
    assert result["shapes"] == json.loads(json.dumps(tiny)) | {"factors": e2e.FACTORS}
    fit_c = result["stages"][2]
    assert fit_c["shape"] == [tiny["n_train"], tiny["p_ventral"], 4 * 768]
    assert sum(fit_c["alphas"].values()) == 4 * 768
    # The synthetic signal is decodable (64 shared factors): well above 0 on the test set.
    assert result["decoding"]["z_test_r_mean"] > 0.2
    assert result["decoding"]["c_test_r_mean"] > 0.2
    recon = result["reconstruction"]
    assert recon["samples"] == tiny["n_test"] * tiny["n_samples"] and recon["samples_per_s"] > 0
    assert recon["full_test_set_measured"] is True
    metrics = result["metrics"]
    assert -1 <= metrics["PixCorr"]["value"] <= 1 and -1 <= metrics["SSIM"]["value"] <= 1
    assert metrics["Pixels 2-way (takagi)"]["chance"] == 0.5
    assert "| reconstruct |" in out.with_suffix(".md").read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
@pytest.mark.parametrize("script", [0, 1], ids=["gpu_reconstruction", "gpu_end_to_end"])
def test_cuda_without_gpu_exits_with_one_line(bench, script, tmp_path, capsys):
    module = bench[script]
    out = tmp_path / "x.json"
    assert module.main(["--device", "cuda", "--out", str(out)]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "no CUDA GPU found" in lines[0] and "--device cpu --tiny" in lines[0]
    assert "Traceback" not in captured.err and not out.exists()
