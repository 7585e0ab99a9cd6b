// Replays a fuzz target's kept corpus (fuzz/corpus/<target>/) without
// libFuzzer, so every build (gcc, the sanitizer builds) runs the inputs the
// fuzzing found: a regression test. Usage: <binary> FILE_OR_DIR...
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "fuzz/fuzz_input.h"

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  int n = 0;
  for (int i = 1; i < argc; ++i) {
    std::vector<fs::path> files;
    if (fs::is_directory(argv[i])) {
      for (const auto& e : fs::directory_iterator(argv[i])) files.push_back(e.path());
    } else {
      files.push_back(argv[i]);
    }
    for (const fs::path& p : files) {
      std::ifstream f(p, std::ios::binary);
      const std::vector<char> bytes((std::istreambuf_iterator<char>(f)), {});
      LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
      ++n;
    }
  }
  std::printf("replayed %d input(s)\n", n);
  fs::remove_all("/dev/shm/attnres_fuzz_" + std::to_string(::getpid()));
  return n > 0 ? 0 : 1;
}
