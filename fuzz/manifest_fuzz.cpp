// A checkpoint's manifest.json: parsed, its config rebuilt and its tensor
// records indexed, as `--resume` and `checkpoint inspect` do before reading shards.
#include <stdexcept>

#include "fuzz/fuzz_input.h"
#include "runtime/checkpoint_format.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = attnres::fuzz::write_input(data, size, "manifest.json");
  const std::string ckpt = path.substr(0, path.rfind('/'));
  try {
    const attnres::Manifest m = attnres::read_manifest(ckpt);
    attnres::manifest_config(m, ckpt);
    attnres::index_records(m);
  } catch (const std::runtime_error&) {
  }
  return 0;
}
