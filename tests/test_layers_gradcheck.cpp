// Gradient checks (float64, central differences) for every layer, with the library's checker.
#include <catch2/catch.hpp>

#include <genlm/genlm.hpp>

using namespace genlm;
using T = double;
using ten = tensor<T, cpu>;

namespace {
ten random_tensor(shape_t s, std::uint64_t seed, double scale = 1.0) {
  ten t(s);
  rng g(seed);
  for (auto& v : t.span()) v = g.normal() * scale;
  return t;
}
void randomize(parameter_store<T, cpu>& ps, std::uint64_t seed, double scale = 0.3) {
  rng g(seed);
  for (auto& v : ps.values().span()) v = g.normal() * scale;
}
constexpr double tol = 1e-6;
}  // namespace

TEST_CASE("gradcheck: linear", "[gradcheck][linear]") {
  parameter_store<T, cpu> ps;
  linear<T, cpu> lin(ps, "fc", 5, 3);
  ps.finalize();
  randomize(ps, 1);
  ten x = random_tensor({2, 4, 5}, 2), dx, y;
  auto r = gradient_check<cpu>(
      &ps, {{"x", &x, &dx}}, [&]() -> const ten& { lin.forward(x, y); return y; },
      [&](const ten& dy) { lin.backward(x, dy, &dx); });
  INFO(r.summary());
  CHECK(r.checked == 5 * 3 + 3 + 2 * 4 * 5);
  CHECK(r.max_rel_error < tol);
}

TEST_CASE("gradcheck: layer_norm", "[gradcheck][layer_norm]") {
  for (double eps : {1e-12, 1e-5}) {
    parameter_store<T, cpu> ps;
    layer_norm<T, cpu> ln(ps, "ln", 7, eps);
    ps.finalize();
    ps.initialize(3);
    randomize(ps, 4);
    ten x = random_tensor({3, 7}, 5, 2.0), dx, y;
    auto r = gradient_check<cpu>(
        &ps, {{"x", &x, &dx}}, [&]() -> const ten& { ln.forward(x, y); return y; },
        [&](const ten& dy) { ln.backward(x, dy, dx); });
    INFO("eps " << eps << ": " << r.summary());
    CHECK(r.max_rel_error < tol);
  }
}

TEST_CASE("gradcheck: gelu", "[gradcheck][gelu]") {
  ten x = random_tensor({4, 6}, 6, 2.0), dx, y;
  auto r = gradient_check<cpu>(
      nullptr, {{"x", &x, &dx}}, [&]() -> const ten& { gelu::forward(x, y); return y; },
      [&](const ten& dy) { gelu::backward(x, dy, dx); });
  INFO(r.summary());
  CHECK(r.max_rel_error < tol);
}

TEST_CASE("gradcheck: dropout (fixed mask)", "[gradcheck][dropout]") {
  dropout<T, cpu> d(0.3, 9);
  run_context ctx;
  ctx.training = true;
  ctx.seed = 42;
  ten x = random_tensor({5, 8}, 7), dx, y;
  auto r = gradient_check<cpu>(
      nullptr, {{"x", &x, &dx}}, [&]() -> const ten& { d.forward(ctx, x, y); return y; },
      [&](const ten& dy) { d.backward(dy, dx, true); });
  INFO(r.summary());
  CHECK(r.max_rel_error < tol);
}

TEMPLATE_TEST_CASE("cpu dropout masks are stream_uniform(key, step, i) >= p, on any thread split",
                   "[dropout][random]", float, double) {
  using U = TestType;
  // sizes around the 64-element groups of the vectorised path, and one large enough for 2 threads
  for (index_t n : {index_t(1), index_t(3), index_t(63), index_t(64), index_t(65), index_t(1000), index_t(200003)}) {
    for (int threads : {1, 2}) {
      const int saved = cpu::num_threads();
      cpu::set_num_threads(threads);
      const auto un = static_cast<std::size_t>(n);
      std::vector<U> x(un, U(0)), y(un);
      rng g(static_cast<std::uint64_t>(n));
      for (auto& v : x) v = U(g.normal());
      std::vector<std::uint8_t> keep(un);
      const std::uint64_t key = 0x1234567890abcdefull + std::uint64_t(n), step = (std::uint64_t(7) << 32) + 5;
      const double p = 0.25;
      cpu::dropout_forward(x.data(), y.data(), keep.data(), n, p, key, step);
      cpu::set_num_threads(saved);
      index_t wrong = 0, kept = 0;
      for (index_t i = 0; i < n; ++i) {
        const bool k = stream_uniform(key, step, std::uint64_t(i)) >= float(p);
        const U expect = k ? x[std::size_t(i)] * U(1.0 / (1.0 - p)) : U(0);
        if (keep[std::size_t(i)] != k || y[std::size_t(i)] != expect) ++wrong;
        kept += k;
      }
      INFO("n = " << n << ", threads = " << threads);
      CHECK(wrong == 0);
      if (n >= 1000) CHECK(std::abs(double(kept) / double(n) - 0.75) < 0.05);
      // backward: dx = dy * keep / (1 - p), and accumulating
      std::vector<U> dx(un, U(1));
      cpu::dropout_backward(x.data(), keep.data(), dx.data(), n, p, true);
      index_t wrong_b = 0;
      for (index_t i = 0; i < n; ++i)
        if (dx[std::size_t(i)] != U(1) + y[std::size_t(i)]) ++wrong_b;
      CHECK(wrong_b == 0);
    }
  }
}

TEMPLATE_TEST_CASE("gradcheck: relative attention", "[gradcheck][attention]", relative_key, relative_key_query) {
  parameter_store<T, cpu> ps;
  const index_t hidden = 8, heads = 2, M = 6;
  relative_attention<T, cpu, TestType> att(ps, "attn", hidden, heads, M, 0.0, 1);
  ps.finalize();
  randomize(ps, 11, 0.4);
  const index_t B = 2, L = 5;
  ten x = random_tensor({B, L, hidden}, 12), dx, y;
  ten mask({B, L});
  for (index_t b = 0; b < B; ++b)
    for (index_t l = 0; l < L; ++l) mask.at({b, l}) = (b == 1 && l >= 3) ? 0.0 : 1.0;  // padding in row 1
  run_context ctx;
  auto r = gradient_check<cpu>(
      &ps, {{"x", &x, &dx}}, [&]() -> const ten& { att.forward(ctx, x, &mask, y); return y; },
      [&](const ten& dy) { att.backward(x, dy, dx); });
  INFO(r.summary());
  CHECK(r.max_rel_error < tol);
  // distance rows outside +-(L-1) get exactly zero gradient
  const auto g = ps.get_grad("attn.distance_embedding.weight");
  const index_t D = hidden / heads;
  for (index_t d = 0; d < D; ++d) CHECK(g[std::size_t(d)] == 0.0);  // row 0 = distance -(M-1)
}

TEST_CASE("gradcheck: relative attention with attention dropout", "[gradcheck][attention][dropout]") {
  parameter_store<T, cpu> ps;
  relative_attention<T, cpu> att(ps, "attn", 6, 3, 4, 0.25, 5);
  ps.finalize();
  randomize(ps, 21, 0.4);
  ten x = random_tensor({1, 4, 6}, 22), dx, y;
  run_context ctx;
  ctx.training = true;
  ctx.seed = 7;
  auto r = gradient_check<cpu>(
      &ps, {{"x", &x, &dx}}, [&]() -> const ten& { att.forward(ctx, x, nullptr, y); return y; },
      [&](const ten& dy) { att.backward(x, dy, dx); });
  INFO(r.summary());
  CHECK(r.max_rel_error < tol);
}

TEST_CASE("gradcheck: post-LN encoder layer and stack", "[gradcheck][encoder]") {
  encoder_dims d;
  d.hidden = 8;
  d.heads = 2;
  d.intermediate = 12;
  d.max_positions = 8;
  d.hidden_dropout = 0.1;
  d.attention_dropout = 0.1;
  parameter_store<T, cpu> ps;
  input_embeddings<T, cpu> emb(ps, "embeddings", d.hidden, d.layer_norm_eps, d.hidden_dropout, 1);
  encoder<T, cpu> enc(ps, "encoder", 2, d);
  ps.finalize();
  ps.initialize(1);
  randomize(ps, 31, 0.3);
  ten x = random_tensor({2, 4, d.hidden}, 32), dx, dh;
  ten mask({2, 4});
  for (index_t l = 0; l < 4; ++l) {
    mask.at({0, l}) = 1;
    mask.at({1, l}) = l < 2;
  }
  run_context ctx;
  ctx.training = GENERATE(false, true);
  ctx.seed = 99;
  // accumulate: dh zeroed, then dx += ... through every layer (the layers' default); assign: dh and
  // dx start as NaN and the backward passes overwrite them (what GLM::backward does: no zero fills)
  const bool accumulate = GENERATE(true, false);
  auto r = gradient_check<cpu>(
      &ps, {{"inputs_embeds", &x, &dx}},
      [&]() -> const ten& { return enc.forward(ctx, emb.forward(ctx, x), &mask); },
      [&](const ten& dy) {
        if (accumulate) {
          dh.resize_zero(x.shape());
          enc.backward(dy, dh);
          emb.backward(dh, dx);
        } else {
          dh.resize(x.shape());
          cpu::fill(dh.data(), dh.numel(), std::numeric_limits<T>::quiet_NaN());
          cpu::fill(dx.data(), dx.numel(), std::numeric_limits<T>::quiet_NaN());
          enc.backward(dy, dh, false);
          emb.backward(dh, dx, false);
        }
      });
  INFO("training=" << ctx.training << " accumulate=" << accumulate << ": " << r.summary());
  CHECK(r.checked > std::size_t(ps.count()));
  CHECK(r.max_rel_error < tol);
}

TEST_CASE("encoder layer backward: assigning dx gives the bits of accumulating onto zeros", "[gradcheck][encoder]") {
  encoder_dims d;
  d.hidden = 16;
  d.heads = 4;
  d.intermediate = 24;
  d.max_positions = 16;
  parameter_store<T, cpu> ps;
  encoder_layer<T, cpu> layer(ps, "encoder.layer.0", d, 1);
  ps.finalize();
  ps.initialize(1);
  randomize(ps, 41, 0.3);
  const ten x = random_tensor({3, 5, d.hidden}, 42), dy = random_tensor({3, 5, d.hidden}, 43);
  run_context ctx;
  ctx.training = GENERATE(false, true);  // dropout on: the out-of-place dropout backward paths
  ctx.seed = 5;
  layer.forward(ctx, x, nullptr);
  ten acc, set(x.shape());
  acc.resize_zero(x.shape());
  cpu::fill(set.data(), set.numel(), std::numeric_limits<T>::quiet_NaN());
  layer.backward(x, dy, acc);
  const auto g_acc = ps.grads().to_host();
  layer.backward(x, dy, set, false);
  const auto g_set = ps.grads().to_host();
  CAPTURE(ctx.training);
  CHECK(acc.to_host() == set.to_host());
  CHECK(g_acc == g_set);
  // and accumulating adds onto what dx held (the parts summed in another order: to rounding)
  ten twice = acc;
  layer.backward(x, dy, twice);
  const auto a = acc.to_host(), t2 = twice.to_host();
  double scale = 0;
  for (const T v : a) scale = std::max(scale, std::abs(v));
  REQUIRE(scale > 0);
  for (std::size_t i = 0; i < a.size(); ++i) REQUIRE(std::abs(t2[i] - 2 * a[i]) <= 1e-13 * scale);
}

TEST_CASE("gradient checker detects a wrong backward", "[gradcheck]") {
  parameter_store<T, cpu> ps;
  linear<T, cpu> lin(ps, "fc", 3, 2);
  ps.finalize();
  randomize(ps, 1);
  ten x = random_tensor({2, 3}, 2), dx, y;
  auto r = gradient_check<cpu>(
      &ps, {{"x", &x, &dx}}, [&]() -> const ten& { lin.forward(x, y); return y; },
      [&](const ten& dy) {
        lin.backward(x, dy, &dx);
        dx.at({1, 2}) *= 1.01;  // a 1% error in one input gradient
      });
  CHECK(r.max_rel_error > 1e-3);
  CHECK(r.worst == "x[5]");
}

TEST_CASE("parameter store: gradients are allocated on first use; a default tensor is empty", "[parameters]") {
  tensor<double, cpu> t;
  CHECK(t.numel() == 0);
  CHECK(t.empty());
  parameter_store<double, cpu> ps;
  ps.add("one", {1});
  ps.finalize();
  ps.initialize(1);
  CHECK(ps.grads().numel() == ps.flat_size());
  CHECK(ps.grads().data() != nullptr);
  CHECK(ps.get_grad("one") == std::vector<double>{0.0});
}
