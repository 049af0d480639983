// Double lanes in AVX2 registers, with what the templated routes of
// curvkit/device/log_bessel.hpp and the Box-Muller transform need: arithmetic, comparisons
// to masks, select and lane reductions, fused multiply-add, and sqrt, rounding, log, log1p,
// exp, sinh, cosh and sin (each on the domain its comment states). Only for translation units
// compiled with -mavx2 -mfma (special_avx2.cpp, probes_avx2.cpp).
#pragma once

#if !defined(__AVX2__) || !defined(__FMA__)
#  error "simd_avx2.hpp needs -mavx2 -mfma"
#endif

#include <immintrin.h>

#include <initializer_list>

#include <cstdint>

namespace curvkit::cpu::avx2 {

// Every function here is forced inline: an out-of-line call passes its lanes through memory,
// which costs more than most of these functions, and the compiler's size heuristics decline
// to inline the longer ones (log, exp) once a file calls them often.
#define CURVKIT_SIMD_INLINE inline __attribute__((always_inline))

/// Lanes per vd: four AVX2 registers, so that each instruction window holds four independent
/// dependency chains. The routes are long chains of dependent operations (square roots,
/// divisions, recurrences); with two registers they ran 1.3-1.4x slower, latency-bound.
constexpr int lanes = 16;

/// Sixteen doubles. Implicit from double so that the routes' literals broadcast.
struct vd {
    __m256d a, b, c, d;
    vd() = default;
    vd(double x) : a(_mm256_set1_pd(x)), b(a), c(a), d(a) {}  // NOLINT: broadcasts on purpose
    vd(__m256d p, __m256d q, __m256d r, __m256d s) : a(p), b(q), c(r), d(s) {}
    static vd load(const double* p) {
        return {_mm256_load_pd(p), _mm256_load_pd(p + 4), _mm256_load_pd(p + 8),
                _mm256_load_pd(p + 12)};
    }
    static vd loadu(const double* p) {
        return {_mm256_loadu_pd(p), _mm256_loadu_pd(p + 4), _mm256_loadu_pd(p + 8),
                _mm256_loadu_pd(p + 12)};
    }
    void store(double* p) const {
        _mm256_store_pd(p, a);
        _mm256_store_pd(p + 4, b);
        _mm256_store_pd(p + 8, c);
        _mm256_store_pd(p + 12, d);
    }
    void storeu(double* p) const {
        _mm256_storeu_pd(p, a);
        _mm256_storeu_pd(p + 4, b);
        _mm256_storeu_pd(p + 8, c);
        _mm256_storeu_pd(p + 12, d);
    }
};

/// Lane mask: all bits set where true.
struct vm {
    __m256d a, b, c, d;
};

/// f applied to each register of the operands, in source order (register by register, so
/// that the four chains interleave).
template <class V = vd, class F, class... A>
CURVKIT_SIMD_INLINE V each(F f, const A&... x) {
    return {f(x.a...), f(x.b...), f(x.c...), f(x.d...)};
}

#define CURVKIT_VD_BINARY(op, intrinsic)                                                 \
    CURVKIT_SIMD_INLINE vd operator op(vd x, vd y) {                                     \
        return each([](__m256d p, __m256d q) { return intrinsic(p, q); }, x, y);        \
    }
CURVKIT_VD_BINARY(+, _mm256_add_pd)
CURVKIT_VD_BINARY(-, _mm256_sub_pd)
CURVKIT_VD_BINARY(*, _mm256_mul_pd)
CURVKIT_VD_BINARY(/, _mm256_div_pd)
#undef CURVKIT_VD_BINARY
CURVKIT_SIMD_INLINE vd operator-(vd x) {
    return each([](__m256d p) { return _mm256_xor_pd(p, _mm256_set1_pd(-0.0)); }, x);
}

#define CURVKIT_VD_COMPARE(op, predicate)                                                \
    CURVKIT_SIMD_INLINE vm operator op(vd x, vd y) {                                     \
        return each<vm>([](__m256d p, __m256d q) { return _mm256_cmp_pd(p, q, predicate); }, \
                        x, y);                                                           \
    }
CURVKIT_VD_COMPARE(<, _CMP_LT_OQ)
CURVKIT_VD_COMPARE(<=, _CMP_LE_OQ)
CURVKIT_VD_COMPARE(>, _CMP_GT_OQ)
CURVKIT_VD_COMPARE(>=, _CMP_GE_OQ)
CURVKIT_VD_COMPARE(==, _CMP_EQ_OQ)
#undef CURVKIT_VD_COMPARE
CURVKIT_SIMD_INLINE vm operator&(vm x, vm y) {
    return each<vm>([](__m256d p, __m256d q) { return _mm256_and_pd(p, q); }, x, y);
}
CURVKIT_SIMD_INLINE vm operator|(vm x, vm y) {
    return each<vm>([](__m256d p, __m256d q) { return _mm256_or_pd(p, q); }, x, y);
}
CURVKIT_SIMD_INLINE vm and_not(vm x, vm y) {
    return each<vm>([](__m256d p, __m256d q) { return _mm256_andnot_pd(q, p); }, x, y);
}

CURVKIT_SIMD_INLINE vd select(vm m, vd x, vd y) {
    return each([](__m256d k, __m256d p, __m256d q) { return _mm256_blendv_pd(q, p, k); }, m, x,
                y);
}
CURVKIT_SIMD_INLINE bool any_lane(vm m) {
    return _mm256_movemask_pd(_mm256_or_pd(_mm256_or_pd(m.a, m.b), _mm256_or_pd(m.c, m.d))) != 0;
}

CURVKIT_SIMD_INLINE double max_lane(vd x) {
    const __m256d m4 = _mm256_max_pd(_mm256_max_pd(x.a, x.b), _mm256_max_pd(x.c, x.d));
    const __m128d m = _mm_max_pd(_mm256_castpd256_pd128(m4), _mm256_extractf128_pd(m4, 1));
    return _mm_cvtsd_f64(_mm_max_sd(m, _mm_unpackhi_pd(m, m)));
}

CURVKIT_SIMD_INLINE double min_lane(vd x) {
    const __m256d m4 = _mm256_min_pd(_mm256_min_pd(x.a, x.b), _mm256_min_pd(x.c, x.d));
    const __m128d m = _mm_min_pd(_mm256_castpd256_pd128(m4), _mm256_extractf128_pd(m4, 1));
    return _mm_cvtsd_f64(_mm_min_sd(m, _mm_unpackhi_pd(m, m)));
}

CURVKIT_SIMD_INLINE vd madd(vd x, vd y, vd z) {
    return each([](__m256d p, __m256d q, __m256d r) { return _mm256_fmadd_pd(p, q, r); }, x, y,
                z);
}
CURVKIT_SIMD_INLINE vd fma(vd x, vd y, vd z) { return madd(x, y, z); }  // always fused here
CURVKIT_SIMD_INLINE vd fabs(vd x) {
    return each([](__m256d p) { return _mm256_andnot_pd(_mm256_set1_pd(-0.0), p); }, x);
}
CURVKIT_SIMD_INLINE vd sqrt(vd x) { return each([](__m256d p) { return _mm256_sqrt_pd(p); }, x); }
template <int mode>
CURVKIT_SIMD_INLINE vd round_to(vd x) {
    return each([](__m256d p) { return _mm256_round_pd(p, mode | _MM_FROUND_NO_EXC); }, x);
}
CURVKIT_SIMD_INLINE vd floor(vd x) { return round_to<_MM_FROUND_TO_NEG_INF>(x); }
CURVKIT_SIMD_INLINE vd round_nearest(vd x) { return round_to<_MM_FROUND_TO_NEAREST_INT>(x); }
CURVKIT_SIMD_INLINE vd ceil(vd x) { return round_to<_MM_FROUND_TO_POS_INF>(x); }

/// x = 2^e m for positive, finite, normal x: m in [sqrt(1/2), sqrt(2)) and e, both exact.
/// Adding 2^52 - (mantissa of sqrt(1/2)) to the bits carries into the exponent field exactly
/// where the mantissa reaches sqrt(2)'s: the field is then e + 1023, and the remaining
/// mantissa bits plus those of sqrt(1/2) are m's.
CURVKIT_SIMD_INLINE void split_exponent(__m256d x, __m256d& m, __m256d& e) {
    constexpr long long sqrt_half_bits = 0x3FE6A09E667F3BCDLL;  // 0.7071067811865476
    const __m256i shifted = _mm256_add_epi64(
        _mm256_castpd_si256(x), _mm256_set1_epi64x(0x3FF0000000000000LL - sqrt_half_bits));
    m = _mm256_castsi256_pd(
        _mm256_add_epi64(_mm256_and_si256(shifted, _mm256_set1_epi64x(0x000FFFFFFFFFFFFFLL)),
                         _mm256_set1_epi64x(sqrt_half_bits)));
    // The field as a double: its bits placed under 2^52's exponent, minus 2^52 + 1023.
    const __m256i two52_bits = _mm256_set1_epi64x(0x4330000000000000LL);
    e = _mm256_sub_pd(
        _mm256_castsi256_pd(_mm256_or_si256(_mm256_srli_epi64(shifted, 52), two52_bits)),
        _mm256_set1_pd(4503599627371519.0));  // 2^52 + 1023
}

/// 2^-e for positive, finite, normal lanes x = 2^e m, m in [1, 2): exact, for rescaling.
CURVKIT_SIMD_INLINE vd power_of_two_below(vd x) {
    return each(
        [](__m256d p) {
            const __m256i biased = _mm256_and_si256(_mm256_castpd_si256(p),
                                                    _mm256_set1_epi64x(0x7FF0000000000000LL));
            // 2^-e has the biased exponent 2046 - biased(x).
            return _mm256_castsi256_pd(
                _mm256_sub_epi64(_mm256_set1_epi64x(0x7FE0000000000000LL), biased));
        },
        x);
}

/// Natural logarithm of positive, finite, normal lanes, within an ulp. x = 2^e m with m in
/// [sqrt(1/2), sqrt(2)); f = m - 1 is exact, s = f / (2 + f), and
/// log(1 + f) = 2 atanh(s) = 2s + s R(s^2) = f - s (f - R), R = sum_j 2 s^(2j) / (2j + 1),
/// where every rounding is of a term at most s < 0.172 times the result's size.
CURVKIT_SIMD_INLINE vd log(vd x) {
    vd m, e;
    split_exponent(x.a, m.a, e.a);
    split_exponent(x.b, m.b, e.b);
    split_exponent(x.c, m.c, e.c);
    split_exponent(x.d, m.d, e.d);
    const vd f = m - 1.0;
    const vd s = f / (f + 2.0);
    const vd z = s * s;
    // 2/(2j+1) for j = 1..10: the first omitted term is below 3e-18 of the result.
    const vd r = madd(madd(madd(madd(madd(madd(madd(madd(madd(vd(2.0 / 21.0), z, 2.0 / 19.0), z,
                                                          2.0 / 17.0), z, 2.0 / 15.0), z,
                                                2.0 / 13.0), z, 2.0 / 11.0), z, 2.0 / 9.0),
                                z, 2.0 / 7.0), z, 2.0 / 5.0),
                      z, 2.0 / 3.0) * z;
    constexpr double ln2_hi = 6.93147180369123816490e-01;  // 32 trailing zero bits: e ln2_hi exact
    constexpr double ln2_lo = 1.90821492927058770002e-10;
    return madd(e, vd(ln2_hi), f - madd(s, f - r, -(e * ln2_lo)));
}

/// e^r for |r| <= 700, within an ulp: r = k ln 2 + f with |f| <= ln(2) / 2, e^f by its Taylor
/// polynomial (the first omitted term below 5e-18), scaled by 2^k through the exponent bits.
CURVKIT_SIMD_INLINE __m256d exp_quad(__m256d r) {
    const __m256d k = _mm256_round_pd(_mm256_mul_pd(r, _mm256_set1_pd(1.4426950408889634)),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256d hi = _mm256_fnmadd_pd(k, _mm256_set1_pd(6.93147180369123816490e-01), r);
    const __m256d f = _mm256_fnmadd_pd(k, _mm256_set1_pd(1.90821492927058770002e-10), hi);
    __m256d p = _mm256_set1_pd(1.0 / 6227020800.0);  // 1/13!
    constexpr double inverse_factorials[] = {1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0,
                                             1.0 / 362880.0, 1.0 / 40320.0, 1.0 / 5040.0,
                                             1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0,
                                             0.5, 1.0, 1.0};
    for (const double c : inverse_factorials) p = _mm256_fmadd_pd(p, f, _mm256_set1_pd(c));
    const __m256i bits = _mm256_slli_epi64(
        _mm256_add_epi64(_mm256_cvtepi32_epi64(_mm256_cvtpd_epi32(k)), _mm256_set1_epi64x(1023)),
        52);
    return _mm256_mul_pd(p, _mm256_castsi256_pd(bits));
}
CURVKIT_SIMD_INLINE vd exp(vd r) { return each([](__m256d p) { return exp_quad(p); }, r); }

/// sinh and cosh for |x| <= 700: from e^x, and below |x| = 1, where e^x - e^-x would cancel
/// and the exponential's rounding would show, by their Taylor series, summed as
/// x + x z p(z) and 1 + z q(z) (z = x^2) so that the last step rounds once.
CURVKIT_SIMD_INLINE vd sinh(vd x) {
    const vd e = exp(x);
    const vd z = x * x;
    vd p = 1.0 / 355687428096000.0;  // 1/17!
    for (const double c : {1.0 / 1307674368000.0, 1.0 / 6227020800.0, 1.0 / 39916800.0,
                           1.0 / 362880.0, 1.0 / 5040.0, 1.0 / 120.0, 1.0 / 6.0})
        p = madd(p, z, c);
    return select(fabs(x) < vd(1.0), madd(x * z, p, x), 0.5 * (e - 1.0 / e));
}
CURVKIT_SIMD_INLINE vd cosh(vd x) {
    const vd e = exp(x);
    const vd z = x * x;
    vd q = 1.0 / 6402373705728000.0;  // 1/18!
    for (const double c : {1.0 / 20922789888000.0, 1.0 / 87178291200.0, 1.0 / 479001600.0,
                           1.0 / 3628800.0, 1.0 / 40320.0, 1.0 / 720.0, 1.0 / 24.0, 0.5})
        q = madd(q, z, c);
    return select(fabs(x) < vd(1.0), madd(z, q, 1.0), 0.5 * (e + 1.0 / e));
}

/// 1/x to about 12 bits (through single precision; 0 past its range).
CURVKIT_SIMD_INLINE vd rough_reciprocal(vd x) {
    return each([](__m256d p) { return _mm256_cvtps_pd(_mm_rcp_ps(_mm256_cvtpd_ps(p))); }, x);
}

/// log(1 + y) for y >= 0 (finite): log of u = 1 + y plus the rounding of u relative to u,
/// (y - (u - 1)) / u, which is below eps and needs only a few correct bits.
CURVKIT_SIMD_INLINE vd log1p(vd y) {
    const vd u = y + 1.0;
    const vd correction = (y - (u - 1.0)) * rough_reciprocal(u);
    return select(u == vd(1.0), y, log(u) + correction);
}

}  // namespace curvkit::cpu::avx2
