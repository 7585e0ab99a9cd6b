// The cross-entropy kernels over one vocabulary shard that holds all of V,
// as a tp = 1 chunk calls them (statistics from the forward feed the backward).
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/ops.h"

namespace attnres::kernels::testing {

struct CrossEntropyStats {
  std::vector<float> row_max, sum_exp, target_logit;
};

inline CrossEntropyStats ce_forward_whole(const Device& dev, float* losses, const float* logits,
                                          const int32_t* targets, int N, int V) {
  CrossEntropyStats s{std::vector<float>(N), std::vector<float>(N), std::vector<float>(N)};
  cross_entropy_row_max(dev, s.row_max.data(), logits, N, V);
  cross_entropy_row_sums(dev, s.sum_exp.data(), s.target_logit.data(), logits, targets,
                         s.row_max.data(), N, V, 0, V);
  cross_entropy_loss(dev, losses, s.row_max.data(), s.sum_exp.data(), s.target_logit.data(), targets, N);
  return s;
}

inline void ce_backward_whole(const Device& dev, float* dlogits, const float* logits,
                              const int32_t* targets, int N, int V, float scale) {
  std::vector<float> losses(N);
  const CrossEntropyStats s = ce_forward_whole(dev, losses.data(), logits, targets, N, V);
  cross_entropy_backward(dev, dlogits, logits, targets, s.row_max.data(), s.sum_exp.data(), N, V, 0, scale);
}

}  // namespace attnres::kernels::testing
