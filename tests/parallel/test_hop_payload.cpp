#include <gtest/gtest.h>

#include <random>
#include <set>
#include <string>

#include "tests/parallel/model_for_test.h"
#include "parallel/hop_payload.h"
#include "parallel/schedule.h"

namespace attnres {
namespace {

using K = HopTensor::Kind;

std::vector<HopTensor> src(std::initializer_list<int> ks, bool partial) {
  std::vector<HopTensor> out;
  for (int k : ks) out.push_back({K::Source, k});
  if (partial) out.push_back({K::Partial, -1});
  return out;
}

std::string uniform_layout(int C, int n) {
  std::string s;
  for (int c = 0; c < C; ++c) {
    if (c) s += ',';
    s += std::to_string(n);
  }
  return s;
}

TEST(HopPayload, CompletedSources) {
  ModelConfig m = model(4, 3);  // L = 8, blocks [0,3) [3,6) [6,8)
  int want[] = {1, 1, 1, 2, 2, 2, 3, 3, 4};
  for (int s = 0; s <= 8; ++s) EXPECT_EQ(sources_at(m, s), want[s]) << s;
}

TEST(HopPayload, StandardShipsTheHiddenState) {
  ModelConfig m = model(4, 3, ResidualMode::Standard);
  Partition p = make_partition(m, 2, 2, "1,3,3,1");
  for (int c = 1; c < 4; ++c)
    for (bool cache : {false, true}) {
      HopPayload h = hop_payload(m, p, c, cache);
      EXPECT_EQ(h.chunk, c);
      EXPECT_EQ(h.tensors, (std::vector<HopTensor>{{K::Hidden, -1}}));
    }
}

TEST(HopPayload, CutBlocksNoInterleaving) {
  // L = 8, S = 3: blocks [0,3) [3,6) [6,8). Chunks [0,3) [3,5) [5,8).
  ModelConfig m = model(4, 3);
  Partition p = make_partition(m, 3, 1, "3,2,3");
  for (bool cache : {false, true}) {
    EXPECT_EQ(hop_payload(m, p, 1, cache).tensors, src({0, 1}, false));  // s=3 ends block 0
    EXPECT_EQ(hop_payload(m, p, 2, cache).tensors, src({0, 1}, true));   // s=5 is inside block 1
  }
}

TEST(HopPayload, CutBlocksWithCaching) {
  // L = 8, S = 3, P = 2, V = 2, chunks [0,2) [2,4) [4,6) [6,8) on ranks 0 1 0 1.
  ModelConfig m = model(4, 3);
  Partition p = make_partition(m, 2, 2, "2,2,2,2");
  EXPECT_EQ(hop_payload(m, p, 1, false).tensors, src({0}, true));
  EXPECT_EQ(hop_payload(m, p, 1, true).tensors, src({0}, true));
  EXPECT_EQ(hop_payload(m, p, 2, false).tensors, src({0, 1}, true));
  // Rank 0 holds b_0 from chunk 0; block 0 completed at s=3, inside chunk 1.
  EXPECT_EQ(hop_payload(m, p, 2, true).tensors, src({1}, true));
  EXPECT_EQ(hop_payload(m, p, 3, false).tensors, src({0, 1, 2}, false));
  // Rank 1 holds b_0 and block 0 (completed inside its chunk 1).
  EXPECT_EQ(hop_payload(m, p, 3, true).tensors, src({2}, false));
}

TEST(HopPayload, FullAttnResShipsEveryLayerOutput) {
  ModelConfig m = model(4, 1);  // S = 1: sources b_0, y_0 .. y_7
  Partition p = make_partition(m, 2, 2, "2,2,2,2");
  EXPECT_EQ(hop_payload(m, p, 1, false).tensors, src({0, 1, 2}, false));
  EXPECT_EQ(hop_payload(m, p, 2, false).tensors, src({0, 1, 2, 3, 4}, false));
  EXPECT_EQ(hop_payload(m, p, 3, false).tensors, src({0, 1, 2, 3, 4, 5, 6}, false));
  EXPECT_EQ(hop_payload(m, p, 1, true).tensors, src({0, 1, 2}, false));
  EXPECT_EQ(hop_payload(m, p, 2, true).tensors, src({3, 4}, false));
  EXPECT_EQ(hop_payload(m, p, 3, true).tensors, src({5, 6}, false));
}

TEST(HopPayload, Bytes) {
  ModelConfig m = model(4, 1);
  m.seq_len = 32;
  m.d_model = 64;
  Partition p = make_partition(m, 2, 2, "2,2,2,2");
  EXPECT_EQ(hop_bytes(m, hop_payload(m, p, 1, false), 2), 3 * 2 * 32 * 64 * 4);
}

TEST(HopPayload, ClosedForms) {
  EXPECT_DOUBLE_EQ(paper_eq7_blocks(4, 2, 1), 28);  // 8·7/2
  EXPECT_DOUBLE_EQ(paper_eq8_blocks(4, 2, 1), 22);  // 6 + 1·16
  EXPECT_DOUBLE_EQ(exact_eq8_blocks(4, 2, 1), 18);  // 6 + 1·12
  EXPECT_DOUBLE_EQ(paper_eq7_blocks(3, 3, 2), 72);  // 9·8/2·2
  EXPECT_DOUBLE_EQ(exact_eq8_blocks(3, 3, 2), 30);  // 3·2/2·2 + 2·3·2·2
}

// Uniform layouts (every chunk N_p whole blocks): the payload rule reproduces
// Eq. 7 without caching and the exact Eq. 8 count with it, and the embedding
// crosses C−1 resp. P−1 hops on top.
TEST(HopPayload, UniformLayoutsMatchClosedForms) {
  for (int S : {1, 2, 4}) {
    for (int P = 1; P <= 8; ++P) {
      for (int V = 1; V <= 4; ++V) {
        for (int Np = 1; Np <= 3; ++Np) {
          const int C = P * V, L = C * Np * S;
          if (L % 2) continue;
          ModelConfig m = model(L / 2, S);
          Partition p = make_partition(m, P, V, uniform_layout(C, Np * S));
          SCOPED_TRACE("S=" + std::to_string(S) + " P=" + std::to_string(P) + " V=" +
                       std::to_string(V) + " Np=" + std::to_string(Np));
          EXPECT_EQ(double(total_source_tensors(m, p, false, false)), paper_eq7_blocks(P, V, Np));
          EXPECT_EQ(double(total_source_tensors(m, p, true, false)), exact_eq8_blocks(P, V, Np));
          EXPECT_EQ(total_source_tensors(m, p, false, true) - total_source_tensors(m, p, false, false),
                    C - 1);
          EXPECT_EQ(total_source_tensors(m, p, true, true) - total_source_tensors(m, p, true, false),
                    P - 1);
          // The printed Eq. 8 overcounts by (V−1)·P·N_p.
          EXPECT_EQ(paper_eq8_blocks(P, V, Np) - exact_eq8_blocks(P, V, Np), (V - 1) * P * Np);
          for (int c = 1; c < C; ++c)
            for (const HopTensor& t : hop_payload(m, p, c, true).tensors) EXPECT_NE(t.kind, K::Partial);
        }
      }
    }
  }
}

// Replays a microbatch through random layouts, tracking which sources each
// rank holds: with caching, every chunk finds every source it needs, and no
// hop sends a source its receiver already holds.
TEST(HopPayload, CachingIsCompleteAndMinimal) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 300; ++trial) {
    const int P = 1 + rng() % 4, V = 1 + rng() % 3, C = P * V;
    const int n_layers = (C + 1) / 2 + rng() % 6, L = 2 * n_layers;
    const int S = 1 + rng() % L;
    ModelConfig m = model(n_layers, S);
    // Random composition of L into C positive parts.
    std::set<int> inner;
    while (static_cast<int>(inner.size()) < C - 1) inner.insert(1 + rng() % (L - 1));
    std::string layout;
    int prev = 0;
    for (int b : inner) {
      layout += std::to_string(b - prev) + ",";
      prev = b;
    }
    layout += std::to_string(L - prev);
    Partition p = make_partition(m, P, V, layout);
    // Where the schedules run each chunk.
    const std::vector<int> at = make_schedule(V > 1 ? "interleaved" : "1f1b", P, P, V).placement;
    SCOPED_TRACE("layout " + layout + " S=" + std::to_string(S) + " P=" + std::to_string(P));
    std::vector<std::set<int>> held(P);
    for (int c = 0; c < C; ++c) {
      const ChunkRange& ch = p.chunks[c];
      std::set<int>& h = held[size_t(at[size_t(c)])];
      if (c == 0) {
        h.insert(0);  // the embedding is produced here
      } else {
        HopPayload hop = hop_payload(m, p, c, true);
        // What the receiver holds comes from an earlier chunk on its own rank.
        if (hop.cached_from >= 0) {
          EXPECT_LT(hop.cached_from, c);
          EXPECT_EQ(at[size_t(hop.cached_from)], at[size_t(c)]);
        }
        bool partial = false;
        for (const HopTensor& t : hop.tensors) {
          if (t.kind == K::Partial) {
            partial = true;
            continue;
          }
          ASSERT_EQ(t.kind, K::Source);
          EXPECT_EQ(h.count(t.source), 0u) << "source " << t.source << " sent twice to a rank";
          h.insert(t.source);
        }
        EXPECT_EQ(partial, ch.first % S != 0);
      }
      for (int k = 0; k < sources_at(m, ch.first); ++k)
        EXPECT_EQ(h.count(k), 1u) << "chunk " << c << " lacks source " << k;
      // Blocks finishing inside the chunk become held sources.
      for (int j = ch.first + 1; j <= ch.last; ++j)
        if (j % S == 0 || j == L) h.insert(sources_at(m, j) - 1);
    }
  }
}

}  // namespace
}  // namespace attnres
