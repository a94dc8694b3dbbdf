// genlm/util/progress.hpp - a terminal progress bar with throughput for long runs.
//
// On a terminal it redraws one line ("[=====>   ] 120/400  3.2 it/s  1500 genes/s  loss 0.53
// ETA 1m20s"); when stderr is not a terminal (logs, CI) it prints a plain line at most every
// `log_every` seconds instead.
#pragma once
#include <chrono>
#include <cstdio>
#include <string>

#include <unistd.h>

namespace genlm {

class progress_bar {
 public:
  progress_bar(std::string label, long long total, double log_every = 10.0, std::FILE* out = stderr)
      : label_(std::move(label)), total_(total), log_every_(log_every), out_(out), tty_(isatty(fileno(out))),
        start_(clock::now()), last_(start_) {}

  /// Advances to `done` items; `items` counts the work units (e.g. genes) of this update;
  /// `status` is appended (e.g. "loss 0.53").
  void update(long long done, long long items, const std::string& status = {}) {
    done_ = done;
    items_ += items;
    const auto now = clock::now();
    const double since = seconds(last_, now);
    if (done_ < total_ && since < (tty_ ? 0.1 : log_every_)) return;
    last_ = now;
    draw(status, done_ >= total_);
  }
  /// Final line (always printed).
  void finish(const std::string& status = {}) { draw(status, true); }
  double elapsed() const { return seconds(start_, clock::now()); }

 private:
  using clock = std::chrono::steady_clock;
  static double seconds(clock::time_point a, clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }
  static std::string hms(double s) {
    char buf[32];
    const long t = long(s + 0.5);
    if (t >= 3600)
      std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else
      std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
    return buf;
  }
  void draw(const std::string& status, bool final_line) {
    const double el = std::max(1e-9, elapsed());
    const double rate = double(done_) / el, irate = double(items_) / el;
    const double eta = rate > 0 ? double(total_ - done_) / rate : 0.0;
    char bar[33];
    const int width = 30, fill = total_ > 0 ? int(double(width) * double(done_) / double(total_)) : width;
    for (int i = 0; i < width; ++i) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
    bar[width] = 0;
    std::fprintf(out_, "%s%s [%s] %lld/%lld  %.1f it/s  %.0f genes/s  %s  %s %s%s", tty_ ? "\r" : "", label_.c_str(),
                 bar, done_, total_, rate, irate, status.c_str(), final_line ? "took" : "ETA",
                 hms(final_line ? el : eta).c_str(), (tty_ && !final_line) ? "   " : "\n");
    std::fflush(out_);
  }

  std::string label_;
  long long total_ = 0, done_ = 0, items_ = 0;
  double log_every_;
  std::FILE* out_;
  bool tty_;
  clock::time_point start_, last_;
};

}  // namespace genlm
