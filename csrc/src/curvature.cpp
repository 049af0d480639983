// Public probe API: argument validation, then the device x dtype dispatch to the kernels.
#include "curvkit/curvature.hpp"

#include <string>

#include "checks.hpp"
#include "dispatch.hpp"
#include "kernels.hpp"

namespace curvkit {
namespace {

using namespace detail;

void check_same_place(const dense_view& a, const dense_view& b, const char* what) {
    if (a.device != b.device || a.device_id != b.device_id)
        fail(status::invalid_type, std::string(what) + " must live on the device of Z");
    if (a.dtype != b.dtype)
        fail(status::invalid_type, std::string(what) + " must have the dtype of Z");
}

}  // namespace

namespace {

// Checks a probe block, then runs the CPU or CUDA fill for its value type.
template <class Cpu, class Cuda>
void fill_probes(const dense_view& Z, std::int64_t first_probe, Cpu&& on_cpu, Cuda&& on_cuda) {
    check_dense(Z, "Z");
    if (first_probe < 0) fail(status::invalid_value, "first_probe must be non-negative");
    if (!distinct_elements(Z)) fail(status::invalid_value, "Z has overlapping elements");
    with_value_type(Z.dtype, [&](auto vt) {
        using T = typename decltype(vt)::type;
        if (Z.device == device_kind::cpu) {
            on_cpu(typed<T>(Z));
        } else {
            cuda::device_guard guard(Z.device_id);
            on_cuda(typed<T>(Z));
        }
    });
}

}  // namespace

void fill_rademacher(const dense_view& Z, std::uint64_t seed, std::int64_t first_probe,
                     void* stream) {
    fill_probes(
        Z, first_probe, [&](auto z) { cpu::fill_rademacher(z, seed, first_probe); },
        [&](auto z) { cuda::fill_rademacher(z, seed, first_probe, stream); });
}

void fill_gaussian(const dense_view& Z, std::uint64_t seed, std::int64_t first_probe,
                   void* stream) {
    fill_probes(
        Z, first_probe, [&](auto z) { cpu::fill_gaussian(z, seed, first_probe); },
        [&](auto z) { cuda::fill_gaussian(z, seed, first_probe, stream); });
}

void accumulate_probe_products(const dense_view& Z, const dense_view& HZ, const dense_view& mean,
                               const dense_view& m2, std::int64_t count, void* stream) {
    check_dense(Z, "Z");
    check_dense(HZ, "HZ");
    check_dense(mean, "mean");
    check_dense(m2, "m2");
    check_same_place(HZ, Z, "HZ");
    check_same_place(mean, Z, "mean");
    check_same_place(m2, Z, "m2");
    if (HZ.rows != Z.rows || HZ.cols != Z.cols)
        fail(status::invalid_value, "HZ has shape " + shape_of(HZ) + ", Z " + shape_of(Z));
    if (mean.ndim != 1 || m2.ndim != 1 || mean.rows != Z.rows || m2.rows != Z.rows)
        fail(status::invalid_value, "mean and m2 must be vectors with one entry per row of Z");
    if (count < 0) fail(status::invalid_value, "count must be non-negative");
    const auto [mlo, mhi] = extent(mean);
    const auto [slo, shi] = extent(m2);
    if (!distinct_elements(mean) || !distinct_elements(m2) || (mlo < shi && slo < mhi))
        fail(status::invalid_value, "mean and m2 must be distinct, non-overlapping vectors");
    with_value_type(Z.dtype, [&](auto vt) {
        using T = typename decltype(vt)::type;
        const block_ref<const T> z = typed<const T>(Z), hz = typed<const T>(HZ);
        if (Z.device == device_kind::cpu) {
            cpu::accumulate_probe_products(z, hz, typed<T>(mean), typed<T>(m2), count);
        } else {
            cuda::device_guard guard(Z.device_id);
            cuda::accumulate_probe_products(z, hz, typed<T>(mean), typed<T>(m2), count, stream);
        }
    });
}

std::int64_t greedy_coloring(const csr_view& pattern, std::int32_t* colors) {
    if (pattern.device != device_kind::cpu)
        fail(status::invalid_type, "greedy_coloring needs a host (CPU) pattern");
    if (pattern.rows != pattern.cols || pattern.rows < 0)
        fail(status::invalid_value, "greedy_coloring needs a square pattern");
    if (pattern.rows > 0 && colors == nullptr) fail(status::invalid_value, "colors is null");
    return with_index_type(pattern.index_dtype, [&](auto it) {
        using I = typename decltype(it)::type;
        return cpu::greedy_coloring(pattern.rows, static_cast<const I*>(pattern.indptr),
                                    static_cast<const I*>(pattern.indices), colors);
    });
}

}  // namespace curvkit
