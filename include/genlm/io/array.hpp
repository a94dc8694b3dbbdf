// genlm/io/array.hpp - a dtype-tagged, shape-carrying byte buffer: the common currency of the
// file readers/writers (safetensors, npy), plus exact IEEE half / bfloat16 conversions.
//
// Storage convention: `array::bytes` always holds the elements in C (row-major) order and in
// LITTLE-ENDIAN byte order, whatever the host is; that is also the on-disk order of both file
// formats, so the readers and writers copy bytes verbatim on the usual little-endian hosts.
#pragma once

#include <genlm/core/error.hpp>

#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace genlm::io {

// ---------------------------------------------------------------------------------------------
// dtype
// ---------------------------------------------------------------------------------------------

/// Element types the IO layer understands.
enum class dtype : std::uint8_t { f16, bf16, f32, f64, i32, i64, u8, bool_ };

/// All dtypes, in enum order (handy for tests and error messages).
inline constexpr std::array<dtype, 8> all_dtypes = {dtype::f16, dtype::bf16, dtype::f32,
                                                    dtype::f64, dtype::i32,  dtype::i64,
                                                    dtype::u8,  dtype::bool_};

/// Safetensors name of a dtype: "F16", "BF16", "F32", "F64", "I32", "I64", "U8", "BOOL".
constexpr std::string_view dtype_name(dtype t) noexcept {
  switch (t) {
    case dtype::f16: return "F16";
    case dtype::bf16: return "BF16";
    case dtype::f32: return "F32";
    case dtype::f64: return "F64";
    case dtype::i32: return "I32";
    case dtype::i64: return "I64";
    case dtype::u8: return "U8";
    case dtype::bool_: return "BOOL";
  }
  return "?";
}

/// NumPy-style name ("float32", "bfloat16", "bool"...), used in human-readable messages.
constexpr std::string_view dtype_long_name(dtype t) noexcept {
  switch (t) {
    case dtype::f16: return "float16";
    case dtype::bf16: return "bfloat16";
    case dtype::f32: return "float32";
    case dtype::f64: return "float64";
    case dtype::i32: return "int32";
    case dtype::i64: return "int64";
    case dtype::u8: return "uint8";
    case dtype::bool_: return "bool";
  }
  return "?";
}

/// Inverse of dtype_name (exact, case-sensitive match); nullopt for unknown names.
constexpr std::optional<dtype> dtype_from_name(std::string_view name) noexcept {
  for (dtype t : all_dtypes)
    if (dtype_name(t) == name) return t;
  return std::nullopt;
}

/// "F16, BF16, F32, F64, I32, I64, U8, BOOL" - for "expected one of ..." messages.
inline std::string dtype_name_list() {
  std::string s;
  for (dtype t : all_dtypes) {
    if (!s.empty()) s += ", ";
    s += dtype_name(t);
  }
  return s;
}

/// Size of one element in bytes.
constexpr std::size_t element_size(dtype t) noexcept {
  switch (t) {
    case dtype::f16:
    case dtype::bf16: return 2;
    case dtype::f32:
    case dtype::i32: return 4;
    case dtype::f64:
    case dtype::i64: return 8;
    case dtype::u8:
    case dtype::bool_: return 1;
  }
  return 0;
}

constexpr bool is_floating(dtype t) noexcept {
  return t == dtype::f16 || t == dtype::bf16 || t == dtype::f32 || t == dtype::f64;
}

/// The dtype that stores C++ type T (float, double, int32_t, int64_t, uint8_t, bool).
template <class T>
constexpr dtype dtype_of() noexcept {
  using U = std::remove_cv_t<T>;
  if constexpr (std::is_same_v<U, float>) return dtype::f32;
  else if constexpr (std::is_same_v<U, double>) return dtype::f64;
  else if constexpr (std::is_same_v<U, std::int32_t>) return dtype::i32;
  else if constexpr (std::is_same_v<U, std::int64_t>) return dtype::i64;
  else if constexpr (std::is_same_v<U, std::uint8_t>) return dtype::u8;
  else if constexpr (std::is_same_v<U, bool>) return dtype::bool_;
  else static_assert(sizeof(U) == 0, "genlm::io: no dtype for this C++ type");
}

// ---------------------------------------------------------------------------------------------
// half / bfloat16 <-> float
// ---------------------------------------------------------------------------------------------

/// IEEE 754 binary16 bits -> float. Exact for every input (subnormals, +-0, +-inf; NaN payload
/// and sign are preserved).
inline float half_to_float(std::uint16_t h) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1fu;
  const std::uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    // zero or subnormal: mant * 2^-24, exactly representable as a float.
    const float mag = std::ldexp(static_cast<float>(mant), -24);
    return sign ? -mag : mag;
  }
  if (exp == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));  // inf / NaN
  return std::bit_cast<float>(sign | ((exp + (127 - 15)) << 23) | (mant << 13));
}

/// float -> IEEE 754 binary16 bits, rounding to nearest, ties to even. Overflow gives +-inf
/// (values >= 65520 in magnitude), underflow gives subnormals / signed zero, NaN stays a quiet
/// NaN with the same sign.
inline std::uint16_t float_to_half(float f) noexcept {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  const auto sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
  const std::uint32_t a = x & 0x7fffffffu;
  if (a >= 0x7f800000u) {  // inf or NaN
    if (a == 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7c00u);
    return static_cast<std::uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
  }
  if (a >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // >= 65520 -> inf
  if (a < 0x38800000u) {
    // Below the smallest normal half (2^-14): result is subnormal or zero. Express the value in
    // units of 2^-24 (the subnormal step): m * 2^(e - 126) with m the 24-bit significand.
    const std::uint32_t e = a >> 23;
    const int shift = 126 - static_cast<int>(e);  // >= 14 here
    if (shift > 24) return sign;                  // < 2^-25: rounds to zero
    const std::uint32_t m = (a & 0x7fffffu) | 0x800000u;
    std::uint32_t r = m >> shift;
    const std::uint32_t rem = m & ((1u << shift) - 1u);
    const std::uint32_t halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (r & 1u))) ++r;  // may carry into the exponent: OK
    return static_cast<std::uint16_t>(sign | r);
  }
  // Normal range: rebias the exponent, drop 13 mantissa bits with round-to-nearest-even.
  const std::uint32_t base = a - ((127u - 15u) << 23);
  std::uint32_t r = base >> 13;
  const std::uint32_t rem = base & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
  return static_cast<std::uint16_t>(sign | r);
}

/// bfloat16 bits -> float (exact: bfloat16 is the top half of a float).
inline float bf16_to_float(std::uint16_t b) noexcept {
  return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
}

/// float -> bfloat16 bits, round to nearest, ties to even; NaN stays a quiet NaN.
inline std::uint16_t float_to_bf16(float f) noexcept {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 0x0040u);
  const std::uint32_t rounded = x + 0x7fffu + ((x >> 16) & 1u);  // overflow carries to inf
  return static_cast<std::uint16_t>(rounded >> 16);
}

// ---------------------------------------------------------------------------------------------
// little-endian load / store helpers
// ---------------------------------------------------------------------------------------------

namespace detail {

template <class U>
constexpr U byteswap_uint(U v) noexcept {
  static_assert(std::is_unsigned_v<U>);
  U r = 0;
  for (std::size_t i = 0; i < sizeof(U); ++i) {
    r = static_cast<U>((r << 8) | (v & 0xffu));
    v = static_cast<U>(v >> 8);
  }
  return r;
}

template <std::size_t N>
struct uint_of_size;
template <> struct uint_of_size<1> { using type = std::uint8_t; };
template <> struct uint_of_size<2> { using type = std::uint16_t; };
template <> struct uint_of_size<4> { using type = std::uint32_t; };
template <> struct uint_of_size<8> { using type = std::uint64_t; };

/// Reads a T stored little-endian at p (no alignment requirement).
template <class T>
inline T load_le(const std::byte* p) noexcept {
  using U = typename uint_of_size<sizeof(T)>::type;
  U u;
  std::memcpy(&u, p, sizeof(U));
  if constexpr (std::endian::native == std::endian::big) u = byteswap_uint(u);
  if constexpr (std::is_same_v<T, bool>) return u != 0;
  else return std::bit_cast<T>(u);
}

/// Writes v little-endian at p.
template <class T>
inline void store_le(std::byte* p, T v) noexcept {
  using U = typename uint_of_size<sizeof(T)>::type;
  U u;
  if constexpr (std::is_same_v<T, bool>) u = v ? 1 : 0;
  else u = std::bit_cast<U>(v);
  if constexpr (std::endian::native == std::endian::big) u = byteswap_uint(u);
  std::memcpy(p, &u, sizeof(U));
}

/// A buffer of `n` bytes for the data of `what` (e.g. "safetensors file 'x': tensor 'w'"),
/// zero-filled or copied from `init`. A size the host cannot allocate (a header-consistent but
/// huge tensor) throws genlm::error naming `what` and the byte count instead of a bare
/// std::bad_alloc / std::length_error.
inline std::vector<std::byte> allocate_bytes(std::uint64_t n, std::string_view what,
                                             const std::byte* init = nullptr) {
  try {
    check(n <= std::numeric_limits<std::size_t>::max(), "too large for this host");
    if (init) return std::vector<std::byte>(init, init + static_cast<std::size_t>(n));
    return std::vector<std::byte>(static_cast<std::size_t>(n));
  } catch (const std::exception& e) {  // std::bad_alloc, std::length_error, the check above
    throw error(
        genlm::detail::concat(what, ": cannot allocate ", n, " bytes for the data (", e.what(), ")"));
  }
}

/// Reverses the bytes of each `elem`-byte element in place (endianness conversion).
inline void byteswap_elements(std::span<std::byte> data, std::size_t elem) noexcept {
  if (elem <= 1) return;
  for (std::size_t i = 0; i + elem <= data.size(); i += elem)
    for (std::size_t a = i, b = i + elem - 1; a < b; ++a, --b) std::swap(data[a], data[b]);
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// shapes
// ---------------------------------------------------------------------------------------------

/// "(2, 3)", "(5,)" or "()" - Python tuple notation, used in messages.
inline std::string shape_to_string(std::span<const std::int64_t> shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";
  return s + ")";
}

/// Number of elements of `shape` (1 for a scalar shape `()`); throws E naming `what` if a dim is
/// negative or the element count / byte size (with `elem_size` bytes per element) overflows.
template <class E = shape_error>
inline std::int64_t checked_numel(std::span<const std::int64_t> shape, std::size_t elem_size,
                                  std::string_view what) {
  constexpr auto max = std::numeric_limits<std::int64_t>::max();
  std::int64_t n = 1;
  for (std::size_t i = 0; i < shape.size(); ++i)
    check<E>(shape[i] >= 0, what, ": dimension ", i, " of shape ", shape_to_string(shape),
             " is negative (", shape[i], "); dimensions must be >= 0");
  for (std::int64_t d : shape) {
    if (d == 0) return 0;  // an empty array is fine whatever the other dims are
    check<E>(n <= max / d, what, ": shape ", shape_to_string(shape), " has too many elements");
    n *= d;
  }
  check<E>(n <= max / static_cast<std::int64_t>(elem_size ? elem_size : 1), what, ": shape ",
           shape_to_string(shape), " is too large in bytes");
  return n;
}

// ---------------------------------------------------------------------------------------------
// array
// ---------------------------------------------------------------------------------------------

/// A dense, C-ordered tensor held as raw little-endian bytes plus a dtype and a shape.
struct array {
  io::dtype dtype = io::dtype::f32;
  std::vector<std::int64_t> shape;  ///< empty = scalar (one element)
  std::vector<std::byte> bytes;     ///< numel() * element_size(dtype) bytes, little-endian

  /// Number of elements (product of shape; 1 for a scalar). Throws shape_error on negative dims.
  std::int64_t numel() const { return checked_numel(shape, element_size(dtype), "array"); }

  /// Expected byte size for dtype and shape.
  std::size_t nbytes() const {
    return static_cast<std::size_t>(numel()) * element_size(dtype);
  }

  /// Throws shape_error (naming `what`) unless dims are >= 0 and bytes.size() == nbytes().
  void validate(std::string_view what = "array") const {
    const auto n = checked_numel(shape, element_size(dtype), what);
    const auto want = static_cast<std::size_t>(n) * element_size(dtype);
    check<shape_error>(bytes.size() == want, what, ": holds ", bytes.size(), " bytes but shape ",
                       shape_to_string(shape), " ", dtype_long_name(dtype), " needs ", want);
  }

  /// Wraps raw little-endian bytes; validates the size against dtype and shape.
  static array from_bytes(io::dtype t, std::vector<std::int64_t> shape,
                          std::vector<std::byte> bytes) {
    array a{t, std::move(shape), std::move(bytes)};
    a.validate("array::from_bytes");
    return a;
  }

  /// Copies numel(shape) elements from `data` (T = float, double, int32_t, int64_t, uint8_t or
  /// bool) into a new array of the matching dtype.
  template <class T>
  static array from(std::vector<std::int64_t> shape, const T* data) {
    constexpr io::dtype t = dtype_of<T>();
    const auto n = static_cast<std::size_t>(checked_numel(shape, sizeof(T), "array::from"));
    array a{t, std::move(shape), std::vector<std::byte>(n * element_size(t))};
    if (n == 0) return a;
    check<value_error>(data != nullptr, "array::from: null data pointer for ", n, " elements");
    if constexpr (std::is_same_v<T, bool>) {
      static_assert(sizeof(bool) == 1, "genlm::io assumes a 1-byte bool");
      std::memcpy(a.bytes.data(), data, n);  // then normalise the object representation to 0/1
      for (auto& b : a.bytes) b = b != std::byte{0} ? std::byte{1} : std::byte{0};
    } else if constexpr (std::endian::native == std::endian::little) {
      std::memcpy(a.bytes.data(), data, a.bytes.size());
    } else {
      for (std::size_t i = 0; i < n; ++i) detail::store_le<T>(a.bytes.data() + i * sizeof(T), data[i]);
    }
    return a;
  }

  /// Convenience overload taking a vector; checks that its size matches the shape.
  template <class T>
  static array from(std::vector<std::int64_t> shape, const std::vector<T>& values) {
    if constexpr (std::is_same_v<T, bool>) {
      // std::vector<bool> is bit-packed: copy through a plain buffer.
      std::unique_ptr<bool[]> tmp(new bool[values.size() ? values.size() : 1]);
      for (std::size_t i = 0; i < values.size(); ++i) tmp[i] = values[i];
      check_count(shape, values.size());
      return from<bool>(std::move(shape), tmp.get());
    } else {
      check_count(shape, values.size());
      return from<T>(std::move(shape), values.data());
    }
  }

  /// All elements converted to T (float, double, any integer type, or bool), C order.
  /// f16 / bf16 are decoded exactly. Float -> integer conversion truncates toward zero and
  /// throws value_error for NaN/inf/out-of-range; integer -> integer throws value_error when
  /// the value does not fit T; a finite float64 beyond the range of a float T throws value_error
  /// (NaN/inf convert as they are). bool elements read as 0/1 (any nonzero byte is true).
  /// Messages start with `what` (callers pass the file and tensor) and name the element index
  /// and its value.
  template <class T>
  std::vector<T> to(std::string_view what = "array::to") const {
    static_assert(std::is_arithmetic_v<T>, "array::to<T>: T must be arithmetic");
    validate(what);
    const auto n = static_cast<std::size_t>(numel());
    std::vector<T> out(n);
    const std::byte* p = bytes.data();
    switch (dtype) {
      case io::dtype::f16:
        for (std::size_t i = 0; i < n; ++i)
          out[i] = convert<T>(half_to_float(detail::load_le<std::uint16_t>(p + 2 * i)), i, what);
        break;
      case io::dtype::bf16:
        for (std::size_t i = 0; i < n; ++i)
          out[i] = convert<T>(bf16_to_float(detail::load_le<std::uint16_t>(p + 2 * i)), i, what);
        break;
      case io::dtype::f32: convert_all<float, T>(p, out, what); break;
      case io::dtype::f64: convert_all<double, T>(p, out, what); break;
      case io::dtype::i32: convert_all<std::int32_t, T>(p, out, what); break;
      case io::dtype::i64: convert_all<std::int64_t, T>(p, out, what); break;
      case io::dtype::u8: convert_all<std::uint8_t, T>(p, out, what); break;
      case io::dtype::bool_:
        for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<T>(p[i] != std::byte{0});
        break;
    }
    return out;
  }

 private:
  static void check_count(std::span<const std::int64_t> shape, std::size_t count) {
    const auto n = checked_numel(shape, 1, "array::from");
    check<shape_error>(static_cast<std::size_t>(n) == count, "array::from: shape ",
                       shape_to_string(shape), " has ", n, " elements but ", count,
                       " values were given");
  }

  template <class S, class T>
  static void convert_all(const std::byte* p, std::vector<T>& out, std::string_view what) {
    if constexpr (std::is_same_v<S, T> && std::endian::native == std::endian::little) {
      if (!out.empty()) std::memcpy(out.data(), p, out.size() * sizeof(T));
    } else {
      for (std::size_t i = 0; i < out.size(); ++i)
        out[i] = convert<T>(detail::load_le<S>(p + i * sizeof(S)), i, what);
    }
  }

  /// One element S -> T with the range checks documented on to().
  template <class T, class S>
  static T convert(S v, std::size_t index, std::string_view what) {
    if constexpr (std::is_same_v<T, bool>) {
      return v != S{0};
    } else if constexpr (std::is_floating_point_v<T>) {
      if constexpr (std::is_floating_point_v<S> && sizeof(S) > sizeof(T)) {  // double -> float
        constexpr S max = static_cast<S>(std::numeric_limits<T>::max());
        check<value_error>(!std::isfinite(v) || std::fabs(v) <= max, what, ": element ", index, " (", v,
                           ") is outside the range of a ", sizeof(T) * 8, "-bit float (max ",
                           std::numeric_limits<T>::max(), ")");
      }
      return static_cast<T>(v);
    } else if constexpr (std::is_floating_point_v<S>) {
      const double d = std::trunc(static_cast<double>(v));
      const double hi = std::ldexp(1.0, std::numeric_limits<T>::digits);  // exclusive bound
      const double lo = std::is_signed_v<T> ? -hi : 0.0;                   // inclusive bound
      check<value_error>(std::isfinite(d) && d >= lo && d < hi, what, ": element ", index,
                         " (", v, ") cannot be converted to a ", sizeof(T) * 8, "-bit ",
                         std::is_signed_v<T> ? "signed" : "unsigned", " integer");
      return static_cast<T>(d);
    } else {
      check<value_error>(std::in_range<T>(v), what, ": element ", index, " (", +v,
                         ") does not fit in a ", sizeof(T) * 8, "-bit ",
                         std::is_signed_v<T> ? "signed" : "unsigned", " integer");
      return static_cast<T>(v);
    }
  }
};

}  // namespace genlm::io
