// NCCL for ranks that share a GPU (ATTNRES_SHARE_GPU=1, docs/CUDA.md). NCCL
// refuses two ranks of one communicator on one device ("Duplicate GPU
// detected") when it takes them for ranks of one host, which it tells by a
// hash of the host that NCCL_HOSTID replaces. So each process gets a host id
// of its own: NCCL then takes every peer for another machine and connects
// through its network transport (its P2P and shared-memory transports only
// join ranks of one host), over sockets with InfiniBand off. NCCL 2.30 has
// NCCL_MULTI_RANK_GPU_ENABLE for this; the CUDA 13 toolkit here ships 2.28.
#pragma once
#include <string>
#include <vector>

namespace attnres {

struct EnvSetting {
  std::string name, value;
  bool overwrite;  // false: a value the user set stays
};

// The settings for the process `pid` on host `host`.
std::vector<EnvSetting> shared_gpu_nccl_env(const std::string& host, long pid);
// Puts them in this process's environment. NCCL reads NCCL_HOSTID once, at
// its first call: set them before it.
void set_env(const std::vector<EnvSetting>& settings);

}  // namespace attnres
