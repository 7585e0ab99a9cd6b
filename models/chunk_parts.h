// The parts of a chunk's forward and backward that the models/chunk*.cpp files
// share; models/chunk.h is the API. Private to models/.
#pragma once
#include <cstddef>
#include <cstdint>

#include "models/chunk.h"

namespace attnres {

// ---- arena (chunk_arena.cpp) -----------------------------------------------------
// The shape a carve depends on.
struct Shape {
  const ModelConfig& m;
  int first, last, batch;
  ChunkDims dims;
  bool has_embed() const { return first == 0; }
  bool has_head() const { return last == m.num_sublayers(); }
};
// Scratch shared by all microbatches of a chunk: one backward at a time.
// Carving with a null base only counts floats (into *total).
BackwardScratch carve_scratch(const Shape& sh, float* base, size_t* total);

// ---- tensor-parallel glue (chunk_tp.cpp, DESIGN §6) ------------------------------
// Sums the tp ranks' partial [N, d] outputs of a row-parallel matmul into the
// residual rows `res`: an all-reduce in place (partial == res), or under
// sequence parallelism a reduce-scatter. Returns where the sum is.
float* sum_partials(const Chunk& c, float* partial, float* res);
// Where a row-parallel matmul writes its partial output destined for `res`.
float* partial_target(const Chunk& c, float* res);
// The full [N, d] rows that column-parallel matmuls read, from residual rows:
// an all-gather under sequence parallelism, else a copy (or nothing when the
// caller can read `res` itself: full == res).
void gather_rows(const Chunk& c, float* full, const float* res);
// dL/dy of a sublayer's full rows from the stream gradient's residual rows:
// s.dy in an fp32 run, s.dy_h in a bf16 one (gathered in bf16 under
// sequence parallelism).
void gather_dy(const Chunk& c, SublayerActs& s, const float* dstream);
// RMSNorm (gain g) of residual rows x into xn.
// In a bf16 run xn_h gets xn's bf16 twin.
void norm_to_full(const Chunk& c, float* xn, kernels::bf16* xn_h, float* rstd, const float* x, const float* g);
// An AttnRes site's phase 2 (its partial p merged into h, lse) and the
// RMSNorm (gain norm) of the merged h into xn, in one pass over the rows.
void merge_norm_to_full(const Chunk& c, float* xn, kernels::bf16* xn_h, float* rstd, float* h, float* lse,
                        const float* p, const float* p_rstd, const float* w, const float* g, const float* norm);

// ---- precision (chunk_precision.cpp, DESIGN §11) ---------------------------------
// A bf16 run widens the layout's vectors (the tensors without weight decay:
// gains, pseudo-queries) into one fp32 buffer, packed in layout order:
// tensor t's offset there is at[t] (unused for matrices), the total at[size].
std::vector<size_t> widened_offsets(const ParamLayout& layout);
// x_h = x in bf16 when x_h is set (a bf16 run's twin of a GEMM operand).
void keep_bf16(const Chunk& c, kernels::bf16* x_h, const float* x, size_t n);
// y = x W^T; dx (+)= dy W; dW += dy^T x, as kernels::linear_*: on the float
// tensors in an fp32 run, on the bf16 twins and compute weights in a bf16 one.
void matmul_forward(const Chunk& c, float* y, const float* x, const kernels::bf16* x_h, Weight W, int N, int in,
                    int out);
void matmul_backward_input(const Chunk& c, float* dx, const float* dy, const kernels::bf16* dy_h, Weight W, int N,
                           int in, int out, bool accumulate);
void matmul_backward_weight(const Chunk& c, float* dW, const float* dy, const kernels::bf16* dy_h, const float* x,
                            const kernels::bf16* x_h, int N, int in, int out);
// A bf16 run's residual stream and its gradients hold bf16 values, so a hop
// moves them in 2 bytes without changing a bit: x [Nr, d] rounded (no-op in fp32).
void round_stream(const Chunk& c, float* x);

// ---- sublayers (dispatched by kind in chunk.cpp) ---------------------------------
// y = f_j(s.xn), s.xn = RMSNorm(h) (the caller's): column-parallel q/k/v or
// gate/up on the full rows, then the row-parallel o or down, summed over tp
// into the residual rows of s.y.
void sublayer_forward(const Chunk& c, const SublayerWeights& p, SublayerActs& s, int j);
// dL/dh of one sublayer from dL/dy (s.dy, full rows); saves what the weight
// pass needs. The input gradient of the column-parallel matmuls is summed
// over tp into the residual rows before the norm's backward. Unless sdot is
// null, sdot = dh · h per row (an AttnRes site's).
void sublayer_backward(const Chunk& c, const SublayerWeights& p, const SublayerTensors& g, SublayerActs& s, int j,
                       float* dh, float* sdot);

// Each kind's forward writes this rank's partial of y into `y` (partial_target
// of s.y); its backward writes its partial of dL/dxn into c.t.dxn; its weight
// pass adds dW += dY^T X from what the backward saved.
// Attention (chunk_attention.cpp): this rank's heads, with RoPE.
void attention_sublayer_forward(const Chunk& c, const SublayerWeights& p, SublayerActs& s, float* y);
void attention_sublayer_backward(const Chunk& c, const SublayerWeights& p, SublayerActs& s);
void attention_sublayer_backward_weight(const Chunk& c, const SublayerTensors& g, const SublayerActs& s);
// SwiGLU MLP (chunk_mlp.cpp): this rank's columns of F.
void mlp_sublayer_forward(const Chunk& c, const SublayerWeights& p, SublayerActs& s, float* y);
void mlp_sublayer_backward(const Chunk& c, const SublayerWeights& p, SublayerActs& s);
void mlp_sublayer_backward_weight(const Chunk& c, const SublayerTensors& g, const SublayerActs& s);

// ---- embedding and loss head (chunk_head.cpp) ------------------------------------
// The embedding of the token rows: each tp rank adds its vocabulary rows.
void embed_forward(const Chunk& c, float* x0, const int32_t* tokens);
// Embedding gradient of this rank's vocabulary rows, from all N token rows.
void embed_backward(const Chunk& c, const float* dx0, const int32_t* tokens);
// Loss head: h.xn = final norm of [AttnRes_out] (the caller's) -> LM head ->
// cross-entropy over the vocabulary shards (their row statistics combined
// over tp). Adds the loss sum to *loss (device memory) unless loss is null.
void head_forward(const Chunk& c, HeadActs& h, const int32_t* targets, double* loss);
// dL/dx of the loss head input into dx (overwritten, residual rows); saves
// dlogits. Unless sdot is null, sdot = dx · xin per row (the output site's).
void head_backward(const Chunk& c, HeadActs& h, const float* xin, const int32_t* targets, float loss_scale,
                   float* dx, float* sdot);

// ---- depth attention (chunk_depth.cpp) -------------------------------------------
// dL/dh and sdot slots of the backward for the sites whose completed-source
// terms wait for a pass (a group's, or a span's); the output site's follows.
int pending_site_slots(const ModelConfig& m);
// chunk_forward (after the embedding) and chunk_backward_input in AttnRes mode.
void attnres_forward(const Chunk& c, ChunkActs& a, const int32_t* targets, const ResidualState& in, double* loss);
void attnres_backward_input(const Chunk& c, ChunkActs& a, const int32_t* tokens, const int32_t* targets,
                            float loss_scale, ResidualState& dout, ResidualState& din);

}  // namespace attnres
