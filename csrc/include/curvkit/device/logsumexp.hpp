// Streaming log-sum-exp: one pass, one exp per term, exact for -inf terms; shared by the CPU
// and CUDA entropic transport kernels.
#pragma once

#include <cmath>
#include <limits>

#include "curvkit/device/macros.hpp"

namespace curvkit::device {

/// Running (max, sum) with log(sum exp(x_k)) = max + log(sum): adding a term rescales the sum
/// only when the maximum moves, so no exp ever overflows.
template <class T>
struct lse_accumulator {
    T max = -std::numeric_limits<T>::infinity();
    T sum = T(0);

    CURVKIT_HD void add(T x) {
        using std::exp;
        if (x > max) {
            // max = -inf gives exp(-inf) = 0: the empty sum is dropped, not turned into NaN.
            sum = sum * exp(max - x) + T(1);
            max = x;
        } else if (max > -std::numeric_limits<T>::infinity()) {
            sum += exp(x - max);
        }
    }

    CURVKIT_HD void merge(const lse_accumulator& o) {
        using std::exp;
        if (o.max > max) {
            sum = o.sum + sum * exp(max - o.max);
            max = o.max;
        } else if (o.max > -std::numeric_limits<T>::infinity()) {
            sum += o.sum * exp(o.max - max);
        }
    }

    /// log(sum exp(x_k)); -inf for no terms or only -inf terms.
    CURVKIT_HD T value() const {
        using std::log;
        return max + log(sum);
    }
};

/// log(sum_k exp(x_k)) of n terms read through `at(k)`.
template <class T, class F>
CURVKIT_HD T logsumexp(long long n, F&& at) {
    lse_accumulator<T> acc;
    for (long long k = 0; k < n; ++k) acc.add(at(k));
    return acc.value();
}

}  // namespace curvkit::device
