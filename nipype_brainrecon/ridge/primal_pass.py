"""The voxel form's first pass over the data: the float64 Gram ``Xs^T Xs``, its column sums,
``Xs^T Y`` (kept in the output array until the refit overwrites it) and the targets' fold
sums (checked finite), the voxels standardised block by block as they are read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..batching import batches
from ..errors import DataError
from . import _blas
from .chunking import chunk_of
from .gram import GramAccumulator, gram_rows
from .options import BIG_BLOCK_FACTOR, DEFAULT_OPTIONS, SolverOptions, target_bar
from .source import Source


@dataclass
class CrossProducts:
    """What the first pass leaves for the folds and the refit."""

    coef: np.ndarray  # (p, t) Xs^T Y, in the output array until the refit overwrites it
    y_sums: np.ndarray  # (n_folds, t) float64: target sums of each fold
    y_total: np.ndarray  # (t,) float64: target sums over all samples
    gram: Any  # (p, p) float64 Xs^T Xs (lower triangle meaningful)
    colsum: Any  # (p,) float64 column sums of Xs (None unless fitted with intercept)


def keeps_standardised_voxels(n: int, p: int, itemsize: int, budget: int) -> bool:
    """Whether the voxel form's first pass holds all ``n x p`` standardised voxels: when they
    take at most the chunk budget plus the folds' two float64 ``p x p`` arrays (``16 p^2``
    bytes), which with the full Gram make the folds' peak, so holding them does not raise it."""
    return n * p * itemsize <= budget + 16 * p * p


def first_pass(
    src: Source,
    folds: Sequence[slice],
    fit_intercept: bool,
    budget: int,
    options: SolverOptions = DEFAULT_OPTIONS,
) -> CrossProducts:
    """Target sums (checked finite), then the Gram, column sums and ``Xs^T Y`` (kept in the
    output array until the refit); a bar over the ``Xs^T Y`` loop when ``options.progress``."""
    ops, Y = src.ops, src.Y
    n, t = Y.shape
    p = int(src.mean.size)
    dt = np.dtype(ops.host_dtype)
    coef = np.zeros((p, t), dtype=dt, order="F")
    big_rows = src.rows * BIG_BLOCK_FACTOR
    xty_chunk = chunk_of(budget, dt.itemsize * (2 * p + big_rows), t, None)
    y_sums = np.empty((len(folds), t))
    if ops.name != "numpy":
        with target_bar(options, t, "first pass target chunks") as bar:
            gram, colsum = _device_pass(
                src, folds, fit_intercept, budget, coef, y_sums, xty_chunk, bar
            )
        y_total = y_sums.sum(0)
    else:
        _fold_target_sums(src, folds, y_sums, xty_chunk)
        y_total = y_sums.sum(0)
        gram, colsum = _host_pass(src, fit_intercept, budget, coef, big_rows, xty_chunk, options)
    return CrossProducts(coef, y_sums, y_total, gram, colsum)


def _check_finite(y_sums: np.ndarray, cols: slice) -> None:
    if not np.all(np.isfinite(y_sums[:, cols])):
        raise DataError(
            f"Y has non-finite values in targets {cols.start}-{cols.stop - 1}; fix or drop them"
        )


def _device_pass(
    src: Source,
    folds: Sequence[slice],
    fit_intercept: bool,
    budget: int,
    coef: np.ndarray,
    y_sums: np.ndarray,
    xty_chunk: int,
    bar: Any,
) -> tuple[Any, Any]:
    """The Gram and its column sums; ``Xs^T Y`` into ``coef`` and the fold sums of the targets
    into ``y_sums`` (``bar`` advances by each chunk's targets).

    On a device, ``Xs^T Y`` is accumulated there, one column chunk at a time: copying the
    ``p x chunk`` product back to the host for every row block would dominate the run time. The
    fold sums of the targets come from the same transferred blocks (no pass of their own).
    """
    ops = src.ops
    n, t = src.Y.shape
    p = int(src.mean.size)
    isz = np.dtype(ops.host_dtype).itemsize
    gram, colsum = gram_rows(src, slice(0, n), fit_intercept)
    blocks = list(src.blocks(slice(0, n)))
    cached = [src.voxels(rows) for rows in blocks] if n * p * isz <= 4 * budget else None
    for cols in batches(t, xty_chunk):
        acc = None
        sums = ops.asarray(np.zeros((len(folds), cols.stop - cols.start)), ops.f64)
        for i, rows in enumerate(blocks):
            xb = cached[i] if cached is not None else src.voxels(rows)
            y = src.targets(rows, cols)
            part = ops.matmul(xb.T, y)
            if acc is None:
                acc = part
            else:
                acc += part
            for k, f in enumerate(folds):
                lo, hi = max(f.start, rows.start), min(f.stop, rows.stop)
                if lo < hi:
                    sums[k] += ops.sum64(y[lo - rows.start : hi - rows.start], 0)
            del xb, part, y
        y_sums[:, cols] = ops.to_numpy(sums)
        _check_finite(y_sums, cols)
        coef[:, cols] = ops.to_numpy(acc)
        del acc
        bar.update(cols.stop - cols.start)
    del cached
    return gram, colsum


def _fold_target_sums(
    src: Source, folds: Sequence[slice], y_sums: np.ndarray, xty_chunk: int
) -> None:
    """The targets' sums over each fold (float64) into ``y_sums``, checked finite."""
    ops = src.ops
    t = src.Y.shape[1]
    for cols in batches(t, xty_chunk):
        for k, f in enumerate(folds):
            y_sums[k, cols] = ops.to_numpy(ops.sum64(src.targets(f, cols), 0))
        _check_finite(y_sums, cols)


def _host_pass(
    src: Source,
    fit_intercept: bool,
    budget: int,
    coef: np.ndarray,
    big_rows: int,
    xty_chunk: int,
    options: SolverOptions,
) -> tuple[Any, Any]:
    """The Gram and its column sums, and ``Xs^T Y`` into ``coef`` (numpy)."""
    ops = src.ops
    (n, t), p = src.Y.shape, int(src.mean.size)
    acc = GramAccumulator(ops, fit_intercept)
    if keeps_standardised_voxels(n, p, np.dtype(ops.host_dtype).itemsize, budget):
        with target_bar(options, t, "first pass target chunks") as bar:
            _all_rows_at_once(src, acc, coef, big_rows, xty_chunk, bar)
    else:
        with target_bar(options, n, "first pass row blocks", unit="sample") as bar:
            _row_blocks(src, acc, coef, big_rows, xty_chunk, bar)
    gram, colsum = acc.gram, acc.colsum
    del acc
    return gram, colsum


def _all_rows_at_once(
    src: Source, acc: GramAccumulator, coef: np.ndarray, big_rows: int, xty_chunk: int, bar: Any
) -> None:
    """All standardised voxels at once, so that ``Xs^T Y`` is one product over every sample
    per column chunk (1.2x the rate of row blocks added into the strided output). Freed before
    the folds."""
    ops, Y = src.ops, src.Y
    n, t = Y.shape
    xs = np.empty((n, int(src.mean.size)), dtype=np.dtype(ops.host_dtype))
    for rows in src.blocks(slice(0, n), big_rows):
        acc.add(src.standardise(rows, xs[rows]))
    # Written straight into the output: one product for all targets unless BLAS cannot
    # take them in place (the fallback's temporaries stay within the budget).
    whole = _blas.accepts(xs.T, Y, coef)
    for cols in batches(t, t if whole else xty_chunk):
        ops.gemm(xs.T, src.targets(slice(0, n), cols), coef[:, cols])
        bar.update(cols.stop - cols.start)
    del xs


def _row_blocks(
    src: Source, acc: GramAccumulator, coef: np.ndarray, big_rows: int, xty_chunk: int, bar: Any
) -> None:
    """Each row block is standardised once for both products; larger blocks than the other
    passes' mean fewer read-modify-writes of the ``p x t`` output."""
    ops = src.ops
    n, t = src.Y.shape
    block = np.empty((min(n, big_rows), int(src.mean.size)), dtype=np.dtype(ops.host_dtype))
    for rows in src.blocks(slice(0, n), big_rows):
        xb = src.standardise(rows, block[: rows.stop - rows.start])
        acc.add(xb)
        for cols in batches(t, xty_chunk):
            ops.gemm(xb.T, src.targets(rows, cols), coef[:, cols], beta=1.0)
        del xb
        bar.update(rows.stop - rows.start)
    del block
