"""The installed package: build facts, command line, C++ files for downstream users, bench."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points

import curvkit


def run_cli(*args: str) -> str:
    res = subprocess.run([sys.executable, "-m", "curvkit", *args], capture_output=True, text=True,
                         check=True, timeout=300)
    return res.stdout


def test_build_info():
    info = curvkit.build_info()
    assert info["version"] == curvkit.__version__
    assert isinstance(curvkit.with_cuda, bool) and info["with_cuda"] is curvkit.with_cuda
    if curvkit.with_cuda:
        assert info["cuda_architectures"] and info["cuda_runtime_version"] >= 12000
    else:
        assert info["cuda_architectures"] == "" and info["gpus"] == []
    for gpu in info["gpus"]:
        assert gpu["name"] and gpu["memory_bytes"] > 0


def test_info_command():
    out = run_cli("info")
    assert f"curvkit {curvkit.__version__}" in out
    assert ("CUDA on" in out) == curvkit.with_cuda
    assert "gpus visible" in out or "gpu 0" in out


def test_cmake_and_include_dirs():
    cmake_dir = run_cli("--cmakedir").strip()
    assert cmake_dir == curvkit.get_cmake_dir()
    assert os.path.isfile(os.path.join(cmake_dir, "curvkitConfig.cmake"))
    assert os.path.isfile(os.path.join(cmake_dir, "curvkitTargets.cmake"))
    inc = curvkit.get_include()
    for header in ("curvkit.hpp", "sparse.hpp", "types.hpp", "version.hpp", "c_api.h"):
        assert os.path.isfile(os.path.join(inc, "curvkit", header)), header
    assert os.path.isfile(curvkit.get_library())
    roots = {ep.name: ep.value for ep in entry_points(group="cmake.root")}
    assert roots.get("curvkit") == "curvkit"


def test_bench_quick_runs_and_checks(tmp_path):
    from curvkit.benchmarks import run

    path = tmp_path / "bench.json"
    assert run(quick=True, only=["hvp_cpu", "hvp_symmetric_cpu"], json_path=str(path),
               device="cpu") == 0
    data = json.loads(path.read_text())
    names = {r["name"] for r in data["rows"]}
    assert names == {"hvp_cpu", "hvp_symmetric_cpu"}
    for r in data["rows"]:
        assert r["ours_s"] > 0 and r["peer_s"] > 0 and r["max_rel_diff"] <= r["tolerance"]
    assert data["machine"]["cores"] >= 1


def test_bench_list():
    out = run_cli("bench", "--list")
    assert "hvp_cpu" in out and "hvp_block16_gpu" in out
