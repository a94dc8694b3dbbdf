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
#include <limits>
#include <map>
#include <numeric>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include <genlm/analysis/operons.hpp>
#include <genlm/analysis/paralogs.hpp>
#include <genlm/analysis/plot.hpp>
#include <genlm/analysis/probe.hpp>
#include <genlm/data/contig_table.hpp>
#include <genlm/data/dataset.hpp>
#include <genlm/data/gff.hpp>
#include <genlm/data/simulate.hpp>
#include <genlm/io/atomic_file.hpp>
#include <genlm/io/npy.hpp>
#include <genlm/io/safetensors.hpp>
#include <genlm/model/inference.hpp>
#include <genlm/train/checkpoint.hpp>
#include <genlm/train/trainer.hpp>
#include <genlm/util/progress.hpp>

#include "../cli_checks.hpp"

namespace fs = std::filesystem;
using namespace genlm;
using genlm_cli::named_path;

#if defined(GENLM_USE_CBLAS)
extern "C" void openblas_set_num_threads(int);
#endif

namespace {

/// Options of a model whose parameters a checkpoint is about to overwrite: no random
/// initialisation (~25 s for configs::paper on one core), load_checkpoint fails on a missing one.
model_options for_loading() {
  model_options mo;
  mo.initialize = false;
  return mo;
}

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
  std::int64_t start = 0, end = 0;  // 1-based coordinates (genome input)
  std::string name;                 // gene symbol when known
  std::vector<std::string> ec_numbers;
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

/// The gene ids of the input (every contig's genes).
std::set<std::string> input_genes(const loaded_input& in) {
  std::set<std::string> ids;
  for (const auto& e : in.entries)
    for (const auto& g : e.genes) ids.insert(g.first);
  return ids;
}

/// A truth table (--labels, --classes, --pairs) may cover more genes than the input (e.g. the
/// simulator's tables of all contigs, run on the test contigs); its rows about genes the input does
/// not have are left out, and said so on stderr: how many, and the first, so that a typo or a
/// table of another genome does not pass unnoticed.
void report_left_out(const char* who, const std::string& option, const std::string& file, std::size_t left,
                     std::size_t total, const std::string& what, const std::string& example) {
  if (left == 0) return;
  std::fprintf(stderr, "%s: left out %zu of %zu %s of %s '%s' %s (e.g. %s)\n", who, left, total,
               total == 1 ? "row" : "rows", option.c_str(), file.c_str(), what.c_str(), example.c_str());
}

/// A model sees protein features of one kind: the built-in featuriser's (no --embeddings) or a
/// protein language model's (--embeddings); its normaliser and PCA were fitted on that kind. The
/// checkpoint says which (metadata genlm.features, written by `genlm train`); an input of the
/// other kind would be normalised and projected as if it were the same and give silent garbage,
/// so it is refused (checkpoints without the entry are not checked).
void check_feature_source(const std::string& model_path, const checkpoint_info& info, const loaded_input& in) {
  const auto f = info.metadata.find("genlm.features");
  if (f == info.metadata.end()) return;
  const std::string have = in.featurized ? "builtin" : "external";
  auto kind = [](const std::string& k) {
    return k == "builtin" ? std::string("genlm's built-in protein features (no --embeddings)")
                          : "protein embeddings given with --embeddings";
  };
  check<value_error>(f->second == have, "checkpoint '", model_path, "' was trained on ",
                     f->second == "builtin" || f->second == "external" ? kind(f->second) : "'" + f->second + "'",
                     " (metadata genlm.features = '", f->second, "'), but this run's input (", in.where, ") gives ",
                     kind(have), "; its normalisation and PCA fit only the kind it was trained on");
}

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

/// The input files of `o`, with their options (for genlm_cli::check_outputs).
std::vector<named_path> input_paths(const input_options& o, std::vector<named_path> more = {}) {
  for (const auto& g : o.genomes) more.push_back({"--genome", g});
  more.push_back({"--contigs", o.contigs});
  more.push_back({"--embeddings", o.embeddings});
  more.push_back({"--ids", o.ids});
  return more;
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
  check<value_error>(o.window <= max_window, "--window ", o.window, " exceeds the largest window this model takes, ",
                     max_window, " genes");
  check<value_error>(o.overlap < o.window, "--overlap ", o.overlap, " must be smaller than --window ", o.window);
  genlm_cli::check_ids_option(o.ids, o.embeddings);
  std::vector<contig_entry> entries;
  std::vector<std::pair<std::string, std::string>> same_protein;  // (renamed gene id, id of its first use)
  if (!o.genomes.empty()) {
    check<value_error>(o.contigs.empty(), "give either --genome or --contigs, not both");
    std::vector<contig> genome;
    std::map<std::string, std::size_t> contig_file;  // contig id -> index of the --genome that holds it
    for (const auto& g : o.genomes) {
      auto cs = read_genome(g);
      check<format_error>(!cs.empty(), "genome file '", g, "' holds no contigs with CDS features");
      // Contig ids key every output (embedding rows, gene tables, windows): two contigs with one id
      // would be merged into one. Refused, naming both places.
      const std::size_t fi = std::size_t(&g - o.genomes.data());
      for (const auto& c : cs) {
        auto [it, fresh] = contig_file.emplace(c.id, fi);
        if (fresh) continue;
        const std::string& first = o.genomes[it->second];
        throw format_error(detail::concat(
            "contig id '", c.id, "' appears twice: ",
            it->second == fi ? "twice in '" + g + "'"
            : first == g     ? "'" + g + "' is given twice as --genome"
                             : "in '" + first + "' and in '" + g + "' (the same genome given twice?)",
            "; contig ids must be unique across the inputs"));
      }
      genome.insert(genome.end(), cs.begin(), cs.end());
      in.where += (in.where.empty() ? "" : ", ") + g;
    }
    // Gene ids must name one gene each: the outputs have a row per gene, named by its id, with its
    // coordinates. Real annotations sometimes reuse an id (e.g. two CDS with one locus_tag); later
    // occurrences are renamed "<id>#2", ..., with a warning. An occurrence with the same protein as
    // the first is still that protein: with --embeddings it takes the embedding of <id> (an alias
    // row below). Without a sequence (e.g. GFF without ##FASTA, embeddings by id) two genes with
    // one id cannot be told apart, so they are refused.
    std::map<std::string, std::pair<std::string, int>> first_protein;  // id -> (protein, count)
    std::map<std::string, std::string> first_contig;                   // id -> contig of its first use
    for (auto& c : genome)
      for (auto& g : c.genes) {
        auto [it, fresh] = first_protein.emplace(g.id, std::make_pair(g.protein, 1));
        if (fresh) first_contig[g.id] = c.id;
        check<format_error>(fresh || !g.protein.empty(), in.where, ": gene id '", g.id, "' is used twice (contigs '",
                            first_contig[g.id], "' and '", c.id,
                            "') and the input has no protein sequence to tell the two apart; gene ids must be unique");
        if (fresh) continue;
        const bool same = it->second.first == g.protein;
        std::string renamed = g.id + "#" + std::to_string(++it->second.second);
        while (first_protein.count(renamed)) renamed = g.id + "#" + std::to_string(++it->second.second);
        std::fprintf(stderr, "genlm: warning: gene id '%s' is used again on contig '%s' (%lld..%lld) for %s; this "
                     "occurrence is named '%s'\n", g.id.c_str(), c.id.c_str(), (long long)g.start, (long long)g.end,
                     same ? "the same protein" : "another protein than its first use", renamed.c_str());
        if (same) same_protein.emplace_back(renamed, g.id);
        first_protein.emplace(renamed, std::make_pair(g.protein, 1));
        g.id = renamed;
      }
    for (const auto& c : genome) {
      if (c.genes.empty()) continue;
      entries.push_back(to_entry(c));
      for (const auto& g : c.genes) {
        std::string ec;
        for (const auto& e : g.ec_numbers) ec += (ec.empty() ? "" : ",") + e;
        in.info[g.id] = {c.id, g.strand, g.product, ec, g.start, g.end, g.name, g.ec_numbers};
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
  if (!in.featurized && !same_protein.empty()) {
    // a renamed occurrence of the same protein uses that protein's embedding (a copy under its new id)
    std::vector<std::string> ids = in.emb.ids();
    std::vector<float> values = in.emb.values();
    const std::size_t dim = std::size_t(in.emb.dim());
    for (const auto& [alias, id] : same_protein)
      if (!in.emb.contains(alias) && in.emb.contains(id)) {
        const auto row = std::size_t(in.emb.find(id, in.where)) * dim;
        ids.push_back(alias);
        values.insert(values.end(), in.emb.values().begin() + std::ptrdiff_t(row),
                      in.emb.values().begin() + std::ptrdiff_t(row + dim));
      }
    in.emb = protein_embeddings(std::move(ids), in.emb.dim(), std::move(values), in.emb.source());
  }
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
  bool seed_given = false;  // --seed on the command line (a resumed run otherwise takes the checkpoint's)
  std::string precision = "fp32";
};

void print_metrics(const masked_gene_metrics& m, const masked_gene_metrics& b, std::size_t windows) {
  std::printf("masked-gene prediction on %zu held-out windows (%lld masked genes in all rounds):\n", windows,
              (long long)m.masked);
  std::printf("  %-26s %9s %8s %17s %16s\n", "", "accuracy", "cosine", "MSE(most likely)", "strand correct");
  std::printf("  %-26s %8.1f%% %8.3f %17.3f %15.1f%%\n", "gLM (this model)", 100 * m.accuracy(), m.cosine,
              m.mse_most_likely, 100 * m.strand_accuracy());
  std::printf("  %-26s %8.1f%% %8.3f %17.3f %15.1f%%\n", "context-free baseline", 100 * b.accuracy(), b.cosine,
              b.mse_most_likely, 100 * b.strand_accuracy());
  std::fflush(stdout);
}

template <model_config C, class Backend = cpu>
int run_train(const input_options& io, const train_cli& o) {
  using Model = GLM<C, Backend>;
  set_threads(io.threads);
  std::fprintf(stderr, "model: %s\n", C.str().c_str());
  std::fprintf(stderr, "products: %s\n", products_description<Backend>().c_str());
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
  mo.initialize = o.resume.empty();  // a resumed run loads every parameter
  mo.init_threads = io.threads;       // 0 = all cores, as for the products
  Model model(mo);
  feature_pipeline pipe;
  std::uint64_t seed = o.seed;  // the checkpoint's when resuming
  checkpoint_info resumed;
  std::optional<io::safetensors_file> ck;  // the checkpoint resumed from, read once (optimizer state below)
  if (!o.resume.empty()) {
    ck = io::read_safetensors(o.resume);
    resumed = load_checkpoint(*ck, model, pipe);
    check_feature_source(o.resume, resumed, in);
    seed = continuation_seed(resumed, o.resume, o.seed_given ? std::optional(o.seed) : std::nullopt, o.steps);
    std::fprintf(stderr, "resuming from %s at step %lld (seed %llu)\n", o.resume.c_str(), (long long)resumed.step,
                 (unsigned long long)seed);
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
  to.seed = seed;
  to.masking.probability = o.mask_prob;
  to.loss.ce_weight = o.ce_weight;
  trainer<Model> tr(model, feat, train_g, to);
  if (!o.resume.empty()) {
    check<format_error>(resumed.has_optimizer, "checkpoint '", o.resume, "' has no optimizer state; cannot resume");
    tr.optimizer().load_from(*ck, "optimizer.");
    if (tr.loss_scaling_active()) tr.scaler().load_from(*ck, "scaler.");  // absent: keep the initial scale
    tr.set_step(resumed.step);
    ck.reset();
  }
  index_t n = 0;
  const auto labels = tr.training_labels(n);
  context_free_baseline base;
  base.fit(labels, n, C.label_dim(), C.hypotheses, seed);
  std::fprintf(stderr, "training on %zu windows, evaluating on %zu; %lld parameters\n", train_g.size(), eval_g.size(),
               (long long)model.parameters().count());

  auto save = [&] {
    save_checkpoint(o.out, model, pipe, &tr.optimizer(), tr.step_count(), seed,
                    {{"genlm.input", in.where}, {"genlm.features", in.featurized ? "builtin" : "external"}},
                    &tr.scaler());
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
      const auto [m, b] = tr.evaluate(eval_g, base, seed + 1000 + std::uint64_t(r));
      ms.add(m);
      bs.add(b);
    }
    print_metrics(ms.mean(), bs.mean(), eval_g.size());
  } else {
    std::printf("no held-out windows (--holdout-every %d%s): no masked-gene evaluation\n", o.eval_every_window,
                o.eval_every_window == 0 ? "" : " exceeds the number of blocks of --window genes");
    std::fflush(stdout);
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
  io::write_text_atomic(path, [&](std::ostream& out) {
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
  });
}

template <model_config C, class Backend = cpu>
int run_embed(const input_options& io, const std::string& model_path, const std::string& out_path,
              const std::string& attention_path) {
  using Model = GLM<C, Backend>;
  set_threads(io.threads);
  std::fprintf(stderr, "products: %s\n", products_description<Backend>().c_str());
  Model model(for_loading());  // every parameter comes from the checkpoint
  feature_pipeline pipe;
  const checkpoint_info ck = load_checkpoint(model_path, model, pipe);
  loaded_input in = load_input(io, C.plm_dim, C.max_positions);
  check_feature_source(model_path, ck, in);
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
        check<value_error>(!att_meta.count("genes." + w.id), "--attention: two windows have the id '", w.id,
                           "' (a contig whose id looks like a window id, e.g. 'c:1-30' next to contig 'c'?); rename "
                           "that contig");
        buf.clear();
        nlohmann::json ids = nlohmann::json::array();
        const contig_window& cw = in.windows[std::size_t(&w - gws.data())];  // gws mirrors in.windows
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
  Model model(for_loading());  // every parameter comes from the checkpoint
  feature_pipeline pipe;
  const checkpoint_info ck = load_checkpoint(model_path, model, pipe);
  input_options io2 = io;
  if (io2.overlap == 0) io2.overlap = io2.window / 2;  // give every gene context on both sides
  loaded_input in = load_input(io2, C.plm_dim, C.max_positions);
  check_feature_source(model_path, ck, in);
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
  check<shape_error>(P + 1 == D, "predict: the checkpoint's labels have ", P, " PCA components but the model predicts ",
                     D - 1, " (+ strand)");
  std::ostringstream out;
  out << "gene\tcontig\tposition\tstrand\tlikelihood\tpredicted_strand\tnearest_protein\ttrue_rank\tcosine\n";
  long long top1 = 0, top10 = 0;
  std::vector<long long> ranks;
  for (const auto& p : preds) {
    const gene_window& w = gws[p.window];
    const gene_ref& g = w.genes[p.position];
    const double* h = &p.hypotheses[std::size_t(p.most_likely * D)];
    const double true_d = cpu_detail::sqdist(h, &feat.pca[std::size_t(g.protein * P)], P);
    check<value_error>(std::isfinite(true_d), "predict: the distance of gene '", in.emb.ids()[std::size_t(g.protein)],
                       "' to its prediction is not finite (", true_d, "); are the checkpoint's weights and labels finite?");
    long long rank = 1;
    index_t nearest = 0;
    double nd = INFINITY;
    for (index_t q = 0; q < N; ++q) {
      const double d = cpu_detail::sqdist(h, &feat.pca[std::size_t(q * P)], P);
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
  io::write_file_atomic(out_path, out.str());
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

// ------------------------------------------------------------------------------------------ analyses
// Downstream analyses of the paper (docs/ANALYSES.md): operons from attention, an EC probe on
// contextualised embeddings, paralog matching.

/// A short label for a gene in pictures: its symbol when known, else its id.
std::string gene_label(const loaded_input& in, const std::string& id) {
  auto it = in.info.find(id);
  return it != in.info.end() && !it->second.name.empty() ? it->second.name : id;
}

/// Loads a checkpoint into a model of preset C (with its feature pipeline).
template <class Model>
checkpoint_info load_model(const std::string& path, Model& model, feature_pipeline& pipe) {
  auto info = load_checkpoint(path, model, pipe);
  auto f = info.metadata.find("genlm.features");
  std::fprintf(stderr, "model: %s (step %lld%s)\n", Model::config.str().c_str(), (long long)info.step,
               f != info.metadata.end() && f->second == "builtin" ? ", built-in protein features" : "");
  return info;
}

struct operons_cli {
  std::string model, out = "operon_predictions.tsv", labels, svg, heatmap_window;
  long long max_gap = 50;
  int layer = 0, head = 0;
  int folds = 5, block = 30;
};

template <model_config C>
int run_operons(const input_options& io, const operons_cli& o) {
  using Model = GLM<C, cpu>;
  set_threads(io.threads);
  Model model(for_loading());  // every parameter comes from the checkpoint
  feature_pipeline pipe;
  const checkpoint_info ck = load_model(o.model, model, pipe);
  check<value_error>(io.overlap >= 1, "--overlap ", io.overlap,
                     ": operons need windows overlapping by >= 1 gene, so that every adjacent pair lies in a window");
  loaded_input in = load_input(io, C.plm_dim, C.max_positions);
  check_feature_source(o.model, ck, in);
  print_input(in);
  check<value_error>(!o.labels.empty() || !in.info.empty(),
                     "no operon labels: give --labels pairs.tsv, or a genome (--genome) whose gene coordinates give the "
                     "distance proxy");
  // the heatmap's options are checked before any work or output
  check<value_error>(o.layer >= 0 && o.layer <= C.num_layers && o.head >= 0 && o.head <= C.heads, "--layer ", o.layer,
                     " / --head ", o.head, ": the model has ", C.num_layers, " layers and ", C.heads,
                     " heads (1-based; 0 = automatic)");
  std::size_t heat_w = 0;  // the heatmap's window
  if (!o.heatmap_window.empty()) {
    bool found = false;
    for (std::size_t i = 0; i < in.windows.size() && !found; ++i) {
      if (in.windows[i].entry.contig_id == o.heatmap_window) found = true, heat_w = i;
      for (const auto& g : in.windows[i].entry.genes)
        if (!found && (g.first == o.heatmap_window || gene_label(in, g.first) == o.heatmap_window))
          found = true, heat_w = i;
    }
    check<lookup_error>(found, "--heatmap-window '", o.heatmap_window, "' is neither a window id nor a gene of ",
                        in.where);
  }
  const gene_features feat = pipe.features(in.emb);
  const auto gws = resolve_windows(in.windows, in.emb, in.where);
  progress_bar bar("attention", (long long)gws.size());
  std::size_t done = 0;
  const auto f = analysis::attention_pair_features(model, feat, gws, io.batch, [&](std::size_t n) {
    done += n;
    bar.update((long long)done, (long long)(n * std::size_t(io.window)));
  });
  const auto& ids = in.emb.ids();
  const std::size_t n = f.pairs.size();
  std::vector<int> labels(n, -1);
  std::vector<std::string> gap(n, "NA");
  for (std::size_t i = 0; i < n; ++i) {
    auto a = in.info.find(ids[std::size_t(f.pairs[i].protein_a)]), b = in.info.find(ids[std::size_t(f.pairs[i].protein_b)]);
    if (a != in.info.end() && b != in.info.end() && a->second.contig == b->second.contig && a->second.end > 0)
      gap[i] = std::to_string(b->second.start - a->second.end - 1);
  }
  std::string label_source;
  if (!o.labels.empty()) {
    const auto table = analysis::read_pair_labels(o.labels);
    std::set<std::pair<std::string, std::string>> used;  // the table's pairs (a <= b) that label an adjacent pair
    for (std::size_t i = 0; i < n; ++i) {
      const std::string &a = ids[std::size_t(f.pairs[i].protein_a)], &b = ids[std::size_t(f.pairs[i].protein_b)];
      auto it = table.find({a, b});
      if (it != table.end()) labels[i] = it->second, used.insert(std::minmax(a, b));
    }
    check<value_error>(std::count(labels.begin(), labels.end(), -1) < std::ptrdiff_t(n), "--labels '", o.labels,
                       "': none of its pairs are adjacent genes of ", in.where);
    // the table's other pairs: a gene the input does not have, or two genes that are not adjacent here
    const std::set<std::string> have = input_genes(in);
    std::size_t pairs_total = 0, unknown = 0, apart = 0;
    std::string unknown_eg, apart_eg;
    for (const auto& [key, v] : table) {
      if (key.first > key.second) continue;  // the table holds both orders
      ++pairs_total;
      if (used.count(key)) continue;
      const bool known = have.count(key.first) && have.count(key.second);
      (known ? apart : unknown) += 1;
      std::string& eg = known ? apart_eg : unknown_eg;
      if (eg.empty())
        eg = known ? "'" + key.first + "' / '" + key.second + "'"
                   : "'" + (have.count(key.first) ? key.second : key.first) + "'";
    }
    report_left_out("operons", "--labels", o.labels, unknown, pairs_total, "naming a gene that is not in the input",
                    unknown_eg);
    report_left_out("operons", "--labels", o.labels, apart, pairs_total,
                    "pairing genes that are not adjacent in the input (only adjacent pairs are scored)", apart_eg);
    label_source = "labels from " + o.labels;
  } else {
    for (std::size_t i = 0; i < n; ++i)
      if (gap[i] != "NA")
        labels[i] = f.pairs[i].strand_a == f.pairs[i].strand_b && std::stoll(gap[i]) < o.max_gap ? 1 : 0;
    label_source = "proxy labels: operon pair = same strand and intergenic distance < " + std::to_string(o.max_gap) +
                   " bp (a stand-in for an operon database; distance is not a gLM input)";
  }
  analysis::operon_options oo;
  oo.folds = o.folds;
  oo.block = std::size_t(o.block);
  const auto ev = analysis::evaluate_operons(f, labels, oo);
  std::vector<bool> held;
  const auto prob = ev.all_probabilities(f, &held);

  std::ostringstream out;
  out << "contig\tposition\tgene_a\tgene_b\tstrand_a\tstrand_b\tintergenic_bp\tlabel\tprobability\theld_out\tproduct_a"
         "\tproduct_b\n";
  for (std::size_t i = 0; i < n; ++i) {
    const auto& p = f.pairs[i];
    const std::string& a = ids[std::size_t(p.protein_a)];
    const std::string& b = ids[std::size_t(p.protein_b)];
    auto ia = in.info.find(a), ib = in.info.find(b);
    char pr[32];
    std::snprintf(pr, sizeof pr, "%.4f", prob[i]);
    out << p.contig << '\t' << p.index + 1 << '\t' << a << '\t' << b << '\t' << (p.strand_a > 0 ? '+' : '-') << '\t'
        << (p.strand_b > 0 ? '+' : '-') << '\t' << gap[i] << '\t' << (labels[i] < 0 ? "NA" : std::to_string(labels[i]))
        << '\t' << pr << '\t' << (held[i] ? "yes" : "no") << '\t' << (ia != in.info.end() ? ia->second.product : "")
        << '\t' << (ib != in.info.end() ? ib->second.product : "") << '\n';
  }
  io::write_file_atomic(o.out, out.str());

  std::size_t best = 0;
  for (std::size_t j = 0; j < ev.feature_auc.size(); ++j)
    if (std::abs(ev.feature_auc[j] - 0.5) > std::abs(ev.feature_auc[best] - 0.5)) best = j;
  std::string cs;
  for (double c : ev.chosen_C) cs += (cs.empty() ? "" : ", ") + detail::concat(c);
  std::printf("operon prediction from attention: %lld layers x %lld heads x 2 directions = %lld features per adjacent "
              "gene pair\n",
              (long long)f.layers, (long long)f.heads, (long long)f.x.cols);
  std::printf("%zu adjacent pairs; %s\n", n, label_source.c_str());
  std::printf("labelled: %lld operon pairs, %lld non-operon pairs, %zu unlabelled\n", (long long)ev.positives,
              (long long)ev.negatives, n - ev.rows.size());
  std::printf("held-out predictions (%d-fold CV over genome blocks of %d genes; C per fold by inner CV: %s):\n", o.folds,
              o.block, cs.c_str());
  std::printf("  %-34s %8s %9s %10s %7s %6s\n", "", "ROC AUC", "avg prec", "precision", "recall", "F1");
  std::printf("  %-34s %8.3f %9.3f %10.3f %7.3f %6.3f\n", "gLM attention (logistic regression)", ev.auc,
              ev.average_precision, ev.at_half.precision, ev.at_half.recall, ev.at_half.f1);
  std::printf("  %-34s %8.3f %9.3f %10.3f %7.3f %6.3f\n", "baseline: same strand = operon", ev.strand_auc,
              ev.strand_average_precision, ev.strand_report.precision, ev.strand_report.recall, ev.strand_report.f1);
  if (std::isfinite(ev.same_strand_auc))
    std::printf("  among the %lld same-strand pairs (where strand tells nothing): gLM attention ROC AUC %.3f\n",
                (long long)ev.same_strand_pairs, ev.same_strand_auc);
  std::printf("  best single feature: %s, ROC AUC %.3f\n", f.column_name(index_t(best)).c_str(), ev.feature_auc[best]);
  std::fflush(stdout);
  std::fprintf(stderr, "wrote %zu pair predictions to %s\n", n, o.out.c_str());

  if (!o.svg.empty()) {
    const std::size_t w = heat_w;
    const index_t H = C.heads;
    index_t layer = o.layer, head = o.head;
    std::string why;
    if (layer == 0) {
      const index_t k = index_t(best) % (index_t(C.num_layers) * H);
      layer = k / H + 1;
      head = k % H + 1;
      why = detail::concat("the head whose attention alone predicts operons best (ROC AUC ",
                           std::round(ev.feature_auc[best] * 1000) / 1000, ")");
    }
    const auto att = analysis::window_attention(model, feat, gws[w]);
    const index_t L = index_t(gws[w].genes.size());
    std::vector<double> m(std::size_t(L * L), 0.0);
    for (index_t hh = 0; hh < H; ++hh) {
      if (head > 0 && hh != head - 1) continue;
      for (index_t i = 0; i < L * L; ++i)
        m[std::size_t(i)] += att[std::size_t(((layer - 1) * H + hh) * L * L + i)] / (head > 0 ? 1.0 : double(H));
    }
    std::vector<std::string> lab;
    for (const auto& g : in.windows[w].entry.genes) lab.push_back(gene_label(in, g.first) + (g.second > 0 ? " +" : " -"));
    analysis::heatmap_options ho;
    ho.title = detail::concat(in.windows[w].entry.contig_id, ": attention of layer ", layer,
                              head > 0 ? detail::concat(", head ", head) : std::string(", mean over heads"));
    ho.subtitle = why;
    for (index_t l = 0; l + 1 < L; ++l) {
      const index_t r = f.find(gws[w].source_id, gws[w].offset + std::size_t(l));
      if (r >= 0 && labels[std::size_t(r)] == 1) ho.outlined.push_back({l, l + 1}), ho.outlined.push_back({l + 1, l});
    }
    ho.outline_label = o.labels.empty() ? "operon pair (proxy label)" : "operon pair (label)";
    io::write_text_atomic(o.svg, [&](std::ostream& s) { analysis::write_heatmap_svg(s, m, L, L, lab, lab, ho); });
    std::fprintf(stderr, "wrote attention heatmap of window %s to %s\n", in.windows[w].entry.contig_id.c_str(),
                 o.svg.c_str());
  }
  return 0;
}

struct probe_cli {
  std::string model, out = "probe_report.tsv", svg, predictions, classes;
  int level = 1, min_class = 10, folds = 5;
};

inline const char* ec_level1_name(const std::string& c) {
  static const char* names[] = {"oxidoreductases", "transferases", "hydrolases", "lyases",
                                "isomerases",      "ligases",      "translocases"};
  if (c.size() == 1 && c[0] >= '1' && c[0] <= '7') return names[c[0] - '1'];
  return "";
}

template <model_config C>
int run_probe(const input_options& io, const probe_cli& o) {
  using Model = GLM<C, cpu>;
  set_threads(io.threads);
  Model model(for_loading());  // every parameter comes from the checkpoint
  feature_pipeline pipe;
  const checkpoint_info ck = load_model(o.model, model, pipe);
  loaded_input in = load_input(io, C.plm_dim, C.max_positions);
  check_feature_source(o.model, ck, in);
  print_input(in);
  check<value_error>(!in.info.empty() || !o.classes.empty(),
                     "the probe needs classes: an annotated genome (--genome) with EC numbers, or --classes FILE");
  std::map<std::string, std::string> given;  // --classes: gene -> class
  if (!o.classes.empty()) {
    auto cin = data_detail::open_input(o.classes);
    data_detail::line_reader lines(cin, o.classes);
    std::string line;
    while (lines.next(line)) {
      const auto l = data_detail::trim(line);
      if (l.empty() || l.front() == '#') continue;
      const auto fs = data_detail::split(l, '\t');
      if (fs.size() != 2)
        data_detail::fail_format(o.classes, lines.line(), "class line", l, "2 tab-separated columns: gene, class");
      const std::string g(data_detail::trim(fs[0])), c(data_detail::trim(fs[1]));
      if (given.empty() && g == "gene") continue;  // header
      if (!given.emplace(g, c).second)
        data_detail::fail_format(o.classes, lines.line(), "gene", g, "each gene once");
    }
    check<format_error>(!given.empty(), o.classes, ": no gene classes");
    const std::set<std::string> have = input_genes(in);
    std::size_t unknown = 0;
    std::string eg;
    for (const auto& [g, c] : given)
      if (!have.count(g)) ++unknown, eg = eg.empty() ? "'" + g + "'" : eg;
    check<lookup_error>(unknown < given.size(), "--classes '", o.classes, "': none of its ", given.size(),
                        " genes is a gene of ", in.where, " (e.g. ", eg, ")");
    report_left_out("probe", "--classes", o.classes, unknown, given.size(), "naming a gene that is not in the input",
                    eg);
  }
  const gene_features feat = pipe.features(in.emb);
  const auto gws = resolve_windows(in.windows, in.emb, in.where);
  progress_bar bar("embed", (long long)gws.size());
  std::size_t done = 0;
  const auto embs = embed_windows(model, feat, gws, io.batch, {}, [&](std::size_t k) {
    done += k;
    bar.update((long long)done, (long long)(k * std::size_t(io.window)));
  });
  // genes of each contig and the genome block (group) of each gene: windows that share genes are
  // one block, so no window is shared between training and test genes
  std::map<std::string, std::vector<std::string>> genes;
  std::map<std::string, std::vector<index_t>> block_of;
  std::map<std::string, std::vector<std::size_t>> by_contig;
  for (std::size_t i = 0; i < in.windows.size(); ++i) by_contig[in.windows[i].source_id].push_back(i);
  index_t next_block = 0;
  for (auto& [id, ws] : by_contig) {
    std::sort(ws.begin(), ws.end(), [&](std::size_t a, std::size_t b) { return in.windows[a].offset < in.windows[b].offset; });
    auto& g = genes[id];
    auto& bl = block_of[id];
    g.resize(in.windows[ws.front()].source_size);
    bl.assign(g.size(), -1);
    std::size_t reach = 0;
    for (std::size_t k = 0; k < ws.size(); ++k) {
      const auto& w = in.windows[ws[k]];
      if (k == 0 || w.offset >= reach) ++next_block;
      for (std::size_t l = 0; l < w.entry.genes.size(); ++l) {
        g[w.offset + l] = w.entry.genes[l].first;
        bl[w.offset + l] = next_block;
      }
      reach = std::max(reach, w.offset + w.entry.genes.size());
    }
  }
  std::vector<std::string> raw, row_gene;
  std::vector<index_t> groups;
  std::vector<double> vc, vi;
  index_t ambiguous = 0, no_ec = 0;
  for (const auto& e : embs) {
    const auto& g = genes[e.contig];
    for (std::size_t i = 0; i < g.size(); ++i) {
      std::string cls;
      auto it = in.info.find(g[i]);
      bool clash = false;
      if (!given.empty()) {
        auto gc = given.find(g[i]);
        if (gc != given.end()) cls = gc->second;
      } else if (it != in.info.end())
        for (const auto& ec : it->second.ec_numbers) {
          const std::string c = analysis::ec_class(ec, o.level);
          if (c.empty()) continue;
          if (!cls.empty() && c != cls) clash = true;
          cls = c;
        }
      if (clash) ++ambiguous, cls.clear();
      if (given.empty() ? it == in.info.end() || it->second.ec_numbers.empty() : cls.empty()) ++no_ec;
      raw.push_back(cls);
      row_gene.push_back(g[i]);
      groups.push_back(block_of[e.contig][i]);
      vc.insert(vc.end(), e.values.begin() + std::ptrdiff_t(i * std::size_t(e.dim)),
                e.values.begin() + std::ptrdiff_t((i + 1) * std::size_t(e.dim)));
      const index_t p = in.emb.find(g[i], in.where);
      const float* x = &feat.normalized[std::size_t(p * feat.plm_dim)];
      vi.insert(vi.end(), x, x + feat.plm_dim);
    }
  }
  const index_t N = index_t(raw.size());
  const auto cl = analysis::encode_classes(raw, o.min_class);
  const bool ec = given.empty();
  const std::string what = ec ? detail::concat("EC class(es) at level ", o.level) : "class(es) of " + o.classes;
  check<value_error>(cl.names.size() >= 2, in.where, ": ", cl.names.size(), " ", what, " with >= ", o.min_class,
                     " genes; the probe needs at least 2 (lower --min-class", ec ? " or --level)" : ")");
  const analysis::dmatrix Xc(N, C.hidden, std::move(vc)), Xi(N, feat.plm_dim, std::move(vi));
  analysis::probe_options po;
  po.folds = o.folds;
  std::fprintf(stderr, "probing %lld genes with a class (%zu classes) ...\n",
               (long long)std::count_if(cl.y.begin(), cl.y.end(), [](int v) { return v >= 0; }), cl.names.size());
  const auto rc = analysis::linear_probe(Xc, cl.y, index_t(cl.names.size()), groups, po);
  const auto ri = analysis::linear_probe(Xi, cl.y, index_t(cl.names.size()), groups, po);

  std::ostringstream out;
  out << "representation\tclass\tdescription\tsupport\tpredicted\tprecision\trecall\tf1\n";
  auto report = [&](const char* name, const analysis::probe_result& r) {
    for (std::size_t k = 0; k < cl.names.size(); ++k) {
      const auto& m = r.report.per_class[k];
      out << name << '\t' << (ec ? "EC " : "") << cl.names[k] << '\t' << (ec && o.level == 1 ? ec_level1_name(cl.names[k]) : "") << '\t'
          << m.support << '\t' << m.predicted << '\t' << m.precision << '\t' << m.recall << '\t' << m.f1 << '\n';
    }
    out << name << "\taccuracy\t\t" << r.report.samples << "\t\t\t\t" << r.report.accuracy << '\n';
    out << name << "\tmacro avg\t\t" << r.report.samples << "\t\t\t\t" << r.report.macro_f1 << '\n';
    out << name << "\tweighted avg\t\t" << r.report.samples << "\t\t\t\t" << r.report.weighted_f1 << '\n';
    out << name << "\tmajority class\t\t" << r.report.samples << "\t\t\t\t" << r.majority_accuracy << '\n';
  };
  report("gLM", rc);
  report("input", ri);
  io::write_file_atomic(o.out, out.str());
  if (!o.predictions.empty()) {
    std::ostringstream pf;
    pf << "gene\tblock\tclass\tpredicted_gLM\tpredicted_input\n";
    std::size_t k = 0;
    for (index_t i = 0; i < N; ++i) {
      if (cl.y[std::size_t(i)] < 0) continue;
      pf << row_gene[std::size_t(i)] << '\t' << groups[std::size_t(i)] << '\t' << cl.names[std::size_t(rc.y_true[k])]
         << '\t' << cl.names[std::size_t(rc.y_pred[k])] << '\t' << cl.names[std::size_t(ri.y_pred[k])] << '\n';
      ++k;
    }
    io::write_file_atomic(o.predictions, pf.str());
  }

  std::string dropped;
  for (const auto& d : cl.dropped) dropped += " " + d;
  if (ec)
    std::printf("EC probe (level %d) on %s: %lld genes with an EC class, %zu classes with >= %d genes (%lld genes have "
                "no EC number, %lld conflicting ones%s%s)\n",
                o.level, in.where.c_str(), (long long)rc.report.samples, cl.names.size(), o.min_class, (long long)no_ec,
                (long long)ambiguous, dropped.empty() ? "" : "; rare classes left out:", dropped.c_str());
  else
    std::printf("probe of the classes in %s on %s: %lld genes with a class, %zu classes with >= %d genes (%lld genes "
                "without one%s%s)\n",
                o.classes.c_str(), in.where.c_str(), (long long)rc.report.samples, cl.names.size(), o.min_class,
                (long long)no_ec, dropped.empty() ? "" : "; rare classes left out:", dropped.c_str());
  std::printf("multinomial logistic regression, %d-fold CV over genome blocks (no window shared between training and "
              "test genes), C by inner CV:\n",
              o.folds);
  std::printf("  %-42s %9s %9s %12s\n", "", "accuracy", "macro F1", "weighted F1");
  std::printf("  %-42s %8.1f%% %9.3f %12.3f\n", "gLM contextualised embeddings", 100 * rc.report.accuracy,
              rc.report.macro_f1, rc.report.weighted_f1);
  std::printf("  %-42s %8.1f%% %9.3f %12.3f\n",
              in.featurized ? "input protein features (built-in, not ESM2)" : "input protein embeddings",
              100 * ri.report.accuracy, ri.report.macro_f1, ri.report.weighted_f1);
  std::printf("  %-42s %8.1f%%\n", "majority class", 100 * rc.majority_accuracy);
  std::printf("  per-class F1 (gLM / input):");
  for (std::size_t k = 0; k < cl.names.size(); ++k)
    std::printf(" %s%s %.2f/%.2f", ec ? "EC " : "", cl.names[k].c_str(), rc.report.per_class[k].f1,
                ri.report.per_class[k].f1);
  std::printf("\n");
  std::fflush(stdout);
  std::fprintf(stderr, "wrote probe report to %s\n", o.out.c_str());

  if (!o.svg.empty()) {
    std::vector<std::string> names;
    for (const auto& c : cl.names) {
      const std::string d = ec && o.level == 1 ? ec_level1_name(c) : "";
      names.push_back((ec ? "EC " : "class ") + c + (d.empty() ? "" : " " + d));
    }
    analysis::scatter_panel a{in.featurized ? "input protein features (built-in)" : "input protein embeddings",
                              analysis::pca_2d(Xi), cl.y};
    analysis::scatter_panel b{"gLM contextualised embeddings", analysis::pca_2d(Xc), cl.y};
    io::write_text_atomic(o.svg, [&](std::ostream& s) {
      analysis::write_scatter_svg(s, {a, b}, names,
                                  detail::concat("Genes of ", in.where, ec ? " by EC class" : " by class",
                                                 " (PCA of each representation)"),
                                  ec ? "no EC class / rare class" : "no class / rare class");
    });
    std::fprintf(stderr, "wrote embedding map to %s\n", o.svg.c_str());
  }
  return 0;
}

struct paralogs_cli {
  std::string model, pairs, out = "paralog_matches.tsv";
  bool any_hypothesis = false;
};

template <model_config C>
int run_paralogs(const input_options& io, const paralogs_cli& o) {
  using Model = GLM<C, cpu>;
  set_threads(io.threads);
  Model model(for_loading());  // every parameter comes from the checkpoint
  feature_pipeline pipe;
  const checkpoint_info ck = load_model(o.model, model, pipe);
  input_options io2 = io;
  if (io2.overlap == 0) io2.overlap = io2.window / 2;  // context on both sides of every gene
  loaded_input in = load_input(io2, C.plm_dim, C.max_positions);
  check_feature_source(o.model, ck, in);
  print_input(in);
  // pairs file: query<TAB>partner
  std::vector<std::pair<std::string, std::string>> pairs;
  std::vector<std::string> group;  // optional third column: candidates are groups (e.g. paralog families)
  {
    auto pin = data_detail::open_input(o.pairs);
    data_detail::line_reader lines(pin, o.pairs);
    std::string line;
    std::map<std::string, std::size_t> seen;
    while (lines.next(line)) {
      const auto l = data_detail::trim(line);
      if (l.empty() || l.front() == '#') continue;
      const auto fs = data_detail::split(l, '\t');
      if (fs.size() != 2 && fs.size() != 3)
        data_detail::fail_format(o.pairs, lines.line(), "pair line", l,
                                 "2 or 3 tab-separated columns: masked gene, its interacting partner[, group]");
      if (!pairs.empty() && (fs.size() == 3) != !group.empty())
        data_detail::fail_format(o.pairs, lines.line(), "pair line", l, "as many columns as the first line");
      const std::string q(data_detail::trim(fs[0])), p(data_detail::trim(fs[1]));
      if (pairs.empty() && seen.empty() && (q == "query" || q == "masked_gene")) continue;  // header
      if (q.empty() || p.empty() || q == p)
        data_detail::fail_format(o.pairs, lines.line(), "pair line", l,
                                 "a masked gene and another gene, its interacting partner");
      if (fs.size() == 3) group.emplace_back(data_detail::trim(fs[2]));
      if (!seen.emplace(q, lines.line()).second)
        data_detail::fail_format(o.pairs, lines.line(), "masked gene", q, "each masked gene once");
      pairs.emplace_back(q, p);
    }
  }
  check<value_error>(pairs.size() >= 2, o.pairs, ": ", pairs.size(), " pair(s); paralog matching needs at least 2");
  const gene_features feat = pipe.features(in.emb);
  const auto gws = resolve_windows(in.windows, in.emb, in.where);
  // each query gene is masked in the window where it is most central
  std::map<std::string, std::pair<std::size_t, std::size_t>> where;
  std::map<std::string, long> score;
  for (std::size_t w = 0; w < gws.size(); ++w)
    for (std::size_t l = 0; l < gws[w].genes.size(); ++l) {
      const std::string& id = in.windows[w].entry.genes[l].first;
      const long s = long(std::min(l, gws[w].genes.size() - 1 - l));
      auto it = score.find(id);
      if (it == score.end() || s > it->second) score[id] = s, where[id] = {w, l};
    }
  {  // pairs whose masked gene is not in the input are left out (e.g. a truth table of a larger set)
    std::vector<std::pair<std::string, std::string>> kept;
    std::vector<std::string> kept_group;
    std::string first_missing;
    for (std::size_t i = 0; i < pairs.size(); ++i) {
      if (!where.count(pairs[i].first)) {
        if (first_missing.empty()) first_missing = pairs[i].first;
        continue;
      }
      kept.push_back(pairs[i]);
      if (!group.empty()) kept_group.push_back(group[i]);
    }
    check<lookup_error>(!kept.empty(), o.pairs, ": no masked gene is a gene of ", in.where, " (e.g. '", first_missing,
                        "')");
    if (kept.size() < pairs.size())
      std::fprintf(stderr, "paralogs: left out %zu of %zu pairs whose masked gene is not in the input (e.g. '%s')\n",
                   pairs.size() - kept.size(), pairs.size(), first_missing.c_str());
    pairs.swap(kept);
    group.swap(kept_group);
    // a partner the input lacks cannot be the masked gene's context: said, not refused (the
    // partner names the pair in the output; the ranking uses the masked gene's own context)
    std::size_t lost = 0;
    std::string eg;
    for (const auto& [q, p] : pairs)
      if (!where.count(p)) ++lost, eg = eg.empty() ? "'" + p + "' (partner of '" + q + "')" : eg;
    if (lost)
      std::fprintf(stderr, "paralogs: warning: the partner of %zu of %zu pairs is not a gene of the input, e.g. %s\n",
                   lost, pairs.size(), eg.c_str());
  }
  check<value_error>(pairs.size() >= 2, o.pairs, ": ", pairs.size(), " pair(s) in the input; matching needs at least 2");
  std::vector<analysis::paralog_query> q;
  std::vector<index_t> rows;
  for (std::size_t i = 0; i < pairs.size(); ++i) {
    const auto& at = where.at(pairs[i].first);
    q.push_back({at.first, at.second, index_t(i)});
    rows.push_back(gws[at.first].genes[at.second].protein);
  }
  auto cand = analysis::candidate_labels(feat, rows);
  std::vector<std::string> cand_name;  // name of each candidate
  for (const auto& p : pairs) cand_name.push_back(p.first);
  if (!group.empty()) {  // candidates = groups, each the mean label of its masked genes
    std::map<std::string, index_t> gi;
    for (const auto& g : group) gi.emplace(g, 0);
    cand_name.clear();
    for (auto& [g, i] : gi) i = index_t(cand_name.size()), cand_name.push_back(g);
    analysis::dmatrix means(index_t(gi.size()), cand.cols);
    std::vector<int> cnt(gi.size(), 0);
    for (std::size_t i = 0; i < q.size(); ++i) {
      const index_t k = gi[group[i]];
      q[i].candidate = k;
      ++cnt[std::size_t(k)];
      for (index_t j = 0; j < cand.cols; ++j) means(k, j) += cand(index_t(i), j);
    }
    for (index_t k = 0; k < means.rows; ++k)
      for (index_t j = 0; j < means.cols; ++j) means(k, j) /= cnt[std::size_t(k)];
    check<value_error>(means.rows >= 2, o.pairs, ": all masked genes are in one group; matching needs at least 2");
    cand = std::move(means);
  }
  const auto r = analysis::match_paralogs(model, feat, gws, q, cand, io.batch,
                                          o.any_hypothesis ? analysis::paralog_scoring::nearest_hypothesis
                                                           : analysis::paralog_scoring::most_likely);
  std::ostringstream out;
  out << "masked_gene\tpartner\t" << (group.empty() ? "" : "group\t") << "rank\tbest_match\tcandidates\n";
  for (std::size_t i = 0; i < pairs.size(); ++i)
    out << pairs[i].first << '\t' << pairs[i].second << '\t' << (group.empty() ? "" : group[i] + "\t") << r.rank[i]
        << '\t' << cand_name[std::size_t(r.predicted[i])] << '\t' << r.candidates << '\n';
  io::write_file_atomic(o.out, out.str());
  std::vector<index_t> ranks = r.rank;
  std::sort(ranks.begin(), ranks.end());
  std::printf("paralog matching: masked each of %zu genes and ranked the %lld candidates (%s) by distance to the "
              "%s\n",
              pairs.size(), (long long)r.candidates,
              group.empty() ? "the masked genes' own labels" : "the groups' mean labels",
              o.any_hypothesis ? "nearest hypothesis" : "most likely hypothesis");
  std::printf("  top-1 %lld of %zu (%.1f%%), chance %.1f of %zu (%.1f%%); mean rank %.2f, median rank %lld (chance %.1f)\n",
              (long long)r.correct, pairs.size(), 100 * r.top1, double(pairs.size()) * r.chance, pairs.size(),
              100 * r.chance, r.mean_rank, (long long)ranks[ranks.size() / 2], (double(r.candidates) + 1) / 2);
  std::fflush(stdout);
  std::fprintf(stderr, "wrote matches to %s\n", o.out.c_str());
  return 0;
}

// ------------------------------------------------------------------------------------------ simulate
struct simulate_cli {
  std::string dir = "sim";
  simulation_options so = [] {
    simulation_options s;
    s.dim = configs::tiny.plm_dim;
    s.contigs = 500;
    s.families = 30;
    s.modules = 8;
    s.noise_gene_rate = 0.15;
    s.module_family_pool = 10;
    s.function_classes = 4;
    s.paralog_pairs = 6;
    s.paralog_spread = 0.7;
    s.paralog_rate = 0.15;
    s.seed = 21;
    return s;
  }();
};

int run_simulate(const simulate_cli& o) {
  const simulated_data s = simulate_contigs(o.so);
  const fs::path dir(o.dir);
  fs::create_directories(dir);
  write_contig_table(dir / "contigs.tsv", s.contigs);
  nlohmann::json ids = s.proteins.ids();
  io::write_safetensors(dir / "proteins.safetensors",
                        {{"embeddings", io::array::from<float>({s.proteins.size(), s.proteins.dim()}, s.proteins.values())}},
                        {{"ids", ids.dump()}, {"genlm.simulation_seed", std::to_string(o.so.seed)}});
  std::ostringstream op, fn, pp;  // written atomically below
  op << "gene_a\tgene_b\tsame_operon\n";
  long long pos = 0, neg = 0;
  for (std::size_t c = 0; c < s.contigs.size(); ++c) {
    const auto lab = s.operon_labels(c);
    for (std::size_t i = 0; i < lab.size(); ++i) {
      op << s.contigs[c].genes[i].first << '\t' << s.contigs[c].genes[i + 1].first << '\t' << lab[i] << '\n';
      (lab[i] ? pos : neg) += 1;
    }
  }
  fn << "gene\tfunction\n";
  long long with_function = 0;
  for (index_t r = 0; r < s.proteins.size(); ++r)
    if (s.function_of[std::size_t(r)] >= 0) {
      fn << s.proteins.ids()[std::size_t(r)] << "\tF" << s.function_of[std::size_t(r)] << '\n';
      ++with_function;
    }
  pp << "masked_gene\tpartner\tparalog\n";
  long long pairs = 0;
  for (const auto& e : s.contigs)
    for (std::size_t i = 0; i < e.genes.size(); ++i) {
      const auto r = std::size_t(s.row(e.genes[i].first));
      if (s.paralog_role[r] != 0) continue;
      const std::size_t j = e.genes[i].second > 0 ? i + 1 : i - 1;  // B_i, downstream in transcription order
      pp << e.genes[i].first << '\t' << e.genes[j].first << "\tA" << s.paralog_of[r] << '\n';
      ++pairs;
    }
  io::write_file_atomic(dir / "operon_pairs.tsv", op.str());
  io::write_file_atomic(dir / "functions.tsv", fn.str());
  io::write_file_atomic(dir / "paralog_pairs.tsv", pp.str());
  std::printf("simulated %zu contigs, %lld genes (%lld-d protein embeddings, %lld families, %lld modules of %lld-%lld "
              "genes, noise genes at rate %.2f) into %s/:\n",
              s.contigs.size(), (long long)s.proteins.size(), (long long)o.so.dim, (long long)o.so.families,
              (long long)o.so.modules, (long long)o.so.module_min, (long long)o.so.module_max, o.so.noise_gene_rate,
              o.dir.c_str());
  std::printf("  contigs.tsv, proteins.safetensors  the input (genlm train/embed/... -c contigs.tsv -e proteins.safetensors)\n");
  std::printf("  operon_pairs.tsv     %lld adjacent pairs: %lld in one module occurrence (operon), %lld not\n", pos + neg,
              pos, neg);
  std::printf("  functions.tsv        %lld module genes with their module's function (%lld classes; modules share "
              "families, so function depends on context)\n",
              with_function, (long long)o.so.function_classes);
  std::printf("  paralog_pairs.tsv    %lld interacting pairs A_i/B_i of %lld paralog families (A paralogs similar: "
              "spread %.2f)\n",
              pairs, (long long)o.so.paralog_pairs, o.so.paralog_spread);
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
  static int run(const input_options& i, const train_cli& t) {
    return t.precision == "bf16" ? run_train<C, cpu_bf16>(i, t) : run_train<C, cpu>(i, t);
  }
};
template <model_config C>
struct embed_fn {
  static int run(const input_options& i, const std::string& m, const std::string& o, const std::string& a,
                 const std::string& precision) {
    return precision == "bf16" ? run_embed<C, cpu_bf16>(i, m, o, a) : run_embed<C, cpu>(i, m, o, a);
  }
};
template <model_config C>
struct predict_fn {
  static int run(const input_options& i, const std::string& m, const std::string& o, const std::vector<std::string>& g) {
    return run_predict<C>(i, m, o, g);
  }
};
template <model_config C>
struct operons_fn {
  static int run(const input_options& i, const operons_cli& o) { return run_operons<C>(i, o); }
};
template <model_config C>
struct probe_fn {
  static int run(const input_options& i, const probe_cli& o) { return run_probe<C>(i, o); }
};
template <model_config C>
struct paralogs_fn {
  static int run(const input_options& i, const paralogs_cli& o) { return run_paralogs<C>(i, o); }
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
      "  genlm operons -m ecoli.safetensors -g data/ecoli_k12_cds.gbk -o operon_predictions.tsv --svg heatmap.svg\n"
      "  genlm probe -m ecoli.safetensors -g data/ecoli_k12_cds.gbk -o probe_report.tsv --svg map.svg\n"
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
  train->add_option("--resume", tc.resume, "Continue from this checkpoint, with its seed, up to --steps in all (bit-identical to an "
                  "uninterrupted run with the same other options)")
      ->check(CLI::ExistingFile);
  train->add_option("-n,--steps", tc.steps, "Total optimisation steps")->capture_default_str()->check(CLI::Range(0LL, 1000000000LL));
  const double inf = std::numeric_limits<double>::infinity();
  using genlm_cli::finite_number;
  train->add_option("--lr", tc.lr, "Peak learning rate (AdamW)")->capture_default_str()->check(finite_number(0, inf, true, true));
  train->add_option("--warmup", tc.warmup, "Linear warm-up steps, then constant")->capture_default_str()->check(CLI::NonNegativeNumber);
  train->add_option("--dropout", tc.dropout, "Hidden and attention dropout")->capture_default_str()->check(finite_number(0, 0.99));
  train->add_option("--mask-prob", tc.mask_prob, "Probability of masking each gene")->capture_default_str()
      ->check(finite_number(0, 1, true, true));
  train->add_option("--clip", tc.clip_value, "Clip gradients by value (0: off)")->capture_default_str()
      ->check(finite_number(0, inf, false, true));
  train->add_option("--ce-weight", tc.ce_weight, "Weight of the hypothesis-likelihood cross entropy")->capture_default_str()
      ->check(finite_number(0, inf, false, true));
  train->add_option("--holdout-every", tc.eval_every_window, "Hold out every k-th window for evaluation (0: none)")->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  train->add_option("--eval-rounds", tc.eval_rounds, "Independent maskings of the held-out windows")->capture_default_str()
      ->check(CLI::Range(1, 1000));
  train->add_option("--save-every", tc.save_every, "Checkpoint interval in steps (0: only at the end)")->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  const char* precision_help =
      "Matrix products: fp32, or bf16 (bf16-rounded inputs, float32 accumulation; fast on CPUs with Intel AMX, "
      "docs/PERFORMANCE.md). Weights, activations and optimizer state stay float32";
  train->add_option("--seed", tc.seed, "Seed of initialisation, data order, masking and dropout")->capture_default_str()
      ->check(genlm_cli::non_negative_integer());
  train->add_option("--precision", tc.precision, precision_help)
      ->capture_default_str()
      ->check(CLI::IsMember({"fp32", "bf16"}));

  std::string model_e, out_e = "genlm_embeddings.npy", att_e, prec_e = "fp32";
  auto* embed = app.add_subcommand("embed", "Write contextualised gene embeddings (last hidden state) and attention");
  add_input_options(embed, in_embed, 15);
  embed->add_option("-m,--model", model_e, "Checkpoint written by 'genlm train'")->required()->check(CLI::ExistingFile);
  embed->add_option("-o,--out", out_e, "Embeddings: .npy (genes x hidden) or .safetensors; a .genes.tsv table "
                                       "describes the rows")->capture_default_str();
  embed->add_option("--attention", att_e, "Also write every window's attention maps (layers x heads x L x L) to this "
                                          ".safetensors file");
  embed->add_option("--precision", prec_e, precision_help)
      ->capture_default_str()
      ->check(CLI::IsMember({"fp32", "bf16"}));

  std::string model_p, out_p = "genlm_predictions.tsv";
  std::vector<std::string> genes_p;
  auto* predict = app.add_subcommand("predict", "Mask each gene in turn and predict it from its genomic context");
  add_input_options(predict, in_predict, 0);
  predict->add_option("-m,--model", model_p, "Checkpoint written by 'genlm train'")->required()->check(CLI::ExistingFile);
  predict->add_option("-o,--out", out_p, "Predictions table (.tsv)")->capture_default_str();
  predict->add_option("--gene", genes_p, "Only these gene ids (repeatable; default: all genes)");

  // downstream analyses (docs/ANALYSES.md)
  input_options in_operons, in_probe, in_paralogs;
  operons_cli oc;
  auto* operons = app.add_subcommand(
      "operons", "Predict operons from the attention between adjacent genes and score them against labelled pairs");
  operons->footer(
      "\nFeatures: the attention of gene i to i+1 and of i+1 to i in every layer and head. Classifier: L2 logistic\n"
      "regression, C chosen by inner cross-validation. Every labelled pair gets a held-out probability (k-fold over\n"
      "genome blocks); reports ROC AUC, average precision, precision/recall/F1 next to the baseline 'same strand =\n"
      "operon' and the AUC among same-strand pairs. See docs/ANALYSES.md.\n\n"
      "Example:\n  genlm operons -m ecoli.safetensors -g data/ecoli_k12_cds.gbk -o operon_predictions.tsv --svg heatmap.svg");
  add_input_options(operons, in_operons, 15);
  operons->add_option("-m,--model", oc.model, "Checkpoint written by 'genlm train'")->required()->check(CLI::ExistingFile);
  operons->add_option("-o,--out", oc.out, "Per-pair predictions (.tsv): genes, strands, intergenic distance, label, "
                                          "P(operon) (held-out for labelled pairs)")->capture_default_str();
  operons->add_option("--labels", oc.labels,
                      "Labelled pairs (.tsv): gene_a<TAB>gene_b<TAB>1|0 (1 = same operon). Without it, labels come "
                      "from the genome's coordinates: same strand and intergenic distance < --max-gap (a proxy)")
      ->check(CLI::ExistingFile);
  operons->add_option("--max-gap", oc.max_gap, "Proxy labels: largest intergenic distance (bp) of an operon pair, "
                                               "exclusive")->capture_default_str()->check(CLI::Range(1LL, 1000000000LL));
  operons->add_option("--folds", oc.folds, "Cross-validation folds")->capture_default_str()->check(CLI::Range(2, 100));
  operons->add_option("--block", oc.block, "Genes per genome block; folds never split a block")->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  operons->add_option("--svg", oc.svg, "Also draw the attention heatmap (genes x genes) of one window to this .svg file");
  operons->add_option("--heatmap-window", oc.heatmap_window,
                      "Window of the heatmap: a window id (e.g. 'NC_000913:1-30') or a gene it holds (id or symbol); "
                      "default: the first window");
  operons->add_option("--layer", oc.layer, "Heatmap layer (1-based; 0 = the layer and head whose attention predicts "
                                           "operons best)")->capture_default_str()->check(CLI::NonNegativeNumber);
  operons->add_option("--head", oc.head, "Heatmap head (1-based; 0 with --layer = mean over heads)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);

  probe_cli pc;
  auto* probe = app.add_subcommand(
      "probe", "Enzyme function probe: EC class from contextualised embeddings vs from the input protein features");
  probe->footer(
      "\nA multinomial L2 logistic regression (C by inner cross-validation) predicts each gene's EC class from gLM's\n"
      "contextualised embedding (last hidden state) and, with the same folds, from the model's input protein\n"
      "features. Folds run over genome blocks: genes embedded in one window (or in overlapping windows) stay together,\n"
      "so no window is shared by training and test genes. Reports accuracy, macro/weighted F1 and per-class\n"
      "precision/recall/F1. See docs/ANALYSES.md.\n\n"
      "Example:\n  genlm probe -m ecoli.safetensors -g data/ecoli_k12_cds.gbk -o probe_report.tsv --svg map.svg");
  add_input_options(probe, in_probe, 0);
  probe->add_option("-m,--model", pc.model, "Checkpoint written by 'genlm train'")->required()->check(CLI::ExistingFile);
  probe->add_option("-o,--out", pc.out, "Report (.tsv): per representation and EC class, support, precision, recall, "
                                        "F1; accuracy, macro and weighted F1")->capture_default_str();
  probe->add_option("--level", pc.level, "EC level of the classes: 1 (e.g. '2'), 2 (e.g. '2.7'), 3 or 4")->capture_default_str()
      ->check(CLI::Range(1, 4));
  probe->add_option("--min-class", pc.min_class, "Leave out EC classes with fewer genes")->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  probe->add_option("--folds", pc.folds, "Cross-validation folds")->capture_default_str()->check(CLI::Range(2, 100));
  probe->add_option("--predictions", pc.predictions, "Also write each gene's held-out predicted class (.tsv)");
  probe->add_option("--classes", pc.classes, "Probe these classes instead of EC numbers (.tsv): gene<TAB>class, e.g. "
                                             "the functions.tsv of 'genlm simulate'")->check(CLI::ExistingFile);
  probe->add_option("--svg", pc.svg, "Also draw embedding maps (PCA of the input features and of the gLM embeddings, "
                                     "coloured by EC class) to this .svg file");

  paralogs_cli lc;
  auto* paralogs = app.add_subcommand(
      "paralogs", "Paralog matching: mask one partner of interacting pairs, find it among its paralogs from context");
  paralogs->footer(
      "\nEach masked gene is predicted from its context (in the window where it is most central); the candidates (all\n"
      "masked genes, or the groups of a third column) are ranked by the distance of their labels to the prediction.\n"
      "A gene is matched when its own candidate ranks first; chance is 1 / candidates. See docs/ANALYSES.md.\n\n"
      "Example:\n  genlm paralogs -m model.safetensors -c sim/test.tsv -e sim/proteins.safetensors "
      "--pairs sim/paralog_pairs.tsv");
  add_input_options(paralogs, in_paralogs, 0);
  paralogs->add_option("-m,--model", lc.model, "Checkpoint written by 'genlm train'")->required()->check(CLI::ExistingFile);
  paralogs->add_option("--pairs", lc.pairs,
                       "Pairs (.tsv): masked_gene<TAB>partner_gene[<TAB>group], one per line (e.g. ModA homologs and "
                       "their ModC partners). Candidates are all masked genes; with a group column (e.g. the paralog "
                       "family of the masked gene) they are the groups, each the mean of its genes")
      ->required()->check(CLI::ExistingFile);
  paralogs->add_option("-o,--out", lc.out, "Per-pair ranks (.tsv)")->capture_default_str();
  paralogs->add_flag("--any-hypothesis", lc.any_hypothesis,
                     "Score candidates by their nearest hypothesis instead of the most likely one");

  simulate_cli sc;
  auto* simulate = app.add_subcommand(
      "simulate", "Write simulated contigs with known operons, functions and paralog pairs (ground truth)");
  simulate->footer(
      "\nGene families (proteins = family centroid + noise), co-regulated modules in conserved order and strand,\n"
      "function classes that depend on the module (families are shared between modules), interacting paralog pairs\n"
      "A_i/B_i, noise genes. Writes contigs.tsv and proteins.safetensors (inputs of every command with -c/-e) and the\n"
      "truth tables operon_pairs.tsv (--labels of operons), functions.tsv (--classes of probe) and\n"
      "paralog_pairs.tsv (--pairs of paralogs). See docs/ANALYSES.md for a worked example.");
  simulate->add_option("-o,--out", sc.dir, "Output directory")->capture_default_str();
  simulate->add_option("--contigs", sc.so.contigs, "Contigs (15-30 genes each)")->capture_default_str()
      ->check(CLI::Range(1, 10000000));
  simulate->add_option("--dim", sc.so.dim, "Protein embedding dimension (the tiny preset takes 32)")
      ->capture_default_str()->check(CLI::Range(1, 100000));
  simulate->add_option("--families", sc.so.families, "Gene families")->capture_default_str()->check(CLI::Range(2, 1000000));
  simulate->add_option("--modules", sc.so.modules, "Co-regulated modules (operons)")->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  simulate->add_option("--module-family-pool", sc.so.module_family_pool,
                       "Modules draw their families from the first N families (0 = all); small pools share families "
                       "between modules")->capture_default_str()->check(CLI::NonNegativeNumber);
  simulate->add_option("--functions", sc.so.function_classes, "Function classes (module m has class m mod N; 0 = none)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  simulate->add_option("--paralogs", sc.so.paralog_pairs, "Interacting paralog pairs A_i/B_i (0 = none)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  simulate->add_option("--paralog-rate", sc.so.paralog_rate, "Probability of a paralog pair at each insertion point")
      ->capture_default_str()->check(finite_number(0, 0.99));
  simulate->add_option("--paralog-spread", sc.so.paralog_spread,
                       "Scale of a paralog's offset from its family's shared centroid (centroids ~ N(0,1))")
      ->capture_default_str()->check(finite_number(0, inf, false, true));
  simulate->add_option("--noise-genes", sc.so.noise_gene_rate, "Probability of a random gene between modules")
      ->capture_default_str()->check(finite_number(0, 1));
  simulate->add_option("--protein-noise", sc.so.protein_noise, "Std of a protein around its family centroid")
      ->capture_default_str()->check(finite_number(0, inf, false, true));
  simulate->add_option("--seed", sc.so.seed, "Seed")->capture_default_str()->check(genlm_cli::non_negative_integer());

  CLI11_PARSE(app, argc, argv);
  try {
    // Contradictory options, then every output path, before any work.
    if (*operons) {
      for (const char* opt : {"--layer", "--head", "--heatmap-window"})
        check<value_error>(oc.svg.empty() ? operons->count(opt) == 0 : true, opt,
                           " chooses the attention heatmap, which only --svg FILE draws; give --svg");
      check<value_error>(oc.head == 0 || oc.layer > 0, "--head ", oc.head,
                         " needs --layer (with --layer 0 the layer and head are chosen automatically)");
    }
    if (*probe)
      check<value_error>(pc.classes.empty() || probe->count("--level") == 0, "--level chooses the EC level, but --classes '",
                         pc.classes, "' replaces the EC numbers; give one of the two");
    auto out_table = [](const std::string& o) { return fs::path(o).replace_extension(".genes.tsv").string(); };
    if (*train) genlm_cli::check_outputs(input_paths(in_train), {{"--out", tc.out}});  // --resume may be --out
    if (*embed) {
      const auto ext = fs::path(out_e).extension().string();
      check<value_error>(ext == ".npy" || ext == ".safetensors", "--out '", out_e,
                         "': its extension chooses the format of the embeddings, .npy or .safetensors");
      genlm_cli::check_outputs(input_paths(in_embed, {{"--model", model_e}}),
                               {{"--out", out_e}, {"--out (its gene table)", out_table(out_e)}, {"--attention", att_e}});
    }
    if (*predict) genlm_cli::check_outputs(input_paths(in_predict, {{"--model", model_p}}), {{"--out", out_p}});
    if (*operons)
      genlm_cli::check_outputs(input_paths(in_operons, {{"--model", oc.model}, {"--labels", oc.labels}}),
                               {{"--out", oc.out}, {"--svg", oc.svg}});
    if (*probe)
      genlm_cli::check_outputs(input_paths(in_probe, {{"--model", pc.model}, {"--classes", pc.classes}}),
                               {{"--out", pc.out}, {"--predictions", pc.predictions}, {"--svg", pc.svg}});
    if (*paralogs)
      genlm_cli::check_outputs(input_paths(in_paralogs, {{"--model", lc.model}, {"--pairs", lc.pairs}}),
                               {{"--out", lc.out}});
    tc.seed_given = train->count("--seed") > 0;
    if (*train) return dispatch_config<train_fn>(tc.config, in_train, tc);
    if (*embed) return dispatch_config<embed_fn>(checkpoint_config(model_e), in_embed, model_e, out_e, att_e, prec_e);
    if (*predict) return dispatch_config<predict_fn>(checkpoint_config(model_p), in_predict, model_p, out_p, genes_p);
    if (*operons) return dispatch_config<operons_fn>(checkpoint_config(oc.model), in_operons, oc);
    if (*probe) return dispatch_config<probe_fn>(checkpoint_config(pc.model), in_probe, pc);
    if (*paralogs) return dispatch_config<paralogs_fn>(checkpoint_config(lc.model), in_paralogs, lc);
    if (*simulate) return run_simulate(sc);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "genlm: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
