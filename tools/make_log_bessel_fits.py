"""Writes csrc/include/curvkit/device/detail/log_bessel_fits.hpp: two-variable polynomial fits
that start log K's and d/dx log K's forward recurrence at small orders (below the uniform
expansion's, 21.39) at 0.1 <= x < 100, on the host (scalar and AVX2 lanes) and the device.

On a piece [a, b) of x, functions of m = 8 u^2 - 1 (|u| <= 1/2) and
s = (2/x - 1/a - 1/b) / (1/a - 1/b), both in [-1, 1]:

    A(m, s) = log(K_u(x) e^x sqrt(2 x / pi))               (log K less its large-x form),
    D(m, s) = K_{u+1}(x) / K_u(x) - u / x - 1 - 1 / (2 x)   (= -d/dx log K_u(x) - 1 - 1/(2x)),

the start of the forward recurrence to K_v. Both are even in u and smooth in 1/x (the
nearest singularities lie at x = 0 and, in the order, at imaginary u of size ~x).

(The same approach for log I, which has no stable recurrence in the order and so needs fits
over the orders themselves, takes 70-250 coefficients per piece at 20 <= x < 100: no faster
than the shifted uniform expansion there.)

Each function is interpolated at Chebyshev points in 40-digit arithmetic (mpmath), converted
to monomials (the coefficients fall by a factor of five or more per degree, so the monomial
form is well conditioned), and truncated where the sum of the dropped coefficients'
magnitudes (a bound of the truncation error on the square) stays below TOL max(1, a): an
absolute error, against the scaled ulp eps max(|log|, 1, hypot(v, x)) >= eps max(1, x) (for
D through the ratio's relative error, which the recurrence does not amplify). The script
then checks the double-rounded polynomials against mpmath at random points of each piece
and writes the largest errors beside them."""

from __future__ import annotations

import argparse
import random

import mpmath as mp

mp.mp.dps = 40
# log K's pieces: narrower at small x, where log K_u(x) varies most with 1/x.
K_EDGES = [0.10009765625, 0.1484375, 0.19921875, 0.296875, 0.3984375, 0.5, 0.703125, 1.0, 1.40625, 2.0, 3.0, 4.5, 7.0, 11.0, 18.0, 36.0, 100.0]
# Chebyshev points in each variable (more than any fit keeps).
NODES_M, NODES_S = 20, 32
TOL = 4e-17


def k_functions(m, x):
    """A and D at m = 8 u^2 - 1 and x."""
    u = mp.sqrt((m + 1) / 8)
    k0, k1 = mp.besselk(u, x), mp.besselk(u + 1, x)
    a = mp.log(k0 * mp.exp(x) * mp.sqrt(2 * x / mp.pi))
    d = k1 / k0 - u / x - 1 - 1 / (2 * x)
    return a, d


def x_of(s, a, b):
    ia, ib = 1 / mp.mpf(a), 1 / mp.mpf(b)
    return 2 / ((ia + ib) + s * (ia - ib))


def chebyshev_points(n):
    return [mp.cos(mp.pi * (j + mp.mpf(1) / 2) / n) for j in range(n)]


def chebyshev_coefficients(values, n):
    """Coefficients c_k of sum_k c_k T_k interpolating values at chebyshev_points(n)."""
    out = []
    for k in range(n):
        s = mp.fsum(values[j] * mp.cos(mp.pi * k * (j + mp.mpf(1) / 2) / n) for j in range(n))
        out.append(s * (1 if k == 0 else 2) / n)
    return out


def chebyshev_to_monomial(n):
    """T[k][i]: the coefficient of t^i in T_k(t), k < n."""
    t = [[1], [0, 1]]
    while len(t) < n:
        a, b = t[-1], t[-2]
        nxt = [0] + [2 * c for c in a]
        for i, c in enumerate(b):
            nxt[i] -= c
        t.append(nxt)
    return [row + [0] * (n - len(row)) for row in t[:n]]


def fit_piece(functions, a, b):
    """Monomial coefficients M[i][j] (of m^i s^j) of each function of (m, x) that `functions`
    returns, on m in [-1, 1] and the piece [a, b) of x."""
    ms, ss = chebyshev_points(NODES_M), chebyshev_points(NODES_S)
    values = [[functions(m, x_of(s, a, b)) for s in ss] for m in ms]
    to_mono_m, to_mono_s = chebyshev_to_monomial(NODES_M), chebyshev_to_monomial(NODES_S)
    result = []
    for f in range(len(values[0][0])):
        grid = [[values[i][j][f] for j in range(NODES_S)] for i in range(NODES_M)]
        # Separable transform: along s for each m node, then along m.
        along_s = [chebyshev_coefficients(row, NODES_S) for row in grid]
        cheb = [[None] * NODES_S for _ in range(NODES_M)]
        for l in range(NODES_S):
            col = chebyshev_coefficients([along_s[i][l] for i in range(NODES_M)], NODES_M)
            for k in range(NODES_M):
                cheb[k][l] = col[k]
        mono = [[mp.mpf(0)] * NODES_S for _ in range(NODES_M)]
        for k in range(NODES_M):
            for l in range(NODES_S):
                c = cheb[k][l]
                for i in range(k + 1):
                    if to_mono_m[k][i]:
                        for j in range(l + 1):
                            if to_mono_s[l][j]:
                                mono[i][j] += c * to_mono_m[k][i] * to_mono_s[l][j]
        result.append(mono)
    return result


def truncate(mono, tol):
    """Per power of m, the number of powers of s kept (none past the last kept power of m):
    the smallest coefficients go first while the dropped ones sum below tol."""
    entries = sorted((abs(mono[i][j]), i, j) for i in range(NODES_M) for j in range(NODES_S))
    dropped, keep = mp.mpf(0), [[True] * NODES_S for _ in range(NODES_M)]
    for mag, i, j in entries:
        if dropped + mag >= tol:
            break
        dropped += mag
        keep[i][j] = False
    # Keep the leading run of each row up to its last kept coefficient.
    counts = []
    for i in range(NODES_M):
        last = max((j for j in range(NODES_S) if keep[i][j]), default=-1)
        counts.append(last + 1)
    while counts and counts[-1] == 0:
        counts.pop()
    return counts


def evaluate(coefs, counts, m, s):
    """The double-rounded polynomial at (m, s), exactly (the rounding of the evaluation itself
    is not included)."""
    acc = mp.mpf(0)
    for i in reversed(range(len(counts))):
        row = mp.mpf(0)
        for j in reversed(range(counts[i])):
            row = row * s + mp.mpf(float(coefs[i][j]))
        acc = acc * m + row
    return acc


def horner_row(row, count):
    expr = f"{float(row[count - 1])!r}"
    for j in range(count - 2, -1, -1):
        expr = f"madd({expr}, s, {float(row[j])!r})"
    return expr


def horner_2d(name, mono, counts):
    """Lines computing `name` as a Horner form in m over Horner forms in s (one per power of m,
    independent of each other)."""
    lines = [f"    const R {name}{i} = {horner_row(mono[i], counts[i])};" for i in range(len(counts))]
    expr = f"{name}{len(counts) - 1}"
    for i in range(len(counts) - 2, -1, -1):
        expr = f"madd({expr}, m, {name}{i})"
    return lines + [f"    {name} = {expr};"]


def fit_and_check(functions, names, a, b, rng, checks, label):
    monos = fit_piece(functions, a, b)
    tol = TOL * max(1.0, a)
    counts = [truncate(m, tol) for m in monos]
    errs = [mp.mpf(0)] * len(monos)
    for _ in range(checks):
        m, s = mp.mpf(rng.uniform(-1, 1)), mp.mpf(rng.uniform(-1, 1))
        exact = functions(m, x_of(s, a, b))
        for f in range(len(monos)):
            errs[f] = max(errs[f], abs(evaluate(monos[f], counts[f], m, s) - exact[f]))
    print(label + "; ".join(f"{n} {sum(c)} coefficients {c}, error {float(e):.2g}"
                            for n, c, e in zip(names, counts, errs)), flush=True)
    return [(monos[f], counts[f], float(errs[f])) for f in range(len(monos))]


def scale_shift(lo, hi):
    """(scale, shift) with 2 scale y - shift in [-1, 1] for y in [lo, hi]."""
    return float(1 / (hi - lo)), float((hi + lo) / (hi - lo))


def array(name, values):
    return f"constexpr double {name}[] = {{{', '.join(repr(float(c)) for c in values)}}};"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--checks", type=int, default=400, help="random points per piece")
    args = ap.parse_args()
    rng = random.Random(20261123)
    lines = [
        "// Generated by tools/make_log_bessel_fits.py: polynomial fits of log K_u(x) and its",
        "// x-derivative (|u| <= 1/2, 0.1 <= x < 100) that start the forward recurrence of log K at",
        "// small orders, on the host and the device; see the script. Do not edit. Each fit is",
        "// within the error written beside it (largest over random points, before the rounding",
        "// of its evaluation). R is double or a vector of doubles whose madd is found by",
        "// argument-dependent lookup.",
        "#pragma once",
        "",
        '#include "curvkit/device/detail/debye_tables.hpp"',
        "",
        "namespace curvkit::device {",
        "inline namespace CURVKIT_ISA_NAMESPACE {",
        "namespace detail {",
        "",
        f"constexpr int kv_fit_pieces = {len(K_EDGES) - 1};",
        "/// log K's pieces in x: piece p covers [kv_fit_edges[p], kv_fit_edges[p + 1]) (device",
        "/// code reads its elements only in constant expressions).",
        array("kv_fit_edges", K_EDGES),
        "",
        "/// On piece `piece`, with m = 8 u^2 - 1 and s = 2 scale / x - shift (both in [-1, 1], the",
        "/// piece's own scale and shift): a = log(K_u(x) e^x sqrt(2x / pi)) and",
        "/// d = K_{u+1}(x) / K_u(x) - u / x - 1 - 1 / (2x).",
        "template <int piece, class R>",
        "CURVKIT_HD void kv_fit(R m, R two_over_x, R& a, R& d) {",
    ]
    for p, (lo, hi) in enumerate(zip(K_EDGES, K_EDGES[1:])):
        scale, shift = scale_shift(1 / hi, 1 / lo)
        (ma, ca, ea), (md, cd, ed) = fit_and_check(k_functions, "AD", lo, hi, rng, args.checks,
                                                   f"K [{lo}, {hi}): ")
        comment = (f"x in [{lo!r}, {hi!r}): a to {ea:.1e} ({sum(ca)} coefficients), "
                   f"d to {ed:.1e} ({sum(cd)})")
        lines += [f"    {'if' if p == 0 else '} else if'} constexpr (piece == {p}) {{  // {comment}"]
        lines += [f"        const R s = madd(two_over_x, R({scale!r}), R({-shift!r}));"]
        lines += ["    " + line for line in horner_2d("a", ma, ca) + horner_2d("d", md, cd)]
    lines += ["    }", "}", "", "}  // namespace detail", "}  // namespace CURVKIT_ISA_NAMESPACE",
              "}  // namespace curvkit::device", ""]
    with open(args.out, "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
