// examples/train_cuda.cu - trains a gLM on the GPU (genlm::cuda backend) and checks it against the
// CPU backend.
//
//   train_cuda [--config tiny|small] [--precision fp32|tf32|bf16|fp16] [--steps N] [--batch B]
//
// Data: structured synthetic contigs from genlm's simulator (gene families in conserved modules,
// the same generator as the training tests), so the run needs no files. The program
//   1. copies one set of initial parameters into a CPU and a GPU model, runs `--parity-steps`
//      identical training steps (same batches, masks and dropout masks) on both and prints the
//      largest relative parameter difference;
//   2. trains the GPU model for --steps steps and prints the masked-gene accuracy before/after
//      against the context-free baseline, and the GPU throughput (genes/s).
// Exit codes: 0 ok, 1 error, 2 parity check failed, 77 no CUDA device.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <genlm/backend/cuda.cuh>
#include <genlm/train/simulated_task.hpp>
#include <genlm/model/glm.hpp>
#include <genlm/train/trainer.hpp>

using namespace genlm;

namespace {

struct args {
  std::string config = "tiny", precision = "fp32";
  int steps = 600, parity_steps = 3;
  index_t batch = 16;
  double lr = 3e-3;
};

args parse(int argc, char** argv) {
  args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) throw value_error("train_cuda: " + k + " needs a value");
      return argv[++i];
    };
    if (k == "--config") a.config = val();
    else if (k == "--precision") a.precision = val();
    else if (k == "--steps") a.steps = std::stoi(val());
    else if (k == "--parity-steps") a.parity_steps = std::stoi(val());
    else if (k == "--batch") a.batch = std::stoll(val());
    else if (k == "--lr") a.lr = std::stod(val());
    else if (k == "-h" || k == "--help") {
      std::puts("train_cuda [--config tiny|small] [--precision fp32|tf32|bf16|fp16] [--steps N] [--parity-steps N] "
                "[--batch B] [--lr X]");
      std::exit(0);
    } else {
      throw value_error("train_cuda: unknown option '" + k + "'");
    }
  }
  if (a.config != "tiny" && a.config != "small")
    throw value_error("train_cuda: --config '" + a.config + "', expected tiny or small");
  return a;
}

struct data : simulated_task {
  data(index_t dim, index_t pca) : simulated_task(simulated_task::structured(dim, 240), pca, 40) {}
};

template <model_config C, class GpuBackend>
int run(const args& a) {
  using GpuModel = GLM<C, GpuBackend, float>;
  using CpuModel = GLM<C, cpu, float>;
  data d(C.plm_dim, C.pca_components);
  model_options mo;
  mo.init_seed = 3;
  train_options to;
  to.batch_size = a.batch;
  to.lr = a.lr;
  to.warmup_steps = 20;
  to.seed = 11;

  std::printf("device: %s (sm_%d), backend %s, config %s, %s\n", cuda_device::name().c_str(),
              cuda_device::compute_capability(), GpuBackend::name, a.config.c_str(), C.str().c_str());

  // 1. parity: the same steps on CPU and GPU from the same parameters
  int rc = 0;
  if (a.parity_steps > 0) {
    CpuModel cm(mo);
    GpuModel gm(mo);
    const auto init = cm.parameters().values().to_host();
    gm.parameters().values().from_host({index_t(init.size())}, init);
    trainer<CpuModel> ct(cm, d.feat, d.train, to);
    trainer<GpuModel> gt(gm, d.feat, d.train, to);
    double worst_loss = 0;
    for (int s = 0; s < a.parity_steps; ++s) {
      const auto mc = ct.step(), mg = gt.step();
      worst_loss = std::max(worst_loss, std::abs(mc.loss - mg.loss) / std::max(1e-30, std::abs(mc.loss)));
    }
    const auto pc = cm.parameters().values().to_host(), pg = gm.parameters().values().to_host();
    double maxdiff = 0, maxval = 0;
    for (std::size_t i = 0; i < pc.size(); ++i) {
      maxdiff = std::max(maxdiff, double(std::abs(pc[i] - pg[i])));
      maxval = std::max(maxval, double(std::abs(pc[i])));
    }
    const double rel = maxdiff / std::max(1e-30, maxval);
    // fp32 products: float rounding only; reduced-precision products: their unit roundoff.
    const double tol = std::is_same_v<typename GpuBackend::precision, precision::fp32> ? 1e-5 : 5e-2;
    std::printf("parity after %d training steps: max |p_gpu - p_cpu| / max |p| = %.3e (tolerance %.0e), "
                "max relative loss difference %.3e -> %s\n",
                a.parity_steps, rel, tol, worst_loss, rel <= tol ? "OK" : "FAILED");
    if (!(rel <= tol)) rc = 2;
  }

  // 2. training on the GPU
  GpuModel model(mo);
  trainer<GpuModel> tr(model, d.feat, d.train, to);
  index_t n = 0;
  const auto labels = tr.training_labels(n);
  context_free_baseline base;
  base.fit(labels, n, C.label_dim(), C.hypotheses, 5);
  const auto [before, base_before] = tr.evaluate(d.eval, base, 99);
  (void)base_before;
  GpuBackend::synchronize();
  const auto t0 = std::chrono::steady_clock::now();
  double first = 0, last = 0;
  for (int s = 0; s < a.steps; ++s) {
    const auto m = tr.step();
    if (s < 20) first += m.loss / 20;
    if (s >= a.steps - 20) last += m.loss / 20;
  }
  GpuBackend::synchronize();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double genes = 0;  // genes of the batches trained on (counted outside the timed loop)
  for (int s = 0; s < a.steps; ++s)
    for (auto i : tr.batch_indices(s)) genes += double(d.train[i].genes.size());
  const auto [after, base_after] = tr.evaluate(d.eval, base, 99);
  std::printf("trained %d steps in %.2f s (%.0f genes/s incl. host-side batching and loss), loss %.4f -> %.4f\n",
              a.steps, secs, genes / secs, first, last);
  std::printf("masked-gene accuracy: before %.3f, after %.3f, context-free baseline %.3f (%lld masked genes)\n",
              before.accuracy(), after.accuracy(), base_after.accuracy(), (long long)after.masked);
  const auto st = cuda_allocator::stats();
  std::printf("device memory: peak %.1f MB in use, %.1f MB cached, %zu cudaMalloc calls\n", st.peak_bytes / 1e6,
              st.bytes_cached / 1e6, st.cuda_mallocs);
  if (tr.loss_scaling_active())
    std::printf("loss scaling: final scale %g, %lld step(s) skipped for non-finite gradients\n", tr.scaler().scale(),
                (long long)tr.scaler().skipped_steps());
  return rc;
}

template <model_config C>
int dispatch(const args& a) {
  if (a.precision == "fp32") return run<C, genlm::cuda>(a);  // qualified: CCCL declares a namespace ::cuda
  if (a.precision == "tf32") return run<C, cuda_tf32>(a);
  if (a.precision == "bf16") return run<C, cuda_bf16>(a);
  if (a.precision == "fp16") return run<C, cuda_fp16>(a);
  throw value_error("train_cuda: --precision '" + a.precision + "', expected fp32, tf32, bf16 or fp16");
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const args a = parse(argc, argv);
    if (!cuda_device::available()) {
      std::puts("train_cuda: no CUDA device (or no driver) visible: nothing to do");
      return 77;
    }
    return a.config == "tiny" ? dispatch<configs::tiny>(a) : dispatch<configs::small>(a);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train_cuda: %s\n", e.what());
    return 1;
  }
}
