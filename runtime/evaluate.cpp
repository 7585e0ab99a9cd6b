#include "runtime/evaluate.h"

#include <fstream>
#include <iterator>
#include <stdexcept>

#include "kernels/memory.h"
#include "runtime/safetensors.h"

namespace attnres {

namespace k = kernels;

namespace {
// A batch's token ids and targets in the model's device memory.
struct DeviceBatch {
  k::DeviceBuffer<int32_t> inputs, targets;
  DeviceBatch(const k::Device& dev, const Batch& b)
      : inputs(dev, b.inputs.size()), targets(dev, b.targets.size()) {
    k::copy(dev, inputs.data(), b.inputs.data(), b.inputs.size(), k::CopyKind::HostToDevice);
    k::copy(dev, targets.data(), b.targets.data(), b.targets.size(), k::CopyKind::HostToDevice);
  }
};
}  // namespace

double mean_loss(const Chunk& model, ChunkActs& acts, const std::vector<Batch>& batches) {
  double sum = 0.0;
  size_t tokens = 0;
  for (const Batch& b : batches) {
    if (b.B != model.batch) throw std::logic_error("mean_loss: batch size differs from the model's");
    const DeviceBatch db(model.dev, b);
    sum += chunk_forward(model, acts, db.inputs.data(), db.targets.data(), ResidualState{});
    tokens += b.inputs.size();
  }
  return tokens ? sum / double(tokens) : 0.0;
}

double eval_file_loss(const Chunk& model, ChunkActs& acts, const std::string& text_path) {
  std::ifstream f(text_path, std::ios::binary);
  if (!f) throw std::runtime_error(text_path + ": cannot open input file");
  const std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const int T = model.cfg.seq_len;
  const size_t windows = bytes.size() / size_t(T + 1);
  if (windows == 0)
    throw std::runtime_error(text_path + ": " + std::to_string(bytes.size()) +
                             " bytes is shorter than one window of seq_len + 1 = " + std::to_string(T + 1));
  const int B = model.batch;
  std::vector<Batch> batches;
  double sum = 0.0;
  size_t tokens = 0;
  for (size_t w0 = 0; w0 < windows; w0 += size_t(B)) {
    // The last batch is padded by repeating its first window; padding is not counted.
    Batch b;
    b.B = B, b.T = T;
    const size_t used = std::min(size_t(B), windows - w0);
    for (int i = 0; i < B; ++i) {
      const size_t w = w0 + (size_t(i) < used ? size_t(i) : 0);
      for (int t = 0; t < T; ++t) {
        b.inputs.push_back(bytes[w * (T + 1) + t]);
        b.targets.push_back(bytes[w * (T + 1) + t + 1]);
      }
    }
    const DeviceBatch db(model.dev, b);
    chunk_forward(model, acts, db.inputs.data(), db.targets.data(), ResidualState{});
    const std::vector<float> losses = k::to_host(model.dev, chunk_token_losses(model, acts), used * size_t(T));
    for (float l : losses) sum += l;
    tokens += used * size_t(T);
  }
  return sum / double(tokens);
}

void load_named_tensors(Chunk& model, const std::vector<NamedTensor>& tensors, const std::string& source) {
  for (const auto& t : tensors)
    if (!model.layout.find(t.name))
      throw std::runtime_error(source + ": tensor " + t.name + " is not part of this model");
  for (const auto& spec : model.layout.tensors) {
    const NamedTensor* found = nullptr;
    for (const auto& t : tensors)
      if (t.name == spec.name) found = &t;
    if (!found) throw std::runtime_error(source + ": tensor " + spec.name + " is missing");
    if (found->shape != spec.shape) throw std::runtime_error(source + ": tensor " + spec.name + " has the wrong shape");
    k::from_host(model.dev, model.params.data() + spec.offset, found->data.data(), spec.numel);
  }
}

std::vector<NamedTensor> named_tensors(const ParamLayout& layout, const float* host_params) {
  std::vector<NamedTensor> out;
  for (const auto& spec : layout.tensors)
    out.push_back({spec.name, spec.shape,
                   std::vector<float>(host_params + spec.offset, host_params + spec.offset + spec.numel)});
  return out;
}

}  // namespace attnres
