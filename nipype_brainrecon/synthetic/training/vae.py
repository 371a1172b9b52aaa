"""The VAE phase: training the ``AutoencoderKL`` on fresh scenes, encoding a pool of images, and
scoring its reconstructions.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..stimuli import BACKGROUNDS, Scene
from .config import DemoTrainingConfig
from .data import images_to_tensor, render_images, stable_seed, training_scenes
from .optim import Log, LossInterval, lr_factor
from .report import PhaseLog

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["encode_latent_pool", "train_vae", "vae_reconstruction_scores"]


def _foreground_weights(images: np.ndarray, scenes: Sequence[Scene], weight: float) -> torch.Tensor:
    """Per-pixel loss weights: ``weight`` on the objects, 1 on the background, mean 1 per image.

    Objects cover a small part of each scene, so an unweighted loss is dominated by the easy
    background; weighting the pixels that differ from the scene's background colour makes the
    VAE learn shapes and colours in a fraction of the steps.
    """
    import torch

    background = np.array([BACKGROUNDS[s.background] for s in scenes], dtype=np.int16)
    distance = np.abs(images.astype(np.int16) - background[:, :, None, None]).sum(axis=1)
    w = torch.from_numpy(1.0 + (float(weight) - 1.0) * (distance > 24).astype(np.float32))
    w = w / w.mean(dim=(1, 2), keepdim=True)
    return w[:, None]


def train_vae(
    vae: Any,
    config: DemoTrainingConfig,
    *,
    deadline: float | None = None,
    log: Log | None = None,
) -> PhaseLog:
    """Train an ``AutoencoderKL`` on fresh scenes each step; leaves it in eval mode.

    Loss: absolute + squared pixel error (images in [-1, 1]) of the decoded posterior sample,
    averaged with weights that favour object pixels (``config.foreground_weight``), plus
    ``config.kl_weight`` times the KL divergence per latent element.

    Parameters
    ----------
    vae : diffusers.AutoencoderKL
        Trained in place.
    config : DemoTrainingConfig
    deadline : float, optional
        ``time.time()`` value after which the phase stops.
    log : callable, optional
        Receives progress lines.

    Returns
    -------
    PhaseLog
    """
    import torch

    result = PhaseLog()
    started, cpu_started = time.time(), time.process_time()
    steps = int(config.vae_steps)
    gen = torch.Generator().manual_seed(stable_seed(config.seed, "vae-posterior"))
    optimizer = torch.optim.AdamW(vae.parameters(), lr=config.vae_lr, weight_decay=0.0)
    interval = LossInterval(config.log_every, "vae", log)
    vae.train()
    for step in range(steps):
        if deadline is not None and time.time() > deadline:
            result.stopped_by_time = True
            break
        scenes = training_scenes(config.vae_batch_size, config.seed, f"vae-{step}")
        images = render_images(scenes, config.resolution)
        x = images_to_tensor(images)
        weights = _foreground_weights(images, scenes, config.foreground_weight)
        for group in optimizer.param_groups:
            group["lr"] = config.vae_lr * lr_factor(step, steps, config.warmup_steps)
        posterior = vae.encode(x).latent_dist
        z = posterior.sample(generator=gen)
        y = vae.decode(z).sample
        err = y - x
        kl = posterior.kl().mean() / z[0].numel()
        loss = (weights * (err.abs() + err.square())).mean() + config.kl_weight * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        result.steps = step + 1
        interval.add(result, step, float(loss.detach()), started)
    interval.flush(result, result.steps, started)
    vae.eval()
    result.seconds = time.time() - started
    result.cpu_seconds = time.process_time() - cpu_started
    return result


def encode_latent_pool(
    vae: Any, images: np.ndarray, *, batch_size: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and standard deviation of uint8 images (unscaled VAE latents).

    Returns
    -------
    mean, std : torch.Tensor
        Each ``(n, latent_channels, h / 8, w / 8)``, float32.
    """
    import torch

    means, stds = [], []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            dist = vae.encode(images_to_tensor(images[start : start + batch_size])).latent_dist
            means.append(dist.mean.float())
            stds.append(dist.std.float())
    return torch.cat(means), torch.cat(stds)


def vae_reconstruction_scores(
    vae: Any, images: np.ndarray, *, baseline: np.ndarray | None = None
) -> dict[str, float]:
    """How well the VAE reconstructs ``images`` (posterior mean, decoded), with a baseline.

    Parameters
    ----------
    vae : diffusers.AutoencoderKL
    images : ndarray
        uint8 ``(n, 3, h, w)``.
    baseline : ndarray, optional
        uint8 ``(3, h, w)`` image standing in for every reconstruction (default: the mean of
        ``images``, the trivial baseline).

    Returns
    -------
    dict
        ``psnr`` (dB, over all pixels of all images), ``pixcorr`` (mean Pearson r per image of
        the flattened RGB), ``mae`` (mean absolute error in 0-255 units), and the same three
        for the baseline (``baseline_psnr``, ``baseline_pixcorr``, ``baseline_mae``; the mean
        image gives the same pixels for every image, so its correlation with each is computed
        as for a reconstruction).
    """
    import torch

    with torch.inference_mode():
        x = images_to_tensor(images)
        y = vae.decode(vae.encode(x).latent_dist.mode()).sample
    recon = ((y.clamp(-1, 1) + 1) * 127.5).numpy()
    truth = images.astype(np.float64)
    if baseline is None:
        baseline = truth.mean(axis=0)
    base = np.broadcast_to(np.asarray(baseline, dtype=np.float64), truth.shape)

    def scores(pred: np.ndarray) -> tuple[float, float, float]:
        mse = float(np.mean((pred - truth) ** 2))
        psnr = 10 * math.log10(255.0**2 / max(mse, 1e-12))
        t = truth.reshape(len(truth), -1)
        p = pred.reshape(len(pred), -1)
        t = t - t.mean(axis=1, keepdims=True)
        p = p - p.mean(axis=1, keepdims=True)
        denom = np.sqrt((t * t).sum(axis=1) * (p * p).sum(axis=1))
        r = np.where(denom > 0, (t * p).sum(axis=1) / np.where(denom > 0, denom, 1), 0.0)
        return psnr, float(r.mean()), float(np.mean(np.abs(pred - truth)))

    psnr, pixcorr, mae = scores(recon.astype(np.float64))
    b_psnr, b_pixcorr, b_mae = scores(base)
    return {
        "psnr": psnr,
        "pixcorr": pixcorr,
        "mae": mae,
        "baseline_psnr": b_psnr,
        "baseline_pixcorr": b_pixcorr,
        "baseline_mae": b_mae,
    }
