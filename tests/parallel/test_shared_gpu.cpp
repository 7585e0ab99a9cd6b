// NCCL's environment for ranks that share a GPU (ATTNRES_SHARE_GPU,
// parallel/shared_gpu.h): what the processes set before NCCL's first call.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "parallel/shared_gpu.h"

using namespace attnres;

namespace {

TEST(SharedGpu, EachProcessIsAHostOfItsOwnOverSockets) {
  const auto a = shared_gpu_nccl_env("node1", 100), b = shared_gpu_nccl_env("node1", 101);
  auto value = [](const std::vector<EnvSetting>& env, const std::string& name) {
    for (const EnvSetting& s : env)
      if (s.name == name) return s.value;
    return std::string("(unset)");
  };
  EXPECT_NE(value(a, "NCCL_HOSTID"), value(b, "NCCL_HOSTID"));
  EXPECT_NE(value(a, "NCCL_HOSTID"), value(shared_gpu_nccl_env("node2", 100), "NCCL_HOSTID"));
  EXPECT_EQ(value(a, "NCCL_IB_DISABLE"), "1");
}

TEST(SharedGpu, SetEnvKeepsWhatTheUserSetUnlessItMustDiffer) {
  ::setenv("ATTNRES_TEST_KEPT", "user", 1);
  ::setenv("ATTNRES_TEST_FORCED", "user", 1);
  set_env({{"ATTNRES_TEST_KEPT", "ours", false}, {"ATTNRES_TEST_FORCED", "ours", true}, {"ATTNRES_TEST_NEW", "ours", false}});
  EXPECT_STREQ(std::getenv("ATTNRES_TEST_KEPT"), "user");
  EXPECT_STREQ(std::getenv("ATTNRES_TEST_FORCED"), "ours");
  EXPECT_STREQ(std::getenv("ATTNRES_TEST_NEW"), "ours");
}

}  // namespace
