// Whole-model gradients against central finite differences, and a model split
// into chunks against the unsplit model (the basis of pipeline equivalence).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/memory.h"
#include "models/chunk.h"

using namespace attnres;
namespace k = attnres::kernels;

namespace {

ModelConfig tiny(ResidualMode mode, int S) {
  ModelConfig m;
  m.vocab_size = 256;
  m.d_model = 16;
  m.n_layers = 2;  // L = 4 sublayers
  m.n_heads = 2;
  m.d_ff = 24;
  m.seq_len = 8;
  m.mode = mode;
  m.block_size = S;
  return m;
}

// Token ids in device memory.
struct Batch {
  size_t n = 0;
  k::DeviceBuffer<int32_t> tokens, targets;
};
Batch random_batch(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> tok, tgt;
  for (int i = 0; i < n; ++i) tok.push_back(int32_t(rng() % 256)), tgt.push_back(int32_t(rng() % 256));
  Batch b{size_t(n), k::DeviceBuffer<int32_t>(k::Device{}, tok.size()), k::DeviceBuffer<int32_t>(k::Device{}, tgt.size())};
  k::from_host(k::Device{}, b.tokens.data(), tok.data(), tok.size());
  k::from_host(k::Device{}, b.targets.data(), tgt.data(), tgt.size());
  return b;
}

std::vector<float> host_params(const Chunk& c) { return chunk_weights_to_host(c); }
std::vector<float> host_grads(const Chunk& c) { return k::to_host(c.dev, c.grads.data(), c.grads.size()); }
void set_params(Chunk& c, const std::vector<float>& v) { chunk_load_weights(c, v.data()); }

// Non-zero pseudo-queries and non-unit gains: zero queries hide softmax-gradient bugs.
void randomize_small_params(Chunk& c, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.0f, 0.5f);
  std::vector<float> p = host_params(c);
  for (const auto& t : c.layout.tensors)
    if (t.shape.size() == 1)
      for (size_t i = 0; i < t.numel; ++i) p[t.offset + i] = (t.name.find("query") != std::string::npos ? 0.0f : 1.0f) + n(rng);
  set_params(c, p);
}

// Runs a list of chunks covering [0, L) on one microbatch: forward, then backward.
struct Pipeline {
  std::vector<Chunk> chunks;
  std::vector<ChunkActs> acts;
  std::vector<k::DeviceBuffer<float>> grad_store;

  Pipeline(const ModelConfig& m, const std::vector<int>& bounds, int batch) {
    chunks.resize(bounds.size() - 1);
    acts.resize(chunks.size());
    for (size_t i = 0; i + 1 < bounds.size(); ++i) {
      chunk_init(chunks[i], m, bounds[i], bounds[i + 1], batch, 7);
      acts_init(acts[i], chunks[i]);
    }
  }
  double loss(const Batch& b) {
    ResidualState s;
    double sum = 0;
    for (size_t i = 0; i < chunks.size(); ++i) {
      sum += chunk_forward(chunks[i], acts[i], b.tokens.data(), b.targets.data(), s);
      s = acts[i].out;
    }
    return sum / double(b.n);
  }
  double loss_and_grads(const Batch& b) {
    const double l = loss(b);
    const ModelConfig& m = chunks[0].cfg;
    const size_t Nd = b.n * size_t(m.d_model);
    // Gradient buffers for every stream tensor, zeroed: the last chunk starts from nothing.
    const int n_src = m.attnres() ? sources_at(m, m.num_sublayers()) : 0;
    grad_store.clear();
    ResidualState dout;
    for (int s = 0; s < n_src; ++s) {
      grad_store.emplace_back(k::Device{}, Nd);
      k::zero(k::Device{}, grad_store.back().data(), Nd);
      dout.sources.push_back(grad_store.back().data());
    }
    for (auto& c : chunks) k::zero(c.dev, c.grads.data(), c.grads.size());
    for (size_t i = chunks.size(); i-- > 0;) {
      ResidualState din;
      chunk_backward_input(chunks[i], acts[i], b.tokens.data(), b.targets.data(),
                           1.0f / float(b.n), dout, din);
      chunk_backward_weight(chunks[i], acts[i]);
      dout = din;  // the previous chunk's output stream is this one's input
    }
    return l;
  }
};

double directional_fd(Pipeline& p, const Batch& b, const std::vector<std::vector<float>>& dir, float eps) {
  auto shift = [&](float s) {
    for (size_t i = 0; i < p.chunks.size(); ++i) {
      std::vector<float> v = host_params(p.chunks[i]);
      for (size_t j = 0; j < dir[i].size(); ++j) v[j] += s * dir[i][j];
      set_params(p.chunks[i], v);
    }
  };
  shift(eps);
  const double lp = p.loss(b);
  shift(-2 * eps);
  const double lm = p.loss(b);
  shift(eps);
  return (lp - lm) / (2.0 * eps);
}

void check_gradients(ResidualMode mode, int S, Attention attention = Attention::Materialized) {
  ModelConfig m = tiny(mode, S);
  m.attention = attention;
  const int batch = 2;
  Pipeline p(m, {0, m.num_sublayers()}, batch);
  randomize_small_params(p.chunks[0], 11);
  const Batch b = random_batch(batch * m.seq_len, 3);
  p.loss_and_grads(b);
  Chunk& c = p.chunks[0];
  const std::vector<float> g = host_grads(c);
  std::vector<float> params = host_params(c);

  // Per tensor: the entries with the largest gradient against central differences.
  for (const auto& t : c.layout.tensors) {
    size_t best = t.offset;
    for (size_t i = t.offset; i < t.offset + t.numel; ++i)
      if (std::fabs(g[i]) > std::fabs(g[best])) best = i;
    // Small steps: the key-side RMSNorm of a small layer output is strongly
    // curved, so the truncation error of larger steps swamps the comparison.
    const float eps = 2e-3f;
    const float keep = params[best];
    params[best] = keep + eps;
    set_params(c, params);
    const double lp = p.loss(b);
    params[best] = keep - eps;
    set_params(c, params);
    const double lm = p.loss(b);
    params[best] = keep;
    set_params(c, params);
    const double fd = (lp - lm) / (2.0 * eps);
    EXPECT_NEAR(g[best], fd, 3e-2 * std::fabs(fd) + 5e-4) << t.name << " index " << best - t.offset;
  }
  // A random direction over all parameters at once.
  std::mt19937 rng(5);
  std::normal_distribution<float> n(0.0f, 1.0f);
  std::vector<std::vector<float>> dir{std::vector<float>(c.layout.total)};
  double expect = 0;
  for (size_t k = 0; k < c.layout.total; ++k) dir[0][k] = n(rng), expect += double(dir[0][k]) * g[k];
  const double fd = directional_fd(p, b, dir, 1e-4f);
  EXPECT_NEAR(expect, fd, 2e-2 * std::fabs(fd) + 3e-3);
}

}  // namespace

TEST(ModelGrad, Standard) { check_gradients(ResidualMode::Standard, 1); }
TEST(ModelGrad, FullAttnRes) { check_gradients(ResidualMode::AttnRes, 1); }
TEST(ModelGrad, BlockAttnResS2) { check_gradients(ResidualMode::AttnRes, 2); }
TEST(ModelGrad, OneBlockSEqualsL) { check_gradients(ResidualMode::AttnRes, 4); }
TEST(ModelGrad, RemainderBlockS3) { check_gradients(ResidualMode::AttnRes, 3); }
TEST(ModelGrad, BlockAttnResFlashAttention) { check_gradients(ResidualMode::AttnRes, 2, Attention::Flash); }

// Flash attention (model.attention: flash) against the materialized
// attention, whole model, a sequence longer than a key tile: loss and every
// gradient within 1e-5 of the largest.
TEST(ModelGrad, FlashAttentionMatchesMaterialized) {
  ModelConfig m = tiny(ResidualMode::AttnRes, 2);
  m.seq_len = 40;
  ModelConfig f = m;
  f.attention = Attention::Flash;
  const Batch b = random_batch(2 * m.seq_len, 5);
  Pipeline mat(m, {0, m.num_sublayers()}, 2), flash(f, {0, f.num_sublayers()}, 2);
  randomize_small_params(mat.chunks[0], 6);
  set_params(flash.chunks[0], host_params(mat.chunks[0]));
  const double lm = mat.loss_and_grads(b), lf = flash.loss_and_grads(b);
  EXPECT_NEAR(lf, lm, 1e-5 * std::fabs(lm));
  const std::vector<float> gm = host_grads(mat.chunks[0]), gf = host_grads(flash.chunks[0]);
  for (const TensorSpec& t : mat.chunks[0].layout.tensors) {
    float largest = 0.0f;
    for (size_t i = t.offset; i < t.offset + t.numel; ++i) largest = std::max(largest, std::fabs(gm[i]));
    for (size_t i = t.offset; i < t.offset + t.numel; ++i)
      ASSERT_NEAR(gf[i], gm[i], 1e-5f * largest) << t.name << " " << i - t.offset;
  }
}

// Splitting the model into chunks changes nothing, bit for bit, including
// boundaries that cut a block (the partial sum crosses).
TEST(ChunkSplit, BitwiseEqualToWholeModel) {
  struct Case { ResidualMode mode; int S; std::vector<int> bounds; };
  const std::vector<Case> cases = {
      {ResidualMode::Standard, 1, {0, 1, 3, 4}},
      {ResidualMode::AttnRes, 1, {0, 2, 4}},
      {ResidualMode::AttnRes, 2, {0, 2, 4}},
      {ResidualMode::AttnRes, 2, {0, 1, 3, 4}},   // cuts both blocks
      {ResidualMode::AttnRes, 3, {0, 2, 3, 4}},   // cuts, then aligned, remainder block
      {ResidualMode::AttnRes, 4, {0, 1, 2, 3, 4}},
  };
  for (const auto& cs : cases) {
    const ModelConfig m = tiny(cs.mode, cs.S);
    const Batch b = random_batch(2 * m.seq_len, 9);
    Pipeline whole(m, {0, m.num_sublayers()}, 2);
    Pipeline split(m, cs.bounds, 2);
    randomize_small_params(whole.chunks[0], 4);
    const ParamLayout& full = whole.chunks[0].layout;
    const std::vector<float> whole_params = host_params(whole.chunks[0]);
    for (auto& c : split.chunks) {
      std::vector<float> v(c.layout.total);
      for (const auto& t : c.layout.tensors)
        std::copy_n(whole_params.begin() + long(full.find(t.name)->offset), t.numel, v.begin() + long(t.offset));
      set_params(c, v);
    }
    const double lw = whole.loss_and_grads(b), ls = split.loss_and_grads(b);
    EXPECT_EQ(lw, ls) << "S=" << cs.S;
    const std::vector<float> whole_grads = host_grads(whole.chunks[0]);
    for (auto& c : split.chunks) {
      const std::vector<float> g = host_grads(c);
      for (const auto& t : c.layout.tensors)
        for (size_t i = 0; i < t.numel; ++i)
          ASSERT_EQ(whole_grads[full.find(t.name)->offset + i], g[t.offset + i])
              << t.name << "[" << i << "] S=" << cs.S << " mode=" << residual_mode_name(cs.mode);
    }
  }
}
