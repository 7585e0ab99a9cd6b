// Host checks of token and target ids (kernels/ops.h): ids come from data
// files, so one outside the vocabulary is bad input, named with its row, not
// a crash.
#include <stdexcept>
#include <string>

#include "kernels/ops.h"

namespace attnres::kernels {

// Token ids come from data files: an out-of-range id is bad input, not a bug.
void check_tokens(const int32_t* tokens, int N, int vocab) {
  for (int n = 0; n < N; n++)
    if (tokens[n] < 0 || tokens[n] >= vocab)
      throw std::runtime_error("embedding: token id " + std::to_string(tokens[n]) +
                               " at row " + std::to_string(n) +
                               " is outside the vocabulary [0, " +
                               std::to_string(vocab) + ")");
}

// Targets come from data files: an out-of-range id is bad input; -1 masks a row.
void check_targets(const int32_t* targets, int N, int V) {
  for (int n = 0; n < N; n++)
    if (targets[n] < -1 || targets[n] >= V)
      throw std::runtime_error("cross_entropy: target id " +
                               std::to_string(targets[n]) + " at row " +
                               std::to_string(n) + " is outside the vocabulary [0, " +
                               std::to_string(V) + ")");
}

}  // namespace attnres::kernels
