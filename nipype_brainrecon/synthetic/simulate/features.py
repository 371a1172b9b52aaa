"""The stimuli of a simulated dataset and their features: low-level image maps, semantic vectors.

Generated scenes are rendered into ``stimuli/`` with their captions and described by
:func:`~nipype_brainrecon.synthetic.stimuli.scene_semantics`; a user's images are copied with
their captions and described by a bag of words of the captions.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ...errors import UsageError
from .. import stimuli as stim
from .config import DEFAULT_N_TRAIN, SimulationConfig

__all__ = [
    "LOW_LEVEL_CHANNELS",
    "LOW_LEVEL_GRID",
    "StimulusFeatures",
    "low_level_features",
    "write_stimuli_folder",
]

#: Low-level image maps pooled by early voxels, and their grid.
LOW_LEVEL_CHANNELS: tuple[str, ...] = ("luminance", "contrast", "red-green", "blue-yellow")
LOW_LEVEL_GRID = 16

#: A written stimuli folder: the set, its scenes (or None), n_train, semantic features, their
#: names and how they were made.
_Written = tuple[stim.StimulusSet, "list[stim.Scene] | None", int, np.ndarray, list[str], str]


def low_level_features(image: Image.Image, grid: int = LOW_LEVEL_GRID) -> np.ndarray:
    """Low-level maps of an image, pooled on a ``grid`` × ``grid`` lattice.

    Parameters
    ----------
    image : PIL.Image.Image
        Any mode; converted to RGB in [0, 1].
    grid : int
        Side of the output maps.

    Returns
    -------
    numpy.ndarray
        Shape ``(4, grid, grid)``: mean luminance, local contrast (std of luminance within the
        cell), red-green (R - G) and blue-yellow (B - (R + G) / 2), channels in
        :data:`LOW_LEVEL_CHANNELS` order, rows top to bottom.
    """
    cell = 4
    side = grid * cell
    rgb = np.asarray(
        image.convert("RGB").resize((side, side), Image.Resampling.BOX), dtype=np.float64
    )
    rgb = rgb / 255.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    lum = 0.299 * r + 0.587 * g + 0.114 * b

    def cells(x: np.ndarray) -> np.ndarray:
        return x.reshape(grid, cell, grid, cell).swapaxes(1, 2).reshape(grid, grid, cell * cell)

    return np.stack(
        [
            cells(lum).mean(-1),
            cells(lum).std(-1),
            cells(r - g).mean(-1),
            cells(b - (r + g) / 2).mean(-1),
        ]
    )


@dataclass(frozen=True)
class StimulusFeatures:
    """The stimuli of a dataset and what the simulated voxels see of them.

    Attributes
    ----------
    files : list of str
        Image paths relative to ``stimuli/``, in stimulus-index order.
    scenes : list of Scene or None
        The generated scenes (``None`` for a user's images).
    n_train : int
        Training images to show.
    semantic : numpy.ndarray
        Stimuli × semantic features, named by ``semantic_names``; ``semantic_source`` says how
        they were made.
    low : numpy.ndarray
        Stimuli × low-level features (the maps of :func:`low_level_features`, flattened).
    """

    files: list[str]
    scenes: list[stim.Scene] | None
    n_train: int
    semantic: np.ndarray
    semantic_names: list[str]
    semantic_source: str
    low: np.ndarray


def write_stimuli_folder(
    root: Path, cfg: SimulationConfig, user_set: stim.StimulusSet | None
) -> StimulusFeatures:
    """Write ``root/stimuli`` (generated scenes, or a copy of ``user_set``) and their features.

    Raises
    ------
    UsageError
        ``user_set`` has too few images for the training and test sets asked for.
    """
    if user_set is None:
        features = _generated(root, cfg)
    else:
        features = _copied(root, cfg, user_set)
    stim_set, scenes, n_train, semantic, semantic_names, semantic_source = features
    files = stim_set.files
    low = np.stack(
        [low_level_features(stim_set.load_image(f, cfg.image_size)) for f in files]
    ).reshape(len(files), -1)
    return StimulusFeatures(files, scenes, n_train, semantic, semantic_names, semantic_source, low)


def _generated(root: Path, cfg: SimulationConfig) -> _Written:
    n_train = DEFAULT_N_TRAIN if cfg.n_train is None else cfg.n_train
    scenes = stim.generate_scenes(n_train + cfg.n_test, seed=cfg.seed)
    stim_set = stim.write_stimuli(
        root / "stimuli", scenes, size=cfg.image_size, n_captions=cfg.n_captions, seed=cfg.seed
    )
    semantic = np.stack([stim.scene_semantics(s) for s in scenes])
    semantic_names = list(stim.SEMANTIC_FEATURES)
    return stim_set, scenes, n_train, semantic, semantic_names, "scene_semantics"


def _copied(root: Path, cfg: SimulationConfig, user_set: stim.StimulusSet) -> _Written:
    n_avail = len(user_set.files)
    n_train = n_avail - cfg.n_test if cfg.n_train is None else cfg.n_train
    if n_train < 1 or n_train + cfg.n_test > n_avail:
        raise UsageError(
            f"--train {n_train} --test {cfg.n_test}: {user_set.root} has {n_avail} images; "
            "ask for fewer"
        )
    (root / "stimuli").mkdir()
    for name in user_set.files:
        dest = root / "stimuli" / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(user_set.path(name), dest)
    with open(root / "stimuli" / stim.CAPTIONS_FILE, "w", encoding="utf-8") as handle:
        handle.write("stim_file\tcaption\n")
        for name in user_set.files:
            for caption in user_set.captions[name]:
                handle.write(f"{name}\t{caption}\n")
    stim_set = stim.read_stimuli(root / "stimuli")
    semantic, semantic_names = stim.caption_semantics(stim_set.captions)
    return stim_set, None, n_train, semantic, semantic_names, "caption bag-of-words"
