"""Ridge decoders: voxels -> features, with the penalty chosen per target by K-fold CV.

The method (Takagi & Nishimoto 2023) standardises each voxel with the training trials' mean and
standard deviation, then fits a multi-output ridge regression whose penalty ``alpha`` is chosen
for each target (each element of ``z`` or ``c``) by 5-fold cross-validation over a grid. The
authors used himalaya's ``RidgeCV`` (numpy backend, defaults: ``KFold(5)`` without shuffling,
score = negative mean squared error averaged over folds, no intercept). :func:`fit_ridge_cv`
reproduces that selection rule exactly and is several times faster:

* one eigendecomposition of each fold's training Gram matrix (``p x p``, or the ``n x n`` kernel
  when a fold has fewer trials than voxels), accumulated and decomposed in float64, shared by all
  alphas and all targets;
* the training cross-products of a fold are the full ones minus the held-out fold's, so the
  Gram costs two passes over the data whatever the number of folds, and ``X^T Y`` (kept in the
  output array until the refit overwrites it) one pass plus the held-out rows of each fold;
* the held-out predictions of every alpha come from the eigen-basis with one matrix product per
  alpha (no per-target loop), and only their squared errors are kept;
* in the voxel form the folds run one at a time (decompose, stream every target chunk through
  the basis, free it) and the voxels are standardised block by block as they are read, never
  copied whole: the working memory is the float64 Gram, one basis and one chunk, whatever the
  number of targets, on top of the output coefficients;
* the refit on all trials scales each target's eigen-coefficients by its own alpha, one product
  for all targets whatever their alphas.

Backends: ``"numpy"`` (CPU) and ``"torch"`` (CUDA when available, else CPU; the CPU run tests the
CUDA code path); ``"auto"`` picks torch on CUDA when a GPU is present, numpy otherwise.

Decoders are saved as safetensors plus a JSON sidecar (:func:`save_decoder`); never pickled.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from .._version import __version__
from ..errors import DataError, MissingInputError, UsageError
from ..io import atomic_write_text, atomic_write_with, removed_on_failure
from . import _blas

__all__ = [
    "DEFAULT_ALPHAS",
    "PAPER_ALPHAS",
    "RidgeDecoder",
    "alpha_histogram",
    "correlation_per_target",
    "fit_ridge_cv",
    "kfold_slices",
    "load_decoder",
    "resolve_alphas",
    "save_decoder",
]

LOGGER = logging.getLogger("nipype_brainrecon.ridge")

#: The published grid (Takagi & Nishimoto 2023, ``z`` and ``c`` decoders).
PAPER_ALPHAS = np.array([1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0])

#: A wider grid, one value per decade. On standardised voxels the eigenvalues of ``X^T X`` are in
#: the hundreds or more, so the paper's grid is close to unregularised least squares.
DEFAULT_ALPHAS = 10.0 ** np.arange(-2, 8)

#: Version of the safetensors + JSON decoder format written by :func:`save_decoder`.
DECODER_FORMAT_VERSION = 1
_FORMAT_KEY = "BrainreconRidgeDecoder"


Backend = Literal["auto", "numpy", "torch"]

#: Evaluate the CV predictions through low-rank factors of the ridge weights when they are exact
#: to the compute dtype's rounding (see ``_compress_weights``): None when it saves time, True
#: whenever exact, False never (one product per alpha).
LOW_RANK_ALPHAS: bool | None = None

#: Row blocks of the passes forming Gram matrices and ``Xs^T Y`` (numpy backend) are this many
#: times the others (~64 MiB of float64): fewer passes over the output array, faster syrk.
BIG_BLOCK_FACTOR = 4
#: float32 rows are widened to float64 for the Gram matrices in blocks of about this many bytes.
WIDEN_BYTES = 8 * 2**20

#: Score a fold through held-out operators ``A_f diag(w_j) B_f^T`` (``n_test x p``, one per
#: factor or alpha) instead of taking every target chunk into the fold's eigen-basis: None when
#: it saves time (fewer operator rows than targets) and they fit in two bases' memory, True
#: whenever they fit, False never.
HELD_OUT_OPERATORS: bool | None = None

#: Score a fold through the Neumann series of ``(G + alpha I)^-1`` in powers of ``G^-1`` (one
#: Cholesky inverse, no eigendecomposition) when every alpha is small enough next to the fold's
#: smallest eigenvalue that a few terms are exact to the compute dtype's rounding (the paper's
#: grid on standardised voxels): None when it needs no more products than alphas and costs less
#: than the eigen-basis (``_series_saves_time``), True whenever the series is exact (up to 64
#: terms; for tests), False never.
SERIES_FOLDS: bool | None = None
#: Inverse iterations estimating a fold Gram's smallest eigenvalue (only the estimate's order
#: of magnitude matters: it sets the number of series terms, and is proven before use).
POWER_ITERATIONS = 8
#: A float64 eigendecomposition (LAPACK syevd) took this many p^3 of float32 GEMM time (measured
#: at p = 1,500 and 3,000 on two threads): the cost model choosing series folds.
EIGH_COST = 30.0
#: The floor tried for the smallest eigenvalue, as a fraction of its estimate (then proven).
SERIES_FLOOR_FACTOR = 0.5
#: Their held-out operators may take this many ``p x p`` bases' memory (the eigen-basis path
#: keeps a basis and a scaled copy besides its operators while it builds them; this one neither).
SERIES_MEMORY = 3.0

#: The refit factorises ``G + alpha I`` once per chosen alpha when at most this many alphas were
#: chosen (and the Gram is regular); otherwise it decomposes ``G`` once.
CHOLESKY_MAX_ALPHAS = 8

#: Default working memory of a chunk of targets (bytes) on the CPU (capped at a quarter of the
#: inputs) and on a GPU: fixed, so that memory does not grow with the number of targets beyond
#: the output coefficients.
DEFAULT_BUDGET = 64 * 2**20
#: On a GPU, at most this or an eighth of its free memory: larger chunks, fewer transfers.
DEFAULT_GPU_BUDGET = 2 * 2**30


# --------------------------------------------------------------------------------------------
# Small public helpers
# --------------------------------------------------------------------------------------------


def resolve_alphas(alphas: str | ArrayLike = "default") -> np.ndarray:
    """Turn an alpha grid specification into a 1-D float64 array.

    Parameters
    ----------
    alphas : {"default", "paper"} or array-like
        ``"paper"`` is :data:`PAPER_ALPHAS`, ``"default"`` is :data:`DEFAULT_ALPHAS`; otherwise
        the positive, finite, distinct values to try (their order breaks exact ties: the first
        best is kept, as in himalaya).

    Returns
    -------
    numpy.ndarray
        The grid, float64, shape ``(n_alphas,)``.

    Examples
    --------
    >>> resolve_alphas("paper")[[0, -1]]
    array([1.e-06, 1.e+00])
    """
    if isinstance(alphas, str):
        presets = {"paper": PAPER_ALPHAS, "default": DEFAULT_ALPHAS}
        if alphas not in presets:
            raise UsageError(f"alphas={alphas!r}: use 'default', 'paper' or a list of numbers")
        return presets[alphas].astype(np.float64)
    try:
        grid = np.asarray(alphas, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"alphas={alphas!r}: not a list of numbers") from exc
    if grid.size == 0 or not np.all(np.isfinite(grid)) or np.any(grid <= 0):
        raise UsageError(f"alphas={alphas!r}: give at least one positive, finite alpha")
    if np.unique(grid).size != grid.size:
        raise UsageError(f"alphas={alphas!r}: alphas must be distinct")
    return grid


def kfold_slices(n_samples: int, n_folds: int) -> list[slice]:
    """Contiguous test folds, laid out as scikit-learn's ``KFold(n_folds)`` without shuffling.

    The first ``n_samples % n_folds`` folds hold one sample more than the others.

    Examples
    --------
    >>> kfold_slices(7, 3)
    [slice(0, 3, None), slice(3, 5, None), slice(5, 7, None)]
    """
    if n_folds < 2:
        raise UsageError(f"n_folds={n_folds}: cross-validation needs at least 2 folds")
    if n_samples < n_folds:
        raise DataError(
            f"{n_samples} training samples for {n_folds} folds: give at least as many samples "
            "as folds (or lower n_folds)"
        )
    sizes = np.full(n_folds, n_samples // n_folds)
    sizes[: n_samples % n_folds] += 1
    stops = np.cumsum(sizes)
    return [slice(int(stop - size), int(stop)) for stop, size in zip(stops, sizes, strict=True)]


def alpha_histogram(
    alphas: RidgeDecoder | ArrayLike, alpha_grid: ArrayLike | None = None
) -> dict[float, int]:
    """Count how many targets chose each alpha of the grid.

    Parameters
    ----------
    alphas : RidgeDecoder or array-like
        A fitted decoder, or the chosen alpha of every target.
    alpha_grid : array-like, optional
        The grid (taken from the decoder when one is given; else the distinct chosen values).

    Returns
    -------
    dict
        ``{alpha: count}`` over the whole grid in grid order, zeros included.

    Examples
    --------
    >>> alpha_histogram([1.0, 10.0, 10.0], [0.1, 1.0, 10.0])
    {0.1: 0, 1.0: 1, 10.0: 2}
    """
    if isinstance(alphas, RidgeDecoder):
        grid = alphas.alpha_grid if alpha_grid is None else alpha_grid
        chosen = alphas.alphas
    else:
        chosen = np.asarray(alphas, dtype=np.float64).reshape(-1)
        grid = np.unique(chosen) if alpha_grid is None else alpha_grid
    grid = np.asarray(grid, dtype=np.float64).reshape(-1)
    # Nearest grid value in log space: chosen alphas may have been rounded (float32, JSON).
    idx = np.abs(np.log(chosen)[:, None] - np.log(grid)[None, :]).argmin(1)
    counts = np.bincount(idx, minlength=grid.size)
    return {float(a): int(c) for a, c in zip(grid, counts, strict=True)}


def correlation_per_target(Y_true: ArrayLike, Y_pred: ArrayLike) -> np.ndarray:
    """Pearson correlation between true and predicted values of each target, over samples.

    Parameters
    ----------
    Y_true, Y_pred : array-like, shape ``(n_samples, ...)``
        Same shapes; trailing dimensions are flattened into targets.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(n_targets,)``; NaN where either column is constant.

    Examples
    --------
    >>> correlation_per_target([[1.0, 0.0], [2.0, 1.0], [3.0, 0.0]],
    ...                        [[2.0, 1.0], [4.0, 1.0], [6.0, 1.0]])
    array([ 1., nan])
    """
    a = np.asarray(Y_true, dtype=np.float64)
    b = np.asarray(Y_pred, dtype=np.float64)
    if a.shape != b.shape or a.ndim == 0:
        raise DataError(f"Y_true {a.shape} and Y_pred {b.shape}: give arrays of the same shape")
    a = a.reshape(a.shape[0], -1)
    b = b.reshape(b.shape[0], -1)
    a = a - a.mean(0)
    b = b - b.mean(0)
    denom = np.sqrt(np.einsum("ij,ij->j", a, a) * np.einsum("ij,ij->j", b, b))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.einsum("ij,ij->j", a, b) / denom
    r[denom == 0] = np.nan
    return r


# --------------------------------------------------------------------------------------------
# The decoder
# --------------------------------------------------------------------------------------------


@dataclass
class RidgeDecoder:
    """A fitted ridge decoder (voxels -> targets).

    Attributes
    ----------
    coef : numpy.ndarray, shape ``(n_voxels_used, n_targets)``
        Weights on standardised voxels.
    intercept : numpy.ndarray, shape ``(n_targets,)``
        Added to the predictions (zeros when fitted without intercept).
    voxel_mask : numpy.ndarray of bool, shape ``(n_voxels,)``
        The voxels used; the others were constant or non-finite in the training data.
    mean, scale : numpy.ndarray, shape ``(n_voxels_used,)``
        Training mean and standard deviation of the used voxels (float64).
    alphas : numpy.ndarray, shape ``(n_targets,)``
        The penalty chosen for each target.
    alpha_grid : numpy.ndarray
        The grid searched.
    cv_scores : numpy.ndarray, shape ``(n_targets,)``
        Cross-validated score at the chosen alpha: negative mean squared error on held-out
        folds, averaged over folds (as himalaya's ``l2_neg_loss``).
    target_shape : tuple of int
        Shape of one sample's targets (``()`` for a single target).
    fit_intercept, n_folds, n_samples
        How the decoder was fitted.
    metadata : dict
        Free-form provenance (ROI, model id, seed ...) saved in the sidecar.
    cv_mean_scores : numpy.ndarray or None, shape ``(n_alphas, n_targets)``
        The fold-averaged score of every alpha (not saved).
    fit_info : dict
        How the fit ran (not saved): ``form`` ("voxel" or "kernel"), ``backend``,
        ``chunk_size``, ``n_chunks``, ``products_per_fold`` (held-out products per fold and
        target chunk: the number of alphas, or fewer with low-rank weights), ``refit``
        ("cholesky": one factorisation per chosen alpha, or "eigh": the full Gram's basis) and,
        in the voxel form, ``held_out_operators`` (per fold: scored through them).
    """

    coef: np.ndarray
    intercept: np.ndarray
    voxel_mask: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    alphas: np.ndarray
    alpha_grid: np.ndarray
    cv_scores: np.ndarray
    target_shape: tuple[int, ...]
    fit_intercept: bool = True
    n_folds: int = 5
    n_samples: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    cv_mean_scores: np.ndarray | None = field(default=None, repr=False)
    fit_info: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def n_voxels(self) -> int:
        """Number of voxels the decoder takes (before dropping)."""
        return int(self.voxel_mask.size)

    @property
    def n_voxels_used(self) -> int:
        """Number of voxels with weights."""
        return int(self.coef.shape[0])

    @property
    def n_voxels_dropped(self) -> int:
        """Number of constant or non-finite training voxels left out."""
        return self.n_voxels - self.n_voxels_used

    @property
    def n_targets(self) -> int:
        """Number of targets (product of ``target_shape``)."""
        return int(self.coef.shape[1])

    def alpha_counts(self) -> dict[float, int]:
        """Targets per alpha of the grid (see :func:`alpha_histogram`)."""
        return alpha_histogram(self)

    def predict(self, X: ArrayLike, *, block_rows: int = 4096) -> np.ndarray:
        """Predict the targets of new samples.

        Parameters
        ----------
        X : array-like, shape ``(n_samples, n_voxels)``
            The full voxel set (the decoder drops its masked voxels itself), in the same units
            as the training data: standardisation uses the training statistics.
        block_rows : int
            Rows standardised at a time (bounds the float64 working copy).

        Returns
        -------
        numpy.ndarray
            Shape ``(n_samples, *target_shape)``, dtype of :attr:`coef`.
        """
        X = np.asarray(X)
        if X.ndim == 1:
            X = X[None, :]
        if X.ndim != 2 or X.shape[1] != self.n_voxels:
            raise DataError(
                f"X has shape {X.shape}: the decoder takes (n_samples, {self.n_voxels}) voxels"
            )
        out = np.empty((X.shape[0], self.n_targets), dtype=self.coef.dtype)
        for start in range(0, X.shape[0], block_rows):
            block = np.asarray(X[start : start + block_rows][:, self.voxel_mask], np.float64)
            if not np.all(np.isfinite(block)):
                raise DataError("X has non-finite values in voxels the decoder uses; fix them")
            block = ((block - self.mean) / self.scale).astype(self.coef.dtype)
            np.matmul(block, self.coef, out=out[start : start + block_rows])
        out += self.intercept.astype(out.dtype)
        return out.reshape((X.shape[0], *self.target_shape))


# --------------------------------------------------------------------------------------------
# Backends: the few array operations the solver needs, on numpy or torch
# --------------------------------------------------------------------------------------------


_GEMM_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@functools.cache
def _gemm_of(dtype: np.dtype) -> Any:
    from scipy.linalg.blas import get_blas_funcs

    return get_blas_funcs("gemm", dtype=dtype)


def _fortran_operand(x: np.ndarray) -> tuple[np.ndarray, int]:
    """``x^T`` as a Fortran-ordered BLAS operand: ``(x.T, 0)`` for a C-ordered ``x``, ``(x, 1)``
    (transpose flag) for a Fortran-ordered one, else a C-ordered copy's transpose."""
    if x.flags.c_contiguous:
        return x.T, 0
    if x.flags.f_contiguous:
        return x, 1
    return np.ascontiguousarray(x).T, 0


class _NumpyOps:
    name = "numpy"

    def __init__(self, dtype: np.dtype) -> None:
        self.dt = dtype
        self.host_dtype = dtype
        self.f64 = np.dtype(np.float64)

    def asarray(self, a: np.ndarray, dtype: Any = None) -> np.ndarray:
        return np.asarray(a, dtype=self.dt if dtype is None else dtype)

    def to_numpy(self, a: np.ndarray) -> np.ndarray:
        return a

    def cast(self, a: np.ndarray, dtype: Any) -> np.ndarray:
        return a.astype(dtype, copy=False)

    def empty(self, shape: tuple[int, ...], dtype: Any = None) -> np.ndarray:
        return np.empty(shape, dtype=self.dt if dtype is None else dtype)

    def sum64(self, a: np.ndarray, axis: int) -> np.ndarray:
        return a.sum(axis, dtype=np.float64)

    def copy(self, a: np.ndarray) -> np.ndarray:
        return a.copy(order="K")  # keeps a Fortran-ordered Gram's valid (lower) triangle

    def add_diagonal(self, a: np.ndarray, value: float) -> None:
        a.flat[:: a.shape[0] + 1] += value

    def copyto(self, dst: np.ndarray, src: np.ndarray) -> None:
        np.copyto(dst, src)

    def eigh(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Eigen-pairs of a symmetric matrix from its lower triangle; ``a`` is destroyed.

        A C-ordered ``a`` is read through its transpose (the same matrix in Fortran order), so
        LAPACK overwrites it with the eigenvectors instead of working on a copy. Divide and
        conquer (syevd) needs ``2 m^2`` of workspace but was 1.3-1.6x faster than MRRR (syevr,
        ``m^2`` less) on standardised Grams.
        """
        import scipy.linalg

        f = a if a.flags.f_contiguous else a.T
        return scipy.linalg.eigh(f, lower=True, driver="evd", overwrite_a=True, check_finite=False)

    def cholesky(self, a: np.ndarray) -> np.ndarray | None:
        """Cholesky factor of a symmetric matrix from its lower triangle (``a`` is destroyed);
        None unless positive definite."""
        import scipy.linalg

        f = a if a.flags.f_contiguous else a.T
        try:
            return scipy.linalg.cho_factor(f, lower=True, overwrite_a=True, check_finite=False)[0]
        except np.linalg.LinAlgError:
            return None

    def cho_solve(self, factor: np.ndarray, b: np.ndarray) -> np.ndarray:
        import scipy.linalg

        return scipy.linalg.cho_solve((factor, True), b, overwrite_b=True, check_finite=False)

    def cho_inverse(self, factor: np.ndarray, step: int = 128) -> np.ndarray:
        """The inverse of ``L L^T`` from its lower Cholesky factor, in place (LAPACK potri),
        made symmetric block by block (no full-size temporary)."""
        from scipy.linalg.lapack import get_lapack_funcs

        potri = get_lapack_funcs("potri", (factor,))
        inv, info = potri(factor, lower=1, overwrite_c=1)
        if info != 0:
            raise np.linalg.LinAlgError(f"potri failed (info={info})")
        m = inv.shape[0]
        for s in range(0, m, step):
            e = min(s + step, m)
            diag = np.tril(inv[s:e, s:e])
            inv[s:e, s:e] = diag + np.tril(diag, -1).T
            inv[s:e, e:] = inv[e:, s:e].T
        return inv.T if inv.flags.f_contiguous else inv  # symmetric: C order, the same matrix

    def gram_update(self, gram: np.ndarray | None, xb: np.ndarray, sign: float = 1.0) -> np.ndarray:
        """``gram + sign xb^T xb`` in place, lower triangle only (BLAS syrk: half a GEMM's
        work)."""
        from scipy.linalg.blas import get_blas_funcs

        if gram is None:
            gram = np.zeros((xb.shape[1], xb.shape[1]), dtype=xb.dtype, order="F")
        syrk = get_blas_funcs("syrk", (xb,))
        out = syrk(sign, xb.T, beta=1.0, c=gram, trans=0, lower=1, overwrite_c=1)
        if out is not gram:  # the wrapper could not work in place
            gram[...] = out
        return gram

    def matmul(self, a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``a @ b`` (2-D) through scipy's BLAS, the library of the solver's LAPACK and syrk calls.

        numpy wheels bundle a second OpenBLAS. The idle threads of each library spin for a while
        after a call and took the cores from the other: mixing them cost ~15% of a fit.
        Strided operands (column chunks of the targets) go to BLAS as they are (:mod:`._blas`).
        """
        if a.ndim != 2 or b.ndim != 2 or a.dtype != b.dtype or a.dtype not in _GEMM_DTYPES:
            return np.matmul(a, b, out=out)
        if a.size == 0 or b.size == 0:
            return np.matmul(a, b, out=out)
        target = out if out is not None else np.empty((a.shape[0], b.shape[1]), dtype=a.dtype)
        if _blas.gemm(a, b, target):
            return target
        del target  # the wrappers below allocate their own
        # C = A B is computed as the Fortran product C^T = B^T A^T: a C-ordered array is its
        # transpose in Fortran order, so no operand or output is copied.
        bt, trans_b = _fortran_operand(b)
        at, trans_a = _fortran_operand(a)
        gemm = _gemm_of(a.dtype)
        if out is not None and out.flags.c_contiguous and out.dtype == a.dtype:
            ct = gemm(1.0, bt, at, beta=0.0, c=out.T, trans_a=trans_b, trans_b=trans_a,
                      overwrite_c=1)  # fmt: skip
            if not np.shares_memory(ct, out):
                out[...] = ct.T
            return out
        result = gemm(1.0, bt, at, trans_a=trans_b, trans_b=trans_a).T
        if out is None:
            return result
        out[...] = result
        return out

    def gemm(
        self, a: np.ndarray, b: np.ndarray, out: np.ndarray, alpha: float = 1.0, beta: float = 0.0
    ) -> None:
        """``out = alpha a @ b + beta out`` in place (strided ``out`` included)."""
        if _blas.gemm(a, b, out, alpha, beta):
            return
        product = self.matmul(a, b)
        if alpha != 1.0:
            product *= alpha
        if beta == 0.0:
            out[...] = product
        else:
            if beta != 1.0:
                out *= beta
            out += product

    def fresh(self, a: np.ndarray) -> np.ndarray:
        """A C-ordered copy of host array ``a`` in the compute dtype (never a view of it)."""
        return np.array(a, dtype=self.dt, order="C")

    def sumsq_cols(self, a: np.ndarray) -> np.ndarray:
        return np.einsum("ij,ij->j", a, a)

    def take(self, a: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return a[np.ix_(rows, cols)]

    def index(self, idx: np.ndarray) -> np.ndarray:
        return idx

    def all_finite(self, a: np.ndarray) -> bool:
        return bool(np.all(np.isfinite(a)))


class _TorchOps:
    name = "torch"

    def __init__(self, dtype: np.dtype, device: str | None) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(
            device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
        )
        self.dt = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[dtype]
        self.host_dtype = dtype
        self.f64 = torch.float64

    def asarray(self, a: Any, dtype: Any = None) -> Any:
        dtype = self.dt if dtype is None else dtype
        if isinstance(a, np.ndarray):
            if a.dtype == np.float64 and dtype == self.torch.float32:
                a = a.astype(np.float32)  # cast on the host: half the bytes to move
            try:
                a = self.torch.from_numpy(a)
            except (TypeError, ValueError):
                a = self.torch.from_numpy(np.ascontiguousarray(a))
        return a.to(device=self.device, dtype=dtype)

    def to_numpy(self, a: Any) -> np.ndarray:
        return a.detach().cpu().numpy()

    def cast(self, a: Any, dtype: Any) -> Any:
        return a.to(dtype)

    def empty(self, shape: tuple[int, ...], dtype: Any = None) -> Any:
        return self.torch.empty(
            shape, dtype=self.dt if dtype is None else dtype, device=self.device
        )

    def sum64(self, a: Any, axis: int) -> Any:
        return a.sum(axis, dtype=self.torch.float64)

    def copy(self, a: Any) -> Any:
        return a.clone()

    def add_diagonal(self, a: Any, value: float) -> None:
        a.diagonal().add_(value)

    def copyto(self, dst: Any, src: Any) -> None:
        dst.copy_(src)

    def eigh(self, a: Any) -> tuple[Any, Any]:
        return self.torch.linalg.eigh(a)  # reads the lower triangle

    def cholesky(self, a: Any) -> Any:
        factor, info = self.torch.linalg.cholesky_ex(a)  # reads the lower triangle
        return None if int(info) else factor

    def cho_solve(self, factor: Any, b: Any) -> Any:
        return self.torch.cholesky_solve(b, factor)

    def cho_inverse(self, factor: Any) -> Any:
        return self.torch.cholesky_inverse(factor)

    def gram_update(self, gram: Any, xb: Any, sign: float = 1.0) -> Any:
        if gram is None:
            return sign * (xb.T @ xb)
        gram.addmm_(xb.T, xb, alpha=sign)
        return gram

    def matmul(self, a: Any, b: Any, out: Any = None) -> Any:
        return self.torch.matmul(a, b, out=out)

    def gemm(self, a: Any, b: Any, out: Any, alpha: float = 1.0, beta: float = 0.0) -> None:
        out.addmm_(a, b, beta=beta, alpha=alpha)

    def fresh(self, a: np.ndarray) -> Any:
        t = self.asarray(a)
        return t.clone() if t.device.type == "cpu" else t  # from_numpy shares host memory

    def sumsq_cols(self, a: Any) -> Any:
        return self.torch.einsum("ij,ij->j", a, a)

    def take(self, a: Any, rows: Any, cols: Any) -> Any:
        return a.index_select(0, rows).index_select(1, cols)

    def index(self, idx: np.ndarray) -> Any:
        return self.torch.as_tensor(idx, device=self.device)

    def all_finite(self, a: Any) -> bool:
        return bool(self.torch.isfinite(a).all())


def _make_ops(backend: str, device: str | None, dtype: np.dtype) -> _NumpyOps | _TorchOps:
    if backend == "numpy":
        if device not in (None, "cpu"):
            raise UsageError(f"device={device!r}: the numpy backend runs on the CPU only")
        return _NumpyOps(dtype)
    if backend in ("torch", "auto"):
        try:
            import torch
        except ImportError as exc:
            if backend == "auto":
                return _NumpyOps(dtype)
            raise UsageError(
                "backend='torch': torch is not installed; use backend='numpy'"
            ) from exc
        if backend == "auto" and device is None and not torch.cuda.is_available():
            return _NumpyOps(dtype)
        return _TorchOps(dtype, device)
    raise UsageError(f"backend={backend!r}: use 'auto', 'numpy' or 'torch'")


# --------------------------------------------------------------------------------------------
# The solver
# --------------------------------------------------------------------------------------------


@dataclass
class _Basis:
    """An eigen-basis of a (training) Gram matrix and its ridge weights for every alpha."""

    basis: Any  # (m, m) eigenvectors; m = voxels (primal) or training samples (kernel form)
    weights: Any  # (m, n_alphas) 1 / (eigenvalue + alpha), 0 on the numerical null space
    shift: Any  # primal: training voxel mean (centred fits); kernel: basis^T 1


@dataclass
class _Fold(_Basis):
    test: slice  # held-out samples
    n_train: int
    test_op: Any  # (n_test, m): held-out samples in the eigen-basis
    factors: Any = None  # (m, r): low-rank factors of ``weights`` (None: use every alpha)
    mix: Any = None  # (n_alphas, r + 1): alpha k = factors @ mix[k, :r]; mix[:, r] = -1


@dataclass
class _Refit(_Basis):
    to_voxels: Any  # (p, m): maps eigen-coefficients to voxel weights
    voxel_mean: Any  # (p,) float64: mean of the standardised voxels (centred fits)


def _voxel_statistics(X: np.ndarray, block_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (ddof 0) of each column, float64, in one pass of row blocks.

    Sums are taken about the first row, which keeps the float64 moments free of cancellation
    when voxels have a large mean.
    """
    n = X.shape[0]
    shift = X[0].astype(np.float64)
    s1 = np.zeros(X.shape[1])
    s2 = np.zeros(X.shape[1])
    buffer = np.empty((min(n, block_rows), X.shape[1]))  # one buffer: fresh pages cost time
    with np.errstate(invalid="ignore", over="ignore"):
        for start in range(0, n, block_rows):
            block = X[start : start + block_rows]
            d = np.subtract(block, shift, out=buffer[: block.shape[0]], dtype=np.float64)
            s1 += d.sum(0)
            s2 += np.einsum("ij,ij->j", d, d)
        mean = s1 / n
        var = np.maximum(s2 / n - mean * mean, 0.0)
    return shift + mean, np.sqrt(var)


def _ridge_weights(ops: Any, eigvals: Any, grid: Any) -> Any:
    """``1 / (lambda + alpha)`` per eigenvalue and alpha, zero on the numerical null space.

    On the null space of the Gram matrix both the held-out operator and the training
    cross-products vanish in exact arithmetic; zeroing keeps rounding noise from being
    amplified by ``1 / alpha`` when alpha is tiny.
    """
    m = eigvals.shape[0]
    top = float(eigvals.max()) if m else 0.0
    tol = max(top, 0.0) * m * np.finfo(np.float64).eps
    lam = eigvals.clip(min=0.0)
    w = 1.0 / (lam[:, None] + grid[None, :])
    w[eigvals <= tol] = 0.0
    return w


def _compress_weights(ops: Any, weights: Any) -> tuple[Any, Any] | tuple[None, None]:
    """Low-rank factors of a fold's ridge weights ``1/(lambda_i + alpha_k)``, if any are exact.

    When the alphas are small or close relative to the eigenvalues (the paper's grid on
    standardised voxels: alpha <= 1 against eigenvalues in the hundreds), the ``m x n_alphas``
    weight matrix has a low numerical rank ``r``: ``weights ~= factors @ mix^T``. The held-out
    predictions of every alpha are then combinations of ``r`` products instead of one product
    per alpha. The rank is the smallest whose reconstruction matches every weight to the compute
    dtype's unit roundoff (the accuracy of the weights themselves), so the scores are unchanged
    up to rounding; otherwise (None, None).
    """
    w = np.asarray(ops.to_numpy(ops.cast(weights, ops.f64)), dtype=np.float64)
    m, n_alphas = w.shape
    if n_alphas < 3 or LOW_RANK_ALPHAS is False:
        return None, None
    tol = np.finfo(ops.host_dtype).eps / 2
    u, sv, vt = np.linalg.svd(w, full_matrices=False)
    nonzero = w > 0
    for rank in range(1, n_alphas - 1):
        factors = u[:, :rank] * sv[:rank]
        approx = factors @ vt[:rank]
        if np.all(np.abs(approx - w)[nonzero] <= tol * w[nonzero]):
            # Each saved product costs ~2m flops per prediction; each alpha's combination reads
            # rank + 2 arrays (measured: ~10 flops of GEMM time per element read).
            if LOW_RANK_ALPHAS is None and m * (n_alphas - rank) <= 10 * n_alphas * (rank + 2):
                return None, None
            factors[~nonzero.any(1)] = 0.0  # null-space rows stay exactly zero
            mix = np.concatenate([vt[:rank].T, -np.ones((n_alphas, 1))], axis=1)
            LOGGER.debug("fold weights have rank %d for %d alphas", rank, n_alphas)
            return ops.asarray(factors), ops.asarray(mix)
    return None, None


class _Scratch:
    """Working arrays reused from one target chunk to the next (numpy), one buffer per role,
    grown when a larger array is asked for."""

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def take(self, role: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """An uninitialised C-ordered array of ``shape``, in the buffer of ``role``."""
        size = math.prod(shape)
        buffer = self._buffers.get(role)
        if buffer is None or buffer.size < size or buffer.dtype != dtype:
            buffer = self._buffers[role] = np.empty(size, dtype=dtype)
        return buffer[:size].reshape(shape)


def _chunks(n_targets: int, chunk: int) -> Iterator[slice]:
    for start in range(0, n_targets, chunk):
        yield slice(start, min(start + chunk, n_targets))


def fit_ridge_cv(
    X: ArrayLike,
    Y: ArrayLike,
    *,
    alphas: str | ArrayLike = "default",
    n_folds: int = 5,
    fit_intercept: bool = True,
    backend: Backend = "auto",
    device: str | None = None,
    dtype: DTypeLike = np.float32,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> RidgeDecoder:
    """Fit a ridge decoder with one cross-validated penalty per target.

    Voxels are standardised with the training mean and standard deviation (ddof 0, as
    scikit-learn's ``StandardScaler``); constant or non-finite voxels are dropped with a warning.
    For each target the alpha of ``alphas`` with the best mean score over ``n_folds`` contiguous
    folds (``KFold`` without shuffling) is kept, the score being the negative mean squared error
    of the held-out fold; the model is then refitted on all samples with that alpha. The choice
    rule is himalaya's ``RidgeCV`` one, ties included (the fold mean is rounded to the compute
    dtype, a ``1e-10 log(alpha)`` slope favours larger alphas and the first best is kept).
    The chosen alphas are logged (targets per alpha) and kept in the decoder.

    Parameters
    ----------
    X : array-like, shape ``(n_samples, n_voxels)``
        Training voxels (e.g. single-trial betas of an ROI).
    Y : array-like, shape ``(n_samples, ...)``
        Training targets; trailing dimensions are flattened (``target_shape`` keeps them).
    alphas : {"default", "paper"} or array-like
        Penalty grid (:func:`resolve_alphas`).
    n_folds : int
        Number of cross-validation folds.
    fit_intercept : bool
        Centre voxels and targets in every fit (training fold means) and learn an intercept.
        ``False`` reproduces the paper's setting (himalaya's default): the standardised voxels are
        taken as centred and the predictions have no offset.
    backend : {"auto", "numpy", "torch"}
        Array library; ``"auto"`` is torch on CUDA when available, numpy otherwise.
    device : str, optional
        Torch device (default ``"cuda"`` when available, else ``"cpu"``).
    dtype : numpy dtype
        Compute and coefficient dtype (float32 or float64). Gram matrices and their
        eigendecompositions are always float64.
    chunk_size : int, optional
        Targets per chunk; default from ``memory_budget``.
    memory_budget : int, optional
        Bytes of working memory for a chunk of targets; default :data:`DEFAULT_BUDGET` (64 MiB,
        or a quarter of the inputs if less; on a GPU 2 GiB or an eighth of its free memory).
    metadata : mapping, optional
        Provenance stored in the decoder (and its sidecar when saved).

    Returns
    -------
    RidgeDecoder
        The refitted decoder with the chosen alpha and CV score of every target.

    Raises
    ------
    DataError
        Bad shapes, fewer samples than folds, no usable voxel, non-finite targets.
    UsageError
        Bad option values.
    """
    grid = resolve_alphas(alphas)
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise UsageError(f"dtype={dtype!r}: use float32 or float64")
    if not isinstance(n_folds, (int, np.integer)) or isinstance(n_folds, bool):
        raise UsageError(f"n_folds={n_folds!r}: give an integer >= 2")
    if chunk_size is not None and (not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1):
        raise UsageError(f"chunk_size={chunk_size!r}: give a positive integer or None")
    if memory_budget is not None and memory_budget <= 0:
        raise UsageError(f"memory_budget={memory_budget!r}: give a positive number of bytes")

    X = np.asarray(X)
    Y = np.asarray(Y)
    if X.ndim != 2 or not np.issubdtype(X.dtype, np.number) or X.shape[1] == 0:
        raise DataError(f"X has shape {X.shape}: give a numeric (n_samples, n_voxels) array")
    if Y.ndim == 0 or not np.issubdtype(Y.dtype, np.number):
        raise DataError(f"Y has shape {Y.shape}: give a numeric (n_samples, ...) array")
    if Y.shape[0] != X.shape[0]:
        raise DataError(
            f"X has {X.shape[0]} samples but Y has {Y.shape[0]}: give one target row per sample"
        )
    n = X.shape[0]
    folds = kfold_slices(n, int(n_folds))
    target_shape = tuple(int(s) for s in Y.shape[1:])
    Y2 = Y.reshape(n, -1)
    t = Y2.shape[1]
    if t == 0:
        raise DataError(f"Y has shape {Y.shape}: there are no targets")

    # float64 row blocks of ~16 MiB: transient copies stay small next to the inputs.
    rows = max(1, 2**21 // max(1, X.shape[1]))
    mean, scale = _voxel_statistics(X, rows)
    mask = np.isfinite(mean) & np.isfinite(scale) & (scale > 1e-7 * np.abs(mean)) & (scale > 0)
    n_dropped = int(mask.size - mask.sum())
    if n_dropped == mask.size:
        raise DataError("every voxel of X is constant or non-finite over the training samples")
    if n_dropped:
        warnings.warn(
            f"{n_dropped} of {mask.size} voxels are constant or non-finite over the training "
            "samples and were dropped",
            RuntimeWarning,
            stacklevel=2,
        )
    mean, scale = mean[mask], scale[mask]

    ops = _make_ops(backend, device, dt)
    p = int(mask.sum())
    n_test_max = max(f.stop - f.start for f in folds)
    primal = p <= n - n_test_max
    LOGGER.info(
        "ridge CV: n=%d samples, p=%d voxels (%d dropped), t=%d targets, %d alphas, %d folds, "
        "%s form, backend %s",
        n, p, n_dropped, t, grid.size, len(folds), "voxel" if primal else "kernel", ops.name,
    )  # fmt: skip
    if memory_budget is None:
        if ops.name == "torch" and ops.device.type == "cuda":
            import torch

            free = torch.cuda.mem_get_info(ops.device)[0]
            memory_budget = max(2**26, min(DEFAULT_GPU_BUDGET, free // 8))
        else:  # at most a quarter of the inputs, so that small problems stay small
            memory_budget = min(DEFAULT_BUDGET, max(2**20, (X.nbytes + Y2.nbytes) // 4))
    src = _Source(ops, X, Y2, mask, mean, scale, rows)

    if primal:
        coef, intercept, scores, chunk, products, how = _fit_primal(
            src, folds, grid, fit_intercept, memory_budget, chunk_size
        )
    else:
        coef, intercept, scores, chunk, products, how = _fit_kernel(
            src, folds, grid, fit_intercept, memory_budget, chunk_size
        )
    best, cv_scores, mean_scores = _select_alphas(scores, grid, dt)

    decoder = RidgeDecoder(
        coef=coef,
        intercept=intercept.astype(dt),
        voxel_mask=mask,
        mean=mean,
        scale=scale,
        alphas=grid[best],
        alpha_grid=grid,
        cv_scores=cv_scores,
        target_shape=target_shape,
        fit_intercept=bool(fit_intercept),
        n_folds=len(folds),
        n_samples=n,
        metadata=dict(metadata or {}),
        cv_mean_scores=mean_scores,
        fit_info={
            "form": "voxel" if primal else "kernel",
            "backend": ops.name if ops.name == "numpy" else f"torch:{ops.device}",
            "chunk_size": chunk,
            "n_chunks": -(-t // chunk),
            "products_per_fold": products,
            **how,
        },
    )
    _report_alphas(decoder)
    return decoder


def _select_alphas(
    scores: np.ndarray, grid: np.ndarray, dt: np.dtype
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """himalaya's rule: fold mean (float64, rounded to dtype) + 1e-10 log(alpha), first argmax."""
    mean = scores.mean(0, dtype=np.float64).astype(dt)
    ranked = mean + (np.log(grid.astype(dt)) * dt.type(1e-10))[:, None]
    best = ranked.argmax(0)
    cv = mean[best, np.arange(mean.shape[1])].astype(np.float64)
    return best, cv, mean


def _report_alphas(decoder: RidgeDecoder) -> None:
    counts = decoder.alpha_counts()
    text = ", ".join(f"{alpha:g}: {count}" for alpha, count in counts.items())
    LOGGER.info("chosen alphas (targets per alpha): %s", text)
    t = decoder.n_targets
    grid = decoder.alpha_grid
    for edge, side in ((grid.min(), "smallest"), (grid.max(), "largest")):
        share = counts[float(edge)] / t
        if grid.size > 1 and share > 0.5:
            LOGGER.warning(
                "%.0f%% of targets chose the %s alpha (%g): the grid may be too narrow",
                100 * share, side, edge,
            )  # fmt: skip


# --- the voxel form: one fold at a time ------------------------------------------------------


@dataclass
class _Source:
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


class _GramAccumulator:
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

    def add_rows(self, xs: Any, rows_per_block: int) -> _GramAccumulator:
        for start in range(0, xs.shape[0], rows_per_block):
            self.add(xs[start : start + rows_per_block])
        self._wide = None
        return self


def _gram_rows(src: _Source, span: slice, with_sums: bool = True) -> tuple[Any, Any]:
    """``Xs[span]^T Xs[span]`` (float64, from the compute-dtype values; only its lower triangle
    is meaningful) and its column sums (None unless ``with_sums``)."""
    acc = _GramAccumulator(src.ops, with_sums)
    for rows in src.blocks(span):
        acc.add(src.voxels(rows))
    return acc.gram, acc.colsum


def _sub_outer(a: Any, u: Any, v: Any, c: float, step: int = 256) -> None:
    """``a -= c u v^T`` in place, by row blocks (no full-size temporary)."""
    for i in range(0, a.shape[0], step):
        a[i : i + step] -= (c * u[i : i + step])[:, None] * v[None, :]


def _index_chunks(idx: np.ndarray, chunk: int) -> Iterator[slice | np.ndarray]:
    """Consecutive pieces of the sorted indices ``idx``; a run without gaps as a slice (a view)."""
    for start in range(0, idx.size, chunk):
        part = idx[start : start + chunk]
        if part[-1] - part[0] + 1 == part.size:
            yield slice(int(part[0]), int(part[-1]) + 1)
        else:
            yield part


def _use_held_out_operators(n_products: int, n_test: int, p: int, t: int) -> bool:
    """Whether a fold scores through held-out operators (see :data:`HELD_OUT_OPERATORS`):
    building them costs ``n_products * 2 n_test p^2`` and saves ``2 p^2 t``; they take at most
    two ``p x p`` bases' memory."""
    if HELD_OUT_OPERATORS is False or n_products * n_test * p > 2 * p * p:
        return False
    return bool(HELD_OUT_OPERATORS or n_products * n_test < t)


def _full_gram_is_regular(gram: Any, fold_floor: float, p: int) -> bool:
    """Whether the full Gram's eigenvalues all clear the null-space tolerance of
    :func:`_ridge_weights`, judged without decomposing it: its smallest eigenvalue is at least
    any training Gram's (``fold_floor``) and its largest at most its trace. The factor 4 covers
    the decompositions' rounding."""
    trace = float(gram.diagonal().sum())
    return bool(fold_floor > 4.0 * trace * p * np.finfo(np.float64).eps)


def _series_terms(ratio: float, tol: float) -> int | None:
    """Terms of the Neumann series of ``1 / (lambda + alpha)`` in powers of ``alpha / lambda``
    whose relative truncation error ``ratio ** terms`` (``ratio`` bounds ``alpha / lambda``) is
    at most ``tol``; None when the series does not converge."""
    if not 0.0 <= ratio < 1.0:
        return None
    if ratio <= tol:
        return 1
    return max(1, int(np.ceil(np.log(tol) / np.log(ratio))))


def _series_fits(terms: int, n_test: int, p: int) -> bool:
    """Whether a series fold's ``terms`` held-out operators fit in :data:`SERIES_MEMORY`."""
    return HELD_OUT_OPERATORS is not False and terms * n_test <= SERIES_MEMORY * p


def _series_saves_time(terms: int, n_test: int, p: int, t: int) -> bool:
    """Whether a series fold (``terms`` operators and products, float64 factorisations ~3 p^3
    of GEMM time) costs less than an eigen-basis fold at its best: the decomposition
    (:data:`EIGH_COST` p^3), the held-out voxels in the basis, one product fewer (the low-rank
    weights usually need one term less) and the cheaper of held-out operators or basis products."""
    product = 2.0 * n_test * p * t
    operator = 2.0 * n_test * p * p
    series = terms * (operator + product) + 3.0 * p**3
    fewer = max(terms - 1, 1)
    eigen = EIGH_COST * p**3 + operator + fewer * product + min(fewer * operator, 2.0 * p * p * t)
    return series <= eigen


#: Returned by :func:`_series_inverse` when it used up the Gram it was given and found no series.
GRAM_CONSUMED = "consumed"


def _series_inverse(
    ops: Any, g: Any, grid: np.ndarray, n_test: int, t: int
) -> tuple[Any, float, int] | str | None:
    """The scaled inverse ``mu G^-1`` (float64: the caller rounds it to the compute dtype once
    ``g`` is freed), ``mu`` and the number of Neumann terms when a fold can be scored without
    an eigendecomposition (see :data:`SERIES_FOLDS`).

    ``(G + alpha I)^-1 = sum_k (-alpha)^k G^-(k+1)``, truncated after ``K`` terms, has a relative
    error of at most ``(alpha / lambda_min)^K`` in every eigen-direction. When ``K`` terms reach
    the compute dtype's unit roundoff for the largest alpha (the accuracy
    :func:`_compress_weights` asks of low-rank weights), the fold's held-out operators are
    ``X_f G^-k`` (``X_f``: the centred held-out voxels), ``k = 1..K``, from one Cholesky
    inverse (float64, ~p^3 flops against ~30 p^3 of GEMM time for an eigendecomposition). The
    floor ``mu <= lambda_min`` is half a power-iteration estimate (on the inverse), proven by
    factorising ``G - mu I``; nothing is factorised when even the smallest diagonal entry of
    ``G`` (an upper bound of ``lambda_min``) would need too many terms. ``g`` (float64, lower
    triangle) is left intact when the result is None, and consumed otherwise
    (:data:`GRAM_CONSUMED`: no series after all). None when the series
    needs more terms than allowed, costs more than the eigen-basis
    (:func:`_series_saves_time`), its operators do not fit (:func:`_series_fits`), or ``G`` is
    not clearly positive definite.
    """
    p = g.shape[0]
    if SERIES_FOLDS is False or not _series_fits(1, n_test, p):
        return None
    tol = float(np.finfo(ops.host_dtype).eps) / 2
    max_terms = 64 if SERIES_FOLDS else grid.size
    # No eigenvalue exceeds the smallest diagonal entry: when even that floor would need too
    # many terms (wide grids), nothing is factorised.
    diagonal = ops.to_numpy(ops.copy(g.diagonal()))
    ceiling = SERIES_FLOOR_FACTOR * float(diagonal.min())
    best_case = _series_terms(float(grid.max()) / ceiling, tol) if ceiling > 0 else None
    if best_case is None or best_case > max_terms or not _series_fits(best_case, n_test, p):
        return None
    factor = ops.cholesky(ops.copy(g))
    if factor is None:
        return None
    inv = ops.cho_inverse(factor)  # G^-1 (float64), in place of the factor
    del factor
    # Power iteration (Rayleigh quotients) on G^-1: rq <= 1 / lambda_min. One pass over the
    # inverse per iteration (two over the factor for triangular solves).
    v = ops.asarray(np.cos(np.arange(p) * 0.7)[:, None] + 1.5, ops.f64)
    v /= float(np.sqrt(ops.to_numpy(ops.sumsq_cols(v))[0]))
    for _ in range(POWER_ITERATIONS):
        w = ops.matmul(inv, v)
        rq = float(ops.to_numpy(ops.sum64(w * v, 0))[0])
        v = w / float(np.sqrt(ops.to_numpy(ops.sumsq_cols(w))[0]))
    margin = float(diagonal.sum()) * p * np.finfo(np.float64).eps  # factorisations' rounding
    guess = SERIES_FLOOR_FACTOR / rq  # the estimate was within 11% after 8 iterations
    mu = guess - margin
    terms = _series_terms(float(grid.max()) / mu, tol) if mu > 8.0 * margin else None
    if terms is None or terms > max_terms:
        return None
    if not _series_fits(terms, n_test, p):
        return None
    if not (SERIES_FOLDS or HELD_OUT_OPERATORS or _series_saves_time(terms, n_test, p, t)):
        return None
    # The proof factorises G - guess I in place of G: one p x p float64 array less at the peak.
    # On failure (rare: the estimate was more than twice too large) the caller rebuilds G.
    ops.add_diagonal(g, -guess)
    if ops.cholesky(g) is None:  # G - guess I is not positive definite
        return GRAM_CONSUMED
    inv *= mu
    return inv, mu, terms


def _shifted_cholesky(ops: Any, gram: Any, alpha: float) -> Any:
    """Cholesky factor of ``gram + alpha I`` (``gram`` kept); None unless positive definite."""
    factor = ops.copy(gram)
    ops.add_diagonal(factor, alpha)
    return ops.cholesky(factor)


def _refit_by_inverse(n_targets: int, p: int, dtype: np.dtype) -> bool:
    """Whether the host refit of ``n_targets`` sharing one alpha multiplies by the explicit
    inverse of ``G + alpha I`` (float32 GEMM) rather than solving with its Cholesky factor
    (float64 triangular solves, ~3x slower per flop on the CPU): the inverse costs ``2/3 p^3``
    more float64 flops, repaid from about ``p / 2`` targets. The inverse is rounded to float32 as
    ``Xs^T Y`` already is, and the solution is as sensitive to either rounding (both scale with
    the condition number of ``G + alpha I``); float64 fits keep the backward-stable solves."""
    return dtype == np.dtype(np.float32) and 2 * n_targets >= p


def _refit_by_column_chunks(
    ops: Any,
    gram: Any,
    grid: np.ndarray,
    best: np.ndarray,
    budget: int,
    chunk: int,
    rhs_of: Any,
    store: Any,
) -> np.ndarray:
    """Cholesky refit on a device: contiguous column chunks, each alpha's columns gathered and
    scattered there (host-side fancy indexing of the p x t arrays took 4 s of a 20 s NSD fit).
    Factors are kept while they fit in ``budget`` and recomputed otherwise. Returns the
    targets left for the eigen-basis (from the first chunk where a factorisation failed)."""
    p = gram.shape[0]
    keep = max(1, budget // (8 * p * p))
    factors: dict[int, Any] = {}
    for cols in _chunks(best.size, chunk):
        rhs = rhs_of(cols, ops.f64)
        w = ops.empty((p, cols.stop - cols.start))
        for a in np.unique(best[cols]):
            factor = factors.get(int(a))
            if factor is None:
                factor = _shifted_cholesky(ops, gram, float(grid[a]))
                if factor is None:  # lost to rounding: the eigen-basis takes the rest
                    return np.arange(cols.start, best.size)
                if len(factors) < keep:
                    factors[int(a)] = factor
            idx = ops.index(np.flatnonzero(best[cols] == a))
            w[:, idx] = ops.cast(ops.cho_solve(factor, rhs[:, idx]), ops.dt)
        store(cols, w)
        del rhs, w
    return np.arange(0)


def _chunk_of(budget: int, per_target: int, t: int, chunk_size: int | None) -> int:
    if chunk_size:
        return int(chunk_size)
    widest = max(1, min(t, budget // max(1, per_target)))
    n_chunks = -(-t // widest)
    return -(-t // n_chunks)  # equal chunks (no narrow last one), none wider than the budget


def _keeps_standardised_voxels(n: int, p: int, itemsize: int, budget: int) -> bool:
    """Whether the voxel form's first pass holds all ``n x p`` standardised voxels: when they
    take at most the chunk budget plus the folds' two float64 ``p x p`` arrays (``16 p^2``
    bytes), which with the full Gram make the folds' peak, so holding them does not raise it."""
    return n * p * itemsize <= budget + 16 * p * p


def _fit_primal(
    src: _Source,
    folds: Sequence[slice],
    grid: np.ndarray,
    fit_intercept: bool,
    budget: int,
    chunk_size: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, list[int], dict[str, Any]]:
    """Voxel form (every training fold has at least as many samples as voxels).

    One pass over the data forms the float64 Gram ``Xs^T Xs`` and ``Xs^T Y``; the latter is
    kept in the output array, which the refit overwrites chunk by chunk. Then the folds run one
    at a time: the fold's training Gram (full minus held-out) is decomposed, every chunk of
    targets is scored through that basis, and the basis is freed. Only one ``p x p`` basis, the
    full Gram and the held-out voxels of one fold are alive at once, whatever ``t``.
    """
    ops, Y = src.ops, src.Y
    n, t = Y.shape
    p = int(src.mean.size)
    dt = np.dtype(ops.host_dtype)
    isz = dt.itemsize
    grid_dev = ops.asarray(grid, ops.f64)
    device_y = ops.name != "numpy"

    # Pass 1: target sums (checked finite), then the Gram, column sums and Xs^T Y (kept in the
    # output array until the refit).
    coef = np.zeros((p, t), dtype=dt, order="F")
    big_rows = src.rows * BIG_BLOCK_FACTOR
    xty_chunk = _chunk_of(budget, isz * (2 * p + big_rows), t, None)
    y_sums = np.empty((len(folds), t))

    def check_finite(cols: slice) -> None:
        if not np.all(np.isfinite(y_sums[:, cols])):
            raise DataError(
                f"Y has non-finite values in targets {cols.start}-{cols.stop - 1}; fix or drop them"
            )

    if device_y:
        gram, colsum = _gram_rows(src, slice(0, n), fit_intercept)
        # On a device, accumulate Xs^T Y there, one column chunk at a time: copying the p x chunk
        # product back to the host for every row block would dominate the run time. The fold
        # sums of the targets come from the same transferred blocks (no pass of their own).
        blocks = list(src.blocks(slice(0, n)))
        cached = [src.voxels(rows) for rows in blocks] if n * p * isz <= 4 * budget else None
        for cols in _chunks(t, xty_chunk):
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
            check_finite(cols)
            coef[:, cols] = ops.to_numpy(acc)
            del acc
        del cached
        y_total = y_sums.sum(0)
    else:
        for cols in _chunks(t, xty_chunk):
            for k, f in enumerate(folds):
                y_sums[k, cols] = ops.to_numpy(ops.sum64(src.targets(f, cols), 0))
            check_finite(cols)
        y_total = y_sums.sum(0)
        acc = _GramAccumulator(ops, fit_intercept)
        if _keeps_standardised_voxels(n, p, isz, budget):
            # All standardised voxels at once, so that Xs^T Y is one product over every sample
            # per column chunk (1.2x the rate of row blocks added into the strided output).
            # Freed before the folds.
            xs = np.empty((n, p), dtype=dt)
            for rows in src.blocks(slice(0, n), big_rows):
                acc.add(src.standardise(rows, xs[rows]))
            # Written straight into the output: one product for all targets unless BLAS cannot
            # take them in place (the fallback's temporaries stay within the budget).
            whole = _blas.accepts(xs.T, Y, coef)
            for cols in _chunks(t, t if whole else xty_chunk):
                ops.gemm(xs.T, src.targets(slice(0, n), cols), coef[:, cols])
            del xs
        else:
            # Each row block is standardised once for both products; larger blocks than the
            # other passes' mean fewer read-modify-writes of the p x t output.
            block = np.empty((min(n, big_rows), p), dtype=dt)
            for rows in src.blocks(slice(0, n), big_rows):
                xb = src.standardise(rows, block[: rows.stop - rows.start])
                acc.add(xb)
                for cols in _chunks(t, xty_chunk):
                    ops.gemm(xb.T, src.targets(rows, cols), coef[:, cols], beta=1.0)
                del xb
            del block
        gram, colsum = acc.gram, acc.colsum
        del acc

    scores = np.empty((len(folds), grid.size, t), dtype=dt)
    products = []
    chunk = None
    fold_floor = -np.inf  # largest smallest eigenvalue of a training Gram
    held_out_operators: list[bool] = []
    series_folds: list[bool] = []
    for k, f in enumerate(folds):
        n_test = f.stop - f.start
        n_train = n - n_test

        # The held-out voxels, standardised once: for the fold's Gram and its predictions.
        fold_voxels = src.span_voxels(f, transposed=ops.name == "numpy")

        def training_gram(
            n_train: int = n_train, full: Any = gram, held_out_voxels: Any = fold_voxels
        ) -> tuple[Any, Any]:
            """The fold's training Gram (full minus held-out, centred) and training mean."""
            # The held-out rows' Gram subtracted from a copy of the full one, by syrk.
            held_out = _GramAccumulator(ops, fit_intercept, start=ops.copy(full), sign=-1.0)
            held_out.add_rows(held_out_voxels, big_rows)
            g, colsum_test = held_out.gram, held_out.colsum
            shift = None
            if fit_intercept:
                shift = (colsum - colsum_test) / n_train
                _sub_outer(g, shift, shift, float(n_train))
            return g, shift

        g, shift = training_gram()
        series = _series_inverse(ops, g, grid, n_test, t)
        if series is GRAM_CONSUMED:  # no series after all: rebuild the Gram for the eigen-basis
            g, shift = training_gram()
            series = None
        if series is not None:
            # Neumann series, no eigendecomposition: held-out operators X_f (mu G^-1)^k,
            # k = 1..K, by chained GEMMs; alpha j mixes them with (-alpha_j / mu)^(k-1) / mu.
            inverse64, mu, n_products = series
            del g, series  # the proof's factor goes before the inverse is rounded (peak memory)
            inv = ops.cast(inverse64, ops.dt)
            del inverse64
            fold_floor = max(fold_floor, mu)
            products.append(n_products)
            held_out_operators.append(True)
            series_folds.append(True)
            voxels_f = fold_voxels
            shift_b = None
            shift_dt = None
            if fit_intercept:
                shift_dt = ops.cast(ops.asarray(shift, ops.f64), ops.dt)
                voxels_f -= shift_dt[None, :]
            held = ops.empty((n_products, n_test, p))
            ops.matmul(voxels_f, inv, out=held[0])
            for j in range(1, n_products):
                ops.matmul(held[j - 1], inv, out=held[j])
            del inv
            powers = (-grid[:, None] / mu) ** np.arange(n_products)[None, :] / mu
            factors = None
            mix = ops.asarray(np.concatenate([powers, -np.ones((grid.size, 1))], axis=1))
            fold = _Fold(None, None, None, f, n_train, None, None, mix)
            rank = n_products + 2
        else:
            series_folds.append(False)
            eigvals, basis64 = ops.eigh(g)
            del g
            fold_floor = max(fold_floor, float(eigvals.min()))
            basis = ops.cast(basis64, ops.dt)
            weights = _ridge_weights(ops, eigvals, grid_dev)
            factors, mix = _compress_weights(ops, weights)
            n_products = grid.size if factors is None else int(factors.shape[1])
            products.append(n_products)
            held_out_operators.append(_use_held_out_operators(n_products, n_test, p, t))
            shift_dt = None
            test_op = ops.matmul(fold_voxels, basis)
            voxels_f = fold_voxels if held_out_operators[-1] else None  # kept for the operators
            # Otherwise the held-out rows are done with (also the closure's reference to them).
            del training_gram
            fold_voxels = None
            shift_b = None
            if fit_intercept:
                shift_b = ops.cast(ops.matmul(shift[None, :], basis64)[0], ops.dt)
                test_op -= shift_b[None, :]
            del basis64
            fold = _Fold(
                basis, ops.cast(weights, ops.dt), shift_b, f, n_train, test_op, factors, mix
            )
            del weights
            held = None
            if voxels_f is not None:
                # Held-out operators H_j = A_f diag(w_j) B^T (n_test x p, one per factor or alpha),
                # all from one GEMM: the predictions are H_j R with R the training cross-products in
                # voxel space, so no target chunk needs the p x p product B^T R.
                columns = fold.factors if fold.factors is not None else fold.weights
                scaled = ops.empty((n_products, n_test, p))
                for j in range(n_products):
                    ops.copyto(scaled[j], test_op)
                    scaled[j] *= columns[:, j][None, :]
                held = ops.empty((n_products, n_test, p))
                ops.matmul(scaled.reshape(n_products * n_test, p), basis.T,
                           out=held.reshape(n_products * n_test, p))  # fmt: skip
                del scaled
                if fit_intercept:
                    shift_dt = ops.cast(ops.asarray(shift, ops.f64), ops.dt)
                    voxels_f -= shift_dt[None, :]
                fold.basis = fold.test_op = None
                del basis, test_op
            rank = 1 if factors is None else factors.shape[1] + 2
        if held is not None:
            # Per target: the training cross-products, the products of the operators and the
            # held-out targets (a copy, and a centred one) (+ a device Xs^T Y).
            per_target = isz * ((1 + device_y) * p + (n_products + 2) * n_test)
        else:
            # Per target: eigen-coefficients, the held-out correction, a scaled copy, the
            # held-out targets (raw and centred), the predictions or low-rank parts (+ a device
            # Xs^T Y).
            per_target = isz * (3 * p + (rank + 3) * n_test + p * device_y)
        fold_chunk = _chunk_of(budget, per_target, t, chunk_size)
        chunk = fold_chunk if chunk is None else min(chunk, fold_chunk)
        y_total_dev = ops.asarray(y_total, ops.f64)
        # The chunks' large arrays are reused (held-out operators, numpy): fresh ones are
        # page-faulted in at every chunk. Freed with the fold, as before the next fold's peak.
        scratch = _Scratch() if held is not None and ops.name == "numpy" else None
        for cols in _chunks(t, fold_chunk):
            y = src.targets(f, cols)
            if held is None:
                # Training cross-products in the fold's basis: B^T (Xs^T Y - Xs_f^T Y_f), with
                # Xs_f B = test_op (+ 1 shift_b^T when centred).
                coefs = ops.matmul(fold.basis.T, ops.asarray(coef[:, cols]))
                ops.gemm(fold.test_op.T, y, coefs, alpha=-1.0, beta=1.0)
            else:  # the same in voxel space, with the centred held-out voxels
                if scratch is not None:
                    coefs = scratch.take("coefs", (cols.stop - cols.start, p), dt).T
                    np.copyto(coefs, coef[:, cols])
                else:
                    coefs = ops.fresh(coef[:, cols])
                ops.gemm(voxels_f.T, y, coefs, alpha=-1.0, beta=1.0)
            target = y
            if fit_intercept:
                y_train = y_total_dev[cols] - ops.asarray(y_sums[k, cols], ops.f64)
                offset = shift_b if held is None else shift_dt
                coefs -= offset[:, None] * ops.cast(y_total_dev[cols], ops.dt)[None, :]
                target = y - ops.cast(y_train / n_train, ops.dt)[None, :]
            _fold_scores(ops, fold, coefs, target, scores[k][:, cols], held, scratch)
            del coefs, target, y
        del fold, factors, mix, held, voxels_f, fold_voxels, scratch

    # Refit on all samples, each target with its own alpha.
    best = _select_alphas(scores, grid, dt)[0]
    voxel_mean = vm = None  # column sums are only taken for intercept fits
    if fit_intercept:
        voxel_mean = colsum / n
        _sub_outer(gram, voxel_mean, voxel_mean, float(n))
        vm = ops.cast(voxel_mean, ops.dt)
    intercept = np.zeros(t)

    def rhs_of(cols: slice | np.ndarray, dtype: Any) -> Any:
        """Xs^T Y of ``cols``, centred for intercept fits: ``Xs^T Y - n mean_x mean_y^T``."""
        rhs = ops.asarray(coef[:, cols], dtype)
        if fit_intercept:
            centre = voxel_mean[:, None] * ops.asarray(y_total[cols], ops.f64)[None, :]
            rhs = rhs - ops.cast(centre, dtype)
        return rhs

    def store(cols: slice | np.ndarray, w: Any) -> None:
        if fit_intercept:
            intercept[cols] = y_total[cols] / n - ops.to_numpy(
                ops.cast(ops.matmul(vm[None, :], w)[0], ops.f64)
            )
        coef[:, cols] = ops.to_numpy(w)

    remaining = np.arange(t)
    chosen = np.unique(best)
    by_inverse: list[int] = []  # targets of each alpha refitted through the explicit inverse
    if chosen.size <= CHOLESKY_MAX_ALPHAS and _full_gram_is_regular(gram, fold_floor, p):
        # Every training Gram is dominated by the full one (Loewner order, centred or not), so
        # no eigenvalue of the full Gram reaches the null-space tolerance of _ridge_weights and
        # (G + alpha I)^-1 equals the eigen-basis solve: one float64 Cholesky factorisation per
        # chosen alpha (p^3/3 flops) replaces the last eigendecomposition (~4 p^3).
        solve_chunk = _chunk_of(budget, 8 * 3 * p + isz * p, t, chunk_size)
        if device_y:
            remaining = _refit_by_column_chunks(
                ops, gram, grid, best, budget, solve_chunk, rhs_of, store
            )
        else:
            gemm_chunk = _chunk_of(budget, 2 * isz * p, t, chunk_size)
            for a in chosen:
                factor = _shifted_cholesky(ops, gram, float(grid[a]))
                if factor is None:  # lost to rounding: the eigen-basis takes the rest
                    break
                cols_a = np.flatnonzero(best == a)
                if _refit_by_inverse(cols_a.size, p, dt):
                    by_inverse += [int(cols_a.size)]
                    inverse = ops.cast(ops.cho_inverse(factor), ops.dt)
                    del factor
                    for cols in _index_chunks(cols_a, gemm_chunk):
                        rhs = rhs_of(cols, ops.dt)
                        # In the output's column order: the copy into it is contiguous.
                        w = np.empty((rhs.shape[1], p), dtype=dt).T
                        store(cols, ops.matmul(inverse, rhs, out=w))
                        del rhs, w
                    del inverse
                else:
                    for cols in _index_chunks(cols_a, solve_chunk):
                        store(cols, ops.cast(ops.cho_solve(factor, rhs_of(cols, ops.f64)), ops.dt))
                    del factor
                remaining = remaining[best[remaining] != a]
    refit = "cholesky" if remaining.size == 0 else "eigh"
    if remaining.size:
        eigvals, basis64 = ops.eigh(gram)
        basis = ops.cast(basis64, ops.dt)
        del basis64
        weights = ops.cast(_ridge_weights(ops, eigvals, grid_dev), ops.dt)
        refit_chunk = _chunk_of(budget, isz * (3 * p + p * device_y), t, chunk_size)
        for cols in _index_chunks(remaining, refit_chunk):
            coefs = ops.matmul(basis.T, rhs_of(cols, ops.dt))
            coefs *= weights[:, ops.index(best[cols])]
            store(cols, ops.matmul(basis, coefs))
            del coefs
    del gram
    return (
        coef,
        intercept,
        scores,
        int(chunk),
        products,
        {
            "refit": refit,
            "inverse_refit_targets": by_inverse,
            "held_out_operators": held_out_operators,
            "series_folds": series_folds,
        },
    )


def _fit_kernel(
    src: _Source,
    folds: Sequence[slice],
    grid: np.ndarray,
    fit_intercept: bool,
    budget: int,
    chunk_size: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, list[int], dict[str, Any]]:
    """Kernel form (fewer training samples than voxels): ``n x n`` bases, all kept, targets
    streamed in chunks through every fold."""
    ops, Y = src.ops, src.Y
    n, t = Y.shape
    dt = np.dtype(ops.host_dtype)
    host = np.empty((n, int(src.mean.size)), dtype=dt)
    for rows in src.blocks(slice(0, n)):
        host[rows] = ops.to_numpy(src.voxels(rows))
    Xs = ops.asarray(host)
    del host
    fold_bases, refit = _prepare_kernel(ops, Xs, folds, ops.asarray(grid, ops.f64), fit_intercept)
    del Xs
    p = refit.to_voxels.shape[0]
    m = refit.basis.shape[0]
    n_test_max = max(f.stop - f.start for f in folds)
    rank = max(f.factors.shape[1] + 2 if f.factors is not None else 1 for f in fold_bases)
    # Per target: eigen-coefficients (CV and refit), scaled copy, held-out predictions or
    # low-rank parts, refit weights, and a device copy of Y.
    per_target = dt.itemsize * (3 * m + rank * n_test_max + p + (n if ops.name != "numpy" else 0))
    chunk = _chunk_of(budget, per_target, t, chunk_size)
    scores = np.empty((len(folds), grid.size, t), dtype=dt)
    coef = np.empty((p, t), dtype=dt)
    intercept = np.zeros(t)
    for cols in _chunks(t, chunk):
        y_folds = [src.targets(f, cols) for f in folds]
        y_sums = [ops.sum64(y, 0) for y in y_folds]
        y_total = ops.copy(y_sums[0])
        for y_sum in y_sums[1:]:
            y_total += y_sum
        if not ops.all_finite(y_total):
            raise DataError(
                f"Y has non-finite values in targets {cols.start}-{cols.stop - 1}; fix or drop them"
            )
        rhs = _cv_chunk_kernel(ops, fold_bases, refit, y_folds, y_sums, y_total, fit_intercept,
                               scores[:, :, cols])  # fmt: skip
        best = _select_alphas(scores[:, :, cols], grid, dt)[0]
        w, b = _refit_chunk(ops, refit, rhs, best, y_total, n, fit_intercept)
        coef[:, cols] = w
        intercept[cols] = b
        del y_folds, rhs
    products = [grid.size if f.factors is None else int(f.factors.shape[1]) for f in fold_bases]
    return coef, intercept, scores, chunk, products, {"refit": "eigh"}


# --- preparing the eigen-bases (once, shared by all targets) ---------------------------------


def _centred_kernel(k_rows: Any, row_means: Any, col_means: Any, grand: float) -> Any:
    return k_rows - row_means[:, None] - col_means[None, :] + grand


def _prepare_kernel(
    ops: Any, Xs: Any, folds: Sequence[slice], grid: Any, fit_intercept: bool
) -> tuple[list[_Fold], _Refit]:
    """Sample-space eigen-bases of each fold's training kernel ``X X^T`` and of the full one,
    for folds with fewer samples than voxels."""
    n, p = Xs.shape
    kernel = None
    step = max(1, 2**24 // n)
    for start in range(0, p, step):
        xb = ops.cast(Xs[:, start : start + step], ops.f64)
        if kernel is None:
            kernel = xb @ xb.T
        else:
            kernel += xb @ xb.T
    all_idx = np.arange(n)
    fold_bases = []
    for f in folds:
        train = ops.index(np.concatenate([all_idx[: f.start], all_idx[f.stop :]]))
        test = ops.index(all_idx[f])
        k_train = ops.take(kernel, train, train)
        k_test = ops.take(kernel, test, train)
        if fit_intercept:
            means = k_train.mean(1)
            grand = float(means.mean())
            k_test = _centred_kernel(k_test, k_test.mean(1), means, grand)
            k_train = _centred_kernel(k_train, means, means, grand)
        eigvals, basis64 = ops.eigh(k_train)
        del k_train
        weights = _ridge_weights(ops, eigvals, grid)
        factors, mix = _compress_weights(ops, weights)
        fold_bases.append(
            _Fold(
                ops.cast(basis64, ops.dt),
                ops.cast(weights, ops.dt),
                ops.cast(basis64.sum(0), ops.dt),
                f,
                n - (f.stop - f.start),
                ops.cast(k_test @ basis64, ops.dt),
                factors,
                mix,
            )
        )
        del k_test, basis64
    if fit_intercept:
        means = kernel.mean(1)
        kernel = _centred_kernel(kernel, means, means, float(means.mean()))
    eigvals, basis64 = ops.eigh(kernel)
    del kernel
    voxel_mean = ops.sum64(Xs, 0) / n
    basis = ops.cast(basis64, ops.dt)
    ones = ops.cast(basis64.sum(0), ops.dt)
    to_voxels = ops.matmul(Xs.T, basis)
    if fit_intercept:
        to_voxels -= ops.cast(voxel_mean, ops.dt)[:, None] * ones[None, :]
    weights = ops.cast(_ridge_weights(ops, eigvals, grid), ops.dt)
    refit = _Refit(basis, weights, ones, to_voxels, voxel_mean)
    return fold_bases, refit


# --- one chunk of targets ---------------------------------------------------------------------


def _fold_scores(
    ops: Any,
    fold: _Fold,
    coefs: Any,
    target: Any,
    out: np.ndarray,
    held: Any = None,
    scratch: _Scratch | None = None,
) -> None:
    """Negative held-out MSE of every alpha for a chunk of targets, into ``out`` (a, tc).

    ``coefs`` are the training cross-products in the fold's eigen-basis (m x tc); the held-out
    predictions of alpha k are ``test_op @ diag(weights[:, k]) @ coefs``. The diagonal scaling
    goes on the smaller of the two factors. With low-rank weights (:func:`_compress_weights`)
    only ``r`` products are formed and each alpha's residual is one small combination of them
    (``fold.mix``; also the Neumann-series terms of :func:`_series_inverse`).
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
        if _series_scores_by_rows(fold.mix, parts[:rank], target, out):
            return
        ops.copyto(parts[rank], target)
        _mixed_scores_by_rows(ops, fold.mix, parts, out)
        return
    ops.copyto(parts[rank], target)
    flat = parts.reshape(rank + 1, n_test * tc)
    resid = ops.empty((1, n_test * tc))
    for k in range(fold.mix.shape[0]):
        ops.matmul(fold.mix[k : k + 1], flat, out=resid)  # prediction minus target
        out[k] = ops.to_numpy(ops.sumsq_cols(resid.reshape(n_test, tc))) / -n_test


def _mixed_scores_by_rows(
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


def _series_scores_by_rows(
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


def _cv_chunk_kernel(
    ops: Any,
    folds: Sequence[_Fold],
    refit: _Refit,
    y_folds: Sequence[Any],
    y_sums: Sequence[Any],
    y_total: Any,
    fit_intercept: bool,
    scores: np.ndarray,
) -> Any:
    """CV scores of a chunk in the kernel form; returns ``basis^T Y`` of the full kernel."""
    for k, fold in enumerate(folds):
        # Basis rows follow the training samples: the folds before this one, then those after.
        coefs = None
        row = 0
        for j, y in enumerate(y_folds):
            if j == k:
                continue
            term = ops.matmul(fold.basis[row : row + y.shape[0]].T, y)
            row += y.shape[0]
            if coefs is None:
                coefs = term
            else:
                coefs += term
        target = y_folds[k]
        if fit_intercept:
            y_mean = ops.cast((y_total - y_sums[k]) / fold.n_train, ops.dt)
            coefs -= fold.shift[:, None] * y_mean[None, :]
            target = target - y_mean[None, :]
        _fold_scores(ops, fold, coefs, target, scores[k])
    rhs = None
    for fold, y in zip(folds, y_folds, strict=True):
        term = ops.matmul(refit.basis[fold.test].T, y)
        if rhs is None:
            rhs = term
        else:
            rhs += term
    return rhs


def _refit_chunk(
    ops: Any, refit: _Refit, rhs: Any, best: np.ndarray, y_total: Any, n: int, fit_intercept: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Kernel-form weights on all samples, each target with its own alpha (``rhs`` is
    ``basis^T Y``): one scaling, one product."""
    y_mean = y_total / n
    coefs = rhs
    if fit_intercept:
        coefs -= refit.shift[:, None] * ops.cast(y_mean, ops.dt)[None, :]
    coefs *= refit.weights[:, ops.index(best)]
    w = ops.matmul(refit.to_voxels, coefs)
    b = np.zeros(w.shape[1])
    if fit_intercept:
        b = ops.to_numpy(y_mean - ops.cast(ops.cast(refit.voxel_mean, ops.dt) @ w, ops.f64))
    return ops.to_numpy(w), b


# --------------------------------------------------------------------------------------------
# Saving and loading (safetensors + JSON sidecar; never pickle)
# --------------------------------------------------------------------------------------------

_TENSORS = ("coef", "intercept", "voxel_mask", "mean", "scale", "alphas", "alpha_grid", "cv_scores")


def _paths(path: str | Path) -> tuple[Path, Path]:
    path = Path(path)
    if path.suffix in (".safetensors", ".json"):
        path = path.with_suffix("")
    return path.with_name(path.name + ".safetensors"), path.with_name(path.name + ".json")


def _save_tensors(tensors: dict[str, np.ndarray], path: Path) -> None:
    """safetensors' ``save_file``, which writes from the arrays' own memory (no serialised
    copy); its I/O failures come back as the OSError they were (e.g. a full disk)."""
    import re

    from safetensors import SafetensorError
    from safetensors.numpy import save_file

    try:
        save_file(tensors, path, metadata={_FORMAT_KEY: str(DECODER_FORMAT_VERSION)})
    except SafetensorError as exc:
        code = re.search(r"os error (\d+)", str(exc))
        number = int(code.group(1)) if code else 0
        raise OSError(number, os.strerror(number) if code else str(exc)) from exc


def save_decoder(
    decoder: RidgeDecoder, path_stem: str | Path, metadata: Mapping[str, Any] | None = None
) -> tuple[Path, Path]:
    """Write a decoder as ``<stem>.safetensors`` (arrays) and ``<stem>.json`` (sidecar).

    Parameters
    ----------
    decoder : RidgeDecoder
        The decoder to save.
    path_stem : path
        Output path without extension (an extension ``.safetensors``/``.json`` is dropped).
    metadata : mapping, optional
        Extra JSON-serialisable provenance (ROI, model id, seed ...), merged over
        ``decoder.metadata`` and stored under ``"Metadata"`` in the sidecar.

    Returns
    -------
    tuple of pathlib.Path
        The safetensors and JSON paths. Both are written atomically.
    """
    tensors_path, sidecar_path = _paths(path_stem)
    meta = {**decoder.metadata, **(metadata or {})}
    try:
        meta_text = json.dumps(meta, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"metadata for {sidecar_path}: not JSON-serialisable ({exc})") from exc
    # Written from the arrays' memory; the fitted coefficients are in column order, so they
    # are copied once into row order.
    tensors = {name: np.ascontiguousarray(getattr(decoder, name)) for name in _TENSORS}
    counts = decoder.alpha_counts()
    sidecar = {
        _FORMAT_KEY: DECODER_FORMAT_VERSION,
        "SoftwareVersion": __version__,
        "NVoxels": decoder.n_voxels,
        "NVoxelsUsed": decoder.n_voxels_used,
        "NVoxelsDropped": decoder.n_voxels_dropped,
        "TargetShape": list(decoder.target_shape),
        "NTargets": decoder.n_targets,
        "NSamples": decoder.n_samples,
        "NFolds": decoder.n_folds,
        "FitIntercept": decoder.fit_intercept,
        "DType": str(decoder.coef.dtype),
        "CVScore": "negative mean squared error, averaged over folds",
        "AlphaGrid": [float(x) for x in decoder.alpha_grid],
        "AlphaCounts": {f"{k:g}": v for k, v in counts.items()},
        "Metadata": json.loads(meta_text),
    }
    # Each file is written whole or not at all (an OutputError naming it, with the fix); a
    # sidecar that cannot be written takes its tensors with it.
    atomic_write_with(tensors_path, lambda tmp: _save_tensors(tensors, tmp))
    with removed_on_failure(tensors_path):
        atomic_write_text(sidecar_path, json.dumps(sidecar, indent=2) + "\n")
    return tensors_path, sidecar_path


def load_decoder(path: str | Path) -> RidgeDecoder:
    """Read a decoder written by :func:`save_decoder` and check it.

    Parameters
    ----------
    path : path
        The ``.safetensors`` or ``.json`` file, or their common stem.

    Returns
    -------
    RidgeDecoder
        With ``metadata`` from the sidecar; ``cv_mean_scores`` is not stored (None).
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load

    tensors_path, sidecar_path = _paths(path)
    for required in (tensors_path, sidecar_path):
        if not required.is_file():
            raise MissingInputError(
                f"{required}: decoder file not found; save it with save_decoder"
            )
    try:
        sidecar = json.loads(sidecar_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{sidecar_path}: not valid JSON ({exc}); re-save the decoder") from exc
    if not isinstance(sidecar, dict) or sidecar.get(_FORMAT_KEY) != DECODER_FORMAT_VERSION:
        found = sidecar.get(_FORMAT_KEY) if isinstance(sidecar, dict) else None
        raise DataError(
            f"{sidecar_path}: decoder format {found!r}, this version reads "
            f"{DECODER_FORMAT_VERSION}; re-save the decoder with this version"
        )
    try:
        arrays = load(tensors_path.read_bytes())
    except (SafetensorError, ValueError, OSError) as exc:
        raise DataError(f"{tensors_path}: not a readable safetensors file ({exc})") from exc
    missing = [name for name in _TENSORS if name not in arrays]
    if missing:
        raise DataError(f"{tensors_path}: missing arrays {missing}; re-save the decoder")

    def fail(what: str) -> DataError:
        return DataError(f"{tensors_path}: {what}; the file does not match {sidecar_path.name}")

    try:
        target_shape = tuple(int(s) for s in sidecar["TargetShape"])
        n_voxels = int(sidecar["NVoxels"])
        n_targets = int(sidecar["NTargets"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{sidecar_path}: missing or bad field {exc}; re-save the decoder") from exc
    coef, mask = arrays["coef"], arrays["voxel_mask"]
    if coef.dtype not in (np.float32, np.float64) or coef.ndim != 2:
        raise fail(f"coef must be a float32/float64 matrix, found {coef.dtype} {coef.shape}")
    if mask.dtype != np.bool_ or mask.shape != (n_voxels,):
        raise fail(
            f"voxel_mask must be bool of shape ({n_voxels},), found {mask.dtype} {mask.shape}"
        )
    n_used = int(mask.sum())
    if math.prod(target_shape) != n_targets or coef.shape != (n_used, n_targets):
        raise fail(f"coef has shape {coef.shape}, expected ({n_used}, {n_targets})")
    expected = {
        "intercept": (n_targets,),
        "mean": (n_used,),
        "scale": (n_used,),
        "alphas": (n_targets,),
        "cv_scores": (n_targets,),
    }
    for name, shape in expected.items():
        arr = arrays[name]
        if arr.shape != shape or not np.issubdtype(arr.dtype, np.floating):
            raise fail(f"{name} must be floating of shape {shape}, found {arr.dtype} {arr.shape}")
    grid = arrays["alpha_grid"]
    if grid.ndim != 1 or grid.size == 0 or not np.issubdtype(grid.dtype, np.floating):
        raise fail(f"alpha_grid must be a non-empty float vector, found {grid.dtype} {grid.shape}")
    if np.any(arrays["scale"] <= 0):
        raise fail("scale has non-positive values")
    return RidgeDecoder(
        coef=coef,
        intercept=arrays["intercept"],
        voxel_mask=mask,
        mean=arrays["mean"],
        scale=arrays["scale"],
        alphas=arrays["alphas"],
        alpha_grid=grid,
        cv_scores=arrays["cv_scores"],
        target_shape=target_shape,
        fit_intercept=bool(sidecar.get("FitIntercept", True)),
        n_folds=int(sidecar.get("NFolds", 0)),
        n_samples=int(sidecar.get("NSamples", 0)),
        metadata=dict(sidecar.get("Metadata") or {}),
    )
