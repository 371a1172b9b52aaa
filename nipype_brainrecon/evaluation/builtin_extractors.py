"""The built-in feature extractors, registered under their names on import."""

from __future__ import annotations

from .extractors import register_extractor
from .lowlevel import lowlevel_factory, pixels_factory
from .networks import (
    alexnet_factory,
    clip_factory,
    efficientnet_factory,
    inception_factory,
    swav_factory,
)
from .scene import scene_factory

for _name, _factory in {
    "pixels": pixels_factory,
    "lowlevel": lowlevel_factory,
    "scene": scene_factory,
    "alexnet": alexnet_factory,
    "inception": inception_factory,
    "clip": clip_factory,
    "efficientnet": efficientnet_factory,
    "swav": swav_factory,
}.items():
    register_extractor(_name, _factory)

#: The full suite of the later papers (needs local weights for all but the first two).
PAPER_EXTRACTORS = ("pixels", "lowlevel", "alexnet", "inception", "clip", "efficientnet", "swav")
