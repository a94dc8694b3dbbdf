// genlm/parallel/watchdog.hpp - bounded waiting for collectives.
//
// MPI gives no reliable way to notice a dead or hung peer: MPI_ERRORS_RETURN is not guaranteed to
// return from a collective whose partner died, and a rank stuck in computation or I/O sends no
// error at all. So every collective of a communicator is guarded by a watchdog: arm() before the
// collective, disarm() after; a background thread calls the handler (which ends the job, e.g. with
// MPI_Abort and a clear message) when a collective stays armed for longer than the timeout.
//
// The current activity ("allreduce of gradients (step 12)") is also kept in a process-wide
// buffer that the termination-signal handler of parallel/mpi.hpp prints, so that a rank killed by
// the launcher (because a peer died) says what it was doing.
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <iterator>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

namespace genlm::parallel {

namespace detail {
/// What this process is doing, for the termination-signal handler's message. Written by every
/// thread that runs collectives (one per GPU in comm::nccl's single-process mode) and read by a
/// signal handler, so the characters are relaxed atomics: lock-free (async-signal-safe) and free
/// of data races; two writers at once may interleave, which only blurs a diagnostic. Empty until
/// the first set_activity ("starting up").
inline std::atomic<char> activity_chars[256]{};
static_assert(std::atomic<char>::is_always_lock_free, "the activity text must be readable from a signal handler");
inline void set_activity(std::string_view what) {
  const std::size_t n = std::min(what.size(), std::size(activity_chars) - 1);
  for (std::size_t i = 0; i < n; ++i) activity_chars[i].store(what[i], std::memory_order_relaxed);
  activity_chars[n].store('\0', std::memory_order_relaxed);
}
/// Copies the current activity into out[0, cap) with a terminating NUL (async-signal-safe).
inline void read_activity(char* out, std::size_t cap) {
  if (cap == 0) return;
  std::size_t i = 0;
  for (; i + 1 < cap && i + 1 < std::size(activity_chars); ++i) {
    const char c = activity_chars[i].load(std::memory_order_relaxed);
    if (c == '\0') break;
    out[i] = c;
  }
  out[i] = '\0';
  if (i == 0)
    for (const char* s = "starting up"; *s && i + 1 < cap; ++s) out[i++] = *s, out[i] = '\0';
}
}  // namespace detail

class watchdog {
 public:
  /// handler(what, timeout_seconds) is called (from the watchdog thread, at most once) when an
  /// armed operation exceeds timeout_s; it is expected not to return (it should end the job).
  /// timeout_s <= 0 disables the watchdog (no thread is started).
  using handler = std::function<void(const std::string&, double)>;

  watchdog(double timeout_s, handler h) : timeout_(timeout_s), handler_(std::move(h)) {
    if (timeout_ > 0) thread_ = std::thread([this] { run(); });
  }
  ~watchdog() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  watchdog(const watchdog&) = delete;
  watchdog& operator=(const watchdog&) = delete;

  double timeout() const { return timeout_; }

  void arm(std::string_view what) {
    detail::set_activity(std::string("waiting in collective '").append(what).append("'"));
    if (timeout_ <= 0) return;
    {
      std::lock_guard<std::mutex> lk(mu_);
      what_.assign(what);
      armed_ = true;
      ++generation_;
      deadline_ = std::chrono::steady_clock::now() +
                  std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(timeout_));
    }
    cv_.notify_all();
  }
  void disarm() {
    detail::set_activity("computing (between collectives)");
    if (timeout_ <= 0) return;
    std::lock_guard<std::mutex> lk(mu_);
    armed_ = false;
  }

 private:
  void run() {
    std::unique_lock<std::mutex> lk(mu_);
    while (!stop_) {
      if (!armed_) {
        cv_.wait(lk);
        continue;
      }
      const std::uint64_t gen = generation_;
      const auto deadline = deadline_;
      if (cv_.wait_until(lk, deadline, [&] { return stop_ || !armed_ || generation_ != gen; })) continue;
      // still armed with the same operation past its deadline
      const std::string what = what_;
      lk.unlock();
      handler_(what, timeout_);
      return;
    }
  }

  double timeout_;
  handler handler_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::thread thread_;
  bool stop_ = false, armed_ = false;
  std::uint64_t generation_ = 0;
  std::chrono::steady_clock::time_point deadline_{};
  std::string what_;
};

/// Arms a watchdog for the lifetime of the guard.
class watchdog_guard {
 public:
  watchdog_guard(watchdog* w, std::string_view what) : w_(w) {
    if (w_) w_->arm(what);
  }
  ~watchdog_guard() {
    if (w_) w_->disarm();
  }
  watchdog_guard(const watchdog_guard&) = delete;
  watchdog_guard& operator=(const watchdog_guard&) = delete;

 private:
  watchdog* w_;
};

}  // namespace genlm::parallel
