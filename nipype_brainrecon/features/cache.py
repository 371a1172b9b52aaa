"""The on-disk feature cache: content hashes, keys, atomic ``.npy`` files, the gathered rows.

One ``.npy`` file per item (never pickled, written atomically, readable by all), under a key
made of the item's content hash (or text), the model identity and the settings
(:func:`cache_key`); an unreadable entry is recomputed. :class:`FeatureRows` gathers cached and
computed rows into one array.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, MissingInputError
from ..io import atomic_write_bytes

#: Bump when the meaning of a cached array changes, so old caches are ignored.
CACHE_FORMAT = 1


PathLike = str | os.PathLike


def file_sha256(path: PathLike) -> str:
    """SHA-256 hex digest of a file's bytes.

    Raises
    ------
    MissingInputError
        The file does not exist.
    """
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except FileNotFoundError as exc:
        raise MissingInputError(f"{path}: image not found; check the stimulus path") from exc
    except IsADirectoryError as exc:
        raise MissingInputError(f"{path}: is a folder, not an image file") from exc
    return digest.hexdigest()


def cache_key(fields: Mapping[str, Any]) -> str:
    """SHA-256 of ``fields`` (and :data:`CACHE_FORMAT`) as sorted JSON: the entry's name."""
    payload = json.dumps({"format": CACHE_FORMAT, **fields}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def cache_path(cache_dir: Path, kind: str, key: str) -> Path:
    """``<cache_dir>/<kind>/<key[:2]>/<key>.npy``."""
    return cache_dir / kind / key[:2] / f"{key}.npy"


def cache_read(path: Path) -> np.ndarray | None:
    """The cached array, or ``None`` if absent or unreadable (then it is recomputed)."""
    if not path.is_file():
        return None
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None


def cache_write(path: Path, array: np.ndarray) -> None:
    """Write ``array`` as a ``.npy`` file atomically (no pickles), readable by all."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())
    # The cache is meant to be shared (across subjects, maybe users): readable like a normal file.
    os.chmod(path, 0o644)


class FeatureRows:
    """Output array allocated once the first item's shape is known."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.array: np.ndarray | None = None

    def put(self, index: int, value: np.ndarray) -> None:
        """Store row ``index``; errors if its shape differs from the rows before."""
        if self.array is None:
            self.array = np.empty((self.n, *value.shape), dtype=np.float32)
        elif value.shape != self.array.shape[1:]:
            raise DataError(
                f"feature shape {value.shape} differs from {self.array.shape[1:]} of the other "
                "items; clear the feature cache folder"
            )
        self.array[index] = value

    def fill_from_cache(self, paths: Sequence[Path | None]) -> list[int]:
        """Put the cached rows in place; the indices of the others (no path, or not cached)."""
        missing: list[int] = []
        for i, path in enumerate(paths):
            if path is not None:
                cached = cache_read(path)
                if cached is not None:
                    self.put(i, cached)
                    continue
            missing.append(i)
        return missing
