// log I_v(x) and log K_v(x) over arrays, eight elements at a time with AVX2 and FMA.
//
// Each chunk of elements is sorted into lists by route: the uniform expansion (order >=
// debye_min_order) in order ranges, and at smaller orders, in ranges of x, the power series
// and the shifted uniform expansion of log I, Temme's series and Steed's fraction of log K.
// The lists run in SIMD lanes on the same templated code as the scalar functions; the few
// other elements (zero, infinite, negative or subnormal arguments, tiny x for small-order
// K, v > 1e8 x) take the scalar routes, compiled here with FMA. This file is built with
// -mavx2 -mfma and runs only where the CPU has both (see isa.hpp).
#include "cpu/special_avx2.hpp"

#if defined(CURVKIT_HAVE_AVX2_KERNELS)

#  define CURVKIT_ISA_NAMESPACE avx2_fma
#  include <omp.h>

#  include <algorithm>
#  include <cmath>
#  include <cstdint>

#  include "cpu/simd_avx2.hpp"
#  include "cpu/threads.hpp"
#  include "curvkit/device/log_bessel.hpp"

namespace curvkit::cpu {
namespace avx2 {

// The two scalar helpers of the uniform expansion whose branches guard ranges the vector
// routes never see (orders and arguments below 1e150, v <= 1e8 x).
inline vd debye_hypot(vd v, vd x) { return sqrt(madd(v, v, x * x)); }
// The product of the K recurrence needs no renormalisation in the lanes: they only see
// x >= temme_min_x_lanes, where each ratio is below 2 (debye_min_order + 1) / x < 5e11 and
// 22 of them stay below 1e258.
inline void multiply_ratio(vd& mant, vd&, vd rho, vm on) { mant = select(on, mant * rho, mant); }
// Temme's lanes only see x >= temme_min_x_lanes, where the product's error is representable.
inline vd log_two_over_minus_gamma(vd x) {
    return device::detail::log_two_over_minus_gamma_product(x);
}
inline vd asinh_ratio(vd v, vd x, vd h) {
    // asinh(w) = log1p(w + w^2 / (1 + sqrt(1 + w^2))), w = v / x, sqrt(1 + w^2) = h / x:
    // the argument is v (x + h + v) / (x (x + h)), one division.
    const vd xh = x + h;
    return log1p(v * (xh + v) / (x * xh));
}

}  // namespace avx2

namespace {

using idx = std::int64_t;
using avx2::vd;
using avx2::vm;
namespace math = curvkit::device::detail;

constexpr idx chunk = 512;

// The lists of lane elements: the uniform expansion in four order ranges, each range summing
// the terms its lowest order needs (so that a lane's terms depend on its own order only, and
// a group's lanes all take the same count), then the small-order routes in ranges of x (their
// iteration counts change with x, and a group runs as long as its slowest lane): for log I
// the power series (x < hankel_min_x) and the shifted expansion (x above); for log K Temme's
// series (x < temme_max_x), Steed's fraction with the Wronskian (up to wronskian_max_x) and
// with its normalising sum (x above). `scalar` marks the elements left to the scalar routes.
constexpr int debye_ranges = 4;
constexpr int x_ranges = 4;
/// Smallest x of Temme's route in lanes (below it the scalar route renormalises the product).
constexpr double temme_min_x_lanes = 1e-10;
/// Up to this x the lanes take K from the Wronskian rather than from Steed's normalising sum
/// (the scalar route switches at steed_sum_min_x): the sum converges slowly below it, and
/// the Wronskian's terms are all positive (1.2-1.6x faster for x in [2, 6), as accurate).
constexpr double wronskian_max_x = 6.0;
enum list_id : int {
    small_low = debye_ranges,       // x_ranges lists
    small_high = small_low + x_ranges,  // x_ranges lists
    scalar = small_high + x_ranges,
    lane_lists = scalar
};

/// Lowest order of each range: debye_min_order, then the orders from which 11, 8 and 5
/// terms suffice.
constexpr double range_start[debye_ranges] = {
    math::debye_min_order, math::debye_terms_log_orders[4], math::debye_terms_log_orders[7],
    math::debye_terms_log_orders[10]};

constexpr double inf = __builtin_inf();
/// x ranges [edge[i], edge[i + 1]) of the small-order lists, for log I and for log K.
/// For log K the first low range is Temme's series, the others Steed's fraction.
constexpr double low_edges[2][x_ranges + 1] = {
    {0.0, 1.5, 6.0, math::hankel_min_x, math::hankel_min_x},
    {temme_min_x_lanes, math::temme_max_x, 1.0, 2.5, wronskian_max_x}};
constexpr double high_edges[2][x_ranges + 1] = {
    {math::hankel_min_x, inf, inf, inf, inf}, {wronskian_max_x, 10.0, 20.0, inf, inf}};

/// The lists of eight elements as bit masks (bit l of mask[list] for lane l): lanes need
/// v >= 0 (after reflection) and x > 0, both finite and within the ranges the lane routes
/// cover; all others, NaN included, go to `scalar`.
inline void lists_of(bool kv, vd v, vd x, unsigned mask[lane_lists + 1]) {
    const vm valid = (v >= vd(0.0)) & (v < vd(1e150)) & (x >= vd(1e-300)) & (x < vd(1e150));
    const vm debye = valid & (v >= vd(math::debye_min_order)) & (v <= x * 1e8);
    vm covered = debye;
    for (int r = 0; r < debye_ranges; ++r) {
        vm in_range = debye & (v >= vd(range_start[r]));
        if (r + 1 < debye_ranges) in_range = in_range & (v < vd(range_start[r + 1]));
        mask[r] = avx2::lane_bits(in_range);
    }
    const vm small_order = valid & (v < vd(math::debye_min_order));
    for (int r = 0; r < x_ranges; ++r) {
        const vm low = small_order & (x >= vd(low_edges[kv][r])) & (x < vd(low_edges[kv][r + 1]));
        const vm high =
            small_order & (x >= vd(high_edges[kv][r])) & (x < vd(high_edges[kv][r + 1]));
        mask[small_low + r] = avx2::lane_bits(low);
        mask[small_high + r] = avx2::lane_bits(high);
        covered = covered | low | high;
    }
    mask[scalar] = ~avx2::lane_bits(covered) & 0xFFu;
}

// Each route in a function of its own: inlined together they would share (and spill) one
// register allocation.
[[gnu::noinline]] void series_lanes(const double* v, const double* x, double* out) {
    math::series_log_iv(vd::load(v), vd::load(x)).store(out);
}
[[gnu::noinline]] void shifted_lanes(const double* v, const double* x, double* out) {
    vd ratio;
    math::shifted_debye_log_iv(vd::load(v), vd::load(x), ratio).store(out);
}
[[gnu::noinline]] void temme_lanes(const double* v, const double* x, double* out) {
    vd ratio;
    math::temme_log_kv(vd::load(v), vd::load(x), ratio).store(out);
}
template <bool with_sum>
[[gnu::noinline]] void steed_lanes(const double* v, const double* x, double* out) {
    vd ratio;
    math::steed_log_kv(vd::load(v), vd::load(x), with_sum, ratio).store(out);
}
template <int range, bool kv>
[[gnu::noinline]] void debye_lanes(const double* v, const double* x, double* out) {
    constexpr int terms = math::debye_terms_log(range_start[range]);
    const vd a = vd::load(v), b = vd::load(x);
    if constexpr (kv) {
        math::debye_log_kv_terms(a, b, terms).store(out);
    } else {
        math::debye_log_iv_terms(a, b, terms).store(out);
    }
}

template <bool kv>
void list_lanes(int list, const double* v, const double* x, double* out) {
    static_assert(debye_ranges == 4, "one instantiation per range");
    if (list >= small_high) return kv ? steed_lanes<true>(v, x, out) : shifted_lanes(v, x, out);
    if (list == small_low && kv) return temme_lanes(v, x, out);
    if (list >= small_low) return kv ? steed_lanes<false>(v, x, out) : series_lanes(v, x, out);
    switch (list) {
        case 0: return debye_lanes<0, kv>(v, x, out);
        case 1: return debye_lanes<1, kv>(v, x, out);
        case 2: return debye_lanes<2, kv>(v, x, out);
        default: return debye_lanes<3, kv>(v, x, out);
    }
}

/// For each 8-bit lane mask, the positions of its set bits packed into the low bytes.
struct lane_positions {
    std::uint64_t of[256];
    constexpr lane_positions() : of{} {
        for (unsigned m = 0; m < 256; ++m) {
            int filled = 0;
            for (unsigned l = 0; l < 8; ++l)
                if (m >> l & 1u) of[m] |= static_cast<std::uint64_t>(l) << (8 * filled++);
        }
    }
};
constexpr lane_positions packed_lanes;

template <class T>
void chunk_log_bessel(bool kv, const T* v, const T* x, T* out, const elementwise_layout& a,
                      idx begin, idx end) {
    const int n = static_cast<int>(end - begin);
    // Pass 1: the arguments as doubles (orders reflected where the reflection is exact:
    // K_{-v} = K_v, I_{-n} = I_n) and the output offsets, padded to whole lane groups.
    alignas(32) double vs[chunk + avx2::lanes], xs[chunk + avx2::lanes];
    idx offsets[chunk];
    if (a.cols == 1) {  // one dimension: a stride per array
        const T* vp = v + begin * a.v_row;
        const T* xp = x + begin * a.x_row;
        for (int i = 0; i < n; ++i) {
            vs[i] = static_cast<double>(vp[i * a.v_row]);
            xs[i] = static_cast<double>(xp[i * a.x_row]);
            offsets[i] = (begin + i) * a.out_row;
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
    for (int i = 0; i < n; ++i) {
        if (vs[i] < 0.0 && (kv || vs[i] == std::floor(vs[i]))) vs[i] = -vs[i];
    }
    for (int i = n; i % avx2::lanes != 0; ++i) vs[i] = xs[i] = 1.0;
    // Pass 2: each element's list, eight at a time, into per-list positions.
    // Without branches on the data: each list receives the packed positions of its lanes
    // (eight slots written, popcount of them kept).
    alignas(32) int lists[lane_lists + 1][chunk + avx2::lanes];
    int count[lane_lists + 1] = {};
    for (int g = 0; g < n; g += avx2::lanes) {
        unsigned mask[lane_lists + 1];
        lists_of(kv, vd::load(vs + g), vd::load(xs + g), mask);
        const unsigned live = n - g >= avx2::lanes ? 0xFFu : (1u << (n - g)) - 1u;
        const __m256i base = _mm256_set1_epi32(g);
        for (int k = 0; k <= lane_lists; ++k) {
            const unsigned bits = mask[k] & live;
            const __m256i lanes = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(
                static_cast<long long>(packed_lanes.of[bits])));
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(&lists[k][count[k]]),
                                _mm256_add_epi32(lanes, base));
            count[k] += __builtin_popcount(bits);
        }
    }
    for (int j = 0; j < count[scalar]; ++j) {
        const int i = lists[scalar][j];
        const idx e = begin + i, r = e / a.cols, c = e - r * a.cols;
        const T vt = v[r * a.v_row + c * a.v_col], xt = x[r * a.x_row + c * a.x_col];
        out[offsets[i]] = kv ? device::log_kv(vt, xt) : device::log_iv(vt, xt);
    }
    // Pass 3: the lane lists, a group of eight at a time.
    for (int k = 0; k < lane_lists; ++k) {
        for (int g = 0; g < count[k]; g += avx2::lanes) {
            // The last group is padded with its last element.
            alignas(32) double bv[avx2::lanes], bx[avx2::lanes], br[avx2::lanes];
            for (int l = 0; l < avx2::lanes; ++l) {
                const int i = lists[k][std::min(g + l, count[k] - 1)];
                bv[l] = vs[i];
                bx[l] = xs[i];
            }
            (kv ? list_lanes<true> : list_lanes<false>)(k, bv, bx, br);
            const int used = std::min(avx2::lanes, count[k] - g);
            for (int l = 0; l < used; ++l) out[offsets[lists[k][g + l]]] = static_cast<T>(br[l]);
        }
    }
}

}  // namespace

template <class T>
void log_bessel_avx2(bool kv, const T* v, const T* x, T* out, const elementwise_layout& layout) {
    const idx n = layout.rows * layout.cols;
#  pragma omp parallel for schedule(dynamic, 1) if (use_threads(n * 64))
    for (idx b = 0; b < n; b += chunk)
        chunk_log_bessel(kv, v, x, out, layout, b, std::min(n, b + chunk));
}

template void log_bessel_avx2(bool, const float*, const float*, float*,
                              const elementwise_layout&);
template void log_bessel_avx2(bool, const double*, const double*, double*,
                              const elementwise_layout&);

}  // namespace curvkit::cpu

#else  // built without the AVX2 kernels (another architecture or compiler)

namespace curvkit::cpu {

template <class T>
void log_bessel_avx2(bool, const T*, const T*, T*, const elementwise_layout&) {}

template void log_bessel_avx2(bool, const float*, const float*, float*,
                              const elementwise_layout&);
template void log_bessel_avx2(bool, const double*, const double*, double*,
                              const elementwise_layout&);

}  // namespace curvkit::cpu

#endif
