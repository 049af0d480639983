// log I_v(x), log K_v(x), the ratio I_{v+1}(x)/I_v(x) and the x-derivatives of log I and log K
// for real order v and x >= 0, in log space throughout, for host and device.
//
// Routes (order v >= 0; negative orders by reflection):
//   v >= detail::debye_min_order: Olver's uniform large-order expansion (DLMF 10.41), valid
//     for every x, with as many terms as the order needs (detail/debye_tables.hpp).
//   smaller v, x >= 20: the Hankel large-argument expansion (DLMF 10.40) when its terms fall
//     below the rounding level before they turn to grow (a truncation test, not a region);
//     where the test fails, log I and I_{v+1}/I_v from the uniform expansion at an order
//     above debye_min_order and the backward recurrence of the ratio;
//   smaller v, x < 20: log I from the power series (all terms positive, summed relative to
//     the first) and I_{v+1}/I_v from its continued fraction;
//   K at smaller v: log K_u and K_{u+1}/K_u at the order |u| <= 1/2 from Temme's series
//     (x < 0.1), from fitted polynomials (0.1 <= x < 100, detail/log_bessel_fits.hpp), or from
//     Steed's continued fraction with its normalising sum (past 100, where Hankel's test
//     fails), then the forward recurrence up to order v.
// float arguments are evaluated in double and rounded once, which keeps them within an ulp.
//
// The routes are templates over the number type R: double here and on the device, a SIMD
// lane type in the vectorised CPU kernels, which supplies its own overloads of madd, select,
// the lane reductions and the math functions (found by argument-dependent lookup) and calls
// the routes only inside their fast domains. Loops over terms run until every lane has
// converged, and a converged lane keeps its sums, so that a lane's result does not depend on
// the lanes beside it.
#pragma once

#include <cmath>

#include "curvkit/device/detail/debye_tables.hpp"
#include "curvkit/device/detail/log_bessel_fits.hpp"
#include "curvkit/device/macros.hpp"

namespace curvkit::device {
inline namespace CURVKIT_ISA_NAMESPACE {
namespace detail {

constexpr double bessel_eps = 2.220446049250313e-16;
constexpr double ln_2 = 0.69314718055994530942;
constexpr double pi_d = 3.14159265358979323846;
constexpr double half_ln_2pi = 0.91893853320467274178;      // log(2 pi) / 2
constexpr double half_ln_pi_over_2 = 0.22579135264472743236;  // log(pi / 2) / 2
constexpr double ln_2_over_pi = -0.45158270528945486473;      // log(2 / pi)
constexpr double euler_gamma = 0.57721566490153286061;
constexpr double euler_gamma_lo = -4.942915152430645e-18;     // gamma - euler_gamma
constexpr double half_exp_gamma = 0.890536208995099;          // e^gamma / 2
constexpr double half_exp_gamma_lo = -6.379012009918789e-18;  // e^gamma / 2 - half_exp_gamma
constexpr double ln_2_minus_gamma = 0.11593151565841244881;   // log(2) - gamma
// Hankel's expansion is tried from here on: the exponentially small part it omits from I is
// e^{-2x} relative, below 5e-18 at x = 20.
constexpr double hankel_min_x = 20.0;

CURVKIT_HD double nan_value() { return static_cast<double>(NAN); }
CURVKIT_HD double inf_value() { return static_cast<double>(INFINITY); }
CURVKIT_HD bool is_nan(double a) { return a != a; }
CURVKIT_HD bool is_inf(double a) { return fabs(a) == static_cast<double>(INFINITY); }

// Lane helpers of the scalar number type (the SIMD type has its own).
CURVKIT_HD double select(bool m, double a, double b) { return m ? a : b; }
CURVKIT_HD bool any_lane(bool m) { return m; }
CURVKIT_HD bool and_not(bool a, bool b) { return a && !b; }
CURVKIT_HD double max_lane(double a) { return a; }
CURVKIT_HD double min_lane(double a) { return a; }

/// asinh(v / x) for v, x > 0 given h = hypot(v, x), also where v / x overflows:
/// asinh(w) = log(w + sqrt(1 + w^2)) = log((v + h) / x).
CURVKIT_HD double asinh_ratio(double v, double x, double h) {
    // Past w = 1e8, asinh(w) = log(2 w) + 1 / (4 w^2) to within 3e-17.
    if (v > 1e8 * x) return ln_2 + log(v) - log(x);
    const double w = v / x;
    // For w < 1/2 the logarithm's argument is near 1: log1p keeps the small result exact.
    return w >= 0.5 ? log((v + h) / x) : log1p(w + w * v / (x + h));
}

/// hypot(v, x) as sqrt(v^2 + x^2): as accurate as hypot, much cheaper, and the same on the
/// device, whose square root is correctly rounded where its hypot may be 2 ulps off (enough
/// to put I_{v+1}/I_v above 1 at x >> v). Past 1e150 the squares are formed at a scale of
/// 2^-600, exact in binary.
CURVKIT_HD double debye_hypot(double v, double x) {
    if (v < 1e150 && x < 1e150) return sqrt(madd(v, v, x * x));
    const double a = v * 0x1p-600, b = x * 0x1p-600;
    return sqrt(madd(a, a, b * b)) * 0x1p600;
}

/// The pieces of the uniform expansion at (v, x): v eta = hypot(v, x) - v asinh(v / x),
/// h = hypot(v, x), its reciprocal (= p / v, the expansion's variable), p = v / h, p^2.
template <class R>
struct debye_point {
    R veta, h, inv_h, p, p2;
};

template <class R>
CURVKIT_HD debye_point<R> debye_at(R v, R x) {
    debye_point<R> d;
    d.h = debye_hypot(v, x);
    d.inv_h = 1.0 / d.h;
    d.p = v * d.inv_h;
    d.p2 = d.p * d.p;
    d.veta = d.h - v * asinh_ratio(v, x, d.h);
    return d;
}

/// sum_{k=1}^{n} t^k q_k(p2) by Horner in t (smallest terms first); t = +-p/v.
CURVKIT_HD double debye_u_sum(double t, double p2, int n) { return debye_u_series(t, p2, n); }

/// sum_{k=1}^{n} t^k s_k(p2) with t = +-p/v: the w-sum W (alternating for t < 0).
CURVKIT_HD double debye_w_sum(double t, double p2, int n) { return debye_w_series(t, p2, n); }

/// The last step of the uniform expansion of log I (`kv` false) or log K, from v eta, 1 / h
/// and the u-sum U: log(U / sqrt(h)) as half of one logarithm, without a square root (its
/// rounding is far below eps * h).
template <class R>
CURVKIT_HD R debye_log_finish(bool kv, R veta, R inv_h, R u) {
    const R half_log = 0.5 * log(u * u * inv_h);
    return kv ? half_ln_pi_over_2 - veta + half_log : veta - half_ln_2pi + half_log;
}

/// log I_v(x) by the uniform expansion with n terms (at least debye_terms_log(v); more only
/// add terms below the rounding level).
template <class R>
CURVKIT_HD R debye_log_iv_terms(R v, R x, int n) {
    const debye_point<R> d = debye_at(v, x);
    return debye_log_finish(false, d.veta, d.inv_h, 1.0 + debye_u_series(d.inv_h, d.p2, n));
}

/// log K_v(x) likewise, with the alternating sum.
template <class R>
CURVKIT_HD R debye_log_kv_terms(R v, R x, int n) {
    const debye_point<R> d = debye_at(v, x);
    return debye_log_finish(true, d.veta, d.inv_h, 1.0 + debye_u_series(-d.inv_h, d.p2, n));
}

CURVKIT_HD double debye_log_iv(double v, double x) {
    return debye_log_iv_terms(v, x, debye_terms_log(v));
}

CURVKIT_HD double debye_log_kv(double v, double x) {
    return debye_log_kv_terms(v, x, debye_terms_log(v));
}

// I'_v / I_v = (h / x) (U + (1 - p^2) W) / U and 1 - p^2 = x^2 / h^2, so
// I_{v+1} / I_v = I'_v / I_v - v / x = x / (h + v) + (x / h) W / U without cancellation.
CURVKIT_HD double debye_iv_ratio(double v, double x) {
    const debye_point<double> d = debye_at(v, x);
    const int n = debye_terms_ratio(v);
    const double t = d.p / v;
    const double u = 1.0 + debye_u_sum(t, d.p2, n);
    const double w = debye_w_sum(t, d.p2, n);
    return x / (d.h + v) + (x / d.h) * (w / u);
}

// K'_v / K_v = -(h / x) - (x / h) W / U with the alternating sums.
CURVKIT_HD double debye_dlog_kv(double v, double x) {
    const debye_point<double> d = debye_at(v, x);
    const int n = debye_terms_ratio(v);
    const double t = -d.p / v;
    const double u = 1.0 + debye_u_sum(t, d.p2, n);
    const double w = debye_w_sum(t, d.p2, n);
    return -(d.h / x) - (x / d.h) * (w / u);
}

/// log I_v(x) and I_{v+1}(x) / I_v(x) for 0 <= v < debye_min_order, x >= 1, from the uniform expansion
/// at order N = v + m >= debye_min_order and m steps of the backward recurrence of the ratio
/// R_nu = I_{nu+1} / I_nu, R_{nu-1} = 1 / (R_nu + 2 nu / x): every term positive, each step
/// damps the error it inherits, and log I_v = log I_N - sum log R. n terms of the sums: at
/// N < debye_min_order + 1 < 23.5 the ratio needs all the tabulated terms, and fewer only
/// where x is large (debye_terms_shifted).
template <class R>
CURVKIT_HD R shifted_debye_log_iv(R v, R x, R& ratio, int n = debye_max_terms) {
    const R m = ceil(debye_min_order - v);
    const R big = v + m;
    const debye_point<R> d = debye_at(big, x);
    const R u = 1.0 + debye_u_series(d.inv_h, d.p2, n);
    const R w = debye_w_series(d.inv_h, d.p2, n);
    const R r = x / (d.h + big) + x * d.inv_h * (w / u);  // R_N
    // The recurrence as a continuant, without a division per step: with R_nu = P / Q,
    // R_{nu-1} = Q / (P + (2 nu / x) Q), so (P, Q) <- (Q, P + (2 nu / x) Q), and the product
    // of the R's telescopes to Q_0 / Q_m = 1 / Q_m (P_0 = R_N, Q_0 = 1). For x >= 1 each step
    // grows Q by less than 1 + 2 N / x < 46, so Q stays below 1e37.
    R p_part = r, q_part = 1.0;
    const R two_over_x = 2.0 / x;
    const int least = static_cast<int>(min_lane(m));
    int k = static_cast<int>(max_lane(m));
    for (; k > least; --k) {
        const auto active = static_cast<double>(k) <= m;  // lanes with fewer steps idle
        const R next_q = madd(v + static_cast<double>(k), two_over_x * q_part, p_part);
        p_part = select(active, q_part, p_part);
        q_part = select(active, next_q, q_part);
    }
    for (; k >= 1; --k) {  // the steps of every lane
        const R next_q = madd(v + static_cast<double>(k), two_over_x * q_part, p_part);
        p_part = q_part;
        q_part = next_q;
    }
    ratio = p_part / q_part;
    return d.veta - half_ln_2pi + 0.5 * log(u * u * d.inv_h * (q_part * q_part));
}

/// Hankel's sum sum_k (+-1)^k a_k(v) / x^k (minus for I, plus for K) with a truncation test:
/// true and the sum in `sum` when a term falls below the rounding level before the terms turn
/// to grow, and no term exceeded the sum (so rounding stays at the level of the sum) unless
/// `large_terms_bounded` (the caller knows that their roundings stay below the result's ulp).
CURVKIT_HD bool hankel_sum(double v, double x, bool alternating, double& sum,
                           bool large_terms_bounded = false) {
    const double mu = 4.0 * v * v;
    // A first term above 1 means terms above the sum: the test would fail, after many terms.
    if (mu - 1.0 > 8.0 * x && !large_terms_bounded) return false;
    const double step = alternating ? -1.0 / (8.0 * x) : 1.0 / (8.0 * x);
    double term = 1.0, s = 1.0, prev = 1.0, largest = 0.0;
    for (int k = 1; k <= 80; ++k) {
        const double odd = 2.0 * k - 1.0;
        term *= (mu - odd * odd) * step / k;
        const double a = fabs(term);
        if (a <= 0.5 * bessel_eps * fabs(s)) {
            sum = s + term;
            return large_terms_bounded || largest <= fabs(sum);
        }
        // Past k > v + 1/2 the factors no longer shrink towards zero: growth means divergence.
        if (a > 4.0 || (odd > 2.0 * v && a > prev)) return false;
        s += term;
        prev = a;
        largest = fmax(largest, a);
    }
    return false;
}

/// Z_{v+1}(x) / Z_v(x) (Z = I, `alternating`, or K) from Hankel's sums s_v, s_{v+1} where both
/// pass hankel_sum's test: as 1 + D / s_v with D = s_{v+1} - s_v summed term by term, each
/// difference of terms from the last (t1_k - t0_k = (t1_{k-1} - t0_{k-1}) f1_k + t0_{k-1} g_k,
/// f_k the factors of the terms, g_k = f1_k - f0_k = (8 v + 4) step / k formed directly), so that
/// the sums' roundings enter scaled by D / s_v ~ (2 v + 1) / (2 x), not whole: the quotient of
/// the two sums reached 3.7 ulps (I) and 5.9 (K) on random points with x in [20, 100).
CURVKIT_HD bool hankel_ratio(double v, double x, bool alternating, double& ratio) {
    double s0, s1;
    if (!hankel_sum(v, x, alternating, s0) || !hankel_sum(v + 1.0, x, alternating, s1))
        return false;
    const double mu = 4.0 * v * v;
    const double step = alternating ? -1.0 / (8.0 * x) : 1.0 / (8.0 * x);
    double t0 = 1.0, d = 0.0, dsum = 0.0;
    for (int k = 1; k <= 80; ++k) {
        const double odd = 2.0 * k - 1.0;
        const double f0 = (mu - odd * odd) * step / k, g = (8.0 * v + 4.0) * step / k;
        d = d * (f0 + g) + t0 * g;
        t0 *= f0;
        dsum += d;
        if (fabs(d) <= 0.5 * bessel_eps * fabs(dsum) && fabs(t0) <= 0.5 * bessel_eps * fabs(s0))
            break;
    }
    ratio = 1.0 + dsum / s0;
    return true;
}

/// Gamma(v + 1) for -1/2 <= v < debye_min_order (below 1e21) as the fraction numer / denom:
/// (u + 1) ... (u + n) over 1 / Gamma(1 + u) with v = n + u, |u| <= 1/2, exact to a few ulps,
/// also where log Gamma is near zero (the caller divides once).
template <class R>
CURVKIT_HD void gamma_1p_small(R v, R& numer, R& denom) {
    const R n = floor(v + 0.5);
    const R u = v - n;
    // Two products (odd and even j) halve the chain of dependent multiplications. The steps
    // every lane takes need no mask (a masked step multiplies by 1 exactly).
    R odd_j = 1.0, even_j = 1.0;
    const int least = static_cast<int>(min_lane(n)), most = static_cast<int>(max_lane(n));
    int j = 1;
    for (; j + 1 <= least; j += 2) {
        odd_j = odd_j * (u + static_cast<double>(j));
        even_j = even_j * (u + static_cast<double>(j + 1));
    }
    for (; j <= most; j += 2) {
        odd_j = odd_j * select(static_cast<double>(j) <= n, u + static_cast<double>(j), 1.0);
        even_j = even_j * select(static_cast<double>(j + 1) <= n, u + static_cast<double>(j + 1), 1.0);
    }
    R even, odd;
    inverse_gamma_parts(u * u, even, odd);
    numer = odd_j * even_j;
    denom = madd(u, odd, even);
}

/// log I_v(x) from the power series, for 0 <= v < debye_min_order and 0 < x < hankel_min_x:
/// the terms are all positive, and their sum relative to the first is at most I_0(x) < 5e7.
template <class R>
CURVKIT_HD R series_log_iv(R v, R x) {
    const R q = 0.25 * x * x;
    // The sum s = 1 + sum_k q^k / D_k, D_k = prod_{j <= k} j (v + j), kept as a fraction N / D
    // (N_k = N_{k-1} d_k + q^k, D_k = D_{k-1} d_k): no division per term, and four terms per
    // step, N_{k+3} = N_{k-1} d_k d_{k+1} d_{k+2} d_{k+3} + q^k ((((d_{k+3} + q) q
    // + d_{k+2} d_{k+3}) q + d_{k+1} d_{k+2} d_{k+3}), 19 operations where one term per step
    // takes 7 and the steps' chains through N and q^k are a quarter as long. A lane stops once
    // its last term q^{k+3} / D_{k+3} falls below rounding relative to s (q^{k+3} <= eps/2
    // N_{k+3}) and keeps its N and D, so that its result does not depend on the lanes beside
    // it. For x < hankel_min_x that takes under 64 terms, where D stays below 1e200.
    R num = 1.0, den = 1.0, qk = 1.0;  // qk = q^{k-1}
    const R q2 = q * q, q4 = q2 * q2;
    auto active = x > 0.0;
    for (int k = 1; k < 1000; k += 4) {
        const double k1 = k, k2 = k + 1, k3 = k + 2, k4 = k + 3;
        // d_j = j (v + j) = j v + j^2, exact squares, one rounding.
        const R d1 = madd(v, k1, k1 * k1), d2 = madd(v, k2, k2 * k2);
        const R d3 = madd(v, k3, k3 * k3), d4 = madd(v, k4, k4 * k4);
        const R d34 = d3 * d4, d234 = d2 * d34;
        const R dd = d1 * d234;
        const R tail = madd(madd(d4 + q, q, d34), q, d234);
        num = select(active, madd(num, dd, (qk * q) * tail), num);
        den = select(active, den * dd, den);
        qk = qk * q4;
        active = active & (qk > 0.5 * bessel_eps * num);
        if (!any_lane(active)) break;
    }
    R gamma_numer, gamma_denom;
    gamma_1p_small(v, gamma_numer, gamma_denom);
    // log(x) - log 2, not log(x / 2): x / 2 underflows for the smallest subnormal x.
    const R lead = select(v == 0.0, 0.0, v * (log(x) - ln_2));
    // log of s / Gamma(v + 1) with one division (den Gamma's numerator stays below 1e221).
    return lead + log(num * gamma_denom / (den * gamma_numer));
}

/// log(2 / x) - gamma = -log(x e^gamma / 2) for x > 0, rounded once: log(2 / x) and Euler's
/// gamma cancel by up to 2x for x near 1/2. The logarithm is of t = x e^gamma / 2 rounded,
/// corrected by t's rounding error (a fused two-product, with the constant's own error)
/// relative to t; for the smallest x, where that error would not be representable,
/// log(2 e^-gamma) - log(x).
template <class R>
CURVKIT_HD R log_two_over_minus_gamma_product(R x) {
    const R t = x * half_exp_gamma;
    return -log(t) - (fma(x, half_exp_gamma, -t) + x * half_exp_gamma_lo) / t;
}
CURVKIT_HD double log_two_over_minus_gamma(double x) {
    return x >= 1e-300 ? log_two_over_minus_gamma_product(x) : ln_2_minus_gamma - log(x);
}

/// sinh(s) / s - 1 and cosh(s) - 1 given e = e^s: below |s| = 2 by their Taylor series (the
/// first omitted terms under 2e-17 of them), small parts that a leading 1 would round away
/// and that e's rounding would show in; above, from e.
template <class R>
CURVKIT_HD void sinh_cosh_tails(R s, R e, R& sh, R& ch) {
    const R z = s * s;
    R ps = 1.0 / 25852016738884976640000.0;  // 1/23!
    ps = madd(ps, z, 1.0 / 51090942171709440000.0);
    ps = madd(ps, z, 1.0 / 121645100408832000.0);
    ps = madd(ps, z, 1.0 / 355687428096000.0);
    ps = madd(ps, z, 1.0 / 1307674368000.0);
    ps = madd(ps, z, 1.0 / 6227020800.0);
    ps = madd(ps, z, 1.0 / 39916800.0);
    ps = madd(ps, z, 1.0 / 362880.0);
    ps = madd(ps, z, 1.0 / 5040.0);
    ps = madd(ps, z, 1.0 / 120.0);
    ps = madd(ps, z, 1.0 / 6.0);
    R pc = 1.0 / 1124000727777607680000.0;  // 1/22!
    pc = madd(pc, z, 1.0 / 2432902008176640000.0);
    pc = madd(pc, z, 1.0 / 6402373705728000.0);
    pc = madd(pc, z, 1.0 / 20922789888000.0);
    pc = madd(pc, z, 1.0 / 87178291200.0);
    pc = madd(pc, z, 1.0 / 479001600.0);
    pc = madd(pc, z, 1.0 / 3628800.0);
    pc = madd(pc, z, 1.0 / 40320.0);
    pc = madd(pc, z, 1.0 / 720.0);
    pc = madd(pc, z, 1.0 / 24.0);
    pc = madd(pc, z, 1.0 / 2.0);
    const auto small = fabs(s) < 2.0;
    const R inv_e = 1.0 / e;
    sh = select(small, z * ps, 0.5 * (e - inv_e) / s - 1.0);
    ch = select(small, z * pc, 0.5 * (e + inv_e) - 1.0);
}

/// (pi u) / sin(pi u) for |u| <= 1/2, from sin(z) / z = 1 - z^2 g(z^2) with g's Taylor
/// polynomial (the first term left out is below 3e-19 of g at z = pi / 2): g's terms alternate
/// but fall fast, so it is a few roundings off, and 1 - z^2 g >= 2 / pi takes that at a third
/// of its size. Within about an ulp on host and device alike, where the device's sin may be 2
/// ulps off (it is one of the errors Temme's series adds up).
template <class R>
CURVKIT_HD R pi_u_over_sin_pi_u(R u) {
    const R z = pi_d * u;
    const R w = z * z;
    R g = madd(w, R(3.868170170630684e-23), R(-1.9572941063391263e-20));
    g = madd(w, g, R(8.22063524662433e-18));
    g = madd(w, g, R(-2.8114572543455206e-15));
    g = madd(w, g, R(7.647163731819816e-13));
    g = madd(w, g, R(-1.6059043836821613e-10));
    g = madd(w, g, R(2.505210838544172e-08));
    g = madd(w, g, R(-2.7557319223985893e-06));
    g = madd(w, g, R(0.0001984126984126984));
    g = madd(w, g, R(-0.008333333333333333));
    g = madd(w, g, R(0.16666666666666666));
    return 1.0 / madd(-w, g, R(1.0));
}

/// K_u(x) and (x / 2) K_{u+1}(x) for |u| <= 1/2, 0 < x < temme_max_x, by Temme's series.
/// Near x = 1/2, log K is near 0 and its error is K's relative error: the leading terms of
/// both sums carry their main rounding errors to the end (in f_lo and p_lo), and the later
/// terms are summed apart from them.
template <class R>
CURVKIT_HD void temme_kv(R u, R x, R& k0, R& k1) {
    // 1/Gamma(1 +- u) = 1 + even_t +- u odd, odd = gamma + odd_t (Temme's Gamma_2 = 1 + even_t,
    // Gamma_1 = -odd).
    R even_t, odd_t;
    inverse_gamma_tails(u * u, even_t, odd_t);
    const R odd = euler_gamma + odd_t;
    const R lg = log_two_over_minus_gamma(x);
    // l = log(2 / x) and its rounding error (lg >= gamma for x <= 0.63).
    const R l = lg + euler_gamma;
    const R l_lo = (euler_gamma - (l - lg)) + euler_gamma_lo;
    const R sigma = u * l;
    const R sigma_lo = fma(u, l, -sigma) + u * l_lo;
    const R e = exp(sigma);
    R sh, ch;
    sinh_cosh_tails(sigma, e, sh, ch);
    // f_0 = (u pi / sin(u pi)) ((1 + even_t) (1 + sh) l - odd (1 + ch))
    //     = (u pi / sin(u pi)) (lg + small), small = l t - odd_t - odd ch,
    // t = even_t + sh + even_t sh: where the two products of the first form cancel (x near
    // 1/2), lg has one rounding and the small parts errors relative to themselves; the sum and
    // the product keep their rounding errors (a two-sum, a fused two-product).
    const R t = madd(even_t, sh, even_t + sh);
    const R small = madd(l, t, -odd_t) - odd * ch;
    const R bracket = lg + small;
    const R bv = bracket - lg;
    const R bracket_lo = (lg - (bracket - bv)) + (small - bv);
    const R upi_over_sin = pi_u_over_sin_pi_u(u);
    R f = upi_over_sin * bracket;
    const R f_lo = fma(upi_over_sin, bracket, -f) + upi_over_sin * bracket_lo;
    // p_0 = (x/2)^-u Gamma(1 + u) / 2 = e / (2 den_p) and q_0 = 1 / (2 e den_q), with
    // den_p, den_q = 1/Gamma(1 +- u). The second sum is p_0 less up to 2/5 of it, which
    // amplifies p_0's error: the division's rounding (the fused residual), den_p's and
    // sigma's go to p_lo, and den_p den_q = sin(u pi) / (u pi) gives 1 / den_p without another
    // division.
    const R d_p = madd(u, odd, even_t);
    const R den_p = 1.0 + d_p;
    const R den_p_lo = (1.0 - den_p) + d_p;
    const R den_q = 1.0 + madd(-u, odd, even_t);
    const R p_hi = e / den_p;
    const R p_lo =
        0.5 * ((fma(-p_hi, den_p, e) + e * sigma_lo - p_hi * den_p_lo) * (den_q * upi_over_sin));
    R p = 0.5 * p_hi;
    R q = 0.5 / (e * den_q);
    const R f0 = f, p0 = p;
    const R y = 0.25 * x * x;
    R c = 1.0;
    // The terms past the leading ones (K_u and (x/2) K_{u+1}): added to a sum of the leading
    // term's size, each would round at that size.
    R tail_k = 0.0, tail_k1 = 0.0;
    auto active = x > 0.0;   // a lane keeps its sums once both have converged
    for (int k = 1; k < 500; ++k) {
        const double kd = k;
        f = (kd * f + p + q) / (kd * kd - u * u);
        p = p / (kd - u);
        q = q / (kd + u);
        c = c * (y / kd);
        const R dk = c * f, dk1 = c * (p - kd * f);
        tail_k = select(active, tail_k + dk, tail_k);
        tail_k1 = select(active, tail_k1 + dk1, tail_k1);
        active = and_not(active, (fabs(dk) <= 0.5 * bessel_eps * fabs(f0 + tail_k)) &
                                     (fabs(dk1) <= 0.5 * bessel_eps * fabs(p0 + tail_k1)));
        if (!any_lane(active)) break;
    }
    k0 = f0 + (tail_k + f_lo);
    k1 = p0 + (tail_k1 + p_lo);
}

/// log K_u(x) and K_{u+1}(x) / K_u(x) for |u| <= 1/2, x > 4, by Steed's evaluation of the
/// continued fraction for z_1/z_0, z_n = U(u + 1/2 + n, 2u + 1, 2x), together with the
/// normalising sum S = sum_n C_n z_n / z_0, K_u = sqrt(pi / (2x)) e^{-x} / S (only
/// `with_log`: the sum converges more slowly than the fraction at small x).
template <class R>
CURVKIT_HD void steed_kv(R u, R x, R& log_k, R& ratio, bool with_log) {
    // z_{n-1} = b_n z_n + a_{n+1} z_{n+1}, b_n = 2 (n + x), a_{n+1} = u^2 - (n + 1/2)^2.
    // The sum needs C_n q_n with q the solution of the recurrence from q_0 = 0, q_1 = 1 and
    // C_{n+1} = -C_n a_{n+1} / (n + 1). Carrying r_n = q_n a_2 ... a_n and
    // c_n = C_n / (a_2 ... a_n) instead gives r_{n+1} = a_n r_{n-1} - b_n r_n and
    // c_{n+1} = -c_n / (n + 1): the only division on the critical path is Steed's D_n.
    const R a1 = u * u - 0.25;
    R b = 2.0 * (1.0 + x);
    R d = 1.0 / b;            // Steed's D_n
    R dh = d, h = d;          // increments and value of the fraction z_1/z_0
    R r_prev = 0.0, r_cur = 1.0;
    R a = a1;                 // a_n
    R c = -a1;                // c_1 = C_1
    R qsum = c;               // sum_{k=1}^{n} C_k q_k
    R s = 1.0 + qsum * dh;
    // A lane keeps its h and s once both have converged (x > 0: all lanes start active).
    auto active = x > 0.0;
    for (int n = 1; n < 10000; ++n) {
        const R r_next = a * r_prev - b * r_cur;  // uses a_n and b_n
        a = a - 2.0 * n;                          // a_{n+1} = a_n - 2n
        c = c * (-1.0 / (n + 1.0));
        r_prev = r_cur;
        r_cur = r_next;
        // Rescale r and c together where r grows large; their products are unchanged.
        const auto large = fabs(r_cur) > 1e150;
        r_prev = select(large, r_prev * 1e-150, r_prev);
        r_cur = select(large, r_cur * 1e-150, r_cur);
        c = select(large, c * 1e150, c);
        qsum = qsum + c * r_cur;
        b = b + 2.0;
        d = 1.0 / (b + a * d);
        dh = dh * (b * d - 1.0);
        h = select(active, h + dh, h);
        const R ds = qsum * dh;
        s = select(active, s + ds, s);
        const auto h_done = fabs(dh) <= 0.5 * bessel_eps * fabs(h);
        active = with_log ? and_not(active, h_done & (fabs(ds) <= 0.5 * bessel_eps * fabs(s)))
                          : and_not(active, h_done);
        if (!any_lane(active)) break;
    }
    log_k = with_log ? half_ln_pi_over_2 - 0.5 * log(x) - x - log(s) : R(0.0);
    ratio = (u + 0.5 + x + a1 * h) / x;
}

/// The continued fraction of I_{v+1} / I_v (b_k = (v + k) two_over_x) evaluated backward from
/// one term past `depth`, each lane from its own depth.
template <class R>
CURVKIT_HD R cf1_backward(R v, R two_over_x, R depth) {
    const R n = depth + 1.0;
    R t = (v + n) * two_over_x;
    for (int j = static_cast<int>(max_lane(n)) - 1; j >= 1; --j) {
        const R b = (v + static_cast<double>(j)) * two_over_x;
        t = select(static_cast<double>(j) < n, b + 1.0 / t, t);
    }
    return 1.0 / t;
}

/// I_{v+1}(x) / I_v(x) from its continued fraction 1 / (b_1 + 1 / (b_2 + ...)),
/// b_k = 2 (v + k) / x (every b_k > 0 for v > -1), evaluated backward from the depth where
/// successive approximants agree to rounding: backward, each step b_j + 1 / t of positive
/// terms damps the error it inherits (1.75 ulps at worst on 7,500 random points with x < 20),
/// where the forward product of the approximants' ratios gathers a rounding per step (7.5
/// ulps at x in [10, 20), 29 steps). The forward pass that finds the depth is a continuant:
/// the approximants P_k / Q_k (P_k = b_k P_{k-1} + P_{k-2}, Q_k likewise, all positive)
/// differ by 1 / (Q_k Q_{k-1}), so |f_k - f_{k-1}| <= eps f_k is eps P_k Q_{k-1} >= 1, with
/// no division (Lentz's method takes two per step). Where b_k is huge (tiny x) the products
/// overflow to inf, which passes the test, as it should: the fraction has converged.
template <class R>
CURVKIT_HD R cf1_iv_ratio(R v, R x) {
    const R two_over_x = 2.0 / x;
    R p_prev = 0.0, p = 1.0, q_prev = 1.0, q = (v + 1.0) * two_over_x;  // P_0, P_1, Q_0, Q_1
    R depth = 1.0;
    auto active = x > 0.0;  // a lane keeps its depth once converged
    for (int k = 2; k < 100000; ++k) {
        const R b = (v + static_cast<double>(k)) * two_over_x;
        const R p_next = madd(b, p, p_prev), q_next = madd(b, q, q_prev);
        p_prev = p;
        p = p_next;
        q_prev = q;
        q = q_next;
        depth = select(active, R(static_cast<double>(k)), depth);
        active = and_not(active, bessel_eps * p * q_prev >= 1.0);
        if (!any_lane(active)) break;
    }
    return cf1_backward(v, two_over_x, depth);
}

// K at the order |u| <= 1/2 starts the forward recurrence of small orders. Temme's series
// loses a few ulps to cancellation between its logarithmic and constant parts near x = 1 and
// takes more terms as x grows; Steed's normalising sum converges slowly below x = 4 (~170 steps
// at x = 1/2, gathering roundings: 4.4 scaled ulps at x in [2, 2.5)). From x = 0.1 to 100 the
// fitted polynomials of log_bessel_fits.hpp give log K_u and K_{u+1} / K_u, and the recurrence
// runs as a continuant: one division and one logarithm in all (1.9 scaled ulps at worst on
// 27,000 random points, where those routes reached 3, and 3-5x faster in scalar code); below,
// Temme's series (its terms fall fast at small x, where the fits would take ever more
// coefficients); past 100, Steed's fraction with its sum.
constexpr double temme_max_x = kv_fit_edges[0];
constexpr double kv_fit_max_x = kv_fit_edges[kv_fit_pieces];
/// The fit's pieces below this x give D to 4.6e-17 or better, against |d/dx log K| >= 1;
/// past it, to 2.5e-16 and more: d/dx log K takes Steed's fraction from there.
constexpr int dlog_kv_fit_pieces = 13;
constexpr double dlog_kv_fit_max_x = kv_fit_edges[dlog_kv_fit_pieces];
static_assert(dlog_kv_fit_max_x == 11.0);

/// mant * rho (one step of a growing product), renormalised as mantissa * 2^expo before it
/// or the next ratio (up to ~1e302 for the smallest x) could overflow; only where `on`.
CURVKIT_HD void multiply_ratio(double& mant, double& expo, double rho, bool on) {
    if (!on) return;
    if (mant > 1e100 || rho > 1e200) {
        int e1, e2;
        mant = frexp(mant, &e1) * frexp(rho, &e2);
        expo += e1 + e2;
    } else {
        mant *= rho;
    }
}

/// The forward recurrence of the ratios rho_j = K_{u+j+1} / K_{u+j} (stable for K) over the
/// n steps from order u to v = u + n: returns log(rho_s ... rho_{n-1}) = log(K_v / K_{u+s}),
/// s = skip (0, or 1 where the caller has K_{u+1}), and leaves K_{v+1} / K_v in rho, which
/// holds rho_0 on entry. Every ratio is >= 1, so the product only grows.
template <class R>
CURVKIT_HD R k_recurrence(R u, R n, R x, R& rho, R skip = R(0.0)) {
    R mant = 1.0, expo = 0.0;
    const R two_over_x = 2.0 / x;
    const int most = static_cast<int>(max_lane(n));
    for (int j = 1; j <= most; ++j) {
        const auto on = static_cast<double>(j) <= n;  // lanes with fewer steps idle
        multiply_ratio(mant, expo, rho, and_not(on, static_cast<double>(j) <= skip));
        rho = select(on, 1.0 / rho + (u + static_cast<double>(j)) * two_over_x, rho);
    }
    return log(mant) + expo * ln_2;
}

/// log K_v(x) and K_{v+1}(x) / K_v(x) for 0 <= v < debye_min_order, x >= kv_fit_max_x:
/// Steed's fraction with its normalising sum at the order |u| <= 1/2, then the forward
/// recurrence.
template <class R>
CURVKIT_HD R steed_log_kv(R v, R x, R& ratio) {
    const R n = floor(v + 0.5);
    const R u = v - n;
    R log_k, rho;
    steed_kv(u, x, log_k, rho, true);
    log_k = log_k + k_recurrence(u, n, x, rho);
    ratio = rho;
    return log_k;
}

/// log K_v(x) and K_{v+1}(x) / K_v(x) for 0 <= v < debye_min_order, 0 < x <= temme_max_x:
/// Temme's series at the order |u| <= 1/2, then the forward recurrence.
template <class R>
CURVKIT_HD R temme_log_kv(R v, R x, R& ratio) {
    const R n = floor(v + 0.5);
    const R u = v - n;
    R k0, k1;  // K_u and (x / 2) K_{u+1}
    temme_kv(u, x, k0, k1);
    R rho = (2.0 / x) * (k1 / k0);
    // Where v >= u + 1 the recurrence starts from log K_{u+1} = log(k1 / (x / 2)), which
    // carries k1's error alone; log K_u + log(K_{u+1} / K_u) would add the roundings of the
    // ratio and of a second logarithm. Below x = 1e-150, where k1 / (x / 2) (up to
    // (x / 2)^-1.5) could overflow, log K is large and those roundings do not show.
    const auto up = and_not(n >= 1.0, x < 1e-150);
    const R log_k = log(select(up, k1 / (0.5 * x), k0)) +
                    k_recurrence(u, n, x, rho, select(up, R(1.0), R(0.0)));
    ratio = rho;
    return log_k;
}

/// log K_v(x) and K_{v+1}(x) / K_v(x) for 0 <= v < debye_min_order, x > 0 outside the fit's
/// range: K at |u| <= 1/2 and the forward recurrence of the ratios up to order v.
CURVKIT_HD void small_order_kv(double v, double x, double& log_k, double& ratio) {
    log_k = x >= temme_max_x ? steed_log_kv(v, x, ratio) : temme_log_kv(v, x, ratio);
}

/// The forward recurrence of K in the order, K_{w+1} = K_{w-1} + (2 w / x) K_w, as a
/// continuant over the n steps from order u: (p, q) <- ((u + j) (2 / x) p + q, p) for
/// j = 1..n, lanes with fewer steps idle. From p = K_{u+1} / K_u, q = 1 it ends at
/// p = K_{u+n+1} / K_u, q = K_{u+n} / K_u: k_recurrence's ratios and their product with no
/// division per step (k_recurrence's rho_j = 1 / rho_{j-1} + 2 (u + j) / x is a chain of
/// dependent divisions). No renormalisation: only for x >= 1e-10, where each ratio is below
/// 2 (debye_min_order + 1) / x < 5e11 and p (22 steps at most) stays below 1e258.
template <class R>
CURVKIT_HD void k_continuant(R u, R n, R two_over_x, R& p, R& q) {
    const int least = static_cast<int>(min_lane(n)), most = static_cast<int>(max_lane(n));
    int j = 1;
    for (; j <= least; ++j) {  // the steps of every lane
        const R next = madd((u + static_cast<double>(j)) * two_over_x, p, q);
        q = p;
        p = next;
    }
    for (; j <= most; ++j) {
        const auto on = R(static_cast<double>(j)) <= n;
        const R next = madd((u + static_cast<double>(j)) * two_over_x, p, q);
        q = select(on, p, q);
        p = select(on, next, p);
    }
}

/// The orders of d/dx log K_v at v >= 0: n = floor(v + 1/2), u = v - n (|u| <= 1/2), and
/// the order w of the ratio K_{w+1} / K_w it starts from: u, or -u where n = 0.
template <class R>
struct dlog_kv_order {
    R v, n, u, w;
    CURVKIT_HD explicit dlog_kv_order(R order)
        : v(order), n(floor(order + 0.5)), u(order - n), w(select(n >= R(1.0), u, -u)) {}
};

/// d/dx log K_v(x) = -v / x - K_{v-1}(x) / K_v(x), two negative terms (v / x - K_{v+1} / K_v
/// cancels near v = 1/2 at small x), from rho = K_{w+1} / K_w at the order o.w: for n >= 1
/// (w = u) the continuant's n - 1 steps give K_v / K_{v-1}; for n = 0 (w = -u), rho itself is
/// K_{1-v} / K_v = K_{v-1} / K_v. For x >= 1e-10.
template <class R>
CURVKIT_HD R dlog_kv_from_ratio(const dlog_kv_order<R>& o, R two_over_x, R rho) {
    R p = rho, q = 1.0;
    k_continuant(o.u, o.n - 1.0, two_over_x, p, q);
    return -madd(o.v, 0.5 * two_over_x, select(o.n >= R(1.0), q / p, rho));
}

/// d/dx log K_v(x) at the orders o from Steed's fraction for K_{w+1} / K_w without its
/// normalising sum (x >= dlog_kv_fit_max_x, where it converges in few steps).
template <class R>
CURVKIT_HD R steed_dlog_kv(const dlog_kv_order<R>& o, R x) {
    R log_k, rho;  // log_k is not formed
    steed_kv(o.w, x, log_k, rho, false);
    return dlog_kv_from_ratio(o, 2.0 / x, rho);
}

/// log K_v(x) for 0 <= v < debye_min_order on the fit's piece `piece`: log K_u and
/// K_{u+1} / K_u at u = v - n, |u| <= 1/2, n = floor(v + 1/2), from the fitted polynomials,
/// then the continuant to K_v / K_u = q, with one division (2 / x) in all.
/// log K_v = a - x + log(q sqrt(pi / (2x))), q < 1e46 (x >= 0.1): its square keeps the two
/// logarithms one.
template <int piece, class R>
CURVKIT_HD R fit_log_kv(R v, R x) {
    const R n = floor(v + 0.5), u = v - n;
    const R two_over_x = 2.0 / x;
    R a, d;
    kv_fit<piece>(madd(8.0 * u, u, R(-1.0)), two_over_x, a, d);
    R p = madd(u + 0.5, 0.5 * two_over_x, 1.0 + d), q = 1.0;  // K_{u+1} / K_u
    k_continuant(u, n, two_over_x, p, q);
    return a - x + 0.5 * log(q * q * (0.25 * pi_d * two_over_x));
}

/// d/dx log K_v(x) for 0 <= v < debye_min_order on the fit's piece `piece` (piece <
/// dlog_kv_fit_pieces): the fit's K_{w+1} / K_w = 1 + (w + 1/2) / x + D (D is even in the
/// order), then dlog_kv_from_ratio.
template <int piece, class R>
CURVKIT_HD R fit_dlog_kv(R v, R x) {
    const dlog_kv_order<R> o(v);
    const R two_over_x = 2.0 / x;
    R a, d;  // a is dead code here
    kv_fit<piece>(madd(8.0 * o.u, o.u, R(-1.0)), two_over_x, a, d);
    return dlog_kv_from_ratio(o, two_over_x, madd(o.w + 0.5, 0.5 * two_over_x, 1.0 + d));
}

/// fit_log_kv (or fit_dlog_kv, `dlog`) on the piece of x, for
/// temme_max_x <= x < kv_fit_max_x: one comparison with an edge per piece passed.
template <bool dlog, int piece = 0>
CURVKIT_HD double fit_kv_on_piece(double v, double x) {
    if constexpr (piece + 1 < kv_fit_pieces) {
        constexpr double next_edge = kv_fit_edges[piece + 1];
        if (x >= next_edge) return fit_kv_on_piece<dlog, piece + 1>(v, x);
    }
    if constexpr (dlog) return fit_dlog_kv<piece>(v, x);
    else return fit_log_kv<piece>(v, x);
}

/// log K_v(x), or d/dx log K_v(x) where `dlog`, for 0 <= v < debye_min_order and
/// temme_max_x <= x < kv_fit_max_x (dlog_kv_fit_max_x): the fit's start on the piece of x.
/// Outlined on the device: the fits' sixteen pieces are code enough not to copy into every
/// kernel that may reach them (log I's reflection calls log K too).
CURVKIT_HD_OUTLINED double fit_kv(bool dlog, double v, double x) {
    return dlog ? fit_kv_on_piece<true>(v, x) : fit_kv_on_piece<false>(v, x);
}

// ---- order v >= 0, x > 0 (finite) ----------------------------------------------------------

/// Where log I takes Hankel's expansion even if a term exceeds the sum: orders below 5.5 from
/// x = 20 and below 10.5 from x = 36. Its alternating terms fall below the rounding level
/// within 25 and 18 terms and the largest is at most 2.2 and 7.1 times the sum (grids of
/// 120,000 points up to FLT_MAX), so the sum's roundings stay below ~60 eps of log I against
/// a scaled ulp of at least 20 and 36 eps there; the omitted e^-2x part is below 5e-18. The
/// uniform expansion at a shifted order, which the test would leave these to, costs twice as
/// much and reached 2.0 scaled ulps where Hankel's stays below 1.1.
CURVKIT_HD bool hankel_log_iv_bounded(double v, double x) {
    return (v < 5.5 && x >= hankel_min_x) || (v < 10.5 && x >= 36.0);
}

CURVKIT_HD double log_iv_pos(double v, double x) {
    if (v >= debye_min_order) return debye_log_iv(v, x);
    if (x < hankel_min_x) return series_log_iv(v, x);
    double s;
    if (hankel_sum(v, x, true, s, hankel_log_iv_bounded(v, x)))
        return x - 0.5 * log(x) - half_ln_2pi + log(s);
    double ratio;  // the ratio would need all the terms; log I, those of x
    return shifted_debye_log_iv(v, x, ratio, debye_terms_shifted(x));
}

CURVKIT_HD double log_kv_pos(double v, double x) {
    if (v >= debye_min_order) return debye_log_kv(v, x);
    if (x >= temme_max_x && x < kv_fit_max_x) return fit_kv(false, v, x);
    double s;
    if (x >= hankel_min_x && hankel_sum(v, x, false, s))
        return -x - 0.5 * log(x) + half_ln_pi_over_2 + log(s);
    double log_k, ratio;
    small_order_kv(v, x, log_k, ratio);
    return log_k;
}

CURVKIT_HD double iv_ratio_pos(double v, double x) {
    if (v >= debye_min_order) return debye_iv_ratio(v, x);
    // I_{v+1}/I_v -> x / (2v + 2) as x -> 0; past 1e-150 the next term is below rounding and
    // 2 (v + k) / x could overflow.
    if (x < 1e-150) return x / (2.0 * v + 2.0);
    if (x < hankel_min_x) return cf1_iv_ratio(v, x);
    double ratio;
    if (hankel_ratio(v, x, true, ratio)) return ratio;
    shifted_debye_log_iv(v, x, ratio);
    return ratio;
}

CURVKIT_HD double dlog_kv_pos(double v, double x) {
    if (v >= debye_min_order) return debye_dlog_kv(v, x);
    if (x >= temme_max_x && x < dlog_kv_fit_max_x) return fit_kv(true, v, x);
    double ratio;
    if (x >= hankel_min_x && hankel_ratio(v, x, false, ratio)) return v / x - ratio;
    if (x >= dlog_kv_fit_max_x) return steed_dlog_kv(dlog_kv_order<double>(v), x);
    if (v > 0.0 && v <= 0.5) {
        // K'_v / K_v = -v / x - K_{v-1} / K_v with K_{v-1} = K_{1-v} from Temme's series at
        // order -v: two negative terms, where v / x - K_{v+1} / K_v (about v / x - 2v / x at
        // small x) doubled the ratio's error (9.9 ulps at v = 0.47, x = 1e-4).
        double k0, k1;  // K_v and (x / 2) K_{1-v}
        temme_kv(-v, x, k0, k1);
        return -(v + 2.0 * k1 / k0) / x;
    }
    temme_log_kv(v, x, ratio);  // x < temme_max_x
    // K'_v / K_v = v / x - K_{v+1} / K_v; the ratio exceeds 2v / x, so this loses < 1 bit.
    return v / x - ratio;
}

/// sin(pi w) with the argument reduced exactly first.
CURVKIT_HD double sin_pi(double w) {
    double r = w - 2.0 * floor(0.5 * w);  // [0, 2)
    if (r > 1.5) r -= 2.0;
    else if (r > 0.5) r = 1.0 - r;
    return sin(pi_d * r);
}

/// Signed log I_v(x) for any real v, x > 0 finite: returns log |I_v| and the sign in `sign`
/// (0 where I_v(x) = 0). I_{-w} = I_w + (2 / pi) sin(pi w) K_w.
CURVKIT_HD double signed_log_iv(double v, double x, double& sign) {
    sign = 1.0;
    if (v >= 0.0) return log_iv_pos(v, x);
    const double w = -v;
    const double a = log_iv_pos(w, x);
    const double sw = sin_pi(w);
    if (w == floor(w) || sw == 0.0) return a;
    const double b = log_kv_pos(w, x) + ln_2_over_pi + log(fabs(sw));
    if (sw > 0.0) return fmax(a, b) + log1p(exp(-fabs(a - b)));
    if (a > b) return a + log1p(-exp(b - a));
    if (a == b) {
        sign = 0.0;
        return -inf_value();
    }
    sign = -1.0;
    return b + log1p(-exp(a - b));
}

/// I_{v+1}(x) / I_v(x) for negative non-integer v, x > 0 finite, as the quotient of the signed
/// logarithms: outlined, since inlined it brings log I four times and log K twice into every
/// caller (the device's d/dx log I kernel spilled 3.7 kB per thread for this rare route).
CURVKIT_HD_OUTLINED double iv_ratio_reflected(double v, double x) {
    double s1, s0;
    const double l1 = signed_log_iv(v + 1.0, x, s1);
    const double l0 = signed_log_iv(v, x, s0);
    if (s0 == 0.0) return nan_value();
    return s1 * s0 * exp(l1 - l0);
}

}  // namespace detail

// ---- public scalar functions ----------------------------------------------------------------

/// @brief log I_v(x) for real v and x >= 0; NaN for x < 0, NaN arguments, or where
/// I_v(x) < 0 (some negative non-integer orders). log I_0(0) = 0, log I_v(0) = -inf for v > 0.
CURVKIT_HD double log_iv(double v, double x) {
    if (detail::is_nan(v) || detail::is_nan(x) || x < 0.0) return detail::nan_value();
    if (x == 0.0) {
        if (v == 0.0) return 0.0;
        if (v > 0.0 || v == floor(v)) return -detail::inf_value();
        // I_v(x) ~ (x/2)^v / Gamma(v + 1) -> +-inf with the sign of Gamma(v + 1).
        return static_cast<long long>(floor(-v)) % 2 == 0 ? detail::inf_value()
                                                          : detail::nan_value();
    }
    if (detail::is_inf(x)) return detail::inf_value();
    if (detail::is_inf(v)) return -detail::inf_value();  // -inf too, an integer (I_{-n} = I_n)
    double sign;
    const double r = detail::signed_log_iv(v, x, sign);
    return sign < 0.0 ? detail::nan_value() : r;
}

/// @brief log K_v(x) for real v (K_{-v} = K_v) and x >= 0; log K_v(0) = +inf; NaN for x < 0
/// or NaN arguments.
CURVKIT_HD double log_kv(double v, double x) {
    if (detail::is_nan(v) || detail::is_nan(x) || x < 0.0) return detail::nan_value();
    if (x == 0.0) return detail::inf_value();
    if (detail::is_inf(x)) return -detail::inf_value();
    v = fabs(v);
    if (detail::is_inf(v)) return detail::inf_value();
    return detail::log_kv_pos(v, x);
}

/// @brief I_{v+1}(x) / I_v(x), computed directly (continued fraction, uniform or Hankel
/// expansion) for v >= 0 and negative integers (I_{-n+1} / I_{-n} = I_{n-1} / I_n); 0 at
/// x = 0 and 1 at x = inf. For other v < 0 it is formed from the signed logarithms of both
/// functions, and is less accurate where they nearly cancel.
CURVKIT_HD double iv_ratio(double v, double x) {
    if (detail::is_nan(v) || detail::is_nan(x) || x < 0.0) return detail::nan_value();
    if (v >= 0.0) {
        if (x == 0.0) return 0.0;
        if (detail::is_inf(x)) return detail::is_inf(v) ? detail::nan_value() : 1.0;
        if (detail::is_inf(v)) return 0.0;
        return detail::iv_ratio_pos(v, x);
    }
    if (detail::is_inf(v)) return detail::nan_value();
    if (detail::is_inf(x)) return 1.0;  // I_v(x) ~ e^x / sqrt(2 pi x) for every order
    if (x == 0.0) {
        // I_{-n} = I_n: I_{n-1} / I_n ~ 2 n / x. Otherwise I_v ~ (x / 2)^v / Gamma(v + 1), and
        // the ratio ~ x / (2 v + 2), zero with the sign of v + 1.
        return v == floor(v) ? detail::inf_value() : x / (2.0 * v + 2.0);
    }
    // The quotient of the logarithms below loses about log10(|log I|) digits (6 at v = -1e5).
    if (v == floor(v)) return 1.0 / detail::iv_ratio_pos(-v - 1.0, x);
    return detail::iv_ratio_reflected(v, x);
}

/// @brief d/dx log I_v(x) = I'_v(x) / I_v(x) = v / x + I_{v+1}(x) / I_v(x).
CURVKIT_HD double dlog_iv(double v, double x) {
    if (detail::is_nan(v) || detail::is_nan(x) || x < 0.0) return detail::nan_value();
    if (x == 0.0) {
        // v / x, but I_{-n} = I_n: n / x (v = -inf taken as an integer, as by log_iv).
        if (v == 0.0) return 0.0;
        return v > 0.0 || v == floor(v) ? detail::inf_value() : -detail::inf_value();
    }
    if (detail::is_inf(x)) return detail::is_inf(v) ? detail::nan_value() : 1.0;
    if (detail::is_inf(v)) return detail::inf_value();  // -inf too, as an integer
    if (v < 0.0 && v == floor(v)) v = -v;  // I_{-n} = I_n
    // v >= 0 (or a negative non-integer), x > 0 finite: iv_ratio less its edge cases.
    return v / x + (v >= 0.0 ? detail::iv_ratio_pos(v, x) : iv_ratio(v, x));
}

/// @brief d/dx log K_v(x) = K'_v(x) / K_v(x) (always negative); -inf at x = 0.
CURVKIT_HD double dlog_kv(double v, double x) {
    if (detail::is_nan(v) || detail::is_nan(x) || x < 0.0) return detail::nan_value();
    if (x == 0.0) return -detail::inf_value();
    v = fabs(v);
    if (detail::is_inf(x)) return detail::is_inf(v) ? detail::nan_value() : -1.0;
    if (detail::is_inf(v)) return -detail::inf_value();
    const double r = detail::dlog_kv_pos(v, x);
    // Only for subnormal x, where v / x and K_{v+1} / K_v both overflow.
    return detail::is_nan(r) ? -detail::inf_value() : r;
}

/// float overloads: evaluated in double, rounded once.
CURVKIT_HD float log_iv(float v, float x) {
    return static_cast<float>(log_iv(static_cast<double>(v), static_cast<double>(x)));
}
CURVKIT_HD float log_kv(float v, float x) {
    return static_cast<float>(log_kv(static_cast<double>(v), static_cast<double>(x)));
}
CURVKIT_HD float iv_ratio(float v, float x) {
    return static_cast<float>(iv_ratio(static_cast<double>(v), static_cast<double>(x)));
}
CURVKIT_HD float dlog_iv(float v, float x) {
    return static_cast<float>(dlog_iv(static_cast<double>(v), static_cast<double>(x)));
}
CURVKIT_HD float dlog_kv(float v, float x) {
    return static_cast<float>(dlog_kv(static_cast<double>(v), static_cast<double>(x)));
}

}  // namespace CURVKIT_ISA_NAMESPACE
}  // namespace curvkit::device
