// CUDA CG kernels: fused vector passes with deterministic column reductions whose last block
// applies the scalar step (cg_steps.hpp) on the device, so the loop never waits for the host.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "cg_steps.hpp"
#include "cuda_check.cuh"
#include "kernels.hpp"
#include "launch.cuh"
#include "spmv_vector.cuh"

namespace curvkit::cuda {
namespace {

using i64 = std::int64_t;
using detail::cuda_check;
using detail::cuda_check_launch;
using launch::block_size;

// The n x k block is walked by a virtual grid of cw columns (k rounded up to a power of two,
// at most one block wide) times block_size / cw rows per block; blockIdx.y picks a tile of cw
// columns when k > block_size. A power-of-two cw lets a block's tree reduction keep columns
// apart: threads t and t + s share a column whenever s is a multiple of cw.
struct columns {
    int cw;
    unsigned tiles;
};

columns columns_for(i64 k) {
    int cw = 1;
    while (cw < k && cw < block_size) {
        cw *= 2;
    }
    return {cw, static_cast<unsigned>((k + cw - 1) / cw)};
}

// Enough blocks for every SM to hold several, capped at the partials' capacity; the reduction
// kernels loop over the rest.
unsigned reduction_blocks(i64 rows, int rows_per_block) {
    static thread_local int cached_device = -1;
    static thread_local int sms = 0;
    int dev = 0;
    cuda_check(cudaGetDevice(&dev), "cudaGetDevice");
    if (dev != cached_device) {
        cuda_check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev),
                   "cudaDeviceGetAttribute");
        cached_device = dev;
    }
    const i64 want = (rows + rows_per_block - 1) / rows_per_block;
    const i64 cap = std::min<i64>(cg_max_blocks, 8 * static_cast<i64>(sms));
    return static_cast<unsigned>(std::clamp<i64>(want, 1, cap));
}

/// Calls f(i, j) for this thread's elements of column j.
template <class F>
__device__ __forceinline__ void for_rows(i64 n, i64 k, int cw, F f) {
    const i64 j = static_cast<i64>(blockIdx.y) * cw + threadIdx.x % cw;
    if (j >= k) {
        return;
    }
    const int per_block = block_size / cw;
    const i64 step = static_cast<i64>(gridDim.x) * per_block;
    for (i64 i = static_cast<i64>(blockIdx.x) * per_block + threadIdx.x / cw; i < n; i += step) {
        f(i, j);
    }
}

/// Tree sum of v over the threads of each column; results in sh[r][0..cw).
template <int NR>
__device__ __forceinline__ void block_columns_sum(const double (&v)[NR],
                                                  double (*sh)[block_size], int cw) {
    const int t = threadIdx.x;
#pragma unroll
    for (int r = 0; r < NR; ++r) {
        sh[r][t] = v[r];
    }
    __syncthreads();
    for (int s = block_size / 2; s >= cw; s /= 2) {
        if (t < s) {
#pragma unroll
            for (int r = 0; r < NR; ++r) {
                sh[r][t] += sh[r][t + s];
            }
        }
        __syncthreads();
    }
}

/// Column sums over the whole grid, in a fixed order (bitwise reproducible): each block leaves
/// its sums in the partials, and the last block of a column tile to finish adds them up and
/// calls fin(j, sums) for each column j of the tile. Every thread of the block must call it.
template <int NR, class Fin>
__device__ void reduce_columns(const double (&acc)[NR], const cg_state& s, int cw, Fin fin) {
    __shared__ double sh[NR][block_size];
    __shared__ bool last;
    const int t = threadIdx.x;
    const i64 k = s.k;
    block_columns_sum<NR>(acc, sh, cw);
    const i64 j = static_cast<i64>(blockIdx.y) * cw + t;
    if (t < cw && j < k) {
#pragma unroll
        for (int r = 0; r < NR; ++r) {
            s.partials[(static_cast<i64>(blockIdx.x) * k + j) * NR + r] = sh[r][t];
        }
        __threadfence();  // the partials are visible before this block is counted
    }
    __syncthreads();
    if (t == 0) {
        last = atomicAdd(&s.counters[blockIdx.y], 1u) == gridDim.x - 1;
    }
    __syncthreads();
    if (!last) {
        return;
    }
    const i64 jj = static_cast<i64>(blockIdx.y) * cw + t % cw;
    double total[NR] = {};
    if (jj < k) {
        for (unsigned b = t / cw; b < gridDim.x; b += block_size / cw) {
#pragma unroll
            for (int r = 0; r < NR; ++r) {
                total[r] += __ldcg(&s.partials[(static_cast<i64>(b) * k + jj) * NR + r]);
            }
        }
    }
    block_columns_sum<NR>(total, sh, cw);
    if (t < cw && j < k) {
        double v[NR];
#pragma unroll
        for (int r = 0; r < NR; ++r) {
            v[r] = sh[r][t];
        }
        fin(j, v);
    }
    if (t == 0) {
        s.counters[blockIdx.y] = 0u;  // ready for the next reduction on this stream
    }
}

__device__ __forceinline__ bool all_stopped_single(const cg_state& s) {
    return s.k == 1 && s.status[0] != cg_step::active;
}

template <class T>
__global__ void __launch_bounds__(block_size)
    start_kernel(i64 n, const T* __restrict__ b, const T* __restrict__ ax, T* __restrict__ r,
                 T* __restrict__ p, const T* __restrict__ inv_diag, bool has_rz, double rtol,
                 double atol, cg_state s, int cw) {
    double acc[3] = {0.0, 0.0, 0.0};
    const i64 k = s.k;
    for_rows(n, k, cw, [&](i64 i, i64 j) {
        const i64 e = i * k + j;
        const double bi = static_cast<double>(b[e]);
        const double ri = bi - static_cast<double>(ax[e]);
        r[e] = static_cast<T>(ri);
        p[e] = T(0);
        acc[0] += ri * ri;
        acc[1] += bi * bi;
        acc[2] += inv_diag != nullptr ? ri * ri * static_cast<double>(inv_diag[i]) : ri * ri;
    });
    reduce_columns<3>(acc, s, cw, [&](i64 j, const double* v) {
        cg_step::started(s, j, v[0], v[1], v[2], has_rz, rtol, atol);
    });
}

/// Ops of CG's product step. Next: the next direction p' = M r + beta p is evaluated for every
/// gathered j (the same expression as its own row's, so bitwise the value stored there), then
/// q = A p' and p'^T q: this saves update_p's pass and launch where gathers hit cache (short,
/// local rows), and costs two or three scattered loads per entry instead of one elsewhere.
/// Without Next: q = A p and p^T q. Then alpha.
template <bool Next, class T>
struct direction_product {
    const T* __restrict__ r;
    const T* __restrict__ inv_diag;
    const T* __restrict__ p;
    T* __restrict__ p_next;
    T* __restrict__ q;
    cg_state s;
    T beta;
    double dot;
    __device__ __forceinline__ bool skip() const { return s.status[0] != cg_step::active; }
    __device__ __forceinline__ void prepare() {
        beta = static_cast<T>(s.beta[0]);
        dot = 0.0;
    }
    __device__ __forceinline__ T load(i64 j) const {
        if (!Next) {
            return p[j];
        }
        return (inv_diag != nullptr ? inv_diag[j] * r[j] : r[j]) + beta * p[j];
    }
    __device__ __forceinline__ void store(i64 row, T v) {
        const T next = load(row);
        if (Next) {
            p_next[row] = next;
        }
        q[row] = v;
        dot += static_cast<double>(next) * static_cast<double>(v);
    }
    __device__ __forceinline__ void finish() {
        const double acc[1] = {dot};
        reduce_columns<1>(acc, s, 1, [&](i64 j, const double* v) { cg_step::took_pq(s, j, v[0]); });
    }
};

template <class T>
__global__ void __launch_bounds__(block_size)
    dot_pq_kernel(i64 n, const T* __restrict__ p, const T* __restrict__ q, cg_state s, int cw) {
    if (all_stopped_single(s)) {
        return;
    }
    double acc[1] = {0.0};
    const i64 k = s.k;
    for_rows(n, k, cw, [&](i64 i, i64 j) {
        acc[0] += static_cast<double>(p[i * k + j]) * static_cast<double>(q[i * k + j]);
    });
    reduce_columns<1>(acc, s, cw, [&](i64 j, const double* v) { cg_step::took_pq(s, j, v[0]); });
}

template <class T>
__global__ void __launch_bounds__(block_size)
    update_xr_kernel(i64 n, T* __restrict__ x, T* __restrict__ r, const T* __restrict__ p,
                     const T* __restrict__ q, const T* __restrict__ inv_diag, bool has_rz,
                     cg_state s, int cw) {
    if (all_stopped_single(s)) {
        return;
    }
    double acc[2] = {0.0, 0.0};
    const i64 k = s.k;
    for_rows(n, k, cw, [&](i64 i, i64 j) {
        if (s.status[j] != cg_step::active) {
            return;
        }
        const i64 e = i * k + j;
        const T a = static_cast<T>(s.alpha[j]);
        x[e] += a * p[e];
        const T ri = r[e] - a * q[e];
        r[e] = ri;
        const double rr = static_cast<double>(ri) * static_cast<double>(ri);
        acc[0] += rr;
        acc[1] += inv_diag != nullptr ? rr * static_cast<double>(inv_diag[i]) : rr;
    });
    reduce_columns<2>(acc, s, cw, [&](i64 j, const double* v) {
        cg_step::updated(s, j, v[0], v[1], has_rz);
    });
}

template <class T>
__global__ void __launch_bounds__(block_size)
    dot_rz_kernel(i64 n, const T* __restrict__ r, const T* __restrict__ z, bool first, cg_state s,
                  int cw) {
    if (all_stopped_single(s)) {
        return;
    }
    double acc[1] = {0.0};
    const i64 k = s.k;
    for_rows(n, k, cw, [&](i64 i, i64 j) {
        acc[0] += static_cast<double>(r[i * k + j]) * static_cast<double>(z[i * k + j]);
    });
    reduce_columns<1>(acc, s, cw, [&](i64 j, const double* v) {
        if (s.status[j] == cg_step::active) {
            cg_step::take_rz(s, j, v[0], first);
        }
    });
}

template <class T>
__global__ void __launch_bounds__(block_size)
    update_p_kernel(i64 n, T* __restrict__ p, const T* __restrict__ src,
                    const T* __restrict__ inv_diag, cg_state s, int cw) {
    if (all_stopped_single(s)) {
        return;
    }
    const i64 k = s.k;
    for_rows(n, k, cw, [&](i64 i, i64 j) {
        if (s.status[j] != cg_step::active) {
            return;
        }
        const i64 e = i * k + j;
        const T z = inv_diag != nullptr ? inv_diag[i] * src[e] : src[e];
        p[e] = z + static_cast<T>(s.beta[j]) * p[e];
    });
}

template <class T>
__global__ void __launch_bounds__(block_size)
    finish_kernel(i64 n, const T* __restrict__ b, const T* __restrict__ ax, T* __restrict__ x,
                  cg_state s, int cw) {
    double acc[1] = {0.0};
    const i64 k = s.k;
    for_rows(n, k, cw, [&](i64 i, i64 j) {
        const i64 e = i * k + j;
        if (s.status[j] == cg_step::zero_rhs) {
            x[e] = T(0);
            return;
        }
        const double d = static_cast<double>(b[e]) - static_cast<double>(ax[e]);
        acc[0] += d * d;
    });
    reduce_columns<1>(acc, s, cw, [&](i64 j, const double* v) { s.true_rr[j] = v[0]; });
}

cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

dim3 grid_of(i64 n, const columns& c) {
    return dim3(reduction_blocks(n, block_size / c.cw), c.tiles);
}

template <int G, class T, class I, class Ops>
void launch_product_dot(const csr_ref<T, I>& A, const Ops& ops, cudaStream_t stream) {
    const unsigned grid = reduction_blocks(A.rows, block_size / G);
    rows::spmv_vector<G, T, I><<<grid, block_size, 0, stream>>>(A.rows, A.indptr, A.indices,
                                                                A.values, ops);
    cuda_check_launch("cg: product_dot launch");
}

}  // namespace

template <class T>
void cg_start(i64 n, const T* b, const T* ax, T* r, T* p, const T* inv_diag, bool has_rz,
              double rtol, double atol, const cg_state& s, void* stream) {
    const columns c = columns_for(s.k);
    start_kernel<T><<<grid_of(n, c), block_size, 0, as_stream(stream)>>>(
        n, b, ax, r, p, inv_diag, has_rz, rtol, atol, s, c.cw);
    cuda_check_launch("cg: start launch");
}

template <class T, class I>
void cg_product_dot(const csr_ref<T, I>& A, const T* r, const T* inv_diag, const T* p, T* p_next,
                    T* q, const cg_state& s, void* stream) {
    const auto st = as_stream(stream);
    auto with_ops = [&](const auto& ops) {
        switch (rows::vector_group_width((A.nnz + A.rows - 1) / std::max<i64>(A.rows, 1))) {
            case 1: launch_product_dot<1>(A, ops, st); break;
            case 2: launch_product_dot<2>(A, ops, st); break;
            case 4: launch_product_dot<4>(A, ops, st); break;
            case 8: launch_product_dot<8>(A, ops, st); break;
            case 16: launch_product_dot<16>(A, ops, st); break;
            default: launch_product_dot<32>(A, ops, st); break;
        }
    };
    if (p_next != nullptr) {
        with_ops(direction_product<true, T>{r, inv_diag, p, p_next, q, s, T(0), 0.0});
    } else {
        with_ops(direction_product<false, T>{r, inv_diag, p, p_next, q, s, T(0), 0.0});
    }
}

template <class T>
void cg_dot_pq(i64 n, const T* p, const T* q, const cg_state& s, void* stream) {
    const columns c = columns_for(s.k);
    dot_pq_kernel<T><<<grid_of(n, c), block_size, 0, as_stream(stream)>>>(n, p, q, s, c.cw);
    cuda_check_launch("cg: dot_pq launch");
}

template <class T>
void cg_update_xr(i64 n, T* x, T* r, const T* p, const T* q, const T* inv_diag, bool has_rz,
                  const cg_state& s, void* stream) {
    const columns c = columns_for(s.k);
    update_xr_kernel<T><<<grid_of(n, c), block_size, 0, as_stream(stream)>>>(
        n, x, r, p, q, inv_diag, has_rz, s, c.cw);
    cuda_check_launch("cg: update_xr launch");
}

template <class T>
void cg_dot_rz(i64 n, const T* r, const T* z, bool first, const cg_state& s, void* stream) {
    const columns c = columns_for(s.k);
    dot_rz_kernel<T><<<grid_of(n, c), block_size, 0, as_stream(stream)>>>(n, r, z, first, s, c.cw);
    cuda_check_launch("cg: dot_rz launch");
}

template <class T>
void cg_update_p(i64 n, T* p, const T* src, const T* inv_diag, const cg_state& s, void* stream) {
    const columns c = columns_for(s.k);
    update_p_kernel<T><<<grid_of(n, c), block_size, 0, as_stream(stream)>>>(n, p, src, inv_diag,
                                                                            s, c.cw);
    cuda_check_launch("cg: update_p launch");
}

template <class T>
void cg_finish(i64 n, const T* b, const T* ax, T* x, const cg_state& s, void* stream) {
    const columns c = columns_for(s.k);
    finish_kernel<T><<<grid_of(n, c), block_size, 0, as_stream(stream)>>>(n, b, ax, x, s, c.cw);
    cuda_check_launch("cg: finish launch");
}

void zero_bytes(void* data, std::size_t bytes, void* stream) {
    cuda_check(cudaMemsetAsync(data, 0, bytes, as_stream(stream)), "cudaMemsetAsync");
}

void copy_to_host(void* dst, const void* src, std::size_t bytes, void* stream) {
    cuda_check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, as_stream(stream)),
               "cudaMemcpyAsync");
    cuda_check(cudaStreamSynchronize(as_stream(stream)), "cudaStreamSynchronize");
}

#define CURVKIT_CG_CUDA(T)                                                                       \
    template void cg_start(i64, const T*, const T*, T*, T*, const T*, bool, double, double,      \
                           const cg_state&, void*);                                               \
    template void cg_product_dot(const csr_ref<T, std::int32_t>&, const T*, const T*, const T*,  \
                                 T*, T*, const cg_state&, void*);                                 \
    template void cg_product_dot(const csr_ref<T, std::int64_t>&, const T*, const T*, const T*,  \
                                 T*, T*, const cg_state&, void*);                                 \
    template void cg_dot_pq(i64, const T*, const T*, const cg_state&, void*);                     \
    template void cg_update_xr(i64, T*, T*, const T*, const T*, const T*, bool, const cg_state&, \
                               void*);                                                            \
    template void cg_dot_rz(i64, const T*, const T*, bool, const cg_state&, void*);               \
    template void cg_update_p(i64, T*, const T*, const T*, const cg_state&, void*);               \
    template void cg_finish(i64, const T*, const T*, T*, const cg_state&, void*);
CURVKIT_CG_CUDA(float)
CURVKIT_CG_CUDA(double)
#undef CURVKIT_CG_CUDA

}  // namespace curvkit::cuda
