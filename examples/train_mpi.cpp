// train_mpi - data-parallel gLM training on CPUs over MPI (one process per rank).
//
//   mpirun -np 4 train_mpi --config small --contigs contigs.tsv --embeddings esm2.npy --ids ids.txt
//          --batch 64 --steps 2000 --out glm.safetensors --save-every 200          (one line)
//   mpirun -np 2 train_mpi --config tiny --simulate 400 --steps 50          # synthetic contigs
//   mpirun -np 3 train_mpi ... --resume glm.safetensors --steps 4000       # any number of ranks
//
// Each rank holds a replica; the global batch (--batch windows per step) is split into
// contiguous shares, gradients are all-reduced, and every rank takes the same AdamW step, so the
// result does not depend on the number of ranks (docs/DISTRIBUTED.md). Rank 0 logs and writes
// the checkpoints (atomically). --fail-* options inject failures for the failure tests.
#include <CLI/CLI.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include <genlm/backend/cpu.hpp>
#include <genlm/model/glm.hpp>
#include <genlm/parallel/driver.hpp>
#include <genlm/parallel/mpi.hpp>

#include "cli_checks.hpp"
#include "mpi_startup.hpp"

#if defined(GENLM_USE_CBLAS)
extern "C" void openblas_set_num_threads(int);
#endif

using namespace genlm;

namespace {

struct cli_options {
  std::string config = "tiny";
  bool float64 = false;
  std::string precision = "fp32";
  std::vector<std::string> contigs;
  std::string embeddings, ids;
  long long simulate = 200;
  int window = 30, overlap = 0;
  int batch = 16;
  long long steps = 100;
  double lr = 1e-3;
  long long warmup = 0;
  double dropout = 0.1, mask_prob = 0.15, clip = 1.0;
  std::string loss_scaling = "auto";
  double loss_scale = 65536.0;
  std::uint64_t seed = 1;
  bool seed_given = false;  // --seed on the command line (a resumed run otherwise takes the checkpoint's)
  std::string out, resume;
  long long save_every = 0, log_every = 10;
  double timeout = 300;
  long long drift_every = 100;
  double bucket_mb = 4;
  bool rank_invariant_dropout = false;
  int threads = 1;
  bool print_hash = false;
  int fail_rank = -1;
  long long fail_at = -1;
  std::string fail_mode = "kill";
};

void add_options(CLI::App& app, cli_options& o) {
  using genlm_cli::finite_number;
  const double inf = std::numeric_limits<double>::infinity();
  app.add_option("--config", o.config, "Model preset: tiny, small or paper")->capture_default_str();
  app.add_flag("--float64", o.float64, "Train in double precision (tiny config only)");
  app.add_option("--precision", o.precision,
                 "Matrix products: fp32, or bf16 (genlm::cpu_bf16: bf16-rounded inputs, float32 accumulation, "
                 "Intel AMX where present; weights, gradients and optimizer stay float32)")
      ->capture_default_str()
      ->check(CLI::IsMember({"fp32", "bf16"}));
  app.add_option("-c,--contigs", o.contigs, "Contig table(s) contig<TAB>+protA;-protB (each rank reads its part)");
  app.add_option("-e,--embeddings", o.embeddings, "Protein embeddings: .npy (with --ids) or .safetensors");
  app.add_option("--ids", o.ids, "Protein ids of the .npy rows");
  app.add_option("--simulate", o.simulate, "Synthetic contigs to train on when no --contigs is given")->capture_default_str()
      ->check(CLI::Range(1LL, 100000000LL));
  app.add_option("-w,--window", o.window, "Genes per window")->capture_default_str()->check(CLI::Range(1, 512));
  app.add_option("--overlap", o.overlap, "Genes shared by consecutive windows (< --window)")->capture_default_str()
      ->check(CLI::Range(0, 511));
  app.add_option("-b,--batch", o.batch, "Global batch: windows per step over all ranks")->capture_default_str()
      ->check(CLI::Range(1, 100000000));
  app.add_option("-n,--steps", o.steps, "Train until this step")->capture_default_str()
      ->check(CLI::Range(0LL, 1000000000LL));
  app.add_option("--lr", o.lr, "Peak learning rate")->capture_default_str()->check(finite_number(0, inf, true, true));
  app.add_option("--warmup", o.warmup, "Linear warm-up steps")->capture_default_str()->check(CLI::Range(0LL, 1000000000LL));
  app.add_option("--dropout", o.dropout, "Hidden and attention dropout")->capture_default_str()->check(finite_number(0, 0.99));
  app.add_option("--mask-prob", o.mask_prob, "Masking probability per gene")->capture_default_str()
      ->check(finite_number(0, 1, true, true));
  app.add_option("--clip", o.clip, "Clip gradients by value (0: off)")->capture_default_str()
      ->check(finite_number(0, inf, false, true));
  app.add_option("--loss-scaling", o.loss_scaling,
                 "Dynamic loss scaling: auto (on only for the fp16 precision policy), on or off")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "on", "off"}));
  app.add_option("--loss-scale", o.loss_scale, "Initial loss scale (with loss scaling)")->capture_default_str()
      ->check(finite_number(0, inf, true, true));
  app.add_option("--seed", o.seed, "Seed of initialisation, data order, masking and dropout")->capture_default_str()
      ->check(genlm_cli::non_negative_integer());
  app.add_option("-o,--out", o.out, "Checkpoint written by rank 0 (atomically)");
  app.add_option("--save-every", o.save_every, "Checkpoint interval in steps (0: only at the end)")->capture_default_str()
      ->check(CLI::Range(0LL, 1000000000LL));
  app.add_option("--resume", o.resume, "Continue from this checkpoint (written with any number of ranks), with its seed, up to --steps in all");
  app.add_option("--log-every", o.log_every, "Rank-0 progress interval")->capture_default_str()
      ->check(CLI::Range(1LL, 1000000000LL));
  app.add_option("--timeout", o.timeout, "Seconds a collective may take before the job is aborted (0: none)")
      ->capture_default_str()->check(finite_number(0, 1e9));
  app.add_option("--drift-every", o.drift_every, "Steps between replica consistency checks (0: never)")
      ->capture_default_str()->check(CLI::Range(0LL, 1000000000LL));
  app.add_option("--bucket-mb", o.bucket_mb, "Gradient all-reduce bucket size in MiB")->capture_default_str()
      ->check(finite_number(0, 1e6, true, false));
  app.add_flag("--rank-invariant-dropout", o.rank_invariant_dropout,
               "Per-window micro-batches with dropout keyed by batch position: results independent of the rank count");
  app.add_option("-t,--threads", o.threads, "BLAS threads per rank")->capture_default_str()->check(CLI::Range(1, 1024));
  app.add_flag("--print-hash", o.print_hash, "Print the final parameter/optimizer state hash (rank 0)");
  app.add_option("--fail-rank", o.fail_rank, "Testing: the rank that fails")->group("Failure injection");
  app.add_option("--fail-at-step", o.fail_at, "Testing: fail after this step")->group("Failure injection");
  app.add_option("--fail-mode", o.fail_mode, "Testing: kill (SIGKILL), hang (sleep forever) or throw")
      ->group("Failure injection")
      ->check(CLI::IsMember({"kill", "hang", "throw"}));
}

/// The options' checks that need no data and no other rank (every rank runs them on its own
/// command line; main() lets the ranks agree on the outcome before the first collective).
void validate(const CLI::App& app, const cli_options& o) {
  const bool bf16 = o.precision == "bf16";
  check<value_error>(o.config == "tiny" || o.config == "small" || o.config == "paper", "--config '", o.config,
                     "': expected tiny, small or paper");
  check<value_error>(!(bf16 && o.float64), "--precision bf16 and --float64 exclude each other");
  check<value_error>(!o.float64 || o.config == "tiny", "--float64 is only built for --config tiny");
  const model_config c = o.config == "tiny" ? configs::tiny : o.config == "small" ? configs::small : configs::paper;
  const int max_window = int(std::min(c.max_positions, c.max_genes));
  check<value_error>(o.window <= max_window, "--window ", o.window, " exceeds the largest window of --config ",
                     o.config, ", ", max_window, " genes");
  check<value_error>(o.overlap < o.window, "--overlap ", o.overlap, " must be smaller than --window ", o.window);
  const bool simulate_given = app.count("--simulate") > 0;
  check<value_error>(!(simulate_given && (!o.contigs.empty() || !o.embeddings.empty())), "--simulate trains on ",
                     "simulated contigs, --contigs / --embeddings on given ones: give one of the two");
  check<value_error>(o.embeddings.empty() || !o.contigs.empty(), "--embeddings '", o.embeddings,
                     "' without --contigs: the proteins need contig tables (or leave both out to --simulate)");
  genlm_cli::check_ids_option(o.ids, o.embeddings);
  for (std::size_t i = 0; i < o.contigs.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      check<value_error>(std::filesystem::weakly_canonical(o.contigs[i]) != std::filesystem::weakly_canonical(o.contigs[j]),
                         "--contigs '", o.contigs[i], "' is given twice (its contigs would count twice)");
  check<value_error>(app.count("--loss-scale") == 0 || o.loss_scaling == "on", "--loss-scale ", o.loss_scale,
                     " sets the initial scale of loss scaling, which is ", o.loss_scaling == "off" ? "off" : "auto",
                     o.loss_scaling == "off" ? "" : " (on only for fp16 products, which train_mpi does not build)",
                     ": add --loss-scaling on, or leave --loss-scale out");
  check<value_error>(o.fail_rank < parallel::mpi_environment::world_size(), "--fail-rank ", o.fail_rank,
                     " is not a rank of this job (", parallel::mpi_environment::world_size(), " ranks)");
}

parallel::job_options make_job(const cli_options& o) {
  parallel::job_options j;
  for (const auto& c : o.contigs) j.data.contigs.emplace_back(c);
  j.data.embeddings = o.embeddings;
  j.data.ids = o.ids;
  j.data.simulate_contigs = index_t(o.simulate);
  j.data.window = std::size_t(o.window);
  j.data.overlap = std::size_t(o.overlap);
  j.model.hidden_dropout = j.model.attention_dropout = o.dropout;
  j.train.batch_size = o.batch;
  j.train.lr = o.lr;
  j.train.warmup_steps = o.warmup;
  j.train.clip_value = o.clip;
  j.train.scaling.enabled = o.loss_scaling == "on"    ? loss_scaling_mode::on
                            : o.loss_scaling == "off" ? loss_scaling_mode::off
                                                      : loss_scaling_mode::automatic;
  j.train.scaling.init_scale = o.loss_scale;
  j.train.seed = o.seed;
  j.train.masking.probability = o.mask_prob;
  j.parallel.drift_check_every = o.drift_every;
  j.parallel.bucket_bytes = std::size_t(o.bucket_mb * 1024 * 1024);
  j.parallel.rank_invariant_dropout = o.rank_invariant_dropout;
  j.run.steps = o.steps;
  j.run.log_every = o.log_every;
  j.run.save_every = o.save_every;
  j.run.checkpoint = o.out;
  j.resume = o.resume;
  j.seed_given = o.seed_given;
  return j;
}

/// Failure injection for tests/mpi: after step `fail_at`, rank `fail_rank` dies, hangs or throws.
std::function<void(std::int64_t)> failure_hook(const cli_options& o, int rank) {
  if (o.fail_rank != rank || o.fail_at < 0) return {};
  return [o, rank](std::int64_t step) {
    if (step != o.fail_at) return;
    std::fprintf(stderr, "train_mpi: rank %d: injected failure '%s' after step %lld\n", rank, o.fail_mode.c_str(),
                 (long long)step);
    std::fflush(stderr);
    if (o.fail_mode == "kill") std::raise(SIGKILL);
    if (o.fail_mode == "hang")
      for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
    throw error("injected failure (--fail-mode throw)");
  };
}

template <class Model>
int run(comm::mpi& comm, const cli_options& o) {
  if (comm.rank() == 0) {
    std::printf("products: %s\n",
                products_description<typename Model::backend, typename Model::scalar>().c_str());
    std::fflush(stdout);
  }
  parallel::job_options job = make_job(o);
  job.run.after_step = failure_hook(o, comm.rank());
  const auto s = parallel::train_data_parallel<Model>(comm, job);
  if (o.print_hash && comm.rank() == 0)
    std::printf("final state hash %016llx after step %lld (loss %.6f)\n", (unsigned long long)s.state_hash,
                (long long)s.last_step, s.last.loss);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return parallel::mpi_main(argc, argv, [](int argc_, char** argv_) -> int {
    CLI::App app{"train_mpi: data-parallel gLM training over MPI (CPU)"};
    cli_options o;
    add_options(app, o);
    // the command line and the options that need no data, checked on every rank before the first
    // collective: one rank's bad option stops the whole job with its message
    if (const int st = genlm_cli::parse_and_agree(app, argc_, argv_, [&] {
          o.seed_given = app.count("--seed") > 0;
          validate(app, o);
        });
        st >= 0)
      return st;
#if defined(GENLM_USE_CBLAS)
    openblas_set_num_threads(std::max(1, o.threads));
#endif
    comm::mpi comm(MPI_COMM_WORLD, o.timeout);
    {  // before any work: rank 0, which writes the checkpoint, checks --out; every rank stops if it fails
      std::vector<genlm_cli::named_path> inputs{{"--embeddings", o.embeddings}, {"--ids", o.ids}};
      for (const auto& c : o.contigs) inputs.push_back({"--contigs", c});
      std::string why;
      if (comm.rank() == 0) try {
          genlm_cli::check_outputs(inputs, {{"--out", o.out}});  // --resume may be --out
        } catch (const value_error& e) {
          why = e.what();
        }
      std::int64_t failed = why.empty() ? 0 : 1;
      comm.allreduce_sum_host(&failed, 1, "output path check");
      if (failed) throw collective_error(comm.rank() == 0 ? why : "rank 0 refused --out (its message says why)");
    }
    const bool bf16 = o.precision == "bf16";
    if (o.config == "tiny")
      return o.float64 ? run<GLM<configs::tiny, cpu, double>>(comm, o)
             : bf16    ? run<GLM<configs::tiny, cpu_bf16, float>>(comm, o)
                       : run<GLM<configs::tiny, cpu, float>>(comm, o);
    if (o.config == "small")
      return bf16 ? run<GLM<configs::small, cpu_bf16, float>>(comm, o) : run<GLM<configs::small, cpu, float>>(comm, o);
    if (o.config == "paper")
      return bf16 ? run<GLM<configs::paper, cpu_bf16, float>>(comm, o) : run<GLM<configs::paper, cpu, float>>(comm, o);
    throw value_error("unknown --config '" + o.config + "' (tiny, small or paper)");
  });
}
