// Dynamic loss scaling (train/loss_scaler.hpp): the scaler's state machine, exactness of
// power-of-two scaling in whole training runs on the CPU backend, overflow handling (skipped
// steps), and the scaler's state in checkpoints.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>

#include <unistd.h>

#include <genlm/data/simulate.hpp>
#include <genlm/train/checkpoint.hpp>
#include <genlm/train/loss_scaler.hpp>
#include <genlm/train/simulated_task.hpp>
#include <genlm/train/trainer.hpp>

using namespace genlm;
namespace fs = std::filesystem;

namespace {
using Model = GLM<configs::tiny, cpu, float>;

struct fixture_data : simulated_task {
  fixture_data()
      : simulated_task(simulated_task::structured(configs::tiny.plm_dim, 120), configs::tiny.pca_components) {}
};

fs::path temp_path(const std::string& name) {
  return fs::temp_directory_path() / ("genlm_test_ls_" + std::to_string(::getpid()) + "_" + name);
}

loss_scale_options scaling_on(double init_scale, std::int64_t interval) {
  loss_scale_options s;
  s.enabled = loss_scaling_mode::on;
  s.init_scale = init_scale;
  s.growth_interval = interval;
  return s;
}

train_options base_options() {
  train_options to;
  to.batch_size = 8;
  to.lr = 1e-3;
  to.seed = 5;
  return to;
}

bool same_bits(const tensor<float, cpu>& a, const tensor<float, cpu>& b) {
  return a.numel() == b.numel() && std::memcmp(a.data(), b.data(), std::size_t(a.numel()) * sizeof(float)) == 0;
}

struct fp16_like_backend {
  using precision = precision::fp16;
};
}  // namespace

// ---------------------------------------------------------------- state machine

TEST_CASE("loss_scaler: defaults and the automatic mode follow the precision policy", "[loss_scaler]") {
  const loss_scale_options d;
  CHECK(d.enabled == loss_scaling_mode::automatic);
  CHECK(d.init_scale == 65536.0);
  CHECK(d.growth_factor == 2.0);
  CHECK(d.backoff_factor == 0.5);
  CHECK(d.growth_interval == 2000);
  CHECK(d.resolve(backend_precision_t<fp16_like_backend>::loss_scaling));
  CHECK_FALSE(d.resolve(backend_precision_t<cpu>::loss_scaling));
  loss_scale_options off = d, on = d;
  off.enabled = loss_scaling_mode::off;
  on.enabled = loss_scaling_mode::on;
  CHECK_FALSE(off.resolve(true));
  CHECK(on.resolve(false));

  const loss_scaler automatic_fp16 = loss_scaler::for_backend<fp16_like_backend>(d);
  CHECK(automatic_fp16.enabled());
  CHECK(automatic_fp16.scale() == 65536.0);
  CHECK_FALSE(loss_scaler::for_backend<cpu>(d).enabled());

  loss_scaler disabled(d, false);  // a disabled scaler scales by 1 and never changes
  CHECK_FALSE(disabled.enabled());
  CHECK(disabled.scale() == 1.0);
  disabled.update(true);
  disabled.update(false);
  CHECK(disabled.scale() == 1.0);
  CHECK(disabled.skipped_steps() == 0);
  CHECK(disabled.growth_tracker() == 0);
}

TEST_CASE("loss_scaler: growth after growth_interval clean steps, backoff on overflow", "[loss_scaler]") {
  loss_scaler s(scaling_on(8.0, 3));
  REQUIRE(s.enabled());
  s.update(false);
  s.update(false);
  CHECK(s.scale() == 8.0);
  CHECK(s.growth_tracker() == 2);
  s.update(false);  // third clean step in a row: grow
  CHECK(s.scale() == 16.0);
  CHECK(s.growth_tracker() == 0);

  s.update(false);
  s.update(false);
  s.update(true);  // overflow: back off, restart the tracker
  CHECK(s.scale() == 8.0);
  CHECK(s.growth_tracker() == 0);
  CHECK(s.skipped_steps() == 1);
  CHECK(s.consecutive_skipped_steps() == 1);
  s.update(true);
  CHECK(s.scale() == 4.0);
  CHECK(s.skipped_steps() == 2);
  CHECK(s.consecutive_skipped_steps() == 2);
  s.update(false);  // the two clean steps before the overflow do not count any more
  s.update(false);
  CHECK(s.scale() == 4.0);
  CHECK(s.consecutive_skipped_steps() == 0);
  s.update(false);
  CHECK(s.scale() == 8.0);
  CHECK(s.skipped_steps() == 2);

  SECTION("other factors") {
    loss_scale_options o = scaling_on(100.0, 1);
    o.growth_factor = 3.0;
    o.backoff_factor = 0.25;
    loss_scaler t(o);
    t.update(false);
    CHECK(t.scale() == 300.0);
    t.update(true);
    CHECK(t.scale() == 75.0);
  }
  SECTION("growth that would overflow double is not taken (torch keeps a finite scale)") {
    loss_scaler t(scaling_on(std::ldexp(1.0, 1023), 1));
    t.update(false);
    CHECK(t.scale() == std::ldexp(1.0, 1023));
    CHECK(t.growth_tracker() == 0);
  }
  SECTION("a scale that keeps backing off ends with an error instead of reaching 0") {
    loss_scaler t(scaling_on(std::ldexp(1.0, -1021), 5));
    t.update(true);  // 2^-1022, the smallest normal double
    CHECK(t.scale() == std::numeric_limits<double>::min());
    CHECK_THROWS_AS(t.update(true), value_error);
    CHECK_THROWS_WITH(t.update(true), Catch::Contains("skipped steps in a row") && Catch::Contains("non-finite"));
  }
}

TEST_CASE("loss_scale_options: validation names the field and the value", "[loss_scaler]") {
  auto bad = [](auto edit) {
    loss_scale_options o;
    edit(o);
    return o;
  };
  CHECK_NOTHROW(loss_scaler(loss_scale_options{}));
  CHECK_THROWS_AS(loss_scaler(bad([](auto& o) { o.init_scale = 0; })), value_error);
  CHECK_THROWS_WITH(loss_scaler(bad([](auto& o) { o.init_scale = -4; })),
                    Catch::Contains("init_scale = -4") && Catch::Contains("> 0"));
  CHECK_THROWS_WITH(loss_scaler(bad([](auto& o) { o.init_scale = std::numeric_limits<double>::infinity(); })),
                    Catch::Contains("init_scale = inf"));
  CHECK_THROWS_WITH(loss_scaler(bad([](auto& o) { o.growth_factor = 1.0; })),
                    Catch::Contains("growth_factor = 1 must be finite and > 1"));
  CHECK_THROWS_WITH(loss_scaler(bad([](auto& o) { o.growth_factor = std::nan(""); })),
                    Catch::Contains("growth_factor = nan"));
  CHECK_THROWS_WITH(loss_scaler(bad([](auto& o) { o.backoff_factor = 1.0; })),
                    Catch::Contains("backoff_factor = 1 must be in (0, 1)"));
  CHECK_THROWS_WITH(loss_scaler(bad([](auto& o) { o.backoff_factor = 0.0; })),
                    Catch::Contains("backoff_factor = 0 must be in (0, 1)"));
  CHECK_THROWS_WITH(loss_scaler(bad([](auto& o) { o.growth_interval = 0; })),
                    Catch::Contains("growth_interval = 0 must be >= 1"));
  // the options are validated when a trainer is built
  fixture_data d;
  Model m;
  train_options to = base_options();
  to.scaling.backoff_factor = 2.0;
  CHECK_THROWS_WITH(trainer<Model>(m, d.feat, d.train, to), Catch::Contains("backoff_factor = 2"));
}

TEST_CASE("loss_scaler::unscale_and_check multiplies by 1/scale or reports non-finite gradients", "[loss_scaler]") {
  parameter_store<float, cpu> ps;
  ps.add("w", shape_t{5});
  ps.add("b", shape_t{3});
  ps.finalize();
  const std::vector<float> g = {0.5f, -1.25f, 3e-5f, 7.0f, -0.0f, 1e-20f, 2.0f, -3.5f};
  auto fill = [&](float factor) {
    std::vector<float> h(g);
    for (auto& v : h) v *= factor;
    std::copy(h.begin(), h.begin() + 5, ps.grad(ps.find("w")));
    std::copy(h.begin() + 5, h.end(), ps.grad(ps.find("b")));
  };
  auto grads = [&] {
    std::vector<float> h(ps.grad(ps.find("w")), ps.grad(ps.find("w")) + 5);
    h.insert(h.end(), ps.grad(ps.find("b")), ps.grad(ps.find("b")) + 3);
    return h;
  };

  loss_scaler s(scaling_on(1024.0, 10));
  fill(1024.0f);
  CHECK(s.unscale_and_check(ps));
  CHECK(grads() == g);  // exact: 1/1024 is a power of two

  fill(1024.0f);
  ps.grad(ps.find("b"))[1] = std::numeric_limits<float>::infinity();
  const tensor<float, cpu> before = ps.grads();
  CHECK_FALSE(s.unscale_and_check(ps));
  CHECK(same_bits(before, ps.grads()));  // left untouched
  ps.grad(ps.find("b"))[1] = std::numeric_limits<float>::quiet_NaN();
  CHECK_FALSE(s.unscale_and_check(ps));

  loss_scaler one(scaling_on(1.0, 10));  // scale 1: nothing to multiply
  fill(1.0f);
  CHECK(one.unscale_and_check(ps));
  CHECK(grads() == g);
  loss_scaler disabled(loss_scale_options{}, false);
  fill(3.0f);
  CHECK(disabled.unscale_and_check(ps));
  std::vector<float> g3(g);
  for (auto& v : g3) v *= 3.0f;
  CHECK(grads() == g3);

  // unscale(store, finite): the caller's check (e.g. masked_gene_pass's count) instead of a count
  fill(1024.0f);
  CHECK(s.unscale(ps, true));
  CHECK(grads() == g);
  fill(1024.0f);
  const tensor<float, cpu> scaled = ps.grads();
  CHECK_FALSE(s.unscale(ps, false));        // reported non-finite: left untouched, not counted again
  CHECK(same_bits(scaled, ps.grads()));
  ps.grad(ps.find("w"))[0] = std::numeric_limits<float>::quiet_NaN();
  CHECK(s.unscale(ps, true));  // trusts the caller: no count of its own
  CHECK(std::isnan(ps.grad(ps.find("w"))[0]));
  CHECK(ps.grad(ps.find("w"))[1] == g[1]);
}

// ---------------------------------------------------------------- training on the CPU backend

TEST_CASE("trainer: loss scaling is off by default on the fp32 CPU backend", "[loss_scaler][training]") {
  fixture_data d;
  Model m;
  trainer<Model> tr(m, d.feat, d.train, base_options());
  CHECK_FALSE(tr.loss_scaling_active());
  CHECK(tr.scaler().scale() == 1.0);
  train_options to = base_options();
  to.scaling.enabled = loss_scaling_mode::on;
  Model m2;
  trainer<Model> t2(m2, d.feat, d.train, to);
  CHECK(t2.loss_scaling_active());
  CHECK(t2.scaler().scale() == 65536.0);
}

TEST_CASE("trainer: power-of-two loss scaling gives bit-identical training", "[loss_scaler][training]") {
  fixture_data d;
  model_options mo;  // dropout on
  const int steps = 12;
  train_options plain = base_options();
  plain.warmup_steps = 2;
  plain.clip_norm = 5.0;  // both clippings act on the unscaled gradients
  train_options scaled = plain;
  scaled.scaling = scaling_on(1024.0, 3);  // 2^10, growing to 2^14 over 12 steps

  Model a(mo), b(mo);
  const tensor<float, cpu> init = a.parameters().values();
  trainer<Model> ta(a, d.feat, d.train, plain);
  trainer<Model> tb(b, d.feat, d.train, scaled);
  REQUIRE_FALSE(ta.loss_scaling_active());
  REQUIRE(tb.loss_scaling_active());
  double loss_a = 0, loss_b = 0;
  for (int i = 0; i < steps; ++i) {
    const auto ma = ta.step(), mb = tb.step();
    CHECK_FALSE(mb.skipped);
    loss_a += ma.loss;
    loss_b += mb.loss;
  }
  CHECK(tb.scaler().skipped_steps() == 0);
  CHECK(tb.scaler().scale() == std::ldexp(1.0, 14));  // the scale did grow: 4 growths in 12 steps
  CHECK(tb.optimizer().steps() == steps);
  CHECK(loss_a == loss_b);
  CHECK_FALSE(same_bits(init, a.parameters().values()));  // training moved the parameters
  CHECK(same_bits(a.parameters().values(), b.parameters().values()));
  CHECK(same_bits(ta.optimizer().exp_avg(), tb.optimizer().exp_avg()));
  CHECK(same_bits(ta.optimizer().exp_avg_sq(), tb.optimizer().exp_avg_sq()));
}

namespace {
/// Trains `scaled` (loss scaling on) next to the unscaled `ref` on the same batches: ref skips the
/// batches whose step the scaler skipped. Returns the number of skipped steps at the start; checks
/// that each of them halves the scale, takes no AdamW step and leaves the parameters unchanged,
/// and that both runs stay bit-identical through `more` further steps.
int run_until_steps_succeed(trainer<Model>& tr, Model& b, trainer<Model>& ref, Model& a, int more) {
  const tensor<float, cpu> p0 = b.parameters().values();
  int skipped = 0;
  double expected_scale = tr.scaler().scale();
  while (true) {
    REQUIRE(skipped < 60);
    const auto m = tr.step();
    INFO("step " << tr.step_count() << ", scale before the step " << expected_scale);
    if (!m.skipped) break;
    ++skipped;
    expected_scale *= 0.5;
    CHECK(std::isfinite(m.loss));  // the forward pass is fine, only the gradients overflow
    CHECK(tr.scaler().scale() == expected_scale);
    CHECK(tr.scaler().skipped_steps() == skipped);
    CHECK(tr.scaler().consecutive_skipped_steps() == skipped);
    CHECK(tr.optimizer().steps() == 0);  // no AdamW step: the learning-rate schedule does not advance
    CHECK(tr.step_count() == skipped);   // the batch counter does
    CHECK(same_bits(p0, b.parameters().values()));
    ref.set_step(ref.step_count() + 1);  // the reference skips the same batch
  }
  CHECK(tr.scaler().scale() == expected_scale);  // the successful step did not change the scale
  CHECK(tr.optimizer().steps() == 1);
  CHECK_FALSE(same_bits(p0, b.parameters().values()));
  ref.step();
  CHECK(same_bits(a.parameters().values(), b.parameters().values()));
  for (int i = 0; i < more; ++i) {  // training proceeds; a later overflow is skipped by ref too
    if (tr.step().skipped)
      ref.set_step(ref.step_count() + 1);
    else
      ref.step();
  }
  CHECK(tr.optimizer().steps() == tr.step_count() - tr.scaler().skipped_steps());
  CHECK(ref.optimizer().steps() == tr.optimizer().steps());
  CHECK(same_bits(a.parameters().values(), b.parameters().values()));
  return skipped;
}
}  // namespace

TEST_CASE("trainer: overflowing steps are skipped and the scale backs off until steps succeed",
          "[loss_scaler][training]") {
  fixture_data d;
  model_options mo;
  train_options plain = base_options();
  Model a(mo), b(mo);

  SECTION("a scale beyond the float range: 2^130, 2^129, 2^128 are skipped, 2^127 works") {
    // This model's loss gradients are <= ~1e-2, so even 2^127 overflows nowhere in the backward pass.
    train_options scaled = plain;
    scaled.scaling = scaling_on(std::ldexp(1.0, 130), 1000);
    trainer<Model> ref(a, d.feat, d.train, plain), tr(b, d.feat, d.train, scaled);
    CHECK(run_until_steps_succeed(tr, b, ref, a, 6) == 3);
    CHECK(tr.scaler().scale() == std::ldexp(1.0, 127));
  }
  SECTION("overflow inside the backward pass") {
    // Large gradients: the hypothesis head's weights times 2^20 (in both models) make the loss
    // gradients ~1e3 and the backward pass overflows float at scales around 2^100; unscaled (and
    // at smaller scales) the gradients are finite.
    for (Model* m : {&a, &b}) {
      auto w = m->parameters().get("lm_head.dense.weight");
      for (auto& v : w) v = std::ldexp(v, 20);
      m->parameters().set("lm_head.dense.weight", m->parameters().at(m->parameters().find("lm_head.dense.weight")).shape, w);
    }
    train_options scaled = plain;
    scaled.scaling = scaling_on(std::ldexp(1.0, 120), 1000);
    trainer<Model> ref(a, d.feat, d.train, plain), tr(b, d.feat, d.train, scaled);
    const int skipped = run_until_steps_succeed(tr, b, ref, a, 6);
    CHECK(skipped >= 2);  // 2^120 fits a float: these overflowed in the backward pass
    CHECK(tr.scaler().scale() <= std::ldexp(1.0, 118));
  }
  SECTION("without loss scaling non-finite gradients stop training with a value_error") {
    // an Inf weight of the hypothesis head: NaN/Inf gradients, counted by the step's pass
    auto w = b.parameters().get("lm_head.dense.weight");
    w[3] = std::numeric_limits<float>::infinity();
    b.parameters().set("lm_head.dense.weight", b.parameters().at(b.parameters().find("lm_head.dense.weight")).shape, w);
    trainer<Model> tr(b, d.feat, d.train, plain);
    REQUIRE_FALSE(tr.loss_scaling_active());
    const auto before = b.parameters().values().to_host();
    CHECK_THROWS_WITH(tr.step(), Catch::Contains("training step 0: non-finite gradients") &&
                                     Catch::Contains("lower the learning rate"));
    const auto after = b.parameters().values().to_host();
    CHECK(std::memcmp(before.data(), after.data(), before.size() * sizeof(float)) == 0);  // no update
  }
}

// ---------------------------------------------------------------- checkpoints

TEST_CASE("loss_scaler: save_to / load_from round trip and its errors", "[loss_scaler][checkpoint]") {
  loss_scaler s(scaling_on(256.0, 3));
  s.update(false), s.update(false), s.update(false), s.update(true), s.update(false);  // 256 -> 512 -> 256
  REQUIRE(s.scale() == 256.0);
  REQUIRE(s.growth_tracker() == 1);
  std::map<std::string, io::array> t;
  s.save_to(t);
  const fs::path p = temp_path("scaler.safetensors");
  io::write_safetensors(p, t, {});
  const auto f = io::read_safetensors(p);
  fs::remove(p);

  loss_scaler r(scaling_on(8.0, 3));
  CHECK(r.load_from(f));
  CHECK(r.scale() == 256.0);
  CHECK(r.growth_tracker() == 1);
  CHECK(r.skipped_steps() == 1);
  r.update(false), r.update(false);  // the restored tracker counts: growth after 2 more steps
  CHECK(r.scale() == 512.0);

  SECTION("absent tensors keep the state") {
    io::safetensors_file empty;
    empty.source = "old.safetensors";
    loss_scaler q(scaling_on(8.0, 3));
    q.update(false);
    CHECK_FALSE(q.load_from(empty));
    CHECK(q.scale() == 8.0);
    CHECK(q.growth_tracker() == 1);
  }
  SECTION("one tensor without the other") {
    io::safetensors_file g = f;
    g.tensors.erase("scaler.growth_tracker");
    CHECK_THROWS_AS(r.load_from(g), format_error);
    CHECK_THROWS_WITH(r.load_from(g), Catch::Contains("'scaler.scale'") && Catch::Contains("not 'scaler.growth_tracker'"));
  }
  SECTION("bad values") {
    io::safetensors_file g = f;
    g.tensors["scaler.scale"] = io::array::from<double>({1}, std::vector<double>{0.0});
    CHECK_THROWS_AS(r.load_from(g), value_error);
    CHECK_THROWS_WITH(r.load_from(g), Catch::Contains("'scaler.scale'") && Catch::Contains("holds scale 0"));
    g = f;
    g.tensors["scaler.growth_tracker"] = io::array::from<std::int64_t>({1}, std::vector<std::int64_t>{-1});
    CHECK_THROWS_WITH(r.load_from(g), Catch::Contains("'scaler.growth_tracker'") && Catch::Contains("holds -1"));
    g = f;
    g.tensors["scaler.growth_tracker"] = io::array::from<double>({1}, std::vector<double>{1.0});
    CHECK_THROWS_AS(r.load_from(g), format_error);
    g = f;
    g.tensors["scaler.scale"] = io::array::from<double>({2}, std::vector<double>{1.0, 2.0});
    CHECK_THROWS_AS(r.load_from(g), shape_error);
  }
}

TEST_CASE("checkpoints carry the scaler state and older checkpoints without it still load",
          "[loss_scaler][checkpoint]") {
  fixture_data d;
  model_options mo;
  train_options to = base_options();
  to.scaling = scaling_on(1024.0, 3);
  const fs::path ck = temp_path("scaled.safetensors");

  Model a(mo);  // uninterrupted: 8 steps
  trainer<Model> ta(a, d.feat, d.train, to);
  for (int i = 0; i < 8; ++i) ta.step();
  {
    Model b(mo);  // interrupted after 4 steps: scale 2^11, tracker 1
    trainer<Model> tb(b, d.feat, d.train, to);
    for (int i = 0; i < 4; ++i) tb.step();
    REQUIRE(tb.scaler().scale() == 2048.0);
    REQUIRE(tb.scaler().growth_tracker() == 1);
    save_checkpoint(ck, b, d.pipe, &tb.optimizer(), tb.step_count(), to.seed, {}, &tb.scaler());
  }
  model_options other = mo;
  other.init_seed = 99;
  Model c(other);
  feature_pipeline pipe;
  trainer<Model> tc(c, d.feat, d.train, to);
  const auto info = load_checkpoint(ck, c, pipe, &tc.optimizer(), &tc.scaler());
  CHECK(info.has_scaler);
  CHECK(tc.scaler().scale() == 2048.0);
  CHECK(tc.scaler().growth_tracker() == 1);
  tc.set_step(info.step);
  for (int i = 0; i < 4; ++i) tc.step();
  CHECK(tc.scaler().scale() == ta.scaler().scale());  // 2^12 after 8 steps
  CHECK(tc.scaler().growth_tracker() == ta.scaler().growth_tracker());
  CHECK(same_bits(a.parameters().values(), c.parameters().values()));

  SECTION("a checkpoint without scaler state (a run without loss scaling) loads and keeps the defaults") {
    const fs::path old = temp_path("unscaled.safetensors");
    Model e(mo);
    trainer<Model> te(e, d.feat, d.train, base_options());
    te.step();
    REQUIRE_FALSE(te.loss_scaling_active());
    save_checkpoint(old, e, d.pipe, &te.optimizer(), te.step_count(), 5, {}, &te.scaler());  // disabled: not written
    CHECK_FALSE(io::read_safetensors(old).contains("scaler.scale"));
    Model g(mo);
    feature_pipeline p2;
    trainer<Model> tg(g, d.feat, d.train, to);
    const auto i2 = load_checkpoint(old, g, p2, &tg.optimizer(), &tg.scaler());
    CHECK_FALSE(i2.has_scaler);
    CHECK(i2.has_optimizer);
    CHECK(tg.scaler().scale() == 1024.0);
    CHECK(tg.scaler().growth_tracker() == 0);
    CHECK(same_bits(e.parameters().values(), g.parameters().values()));
    fs::remove(old);
  }
  SECTION("a checkpoint with scaler state loads without a scaler (e.g. into an unscaled run)") {
    Model g(mo);
    feature_pipeline p2;
    const auto i2 = load_checkpoint(ck, g, p2);
    CHECK(i2.has_scaler);
    CHECK(i2.step == 4);
  }
  fs::remove(ck);
}
