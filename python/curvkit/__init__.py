"""curvkit: curvature kernels for NumPy and CuPy.

Sparse Hessian-vector products, Hessian diagonal estimation (:mod:`curvkit.curvature`),
conjugate gradients (:mod:`curvkit.linalg`) and entropic optimal transport (:mod:`curvkit.ot`)
on CPU (multithreaded) and GPU (CUDA), with a C++
core that other extensions can link (see :func:`get_cmake_dir`).
"""

from __future__ import annotations

from . import _core, curvature, linalg, ot
from ._build import build_info, get_cmake_dir, get_include, get_library
from .sparse import CSRMatrix, as_operator, hvp

__version__: str = _core.version()

#: True when this build contains the CUDA kernels.
with_cuda: bool = _core.with_cuda()

__all__ = [
    "CSRMatrix",
    "curvature",
    "__version__",
    "as_operator",
    "build_info",
    "get_cmake_dir",
    "get_include",
    "get_library",
    "hvp",
    "linalg",
    "ot",
    "with_cuda",
]
