// The special functions as functor types, so that each kernel loop is compiled per function
// with the scalar code inlined (internal; shared by the CPU and CUDA kernels).
#pragma once

#include "curvkit/device/log_bessel.hpp"
#include "curvkit/device/macros.hpp"
#include "curvkit/special.hpp"
#include "curvkit/types.hpp"

namespace curvkit::detail {

struct log_iv_fn {
    template <class T>
    CURVKIT_HD T operator()(T v, T x) const { return device::log_iv(v, x); }
};
struct log_kv_fn {
    template <class T>
    CURVKIT_HD T operator()(T v, T x) const { return device::log_kv(v, x); }
};
struct iv_ratio_fn {
    template <class T>
    CURVKIT_HD T operator()(T v, T x) const { return device::iv_ratio(v, x); }
};
struct dlog_iv_fn {
    template <class T>
    CURVKIT_HD T operator()(T v, T x) const { return device::dlog_iv(v, x); }
};
struct dlog_kv_fn {
    template <class T>
    CURVKIT_HD T operator()(T v, T x) const { return device::dlog_kv(v, x); }
};

/// Calls g(functor) for the functor of f.
template <class G>
void with_special_functor(special_fn f, G&& g) {
    switch (f) {
        case special_fn::log_iv: return g(log_iv_fn{});
        case special_fn::log_kv: return g(log_kv_fn{});
        case special_fn::iv_ratio: return g(iv_ratio_fn{});
        case special_fn::dlog_iv: return g(dlog_iv_fn{});
        case special_fn::dlog_kv: return g(dlog_kv_fn{});
    }
    throw error(status::invalid_value, "unknown special function");
}

}  // namespace curvkit::detail
