// genlm/core/tensor.hpp - shapes, owning tensors and bounds-checked host views.
//
// A tensor<T, Backend> owns a contiguous row-major buffer in the backend's memory (host memory
// for genlm::cpu, device memory for genlm::cuda). Layers only pass raw pointers of tensors to the
// backend's ops, so layer code never branches on the backend. resize() keeps the allocation when
// it is large enough, so a layer's workspaces are allocated once and reused on every step.
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <ostream>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <genlm/core/error.hpp>

namespace genlm {

using index_t = std::int64_t;

/// A tensor shape of rank 0..4 (row-major; the last dimension is contiguous).
class shape_t {
 public:
  static constexpr int max_rank = 4;
  constexpr shape_t() = default;
  shape_t(std::initializer_list<index_t> dims) {
    check<shape_error>(dims.size() <= max_rank, "shape: rank ", dims.size(), " exceeds ", max_rank);
    for (index_t d : dims) {
      check<shape_error>(d >= 0, "shape: negative dimension ", d);
      d_[rank_++] = d;
    }
  }
  template <class It>
  static shape_t from_range(It first, It last) {
    shape_t s;
    for (; first != last; ++first) {
      check<shape_error>(s.rank_ < max_rank, "shape: rank exceeds ", max_rank);
      check<shape_error>(*first >= 0, "shape: negative dimension ", *first);
      s.d_[s.rank_++] = static_cast<index_t>(*first);
    }
    return s;
  }
  int rank() const { return rank_; }
  index_t operator[](int i) const {
    check<shape_error>(i >= 0 && i < rank_, "shape ", str(), ": no dimension ", i);
    return d_[i];
  }
  /// The element count; shape_error when it does not fit index_t (no wrap-around).
  index_t numel() const {
    index_t n = 1;
    for (int i = 0; i < rank_; ++i) {
#if (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__)  // nvcc: the portable form
      const bool overflow = __builtin_mul_overflow(n, d_[i], &n);  // dimensions are >= 0
#else
      const bool overflow = d_[i] != 0 && n > std::numeric_limits<index_t>::max() / d_[i];
      if (!overflow) n *= d_[i];
#endif
      if (overflow)
        throw shape_error(detail::concat("shape ", str(), ": the element count exceeds ",
                                         std::numeric_limits<index_t>::max()));
    }
    return n;
  }
  std::vector<index_t> dims() const { return {d_.begin(), d_.begin() + rank_}; }
  /// This shape with its last dimension replaced by `d` (rank >= 1; no allocation).
  shape_t with_last(index_t d) const {
    check<shape_error>(rank_ >= 1, "shape (): has no last dimension to replace");
    shape_t s = *this;
    s.d_[rank_ - 1] = d;
    return s;
  }
  bool operator==(const shape_t& o) const {
    return rank_ == o.rank_ && std::equal(d_.begin(), d_.begin() + rank_, o.d_.begin());
  }
  std::string str() const {
    std::string s = "(";
    for (int i = 0; i < rank_; ++i) s += (i ? ", " : "") + std::to_string(d_[i]);
    return s + ")";
  }

 private:
  std::array<index_t, max_rank> d_{};
  int rank_ = 0;
};

/// Writes "(d0, d1, ...)", as str(); lets messages take a shape without building a string first.
inline std::ostream& operator<<(std::ostream& os, const shape_t& s) { return os << s.str(); }

/// Throws shape_error naming `what` (the concatenation of the parts) when `seen` differs from
/// `expected`. The message is only built on a mismatch, so a passing check allocates nothing.
template <class... What>
inline void expect_shape(const shape_t& seen, const shape_t& expected, const What&... what) {
  if (!(seen == expected)) check<shape_error>(false, what..., ": shape ", seen, ", expected ", expected);
}

/// Owning tensor in Backend memory. Copyable (deep copy) and movable.
template <class T, class Backend>
class tensor {
 public:
  using value_type = T;
  using backend = Backend;

  tensor() = default;
  explicit tensor(shape_t s) { resize(s); }
  tensor(const tensor& o) : tensor() { *this = o; }
  tensor(tensor&& o) noexcept { swap(o); }
  tensor& operator=(const tensor& o) {
    if (this != &o) {
      resize(o.shape_);
      if (o.numel()) Backend::copy(data_, o.data_, o.numel());
    }
    return *this;
  }
  tensor& operator=(tensor&& o) noexcept {
    tensor tmp(std::move(o));
    swap(tmp);
    return *this;
  }
  ~tensor() { release(); }

  void swap(tensor& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(capacity_, o.capacity_);
    std::swap(shape_, o.shape_);
  }

  /// Sets the shape; reallocates only when the current allocation is too small. Contents are
  /// unspecified afterwards.
  void resize(shape_t s) {
    const index_t n = s.numel();
    if (n > capacity_) {
      release();
      data_ = Backend::template allocate<T>(n);
      capacity_ = n;
    }
    shape_ = s;
  }
  /// resize + fill with zeros.
  void resize_zero(shape_t s) {
    resize(s);
    zero();
  }
  void zero() {
    if (numel()) Backend::fill(data_, numel(), T(0));
  }
  /// Reinterprets the same elements with another shape of equal size.
  void reshape(shape_t s) {
    check<shape_error>(s.numel() == numel(), "reshape ", shape_.str(), " -> ", s.str(),
                       ": element counts differ");
    shape_ = s;
  }

  T* data() { return data_; }
  const T* data() const { return data_; }
  const shape_t& shape() const { return shape_; }
  index_t numel() const { return shape_.numel(); }
  index_t dim(int i) const { return shape_[i]; }
  int rank() const { return shape_.rank(); }
  bool empty() const { return numel() == 0; }

  /// Copies to a host std::vector (any backend).
  std::vector<T> to_host() const {
    std::vector<T> h(static_cast<std::size_t>(numel()));
    if (numel()) Backend::copy_to_host(h.data(), data_, numel());
    return h;
  }
  /// Copies to `h`, resized to numel() (no allocation when its capacity suffices: reuse it across
  /// steps).
  void to_host(std::vector<T>& h) const {
    h.resize(static_cast<std::size_t>(numel()));
    if (numel()) Backend::copy_to_host(h.data(), data_, numel());
  }
  /// Resizes to s and copies host data in (any backend).
  void from_host(shape_t s, std::span<const T> h) {
    check<shape_error>(static_cast<index_t>(h.size()) == s.numel(), "tensor::from_host: ",
                       h.size(), " values for shape ", s.str(), " (", s.numel(), " expected)");
    resize(s);
    if (numel()) Backend::copy_from_host(data_, h.data(), numel());
  }
  static tensor from_host_data(shape_t s, std::span<const T> h) {
    tensor t;
    t.from_host(s, h);
    return t;
  }

  /// Bounds-checked element access for host-memory backends (tests, tools).
  T& at(std::initializer_list<index_t> idx) {
    static_assert(Backend::host_memory, "tensor::at needs a host-memory backend; use to_host()");
    return data_[offset(idx)];
  }
  T at(std::initializer_list<index_t> idx) const {
    static_assert(Backend::host_memory, "tensor::at needs a host-memory backend; use to_host()");
    return data_[offset(idx)];
  }
  std::span<T> span() {
    static_assert(Backend::host_memory, "tensor::span needs a host-memory backend; use to_host()");
    return {data_, static_cast<std::size_t>(numel())};
  }
  std::span<const T> span() const {
    static_assert(Backend::host_memory, "tensor::span needs a host-memory backend; use to_host()");
    return {data_, static_cast<std::size_t>(numel())};
  }

 private:
  index_t offset(std::initializer_list<index_t> idx) const {
    check<shape_error>(static_cast<int>(idx.size()) == rank(), "tensor", shape_.str(), ": ",
                       idx.size(), " indices for rank ", rank());
    index_t off = 0;
    int i = 0;
    for (index_t v : idx) {
      check<shape_error>(v >= 0 && v < shape_[i], "tensor", shape_.str(), ": index ", v,
                         " out of range for dimension ", i);
      off = off * shape_[i] + v;
      ++i;
    }
    return off;
  }
  void release() {
    if (data_) Backend::deallocate(data_);
    data_ = nullptr;
    capacity_ = 0;
  }

  T* data_ = nullptr;
  index_t capacity_ = 0;
  shape_t shape_ = shape_t{0};  // a default tensor holds no elements (not a rank-0 scalar)
};

}  // namespace genlm
