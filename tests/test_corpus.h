// A small corpus (the C++ sources of this repository's tests/, ~150 KB; not the
// whole tree, whose build directories would make the data depend on what was
// built) shared by the tests that train: prepared once per build directory,
// under a file lock because CTest runs test processes in parallel.
#pragma once
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "runtime/data.h"

inline const std::string& test_corpus_dir() {
  static const std::string dir = [] {
    const std::filesystem::path out = std::filesystem::path(ATTNRES_BINARY_DIR) / "test_corpus";
    std::filesystem::create_directories(out);
    const int lock = ::open((out / ".lock").c_str(), O_CREAT | O_RDWR, 0644);
    ::flock(lock, LOCK_EX);
    if (!std::filesystem::exists(out / "meta.json"))
      attnres::prepare_data(ATTNRES_SOURCE_DIR "/tests", "*.cpp", out.string(), 0.2);
    ::flock(lock, LOCK_UN);
    ::close(lock);
    return out.string();
  }();
  return dir;
}
