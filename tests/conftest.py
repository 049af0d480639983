"""Shared fixtures: the array namespace parameter (NumPy always, CuPy where a GPU is usable)."""

from __future__ import annotations

import numpy as np
import pytest

import curvkit


def _gpu_ready() -> bool:
    if not curvkit.with_cuda:
        return False
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


GPU_READY = _gpu_ready()


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs CuPy, a CUDA GPU and a curvkit build with CUDA")
    for item in items:
        if "gpu" in item.keywords and not GPU_READY:
            item.add_marker(skip)


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def xp(request):
    """The array module under test."""
    if request.param == "numpy":
        return np
    import cupy

    return cupy


def to_device(xp, A):
    """A SciPy CSR matrix as the matching CSR type of ``xp`` (itself for NumPy)."""
    if xp is np:
        return A
    import cupyx.scipy.sparse as cps

    return cps.csr_matrix(A)


def to_host(x):
    return x.get() if hasattr(x, "get") else np.asarray(x)
