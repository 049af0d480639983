// Core vocabulary of the C++ API: scalar types, devices, non-owning array views and errors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "curvkit/export.hpp"

namespace curvkit {

/// @brief Element types understood by the kernels.
enum class scalar_type : int { f32 = 0, f64 = 1, i32 = 2, i64 = 3 };

/// @brief Where an array lives.
enum class device_kind : int { cpu = 0, cuda = 1 };

/// @brief Size in bytes of one element of @p t.
constexpr std::size_t size_of(scalar_type t) noexcept {
    return (t == scalar_type::f32 || t == scalar_type::i32) ? 4 : 8;
}

/// @brief Name of @p t as NumPy spells it ("float32", "int64", ...).
CURVKIT_API const char* name_of(scalar_type t) noexcept;

/// @brief A non-owning, strided view of a 1-D vector (n,) or a 2-D block (n, k).
///
/// Strides are counted in elements, not bytes. A vector has ndim = 1 and cols = 1.
struct dense_view {
    void* data = nullptr;
    scalar_type dtype = scalar_type::f64;
    device_kind device = device_kind::cpu;
    int device_id = 0;
    int ndim = 1;
    std::int64_t rows = 0;
    std::int64_t cols = 1;
    std::int64_t row_stride = 1;
    std::int64_t col_stride = 1;
};

/// @brief Which part of a square matrix a CSR array stores.
///
/// `upper` / `lower`: only that triangle (diagonal included) is stored and the matrix is the
/// symmetric one it defines, so the product reads half the matrix bytes.
enum class triangle : int { full = 0, upper = 1, lower = 2 };

/// @brief A non-owning view of a compressed-sparse-row matrix.
///
/// `indptr` has rows + 1 entries and `indices`, `values` have nnz = indptr[rows] entries.
/// indptr and indices share one integer type (int32 or int64). Column indices within a row
/// may be unsorted and may repeat (repeats are summed).
struct csr_view {
    std::int64_t rows = 0;
    std::int64_t cols = 0;
    std::int64_t nnz = 0;
    const void* indptr = nullptr;
    const void* indices = nullptr;
    const void* values = nullptr;
    scalar_type index_dtype = scalar_type::i32;
    scalar_type value_dtype = scalar_type::f64;
    triangle storage = triangle::full;
    device_kind device = device_kind::cpu;
    int device_id = 0;
};

/// @brief Error categories, shared by C++ exceptions and the C ABI status codes.
enum class status : int {
    ok = 0,
    invalid_value = 1,   ///< bad shape, malformed index arrays, aliasing output (ValueError)
    invalid_type = 2,    ///< wrong dtype or device mix (TypeError)
    unsupported = 3,     ///< e.g. a CUDA array given to a build without CUDA
    cuda_failure = 4,    ///< a CUDA runtime call failed
    internal = 5,
};

/// @brief The one exception type the library throws; `code()` tells the category.
class CURVKIT_API error : public std::runtime_error {
public:
    error(status code, const std::string& message);
    ~error() override;
    status code() const noexcept { return code_; }

private:
    status code_;
};

}  // namespace curvkit
