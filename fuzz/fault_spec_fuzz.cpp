// The ATTNRES_FAULT value.
#include <stdexcept>
#include <string>

#include "fuzz/fuzz_input.h"
#include "runtime/fault_injection.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    attnres::parse_fault_spec(std::string(reinterpret_cast<const char*>(data), size));
  } catch (const std::runtime_error&) {
  }
  return 0;
}
