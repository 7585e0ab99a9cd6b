#include "parallel/topology.h"

#include <gtest/gtest.h>

#include <ostream>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>

namespace attnres {
namespace {

struct Dims {
  int dp, pp, tp;
};
void PrintTo(const Dims& d, std::ostream* os) {
  *os << "dp=" << d.dp << " pp=" << d.pp << " tp=" << d.tp;
}

class TopologyGrid : public ::testing::TestWithParam<Dims> {};

// Every world rank maps to a distinct coordinate, the coordinate maps back,
// and the group lists hold exactly the ranks that share the fixed coordinates,
// ordered by the varying one.
TEST_P(TopologyGrid, RanksAndGroupsFollowTpDpPpOrder) {
  const Dims d = GetParam();
  const int world = d.dp * d.pp * d.tp;
  std::set<std::tuple<int, int, int>> seen;
  for (int r = 0; r < world; ++r) {
    const Topology t = make_topology(world, r, d.dp, d.pp, d.tp);
    const Coord c = t.coord;
    // Independent decoding of world_rank = pp·(dp·tp) + dp·tp + tp.
    EXPECT_EQ(c.tp_idx, r % d.tp);
    EXPECT_EQ(c.dp_idx, (r / d.tp) % d.dp);
    EXPECT_EQ(c.pp_idx, r / (d.tp * d.dp));
    EXPECT_EQ(t.world_rank_of(c), r);
    EXPECT_TRUE(seen.insert({c.dp_idx, c.pp_idx, c.tp_idx}).second);

    ASSERT_EQ(static_cast<int>(t.pipeline_ranks.size()), d.pp);
    ASSERT_EQ(static_cast<int>(t.data_ranks.size()), d.dp);
    ASSERT_EQ(static_cast<int>(t.tensor_ranks.size()), d.tp);
    EXPECT_EQ(t.pipeline_ranks[c.pp_idx], r);
    EXPECT_EQ(t.data_ranks[c.dp_idx], r);
    EXPECT_EQ(t.tensor_ranks[c.tp_idx], r);
    for (int i = 0; i < d.pp; ++i) {
      const Coord p = t.coord_of(t.pipeline_ranks[i]);
      EXPECT_EQ(p, (Coord{c.dp_idx, i, c.tp_idx}));
    }
    for (int i = 0; i < d.dp; ++i) {
      const Coord p = t.coord_of(t.data_ranks[i]);
      EXPECT_EQ(p, (Coord{i, c.pp_idx, c.tp_idx}));
    }
    for (int i = 0; i < d.tp; ++i) {
      const Coord p = t.coord_of(t.tensor_ranks[i]);
      EXPECT_EQ(p, (Coord{c.dp_idx, c.pp_idx, i}));
    }
  }
  EXPECT_EQ(static_cast<int>(seen.size()), world);
}

INSTANTIATE_TEST_SUITE_P(Dims, TopologyGrid,
                         ::testing::Values(Dims{1, 1, 1}, Dims{1, 4, 1}, Dims{4, 1, 1},
                                           Dims{1, 1, 4}, Dims{2, 2, 1}, Dims{2, 4, 1},
                                           Dims{2, 3, 2}, Dims{3, 2, 4}),
                         [](const ::testing::TestParamInfo<Dims>& i) {
                           return "dp" + std::to_string(i.param.dp) + "_pp" +
                                  std::to_string(i.param.pp) + "_tp" + std::to_string(i.param.tp);
                         });

// Concrete ranks for dp=2, pp=2, tp=2 written out by hand.
TEST(Topology, HandWrittenTwoByTwoByTwo) {
  const Topology t = make_topology(8, 5, 2, 2, 2);  // 5 = pp 1, dp 0, tp 1
  EXPECT_EQ(t.coord, (Coord{0, 1, 1}));
  EXPECT_EQ(t.pipeline_ranks, (std::vector<int>{1, 5}));
  EXPECT_EQ(t.data_ranks, (std::vector<int>{5, 7}));
  EXPECT_EQ(t.tensor_ranks, (std::vector<int>{4, 5}));
}

TEST(Topology, MismatchedWorldSizeNamesTheKeys) {
  try {
    make_topology(6, 0, 2, 4, 1);
    FAIL() << "expected std::runtime_error";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()),
              "world size 6 does not match parallel.dp × parallel.pp × parallel.tp = "
              "2 × 4 × 1 = 8");
  }
}

TEST(Topology, RejectsBadDegreesAndRanks) {
  EXPECT_THROW(make_topology(0, 0, 0, 1, 1), std::runtime_error);
  EXPECT_THROW(make_topology(4, 4, 2, 2, 1), std::runtime_error);
  EXPECT_THROW(make_topology(4, -1, 2, 2, 1), std::runtime_error);
}

}  // namespace
}  // namespace attnres
