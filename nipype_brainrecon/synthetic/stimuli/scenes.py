"""Scenes of one or two coloured shapes on a uniform background: what they hold, drawing, rendering.

Layout (where the objects are) and meaning (which shapes, colours, sizes and background) vary
independently; everything is deterministic from a seed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw

from ...errors import UsageError

__all__ = [
    "BACKGROUNDS",
    "COLOURS",
    "SHAPES",
    "SIZES",
    "Scene",
    "SceneObject",
    "generate_scenes",
    "render_scene",
]

#: Shapes the generator draws.
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "star", "cross")
#: Object colours (name -> RGB).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 210, 40),
    "purple": (140, 60, 180),
    "orange": (245, 140, 30),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
#: Background colours (name -> RGB).
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "grey": (128, 128, 128),
    "white": (250, 250, 250),
    "black": (12, 12, 12),
    "beige": (225, 210, 175),
}
#: Object sizes (name -> radius as a fraction of the image side).
SIZES: dict[str, float] = {"small": 0.11, "medium": 0.17, "large": 0.25}

_SUPERSAMPLE = 4  # draw larger, then downsample: anti-aliased edges


@dataclass(frozen=True)
class SceneObject:
    """One object of a scene.

    Attributes
    ----------
    shape, colour, size : str
        Keys of :data:`SHAPES`, :data:`COLOURS` and :data:`SIZES`.
    x, y : float
        Centre as a fraction of the image width and height (0, 0 = top left).
    """

    shape: str
    colour: str
    size: str
    x: float
    y: float

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise UsageError(f"shape {self.shape!r}: unknown; use one of {', '.join(SHAPES)}")
        if self.colour not in COLOURS:
            raise UsageError(f"colour {self.colour!r}: unknown; use one of {', '.join(COLOURS)}")
        if self.size not in SIZES:
            raise UsageError(f"size {self.size!r}: unknown; use one of {', '.join(SIZES)}")
        if not (0.0 <= self.x <= 1.0 and 0.0 <= self.y <= 1.0):
            raise UsageError(f"object position ({self.x}, {self.y}): must lie within [0, 1]")

    @property
    def radius(self) -> float:
        """Radius as a fraction of the image side."""
        return SIZES[self.size]


@dataclass(frozen=True)
class Scene:
    """A scene: one or two objects on a uniform background.

    Attributes
    ----------
    objects : tuple of SceneObject
        The objects, drawn in order.
    background : str
        A key of :data:`BACKGROUNDS`.
    """

    objects: tuple[SceneObject, ...]
    background: str = "grey"

    def __post_init__(self) -> None:
        if not 1 <= len(self.objects) <= 2:
            raise UsageError(f"scene with {len(self.objects)} objects: use one or two")
        if self.background not in BACKGROUNDS:
            raise UsageError(
                f"background {self.background!r}: unknown; use one of {', '.join(BACKGROUNDS)}"
            )

    def to_dict(self) -> dict:
        """A JSON-serialisable description."""
        return {"background": self.background, "objects": [asdict(o) for o in self.objects]}

    @classmethod
    def from_dict(cls, data: dict) -> Scene:
        """Inverse of :meth:`to_dict`."""
        return cls(
            objects=tuple(SceneObject(**o) for o in data["objects"]),
            background=data["background"],
        )


# ----------------------------------------------------------------------------- generation


def _sample_scene(rng: np.random.Generator) -> Scene:
    background = str(rng.choice(list(BACKGROUNDS)))
    colours = [c for c in COLOURS if c != background]
    n_objects = int(rng.integers(1, 3))
    for _ in range(100):
        objects = []
        for _ in range(n_objects):
            size = str(rng.choice(list(SIZES)))
            r = SIZES[size]
            objects.append(
                SceneObject(
                    shape=str(rng.choice(SHAPES)),
                    colour=str(rng.choice(colours)),
                    size=size,
                    x=round(float(rng.uniform(r, 1 - r)), 4),
                    y=round(float(rng.uniform(r, 1 - r)), 4),
                )
            )
        if n_objects == 1:
            return Scene(tuple(objects), background)
        a, b = objects
        # Distinct objects that do not overlap, so both can be seen and named.
        distinct = (a.shape, a.colour) != (b.shape, b.colour)
        gap = np.hypot(a.x - b.x, a.y - b.y) - a.radius - b.radius
        if distinct and gap > 0.03:
            return Scene(tuple(objects), background)
    # Practically unreachable: fall back to one object.
    return Scene((objects[0],), background)


def generate_scenes(n: int, seed: int = 0) -> list[Scene]:
    """Draw ``n`` distinct random scenes, deterministically from ``seed``.

    Parameters
    ----------
    n : int
        Number of scenes (>= 1).
    seed : int
        Random seed.

    Returns
    -------
    list of Scene

    Examples
    --------
    >>> scenes = generate_scenes(3, seed=1)
    >>> scenes == generate_scenes(3, seed=1)
    True
    """
    if n < 1:
        raise UsageError(f"number of scenes {n}: must be at least 1")
    rng = np.random.default_rng([seed, 0x5C3E])
    scenes: list[Scene] = []
    seen: set[Scene] = set()
    while len(scenes) < n:
        scene = _sample_scene(rng)
        if scene not in seen:
            seen.add(scene)
            scenes.append(scene)
    return scenes


def _shape_polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "square":
        s = r * 0.85
        return [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)]
    if shape == "triangle":
        angles = np.deg2rad([-90, 30, 150])
        return [(cx + r * np.cos(a), cy + r * np.sin(a) + 0.15 * r) for a in angles]
    if shape == "diamond":
        return [(cx, cy - r), (cx + 0.75 * r, cy), (cx, cy + r), (cx - 0.75 * r, cy)]
    if shape == "star":
        points = []
        for k in range(10):
            a = np.deg2rad(-90 + 36 * k)
            rk = r if k % 2 == 0 else 0.42 * r
            points.append((cx + rk * np.cos(a), cy + rk * np.sin(a)))
        return points
    if shape == "cross":
        t = 0.3 * r
        return [
            (cx - t, cy - r), (cx + t, cy - r), (cx + t, cy - t), (cx + r, cy - t),
            (cx + r, cy + t), (cx + t, cy + t), (cx + t, cy + r), (cx - t, cy + r),
            (cx - t, cy + t), (cx - r, cy + t), (cx - r, cy - t), (cx - t, cy - t),
        ]  # fmt: skip
    raise UsageError(f"shape {shape!r}: unknown; use one of {', '.join(SHAPES)}")


def render_scene(scene: Scene, size: int = 128) -> Image.Image:
    """Draw a scene as an RGB image of ``size`` × ``size`` pixels.

    Parameters
    ----------
    scene : Scene
    size : int
        Side in pixels (>= 8).

    Returns
    -------
    PIL.Image.Image
        Mode ``RGB``.
    """
    if size < 8:
        raise UsageError(f"image size {size}: must be at least 8 pixels")
    big = size * _SUPERSAMPLE
    img = Image.new("RGB", (big, big), BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(img)
    for obj in scene.objects:
        cx, cy, r = obj.x * big, obj.y * big, obj.radius * big
        fill = COLOURS[obj.colour]
        if obj.shape == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        else:
            draw.polygon(_shape_polygon(obj.shape, cx, cy, r), fill=fill)
    return img.resize((size, size), Image.Resampling.LANCZOS)
