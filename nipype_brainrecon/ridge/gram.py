"""Float64 Gram matrices ``Xs^T Xs`` accumulated from compute-dtype row blocks (added to or
subtracted from, with column sums), and the rank-one centring update."""

from __future__ import annotations

from typing import Any

import numpy as np

from .options import WIDEN_BYTES
from .source import Source


class GramAccumulator:
    """A float64 Gram ``Xs^T Xs`` (lower triangle meaningful) and, when asked, the column sums,
    added to block by block from compute-dtype rows (their exact values, widened into one
    reused float64 buffer on the host)."""

    def __init__(self, ops: Any, with_sums: bool, start: Any = None, sign: float = 1.0) -> None:
        self.ops = ops
        self.gram: Any = start  # updated in place when given (None: from zero)
        self.sign = sign  # -1: the rows' Gram is subtracted
        self.colsum: Any = None
        self.with_sums = with_sums
        self._wide: np.ndarray | None = None

    def add(self, xb: Any) -> None:
        ops = self.ops
        if ops.name == "numpy" and xb.dtype != np.float64:
            # Widened a few MiB at a time: syrk was as fast on 512 rows as on 4,096 (p = 1,500
            # and 3,000), and a large fresh buffer cost more to fault in than the products.
            m, p = xb.shape
            step = max(1, min(m, WIDEN_BYTES // (8 * p)))
            if self._wide is None or self._wide.shape[0] < step:
                self._wide = np.empty((step, p))
            for start in range(0, m, step):
                part = xb[start : start + step]
                wide = self._wide[: part.shape[0]]
                np.copyto(wide, part)
                self._update(wide)
        else:
            self._update(ops.cast(xb, ops.f64))

    def _update(self, wide: Any) -> None:
        self.gram = self.ops.gram_update(self.gram, wide, self.sign)
        if self.with_sums:
            sums = self.ops.sum64(wide, 0)
            self.colsum = sums if self.colsum is None else self.colsum + sums

    def add_rows(self, xs: Any, rows_per_block: int) -> GramAccumulator:
        for start in range(0, xs.shape[0], rows_per_block):
            self.add(xs[start : start + rows_per_block])
        self._wide = None
        return self


def gram_rows(src: Source, span: slice, with_sums: bool = True) -> tuple[Any, Any]:
    """``Xs[span]^T Xs[span]`` (float64, from the compute-dtype values; only its lower triangle
    is meaningful) and its column sums (None unless ``with_sums``)."""
    acc = GramAccumulator(src.ops, with_sums)
    for rows in src.blocks(span):
        acc.add(src.voxels(rows))
    return acc.gram, acc.colsum


def sub_outer(a: Any, u: Any, v: Any, c: float, step: int = 256) -> None:
    """``a -= c u v^T`` in place, by row blocks (no full-size temporary)."""
    for i in range(0, a.shape[0], step):
        a[i : i + step] -= (c * u[i : i + step])[:, None] * v[None, :]
