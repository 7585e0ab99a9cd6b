// Loss evaluation: validation during training and `attnres eval`.
#pragma once
#include <string>
#include <vector>

#include "models/chunk.h"
#include "runtime/data.h"
#include "runtime/safetensors.h"

namespace attnres {

// Mean next-token cross-entropy of a whole-model chunk over the batches
// (each batch must hold chunk.batch sequences).
double mean_loss(const Chunk& model, ChunkActs& acts, const std::vector<Batch>& batches);

// Byte-tokenizes `text_path`, cuts it into consecutive windows of seq_len + 1
// tokens (the rest is dropped) and returns the mean next-token cross-entropy
// over all predicted positions. Throws if the file is shorter than one window.
double eval_file_loss(const Chunk& model, ChunkActs& acts, const std::string& text_path);

// Copies the named tensors of `tensors` into a chunk's device parameters; throws naming a tensor
// that is missing or has the wrong shape, or an unexpected extra tensor.
void load_named_tensors(Chunk& model, const std::vector<NamedTensor>& tensors, const std::string& source);
// Host parameters laid out by `layout` as named tensors in its order (for export).
std::vector<NamedTensor> named_tensors(const ParamLayout& layout, const float* host_params);

}  // namespace attnres
