"""Reconstructing images from decoded latents ``z`` and text embeddings ``c`` (img2img diffusion).

The recipe of Takagi & Nishimoto (2023), each step a parameter of :func:`reconstruct` defaulting
to the paper's value:

1. the decoded ``z`` (scaled VAE latent, 4 x 40 x 40 for SD v1 at 320 px) is decoded by the VAE
   (``z / scaling_factor``) into an 8-bit image,
2. resized (Lanczos) to the model's native size (512 px for SD v1: the U-Net's
   ``sample_size`` times the VAE factor) and re-encoded by the VAE: the *init latent*,
3. noised to ``strength`` (0.8) of a ``num_inference_steps`` (50) DDIM schedule and denoised
   from there with eta 0 (40 U-Net steps),
4. conditioned on the decoded ``c`` (77 x 768 for SD v1) with classifier-free guidance
   (scale 5.0) against the empty-prompt embedding,
5. ``n_samples`` (5) samples per image, decoded to 8-bit RGB.

Modes (the paper's ablations): ``"z+c"`` (the above), ``"z"`` (no semantic conditioning: the
empty prompt conditions the U-Net, so guidance has no effect and only one branch is run) and
``"c"`` (no init image: txt2img from pure noise over all ``num_inference_steps``, ``strength``
ignored).

Reproducibility. All noise is drawn on the CPU from ``torch.Generator`` objects seeded by a
stable hash of ``(seed, stimulus id, sample index)`` (and ``(seed, stimulus id)`` for the
VAE posterior sample of the init latent), then moved to the model's device. Every network call
runs on a batch of exactly ``batch_size`` rows (the last batch is padded by repeating a row), so
an item's numbers do not depend on which other items share its batch: reconstructing one image
(or one sample) alone gives bit-identical pixels to the same image from a larger run with the
same ``batch_size`` on the same device. A different ``batch_size`` changes the kernels' blocking
and so the float32 results in their last bits (see ``docs/reconstruction.md`` for the measured
effect on pixels).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..errors import DataError, OutputError, UsageError
from ..io import atomic_write_bytes

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: Reconstruction modes: both features, ``z`` only (no semantic conditioning), ``c`` only.
MODES = ("z+c", "z", "c")

Mode = Literal["z+c", "z", "c"]

#: The paper's settings (Takagi & Nishimoto 2023), the defaults of :func:`reconstruct`.
PAPER_SETTINGS: dict[str, Any] = {
    "mode": "z+c",
    "n_samples": 5,
    "strength": 0.8,
    "num_inference_steps": 50,
    "guidance_scale": 5.0,
    "seed": 42,
    "eta": 0.0,
    "scheduler": "DDIM",
}

#: Rows per network call by default (images x samples).
DEFAULT_BATCH_SIZE = 8


# --------------------------------------------------------------------------------------------
# Model shapes
# --------------------------------------------------------------------------------------------
class _Shapes:
    """What :func:`reconstruct` needs to know about a pipeline's parts."""

    def __init__(self, pipe: Any) -> None:
        for part in ("unet", "vae", "scheduler"):
            if getattr(pipe, part, None) is None:
                raise UsageError(
                    f"pipe: has no '{part}'; give a Stable Diffusion pipeline "
                    "(nipype_brainrecon.diffusion.models.load_pipeline)"
                )
        unet, vae = pipe.unet, pipe.vae
        self.latent_channels = int(vae.config.latent_channels)
        self.vae_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.scaling = float(vae.config.scaling_factor)
        size = unet.config.sample_size
        side_h, side_w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        self.latent_hw = (side_h, side_w)
        self.native_hw = (side_h * self.vae_factor, side_w * self.vae_factor)
        self.hidden = int(unet.config.cross_attention_dim)
        tokenizer = getattr(pipe, "tokenizer", None)
        encoder = getattr(pipe, "text_encoder", None)
        if tokenizer is not None:
            self.tokens: int | None = int(tokenizer.model_max_length)
        elif encoder is not None:
            self.tokens = int(encoder.config.max_position_embeddings)
        else:
            self.tokens = None  # taken from uncond_embedding
        param = next(unet.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.vae_dtype = next(vae.parameters()).dtype


def native_size(pipe: Any) -> tuple[int, int]:
    """The image size (height, width) the model generates: U-Net sample size x VAE factor.

    512 x 512 for Stable Diffusion v1.
    """
    return _Shapes(pipe).native_hw


def denoising_timesteps(
    scheduler: Any, num_inference_steps: int = 50, strength: float = 0.8
) -> list[int]:
    """The timesteps img2img denoises through: the last ``floor(steps * strength)`` of the schedule.

    Parameters
    ----------
    scheduler : diffusers scheduler
        Its config builds a fresh DDIM scheduler (the given one is not modified).
    num_inference_steps : int
        Length of the full DDIM schedule (50 in the paper).
    strength : float
        Fraction of the schedule that is denoised, in (0, 1] (0.8 in the paper: 40 steps).

    Returns
    -------
    list of int
        Decreasing training timesteps; the first is where the init latent is noised to.

    Examples
    --------
    SD v1's DDIM schedule (1000 training steps, offset 1) at the paper's settings:

    >>> from diffusers import DDIMScheduler
    >>> sched = DDIMScheduler(steps_offset=1, set_alpha_to_one=False, clip_sample=False)
    >>> ts = denoising_timesteps(sched, 50, 0.8)
    >>> len(ts), ts[0], ts[-1]
    (40, 781, 1)
    """
    steps = check_steps(num_inference_steps, strength)
    sched = fresh_ddim(scheduler)
    sched.set_timesteps(int(num_inference_steps))
    return [int(t) for t in sched.timesteps[int(num_inference_steps) - steps :]]


def check_steps(num_inference_steps: int, strength: float) -> int:
    """Number of denoising steps for ``strength``; errors for unusable values."""
    if isinstance(num_inference_steps, bool) or int(num_inference_steps) != num_inference_steps:
        raise UsageError(f"num_inference_steps={num_inference_steps!r}: must be an integer")
    if int(num_inference_steps) < 1:
        raise UsageError(f"num_inference_steps={num_inference_steps}: must be at least 1")
    try:
        strength = float(strength)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"strength={strength!r}: must be a number in (0, 1]") from exc
    if not (0.0 < strength <= 1.0):
        raise UsageError(f"strength={strength}: must be in (0, 1] (the paper uses 0.8)")
    # The tolerance keeps e.g. 0.29 * 100 (= 28.999...) at 29 steps.
    steps = min(int(math.floor(int(num_inference_steps) * strength + 1e-6)), num_inference_steps)
    if steps < 1:
        raise UsageError(
            f"strength={strength} with num_inference_steps={num_inference_steps} leaves no "
            "denoising step; raise either so that their product is at least 1"
        )
    return int(steps)


def fresh_ddim(scheduler: Any) -> Any:
    """A DDIM scheduler with ``scheduler``'s config (the pipeline's is left untouched)."""
    from diffusers import DDIMScheduler

    config = getattr(scheduler, "config", None)
    if config is None:
        raise UsageError("pipe.scheduler: has no config; give a diffusers scheduler")
    return DDIMScheduler.from_config(config)


# --------------------------------------------------------------------------------------------
# Seeds
# --------------------------------------------------------------------------------------------
def derive_seed(seed: int, stim_id: str, purpose: str, sample: int = 0) -> int:
    """A 63-bit seed from the run's seed, a stimulus id, a purpose and a sample index.

    A stable hash (SHA-256), so the value is the same on every machine and Python version, and
    any one image or sample can be regenerated without the others.

    Examples
    --------
    >>> derive_seed(42, "img001", "noise", 0) == derive_seed(42, "img001", "noise", 0)
    True
    >>> derive_seed(42, "img001", "noise", 0) == derive_seed(42, "img001", "noise", 1)
    False
    """
    text = f"brainrecon-reconstruct\0{int(seed)}\0{stim_id}\0{purpose}\0{int(sample)}"
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def seeded_randn(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    import torch

    generator = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn(shape, generator=generator, dtype=torch.float32)


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------
def _as_float_array(value: Any, name: str) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, possibly on a GPU
        value = value.detach().float().cpu().numpy()
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name}: not a numeric array ({exc})") from exc
    if any(stride < 0 for stride in array.strides):  # e.g. x[::-1]: torch cannot view those
        array = array.copy()
    return array


def _check_latents(z: Any, shapes: _Shapes) -> np.ndarray:
    """``z`` as (n, C, h, w) float32; a flattened (n, C * s * s) array is unflattened."""
    array = _as_float_array(z, "z")
    channels = shapes.latent_channels
    if array.ndim == 2 and array.shape[1] % channels == 0:
        side = math.isqrt(array.shape[1] // channels)
        if side > 0 and side * side * channels == array.shape[1]:
            array = array.reshape(array.shape[0], channels, side, side)
    if array.ndim != 4 or array.shape[1] != channels or min(array.shape[2:], default=0) < 1:
        raise DataError(
            f"z: expected latents of shape (n_images, {channels}, h, w) for this model "
            f"(e.g. (n, {channels}, 40, 40) for 320 px images), got {array.shape}; decode z with "
            "the same model's VAE"
        )
    if not np.isfinite(array).all():
        raise DataError("z: contains NaN or infinite values; check the decoder's predictions")
    return array


def _check_embeddings(
    value: Any, name: str, tokens: int, hidden: int, *, single: bool
) -> np.ndarray:
    """Text embeddings as (n, tokens, hidden) float32 (or (tokens, hidden) when ``single``)."""
    array = _as_float_array(value, name)
    expected = (tokens, hidden) if single else ("n_images", tokens, hidden)
    if not single and array.ndim == 2 and array.shape[1] == tokens * hidden:
        array = array.reshape(array.shape[0], tokens, hidden)
    ok = (
        array.shape == (tokens, hidden)
        if single
        else (array.ndim == 3 and array.shape[1:] == (tokens, hidden))
    )
    if not ok:
        raise DataError(
            f"{name}: expected text embeddings of shape {tuple(expected)} for this model "
            f"({tokens} tokens x hidden size {hidden}), got {array.shape}; encode the captions "
            "with the same model's text encoder"
        )
    if not np.isfinite(array).all():
        raise DataError(f"{name}: contains NaN or infinite values; check the decoder's predictions")
    return array


def _check_stim_ids(stim_ids: Sequence[Any], n: int | None) -> list[str]:
    if isinstance(stim_ids, str | bytes) or not isinstance(stim_ids, Sequence | np.ndarray):
        raise UsageError(f"stim_ids={stim_ids!r}: give one stimulus id per image (a list)")
    ids = [str(s) for s in stim_ids]
    if n is not None and len(ids) != n:
        raise DataError(f"stim_ids: {len(ids)} ids given for {n} images; give one id per image")
    if any(not s for s in ids):
        raise DataError("stim_ids: an id is empty; give each image a non-empty id")
    seen: set[str] = set()
    for s in ids:
        if s in seen:
            raise DataError(
                f"stim_ids: {s!r} occurs twice; ids must be unique (they seed the noise)"
            )
        seen.add(s)
    return ids


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise UsageError(f"{name}={value!r}: must be an integer")
    if int(value) < minimum:
        raise UsageError(f"{name}={value}: must be at least {minimum}")
    return int(value)


# --------------------------------------------------------------------------------------------
# Tensors and images
# --------------------------------------------------------------------------------------------
def pad_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    """``x`` padded to ``rows`` rows by repeating its last row (fixed shapes, see module doc).

    Always contiguous in the default memory format: kernels differ between layouts (e.g. a
    channels-last view of a transposed array), which would make results depend on the batch.
    """
    import torch

    if x.shape[0] < rows:
        x = torch.cat([x, x[-1:].expand(rows - x.shape[0], *x.shape[1:])])
    return x.contiguous()


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """VAE output in [-1, 1], (B, 3, H, W) -> uint8 (B, H, W, 3)."""
    array = x.detach().float().cpu().numpy().transpose(0, 2, 3, 1)
    return (np.clip(array / 2.0 + 0.5, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def _resize(images: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resize uint8 (B, H, W, 3) images with Lanczos (PIL)."""
    from PIL import Image

    if images.shape[1:3] == tuple(size_hw):
        return images
    height, width = size_hw
    return np.stack(
        [
            np.asarray(
                Image.fromarray(img).resize((width, height), Image.Resampling.LANCZOS),
                dtype=np.uint8,
            )
            for img in images
        ]
    )


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="image", disable=not enabled or total == 0)


def _chunks(n: int, size: int) -> list[range]:
    return [range(start, min(start + size, n)) for start in range(0, n, size)]


def decode_latents(
    pipe: Any,
    z: Any,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    output_size: int | None = None,
) -> np.ndarray:
    """Decode scaled VAE latents ``z`` into 8-bit RGB images (step 1 of the recipe).

    Parameters
    ----------
    pipe : StableDiffusionImg2ImgPipeline
        Its ``vae`` is used (on its device and dtype).
    z : array, shape (n_images, C, h, w) or (n_images, C * s * s)
        Scaled latents (as :func:`nipype_brainrecon.features.encode_images_z` gives them).
    batch_size : int
        Images per VAE call (each call is padded to this many rows).
    output_size : int, optional
        Resize (Lanczos) to ``output_size`` x ``output_size``; default the decoded size (8 h).

    Returns
    -------
    numpy.ndarray
        uint8, shape (n_images, H, W, 3).
    """
    import torch

    shapes = _Shapes(pipe)
    latents = _check_latents(z, shapes)
    batch_size = _check_int(batch_size, "batch_size", 1)
    out: list[np.ndarray] = []
    with torch.inference_mode():
        for chunk in _chunks(len(latents), batch_size):
            out.append(
                _decode_chunk(pipe.vae, latents[chunk.start : chunk.stop], shapes, batch_size)
            )
    images = (
        np.concatenate(out)
        if out
        else np.empty((0, *(8 * s for s in latents.shape[2:]), 3), dtype=np.uint8)
    )
    if output_size is not None:
        side = _check_int(output_size, "output_size", 8)
        images = _resize(images, (side, side)) if len(images) else images
    return images


def _decode_chunk(vae: Any, latents: np.ndarray, shapes: _Shapes, rows: int) -> np.ndarray:
    import torch

    x = torch.from_numpy(np.ascontiguousarray(latents)) / shapes.scaling
    x = pad_rows(x, rows).to(device=vae.device, dtype=shapes.vae_dtype)
    return _to_uint8(vae.decode(x).sample[: len(latents)])


def _init_latents(
    pipe: Any,
    z: np.ndarray,
    stim_ids: Sequence[str],
    shapes: _Shapes,
    *,
    seed: int,
    batch_size: int,
) -> torch.Tensor:
    """Steps 1-2: z -> image -> native size -> VAE posterior sample x scaling (float32, CPU)."""
    import torch

    vae = pipe.vae
    height, width = shapes.native_hw
    out = torch.empty((len(z), shapes.latent_channels, *shapes.latent_hw), dtype=torch.float32)
    for chunk in _chunks(len(z), batch_size):
        images = _decode_chunk(vae, z[chunk.start : chunk.stop], shapes, batch_size)
        images = _resize(images, (height, width))
        x = torch.from_numpy(
            np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32) / 127.5 - 1.0
        )
        x = pad_rows(x, batch_size).to(device=vae.device, dtype=shapes.vae_dtype)
        dist = vae.encode(x).latent_dist
        mean = dist.mean[: len(chunk)].float().cpu()
        std = dist.std[: len(chunk)].float().cpu()
        # One posterior sample per image, shared by its samples (as the authors' code does).
        noise = torch.stack(
            [
                seeded_randn(tuple(mean.shape[1:]), derive_seed(seed, stim_ids[i], "posterior"))
                for i in chunk
            ]
        )
        out[chunk.start : chunk.stop] = (mean + std * noise) * shapes.scaling
    return out


def _empty_prompt(pipe: Any) -> np.ndarray:
    from ..features import empty_prompt_embedding

    tokenizer = getattr(pipe, "tokenizer", None)
    encoder = getattr(pipe, "text_encoder", None)
    if tokenizer is None or encoder is None:
        raise UsageError(
            "uncond_embedding: needed when the pipeline has no tokenizer/text encoder; pass the "
            "empty-prompt embedding (features.empty_prompt_embedding)"
        )
    model_id = getattr(encoder, "brainrecon_model_id", None) or "pipeline"
    return empty_prompt_embedding(tokenizer, encoder, model_id=model_id)


# --------------------------------------------------------------------------------------------
# Reconstruction
# --------------------------------------------------------------------------------------------
def reconstruct(
    pipe: Any,
    z: Any,
    c: Any,
    *,
    stim_ids: Sequence[Any],
    mode: Mode = "z+c",
    n_samples: int = 5,
    strength: float = 0.8,
    num_inference_steps: int = 50,
    guidance_scale: float = 5.0,
    seed: int = 42,
    batch_size: int = DEFAULT_BATCH_SIZE,
    sample_indices: Sequence[int] | None = None,
    output_size: int | None = None,
    uncond_embedding: Any = None,
    progress: bool = True,
) -> np.ndarray:
    """Reconstruct images from decoded ``z`` and ``c`` with img2img latent diffusion.

    Follows Takagi & Nishimoto (2023); see the module docstring for the steps. Runs on the
    pipeline's device and dtype, under ``torch.inference_mode``.

    Parameters
    ----------
    pipe : StableDiffusionImg2ImgPipeline
        From :func:`nipype_brainrecon.diffusion.models.load_pipeline`. Only ``vae``, ``unet`` and
        ``scheduler`` (its config builds a DDIM scheduler) are used, plus ``tokenizer`` and
        ``text_encoder`` for the empty prompt when ``uncond_embedding`` is not given.
    z : array or None, shape (n_images, C, h, w) or (n_images, C * s * s)
        Decoded scaled VAE latents (4 x 40 x 40 for SD v1 at 320 px); any spatial size, resized
        to the native size as an image. Not used (may be ``None``) in mode ``"c"``.
    c : array or None, shape (n_images, tokens, hidden) or (n_images, tokens * hidden)
        Decoded text embeddings (77 x 768 for SD v1). Not used (may be ``None``) in mode ``"z"``.
    stim_ids : sequence
        One unique id per image (converted to ``str``); it seeds that image's noise.
    mode : {"z+c", "z", "c"}
        ``"z"``: the empty prompt conditions the U-Net (one branch, guidance has no effect);
        ``"c"``: start from pure noise and denoise all ``num_inference_steps`` (txt2img,
        ``strength`` ignored).
    n_samples : int
        Samples per image (5 in the paper).
    strength : float
        In (0, 1]: the init latent is noised to this fraction of the schedule and denoised over
        ``floor(num_inference_steps * strength)`` steps (0.8 x 50 = 40 in the paper).
    num_inference_steps : int
        DDIM schedule length (50).
    guidance_scale : float
        Classifier-free guidance scale (5.0); 1.0 runs the conditional branch alone.
    seed : int
        The run's seed (42 in the paper); the noise of image ``i`` / sample ``s`` comes from
        :func:`derive_seed` ``(seed, stim_ids[i], ..., s)``.
    batch_size : int
        Rows (image x sample pairs) per U-Net call; every call is padded to this many rows,
        so results do not depend on how items are grouped (keep it, and ``n_samples``, fixed
        to regenerate images bit-identically). The VAE steps 1-2 take
        ``max(1, batch_size // n_samples)`` images per call.
    sample_indices : sequence of int, optional
        Which samples to generate (each in ``[0, n_samples)``); default all. With one image and
        one index, regenerates a single sample.
    output_size : int, optional
        Resize the outputs (Lanczos) to ``output_size`` x ``output_size``; default the native
        size (512 for SD v1, as in the paper).
    uncond_embedding : array, shape (tokens, hidden), optional
        The unconditional embedding; default the pipeline's encoding of the empty prompt ``""``.
    progress : bool
        Show a progress bar (one tick per sample).

    Returns
    -------
    numpy.ndarray
        uint8, shape (n_images, len(sample_indices), H, W, 3).

    Raises
    ------
    UsageError
        Unknown ``mode``, ``strength`` outside (0, 1], bad counts or sizes, missing ``z``/``c``.
    DataError
        ``z`` or ``c`` of the wrong shape for the model, non-finite values, ``stim_ids`` not one
        unique id per image.
    """
    import torch

    if mode not in MODES:
        raise UsageError(f"mode={mode!r}: unknown; choose one of {', '.join(MODES)}")
    n_samples = _check_int(n_samples, "n_samples", 1)
    batch_size = _check_int(batch_size, "batch_size", 1)
    seed = _check_int(seed, "seed", 0)
    steps = check_steps(num_inference_steps, strength)
    num_inference_steps = int(num_inference_steps)
    try:
        guidance_scale = float(guidance_scale)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"guidance_scale={guidance_scale!r}: must be a number") from exc
    if not math.isfinite(guidance_scale):
        raise UsageError(f"guidance_scale={guidance_scale}: must be finite (the paper uses 5.0)")
    if sample_indices is None:
        samples = list(range(n_samples))
    else:
        samples = [_check_int(s, "sample_indices", 0) for s in sample_indices]
        if any(s >= n_samples for s in samples) or len(set(samples)) != len(samples):
            raise UsageError(
                f"sample_indices={list(sample_indices)}: must be distinct and below "
                f"n_samples={n_samples}"
            )
    out_hw = None
    if output_size is not None:
        side = _check_int(output_size, "output_size", 8)
        out_hw = (side, side)

    shapes = _Shapes(pipe)
    use_z, use_c = mode in ("z+c", "z"), mode in ("z+c", "c")
    if use_z and z is None:
        raise UsageError(f"z: required in mode {mode!r}; pass the decoded latents")
    if use_c and c is None:
        raise UsageError(f"c: required in mode {mode!r}; pass the decoded text embeddings")

    if uncond_embedding is None:
        uncond_embedding = _empty_prompt(pipe)
    tokens = shapes.tokens if shapes.tokens is not None else np.shape(uncond_embedding)[0]
    uncond = _check_embeddings(
        uncond_embedding, "uncond_embedding", tokens, shapes.hidden, single=True
    )
    # Arrays the mode does not use are still checked, to catch mixed-up inputs early.
    z_arr = _check_latents(z, shapes) if z is not None else None
    c_arr = (
        _check_embeddings(c, "c", tokens, shapes.hidden, single=False) if c is not None else None
    )
    counts = {name: len(a) for name, a in (("z", z_arr), ("c", c_arr)) if a is not None}
    if len(set(counts.values())) > 1:
        raise DataError(
            f"z and c: {counts['z']} vs {counts['c']} images; give both for the same images"
        )
    n_images = next(iter(counts.values()))
    ids = _check_stim_ids(stim_ids, n_images)

    scheduler = fresh_ddim(pipe.scheduler)
    scheduler.set_timesteps(num_inference_steps)
    if mode == "c":
        timesteps = scheduler.timesteps.clone()
    else:
        timesteps = scheduler.timesteps[num_inference_steps - steps :].clone()
    use_cfg = mode != "z" and guidance_scale != 1.0
    items = [(i, s) for i in range(n_images) for s in samples]
    height, width = shapes.native_hw
    result = np.empty((n_images, len(samples), *(out_hw or (height, width)), 3), dtype=np.uint8)
    if not items:
        return result

    dev, dtype = shapes.device, shapes.dtype
    latent_shape = (shapes.latent_channels, *shapes.latent_hw)
    uncond_t = torch.tensor(uncond).to(device=dev, dtype=dtype)
    with torch.inference_mode(), _progress(len(items), f"reconstruct ({mode})", progress) as bar:
        init = None
        if use_z:
            # Images per VAE call: about one U-Net batch worth of samples; fixed per run
            # settings (not per call) so that regenerating one image keeps its numbers.
            image_batch = max(1, batch_size // n_samples)
            init = _init_latents(pipe, z_arr, ids, shapes, seed=seed, batch_size=image_batch)
        for chunk in _chunks(len(items), batch_size):
            batch = [items[k] for k in chunk]
            noise = torch.stack(
                [
                    seeded_randn(latent_shape, derive_seed(seed, ids[i], "noise", s))
                    for i, s in batch
                ]
            )
            if init is None:
                latents = noise * scheduler.init_noise_sigma
            else:
                start = timesteps[:1].repeat(len(batch))
                latents = scheduler.add_noise(init[[i for i, _ in batch]], noise, start)
            latents = pad_rows(latents, batch_size).to(device=dev, dtype=dtype)
            if use_c:
                cond = pad_rows(torch.from_numpy(c_arr[[i for i, _ in batch]]), batch_size)
                cond = cond.to(device=dev, dtype=dtype)
            else:
                cond = uncond_t.expand(batch_size, *uncond_t.shape).contiguous()
            if use_cfg:
                embeds = torch.cat([uncond_t.expand(batch_size, *uncond_t.shape), cond])
            else:
                embeds = cond
            for t in timesteps:
                model_in = torch.cat([latents, latents]) if use_cfg else latents
                model_in = scheduler.scale_model_input(model_in, t)
                eps = pipe.unet(model_in, t, encoder_hidden_states=embeds).sample
                if use_cfg:
                    eps_uncond, eps_cond = eps.chunk(2)
                    eps = eps_uncond + guidance_scale * (eps_cond - eps_uncond)
                latents = scheduler.step(eps, t, latents, eta=0.0).prev_sample
            x = (latents / shapes.scaling).to(dtype=shapes.vae_dtype)
            images = _to_uint8(pipe.vae.decode(x).sample[: len(batch)])
            if out_hw is not None:
                images = _resize(images, out_hw)
            for (i, s), image in zip(batch, images, strict=True):
                result[i, samples.index(s)] = image
            bar.update(len(batch))
    return result


# --------------------------------------------------------------------------------------------
# Writing images
# --------------------------------------------------------------------------------------------
_LABEL = re.compile(r"[^A-Za-z0-9]+")


def bids_label(value: Any) -> str:
    """A BIDS entity label from any id: non-alphanumeric characters dropped.

    Examples
    --------
    >>> bids_label("nsd_00042.png")
    'nsd00042png'
    """
    label = _LABEL.sub("", str(value))
    if not label:
        raise DataError(f"stim id {value!r}: has no letters or digits to name a file with")
    return label


def save_reconstructions(
    images: np.ndarray,
    stim_ids: Sequence[Any],
    out_dir: str | os.PathLike,
    *,
    sample_indices: Sequence[int] | None = None,
    prefix: str = "",
    suffix: str = "recon",
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write reconstructions as PNG files ``<prefix>stim-<id>_sample-<k>_<suffix>.png``.

    All files are written to a temporary folder first and moved into ``out_dir`` only when
    every one is written, so a failure leaves ``out_dir`` as it was.

    Parameters
    ----------
    images : numpy.ndarray
        uint8, shape (n_images, n_samples, H, W, 3) (as :func:`reconstruct` returns).
    stim_ids : sequence
        One id per image; made a BIDS label with :func:`bids_label`.
    out_dir : path
        Folder to write into (created if needed).
    sample_indices : sequence of int, optional
        The sample index of each column of ``images`` (default ``0 .. n_samples - 1``).
    prefix : str
        Prepended to every name (e.g. ``"sub-01_"``).
    suffix : str
        The name's suffix (``recon``).
    metadata : mapping, optional
        Written into each PNG as text chunks (with ``stim_id`` and ``sample`` added).
    overwrite : bool
        Replace existing files of the same names; otherwise they are an error.

    Returns
    -------
    list of pathlib.Path
        The files written, image by image, sample by sample.
    """
    from PIL import Image, PngImagePlugin

    array = np.asarray(images)
    if array.dtype != np.uint8 or array.ndim != 5 or array.shape[-1] != 3:
        raise DataError(
            f"images: expected uint8 of shape (n_images, n_samples, H, W, 3), got "
            f"{array.dtype} {array.shape}; pass what reconstruct returns"
        )
    ids = _check_stim_ids(stim_ids, array.shape[0])
    samples = list(range(array.shape[1])) if sample_indices is None else list(sample_indices)
    if len(samples) != array.shape[1]:
        raise UsageError(
            f"sample_indices: {len(samples)} given for {array.shape[1]} samples per image"
        )
    labels = [bids_label(s) for s in ids]
    if len(set(labels)) != len(labels):
        raise DataError(
            "stim_ids: two ids give the same file label once non-alphanumerics are dropped"
        )
    out = Path(out_dir)
    names = [
        (i, j, f"{prefix}stim-{labels[i]}_sample-{int(k)}_{suffix}.png")
        for i in range(array.shape[0])
        for j, k in enumerate(samples)
    ]
    if not overwrite:
        existing = [name for _, _, name in names if (out / name).exists()]
        if existing:
            raise OutputError(
                f"{out / existing[0]}: already exists; choose another folder or pass overwrite=True"
            )
    try:
        out.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".recon-partial-", dir=out))
    except OSError as exc:
        raise OutputError(f"{out}: cannot create the output folder ({exc.strerror})") from exc
    try:
        written = []
        for i, j, name in names:
            info = PngImagePlugin.PngInfo()
            for key, value in {
                **(metadata or {}),
                "stim_id": ids[i],
                "sample": samples[j],
            }.items():
                info.add_text(str(key), str(value))
            buffer = _png_bytes(Image.fromarray(array[i, j]), info)
            atomic_write_bytes(scratch / name, buffer)
            written.append(name)
        for name in written:
            os.replace(scratch / name, out / name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return [out / name for _, _, name in names]


def _png_bytes(image: Any, info: Any) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "MODES",
    "PAPER_SETTINGS",
    "bids_label",
    "decode_latents",
    "denoising_timesteps",
    "derive_seed",
    "native_size",
    "reconstruct",
    "save_reconstructions",
]
