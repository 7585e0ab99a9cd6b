// An export: the first byte chooses the file, the rest is its content:
// even = model.safetensors (header and tensors), odd = its config.json.
#include <stdexcept>

#include "fuzz/fuzz_input.h"
#include "runtime/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool config = data[0] & 1;
  const std::string path = attnres::fuzz::write_input(data + 1, size - 1, config ? "config.json" : "model.safetensors");
  try {
    if (config) attnres::read_export_config(path);
    else attnres::read_safetensors(path);
  } catch (const std::runtime_error&) {
  }
  return 0;
}
