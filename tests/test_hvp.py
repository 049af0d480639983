"""Sparse Hessian-vector products against scipy.sparse (float64 references), host and device."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from hypothesis import given, settings
from hypothesis import strategies as st

import curvkit
from curvkit.benchmarks.problems import poisson2d, random_csr
from conftest import to_device, to_host


def random_matrix(m, n, density, seed, dtype=np.float64, index_dtype=np.int32):
    rng = np.random.default_rng(seed)
    dense = np.where(rng.random((m, n)) < density, rng.standard_normal((m, n)), 0.0)
    A = sp.csr_matrix(dense).astype(dtype)
    A.indices = A.indices.astype(index_dtype)
    A.indptr = A.indptr.astype(index_dtype)
    return A


def reference(A, V):
    """The product in float64 on the host."""
    return np.asarray(A.astype(np.float64) @ to_host(V).astype(np.float64))


def assert_close(got, want, dtype):
    tol = 1e-12 if np.dtype(dtype) == np.float64 else 2e-5
    got = to_host(got)
    scale = max(np.abs(want).max(initial=0.0), 1.0)
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("k", [None, 1, 3, 16, 17, 64, 65])
def test_matches_scipy(xp, dtype, index_dtype, k):
    A = random_matrix(300, 200, 0.05, seed=k or 0, dtype=dtype, index_dtype=index_dtype)
    rng = np.random.default_rng(1)
    V = rng.standard_normal((200,) if k is None else (200, k)).astype(dtype)
    got = curvkit.hvp(to_device(xp, A), xp.asarray(V))
    assert isinstance(got, xp.ndarray)
    assert got.dtype == dtype and got.shape == ((300,) if k is None else (300, k))
    assert_close(got, reference(A, V), dtype)


@pytest.mark.parametrize("k", [None, 8])
def test_large_uses_threads_and_matches(xp, k):
    # Big enough for the parallel path on the host (work above the threading threshold).
    A = random_csr(40_000, 12, seed=3)
    V = np.random.default_rng(2).standard_normal((40_000,) if k is None else (40_000, k))
    assert_close(curvkit.hvp(to_device(xp, A), xp.asarray(V)), reference(A, V), np.float64)


@pytest.mark.parametrize("triangle", ["upper", "lower"])
@pytest.mark.parametrize("k", [None, 5, 33])
@pytest.mark.parametrize("n,per_row", [(50, 4), (30_000, 10)])
def test_symmetric_triangle_storage(xp, triangle, k, n, per_row):
    B = random_csr(n, per_row, seed=n + per_row)
    S = (B + B.T).tocsr()
    S.setdiag(np.arange(1, n + 1, dtype=np.float64))
    T = (sp.triu if triangle == "upper" else sp.tril)(S, format="csr")
    V = np.random.default_rng(4).standard_normal((n,) if k is None else (n, k))
    H = curvkit.CSRMatrix.from_sparse(to_device(xp, T), symmetric=triangle)
    assert_close(H @ xp.asarray(V), reference(S, V), np.float64)
    assert_close(H.rmatvec(xp.asarray(V)), reference(S, V), np.float64)


def test_symmetric_banded_spans_threads():
    # A banded matrix whose transpose contributions cross the row ranges of the threads.
    S = poisson2d(200)
    V = np.random.default_rng(5).standard_normal((S.shape[0], 3))
    for tri, f in (("upper", sp.triu), ("lower", sp.tril)):
        got = curvkit.hvp(f(S, format="csr"), V, symmetric=tri)
        assert_close(got, reference(S, V), np.float64)


def test_edge_shapes(xp):
    cases = [
        sp.csr_matrix((1, 1)),                                   # n = 1, nnz = 0
        sp.csr_matrix(np.array([[2.5]])),                        # n = 1
        sp.csr_matrix((0, 4)),                                   # no rows
        sp.csr_matrix((4, 0)),                                   # no columns
        sp.csr_matrix((7, 5)),                                   # all rows empty
        sp.csr_matrix(np.diag([0.0, 1, 0, 2, 0, 0, 3])[:, :5]),  # some empty rows
    ]
    for A in cases:
        for shape in [(A.shape[1],), (A.shape[1], 4), (A.shape[1], 0)]:
            V = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
            got = curvkit.hvp(to_device(xp, A), xp.asarray(V))
            assert got.shape == (A.shape[0],) + shape[1:]
            assert_close(got, reference(A, V), np.float64)


def test_unsorted_and_duplicate_indices(xp):
    indptr = np.array([0, 3, 3, 6], dtype=np.int64)
    indices = np.array([2, 0, 2, 1, 0, 1], dtype=np.int64)  # unsorted, with repeats
    data = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    dense = np.zeros((3, 3))
    np.add.at(dense, (np.repeat([0, 1, 2], np.diff(indptr)), indices), data)
    H = curvkit.CSRMatrix(xp.asarray(indptr), xp.asarray(indices), xp.asarray(data), (3, 3))
    v = np.array([1.0, -2.0, 0.5])
    assert_close(H @ xp.asarray(v), dense @ v, np.float64)


def test_strided_and_fortran_inputs(xp):
    A = random_matrix(120, 90, 0.1, seed=7)
    rng = np.random.default_rng(8)
    W = xp.asarray(rng.standard_normal((180, 10)))
    H = curvkit.CSRMatrix.from_sparse(to_device(xp, A))
    for V in (W[::2, 3], W[::2, ::3], xp.asfortranarray(W[:90]), W[::-2]):
        assert_close(H @ V, reference(A, V), np.float64)


def test_out_is_written_in_place(xp):
    A = random_matrix(60, 40, 0.2, seed=9)
    H = curvkit.CSRMatrix.from_sparse(to_device(xp, A))
    V = xp.asarray(np.random.default_rng(10).standard_normal((40, 6)))
    for out in (xp.full((60, 6), np.nan), xp.asfortranarray(xp.full((60, 6), np.nan))):
        got = curvkit.hvp(H, V, out=out)
        assert got is out
        assert_close(out, reference(A, V), np.float64)
    out1 = xp.full(60, np.nan)
    assert H.matmat(V[:, 0], out1) is out1
    assert_close(out1, reference(A, V[:, 0]), np.float64)


def test_dtype_promotion(xp):
    A32 = random_matrix(50, 50, 0.1, seed=11, dtype=np.float32)
    H = curvkit.CSRMatrix.from_sparse(to_device(xp, A32))
    v64 = np.random.default_rng(12).standard_normal(50)
    got = H @ xp.asarray(v64)
    assert got.dtype == np.float64  # the wider type wins, as in SciPy
    assert_close(got, reference(A32, v64), np.float64)
    got = H @ xp.arange(50)  # integers compute in float64
    assert got.dtype == np.float64
    got = H @ xp.asarray(v64.astype(np.float32))
    assert got.dtype == np.float32


def test_linear_operator_protocol():
    A = poisson2d(24)
    H = curvkit.CSRMatrix.from_sparse(sp.triu(A, format="csr"), symmetric="upper")
    assert H.shape == A.shape and H.dtype == np.float64
    op = spla.aslinearoperator(H)
    b = np.random.default_rng(13).standard_normal(A.shape[0])
    np.testing.assert_allclose(op.matvec(b), A @ b, rtol=1e-13)
    np.testing.assert_allclose(op.matmat(np.c_[b, 2 * b]), A @ np.c_[b, 2 * b], rtol=1e-13)
    x, info = spla.cg(H, b, rtol=1e-10, maxiter=2000)
    assert info == 0
    np.testing.assert_allclose(A @ x, b, atol=1e-8 * np.linalg.norm(b))


@pytest.mark.gpu
def test_cupyx_linear_operator_protocol():
    import cupy as cp
    import cupyx.scipy.sparse.linalg as cpla

    A = poisson2d(24)
    H = curvkit.CSRMatrix.from_sparse(to_device(cp, A))
    b = cp.asarray(np.random.default_rng(14).standard_normal(A.shape[0]))
    x, info = cpla.cg(cpla.aslinearoperator(H), b, maxiter=2000)  # default tolerance 1e-5
    assert info == 0
    np.testing.assert_allclose(A @ x.get(), b.get(), atol=1e-4 * float(cp.linalg.norm(b)))


def test_general_storage_has_no_transpose():
    H = curvkit.CSRMatrix.from_sparse(random_matrix(5, 4, 0.5, seed=1))
    with pytest.raises(NotImplementedError, match="symmetric"):
        H.rmatvec(np.ones(5))


def test_gil_is_released_during_the_kernel():
    A = random_csr(300_000, 16, seed=23)
    H = curvkit.CSRMatrix.from_sparse(A)
    V = np.random.default_rng(24).standard_normal((300_000, 8))
    H @ V  # warm up
    span = []

    def work():
        t0 = time.perf_counter()
        H @ V
        span.extend([t0, time.perf_counter()])

    ticks = []
    worker = threading.Thread(target=work)
    worker.start()
    while worker.is_alive():
        ticks.append(time.perf_counter())
    worker.join()
    t0, t1 = span
    middle = [t for t in ticks if t0 + 0.25 * (t1 - t0) < t < t1 - 0.25 * (t1 - t0)]
    # Held GIL: this thread could not run at all while the kernel ran.
    assert len(middle) > 100, (len(middle), t1 - t0)


def test_concurrent_calls_from_threads():
    # Many Python threads may multiply at once, sharing one matrix.
    A = random_csr(20_000, 8, seed=15)
    H = curvkit.CSRMatrix.from_sparse(A)
    V = [np.random.default_rng(s).standard_normal(20_000) for s in range(6)]
    results = [None] * len(V)

    def work(i):
        for _ in range(5):
            results[i] = H @ V[i]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(V))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for v, r in zip(V, results):
        assert_close(r, reference(A, v), np.float64)


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(0, 40),
    n=st.integers(0, 40),
    density=st.floats(0, 1),
    k=st.one_of(st.none(), st.integers(0, 20)),
    seed=st.integers(0, 2**16),
    triangle=st.sampled_from([None, "upper", "lower"]),
)
def test_property_random_shapes(m, n, density, k, seed, triangle):
    if triangle is not None:
        n = m
    A = random_matrix(m, n, density, seed=seed)
    full = A
    if triangle is not None:
        full = (A + A.T).tocsr()
        A = (sp.triu if triangle == "upper" else sp.tril)(full, format="csr")
    V = np.random.default_rng(seed).standard_normal((n,) if k is None else (n, k))
    got = curvkit.hvp(A, V, symmetric=triangle)
    assert_close(got, reference(full, V), np.float64)


@pytest.mark.gpu
def test_explicit_stream():
    import cupy as cp

    A = random_csr(5000, 9, seed=16)
    H = curvkit.CSRMatrix.from_sparse(to_device(cp, A))
    v32 = np.random.default_rng(17).standard_normal(5000).astype(np.float32)
    v32_gpu = cp.asarray(v32)
    cp.cuda.Device().synchronize()  # inputs are ready before the streams under test start
    for as_argument in (lambda s: s, lambda s: s.ptr):  # a CuPy stream or a raw cudaStream_t
        s = cp.cuda.Stream(non_blocking=True)
        # float32 input: its conversion to float64 must be ordered on the same stream.
        out = curvkit.hvp(H, v32_gpu, stream=as_argument(s))
        s.synchronize()
        assert_close(out, reference(A, v32.astype(np.float64)), np.float64)
    v64_gpu = cp.asarray(v32.astype(np.float64))
    cp.cuda.Device().synchronize()
    with cp.cuda.Stream(non_blocking=True) as current:  # default: CuPy's current stream
        out = H @ v64_gpu
        current.synchronize()
    assert_close(out, reference(A, v32.astype(np.float64)), np.float64)
    H.check(stream=cp.cuda.Stream(non_blocking=True))


@pytest.mark.gpu
def test_dlpack_and_cuda_array_interface_inputs():
    import cupy as cp

    A = random_matrix(40, 30, 0.2, seed=18)
    H = curvkit.CSRMatrix.from_sparse(to_device(cp, A))
    v = cp.asarray(np.random.default_rng(19).standard_normal(30))

    class CAIOnly:  # a foreign GPU array exposing only __cuda_array_interface__
        def __init__(self, a):
            self.__cuda_array_interface__ = a.__cuda_array_interface__
            self._keep = a

    class DLPackOnly:  # a foreign GPU array exposing only the DLPack protocol
        def __init__(self, a):
            self._a = a

        def __dlpack__(self, **kwargs):
            return self._a.__dlpack__(**kwargs)

        def __dlpack_device__(self):
            return self._a.__dlpack_device__()

    for foreign in (CAIOnly(v), DLPackOnly(v)):
        got = curvkit.hvp(H, foreign)
        assert isinstance(got, cp.ndarray)
        assert_close(got, reference(A, v), np.float64)


def test_stream_is_ignored_on_host():
    A = random_matrix(10, 10, 0.3, seed=20)
    v = np.ones(10)
    assert_close(curvkit.hvp(A, v, stream=None), reference(A, v), np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_diagonal_matches_scipy(xp, dtype, index_dtype):
    for shape in [(50, 50), (30, 70), (70, 30), (1, 1), (0, 4)]:
        A = random_matrix(*shape, 0.3, seed=sum(shape), dtype=dtype, index_dtype=index_dtype)
        H = curvkit.CSRMatrix.from_sparse(to_device(xp, A))
        d = H.diagonal()
        assert d.dtype == dtype and d.shape == (min(shape),)
        np.testing.assert_array_equal(to_host(d), A.diagonal())
    big = random_csr(60_000, 6, seed=25)  # threaded path
    big.setdiag(np.arange(60_000.0))
    np.testing.assert_array_equal(to_host(curvkit.CSRMatrix.from_sparse(to_device(xp, big)).diagonal()),
                                  big.diagonal())


def test_diagonal_sums_repeats_and_reads_triangles(xp):
    indptr = np.array([0, 3, 4, 6])
    indices = np.array([0, 0, 2, 1, 2, 2])  # (0, 0) and (2, 2) stored twice
    data = np.array([1.0, 2.0, 5.0, 3.0, 4.0, 0.5])
    H = curvkit.CSRMatrix(xp.asarray(indptr), xp.asarray(indices), xp.asarray(data), (3, 3),
                          symmetric="upper")
    np.testing.assert_array_equal(to_host(H.diagonal()), [3.0, 3.0, 4.5])
    out = xp.full(3, np.nan)
    assert H.diagonal(out) is out
    np.testing.assert_array_equal(to_host(out), [3.0, 3.0, 4.5])
    with pytest.raises(ValueError, match="out has shape"):
        H.diagonal(xp.empty(4))
    with pytest.raises(TypeError, match="out has dtype"):
        H.diagonal(xp.empty(3, dtype=np.float32))
    with pytest.raises(ValueError, match="overlap the matrix"):
        H.diagonal(H.data[:3])
