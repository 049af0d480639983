// Turns CUDA runtime errors into curvkit::error for the .cu files of the CUDA backend.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "curvkit/types.hpp"

namespace curvkit::cuda::detail {

/// Throws error(status::cuda_failure, "<what>: <CUDA message>").
[[noreturn]] inline void throw_cuda_error(cudaError_t err, const char* what) {
    // A failed runtime call also leaves err as the thread's "last error"; clear it so that the
    // next cuda_check_launch() does not blame an unrelated, later launch. (Sticky errors stay.)
    (void)cudaGetLastError();
    throw error(status::cuda_failure, std::string(what) + ": " + cudaGetErrorString(err));
}

/// Checks the result of a runtime call.
inline void cuda_check(cudaError_t err, const char* what) {
    if (err != cudaSuccess) {
        throw_cuda_error(err, what);
    }
}

/// Checks the launch just made: a bad configuration is only reported through cudaGetLastError.
inline void cuda_check_launch(const char* what) { cuda_check(cudaGetLastError(), what); }

}  // namespace curvkit::cuda::detail
