// Philox4x32-10 counter-based random numbers (Salmon et al., SC'11) for host and device: the
// same (key, counter) gives the same bits on the CPU and the GPU, with no state to carry.
#pragma once

#include <cmath>
#include <cstdint>

#include "curvkit/device/macros.hpp"

namespace curvkit::device {

/// Four 32-bit words: a Philox counter or its output.
struct uint4x32 {
    std::uint32_t v[4];
};

namespace detail {
CURVKIT_HD std::uint32_t mul_hi(std::uint32_t a, std::uint32_t b) {
    return static_cast<std::uint32_t>((static_cast<std::uint64_t>(a) * b) >> 32);
}
}  // namespace detail

/// @brief Ten rounds of Philox4x32 on @p ctr under the 64-bit key (@p k0, @p k1).
CURVKIT_HD uint4x32 philox4x32_10(uint4x32 ctr, std::uint32_t k0, std::uint32_t k1) {
    constexpr std::uint32_t m0 = 0xD2511F53u, m1 = 0xCD9E8D57u;
    constexpr std::uint32_t w0 = 0x9E3779B9u, w1 = 0xBB67AE85u;
    for (int round = 0; round < 10; ++round) {
        const std::uint32_t lo0 = m0 * ctr.v[0], hi0 = detail::mul_hi(m0, ctr.v[0]);
        const std::uint32_t lo1 = m1 * ctr.v[2], hi1 = detail::mul_hi(m1, ctr.v[2]);
        ctr = uint4x32{{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
        k0 += w0;
        k1 += w1;
    }
    return ctr;
}

/// @brief The 128 sign bits of probes [128 g, 128 g + 128) in row @p row of the probe matrix
/// drawn with @p seed: bit (p mod 128) of the result, 1 for +1, decides probe p.
CURVKIT_HD uint4x32 rademacher_bits(std::uint64_t seed, std::uint64_t row, std::uint64_t g) {
    const uint4x32 ctr{{static_cast<std::uint32_t>(row), static_cast<std::uint32_t>(row >> 32),
                        static_cast<std::uint32_t>(g), static_cast<std::uint32_t>(g >> 32)}};
    return philox4x32_10(ctr, static_cast<std::uint32_t>(seed),
                         static_cast<std::uint32_t>(seed >> 32));
}

/// @brief The sign that bit (@p probe mod 128) of @p bits gives.
template <class T>
CURVKIT_HD T rademacher_sign(const uint4x32& bits, std::uint64_t probe) {
    const unsigned bit = static_cast<unsigned>(probe & 127u);
    return ((bits.v[bit >> 5] >> (bit & 31u)) & 1u) ? T(1) : T(-1);
}

/// @brief The Rademacher sign (+1 or -1) of entry (@p row, @p probe) of the probe matrix drawn
/// with @p seed. One Philox call yields the signs of 128 consecutive probes of a row, so loops
/// over probes should call rademacher_bits() once per 128.
template <class T>
CURVKIT_HD T rademacher(std::uint64_t seed, std::uint64_t row, std::uint64_t probe) {
    return rademacher_sign<T>(rademacher_bits(seed, row, probe >> 7), probe);
}

/// @brief The two uniforms behind probes 2 @p pair and 2 @p pair + 1 in row @p row of the
/// Gaussian probe matrix drawn with @p seed (one Philox call; the key is offset so that the
/// Gaussian and Rademacher sequences of a seed are independent): 53-bit uniforms, u0 in (0, 1]
/// so that log(u0) is finite, u1 in [0, 1).
CURVKIT_HD void gaussian_uniforms(std::uint64_t seed, std::uint64_t row, std::uint64_t pair,
                                  double& u0, double& u1) {
    const uint4x32 ctr{{static_cast<std::uint32_t>(row), static_cast<std::uint32_t>(row >> 32),
                        static_cast<std::uint32_t>(pair), static_cast<std::uint32_t>(pair >> 32)}};
    const uint4x32 w = philox4x32_10(ctr, static_cast<std::uint32_t>(seed) ^ 0x5851F42Du,
                                     static_cast<std::uint32_t>(seed >> 32) ^ 0x2545F491u);
    constexpr double scale = 1.0 / 9007199254740992.0;  // 2^-53
    u0 = static_cast<double>(((static_cast<std::uint64_t>(w.v[0]) << 21) ^ w.v[1]) &
                             ((std::uint64_t{1} << 53) - 1)) * scale + scale;
    u1 = static_cast<double>(((static_cast<std::uint64_t>(w.v[2]) << 21) ^ w.v[3]) &
                             ((std::uint64_t{1} << 53) - 1)) * scale;
}

/// The angle 2 pi u1 of the Box-Muller transform, rounded once (so that every implementation of
/// the transform takes the cosine and sine of the same double).
constexpr double box_muller_two_pi = 6.283185307179586;

/// @brief Standard normal values of probes 2 @p pair and 2 @p pair + 1 in row @p row of the
/// Gaussian probe matrix drawn with @p seed: Box-Muller on gaussian_uniforms().
CURVKIT_HD void gaussian_pair(std::uint64_t seed, std::uint64_t row, std::uint64_t pair,
                              double& g0, double& g1) {
    double u0, u1;
    gaussian_uniforms(seed, row, pair, u0, u1);
    const double r = sqrt(-2.0 * log(u0));
    const double theta = box_muller_two_pi * u1;
    g0 = r * cos(theta);
    g1 = r * sin(theta);
}

}  // namespace curvkit::device
