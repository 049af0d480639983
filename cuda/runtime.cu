// CUDA runtime facts (device count, properties, version) and the current-device guard.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstring>

#include "cuda_check.cuh"
#include "kernels.hpp"

namespace curvkit::cuda {

device_guard::device_guard(int device_id) {
    int current = -1;
    detail::cuda_check(cudaGetDevice(&current), "cudaGetDevice");
    // Switching only when needed keeps the common case free of runtime calls that could
    // create a context on a device the caller never asked for.
    if (current != device_id) {
        detail::cuda_check(cudaSetDevice(device_id), "cudaSetDevice");
        previous_ = current;  // stays -1 when nothing changed, so the destructor does nothing
    }
}

device_guard::~device_guard() {
    if (previous_ >= 0) {
        // Destructors must not throw; a failed restore is left for the next checked call to see,
        // but its non-sticky error is cleared so that it is not blamed on a later launch.
        if (cudaSetDevice(previous_) != cudaSuccess) {
            (void)cudaGetLastError();
        }
    }
}

int device_count() noexcept {
    int count = 0;
    // Without a driver or a device this fails (cudaErrorNoDevice, cudaErrorInsufficientDriver,
    // ...): CI machines take this path and must simply see an empty device list.
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return count < 0 ? 0 : count;
}

bool device_properties(int id, char* name, std::size_t name_len, int* major, int* minor,
                       std::size_t* memory_bytes) noexcept {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, id) != cudaSuccess) {
        (void)cudaGetLastError();
        return false;
    }
    if (name != nullptr && name_len > 0) {
        // prop.name is a fixed array that need not be terminated at its very end.
        std::size_t n = 0;
        while (n < sizeof(prop.name) && n + 1 < name_len && prop.name[n] != '\0') {
            ++n;
        }
        std::memcpy(name, prop.name, n);
        name[n] = '\0';
    }
    if (major != nullptr) {
        *major = prop.major;
    }
    if (minor != nullptr) {
        *minor = prop.minor;
    }
    if (memory_bytes != nullptr) {
        *memory_bytes = prop.totalGlobalMem;
    }
    return true;
}

int runtime_version() noexcept { return CUDART_VERSION; }

}  // namespace curvkit::cuda
