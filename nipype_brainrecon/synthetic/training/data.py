"""Training data: stable seeds, training scenes (held out from the simulator's), images as tensors,
captions as token ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..stimuli import Scene, generate_scenes, render_scene, scene_captions

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "N_CAPTION_TEMPLATES",
    "images_to_tensor",
    "render_images",
    "scene_caption_table",
    "stable_seed",
    "tokenize",
    "training_scenes",
]

#: Captions per scene (every template of :func:`nipype_brainrecon.synthetic.stimuli.scene_captions`).
N_CAPTION_TEMPLATES = 6


def stable_seed(seed: int, *parts: object) -> int:
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
    return generate_scenes(int(n), seed=stable_seed(seed, "scenes", stream))


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


def tokenize(tokenizer: Any, texts: Sequence[str]) -> torch.Tensor:
    """Token ids as the Stable Diffusion pipeline makes them (padded to the full context)."""
    return tokenizer(
        list(texts),
        padding="max_length",
        max_length=int(tokenizer.model_max_length),
        truncation=True,
        return_tensors="pt",
    ).input_ids
