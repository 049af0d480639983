"""Problems shared by the benchmarks (and the tests): stencils and random sparse matrices,
transport densities, von Mises-Fisher samples."""

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


def poisson3d(m: int, dtype=np.float64):
    """7-point Laplacian on an m x m x m grid (n = m³, SPD), SciPy CSR, int32 indices."""
    import scipy.sparse as sp

    t = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(m, m), format="csr")
    eye = sp.identity(m, format="csr")
    A = (sp.kron(sp.kron(t, eye), eye) + sp.kron(sp.kron(eye, t), eye)
         + sp.kron(sp.kron(eye, eye), t)).tocsr().astype(dtype)
    A.sort_indices()
    return A


def graph_laplacian(n: int, per_row: int, seed: int = 0, dtype=np.float64):
    """Laplacian of a random graph with positive edge weights, plus the identity (SPD); about
    ``2 * per_row + 1`` entries per row."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(n, dtype=np.int64), per_row)
    cols = rng.integers(0, n, size=n * per_row)
    w = rng.uniform(0.1, 1.0, size=n * per_row)
    W = sp.coo_matrix((w, (rows, cols)), shape=(n, n)).tocsr()
    W = W + W.T
    W.setdiag(0)
    W.eliminate_zeros()
    degree = np.asarray(W.sum(axis=1)).ravel()
    A = (sp.diags(degree + 1.0) - W).tocsr().astype(dtype)
    A.sort_indices()
    return A


def sinkhorn_block(n: int, m: int, per_row: int, seed: int = 0, dtype=np.float64):
    """[[diag(P 1), P], [P^T, diag(P^T 1)]] + 1e-3 I for a sparse positive P (n x m): the shape
    of a sparsified Sinkhorn-Newton Hessian, whose diagonal varies widely between rows."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(n), per_row)
    cols = rng.integers(0, m, size=n * per_row)
    vals = np.exp(rng.uniform(-6.0, 0.0, size=n * per_row))
    P = sp.csr_matrix((vals, (rows, cols)), shape=(n, m))
    r = np.asarray(P.sum(axis=1)).ravel()
    c = np.asarray(P.sum(axis=0)).ravel()
    H = sp.bmat([[sp.diags(r), P], [P.T, sp.diags(c)]]).tocsr()
    A = (H + 1e-3 * sp.identity(n + m)).tocsr().astype(dtype)
    A.sort_indices()
    return A


def scaled_poisson2d(m: int, spread: float = 3.0, seed: int = 0, dtype=np.float64):
    """D A D for the 2D Laplacian A and a random positive diagonal D spanning e^±spread: badly
    conditioned, but Jacobi undoes the scaling."""
    import scipy.sparse as sp

    A = poisson2d(m, np.float64)
    d = np.exp(np.random.default_rng(seed).uniform(-spread, spread, A.shape[0]))
    D = sp.diags(d)
    B = (D @ A @ D).tocsr().astype(dtype)
    B.sort_indices()
    return B


def cg_floor_bytes(A, jacobi: bool = False) -> float:
    """Byte floor of a CG iteration in three fused passes: 12 nnz + 92 n in float64 with int32
    indices, plus the inverse diagonal read twice with Jacobi (16 n). curvkit's step folds the
    update of p into the product and moves 8 n fewer bytes than this floor."""
    # product: p read, q written (2 vectors); update_xr: x, r, p, q read, x, r written (6);
    # update_p: r, p read, p written (3): 11 vectors = 88 n bytes in float64, + 4 n of indptr.
    value = A.data.dtype.itemsize
    n = A.shape[0]
    vectors = 11 * n * value + (2 * n * value if jacobi else 0)
    index = A.indices.dtype.itemsize
    return A.nnz * (value + index) + (n + 1) * index + vectors


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


# ---- entropic optimal transport: histograms on grids ----------------------------------------


def _gaussian_mixture(x: np.ndarray, rng: np.random.Generator, components: int) -> np.ndarray:
    """Sum of ``components`` Gaussian bumps with random centres in [0.1, 0.9], widths in
    [0.04, 0.15] and weights in [0.5, 1.5], evaluated at ``x``; positive everywhere."""
    centres = rng.uniform(0.1, 0.9, components)
    widths = rng.uniform(0.04, 0.15, components)
    weights = rng.uniform(0.5, 1.5, components)
    z = (x[:, None] - centres[None, :]) / widths[None, :]
    return (weights[None, :] * np.exp(-0.5 * z * z) / widths[None, :]).sum(axis=1)


def densities_1d(n: int, power: int = 2, seed: int = 0) -> tuple:
    """Two smooth densities on ``n`` grid points of [0, 1] as histograms, with the ground cost
    ``|x - y|^power`` scaled to max 1 (``power`` 1: W1, 2: W2).

    ``a`` mixes two Gaussian bumps, ``b`` three, with random centres and widths (``seed``), plus
    a uniform floor of 1e-3 of the mean mass, so that no bin is empty or lost to underflow.

    Returns
    -------
    a, b : ndarray
        ``(n,)``, positive, each summing to 1.
    M : ndarray
        ``(n, n)`` cost matrix, float64, max 1.

    Raises
    ------
    ValueError
        ``n < 2`` or ``power`` not positive.
    """
    if n < 2:
        raise ValueError(f"densities_1d needs n >= 2 grid points, got {n}")
    if not power > 0:
        raise ValueError(f"power must be positive, got {power}")
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 1.0, n)
    out = []
    for components in (2, 3):
        h = _gaussian_mixture(x, rng, components)
        h = h / h.sum()
        h = h + 1e-3 / n
        out.append(h / h.sum())
    M = np.abs(x[:, None] - x[None, :]) ** power
    M /= M.max()
    return out[0], out[1], M


def blob_images(side: int, seed: int = 0, blobs: int = 3) -> tuple:
    """Two synthetic ``side x side`` images of smooth blobs as histograms over the
    ``side**2`` pixels, with the squared pixel distance as cost, scaled to max 1.

    Each image is a sum of ``blobs`` anisotropic Gaussian blobs (random centres, widths of
    1/12 to 1/5 of the side, random orientation; ``seed``) plus a background of 1e-3 of the
    mean intensity, so every pixel carries mass; flattened row by row and normalised.

    Returns
    -------
    a, b : ndarray
        ``(side**2,)``, positive, each summing to 1.
    M : ndarray
        ``(side**2, side**2)``, float64, max 1.

    Raises
    ------
    ValueError
        ``side < 2`` or ``blobs < 1``.
    """
    if side < 2:
        raise ValueError(f"blob_images needs side >= 2, got {side}")
    if blobs < 1:
        raise ValueError(f"blob_images needs at least one blob, got {blobs}")
    rng = np.random.default_rng(seed)
    t = np.arange(side, dtype=float)
    yy, xx = np.meshgrid(t, t, indexing="ij")
    out = []
    for _ in range(2):
        img = np.zeros((side, side))
        for _ in range(blobs):
            cy, cx = rng.uniform(0.2, 0.8, 2) * (side - 1)
            sy, sx = rng.uniform(1 / 12, 1 / 5, 2) * side
            angle = rng.uniform(0.0, np.pi)
            u = np.cos(angle) * (yy - cy) + np.sin(angle) * (xx - cx)
            v = -np.sin(angle) * (yy - cy) + np.cos(angle) * (xx - cx)
            img += rng.uniform(0.5, 1.5) * np.exp(-0.5 * ((u / sy) ** 2 + (v / sx) ** 2))
        h = img.ravel() / img.sum()
        h = h + 1e-3 / h.size
        out.append(h / h.sum())
    pts = np.stack([yy.ravel(), xx.ravel()], axis=1)
    M = ((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1)
    M /= M.max()
    return out[0], out[1], M


def vmf_samples(rng: np.random.Generator, mu: np.ndarray, kappa: float, n: int) -> np.ndarray:
    """n samples of the von Mises-Fisher distribution on S^{p-1} with unit mean direction mu
    and concentration kappa, by Wood's (1994) rejection sampler: the component w along mu
    from a transformed Beta((p-1)/2, (p-1)/2) draw accepted against the density, the rest a
    uniform direction orthogonal to mu."""
    import math

    p = mu.shape[0]
    b = (p - 1) / (2 * kappa + math.sqrt(4 * kappa * kappa + (p - 1) ** 2))
    x0 = (1 - b) / (1 + b)
    c = kappa * x0 + (p - 1) * math.log(1 - x0 * x0)
    w = np.empty(n)
    filled = 0
    while filled < n:
        z = rng.beta((p - 1) / 2, (p - 1) / 2, size=2 * (n - filled))
        cand = (1 - (1 + b) * z) / (1 - (1 - b) * z)
        u = rng.random(cand.shape)
        ok = kappa * cand + (p - 1) * np.log(1 - x0 * cand) - c >= np.log(u)
        take = cand[ok][: n - filled]
        w[filled:filled + take.size] = take
        filled += take.size
    g = rng.standard_normal((n, p))
    g -= np.outer(g @ mu, mu)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    return w[:, None] * mu + np.sqrt(1 - w * w)[:, None] * g
