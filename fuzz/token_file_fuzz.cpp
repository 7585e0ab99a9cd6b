// The token file (train.bin / val.bin): header and size checks, then the
// validation windows cut from it.
#include <stdexcept>

#include "fuzz/fuzz_input.h"
#include "runtime/data.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = attnres::fuzz::write_input(data, size, "val.bin");
  try {
    const attnres::TokenFile f(path);
    attnres::validation_batches(f, 2, 4, 3);
  } catch (const std::runtime_error&) {
  }
  return 0;
}
