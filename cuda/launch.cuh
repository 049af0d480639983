// Launch geometry shared by the CUDA kernels: block size, capped grids, grid-stride indices.
#pragma once

#include <algorithm>
#include <cstdint>

namespace curvkit::cuda::launch {

constexpr int block_size = 256;
// Enough blocks to fill any current GPU many times over; past it the kernels' grid-stride loops
// take over, so 1e8 rows never meet the grid-dimension limit.
constexpr std::int64_t max_blocks = 65535;

/// Blocks for `threads` threads of block_size, at least 1 and at most max_blocks.
inline unsigned grid_for(std::int64_t threads) {
    const std::int64_t blocks = (threads + block_size - 1) / block_size;
    return static_cast<unsigned>(std::clamp<std::int64_t>(blocks, 1, max_blocks));
}

/// This thread's index in the grid, and the grid's size: the start and step of grid-stride loops.
__device__ __forceinline__ std::int64_t thread_id() {
    return static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}

__device__ __forceinline__ std::int64_t thread_count() {
    return static_cast<std::int64_t>(gridDim.x) * blockDim.x;
}

}  // namespace curvkit::cuda::launch
