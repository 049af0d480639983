// CUDA entropic transport kernels: the log-domain Sinkhorn half step (a warp per row), whole
// Sinkhorn solves of batched small problems (a block per problem), the plan's marginals, cost
// and counts (2-D tiles) and the CSR gather of its large entries.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda_check.cuh"
#include "curvkit/device/logsumexp.hpp"
#include "kernels.hpp"
#include "launch.cuh"

namespace curvkit::cuda {
namespace {

using i64 = std::int64_t;
using detail::cuda_check;
using detail::cuda_check_launch;
using launch::block_size;
using launch::max_blocks;

constexpr unsigned full_mask = 0xffffffffu;
constexpr int warps_per_block = block_size / 32;

template <class T>
__device__ __forceinline__ T warp_sum(T x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(full_mask, x, o);
    return x;
}

template <class T>
__device__ __forceinline__ device::lse_accumulator<T> warp_lse(device::lse_accumulator<T> a) {
    for (int o = 16; o > 0; o >>= 1) {
        device::lse_accumulator<T> b;
        b.max = __shfl_xor_sync(full_mask, a.max, o);
        b.sum = __shfl_xor_sync(full_mask, a.sum, o);
        a.merge(b);
    }
    return a;
}

unsigned warp_grid(i64 rows) {
    const i64 blocks = (rows + warps_per_block - 1) / warps_per_block;
    return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > max_blocks ? max_blocks : blocks));
}

// One warp per row of K; lanes stride the row, so consecutive lanes read consecutive entries.
template <class T>
__global__ void __launch_bounds__(block_size)
    lse_update(i64 rows, i64 n, i64 m, const T* __restrict__ K, const T* __restrict__ v,
               const T* __restrict__ w, T reg, T* __restrict__ u, T* __restrict__ marginal,
               T* __restrict__ error) {
    const int lane = static_cast<int>(threadIdx.x % 32);
    const i64 first = (static_cast<i64>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
    const i64 step = static_cast<i64>(gridDim.x) * warps_per_block;
    const T inv = T(1) / reg;
    for (i64 r = first; r < rows; r += step) {
        const T* k = K + r * m;
        const T* vb = v + (r / n) * m;
        device::lse_accumulator<T> acc;
        for (i64 j = lane; j < m; j += 32) acc.add((vb[j] - k[j]) * inv);
        acc = warp_lse(acc);
        if (lane == 0) {
            const T lse = acc.value();
            const T current = exp(u[r] * inv + lse);
            if (marginal != nullptr) marginal[r] = current;
            if (error != nullptr) atomicAdd(error + r / n, fabs(current - w[r]));
            u[r] = reg * (log(w[r]) - lse);
        }
    }
}

template <class T>
__device__ __forceinline__ T warp_max(T x) {
    for (int o = 16; o > 0; o >>= 1) x = fmax(x, __shfl_xor_sync(full_mask, x, o));
    return x;
}

// log sum_k exp((w_k - c[k * stride]) * inv) over a line of `len` entries, the warp's lanes
// striding it: a max sweep, then the sum shifted by the max (one exp per entry, none per
// shuffle). Every lane returns the result.
template <class T>
__device__ T line_lse(const T* c, i64 stride, const T* w, i64 len, T inv, int lane) {
    T mx = -static_cast<T>(INFINITY);
    for (i64 k = lane; k < len; k += 32) mx = fmax(mx, (w[k] - c[k * stride]) * inv);
    mx = warp_max(mx);
    if (!(mx > -static_cast<T>(INFINITY))) return mx;
    T s = 0;
    for (i64 k = lane; k < len; k += 32) s += exp((w[k] - c[k * stride]) * inv - mx);
    return mx + log(warp_sum(s));
}

// Whole Sinkhorn solves, a block per problem (grid-stride over the batch): potentials, log
// marginals and the rows' log-sum-exps stay in shared memory, and so does the cost matrix when
// `staged` (rows padded to the odd stride m + 1, so that the column sweep's lanes fall in
// distinct banks); otherwise rows stream from M and columns from MT. A problem stops on its
// own error, and the whole loop runs without the host.
template <class T, bool staged>
__global__ void __launch_bounds__(block_size)
    sinkhorn_batch(i64 batch, i64 n, i64 m, const T* __restrict__ M, const T* __restrict__ MT,
                   const T* __restrict__ a, const T* __restrict__ b, T reg, i64 maxiter, T tol,
                   i64 check_every, T* __restrict__ f, T* __restrict__ g,
                   i64* __restrict__ iterations, T* __restrict__ error) {
    extern __shared__ __align__(16) unsigned char shared_bytes[];
    T* const sf = reinterpret_cast<T*>(shared_bytes);
    T* const sg = sf + n;
    T* const log_a = sg + m;
    T* const log_b = log_a + n;
    T* const lse = log_b + m;
    T* const partial = lse + n;
    T* const tile = partial + warps_per_block;
    const i64 ts = m + 1;
    const int t = static_cast<int>(threadIdx.x), lane = t % 32, warp = t / 32;
    const T inv = T(1) / reg;
    for (i64 k = blockIdx.x; k < batch; k += gridDim.x) {
        const T* mk = M + k * n * m;
        const T* mtk = MT + k * m * n;
        const T* ak = a + k * n;
        for (i64 i = t; i < n; i += block_size) {
            sf[i] = f[k * n + i];
            log_a[i] = log(ak[i]);
        }
        for (i64 j = t; j < m; j += block_size) {
            sg[j] = g[k * m + j];
            log_b[j] = log(b[k * m + j]);
        }
        if (staged)
            for (i64 e = t; e < n * m; e += block_size) tile[(e / m) * ts + e % m] = mk[e];
        __syncthreads();
        T err = static_cast<T>(INFINITY);
        i64 it = 0;
        for (; it < maxiter; ++it) {
            for (i64 i = warp; i < n; i += warps_per_block) {
                const T l = staged ? line_lse(tile + i * ts, 1, sg, m, inv, lane)
                                   : line_lse(mk + i * m, 1, sg, m, inv, lane);
                if (lane == 0) lse[i] = l;
            }
            __syncthreads();
            if ((it + 1) % check_every == 0 || it + 1 == maxiter) {
                T e = 0;
                for (i64 i = t; i < n; i += block_size)
                    e += fabs(exp(sf[i] * inv + lse[i]) - ak[i]);
                e = warp_sum(e);
                if (lane == 0) partial[warp] = e;
                __syncthreads();
                e = 0;
                for (int w = 0; w < warps_per_block; ++w) e += partial[w];  // one order for all
                err = e;
                if (e <= tol || !isfinite(e)) break;  // the same decision in every thread
            }
            for (i64 i = t; i < n; i += block_size) sf[i] = reg * (log_a[i] - lse[i]);
            __syncthreads();
            for (i64 j = warp; j < m; j += warps_per_block) {
                const T l = staged ? line_lse(tile + j, ts, sf, n, inv, lane)
                                   : line_lse(mtk + j * n, 1, sf, n, inv, lane);
                if (lane == 0) sg[j] = reg * (log_b[j] - l);
            }
            __syncthreads();
        }
        for (i64 i = t; i < n; i += block_size) f[k * n + i] = sf[i];
        for (i64 j = t; j < m; j += block_size) g[k * m + j] = sg[j];
        if (t == 0) {
            iterations[k] = it;
            error[k] = err;
        }
        __syncthreads();  // the shared arrays are refilled for the next problem
    }
}

// Tiles of 32 columns x tile_rows rows: a warp holds 32 consecutive entries of one row (one
// coalesced read, one shuffle reduction for the row sum), and each thread keeps its column's
// partial sum over the tile in a register, so the column sums cost one atomic per tile column.
constexpr int tile_rows = 64;

template <class T>
__global__ void __launch_bounds__(block_size)
    plan_sums(i64 n, i64 m, const T* __restrict__ M, const T* __restrict__ f,
              const T* __restrict__ g, T reg, T threshold, T* __restrict__ row_sum,
              T* __restrict__ col_sum, T* __restrict__ cost,
              unsigned long long* __restrict__ row_count) {
    __shared__ T cols[warps_per_block][32];
    __shared__ T costs[warps_per_block];
    const int tx = static_cast<int>(threadIdx.x % 32), ty = static_cast<int>(threadIdx.x / 32);
    const T inv = T(1) / reg;
    const i64 j = static_cast<i64>(blockIdx.x) * 32 + tx;
    const T gj = j < m ? g[j] : T(0);
    T col = 0, c = 0;
    for (i64 tile = blockIdx.y; tile * tile_rows < n; tile += gridDim.y) {
        const i64 end = (tile + 1) * tile_rows < n ? (tile + 1) * tile_rows : n;
        for (i64 i = tile * tile_rows + ty; i < end; i += warps_per_block) {
            T p = 0;
            if (j < m) {
                const T mij = M[i * m + j];
                p = exp((f[i] + gj - mij) * inv);
                c += p * mij;
            }
            col += p;
            const T s = warp_sum(p);
            const unsigned kept = __ballot_sync(full_mask, p > threshold);
            if (tx == 0) {
                atomicAdd(row_sum + i, s);
                if (row_count != nullptr && kept != 0)
                    atomicAdd(row_count + i, static_cast<unsigned long long>(__popc(kept)));
            }
        }
    }
    cols[ty][tx] = col;
    c = warp_sum(c);
    if (tx == 0) costs[ty] = c;
    __syncthreads();
    if (ty == 0) {
        T s = 0;
        for (int r = 0; r < warps_per_block; ++r) s += cols[r][tx];
        if (j < m) atomicAdd(col_sum + j, s);
        if (cost != nullptr && tx == 0) {
            T t = 0;
            for (int r = 0; r < warps_per_block; ++r) t += costs[r];
            atomicAdd(cost, t);
        }
    }
}

// One warp per row; a ballot over each 32 entries gives every kept entry its position, so the
// row's entries land in column order without atomics. Entries beyond the row's slots (a count
// taken with other rounding) are dropped and unused slots become explicit zeros, so the CSR
// arrays are always well formed.
template <class T>
__global__ void __launch_bounds__(block_size)
    plan_gather(i64 n, i64 m, const T* __restrict__ M, const T* __restrict__ f,
                const T* __restrict__ g, T reg, T threshold, const i64* __restrict__ starts,
                const i64* __restrict__ slots, i64 col_offset, i64* __restrict__ indices,
                T* __restrict__ values) {
    const int lane = static_cast<int>(threadIdx.x % 32);
    const i64 first = (static_cast<i64>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
    const i64 step = static_cast<i64>(gridDim.x) * warps_per_block;
    const T inv = T(1) / reg;
    const unsigned below = (1u << lane) - 1u;
    for (i64 i = first; i < n; i += step) {
        const T fi = f[i];
        const i64 begin = starts[i], end = begin + slots[i];
        i64 at = begin;
        for (i64 base = 0; base < m && at < end; base += 32) {
            const i64 j = base + lane;
            const T p = j < m ? exp((fi + g[j] - M[i * m + j]) * inv) : T(0);
            const bool keep = j < m && p > threshold;
            const unsigned kept = __ballot_sync(full_mask, keep);
            const i64 pos = at + __popc(kept & below);
            if (keep && pos < end) {
                indices[pos] = j + col_offset;
                values[pos] = p;
            }
            at += __popc(kept);
        }
        for (i64 pos = at + lane; pos < end; pos += 32) {
            indices[pos] = col_offset;
            values[pos] = T(0);
        }
    }
}

}  // namespace

template <class T>
void ot_lse_update(i64 batch, i64 n, i64 m, const T* K, const T* v, const T* w, T reg, T* u,
                   T* marginal, T* error, void* stream) {
    const auto s = static_cast<cudaStream_t>(stream);
    const i64 rows = batch * n;
    if (error != nullptr)
        cuda_check(cudaMemsetAsync(error, 0, sizeof(T) * static_cast<std::size_t>(batch), s),
                   "ot_lse_update: zeroing the error");
    if (rows == 0) return;
    lse_update<T><<<warp_grid(rows), block_size, 0, s>>>(rows, n, m, K, v, w, reg, u, marginal,
                                                         error);
    cuda_check_launch("ot_lse_update");
}

template <class T>
void ot_sinkhorn_batch(i64 batch, i64 n, i64 m, const T* M, const T* MT, const T* a, const T* b,
                       T reg, i64 maxiter, T tol, i64 check_every, T* f, T* g, i64* iterations,
                       T* error, void* stream) {
    if (batch == 0) return;
    const auto s = static_cast<cudaStream_t>(stream);
    int device = 0, most = 0;
    cuda_check(cudaGetDevice(&device), "ot_sinkhorn_batch: device");
    cuda_check(cudaDeviceGetAttribute(&most, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
               "ot_sinkhorn_batch: shared memory size");
    const double vectors = static_cast<double>(3 * n + 2 * m + warps_per_block) * sizeof(T);
    const double with_tile = vectors + static_cast<double>(n) * (m + 1) * sizeof(T);
    const unsigned grid = static_cast<unsigned>(batch < max_blocks ? batch : max_blocks);
    auto run = [&](auto kernel, double bytes) {
        const auto size = static_cast<std::size_t>(bytes);
        cuda_check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(size)),
                   "ot_sinkhorn_batch: shared memory size");
        kernel<<<grid, block_size, size, s>>>(batch, n, m, M, MT, a, b, reg, maxiter, tol,
                                              check_every, f, g, iterations, error);
        cuda_check_launch("ot_sinkhorn_batch");
    };
    if (with_tile <= most)
        run(sinkhorn_batch<T, true>, with_tile);
    else if (vectors <= most)
        run(sinkhorn_batch<T, false>, vectors);
    else
        throw curvkit::error(status::invalid_value,
                             "ot_sinkhorn_batch: the potentials of one problem exceed a block's "
                             "shared memory; solve it with ot_lse_update");
}

template <class T>
void ot_plan_sums(i64 n, i64 m, const T* M, const T* f, const T* g, T reg, T threshold,
                  T* row_sum, T* col_sum, T* cost, i64* row_count, void* stream) {
    const auto s = static_cast<cudaStream_t>(stream);
    cuda_check(cudaMemsetAsync(row_sum, 0, sizeof(T) * static_cast<std::size_t>(n), s),
               "ot_plan_sums: zeroing");
    cuda_check(cudaMemsetAsync(col_sum, 0, sizeof(T) * static_cast<std::size_t>(m), s),
               "ot_plan_sums: zeroing");
    if (cost != nullptr)
        cuda_check(cudaMemsetAsync(cost, 0, sizeof(T), s), "ot_plan_sums: zeroing");
    if (row_count != nullptr)
        cuda_check(cudaMemsetAsync(row_count, 0, sizeof(i64) * static_cast<std::size_t>(n), s),
                   "ot_plan_sums: zeroing");
    if (n == 0 || m == 0) return;
    const i64 tiles = (n + tile_rows - 1) / tile_rows;
    const dim3 grid(static_cast<unsigned>((m + 31) / 32),
                    static_cast<unsigned>(tiles < 65535 ? tiles : 65535));
    if ((m + 31) / 32 > 0x7fffffff) throw error(status::invalid_value, "M has too many columns");
    plan_sums<T><<<grid, block_size, 0, s>>>(n, m, M, f, g, reg, threshold, row_sum, col_sum, cost,
                                             reinterpret_cast<unsigned long long*>(row_count));
    cuda_check_launch("ot_plan_sums");
}

template <class T>
void ot_plan_gather(i64 n, i64 m, const T* M, const T* f, const T* g, T reg, T threshold,
                    const i64* starts, const i64* slots, i64 col_offset, i64* indices,
                    T* values, void* stream) {
    if (n == 0 || m == 0) return;
    const auto s = static_cast<cudaStream_t>(stream);
    plan_gather<T><<<warp_grid(n), block_size, 0, s>>>(n, m, M, f, g, reg, threshold, starts,
                                                       slots, col_offset, indices, values);
    cuda_check_launch("ot_plan_gather");
}

#define CURVKIT_OT_CUDA(T)                                                                        \
    template void ot_lse_update(i64, i64, i64, const T*, const T*, const T*, T, T*, T*, T*,      \
                                void*);                                                           \
    template void ot_sinkhorn_batch(i64, i64, i64, const T*, const T*, const T*, const T*, T, i64, \
                                    T, i64, T*, T*, i64*, T*, void*);                             \
    template void ot_plan_sums(i64, i64, const T*, const T*, const T*, T, T, T*, T*, T*, i64*,   \
                               void*);                                                            \
    template void ot_plan_gather(i64, i64, const T*, const T*, const T*, T, T, const i64*,       \
                                 const i64*, i64, i64*, T*, void*);
CURVKIT_OT_CUDA(float)
CURVKIT_OT_CUDA(double)
#undef CURVKIT_OT_CUDA

}  // namespace curvkit::cuda
