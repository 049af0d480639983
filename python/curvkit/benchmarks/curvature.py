"""Hutchinson diagonal estimation: curvkit against the NumPy/SciPy (CPU) and CuPy (GPU) loop
users write today (random signs, a sparse product per block, mean of z * Hz)."""

from __future__ import annotations

from typing import Any, List, Tuple

import numpy as np

from ..curvature import diag_estimate
from ..sparse import CSRMatrix
from ._harness import Row, benchmark, rel_diff, time_cpu_pair, time_gpu
from .problems import PowerLawOperator, poisson2d, random_csr, spmv_floor_bytes


def _peer_hutchinson(xp, A, num_matvecs: int, block: int, rng):
    n = A.shape[0]
    acc = xp.zeros(n)
    for _ in range(num_matvecs // block):
        Z = xp.where(rng.random((n, block)) < 0.5, -1.0, 1.0)
        acc += (Z * (A @ Z)).sum(axis=1)
    return acc / num_matvecs


def _floor(A, num_matvecs: int, block: int) -> float:
    # Per block: one SpMM (matrix once, Z read, HZ written), then Z and HZ read once more.
    n = A.shape[0]
    return num_matvecs / block * (spmv_floor_bytes(A, block) + 2 * 8 * n * block)


def _hutchinson_problems(quick: bool, m: int):
    n = 10**5 if quick else 10**6
    return [(f"poisson2d {m}^2, 64 probes", poisson2d(m)),
            (f"random n={n:.0e} 16/row, 64 probes", random_csr(n, 16, seed=4))]


@benchmark("diag_hutchinson_cpu", "cpu", "Hutchinson diag(H), 64 probes in blocks of 16, vs NumPy+SciPy")
def diag_hutchinson_cpu(quick: bool) -> List[Row]:
    rows = []
    for problem, A in _hutchinson_problems(quick, 256 if quick else 1024):
        H = CSRMatrix.from_sparse(A)
        rng = np.random.default_rng(0)
        ours, peer = time_cpu_pair(lambda: diag_estimate(H, num_matvecs=64, block=16),
                                   lambda: _peer_hutchinson(np, A, 64, 16, rng), repeat=5)
        # Both estimate diag(H): compare each with the truth (statistical, not bitwise).
        err = max(rel_diff(diag_estimate(H, num_matvecs=64, block=16), A.diagonal()),
                  rel_diff(_peer_hutchinson(np, A, 64, 16, rng), A.diagonal()))
        rows.append(Row("diag_hutchinson_cpu", problem, ours, peer, "numpy+scipy loop",
                        _floor(A, 64, 16), err, 1.5))
    return rows


@benchmark("diag_hutchinson_gpu", "gpu", "Hutchinson diag(H), 64 probes in blocks of 16, vs CuPy")
def diag_hutchinson_gpu(quick: bool) -> List[Row]:
    import cupy as cp
    import cupyx.scipy.sparse as cps

    rows = []
    for problem, A_host in _hutchinson_problems(quick, 1024 if quick else 2048):
        A = cps.csr_matrix(A_host)
        H = CSRMatrix.from_sparse(A)
        rng = cp.random.default_rng(0)
        ours, ours_call = time_gpu(lambda: diag_estimate(H, num_matvecs=64, block=16),
                                   n_repeat=20)
        peer, peer_call = time_gpu(lambda: _peer_hutchinson(cp, A, 64, 16, rng), n_repeat=20)
        truth = cp.asarray(A_host.diagonal())
        err = max(rel_diff(diag_estimate(H, num_matvecs=64, block=16), truth),
                  rel_diff(_peer_hutchinson(cp, A, 64, 16, rng), truth))
        rows.append(Row("diag_hutchinson_gpu", problem, ours, peer, "cupy loop",
                        _floor(A_host, 64, 16), err, 1.5, ours_call_s=ours_call,
                        peer_call_s=peer_call))
    return rows


def _mean_rel_err(fn, truth: np.ndarray, seeds: int) -> float:
    return float(np.mean([np.linalg.norm(fn(s) - truth) / np.linalg.norm(truth)
                          for s in range(seeds)]))


@benchmark("diag_xdiag_cpu", "cpu",
           "XDiag vs Hutchinson at equal products: relative error of diag(H), and time")
def diag_xdiag_cpu(quick: bool) -> List[Row]:
    """Accuracy per product: on ``Q diag(i^-2) Q^T`` (n = 2000, matrix-free) deflation wins by
    orders of magnitude; on a 2D Laplacian (flat spectrum, diagonally dominant) it loses.
    Errors are means over seeds; the check is XDiag's error / Hutchinson's error, both with
    the same probes (Rademacher, then Gaussian: rows marked ``gaussian``)."""
    seeds = 2 if quick else 5
    rows: List[Row] = []
    P = PowerLawOperator(2000, seed=0)
    m = 64 if quick else 256
    A = poisson2d(m)
    cases: List[Tuple[str, Any, np.ndarray, int, float]] = [
        ("power law n=2000", P, P.diagonal(), k, tol)
        for k, tol in ((64, 0.1), (128, 0.03), (256, 0.01), (512, 0.01))]
    cases.append((f"poisson2d {m}^2", CSRMatrix.from_sparse(A), A.diagonal(), 256, 5.0))
    for label, H, truth, k, tol in cases:
        for probes in ("rademacher", "gaussian"):
            gauss = probes == "gaussian"
            peer_err = _mean_rel_err(
                lambda s: diag_estimate(H, num_matvecs=k, probes=probes, seed=s), truth, seeds)
            for method in ("xdiag", "diag++"):
                ours_err = _mean_rel_err(
                    lambda s: diag_estimate(H, num_matvecs=k, method=method, probes=probes,
                                            seed=s), truth, seeds)
                ours, peer = time_cpu_pair(
                    lambda: diag_estimate(H, num_matvecs=k, method=method, probes=probes),
                    lambda: diag_estimate(H, num_matvecs=k, probes=probes),
                    min_time=0.2, repeat=3)
                rows.append(Row(f"diag_{method}_cpu",
                                f"{label}, {k} products" + (", gaussian" if gauss else ""),
                                ours, peer, "hutchinson" + (" (gaussian)" if gauss else ""),
                                0.0, ours_err / peer_err, tol, ours_err=ours_err,
                                peer_err=peer_err))
    return rows
