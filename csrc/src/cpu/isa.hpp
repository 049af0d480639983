// Which instruction-set variants of the CPU kernels run (internal).
#pragma once

namespace curvkit::cpu {

/// True when the AVX2 + FMA kernels (special_avx2.cpp, probes_avx2.cpp) were built and this
/// CPU runs them, unless the environment variable CURVKIT_DISABLE_AVX2 is set to anything but
/// "" or "0" (the portable kernels then run, for comparison and debugging). Read once.
bool avx2_kernels_enabled() noexcept;

}  // namespace curvkit::cpu
