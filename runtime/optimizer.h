// AdamW over a chunk's flat parameter buffer, the learning-rate schedule, and
// the global gradient norm.
#pragma once
#include <vector>

#include "kernels/memory.h"
#include "models/params.h"
#include "runtime/config.h"

namespace attnres {

// Linear warm-up over warmup_steps to lr, then cosine decay to min_lr at the
// last step. `step` counts from 0.
float lr_at(const TrainConfig& t, int step);

// AdamW state for one flat parameter buffer, or (ZeRO-1) for this rank's
// part [begin, begin + m.size()) of it. Weight decay (decoupled) applies
// to matrices only: embeddings, attention and MLP projections and the LM head.
// RMSNorm gains and AttnRes pseudo-queries / key-norm gains are exempt: decay
// would pull gains towards 0 and queries towards uniform averaging.
// The moments live on the parameters' device.
struct AdamW {
  kernels::DeviceBuffer<float> m, v;
  size_t begin = 0;  // the first element of the buffer this state updates
  int t = 0;         // optimizer steps taken
  void init(const kernels::Device& dev, size_t begin, size_t count);  // zero moments
  // `params`: the whole buffer; `grads`: the part's (grads[0] is element begin).
  void step(const ParamLayout& layout, float* params, const float* grads, float lr, const TrainConfig& cfg);
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
