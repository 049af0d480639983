// Public entropic transport API: argument validation, then the device x dtype dispatch.
#include "curvkit/ot.hpp"

#include <cmath>
#include <string>

#include "checks.hpp"
#include "dispatch.hpp"
#include "kernels.hpp"

namespace curvkit {
namespace {

using namespace detail;

// The kernels index every array as a packed C-order block; anything else is refused here.
bool packed(const dense_view& v) {
    if (v.rows <= 1 && v.cols <= 1) return true;
    if (v.ndim == 1) return v.rows <= 1 || v.row_stride == 1;
    return (v.cols <= 1 || v.col_stride == 1) && (v.rows <= 1 || v.row_stride == v.cols);
}

void check_array(const dense_view& v, const dense_view& like, scalar_type dtype, const char* what,
                 std::int64_t size) {
    check_dense(v, what);
    if (v.device != like.device || v.device_id != like.device_id)
        fail(status::invalid_type, std::string(what) + " must live on the device of M");
    if (v.dtype != dtype)
        fail(status::invalid_type, std::string(what) + " must be " + name_of(dtype) + ", got " +
                                       name_of(v.dtype));
    if (!packed(v)) fail(status::invalid_value, std::string(what) + " must be contiguous");
    if (v.rows * v.cols != size)
        fail(status::invalid_value, std::string(what) + " must have " + std::to_string(size) +
                                        " entries, got " + shape_of(v));
}

void check_matrix(const dense_view& K, const char* what) {
    check_dense(K, what);
    if (K.ndim != 2) fail(status::invalid_value, std::string(what) + " must be 2-D");
    if (K.dtype != scalar_type::f32 && K.dtype != scalar_type::f64)
        fail(status::invalid_type, std::string(what) + " must be float32 or float64");
    if (!packed(K)) fail(status::invalid_value, std::string(what) + " must be C-contiguous");
}

void check_reg(double reg) {
    if (!(reg > 0) || !std::isfinite(reg))
        fail(status::invalid_value, "reg must be positive and finite, got " + std::to_string(reg));
}

template <class T>
T* data_of(const dense_view* v) {
    return v == nullptr ? nullptr : static_cast<T*>(v->data);
}

}  // namespace

void ot_lse_update(const dense_view& K, const dense_view& v, const dense_view& w, double reg,
                   std::int64_t batch, const dense_view& u, const dense_view* marginal,
                   const dense_view* error, void* stream) {
    check_matrix(K, "K");
    check_reg(reg);
    if (batch < 1 || K.rows % batch != 0)
        fail(status::invalid_value, "batch must be positive and divide the rows of K");
    const std::int64_t n = K.rows / batch, m = K.cols;
    check_array(v, K, K.dtype, "v", batch * m);
    check_array(w, K, K.dtype, "w", batch * n);
    check_array(u, K, K.dtype, "u", batch * n);
    if (marginal != nullptr) check_array(*marginal, K, K.dtype, "marginal", batch * n);
    if (error != nullptr) check_array(*error, K, K.dtype, "error", batch);
    with_value_type(K.dtype, [&](auto vt) {
        using T = typename decltype(vt)::type;
        const auto* k = static_cast<const T*>(K.data);
        const auto* vv = static_cast<const T*>(v.data);
        const auto* ww = static_cast<const T*>(w.data);
        auto* uu = static_cast<T*>(u.data);
        if (K.device == device_kind::cpu) {
            cpu::ot_lse_update(batch, n, m, k, vv, ww, T(reg), uu, data_of<T>(marginal),
                               data_of<T>(error));
        } else {
            cuda::device_guard guard(K.device_id);
            cuda::ot_lse_update(batch, n, m, k, vv, ww, T(reg), uu, data_of<T>(marginal),
                                data_of<T>(error), stream);
        }
    });
}

void ot_sinkhorn_batch(const dense_view& M, const dense_view& MT, const dense_view& a,
                       const dense_view& b, double reg, std::int64_t batch, std::int64_t maxiter,
                       double tol, std::int64_t check_every, const dense_view& f,
                       const dense_view& g, const dense_view& iterations,
                       const dense_view& error, void* stream) {
    check_matrix(M, "M");
    check_reg(reg);
    if (batch < 1 || M.rows % batch != 0)
        fail(status::invalid_value, "batch must be positive and divide the rows of M");
    if (maxiter < 0) fail(status::invalid_value, "maxiter must be >= 0");
    if (check_every < 1) fail(status::invalid_value, "check_every must be >= 1");
    if (std::isnan(tol)) fail(status::invalid_value, "tol must not be NaN");
    const std::int64_t n = M.rows / batch, m = M.cols;
    check_array(MT, M, M.dtype, "MT", batch * m * n);
    if (MT.ndim != 2 || MT.rows != batch * m)
        fail(status::invalid_value, "MT must be (batch * m, n), got " + shape_of(MT));
    check_array(a, M, M.dtype, "a", batch * n);
    check_array(b, M, M.dtype, "b", batch * m);
    check_array(f, M, M.dtype, "f", batch * n);
    check_array(g, M, M.dtype, "g", batch * m);
    check_array(iterations, M, scalar_type::i64, "iterations", batch);
    check_array(error, M, M.dtype, "error", batch);
    with_value_type(M.dtype, [&](auto vt) {
        using T = typename decltype(vt)::type;
        const auto* mm = static_cast<const T*>(M.data);
        const auto* mt = static_cast<const T*>(MT.data);
        const auto* aa = static_cast<const T*>(a.data);
        const auto* bb = static_cast<const T*>(b.data);
        auto* ff = static_cast<T*>(f.data);
        auto* gg = static_cast<T*>(g.data);
        auto* its = static_cast<std::int64_t*>(iterations.data);
        auto* err = static_cast<T*>(error.data);
        if (M.device == device_kind::cpu) {
            cpu::ot_sinkhorn_batch(batch, n, m, mm, mt, aa, bb, T(reg), maxiter, T(tol),
                                   check_every, ff, gg, its, err);
        } else {
            cuda::device_guard guard(M.device_id);
            cuda::ot_sinkhorn_batch(batch, n, m, mm, mt, aa, bb, T(reg), maxiter, T(tol),
                                    check_every, ff, gg, its, err, stream);
        }
    });
}

void ot_plan_sums(const dense_view& M, const dense_view& f, const dense_view& g, double reg,
                  double threshold, const dense_view& row_sum, const dense_view& col_sum,
                  const dense_view* cost, const dense_view* row_count, void* stream) {
    check_matrix(M, "M");
    check_reg(reg);
    const std::int64_t n = M.rows, m = M.cols;
    check_array(f, M, M.dtype, "f", n);
    check_array(g, M, M.dtype, "g", m);
    check_array(row_sum, M, M.dtype, "row_sum", n);
    check_array(col_sum, M, M.dtype, "col_sum", m);
    if (cost != nullptr) check_array(*cost, M, M.dtype, "cost", 1);
    if (row_count != nullptr) check_array(*row_count, M, scalar_type::i64, "row_count", n);
    with_value_type(M.dtype, [&](auto vt) {
        using T = typename decltype(vt)::type;
        const auto* mm = static_cast<const T*>(M.data);
        const auto* ff = static_cast<const T*>(f.data);
        const auto* gg = static_cast<const T*>(g.data);
        auto* rs = static_cast<T*>(row_sum.data);
        auto* cs = static_cast<T*>(col_sum.data);
        auto* counts = data_of<std::int64_t>(row_count);
        if (M.device == device_kind::cpu) {
            cpu::ot_plan_sums(n, m, mm, ff, gg, T(reg), T(threshold), rs, cs, data_of<T>(cost),
                              counts);
        } else {
            cuda::device_guard guard(M.device_id);
            cuda::ot_plan_sums(n, m, mm, ff, gg, T(reg), T(threshold), rs, cs, data_of<T>(cost),
                               counts, stream);
        }
    });
}

void ot_plan_gather(const dense_view& M, const dense_view& f, const dense_view& g, double reg,
                    double threshold, const dense_view& starts, const dense_view& slots,
                    std::int64_t col_offset, const dense_view& indices, const dense_view& values,
                    void* stream) {
    check_matrix(M, "M");
    check_reg(reg);
    const std::int64_t n = M.rows, m = M.cols;
    check_array(f, M, M.dtype, "f", n);
    check_array(g, M, M.dtype, "g", m);
    check_array(starts, M, scalar_type::i64, "starts", n);
    check_array(slots, M, scalar_type::i64, "slots", n);
    check_dense(indices, "indices");
    check_array(indices, M, scalar_type::i64, "indices", indices.rows * indices.cols);
    check_array(values, M, M.dtype, "values", indices.rows * indices.cols);
    if (col_offset < 0) fail(status::invalid_value, "col_offset must be non-negative");
    // The positions themselves are trusted (a prefix sum of the counts): checking them would
    // cost a pass over n entries and a sync on a GPU; the caller sized the outputs from them.
    with_value_type(M.dtype, [&](auto vt) {
        using T = typename decltype(vt)::type;
        const auto* mm = static_cast<const T*>(M.data);
        const auto* ff = static_cast<const T*>(f.data);
        const auto* gg = static_cast<const T*>(g.data);
        const auto* st = static_cast<const std::int64_t*>(starts.data);
        const auto* sl = static_cast<const std::int64_t*>(slots.data);
        auto* ix = static_cast<std::int64_t*>(indices.data);
        auto* vals = static_cast<T*>(values.data);
        if (M.device == device_kind::cpu) {
            cpu::ot_plan_gather(n, m, mm, ff, gg, T(reg), T(threshold), st, sl, col_offset, ix,
                                vals);
        } else {
            cuda::device_guard guard(M.device_id);
            cuda::ot_plan_gather(n, m, mm, ff, gg, T(reg), T(threshold), st, sl, col_offset, ix,
                                 vals, stream);
        }
    });
}

}  // namespace curvkit
