"""Licence-free default stimuli: small scenes of coloured shapes, with captions.

Each scene holds one or two objects (shape, colour, size, position) on a uniform background.
Layout (where the objects are) and meaning (which shapes, colours, sizes and background) vary
independently, so that an image latent z carries layout and a caption embedding c carries meaning.

Everything is deterministic from a seed. The same package reads a user's own stimuli: any folder of
images with a ``captions.tsv`` table (columns ``stim_file`` and ``caption``, several rows per image).

Modules
-------
scenes
    The scene model (:class:`SceneObject`, :class:`Scene`, the shape, colour, size and background
    palettes), random generation and rendering.
captions
    Captions of a scene and semantic vectors (of a scene, or a bag of words of captions).
folders
    Stimuli folders: writing rendered scenes with ``captions.tsv``, reading a user's folder.
"""

from .captions import SEMANTIC_FEATURES, caption_semantics, scene_captions, scene_semantics
from .folders import CAPTIONS_FILE, IMAGE_EXTENSIONS, StimulusSet, read_stimuli, write_stimuli
from .scenes import (
    BACKGROUNDS,
    COLOURS,
    SHAPES,
    SIZES,
    Scene,
    SceneObject,
    generate_scenes,
    render_scene,
)

__all__ = [
    "BACKGROUNDS",
    "CAPTIONS_FILE",
    "COLOURS",
    "IMAGE_EXTENSIONS",
    "SEMANTIC_FEATURES",
    "SHAPES",
    "SIZES",
    "Scene",
    "SceneObject",
    "StimulusSet",
    "caption_semantics",
    "generate_scenes",
    "read_stimuli",
    "render_scene",
    "scene_captions",
    "scene_semantics",
    "write_stimuli",
]
