"""The one array adaptor: NumPy/CuPy detection, dtype rules, ``out=`` checks and streams.

CuPy is imported only when a GPU array is seen, so CPU users never pay for it.
"""

from __future__ import annotations

import contextlib
from types import ModuleType
from typing import Any, ContextManager

import numpy as np

_KDL_CUDA = 2  # DLPack device type of CUDA memory


def _cupy() -> ModuleType:
    try:
        import cupy
    except ImportError as e:
        raise TypeError(
            "GPU arrays need CuPy, which is not importable here (pip install 'curvkit[gpu]')"
        ) from e
    return cupy


def _is_cupy(x: Any) -> bool:
    return type(x).__module__.startswith("cupy")


def is_device_array(x: Any) -> bool:
    """True for arrays in GPU memory (CuPy, or anything exposing CUDA memory)."""
    if _is_cupy(x) or hasattr(x, "__cuda_array_interface__"):
        return True
    dev = getattr(x, "__dlpack_device__", None)
    if dev is None:
        return False
    try:
        return dev()[0] == _KDL_CUDA
    except Exception:
        return False


def asarray(x: Any) -> tuple[ModuleType, Any]:
    """Return ``(xp, array)`` with ``xp`` NumPy or CuPy, without moving or copying data.

    GPU arrays from other libraries become zero-copy CuPy views.
    """
    if isinstance(x, np.ndarray):
        return np, x
    if is_device_array(x):
        cp = _cupy()
        if isinstance(x, cp.ndarray):
            return cp, x
        if hasattr(x, "__cuda_array_interface__"):
            return cp, cp.asarray(x)
        return cp, cp.from_dlpack(x)
    return np, np.asarray(x)


def namespace(*modules: ModuleType) -> ModuleType:
    """The common namespace of several arrays' modules; mixing host and device is an error."""
    first = modules[0]
    for xp in modules[1:]:
        if xp is not first:
            raise TypeError(
                "cannot mix NumPy (host) and CuPy (device) arrays in one call; move data "
                "explicitly with cupy.asarray(...) or cupy.asnumpy(...)"
            )
    return first


_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


def value_dtype(*dtypes: Any) -> np.dtype:
    """Floating type a computation runs in: float32 or float64 (integers and bools → float64)."""
    if all(d is _F64 for d in dtypes):  # the common case, without NumPy's promotion machinery
        return _F64
    dt = np.result_type(*dtypes)
    if dt.kind in "biu":
        return _F64
    if dt.kind == "f":
        if dt.itemsize <= 4:
            return _F32
        if dt.itemsize == 8:
            return _F64
    raise TypeError(f"unsupported dtype {dt}: curvkit computes in float32 or float64")


def device_id(xp: ModuleType, x: Any) -> int:
    """CUDA device ordinal of a CuPy array, 0 for host arrays."""
    return x.device.id if xp is not np else 0


def on_device(xp: ModuleType, dev: int) -> ContextManager[Any]:
    """Make GPU ``dev`` current, so CuPy allocates there (a no-op on the host or if it is)."""
    if xp is np or xp.cuda.runtime.getDevice() == dev:
        return contextlib.nullcontext()
    return xp.cuda.Device(dev)


def check_out(out: Any, xp: ModuleType, shape: tuple[int, ...], dtype: np.dtype, dev: int) -> None:
    """Validate a user-supplied ``out`` array: it is written in place, never replaced."""
    if not isinstance(out, xp.ndarray):
        kind = "numpy.ndarray" if xp is np else "cupy.ndarray"
        raise TypeError(f"out must be a {kind} like the inputs, got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"out has shape {out.shape}, expected {shape}")
    if out.dtype != dtype:
        raise TypeError(f"out has dtype {out.dtype}, expected {dtype}")
    if not (out.flags.c_contiguous or out.flags.f_contiguous):
        raise ValueError("out must be C- or F-contiguous")
    if xp is np and not out.flags.writeable:
        raise ValueError("out is read-only")
    if xp is not np and out.device.id != dev:
        raise ValueError(f"out is on GPU {out.device.id}, the inputs on GPU {dev}")


class _RawStream:
    """A raw cudaStream_t presented through the CUDA stream protocol."""

    def __init__(self, ptr: int) -> None:
        self.ptr = ptr

    def __cuda_stream__(self) -> tuple:
        return (0, self.ptr)


def on_stream(device: bool, stream: Any) -> ContextManager[Any]:
    """Context in which a call's CuPy work (conversions, allocations) is ordered on the user's
    ``stream=`` (a CuPy stream or raw cudaStream_t int); it yields that stream as a CuPy stream
    object, or None (CuPy's current stream) when no stream is given or the data is on the host."""
    if stream is None or not device:
        return contextlib.nullcontext(None)
    cp = _cupy()
    if isinstance(stream, int):
        from_external = getattr(cp.cuda.Stream, "from_external", None)
        if from_external is not None:  # CuPy >= 14: ExternalStream is deprecated
            return from_external(_RawStream(stream))
        return cp.cuda.ExternalStream(stream)
    if not hasattr(stream, "ptr") or not hasattr(stream, "__enter__"):
        raise TypeError("stream must be a cupy.cuda.Stream, a raw cudaStream_t int or None")
    return stream


def stream_pointer(xp: ModuleType, stream: Any) -> int:
    """cudaStream_t (as an int) to launch on: ``stream`` or CuPy's current stream; 0 on host."""
    if xp is np:
        return 0
    if stream is None:
        return int(xp.cuda.get_current_stream().ptr)
    if isinstance(stream, int):
        return stream
    ptr = getattr(stream, "ptr", None)
    if ptr is None:
        raise TypeError("stream must be a cupy.cuda.Stream, a raw cudaStream_t int or None")
    return int(ptr)
