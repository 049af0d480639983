// Which instruction-set variants of the CPU kernels run.
#include "cpu/isa.hpp"

#include <cstdlib>
#include <cstring>

namespace curvkit::cpu {

bool avx2_kernels_enabled() noexcept {
    static const bool enabled = [] {
#if defined(CURVKIT_HAVE_AVX2_KERNELS)
        const char* off = std::getenv("CURVKIT_DISABLE_AVX2");
        if (off != nullptr && *off != '\0' && std::strcmp(off, "0") != 0) return false;
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
        return false;
#endif
    }();
    return enabled;
}

}  // namespace curvkit::cpu
