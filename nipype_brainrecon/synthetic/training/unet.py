"""The diffusion phase: training the U-Net and the text encoder jointly with SD's
epsilon-prediction loss, and the held-out validation loss.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import DemoTrainingConfig
from .data import stable_seed
from .optim import Log, LossInterval, lr_factor
from .report import PhaseLog

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["diffusion_validation_loss", "train_unet"]


def _noise_scheduler() -> Any:
    from diffusers import DDPMScheduler

    from ...diffusion.models import SD_V1_SCHEDULER

    keys = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "prediction_type")
    return DDPMScheduler(**{k: SD_V1_SCHEDULER[k] for k in keys})


def _conditions(
    rng: np.random.Generator,
    rows: np.ndarray,
    n_captions: int,
    config: DemoTrainingConfig,
) -> list[tuple[int, list[int]]]:
    """Per batch row: ``(scene index or -1 for the empty prompt, caption indices)``."""
    out = []
    for scene in rows:
        u = rng.random()
        if u < config.caption_dropout:
            out.append((-1, []))
        elif u < config.caption_dropout + config.caption_mean_prob and n_captions > 1:
            k = int(rng.integers(2, n_captions + 1))
            out.append((int(scene), sorted(int(i) for i in rng.choice(n_captions, k, False))))
        else:
            out.append((int(scene), [int(rng.integers(n_captions))]))
    return out


def _encode_conditions(
    text_encoder: Any,
    caption_ids: torch.Tensor,
    empty_ids: torch.Tensor,
    choices: Sequence[tuple[int, list[int]]],
) -> torch.Tensor:
    """Text states per batch row: the mean hidden states of its chosen captions (or empty)."""
    import torch

    ids, weights = [], []
    for row, (scene, picks) in enumerate(choices):
        if scene < 0:
            ids.append(empty_ids[0])
            weights.append((row, 1.0))
        else:
            for i in picks:
                ids.append(caption_ids[scene, i])
                weights.append((row, 1.0 / len(picks)))
    hidden = text_encoder(torch.stack(ids))[0]
    pool = torch.zeros(len(choices), len(ids))
    for col, (row, w) in enumerate(weights):
        pool[row, col] = w
    return torch.einsum("bm,mth->bth", pool, hidden)


def _snr_weights(alphas_cumprod: torch.Tensor, t: torch.Tensor, gamma: float | None):
    import torch

    if gamma is None:
        return torch.ones(len(t))
    ac = alphas_cumprod[t]
    snr = ac / (1 - ac)
    return torch.clamp(snr, max=gamma) / snr


def diffusion_validation_loss(
    unet: Any,
    text_encoder: Any,
    latents: torch.Tensor,
    caption_ids: torch.Tensor,
    *,
    seed: int = 0,
) -> float:
    """Plain epsilon-prediction MSE on fixed noise and evenly spread timesteps.

    Each latent is conditioned on its first caption; timesteps cover 0-999 evenly over the
    rows; the noise comes from ``seed``. Deterministic, so it compares models.

    Parameters
    ----------
    unet, text_encoder
        The models (put in eval mode).
    latents : torch.Tensor
        Scaled latents ``(n, c, h, w)``.
    caption_ids : torch.Tensor
        Token ids ``(n, n_captions, tokens)``.
    seed : int
        Noise seed.
    """
    import torch

    scheduler = _noise_scheduler()
    n = len(latents)
    gen = torch.Generator().manual_seed(stable_seed(seed, "validation-noise"))
    noise = torch.randn(latents.shape, generator=gen)
    t = torch.linspace(0, scheduler.config.num_train_timesteps - 1, n).round().long()
    unet.eval()
    text_encoder.eval()
    with torch.inference_mode():
        noisy = scheduler.add_noise(latents, noise, t)
        states = text_encoder(caption_ids[:, 0])[0]
        pred = unet(noisy, t, states).sample
    return float(torch.mean((pred - noise) ** 2))


def train_unet(
    unet: Any,
    text_encoder: Any,
    latent_mean: torch.Tensor,
    latent_std: torch.Tensor,
    caption_ids: torch.Tensor,
    empty_ids: torch.Tensor,
    config: DemoTrainingConfig,
    *,
    scaling_factor: float,
    deadline: float | None = None,
    log: Log | None = None,
) -> PhaseLog:
    """Train the U-Net and text encoder jointly with SD's epsilon-prediction loss.

    Each step draws scenes from the pool, a posterior sample of their latents (scaled by
    ``scaling_factor``), a timestep uniformly in 0-999 and Gaussian noise; the condition is
    one caption, the mean of several captions, or the empty prompt (see
    :class:`DemoTrainingConfig`). At the end the models hold the EMA weights, in eval mode.

    Parameters
    ----------
    unet : diffusers.UNet2DConditionModel
    text_encoder : transformers.CLIPTextModel
    latent_mean, latent_std : torch.Tensor
        Unscaled posterior parameters of the pool, ``(n, c, h, w)``.
    caption_ids : torch.Tensor
        ``(n, n_captions, tokens)`` token ids of each pool scene's captions.
    empty_ids : torch.Tensor
        ``(1, tokens)`` token ids of the empty prompt.
    config : DemoTrainingConfig
    scaling_factor : float
    deadline : float, optional
        ``time.time()`` value after which the phase stops.
    log : callable, optional

    Returns
    -------
    PhaseLog
    """
    import torch

    result = PhaseLog()
    started, cpu_started = time.time(), time.process_time()
    steps = int(config.unet_steps)
    scheduler = _noise_scheduler()
    alphas_cumprod = scheduler.alphas_cumprod.float()
    n_train_t = int(scheduler.config.num_train_timesteps)
    rng = np.random.default_rng(stable_seed(config.seed, "unet-choices"))
    gen = torch.Generator().manual_seed(stable_seed(config.seed, "unet-noise"))
    params = [*unet.parameters(), *text_encoder.parameters()]
    optimizer = _optimizer(unet, text_encoder, config)
    ema = [p.detach().clone() for p in params]
    interval = LossInterval(config.log_every, "unet", log)
    n_pool, n_captions = caption_ids.shape[:2]
    unet.train()
    text_encoder.train()
    for step in range(steps):
        if deadline is not None and time.time() > deadline:
            result.stopped_by_time = True
            break
        for group in optimizer.param_groups:
            group["lr"] = group["base"] * lr_factor(step, steps, config.warmup_steps)
        rows = rng.integers(0, n_pool, config.unet_batch_size)
        choices = _conditions(rng, rows, n_captions, config)
        noisy, noise, t = _noised_batch(
            rows, latent_mean, latent_std, scaling_factor, scheduler, n_train_t, gen
        )
        states = _encode_conditions(text_encoder, caption_ids, empty_ids, choices)
        pred = unet(noisy, t, states).sample
        per_row = (pred - noise).square().mean(dim=(1, 2, 3))
        loss = (per_row * _snr_weights(alphas_cumprod, t, config.min_snr_gamma)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        _update_ema(ema, params, min(config.ema_decay, (1 + step) / (10 + step)))
        result.steps = step + 1
        interval.add(result, step, float(loss.detach()), started)
    interval.flush(result, result.steps, started)
    if result.steps:
        with torch.no_grad():
            for p, e in zip(params, ema, strict=True):
                p.copy_(e)
    unet.eval()
    text_encoder.eval()
    result.seconds = time.time() - started
    result.cpu_seconds = time.process_time() - cpu_started
    return result


def _optimizer(unet: Any, text_encoder: Any, config: DemoTrainingConfig) -> Any:
    """AdamW over both models, each with its own peak learning rate (kept as ``base``)."""
    import torch

    return torch.optim.AdamW(
        [
            {"params": list(unet.parameters()), "lr": config.unet_lr, "base": config.unet_lr},
            {
                "params": list(text_encoder.parameters()),
                "lr": config.text_lr,
                "base": config.text_lr,
            },
        ],
        weight_decay=1e-2,
    )


def _noised_batch(
    rows: np.ndarray,
    latent_mean: torch.Tensor,
    latent_std: torch.Tensor,
    scaling_factor: float,
    scheduler: Any,
    n_train_t: int,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A posterior sample of the rows' scaled latents, noised at random timesteps.

    Returns the noisy latents, the noise and the timesteps.
    """
    import torch

    index = torch.from_numpy(rows)
    eps_latent = torch.randn(latent_mean[index].shape, generator=gen)
    z0 = (latent_mean[index] + latent_std[index] * eps_latent) * scaling_factor
    noise = torch.randn(z0.shape, generator=gen)
    t = torch.randint(0, n_train_t, (len(rows),), generator=gen)
    return scheduler.add_noise(z0, noise, t), noise, t


def _update_ema(ema: list[torch.Tensor], params: list[Any], decay: float) -> None:
    """``ema = decay * ema + (1 - decay) * params``, in place."""
    import torch

    with torch.no_grad():
        torch._foreach_mul_(ema, decay)
        torch._foreach_add_(ema, [p.detach() for p in params], alpha=1 - decay)
