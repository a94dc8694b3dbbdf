// examples/mpi_startup.hpp - the command line of an MPI example, checked on every rank before the
// first collective (train_mpi, train_nccl).
#pragma once
#include <CLI/CLI.hpp>

#include <exception>
#include <functional>
#include <string>

#include <genlm/parallel/mpi.hpp>

namespace genlm_cli {

/// Parses the command line on every rank and runs `validate` (the option checks that need no data
/// and no other rank); then the ranks agree on the outcome (parallel::startup_check) before any
/// collective, so that one rank's bad option ends the job with its message instead of leaving the
/// others waiting. Returns -1 to go on, else main's status: 0 after --help (printed by rank 0),
/// CLI11's status on a rank with a usage error (printed by that rank), 2 on a rank whose check
/// failed and on the ranks whose start-up was fine (each prints what stopped the job).
inline int parse_and_agree(CLI::App& app, int argc, char** argv, const std::function<void()>& validate) {
  namespace parallel = genlm::parallel;
  std::string err;
  int status = 0;
  bool help = false;
  try {
    app.parse(argc, argv);
    validate();
  } catch (const CLI::ParseError& e) {
    status = e.get_exit_code();
    help = status == 0;
    if (parallel::mpi_environment::world_rank() == 0 || status != 0) app.exit(e);
    if (status != 0) err = genlm::detail::concat("command line: ", e.what());
  } catch (const std::exception& e) {
    err = e.what();
    status = 2;
  }
  try {
    parallel::startup_check(err);
  } catch (const genlm::collective_error& e) {
    if (err.empty() || status == 2) parallel::rank_print(genlm::detail::concat("error: ", e.what()));
    return status != 0 ? status : 2;
  }
  return help ? 0 : -1;
}

}  // namespace genlm_cli
