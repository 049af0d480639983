"""Conjugate gradient: time per iteration against scipy.sparse.linalg.cg (CPU) and
cupyx.scipy.sparse.linalg.cg (GPU), both running the same fixed number of iterations."""

from __future__ import annotations

import inspect
from typing import List

import numpy as np

from ..linalg import cg_solve
from ..sparse import CSRMatrix
from ._harness import Row, benchmark, device_copy_gbps, rel_diff, time_cpu_pair, time_gpu
from .problems import (
    cg_floor_bytes,
    graph_laplacian,
    poisson2d,
    poisson3d,
    scaled_poisson2d,
    sinkhorn_block,
)


def _ours(A, b, iterations: int, jacobi: bool):
    # rtol = atol = 0: the tolerance is never met, so every solve runs `iterations` steps.
    return cg_solve(A, b, rtol=0.0, atol=0.0, maxiter=iterations, M="jacobi" if jacobi else None,
                    history=False, check_finite=False).x


def _peer(cg, A, b, iterations: int, inv_diag):
    kw = {"maxiter": iterations, "atol": 0.0}
    kw["rtol" if "rtol" in inspect.signature(cg).parameters else "tol"] = 0.0
    if inv_diag is not None:
        kw["M"] = inv_diag
    return cg(A, b, **kw)[0]


def _cpu_problems(quick: bool):
    if quick:
        return [("poisson2d 256^2", poisson2d(256), False),
                ("poisson3d 32^3", poisson3d(32), False)]
    return [("poisson2d 256^2", poisson2d(256), False),
            ("poisson2d 1024^2", poisson2d(1024), False),
            ("poisson3d 64^3", poisson3d(64), False),
            ("graph laplacian n=1e5", graph_laplacian(10**5, 8, seed=1), False),
            ("scaled poisson2d 1024^2, jacobi", scaled_poisson2d(1024), True)]


@benchmark("cg_cpu", "cpu", "CG time per iteration vs scipy.sparse.linalg.cg")
def cg_cpu(quick: bool) -> List[Row]:
    import scipy.sparse as sp
    from scipy.sparse.linalg import cg as scipy_cg

    rows = []
    iterations = 20 if quick else 50
    for problem, A, jacobi in _cpu_problems(quick):
        b = np.random.default_rng(0).standard_normal(A.shape[0])
        H = CSRMatrix.from_sparse(A)
        M = sp.diags(1 / A.diagonal()).tocsr() if jacobi else None
        ours, peer = time_cpu_pair(lambda: _ours(H, b, iterations, jacobi),
                                   lambda: _peer(scipy_cg, A, b, iterations, M), repeat=5)
        diff = rel_diff(_ours(H, b, iterations, jacobi), _peer(scipy_cg, A, b, iterations, M))
        rows.append(Row("cg_cpu", f"{problem}, per iteration", ours / iterations,
                        peer / iterations, "scipy cg", cg_floor_bytes(A, jacobi), diff, 1e-6))
    return rows


def _gpu_problems(quick: bool):
    if quick:
        return [("poisson2d 256^2", lambda: poisson2d(256), False),
                ("poisson2d 1024^2", lambda: poisson2d(1024), False)]
    return [("poisson2d 256^2", lambda: poisson2d(256), False),
            ("poisson2d 1024^2", lambda: poisson2d(1024), False),
            ("poisson2d 2048^2", lambda: poisson2d(2048), False),
            ("poisson3d 128^3", lambda: poisson3d(128), False),
            ("graph laplacian n=1e6", lambda: graph_laplacian(10**6, 8, seed=1), False),
            ("sinkhorn block n=m=2e5", lambda: sinkhorn_block(200000, 200000, 16, seed=2), True),
            ("scaled poisson2d 2048^2, jacobi", lambda: scaled_poisson2d(2048), True)]


@benchmark("cg_gpu", "gpu", "CG time per iteration vs cupyx.scipy.sparse.linalg.cg")
def cg_gpu(quick: bool) -> List[Row]:
    import cupy as cp
    import cupyx.scipy.sparse as cps
    from cupyx.scipy.sparse.linalg import cg as cupy_cg

    rows = []
    iterations = 100
    bandwidth = device_copy_gbps()
    for problem, make, jacobi in _gpu_problems(quick):
        A_host = make()
        A = cps.csr_matrix(A_host)
        H = CSRMatrix.from_sparse(A)
        b = cp.asarray(np.random.default_rng(0).standard_normal(A.shape[0]))
        M = cps.diags(1 / A.diagonal()).tocsr() if jacobi else None
        ours, ours_call = time_gpu(lambda: _ours(H, b, iterations, jacobi), n_repeat=5)
        peer, peer_call = time_gpu(lambda: _peer(cupy_cg, A, b, iterations, M), n_repeat=3)
        diff = rel_diff(_ours(H, b, iterations, jacobi), _peer(cupy_cg, A, b, iterations, M))
        rows.append(Row("cg_gpu", f"{problem}, per iteration", ours / iterations,
                        peer / iterations, "cupyx cg", cg_floor_bytes(A_host, jacobi), diff, 1e-6,
                        bandwidth_gbps=bandwidth, ours_call_s=ours_call / iterations,
                        peer_call_s=peer_call / iterations))
    return rows
