#include "kernels/env_flag.h"

#include <cstdlib>
#include <stdexcept>
#include <string>

namespace attnres::kernels {

bool parse_env_flag(const char* name, const char* value) {
  const std::string v = value ? value : "";
  if (v.empty() || v == "0") return false;
  if (v == "1") return true;
  throw std::invalid_argument(std::string(name) + "=" + v + ": use 1 (on) or 0 (off)");
}

bool env_flag(const char* name) { return parse_env_flag(name, std::getenv(name)); }

}  // namespace attnres::kernels
