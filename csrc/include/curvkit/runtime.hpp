// Build and run-time facts: version, CUDA support, visible GPUs.
#pragma once

#include <string>
#include <vector>

#include "curvkit/export.hpp"

namespace curvkit {

/// @brief The library version, "major.minor.patch".
CURVKIT_API const char* version() noexcept;

/// @brief True when the CUDA kernels were compiled into this build.
CURVKIT_API bool with_cuda() noexcept;

/// @brief The CUDA architectures compiled in (e.g. "80-real;90-real;90-virtual"), or "".
CURVKIT_API const char* cuda_architectures() noexcept;

/// @brief One GPU visible to the CUDA runtime.
struct gpu_info {
    int id = 0;
    std::string name;
    int major = 0;
    int minor = 0;
    std::size_t memory_bytes = 0;
};

/// @brief GPUs visible now; empty without CUDA, without a driver or without a device.
CURVKIT_API std::vector<gpu_info> visible_gpus();

/// @brief CUDA runtime version compiled against (e.g. 13000), or 0 without CUDA.
CURVKIT_API int cuda_runtime_version() noexcept;

}  // namespace curvkit
