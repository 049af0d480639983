"""log I_v(x) and log K_v(x): curvkit against SciPy's log(ive) + x on the CPU, and on the GPU
against CuPy's i0e (the cost of the simplest Bessel kernel) and the memory floor; the ratio
I_{v+1}/I_v and d/dx log K against SciPy's quotients of ive and kve, and the von Mises-Fisher
fit against scipy.stats.vonmises_fisher.fit, on the CPU."""

from __future__ import annotations

import warnings
from typing import List

import numpy as np

from .. import special
from ._harness import Row, benchmark, device_copy_gbps, time_cpu_pair, time_gpu

# Bytes an elementwise f(v, x) must move per element: two float64 reads and one write.
_BYTES_PER_ELEMENT = 24


def moderate_inputs(n: int, seed: int = 0):
    """v ~ U[0, 50], x log-uniform in [0.1, 100]."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 50, n), 10 ** rng.uniform(-1, 2, n)


def hard_inputs(n: int, seed: int = 1):
    """v log-uniform in [1e2, 1e6], x log-uniform in [1e-6, 1e6]."""
    rng = np.random.default_rng(seed)
    return 10 ** rng.uniform(2, 6, n), 10 ** rng.uniform(-6, 6, n)


def _scipy_log(name: str):
    from scipy import special as sc

    if name == "log_iv":
        return lambda v, x: np.log(sc.ive(v, x)) + x
    return lambda v, x: np.log(sc.kve(v, x)) - x


def _scipy_ratio(name: str):
    from scipy import special as sc

    if name == "iv_ratio":
        return lambda v, x: sc.ive(v + 1, x) / sc.ive(v, x)
    # K'_v = -(K_{v-1} + K_{v+1}) / 2, scaled by e^x against overflow (scipy's kvp unscaled).
    return lambda v, x: -(sc.kve(v - 1, x) + sc.kve(v + 1, x)) / (2 * sc.kve(v, x))


def _scaled_diff(ours, peer, v, x) -> float:
    """Largest |ours - peer| / max(|peer|, 1, hypot(v, x)) where the peer is finite."""
    ok = np.isfinite(peer)
    if not ok.any():
        return 0.0
    scale = np.maximum(np.maximum(np.abs(peer[ok]), 1.0), np.hypot(v[ok], x[ok]))
    return float(np.max(np.abs(ours[ok] - peer[ok]) / scale))


def _relative_diff(ours, ref) -> float:
    """Largest |ours / ref - 1| where ref is finite and nonzero (for the ratio and the
    derivatives, which do not cancel)."""
    ok = np.isfinite(ref) & (ref != 0)
    return float(np.max(np.abs(ours[ok] / ref[ok] - 1))) if ok.any() else 0.0


_PEERS = {"log_iv": "scipy log(ive)+x", "log_kv": "scipy log(kve)-x",
          "iv_ratio": "scipy ive(v+1)/ive(v)",
          "dlog_kv": "scipy -(kve(v-1)+kve(v+1))/(2 kve(v))"}


def _cpu_rows(name: str, quick: bool) -> List[Row]:
    """Both ranges, ours against SciPy's form of `name`: for the logarithms the scaled
    difference and the count of SciPy's non-finite values, for the ratios the plain relative
    difference and the count of SciPy's non-finite or zero values."""
    n = 10**5 if quick else 10**6
    ratio = name in ("iv_ratio", "dlog_kv")
    peer_fn = _scipy_ratio(name) if ratio else _scipy_log(name)
    ours_fn = getattr(special, name)
    rows = []
    for label, (v, x) in (("v~U[0,50], x~logU[0.1,100]", moderate_inputs(n)),
                          ("v~logU[1e2,1e6], x~logU[1e-6,1e6]", hard_inputs(n))):
        ours, peer = time_cpu_pair(lambda: ours_fn(v, x), lambda: peer_fn(v, x), repeat=5)
        with np.errstate(all="ignore"):
            ref = peer_fn(v, x)
        if ratio:
            diff = _relative_diff(ours_fn(v, x), ref)
            bad = int(np.count_nonzero(~np.isfinite(ref) | (ref == 0)))
            problem = f"{label} n={n:.0e}, scipy non-finite or zero {bad}"
        else:
            diff = _scaled_diff(ours_fn(v, x), ref, v, x)
            bad = int(np.count_nonzero(~np.isfinite(ref)))
            problem = f"{label} n={n:.0e}, scipy non-finite {bad}"
        rows.append(Row(f"special_{name}_cpu", problem, ours, peer, _PEERS[name],
                        _BYTES_PER_ELEMENT * n, diff, 1e-10 if ratio else 1e-12))
    return rows


@benchmark("special_log_iv_cpu", "cpu", "log I_v(x), all cores, vs numpy.log(scipy.special.ive) + x")
def special_log_iv_cpu(quick: bool) -> List[Row]:
    with np.errstate(all="ignore"):
        return _cpu_rows("log_iv", quick)


@benchmark("special_log_kv_cpu", "cpu", "log K_v(x), all cores, vs numpy.log(scipy.special.kve) - x")
def special_log_kv_cpu(quick: bool) -> List[Row]:
    with np.errstate(all="ignore"):
        return _cpu_rows("log_kv", quick)


@benchmark("special_iv_ratio_cpu", "cpu",
           "I_{v+1}(x)/I_v(x), all cores, vs scipy.special.ive(v+1, x) / ive(v, x)")
def special_iv_ratio_cpu(quick: bool) -> List[Row]:
    with np.errstate(all="ignore"):
        return _cpu_rows("iv_ratio", quick)


@benchmark("special_dlog_kv_cpu", "cpu",
           "d/dx log K_v(x), all cores, vs SciPy's K'_v / K_v from kve at v - 1, v, v + 1")
def special_dlog_kv_cpu(quick: bool) -> List[Row]:
    with np.errstate(all="ignore"):
        return _cpu_rows("dlog_kv", quick)


@benchmark("special_vmf_fit_cpu", "cpu",
           "von Mises-Fisher fit (mu, kappa) in p = 2048, 8192, 32768 vs scipy.stats.vonmises_fisher.fit")
def special_vmf_fit_cpu(quick: bool) -> List[Row]:
    """Wood's samples at a known kappa; max rel diff is |kappa_hat - kappa| / kappa against the
    truth (the sampling error of N samples, ~1%), extra holds both sides' kappa."""
    from scipy import stats

    from .problems import vmf_samples

    rows = []
    cases = [(2048, 1500.0, 2000), (8192, 8000.0, 600), (32768, 40000.0, 150)]
    for p, kappa, n in cases[:1] if quick else cases:
        rng = np.random.default_rng(p)
        mu = rng.standard_normal(p)
        mu /= np.linalg.norm(mu)
        X = vmf_samples(rng, mu, kappa, n)

        def peer_fit():  # SciPy's fit warns of an invalid division in these dimensions
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                return stats.vonmises_fisher.fit(X)

        ours, peer = time_cpu_pair(lambda: special.vmf_fit(X), peer_fit, repeat=5)
        k_ours = special.vmf_fit(X)[1]
        k_peer = float(peer_fit()[1])
        rows.append(Row("special_vmf_fit_cpu", f"p={p} N={n} kappa={kappa:g}", ours, peer,
                        "scipy vonmises_fisher.fit", 8.0 * n * p,
                        abs(k_ours - kappa) / kappa, 0.05,
                        extra={"kappa": kappa, "kappa_curvkit": k_ours, "kappa_scipy": k_peer}))
    return rows


@benchmark("special_log_iv_gpu", "gpu",
           "log I, log K, I_{v+1}/I_v and the log-derivatives on the GPU vs CuPy i0e and the memory floor")
def special_log_iv_gpu(quick: bool) -> List[Row]:
    import cupy as cp
    from cupyx.scipy import special as csp

    n = 10**6 if quick else 10**7
    gbps = device_copy_gbps()
    rows = []
    for label, (v_h, x_h) in (("v~U[0,50], x~logU[0.1,100]", moderate_inputs(n)),
                              ("v~logU[1e2,1e6], x~logU[1e-6,1e6]", hard_inputs(n))):
        for dtype in (np.float64, np.float32):
            v, x = cp.asarray(v_h, dtype), cp.asarray(x_h, dtype)
            out = cp.empty(n, dtype)
            i0e_out = cp.empty(n, dtype)
            peer, peer_call = time_gpu(lambda: csp.i0e(x, out=i0e_out),
                                       n_repeat=20 if quick else 50)
            for name in ("log_iv", "log_kv", "iv_ratio", "dlog_iv", "dlog_kv"):
                fn = getattr(special, name)
                ours, ours_call = time_gpu(lambda: fn(v, x, out=out), n_repeat=20 if quick else 50)
                cpu = fn(v_h.astype(dtype), x_h.astype(dtype)).astype(np.float64)
                gpu = cp.asnumpy(fn(v, x)).astype(np.float64)
                if name in ("log_iv", "log_kv"):
                    diff = _scaled_diff(gpu, cpu, v_h, x_h)
                else:
                    diff = _relative_diff(gpu, cpu)
                bytes_per = 3 * np.dtype(dtype).itemsize
                rows.append(Row(f"special_{name}_gpu", f"{label} n={n:.0e} {np.dtype(dtype).name}",
                                ours, peer, "cupy i0e(x)", bytes_per * n, diff,
                                1e-12 if dtype == np.float64 else 1e-6, bandwidth_gbps=gbps,
                                ours_call_s=ours_call, peer_call_s=peer_call))
    return rows
