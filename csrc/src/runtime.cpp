// Errors, version and build facts of libcurvkit_core.
#include "curvkit/runtime.hpp"

#include "curvkit/types.hpp"
#include "curvkit/version.hpp"
#include "curvkit_build_config.hpp"
#include "kernels.hpp"

namespace curvkit {

error::error(status code, const std::string& message) : std::runtime_error(message), code_(code) {}
error::~error() = default;

const char* name_of(scalar_type t) noexcept {
    switch (t) {
        case scalar_type::f32: return "float32";
        case scalar_type::f64: return "float64";
        case scalar_type::i32: return "int32";
        case scalar_type::i64: return "int64";
    }
    return "unknown";
}

const char* version() noexcept { return CURVKIT_VERSION_STRING; }

bool with_cuda() noexcept {
#if defined(CURVKIT_WITH_CUDA)
    return true;
#else
    return false;
#endif
}

const char* cuda_architectures() noexcept {
    return CURVKIT_BUILT_ARCHITECTURES;
}

int cuda_runtime_version() noexcept { return cuda::runtime_version(); }

std::vector<gpu_info> visible_gpus() {
    std::vector<gpu_info> gpus;
    const int count = cuda::device_count();
    for (int id = 0; id < count; ++id) {
        char name[256] = {};
        gpu_info info;
        info.id = id;
        if (cuda::device_properties(id, name, sizeof(name), &info.major, &info.minor,
                                    &info.memory_bytes)) {
            info.name = name;
            gpus.push_back(info);
        }
    }
    return gpus;
}

}  // namespace curvkit
