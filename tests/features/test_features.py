"""Stimulus features z and c (nipype_brainrecon.features) on a tiny SD-v1-shaped model."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")
Image = pytest.importorskip("PIL.Image")

from nipype_brainrecon import features  # noqa: E402
from nipype_brainrecon.diffusion import models  # noqa: E402
from nipype_brainrecon.errors import DataError, MissingInputError, UsageError  # noqa: E402

SCALING = 0.18215


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return models.build_tiny_sd(tmp_path_factory.mktemp("models") / "tiny-sd", seed=0)


@pytest.fixture(scope="module")
def vae(tiny_model):
    return models.load_vae(tiny_model)


@pytest.fixture(scope="module")
def text_model(tiny_model):
    return models.load_text_encoder(tiny_model)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    """Three small images: RGB 100x90, grayscale 120x120, RGBA 64x80 (resized to 320)."""
    folder = tmp_path_factory.mktemp("stimuli")
    rng = np.random.default_rng(0)
    smooth = np.linspace(0, 255, 90, dtype=np.float32)[None, :, None]
    rgb = np.clip(smooth + rng.normal(0, 30, (100, 90, 3)), 0, 255).astype(np.uint8)
    paths = [folder / "a.png", folder / "b.jpg", folder / "c.png"]
    Image.fromarray(rgb).save(paths[0])
    Image.fromarray(rng.integers(0, 256, (120, 120), dtype=np.uint8), mode="L").save(paths[1])
    Image.fromarray(rng.integers(0, 256, (64, 80, 4), dtype=np.uint8), mode="RGBA").save(paths[2])
    return paths


def manual_z(vae, path: Path, resolution: int) -> np.ndarray:
    """Ground truth: Lanczos resize, [-1, 1], VAE posterior mean times the scaling factor."""
    with Image.open(path) as img:
        rgb = img.convert("RGB").resize((resolution, resolution), Image.Resampling.LANCZOS)
    x = np.asarray(rgb, dtype=np.float32) / 255.0 * 2.0 - 1.0
    tensor = torch.from_numpy(x.transpose(2, 0, 1).copy())[None]
    with torch.inference_mode():
        return (vae.encode(tensor).latent_dist.mean[0] * SCALING).numpy()


def manual_c(text_model, captions: list[str]) -> np.ndarray:
    tok, enc = text_model
    ids = tok(
        captions, padding="max_length", max_length=77, truncation=True, return_tensors="pt"
    ).input_ids
    with torch.inference_mode():
        return enc(ids)[0].mean(dim=0).numpy()


@pytest.fixture
def count_vae(vae, monkeypatch):
    calls = []
    original = vae.encode

    def counting(x, *args, **kwargs):
        calls.append(x.shape[0])
        return original(x, *args, **kwargs)

    monkeypatch.setattr(vae, "encode", counting)
    return calls


@pytest.fixture
def count_text(text_model):
    calls = []
    handle = text_model[1].register_forward_hook(lambda mod, inp, out: calls.append(1))
    yield calls
    handle.remove()


# --------------------------------------------------------------------------- z
def test_load_image_array_range_and_layout(tmp_path):
    path = tmp_path / "half.png"
    pixels = np.zeros((10, 20, 3), np.uint8)
    pixels[:, 10:] = 255
    Image.fromarray(pixels).save(path)
    arr = features.load_image_array(path, 16)
    assert arr.shape == (3, 16, 16) and arr.dtype == np.float32
    assert arr[:, :, 0] == pytest.approx(-1.0) and arr[:, :, -1] == pytest.approx(1.0)
    assert arr.min() >= -1.0 - 1e-6 and arr.max() <= 1.0 + 1e-6


def test_z_matches_manual_vae_encoding(vae, images):
    z = features.encode_images_z(images, vae, resolution=320, batch_size=8, progress=False)
    assert z.shape == (3, 4, 40, 40) and z.dtype == np.float32
    truth = np.stack([manual_z(vae, p, 320) for p in images])
    err = np.abs(z - truth).max()
    print(f"z vs manual vae.encode: max abs diff {err:.2e}, z sd {z.std():.4f}")
    np.testing.assert_allclose(z, truth, rtol=1e-4, atol=1e-5)
    # the scaling factor is applied: z / 0.18215 is the raw posterior mean
    with torch.inference_mode():
        x = torch.from_numpy(features.load_image_array(images[0], 320))[None]
        raw = vae.encode(x).latent_dist.mean[0].numpy()
    np.testing.assert_allclose(z[0] / SCALING, raw, rtol=1e-4, atol=1e-4)
    assert not np.allclose(z[0], raw, atol=1e-3)
    z64 = features.encode_images_z(images[:1], vae, resolution=64, progress=False)
    assert z64.shape == (1, 4, 8, 8)


def test_z_cache_skips_the_encoder_and_model_loading(vae, images, tmp_path, count_vae):
    cache = tmp_path / "cache"
    first = features.encode_images_z(images, vae, batch_size=2, cache_dir=cache, progress=False)
    assert count_vae == [2, 1]
    second = features.encode_images_z(images, vae, batch_size=2, cache_dir=cache, progress=False)
    assert count_vae == [2, 1]  # no new encoder call
    np.testing.assert_array_equal(first, second)

    def must_not_load():
        raise AssertionError("model loaded on a full cache hit")

    third = features.encode_images_z(
        images, must_not_load, cache_dir=cache, model_id=vae.brainrecon_model_id, progress=False
    )
    np.testing.assert_array_equal(first, third)
    files = sorted(p for p in cache.rglob("*") if p.is_file())
    assert len(files) == 3 and all(p.suffix == ".npy" for p in files)
    assert not [p for p in files if p.name.startswith(".")]  # no temp leftovers
    loaded = np.load(files[0], allow_pickle=False)
    assert loaded.shape == (4, 40, 40) and loaded.dtype == np.float32


def test_z_cache_is_keyed_by_content_resolution_and_model(vae, images, tmp_path, count_vae):
    cache = tmp_path / "cache"
    base = features.encode_images_z(images[:1], vae, cache_dir=cache, progress=False)
    assert len(count_vae) == 1
    renamed = tmp_path / "elsewhere" / "renamed.png"
    renamed.parent.mkdir()
    shutil.copyfile(images[0], renamed)
    same = features.encode_images_z([renamed], vae, cache_dir=cache, progress=False)
    assert len(count_vae) == 1  # hit: same bytes, other name
    np.testing.assert_array_equal(base, same)

    pixels = np.asarray(Image.open(renamed)).copy()
    pixels[0, 0] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(renamed)
    changed = features.encode_images_z([renamed], vae, cache_dir=cache, progress=False)
    assert len(count_vae) == 2  # miss: other pixels
    assert not np.array_equal(base, changed)

    features.encode_images_z(images[:1], vae, resolution=64, cache_dir=cache, progress=False)
    assert len(count_vae) == 3  # miss: other resolution
    features.encode_images_z(
        images[:1], vae, cache_dir=cache, model_id="another-model", progress=False
    )
    assert len(count_vae) == 4  # miss: other model


def test_z_batching_matches_one_at_a_time(vae, images):
    one = features.encode_images_z(images, vae, batch_size=1, progress=False)
    many = features.encode_images_z(images, vae, batch_size=3, progress=False)
    diff = np.abs(one - many).max()
    print(f"z batch 1 vs 3: max abs diff {diff:.2e}")
    np.testing.assert_allclose(one, many, rtol=1e-4, atol=1e-5)


def test_z_posterior_sample_is_seeded_per_image(vae, images):
    mean = features.encode_images_z(images, vae, progress=False)
    s1 = features.encode_images_z(images, vae, posterior="sample", seed=1, progress=False)
    s1b = features.encode_images_z(
        images[::-1], vae, posterior="sample", seed=1, batch_size=1, progress=False
    )
    s2 = features.encode_images_z(images, vae, posterior="sample", seed=2, progress=False)
    np.testing.assert_allclose(s1, s1b[::-1], rtol=1e-4, atol=1e-5)
    assert not np.allclose(s1, s2)
    # sample = mean + std * N(0, 1), all scaled: the standardised residual is standard normal
    with torch.inference_mode():
        x = torch.from_numpy(np.stack([features.load_image_array(p, 320) for p in images]))
        std = vae.encode(x).latent_dist.std.numpy()
    eps = (s1 - mean) / (SCALING * std)
    print(f"sample residual: mean {eps.mean():.3f}, sd {eps.std():.3f} over {eps.size} values")
    assert abs(eps.mean()) < 0.05 and abs(eps.std() - 1.0) < 0.05


def test_z_lazy_loading_from_folder(tiny_model, images, tmp_path):
    z = features.encode_images_z(images[:1], tiny_model, cache_dir=tmp_path, progress=False)
    assert z.shape == (1, 4, 40, 40)
    hit = features.encode_images_z(
        images[:1],
        lambda: pytest.fail("loader called"),
        cache_dir=tmp_path,
        model_id=models.model_identity(tiny_model, ("vae",)),
        progress=False,
    )
    np.testing.assert_array_equal(z, hit)


def test_z_errors_name_the_file(vae, images, tmp_path, tiny_model):
    missing = tmp_path / "gone.png"
    with pytest.raises(MissingInputError, match="gone.png"):
        features.encode_images_z([images[0], missing], vae, progress=False)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(DataError, match="corrupt.png") as info:
        features.encode_images_z([images[0], corrupt], lambda: pytest.fail("loaded"), model_id="m")
    assert info.value.exit_code == 65
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(images[1].read_bytes()[:200])
    with pytest.raises(DataError, match="truncated.jpg"):
        features.encode_images_z([truncated], vae, progress=False)
    no_vae = tmp_path / "no-vae"
    shutil.copytree(tiny_model, no_vae)
    shutil.rmtree(no_vae / "vae")
    with pytest.raises(MissingInputError, match="'vae'") as info:
        features.encode_images_z(images[:1], no_vae, progress=False)
    assert str(no_vae) in str(info.value)
    with pytest.raises(UsageError, match="resolution=321"):
        features.encode_images_z(images, vae, resolution=321)
    with pytest.raises(UsageError, match="model_id"):
        features.encode_images_z(images, lambda: vae, cache_dir=tmp_path)
    with pytest.raises(UsageError, match="posterior"):
        features.encode_images_z(images, vae, posterior="mode")


# --------------------------------------------------------------------------- c
CAPTIONS = {
    "a.png": ["A cat sitting on a mat.", "A small cat.", "Cat on a red mat"],
    "b.jpg": ["Two dogs play in the park"],
    "c.png": "A single caption given as a string",
}


def test_c_matches_manual_text_encoding(text_model):
    tok, enc = text_model
    c = features.encode_captions_c(CAPTIONS, tok, enc, batch_size=4, progress=False)
    assert c.shape == (3, 77, 768) and c.dtype == np.float32
    truth = np.stack(
        [manual_c(text_model, [v] if isinstance(v, str) else v) for v in CAPTIONS.values()]
    )
    err = np.abs(c - truth).max()
    print(f"c vs manual text encoder mean: max abs diff {err:.2e}")
    np.testing.assert_allclose(c, truth, rtol=1e-5, atol=1e-5)
    # averaging over captions differs from any single caption's embedding
    single = manual_c(text_model, CAPTIONS["a.png"][:1])
    assert not np.allclose(c[0], single, atol=1e-3)


def test_c_equals_the_pipelines_own_prompt_encoding(tiny_model, text_model):
    pipe = models.load_pipeline(tiny_model)
    with torch.inference_mode():
        cond, uncond = pipe.encode_prompt(
            "a cat on a mat",
            device="cpu",
            num_images_per_prompt=1,
            do_classifier_free_guidance=True,
            negative_prompt="",
        )
    tok, enc = text_model
    c = features.encode_captions_c([["a cat on a mat"]], tok, enc, progress=False)
    empty = features.empty_prompt_embedding(tok, enc)
    assert empty.shape == (77, 768)
    np.testing.assert_allclose(c[0], cond[0].numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(empty, uncond[0].numpy(), rtol=1e-5, atol=1e-5)
    assert not np.allclose(empty, c[0], atol=1e-3)


def test_c_cache_and_batching(text_model, tmp_path, count_text):
    tok, enc = text_model
    cache = tmp_path / "cache"
    first = features.encode_captions_c(
        CAPTIONS, tok, enc, batch_size=1, cache_dir=cache, progress=False
    )
    n_calls = len(count_text)
    assert n_calls == 5  # one caption per call
    again = features.encode_captions_c(
        CAPTIONS,
        lambda: pytest.fail("tokenizer loaded"),
        lambda: pytest.fail("loaded"),
        cache_dir=cache,
        model_id=enc.brainrecon_model_id,
        progress=False,
    )
    assert len(count_text) == n_calls
    np.testing.assert_array_equal(first, again)
    batched = features.encode_captions_c(CAPTIONS, tok, enc, batch_size=16, progress=False)
    assert len(count_text) == n_calls + 1
    diff = np.abs(first - batched).max()
    print(f"c batch 1 vs 16: max abs diff {diff:.2e}")
    np.testing.assert_allclose(first, batched, rtol=1e-5, atol=1e-5)

    edited = dict(CAPTIONS, **{"b.jpg": ["Two dogs play in a park"]})
    out = features.encode_captions_c(edited, tok, enc, cache_dir=cache, progress=False)
    assert len(count_text) == n_calls + 2  # only the edited image is encoded
    np.testing.assert_array_equal(out[[0, 2]], first[[0, 2]])
    assert not np.allclose(out[1], first[1], atol=1e-4)


def test_c_lazy_loading_from_folder(tiny_model, text_model, tmp_path):
    c = features.encode_captions_c(
        [["a cat"]], text_encoder=tiny_model, cache_dir=tmp_path, progress=False
    )
    np.testing.assert_allclose(c[0], manual_c(text_model, ["a cat"]), rtol=1e-5, atol=1e-5)
    empty = features.empty_prompt_embedding(text_encoder=tiny_model, cache_dir=tmp_path)
    np.testing.assert_allclose(empty, manual_c(text_model, [""]), rtol=1e-5, atol=1e-5)


def test_c_errors_name_the_image(text_model, tmp_path, tiny_model):
    tok, enc = text_model
    with pytest.raises(DataError, match="b.jpg: no captions"):
        features.encode_captions_c({"a.png": ["a cat"], "b.jpg": []}, tok, enc)
    with pytest.raises(DataError, match="stim-2.png: no captions"):
        features.encode_captions_c(
            [["a"], ["b"], ["  "]], tok, enc, names=["stim-0.png", "stim-1.png", "stim-2.png"]
        )
    with pytest.raises(DataError, match="image #1"):
        features.encode_captions_c([["a"], [None]], tok, enc)
    no_text = tmp_path / "no-text"
    shutil.copytree(tiny_model, no_text)
    shutil.rmtree(no_text / "text_encoder")
    with pytest.raises(MissingInputError, match="'text_encoder'"):
        features.encode_captions_c([["a cat"]], text_encoder=no_text)
