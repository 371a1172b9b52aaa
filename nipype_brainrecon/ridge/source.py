"""The training data as the solver reads it: raw voxels and targets, standardised block by block
as they are read (:class:`Source`), so that no standardised copy of ``X`` outlives a pass."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Source:
    """The raw inputs and what is needed to standardise any block of rows on the fly (no
    standardised copy of ``X`` outlives the first pass)."""

    ops: Any
    X: np.ndarray
    Y: np.ndarray  # (n, t)
    mask: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    rows: int  # rows per standardised block

    def __post_init__(self) -> None:
        # float32 voxels at float32 precision are standardised in float32: the mean in two
        # parts, so that (x - mean_hi) - mean_lo keeps the centred value to a unit roundoff
        # however large the mean; a fifth of the time of the float64 route.
        with np.errstate(over="ignore"):
            self.mean_hi = self.mean.astype(np.float32)
            self.mean_lo = (self.mean - self.mean_hi).astype(np.float32)
            self.inv_scale = (1.0 / self.scale).astype(np.float32)
        self.in_float32 = bool(
            self.X.dtype == np.float32
            and self.ops.host_dtype == np.float32
            and np.all(np.isfinite(self.inv_scale))  # not for scales below float32's range
            and np.all(np.isfinite(self.mean_lo))
        )

    def blocks(self, span: slice, rows: int | None = None) -> Iterator[slice]:
        step = rows or self.rows
        for start in range(span.start, span.stop, step):
            yield slice(start, min(start + step, span.stop))

    def standardise(self, rows: slice, out: np.ndarray) -> np.ndarray:
        """Standardised used voxels of ``rows`` into ``out`` (host, compute dtype; float32
        arithmetic for float32 voxels and compute dtype, else float64 arithmetic, then rounded)."""
        block = self.X[rows]
        if not self.mask.all():
            block = block[:, self.mask]
        if self.in_float32:
            np.subtract(block, self.mean_hi, out=out)
            out -= self.mean_lo
            out *= self.inv_scale
            return out
        wide = np.subtract(block, self.mean, dtype=np.float64)
        wide /= self.scale
        np.copyto(out, wide, casting="same_kind")
        return out

    def voxels(self, rows: slice) -> Any:
        """Standardised used voxels of ``rows`` (compute dtype, on the compute device)."""
        host = np.empty((rows.stop - rows.start, self.mean.size), dtype=self.ops.host_dtype)
        return self.ops.asarray(self.standardise(rows, host))

    def span_voxels(self, span: slice, transposed: bool = False) -> Any:
        """Standardised used voxels of the rows of ``span`` as one array (block by block, so the
        float64 route's temporaries stay small); ``transposed``: stored voxel by voxel."""
        order = "F" if transposed else "C"
        p = self.mean.size
        host = np.empty((span.stop - span.start, p), self.ops.host_dtype, order=order)
        # Column-major: standardised row by row into a cache-sized staging block, then copied
        # in; three element-wise passes over the strided destination took 2.6x as long
        # (2,400 x 3,000: 32 against 12 ms).
        staging = None
        step = self.rows
        if transposed:
            step = max(1, min(self.rows, 2**21 // (host.itemsize * p)))
            staging = np.empty((step, p), host.dtype)
        for rows in self.blocks(span, step):
            part = host[rows.start - span.start : rows.stop - span.start]
            if staging is None:
                self.standardise(rows, part)
            else:
                part[...] = self.standardise(rows, staging[: part.shape[0]])
        return self.ops.asarray(host)

    def targets(self, rows: slice, cols: slice) -> Any:
        return self.ops.asarray(self.Y[rows, cols])
