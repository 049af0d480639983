// log I_v(x), log K_v(x) and their ratios over arrays, sixteen elements at a time with AVX2
// and FMA.
//
// Each chunk of elements is sorted by route key into contiguous runs (or, where all of them take
// the uniform expansion, placed by lane groups of consecutive elements): the uniform expansion
// (order >= debye_min_order) by its term count, and at smaller orders, by range of x and
// order group, the power series and the shifted uniform expansion of log I, Temme's series,
// the fitted start and Steed's fraction of log K, and Hankel's expansion of both. The runs go
// through SIMD lanes on the same templated code as the scalar functions, with lane-only forms
// where they are faster: log K's forward recurrence after Temme's series as a continuant,
// without divisions, Hankel's expansion without its truncation test where the keys guarantee
// that it passes, and the uniform expansion up to v = 1e30 x; the few other elements (zero,
// infinite, negative or subnormal arguments, tiny x for small-order K, v > 1e30 x) take the
// scalar routes, compiled here with FMA. The ratios I_{v+1} / I_v, d/dx log I and d/dx log K take
// the keys of log I and log K with routes of their own (the ratio's uniform expansion, I's
// continued fraction, the shifted expansion and Hankel's ratio; for K, Temme's series, the
// fit's start, Steed's fraction and Hankel's ratio). This file is built with -mavx2 -mfma and
// runs only where the CPU has both (see isa.hpp).
#include "cpu/special_avx2.hpp"

#if defined(CURVKIT_HAVE_AVX2_KERNELS)

#  define CURVKIT_ISA_NAMESPACE avx2_fma
#  include <omp.h>

#  include <algorithm>
#  include <cmath>
#  include <cstdint>
#  include <cstring>
#  include <memory>
#  include <type_traits>
#  include <utility>

#  include "cpu/simd_avx2.hpp"
#  include "cpu/threads.hpp"
#  include "curvkit/device/log_bessel.hpp"

namespace curvkit::cpu {
namespace avx2 {

// The two scalar helpers of the uniform expansion whose branches guard ranges the vector
// routes never see (orders and arguments below FLT_MAX, v <= 1e30 x).
CURVKIT_SIMD_INLINE vd debye_hypot(vd v, vd x) { return sqrt(madd(v, v, x * x)); }
// Temme's lanes only see x >= temme_min_x_lanes, where the product's error is representable.
CURVKIT_SIMD_INLINE vd log_two_over_minus_gamma(vd x) {
    return device::detail::log_two_over_minus_gamma_product(x);
}
CURVKIT_SIMD_INLINE vd asinh_ratio(vd v, vd x, vd h) {
    // asinh(w) = log1p(w + w^2 / (1 + sqrt(1 + w^2))), w = v / x, sqrt(1 + w^2) = h / x:
    // the argument is v (x + h + v) / (x (x + h)), one division; it stays below 3e30 for
    // v <= 1e30 x (near 2 v / x where v >> x, whose logarithm log(2 w) + 1 / (4 w^2) it is).
    const vd xh = x + h;
    return log1p(v * (xh + v) / (x * xh));
}

// The forward recurrence of K's ratios (device::detail::k_recurrence) as the continuant
// (device::detail::k_continuant), with no division per step: P follows the recurrence of K
// itself (stable forward), and the product rho_s ... rho_{n-1} telescopes to Q_n / P_{s-1}.
// The lanes only see x >= temme_min_x_lanes, where the continuant needs no renormalisation.
CURVKIT_SIMD_INLINE vd k_recurrence(vd u, vd n, vd x, vd& rho, vd skip = vd(0.0)) {
    const vd rho_0 = rho;
    vd p = rho, q = 1.0;
    device::detail::k_continuant(u, n, 2.0 / x, p, q);
    rho = p / q;
    // skip is 0 or 1 (where the caller has K_{u+1}, and n >= 1).
    return log(select(skip > vd(0.0), q / rho_0, q));
}

}  // namespace avx2

namespace {

using idx = std::int64_t;
using avx2::vd;
namespace math = curvkit::device::detail;
using math::kv_fit_edges;
using math::kv_fit_pieces;

// Longer runs per route pad less and set up fewer counters: 8192 elements are 3-4% faster
// than 4096 on 1e6-element calls (and 4096 3% faster than 2048).
constexpr int chunk = 8192;
constexpr int lanes = avx2::lanes;

// Each element gets a route key, and a counting sort makes each key's elements contiguous,
// so that every lane group runs one route with lanes of similar cost. Keys:
//   [0, debye_keys): the uniform expansion with key + 1 terms, the count its order needs
//     (debye_terms_log; where x <= v / 5, at debye_near_scale times its order), so that a
//     lane's result depends on its own arguments only;
//   [small_keys, scalar_key): the small-order routes by range of x and, within each range,
//     by order (their iteration counts change with x, their recurrences and products with
//     the order, and a group runs as long as its slowest lane): for log I the power series
//     (up to hankel_min_x, three ranges) and the shifted expansion (four ranges, each with
//     its own term count); for log K Temme's series (up to temme_max_x_lanes, two ranges),
//     the fit's pieces (up to x = 100, sixteen ranges) and Steed's fraction with its normalising
//     sum (one); for both, orders below 5.5 and below 10.5 from x = hankel_min_x_lanes
//     on take Hankel's expansion;
//   scalar_key: the elements the lanes do not cover (zero, infinite, negative, NaN or
//     subnormal arguments, tiny x for small-order K, v > 1e30 x), left to the scalar routes.
// The keys of one route (a small-order route's ranges and order groups) form one run, padded
// to whole lane groups at its end only: a group that spans two of its keys costs the more
// expensive one, but its lanes' results do not change.
constexpr int debye_keys = 12;  // debye_terms_log(debye_min_order)
static_assert(math::debye_terms_log(math::debye_min_order) == debye_keys);
constexpr int x_ranges = 19;
/// Small orders in groups of n = floor(v + 1/2) (the steps of the recurrences and products):
/// [0, 5], [6, 10], [11, 15], [16, 21].
constexpr int order_groups = 4;
constexpr double order_group_edges[order_groups - 1] = {5.5, 10.5, 15.5};
constexpr int small_keys = debye_keys;
constexpr int scalar_key = small_keys + x_ranges * order_groups;
constexpr int keys = scalar_key + 1;

/// Smallest x of Temme's route in lanes (below it the scalar route renormalises the product).
constexpr double temme_min_x_lanes = 1e-10;
/// Up to this x the lanes take log K from Temme's series (as the scalar route does); from
/// there to x = 100 they start the recurrence from the fitted polynomials
/// (device::detail::fit_log_kv), one route per piece of the fit: 1.9-4.5x faster than
/// Temme's series and Steed's fraction with the Wronskian in lanes from x = 0.3 (the fraction
/// converges slowly at small x, ~170 steps at x = 1/2), 1.1-1.35x faster than Temme's series
/// below (which takes fewer steps at small x, where the fits take more coefficients: 290-360
/// per piece), and more accurate (1.9 scaled ulps at worst on 27,000 random points, where
/// those reached 3). Below x = 0.1 the fits would take still more coefficients.
constexpr double temme_max_x_lanes = math::temme_max_x;

constexpr double inf = __builtin_inf();
/// From these x on, orders below 5.5 (the first order group) and below 10.5 (the second)
/// take Hankel's expansion in lanes: [kv][group]. For log K the fit is as fast up to 36 and
/// 100; for log I, Hankel's expansion from x = 20 and 36 is 1.45x faster than the shifted
/// expansion and more accurate (below 1 scaled ulp on 6,000 random points, where the shifted
/// expansion reached 2.0).
constexpr double hankel_min_x_lanes[2][2] = {{math::hankel_min_x, 36.0}, {36.0, 100.0}};
/// The edges of the small-order x ranges: range r is [edge[r], edge[r + 1]); x below the
/// first edge goes to the scalar routes. Unused ranges are empty (equal edges).
constexpr double x_edges[2][x_ranges + 1] = {
    {0.0, 1.5, 6.0, math::hankel_min_x, 36.0, 69.0, 100.0, inf, inf, inf, inf, inf, inf, inf, inf,
     inf, inf, inf, inf, inf},
    {temme_min_x_lanes, 0.01, kv_fit_edges[0], kv_fit_edges[1], kv_fit_edges[2], kv_fit_edges[3],
     kv_fit_edges[4], kv_fit_edges[5], kv_fit_edges[6], kv_fit_edges[7], kv_fit_edges[8],
     kv_fit_edges[9], kv_fit_edges[10], kv_fit_edges[11], kv_fit_edges[12], kv_fit_edges[13],
     kv_fit_edges[14], kv_fit_edges[15], kv_fit_edges[16], inf}};
/// The first x range of log K whose lanes take the fit, and the first past it (Steed's
/// fraction with its normalising sum); the first x range of log I past the series.
constexpr int first_fit_range = 2;
constexpr int first_sum_range = first_fit_range + kv_fit_pieces;
constexpr int first_shifted_range = 3;
static_assert(kv_fit_pieces == 16 && kv_fit_edges[15] == hankel_min_x_lanes[1][0] &&
              kv_fit_edges[16] == hankel_min_x_lanes[1][1]);
/// log I's shifted expansion takes fewer terms where x is larger (debye_terms_shifted): each
/// of its x ranges is a route of its own, with the term count of its smallest x.
constexpr int shifted_ranges = 4;
constexpr int shifted_terms(int r) {
    return math::debye_terms_shifted(x_edges[0][first_shifted_range + r]);
}
static_assert(x_edges[0][first_shifted_range + shifted_ranges] == inf &&
              shifted_terms(0) == 15 && shifted_terms(1) == 12 && shifted_terms(2) == 9 &&
              shifted_terms(3) == 9);
static_assert(x_edges[1][first_fit_range] == temme_max_x_lanes);
static_assert(x_edges[0][first_shifted_range] == math::hankel_min_x);
/// The first x ranges of Hankel's lanes for the first and the second order group.
constexpr int hankel_range[2][2] = {{first_shifted_range, first_shifted_range + 1},
                                    {first_sum_range - 1, first_sum_range}};
static_assert(x_edges[0][hankel_range[0][0]] == hankel_min_x_lanes[0][0] &&
              x_edges[0][hankel_range[0][1]] == hankel_min_x_lanes[0][1] &&
              x_edges[1][hankel_range[1][0]] == hankel_min_x_lanes[1][0] &&
              x_edges[1][hankel_range[1][1]] == hankel_min_x_lanes[1][1] &&
              order_group_edges[0] == 5.5 && order_group_edges[1] == 10.5);

/// The uniform expansion's thresholds that can change the term count above debye_min_order
/// (the first ones lie below it).
constexpr int first_debye_threshold = math::debye_max_terms - debye_keys;
constexpr int debye_thresholds = math::debye_max_terms - 1 - first_debye_threshold;
static_assert(math::debye_terms_log_orders[first_debye_threshold - 1] < math::debye_min_order &&
              math::debye_terms_log_orders[first_debye_threshold] > math::debye_min_order);

/// Reflects four orders where the reflection is exact (K_{-v} = K_v, I_{-n} = I_n) and stores
/// them in `reflected`; the orders still negative go to the scalar routes by their keys.
template <bool kv>
inline __m256d reflect(__m256d v, double* reflected) {
    const __m256d zero = _mm256_setzero_pd();
    // -0 too (0 - v makes it +0, which the keys take as an order; -0's code is negative).
    const __m256d negative = _mm256_cmp_pd(v, zero, _CMP_LE_OQ);
    const __m256d integer = _mm256_cmp_pd(v, _mm256_floor_pd(v), _CMP_EQ_OQ);
    const __m256d exact = kv ? negative : _mm256_and_pd(negative, integer);
    v = _mm256_blendv_pd(v, _mm256_sub_pd(zero, v), exact);
    _mm256_store_pd(reflected, v);
    return v;
}

/// a = 2^e (1 + steps / 128) for a positive and normal as a float: steps is fractional where
/// a float with seven mantissa bits cannot hold a.
constexpr double code_steps(double a, int& e) {
    e = 0;
    double m = a;
    while (m >= 2.0) m /= 2.0, ++e;
    while (m < 1.0) m *= 2.0, --e;
    return (m - 1.0) * 128.0;
}
/// The sixteen-bit code of the smallest value >= a whose float has only seven mantissa bits:
/// a float's upper half (sign, exponent, seven mantissa bits), the form in which route_keys
/// compares arguments (a = 0 and a = inf, which need no rounding, included).
constexpr int code_at_least(double a) {
    if (a == 0.0) return 0;
    if (a == inf) return 0x7F80;
    int e = 0;
    const double steps = code_steps(a, e);
    const int s = static_cast<int>(steps);
    return ((e + 127) << 7) + s + (s != steps);  // s + 1 = 128 carries into the exponent
}
/// Whether a float with seven mantissa bits holds a exactly (a code compares it exactly).
constexpr bool code_exact(double a) {
    int e = 0;
    const double steps = code_steps(a, e);
    return steps == static_cast<int>(steps);
}
static_assert(code_at_least(1.0) == 0x3F80 && code_at_least(21.3902) == code_at_least(21.5) &&
              code_at_least(1.9999) == 0x4000 && code_at_least(0.3) == code_at_least(0.30078125));

/// The codes of route_keys' edges, computed once.
struct key_edge_codes {
    int debye_min, near_max, x[2][x_ranges + 1], terms[debye_thresholds], groups[order_groups - 1];
};
constexpr key_edge_codes make_key_edge_codes() {
    key_edge_codes c{};
    c.debye_min = code_at_least(math::debye_min_order);
    c.near_max = code_at_least(math::debye_near_max_order);
    for (int kv = 0; kv < 2; ++kv)
        for (int i = 0; i <= x_ranges; ++i) c.x[kv][i] = code_at_least(x_edges[kv][i]);
    for (int i = 0; i < debye_thresholds; ++i)
        c.terms[i] = code_at_least(math::debye_terms_log_orders[first_debye_threshold + i]);
    for (int i = 0; i < order_groups - 1; ++i) c.groups[i] = code_at_least(order_group_edges[i]);
    return c;
}
constexpr key_edge_codes edge_codes = make_key_edge_codes();
constexpr bool fit_edges_exact() {
    for (const double e : kv_fit_edges)
        if (!code_exact(e)) return false;
    return true;
}
static_assert(fit_edges_exact(), "the fit's pieces split the arguments exactly");

/// The codes of sixteen floats (lo: elements 0-7, hi: 8-15) as signed sixteen-bit lanes in the
/// order 0-3, 8-11, 4-7, 12-15 (that of packus within the 128-bit halves). Truncating a
/// positive float to its code keeps the order: for a code c of a float with seven mantissa
/// bits, code(x) >= c exactly where x >= that float. Negative floats get negative codes.
inline __m256i float_codes(__m256 lo, __m256 hi) {
    return _mm256_packus_epi32(_mm256_srli_epi32(_mm256_castps_si256(lo), 16),
                               _mm256_srli_epi32(_mm256_castps_si256(hi), 16));
}

/// The route keys of sixteen elements as bytes, element j in byte j.
/// The comparisons run on sixteen-bit codes of the arguments rounded to floats, sixteen at a time
/// (twice as many per instruction as on floats: the keys and the sort, 4.5-5 ns per element, take
/// 0.2-0.7 ns less): an argument x takes the side x >= e of an edge e where its float is at least
/// the smallest float with seven mantissa bits >= e (code_at_least). Edges held exactly by such a
/// float (those of the fit's pieces, checked with the codes) split the arguments as floats do,
/// within a float's rounding (6e-8 relative), where the routes are as accurate; every other edge
/// moves up by less than 1/128 of itself, where it is a choice of speed, a route valid on both
/// sides, or a bound whose margin is wider (the term counts' thresholds, which only move to more
/// terms, and debye_min_order, below which the small-order routes hold to v = 21.5). The lanes take
/// only orders v >= 0 and arguments x >= 9.2e-41 (a nonzero code), both below FLT_MAX; the others
/// (and NaN) get the scalar key. The ratio functions take the keys of log I (I_{v+1} / I_v,
/// d/dx log I) or of log K (d/dx log K) without the near band.
template <bool kv, bool near_band>
inline __m128i route_keys(const double* vq, const double* xq) {
    const auto floats = [](const double* p, int at) {
        return _mm256_set_m128(_mm256_cvtpd_ps(_mm256_loadu_pd(p + at + 4)),
                               _mm256_cvtpd_ps(_mm256_loadu_pd(p + at)));
    };
    const __m256 v_lo = floats(vq, 0), v_hi = floats(vq, 8);
    const __m256 x_lo = floats(xq, 0), x_hi = floats(xq, 8);
    const auto scaled = [](__m256 lo, __m256 hi, float c) {
        const __m256 k = _mm256_set1_ps(c);
        return float_codes(_mm256_mul_ps(lo, k), _mm256_mul_ps(hi, k));
    };
    const __m256i v = float_codes(v_lo, v_hi), x = float_codes(x_lo, x_hi);
    const auto constant = [](int c) { return _mm256_set1_epi16(static_cast<short>(c)); };
    const auto ge = [&](__m256i c, int edge_code) {
        return _mm256_cmpgt_epi16(c, constant(edge_code - 1));
    };
    const auto lt = [&](__m256i c, int edge_code) {
        return _mm256_cmpgt_epi16(constant(edge_code), c);
    };
    // A true comparison is all ones, -1 as an integer: counts are sums of comparisons.
    const auto add = [](__m256i sum, __m256i m) { return _mm256_sub_epi16(sum, m); };
    const auto subtract = [](__m256i sum, __m256i m) { return _mm256_add_epi16(sum, m); };
    // Codes 0..0x7F7F are the floats from +0 to FLT_MAX; infinities, NaN (and arguments that
    // overflow a float) lie above, negative floats below zero.
    const __m256i finite_end = constant(0x7F80);
    const __m256i valid = _mm256_and_si256(
        _mm256_and_si256(_mm256_cmpgt_epi16(v, constant(-1)), _mm256_cmpgt_epi16(finite_end, v)),
        _mm256_and_si256(_mm256_cmpgt_epi16(x, constant(0)), _mm256_cmpgt_epi16(finite_end, x)));
    const __m256i large = ge(v, edge_codes.debye_min);
    // v <= 1e30 x to within the code's truncation (the lanes' asinh holds to 3e30).
    const __m256i debye =
        _mm256_andnot_si256(_mm256_cmpgt_epi16(v, scaled(x_lo, x_hi, 1e30f)), large);
    // Terms - 1 = debye_keys - 1 - (thresholds <= v) for the uniform expansion, at a larger
    // order where x < v / 5 (debye_near_scale; strictly below on the codes, so also for the
    // arguments) with near_band (the logarithms; the ratios' w-sums have no such margin).
    const __m256i near = _mm256_and_si256(_mm256_cmpgt_epi16(v, scaled(x_lo, x_hi, 5.0f)),
                                          lt(v, edge_codes.near_max));
    const __m256i v_terms =
        near_band ? _mm256_blendv_epi8(
                        v, scaled(v_lo, v_hi, static_cast<float>(math::debye_near_scale)), near)
                  : v;
    __m256i debye_key = constant(debye_keys - 1);
    for (int i = 0; i < debye_thresholds; ++i)
        debye_key = subtract(debye_key, ge(v_terms, edge_codes.terms[i]));
    // The small-order range (the count of inner edges <= x), then the order group.
    __m256i range = _mm256_setzero_si256();
    for (int i = 1; i < x_ranges && x_edges[kv][i] < inf; ++i)
        range = add(range, ge(x, edge_codes.x[kv][i]));
    __m256i small_key = _mm256_add_epi16(constant(small_keys), _mm256_slli_epi16(range, 2));
    static_assert(order_groups == 4, "range * order_groups as a shift");
    for (const int edge : edge_codes.groups) small_key = add(small_key, ge(v, edge));
    __m256i scalar = _mm256_or_si256(large, _mm256_andnot_si256(valid, constant(-1)));
    if constexpr (kv) scalar = _mm256_or_si256(scalar, lt(x, edge_codes.x[kv][0]));
    const __m256i key =
        _mm256_blendv_epi8(_mm256_blendv_epi8(small_key, constant(scalar_key), scalar),
                           debye_key, _mm256_and_si256(debye, valid));
    // Bytes 0-3, 8-11 in the low half and 4-7, 12-15 in the high half: interleaved by four.
    const __m256i bytes = _mm256_packus_epi16(key, key);
    return _mm_unpacklo_epi32(_mm256_castsi256_si128(bytes), _mm256_extracti128_si256(bytes, 1));
}

// GCC's scheduling before register allocation, weighing register pressure (off by default
// on x86): the routes keep sixteen lanes in sixteen registers and spill; scheduled this way
// the power series runs 6% faster, Temme's series 5%, the uniform expansion's passes 1-2%,
// and the other routes 1-3% slower, so only these three take it.
#if defined(__GNUC__) && !defined(__clang__)
#  define CURVKIT_PRESSURE_SCHEDULED gnu::optimize("schedule-insns", "sched-pressure")
#else
#  define CURVKIT_PRESSURE_SCHEDULED
#endif

/// The next chunk's arguments and this chunk's results, fetched into the second-level cache
/// while the routes compute (a few lines per lane group), so that the key pass and the way
/// back do not wait on memory in calls beyond the caches.
struct lines_ahead {
    const char* v = nullptr;
    const char* x = nullptr;
    char* out = nullptr;
    int in_lines = 0, out_lines = 0, line = 0;
    void step() {
        for (int j = 0; j < 2; ++j, ++line) {
            if (line < in_lines) {
                _mm_prefetch(v + 64 * line, _MM_HINT_T1);
                _mm_prefetch(x + 64 * line, _MM_HINT_T1);
            }
            if (line < out_lines) __builtin_prefetch(out + 64 * line, 1, 2);
        }
    }
};

/// The sums' Keep functor of a lane group whose lanes keep their own term counts (sixteen
/// bytes): each lane's terms past its count are zeros.
CURVKIT_SIMD_INLINE auto own_terms(const std::uint8_t* counts16) {
    const __m128i bytes = _mm_load_si128(reinterpret_cast<const __m128i*>(counts16));
    const auto counts_of = [&](int at) {
        return _mm256_cvtepi32_pd(_mm_cvtepu8_epi32(_mm_srli_si128(bytes, at)));
    };
    const vd counts(counts_of(0), counts_of(4), counts_of(8), counts_of(12));
    return [counts](int k, vd q) {
        return select(vd(static_cast<double>(k)) <= counts, q, vd(0.0));
    };
}

// Each route over a run of lane groups, in a function of its own: inlined together they
// would share (and spill) one register allocation. The uniform expansion runs in three
// passes over the run (the point's pieces, the u-sum, the logarithm), short loops whose
// independent iterations overlap in the core; as one pass, each group's long chain of
// dependent operations would run mostly alone. Flattened (every call inlined): the point's
// pieces and the sums then schedule within each pass (1.15x faster). With lane_terms (runs
// placed by whole lane groups), each lane's terms past its own count are zeros, so that its
// value is that of its own count.
template <int terms, bool kv>
[[gnu::noinline, gnu::flatten, CURVKIT_PRESSURE_SCHEDULED]] void debye_run(
    const double* v, const double* x, double* out, int n, double* veta, double* inv_h,
    const std::uint8_t* lane_terms, lines_ahead& ahead) {
    for (int g = 0; g < n; g += lanes) {
        ahead.step();
        const math::debye_point<vd> d = math::debye_at(vd::load(v + g), vd::load(x + g));
        d.veta.store(veta + g);
        d.inv_h.store(inv_h + g);
        d.p2.store(out + g);
    }
    const auto u_sums = [&](auto keep_at) {  // keep_at(g): the terms the lanes of group g keep
        for (int g = 0; g < n; g += lanes) {
            const vd t = vd::load(inv_h + g);
            (1.0 + math::debye_u_series(kv ? -t : t, vd::load(out + g), terms, keep_at(g)))
                .store(out + g);
        }
    };
    if (lane_terms) {  // each lane's own term count: the terms past it are zeros
        u_sums([&](int g) { return own_terms(lane_terms + g); });
    } else {
        u_sums([](int) { return math::keep_all_terms{}; });
    }
    for (int g = 0; g < n; g += lanes)
        math::debye_log_finish(kv, vd::load(veta + g), vd::load(inv_h + g), vd::load(out + g))
            .store(out + g);
}

// The small-order routes are flattened (every call inlined): their calls (the series, Temme's
// sums, the logarithms) schedule together (7-20% faster), and in Steed's route the Wronskian's
// branch, which with_sum = true leaves dead, drops out.
[[gnu::noinline, gnu::flatten, CURVKIT_PRESSURE_SCHEDULED]] void series_lanes(const double* v,
                                                                      const double* x,
                                                                      double* out) {
    math::series_log_iv(vd::load(v), vd::load(x)).store(out);
}
template <int terms>
[[gnu::noinline, gnu::flatten]] void shifted_lanes(const double* v, const double* x, double* out) {
    vd ratio;
    math::shifted_debye_log_iv(vd::load(v), vd::load(x), ratio, terms).store(out);
}
[[gnu::noinline, gnu::flatten, CURVKIT_PRESSURE_SCHEDULED]] void temme_lanes(const double* v,
                                                                     const double* x,
                                                                     double* out) {
    vd ratio;
    math::temme_log_kv(vd::load(v), vd::load(x), ratio).store(out);
}
[[gnu::noinline, gnu::flatten]] void steed_lanes(const double* v, const double* x, double* out) {
    vd ratio;
    math::steed_log_kv(vd::load(v), vd::load(x), ratio).store(out);
}

/// log K_v(x) on the fit's piece `piece` (device::detail::fit_log_kv).
template <int piece>
[[gnu::noinline, gnu::flatten]] void fit_lanes(const double* v, const double* x, double* out) {
    math::fit_log_kv<piece>(vd::load(v), vd::load(x)).store(out);
}

/// Hankel's large-argument expansion (device::detail::hankel_sum) in lanes, without its
/// truncation test: the keys send it only orders below 5.5 and below 10.5 from
/// hankel_min_x_lanes on. For log K (from x = 36 and 100) the terms shrink from the first
/// ((4 v^2 - 1) / (8 x) < 0.42, 0.55) to below the rounding level within 15 terms, long
/// before they would turn to grow (near k = 2x), and none exceeds the sum: the test always
/// passes there (checked on grids of 900,000 and 145,000 orders and arguments up to
/// FLT_MAX, both signs of the terms). For log I (from x = 20 and 36) the alternating terms
/// fall below the rounding level within 25 and 18 terms, and the largest is at most 2.2 and
/// 7.1 times the sum (grids of 120,000 points each, up to FLT_MAX): the sum's roundings,
/// each at most half an ulp of the largest term, stay below ~60 eps of log I even if all
/// add up, against a scaled ulp of at least 20 and 36 eps there (the scalar routes waive
/// hankel_sum's test on the largest term there too: device::detail::hankel_log_iv_bounded).
/// The exponentially small part it omits (e^-2x relative, for I) is below 5e-18.
template <bool kv>
[[gnu::noinline, gnu::flatten]] void hankel_lanes(const double* v, const double* x, double* out) {
    const vd vv = vd::load(v), xx = vd::load(x);
    const vd mu = 4.0 * vv * vv;
    const vd step = (kv ? 0.125 : -0.125) / xx;  // the terms alternate for I
    vd term = 1.0, sum = 1.0;
    avx2::vm active = xx > vd(0.0);
    for (int k = 1; k < 100; ++k) {
        const double odd = 2.0 * k - 1.0;
        term = term * ((mu - odd * odd) * step) * (1.0 / k);
        const avx2::vm done = fabs(term) <= 0.5 * math::bessel_eps * fabs(sum);
        sum = select(active, sum + term, sum);
        active = and_not(active, done);
        if (!any_lane(active)) break;
    }
    // log(sum / sqrt(x)) as half of one logarithm.
    const vd half_log = 0.5 * log(sum * sum / xx);
    (kv ? math::half_ln_pi_over_2 - xx + half_log : xx - math::half_ln_2pi + half_log).store(out);
}

// ---- The ratio functions on the same keys: I_{v+1} / I_v and d/dx log I (log I's keys),
// d/dx log K (log K's) ----

constexpr bool k_keys(special_fn f) { return f == special_fn::log_kv || f == special_fn::dlog_kv; }
constexpr bool is_ratio(special_fn f) {
    return f != special_fn::log_iv && f != special_fn::log_kv;
}

/// The ratios' term count on the uniform expansion's key `key` (the logarithms' count
/// key + 1): debye_terms_ratio at the key's smallest order, the logarithms' threshold for that
/// count (or debye_min_order), less a float's rounding (the keys compare floats; their codes
/// only move thresholds up). A count of the key, so still of the element's own arguments.
constexpr int ratio_terms(int key) {
    const int log_terms = key + 1;
    const double lowest =
        log_terms >= debye_keys
            ? math::debye_min_order
            : math::debye_terms_log_orders[math::debye_max_terms - 1 - log_terms];
    return math::debye_terms_ratio(lowest * (1.0 - 1e-6));
}
static_assert(ratio_terms(debye_keys - 1) == math::debye_max_terms && ratio_terms(0) == 3 &&
              math::debye_terms_log_orders[math::debye_max_terms - 1 - 1] == 105574);

/// I_{v+1} / I_v (iv_ratio), d/dx log I or d/dx log K by the uniform expansion (as
/// device::detail::debye_iv_ratio and debye_dlog_kv) with `terms` terms, or each lane's own
/// count from lane_terms. d/dx log I = v / x + x / (h + v) + (x / h) W / U
/// = h / x + (x / h) W / U: two positive terms, one division fewer.
template <int terms, special_fn f>
[[gnu::noinline, gnu::flatten]] void debye_ratio_run(const double* v, const double* x,
                                                     double* out, int n,
                                                     const std::uint8_t* lane_terms,
                                                     lines_ahead& ahead) {
    const auto run = [&](auto keep_at) {
        for (int g = 0; g < n; g += lanes) {
            ahead.step();
            const vd vv = vd::load(v + g), xx = vd::load(x + g);
            const math::debye_point<vd> d = math::debye_at(vv, xx);
            const vd t = k_keys(f) ? -d.inv_h : d.inv_h;  // +-p / v
            const auto keep = keep_at(g);
            const vd w_over_u = math::debye_w_series(t, d.p2, terms, keep) /
                                (1.0 + math::debye_u_series(t, d.p2, terms, keep));
            const vd x_over_h = xx * d.inv_h;
            vd r;
            if constexpr (f == special_fn::iv_ratio) r = madd(x_over_h, w_over_u, xx / (d.h + vv));
            else if constexpr (f == special_fn::dlog_iv) r = madd(x_over_h, w_over_u, d.h / xx);
            else r = -madd(x_over_h, w_over_u, d.h / xx);
            r.store(out + g);
        }
    };
    if (lane_terms) run([&](int g) { return own_terms(lane_terms + g); });
    else run([](int) { return math::keep_all_terms{}; });
}

/// From this x on, the ratios' lanes try Hankel's expansion (the scalar routes from
/// hankel_min_x = 20). Below it the shifted expansion (I) and Steed's fraction (K) are as
/// accurate in lanes (1.8 and 1.6 ulps at worst on 400 random points each in [36, 100), 1.0
/// and 1.1 in [20, 36)) and faster, where Hankel's sum takes 30-40 terms; above it they
/// gather roundings (1.9 and 3.0 ulps in [100, 1000), 3.1 for I in [1e3, 1e5]) where Hankel's
/// ratio converges in a few terms: I_{v+1} / I_v at v < 21.4, x >= 20 21.8 ns per element with
/// the shifted expansion alone, 34.7 with Hankel's attempt from x = 20.
constexpr double hankel_ratio_min_x_lanes = 100.0;

/// Hankel's ratio Z_{v+1} / Z_v (Z = I, `alternating`, or K) as device::detail::hankel_ratio
/// forms it, 1 + D / s_v, with its sums in one loop and the test per lane: `ok` where both
/// sums' terms fall below the rounding level within 60 terms and none exceeds either sum
/// (hankel_sum's test for s_v and s_{v+1} = s_v + D), and x >= hankel_ratio_min_x_lanes.
/// Past the minimum of a lane's terms (order > v + 1), growth ends its attempt.
template <bool alternating>
CURVKIT_SIMD_INLINE vd hankel_ratio_lanes(vd v, vd x, avx2::vm& ok) {
    const vd mu = 4.0 * v * v, step = (alternating ? -0.125 : 0.125) / x;
    const vd g_step = (8.0 * v + 4.0) * step;
    const vd least_growing = 2.0 * v + 2.0;
    vd t0 = 1.0, s0 = 1.0, d = 0.0, dsum = 0.0, largest = 0.0, previous = 1.0;
    // A first term above 1 (of either sum) fails the test: such lanes do not start, and a
    // group with none to start returns at once.
    avx2::vm active =
        (x >= vd(hankel_ratio_min_x_lanes)) & (madd(4.0 * (v + 2.0), v, 3.0) <= 8.0 * x);
    ok = x < vd(0.0);  // none yet
    if (!any_lane(active)) return 1.0;
    const auto larger = [](vd a, vd b) { return select(a > b, a, b); };
    for (int k = 1; k <= 60; ++k) {
        const double odd = 2.0 * k - 1.0, inv_k = 1.0 / k;
        const vd f0 = (mu - odd * odd) * step * inv_k, g = g_step * inv_k;
        d = madd(d, f0 + g, t0 * g);  // t1_k - t0_k
        t0 = t0 * f0;
        const vd a0 = fabs(t0);
        s0 = select(active, s0 + t0, s0);
        dsum = select(active, dsum + d, dsum);
        largest = select(active, larger(largest, larger(a0, fabs(t0 + d))), largest);
        const avx2::vm converged = (fabs(d) <= 0.5 * math::bessel_eps * fabs(dsum)) &
                                   (a0 <= 0.5 * math::bessel_eps * fabs(s0));
        ok = ok | (active & converged);
        active = and_not(and_not(active, converged),
                         (vd(odd) > least_growing) & (a0 > previous));
        previous = a0;
        if (!any_lane(active)) break;
    }
    ok = ok & (largest <= fabs(s0)) & (largest <= fabs(s0 + dsum));
    return 1.0 + dsum / s0;
}

/// I_{v+1} / I_v, with v / x added for d/dx log I.
template <special_fn f>
CURVKIT_SIMD_INLINE vd iv_ratio_finish(vd v, vd x, vd ratio) {
    return f == special_fn::dlog_iv ? ratio + v / x : ratio;
}
/// The continued fraction at x < hankel_min_x, each lane to its own depth (the keys' x ranges
/// keep a group's depths close).
template <special_fn f>
[[gnu::noinline, gnu::flatten]] void cf1_lanes(const double* v, const double* x, double* out) {
    const vd vv = vd::load(v), xx = vd::load(x);
    iv_ratio_finish<f>(vv, xx, math::cf1_iv_ratio(vv, xx)).store(out);
}
/// At x >= hankel_min_x: Hankel's ratio where its test passes (from
/// hankel_ratio_min_x_lanes), else (lane groups with any such lane) the shifted uniform
/// expansion's ratio with all its terms, as the scalar route.
template <special_fn f>
[[gnu::noinline, gnu::flatten]] void shifted_ratio_lanes(const double* v, const double* x,
                                                         double* out) {
    const vd vv = vd::load(v), xx = vd::load(x);
    avx2::vm ok;
    vd ratio = hankel_ratio_lanes<true>(vv, xx, ok);
    if (any_lane(and_not(xx > vd(0.0), ok))) {
        vd shifted;
        math::shifted_debye_log_iv(vv, xx, shifted, math::debye_max_terms);  // log: dead code
        ratio = select(ok, ratio, shifted);
    }
    iv_ratio_finish<f>(vv, xx, ratio).store(out);
}

using dlog_kv_order = math::dlog_kv_order<vd>;
[[gnu::noinline, gnu::flatten, CURVKIT_PRESSURE_SCHEDULED]] void temme_dlog_kv_lanes(
    const double* v, const double* x, double* out) {
    const dlog_kv_order o(vd::load(v));
    const vd xx = vd::load(x), two_over_x = 2.0 / xx;
    vd k0, k1;  // K_w and (x / 2) K_{w+1}
    math::temme_kv(o.w, xx, k0, k1);
    math::dlog_kv_from_ratio(o, two_over_x, two_over_x * (k1 / k0)).store(out);
}
/// From x = 11, where the fit's D is not accurate enough for the ratio: as the scalar route,
/// Hankel's ratio (from hankel_ratio_min_x_lanes) where its test passes, elsewhere Steed's
/// fraction (without its normalising sum). With Hankel's ratio, d/dx log K = v / x - K_{v+1} /
/// K_v (the ratio exceeds 2 v / x: less than a bit lost).
[[gnu::noinline, gnu::flatten]] void steed_dlog_kv_lanes(const double* v, const double* x,
                                                         double* out) {
    const dlog_kv_order o(vd::load(v));
    const vd xx = vd::load(x);
    avx2::vm ok;
    const vd hankel = o.v / xx - hankel_ratio_lanes<false>(o.v, xx, ok);
    vd result = hankel;
    if (any_lane(and_not(xx > vd(0.0), ok)))
        result = select(ok, hankel, math::steed_dlog_kv(o, xx));
    result.store(out);
}
/// d/dx log K_v(x) on the fit's piece `piece` (device::detail::fit_dlog_kv).
template <int piece>
[[gnu::noinline, gnu::flatten]] void fit_dlog_kv_lanes(const double* v, const double* x,
                                                       double* out) {
    math::fit_dlog_kv<piece>(vd::load(v), vd::load(x)).store(out);
}

/// The route of a lane key: the key itself for the uniform expansion, and for the small
/// orders debye_keys + 0, 1, 2 + p for log K (Temme's series, Steed's fraction with its
/// normalising sum, the fit's piece p) and debye_keys + 0 (the series), 1 + r (the shifted
/// expansion's x range r) for log I, hankel_route(kv) for both (orders below 5.5 and 10.5
/// from x = hankel_min_x_lanes on).
constexpr int hankel_route(bool kv) {
    return debye_keys + (kv ? 2 + kv_fit_pieces : 1 + shifted_ranges);
}
constexpr int route_of(bool kv, int key) {
    if (key < debye_keys) return key;
    const int range = (key - small_keys) / order_groups, group = (key - small_keys) % order_groups;
    if (group < 2 && range >= hankel_range[kv][group]) return hankel_route(kv);
    if (kv) {
        return debye_keys + (range < first_fit_range   ? 0
                             : range < first_sum_range ? 2 + range - first_fit_range
                                                       : 1);
    }
    return debye_keys + (range < first_shifted_range ? 0 : 1 + range - first_shifted_range);
}

using group_fn = void (*)(const double*, const double*, double*);
template <int... r>
constexpr group_fn shifted_lanes_of(int range, std::integer_sequence<int, r...>) {
    constexpr group_fn fns[] = {shifted_lanes<shifted_terms(r)>...};
    return fns[range];
}
template <int... p>
constexpr group_fn fit_lanes_of(int piece, std::integer_sequence<int, p...>) {
    constexpr group_fn fns[] = {fit_lanes<p>...};
    return fns[piece];
}
template <int... p>
constexpr group_fn fit_dlog_kv_lanes_of(int piece, std::integer_sequence<int, p...>) {
    constexpr group_fn fns[] = {fit_dlog_kv_lanes<p>...};
    return fns[piece];
}

/// A small-order route over a run of lane groups. The ratios of I take the continued
/// fraction where log I takes the series, and the shifted expansion elsewhere; d/dx log K
/// takes Temme's series, the fit's pieces up to x = 11 and Steed's fraction elsewhere.
template <special_fn fn>
void small_run(int route, const double* v, const double* x, double* out, int n,
               lines_ahead& ahead) {
    constexpr bool kv = k_keys(fn);
    group_fn f;
    if constexpr (fn == special_fn::dlog_kv) {
        const int piece = route - 2;
        constexpr int pieces = math::dlog_kv_fit_pieces;
        f = route == 0 ? temme_dlog_kv_lanes
            : piece >= 0 && piece < pieces
                ? fit_dlog_kv_lanes_of(piece, std::make_integer_sequence<int, pieces>{})
                : steed_dlog_kv_lanes;
    } else if constexpr (is_ratio(fn)) {
        f = route == 0 ? cf1_lanes<fn> : shifted_ratio_lanes<fn>;
    } else if (route == hankel_route(kv) - debye_keys) {
        f = hankel_lanes<kv>;
    } else if constexpr (kv) {
        f = route == 0   ? temme_lanes
            : route == 1 ? steed_lanes
                         : fit_lanes_of(route - 2, std::make_integer_sequence<int, kv_fit_pieces>{});
    } else {
        f = route == 0 ? series_lanes
                       : shifted_lanes_of(route - 1,
                                          std::make_integer_sequence<int, shifted_ranges>{});
    }
    for (int g = 0; g < n; g += lanes) {
        ahead.step();
        f(v + g, x + g, out + g);
    }
}

template <bool kv, int... terms>
void debye_run_of(int key, const double* v, const double* x, double* out, int n, double* veta,
                  double* inv_h, const std::uint8_t* lane_terms, lines_ahead& ahead,
                  std::integer_sequence<int, terms...>) {
    using run_fn = void (*)(const double*, const double*, double*, int, double*, double*,
                            const std::uint8_t*, lines_ahead&);
    static constexpr run_fn runs[] = {debye_run<terms + 1, kv>...};
    runs[key](v, x, out, n, veta, inv_h, lane_terms, ahead);
}
template <special_fn f, int... key>
void debye_ratio_run_of(int k, const double* v, const double* x, double* out, int n,
                        const std::uint8_t* lane_terms, lines_ahead& ahead,
                        std::integer_sequence<int, key...>) {
    using run_fn =
        void (*)(const double*, const double*, double*, int, const std::uint8_t*, lines_ahead&);
    static constexpr run_fn runs[] = {debye_ratio_run<ratio_terms(key), f>...};
    runs[k](v, x, out, n, lane_terms, ahead);
}

/// The largest term count of the uniform expansion for which a chunk is placed by lane groups
/// (below) rather than sorted by element.
constexpr int group_max_terms = 6;

/// The runs of keys with one route (a route may own several), each padded by at most
/// lanes - 1 elements (and the scalar elements after them).
constexpr int runs_of(bool kv) {
    int runs = 1;
    for (int k = 1; k < scalar_key; ++k) runs += route_of(kv, k) != route_of(kv, k - 1);
    return runs;
}
constexpr int sorted_size = chunk + (std::max(runs_of(false), runs_of(true)) + 1) * lanes;

/// A chunk's working arrays (440 kB; a call on contiguous doubles touches the 242 kB of keys,
/// positions, runs and lane counts, within a core's second-level cache), kept per thread on
/// the heap rather than on a stack that may be small: one-byte keys, two-byte positions, no
/// output offsets for flat layouts, and the expansion's passes over the arguments they read.
struct chunk_scratch {
    alignas(32) double vs[chunk + 16], xs[chunk + 4];  // arguments as doubles, in order
    alignas(32) std::uint8_t key[chunk + 16];
    alignas(32) std::uint16_t position[chunk + 16];  // each element's place in the runs
    alignas(32) double sv[sorted_size], sx[sorted_size], res[sorted_size];  // the runs
    alignas(32) std::uint8_t lane_terms[sorted_size];  // own term counts (runs by lane group)
    idx offsets[chunk];  // output offsets, for two-dimensional layouts only
};

chunk_scratch& thread_scratch() {
    static thread_local std::unique_ptr<chunk_scratch> scratch;
    if (!scratch) scratch = std::make_unique<chunk_scratch>();
    return *scratch;
}

static_assert(sizeof(chunk_scratch) < 448 * 1024);
static_assert(keys <= 256 && sorted_size <= 65536, "one-byte keys, two-byte positions");

/// f(v, x) by the scalar functions (compiled here with FMA).
template <special_fn f, class T>
T scalar_function(T v, T x) {
    if constexpr (f == special_fn::log_iv) return device::log_iv(v, x);
    else if constexpr (f == special_fn::log_kv) return device::log_kv(v, x);
    else if constexpr (f == special_fn::iv_ratio) return device::iv_ratio(v, x);
    else if constexpr (f == special_fn::dlog_iv) return device::dlog_iv(v, x);
    else return device::dlog_kv(v, x);
}

template <special_fn f, class T>
void chunk_log_bessel(const T* v, const T* x, T* out, const elementwise_layout& a, idx begin,
                      idx end, idx next_begin) {
    constexpr bool kv = k_keys(f);
    // I_{-n} = I_n carries over to d/dx log I but not to I_{-n+1} / I_{-n}, which takes
    // negative orders by the scalar routes.
    constexpr bool reflects = f != special_fn::iv_ratio;
    const int n = static_cast<int>(end - begin);
    // Pass 1: the arguments as doubles and their route keys, sixteen at a time, counted by key;
    // contiguous double arrays are read in place, others copied first.
    constexpr int streams = 8;  // see below
    chunk_scratch& w = thread_scratch();
    double *vs = w.vs, *xs = w.xs;
    std::uint8_t* key = w.key;
    idx* offsets = w.offsets;
    const bool flat = a.cols == 1;
    const double* vp = vs;
    const double* xp = xs;
    if constexpr (std::is_same_v<T, double>) {
        if (flat && a.v_row == 1 && a.x_row == 1) {
            vp = v + begin;
            xp = x + begin;
        }
    }
    if (vp == vs) {
        if (flat) {
            for (int i = 0; i < n; ++i) {
                vs[i] = static_cast<double>(v[(begin + i) * a.v_row]);
                xs[i] = static_cast<double>(x[(begin + i) * a.x_row]);
            }
        } else {
            idx row = begin / a.cols, col = begin - row * a.cols;
            for (int i = 0; i < n; ++i) {
                vs[i] = static_cast<double>(v[row * a.v_row + col * a.v_col]);
                xs[i] = static_cast<double>(x[row * a.x_row + col * a.x_col]);
                offsets[i] = row * a.out_row + col * a.out_col;
                if (++col == a.cols) {
                    col = 0;
                    ++row;
                }
            }
        }
    }
    int count[streams][keys] = {};
    const int whole = n / 4 * 4;
    // The keys of the arguments as they come; where the chunk has negative orders, a second
    // pass reflects them (into vs) and keys the reflected orders.
    __m256d negative = _mm256_setzero_pd();
    const auto key_pass = [&](auto reflecting) {
        for (int i = 0; i < n; i += 16) {  // pads past n with ones (their keys are unused)
            alignas(32) double vt[16], xt[16];
            const double *vq = vp + i, *xq = xp + i;
            if (i + 16 > n) {
                for (int j = 0; j < 16; ++j) {
                    vt[j] = i + j < n ? vp[i + j] : 1.0;
                    xt[j] = i + j < n ? xp[i + j] : 1.0;
                }
                vq = vt;
                xq = xt;
            }
            if constexpr (decltype(reflecting)::value) {
                for (int j = 0; j < 16; j += 4) reflect<kv>(_mm256_loadu_pd(vq + j), vs + i + j);
                vq = vs + i;
            } else {
                for (int j = 0; j < 16; j += 4)  // sign bits
                    negative = _mm256_or_pd(negative, _mm256_loadu_pd(vq + j));
            }
            _mm_store_si128(reinterpret_cast<__m128i*>(key + i),
                            route_keys<kv, !is_ratio(f)>(vq, xq));
        }
    };
    key_pass(std::false_type{});
    if (reflects && _mm256_movemask_pd(negative)) {  // some order's sign bit is set
        key_pass(std::true_type{});
        vp = vs;
    }
    // Counted in a loop of its own: each load of a key just stored as part of a vector
    // would wait for the store (1.2 ns per element).
    for (int i = 0; i < n / streams * streams; i += streams)
        for (int j = 0; j < streams; ++j) ++count[j][key[i + j]];
    for (int i = n / streams * streams; i < n; ++i) ++count[i % streams][key[i]];
    double *sv = w.sv, *sx = w.sx, *res = w.res;
    std::uint16_t* position = w.position;  // each element's place in the runs
    int start[keys + 1];  // each key's run (a route's keys share one, padded at its end)
    int scalar_end;       // the end of the scalar elements' run
    // A chunk whose elements all take the uniform expansion with at most group_max_terms terms
    // (orders above ~80: the hard range, the von Mises-Fisher normaliser in many dimensions)
    // is placed by whole lane groups of sixteen consecutive elements, each group at the
    // largest term count of its elements (each lane's terms past its own count zeroed, so that
    // its value does not depend on its neighbours): vector copies in place of each element's
    // dependent counter, at the cost of the zeroed terms: 1.05x faster per element on the hard
    // range, 1.2x at one order. Where counts reach 8-12 (orders below ~60) the zeroed terms
    // cost more than the sort saves (3-6% on orders in [21.4, 50]).
    bool by_groups = true;
    for (int j = 0; j < streams; ++j)
        for (int k = group_max_terms; k < keys; ++k) by_groups &= count[j][k] == 0;
    if (by_groups) {
        std::memset(key + n, 0, 16);  // the keys of the padding take no part in the maxima
        const int groups = (n + lanes - 1) / lanes;
        std::uint8_t group_key[chunk / lanes];
        int group_count[debye_keys] = {}, next_group[debye_keys];
        for (int g = 0; g < groups; ++g) {
            __m128i m = _mm_load_si128(reinterpret_cast<const __m128i*>(key + g * lanes));
            m = _mm_max_epu8(m, _mm_srli_si128(m, 8));
            m = _mm_max_epu8(m, _mm_srli_si128(m, 4));
            m = _mm_max_epu8(m, _mm_srli_si128(m, 2));
            m = _mm_max_epu8(m, _mm_srli_si128(m, 1));
            group_key[g] = static_cast<std::uint8_t>(_mm_cvtsi128_si32(m));
            ++group_count[group_key[g]];
        }
        start[0] = 0;
        for (int k = 0; k < keys; ++k) {
            if (k < debye_keys) next_group[k] = start[k];
            start[k + 1] = start[k] + (k < debye_keys ? group_count[k] * lanes : 0);
        }
        scalar_end = start[scalar_key];
        const __m256i lane_index =
            _mm256_setr_epi16(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        for (int g = 0; g < groups; ++g) {
            const int p = next_group[group_key[g]], i = g * lanes, filled = std::min(lanes, n - i);
            next_group[group_key[g]] += lanes;
            if (filled == lanes) {
                for (int j = 0; j < lanes; j += 4) {
                    _mm256_store_pd(sv + p + j, _mm256_loadu_pd(vp + i + j));
                    _mm256_store_pd(sx + p + j, _mm256_loadu_pd(xp + i + j));
                }
            } else {  // the last group, padded with copies of its last element
                for (int j = 0; j < lanes; ++j) {
                    sv[p + j] = vp[i + std::min(j, filled - 1)];
                    sx[p + j] = xp[i + std::min(j, filled - 1)];
                }
            }
            // Each lane's own count (its key + 1, or the ratios' count of its key; the
            // padding's are zero keys).
            const __m128i own = _mm_load_si128(reinterpret_cast<const __m128i*>(key + i));
            static_assert(debye_keys <= 16, "the ratios' counts by one byte shuffle");
            const __m128i ratio_counts = _mm_setr_epi8(
                ratio_terms(0), ratio_terms(1), ratio_terms(2), ratio_terms(3), ratio_terms(4),
                ratio_terms(5), ratio_terms(6), ratio_terms(7), ratio_terms(8), ratio_terms(9),
                ratio_terms(10), ratio_terms(11), 0, 0, 0, 0);
            _mm_store_si128(reinterpret_cast<__m128i*>(w.lane_terms + p),
                            is_ratio(f) ? _mm_shuffle_epi8(ratio_counts, own)
                                        : _mm_add_epi8(own, _mm_set1_epi8(1)));
            const __m256i first = _mm256_set1_epi16(static_cast<short>(p));
            _mm256_store_si256(reinterpret_cast<__m256i*>(position + i),
                               _mm256_add_epi16(first, lane_index));
        }
    } else {
        // The counting sort of the elements by key into runs padded to whole lane groups (with
        // copies of the run's last element) runs in eight interleaved streams (element i in stream
        // i % 8), each with its own counters and its own part of every run: with one counter per
        // key, each element's increment would wait for the previous one of its key, through memory
        // (eight streams: 5% faster than four in all, sixteen no faster).
        int next[streams][keys];
        start[0] = 0;
        for (int k = 0; k < keys; ++k) {
            int at = start[k];
            for (int j = 0; j < streams; ++j) {
                next[j][k] = at;
                at += count[j][k];
            }
            // A route's run starts on a whole group: pad where the route ends.
            const bool route_ends = k + 1 >= scalar_key || route_of(kv, k + 1) != route_of(kv, k);
            start[k + 1] = route_ends ? (at + lanes - 1) / lanes * lanes : at;
        }
        // Each element to its stream's next place in its key's run (kept for the way back).
        const int whole_streams = n / streams * streams;
        for (int i = 0; i < whole_streams; i += streams)
            for (int j = 0; j < streams; ++j) {
                const int p = next[j][key[i + j]]++;
                position[i + j] = static_cast<std::uint16_t>(p);
                sv[p] = vp[i + j];
                sx[p] = xp[i + j];
            }
        for (int i = whole_streams; i < n; ++i) {
            const int p = next[i % streams][key[i]]++;
            position[i] = static_cast<std::uint16_t>(p);
            sv[p] = vp[i];
            sx[p] = xp[i];
        }
        scalar_end = next[streams - 1][scalar_key];
        for (int k = 0; k < scalar_key; ++k) {
            // The padding of a route's run, from the end of the key's elements.
            for (int p = next[streams - 1][k]; p < start[k + 1]; ++p) {
                sv[p] = sv[p - 1];
                sx[p] = sx[p - 1];
            }
        }
    }
    // Pass 3: the scalar elements (their arguments as doubles are exact, and the
    // reflections made are exact for the scalar functions too).
    for (int p = start[scalar_key]; p < scalar_end; ++p) {
        const T vt = static_cast<T>(sv[p]), xt = static_cast<T>(sx[p]);
        res[p] = static_cast<double>(scalar_function<f>(vt, xt));
    }
    // Pass 4: the routes' runs (the uniform expansion's passes overwrite their arguments).
    lines_ahead ahead;
    if (flat && a.v_row == 1 && a.x_row == 1 && a.out_row == 1) {
        const idx total = a.rows * a.cols;
        ahead.out = reinterpret_cast<char*>(out + begin);
        ahead.out_lines = static_cast<int>((n * sizeof(T) + 63) / 64);
        if (next_begin < total) {
            ahead.v = reinterpret_cast<const char*>(v + next_begin);
            ahead.x = reinterpret_cast<const char*>(x + next_begin);
            ahead.in_lines = static_cast<int>(
                (std::min<idx>(total - next_begin, chunk) * sizeof(T) + 63) / 64);
        }
    }
    for (int k = 0; k < scalar_key;) {
        int last = k;  // the route's last key
        while (last + 1 < scalar_key && route_of(kv, last + 1) == route_of(kv, k)) ++last;
        const int s = start[k], len = start[last + 1] - s;
        if (len > 0) {
            const std::uint8_t* lane_terms = by_groups ? w.lane_terms + s : nullptr;
            if (k >= debye_keys) {
                small_run<f>(route_of(kv, k) - debye_keys, sv + s, sx + s, res + s, len, ahead);
            } else if constexpr (is_ratio(f)) {
                debye_ratio_run_of<f>(k, sv + s, sx + s, res + s, len, lane_terms, ahead,
                                      std::make_integer_sequence<int, debye_keys>{});
            } else {
                debye_run_of<kv>(k, sv + s, sx + s, res + s, len, sv + s, sx + s, lane_terms,
                                 ahead, std::make_integer_sequence<int, debye_keys>{});
            }
        }
        k = last + 1;
    }
    // Pass 5: the results back in order, read from their places in the runs (scalar loads
    // paired into vectors: 0.2-0.3 ns per element faster than the AVX2 gather).
    if (flat && a.out_row == 1) {
        T* o = out + begin;
        int i = 0;
        for (; i < whole; i += 4) {
            const __m128d lo =
                _mm_loadh_pd(_mm_load_sd(res + position[i]), res + position[i + 1]);
            const __m128d hi =
                _mm_loadh_pd(_mm_load_sd(res + position[i + 2]), res + position[i + 3]);
            const __m256d r = _mm256_set_m128d(hi, lo);
            if constexpr (std::is_same_v<T, double>) {
                _mm256_storeu_pd(o + i, r);
            } else {
                _mm_storeu_ps(o + i, _mm256_cvtpd_ps(r));
            }
        }
        for (; i < n; ++i) o[i] = static_cast<T>(res[position[i]]);
    } else {
        for (int i = 0; i < n; ++i)
            out[flat ? (begin + i) * a.out_row : offsets[i]] = static_cast<T>(res[position[i]]);
    }
}

}  // namespace

template <class T>
void log_bessel_avx2(special_fn f, const T* v, const T* x, T* out,
                     const elementwise_layout& layout) {
    const idx n = layout.rows * layout.cols;
    using chunk_fn = void (*)(const T*, const T*, T*, const elementwise_layout&, idx, idx, idx);
    static_assert(static_cast<int>(special_fn::log_iv) == 0 &&
                  static_cast<int>(special_fn::dlog_kv) == 4);
    static constexpr chunk_fn chunks[] = {
        chunk_log_bessel<special_fn::log_iv, T>, chunk_log_bessel<special_fn::log_kv, T>,
        chunk_log_bessel<special_fn::iv_ratio, T>, chunk_log_bessel<special_fn::dlog_iv, T>,
        chunk_log_bessel<special_fn::dlog_kv, T>};
    const chunk_fn run = chunks[static_cast<int>(f)];
#  pragma omp parallel for schedule(dynamic, 1) if (use_threads(n * 64))
    for (idx b = 0; b < n; b += chunk) {
        const idx e = std::min(n, b + chunk);
        // The chunk this thread most likely takes next (the threads take chunks in turn).
        const idx next = b + chunk * omp_get_num_threads();
        run(v, x, out, layout, b, e, next);
    }
}

template void log_bessel_avx2(special_fn, const float*, const float*, float*,
                              const elementwise_layout&);
template void log_bessel_avx2(special_fn, const double*, const double*, double*,
                              const elementwise_layout&);

}  // namespace curvkit::cpu

#else  // built without the AVX2 kernels (another architecture or compiler)

namespace curvkit::cpu {

template <class T>
void log_bessel_avx2(special_fn, const T*, const T*, T*, const elementwise_layout&) {}

template void log_bessel_avx2(special_fn, const float*, const float*, float*,
                              const elementwise_layout&);
template void log_bessel_avx2(special_fn, const double*, const double*, double*,
                              const elementwise_layout&);

}  // namespace curvkit::cpu

#endif
