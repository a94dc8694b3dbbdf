// genlm/model/inference.hpp - running a trained gLM over windowed contigs: contextualised gene
// embeddings (the last hidden state), attention maps, and masked-gene predictions, with outputs of
// overlapping windows averaged back onto each source contig's genes.
#pragma once
#include <cmath>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <genlm/model/glm.hpp>
#include <genlm/train/batch.hpp>

namespace genlm {

/// Per-gene outputs of whole source contigs (genes in contig order).
struct contig_embeddings {
  std::string contig;
  index_t dim = 0;
  std::vector<float> values;  // (genes, dim), averaged over the windows covering each gene
};

/// Called for every window with the attention probabilities of every layer:
/// (window, layer, probs (heads, L, L) row-major host values, heads, L).
using attention_callback =
    std::function<void(const gene_window&, std::size_t layer, const std::vector<float>& probs, index_t heads, index_t L)>;

namespace inference_detail {
/// Throws value_error naming `what` and the window when the model output `v` (n values from `at`
/// on) holds a NaN or Inf: a checkpoint with non-finite or huge weights, never silent garbage.
template <class T>
void require_finite(const std::vector<T>& v, std::size_t at, std::size_t n, const char* what, const std::string& window) {
  for (std::size_t i = at; i < at + n; ++i)
    check<value_error>(std::isfinite(double(v[i])), what, ": the model's output for window '", window,
                       "' holds a non-finite value (", double(v[i]), "); are the model's weights finite?");
}
}  // namespace inference_detail

/// Contextualised embeddings (no masking, no dropout) of all windows; windows of the same source
/// contig are stitched (averaged where they overlap). Order: first appearance of each source.
/// Windows that name the same source contig must agree on its size and on the protein at every
/// position they share; otherwise (two different contigs with one id) a shape_error names both.
template <class Model>
std::vector<contig_embeddings> embed_windows(Model& model, const gene_features& feat,
                                             const std::vector<gene_window>& windows, index_t batch_size,
                                             const attention_callback& on_attention = {},
                                             const std::function<void(std::size_t)>& on_batch = {}) {
  using T = typename Model::scalar;
  constexpr model_config C = Model::config;
  check<value_error>(batch_size >= 1, "embed_windows: batch_size must be >= 1, got ", batch_size);
  std::vector<contig_embeddings> out;
  std::map<std::string, std::size_t> slot;
  std::vector<std::vector<int>> counts;
  std::vector<std::vector<index_t>> protein_at;  // per source: protein row at each position (-1: none yet)
  std::vector<std::string> first_window;         // per source: the first window that named it
  for (std::size_t lo = 0; lo < windows.size(); lo += std::size_t(batch_size)) {
    std::vector<std::size_t> idx;
    for (std::size_t i = lo; i < std::min(windows.size(), lo + std::size_t(batch_size)); ++i) idx.push_back(i);
    host_batch<T> b = make_batch<T>(windows, idx, feat, C.max_positions);
    auto o = model.forward(run_context{}, b.B, b.L, b.x, b.mask);
    const std::vector<T> h = o.hidden.to_host();  // (B, L, hidden)
    std::vector<std::vector<T>> att;
    if (on_attention)
      for (std::size_t l = 0; l < Model::num_layers(); ++l) att.push_back(model.attention(l).to_host());
    for (index_t bi = 0; bi < b.B; ++bi) {
      const gene_window& w = *b.windows[std::size_t(bi)];
      auto [it, fresh] = slot.emplace(w.source_id, out.size());
      if (fresh) {
        out.push_back({w.source_id, C.hidden, std::vector<float>(w.source_size * std::size_t(C.hidden), 0.0f)});
        counts.emplace_back(w.source_size, 0);
        protein_at.emplace_back(w.source_size, index_t(-1));
        first_window.push_back(w.id);
      }
      contig_embeddings& ce = out[it->second];
      check<shape_error>(counts[it->second].size() == w.source_size, "embed_windows: windows '",
                         first_window[it->second], "' and '", w.id, "' both belong to contig '", w.source_id,
                         "' but give it ", counts[it->second].size(), " and ", w.source_size,
                         " genes: two different contigs with one id?");
      check<shape_error>(w.offset <= w.source_size && w.genes.size() <= w.source_size - w.offset,
                         "embed_windows: window '", w.id,
                         "' reaches past its contig (offset ", w.offset, " + ", w.genes.size(), " genes > ",
                         w.source_size, ")");
      inference_detail::require_finite(h, std::size_t(bi * b.L * C.hidden), w.genes.size() * std::size_t(C.hidden),
                                       "embed_windows", w.id);
      for (std::size_t l = 0; l < w.genes.size(); ++l) {
        index_t& seen = protein_at[it->second][w.offset + l];
        check<shape_error>(seen < 0 || seen == w.genes[l].protein, "embed_windows: windows '", first_window[it->second],
                           "' and '", w.id, "' of contig '", w.source_id, "' hold different proteins (rows ", seen,
                           " and ", w.genes[l].protein, ") at gene ", w.offset + l,
                           ": two different contigs with one id?");
        seen = w.genes[l].protein;
        const T* src = &h[std::size_t((bi * b.L + index_t(l)) * C.hidden)];
        float* dst = &ce.values[(w.offset + l) * std::size_t(C.hidden)];
        for (index_t j = 0; j < C.hidden; ++j) dst[j] += float(src[j]);
        ++counts[it->second][w.offset + l];
      }
      if (on_attention) {
        const index_t H = C.heads, L = index_t(w.genes.size());
        std::vector<float> p(std::size_t(H * L * L));
        for (std::size_t layer = 0; layer < att.size(); ++layer) {
          for (index_t hh = 0; hh < H; ++hh)
            for (index_t r = 0; r < L; ++r)
              for (index_t c = 0; c < L; ++c)
                p[std::size_t((hh * L + r) * L + c)] = float(att[layer][std::size_t(((bi * H + hh) * b.L + r) * b.L + c)]);
          on_attention(w, layer, p, H, L);
        }
      }
    }
    if (on_batch) on_batch(idx.size());
  }
  for (std::size_t s = 0; s < out.size(); ++s)
    for (std::size_t g = 0; g < counts[s].size(); ++g) {
      check<shape_error>(counts[s][g] > 0, "embed_windows: gene ", g, " of contig '", out[s].contig,
                         "' is in no window");
      for (index_t j = 0; j < out[s].dim; ++j) out[s].values[g * std::size_t(out[s].dim) + std::size_t(j)] /= float(counts[s][g]);
    }
  return out;
}

/// Masked-gene prediction for one gene: all hypotheses with their likelihoods.
struct gene_prediction {
  std::size_t window = 0;     // index into the windows
  std::size_t position = 0;   // gene position in the window
  std::vector<double> hypotheses;   // (K, label_dim)
  std::vector<double> likelihoods;  // (K) softmax of the logits
  index_t most_likely = 0;
};

/// Masks each listed gene (window index, position) on its own and predicts it from its context.
template <class Model>
std::vector<gene_prediction> predict_masked(Model& model, const gene_features& feat,
                                            const std::vector<gene_window>& windows,
                                            const std::vector<std::pair<std::size_t, std::size_t>>& genes,
                                            index_t batch_size, float mask_value = -1.0f) {
  using T = typename Model::scalar;
  constexpr model_config C = Model::config;
  const index_t K = C.hypotheses, D = C.label_dim();
  check<value_error>(batch_size >= 1, "predict_masked: batch_size must be >= 1, got ", batch_size);
  std::vector<gene_prediction> out;
  for (std::size_t lo = 0; lo < genes.size(); lo += std::size_t(batch_size)) {
    const std::size_t hi = std::min(genes.size(), lo + std::size_t(batch_size));
    std::vector<std::size_t> idx;
    for (std::size_t i = lo; i < hi; ++i) {
      check<lookup_error>(genes[i].first < windows.size() && genes[i].second < windows[genes[i].first].genes.size(),
                          "predict_masked: gene (window ", genes[i].first, ", position ", genes[i].second,
                          ") does not exist");
      idx.push_back(genes[i].first);
    }
    host_batch<T> b = make_batch<T>(windows, idx, feat, C.max_positions);
    for (std::size_t i = lo; i < hi; ++i) {
      const index_t bi = index_t(i - lo), l = index_t(genes[i].second);
      std::fill_n(b.x.begin() + (bi * b.L + l) * b.F, b.F, T(mask_value));
    }
    auto o = model.forward(run_context{}, b.B, b.L, b.x, b.mask);
    const auto hyp = o.hypotheses.to_host();
    const auto logits = o.logits.to_host();
    for (std::size_t i = lo; i < hi; ++i) {
      const index_t bi = index_t(i - lo), l = index_t(genes[i].second), base = (bi * b.L + l) * K;
      const std::string& wid = windows[genes[i].first].id;
      inference_detail::require_finite(hyp, std::size_t(base * D), std::size_t(K * D), "predict_masked", wid);
      inference_detail::require_finite(logits, std::size_t(base), std::size_t(K), "predict_masked", wid);
      gene_prediction p;
      p.window = genes[i].first;
      p.position = genes[i].second;
      p.hypotheses.assign(hyp.begin() + base * D, hyp.begin() + (base + K) * D);
      double mx = -1e300, se = 0;
      for (index_t k = 0; k < K; ++k) mx = std::max(mx, double(logits[std::size_t(base + k)]));
      for (index_t k = 0; k < K; ++k) se += std::exp(double(logits[std::size_t(base + k)]) - mx);
      for (index_t k = 0; k < K; ++k) p.likelihoods.push_back(std::exp(double(logits[std::size_t(base + k)]) - mx) / se);
      p.most_likely = index_t(std::max_element(p.likelihoods.begin(), p.likelihoods.end()) - p.likelihoods.begin());
      out.push_back(std::move(p));
    }
  }
  return out;
}

}  // namespace genlm
