// AdamW over a chunk's flat parameter buffer, the learning-rate schedule, and
// the global gradient norm.
#pragma once
#include <vector>

#include "kernels/memory.h"
#include "models/chunk.h"
#include "models/params.h"
#include "runtime/config.h"

namespace attnres {

// Linear warm-up over warmup_steps to lr, then cosine decay to min_lr at the
// last step. `step` counts from 0.
float lr_at(const TrainConfig& t, int step);

// The optimizer of one chunk: AdamW over its flat parameter buffer, or
// (ZeRO-1) over this rank's part [begin, begin + count()) of it, and the
// part's fp32 master weights (DESIGN §11). In an fp32 run the masters are
// the chunk's own weights, updated in place; in a bf16 run they are a copy
// of the optimizer's, and the chunk reads them rounded to bf16
// (chunk_write_weights after each step). Checkpoints hold the masters.
// Weight decay (decoupled) applies to matrices only: embeddings, attention
// and MLP projections and the LM head. RMSNorm gains and AttnRes
// pseudo-queries / key-norm gains are exempt: decay would pull gains
// towards 0 and queries towards uniform averaging.
// Everything lives on the chunk's device.
struct AdamW {
  kernels::DeviceBuffer<float> m, v;
  kernels::DeviceBuffer<float> own_masters;  // a bf16 run's masters (empty in fp32)
  float* master = nullptr;  // the part's masters: master[0] is element begin
  size_t begin = 0;         // the first element of the buffer this state updates
  int t = 0;                // optimizer steps taken
  size_t count() const { return m.size(); }
  // Zero moments; masters from the chunk's weights (a bf16 run's initial
  // masters are its bf16 weights widened, as when a model is made in bf16).
  void init(Chunk& c, size_t begin, size_t count);
  // Updates the masters from the part's gradients (grads[0] is element begin).
  void step(const ParamLayout& layout, const float* grads, float lr, const TrainConfig& cfg);
  // The masters, and the chunk's weights from them, from whole host values
  // (a restored checkpoint).
  void load(Chunk& c, const float* host);
};

// Per-tensor sums of squares of device memory into out[t], t in layout
// order (device memory, one double per tensor), over the part
// [begin, begin + count) of the flat buffer that `grads` holds (grads[0] is
// element begin; a tensor outside it sums to 0). `scratch` holds
// tensor_sum_squares_scratch(layout) doubles. Nothing is read back: the
// trainer reads every chunk's sums at once (docs/CUDA.md).
void tensor_sum_squares(const kernels::Device& dev, double* out, double* scratch, const ParamLayout& layout,
                        const float* grads, size_t begin, size_t count);
size_t tensor_sum_squares_scratch(const ParamLayout& layout);
// sqrt of the sum of per-tensor partials added in global tensor order, so the
// result does not depend on how tensors are spread over ranks (DESIGN §5).
double global_norm(const std::vector<double>& partials_in_global_order);
// Scales grads so their norm is at most max_norm (0 = no clipping); returns the factor.
float clip_factor(double norm, float max_norm);

}  // namespace attnres
