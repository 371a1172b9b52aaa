"""Stimuli folders: images with a ``captions.tsv`` table, written from scenes or read from a user.

A stimuli folder is any folder of images with a ``captions.tsv`` table (columns ``stim_file`` and
``caption``, several rows per image).
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ...errors import DataError, MissingInputError
from ...io import atomic_write_bytes, atomic_write_text
from .captions import scene_captions
from .scenes import Scene, render_scene

__all__ = ["CAPTIONS_FILE", "IMAGE_EXTENSIONS", "StimulusSet", "read_stimuli", "write_stimuli"]

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
