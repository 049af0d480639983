// Argument checks shared by the public entry points (internal).
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "curvkit/types.hpp"
#include "kernels.hpp"

namespace curvkit::detail {

[[noreturn]] inline void fail(status s, const std::string& message) { throw error(s, message); }

inline std::string shape_of(const dense_view& v) {
    return v.ndim == 1 ? "(" + std::to_string(v.rows) + ",)"
                       : "(" + std::to_string(v.rows) + ", " + std::to_string(v.cols) + ")";
}

inline bool known_device(device_kind d) { return d == device_kind::cpu || d == device_kind::cuda; }

inline void check_dense(const dense_view& v, const char* what) {
    if (!known_device(v.device))
        fail(status::invalid_value, std::string(what) + " has an unknown device kind");
    if (v.ndim != 1 && v.ndim != 2)
        fail(status::invalid_value, std::string(what) + " must be 1-D or 2-D");
    if (v.rows < 0 || v.cols < 0 || (v.ndim == 1 && v.cols != 1))
        fail(status::invalid_value, std::string(what) + " has an invalid shape");
    if (v.data == nullptr && v.rows * v.cols > 0)
        fail(status::invalid_value, std::string(what) + " is null");
}

// Byte range [lo, hi) spanned by a strided view; used to refuse outputs overlapping inputs.
inline std::pair<const char*, const char*> extent(const dense_view& v) {
    const char* base = static_cast<const char*>(v.data);
    if (v.rows == 0 || v.cols == 0) return {base, base};
    std::int64_t lo = 0, hi = 0;
    for (auto [n, s] : {std::pair{v.rows, v.row_stride}, std::pair{v.cols, v.col_stride}}) {
        const std::int64_t span = (n - 1) * s;
        (span < 0 ? lo : hi) += span;
    }
    const auto bytes = static_cast<std::int64_t>(size_of(v.dtype));
    return {base + lo * bytes, base + (hi + 1) * bytes};
}

// Sufficient for distinct elements: one axis steps over the whole extent of the other, as in
// every C- or F-ordered array and their slices.
inline bool distinct_elements(const dense_view& v) {
    const std::int64_t r = v.row_stride < 0 ? -v.row_stride : v.row_stride;
    const std::int64_t c = v.col_stride < 0 ? -v.col_stride : v.col_stride;
    if (v.rows == 0 || v.cols == 0 || (v.rows == 1 && v.cols == 1)) return true;
    if (v.cols <= 1) return r >= 1;
    if (v.rows <= 1) return c >= 1;
    return (c >= 1 && r >= c * v.cols) || (r >= 1 && c >= r * v.rows);
}

template <class T>
block_ref<T> typed(const dense_view& v) {
    return {static_cast<T*>(v.data), v.rows, v.cols, v.row_stride, v.col_stride};
}

}  // namespace curvkit::detail
