// exp written so that the compiler can vectorise loops calling it (no libm call, no branches):
// the CPU transport kernels spend nearly all their time in exp.
#pragma once

#include <cstdint>
#include <cstring>

namespace curvkit::cpu {

/// e^x to about 2 ulp for x >= -708 (0 below, where the result would be subnormal), for
/// x <= 709. Range reduction x = k ln2 + r, |r| <= ln2 / 2, then a degree-13 Taylor polynomial
/// (truncation error below 1e-17 on that interval) and 2^k assembled in the exponent bits.
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
inline double simd_exp(double x) {
    constexpr double log2e = 1.4426950408889634;
    constexpr double ln2_hi = 6.93147180369123816490e-01;  // ln 2 split so that k * ln2_hi is exact
    constexpr double ln2_lo = 1.90821492927058770002e-10;
    constexpr double shift = 6755399441055744.0;  // 1.5 * 2^52: adding it rounds to an integer
    const double xc = x < -708.0 ? -708.0 : (x > 709.0 ? 709.0 : x);
    const double kd = xc * log2e + shift;
    const double k = kd - shift;
    const double r = (xc - k * ln2_hi) - k * ln2_lo;
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    // The low bits of kd hold k; shifting k + 1023 into the exponent field builds 2^k.
    std::uint64_t bits;
    std::memcpy(&bits, &kd, sizeof bits);
    bits = (bits + 1023u) << 52;
    double scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return x < -708.0 ? 0.0 : p * scale;
}

#if defined(__GNUC__)
__attribute__((always_inline))
#endif
inline float simd_exp(float x) { return static_cast<float>(simd_exp(static_cast<double>(x))); }

}  // namespace curvkit::cpu
