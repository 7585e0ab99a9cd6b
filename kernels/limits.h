// Sizes the AttnRes kernels carry by value (kernels/grid_ops.h): the source
// pointers of a site, and the sites of one group of the two-phase depth
// attention.
#pragma once

namespace attnres::kernels {

constexpr int kMaxSources = 1025;  // b_0 and up to 1024 blocks (the config loader's limit)
constexpr int kMaxSites = 8;       // sites of a block computed together; a longer block is split
constexpr int kMaxHeadDim = 256;   // flash attention's per-row accumulators (the config loader checks)

}  // namespace attnres::kernels
