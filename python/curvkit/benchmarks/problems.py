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


class PowerLawOperator:
    """``H = Q diag(i^-exponent) Q^T`` (i = 1..n) as a host operator, with ``Q`` orthogonal and
    its columns spread over all coordinates: random signs, an orthonormal DCT-II, a random
    permutation, random signs and a second DCT-II. Products cost O(n log n) per column, so
    tests and benchmarks can use n in the thousands without forming or factoring ``H``.

    ``shape``, ``dtype`` and ``matmat(V)`` for an ``(n, k)`` block; ``diagonal()`` is exact.
    """

    def __init__(self, n: int, seed: int = 0, exponent: float = 2.0) -> None:
        rng = np.random.default_rng(seed)
        self.shape = (n, n)
        self.dtype = np.dtype(np.float64)
        self.eigenvalues = np.arange(1, n + 1, dtype=float) ** -exponent
        self._s1 = rng.choice([-1.0, 1.0], n)
        self._s2 = rng.choice([-1.0, 1.0], n)
        self._perm = rng.permutation(n)

    def _q(self, V: np.ndarray) -> np.ndarray:
        from scipy.fft import dct

        X = dct(self._s1[:, None] * V, norm="ortho", axis=0)[self._perm]
        return dct(self._s2[:, None] * X, norm="ortho", axis=0)

    def _qt(self, V: np.ndarray) -> np.ndarray:
        from scipy.fft import idct

        X = self._s2[:, None] * idct(V, norm="ortho", axis=0)
        Y = np.empty_like(X)
        Y[self._perm] = X
        return self._s1[:, None] * idct(Y, norm="ortho", axis=0)

    def matmat(self, V: np.ndarray) -> np.ndarray:
        return self._q(self.eigenvalues[:, None] * self._qt(V))

    def toarray(self) -> np.ndarray:
        return self.matmat(np.eye(self.shape[0]))

    def diagonal(self) -> np.ndarray:
        return (self._q(np.eye(self.shape[0])) ** 2) @ self.eigenvalues
