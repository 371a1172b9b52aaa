"""Held-out scores of one fold for a chunk of targets: the negative mean squared error of every
alpha, from the fold's eigen-basis, its low-rank weight factors, its held-out operators or its
Neumann-series terms."""

from __future__ import annotations

from typing import Any

import numpy as np

from .basis import Fold
from .chunking import Scratch


def fold_scores(
    ops: Any,
    fold: Fold,
    coefs: Any,
    target: Any,
    out: np.ndarray,
    held: Any = None,
    scratch: Scratch | None = None,
) -> None:
    """Negative held-out MSE of every alpha for a chunk of targets, into ``out`` (a, tc).

    ``coefs`` are the training cross-products in the fold's eigen-basis (m x tc); the held-out
    predictions of alpha k are ``test_op @ diag(weights[:, k]) @ coefs``. The diagonal scaling
    goes on the smaller of the two factors. With low-rank weights (:func:`compress_weights`)
    only ``r`` products are formed and each alpha's residual is one small combination of them
    (``fold.mix``; also the Neumann-series terms of :func:`series_inverse`).
    With ``held`` (the fold's held-out operators, one per factor or alpha), ``coefs`` are the
    cross-products in voxel space and product ``j`` is ``held[j] @ coefs``.
    """
    n_test, tc = target.shape
    scale_op = n_test <= tc
    scaled = None
    if held is None:
        scaled = ops.empty(fold.test_op.shape if scale_op else coefs.shape)

    def product(j: int, out_: Any, buf: Any = scaled) -> None:
        if held is not None:
            ops.matmul(held[j], coefs, out=out_)
            return
        w = (fold.weights if fold.factors is None else fold.factors)[:, j]
        if scale_op:
            ops.copyto(buf, fold.test_op)
            buf *= w[None, :]
            ops.matmul(buf, coefs, out=out_)
        else:
            ops.copyto(buf, coefs)
            buf *= w[:, None]
            ops.matmul(fold.test_op, buf, out=out_)

    if fold.mix is None:
        pred = ops.empty((n_test, tc))
        for k in range(out.shape[0]):
            product(k, pred)
            pred -= target
            out[k] = ops.to_numpy(ops.sumsq_cols(pred)) / -n_test
        return
    rank = fold.mix.shape[1] - 1
    if scratch is not None:
        parts = scratch.take("parts", (rank + 1, n_test, tc), target.dtype)
    else:
        parts = ops.empty((rank + 1, n_test, tc))
    if held is not None:  # one operator per part
        # One product for all operators (their rows stacked): ~5% faster than one each.
        stacked = parts[:rank].reshape(rank * n_test, tc)
        ops.matmul(held.reshape(rank * n_test, held.shape[-1]), coefs, out=stacked)
    else:
        for r in range(rank):
            product(r, parts[r])
    if ops.name == "numpy":
        if series_scores_by_rows(fold.mix, parts[:rank], target, out):
            return
        ops.copyto(parts[rank], target)
        mixed_scores_by_rows(ops, fold.mix, parts, out)
        return
    ops.copyto(parts[rank], target)
    flat = parts.reshape(rank + 1, n_test * tc)
    resid = ops.empty((1, n_test * tc))
    for k in range(fold.mix.shape[0]):
        ops.matmul(fold.mix[k : k + 1], flat, out=resid)  # prediction minus target
        out[k] = ops.to_numpy(ops.sumsq_cols(resid.reshape(n_test, tc))) / -n_test


def mixed_scores_by_rows(
    ops: Any, mix: np.ndarray, parts: np.ndarray, out: np.ndarray, cache_bytes: int = 2**19
) -> None:
    """Negative MSE of every alpha's residual ``sum_j mix[k, j] parts[j]`` (numpy), a few
    held-out rows at a time: the parts are read once for all alphas (while in cache), not once
    per alpha (which was memory-bound, ~6% of a fit). The rows of every part are handed to BLAS
    in place (a strided operand), and the residuals squared in place."""
    n_parts, n_test, tc = parts.shape
    n_alphas = mix.shape[0]
    rows = max(1, min(n_test, cache_bytes // (parts.itemsize * n_parts * tc)))
    flat = parts.reshape(n_parts, n_test * tc)
    resid = np.empty(n_alphas * rows * tc, dtype=parts.dtype)
    total = np.zeros((n_alphas, tc))
    for start in range(0, n_test, rows):
        m = min(rows, n_test - start)
        r = resid[: n_alphas * m * tc].reshape(n_alphas, m * tc)
        ops.gemm(mix, flat[:, start * tc : (start + m) * tc], r)  # predictions minus targets
        np.square(r, out=r)
        total += r.reshape(n_alphas, m, tc).sum(1)
    out[...] = total / -n_test


def series_scores_by_rows(
    mix: np.ndarray,
    parts: np.ndarray,
    target: np.ndarray,
    out: np.ndarray,
    cache_bytes: int = 2**19,
) -> bool:
    """Negative MSE of every alpha of a Neumann-series fold (numpy) from column inner
    products, without forming each alpha's residual; False (nothing done) for other mixes.

    In a series fold every alpha weighs the first part equally and the target by -1, so its
    residual is a shared base ``mix[0, 0] parts[0] - target`` (the residual as alpha -> 0)
    plus a correction ``sum_j mix[k, j] parts[j]``, j >= 1, which is small (it shrinks like
    ``(alpha / mu)^j``). Its squared norm is ``|base|^2 + 2 c.(P^T base) + c^T (P^T P) c``:
    ``K (K + 1) / 2`` inner products per target instead of a residual per alpha, and the
    differences between alphas come from the small terms at their own precision instead of
    from residuals rounded to the compute dtype.
    """
    n_alphas, n_cols = mix.shape
    n_parts = n_cols - 1
    if n_parts < 1 or np.any(mix[:, -1] != -1) or np.any(mix[:, 0] != mix[0, 0]):
        return False
    pairs = [(i, j) for i in range(n_parts) for j in range(i, n_parts)]
    if 2 * (len(pairs) + 1) > n_alphas * n_cols:  # measured: a pair costs ~2 residual rows
        return False
    _, n_test, tc = parts.shape
    rows = max(1, min(n_test, cache_bytes // (parts.itemsize * (n_parts + 1) * tc)))
    base = np.empty((rows, tc), dtype=parts.dtype)
    sums = np.zeros((len(pairs), tc))
    for start in range(0, n_test, rows):
        m = min(rows, n_test - start)
        b = base[:m]
        np.multiply(parts[0, start : start + m], mix[0, 0], out=b)
        b -= target[start : start + m]
        terms = [b] + [parts[j, start : start + m] for j in range(1, n_parts)]
        for q, (i, j) in enumerate(pairs):
            sums[q] += np.einsum("mc,mc->c", terms[i], terms[j])
    gram = np.empty((n_parts, n_parts, tc))
    for q, (i, j) in enumerate(pairs):
        gram[i, j] = gram[j, i] = sums[q]
    weights = np.ones((n_alphas, n_parts))  # on [base, parts[1:]]
    weights[:, 1:] = mix[:, 1:n_parts]
    out[...] = np.einsum("ai,ijc,aj->ac", weights, gram, weights) / -n_test
    return True
