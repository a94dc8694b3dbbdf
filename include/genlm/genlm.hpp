// genlm/genlm.hpp - umbrella header for the CPU parts of genlm (no CUDA headers).
#pragma once
#include <genlm/backend/cpu.hpp>
#include <genlm/core/error.hpp>
#include <genlm/core/gradcheck.hpp>
#include <genlm/core/parameters.hpp>
#include <genlm/core/random.hpp>
#include <genlm/core/tensor.hpp>
#include <genlm/layers/dropout.hpp>
#include <genlm/layers/embeddings.hpp>
#include <genlm/layers/encoder.hpp>
#include <genlm/layers/encoder_layer.hpp>
#include <genlm/layers/gelu.hpp>
#include <genlm/layers/layer_norm.hpp>
#include <genlm/layers/linear.hpp>
#include <genlm/layers/relative_attention.hpp>
