"""Reproducible sampling: the DDIM schedule, seeded noise and fixed-shape batches.

All noise is drawn on the CPU from ``torch.Generator`` objects seeded by :func:`derive_seed`, a
stable hash of the run's seed, a stimulus id, a purpose and a sample index, so any one image or
sample can be regenerated alone. Every network call runs on a batch of exactly ``batch_size``
rows (:func:`pad_rows`), so an item's numbers do not depend on which other items share its batch.
"""

from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING, Any

from ..config import DEFAULTS
from ..errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: The reconstruction defaults (the paper's values).
R = DEFAULTS.reconstruction


def denoising_timesteps(
    scheduler: Any, num_inference_steps: int = R.num_inference_steps, strength: float = R.strength
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
    """Standard normal float32 noise of ``shape`` on the CPU from a generator seeded by ``seed``."""
    import torch

    generator = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn(shape, generator=generator, dtype=torch.float32)


def pad_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    """``x`` padded to ``rows`` rows by repeating its last row (fixed shapes, see module doc).

    Always contiguous in the default memory format: kernels differ between layouts (e.g. a
    channels-last view of a transposed array), which would make results depend on the batch.
    """
    import torch

    if x.shape[0] < rows:
        x = torch.cat([x, x[-1:].expand(rows - x.shape[0], *x.shape[1:])])
    return x.contiguous()


def denoise_step(
    unet: Any,
    scheduler: Any,
    latents: torch.Tensor,
    t: Any,
    embeds: torch.Tensor,
    *,
    guided: bool,
    guidance_scale: float,
) -> torch.Tensor:
    """One DDIM step (eta 0) of ``latents`` at timestep ``t``, conditioned on ``embeds``.

    With ``guided``, ``embeds`` stacks the unconditional rows on the conditional ones and the
    noise prediction is ``eps_uncond + guidance_scale * (eps_cond - eps_uncond)``
    (classifier-free guidance).
    """
    import torch

    model_in = torch.cat([latents, latents]) if guided else latents
    model_in = scheduler.scale_model_input(model_in, t)
    eps = unet(model_in, t, encoder_hidden_states=embeds).sample
    if guided:
        eps_uncond, eps_cond = eps.chunk(2)
        eps = eps_uncond + guidance_scale * (eps_cond - eps_uncond)
    return scheduler.step(eps, t, latents, eta=0.0).prev_sample
