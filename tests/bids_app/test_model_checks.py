"""The model checks before a run: an uncached revision offline (exit 66), the warning of a
full-size model on the CPU with its estimated time (bids_app/checks.py)."""

from __future__ import annotations

import shutil

import pytest

from nipype_brainrecon.bids_app import estimate
from nipype_brainrecon.bids_app.checks import (
    FULL_SIZE_UNET_PARAMETERS,
    check_model_revision,
    cpu_model_warning,
)
from nipype_brainrecon.diffusion.models import demo_model_path
from nipype_brainrecon.errors import MissingInputError

SIZES = {"n_trials": 120, "n_train": 100, "n_test": 20, "targets": {"z": 6400, "c": 59136}}
SETTINGS = {"n_samples": 5, "num_inference_steps": 50, "strength": 0.8}


def _full_size_model(tmp_path):
    """A folder whose U-Net weights are SD v1's size (a sparse file: nothing is written)."""
    folder = tmp_path / "big-model"
    shutil.copytree(demo_model_path(), folder, ignore=shutil.ignore_patterns("*.safetensors"))
    with (folder / "unet" / "diffusion_pytorch_model.safetensors").open("wb") as handle:
        handle.truncate(4 * estimate.SD_UNET_PARAMETERS)  # float32
    return folder


def test_full_size_model_on_cpu_warns_with_the_estimate(tmp_path):
    model = _full_size_model(tmp_path)
    settings = {**SETTINGS, "model": str(model), "device": "cpu"}
    line = cpu_model_warning(SIZES, settings)
    assert line is not None
    assert "860 M U-Net parameters" in line and "20 test images" in line
    # the estimate is the reconstruction stage of the --dry-run model: 20 × (5 + 1) samples of
    # 40 steps of an 860 M U-Net on a 40 × 40 latent, one thread
    seconds = estimate.diffusion_seconds(
        20 * 6, 40, 1600, estimate.SD_UNET_PARAMETERS, "cpu", threads=1
    )
    assert seconds > 3600
    assert f"estimated at {estimate.format_seconds(seconds)} " in line
    assert estimate.format_seconds(seconds).endswith("min")


def test_no_warning_on_cuda_or_for_a_small_model(tmp_path):
    model = _full_size_model(tmp_path)
    assert cpu_model_warning(SIZES, {**SETTINGS, "model": str(model), "device": "cuda"}) is None
    demo = {**SETTINGS, "model": str(demo_model_path()), "device": "cpu"}
    assert estimate.unet_parameters(demo_model_path()) < FULL_SIZE_UNET_PARAMETERS
    assert cpu_model_warning(SIZES, demo) is None


def test_automatic_device_warns_when_torch_sees_no_cuda(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model = _full_size_model(tmp_path)
    assert cpu_model_warning(SIZES, {**SETTINGS, "model": str(model), "device": None})


def test_uncached_revision_is_checked_only_offline(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingInputError, match=r"brainrecon-tests/none@v2.*--revision v2"):
        check_model_revision("brainrecon-tests/none@v2")
    check_model_revision("demo")
    check_model_revision(str(demo_model_path()))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # online: resolved (fetched) by the run itself
    check_model_revision("brainrecon-tests/none@v2")
    assert no_network == []
