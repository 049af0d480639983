"""Entropic optimal transport: Sinkhorn-Newton-Sparse and our log-domain Sinkhorn against POT's
``sinkhorn_log`` (NumPy backend on the CPU, CuPy backend on a GPU), or against our own Sinkhorn
where POT is not importable. Every solver runs to the same L1 marginal error (1e-9) or its
iteration cap; the rows report iterations, passes over the cost matrix and the error reached.

Problems: random point clouds (``ot-sns-*``; ``ot-large-cpu`` is one 2-D cloud of n = 8000),
and histograms on grids (``ot-hist-*``): two smooth 1-D densities on 1000 points with the W1
and W2 costs, and two 28 x 28 blob images with the squared pixel distance
(:mod:`curvkit.benchmarks.problems`).

Long solves are timed once (they last seconds, far above the clock's resolution and the
machine's jitter); short ones take the median of three runs. The two Sinkhorns get the
iterations that fit in a time budget (30 s on a CPU, 10 s on a GPU, 5 s with --quick): where
they stop there, the speedup shown is a lower bound and the error they reached is reported. On a
GPU every solver first runs once on a small problem, so that the timings exclude the one-off
compilation of CuPy's array kernels.
"""

from __future__ import annotations

import statistics
import time
from functools import partial
from typing import Any, Callable, List, Optional, Tuple

import numpy as np

from .. import ot
from ._harness import Row, benchmark, rel_diff
from .problems import blob_images, densities_1d

STOP = 1e-9


def clouds(n: int, d: int, seed: int = 0, xp: Any = np):
    """Two random n-point clouds in [0, 1]^d, squared Euclidean cost scaled to max 1, uniform
    marginals."""
    rng = np.random.default_rng(seed)
    x, y = rng.random((n, d)), rng.random((n, d))
    M = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    M /= M.max()
    a = np.full(n, 1.0 / n)
    return xp.asarray(a), xp.asarray(a.copy()), xp.asarray(M)


def _pot() -> Optional[Any]:
    try:
        import ot as pot  # POT, the Python Optimal Transport library
    except ImportError:
        return None
    return pot


def _timed(fn: Callable[[], Any], sync: Callable[[], None]) -> tuple[float, Any]:
    def once() -> tuple[float, Any]:
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        return time.perf_counter() - t0, out

    t, out = once()
    if t < 1.0:
        times = [t] + [once()[0] for _ in range(2)]
        t = statistics.median(times)
    return t, out


def _l1(P: Any, a: Any, b: Any) -> float:
    return float(abs(P.sum(1) - a).sum() + abs(P.sum(0) - b).sum())


def _iteration_cap(run: Callable[[int], Any], sync: Callable[[], None], cap: int,
                   budget_s: float) -> int:
    """Iterations that fit in budget_s, from the time of a 10-iteration probe, at most cap."""
    sync()
    t0 = time.perf_counter()
    run(10)
    sync()
    per = (time.perf_counter() - t0) / 10
    return int(max(10, min(cap, budget_s / max(per, 1e-9))))


Problem = Tuple[str, Callable[[], tuple], float]  # (name, () -> (a, b, M) in NumPy, reg)


def _cloud_problems(grid: list) -> List[Problem]:
    return [(f"{d}-D n={n} reg={reg:g}", partial(clouds, n, d), reg) for d, n, reg in grid]


# Iteration cap of every solver (the Sinkhorns are also held to a time budget per problem).
_ITERATION_CAP = 100_000


def _warm_up(xp: Any, pot: Optional[Any]) -> None:
    """One small solve by each solver, so that CuPy compiles its kernels before the clock runs."""
    a, b, M = clouds(64, 2, seed=1, xp=xp)
    for method in ("sns", "sinkhorn"):
        ot.sinkhorn_potentials(a, b, M, 1e-2, method=method, numItermax=1000).plan()
    if pot is not None:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pot.sinkhorn(a, b, M, 1e-2, method="sinkhorn_log", numItermax=100)


def _rows(problems: List[Problem], xp: Any, sync: Callable[[], None], bench: str,
          quick: bool) -> List[Row]:
    """SNS, our Sinkhorn and POT on each (name, make, reg); the two Sinkhorns stop at 1e-9 or
    after the iterations that fit in the time budget (30 s on a CPU, 10 s on a GPU, 5 s when
    quick; then the speedup is a lower bound)."""
    cap = _ITERATION_CAP
    budget_s = 5.0 if quick else (30.0 if xp is np else 10.0)
    pot = _pot()
    if xp is not np:
        _warm_up(xp, pot)
    rows: List[Row] = []
    for name, make, reg in problems:
        a, b, M = (xp.asarray(x) for x in make())
        n = M.shape[0]
        t_sns, sns = _timed(lambda: ot.sinkhorn_potentials(a, b, M, reg, numItermax=cap), sync)

        def ours_sinkhorn(k: int) -> Any:
            return ot.sinkhorn_potentials(a, b, M, reg, method="sinkhorn", numItermax=k)

        snk_cap = _iteration_cap(ours_sinkhorn, sync, cap, budget_s)
        t_snk, snk = _timed(lambda: ours_sinkhorn(snk_cap), sync)
        P_sns = sns.plan()
        extra = {
            "sns iterations": f"{sns.iterations['sinkhorn']}+{sns.iterations['newton']}N",
            "sns passes": sns.passes, "sns cg": sns.cg_iterations,
            "sns err": f"{sns.marginal_error:.1e}",
            "sinkhorn iterations": snk.iterations["sinkhorn"]
            if snk.converged else f"{snk.iterations['sinkhorn']} (capped)",
            "sinkhorn passes": snk.passes, "sinkhorn err": f"{snk.marginal_error:.1e}",
            "sinkhorn s": f"{t_snk:.3g}",
        }
        if pot is not None:
            import warnings

            box: dict = {}

            def peer(k: int) -> Any:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # "did not converge" when capped
                    P, log = pot.sinkhorn(a, b, M, reg, method="sinkhorn_log", stopThr=STOP,
                                          numItermax=k, log=True)
                box["niter"] = int(log.get("niter", k))
                return P

            peer_cap = _iteration_cap(peer, sync, cap, budget_s)
            t_peer, P_peer = _timed(lambda: peer(peer_cap), sync)
            peer_err = _l1(P_peer, a, b)
            capped = box["niter"] >= peer_cap - 1
            extra.update({"pot iterations": f"{box['niter']}" + (" (capped)" if capped else ""),
                          "pot err": f"{peer_err:.1e}"})
            peer_name = "pot sinkhorn_log"
        else:
            t_peer, P_peer, peer_err = t_snk, snk.plan(), snk.marginal_error
            peer_name = "our sinkhorn"
        converged = bool(sns.converged) and peer_err <= 10 * STOP
        rows.append(Row(
            name=bench, problem=name, ours_s=t_sns, peer_s=t_peer, peer=peer_name,
            floor_bytes=float(sns.passes) * M.size * 8, max_rel_diff=rel_diff(P_sns, P_peer),
            # A peer stopped by its cap has not reached the plan: no agreement is expected.
            tolerance=1e-4 if converged else float("inf"), extra=extra,
        ))
    return rows


def _grid(quick: bool) -> List[Problem]:
    if quick:
        return _cloud_problems([(2, 300, 1e-2), (2, 300, 1e-3)])
    return _cloud_problems([(d, n, reg) for d in (2, 5) for n in (500, 1000, 2000)
                            for reg in (1e-2, 1e-3, 1e-4)])


def _histogram_grid(quick: bool) -> List[Problem]:
    """1-D densities on a grid (W1 and W2 costs) and 28 x 28 blob images at reg 1e-2..1e-4
    (quick: smaller versions at reg 1e-3)."""
    n, side = (300, 14) if quick else (1000, 28)
    regs = (1e-3,) if quick else (1e-2, 1e-3, 1e-4)
    makers = [(f"1-D W1 n={n}", partial(densities_1d, n, 1)),
              (f"1-D W2 n={n}", partial(densities_1d, n, 2)),
              (f"image {side}x{side}", partial(blob_images, side))]
    return [(f"{label} reg={reg:g}", make, reg) for label, make in makers for reg in regs]


@benchmark("ot-sns-cpu", "cpu",
           "entropic OT, point clouds: SNS vs POT sinkhorn_log (NumPy) to L1 error 1e-9")
def bench_cpu(quick: bool) -> List[Row]:
    return _rows(_grid(quick), np, lambda: None, "ot-sns-cpu", quick)


@benchmark("ot-hist-cpu", "cpu",
           "entropic OT, 1-D densities (W1, W2) and 28x28 images: SNS vs POT sinkhorn_log "
           "(NumPy) to L1 error 1e-9")
def bench_hist_cpu(quick: bool) -> List[Row]:
    return _rows(_histogram_grid(quick), np, lambda: None, "ot-hist-cpu", quick)


@benchmark("ot-large-cpu", "cpu",
           "entropic OT, 2-D point clouds n = 8000 (M is 512 MB): SNS vs POT sinkhorn_log "
           "(NumPy), POT capped at 30 s")
def bench_large_cpu(quick: bool) -> List[Row]:
    grid = [(2, 2000, 1e-3)] if quick else [(2, 8000, 1e-3)]
    return _rows(_cloud_problems(grid), np, lambda: None, "ot-large-cpu", quick)


def _cupy() -> tuple:
    """CuPy and a function that waits for its current stream (the GPU benchmarks' clock)."""
    import cupy as cp

    def sync() -> None:
        cp.cuda.get_current_stream().synchronize()

    return cp, sync


@benchmark("ot-sns-gpu", "gpu",
           "entropic OT, point clouds: SNS vs POT sinkhorn_log (CuPy) to L1 error 1e-9")
def bench_gpu(quick: bool) -> List[Row]:
    cp, sync = _cupy()
    return _rows(_grid(quick), cp, sync, "ot-sns-gpu", quick)


@benchmark("ot-hist-gpu", "gpu",
           "entropic OT, 1-D densities (W1, W2) and 28x28 images: SNS vs POT sinkhorn_log "
           "(CuPy) to L1 error 1e-9")
def bench_hist_gpu(quick: bool) -> List[Row]:
    cp, sync = _cupy()
    return _rows(_histogram_grid(quick), cp, sync, "ot-hist-gpu", quick)


@benchmark("ot-batch-gpu", "gpu",
           "B = 1024 problems of n = 64 solved together (log-domain Sinkhorn) vs POT looped "
           "and POT solve_batch")
def bench_batch_gpu(quick: bool) -> List[Row]:
    cp, sync = _cupy()
    B, n, reg = (128 if quick else 1024), 64, 1e-2
    rng = np.random.default_rng(0)
    x, y = rng.random((B, n, 2)), rng.random((B, n, 2))
    M = ((x[:, :, None, :] - y[:, None, :, :]) ** 2).sum(-1)
    M /= M.max(axis=(1, 2), keepdims=True)
    a = np.full((B, n), 1.0 / n)
    Md, ad = cp.asarray(M), cp.asarray(a)
    pot = _pot()
    _warm_up(cp, pot)

    def ours() -> Any:
        return ot.sinkhorn_potentials(ad, ad, Md, reg, method="sinkhorn", numItermax=100_000)

    ours().plan()  # CuPy compiles the plan's array kernels for these shapes outside the clock
    t, res = _timed(ours, sync)
    P = res.plan()
    extra = {"iterations": res.iterations["sinkhorn"],
             "max err": f"{float(np.max(res.marginal_error)):.1e}"}
    if pot is None:
        return [Row("ot-batch-gpu", f"B={B} n={n} reg={reg:g}", t, float("nan"), "none",
                    float(res.passes) * B * n * n * 8, 0.0, float("inf"), extra=extra)]
    looped = 32  # POT solves one problem per call: time a slice, scale to the batch
    pot.sinkhorn(ad[0], ad[0], Md[0], reg, method="sinkhorn_log", stopThr=STOP, numItermax=10)
    sync()
    t0 = time.perf_counter()
    Ps = [pot.sinkhorn(ad[k], ad[k], Md[k], reg, method="sinkhorn_log", stopThr=STOP,
                       numItermax=100_000) for k in range(looped)]
    sync()
    t_peer = (time.perf_counter() - t0) * B / looped
    extra["pot looped"] = f"{looped} problems timed, scaled to {B}"
    diff = max(rel_diff(P[k], Ps[k]) for k in range(looped))
    label, floor = f"B={B} n={n} reg={reg:g}", float(res.passes) * B * n * n * 8
    rows = [Row("ot-batch-gpu", label, t, t_peer, "pot looped", floor, diff, 1e-4, extra=extra)]
    solve_batch = getattr(pot, "solve_batch", None)
    if solve_batch is not None:
        # POT's batched log-domain Sinkhorn stops on the largest change of a potential, not on
        # the marginals: a tolerance of 1e-12 reaches L1 errors at or below ours.
        def batched() -> Any:
            return solve_batch(Md, reg=reg, a=ad, b=ad, max_iter=100_000, tol=1e-12,
                               method="log_sinkhorn")

        batched()  # compile CuPy's kernels outside the clock
        t_b, out = _timed(batched, sync)
        Pb = out.plan
        err_b = float(cp.max(cp.abs(Pb.sum(2) - ad).sum(1) + cp.abs(Pb.sum(1) - ad).sum(1)))
        diff_b = max(rel_diff(P[k], Pb[k]) for k in range(B))
        rows.append(Row("ot-batch-gpu", label, t, t_b, "pot solve_batch", floor, diff_b,
                        1e-4 if err_b <= 10 * STOP else float("inf"),
                        extra={**extra, "pot max err": f"{err_b:.1e}"}))
    return rows
