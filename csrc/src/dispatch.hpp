// The one dispatch pattern: a runtime scalar type becomes a compile-time type tag.
#pragma once

#include <cstdint>

#include "curvkit/types.hpp"

namespace curvkit::detail {

template <class T>
struct type_tag {
    using type = T;
};

/// Calls f(type_tag<float>) or f(type_tag<double>).
template <class F>
decltype(auto) with_value_type(scalar_type t, F&& f) {
    switch (t) {
        case scalar_type::f32: return f(type_tag<float>{});
        case scalar_type::f64: return f(type_tag<double>{});
        default: throw error(status::invalid_type, "values must be float32 or float64");
    }
}

/// Calls f(type_tag<int32_t>) or f(type_tag<int64_t>).
template <class F>
decltype(auto) with_index_type(scalar_type t, F&& f) {
    switch (t) {
        case scalar_type::i32: return f(type_tag<std::int32_t>{});
        case scalar_type::i64: return f(type_tag<std::int64_t>{});
        default: throw error(status::invalid_type, "indices must be int32 or int64");
    }
}

}  // namespace curvkit::detail
