"""Licence-free default stimuli: small scenes of coloured shapes, with captions.

Each scene holds one or two objects (shape, colour, size, position) on a uniform background.
Layout (where the objects are) and meaning (which shapes, colours, sizes and background) vary
independently, so that an image latent z carries layout and a caption embedding c carries meaning.

Everything is deterministic from a seed. The same module reads a user's own stimuli: any folder of
images with a ``captions.tsv`` table (columns ``stim_file`` and ``caption``, several rows per image).
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..errors import DataError, MissingInputError, UsageError
from ..io import atomic_write_bytes, atomic_write_text

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

#: Names of the entries of :func:`scene_semantics`.
SEMANTIC_FEATURES: tuple[str, ...] = (
    tuple(f"shape-{s}" for s in SHAPES)
    + tuple(f"colour-{c}" for c in COLOURS)
    + tuple(f"size-{z}" for z in SIZES)
    + tuple(f"background-{b}" for b in BACKGROUNDS)
)

#: Name of the captions table inside a stimuli folder.
CAPTIONS_FILE = "captions.tsv"
#: Image file suffixes recognised in a stimuli folder.
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
)

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


@dataclass
class StimulusSet:
    """A folder of images with their captions.

    Attributes
    ----------
    root : pathlib.Path
        The stimuli folder.
    files : list of str
        Image paths relative to ``root`` (POSIX separators), sorted.
    captions : dict
        ``files`` entry -> list of its captions, in table order.
    """

    root: Path
    files: list[str]
    captions: dict[str, list[str]] = field(default_factory=dict)

    def path(self, stim_file: str) -> Path:
        """Absolute path of one image."""
        return self.root / stim_file

    def load_image(self, stim_file: str, size: int | None = None) -> Image.Image:
        """The image as RGB, optionally resized to ``size`` × ``size`` (Lanczos)."""
        with Image.open(self.path(stim_file)) as img:
            rgb = img.convert("RGB")
        if size is not None and rgb.size != (size, size):
            rgb = rgb.resize((size, size), Image.Resampling.LANCZOS)
        return rgb


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


# ----------------------------------------------------------------------------- captions


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _np(obj: SceneObject, *, with_size: bool) -> str:
    """Noun phrase with its article, e.g. 'a small red triangle', 'an orange star'."""
    words = ([obj.size] if with_size else []) + [obj.colour, obj.shape]
    return f"{_article(words[0])} {' '.join(words)}"


def _where(obj: SceneObject) -> str:
    h = "left" if obj.x < 1 / 3 else "right" if obj.x > 2 / 3 else "centre"
    v = "top" if obj.y < 1 / 3 else "bottom" if obj.y > 2 / 3 else "middle"
    if h == "centre" and v == "middle":
        return "in the centre"
    if v == "middle":
        return f"on the {h}"
    if h == "centre":
        return f"at the {v}"
    return f"in the {v} {h} corner"


def _relation(a: SceneObject, b: SceneObject) -> str:
    """Where ``a`` is relative to ``b``."""
    dx, dy = b.x - a.x, b.y - a.y
    if abs(dx) >= abs(dy):
        return "on the left of" if dx > 0 else "on the right of"
    return "above" if dy > 0 else "below"


def _one_object_captions(o: SceneObject, bg: str) -> list[str]:
    return [
        f"{_np(o, with_size=True)} on a {bg} background",
        f"{_np(o, with_size=False)} {_where(o)}",
        f"a picture of {_np(o, with_size=True)}",
        f"a {bg} background with {_np(o, with_size=False)} {_where(o)}",
        f"one {o.size} {o.shape}, coloured {o.colour}, {_where(o)}",
        f"a single {o.colour} {o.shape} against {bg}",
    ]


def _two_object_captions(a: SceneObject, b: SceneObject, bg: str) -> list[str]:
    return [
        f"{_np(a, with_size=True)} {_relation(a, b)} {_np(b, with_size=False)}",
        f"{_np(a, with_size=False)} and {_np(b, with_size=False)} on a {bg} background",
        f"two shapes: {_np(a, with_size=True)} and {_np(b, with_size=True)}",
        f"a {bg} picture with {_np(b, with_size=False)} and {_np(a, with_size=False)}",
        f"{_np(b, with_size=False)} {_relation(b, a)} {_np(a, with_size=True)} on {bg}",
        f"{_np(b, with_size=True)} next to {_np(a, with_size=False)}",
    ]


def scene_captions(
    scene: Scene, n_captions: int = 5, rng: np.random.Generator | int | None = None
) -> list[str]:
    """Captions of a scene, each from a different template.

    Every caption names every object's shape and colour; templates differ in whether they give
    size, position, spatial relation or background.

    Parameters
    ----------
    scene : Scene
    n_captions : int
        Number of captions (1 to 6).
    rng : numpy.random.Generator or int, optional
        Chooses which templates; ``None`` takes the first ``n_captions`` templates.

    Returns
    -------
    list of str
    """
    if len(scene.objects) == 1:
        candidates = _one_object_captions(scene.objects[0], scene.background)
    else:
        candidates = _two_object_captions(*scene.objects, scene.background)
    if not 1 <= n_captions <= len(candidates):
        raise UsageError(f"captions per image {n_captions}: use 1 to {len(candidates)}")
    if rng is None:
        return candidates[:n_captions]
    rng = np.random.default_rng(rng)
    order = rng.permutation(len(candidates))[:n_captions]
    return [candidates[i] for i in order]


# ----------------------------------------------------------------------------- semantics


def scene_semantics(scene: Scene) -> np.ndarray:
    """Fixed-length semantic vector of a scene: what is there, not where.

    Entries (named by :data:`SEMANTIC_FEATURES`): count of objects of each shape, of each colour,
    of each size, and a one-hot background colour. Positions do not enter, so two scenes with the
    same objects in different places have the same vector.

    Parameters
    ----------
    scene : Scene

    Returns
    -------
    numpy.ndarray
        Shape ``(len(SEMANTIC_FEATURES),)``, float64.
    """
    vec = np.zeros(len(SEMANTIC_FEATURES))
    index = {name: i for i, name in enumerate(SEMANTIC_FEATURES)}
    for obj in scene.objects:
        vec[index[f"shape-{obj.shape}"]] += 1
        vec[index[f"colour-{obj.colour}"]] += 1
        vec[index[f"size-{obj.size}"]] += 1
    vec[index[f"background-{scene.background}"]] = 1
    return vec


_STOPWORDS = frozenset(
    "a an the of on in at to and with one two is are by for from its it this that next against "
    "picture image photo coloured colored shapes shape single".split()
)


def caption_semantics(
    captions: dict[str, list[str]], max_words: int = 64
) -> tuple[np.ndarray, list[str]]:
    """Bag-of-words semantic vectors from captions (for stimuli without a :class:`Scene`).

    The vocabulary is the ``max_words`` content words found in the most images (ties broken
    alphabetically), skipping stop words and words seen in a single image. Each image's entry is
    the fraction of its captions that contain the word.

    Parameters
    ----------
    captions : dict
        Image -> list of captions.
    max_words : int
        Vocabulary size at most.

    Returns
    -------
    features : numpy.ndarray
        Shape ``(len(captions), n_words)``, rows in ``captions`` order.
    vocabulary : list of str
    """
    tokenised = {
        k: [set(re.findall(r"[a-z]+", c.lower())) - _STOPWORDS for c in v]
        for k, v in captions.items()
    }
    doc_freq: Counter[str] = Counter()
    for sets in tokenised.values():
        doc_freq.update(set().union(*sets) if sets else set())
    vocab = sorted((w for w, n in doc_freq.items() if n >= 2), key=lambda w: (-doc_freq[w], w))
    vocab = sorted(vocab[:max_words])
    features = np.zeros((len(captions), len(vocab)))
    col = {w: j for j, w in enumerate(vocab)}
    for i, sets in enumerate(tokenised.values()):
        for words in sets:
            for w in words:
                if w in col:
                    features[i, col[w]] += 1.0 / len(sets)
    return features, vocab


# ----------------------------------------------------------------------------- folders


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def write_stimuli(
    out_dir: str | os.PathLike,
    scenes: list[Scene],
    *,
    size: int = 128,
    n_captions: int = 5,
    seed: int = 0,
) -> StimulusSet:
    """Render scenes into ``out_dir`` as ``stim-0001.png``, ... plus ``captions.tsv``.

    Parameters
    ----------
    out_dir : path
        Folder to write (created if needed).
    scenes : list of Scene
    size : int
        Image side in pixels.
    n_captions : int
        Captions per image.
    seed : int
        Chooses the caption templates of each image.

    Returns
    -------
    StimulusSet
        The written folder.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 0xCA97])
    files, captions = [], {}
    width = max(4, len(str(len(scenes))))
    for i, scene in enumerate(scenes, start=1):
        name = f"stim-{i:0{width}d}.png"
        atomic_write_bytes(out / name, _png_bytes(render_scene(scene, size)))
        files.append(name)
        captions[name] = scene_captions(scene, n_captions, rng)
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t", lineterminator="\n")
    writer.writerow(["stim_file", "caption"])
    for name in files:
        for caption in captions[name]:
            writer.writerow([name, caption])
    atomic_write_text(out / CAPTIONS_FILE, buf.getvalue())
    return StimulusSet(root=out, files=files, captions=captions)


def read_stimuli(folder: str | os.PathLike) -> StimulusSet:
    """Read a folder of images and its ``captions.tsv`` (long format, several rows per image).

    Parameters
    ----------
    folder : path
        Holds the images (subfolders allowed) and ``captions.tsv`` with columns ``stim_file``
        (path relative to the folder) and ``caption``.

    Returns
    -------
    StimulusSet

    Raises
    ------
    MissingInputError
        The folder, the table or an image the table lists is absent.
    DataError
        The table lacks a column, a caption is empty, or an image has no caption.
    """
    root = Path(folder)
    if not root.is_dir():
        raise MissingInputError(f"{root}: stimuli folder not found; give an existing folder")
    table = root / CAPTIONS_FILE
    if not table.is_file():
        raise MissingInputError(
            f"{table}: captions table not found; add a TSV with columns stim_file and caption"
        )
    with open(table, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        rows = list(reader)
    if not rows:
        raise DataError(
            f"{table}: empty; add a header 'stim_file<TAB>caption' and one row per caption"
        )
    header = [h.strip() for h in rows[0]]
    for column in ("stim_file", "caption"):
        if column not in header:
            raise DataError(
                f"{table}: no column {column!r} (found {', '.join(header)}); "
                "use columns stim_file and caption"
            )
    i_file, i_cap = header.index("stim_file"), header.index("caption")
    captions: dict[str, list[str]] = {}
    for line_no, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        stim = row[i_file].strip() if i_file < len(row) else ""
        caption = row[i_cap].strip() if i_cap < len(row) else ""
        if not stim:
            raise DataError(f"{table}: line {line_no} has no stim_file; fill it or remove the line")
        if not caption:
            raise DataError(f"{table}: line {line_no} ({stim}) has an empty caption; write one")
        stim = Path(stim).as_posix()
        if not (root / stim).is_file():
            raise MissingInputError(
                f"{root / stim}: image listed in {CAPTIONS_FILE} (line {line_no}) not found; "
                "add it or remove its rows"
            )
        captions.setdefault(stim, []).append(caption)
    images = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )
    if not images:
        raise MissingInputError(f"{root}: no images found; add PNG or JPEG files")
    for image in images:
        if image not in captions:
            raise DataError(
                f"{root / image}: image has no caption in {CAPTIONS_FILE}; add at least one row"
            )
    for stim in captions:
        if Path(stim).suffix.lower() not in IMAGE_EXTENSIONS:
            raise DataError(
                f"{table}: {stim} is not an image file ({', '.join(IMAGE_EXTENSIONS)}); fix the name"
            )
    return StimulusSet(root=root, files=images, captions={k: captions[k] for k in images})
