// genlm/layers/relative_attention.hpp - multi-head self-attention with relative position scores
// (Hugging Face BERT/RoBERTa position_embedding_type "relative_key" / "relative_key_query").
//
// Per head, with P[l, r] = E[l - r + M - 1] (E: distance table (2M-1, head_dim)):
//   S = (q.k + q.P[l,r] (+ k_r.P[l,r])) / sqrt(head_dim) + (1 - m_r) * lowest,  A = softmax_r(S),
//   context = dropout(A) v.
// The relative terms are computed as two GEMMs against the (2L-1) rows of E that distances of a
// length-L sequence use (QE = Q E_sub^T) followed by a diagonal gather, so no (L, L, head_dim)
// tensor is ever formed.
#pragma once
#include <cmath>
#include <string>

#include <genlm/core/parameters.hpp>
#include <genlm/layers/dropout.hpp>
#include <genlm/layers/linear.hpp>

namespace genlm {

/// Attention variants (template parameter of relative_attention).
struct relative_key {
  static constexpr bool key_term = false;
  static constexpr const char* name = "relative_key";
};
struct relative_key_query {
  static constexpr bool key_term = true;
  static constexpr const char* name = "relative_key_query";
};

template <class V>
concept attention_variant = requires {
  { V::key_term } -> std::convertible_to<bool>;
  { V::name } -> std::convertible_to<const char*>;
};

template <class T, class Backend, attention_variant Variant = relative_key_query>
class relative_attention {
 public:
  using tensor_t = tensor<T, Backend>;
  /// Relative-position score terms: QE alone (relative_key) or QE and KE (relative_key_query).
  static constexpr index_t rel_terms = Variant::key_term ? 2 : 1;
  relative_attention() = default;
  /// Declares "<prefix>.{query,key,value}.{weight,bias}" and "<prefix>.distance_embedding.weight".
  relative_attention(parameter_store<T, Backend>& ps, const std::string& prefix, index_t hidden, index_t heads,
                     index_t max_positions, double attention_dropout, std::uint64_t dropout_site,
                     double init_std = 0.02)
      : ps_(&ps), name_(prefix), hidden_(hidden), heads_(heads), max_pos_(max_positions) {
    check<shape_error>(heads > 0 && hidden > 0 && hidden % heads == 0, "relative_attention '", prefix,
                       "': hidden size ", hidden, " must be a positive multiple of the number of heads ", heads);
    check<shape_error>(max_positions > 0, "relative_attention '", prefix, "': max_positions must be positive, got ",
                       max_positions);
    head_dim_ = hidden / heads;
    q_ = linear<T, Backend>(ps, prefix + ".query", hidden, hidden, true, init_std);
    k_ = linear<T, Backend>(ps, prefix + ".key", hidden, hidden, true, init_std);
    v_ = linear<T, Backend>(ps, prefix + ".value", hidden, hidden, true, init_std);
    e_ = ps.add(prefix + ".distance_embedding.weight", {2 * max_positions - 1, head_dim_}, init_kind::normal, init_std);
    drop_ = dropout<T, Backend>(attention_dropout, dropout_site);
  }

  index_t heads() const { return heads_; }
  index_t head_dim() const { return head_dim_; }
  index_t max_positions() const { return max_pos_; }

  /// x (B, L, hidden), key mask (B, L) with 1 = real gene, 0 = padding (nullptr: none)
  /// -> context (B, L, hidden).
  void forward(const run_context& ctx, const tensor_t& x, const tensor_t* mask, tensor_t& out) {
    check<shape_error>(x.rank() == 3 && x.dim(2) == hidden_, "relative_attention '", name_, "': input shape ",
                       x.shape(), ", expected (batch, length, ", hidden_, ")");
    B_ = x.dim(0);
    L_ = x.dim(1);
    check<shape_error>(L_ >= 1 && L_ <= max_pos_, "relative_attention '", name_, "': sequence length ", L_,
                       " is outside 1..", max_pos_, " (the distance table has 2*", max_pos_,
                       "-1 rows, covering distances up to ", max_pos_ - 1, "); split the contig into windows");
    if (mask) expect_shape(mask->shape(), {B_, L_}, "relative_attention '", name_, "': attention mask");
    mask_ = mask;
    const index_t H = heads_, D = head_dim_, L = L_, W = 2 * L_ - 1, BH = B_ * heads_;

    // projections (B, L, hidden) without their biases; each bias is added by the permute into heads
    // Q and K in one buffer, K right after Q, so that the relative terms of both are one GEMM
    qk_.resize({2 * B_, H, L, D});  // Q (B, H, L, D), then K
    T* const qh = qk_.data();
    T* const kh = qh + BH * L * D;
    q_.forward_product(x, lin_);
    Backend::permute_0213(lin_.data(), qh, B_, L, H, D, false, q_.bias_data());
    k_.forward_product(x, lin_);
    Backend::permute_0213(lin_.data(), kh, B_, L, H, D, false, k_.bias_data());
    v_.forward_product(x, lin_);
    vh_.resize({B_, H, L, D});
    Backend::permute_0213(lin_.data(), vh_.data(), B_, L, H, D, false, v_.bias_data());

    // S = Q K^T  (BH, L, L)
    probs_.resize({B_, H, L, L});
    Backend::gemm_strided_batched(false, true, L, L, D, T(1), qh, D, L * D, kh, D, L * D, T(0),
                                  probs_.data(), L, L * L, BH);
    // relative terms: QE = Q E_sub^T, KE = K E_sub^T  (BH*L, 2L-1) each, KE right after QE: one
    // GEMM over the rows of Q and K together (Q's alone under relative_key)
    const T* esub = ps_->value(e_) + (max_pos_ - L) * D;
    rel_.resize({rel_terms * BH * L, W});
    Backend::gemm(false, true, rel_terms * BH * L, W, D, T(1), qh, D, esub, D, T(0), rel_.data(), W);
    const T* qe = rel_.data();
    const T* ke = Variant::key_term ? qe + BH * L * W : nullptr;
    // A = softmax((S + relative terms) / sqrt(D) + mask)  (B, H, L, L), in place, one pass
    Backend::relpos_softmax_forward(probs_.data(), qe, ke,
                                    mask ? mask->data() : static_cast<const T*>(nullptr), probs_.data(), B_, H, L,
                                    T(1.0 / std::sqrt(double(D))));
    // context = dropout(A) V  (BH, L, D) -> (B, L, hidden)
    const tensor_t* a = &probs_;
    if (ctx.training && drop_.p() > 0) {
      drop_.forward(ctx, probs_, probs_drop_);
      a = &probs_drop_;
    } else {
      drop_.forward(ctx, probs_, probs_);  // records "inactive" for backward
    }
    ctxh_.resize({B_, H, L, D});
    Backend::gemm_strided_batched(false, false, L, D, L, T(1), a->data(), L, L * L, vh_.data(), D, L * D, T(0),
                                  ctxh_.data(), D, L * D, BH);
    out.resize({B_, L, hidden_});
    Backend::permute_0213(ctxh_.data(), out.data(), B_, H, L, D, false);
  }

  /// Attention probabilities of the last forward (B, heads, L, L), before attention dropout.
  const tensor_t& attention_probs() const { return probs_; }

  /// Parameter gradients assigned; dx += dL/dx. x must be the input of the last forward.
  void backward(const tensor_t& x, const tensor_t& dout, tensor_t& dx) {
    const index_t H = heads_, D = head_dim_, L = L_, W = 2 * L_ - 1, BH = B_ * heads_;
    expect_shape(dout.shape(), {B_, L, hidden_}, "relative_attention '", name_, "' backward: d(context)");
    expect_shape(dx.shape(), x.shape(), "relative_attention '", name_, "' backward: dx");
    const bool dropped = drop_.active();
    const tensor_t& a = dropped ? probs_drop_ : probs_;

    g_ctx_.resize({B_, H, L, D});
    Backend::permute_0213(dout.data(), g_ctx_.data(), B_, L, H, D, false);
    // dA = dctx V^T (BH, L, L); dV = A^T dctx (BH, L, D)
    g_s_.resize({B_, H, L, L});
    Backend::gemm_strided_batched(false, true, L, L, D, T(1), g_ctx_.data(), D, L * D, vh_.data(), D, L * D, T(0),
                                  g_s_.data(), L, L * L, BH);
    g_v_.resize({B_, H, L, D});
    Backend::gemm_strided_batched(true, false, L, D, L, T(1), a.data(), L, L * L, g_ctx_.data(), D, L * D, T(0),
                                  g_v_.data(), D, L * D, BH);
    if (dropped) drop_.backward(g_s_, g_s_, false);
    // dS (pre-scale scores) = A * (dA - rowsum(dA * A)) / sqrt(D), in place; and the relative terms'
    // gradients dQE / dKE (BH*L, 2L-1) gathered from dS, in the same pass over each score block
    // (dQE then dKE in one buffer, as QE and KE in the forward)
    g_rel_.resize({rel_terms * BH * L, W});
    T* const g_qe = g_rel_.data();
    T* const g_ke = Variant::key_term ? g_qe + BH * L * W : nullptr;
    Backend::softmax_relpos_backward(probs_.data(), g_s_.data(), g_s_.data(), g_qe, g_ke, BH, L,
                                     T(1.0 / std::sqrt(double(D))));
    // dQ = dS K, dK = dS^T Q  (BH, L, D) each, dK right after dQ
    const T* const qh = qk_.data();
    const T* const kh = qh + BH * L * D;
    g_qk_.resize({2 * B_, H, L, D});  // dQ (B, H, L, D), then dK
    T* const g_q = g_qk_.data();
    T* const g_k = g_q + BH * L * D;
    Backend::gemm_strided_batched(false, false, L, D, L, T(1), g_s_.data(), L, L * L, kh, D, L * D, T(0), g_q, D,
                                  L * D, BH);
    Backend::gemm_strided_batched(true, false, L, D, L, T(1), g_s_.data(), L, L * L, qh, D, L * D, T(0), g_k, D,
                                  L * D, BH);
    // relative terms, each one GEMM over the rows of Q and K together (Q's alone under
    // relative_key): [dQ; dK] += [dQE; dKE] E_sub, dE_sub = [dQE; dKE]^T [Q; K] = dQE^T Q + dKE^T K
    const T* esub = ps_->value(e_) + (max_pos_ - L) * D;
    T* g_e = ps_->grad(e_);
    Backend::fill(g_e, (2 * max_pos_ - 1) * D, T(0));  // rows beyond the window's distances stay 0
    T* g_esub = g_e + (max_pos_ - L) * D;
    Backend::gemm(false, false, rel_terms * BH * L, D, W, T(1), g_qe, W, esub, D, T(1), g_q, D);
    Backend::gemm(true, false, W, D, rel_terms * BH * L, T(1), g_qe, W, qh, D, T(0), g_esub, D);
    // back to (B, L, hidden) and through the projections
    g_lin_.resize({B_, L, hidden_});
    Backend::permute_0213(g_q, g_lin_.data(), B_, H, L, D, false);
    q_.backward(x, g_lin_, &dx);
    Backend::permute_0213(g_k, g_lin_.data(), B_, H, L, D, false);
    k_.backward(x, g_lin_, &dx);
    Backend::permute_0213(g_v_.data(), g_lin_.data(), B_, H, L, D, false);
    v_.backward(x, g_lin_, &dx);
  }

 private:
  parameter_store<T, Backend>* ps_ = nullptr;
  std::string name_;
  index_t hidden_ = 0, heads_ = 0, head_dim_ = 0, max_pos_ = 0;
  linear<T, Backend> q_, k_, v_;
  param_id e_;
  dropout<T, Backend> drop_;
  // forward state / workspaces
  index_t B_ = 0, L_ = 0;
  const tensor_t* mask_ = nullptr;
  tensor_t lin_;                     // (B, L, hidden) projection scratch
  tensor_t qk_;                      // (2 B, heads, L, head_dim): Q (B, ...), then K
  tensor_t vh_;                      // (B, heads, L, head_dim)
  tensor_t rel_;                     // (rel_terms, B*heads*L, 2L-1): QE, then KE (relative_key_query)
  tensor_t probs_, probs_drop_;      // (B, heads, L, L)
  tensor_t ctxh_;                    // (B, heads, L, head_dim)
  // backward workspaces
  tensor_t g_ctx_, g_v_;              // (B, heads, L, head_dim)
  tensor_t g_qk_;                     // (2 B, heads, L, head_dim): dQ, then dK
  tensor_t g_s_;                      // (B, heads, L, L)
  tensor_t g_rel_;                    // (rel_terms, B*heads*L, 2L-1): dQE, then dKE
  tensor_t g_lin_;                    // (B, L, hidden)
};

}  // namespace genlm
