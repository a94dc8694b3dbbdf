// genlm/parallel/mpi.hpp - the MPI communicator policy (CPU data parallelism), the MPI
// environment, and a main() wrapper that turns failures into clear per-rank errors.
//
// Include only in programs built against MPI (CMake: find_package(MPI), link MPI::MPI_CXX).
//
//   int main(int argc, char** argv) {
//     return genlm::parallel::mpi_main(argc, argv, [&](int argc, char** argv) {
//       genlm::comm::mpi comm(MPI_COMM_WORLD, /*timeout_s=*/120);
//       ... data_parallel_trainer<Model, genlm::comm::mpi> tr(model, comm, ...);
//       return 0;
//     });
//   }
//
// Failure behaviour (docs/DISTRIBUTED.md):
// - Every collective of comm::mpi runs under a watchdog (parallel/watchdog.hpp). If it does not
//   complete within timeout_s (a peer died, hung, or is stuck in I/O), the rank prints
//     genlm[rank 0/2]: error: MPI collective 'allreduce of gradients (step 12)' did not complete
//     within 30 s ...
//   and calls MPI_Abort, which ends every process of the job.
// - mpi_environment installs SIGTERM/SIGINT/SIGHUP handlers that print what the rank was doing
//   before it dies, so a rank that the launcher kills (because a peer died) says so.
// - mpi_main prints a collective_error (e.g. a configuration mismatch, thrown on every rank) on
//   every rank and exits with status 2 after MPI_Finalize; any other exception is rank-local: the
//   rank prints it and calls MPI_Abort (status 1) so that its peers do not wait for it.
// Checkpoints are written by rank 0 with the atomic writer, so a job ended at any point leaves
// the previous checkpoint intact.
#pragma once
#include <mpi.h>

#include <climits>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <unistd.h>

#include <genlm/core/error.hpp>
#include <genlm/parallel/comm.hpp>
#include <genlm/parallel/watchdog.hpp>

namespace genlm::parallel {

namespace detail {
inline int world_rank = 0, world_size = 1;

/// Async-signal-safe: writes "genlm[rank R/P]: terminated by signal S ..." and re-raises.
inline void append(char*& p, char* end, const char* s) {
  while (*s && p < end) *p++ = *s++;
}
inline void append_int(char*& p, char* end, long v) {
  char tmp[24];
  int n = 0;
  if (v < 0) {
    if (p < end) *p++ = '-';
    v = -v;
  }
  do tmp[n++] = char('0' + v % 10);
  while ((v /= 10) > 0 && n < 23);
  while (n > 0 && p < end) *p++ = tmp[--n];
}
inline void termination_handler(int sig) {
  char buf[600];
  char *p = buf, *end = buf + sizeof(buf) - 1;
  append(p, end, "genlm[rank ");
  append_int(p, end, world_rank);
  append(p, end, "/");
  append_int(p, end, world_size);
  append(p, end, "]: error: terminated by signal ");
  append_int(p, end, sig);
  append(p, end, " while ");
  char activity[256];
  read_activity(activity, sizeof(activity));
  append(p, end, activity);
  append(p, end, " (the MPI launcher ends the whole job when one rank fails or the job is cancelled; "
                 "see the other ranks' messages; checkpoints already written are intact)\n");
  [[maybe_unused]] const auto w = ::write(2, buf, std::size_t(p - buf));
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

inline std::string mpi_error_text(int code) {
  char s[MPI_MAX_ERROR_STRING];
  int n = 0;
  if (MPI_Error_string(code, s, &n) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  return std::string(s, std::size_t(n));
}

template <class T>
MPI_Datatype mpi_type() {
  if constexpr (std::is_same_v<T, float>) return MPI_FLOAT;
  else if constexpr (std::is_same_v<T, double>) return MPI_DOUBLE;
  else if constexpr (std::is_same_v<T, std::int64_t>) return MPI_INT64_T;
  else if constexpr (std::is_same_v<T, std::uint64_t>) return MPI_UINT64_T;
  else if constexpr (std::is_same_v<T, int>) return MPI_INT;
  else if constexpr (std::is_same_v<T, char> || std::is_same_v<T, unsigned char>) return MPI_BYTE;
  else static_assert(sizeof(T) == 0, "comm::mpi: unsupported element type");
}
}  // namespace detail

/// MPI_Init_thread / MPI_Finalize. Requests MPI_THREAD_MULTIPLE so that the watchdog thread may
/// call MPI_Abort while the main thread is blocked in a collective (without it, the watchdog
/// ends the process with _Exit instead, which the launcher also turns into a job abort).
class mpi_environment {
 public:
  mpi_environment(int& argc, char**& argv, bool install_signal_handlers = true) {
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
      const int rc = MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided_);
      check<comm_error>(rc == MPI_SUCCESS, "MPI_Init_thread failed: ", detail::mpi_error_text(rc));
      owner_ = true;
    } else {
      MPI_Query_thread(&provided_);
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &detail::world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &detail::world_size);
    if (install_signal_handlers)
      for (int s : {SIGTERM, SIGINT, SIGHUP}) std::signal(s, detail::termination_handler);
  }
  ~mpi_environment() {
    int fin = 0;
    MPI_Finalized(&fin);
    if (owner_ && !fin) MPI_Finalize();
  }
  mpi_environment(const mpi_environment&) = delete;
  mpi_environment& operator=(const mpi_environment&) = delete;
  int thread_level() const { return provided_; }
  static int world_rank() { return detail::world_rank; }
  static int world_size() { return detail::world_size; }

 private:
  int provided_ = MPI_THREAD_SINGLE;
  bool owner_ = false;
};

/// Prints "genlm[rank R/P]: <text>" to stderr (every rank; one write per call).
inline void rank_print(std::string_view text) {
  std::string s = genlm::detail::concat("genlm[rank ", detail::world_rank, "/", detail::world_size, "]: ", text, "\n");
  std::fwrite(s.data(), 1, s.size(), stderr);
  std::fflush(stderr);
}

/// Collective over MPI_COMM_WORLD, for a program's start before any communicator exists (so
/// before any watchdog): every rank passes the error of its own start-up checks (its command
/// line, its options; empty: none). Returns when no rank has one; otherwise every rank throws
/// collective_error (mpi_main: status 2 after a clean MPI_Finalize), a failing rank with its own
/// error, the others naming the first failing rank. Without it a rank that stops at its command
/// line leaves its peers waiting in their first collective (MPI_Comm_dup has no timeout).
inline void startup_check(const std::string& err) {
  int mine = err.empty() ? detail::world_size : detail::world_rank, first = detail::world_size;
  MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (first == detail::world_size) return;
  throw collective_error(!err.empty() ? err
                                      : genlm::detail::concat("rank ", first,
                                                              " stopped at its start-up checks (its message says why)"));
}

/// Runs body(argc, argv) inside an MPI environment; see the header comment for what happens on
/// errors. Returns body's status (0 = success), 2 after a collective error, and never returns
/// after a rank-local error (MPI_Abort with status 1).
template <class F>
int mpi_main(int argc, char** argv, F&& body) {
  std::unique_ptr<mpi_environment> env;
  try {
    env = std::make_unique<mpi_environment>(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "genlm: error: %s\n", e.what());
    return 1;
  }
  try {
    return body(argc, argv);
  } catch (const collective_error& e) {
    rank_print(genlm::detail::concat("error: ", e.what()));
    return 2;  // every rank threw the same error: env's destructor finalizes MPI cleanly
  } catch (const std::exception& e) {
    rank_print(genlm::detail::concat("error: ", e.what(), "\n(this rank failed on its own; aborting the job)"));
    MPI_Abort(MPI_COMM_WORLD, 1);
    return 1;
  }
}

}  // namespace genlm::parallel

namespace genlm::comm {

/// Communicator policy over an MPI communicator (host memory). Holds a duplicate of the given
/// communicator (so its traffic never mixes with the program's own) with MPI_ERRORS_RETURN, and a
/// watchdog that aborts the job when a collective exceeds timeout_s (<= 0: wait forever).
class mpi {
 public:
  static constexpr bool device_memory = false;

  explicit mpi(MPI_Comm base = MPI_COMM_WORLD, double timeout_s = 300.0) {
    int inited = 0;
    MPI_Initialized(&inited);
    check<comm_error>(inited != 0, "comm::mpi: MPI is not initialised (create a parallel::mpi_environment first)");
    ok(MPI_Comm_dup(base, &comm_), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    MPI_Query_thread(&thread_level_);
    set_timeout(timeout_s);
  }
  ~mpi() {
    wd_.reset();
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
  }
  mpi(const mpi&) = delete;
  mpi& operator=(const mpi&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  std::string name() const { return "mpi"; }
  MPI_Comm native() const { return comm_; }
  double timeout() const { return wd_ ? wd_->timeout() : 0.0; }

  /// Changes the collective timeout (seconds; <= 0 disables the watchdog).
  void set_timeout(double timeout_s) {
    wd_.reset();
    const int rank = rank_, size = size_, level = thread_level_;
    wd_ = std::make_unique<parallel::watchdog>(timeout_s, [rank, size, level](const std::string& what, double t) {
      parallel::rank_print(genlm::detail::concat(
          "error: MPI collective '", what, "' did not complete within ", t, " s on rank ", rank, " of ", size,
          ": another rank has died, hung, or is far behind (raise the timeout if a step or a checkpoint write "
          "legitimately takes longer); aborting the job. Checkpoints already written are intact."));
      if (level >= MPI_THREAD_MULTIPLE) MPI_Abort(MPI_COMM_WORLD, 3);
      std::_Exit(3);
    });
  }

  template <class T>
  void allreduce_sum(T* p, std::size_t n, std::string_view what = "allreduce") {
    allreduce(p, n, MPI_SUM, what);
  }
  template <class T>
  void allreduce_sum_host(T* p, std::size_t n, std::string_view what = "allreduce") {
    allreduce(p, n, MPI_SUM, what);
  }
  template <class T>
  void allreduce_max_host(T* p, std::size_t n, std::string_view what = "allreduce (max)") {
    allreduce(p, n, MPI_MAX, what);
  }
  template <class T>
  void broadcast_host(T* p, std::size_t n, int root, std::string_view what = "broadcast") {
    parallel::watchdog_guard g(wd_.get(), what);
    for (std::size_t lo = 0; lo < n; lo += chunk) {
      const int c = int(std::min(chunk, n - lo));
      ok(MPI_Bcast(p + lo, c, parallel::detail::mpi_type<T>(), root, comm_), what);
    }
  }
  void broadcast_bytes(std::string& bytes, int root, std::string_view what = "broadcast") {
    std::uint64_t n = bytes.size();
    broadcast_host(&n, 1, root, what);
    if (rank_ != root) parallel::resize_bytes(bytes, n, genlm::detail::concat("comm (", what, ") on rank ", rank_));
    broadcast_host(bytes.data(), std::size_t(n), root, what);
  }
  std::vector<std::string> allgather(const std::string& s, std::string_view what = "allgather") {
    parallel::watchdog_guard g(wd_.get(), what);
    const std::int64_t mine = std::int64_t(s.size());
    std::vector<std::int64_t> lens(std::size_t(size_), 0);
    ok(MPI_Allgather(&mine, 1, MPI_INT64_T, lens.data(), 1, MPI_INT64_T, comm_), what);
    std::vector<int> counts(static_cast<std::size_t>(size_)), displs(static_cast<std::size_t>(size_));
    std::int64_t total = 0;
    for (int r = 0; r < size_; ++r) {
      counts[std::size_t(r)] = int(lens[std::size_t(r)]);
      displs[std::size_t(r)] = int(total);
      total += lens[std::size_t(r)];
    }
    check<comm_error>(total < INT_MAX, "comm::mpi::allgather (", what, "): ", total, " bytes is too much");
    std::string all(std::size_t(total), '\0');
    ok(MPI_Allgatherv(s.data(), int(mine), MPI_BYTE, all.data(), counts.data(), displs.data(), MPI_BYTE, comm_),
       what);
    std::vector<std::string> out;
    for (int r = 0; r < size_; ++r)
      out.push_back(all.substr(std::size_t(displs[std::size_t(r)]), std::size_t(counts[std::size_t(r)])));
    return out;
  }
  void barrier(std::string_view what = "barrier") {
    parallel::watchdog_guard g(wd_.get(), what);
    ok(MPI_Barrier(comm_), what);
  }

  /// Non-blocking bucketed all-reduce: every bucket (the last one first) is issued with
  /// MPI_Iallreduce, then completed with MPI_Waitany; on_bucket_done(ptr, n) runs on each bucket as
  /// soon as it is reduced (while the others are still in flight). Host memory only (CUDA-aware
  /// MPI is not assumed).
  template <class T, class F>
  void allreduce_sum_buckets(T* p, std::size_t n, bool host_pointer, std::size_t bucket_elems, F&& on_bucket_done,
                             std::string_view what = "bucketed allreduce") {
    check<comm_error>(host_pointer, "comm::mpi: all-reduce of device memory is not supported (CUDA-aware MPI is not "
                                    "assumed); use comm::nccl for GPU buffers");
    if (bucket_elems == 0 || bucket_elems > chunk) bucket_elems = std::min<std::size_t>(n ? n : 1, chunk);
    struct bucket {
      std::size_t lo, n;
    };
    std::vector<bucket> buckets;
    for (std::size_t hi = n; hi > 0;) {
      const std::size_t lo = hi > bucket_elems ? hi - bucket_elems : 0;
      buckets.push_back({lo, hi - lo});
      hi = lo;
    }
    parallel::watchdog_guard g(wd_.get(), what);
    std::vector<MPI_Request> req(buckets.size(), MPI_REQUEST_NULL);
    for (std::size_t i = 0; i < buckets.size(); ++i)
      ok(MPI_Iallreduce(MPI_IN_PLACE, p + buckets[i].lo, int(buckets[i].n), parallel::detail::mpi_type<T>(), MPI_SUM,
                        comm_, &req[i]),
         what);
    for (std::size_t done = 0; done < buckets.size(); ++done) {
      int idx = MPI_UNDEFINED;
      ok(MPI_Waitany(int(req.size()), req.data(), &idx, MPI_STATUS_IGNORE), what);
      check<comm_error>(idx != MPI_UNDEFINED, "comm::mpi: ", what, ": MPI_Waitany found no pending bucket");
      on_bucket_done(p + buckets[std::size_t(idx)].lo, buckets[std::size_t(idx)].n);
    }
  }

 private:
  static constexpr std::size_t chunk = std::size_t(1) << 30;  // elements per MPI call (int counts)

  template <class T>
  void allreduce(T* p, std::size_t n, MPI_Op op, std::string_view what) {
    parallel::watchdog_guard g(wd_.get(), what);
    for (std::size_t lo = 0; lo < n; lo += chunk) {
      const int c = int(std::min(chunk, n - lo));
      ok(MPI_Allreduce(MPI_IN_PLACE, p + lo, c, parallel::detail::mpi_type<T>(), op, comm_), what);
    }
  }
  void ok(int rc, std::string_view what) const {
    if (rc != MPI_SUCCESS)
      throw comm_error(genlm::detail::concat("rank ", rank_, ": MPI call failed in '", what,
                                             "': ", parallel::detail::mpi_error_text(rc)));
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1, thread_level_ = MPI_THREAD_SINGLE;
  std::unique_ptr<parallel::watchdog> wd_;
};

}  // namespace genlm::comm
