// Forward and backward of a chunk: a contiguous range of sublayers [first, last)
// (DESIGN §1, §2). The whole model is the chunk [0, L). No communication here:
// the residual stream enters and leaves as a ResidualState of device pointers,
// and the caller (trainer or pipeline executor) moves it between chunks.
//
// llm.c-style: chunk_init allocates and resolves every parameter pointer once
// into typed views; acts_init allocates and carves one microbatch's activation
// arena once. Forward and backward only follow pointers.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "kernels/device.h"
#include "kernels/memory.h"
#include "models/model_config.h"
#include "models/params.h"
#include "models/tensor_collectives.h"

namespace attnres {

// Tensor parallelism of a chunk (DESIGN §6): this rank's place in the tensor
// group, the group's collectives (null when it has one rank), and whether the
// residual region is sharded by tokens. Under sequence parallelism rank t
// holds token rows [t·N/tp, (t+1)·N/tp) of the microbatch's N = b·T rows.
struct TensorParallel {
  TpRank tp;
  bool sequence_parallel = false;
  TensorCollectives* coll = nullptr;
};

// Rows and local widths of one microbatch on this tp rank.
struct ChunkDims {
  int N;       // token rows b·T (the matmuls' rows)
  int Nr;      // rows of the residual region: N, or N / tp under sequence parallelism
  int d;       // model width
  int dl, Hl;  // local attention width and heads (d / tp, H / tp)
  int Fl;      // local MLP width F / tp
  int Vl, v0;  // local vocabulary rows and the first one
};
ChunkDims chunk_dims(const ModelConfig& cfg, int micro_batch, const TensorParallel& tp);

// The residual stream at a sublayer boundary for one microbatch; every tensor
// is [Nr, d] (ChunkDims). Also used for the gradient of a stream.
struct ResidualState {
  float* hidden = nullptr;       // standard mode: x
  std::vector<float*> sources;   // attnres: completed sources, b_0 first
  float* partial = nullptr;      // attnres: partial block sum, if the boundary cuts a block
};

// What chunk_init / acts_init allocate for the chunk [first, last) with
// micro_batch sequences per microbatch, in floats. The allocations use these
// same functions, so `attnres plan` predicts the runtime's memory exactly.
struct ChunkFloats {
  size_t params = 0;           // an fp32 run's weights (0 in a bf16 run)
  size_t grads = 0;
  size_t compute_weights = 0;  // bf16 elements: a bf16 run's weights
  size_t widened = 0;          // a bf16 run's gains and pseudo-queries widened to fp32
  size_t rope = 0;     // RoPE cos and sin tables
  size_t scratch = 0;  // transient buffers of one backward, shared by the microbatches
  size_t acts = 0;     // one microbatch's activation arena
};
ChunkFloats chunk_floats(const ModelConfig& cfg, int first, int last, int micro_batch,
                         const TensorParallel& tp = {});

// A weight as a chunk reads it (DESIGN §11). An fp32 run reads every weight
// in fp32 (f). A bf16 run multiplies with bf16 weights (h); the few tensors
// that norms and depth attention read (gains, pseudo-queries) it also reads
// as their bf16 values widened to fp32 (f), since those kernels take fp32.
struct Weight {
  const float* f = nullptr;
  const kernels::bf16* h = nullptr;
  explicit operator bool() const { return f || h; }
};

// One sublayer's tensors inside a flat buffer (parameters or gradients); null
// where the sublayer has none (attention vs MLP, the AttnRes site).
template <class T>
struct SublayerOf {
  T norm, q, k, v, o, gate, up, down, res_query, res_norm;
};
// Every tensor of a chunk inside a flat buffer.
template <class T>
struct ChunkOf {
  T embed{};                          // first chunk
  std::vector<SublayerOf<T>> sub;     // sublayers first .. last-1
  T out_query{}, out_norm{};          // output AttnRes site (attnres, last chunk)
  T final_norm{}, lm_head{};          // last chunk
};
using SublayerTensors = SublayerOf<float*>;  // gradients
using ChunkTensors = ChunkOf<float*>;
using SublayerWeights = SublayerOf<Weight>;  // what the forward and backward read
using ChunkWeights = ChunkOf<Weight>;

// Transient buffers, carved from Chunk::scratch: those of one backward pass,
// and under sequence parallelism the staging of the tp collectives.
struct BackwardScratch {
  float *dh;    // [G, Nr, d]: dL/dh of each site of an AttnRes site group (G = its most sites), else [Nr, d]
  float *sdot;  // [G, Nr]: dh · h of each site of the group (AttnRes)
  float *dxn, *dao, *dact, *dx;
  float* datt;  // the score gradients [b, Hl, T, T], or under flash attention delta [b, Hl, T]
  float *att, *ao;  // selective recomputation: the probabilities and output of one attention (ao: also below)
  float *dquery;  // the AttnRes backward's query-gradient partials
  float *dxn_res;  // dxn summed into the residual rows (sequence parallel)
  float *full;     // [N, d]: partial sums before a reduce-scatter, gathered gradients
  float *local;    // [Nr, d]: a norm's output before its all-gather
  // A bf16 run: the fp32 values of the GEMM operands the arena keeps in bf16
  // only (SublayerActs, HeadActs), each used from when it is computed until
  // its bf16 twin is written.
  float *xn, *act, *dy, *dq, *dk, *dv, *dgate, *dup, *dlogits;
  kernels::bf16* local_h;  // bf16 and sequence parallel: [Nr, d] rows before their bf16 all-gather
};

// Parameters and gradients of one chunk, plus scratch shared by its microbatches.
struct Chunk {
  ModelConfig cfg;
  kernels::Device dev;
  int first = 0, last = 0;  // sublayers [first, last)
  int batch = 0;            // sequences per microbatch (b)
  TensorParallel tp;
  ChunkDims dims{};
  bool has_embed = false, has_head = false;
  ParamLayout layout;
  // The weights the chunk reads, in the run's precision. The fp32 master
  // weights belong to the optimizer (runtime/optimizer.h): in an fp32 run
  // they are `params` itself, in a bf16 run a copy of its own.
  kernels::DeviceBuffer<float> params;            // fp32 run: layout.total floats
  kernels::DeviceBuffer<kernels::bf16> compute;   // bf16 run: layout.total, same offsets
  kernels::DeviceBuffer<float> widened;           // bf16 run: the vectors of compute, in fp32 (chunk_widen_vectors)
  kernels::DeviceBuffer<float> grads;   // layout.total floats, accumulated over microbatches
  kernels::DeviceBuffer<float> rope_cos, rope_sin;
  kernels::DeviceBuffer<float> scratch;
  ChunkWeights p;         // views into params, or compute and widened
  ChunkTensors g;         // views into grads
  BackwardScratch t;      // view into scratch
  const float *cos = nullptr, *sin = nullptr;  // the RoPE tables (rope_cos, rope_sin)
  // Called before each sublayer's forward, backward and weight pass: the
  // executor lets its communicators move messages while the chunk computes
  // (MPI moves data only inside its calls). Changes no value. May be empty.
  std::function<void()> progress;
};

// Allocates this tp rank's parameter shards (initialised from seed, the same
// values whatever tp), gradients and scratch.
void chunk_init(Chunk& c, const ModelConfig& cfg, int first, int last, int batch,
                uint64_t seed, kernels::Device dev = {}, const TensorParallel& tp = {});

// Writes the weights the chunk reads from fp32 master weights `masters`
// (device memory; masters[0] is element begin) for the elements [begin,
// begin + count) of the layout: copied in an fp32 run (nothing to do when
// they are params itself), rounded to bf16 in a bf16 run. After a bf16 run's
// weights change, chunk_widen_vectors must follow before the next forward.
void chunk_write_weights(Chunk& c, const float* masters, size_t begin, size_t count);
// A bf16 run: the gains and pseudo-queries widened from compute (no-op in fp32).
void chunk_widen_vectors(Chunk& c);
// Every weight from whole fp32 values in host memory (layout.total floats):
// initial values, a restored checkpoint, an export.
void chunk_load_weights(Chunk& c, const float* host);
// The weights as the chunk reads them, widened to fp32, in host memory.
std::vector<float> chunk_weights_to_host(const Chunk& c);

// A view of the sublayers [first, last) of chunk c, to run forward and
// backward on alone: its tensors, scratch and RoPE tables are c's (it owns
// no buffer, and its layout is empty). Recomputation (models/recompute.h)
// runs a chunk's forward again one segment at a time.
Chunk chunk_segment(const Chunk& c, int first, int last);

// What one AttnRes site with K completed sources keeps per token for its
// backward: its output h (d floats, also the sublayer norm's input), its
// log-sum-exp, the key-side rstd of the sublayer's partial sum, and the K
// products u · v_s of phase 1. The weights alpha are recomputed from them in
// the backward; keeping u · v (K floats against h's d) spares the backward a
// second dot product with every source. carve_acts takes exactly these.
inline size_t attnres_site_floats_per_token(int d, int K) { return size_t(d) + 2 + size_t(K); }

// One microbatch's saved tensors, pointers into ChunkActs::arena. In a bf16
// run the GEMM operands (xn, ao, act, dy, dq, dk, dv, dgate, dup; the head's
// xn and dlogits) are kept as their bf16 twins (the *_h fields, null in an
// fp32 run), and their float fields point at the chunk's scratch.
struct SublayerActs {
  float *h, *lse, *xn, *rstd, *y, *stream, *prstd;  // common (lse: the AttnRes site's log-sum-exp)
  float* uv;                                         // AttnRes: [Nr, K] u · v of the completed sources
  float *q, *k, *v, *att, *ao;                             // attention (att: probabilities, or flash's lse)
  float *gate, *up, *act;                                  // MLP
  float *dy, *dq, *dk, *dv, *dgate, *dup;                  // saved for the weight pass
  kernels::bf16 *xn_h, *ao_h, *act_h, *dy_h, *dq_h, *dk_h, *dv_h, *dgate_h, *dup_h;
};
struct HeadActs {
  float *h, *lse, *uv, *xn, *rstd, *logits, *losses, *dlogits;
  float *row_max, *sum_exp, *target_logit;  // cross-entropy statistics (sum_exp, target_logit adjacent)
  kernels::bf16 *xn_h, *dlogits_h;
};
struct ActsView {
  float *x0, *in_rstd;  // embedding output; rstd of the input sources (+ partial)
  std::vector<SublayerActs> sub;
  HeadActs head;
};

// Everything one microbatch's forward keeps for its backward, in one arena.
struct ChunkActs {
  kernels::DeviceBuffer<float> arena;
  ActsView v;                      // carved once; standard mode: v.sub[0].h is the input
  int n_in_sources = 0;            // sources in the input stream
  ResidualState out;               // the output stream (points into the arena / input)
  std::vector<float*> site_src;    // flattened per-site source pointers (attnres)
  std::vector<int> site_k;         // sources per site, L-range then the output site
};
// Carves the arena into `base` (chunk_floats(...).acts floats of c's range)
// when given, else allocates it.
void acts_init(ChunkActs& a, const Chunk& c, float* base = nullptr);

// Tensors ([Nr, d] each) of the output stream that the chunk [first, last)
// produces, the rest passing through from its input: the sources completed
// inside it (b_0 in the first chunk) and its partial sum, or the hidden state
// in standard mode. In the order of a.out: produced sources, then the partial
// or hidden state.
int chunk_produced_outputs(const ModelConfig& cfg, int first, int last);

// Forward of one microbatch. tokens [b*T] are read by the first chunk, targets
// [b*T] by the last, which adds the sum of its token losses to *loss (device
// memory, so that the host reads a step's losses at once; null: not summed).
// `in` is ignored by the first chunk. After the call a.out is the output stream;
// its tensors stay valid until `a` runs another forward.
void chunk_forward(const Chunk& c, ChunkActs& a, const int32_t* tokens, const int32_t* targets,
                   const ResidualState& in, double* loss);
// The same, returning that sum (0 unless the last chunk): one read by the host.
double chunk_forward(const Chunk& c, ChunkActs& a, const int32_t* tokens, const int32_t* targets,
                     const ResidualState& in);

// The depth-attention weights alpha [rows, K] of site `site` (a sublayer
// j - c.first, or the output site at c.last - c.first) in the last forward,
// recomputed on the host from its sources and saved log-sum-exp (the
// forward keeps no weights). For diagnostics (`attnres eval --depth`).
std::vector<float> chunk_site_weights(const Chunk& c, const ChunkActs& a, int site, int rows);

// Per-token losses [b*T] of the last forward of the last chunk (device memory).
const float* chunk_token_losses(const Chunk& c, const ChunkActs& a);

// Backward, input-gradient half. `dout` holds gradient buffers shaped like
// a.out: for the last chunk, buffers for every source (attnres; the output
// site's terms are written into them first, so what they held is never
// read) or null (standard); otherwise the gradients received from the next
// chunk. Gradients are accumulated in place; on return `din` points at the gradient of the
// input stream (aliasing dout's buffers: din.sources are dout.sources' first
// n_in_sources). loss_scale multiplies dL/dlogits (1 / tokens per step).
// Also accumulates the gradients of norms, pseudo-queries and the embedding.
void chunk_backward_input(const Chunk& c, ChunkActs& a, const int32_t* tokens,
                          const int32_t* targets, float loss_scale, ResidualState& dout,
                          ResidualState& din);
// Backward, weight-gradient half: dW += dY^T X for every matrix of the chunk,
// from what chunk_backward_input saved in `a`.
void chunk_backward_weight(const Chunk& c, ChunkActs& a);

// Under sequence parallelism each tp rank holds only its token rows' share
// of the gradients of the replicated tensors (norm gains, pseudo-queries,
// key-norm gains): sums them over the tensor group. No-op otherwise.
void chunk_reduce_replicated_grads(Chunk& c);

}  // namespace attnres
