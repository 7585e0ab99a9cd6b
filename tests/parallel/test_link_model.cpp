// The α-β link model: latency once per hop message plus bytes at the bandwidth.
#include <gtest/gtest.h>

#include <stdexcept>

#include "parallel/link_model.h"

namespace attnres {
namespace {

TEST(LinkModel, LatencyPlusBytesOverBandwidth) {
  // 1 Gbit/s moves 125 MB/s: 1.25 MB take 10 ms, plus 50 us of latency.
  EXPECT_DOUBLE_EQ(hop_seconds({1.0, 50.0}, 1'250'000), 0.010 + 50e-6);
  // Ten times the bandwidth, a tenth of the transfer; the latency stays.
  EXPECT_DOUBLE_EQ(hop_seconds({10.0, 50.0}, 1'250'000), 0.001 + 50e-6);
  EXPECT_DOUBLE_EQ(hop_seconds({0.1, 0.0}, 1'250'000), 0.1);
}

TEST(LinkModel, EmptyHopCostsNothing) { EXPECT_EQ(hop_seconds({1.0, 50.0}, 0), 0.0); }

TEST(LinkModel, RejectsBadLinks) {
  EXPECT_THROW(hop_seconds({0.0, 1.0}, 8), std::invalid_argument);
  EXPECT_THROW(hop_seconds({-1.0, 1.0}, 8), std::invalid_argument);
  EXPECT_THROW(hop_seconds({1.0, -1.0}, 8), std::invalid_argument);
  EXPECT_THROW(hop_seconds({1.0, 1.0}, -8), std::invalid_argument);
  EXPECT_FALSE(LinkModel{}.enabled());
}

}  // namespace
}  // namespace attnres
