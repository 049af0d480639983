"""Sparse Hessian-vector products: curvkit against SciPy (CPU) and CuPy/cuSPARSE (GPU)."""

from __future__ import annotations

from typing import List

import numpy as np

from .. import CSRMatrix
from ._harness import Row, benchmark, device_copy_gbps, rel_diff, time_cpu_pair, time_gpu
from .problems import poisson2d, random_csr, spmv_floor_bytes


def _cpu_problems(quick: bool):
    small = [("poisson2d 64^2 (call cost)", poisson2d(64))]
    if quick:
        return small + [("poisson2d 256^2", poisson2d(256)),
                        ("random n=1e5 16/row", random_csr(10**5, 16))]
    return small + [("poisson2d 1024^2", poisson2d(1024)),
                    ("random n=1e6 16/row", random_csr(10**6, 16))]


def _cpu_row(name: str, problem: str, A, ours_op: CSRMatrix, X, floor_bytes: float) -> Row:
    # Both allocate their result, as users call them.
    ours, peer = time_cpu_pair(lambda: ours_op @ X, lambda: A @ X)
    diff = rel_diff(ours_op.matmat(X), A @ X)
    return Row(name, problem, ours, peer, "scipy A @ x", floor_bytes, diff, 1e-12)


@benchmark("hvp_cpu", "cpu", "CSR SpMV y = H v, CPU threads vs scipy.sparse (single-threaded)")
def hvp_cpu(quick: bool) -> List[Row]:
    rows = []
    rng = np.random.default_rng(1)
    for problem, A in _cpu_problems(quick):
        x = rng.standard_normal(A.shape[1])
        rows.append(_cpu_row("hvp_cpu", problem, A, CSRMatrix.from_sparse(A), x,
                             spmv_floor_bytes(A)))
    return rows


@benchmark("hvp_block16_cpu", "cpu", "CSR SpMM with a block of 16 vectors vs scipy A @ X")
def hvp_block16_cpu(quick: bool) -> List[Row]:
    rng = np.random.default_rng(2)
    rows = []
    for problem, A in _cpu_problems(quick):
        X = rng.standard_normal((A.shape[1], 16))
        rows.append(_cpu_row("hvp_block16_cpu", problem + " k=16", A, CSRMatrix.from_sparse(A), X,
                             spmv_floor_bytes(A, 16)))
    return rows


@benchmark("hvp_symmetric_cpu", "cpu", "upper-triangle storage (half the matrix) vs scipy full A @ x")
def hvp_symmetric_cpu(quick: bool) -> List[Row]:
    import scipy.sparse as sp

    A = poisson2d(256 if quick else 1024)
    U = sp.triu(A, format="csr")
    x = np.random.default_rng(3).standard_normal(A.shape[1])
    op = CSRMatrix.from_sparse(U, symmetric="upper")
    problem = f"poisson2d {'256' if quick else '1024'}^2 upper"
    return [_cpu_row("hvp_symmetric_cpu", problem, A, op, x, spmv_floor_bytes(U))]


# ---- GPU ----------------------------------------------------------------------------------------


def _gpu_row(name: str, problem: str, A_host, X_host, symmetric=None, A_stored=None) -> Row:
    import cupy as cp
    import cupyx.scipy.sparse as cps

    A = cps.csr_matrix(A_host)
    stored = cps.csr_matrix(A_stored) if A_stored is not None else A
    X = cp.asarray(X_host)
    op = CSRMatrix.from_sparse(stored, symmetric=symmetric)
    ours_gpu, ours_call = time_gpu(lambda: op @ X)
    peer_gpu, peer_call = time_gpu(lambda: A @ X)
    diff = rel_diff(op.matmat(X), A @ X)
    floor = spmv_floor_bytes(A_stored if A_stored is not None else A_host, X.shape[1] if X.ndim == 2 else 1)
    return Row(name, problem, ours_gpu, peer_gpu, "cupyx A @ x", floor, diff, 1e-12,
               bandwidth_gbps=_copy_rate(), ours_call_s=ours_call, peer_call_s=peer_call)


_copy: List[float] = []


def _copy_rate() -> float:
    if not _copy:
        _copy.append(device_copy_gbps())
    return _copy[0]


@benchmark("hvp_gpu", "gpu", "CSR SpMV on the GPU vs cupyx (cuSPARSE): kernel and call time")
def hvp_gpu(quick: bool) -> List[Row]:
    rng = np.random.default_rng(4)
    problems = [("poisson2d 64^2 (call cost)", poisson2d(64)),
                ("poisson2d 1024^2", poisson2d(1024))]
    if not quick:
        problems += [("poisson2d 4096^2", poisson2d(4096)),
                     ("random n=1e6 16/row", random_csr(10**6, 16))]
    return [_gpu_row("hvp_gpu", p, A, rng.standard_normal(A.shape[1])) for p, A in problems]


@benchmark("hvp_block16_gpu", "gpu", "CSR SpMM, 16 vectors, GPU vs cupyx (cuSPARSE SpMM)")
def hvp_block16_gpu(quick: bool) -> List[Row]:
    rng = np.random.default_rng(5)
    m = 1024 if quick else 4096
    A = poisson2d(m)
    return [_gpu_row("hvp_block16_gpu", f"poisson2d {m}^2 k=16", A,
                     rng.standard_normal((A.shape[1], 16)))]


@benchmark("hvp_symmetric_gpu", "gpu", "upper-triangle storage on the GPU vs cupyx full A @ x")
def hvp_symmetric_gpu(quick: bool) -> List[Row]:
    import scipy.sparse as sp

    m = 1024 if quick else 4096
    A = poisson2d(m)
    x = np.random.default_rng(6).standard_normal(A.shape[1])
    return [_gpu_row("hvp_symmetric_gpu", f"poisson2d {m}^2 upper", A, x, symmetric="upper",
                     A_stored=sp.triu(A, format="csr"))]
