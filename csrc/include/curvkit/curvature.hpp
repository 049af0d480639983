// Building blocks of stochastic diagonal estimation: reproducible probes and fused accumulation.
#pragma once

#include <cstdint>

#include "curvkit/types.hpp"

namespace curvkit {

/// @brief Fills the block @p Z (n, b) with Rademacher signs: Z(i, c) is the sign of row i of
/// probe first_probe + c in the probe sequence of @p seed.
///
/// The signs come from Philox4x32-10 (curvkit/device/philox.hpp) keyed by the seed and counted
/// by (row, probe), so the CPU and the GPU draw identical probes and any block of probes can be
/// drawn on its own. On CUDA, asynchronous on @p stream.
CURVKIT_API void fill_rademacher(const dense_view& Z, std::uint64_t seed,
                                 std::int64_t first_probe, void* stream = nullptr);

/// @brief Fills @p Z (n, b) with standard normal probes: Z(i, c) is entry i of probe
/// first_probe + c of the Gaussian probe sequence of @p seed (Philox + Box-Muller), the same on
/// CPU and GPU. On CUDA, asynchronous on @p stream.
CURVKIT_API void fill_gaussian(const dense_view& Z, std::uint64_t seed, std::int64_t first_probe,
                               void* stream = nullptr);

/// @brief Folds the b samples Z(i, c) HZ(i, c) of each row into a running mean and sum of
/// squared deviations (Welford/Chan), so per-entry estimates and their variance come from one
/// pass over each block of probes.
///
/// @param Z, HZ  probe block and its product with H, both (n, b)
/// @param mean   (n,) running mean of the samples so far; updated
/// @param m2     (n,) running sum of squared deviations; updated
/// @param count  samples per row already folded into mean and m2
CURVKIT_API void accumulate_probe_products(const dense_view& Z, const dense_view& HZ,
                                           const dense_view& mean, const dense_view& m2,
                                           std::int64_t count, void* stream = nullptr);

/// @brief Greedy distance-1 colouring of the graph whose edges are the off-diagonal entries of
/// @p pattern (host CSR, square, symmetric pattern expected: (i, j) stored iff (j, i) is).
///
/// Vertices are coloured in order with the smallest colour none of their neighbours holds, so
/// at most (max degree + 1) colours are used; a 5-point Laplacian gets 2. Probing with one
/// indicator vector per colour then reads diag(H) exactly from that many products.
/// @param colors  host array of pattern.rows int32 entries; written
/// @returns the number of colours used
CURVKIT_API std::int64_t greedy_coloring(const csr_view& pattern, std::int32_t* colors);

}  // namespace curvkit
