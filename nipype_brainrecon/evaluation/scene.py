"""The ``"scene"`` extractor: the object colours and background of the synthetic stimuli.

A weights-free semantic metric for the package's simulated stimuli only. Their palette is
copied here (:data:`OBJECT_COLOURS`, :data:`BACKGROUND_COLOURS`) so that scoring never imports
the simulator; a test checks the copy equals
:data:`nipype_brainrecon.synthetic.stimuli.COLOURS` and ``BACKGROUNDS``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import UsageError
from .extractors import FeatureExtractor
from .images import check_images, resize_images

#: Object colours (name -> RGB) of the simulator's palette
#: (:data:`nipype_brainrecon.synthetic.stimuli.COLOURS`), in its order.
OBJECT_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 210, 40),
    "purple": (140, 60, 180),
    "orange": (245, 140, 30),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
#: Background colours (name -> RGB) of the simulator's palette
#: (:data:`nipype_brainrecon.synthetic.stimuli.BACKGROUNDS`), in its order.
BACKGROUND_COLOURS: dict[str, tuple[int, int, int]] = {
    "grey": (128, 128, 128),
    "white": (250, 250, 250),
    "black": (12, 12, 12),
    "beige": (225, 210, 175),
}


def scene_colour_features(
    images: Any,
    *,
    size: int = 64,
    object_colours: Mapping[str, Sequence[int]] = OBJECT_COLOURS,
    backgrounds: Mapping[str, Sequence[int]] = BACKGROUND_COLOURS,
) -> dict[str, np.ndarray]:
    """What the captions of the package's synthetic stimuli name: object colours, background.

    A weights-free stand-in for a semantic (CLIP-like) feature, meaningful only for stimuli drawn
    from a known palette (by default the simulator's: :data:`OBJECT_COLOURS` objects on
    :data:`BACKGROUND_COLOURS`); not for natural images. The background is the palette
    background nearest to the image's median colour; a pixel belongs to an object
    when a palette object colour is at most half as far from it as that background (so that the
    blends at anti-aliased or blurred edges do not count). ``"Scene(colours)"`` is
    each object colour's share of the object pixels (all zero when there are none) followed by
    the one-hot background: ``len(object_colours) + len(backgrounds)`` values. Shares, not pixel
    counts, so that *which* colours appear matters rather than how large the objects are.

    Parameters
    ----------
    images : ndarray (n, H, W, 3)
        uint8 or floats in [0, 1].
    size : int
        Side the images are resized to first (px).
    object_colours, backgrounds : mapping of name to RGB (0-255)
        The palette.

    Returns
    -------
    dict of str to ndarray (n, d)
    """
    arr = check_images(images, "images", ndims=(4,))
    if not object_colours or not backgrounds:
        raise UsageError(
            "scene colour features: give at least one object and one background colour"
        )
    rgb = resize_images(arr, int(size)).astype(np.float64).reshape(len(arr), -1, 3) * 255.0
    objects = np.asarray(list(object_colours.values()), np.float64)
    grounds = np.asarray(list(backgrounds.values()), np.float64)
    median = np.median(rgb, axis=1)
    ground = ((median[:, None, :] - grounds[None]) ** 2).sum(-1).argmin(1)
    to_objects = ((rgb[:, :, None, :] - objects[None, None]) ** 2).sum(-1)
    to_ground = ((rgb - grounds[ground][:, None, :]) ** 2).sum(-1)
    nearest = to_objects.argmin(-1)
    is_object = to_objects.min(-1) < 0.25 * to_ground  # at most half as far: not edge blends
    counts = np.stack(
        [(is_object & (nearest == k)).sum(1) for k in range(len(objects))], axis=1
    ).astype(np.float64)
    shares = counts / np.maximum(counts.sum(1, keepdims=True), 1.0)
    return {"Scene(colours)": np.concatenate([shares, np.eye(len(grounds))[ground]], axis=1)}


def scene_factory(*, batch_size: int = 64, **kwargs: Any) -> FeatureExtractor:
    """Object colours and background of synthetic stimuli (see :func:`scene_colour_features`)."""
    scene_colour_features(np.zeros((1, 16, 16, 3), np.uint8), **kwargs)  # check kwargs early

    def fn(images: np.ndarray) -> dict[str, np.ndarray]:
        return scene_colour_features(images, **kwargs)

    return FeatureExtractor(
        "scene", {"Scene(colours)": "identification"}, fn, batch_size=batch_size
    )
