// On/off switches read from the environment (ATTNRES_CUDA_DEBUG,
// ATTNRES_SHARE_GPU; docs/CUDA.md).
#pragma once

namespace attnres::kernels {

// `value` of the variable `name`: unset, empty or "0" is off, "1" on;
// anything else throws, so that a typo cannot silently leave it off.
bool parse_env_flag(const char* name, const char* value);
// The variable `name` of this process's environment, parsed so.
bool env_flag(const char* name);

}  // namespace attnres::kernels
