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

Modules
-------
config
    :class:`DemoTrainingConfig` and the sizes of the shipped model.
report
    :class:`PhaseLog` and :class:`TrainingReport`, what a run did.
data
    Stable seeds, training scenes, images as tensors, captions as token ids.
optim
    The learning-rate schedule and loss records both phases share.
vae
    The VAE phase, latent encoding and reconstruction scores.
unet
    The diffusion phase (U-Net and text encoder) and the validation loss.
train
    :func:`train_demo_model`, the whole run.
model_card
    :func:`write_model_card`.
"""

from ...diffusion.models import demo_model_path
from .config import DEMO_MODEL_DIR, DEMO_SIZES, DemoTrainingConfig
from .data import (
    N_CAPTION_TEMPLATES,
    images_to_tensor,
    render_images,
    scene_caption_table,
    training_scenes,
)
from .model_card import write_model_card
from .report import PhaseLog, TrainingReport
from .train import train_demo_model
from .unet import diffusion_validation_loss, train_unet
from .vae import encode_latent_pool, train_vae, vae_reconstruction_scores

__all__ = [
    "DEMO_MODEL_DIR",
    "DEMO_SIZES",
    "N_CAPTION_TEMPLATES",
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
