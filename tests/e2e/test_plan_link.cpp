// `attnres plan --link-gbps` through the binary (issue #11): the network
// table's communication time is the α-β model's sum over the hop messages, and
// the predicted step is the compute (--compute-ms) when the link is free and
// grows with the hop bytes when it is not.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

namespace fs = std::filesystem;

namespace {

struct Row {
  double comm = 0, step = 0;
};

// Runs plan on small.yaml at pp = 2 with ARGS; returns the exit status and
// the network table's rows by variant name. The output file is the test's
// own: CTest runs this file's tests side by side.
int plan(const std::string& args, std::map<std::string, Row>& rows) {
  const fs::path out = fs::temp_directory_path() /
                       (std::string("attnres_plan_link_") +
                        ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".txt");
  const std::string cmd = ATTNRES_BINARY_DIR "/attnres plan --config " ATTNRES_SOURCE_DIR
                          "/configs/small.yaml --set parallel.pp=2 " + args + " > " +
                          out.string() + " 2>&1";
  const int rc = std::system(cmd.c_str());
  std::ifstream f(out);
  bool in_table = false;
  for (std::string line; std::getline(f, line);) {
    if (line.rfind("variant   ", 0) == 0 && line.find("comm s/step") != std::string::npos) {
      in_table = true;
      continue;
    }
    if (!in_table) continue;
    if (line.rfind("comm s/step", 0) == 0) break;
    // name (may hold a space), bytes value, unit, comm, step, bubble
    std::istringstream in(line.substr(16));
    std::string value, unit, bubble;
    Row r;
    in >> value >> unit >> r.comm >> r.step >> bubble;
    std::string name = line.substr(0, 16);
    name.erase(name.find_last_not_of(' ') + 1);
    rows[name] = r;
  }
  f.close();
  fs::remove(out);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

TEST(PlanLink, CommunicationAndPredictedStep) {
  std::map<std::string, Row> slow, free;
  ASSERT_EQ(plan("--link-gbps 0.1 --compute-ms 2000", slow), 0);
  ASSERT_EQ(plan("--link-gbps 1000000 --compute-ms 2000", free), 0);
  ASSERT_EQ(slow.size(), 5u);
  // small.yaml: tensors of 4 x 128 x 256 fp32 = 512 KiB, 8 microbatches; the
  // hop carries 1 (standard), 5 (Block S=2: b_0 + 4 blocks) or 9 (Full)
  // tensors each way. At 0.1 Gbit/s, 2 x 8 messages of n x 512 KiB.
  const double tensor_s = 512.0 * 1024 * 8 / 1e8;
  EXPECT_NEAR(slow["standard"].comm, 16 * tensor_s, 1e-3);
  EXPECT_NEAR(slow["block S=2"].comm, 16 * 5 * tensor_s, 1e-3);
  EXPECT_NEAR(slow["full S=1"].comm, 16 * 9 * tensor_s, 1e-3);
  for (const auto& [name, r] : free) EXPECT_NEAR(r.step, 2.0, 1e-3) << name;  // compute alone
  // Each direction's link carries half the bytes; the step is at least that
  // and at least the compute, and more bytes never make it shorter.
  for (const auto& [name, r] : slow) {
    EXPECT_GE(r.step, 2.0) << name;
    EXPECT_GE(r.step, r.comm / 2) << name;
  }
  EXPECT_LT(slow["standard"].step, slow["block S=2"].step);
  EXPECT_LT(slow["block S=2"].step, slow["full S=1"].step);
}

TEST(PlanLink, RejectsBadLinks) {
  std::map<std::string, Row> rows;
  EXPECT_NE(plan("--link-gbps 0", rows), 0);
  EXPECT_NE(plan("--link-gbps 1 --link-latency-us -1", rows), 0);
  EXPECT_NE(plan("--link-gbps 1 --compute-ms 10 --tflops 1", rows), 0);
}

}  // namespace
