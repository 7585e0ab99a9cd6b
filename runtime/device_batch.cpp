#include "runtime/device_batch.h"

#include "kernels/ops.h"

namespace attnres {

namespace k = kernels;

DeviceBatch::DeviceBatch(const k::Device& dev, const Batch& b, int vocab) { load(dev, b, vocab); }

void DeviceBatch::load(const k::Device& dev, const Batch& b, int vocab) {
  k::check_tokens(b.inputs.data(), int(b.inputs.size()), vocab);
  k::check_targets(b.targets.data(), int(b.targets.size()), vocab);
  if (inputs.size() != b.inputs.size()) inputs = k::DeviceBuffer<int32_t>(dev, b.inputs.size());
  if (targets.size() != b.targets.size()) targets = k::DeviceBuffer<int32_t>(dev, b.targets.size());
  k::copy(dev, inputs.data(), b.inputs.data(), b.inputs.size(), k::CopyKind::HostToDevice);
  k::copy(dev, targets.data(), b.targets.data(), b.targets.size(), k::CopyKind::HostToDevice);
}

}  // namespace attnres
