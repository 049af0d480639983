"""Downstream use of the installed core: a nanobind extension via find_package, C ABI via ctypes."""

from __future__ import annotations

import ctypes
import importlib
import importlib.machinery
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import curvkit

SOURCE_DIR = Path(__file__).resolve().parent / "downstream"
MODULE_NAME = "curvkit_downstream"

# Status codes from curvkit/c_api.h.
CURVKIT_OK = 0
CURVKIT_INVALID_VALUE = 1
CURVKIT_INVALID_TYPE = 2

# Scalar type codes from curvkit/c_api.h.
F32, F64, I32, I64 = 0, 1, 2, 3


def _close(y: np.ndarray, ref: np.ndarray, rtol: float = 1e-12) -> bool:
    # Norm-wise rather than element-wise: a row whose terms cancel has a tiny reference value
    # that a different (equally valid) summation order would fail element-wise.
    return bool(np.linalg.norm(y - ref) <= rtol * np.linalg.norm(ref))


@pytest.fixture(scope="module")
def problem():
    """A fixed random 300 x 200 CSR matrix (density 0.05, float64, int32 indices) and an x."""
    sparse = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(20240611)
    # Built by hand instead of scipy.sparse.random, whose seed keyword changed name across
    # SciPy versions (and the old one warns, which this suite turns into an error).
    dense = rng.standard_normal((300, 200))
    dense[rng.random((300, 200)) >= 0.05] = 0.0
    A = sparse.csr_array(dense)
    A.indptr = A.indptr.astype(np.int32)
    A.indices = A.indices.astype(np.int32)
    x = rng.standard_normal(200)
    return A, x


# ---------------------------------------------------------------------------------------------
# A nanobind extension built against the installed CMake package.


def _find_cmake() -> str | None:
    found = shutil.which("cmake")
    if found:
        return found
    try:
        import cmake  # the PyPI wheel, when its script dir is not on PATH
    except ImportError:
        return None
    return os.path.join(cmake.CMAKE_BIN_DIR, "cmake")


def _find_ninja() -> str | None:
    found = shutil.which("ninja")
    if found:
        return found
    try:
        import ninja
    except ImportError:
        return None
    return os.path.join(ninja.BIN_DIR, "ninja")


class _Build:
    """Outcome of building and importing tests/downstream: the module, or why there is none."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.module = None

    def run(self, cmd: list[str]) -> bool:
        proc = subprocess.run(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900
        )
        self.log.append("$ " + " ".join(cmd) + "\n" + proc.stdout)
        return proc.returncode == 0

    def get(self):
        # Failing here, in the test body, reports a broken build as FAILED with the CMake
        # output, where an exception in the fixture would only show as a setup ERROR.
        if self.module is None:
            pytest.fail("downstream build failed:\n" + "\n".join(self.log), pytrace=False)
        return self.module


@pytest.fixture(scope="module")
def downstream(tmp_path_factory):
    """Configures, builds and imports tests/downstream once for this module."""
    pytest.importorskip("nanobind", reason="nanobind is needed to build the downstream extension")
    cmake = _find_cmake()
    if cmake is None:
        pytest.skip("cmake is not installed (pip install cmake)")

    build_dir = tmp_path_factory.mktemp("downstream-build")
    configure = [
        cmake,
        "-S", str(SOURCE_DIR),
        "-B", str(build_dir),
        "-DCMAKE_BUILD_TYPE=Release",
        f"-Dcurvkit_DIR={curvkit.get_cmake_dir()}",
        f"-DPython_EXECUTABLE={sys.executable}",
    ]  # fmt: skip
    ninja = _find_ninja()
    # A generator chosen through the environment is the user's call; otherwise prefer Ninja.
    if ninja is not None and "CMAKE_GENERATOR" not in os.environ:
        configure += ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"]
    build = [cmake, "--build", str(build_dir), "--config", "Release",
             "--parallel", str(os.cpu_count() or 2)]  # fmt: skip

    result = _Build()
    if not (result.run(configure) and result.run(build)):
        yield result
        return

    # Multi-config generators put the module in a per-config subfolder, so search for it.
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    built = [p for p in build_dir.rglob(MODULE_NAME + "*") if p.name.endswith(suffixes)]
    if not built:
        result.log.append(f"no {MODULE_NAME}{{{','.join(suffixes)}}} under {build_dir}")
        yield result
        return

    module_dir = str(built[0].parent)
    sys.path.insert(0, module_dir)
    try:
        importlib.invalidate_caches()
        result.module = importlib.import_module(MODULE_NAME)
        yield result
    finally:
        sys.path.remove(module_dir)
        sys.modules.pop(MODULE_NAME, None)


@pytest.mark.slow
def test_extension_matvec_matches_scipy(downstream, problem):
    ext = downstream.get()
    A, x = problem
    y = ext.csr_matvec(A.indptr, A.indices, A.data, A.shape[1], x)
    assert isinstance(y, np.ndarray)
    assert y.shape == (A.shape[0],) and y.dtype == np.float64
    assert _close(y, A @ x)


@pytest.mark.slow
def test_extension_links_the_installed_core(downstream):
    assert downstream.get().version() == curvkit.__version__


@pytest.mark.slow
def test_extension_rejects_bad_input(downstream, problem):
    ext = downstream.get()
    A, x = problem
    # Shape errors come from csr_matmul as curvkit::error (invalid_value).
    with pytest.raises(ValueError, match="shape"):
        ext.csr_matvec(A.indptr, A.indices, A.data, A.shape[1], np.ones(A.shape[1] + 1))
    # An out-of-range column index is caught by the extension's csr_check call.
    bad_indices = A.indices.copy()
    bad_indices[0] = A.shape[1]
    with pytest.raises(ValueError, match="out of range"):
        ext.csr_matvec(A.indptr, bad_indices, A.data, A.shape[1], x)
    # nanobind's dtype constraint rejects int64 indices instead of copying them.
    with pytest.raises(TypeError):
        ext.csr_matvec(A.indptr.astype(np.int64), A.indices, A.data, A.shape[1], x)


# ---------------------------------------------------------------------------------------------
# The extern "C" ABI through ctypes.


class _Dense(ctypes.Structure):
    """struct curvkit_dense in curvkit/c_api.h, field for field."""

    _fields_ = [
        ("data", ctypes.c_void_p),
        ("dtype", ctypes.c_int32),
        ("device", ctypes.c_int32),
        ("device_id", ctypes.c_int32),
        ("ndim", ctypes.c_int32),
        ("rows", ctypes.c_int64),
        ("cols", ctypes.c_int64),
        ("row_stride", ctypes.c_int64),
        ("col_stride", ctypes.c_int64),
    ]


class _Csr(ctypes.Structure):
    """struct curvkit_csr in curvkit/c_api.h, field for field."""

    _fields_ = [
        ("rows", ctypes.c_int64),
        ("cols", ctypes.c_int64),
        ("nnz", ctypes.c_int64),
        ("indptr", ctypes.c_void_p),
        ("indices", ctypes.c_void_p),
        ("values", ctypes.c_void_p),
        ("index_dtype", ctypes.c_int32),
        ("value_dtype", ctypes.c_int32),
        ("storage", ctypes.c_int32),
        ("device", ctypes.c_int32),
        ("device_id", ctypes.c_int32),
    ]


_DTYPE_CODES = {np.dtype(np.float32): F32, np.dtype(np.float64): F64,
                np.dtype(np.int32): I32, np.dtype(np.int64): I64}  # fmt: skip


def _dense(v: np.ndarray) -> _Dense:
    # The struct only borrows v's buffer: the caller keeps v alive across the call.
    assert v.ndim == 1 and v.flags.c_contiguous
    return _Dense(data=v.ctypes.data, dtype=_DTYPE_CODES[v.dtype], device=0, device_id=0,
                  ndim=1, rows=v.shape[0], cols=1, row_stride=1, col_stride=1)  # fmt: skip


def _csr(A) -> _Csr:
    return _Csr(rows=A.shape[0], cols=A.shape[1], nnz=A.nnz,
                indptr=A.indptr.ctypes.data, indices=A.indices.ctypes.data,
                values=A.data.ctypes.data, index_dtype=_DTYPE_CODES[A.indices.dtype],
                value_dtype=_DTYPE_CODES[A.data.dtype], storage=0, device=0,
                device_id=0)  # fmt: skip


class _CgOptions(ctypes.Structure):
    _fields_ = [("rtol", ctypes.c_double), ("atol", ctypes.c_double),
                ("maxiter", ctypes.c_int64), ("check_every", ctypes.c_int64)]


class _CgReport(ctypes.Structure):
    _fields_ = [("iterations", ctypes.c_int64), ("residual_norm", ctypes.c_double),
                ("true_residual_norm", ctypes.c_double), ("tolerance", ctypes.c_double),
                ("reason", ctypes.c_int32)]


@pytest.fixture(scope="module")
def c_api():
    lib = ctypes.CDLL(curvkit.get_library())
    lib.curvkit_csr_matmul.argtypes = [
        ctypes.POINTER(_Csr), ctypes.POINTER(_Dense), ctypes.POINTER(_Dense), ctypes.c_void_p
    ]
    lib.curvkit_csr_matmul.restype = ctypes.c_int
    lib.curvkit_csr_diagonal.argtypes = [
        ctypes.POINTER(_Csr), ctypes.POINTER(_Dense), ctypes.c_void_p
    ]
    lib.curvkit_csr_diagonal.restype = ctypes.c_int
    lib.curvkit_cg_workspace_size.argtypes = [
        ctypes.c_int32, ctypes.c_int64, ctypes.c_int64, ctypes.POINTER(_CgOptions)
    ]
    lib.curvkit_cg_workspace_size.restype = ctypes.c_size_t
    lib.curvkit_cg_solve.argtypes = [ctypes.POINTER(_Csr)] + [ctypes.POINTER(_Dense)] * 6 + [
        ctypes.POINTER(_CgOptions), ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(_CgReport),
        ctypes.c_void_p,
    ]
    lib.curvkit_cg_solve.restype = ctypes.c_int
    lib.curvkit_last_error.argtypes = []
    lib.curvkit_last_error.restype = ctypes.c_char_p
    lib.curvkit_version.argtypes = []
    lib.curvkit_version.restype = ctypes.c_char_p
    return lib


def test_c_api_csr_matmul(c_api, problem):
    A, x = problem
    assert c_api.curvkit_version().decode() == curvkit.__version__

    y = np.full(A.shape[0], np.nan)
    status = c_api.curvkit_csr_matmul(_csr(A), _dense(x), _dense(y), None)
    assert status == CURVKIT_OK, c_api.curvkit_last_error()
    assert c_api.curvkit_last_error() == b""
    assert _close(y, A @ x)

    # A wrong-length x is reported through the status code and message, never an exception.
    x_long = np.ones(A.shape[1] + 1)
    status = c_api.curvkit_csr_matmul(_csr(A), _dense(x_long), _dense(y), None)
    assert status == CURVKIT_INVALID_VALUE
    assert c_api.curvkit_last_error()

    x32 = x.astype(np.float32)
    status = c_api.curvkit_csr_matmul(_csr(A), _dense(x32), _dense(y), None)
    assert status == CURVKIT_INVALID_TYPE
    assert c_api.curvkit_last_error()


def test_c_api_csr_diagonal(c_api, problem):
    A, _ = problem
    d = np.full(min(A.shape), np.nan)
    assert c_api.curvkit_csr_diagonal(_csr(A), _dense(d), None) == CURVKIT_OK
    np.testing.assert_array_equal(d, A.diagonal())
    d_short = np.empty(min(A.shape) - 1)
    assert c_api.curvkit_csr_diagonal(_csr(A), _dense(d_short), None) == CURVKIT_INVALID_VALUE
    assert b"min(rows, cols)" in c_api.curvkit_last_error()


def test_c_api_cg_solve(c_api):
    from curvkit.benchmarks.problems import poisson2d

    A = poisson2d(20)
    n = A.shape[0]
    b = np.random.default_rng(5).standard_normal(n)
    x, r, p, q = np.zeros(n), np.empty(n), np.empty(n), np.empty(n)
    inv = 1 / A.diagonal()
    opts = _CgOptions(rtol=1e-10, atol=0.0, maxiter=-1, check_every=0)
    nbytes = c_api.curvkit_cg_workspace_size(0, n, 1, ctypes.byref(opts))
    ws = np.empty(nbytes // 8 + 1)
    report = _CgReport()
    status = c_api.curvkit_cg_solve(_csr(A), _dense(b), _dense(x), _dense(r), _dense(p),
                                    _dense(q), _dense(inv), ctypes.byref(opts), ws.ctypes.data,
                                    ws.nbytes, ctypes.byref(report), None)
    assert status == CURVKIT_OK, c_api.curvkit_last_error()
    assert report.reason == 1 and report.iterations > 0
    np.testing.assert_allclose(x, np.linalg.solve(A.toarray(), b), rtol=1e-8, atol=1e-10)
    assert report.true_residual_norm <= 1.01e-10 * np.linalg.norm(b)
    # Too little workspace is a status code, not a crash.
    status = c_api.curvkit_cg_solve(_csr(A), _dense(b), _dense(x), _dense(r), _dense(p),
                                    _dense(q), None, ctypes.byref(opts), ws.ctypes.data, 8,
                                    ctypes.byref(report), None)
    assert status == CURVKIT_INVALID_VALUE and b"workspace" in c_api.curvkit_last_error()
