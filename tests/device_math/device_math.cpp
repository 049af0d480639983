// The shared log-Bessel header compiled for the host as the GPU would see its arithmetic:
// each call of log, log1p, exp, sin, sinh, cosh, asinh and hypot returns a double within the
// CUDA math library's documented maximum error for double (1-3 ulps, where glibc's are below
// 1), chosen around the exact value (computed in long double), and the test builds it with
// fused multiply-adds contracted, as nvcc does by default. sqrt, fma, floor and the four
// operations are correctly rounded on both, and are left alone.
//
//   device_math MODE SEED FUNCTION IN OUT
//
// MODE: "random" (each call gets one of the doubles within its bound, picked by a hash of its
// arguments and SEED, so that a repeated call gives the same result, as on the device), "up"
// or "down" (the largest or the smallest of them), or "none" (correctly rounded).
// IN holds float64 pairs (v, x); OUT receives one float64 per pair. The environment variable
// CURVKIT_EMULATE_ONLY=N limits the errors to the N-th function of the list above (from 1),
// to find which one an error comes from. Exit status 4: long double is no wider than double.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

namespace emulation {

std::uint64_t only = 0;  // 0: every function; else the one with this number
int mode = 0;  // 0 none, 1 random, 2 up, 3 down
std::uint64_t seed = 0;

std::uint64_t bits_of(double a) {
    std::uint64_t b;
    std::memcpy(&b, &a, sizeof b);
    return b;
}

std::uint64_t mix(std::uint64_t z) {  // a 64-bit finaliser: every input bit moves every output bit
    z ^= z >> 31;
    z *= 0x7fb5d329728ea185ULL;
    z ^= z >> 27;
    z *= 0x81dadef4bc2dd44dULL;
    z ^= z >> 33;
    return z;
}

// A double within `ulps` units in the last place of the exact value e (a long double result,
// 11 bits more precise) of function number fn at arguments (a, b): the nearest one, the
// largest or smallest one, or one picked by a hash of fn, a, b and the seed. With ulps = 1 it
// is a faithful rounding: either neighbour of e.
double within(long double e, int ulps, std::uint64_t fn, double a, double b = 0.0) {
    const double r = static_cast<double>(e);
    if (mode == 0 || !std::isfinite(r) || r == 0.0 || (only != 0 && fn != only)) return r;
    const long double ulp = std::nextafter(std::fabs(r), INFINITY) - std::fabs(r);
    double cand[16];
    int n = 0;
    double c = r;
    for (int j = 0; j < ulps; ++j) c = std::nextafter(c, -INFINITY);
    for (int j = 0; j <= 2 * ulps; ++j, c = std::nextafter(c, INFINITY))
        if (std::fabs(static_cast<long double>(c) - e) <= ulps * ulp) cand[n++] = c;
    if (mode == 2) return cand[n - 1];
    if (mode == 3) return cand[0];
    return cand[mix(seed ^ mix(bits_of(a) ^ mix(bits_of(b) + fn))) % n];
}

}  // namespace emulation

// Declared in the namespace the header's functions live in, these hide the C library's names
// from the header's unqualified calls.
namespace curvkit::device {
inline namespace device_math_emulation {
// The bounds are those the CUDA Programming Guide gives for double (maximum ulp errors).
inline double log(double a) { return emulation::within(logl(a), 1, 1, a); }
inline double log1p(double a) { return emulation::within(log1pl(a), 1, 2, a); }
inline double exp(double a) { return emulation::within(expl(a), 1, 3, a); }
inline double sin(double a) { return emulation::within(sinl(a), 2, 4, a); }
inline double sinh(double a) { return emulation::within(sinhl(a), 2, 5, a); }
inline double cosh(double a) { return emulation::within(coshl(a), 1, 6, a); }
inline double asinh(double a) { return emulation::within(asinhl(a), 3, 7, a); }
inline double hypot(double a, double b) { return emulation::within(hypotl(a, b), 2, 8, a, b); }
}  // namespace device_math_emulation
}  // namespace curvkit::device

#define CURVKIT_ISA_NAMESPACE device_math_emulation
#include "curvkit/device/log_bessel.hpp"

int main(int argc, char** argv) {
    if (std::numeric_limits<long double>::digits <= std::numeric_limits<double>::digits) return 4;
    if (argc != 6) {
        std::fprintf(stderr, "usage: %s none|random|up|down SEED FUNCTION IN OUT\n", argv[0]);
        return 2;
    }
    const std::string mode = argv[1];
    emulation::mode = mode == "random" ? 1 : mode == "up" ? 2 : mode == "down" ? 3 : 0;
    if (emulation::mode == 0 && mode != "none") return 2;
    emulation::seed = emulation::mix(std::stoull(argv[2]));
    if (const char* o = std::getenv("CURVKIT_EMULATE_ONLY")) emulation::only = std::stoull(o);

    namespace cd = curvkit::device;
    const std::string name = argv[3];
    using scalar_fn = double (*)(double, double);
    const scalar_fn fn = name == "log_iv"     ? static_cast<scalar_fn>(cd::log_iv)
                         : name == "log_kv"   ? static_cast<scalar_fn>(cd::log_kv)
                         : name == "iv_ratio" ? static_cast<scalar_fn>(cd::iv_ratio)
                         : name == "dlog_iv"  ? static_cast<scalar_fn>(cd::dlog_iv)
                         : name == "dlog_kv"  ? static_cast<scalar_fn>(cd::dlog_kv)
                                              : nullptr;
    if (fn == nullptr) return 2;

    std::FILE* in = std::fopen(argv[4], "rb");
    if (in == nullptr) return 3;
    std::vector<double> vx;
    double pair[2];
    while (std::fread(pair, sizeof(double), 2, in) == 2) vx.insert(vx.end(), pair, pair + 2);
    std::fclose(in);

    std::vector<double> out(vx.size() / 2);
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = fn(vx[2 * i], vx[2 * i + 1]);
    std::FILE* f = std::fopen(argv[5], "wb");
    if (f == nullptr) return 3;
    const bool ok = std::fwrite(out.data(), sizeof(double), out.size(), f) == out.size();
    return std::fclose(f) == 0 && ok ? 0 : 3;
}
