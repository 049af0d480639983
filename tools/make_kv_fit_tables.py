"""Writes csrc/src/cpu/kv_fit_tables.hpp: polynomial fits, in the order and in 1/x, of log K_u(x)
and of its x-derivative for |u| <= 1/2 on pieces of 0.7 <= x < 100, the start of the forward
recurrence of K in the AVX2 kernels.

On a piece [a, b) the fitted functions of m = 8 u^2 - 1 and s = (2/x - 1/a - 1/b) / (1/a - 1/b),
both in [-1, 1], are

    A(m, s) = log(K_u(x) e^x sqrt(2 x / pi))               (log K less its large-x form),
    D(m, s) = K_{u+1}(x) / K_u(x) - u / x - 1 - 1 / (2 x)   (= -d/dx log K_u(x) - 1 - 1/(2x)),

both even in u and smooth in 1/x (the singularities nearest the pieces lie at x = 0 and, in
the order, at imaginary u of size ~x). They are interpolated at Chebyshev points in 40-digit
arithmetic (mpmath), converted to monomials in m and s (the coefficients decay by a factor
of ten or more per degree, so the monomial form is well conditioned), and truncated where the
sum of the dropped coefficients' magnitudes (a bound of the truncation error on the square)
is below TOL. The script then checks the double-rounded polynomials against mpmath at random
points of each piece and writes the largest errors beside them."""

from __future__ import annotations

import argparse
import random

import mpmath as mp

mp.mp.dps = 40
# The pieces' edges: narrower at small x, where log K_u(x) varies most with 1/x.
EDGES = [0.3, 0.4, 0.5, 0.7, 1.0, 1.4, 2.0, 3.0, 4.5, 7.0, 11.0, 18.0, 36.0, 100.0]
# Chebyshev points in m and s (more than any piece keeps).
NODES_M, NODES_S = 16, 32
# Bound on the truncation error of A (absolute) and D (absolute; rho = K_{u+1} / K_u >= 1):
# a small fraction of the scaled ulp eps max(|log K|, 1, hypot(v, x)) >= eps.
TOL = 4e-17


def fitted(u2, x):
    """A and D at u^2 = u2 and x."""
    u = mp.sqrt(u2)
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


def fit_piece(a, b):
    """Monomial coefficients M[i][j] (of m^i s^j) of A and D on the piece [a, b)."""
    ms, ss = chebyshev_points(NODES_M), chebyshev_points(NODES_S)
    grid_a = [[None] * NODES_S for _ in range(NODES_M)]
    grid_d = [[None] * NODES_S for _ in range(NODES_M)]
    for i, m in enumerate(ms):
        for j, s in enumerate(ss):
            grid_a[i][j], grid_d[i][j] = fitted((m + 1) / 8, x_of(s, a, b))
    to_mono_m, to_mono_s = chebyshev_to_monomial(NODES_M), chebyshev_to_monomial(NODES_S)
    result = []
    for grid in (grid_a, grid_d):
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


def truncate(mono):
    """Per power of m, the number of powers of s kept (none past the last kept power of m):
    the smallest coefficients go first while the dropped ones sum below TOL."""
    entries = sorted((abs(mono[i][j]), i, j) for i in range(NODES_M) for j in range(NODES_S))
    dropped, keep = mp.mpf(0), [[True] * NODES_S for _ in range(NODES_M)]
    for mag, i, j in entries:
        if dropped + mag >= TOL:
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--checks", type=int, default=400, help="random points per piece")
    args = ap.parse_args()
    rng = random.Random(20261123)
    pieces = []
    for a, b in zip(EDGES, EDGES[1:]):
        mono_a, mono_d = fit_piece(a, b)
        counts_a, counts_d = truncate(mono_a), truncate(mono_d)
        err_a = err_d = mp.mpf(0)
        for _ in range(args.checks):
            m, s = mp.mpf(rng.uniform(-1, 1)), mp.mpf(rng.uniform(-1, 1))
            ta, td = fitted((m + 1) / 8, x_of(s, a, b))
            err_a = max(err_a, abs(evaluate(mono_a, counts_a, m, s) - ta))
            err_d = max(err_d, abs(evaluate(mono_d, counts_d, m, s) - td))
        print(f"[{a}, {b}): A {sum(counts_a)} coefficients {counts_a}, error {float(err_a):.2g}; "
              f"D {sum(counts_d)} {counts_d}, error {float(err_d):.2g}")
        pieces.append((a, b, mono_a, counts_a, float(err_a), mono_d, counts_d, float(err_d)))
    lines = [
        "// Generated by tools/make_kv_fit_tables.py: polynomial fits of log K_u(x) and its",
        "// x-derivative for |u| <= 1/2 on pieces of 0.7 <= x < 100 (see the script). Do not edit.",
        "#pragma once",
        "",
        "namespace curvkit::cpu {",
        "",
        f"constexpr int kv_fit_pieces = {len(pieces)};",
        "/// The pieces' edges in x: piece p covers [kv_fit_edges[p], kv_fit_edges[p + 1]).",
        f"constexpr double kv_fit_edges[kv_fit_pieces + 1] = {{{', '.join(repr(e) for e in EDGES)}}};",
        "",
        "/// On piece p, with m = 8 u^2 - 1 and s = 2 kv_fit_scale[p] / x - kv_fit_shift[p] (both in",
        "/// [-1, 1]): a = log(K_u(x) e^x sqrt(2x / pi)) and d = K_{u+1}(x) / K_u(x) - u / x - 1",
        "/// - 1 / (2x), each within the error written beside it (largest over random points,",
        "/// before rounding in the evaluation). madd is found by argument-dependent lookup.",
        "",
    ]
    scale, shift = [], []
    for p, (a, b, mono_a, counts_a, err_a, mono_d, counts_d, err_d) in enumerate(pieces):
        ia, ib = 1 / mp.mpf(a), 1 / mp.mpf(b)
        scale.append(float(1 / (ia - ib)))
        shift.append(float((ia + ib) / (ia - ib)))
        lines += [
            f"// x in [{a!r}, {b!r}): a to {err_a:.1e} ({sum(counts_a)} coefficients), "
            f"d to {err_d:.1e} ({sum(counts_d)}).",
            "template <class R>",
            f"inline void kv_fit_{p}(R m, R s, R& a, R& d) {{",
            *horner_2d("a", mono_a, counts_a),
            *horner_2d("d", mono_d, counts_d),
            "}",
            "",
        ]
    lines += ["template <int piece, class R>", "inline void kv_fit(R m, R s, R& a, R& d) {"]
    for p in range(len(pieces)):
        lines.append(f"    {'if' if p == 0 else '} else if'} constexpr (piece == {p}) {{")
        lines.append(f"        kv_fit_{p}(m, s, a, d);")
    lines += ["    }", "}", ""]
    lines += [
        f"constexpr double kv_fit_scale[kv_fit_pieces] = {{{', '.join(repr(c) for c in scale)}}};",
        f"constexpr double kv_fit_shift[kv_fit_pieces] = {{{', '.join(repr(c) for c in shift)}}};",
        "",
        "}  // namespace curvkit::cpu",
        "",
    ]
    with open(args.out, "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
