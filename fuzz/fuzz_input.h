// Shared by the fuzz targets: libFuzzer calls LLVMFuzzerTestOneInput with
// arbitrary bytes; the parsers under test read files, so the bytes go to a
// file in /dev/shm first. A parser may reject its input only with
// std::runtime_error (the runtime's "one clear error"); anything else
// (a crash, a sanitizer report, another exception) is a finding.
#pragma once
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

namespace attnres::fuzz {

// Writes the bytes to /dev/shm/attnres_fuzz_<pid>/<name> and returns its path.
inline std::string write_input(const uint8_t* data, size_t size, const std::string& name) {
  const std::string dir = "/dev/shm/attnres_fuzz_" + std::to_string(::getpid());
  ::mkdir(dir.c_str(), 0755);
  const std::string path = dir + "/" + name;
  if (std::FILE* f = std::fopen(path.c_str(), "wb")) {
    if (size) std::fwrite(data, 1, size, f);
    std::fclose(f);
  }
  return path;
}

}  // namespace attnres::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
