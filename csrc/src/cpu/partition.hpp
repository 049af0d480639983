// Splitting CSR rows and vectors among OpenMP threads (internal to the CPU kernels).
#pragma once

#include <omp.h>

#include <cstdint>
#include <utility>

#include "cpu/threads.hpp"

namespace curvkit::cpu {

// Rows [first, last) for thread t of nt, balanced by entries + rows so that skewed row
// lengths do not leave one thread with most of the work.
template <class I>
inline std::pair<std::int64_t, std::int64_t> row_range(const I* indptr, std::int64_t rows, int t,
                                                      int nt) {
    const std::int64_t base = indptr[0];
    const std::int64_t total = (static_cast<std::int64_t>(indptr[rows]) - base) + rows;
    auto split = [&](int s) -> std::int64_t {
        if (s <= 0) return 0;
        if (s >= nt) return rows;
        const std::int64_t target = total / nt * s + total % nt * s / nt;
        std::int64_t lo = 0, hi = rows;
        while (lo < hi) {  // first row whose prefix work reaches the target
            const std::int64_t mid = lo + (hi - lo) / 2;
            if (static_cast<std::int64_t>(indptr[mid]) - base + mid < target) lo = mid + 1;
            else hi = mid;
        }
        return lo;
    };
    return {split(t), split(t + 1)};
}

/// Runs body(t, nt) on each thread of a parallel region (one thread when `work` is small).
template <class F>
inline void for_each_thread(std::int64_t work, F&& body) {
#pragma omp parallel if (use_threads(work))
    body(omp_get_thread_num(), omp_get_num_threads());
}

}  // namespace curvkit::cpu
