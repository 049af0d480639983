"""Conjugate gradient with SciPy's signature, a richer result object, and fused CPU/GPU kernels."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Optional

import numpy as np

from . import _arrays, _core
from .sparse import CSRMatrix, as_operator

_REASONS = {1: "converged", 2: "maxiter", 3: "breakdown"}


@dataclass(frozen=True)
class CGResult:
    """Outcome of :func:`cg_solve`.

    For a single right-hand side ``b`` of shape ``(n,)`` the per-column fields are scalars;
    for a block ``(n, k)`` they are NumPy arrays of ``k`` entries (``reason``: a list).

    Attributes
    ----------
    x : ndarray
        The solution, NumPy or CuPy like ``b``, of the shape of ``b``.
    converged : bool or ndarray of bool
        ``||r|| < tolerance`` was reached (``r`` the recursively updated residual, as SciPy).
    iterations : int or ndarray
        Iterations (products with ``A``) done for each column before it stopped.
    residual_norm : float or ndarray
        ``||r||`` of the recursively updated residual when the column stopped.
    true_residual_norm : float or ndarray
        ``||b - A x||`` recomputed from the returned ``x``: the honest figure.
    tolerance : float or ndarray
        ``max(atol, rtol * ||b||)``.
    reason : str or list of str
        ``'converged'``, ``'maxiter'`` or ``'breakdown'`` (``p^T A p <= 0``, ``r^T M r <= 0``
        or a non-finite value: ``A`` or ``M`` is not symmetric positive definite).
    history : ndarray
        Residual norms ``||r||`` after each iteration, starting with the initial residual:
        ``(iterations + 1,)`` or ``(max iterations + 1, k)`` (NaN once a column has stopped),
        on the host. Empty when ``history=False``.
    """

    x: Any
    converged: Any
    iterations: Any
    residual_norm: Any
    true_residual_norm: Any
    tolerance: Any
    reason: Any
    history: np.ndarray

    @property
    def info(self) -> int:
        """SciPy's code: 0 converged, > 0 the iterations done without converging, < 0 breakdown."""
        reasons = [self.reason] if isinstance(self.reason, str) else list(self.reason)
        if all(r == "converged" for r in reasons):
            return 0
        if any(r == "breakdown" for r in reasons):
            return -1
        return int(np.max(self.iterations))


# ---- operators ------------------------------------------------------------------------------


def _is_sparse(A: Any) -> bool:
    module = type(A).__module__
    sparse_module = module.startswith("scipy.sparse") or module.startswith("cupyx.scipy.sparse")
    return sparse_module and hasattr(A, "format")  # not their LinearOperators


class _Operator:
    """How the loop multiplies by ``A``: a curvkit CSR matrix (kernels in C++), or a Python
    callable writing ``A @ v`` into the work block."""

    def __init__(self, A: Any) -> None:
        self.csr: Optional[CSRMatrix] = None
        self.dense: Any = None
        self.fn: Optional[Callable[[Any], Any]] = None
        self.matmat: Optional[Callable[[Any], Any]] = None
        self.xp: Optional[ModuleType] = None
        if isinstance(A, CSRMatrix) or _is_sparse(A):
            if _is_sparse(A) and getattr(A, "format", None) != "csr":
                A = A.tocsr()  # same device; other sparse formats have no CSR arrays to wrap
            self.csr = as_operator(A)
            self.xp = self.csr.xp
            self.shape = self.csr.shape
            self.dtype = self.csr.dtype
        elif isinstance(A, np.ndarray) or _arrays.is_device_array(A):
            self.xp, self.dense = _arrays.asarray(A)
            if self.dense.ndim != 2:
                raise ValueError(f"a dense A must be 2-D, got shape {self.dense.shape}")
            self.shape = self.dense.shape
            self.dtype = self.dense.dtype
        elif hasattr(A, "matvec") and hasattr(A, "shape"):
            self.fn = A.matvec
            self.matmat = getattr(A, "matmat", None)
            self.shape = tuple(A.shape)
            self.dtype = np.dtype(getattr(A, "dtype", None) or np.float64)
        elif callable(A):
            self.fn = A
            self.shape = None  # taken from b
            self.dtype = None
        else:
            raise TypeError(
                "A must be a CSR matrix (curvkit, scipy.sparse, cupyx), a dense array, a "
                f"LinearOperator or a callable v -> A @ v; got {type(A).__name__}"
            )

    def diagonal(self, dtype: np.dtype) -> Any:
        if self.csr is not None:
            return self.csr.diagonal().astype(dtype, copy=False)
        if self.dense is not None:
            return self.xp.ascontiguousarray(self.xp.diagonal(self.dense), dtype=dtype)
        raise TypeError(
            "M='jacobi' needs the diagonal of A, which an operator or callable does not give; "
            "pass M as an array holding 1 / diag(A)"
        )


def _preconditioner(M: Any, op: _Operator, xp: ModuleType, n: int, dtype: np.dtype) -> tuple:
    """(inverse diagonal array or None, callable r -> M r or None)."""
    if M is None:
        return None, None
    if isinstance(M, str):
        if M != "jacobi":
            raise ValueError(f"M must be None, 'jacobi', an array or an operator; got {M!r}")
        d = op.diagonal(dtype)
        if not bool(xp.all(d > 0)) or not bool(xp.all(xp.isfinite(d))):
            raise ValueError("M='jacobi' needs a positive, finite diagonal of A (A is not SPD)")
        return xp.ascontiguousarray(1 / d, dtype=dtype), None
    if _is_sparse(M) or isinstance(M, CSRMatrix):
        return None, lambda r: M @ r
    if isinstance(M, np.ndarray) or _arrays.is_device_array(M):
        xp_m, inv = _arrays.asarray(M)
        _arrays.namespace(xp, xp_m)
        if inv.shape == (n, n):  # a dense approximation of A^-1
            return None, lambda r: inv @ r
        if inv.shape != (n,):
            raise ValueError(f"an array M is the inverse diagonal ({n},) or a matrix ({n}, {n}); "
                             f"got shape {inv.shape}")
        if not bool(xp.all(xp.isfinite(inv))):
            raise ValueError("M contains NaN or Inf")
        return xp.ascontiguousarray(inv, dtype=dtype), None
    apply = getattr(M, "matmat", None) or getattr(M, "matvec", None)
    if apply is None and callable(M):
        apply = M
    if apply is None:
        raise TypeError(f"M must be None, 'jacobi', an array or an operator; got {type(M).__name__}")
    return None, apply


def _check_finite(xp: ModuleType, name: str, a: Any) -> None:
    if a.dtype.kind == "f" and not bool(xp.all(xp.isfinite(a))):
        raise ValueError(f"{name} contains NaN or Inf")


def _write(dst: Any, value: Any, what: str) -> None:
    """Copy an operator's result into a work block, checking what it returned."""
    if value is None or not hasattr(value, "shape"):
        raise TypeError(f"{what} must return an array, got {type(value).__name__}")
    if value.size != dst.size:
        raise ValueError(f"{what} returned shape {value.shape}, expected {dst.shape}")
    if value.dtype.kind not in "fiu":
        raise TypeError(f"{what} returned dtype {value.dtype}, expected a real floating type")
    dst[...] = value.reshape(dst.shape)


# ---- solver ---------------------------------------------------------------------------------


def cg_solve(
    A: Any,
    b: Any,
    x0: Any = None,
    *,
    rtol: float = 1e-5,
    atol: float = 0.0,
    maxiter: Optional[int] = None,
    M: Any = None,
    callback: Optional[Callable[[Any], None]] = None,
    history: bool = True,
    check_every: Optional[int] = None,
    check_finite: bool = True,
    stream: Any = None,
) -> CGResult:
    """Solve ``A x = b`` for symmetric positive definite ``A`` by (preconditioned) conjugate
    gradients, for one right-hand side or a block of them.

    Parameters
    ----------
    A : CSR matrix, dense array, LinearOperator or callable
        ``curvkit.CSRMatrix`` (full or triangle storage), ``scipy.sparse`` / ``cupyx`` sparse
        matrix, a dense ``(n, n)`` array, an object with ``shape`` and ``matvec`` (and
        optionally ``matmat``), or a callable ``v -> A @ v``. CSR matrices run entirely in
        curvkit's kernels; the others are called from the loop for each product.
    b : ndarray
        ``(n,)`` or ``(n, k)``: ``k`` systems solved together, one product with the block per
        iteration, each column with its own step lengths and stopping point. NumPy runs on the
        CPU kernels, CuPy on the GPU.
    x0 : ndarray, optional
        Initial guess of the shape of ``b`` (not modified); zeros by default.
    rtol, atol : float
        Stop a column when ``||r|| < max(atol, rtol * ||b||)`` (SciPy's test).
    maxiter : int, optional
        Iteration limit; ``10 n`` by default.
    M : None, 'jacobi', ndarray, sparse matrix or operator
        Preconditioner ``M ~ A^-1``: ``'jacobi'`` uses ``1 / diag(A)``; an ``(n,)`` array is
        taken as the inverse diagonal; an ``(n, n)`` array, a sparse matrix, an operator
        (``matvec``/``matmat``) or a callable is applied to the residual each step. Diagonal
        preconditioners are fused into the kernels.
    callback : callable, optional
        ``callback(xk)`` after each iteration, like SciPy (this reads the convergence flags
        every iteration, which costs a GPU solve one stream synchronisation each).
    history : bool
        Record ``||r||`` per iteration in the result.
    check_every : int, optional
        GPU only: iterations between reads of the convergence flags (default 32). Counts and
        results do not depend on it; a column stops updating on the device when it converges.
    check_finite : bool
        Refuse NaN or Inf in ``A``, ``b`` and ``x0`` (one pass over each).
    stream : cupy.cuda.Stream or int, optional
        GPU stream to run on; default CuPy's current stream. The solve syncs only this stream.

    Returns
    -------
    CGResult

    Raises
    ------
    TypeError
        Host and device arrays mixed, unsupported dtypes or operator types.
    ValueError
        Non-square ``A``, shape mismatches, NaN/Inf in the inputs, a Jacobi preconditioner for a
        matrix whose diagonal is not positive.
    """
    op = _Operator(A)
    xp_b, b = _arrays.asarray(b)
    xp = _arrays.namespace(op.xp or xp_b, xp_b)
    if b.ndim not in (1, 2):
        raise ValueError(f"b must be (n,) or (n, k), got shape {b.shape}")
    n = b.shape[0]
    k = 1 if b.ndim == 1 else b.shape[1]
    if op.shape is None:
        op.shape = (n, n)
    if len(op.shape) != 2 or op.shape[0] != op.shape[1]:
        raise ValueError(f"A must be square, got shape {op.shape}")
    if op.shape[1] != n:
        raise ValueError(f"shape mismatch: A is {op.shape}, b has shape {b.shape}")
    dtype = _arrays.value_dtype(*(d for d in (op.dtype, b.dtype) if d is not None))
    if maxiter is not None and maxiter < 0:
        raise ValueError(f"maxiter must be non-negative, got {maxiter}")
    if check_every is not None and check_every < 1:
        raise ValueError(f"check_every must be positive, got {check_every}")
    dev = _arrays.device_id(xp, b)
    gpu = xp is not np
    if gpu and op.csr is not None and op.csr.device != dev:
        raise ValueError(f"A is on GPU {op.csr.device}, b on GPU {dev}")

    with contextlib.ExitStack() as stack:
        s = None
        if gpu:  # conversions, allocations and kernels on the caller's stream and b's GPU
            s = stack.enter_context(_arrays.on_stream(True, stream))
            stack.enter_context(_arrays.on_device(xp, dev))
        if check_finite:
            _check_finite(xp, "b", b)
            if op.csr is not None:
                _check_finite(xp, "A", op.csr.data)
            elif op.dense is not None:
                _check_finite(xp, "A", op.dense)
        shape = b.shape
        b = xp.ascontiguousarray(b, dtype=dtype)
        if x0 is None:
            x = xp.zeros(shape, dtype)
        else:
            xp_x, x0 = _arrays.asarray(x0)
            _arrays.namespace(xp, xp_x)
            if x0.shape != shape:
                raise ValueError(f"x0 has shape {x0.shape}, expected {shape}")
            if check_finite:
                _check_finite(xp, "x0", x0)
            x = xp.array(x0, dtype=dtype, order="C", copy=True)
        if n == 0:
            empty = np.zeros((1, k))
            return _result(x, b.ndim, [(0, 0.0, 0.0, 0.0, 1)] * k, empty if history else None)
        r, p, q = (xp.empty(shape, dtype) for _ in range(3))
        inv_diag, m_apply = _preconditioner(M, op, xp, n, dtype)
        z = xp.empty(shape, dtype) if m_apply is not None else None

        dense = op.dense.astype(dtype, copy=False) if op.dense is not None else None
        block_fn = op.matmat if (k > 1 and op.matmat is not None) else op.fn

        def apply(which: int) -> None:
            src = p if which == 0 else x
            if dense is not None:
                xp.matmul(dense, src, out=q)
            else:
                _write(q, block_fn(src), "A's matvec")

        def precondition() -> None:
            _write(z, m_apply(r), "M")

        def iteration_done(_: int) -> None:
            callback(x)

        nbytes = _core.cg_workspace_size(gpu, n, k, check_every or 0)
        workspace = xp.empty((nbytes + 7) // 8, np.float64)
        columns, hist = _core.cg_solve(
            op.csr._handle(dtype) if op.csr is not None else None,
            b, x, r, p, q, z, inv_diag,
            float(rtol), float(atol), -1 if maxiter is None else int(maxiter),
            check_every or 0, workspace,
            apply if op.csr is None else None,
            precondition if m_apply is not None else None,
            iteration_done if callback is not None else None,
            bool(history), dev, _arrays.stream_pointer(xp, s),
        )
    return _result(x, b.ndim, columns, hist)


def _result(x: Any, ndim: int, columns: list, hist: Optional[np.ndarray]) -> CGResult:
    its = np.array([c[0] for c in columns], dtype=np.int64)
    res = np.array([c[1] for c in columns])
    true = np.array([c[2] for c in columns])
    tol = np.array([c[3] for c in columns])
    reasons = [_REASONS[c[4]] for c in columns]
    conv = np.array([r == "converged" for r in reasons])
    h = np.empty((0, len(columns))) if hist is None else hist
    if ndim == 1:
        return CGResult(x, bool(conv[0]), int(its[0]), float(res[0]), float(true[0]),
                        float(tol[0]), reasons[0], h[:, 0])
    return CGResult(x, conv, its, res, true, tol, reasons, h)


def cg(
    A: Any,
    b: Any,
    x0: Any = None,
    *,
    rtol: float = 1e-5,
    atol: float = 0.0,
    maxiter: Optional[int] = None,
    M: Any = None,
    callback: Optional[Callable[[Any], None]] = None,
) -> tuple[Any, int]:
    """Conjugate gradients with the signature and ``info`` codes of ``scipy.sparse.linalg.cg``.

    Returns ``(x, info)``: ``info`` is 0 when converged, the number of iterations done when
    ``maxiter`` stopped it, and -1 on breakdown (``A`` or ``M`` not positive definite), which
    SciPy does not detect. ``b`` may also be a block ``(n, k)``. See :func:`cg_solve` for the
    arguments and for a result with iteration counts, residuals and history.
    """
    res = cg_solve(A, b, x0, rtol=rtol, atol=atol, maxiter=maxiter, M=M, callback=callback,
                   history=False)
    return res.x, res.info


__all__ = ["CGResult", "cg", "cg_solve"]
