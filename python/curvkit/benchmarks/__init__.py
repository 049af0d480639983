"""Microbenchmarks: curvkit against the peer library users run today, measured in one run.

Each benchmark returns rows holding our time, the peer's time on the same problem in the same
process, their ratio, the bandwidth achieved against the problem's byte floor, and the largest
relative difference between the two results (a correctness check, not a timing assertion).
Accuracy rows (estimators compared at equal numbers of products) also give each side's error
against the truth, and check the ratio of the two errors instead of a difference.
Run them with ``python -m curvkit bench``.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from dataclasses import asdict
from typing import Optional, Sequence

from ._harness import REGISTRY, Row, gpu_available

# Importing a module registers its benchmarks.
from . import cg, curvature, hvp, ot, special  # noqa: F401,E402

__all__ = ["REGISTRY", "Row", "run"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """What the numbers were measured on."""
    import numpy as np

    from .._build import build_info

    info = build_info()
    out = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "curvkit": info["version"],
        "curvkit_cuda": info["with_cuda"],
        "gpus": [g["name"] for g in info["gpus"]],
    }
    try:
        import scipy

        out["scipy"] = scipy.__version__
    except ImportError:
        pass
    if gpu_available():
        import cupy

        out["cupy"] = cupy.__version__
    return out


def _print_table(rows: Sequence[Row]) -> None:
    head = (f"{'benchmark':<24} {'problem':<30} {'ours':>10} {'peer':>10} {'peer is':<14}"
            f" {'speedup':>8} {'GB/s':>7} {'floor':>9} {'max rel diff':>12}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r.name:<24} {r.problem:<30} {_fmt_time(r.ours_s):>10} {_fmt_time(r.peer_s):>10}"
              f" {r.peer:<14} {r.speedup:>7.2f}x {r.gbps:>7.1f} {_fmt_time(r.floor_s):>9}"
              f" {r.max_rel_diff:>12.1e}" + _fmt_errors(r))
        if r.extra:
            print("    " + ", ".join(f"{k} {v}" for k, v in r.extra.items()))


def _fmt_errors(r: Row) -> str:
    if r.ours_err is None or r.peer_err is None:
        return ""
    return f"   rel err ours {r.ours_err:.2e} peer {r.peer_err:.2e}"


def _fmt_time(s: Optional[float]) -> str:
    if s is None or s != s:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def run(quick: bool = False, only: Optional[Sequence[str]] = None, json_path: Optional[str] = None,
        list_only: bool = False, device: str = "all") -> int:
    """Run the registered benchmarks and print a table; returns a process exit code."""
    selected = [b for b in REGISTRY
                if (not only or any(o in b.name for o in only))
                and (device == "all" or b.device == device)]
    if list_only:
        for b in selected:
            print(f"{b.name:<24} [{b.device}] {b.description}")
        return 0
    try:
        import scipy  # noqa: F401
    except ImportError:
        print("the benchmarks compare against SciPy: pip install 'curvkit[bench]'", file=sys.stderr)
        return 2
    info = machine()
    print("curvkit bench" + (" --quick" if quick else ""))
    for key, value in info.items():
        print(f"  {key}: {value}")
    print("  times are medians; speedup = peer time / our time; GB/s = byte floor / our time\n")
    rows: list[Row] = []
    for bench in selected:
        if bench.device == "gpu" and not gpu_available():
            print(f"{bench.name}: skipped (needs CuPy and a CUDA GPU with a CUDA build)")
            continue
        new = bench.fn(quick)
        rows.extend(new)
        _print_table(new)
        print()
    if rows:
        print("summary")
        _print_table(rows)
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"machine": info, "quick": quick, "rows": [asdict(r) for r in rows]}, f,
                      indent=2)
    bad = [r for r in rows if not (r.max_rel_diff <= r.tolerance)]
    for r in bad:
        print(f"CHECK FAILED: {r.name} {r.problem}: max rel diff {r.max_rel_diff:.2e} "
              f"> {r.tolerance:.0e}", file=sys.stderr)
    return 1 if bad else 0
