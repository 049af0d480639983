"""Benchmark registry, result rows and the two timers (host clock on CPU, CUDA events on GPU)."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, List, Optional


@dataclass
class Row:
    """One measured problem: ours against the peer, same inputs, same run."""

    name: str
    problem: str
    ours_s: float
    peer_s: float
    peer: str
    floor_bytes: float
    max_rel_diff: float
    tolerance: float
    bandwidth_gbps: Optional[float] = None  # the device copy rate the floor is taken from
    ours_call_s: Optional[float] = None  # GPU: host time per call, launch overhead included
    peer_call_s: Optional[float] = None
    ours_err: Optional[float] = None  # accuracy rows: each side's error against the truth
    peer_err: Optional[float] = None
    extra: Optional[dict] = None  # benchmark-specific figures (iterations, errors reached)

    @property
    def speedup(self) -> float:
        return self.peer_s / self.ours_s

    @property
    def gbps(self) -> float:
        return self.floor_bytes / self.ours_s / 1e9

    @property
    def floor_s(self) -> Optional[float]:
        if not self.bandwidth_gbps:
            return None
        return self.floor_bytes / (self.bandwidth_gbps * 1e9)


@dataclass
class Benchmark:
    name: str
    device: str  # "cpu" or "gpu"
    description: str
    fn: Callable[[bool], List[Row]]


REGISTRY: List[Benchmark] = []


def benchmark(name: str, device: str, description: str):
    """Register ``fn(quick) -> list[Row]`` under ``name``."""

    def wrap(fn: Callable[[bool], List[Row]]):
        REGISTRY.append(Benchmark(name, device, description, fn))
        return fn

    return wrap


def _batch_size(fn: Callable[[], Any], budget: float) -> int:
    fn()  # warm up: first-touch page faults, thread start-up
    t0 = time.perf_counter()
    fn()
    return max(1, int(budget / max(time.perf_counter() - t0, 1e-7)))


def _batch(fn: Callable[[], Any], number: int) -> float:
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def time_cpu_pair(ours: Callable[[], Any], peer: Callable[[], Any], *, min_time: float = 0.4,
                  repeat: int = 9) -> tuple[float, float]:
    """Median seconds per call of two functions, timed in alternating batches so that drifts of
    the machine (clock, neighbours, memory speed) weigh on both alike."""
    budget = min_time / 2 / repeat
    n_ours, n_peer = _batch_size(ours, budget), _batch_size(peer, budget)
    a, b = [], []
    for _ in range(repeat):
        a.append(_batch(ours, n_ours))
        b.append(_batch(peer, n_peer))
    return statistics.median(a), statistics.median(b)


def time_gpu(fn: Callable[[], Any], *, n_repeat: int = 200) -> tuple[float, float]:
    """(median device time, median host time) per call of ``fn``, from CUDA events."""
    from cupyx.profiler import benchmark as cupy_benchmark

    res = cupy_benchmark(fn, n_repeat=n_repeat, n_warmup=10)
    import numpy as np

    return float(np.median(res.gpu_times[0])), float(np.median(res.cpu_times))


_gpu: Optional[bool] = None


def gpu_available() -> bool:
    """CuPy importable, a GPU visible, and this curvkit build has the CUDA kernels."""
    global _gpu
    if _gpu is None:
        try:
            import cupy

            from .. import _core

            _gpu = bool(_core.with_cuda()) and cupy.cuda.runtime.getDeviceCount() > 0
        except Exception:
            _gpu = False
    return _gpu


def device_copy_gbps() -> float:
    """Measured device-to-device copy rate (bytes read + written), the GPU's practical ceiling."""
    import cupy

    free = cupy.cuda.runtime.memGetInfo()[0]
    nbytes = min(1 << 30, free // 4)  # large enough that caches do not matter
    a = cupy.ones(nbytes // 8, dtype=cupy.float64)
    b = cupy.empty_like(a)
    gpu_s, _ = time_gpu(lambda: b.__setitem__(Ellipsis, a), n_repeat=50)
    return 2 * a.nbytes / gpu_s / 1e9


def rel_diff(ours: Any, ref: Any) -> float:
    """max |ours - ref| / max |ref| (host or device arrays)."""
    import numpy as np

    xp = np
    if type(ours).__module__.startswith("cupy"):
        import cupy as xp  # type: ignore[no-redef]
    scale = float(xp.abs(ref).max()) if ref.size else 0.0
    diff = float(xp.abs(ours - ref).max()) if ref.size else 0.0
    return diff / scale if scale > 0 else diff
