// Parity with Hugging Face transformers' RobertaModel (relative_key / relative_key_query,
// inputs_embeds, padding). Fixtures: scripts/gen_hf_fixtures.py -> tests/fixtures/hf/.
#include <catch2/catch.hpp>

#include <cmath>

#include <genlm/genlm.hpp>
#include <genlm/io/safetensors.hpp>
#include <genlm/io/state_dict.hpp>

#ifndef GENLM_FIXTURE_DIR
#define GENLM_FIXTURE_DIR "tests/fixtures"
#endif

using namespace genlm;

namespace {

struct compare_result {
  double max_rel = 0;  // max |a - b| / max(|b|_inf, 1) over the tensor (scale-relative; tensors that
                       // are exactly zero in exact arithmetic, e.g. key-bias gradients under
                       // relative_key, are judged in absolute terms)
  double max_abs = 0;
};

template <class T>
compare_result compare(const std::vector<T>& got, const std::vector<T>& want) {
  REQUIRE(got.size() == want.size());
  double scale = 0, diff = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    scale = std::max(scale, std::abs(double(want[i])));
    diff = std::max(diff, std::abs(double(got[i]) - double(want[i])));
  }
  return {diff / std::max(scale, 1.0), diff};
}

template <class T, class Variant>
void run_parity(const std::string& file, double tol) {
  const auto f = io::read_safetensors(std::string(GENLM_FIXTURE_DIR) + "/hf/" + file);
  const auto& emb = f.at("input.inputs_embeds");
  const index_t B = emb.shape[0], L = emb.shape[1], H = emb.shape[2];
  encoder_dims d;
  d.hidden = H;
  d.heads = 4;
  d.intermediate = f.at("encoder.layer.0.intermediate.dense.weight").shape[0];
  d.max_positions = (f.at("encoder.layer.0.attention.self.distance_embedding.weight").shape[0] + 1) / 2;
  d.hidden_dropout = d.attention_dropout = 0.1;  // inactive: inference mode, like model.eval()
  const index_t layers = 2;

  parameter_store<T, cpu> ps;
  input_embeddings<T, cpu> embeddings(ps, "embeddings", H, 1e-12, 0.1, 1);
  encoder<T, cpu, Variant> enc(ps, "encoder", layers, d);
  ps.finalize();
  const auto rep = io::load_state_dict(
      ps, f, {.strict = true, .ignore = {"input.*", "output.*", "grad.*", "embeddings.word_embeddings.weight",
                                        "embeddings.position_embeddings.weight"}, .strip_prefixes = {}});
  CHECK(rep.loaded.size() == ps.size());

  using ten = tensor<T, cpu>;
  const ten x = ten::from_host_data({B, L, H}, emb.template to<T>());
  const ten mask = ten::from_host_data({B, L}, f.at("input.attention_mask").template to<T>());
  run_context ctx;  // inference
  const ten& h = enc.forward(ctx, embeddings.forward(ctx, x), &mask);

  SECTION("last hidden state") {
    const auto r = compare(h.to_host(), f.at("output.last_hidden_state").template to<T>());
    INFO("max abs diff " << r.max_abs << ", scale-relative " << r.max_rel);
    CHECK(r.max_rel < tol);
  }
  SECTION("attention probabilities of every layer") {
    for (index_t i = 0; i < layers; ++i) {
      const auto r = compare(enc.attention_probs(std::size_t(i)).to_host(),
                             f.at("output.attentions." + std::to_string(i)).template to<T>());
      INFO("layer " << i << ": max abs diff " << r.max_abs);
      CHECK(r.max_rel < tol);
    }
  }
  SECTION("gradients of sum(last_hidden_state * cotangent)") {
    const ten cot = ten::from_host_data({B, L, H}, f.at("input.cotangent").template to<T>());
    ten dh, dx;
    dh.resize_zero({B, L, H});
    dx.resize_zero({B, L, H});
    ps.zero_grads();
    enc.backward(cot, dh);
    embeddings.backward(dh, dx);
    {
      const auto r = compare(dx.to_host(), f.at("grad.inputs_embeds").template to<T>());
      INFO("inputs_embeds: max abs diff " << r.max_abs << ", scale-relative " << r.max_rel);
      CHECK(r.max_rel < tol);
    }
    std::size_t checked = 0;
    for (const auto& e : ps.entries()) {
      const auto r = compare(ps.get_grad(e.name), f.at("grad." + e.name).template to<T>());
      INFO(e.name << ": max abs diff " << r.max_abs << ", scale-relative " << r.max_rel);
      CHECK(r.max_rel < tol);
      ++checked;
    }
    CHECK(checked == ps.size());
  }
}

}  // namespace

TEST_CASE("HF parity: relative_key_query, float32", "[hf][parity]") {
  run_parity<float, relative_key_query>("relkq_f32.safetensors", 1e-5);
}
TEST_CASE("HF parity: relative_key_query, float64", "[hf][parity]") {
  run_parity<double, relative_key_query>("relkq_f64.safetensors", 1e-10);
}
TEST_CASE("HF parity: relative_key, float64", "[hf][parity]") {
  run_parity<double, relative_key>("relk_f64.safetensors", 1e-10);
}
