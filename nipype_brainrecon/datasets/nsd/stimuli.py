"""The images a subject saw, cut out of ``nsd_stimuli.hdf5`` (``imgBrick``) as PNG files."""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError
from ...io import atomic_write_bytes
from .trials import stim_file

#: The HDF5 dataset holding the 73,000 images (73000 x 425 x 425 x 3, uint8).
IMAGE_DATASET = "imgBrick"


def open_stimuli(path: Path) -> Any:
    """The ``imgBrick`` dataset of ``nsd_stimuli.hdf5``, checked (N x H x W x 3 uint8).

    The file stays open as long as the returned dataset is referenced; close it with
    ``dataset.file.close()``.
    """
    import h5py

    try:
        handle = h5py.File(path, "r")
    except Exception as exc:  # h5py raises OSError for a truncated or foreign file
        raise DataError(f"{path}: cannot be read as HDF5 ({exc}); fetch a fresh copy") from exc
    dataset = handle.get(IMAGE_DATASET)
    if dataset is None or not hasattr(dataset, "shape"):
        handle.close()
        raise DataError(f"{path}: no dataset {IMAGE_DATASET!r}; is this nsd_stimuli.hdf5?")
    if len(dataset.shape) != 4 or dataset.shape[3] != 3 or dataset.dtype != np.uint8:
        shape, dtype = dataset.shape, dataset.dtype
        handle.close()
        raise DataError(
            f"{path}: {IMAGE_DATASET} is {shape} {dtype}, expected (images, height, width, 3) uint8"
        )
    return dataset


def png_bytes(pixels: np.ndarray) -> bytes:
    """A PNG of an RGB uint8 array, with no time or text chunks (the same bytes on reruns)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def export_stimuli(dataset: Any, nsd_ids: Iterable[int], out_dir: Path) -> list[str]:
    """Write each 73k-ID's image (1-based: row ``id - 1`` of ``imgBrick``) as ``stimuli/``'s PNG.

    Returns the file names written, in the order of ``nsd_ids`` (sorted, unique).
    """
    ids = sorted({int(i) for i in nsd_ids})
    n = dataset.shape[0]
    name = dataset.file.filename
    if ids and (ids[0] < 1 or ids[-1] > n):
        raise DataError(f"{name}: {IMAGE_DATASET} holds {n} images; 73k-ID {ids[-1]} is outside it")
    written = []
    for nsd_id in ids:
        try:
            pixels = np.asarray(dataset[nsd_id - 1])
        except Exception as exc:
            raise DataError(
                f"{name}: cannot read image {nsd_id} of {IMAGE_DATASET} ({exc}); fetch a fresh copy"
            ) from exc
        atomic_write_bytes(out_dir / stim_file(nsd_id), png_bytes(pixels))
        written.append(stim_file(nsd_id))
    return written
