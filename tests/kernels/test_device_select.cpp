// Which CUDA device a rank gets: one each, or shared (ATTNRES_SHARE_GPU).
#include <gtest/gtest.h>

#include <string>

#include "kernels/device.h"

namespace attnres::kernels {
namespace {

TEST(DeviceOfRank, OneEachUnlessShared) {
  std::string why;
  for (int r = 0; r < 4; ++r) EXPECT_EQ(device_of_rank(r, 4, 8, false, &why), r);
  EXPECT_EQ(device_of_rank(1, 2, 1, false, &why), -1);
  EXPECT_NE(why.find("1 CUDA device(s) for its 2 ranks"), std::string::npos) << why;
  EXPECT_NE(why.find("ATTNRES_SHARE_GPU=1"), std::string::npos) << why;
  // Shared: round robin, so two ranks on one GPU, three on two.
  EXPECT_EQ(device_of_rank(1, 2, 1, true, &why), 0);
  EXPECT_EQ(device_of_rank(1, 3, 2, true, &why), 1);
  EXPECT_EQ(device_of_rank(2, 3, 2, true, &why), 0);
  EXPECT_EQ(device_of_rank(0, 1, 0, true, &why), -1);  // sharing needs a device
}

}  // namespace
}  // namespace attnres::kernels
