// genlm - command-line tool for the genomic language model gLM (train, embed, predict).
//
// Built from the header-only library; see README.md. Each model preset (configs::tiny, small,
// paper) is one template instantiation; a checkpoint's metadata selects it at run time.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include <genlm/data/contig_table.hpp>
#include <genlm/data/dataset.hpp>
#include <genlm/data/gff.hpp>
#include <genlm/io/npy.hpp>
#include <genlm/io/safetensors.hpp>
#include <genlm/model/inference.hpp>
#include <genlm/train/checkpoint.hpp>
#include <genlm/train/trainer.hpp>
#include <genlm/util/progress.hpp>

namespace fs = std::filesystem;
using namespace genlm;

#if defined(GENLM_USE_CBLAS)
extern "C" void openblas_set_num_threads(int);
#endif

namespace {

// ------------------------------------------------------------------------------------------ input
struct input_options {
  std::vector<std::string> genomes;  // GenBank / GFF3 / Prodigal .faa
  std::string contigs;               // contig table (contig<TAB>+protA;-protB)
  std::string embeddings;            // .npy (+ --ids) or .safetensors
  std::string ids;
  int window = 30;
  int overlap = 0;
  int batch = 16;
  int threads = 0;
};

struct gene_info {
  std::string contig;
  int strand = 1;
  std::string product;
  std::string ec;
};

struct loaded_input {
  protein_embeddings emb;
  std::vector<contig_entry> entries;
  std::vector<contig_window> windows;
  std::map<std::string, gene_info> info;  // by gene/protein id (genome input only)
  std::string where;
  bool featurized = false;
  std::size_t genes = 0, contigs = 0;
};

void add_input_options(CLI::App* app, input_options& o, int default_overlap) {
  o.overlap = default_overlap;
  app->add_option("-g,--genome", o.genomes,
                  "Annotated genome(s): GenBank (.gbk), GFF3 with ##FASTA, or Prodigal proteins (.faa); genes are "
                  "read in order with strand and protein sequence")
      ->check(CLI::ExistingFile);
  app->add_option("-c,--contigs", o.contigs, "Contig table in gLM's format: contig<TAB>+protA;-protB;...")
      ->check(CLI::ExistingFile);
  app->add_option("-e,--embeddings", o.embeddings,
                  "Protein embeddings (e.g. ESM2): .npy (proteins x dim, with --ids) or .safetensors (tensor "
                  "'embeddings' + metadata 'ids', or one tensor per protein). Without it, genes from --genome get "
                  "genlm's built-in sequence features (a stand-in, NOT a protein language model)")
      ->check(CLI::ExistingFile);
  app->add_option("--ids", o.ids, "Protein ids of the .npy rows, one per line")->check(CLI::ExistingFile);
  app->add_option("-w,--window", o.window, "Genes per window (contigs longer than this are split)")->capture_default_str()
      ->check(CLI::Range(1, 512));
  app->add_option("--overlap", o.overlap, "Genes shared by consecutive windows")->capture_default_str()->check(CLI::Range(0, 511));
  app->add_option("-b,--batch", o.batch, "Windows per batch")->capture_default_str()->check(CLI::Range(1, 100000));
  app->add_option("-t,--threads", o.threads, "BLAS threads (0 = all cores)")->capture_default_str()->check(CLI::Range(0, 1024));
}

void set_threads(int n) {
#if defined(GENLM_USE_CBLAS)
  openblas_set_num_threads(n > 0 ? n : int(std::max(1u, std::thread::hardware_concurrency())));
#else
  (void)n;
#endif
}

loaded_input load_input(const input_options& o, index_t plm_dim, index_t max_window) {
  loaded_input in;
  check<value_error>(o.window <= max_window, "--window ", o.window, " exceeds the model's max_positions ", max_window);
  check<value_error>(o.overlap < o.window, "--overlap ", o.overlap, " must be smaller than --window ", o.window);
  std::vector<contig_entry> entries;
  if (!o.genomes.empty()) {
    check<value_error>(o.contigs.empty(), "give either --genome or --contigs, not both");
    std::vector<contig> genome;
    for (const auto& g : o.genomes) {
      auto cs = read_genome(g);
      check<format_error>(!cs.empty(), "genome file '", g, "' holds no contigs with CDS features");
      genome.insert(genome.end(), cs.begin(), cs.end());
      in.where += (in.where.empty() ? "" : ", ") + g;
    }
    for (const auto& c : genome) {
      if (c.genes.empty()) continue;
      entries.push_back(to_entry(c));
      for (const auto& g : c.genes) {
        std::string ec;
        for (const auto& e : g.ec_numbers) ec += (ec.empty() ? "" : ",") + e;
        in.info[g.id] = {c.id, g.strand, g.product, ec};
      }
    }
    if (o.embeddings.empty()) {
      in.emb = protein_embeddings::featurize(genome, std::size_t(plm_dim), in.where);
      in.featurized = true;
    }
  } else {
    check<value_error>(!o.contigs.empty(), "no input: give --genome FILE, or --contigs FILE with --embeddings FILE");
    check<value_error>(!o.embeddings.empty(), "--contigs needs --embeddings (protein embeddings by id)");
    entries = read_contig_table(o.contigs);
    check<format_error>(!entries.empty(), "contig table '", o.contigs, "' is empty");
    in.where = o.contigs;
  }
  if (!o.embeddings.empty()) {
    const fs::path p(o.embeddings);
    if (p.extension() == ".npy") {
      check<value_error>(!o.ids.empty(), "embeddings '", o.embeddings, "' are .npy: give the protein ids with --ids FILE");
      in.emb = protein_embeddings::from_npy(p, o.ids);
    } else {
      in.emb = protein_embeddings::from_safetensors(p);
    }
  }
  check<shape_error>(in.emb.dim() == plm_dim, in.emb.source(), ": embeddings have ", in.emb.dim(),
                     " dimensions but the model expects plm_dim ", plm_dim);
  in.entries = entries;
  for (const auto& e : entries) {
    auto ws = windows(e, std::size_t(o.window), std::size_t(o.overlap));
    in.windows.insert(in.windows.end(), ws.begin(), ws.end());
    in.genes += e.genes.size();
    ++in.contigs;
  }
  check<format_error>(!in.windows.empty(), in.where, ": no genes found");
  return in;
}

void print_input(const loaded_input& in) {
  std::fprintf(stderr, "input: %s: %zu contigs, %zu genes, %zu windows; protein features: %s (%lld proteins x %lld)\n",
               in.where.c_str(), in.contigs, in.genes, in.windows.size(),
               in.featurized ? "built-in sequence features (stand-in for ESM2)" : in.emb.source().c_str(),
               (long long)in.emb.size(), (long long)in.emb.dim());
}

// ------------------------------------------------------------------------------------------ train
struct train_cli {
  std::string config = "small";
  std::string out = "genlm_model.safetensors";
  std::string resume;
  long long steps = 1000;
  double lr = 1e-3;
  long long warmup = 100;
  double dropout = 0.1;
  double mask_prob = 0.15;
  double clip_value = 1.0;
  double ce_weight = 1e-4;
  int eval_every_window = 5;
  int eval_rounds = 5;
  long long save_every = 500;
  std::uint64_t seed = 1;
};

void print_metrics(const masked_gene_metrics& m, const masked_gene_metrics& b, std::size_t windows) {
  std::printf("masked-gene prediction on %zu held-out windows (%lld masked genes in all rounds):\n", windows,
              (long long)m.masked);
  std::printf("  %-26s %9s %8s %17s\n", "", "accuracy", "cosine", "MSE(most likely)");
  std::printf("  %-26s %8.1f%% %8.3f %17.3f\n", "gLM (this model)", 100 * m.accuracy(), m.cosine, m.mse_most_likely);
  std::printf("  %-26s %8.1f%% %8.3f %17.3f\n", "context-free baseline", 100 * b.accuracy(), b.cosine, b.mse_most_likely);
  std::fflush(stdout);
}

template <model_config C>
int run_train(const input_options& io, const train_cli& o) {
  using Model = GLM<C, cpu>;
  set_threads(io.threads);
  std::fprintf(stderr, "model: %s\n", C.str().c_str());
  loaded_input in = load_input(io, C.plm_dim, std::min(C.max_positions, C.max_genes));
  print_input(in);

  // Hold-out: each contig is cut into blocks of --window genes and every k-th block is held out
  // for evaluation; training windows (overlapping by --overlap) are cut from the remaining runs of
  // blocks only, so no held-out gene is ever seen in training.
  std::vector<contig_window> train_w, eval_w;
  std::size_t block_no = 0;
  const std::size_t W = std::size_t(io.window), k = std::size_t(o.eval_every_window);
  for (const auto& e : in.entries) {
    contig_entry run{e.contig_id, {}};
    std::size_t run_start = 0, part = 0;
    auto flush = [&] {
      if (run.genes.empty()) return;
      run.contig_id = e.contig_id + "#" + std::to_string(part++) + "@" + std::to_string(run_start);
      auto ws = windows(run, W, std::size_t(io.overlap));
      train_w.insert(train_w.end(), ws.begin(), ws.end());
      run.genes.clear();
    };
    for (std::size_t b = 0; b * W < e.genes.size(); ++b, ++block_no) {
      const std::size_t lo = b * W, hi = std::min(e.genes.size(), lo + W);
      if (k > 0 && block_no % k == k / 2) {
        flush();
        contig_entry blk{e.contig_id + ":" + std::to_string(lo + 1) + "-" + std::to_string(hi), {}};
        blk.genes.assign(e.genes.begin() + std::ptrdiff_t(lo), e.genes.begin() + std::ptrdiff_t(hi));
        auto ws = windows(blk, W, 0);
        eval_w.insert(eval_w.end(), ws.begin(), ws.end());
      } else {
        if (run.genes.empty()) run_start = lo;
        run.genes.insert(run.genes.end(), e.genes.begin() + std::ptrdiff_t(lo), e.genes.begin() + std::ptrdiff_t(hi));
      }
    }
    flush();
  }
  check<value_error>(!train_w.empty(), in.where, ": no training windows left after the hold-out");
  model_options mo;
  mo.hidden_dropout = mo.attention_dropout = o.dropout;
  mo.init_seed = o.seed;
  Model model(mo);
  feature_pipeline pipe;
  checkpoint_info resumed;
  if (!o.resume.empty()) {
    resumed = load_checkpoint(o.resume, model, pipe);
    std::fprintf(stderr, "resuming from %s at step %lld\n", o.resume.c_str(), (long long)resumed.step);
  } else {
    pipe.fit(in.emb, C.pca_components);
  }
  const gene_features feat = pipe.features(in.emb);
  const auto train_g = resolve_windows(train_w, in.emb, in.where);
  const auto eval_g = resolve_windows(eval_w, in.emb, in.where);

  train_options to;
  to.batch_size = io.batch;
  to.lr = o.lr;
  to.warmup_steps = o.warmup;
  to.clip_value = o.clip_value;
  to.seed = o.seed;
  to.masking.probability = o.mask_prob;
  to.loss.ce_weight = o.ce_weight;
  trainer<Model> tr(model, feat, train_g, to);
  if (!o.resume.empty()) {
    check<format_error>(resumed.has_optimizer, "checkpoint '", o.resume, "' has no optimizer state; cannot resume");
    tr.optimizer().load_from(io::read_safetensors(o.resume), "optimizer.");
    tr.set_step(resumed.step);
  }
  index_t n = 0;
  const auto labels = tr.training_labels(n);
  context_free_baseline base;
  base.fit(labels, n, C.label_dim(), C.hypotheses, o.seed);
  std::fprintf(stderr, "training on %zu windows, evaluating on %zu; %lld parameters\n", train_g.size(), eval_g.size(),
               (long long)model.parameters().count());

  auto save = [&] {
    save_checkpoint(o.out, model, pipe, &tr.optimizer(), tr.step_count(), o.seed,
                    {{"genlm.input", in.where}, {"genlm.features", in.featurized ? "builtin" : "external"}});
  };
  progress_bar bar("train", o.steps);
  double avg_loss = 0;
  while (tr.step_count() < o.steps) {
    const auto idx = tr.batch_indices(tr.step_count());
    long long genes = 0;
    for (auto i : idx) genes += (long long)train_g[i].genes.size();
    const auto m = tr.step();
    avg_loss = tr.step_count() == 1 ? m.loss : 0.98 * avg_loss + 0.02 * m.loss;
    char status[64];
    std::snprintf(status, sizeof status, "loss %.4f", avg_loss);
    bar.update(tr.step_count(), genes, status);
    if (o.save_every > 0 && tr.step_count() % o.save_every == 0 && tr.step_count() < o.steps) save();
  }
  save();
  std::fprintf(stderr, "wrote checkpoint %s (step %lld)\n", o.out.c_str(), (long long)tr.step_count());
  if (!eval_g.empty()) {
    metrics_sum ms, bs;  // several independent maskings of the held-out windows
    for (int r = 0; r < std::max(1, o.eval_rounds); ++r) {
      const auto [m, b] = tr.evaluate(eval_g, base, o.seed + 1000 + std::uint64_t(r));
      ms.add(m);
      bs.add(b);
    }
    print_metrics(ms.mean(), bs.mean(), eval_g.size());
  }
  return 0;
}

// ------------------------------------------------------------------------------------------ embed / predict
std::string checkpoint_config(const std::string& path) {
  const auto f = io::read_safetensors(path);
  auto it = f.metadata.find("genlm.config");
  check<format_error>(it != f.metadata.end(), "checkpoint '", path, "': no 'genlm.config' metadata (not a genlm checkpoint)");
  return it->second;
}

void write_gene_table(const fs::path& path, const loaded_input& in, const std::vector<contig_embeddings>& embs,
                      const std::vector<contig_window>& ws) {
  // gene ids per source contig, from the windows
  std::map<std::string, std::vector<std::pair<std::string, int>>> genes;
  for (const auto& w : ws) {
    auto& v = genes[w.source_id];
    v.resize(w.source_size);
    for (std::size_t l = 0; l < w.entry.genes.size(); ++l) v[w.offset + l] = w.entry.genes[l];
  }
  std::ofstream out(path);
  check(bool(out), "cannot write '", path.string(), "'");
  out << "row\tgene\tcontig\tposition\tstrand\tproduct\tec\n";
  std::size_t row = 0;
  for (const auto& e : embs) {
    const auto& v = genes[e.contig];
    for (std::size_t i = 0; i < v.size(); ++i) {
      auto it = in.info.find(v[i].first);
      out << row++ << '\t' << v[i].first << '\t' << e.contig << '\t' << i << '\t' << (v[i].second > 0 ? '+' : '-')
          << '\t' << (it != in.info.end() ? it->second.product : "") << '\t'
          << (it != in.info.end() ? it->second.ec : "") << '\n';
    }
  }
  check(bool(out), "error writing '", path.string(), "'");
}

template <model_config C>
int run_embed(const input_options& io, const std::string& model_path, const std::string& out_path,
              const std::string& attention_path) {
  using Model = GLM<C, cpu>;
  set_threads(io.threads);
  Model model;
  feature_pipeline pipe;
  load_checkpoint(model_path, model, pipe);
  loaded_input in = load_input(io, C.plm_dim, C.max_positions);
  print_input(in);
  const gene_features feat = pipe.features(in.emb);
  const auto gws = resolve_windows(in.windows, in.emb, in.where);

  std::map<std::string, io::array> att;
  std::map<std::string, std::string> att_meta;
  std::map<std::string, std::vector<float>> att_buf;
  attention_callback cb;
  if (!attention_path.empty())
    cb = [&](const gene_window& w, std::size_t layer, const std::vector<float>& p, index_t H, index_t L) {
      auto& buf = att_buf[w.id];
      if (layer == 0) {
        buf.clear();
        nlohmann::json ids = nlohmann::json::array();
        for (const auto& cw : in.windows)
          if (cw.entry.contig_id == w.id)
            for (const auto& g : cw.entry.genes) ids.push_back(g.first);
        att_meta["genes." + w.id] = ids.dump();
      }
      buf.insert(buf.end(), p.begin(), p.end());
      if (layer + 1 == Model::num_layers())
        att["attention." + w.id] = io::array::from<float>({index_t(Model::num_layers()), H, L, L}, buf);
    };
  progress_bar bar("embed", (long long)gws.size());
  std::size_t done = 0;
  const auto embs = embed_windows(model, feat, gws, io.batch, cb, [&](std::size_t n) {
    done += n;
    bar.update((long long)done, (long long)(n * std::size_t(io.window)));
  });
  std::vector<float> all;
  std::vector<std::string> ids;
  for (const auto& e : embs) all.insert(all.end(), e.values.begin(), e.values.end());
  const index_t rows = index_t(all.size()) / C.hidden;
  const fs::path out(out_path);
  if (out.extension() == ".safetensors") {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& w : in.windows) (void)w;
    std::map<std::string, std::vector<std::string>> by_contig;
    for (const auto& w : in.windows) {
      auto& v = by_contig[w.source_id];
      v.resize(w.source_size);
      for (std::size_t l = 0; l < w.entry.genes.size(); ++l) v[w.offset + l] = w.entry.genes[l].first;
    }
    for (const auto& e : embs)
      for (const auto& g : by_contig[e.contig]) j.push_back(g);
    io::write_safetensors(out, {{"embeddings", io::array::from<float>({rows, C.hidden}, all)}},
                          {{"ids", j.dump()}, {"genlm.model", model_path}});
  } else {
    io::write_npy(out, io::array::from<float>({rows, C.hidden}, all));
  }
  fs::path table = out;
  table.replace_extension(".genes.tsv");
  write_gene_table(table, in, embs, in.windows);
  std::fprintf(stderr, "wrote %lld contextualised gene embeddings (%d-d) to %s, gene table %s\n", (long long)rows,
               C.hidden, out.string().c_str(), table.string().c_str());
  if (!attention_path.empty()) {
    io::write_safetensors(attention_path, att, att_meta);
    std::fprintf(stderr, "wrote attention maps of %zu windows (layers x heads x L x L) to %s\n", att.size(),
                 attention_path.c_str());
  }
  return 0;
}

template <model_config C>
int run_predict(const input_options& io, const std::string& model_path, const std::string& out_path,
                const std::vector<std::string>& only) {
  using Model = GLM<C, cpu>;
  set_threads(io.threads);
  Model model;
  feature_pipeline pipe;
  load_checkpoint(model_path, model, pipe);
  input_options io2 = io;
  if (io2.overlap == 0) io2.overlap = io2.window / 2;  // give every gene context on both sides
  loaded_input in = load_input(io2, C.plm_dim, C.max_positions);
  print_input(in);
  const gene_features feat = pipe.features(in.emb);
  const auto gws = resolve_windows(in.windows, in.emb, in.where);
  // each source gene is predicted in the window where it is most central
  std::map<std::pair<std::string, std::size_t>, std::pair<std::size_t, std::size_t>> best;  // -> (window, pos)
  std::map<std::pair<std::string, std::size_t>, long> score;
  for (std::size_t w = 0; w < gws.size(); ++w)
    for (std::size_t l = 0; l < gws[w].genes.size(); ++l) {
      const long s = long(std::min(l, gws[w].genes.size() - 1 - l));
      const auto key = std::make_pair(gws[w].source_id, gws[w].offset + l);
      if (!score.count(key) || s > score[key]) score[key] = s, best[key] = {w, l};
    }
  std::vector<std::pair<std::size_t, std::size_t>> todo;
  std::map<std::string, bool> wanted;
  for (const auto& g : only) wanted[g] = false;
  for (const auto& [key, wl] : best) {
    const auto& id = in.windows[wl.first].entry.genes[wl.second].first;
    if (!only.empty()) {
      if (!wanted.count(id)) continue;
      wanted[id] = true;
    }
    todo.push_back(wl);
  }
  for (const auto& [id, found] : wanted)
    check<lookup_error>(found, "--gene '", id, "' is not a gene of ", in.where);
  const auto preds = predict_masked(model, feat, gws, todo, io.batch);
  // rank every protein of the input by distance of its label (PCA part) to the most likely hypothesis
  const index_t P = feat.pca_dim, D = C.label_dim(), N = in.emb.size();
  std::ofstream out(out_path);
  check(bool(out), "cannot write '", out_path, "'");
  out << "gene\tcontig\tposition\tstrand\tlikelihood\tpredicted_strand\tnearest_protein\ttrue_rank\tcosine\n";
  long long top1 = 0, top10 = 0;
  std::vector<long long> ranks;
  for (const auto& p : preds) {
    const gene_window& w = gws[p.window];
    const gene_ref& g = w.genes[p.position];
    const double* h = &p.hypotheses[std::size_t(p.most_likely * D)];
    const double true_d = detail::sqdist(h, &feat.pca[std::size_t(g.protein * P)], P);
    long long rank = 1;
    index_t nearest = 0;
    double nd = INFINITY;
    for (index_t q = 0; q < N; ++q) {
      const double d = detail::sqdist(h, &feat.pca[std::size_t(q * P)], P);
      if (d < true_d) ++rank;
      if (d < nd) nd = d, nearest = q;
    }
    double dot = 0, nh = 0, ny = 0;
    for (index_t j = 0; j < P; ++j) {
      const double y = feat.pca[std::size_t(g.protein * P + j)];
      dot += h[j] * y, nh += h[j] * h[j], ny += y * y;
    }
    top1 += rank == 1;
    top10 += rank <= 10;
    ranks.push_back(rank);
    out << in.emb.ids()[std::size_t(g.protein)] << '\t' << w.source_id << '\t' << w.offset + p.position << '\t'
        << (g.strand > 0 ? '+' : '-') << '\t' << p.likelihoods[std::size_t(p.most_likely)] << '\t'
        << (h[P] >= 0 ? '+' : '-') << '\t' << in.emb.ids()[std::size_t(nearest)] << '\t' << rank << '\t'
        << dot / std::max(1e-30, std::sqrt(nh * ny)) << '\n';
  }
  check(bool(out), "error writing '", out_path, "'");
  std::sort(ranks.begin(), ranks.end());
  const double n = double(std::max<std::size_t>(1, preds.size()));
  std::printf("masked each of %zu genes in turn and predicted it from its context (candidates: %lld proteins)\n",
              preds.size(), (long long)N);
  std::printf("  top-1 %.1f%%  top-10 %.1f%%  median rank %lld  (chance: top-1 %.3f%%, median rank %lld)\n",
              100 * double(top1) / n, 100 * double(top10) / n, ranks.empty() ? 0LL : ranks[ranks.size() / 2],
              100.0 / double(N), (long long)(N + 1) / 2);
  std::fprintf(stderr, "wrote predictions to %s\n", out_path.c_str());
  return 0;
}

template <template <model_config> class F, class... Args>
int dispatch_config(const std::string& cfg, Args&&... args) {
  if (cfg == "tiny" || cfg == configs::tiny.str()) return F<configs::tiny>::run(std::forward<Args>(args)...);
  if (cfg == "small" || cfg == configs::small.str()) return F<configs::small>::run(std::forward<Args>(args)...);
  if (cfg == "paper" || cfg == configs::paper.str()) return F<configs::paper>::run(std::forward<Args>(args)...);
  throw value_error(detail::concat("unknown model config '", cfg, "'; this build knows tiny {", configs::tiny.str(),
                                   "}, small {", configs::small.str(), "}, paper {", configs::paper.str(), "}"));
}
template <model_config C>
struct train_fn {
  static int run(const input_options& i, const train_cli& t) { return run_train<C>(i, t); }
};
template <model_config C>
struct embed_fn {
  static int run(const input_options& i, const std::string& m, const std::string& o, const std::string& a) {
    return run_embed<C>(i, m, o, a);
  }
};
template <model_config C>
struct predict_fn {
  static int run(const input_options& i, const std::string& m, const std::string& o, const std::vector<std::string>& g) {
    return run_predict<C>(i, m, o, g);
  }
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "genlm - genomic language model (gLM, Hwang et al. 2024, Nat Commun 15:2880)\n\n"
      "Learns the genomic context of genes: a transformer reads contigs as ordered lists of protein\n"
      "embeddings with strands, is trained by masked gene modelling, and returns contextualised gene\n"
      "embeddings, attention maps and predictions of masked genes.",
      "genlm"};
  app.footer(
      "\nExamples:\n"
      "  genlm train -g data/ecoli_k12_cds.gbk --config small --steps 1000 -o ecoli.safetensors\n"
      "  genlm embed -m ecoli.safetensors -g data/ecoli_k12_cds.gbk -o ecoli_glm.npy --attention att.safetensors\n"
      "  genlm predict -m ecoli.safetensors -g data/ecoli_k12_cds.gbk -o masked_predictions.tsv\n"
      "  genlm train -c contigs.tsv -e esm2.npy --ids esm2_ids.txt --config paper -o glm.safetensors\n\n"
      "Without --embeddings, genes are described by genlm's built-in sequence features, a deterministic\n"
      "stand-in for ESM2 embeddings; results are then not comparable with the paper's.");
  app.require_subcommand(1);

  input_options in_train, in_embed, in_predict;
  train_cli tc;
  auto* train = app.add_subcommand("train", "Train gLM by masked gene modelling and report held-out accuracy");
  add_input_options(train, in_train, 20);
  train->add_option("--config", tc.config, "Model preset: tiny, small or paper (19 x 1280 x 10)")->capture_default_str()
      ->check(CLI::IsMember({"tiny", "small", "paper"}));
  train->add_option("-o,--out", tc.out, "Checkpoint to write (atomically; also every --save-every steps)")->capture_default_str();
  train->add_option("--resume", tc.resume, "Continue from this checkpoint (bit-identical to an uninterrupted run)")
      ->check(CLI::ExistingFile);
  train->add_option("-n,--steps", tc.steps, "Total optimisation steps")->capture_default_str()->check(CLI::Range(0LL, 1000000000LL));
  train->add_option("--lr", tc.lr, "Peak learning rate (AdamW)")->capture_default_str()->check(CLI::PositiveNumber);
  train->add_option("--warmup", tc.warmup, "Linear warm-up steps, then constant")->capture_default_str()->check(CLI::NonNegativeNumber);
  train->add_option("--dropout", tc.dropout, "Hidden and attention dropout")->capture_default_str()->check(CLI::Range(0.0, 0.99));
  train->add_option("--mask-prob", tc.mask_prob, "Probability of masking each gene")->capture_default_str()->check(CLI::Range(0.0, 1.0));
  train->add_option("--clip", tc.clip_value, "Clip gradients by value (0: off)")->capture_default_str()->check(CLI::NonNegativeNumber);
  train->add_option("--ce-weight", tc.ce_weight, "Weight of the hypothesis-likelihood cross entropy")->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  train->add_option("--holdout-every", tc.eval_every_window, "Hold out every k-th window for evaluation (0: none)")->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  train->add_option("--eval-rounds", tc.eval_rounds, "Independent maskings of the held-out windows")->capture_default_str()
      ->check(CLI::Range(1, 1000));
  train->add_option("--save-every", tc.save_every, "Checkpoint interval in steps (0: only at the end)")->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  train->add_option("--seed", tc.seed, "Seed of initialisation, data order, masking and dropout")->capture_default_str();

  std::string model_e, out_e = "genlm_embeddings.npy", att_e;
  auto* embed = app.add_subcommand("embed", "Write contextualised gene embeddings (last hidden state) and attention");
  add_input_options(embed, in_embed, 15);
  embed->add_option("-m,--model", model_e, "Checkpoint written by 'genlm train'")->required()->check(CLI::ExistingFile);
  embed->add_option("-o,--out", out_e, "Embeddings: .npy (genes x hidden) or .safetensors; a .genes.tsv table "
                                       "describes the rows")->capture_default_str();
  embed->add_option("--attention", att_e, "Also write every window's attention maps (layers x heads x L x L) to this "
                                          ".safetensors file");

  std::string model_p, out_p = "genlm_predictions.tsv";
  std::vector<std::string> genes_p;
  auto* predict = app.add_subcommand("predict", "Mask each gene in turn and predict it from its genomic context");
  add_input_options(predict, in_predict, 0);
  predict->add_option("-m,--model", model_p, "Checkpoint written by 'genlm train'")->required()->check(CLI::ExistingFile);
  predict->add_option("-o,--out", out_p, "Predictions table (.tsv)")->capture_default_str();
  predict->add_option("--gene", genes_p, "Only these gene ids (repeatable; default: all genes)");

  CLI11_PARSE(app, argc, argv);
  try {
    if (*train) return dispatch_config<train_fn>(tc.config, in_train, tc);
    if (*embed) return dispatch_config<embed_fn>(checkpoint_config(model_e), in_embed, model_e, out_e, att_e);
    if (*predict) return dispatch_config<predict_fn>(checkpoint_config(model_p), in_predict, model_p, out_p, genes_p);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "genlm: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
