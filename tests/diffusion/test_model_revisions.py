"""Pinned models: ``ID@REVISION`` resolved offline in a Hugging Face cache, identities of hub
snapshots and local folders, the device record of a model's outputs (docs/models.md)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nipype_brainrecon.derivatives import model_name, portable_command, portable_settings
from nipype_brainrecon.diffusion import models
from nipype_brainrecon.errors import EXIT_NO_INPUT, MissingInputError

REPO = "brainrecon-tests/demo-sd"
COMMIT = hashlib.sha1(b"brainrecon demo snapshot").hexdigest()  # 40 hex, as the hub's


@pytest.fixture
def fake_hub(tmp_path, monkeypatch, no_network):
    """A Hugging Face cache holding the demo model as ``REPO`` at ``COMMIT`` (``refs/main``,
    a ``v1`` tag), offline."""
    cache = tmp_path / "hf" / "hub"
    repo = cache / f"models--{REPO.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    shutil.copytree(models.demo_model_path(), snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    (repo / "refs" / "v1").write_text(COMMIT + "\n")
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # HF_HOME/hub, as huggingface_hub
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return snapshot


def test_split_revision_keeps_folders_whole(tmp_path):
    assert models.split_revision(f"{REPO}@v1") == (REPO, "v1")
    assert models.split_revision(REPO) == (REPO, None)
    folder = tmp_path / "sd@local"
    folder.mkdir()
    assert models.split_revision(str(folder)) == (str(folder), None)


@pytest.mark.parametrize("revision", [None, "main", "v1", COMMIT, COMMIT[:10]])
def test_revision_resolves_to_the_cached_commit(fake_hub, revision):
    model = REPO if revision is None else f"{REPO}@{revision}"
    folder = models.resolve_model(model)
    assert folder == str(fake_hub)
    assert models.hub_cache_dir() == fake_hub.parents[2]
    expected = f"{REPO}@{COMMIT}"
    assert models.model_identity(folder) == expected
    # provenance (settings, command line) records the commit, never the cache's path
    assert model_name(folder) == expected
    assert portable_settings({"model": folder, "seed": 1}) == {"model": expected, "seed": 1}
    assert portable_command(f"brainrecon a b participant --model {folder}", None).endswith(
        f"--model {expected}"
    )


def test_loaders_take_a_revision_offline(fake_hub, no_network):
    vae = models.load_vae(f"{REPO}@main", device="cpu")
    assert vae.brainrecon_model_id == f"{REPO}@{COMMIT}"
    reference = models.load_vae(models.demo_model_path(), device="cpu")
    for (name, a), (_, b) in zip(
        vae.state_dict().items(), reference.state_dict().items(), strict=True
    ):
        assert np.array_equal(a.numpy(), b.numpy()), name
    assert no_network == []


@pytest.mark.parametrize("revision", ["unknown", "0" * 40])
def test_unknown_revision_is_refused_offline(fake_hub, revision, no_network):
    with pytest.raises(MissingInputError) as info:
        models.resolve_model(f"{REPO}@{revision}")
    message = str(info.value)
    assert info.value.exit_code == EXIT_NO_INPUT == 66
    assert "\n" not in message
    assert f"{REPO}@{revision}" in message
    assert f"huggingface-cli download {REPO} --revision {revision}" in message
    with pytest.raises(MissingInputError, match="huggingface-cli download"):
        models.load_text_encoder(f"{REPO}@{revision}", device="cpu")
    assert no_network == []


def test_cli_refuses_an_uncached_revision_before_writing(fake_hub, tmp_path, capsys):
    from nipype_brainrecon.bids_app.cli import main

    bids = tmp_path / "bids"
    bids.mkdir()
    (bids / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.10.0"}')
    out = tmp_path / "out"
    work = tmp_path / "work"
    argv = [str(bids), str(out), "participant", "--participant-label", "01", "-w", str(work)]
    code = main([*argv, "--model", f"{REPO}@unknown", "--skip-bids-validation"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 66
    assert len(err) == 1 and err[0].startswith("brainrecon: error: --model " + REPO + "@unknown")
    assert "huggingface-cli download" in err[0]
    assert not out.exists() or not any(out.iterdir())  # at most the empty folder
    assert not work.exists()


def test_local_folder_identity_follows_its_weights(tmp_path):
    folder = tmp_path / "my-model"
    shutil.copytree(models.demo_model_path(), folder)
    first = models.model_identity(folder)
    name, _, digest = first.partition("@sha256:")
    assert name == "my-model" and len(digest) == 16
    assert models.resolve_model(folder) == str(folder.absolute())
    assert model_name(str(folder)) == first
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # one bit of one weight
    weights.write_bytes(bytes(data))
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    second = models.model_identity(folder)
    assert second.startswith("my-model@sha256:") and second != first
    data[-1] ^= 0x01  # the same bytes again: the same identity
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000))
    assert models.model_identity(folder) == first


def test_device_record_on_cpu():
    import torch

    assert models.device_record("cpu") == {
        "Device": "cpu",
        "TorchVersion": torch.__version__,
        "CUDAVersion": torch.version.cuda,
    }


def test_reconstruction_sidecar_records_model_and_device(fake_hub, tmp_path, monkeypatch):
    """Reconstruct (from ID@main) -> ConcatenateImages -> the metrics sidecar: the commit, the
    device and the versions; the same bytes when rerun on this machine."""
    import torch

    from nipype_brainrecon.derivatives import stage_reconstructions
    from nipype_brainrecon.interfaces.reconstruction import ConcatenateImages, Reconstruct

    snapshot = models.resolve_model(f"{REPO}@main")
    side = models.native_resolution(snapshot) // 8
    hidden = json.loads((fake_hub / "text_encoder" / "config.json").read_text())["hidden_size"]
    rng = np.random.default_rng(0)
    np.save(tmp_path / "z.npy", rng.normal(size=(1, 4, side, side)).astype(np.float32))
    np.save(tmp_path / "c.npy", rng.normal(size=(1, 77, hidden)).astype(np.float32))
    pd.DataFrame({"stim_id": ["a"]}).to_csv(tmp_path / "stimuli.tsv", sep="\t", index=False)
    monkeypatch.chdir(tmp_path)

    def reconstruct(name):
        node = tmp_path / name
        node.mkdir()
        monkeypatch.chdir(node)
        result = Reconstruct(
            z_file=str(tmp_path / "z.npy"),
            c_file=str(tmp_path / "c.npy"),
            stimuli_file=str(tmp_path / "stimuli.tsv"),
            model=snapshot,
            n_samples=1,
            num_inference_steps=2,
            strength=0.5,
            device="cpu",
        ).run()
        return result.outputs

    part = reconstruct("recon")
    record = json.loads((Path(part.images_file).with_suffix(".json")).read_text())
    expected = {
        "Model": f"{REPO}@{COMMIT}",
        "Device": "cpu",
        "TorchVersion": torch.__version__,
        "CUDAVersion": torch.version.cuda,
    }
    assert record == expected
    (tmp_path / "concat").mkdir()
    monkeypatch.chdir(tmp_path / "concat")
    joined = ConcatenateImages(
        images_files=[part.images_file], stimuli_files=[part.stimuli_file]
    ).run()
    pd.DataFrame({"metric": ["x"], "value": [0.5]}).to_csv(tmp_path / "m.tsv", sep="\t")

    def sidecar(staging):
        files, _ = stage_reconstructions(
            tmp_path / staging,
            output_dir=tmp_path / "out",
            subject="01",
            images_file=joined.outputs.images_file,
            images_stimuli_file=joined.outputs.stimuli_file,
            stim_files={"a": str(tmp_path / "a.png")},
            metrics_file=str(tmp_path / "m.tsv"),
            test_stimuli_file=str(tmp_path / "stimuli.tsv"),
            split_info={},
            settings={"model": snapshot, "seed": 42},
        )
        name = next(k for k in files if k.endswith("_metrics.json"))
        return Path(files[name]).read_bytes()

    first = sidecar("stage1")
    content = json.loads(first)
    assert {k: content[k] for k in expected} == expected
    assert content["Settings"]["model"] == f"{REPO}@{COMMIT}"
    assert str(tmp_path) not in first.decode()
    assert sidecar("stage2") == first  # a rerun on this machine: the same bytes
    # two chunks that ran on different devices keep both
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**expected, "Device": "cuda:0 NVIDIA H100 80GB HBM3"}))
    from nipype_brainrecon.interfaces.reconstruction import merge_model_records

    merged = merge_model_records([Path(part.images_file).with_suffix(".json"), other])
    assert merged["Device"] == ["cpu", "cuda:0 NVIDIA H100 80GB HBM3"]
    assert merged["Model"] == expected["Model"]


def test_unpinned_uncached_id_is_refused_before_the_run(fake_hub, no_network):
    """Without ``@REVISION`` too, an id missing from the offline cache is refused when it is
    resolved (before any node runs), naming how to fetch it; loading it fails as it always did."""
    with pytest.raises(MissingInputError) as refused:
        models.resolve_model("brainrecon-tests/elsewhere")
    assert str(refused.value).startswith("--model brainrecon-tests/elsewhere: ")
    assert "huggingface-cli download brainrecon-tests/elsewhere --revision main" in str(
        refused.value
    )
    with pytest.raises(MissingInputError, match="not in the local Hugging Face cache"):
        models.load_vae("brainrecon-tests/elsewhere", device="cpu")
    assert no_network == []


def test_device_record_names_the_gpu(monkeypatch):
    """No GPU here: torch's CUDA queries are stood in for, as an H100 machine answers them."""
    import torch

    names = {0: "NVIDIA H100 80GB HBM3", 1: "NVIDIA A100-SXM4-40GB"}
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: names[index])
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    assert models.device_record("cuda") == {
        "Device": "cuda:0 NVIDIA H100 80GB HBM3",
        "TorchVersion": torch.__version__,
        "CUDAVersion": "12.4",
    }
    assert models.device_record(torch.device("cuda", 1))["Device"] == "cuda:1 NVIDIA A100-SXM4-40GB"
