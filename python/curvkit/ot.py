"""Entropic optimal transport: log-domain Sinkhorn and Sinkhorn-Newton-Sparse (SNS).

The problem is POT's: minimise ``<P, M> + reg * sum P (log P - 1)`` subject to ``P 1 = a`` and
``P^T 1 = b``. Its solution is ``P_ij = exp((f_i + g_j - M_ij) / reg)`` for the maximisers
``(f, g)`` of the concave dual ``D(f, g) = <a, f> + <b, g> - reg * sum_ij P_ij``, defined up to
the shift ``(f + c, g - c)``.

``method='sinkhorn'`` alternates the exact row and column updates of ``D`` in the log domain
(one fused C++/CUDA pass over ``M`` each, no ``exp(-M / reg)`` matrix). ``method='sns'`` runs a
short Sinkhorn warm start, then Newton steps on ``D`` whose Hessian
``-[[diag(P 1), P], [P^T, diag(P^T 1)]] / reg`` keeps only the large entries of ``P`` (a CSR
matrix assembled by a C++ pass, solved by :func:`curvkit.linalg.cg_solve` with Jacobi), with a
backtracking line search on ``D``. Both accept NumPy (CPU kernels) or CuPy (GPU kernels) arrays.

On the CPU, a Newton system that Jacobi-preconditioned CG does not solve in 200 iterations is
finished with a two-level preconditioner: Jacobi plus a coarse correction over the connected
components of the plan's strong entries, the weakly linked clusters that small ``reg`` creates
(see ``_TwoLevel``).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, Optional

import numpy as np

from . import _arrays, _core
from .linalg import cg_solve
from .sparse import CSRMatrix

_METHODS = ("sns", "sinkhorn")
# Newton steps change no log-plan entry by more than this many units (of reg) at once: the
# dual's quadratic model holds only for changes of order reg, and a Newton direction that is
# huge along the near-null directions of weakly linked clusters would otherwise need more
# halvings than the line search allows.
_STEP_CAP = 30.0
# Relative diagonal shift of the Newton system: this factor times the L1 marginal error (at
# least 1e-9), a Levenberg-Marquardt damping that vanishes as the error does.
_SHIFT_PER_ERROR = 1e-2
# CG iterations with Jacobi alone before the two-level preconditioner takes over (most
# systems need 20-300; those of weakly linked clusters need 10^4 and more).
_JACOBI_FIRST = 200
# Aggregates: components of the kept links with P_ij / sqrt(d_i d_j) above the first of these
# that leaves at least one aggregate and, without SciPy (a dense inverse of k^3 flops), at most
# _MAX_COARSE_DENSE of them.
_COARSE_STRENGTHS = (0.1, 1e-2, 1e-3)
_MAX_COARSE_DENSE = 1500
# Continuation: a stage whose Newton steps crawl (this many in a row, each removing less than
# a fifth of the error) is restarted behind an intermediate stage, while consecutive regs are
# at least this ratio apart.
_STALL_STEPS = 10
_MIN_STAGE_RATIO = 2.5


@dataclass
class SinkhornResult:
    """Outcome of :func:`sinkhorn_potentials`.

    For a batch of ``B`` problems the scalar fields are NumPy arrays of ``B`` entries.

    Attributes
    ----------
    f, g : ndarray
        Dual potentials, ``(n,)`` and ``(m,)`` (or ``(B, n)``, ``(B, m)``), NumPy or CuPy like
        the input; ``P_ij = exp((f_i + g_j - M_ij) / reg)``. Entries of zero mass get ``-inf``.
    reg : float
        The regularisation.
    cost : float or ndarray
        Transport cost ``<P, M>``.
    objective : float or ndarray
        Entropic objective ``<P, M> + reg * sum P (log P - 1)``.
    marginal_error : float or ndarray
        ``||P 1 - a||_1 + ||P^T 1 - b||_1`` of the returned potentials.
    converged : bool or ndarray of bool
        ``marginal_error <= stopThr`` was reached.
    reason : str
        ``'converged'`` or ``'maxiter'`` (the iteration budget ran out).
    iterations : dict
        ``{'sinkhorn': ..., 'newton': ...}``: Sinkhorn iterations (a row and a column update
        each) and Newton steps.
    passes : int
        Passes over the ``n x m`` cost matrix: two per Sinkhorn iteration; for Newton, one per
        evaluation of the plan's marginals (each line-search trial, and a recount when the kept
        density grows) and one per sparse-Hessian gather; one for the final statistics.
    cg_iterations : int
        Conjugate-gradient iterations over all Newton steps.
    history : ndarray
        L1 marginal error after each iteration (Sinkhorn or Newton) that measured it (for a
        batch: the largest over the batch), on the host.
    density : float
        Fraction of the plan's entries kept in the last sparse Hessian (0 without Newton).
    method : str
        ``'sns'`` or ``'sinkhorn'``.
    """

    f: Any
    g: Any
    reg: float
    cost: Any
    objective: Any
    marginal_error: Any
    converged: Any
    reason: str
    iterations: dict
    passes: int
    cg_iterations: int
    history: np.ndarray
    density: float
    method: str
    _M: Any = field(default=None, repr=False)

    def plan(self) -> Any:
        """The dense transport plan ``exp((f_i + g_j - M_ij) / reg)``, NumPy or CuPy."""
        xp = _xp(self.f)
        return xp.exp((self.f[..., :, None] + self.g[..., None, :] - self._M) / self.reg)

    def sparse_plan(self, threshold: float = 0.0) -> CSRMatrix:
        """The plan's entries above ``threshold`` as a :class:`curvkit.CSRMatrix`.

        Two passes over ``M`` (count, then gather); the dense plan is never formed. Single
        problems only.
        """
        if self.f.ndim != 1:
            raise ValueError("sparse_plan needs a single problem, not a batch")
        xp = _xp(self.f)
        M = _as_kernel(xp, self._M, self.f.dtype)
        f, g = _finite_potentials(xp, self.f, self.g)
        n, m = M.shape
        rows, cols = xp.empty(n, f.dtype), xp.empty(m, f.dtype)
        counts = xp.empty(n, np.int64)
        dev = _arrays.device_id(xp, f)
        stream = _arrays.stream_pointer(xp, None)
        _core.ot_plan_sums(M, f, g, self.reg, float(threshold), rows, cols, None, counts, dev,
                           stream)
        indptr = xp.zeros(n + 1, np.int64)
        xp.cumsum(counts, out=indptr[1:])
        nnz = int(indptr[-1])
        indices, values = xp.empty(nnz, np.int64), xp.empty(nnz, f.dtype)
        _core.ot_plan_gather(M, f, g, self.reg, float(threshold), indptr[:-1], counts, 0,
                             indices, values, dev, stream)
        return CSRMatrix(indptr, indices, values, (n, m), check=False)


def _xp(x: Any) -> ModuleType:
    return _arrays.asarray(x)[0]


def _as_kernel(xp: ModuleType, x: Any, dtype: Any) -> Any:
    return xp.ascontiguousarray(x, dtype=dtype)


def _finite_potentials(xp: ModuleType, f: Any, g: Any) -> tuple:
    # -inf potentials (zero-mass entries) give exp(-inf) = 0 in the kernels; keep them finite
    # enough that f_i + g_j never meets inf - inf.
    big = np.finfo(f.dtype).max / 4
    return (xp.ascontiguousarray(xp.maximum(f, -big)),
            xp.ascontiguousarray(xp.maximum(g, -big)))


# ---- validation -----------------------------------------------------------------------------


def _prepare(a: Any, b: Any, M: Any, reg: float, method: str) -> tuple:
    """Checked (xp, a, b, M, dtype, batched, reg) with a, b normalised; raises ValueError."""
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    try:
        reg = float(reg)
    except (TypeError, ValueError):
        raise ValueError(f"reg must be a positive number, got {reg!r}") from None
    if not (reg > 0 and math.isfinite(reg)):
        raise ValueError(f"reg must be positive and finite, got {reg}")
    xp_m, M = _arrays.asarray(M)
    if M.ndim not in (2, 3):
        raise ValueError(f"M must be (n, m) or a batch (B, n, m), got shape {M.shape}")
    batched = M.ndim == 3
    lead = M.shape[:-2]
    n, m = M.shape[-2:]
    if n == 0 or m == 0:
        raise ValueError(f"M must be non-empty, got shape {M.shape}")

    def marginal(x: Any, size: int, name: str) -> Any:
        if x is None or (isinstance(x, (list, tuple)) and len(x) == 0):
            return xp_m.full(lead + (size,), 1.0 / size)
        xp_x, x = _arrays.asarray(x)
        _arrays.namespace(xp_m, xp_x)
        if x.shape != lead + (size,):
            raise ValueError(
                f"shape mismatch: M has shape {M.shape}, so {name} must have shape "
                f"{lead + (size,)}, got {x.shape}"
            )
        return x

    a = marginal(a, n, "a")
    b = marginal(b, m, "b")
    xp = xp_m
    dtype = _arrays.value_dtype(a.dtype, b.dtype, M.dtype)
    if method == "sns":
        dtype = np.dtype(np.float64)  # Newton's steps need the dual objective to 1e-16
    a = xp.asarray(a, dtype=dtype)
    b = xp.asarray(b, dtype=dtype)
    if not bool(xp.all(xp.isfinite(M))):
        raise ValueError("M contains NaN or Inf")
    for name, x in (("a", a), ("b", b)):
        if not bool(xp.all(xp.isfinite(x))):
            raise ValueError(f"{name} contains NaN or Inf")
        if bool(xp.any(x < 0)):
            raise ValueError(f"{name} has negative entries; marginals must be non-negative")
    tol = 1e-6 if dtype == np.float64 else 1e-4
    sa, sb = a.sum(axis=-1), b.sum(axis=-1)
    if bool(xp.any(xp.abs(sa - sb) > tol)):
        raise ValueError(
            f"a and b have different total mass ({_show(sa)} vs {_show(sb)}); both must sum to 1"
        )
    if bool(xp.any(xp.abs(sa - 1) > tol)):
        raise ValueError(f"a and b must sum to 1 (probability vectors), got {_show(sa)}")
    # Exact unit mass, so that the stopping threshold is reachable to the last digit.
    a = a / sa[..., None]
    b = b / sb[..., None]
    return xp, a, b, M, dtype, batched, reg


def _show(x: Any) -> str:
    v = np.asarray(x.get() if hasattr(x, "get") else x).ravel()
    return f"{v[0]:.12g}" if v.size == 1 else f"{v.min():.12g}..{v.max():.12g}"


# ---- the solvers ----------------------------------------------------------------------------


class _Kernels:
    """Calls into the C++ kernels for one problem (or one batch), counting the passes."""

    def __init__(self, xp: ModuleType, M: Any, dtype: np.dtype, batch: int, stream: Any) -> None:
        self.xp = xp
        self.batch = batch
        n, m = M.shape[-2:]
        self.n, self.m = n, m
        self.M = _as_kernel(xp, M, dtype).reshape(batch * n, m)
        # The column update is the row update of M^T: one transposed copy, made once, keeps
        # both passes row-wise and coalesced.
        self.MT = xp.ascontiguousarray(
            _as_kernel(xp, M, dtype).reshape(batch, n, m).transpose(0, 2, 1)
        ).reshape(batch * m, n)
        self.dev = _arrays.device_id(xp, self.M)
        self.stream = _arrays.stream_pointer(xp, stream)
        self.passes = 0

    def row_update(self, f: Any, g: Any, a: Any, reg: float, error: Any) -> None:
        _core.ot_lse_update(self.M, g, a, reg, self.batch, f, None, error, self.dev, self.stream)
        self.passes += 1

    def col_update(self, f: Any, g: Any, b: Any, reg: float) -> None:
        _core.ot_lse_update(self.MT, f, b, reg, self.batch, g, None, None, self.dev, self.stream)
        self.passes += 1

    def sinkhorn_batch(self, f: Any, g: Any, a: Any, b: Any, reg: float, maxiter: int,
                       tol: float, check_every: int) -> int:
        """Every problem of the batch solved in one call, each stopping on its own error;
        returns the most iterations any problem ran."""
        xp = self.xp
        its = xp.empty(self.batch, np.int64)
        err = xp.empty(self.batch, f.dtype)
        _core.ot_sinkhorn_batch(self.M, self.MT, a, b, reg, self.batch, maxiter, tol,
                                check_every, f, g, its, err, self.dev, self.stream)
        most = int(its.max())
        self.passes += 2 * most
        return most

    def sums(self, f: Any, g: Any, reg: float, threshold: float, counts: Any = None) -> tuple:
        xp = self.xp
        r, c, cost = xp.empty(self.n, f.dtype), xp.empty(self.m, f.dtype), xp.empty(1, f.dtype)
        _core.ot_plan_sums(self.M, f, g, reg, threshold, r, c, cost, counts, self.dev,
                           self.stream)
        self.passes += 1
        return r, c, cost

    def gather(self, f: Any, g: Any, reg: float, threshold: float, starts: Any, slots: Any,
               offset: int, indices: Any, values: Any) -> None:
        _core.ot_plan_gather(self.M, f, g, reg, threshold, starts, slots, offset, indices,
                             values, self.dev, self.stream)
        self.passes += 1


def _sinkhorn_phase(K: _Kernels, f: Any, g: Any, a: Any, b: Any, reg: float, maxiter: int,
                    target: float, check_every: int, history: list) -> tuple:
    """Log-domain Sinkhorn until the L1 marginal error is <= target; returns (iterations, err).

    The row pass measures the error of the current potentials as it updates f (the column
    marginals are exact after a column pass), so a check costs no extra pass; f is restored
    when the check stops the loop, so the returned potentials are the measured ones.
    """
    xp = K.xp
    error = xp.empty(K.batch, f.dtype)
    err = math.inf
    it = 0
    while it < maxiter:
        check = (it + 1) % check_every == 0 or it + 1 == maxiter
        saved = f.copy() if check else None
        K.row_update(f, g, a, reg, error if check else None)
        if check:
            e = float(error.max())
            history.append(e)
            if e <= target or not math.isfinite(e):
                f[...] = saved
                K.passes -= 1  # the discarded update
                return it, e
            err = e
        K.col_update(f, g, b, reg)
        it += 1
    return it, err


def _components(size: int, u: np.ndarray, v: np.ndarray) -> tuple:
    """Connected components of the undirected graph on ``size`` nodes with edges (u, v):
    (count, label per node in 0..count-1). Vectorised hooking of the larger root under the
    smaller one, then pointer jumping, until no edge joins two roots (a few rounds)."""
    parent = np.arange(size)
    while True:
        pu, pv = parent[u], parent[v]
        lo, hi = np.minimum(pu, pv), np.maximum(pu, pv)
        cross = lo != hi
        if not cross.any():
            break
        np.minimum.at(parent, hi[cross], lo[cross])
        while True:  # compress: every node points at its root
            up = parent[parent]
            if np.array_equal(up, parent):
                break
            parent = up
    roots, label = np.unique(parent, return_inverse=True)
    return roots.size, label


class _TwoLevel:
    """Jacobi plus a coarse correction for the Newton system of the dual.

    ``M^-1 v = v / diag + Z E^-1 Z^T v``: each column of ``Z`` is +1 on the rows and -1 on the
    columns of one aggregate (a connected component of the kept plan's strong links), the
    direction that shifts that aggregate's potentials against the rest. Those directions are
    the Hessian's near-null space when the plan splits into weakly linked clusters, which
    Jacobi-preconditioned CG resolves only over thousands of iterations. ``E = Z^T H Z`` is the
    aggregates' Laplacian (one entry per kept link between aggregates), factorised once per
    Newton system. For CuPy arrays the aggregation and the Jacobi part run on the device and
    only the aggregates' vector (of ``count`` entries) crosses to the host for the factorised
    solve.
    """

    def __init__(self, H: CSRMatrix, diag: Any, n: int) -> None:
        size = H.shape[0]
        sparse = _sparse_lu_available()
        max_coarse = size if sparse else _MAX_COARSE_DENSE
        self.xp = np if isinstance(H.data, np.ndarray) else _arrays.asarray(H.data)[0]
        host = (lambda x: x) if self.xp is np else (lambda x: x.get())
        indptr, indices, values = (host(x) for x in (H.indptr, H.indices, H.data))
        diag = host(diag)
        rows = np.repeat(np.arange(size), np.diff(indptr))
        off = rows != indices  # the kept plan entries (upper storage: row i, column n + j)
        i, j, p = rows[off], indices[off], values[off]
        self.count = 0
        strength = p / np.sqrt(diag[i] * diag[j])
        # The strongest links that still leave a coarse space of at most max_coarse aggregates.
        # A lone node is no near-null direction (its Rayleigh quotient is its diagonal), so
        # it stays with Jacobi alone and takes no coarse column.
        for theta in _COARSE_STRENGTHS:
            strong = strength > theta
            _, comp = _components(size, i[strong], j[strong])
            sizes = np.bincount(comp)
            count = int((sizes > 1).sum())
            if 0 < count <= max_coarse:
                break
        else:
            return
        grouped = sizes[comp] > 1
        agg = np.where(grouped, (np.cumsum(sizes > 1) - 1)[comp], 0)
        # Z's entries: +1 on an aggregate's rows, -1 on its columns, 0 on lone nodes.
        sign = np.where(grouped, 1.0, 0.0)
        sign[n:] *= -1.0
        # E = D_agg - W - W^T, with D_agg the aggregates' summed diagonals and W the kept
        # plan mass from one aggregate's rows to another's (or its own) columns.
        link = sign[i] * sign[j] != 0
        self.coarse_solve = _laplacian_solver(
            count, agg[i][link], agg[j][link], p[link],
            np.bincount(agg, weights=diag * sign * sign, minlength=count), sparse)
        if self.coarse_solve is None:
            return  # not numerically definite: Jacobi alone
        self.count = count
        xp = self.xp
        self.agg, self.sign, self.inv_diag = (xp.asarray(x) for x in (agg, sign, 1.0 / diag))

    def __call__(self, r: Any) -> Any:
        xp = self.xp
        folded = xp.bincount(self.agg, weights=self.sign * r, minlength=self.count)
        coarse = self.coarse_solve(folded if xp is np else folded.get())
        return self.inv_diag * r + self.sign * xp.asarray(coarse)[self.agg]


def _sparse_lu_available() -> bool:
    try:
        import scipy.sparse.linalg  # noqa: F401
    except ImportError:
        return False
    return True


def _laplacian_solver(count: int, src: np.ndarray, dst: np.ndarray, mass: np.ndarray,
                      diag: np.ndarray, sparse: bool) -> Optional[Callable[[np.ndarray], Any]]:
    """``v -> E^-1 v`` for the SPD ``E = diag(diag) - W - W^T`` with ``W[src, dst] += mass``;
    None where ``E`` is not numerically definite.

    ``E`` has one entry per kept link between aggregates. ``sparse``: SciPy's sparse LU
    (SuperLU, diagonal pivots in a symmetric fill-reducing order, so its pivots are those of a
    Cholesky factorisation). Otherwise a dense inverse from NumPy's Cholesky factor (NumPy has
    no triangular solve), which suits a few hundred aggregates.
    """
    if sparse:
        import scipy.sparse as sp
        from scipy.sparse.linalg import splu

        idx = np.arange(count)
        E = sp.coo_matrix((np.concatenate([diag, -mass, -mass]),
                           (np.concatenate([idx, src, dst]), np.concatenate([idx, dst, src]))),
                          shape=(count, count)).tocsc()
        try:
            lu = splu(E, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                      options={"SymmetricMode": True})
        except RuntimeError:  # exactly singular
            return None
        if not np.all(lu.U.diagonal() > 0):
            return None
        return lu.solve
    W = np.bincount(src * count + dst, weights=mass, minlength=count * count)
    W = W.reshape(count, count)
    E = np.diag(diag) - W - W.T
    try:
        L = np.linalg.cholesky(E)
    except np.linalg.LinAlgError:
        return None
    Linv = np.linalg.inv(L)
    Einv = Linv.T @ Linv
    return lambda v: Einv @ v


@dataclass
class _NewtonState:
    f: Any
    g: Any
    r: Any
    c: Any
    cost: Any
    mass: float
    err: float


def _newton_phase(K: _Kernels, f: Any, g: Any, a: Any, b: Any, reg: float, maxiter: int,
                  stopThr: float, history: list, density: float, cg_rtol: float,
                  fallback: int, stall: Optional[int] = None) -> tuple:
    """Sparse Newton ascent on the dual; returns (f, g, newton steps, sinkhorn fallback
    iterations, cg iterations, final error, kept density, stalled).

    ``stall``: give up (``stalled`` True) after this many consecutive accepted steps that each
    removed less than a fifth of the error: the start is too far for Newton's quadratic model.
    """
    xp = K.xp
    n, m = K.n, K.m
    # Entries of P above tau are kept: with unit mass spread evenly over a fraction `density`
    # of the entries, each would be 1 / (density n m). tau shrinks, keeping more, whenever a
    # step disappoints.
    tau = 1.0 / (max(density, 1e-300) * n * m)
    counts = xp.empty(n, np.int64)

    def evaluate(ff: Any, gg: Any) -> _NewtonState:
        r, c, cost = K.sums(ff, gg, reg, tau, counts)
        err = float(xp.abs(r - a).sum() + xp.abs(c - b).sum())
        return _NewtonState(ff, gg, r, c, cost, float(r.sum()), err)

    s = evaluate(f, g)
    history.append(s.err)
    steps = fallbacks = cg_its = crawl = 0
    kept = 0.0
    while s.err > stopThr and steps + fallbacks < maxiter:
        # Sparse Hessian (scaled by reg), upper block storage: row i holds diag(P 1)_i and the
        # kept P_ij at column n + j; row n + j holds diag(P^T 1)_j alone.
        row_nnz = counts + 1
        indptr = xp.empty(n + m + 1, np.int64)
        indptr[0] = 0
        xp.cumsum(xp.concatenate([row_nnz, xp.ones(m, np.int64)]), out=indptr[1:])
        nnz = int(indptr[-1])
        indices = xp.empty(nnz, np.int64)
        values = xp.empty(nnz, f.dtype)
        starts = indptr[:n]
        K.gather(s.f, s.g, reg, tau, starts + 1, counts, n, indices, values)
        kept = (nnz - n - m) / (n * m)
        # Diagonal: the exact marginals; a relative shift makes the matrix definite (the exact
        # Hessian has the null direction (1, -1), which the gradient avoids) and bounds the
        # condition of the near-null directions small reg creates (weakly linked clusters of
        # the plan). A fixed 1e-9 suits the end game (measured on point clouds at reg 1e-4: fewer
        # CG iterations than 1e-12, far fewer Newton steps than 1e-6); far from the solution a
        # shift of 1e-2 x the marginal error turns the steps along those directions into
        # Sinkhorn-like scaled-gradient steps instead of huge ones (on 14 x 14 images at reg
        # 1e-4 it cut the CG iterations about 10x and removed the Sinkhorn fallbacks).
        shift = max(1e-9, _SHIFT_PER_ERROR * s.err)
        diag = xp.concatenate([s.r, s.c]) * (1 + shift)
        indices[starts] = xp.arange(n)
        values[starts] = diag[:n]
        indices[indptr[n:n + m]] = xp.arange(n, n + m)
        values[indptr[n:n + m]] = diag[n:]
        H = CSRMatrix(indptr, indices, values, (n + m, n + m), symmetric="upper", check=False)
        grad = xp.concatenate([a - s.r, b - s.c])
        # Inexact Newton: a relative residual of 0.1 sqrt(error) keeps the convergence
        # superlinear while sparing CG the last digits early on.
        rtol = min(cg_rtol, max(1e-10, 0.1 * math.sqrt(s.err)))
        maxiter = 20 * (n + m)
        # Jacobi first (its loop runs in the kernels); a stalled solve goes on from where it
        # stopped with the coarse correction, applied from Python each iteration.
        first = min(maxiter, _JACOBI_FIRST)
        res = cg_solve(H, reg * grad, rtol=rtol, M=1 / diag, maxiter=first,
                       history=False, check_finite=False)
        cg_its += int(res.iterations)
        if not res.converged and first < maxiter:
            pre = _TwoLevel(H, diag, n)
            res = cg_solve(H, reg * grad, x0=res.x, rtol=rtol, M=pre if pre.count else 1 / diag,
                           maxiter=maxiter - first, history=False, check_finite=False)
            cg_its += int(res.iterations)
        d = res.x
        df, dg = d[:n], d[n:]
        slope = float(grad @ d)  # = directional derivative of the dual along d
        linear = float(a @ df + b @ dg)
        # log P_ij moves by t (df_i + dg_j) / reg: bound the largest rise and fall.
        spread = float(xp.maximum(xp.abs(df.max() + dg.max()), xp.abs(df.min() + dg.min())))
        t = min(1.0, _STEP_CAP * reg / spread) if spread > 0 else 1.0
        accepted: Optional[_NewtonState] = None
        if slope > 0 and math.isfinite(slope):
            for _ in range(30):  # halvings from the (possibly capped) first trial
                trial = evaluate(s.f + t * df, s.g + t * dg)
                # The dual's gain t <a, df> + t <b, dg> - reg (mass' - mass) is formed from
                # differences, not as D' - D, whose O(1) terms would cancel near the optimum;
                # the allowance covers the rounding of the mass sums.
                gain = t * linear - reg * (trial.mass - s.mass)
                noise = 1e-13 * reg * (1 + s.mass)
                if math.isfinite(trial.err) and gain >= 1e-4 * t * slope - noise:
                    accepted = trial
                    break
                t *= 0.5
        if accepted is None:
            # No ascent along the sparse Newton direction: Sinkhorn sweeps, denser Hessian.
            tau *= 0.01
            fg_f, fg_g = s.f.copy(), s.g.copy()
            done, _ = _sinkhorn_phase(K, fg_f, fg_g, a, b, reg, fallback, stopThr, 1, history)
            fallbacks += max(done, 1)
            s = evaluate(fg_f, fg_g)
            continue
        steps += 1
        history.append(accepted.err)
        crawl = crawl + 1 if accepted.err > 0.8 * s.err else 0
        if t < 1 or accepted.err > 0.25 * s.err:
            tau *= 0.1  # the sparse Hessian was too coarse: keep more of the plan
            accepted = evaluate(accepted.f, accepted.g)  # counts at the new threshold
        s = accepted
        if stall is not None and crawl >= stall:
            return s.f, s.g, steps, fallbacks, cg_its, s.err, kept, True
    return s.f, s.g, steps, fallbacks, cg_its, s.err, kept, False


def sinkhorn_potentials(
    a: Any,
    b: Any,
    M: Any,
    reg: float,
    *,
    method: str = "sns",
    numItermax: int = 1000,
    stopThr: float = 1e-9,
    warmstart: Any = None,
    n_warmup: int = 5,
    switch_error: float = 1e-2,
    density: float = 1e-2,
    cg_rtol: float = 1e-2,
    continuation: Optional[float] = 1e-3,
    eps_scaling: float = 10.0,
    check_every: Optional[int] = None,
    stream: Any = None,
) -> SinkhornResult:
    """Solve entropic optimal transport and return the dual potentials with diagnostics.

    Parameters
    ----------
    a, b : ndarray or None
        Source and target marginals, ``(n,)`` and ``(m,)`` (or ``(B, n)``, ``(B, m)`` for a
        batch), non-negative and summing to 1 (to 1e-6; they are renormalised exactly).
        ``None`` or an empty list: uniform, as in POT.
    M : ndarray
        Cost matrix ``(n, m)``, or a batch ``(B, n, m)`` of problems solved together. NumPy
        runs on the CPU kernels, CuPy on the GPU.
    reg : float
        Entropic regularisation, > 0.
    method : {'sns', 'sinkhorn'}
        ``'sns'``: Sinkhorn warm start then sparse Newton steps (float64). ``'sinkhorn'``: plain
        log-domain Sinkhorn (float32 inputs stay float32).
    numItermax : int
        Budget of iterations: Sinkhorn iterations plus Newton steps.
    stopThr : float
        Stop when ``||P 1 - a||_1 + ||P^T 1 - b||_1 <= stopThr``.
    warmstart : tuple of ndarray, optional
        ``(log_u, log_v)`` with ``f = reg * log_u``, ``g = reg * log_v`` (POT's convention).
    n_warmup : int
        SNS: at most this many Sinkhorn iterations before the first Newton step...
    switch_error : float
        ...or fewer, once the marginal error is below this.
    density : float
        SNS: fraction of the plan's entries the first sparse Hessian aims to keep (entries above
        ``1 / (density n m)``); it grows by 10x whenever a Newton step needs damping or
        reduces the error less than 4x.
    cg_rtol : float
        SNS: largest relative residual of the CG solves (tightened to 0.1 sqrt(error)).
    continuation : float or None
        SNS: when ``reg`` is below ``continuation * (max M - min M)``, solve first with
        ``reg * eps_scaling^k`` (k = K, ..., 1; the largest not above twice that level) to 1e-6,
        each stage starting from the previous potentials. A stage whose Newton steps crawl (10
        in a row each removing less than a fifth of the error) is restarted behind a new stage
        at the geometric mean of its reg and the previous one's (while they are 2.5x apart).
        ``None`` disables it.
    eps_scaling : float
        SNS: ratio between the regularisations of consecutive continuation stages.
    check_every : int, optional
        Sinkhorn iterations between error checks (1 on the CPU, 10 on a GPU, where each check
        reads a scalar back; 1 for batches of problems with n, m <= 1024 solved by
        ``method='sinkhorn'``, which run whole on the device and check there).
    stream : cupy.cuda.Stream or int, optional
        GPU stream; default CuPy's current stream.

    Returns
    -------
    SinkhornResult

    Raises
    ------
    ValueError
        Negative, non-finite or non-normalised marginals, marginals of different total mass,
        NaN or Inf in ``M``, mismatched shapes, ``reg <= 0``, an unknown method.
    TypeError
        NumPy and CuPy arrays mixed.
    """
    xp, a, b, M, dtype, batched, reg = _prepare(a, b, M, reg, method)
    if numItermax < 0:
        raise ValueError(f"numItermax must be non-negative, got {numItermax}")
    if not stopThr >= 0:
        raise ValueError(f"stopThr must be non-negative, got {stopThr}")
    if check_every is None:
        check_every = 1 if xp is np or _fused_batch(batched, method, M) else 10
    elif check_every < 1:
        raise ValueError(f"check_every must be >= 1, got {check_every}")
    dev = _arrays.device_id(xp, M)
    gpu = xp is not np
    if gpu and not _core.with_cuda():
        raise RuntimeError("CuPy arrays need the CUDA kernels, and this curvkit build has none")
    with contextlib.ExitStack() as stack:
        s = None
        if gpu:
            s = stack.enter_context(_arrays.on_stream(True, stream))
            stack.enter_context(_arrays.on_device(xp, dev))
        # A rejected line-search trial may overflow to inf; it is detected and discarded.
        stack.enter_context(np.errstate(over="ignore", invalid="ignore"))
        if batched:
            return _solve_batch(xp, a, b, M, dtype, reg, method, numItermax, stopThr, warmstart,
                                n_warmup, switch_error, density, cg_rtol, continuation,
                                eps_scaling, check_every, s)
        return _solve_one(xp, a, b, M, dtype, reg, method, numItermax, stopThr, warmstart,
                          n_warmup, switch_error, density, cg_rtol, continuation, eps_scaling,
                          check_every, s)


def _warm(xp: ModuleType, warmstart: Any, shape_f: tuple, shape_g: tuple, reg: float,
          dtype: np.dtype) -> tuple:
    if warmstart is None:
        return xp.zeros(shape_f, dtype), xp.zeros(shape_g, dtype)
    try:
        lu, lv = warmstart
    except (TypeError, ValueError):
        raise ValueError("warmstart must be a pair (log_u, log_v)") from None
    out = []
    for name, x, shape in (("log_u", lu, shape_f), ("log_v", lv, shape_g)):
        xp_x, x = _arrays.asarray(x)
        _arrays.namespace(xp, xp_x)
        if x.shape != shape:
            raise ValueError(f"warmstart {name} must have shape {shape}, got {x.shape}")
        if not bool(xp.all(xp.isfinite(x))):
            raise ValueError(f"warmstart {name} contains NaN or Inf")
        out.append(xp.array(x, dtype=dtype) * reg)
    return out[0], out[1]


def _stages(xp: ModuleType, M: Any, reg: float, continuation: Optional[float],
            scaling: float) -> list:
    """Regularisations of the continuation, ending with reg: from the largest reg * scaling^k
    not above twice continuation * (cost range), so that each stage starts from the potentials of a
    smoother problem."""
    if continuation is None or scaling <= 1:
        return [reg]
    span = float(M.max() - M.min())
    top = continuation * span
    stages = [reg]
    while stages[-1] * scaling <= 2 * top:
        stages.append(stages[-1] * scaling)
    return stages[::-1]


def _solve_one(xp: ModuleType, a: Any, b: Any, M: Any, dtype: np.dtype, reg: float,
               method: str, numItermax: int, stopThr: float, warmstart: Any, n_warmup: int,
               switch_error: float, density: float, cg_rtol: float,
               continuation: Optional[float], eps_scaling: float, check_every: int,
               stream: Any) -> SinkhornResult:
    """One problem on the support of its marginals; see sinkhorn_potentials."""
    n, m = M.shape
    f0, g0 = _warm(xp, warmstart, (n,), (m,), reg, dtype)
    # Zero-mass entries carry no constraint (their potentials are -inf): solve on the support.
    rows = a > 0
    cols = b > 0
    full = bool(rows.all()) and bool(cols.all())
    if full:
        Ms, As, Bs, f, g = M, a, b, f0, g0
    else:
        ri, ci = xp.nonzero(rows)[0], xp.nonzero(cols)[0]
        Ms, As, Bs = M[ri][:, ci], a[ri], b[ci]
        f, g = xp.ascontiguousarray(f0[ri]), xp.ascontiguousarray(g0[ci])
    K = _Kernels(xp, Ms, dtype, 1, stream)
    As, Bs = xp.ascontiguousarray(As), xp.ascontiguousarray(Bs)
    history: list = []
    newton_steps = cg_its = 0
    kept = 0.0
    if method == "sinkhorn":
        its, err = _sinkhorn_phase(K, f, g, As, Bs, reg, numItermax, stopThr, check_every,
                                   history)
    else:
        its = 0
        stages = _stages(xp, Ms, reg, continuation, eps_scaling)
        k = 0
        previous: Optional[float] = None  # the last stage solved
        while k < len(stages):
            reg_k = stages[k]
            last = k == len(stages) - 1
            # Intermediate stages only need to hand a good start to the next, smaller reg.
            thr = stopThr if last else max(stopThr, 1e-6)
            budget = numItermax - its - newton_steps
            warm = min(n_warmup, budget)
            # A stage whose Newton steps crawl from the previous stage's potentials is
            # restarted from them behind a new stage at the geometric mean of the two regs.
            # (Measured on 1-D W1: doing the same in front of a crawling first stage lost as
            # often as it won.)
            refine = previous is not None and previous / reg_k >= _MIN_STAGE_RATIO
            start = (f.copy(), g.copy()) if refine else None
            done, err = _sinkhorn_phase(K, f, g, As, Bs, reg_k, warm, max(thr, switch_error),
                                        min(check_every, 5), history)
            its += done
            f, g, steps, fallback, cgi, err, kept, stalled = _newton_phase(
                K, f, g, As, Bs, reg_k, budget - done, thr, history, density, cg_rtol,
                max(check_every, 10), _STALL_STEPS if refine else None)
            its += fallback
            newton_steps += steps
            cg_its += cgi
            if stalled:
                f, g = start
                stages.insert(k, math.sqrt(previous * reg_k))
                continue
            previous = reg_k
            k += 1
    r, c, cost = K.sums(f, g, reg, math.inf)
    err = float(xp.abs(r - As).sum() + xp.abs(c - Bs).sum())
    cost_v = float(cost[0])
    # sum P (log P - 1) with log P = (f + g - M) / reg, from the marginals alone.
    objective = float(r @ f + c @ g) - reg * float(r.sum())
    if not full:
        ff = xp.full(n, -np.inf, dtype)
        gg = xp.full(m, -np.inf, dtype)
        ff[ri] = f
        gg[ci] = g
        f, g = ff, gg
    converged = err <= stopThr
    return SinkhornResult(
        f=f, g=g, reg=reg, cost=cost_v, objective=objective, marginal_error=err,
        converged=converged, reason="converged" if converged else "maxiter",
        iterations={"sinkhorn": int(its), "newton": int(newton_steps)}, passes=K.passes,
        cg_iterations=int(cg_its), history=np.asarray(history, dtype=np.float64),
        density=float(kept), method=method, _M=M,
    )


# Batches of problems up to this size run whole Sinkhorn solves in one call (a GPU block per
# problem); larger ones alternate whole-batch half steps from the host.
_FUSED_MAX_SIZE = 1024


def _fused_batch(batched: bool, method: str, M: Any) -> bool:
    return batched and method == "sinkhorn" and max(M.shape[-2:]) <= _FUSED_MAX_SIZE


def _solve_batch(xp: ModuleType, a: Any, b: Any, M: Any, dtype: np.dtype, reg: float,
                 method: str, numItermax: int, stopThr: float, warmstart: Any, n_warmup: int,
                 switch_error: float, density: float, cg_rtol: float,
                 continuation: Optional[float], eps_scaling: float, check_every: int,
                 stream: Any) -> SinkhornResult:
    """B stacked problems: one set of Sinkhorn kernels for all (method 'sinkhorn'), or the
    problems one after the other (method 'sns', whose Newton systems differ)."""
    B, n, m = M.shape
    if method == "sns":
        parts = [
            _solve_one(xp, a[k], b[k], M[k], dtype, reg, method, numItermax, stopThr,
                       None if warmstart is None else (warmstart[0][k], warmstart[1][k]),
                       n_warmup, switch_error, density, cg_rtol, continuation, eps_scaling,
                       check_every, stream)
            for k in range(B)
        ]
        return SinkhornResult(
            f=xp.stack([p.f for p in parts]), g=xp.stack([p.g for p in parts]), reg=reg,
            cost=np.array([p.cost for p in parts]),
            objective=np.array([p.objective for p in parts]),
            marginal_error=np.array([p.marginal_error for p in parts]),
            converged=np.array([p.converged for p in parts]),
            reason="converged" if all(p.converged for p in parts) else "maxiter",
            iterations={"sinkhorn": int(sum(p.iterations["sinkhorn"] for p in parts)),
                        "newton": int(sum(p.iterations["newton"] for p in parts))},
            passes=int(sum(p.passes for p in parts)),
            cg_iterations=int(sum(p.cg_iterations for p in parts)),
            history=np.zeros(0), density=float(np.mean([p.density for p in parts])),
            method=method, _M=M,
        )
    f, g = _warm(xp, warmstart, (B, n), (B, m), reg, dtype)
    f, g = f.reshape(B * n), g.reshape(B * m)
    K = _Kernels(xp, M, dtype, B, stream)
    history: list = []
    if _fused_batch(True, method, M):
        its = K.sinkhorn_batch(f, g, a.reshape(B * n), b.reshape(B * m), reg, numItermax,
                               stopThr, check_every)
    else:
        its, _ = _sinkhorn_phase(K, f, g, a.reshape(B * n), b.reshape(B * m), reg, numItermax,
                                 stopThr, check_every, history)
    f, g = f.reshape(B, n), g.reshape(B, m)
    Md = K.M.reshape(B, n, m)
    # Statistics of a batch in one pass of array operations (per-problem sums).
    logP = (f[:, :, None] + g[:, None, :] - Md) / reg
    P = xp.exp(logP)
    K.passes += 1
    r, c = P.sum(axis=2), P.sum(axis=1)
    err = xp.abs(r - a).sum(axis=1) + xp.abs(c - b).sum(axis=1)
    cost = (P * Md).sum(axis=(1, 2))
    objective = (r * f).sum(axis=1) + (c * g).sum(axis=1) - reg * r.sum(axis=1)
    to_host = (lambda x: x.get()) if xp is not np else (lambda x: x)
    err_h = np.asarray(to_host(err), dtype=np.float64)
    converged = err_h <= stopThr
    return SinkhornResult(
        f=f, g=g, reg=reg, cost=np.asarray(to_host(cost), dtype=np.float64),
        objective=np.asarray(to_host(objective), dtype=np.float64), marginal_error=err_h,
        converged=converged, reason="converged" if bool(converged.all()) else "maxiter",
        iterations={"sinkhorn": int(its), "newton": 0}, passes=K.passes, cg_iterations=0,
        history=np.asarray(history, dtype=np.float64), density=0.0, method=method, _M=Md,
    )


def sinkhorn(
    a: Any,
    b: Any,
    M: Any,
    reg: float,
    *,
    method: str = "sns",
    numItermax: int = 1000,
    stopThr: float = 1e-9,
    log: bool = False,
    warmstart: Any = None,
    **kwargs: Any,
) -> Any:
    """Entropic optimal transport plan, with POT's ``ot.sinkhorn`` conventions.

    Solves ``min_P <P, M> + reg * sum P (log P - 1)`` subject to ``P 1 = a``, ``P^T 1 = b``.
    See :func:`sinkhorn_potentials` for the parameters (further keywords go there).

    Returns
    -------
    P : ndarray
        The dense plan ``(n, m)`` (or ``(B, n, m)``), NumPy or CuPy like ``M``.
    log : dict
        With ``log=True``: ``f``, ``g`` (potentials), ``log_u = f / reg``, ``log_v = g / reg``,
        ``u``, ``v`` (POT's scalings, ``P = diag(u) exp(-M / reg) diag(v)``), ``err`` (the
        marginal-error history), ``niter``, ``cost``, ``objective``, ``marginal_error``,
        ``iterations`` (per phase), ``passes``, ``reason`` and ``result`` (the
        :class:`SinkhornResult`).
    """
    res = sinkhorn_potentials(a, b, M, reg, method=method, numItermax=numItermax,
                              stopThr=stopThr, warmstart=warmstart, **kwargs)
    P = res.plan()
    if not log:
        return P
    xp = _xp(res.f)
    info = {
        "f": res.f, "g": res.g, "log_u": res.f / res.reg, "log_v": res.g / res.reg,
        "u": xp.exp(res.f / res.reg), "v": xp.exp(res.g / res.reg),
        "err": list(res.history), "niter": res.iterations["sinkhorn"] + res.iterations["newton"],
        "cost": res.cost, "objective": res.objective, "marginal_error": res.marginal_error,
        "iterations": dict(res.iterations), "passes": res.passes, "reason": res.reason,
        "result": res,
    }
    return P, info


__all__ = ["SinkhornResult", "sinkhorn", "sinkhorn_potentials"]
