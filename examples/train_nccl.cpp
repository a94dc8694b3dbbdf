// train_nccl - data-parallel gLM training with gradients all-reduced over NCCL.
//
//   mpirun -np 4 train_nccl --config small --contigs contigs.tsv --embeddings esm2.npy --ids ids.txt
//        one process per GPU; rank 0 makes the ncclUniqueId and shares it over MPI; each process
//        uses GPU (local rank % visible GPUs).
//   train_nccl --gpus 2 --config tiny --simulate 400
//        single process, one thread (and one model replica) per GPU, communicators from
//        ncclCommInitAll.
//
// What runs where: with --backend cuda (available when this file is compiled by nvcc, i.e. the
// build has the CUDA backend) every replica computes on its GPU (GLM<C, genlm::cuda>) and the flat
// device gradient buffer is all-reduced in place, bucket by bucket. With --backend cpu (the
// default, and the only choice in a build without nvcc) forward/backward run on the CPU and the
// GPUs carry the communication only: each step the flat gradient buffer is copied to the rank's
// GPU bucket by bucket, all-reduced with ncclAllReduce, and copied back (comm::nccl's staged host
// path); this run equals train_mpi's for the same global batch. Metrics, counts, hashes and
// broadcasts go through NCCL in both cases.
//
// Exit status 77 (ctest: skipped) when no CUDA device is usable.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <exception>
#include <limits>
#include <string>
#include <vector>

#include <genlm/backend/cpu.hpp>
#if defined(__CUDACC__) || defined(GENLM_CUDA_EMULATOR)
#include <genlm/backend/cuda.cuh>
#endif
#include <genlm/model/glm.hpp>
#include <genlm/parallel/driver.hpp>
#include <genlm/parallel/mpi.hpp>
#include <genlm/parallel/nccl.hpp>

#include "cli_checks.hpp"
#include "mpi_startup.hpp"

#if defined(GENLM_USE_CBLAS)
extern "C" void openblas_set_num_threads(int);
#endif

using namespace genlm;

namespace {

constexpr int skip_status = 77;

struct cli_options {
  std::string config = "tiny";
  std::string backend = "cpu";
  int gpus = 0;
  long long simulate = 200;
  std::vector<std::string> contigs;
  std::string embeddings, ids;
  int batch = 16;
  long long steps = 20;
  double lr = 1e-3;
  double dropout = 0.0;
  std::uint64_t seed = 1;
  std::string out;
  long long save_every = 0, log_every = 10;
  double timeout = 300;
  bool print_hash = false;
  int threads = 1;
};

template <class Model>
int run(comm::nccl& nc, const cli_options& o) {
  parallel::job_options j;
  for (const auto& c : o.contigs) j.data.contigs.emplace_back(c);
  j.data.embeddings = o.embeddings;
  j.data.ids = o.ids;
  j.data.simulate_contigs = index_t(o.simulate);
  j.model.hidden_dropout = j.model.attention_dropout = o.dropout;
  j.train.batch_size = o.batch;
  j.train.lr = o.lr;
  j.train.seed = o.seed;
  j.run.steps = o.steps;
  j.run.log_every = o.log_every;
  j.run.save_every = o.save_every;
  j.run.checkpoint = o.out;
  const auto s = parallel::train_data_parallel<Model>(nc, j);
  if (o.print_hash && nc.rank() == 0)
    std::printf("final state hash %016llx after step %lld (loss %.6f)\n", (unsigned long long)s.state_hash,
                (long long)s.last_step, s.last.loss);
  return 0;
}

template <class Backend>
int dispatch_config(comm::nccl& nc, const cli_options& o) {
  if (o.config == "tiny") return run<GLM<configs::tiny, Backend, float>>(nc, o);
  if (o.config == "small") return run<GLM<configs::small, Backend, float>>(nc, o);
  throw value_error("unknown --config '" + o.config + "' (tiny or small)");
}

int dispatch(comm::nccl& nc, const cli_options& o) {
  if (o.backend == "cpu") return dispatch_config<cpu>(nc, o);
#if defined(__CUDACC__) || defined(GENLM_CUDA_EMULATOR)
  if (o.backend == "cuda") return dispatch_config<genlm::cuda>(nc, o);  // comm::nccl made its device current
  throw value_error("unknown --backend '" + o.backend + "' (cpu or cuda)");
#else
  throw value_error("unknown --backend '" + o.backend +
                    "': this build has only 'cpu' (the CUDA backend needs train_nccl compiled by nvcc: "
                    "configure genlm with the CUDA toolkit, GENLM_ENABLE_CUDA=AUTO|ON)");
#endif
}

}  // namespace

int main(int argc, char** argv) {
  return parallel::mpi_main(argc, argv, [](int argc_, char** argv_) -> int {
    CLI::App app{"train_nccl: data-parallel gLM training, gradients all-reduced over NCCL"};
    cli_options o;
    app.add_option("--config", o.config, "Model preset: tiny or small")->capture_default_str();
    app.add_option("--backend", o.backend, "Where replicas compute: cpu, or cuda (nvcc builds)")->capture_default_str();
    using genlm_cli::finite_number;
    const double inf = std::numeric_limits<double>::infinity();
    app.add_option("--gpus", o.gpus, "Single process: number of GPUs to use (0: all visible)")->capture_default_str()
        ->check(CLI::Range(0, 1024));
    app.add_option("-c,--contigs", o.contigs, "Contig table(s)");
    app.add_option("-e,--embeddings", o.embeddings, "Protein embeddings (.npy with --ids, or .safetensors)");
    app.add_option("--ids", o.ids, "Protein ids of the .npy rows");
    app.add_option("--simulate", o.simulate, "Synthetic contigs when no --contigs is given")->capture_default_str()
        ->check(CLI::Range(1LL, 100000000LL));
    app.add_option("-b,--batch", o.batch, "Global batch (windows per step)")->capture_default_str()
        ->check(CLI::Range(1, 100000000));
    app.add_option("-n,--steps", o.steps, "Train until this step")->capture_default_str()
        ->check(CLI::Range(0LL, 1000000000LL));
    app.add_option("--lr", o.lr, "Learning rate")->capture_default_str()->check(finite_number(0, inf, true, true));
    app.add_option("--dropout", o.dropout, "Dropout")->capture_default_str()->check(finite_number(0, 0.99));
    app.add_option("--seed", o.seed, "Seed")->capture_default_str()->check(genlm_cli::non_negative_integer());
    app.add_option("-o,--out", o.out, "Checkpoint (rank 0)");
    app.add_option("--save-every", o.save_every, "Checkpoint interval")->capture_default_str()
        ->check(CLI::Range(0LL, 1000000000LL));
    app.add_option("--log-every", o.log_every, "Progress interval")->capture_default_str()
        ->check(CLI::Range(1LL, 1000000000LL));
    app.add_option("--timeout", o.timeout, "Seconds a collective may take")->capture_default_str()
        ->check(finite_number(0, 1e9));
    app.add_option("-t,--threads", o.threads, "BLAS threads per replica")->capture_default_str()->check(CLI::Range(1, 1024));
    app.add_flag("--print-hash", o.print_hash, "Print the final state hash");
    // checked on every rank before the first collective (one rank's bad option stops the job)
    if (const int st = genlm_cli::parse_and_agree(app, argc_, argv_, [&] {
#if defined(__CUDACC__) || defined(GENLM_CUDA_EMULATOR)
          check<value_error>(o.backend == "cpu" || o.backend == "cuda", "unknown --backend '", o.backend,
                             "' (cpu or cuda)");
#else
          check<value_error>(o.backend == "cpu", "unknown --backend '", o.backend,
                             "' (this build has only cpu: the cuda backend needs train_nccl compiled by nvcc)");
#endif
          check<value_error>(o.config == "tiny" || o.config == "small", "--config '", o.config,
                             "': expected tiny or small");
        });
        st >= 0)
      return st;
#if defined(GENLM_USE_CBLAS)
    openblas_set_num_threads(std::max(1, o.threads));
#endif
    comm::mpi world(MPI_COMM_WORLD, o.timeout);
    {  // before any work: rank 0, which writes the checkpoint, checks --out; every rank stops if it fails
      std::vector<genlm_cli::named_path> inputs{{"--embeddings", o.embeddings}, {"--ids", o.ids}};
      for (const auto& c : o.contigs) inputs.push_back({"--contigs", c});
      std::string why;
      if (world.rank() == 0) try {
          genlm_cli::check_outputs(inputs, {{"--out", o.out}});
        } catch (const value_error& e) {
          why = e.what();
        }
      std::int64_t failed = why.empty() ? 0 : 1;
      world.allreduce_sum_host(&failed, 1, "output path check");
      if (failed) throw collective_error(world.rank() == 0 ? why : "rank 0 refused --out (its message says why)");
    }

    // Every rank needs a GPU; if any lacks one, all skip together.
    std::string why;
    const int ndev = comm::nccl::device_count(&why);
    std::int64_t missing = ndev > 0 ? 0 : 1;
    world.allreduce_sum_host(&missing, 1, "GPU availability check");
    if (missing) {
      if (ndev == 0) parallel::rank_print("no usable CUDA device (" + why + "); the NCCL example needs one GPU per rank");
      return skip_status;
    }

    if (world.size() > 1) {  // one process per GPU
      MPI_Comm local;
      MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, world.rank(), MPI_INFO_NULL, &local);
      int local_rank = 0;
      MPI_Comm_rank(local, &local_rank);
      MPI_Comm_free(&local);
      std::string id_bytes;
      if (world.rank() == 0) {
        const ncclUniqueId id = comm::nccl::unique_id();
        id_bytes.assign(reinterpret_cast<const char*>(&id), sizeof id);
      }
      world.broadcast_bytes(id_bytes, 0, "NCCL unique id broadcast");
      ncclUniqueId id;
      std::memcpy(&id, id_bytes.data(), sizeof id);
      comm::nccl nc(world.rank(), world.size(), id, local_rank % ndev, o.timeout);
      return dispatch(nc, o);
    }

    // single process, one thread per GPU
    const int G = o.gpus > 0 ? std::min(o.gpus, ndev) : ndev;
    std::vector<int> devices(static_cast<std::size_t>(G));
    for (int g = 0; g < G; ++g) devices[std::size_t(g)] = g;
    // a thread that fails makes the others' collectives end at once (comm_abandoned); the error
    // reported is the one that started it
    comm::nccl::rethrow_first(comm::nccl::run_threads(devices, o.timeout, [&](comm::nccl& nc) { dispatch(nc, o); }));
    return 0;
  });
}
