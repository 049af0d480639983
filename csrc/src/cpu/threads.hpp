// When the CPU kernels use OpenMP threads (internal).
#pragma once

#include <cstdint>

namespace curvkit::cpu {

/// True when a kernel doing `work` units (entries + rows, or elements) should open a parallel
/// region: enough work to repay waking the thread team, and not in a forked child process.
bool use_threads(std::int64_t work) noexcept;

}  // namespace curvkit::cpu
