"""Sparse Hessians in CSR form and their products with vectors and blocks of vectors."""

from __future__ import annotations

import operator
from types import ModuleType
from typing import Any, Literal, Optional, Union

import numpy as np

from . import _arrays, _core

Triangle = Optional[Literal["upper", "lower"]]
_STORAGE = {None: 0, "upper": 1, "lower": 2}


class CSRMatrix:
    """A CSR matrix on the host (NumPy) or a GPU (CuPy), usable as a Hessian operator.

    Parameters
    ----------
    indptr, indices, data : array_like
        The usual CSR arrays: row ``i`` holds ``data[indptr[i]:indptr[i+1]]`` in the columns
        ``indices[indptr[i]:indptr[i+1]]``. Indices may be unsorted; repeats are summed.
        ``indptr`` and ``indices`` must be integers (int32 and int64 are used as they are,
        others are converted); ``data`` is float32 or float64 (integers become float64).
        All three must live on the same device.
    shape : tuple of int
        ``(rows, cols)``.
    symmetric : {None, 'upper', 'lower'}
        ``None``: the arrays hold the whole matrix. ``'upper'`` / ``'lower'``: they hold one
        triangle (diagonal included) of a symmetric matrix, and products read half the bytes.
    check : bool
        Validate the index arrays once now (one pass over ``indptr`` and ``indices``):
        malformed ``indptr``, out-of-range columns or entries outside the declared triangle
        raise ``ValueError``. ``check=False`` skips this for trusted input; malformed arrays
        then give undefined results.

    Notes
    -----
    The object works wherever a linear operator is expected: it has ``shape``, ``dtype``,
    ``matvec``, ``matmat`` and ``@``, so ``scipy.sparse.linalg.aslinearoperator`` (NumPy data)
    and ``cupyx.scipy.sparse.linalg.aslinearoperator`` (CuPy data) accept it. The arrays are
    referenced, not copied: do not modify them while the matrix is in use.
    """

    def __init__(
        self,
        indptr: Any,
        indices: Any,
        data: Any,
        shape: tuple[int, int],
        *,
        symmetric: Triangle = None,
        check: bool = True,
    ) -> None:
        xp_p, indptr = _arrays.asarray(indptr)
        xp_i, indices = _arrays.asarray(indices)
        xp_d, data = _arrays.asarray(data)
        xp = _arrays.namespace(xp_p, xp_i, xp_d)
        if symmetric not in _STORAGE:
            raise ValueError(f"symmetric must be None, 'upper' or 'lower', got {symmetric!r}")
        try:
            rows, cols = (operator.index(s) for s in shape)
        except (TypeError, ValueError):
            raise ValueError(f"shape must be a pair of integers, got {shape!r}") from None
        if not (0 <= rows < 2**62 and 0 <= cols < 2**62):
            raise ValueError(f"shape must be non-negative and below 2**62, got {shape!r}")
        if symmetric is not None and rows != cols:
            raise ValueError(f"a symmetric matrix must be square, got shape {(rows, cols)}")
        for name, arr in (("indptr", indptr), ("indices", indices), ("data", data)):
            if arr.ndim != 1:
                raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
        if indptr.dtype.kind not in "iu" or indices.dtype.kind not in "iu":
            raise TypeError(
                f"indptr and indices must be integer arrays, got {indptr.dtype} and {indices.dtype}"
            )
        if indptr.shape[0] != rows + 1:
            raise ValueError(f"indptr must have rows + 1 = {rows + 1} entries, got {indptr.shape[0]}")
        if indices.shape[0] != data.shape[0]:
            raise ValueError(
                f"indices and data differ in length ({indices.shape[0]} vs {data.shape[0]})"
            )
        index_dtype = (
            np.dtype(np.int32)
            if indptr.dtype == np.int32 and indices.dtype == np.int32
            else np.dtype(np.int64)
        )
        if xp is not np and not _core.with_cuda():
            raise RuntimeError(
                "CuPy arrays need the CUDA kernels, and this curvkit build has none; reinstall "
                "with nvcc on PATH (CURVKIT_CUDA=ON pip install curvkit)"
            )
        self._xp: ModuleType = xp
        self._device = _arrays.device_id(xp, data)
        if xp is not np and (indptr.device.id != self._device or indices.device.id != self._device):
            raise ValueError("indptr, indices and data must be on the same GPU")
        with _arrays.on_device(xp, self._device):
            self.indptr = xp.ascontiguousarray(indptr, dtype=index_dtype)
            self.indices = xp.ascontiguousarray(indices, dtype=index_dtype)
            self.data = xp.ascontiguousarray(data, dtype=_arrays.value_dtype(data.dtype))
            copied = self.indptr is not indptr or self.indices is not indices or self.data is not data
            if xp is not np and copied and not check:
                # Products may run on other streams: let the conversions finish first (once).
                xp.cuda.get_current_stream().synchronize()
        self.shape: tuple[int, int] = (rows, cols)
        self.symmetric: Triangle = symmetric
        self._handles: dict[np.dtype, Any] = {}
        if check:
            self.check()

    # ---- construction from other libraries -------------------------------------------------

    @classmethod
    def from_sparse(cls, A: Any, *, symmetric: Triangle = None, check: bool = True) -> "CSRMatrix":
        """Wrap a ``scipy.sparse`` or ``cupyx.scipy.sparse`` CSR matrix without copying."""
        if isinstance(A, CSRMatrix):
            return A
        if not _is_csr(A):
            raise TypeError(
                f"expected a CSR matrix (scipy.sparse, cupyx.scipy.sparse or curvkit.CSRMatrix), "
                f"got {type(A).__name__}; convert with .tocsr() first"
            )
        return cls(A.indptr, A.indices, A.data, A.shape, symmetric=symmetric, check=check)

    # ---- properties -------------------------------------------------------------------------

    @property
    def dtype(self) -> np.dtype:
        """Value type of the stored entries."""
        return self.data.dtype

    @property
    def nnz(self) -> int:
        """Number of stored entries (one triangle for symmetric storage)."""
        return int(self.data.shape[0])

    @property
    def ndim(self) -> int:
        return 2

    @property
    def xp(self) -> ModuleType:
        """``numpy`` or ``cupy``: where the matrix lives."""
        return self._xp

    @property
    def device(self) -> Union[str, int]:
        """``'cpu'`` or the CUDA device ordinal."""
        return "cpu" if self._xp is np else self._device

    @property
    def T(self) -> "CSRMatrix":
        """The transpose; available for symmetric (triangle) storage, where it is the matrix."""
        self._require_symmetric("T")
        return self

    def __repr__(self) -> str:
        sym = f", symmetric={self.symmetric!r}" if self.symmetric else ""
        return (
            f"<curvkit.CSRMatrix {self.shape[0]}x{self.shape[1]} {self.dtype} nnz={self.nnz}"
            f" on {self.device}{sym}>"
        )

    # ---- operations -------------------------------------------------------------------------

    def check(self, *, stream: Any = None) -> None:
        """Validate the index arrays; raises ``ValueError`` on the first defect found."""
        handle = self._handle(self.dtype)
        if self._xp is np:
            handle.check(None, 0)
            return
        with self._xp.cuda.Device(self._device), _arrays.on_stream(True, stream) as s:
            nbytes = handle.check_workspace_size()
            workspace = self._xp.empty((nbytes + 3) // 4, dtype=np.int32)
            handle.check(workspace, _arrays.stream_pointer(self._xp, s))

    def matmat(self, V: Any, out: Any = None, *, stream: Any = None) -> Any:
        """``H @ V`` for a vector ``(n,)`` or a block ``(n, k)``; see :func:`curvkit.hvp`."""
        xp_v, V = _arrays.asarray(V)
        xp = _arrays.namespace(self._xp, xp_v)
        if xp is np:  # the host path needs neither context: keep the per-call cost low
            return self._matmat_here(np, V, out, None)
        # Conversions and the allocation run on the given stream and the matrix's GPU too.
        with _arrays.on_stream(True, stream) as s, _arrays.on_device(xp, self._device):
            return self._matmat_here(xp, V, out, s)

    def _matmat_here(self, xp: ModuleType, V: Any, out: Any, stream: Any) -> Any:
        if V.ndim not in (1, 2):
            raise ValueError(f"v must be a vector (n,) or a block (n, k), got shape {V.shape}")
        if V.shape[0] != self.shape[1]:
            raise ValueError(f"shape mismatch: matrix is {self.shape}, v has shape {V.shape}")
        if xp is not np and V.device.id != self._device:
            raise ValueError(f"v is on GPU {V.device.id}, the matrix on GPU {self._device}")
        dtype = _arrays.value_dtype(self.dtype, V.dtype)
        if V.ndim == 2 and V.shape[1] > 1 and not V.flags.c_contiguous:
            # The kernels read each gathered row of V as one contiguous run: a row-major copy
            # (same device) costs less than gathering k strided values per stored entry.
            V = xp.ascontiguousarray(V, dtype=dtype)
        elif V.dtype != dtype:
            V = V.astype(dtype)
        shape = (self.shape[0],) + V.shape[1:]
        if out is None:
            out = xp.empty(shape, dtype)
        else:
            _arrays.check_out(out, xp, shape, dtype, self._device)
        self._handle(dtype).matmul(V, out, _arrays.stream_pointer(xp, stream))
        return out

    def diagonal(self, out: Any = None, *, stream: Any = None) -> Any:
        """The diagonal, ``min(rows, cols)`` entries; repeated (i, i) entries are summed.

        For triangle storage it is the diagonal of the symmetric matrix. ``out``, if given,
        must be a contiguous vector of the matrix dtype on the matrix's device.
        """
        xp = self._xp
        shape = (min(self.shape),)
        with _arrays.on_stream(xp is not np, stream) as s, _arrays.on_device(xp, self._device):
            if out is None:
                out = xp.empty(shape, self.dtype)
            else:
                _arrays.check_out(out, xp, shape, self.dtype, self._device)
            self._handle(self.dtype).diagonal(out, _arrays.stream_pointer(xp, s))
        return out

    def matvec(self, v: Any) -> Any:
        """``H @ v`` (LinearOperator protocol); an ``(n, 1)`` input gives an ``(n, 1)`` output."""
        return self.matmat(v)

    def rmatvec(self, v: Any) -> Any:
        """``H.T @ v``; available for symmetric (triangle) storage."""
        self._require_symmetric("rmatvec")
        return self.matmat(v)

    def rmatmat(self, V: Any) -> Any:
        """``H.T @ V``; available for symmetric (triangle) storage."""
        self._require_symmetric("rmatmat")
        return self.matmat(V)

    def dot(self, V: Any) -> Any:
        return self.matmat(V)

    def __matmul__(self, V: Any) -> Any:
        return self.matmat(V)

    # ---- internals --------------------------------------------------------------------------

    def _require_symmetric(self, what: str) -> None:
        if self.symmetric is None:
            raise NotImplementedError(
                f"{what} needs the transpose, which curvkit provides only for symmetric "
                f"(triangle) storage; build the matrix with symmetric='upper' or 'lower'"
            )

    def _handle(self, dtype: np.dtype) -> Any:
        # Products in a wider type than the stored values use a converted copy, made once.
        handle = self._handles.get(dtype)
        if handle is None:
            data = self.data
            if data.dtype != dtype:
                with _arrays.on_device(self._xp, self._device):
                    data = data.astype(dtype)
                    if self._xp is not np:  # later products may run on other streams
                        self._xp.cuda.get_current_stream().synchronize()
            handle = _core.CsrHandle(
                self.indptr,
                self.indices,
                data,
                self.shape[0],
                self.shape[1],
                _STORAGE[self.symmetric],
                self._device,
            )
            self._handles[dtype] = handle
        return handle


def _is_csr(A: Any) -> bool:
    module = type(A).__module__
    return (module.startswith("scipy.sparse") or module.startswith("cupyx.scipy.sparse")) and (
        getattr(A, "format", None) == "csr"
    )


def as_operator(H: Any, *, symmetric: Triangle = None, check: bool = True) -> CSRMatrix:
    """Return ``H`` as a :class:`CSRMatrix` (``scipy.sparse``/``cupyx`` CSR are wrapped, not copied)."""
    if isinstance(H, CSRMatrix):
        if symmetric is not None and symmetric != H.symmetric:
            raise ValueError(f"H stores symmetric={H.symmetric!r}, not {symmetric!r}")
        return H
    return CSRMatrix.from_sparse(H, symmetric=symmetric, check=check)


def hvp(
    H: Any,
    v: Any,
    out: Any = None,
    *,
    symmetric: Triangle = None,
    check: bool = True,
    stream: Any = None,
) -> Any:
    """Hessian-vector product ``H @ v`` for a sparse Hessian in CSR form.

    Parameters
    ----------
    H : curvkit.CSRMatrix, scipy.sparse CSR or cupyx.scipy.sparse CSR
        The Hessian. Host matrices run on the CPU kernels (all cores), CuPy matrices on the GPU.
    v : array_like
        One vector ``(n,)`` or a block of vectors ``(n, k)``; a block reads the matrix once
        for all ``k`` vectors. NumPy for a host matrix, CuPy (or any CUDA array) for a GPU one.
    out : ndarray, optional
        Where to write the result, shape ``(m,)`` or ``(m, k)``, C- or F-contiguous, of the
        result dtype and on the same device. Written in place and returned.
    symmetric : {None, 'upper', 'lower'}
        For a SciPy/CuPy matrix: it holds only that triangle of a symmetric ``H``.
    check : bool
        Validate the index arrays of a SciPy/CuPy matrix before the product (one pass over
        the indices; a ``CSRMatrix`` was checked when built). ``False`` skips it.
    stream : cupy.cuda.Stream or int, optional
        GPU stream to run on; default CuPy's current stream. The call never synchronises.

    Returns
    -------
    ndarray
        ``H @ v`` in ``result_type(H.dtype, v.dtype)`` (float32 or float64), NumPy or CuPy like
        the inputs.

    Raises
    ------
    TypeError
        Host and device arrays mixed, or unsupported dtypes.
    ValueError
        Shape mismatch, malformed CSR arrays, or an ``out`` that is non-contiguous, of the
        wrong shape, or overlaps ``v``.

    Notes
    -----
    To multiply by the same matrix many times, build :class:`CSRMatrix` once: it is checked
    once, and each product then costs only the kernel and a few microseconds of Python.
    """
    # The check, too, runs on the caller's stream.
    with _arrays.on_stream(_arrays.is_device_array(getattr(H, "data", None)), stream):
        op = as_operator(H, symmetric=symmetric, check=check)
    return op.matmat(v, out, stream=stream)
