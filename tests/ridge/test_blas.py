"""The strided BLAS products (nipype_brainrecon.ridge._blas) against numpy, on every layout."""

import itertools

import numpy as np
import pytest

from nipype_brainrecon.ridge import _blas


def _layouts(rows, cols, dtype, rng):
    """The same values as C-ordered, Fortran-ordered, strided C and strided Fortran arrays."""
    base = rng.standard_normal((rows + 3, cols + 5)).astype(dtype)
    values = base[:rows, :cols]
    yield np.ascontiguousarray(values)
    yield np.asfortranarray(values)
    yield base[1 : rows + 1, 2 : cols + 2]
    yield np.asfortranarray(base)[1 : rows + 1, 2 : cols + 2]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k,n", [(5, 7, 3), (1, 4, 6), (6, 4, 1), (1, 1, 1), (9, 8, 10)])
def test_gemm_matches_numpy_on_every_layout(dtype, m, k, n):
    rng = np.random.default_rng(0)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for a, b in itertools.product(_layouts(m, k, dtype, rng), _layouts(k, n, dtype, rng)):
        want_ab = a.astype(np.float64) @ b.astype(np.float64)
        for order in "CF":
            # The output is a window of a larger array: nothing outside it may change.
            frame = np.full((m + 4, n + 6), 7.0, dtype=dtype, order=order)
            out = frame[2 : m + 2, 3 : n + 3]
            start = rng.standard_normal((m, n)).astype(dtype)
            out[...] = start
            assert _blas.gemm(a, b, out, alpha=-0.5, beta=2.0)
            np.testing.assert_allclose(out, 2.0 * start - 0.5 * want_ab, rtol=tol, atol=tol)
            outside = np.ones(frame.shape, bool)
            outside[2 : m + 2, 3 : n + 3] = False
            assert np.all(frame[outside] == 7.0)


def test_gemm_declines_what_blas_cannot_take():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((4, 5)).astype(np.float32)
    b = rng.standard_normal((5, 3)).astype(np.float32)
    out = np.zeros((4, 3), np.float32)
    assert not _blas.gemm(a.astype(np.float64), b, out)  # mixed dtypes
    assert not _blas.gemm(a[:, ::2], b[::2], out)  # no unit stride
    assert not _blas.gemm(a, b, np.zeros((4, 3), np.int32))
    assert not _blas.gemm(a, b[:4], out)  # shapes disagree
    overlap = np.zeros((4, 8), np.float32)
    assert not _blas.gemm(overlap[:, :5], b, overlap[:, 5:])  # out overlaps an operand
    assert np.all(out == 0)
    # accepts() answers the same without computing anything.
    assert not _blas.accepts(a[:, ::2], b[::2], out)
    assert not _blas.accepts(a.astype(np.float64), b, out)
    assert _blas.accepts(a, b, out) and _blas.accepts(a.T.copy().T, b[:, :2], out[:, 1:])
    assert np.all(out == 0)
