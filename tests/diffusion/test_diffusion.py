"""Image reconstruction by img2img diffusion (nipype_brainrecon.diffusion) on tiny SD-v1-shaped models.

The model keeps SD v1's interface shapes (77 x 768 text states, 4-channel latents, VAE factor 8,
scaling 0.18215) with tiny widths and a 64 px native size, so the SD v1 code path runs in
seconds on a CPU. z is given at the paper's 320 px size (4 x 40 x 40).
"""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")
Image = pytest.importorskip("PIL.Image")

from nipype_brainrecon import diffusion  # noqa: E402
from nipype_brainrecon.diffusion import models  # noqa: E402
from nipype_brainrecon.errors import DataError, OutputError, UsageError  # noqa: E402

SCALING = 0.18215
NATIVE = 64  # sample_size 8 x VAE factor 8
FAST = {"num_inference_steps": 5, "progress": False}  # tests not about the step count
ONE = {**FAST, "batch_size": 1}  # tests not about batching either


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (and the machine is shared); restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return models.build_tiny_sd(
        tmp_path_factory.mktemp("models") / "tiny-sd", profile="sd-v1-shapes", seed=0, sample_size=8
    )


@pytest.fixture(scope="module")
def pipe(tiny_model):
    return models.load_pipeline(tiny_model, device="cpu")


@pytest.fixture(scope="module")
def features():
    """Decoded-like z (320 px: 4 x 40 x 40) and c (77 x 768) for three images."""
    rng = np.random.default_rng(7)
    z = rng.standard_normal((3, 4, 40, 40)).astype(np.float32)
    c = rng.standard_normal((3, 77, 768)).astype(np.float32)
    return z, c, ["img01", "img02", "img03"]


def alpha_bar(t: int) -> float:
    """SD v1's scaled-linear schedule, written out: betas = linspace(sqrt b0, sqrt b1)^2."""
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=np.float64) ** 2
    return float(np.cumprod(1.0 - betas)[t])


# ----------------------------------------------------------------------------- SD v1 code path
def test_model_has_sd_v1_interface_shapes(pipe):
    info = models.describe_model(pipe)
    assert (info.max_text_tokens, info.text_hidden_size) == (77, 768)
    assert (info.latent_channels, info.vae_scale_factor) == (4, 8)
    assert info.scaling_factor == pytest.approx(SCALING)
    assert diffusion.native_size(pipe) == (NATIVE, NATIVE)
    assert info.latent_shape(320) == (4, 40, 40)


@pytest.mark.parametrize("mode", ["z+c", "z", "c"])
def test_modes_run_end_to_end(pipe, features, mode):
    z, c, ids = features
    out = diffusion.reconstruct(
        pipe, z[:2], c[:2], stim_ids=ids[:2], mode=mode, n_samples=2, batch_size=4, **FAST
    )
    assert out.shape == (2, 2, NATIVE, NATIVE, 3) and out.dtype == np.uint8
    # Real images, not constant or saturated.
    assert out.std() > 5 and 20 < out.mean() < 235
    # Different samples of one image differ (each has its own noise).
    assert not np.array_equal(out[0, 0], out[0, 1])


def test_output_size_resizes(pipe, features):
    z, c, ids = features
    out = diffusion.reconstruct(
        pipe, z[:1], c[:1], stim_ids=ids[:1], n_samples=1, output_size=32, **ONE
    )
    native = diffusion.reconstruct(pipe, z[:1], c[:1], stim_ids=ids[:1], n_samples=1, **ONE)
    assert out.shape == (1, 1, 32, 32, 3)
    expected = np.asarray(Image.fromarray(native[0, 0]).resize((32, 32), Image.Resampling.LANCZOS))
    np.testing.assert_array_equal(out[0, 0], expected)


def test_flattened_inputs_are_unflattened(pipe, features):
    z, c, ids = features
    ref = diffusion.reconstruct(pipe, z[:1], c[:1], stim_ids=ids[:1], n_samples=1, **ONE)
    flat = diffusion.reconstruct(
        pipe, z[:1].reshape(1, -1), c[:1].reshape(1, -1), stim_ids=ids[:1], n_samples=1, **ONE
    )
    np.testing.assert_array_equal(ref, flat)


# ----------------------------------------------------------------------------- seeds and batching
def test_same_seed_identical_other_seed_differs(pipe, features):
    z, c, ids = features
    kw = {"stim_ids": ids[:2], "n_samples": 2, "batch_size": 3, **FAST}
    a = diffusion.reconstruct(pipe, z[:2], c[:2], seed=42, **kw)
    b = diffusion.reconstruct(pipe, z[:2], c[:2], seed=42, **kw)
    other = diffusion.reconstruct(pipe, z[:2], c[:2], seed=43, **kw)
    np.testing.assert_array_equal(a, b)
    changed = (a != other).mean()
    print(f"seed 42 vs 43: {changed:.1%} of pixel values differ")
    assert changed > 0.5


@pytest.mark.parametrize("mode", ["z+c", "c"])
def test_one_image_alone_equals_it_in_a_batch(pipe, features, mode):
    z, c, ids = features
    # 3 images x 3 samples = 9 rows in batches of 4: image 2 / sample 2 is row 0 of the 3rd batch,
    # image 1 / sample 1 the 1st row of the second one; alone, each is row 0 of a padded batch.
    full = diffusion.reconstruct(
        pipe, z, c, stim_ids=ids, mode=mode, n_samples=3, batch_size=4, **FAST
    )
    for i, s in ((2, 2), (1, 1), (0, 2)):
        alone = diffusion.reconstruct(
            pipe, z[i : i + 1], c[i : i + 1], stim_ids=[ids[i]], mode=mode, n_samples=3,
            sample_indices=[s], batch_size=4, **FAST,
        )  # fmt: skip
        np.testing.assert_array_equal(alone[0, 0], full[i, s])
    # Reordering the images does not change any image either (ids, not positions, seed noise).
    rev = diffusion.reconstruct(
        pipe, z[::-1], c[::-1], stim_ids=ids[::-1], mode=mode, n_samples=3, batch_size=4, **FAST
    )
    np.testing.assert_array_equal(rev[::-1], full)


def test_alone_equals_batch_at_default_batch_size(pipe, features):
    z, c, ids = features
    assert diffusion.DEFAULT_BATCH_SIZE == 8
    full = diffusion.reconstruct(pipe, z, c, stim_ids=ids, n_samples=2, **FAST)
    alone = diffusion.reconstruct(
        pipe, z[2:], c[2:], stim_ids=ids[2:], n_samples=2, sample_indices=[1], **FAST
    )
    np.testing.assert_array_equal(alone[0, 0], full[2, 1])


def test_other_batch_size_changes_at_most_last_bits(pipe, features):
    """A different batch size changes float rounding; documented tolerance: +-2 levels, < 1 %."""
    z, c, ids = features
    one = diffusion.reconstruct(pipe, z, c, stim_ids=ids, n_samples=2, batch_size=1, **FAST)
    six = diffusion.reconstruct(pipe, z, c, stim_ids=ids, n_samples=2, batch_size=6, **FAST)
    diff = np.abs(one.astype(np.int16) - six.astype(np.int16))
    print(f"batch 1 vs 6: max |diff| {diff.max()} levels, {(diff > 0).mean():.3%} of values differ")
    assert diff.max() <= 2 and (diff > 0).mean() < 0.01


# ----------------------------------------------------------------------------- the recipe
class UnetSpy:
    """Records the U-Net's inputs and outputs of every call."""

    def __init__(self, unet):
        self.calls: list[dict] = []
        self.handles = [
            unet.register_forward_pre_hook(self.pre, with_kwargs=True),
            unet.register_forward_hook(self.post, with_kwargs=True),
        ]

    def pre(self, module, args, kwargs):
        t = args[1] if len(args) > 1 else kwargs["timestep"]
        states = kwargs["encoder_hidden_states"]
        self.calls.append({"x": args[0].clone(), "t": int(t), "states": states.clone()})

    def post(self, module, args, kwargs, output):
        self.calls[-1]["eps"] = output.sample.clone()

    def remove(self):
        for handle in self.handles:
            handle.remove()


def empty_prompt_states(pipe) -> torch.Tensor:
    ids = pipe.tokenizer(
        "", padding="max_length", max_length=77, truncation=True, return_tensors="pt"
    ).input_ids
    with torch.inference_mode():
        return pipe.text_encoder(ids)[0][0]


def test_paper_recipe_ddim_40_steps_guidance_5(pipe, features, monkeypatch):
    """Strength 0.8 x 50 DDIM steps: 40 two-branch U-Net calls from t=781; each update is DDIM
    (eta 0) on eps_u + 5 (eps_c - eps_u); the init latent is the re-encoded decoded z noised."""
    z, c, ids = features
    decoded = []
    real_decode = pipe.vae.decode

    def spy_decode(x, *args, **kwargs):
        decoded.append(x.clone())
        return real_decode(x, *args, **kwargs)

    monkeypatch.setattr(pipe.vae, "decode", spy_decode)
    spy = UnetSpy(pipe.unet)
    try:
        diffusion.reconstruct(
            pipe, z[:1], c[:1], stim_ids=ids[:1], n_samples=1, batch_size=1, progress=False
        )
    finally:
        spy.remove()
    calls = spy.calls
    assert len(calls) == 40
    assert [k["t"] for k in calls] == list(range(781, 0, -20))
    assert all(k["x"].shape == (2, 4, 8, 8) for k in calls)
    # Branch 0: the empty prompt; branch 1: the decoded c.
    uncond = empty_prompt_states(pipe)
    for k in calls:
        torch.testing.assert_close(k["states"][0], uncond, rtol=0, atol=1e-6)
        torch.testing.assert_close(k["states"][1], torch.from_numpy(c[0]), rtol=0, atol=0)
        assert torch.equal(k["x"][0], k["x"][1])

    # DDIM, eta 0, written out in float64 from the schedule.
    for k, nxt in zip(calls, calls[1:], strict=False):
        eps_u, eps_c = k["eps"][0].double(), k["eps"][1].double()
        eps = eps_u + 5.0 * (eps_c - eps_u)
        a_t, a_prev = alpha_bar(k["t"]), alpha_bar(k["t"] - 20)
        x0 = (k["x"][0].double() - (1 - a_t) ** 0.5 * eps) / a_t**0.5
        expected = a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * eps
        torch.testing.assert_close(nxt["x"][0].double(), expected, rtol=1e-4, atol=1e-4)
    last = calls[-1]
    eps_u, eps_c = last["eps"][0].double(), last["eps"][1].double()
    eps = eps_u + 5.0 * (eps_c - eps_u)
    a_t, a_prev = alpha_bar(1), alpha_bar(0)  # set_alpha_to_one=False: step 0's alpha
    final = (
        a_prev**0.5 * (last["x"][0].double() - (1 - a_t) ** 0.5 * eps) / a_t**0.5
        + (1 - a_prev) ** 0.5 * eps
    )
    # The last VAE decode gets the final latent / scaling factor.
    torch.testing.assert_close(decoded[-1][0].double(), final / SCALING, rtol=1e-4, atol=1e-4)

    # Steps 1-2: z decoded at 320 px first; the init latent (re-encoded at 64 px, posterior
    # sample seeded by the stimulus id, scaled) is noised to t = 781 with the sample's noise.
    torch.testing.assert_close(decoded[0][0], torch.from_numpy(z[0]) / SCALING)
    with torch.inference_mode():
        image = np.clip(real_decode(decoded[0][:1]).sample[0].numpy() / 2 + 0.5, 0, 1)
        image = Image.fromarray((image.transpose(1, 2, 0) * 255).round().astype(np.uint8))
        image = np.asarray(image.resize((NATIVE, NATIVE), Image.Resampling.LANCZOS))
        x = torch.from_numpy(image.transpose(2, 0, 1).astype(np.float32) / 127.5 - 1)[None]
        dist = pipe.vae.encode(x).latent_dist
    g_post = torch.Generator().manual_seed(diffusion.derive_seed(42, ids[0], "posterior"))
    init = (dist.mean[0] + dist.std[0] * torch.randn((4, 8, 8), generator=g_post)) * SCALING
    g_noise = torch.Generator().manual_seed(diffusion.derive_seed(42, ids[0], "noise", 0))
    noise = torch.randn((4, 8, 8), generator=g_noise)
    a = alpha_bar(781)
    torch.testing.assert_close(calls[0]["x"][0], a**0.5 * init + (1 - a) ** 0.5 * noise)


@pytest.mark.parametrize(
    ("mode", "strength", "n_calls", "branches", "first_t"),
    [
        ("z+c", 1.0, 50, 2, 981),
        ("z+c", 0.3, 15, 2, 281),
        ("z", 0.8, 40, 1, 781),
        ("c", 0.8, 50, 2, 981),
    ],
)
def test_step_counts_and_branches(pipe, features, mode, strength, n_calls, branches, first_t):
    z, c, ids = features
    spy = UnetSpy(pipe.unet)
    try:
        diffusion.reconstruct(
            pipe, z[:1], c[:1], stim_ids=ids[:1], mode=mode, strength=strength, n_samples=1,
            batch_size=1, progress=False,
        )  # fmt: skip
    finally:
        spy.remove()
    assert len(spy.calls) == n_calls
    assert spy.calls[0]["t"] == first_t and spy.calls[-1]["t"] == 1
    assert {k["x"].shape[0] for k in spy.calls} == {branches}
    if mode == "z":  # no semantic conditioning: the empty prompt
        torch.testing.assert_close(
            spy.calls[0]["states"][0], empty_prompt_states(pipe), atol=1e-6, rtol=0
        )
    if mode == "c":  # pure noise: the sample's own noise, unscaled (init_noise_sigma 1)
        g = torch.Generator().manual_seed(diffusion.derive_seed(42, ids[0], "noise", 0))
        torch.testing.assert_close(
            spy.calls[0]["x"][0], torch.randn((4, 8, 8), generator=g), rtol=0, atol=0
        )


def test_guidance_scale_one_runs_the_conditional_branch_alone(pipe, features):
    z, c, ids = features
    spy = UnetSpy(pipe.unet)
    try:
        diffusion.reconstruct(
            pipe, z[:1], c[:1], stim_ids=ids[:1], n_samples=1, guidance_scale=1.0, **ONE
        )
    finally:
        spy.remove()
    assert len(spy.calls) == 4 and {k["x"].shape[0] for k in spy.calls} == {1}
    torch.testing.assert_close(spy.calls[0]["states"][0], torch.from_numpy(c[0]), rtol=0, atol=0)


def test_one_unet_call_per_step_per_batch(pipe, features):
    z, c, ids = features
    spy = UnetSpy(pipe.unet)
    try:
        diffusion.reconstruct(pipe, z, c, stim_ids=ids, n_samples=2, batch_size=4, **FAST)
    finally:
        spy.remove()
    # 6 rows in 2 batches of 4 (the second padded), 4 of 5 steps each, 2 branches.
    assert len(spy.calls) == 2 * 4
    assert {k["x"].shape[0] for k in spy.calls} == {8}


def test_z_mode_ignores_c_and_c_mode_ignores_z(pipe, features):
    z, c, ids = features
    kw = {"stim_ids": ids[:1], "n_samples": 1, "batch_size": 1, **FAST}
    z1, c1 = z[:1], c[:1]
    c_other, z_other = c[1:2] * 2.0, -z[1:2]
    z_only = diffusion.reconstruct(pipe, z1, c1, mode="z", **kw)
    np.testing.assert_array_equal(z_only, diffusion.reconstruct(pipe, z1, c_other, mode="z", **kw))
    np.testing.assert_array_equal(z_only, diffusion.reconstruct(pipe, z1, None, mode="z", **kw))
    c_only = diffusion.reconstruct(pipe, z1, c1, mode="c", **kw)
    np.testing.assert_array_equal(c_only, diffusion.reconstruct(pipe, z_other, c1, mode="c", **kw))
    np.testing.assert_array_equal(c_only, diffusion.reconstruct(pipe, None, c1, mode="c", **kw))
    # ... while z+c depends on both.
    both = diffusion.reconstruct(pipe, z1, c1, **kw)
    assert not np.array_equal(both, diffusion.reconstruct(pipe, z1, c_other, **kw))
    assert not np.array_equal(both, diffusion.reconstruct(pipe, z_other, c1, **kw))


def test_components_only_with_given_uncond(pipe, features):
    """No tokenizer/text encoder needed when the empty-prompt embedding is given."""
    z, c, ids = features
    bare = types.SimpleNamespace(unet=pipe.unet, vae=pipe.vae, scheduler=pipe.scheduler)
    uncond = empty_prompt_states(pipe).numpy()
    ref = diffusion.reconstruct(
        pipe, z[:1], c[:1], stim_ids=ids[:1], n_samples=1, batch_size=1, **FAST
    )
    out = diffusion.reconstruct(
        bare,
        z[:1],
        c[:1],
        stim_ids=ids[:1],
        n_samples=1,
        batch_size=1,
        uncond_embedding=uncond,
        **FAST,
    )
    np.testing.assert_array_equal(out, ref)
    with pytest.raises(UsageError, match="uncond_embedding"):
        diffusion.reconstruct(bare, z[:1], c[:1], stim_ids=ids[:1], n_samples=1, **FAST)


def test_decode_latents(pipe, features):
    z, _, _ = features
    images = diffusion.decode_latents(pipe, z, batch_size=2)
    assert images.shape == (3, 320, 320, 3) and images.dtype == np.uint8
    with torch.inference_mode():
        x = pipe.vae.decode(torch.from_numpy(z[2:3]) / SCALING).sample[0].numpy()
    manual = (np.clip(x.transpose(1, 2, 0) / 2 + 0.5, 0, 1) * 255).round().astype(np.uint8)
    # Alone (batch of 1) vs padded batch of 2: rounding may differ by one level.
    assert np.abs(images[2].astype(int) - manual.astype(int)).max() <= 1
    np.testing.assert_array_equal(diffusion.decode_latents(pipe, z[2:], batch_size=2)[0], images[2])
    assert diffusion.decode_latents(pipe, z[:1], batch_size=1, output_size=64).shape == (
        1,
        64,
        64,
        3,
    )


def test_denoising_timesteps(pipe):
    assert diffusion.denoising_timesteps(pipe.scheduler) == list(range(781, 0, -20))
    assert diffusion.denoising_timesteps(pipe.scheduler, 10, 0.5) == [401, 301, 201, 101, 1]
    # floor(100 * 0.29) is 29 despite 0.29 * 100 == 28.999...
    assert len(diffusion.denoising_timesteps(pipe.scheduler, 100, 0.29)) == 29


# ----------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"z": np.zeros((3, 3, 40, 40), np.float32)}, DataError, r"expected .*\(n_images, 4, h, w\).*got \(3, 3, 40, 40\)"),
        ({"z": np.zeros((3, 4, 40), np.float32)}, DataError, r"z: expected .*got \(3, 4, 40\)"),
        ({"z": np.zeros((3, 6399), np.float32)}, DataError, r"z: expected"),
        ({"c": np.zeros((3, 76, 768), np.float32)}, DataError, r"c: expected .*77 tokens x hidden size 768.*got \(3, 76, 768\)"),
        ({"c": np.zeros((3, 77, 512), np.float32)}, DataError, r"c: expected .*got \(3, 77, 512\)"),
        ({"c": np.zeros((2, 77, 768), np.float32)}, DataError, r"z and c: 3 vs 2 images"),
        ({"stim_ids": ["a", "b"]}, DataError, r"stim_ids: 2 ids given for 3 images"),
        ({"stim_ids": ["a", "b", "a"]}, DataError, r"'a' occurs twice"),
        ({"stim_ids": "abc"}, UsageError, r"stim_ids"),
        ({"mode": "zc"}, UsageError, r"mode='zc': unknown; choose one of z\+c, z, c"),
        ({"strength": 0.0}, UsageError, r"strength=0.0: must be in \(0, 1\]"),
        ({"strength": 1.2}, UsageError, r"strength=1.2: must be in \(0, 1\]"),
        ({"strength": 0.01}, UsageError, r"leaves no denoising step"),
        ({"num_inference_steps": 0}, UsageError, r"num_inference_steps=0"),
        ({"n_samples": 0}, UsageError, r"n_samples=0: must be at least 1"),
        ({"batch_size": 0}, UsageError, r"batch_size=0"),
        ({"sample_indices": [5]}, UsageError, r"sample_indices=\[5\]: must be distinct and below"),
        ({"guidance_scale": float("nan")}, UsageError, r"guidance_scale"),
        ({"z": None}, UsageError, r"z: required in mode 'z\+c'"),
        ({"c": None}, UsageError, r"c: required in mode 'z\+c'"),
        ({"mode": "c", "c": None}, UsageError, r"c: required in mode 'c'"),
        ({"uncond_embedding": np.zeros((77, 64))}, DataError, r"uncond_embedding: expected .*\(77, 768\)"),
    ],
)  # fmt: skip
def test_bad_inputs_raise_named_errors(pipe, features, change, error, match):
    z, c, ids = features
    kwargs = {"z": z, "c": c, "stim_ids": ids, **FAST, **change}
    with pytest.raises(error, match=match) as info:
        diffusion.reconstruct(pipe, kwargs.pop("z"), kwargs.pop("c"), **kwargs)
    assert "\n" not in str(info.value)
    assert info.value.exit_code == (65 if error is DataError else 64)


def test_non_finite_latents_raise(pipe, features):
    z, c, ids = features
    bad = z.copy()
    bad[1, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match="z: contains NaN"):
        diffusion.reconstruct(pipe, bad, c, stim_ids=ids, **FAST)


# ----------------------------------------------------------------------------- saving
def test_save_reconstructions(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 3, 16, 16, 3), dtype=np.uint8)
    paths = diffusion.save_reconstructions(
        images, ["nsd-0042", "b 7"], tmp_path / "out", prefix="sub-01_", metadata={"seed": 42}
    )
    names = [p.name for p in paths]
    assert names[0] == "sub-01_stim-nsd0042_sample-0_recon.png"
    assert names[-1] == "sub-01_stim-b7_sample-2_recon.png" and len(names) == 6
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(names)  # no leftovers
    with Image.open(paths[4]) as img:
        np.testing.assert_array_equal(np.asarray(img), images[1, 1])
        assert img.text == {"seed": "42", "stim_id": "b 7", "sample": "1"}
    # Existing files are not overwritten unless asked; nothing is written on refusal.
    before = paths[0].read_bytes()
    with pytest.raises(OutputError, match="already exists"):
        diffusion.save_reconstructions(
            images[:, :, ::-1], ["nsd-0042", "b 7"], tmp_path / "out", prefix="sub-01_"
        )
    assert paths[0].read_bytes() == before
    again = diffusion.save_reconstructions(
        images[:, :1], ["x", "y"], tmp_path / "out", sample_indices=[4], overwrite=True
    )
    assert [p.name for p in again] == ["stim-x_sample-4_recon.png", "stim-y_sample-4_recon.png"]


def test_save_reconstructions_bad_inputs(tmp_path):
    images = np.zeros((2, 1, 8, 8, 3), np.uint8)
    with pytest.raises(DataError, match="expected uint8"):
        diffusion.save_reconstructions(images.astype(np.float32), ["a", "b"], tmp_path)
    with pytest.raises(DataError, match="same file label"):
        diffusion.save_reconstructions(images, ["a-1", "a_1"], tmp_path / "o")
    with pytest.raises(DataError, match="no letters or digits"):
        diffusion.save_reconstructions(images, ["--", "b"], tmp_path / "o")
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- the GPU benchmark
@pytest.fixture(scope="module")
def gpu_bench():
    """benchmarks/gpu_reconstruction.py, imported from its file."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_reconstruction.py"
    spec = importlib.util.spec_from_file_location("gpu_reconstruction", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_benchmark_builds_the_sd_v1_unet(gpu_bench, capsys):
    # Shapes only (meta device): SD v1.x has an 859,520,964-parameter U-Net, an 83,653,863 VAE.
    pipe = gpu_bench.build_pipe(False, "cpu", None, meta=True)
    assert gpu_bench.n_params(pipe.unet) == 859_520_964
    assert gpu_bench.n_params(pipe.vae) == 83_653_863
    assert diffusion.native_size(pipe) == (512, 512)
    assert gpu_bench.main(["--dry-run", "--out", "/nonexistent/x.json"]) == 0
    assert "(16, 32)" in capsys.readouterr().out


def test_gpu_benchmark_tiny_cpu_run(gpu_bench, tmp_path):
    import json

    out = tmp_path / "gpu.json"
    args = ["--device", "cpu", "--tiny", "--steps", "2", "--batch-sizes", "1,2", "--batches", "1"]
    assert gpu_bench.main([*args, "--min-images", "2", "--threads", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [r["batch_size"] for r in result["results"]] == [1, 2]
    assert [r["images"] for r in result["results"]] == [2, 2]
    assert all(r["images_per_s"] > 0 for r in result["results"])
    assert result["results"][0]["speedup_vs_batch_1"] == 1.0
    assert result["native_size"] == [64, 64] and result["recipe"]["denoising_steps"] == 1
    assert "| batch size |" in out.with_suffix(".md").read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
def test_gpu_benchmark_without_gpu_says_so(gpu_bench, tmp_path, capsys):
    assert gpu_bench.main(["--out", str(tmp_path / "g.json")]) == 1
    assert "no CUDA GPU found" in capsys.readouterr().err
    assert not (tmp_path / "g.json").exists()
