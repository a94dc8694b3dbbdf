// genlm/parallel/comm.hpp - communicator policies for data-parallel training, and the helpers
// that every policy shares (error types, hashing, cross-rank agreement checks).
//
// A communicator policy is a class with this interface (duck-typed; see comm::single below, and
// comm::mpi in parallel/mpi.hpp, comm::nccl in parallel/nccl.hpp):
//
//   static constexpr bool device_memory;   // allreduce_sum works on device (GPU) pointers
//   int rank() const; int size() const;
//   std::string name() const;              // "single", "mpi", "nccl"
//   template <class T> void allreduce_sum(T* p, std::size_t n, std::string_view what);
//                                           // p in the policy's memory space (host or device)
//   template <class T> void allreduce_sum_host(T* p, std::size_t n, std::string_view what);
//   template <class T> void allreduce_max_host(T* p, std::size_t n, std::string_view what);
//   template <class T> void broadcast_host(T* p, std::size_t n, int root, std::string_view what);
//   void broadcast_bytes(std::string& bytes, int root, std::string_view what);  // resizes on receivers
//   std::vector<std::string> allgather(const std::string& s, std::string_view what);
//   void barrier(std::string_view what);
//   template <class T, class F> void allreduce_sum_buckets(T* p, std::size_t n, bool host_pointer,
//        std::size_t bucket_elems, F&& on_bucket_done, std::string_view what);
//                                           // all buckets issued non-blocking (last bucket first,
//                                           // the order in which backward produces gradients);
//                                           // on_bucket_done(T* host_or_dev_ptr, n) on every element
//                                           // exactly once, as buckets complete (buckets that
//                                           // complete together may come as one range: comm::nccl
//                                           // reports the whole buffer once)
//
// T is float, double, std::int64_t or std::uint64_t. `what` names the operation in the error that
// a rank prints when a collective times out (see parallel/mpi.hpp, parallel/nccl.hpp).
//
// Every collective must be called by every rank in the same order. Errors that every rank detects
// identically (a configuration mismatch, parameter drift, non-finite gradients after the
// all-reduce) are thrown as collective_error on every rank, so a program can report them on each
// rank and shut down cleanly; everything else is a rank-local failure that must end the job
// (parallel::mpi_main aborts it).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <genlm/core/error.hpp>
#include <genlm/core/random.hpp>

namespace genlm {

/// An error detected identically by every rank (thrown on every rank from the same collective
/// call), e.g. mismatching configurations or diverged parameters.
class collective_error : public error {
 public:
  using error::error;
};

/// Ranks run with different model or training settings (collective).
class agreement_error : public collective_error {
 public:
  using collective_error::collective_error;
};

/// Replicas' parameters diverged beyond the tolerance (collective).
class drift_error : public collective_error {
 public:
  using collective_error::collective_error;
};

/// A communication failure (timeout, a peer that died, an MPI / NCCL error code).
class comm_error : public error {
 public:
  using error::error;
};

namespace parallel {

/// Sizes `bytes` to `n` bytes for a receive or a read; a size this host cannot allocate throws
/// genlm::error naming `what` and the byte count instead of a bare std::bad_alloc /
/// std::length_error.
inline void resize_bytes(std::string& bytes, std::uint64_t n, std::string_view what) {
  try {
    check(n <= bytes.max_size(), "too large for this host");
    bytes.resize(static_cast<std::size_t>(n));
  } catch (const std::exception& e) {  // std::bad_alloc, std::length_error, the check above
    throw error(genlm::detail::concat(what, ": cannot allocate ", n, " bytes (", e.what(), ")"));
  }
}

/// 64-bit hash of a byte range (word-wise multiply-xor mixing; fast enough to hash a whole
/// parameter buffer every few hundred steps). Equal bytes give equal hashes on every platform of
/// the same endianness.
inline std::uint64_t hash_bytes(const void* data, std::size_t n, std::uint64_t seed = 0x6A09E667F3BCC909ull) {
  const auto* p = static_cast<const unsigned char*>(data);
  std::uint64_t h = splitmix64(seed ^ n);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = (h ^ splitmix64(w + i)) * 0x9FB21C651E98DF25ull;
    h ^= h >> 29;
  }
  std::uint64_t tail = 0;
  for (std::size_t j = 0; i + j < n; ++j) tail |= std::uint64_t(p[i + j]) << (8 * j);
  return splitmix64(h ^ splitmix64(tail ^ 0xFF51AFD7ED558CCDull));
}
inline std::uint64_t hash_combine(std::uint64_t a, std::uint64_t b) { return splitmix64(a ^ (b + 0x9E3779B97F4A7C15ull + (a << 6))); }

/// The contiguous share [first, second) of n items that rank `rank` of `size` takes: the first
/// n % size ranks take one item more. Ranks past n get empty shares.
inline std::pair<std::size_t, std::size_t> shard_range(std::size_t n, int rank, int size) {
  check<value_error>(size >= 1 && rank >= 0 && rank < size, "shard_range: rank ", rank, " of ", size);
  const std::size_t r = std::size_t(rank), p = std::size_t(size), base = n / p, extra = n % p;
  const std::size_t lo = r * base + std::min(r, extra);
  return {lo, lo + base + (r < extra ? 1 : 0)};
}

/// Writes one line to stderr on rank 0 only (rank-0 logging).
template <class Comm, class... Args>
void log0(const Comm& comm, Args&&... args) {
  if (comm.rank() != 0) return;
  const std::string s = genlm::detail::concat(std::forward<Args>(args)..., "\n");
  std::fwrite(s.data(), 1, s.size(), stderr);
  std::fflush(stderr);
}

/// One "key = value" line of a run description that must be identical on every rank.
using setting = std::pair<std::string, std::string>;

namespace detail {
inline std::string encode_settings(const std::vector<setting>& s) {
  std::string out;
  for (const auto& [k, v] : s) {
    out += k;
    out += '\x1f';
    out += v;
    out += '\x1e';
  }
  return out;
}
inline std::vector<setting> decode_settings(const std::string& s) {
  std::vector<setting> out;
  std::size_t pos = 0;
  while (pos < s.size()) {
    const std::size_t us = s.find('\x1f', pos), rs = s.find('\x1e', pos);
    if (us == std::string::npos || rs == std::string::npos || us > rs) break;
    out.emplace_back(s.substr(pos, us - pos), s.substr(us + 1, rs - us - 1));
    pos = rs + 1;
  }
  return out;
}
inline std::string lookup(const std::vector<setting>& s, const std::string& key) {
  for (const auto& [k, v] : s)
    if (k == key) return v;
  return "<not set>";
}
}  // namespace detail

/// Checks that every rank holds the same settings (collective: call on every rank). On a
/// mismatch throws agreement_error on EVERY rank; the message names each differing setting with
/// rank 0's value and the other rank's value, e.g.
///   "configuration mismatch across 2 ranks (each rank must run the same model and training
///    settings): 'model config': rank 0 has {layers=2 hidden=32 ...} but rank 1 has {layers=4 ...}"
template <class Comm>
void agree(Comm& comm, const std::vector<setting>& settings, std::string_view what = "configuration") {
  const std::vector<std::string> all = comm.allgather(detail::encode_settings(settings), "configuration check");
  const std::vector<setting> ref = detail::decode_settings(all.at(0));
  std::string diffs;
  int bad_ranks = 0;
  for (std::size_t r = 1; r < all.size(); ++r) {
    if (all[r] == all[0]) continue;
    ++bad_ranks;
    const std::vector<setting> mine = detail::decode_settings(all[r]);
    std::vector<std::string> keys;
    for (const auto& kv : ref) keys.push_back(kv.first);
    for (const auto& kv : mine)
      if (std::find(keys.begin(), keys.end(), kv.first) == keys.end()) keys.push_back(kv.first);
    for (const auto& k : keys) {
      const std::string a = detail::lookup(ref, k), b = detail::lookup(mine, k);
      if (a == b) continue;
      diffs += genlm::detail::concat("\n  '", k, "': rank 0 has {", a, "} but rank ", r, " has {", b, "}");
    }
  }
  if (bad_ranks)
    throw agreement_error(genlm::detail::concat(what, " mismatch across ", all.size(), " ranks (", bad_ranks,
                                                " rank(s) differ from rank 0; every rank must run the same model "
                                                "and training settings):",
                                                diffs));
}

/// Runs fn() on every rank; if it throws a genlm::error (or std::exception) on ANY rank, every
/// rank throws collective_error naming the rank(s) and their messages. Use it around rank-local
/// work that may fail (reading a file part, parsing) and is followed by collectives, so that a bad
/// input file ends every rank with the same clear error instead of leaving peers waiting.
template <class Comm, class F>
void collective_try(Comm& comm, std::string_view what, F&& fn) {
  std::string err;
  try {
    fn();
  } catch (const std::exception& e) {
    err = e.what();
    if (err.empty()) err = "unknown error";
  }
  const std::vector<std::string> all = comm.allgather(err, what);
  std::string msg;
  for (std::size_t r = 0; r < all.size(); ++r)
    if (!all[r].empty()) msg += genlm::detail::concat(msg.empty() ? "" : "\n  ", "rank ", r, ": ", all[r]);
  if (!msg.empty()) throw collective_error(genlm::detail::concat(what, " failed: ", msg));
}

}  // namespace parallel

namespace comm {

/// The trivial communicator: one process, every collective is the identity. A data-parallel
/// trainer on comm::single reproduces genlm::trainer bit for bit.
struct single {
  static constexpr bool device_memory = false;

  int rank() const { return 0; }
  int size() const { return 1; }
  std::string name() const { return "single"; }

  template <class T>
  void allreduce_sum(T*, std::size_t, std::string_view = {}) {}
  template <class T>
  void allreduce_sum_host(T*, std::size_t, std::string_view = {}) {}
  template <class T>
  void allreduce_max_host(T*, std::size_t, std::string_view = {}) {}
  template <class T>
  void broadcast_host(T*, std::size_t, int root, std::string_view = {}) {
    check<value_error>(root == 0, "comm::single: broadcast root ", root, " (only rank 0 exists)");
  }
  void broadcast_bytes(std::string&, int root, std::string_view = {}) {
    check<value_error>(root == 0, "comm::single: broadcast root ", root, " (only rank 0 exists)");
  }
  std::vector<std::string> allgather(const std::string& s, std::string_view = {}) { return {s}; }
  void barrier(std::string_view = {}) {}
  template <class T, class F>
  void allreduce_sum_buckets(T* p, std::size_t n, bool /*host_pointer*/, std::size_t bucket_elems, F&& on_bucket_done,
                             std::string_view = {}) {
    if (bucket_elems == 0) bucket_elems = n;
    for (std::size_t hi = n; hi > 0;) {
      const std::size_t lo = hi > bucket_elems ? hi - bucket_elems : 0;
      on_bucket_done(p + lo, hi - lo);
      hi = lo;
    }
  }
};

}  // namespace comm
}  // namespace genlm
