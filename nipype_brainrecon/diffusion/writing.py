"""Writing reconstructions as PNG files with BIDS-style names, all or nothing."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, OutputError, UsageError
from ..io import atomic_write_bytes
from .checks import check_stim_ids

_LABEL = re.compile(r"[^A-Za-z0-9]+")


def bids_label(value: Any) -> str:
    """A BIDS entity label from any id: non-alphanumeric characters dropped.

    Examples
    --------
    >>> bids_label("nsd_00042.png")
    'nsd00042png'
    """
    label = _LABEL.sub("", str(value))
    if not label:
        raise DataError(f"stim id {value!r}: has no letters or digits to name a file with")
    return label


def save_reconstructions(
    images: np.ndarray,
    stim_ids: Sequence[Any],
    out_dir: str | os.PathLike,
    *,
    sample_indices: Sequence[int] | None = None,
    prefix: str = "",
    suffix: str = "recon",
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write reconstructions as PNG files ``<prefix>stim-<id>_sample-<k>_<suffix>.png``.

    All files are written to a temporary folder first and moved into ``out_dir`` only when
    every one is written, so a failure leaves ``out_dir`` as it was.

    Parameters
    ----------
    images : numpy.ndarray
        uint8, shape (n_images, n_samples, H, W, 3) (as :func:`reconstruct` returns).
    stim_ids : sequence
        One id per image; made a BIDS label with :func:`bids_label`.
    out_dir : path
        Folder to write into (created if needed).
    sample_indices : sequence of int, optional
        The sample index of each column of ``images`` (default ``0 .. n_samples - 1``).
    prefix : str
        Prepended to every name (e.g. ``"sub-01_"``).
    suffix : str
        The name's suffix (``recon``).
    metadata : mapping, optional
        Written into each PNG as text chunks (with ``stim_id`` and ``sample`` added).
    overwrite : bool
        Replace existing files of the same names; otherwise they are an error.

    Returns
    -------
    list of pathlib.Path
        The files written, image by image, sample by sample.
    """
    from PIL import Image, PngImagePlugin

    array = np.asarray(images)
    if array.dtype != np.uint8 or array.ndim != 5 or array.shape[-1] != 3:
        raise DataError(
            f"images: expected uint8 of shape (n_images, n_samples, H, W, 3), got "
            f"{array.dtype} {array.shape}; pass what reconstruct returns"
        )
    ids = check_stim_ids(stim_ids, array.shape[0])
    samples = list(range(array.shape[1])) if sample_indices is None else list(sample_indices)
    if len(samples) != array.shape[1]:
        raise UsageError(
            f"sample_indices: {len(samples)} given for {array.shape[1]} samples per image"
        )
    labels = [bids_label(s) for s in ids]
    if len(set(labels)) != len(labels):
        raise DataError(
            "stim_ids: two ids give the same file label once non-alphanumerics are dropped"
        )
    out = Path(out_dir)
    names = [
        (i, j, f"{prefix}stim-{labels[i]}_sample-{int(k)}_{suffix}.png")
        for i in range(array.shape[0])
        for j, k in enumerate(samples)
    ]
    if not overwrite:
        existing = [name for _, _, name in names if (out / name).exists()]
        if existing:
            raise OutputError(
                f"{out / existing[0]}: already exists; choose another folder or pass overwrite=True"
            )
    try:
        out.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".recon-partial-", dir=out))
    except OSError as exc:
        raise OutputError(f"{out}: cannot create the output folder ({exc.strerror})") from exc
    try:
        written = []
        for i, j, name in names:
            info = PngImagePlugin.PngInfo()
            for key, value in {
                **(metadata or {}),
                "stim_id": ids[i],
                "sample": samples[j],
            }.items():
                info.add_text(str(key), str(value))
            buffer = _png_bytes(Image.fromarray(array[i, j]), info)
            atomic_write_bytes(scratch / name, buffer)
            written.append(name)
        for name in written:
            os.replace(scratch / name, out / name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return [out / name for _, _, name in names]


def _png_bytes(image: Any, info: Any) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()
