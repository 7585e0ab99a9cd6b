#include "parallel/partition.h"

#include <cassert>
#include <charconv>
#include <limits>

#include <stdexcept>

namespace attnres {

int64_t sublayer_cost(const ModelConfig& cfg, int j) {
  const int64_t d = cfg.d_model, T = cfg.seq_len, F = cfg.d_ff;
  const int64_t fwd = (j % 2 == 0) ? 2 * 4 * d * d + 2 * T * d : 2 * 3 * d * F;
  return 3 * fwd;
}

int64_t embed_cost(const ModelConfig& cfg) { return 3 * static_cast<int64_t>(cfg.d_model); }

int64_t head_cost(const ModelConfig& cfg) {
  return 3 * 2 * static_cast<int64_t>(cfg.vocab_size) * cfg.d_model;
}

int64_t chunk_cost(const ModelConfig& cfg, const ChunkRange& chunk) {
  int64_t c = 0;
  for (int j = chunk.first; j < chunk.last; ++j) c += sublayer_cost(cfg, j);
  if (chunk.has_embed) c += embed_cost(cfg);
  if (chunk.has_head) c += head_cost(cfg);
  return c;
}

namespace {

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t"), b = s.find_last_not_of(" \t");
  return a == std::string::npos ? std::string() : s.substr(a, b - a + 1);
}

// "6,6,6,6" -> sublayer counts per chunk; every problem is named.
std::vector<int> parse_layout(const std::string& layout, int C, int L) {
  const std::string where = "parallel.layout \"" + layout + "\": ";
  std::vector<int> counts;
  size_t pos = 0;
  while (true) {
    size_t comma = layout.find(',', pos);
    std::string tok = trim(layout.substr(pos, comma == std::string::npos ? std::string::npos
                                                                          : comma - pos));
    int v = 0;
    auto [end, ec] = std::from_chars(tok.data(), tok.data() + tok.size(), v);
    if (tok.empty() || ec != std::errc() || end != tok.data() + tok.size())
      throw std::invalid_argument(where + "entry " + std::to_string(counts.size()) + " (\"" + tok +
                        "\") is not an integer; expected comma-separated sublayer counts "
                        "per chunk, e.g. \"6,6,6,6\"");
    counts.push_back(v);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  if (static_cast<int>(counts.size()) != C)
    throw std::invalid_argument(where + "has " + std::to_string(counts.size()) +
                      " chunks; expected pp * virtual_stages = " + std::to_string(C));
  int64_t total = 0;  // C entries of up to 2^31 - 1 each: a 32-bit sum could wrap to L
  for (size_t c = 0; c < counts.size(); ++c) {
    if (counts[c] <= 0)
      throw std::invalid_argument(where + "chunk " + std::to_string(c) + " has " +
                        std::to_string(counts[c]) + " sublayers; every chunk needs at least 1");
    total += counts[c];
  }
  if (total != L)
    throw std::invalid_argument(where + "covers " + std::to_string(total) + " sublayers but the model has " +
                      std::to_string(L) + " (2 * n_layers); " +
                      (total < L ? "it drops sublayers" : "it repeats sublayers"));
  return counts;
}

// Default partition: unit boundaries `ub` (sublayer indices, ub[0] = 0,
// ub.back() = L), split into C contiguous groups. See partition.h for the
// objective and tie-breaks.
std::vector<int> balance(const ModelConfig& cfg, const std::vector<int>& ub, int C) {
  const int U = static_cast<int>(ub.size()) - 1;
  assert(U >= C);
  std::vector<int64_t> pre(U + 1, 0);  // prefix sums of unit costs
  for (int u = 0; u < U; ++u) {
    int64_t w = 0;
    for (int j = ub[u]; j < ub[u + 1]; ++j) w += sublayer_cost(cfg, j);
    pre[u + 1] = pre[u] + w;
  }
  auto cost = [&](int a, int b) {  // group of units [a, b)
    return pre[b] - pre[a] + (a == 0 ? embed_cost(cfg) : 0) + (b == U ? head_cost(cfg) : 0);
  };
  // g[k][i]: smallest possible max cost splitting units [i, U) into k groups.
  const int64_t INF = std::numeric_limits<int64_t>::max();
  std::vector<std::vector<int64_t>> g(C + 1, std::vector<int64_t>(U + 1, INF));
  g[0][U] = 0;
  // cost(i, j) grows with j, so a j whose first group alone costs as much as
  // the best split so far ends the search: O(C * U * units per group), not O(C * U^2).
  for (int k = 1; k <= C; ++k)
    for (int i = U - k; i >= 0; --i)
      for (int j = i + 1; j <= U - k + 1 && cost(i, j) < g[k][i]; ++j)
        if (g[k - 1][j] != INF) g[k][i] = std::min(g[k][i], std::max(g[k - 1][j], cost(i, j)));
  const int64_t best = g[C][0];
  // f[k][i]: smallest sum of squared costs with every group <= best (exact in 128 bits).
  using Sq = __int128;
  const Sq SQ_INF = static_cast<Sq>(-1) ^ (static_cast<Sq>(1) << 127);
  std::vector<std::vector<Sq>> f(C + 1, std::vector<Sq>(U + 1, SQ_INF));
  f[0][U] = 0;
  for (int k = 1; k <= C; ++k)
    for (int i = U - k; i >= 0; --i)
      for (int j = i + 1; j <= U - k + 1; ++j) {
        int64_t c = cost(i, j);
        if (c > best) break;  // and so is every later j
        if (f[k - 1][j] == SQ_INF) continue;
        f[k][i] = std::min(f[k][i], static_cast<Sq>(c) * c + f[k - 1][j]);
      }
  assert(f[C][0] != SQ_INF);
  // Walk forward taking the smallest boundary that stays optimal.
  std::vector<int> counts;
  int i = 0;
  for (int k = C; k >= 1; --k) {
    int j = i + 1;
    for (; j <= U - k + 1; ++j) {
      int64_t c = cost(i, j);
      if (c <= best && f[k - 1][j] != SQ_INF && static_cast<Sq>(c) * c + f[k - 1][j] == f[k][i])
        break;
    }
    assert(j <= U - k + 1);
    counts.push_back(ub[j] - ub[i]);
    i = j;
  }
  assert(i == U);
  return counts;
}

}  // namespace

Partition make_partition(const ModelConfig& cfg, int pp, int virtual_stages,
                         const std::string& layout) {
  if (pp < 1) throw std::invalid_argument("parallel.pp = " + std::to_string(pp) + ": expected >= 1");
  if (virtual_stages < 1)
    throw std::invalid_argument("parallel.virtual_stages = " + std::to_string(virtual_stages) +
                      ": expected >= 1");
  const int64_t chunks = int64_t(pp) * virtual_stages;  // in 64 bits: the product of two ints may wrap
  const int L = cfg.num_sublayers();
  if (chunks > L)
    throw std::invalid_argument("parallel.pp * parallel.virtual_stages = " + std::to_string(chunks) +
                      " chunks, but the model has only " + std::to_string(L) +
                      " sublayers (2 * n_layers); every chunk needs at least one");
  const int C = int(chunks);
  std::vector<int> counts;
  if (!layout.empty()) {
    counts = parse_layout(layout, C, L);
  } else {
    const int unit = cfg.attnres() ? cfg.block_size : 2;
    std::vector<int> ub;
    for (int j = 0; j < L; j += unit) ub.push_back(j);
    if (static_cast<int>(ub.size()) < C) {  // too few blocks: cut them
      ub.clear();
      for (int j = 0; j < L; ++j) ub.push_back(j);
    }
    ub.push_back(L);
    counts = balance(cfg, ub, C);
  }
  Partition p;
  p.P = pp;
  p.V = virtual_stages;
  int first = 0;
  for (int c = 0; c < C; ++c) {
    ChunkRange r;
    r.index = c;
    r.first = first;
    r.last = first + counts[c];
    r.has_embed = c == 0;
    r.has_head = c == C - 1;
    first = r.last;
    p.chunks.push_back(r);
  }
  assert(first == L);
  return p;
}

}  // namespace attnres
