// The AVX2 + FMA Box-Muller transform of the Gaussian probes (internal; see probes_avx2.cpp).
#pragma once

namespace curvkit::cpu {

/// Pairs per step of box_muller_avx2.
constexpr int box_muller_lanes = 16;

/// g0 = r cos(theta), g1 = r sin(theta) with r = sqrt(-2 log u0), theta = 2 pi u1 rounded as
/// box_muller_two_pi * u1, for n pairs (n a multiple of box_muller_lanes; u0 in (0, 1],
/// u1 in [0, 1)). Call only where avx2_kernels_enabled().
void box_muller_avx2(const double* u0, const double* u1, double* g0, double* g1, int n);

}  // namespace curvkit::cpu
