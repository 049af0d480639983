"""Conjugate gradient: against SciPy's cg and dense solves, blocks, preconditioning, breakdown,
operators, bad input; the GPU path against the CPU path."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

import curvkit
from curvkit.benchmarks.problems import (
    graph_laplacian,
    poisson2d,
    scaled_poisson2d,
    sinkhorn_block,
)
from curvkit.linalg import cg, cg_solve
from conftest import to_device, to_host


def scipy_iterations(A, b, **kw):
    count = [0]

    def cb(_):
        count[0] += 1

    x, info = spla.cg(A, b, callback=cb, **kw)
    return x, info, count[0]


def rhs(n, k=None, seed=0, xp=np, dtype=np.float64):
    shape = (n,) if k is None else (n, k)
    return xp.asarray(np.random.default_rng(seed).standard_normal(shape).astype(dtype))


@pytest.mark.parametrize("make", [lambda: poisson2d(40), lambda: graph_laplacian(3000, 4, seed=1)])
@pytest.mark.parametrize("rtol", [1e-5, 1e-10])
def test_matches_scipy_iteration_for_iteration(xp, make, rtol):
    A = make()
    b = rhs(A.shape[0], seed=2)
    x_ref, info_ref, its_ref = scipy_iterations(A, b, rtol=rtol)
    res = cg_solve(to_device(xp, A), xp.asarray(b), rtol=rtol)
    assert info_ref == 0 and res.converged and res.reason == "converged"
    assert abs(res.iterations - its_ref) <= 1
    np.testing.assert_allclose(to_host(res.x), x_ref, rtol=0, atol=10 * rtol * np.abs(x_ref).max())
    # The reported residuals are honest: recursive and true residual both meet the tolerance.
    true = np.linalg.norm(b - A @ to_host(res.x))
    assert res.true_residual_norm == pytest.approx(true, rel=1e-6, abs=1e-300)
    assert true <= 1.01 * rtol * np.linalg.norm(b)
    assert res.residual_norm < res.tolerance == pytest.approx(rtol * np.linalg.norm(b))


def test_against_dense_solve():
    rng = np.random.default_rng(3)
    Q, _ = np.linalg.qr(rng.standard_normal((200, 200)))
    A = Q @ np.diag(np.linspace(1, 50, 200)) @ Q.T
    A = (A + A.T) / 2
    b = rng.standard_normal(200)
    want = np.linalg.solve(A, b)
    for op in (A, sp.csr_matrix(A), curvkit.CSRMatrix.from_sparse(sp.csr_matrix(np.triu(A)),
                                                                   symmetric="upper")):
        res = cg_solve(op, b, rtol=1e-12)
        assert res.converged
        np.testing.assert_allclose(res.x, want, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_dtypes(xp, dtype, index_dtype):
    A = poisson2d(24).astype(dtype)
    A.indices = A.indices.astype(index_dtype)
    A.indptr = A.indptr.astype(index_dtype)
    b = rhs(A.shape[0], seed=4, dtype=dtype)
    res = cg_solve(to_device(xp, A), xp.asarray(b), rtol=1e-4)
    assert res.x.dtype == dtype and res.converged
    assert np.linalg.norm(b - A @ to_host(res.x)) <= 2e-4 * np.linalg.norm(b)


def test_block_columns_solve_independently(xp):
    A = graph_laplacian(2000, 3, seed=5)
    B = rhs(2000, 5, seed=6)
    B[:, 3] *= 1e-3  # columns converge at different iterations
    res = cg_solve(to_device(xp, A), xp.asarray(B), rtol=1e-8)
    assert res.x.shape == B.shape and res.converged.all()
    for j in range(5):
        one = cg_solve(A, np.ascontiguousarray(B[:, j]), rtol=1e-8)
        assert res.iterations[j] == one.iterations
        np.testing.assert_allclose(to_host(res.x)[:, j], one.x, rtol=1e-10, atol=1e-12)
        assert res.history.shape == (res.iterations.max() + 1, 5)
        assert res.history[one.iterations, j] == pytest.approx(one.residual_norm)
        assert np.isnan(res.history[one.iterations + 1:, j]).all()


def test_jacobi_converges_where_plain_cg_stalls(xp):
    A = scaled_poisson2d(40, spread=4.0, seed=7)
    b = rhs(A.shape[0], seed=8)
    Ad, bd = to_device(xp, A), xp.asarray(b)
    plain = cg_solve(Ad, bd, rtol=1e-8, maxiter=1000)
    jac = cg_solve(Ad, bd, rtol=1e-8, maxiter=1000, M="jacobi")
    assert plain.reason == "maxiter" and plain.iterations == 1000
    assert jac.converged and jac.iterations < 400
    # The inverse diagonal as an array and as an operator: the same iteration.
    inv = 1 / A.diagonal()
    arr = cg_solve(Ad, bd, rtol=1e-8, M=xp.asarray(inv))
    op = cg_solve(Ad, bd, rtol=1e-8, M=lambda r: xp.asarray(inv) * r)
    assert arr.iterations == jac.iterations
    assert abs(op.iterations - jac.iterations) <= 1
    np.testing.assert_allclose(to_host(op.x), to_host(jac.x), rtol=1e-7, atol=1e-9)
    # As a sparse or dense matrix: applied to the residual, same iteration.
    for m in (sp.diags(inv).tocsr(), np.diag(inv)):
        other = cg_solve(Ad, bd, rtol=1e-8, M=to_device(xp, m) if sp.issparse(m) else xp.asarray(m))
        assert abs(other.iterations - jac.iterations) <= 1
    # SciPy with the same preconditioner takes the same number of iterations.
    _, _, its = scipy_iterations(A, b, rtol=1e-8, M=sp.diags(inv))
    assert abs(jac.iterations - its) <= 1


def test_sinkhorn_shaped_block_matrix():
    A = sinkhorn_block(300, 200, 8, seed=9)
    b = rhs(500, seed=10)
    res = cg_solve(A, b, rtol=1e-8, M="jacobi", maxiter=5000)
    assert res.converged
    assert np.linalg.norm(A @ res.x - b) <= 1.01e-8 * np.linalg.norm(b)


def test_breakdown_on_indefinite_matrix(xp):
    A = (poisson2d(20) - 2.0 * sp.identity(400)).tocsr()
    b = rhs(400, seed=11)
    res = cg_solve(to_device(xp, A), xp.asarray(b))
    assert res.reason == "breakdown" and not res.converged and res.info < 0
    assert np.isfinite(to_host(res.x)).all()
    x, info = cg(to_device(xp, A), xp.asarray(b))
    assert info < 0
    # A preconditioner that is not positive definite is caught the same way.
    bad_m = cg_solve(to_device(xp, poisson2d(20)), xp.asarray(b), M=-xp.ones(400))
    assert bad_m.reason == "breakdown"


def test_maxiter_reports_progress(xp):
    A = poisson2d(30)
    b = rhs(900, seed=12)
    res = cg_solve(to_device(xp, A), xp.asarray(b), rtol=1e-12, maxiter=7)
    assert res.reason == "maxiter" and res.iterations == 7 and res.info == 7
    assert res.history.shape == (8,)
    assert res.history[0] == pytest.approx(np.linalg.norm(b))
    assert res.history[-1] == pytest.approx(res.residual_norm)
    _, info = cg(to_device(xp, A), xp.asarray(b), rtol=1e-12, maxiter=7)
    assert info == 7


def test_zero_rhs_and_converged_start(xp):
    A = to_device(xp, poisson2d(10))
    x, info = cg(A, xp.zeros(100))
    assert info == 0 and not to_host(x).any()
    b = rhs(100, seed=13)
    exact = np.linalg.solve(poisson2d(10).toarray(), b)
    res = cg_solve(A, xp.asarray(b), x0=xp.asarray(exact))
    assert res.converged and res.iterations == 0
    x0 = xp.asarray(exact.copy())
    cg_solve(A, xp.asarray(b), x0=x0, rtol=1e-14)
    np.testing.assert_array_equal(to_host(x0), exact)  # x0 is not modified


def test_warm_start_saves_iterations():
    A = poisson2d(30)
    b = rhs(900, seed=14)
    cold = cg_solve(A, b, rtol=1e-10)
    warm = cg_solve(A, b, x0=cg_solve(A, b, rtol=1e-4).x, rtol=1e-10)
    assert warm.converged and warm.iterations < cold.iterations


def test_callables_and_operators():
    A = poisson2d(20)
    b = rhs(400, seed=15)
    B = rhs(400, 3, seed=16)
    base = cg_solve(A, b, rtol=1e-9)
    for op in (lambda v: A @ v, spla.aslinearoperator(A), A.toarray(), A.tocoo()):
        res = cg_solve(op, b, rtol=1e-9)
        assert abs(res.iterations - base.iterations) <= 1
        np.testing.assert_allclose(res.x, base.x, rtol=1e-8, atol=1e-10)
    res = cg_solve(spla.aslinearoperator(A), B, rtol=1e-9)  # matmat with blocks
    assert res.converged.all()


def test_callback_sees_each_iterate():
    A = poisson2d(16)
    b = rhs(256, seed=17)
    seen = []
    res = cg_solve(A, b, rtol=1e-8, callback=lambda xk: seen.append(np.linalg.norm(b - A @ xk)))
    assert len(seen) == res.iterations
    assert seen[-1] == pytest.approx(res.true_residual_norm, rel=1e-6)


def test_callback_exception_propagates():
    def boom(_):
        raise KeyError("stop here")

    with pytest.raises(KeyError, match="stop here"):
        cg_solve(poisson2d(8), np.ones(64), callback=boom)


def test_reproducible_bits():
    A = graph_laplacian(20000, 4, seed=18)
    b = rhs(20000, seed=19)
    one = cg_solve(A, b, rtol=1e-10)
    two = cg_solve(A, b, rtol=1e-10)
    assert one.iterations == two.iterations
    np.testing.assert_array_equal(one.x, two.x)


def test_bad_input(xp):
    A = to_device(xp, poisson2d(6))
    b = xp.ones(36)
    with pytest.raises(ValueError, match="square"):
        cg_solve(to_device(xp, sp.random(6, 5, density=0.5, format="csr")), xp.ones(6))
    with pytest.raises(ValueError, match="shape mismatch"):
        cg_solve(A, xp.ones(35))
    with pytest.raises(ValueError, match="b must be"):
        cg_solve(A, xp.ones((36, 2, 1)))
    bad = xp.ones(36)
    bad[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        cg_solve(A, bad)
    An = poisson2d(6)
    An.data[0] = np.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        cg_solve(to_device(xp, An), b)
    with pytest.raises(ValueError, match="x0"):
        cg_solve(A, b, x0=xp.ones(5))
    with pytest.raises(ValueError, match="jacobi"):
        cg_solve(to_device(xp, (poisson2d(6) - 5 * sp.identity(36)).tocsr()), b, M="jacobi")
    with pytest.raises(ValueError, match="M must be"):
        cg_solve(A, b, M="ilu")
    with pytest.raises(ValueError, match="inverse diagonal"):
        cg_solve(A, b, M=xp.ones(3))
    with pytest.raises(ValueError, match="maxiter"):
        cg_solve(A, b, maxiter=-1)
    with pytest.raises(ValueError, match="rtol"):
        cg_solve(A, b, rtol=-1.0)
    with pytest.raises(ValueError, match="returned shape"):
        cg_solve(lambda v: v[:-1], b)
    with pytest.raises(TypeError, match="must return an array"):
        cg_solve(lambda v: None, b)
    with pytest.raises(TypeError, match="LinearOperator"):
        cg_solve("not a matrix", b)


@pytest.mark.gpu
def test_gpu_matches_cpu_and_mixing_is_refused():
    import cupy as cp

    A = graph_laplacian(50000, 6, seed=20)
    b = rhs(50000, seed=21)
    cpu = cg_solve(A, b, rtol=1e-9, M="jacobi")
    for check_every in (1, 7, None):
        gpu = cg_solve(to_device(cp, A), cp.asarray(b), rtol=1e-9, M="jacobi",
                       check_every=check_every)
        # Sums are taken in another order than on the CPU: the same iteration up to rounding.
        assert abs(gpu.iterations - cpu.iterations) <= 1
        np.testing.assert_allclose(gpu.x.get(), cpu.x, rtol=1e-7, atol=1e-10)
        m = min(len(gpu.history), len(cpu.history))
        np.testing.assert_allclose(gpu.history[:m], cpu.history[:m], rtol=1e-5)
    with pytest.raises(TypeError, match="mix"):
        cg_solve(to_device(cp, A), b)
    with pytest.raises(TypeError, match="mix"):
        cg_solve(A, cp.asarray(b))


@pytest.mark.gpu
def test_gpu_reproducible_and_callbacks():
    import cupy as cp

    A = to_device(cp, graph_laplacian(30000, 4, seed=23))
    b = cp.asarray(rhs(30000, seed=24))
    one, two = cg_solve(A, b, rtol=1e-10), cg_solve(A, b, rtol=1e-10)
    assert one.iterations == two.iterations
    cp.testing.assert_array_equal(one.x, two.x)  # fixed-order reductions
    seen = []
    res = cg_solve(lambda v: A @ v, b, rtol=1e-8, M=lambda r: r / 9.0,
                   callback=lambda xk: seen.append(type(xk)))
    assert res.converged and len(seen) == res.iterations and seen[0] is cp.ndarray
    ref = cg_solve(A, b, rtol=1e-8, M=cp.full(30000, 1 / 9.0))
    assert abs(res.iterations - ref.iterations) <= 1


@pytest.mark.gpu
def test_gpu_block_and_stream():
    import cupy as cp

    A = poisson2d(64)
    B = rhs(4096, 300, seed=22)  # more columns than one block holds
    s = cp.cuda.Stream(non_blocking=True)
    res = cg_solve(to_device(cp, A), cp.asarray(B), rtol=1e-7, stream=s)
    cpu = cg_solve(A, B, rtol=1e-7)
    assert np.abs(res.iterations - cpu.iterations).max() <= 1
    np.testing.assert_allclose(res.x.get(), cpu.x, rtol=1e-6, atol=1e-9)
