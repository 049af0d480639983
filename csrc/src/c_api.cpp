// The extern "C" ABI: converts plain structs to views and exceptions to status codes.
#include "curvkit/c_api.h"

#include <exception>
#include <string>
#include <vector>

#include "curvkit/linalg.hpp"
#include "curvkit/runtime.hpp"
#include "curvkit/sparse.hpp"
#include "curvkit/special.hpp"
#include "kernels.hpp"

namespace {

thread_local std::string last_error;

curvkit::dense_view to_view(const curvkit_dense& d) {
    curvkit::dense_view v;
    v.data = d.data;
    v.dtype = static_cast<curvkit::scalar_type>(d.dtype);
    v.device = static_cast<curvkit::device_kind>(d.device);
    v.device_id = d.device_id;
    v.ndim = d.ndim;
    v.rows = d.rows;
    v.cols = d.cols;
    v.row_stride = d.row_stride;
    v.col_stride = d.col_stride;
    return v;
}

curvkit::csr_view to_view(const curvkit_csr& c) {
    curvkit::csr_view v;
    v.rows = c.rows;
    v.cols = c.cols;
    v.nnz = c.nnz;
    v.indptr = c.indptr;
    v.indices = c.indices;
    v.values = c.values;
    v.index_dtype = static_cast<curvkit::scalar_type>(c.index_dtype);
    v.value_dtype = static_cast<curvkit::scalar_type>(c.value_dtype);
    v.storage = static_cast<curvkit::triangle>(c.storage);
    v.device = static_cast<curvkit::device_kind>(c.device);
    v.device_id = c.device_id;
    return v;
}

curvkit::cg_options to_options(const curvkit_cg_options* o) {
    curvkit::cg_options out;
    if (o) {
        out.rtol = o->rtol;
        out.atol = o->atol;
        out.maxiter = o->maxiter;
        out.check_every = o->check_every;
    }
    return out;
}

template <class F>
int guarded(F&& f) {
    try {
        f();
        last_error.clear();
        return CURVKIT_OK;
    } catch (const curvkit::error& e) {
        last_error = e.what();
        return static_cast<int>(e.code());
    } catch (const std::exception& e) {
        last_error = e.what();
        return CURVKIT_INTERNAL;
    } catch (...) {
        last_error = "unknown error";
        return CURVKIT_INTERNAL;
    }
}

}  // namespace

extern "C" {

int curvkit_csr_matmul(const curvkit_csr* A, const curvkit_dense* x, const curvkit_dense* y,
                       void* stream) {
    return guarded([&] {
        if (!A || !x || !y) throw curvkit::error(curvkit::status::invalid_value, "null argument");
        curvkit::csr_matmul(to_view(*A), to_view(*x), to_view(*y), stream);
    });
}

int curvkit_csr_diagonal(const curvkit_csr* A, const curvkit_dense* d, void* stream) {
    return guarded([&] {
        if (!A || !d) throw curvkit::error(curvkit::status::invalid_value, "null argument");
        curvkit::csr_diagonal(to_view(*A), to_view(*d), stream);
    });
}

int curvkit_csr_check(const curvkit_csr* A, void* workspace, size_t bytes, void* stream) {
    return guarded([&] {
        if (!A) throw curvkit::error(curvkit::status::invalid_value, "null argument");
        curvkit::csr_check(to_view(*A), workspace, bytes, stream);
    });
}

size_t curvkit_cg_workspace_size(int32_t device, int64_t n, int64_t k,
                                 const curvkit_cg_options* options) {
    return curvkit::cg_workspace_size(static_cast<curvkit::device_kind>(device), n, k,
                                      to_options(options));
}

int curvkit_cg_solve(const curvkit_csr* A, const curvkit_dense* b, const curvkit_dense* x,
                     const curvkit_dense* r, const curvkit_dense* p, const curvkit_dense* q,
                     const curvkit_dense* inv_diag, const curvkit_cg_options* options,
                     void* workspace, size_t bytes, curvkit_cg_report* reports, void* stream) {
    return guarded([&] {
        if (!A || !b || !x || !r || !p || !q || !reports)
            throw curvkit::error(curvkit::status::invalid_value, "null argument");
        curvkit::cg_blocks blocks;
        blocks.b = to_view(*b);
        blocks.x = to_view(*x);
        blocks.r = to_view(*r);
        blocks.p = to_view(*p);
        blocks.q = to_view(*q);
        if (inv_diag) blocks.inv_diag = to_view(*inv_diag);
        const curvkit::csr_view a = to_view(*A);
        std::vector<curvkit::cg_column_report> out(static_cast<std::size_t>(b->cols));
        curvkit::cg_solve(&a, blocks, to_options(options), curvkit::cg_callbacks{}, workspace,
                          bytes, out.data(), nullptr, stream);
        for (std::size_t j = 0; j < out.size(); ++j) {
            reports[j].iterations = out[j].iterations;
            reports[j].residual_norm = out[j].residual_norm;
            reports[j].true_residual_norm = out[j].true_residual_norm;
            reports[j].tolerance = out[j].tolerance;
            reports[j].reason = static_cast<int32_t>(out[j].reason);
        }
    });
}

int curvkit_special_function(int fn, const curvkit_dense* v, const curvkit_dense* x,
                             const curvkit_dense* out, void* stream) {
    return guarded([&] {
        if (!v || !x || !out)
            throw curvkit::error(curvkit::status::invalid_value, "null argument");
        curvkit::special_function(static_cast<curvkit::special_fn>(fn), to_view(*v), to_view(*x),
                                  to_view(*out), stream);
    });
}

// The scalar entry points run the CPU array kernel on one element, so that they return what
// the array functions return on this CPU (the vectorised kernels included).
static double one_element(curvkit::special_fn f, double v, double x) {
    double out = 0.0;
    curvkit::cpu::special_function(f, curvkit::block_ref<const double>{&v, 1, 1, 1, 1},
                                   curvkit::block_ref<const double>{&x, 1, 1, 1, 1},
                                   curvkit::block_ref<double>{&out, 1, 1, 1, 1});
    return out;
}

double curvkit_log_iv(double v, double x) { return one_element(curvkit::special_fn::log_iv, v, x); }

double curvkit_log_kv(double v, double x) { return one_element(curvkit::special_fn::log_kv, v, x); }

double curvkit_iv_ratio(double v, double x) {
    return one_element(curvkit::special_fn::iv_ratio, v, x);
}

const char* curvkit_last_error(void) { return last_error.c_str(); }

const char* curvkit_version(void) { return curvkit::version(); }

int curvkit_with_cuda(void) { return curvkit::with_cuda() ? 1 : 0; }

}  // extern "C"
