// pybind11 module curvkit._core: turns NumPy/CuPy arrays into views and forwards to the C++ API.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "curvkit/curvkit.hpp"
#include "curvkit/device/philox.hpp"

namespace py = pybind11;
using curvkit::device_kind;
using curvkit::scalar_type;

namespace {

scalar_type scalar_type_of(const py::dtype& dt) {
    const char kind = dt.kind();
    const auto size = dt.itemsize();
    if (kind == 'f' && size == 4) return scalar_type::f32;
    if (kind == 'f' && size == 8) return scalar_type::f64;
    if (kind == 'i' && size == 4) return scalar_type::i32;
    if (kind == 'i' && size == 8) return scalar_type::i64;
    throw py::type_error("unsupported dtype " + std::string(py::str(dt)) +
                         " (expected float32, float64, int32 or int64)");
}

// The one adaptor from Python arrays to views: NumPy arrays through the buffer protocol,
// CuPy arrays through their pointer, shape and strides (the Python layer has already turned
// other GPU arrays into CuPy arrays, zero-copy). Nothing is converted or copied here.
curvkit::dense_view view_of(py::handle obj, int device_id, bool writable) {
    curvkit::dense_view v;
    std::int64_t shape[2] = {0, 1}, strides[2] = {0, 0};
    if (py::isinstance<py::array>(obj)) {
        auto a = py::reinterpret_borrow<py::array>(obj);
        if (writable && !a.writeable()) throw py::value_error("output array is read-only");
        if (a.ndim() < 1 || a.ndim() > 2) throw py::value_error("arrays must be 1-D or 2-D");
        v.ndim = static_cast<int>(a.ndim());
        v.dtype = scalar_type_of(a.dtype());
        v.data = const_cast<void*>(a.data());
        for (int d = 0; d < v.ndim; ++d) {
            shape[d] = a.shape(d);
            strides[d] = a.strides(d);
        }
        v.device = device_kind::cpu;
    } else {
        py::tuple shp = obj.attr("shape"), str = obj.attr("strides");
        if (shp.size() < 1 || shp.size() > 2) throw py::value_error("arrays must be 1-D or 2-D");
        v.ndim = static_cast<int>(shp.size());
        v.dtype = scalar_type_of(obj.attr("dtype").cast<py::dtype>());
        v.data = reinterpret_cast<void*>(obj.attr("data").attr("ptr").cast<std::uintptr_t>());
        for (int d = 0; d < v.ndim; ++d) {
            shape[d] = shp[d].cast<std::int64_t>();
            strides[d] = str[d].cast<std::int64_t>();
        }
        v.device = device_kind::cuda;
        v.device_id = device_id;
        if (obj.attr("device").attr("id").cast<int>() != device_id)
            throw py::value_error("array is on GPU " +
                                  std::string(py::str(obj.attr("device").attr("id"))) +
                                  ", expected GPU " + std::to_string(device_id));
    }
    const auto item = static_cast<std::int64_t>(curvkit::size_of(v.dtype));
    if (reinterpret_cast<std::uintptr_t>(v.data) % static_cast<std::uintptr_t>(item) != 0)
        throw py::value_error("array data is not aligned to its item size");
    if (strides[0] % item || strides[1] % item)
        throw py::value_error("array strides must be multiples of the item size");
    v.rows = shape[0];
    v.cols = v.ndim == 2 ? shape[1] : 1;
    v.row_stride = strides[0] / item;
    v.col_stride = v.ndim == 2 ? strides[1] / item : 1;
    return v;
}

// A CSR matrix whose arrays stay referenced from Python for as long as the handle lives,
// converted once so that each product only converts the vectors.
class csr_handle {
public:
    csr_handle(py::object indptr, py::object indices, py::object values, std::int64_t rows,
               std::int64_t cols, int storage, int device_id)
        : indptr_(std::move(indptr)), indices_(std::move(indices)), values_(std::move(values)) {
        const auto p = view_of(indptr_, device_id, false);
        const auto i = view_of(indices_, device_id, false);
        const auto d = view_of(values_, device_id, false);
        if (p.ndim != 1 || i.ndim != 1 || d.ndim != 1)
            throw py::value_error("indptr, indices and data must be 1-D");
        auto strided = [](const curvkit::dense_view& v) { return v.rows > 1 && v.row_stride != 1; };
        if (strided(p) || strided(i) || strided(d))
            throw py::value_error("indptr, indices and data must be contiguous");
        if (p.dtype != i.dtype) throw py::type_error("indptr and indices must share one dtype");
        if (p.device != i.device || p.device != d.device)
            throw py::type_error("indptr, indices and data must live on the same device");
        if (i.rows != d.rows) throw py::value_error("indices and data differ in length");
        if (p.rows != rows + 1)
            throw py::value_error("indptr must have rows + 1 = " + std::to_string(rows + 1) +
                                  " entries, got " + std::to_string(p.rows));
        if (storage < 0 || storage > 2) throw py::value_error("storage must be 0, 1 or 2");
        view_.rows = rows;
        view_.cols = cols;
        view_.nnz = i.rows;
        view_.indptr = p.data;
        view_.indices = i.data;
        view_.values = d.data;
        view_.index_dtype = p.dtype;
        view_.value_dtype = d.dtype;
        view_.storage = static_cast<curvkit::triangle>(storage);
        view_.device = p.device;
        view_.device_id = p.device_id;
    }

    void matmul(py::handle x, py::handle y, std::uintptr_t stream) const {
        const auto xv = view_of(x, view_.device_id, false);
        const auto yv = view_of(y, view_.device_id, true);
        py::gil_scoped_release release;
        curvkit::csr_matmul(view_, xv, yv, reinterpret_cast<void*>(stream));
    }

    void diagonal(py::handle d, std::uintptr_t stream) const {
        const auto dv = view_of(d, view_.device_id, true);
        py::gil_scoped_release release;
        curvkit::csr_diagonal(view_, dv, reinterpret_cast<void*>(stream));
    }

    py::tuple greedy_coloring() const {
        py::array_t<std::int32_t> colors(view_.rows);
        std::int64_t count = 0;
        {
            py::gil_scoped_release release;
            count = curvkit::greedy_coloring(view_, colors.mutable_data());
        }
        return py::make_tuple(colors, count);
    }

    const curvkit::csr_view& view() const { return view_; }

    std::size_t check_workspace_size() const { return curvkit::csr_check_workspace_size(view_); }

    void check(py::object workspace, std::uintptr_t stream) const {
        void* ws = nullptr;
        std::size_t bytes = 0;
        if (!workspace.is_none()) {
            const auto w = view_of(workspace, view_.device_id, true);
            ws = w.data;
            bytes = static_cast<std::size_t>(w.rows) * curvkit::size_of(w.dtype);
        }
        py::gil_scoped_release release;
        curvkit::csr_check(view_, ws, bytes, reinterpret_cast<void*>(stream));
    }

private:
    py::object indptr_, indices_, values_;
    curvkit::csr_view view_;
};

// Python callables behind the C++ CG hooks. They run on the solving thread, which holds no GIL
// while the loop runs; a Python exception unwinds through the loop to the caller.
struct cg_python_hooks {
    py::object apply, precondition, iteration_done;

    static void call_apply(void* self, int which) {
        py::gil_scoped_acquire gil;
        static_cast<cg_python_hooks*>(self)->apply(which);
    }
    static void call_precondition(void* self) {
        py::gil_scoped_acquire gil;
        static_cast<cg_python_hooks*>(self)->precondition();
    }
    static void call_iteration_done(void* self, std::int64_t iteration) {
        py::gil_scoped_acquire gil;
        static_cast<cg_python_hooks*>(self)->iteration_done(iteration);
    }
};

curvkit::cg_options cg_options_of(double rtol, double atol, std::int64_t maxiter,
                                  std::int64_t check_every) {
    curvkit::cg_options o;
    o.rtol = rtol;
    o.atol = atol;
    o.maxiter = maxiter;
    o.check_every = check_every;
    return o;
}

// Solves with CG; returns ([(iterations, residual, true residual, tolerance, reason)] per
// column, history as a (rows, k) float64 array or None).
py::tuple cg_solve(py::object matrix, py::handle b, py::handle x, py::handle r, py::handle p,
                   py::handle q, py::object z, py::object inv_diag, double rtol, double atol,
                   std::int64_t maxiter, std::int64_t check_every, py::handle workspace,
                   py::object apply, py::object precondition, py::object iteration_done,
                   bool want_history, int device_id, std::uintptr_t stream) {
    curvkit::cg_blocks blocks;
    blocks.b = view_of(b, device_id, false);
    blocks.x = view_of(x, device_id, true);
    blocks.r = view_of(r, device_id, true);
    blocks.p = view_of(p, device_id, true);
    blocks.q = view_of(q, device_id, true);
    if (!z.is_none()) blocks.z = view_of(z, device_id, true);
    if (!inv_diag.is_none()) blocks.inv_diag = view_of(inv_diag, device_id, false);
    const auto ws = view_of(workspace, device_id, true);
    const curvkit::csr_view* A = matrix.is_none() ? nullptr : &matrix.cast<const csr_handle&>().view();
    cg_python_hooks hooks{apply, precondition, iteration_done};
    curvkit::cg_callbacks cb;
    cb.user = &hooks;
    if (!apply.is_none()) cb.apply = &cg_python_hooks::call_apply;
    if (!precondition.is_none()) cb.precondition = &cg_python_hooks::call_precondition;
    if (!iteration_done.is_none()) cb.iteration_done = &cg_python_hooks::call_iteration_done;
    const auto options = cg_options_of(rtol, atol, maxiter, check_every);
    const std::int64_t k = blocks.b.cols;
    std::vector<curvkit::cg_column_report> reports(static_cast<std::size_t>(k));
    std::vector<double> history;
    {
        py::gil_scoped_release release;
        curvkit::cg_solve(A, blocks, options, cb, ws.data,
                          static_cast<std::size_t>(ws.rows * ws.cols) * curvkit::size_of(ws.dtype),
                          reports.data(), want_history ? &history : nullptr,
                          reinterpret_cast<void*>(stream));
    }
    py::list columns;
    for (const auto& rep : reports)
        columns.append(py::make_tuple(rep.iterations, rep.residual_norm, rep.true_residual_norm,
                                      rep.tolerance, static_cast<int>(rep.reason)));
    py::object hist = py::none();
    if (want_history) {
        const auto rows = static_cast<py::ssize_t>(k > 0 ? history.size() / k : 0);
        py::array_t<double> h({rows, static_cast<py::ssize_t>(k)});
        std::copy(history.begin(), history.end(), h.mutable_data());
        hist = h;
    }
    return py::make_tuple(columns, hist);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "curvkit's compiled core; use the curvkit package instead.";

    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const curvkit::error& e) {
            switch (e.code()) {
                case curvkit::status::invalid_value: PyErr_SetString(PyExc_ValueError, e.what()); break;
                case curvkit::status::invalid_type: PyErr_SetString(PyExc_TypeError, e.what()); break;
                default: PyErr_SetString(PyExc_RuntimeError, e.what()); break;
            }
        }
    });

    m.def("version", &curvkit::version);
    m.def("with_cuda", &curvkit::with_cuda);
    m.def("cuda_architectures", &curvkit::cuda_architectures);
    m.def("cuda_runtime_version", &curvkit::cuda_runtime_version);
    m.def("visible_gpus", [] {
        py::list out;
        for (const auto& g : curvkit::visible_gpus())
            out.append(py::dict(py::arg("id") = g.id, py::arg("name") = g.name,
                                py::arg("compute_capability") = py::make_tuple(g.major, g.minor),
                                py::arg("memory_bytes") = g.memory_bytes));
        return out;
    });

    // Probe fills share one signature: (Z, seed, first_probe, device_id, stream).
    auto bind_fill = [&m](const char* name, auto fill) {
        m.def(
            name,
            [fill](py::handle Z, std::uint64_t seed, std::int64_t first_probe, int device_id,
                   std::uintptr_t stream) {
                const auto z = view_of(Z, device_id, true);
                py::gil_scoped_release release;
                fill(z, seed, first_probe, reinterpret_cast<void*>(stream));
            },
            py::arg("Z"), py::arg("seed"), py::arg("first_probe"), py::arg("device_id"),
            py::arg("stream"));
    };
    bind_fill("fill_rademacher", &curvkit::fill_rademacher);
    bind_fill("fill_gaussian", &curvkit::fill_gaussian);
    m.def(
        "accumulate_probe_products",
        [](py::handle Z, py::handle HZ, py::handle mean, py::handle m2, std::int64_t count,
           int device_id, std::uintptr_t stream) {
            const auto z = view_of(Z, device_id, false), hz = view_of(HZ, device_id, false);
            const auto mu = view_of(mean, device_id, true), s2 = view_of(m2, device_id, true);
            py::gil_scoped_release release;
            curvkit::accumulate_probe_products(z, hz, mu, s2, count,
                                               reinterpret_cast<void*>(stream));
        },
        py::arg("Z"), py::arg("HZ"), py::arg("mean"), py::arg("m2"), py::arg("count"),
        py::arg("device_id"), py::arg("stream"));
    m.def(
        "special_function",
        [](int fn, py::handle v, py::handle x, py::handle out, int device_id,
           std::uintptr_t stream) {
            const auto vv = view_of(v, device_id, false), xv = view_of(x, device_id, false);
            const auto ov = view_of(out, device_id, true);
            py::gil_scoped_release release;
            curvkit::special_function(static_cast<curvkit::special_fn>(fn), vv, xv, ov,
                                      reinterpret_cast<void*>(stream));
        },
        py::arg("fn"), py::arg("v"), py::arg("x"), py::arg("out"), py::arg("device_id"),
        py::arg("stream"));
    m.def(
        "_philox4x32_10",
        [](std::array<std::uint32_t, 4> ctr, std::uint32_t k0, std::uint32_t k1) {
            const auto r = curvkit::device::philox4x32_10({{ctr[0], ctr[1], ctr[2], ctr[3]}}, k0, k1);
            return std::array<std::uint32_t, 4>{r.v[0], r.v[1], r.v[2], r.v[3]};
        },
        "Philox4x32-10 of one counter (exposed for known-answer tests).");

    m.def(
        "cg_workspace_size",
        [](bool gpu, std::int64_t n, std::int64_t k, std::int64_t check_every) {
            return curvkit::cg_workspace_size(gpu ? device_kind::cuda : device_kind::cpu, n, k,
                                              cg_options_of(0, 0, -1, check_every));
        },
        py::arg("gpu"), py::arg("n"), py::arg("k"), py::arg("check_every"));
    m.def("cg_solve", &cg_solve, py::arg("matrix"), py::arg("b"), py::arg("x"), py::arg("r"),
          py::arg("p"), py::arg("q"), py::arg("z"), py::arg("inv_diag"), py::arg("rtol"),
          py::arg("atol"), py::arg("maxiter"), py::arg("check_every"), py::arg("workspace"),
          py::arg("apply"), py::arg("precondition"), py::arg("iteration_done"),
          py::arg("want_history"), py::arg("device_id"), py::arg("stream"));

    // Entropic transport kernels; optional outputs are None.
    auto optional_view = [](py::object obj, int device_id, curvkit::dense_view& v) {
        if (obj.is_none()) return static_cast<const curvkit::dense_view*>(nullptr);
        v = view_of(obj, device_id, true);
        return static_cast<const curvkit::dense_view*>(&v);
    };
    m.def(
        "ot_lse_update",
        [optional_view](py::handle K, py::handle v, py::handle w, double reg, std::int64_t batch,
                        py::handle u, py::object marginal, py::object error, int device_id,
                        std::uintptr_t stream) {
            const auto kv = view_of(K, device_id, false), vv = view_of(v, device_id, false);
            const auto wv = view_of(w, device_id, false), uv = view_of(u, device_id, true);
            curvkit::dense_view mv, ev;
            const auto* mp = optional_view(marginal, device_id, mv);
            const auto* ep = optional_view(error, device_id, ev);
            py::gil_scoped_release release;
            curvkit::ot_lse_update(kv, vv, wv, reg, batch, uv, mp, ep,
                                   reinterpret_cast<void*>(stream));
        },
        py::arg("K"), py::arg("v"), py::arg("w"), py::arg("reg"), py::arg("batch"), py::arg("u"),
        py::arg("marginal"), py::arg("error"), py::arg("device_id"), py::arg("stream"));
    m.def(
        "ot_sinkhorn_batch",
        [](py::handle M, py::handle MT, py::handle a, py::handle b, double reg,
           std::int64_t batch, std::int64_t maxiter, double tol, std::int64_t check_every,
           py::handle f, py::handle g, py::handle iterations, py::handle error, int device_id,
           std::uintptr_t stream) {
            const auto mv = view_of(M, device_id, false), tv = view_of(MT, device_id, false);
            const auto av = view_of(a, device_id, false), bv = view_of(b, device_id, false);
            const auto fv = view_of(f, device_id, true), gv = view_of(g, device_id, true);
            const auto iv = view_of(iterations, device_id, true);
            const auto ev = view_of(error, device_id, true);
            py::gil_scoped_release release;
            curvkit::ot_sinkhorn_batch(mv, tv, av, bv, reg, batch, maxiter, tol, check_every, fv,
                                       gv, iv, ev, reinterpret_cast<void*>(stream));
        },
        py::arg("M"), py::arg("MT"), py::arg("a"), py::arg("b"), py::arg("reg"),
        py::arg("batch"), py::arg("maxiter"), py::arg("tol"), py::arg("check_every"),
        py::arg("f"), py::arg("g"), py::arg("iterations"), py::arg("error"),
        py::arg("device_id"), py::arg("stream"));
    m.def(
        "ot_plan_sums",
        [optional_view](py::handle M, py::handle f, py::handle g, double reg, double threshold,
                        py::handle row_sum, py::handle col_sum, py::object cost,
                        py::object row_count, int device_id, std::uintptr_t stream) {
            const auto mv = view_of(M, device_id, false), fv = view_of(f, device_id, false);
            const auto gv = view_of(g, device_id, false);
            const auto rs = view_of(row_sum, device_id, true);
            const auto cs = view_of(col_sum, device_id, true);
            curvkit::dense_view cv, nv;
            const auto* cp = optional_view(cost, device_id, cv);
            const auto* np_ = optional_view(row_count, device_id, nv);
            py::gil_scoped_release release;
            curvkit::ot_plan_sums(mv, fv, gv, reg, threshold, rs, cs, cp, np_,
                                  reinterpret_cast<void*>(stream));
        },
        py::arg("M"), py::arg("f"), py::arg("g"), py::arg("reg"), py::arg("threshold"),
        py::arg("row_sum"), py::arg("col_sum"), py::arg("cost"), py::arg("row_count"),
        py::arg("device_id"), py::arg("stream"));
    m.def(
        "ot_plan_gather",
        [](py::handle M, py::handle f, py::handle g, double reg, double threshold,
           py::handle starts, py::handle slots, std::int64_t col_offset, py::handle indices,
           py::handle values, int device_id, std::uintptr_t stream) {
            const auto mv = view_of(M, device_id, false), fv = view_of(f, device_id, false);
            const auto gv = view_of(g, device_id, false), sv = view_of(starts, device_id, false);
            const auto lv = view_of(slots, device_id, false);
            const auto iv = view_of(indices, device_id, true);
            const auto vv = view_of(values, device_id, true);
            py::gil_scoped_release release;
            curvkit::ot_plan_gather(mv, fv, gv, reg, threshold, sv, lv, col_offset, iv, vv,
                                    reinterpret_cast<void*>(stream));
        },
        py::arg("M"), py::arg("f"), py::arg("g"), py::arg("reg"), py::arg("threshold"),
        py::arg("starts"), py::arg("slots"), py::arg("col_offset"), py::arg("indices"),
        py::arg("values"),
        py::arg("device_id"), py::arg("stream"));

    py::class_<csr_handle>(m, "CsrHandle")
        .def(py::init<py::object, py::object, py::object, std::int64_t, std::int64_t, int, int>(),
             py::arg("indptr"), py::arg("indices"), py::arg("data"), py::arg("rows"),
             py::arg("cols"), py::arg("storage"), py::arg("device_id"))
        .def("matmul", &csr_handle::matmul, py::arg("x"), py::arg("y"), py::arg("stream"))
        .def("diagonal", &csr_handle::diagonal, py::arg("d"), py::arg("stream"))
        .def("greedy_coloring", &csr_handle::greedy_coloring)
        .def("check_workspace_size", &csr_handle::check_workspace_size)
        .def("check", &csr_handle::check, py::arg("workspace"), py::arg("stream"));
}
