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

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..batching import batches, progress_bar
from ..config import DEFAULTS
from ..errors import DataError, UsageError
from .checks import check_embeddings, check_int, check_latents, check_stim_ids
from .latents import init_latents, resize_images, to_uint8
from .sampling import check_steps, denoise_step, derive_seed, fresh_ddim, pad_rows, seeded_randn
from .settings import DEFAULT_BATCH_SIZE, MODES, Mode
from .shapes import PipelineShapes

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: The reconstruction defaults (the paper's values).
R = DEFAULTS.reconstruction


def reconstruct(
    pipe: Any,
    z: Any,
    c: Any,
    *,
    stim_ids: Sequence[Any],
    mode: Mode = R.mode,  # type: ignore[assignment]
    n_samples: int = R.n_samples,
    strength: float = R.strength,
    num_inference_steps: int = R.num_inference_steps,
    guidance_scale: float = R.guidance_scale,
    seed: int = DEFAULTS.seed,
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

    settings = _check_settings(
        mode,
        n_samples,
        batch_size,
        seed,
        num_inference_steps,
        strength,
        guidance_scale,
        sample_indices,
        output_size,
    )
    num_inference_steps = int(num_inference_steps)
    shapes = PipelineShapes(pipe)
    z_arr, c_arr, uncond, ids = _check_inputs(pipe, shapes, mode, z, c, stim_ids, uncond_embedding)
    n_images, samples, out_hw = len(ids), settings.samples, settings.out_hw

    scheduler = fresh_ddim(pipe.scheduler)
    scheduler.set_timesteps(num_inference_steps)
    if mode == "c":
        timesteps = scheduler.timesteps.clone()
    else:
        timesteps = scheduler.timesteps[num_inference_steps - settings.steps :].clone()
    items = [(i, s) for i in range(n_images) for s in samples]
    height, width = shapes.native_hw
    result = np.empty((n_images, len(samples), *(out_hw or (height, width)), 3), dtype=np.uint8)
    if not items:
        return result

    run = _Run(
        pipe=pipe,
        shapes=shapes,
        scheduler=scheduler,
        timesteps=timesteps,
        ids=ids,
        c_arr=c_arr if mode in ("z+c", "c") else None,
        uncond_t=torch.tensor(uncond).to(device=shapes.device, dtype=shapes.dtype),
        seed=settings.seed,
        batch_size=settings.batch_size,
        use_cfg=mode != "z" and settings.guidance_scale != 1.0,
        guidance_scale=settings.guidance_scale,
        out_hw=out_hw,
    )
    with torch.inference_mode(), progress_bar(len(items), f"reconstruct ({mode})", progress) as bar:
        init = None
        if mode in ("z+c", "z"):
            # Images per VAE call: about one U-Net batch worth of samples; fixed per run
            # settings (not per call) so that regenerating one image keeps its numbers.
            image_batch = max(1, settings.batch_size // settings.n_samples)
            init = init_latents(pipe, z_arr, ids, shapes, seed=run.seed, batch_size=image_batch)
        for rows in batches(len(items), run.batch_size):
            batch = items[rows]
            images = _reconstruct_batch(run, batch, init)
            for (i, s), image in zip(batch, images, strict=True):
                result[i, samples.index(s)] = image
            bar.update(len(batch))
    return result


class _Settings(NamedTuple):
    """:func:`reconstruct`'s settings, checked."""

    n_samples: int
    batch_size: int
    seed: int
    steps: int  # denoising steps
    guidance_scale: float
    samples: list[int]
    out_hw: tuple[int, int] | None


def _check_settings(
    mode: Any,
    n_samples: Any,
    batch_size: Any,
    seed: Any,
    num_inference_steps: Any,
    strength: Any,
    guidance_scale: Any,
    sample_indices: Sequence[int] | None,
    output_size: Any,
) -> _Settings:
    """:func:`reconstruct`'s settings, checked (errors in the order of its parameters)."""
    if mode not in MODES:
        raise UsageError(f"mode={mode!r}: unknown; choose one of {', '.join(MODES)}")
    n_samples = check_int(n_samples, "n_samples", 1)
    batch_size = check_int(batch_size, "batch_size", 1)
    seed = check_int(seed, "seed", 0)
    steps = check_steps(num_inference_steps, strength)
    try:
        guidance_scale = float(guidance_scale)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"guidance_scale={guidance_scale!r}: must be a number") from exc
    if not math.isfinite(guidance_scale):
        raise UsageError(f"guidance_scale={guidance_scale}: must be finite (the paper uses 5.0)")
    if sample_indices is None:
        samples = list(range(n_samples))
    else:
        samples = [check_int(s, "sample_indices", 0) for s in sample_indices]
        if any(s >= n_samples for s in samples) or len(set(samples)) != len(samples):
            raise UsageError(
                f"sample_indices={list(sample_indices)}: must be distinct and below "
                f"n_samples={n_samples}"
            )
    out_hw = None
    if output_size is not None:
        side = check_int(output_size, "output_size", 8)
        out_hw = (side, side)
    return _Settings(n_samples, batch_size, seed, steps, guidance_scale, samples, out_hw)


def _check_inputs(
    pipe: Any,
    shapes: PipelineShapes,
    mode: Mode,
    z: Any,
    c: Any,
    stim_ids: Sequence[Any],
    uncond_embedding: Any,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray, list[str]]:
    """``z``, ``c``, the unconditional embedding and the ids, checked against the model."""
    use_z, use_c = mode in ("z+c", "z"), mode in ("z+c", "c")
    if use_z and z is None:
        raise UsageError(f"z: required in mode {mode!r}; pass the decoded latents")
    if use_c and c is None:
        raise UsageError(f"c: required in mode {mode!r}; pass the decoded text embeddings")

    if uncond_embedding is None:
        uncond_embedding = _empty_prompt(pipe)
    tokens = shapes.tokens if shapes.tokens is not None else np.shape(uncond_embedding)[0]
    uncond = check_embeddings(
        uncond_embedding, "uncond_embedding", tokens, shapes.hidden, single=True
    )
    # Arrays the mode does not use are still checked, to catch mixed-up inputs early.
    z_arr = check_latents(z, shapes) if z is not None else None
    c_arr = check_embeddings(c, "c", tokens, shapes.hidden, single=False) if c is not None else None
    counts = {name: len(a) for name, a in (("z", z_arr), ("c", c_arr)) if a is not None}
    if len(set(counts.values())) > 1:
        raise DataError(
            f"z and c: {counts['z']} vs {counts['c']} images; give both for the same images"
        )
    n_images = next(iter(counts.values()))
    ids = check_stim_ids(stim_ids, n_images)
    return z_arr, c_arr, uncond, ids


@dataclass
class _Run:
    """What every batch of one reconstruction needs (checked settings and inputs)."""

    pipe: Any
    shapes: PipelineShapes
    scheduler: Any  # a fresh DDIM scheduler, timesteps set
    timesteps: torch.Tensor
    ids: list[str]
    c_arr: np.ndarray | None  # None: the empty prompt conditions the U-Net
    uncond_t: torch.Tensor
    seed: int
    batch_size: int
    use_cfg: bool
    guidance_scale: float
    out_hw: tuple[int, int] | None


def _reconstruct_batch(
    run: _Run, batch: Sequence[tuple[int, int]], init: torch.Tensor | None
) -> np.ndarray:
    """Noise, denoise and decode the (image, sample) pairs of one batch: uint8 images."""
    import torch

    shapes = run.shapes
    latent_shape = (shapes.latent_channels, *shapes.latent_hw)
    noise = torch.stack(
        [
            seeded_randn(latent_shape, derive_seed(run.seed, run.ids[i], "noise", s))
            for i, s in batch
        ]
    )
    if init is None:
        latents = noise * run.scheduler.init_noise_sigma
    else:
        start = run.timesteps[:1].repeat(len(batch))
        latents = run.scheduler.add_noise(init[[i for i, _ in batch]], noise, start)
    latents = pad_rows(latents, run.batch_size).to(device=shapes.device, dtype=shapes.dtype)
    embeds = _embeddings(run, batch)
    for t in run.timesteps:
        latents = denoise_step(
            run.pipe.unet,
            run.scheduler,
            latents,
            t,
            embeds,
            guided=run.use_cfg,
            guidance_scale=run.guidance_scale,
        )
    x = (latents / shapes.scaling).to(dtype=shapes.vae_dtype)
    images = to_uint8(run.pipe.vae.decode(x).sample[: len(batch)])
    if run.out_hw is not None:
        images = resize_images(images, run.out_hw)
    return images


def _embeddings(run: _Run, batch: Sequence[tuple[int, int]]) -> torch.Tensor:
    """The U-Net's text states for a batch: ``c`` or the empty prompt (after it when guided)."""
    import torch

    uncond_t, rows = run.uncond_t, run.batch_size
    if run.c_arr is not None:
        cond = pad_rows(torch.from_numpy(run.c_arr[[i for i, _ in batch]]), rows)
        cond = cond.to(device=run.shapes.device, dtype=run.shapes.dtype)
    else:
        cond = uncond_t.expand(rows, *uncond_t.shape).contiguous()
    if run.use_cfg:
        return torch.cat([uncond_t.expand(rows, *uncond_t.shape), cond])
    return cond


def _empty_prompt(pipe: Any) -> np.ndarray:
    from ..features.captions import empty_prompt_embedding

    tokenizer = getattr(pipe, "tokenizer", None)
    encoder = getattr(pipe, "text_encoder", None)
    if tokenizer is None or encoder is None:
        raise UsageError(
            "uncond_embedding: needed when the pipeline has no tokenizer/text encoder; pass the "
            "empty-prompt embedding (features.empty_prompt_embedding)"
        )
    model_id = getattr(encoder, "brainrecon_model_id", None) or "pipeline"
    return empty_prompt_embedding(tokenizer, encoder, model_id=model_id)
