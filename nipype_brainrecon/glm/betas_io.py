"""Betas on disk and across runs: combining runs, writing betas and trials tables (reproducible
gzip), loading precomputed betas."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import nibabel as nib
import numpy as np
import pandas as pd

from ..errors import DataError, UsageError
from ..io import atomic_write_text, atomic_write_with, removed_on_failure
from .events import stim_id
from .inputs import load_image, read_table, source_name


def betas_image(data: np.ndarray, ref: nib.spatialimages.SpatialImage) -> nib.Nifti1Image:
    """A float32 betas image with ``ref``'s affine, qform/sform codes and spatial units."""
    img = nib.Nifti1Image(data, ref.affine)
    hdr = ref.header
    if isinstance(hdr, nib.Nifti1Header):
        if int(hdr["qform_code"]):
            img.header.set_qform(*hdr.get_qform(coded=True))
        if int(hdr["sform_code"]):
            img.header.set_sform(*hdr.get_sform(coded=True))
        img.header.set_xyzt_units(xyz=hdr.get_xyzt_units()[0])
    img.header.set_data_dtype(np.float32)
    img.header.set_zooms(tuple(ref.header.get_zooms()[:3]) + (1.0,))
    return img


def combine_runs(
    runs: Sequence[tuple[nib.spatialimages.SpatialImage, pd.DataFrame]],
) -> tuple[nib.Nifti1Image, pd.DataFrame]:
    """Concatenate the betas and trials tables of several runs (in the order given).

    Raises
    ------
    UsageError
        No run, or two runs with the same ``run`` label.
    DataError
        Runs on different grids, or a table whose length differs from its image's volumes.
    """
    if not runs:
        raise UsageError("combine_runs: no run given")
    ref = runs[0][0]
    labels: list[object] = []
    for img, table in runs:
        name = source_name(img, "<betas image>")
        if img.shape[:3] != ref.shape[:3] or not np.allclose(img.affine, ref.affine, atol=1e-4):
            raise DataError(f"{name}: betas grid differs from the first run's; use one space")
        n = img.shape[3] if len(img.shape) == 4 else 1
        if n != len(table):
            raise DataError(f"{name}: {n} volumes but {len(table)} rows in its trials table")
        labels.extend(pd.unique(table["run"]).tolist())
    if len(labels) != len(set(labels)):
        raise UsageError(
            f"combine_runs: run labels repeat ({labels}); pass run= to estimate_single_trial_betas"
        )
    data = np.concatenate(
        [np.asarray(img.dataobj, dtype=np.float32).reshape(*ref.shape[:3], -1) for img, _ in runs],
        axis=3,
    )
    table = pd.concat([t for _, t in runs], ignore_index=True)
    table.attrs = {}
    return betas_image(data, ref), table


class _GzipStream(io.RawIOBase):
    """A write-only gzip stream with the bytes of ``gzip.compress(data, 6, mtime=0)`` (zlib's
    gzip wrapper: no name, time 0), so reruns give identical files; seeks only forward (zeros),
    as nibabel asks to reach the data offset."""

    def __init__(self, raw: IO[bytes]) -> None:
        import zlib

        super().__init__()
        self._raw = raw
        self._zip = zlib.compressobj(6, zlib.DEFLATED, 31)
        self._position = 0

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._raw.write(self._zip.compress(view))
        self._position += view.nbytes
        return view.nbytes

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence != 0 or offset < self._position:
            raise OSError("a gzip stream being written cannot seek backwards")
        if offset > self._position:
            self.write(bytes(offset - self._position))
        return self._position

    def finish(self) -> None:
        """Write the end of the compressed stream (the raw file stays open)."""
        self._raw.write(self._zip.flush())


def save_betas(
    betas_img: nib.spatialimages.SpatialImage,
    trials_df: pd.DataFrame,
    betas_path: str | os.PathLike,
    trials_path: str | os.PathLike,
) -> tuple[Path, Path]:
    """Write the betas (NIfTI, ``.nii`` or ``.nii.gz``) and trials table (TSV, ``n/a`` for NaN).

    Both files appear together or not at all.
    """
    betas_path, trials_path = Path(betas_path), Path(trials_path)
    n = betas_img.shape[3] if len(betas_img.shape) == 4 else 1
    if n != len(trials_df):
        raise DataError(f"{betas_path}: {n} volumes but {len(trials_df)} rows in the trials table")

    def write(tmp: Path) -> None:
        # Streamed volume by volume (nibabel writes by slices): no in-memory copy of the file.
        with open(tmp, "wb") as raw:
            if betas_path.name.endswith(".gz"):
                packed = _GzipStream(raw)
                betas_img.to_stream(packed)
                packed.finish()
            else:
                betas_img.to_stream(raw)

    # Each write raises an OutputError naming its file and the fix; a table that cannot be
    # written takes the betas with it.
    atomic_write_with(betas_path, write)
    with removed_on_failure(betas_path):
        atomic_write_text(trials_path, trials_df.to_csv(sep="\t", index=False, na_rep="n/a"))
    return betas_path, trials_path


def with_stim_id(table: pd.DataFrame, source: str | os.PathLike) -> pd.DataFrame:
    """``table`` with a string ``stim_id`` column, derived from ``stim_file`` where absent.

    The rule of every trials table that enters the pipeline: an existing ``stim_id`` is kept
    (as text); otherwise each row's id is its ``stim_file`` name stem (:func:`.events.stim_id`).

    >>> with_stim_id(pd.DataFrame({"stim_file": ["a/im-01.png", "b.jpg"]}), "t.tsv")["stim_id"].tolist()
    ['im-01', 'b']

    Raises
    ------
    DataError
        Neither column, or a row without a stimulus (``source`` named).
    """
    table = table.copy()
    if "stim_id" not in table.columns:
        if "stim_file" not in table.columns:
            raise DataError(
                f"{source}: needs a stim_id or stim_file column naming each trial's image"
            )
        table["stim_id"] = [None if pd.isna(s) else stim_id(str(s)) for s in table["stim_file"]]
    if table["stim_id"].isna().any():
        rows = (np.flatnonzero(table["stim_id"].isna().to_numpy()) + 1).tolist()[:5]
        raise DataError(
            f"{source}: stim_id missing in row(s) {rows}; every volume needs a stimulus"
        )
    table["stim_id"] = table["stim_id"].astype(str)
    return table


def load_precomputed_betas(
    betas_img_path: str | os.PathLike, trials_tsv_path: str | os.PathLike
) -> tuple[nib.spatialimages.SpatialImage, pd.DataFrame]:
    """Load single-trial betas computed elsewhere (e.g. NSD's), checking them against their table.

    The image is returned unloaded (data read on access), so large files cost no memory here.

    Parameters
    ----------
    betas_img_path : path
        4D NIfTI, one volume per trial.
    trials_tsv_path : path
        Trials table, one row per volume, with ``stim_id`` or ``stim_file``. Missing ``stim_id`` is
        derived from ``stim_file``; missing ``run`` defaults to 1 and missing ``trial`` to the row
        number within its run.

    Raises
    ------
    MissingInputError
        A file is absent.
    DataError
        Not a 4D image, a row count different from the number of volumes, no stimulus column.
    """
    img = load_image(betas_img_path, "betas image")
    name = str(betas_img_path)
    if len(img.shape) != 4:
        raise DataError(f"{name}: betas must be a 4D image (one volume per trial), got {img.shape}")
    table, tname = read_table(trials_tsv_path, "trials table")
    if len(table) != img.shape[3]:
        raise DataError(
            f"{tname}: {len(table)} rows but {name} has {img.shape[3]} volumes; "
            "give one row per volume, in volume order"
        )
    table = with_stim_id(table, tname)
    if "run" not in table.columns:
        table.insert(0, "run", 1)
    if "trial" not in table.columns:
        table.insert(1, "trial", table.groupby("run").cumcount().to_numpy())
    return img, table
