"""curvkit in child processes and under memory pressure: an answer or a Python error, never a
hang or an abort."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

import curvkit
from curvkit.benchmarks.problems import random_csr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_products_in_a_forked_child():
    A = random_csr(40_000, 12, seed=21)
    U = sp.triu(A + A.T, format="csr")
    H, S = curvkit.CSRMatrix.from_sparse(A), curvkit.CSRMatrix.from_sparse(U, symmetric="upper")
    v = np.random.default_rng(22).standard_normal(40_000)
    want_h, want_s = H @ v, S @ v  # the parent's thread team now exists
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads, Python ≥ 3.12
        pid = os.fork()
    if pid == 0:  # child: exit status tells the parent whether the products were right
        ok = np.allclose(H @ v, want_h) and np.allclose(S @ v, want_s)
        os._exit(0 if ok else 1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("a product in a forked child did not finish (thread pool lost in fork)")


@pytest.mark.skipif(sys.platform != "linux" or (os.cpu_count() or 1) < 2,
                    reason="needs RLIMIT_AS and two cores (one thread needs no spill)")
def test_triangle_product_out_of_memory_is_a_memory_error():
    script = textwrap.dedent(
        """
        import resource, numpy as np, scipy.sparse as sp, curvkit
        from curvkit.benchmarks.problems import random_csr
        n, k = 400_000, 8
        A = random_csr(n, 4, seed=1)
        U = sp.triu(A + A.T, format="csr")
        H = curvkit.CSRMatrix.from_sparse(U, symmetric="upper")
        V = np.ones((n, k)); out = np.empty((n, k))
        curvkit.hvp(A, V, out=out)  # warm the thread team and the pages of V and out (no spill)
        used = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (used + (8 << 20), resource.RLIM_INFINITY))
        try:
            H.matmat(V, out)
        except MemoryError:
            print("MemoryError")
        else:
            print("no error")
        """
    )
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert res.returncode == 0, res.stderr[-2000:]  # no abort from inside the thread team
    # With 8 MiB of headroom the cross-thread spill (n*k*8 = 25.6 MB) cannot be allocated.
    assert res.stdout.strip() == "MemoryError"
