// The Box-Muller transform of the Gaussian probes, sixteen pairs at a time with AVX2 and FMA
// (the uniforms come from Philox in probes.cpp). Built with -mavx2 -mfma and run only where
// the CPU has both; the results match the scalar transform to an ulp or two.
#include "cpu/probes_avx2.hpp"

#if defined(CURVKIT_HAVE_AVX2_KERNELS)

#  include <initializer_list>

#  include "cpu/simd_avx2.hpp"

namespace curvkit::cpu {
namespace {

using avx2::vd;
using avx2::vm;

/// cos and sin of theta in [0, 2 pi]: theta = q pi/2 + r with |r| <= pi/4 (pi/2 in three
/// parts, the first with 21 trailing zero bits so that q times it is exact), the Taylor series
/// of both on r, then the quadrant.
void cos_sin(vd theta, vd& c, vd& s) {
    constexpr double half_pi_1 = 1.5707963267341256, half_pi_2 = 6.077100506506192e-11,
                     half_pi_3 = 3.5215598651832e-27;
    const vd q = avx2::round_nearest(theta * 0.6366197723675814);  // 2 / pi
    const vd r = ((theta - q * half_pi_1) - q * half_pi_2) - q * half_pi_3;
    const vd z = r * r;
    // sin r = r (1 - z/3! + z^2/5! ...) through r^17; cos r = 1 - z/2! + ... through r^18.
    vd sn = 1.0 / 355687428096000.0;  // 1/17!
    for (const double k : {-1.0 / 1307674368000.0, 1.0 / 6227020800.0, -1.0 / 39916800.0,
                           1.0 / 362880.0, -1.0 / 5040.0, 1.0 / 120.0, -1.0 / 6.0, 1.0})
        sn = madd(sn, z, k);
    sn = sn * r;
    vd cs = 1.0 / 6402373705728000.0;  // 1/18!
    for (const double k : {-1.0 / 20922789888000.0, 1.0 / 87178291200.0, -1.0 / 479001600.0,
                           1.0 / 3628800.0, -1.0 / 40320.0, 1.0 / 720.0, -1.0 / 24.0, 0.5})
        cs = madd(cs, z, k);
    cs = madd(cs, -z, 1.0);
    // Quadrant q mod 4 (q = 4 is the first): (cos, sin) = (c, s), (-s, c), (-c, -s), (s, -c).
    const vm q1 = q == vd(1.0), q2 = q == vd(2.0), q3 = q == vd(3.0);
    c = select(q1, -sn, select(q2, -cs, select(q3, sn, cs)));
    s = select(q1, cs, select(q2, -sn, select(q3, -cs, sn)));
}

}  // namespace

static_assert(box_muller_lanes == avx2::lanes);

void box_muller_avx2(const double* u0, const double* u1, double* g0, double* g1, int n) {
    for (int i = 0; i < n; i += avx2::lanes) {
        const vd r = sqrt(-2.0 * log(vd::loadu(u0 + i)));
        vd c, s;
        cos_sin(vd::loadu(u1 + i) * 6.283185307179586, c, s);  // box_muller_two_pi
        (r * c).storeu(g0 + i);
        (r * s).storeu(g1 + i);
    }
}

}  // namespace curvkit::cpu

#else  // built without the AVX2 kernels

namespace curvkit::cpu {
void box_muller_avx2(const double*, const double*, double*, double*, int) {}
}  // namespace curvkit::cpu

#endif
