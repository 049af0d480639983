"""Bad input gives a clear exception, never a crash or a wrong answer."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import curvkit
from conftest import to_device


def csr(xp, indptr, indices, data, shape, **kw):
    return curvkit.CSRMatrix(
        xp.asarray(np.array(indptr, dtype=np.int64)), xp.asarray(np.array(indices, dtype=np.int64)),
        xp.asarray(np.array(data, dtype=np.float64)), shape, **kw)


@pytest.mark.parametrize(
    "indptr,indices,match",
    [
        ([0, 2, 3], [0, 3, 1], "column index is out of range"),
        ([0, 2, 3], [0, -1, 1], "column index is out of range"),
        ([0, 2, 1, 3], [0, 1, 1], "non-decreasing"),
        ([1, 2, 3], [0, 1, 1], r"indptr\[0\]"),
        ([0, 1, 2], [0, 1, 1], "number of entries"),
    ],
)
def test_malformed_csr_is_rejected(xp, indptr, indices, match):
    rows = len(indptr) - 1
    with pytest.raises(ValueError, match=match):
        csr(xp, indptr, indices, np.ones(len(indices)), (rows, 3))


def test_malformed_scipy_matrix_in_hvp(xp):
    A = sp.csr_matrix(np.eye(3))
    A.indices[1] = 7  # corrupt after construction
    with pytest.raises(ValueError, match="out of range"):
        curvkit.hvp(to_device(xp, A), xp.ones(3))


def test_wrong_triangle(xp):
    with pytest.raises(ValueError, match="outside the stored triangle"):
        csr(xp, [0, 1, 2], [0, 0], [1.0, 2.0], (2, 2), symmetric="upper")
    with pytest.raises(ValueError, match="outside the stored triangle"):
        csr(xp, [0, 2, 3], [0, 1, 1], [1.0, 2.0, 3.0], (2, 2), symmetric="lower")
    # check=False trusts the caller (reads stay in bounds here; the answer is the caller's)
    csr(xp, [0, 1, 2], [0, 0], [1.0, 2.0], (2, 2), symmetric="upper", check=False)


def test_bad_construction_arguments(xp):
    with pytest.raises(ValueError, match="square"):
        csr(xp, [0, 0, 0], [], [], (2, 3), symmetric="upper")
    with pytest.raises(ValueError, match="symmetric must be"):
        csr(xp, [0, 0], [], [], (1, 1), symmetric="both")
    with pytest.raises(ValueError, match="rows \\+ 1"):
        csr(xp, [0, 0], [], [], (2, 2))
    with pytest.raises(ValueError, match="differ in length"):
        csr(xp, [0, 1], [0], [1.0, 2.0], (1, 1))
    with pytest.raises(TypeError, match="integer"):
        curvkit.CSRMatrix(xp.asarray([0.0, 1.0]), xp.asarray([0]), xp.asarray([1.0]), (1, 1))
    with pytest.raises(ValueError, match="shape"):
        csr(xp, [0, 0], [], [], (1,))
    with pytest.raises(TypeError, match="unsupported dtype"):
        curvkit.CSRMatrix(xp.asarray([0, 1]), xp.asarray([0]), xp.asarray([1 + 2j]), (1, 1))


def test_not_a_csr_matrix():
    with pytest.raises(TypeError, match="tocsr"):
        curvkit.hvp(sp.coo_matrix(np.eye(3)), np.ones(3))
    with pytest.raises(TypeError, match="CSR"):
        curvkit.hvp(np.eye(3), np.ones(3))


def test_bad_vectors_and_out(xp):
    H = curvkit.CSRMatrix.from_sparse(to_device(xp, sp.csr_matrix(np.arange(12.0).reshape(3, 4))))
    with pytest.raises(ValueError, match="shape mismatch"):
        H @ xp.ones(3)
    with pytest.raises(ValueError, match="vector"):
        H @ xp.ones((4, 2, 2))
    with pytest.raises(ValueError, match="vector"):
        H @ xp.asarray(1.0)
    with pytest.raises(TypeError, match="unsupported dtype"):
        H @ xp.ones(4, dtype=np.complex128)
    v = xp.ones(4)
    with pytest.raises(ValueError, match="out has shape"):
        H.matmat(v, xp.empty(4))
    with pytest.raises(TypeError, match="out has dtype"):
        H.matmat(v, xp.empty(3, dtype=np.float32))
    with pytest.raises(ValueError, match="contiguous"):
        H.matmat(xp.ones((4, 3)), xp.empty((3, 6))[:, ::2])
    with pytest.raises(TypeError, match="out must be"):
        H.matmat(v, [0.0, 0.0, 0.0])


def test_out_overlapping_input_is_rejected(xp):
    H = curvkit.CSRMatrix.from_sparse(to_device(xp, sp.csr_matrix(np.ones((4, 4)))))
    v = xp.ones(4)
    with pytest.raises(ValueError, match="overlap"):
        H.matmat(v, v)
    buf = xp.ones(8)
    with pytest.raises(ValueError, match="overlap"):
        H.matmat(buf[:4], buf[2:6])  # partly shared memory
    H.matmat(buf[:4], buf[4:])  # adjacent but disjoint is fine


def test_read_only_out():
    H = curvkit.CSRMatrix.from_sparse(sp.csr_matrix(np.eye(2)))
    out = np.empty(2)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        H.matmat(np.ones(2), out)


@pytest.mark.gpu
def test_mixing_host_and_device_is_a_type_error():
    import cupy as cp

    A = sp.csr_matrix(np.eye(3))
    with pytest.raises(TypeError, match="mix"):
        curvkit.hvp(A, cp.ones(3))
    with pytest.raises(TypeError, match="mix"):
        curvkit.hvp(to_device(cp, A), np.ones(3))
    with pytest.raises(TypeError):
        curvkit.hvp(to_device(cp, A), cp.ones(3), out=np.empty(3))
    with pytest.raises(TypeError, match="mix"):
        curvkit.CSRMatrix(np.array([0, 1]), cp.asarray([0]), cp.asarray([1.0]), (1, 1))


def test_gpu_array_without_cupy_is_a_clear_type_error():
    try:
        import cupy  # noqa: F401

        pytest.skip("CuPy is importable here")
    except ImportError:
        pass

    class FakeDeviceArray:  # any object exposing CUDA memory routes to CuPy
        __cuda_array_interface__ = {"shape": (1,), "typestr": "<f8", "data": (0, False),
                                    "version": 3}

    with pytest.raises(TypeError, match="GPU arrays need CuPy"):
        curvkit.hvp(sp.csr_matrix(np.eye(1)), FakeDeviceArray())


@settings(max_examples=150, deadline=None)
@given(
    rows=st.integers(0, 6),
    cols=st.integers(0, 6),
    indptr=st.lists(st.integers(-3, 12), min_size=1, max_size=8),
    indices=st.lists(st.integers(-3, 8), max_size=12),
    triangle=st.sampled_from([None, "upper", "lower"]),
    index_dtype=st.sampled_from([np.int32, np.int64]),
)
def test_fuzzed_csr_arrays_raise_or_are_right(rows, cols, indptr, indices, triangle, index_dtype):
    """Arbitrary index arrays: a clear ValueError, or the product a dense reference gives."""
    if rows % 2:  # half the examples get an indptr of the right length, reaching the checks
        rows = len(indptr) - 1
    if triangle is not None:
        cols = rows
    indptr = np.array(indptr, dtype=index_dtype)
    indices = np.array(indices, dtype=index_dtype)
    data = np.arange(1.0, len(indices) + 1.0)
    try:
        H = curvkit.CSRMatrix(indptr, indices, data, (rows, cols), symmetric=triangle)
    except ValueError:
        return
    dense = np.zeros((rows, cols))
    for i in range(rows):
        for p in range(indptr[i], indptr[i + 1]):
            dense[i, indices[p]] += data[p]
    if triangle is not None:
        dense = dense + dense.T - np.diag(np.diag(dense))
    v = np.linspace(-1.0, 2.0, cols)
    np.testing.assert_allclose(H @ v, dense @ v, rtol=1e-13, atol=1e-13)


def test_out_overlapping_the_matrix_is_rejected():
    H = curvkit.CSRMatrix.from_sparse(sp.csr_matrix(np.eye(4)))
    with pytest.raises(ValueError, match="overlap the matrix"):
        H.matmat(np.ones(4), H.data)


def test_unaligned_arrays_are_rejected():
    raw = np.zeros(8 * 5 + 1, dtype=np.uint8)
    v = np.frombuffer(raw.data, dtype=np.float64, count=4, offset=1)
    H = curvkit.CSRMatrix.from_sparse(sp.csr_matrix(np.eye(4)))
    with pytest.raises(ValueError, match="aligned"):
        H @ v


def test_non_integral_shape_is_rejected():
    with pytest.raises(ValueError, match="pair of integers"):
        curvkit.CSRMatrix(np.array([0, 0, 0]), np.array([], dtype=np.int64), np.array([]),
                          (2, 2.5))
