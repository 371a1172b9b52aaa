"""Backends: the few array operations the solver needs, on numpy (scipy's BLAS and LAPACK) or
torch (CUDA when available, else CPU), behind one interface (:func:`make_ops`)."""

from __future__ import annotations

import functools
from typing import Any, Literal

import numpy as np

from ..errors import UsageError
from . import _blas

Backend = Literal["auto", "numpy", "torch"]


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


class NumpyOps:
    """The solver's array operations on numpy, through scipy's BLAS and LAPACK."""

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


class TorchOps:
    """The solver's array operations on torch (a CUDA device, or the CPU)."""

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


def make_ops(backend: str, device: str | None, dtype: np.dtype) -> NumpyOps | TorchOps:
    """The operations of ``backend`` (``"auto"``: torch on CUDA when available, else numpy) in
    compute dtype ``dtype``."""
    if backend == "numpy":
        if device not in (None, "cpu"):
            raise UsageError(f"device={device!r}: the numpy backend runs on the CPU only")
        return NumpyOps(dtype)
    if backend in ("torch", "auto"):
        try:
            import torch
        except ImportError as exc:
            if backend == "auto":
                return NumpyOps(dtype)
            raise UsageError(
                "backend='torch': torch is not installed; use backend='numpy'"
            ) from exc
        if backend == "auto" and device is None and not torch.cuda.is_available():
            return NumpyOps(dtype)
        return TorchOps(dtype, device)
    raise UsageError(f"backend={backend!r}: use 'auto', 'numpy' or 'torch'")
