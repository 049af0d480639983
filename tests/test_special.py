"""curvkit.special: log-Bessel accuracy against a high-precision reference, ufunc semantics,
domain edges, the C ABI, von Mises-Fisher helpers, and GPU against CPU."""

from __future__ import annotations

import ctypes
import gzip
import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import curvkit
from curvkit import special
from curvkit.benchmarks.problems import vmf_samples

from conftest import to_host

EPS = np.finfo(np.float64).eps
EPS32 = float(np.finfo(np.float32).eps)
FUNCTIONS = ("log_iv", "log_kv", "iv_ratio", "dlog_iv", "dlog_kv")
DATA = os.path.join(os.path.dirname(__file__), "data", "log_bessel_reference.csv.gz")


def _load_reference():
    rows = []
    with gzip.open(DATA, "rt") as f:
        for line in f:
            if line.startswith("#"):
                continue
            parts = line.strip().split(",")
            rows.append([float(t) for t in parts[:6]])
    a = np.array(rows)
    return {name: a[:, i] for i, name in
            enumerate(["v", "x", "log_iv", "log_kv", "iv_ratio", "dlog_kv"])}


REF = _load_reference()


def _scaled_ulps(c, r, v, x, eps=EPS):
    """|c - r| / (eps max(|r|, 1, hypot(v, x))): what a backward-stable evaluation can meet
    where log I and log K cross zero as differences of terms of size hypot(v, x)."""
    return np.abs(c - r) / (eps * np.maximum(np.maximum(np.abs(r), 1.0), np.hypot(v, x)))


def _regions(v, x):
    """Named masks of the reference points, for the per-region report in failures."""
    return {
        "v < 21.4 (small order)": v < 21.4,
        "v >= 21.4, x < 0.5 v": (v >= 21.4) & (x < 0.5 * v),
        "v >= 21.4, 0.5 v <= x <= 2 v": (v >= 21.4) & (x >= 0.5 * v) & (x <= 2 * v),
        "v >= 21.4, x > 2 v": (v >= 21.4) & (x > 2 * v),
    }


def _report(err, v, x):
    out = []
    for name, m in _regions(v, x).items():
        if m.any():
            i = np.argmax(np.where(m, err, -1))
            out.append(f"{name}: max {err[i]:.2f} at v={v[i]!r}, x={x[i]!r}")
    return "; ".join(out)


def test_reference_covers_the_grid():
    v, x = REF["v"], REF["x"]
    assert len(v) > 800
    for order in (0, 0.5, 1, 2.5, 10, 100, 1e3, 1e4, 1e5, 1e6):
        on = v == order
        assert on.sum() >= 20, order
        assert x[on].min() <= 1e-6 * 1.0001 and x[on].max() >= 1e11
    near = (v >= 100) & (np.abs(x - 0.66 * v) < 0.01 * v)
    assert near.sum() >= 8  # the zero crossing of log K at x = 0.6627 v


@pytest.mark.parametrize("name", ["log_iv", "log_kv"])
def test_log_bessel_float64_within_4_scaled_ulps(name):
    v, x, r = REF["v"], REF["x"], REF[name]
    c = getattr(special, name)(v, x)
    assert np.all(np.isfinite(c))
    err = _scaled_ulps(c, r, v, x)
    assert err.max() <= 4.0, _report(err, v, x)
    # Plain relative error where it is meaningful: the value is not a cancelled difference.
    big = np.abs(r) >= np.maximum(1.0, np.hypot(v, x))
    rel = np.abs(c - r)[big] / (EPS * np.abs(r[big]))
    assert rel.max() <= 4.0


def _temme_region_points():
    """log K at small order and 0 < x <= 1/2 (Temme's series below x = 0.1, the fitted start
    above, then the forward recurrence), where log K is near 0 and its error is K's relative
    error: random points with their mpmath references, weighted towards 1/4 <= x <= 1/2 and
    v < 3."""
    import mpmath as mp

    rng = np.random.default_rng(7)
    vs, xs = [], []
    # (largest v, x range, x log-uniform)
    for v_max, x_lo, x_hi, log_x in [(3, 0.25, 0.5, False), (3, 0.05, 0.5, False),
                                     (20, 0.05, 0.5, False), (3, 1e-6, 0.5, True)]:
        vs.append(rng.uniform(0, v_max, 750))
        xs.append(np.exp(rng.uniform(math.log(x_lo), math.log(x_hi), 750)) if log_x
                  else rng.uniform(x_lo, x_hi, 750))
    v, x = np.concatenate(vs), np.concatenate(xs)
    with mp.workdps(40):
        r = np.array([float(mp.log(mp.besselk(mp.mpf(a), mp.mpf(b)))) for a, b in zip(v, x)])
    return v, x, r


def _check_temme_region(points, xp=np, bound=3.0):
    # The target is 4; these points reach 1.8 (Temme's series up to x = 1/2 reached 2 since its
    # sums carry their rounding errors, 3.25 before that), so 3 also guards against losing that.
    v, x, r = points
    err = _scaled_ulps(to_host(special.log_kv(xp.asarray(v), xp.asarray(x))), r, v, x)
    i = np.argmax(err)
    assert err.max() <= bound, f"max {err[i]:.2f} at v={v[i]!r}, x={x[i]!r}"
    return err.max()


def test_log_kv_small_order_small_x_random_points():
    pytest.importorskip("mpmath")
    _check_temme_region(_temme_region_points())


def _check_against_mpmath(v, x, names=("log_kv",), bound=4.0, xp=np):
    """Each named function within `bound` scaled ulps of mpmath (40 digits) at the points,
    evaluated on arrays of module xp; returns the largest error."""
    mp = pytest.importorskip("mpmath")
    reference = {"log_iv": mp.besseli, "log_kv": mp.besselk}
    worst = 0.0
    for name in names:
        with mp.workdps(40):
            r = np.array([float(mp.log(reference[name](a, b))) for a, b in zip(v, x)])
        err = _scaled_ulps(to_host(getattr(special, name)(xp.asarray(v), xp.asarray(x))), r, v, x)
        i = np.argmax(err)
        assert err.max() <= bound, f"{name}: max {err[i]:.2f} at v={v[i]!r}, x={x[i]!r}"
        worst = max(worst, err.max())
    return worst


def test_log_kv_small_order_below_1_random_points():
    # 1/2 <= x < 1 at small order: the fitted start of the recurrence, where Temme's series
    # had errors growing with x (2.8 scaled ulps below 0.7, 3.8 near 1, 5.8 near 1.5).
    rng = np.random.default_rng(11)
    v = np.concatenate([rng.uniform(0, 0.5, 500), rng.uniform(0, 21.3, 1000)])
    _check_against_mpmath(v, rng.uniform(0.5, 1.0, v.size))


def test_log_kv_small_order_moderate_x_random_points():
    # 0.7 <= x < 20 at small order: the fitted start of the recurrence (Steed's fraction with
    # the Wronskian reached 3 scaled ulps here).
    rng = np.random.default_rng(12)
    v = np.concatenate([rng.uniform(0, 1.5, 600), rng.uniform(0, 21.3, 600)])
    _check_against_mpmath(v, np.exp(rng.uniform(np.log(0.7), np.log(20.0), v.size)))


def _check_orders_below_half(xp=np, bound=3.0):
    """log K at orders |v| <= 1/2 (no recurrence to dilute the error) and 2 <= x < 5, where
    Steed's normalising sum gathers roundings over its many steps (4.4 scaled ulps at
    x = 2.008, 3.1 past x = 2.5) and the Wronskian reached 1.9: these points reach 1.0 with
    the fitted start."""
    rng = np.random.default_rng(13)
    v = rng.uniform(0, 0.5, 1500)
    x = np.concatenate([rng.uniform(2.0, 3.0, 1000), rng.uniform(3.0, 5.0, 500)])
    return _check_against_mpmath(v, x, ("log_kv",), bound=bound, xp=xp)


def test_log_kv_orders_below_half_random_points():
    _check_orders_below_half()


def _kv_fit_edges():
    """The x edges of log K's fitted pieces, from the generated header in the source tree."""
    import re
    from pathlib import Path

    header = "csrc/include/curvkit/device/detail/log_bessel_fits.hpp"
    text = (Path(__file__).resolve().parents[1] / header).read_text()
    edges = re.search(r"kv_fit_edges\[\] = \{([^}]*)\}", text).group(1)
    return [float(e) for e in edges.split(",")]


def _check_fit_pieces(xp=np, bound=2.0):
    """Each piece of the fitted start of log K's recurrence (orders below 21.4,
    0.1 <= x < 100): random points, both ends of the piece, and the ends of the order's
    reduction to |u| <= 1/2 (u = +-1/2, where the fit's m = 8 u^2 - 1 is 1). The fits are
    within 9e-17 of log K_u below x = 7 (7e-16 above, against a scaled ulp of at least x eps).
    These points reach 1.3 scaled ulps and 12,000 random points 1.9 (Temme's series reached
    2.8 and Steed's fraction with the Wronskian 3), so 2 guards the fits."""
    mp = pytest.importorskip("mpmath")
    rng = np.random.default_rng(15)
    edges = _kv_fit_edges()
    assert edges[0] == 0.10009765625 and edges[-1] == 100.0
    vs, xs = [], []
    for a, b in zip(edges, edges[1:]):
        x = np.concatenate([np.exp(rng.uniform(np.log(a), np.log(b), 60)),
                            [a, a, a, np.nextafter(b, 0), np.nextafter(b, 0), np.nextafter(b, 0)]])
        v = np.concatenate([rng.uniform(0, 21.3, 60), [0.0, 0.5, 20.5, 0.0, 0.5, 20.5]])
        vs.append(v)
        xs.append(x)
    v, x = np.concatenate(vs), np.concatenate(xs)
    with mp.workdps(40):
        r = np.array([float(mp.log(mp.besselk(a, b))) for a, b in zip(v, x)])
    err = _scaled_ulps(to_host(special.log_kv(xp.asarray(v), xp.asarray(x))), r, v, x)
    i = np.argmax(err)
    assert err.max() <= bound, f"max {err[i]:.2f} at v={v[i]!r}, x={x[i]!r}"
    return err.max()


def test_log_kv_fit_pieces_random_points():
    _check_fit_pieces()


def test_log_bessel_small_order_large_x_random_points():
    # x >= 20 at small order: in the CPU's lanes the shifted uniform expansion (15 terms from
    # x = 20, 12 from 36, 9 from 69) and Hankel's expansion, for log I at orders below 5.5
    # from x = 20 on and below 10.5 from 36 on, for log K from 36 and 100 on; the scalar
    # kernels try Hankel's expansion with its truncation test first.
    rng = np.random.default_rng(14)
    v = np.concatenate([rng.uniform(0, 5.5, 300), rng.uniform(0, 21.3, 300)])
    x = np.exp(rng.uniform(np.log(20.0), np.log(1e4), v.size))
    _check_against_mpmath(v, x, ("log_iv", "log_kv"))


def test_log_iv_hankel_with_large_terms_random_points():
    # Where log I takes Hankel's expansion past its test on the largest term (orders below
    # 5.5 with 20 <= x < 36, below 10.5 with 36 <= x < 100): alternating terms up to 7 times
    # the sum. These points reach 1.28 scaled ulps in the CPU's lanes and 0.94 in the
    # portable kernels (the shifted expansion, taken there before: 2.03 and 1.45), and orders
    # near half-integers, where a term nearly vanishes, check that the sum does not stop early.
    mp = pytest.importorskip("mpmath")
    rng = np.random.default_rng(16)
    half = np.round(rng.uniform(0, 10, 100) * 2) / 2 + rng.choice([0, 1e-12, -1e-9, 1e-6], 100)
    v = np.abs(np.concatenate([rng.uniform(0, 5.5, 250), rng.uniform(5.5, 10.5, 250), half]))
    x = np.concatenate([np.exp(rng.uniform(np.log(20), np.log(36), 250)),
                        np.exp(rng.uniform(np.log(36), np.log(100), 250)),
                        np.exp(rng.uniform(np.log(20), np.log(100), 100))])
    with mp.workdps(40):
        r = np.array([float(mp.log(mp.besseli(a, b))) for a, b in zip(v, x)])
    err = _scaled_ulps(special.log_iv(v, x), r, v, x)
    i = np.argmax(err)
    assert err.max() <= 1.5, f"max {err[i]:.2f} at v={v[i]!r}, x={x[i]!r}"


def test_log_bessel_order_far_above_argument_random_points():
    # v from 1e8 x to 1e30 x (x down to 1e-26): the uniform expansion at p ~ 1, where the
    # scalar kernels take asinh(v / x) as log(2 v / x) and the CPU's lanes keep its log1p form.
    rng = np.random.default_rng(13)
    v = np.exp(rng.uniform(np.log(21.4), np.log(1e4), 400))
    x = v / np.exp(rng.uniform(np.log(1e8), np.log(1e30), v.size))
    _check_against_mpmath(v, x, ("log_iv", "log_kv"))


def _debye_tables():
    """The uniform expansion's term-count orders and near-p scale, from the generated header
    (installed with the package, or in the source tree)."""
    import re
    from pathlib import Path

    import curvkit

    name = Path("curvkit/device/detail/debye_tables.hpp")
    candidates = [Path(curvkit.get_include()) / name,
                  Path(__file__).resolve().parents[1] / "csrc/include" / name]
    text = next(p for p in candidates if p.exists()).read_text()
    orders = re.search(r"debye_terms_log_orders\[\d+\] = \{([^}]*)\}", text).group(1)
    scale = re.search(r"debye_near_scale = ([0-9.]+);", text).group(1)
    return [float(t) for t in orders.split(",")], float(scale)


def test_uniform_expansion_at_its_fewest_terms():
    # Just above each order where the uniform expansion's term count drops (its truncation
    # error kept below eps v / 8 over all p; at debye_near_scale times the order where
    # x <= v / 5), where that error is largest, over p in [0.05, 1) and in the near band.
    # mpmath's besselk is not trusted near x = 0.66 v at orders of a few hundred: log K only
    # below v = 100.
    orders, near_scale = _debye_tables()
    rng = np.random.default_rng(15)
    vs, xs = [], []
    for threshold in orders:
        if not 21.4 < threshold < 1e3:
            continue
        v = threshold * (1.0 + 1e-9)
        p = rng.uniform(0.05, 0.999, 16)
        vs.append(np.full(p.size, v))
        xs.append(v * np.sqrt(1.0 / p**2 - 1.0))
        v = threshold / near_scale * (1.0 + 1e-9)
        if v > 21.4:
            p = rng.uniform(0.981, 0.99999, 8)
            vs.append(np.full(p.size, v))
            xs.append(v * np.sqrt(1.0 / p**2 - 1.0))
    v, x = np.concatenate(vs), np.concatenate(xs)
    assert v.size >= 150
    _check_against_mpmath(v, x, ("log_iv",))
    _check_against_mpmath(v[v < 100], x[v < 100], ("log_kv",))


@pytest.mark.gpu
def test_gpu_log_kv_small_order_random_points():
    import cupy as cp

    pytest.importorskip("mpmath")
    _check_temme_region(_temme_region_points(), cp)
    _check_orders_below_half(cp)
    _check_fit_pieces(cp)
    _check_ratios_at_small_orders(cp)


def test_iv_ratio_and_log_derivatives_float64():
    v, x = REF["v"], REF["x"]
    ratio = special.iv_ratio(v, x)
    err = np.abs(ratio - REF["iv_ratio"]) / (EPS * REF["iv_ratio"])
    assert err.max() <= 8.0, _report(err, v, x)
    dk = special.dlog_kv(v, x)
    err = np.abs(dk - REF["dlog_kv"]) / (EPS * np.abs(REF["dlog_kv"]))
    assert err.max() <= 8.0, _report(err, v, x)
    # d/dx log I = v/x + ratio: both terms positive, so its error is the ratio's at most.
    di = special.dlog_iv(v, x)
    exact = v / x + REF["iv_ratio"]
    err = np.abs(di - exact) / (EPS * exact)
    assert err.max() <= 8.0, _report(err, v, x)


def _check_ratios_at_small_orders(xp=np, bound=3.0):
    """iv_ratio, dlog_iv and dlog_kv against mpmath (plain relative ulps), on every route of
    the vectorised and the portable kernels: the continued fraction of I_{v+1}/I_v (x < 20,
    evaluated backward: 7.5 ulps as a forward product), Hankel's ratios (x >= 20: 3.7 ulps for
    I and 5.9 for K as quotients of the two sums) and the shifted expansion where their test
    fails, d/dx log K at orders below 1/2 and small x (9.9 ulps as v/x - K_{v+1}/K_v),
    Temme's series, the fitted start of K's recurrence (x < 11) and Steed's fraction, and the
    uniform expansion at orders up to 90 (mpmath's besselk is wrong near x = 0.66 v only at
    orders of a few hundred). These points reach 2.2 on both kernels. Returns the largest
    error of each function."""
    mp = pytest.importorskip("mpmath")
    worst = {}
    rng = np.random.default_rng(14)

    def log_uniform(lo, hi, n):
        return np.exp(rng.uniform(math.log(lo), math.log(hi), n))

    sets = {
        "iv_ratio": [(rng.uniform(0, 21.4, 500), rng.uniform(0.01, 20.0, 500)),
                     (rng.uniform(0, 21.4, 200), log_uniform(1e-6, 20.0, 200)),
                     (rng.uniform(0, 21.4, 400), log_uniform(20.0, 100.0, 400)),
                     (rng.uniform(0, 21.4, 200), log_uniform(100.0, 1e8, 200)),
                     (rng.uniform(21.4, 90, 200), log_uniform(0.1, 1e4, 200))],
        "dlog_iv": [(rng.uniform(0, 21.4, 200), log_uniform(1e-3, 1e3, 200)),
                    (rng.uniform(21.4, 90, 100), log_uniform(0.1, 1e4, 100))],
        "dlog_kv": [(rng.uniform(0, 0.5, 400), log_uniform(1e-6, 0.5, 400)),
                    (rng.uniform(0, 21.4, 200), log_uniform(1e-10, 0.1, 200)),
                    (rng.uniform(0, 21.4, 300), log_uniform(0.1, 11.0, 300)),
                    (rng.uniform(0, 21.4, 400), log_uniform(20.0, 100.0, 400)),
                    (rng.uniform(0, 21.4, 200), log_uniform(11.0, 1e8, 200)),
                    (rng.uniform(21.4, 90, 200), log_uniform(0.1, 1e4, 200))],
    }
    for name, points in sets.items():
        v = np.concatenate([p[0] for p in points])
        x = np.concatenate([p[1] for p in points])
        with mp.workdps(40):
            if name == "iv_ratio":
                r = [mp.besseli(mp.mpf(a) + 1, b) / mp.besseli(a, b) for a, b in zip(v, x)]
            elif name == "dlog_iv":
                r = [a / mp.mpf(b) + mp.besseli(mp.mpf(a) + 1, b) / mp.besseli(a, b)
                     for a, b in zip(v, x)]
            else:
                r = [a / mp.mpf(b) - mp.besselk(mp.mpf(a) + 1, b) / mp.besselk(a, b)
                     for a, b in zip(v, x)]
            r = np.array([float(t) for t in r])
        c = to_host(getattr(special, name)(xp.asarray(v), xp.asarray(x)))
        err = np.abs(c - r) / (EPS * np.abs(r))
        i = np.argmax(err)
        assert err.max() <= bound, f"{name}: max {err[i]:.2f} at v={v[i]!r}, x={x[i]!r}"
        worst[name] = err.max()
    return worst


def test_iv_ratio_and_dlog_kv_small_order_random_points():
    _check_ratios_at_small_orders()


def test_iv_ratio_is_not_a_difference_of_logs():
    # At v = 1e5 the difference of two logs of size 1e5 has lost ~5 digits; the direct ratio
    # matches the reference to ulps.
    m = REF["v"] == 1e5
    v, x = REF["v"][m], REF["x"][m]
    direct = special.iv_ratio(v, x)
    via_logs = np.exp(special.log_iv(v + 1, x) - special.log_iv(v, x))
    ref = REF["iv_ratio"][m]
    assert np.max(np.abs(direct - ref) / ref) <= 8 * EPS
    assert np.max(np.abs(via_logs - ref) / ref) > 100 * EPS


def test_ratios_at_negative_integer_orders():
    # I_{-n} = I_n: I_{-n+1} / I_{-n} = I_{n-1} / I_n = 1 / iv_ratio(n - 1), and d/dx log I
    # is the same at -n and n. As a quotient of exp(log I) at both orders, iv_ratio lost
    # about log10(|log I|) digits (1e6 ulps at v = -1e5, x = 1).
    mp = pytest.importorskip("mpmath")
    n = np.array([1.0, 2.0, 5.0, 20.0, 21.0, 22.0, 300.0, 3.0])
    x = np.array([0.3, 1e-5, 7.0, 25.0, 21.0, 0.5, 400.0, 1e3])
    got = special.iv_ratio(-n, x)
    with mp.workdps(40):
        ref = np.array([float(mp.besseli(a - 1, b) / mp.besseli(a, b)) for a, b in zip(n, x)])
    assert np.max(np.abs(got - ref) / ref) <= 4 * EPS, (got, ref)
    big, bx = np.array([1e5, 1e5, 4e6]), np.array([1.0, 2e5, 3e3])  # beyond mpmath here
    inverse = 1 / special.iv_ratio(big - 1, bx)
    assert np.max(np.abs(special.iv_ratio(-big, bx) - inverse) / inverse) <= 4 * EPS
    n, x = np.concatenate([n, big]), np.concatenate([x, bx])
    assert np.array_equal(special.dlog_iv(-n, x), special.dlog_iv(n, x))
    assert np.array_equal(special.dlog_iv(-n[:3], x[:3]),
                          [special.dlog_iv(-a, b) for a, b in zip(n[:3], x[:3])])


@pytest.mark.parametrize("name", FUNCTIONS)
def test_float32_within_4_float32_ulps(name):
    # float32 inputs: the float64 evaluation at the same (rounded) inputs is the reference,
    # itself checked above against the high-precision data.
    v = REF["v"].astype(np.float32)
    x = REF["x"].astype(np.float32)
    ok = (x > 0) & np.isfinite(x)
    v, x = v[ok], x[ok]
    fn = getattr(special, name)
    c = fn(v, x)
    assert c.dtype == np.float32
    r = fn(v.astype(np.float64), x.astype(np.float64))
    representable = np.abs(r) < 3e38
    c, r, vv, xx = c[representable], r[representable], v[representable], x[representable]
    if name in ("log_iv", "log_kv"):
        err = _scaled_ulps(c.astype(np.float64), r, vv, xx, EPS32)
    else:
        err = np.abs(c - r) / (EPS32 * np.abs(r))
    assert err.max() <= 4.0, _report(err, vv.astype(float), xx.astype(float))


def test_half_integer_orders_closed_form():
    # I_{1/2}(x) = sqrt(2 / (pi x)) sinh x and K_{1/2}(x) = sqrt(pi / (2 x)) e^{-x}, at every
    # scale of x; log sinh x = x + log1p(-e^{-2x}) - log 2 where that does not cancel (its
    # cancellation had cost this reference 4 scaled ulps at x = 0.01), sinh's own log below.
    x = np.logspace(-300, 300, 1201)
    big = x >= 20
    log_sinh = np.empty_like(x)
    log_sinh[big] = x[big] + np.log1p(-np.exp(-2 * x[big])) - math.log(2)
    log_sinh[~big] = np.log(np.sinh(x[~big]))
    log_i = 0.5 * (math.log(2 / math.pi) - np.log(x)) + log_sinh
    log_k = 0.5 * (math.log(math.pi / 2) - np.log(x)) - x
    assert _scaled_ulps(special.log_iv(0.5, x), log_i, 0.5, x).max() <= 4
    assert _scaled_ulps(special.log_kv(0.5, x), log_k, 0.5, x).max() <= 4
    # I_{3/2} / I_{1/2} = coth x - 1 / x (cancelling at small x: evaluated in mpmath)
    import mpmath as mp

    xs = np.logspace(-6, 3, 91)
    with mp.workdps(40):
        ratio = np.array([float(mp.coth(t) - 1 / mp.mpf(t)) for t in xs])
    assert np.max(np.abs(special.iv_ratio(0.5, xs) - ratio) / ratio) <= 8 * EPS


def test_no_nonfinite_output_on_the_full_range():
    v = np.concatenate([[0.0, 1e-300, 0.5, 21.39, 21.4], np.logspace(-3, 7, 61)])
    x = np.concatenate([[1e-300, 1e300], np.logspace(-300, 300, 241)])
    V, X = np.meshgrid(v, x)
    for name in FUNCTIONS:
        out = getattr(special, name)(V, X)
        bad = ~np.isfinite(out)
        assert not bad.any(), (name, V[bad][:5], X[bad][:5])
    # Monotone in x for fixed v: log I increasing, log K decreasing.
    for order in (0.0, 3.3, 50.0, 1e4, 1e7):
        xs = np.logspace(-300, 300, 2001)
        li, lk = special.log_iv(order, xs), special.log_kv(order, xs)
        assert np.all(np.diff(li) >= 0) and np.all(np.diff(lk) <= 0)
    r = special.iv_ratio(V, X)
    assert np.all((r >= 0) & (r <= 1))
    # Below the domain (subnormal x) the results may saturate to +-inf, but are never NaN.
    tiny = np.array([5e-324, 1e-310, 1e-305])
    for name in FUNCTIONS:
        out = getattr(special, name)(np.array([0.0, 0.3, 5.0, 30.0, 1e7])[:, None], tiny)
        assert not np.isnan(out).any(), name


def test_domain_edges():
    nan, inf = np.nan, np.inf
    assert special.log_iv(0, 0) == 0.0
    assert special.log_iv(2.5, 0) == -inf
    assert special.log_iv(-3, 0) == -inf  # I_{-n} = I_n
    assert special.log_kv(1.5, 0) == inf
    assert special.log_kv(0, 0) == inf
    for fn in (special.log_iv, special.log_kv, special.iv_ratio, special.dlog_iv,
               special.dlog_kv):
        assert np.isnan(fn(1.0, -1.0))
        assert np.isnan(fn(nan, 1.0))
        assert np.isnan(fn(1.0, nan))
    assert special.log_iv(1.0, inf) == inf and special.log_kv(1.0, inf) == -inf
    assert special.iv_ratio(3.0, 0.0) == 0.0 and special.iv_ratio(3.0, inf) == 1.0
    assert special.dlog_kv(2.0, 0.0) == -inf and special.dlog_kv(2.0, inf) == -1.0
    # Negative orders at the ends: I_{-n} = I_n (I_{n-1} / I_n ~ 2n / x), otherwise
    # I_v ~ (x / 2)^v / Gamma(v + 1), so I_{v+1} / I_v ~ x / (2 v + 2) and d/dx log I ~ v / x;
    # the values at x = 0 continue those at the smallest x.
    for v, ratio, dlog in [(-3.0, inf, inf), (-1.0, inf, inf), (-2.5, -0.0, -inf),
                           (-0.5, 0.0, -inf), (-0.25, 0.0, -inf)]:
        at_zero = special.iv_ratio(v, 0.0)
        assert at_zero == ratio and np.signbit(at_zero) == np.signbit(ratio)
        assert np.signbit(special.iv_ratio(v, 1e-300)) == np.signbit(ratio)
        assert special.dlog_iv(v, 0.0) == dlog
        assert np.signbit(special.dlog_iv(v, 1e-300)) == np.signbit(dlog)
        assert special.iv_ratio(v, inf) == 1.0 and special.dlog_iv(v, inf) == 1.0
    # v = -inf: log I and d/dx log I take it as an integer (I_{-n} = I_n), in every kernel.
    for x in (0.0, 1.0):
        assert special.log_iv(-inf, x) == -inf and special.dlog_iv(-inf, x) == inf
        assert np.isnan(special.iv_ratio(-inf, x))
    # Reflection: K_{-v} = K_v; I_{-n} = I_n; I_{-v} for non-integer v from I_v and K_v.
    x = np.logspace(-3, 3, 31)
    assert np.array_equal(special.log_kv(-7.3, x), special.log_kv(7.3, x))
    assert np.array_equal(special.log_iv(-4.0, x), special.log_iv(4.0, x))
    from scipy import special as sc

    xs = x[x < 500]  # where SciPy's iv stays finite
    ref = np.log(sc.iv(-0.3, xs))
    assert np.max(np.abs(special.log_iv(-0.3, xs) - ref) / np.maximum(1, np.abs(ref))) < 1e-14
    # I_{-1.5}(x) < 0 at small x: the log of a negative value is NaN, as in SciPy.
    neg = sc.iv(-1.5, x) < 0
    assert neg.any() and np.all(np.isnan(special.log_iv(-1.5, x)[neg]))
    assert np.all(np.isfinite(special.log_iv(-1.5, x)[~neg]))
    assert np.allclose(special.iv_ratio(-2.5, 3.0), sc.iv(-1.5, 3.0) / sc.iv(-2.5, 3.0),
                       rtol=1e-13)


def test_against_scipy_where_scipy_is_finite():
    rng = np.random.default_rng(1)
    v = rng.uniform(0, 50, 2000)
    x = 10 ** rng.uniform(-1, 2, 2000)
    from scipy import special as sc

    ref_i = np.log(sc.ive(v, x)) + x
    ref_k = np.log(sc.kve(v, x)) - x
    ok = np.isfinite(ref_i) & np.isfinite(ref_k)
    assert _scaled_ulps(special.log_iv(v, x)[ok], ref_i[ok], v[ok], x[ok]).max() < 64
    assert _scaled_ulps(special.log_kv(v, x)[ok], ref_k[ok], v[ok], x[ok]).max() < 64


def _mixed_routes(n, seed):
    """Orders and arguments that mix every route (uniform expansion at all term counts, power
    series, shifted expansion, the small-order K routes, Hankel) in random order."""
    rng = np.random.default_rng(seed)
    v = np.concatenate([rng.uniform(0, 50, n), 10 ** rng.uniform(1, 7, n),
                        rng.uniform(19, 24, n)])
    x = np.concatenate([10 ** rng.uniform(-1, 2, n), 10 ** rng.uniform(-6, 8, n),
                        10 ** rng.uniform(-2, 3, n)])
    order = rng.permutation(v.size)
    return v[order], x[order]


@pytest.mark.parametrize("seed", [0, 1])
def test_wronskian_on_mixed_routes(seed):
    # I_v K_{v+1} + I_{v+1} K_v = 1 / x ties log I and log K at two orders together; every
    # route of the array kernels (vectorised or not) takes part, four functions per point.
    v, x = _mixed_routes(20000, seed)
    li0, li1 = special.log_iv(v, x), special.log_iv(v + 1, x)
    lk0, lk1 = special.log_kv(v, x), special.log_kv(v + 1, x)
    a, b = li0 + lk1, li1 + lk0
    lhs = np.maximum(a, b) + np.log1p(np.exp(-np.abs(a - b)))
    # The error scale of the metric: near x = 0.66 v the logs are small differences
    # of terms of size hypot(v, x).
    scale = np.maximum.reduce([np.abs(li0) + np.abs(lk1), np.abs(li1) + np.abs(lk0),
                               np.hypot(v + 1, x), np.ones_like(v)])
    err = np.abs(lhs + np.log(x)) / (EPS * scale)
    assert err.max() < 8, (err.max(), v[err.argmax()], x[err.argmax()])


def test_results_do_not_depend_on_neighbours_or_layout():
    # The array kernels group elements by route; an element's value must not depend on which
    # elements share its group, its position, the layout, or the array's length.
    v, x = _mixed_routes(3000, 2)
    perm = np.random.default_rng(3).permutation(v.size)
    for name in FUNCTIONS:
        fn = getattr(special, name)
        base = fn(v, x)
        assert np.array_equal(fn(v[perm], x[perm]), base[perm])
        assert np.array_equal(fn(v[::-1].copy()[::-1], x), base)
        assert np.array_equal(fn(v.reshape(-1, 3, order="F"), x.reshape(-1, 3, order="F")),
                              base.reshape(-1, 3, order="F"))
        one = np.array([fn(a, b) for a, b in zip(v[:300], x[:300])])
        assert np.array_equal(one, base[:300])
        # Longer than the kernel's chunks, strided, and in float32 (converted per chunk).
        long_v, long_x = np.tile(v, 3), np.tile(x, 3)
        assert np.array_equal(fn(long_v, long_x), np.tile(base, 3))
        assert np.array_equal(fn(long_v[::2], long_x[::2]), np.tile(base, 3)[::2])
        # Negative integer orders (reflected exactly: I_{-n} = I_n, K_{-n} = K_n) in some
        # chunks change nothing for their neighbours, and match their reflections (not for
        # I_{-n+1} / I_{-n}, another function).
        neg = v.copy()
        neg[::7] = -np.round(neg[::7])
        mixed = fn(neg, x)
        kept = np.ones(v.size, bool)
        kept[::7] = False
        assert np.array_equal(mixed[kept], base[kept])
        if name != "iv_ratio":
            assert np.array_equal(mixed[::7], fn(-neg[::7], x[::7]))
        v32, x32 = v.astype(np.float32), x.astype(np.float32)
        single = fn(v32[:300], x32[:300])
        assert np.array_equal(single, np.array([fn(a, b) for a, b in zip(v32[:300], x32[:300])]))
        assert np.array_equal(fn(v32[::-1], x32[::-1])[::-1], fn(v32, x32))


def test_large_order_results_do_not_depend_on_neighbours():
    # Chunks whose elements all take the uniform expansion with at most 6 terms (orders above
    # ~80) are evaluated by lane groups of consecutive elements at the group's largest term
    # count, each lane's terms past its own count zeroed: each element's value must still be
    # that of its own count, whatever its neighbours (without the zeroing, permuted and single
    # evaluations differ in the last bits).
    rng = np.random.default_rng(8)
    n = 20000  # more than two chunks
    v = np.exp(rng.uniform(np.log(150.0), np.log(1e6), n))
    x = np.exp(rng.uniform(np.log(1e-6), np.log(1e6), n))
    perm = rng.permutation(n)
    for name in FUNCTIONS:
        fn = getattr(special, name)
        base = fn(v, x)
        assert np.array_equal(fn(v[perm], x[perm]), base[perm])
        assert np.array_equal(np.array([fn(a, b) for a, b in zip(v[:400], x[:400])]), base[:400])
        assert np.array_equal(fn(v[:13], x[:13]), base[:13])  # a partial lane group


def test_portable_kernels_within_4_scaled_ulps():
    # The portable kernels (the GPU's code, and the CPU's without AVX2) in a process that
    # turns the vectorised ones off: the same accuracy on the reference, the same layouts.
    import subprocess
    import sys

    script = (
        "import numpy as np, sys; sys.path.insert(0, %r)\n"
        "import test_special as t\n"
        "from curvkit import special\n"
        "for name in ('log_iv', 'log_kv'):\n"
        "    got = getattr(special, name)(t.REF['v'], t.REF['x'])\n"
        "    err = t._scaled_ulps(got, t.REF[name], t.REF['v'], t.REF['x']).max()\n"
        "    assert err <= 4, (name, err)\n"
        "import importlib.util\n"
        "if importlib.util.find_spec('mpmath'):\n"
        "    t._check_temme_region(t._temme_region_points())\n"
        "    t._check_orders_below_half()\n"
        "    t._check_fit_pieces()\n"
        "    t.test_log_iv_hankel_with_large_terms_random_points()\n"
        "    t._check_ratios_at_small_orders()\n"
        "t.test_domain_edges()\n"
        "t.test_wronskian_on_mixed_routes(0)\n"
        "t.test_results_do_not_depend_on_neighbours_or_layout()\n"
        "print('ok')\n" % os.path.dirname(__file__))
    env = dict(os.environ, CURVKIT_DISABLE_AVX2="1")
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=600)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stdout + res.stderr


# ---- ufunc semantics ----------------------------------------------------------------------


def test_scalars_in_scalar_out():
    r = special.log_iv(1.0, 2.0)
    assert isinstance(r, np.float64)
    assert isinstance(special.log_kv(np.float32(1), np.float32(2)), np.float32)
    assert isinstance(special.iv_ratio(np.array(1.0), 2), np.float64)
    assert special.log_iv(2, 3).dtype == np.float64  # integers -> float64


@pytest.mark.parametrize("name", FUNCTIONS)
def test_fast_paths_match_the_general_path(name):
    # Two arrays of one float dtype and shape, and two Python floats, skip the general
    # promotion and broadcasting; out= and NumPy scalars take the general path.
    fn = getattr(special, name)
    v, x = _mixed_routes(200, 4)
    for dtype in (np.float64, np.float32):
        a, b = v.astype(dtype), x.astype(dtype)
        general = fn(a, b, out=np.empty(a.shape, dtype))
        assert np.array_equal(fn(a, b), general, equal_nan=True)
        assert fn(a, b).dtype == dtype
        a2, b2 = a[:600].reshape(20, 30, order="F"), b[:600].reshape(20, 30, order="F")
        assert np.array_equal(fn(a2, b2), fn(a2, b2, out=np.empty((20, 30), dtype)),
                              equal_nan=True)
    for a, b in zip(v[:50], x[:50]):
        fast = fn(float(a), float(b))
        assert isinstance(fast, np.float64)
        assert np.array_equal(fast, fn(np.float64(a), np.float64(b)), equal_nan=True)


def test_dtype_promotion():
    f32 = np.ones(3, np.float32)
    assert special.log_iv(f32, f32).dtype == np.float32
    assert special.log_iv(f32, 2.0).dtype == np.float32  # Python scalars are weak
    assert special.log_iv(f32, np.ones(3)).dtype == np.float64
    assert special.log_iv(np.arange(3), np.arange(1, 4)).dtype == np.float64
    with pytest.raises(TypeError):
        special.log_iv(np.ones(2, np.complex128), 1.0)


def test_broadcasting_and_layouts():
    v = np.array([0.0, 1.5, 40.0, 2e3])
    x = np.logspace(-2, 4, 7)
    expect = np.array([[special.log_iv(a, b) for b in x] for a in v])
    assert np.array_equal(special.log_iv(v[:, None], x[None, :]), expect)
    assert np.array_equal(special.log_iv(v[:, None], x), expect)
    assert np.array_equal(special.log_iv(v[::-1, None], x)[::-1], expect)  # negative strides
    F = np.asfortranarray(np.broadcast_to(x, (4, 7)))
    assert np.array_equal(special.log_iv(v[:, None], F), expect)
    cube = special.log_iv(v[:, None, None], np.stack([x, x])[None])  # 3-D
    assert cube.shape == (4, 2, 7) and np.array_equal(cube[:, 1], expect)
    assert special.log_iv(np.empty((0, 3)), 1.0).shape == (0, 3)
    with pytest.raises(ValueError):
        special.log_iv(np.ones(3), np.ones(4))


@settings(max_examples=40, deadline=None)
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=4, max_side=4),
       dtype=st.sampled_from([np.float32, np.float64, np.int32, np.int64]),
       seed=st.integers(0, 2**31 - 1))
def test_broadcasting_property(shapes, dtype, seed):
    rng = np.random.default_rng(seed)
    (sv, sx), shape = shapes.input_shapes, shapes.result_shape
    v = (rng.uniform(0, 60, sv)).astype(dtype)
    x = (rng.uniform(0.01, 80, sx)).astype(dtype)
    res = special.log_kv(v, x)
    expect_dtype = np.float32 if dtype == np.float32 else np.float64
    assert np.shape(res) == shape and np.asarray(res).dtype == expect_dtype
    bv, bx = np.broadcast_arrays(v.astype(expect_dtype), x.astype(expect_dtype))
    flat = special.log_kv(np.ascontiguousarray(bv).ravel(), np.ascontiguousarray(bx).ravel())
    assert np.array_equal(np.asarray(res).ravel(), flat)


def test_out_argument():
    v, x = np.linspace(0, 30, 12).reshape(3, 4), 2.5
    out = np.empty((3, 4))
    res = special.log_kv(v, x, out=out)
    assert res is out and np.array_equal(out, special.log_kv(v, x))
    outF = np.empty((3, 4), order="F")
    special.log_kv(v, x, out=outF)
    assert np.array_equal(outF, out)
    out3 = np.empty((2, 3, 4))
    special.log_iv(v[None], np.full((2, 1, 1), x), out=out3)
    assert np.array_equal(out3[1], special.log_iv(v, x))
    xs = np.linspace(1, 5, 5)
    expect = special.iv_ratio(3.0, xs)
    special.iv_ratio(3.0, xs, out=xs)  # in place
    assert np.array_equal(xs, expect)
    with pytest.raises(ValueError):
        special.log_iv(v, x, out=np.empty((4, 3)))
    with pytest.raises(TypeError):
        special.log_iv(v, x, out=np.empty((3, 4), np.float32))
    with pytest.raises(ValueError):
        special.log_iv(v, x, out=np.empty((3, 8))[:, ::2])
    ro = np.empty((3, 4))
    ro.flags.writeable = False
    with pytest.raises(ValueError):
        special.log_iv(v, x, out=ro)
    with pytest.raises(ValueError):  # out overlapping a broadcast input
        a = np.ones(4)
        special.log_iv(np.broadcast_to(a, (1, 4))[0], a[::-1], out=a)


def test_c_abi_scalars_and_arrays():
    lib = ctypes.CDLL(curvkit.get_library())
    for name in ("curvkit_log_iv", "curvkit_log_kv", "curvkit_iv_ratio"):
        getattr(lib, name).restype = ctypes.c_double
        getattr(lib, name).argtypes = [ctypes.c_double, ctypes.c_double]
    assert lib.curvkit_log_iv(1e6, 1e3) == special.log_iv(1e6, 1e3)
    assert lib.curvkit_log_kv(2.5, 7.0) == special.log_kv(2.5, 7.0)
    assert lib.curvkit_iv_ratio(100.0, 66.0) == special.iv_ratio(100.0, 66.0)

    class Dense(ctypes.Structure):
        _fields_ = [("data", ctypes.c_void_p), ("dtype", ctypes.c_int32),
                    ("device", ctypes.c_int32), ("device_id", ctypes.c_int32),
                    ("ndim", ctypes.c_int32), ("rows", ctypes.c_int64), ("cols", ctypes.c_int64),
                    ("row_stride", ctypes.c_int64), ("col_stride", ctypes.c_int64)]

    def dense(a, stride=1):
        return Dense(a.ctypes.data, 1, 0, 0, 1, a.shape[0], 1, stride, 1)

    v, x, out = np.linspace(0, 50, 9), np.array([3.0]), np.empty(9)
    lib.curvkit_special_function.argtypes = [ctypes.c_int] + [ctypes.POINTER(Dense)] * 3 + [
        ctypes.c_void_p]
    rc = lib.curvkit_special_function(1, dense(v), Dense(x.ctypes.data, 1, 0, 0, 1, 9, 1, 0, 1),
                                      dense(out), None)
    assert rc == 0 and np.array_equal(out, special.log_kv(v, 3.0))
    assert lib.curvkit_special_function(9, dense(v), dense(v), dense(out), None) == 1


# ---- von Mises-Fisher --------------------------------------------------------------------


def test_vmf_closed_forms_in_three_dimensions():
    import mpmath as mp

    kappa = np.logspace(-3, 3, 61)
    with mp.workdps(40):
        a3 = np.array([float(mp.coth(k) - 1 / mp.mpf(k)) for k in kappa])
    assert np.allclose(special.vmf_mean_length(3, kappa), a3, rtol=1e-14, atol=0)
    # C_3(kappa) = kappa / (4 pi sinh kappa)
    log_sinh = kappa + np.log1p(-np.exp(-2 * kappa)) - math.log(2)
    c3 = np.log(kappa) - math.log(4 * math.pi) - log_sinh
    assert np.allclose(special.vmf_log_normalizer(3, kappa), c3, rtol=1e-13, atol=1e-13)
    assert special.vmf_log_normalizer(3, 0.0) == pytest.approx(-math.log(4 * math.pi))
    # p = 2048: at kappa = 0 the uniform density; continuous there.
    small = special.vmf_log_normalizer(2048, np.array([0.0, 1e-8]))
    assert small[0] == pytest.approx(small[1], rel=1e-12)


@pytest.mark.parametrize("p, kappa, n", [(2048, 1500.0, 2000), (8192, 8000.0, 600),
                                         (32768, 40000.0, 150)])
def test_vmf_fit_recovers_kappa_in_high_dimension(p, kappa, n):
    rng = np.random.default_rng(p)
    mu = rng.standard_normal(p)
    mu /= np.linalg.norm(mu)
    X = vmf_samples(rng, mu, kappa, n)
    mu_hat, kappa_hat = special.vmf_fit(X)
    # The Newton solution is exact: A_p(kappa_hat) reproduces the mean resultant length.
    rbar = np.linalg.norm(X.sum(0)) / n
    assert special.vmf_mean_length(p, kappa_hat) == pytest.approx(rbar, rel=1e-13)
    assert kappa_hat == pytest.approx(kappa, rel=0.05)  # sampling error of N samples
    assert float(mu_hat @ mu) > 0.99


def test_vmf_fit_edge_cases():
    e = np.zeros((3, 4))
    e[:, 0] = 1
    assert special.vmf_fit(e)[1] == math.inf
    opposite = np.array([[1.0, 0, 0], [-1.0, 0, 0]])
    mu, kappa = special.vmf_fit(opposite)
    assert kappa == 0.0 and np.array_equal(mu, np.zeros(3))
    with pytest.raises(ValueError, match="N, p"):
        special.vmf_fit(np.ones(3))
    with pytest.raises(ValueError, match="zero row"):
        special.vmf_fit(np.zeros((2, 3)))
    with pytest.raises(TypeError, match="unsupported dtype complex128"):
        special.vmf_fit(np.ones((2, 3), dtype=np.complex128))
    for bad in (np.nan, np.inf):
        with pytest.raises(ValueError, match="NaN or infinite"):
            special.vmf_fit(np.where(np.eye(3) > 0, bad, 0.5))


def test_vmf_fit_rows_of_any_finite_scale():
    # Each row is normalised, so rows scaled by 1e-200 .. 1e300 (squared norms that underflow
    # or overflow) give the fit of the unit rows; the reference sums them normalised in mpmath.
    mp = pytest.importorskip("mpmath")
    rng = np.random.default_rng(3)
    p, n = 50, 40
    mu = np.zeros(p)
    mu[0] = 1.0
    U = vmf_samples(rng, mu, 30.0, n)
    scales = np.array([1e-200, 1e-160, 1.0, 1e160, 1e300] * (n // 5))
    X = U * scales[:, None]
    mu_hat, kappa_hat = special.vmf_fit(X)
    with mp.workdps(40):
        rows = [[mp.mpf(float(a)) for a in row] for row in X]
        norms = [mp.sqrt(mp.fsum(a * a for a in row)) for row in rows]
        s = [mp.fsum(row[j] / nrm for row, nrm in zip(rows, norms)) for j in range(p)]
        r = mp.sqrt(mp.fsum(c * c for c in s))
        mu_ref = np.array([float(c / r) for c in s])
        rbar = float(r / n)
    assert np.allclose(mu_hat, mu_ref, rtol=0, atol=1e-14)
    assert special.vmf_mean_length(p, kappa_hat) == pytest.approx(rbar, rel=1e-13)
    assert kappa_hat == pytest.approx(special.vmf_fit(U)[1], rel=1e-12)
    with pytest.raises(ValueError, match="NaN or infinite"):
        special.vmf_fit(np.vstack([X, np.full(p, 1e300) * np.r_[np.nan, np.ones(p - 1)]]))


# ---- GPU -----------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["log_iv", "log_kv", "iv_ratio", "dlog_kv"])
def test_gpu_against_reference(name):
    import cupy as cp

    v, x, r = REF["v"], REF["x"], REF[name]
    g = to_host(getattr(special, name)(cp.asarray(v), cp.asarray(x)))
    if name in ("log_iv", "log_kv"):
        err = _scaled_ulps(g, r, v, x)
        assert err.max() <= 4.0, _report(err, v, x)
    else:
        err = np.abs(g - r) / (EPS * np.abs(r))
        assert err.max() <= 8.0, _report(err, v, x)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", FUNCTIONS)
def test_gpu_matches_cpu(name, dtype):
    import cupy as cp

    rng = np.random.default_rng(3)
    v = np.concatenate([REF["v"], rng.uniform(0, 50, 4000), 10 ** rng.uniform(-2, 7, 4000),
                        [0.0, 0.5, 3.0, 1e7]])
    x = np.concatenate([REF["x"], 10 ** rng.uniform(-1, 2, 4000), 10 ** rng.uniform(-6, 12, 4000),
                        [0.0, np.inf, -1.0, np.nan]])
    v, x = v.astype(dtype), x.astype(dtype)
    fn = getattr(special, name)
    cpu = fn(v, x)
    gpu = fn(cp.asarray(v), cp.asarray(x))
    assert isinstance(gpu, cp.ndarray) and gpu.dtype == dtype
    g = to_host(gpu)
    assert np.array_equal(np.isnan(g), np.isnan(cpu))
    ok = np.isfinite(cpu)
    assert np.array_equal(g[~ok & ~np.isnan(cpu)], cpu[~ok & ~np.isnan(cpu)])
    # Both sides are within the accuracy targets of the truth, with different libm roundings:
    # float32 results round the same double computation; float64 may differ by two targets.
    eps = np.finfo(dtype).eps
    scale = np.maximum(np.abs(cpu[ok]).astype(np.float64), 1.0)
    if name in ("log_iv", "log_kv"):
        scale = np.maximum(scale, np.hypot(v[ok], x[ok]).astype(np.float64))
    tol = 4 if dtype == np.float32 else 8
    assert np.max(np.abs(g[ok].astype(np.float64) - cpu[ok]) / (eps * scale)) <= tol


@pytest.mark.gpu
def test_gpu_semantics():
    import cupy as cp

    v = cp.linspace(0, 100, 12).reshape(3, 4)
    out = cp.empty((3, 4))
    assert special.log_iv(v, 2.0, out=out) is out
    # Same GPU kernel with and without out=; the CPU kernels round differently (vector libm).
    assert np.array_equal(to_host(out), to_host(special.log_iv(v, 2.0)))
    np.testing.assert_allclose(to_host(out), special.log_iv(to_host(v), 2.0), rtol=1e-14)
    r = special.log_kv(cp.float64(2.0), cp.asarray(3.0))
    assert isinstance(r, cp.ndarray)
    with pytest.raises(TypeError):
        special.log_iv(v, np.ones(4))
    with pytest.raises(TypeError):
        special.log_iv(np.ones(4), 2.0, out=cp.empty(4))
    s = cp.cuda.Stream(non_blocking=True)
    with s:
        a = special.log_iv(v, v)
    s.synchronize()
    assert np.array_equal(to_host(a), to_host(special.log_iv(v, v)))


@pytest.mark.gpu
def test_gpu_vmf_fit():
    import cupy as cp

    rng = np.random.default_rng(7)
    p, kappa = 2048, 1500.0
    mu = rng.standard_normal(p)
    mu /= np.linalg.norm(mu)
    X = vmf_samples(rng, mu, kappa, 500)
    mu_c, k_c = special.vmf_fit(X)
    mu_g, k_g = special.vmf_fit(cp.asarray(X))
    assert isinstance(mu_g, cp.ndarray)
    assert k_g == pytest.approx(k_c, rel=1e-12)
    assert np.allclose(to_host(mu_g), mu_c, rtol=0, atol=1e-12)
    # Rows whose squared norms overflow or underflow take the scaled pass on the device too.
    scaled = X * np.where(np.arange(500) % 2 == 0, 1e200, 1e-200)[:, None]
    mu_s, k_s = special.vmf_fit(cp.asarray(scaled))
    assert k_s == pytest.approx(k_c, rel=1e-12)
    assert np.allclose(to_host(mu_s), mu_c, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="NaN or infinite"):
        special.vmf_fit(cp.asarray(np.vstack([scaled, np.full(p, np.nan)])))


def test_bench_rows_for_special(tmp_path):
    import json

    from curvkit.benchmarks import run

    path = tmp_path / "bench.json"
    assert run(quick=True, only=["special_log_iv_cpu"], json_path=str(path), device="cpu") == 0
    rows = json.loads(path.read_text())["rows"]
    assert [r["name"] for r in rows] == ["special_log_iv_cpu"] * 2
    assert "scipy non-finite 0" in rows[0]["problem"]  # the moderate range
    assert "scipy non-finite 0" not in rows[1]["problem"]  # the hard range


def test_bench_rows_for_ratios_and_vmf_fit(tmp_path):
    import json

    from curvkit.benchmarks import run

    path = tmp_path / "bench.json"
    only = ["special_iv_ratio_cpu", "special_dlog_kv_cpu", "special_vmf_fit_cpu"]
    assert run(quick=True, only=only, json_path=str(path), device="cpu") == 0
    rows = json.loads(path.read_text())["rows"]
    names = [r["name"] for r in rows]
    assert names == ["special_iv_ratio_cpu"] * 2 + ["special_dlog_kv_cpu"] * 2 + [
        "special_vmf_fit_cpu"]
    for r in rows[:4]:  # agreement with SciPy's quotients where they are finite
        assert r["max_rel_diff"] <= 1e-10
    vmf = rows[4]
    assert vmf["max_rel_diff"] <= 0.05 and vmf["extra"]["kappa_scipy"] < 1.0
