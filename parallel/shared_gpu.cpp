#include "parallel/shared_gpu.h"

#include <cstdlib>

namespace attnres {

std::vector<EnvSetting> shared_gpu_nccl_env(const std::string& host, long pid) {
  return {{"NCCL_HOSTID", host + "-attnres-" + std::to_string(pid), true}, {"NCCL_IB_DISABLE", "1", false}};
}

void set_env(const std::vector<EnvSetting>& settings) {
  for (const EnvSetting& s : settings) ::setenv(s.name.c_str(), s.value.c_str(), s.overwrite ? 1 : 0);
}

}  // namespace attnres
