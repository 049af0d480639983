"""Logarithms of modified Bessel functions and von Mises-Fisher helpers, for NumPy and CuPy.

``log_iv`` and ``log_kv`` are accurate to a few ulps for every real order and every argument
(orders up to 1e7 and beyond, arguments from 1e-300 to 1e300), where ``log(scipy.special.iv)``
under- or overflows. They behave like SciPy ufuncs: broadcasting, ``out=``, float32 stays
float32, integers become float64, domain errors give NaN, scalars in give a scalar out, and CuPy
arrays in give CuPy arrays out (computed on the current stream of their device).
"""

from __future__ import annotations

import math
from numbers import Number
from types import ModuleType
from typing import Any, Optional, Tuple

import numpy as np

from . import _arrays, _core

__all__ = [
    "dlog_iv",
    "dlog_kv",
    "iv_ratio",
    "log_iv",
    "log_kv",
    "vmf_fit",
    "vmf_log_normalizer",
    "vmf_mean_length",
]

_LOG_IV, _LOG_KV, _IV_RATIO, _DLOG_IV, _DLOG_KV = range(5)
_FLOAT_DTYPES = (_arrays._F32, _arrays._F64)


def _is_python_scalar(a: Any) -> bool:
    return isinstance(a, (Number, np.generic)) and not isinstance(a, np.ndarray)


def _elementwise(code: int, v: Any, x: Any, out: Any) -> Any:
    """Broadcast, promote and evaluate one of the kernels of ``_core.special_function``."""
    # The common case without the general path's promotion and broadcasting (which cost most
    # of a small call's time): two NumPy arrays of one float dtype and shape, 1-D or 2-D.
    if (out is None and type(v) is np.ndarray and type(x) is np.ndarray
            and v.shape == x.shape and 1 <= v.ndim <= 2 and v.size
            and v.dtype == x.dtype and v.dtype in _FLOAT_DTYPES):
        result = np.empty(v.shape, v.dtype)
        _core.special_function(code, v, x, result, 0, 0)
        return result
    if out is None and type(v) is float and type(x) is float:  # two Python floats
        result = np.empty(1)
        _core.special_function(code, np.array([v]), np.array([x]), result, 0, 0)
        return result[0]
    inputs = []
    modules = []
    for a in (v, x):
        if _is_python_scalar(a):
            inputs.append(a)
        else:
            mod, arr = _arrays.asarray(a)
            modules.append(mod)
            inputs.append(arr)
    if out is not None:
        modules.append(_arrays.asarray(out)[0])
    xp: ModuleType = _arrays.namespace(*modules) if modules else np
    # Python scalars take part in promotion as weakly typed values (as in NumPy's ufuncs).
    dtype = _arrays.value_dtype(*[a if _is_python_scalar(a) else a.dtype for a in inputs])
    scalar_result = out is None and all(
        _is_python_scalar(a) or (xp is np and a.ndim == 0) for a in inputs)
    dev = next((_arrays.device_id(xp, a) for a in inputs if not _is_python_scalar(a)), 0)
    if xp is not np:
        for a in inputs:
            if not _is_python_scalar(a) and a.device.id != dev:
                raise ValueError("v and x are on different GPUs")
    with _arrays.on_device(xp, dev):
        arrays = [xp.asarray(a, dtype=dtype) for a in inputs]
        shape = tuple(np.broadcast_shapes(*(a.shape for a in arrays)))
        if out is None:
            out = xp.empty(shape, dtype)
        else:
            _arrays.check_out(out, xp, shape, dtype, dev)
        if len(shape) <= 2:
            flat_out = out.reshape(1) if len(shape) == 0 else out
            views = [xp.broadcast_to(a, shape) for a in arrays]
            if len(shape) == 0:
                views = [a.reshape(1) for a in views]
        else:  # collapse to one axis in the memory order of out
            order = "C" if out.flags.c_contiguous else "F"
            flat_out = out.reshape(-1, order=order)
            views = [xp.asarray(xp.broadcast_to(a, shape), order=order).reshape(-1, order=order)
                     for a in arrays]
        if out.size:
            _core.special_function(code, views[0], views[1], flat_out, dev,
                                   _arrays.stream_pointer(xp, None))
    return out[()] if scalar_result else out


def log_iv(v: Any, x: Any, out: Optional[Any] = None) -> Any:
    """Natural logarithm of the modified Bessel function of the first kind, ``log I_v(x)``.

    Parameters
    ----------
    v : array_like
        Real order. Negative orders use ``I_{-v} = I_v + (2/pi) sin(pi v) K_v``.
    x : array_like
        Real argument, ``x >= 0``.
    out : ndarray, optional
        Array to write the result into: NumPy or CuPy like the inputs, of the broadcast shape
        and the result dtype, C- or F-contiguous.

    Returns
    -------
    ndarray or scalar
        ``log I_v(x)``; ``log I_0(0) = 0``, ``log I_v(0) = -inf`` for ``v > 0``, NaN for
        ``x < 0``, NaN arguments, or where ``I_v(x) < 0`` (some negative non-integer orders).

    Notes
    -----
    Accurate to a few ulps of ``max(|log I|, 1, hypot(v, x))`` in float64 and to an ulp in
    float32, for every order ``v >= 0`` (and negative integer orders) and every argument; no
    overflow for large orders or arguments. At negative non-integer orders the reflection's
    two terms cancel near the zeros of ``I_v``, and the relative error of ``I_v`` grows with
    the ratio of their size to ``|I_v|``.

    Examples
    --------
    >>> from curvkit.special import log_iv
    >>> float(log_iv(1e6, 1e3))  # doctest: +ELLIPSIS
    -6600910.036...
    """
    return _elementwise(_LOG_IV, v, x, out)


def log_kv(v: Any, x: Any, out: Optional[Any] = None) -> Any:
    """Natural logarithm of the modified Bessel function of the second kind, ``log K_v(x)``.

    Parameters
    ----------
    v : array_like
        Real order (``K_{-v} = K_v``).
    x : array_like
        Real argument, ``x >= 0``.
    out : ndarray, optional
        Output array, as for :func:`log_iv`.

    Returns
    -------
    ndarray or scalar
        ``log K_v(x)``; ``+inf`` at ``x = 0``, NaN for ``x < 0`` or NaN arguments.
    """
    return _elementwise(_LOG_KV, v, x, out)


def iv_ratio(v: Any, x: Any, out: Optional[Any] = None) -> Any:
    """The ratio ``I_{v+1}(x) / I_v(x)``, computed directly.

    For ``v >= 0`` it comes from the continued fraction, the uniform large-order expansion or
    Hankel's expansion, never from a difference of logarithms (which loses 4-5 digits when
    ``|log I|`` is 1e4-1e5). It lies in ``[0, 1)``: 0 at ``x = 0`` and 1 at ``x = inf``. For
    negative integer orders it is ``1 / iv_ratio(-v - 1, x)`` (``I_{-n} = I_n``; ``inf`` at
    ``x = 0``); for other negative orders it is formed from the signed logarithms of both
    functions (``x / (2 v + 2)``, a signed zero, at ``x = 0``; 1 at ``x = inf``).

    Parameters
    ----------
    v, x : array_like
        Order and argument (``x >= 0``).
    out : ndarray, optional
        Output array, as for :func:`log_iv`.

    Returns
    -------
    ndarray or scalar
    """
    return _elementwise(_IV_RATIO, v, x, out)


def dlog_iv(v: Any, x: Any, out: Optional[Any] = None) -> Any:
    """The x-derivative of ``log I_v(x)``: ``I_v'(x) / I_v(x) = v / x + I_{v+1}(x) / I_v(x)``.

    At ``x = 0`` it is the limit of ``v / x``: 0 at ``v = 0``, ``inf`` for ``v > 0`` and at
    negative integers (``I_{-n} = I_n``), ``-inf`` at other negative orders; 1 at ``x = inf``.

    Parameters
    ----------
    v, x : array_like
        Order and argument (``x >= 0``).
    out : ndarray, optional
        Output array, as for :func:`log_iv`.

    Returns
    -------
    ndarray or scalar
    """
    return _elementwise(_DLOG_IV, v, x, out)


def dlog_kv(v: Any, x: Any, out: Optional[Any] = None) -> Any:
    """The x-derivative of ``log K_v(x)``: ``K_v'(x) / K_v(x) = v / x - K_{v+1}(x) / K_v(x)``.

    Computed from the ratio of consecutive K (recurrence, uniform or Hankel expansion); always
    negative, ``-inf`` at ``x = 0`` and ``-1`` at ``x = inf``.

    Parameters
    ----------
    v, x : array_like
        Order and argument (``x >= 0``).
    out : ndarray, optional
        Output array, as for :func:`log_iv`.

    Returns
    -------
    ndarray or scalar
    """
    return _elementwise(_DLOG_KV, v, x, out)


# ---- von Mises-Fisher distribution on the sphere S^{p-1} -------------------------------------


def _order(p: Any) -> Any:
    return np.asarray(p, dtype=np.float64) / 2 - 1


def vmf_log_normalizer(p: Any, kappa: Any) -> Any:
    """Logarithm of the von Mises-Fisher normalising constant on the sphere ``S^{p-1}``.

    ``log C_p(kappa) = (p/2 - 1) log kappa - (p/2) log(2 pi) - log I_{p/2-1}(kappa)``, so that
    ``C_p(kappa) exp(kappa mu^T x)`` is a density on the unit sphere in ``R^p``. At
    ``kappa = 0`` it is the uniform density, ``-log(area of S^{p-1})``.

    Parameters
    ----------
    p : int or array_like of int
        Dimension of the ambient space (``p >= 1``).
    kappa : array_like
        Concentration, ``kappa >= 0`` (NumPy or CuPy; the result follows ``kappa``).

    Returns
    -------
    ndarray or scalar
        float64 (float32 for float32 ``kappa``).
    """
    xp, k = _arrays.asarray(kappa)
    nu = _order(p)
    if np.any(nu < -0.5):
        raise ValueError("p must be at least 1")
    dtype = _arrays.value_dtype(k.dtype)
    with _arrays.on_device(xp, _arrays.device_id(xp, k)):
        k = k.astype(dtype, copy=False)
        nu_x = xp.asarray(nu, dtype=dtype)
        half_p = nu_x + 1
        with np.errstate(divide="ignore", invalid="ignore"):
            res = nu_x * xp.log(k) - half_p * math.log(2 * math.pi) - log_iv(nu_x, k)
        # kappa = 0: the limit (p/2 - 1) log 2 + lgamma(p/2) - (p/2) log(2 pi) = -log area.
        if bool((k == 0).any()):
            from math import lgamma

            log_area = np.vectorize(lambda h: math.log(2.0) + h * math.log(math.pi) - lgamma(h))(
                np.asarray(nu) + 1)
            res = xp.where(k == 0, xp.asarray(-log_area, dtype=dtype), res)
    return res[()] if (xp is np and np.ndim(res) == 0) else res


def vmf_mean_length(p: Any, kappa: Any) -> Any:
    """Mean resultant length of the von Mises-Fisher distribution on ``S^{p-1}``:
    ``A_p(kappa) = I_{p/2}(kappa) / I_{p/2-1}(kappa)``, the norm of ``E[x]``.

    Parameters
    ----------
    p : int or array_like of int
        Dimension of the ambient space.
    kappa : array_like
        Concentration, ``kappa >= 0``.

    Returns
    -------
    ndarray or scalar
        Values in ``[0, 1)``, computed directly (see :func:`iv_ratio`).
    """
    xp, k = _arrays.asarray(kappa)
    with _arrays.on_device(xp, _arrays.device_id(xp, k)):
        nu = xp.asarray(_order(p), dtype=_arrays.value_dtype(k.dtype))
        res = iv_ratio(nu, k)
    return res[()] if (xp is np and np.ndim(res) == 0) else res


def _solve_mean_length(p: int, rbar: float) -> float:
    """kappa with A_p(kappa) = rbar: Newton's method from Banerjee et al.'s approximation,
    safeguarded by a bracket, with A and its derivative 1 - A^2 - (p - 1) A / kappa exact."""
    if rbar <= 0.0:
        return 0.0
    if rbar >= 1.0:
        return math.inf
    nu = p / 2.0 - 1.0
    lo, hi = 0.0, math.inf
    kappa = rbar * (p - rbar * rbar) / (1.0 - rbar * rbar)
    for _ in range(100):
        a = float(_core_ratio(nu, kappa))
        f = a - rbar
        if f == 0.0:
            break
        if f < 0.0:
            lo = kappa
        else:
            hi = kappa
        da = 1.0 - a * a - (p - 1.0) * a / kappa
        step = f / da if da > 0.0 else math.inf
        nxt = kappa - step
        if not (lo < nxt < hi) or not math.isfinite(nxt):  # stay inside the bracket
            nxt = 0.5 * (lo + hi) if math.isfinite(hi) else 2.0 * kappa
        if abs(nxt - kappa) <= 4e-16 * kappa:
            kappa = nxt
            break
        kappa = nxt
    return kappa


def _core_ratio(nu: float, kappa: float) -> float:
    return float(iv_ratio(np.float64(nu), np.float64(kappa)))


# Squared row norms outside [2^-960, 2^960] lose digits (subnormal) or overflow: such rows are
# scaled by their largest entry before they are normalised.
_SQ_NORM_MIN = 2.0 ** -960
_SQ_NORM_MAX = 2.0 ** 960


def vmf_fit(X: Any) -> Tuple[Any, float]:
    """Maximum-likelihood von Mises-Fisher fit of unit vectors.

    The mean direction is the normalised sum of the rows; the concentration solves
    ``A_p(kappa) = Rbar`` (the mean resultant length) by Newton's method on the exact ``A_p``
    and its derivative, started from Banerjee et al.'s approximation
    ``Rbar (p - Rbar^2) / (1 - Rbar^2)``. This works in high dimension (p = 2048, 8192, 32768
    and beyond), where the Bessel functions involved over- or underflow in double precision.

    Parameters
    ----------
    X : (N, p) array_like
        Samples on the unit sphere ``S^{p-1}``, NumPy or CuPy; each row is normalised to unit
        length first.

    Returns
    -------
    mu : (p,) ndarray
        Mean direction, NumPy or CuPy like ``X``; zeros where the samples' sum vanishes (no
        mean direction: kappa is 0, the uniform distribution).
    kappa : float
        Concentration (``inf`` when all samples coincide, 0 when their sum vanishes).
    """
    xp, A = _arrays.asarray(X)
    if A.ndim != 2 or A.shape[0] < 1 or A.shape[1] < 2:
        raise ValueError(f"X must be an (N, p) array with N >= 1 and p >= 2, got {A.shape}")
    _arrays.value_dtype(A.dtype)  # a TypeError for complex, string and object arrays
    with _arrays.on_device(xp, _arrays.device_id(xp, A)):
        A = A.astype(np.float64, copy=False)
        # Two passes over X and no temporary of its size: the squared row norms, then the
        # sum of the normalised rows as one matrix-vector product.
        sq = xp.einsum("ij,ij->i", A, A)
        # Rows whose squared norm over- or underflows (or holds NaN/inf) are scaled by their
        # largest entry first; finite rows with entries near 1e200 or 1e-200 are valid input.
        extreme = ~((sq >= _SQ_NORM_MIN) & (sq <= _SQ_NORM_MAX))
        inv_norm = 1.0 / xp.sqrt(xp.where(extreme, 1.0, sq))
        if bool(xp.any(extreme)):
            rows = A[extreme]
            big = xp.max(xp.abs(rows), axis=1)
            if not bool(xp.all(xp.isfinite(big))):
                raise ValueError("X has NaN or infinite entries")
            if not bool(xp.all(big > 0)):
                raise ValueError("X has a zero row: samples must lie on the unit sphere")
            rows = rows / big[:, None]
            rows /= xp.sqrt(xp.einsum("ij,ij->i", rows, rows))[:, None]
            inv_norm[extreme] = 0.0
            s = A.T @ inv_norm + rows.sum(axis=0)
        else:
            s = A.T @ inv_norm
        r = float(xp.linalg.norm(s))
        n, p = A.shape
        mu = s / r if r > 0 else s
        rbar = min(r / n, 1.0)
    return mu, _solve_mean_length(int(p), rbar)
