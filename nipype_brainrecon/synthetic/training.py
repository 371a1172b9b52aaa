"""Training the shipped demo model: a small latent diffusion model on the default stimuli.

The demo model has the parts of Stable Diffusion v1 (``AutoencoderKL``, ``UNet2DConditionModel``
with cross-attention, ``CLIPTextModel``, a CLIP tokenizer, a DDIM scheduler), built small with
:func:`nipype_brainrecon.diffusion.models.build_tiny_sd` and trained here on scenes drawn by
:mod:`nipype_brainrecon.synthetic.stimuli`, on a CPU, in minutes:

1. **Tokenizer**: byte-level BPE merges learnt from the captions of the training scenes.
2. **VAE**: L1 + L2 reconstruction (object pixels weighted up) with a small KL term, on fresh
   scenes every step (unlimited, deterministic data); then frozen. The latent ``scaling_factor``
   is set from the std of the training latents so that scaled latents have std
   ``latent_std_target`` (see :class:`DemoTrainingConfig` for why 2 rather than SD's 1).
3. **U-Net and text encoder, jointly**: SD's epsilon-prediction loss with SD v1's noise schedule
   (scaled-linear betas 0.00085-0.012, 1000 steps) on the scaled latents of a fixed pool of
   scenes, conditioned on the text encoder's last hidden states of one random caption of the
   scene, of the mean over several of its captions (the method's ``c`` is such a mean), or of the
   empty prompt (caption dropout, so classifier-free guidance works). Min-SNR loss weights and an
   exponential moving average (EMA) of the weights; the EMA weights are saved.

Everything random is drawn from generators seeded by stable hashes of the run's seed, and the
training scenes come from a seed stream that no dataset generated with a small seed (such as the
simulator's default stimuli) shares, so evaluation stimuli are held out. Two runs with the same
configuration and thread count on the same machine give bit-identical weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..diffusion.models import demo_model_path
from ..errors import UsageError
from ..io import atomic_directory, atomic_write_text
from .stimuli import BACKGROUNDS, Scene, generate_scenes, render_scene, scene_captions

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "DEMO_MODEL_DIR",
    "DEMO_SIZES",
    "DemoTrainingConfig",
    "PhaseLog",
    "TrainingReport",
    "demo_model_path",
    "diffusion_validation_loss",
    "encode_latent_pool",
    "images_to_tensor",
    "render_images",
    "scene_caption_table",
    "train_demo_model",
    "train_unet",
    "train_vae",
    "training_scenes",
    "vae_reconstruction_scores",
    "write_model_card",
]

#: Model sizes of the shipped demo model (fields of ``models.TinySDConfig`` over the ``demo``
#: profile); ``sample_size`` is set from the resolution.
DEMO_SIZES: dict[str, Any] = {
    "text_hidden_size": 128,
    "text_layers": 2,
    "text_heads": 4,
    "text_intermediate_size": 256,
    "unet_block_channels": (64, 128),
    "unet_layers_per_block": 1,
    "unet_attention_head_dim": 8,
    "unet_norm_groups": 32,
    "vae_block_channels": (16, 32, 64, 64),
    "vae_norm_groups": 16,
}

#: The shipped demo model (a diffusers folder inside the package).
DEMO_MODEL_DIR = Path(__file__).resolve().parents[1] / "data" / "demo_model"

#: Captions per scene (every template of :func:`nipype_brainrecon.synthetic.stimuli.scene_captions`).
N_CAPTION_TEMPLATES = 6

Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class DemoTrainingConfig:
    """Settings of :func:`train_demo_model` (the defaults made the shipped model).

    Attributes
    ----------
    seed : int
        Seeds the initial weights, the training scenes, the noise and every random choice.
    resolution : int
        Image side in pixels (a multiple of 8); the latents are ``resolution / 8`` on a side.
    sizes : mapping
        ``TinySDConfig`` fields over the ``demo`` profile (see :data:`DEMO_SIZES`).
    vae_steps, vae_batch_size, vae_lr, kl_weight
        VAE training: steps, images per step (fresh scenes each step), peak learning rate,
        weight of the KL term (per latent element, against mean L1 + L2 per pixel).
    foreground_weight : float
        Loss weight of object pixels relative to background pixels in the VAE phase.
    latent_std_target : float
        Std of the scaled latents: ``scaling_factor = latent_std_target / std(latents)``. SD v1
        scales its 64 x 64 latents to about unit std; at the demo's 8 x 8 latents the same noise
        level hides the layout, because each object covers 64 times fewer latent values. Measured
        on held-out stimuli, a likelihood oracle tells a stimulus's 0.8-noised latent (DDIM step
        781) from another stimulus's in 95.5 % of pairs at std 1, 99.4 % at std 2 (the figure
        16 x 16 latents give at std 1), so img2img at the paper's strength keeps the layout as
        SD's does. Scaling the signal up is the resolution-dependent SNR shift of "simple
        diffusion" (Hoogeboom et al. 2023); the noise schedule itself stays SD v1's.
    n_scenes : int
        Size of the fixed pool of scenes the U-Net learns from.
    unet_steps, unet_batch_size, unet_lr, text_lr
        Diffusion training: steps, latents per step, peak learning rates of the U-Net and of
        the text encoder.
    caption_dropout : float
        Probability of the empty prompt instead of a caption (classifier-free guidance).
    caption_mean_prob : float
        Probability of conditioning on the mean hidden states of 2 to 6 captions of the scene.
    min_snr_gamma : float or None
        Min-SNR loss weighting (``min(SNR, gamma) / SNR``); ``None`` for the plain loss.
    ema_decay : float
        Decay of the moving average of the U-Net and text-encoder weights that is saved.
    warmup_steps : int
        Linear learning-rate warm-up of each phase; then a cosine decay to 10 %.
    vocab_size : int or None
        Tokenizer vocabulary size (``None``: as many merges as occur at least twice).
    threads : int or None
        torch CPU threads during training (``None``: leave torch's setting). Results are
        bit-reproducible for a fixed thread count; the default, 1, is also the fastest on a
        machine shared with other work (threads that wait on each other stall).
    max_minutes : float or None
        Wall-clock cap: each phase stops early when its share is spent (recorded in the report;
        the step count, and so the weights, then depend on the machine's speed).
    vae_time_share : float
        Share of ``max_minutes`` given to the VAE phase.
    log_every : int
        Steps between loss records (and log lines).
    """

    seed: int = 0
    resolution: int = 64
    sizes: Mapping[str, Any] = dataclasses.field(default_factory=lambda: dict(DEMO_SIZES))
    vae_steps: int = 2500
    vae_batch_size: int = 8
    vae_lr: float = 1e-3
    kl_weight: float = 1e-6
    foreground_weight: float = 5.0
    latent_std_target: float = 2.0
    n_scenes: int = 6000
    unet_steps: int = 2500
    unet_batch_size: int = 32
    unet_lr: float = 2e-3
    text_lr: float = 3e-4
    caption_dropout: float = 0.1
    caption_mean_prob: float = 0.3
    min_snr_gamma: float | None = 5.0
    ema_decay: float = 0.999
    warmup_steps: int = 100
    vocab_size: int | None = None
    threads: int | None = 1
    max_minutes: float | None = None
    vae_time_share: float = 0.4
    log_every: int = 100

    def __post_init__(self) -> None:
        if self.resolution < 16 or self.resolution % 8:
            raise UsageError(f"resolution={self.resolution}: use a multiple of 8, at least 16")
        for name in ("vae_steps", "unet_steps"):
            if int(getattr(self, name)) < 0:
                raise UsageError(f"{name}={getattr(self, name)}: must be 0 or more")
        for name in ("vae_batch_size", "unet_batch_size", "n_scenes", "log_every"):
            if int(getattr(self, name)) < 1:
                raise UsageError(f"{name}={getattr(self, name)}: must be at least 1")
        for name in ("caption_dropout", "caption_mean_prob", "vae_time_share"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise UsageError(f"{name}={getattr(self, name)}: must lie in [0, 1]")
        if self.caption_dropout + self.caption_mean_prob > 1.0:
            raise UsageError("caption_dropout + caption_mean_prob: must not exceed 1")
        if not 0.0 <= self.ema_decay < 1.0:
            raise UsageError(f"ema_decay={self.ema_decay}: must lie in [0, 1)")
        if not self.latent_std_target > 0:
            raise UsageError(f"latent_std_target={self.latent_std_target}: must be positive")
        if self.foreground_weight < 1.0:
            raise UsageError(f"foreground_weight={self.foreground_weight}: must be at least 1")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise UsageError(f"max_minutes={self.max_minutes}: must be positive")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"threads={self.threads}: must be at least 1")

    def model_sizes(self) -> dict[str, Any]:
        """``TinySDConfig`` overrides for ``build_tiny_sd``, with the U-Net sample size."""
        sizes = {k: (tuple(v) if isinstance(v, list) else v) for k, v in self.sizes.items()}
        sizes["sample_size"] = self.resolution // 8
        return sizes

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        out = dataclasses.asdict(self)
        out["sizes"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.sizes.items()}
        return out


@dataclasses.dataclass
class PhaseLog:
    """What one training phase did.

    Attributes
    ----------
    steps : int
        Steps run (fewer than configured when the time cap stopped the phase).
    seconds : float
        Wall-clock time of the phase.
    cpu_seconds : float
        CPU time of the process during the phase (all threads); on a machine shared with other
        work this, not the wall-clock time, measures the cost.
    losses : list of (int, float)
        ``(step, mean training loss over the preceding interval)``.
    stopped_by_time : bool
        Whether the time cap ended the phase early.
    """

    steps: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    losses: list[tuple[int, float]] = dataclasses.field(default_factory=list)
    stopped_by_time: bool = False


@dataclasses.dataclass
class TrainingReport:
    """Summary of :func:`train_demo_model`, also stored in the model folder.

    Attributes
    ----------
    config : dict
        :meth:`DemoTrainingConfig.to_dict`.
    vae, unet : PhaseLog
        The two phases.
    seconds, cpu_seconds : float
        Total wall-clock and CPU time (data, both phases, evaluation, saving).
    scaling_factor : float
        The VAE latent scaling factor written into the VAE config.
    metrics : dict
        Held-out figures: VAE PSNR / pixel correlation (with the mean-image baseline), and
        the diffusion validation loss before and after training.
    parameters : dict
        Parameter count per component.
    environment : dict
        torch, diffusers and transformers versions, CPU, threads.
    """

    config: dict[str, Any]
    vae: PhaseLog
    unet: PhaseLog
    seconds: float
    cpu_seconds: float
    scaling_factor: float
    metrics: dict[str, float]
    parameters: dict[str, int]
    environment: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------
# Seeds and data
# --------------------------------------------------------------------------------------------
def _seed(seed: int, *parts: object) -> int:
    """A stable 63-bit seed from the run's seed and a purpose (same on every machine)."""
    text = "\0".join(["brainrecon-train", str(int(seed)), *map(str, parts)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def training_scenes(n: int, seed: int = 0, stream: str = "pool") -> list[Scene]:
    """Scenes for training, from a seed stream disjoint from small-integer seeds.

    :func:`nipype_brainrecon.synthetic.stimuli.generate_scenes` with the 63-bit seed derived from
    ``(seed, stream)``, so these scenes are not those of ``generate_scenes(n, seed)`` (which the
    simulator and the tests use): stimuli generated with a small seed stay held out.

    Parameters
    ----------
    n : int
        Number of scenes.
    seed : int
        The run's seed.
    stream : str
        Purpose label; different labels give independent scenes.

    Returns
    -------
    list of Scene
    """
    return generate_scenes(int(n), seed=_seed(seed, "scenes", stream))


def render_images(scenes: Sequence[Scene], resolution: int) -> np.ndarray:
    """Render scenes as uint8 RGB, shape ``(n, 3, resolution, resolution)``."""
    return np.stack(
        [np.asarray(render_scene(s, resolution), dtype=np.uint8).transpose(2, 0, 1) for s in scenes]
    )


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(n, 3, h, w)`` → float32 tensor in [-1, 1] (the VAE's input range)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(images)).float().div_(127.5).sub_(1.0)


def scene_caption_table(scenes: Sequence[Scene]) -> list[list[str]]:
    """Every caption template of each scene (:data:`N_CAPTION_TEMPLATES` per scene)."""
    return [scene_captions(s, N_CAPTION_TEMPLATES) for s in scenes]


def _tokenize(tokenizer: Any, texts: Sequence[str]) -> torch.Tensor:
    """Token ids as the Stable Diffusion pipeline makes them (padded to the full context)."""
    return tokenizer(
        list(texts),
        padding="max_length",
        max_length=int(tokenizer.model_max_length),
        truncation=True,
        return_tensors="pt",
    ).input_ids


# --------------------------------------------------------------------------------------------
# Optimisation helpers
# --------------------------------------------------------------------------------------------
def _lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay from 1 to 0.1."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return 0.1 + 0.45 * (1.0 + math.cos(math.pi * progress))


class _Interval:
    """Accumulates losses and records their mean every ``every`` steps."""

    def __init__(self, every: int, phase: str, log: Log | None) -> None:
        self.every, self.phase, self.log = every, phase, log
        self.total, self.count = 0.0, 0

    def add(self, phase_log: PhaseLog, step: int, loss: float, started: float) -> None:
        self.total += loss
        self.count += 1
        if (step + 1) % self.every == 0:
            self.flush(phase_log, step + 1, started)

    def flush(self, phase_log: PhaseLog, step: int, started: float) -> None:
        if not self.count:
            return
        mean = self.total / self.count
        phase_log.losses.append((int(step), float(mean)))
        if self.log is not None:
            self.log(f"{self.phase} step {step}: loss {mean:.5f} ({time.time() - started:.0f} s)")
        self.total, self.count = 0.0, 0


# --------------------------------------------------------------------------------------------
# VAE
# --------------------------------------------------------------------------------------------
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
    gen = torch.Generator().manual_seed(_seed(config.seed, "vae-posterior"))
    optimizer = torch.optim.AdamW(vae.parameters(), lr=config.vae_lr, weight_decay=0.0)
    interval = _Interval(config.log_every, "vae", log)
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
            group["lr"] = config.vae_lr * _lr_factor(step, steps, config.warmup_steps)
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


# --------------------------------------------------------------------------------------------
# U-Net and text encoder
# --------------------------------------------------------------------------------------------
def _noise_scheduler() -> Any:
    from diffusers import DDPMScheduler

    from ..diffusion.models import SD_V1_SCHEDULER

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
    gen = torch.Generator().manual_seed(_seed(seed, "validation-noise"))
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
    rng = np.random.default_rng(_seed(config.seed, "unet-choices"))
    gen = torch.Generator().manual_seed(_seed(config.seed, "unet-noise"))
    params = [*unet.parameters(), *text_encoder.parameters()]
    optimizer = torch.optim.AdamW(
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
    ema = [p.detach().clone() for p in params]
    interval = _Interval(config.log_every, "unet", log)
    n_pool, n_captions = caption_ids.shape[:2]
    unet.train()
    text_encoder.train()
    for step in range(steps):
        if deadline is not None and time.time() > deadline:
            result.stopped_by_time = True
            break
        for group in optimizer.param_groups:
            group["lr"] = group["base"] * _lr_factor(step, steps, config.warmup_steps)
        rows = rng.integers(0, n_pool, config.unet_batch_size)
        choices = _conditions(rng, rows, n_captions, config)
        index = torch.from_numpy(rows)
        eps_latent = torch.randn(latent_mean[index].shape, generator=gen)
        z0 = (latent_mean[index] + latent_std[index] * eps_latent) * scaling_factor
        noise = torch.randn(z0.shape, generator=gen)
        t = torch.randint(0, n_train_t, (len(rows),), generator=gen)
        noisy = scheduler.add_noise(z0, noise, t)
        states = _encode_conditions(text_encoder, caption_ids, empty_ids, choices)
        pred = unet(noisy, t, states).sample
        per_row = (pred - noise).square().mean(dim=(1, 2, 3))
        loss = (per_row * _snr_weights(alphas_cumprod, t, config.min_snr_gamma)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        decay = min(config.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_mul_(ema, decay)
            torch._foreach_add_(ema, [p.detach() for p in params], alpha=1 - decay)
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


# --------------------------------------------------------------------------------------------
# The whole run
# --------------------------------------------------------------------------------------------
def _count(module: Any) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def _environment(threads: int) -> dict[str, Any]:
    import diffusers
    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "threads": int(threads),
    }


def train_demo_model(
    out_dir: str | os.PathLike,
    config: DemoTrainingConfig | None = None,
    *,
    overwrite: bool = False,
    log: Log | None = None,
) -> TrainingReport:
    """Build, train and save the demo latent diffusion model (a diffusers folder).

    Steps: learn the tokenizer from the training captions and build random weights
    (:func:`nipype_brainrecon.diffusion.models.build_tiny_sd`, ``demo`` profile with ``config.sizes``);
    train the VAE (:func:`train_vae`); set the latent scaling factor so that the pool's scaled
    latents have std ``config.latent_std_target``;
    latents; train the U-Net with the text encoder (:func:`train_unet`); score held-out scenes;
    save with ``save_pretrained`` (safetensors) plus ``brainrecon_model.json`` (sizes and the
    training report) and a model card ``README.md``. The folder is written whole or not at all.

    Parameters
    ----------
    out_dir : path
        Folder to create.
    config : DemoTrainingConfig, optional
        Default: the settings of the shipped model.
    overwrite : bool
        Replace an existing ``out_dir``.
    log : callable, optional
        Receives progress lines (e.g. ``print``).

    Returns
    -------
    TrainingReport
    """
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from ..diffusion.models import build_tiny_sd

    config = config or DemoTrainingConfig()
    say = log or (lambda _msg: None)
    started, cpu_started = time.time(), time.process_time()
    deadline_total = started + 60 * config.max_minutes if config.max_minutes else None
    old_threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(int(config.threads))
    try:
        with tempfile.TemporaryDirectory() as scratch, torch.random.fork_rng(devices=[]):
            torch.manual_seed(_seed(config.seed, "torch-global"))
            pool = training_scenes(config.n_scenes, config.seed, "pool")
            captions = scene_caption_table(pool)
            say(f"building the model (tokenizer from {sum(map(len, captions))} captions)")
            initial = build_tiny_sd(
                Path(scratch) / "initial",
                profile="demo",
                seed=config.seed,
                captions=[c for caps in captions for c in caps],
                vocab_size=config.vocab_size,
                **config.model_sizes(),
            )
            vae = AutoencoderKL.from_pretrained(initial, subfolder="vae")
            unet = UNet2DConditionModel.from_pretrained(initial, subfolder="unet")
            text_encoder = CLIPTextModel.from_pretrained(initial, subfolder="text_encoder")
            tokenizer = CLIPTokenizer.from_pretrained(initial, subfolder="tokenizer")

            held_out = render_images(
                training_scenes(64, config.seed, "held-out"), config.resolution
            )
            vae_before = vae_reconstruction_scores(vae, held_out)["psnr"]
            vae_deadline = None
            if deadline_total is not None:
                vae_deadline = started + 60 * config.max_minutes * config.vae_time_share
            say(f"VAE: {config.vae_steps} steps of {config.vae_batch_size} fresh scenes")
            vae_log = train_vae(vae, config, deadline=vae_deadline, log=log)
            vae.requires_grad_(False)

            say(f"encoding {len(pool)} scenes for the diffusion phase")
            images = render_images(pool, config.resolution)
            mean, std = encode_latent_pool(vae, images)
            del images
            latent_std = float(mean.std())
            scaling = float(f"{config.latent_std_target / latent_std:.5g}")
            vae.register_to_config(scaling_factor=scaling)
            say(f"latent std {latent_std:.4f}: scaling factor {scaling}")

            caption_ids = torch.stack([_tokenize(tokenizer, caps) for caps in captions])
            empty_ids = _tokenize(tokenizer, [""])
            held_scenes = training_scenes(64, config.seed, "held-out")
            held_mean, _ = encode_latent_pool(vae, held_out)
            held_ids = torch.stack(
                [_tokenize(tokenizer, caps) for caps in scene_caption_table(held_scenes)]
            )
            val_before = diffusion_validation_loss(
                unet, text_encoder, held_mean * scaling, held_ids, seed=config.seed
            )
            say(
                f"U-Net + text encoder: {config.unet_steps} steps of {config.unet_batch_size}"
                f" latents (held-out loss before: {val_before:.4f})"
            )
            unet_log = train_unet(
                unet,
                text_encoder,
                mean,
                std,
                caption_ids,
                empty_ids,
                config,
                scaling_factor=scaling,
                deadline=deadline_total,
                log=log,
            )
            val_after = diffusion_validation_loss(
                unet, text_encoder, held_mean * scaling, held_ids, seed=config.seed
            )
            metrics = {f"vae_{k}": v for k, v in vae_reconstruction_scores(vae, held_out).items()}
            metrics.update(
                {
                    "vae_psnr_before": vae_before,
                    "latent_std": latent_std,
                    "diffusion_val_loss_before": val_before,
                    "diffusion_val_loss_after": val_after,
                }
            )
            say(
                f"held-out: VAE PSNR {metrics['vae_psnr']:.2f} dB (mean image "
                f"{metrics['vae_baseline_psnr']:.2f} dB), diffusion loss {val_before:.4f} -> "
                f"{val_after:.4f}"
            )
            report = TrainingReport(
                config=config.to_dict(),
                vae=vae_log,
                unet=unet_log,
                seconds=0.0,
                cpu_seconds=0.0,
                scaling_factor=scaling,
                metrics=metrics,
                parameters={
                    "vae": _count(vae),
                    "unet": _count(unet),
                    "text_encoder": _count(text_encoder),
                },
                environment=_environment(torch.get_num_threads()),
            )
            with atomic_directory(out_dir, overwrite=overwrite) as tmp:
                for item in Path(initial).iterdir():
                    if item.is_dir():
                        shutil.copytree(item, tmp / item.name)
                    else:
                        shutil.copy2(item, tmp / item.name)
                for name, module in (
                    ("vae", vae),
                    ("unet", unet),
                    ("text_encoder", text_encoder),
                ):
                    shutil.rmtree(tmp / name)
                    module.save_pretrained(tmp / name, safe_serialization=True)
                report.seconds = time.time() - started
                report.cpu_seconds = time.process_time() - cpu_started
                meta_path = tmp / "brainrecon_model.json"
                meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
                meta.update({"kind": "trained demo model", "resolution": config.resolution})
                meta["training"] = report.to_dict()
                atomic_write_text(meta_path, json.dumps(meta, indent=2) + "\n")
                write_model_card(tmp, report)
                for path in tmp.rglob("*"):  # temporary files are private; a package's are not
                    path.chmod(0o755 if path.is_dir() else 0o644)
    finally:
        torch.set_num_threads(old_threads)
    say(
        f"saved {Path(out_dir)}: {report.seconds / 60:.1f} min wall-clock, "
        f"{report.cpu_seconds / 60:.1f} min CPU"
    )
    return report


# --------------------------------------------------------------------------------------------
# Model card
# --------------------------------------------------------------------------------------------
def _folder_megabytes(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def write_model_card(folder: str | os.PathLike, report: TrainingReport) -> Path:
    """Write the model card ``README.md`` of a trained demo model folder.

    Parameters
    ----------
    folder : path
        The model folder (already holding its components).
    report : TrainingReport
        From :func:`train_demo_model`.

    Returns
    -------
    pathlib.Path
        The card's path.
    """
    folder = Path(folder)
    cfg = report.config
    sizes = cfg["sizes"]
    res = int(cfg["resolution"])
    m = report.metrics
    env = report.environment
    side = res // 8

    def losses(phase: PhaseLog) -> str:
        if not phase.losses:
            return "(no steps)"
        picks = phase.losses
        if len(picks) > 6:
            idx = np.unique(np.linspace(0, len(picks) - 1, 6).round().astype(int))
            picks = [picks[i] for i in idx]
        return ", ".join(f"{s}: {v:.4f}" for s, v in picks)

    early = [
        name
        for name, phase in (("VAE", report.vae), ("U-Net", report.unet))
        if phase.stopped_by_time
    ]
    early_note = (
        f"\n**Stopped by the time cap** in the {' and '.join(early)} phase: the step count "
        "depended on the machine's speed, so a rerun gives other weights.\n"
        if early
        else ""
    )
    threads = env.get("threads")
    text = f"""---
license: apache-2.0
library_name: diffusers
pipeline_tag: image-to-image
tags:
- latent-diffusion
- stable-diffusion-architecture
- demo
- nipype-brainrecon
---

# nipype-brainrecon demo model

A small latent diffusion model with the architecture classes of Stable Diffusion v1, trained from
scratch on the synthetic default stimuli of `nipype_brainrecon.synthetic.stimuli` (one or two coloured shapes
on a uniform background, with captions). It lets the package's demo and tests run the whole
Takagi & Nishimoto (2023) pipeline offline on a CPU. **For demos and tests only**: it knows nothing
but these synthetic scenes.

## Architecture

| part | class | size |
|---|---|---|
| VAE | `diffusers.AutoencoderKL`, blocks {tuple(sizes["vae_block_channels"])}, 4 latent channels, factor 8 | {report.parameters["vae"]:,} parameters |
| U-Net | `diffusers.UNet2DConditionModel`, blocks {tuple(sizes["unet_block_channels"])}, cross-attention on the text states | {report.parameters["unet"]:,} parameters |
| text encoder | `transformers.CLIPTextModel`, {sizes["text_layers"]} layers, hidden size {sizes["text_hidden_size"]}, 77 tokens | {report.parameters["text_encoder"]:,} parameters |
| tokenizer | `transformers.CLIPTokenizer`, byte-level BPE learnt from the training captions | |
| scheduler | `diffusers.DDIMScheduler`, SD v1 settings (scaled-linear betas 0.00085-0.012, 1000 steps) | |

Native resolution {res} × {res} px; latents **z** are 4 × {side} × {side}; text states **c** are
77 × {sizes["text_hidden_size"]}. The VAE `scaling_factor` is **{report.scaling_factor}**
(= {cfg["latent_std_target"]} / {m["latent_std"]:.4f}, the std of the unscaled training latents),
so scaled latents have std {cfg["latent_std_target"]}. SD v1 scales to about unit std (its
0.18215), but its latents are 64 × 64: at the demo's {side} × {side} each object covers far fewer
latent values, and at unit std the noise of img2img at strength 0.8 hides the layout (a likelihood
oracle tells two held-out stimuli apart from their 0.8-noised latents in 95.5 % of pairs at std 1,
99.4 % at std 2, the figure of 16 × 16 latents at std 1). Scaling the signal up is the
resolution-dependent SNR shift of "simple diffusion" (Hoogeboom et al. 2023); the noise schedule is
SD v1's. Weights: safetensors, {_folder_megabytes(folder):.1f} MB in all.

## Training data

Scenes drawn by `nipype_brainrecon.synthetic.stimuli.generate_scenes` (6 shapes, 8 colours, 3 sizes,
4 backgrounds), rendered at {res} px by `render_scene`, each with its 6 caption templates from
`scene_captions`. Scene seeds come from a stream derived from the training seed, disjoint from the
small seeds the simulator uses, so simulated stimuli are held out. Licence of the data: generated by
the package (Apache-2.0); no external images or text.

## Training procedure

Reproduce with `python tools/train_demo_model.py OUT_DIR --seed {cfg["seed"]}` (same thread count:
{threads}). Seed **{cfg["seed"]}**; every random draw is seeded from it.

1. Tokenizer: BPE merges learnt from the captions of the {cfg["n_scenes"]} pool scenes.
2. VAE: {report.vae.steps} steps × {cfg["vae_batch_size"]} fresh scenes, AdamW (peak lr
   {cfg["vae_lr"]}), loss L1 + L2 (object pixels weighted {cfg["foreground_weight"]} × the background) +
   {cfg["kl_weight"]} × KL per latent element; then frozen.
   Loss: {losses(report.vae)}.
3. U-Net and text encoder together: {report.unet.steps} steps × {cfg["unet_batch_size"]} latents of
   a pool of {cfg["n_scenes"]} scenes, epsilon prediction with SD v1's noise schedule, min-SNR
   weights (gamma {cfg["min_snr_gamma"]}), AdamW (peak lr {cfg["unet_lr"]} U-Net,
   {cfg["text_lr"]} text encoder), EMA {cfg["ema_decay"]} (the EMA weights are saved). Condition: one
   random caption, the mean text states of 2-6 captions (probability {cfg["caption_mean_prob"]}), or
   the empty prompt (probability {cfg["caption_dropout"]}, for classifier-free guidance).
   Loss (min-SNR weighted): {losses(report.unet)}.
{early_note}
Cost: **{report.cpu_seconds / 60:.1f} CPU-minutes** in all (VAE {report.vae.cpu_seconds / 60:.1f},
U-Net {report.unet.cpu_seconds / 60:.1f}) with {threads} torch thread(s) on {env.get("cpu")}
({env.get("cpu_count")} cores); wall-clock {report.seconds / 60:.1f} min on that machine, which
was shared with other work. torch {env.get("torch")}, diffusers {env.get("diffusers")},
transformers {env.get("transformers")}.

## Evaluation (64 held-out generated scenes)

| check | model | trivial baseline (mean image) |
|---|---|---|
| VAE reconstruction PSNR | {m["vae_psnr"]:.2f} dB | {m["vae_baseline_psnr"]:.2f} dB |
| VAE reconstruction pixel correlation | {m["vae_pixcorr"]:.3f} | {m["vae_baseline_pixcorr"]:.3f} |
| VAE mean absolute error (0-255) | {m["vae_mae"]:.2f} | {m["vae_baseline_mae"]:.2f} |

Diffusion validation loss (plain epsilon MSE, fixed noise, timesteps spread over 0-999, first
caption): {m["diffusion_val_loss_before"]:.4f} before training, {m["diffusion_val_loss_after"]:.4f}
after. The package's tests (`tests/test_demo_model.py`) check reconstruction, that a caption's
colour shows in generated images, and bit-identical output for a fixed seed.

## Intended use and limits

- Intended: the package's demo, tests and tutorials; checking that a pipeline built for Stable
  Diffusion runs end to end, offline, on a CPU, with numbers that mean something.
- Not intended: any real image reconstruction, natural images, or comparison with published
  results (use Stable Diffusion v1.4 for those).
- Low resolution ({res} px); shapes are approximate; only the vocabulary of the generated captions
  is known.

## Licence

Apache-2.0, like nipype-brainrecon.
"""
    return atomic_write_text(folder / "README.md", text)
