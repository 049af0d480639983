"""Command line: ``python -m curvkit info | bench [...] | --cmakedir | --includedir``."""

from __future__ import annotations

import argparse
import platform
import sys
from typing import Optional, Sequence


def _info() -> int:
    import numpy as np

    from ._build import build_info, get_cmake_dir

    info = build_info()
    print(f"curvkit {info['version']}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}")
    if info["with_cuda"]:
        rt = info["cuda_runtime_version"]
        print(f"build: CUDA on (runtime {rt // 1000}.{rt % 1000 // 10}), "
              f"architectures {info['cuda_architectures']}")
    else:
        print("build: CUDA off (CPU kernels only)")
    if info["gpus"]:
        for g in info["gpus"]:
            cc = "{}.{}".format(*g["compute_capability"])
            print(f"gpu {g['id']}: {g['name']}, sm_{cc.replace('.', '')}, "
                  f"{g['memory_bytes'] / 2**30:.1f} GiB")
    else:
        print("gpus visible: none")
    print(f"cmake dir: {get_cmake_dir()}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m curvkit", description=__doc__)
    parser.add_argument("--cmakedir", action="store_true", help="print the CMake package dir")
    parser.add_argument("--includedir", action="store_true", help="print the C++ include dir")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("info", help="version, build and visible GPUs")
    bench = sub.add_parser("bench", help="microbenchmarks against the peer libraries")
    bench.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    bench.add_argument("--only", metavar="NAME", action="append",
                       help="run benchmarks whose name contains NAME (repeatable)")
    bench.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    bench.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    bench.add_argument("--device", choices=["cpu", "gpu", "all"], default="all")
    args = parser.parse_args(argv)

    if args.cmakedir or args.includedir:
        from ._build import get_cmake_dir, get_include

        print(get_cmake_dir() if args.cmakedir else get_include())
        return 0
    if args.command == "info":
        return _info()
    if args.command == "bench":
        from .benchmarks import run

        return run(quick=args.quick, only=args.only, json_path=args.json,
                   list_only=args.list, device=args.device)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
