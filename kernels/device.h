// The device every kernel and memory call runs on, and its stream.
// The CPU backend ignores the stream; a CUDA backend carries a cudaStream_t.
#pragma once

namespace attnres::kernels {

enum class Backend { CPU, CUDA };

struct Device {
  Backend backend = Backend::CPU;
  int ordinal = 0;         // which device of the backend (CUDA device id); 0 on CPU
  void* stream = nullptr;  // cudaStream_t on CUDA, unused on CPU
};

// Sets the worker threads of both OpenMP and OpenBLAS (train.threads).
void set_num_threads(int n);
int get_num_threads();

}  // namespace attnres::kernels
