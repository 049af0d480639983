// Public special-function API: argument validation, then the device x dtype dispatch.
#include "curvkit/special.hpp"

#include <string>

#include "checks.hpp"
#include "dispatch.hpp"
#include "kernels.hpp"

namespace curvkit {

using namespace detail;

void special_function(special_fn f, const dense_view& v, const dense_view& x,
                      const dense_view& out, void* stream) {
    const int code = static_cast<int>(f);
    if (code < 0 || code > static_cast<int>(special_fn::dlog_kv))
        fail(status::invalid_value, "unknown special function " + std::to_string(code));
    check_dense(v, "v");
    check_dense(x, "x");
    check_dense(out, "out");
    for (const dense_view* in : {&v, &x}) {
        const char* what = in == &v ? "v" : "x";
        if (in->device != out.device || in->device_id != out.device_id)
            fail(status::invalid_type, std::string(what) + " must live on the device of out");
        if (in->dtype != out.dtype)
            fail(status::invalid_type, std::string(what) + " must have the dtype of out");
        if (in->rows != out.rows || in->cols != out.cols)
            fail(status::invalid_value, std::string(what) + " has shape " + shape_of(*in) +
                                            ", out " + shape_of(out));
        // Elementwise evaluation is safe in place (the same view); any other overlap is not.
        const bool same = in->data == out.data && in->row_stride == out.row_stride &&
                          (in->cols <= 1 || in->col_stride == out.col_stride);
        const auto [ilo, ihi] = extent(*in);
        const auto [olo, ohi] = extent(out);
        if (!same && ilo < ohi && olo < ihi)
            fail(status::invalid_value, std::string("out overlaps ") + what);
    }
    if (!distinct_elements(out)) fail(status::invalid_value, "out has overlapping elements");
    with_value_type(out.dtype, [&](auto vt) {
        using T = typename decltype(vt)::type;
        const block_ref<const T> tv = typed<const T>(v), tx = typed<const T>(x);
        if (out.device == device_kind::cpu) {
            cpu::special_function(f, tv, tx, typed<T>(out));
        } else {
            cuda::device_guard guard(out.device_id);
            cuda::special_function(f, tv, tx, typed<T>(out), stream);
        }
    });
}

}  // namespace curvkit
