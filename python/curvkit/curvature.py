"""Stochastic estimation of a Hessian's diagonal from Hessian-vector products."""

from __future__ import annotations

from types import ModuleType
from typing import Any, Callable, Literal, Optional, Union

import numpy as np

from . import _arrays, _core
from .sparse import CSRMatrix, _is_csr, as_operator

Method = Literal["hutchinson", "exact", "probing"]


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


def diag_estimate(
    H: Any,
    *,
    num_matvecs: Optional[int] = None,
    method: Method = "hutchinson",
    probes: Literal["rademacher", "gaussian"] = "rademacher",
    block: Optional[int] = None,
    seed: int = 0,
    return_stderr: bool = False,
    n: Optional[int] = None,
    xp: Optional[ModuleType] = None,
    pattern: Any = None,
    stream: Any = None,
) -> Union[Any, tuple[Any, Any]]:
    """Estimate ``diag(H)`` from products of ``H`` with random probe blocks.

    Parameters
    ----------
    H : CSR matrix, dense matrix, operator or callable
        ``curvkit.CSRMatrix`` or a SciPy/CuPy CSR matrix; a dense NumPy/CuPy square array; an
        object with ``matmat(V)``; or a callable ``V -> H @ V`` taking an ``(n, k)`` block (a
        PyTorch or JAX HVP wrapped to take and return NumPy or CuPy arrays).
    num_matvecs : int
        Products with ``H`` to spend (probes drawn), for ``method='hutchinson'``.
    method : {'hutchinson', 'exact', 'probing'}
        ``'hutchinson'``: the mean of ``z * (H z)`` over Rademacher probes ``z``; unbiased,
        with variance ``sum_{j != i} H_ij^2 / num_matvecs`` per entry. ``'exact'``: read the
        diagonal of an explicit (CSR or dense) ``H``: exact, and costs no products.
        ``'probing'``: exact for any ``H`` whose sparsity pattern is known (``pattern``, or the
        pattern of a host CSR ``H``): colour the pattern (see :func:`coloring`) and multiply by
        one indicator vector per colour, so ``n_colors`` products (2 for a 5-point Laplacian)
        give the diagonal exactly; ``num_matvecs`` is not used.
    probes : {'rademacher', 'gaussian'}
        Probe distribution. Rademacher (±1) probes give the least variance. Gaussian probes
        use the normalised (Bekas) estimator ``sum z * Hz / sum z * z``, which cancels the
        diagonal's own term; its variance is ``sum_{j != i} H_ij^2 / (num_matvecs - 2)``, and
        its ``stderr`` is a first-order estimate. (Unnormalised Gaussian probes would add
        ``2 H_ii^2 / num_matvecs``.)
    block : int, optional
        Probes per product call (default ``min(num_matvecs, 32)``); a CSR ``H`` is read once per
        block.
    seed : int
        Probe sequence. The probes come from a counter-based generator keyed by the seed, so a
        seed gives the same probes on the CPU and the GPU and for any block size.
    return_stderr : bool
        Also return the per-entry standard error of the estimate (sample standard deviation of
        ``z * (H z)`` over the probes, divided by ``sqrt(num_matvecs)``).
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
    """
    if method not in ("hutchinson", "exact", "probing"):
        raise ValueError(f"method must be 'hutchinson', 'exact' or 'probing', got {method!r}")
    if probes not in ("rademacher", "gaussian"):
        raise ValueError(f"probes must be 'rademacher' or 'gaussian', got {probes!r}")
    matmat, size, mod, dtype, dev, exact = _probe_target(H, n, xp)
    if method == "exact":
        if exact is None:
            raise ValueError("method='exact' needs an explicit H (CSR or dense matrix)")
        d = exact()
        return (d, mod.zeros_like(d)) if return_stderr else d
    if method == "probing":
        return _probing(H, pattern, matmat, size, mod, dtype, dev, return_stderr)
    if num_matvecs is None or int(num_matvecs) < 1:
        raise ValueError(f"num_matvecs must be a positive integer, got {num_matvecs!r}")
    num_matvecs = int(num_matvecs)
    block = min(num_matvecs, 32) if block is None else int(block)
    if block < 1:
        raise ValueError(f"block must be positive, got {block}")
    if not 0 <= int(seed) < 2**64:
        raise ValueError("seed must be in [0, 2**64)")
    with _arrays.on_stream(mod is not np, stream) as s:
        return _hutchinson(matmat, size, mod, dtype, dev, num_matvecs, block, int(seed),
                           probes == "gaussian", return_stderr, s)


def _hutchinson(matmat: Callable[[Any], Any], size: int, mod: ModuleType, dtype: np.dtype,
                dev: int, num_matvecs: int, block: int, seed: int, gaussian: bool,
                return_stderr: bool, stream: Any) -> Union[Any, tuple[Any, Any]]:
    fill = _core.fill_gaussian if gaussian else _core.fill_rademacher
    with _arrays.on_device(mod, dev):
        ptr = _arrays.stream_pointer(mod, stream)
        mean = mod.zeros(size, dtype)
        m2 = mod.zeros(size, dtype)
        if gaussian:  # running mean of z * z: the Bekas denominator
            norm, norm_m2 = mod.zeros(size, dtype), mod.zeros(size, dtype)
        done = 0
        Z = mod.empty((size, min(block, num_matvecs)), dtype)  # row-major, reused per block
        while done < num_matvecs:
            b = min(block, num_matvecs - done)
            if b != Z.shape[1]:
                Z = mod.empty((size, b), dtype)
            fill(Z, seed, done, dev, ptr)
            xp_hz, HZ = _arrays.asarray(matmat(Z))
            if xp_hz is not mod:
                raise TypeError("H returned an array from another library or device than the "
                                "probes; return NumPy for NumPy probes and CuPy for CuPy probes")
            if HZ.shape != (size, b):
                raise ValueError(f"H returned shape {HZ.shape} for a probe block of shape "
                                 f"{(size, b)}")
            if HZ.dtype != dtype:
                HZ = HZ.astype(dtype)
            _core.accumulate_probe_products(Z, HZ, mean, m2, done, dev, ptr)
            if gaussian:
                _core.accumulate_probe_products(Z, Z, norm, norm_m2, done, dev, ptr)
            done += b
        stderr = mod.sqrt(m2 / (done * (done - 1))) if done > 1 else mod.full(size, np.inf, dtype)
        if gaussian:
            mean /= norm
            stderr /= norm
        return (mean, stderr) if return_stderr else mean


def _probing(H: Any, pattern: Any, matmat: Callable[[Any], Any], size: int, mod: ModuleType,
             dtype: np.dtype, dev: int, return_stderr: bool) -> Union[Any, tuple[Any, Any]]:
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
        _, HV = _arrays.asarray(matmat(V))
        d = HV[rows, c].astype(dtype, copy=True)
        return (d, mod.zeros_like(d)) if return_stderr else d


def trace_estimate(
    H: Any,
    *,
    num_matvecs: int,
    method: Literal["hutchinson", "hutch++"] = "hutch++",
    seed: int = 0,
    n: Optional[int] = None,
    xp: Optional[ModuleType] = None,
) -> float:
    """Estimate ``trace(H)`` from ``num_matvecs`` products with ``H`` (same kinds of ``H`` as
    :func:`diag_estimate`).

    ``'hutchinson'``: the mean of ``z^T H z`` over Rademacher probes (the sum of the Hutchinson
    diagonal). ``'hutch++'``: a third of the products sketch the range of ``H`` (``Q`` from a QR
    of ``H S``), the trace on that range is taken exactly (another third), and Hutchinson's
    estimator handles the rest of ``H`` with the last third. When ``H``'s spectrum decays, the
    error falls like ``1 / num_matvecs`` instead of ``1 / sqrt(num_matvecs)``.
    """
    if method not in ("hutchinson", "hutch++"):
        raise ValueError(f"method must be 'hutchinson' or 'hutch++', got {method!r}")
    if method == "hutchinson":
        d = diag_estimate(H, num_matvecs=num_matvecs, seed=seed, n=n, xp=xp)
        return float(d.sum())  # type: ignore[union-attr]  # a single array without stderr
    if int(num_matvecs) < 3:
        raise ValueError(f"hutch++ needs num_matvecs >= 3, got {num_matvecs!r}")
    matmat, size, mod, dtype, dev, _ = _probe_target(H, n, xp)
    third = int(num_matvecs) // 3
    rest = int(num_matvecs) - 2 * third  # Hutchinson probes for the deflated part
    with _arrays.on_device(mod, dev):
        ptr = _arrays.stream_pointer(mod, None)

        def probes(count: int, first: int) -> Any:
            Z = mod.empty((size, count), dtype)
            _core.fill_rademacher(Z, int(seed), first, dev, ptr)
            return Z

        def apply(V: Any) -> Any:
            _, out = _arrays.asarray(matmat(mod.ascontiguousarray(V, dtype=dtype)))
            return out.copy()  # a CSR H reuses one output buffer per block shape

        Q, _ = mod.linalg.qr(apply(probes(third, 0)))
        exact = float(mod.sum(Q * apply(Q)))  # trace(Q^T H Q)
        G = probes(rest, third)
        G = G - Q @ (Q.T @ G)  # (I - Q Q^T) G
        return exact + float(mod.sum(G * apply(G))) / rest
