"""One session's NSD betas, int16 x 300, streamed into a float32 percent-signal-change NIfTI.

The source is read one volume (trial) at a time and the output written one volume at a time
through a gzip stream with no name and time 0, so memory stays at a few volumes whatever the
session's size and reruns give byte-identical files.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import IO, Any

import numpy as np

from ...errors import DataError
from ...io import atomic_write_with
from .layout import BETA_SCALE


def open_betas(path: Path) -> Any:
    """The session's image, unloaded, checked to be 4-D int16 as the release stores it."""
    import nibabel as nib

    try:
        image = nib.load(path, keep_file_open=True)
    except Exception as exc:
        raise DataError(f"{path}: cannot be read as NIfTI ({exc}); fetch a fresh copy") from exc
    if len(image.shape) != 4:
        raise DataError(f"{path}: betas have shape {image.shape}, expected 4-D (x, y, z, trials)")
    dtype = image.header.get_data_dtype()
    if dtype != np.int16:
        raise DataError(
            f"{path}: betas stored as {dtype}, expected int16 (percent signal change x 300) "
            "as in the NSD release"
        )
    return image


def write_session_betas(source: Any, target: Path, *, zscore: bool = False) -> Path:
    """Write ``source``'s betas divided by 300 (percent signal change) as float32 NIfTI.

    Parameters
    ----------
    source : nibabel image
        From :func:`open_betas`.
    target : path
        The ``.nii.gz`` to write (atomically).
    zscore : bool
        Standardise each voxel over the session's trials (mean 0, SD 1, ``ddof=0``) instead;
        voxels constant over the session (outside the release's brain mask) become 0.
    """
    header = _float_header(source)
    n = source.shape[3]
    offset = scale = None
    if zscore:
        offset, scale = _session_moments(source)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as raw:
            stream = _DeterministicGzip(raw)
            header.write_to(stream)
            stream.pad_to(int(header.get_data_offset()))
            for t in range(n):
                volume = _read_volume(source, t)
                if zscore:
                    volume = (volume - offset) * scale
                stream.write(np.asarray(volume, dtype="<f4").tobytes(order="F"))
            stream.finish()

    return atomic_write_with(target, write)


def _read_volume(source: Any, t: int) -> np.ndarray:
    """Trial ``t`` in percent signal change (float64, to keep the division exact)."""
    try:
        raw = np.asarray(source.dataobj[..., t])
    except Exception as exc:
        name = source.get_filename()
        raise DataError(f"{name}: cannot read volume {t + 1} ({exc}); fetch a fresh copy") from exc
    return raw.astype(np.float64) / BETA_SCALE


def _session_moments(source: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-voxel mean and 1/SD over the trials (1/SD = 0 where the SD is 0)."""
    total = np.zeros(source.shape[:3])
    squares = np.zeros(source.shape[:3])
    n = source.shape[3]
    for t in range(n):
        volume = _read_volume(source, t)
        total += volume
        squares += volume * volume
    mean = total / n
    var = np.maximum(squares / n - mean * mean, 0.0)
    sd = np.sqrt(var)
    inv = np.divide(1.0, sd, out=np.zeros_like(sd), where=sd > 1e-12)
    return mean, inv


def _float_header(source: Any) -> Any:
    """A float32, unscaled NIfTI-1 header with ``source``'s grid, affines and codes."""
    import nibabel as nib

    old = source.header
    header = nib.Nifti1Header()
    header.set_data_shape(source.shape)
    header.set_data_dtype(np.float32)
    header.set_zooms(old.get_zooms())
    header.set_qform(source.affine, code=int(old["qform_code"]) or 1)
    header.set_sform(source.affine, code=int(old["sform_code"]) or 1)
    header.set_xyzt_units(xyz="mm")
    header.set_slope_inter(1.0, 0.0)
    header["descrip"] = b"NSD betas, percent signal change"
    return header


class _DeterministicGzip:
    """Write-only gzip of a byte stream (level 1): zlib's wrapper, no file name, time 0."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._zip = zlib.compressobj(1, zlib.DEFLATED, 31)  # level 1: 3x faster than 6
        self.position = 0

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._raw.write(self._zip.compress(view))
        self.position += view.nbytes
        return view.nbytes

    def pad_to(self, offset: int) -> None:
        if offset < self.position:
            raise DataError(f"NIfTI header longer ({self.position}) than its data offset {offset}")
        self.write(bytes(offset - self.position))

    def finish(self) -> None:
        self._raw.write(self._zip.flush())
