// cli_checks.hpp - option validators and output-path checks shared by the example programs
// (genlm, train_mpi). Not part of the library.
//
// Numbers: CLI11's NonNegativeNumber / PositiveNumber / Range let "nan" through (every comparison
// with NaN is false), and an unsigned option takes "-1" as 2^64 - 1. The validators here refuse
// both, naming the value.
//
// Outputs: check_outputs runs before any work, so that a run never overwrites one of its own
// inputs and never fails at the very end (after hours of training) because its output directory
// does not exist.
#pragma once
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include <unistd.h>

#include <genlm/core/error.hpp>

namespace genlm_cli {

/// A finite number in [lo, hi] (or (lo, hi] / [lo, hi) / (lo, hi) with the open flags).
inline CLI::Validator finite_number(double lo, double hi, bool lo_open = false, bool hi_open = false) {
  auto num = [](double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%g", v);
    return std::string(b);
  };
  const std::string range = std::string(lo_open ? "(" : "[") + num(lo) + ", " + num(hi) + (hi_open ? ")" : "]");
  return CLI::Validator(
      [=](std::string& s) -> std::string {
        double v = 0;
        std::size_t used = 0;
        try {
          v = std::stod(s, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (used == 0 || used != s.size()) return "'" + s + "' is not a number";
        const bool ok = std::isfinite(v) && (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);
        return ok ? std::string() : "'" + s + "' is not a finite number in " + range;
      },
      "NUMBER in " + range);
}

/// A non-negative integer written in decimal digits only (no sign: "-1" would wrap for unsigned).
inline CLI::Validator non_negative_integer() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos)
          return "'" + s + "' is not a non-negative integer";
        // at most 2^64 - 1 (CLI11 would clamp a larger value to it without a word)
        const std::string max = "18446744073709551615";
        const std::string digits = s.substr(std::min(s.find_first_not_of('0'), s.size() - 1));
        if (digits.size() > max.size() || (digits.size() == max.size() && digits > max))
          return "'" + s + "' is larger than 2^64 - 1 = " + max;
        return {};
      },
      "UINT");
}

/// --ids names the rows of a .npy --embeddings file, so it needs one (value_error otherwise).
inline void check_ids_option(const std::string& ids, const std::string& embeddings) {
  genlm::check<genlm::value_error>(ids.empty() || std::filesystem::path(embeddings).extension() == ".npy", "--ids '",
                                   ids, "' names the rows of a .npy --embeddings file, but ",
                                   embeddings.empty() ? std::string("no --embeddings was given")
                                                      : "--embeddings '" + embeddings + "' is not a .npy file");
}

/// A path given to an option, with the option's name for messages.
struct named_path {
  std::string option, path;
};

/// Whether two paths name the same file (also when the output does not exist yet).
inline bool same_file(const std::string& a, const std::string& b) {
  namespace fs = std::filesystem;
  std::error_code ea, eb;
  const fs::path ca = fs::weakly_canonical(fs::absolute(a), ea), cb = fs::weakly_canonical(fs::absolute(b), eb);
  if (!ea && !eb && ca == cb) return true;
  std::error_code ee;
  return fs::exists(a, ee) && fs::exists(b, ee) && fs::equivalent(a, b, ee);  // hard links
}

/// Checks, before any work, that every output can be written where it is (its directory exists
/// and is writable, it is not a directory) and is neither one of the inputs nor another output.
/// Empty paths (options not given) are skipped. Throws genlm::value_error naming the options.
inline void check_outputs(const std::vector<named_path>& inputs, const std::vector<named_path>& outputs) {
  namespace fs = std::filesystem;
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    const named_path& o = outputs[i];
    if (o.path.empty()) continue;
    std::error_code ec;
    genlm::check<genlm::value_error>(!fs::is_directory(o.path, ec), o.option, " '", o.path,
                                     "' is a directory; give a file name");
    fs::path dir = fs::path(o.path).parent_path();
    if (dir.empty()) dir = ".";
    genlm::check<genlm::value_error>(fs::is_directory(dir, ec), o.option, " '", o.path, "': the directory '",
                                     dir.string(), "' does not exist");
    genlm::check<genlm::value_error>(::access(dir.c_str(), W_OK) == 0, o.option, " '", o.path, "': the directory '",
                                     dir.string(), "' is not writable");
    for (const named_path& in : inputs)
      genlm::check<genlm::value_error>(in.path.empty() || !same_file(in.path, o.path), o.option, " '", o.path,
                                       "' is also the input ", in.option, " '", in.path,
                                       "': writing it would destroy that input; give another output path");
    for (std::size_t j = 0; j < i; ++j)
      genlm::check<genlm::value_error>(outputs[j].path.empty() || !same_file(outputs[j].path, o.path), o.option, " '",
                                       o.path, "' is also the output ", outputs[j].option, " '", outputs[j].path,
                                       "'; give each output its own path");
  }
}

}  // namespace genlm_cli
