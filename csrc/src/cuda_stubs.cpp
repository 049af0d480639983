// Stands in for the CUDA kernels in a build without CUDA: every entry point reports so.
#include "kernels.hpp"

namespace curvkit::cuda {
namespace {
[[noreturn]] void no_cuda() {
    throw error(status::unsupported,
                "this curvkit build has no CUDA kernels (rebuild with nvcc and CURVKIT_CUDA=ON)");
}
}  // namespace

template <class T, class I>
void csr_matmul(const csr_ref<T, I>&, const block_ref<const T>&, const block_ref<T>&, void*) {
    no_cuda();
}

template <class T, class I>
void csr_diagonal(const csr_ref<T, I>&, const block_ref<T>&, void*) {
    no_cuda();
}

template <class T>
void fill_rademacher(const block_ref<T>&, std::uint64_t, std::int64_t, void*) {
    no_cuda();
}

template <class T>
void fill_gaussian(const block_ref<T>&, std::uint64_t, std::int64_t, void*) {
    no_cuda();
}

template <class T>
void accumulate_probe_products(const block_ref<const T>&, const block_ref<const T>&,
                               const block_ref<T>&, const block_ref<T>&, std::int64_t, void*) {
    no_cuda();
}

template <class T>
void special_function(special_fn, const block_ref<const T>&, const block_ref<const T>&,
                      const block_ref<T>&, void*) {
    no_cuda();
}

std::size_t csr_check_workspace_size() noexcept { return 0; }

template <class I>
int csr_check(std::int64_t, std::int64_t, std::int64_t, const I*, const I*, triangle, void*,
              void*) {
    no_cuda();
}

template <class T>
void cg_start(std::int64_t, const T*, const T*, T*, T*, const T*, bool, double, double,
              const cg_state&, void*) {
    no_cuda();
}
template <class T, class I>
void cg_product_dot(const csr_ref<T, I>&, const T*, const T*, const T*, T*, T*, const cg_state&,
                    void*) {
    no_cuda();
}
template <class T>
void cg_dot_pq(std::int64_t, const T*, const T*, const cg_state&, void*) {
    no_cuda();
}
template <class T>
void cg_update_xr(std::int64_t, T*, T*, const T*, const T*, const T*, bool, const cg_state&,
                  void*) {
    no_cuda();
}
template <class T>
void cg_dot_rz(std::int64_t, const T*, const T*, bool, const cg_state&, void*) {
    no_cuda();
}
template <class T>
void cg_update_p(std::int64_t, T*, const T*, const T*, const cg_state&, void*) {
    no_cuda();
}
template <class T>
void cg_finish(std::int64_t, const T*, const T*, T*, const cg_state&, void*) {
    no_cuda();
}
void zero_bytes(void*, std::size_t, void*) { no_cuda(); }
void copy_to_host(void*, const void*, std::size_t, void*) { no_cuda(); }

device_guard::device_guard(int) { no_cuda(); }
device_guard::~device_guard() = default;

int device_count() noexcept { return 0; }
bool device_properties(int, char*, std::size_t, int*, int*, std::size_t*) noexcept {
    return false;
}
int runtime_version() noexcept { return 0; }

template void csr_matmul(const csr_ref<float, std::int32_t>&, const block_ref<const float>&,
                         const block_ref<float>&, void*);
template void csr_matmul(const csr_ref<float, std::int64_t>&, const block_ref<const float>&,
                         const block_ref<float>&, void*);
template void csr_matmul(const csr_ref<double, std::int32_t>&, const block_ref<const double>&,
                         const block_ref<double>&, void*);
template void csr_matmul(const csr_ref<double, std::int64_t>&, const block_ref<const double>&,
                         const block_ref<double>&, void*);
template void csr_diagonal(const csr_ref<float, std::int32_t>&, const block_ref<float>&, void*);
template void csr_diagonal(const csr_ref<float, std::int64_t>&, const block_ref<float>&, void*);
template void csr_diagonal(const csr_ref<double, std::int32_t>&, const block_ref<double>&, void*);
template void csr_diagonal(const csr_ref<double, std::int64_t>&, const block_ref<double>&, void*);
template void fill_gaussian(const block_ref<float>&, std::uint64_t, std::int64_t, void*);
template void fill_gaussian(const block_ref<double>&, std::uint64_t, std::int64_t, void*);
template void fill_rademacher(const block_ref<float>&, std::uint64_t, std::int64_t, void*);
template void fill_rademacher(const block_ref<double>&, std::uint64_t, std::int64_t, void*);
template void accumulate_probe_products(const block_ref<const float>&,
                                        const block_ref<const float>&, const block_ref<float>&,
                                        const block_ref<float>&, std::int64_t, void*);
template void accumulate_probe_products(const block_ref<const double>&,
                                        const block_ref<const double>&, const block_ref<double>&,
                                        const block_ref<double>&, std::int64_t, void*);
template void special_function(special_fn, const block_ref<const float>&,
                               const block_ref<const float>&, const block_ref<float>&, void*);
template void special_function(special_fn, const block_ref<const double>&,
                               const block_ref<const double>&, const block_ref<double>&, void*);
template int csr_check(std::int64_t, std::int64_t, std::int64_t, const std::int32_t*,
                       const std::int32_t*, triangle, void*, void*);
template int csr_check(std::int64_t, std::int64_t, std::int64_t, const std::int64_t*,
                       const std::int64_t*, triangle, void*, void*);

#define CURVKIT_CG_STUBS(T)                                                                      \
    template void cg_start(std::int64_t, const T*, const T*, T*, T*, const T*, bool, double,    \
                           double, const cg_state&, void*);                                       \
    template void cg_product_dot(const csr_ref<T, std::int32_t>&, const T*, const T*, const T*,  \
                                 T*, T*, const cg_state&, void*);                                 \
    template void cg_product_dot(const csr_ref<T, std::int64_t>&, const T*, const T*, const T*,  \
                                 T*, T*, const cg_state&, void*);                                 \
    template void cg_dot_pq(std::int64_t, const T*, const T*, const cg_state&, void*);            \
    template void cg_update_xr(std::int64_t, T*, T*, const T*, const T*, const T*, bool,         \
                               const cg_state&, void*);                                           \
    template void cg_dot_rz(std::int64_t, const T*, const T*, bool, const cg_state&, void*);      \
    template void cg_update_p(std::int64_t, T*, const T*, const T*, const cg_state&, void*);      \
    template void cg_finish(std::int64_t, const T*, const T*, T*, const cg_state&, void*);
CURVKIT_CG_STUBS(float)
CURVKIT_CG_STUBS(double)
#undef CURVKIT_CG_STUBS

template <class T>
void ot_lse_update(std::int64_t, std::int64_t, std::int64_t, const T*, const T*, const T*, T, T*,
                   T*, T*, void*) {
    no_cuda();
}
template <class T>
void ot_sinkhorn_batch(std::int64_t, std::int64_t, std::int64_t, const T*, const T*, const T*,
                       const T*, T, std::int64_t, T, std::int64_t, T*, T*, std::int64_t*, T*,
                       void*) {
    no_cuda();
}
template <class T>
void ot_plan_sums(std::int64_t, std::int64_t, const T*, const T*, const T*, T, T, T*, T*, T*,
                  std::int64_t*, void*) {
    no_cuda();
}
template <class T>
void ot_plan_gather(std::int64_t, std::int64_t, const T*, const T*, const T*, T, T,
                    const std::int64_t*, const std::int64_t*, std::int64_t, std::int64_t*, T*,
                    void*) {
    no_cuda();
}
#define CURVKIT_OT_STUBS(T)                                                                       \
    template void ot_lse_update(std::int64_t, std::int64_t, std::int64_t, const T*, const T*,    \
                                const T*, T, T*, T*, T*, void*);                                  \
    template void ot_sinkhorn_batch(std::int64_t, std::int64_t, std::int64_t, const T*,         \
                                    const T*, const T*, const T*, T, std::int64_t, T,             \
                                    std::int64_t, T*, T*, std::int64_t*, T*, void*);              \
    template void ot_plan_sums(std::int64_t, std::int64_t, const T*, const T*, const T*, T, T,   \
                               T*, T*, T*, std::int64_t*, void*);                                 \
    template void ot_plan_gather(std::int64_t, std::int64_t, const T*, const T*, const T*, T, T, \
                                 const std::int64_t*, const std::int64_t*, std::int64_t,         \
                                 std::int64_t*, T*, void*);
CURVKIT_OT_STUBS(float)
CURVKIT_OT_STUBS(double)
#undef CURVKIT_OT_STUBS

}  // namespace curvkit::cuda
