"""Stochastic estimation of a Hessian's diagonal and trace from Hessian-vector products."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Literal, Optional, Union

import numpy as np

from . import _arrays, _core
from .sparse import CSRMatrix, _is_csr, as_operator

Method = Literal["hutchinson", "xdiag", "diag++", "auto", "exact", "probing"]


class _ReusingMatmat:
    """``V -> H @ V`` for a CSRMatrix, writing into one output buffer per block shape so that
    successive probe blocks do not allocate (and first-touch) fresh memory each time."""

    def __init__(self, op: CSRMatrix) -> None:
        self.op = op
        self.out: Any = None

    def __call__(self, V: Any) -> Any:
        if self.out is None or self.out.shape != V.shape or self.out.dtype != V.dtype:
            self.out = self.op.xp.empty(V.shape, V.dtype)
        return self.op.matmat(V, self.out)


def _probe_target(H: Any, n: Optional[int], xp: Optional[ModuleType]):
    """(matmat, n, xp, dtype, device, exact diagonal or None) for the kinds of H we accept."""
    if isinstance(H, CSRMatrix) or _is_csr(H):
        op = as_operator(H)
        if op.shape[0] != op.shape[1]:
            raise ValueError(f"H must be square, got shape {op.shape}")
        dev = op.device if op.xp is not np else 0
        return _ReusingMatmat(op), op.shape[0], op.xp, op.dtype, dev, op.diagonal
    if isinstance(H, np.ndarray) or _arrays.is_device_array(H):
        mod, A = _arrays.asarray(H)
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"H must be a square matrix, got shape {A.shape}")
        dtype = _arrays.value_dtype(A.dtype)
        return (lambda V: A @ V), A.shape[0], mod, dtype, _arrays.device_id(mod, A), (
            lambda: mod.diagonal(A).astype(dtype, copy=True))
    matmat = getattr(H, "matmat", H)
    if not callable(matmat):
        raise TypeError(f"H must be a CSR matrix, a dense matrix, an operator with matmat, or a "
                        f"callable V -> H @ V; got {type(H).__name__}")
    shape = getattr(H, "shape", None)
    if n is None and shape is not None:
        n = int(shape[0])
    if n is None:
        raise ValueError("n (the size of H) is needed for a callable H")
    mod = xp or np
    dev = 0 if mod is np else mod.cuda.runtime.getDevice()
    return matmat, int(n), mod, np.dtype(np.float64), dev, None


def coloring(pattern: Any) -> tuple[np.ndarray, int]:
    """Greedy distance-1 colouring of a square sparse pattern, on the host.

    Two indices get different colours whenever either stores an entry in the other's column
    (the pattern is symmetrised first, so one triangle is enough). Returns ``(colors,
    n_colors)`` with ``colors`` an int32 NumPy array. A 5-point Laplacian gets 2 colours.
    """
    P = pattern if isinstance(pattern, CSRMatrix) else CSRMatrix.from_sparse(pattern)
    if P.xp is not np:
        raise TypeError("the colouring runs on the host: pass a host (SciPy or NumPy-backed) "
                        "pattern")
    n = P.shape[0]
    if P.shape[0] != P.shape[1]:
        raise ValueError(f"the pattern must be square, got shape {P.shape}")
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(P.indptr))
    r = np.concatenate([rows, P.indices.astype(np.int64)])
    c = np.concatenate([P.indices.astype(np.int64), rows])
    order = np.argsort(r, kind="stable")
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(r, minlength=n), out=indptr[1:])
    sym = CSRMatrix(indptr, c[order], np.ones(len(order)), (n, n), check=False)
    colors, count = sym._handle(sym.dtype).greedy_coloring()
    return colors, int(count)


_MIN_CHECK = 8  # products drawn before a target accuracy is first tested


@dataclass
class DiagEstimate:
    """Result of :func:`diag_estimate` with ``return_info=True``.

    Attributes
    ----------
    diag : ndarray
        The estimate of ``diag(H)`` (NumPy or CuPy like ``H``).
    stderr : ndarray
        Per-entry standard error of ``diag`` (zeros for the exact methods).
    num_matvecs : int
        Products with ``H`` actually spent (columns of all the blocks ``H`` was applied to).
    method : str
        The method that produced ``diag`` (for ``method='auto'``, the one it chose).
    converged : bool or None
        With a target accuracy (``rtol``/``atol``): whether it was reached within the budget;
        ``None`` when no target was set.
    """

    diag: Any
    stderr: Any
    num_matvecs: int
    method: str
    converged: Optional[bool] = None


class _Products:
    """``V -> H @ V`` with the result checked (array library, shape, real floating dtype),
    cast to the working dtype, applied in column chunks of at most ``block``, and counted."""

    def __init__(self, matmat: Callable[[Any], Any], size: int, mod: ModuleType,
                 dtype: np.dtype, block: int) -> None:
        self.matmat, self.size, self.mod, self.dtype, self.block = matmat, size, mod, dtype, block
        self.count = 0

    def raw(self, V: Any) -> Any:
        """``H @ V`` for a C-contiguous block of at most ``block`` columns; a CSR ``H`` may
        return the same buffer on the next call."""
        xp_hv, HV = _arrays.asarray(self.matmat(V))
        if xp_hv is not self.mod:
            raise TypeError("H returned an array from another library or device than the "
                            "probes; return NumPy for NumPy probes and CuPy for CuPy probes")
        if HV.shape != V.shape:
            raise ValueError(f"H returned shape {HV.shape} for a probe block of shape {V.shape}")
        if HV.dtype.kind != "f":
            raise TypeError(f"H returned dtype {HV.dtype} for a {V.dtype} probe block; it must "
                            f"return a real floating-point array")
        self.count += V.shape[1]
        return HV if HV.dtype == self.dtype else HV.astype(self.dtype)

    def __call__(self, V: Any) -> Any:
        """``H @ V`` for any ``(n, k)`` block, as a fresh array."""
        k = V.shape[1]
        out = self.mod.empty((self.size, k), self.dtype)
        for j in range(0, k, self.block):
            part = self.mod.ascontiguousarray(V[:, j:j + self.block], dtype=self.dtype)
            out[:, j:j + part.shape[1]] = self.raw(part)
        return out


@dataclass
class _Context:
    """Where and how probes are drawn and ``H`` applied, for one call."""

    apply: _Products
    size: int
    mod: ModuleType
    dtype: np.dtype
    dev: int
    ptr: int
    seed: int
    gaussian: bool = False  # standard normal probes instead of Rademacher signs

    def fill(self, Z: Any, first: int) -> None:
        """Write probes ``first .. first + Z.shape[1] - 1`` of the seed's sequence into the
        C-contiguous block ``Z`` (the same values on the CPU and the GPU)."""
        (_core.fill_gaussian if self.gaussian else _core.fill_rademacher)(
            Z, self.seed, first, self.dev, self.ptr)

    def probes(self, count: int, first: int) -> Any:
        """Probes ``first .. first + count - 1`` of the seed's sequence, as an (n, count) block."""
        Z = self.mod.empty((self.size, count), self.dtype)
        self.fill(Z, first)
        return Z

    def rms(self, x: Any) -> float:
        return float(self.mod.sqrt(self.mod.mean(x * x))) if x.size else 0.0


class _Running:
    """Per-entry running mean and sum of squared deviations of probe products ``z * w``
    (the fused ``accumulate_probe_products`` kernel)."""

    def __init__(self, c: _Context) -> None:
        self.c = c
        self.mean = c.mod.zeros(c.size, c.dtype)
        self.m2 = c.mod.zeros(c.size, c.dtype)
        self.count = 0

    def add(self, Z: Any, W: Any) -> None:
        _core.accumulate_probe_products(Z, W, self.mean, self.m2, self.count, self.c.dev,
                                        self.c.ptr)
        self.count += Z.shape[1]

    def stderr(self) -> Any:
        k = self.count
        if k < 2:
            return self.c.mod.full(self.c.size, np.inf, self.c.dtype)
        return self.c.mod.sqrt(self.m2 / (k * (k - 1)))

    def estimate(self) -> tuple[Any, Any]:
        """The running mean of ``z * w`` and its standard error."""
        return self.mean, self.stderr()


class _NormalisedRunning:
    """Per-entry normalised estimate ``sum z * w / sum z * z`` over Gaussian probes ``z``
    (Bekas, Kokiopoulou and Saad), with its standard error; same interface as
    :class:`_Running`.

    With ``w = A z`` the ratio is ``A_ii + sum_k z_ik c_ik / sum_k z_ik^2`` where ``c_ik`` is
    the off-diagonal part of row ``i`` of ``A`` applied to probe ``k``: the diagonal's own
    term cancels, which the plain mean of ``z * w`` leaves in with variance ``2 A_ii^2``. The
    standard error is the delta method's for a ratio of means: the standard deviation of the
    residuals ``z * w - d * z * z`` (from which the same term cancels) over ``sqrt(k)`` times
    the mean of ``z * z``. The sums are kept about a shift (the first block's ratio), so that
    the residuals are formed without cancellation when the diagonal dominates.
    """

    def __init__(self, c: _Context) -> None:
        self.c = c
        self.tiny = np.finfo(c.dtype).tiny.astype(c.dtype)
        self.shift: Any = None
        zeros = lambda: c.mod.zeros(c.size, c.dtype)  # noqa: E731
        self.t, self.tt, self.tw, self.w, self.ww = zeros(), zeros(), zeros(), zeros(), zeros()
        self.count = 0

    def add(self, Z: Any, W: Any) -> None:
        mod, (n, b) = self.c.mod, Z.shape
        first = self.shift is None
        if first:
            self.shift = mod.zeros(n, self.c.dtype)
        # On the host, slabs of rows small enough to stay in cache (the eight passes over an
        # n x b block cost 3x more from memory); on the GPU, one slab.
        step = max(1, _CACHE_ENTRIES // max(b, 1)) if mod is np else max(n, 1)
        for r in range(0, n, step):
            rows = slice(r, r + step)
            z = Z[rows]
            T = z * W[rows]
            w = z * z
            wsum = w.sum(axis=1)
            if first:
                self.shift[rows] = T.sum(axis=1) / mod.maximum(wsum, self.tiny)
            T -= self.shift[rows][:, None] * w  # z * w - shift * z * z
            self.t[rows] += T.sum(axis=1)
            self.tt[rows] += mod.einsum("ij,ij->i", T, T)
            self.tw[rows] += mod.einsum("ij,ij->i", T, w)
            self.w[rows] += wsum
            self.ww[rows] += mod.einsum("ij,ij->i", w, w)
        self.count += b

    def estimate(self) -> tuple[Any, Any]:
        """The normalised estimate and its standard error."""
        mod, k = self.c.mod, self.count
        if k == 0:
            return mod.zeros(self.c.size, self.c.dtype), mod.full(self.c.size, np.inf,
                                                                  self.c.dtype)
        w = mod.maximum(self.w, self.tiny)  # sums of squares: zero only for all-zero probes
        delta = self.t / w
        d = self.shift + delta
        if k < 2:
            return d, mod.full(self.c.size, np.inf, self.c.dtype)
        # sum_k (t_k - delta w_k)^2, the squared residuals about the final estimate
        ss = mod.maximum(self.tt - 2 * delta * self.tw + delta * delta * self.ww, 0)
        return d, mod.sqrt(ss / (k * (k - 1))) * (k / w)


def _accumulator(c: _Context) -> Union[_Running, _NormalisedRunning]:
    """The running estimate of ``diag(A)`` from probe products ``z * (A z)`` for ``c``'s probes:
    the plain mean for Rademacher probes (``z * z = 1``), the normalised ratio for Gaussian."""
    return _NormalisedRunning(c) if c.gaussian else _Running(c)


_CACHE_ENTRIES = 1 << 16  # entries of each host temporary of _NormalisedRunning.add

Target = Optional[tuple[float, float]]  # (rtol, atol)


def _reached(c: _Context, d: Any, stderr: Any, target: Target) -> bool:
    rtol, atol = target  # type: ignore[misc]
    return c.rms(stderr) <= atol + rtol * c.rms(d)


def _hutchinson(c: _Context, budget: int, block: int, target: Target,
                run: Optional[Union[_Running, _NormalisedRunning]] = None
                ) -> tuple[Any, Any, Optional[bool]]:
    """Hutchinson probes until ``c.apply.count`` reaches ``budget`` or the target is met.

    Probe ``j`` of the sequence is the ``j``-th probe accumulated in ``run`` (which may already
    hold probes from a pilot). Gaussian probes give the normalised estimate."""
    run = run if run is not None else _accumulator(c)
    Z = None
    while c.apply.count < budget:
        b = min(block, budget - c.apply.count)
        if Z is None or Z.shape[1] != b:
            Z = c.mod.empty((c.size, b), c.dtype)  # row-major, reused per block
        c.fill(Z, run.count)
        run.add(Z, c.apply.raw(Z))
        if target is not None and run.count >= _MIN_CHECK:
            d, se = run.estimate()
            if _reached(c, d, se, target):
                return d, se, True
    d, se = run.estimate()
    return d, se, None if target is None else _reached(c, d, se, target)


def _tall_qr(mod: ModuleType, Y: Any) -> tuple[Any, Any]:
    """``Y = Q R`` for a tall block (n >> s columns).

    CholeskyQR2: factor the Gram matrix ``YᵀY = L Lᵀ``, take ``Q = Y L⁻ᵀ``, and repeat once on
    ``Q`` to restore orthogonality to rounding level. Its work is matrix products, 4-5x faster
    than Householder QR on a 65,536 x 128 block, and as accurate while ``cond(Y)`` stays well
    below ``1/sqrt(eps)``; more ill-conditioned or rank-deficient blocks (a low-rank ``H``)
    take Householder QR.
    """
    n, s = Y.shape
    if n < 4 * s:
        return mod.linalg.qr(Y)
    Q, R = Y, None
    for _ in range(2):
        try:
            L = mod.linalg.cholesky(Q.T @ Q)
        except np.linalg.LinAlgError:
            return mod.linalg.qr(Y)
        d = mod.abs(mod.diagonal(L))
        if not bool(mod.all(mod.isfinite(L))) or float(d.min()) <= 1e-6 * float(d.max()):
            return mod.linalg.qr(Y)  # cond(Y) near 1e6 or above: not for the Gram route
        Q = Q @ mod.linalg.inv(L).T
        R = L.T if R is None else L.T @ R
    return Q, R


class _Sketch:
    """The exchangeable sketch: probes ``Om``, ``Y = H Om = Q R`` and ``Z = H Q``, grown a block
    of columns at a time (earlier columns of ``Q`` and ``Z`` are kept, so no product is
    repeated)."""

    def __init__(self, c: _Context) -> None:
        self.c = c
        self.s = 0
        self.Om: Any = None
        self.Y: Any = None
        self.Q: Any = None
        self.R: Any = None
        self.Z: Any = None

    def grow(self, b: int) -> None:
        mod = self.c.mod
        Om = self.c.probes(b, self.s)
        Y = self.c.apply(Om)
        if self.s == 0:
            Qn, R = _tall_qr(mod, Y)
        else:  # block Gram-Schmidt against the kept basis, twice for orthogonality
            C = self.Q.T @ Y
            W = Y - self.Q @ C
            C2 = self.Q.T @ W
            W -= self.Q @ C2
            Qn, Rn = _tall_qr(mod, W)
            s = self.s
            R = mod.zeros((s + b, s + b), self.c.dtype)
            R[:s, :s] = self.R
            R[:s, s:] = C + C2
            R[s:, s:] = Rn
        Zn = self.c.apply(Qn)
        if self.s == 0:
            self.Om, self.Y, self.Q, self.Z = Om, Y, mod.ascontiguousarray(Qn), Zn
        else:
            self.Om = mod.concatenate([self.Om, Om], axis=1)
            self.Y = mod.concatenate([self.Y, Y], axis=1)
            self.Q = mod.concatenate([self.Q, Qn], axis=1)
            self.Z = mod.concatenate([self.Z, Zn], axis=1)
        self.R = R
        self.s += b

    def left_out_directions(self) -> Any:
        """``S``: column ``i`` is the unit vector of ``range(R)`` orthogonal to every column of
        ``R`` but the ``i``-th, so that ``Q (I - s_i s_i^T) Q^T`` projects onto the range of
        ``Y`` without its ``i``-th column.

        These are the normalised columns of ``R^-T = U diag(1 / sigma) V^T``. Singular values
        are floored at ``eps * sigma_max`` instead of being dropped: when ``Y`` is rank
        deficient (``H`` of rank below ``s``), ``s_i`` must then point along the directions
        ``Y`` does not reach, which only the largest weights ``1 / sigma`` give.
        """
        mod = self.c.mod
        U, sigma, Vt = mod.linalg.svd(self.R)
        tiny = np.finfo(self.c.dtype).tiny
        floor = mod.maximum(sigma[:1] * np.finfo(self.c.dtype).eps, tiny)
        kept = mod.maximum(sigma, floor)
        S = (U * (kept[-1:] / kept)) @ Vt  # scaled by sigma_min: weights in (0, 1]
        norms = mod.linalg.norm(S, axis=0)
        return S / mod.where(norms > 0, norms, 1)


_ROWS_ENTRIES = 1 << 22  # entries of each (rows, s) temporary when XDiag's rows are combined


def _xdiag_estimate(sk: _Sketch) -> tuple[Any, Any]:
    """XDiag's estimate of ``diag(H)`` and its per-entry standard error.

    The ``s`` exchangeable estimates: estimate ``i`` deflates ``H`` by the projector ``P_i``
    onto the range of ``H Om`` without probe ``i``, ``diag(H P_i) + om_i * (H (I - P_i)
    om_i)``. Since ``P_i`` does not depend on ``om_i``, each is unbiased, for any square ``H``,
    and only products with ``H`` are used. With Rademacher probes the estimate is their mean,
    the standard error their standard deviation over ``sqrt(s)``.

    With Gaussian probes, entry ``j`` is instead the normalised ratio ``sum_i v_ij / sum_i
    om_ij^2`` with ``v_ij = om_ij^2 diag(H P_i)_j + om_ij (H (I - P_i) om_i)_j``: the mean of
    the ``s`` estimates weighted by ``om_ij^2``. It equals ``H_jj + sum_i om_ij c_ij / sum_i
    om_ij^2``, ``c_ij`` being the off-diagonal part of row ``j`` of ``H (I - P_i)`` applied
    to ``om_i``: the residual's diagonal cancels (the plain mean would keep it, with variance
    ``2 (H (I - P_i))_jj^2`` per probe), and flipping the sign of ``om_ij`` alone flips
    term ``i`` and leaves ``c_ij``, ``P_i`` and the denominator alone, so the estimate stays
    exactly unbiased. Its standard error is the delta method's for the ratio: the standard
    deviation of ``v_ij - d_j om_ij^2`` over ``sqrt(s)`` times the mean of ``om_ij^2``
    (with ``om_ij^2 = 1`` this is the Rademacher formula).

    Every term is row-local, so the (n, s) values are formed a slab of rows at a time, which
    bounds the temporaries' memory.
    """
    mod, n, s = sk.c.mod, sk.c.size, sk.s
    S = sk.left_out_directions()
    W = sk.Q.T @ sk.Om
    c = mod.sum(S * W, axis=0)  # s_i^T Q^T om_i
    d = mod.empty(n, sk.c.dtype)
    se = mod.empty(n, sk.c.dtype)
    step = max(1, _ROWS_ENTRIES // max(s, 1))
    for r in range(0, n, step):
        rows = slice(r, r + step)
        Q, Z, Om = sk.Q[rows], sk.Z[rows], sk.Om[rows]
        ZS = Z @ S
        if not sk.c.gaussian:
            vals = (Om * (sk.Y[rows] - Z @ W + ZS * c) - ZS * (Q @ S)
                    + mod.sum(Z * Q, axis=1)[:, None])  # diag(H Q Q^T) in the last term
            mean = vals.mean(axis=1)
            vals -= mean[:, None]
            d[rows] = mean
            se[rows] = mod.sqrt(mod.sum(vals * vals, axis=1) / (s * (s - 1)))
            continue
        w = Om * Om
        vals = (Om * (sk.Y[rows] - Z @ W + ZS * c)  # om_i * H (I - P_i) om_i
                + w * (mod.sum(Z * Q, axis=1)[:, None] - ZS * (Q @ S)))  # om_i^2 diag(H P_i)
        wsum = mod.sum(w, axis=1)
        wsum = mod.maximum(wsum, np.finfo(sk.c.dtype).tiny.astype(sk.c.dtype))
        ratio = mod.sum(vals, axis=1) / wsum
        vals -= ratio[:, None] * w
        d[rows] = ratio
        se[rows] = mod.sqrt(mod.sum(vals * vals, axis=1) / (s * (s - 1))) * (s / wsum)
    return d, se


def _xdiag(c: _Context, budget: int, block: int, target: Target,
           sk: Optional[_Sketch] = None) -> tuple[Any, Any, Optional[bool]]:
    """XDiag with ``budget // 2`` sketch columns (two products each), grown ``block // 2``
    columns at a time when a target accuracy is set."""
    sk = sk if sk is not None else _Sketch(c)
    s_max = budget // 2
    step = s_max if target is None else max(2, block // 2)
    while True:
        if sk.s < s_max:
            sk.grow(min(s_max - sk.s, step if sk.s else max(step, _MIN_CHECK // 2)))
        d, se = _xdiag_estimate(sk)
        if target is None:
            return d, se, None
        if _reached(c, d, se, target):
            return d, se, True
        if sk.s >= s_max:
            return d, se, False


def _diagpp(c: _Context, budget: int, block: int, target: Target) -> tuple[Any, Any, Optional[bool]]:
    """Diag++: a third of the budget sketches ``Q`` (orthonormal basis of ``H S``), a third
    gives ``diag(H Q Q^T)`` exactly, and Hutchinson probes ``g`` estimate the rest,
    ``diag(H (I - Q Q^T))``, from ``g * H (I - Q Q^T) g`` (normalised by ``g * g`` for
    Gaussian probes)."""
    s = budget // 3
    Q, _ = _tall_qr(c.mod, c.apply(c.probes(s, 0)))
    base = c.mod.sum(c.apply(Q) * Q, axis=1)
    run = _accumulator(c)

    def result() -> tuple[Any, Any]:
        rest, se = run.estimate()
        return base + rest, se

    while c.apply.count < budget:
        b = min(block, budget - c.apply.count)
        G = c.probes(b, s + run.count)
        run.add(G, c.apply.raw(G - Q @ (Q.T @ G)))
        if target is not None and run.count >= _MIN_CHECK:
            d, se = result()
            if _reached(c, d, se, target):
                return d, se, True
    d, se = result()
    return d, se, None if target is None else _reached(c, d, se, target)


def _auto(c: _Context, budget: int, block: int, target: Target) -> tuple[Any, Any, Optional[bool], str]:
    """Pilot an XDiag sketch of ``s0`` columns (``2 s0`` products), compare its error estimate
    with Hutchinson's at the same cost, predicted from the sample variance of the pilot's own
    ``s0`` probes, and spend the rest of the budget on the better one."""
    if budget < _AUTO_MIN:
        return (*_hutchinson(c, budget, block, target), "hutchinson")
    s0 = min(_AUTO_PILOT_MAX, max(_MIN_CHECK // 2, budget // 8))
    sk = _Sketch(c)
    sk.grow(s0)
    run = _accumulator(c)
    run.add(sk.Om, sk.Y)  # the pilot's probes are Hutchinson probes 0 .. s0 - 1
    d_x, se_x = _xdiag_estimate(sk)
    d_h, se_h = run.estimate()
    deflate = c.rms(se_x) < c.rms(se_h) / np.sqrt(2.0)
    if target is not None:  # the pilot alone may be enough
        if deflate and _reached(c, d_x, se_x, target):
            return d_x, se_x, True, "xdiag"
        if not deflate and _reached(c, d_h, se_h, target):
            return d_h, se_h, True, "hutchinson"
    if deflate:
        return (*_xdiag(c, budget, block, target, sk), "xdiag")
    return (*_hutchinson(c, budget, block, target, run), "hutchinson")


_AUTO_MIN = 16  # below this budget, method='auto' is Hutchinson
_AUTO_PILOT_MAX = 32  # largest pilot sketch of method='auto' (64 products)


def diag_estimate(
    H: Any,
    *,
    num_matvecs: Optional[int] = None,
    method: Method = "hutchinson",
    probes: Literal["rademacher", "gaussian"] = "rademacher",
    block: Optional[int] = None,
    seed: int = 0,
    return_stderr: bool = False,
    rtol: Optional[float] = None,
    atol: Optional[float] = None,
    return_info: bool = False,
    n: Optional[int] = None,
    xp: Optional[ModuleType] = None,
    pattern: Any = None,
    stream: Any = None,
) -> Union[Any, tuple[Any, Any], DiagEstimate]:
    """Estimate ``diag(H)`` from products of ``H`` with random probe blocks.

    Parameters
    ----------
    H : CSR matrix, dense matrix, operator or callable
        ``curvkit.CSRMatrix`` or a SciPy/CuPy CSR matrix; a dense NumPy/CuPy square array; an
        object with ``matmat(V)``; or a callable ``V -> H @ V`` taking an ``(n, k)`` block (a
        PyTorch or JAX HVP wrapped to take and return NumPy or CuPy arrays). It must return a
        real floating-point array of shape ``(n, k)`` from the same library as ``V``.
    num_matvecs : int
        Products with ``H`` to spend at most (the columns of all the blocks ``H`` is applied
        to). Not used by ``'exact'`` and ``'probing'``.
    method : {'hutchinson', 'xdiag', 'diag++', 'auto', 'exact', 'probing'}
        ``'hutchinson'``: the mean of ``z * (H z)`` over probes ``z``; unbiased, with variance
        ``sum_{j != i} H_ij^2 / num_matvecs`` per entry for Rademacher probes.

        ``'xdiag'``: exchangeable low-rank deflation (Epperly, Tropp and Webber, 2024). Half
        the products sketch ``Y = H Om`` with ``s = num_matvecs // 2`` probes and ``Q R =
        Y``; the other half give ``Z = H Q``. For each probe ``i``, the projector
        ``P_i`` onto the range of ``Y`` without its ``i``-th column yields the unbiased
        estimate ``diag(H P_i) + om_i * (H (I - P_i) om_i)``, at no further product; the
        result is the mean of these ``s`` estimates (weighted by ``om_i * om_i`` for
        Gaussian probes, see ``probes``), and their spread gives the standard error. What is left to chance is only the off-diagonal mass of ``H (I - P_i)``,
        the part of ``H`` the sketch misses. Needs ``num_matvecs >= 4``.

        ``'diag++'``: a third of the products sketch an orthonormal basis ``Q`` of
        ``H S``, a third give ``diag(H Q Q^T)`` exactly, and the last third are Hutchinson
        probes of ``H (I - Q Q^T)``. Needs ``num_matvecs >= 3``.

        ``'auto'``: spend a pilot of ``2 s0`` products on an XDiag sketch (``s0 =
        min(32, max(4, num_matvecs // 8))``), and keep XDiag if its standard error is below
        Hutchinson's at the same cost (predicted from the sample variance of the pilot's
        own ``s0`` probes, divided by ``sqrt(2)``); otherwise continue Hutchinson from those
        ``s0`` probes (the ``s0`` products with ``Q`` are then lost). Below 16 products it is
        Hutchinson. :class:`DiagEstimate` tells which method was used.

        ``'exact'``: read the diagonal of an explicit (CSR or dense) ``H``: exact, and costs
        no products. ``'probing'``: exact for any ``H`` whose sparsity pattern is known
        (``pattern``, or the pattern of a host CSR ``H``): colour the pattern (see
        :func:`coloring`) and multiply by one indicator vector per colour, so ``n_colors``
        products (2 for a 5-point Laplacian) give the diagonal exactly.
    probes : {'rademacher', 'gaussian'}
        Probe distribution, for every random method (the same probes serve as the sketch's
        test matrix and as the residual's probes). Rademacher (±1) probes are the default
        and give the least variance for the diagonal part. Gaussian probes use the
        normalised (Bekas) estimator ``sum z * Hz / sum z * z``, which cancels the
        diagonal's own term (unnormalised Gaussian products would add ``2 H_ii^2 /
        num_matvecs`` to the variance); what is left, ``sum_{j != i} H_ij^2 / (num_matvecs -
        2)`` for Hutchinson, is still a little above Rademacher's ``/ num_matvecs``, and its
        tails are heavier. XDiag weights its ``s`` estimates by ``om_ij^2`` in the same way
        and Diag++ normalises its residual probes; both stay exactly unbiased. What Gaussian
        probes buy is a rotation-invariant sketch: ``H Om`` has the same distribution in
        every orthonormal basis, so the deflated methods' accuracy depends on the spectrum
        of ``H`` only. Sign probes depend on the basis: one is exactly orthogonal to a sparse
        direction such as ``e_1 - e_2`` with probability 1/2, so a small sketch can miss a
        dominant direction (``H`` of rank 5 with such eigenvectors: XDiag with 12 products
        is exact for 11% of seeds with Rademacher probes, for all with Gaussian ones).
        Prefer Rademacher for the diagonal's variance, Gaussian when ``H``'s dominant
        eigenvectors may be sparse or aligned with the coordinates; on a power-law
        spectrum with delocalised eigenvectors the two give the same accuracy to a few
        per cent.
    block : int, optional
        Columns per product call (default ``min(num_matvecs, 32)``); a CSR ``H`` is read once
        per block. With a target accuracy, the deflated methods also grow their sketch by
        ``block // 2`` columns (XDiag) or draw Hutchinson probes ``block`` at a time.
    seed : int
        Probe sequence. The probes come from a counter-based generator keyed by the seed, so a
        seed gives the same probes on the CPU and the GPU and for any block size.
    return_stderr : bool
        Also return the per-entry standard error of the estimate. Hutchinson and Diag++: the
        sample standard deviation of the probe products divided by ``sqrt(k)`` (``k`` probes).
        XDiag: the standard deviation of its ``s`` exchangeable estimates divided by
        ``sqrt(s)`` (a jackknife-style estimate: the ``s`` estimates share the sketch and
        are not independent, so it is a guide, good to a small factor, not a bound). With
        Gaussian probes the estimates are ratios and the same spreads are taken of the
        residuals ``z * Hz - d * z * z`` (delta method), divided by the mean of ``z * z``.
    rtol, atol : float, optional
        Target accuracy: stop drawing probes once the root-mean-square standard error is at
        most ``atol + rtol * rms(estimate)``, ``num_matvecs`` being the budget. Tested after
        each block, once 8 products are spent. ``return_info=True`` reports the products
        used and whether the target was reached.
    return_info : bool
        Return a :class:`DiagEstimate` (estimate, standard error, products used, method,
        convergence) instead of an array or a tuple.
    n, xp : optional
        For a callable ``H``: its size, and ``numpy`` (default) or ``cupy`` for where probes
        are made.
    pattern : host CSR matrix, optional
        For ``method='probing'``: a pattern containing every stored entry of ``H`` (one
        triangle is enough). Needed unless ``H`` is a host CSR matrix; the colouring runs on the
        host and the colours are then copied to the GPU for a CuPy ``H``.
    stream : optional
        GPU stream (CuPy stream or raw pointer); default CuPy's current stream.

    Returns
    -------
    d : ndarray
        The estimate, NumPy or CuPy like ``H``.
    stderr : ndarray
        Only with ``return_stderr``.
    info : DiagEstimate
        Instead of both, with ``return_info``.

    Notes
    -----
    All the n-sized work runs in the array library of ``H`` (NumPy, or CuPy on the GPU); the
    deflated methods' small dense algebra (QR of an ``n x s`` block, an ``s x s``
    SVD) goes through ``xp.linalg``.

    When deflation helps: Hutchinson's error is set by all the off-diagonal mass of ``H``; the
    deflated methods' by the off-diagonal mass of what their sketch misses. When ``H`` has a
    few large eigenvalues, or a decaying (power-law) spectrum, a sketch of ``s`` columns
    captures most of that mass and the error falls much faster than ``1 / sqrt(num_matvecs)``
    (XDiag about 2,500x below Hutchinson on ``Q diag(i^-2) Q^T``, n = 2000, 512 products).
    When it hurts: on a diagonally dominant ``H``, or one with a flat spectrum (a sparse
    Laplacian, a random sparse matrix), no low-rank part holds the off-diagonal mass; the
    sketch then spends half (XDiag) or two thirds (Diag++) of the products for little, and the
    error is 1.5-2x Hutchinson's. Rule: use Hutchinson for sparse, diagonally dominant or
    flat-spectrum ``H``, XDiag when a few directions dominate (Hessians of trained networks
    often do), ``'probing'`` when the sparsity pattern is known, or ``'auto'`` to decide from
    a pilot.

    Hutchinson, XDiag and Diag++ are unbiased for any square ``H``, with either kind of
    probes, and need no transposed products: for a non-symmetric ``H`` the deflated methods
    project on the right (``H P``) while sketching the range of ``H``, so they reduce the
    variance much only when the dominant ranges of ``H`` and ``H^T`` are close (as for a
    symmetric ``H``).
    """
    methods = ("hutchinson", "xdiag", "diag++", "auto", "exact", "probing")
    if method not in methods:
        raise ValueError(f"method must be one of {', '.join(map(repr, methods))}; got {method!r}")
    if probes not in ("rademacher", "gaussian"):
        raise ValueError(f"probes must be 'rademacher' or 'gaussian', got {probes!r}")
    target = _target(rtol, atol)
    matmat, size, mod, dtype, dev, exact = _probe_target(H, n, xp)

    def out(d: Any, se: Any, used: int, name: str, converged: Optional[bool]) -> Any:
        if return_info:
            return DiagEstimate(d, se, used, name, converged)
        return (d, se) if return_stderr else d

    if method == "exact":
        if exact is None:
            raise ValueError("method='exact' needs an explicit H (CSR or dense matrix)")
        d = exact()
        return out(d, mod.zeros_like(d), 0, method, None if target is None else True)
    if method == "probing":
        d, used = _probing(H, pattern, matmat, size, mod, dtype, dev)
        return out(d, mod.zeros_like(d), used, method, None if target is None else True)
    if num_matvecs is None or int(num_matvecs) < 1:
        raise ValueError(f"num_matvecs must be a positive integer, got {num_matvecs!r}")
    num_matvecs = int(num_matvecs)
    least = {"xdiag": 4, "diag++": 3}.get(method, 1)
    if num_matvecs < least:
        raise ValueError(f"method={method!r} needs num_matvecs >= {least}, got {num_matvecs}")
    block = min(num_matvecs, 32) if block is None else int(block)
    if block < 1:
        raise ValueError(f"block must be positive, got {block}")
    if not 0 <= int(seed) < 2**64:
        raise ValueError("seed must be in [0, 2**64)")
    with _arrays.on_stream(mod is not np, stream) as s, _arrays.on_device(mod, dev):
        c = _Context(_Products(matmat, size, mod, dtype, block), size, mod, dtype, dev,
                     _arrays.stream_pointer(mod, s), int(seed), probes == "gaussian")
        if method == "hutchinson":
            d, se, conv = _hutchinson(c, num_matvecs, block, target)
        elif method == "xdiag":
            d, se, conv = _xdiag(c, num_matvecs, block, target)
        elif method == "diag++":
            d, se, conv = _diagpp(c, num_matvecs, block, target)
        else:
            d, se, conv, method = _auto(c, num_matvecs, block, target)  # type: ignore[assignment]
        return out(d, se, c.apply.count, method, conv)


def _target(rtol: Optional[float], atol: Optional[float]) -> Target:
    if rtol is None and atol is None:
        return None
    r, a = float(rtol or 0.0), float(atol or 0.0)
    if not (r >= 0 and a >= 0 and np.isfinite(r) and np.isfinite(a)) or r == a == 0:
        raise ValueError(f"rtol and atol must be non-negative and finite, not both zero; got "
                         f"rtol={rtol!r}, atol={atol!r}")
    return r, a


def diag_sample(
    H: Any,
    *,
    step: int,
    num_probes: int = 1,
    seed: int = 0,
    group_size: Optional[int] = None,
    n: Optional[int] = None,
    xp: Optional[ModuleType] = None,
    stream: Any = None,
) -> Any:
    """One fresh sample of ``z * (H z)`` for an optimiser step, an unbiased estimate of
    ``diag(H)``.

    Optimisers that keep their own moving average of the Hessian diagonal (AdaHessian, Sophia)
    call this once per step: step ``t`` uses Rademacher probes ``t * num_probes`` to ``(t + 1)
    * num_probes - 1`` of the seed's sequence, so no two steps share a probe, and the same
    ``(seed, step)`` gives the same probes on the CPU and the GPU.

    Parameters
    ----------
    H : CSR matrix, dense matrix, operator or callable
        As for :func:`diag_estimate`.
    step : int
        The optimiser's step counter (``>= 0``).
    num_probes : int
        Probes averaged in this sample (one product each, applied as one block).
    seed : int
        Probe sequence.
    group_size : int, optional
        Average the sample over consecutive groups of this many entries and give each entry
        its group's mean (AdaHessian's spatial averaging, e.g. over a convolution kernel's
        entries); a last, shorter group is averaged on its own.
    n, xp, stream : optional
        As for :func:`diag_estimate`.

    Returns
    -------
    ndarray
        ``mean_z z * (H z)``, length ``n``, NumPy or CuPy like ``H``.
    """
    if int(num_probes) < 1:
        raise ValueError(f"num_probes must be a positive integer, got {num_probes!r}")
    if int(step) < 0:
        raise ValueError(f"step must be non-negative, got {step!r}")
    if group_size is not None and int(group_size) < 1:
        raise ValueError(f"group_size must be a positive integer, got {group_size!r}")
    if not 0 <= int(seed) < 2**64:
        raise ValueError("seed must be in [0, 2**64)")
    k = int(num_probes)
    matmat, size, mod, dtype, dev, _ = _probe_target(H, n, xp)
    with _arrays.on_stream(mod is not np, stream) as s, _arrays.on_device(mod, dev):
        c = _Context(_Products(matmat, size, mod, dtype, k), size, mod, dtype, dev,
                     _arrays.stream_pointer(mod, s), int(seed))
        run = _Running(c)
        Z = c.probes(k, int(step) * k)
        run.add(Z, c.apply.raw(Z))
        d = run.mean
        if group_size is None or int(group_size) == 1 or size == 0:
            return d
        g = int(group_size)
        full = size - size % g
        out = mod.empty_like(d)
        if full:
            out[:full].reshape(-1, g)[...] = d[:full].reshape(-1, g).mean(axis=1, keepdims=True)
        if full < size:
            out[full:] = d[full:].mean()
        return out


def _probing(H: Any, pattern: Any, matmat: Callable[[Any], Any], size: int, mod: ModuleType,
             dtype: np.dtype, dev: int) -> tuple[Any, int]:
    """The exact diagonal from one indicator product per colour, and the products used."""
    if pattern is None:
        host_csr = isinstance(H, CSRMatrix) and H.xp is np or _is_csr(H) and not \
            _arrays.is_device_array(H.data)
        if not host_csr:
            raise ValueError("method='probing' needs pattern= (a host CSR matrix holding the "
                             "sparsity of H) unless H is a host CSR matrix")
        pattern = H
    colors, count = coloring(pattern)
    if colors.shape[0] != size:
        raise ValueError(f"pattern has {colors.shape[0]} rows, H has {size}")
    with _arrays.on_device(mod, dev):
        c = mod.asarray(colors)  # the one host-to-device copy this method makes, n int32
        V = mod.zeros((size, max(count, 1)), dtype)
        rows = mod.arange(size)
        V[rows, c] = 1
        HV = _Products(matmat, size, mod, dtype, V.shape[1]).raw(V)
        d = HV[rows, c].astype(dtype, copy=True)
        return d, V.shape[1]


def trace_estimate(
    H: Any,
    *,
    num_matvecs: int,
    method: Literal["hutchinson", "hutch++", "xtrace"] = "hutch++",
    probes: Literal["rademacher", "gaussian"] = "rademacher",
    seed: int = 0,
    return_stderr: bool = False,
    n: Optional[int] = None,
    xp: Optional[ModuleType] = None,
    stream: Any = None,
) -> Union[float, tuple[float, float]]:
    """Estimate ``trace(H)`` from ``num_matvecs`` products with ``H`` (same kinds of ``H`` as
    :func:`diag_estimate`), with Rademacher or Gaussian probes of the seed's sequence.

    Parameters
    ----------
    H : CSR matrix, dense matrix, operator or callable
        As for :func:`diag_estimate`.
    num_matvecs : int
        Products with ``H`` to spend.
    method : {'hutchinson', 'hutch++', 'xtrace'}
        ``'hutchinson'``: the mean of ``z^T H z`` over ``num_matvecs`` probes. ``'hutch++'``: a
        third of the products sketch the range of ``H`` (``Q`` from a QR of ``H S``), the
        trace on that range is taken exactly (another third), and Hutchinson's estimator
        handles the rest of ``H`` with the last third (needs ``num_matvecs >= 3``).
        ``'xtrace'`` (Epperly, Tropp and Webber, 2024): ``s = num_matvecs // 2`` probes
        ``Om`` give ``Y = H Om = Q R`` and ``H Q``; for each probe ``i``, the projector
        ``P_i`` onto the range of ``Y`` without its ``i``-th column gives the unbiased
        estimate ``trace(P_i H P_i) + om_i^T (I - P_i) H (I - P_i) om_i``, and the result is
        their mean: every product serves both the sketch and the residual (needs
        ``num_matvecs >= 4``). When ``H``'s spectrum decays, the deflated methods' error
        falls like ``1 / num_matvecs`` or faster instead of ``1 / sqrt(num_matvecs)``; on a
        flat spectrum they lose a small factor to Hutchinson.
    probes : {'rademacher', 'gaussian'}
        Probe distribution, for the sketch and the residual alike; the estimators are the
        standard, unnormalised ones, unbiased either way. Per probe, ``z^T A z`` has variance
        ``2 sum_{i != j} A_ij^2`` for Rademacher probes and ``2 ||A||_F^2`` for Gaussian ones
        (symmetric ``A``; ``A`` is ``H``, or for the deflated methods the part of ``H`` the
        sketch misses): Rademacher is never worse, and much better when the diagonal of
        ``A`` carries much of its mass. Gaussian probes make the sketch rotation-invariant
        (its accuracy depends on the spectrum of ``H`` only).
    seed : int
        Probe sequence.
    return_stderr : bool
        Also return a standard error: the sample standard deviation of the per-probe
        estimates divided by ``sqrt(count)`` (for ``'hutch++'``, of the residual probes; for
        ``'xtrace'``, of its ``s`` exchangeable estimates, which share the sketch, so it is a
        guide rather than a bound).
    n, xp, stream : optional
        As for :func:`diag_estimate`.

    Returns
    -------
    float, or (float, float) with ``return_stderr``
    """
    if method not in ("hutchinson", "hutch++", "xtrace"):
        raise ValueError(f"method must be 'hutchinson', 'hutch++' or 'xtrace', got {method!r}")
    least = {"hutchinson": 1, "hutch++": 3, "xtrace": 4}[method]
    if num_matvecs is None or int(num_matvecs) < least:
        raise ValueError(f"method={method!r} needs num_matvecs >= {least}, got {num_matvecs!r}")
    if probes not in ("rademacher", "gaussian"):
        raise ValueError(f"probes must be 'rademacher' or 'gaussian', got {probes!r}")
    if not 0 <= int(seed) < 2**64:
        raise ValueError("seed must be in [0, 2**64)")
    m = int(num_matvecs)
    matmat, size, mod, dtype, dev, _ = _probe_target(H, n, xp)
    with _arrays.on_stream(mod is not np, stream) as s, _arrays.on_device(mod, dev):
        c = _Context(_Products(matmat, size, mod, dtype, min(m, 32)), size, mod, dtype, dev,
                     _arrays.stream_pointer(mod, s), int(seed), probes == "gaussian")
        if method == "hutchinson":
            vals = _probe_quadratic_forms(c, m, 0, None)
            base = 0.0
        elif method == "hutch++":
            third = m // 3
            Q, _ = _tall_qr(mod, c.apply(c.probes(third, 0)))
            base = float(mod.sum(Q * c.apply(Q)))  # trace(Q^T H Q)
            vals = _probe_quadratic_forms(c, m - 2 * third, third, Q)
        else:
            sk = _Sketch(c)
            sk.grow(m // 2)
            vals = _xtrace_values(sk)
            base = 0.0
        k = vals.shape[0]
        est = base + float(vals.mean())
        se = float(vals.std(ddof=1)) / np.sqrt(k) if k > 1 else float("inf")
        return (est, se) if return_stderr else est


def _probe_quadratic_forms(c: _Context, count: int, first: int, Q: Any) -> Any:
    """``g^T (I - Q Q^T) H (I - Q Q^T) g`` (``g^T H g`` without ``Q``) for probes ``first ..
    first + count - 1``, drawn and applied a block at a time."""
    out = []
    done = 0
    while done < count:
        b = min(c.apply.block, count - done)
        G = c.probes(b, first + done)
        if Q is not None:
            G = G - Q @ (Q.T @ G)
        out.append(c.mod.sum(G * c.apply.raw(G), axis=0))
        done += b
    return c.mod.concatenate(out)


def _xtrace_values(sk: _Sketch) -> Any:
    """The ``s`` exchangeable trace estimates ``trace(H P_i) + u_i^T H u_i`` with ``u_i = (I -
    P_i) om_i``, from the sketch's small matrices and one n-sized reduction."""
    mod = sk.c.mod
    S = sk.left_out_directions()
    B = sk.Q.T @ sk.Z  # Q^T H Q
    W = sk.Q.T @ sk.Om
    T = sk.Z.T @ sk.Om  # Q^T H^T Om
    V = W - S * mod.sum(S * W, axis=0)  # Q^T P_i om_i, column i
    return (mod.trace(B) - mod.sum(S * (B @ S), axis=0) + mod.sum(sk.Om * sk.Y, axis=0)
            - mod.sum(T * V, axis=0) - mod.sum(V * sk.R, axis=0) + mod.sum(V * (B @ V), axis=0))
