"""Model building and offline loading (nipype_brainrecon.diffusion.models) on a tiny SD-shaped model."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from nipype_brainrecon.diffusion import identity, loading, models  # noqa: E402
from nipype_brainrecon.errors import MissingInputError, OutputError, UsageError  # noqa: E402


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """An ``sd-v1-shapes`` model written once for this module."""
    return models.build_tiny_sd(tmp_path_factory.mktemp("models") / "tiny-sd", seed=0)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[:2]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture(scope="module")
def pipe(tiny_model):
    return models.load_pipeline(tiny_model)


# --------------------------------------------------------------------------- tokenizer
def test_bytes_to_unicode_matches_byte_level_alphabet():
    from tokenizers import pre_tokenizers

    table = models.bytes_to_unicode()
    assert sorted(table) == list(range(256))
    assert len(set(table.values())) == 256
    assert set(table.values()) == set(pre_tokenizers.ByteLevel.alphabet())
    assert table[ord("A")] == "A" and table[ord("~")] == "~"
    # Non-printable bytes are shifted past U+00FF in order: byte 0 is the first, space the 33rd.
    assert table[0] == chr(256) and table[ord(" ")] == chr(256 + 32)
    assert all(not ch.isspace() for ch in table.values())


def test_byte_tokenizer_round_trips_from_folder(tmp_path):
    from transformers import CLIPTokenizer

    folder = models.build_clip_tokenizer(tmp_path / "tok")
    assert (folder / "merges.txt").read_text() == "#version: 0.2\n"
    tok = CLIPTokenizer.from_pretrained(folder, local_files_only=True)
    assert len(tok) == 514 and tok.model_max_length == 77
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (512, 513, 513)

    ids = tok("A cat!").input_ids
    # words "a", "cat", "!": the last byte of each word carries </w> (+256)
    expected = [512, 256 + ord("a"), ord("c"), ord("a"), 256 + ord("t"), 256 + ord("!"), 513]
    assert ids == expected
    padded = tok("a cat", padding="max_length", max_length=77, truncation=True).input_ids
    assert len(padded) == 77 and padded[5:] == [513] * 72
    assert tok.decode(tok("Café au lait").input_ids, skip_special_tokens=True) == "café au lait"
    long_ids = tok("x" * 200, padding="max_length", max_length=77, truncation=True).input_ids
    assert len(long_ids) == 77 and long_ids[-1] == 513


def test_learn_bpe_merges_hand_example():
    # words: low x3, lower x1 -> pairs (l,o)=4, (o,w</w>)=3, the rest 1 (< min_frequency 2)
    merges = models.learn_bpe_merges(["low low low lower"], n_merges=10)
    assert merges == [("l", "o"), ("lo", "w</w>")]
    assert models.learn_bpe_merges(["low low low lower"], n_merges=1) == [("l", "o")]


def test_learnt_vocabulary_makes_words_single_tokens(tmp_path):
    from transformers import CLIPTokenizer

    captions = [
        "A cat sitting on a mat.",
        "A black cat on the red mat",
        "Two dogs playing with a cat",
        "A dog sitting on the grass.",
    ] * 5
    one = models.build_clip_tokenizer(tmp_path / "a", captions=captions, vocab_size=600)
    two = models.build_clip_tokenizer(tmp_path / "b", captions=captions, vocab_size=600)
    assert (one / "merges.txt").read_text() == (two / "merges.txt").read_text()
    tok = CLIPTokenizer.from_pretrained(one, local_files_only=True)
    assert 514 < len(tok) <= 600
    vocab = tok.get_vocab()
    for word in ("cat</w>", "a</w>", "on</w>", "mat</w>"):
        assert word in vocab
    assert tok("a cat on a mat").input_ids == [
        tok.bos_token_id,
        vocab["a</w>"],
        vocab["cat</w>"],
        vocab["on</w>"],
        vocab["a</w>"],
        vocab["mat</w>"],
        tok.eos_token_id,
    ]
    # unseen words fall back to bytes and still decode exactly
    text = "zebra crossing 42"
    assert tok.decode(tok(text).input_ids, skip_special_tokens=True) == "zebra crossing 4 2"
    with pytest.raises(UsageError, match="vocab_size"):
        models.build_clip_tokenizer(tmp_path / "c", captions=captions, vocab_size=100)


# --------------------------------------------------------------------------- building
def test_build_tiny_sd_writes_a_diffusers_folder(tiny_model):
    index = json.loads((tiny_model / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionImg2ImgPipeline"
    assert index["vae"][1] == "AutoencoderKL"
    assert index["unet"][1] == "UNet2DConditionModel"
    assert index["text_encoder"][1] == "CLIPTextModel"
    assert index["tokenizer"][1] == "CLIPTokenizer"
    assert index["scheduler"][1] == "DDIMScheduler"
    files = [p for p in tiny_model.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in {".bin", ".pt", ".pth", ".pkl", ".ckpt"}]
    for part in ("vae", "unet", "text_encoder"):
        assert list((tiny_model / part).glob("*.safetensors"))
    assert (tiny_model / "tokenizer" / "vocab.json").is_file()
    sched = json.loads((tiny_model / "scheduler" / "scheduler_config.json").read_text())
    for key, value in models.SD_V1_SCHEDULER.items():
        assert sched[key] == value, key
    size_mb = sum(p.stat().st_size for p in files) / 1e6
    print(f"tiny sd-v1-shapes model: {size_mb:.1f} MB")
    assert size_mb < 40
    with pytest.raises(OutputError):
        models.build_tiny_sd(tiny_model)


def test_build_is_seeded_and_leaves_global_rng_alone(tmp_path):
    from safetensors.numpy import load_file

    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    small = {"text_hidden_size": 32, "text_heads": 4}
    a = models.build_tiny_sd(tmp_path / "a", seed=7, **small)
    after = torch.rand(3)
    assert torch.equal(after, expected_next)
    b = models.build_tiny_sd(tmp_path / "b", seed=7, **small)
    c = models.build_tiny_sd(tmp_path / "c", seed=8, **small)
    rel = "vae/diffusion_pytorch_model.safetensors"
    wa, wb, wc = (load_file(str(p / rel)) for p in (a, b, c))
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
    assert any(not np.array_equal(wa[k], wc[k]) for k in wa)
    assert models.model_identity(a) != models.model_identity(c)


def test_profiles_and_size_overrides(tmp_path):
    cfg = models.tiny_sd_config("demo", text_hidden_size=64, vae_block_channels=[32, 32, 32, 32])
    assert cfg.text_hidden_size == 64 and cfg.vae_block_channels == (32, 32, 32, 32)
    assert cfg.vae_scale_factor == 8
    assert models.tiny_sd_config().text_hidden_size == 768
    with pytest.raises(UsageError, match="profile"):
        models.tiny_sd_config("sd-xl")
    with pytest.raises(UsageError, match="not a TinySDConfig field"):
        models.tiny_sd_config(text_width=3)
    with pytest.raises(UsageError, match="multiple of"):
        models.tiny_sd_config(text_hidden_size=100)
    with pytest.raises(UsageError, match="groups"):
        models.tiny_sd_config(vae_block_channels=(12, 12, 12, 12))

    folder = models.build_tiny_sd(
        tmp_path / "demo", profile="demo", text_hidden_size=64, captions=["a cat"] * 3
    )
    pipe = models.load_pipeline(folder)
    info = models.describe_model(pipe)
    assert info.text_shape == (77, 64)
    assert info.latent_shape(128) == (4, 16, 16)
    assert pipe.unet.config.cross_attention_dim == 64
    assert "cat</w>" in pipe.tokenizer.get_vocab()
    assert pipe.text_encoder.config.vocab_size == len(pipe.tokenizer)
    meta = json.loads((folder / "brainrecon_model.json").read_text())
    assert meta["profile"] == "demo" and meta["sizes"]["text_hidden_size"] == 64
    assert meta["vocab_size"] == len(pipe.tokenizer) and meta["vocab_learnt_from_captions"]


# --------------------------------------------------------------------------- loading
def test_load_pipeline_offline_from_folder(tiny_model, monkeypatch, no_network):
    from diffusers import DDIMScheduler, StableDiffusionImg2ImgPipeline

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pipe = models.load_pipeline(tiny_model)
    assert isinstance(pipe, StableDiffusionImg2ImgPipeline)
    assert pipe.safety_checker is None
    assert isinstance(pipe.scheduler, DDIMScheduler)
    cfg = pipe.scheduler.config
    assert (cfg.beta_schedule, cfg.beta_start, cfg.beta_end) == ("scaled_linear", 0.00085, 0.012)
    assert (cfg.clip_sample, cfg.set_alpha_to_one, cfg.steps_offset) == (False, False, 1)
    assert cfg.num_train_timesteps == 1000
    assert pipe.brainrecon_model_id.startswith("tiny-sd@sha256:")
    # the pipeline's parts carry the light loaders' identities (one feature cache for both)
    assert pipe.vae.brainrecon_model_id == models.model_identity(tiny_model, ("vae",))
    assert (
        pipe.text_encoder.brainrecon_model_id
        == models.load_text_encoder(tiny_model)[1].brainrecon_model_id
    )
    # a local folder never reaches the hub, even when HF_HUB_OFFLINE is unset
    monkeypatch.delenv("HF_HUB_OFFLINE")
    models.load_pipeline(str(tiny_model), offline=False)


def test_cpu_defaults_are_float32_and_overridable(tiny_model, pipe):
    if not torch.cuda.is_available():
        assert pipe.device.type == "cpu"
        for part in (pipe.vae, pipe.unet, pipe.text_encoder):
            assert next(part.parameters()).dtype == torch.float32
    assert models.default_device() in {"cpu", "cuda"}
    dev, dt = loading._resolve_device_dtype("cuda", None, half_on_cuda=True)
    assert (dev.type, dt) == ("cuda", torch.float16)
    dev, dt = loading._resolve_device_dtype("cuda", None, half_on_cuda=False)
    assert dt == torch.float32
    vae = models.load_vae(tiny_model, device="cpu", dtype="bfloat16")
    assert vae.dtype == torch.bfloat16
    with pytest.raises(UsageError, match="dtype"):
        models.load_vae(tiny_model, dtype="float99")


def test_describe_model_matches_forward_shapes(pipe):
    info = models.describe_model(pipe)
    assert info.latent_shape(320) == (4, 40, 40)
    assert info.latent_shape(512) == (4, 64, 64)
    assert info.text_shape == (77, 768)
    assert info.scaling_factor == pytest.approx(0.18215)
    assert info.vae_scale_factor == pipe.vae_scale_factor == 8
    assert info.dtype == "float32"
    with torch.inference_mode():
        z = pipe.vae.encode(torch.zeros(1, 3, 320, 320)).latent_dist.mean
        ids = pipe.tokenizer(
            ["a cat"], padding="max_length", max_length=77, return_tensors="pt"
        ).input_ids
        c = pipe.text_encoder(ids)[0]
    assert tuple(z.shape[1:]) == info.latent_shape(320)
    assert tuple(c.shape[1:]) == info.text_shape
    assert json.loads(json.dumps(info.to_dict()))["model_id"] == info.model_id
    with pytest.raises(UsageError, match="resolution=321"):
        info.latent_shape(321)
    partial = models.describe_model(vae=pipe.vae, model_id="x")
    assert partial.model_id == "x" and partial.text_hidden_size == 0


def test_tiny_pipeline_runs_img2img_deterministically(pipe):
    with torch.inference_mode():
        ids = pipe.tokenizer(
            ["a cat", ""], padding="max_length", max_length=77, return_tensors="pt"
        ).input_ids
        cond, uncond = pipe.text_encoder(ids)[0].chunk(2)
    image = torch.rand(1, 3, 64, 64)

    def run():
        return pipe(
            prompt_embeds=cond,
            negative_prompt_embeds=uncond,
            image=image,
            strength=0.8,
            num_inference_steps=5,
            guidance_scale=5.0,
            generator=torch.Generator().manual_seed(42),
            output_type="np",
        ).images

    pipe.set_progress_bar_config(disable=True)
    first, second = run(), run()
    assert first.shape == (1, 64, 64, 3)
    assert np.isfinite(first).all()
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize(
    "remove",
    ["vae", "unet", "text_encoder", "tokenizer", "scheduler", "model_index.json", "weights"],
)
def test_missing_component_is_named(tiny_model, tmp_path, remove, no_network):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    if remove == "weights":
        (broken / "unet" / "diffusion_pytorch_model.safetensors").unlink()
        expected = "unet"
    elif remove.endswith(".json"):
        (broken / remove).unlink()
        expected = remove
    else:
        shutil.rmtree(broken / remove)
        expected = remove
    with pytest.raises(MissingInputError, match=expected) as info:
        models.load_pipeline(broken)
    assert str(broken) in str(info.value)
    assert info.value.exit_code == 66


def test_light_loaders_need_only_their_parts(tiny_model, tmp_path, no_network):
    from diffusers import AutoencoderKL
    from transformers import CLIPTextModel, CLIPTokenizer

    partial = tmp_path / "text-only"
    shutil.copytree(tiny_model, partial)
    shutil.rmtree(partial / "vae")
    shutil.rmtree(partial / "unet")
    tok, enc = models.load_text_encoder(partial)
    assert isinstance(tok, CLIPTokenizer) and isinstance(enc, CLIPTextModel)
    assert enc.dtype == torch.float32 and not enc.training
    with pytest.raises(MissingInputError, match="'vae'"):
        models.load_vae(partial)
    vae = models.load_vae(tiny_model)
    assert isinstance(vae, AutoencoderKL) and vae.dtype == torch.float32


def test_missing_folder_and_uncached_hub_id(tmp_path, monkeypatch, no_network):
    with pytest.raises(MissingInputError, match="model folder not found"):
        models.load_pipeline(tmp_path / "absent")
    with pytest.raises(MissingInputError, match="model folder not found"):
        models.load_vae("./absent-folder")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingInputError, match="offline"):
        models.load_pipeline("brainrecon-tests/no-such-model")
    with pytest.raises(MissingInputError, match="offline"):
        models.load_vae("brainrecon-tests/no-such-model")
    with pytest.raises(MissingInputError, match="offline"):
        models.load_text_encoder("brainrecon-tests/no-such-model")


def test_model_identity_follows_content(tiny_model, tmp_path):
    copy = tmp_path / "tiny-sd"
    shutil.copytree(tiny_model, copy)
    assert models.model_identity(copy) == models.model_identity(tiny_model)
    assert models.model_identity(copy, ("vae",)) != models.model_identity(copy)
    cfg = copy / "vae" / "config.json"
    cfg.write_text(cfg.read_text().replace("0.18215", "0.5"))
    assert models.model_identity(copy, ("vae",)) != models.model_identity(tiny_model, ("vae",))
    assert models.model_identity(copy, ("unet",)) == models.model_identity(tiny_model, ("unet",))
    assert models.model_identity("CompVis/stable-diffusion-v1-4") == "CompVis/stable-diffusion-v1-4"


def test_model_identity_samples_large_files(tmp_path, monkeypatch):
    monkeypatch.setattr(identity, "_FULL_HASH_LIMIT", 1000)
    monkeypatch.setattr(identity, "_SAMPLE_BYTES", 100)
    folder = tmp_path / "big"
    (folder / "unet").mkdir(parents=True)
    data = bytearray(5000)
    weights = folder / "unet" / "w.safetensors"

    def ident(data):
        weights.write_bytes(bytes(data))
        identity._folder_digest.cache_clear()
        return models.model_identity(folder, ("unet",))

    base = ident(data)
    data[10] = 1  # head
    head = ident(data)
    data[4990] = 1  # tail
    tail = ident(data)
    assert len({base, head, tail}) == 3
    data[2500] = 1  # middle of a large file: not read (the documented trade-off)
    assert ident(data) == tail
    assert ident(data + b"x") != tail  # size is part of the fingerprint
