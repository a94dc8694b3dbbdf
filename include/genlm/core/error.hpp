// genlm/core/error.hpp - the library's exception types and check helpers.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace genlm {

/// Base class of every exception genlm throws. Messages name the object (file, field, layer),
/// the value seen and the value expected.
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Wrong tensor shapes / dimensions.
class shape_error : public error {
 public:
  using error::error;
};

/// NaN/Inf or out-of-range values in the input.
class value_error : public error {
 public:
  using error::error;
};

/// Malformed, truncated or mismatching files (safetensors, npy, GenBank, checkpoints...).
class format_error : public error {
 public:
  using error::error;
};

/// Unknown names (gene ids, parameter names...).
class lookup_error : public error {
 public:
  using error::error;
};

namespace detail {
template <class... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}
}  // namespace detail

/// Throws E with the concatenation of args when cond is false.
template <class E = error, class... Args>
inline void check(bool cond, Args&&... args) {
  if (!cond) throw E(detail::concat(std::forward<Args>(args)...));
}

}  // namespace genlm
