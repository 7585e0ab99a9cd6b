// The Chrome trace file (runtime/trace.h): rows by category, and messages on
// the wire, which overlap one another, each on the first wire row free at
// its start.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "runtime/trace.h"

namespace attnres {
namespace {

TEST(Trace, OverlappingMessagesTakeRowsOfTheirOwn) {
  const std::vector<TraceEvent> events = {
      {"F(mb=0,chunk=0)", "compute", 0, 10},   {"RECV_B(mb=0,hop=1)", "wire", 5, 20},
      {"SEND_F(mb=1,hop=1)", "wire", 12, 4},  {"RECV_B(mb=1,hop=1)", "wire", 15, 30},
      {"SEND_F(mb=2,hop=1)", "wire", 26, 2},  {"wait RECV_B", "comm", 20, 5}};
  const std::string path = (std::filesystem::temp_directory_path() / "attnres_trace_test.json").string();
  write_trace(path, events, 1);
  nlohmann::json j;
  std::ifstream(path) >> j;
  std::map<std::string, int> row_of;
  std::map<int, std::string> row_name;
  for (const auto& e : j.at("traceEvents")) {
    if (e.at("ph") == "X") row_of[e.at("name")] = e.at("tid");
    if (e.at("ph") == "M" && e.at("name") == "thread_name") row_name[e.at("tid")] = e.at("args").at("name");
  }
  EXPECT_EQ(row_of.at("F(mb=0,chunk=0)"), 0);
  EXPECT_EQ(row_of.at("wait RECV_B"), 1);
  // [5,25) takes the first wire row; [12,16) overlaps it; [15,45) overlaps
  // both; [26,28) finds the first free again.
  EXPECT_EQ(row_of.at("RECV_B(mb=0,hop=1)"), 3);
  EXPECT_EQ(row_of.at("SEND_F(mb=1,hop=1)"), 4);
  EXPECT_EQ(row_of.at("RECV_B(mb=1,hop=1)"), 5);
  EXPECT_EQ(row_of.at("SEND_F(mb=2,hop=1)"), 3);
  EXPECT_EQ(row_name.size(), 6u);
  EXPECT_EQ(row_name.at(5), "on the wire 3");
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace attnres
