// A downstream extension calling curvkit's public C++ API: y = A x for a NumPy CSR matrix.
#include <cstdint>
#include <memory>
#include <stdexcept>

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <curvkit/runtime.hpp>
#include <curvkit/sparse.hpp>
#include <curvkit/types.hpp>

namespace nb = nanobind;

namespace {

// Input constraints are checked by nanobind before we run; with .noconvert() below an array
// of the wrong dtype or layout is rejected (TypeError) instead of being silently copied.
template <typename T>
using in_vector = nb::ndarray<const T, nb::numpy, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using out_vector = nb::ndarray<double, nb::numpy, nb::ndim<1>, nb::c_contig>;

curvkit::dense_view vector_view(const double* data, std::int64_t n) {
    curvkit::dense_view v;
    v.data = const_cast<double*>(data);  // dense_view is shared by inputs and outputs
    v.dtype = curvkit::scalar_type::f64;
    v.rows = n;
    return v;
}

out_vector csr_matvec(in_vector<std::int32_t> indptr, in_vector<std::int32_t> indices,
                      in_vector<double> data, std::int64_t ncols, in_vector<double> x) {
    // nnz comes from the array lengths, which curvkit cannot see, so check them here.
    if (indptr.shape(0) < 1)
        throw std::invalid_argument("indptr must have rows + 1 >= 1 entries");
    if (indices.shape(0) != data.shape(0))
        throw std::invalid_argument("indices and data must have the same length");

    curvkit::csr_view A;
    A.rows = static_cast<std::int64_t>(indptr.shape(0)) - 1;
    A.cols = ncols;
    A.nnz = static_cast<std::int64_t>(data.shape(0));
    A.indptr = indptr.data();
    A.indices = indices.data();
    A.values = data.data();
    A.index_dtype = curvkit::scalar_type::i32;
    A.value_dtype = curvkit::scalar_type::f64;

    // The result owns a plain heap buffer; the capsule frees it when NumPy drops the array.
    auto buffer = std::make_unique<double[]>(static_cast<std::size_t>(A.rows));
    const curvkit::dense_view xv =
        vector_view(x.data(), static_cast<std::int64_t>(x.shape(0)));
    const curvkit::dense_view yv = vector_view(buffer.get(), A.rows);
    {
        // The views hold raw pointers read above, and the arguments keep the arrays alive,
        // so the OpenMP kernels can run without the GIL.
        nb::gil_scoped_release release;
        // csr_matmul trusts its index arrays; these come from Python, so validate first
        // (one pass over indptr and indices) rather than risk an out-of-bounds read.
        curvkit::csr_check(A);
        curvkit::csr_matmul(A, xv, yv);
    }
    double* yp = buffer.get();
    nb::capsule owner(yp, [](void* p) noexcept { delete[] static_cast<double*>(p); });
    buffer.release();
    return out_vector(yp, {static_cast<std::size_t>(A.rows)}, owner);
}

}  // namespace

NB_MODULE(curvkit_downstream, m) {
    m.doc() = "Downstream test extension linking curvkit::core through find_package.";

    // Map curvkit's error categories onto the Python exceptions curvkit itself raises,
    // rather than nanobind's catch-all RuntimeError.
    nb::register_exception_translator([](const std::exception_ptr& p, void*) {
        try {
            std::rethrow_exception(p);
        } catch (const curvkit::error& e) {
            PyObject* type = PyExc_RuntimeError;
            if (e.code() == curvkit::status::invalid_value) type = PyExc_ValueError;
            if (e.code() == curvkit::status::invalid_type) type = PyExc_TypeError;
            PyErr_SetString(type, e.what());
        }
    });

    m.def("csr_matvec", &csr_matvec, nb::arg("indptr").noconvert(),
          nb::arg("indices").noconvert(), nb::arg("data").noconvert(), nb::arg("ncols"),
          nb::arg("x").noconvert(),
          "y = A @ x for the CSR matrix A = (data, indices, indptr) with ncols columns.\n\n"
          "Arrays must be C-contiguous NumPy arrays: int32 indptr/indices, float64 data/x.");
    m.def("version", [] { return curvkit::version(); },
          "Version of the libcurvkit_core this module is linked against.");
}
