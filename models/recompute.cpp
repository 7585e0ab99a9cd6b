#include "models/recompute.h"

#include <algorithm>
#include <cassert>

#include "kernels/ops.h"

namespace attnres {

namespace k = kernels;

std::vector<SublayerRange> recompute_segments(const ModelConfig& cfg, int first, int last) {
  if (cfg.recompute == Recompute::Full) return {{first, last}};
  if (cfg.recompute != Recompute::Block) return {};
  std::vector<SublayerRange> out{{first, first + 1}};
  for (int j = first + 1; j < last; ++j) {
    if (cfg.starts_block(j)) out.push_back({j, j});
    out.back().last = j + 1;
  }
  return out;
}

int recompute_kept_outputs(const ModelConfig& cfg, int first, int last) {
  int n = 0;
  for (const SublayerRange& r : recompute_segments(cfg, first, last))
    if (r.last < cfg.num_sublayers()) n += chunk_produced_outputs(cfg, r.first, r.last);
  return n;
}

size_t recompute_arena_floats(const ModelConfig& cfg, int first, int last, int micro_batch,
                              const TensorParallel& tp) {
  size_t floats = 0;
  for (const SublayerRange& g : recompute_segments(cfg, first, last))
    floats = std::max(floats, chunk_floats(cfg, g.first, g.last, micro_batch, tp).acts);
  return floats;
}

void recompute_init(RecomputedChunk& r, const Chunk& c) {
  for (const SublayerRange& g : recompute_segments(c.cfg, c.first, c.last))
    r.segments.push_back(chunk_segment(c, g.first, g.last));
  if (!r.on()) return;
  r.arena = k::DeviceBuffer<float>(c.dev, recompute_arena_floats(c.cfg, c.first, c.last, c.batch, c.tp));
  r.acts.resize(r.segments.size());
  for (size_t g = 0; g < r.segments.size(); ++g) acts_init(r.acts[g], r.segments[g], r.arena.data());
}

// What a segment produces is copied out of the shared arena (m.kept) before
// the next forward overwrites it, unless it is the model's last segment (its
// outputs leave nowhere); inputs pass through by pointer.
void recompute_forward(RecomputedChunk& r, RecomputeKept& m, const int32_t* tokens, const int32_t* targets,
                       const ResidualState& in, ResidualState& out, double* loss) {
  m.segment_in.assign(1, in);
  size_t t = 0;
  for (size_t i = 0; i < r.segments.size(); ++i) {
    const Chunk& g = r.segments[i];
    const size_t n = size_t(g.dims.Nr) * g.dims.d;
    chunk_forward(g, r.acts[i], tokens, targets, m.segment_in.back(), loss);
    ResidualState o = r.acts[i].out;
    if (g.last < g.cfg.num_sublayers()) {
      auto keep = [&](float*& p) {
        k::copy(g.dev, m.kept[t], p, n, k::CopyKind::DeviceToDevice);
        p = m.kept[t++];
      };
      if (!g.cfg.attnres()) keep(o.hidden);
      for (size_t src = size_t(g.first == 0 ? 0 : sources_at(g.cfg, g.first)); src < o.sources.size(); ++src)
        keep(o.sources[src]);
      if (o.partial) keep(o.partial);
    }
    if (i + 1 < r.segments.size()) m.segment_in.push_back(std::move(o));
    else out = std::move(o);
  }
  assert(t == m.kept.size());
}

// An earlier segment's output-stream gradients are the first of the chunk's,
// one per source it leaves; it ends on a block boundary, so no partial.
void recompute_backward(RecomputedChunk& r, RecomputeKept& m, const int32_t* tokens, const int32_t* targets,
                        float loss_scale, const ResidualState& dout, ResidualState& din) {
  for (size_t i = r.segments.size(); i-- > 0;) {
    const Chunk& g = r.segments[i];
    ChunkActs& a = r.acts[i];
    chunk_forward(g, a, tokens, targets, m.segment_in[i], nullptr);
    ResidualState d;
    if (i + 1 == r.segments.size()) d = dout;
    else d.sources.assign(dout.sources.begin(), dout.sources.begin() + sources_at(g.cfg, g.last));
    chunk_backward_input(g, a, tokens, targets, loss_scale, d, din);
    chunk_backward_weight(g, a);
  }
}

}  // namespace attnres
