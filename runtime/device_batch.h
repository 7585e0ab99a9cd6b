// A batch's token ids and targets in device memory, where the kernels read
// them (a CUDA kernel cannot read host ids). The ids are checked against the
// vocabulary on the host before the copy: a device kernel cannot throw.
#pragma once
#include "kernels/memory.h"
#include "runtime/data.h"

namespace attnres {

struct DeviceBatch {
  kernels::DeviceBuffer<int32_t> inputs, targets;

  DeviceBatch() = default;
  // Checks b's ids against `vocab` and copies them to `dev`, asynchronously:
  // b must stay unchanged until the device's stream is synchronized.
  DeviceBatch(const kernels::Device& dev, const Batch& b, int vocab);
  void load(const kernels::Device& dev, const Batch& b, int vocab);
};

}  // namespace attnres
