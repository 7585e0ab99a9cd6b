// The model's shape and residual mode (DESIGN §1), and what its forward keeps
// for the backward. Validated by runtime/config.
#pragma once
#include <cstdint>
#include <string>

#include "kernels/dtype.h"

namespace attnres {

enum class ResidualMode { Standard, AttnRes };

// Activation recomputation (train.recompute, DESIGN §8). Selective: the
// attention probabilities [b, H, T, T] are not kept per sublayer but
// recomputed in the backward. Full: a microbatch keeps only the chunk's input
// stream and the outputs it produced; its backward runs the chunk's forward
// again. Block (AttnRes only): it keeps the same, plus the summary of every
// block completed inside the chunk, and its backward runs the forward of one
// block's sublayers at a time, so only one block's activations are live. The
// kernels are deterministic, so it changes memory and time, never a bit of
// the results.
enum class Recompute { None, Selective, Block, Full };

// How causal attention runs (model.attention, resolved by the config loader).
// Materialized: the probabilities [b, H, T, T] are kept for the backward
// (the CPU's tiled sgemm attention, fastest there). Flash: only each query
// row's log-sum-exp [b, H, T] is kept and the backward recomputes the
// probabilities (O(T) memory per head; kernels/ops.h); the same results
// within 1e-5.
enum class Attention { Materialized, Flash };

struct ModelConfig {
  int vocab_size = 256;
  int d_model = 64;
  int n_layers = 2;  // transformer blocks L_b; sublayers L = 2 * n_layers
  int n_heads = 4;
  int d_ff = 128;
  int seq_len = 32;
  float rope_theta = 10000.0f;
  float norm_eps = 1e-6f;

  ResidualMode mode = ResidualMode::AttnRes;
  // Block size S in sublayers, resolved from residual.block_size or
  // residual.num_blocks by the config loader (1 <= S <= L). Unused in standard mode.
  int block_size = 1;

  Recompute recompute = Recompute::None;
  Attention attention = Attention::Materialized;
  // Training precision (train.precision, DESIGN §11): F32 or BF16. BF16: GEMM
  // operands (the weights, and the activations a GEMM reads, which are what
  // the backward keeps of them) are bf16 with fp32
  // accumulation; the residual stream and its gradients hold bf16 values
  // (kept in float), so a hop carries them in 2 bytes without changing a bit;
  // master weights, gradients, optimizer moments and every statistic and
  // reduction are fp32.
  kernels::DType precision = kernels::DType::F32;
  // What a pipeline hop carries (parallel.hop_dtype, resolved by the config
  // loader: auto = precision). BF16 only in a bf16 run, whose stream values
  // it moves exactly.
  kernels::DType hop_dtype = kernels::DType::F32;
  // Messages a chunk may have in flight per direction (parallel.sends_in_flight):
  // each has a staging buffer of its own, so a slot is reused without
  // waiting for its sends; one more send waits for the oldest.
  int sends_in_flight = 2;

  int num_sublayers() const { return 2 * n_layers; }
  int head_dim() const { return d_model / n_heads; }
  bool attnres() const { return mode == ResidualMode::AttnRes; }
  bool bf16() const { return precision == kernels::DType::BF16; }
  bool flash() const { return attention == Attention::Flash; }
  // Selective recomputation drops the materialized probabilities; flash keeps none.
  bool recomputes_attention() const { return recompute == Recompute::Selective && !flash(); }
  // Blocks of sublayers: ceil(L / S); the last takes the remainder.
  int num_blocks() const { return (num_sublayers() + block_size - 1) / block_size; }
  int block_of(int j) const { return j / block_size; }
  bool starts_block(int j) const { return j % block_size == 0; }
};

// The block rule at sublayer boundary s (0 <= s <= L, between sublayers s-1
// and s): sources complete there are b_0 and floor(s/S) blocks, or all N
// blocks at s = L; a partial block sum exists iff s % S != 0 (and s < L).
inline int sources_at(const ModelConfig& cfg, int s) {
  return 1 + (s < cfg.num_sublayers() ? s / cfg.block_size : cfg.num_blocks());
}
inline bool partial_at(const ModelConfig& cfg, int s) {
  return s < cfg.num_sublayers() && s % cfg.block_size != 0;
}

inline const char* residual_mode_name(ResidualMode m) {
  return m == ResidualMode::Standard ? "standard" : "attnres";
}
inline const char* recompute_name(Recompute r) {
  return r == Recompute::None ? "none" : r == Recompute::Selective ? "selective" : r == Recompute::Block ? "block" : "full";
}

}  // namespace attnres
