// The durable-write helper: a file appears complete under its name or not at
// all, no temporary is left behind, and errors name the file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include "runtime/durable_file.h"

namespace fs = std::filesystem;
using namespace attnres;

namespace {

fs::path fresh_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("attnres_durable_" + std::to_string(getpid())) / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

}  // namespace

TEST(DurableFile, WritesInPiecesAndReplacesAtomically) {
  const fs::path p = fresh_dir("pieces") / "f.bin";
  write_file_durably(p.string(), "old");
  DurableFile f(p.string());
  f.write("hello ", 6);
  EXPECT_EQ(slurp(p), "old");  // until commit, the name holds the old file
  f.write("world", 5);
  f.commit();
  EXPECT_EQ(slurp(p), "hello world");
  EXPECT_FALSE(fs::exists(p.string() + ".tmp"));
}

TEST(DurableFile, WithoutCommitNothingChanges) {
  const fs::path p = fresh_dir("abandon") / "f.bin";
  write_file_durably(p.string(), "kept");
  {
    DurableFile f(p.string());
    f.write("lost", 4);
  }
  EXPECT_EQ(slurp(p), "kept");
  EXPECT_FALSE(fs::exists(p.string() + ".tmp"));
}

TEST(DurableFile, ErrorsNameTheFile) {
  const fs::path p = fresh_dir("missing") / "no_such_dir" / "f.bin";
  try {
    write_file_durably(p.string(), "x");
    FAIL() << "expected std::runtime_error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(p.string()), std::string::npos) << e.what();
  }
  EXPECT_THROW(fsync_directory((fresh_dir("nodir") / "absent").string()), std::runtime_error);
}
