"""Matrix products on strided numpy arrays through scipy's BLAS, without copies.

scipy's Python BLAS wrappers copy any operand that is not contiguous, such as a column chunk of
a C-ordered ``(n, t)`` target matrix, and cannot add a product into a strided output. BLAS itself
takes a leading dimension for every operand, so :func:`gemm` calls scipy's ``?gemm`` directly
(the function pointers scipy exports for Cython, reached through ctypes, which releases the GIL
during the call). Arrays it cannot describe to BLAS (no unit stride along either axis, empty,
other dtypes, 32-bit overflow) are left to the caller's fallback.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any

import numpy as np

_INT_MAX = 2**31 - 1
_SIGNATURE_START = b"void (char *, char *, int *, int *, int *, "
_REALS = {
    np.dtype(np.float32): ("sgemm", ctypes.c_float),
    np.dtype(np.float64): ("dgemm", ctypes.c_double),
}


@functools.cache
def _gemm_pointer(dtype: np.dtype) -> Any:
    """scipy's Fortran ``?gemm`` for ``dtype`` as a ctypes function, or None if unavailable."""
    try:
        from scipy.linalg import cython_blas

        name, real = _REALS[dtype]
        capsule = cython_blas.__pyx_capi__[name]
        get_name = ctypes.pythonapi.PyCapsule_GetName
        get_name.restype = ctypes.c_char_p
        get_name.argtypes = [ctypes.py_object]
        get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
        get_pointer.restype = ctypes.c_void_p
        get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
        signature = get_name(capsule)
        address = get_pointer(capsule, signature)
    except Exception:  # noqa: BLE001 - any failure means: use the copying wrappers
        return None
    # The prototype below assumes 32-bit BLAS integers: anything else keeps the wrappers.
    if not address or not signature.startswith(_SIGNATURE_START):
        return None
    int_p = ctypes.POINTER(ctypes.c_int)
    real_p = ctypes.POINTER(real)
    prototype = ctypes.CFUNCTYPE(
        None,
        ctypes.c_char_p, ctypes.c_char_p, int_p, int_p, int_p, real_p,
        ctypes.c_void_p, int_p, ctypes.c_void_p, int_p, real_p, ctypes.c_void_p, int_p,
    )  # fmt: skip
    return prototype(address), real


def _column_major(x: np.ndarray) -> tuple[bool, int] | None:
    """How BLAS sees ``x`` (2-D): ``(transposed, leading dimension)``, where ``transposed``
    means the column-major matrix at ``x``'s address is ``x.T``; None if it has no unit stride."""
    rows, cols = x.shape
    isz = x.itemsize
    s0, s1 = x.strides
    if s0 % isz or s1 % isz:
        return None
    s0, s1 = s0 // isz, s1 // isz
    if (s0 == 1 or rows == 1) and s1 >= max(1, rows) and cols > 1:
        return False, s1  # column-major, leading dimension s1
    if (s1 == 1 or cols == 1) and s0 >= max(1, cols):
        return True, s0  # row-major: the column-major matrix is x.T
    return None


def _plan(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> tuple[Any, ...] | None:
    """How BLAS takes ``out = a @ b``: the function, its real type and each operand's
    ``(transposed, leading dimension)``; None when it cannot take these arrays directly."""
    dt = out.dtype
    if a.dtype != dt or b.dtype != dt or dt not in _REALS or not out.flags.writeable:
        return None
    if not (a.flags.aligned and b.flags.aligned and out.flags.aligned):
        return None
    if a.ndim != 2 or b.ndim != 2 or out.ndim != 2:
        return None
    m, k = a.shape
    n = b.shape[1]
    if b.shape[0] != k or out.shape != (m, n) or min(m, n, k) == 0:
        return None
    if max(m, n, k) > _INT_MAX or np.may_share_memory(out, a) or np.may_share_memory(out, b):
        return None
    views = [_column_major(x) for x in (a, b, out)]
    if any(v is None for v in views) or any(v[1] > _INT_MAX for v in views):
        return None
    pointer = _gemm_pointer(dt)
    if pointer is None:
        return None
    return (*pointer, *views)


def accepts(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> bool:
    """Whether :func:`gemm` computes ``out = a @ b`` in place (else the caller falls back)."""
    return _plan(a, b, out) is not None


def gemm(
    a: np.ndarray, b: np.ndarray, out: np.ndarray, alpha: float = 1.0, beta: float = 0.0
) -> bool:
    """``out = alpha a @ b + beta out`` in place, for 2-D arrays of one float dtype with a unit
    stride along either axis (any leading dimension). Returns False, touching nothing, when
    BLAS cannot take these arrays directly."""
    plan = _plan(a, b, out)
    if plan is None:
        return False
    m, k = a.shape
    n = b.shape[1]
    function, real, (a_t, lda), (b_t, ldb), (c_t, ldc) = plan
    if c_t:
        # out is row-major: BLAS computes out^T (n x m) = b^T a^T. An operand stored row-major
        # is already its own transpose in column-major terms ('N'); a column-major one needs 'T'.
        first, ld1, trans1 = b, ldb, b"N" if b_t else b"T"
        second, ld2, trans2 = a, lda, b"N" if a_t else b"T"
        rows, cols = n, m
    else:
        first, ld1, trans1 = a, lda, b"T" if a_t else b"N"
        second, ld2, trans2 = b, ldb, b"T" if b_t else b"N"
        rows, cols = m, n

    def ref(value: int) -> Any:
        return ctypes.byref(ctypes.c_int(value))

    function(
        trans1, trans2, ref(rows), ref(cols), ref(k), ctypes.byref(real(alpha)),
        first.ctypes.data, ref(ld1), second.ctypes.data, ref(ld2),
        ctypes.byref(real(beta)), out.ctypes.data, ref(ldc),
    )  # fmt: skip
    return True
