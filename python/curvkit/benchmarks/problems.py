"""Test matrices shared by the benchmarks (and the tests): stencils and random sparse."""

from __future__ import annotations

import numpy as np


def poisson2d(m: int, dtype=np.float64):
    """5-point Laplacian on an m x m grid (n = m², SPD), as a SciPy CSR matrix, int32 indices."""
    import scipy.sparse as sp

    t = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(m, m), format="csr")
    eye = sp.identity(m, format="csr")
    A = (sp.kron(t, eye) + sp.kron(eye, t)).tocsr().astype(dtype)
    A.sort_indices()
    return A


def random_csr(n: int, per_row: int, seed: int = 0, dtype=np.float64):
    """n x n with ``per_row`` uniformly random columns per row (a graph-like gather pattern)."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    indptr = np.arange(0, n * per_row + 1, per_row, dtype=np.int32)
    indices = rng.integers(0, n, size=n * per_row, dtype=np.int32)
    indices = np.sort(indices.reshape(n, per_row), axis=1).ravel()
    data = rng.standard_normal(n * per_row).astype(dtype)
    return sp.csr_matrix((data, indices, indptr), shape=(n, n))


def spmv_floor_bytes(A, k: int = 1) -> float:
    """Fewest bytes y = A X can move: values + indices + indptr once, X read once, Y written."""
    value = A.data.dtype.itemsize
    index = A.indices.dtype.itemsize
    n_rows, n_cols = A.shape
    return A.nnz * (value + index) + (n_rows + 1) * index + (n_cols + n_rows) * k * value
