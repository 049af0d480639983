"""Makes log_bessel_reference.csv.gz: log I_v(x), log K_v(x), I_{v+1}(x)/I_v(x) and
d/dx log K_v(x) at high precision, for tests/test_special.py.

Each point is evaluated by every route that applies to it, all in mpmath at high precision:
  direct    mpmath.besseli / besselk (v <= 1e3; NoConvergence and failures are skipped)
  integral  quadrature of K_v(x) = int_0^inf exp(-x cosh t) cosh(v t) dt and of
            I_v(x) = (1/pi) int_0^pi e^{x cos t} cos(v t) dt
                     - (sin(v pi)/pi) int_0^inf e^{-x cosh t - v t} dt   (v <= 60, 0.01 <= x <= 150)
  series    the power series of I (positive terms) with the K quadrature (v <= 60, x <= 10)
  debye     Olver's uniform expansion with DLMF 10.41.10 polynomials to 24 terms (v >= 20),
            kept when its last term is below 1e-28
  hankel    Hankel's expansion (x >= 40), kept when its smallest term is below 1e-28
A point is kept when two routes agree to 1e-20 (relative to max(1, |value|)) on all four
numbers, or when the uniform or Hankel expansion alone reaches a truncation error below 1e-40
(large orders, where mpmath's direct evaluation raises NoConvergence near x = v and its
besselk is unreliable near x = 0.66 v; large arguments). Other points are dropped and listed.

Run: python tests/data/make_log_bessel_reference.py  (a few minutes on two cores).
"""

from __future__ import annotations

import gzip
import multiprocessing as mpr
import os
import sys

import mpmath as mp
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "log_bessel_reference.csv.gz")
DEBYE_TERMS = 24


def debye_coefficients(kmax: int):
    """u_k(p) as lists of exact rational coefficients in p (lowest power first)."""
    from fractions import Fraction

    u = [[Fraction(1)]]
    for _ in range(kmax):
        c = u[-1]
        # u_{k+1} = p^2 (1 - p^2) u_k' / 2 + (1/8) int_0^p (1 - 5 t^2) u_k(t) dt
        deriv = [i * c[i] for i in range(1, len(c))]  # coefficients of u_k', power i-1
        nxt = [Fraction(0)] * (len(c) + 3)
        for i, d in enumerate(deriv):  # d p^i
            nxt[i + 2] += d / 2
            nxt[i + 4] -= d / 2
        for i, a in enumerate(c):
            nxt[i + 1] += a / 8 / (i + 1)
            nxt[i + 3] -= 5 * a / 8 / (i + 3)
        while nxt and nxt[-1] == 0:
            nxt.pop()
        u.append(nxt)
    return u


U_COEFFS = None


def route_debye(v, x):
    v, x = mp.mpf(v), mp.mpf(x)
    z = x / v
    sq = mp.sqrt(1 + z * z)
    p = 1 / sq
    eta = sq + mp.log(z / (1 + sq))
    up, um = mp.mpf(1), mp.mpf(1)
    last = mp.mpf(0)
    for k in range(1, DEBYE_TERMS + 1):
        t = mp.polyval([mp.mpf(c.numerator) / c.denominator for c in reversed(U_COEFFS[k])], p)
        t /= v**k
        up += t
        um += (-1) ** k * t
        last = abs(t)
    log_i = -mp.log(2 * mp.pi * v) / 2 + v * eta - mp.log(sq) / 2 + mp.log(up)
    log_k = mp.log(mp.pi / (2 * v)) / 2 - v * eta - mp.log(sq) / 2 + mp.log(um)
    return log_i, log_k, last


def route_hankel(v, x):
    v, x = mp.mpf(v), mp.mpf(x)
    mu = 4 * v * v
    si, sk, term = mp.mpf(1), mp.mpf(1), mp.mpf(1)
    smallest = mp.mpf(1)
    for k in range(1, 400):
        term *= (mu - (2 * k - 1) ** 2) / (8 * k * x)
        if abs(term) > smallest:
            break
        smallest = abs(term)
        si += (-1) ** k * term
        sk += term
        if smallest < mp.mpf(10) ** -40:
            break
    log_i = x - mp.log(2 * mp.pi * x) / 2 + mp.log(si)
    log_k = -x + mp.log(mp.pi / (2 * x)) / 2 + mp.log(sk)
    return log_i, log_k, smallest


def route_direct(v, x):
    v, x = mp.mpf(v), mp.mpf(x)
    return mp.log(mp.besseli(v, x)), mp.log(mp.besselk(v, x))


def route_integral(v, x):
    v, x = mp.mpf(v), mp.mpf(x)
    tpk = mp.asinh(v / x) if v > 0 else mp.mpf(0)
    # Finite upper limits past which the integrands are below 1e-400 of their peaks (an
    # infinite one makes mpmath evaluate exp(-x cosh t) at astronomically large t).
    top = 2 * tpk + 10 + mp.acosh(1 + (v * (2 * tpk + 20) + 1000) / x)
    cuts = sorted(set([mp.mpf(0), tpk, 2 * tpk + 1, 2 * tpk + 10, top]))
    k = mp.quad(lambda t: mp.exp(-x * mp.cosh(t)) * mp.cosh(v * t), cuts)
    a = mp.quad(lambda t: mp.exp(x * mp.cos(t)) * mp.cos(v * t), mp.linspace(0, mp.pi, 9)) / mp.pi
    b = mp.quad(lambda t: mp.exp(-x * mp.cosh(t) - v * t),
                [0, 1, 10 + mp.acosh(1 + 1000 / x)])
    i = a - mp.sin(v * mp.pi) / mp.pi * b
    return mp.log(i), mp.log(k)


def route_series_quad(v, x):
    """I from its power series (positive terms), K by quadrature of the positive integrand."""
    v, x = mp.mpf(v), mp.mpf(x)
    q = x * x / 4
    term = (x / 2) ** v / mp.gamma(v + 1)
    total = term
    k = 0
    while True:
        k += 1
        term *= q / (k * (v + k))
        total += term
        if term < total * mp.mpf(10) ** (-mp.mp.dps - 5):
            break
    tpk = mp.asinh(max(v, 1) / x)
    top = 2 * tpk + 10 + mp.acosh(1 + (v * (2 * tpk + 20) + 1000) / x)
    cuts = sorted(set([mp.mpf(0), tpk, 2 * tpk + 1, 2 * tpk + 10, top]))
    kv = mp.quad(lambda t: mp.exp(-x * mp.cosh(t)) * mp.cosh(v * t), cuts)
    return mp.log(total), mp.log(kv)


def evaluate(point):
    """(v, x, log I_v, log K_v, I_{v+1}/I_v, dlog K_v / dx, route) or a drop reason."""
    global U_COEFFS
    if U_COEFFS is None:
        U_COEFFS = debye_coefficients(DEBYE_TERMS)
    v, x = point
    # v + 1 exactly: the float sum would round away the low bits of v when it crosses a power
    # of two, and the ratio would then compare I at two orders not one apart.
    v1 = mp.mpf(v) + 1
    results = {}
    mp.mp.dps = 50
    if v >= 20:
        a = route_debye(v, x)
        b = route_debye(v1, x)
        trunc = max(a[2], b[2])
        if trunc < mp.mpf(10) ** -28:
            results["debye"] = (a[0], b[0], a[1], b[1], trunc)
    if x >= 40:
        a = route_hankel(v, x)
        b = route_hankel(v1, x)
        trunc = max(a[2], b[2])
        if trunc < mp.mpf(10) ** -28:
            results["hankel"] = (a[0], b[0], a[1], b[1], trunc)
    if v <= 1e3 and x <= 1e7:
        try:
            mp.mp.dps = 40
            a = route_direct(v, x)
            b = route_direct(v1, x)
            results["direct"] = (a[0], b[0], a[1], b[1], None)
        except Exception:  # NoConvergence, or a complex log of a wrong sign
            pass
    if v <= 60 and 1e-2 <= x <= 150:
        try:
            mp.mp.dps = min(120, 30 + int((x + 2 * v * (1 + abs(mp.log(max(v, 1) / x)))) / 2.3))
            a = route_integral(v, x)
            b = route_integral(v1, x)
            results["integral"] = (a[0], b[0], a[1], b[1], None)
        except Exception:
            pass
    if v <= 60 and x <= 10:
        try:
            mp.mp.dps = 40
            a = route_series_quad(v, x)
            b = route_series_quad(v1, x)
            results["series"] = (a[0], b[0], a[1], b[1], None)
        except Exception:
            pass
    mp.mp.dps = 50
    names = list(results)
    agree = None
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            ra, rb = results[names[i]], results[names[j]]
            ok = all(abs(mp.re(ra[k]) - mp.re(rb[k])) <= mp.mpf(10) ** -20 * max(1, abs(ra[k]))
                     and abs(mp.im(ra[k])) + abs(mp.im(rb[k])) == 0 for k in range(4))
            if ok and agree is None:
                agree = (names[i], names[j])
    if agree is None:
        single = [n for n in ("debye", "hankel")
                  if n in results and results[n][4] < mp.mpf(10) ** -40]
        if single:
            agree = (single[0],)
        else:
            return ("drop", v, x, ",".join(names))
    best = next(n for n in ("debye", "hankel", "direct", "series", "integral") if n in agree)
    li, li1, lk, lk1, _ = results[best]
    ratio = mp.exp(li1 - li)
    dlogk = mp.mpf(v) / x - mp.exp(lk1 - lk)
    return (v, x, li, lk, ratio, dlogk, "+".join(agree))


def points():
    orders = [0, 0.5, 1, 2.5, 10, 100, 1e3, 1e4, 1e5, 1e6]
    xs = list(10.0 ** np.arange(-6, 12.01, 0.5))
    pts = []
    for v in orders:
        for x in xs:
            pts.append((float(v), float(x)))
        if v > 0:
            for f in (1e-3, 0.1, 0.5, 0.66, 0.6627434193, 0.9, 0.999, 1.0, 1.001, 1.1, 2.0, 10.0):
                pts.append((float(v), float(v * f)))
    rng = np.random.default_rng(20261122)
    for _ in range(200):  # the region boundaries: orders near 21.4, arguments near 2 and 20
        pts.append((float(rng.uniform(0, 50)), float(10 ** rng.uniform(-1, 2))))
    for _ in range(200):
        v = float(10 ** rng.uniform(-1, 6.5))
        pts.append((v, float(v * 10 ** rng.uniform(-2, 2))))
    for _ in range(100):
        pts.append((float(10 ** rng.uniform(-1, 6)), float(10 ** rng.uniform(-6, 12))))
    return pts


def main() -> None:
    pts = points()
    with mpr.Pool(os.cpu_count()) as pool:
        rows = []
        for i, r in enumerate(pool.imap(evaluate, pts, chunksize=4)):
            rows.append(r)
            if i % 100 == 0:
                print(f"{i}/{len(pts)}", file=sys.stderr, flush=True)
    kept = [r for r in rows if r[0] != "drop"]
    dropped = [r for r in rows if r[0] == "drop"]
    with gzip.open(OUT, "wt") as f:
        f.write("# v, x, log_iv, log_kv, iv_ratio, dlog_kv, routes  (made by "
                "make_log_bessel_reference.py)\n")
        for v, x, li, lk, ratio, dk, route in kept:
            f.write(f"{v!r},{x!r},{mp.nstr(li, 25)},{mp.nstr(lk, 25)},{mp.nstr(ratio, 25)},"
                    f"{mp.nstr(dk, 25)},{route}\n")
    print(f"{len(kept)} points kept, {len(dropped)} dropped", file=sys.stderr)
    for d in dropped:
        print("dropped", d[1:], file=sys.stderr)


if __name__ == "__main__":
    main()
