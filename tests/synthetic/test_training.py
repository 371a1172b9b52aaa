"""Training the demo model (nipype_brainrecon.synthetic.training) at tiny sizes: it learns, reproducibly."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from safetensors.torch import load_file  # noqa: E402

from nipype_brainrecon.diffusion import models  # noqa: E402
from nipype_brainrecon.errors import OutputError, UsageError  # noqa: E402
from nipype_brainrecon.synthetic import training  # noqa: E402
from nipype_brainrecon.synthetic.stimuli import generate_scenes  # noqa: E402
from nipype_brainrecon.synthetic.training import vae as training_vae  # noqa: E402
from nipype_brainrecon.synthetic.training.optim import lr_factor  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

#: Small enough for seconds per run on two CPU cores; large enough to learn in 60 steps.
TINY_SIZES = {
    "text_hidden_size": 32,
    "text_layers": 1,
    "text_heads": 2,
    "text_intermediate_size": 64,
    "unet_block_channels": (32, 32),
    "unet_norm_groups": 8,
    "vae_block_channels": (8, 8, 16, 16),
    "vae_norm_groups": 4,
}


def tiny_config(**overrides) -> training.DemoTrainingConfig:
    settings = dict(
        seed=3,
        resolution=32,
        sizes=TINY_SIZES,
        n_scenes=48,
        vae_steps=60,
        vae_batch_size=4,
        vae_lr=3e-3,
        foreground_weight=1.0,  # 60 steps learn the background first; weighting is tested below
        unet_steps=40,
        unet_batch_size=8,
        unet_lr=2e-3,
        warmup_steps=5,
        ema_decay=0.9,
        log_every=10,
        threads=1,
    )
    settings.update(overrides)
    return training.DemoTrainingConfig(**settings)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The same tiny configuration trained twice into two folders."""
    root = tmp_path_factory.mktemp("train")
    cfg = tiny_config()
    reports = [training.train_demo_model(root / f"run{i}", cfg) for i in (1, 2)]
    return root / "run1", root / "run2", reports


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    out = {}
    for part in ("vae", "unet", "text_encoder"):
        files = sorted((folder / part).glob("*.safetensors"))
        assert len(files) == 1, files
        for key, value in load_file(files[0]).items():
            out[f"{part}.{key}"] = value
    return out


def test_training_lowers_held_out_losses(two_runs):
    _, _, (report, _) = two_runs
    m = report.metrics
    print(
        f"VAE PSNR {m['vae_psnr_before']:.2f} -> {m['vae_psnr']:.2f} dB; "
        f"diffusion loss {m['diffusion_val_loss_before']:.4f} -> {m['diffusion_val_loss_after']:.4f}"
    )
    assert report.vae.steps == 60 and report.unet.steps == 40
    assert not report.vae.stopped_by_time and not report.unet.stopped_by_time
    # Held-out figures with fixed noise, before vs after: training must have improved them.
    assert m["vae_psnr"] > m["vae_psnr_before"] + 2.0
    assert m["diffusion_val_loss_after"] < 0.9 * m["diffusion_val_loss_before"]
    # The recorded training losses fall too (first interval vs last).
    assert report.vae.losses[-1][1] < report.vae.losses[0][1]
    assert report.unet.losses[-1][1] < report.unet.losses[0][1]


def test_training_is_reproducible_from_the_seed(two_runs):
    first, second, (r1, r2) = two_runs
    w1, w2 = _weights(first), _weights(second)
    assert w1.keys() == w2.keys()
    for key in w1:
        assert torch.equal(w1[key], w2[key]), key
    assert r1.scaling_factor == r2.scaling_factor
    assert r1.vae.losses == r2.vae.losses and r1.unet.losses == r2.unet.losses


def test_another_seed_gives_other_weights(two_runs, tmp_path):
    first, _, _ = two_runs
    training.train_demo_model(tmp_path / "other", tiny_config(seed=4, vae_steps=5, unet_steps=5))
    w1, w3 = _weights(first), _weights(tmp_path / "other")
    assert not torch.equal(w1["unet.conv_in.weight"], w3["unet.conv_in.weight"])


def test_trained_folder_loads_offline_with_card(two_runs):
    folder, _, (report, _) = two_runs
    pipe = models.load_pipeline(folder, device="cpu")
    assert pipe.vae.config.scaling_factor == pytest.approx(report.scaling_factor)
    # Scaled pool latents have the target std (2 by default).
    target = report.config["latent_std_target"]
    assert report.scaling_factor == pytest.approx(target / report.metrics["latent_std"], rel=1e-4)
    assert pipe.unet.config.sample_size == 4  # 32 px / 8
    assert not list(folder.rglob("*.bin")) and not list(folder.rglob("*.pt"))
    card = (folder / "README.md").read_text()
    for needle in ("license: apache-2.0", "## Architecture", "## Training data", "Seed **3**"):
        assert needle in card
    meta = json.loads((folder / "brainrecon_model.json").read_text())
    assert meta["training"]["config"]["seed"] == 3
    assert meta["training"]["unet"]["steps"] == 40


def test_training_scenes_are_held_out_from_small_seeds():
    train = training.training_scenes(200, seed=0)
    assert train == training.training_scenes(200, seed=0)
    for seed in range(3):
        assert not set(train) & set(generate_scenes(200, seed=seed))
    assert not set(train) & set(training.training_scenes(200, seed=0, stream="held-out"))


def test_images_and_captions_for_training():
    scenes = training.training_scenes(3, seed=1)
    images = training.render_images(scenes, 32)
    assert images.shape == (3, 3, 32, 32) and images.dtype == np.uint8
    x = training.images_to_tensor(images)
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    captions = training.scene_caption_table(scenes)
    assert [len(c) for c in captions] == [6, 6, 6]
    # Every caption names the colour of the scene's first object.
    assert all(scenes[i].objects[0].colour in c for i in range(3) for c in captions[i])


def test_foreground_weights_favour_object_pixels():
    scenes = training.training_scenes(4, seed=2)
    images = training.render_images(scenes, 32)
    w = training_vae._foreground_weights(images, scenes, 5.0).numpy()
    assert w.shape == (4, 1, 32, 32)
    np.testing.assert_allclose(w.mean(axis=(1, 2, 3)), 1.0, rtol=1e-5)
    for k, scene in enumerate(scenes):
        # The pixel at the first object's centre is an object pixel; a corner is background
        # (objects never reach the corners).
        obj = scene.objects[0]
        y, x = int(obj.y * 31), int(obj.x * 31)
        assert w[k, 0, y, x] == pytest.approx(5.0 * w[k, 0, 0, 0], rel=1e-5)
    flat = training_vae._foreground_weights(images, scenes, 1.0).numpy()
    np.testing.assert_allclose(flat, 1.0)


def test_lr_schedule_warms_up_and_decays():
    factors = [lr_factor(s, 100, 10) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0)
    assert factors[-1] == pytest.approx(0.1, abs=1e-3)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))


@pytest.mark.parametrize(
    "field, value",
    [("resolution", 60), ("vae_steps", -1), ("caption_dropout", 1.5), ("max_minutes", 0.0)],
)
def test_bad_settings_are_usage_errors(field, value):
    with pytest.raises(UsageError, match=field):
        training.DemoTrainingConfig(**{field: value})


def test_time_cap_stops_and_is_recorded(tmp_path):
    cfg = tiny_config(vae_steps=100000, unet_steps=100000, max_minutes=0.05, n_scenes=8)
    report = training.train_demo_model(tmp_path / "capped", cfg)
    assert report.vae.stopped_by_time and report.unet.stopped_by_time
    assert 0 < report.vae.steps < 100000
    assert "Stopped by the time cap" in (tmp_path / "capped" / "README.md").read_text()


def _cli():
    spec = importlib.util.spec_from_file_location(
        "train_cli", REPO / "tools" / "train_demo_model.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_trains_and_refuses_to_overwrite(tmp_path, capsys):
    cli = _cli()
    args = [str(tmp_path / "m"), "--resolution", "32", "--n-scenes", "8", "--threads", "1"]
    args += ["--vae-steps", "1", "--unet-steps", "1", "--seed", "5"]
    assert cli.main(args) == 0
    assert (tmp_path / "m" / "model_index.json").is_file()
    assert "saved" in capsys.readouterr().out
    assert cli.main(args) == OutputError.exit_code
    assert "already exists" in capsys.readouterr().err
    assert cli.main([str(tmp_path / "n"), "--resolution", "30"]) == UsageError.exit_code
