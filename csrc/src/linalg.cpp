// Public CG API: validation, workspace layout, and the one CG loop for every device and operator.
#include "curvkit/linalg.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <utility>
#include <string>
#include <vector>

#include "cg_steps.hpp"
#include "checks.hpp"
#include "dispatch.hpp"
#include "kernels.hpp"

namespace curvkit {
namespace {

using namespace detail;
using i64 = std::int64_t;

constexpr i64 default_check_every = 32;

i64 ring_rows_for(device_kind device, const cg_options& o) {
    if (device == device_kind::cpu) return 2;
    return (o.check_every > 0 ? o.check_every : default_check_every) + 1;
}

std::size_t round8(std::size_t bytes) { return (bytes + 7) / 8 * 8; }

// Workspace: the head (norms, flags, counts, residual ring) is what the host reads back, in one
// copy; then the step scalars and, for CUDA, the reduction scratch.
struct layout {
    std::size_t head = 0, total = 0;
    std::size_t rr = 0, tol = 0, true_rr = 0, iterations = 0, status = 0, ring = 0;
    std::size_t rz = 0, alpha = 0, beta = 0, counters = 0, partials = 0;
    std::size_t direction = 0;  // second buffer for p (k = 1): the fused step writes p' beside p
};

layout layout_for(device_kind device, i64 n, i64 k, i64 ring_rows) {
    layout L;
    std::size_t at = 0;
    const auto ku = static_cast<std::size_t>(k);
    auto take = [&](std::size_t& field, std::size_t bytes) {
        field = at;
        at += round8(bytes);
    };
    take(L.rr, ku * 8);
    take(L.tol, ku * 8);
    take(L.true_rr, ku * 8);
    take(L.iterations, ku * 8);
    take(L.status, ku * 4);
    take(L.ring, static_cast<std::size_t>(ring_rows) * ku * 8);
    L.head = at;
    take(L.rz, ku * 8);
    take(L.alpha, ku * 8);
    take(L.beta, ku * 8);
    if (device == device_kind::cuda) {
        take(L.counters, (ku + 1) * sizeof(unsigned));
        take(L.partials, static_cast<std::size_t>(cg_max_blocks) * ku * 3 * 8);
    }
    if (k == 1) take(L.direction, static_cast<std::size_t>(n) * 8);
    L.total = at;
    return L;
}

cg_state carve(void* ws, const layout& L, i64 k, i64 ring_rows) {
    auto* base = static_cast<char*>(ws);
    cg_state s;
    s.k = k;
    s.rr = reinterpret_cast<double*>(base + L.rr);
    s.tol = reinterpret_cast<double*>(base + L.tol);
    s.true_rr = reinterpret_cast<double*>(base + L.true_rr);
    s.iterations = reinterpret_cast<i64*>(base + L.iterations);
    s.status = reinterpret_cast<std::int32_t*>(base + L.status);
    s.ring = reinterpret_cast<double*>(base + L.ring);
    s.ring_rows = ring_rows;
    s.rz = reinterpret_cast<double*>(base + L.rz);
    s.alpha = reinterpret_cast<double*>(base + L.alpha);
    s.beta = reinterpret_cast<double*>(base + L.beta);
    if (L.partials != 0) {
        s.counters = reinterpret_cast<unsigned*>(base + L.counters);
        s.partials = reinterpret_cast<double*>(base + L.partials);
    }
    return s;
}

// The host's copy of the workspace head, refreshed at each convergence check.
struct host_head {
    std::vector<double> buf;
    cg_state s;  // pointers into buf, same layout as the device head
    host_head(const layout& L, i64 k, i64 ring_rows) : buf(L.head / 8) {
        s = carve(buf.data(), L, k, ring_rows);
    }
};

// Forwards each kernel to the device holding the data.
template <class T>
struct kernels {
    device_kind dev;
    void* stream;
    bool gpu() const { return dev == device_kind::cuda; }

    void start(i64 n, const T* b, const T* ax, T* r, T* p, const T* d, bool has_rz, double rtol,
               double atol, const cg_state& s) const {
        gpu() ? cuda::cg_start(n, b, ax, r, p, d, has_rz, rtol, atol, s, stream)
              : cpu::cg_start(n, b, ax, r, p, d, has_rz, rtol, atol, s);
    }
    void dot_pq(i64 n, const T* p, const T* q, const cg_state& s) const {
        gpu() ? cuda::cg_dot_pq(n, p, q, s, stream) : cpu::cg_dot_pq(n, p, q, s);
    }
    void update_xr(i64 n, T* x, T* r, const T* p, const T* q, const T* d, bool has_rz,
                   const cg_state& s) const {
        gpu() ? cuda::cg_update_xr(n, x, r, p, q, d, has_rz, s, stream)
              : cpu::cg_update_xr(n, x, r, p, q, d, has_rz, s);
    }
    void dot_rz(i64 n, const T* r, const T* z, bool first, const cg_state& s) const {
        gpu() ? cuda::cg_dot_rz(n, r, z, first, s, stream) : cpu::cg_dot_rz(n, r, z, first, s);
    }
    void update_p(i64 n, T* p, const T* src, const T* d, const cg_state& s) const {
        gpu() ? cuda::cg_update_p(n, p, src, d, s, stream) : cpu::cg_update_p(n, p, src, d, s);
    }
    void finish(i64 n, const T* b, const T* ax, T* x, const cg_state& s) const {
        gpu() ? cuda::cg_finish(n, b, ax, x, s, stream) : cpu::cg_finish(n, b, ax, x, s);
    }
    void read_head(void* dst, const void* src, std::size_t bytes) const {
        if (gpu()) cuda::copy_to_host(dst, src, bytes, stream);
        else std::memcpy(dst, src, bytes);
    }
};

// The operator as the loop sees it: apply(0) is q = A p, apply(1) is q = A x. For a CSR matrix
// and k = 1: product_dot(p, p_next, stream) is q = A p with p^T q (p_next null), or, where the
// rows are short enough for their gathers to hit cache, the whole step p' = M r + beta p,
// q = A p', p'^T q (`fuse_next`).
struct operator_hooks {
    std::function<void(int)> apply;
    std::function<void(const void* p, void* p_next, void* stream)> product_dot;
    bool fuse_next = false;
};

// The CG loop, written once.
template <class T>
void run(const kernels<T>& K, const operator_hooks& A, const cg_blocks& v, const cg_options& o,
         const cg_callbacks& cb, const layout& L, void* workspace, cg_column_report* reports,
         std::vector<double>* history) {
    const i64 n = v.b.rows, k = v.b.cols;
    const i64 ring_rows = ring_rows_for(K.dev, o);
    const i64 check_every = ring_rows - 1;
    const i64 maxiter = o.maxiter < 0 ? 10 * n : o.maxiter;
    const cg_state s = carve(workspace, L, k, ring_rows);
    host_head h(L, k, ring_rows);

    T* x = static_cast<T*>(v.x.data);
    T* r = static_cast<T*>(v.r.data);
    T* p = static_cast<T*>(v.p.data);
    T* q = static_cast<T*>(v.q.data);
    T* z = static_cast<T*>(v.z.data);
    const T* b = static_cast<const T*>(v.b.data);
    const bool callback_m = cb.precondition != nullptr;
    const T* d = callback_m ? nullptr : static_cast<const T*>(v.inv_diag.data);
    const bool has_rz = !callback_m;  // r^T M^-1 r comes with the residual pass
    const bool fused = A.product_dot && A.fuse_next && !callback_m;
    T* p_cur = p;  // the fused step alternates p between the caller's block and the workspace
    T* p_alt = reinterpret_cast<T*>(static_cast<char*>(workspace) + L.direction);

    if (history) history->clear();
    i64 recorded = -1;  // last iteration whose residual norms are in `history`
    auto check = [&](i64 done) {
        K.read_head(h.buf.data(), workspace, L.head);
        bool any_active = false;
        for (i64 j = 0; j < k; ++j) any_active |= h.s.status[j] == cg_step::active;
        if (history) {
            for (i64 m = recorded + 1; m <= done; ++m)
                for (i64 j = 0; j < k; ++j)
                    history->push_back(m <= h.s.iterations[j]
                                           ? h.s.ring[(m % ring_rows) * k + j]
                                           : std::numeric_limits<double>::quiet_NaN());
        }
        recorded = done;
        return any_active;
    };

    if (K.gpu()) {  // counters start at zero; the head is defined before its first read
        cuda::zero_bytes(workspace, L.head, K.stream);
        cuda::zero_bytes(static_cast<char*>(workspace) + L.counters,
                         static_cast<std::size_t>(k + 1) * sizeof(unsigned), K.stream);
    }
    A.apply(1);
    K.start(n, b, q, r, p, d, has_rz, o.rtol, o.atol, s);
    if (callback_m) {
        cb.precondition(cb.user);
        K.dot_rz(n, r, z, true, s);
    }
    if (!fused) K.update_p(n, p, callback_m ? z : r, d, s);  // the fused step starts from p = 0
    i64 done = 0;
    bool running = check(0);
    while (running && done < maxiter) {
        if (fused) {
            A.product_dot(p_cur, p_alt, K.stream);
            std::swap(p_cur, p_alt);
        } else if (A.product_dot) {
            A.product_dot(p, nullptr, K.stream);
        } else {
            A.apply(0);
            K.dot_pq(n, p, q, s);
        }
        K.update_xr(n, x, r, p_cur, q, d, has_rz, s);
        if (callback_m) {
            cb.precondition(cb.user);
            K.dot_rz(n, r, z, false, s);
        }
        if (!fused) K.update_p(n, p, callback_m ? z : r, d, s);
        ++done;
        if (cb.iteration_done) cb.iteration_done(cb.user, done);
        if (done % check_every == 0 || done == maxiter || cb.iteration_done) running = check(done);
    }
    A.apply(1);
    K.finish(n, b, q, x, s);
    check(done);

    i64 last = 0;
    for (i64 j = 0; j < k; ++j) {
        cg_column_report& rep = reports[j];
        rep.iterations = h.s.iterations[j];
        rep.residual_norm = std::sqrt(h.s.rr[j]);
        rep.true_residual_norm = std::sqrt(h.s.true_rr[j]);
        rep.tolerance = h.s.tol[j];
        switch (h.s.status[j]) {
            case cg_step::active: rep.reason = cg_reason::maxiter; break;
            case cg_step::breakdown: rep.reason = cg_reason::breakdown; break;
            case cg_step::zero_rhs:
                rep.reason = cg_reason::converged;
                rep.residual_norm = rep.true_residual_norm = 0.0;
                break;
            default: rep.reason = cg_reason::converged; break;
        }
        last = std::max(last, rep.iterations);
    }
    if (history) history->resize(static_cast<std::size_t>((last + 1) * k));
}

bool contiguous_block(const dense_view& v, i64 n, i64 k) {
    if (v.rows != n || v.cols != k) return false;
    if (k == 1) return v.row_stride == 1 || n <= 1;
    return v.col_stride == 1 && (v.row_stride == k || n <= 1);
}

void check_blocks(const csr_view* A, const cg_blocks& v, const cg_callbacks& cb) {
    const i64 n = v.b.rows, k = v.b.cols;
    check_dense(v.b, "b");
    struct named {
        const dense_view* view;
        const char* name;
        bool written;
    };
    std::vector<named> blocks = {{&v.b, "b", false}, {&v.x, "x", true}, {&v.r, "r", true},
                                 {&v.p, "p", true},  {&v.q, "q", true}};
    if (cb.precondition) blocks.push_back({&v.z, "z", true});
    for (const auto& blk : blocks) {
        check_dense(*blk.view, blk.name);
        if (blk.view->device != v.b.device || blk.view->device_id != v.b.device_id)
            fail(status::invalid_type, std::string(blk.name) + " is not on the device of b");
        if (blk.view->dtype != v.b.dtype)
            fail(status::invalid_type, std::string(blk.name) + " does not have the dtype of b");
        if (blk.view->ndim != v.b.ndim || !contiguous_block(*blk.view, n, k))
            fail(status::invalid_value, std::string(blk.name) + " must be a C-contiguous " +
                                            shape_of(v.b) + " block like b, got " +
                                            shape_of(*blk.view));
    }
    for (std::size_t i = 0; i < blocks.size(); ++i)
        for (std::size_t j = i + 1; j < blocks.size(); ++j) {
            if (!blocks[i].written && !blocks[j].written) continue;
            const auto [alo, ahi] = extent(*blocks[i].view);
            const auto [blo, bhi] = extent(*blocks[j].view);
            if (alo < bhi && blo < ahi)
                fail(status::invalid_value, std::string(blocks[i].name) + " and " +
                                                blocks[j].name + " must not overlap");
        }
    if (v.b.dtype != scalar_type::f32 && v.b.dtype != scalar_type::f64)
        fail(status::invalid_type, "b must be float32 or float64");
    if (v.inv_diag.data != nullptr) {
        check_dense(v.inv_diag, "inv_diag");
        if (v.inv_diag.ndim != 1 || v.inv_diag.rows != n ||
            (n > 1 && v.inv_diag.row_stride != 1))
            fail(status::invalid_value, "inv_diag must be a contiguous vector of n entries");
        if (v.inv_diag.dtype != v.b.dtype || v.inv_diag.device != v.b.device ||
            v.inv_diag.device_id != v.b.device_id)
            fail(status::invalid_type, "inv_diag must have the dtype and device of b");
    }
    if (A == nullptr) {
        if (cb.apply == nullptr) fail(status::invalid_value, "cg_solve needs a matrix or an apply callback");
        return;
    }
    if (A->rows != n || A->cols != n)
        fail(status::invalid_value, "the matrix must be square with as many rows as b: got " +
                                        std::to_string(A->rows) + " x " + std::to_string(A->cols) +
                                        " and b " + shape_of(v.b));
    if (A->value_dtype != v.b.dtype)
        fail(status::invalid_type, "the matrix and b must share one value dtype");
    if (A->device != v.b.device || A->device_id != v.b.device_id)
        fail(status::invalid_type, "the matrix and b must live on the same device");
}

void check_options(const cg_options& o) {
    if (!(o.rtol >= 0) || !(o.atol >= 0) || !std::isfinite(o.rtol) || !std::isfinite(o.atol))
        fail(status::invalid_value, "rtol and atol must be finite and non-negative");
    if (o.maxiter < -1) fail(status::invalid_value, "maxiter must be non-negative");
    if (o.check_every < 0) fail(status::invalid_value, "check_every must be non-negative");
}

}  // namespace

std::size_t cg_workspace_size(device_kind device, std::int64_t n, std::int64_t k,
                              const cg_options& options) {
    return layout_for(device, n, k, ring_rows_for(device, options)).total;
}

void cg_solve(const csr_view* A, const cg_blocks& v, const cg_options& o, const cg_callbacks& cb,
              void* workspace, std::size_t bytes, cg_column_report* reports,
              std::vector<double>* history, void* stream) {
    check_options(o);
    check_blocks(A, v, cb);
    const i64 n = v.b.rows, k = v.b.cols;
    const device_kind dev = v.b.device;
    const layout L = layout_for(dev, n, k, ring_rows_for(dev, o));
    if (workspace == nullptr || bytes < L.total)
        fail(status::invalid_value, "cg_solve needs cg_workspace_size() = " +
                                        std::to_string(L.total) + " bytes of workspace");
    if (reports == nullptr) fail(status::invalid_value, "reports is null");
    if (k == 0) return;

    detail::with_value_type(v.b.dtype, [&](auto vt) {
        using T = typename decltype(vt)::type;
        const kernels<T> K{dev, stream};
        operator_hooks hooks;
        T* x = static_cast<T*>(v.x.data);
        T* p = static_cast<T*>(v.p.data);
        T* q = static_cast<T*>(v.q.data);
        const block_ref<const T> xb{x, n, k, k, 1}, pb{p, n, k, k, 1};
        const block_ref<T> qb{q, n, k, k, 1};
        std::unique_ptr<cuda::device_guard> guard;
        if (dev == device_kind::cuda) guard = std::make_unique<cuda::device_guard>(v.b.device_id);
        auto go = [&] {
            run<T>(K, hooks, v, o, cb, L, workspace, reports, history);
        };
        if (A == nullptr) {
            hooks.apply = [&](int which) { cb.apply(cb.user, which); };
            go();
            return;
        }
        detail::with_index_type(A->index_dtype, [&](auto it) {
            using I = typename decltype(it)::type;
            const csr_ref<T, I> a{A->rows,
                                  A->cols,
                                  A->nnz,
                                  static_cast<const I*>(A->indptr),
                                  static_cast<const I*>(A->indices),
                                  static_cast<const T*>(A->values),
                                  A->storage};
            hooks.apply = [&](int which) {
                const block_ref<const T>& in = which == 0 ? pb : xb;
                if (dev == device_kind::cuda) cuda::csr_matmul(a, in, qb, stream);
                else cpu::csr_matmul(a, in, qb);
            };
            if (k == 1 && A->storage == triangle::full) {
                const cg_state s = carve(workspace, L, k, ring_rows_for(dev, o));
                const T* r = static_cast<const T*>(v.r.data);
                const T* d = static_cast<const T*>(v.inv_diag.data);
                // On a GPU, short rows (stencils) read their neighbours' r and p from cache, and
                // the step saves a pass; long, scattered rows would pay two or three scattered
                // loads per entry. A CPU core pays for it in arithmetic instead (p'_j recomputed
                // for each of a row's entries, not vectorised) and measured no faster with it.
                hooks.fuse_next = dev == device_kind::cuda && A->nnz <= 8 * A->rows;
                hooks.product_dot = [&, s, r, d](const void* cur, void* next, void* on) {
                    const auto* pc = static_cast<const T*>(cur);
                    auto* pn = static_cast<T*>(next);
                    if (dev == device_kind::cuda) cuda::cg_product_dot(a, r, d, pc, pn, q, s, on);
                    else cpu::cg_product_dot(a, r, d, pc, pn, q, s);
                };
            }
            go();
        });
    });
}

}  // namespace curvkit
