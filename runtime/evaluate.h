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

// What the depth-attention and PreNorm-dilution plots show (tools/plot.py),
// as sums over the evaluated tokens; depth_json divides.
struct DepthStats {
  // AttnRes: per site (sublayers 0 .. L-1, then the output site), the sum of
  // each source's weight alpha (source 0 = the embedding, then the blocks).
  std::vector<std::vector<double>> alpha;
  // Per sublayer, then the final norm's input: the sum of the RMS of the
  // hidden state the sublayer's RMSNorm reads (standard: the residual stream;
  // AttnRes: the depth attention's output).
  std::vector<double> rms;
  size_t tokens = 0;
};
// Adds the first `rows` token rows of the last forward of a whole-model chunk.
void accumulate_depth(DepthStats& stats, const Chunk& model, const ChunkActs& acts, size_t rows);
// The means, with the model's mode and blocks, as JSON text: the file
// `attnres eval --depth` writes.
std::string depth_json(const DepthStats& stats, const ModelConfig& m);

struct EvalResult {
  size_t tokens = 0;  // predicted positions
  double loss = 0;    // mean next-token cross-entropy, nats
};
// Byte-tokenizes `text_path` (or reads the tokens of a token file from
// `attnres data prepare`, e.g. val.bin), cuts it into consecutive windows of seq_len + 1
// tokens (the rest is dropped) and evaluates every predicted position; with
// `depth`, also accumulates its statistics. Throws if the file is shorter
// than one window.
// max_windows > 0 evaluates only the first max_windows windows, and reads
// no more than they hold.
EvalResult eval_file(const Chunk& model, ChunkActs& acts, const std::string& text_path,
                     DepthStats* depth = nullptr, size_t max_windows = 0);

// The most windows eval_file evaluates in `path` (max_windows > 0 caps
// them), from its size, without reading it. Throws for a file that is not a
// regular file (it may never end: /dev/zero, a pipe) unless max_windows > 0.
size_t eval_windows_bound(const std::string& path, int seq_len, size_t max_windows);

// A whole-model chunk of `batch` sequences with the weights of an export
// (model.safetensors and the config.json beside it).
void load_export(Chunk& model, const std::string& weights_path, int batch);

// Copies the named tensors of `tensors` into a chunk's device parameters; throws naming a tensor
// that is missing or has the wrong shape, or an unexpected extra tensor.
void load_named_tensors(Chunk& model, const std::vector<NamedTensor>& tensors, const std::string& source);
// Host parameters laid out by `layout` as named tensors in its order (for export).
std::vector<NamedTensor> named_tensors(const ParamLayout& layout, const float* host_params);

}  // namespace attnres
