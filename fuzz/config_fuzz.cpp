// The YAML config loader with --set overrides: bytes before the first NUL are
// the file, each line after it one override.
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "fuzz/fuzz_input.h"
#include "runtime/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string in(reinterpret_cast<const char*>(data), size);
  const size_t nul = in.find('\0');
  std::vector<std::string> sets;
  if (nul != std::string::npos) {
    std::istringstream lines(in.substr(nul + 1));
    for (std::string l; std::getline(lines, l);) sets.push_back(l);
  }
  try {
    const attnres::Config cfg = attnres::parse_config(in.substr(0, nul), "fuzz.yaml", sets);
    attnres::parse_config(attnres::config_to_yaml(cfg), "written.yaml", {});  // what it writes loads back
  } catch (const std::runtime_error&) {
  }
  return 0;
}
