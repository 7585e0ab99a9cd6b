// The device every kernel and memory call runs on, and its stream.
// The CPU backend ignores the stream; a CUDA backend carries a cudaStream_t.
#pragma once
#include <string>

namespace attnres::kernels {

enum class Backend { CPU, CUDA };

struct Device {
  Backend backend = Backend::CPU;
  int ordinal = 0;         // which device of the backend (CUDA device id); 0 on CPU
  void* stream = nullptr;  // cudaStream_t on CUDA, unused on CPU
  bool tf32 = false;       // CUDA: fp32 GEMMs may round their inputs to TF32 (train.tf32)
};

// ---- choosing a device (kernels/device_select.cpp) ------------------------------
// Whether this binary has the CUDA backend (built where nvcc was found).
bool cuda_built();
// CUDA devices this process can use; 0 when the backend is not built or the
// driver reports none, and then `why` says which.
int cuda_device_count(std::string* why);
// The CPU, or CUDA device `ordinal` with a stream of its own. Throws naming
// the cause when it cannot be used.
Device open_device(Backend backend, int ordinal = 0);
// Never throws (destructors call it): a failure goes to stderr (kernels/release.h).
void close_device(Device& dev) noexcept;

// ---- ranks per device (ATTNRES_SHARE_GPU, docs/CUDA.md) -------------------------
// ATTNRES_SHARE_GPU=1: a node may run more ranks than it has CUDA devices
// (for tests on one GPU). Read once per process.
bool share_gpu();
// The CUDA device of rank `node_rank` of a node's `node_ranks` ranks on its
// `devices` devices: one each (node_rank), or under `share` node_rank %
// devices. -1 when there are too few, and `why` says what to do.
int device_of_rank(int node_rank, int node_ranks, int devices, bool share, std::string* why);

// Sets the worker threads of both OpenMP and OpenBLAS (train.threads).
void set_num_threads(int n);
int get_num_threads();

}  // namespace attnres::kernels
