"""Where the installed C++ core lives, and what this build contains."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import _core

# Next to the compiled module, not this file: an editable install keeps the Python sources in
# the source tree while the compiled parts (lib/, include/) are installed.
_HERE = Path(_core.__file__).resolve().parent


def get_include() -> str:
    """Directory holding ``curvkit/*.hpp``, for compiling against the C++ API."""
    return str(_HERE / "include")


def get_cmake_dir() -> str:
    """Directory holding ``curvkitConfig.cmake``: pass it as ``curvkit_DIR`` to CMake."""
    return str(_HERE / "lib" / "cmake" / "curvkit")


def get_library() -> str:
    """Path of the shared core library ``libcurvkit_core`` (for ctypes/cffi users of the C ABI)."""
    matches = sorted((_HERE / "lib").glob("libcurvkit_core.*"))
    if not matches:
        raise FileNotFoundError("libcurvkit_core not found next to the curvkit package")
    return str(matches[0])


def build_info() -> dict[str, Any]:
    """Version, CUDA support and architectures of this build, and the GPUs visible now."""
    return {
        "version": _core.version(),
        "with_cuda": _core.with_cuda(),
        "cuda_architectures": _core.cuda_architectures(),
        "cuda_runtime_version": _core.cuda_runtime_version(),
        "gpus": _core.visible_gpus(),
    }
