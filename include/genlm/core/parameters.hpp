// genlm/core/parameters.hpp - one contiguous buffer for all parameters of a model, with named views.
//
// Layers declare their parameters (Hugging Face state-dict name + shape) while the model is being
// constructed; finalize() then allocates one flat value buffer, and the first use of gradients
// one flat gradient buffer (inference never allocates it). AdamW is then one fused pass over the
// flat buffers and a data-parallel all-reduce is one call.
#pragma once
#include <algorithm>
#include <atomic>
#include <map>
#include <system_error>
#include <thread>
#include <string>
#include <vector>

#include <genlm/core/error.hpp>
#include <genlm/core/random.hpp>
#include <genlm/core/tensor.hpp>

namespace genlm {

/// Handle of one parameter in a parameter_store.
struct param_id {
  std::size_t index = static_cast<std::size_t>(-1);
};

/// Initialisation rule of a parameter (applied by parameter_store::initialize).
enum class init_kind { normal, zeros, ones };

template <class T, class Backend>
class parameter_store {
 public:
  struct entry {
    std::string name;  // Hugging Face state-dict name, e.g. "encoder.layer.0.attention.self.query.weight"
    shape_t shape;
    index_t offset = 0;  // element offset into the flat buffers
    init_kind init = init_kind::normal;
    double init_std = 0.02;
  };

  parameter_store() = default;
  parameter_store(const parameter_store&) = delete;
  parameter_store& operator=(const parameter_store&) = delete;

  /// Declares a parameter. Offsets are aligned to 16 elements (64 bytes for float).
  param_id add(const std::string& name, shape_t shape, init_kind init = init_kind::normal, double init_std = 0.02) {
    check(!finalized_, "parameter_store: cannot add '", name, "' after finalize()");
    check(!by_name_.count(name), "parameter_store: duplicate parameter name '", name, "'");
    entry e{name, shape, total_, init, init_std};
    total_ += (shape.numel() + 15) / 16 * 16;
    by_name_[name] = entries_.size();
    entries_.push_back(e);
    return {entries_.size() - 1};
  }

  /// Allocates the flat value buffer (zero-filled); the gradient buffer follows on first use.
  void finalize() {
    check(!finalized_, "parameter_store: finalize() called twice");
    values_.resize_zero({total_});
    finalized_ = true;
  }
  bool finalized() const { return finalized_; }

  /// Fills every parameter by its init rule with a seeded generator (normal(0, std) for weights,
  /// as Hugging Face's _init_weights with initializer_range; zeros for biases; ones for LN gains).
  /// Parameter i draws from rng(seed, i): element j of a normal one is T(normal() * std) of that
  /// stream, whatever `threads` (0: std::thread::hardware_concurrency()) - the counter-based
  /// generator lets each thread start a chunk at its own counter (2 per value).
  void initialize(std::uint64_t seed, int threads = 0) {
    require_finalized("initialize");
    // host-memory backends are written in place; others through one staging copy
    std::vector<T> staging(Backend::host_memory ? 0 : static_cast<std::size_t>(total_), T(0));
    T* host = Backend::host_memory ? values_.data() : staging.data();
    struct chunk {
      std::size_t entry, begin, end;
    };
    constexpr std::size_t chunk_values = std::size_t(1) << 18;
    std::vector<chunk> work;
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      const entry& e = entries_[i];
      const auto n = static_cast<std::size_t>(e.shape.numel());
      if (e.init != init_kind::normal) {
        std::fill(host + e.offset, host + e.offset + n, e.init == init_kind::ones ? T(1) : T(0));
        continue;
      }
      for (std::size_t b = 0; b < n; b += chunk_values) work.push_back({i, b, std::min(n, b + chunk_values)});
    }
    // A chunk assumes that every value before it took two draws; normal() redraws a zero first
    // uniform (p = 2^-53), which shifts the rest of its parameter: such a parameter is redone serially.
    std::vector<char> shifted(work.size(), 0);
    std::atomic<std::size_t> next{0};
    auto worker = [&] {
      for (std::size_t c; (c = next.fetch_add(1)) < work.size();) {
        const chunk& w = work[c];
        const entry& e = entries_[w.entry];
        rng g(seed, w.entry);
        g.set_state(g.key(), 2 * std::uint64_t(w.begin));
        g.fill_normal(host + e.offset + w.begin, w.end - w.begin, e.init_std);
        shifted[c] = g.counter() != 2 * std::uint64_t(w.end);
      }
    };
    // threads: as asked (default all), but one per ~4 chunks at most (small models: this one only)
    const auto hw = std::max(1u, std::thread::hardware_concurrency());
    const std::size_t want = std::min((work.size() + 3) / 4, std::size_t(threads > 0 ? unsigned(threads) : hw));
    std::vector<std::thread> pool;
    pool.reserve(want);  // (a failure here happens before any thread runs)
    for (std::size_t t = 1; t < want; ++t) {
      try {
        pool.emplace_back(worker);
      } catch (const std::system_error&) {  // no more threads: the others (and this one) do the rest
        break;
      }
    }
    worker();
    for (auto& t : pool) t.join();
    for (std::size_t c = 0; c < work.size(); ++c) {
      if (!shifted[c]) continue;
      const std::size_t i = work[c].entry;
      const entry& e = entries_[i];
      rng g(seed, i);
      g.fill_normal(host + e.offset, static_cast<std::size_t>(e.shape.numel()), e.init_std);
      while (c + 1 < work.size() && work[c + 1].entry == i) ++c;
    }
    if (!Backend::host_memory) values_.from_host({total_}, std::span<const T>(staging));
  }

  T* value(param_id id) { return values_.data() + at(id).offset; }
  const T* value(param_id id) const { return values_.data() + at(id).offset; }
  T* grad(param_id id) { return grads().data() + at(id).offset; }
  const T* grad(param_id id) const { return grads().data() + at(id).offset; }

  const entry& at(param_id id) const {
    check<lookup_error>(id.index < entries_.size(), "parameter_store: invalid parameter handle ", id.index);
    return entries_[id.index];
  }
  /// Looks a parameter up by its state-dict name; throws lookup_error naming it.
  param_id find(const std::string& name) const {
    auto it = by_name_.find(name);
    check<lookup_error>(it != by_name_.end(), "parameter_store: no parameter named '", name, "' (",
                        entries_.size(), " parameters, first '", entries_.empty() ? "" : entries_[0].name, "')");
    return {it->second};
  }
  bool contains(const std::string& name) const { return by_name_.count(name) != 0; }

  const std::vector<entry>& entries() const { return entries_; }
  std::size_t size() const { return entries_.size(); }
  /// Number of elements in the flat buffers (including alignment gaps, which stay zero).
  index_t flat_size() const { return total_; }
  /// Number of trainable scalars (without gaps).
  index_t count() const {
    index_t n = 0;
    for (const auto& e : entries_) n += e.shape.numel();
    return n;
  }
  tensor<T, Backend>& values() { return values_; }
  const tensor<T, Backend>& values() const { return values_; }
  /// The flat gradient buffer, allocated (zero-filled) on first use.
  tensor<T, Backend>& grads() { return ensure_grads(); }
  const tensor<T, Backend>& grads() const { return ensure_grads(); }
  void zero_grads() { ensure_grads().zero(); }

  /// Copies one parameter to/from the host (shape-checked, naming the parameter).
  std::vector<T> get(const std::string& name) const {
    const entry& e = at(find(name));
    std::vector<T> h(static_cast<std::size_t>(e.shape.numel()));
    if (!h.empty()) Backend::copy_to_host(h.data(), values_.data() + e.offset, e.shape.numel());
    return h;
  }
  void set(const std::string& name, const shape_t& shape, std::span<const T> data) {
    require_finalized("set");
    const entry& e = at(find(name));
    check<shape_error>(shape == e.shape, "parameter '", name, "': shape ", shape.str(), ", expected ",
                       e.shape.str());
    check<shape_error>(static_cast<index_t>(data.size()) == e.shape.numel(), "parameter '", name, "': ",
                       data.size(), " values, expected ", e.shape.numel());
    if (!data.empty()) Backend::copy_from_host(values_.data() + e.offset, data.data(), e.shape.numel());
  }
  std::vector<T> get_grad(const std::string& name) const {
    const entry& e = at(find(name));
    std::vector<T> h(static_cast<std::size_t>(e.shape.numel()));
    if (!h.empty()) Backend::copy_to_host(h.data(), grads().data() + e.offset, e.shape.numel());
    return h;
  }

 private:
  void require_finalized(const char* what) const {
    check(finalized_, "parameter_store::", what, ": call finalize() first");
  }
  std::vector<entry> entries_;
  std::map<std::string, std::size_t> by_name_;
  index_t total_ = 0;
  bool finalized_ = false;
  tensor<T, Backend>& ensure_grads() const {
    require_finalized("grads");
    if (grads_.numel() != total_) grads_.resize_zero({total_});
    return grads_;
  }
  tensor<T, Backend> values_;
  mutable tensor<T, Backend> grads_;  // allocated by the first gradient access
};

/// Per-call settings shared by all layers of a forward pass.
struct run_context {
  bool training = false;        // dropout active
  std::uint64_t seed = 0;       // dropout stream seed
  std::uint64_t step = 0;       // training step (dropout counter)
};

}  // namespace genlm
