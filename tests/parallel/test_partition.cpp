#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <stdexcept>
#include <string>

#include "tests/parallel/model_for_test.h"
#include "parallel/partition.h"

namespace attnres {
namespace {

std::vector<int> counts(const Partition& p) {
  std::vector<int> out;
  for (const ChunkRange& c : p.chunks) out.push_back(c.last - c.first);
  return out;
}

void expect_error(const ModelConfig& m, int pp, int V, const std::string& layout,
                  const std::string& needle) {
  try {
    make_partition(m, pp, V, layout);
    ADD_FAILURE() << "layout \"" << layout << "\" was accepted";
  } catch (const std::invalid_argument& e) {
    std::string what = e.what();
    EXPECT_NE(what.find(needle), std::string::npos) << what;
    EXPECT_NE(what.find("parallel."), std::string::npos) << what;
  }
}

TEST(Partition, ExplicitLayoutGivesRangesAndEnds) {
  Partition p = make_partition(model(4, 3), 3, 1, "3, 2,3");
  ASSERT_EQ(p.num_chunks(), 3);
  int first[] = {0, 3, 5}, last[] = {3, 5, 8};
  for (int c = 0; c < 3; ++c) {
    EXPECT_EQ(p.chunks[c].index, c);
    EXPECT_EQ(p.chunks[c].first, first[c]);
    EXPECT_EQ(p.chunks[c].last, last[c]);
    EXPECT_EQ(p.chunks[c].has_embed, c == 0);
    EXPECT_EQ(p.chunks[c].has_head, c == 2);
  }
  Partition q = make_partition(model(6, 2), 2, 3, "2,2,2,2,2,2");
  EXPECT_EQ(q.num_chunks(), 6);
  EXPECT_EQ(q.P, 2);
  EXPECT_EQ(q.V, 3);
}

TEST(Partition, BadLayoutsNameTheProblem) {
  ModelConfig m = model(4, 2);  // L = 8
  expect_error(m, 2, 2, "2,2,4", "has 3 chunks; expected pp * virtual_stages = 4");
  expect_error(m, 2, 1, "8,0", "chunk 1 has 0 sublayers");
  expect_error(m, 2, 1, "9,-1", "chunk 1 has -1 sublayers");
  expect_error(m, 2, 1, "3,4", "drops sublayers");
  expect_error(m, 2, 1, "5,4", "repeats sublayers");
  expect_error(m, 2, 1, "4,x", "entry 1 (\"x\") is not an integer");
  expect_error(m, 2, 1, "4,,4", "entry 1 (\"\") is not an integer");
  expect_error(m, 2, 1, "4.5,3.5", "entry 0 (\"4.5\") is not an integer");
  expect_error(m, 2, 1, "4,4,", "entry 2 (\"\") is not an integer");
  expect_error(m, 3, 3, "", "only 8 sublayers");
  expect_error(m, 0, 1, "", "parallel.pp = 0");
  expect_error(m, 1, 0, "", "parallel.virtual_stages = 0");
  // Entries whose 32-bit sum wraps to L (2^31 - 1 + 2^31 - 1 + 10 = 8 mod 2^32).
  expect_error(m, 3, 1, "2147483647,2147483647,10", "covers 4294967304 sublayers");
  expect_error(m, 65536, 65536, "", "= 4294967296 chunks");  // pp x V wraps to 0
}

// Brute force over every composition of the units into C groups: the default
// partition must have the smallest max cost, then the smallest sum of squares,
// then the lexicographically smallest boundaries.
void check_optimal(const ModelConfig& m, int pp, int V, int unit) {
  const int L = m.num_sublayers(), C = pp * V;
  Partition p = make_partition(m, pp, V, "");
  ASSERT_EQ(p.num_chunks(), C);
  std::vector<int> ub;
  for (int j = 0; j < L; j += unit) ub.push_back(j);
  ub.push_back(L);
  const int U = static_cast<int>(ub.size()) - 1;
  auto group_cost = [&](int a, int b) {
    ChunkRange r;
    r.first = ub[a];
    r.last = ub[b];
    r.has_embed = a == 0;
    r.has_head = b == U;
    return chunk_cost(m, r);
  };
  using Key = std::tuple<int64_t, double, std::vector<int>>;
  Key best{INT64_MAX, 0, {}};
  std::vector<int> bounds;
  std::function<void(int, int, int64_t, double)> rec = [&](int k, int a, int64_t mx, double sq) {
    if (k == C - 1) {
      int64_t c = group_cost(a, U);
      Key key{std::max(mx, c), sq + double(c) * double(c), bounds};
      if (key < best) best = key;
      return;
    }
    for (int b = a + 1; b <= U - (C - 1 - k); ++b) {
      int64_t c = group_cost(a, b);
      bounds.push_back(ub[b]);
      rec(k + 1, b, std::max(mx, c), sq + double(c) * double(c));
      bounds.pop_back();
    }
  };
  rec(0, 0, 0, 0.0);
  std::vector<int> got;
  int64_t mx = 0;
  for (const ChunkRange& c : p.chunks) {
    if (c.index > 0) got.push_back(c.first);
    mx = std::max(mx, chunk_cost(m, c));
    // Every boundary is a unit boundary.
    EXPECT_EQ(c.first % unit, 0);
  }
  EXPECT_EQ(mx, std::get<0>(best));
  EXPECT_EQ(got, std::get<2>(best));
}

TEST(Partition, DefaultIsCostOptimalOnBlockBoundaries) {
  for (int S : {1, 2, 3, 4}) {
    for (int pp : {1, 2, 3}) {
      for (int V : {1, 2}) {
        for (int vocab : {16, 4096, 65536}) {
          ModelConfig m = model(6, S);  // L = 12
          m.vocab_size = vocab;
          if (m.num_blocks() < pp * V) continue;
          SCOPED_TRACE("S=" + std::to_string(S) + " pp=" + std::to_string(pp) +
                       " V=" + std::to_string(V) + " vocab=" + std::to_string(vocab));
          check_optimal(m, pp, V, S);
        }
      }
    }
  }
}

TEST(Partition, StandardModeSplitsOnTransformerBlocks) {
  ModelConfig m = model(5, 1, ResidualMode::Standard);  // L = 10, S unused
  check_optimal(m, 2, 2, 2);
}

TEST(Partition, HeadCostPullsBlocksOffTheLastChunk) {
  // Hand-checked: d=64, T=32, F=128. Attention 3·(8·64² + 2·32·64) = 110592,
  // MLP 3·6·64·128 = 147456, so a block of S=2 costs 258048. The head
  // 3·2·100000·64 = 38.4M outweighs all four blocks: the last chunk keeps one.
  ModelConfig m = model(4, 2);
  EXPECT_EQ(sublayer_cost(m, 0), 110592);
  EXPECT_EQ(sublayer_cost(m, 1), 147456);
  EXPECT_EQ(counts(make_partition(m, 2, 1, "")), (std::vector<int>{4, 4}));  // head 3·2·256·64 = 98304
  m.vocab_size = 100000;
  EXPECT_EQ(head_cost(m), 38400000);
  EXPECT_EQ(counts(make_partition(m, 2, 1, "")), (std::vector<int>{6, 2}));
}

TEST(Partition, FewerBlocksThanChunksCutsBlocks) {
  ModelConfig m = model(4, 4);  // L = 8, 2 blocks, 4 chunks
  Partition p = make_partition(m, 2, 2, "");
  ASSERT_EQ(p.num_chunks(), 4);
  int total = 0;
  for (const ChunkRange& c : p.chunks) {
    EXPECT_GE(c.last - c.first, 1);
    total += c.last - c.first;
  }
  EXPECT_EQ(total, 8);
  check_optimal(m, 2, 2, 1);
}

}  // namespace
}  // namespace attnres
