"""curvkit: curvature kernels for NumPy and CuPy.

Sparse Hessian-vector products, Hessian diagonal estimation (:mod:`curvkit.curvature`),
conjugate gradients (:mod:`curvkit.linalg`), entropic optimal transport (:mod:`curvkit.ot`),
log-space modified Bessel functions and von Mises-Fisher helpers (:mod:`curvkit.special`) on
CPU (multithreaded) and GPU (CUDA), with a C++ core that other extensions can link (see
:func:`get_cmake_dir`).
"""

from __future__ import annotations

import os

# Idle OpenMP workers spin before they sleep, by default for ~300k iterations (libgomp reads
# this once, when the core library loads it below). On a machine whose cores are shared, that
# spinning between two kernels takes the core another process needs, and a 2-thread CG step
# measured 25 ms instead of 5 ms with another process busy on one of two cores. A short spin
# keeps back-to-back kernels warm and lets go of the core soon after; the user's choice wins.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "10000"

from . import _core, curvature, linalg, ot, special  # noqa: E402
from ._build import build_info, get_cmake_dir, get_include, get_library  # noqa: E402
from .sparse import CSRMatrix, as_operator, hvp  # noqa: E402

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
    "special",
    "with_cuda",
]
